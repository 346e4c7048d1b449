"""examples/seed end to end: the seed message (examples/seed/README.md) run by a real agent.

A server and an agent are started as in the other tests; examples/seed/run.sh uploads the
inputs, checks that the queue has a listener, submits message.json and checks where the
outputs landed. The test then checks, on its own: the job, its stdout (a pipe), every
output object's content (the hits computed here independently), result.outputs against
the stored objects, and the stderr object. A second test runs the message with its
shapefile prefix missing: the worker fails and only its stderr is uploaded.
"""
import hashlib
import json
import os
import re
import subprocess

from agentutil import get_job, make_agent, submit, wait_job  # noqa: F401
from conftest import BIN, ROOT

SEED = os.path.join(ROOT, "examples", "seed")
DATA = os.path.join(SEED, "data")
BUCKET = "seed"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def blob(server, uri):
    assert uri.startswith("s3://")
    r = server.api().get("/v1/blobs/" + uri[len("s3://"):])
    return r.status_code, r.content


def fasta(text):
    records, name = [], None
    for line in text.splitlines():
        if line.startswith(">"):
            name = line[1:].strip()
            records.append([name, ""])
        elif line.strip():
            records[-1][1] += line.strip()
    return records


def expected_hits(query, targets):
    """(target, strand, from, to) of every exact match, found with a regex lookahead."""
    rc = query[::-1].translate(str.maketrans("ACGT", "TGCA"))
    hits = []
    for name, seq in targets:
        hits += [(name, "+", m.start() + 1, m.start() + len(query))
                 for m in re.finditer(f"(?={query})", seq)]
        hits += [(name, "-", m.start() + len(rc), m.start() + 1)
                 for m in re.finditer(f"(?={rc})", seq)]
    return hits


def run_example(server, timeout=120):
    env = dict(os.environ, DROVER=BIN, DROVER_SERVER=server.url, DROVER_TOKEN=server.admin_token)
    return subprocess.run(["bash", os.path.join(SEED, "run.sh")], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_seed_message_runs_and_outputs_land_where_it_says(server, make_agent):
    make_agent(server, "seed-worker")
    out = run_example(server)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r'"listeners": ?1\b', out.stdout), out.stdout  # the "test": true answer
    assert out.stdout.rstrip().endswith("run.sh: the outputs are where the message says")
    job_id = re.search(r"\$ drover submit -f message.json\n(\S+)\n", out.stdout).group(1)

    j = get_job(server, job_id)
    assert j["state"] == "succeeded", j
    assert j["service"] == "nhmmer" and j["queue"] == "default" and j["agent"] == "seed-worker"
    res = j["result"]
    assert res["reason"] == "exit" and res["exit_code"] == 0

    message = json.load(open(os.path.join(SEED, "message.json")))
    query_name, query = fasta(message["command"]["stdin"]["value"])[0]
    targets = fasta(open(os.path.join(DATA, "input.txt")).read())
    hits = expected_hits(query, targets)
    assert len(hits) >= 5 and {h[1] for h in hits} == {"+", "-"}

    # stdout: a pipe, kept with the job
    assert res["stdout"] == (f"label positional\nquery {query_name} length {len(query)}\n"
                             f"targets {len(targets)} hits {len(hits)}\n")

    # --outfile: the hits table at the output argument's URI
    status, body = blob(server, "s3://seed/path/to/hits.tbl")
    assert status == 200
    rows = [line.split("\t") for line in body.decode().splitlines()]
    assert rows[0] == ["# target", "query", "strand", "from", "to"]
    assert sorted((t, s, int(f), int(e)) for t, q, s, f, e in rows[1:]) == sorted(hits)
    assert all(r[1] == query_name for r in rows[1:])

    # the output prefix s3://seed/path/to/some/report: report.json and report.txt, not scratch.tmp
    status, body = blob(server, "s3://seed/path/to/some/report.json")
    assert status == 200
    report = json.loads(body)
    assert report["label"] == "positional" and report["cpu"] == 2
    assert report["hits"] == len(hits) and report["targets"] == len(targets)
    assert report["hits_per_target"] == {name: sum(h[0] == name for h in hits)
                                         for name, _ in targets}
    for ext in ("shp", "shx", "dbf"):  # the whole prefix was staged, each file intact
        data = open(os.path.join(DATA, f"poly.{ext}"), "rb").read()
        assert report["shapefile"][f"poly.{ext}"] == {"size": len(data), "sha256": sha(data)}
    status, body = blob(server, "s3://seed/path/to/some/report.txt")
    assert status == 200
    assert body.decode().splitlines()[0] == f"positional: {len(hits)} hits of query in 4 targets"
    listed = server.api().get("/v1/blobs/seed?prefix=path/to/some/").json()["objects"]
    assert sorted(o["key"] for o in listed) == ["path/to/some/report.json",
                                                "path/to/some/report.txt"]

    # stderr: to its URI, not captured as a log
    status, body = blob(server, "s3://seed/path/to/stderr.txt")
    assert status == 200
    err = body.decode().splitlines()
    assert err[0].startswith("nhmmer: started in ") and f"job {job_id}" in err[0]
    assert "OMP_NUM_THREADS=2" in err[0] and "--cpu 2" in err[0]
    assert err[1:] == ["nhmmer: shapefile poly.shp, poly.shx, poly.dbf found",
                       f"nhmmer: query {query_name} ({len(query)} nt) against {len(targets)} "
                       "targets from input.txt",
                       f"nhmmer: wrote {len(hits)} hits to hits.tbl, report.json, report.txt"]
    log = server.api().get(f"/v1/jobs/{job_id}/log?stream=stderr")
    assert log.status_code in (200, 404) and b"nhmmer:" not in log.content

    # result.outputs: one entry per uploaded object, matching what the store holds
    outs = {o["uri"]: o for o in res["outputs"]}
    assert sorted(outs) == ["s3://seed/path/to/hits.tbl", "s3://seed/path/to/some/report.json",
                            "s3://seed/path/to/some/report.txt", "s3://seed/path/to/stderr.txt"]
    for uri, o in outs.items():
        status, body = blob(server, uri)
        assert status == 200
        assert o["size"] == len(body) and o["sha256"] == sha(body), uri

    # the inputs are still there, untouched
    for name in ("input.txt", "poly.shp", "poly.shx", "poly.dbf"):
        status, body = blob(server, f"s3://seed/path/to/{name}")
        assert status == 200 and body == open(os.path.join(DATA, name), "rb").read()


def test_seed_message_without_its_shapefile_fails_with_its_stderr(server, make_agent):
    """The same message with an input prefix that matches nothing: the worker exits 3; only
    the stderr URI is uploaded (never partial results)."""
    make_agent(server, "seed-worker")
    api = server.api()
    assert api.put("/v1/blobs/seed/nopoly/input.txt",
                   data=open(os.path.join(DATA, "input.txt"), "rb").read()).status_code == 200
    spec = json.load(open(os.path.join(SEED, "message.json")))
    spec["command"]["program"] = os.path.join(SEED, "nhmmer")
    spec["command"] = json.loads(json.dumps(spec["command"]).replace("s3://seed/path/to/",
                                                                     "s3://seed/nopoly/"))
    spec.pop("test")
    job = submit(server, **spec)
    j = wait_job(server, job, timeout=60)
    assert j["state"] == "failed", j
    assert j["result"]["reason"] == "exit" and j["result"]["exit_code"] == 3
    status, body = blob(server, "s3://seed/nopoly/stderr.txt")
    assert status == 200 and b"poly.shp is missing from the working folder" in body
    assert [o["uri"] for o in j["result"]["outputs"]] == ["s3://seed/nopoly/stderr.txt"]
    assert blob(server, "s3://seed/nopoly/hits.tbl")[0] == 404
    assert api.get("/v1/blobs/seed?prefix=nopoly/some/").json()["objects"] == []
