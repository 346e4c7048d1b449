"""Shell completion: `drover completion bash|zsh`, run in the real shells. bash: the script is
sourced and its function called with COMP_WORDS/COMP_CWORD, as bash does on TAB. zsh: the
script is sourced with zsh's completion builtins (compadd, _describe, _files, compdef)
replaced by functions that print what they are given, and _drover called with words/CURRENT."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN

BUILD = os.path.dirname(os.path.abspath(BIN))


def commands():
    """The commands `drover --help` lists."""
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    names = re.findall(r"^  (\S+)\s", r.stdout.split("commands:")[1].split("\n\n")[0], re.M)
    assert "submit" in names and "completion" in names
    return names


def bash_complete(*words):
    """What the bash completion offers for the command line `words` (the last one being
    completed)."""
    bash = shutil.which("bash")
    script = ("source <(drover completion bash) || exit 9\n"
              'COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _drover\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = dict(os.environ, PATH=BUILD + os.pathsep + os.environ["PATH"])
    r = subprocess.run([bash, "--norc", "-c", script, "bash"] + list(words), capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.split("\n") if w]


def test_bash_completes_commands_options_and_values(tmp_path):
    assert bash_complete("drover", "") == commands() + ["help"]
    assert bash_complete("drover", "su") == ["submit"]
    assert bash_complete("drover", "st") == ["status"]
    # options come from the command's --help
    assert bash_complete("drover", "jobs", "--st") == ["--state"]
    assert set(bash_complete("drover", "server", "--tls")) == {"--tls-cert", "--tls-key"}
    assert "--ca-file" in bash_complete("drover", "agent", "--ca")
    assert "--follow" in bash_complete("drover", "logs", "--")
    # only the options the help describes, not every --word of its text: the nhmmer
    # example's --cpu and --tblout are the program's, not submit's
    submit = bash_complete("drover", "submit", "--")
    assert "--wait" in submit and "--file" in submit and "--upload-to" in submit
    assert "--cpu" not in submit and "--tblout" not in submit, submit
    assert "--tls-cert" in bash_complete("drover", "dev", "--tls")  # dev takes the server's
    assert bash_complete("drover", "events", "--type", "a") == ["agent", "array"]
    # values of options with a fixed set
    assert bash_complete("drover", "jobs", "--state", "r") == ["running"]
    assert bash_complete("drover", "token", "create", "--role", "") == ["admin", "client", "agent"]
    assert bash_complete("drover", "server", "--sync", "") == ["full", "normal"]
    # every runtime the agent takes (src/agent/agent.c), not only native
    assert bash_complete("drover", "agent", "--runtime", "") == ["native", "bwrap", "podman",
                                                                 "docker"]
    assert bash_complete("drover", "agent", "--runtime", "p") == ["podman"]
    # subcommands come from the command's synopsis
    assert bash_complete("drover", "workflow", "") == ["cancel", "list", "retry", "status",
                                                       "submit", "wait"]
    assert bash_complete("drover", "service", "s") == ["show"]
    assert bash_complete("drover", "token", "") == ["create", "ls", "revoke"]
    assert "--limit" in bash_complete("drover", "workflow", "list", "--")
    # anything else: file names
    (tmp_path / "spec-one.json").write_text("{}")
    got = bash_complete("drover", "submit", "-f", str(tmp_path / "spec-"))
    assert got == [str(tmp_path / "spec-one.json")]
    # subcommands, then the options of the command
    assert bash_complete("drover", "trigger", "") == ["create", "fire", "ls", "pause", "resume", "rm", "show", "update"]
    assert bash_complete("drover", "workflow", "st") == ["status"]
    # listings answer to list and ls both; completion offers the spelling each documents
    assert bash_complete("drover", "tenant", "") == ["list", "set"]
    assert bash_complete("drover", "service", "") == ["ls", "put", "rm", "show"]
    assert "--limit" in bash_complete("drover", "workflow", "ls", "--")
    assert set(bash_complete("drover", "trigger", "create", "--")) >= {
        "--prefix", "--job", "--workflow", "--input", "--json"}


def test_zsh_completes_commands_options_and_values():
    zsh = shutil.which("zsh")
    assert zsh, "zsh is missing: scripts/deps.sh test installs it"
    stubs = r"""
compdef() { print -r -- "compdef $*" }
_describe() { print -rl -- "${(@P)2}" }
compadd() { if [[ $1 == -a ]]; then print -rl -- "${(@P)2}"; else shift; print -rl -- "$@"; fi }
_files() { print -r -- "<files>" }
source <(drover completion zsh) || exit 9
words=("$@"); CURRENT=$#; _drover
"""
    env = dict(os.environ, PATH=BUILD + os.pathsep + os.environ["PATH"])

    def complete(*words):
        r = subprocess.run([zsh, "-f", "-c", stubs, "zsh"] + list(words), capture_output=True,
                           text=True, timeout=30, env=env)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "compdef _drover drover"  # sourced: registered for drover
        return lines[1:]

    described = complete("drover", "")
    assert [d.split(":")[0] for d in described] == commands()
    assert "submit:submit a job (-f SPEC.json | -- PROGRAM ARGS...)" in described
    assert "--state" in complete("drover", "jobs", "--st")
    assert "--tls-cert" in complete("drover", "server", "--")
    assert complete("drover", "token", "create", "--role", "") == ["admin", "client", "agent"]
    assert complete("drover", "agent", "--runtime", "") == ["native", "bwrap", "podman", "docker"]
    assert complete("drover", "status", "") == ["<files>"]
    assert complete("drover", "workflow", "") == ["cancel", "list", "retry", "status", "submit",
                                                  "wait"]
    assert complete("drover", "retry", "") == ["<files>"]
    assert complete("drover", "trigger", "") == ["create", "fire", "ls", "pause", "resume", "rm", "show", "update"]
    assert "--prefix" in complete("drover", "trigger", "create", "--")


@pytest.mark.parametrize("args,msg", [
    ([], "needs a shell"), (["fish"], "bash and zsh only"), (["bash", "zsh"], "one shell")])
def test_completion_bad_arguments(args, msg):
    r = subprocess.run([BIN, "completion"] + args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and msg in r.stderr and "usage: drover completion" in r.stderr
    assert r.stdout == ""


def test_queue_pauses_cancel_filters_and_webhook_ranges_complete():
    assert bash_complete("drover", "queues", "") == ["limit", "pause", "resume"]
    assert bash_complete("drover", "cancel", "--q") == ["--queue"]
    assert bash_complete("drover", "server", "--webhook") == ["--webhook-allow", "--webhook-deny"]
