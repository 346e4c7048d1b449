#!/usr/bin/env bash
# Sets up, builds and runs the demo on the embedded default (SQLite + local
# folder): starts a server on a free loopback port, submits a few jobs with
# the CLI, and shows them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
scripts/build.sh build

data=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DROVER_SERVER="http://127.0.0.1:$port" DROVER_DATA="$data"
build/drover server --listen "127.0.0.1:$port" --data "$data" 2>"$data/server.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -fs "$DROVER_SERVER/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "\$ drover submit --queue render --name julia-1 -- /bin/echo hello"
build/drover submit --queue render --name julia-1 -- /bin/echo hello
echo "\$ drover submit --queue render --priority 5 --label project=demo -- /bin/sleep 1"
build/drover submit --queue render --priority 5 --label project=demo -- /bin/sleep 1
echo "\$ drover submit -f - <<< '{\"queue\": \"bio\", \"service\": \"nhmmer\", ...}'"
build/drover submit -f - <<'JSON'
{"queue": "bio", "service": "nhmmer",
 "command": {"program": "nhmmer",
             "arguments": [{"type": "parameter", "name": "--cpu", "value": 2},
                           {"type": "input", "name": "--infile", "value": "s3://seqs/in.fa"},
                           {"type": "output", "name": "--tblout", "value": "s3://seqs/hits.tbl"}]}}
JSON
id=$(build/drover submit --queue render -- /bin/false)
echo "\$ drover cancel $id"
build/drover cancel "$id"
echo "\$ drover jobs"
build/drover jobs
echo "\$ drover queues"
build/drover queues
echo
echo "(No agent runs these jobs yet: agents arrive with the next milestone.)"
