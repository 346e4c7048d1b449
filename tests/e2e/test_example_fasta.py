"""examples/fasta end to end: the async file-processing flow (examples/fasta/README.md).

A server and an agent are started as in the other tests; examples/fasta/client.py
generates a small FASTA file, uploads it with curl to a presigned PUT URL, submits the
job, polls its progress and downloads the JSON result through a presigned GET URL.
While it runs, the test polls the job itself and must see the progress move through
several distinct values. The result and the per-sequence records are checked against
values computed here from the generated file, with a different parser.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import time

from agentutil import get_job, make_agent  # noqa: F401
from conftest import ROOT, read_text, wait_for

CLIENT = os.path.join(ROOT, "examples", "fasta", "client.py")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def stats(text):
    """The expected statistics of a FASTA text: split on '>' (the worker parses by lines)."""
    records = []
    for rec in text.split(">")[1:]:
        header, _, body = rec.partition("\n")
        seq = "".join(body.split()).upper()
        records.append((header.split()[0], seq))
    lengths = sorted((len(s) for _, s in records), reverse=True)
    total = sum(lengths)
    acc, n50 = 0, None
    for length in lengths:
        acc += length
        if 2 * acc >= total:
            n50 = length
            break
    gc = sum(s.count("G") + s.count("C") for _, s in records)
    at = sum(s.count("A") + s.count("T") for _, s in records)
    return records, {"sequences": len(records), "total_length": total, "gc_count": gc,
                     "gc_content": gc / (gc + at), "n_count": sum(s.count("N") for _, s in records),
                     "n50": n50, "min_length": lengths[-1], "max_length": lengths[0],
                     "mean_length": total / len(records)}


def test_fasta_flow_with_progress(server, make_agent, tmp_path):
    make_agent(server, "fasta-worker")
    folder = tmp_path / "client"
    env = dict(os.environ, DROVER_SERVER=server.url, DROVER_TOKEN=server.admin_token)
    out_path = tmp_path / "client.out"
    with open(out_path, "wb") as out:
        client = subprocess.Popen(
            [sys.executable, CLIENT, "--size-mb", "3", "--seed", "11", "--chunk-kb", "256",
             "--chunk-delay", "0.25", "--poll", "0.1", "--timeout", "90", "--dir", str(folder)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        def submitted():
            found = re.search(r"^job (\S+) submitted$", read_text(out_path), re.M)
            assert found or client.poll() is None, "client.py ended: " + read_text(out_path)
            return found
        m = wait_for(submitted, 60, "the client to submit its job")
        job_id = m.group(1)

        # the test's own polling: the progress moves through several values
        seen = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            j = get_job(server, job_id)
            p = j.get("progress")
            if p and (not seen or seen[-1] != p["percent"]):
                seen.append(p["percent"])
            if j["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert j["state"] == "succeeded", j
        rc = client.wait(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    output = read_text(out_path)
    assert rc == 0, output

    between = [p for p in seen if 0 < p < 100]
    assert len(set(between)) >= 4, seen
    assert seen == sorted(seen), seen  # it only moves forward
    assert seen[-1] == 100.0 and j["progress"]["message"].startswith("done: ")
    shown = re.findall(r"^progress +([0-9.]+)% +chunk \d+ of 12: \d+ sequences$", output, re.M)
    assert len(set(shown)) >= 3, output  # the client printed the moving progress too
    assert re.search(r"^progress 100\.0%  done: ", output, re.M), output

    # the file the client generated and uploaded
    data = (folder / "input.fa").read_bytes()
    assert 3_000_000 <= len(data) < 3_200_000
    records, want = stats(data.decode())
    assert want["sequences"] >= 50 and want["n_count"] > 0

    # the result: downloaded by the client through a presigned GET URL, as stored
    res = j["result"]
    outs = {o["uri"]: o for o in res["outputs"]}
    assert len(outs) == 2
    result_uri = next(u for u in outs if u.endswith("/result.json"))
    records_uri = next(u for u in outs if u.endswith("/records.tsv"))
    assert result_uri.startswith("s3://fasta/results/")
    for uri, o in outs.items():
        body = server.api().get("/v1/blobs/" + uri[len("s3://"):]).content
        assert o["size"] == len(body) and o["sha256"] == sha(body), uri
        if uri == result_uri:
            assert (folder / "result.json").read_bytes() == body
    result = json.loads((folder / "result.json").read_text())
    assert result["input_sha256"] == sha(data) and result["input_size"] == len(data)
    assert result["chunks"] == 12  # 3 MB in 256 KiB chunks
    for k, v in want.items():
        if isinstance(v, float):
            assert abs(result[k] - v) < 1e-9, (k, result[k], v)
        else:
            assert result[k] == v, (k, result[k], v)
    assert 0.45 < result["gc_content"] < 0.55

    # the records: one line per sequence, in order
    body = server.api().get("/v1/blobs/" + records_uri[len("s3://"):]).text
    assert body.splitlines() == [f"{name}\t{len(s)}\t{s.count('G') + s.count('C')}\t"
                                 f"{s.count('N')}" for name, s in records]

    # the input object is the uploaded file, and the job ran it from the agent
    input_uri = next(a["value"] for a in j["spec"]["command"]["arguments"] if a["type"] == "input")
    assert sha(server.api().get("/v1/blobs/" + input_uri[len("s3://"):]).content) == sha(data)
    assert j["agent"] == "fasta-worker" and j["service"] == "fasta-stats"


def test_sharded_mode_upload_triggers_split_array_and_reduce(server, make_agent, tmp_path):
    """--shards: the upload alone fires the workflow (no job call from the client), the file
    is split over two agents as an array, and the reduce step's result is the file's."""
    make_agent(server, "shard-worker-1")
    make_agent(server, "shard-worker-2")
    folder = tmp_path / "client"
    env = dict(os.environ, DROVER_SERVER=server.url, DROVER_TOKEN=server.admin_token)
    r = subprocess.run(
        [sys.executable, CLIENT, "--size-mb", "2", "--seed", "5", "--shards", "3",
         "--chunk-kb", "128", "--poll", "0.1", "--timeout", "120", "--dir", str(folder)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"^trigger \S+ on s3://fasta/sharded-3/ created", out, re.M), out
    assert "submitted" not in out  # no "file uploaded" call: the upload fired it
    wf_id = re.search(r"^the upload fired workflow (\S+)$", out, re.M).group(1)
    assert re.search(r"stats succeeded \(3/3 shards done\) \| reduce succeeded$", out, re.M), out

    data = (folder / "input.fa").read_bytes()
    records, want = stats(data.decode())
    result = json.loads((folder / "result.json").read_text())
    assert result["input_sha256"] == sha(data) and result["input_size"] == len(data)
    assert result["shards"] == 3
    for k, v in want.items():
        if isinstance(v, float):
            assert abs(result[k] - v) < 1e-9, (k, result[k], v)
        else:
            assert result[k] == v, (k, result[k], v)
    # the same as the unsharded worker on the whole file
    whole = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "fasta",
                                                         "fasta_stats.py"),
                            "--out", str(tmp_path / "whole.json"), str(folder / "input.fa")],
                           capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stderr
    unsharded = json.loads((tmp_path / "whole.json").read_text())
    assert {k: v for k, v in result.items() if k != "shards"} == \
        {k: v for k, v in unsharded.items() if k != "chunks"}
    body = server.api().get(f"/v1/blobs/fasta/results/{sha(data)}/records.tsv").text
    assert body.splitlines() == [f"{name}\t{len(s)}\t{s.count('G') + s.count('C')}\t"
                                 f"{s.count('N')}" for name, s in records]

    # the workflow: three nodes, the middle one an array of 3 tasks run by both agents
    wf = server.api().get(f"/v1/workflows/{wf_id}").json()
    assert wf["state"] == "succeeded"
    array_id = wf["nodes"]["stats"]["array"]
    tasks = server.api().get(f"/v1/arrays/{array_id}/tasks").json()["tasks"]
    assert [t["state"] for t in tasks] == ["succeeded"] * 3
    agents = {get_job(server, t["job"])["agent"] for t in tasks}
    assert agents <= {"shard-worker-1", "shard-worker-2"}

    # a second run finds the trigger and fires once more (a new object version)
    r2 = subprocess.run(
        [sys.executable, CLIENT, "--size-mb", "1", "--seed", "6", "--shards", "3",
         "--poll", "0.1", "--timeout", "120", "--dir", str(tmp_path / "client2")],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=180)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "created" not in r2.stdout.splitlines()[0], r2.stdout
    triggers = server.api().get("/v1/triggers").json()["triggers"]
    assert len([t for t in triggers if t["prefix"] == "s3://fasta/sharded-3/"]) == 1
