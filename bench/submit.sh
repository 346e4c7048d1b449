#!/usr/bin/env bash
# bench/submit.sh - durable submit throughput, batched submits, and get/list latency of
# drover, side by side with beanstalkd (its binlog, -f0 and -f50) measured in the same run.
#
#   bash bench/submit.sh [options] [BUILD_DIR]        (BUILD_DIR defaults to ./build)
#
#   --beanstalk-only   measure only the beanstalkd reference (needs only drover-load)
#   --drover-only      skip beanstalkd (the ratios are then left out)
#   --quick            a tenth of the requests: a smoke test, not a figure to record
#   --workdir DIR      where data and binlogs go (default: a fresh folder in BUILD_DIR);
#                      it must be on the disk under test, not tmpfs
#   --keep             keep the work folder (logs, data) afterwards
#
# Prints a markdown report on stdout (progress goes to stderr). It records nothing: the
# work folder is removed afterwards (kept on failure), and the report is yours to copy
# to bench/RESULTS.md. Environment knobs:
# MAX_SECONDS (bound of each load run, default 30), BEANSTALKD, PYTHON.
#
# Every process started here is stopped by its PID on exit, and every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=
WORKDIR=
DO_BEANSTALK=1
DO_DROVER=1
QUICK=0
KEEP=0
MAX_SECONDS=${MAX_SECONDS:-30}
BEANSTALKD=${BEANSTALKD:-/usr/bin/beanstalkd}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
    --beanstalk-only) DO_DROVER=0 ;;
    --drover-only) DO_BEANSTALK=0 ;;
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --workdir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; WORKDIR=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "submit.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) [[ -z $BUILD_DIR ]] || { echo "submit.sh: one BUILD_DIR only" >&2; exit 2; }; BUILD_DIR=$1 ;;
    esac
    shift
done
((DO_BEANSTALK || DO_DROVER)) || { echo "submit.sh: nothing to measure" >&2; exit 2; }
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "submit.sh: no build folder '$BUILD_DIR'" >&2; exit 2; }
LOAD=$BUILD_DIR/drover-load
DROVER=$BUILD_DIR/drover

log() { printf 'submit.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $LOAD ]] || die "$LOAD is missing: cmake --build '$BUILD_DIR' --target drover-load"
if ((DO_BEANSTALK)); then
    [[ -x $BEANSTALKD ]] || die "beanstalkd not found at '$BEANSTALKD' (apt-get install beanstalkd, or set BEANSTALKD)"
fi
if ((DO_DROVER)); then
    [[ -x $DROVER ]] || die "$DROVER is missing: cmake --build '$BUILD_DIR'"
    "$PYTHON" -c 'import requests' 2>/dev/null || die "$PYTHON lacks the 'requests' module (set PYTHON)"
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(bench_work_dir submit-bench)
RESULTS=$WORK/results.tsv # label, command, exit status, JSON line
: >"$RESULTS"
FAILED=0

# ---- processes ------------------------------------------------------------------------


# ---- measurements ---------------------------------------------------------------------

# The requests of one run: enough to last a few seconds at the expected rate; MAX_SECONDS
# bounds it regardless.
nreq() { # BASE
    if ((QUICK)); then echo $(($1 / 10)); else echo "$1"; fi
}

conns() { if (($1 == 1)); then echo "1 conn"; else echo "$1 conns"; fi; }

# The machine's busy and total CPU jiffies so far, all cores (/proc/stat; idle and iowait
# are not busy): around a run, whether it was bound by the cores or by waits (syncs).
machine_cpu() { awk '/^cpu /{t=0; for(i=2;i<=9;i++) t+=$i; print t-$5-$6, t; exit}' /proc/stat; }

# run LABEL ARGS...: one drover-load run, its JSON kept under LABEL.
run() {
    local label=$1 out rc=0
    shift
    local cmd=("$LOAD" "$@" --max-seconds "$MAX_SECONDS")
    # As shown in the report: copyable, without the token, ports and folders of this run.
    local shown="" arg
    for arg in "${cmd[@]}"; do
        if [[ -n ${TOKEN:-} && $arg == "$TOKEN" ]]; then
            # shellcheck disable=SC2016 # the variable's name, for the reader to set
            arg='"$TOKEN"'
        elif [[ $arg =~ [^A-Za-z0-9_./:=,+-] ]]; then
            arg="'$arg'"
        fi
        shown+="${shown:+ }$arg"
    done
    shown=${shown//"$WORK"/WORK}
    shown=${shown//"$BUILD_DIR"\//}
    shown=$(printf '%s' "$shown" | sed -E 's/--port [0-9]+/--port PORT/')
    log "$label: $shown"
    # In the background so that a signal is handled at once (bash runs traps only
    # between commands, and `wait` is one it interrupts).
    local m0
    m0=$(machine_cpu)
    "${cmd[@]}" >"$WORK/load.out" &
    local pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    local m1
    m1=$(machine_cpu)
    local kept=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
    out=$(tail -n 1 "$WORK/load.out")
    [[ -n $out ]] || out='{}'
    ((rc == 0)) || { FAILED=1; log "$label: drover-load exited $rc"; }
    log "$label: $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$shown" "$rc" "$out" "$m0" "$m1" >>"$RESULTS"
}

bench_beanstalkd() { # FSYNC_MS
    local f=$1 dir=$WORK/beanstalkd-f$1 port pid n requests
    mkdir -p "$dir/binlog"
    port=$(free_port)
    "$BEANSTALKD" -l 127.0.0.1 -p "$port" -b "$dir/binlog" -f "$f" >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_tcp "$port" "$pid" || { cat "$dir/log" >&2; die "beanstalkd -f$f did not start"; }
    for n in 1 4 32; do
        if ((f == 0)); then
            requests=30000
        else
            requests=$((n == 1 ? 50000 : 200000))
        fi
        run "beanstalkd -f$f put, $(conns "$n")" beanstalk --host 127.0.0.1 --port "$port" \
            --conns "$n" --requests "$(nreq "$requests")" --size 100
    done
    stop_pid "$pid"
}

DROVER_PORT=
DROVER_PID=
TOKEN=

start_drover() { # SYNC NAME
    local sync=$1 dir=$WORK/$2 i
    mkdir -p "$dir/data"
    DROVER_PORT=$(free_port)
    "$DROVER" server --listen "127.0.0.1:$DROVER_PORT" --data "$dir/data" --sync "$sync" \
        >"$dir/log" 2>&1 &
    DROVER_PID=$!
    PIDS+=("$DROVER_PID")
    if ! wait_healthz "$DROVER_PORT" "$DROVER_PID"; then
        tail -n 30 "$dir/log" >&2
        die "drover server --sync $sync did not answer GET /healthz with 200 within 30 s"
    fi
    for ((i = 0; i < 50; i++)); do
        [[ -s $dir/data/admin.token ]] && break
        sleep 0.1
    done
    [[ -s $dir/data/admin.token ]] || die "no admin token in $dir/data/admin.token"
    TOKEN=$(tr -d '[:space:]' <"$dir/data/admin.token")
}

make_bodies() {
    printf '%s' '{"queue":"bench","command":{"program":"/bin/true"}}' >"$WORK/spec.json"
    "$PYTHON" - "$WORK/batch.json" <<'EOF'
import json, sys
spec = {"queue": "bench", "command": {"program": "/bin/true"}}
with open(sys.argv[1], "w") as f:
    json.dump([spec] * 1000, f, separators=(",", ":"))
EOF
}

register_agents() { # N: agents with labels, on 20 queues, every other one serving bench too
    log "registering $1 agents"
    "$PYTHON" - "http://127.0.0.1:$DROVER_PORT" "$TOKEN" "$1" <<'EOF' || die "registering agents failed"
import sys, uuid, requests
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = requests.Session()
s.headers["Authorization"] = "Bearer " + token
for i in range(n):
    queues = [f"q{i % 20}"] + (["bench"] if i % 2 else [])
    r = s.post(base + "/v1/agents/register", timeout=60, json={
        "name": f"bench-agent-{i}", "queues": queues, "slots": 4,
        "labels": {"rack": str(i % 7)}, "instance": str(uuid.uuid4())})
    if r.status_code != 200:
        sys.exit(f"POST /v1/agents/register: HTTP {r.status_code}: {r.text[:500]}")
EOF
}

bench_drover_submit() { # SYNC
    local sync=$1 n requests
    start_drover "$sync" "drover-$sync"
    for n in 1 4 32; do
        if [[ $sync == full ]]; then
            requests=$((n == 1 ? 20000 : n == 4 ? 60000 : 150000))
        else
            requests=$((n == 1 ? 50000 : 200000))
        fi
        run "drover --sync $sync submit, $(conns "$n")" http --host 127.0.0.1 \
            --port "$DROVER_PORT" --token "$TOKEN" --method POST --path /v1/jobs \
            --body-file "$WORK/spec.json" --conns "$n" --requests "$(nreq "$requests")"
    done
    if [[ $sync == full ]]; then
        # The HTTP floor: a request that does nothing (no token, no body, no store), on the
        # same server. What a submit can reach through this HTTP stack, whatever the store.
        run "drover GET /healthz (no store), 32 conns" http --host 127.0.0.1 \
            --port "$DROVER_PORT" --method GET --path /healthz --conns 32 \
            --requests "$(nreq 200000)"
        # A fleet: 1,000 agents registered (half of them serving the queue) must not make
        # each submit slower (its answer counts who could take the job).
        register_agents 1000
        run "drover --sync full submit, 32 conns, 1,000 agents registered" http \
            --host 127.0.0.1 --port "$DROVER_PORT" --token "$TOKEN" --method POST \
            --path /v1/jobs --body-file "$WORK/spec.json" --conns 32 \
            --requests "$(nreq 150000)"
    fi
    run "drover --sync $sync batches of 1,000, 4 conns" http --host 127.0.0.1 \
        --port "$DROVER_PORT" --token "$TOKEN" --method POST --path /v1/jobs \
        --body-file "$WORK/batch.json" --jobs-per-request 1000 --conns 4 --requests "$(nreq 200)"
    stop_pid "$DROVER_PID"
}

bench_drover_read() {
    local stored
    start_drover full drover-read
    stored=$(nreq 100000)
    run "drover store $stored jobs (batches of 1,000)" http --host 127.0.0.1 \
        --port "$DROVER_PORT" --token "$TOKEN" --method POST --path /v1/jobs \
        --body-file "$WORK/batch.json" --jobs-per-request 1000 --conns 4 --requests $((stored / 1000))
    # The ids, page by page (every page must bring new ones), then 20k of them at random.
    log "collecting job ids"
    "$PYTHON" - "http://127.0.0.1:$DROVER_PORT" "$TOKEN" "$stored" "$WORK/paths.txt" "$(nreq 20000)" <<'EOF' ||
import random, sys, requests
base, token, stored, out, sample = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
s = requests.Session()
s.headers["Authorization"] = "Bearer " + token
ids, seen, after = [], set(), None
for _ in range(stored + 1):
    params = {"limit": 1000, "queue": "bench"}
    if after is not None:
        params["after"] = after
    r = s.get(base + "/v1/jobs", params=params, timeout=60)
    if r.status_code != 200:
        sys.exit(f"GET /v1/jobs: HTTP {r.status_code}: {r.text[:500]}")
    page = r.json()
    fresh = [j["id"] for j in page["jobs"] if j["id"] not in seen]
    ids.extend(fresh)
    seen.update(fresh)
    after = page.get("next")
    if after is None or not fresh:
        break
if len(ids) < stored:
    sys.exit(f"listed {len(ids)} jobs, {stored} expected")
random.seed(1)
with open(out, "w") as f:
    for i in random.sample(ids, min(sample, len(ids))):
        f.write(f"/v1/jobs/{i}\n")
print(f"listed {len(ids)} jobs", file=sys.stderr)
EOF
        { FAILED=1; log "could not collect the job ids; get latency skipped"; }
    if [[ -s $WORK/paths.txt ]]; then
        local n
        for n in 1 4; do
            run "drover GET /v1/jobs/{id}, $stored stored, $(conns "$n")" http --host 127.0.0.1 \
                --port "$DROVER_PORT" --token "$TOKEN" --method GET \
                --paths-file "$WORK/paths.txt" --conns "$n" --requests "$(nreq 20000)"
        done
    fi
    run "drover GET /v1/jobs?limit=50, $stored stored, 1 conn" http --host 127.0.0.1 \
        --port "$DROVER_PORT" --token "$TOKEN" --method GET --path '/v1/jobs?limit=50' \
        --conns 1 --requests "$(nreq 2000)"
    run "drover GET /v1/jobs?state=queued&limit=50&queue=bench, $stored stored, 1 conn" http \
        --host 127.0.0.1 --port "$DROVER_PORT" --token "$TOKEN" --method GET \
        --path '/v1/jobs?state=queued&limit=50&queue=bench' --conns 1 --requests "$(nreq 2000)"
    stop_pid "$DROVER_PID"
}

# ---- the run --------------------------------------------------------------------------

STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
FSTYPE=$(stat -f -c %T "$WORK" 2>/dev/null || echo unknown)
if [[ $FSTYPE == tmpfs || $FSTYPE == ramfs ]]; then
    log "WARNING: $WORK is on $FSTYPE: fsync costs nothing there, the figures are not durable ones"
fi

if ((DO_BEANSTALK)); then
    bench_beanstalkd 0
    bench_beanstalkd 50
fi
if ((DO_DROVER)); then
    make_bodies
    bench_drover_submit full
    bench_drover_submit normal
    bench_drover_read
fi

# ---- the report -----------------------------------------------------------------------

BS_VERSION=$( ((DO_BEANSTALK)) && "$BEANSTALKD" -v 2>&1 | head -n 1 || echo "not run")
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1) ]]; then GIT_REV="$GIT_REV (tree modified)"; fi

"$PYTHON" - "$RESULTS" <<EOF
import json, sys
rows = []
for line in open(sys.argv[1]):
    label, cmd, rc, js, m0, m1 = line.rstrip("\n").split("\t")
    try:
        r = json.loads(js)
    except ValueError:
        r = {}
    (b0, t0), (b1, t1) = ([int(x) for x in m.split()] for m in (m0, m1))
    r["busy"] = (b1 - b0) / (t1 - t0) if t1 > t0 else None
    rows.append((label, cmd, int(rc), r))
by = {label: r for label, _, rc, r in rows if rc == 0 and r.get("requests")}

def fmt(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"

print("## Submit throughput and read latency: drover vs beanstalkd ($STARTED)")
print()
print("- machine: \`$(uname -srm)\`, nproc $(nproc); work folder on $FSTYPE")
print("- drover $GIT_REV; $BS_VERSION; MAX_SECONDS=$MAX_SECONDS" + (" (--quick: smoke test, not a figure)" if $QUICK else ""))
print("- closed loop: each connection keeps one request outstanding (bench/load.c); machine busy: the share of the machine's CPU (all cores, /proc/stat) busy during the run, near 100 % when the cores bound it")
print()
print("| figure | requests | per s | jobs per s | p50 ms | p99 ms | max ms | errors | machine busy |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, cmd, rc, r in rows:
    note = ""
    if rc != 0:
        note = " **FAILED**"
    elif r.get("time_limited"):
        note = " (time-limited)"
    print(f"| {label}{note} | {fmt(r.get('requests'))} | {fmt(r.get('per_s'))} | "
          f"{fmt(r.get('jobs_per_s'))} | {fmt(r.get('p50_ms'), 2)} | {fmt(r.get('p99_ms'), 2)} | "
          f"{fmt(r.get('max_ms'), 2)} | {fmt(r.get('errors'))} | "
          f"{'-' if r.get('busy') is None else format(r['busy'], '.0%')} |")

def ratio(name, num, den, target, key="jobs_per_s"):
    a, b = by.get(num), by.get(den)
    if not a or not b or not b.get(key):
        return None
    x = a[key] / b[key]
    return f"| {name} | {a[key]:,.0f} / {b[key]:,.0f} = **{x:.2f}x** | >= {target}x | {'met' if x >= target else 'NOT met'} |"

lines = [
    ratio("drover --sync full vs beanstalkd -f0, 32 conns",
          "drover --sync full submit, 32 conns", "beanstalkd -f0 put, 32 conns", 4),
    ratio("drover --sync normal vs beanstalkd -f50, 32 conns",
          "drover --sync normal submit, 32 conns", "beanstalkd -f50 put, 32 conns", 1),
]
batch = by.get("drover --sync full batches of 1,000, 4 conns")
if batch:
    j = batch["jobs_per_s"]
    lines.append(f"| drover --sync full, batches of 1,000 specs | **{j:,.0f} jobs/s** | >= 200,000 jobs/s | {'met' if j >= 200000 else 'NOT met'} |")
lines = [l for l in lines if l]
if lines:
    print()
    print("| comparison | measured | target | |")
    print("|---|---:|---:|---|")
    for l in lines:
        print(l)
floor = by.get("drover GET /healthz (no store), 32 conns")
if floor:
    print()
    print("The HTTP floor (context, not a target): a request that does nothing, on the same server.")
    print()
    print("| comparison | measured |")
    print("|---|---:|")
    for name, other in (("beanstalkd -f0 put", "beanstalkd -f0 put, 32 conns"),
                        ("beanstalkd -f50 put", "beanstalkd -f50 put, 32 conns"),
                        ("drover --sync full submit", "drover --sync full submit, 32 conns"),
                        ("drover --sync normal submit", "drover --sync normal submit, 32 conns")):
        o = by.get(other)
        if o and o.get("per_s"):
            x = floor["per_s"] / o["per_s"]
            print(f"| drover GET /healthz vs {name}, 32 conns | {floor['per_s']:,.0f} / {o['per_s']:,.0f} = **{x:.2f}x** |")
fleet = by.get("drover --sync full submit, 32 conns, 1,000 agents registered")
alone = by.get("drover --sync full submit, 32 conns")
if fleet and alone and alone.get("per_s"):
    print()
    print(f"With 1,000 agents registered, single submits run at **{fleet['per_s'] / alone['per_s']:.2f}x** "
          f"the rate without ({fleet['per_s']:,.0f} / {alone['per_s']:,.0f} per s; context, not a target).")
print()
print("Commands (\`bash bench/submit.sh\` ran them; ports are free loopback ports):")
print()
print("\`\`\`")
if $DO_BEANSTALK:
    print("beanstalkd -l 127.0.0.1 -p PORT -b BINLOG_DIR -f 0    # then -f 50, each with a fresh binlog")
if $DO_DROVER:
    print("drover server --listen 127.0.0.1:PORT --data DIR --sync full    # then --sync normal, then full for the reads; a fresh DIR each")
    print("TOKEN=\$(cat DIR/admin.token); WORK/spec.json is one spec, WORK/batch.json an array of 1,000, WORK/paths.txt /v1/jobs/ID lines")
for label, cmd, rc, r in rows:
    print(cmd)
print("\`\`\`")
EOF

if ((FAILED)); then
    log "some runs failed (see above); the report marks them"
    exit 1
fi
