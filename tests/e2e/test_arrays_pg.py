"""Job arrays on PostgreSQL with two servers (docs/api.md "Arrays"): an array submitted to one
server is run by agents of both, each task exactly once (the array's cursor is claimed in the
database); a range cancelled through the other server stops there too. Slow: `once`."""
import pytest
from agentutil import agent_token, make_agent  # noqa: F401 (a fixture)
from conftest import wait_for
from test_postgres import pg_db, pg_server, pg_servers  # noqa: F401 (fixtures)

pytestmark = pytest.mark.once


def ran(path):
    return path.read_text().split() if path.exists() else []


def test_two_servers_claim_each_task_once(pg_servers, tmp_path, make_agent):  # noqa: F811
    a = pg_servers("--lost-after", "8")
    b = pg_servers("--lost-after", "8")
    token = agent_token(a)
    marks = tmp_path / "ran"
    r = a.api().post("/v1/jobs", json={
        "array": {"count": 60},
        # each task takes a while: wb alone (4 slots, no prefetch of jobs this long) cannot
        # have run them all before wa is up, as it could when they took a millisecond
        "command": {"shell": f'echo "$DROVER_ARRAY_INDEX" >> {marks}; sleep 0.3'}})
    assert r.status_code == 201, r.text
    aid = r.json()["array"]["id"]
    # b learns of the array from a's event: its agent polls b only
    make_agent(b, "wb", "--slots", "4", token=token)
    make_agent(a, "wa", "--slots", "4", token=token)

    def done():
        s = b.api().get(f"/v1/arrays/{aid}").json()
        return s["counts"]["succeeded"] == 60
    wait_for(done, 60, "all 60 tasks to succeed")
    assert sorted(int(x) for x in ran(marks)) == list(range(60))  # each exactly once
    agents = {t["agent"] for t in a.api().get(f"/v1/arrays/{aid}/tasks",
                                              params={"limit": 100}).json()["tasks"]}
    assert agents == {"wa", "wb"}, agents

    # a range cancelled through b: a stops handing those tasks out
    r = a.api().post("/v1/jobs", json={"array": {"count": 20}, "command": {"shell": "true"},
                                       "requires": {"pool": "later"}})
    aid2 = r.json()["array"]["id"]
    r = b.api().post(f"/v1/arrays/{aid2}/cancel", json={"from": 0, "to": 14})
    assert r.status_code == 200 and r.json()["cancelled"] == 15, r.text
    make_agent(a, "wl", "--labels", "pool=later", token=token)

    def done2():
        s = a.api().get(f"/v1/arrays/{aid2}").json()
        return s["counts"]["succeeded"] == 5
    wait_for(done2, 60, "the 5 tasks left to succeed")
    s = a.api().get(f"/v1/arrays/{aid2}").json()
    assert s["counts"]["cancelled"] == 15 and s["state"] == "cancelled", s
