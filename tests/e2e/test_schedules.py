"""Schedules (POST /v1/triggers with "schedule", docs/api.md "Schedules") against a real server
and agent: a job submitted at each time of a cron expression (6 fields here: seconds, so the
tests take seconds), with the time in its placeholders and environment; overlap "skip" skips
a time while the run before is unfinished; a kill -9 fires no time twice and times missed
while the server was down fire once; rm stops it; a client sees its own; a workflow
schedule; bad input refused naming the field, nothing stored; the CLI.
"""
import calendar
import datetime
import json
import time
import zoneinfo

import pytest

from agentutil import make_agent, wait_job  # noqa: F401 (fixture)
from conftest import ok, refused, usage_error, wait_for
from test_triggers import client_token, jobs, log, sh, trigger_events

EVERY_2S = "*/2 * * * * *"


def at_ms(text):
    """ms since the epoch of an RFC 3339 UTC time of the API."""
    base, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(frac or 0)


def create(server, body, token=None):
    r = server.api(token).post("/v1/triggers", json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["schedule"] == body["schedule"] and t["prefix"] is None and t["input"] is None
    return t


def fires(server, tid, token=None):
    r = server.api(token).get(f"/v1/triggers/{tid}")
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["fires"]))  # oldest first


def settled(server, tid, n, token=None, timeout=30):
    """The schedule's fires (oldest first) once n of them are fired or failed."""
    def check():
        f = [x for x in fires(server, tid, token) if x["state"] != "pending"]
        return f if len(f) >= n else None
    return wait_for(check, timeout, f"{n} fires of schedule {tid}")


def test_a_schedule_submits_at_each_time_with_the_time(server, make_agent):
    make_agent(server, "w1")
    before = int(time.time() * 1000)
    t = create(server, {"schedule": EVERY_2S,
                        "job": sh('echo "{{time}} $DROVER_SCHEDULE_TIME"')})
    assert t["overlap"] == "allow" and t["owner"] == "admin"
    nxt = at_ms(t["next_at"])
    assert before < nxt <= before + 2000 + 1000 and nxt % 2000 == 0, t
    f = settled(server, t["id"], 3)
    times = [at_ms(x["time"]) for x in f]
    assert all(b - a == 2000 for a, b in zip(times, times[1:])), times  # each time, once
    assert times[0] > at_ms(t["created_at"])  # nothing before it was made
    # at its time: a timer of its own, not the server's tick a second apart (which made the
    # lateness anything from 0 to 1,000 ms)
    late = sorted(at_ms(x["fired_at"]) - at_ms(x["time"]) for x in f[:3])
    assert late[1] < 250, late
    for x in f[:3]:
        assert x["state"] == "fired" and x["error"] is None and "uri" not in x, x
        assert at_ms(x["fired_at"]) >= at_ms(x["time"])  # not early
        assert wait_job(server, x["job"])["state"] == "succeeded"
        assert log(server, x["job"]) == f"{x['time']} {x['time']}\n"
    # each fire is an event, with its time
    ev = trigger_events(server, 3)
    assert [(e["type"], e["trigger"], e["time"], e["job"]) for e in ev[:3]] == [
        ("trigger.fired", t["id"], x["time"], x["job"]) for x in f[:3]]
    assert "uri" not in ev[0] and "sha256" not in ev[0], ev[0]
    # a daily one made now has nothing due before tomorrow's midnight (UTC)
    d = create(server, {"schedule": "@daily", "job": sh("true")})
    midnight = (int(time.time()) // 86400 + 1) * 86400 * 1000
    assert at_ms(d["next_at"]) == midnight
    time.sleep(1.5)
    assert fires(server, d["id"]) == []


def test_overlap_skip_skips_while_the_run_before_runs(server, make_agent):
    make_agent(server, "w1", "--slots", "4")
    t = create(server, {"schedule": "* * * * * *", "overlap": "skip",
                        "job": sh("sleep 2.5")})
    assert t["overlap"] == "skip"
    f = settled(server, t["id"], 7, timeout=40)
    ran = [x for x in f if x["state"] == "fired"]
    skipped = [x for x in f if x["state"] == "failed"]
    assert len(ran) >= 2 and len(skipped) >= 3, f
    for x in skipped:
        assert x["error"].startswith("skipped: the run before, job ") and \
            x["error"].endswith("has not finished (overlap: skip)"), x
    # no two runs at once: each starts after the one before finished
    runs = [wait_job(server, x["job"]) for x in ran]
    for a, b in zip(runs, runs[1:]):
        assert a["state"] == b["state"] == "succeeded"
        assert at_ms(b["started_at"]) >= at_ms(a["finished_at"]), (a, b)
    # allow (the default) runs them side by side
    r = server.api().delete(f"/v1/triggers/{t['id']}")
    assert r.status_code == 200, r.text
    a = create(server, {"schedule": "* * * * * *", "job": sh("sleep 2.5")})
    f = settled(server, a["id"], 3, timeout=30)
    assert all(x["state"] == "fired" for x in f), f
    wait_for(lambda: sum(j["state"] == "running" for j in jobs(server)) >= 2, 20,
             "two runs of an 'allow' schedule at once")


def test_kill9_fires_no_time_twice_and_missed_times_once(make_server, make_agent, tmp_path):
    srv = make_server(data_dir=tmp_path / "data")
    t = create(srv, {"schedule": EVERY_2S, "job": sh("true")})
    settled(srv, t["id"], 2)
    srv.kill()
    down_at = int(time.time() * 1000)
    time.sleep(7)  # three or four times pass meanwhile
    srv.start()
    up_at = int(time.time() * 1000)
    f = settled(srv, t["id"], 4)
    times = [at_ms(x["time"]) for x in f]
    assert len(set(times)) == len(times), times  # no time twice
    missed = [x for x in times if down_at < x <= up_at]
    assert len(missed) <= 1, (times, down_at, up_at)  # once, not each
    after = [x for x in times if x > up_at]
    assert after, times  # and on it goes
    # the time fired late is the latest due when the server came back
    if missed:
        assert up_at - missed[0] < 2000 + 1000, (missed, up_at)
    make_agent(srv, "w1")
    for x in settled(srv, t["id"], len(f)):
        assert x["state"] == "fired", x
        assert wait_job(srv, x["job"])["state"] == "succeeded"
    assert len(jobs(srv)) >= len(f)


def test_a_fire_over_the_quota_waits_and_times_do_not_pile_up(make_server):
    srv = make_server("--tenant-max-queued", "1")
    quinn = client_token(srv, "quinn")
    t = create(srv, {"schedule": "* * * * * *", "job": sh("true")}, token=quinn)
    (first,) = settled(srv, t["id"], 1, token=quinn)[:1]  # its one queued job (no agent)
    wait_for(lambda: "tenant 'quinn' may have at most 1 queued jobs" in srv.read_log(), 20,
             "a fire to meet the quota")
    time.sleep(4)  # four more times pass while one fire waits
    f = fires(srv, t["id"], quinn)
    assert [x["state"] for x in f] == ["fired", "pending"], f  # one waits, no pile
    waiting = f[1]
    assert srv.api(quinn).post(f"/v1/jobs/{first['job']}/cancel").status_code == 200
    got = settled(srv, t["id"], 2, token=quinn)
    assert got[1]["time"] == waiting["time"] and got[1]["state"] == "fired"
    assert len(jobs(srv, quinn)) == 2


def test_fire_now_submits_at_once_out_of_its_times(server, make_agent):
    make_agent(server, "w1")
    alice, bob = client_token(server, "alice"), client_token(server, "bob")
    t = create(server, {"schedule": "@yearly", "overlap": "skip",
                        "job": sh('echo "now: $DROVER_SCHEDULE_TIME"')}, token=alice)
    before = int(time.time() * 1000)
    r = server.api(alice).post(f"/v1/triggers/{t['id']}/fire")
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["state"] == "fired" and before <= at_ms(got["time"]) <= int(time.time() * 1000)
    j = wait_job(server, got["job"])
    assert j["state"] == "succeeded" and j["owner"] == "alice", j
    assert log(server, got["job"], alice) == f"now: {got['time']}\n"
    (f,) = fires(server, t["id"], alice)  # recorded as its fires are, with its job
    assert (f["time"], f["state"], f["job"]) == (got["time"], "fired", got["job"])
    # another client's is not found; an upload trigger has no time to fire for
    assert server.api(bob).post(f"/v1/triggers/{t['id']}/fire").status_code == 404
    assert server.api(bob).post("/v1/triggers/nopenope/fire").status_code == 404
    up = server.api().post("/v1/triggers", json={"prefix": "s3://up/", "job": sh("true")})
    assert up.status_code == 201, up.text
    r = server.api().post(f"/v1/triggers/{up.json()['id']}/fire")
    assert r.status_code == 409 and "upload trigger" in r.json()["error"]["message"], r.text
    # the CLI
    out = ok(server.run_cli("trigger", "fire", t["id"], token=alice))
    assert out.startswith("fired job ") and " for " in out, out
    assert len(fires(server, t["id"], alice)) == 2
    usage_error(server.run_cli("trigger", "fire"), ["trigger", "fire"])


def test_fire_now_over_the_quota_is_refused_and_records_nothing(make_server):
    srv = make_server("--tenant-max-queued", "1")
    quinn = client_token(srv, "quinn")
    t = create(srv, {"schedule": "@yearly", "job": sh("true")}, token=quinn)
    assert srv.api(quinn).post(f"/v1/triggers/{t['id']}/fire").status_code == 201  # queued: 1
    r = srv.api(quinn).post(f"/v1/triggers/{t['id']}/fire")
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota", r.text
    assert len(fires(srv, t["id"], quinn)) == 1 and len(jobs(srv, quinn)) == 1


def test_pause_and_resume(server, make_agent):
    make_agent(server, "w1")
    alice, bob = client_token(server, "alice"), client_token(server, "bob")
    api = server.api(alice)
    t = create(server, {"schedule": "* * * * * *", "job": sh("true")}, token=alice)
    assert t["paused"] is False and t["paused_at"] is None
    settled(server, t["id"], 1, token=alice)
    r = api.post(f"/v1/triggers/{t['id']}/pause")
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["paused"] is True and p["next_at"] is None, p
    paused_at = at_ms(p["paused_at"])
    again = api.post(f"/v1/triggers/{t['id']}/pause").json()  # paused already: as it was
    assert again["paused_at"] == p["paused_at"]
    assert server.api(bob).post(f"/v1/triggers/{t['id']}/pause").status_code == 404
    time.sleep(1.5)  # a fire recorded just before the pause settles
    n = len(fires(server, t["id"], alice))
    time.sleep(3)  # three times pass, paused
    assert len(fires(server, t["id"], alice)) == n
    r = api.post(f"/v1/triggers/{t['id']}/resume")
    assert r.status_code == 200 and r.json()["paused"] is False and r.json()["next_at"], r.text
    resumed_at = int(time.time() * 1000)
    f = settled(server, t["id"], n + 2, token=alice)
    times = [at_ms(x["time"]) for x in f]
    assert not [x for x in times if paused_at + 1000 < x < resumed_at - 1000], (
        times, paused_at, resumed_at)  # the paused times fired not, not even late
    assert all(x["state"] == "fired" for x in f[n:]), f
    assert api.post(f"/v1/triggers/{t['id']}/resume").status_code == 200  # not paused: as is
    # an upload trigger's fires wait while it is paused, and go when it resumes
    up = server.api().post("/v1/triggers", json={"prefix": "s3://held/", "job": sh("true")})
    assert up.status_code == 201, up.text
    uid = up.json()["id"]
    assert server.api().post(f"/v1/triggers/{uid}/pause").status_code == 200
    assert server.api().put("/v1/blobs/held/a.txt", data=b"a").status_code == 200
    time.sleep(2)
    (w,) = fires(server, uid)
    assert w["state"] == "pending" and w["job"] is None, w
    assert server.api().post(f"/v1/triggers/{uid}/resume").status_code == 200
    (w,) = settled(server, uid, 1)
    assert w["state"] == "fired" and wait_job(server, w["job"])["state"] == "succeeded"
    # the CLI, and a pause outlives a restart
    out = ok(server.run_cli("trigger", "pause", t["id"], token=alice))
    assert out.startswith(f"trigger {t['id']} paused since "), out
    assert "paused:   since " in ok(server.run_cli("trigger", "show", t["id"], token=alice))
    assert any(line.startswith(t["id"]) and line.split()[-1] == "paused"
               for line in ok(server.run_cli("trigger", "ls", token=alice)).splitlines())
    server.restart()
    assert server.api(alice).get(f"/v1/triggers/{t['id']}").json()["paused"] is True
    assert "resumed: next at " in ok(server.run_cli("trigger", "resume", t["id"], token=alice))
    usage_error(server.run_cli("trigger", "pause"), ["trigger", "pause"])


def test_rm_stops_it_and_clients_see_their_own(server):
    alice, bob = client_token(server, "alice"), client_token(server, "bob")
    t = create(server, {"schedule": EVERY_2S, "job": sh("true")}, token=alice)
    assert t["owner"] == "alice"
    assert server.api(bob).get(f"/v1/triggers/{t['id']}").status_code == 404
    assert server.api(bob).delete(f"/v1/triggers/{t['id']}").status_code == 404
    assert server.api(bob).get("/v1/triggers").json()["triggers"] == []
    settled(server, t["id"], 1, token=alice)
    js = jobs(server, alice)
    assert js and all(j["owner"] == "alice" for j in js) and jobs(server, bob) == []
    r = server.api(alice).delete(f"/v1/triggers/{t['id']}")
    assert r.status_code == 200 and r.json()["schedule"] == EVERY_2S, r.text
    n = len(jobs(server, alice))
    time.sleep(4.5)  # two times or more pass
    assert len(jobs(server, alice)) == n
    assert server.api(alice).get(f"/v1/triggers/{t['id']}").status_code == 404


def test_a_workflow_schedule(server, make_agent):
    make_agent(server, "w1")
    wf = {"nodes": {"A": {"job": sh('echo "$DROVER_SCHEDULE_TIME"')},
                    "B": {"job": sh("echo b"), "depends_on": ["A"]}}}
    t = create(server, {"schedule": EVERY_2S, "workflow": wf})
    (x,) = settled(server, t["id"], 1)[:1]
    assert x["state"] == "fired" and x["workflow"], x
    w = wait_for(lambda: (lambda w: w if w["state"] == "succeeded" else None)(
        server.api().get(f"/v1/workflows/{x['workflow']}").json()), 30, "the workflow")
    assert log(server, w["nodes"]["A"]["job"]) == x["time"] + "\n"


def next_local(hour, minute, zone):
    """The next hh:mm wall-clock time in zone after now, as UTC ms (python's own tz code)."""
    z = zoneinfo.ZoneInfo(zone)
    now = datetime.datetime.now(z)
    day = now.date()
    for _ in range(3):
        t = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=z)
        if t > now:
            return int(t.timestamp() * 1000)
        day += datetime.timedelta(days=1)
    raise AssertionError("no next time")


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Asia/Kolkata",
                                  "Australia/Lord_Howe", "UTC"])
def test_a_schedule_in_a_time_zone(server, zone):
    t = create(server, {"schedule": "30 9 * * *", "timezone": zone, "job": sh("true")})
    assert t["timezone"] == zone
    assert at_ms(t["next_at"]) == next_local(9, 30, zone), t
    got = server.api().get(f"/v1/triggers/{t['id']}").json()
    assert (got["timezone"], got["next_at"]) == (zone, t["next_at"])
    # and without one: UTC
    u = create(server, {"schedule": "30 9 * * *", "job": sh("true")})
    assert u["timezone"] == "UTC" and at_ms(u["next_at"]) == next_local(9, 30, "UTC")


def test_a_schedule_fires_in_its_time_zone(server, make_agent):
    # every 2 seconds read in a zone 5:30 from UTC: seconds are the same everywhere
    make_agent(server, "w1")
    t = create(server, {"schedule": EVERY_2S, "timezone": "Asia/Kolkata",
                        "job": sh('echo "$DROVER_SCHEDULE_TIME"')})
    f = settled(server, t["id"], 2)
    assert at_ms(f[1]["time"]) - at_ms(f[0]["time"]) == 2000
    assert log(server, wait_job(server, f[0]["job"])["id"]) == f[0]["time"] + "\n"  # UTC


BAD = [
    ("bad minute", {"schedule": "61 * * * *"}, "schedule"),
    ("too few fields", {"schedule": "* * *"}, "schedule"),
    ("never fires", {"schedule": "0 0 30 2 *"}, "schedule"),
    ("reboot", {"schedule": "@reboot"}, "schedule"),
    ("not a string", {"schedule": 5}, "schedule"),
    ("null", {"schedule": None}, "schedule"),
    ("with a prefix", {"schedule": EVERY_2S, "prefix": "s3://up/"}, "schedule"),
    ("with an input", {"schedule": EVERY_2S, "input": "--in"}, "input"),
    ("bad overlap", {"schedule": EVERY_2S, "overlap": "never"}, "overlap"),
    ("overlap not a string", {"schedule": EVERY_2S, "overlap": True}, "overlap"),
    ("overlap of an upload trigger", {"prefix": "s3://up/", "overlap": "skip"}, "overlap"),
    ("unknown time zone", {"schedule": EVERY_2S, "timezone": "Mars/Olympus"}, "timezone"),
    ("time zone path", {"schedule": EVERY_2S, "timezone": "../../etc/passwd"}, "timezone"),
    ("time zone not a zone", {"schedule": EVERY_2S, "timezone": "zone.tab"}, "timezone"),
    ("time zone not a string", {"schedule": EVERY_2S, "timezone": 1}, "timezone"),
    ("time zone of an upload trigger", {"prefix": "s3://up/", "timezone": "UTC"}, "timezone"),
    ("a key", {"schedule": EVERY_2S, "job": dict(sh("true"), key="k")}, "job.key"),
    ("bad spec", {"schedule": EVERY_2S, "job": {"command": {}}}, "job.command.program"),
]


@pytest.mark.parametrize("name,body,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_the_field(server, name, body, field):
    body = dict(body)
    body.setdefault("job", sh("true"))
    r = server.api().post("/v1/triggers", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == field, r.text
    if name in ("bad minute", "too few fields", "never fires", "reboot"):
        assert err["message"].startswith("schedule: "), r.text  # says what is wrong
    assert server.api().get("/v1/triggers").json()["triggers"] == []  # nothing stored


def test_cli_events_show_a_fire_time_in_local_time(server):
    """drover events prints the fire's time as its own (local, as every time the CLI shows)."""
    t = create(server, {"schedule": "0 0 1 1 *", "job": sh("true")})
    fired = server.api().post(f"/v1/triggers/{t['id']}/fire").json()
    at = datetime.datetime.fromisoformat(fired["time"].replace("Z", "+00:00"))
    paris = at.astimezone(zoneinfo.ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S")
    follower = server.start_cli("events", "--since", "0", "--type", "trigger",
                                env={"TZ": "Europe/Paris"}, text=True)
    try:
        line = ""
        while " fired " not in line:
            line = follower.stdout.readline()
            assert line, "no fire in the stream"
    finally:
        follower.kill()
        follower.wait()
    assert line.split(maxsplit=3)[3] == f"trigger {t['id']} fired at {paris} -> job {fired['job']}\n"


def test_cli(server, make_agent, tmp_path):
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(sh("echo hi")))
    tid = ok(server.run_cli("trigger", "create", "--schedule", EVERY_2S, "--job", str(spec),
                            "--overlap", "skip")).strip()
    assert len(tid) == 36
    out = ok(server.run_cli("trigger", "ls"))
    assert tid in out and f"schedule {EVERY_2S} (overlap skip)" in out
    t2 = json.loads(ok(server.run_cli("trigger", "create", "-s", "0 9 * * *", "-z",
                                      "Europe/Paris", "-f", str(spec), "--json")))
    assert t2["timezone"] == "Europe/Paris"
    assert "schedule 0 9 * * * Europe/Paris" in ok(server.run_cli("trigger", "ls"))
    ok(server.run_cli("trigger", "rm", t2["id"]))
    usage_error(server.run_cli("trigger", "create", "-p", "s3://a/", "-z", "UTC", "-f",
                               str(spec)), ["trigger", "create"])
    listed = json.loads(ok(server.run_cli("trigger", "ls", "--json")))["triggers"]
    assert [(x["id"], x["overlap"]) for x in listed] == [(tid, "skip")]
    settled(server, tid, 1)
    out = ok(server.run_cli("trigger", "show", tid))
    assert f"on:       schedule {EVERY_2S} (overlap skip)" in out and "next:" in out, out
    first = fires(server, tid)[0]
    # times in local time, as drover jobs shows them
    local = datetime.datetime.fromisoformat(first["time"].replace("Z", "+00:00")).astimezone()
    assert any(line.split()[:3] == [*local.strftime("%Y-%m-%d %H:%M:%S").split(), first["state"]]
               for line in out.splitlines()), out
    assert json.loads(ok(server.run_cli("trigger", "show", tid, "--json")))["id"] == tid
    usage_error(server.run_cli("trigger", "show"), ["trigger", "show"])
    # the server's refusal, naming the field
    r = server.run_cli("trigger", "create", "-s", "* * 99 * *", "-f", str(spec), "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert json.loads(r.stderr)["error"]["field"] == "schedule"
    assert "schedule: " in refused(server.run_cli("trigger", "create", "-s", "* *", "-f",
                                                  str(spec)))
    # usage errors, before any call
    usage_error(server.run_cli("trigger", "create", "-s", EVERY_2S, "-p", "s3://a/", "-f",
                               str(spec)), ["trigger", "create"])
    usage_error(server.run_cli("trigger", "create", "-s", EVERY_2S, "-i", "x", "-f", str(spec)),
                ["trigger", "create"])
    usage_error(server.run_cli("trigger", "create", "-p", "s3://a/", "--overlap", "skip", "-f",
                               str(spec)), ["trigger", "create"])
    usage_error(server.run_cli("trigger", "ls", "--schedule", EVERY_2S), ["trigger", "ls"])
    assert "--schedule" in server.run_cli("trigger", "--help").stdout
    ok(server.run_cli("trigger", "rm", tid))
    assert json.loads(ok(server.run_cli("trigger", "ls", "--json")))["triggers"] == []
