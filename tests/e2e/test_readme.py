"""The command blocks of README.md and examples/*/README.md work as they are written.

Which blocks run: every ```sh block of these files must be preceded by an HTML
comment that says so, either `<!-- test: run -->` (the test runs it) or
`<!-- test: skip, REASON -->` (it builds or installs, as scripts/demo.sh and
scripts/test.sh do, or needs several machines). A block with neither fails the
test, so a new block cannot be left out silently.

How they run: for each file, the test starts one `drover dev` on a free loopback
port with a temporary data folder, then runs the file's `run` blocks in order (a
reader follows a page from the top), each as one `bash -euo pipefail` script
with a bounded timeout, in one temporary working folder, and checks that each
exits 0. The page is written for a reader in the repository's folder with a
`drover dev` on the default address, so the commands are rewritten:
  - a line `scripts/build.sh ...` is dropped (drover is built: DROVER_BIN), and
    so is `build/drover dev [OPTIONS] &` (the test's own `drover dev` stands in
    for it, started with the OPTIONS of the page's first such line);
  - `build/X` becomes X beside DROVER_BIN (drover, julia-render), and the
    command `drover` that binary;
  - `examples/` becomes the repository's examples folder;
  - `127.0.0.1:7070` becomes the test's address, `~/.local/share/drover` its
    data folder, and `/tmp/` the test's temporary folder;
  - the environment has DROVER_SERVER and DROVER_DATA (the CLI reads the admin
    token there), DROVER (examples/seed/run.sh's CLI) and TMPDIR set, and no
    DROVER_TOKEN.
Every process the test starts is stopped by its PID; `drover dev` must then
exit 0.
"""
import os
import re
import signal
import subprocess

import pytest

from conftest import BIN, ROOT, Server

PAGES = ["README.md"] + sorted(
    os.path.join("examples", d, "README.md") for d in os.listdir(os.path.join(ROOT, "examples"))
    if os.path.exists(os.path.join(ROOT, "examples", d, "README.md")))
BLOCK_TIMEOUT = 300  # seconds, a generous bound for one block (a build machine may be slow)
MARK = re.compile(r"<!--\s*test:\s*(run|skip)\b[^>]*-->\s*\n```sh\n(.*?)```", re.S)


def blocks(page):
    """[(kind, text)] of the ```sh blocks of `page`; fails on a block without a mark."""
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    found = MARK.findall(text)
    assert len(found) == text.count("```sh\n"), \
        f"{page}: every ```sh block needs <!-- test: run --> or <!-- test: skip, why --> before it"
    return found


DEV_LINE = re.compile(r"^\s*build/drover dev\b([^&#\n]*)&", re.M)


def dev_options(page):
    """The options of the page's first `build/drover dev ... &` line (its agent's labels)."""
    for kind, block in blocks(page):
        m = DEV_LINE.search(block)
        if m:
            return m.group(1).split()
    return []


def rewrite(block, dev, tmp):
    """The block as the test runs it (see the top of this file)."""
    bindir = os.path.dirname(BIN)
    lines = []
    for line in block.splitlines():
        if re.match(r"\s*scripts/build\.sh\b", line) or re.match(r"\s*build/drover dev\s.*&", line):
            continue
        lines.append(line)
    script = "\n".join(lines) + "\n"
    script = re.sub(r"(?<![\w/.~-])/tmp/", str(tmp) + "/", script)  # first: tmp is in /tmp
    script = script.replace("~/.local/share/drover", dev.data_dir)
    script = script.replace("127.0.0.1:7070", f"127.0.0.1:{dev.port}")
    script = re.sub(r"(?<![\w/.-])build/", bindir + "/", script)
    script = re.sub(r"(?<![\w/.-])examples/", os.path.join(ROOT, "examples") + "/", script)
    script = re.sub(r"(?<![\w/.$-])drover(?=[ \t])", BIN, script)
    return script


def dev_status(dev):
    """Whether `drover dev` still runs, or how it ended (a negative code: the signal)."""
    rc = dev.proc.poll() if dev.proc else None
    return "running" if rc is None else f"exited with {rc}"


def test_every_page_has_blocks_to_run():
    assert "README.md" in PAGES and len(PAGES) >= 4, PAGES
    for page in PAGES:
        assert any(kind == "run" for kind, _ in blocks(page)), f"{page} has no block to run"


@pytest.mark.parametrize("page", PAGES)
def test_page_commands_work_as_written(page, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    dev = Server(tmp_path / "data", extra_args=dev_options(page), command="dev")
    dev.start()
    env = dict(os.environ, DROVER_SERVER=dev.url, DROVER_DATA=dev.data_dir, DROVER=BIN,
               TMPDIR=str(tmp_path))
    env.pop("DROVER_TOKEN", None)
    try:
        for i, (kind, block) in enumerate(blocks(page)):
            if kind != "run":
                continue
            script = rewrite(block, dev, tmp_path)
            p = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                out, err = p.communicate(timeout=BLOCK_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: the block's processes only
                out, err = p.communicate()
                pytest.fail(f"{page} block {i} did not end within {BLOCK_TIMEOUT} s:\n{script}\n"
                            f"stdout: {out}\nstderr: {err}")
            assert p.returncode == 0, (f"{page} block {i} exited {p.returncode}:\n{script}\n"
                                       f"stdout: {out}\nstderr: {err}\n"
                                       f"drover dev: {dev_status(dev)}\nlog: {dev.read_log()}")
    finally:
        rc = dev.stop()
    assert rc == 0, dev.read_log()
