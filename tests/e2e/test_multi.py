"""The leader lease on PostgreSQL: periodic work (lost agents, deadlines, event pruning,
webhook deliveries) runs on the server holding the row of the `leader` table, and moves to
another server once the leader's lease lapses (kill -9) or at once when it let it go
(a clean stop).

Today one server runs on a database at a time (the advisory claim, docs/operations.md), so
"another server" is one started after the first died, on another data folder: it must wait
for the dead leader's lease to lapse before it marks agents lost. Slow (PostgreSQL): `once`.
"""
import time

import pytest
import requests
from agentutil import make_agent, submit, wait_job  # noqa: F401 (a fixture)
from conftest import wait_for
from test_postgres import pg_db, pg_server, pg_servers, psql  # noqa: F401 (fixtures)

pytestmark = pytest.mark.once

TTL_S = 10  # LEADER_TTL_MS in src/server/server.c


def leader_row(db):
    out = psql(db, "SELECT holder || '|' || expires_at FROM leader WHERE name = 'periodic'")
    if not out:
        return None, 0
    holder, _, expires = out.rpartition("|")
    return holder, int(expires)


def is_leader(server):
    try:
        r = requests.get(server.url + "/metrics", timeout=5,
                         headers={"Authorization": f"Bearer {server.admin_token}"})
    except requests.RequestException:
        return None
    for line in r.text.splitlines():
        if line.startswith("drover_leader "):
            return line.split()[1] == "1"
    raise AssertionError("no drover_leader in /metrics: " + r.text[:2000])


def test_the_leader_lease_moves_when_the_leader_dies(pg_servers, pg_db, make_agent):  # noqa: F811
    first = pg_servers()
    wait_for(lambda: is_leader(first), 10, "the first server to lead")
    holder, expires = leader_row(pg_db)
    assert holder.endswith(first.data_dir), holder
    assert expires > time.time() * 1000
    # renewed while it lives
    wait_for(lambda: leader_row(pg_db)[1] > expires, 10, "the lease to be renewed")

    agent = make_agent(first, "w1")
    job = submit(first, retry={"max_attempts": 2, "backoff_s": 0},
                 command={"shell": "sleep 60"})
    wait_job(first, job, states=("running",))
    agent.kill()
    first.kill()  # kill -9: the lease stays until it lapses
    holder, expires = leader_row(pg_db)
    assert holder.endswith(first.data_dir), holder

    second = pg_servers()  # another data folder: another holder
    assert second.data_dir != first.data_dir
    # not the leader while the dead one's lease runs; the lost agent is not its business yet
    if time.time() * 1000 < expires - 2000:
        assert is_leader(second) is False
        assert second.api().get(f"/v1/jobs/{job}").json()["state"] == "running"
    wait_for(lambda: is_leader(second), TTL_S + 10, "the second server to take the lease over")
    assert leader_row(pg_db)[0].endswith(second.data_dir)
    assert time.time() * 1000 >= expires
    # now the periodic work runs here: w1 is lost (--lost-after 3), its job goes again
    j = wait_job(second, job, states=("queued",), timeout=30)
    assert j["attempt"] == 1 and j["attempts"][0]["reason"] == "lost", j
    assert "is the leader now" in second.read_log()

    # a clean stop lets the lease go at once: the next server need not wait for it to lapse
    assert second.stop() == 0
    assert leader_row(pg_db)[1] == 0
    third = pg_servers()
    wait_for(lambda: is_leader(third), 5, "the third server to lead at once")


def test_a_restarted_leader_leads_again_at_once(pg_servers, pg_db):  # noqa: F811
    first = pg_servers()
    wait_for(lambda: is_leader(first), 10, "the server to lead")
    first.kill()
    _, expires = leader_row(pg_db)
    first.start()  # the same data folder on the same machine: the same holder
    wait_for(lambda: is_leader(first), 5, "the restarted server to lead")
    assert time.time() * 1000 < expires, "it waited for its own lease to lapse"
