#!/usr/bin/env python3
"""The client of the FASTA example (examples/fasta): an async file-processing API on drover.

    client.py [--size-mb 200] [--seed 1] [--chunk-kb 4096] [--chunk-delay 0] [--dir DIR]
              [--shards K]

1. generates DIR/input.fa: random DNA sequences, deterministic from --seed;
2. asks drover for a presigned PUT URL and uploads the file to it with curl
   (no token on that request);
3. submits the job that processes it (the worker, fasta_stats.py, reads it in
   chunks and reports its progress);
4. polls GET /v1/jobs/{id} and prints the progress as it moves;
5. asks for a presigned GET URL of the JSON result and downloads it to
   DIR/result.json.

With --shards K (the sharded mode) there is no step 3: the client makes sure an
upload trigger exists on s3://BUCKET/sharded-K/ (once: it is kept), and the upload
itself submits a workflow there: fasta_split.py cuts the file into K shards, an
array of K tasks (one per shard, on any agents) runs fasta_stats.py, and
fasta_reduce.py adds their results up into the one JSON result, at a key made of
the file's SHA-256; the client follows the workflow and downloads that result.

DROVER_SERVER and DROVER_TOKEN say where drover is (default: the local server and
the admin token of its data folder, DROVER_DATA or ~/.local/share/drover). The
worker runs on the agent's machine at --worker (default: fasta_stats.py beside
this script).
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
# random bytes -> bases: 64 values each for A, C and G, 63 for T, 1 for N
BASES = bytes(b"ACGT"[min(v // 64, 3)] for v in range(255)) + b"N"
WIDTH = 60


def log(msg):
    print(msg, flush=True)


def default_token():
    tok = os.environ.get("DROVER_TOKEN")
    if tok:
        return tok
    data = os.environ.get("DROVER_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "drover")
    with open(os.path.join(data, "admin.token")) as f:
        return f.read().strip()


def generate(path, size, seed):
    """Writes about `size` bytes of FASTA to path; returns (sequences, sha256)."""
    rnd = random.Random(seed)
    digest, written, count = hashlib.sha256(), 0, 0
    with open(path, "wb") as f:
        while written < size:
            count += 1
            length = rnd.randint(200, 60000)
            seq = rnd.randbytes(length).translate(BASES)
            body = b"\n".join(seq[i:i + WIDTH] for i in range(0, length, WIDTH))
            block = b">seq%d length=%d\n%s\n" % (count, length, body)
            f.write(block)
            digest.update(block)
            written += len(block)
    return count, digest.hexdigest()


class Drover:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {token}"

    def call(self, method, path, body=None, timeout=60):
        r = self.s.request(method, self.url + path, json=body, timeout=timeout)
        if r.status_code >= 300:
            raise SystemExit(f"client: {method} {path}: {r.status_code} {r.text}")
        return r.json()

    def presign(self, method, uri, expires_s=900):
        return self.call("POST", "/v1/presign",
                         {"method": method, "uri": uri, "expires_s": expires_s})["url"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=200.0, help="size of the FASTA file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk-kb", type=int, default=4096, help="the worker's chunk size")
    ap.add_argument("--chunk-delay", type=float, default=0.0,
                    help="seconds the worker sleeps after each chunk")
    ap.add_argument("--dir", help="folder for input.fa and result.json (default: a new one)")
    ap.add_argument("--bucket", default="fasta")
    ap.add_argument("--queue", default="default")
    ap.add_argument("--worker", default=os.path.join(HERE, "fasta_stats.py"))
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between polls")
    ap.add_argument("--timeout", type=float, default=1800, help="give up after this long")
    ap.add_argument("--shards", type=int,
                    help="the sharded mode: an upload trigger, K shards, a reduce step")
    a = ap.parse_args()
    if not 0 < a.size_mb <= 100000 or a.chunk_kb < 1 or a.poll <= 0:
        raise SystemExit("client: --size-mb, --chunk-kb and --poll must be positive")
    if a.shards is not None and not 1 <= a.shards <= 1000:
        raise SystemExit("client: --shards must be 1 to 1000")
    folder = a.dir or tempfile.mkdtemp(prefix="drover-fasta-")
    os.makedirs(folder, exist_ok=True)
    drover = Drover(os.environ.get("DROVER_SERVER", "http://127.0.0.1:7070"), default_token())
    run = str(uuid.uuid4())
    trigger = ensure_trigger(drover, a) if a.shards else None
    input_uri = (f"{trigger['prefix']}{run}/input.fa" if trigger
                 else f"s3://{a.bucket}/uploads/{run}/input.fa")
    result_uri = f"s3://{a.bucket}/results/{run}/result.json"
    records_uri = f"s3://{a.bucket}/results/{run}/records.tsv"

    # 1. the file
    fasta = os.path.join(folder, "input.fa")
    t0 = time.monotonic()
    count, sha = generate(fasta, int(a.size_mb * 1e6), a.seed)
    size = os.path.getsize(fasta)
    log(f"generated {fasta}: {size / 1e6:.1f} MB, {count} sequences "
        f"({time.monotonic() - t0:.1f} s)")

    # 2. a presigned PUT URL, and curl uploads straight to it
    put_url = drover.presign("PUT", input_uri)
    log(f"uploading to {input_uri} with a presigned URL")
    curl = ["curl", "--fail-with-body", "-sS", "-T", fasta, put_url]
    if sys.stderr.isatty():
        curl[2] = "--progress-bar"
    t0 = time.monotonic()
    up = subprocess.run(curl, stdout=subprocess.PIPE, text=True)
    if up.returncode != 0:
        raise SystemExit(f"client: the upload failed (curl exit {up.returncode}): {up.stdout}")
    stored = json.loads(up.stdout)
    if stored["sha256"] != sha or stored["size"] != size:
        raise SystemExit(f"client: the server stored something else: {stored}")
    log(f"uploaded {size / 1e6:.1f} MB in {time.monotonic() - t0:.1f} s, sha256 {sha[:16]}…")
    if trigger:
        return follow_sharded(drover, a, trigger, input_uri, sha, folder)

    # 3. tell drover the file is there: the job that processes it
    job = drover.call("POST", "/v1/jobs", {
        "queue": a.queue, "service": "fasta-stats", "name": f"fasta-{run[:8]}",
        "labels": {"run": run}, "timeout_s": 3600, "retry": {"max_attempts": 2},
        "command": {
            "program": os.path.abspath(a.worker),
            "arguments": [
                {"type": "output", "name": "--out", "value": result_uri},
                {"type": "output", "name": "--records", "value": records_uri},
                {"type": "parameter", "name": "--chunk-size", "value": str(a.chunk_kb * 1024)},
                {"type": "input", "value": input_uri}],
            "env": {"FASTA_CHUNK_DELAY": str(a.chunk_delay)}}})
    log(f"job {job['id']} submitted")

    # 4. poll its progress
    deadline = time.monotonic() + a.timeout
    last_state = last_progress = None
    while True:
        j = drover.call("GET", f"/v1/jobs/{job['id']}")
        if j["state"] != last_state:
            log(f"state {j['state']}")
            last_state = j["state"]
        p = j.get("progress")
        if p and (p.get("percent"), p.get("message")) != last_progress:
            last_progress = (p.get("percent"), p.get("message"))
            log(f"progress {p['percent']:5.1f}%  {p.get('message') or ''}")
        if j["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"client: job {job['id']} still {j['state']} after {a.timeout} s")
        time.sleep(a.poll)
    res = j.get("result") or {}
    if j["state"] != "succeeded":
        raise SystemExit(f"client: job {job['id']} {j['state']}: {res.get('reason')} "
                         f"{res.get('error') or ''} (exit code {res.get('exit_code')})")
    log(f"job {job['id']} succeeded in {res.get('duration_ms')} ms on agent {j.get('agent')}")

    # 5. a presigned GET URL for the result
    return download(drover, result_uri, folder)


def download(drover, result_uri, folder):
    get_url = drover.presign("GET", result_uri)
    r = requests.get(get_url, timeout=60)  # no token
    if r.status_code != 200:
        raise SystemExit(f"client: downloading the result: {r.status_code} {r.text}")
    out = os.path.join(folder, "result.json")
    with open(out, "wb") as f:
        f.write(r.content)
    log(f"result {result_uri} -> {out}")
    log(r.text.rstrip())
    return 0


# ---- the sharded mode ----

def sharded_workflow(a):
    """The workflow an upload under the trigger's prefix submits ({{sha256}}: the upload's)."""
    work = f"s3://{a.bucket}/work/{{{{sha256}}}}/"
    job = {"queue": a.queue, "timeout_s": 3600, "retry": {"max_attempts": 2}}
    return {
        "name": f"fasta-sharded-{a.shards}",
        "nodes": {
            # the upload becomes --input (the trigger's "input"); K shards go to work/
            "split": {"job": dict(job, command={
                "program": os.path.join(HERE, "fasta_split.py"),
                "arguments": [{"type": "parameter", "name": "--shards", "value": str(a.shards)},
                              {"type": "input", "name": "--input"}],
                "output": [work + "shard-"]})},
            # one task per object split wrote (fan-out), each fasta_stats.py on its shard
            "stats": {"job": dict(job, array={"outputs": "split"}, command={
                "program": os.path.abspath(a.worker),
                "arguments": [
                    {"type": "output", "name": "--out", "value": work + "stats-{{index}}.json"},
                    {"type": "output", "name": "--records",
                     "value": work + "records-{{index}}.tsv"},
                    {"type": "parameter", "name": "--chunk-size", "value": str(a.chunk_kb * 1024)},
                    {"type": "input", "value": "{{item}}"}],
                "env": {"FASTA_CHUNK_DELAY": str(a.chunk_delay)}})},
            # waits for every task and gets all their outputs (fan-in)
            "reduce": {"job": dict(job, command={
                "program": os.path.join(HERE, "fasta_reduce.py"),
                "arguments": [
                    {"type": "parameter", "name": "--sha256", "value": "{{sha256}}"},
                    {"type": "output", "name": "--out",
                     "value": f"s3://{a.bucket}/results/{{{{sha256}}}}/result.json"},
                    {"type": "output", "name": "--records-out",
                     "value": f"s3://{a.bucket}/results/{{{{sha256}}}}/records.tsv"},
                    {"type": "input", "name": "--stats"},
                    {"type": "input", "name": "--records"}]})}},
        "connections": [{"from": "stats.--out", "to": "reduce.--stats"},
                        {"from": "stats.--records", "to": "reduce.--records"}]}


def ensure_trigger(drover, a):
    """The upload trigger on s3://BUCKET/sharded-K/: the one there, else a new one."""
    prefix = f"s3://{a.bucket}/sharded-{a.shards}/"
    for t in drover.call("GET", "/v1/triggers")["triggers"]:
        if t["prefix"] == prefix:
            log(f"trigger {t['id']} on {prefix}")
            return t
    t = drover.call("POST", "/v1/triggers", {"prefix": prefix, "workflow": sharded_workflow(a),
                                             "input": "split.--input"})
    log(f"trigger {t['id']} on {prefix} created: an upload there submits the workflow "
        f"split -> stats x{a.shards} -> reduce")
    return t


def follow_sharded(drover, a, trigger, input_uri, sha, folder):
    """No "file uploaded" call: finds the workflow the upload fired, follows it to its end."""
    deadline = time.monotonic() + a.timeout
    wf_id = None
    while not wf_id:
        for f in drover.call("GET", f"/v1/triggers/{trigger['id']}")["fires"]:
            if f["uri"] == input_uri and f["sha256"] == sha:
                if f["state"] == "failed":
                    raise SystemExit(f"client: the trigger could not submit: {f['error']}")
                wf_id = f.get("workflow")
        if not wf_id:
            if time.monotonic() > deadline:
                raise SystemExit(f"client: the upload fired nothing after {a.timeout} s")
            time.sleep(a.poll)
    log(f"the upload fired workflow {wf_id}")
    last = None
    while True:
        wf = drover.call("GET", f"/v1/workflows/{wf_id}")
        parts = []
        for name in ("split", "stats", "reduce"):
            node = wf["nodes"][name]
            part = f"{name} {node['state']}"
            if isinstance(node.get("array"), str):  # the fan-out: its tasks' states
                c = drover.call("GET", f"/v1/arrays/{node['array']}")["counts"]
                part += f" ({c['succeeded']}/{c['total']} shards done)"
            parts.append(part)
        line = " | ".join(parts)
        if line != last:
            log(line)
            last = line
        if wf["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"client: workflow {wf_id} still {wf['state']} after {a.timeout} s")
        time.sleep(a.poll)
    if wf["state"] != "succeeded":
        raise SystemExit(f"client: workflow {wf_id} {wf['state']}: "
                         f"{json.dumps({n: v.get('result') for n, v in wf['nodes'].items()})}")
    log(f"workflow {wf_id} succeeded")
    return download(drover, f"s3://{a.bucket}/results/{sha}/result.json", folder)


if __name__ == "__main__":
    sys.exit(main())
