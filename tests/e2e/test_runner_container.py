"""The container runner with Debian's podman, for real: jobs with `command.image` run in
a container made from an image the session builds (busybox-static) and pushes to a
registry it starts on loopback (podmanutil.py), so every pull really goes over HTTP.

Output, exit code, stdin, env and the work folder; `network: false`; timeout and cancel
stop the container itself (podman ps shows none left); a missing image ends the attempt
`error` naming it;
two jobs wanting an absent image share one pull, which is not charged to their timeout;
an agent restarted while a container runs removes it; an image job waits while only a
native agent serves its queue and runs when a podman agent joins; a container over its
resources.memory_mb ends `oom`.
"""
import time

import pytest

from agentutil import get_job, make_agent, submit, wait_for, wait_job  # noqa: F401
from podmanutil import (busybox_image, containers, image_present, podman, podman_dir,  # noqa: F401
                        podman_env, registry, registry_ports, remove_image, slow_registry)

pytestmark = pytest.mark.once

FAST = ("--heartbeat", "1", "--lost-after", "3")
# runc and cgroupfs through --engine-opt; the rest of the configuration is in podman_env
ENGINE = ("--engine-opt=--runtime=runc", "--engine-opt=--cgroup-manager=cgroupfs")


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


@pytest.fixture
def podman_agent(fast_server, make_agent, podman_env):
    def make(name="pod", *args):
        return make_agent(fast_server, name, "--runtime", "native,podman", "--term-grace", "1",
                          *ENGINE, *args, env=podman_env)
    return make


def log(server, job, stream="stdout"):
    return server.api().get(f"/v1/jobs/{job}/log?stream={stream}").text


def prefix(job):
    return f"drover-{job}-"


def test_image_job_output_exit_env_stdin(fast_server, podman_agent, busybox_image, podman_env):
    a = podman_agent()
    assert a.info()["runtimes"] == ["native", "podman"]
    remove_image(podman_env, busybox_image)
    script = ("echo out; echo err >&2; cat; echo \"FOO=$FOO\"; "
              "echo kept > result.txt; cat \"$DROVER_WORK_DIR/result.txt\"; pwd; "
              "test -f /bin/busybox && echo in-busybox; exit 3")
    job = submit(fast_server, command={
        "image": busybox_image, "program": "sh", "argv": ["-c", script],
        "stdin": {"type": "pipe", "value": "from stdin\n"}, "env": {"FOO": "bar baz"}})
    j = wait_job(fast_server, job, timeout=120)
    assert j["state"] == "failed", j
    assert j["result"]["reason"] == "exit" and j["result"]["exit_code"] == 3, j
    out = log(fast_server, job).splitlines()
    assert out[:4] == ["out", "from stdin", "FOO=bar baz", "kept"], out
    assert out[4].startswith(a.work_dir) and out[5] == "in-busybox", out  # cwd: its work folder
    assert log(fast_server, job, "stderr") == "err\n"
    assert image_present(podman_env, busybox_image)  # pulled when absent
    assert containers(podman_env, prefix(job)) == []  # removed after the run

    job = submit(fast_server, command={"image": busybox_image, "program": "echo",
                                       "argv": ["hello"]})
    j = wait_job(fast_server, job, timeout=60)
    assert j["state"] == "succeeded" and j["result"]["stdout"] == "hello\n", j


def test_a_program_not_in_the_image_is_said_as_natively(fast_server, podman_agent,
                                                       busybox_image):
    """The container's init cannot start it: the attempt ends `error` saying "cannot start"
    as natively, not with the init's exit status 1; a program's own 127 stays an exit."""
    podman_agent()
    job = submit(fast_server, command={"image": busybox_image, "program": "nosuchprog",
                                       "argv": ["x"]})
    j = wait_job(fast_server, job, timeout=120)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert j["result"]["error"] == (f"cannot start 'nosuchprog' in image '{busybox_image}': "
                                    "No such file or directory"), j
    job = submit(fast_server, command={"image": busybox_image, "program": "sh",
                                       "argv": ["-c", "nosuchprog"]})
    j = wait_job(fast_server, job, timeout=60)
    assert j["result"]["reason"] == "exit" and j["result"]["exit_code"] == 127, j
    assert "not found" in log(fast_server, job, "stderr")


def test_network_false_gives_no_network(fast_server, podman_agent, busybox_image):
    podman_agent()
    job = submit(fast_server, command={"image": busybox_image, "program": "ls",
                                       "argv": ["/sys/class/net"], "network": False})
    j = wait_job(fast_server, job, timeout=90)
    assert j["state"] == "succeeded" and j["result"]["stdout"].split() == ["lo"], j
    job = submit(fast_server, command={"image": busybox_image, "program": "ls",
                                       "argv": ["/sys/class/net"]})
    j = wait_job(fast_server, job, timeout=90)  # the engine's default network: more than lo
    assert j["state"] == "succeeded" and len(j["result"]["stdout"].split()) > 1, j


def running_container(env, job):
    r = podman(env, "ps", "--format", "{{.Names}}")
    return [n for n in r.stdout.split() if n.startswith(prefix(job))]


def test_timeout_stops_the_container(fast_server, podman_agent, busybox_image, podman_env):
    """The SIGTERM of the timeout stops a program that does not handle it: an init is the
    container's pid 1 (run --init) and passes it on (pid 1 itself would ignore it, and the
    agent would wait out its --term-grace, 30 s here, to send SIGKILL)."""
    agent = podman_agent("pod", "--term-grace", "30")
    job = submit(fast_server, timeout_s=4, command={"image": busybox_image, "program": "sleep",
                                                    "argv": ["600"]})
    wait_for(lambda: running_container(podman_env, job), 90, "the container to run")
    j = wait_job(fast_server, job, timeout=60)
    assert j["state"] == "failed" and j["result"]["reason"] == "timeout", j
    assert containers(podman_env, prefix(job)) == []
    assert "after SIGTERM: SIGKILL" not in agent.read_log(), agent.read_log()


def test_cancel_stops_the_container(fast_server, podman_agent, busybox_image, podman_env):
    podman_agent()
    job = submit(fast_server, command={"image": busybox_image, "program": "sleep",
                                       "argv": ["600"]})
    wait_job(fast_server, job, ("running",), timeout=90)
    # running from the start of the podman client; its container comes a moment later
    wait_for(lambda: running_container(podman_env, job), 30, "the container to run")
    r = fast_server.api().post(f"/v1/jobs/{job}/cancel")
    assert r.status_code == 200, r.text
    j = wait_job(fast_server, job, timeout=60)
    assert j["state"] == "cancelled", j
    # the container itself is gone, not only the podman client
    wait_for(lambda: containers(podman_env, prefix(job)) == [], 30, "the container to go")


def test_missing_image_is_an_error_naming_it(fast_server, podman_agent, registry):
    podman_agent()
    image = f"{registry}/drover-test/no-such-image:7"
    job = submit(fast_server, command={"image": image, "program": "true"})
    j = wait_job(fast_server, job, timeout=60)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert image in j["result"]["error"] and "cannot pull" in j["result"]["error"], j


def test_one_pull_for_two_jobs_not_charged_to_timeout(fast_server, podman_agent, busybox_image,
                                                      podman_env, slow_registry):
    a = podman_agent("pod", "--slots", "2")
    image = busybox_image.replace(busybox_image.split("/")[0], slow_registry.address)
    remove_image(podman_env, image)
    slow_registry.reset(delay_s=3)  # each blob: the pull takes 6 s or more
    jobs = [submit(fast_server, timeout_s=3, command={"image": image, "program": "echo",
                                                      "argv": [f"job {i}"]}) for i in range(2)]
    ends = [wait_job(fast_server, job, timeout=120) for job in jobs]
    for i, j in enumerate(ends):
        assert j["state"] == "succeeded", j  # a pull longer than timeout_s is not charged to it
        assert j["result"]["stdout"] == f"job {i}\n"
    blobs = slow_registry.blob_gets()
    assert blobs and len(blobs) == len(set(blobs)), blobs  # each blob fetched once: one pull
    assert a.read_log().count(f"image={image} pulled") == 1, a.read_log()
    slow_registry.reset()


def test_restart_removes_its_container(fast_server, make_agent, busybox_image, podman_env):
    # no --runtime: podman is found by its test, in the background (after the recovery)
    a = make_agent(fast_server, "pod", *ENGINE, env=podman_env)
    wait_for(lambda: "podman" in a.info()["runtimes"], 30, "podman to be offered")
    job = submit(fast_server, command={"image": busybox_image, "program": "sleep",
                                       "argv": ["600"]})
    wait_for(lambda: running_container(podman_env, job), 90, "the container to run")
    a.kill()  # SIGKILL: podman's conmon keeps the container, but not what runs in it:
    # the agent's guardian kills the processes whose environment names the job
    wait_for(lambda: not running_container(podman_env, job), 30,
             "the guardian to kill the container's processes")
    wait_for(lambda: "survived the agent; killed" in a.read_log(), 10, "the guardian's line")
    a.start()
    j = wait_job(fast_server, job, timeout=60)
    # error ("the agent restarted while the job was running"), or lost if the server gave up
    # on the agent first
    assert j["state"] == "failed" and j["result"]["reason"] in ("error", "lost"), j
    # the agent started again removes it
    wait_for(lambda: containers(podman_env, prefix(job)) == [], 30, "the container's removal")


def test_image_job_waits_for_a_container_agent(fast_server, make_agent, podman_agent,
                                               busybox_image):
    make_agent(fast_server, "plain", "--runtime", "native")
    r = fast_server.api().post("/v1/jobs", json={
        "command": {"image": busybox_image, "program": "echo", "argv": ["routed"]},
        "retry": {"max_attempts": 1}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["listeners"] == 0
    assert any("container runtime" in w for w in body["warnings"]), body
    job = body["id"]
    time.sleep(2.5)  # two heartbeats of the native agent: it is offered nothing
    j = get_job(fast_server, job)
    assert j["state"] == "queued" and j["waiting"]["reason"] == "no_agent", j
    assert "container runtime" in j["waiting"]["message"]
    podman_agent("pod")
    j = wait_job(fast_server, job, timeout=90)
    assert j["state"] == "succeeded" and j["agent"] == "pod", j
    assert j["result"]["stdout"] == "routed\n"
    r = fast_server.api().post("/v1/jobs", json={"test": True, "command": {
        "image": busybox_image, "program": "x"}})
    assert r.status_code == 200 and r.json()["listeners"] == 1, r.text


def test_memory_limit_oom(fast_server, podman_agent, busybox_image):
    podman_agent()
    spec = {"command": {"image": busybox_image, "program": "sh",
                        "argv": ["-c", "head -c 200m /dev/zero | tail > /dev/null"]},
            "resources": {"memory_mb": 32}, "retry": {"max_attempts": 1}}
    r = fast_server.api().post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    j = wait_job(fast_server, r.json()["id"], timeout=120)
    assert j["state"] == "failed" and j["result"]["reason"] == "oom", j
    assert "resources.memory_mb (32 MiB)" in j["result"]["error"], j
