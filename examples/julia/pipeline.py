#!/usr/bin/env python3
"""A producer / worker / tracker pipeline on drover (Julia-set images).

It stands for the pipelines labs glue together from a message queue and a
task database: the producer makes tasks with random parameters and a UUID,
records each in a SQLite database and submits it as a drover job; drover's agents run the worker
(julia-render), which renders a Julia set into <uuid>.pgm; the tracker waits
on each job and records the worker's checksum and duration in the task's row.
Every step logs one timestamped line.

    pipeline.py --render BUILD/julia-render --tasks 8 --db tasks.db --out DIR

The jobs go to --queue (default: default, the queue `drover dev` serves); when
no agent serves that queue the pipeline says so and exits 1 rather than wait.
DROVER_SERVER and DROVER_TOKEN say where drover is (default: the local server
and its admin token). Only the standard library is used.
"""
import argparse
import datetime
import json
import os
import random
import sqlite3
import sys
import urllib.error
import urllib.request
import uuid


def log(msg):
    print(datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], msg, flush=True)


class Drover:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def call(self, method, path, body=None, timeout=60):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise SystemExit(f"pipeline: {method} {path}: {e.code} {e.read().decode()}")


def default_token():
    tok = os.environ.get("DROVER_TOKEN")
    if tok:
        return tok
    data = os.environ.get("DROVER_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "drover")
    with open(os.path.join(data, "admin.token")) as f:
        return f.read().strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", required=True, help="path of the julia-render worker")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--db", default="tasks.db")
    ap.add_argument("--out", default=".", help="folder for the images")
    ap.add_argument("--queue", default="default",
                    help="the queue of the jobs (default: default, which drover dev serves)")
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    if not 1 <= a.tasks <= 10000:
        raise SystemExit("pipeline: --tasks must be between 1 and 10000")
    rnd = random.Random(a.seed)
    drover = Drover(os.environ.get("DROVER_SERVER", "http://127.0.0.1:7070"), default_token())
    # is anyone there? a job on a queue no agent serves would wait for one forever
    probe = drover.call("POST", "/v1/jobs", {"test": True, "queue": a.queue,
                                             "command": {"program": os.path.abspath(a.render)}})
    if probe.get("listeners", 0) < 1:
        raise SystemExit(f"pipeline: no agent serves the queue '{a.queue}': start one with "
                         f"`drover dev --queues {a.queue}` or `drover agent --queues {a.queue}`")
    os.makedirs(a.out, exist_ok=True)
    db = sqlite3.connect(a.db)
    db.execute("""CREATE TABLE IF NOT EXISTS tasks (uuid TEXT PRIMARY KEY, job TEXT, cx REAL,
                  cy REAL, state TEXT, sha256 TEXT, duration_ms REAL, created TEXT, done TEXT)""")

    # producer
    tasks = []
    for _ in range(a.tasks):
        t = {"uuid": str(uuid.uuid4()), "cx": round(rnd.uniform(-0.9, 0.4), 4),
             "cy": round(rnd.uniform(-0.7, 0.7), 4)}
        job = drover.call("POST", "/v1/jobs", {
            "queue": a.queue, "name": f"julia-{t['uuid'][:8]}", "labels": {"task": t["uuid"]},
            "command": {"program": os.path.abspath(a.render), "arguments": [
                {"type": "parameter", "name": "--task", "value": t["uuid"]},
                {"type": "parameter", "name": "--cx", "value": t["cx"]},
                {"type": "parameter", "name": "--cy", "value": t["cy"]},
                {"type": "parameter", "name": "--size", "value": a.size},
                {"type": "parameter", "name": "--out", "value": os.path.abspath(a.out)}]}})
        t["job"] = job["id"]
        db.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, 'submitted', NULL, NULL, ?, NULL)",
                   (t["uuid"], t["job"], t["cx"], t["cy"], datetime.datetime.now().isoformat()))
        db.commit()
        log(f"producer task={t['uuid']} job={t['job']} c=({t['cx']}, {t['cy']}) submitted")
        tasks.append(t)

    # tracker
    failed = 0
    for t in tasks:
        job = drover.call("GET", f"/v1/jobs/{t['job']}/wait?timeout_s=120", timeout=130)
        res = job.get("result") or {}
        if job["state"] != "succeeded":
            failed += 1
            db.execute("UPDATE tasks SET state = ?, done = ? WHERE uuid = ?",
                       (job["state"], datetime.datetime.now().isoformat(), t["uuid"]))
            log(f"tracker task={t['uuid']} {job['state']}: {res.get('reason')} {res.get('error')}")
            continue
        out = json.loads(res["stdout"].splitlines()[-1])
        db.execute("UPDATE tasks SET state = 'done', sha256 = ?, duration_ms = ?, done = ? "
                   "WHERE uuid = ?", (out["sha256"], out["duration_ms"],
                                      datetime.datetime.now().isoformat(), t["uuid"]))
        db.commit()
        log(f"tracker task={t['uuid']} agent={job['agent']} sha256={out['sha256'][:16]}… "
            f"render={out['duration_ms']}ms run={res['duration_ms']}ms done")
    db.commit()
    done = db.execute("SELECT count(*) FROM tasks WHERE state = 'done'").fetchone()[0]
    log(f"pipeline {done} of {len(tasks)} tasks done, {failed} failed; records in {a.db}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
