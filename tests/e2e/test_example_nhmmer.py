"""examples/nhmmer end to end: system 1 with the real nhmmer and real data from Debian packages.

A server and two agents, each labelled with the reference database it serves (db=hmmer-tutorial,
db=rfam-testsuite), with their metrics on loopback; examples/nhmmer/run.sh uploads the
databases and queries, builds the Rfam models with hmmbuild as drover jobs, and runs the
searches. The test then checks, on its own: every search ran on the agent that holds its
database; every hits table pushed back equals what nhmmer (and hmmbuild) give when run
directly here on the same files (no number is written into the test); each database was
downloaded once per agent (the agents' cache metrics), so the later searches linked it from
the cache; a second run downloads nothing at all.
"""
import os
import re
import shutil
import subprocess

import pytest
import requests

from agentutil import get_job, make_agent  # noqa: F401
from conftest import BIN, ROOT, free_port

EXAMPLE = os.path.join(ROOT, "examples", "nhmmer")
TUTORIAL = "/usr/share/doc/hmmer/examples/tutorial"
TESTSUITE = "/usr/share/doc/infernal/examples/testsuite"
NEEDED = {"nhmmer": "hmmer", "hmmbuild": "hmmer",
          f"{TUTORIAL}/dna_target.fa": "hmmer-examples", f"{TUTORIAL}/MADE1.hmm": "hmmer-examples",
          f"{TESTSUITE}/100k-4.fa": "infernal", f"{TESTSUITE}/tRNA.sto": "infernal"}


def check_installed():
    for what, pkg in NEEDED.items():
        found = os.path.exists(what) if what.startswith("/") else shutil.which(what)
        assert found, f"{what} is missing: install Debian's {pkg} (scripts/deps.sh test)"


def hits(tbl_text):
    """The hits of an nhmmer --tblout table: (target, query, hmmfrom, hmmto, alifrom, alito,
    strand, E-value text), comment lines left out."""
    out = []
    for line in tbl_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        out.append((f[0], f[2], int(f[4]), int(f[5]), int(f[6]), int(f[7]), f[11], f[12]))
    return sorted(out)


def nhmmer_direct(tmp_path, model, db, *flags):
    tbl = tmp_path / f"direct-{len(list(tmp_path.iterdir()))}.tbl"
    subprocess.run(["nhmmer", "--cpu", "1", "--noali", *flags, "--tblout", str(tbl), model, db],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    return hits(tbl.read_text())


def metric(port, name):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} not in the agent's metrics"
    return int(m.group(1))


def run_example(server, *dbs, timeout=600):
    env = dict(os.environ, DROVER=BIN, DROVER_SERVER=server.url, DROVER_TOKEN=server.admin_token)
    return subprocess.run(["bash", os.path.join(EXAMPLE, "run.sh"), *dbs], capture_output=True,
                          text=True, env=env, timeout=timeout)


def blob(server, uri):
    r = server.api().get("/v1/blobs/" + uri[len("s3://"):])
    assert r.status_code == 200, (uri, r.text)
    return r.content.decode()


@pytest.fixture
def two_agents(make_server, make_agent):
    check_installed()
    server = make_server("--heartbeat", "1")
    agents = {}
    for db in ("hmmer-tutorial", "rfam-testsuite"):
        port = free_port()
        a = make_agent(server, db, "--labels", f"db={db}", "--slots", "2",
                       "--listen", f"127.0.0.1:{port}")
        a.port = port
        agents[db] = a
    return server, agents


def test_nhmmer_searches_the_databases_on_their_agents(two_agents, tmp_path):
    server, agents = two_agents
    out = run_example(server, "hmmer-tutorial", "rfam-testsuite")
    assert out.returncode == 0, out.stdout + out.stderr
    submitted = re.findall(r"\$ drover submit: nhmmer (\S+)/(\S+)\n(\S+)\n", out.stdout)
    assert sorted((db, q) for db, q, _ in submitted) == [
        ("hmmer-tutorial", "MADE1.crick"), ("hmmer-tutorial", "MADE1.watson"),
        ("rfam-testsuite", "Vault"), ("rfam-testsuite", "snR75"), ("rfam-testsuite", "tRNA")]

    # the Rfam models, built by hmmbuild jobs, are what hmmbuild --dna makes here
    models = tmp_path / "models"
    models.mkdir()
    direct = tmp_path / "direct"
    direct.mkdir()
    for fam in ("tRNA", "Vault", "snR75"):
        subprocess.run(["hmmbuild", "--dna", str(models / f"{fam}.hmm"),
                        f"{TESTSUITE}/{fam}.sto"], check=True, stdout=subprocess.DEVNULL,
                       timeout=120)
        stored = blob(server, f"s3://nhmmer/models/{fam}.hmm")
        strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith(("DATE", "COM"))]  # noqa
        assert strip(stored) == strip((models / f"{fam}.hmm").read_text()), fam

    for db, query, job_id in submitted:
        j = get_job(server, job_id)
        assert j["state"] == "succeeded", j
        assert j["agent"] == db, j  # the agent labelled with its database ran it
        assert j["result"]["outputs"][0]["uri"] == f"s3://nhmmer/hits/{db}/{query}.tbl"
        got = hits(blob(server, f"s3://nhmmer/hits/{db}/{query}.tbl"))
        if db == "hmmer-tutorial":
            flag = "--" + query.split(".")[1]
            want = nhmmer_direct(direct, f"{TUTORIAL}/MADE1.hmm", f"{TUTORIAL}/dna_target.fa", flag)
        else:
            want = nhmmer_direct(direct, str(models / f"{query}.hmm"), f"{TESTSUITE}/100k-4.fa")
        assert got == want, (db, query)
        assert want, f"{query} has no hit in {db}: the example would show nothing"
        assert j["result"]["stdout"].startswith("# nhmmer"), j["result"]["stdout"][:200]
    # MADE1's hits on both strands (as nhmmer reports them: on the minus strand from > to)
    made1 = [h for db, q, _ in submitted if db == "hmmer-tutorial"
             for h in hits(blob(server, f"s3://nhmmer/hits/{db}/{q}.tbl"))]
    assert {h[6] for h in made1} == {"+", "-"}
    assert all((h[4] < h[5]) == (h[6] == "+") for h in made1)

    # each database was downloaded once by the agent that holds it, then linked from its cache
    tut, rfam = agents["hmmer-tutorial"], agents["rfam-testsuite"]
    assert metric(tut.port, "drover_agent_cache_fetches_total") == 1
    assert metric(tut.port, "drover_agent_cache_hits_total") + \
        metric(tut.port, "drover_agent_cache_waits_total") >= 1
    assert metric(rfam.port, "drover_agent_cache_fetches_total") == 1
    assert metric(rfam.port, "drover_agent_cache_hits_total") + \
        metric(rfam.port, "drover_agent_cache_waits_total") >= 2
    db_size = os.path.getsize(f"{TESTSUITE}/100k-4.fa")
    assert metric(rfam.port, "drover_agent_cache_bytes") == db_size

    # a second run: the databases are in the caches, nothing is downloaded again
    out = run_example(server, "hmmer-tutorial", "rfam-testsuite")
    assert out.returncode == 0, out.stdout + out.stderr
    assert metric(tut.port, "drover_agent_cache_fetches_total") == 1
    assert metric(rfam.port, "drover_agent_cache_fetches_total") == 1
    assert metric(rfam.port, "drover_agent_cache_hits_total") >= 5


def test_unknown_database_refused(two_agents):
    server, _ = two_agents
    out = run_example(server, "nr")
    assert out.returncode == 2
    assert "unknown database 'nr'" in out.stderr


def test_no_agent_for_the_database(make_server, make_agent):
    check_installed()
    server = make_server("--heartbeat", "1")
    make_agent(server, "plain")  # no db label
    out = run_example(server, "hmmer-tutorial")
    assert out.returncode == 1
    assert "no agent is labelled db=hmmer-tutorial" in out.stderr
