#!/usr/bin/env bash
# Sets up, builds and runs the demo on the embedded default (SQLite + a local
# folder): `drover dev` (a server and one agent in one process, on a free
# loopback port) runs the producer / worker / tracker pipeline of
# examples/julia: tasks with random parameters rendered as Julia-set images,
# each result's checksum and duration recorded; then the jobs are shown.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
scripts/build.sh build

data=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DROVER_SERVER="http://127.0.0.1:$port" DROVER_DATA="$data"
unset DROVER_TOKEN
build/drover dev --listen "127.0.0.1:$port" --data "$data" 2>"$data/dev.log" &
pid=$!
cleanup() {
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fs "$DROVER_SERVER/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "\$ examples/julia/pipeline.py --render build/julia-render --tasks 8 --queue default"
/usr/bin/python3 examples/julia/pipeline.py --render build/julia-render --tasks 8 \
  --queue default --size 600 --db "$data/tasks.db" --out "$data/images"
echo
echo "\$ drover jobs"
build/drover jobs
echo
first=$(build/drover jobs --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
echo "\$ drover logs $first"
build/drover logs "$first"
echo
echo "\$ drover agents"
build/drover agents
echo
echo "\$ drover queues"
build/drover queues
