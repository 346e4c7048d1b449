"""Celery tasks for bench/agents.sh: the reference drover's agents are measured against.

The worker runs from this folder:

    celery -A tasks -b redis://127.0.0.1:P --result-backend redis://127.0.0.1:P \
        worker --pool prefork --concurrency 2

`run_true` runs /bin/true through subprocess (the throughput figure); `stamp` starts no
process and returns CLOCK_REALTIME in ns taken as its first action (the latency figure).
"""
import os
import subprocess
import time

from celery import Celery

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("tasks", broker=_url, backend=_url)


@app.task
def run_true():
    subprocess.run(["/bin/true"], check=True)


@app.task
def stamp():
    return time.clock_gettime_ns(time.CLOCK_REALTIME)
