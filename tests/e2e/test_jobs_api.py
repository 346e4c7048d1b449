"""The jobs API of docs/api.md against a real server: submit, get, list, wait, cancel, queues."""
import json
import re
import threading
import time

import pytest
import requests
from agentutil import make_agent  # noqa: F401 (a fixture)
from queuecounts import check_queue_counts

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

SEED = {
    "service": "nhmmer",
    "queue": "bio",
    "test": False,
    "command": {
        "program": "nhmmer",
        "arguments": [
            {"type": "parameter", "name": "--cpu", "value": "2"},
            {"type": "input", "name": "--infile", "value": "s3://bucket/path/to/input.txt"},
            {"type": "output", "name": "--outfile", "value": "s3://bucket/path/to/output.txt"},
            {"type": "parameter", "value": "positional"},
        ],
        "stdin": {"type": "pipe", "value": "raw input data"},
        "stdout": {"type": "pipe", "value": None},
        "stderr": {"type": "uri", "value": "s3://bucket/path/to/stderr.txt"},
        "input": ["s3://bucket/path/to/poly"],
        "output": ["s3://bucket/path/to/some/output"],
    },
}


def submit(api, spec, status=201):
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == status, r.text
    return r.json()


def test_submit_and_get(server):
    api = server.api()
    brief = submit(api, {"queue": "q1", "name": "hello", "priority": 7, "labels": {"p": "x"},
                         "command": {"program": "/bin/echo", "argv": ["hi", 2, True]}})
    assert UUID7.match(brief["id"])
    # the answer to a submission is the job's summary; GET has all of it
    assert set(brief) == {"id", "state", "queue", "priority", "key", "created_at", "listeners",
                          "warnings"}
    assert brief["listeners"] == 0  # no agent runs here
    assert brief["warnings"] == ["queue 'q1' has no listening agent (no agent is up)"]
    job = api.get(f"/v1/jobs/{brief['id']}").json()
    assert {k: job[k] for k in brief if k not in ("listeners", "warnings")} == \
        {k: v for k, v in brief.items() if k not in ("listeners", "warnings")}
    assert job["state"] == "queued"
    assert job["queue"] == "q1" and job["name"] == "hello" and job["priority"] == 7
    assert job["attempt"] == 0 and job["max_attempts"] == 3
    assert job["created_at"].endswith("Z") and "." in job["created_at"]
    args = job["spec"]["command"]["arguments"]
    assert [a["value"] for a in args] == ["hi", "2", "true"]
    assert job["labels"] == {"p": "x"} and job["result"] is None


def test_seed_message_accepted_verbatim(server):
    api = server.api()
    job = api.get(f"/v1/jobs/{submit(api, SEED)['id']}").json()
    assert job["service"] == "nhmmer" and job["queue"] == "bio"
    cmd = job["spec"]["command"]
    assert [a["type"] for a in cmd["arguments"]] == ["parameter", "input", "output", "parameter"]
    assert cmd["stdin"] == {"type": "pipe", "value": "raw input data"}
    assert cmd["stderr"] == {"type": "uri", "value": "s3://bucket/path/to/stderr.txt"}
    assert cmd["input"] == ["s3://bucket/path/to/poly"]


def test_seed_message_without_program_runs_its_service(server, make_agent):
    """Issue 13.1: the seed message names a `service` and has no `command.program`: the
    service's name is the program (until a service hub exists)."""
    api = server.api()
    seed = json.loads(json.dumps(SEED))
    del seed["command"]["program"]
    job = api.get(f"/v1/jobs/{submit(api, seed)['id']}").json()
    assert job["service"] == "nhmmer"
    assert job["spec"]["command"]["program"] == "nhmmer"
    # It really runs: a service named after a program on the agent's PATH.
    make_agent(server, "svc", "--queues", "svc")
    ran = submit(api, {"service": "echo", "queue": "svc", "retry": {"max_attempts": 1},
                       "command": {"arguments": [{"type": "parameter", "value": "from-service"}]}})
    done = api.get(f"/v1/jobs/{ran['id']}/wait?timeout_s=60").json()
    assert done["state"] == "succeeded", done
    assert done["result"]["stdout"] == "from-service\n"
    # Neither a service nor a program (nor a shell): still refused, naming command.program.
    r = api.post("/v1/jobs", json={"command": {"arguments": []}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "command.program"
    assert "command.program is required" in r.json()["error"]["message"]
    r = api.post("/v1/jobs", json=[{"service": "a"}, {"queue": "q", "command": {}}])
    assert r.status_code == 400 and r.json()["error"]["field"] == "[1].command.program"


def test_priority_delay_retry_are_stored(server):
    api = server.api()
    job = submit(api, {"priority": -5, "delay_s": 60, "timeout_s": 30,
                       "retry": {"max_attempts": 5, "backoff_s": 2, "max_backoff_s": 10},
                       "command": {"program": "true"}})
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert got["priority"] == -5 and got["max_attempts"] == 5
    assert got["spec"]["retry"] == {"max_attempts": 5, "backoff_s": 2, "max_backoff_s": 10,
                                    "on": None}
    assert got["spec"]["timeout_s"] == 30 and got["spec"]["delay_s"] == 60
    assert got["run_after"] > got["created_at"]


def test_ids_increase(server):
    api = server.api()
    ids = [submit(api, {"command": {"program": "true"}})["id"] for _ in range(20)]
    assert ids == sorted(ids)


def test_array_is_one_transaction(server):
    api = server.api()
    r = api.post("/v1/jobs", json=[{"queue": "arr", "command": {"program": "true"}}] * 5)
    assert r.status_code == 201
    assert len(r.json()["jobs"]) == 5
    bad = [{"queue": "arr", "command": {"program": "true"}},
           {"queue": "arr", "command": {"program": "true", "arguments": [{"type": "x"}]}}]
    r = api.post("/v1/jobs", json=bad)
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "[1].command.arguments[0].type"
    listed = api.get("/v1/jobs?queue=arr&limit=100").json()["jobs"]
    assert len(listed) == 5


def test_array_repeated_specs(server):
    """Repeats in a batch share their normalised spec (api_jobs.c): each is still its own job
    with the whole spec stored, a different spec between repeats is its own, and a repeat
    after a bad spec is still checked."""
    api = server.api()
    a = {"queue": "rep", "labels": {"k": "v"}, "command": {"program": "true", "argv": ["x"]}}
    b = {"queue": "rep", "priority": 5, "command": {"program": "false"}}
    jobs = submit(api, [a, a, b, a, dict(a)])["jobs"]
    assert len({j["id"] for j in jobs}) == 5
    assert [j["priority"] for j in jobs] == [0, 0, 5, 0, 0]
    specs = [api.get(f"/v1/jobs/{j['id']}").json() for j in jobs]
    first = specs[0]["spec"]
    assert first["command"]["program"] == "true" and first["retry"]["max_attempts"] >= 1
    assert [s["spec"] == first for s in specs] == [True, True, False, True, True]
    assert specs[2]["spec"]["command"]["program"] == "false"
    assert all(s["labels"] == {"k": "v"} for i, s in enumerate(specs) if i != 2)
    bad = {"queue": "rep", "command": {"program": "true"}, "nope": 1}
    r = api.post("/v1/jobs", json=[a, bad, bad])
    assert r.status_code == 400 and r.json()["error"]["field"] == "[1].nope"
    assert len(api.get("/v1/jobs?queue=rep&limit=100").json()["jobs"]) == 5
    keyed = {"key": "rep-1", "queue": "rep", "command": {"program": "true"}}
    r = api.post("/v1/jobs", json=[keyed, keyed])  # a key once a batch, even for equal specs
    assert r.status_code == 400 and r.json()["error"]["field"] == "[1].key", r.text
    assert len(api.get("/v1/jobs?queue=rep&limit=100").json()["jobs"]) == 5


def test_a_bad_batch_leaves_nothing(make_server):
    """Batches are written many rows per statement (store_job_insert_many): a bad spec
    anywhere (even last) and a batch over the tenant's max_queued (refused in the transaction,
    after its rows were written) leave no job and no event; a known key among new jobs is
    answered with its job, the others are stored."""
    server = make_server("--tenant-max-queued", "200")
    api = server.api()
    first = submit(api, {"queue": "bb", "key": "bb-1", "command": {"program": "true"}})
    plain = {"queue": "bb", "command": {"program": "true"}}
    bad_last = [plain] * 149 + [{"queue": "bb", "command": {"program": "true"}, "slots": 0}]
    r = api.post("/v1/jobs", json=bad_last)
    assert r.status_code == 400 and r.json()["error"]["field"] == "[149].slots", r.text
    mixed = [plain] * 70 + [{"queue": "bb", "key": "bb-1", "command": {"program": "x"}}] + \
        [plain] * 70
    jobs = submit(api, mixed)["jobs"]
    assert jobs[70]["id"] == first["id"] and jobs[70]["state"] == "queued"
    r = api.post("/v1/jobs", json=[plain] * 100)  # 141 queued + 100 > 200
    assert r.status_code == 429 and r.json()["error"]["queued"] == 141, r.text
    listed = api.get("/v1/jobs?queue=bb&limit=1000").json()["jobs"]
    assert len(listed) == 141
    assert api.get(f"/v1/jobs/{first['id']}").json()["spec"]["command"]["program"] == "true"
    marker = submit(api, plain)["id"]
    got, deadline = [], time.monotonic() + 20
    with requests.get(server.url + "/v1/events", params={"since": 0}, stream=True,
                      timeout=(5, 20),
                      headers={"Authorization": f"Bearer {server.admin_token}"}) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                got.append(json.loads(line[6:])["job"])
                if got[-1] == marker:
                    break
            assert time.monotonic() < deadline, f"no event of {marker} in 20 s: {len(got)} events"
    assert got == sorted(j["id"] for j in listed) + [marker]


def test_idempotency_key(server):
    api = server.api()
    first = submit(api, {"key": "k-1", "command": {"program": "true"}})
    again = submit(api, {"key": "k-1", "command": {"program": "other"}}, status=200)
    assert again["id"] == first["id"]
    stored = api.get(f"/v1/jobs/{first['id']}").json()
    assert stored["spec"]["command"]["program"] == "true"
    # a batch with a stored key among new ones answers that job in its place
    both = submit(api, [{"key": "k-2", "command": {"program": "a"}},
                        {"key": "k-1", "command": {"program": "b"}}])["jobs"]
    assert both[1]["id"] == first["id"] and both[0]["id"] != first["id"]


def test_a_key_twice_in_one_batch_is_refused(server):
    """The second spec of a key would be answered with the first one's job and its own spec
    dropped unseen: 400 naming the later spec's key, and nothing of the batch stored."""
    api = server.api()
    batch = [{"queue": "dupk", "command": {"program": "true"}},
             {"queue": "dupk", "key": "dup1", "command": {"argv": ["echo", "first"]}},
             {"queue": "dupk", "key": "other", "command": {"program": "true"}},
             {"queue": "dupk", "key": "dup1", "command": {"argv": ["echo", "second"]}}]
    r = api.post("/v1/jobs", json=batch)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_argument" and err["field"] == "[3].key"
    assert err["message"].startswith("[3].key: 'dup1' repeats the key of spec [1]"), err
    assert api.get("/v1/jobs?queue=dupk").json()["jobs"] == []
    r = api.post("/v1/jobs", json=batch[1:2] + batch[3:])
    assert r.status_code == 400 and r.json()["error"]["field"] == "[1].key", r.text
    assert "repeats the key of spec [0]" in r.json()["error"]["message"]
    jobs = submit(api, batch[:3])["jobs"]  # each key once: stored
    assert len({j["id"] for j in jobs}) == 3


def test_concurrent_same_key_one_job(server):
    api = server.api()
    ids, errors = [], []

    def go():
        try:
            r = server.api().post("/v1/jobs", json={"key": "race", "command": {"program": "x"}})
            ids.append(r.json()["id"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(ids) == 8 and len(set(ids)) == 1
    assert len(api.get("/v1/jobs?limit=100").json()["jobs"]) == 1


def test_test_probe_queues_nothing(server):
    api = server.api()
    r = api.post("/v1/jobs", json={"queue": "probe", "test": True})
    assert r.status_code == 200
    assert r.json() == {"queue": "probe", "listeners": 0,
                        "warnings": ["queue 'probe' has no listening agent (no agent is up)"]}
    assert api.get("/v1/jobs?queue=probe").json()["jobs"] == []


def test_list_filters_and_cursor(server):
    api = server.api()
    made = []
    for i in range(25):
        made.append(submit(api, {"queue": "a" if i % 2 else "b", "service": "s%d" % (i % 3),
                                  "labels": {"n": str(i % 5)}, "command": {"program": "true"}}))
    seen, after, pages = [], None, 0
    while pages < 20:
        q = "/v1/jobs?limit=4" + (f"&after={after}" if after else "")
        body = api.get(q).json()
        seen += [j["id"] for j in body["jobs"]]
        pages += 1
        after = body["next"]
        if not after:
            break
    assert seen == [j["id"] for j in reversed(made)]  # newest first, nothing twice
    a = api.get("/v1/jobs?queue=a&limit=100").json()["jobs"]
    assert len(a) == 12 and all(j["queue"] == "a" for j in a)
    s1 = api.get("/v1/jobs?service=s1&limit=100").json()["jobs"]
    assert len(s1) == 8
    lab = api.get("/v1/jobs?label=n:3&limit=100").json()["jobs"]
    assert len(lab) == 5 and all(j["labels"]["n"] == "3" for j in lab)
    api.post(f"/v1/jobs/{made[0]['id']}/cancel")
    c = api.get("/v1/jobs?state=cancelled").json()["jobs"]
    assert [j["id"] for j in c] == [made[0]["id"]]
    assert len(api.get("/v1/jobs?state=queued&queue=b&limit=100").json()["jobs"]) == 12


def test_wait_times_out_with_current_state(server):
    api = server.api()
    job = submit(api, {"command": {"program": "true"}})
    t0 = time.monotonic()
    r = api.get(f"/v1/jobs/{job['id']}/wait?timeout_s=1")
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert 0.9 <= time.monotonic() - t0 < 10


def test_wait_answers_when_cancelled(server):
    api = server.api()
    job = submit(api, {"command": {"program": "true"}})
    out = {}

    def waiter():
        out["r"] = server.api().get(f"/v1/jobs/{job['id']}/wait?timeout_s=30")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    t.join(30)
    assert time.monotonic() - t0 < 5
    assert out["r"].json()["state"] == "cancelled"


def test_wait_answers_the_whole_job_when_an_agent_ends_it(server, make_agent):
    """A waiter parked before an agent's report ends the job gets the whole record: spec,
    labels and result (the report's own read of a succeeded job leaves the spec out)."""
    api = server.api()
    spec = {"queue": "w", "labels": {"team": "x"}, "retry": {"max_attempts": 1},
            "command": {"program": "sh", "arguments": [
                {"type": "parameter", "value": "-c"},
                {"type": "parameter", "value": "sleep 0.5; echo done"}]}}
    jobs = [submit(api, spec)["id"] for _ in range(2)]
    out = {}

    def waiter(i):
        out[i] = server.api().get(f"/v1/jobs/{jobs[i]}/wait?timeout_s=60")

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    make_agent(server, "waited", "--queues", "w")
    for t in threads:
        t.join(90)
    for i in range(2):
        got = out[i].json()
        assert got["state"] == "succeeded", got
        assert got["labels"] == {"team": "x"}
        assert got["spec"]["command"]["program"] == "sh"
        assert got["result"]["stdout"] == "done\n" and got["result"]["exit_code"] == 0


def test_cancel(server):
    api = server.api()
    job = submit(api, {"command": {"program": "true"}})
    r = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "cancelled" and body["result"]["reason"] == "cancelled"
    assert body["finished_at"]
    r = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = api.post("/v1/jobs/01938c2e-0000-7000-8000-000000000000/cancel")
    assert r.status_code == 404


def test_queues(server):
    api = server.api()
    for q in ["x", "x", "y"]:
        submit(api, {"queue": q, "command": {"program": "true"}})
    job = submit(api, {"queue": "y", "command": {"program": "true"}})
    api.post(f"/v1/jobs/{job['id']}/cancel")
    qs = {q["name"]: q for q in api.get("/v1/queues").json()}
    assert qs["x"]["queued"] == 2 and qs["y"]["queued"] == 1 and qs["y"]["cancelled"] == 1
    assert qs["x"]["listeners"] == 0


def test_queue_counts_of_a_mix(server, make_agent):  # noqa: F811
    """/v1/queues as the admin and as clients after successes, a failure, cancels, a retry and
    a batch in two queues, and again after a restart."""
    check_queue_counts(server, make_agent, restart=server.restart)


def test_healthz_and_metrics_need_no_token(server):
    api = server.api(token="")
    assert api.get("/healthz").json()["status"] == "ok"
    assert "drover_commit_batches_total" in api.get("/metrics").text
