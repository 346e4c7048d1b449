"""Resource limits of native jobs (resources.memory_mb, cpus, pids) and retry budgets
(retry.on), with the real `drover agent` and real processes.

The agent makes its cgroups only below the groups this test process is in (it inherits
them): OWN/drover-INSTANCE/JOB-ATTEMPT for each controller of /proc/self/cgroup. The tests
find those folders the same way and check that they are gone when the job is over.
Tests that need cgroups are skipped, saying why, where the machine offers none this
process may write to; the rlimit fallback is tested with --limits rlimit everywhere.
"""
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from agentutil import (get_job, make_agent, process_gone, submit, wait_for,  # noqa: F401
                       wait_job)
from conftest import free_port, submitted

PY = sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3"
CONTROLLERS = ("memory", "pids", "cpu")


def own_groups():
    """{controller: folder} of the groups this process is in (v1 hierarchies, else v2)."""
    paths, v2 = {}, None
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctls, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and ctls == "":
                v2 = path
            for c in ctls.split(","):
                if c in CONTROLLERS:
                    paths[c] = path
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, rfields = left.split(), right.split()
            mounts.append((rfields[0], fields[3], fields[4], rfields[2].split(",")))
    out = {}
    for c in CONTROLLERS:
        for fstype, root, mnt, opts in mounts:
            if c in paths and fstype == "cgroup" and c in opts:
                rest = paths[c][len(root):] if root != "/" else paths[c]
                out[c] = mnt + (rest if rest != "/" else "")
        if c not in out and v2 is not None:
            for fstype, root, mnt, opts in mounts:
                if fstype == "cgroup2":
                    rest = v2[len(root):] if root != "/" else v2
                    d = mnt + (rest if rest != "/" else "")
                    try:
                        with open(os.path.join(d, "cgroup.controllers")) as g:
                            if c in g.read().split():
                                out[c] = d
                    except OSError:
                        pass
    return out


def status_limits(port):
    """The agent's limits as its own status endpoint shows them."""
    r = requests.get(f"http://127.0.0.1:{port}/v1/status", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["limits"]


def cgroups_usable():
    groups = own_groups()
    missing = [c for c in CONTROLLERS if c not in groups or not os.access(groups[c], os.W_OK)]
    return (not missing), f"no writable cgroup for {', '.join(missing)} below this process's own"


def needs_cgroups():
    ok, why = cgroups_usable()
    if not ok:
        pytest.skip(why)


def instance(agent):
    with open(os.path.join(agent.work_dir, "agent.instance")) as f:
        return f.read().strip()


def job_groups(agent, job, attempt=1):
    """The folders the job's cgroups have (or had) below this process's own groups."""
    inst = instance(agent)
    return {c: os.path.join(d, f"drover-{inst}", f"{job}-{attempt}")
            for c, d in own_groups().items()}


def base_groups(agent):
    inst = instance(agent)
    return [os.path.join(d, f"drover-{inst}") for d in own_groups().values()]


def groups_gone(agent, timeout=15):
    wait_for(lambda: not any(os.path.exists(d) for d in base_groups(agent)), timeout,
             "the agent's cgroups to be removed")


def py(code, **spec):
    spec["command"] = dict(spec.get("command", {}), program=PY, argv=["-c", code])
    return spec


# --- the agent says how it enforces limits ----------------------------------------------

def test_agent_says_how_it_enforces_limits(server, make_agent):
    port = free_port()
    a = make_agent(server, "say", "--listen", f"127.0.0.1:{port}")
    lim = status_limits(port)
    assert set(lim) == {"mechanism", "memory_mb", "cpus", "pids"}
    ok, _ = cgroups_usable()
    if ok:
        assert lim["mechanism"] in ("cgroup1", "cgroup2"), lim
        assert lim["memory_mb"] == lim["pids"] == lim["cpus"] == lim["mechanism"], lim
    else:
        assert lim["memory_mb"] in ("cgroup1", "cgroup2", "rlimit"), lim
    assert re.search(r"resource limits by (cgroup1|cgroup2|rlimit):", a.read_log()), a.read_log()
    assert a.info()["limits"] == lim  # the server shows what the agent registered

    port = free_port()
    r = make_agent(server, "say2", "--limits", "rlimit", "--listen", f"127.0.0.1:{port}")
    want = {"mechanism": "rlimit", "memory_mb": "rlimit", "cpus": "none", "pids": "none"}
    assert status_limits(port) == want
    assert r.info()["limits"] == want
    assert "jobs asking for a limit marked none run without it" in r.read_log()


def test_bad_limits_option(server, make_agent):
    a = make_agent(server, "badopt", "--limits", "cgroups", start=False)
    a.start(wait=False)
    assert a.wait(timeout=20) == 2
    assert "--limits must be auto, cgroup, rlimit or none, not 'cgroups'" in a.read_log()


# --- memory ---------------------------------------------------------------------------------

HOG = ("import sys\n"
       "chunks = []\n"
       "for i in range(64):\n"
       "    chunks.append(b'x' * (8 << 20))  # written, not only reserved\n"
       "print('survived', len(chunks) * 8, 'MiB')\n")


def test_memory_over_the_limit_ends_oom(server, make_agent):
    needs_cgroups()
    a = make_agent(server, "mem")
    job = submit(server, **py(HOG, resources={"memory_mb": 64}))
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "failed", j
    assert j["result"]["reason"] == "oom", j["result"]
    assert "resources.memory_mb (64 MiB)" in j["result"]["error"], j["result"]
    assert j["result"]["signal"] == signal.SIGKILL, j["result"]
    assert "survived" not in j["result"]["stdout"]
    # the CLI says oom, not only the SIGKILL it was done with
    r = server.run_cli("wait", job)
    assert r.returncode == 1 and "failed (oom, signal 9 · " in r.stdout, (r.stdout, r.stderr)
    groups_gone(a)
    # within its limit the same program runs to its end
    ok = submit(server, **py(HOG.replace("range(64)", "range(2)"), resources={"memory_mb": 64}))
    j = wait_job(server, ok, timeout=60)
    assert j["state"] == "succeeded", j
    assert "survived 16 MiB" in j["result"]["stdout"]
    groups_gone(a)


def test_memory_by_rlimit(server, make_agent):
    """--limits rlimit: RLIMIT_AS stops the allocation (MemoryError); no oom reason."""
    make_agent(server, "memrl", "--limits", "rlimit")
    job = submit(server, **py(HOG, resources={"memory_mb": 64}))
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "failed", j
    assert j["result"]["reason"] == "exit" and j["result"]["exit_code"] == 1, j["result"]
    log = server.api().get(f"/v1/jobs/{job}/log?stream=stderr").text
    assert "MemoryError" in log, log


# --- pids -------------------------------------------------------------------------------------

BOMB = ("import os, time\n"
        "kids = []\n"
        "for i in range(40):  # bounded: at most 40 forks\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as e:\n"
        "        print('fork failed:', e.strerror, flush=True)\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "print('forked', len(kids), flush=True)\n")


def test_fork_bomb_is_bounded_by_pids(server, make_agent):
    needs_cgroups()
    a = make_agent(server, "pids")
    job = submit(server, **py(BOMB, resources={"pids": 8}))
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "succeeded", j
    out = j["result"]["stdout"]
    assert "fork failed: Resource temporarily unavailable" in out, out
    forked = int(re.search(r"forked (\d+)", out).group(1))
    assert 1 <= forked <= 7, out  # the job's own process is one of the 8
    groups_gone(a)  # the sleeping children were killed with the job, and the groups removed
    # a job that fails for it: its error names the limit (the shell says only "Cannot fork")
    job = submit(server, command={"shell": "for i in 1 2 3 4 5 6 7 8 9; do sleep 5 & done; wait"},
                 resources={"pids": 4})
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "failed" and j["result"]["reason"] == "exit", j
    assert "refused: the job reached its resources.pids (4 processes)" in \
        (j["result"]["error"] or ""), j["result"]
    groups_gone(a)


# --- cpus --------------------------------------------------------------------------------------

SPIN = ("import time\n"
        "w0, c0 = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - w0 < 2.0:\n"
        "    pass\n"
        "print('ratio %.3f' % ((time.process_time() - c0) / (time.monotonic() - w0)))\n")


def test_cpus_limit_cpu_time(server, make_agent):
    needs_cgroups()
    a = make_agent(server, "cpu")
    job = submit(server, **py(SPIN, resources={"cpus": 0.2}))
    j = wait_job(server, job, states=("running",) + ("succeeded", "failed"), timeout=30)

    def quota():
        try:
            with open(os.path.join(job_groups(a, job)["cpu"], "cpu.cfs_quota_us")) as f:
                return f.read().strip()
        except OSError:
            try:
                with open(os.path.join(job_groups(a, job)["cpu"], "cpu.max")) as f:
                    return f.read().split()[0]
            except OSError:
                return None
    q = wait_for(quota, 10, "the job's cpu quota")
    assert q == "20000", q
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "succeeded", j
    ratio = float(re.search(r"ratio ([0-9.]+)", j["result"]["stdout"]).group(1))
    # its own CPU time against the wall clock: about 0.2, loosely (no claim on speed)
    assert ratio < 0.4, j["result"]["stdout"]
    groups_gone(a)


# --- groups and recovery -----------------------------------------------------------------------

def test_groups_of_a_killed_agent_are_removed_at_its_restart(server, make_agent, tmp_path):
    needs_cgroups()
    a = make_agent(server, "rec")
    pidfile = tmp_path / "child.pid"
    # the child leaves the job's process group and session, and clears its environment (no
    # DROVER_JOB_ID to find it by): only the cgroup still holds it
    code = ("import os, subprocess, time\n"
            "p = subprocess.Popen(['setsid', 'sleep', '300'], env={})\n"
            f"open('{pidfile}', 'w').write(str(p.pid))\n"
            "time.sleep(300)\n")
    job = submit(server, **py(code, resources={"pids": 20}))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the child's pid")
    child = int(pidfile.read_text())
    groups = job_groups(a, job)
    assert all(os.path.isdir(d) for d in groups.values()), groups
    with open(os.path.join(groups["pids"], "cgroup.procs")) as f:
        assert str(child) in f.read().split()
    a.kill()
    a.start()
    wait_for(lambda: not any(os.path.exists(d) for d in groups.values()), 20,
             "the job's cgroups to be removed")
    wait_for(lambda: process_gone(child), 10, "the escaped child to be killed")
    # by the restarted agent, in the cgroup; or, while its parent (the job's leader, not yet
    # dead of its parent-death signal) still held it, by the agent's guardian as its child
    log = a.read_log()
    assert re.search(r"killed [12] process\(es\) of a job of an earlier run of the agent, left in "
                     r"the cgroup '[^']*/drover-[^']*/" + job + "-1'", log) or re.search(
                         r"job=" + job + r" attempt=1 [12] of its processes survived the agent; "
                         r"killed", log), log
    j = wait_job(server, job, timeout=30)
    assert j["result"]["reason"] == "error", j["result"]
    groups_gone(a)


def test_job_without_resources_gets_no_cgroup(server, make_agent, tmp_path):
    a = make_agent(server, "nores")
    job = submit(server, **py("import time; time.sleep(1.5)"))
    wait_job(server, job, states=("running",), timeout=20)
    assert not any(os.path.exists(d) for d in job_groups(a, job).values())
    assert wait_job(server, job)["state"] == "succeeded"


# --- retry budgets ------------------------------------------------------------------------------

def attempts_of(j):
    return [(x["reason"], x["exit_code"]) for x in j["attempts"]]


def test_exit_code_retried_only_when_listed(server, make_agent):
    make_agent(server, "exitc")
    fast = {"backoff_s": 0.1, "max_backoff_s": 0.1, "max_attempts": 3}
    listed = submit(server, **py("raise SystemExit(3)",
                                 retry=dict(fast, on={"exit_codes": [3]})))
    other = submit(server, **py("raise SystemExit(3)",
                                retry=dict(fast, on={"exit_codes": [4], "timeout": 2})))
    j = wait_job(server, listed, timeout=60)
    assert j["state"] == "failed" and attempts_of(j) == [("exit", 3)] * 3, j["attempts"]
    assert j["retries"]["exit"] == 2 and j["retries"]["timeout"] == 0, j["retries"]
    j = wait_job(server, other, timeout=60)
    assert j["state"] == "failed" and attempts_of(j) == [("exit", 3)], j["attempts"]
    assert j["retries"]["exit"] == 0, j["retries"]
    # drover status says why each was not retried again
    for job, why in ((listed, "retried:   no: max_attempts (3) reached\n"),
                     (other, "retried:   no: exit code 3 is not in retry.on.exit_codes\n")):
        r = server.run_cli("status", job)
        assert r.returncode == 0 and why in r.stdout, r.stdout


def test_timeout_retried_n_times(server, make_agent):
    make_agent(server, "tmo", "--term-grace", "0.5")
    job = submit(server, timeout_s=0.5, **py(
        "import time; time.sleep(30)",
        retry={"max_attempts": 10, "backoff_s": 0.1, "max_backoff_s": 0.1,
               "on": {"timeout": 2, "exit_codes": [1]}}))
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "failed", j
    assert [x["reason"] for x in j["attempts"]] == ["timeout"] * 3, j["attempts"]
    assert j["retries"]["timeout"] == 2, j["retries"]
    assert j["spec"]["retry"]["on"] == {"exit_codes": [1], "signal": 0, "timeout": 2,
                                        "lost": 2, "oom": 0, "error": 0}
    r = server.run_cli("status", job)
    assert "retried:   no: retry.on.timeout allows 2 retries, 2 used\n" in r.stdout, r.stdout


def test_oom_budget(server, make_agent):
    needs_cgroups()
    a = make_agent(server, "oomb")
    job = submit(server, **py(HOG, resources={"memory_mb": 48},
                              retry={"max_attempts": 10, "backoff_s": 0.1, "max_backoff_s": 0.1,
                                     "on": {"oom": 1}}))
    j = wait_job(server, job, timeout=90)
    assert j["state"] == "failed", j
    assert [x["reason"] for x in j["attempts"]] == ["oom", "oom"], j["attempts"]
    assert j["retries"] == {"exit": 0, "signal": 0, "timeout": 0, "error": 0, "oom": 1,
                            "lost": 0}, j["retries"]
    groups_gone(a)


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,field", [
    ({"resources": {"memory_mb": 0}}, "resources.memory_mb"),
    ({"resources": {"memory": 64}}, "resources.memory"),
    ({"resources": {"cpus": -1}}, "resources.cpus"),
    ({"resources": {"cpus": "2"}}, "resources.cpus"),
    ({"resources": {"pids": 0}}, "resources.pids"),
    ({"resources": {"pids": 1.5}}, "resources.pids"),
    ({"resources": [64]}, "resources"),
    ({"retry": {"on": {"timeouts": 1}}}, "retry.on.timeouts"),
    ({"retry": {"on": {"oom": -1}}}, "retry.on.oom"),
    ({"retry": {"on": {"lost": 101}}}, "retry.on.lost"),
    ({"retry": {"on": {"exit_codes": [0]}}}, "retry.on.exit_codes[0]"),
    ({"retry": {"on": {"exit_codes": "3"}}}, "retry.on.exit_codes"),
    ({"retry": {"on": "timeout"}}, "retry.on"),
])
def test_bad_resources_and_retry_on(server, spec, field):
    spec = dict(spec, command={"program": "true"})
    r = server.api().post("/v1/jobs", json=spec)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_argument" and err["field"] == field, err
    assert field in err["message"]
    assert server.api().get("/v1/jobs").json()["jobs"] == []


def test_agent_with_limits_stops_clean(server, make_agent):
    """A drained agent that ran limited jobs exits 0, leaves no cgroup, and (in a sanitizer
    build) reports no leak or bad access at exit."""
    a = make_agent(server, "clean")
    jobs = [submit(server, **py("print('hi')", resources={"pids": 16, "memory_mb": 64,
                                                          "cpus": 0.5})),
            submit(server, **py(HOG, resources={"memory_mb": 48}))]
    for job in jobs:
        wait_job(server, job, timeout=60)
    assert get_job(server, jobs[1])["result"]["reason"] in ("oom", "exit")
    a.send(signal.SIGTERM)
    assert a.wait(timeout=60) == 0, a.read_log()
    assert "Sanitizer" not in a.read_log(), a.read_log()
    assert not any(os.path.exists(d) for d in base_groups(a))


def test_cli_submit_resources(server):
    job = submitted(server.run_cli("submit", "--memory-mb", "64", "--cpus", "0.5", "--pids", "32",
                                   "--", "true")).strip()
    assert get_job(server, job)["spec"]["resources"] == {"memory_mb": 64, "cpus": 0.5, "pids": 32}
    # the options add to a spec file's resources, and win over it
    r = server.run_cli("submit", "--cpus", "2", "-f", "-", input=json.dumps(
        {"command": {"program": "true"}, "resources": {"memory_mb": 100, "cpus": 1}}))
    job = submitted(r).strip()
    assert get_job(server, job)["spec"]["resources"] == {"memory_mb": 100, "cpus": 2, "pids": None}
    for args, msg in [(("--memory-mb", "3"), "--memory-mb must be a whole number from 4 to"),
                      (("--pids", "x"), "--pids must be a whole number from 1 to"),
                      (("--cpus", "0"), "--cpus must be a number from 0.01 to 1024, not '0'")]:
        r = server.run_cli("submit", *args, "--", "true")
        assert r.returncode == 2 and msg in r.stderr, r.stderr


TERM_COUNTER = ("import os, signal, subprocess, sys, time\n"
                "out = sys.argv[1]\n"
                "got = []\n"
                "signal.signal(signal.SIGTERM, lambda *a: got.append(1))\n"
                "if len(sys.argv) == 2:  # the leader: a child that leaves its group and session\n"
                "    subprocess.Popen([sys.executable, __file__, out + '.child', 'child'],\n"
                "                     start_new_session=True, env={})\n"
                "open(out + '.ready', 'w').close()\n"
                "deadline = time.monotonic() + 20\n"
                "while not got and time.monotonic() < deadline:\n"
                "    time.sleep(0.05)\n"
                "time.sleep(0.5)  # a second SIGTERM would come now\n"
                "# the leader waits (bounded) for its child's count: when the leader exits, what\n"
                "# is left of the job is killed\n"
                "while len(sys.argv) == 2 and not os.path.exists(out + '.child') and \\\n"
                "        time.monotonic() < deadline:\n"
                "    time.sleep(0.05)\n"
                "with open(out + '.tmp', 'w') as f:\n"
                "    f.write(str(len(got)))\n"
                "os.replace(out + '.tmp', out)  # whole when it is there\n")


def test_cancel_terms_every_process_of_a_cgroup_job_once(server, make_agent, tmp_path):
    """Cancel sends SIGTERM through the cgroup: to each process once, also to a child that left
    the job's process group and session and cleared its environment."""
    needs_cgroups()
    make_agent(server, "term", "--term-grace", "5")
    script = tmp_path / "term.py"
    script.write_text(TERM_COUNTER)
    out = tmp_path / "count"
    spec = {"command": {"program": PY, "argv": [str(script), str(out)]},
            "resources": {"pids": 32}, "timeout_s": 60}
    job = submit(server, **spec)
    wait_for(lambda: os.path.exists(f"{out}.ready") and os.path.exists(f"{out}.child.ready"), 20,
             "the job and its child to be ready")
    assert server.api().post(f"/v1/jobs/{job}/cancel").status_code == 200
    wait_for(lambda: out.exists() and out.read_text(), 20, "the leader's count")
    wait_for(lambda: (tmp_path / "count.child").exists()
             and (tmp_path / "count.child").read_text(), 20, "the child's count")
    assert out.read_text() == "1" and (tmp_path / "count.child").read_text() == "1"
    assert wait_job(server, job)["state"] == "cancelled"


# The agent in a mount namespace of its own where a tmpfs hides the cgroup hierarchies: a
# machine without usable cgroups (nothing outside that namespace changes).
NO_CGROUPS = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount -t tmpfs none /sys/fs/cgroup && exec "$@"', "sh"]


def no_cgroups_possible():
    try:
        return subprocess.run(NO_CGROUPS + ["true"], capture_output=True,
                              timeout=20).returncode == 0
    except OSError:
        return False


def test_agent_without_cgroups(server, make_agent):
    if not no_cgroups_possible():
        pytest.skip("cannot make a mount namespace (unshare --mount needs root)")
    strict = make_agent(server, "strict", "--limits", "cgroup", wrapper=NO_CGROUPS, start=False)
    strict.start(wait=False)
    assert strict.wait(timeout=20) == 1
    assert "--limits cgroup: no cgroup can be made below this agent's own" in strict.read_log()

    port = free_port()
    a = make_agent(server, "nocg", "--listen", f"127.0.0.1:{port}", wrapper=NO_CGROUPS)
    assert status_limits(port) == {"mechanism": "rlimit", "memory_mb": "rlimit", "cpus": "none",
                                   "pids": "none"}
    job = submit(server, **py("print('ran')", resources={"pids": 8, "cpus": 0.5}))
    j = wait_job(server, job, timeout=30)
    assert j["state"] == "succeeded" and j["result"]["stdout"] == "ran\n", j
    assert f"job={job} attempt=1 runs without its resources.{{pids, cpus}}" in a.read_log()
