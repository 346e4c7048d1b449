"""POST /v1/jobs/{id}/retry: a failed or cancelled job queued again, by hand, for one more
attempt (job/lifecycle.h), against a real server and agent."""
import json

from agentutil import get_job, make_agent, submit, wait_job  # noqa: F401 (fixture)
from conftest import help_shown, ok, refused, usage_error


def test_a_failed_job_runs_once_more(server, make_agent):
    make_agent(server, "retry-w1")
    api = server.api()
    job = submit(server, name="flaky", command={"shell": 'echo "try $DROVER_ATTEMPT"; exit 3'})
    j = wait_job(server, job)
    assert j["state"] == "failed" and j["attempt"] == 1
    r = api.post(f"/v1/jobs/{job}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued" and r.json()["result"] is None
    j = wait_job(server, job)
    assert j["state"] == "failed"  # its end is final: max_attempts is not raised
    assert j["attempt"] == 2 and j["max_attempts"] == 1
    assert [a["attempt"] for a in j["attempts"]] == [1, 2]
    assert [a["exit_code"] for a in j["attempts"]] == [3, 3]
    for n in (1, 2):
        r = api.get(f"/v1/jobs/{job}/log", params={"attempt": n})
        assert r.status_code == 200 and r.text == f"try {n}\n"
    # The event stream saw it queued again.
    r = api.get("/v1/events", params={"since": 0, "job": job}, stream=True, timeout=10)
    states = []
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            states.append(line.split('"state":"')[1].split('"')[0])
        if states.count("failed") == 2:
            break
    r.close()
    assert states.index("queued", 1) > states.index("failed")


def test_a_cancelled_job_runs_again_and_can_succeed(server, make_agent):
    api = server.api()
    job = submit(server, command={"shell": "echo ok"})  # no agent yet: it waits
    assert api.post(f"/v1/jobs/{job}/cancel").json()["state"] == "cancelled"
    r = api.post(f"/v1/jobs/{job[:13]}/retry")  # a prefix, as every /v1/jobs/{id} route takes
    assert r.status_code == 200 and r.json()["state"] == "queued"
    make_agent(server, "retry-w2")
    j = wait_job(server, job)
    assert j["state"] == "succeeded" and j["attempt"] == 1 and j["result"]["stdout"] == "ok\n"


def test_only_failed_or_cancelled_jobs_are_retried(server, make_agent):
    api = server.api()
    make_agent(server, "retry-w3")
    ok = submit(server, command={"shell": "true"})
    assert wait_job(server, ok)["state"] == "succeeded"
    r = api.post(f"/v1/jobs/{ok}/retry")
    assert r.status_code == 409
    assert "only a failed or cancelled job can be retried" in r.json()["error"]["message"]
    running = submit(server, command={"shell": "sleep 30"})
    wait_job(server, running, states=("running",))
    r = api.post(f"/v1/jobs/{running}/retry")
    assert r.status_code == 409 and "is running" in r.json()["error"]["message"]
    assert get_job(server, running)["state"] == "running"
    api.post(f"/v1/jobs/{running}/cancel")
    assert api.post("/v1/jobs/00000000-0000-7000-8000-000000000000/retry").status_code == 404
    r = api.post("/v1/jobs/abc/retry")
    assert r.status_code == 400 and r.json()["error"]["field"] == "id"
    assert api.post(f"/v1/jobs/{ok}/retry", data="x" * 5000).status_code == 413
    # A client sees only its own jobs: another's is not found.
    t = api.post("/v1/tokens", json={"role": "client", "name": "mallory"}).json()["token"]
    r = server.api(t).post(f"/v1/jobs/{ok}/retry")
    assert r.status_code == 404
    # An agent token may not.
    t = api.post("/v1/tokens", json={"role": "agent", "name": "an-agent"}).json()["token"]
    assert server.api(t).post(f"/v1/jobs/{ok}/retry").status_code == 403


def test_cli_retry(server, make_agent):
    job = submit(server, command={"shell": 'echo "try $DROVER_ATTEMPT"; test "$DROVER_ATTEMPT" = 2'})
    make_agent(server, "retry-cli")
    assert wait_job(server, job)["state"] == "failed"
    assert ok(server.run_cli("retry", job[:13])) == f"retrying {job}: queued\n"  # its whole id
    j = wait_job(server, job)
    assert j["state"] == "succeeded" and j["attempt"] == 2 and j["result"]["stdout"] == "try 2\n"
    err = refused(server.run_cli("retry", job))
    assert f"job '{job}' is succeeded: only a failed or cancelled job can be retried" in err
    r = server.run_cli("retry", "--json", "00000000-0000-7000-8000-000000000000")
    assert r.returncode == 1 and json.loads(r.stderr)["error"]["code"] == "not_found", r.stderr
    cancelled = submit(server, queue="nobody", command={"shell": "true"})
    server.api().post(f"/v1/jobs/{cancelled}/cancel")
    got = json.loads(ok(server.run_cli("retry", "--json", cancelled)))
    assert got["id"] == cancelled and got["state"] == "queued"
    usage_error(server.run_cli("retry"), ["retry"])
    usage_error(server.run_cli("retry", ""), ["retry"])
    # several IDs: each its own call, one refused does not stop the next (exit 1)
    server.api().post(f"/v1/jobs/{cancelled}/cancel")
    r = server.run_cli("retry", "00000000-0000-7000-8000-000000000000", cancelled)
    assert r.returncode == 1 and f"retrying {cancelled}: queued" in r.stdout, r
    assert "not_found" in r.stderr or "not found" in r.stderr, r.stderr
    usage_error(server.run_cli("retry", "--queue", "q", cancelled), ["retry"])
    help_shown(server.run_cli("retry", "--help"), "retry")


def test_follow_the_attempt_a_retried_job_runs_next(server, make_agent):
    """GET /log?follow=1&attempt=N, N the attempt a queued job runs next: the answer waits for
    it and holds its output alone (without attempt it would start with the last one's)."""
    api = server.api()
    w = make_agent(server, "retry-w5")
    job = submit(server, command={"shell": 'echo "try $DROVER_ATTEMPT"; [ "$DROVER_ATTEMPT" -ge 2 ]'})
    assert wait_job(server, job)["state"] == "failed"
    w.stop()  # no agent: the retried job waits
    assert api.post(f"/v1/jobs/{job}/retry").json()["state"] == "queued"
    # not followed, or past the next one, or on a job that will not run again: no such attempt
    r = api.get(f"/v1/jobs/{job}/log", params={"attempt": 2})
    assert r.status_code == 404 and r.json()["error"]["field"] == "attempt", r.text
    r = api.get(f"/v1/jobs/{job}/log", params={"attempt": 3, "follow": 1})
    assert r.status_code == 404 and r.json()["error"]["field"] == "attempt", r.text
    r = api.get(f"/v1/jobs/{job}/log", params={"attempt": 2, "follow": 1}, stream=True, timeout=30)
    assert r.status_code == 200
    make_agent(server, "retry-w6")
    assert r.text == "try 2\n"  # the answer ended with the attempt
    assert wait_job(server, job)["state"] == "succeeded"
    r = api.get(f"/v1/jobs/{job}/log", params={"attempt": 3, "follow": 1})
    assert r.status_code == 404 and "it has ended" in r.json()["error"]["message"], r.text
    # cancelled while it waits for the next attempt: the answer ends, empty
    other = submit(server, queue="nobody-serves", command={"shell": "echo never"})
    r = api.get(f"/v1/jobs/{other}/log", params={"attempt": 1, "follow": 1}, stream=True, timeout=30)
    assert r.status_code == 200
    assert api.post(f"/v1/jobs/{other}/cancel").json()["state"] == "cancelled"
    assert r.text == ""
