"""examples/workflow end to end: system 3, a workflow of services of the hub, with the real
hmmbuild and nhmmer and real data from Debian packages.

A server and two agents; examples/workflow/run.sh defines the four services, uploads the
database and the alignments, submits the workflow (split into 4 shards, build the models,
one nhmmer search per shard, merge the hits) with `drover workflow submit` and prints its
status and the merged table. The test then checks, on its own: every node succeeded and the
nodes ran on the agents; each search read the objects its upstreams' succeeded attempts
wrote (pinned by their SHA-256); the merged table holds exactly the hits of hmmbuild --dna
and nhmmer run directly here on the whole database (no number is written into the test),
best E-value first. Bad arguments are refused before anything is submitted.
"""
import os
import re
import shutil
import subprocess

import pytest

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import BIN, ROOT

EXAMPLE = os.path.join(ROOT, "examples", "workflow")
TESTSUITE = "/usr/share/doc/infernal/examples/testsuite"
FAMILIES = ("tRNA", "Vault", "snR75")


def check_installed():
    for prog in ("nhmmer", "hmmbuild"):
        assert shutil.which(prog), f"{prog} is missing: install Debian's hmmer (scripts/deps.sh test)"
    for f in ["100k-4.fa"] + [f"{fam}.sto" for fam in FAMILIES]:
        assert os.path.exists(f"{TESTSUITE}/{f}"), \
            f"{TESTSUITE}/{f} is missing: install Debian's infernal (scripts/deps.sh test)"


def hits(tbl_text):
    """The hits of an nhmmer --tblout table, in order: (target, query, alifrom, alito, strand,
    E-value text, score text); comment lines left out."""
    out = []
    for line in tbl_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        out.append((f[0], f[2], int(f[6]), int(f[7]), f[11], f[12], f[13]))
    return out


def run_example(server, *args, timeout=600):
    env = dict(os.environ, DROVER=BIN, DROVER_SERVER=server.url, DROVER_TOKEN=server.admin_token)
    return subprocess.run(["bash", os.path.join(EXAMPLE, "run.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def api_get(server, path):
    r = server.api().get(path)
    assert r.status_code == 200, (path, r.text)
    return r


def test_workflow_shards_searches_and_merges(make_server, make_agent, tmp_path):
    check_installed()
    server = make_server()
    make_agent(server, "wf-a", "--slots", "2")
    make_agent(server, "wf-b", "--slots", "2")
    out = run_example(server, "-k", "4")
    assert out.returncode == 0, out.stdout + out.stderr
    wid = re.search(r"^workflow (\S+)$", out.stdout, re.M).group(1)
    w = api_get(server, f"/v1/workflows/{wid}").json()
    assert w["state"] == "succeeded", w
    names = {"build", "split", "merge"} | {f"search{i}" for i in range(1, 5)}
    assert set(w["nodes"]) == names
    # the status run.sh drew: each search under build and split, merge under the searches
    assert "    └─ merge  [succeeded]  after search1, search2, search3, search4" in out.stdout
    assert "  └─ search3  [succeeded]  after build, split" in out.stdout

    jobs = {n: api_get(server, f"/v1/jobs/{x['job']}").json() for n, x in w["nodes"].items()}
    # (which agent takes which search is up to who polls first: both may, or one)
    assert {j["agent"] for j in jobs.values()} <= {"wf-a", "wf-b"}
    assert {j["spec"]["service"] for j in jobs.values()} == \
        {"fasta-split", "hmmbuild-dna", "nhmmer-shard", "hits-merge"}
    outputs = {n: {o["uri"]: o["sha256"] for o in j["result"]["outputs"]}
               for n, j in jobs.items()}
    for i in range(1, 5):
        args = jobs[f"search{i}"]["spec"]["command"]["arguments"]
        db, query = args[-1], args[-2]
        assert outputs["split"][db["value"]] == db["sha256"] and f"/{i}.fa" in db["value"]
        assert outputs["build"][query["value"]] == query["sha256"]
    shards = [api_get(server, "/v1/blobs/" + u[len("s3://"):]).text
              for u in sorted(outputs["split"])]
    assert [s.count(">") for s in shards] == [10, 10, 10, 10]  # 40 sequences dealt out

    # the merged table: what hmmbuild and nhmmer give when run directly on the whole database
    merged_uri = jobs["merge"]["spec"]["command"]["stdout"]["value"]
    merged = api_get(server, "/v1/blobs/" + merged_uri[len("s3://"):]).text
    sto = tmp_path / "families.sto"
    sto.write_text("".join(open(f"{TESTSUITE}/{fam}.sto").read() for fam in FAMILIES))
    subprocess.run(["hmmbuild", "--dna", str(tmp_path / "f.hmm"), str(sto)], check=True,
                   stdout=subprocess.DEVNULL, timeout=120)
    subprocess.run(["nhmmer", "--cpu", "1", "--noali", "--tblout", str(tmp_path / "d.tbl"),
                    str(tmp_path / "f.hmm"), f"{TESTSUITE}/100k-4.fa"], check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    direct = hits((tmp_path / "d.tbl").read_text())
    got = hits(merged)
    assert direct, "nhmmer found nothing: the example would show nothing"
    assert sorted(got) == sorted(direct)
    assert [float(h[5]) for h in got] == sorted(float(h[5]) for h in got)  # best first
    assert {h[1] for h in got} == set(FAMILIES)
    assert merged.startswith("# target name")
    assert merged in out.stdout  # run.sh printed it


@pytest.mark.parametrize("args,text", [
    (["-k", "9"], "-k must be a number of shards from 1 to 8, not '9'"),
    (["-k", "x"], "-k must be a number of shards from 1 to 8"),
    (["/nonexistent/db.fa"], "cannot read /nonexistent/db.fa"),
    (["a", "b", "c"], "usage: examples/workflow/run.sh"),
])
def test_bad_arguments_submit_nothing(make_server, args, text):
    server = make_server()
    out = run_example(server, *args, timeout=60)
    assert out.returncode != 0 and text in out.stderr, out.stderr
    r = server.api().get("/v1/workflows")
    assert r.status_code == 200 and r.json()["workflows"] == []


def test_too_few_sequences_for_the_shards(make_server, tmp_path):
    server = make_server()
    small = tmp_path / "two.fa"
    small.write_text(">a\nACGT\n>b\nGGCC\n")
    out = run_example(server, "-k", "3", str(small), f"{TESTSUITE}/tRNA.sto", timeout=60)
    assert out.returncode == 1 and "has 2 sequences: too few for 3 shards" in out.stderr
    assert server.api().get("/v1/workflows").json()["workflows"] == []
