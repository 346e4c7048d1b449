#!/usr/bin/env bash
# The seed message (examples/seed/README.md; the job spec of docs/api.md) run by a drover agent:
# uploads the inputs, asks whether an agent listens on the queue (`"test": true`),
# submits message.json, waits, then shows and checks where every output landed.
#
#   examples/seed/run.sh            # against DROVER_SERVER (default http://127.0.0.1:7070)
#
# DROVER (default: build/drover of this repository) is the CLI; DROVER_SERVER,
# DROVER_TOKEN and DROVER_DATA say where the server is, as for the CLI. NHMMER
# (default: examples/seed/nhmmer, made absolute) is the program the agent runs in
# place of the message's "nhmmer": the agent must see it at that path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
drover=${DROVER:-$root/build/drover}
nhmmer=${NHMMER:-$here/nhmmer}
server=${DROVER_SERVER:-http://127.0.0.1:7070}
if [ -n "${DROVER_TOKEN:-}" ]; then
  token=$DROVER_TOKEN
else
  token=$(cat "${DROVER_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/drover}/admin.token")
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n$ %s\n' "$*"; }

# 1. the inputs: the --infile object and the three objects of the poly shapefile prefix
step "drover put ... s3://seed/path/to/{input.txt,poly.shp,poly.shx,poly.dbf}"
for f in input.txt poly.shp poly.shx poly.dbf; do
  "$drover" put "$here/data/$f" "s3://seed/path/to/$f"
done

# 2. the message, with "nhmmer" replaced by the stand-in's path (and "test": true for step 3)
/usr/bin/env python3 - "$here/message.json" "$nhmmer" "$tmp" <<'EOF'
import json, sys
msg = json.load(open(sys.argv[1]))
msg["command"]["program"] = sys.argv[2]
json.dump(msg, open(sys.argv[3] + "/message.json", "w"), indent=2)
json.dump(dict(msg, test=True), open(sys.argv[3] + "/test.json", "w"))
EOF

# 3. is any agent listening on the message's queue?
step "curl -d '{... \"test\": true ...}' $server/v1/jobs"
answer=$(curl -sS --fail-with-body -H "Authorization: Bearer $token" \
              -H "Content-Type: application/json" --data-binary "@$tmp/test.json" "$server/v1/jobs")
echo "$answer"
listeners=$(printf '%s' "$answer" | /usr/bin/env python3 -c 'import json,sys; print(json.load(sys.stdin)["listeners"])')
if [ "$listeners" -lt 1 ]; then
  echo "run.sh: no agent listens on the message's queue; start one (or drover dev)" >&2
  exit 1
fi

# 4. the job itself
step "drover submit -f message.json"
id=$("$drover" submit -f "$tmp/message.json")
echo "$id"
step "drover wait $id"
"$drover" wait --timeout "${WAIT_S:-300}" "$id" || true
"$drover" status --json "$id" > "$tmp/job.json"

# 5. where everything landed
step "drover ls s3://seed/path/to/"
"$drover" ls s3://seed/path/to/
for uri in s3://seed/path/to/hits.tbl s3://seed/path/to/some/report.txt \
           s3://seed/path/to/stderr.txt; do
  step "drover get $uri -"
  "$drover" get "$uri" -
done
"$drover" ls --json s3://seed/path/to/ > "$tmp/objects.json"
/usr/bin/env python3 - "$tmp/job.json" "$tmp/objects.json" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))
stored = {"s3://seed/" + o["key"]: o for o in json.load(open(sys.argv[2]))}
res = job.get("result") or {}
print(f"\njob {job['id']}: {job['state']} ({res.get('reason')}, exit code {res.get('exit_code')})")
print("stdout (a pipe, kept with the job):")
print("".join("  " + l + "\n" for l in (res.get("stdout") or "").splitlines()), end="")
print("result.outputs:")
bad = job["state"] != "succeeded"
if bad and res.get("error"):
    print("  error:", res["error"])
for o in res.get("outputs") or []:
    s = stored.get(o["uri"])
    same = s is not None and s["size"] == o["size"] and s["sha256"] == o["sha256"]
    bad |= not same
    print(f"  {o['uri']:42} {o['size']:6} bytes  sha256 {o['sha256'][:16]}…  "
          + ("stored, same size and sha256" if same else "DIFFERS FROM THE STORED OBJECT"))
want = {"s3://seed/path/to/hits.tbl", "s3://seed/path/to/some/report.json",
        "s3://seed/path/to/some/report.txt", "s3://seed/path/to/stderr.txt"}
got = {o["uri"] for o in res.get("outputs") or []}
if got != want:
    bad = True
    print("  expected outputs:", ", ".join(sorted(want)))
sys.exit(1 if bad else 0)
EOF
echo "run.sh: the outputs are where the message says"
