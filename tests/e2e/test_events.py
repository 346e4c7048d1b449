"""The event stream: GET /v1/events (Server-Sent Events), against a real server and agent.

Every change of a job or an agent is an event with a sequence number, written in the
transaction of the change; a follower reads the committed history in order, resumes with
Last-Event-ID, filters by job, queue or type, and gets 410 when it is behind the retained
window.
"""
import json
import re
import socket
import threading
import time

import pytest
import requests

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import free_port, wait_for

TERMINAL = {"succeeded", "failed", "cancelled"}


class Stream:
    """A follower of /v1/events read on a thread: frames are (id, event, data) as they come,
    comments are counted."""

    def __init__(self, server, params=None, headers=None, token=None):
        h = {"Authorization": f"Bearer {token or server.admin_token}"}
        h.update(headers or {})
        self.resp = requests.get(server.url + "/v1/events", params=params or {}, headers=h,
                                 stream=True, timeout=(5, 60))
        self.frames = []
        self.comments = []
        self.lock = threading.Lock()
        if self.resp.status_code == 200:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        cur = {}
        try:
            for raw in self.resp.iter_lines(decode_unicode=True):
                if raw is None:
                    continue
                if raw == "":
                    if "data" in cur:  # a frame with only "retry:" sets the client's delay
                        with self.lock:
                            self.frames.append((int(cur["id"]), cur["event"],
                                                json.loads(cur["data"])))
                    cur = {}
                elif raw.startswith(":"):
                    with self.lock:
                        self.comments.append(raw)
                else:
                    k, _, v = raw.partition(": ")
                    cur[k] = v
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test or the server

    def events(self):
        with self.lock:
            return [d for _, _, d in self.frames]

    def wait(self, pred, timeout=20, what="events"):
        """The events so far, once pred(events) holds."""
        wait_for(lambda: pred(self.events()), timeout, what)
        return self.events()

    def close(self):
        # Shut the socket first: a close alone waits for the reader thread's blocked read
        # (up to its 60 s timeout) before the connection goes.
        try:
            self.resp.raw.connection.sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        self.resp.close()


@pytest.fixture
def streams():
    opened = []

    def open_stream(*a, **kw):
        s = Stream(*a, **kw)
        opened.append(s)
        return s

    yield open_stream
    for s in opened:
        s.close()


def submit(server, spec, token=None):
    r = server.api(token).post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def job_states(events, job_id):
    return [e["state"] for e in events if e.get("job") == job_id]


def test_a_job_lifecycle_in_order(make_server, make_agent, streams):  # noqa: F811
    server = make_server("--heartbeat", "1", "--lost-after", "3")
    st = streams(server)  # from now on
    make_agent(server, "w1")
    jid = submit(server, {"command": {"shell": "echo 50 half > \"$DROVER_PROGRESS\"; sleep 0.3"}})
    evs = st.wait(lambda ev: TERMINAL & set(job_states(ev, jid)), what="the job's end")
    assert job_states(evs, jid)[0] == "queued"
    assert job_states(evs, jid)[-1] == "succeeded"
    for s in ("leased", "running"):
        assert s in job_states(evs, jid)
    mine = [e for e in evs if e.get("job") == jid]
    assert [e["attempt"] for e in mine] == [0] + [1] * (len(mine) - 1)
    assert mine[-1]["reason"] == "exit" and mine[-1]["exit_code"] == 0
    assert mine[-1]["agent"] == "w1" and mine[-1]["queue"] == "default"
    assert any(e.get("percent") == 50 and e.get("message") == "half" for e in mine), mine
    # ids are the events' seq, strictly increasing; the agent's registration is there too
    with st.lock:
        ids = [i for i, _, _ in st.frames]
        kinds = {k for _, k, _ in st.frames}
    assert ids == sorted(set(ids))
    assert [d["seq"] for _, _, d in st.frames] == ids
    assert kinds == {"job", "agent"}
    assert any(e["type"] == "agent" and e["agent"] == "w1" and e["state"] == "up" for e in evs)


def test_since_replays_history_and_last_event_id_resumes(server, streams):
    ids = [submit(server, {"command": {"program": "/bin/true"}}) for _ in range(3)]
    everything = streams(server, {"since": 0})
    evs = everything.wait(lambda ev: len(ev) >= 3)
    assert [e["job"] for e in evs] == ids and {e["state"] for e in evs} == {"queued"}
    first = evs[0]["seq"]
    # a reconnecting EventSource sends the last id it saw: it wins over since
    resumed = streams(server, {"since": 0}, headers={"Last-Event-ID": str(first)})
    assert [e["job"] for e in resumed.wait(lambda ev: len(ev) >= 2)] == ids[1:]
    # new events reach both
    cancel = server.api().post(f"/v1/jobs/{ids[0]}/cancel")
    assert cancel.status_code == 200, cancel.text
    for s in (everything, resumed):
        got = s.wait(lambda ev: "cancelled" in job_states(ev, ids[0]))
        assert got[-1]["state"] == "cancelled" and got[-1]["reason"] == "cancelled"


def test_filters_by_job_queue_and_type(make_server, make_agent, streams):  # noqa: F811
    server = make_server("--heartbeat", "1", "--lost-after", "3")
    a = submit(server, {"queue": "qa", "command": {"program": "/bin/true"}})
    b = submit(server, {"queue": "qb", "command": {"program": "/bin/true"}})
    c = submit(server, {"queue": "qb", "command": {"program": "/bin/true"}})
    by_job = streams(server, {"since": 0, "job": f"{a},{c}"})
    by_queue = streams(server, {"since": 0, "queue": "qb"})
    agents = streams(server, {"since": 0, "type": "agent"})
    agent = make_agent(server, "w2", "--queues", "qa,qb")
    for s, want in ((by_job, {a, c}), (by_queue, {b, c})):
        evs = s.wait(lambda ev: all("succeeded" in job_states(ev, j) for j in want))
        assert {e["job"] for e in evs} == want
    agent.stop()
    evs = agents.wait(lambda ev: any(e["state"] == "left" for e in ev), what="the agent leaving")
    assert {e["type"] for e in evs} == {"agent"}
    assert [e["state"] for e in evs][0] == "up" and evs[-1]["agent"] == "w2"


@pytest.mark.parametrize("query,field", [
    ("since=-1", "since"), ("since=abc", "since"), ("since=99999", "since"),
    ("since=+1", "since"), ("since=%201", "since"), ("since=99999999999999999999", "since"),
    ("job=nope", "job"), ("job=", "job"), ("type=workflows", "type"), ("queue=Bad!", "queue"),
    ("workflow=x", "workflow"), ("colour=red", "colour"),
    ("queue=q2&type=agent", "type"), ("job=ffffffffff&type=object", "type"),
])
def test_bad_parameters_name_the_field(server, query, field):
    r = server.api().get("/v1/events?" + query)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field
    for bad in ("x1", "+1", "1 x"):
        r = server.api().get("/v1/events", headers={"Last-Event-ID": bad})
        assert r.status_code == 400 and r.json()["error"]["field"] == "Last-Event-ID"


def idle_workflow_and_array(server):
    """A workflow of one node and an array of two tasks on queue idle (no agent): (the
    workflow as POST answers it, the array's id)."""
    r = server.api().post("/v1/workflows", json={"nodes": {
        "A": {"job": {"queue": "idle", "command": {"program": "/bin/true"}}}}})
    assert r.status_code == 201, r.text
    w = r.json()
    r = server.api().post("/v1/jobs", json={"queue": "idle", "array": {"count": 2},
                                            "command": {"program": "/bin/true"}})
    assert r.status_code == 201, r.text
    return w, r.json()["array"]["id"]


def test_filters_take_ids_as_the_routes_do(server, streams):
    """job=, workflow= and array= take a unique prefix of an id (and job= ARRAY:INDEX, a task),
    as GET /v1/jobs/{id} does; what names nothing, or several, is refused naming the filter."""
    a = submit(server, {"queue": "idle", "command": {"program": "/bin/true"}})
    b = submit(server, {"queue": "idle", "command": {"program": "/bin/true"}})
    w, arr = idle_workflow_and_array(server)
    # ids begin with the time: a prefix of a is unique once it reaches the random part
    by_job = streams(server, {"since": 0, "job": f"{a[:24]},{arr}:1"})
    by_workflow = streams(server, {"since": 0, "workflow": w["id"][:10]})
    by_array = streams(server, {"since": 0, "array": arr[:10]})
    for s in (by_job, by_workflow, by_array):
        assert s.resp.status_code == 200, s.resp.text
    assert by_job.resp.headers["Cache-Control"] == "no-cache"  # once, not "no-cache, no-cache"
    # ARRAY:INDEX is followed before the task has a job (none has: no agent takes queue idle)
    evs = by_job.wait(lambda ev: len(ev) >= 1)
    assert {e.get("job") for e in evs} == {a}, evs
    evs = by_workflow.wait(lambda ev: len(ev) >= 2)  # the node's, the workflow's own
    assert {e.get("job") or e["workflow"] for e in evs} == {w["nodes"]["A"]["job"], w["id"]}, evs
    evs = by_array.wait(lambda ev: len(ev) >= 1)
    assert arr in (evs[0].get("array"), evs[0].get("job")), evs
    api = server.api()
    for query, field, status, says in (
            ("job=ffffffffff", "job", 400, "job 'ffffffffff' not found"),
            (f"job={a},abc", "job", 400, "at least 6 characters"),
            (f"job={a[:6]}", "job", 409, "matches several jobs"),  # ids begin with the time
            ("workflow=ffffffffff", "workflow", 400, "workflow 'ffffffffff' not found"),
            ("array=ffffffffff", "array", 400, "array 'ffffffffff' not found"),
            (f"job={arr}:7", "job", 400, "no task 7"),
            (f"job={arr}:x", "job", 400, "INDEX a whole number")):
        r = api.get("/v1/events?" + query)
        assert r.status_code == status, (query, r.text)
        err = r.json()["error"]
        assert err["field"] == field and says in err["message"], (query, err)


def test_tokens_are_needed(server):
    assert requests.get(server.url + "/v1/events", timeout=10).status_code == 401
    agent = server.api().post("/v1/tokens", json={"role": "agent", "name": "a1"}).json()["token"]
    assert server.api(agent).get("/v1/events").status_code == 403


def test_behind_the_window_is_410_with_where_it_starts(make_server, streams, tmp_path):
    server = make_server("--events-keep", "3")
    ids = [submit(server, {"command": {"program": "/bin/true"}}) for _ in range(8)]
    # the window is pruned a second after start, then each minute: restart to prune now
    server.restart()

    def gone():
        r = server.api().get("/v1/events?since=1", stream=True, timeout=10)
        try:
            return r.status_code == 410 and r.json()
        finally:
            r.close()

    body = wait_for(gone, 20, "the window to be pruned")
    err = body["error"]
    assert err["code"] == "gone" and err["field"] == "since"
    assert err["first_seq"] == 6 and "since=5" in err["message"]
    assert "events after 1 are no longer kept" in err["message"]
    # from the window's start, the newest three events are there
    st = streams(server, {"since": err["first_seq"] - 1})
    assert [e["job"] for e in st.wait(lambda ev: len(ev) >= 3)] == ids[5:]
    # since=0 is all that is kept: the window, not a 410
    st = streams(server, {"since": 0})
    assert [e["seq"] for e in st.wait(lambda ev: len(ev) >= 3)] == [6, 7, 8]
    # so is Last-Event-ID behind the window, naming the header; an empty one is no id
    r = server.api().get("/v1/events", headers={"Last-Event-ID": "2"}, timeout=10)
    assert r.status_code == 410 and r.json()["error"]["field"] == "Last-Event-ID", r.text
    st = streams(server, {"since": 7}, headers={"Last-Event-ID": ""})
    assert [e["seq"] for e in st.wait(lambda ev: len(ev) >= 1)] == [8]


def test_events_kept_for_a_delivery_leave_no_hole_in_the_window(make_server, streams):
    """Pruning keeps an old event a webhook still has to deliver; the window starts after the
    newest event pruned all the same, so a since that falls in the hole is a 410, not a
    stream that silently skips what was pruned."""
    server = make_server("--events-keep", "3")
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing answers: the delivery waits
    pinned = submit(server, {"delay_s": 3600, "notify_url": dead, "notify": "all",
                             "command": {"program": "/bin/true"}})
    ids = [submit(server, {"command": {"program": "/bin/true"}}) for _ in range(8)]
    server.restart()  # pruned a second after start

    def gone():
        r = server.api().get("/v1/events", params={"since": 1}, stream=True, timeout=10)
        try:
            return r.status_code == 410 and r.json()
        finally:
            r.close()

    err = wait_for(gone, 20, "the prune")["error"]
    assert err["first_seq"] == 7 and err["field"] == "since", err  # seq 1 kept, 2-6 gone
    st = streams(server, {"since": 0})
    got = st.wait(lambda ev: len(ev) >= 3)
    assert [e["seq"] for e in got] == [7, 8, 9] and [e["job"] for e in got] == ids[5:]
    assert pinned not in [e.get("job") for e in got]


def test_events_survive_kill_9(server, streams):
    ids = [submit(server, {"command": {"program": "/bin/true"}}) for _ in range(2)]
    server.restart()  # kill -9 and start again
    st = streams(server, {"since": 0})
    evs = st.wait(lambda ev: len(ev) >= 2)
    assert [e["job"] for e in evs] == ids and [e["seq"] for e in evs] == [1, 2]
    # numbering goes on after the restart, never reusing a seq
    submit(server, {"command": {"program": "/bin/true"}})
    assert st.wait(lambda ev: len(ev) >= 3)[2]["seq"] == 3


def test_a_batch_has_one_event_per_job_in_order_after_kill_9(server, streams):
    """A batch is written a chunk of rows at a time (store_job_insert_many): still one
    job.submitted event per job, in the batch's order, each job's row there after kill -9;
    a keyed job among them is its own event, a repeat of its key (in a batch after it) none."""
    plain = {"queue": "batch", "command": {"program": "/bin/true"}}
    other = {"queue": "batch", "priority": 3, "command": {"program": "/bin/false"}}
    keyed = {"queue": "batch", "key": "b-1", "command": {"program": "/bin/true"}}
    specs = [plain] * 100 + [keyed] + [other] * 30 + [plain] * 69
    r = server.api().post("/v1/jobs", json=specs)
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    new = [j["id"] for j in jobs]
    assert len(jobs) == 200 and len(set(new)) == 200
    r = server.api().post("/v1/jobs", json=[keyed, plain])  # the key again: that job
    assert r.status_code == 201 and r.json()["jobs"][0]["id"] == jobs[100]["id"], r.text
    new.append(r.json()["jobs"][1]["id"])
    server.restart()  # kill -9 and start again
    st = streams(server, {"since": 0})
    evs = st.wait(lambda ev: len(ev) >= 201)
    assert [e["job"] for e in evs] == new
    assert [e["seq"] for e in evs] == list(range(1, 202))
    assert {e["state"] for e in evs} == {"queued"} and {e["queue"] for e in evs} == {"batch"}
    listed = server.api().get("/v1/jobs?queue=batch&limit=1000").json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(new)
    assert [j["priority"] for j in jobs[101:131]] == [3] * 30


def test_keep_alive_comments(make_server, streams):
    server = make_server("--heartbeat", "1", "--lost-after", "3")
    st = streams(server)
    # the first comment says where the stream starts; keep-alives follow every 3 heartbeats
    wait_for(lambda: any("keep-alive" in c for c in st.comments), 15, "a keep-alive comment")
    assert st.comments[0].startswith(": drover events from seq ")


def test_shutdown_ends_the_stream(make_server, streams):
    server = make_server()
    st = streams(server)
    t0 = time.monotonic()
    assert server.stop() == 0
    st.thread.join(timeout=20)
    assert not st.thread.is_alive() and time.monotonic() - t0 < 20


# ---- the CLI: drover wait (many jobs, on the stream) and drover events ----


def test_cli_wait_on_many_jobs_exits_with_the_worst(make_server, make_agent):  # noqa: F811
    server = make_server("--heartbeat", "1", "--lost-after", "3")
    make_agent(server, "w1", "--slots", "2")
    ok_id = submit(server, {"command": {"shell": "sleep 0.3"}})
    bad = submit(server, {"retry": {"max_attempts": 1},
                          "command": {"shell": "echo 40 going > \"$DROVER_PROGRESS\"; sleep 0.5; "
                                               "exit 3"}})
    r = server.run_cli("wait", ok_id, bad)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert {ln.split(" (")[0] for ln in lines} == {f"{ok_id} succeeded", f"{bad} failed"}, lines
    assert f"{bad} failed (exit 3" in r.stdout
    # the states on the way, and the progress, were streamed on stderr
    assert f"{bad} running attempt 1 on w1" in r.stderr
    assert "40.0% going" in r.stderr
    # --json: the jobs' final JSON
    r = server.run_cli("wait", "--json", ok_id, bad)
    assert r.returncode == 3
    jobs = json.loads(r.stdout)["jobs"]
    assert [j["id"] for j in jobs] == [ok_id, bad]
    assert [j["state"] for j in jobs] == ["succeeded", "failed"]
    assert jobs[1]["result"]["exit_code"] == 3


def test_cli_names_a_retry(make_server, make_agent):  # noqa: F811
    """A retry's event (queued, with the ended attempt's reason) reads as one: the attempt
    named is the one that ended, not one that is queued."""
    server = make_server()
    make_agent(server, "w1")
    job = submit(server, {"retry": {"max_attempts": 2, "backoff_s": 0},
                          "command": {"shell": "sleep 0.3; exit 4"}})
    r = server.run_cli("wait", job)
    assert r.returncode == 4, r.stderr
    assert f"{job} queued again after attempt 1 (exit 4)" in r.stderr, r.stderr
    assert f"{job} failed (exit 4" in r.stdout
    follower = server.start_cli("events", "--since", "0", "--job", job, text=True)
    lines = []
    try:  # the job had ended: all its events are there, its end last (at most 7 of them)
        while len(lines) < 7 and not (lines and " failed " in lines[-1]):
            lines.append(" ".join(follower.stdout.readline().split()[3:]))
    finally:
        follower.kill()
        follower.wait()
    assert f"job {job} queued again after attempt 1 (exit 4)" in lines, lines
    assert lines[-1] == f"job {job} failed attempt 2 on w1 (exit 4)", lines


def test_cli_wait_timeout_and_jobs_already_done(make_server, make_agent):  # noqa: F811
    server = make_server("--heartbeat", "1", "--lost-after", "3")
    make_agent(server, "w1", "--slots", "2")
    done = submit(server, {"command": {"program": "/bin/true"}})
    assert server.run_cli("wait", done).returncode == 0  # ended before the wait began
    slow = submit(server, {"command": {"program": "sleep", "argv": ["30"]}})
    t0 = time.monotonic()
    r = server.run_cli("wait", "--timeout", "1", done, slow)
    assert r.returncode == 1 and time.monotonic() - t0 < 15
    assert f"job '{slow}' is still " in r.stderr and "after 1s" in r.stderr
    assert f"{done} succeeded" in r.stdout
    assert server.api().post(f"/v1/jobs/{slow}/cancel").status_code == 200


def test_cli_wait_rides_out_a_server_restart(make_server, make_agent):  # noqa: F811
    server = make_server("--heartbeat", "1", "--lost-after", "5")
    make_agent(server, "w1")
    jid = submit(server, {"command": {"program": "sleep", "argv": ["3"]}})
    waiter = server.start_cli("wait", jid, text=True)
    wait_for(lambda: server.api().get(f"/v1/jobs/{jid}").json()["state"] == "running", 20,
             "the job to run")
    # the waiter follows the stream (a server that never answered is an error, not a restart)
    wait_for(lambda: "drover_event_followers 1" in requests.get(server.url + "/metrics",
                                                                timeout=10).text,
             20, "the waiter to follow the events")
    time.sleep(0.3)
    server.restart()  # kill -9, then the same port again
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert out.startswith(f"{jid} succeeded")


def test_cli_events_prints_the_stream(server):
    follower = server.start_cli("events", "--json", "--since", "0", text=True)
    try:
        jid = submit(server, {"command": {"program": "/bin/true"}})
        line = json.loads(follower.stdout.readline())
        assert line["job"] == jid and line["state"] == "queued" and line["seq"] == 1
        assert server.api().post(f"/v1/jobs/{jid}/cancel").status_code == 200
        line = json.loads(follower.stdout.readline())
        assert line["state"] == "cancelled" and line["seq"] == 2
    finally:
        follower.kill()
        follower.wait()
    # for people: one line per event
    follower = server.start_cli("events", "--since", "0", "--job", jid, text=True)
    try:
        first = follower.stdout.readline().split()
        assert first[3:] == ["job", jid, "queued"], first
        # seq, then the time in this machine's zone, as the other commands show times
        assert first[0] == "1" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}",
                                                " ".join(first[1:3])), first
        assert follower.stdout.readline().split()[3:5] == ["job", jid]
    finally:
        follower.kill()
        follower.wait()


def test_cli_events_job_by_a_prefix_of_its_id(server):
    jid = submit(server, {"command": {"program": "/bin/true"}})
    # the stream takes a prefix of an id as the job's routes do
    follower = server.start_cli("events", "--since", "0", "--type", "job", "--job", jid[:13],
                                text=True)
    try:
        assert follower.stdout.readline().split()[3:] == ["job", jid, "queued"]
    finally:
        follower.kill()
        follower.wait()
    r = server.run_cli("events", "--job", "ffffffffff")
    assert r.returncode == 1, r.stderr
    assert r.stderr == "drover: cannot follow the events: job 'ffffffffff' not found\n", r.stderr


def test_cli_events_of_a_workflow_or_an_array_by_a_prefix(server):
    """--workflow and --array follow what the stream's workflow= and array= do, by a prefix of
    their ids as by a whole one."""
    other = submit(server, {"queue": "idle", "command": {"program": "/bin/true"}})
    w, arr = idle_workflow_and_array(server)
    for opt, whole, want in (("--workflow", w["id"], w["nodes"]["A"]["job"]),
                             ("--array", arr, arr)):
        follower = server.start_cli("events", "--json", "--since", "0", opt, whole[:14],
                                    text=True)
        try:
            first = json.loads(follower.stdout.readline())
            assert want in (first.get("job"), first.get("array")), first
            assert other not in (first.get("job"), first.get("array")), first
        finally:
            follower.kill()
            follower.wait()
    r = server.run_cli("events", "--workflow", "ffffffffff")
    assert r.returncode == 1, r.stderr
    assert r.stderr == "drover: cannot follow the events: workflow 'ffffffffff' not found\n"
    r = server.run_cli("events", "--workflow", w["id"], "--array", arr)
    assert r.returncode == 2 and "give one of --job, --workflow and --array" in r.stderr


JOB = "01938c2e-7d4a-7000-8000-000000000000"


@pytest.mark.parametrize("args,message", [
    (["events", "--since", "x"], "--since"), (["events", "--type", "workflows"], "--type"),
    (["events", "--job", "a,b"], "--job"), (["events", "extra"], "unexpected argument"),
    # job= and queue= follow job events: another --type would be dropped by the server
    (["events", "--job", JOB, "--type", "agent"],
     "--type agent cannot go with --job: a job's or a queue's events are job events"),
    (["events", "--type", "object", "--queue", "bio"], "--type object cannot go with --queue"),
    (["events", "--queue", "a", "--queue", "b"], "--queue is given once: 'a' or 'b'?"),
    (["events", "--type", "job", "--type", "agent"], "--type is given once: 'job' or 'agent'?"),
    (["wait"], "which job"), (["wait", ""], "empty"), (["wait", "--timeout", "x", "a"], "--timeout"),
])
def test_cli_events_and_wait_usage_errors(server, args, message):
    r = server.run_cli(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_a_revoked_tokens_streams_end(server, streams, make_agent):  # noqa: F811
    """A stream is one long call: once its token is revoked, its event stream ends (a last
    comment says why) and its followed log ends before more is sent; reconnecting is a 401.
    What is committed after that does not reach them."""
    r = server.api().post("/v1/tokens", json={"role": "client", "name": "dave"})
    assert r.status_code in (200, 201), r.text
    token = r.json()["token"]
    make_agent(server, "w1")
    jid = submit(server, {"command": {"shell": "echo before; sleep 3; echo after-revoke"}},
                 token=token)
    st = streams(server, {"since": 0}, token=token)
    st.wait(lambda ev: any(e.get("state") == "running" for e in ev), 30, "the job to run")
    log = requests.get(f"{server.url}/v1/jobs/{jid}/log", params={"follow": 1}, stream=True,
                       headers={"Authorization": f"Bearer {token}"}, timeout=(5, 60))
    assert log.status_code == 200
    assert server.api().delete("/v1/tokens/dave").status_code in (200, 204)
    st.thread.join(timeout=20)
    assert not st.thread.is_alive(), "the stream did not end"
    assert any("no longer valid" in c for c in st.comments), st.comments
    body = log.raw.read()  # ends once more output comes
    log.close()
    assert b"after-revoke" not in body, body
    wait_for(lambda: server.api().get(f"/v1/jobs/{jid}").json()["state"] == "succeeded", 30,
             "the job to end")
    assert server.api().get(f"/v1/jobs/{jid}/log").text == "before\nafter-revoke\n"
    assert not [e for e in st.events() if e.get("state") == "succeeded"]
    r = server.api(token).get("/v1/events", timeout=10)
    assert r.status_code == 401, r.text


def test_shutdown_says_so_on_the_stream(make_server, streams):
    server = make_server()
    st = streams(server)
    assert server.stop() == 0
    st.thread.join(timeout=20)
    assert any("shutting down" in c for c in st.comments), st.comments


def test_a_client_sees_its_own_jobs_events(server, streams):
    tokens = {}
    for name in ("alice", "bob"):
        r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
        assert r.status_code in (200, 201), r.text
        tokens[name] = r.json()["token"]
    mine = submit(server, {"command": {"program": "/bin/true"}}, token=tokens["alice"])
    theirs = submit(server, {"command": {"program": "/bin/true"}}, token=tokens["bob"])
    admins = submit(server, {"command": {"program": "/bin/true"}})
    alice = streams(server, {"since": 0}, token=tokens["alice"])
    everyone = streams(server, {"since": 0})
    assert {e["job"] for e in everyone.wait(lambda ev: len(ev) >= 3)} == {mine, theirs, admins}
    # bob's job changes after alice's: once alice has seen that, she would have seen bob's
    assert server.api(tokens["bob"]).post(f"/v1/jobs/{theirs}/cancel").status_code == 200
    assert server.api(tokens["alice"]).post(f"/v1/jobs/{mine}/cancel").status_code == 200
    evs = alice.wait(lambda ev: "cancelled" in job_states(ev, mine))
    assert {e["job"] for e in evs} == {mine}
    # naming another's job in the filter shows nothing of it either
    r = server.api(tokens["alice"]).get(f"/v1/events?since=0&job={theirs}", stream=True,
                                        timeout=(5, 2))
    assert r.status_code == 200
    body = b""
    try:
        for chunk in r.iter_content(None):
            body += chunk
    except requests.exceptions.ConnectionError:
        pass  # the read timed out: the stream stays open with nothing to say
    finally:
        r.close()
    assert theirs.encode() not in body and b"\nid: " not in body


def sha256_hex(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_object_events(server, streams):
    """Objects created or deleted through the API or a presigned URL are events
    (object.created / object.deleted with bucket, key, size, sha256), committed before the
    change is answered, seen by every client token (objects are shared by the clients)."""
    r = server.api().post("/v1/tokens", json={"role": "client", "name": "carol"})
    assert r.status_code in (200, 201), r.text
    carol = r.json()["token"]
    objects = streams(server, {"type": "object"})
    jobs_only = streams(server, {"type": "job"})
    api = server.api()
    hello, other = b"hello", b"x" * 70000

    assert api.put("/v1/blobs/b1/dir/a.txt", data=hello).status_code == 200
    # written before the answer: a new reader sees it at once
    r = server.api().get("/v1/events?since=0&type=object", stream=True, timeout=(5, 5))
    first = b""
    for chunk in r.iter_content(None):
        first += chunk
        if b"object.created" in first and first.endswith(b"\n\n"):
            break
    r.close()
    assert b'"key":"dir/a.txt"' in first, first

    url = api.post("/v1/presign", json={"method": "PUT", "uri": "s3://b1/b.bin"}).json()["url"]
    assert requests.put(url, data=other, timeout=10).status_code == 200  # no token
    assert api.delete("/v1/blobs/b1/dir/a.txt").status_code == 204
    url = api.post("/v1/presign", json={"method": "DELETE", "uri": "s3://b1/b.bin"}).json()["url"]
    assert requests.delete(url, timeout=10).status_code == 204
    # what changes nothing is no event: a missing object, a refused name, a broken PUT
    assert api.delete("/v1/blobs/b1/nothing").status_code == 404
    assert api.put("/v1/blobs/b1/a%01b", data=b"no").status_code == 400
    assert api.put("/v1/blobs/b1/late", data=b"z",
                   headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.put("/v1/blobs/b1/last", data=b"!").status_code == 200  # the marker of the end

    evs = objects.wait(lambda ev: any(e.get("key") == "last" for e in ev), what="object events")
    got = [(e["type"], e["bucket"], e["key"], e["size"], e["sha256"]) for e in evs]
    assert got == [
        ("object.created", "b1", "dir/a.txt", 5, sha256_hex(hello)),
        ("object.created", "b1", "b.bin", 70000, sha256_hex(other)),
        ("object.deleted", "b1", "dir/a.txt", 5, sha256_hex(hello)),
        ("object.deleted", "b1", "b.bin", 70000, sha256_hex(other)),
        ("object.created", "b1", "last", 1, sha256_hex(b"!")),
    ], got
    with objects.lock:
        assert [k for _, k, _ in objects.frames] == [e["type"] for e in evs]  # SSE event names
    assert all(e["seq"] < f["seq"] for e, f in zip(evs, evs[1:]))
    # another client sees them too; a job filter does not
    theirs = streams(server, {"since": 0}, token=carol)
    assert len(theirs.wait(lambda ev: len(ev) >= 5)) == 5
    submit(server, {"command": {"program": "/bin/true"}})
    assert all(e["type"] == "job" for e in jobs_only.wait(lambda ev: len(ev) >= 1))
    # the CLI prints them
    follower = server.start_cli("events", "--since", "0", "--type", "object", text=True)
    try:
        line = follower.stdout.readline().split()
        assert line[3:] == ["object", "s3://b1/dir/a.txt", "created", "5", "bytes"], line
        for _ in range(3):
            follower.stdout.readline()
        line = follower.stdout.readline().split()
        assert line[3:] == ["object", "s3://b1/last", "created", "1", "bytes"], line
    finally:
        follower.kill()
        follower.wait()


def test_object_events_bad_type(server):
    r = server.api().get("/v1/events?type=objects")
    assert r.status_code == 400 and r.json()["error"]["field"] == "type"
    assert "object" in r.json()["error"]["message"]
