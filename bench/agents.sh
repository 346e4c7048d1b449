#!/usr/bin/env bash
# bench/agents.sh - running jobs through drover's agents, side by side with references
# measured in the same run:
#   (a) /bin/true jobs over 2 agents x 4 slots, jobs/s  vs  bare posix_spawn + wait with
#       two spawners (drover-spawn)  and  Celery (prefork, concurrency 2, Redis) running
#       /bin/true through subprocess;
#   (b) latency on an idle agent, 1,000 sequential jobs: submit's answer -> the job's
#       process running (drover-stamp), and -> the result seen by GET /v1/jobs/{id}/wait
#       vs  Celery's submit -> task start and submit -> result of a task without a process;
#   (c) queue-only throughput: agents with --bench-noop (no process) vs beanstalkd
#       reserve + delete (drover-load beanstalk-take) over as many connections.
#
#   bash bench/agents.sh [options] [BUILD_DIR]        (BUILD_DIR defaults to ./build)
#
#   --quick          a tenth of the jobs: a smoke test, not a figure to record
#   --no-celery      skip the Celery reference (its ratios are then left out)
#   --true-only      (a) only, without Celery: drover's /bin/true jobs between the two
#                    drover-spawn runs (an A/B of agent changes: run it with each build)
#   --workdir DIR    where data goes (default: a fresh folder in BUILD_DIR); on the disk
#                    under test, not tmpfs
#   --keep           keep the work folder (logs, data) afterwards
#
# (a) runs in ROUNDS rounds (3): a spawner run, then drover's, then the next spawner run
# and so on, each drover round set beside the mean of the spawner runs around it; the
# figure is the median round's (one round alone moved by up to +-10 % here with the
# machine's speed, which the spawner runs minutes away did not see).
#
# Prints a markdown report on stdout (progress goes to stderr); the report is yours to
# copy to bench/RESULTS.md. Environment knobs: JOBS (20000), ROUNDS (3), LAT_JOBS (1000),
# NOOP_JOBS (100000), NOOP_SLOTS (64), MAX_SECONDS (bound of each phase, 180), PYTHON
# (/usr/bin/python3), REDIS_SERVER, BEANSTALKD.
#
# Every process started here is stopped by its PID on exit, and every loop is bounded in
# count and time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=
WORKDIR=
QUICK=0
KEEP=0
DO_CELERY=1
TRUE_ONLY=0
JOBS=${JOBS:-20000}
ROUNDS=${ROUNDS:-3}
LAT_JOBS=${LAT_JOBS:-1000}
NOOP_JOBS=${NOOP_JOBS:-100000}
NOOP_SLOTS=${NOOP_SLOTS:-64}
SLOTS=4
MAX_SECONDS=${MAX_SECONDS:-180}
BATCH=1000
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
BEANSTALKD=${BEANSTALKD:-/usr/bin/beanstalkd}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

usage() { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --no-celery) DO_CELERY=0 ;;
    --true-only) TRUE_ONLY=1; DO_CELERY=0 ;;
    --workdir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; WORKDIR=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "agents.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) [[ -z $BUILD_DIR ]] || { echo "agents.sh: one BUILD_DIR only" >&2; exit 2; }; BUILD_DIR=$1 ;;
    esac
    shift
done
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "agents.sh: no build folder '$BUILD_DIR'" >&2; exit 2; }
DROVER=$BUILD_DIR/drover
LOAD=$BUILD_DIR/drover-load
SPAWN=$BUILD_DIR/drover-spawn
STAMP=$BUILD_DIR/drover-stamp
CELERY_DIR=$ROOT/bench/celery

if ((QUICK)); then
    ROUNDS=1; JOBS=$((JOBS / 10)); LAT_JOBS=$((LAT_JOBS / 10)); NOOP_JOBS=$((NOOP_JOBS / 10))
fi
((JOBS % BATCH == 0 && NOOP_JOBS % BATCH == 0)) || { echo "agents.sh: JOBS and NOOP_JOBS must be multiples of $BATCH" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "agents.sh: ROUNDS must be from 1 to 9" >&2; exit 2; }

log() { printf 'agents.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for b in "$DROVER" "$LOAD" "$SPAWN" "$STAMP"; do
    [[ -x $b ]] || die "$b is missing: cmake --build '$BUILD_DIR'"
done
[[ -x $BEANSTALKD ]] || die "beanstalkd not found at '$BEANSTALKD' (scripts/deps.sh bench, or set BEANSTALKD)"
command -v curl >/dev/null || die "curl is missing"
if ((DO_CELERY)); then
    [[ -x $REDIS_SERVER ]] || die "redis-server not found at '$REDIS_SERVER' (scripts/deps.sh bench; or --no-celery)"
    "$PYTHON" -c 'import celery, redis' 2>/dev/null ||
        die "$PYTHON cannot import celery and redis (Debian: python3-celery python3-redis; or --no-celery)"
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(bench_work_dir agents-bench)
RESULTS=$WORK/results.tsv # key, label, command, exit status, JSON line
: >"$RESULTS"
FAILED=0

# ---- processes ------------------------------------------------------------------------


cpu_ms() { # PID -> "self_ms children_ms" (user + system) from /proc/PID/stat
    local tck
    tck=$(getconf CLK_TCK)
    awk -v t="$tck" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " ");
        printf "%d %d\n", (f[12] + f[13]) * 1000 / t, (f[14] + f[15]) * 1000 / t }' "/proc/$1/stat" 2>/dev/null ||
        echo "0 0"
}

# record KEY LABEL COMMAND RC JSON
record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"
    log "$2: $5"
}

# bg_run OUTFILE CMD...: runs CMD in the background (so that a signal is handled at once)
# and waits for it; sets RC.
RC=0
bg_run() {
    local out=$1 pid
    shift
    "$@" >"$out" &
    pid=$!
    PIDS+=("$pid")
    RC=0
    wait "$pid" || RC=$?
    forget_pid "$pid"
}

last_json() { # FILE: its last line, or {}
    local l
    l=$(tail -n 1 "$1" 2>/dev/null || true)
    [[ $l == \{* ]] && printf '%s' "$l" || printf '{}'
}

# ---- the drover client (Python, standard library only) --------------------------------

cat >"$WORK/client.py" <<'EOF'
"""drover's side of bench/agents.sh. One line of JSON on stdout per call."""
import argparse, http.client, json, math, sys, time

RT = time.CLOCK_REALTIME


def conn(base):
    host, port = base.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=60)


def call(c, token, method, path, body=None):
    h = {"Authorization": "Bearer " + token}
    if body is not None:
        h["Content-Type"] = "application/json"
    c.request(method, path, body, h)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def pct(s, p):
    if not s:
        return None
    return s[min(len(s), max(1, math.ceil(p / 100.0 * len(s)))) - 1] / 1e6


def summary(ns):
    s = sorted(ns)
    return {"n": len(s), "p50_ms": pct(s, 50), "p90_ms": pct(s, 90), "p99_ms": pct(s, 99),
            "max_ms": s[-1] / 1e6 if s else None}


def queue_counts(c, token, queue):
    st, data = call(c, token, "GET", "/v1/queues")
    if st != 200:
        raise SystemExit(f"GET /v1/queues: HTTP {st}: {data[:300]!r}")
    for q in json.loads(data):
        if q.get("name") == queue:
            return q
    return {}


def wait_done(c, args, t0, deadline):
    """Polls GET /v1/queues every poll_ms until `jobs` ended; returns (t_end, counts)."""
    q = {}
    for _ in range(int(args.max_seconds * 1000 / args.poll_ms) + 10):
        q = queue_counts(c, args.token, args.queue)
        ended = q.get("succeeded", 0) + q.get("failed", 0) + q.get("cancelled", 0)
        if ended >= args.jobs:
            return time.monotonic(), q
        if time.monotonic() > deadline:
            break
        time.sleep(args.poll_ms / 1000.0)
    return None, q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["token", "agents-up", "submit", "throughput", "watch", "latency"])
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--queue", default="bench")
    ap.add_argument("--program", default="/bin/true")
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--agents", type=int, default=1)
    ap.add_argument("--poll-ms", type=float, default=50)
    ap.add_argument("--t0-ns", type=int, default=0, help="watch: CLOCK_REALTIME of the start")
    ap.add_argument("--last-id", default="", help="watch: the job submitted last")
    ap.add_argument("--max-seconds", type=float, default=180)
    a = ap.parse_args()
    a.max_seconds = max(a.max_seconds, 1)
    c = conn(a.base)
    deadline = time.monotonic() + a.max_seconds

    if a.mode == "token":
        name = "bench-agent-%d" % time.time_ns()
        st, data = call(c, a.token, "POST", "/v1/tokens", json.dumps({"role": "agent", "name": name}))
        if st != 201:
            raise SystemExit(f"POST /v1/tokens: HTTP {st}: {data[:300]!r}")
        print(json.loads(data)["token"])
        return 0

    if a.mode == "agents-up":
        for _ in range(int(a.max_seconds * 10) + 1):
            st, data = call(c, a.token, "GET", "/v1/agents")
            up = [x for x in json.loads(data) if x.get("state") == "up"] if st == 200 else []
            if len(up) >= a.agents:
                print(json.dumps({"up": len(up)}))
                return 0
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        print(json.dumps({"up": 0, "error": "agents not up in time"}))
        return 1

    spec = {"queue": a.queue, "command": {"program": a.program}}
    batch = json.dumps([spec] * a.batch, separators=(",", ":"))

    if a.mode in ("submit", "throughput"):
        t0 = time.monotonic()
        for _ in range(a.jobs // a.batch):
            st, data = call(c, a.token, "POST", "/v1/jobs", batch)
            if st != 201:
                raise SystemExit(f"POST /v1/jobs: HTTP {st}: {data[:300]!r}")
        t_sub = time.monotonic()
        out = {"jobs": a.jobs, "submit_seconds": round(t_sub - t0, 3),
               "submit_jobs_per_s": round(a.jobs / (t_sub - t0), 1),
               "last_id": json.loads(data)["jobs"][-1]["id"]}
        if a.mode == "throughput":
            t_end, q = wait_done(c, a, t0, deadline)
            end = t_end if t_end is not None else time.monotonic()
            done = q.get("succeeded", 0)
            out.update({"succeeded": done, "failed": q.get("failed", 0),
                        "seconds": round(end - t0, 3), "jobs_per_s": round(done / (end - t0), 1),
                        "time_limited": t_end is None})
            print(json.dumps(out))
            return 0 if t_end is not None and done == a.jobs else 1
        print(json.dumps(out))
        return 0

    if a.mode == "watch":
        # GET /v1/queues counts every job of the store (about 6 ms with 100,000 of them, on
        # the server's loop): the last job submitted (leased last: FIFO) is watched with
        # the cheap GET /v1/jobs/{id} instead, every 20 ms; then GET /v1/queues confirms.
        for _ in range(int(a.max_seconds * 50) + 10):
            st, data = call(c, a.token, "GET", f"/v1/jobs/{a.last_id}")
            if st == 200 and json.loads(data).get("state") in ("succeeded", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        t_end, q = wait_done(c, a, time.monotonic(), deadline)
        t_real = time.clock_gettime_ns(RT)
        # From t0 (taken by the caller on the same clock) to now, less the time since t_end.
        secs = (t_real - a.t0_ns) / 1e9 - ((time.monotonic() - t_end) if t_end else 0)
        done = q.get("succeeded", 0)
        print(json.dumps({"jobs": a.jobs, "succeeded": done, "failed": q.get("failed", 0),
                          "seconds": round(secs, 3), "jobs_per_s": round(done / secs, 1),
                          "time_limited": t_end is None}))
        return 0 if t_end is not None and done == a.jobs else 1

    # latency: one job at a time on an idle agent
    body = json.dumps(spec)
    start, result, submit, bad = [], [], [], None
    for i in range(a.warmup + a.jobs):
        if time.monotonic() > deadline:
            bad = "time limit"
            break
        t_send = time.clock_gettime_ns(RT)
        st, data = call(c, a.token, "POST", "/v1/jobs", body)
        t_ans = time.clock_gettime_ns(RT)  # the submit's answer is read
        if st != 201:
            bad = f"POST /v1/jobs: HTTP {st}: {data[:300]!r}"
            break
        jid = json.loads(data)["id"]
        st, data = call(c, a.token, "GET", f"/v1/jobs/{jid}/wait?timeout_s=30")
        t_res = time.clock_gettime_ns(RT)  # the result is read
        job = json.loads(data) if st == 200 else {}
        res = job.get("result") or {}
        if job.get("state") != "succeeded":
            bad = f"job {jid}: {job.get('state')} {json.dumps(res)[:300]}"
            break
        if i < a.warmup:
            continue
        submit.append(t_ans - t_send)
        start.append(int(res["stdout"].strip()) - t_ans)
        result.append(t_res - t_ans)
    print(json.dumps({"jobs": len(start), "submit": summary(submit), "start": summary(start),
                      "result": summary(result), "time_limited": bad == "time limit",
                      "error": bad}))
    return 0 if bad is None else 1


if __name__ == "__main__":
    sys.exit(main())
EOF

# In the background (bg_run) it runs as "${CLIENT[@]}", so that its PID is python's own.
CLIENT=("$PYTHON" "$WORK/client.py")
client() { "${CLIENT[@]}" "$@"; }

# ---- drover ---------------------------------------------------------------------------

PORT=
SERVER_PID=
TOKEN=
AGENT_TOKEN=
AGENT_PIDS=()

start_server() { # NAME
    local dir=$WORK/$1 i
    mkdir -p "$dir/data"
    PORT=$(free_port)
    "$DROVER" server --listen "127.0.0.1:$PORT" --data "$dir/data" --sync normal >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if ! wait_healthz "$PORT" "$SERVER_PID"; then
        tail -n 30 "$dir/server.log" >&2
        die "drover server did not answer GET /healthz with 200 within 30 s"
    fi
    for ((i = 0; i < 50; i++)); do
        [[ -s $dir/data/admin.token ]] && break
        sleep 0.1
    done
    [[ -s $dir/data/admin.token ]] || die "no admin token in $dir/data/admin.token"
    TOKEN=$(tr -d '[:space:]' <"$dir/data/admin.token")
    AGENT_TOKEN=$(client token --base "127.0.0.1:$PORT" --token "$TOKEN") || die "cannot make an agent token"
    AGENT_PIDS=()
}

start_agent() { # PHASE NAME SLOTS [agent options...]
    local dir=$WORK/$1 name=$2 slots=$3
    shift 3
    DROVER_TOKEN=$AGENT_TOKEN "$DROVER" agent --server "http://127.0.0.1:$PORT" --name "$name" \
        --queues bench --slots "$slots" --work-dir "$dir/$name" "$@" >"$dir/$name.log" 2>&1 &
    AGENT_PIDS+=($!)
    PIDS+=($!)
}

agents_up() { # N
    client agents-up --base "127.0.0.1:$PORT" --token "$TOKEN" --agents "$1" --max-seconds 15 >/dev/null ||
        die "the agents did not register within 15 s (see $WORK/*/*.log)"
}

# CPU used so far by the server, the agents and the agents' children: "server agents children" ms
drover_cpu() {
    local s a=0 k=0 p self kids
    read -r s _ < <(cpu_ms "$SERVER_PID")
    for p in "${AGENT_PIDS[@]}"; do
        read -r self kids < <(cpu_ms "$p")
        a=$((a + self))
        k=$((k + kids))
    done
    echo "$s $a $k"
}

metric() { # NAME: a counter from the server's /metrics
    curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

stop_drover() {
    local i
    for ((i = ${#AGENT_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${AGENT_PIDS[i]}"; done
    AGENT_PIDS=()
    stop_pid "$SERVER_PID"
}

# with_cpu JSON: adds the CPU per job spent by the server, agents and job processes
with_cpu() { # JSON JOBS CPU0 CPU1 BATCHES0 BATCHES1 OPS0 OPS1
    "$PYTHON" - "$@" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); n = int(sys.argv[2])
c0 = [int(x) for x in sys.argv[3].split()]; c1 = [int(x) for x in sys.argv[4].split()]
b0, b1, o0, o1 = (float(x or 0) for x in sys.argv[5:9])
if n > 0:
    r["cpu_us_per_job"] = {k: round((c1[i] - c0[i]) * 1000.0 / n, 1)
                           for i, k in enumerate(("server", "agents", "job_processes"))}
if b1 > b0:
    r["commits"] = int(b1 - b0)
    r["commit_ops_per_batch"] = round((o1 - o0) / (b1 - b0), 1)
print(json.dumps(r))
EOF
}

bench_spawn() { # KEY LABEL
    local cmd=("$SPAWN" --threads 2 --count "$JOBS" --max-seconds "$MAX_SECONDS")
    log "$2: drover-spawn --threads 2 --count $JOBS"
    bg_run "$WORK/spawn.out" "${cmd[@]}"
    ((RC == 0)) || FAILED=1
    record "$1" "$2" "drover-spawn --threads 2 --count $JOBS --max-seconds $MAX_SECONDS" "$RC" "$(last_json "$WORK/spawn.out")"
}

bench_drover_true() { # ROUND
    local c0 c1 b0 b1 o0 o1 out
    log "(a) drover, round $1: $JOBS x /bin/true over 2 agents x $SLOTS slots"
    start_server "a$1" # a fresh one each round
    start_agent "a$1" agent1 "$SLOTS"
    start_agent "a$1" agent2 "$SLOTS"
    agents_up 2
    c0=$(drover_cpu); b0=$(metric drover_commit_batches_total); o0=$(metric drover_commit_ops_total)
    bg_run "$WORK/a.out" "${CLIENT[@]}" throughput --base "127.0.0.1:$PORT" --token "$TOKEN" \
        --jobs "$JOBS" --batch "$BATCH" --program /bin/true --max-seconds "$MAX_SECONDS"
    c1=$(drover_cpu); b1=$(metric drover_commit_batches_total); o1=$(metric drover_commit_ops_total)
    ((RC == 0)) || FAILED=1
    out=$(with_cpu "$(last_json "$WORK/a.out")" "$JOBS" "$c0" "$c1" "$b0" "$b1" "$o0" "$o1")
    record "a_drover$1" "drover, 2 agents x $SLOTS slots, /bin/true (round $1)" \
        "POST /v1/jobs ($((JOBS / BATCH)) arrays of $BATCH) until GET /v1/queues shows $JOBS succeeded" "$RC" "$out"
    stop_drover
}

bench_drover_latency() {
    log "(b) drover: $LAT_JOBS sequential drover-stamp jobs on an idle agent"
    start_server b
    start_agent b agent1 "$SLOTS"
    agents_up 1
    bg_run "$WORK/b.out" "${CLIENT[@]}" latency --base "127.0.0.1:$PORT" --token "$TOKEN" \
        --jobs "$LAT_JOBS" --warmup 20 --program "$STAMP" --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || FAILED=1
    record b_drover "drover, 1 idle agent, drover-stamp" \
        "POST /v1/jobs (one spec), then GET /v1/jobs/{id}/wait; $LAT_JOBS jobs one at a time after 20 unmeasured" \
        "$RC" "$(last_json "$WORK/b.out")"
    stop_drover
}

NOOP_CONNS=0
bench_drover_noop() { # KEY SLOTS NJOBS
    local key=$1 slots=$2 n=$3 c0 c1 b0 b1 o0 o1 out t0 conns last_id
    log "(c) drover: $n jobs through 2 --bench-noop agents x $slots slots"
    start_server "$key"
    bg_run "$WORK/$key.submit" "${CLIENT[@]}" submit --base "127.0.0.1:$PORT" --token "$TOKEN" \
        --jobs "$n" --batch "$BATCH" --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || { FAILED=1; log "could not store $n jobs: $(cat "$WORK/$key.submit")"; stop_drover; return; }
    last_id=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["last_id"])' "$(last_json "$WORK/$key.submit")")
    c0=$(drover_cpu); b0=$(metric drover_commit_batches_total); o0=$(metric drover_commit_ops_total)
    t0=$(date +%s%N)
    start_agent "$key" agent1 "$slots" --bench-noop
    start_agent "$key" agent2 "$slots" --bench-noop
    bg_run "$WORK/$key.out" "${CLIENT[@]}" watch --base "127.0.0.1:$PORT" --token "$TOKEN" --jobs "$n" \
        --t0-ns "$t0" --last-id "$last_id" --poll-ms 50 --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || FAILED=1
    c1=$(drover_cpu); b1=$(metric drover_commit_batches_total); o1=$(metric drover_commit_ops_total)
    # The agents' connections to the server (their poll and reports requests), the
    # beanstalkd reference gets as many.
    conns=0
    if command -v ss >/dev/null; then
        conns=$(ss -Htn state established "( dport = :$PORT )" 2>/dev/null | wc -l) || conns=0
    fi
    out=$(with_cpu "$(last_json "$WORK/$key.out")" "$n" "$c0" "$c1" "$b0" "$b1" "$o0" "$o1")
    out=$("$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[1]); r["agent_connections"]=int(sys.argv[2]); print(json.dumps(r))' "$out" "$conns")
    record "$key" "drover, 2 --bench-noop agents x $slots slots" \
        "$n jobs stored first; from starting the agents until the last is done and GET /v1/queues shows $n succeeded" "$RC" "$out"
    [[ $key == c_drover ]] && NOOP_CONNS=$conns
    stop_drover
}

bench_beanstalk_take() {
    local dir=$WORK/beanstalkd port pid conns=$NOOP_CONNS
    ((conns > 0)) || conns=4
    mkdir -p "$dir/binlog"
    port=$(free_port)
    "$BEANSTALKD" -l 127.0.0.1 -p "$port" -b "$dir/binlog" -f 50 >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_tcp "$port" "$pid" || { cat "$dir/log" >&2; die "beanstalkd did not start"; }
    log "(c) beanstalkd -f50: put $NOOP_JOBS, then reserve + delete over $conns connections"
    bg_run "$WORK/bs-put.out" "$LOAD" beanstalk --host 127.0.0.1 --port "$port" --conns 4 \
        --requests "$NOOP_JOBS" --size 100 --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || FAILED=1
    record c_bs_put "beanstalkd -f50 put (to fill the tube), 4 conns" \
        "drover-load beanstalk --conns 4 --requests $NOOP_JOBS --size 100" "$RC" "$(last_json "$WORK/bs-put.out")"
    bg_run "$WORK/bs-take.out" "$LOAD" beanstalk-take --host 127.0.0.1 --port "$port" --conns "$conns" \
        --requests "$NOOP_JOBS" --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || FAILED=1
    record c_bs_take "beanstalkd -f50 reserve + delete, $conns conns" \
        "drover-load beanstalk-take --conns $conns --requests $NOOP_JOBS" "$RC" "$(last_json "$WORK/bs-take.out")"
    stop_pid "$pid"
}

# ---- Celery ---------------------------------------------------------------------------

bench_celery() {
    local dir=$WORK/celery port redis_pid worker_pid url
    mkdir -p "$dir"
    port=$(free_port)
    url="redis://127.0.0.1:$port/0"
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    PIDS+=("$redis_pid")
    wait_tcp "$port" "$redis_pid" || { cat "$dir/redis.log" >&2; die "redis-server did not start"; }
    (cd "$CELERY_DIR" && exec env BENCH_REDIS_URL="$url" "$PYTHON" -m celery -A tasks -b "$url" \
        --result-backend "$url" worker --pool prefork --concurrency 2 >"$dir/worker.log" 2>&1) &
    worker_pid=$!
    PIDS+=("$worker_pid")
    bg_run "$dir/ping.out" "$PYTHON" "$CELERY_DIR/client.py" ping --redis "$url" --max-seconds 60
    if ((RC != 0)); then
        tail -n 30 "$dir/worker.log" >&2
        FAILED=1
        log "the Celery worker did not answer within 60 s; Celery reference skipped"
        stop_pid "$worker_pid"; stop_pid "$redis_pid"
        return
    fi
    log "(a) Celery: $JOBS x run_true (subprocess /bin/true), prefork, concurrency 2"
    bg_run "$dir/a.out" "$PYTHON" "$CELERY_DIR/client.py" throughput --redis "$url" --jobs "$JOBS" \
        --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || FAILED=1
    record a_celery "Celery 5, prefork, concurrency 2, subprocess /bin/true" \
        "client.py throughput --jobs $JOBS (one group, join_native)" "$RC" "$(last_json "$dir/a.out")"
    log "(b) Celery: $LAT_JOBS sequential stamp tasks on an idle worker"
    bg_run "$dir/b.out" "$PYTHON" "$CELERY_DIR/client.py" latency --redis "$url" --jobs "$LAT_JOBS" \
        --warmup 20 --max-seconds "$MAX_SECONDS"
    ((RC == 0)) || FAILED=1
    record b_celery "Celery 5, idle worker, task without a process" \
        "client.py latency --jobs $LAT_JOBS (delay(), then get(); after 20 unmeasured)" "$RC" "$(last_json "$dir/b.out")"
    stop_pid "$worker_pid"
    stop_pid "$redis_pid"
}

# ---- the run --------------------------------------------------------------------------

STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FSTYPE=$(stat -f -c %T "$WORK" 2>/dev/null || echo unknown)
if [[ $FSTYPE == tmpfs || $FSTYPE == ramfs ]]; then
    log "WARNING: $WORK is on $FSTYPE: the agents' spool fsyncs cost nothing there"
fi

bench_spawn a_spawn0 "posix_spawn + waitpid /bin/true, 2 spawners (before round 1)"
for ((round = 1; round <= ROUNDS; round++)); do
    bench_drover_true "$round"
    bench_spawn "a_spawn$round" "posix_spawn + waitpid /bin/true, 2 spawners (after round $round)"
done
if ((!TRUE_ONLY)); then
    ((DO_CELERY)) && bench_celery
    bench_drover_latency
    bench_drover_noop c_drover "$NOOP_SLOTS" "$NOOP_JOBS"
    bench_beanstalk_take
    bench_drover_noop c_drover4 "$SLOTS" "$JOBS"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report -----------------------------------------------------------------------

GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1) ]]; then GIT_REV="$GIT_REV (tree modified)"; fi
BS_VERSION=$("$BEANSTALKD" -v 2>&1 | head -n 1 || true)
CELERY_VERSION=$( ((DO_CELERY)) && "$PYTHON" -c 'import celery; print("Celery", celery.__version__)' 2>/dev/null || echo "Celery not run")
REDIS_VERSION=$( ((DO_CELERY)) && "$REDIS_SERVER" --version 2>/dev/null | awk '{print "Redis", $3}' | tr -d 'v=' || echo "")

"$PYTHON" - "$RESULTS" <<EOF
import json, sys
rows, by = [], {}
for line in open(sys.argv[1]):
    key, label, cmd, rc, js = line.rstrip("\n").split("\t", 4)
    try:
        r = json.loads(js)
    except ValueError:
        r = {}
    rows.append((key, label, cmd, int(rc), r))
    if int(rc) == 0 and r:
        by[key] = r

def fmt(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"

def status(key):
    for k, _, _, rc, r in rows:
        if k == key:
            return " **FAILED**" if rc else (" (time-limited)" if r.get("time_limited") else "")
    return " (not run)"

def cpu(r):
    c = r.get("cpu_us_per_job")
    return "-" if not c else f"{c['server']:.0f} / {c['agents']:.0f} / {c['job_processes']:.0f}"

def verdict(ok):
    return "met" if ok else "NOT met"

quick = $QUICK
print("## Agents: running jobs, latency, queue-only throughput ($STARTED)")
print()
print("- machine: \`$(uname -srm)\`, nproc $(nproc), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); work folder on $FSTYPE")
print("- load average before / after: $LOAD_BEFORE / $LOAD_AFTER")
print("- drover $GIT_REV (\`drover server --sync normal\`); $CELERY_VERSION; $REDIS_VERSION; $BS_VERSION"
      + (" (--quick: smoke test, not a figure)" if quick else ""))
print()

print("### (a) /bin/true jobs: $JOBS jobs")
print()
print("| figure | jobs | seconds | jobs per s | CPU µs per job: server / agents / processes |")
print("|---|---:|---:|---:|---:|")
rounds = $ROUNDS
keys = ["a_spawn0"]
for i in range(1, rounds + 1):
    keys += [f"a_drover{i}", f"a_spawn{i}"]
for key in keys + ["a_celery"]:
    for k, label, cmd, rc, r in rows:
        if k != key:
            continue
        n = r.get("succeeded", r.get("spawned"))
        print(f"| {label}{status(k)} | {fmt(n)} | {fmt(r.get('seconds'), 2)} | "
              f"{fmt(r.get('jobs_per_s', r.get('per_s')))} | {cpu(r)} |")
# each round beside the mean of the spawner runs just before and after it; the median round
ratios = []
for i in range(1, rounds + 1):
    d = by.get(f"a_drover{i}", {}).get("jobs_per_s")
    sp = [by[k]["per_s"] for k in (f"a_spawn{i - 1}", f"a_spawn{i}") if k in by]
    if d and sp:
        ratios.append((d / (sum(sp) / len(sp)), i, d, sum(sp) / len(sp)))
comp = []
med = sorted(ratios)[(len(ratios) - 1) // 2] if ratios else None
if med:
    x, i, d, ref = med
    each = ", ".join(f"{r[0]:.2f}" for r in sorted(ratios, key=lambda r: r[1]))
    comp.append(f"| drover vs bare posix_spawn (median of {len(ratios)} round{'s' if len(ratios) > 1 else ''}: {each}) | round {i}: "
                f"{d:,.0f} / {ref:,.0f} = **{x:.2f}** | >= 0.70 | {verdict(x >= 0.70)} |")
ce = by.get("a_celery", {}).get("jobs_per_s")
if med and ce:
    d = med[2]
    x = d / ce
    comp.append(f"| drover (median round) vs Celery | {d:,.0f} / {ce:,.0f} = **{x:.2f}x** | >= 4x | {verdict(x >= 4)} |")
if comp:
    print()
    print("| comparison | measured | target | |")
    print("|---|---:|---:|---|")
    print("\n".join(comp))
ra = by.get(f"a_drover{med[1]}", {}) if med else {}
if ra.get("commits"):
    print()
    print(f"drover, round {med[1]}: {ra['commits']:,} group commits, {ra['commit_ops_per_batch']} operations each on average; submitting took {ra.get('submit_seconds')} s.")
print()

true_only = $TRUE_ONLY
real_print = print
if true_only:  # --true-only: no (b) or (c) to report
    print = lambda *a, **k: None
print("### (b) latency on an idle agent: $LAT_JOBS sequential jobs")
print()
print("| figure | n | p50 ms | p90 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|")
lines = [("b_drover", "submit", "drover: submit round trip"),
         ("b_drover", "start", "drover: submit's answer -> process running"),
         ("b_drover", "result", "drover: submit's answer -> result seen by /wait"),
         ("b_celery", "submit", "Celery: delay() (publish)"),
         ("b_celery", "start", "Celery: delay() returned -> task start"),
         ("b_celery", "result", "Celery: delay() returned -> get() returned")]
for key, part, label in lines:
    s = by.get(key, {}).get(part)
    if not s:
        print(f"| {label}{status(key)} | - | - | - | - | - |")
        continue
    print(f"| {label} | {s['n']:,} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} |")
comp = []
targets = [("start", 50, 1.5), ("start", 99, 4.0), ("result", 50, 2.5), ("result", 99, 6.0)]
for part, p, t in targets:
    s = by.get("b_drover", {}).get(part)
    c = by.get("b_celery", {}).get(part)
    if not s:
        continue
    v = s[f"p{p}_ms"]
    rel = f" (Celery {c[f'p{p}_ms']:.2f} ms: {v / c[f'p{p}_ms']:.2f}x)" if c and c.get(f"p{p}_ms") else ""
    name = "submit -> running" if part == "start" else "submit -> result"
    comp.append(f"| drover {name} p{p} | **{v:.2f} ms**{rel} | <= {t} ms | {verdict(v <= t)} |")
if comp:
    print()
    print("| comparison | measured | target | |")
    print("|---|---:|---:|---|")
    print("\n".join(comp))
print()

print("### (c) queue only: agents with --bench-noop vs beanstalkd reserve + delete")
print()
print("| figure | jobs | seconds | jobs per s | p50 / p99 ms | CPU µs per job: server / agents / - | connections |")
print("|---|---:|---:|---:|---:|---:|---:|")
for key in ("c_drover", "c_drover4", "c_bs_take", "c_bs_put"):
    for k, label, cmd, rc, r in rows:
        if k != key:
            continue
        n = r.get("succeeded", r.get("requests"))
        secs = r.get("seconds")
        if secs is None and r.get("per_s"):
            secs = r["requests"] / r["per_s"]
        lat = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if "p50_ms" in r else "-"
        conns = r.get("agent_connections", r.get("conns", "-"))
        print(f"| {label}{status(k)} | {fmt(n)} | {fmt(secs, 2)} | {fmt(r.get('jobs_per_s'))} | {lat} | {cpu(r)} | {conns} |")
comp = []
d = by.get("c_drover", {}).get("jobs_per_s")
b = by.get("c_bs_take", {}).get("jobs_per_s")
if d:
    comp.append(f"| drover --bench-noop, 2 agents x $NOOP_SLOTS slots | **{d:,.0f} jobs/s** | >= 20,000 jobs/s | {verdict(d >= 20000)} |")
if d and b:
    comp.append(f"| drover --bench-noop vs beanstalkd reserve + delete | {d:,.0f} / {b:,.0f} = **{d / b:.2f}x** | (reference) | |")
if comp:
    print()
    print("| comparison | measured | target | |")
    print("|---|---:|---:|---|")
    print("\n".join(comp))
print()
print = real_print
print("Commands (\`bash bench/agents.sh\` ran them; PORT is a free loopback port, DIR a fresh folder):")
print()
print("\`\`\`")
print("drover server --listen 127.0.0.1:PORT --data DIR --sync normal      # a fresh one per drover figure")
print("POST /v1/tokens {\"role\":\"agent\"}  ->  DROVER_TOKEN for the agents")
print("drover agent --server http://127.0.0.1:PORT --name agentN --queues bench --slots 4 --work-dir DIR/agentN   # [--bench-noop], [--slots $NOOP_SLOTS]")
print("redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no")
print("cd bench/celery && python3 -m celery -A tasks -b redis://127.0.0.1:PORT/0 --result-backend redis://127.0.0.1:PORT/0 worker --pool prefork --concurrency 2")
print("beanstalkd -l 127.0.0.1 -p PORT -b DIR -f 50")
for k, label, cmd, rc, r in rows:
    print(f"{label}: {cmd}")
print("\`\`\`")
EOF

if ((FAILED)); then
    log "some runs failed (see above); the report marks them"
    exit 1
fi
