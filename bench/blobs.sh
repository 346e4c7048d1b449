#!/usr/bin/env bash
# bench/blobs.sh - drover's object store and file staging, side by side with references
# measured in the same run, on the same disk:
#   (1) a large object (1 GiB) through the server's embedded store: PUT /v1/blobs/{b}/{k}
#       (curl -T: streamed, with Content-Length), then GET, vs cp of the same file, cp
#       followed by an fsync of the copy (the store fsyncs a commit), cat > /dev/null, and
#       nginx (dav module PUT; GET with sendfile on and off), all with curl as the client;
#       each 3 times (median), with the page cache dropped before each transfer when
#       /proc/sys/vm/drop_caches can be written ("cold"), then again with it warm;
#       the server's peak RSS (VmHWM);
#   (2) per-job staging overhead: N jobs of `sh -c 'cat "$1" > "$2"'` on one agent with 2
#       slots, with an s3:// input argument and an s3:// output argument (small objects),
#       vs the same N jobs reading a local file and writing into the work folder (no
#       staging); 3 rounds, alternating, median.
#
#   bash bench/blobs.sh [options] [BUILD_DIR]      (BUILD_DIR defaults to ./build-bench)
#
#   --quick          64 MiB, 1 repetition, 40 jobs: a smoke test, not a figure to record
#   --warm-only      never drop the page cache (the "cold" rows are left out)
#   --workdir DIR    where data goes (default: a fresh folder in BUILD_DIR); on the disk
#                    under test, not tmpfs
#   --keep           keep the work folder (logs, data) afterwards
#
# Prints a markdown report on stdout (progress goes to stderr); the report is yours to
# copy to bench/RESULTS.md. Environment knobs: SIZE_MB (1024), REPS (3), JOBS (200),
# ROUNDS (3), INPUT_BYTES (1024), MAX_SECONDS (bound of each transfer or round, 300),
# NGINX (/usr/sbin/nginx), PYTHON (/usr/bin/python3).
#
# Every process started here is stopped by its PID on exit, and every loop is bounded in
# count and time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=
WORKDIR=
QUICK=0
KEEP=0
WARM_ONLY=0
SIZE_MB=${SIZE_MB:-1024}
REPS=${REPS:-3}
JOBS=${JOBS:-200}
ROUNDS=${ROUNDS:-3}
INPUT_BYTES=${INPUT_BYTES:-1024}
SLOTS=2
MAX_SECONDS=${MAX_SECONDS:-300}
NGINX=${NGINX:-/usr/sbin/nginx}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --warm-only) WARM_ONLY=1 ;;
    --workdir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; WORKDIR=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "blobs.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) [[ -z $BUILD_DIR ]] || { echo "blobs.sh: one BUILD_DIR only" >&2; exit 2; }; BUILD_DIR=$1 ;;
    esac
    shift
done
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "blobs.sh: no build folder '$BUILD_DIR'" >&2; exit 2; }
DROVER=$BUILD_DIR/drover
if ((QUICK)); then SIZE_MB=64; REPS=1; JOBS=40; ROUNDS=1; fi

log() { printf 'blobs.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $DROVER ]] || die "$DROVER is missing: cmake --build '$BUILD_DIR'"
[[ -x $NGINX ]] || die "nginx not found at '$NGINX' (Debian: nginx; or set NGINX)"
"$NGINX" -V 2>&1 | grep -q -- --with-http_dav_module || die "$NGINX has no dav module (PUT)"
command -v curl >/dev/null || die "curl is missing"
command -v sha256sum >/dev/null || die "sha256sum is missing"
command -v openssl >/dev/null || die "openssl is missing"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(bench_work_dir blobs-bench)
RESULTS=$WORK/results.tsv # part, cache, system, direction, rep, seconds, server CPU ms
: >"$RESULTS"
FAILED=0


cpu_ms() { # PID -> its user + system CPU in ms, from /proc/PID/stat
    local tck
    tck=$(getconf CLK_TCK)
    awk -v t="$tck" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " ");
        printf "%d\n", (f[12] + f[13]) * 1000 / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}
sys_ms() { # PID -> its system CPU in ms
    local tck
    tck=$(getconf CLK_TCK)
    awk -v t="$tck" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " ");
        printf "%d\n", f[13] * 1000 / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}

now_ns() { date +%s%N; }

# Dropping the page cache needs root and a writable /proc/sys (not every container).
CAN_DROP=0
if ((!WARM_ONLY)) && [[ -w /proc/sys/vm/drop_caches ]] && (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    CAN_DROP=1
fi
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# ---- the drover client (Python, standard library only) --------------------------------

cat >"$WORK/client.py" <<'EOF'
"""drover's side of bench/blobs.sh (part 2). One line of JSON on stdout per call."""
import argparse, http.client, json, os, sys, time


def conn(base):
    host, port = base.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=60)


def call(c, token, method, path, body=None, ctype="application/json"):
    h = {"Authorization": "Bearer " + token}
    if body is not None:
        h["Content-Type"] = ctype
    c.request(method, path, body, h)
    r = c.getresponse()
    return r.status, r.read()


def ended(c, token, queue):
    st, data = call(c, token, "GET", "/v1/queues")
    if st != 200:
        raise SystemExit(f"GET /v1/queues: HTTP {st}: {data[:300]!r}")
    for q in json.loads(data):
        if q.get("name") == queue:
            return q.get("succeeded", 0), q.get("failed", 0) + q.get("cancelled", 0)
    return 0, 0


def spec(a, i):
    script = 'cat "$1" > "$2"'
    args = [{"type": "parameter", "value": "-c"}, {"type": "parameter", "value": script},
            {"type": "parameter", "value": "sh"}]
    if a.staged:
        args += [{"type": "input", "value": f"s3://{a.bucket}/in/{i}/input.txt"},
                 {"type": "output", "value": f"s3://{a.bucket}/out/{a.tag}/{i}/output.txt"}]
    else:
        args += [{"type": "parameter", "value": a.local_input},
                 {"type": "parameter", "value": "output.txt"}]
    return {"queue": a.queue, "command": {"program": "/bin/sh", "arguments": args},
            "retry": {"max_attempts": 1}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["token", "agents-up", "inputs", "run", "check"])
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--queue", default="plain")
    ap.add_argument("--bucket", default="bench")
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--bytes", type=int, default=1024)
    ap.add_argument("--staged", action="store_true")
    ap.add_argument("--tag", default="r0")
    ap.add_argument("--local-input", default="")
    ap.add_argument("--job", default="")
    ap.add_argument("--max-seconds", type=float, default=300)
    a = ap.parse_args()
    c = conn(a.base)
    deadline = time.monotonic() + max(a.max_seconds, 1)

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
            if st == 200 and any(x.get("state") == "up" for x in json.loads(data)):
                print(json.dumps({"up": True}))
                return 0
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        print(json.dumps({"up": False}))
        return 1

    if a.mode == "inputs":  # one small object per job: s3://bucket/in/<i>/input.txt
        for i in range(a.jobs):
            body = ((b"%d " % i) + os.urandom(a.bytes).hex().encode())[: a.bytes]
            st, data = call(c, a.token, "PUT", f"/v1/blobs/{a.bucket}/in/{i}/input.txt", body,
                            "application/octet-stream")
            if st not in (200, 201):
                raise SystemExit(f"PUT in/{i}: HTTP {st}: {data[:300]!r}")
        print(json.dumps({"inputs": a.jobs}))
        return 0

    if a.mode == "check":  # a staged job: succeeded, its output listed and equal to its input
        st, data = call(c, a.token, "GET", f"/v1/jobs/{a.job}")
        job = json.loads(data) if st == 200 else {}
        res = job.get("result") or {}
        outs = res.get("outputs") or []
        ok = job.get("state") == "succeeded" and len(outs) == 1
        if ok:
            uri = outs[0]["uri"]
            _, got = call(c, a.token, "GET", "/v1/blobs/" + uri[len("s3://"):])
            i = uri.rstrip("/").split("/")[-2]  # s3://bucket/out/<round>/<i>/output.txt
            _, want = call(c, a.token, "GET", f"/v1/blobs/{a.bucket}/in/{i}/input.txt")
            ok = got == want and outs[0]["size"] == len(want)
        print(json.dumps({"ok": ok, "state": job.get("state"), "outputs": outs,
                          "error": res.get("error")}))
        return 0 if ok else 1

    # run: submit N jobs as one array, wait until the queue shows N more ended
    s0, f0 = ended(c, a.token, a.queue)
    body = json.dumps([spec(a, i) for i in range(a.jobs)], separators=(",", ":"))
    t0 = time.monotonic()
    st, data = call(c, a.token, "POST", "/v1/jobs", body)
    if st != 201:
        raise SystemExit(f"POST /v1/jobs: HTTP {st}: {data[:300]!r}")
    ids = [j["id"] for j in json.loads(data)["jobs"]]
    t_end, s, f = None, s0, f0
    for _ in range(int(a.max_seconds * 100) + 10):
        s, f = ended(c, a.token, a.queue)
        if s + f - s0 - f0 >= a.jobs:
            t_end = time.monotonic()
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    end = t_end if t_end is not None else time.monotonic()
    out = {"jobs": a.jobs, "succeeded": s - s0, "failed": f - f0, "seconds": round(end - t0, 4),
           "jobs_per_s": round((s - s0) / (end - t0), 1), "time_limited": t_end is None,
           "last_id": ids[-1]}
    if f - f0:  # show why the first failed one failed
        for jid in ids:
            st, data = call(c, a.token, "GET", f"/v1/jobs/{jid}")
            job = json.loads(data) if st == 200 else {}
            if job.get("state") != "succeeded":
                out["first_failure"] = {"id": jid, "state": job.get("state"),
                                        "result": job.get("result")}
                break
    print(json.dumps(out))
    return 0 if t_end is not None and f == f0 and s - s0 == a.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
EOF
client() { "$PYTHON" "$WORK/client.py" "$@"; }

# ---- processes ------------------------------------------------------------------------

PORT=
SERVER_PID=
TOKEN=
start_server() {
    local dir=$WORK/drover i
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
}

NGINX_PORT=
NGINX_PID=
start_nginx() {
    local dir=$WORK/nginx
    mkdir -p "$dir/root/up" "$dir/body" "$dir/logs"
    NGINX_PORT=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/blobs.sh
daemon off;
master_process on;
worker_processes 1;
user root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/body;
    fastcgi_temp_path $dir/body;
    uwsgi_temp_path $dir/body;
    scgi_temp_path $dir/body;
    client_max_body_size 0;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $dir/root;
        location /up/ { dav_methods PUT DELETE; create_full_put_path on; dav_access user:rw; }
        location /nosendfile/ { sendfile off; alias $dir/root/; }
    }
}
EOF
    "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" >"$dir/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_tcp "$NGINX_PORT" "$NGINX_PID" || { cat "$dir/logs/"* >&2; die "nginx did not start"; }
}

nginx_cpu_ms() { # master + workers: "total_ms sys_ms"
    local t=0 y=0 p
    for p in $NGINX_PID $(pgrep -P "$NGINX_PID" 2>/dev/null || true); do
        t=$((t + $(cpu_ms "$p")))
        y=$((y + $(sys_ms "$p")))
    done
    echo "$t $y"
}

# ---- part 1: one large object ---------------------------------------------------------

SRC=$WORK/src.bin
SRC_SHA=
SIZE=$((SIZE_MB * 1024 * 1024))
AUTH=()

# measure CACHE SYSTEM DIRECTION REP CPU_FN PREP CMD...: runs PREP (a function, untimed),
# drops the page cache when CACHE is cold, then times CMD (an executable, under timeout)
# and checks its exit status; records the seconds and CPU_FN's delta.
measure() {
    local cache=$1 sys=$2 dir=$3 rep=$4 cpufn=$5 prep=$6 t0 t1 c0 c1 y0 y1 rc=0
    shift 6
    $prep
    sync # nothing dirty left by the last transfer is written back during this one
    if [[ $cache == cold ]]; then drop_caches; fi
    read -r c0 y0 < <($cpufn)
    t0=$(now_ns)
    timeout "$MAX_SECONDS" "$@" >"$WORK/last.out" 2>&1 || rc=$?
    t1=$(now_ns)
    read -r c1 y1 < <($cpufn)
    if ((rc != 0)); then
        FAILED=1
        log "$sys $dir ($cache, rep $rep) FAILED (exit $rc): $(head -c 300 "$WORK/last.out")"
        printf 'big\t%s\t%s\t%s\t%s\t%s\t%s\tFAILED\n' "$cache" "$sys" "$dir" "$rep" "0" "0/0" >>"$RESULTS"
        return
    fi
    printf 'big\t%s\t%s\t%s\t%s\t%s\t%s\tok\n' "$cache" "$sys" "$dir" "$rep" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')" "$((c1 - c0))/$((y1 - y0))" >>"$RESULTS"
    log "$sys $dir ($cache, rep $rep): $(awk -v a="$t0" -v b="$t1" -v n="$SIZE" 'BEGIN { printf "%.2f s, %.0f MiB/s", (b - a) / 1e9, n / 1048576 / ((b - a) / 1e9) }')"
}

no_cpu() { echo "0 0"; }
server_cpu() { echo "$(cpu_ms "$SERVER_PID") $(sys_ms "$SERVER_PID")"; }
nothing() { :; }

# curl exits 22 on an HTTP error with --fail
CURL=(curl -s --fail --max-time "$MAX_SECONDS")

rm_copy() { rm -f "$WORK/cp/copy.bin"; }
nginx_delete() { "${CURL[@]}" -X DELETE -o /dev/null "http://127.0.0.1:$NGINX_PORT/up/copy.bin" || true; }
drover_delete() { "${CURL[@]}" -X DELETE -o /dev/null "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/blobs/bench/big.bin" || true; }
drover_put() { "${CURL[@]}" -o "$WORK/put.json" "${AUTH[@]}" -T "$SRC" "http://127.0.0.1:$PORT/v1/blobs/bench/big.bin"; }
nginx_put() { "${CURL[@]}" -o /dev/null -T "$SRC" "http://127.0.0.1:$NGINX_PORT/up/copy.bin"; }
drover_get() { "${CURL[@]}" -o /dev/null "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/blobs/bench/big.bin"; }

HWM_START=
HWM_BIG=
bench_big() {
    local caches=(warm) cache rep
    ((CAN_DROP)) && caches=(cold warm)
    mkdir -p "$WORK/cp"
    log "(1) writing a ${SIZE_MB} MiB file of random bytes"
    head -c "$SIZE" /dev/urandom >"$SRC"
    sync "$SRC"
    SRC_SHA=$(sha256sum "$SRC" | awk '{print $1}')
    start_nginx
    ln "$SRC" "$WORK/nginx/root/src.bin" # the same file (one inode) served by nginx
    start_server
    AUTH=(-H "Authorization: Bearer $TOKEN")
    HWM_START=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    # One unmeasured round: the object exists for GET, and the first use of each path is paid.
    drover_put || die "PUT of the object failed: $(cat "$WORK/put.json" 2>/dev/null)"
    grep -q "\"$SRC_SHA\"" "$WORK/put.json" || die "the store's sha256 differs: $(cat "$WORK/put.json")"
    nginx_put || die "nginx PUT failed: $(cat "$WORK/nginx/logs/error.log")"
    cmp -s "$SRC" "$WORK/nginx/root/up/copy.bin" || die "nginx stored a different file"
    [[ $("${CURL[@]}" "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/blobs/bench/big.bin" | sha256sum | awk '{print $1}') == "$SRC_SHA" ]] ||
        die "GET from drover returned other bytes"
    local cp_cmd=(cp "$SRC" "$WORK/cp/copy.bin")
    local cp_sync_cmd=(sh -c 'cp "$1" "$2" && sync "$2"' sh "$SRC" "$WORK/cp/copy.bin")
    local cat_cmd=(sh -c 'cat "$1" >/dev/null' sh "$SRC")
    local ng_put=("${CURL[@]}" -o /dev/null -T "$SRC" "http://127.0.0.1:$NGINX_PORT/up/copy.bin")
    local dr_put=("${CURL[@]}" -o "$WORK/put.json" "${AUTH[@]}" -T "$SRC" "http://127.0.0.1:$PORT/v1/blobs/bench/big.bin")
    local ng_get=("${CURL[@]}" -o /dev/null "http://127.0.0.1:$NGINX_PORT/src.bin")
    local ng_get_nosf=("${CURL[@]}" -o /dev/null "http://127.0.0.1:$NGINX_PORT/nosendfile/src.bin")
    local dr_get=("${CURL[@]}" -o /dev/null "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/blobs/bench/big.bin")
    # The order of the systems turns with each repetition: on a VM whose freed memory goes
    # back to the host (virtio-balloon free page reporting), the first touch of new page
    # cache costs more, and whoever runs right after a big file was removed pays for it.
    local ups=(up_cp up_cp_fsync up_nginx up_drover) downs=(down_cat down_nginx down_nginx_nosf down_drover) i n
    for cache in "${caches[@]}"; do
        for ((rep = 1; rep <= REPS; rep++)); do
            n=${#ups[@]}
            for ((i = 0; i < n; i++)); do
                if [[ $cache == warm ]]; then cat "$SRC" >/dev/null; fi
                case ${ups[(i + rep - 1) % n]} in
                up_cp) measure "$cache" cp up "$rep" no_cpu rm_copy "${cp_cmd[@]}" ;;
                up_cp_fsync) measure "$cache" cp_fsync up "$rep" no_cpu rm_copy "${cp_sync_cmd[@]}" ;;
                up_nginx) measure "$cache" nginx up "$rep" nginx_cpu_ms nginx_delete "${ng_put[@]}" ;;
                up_drover) measure "$cache" drover up "$rep" server_cpu drover_delete "${dr_put[@]}" ;;
                esac
            done
        done
        grep -q "\"$SRC_SHA\"" "$WORK/put.json" || die "the store's sha256 differs: $(cat "$WORK/put.json")"
        rm_copy
        for ((rep = 1; rep <= REPS; rep++)); do
            n=${#downs[@]}
            for ((i = 0; i < n; i++)); do
                if [[ $cache == warm ]]; then cat "$SRC" >/dev/null; drover_get; fi # both in the cache
                case ${downs[(i + rep - 1) % n]} in
                down_cat) measure "$cache" cat down "$rep" no_cpu nothing "${cat_cmd[@]}" ;;
                down_nginx) measure "$cache" nginx down "$rep" nginx_cpu_ms nothing "${ng_get[@]}" ;;
                down_nginx_nosf) measure "$cache" nginx_nosf down "$rep" nginx_cpu_ms nothing "${ng_get_nosf[@]}" ;;
                down_drover) measure "$cache" drover down "$rep" server_cpu nothing "${dr_get[@]}" ;;
                esac
            done
        done
    done
    cat "$SRC" >/dev/null
    for ((rep = 1; rep <= REPS; rep++)); do measure warm sha256 hash "$rep" no_cpu nothing openssl dgst -sha256 "$SRC"; done
    HWM_BIG=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    rm -f "$WORK/cp/copy.bin" "$WORK/nginx/root/up/copy.bin"
    stop_pid "$NGINX_PID"
}

# ---- part 2: staging ------------------------------------------------------------------

AGENT_PID=
bench_staging() {
    local dir=$WORK/staging agent_token r kind out rc c0 c1 a0 a1 last=
    mkdir -p "$dir/agent"
    printf 'a small local input\n' >"$dir/local-input.txt"
    agent_token=$(client token --base "127.0.0.1:$PORT" --token "$TOKEN") || die "cannot make an agent token"
    DROVER_TOKEN=$agent_token "$DROVER" agent --server "http://127.0.0.1:$PORT" --name bench1 \
        --queues plain,staged --slots "$SLOTS" --work-dir "$dir/agent" >"$dir/agent.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    client agents-up --base "127.0.0.1:$PORT" --token "$TOKEN" --max-seconds 15 >/dev/null ||
        die "the agent did not register within 15 s (see $dir/agent.log)"
    log "(2) $JOBS small inputs of $INPUT_BYTES bytes"
    client inputs --base "127.0.0.1:$PORT" --token "$TOKEN" --jobs "$JOBS" --bytes "$INPUT_BYTES" >/dev/null ||
        die "could not upload the inputs"
    # Rounds: 0 is an unmeasured warm-up of each kind, then plain and staged alternate.
    for ((r = 0; r <= ROUNDS; r++)); do
        for kind in plain staged; do
            local extra=()
            [[ $kind == staged ]] && extra=(--staged)
            c0=$(cpu_ms "$SERVER_PID"); a0=$(cpu_ms "$AGENT_PID")
            rc=0
            out=$(client run --base "127.0.0.1:$PORT" --token "$TOKEN" --queue "$kind" --jobs "$JOBS" \
                --tag "r$r" --local-input "$dir/local-input.txt" --max-seconds "$MAX_SECONDS" "${extra[@]}") || rc=$?
            c1=$(cpu_ms "$SERVER_PID"); a1=$(cpu_ms "$AGENT_PID")
            log "$kind round $r: $out"
            if ((rc != 0)); then FAILED=1; fi
            ((r == 0)) && continue
            printf 'jobs\t-\t%s\t-\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$r" "$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("seconds", 0))' 2>/dev/null || echo 0)" \
                "$((c1 - c0))/$((a1 - a0))" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" "$out" >>"$RESULTS"
            [[ $kind == staged ]] && last=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("last_id", ""))' 2>/dev/null || true)
        done
    done
    if [[ -n $last ]]; then
        CHECK=$(client check --base "127.0.0.1:$PORT" --token "$TOKEN" --job "$last") || { FAILED=1; log "check of a staged job failed: $CHECK"; }
    fi
    stop_pid "$AGENT_PID"
}

# ---- the run --------------------------------------------------------------------------

CHECK='{}'
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FSTYPE=$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK" 2>/dev/null || echo unknown)
DEVICE=$(df -P "$WORK" | awk 'NR == 2 {print $1}')
if [[ $FSTYPE == tmpfs || $FSTYPE == ramfs ]]; then
    log "WARNING: $WORK is on $FSTYPE: not a disk"
fi
((CAN_DROP)) || log "the page cache cannot be dropped here: every figure is with a warm cache"

bench_big
LOAD_MID=$(cut -d' ' -f1-3 /proc/loadavg)
bench_staging
HWM_END=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
stop_pid "$SERVER_PID"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report -----------------------------------------------------------------------

GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1) ]]; then GIT_REV="$GIT_REV (tree modified)"; fi
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
CURL_VERSION=$(curl --version | awk 'NR == 1 {print $1, $2}')

"$PYTHON" - "$RESULTS" <<EOF
import json, statistics, sys
size = $SIZE
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]

def med(xs):
    return statistics.median(xs) if xs else None

print("## Object store and staging ($STARTED)")
print()
print("- machine: \`$(uname -srm)\`, nproc $(nproc) (shared: others' tests run beside), "
      "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); work folder on $FSTYPE ($DEVICE), "
      "with the server's data folder, nginx's root and body temp folder, and cp's copies")
print("- load average (1/5/15 min) before / after part 1 / after part 2: $LOAD_BEFORE / $LOAD_MID / $LOAD_AFTER")
print("- drover $GIT_REV (\`drover server --sync normal\`, embedded store fs:DATA/blobs); $NGINX_VERSION "
      "(1 worker, dav PUT); $CURL_VERSION as every client"
      + (" (--quick: smoke test, not a figure)" if $QUICK else ""))
print("- page cache: " + ("dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each cold transfer"
                          if $CAN_DROP else "NOT dropped (not possible here): warm figures only"))
print()

print("### (1) one object of $SIZE_MB MiB: medians of $REPS")
print()
names = {"cp": "cp (file to file)", "cp_fsync": "cp, then fsync of the copy (sync FILE)",
         "nginx": "nginx", "nginx_nosf": "nginx, sendfile off", "drover": "drover server",
         "cat": "cat > /dev/null (read only)", "sha256": "OpenSSL SHA-256 of the file (CPU only: the store hashes every upload with it)"}
what = {"up": {"cp": "cp", "cp_fsync": "cp + fsync", "nginx": "curl -T (dav PUT, temp file renamed)",
               "drover": "curl -T (PUT /v1/blobs, sha256 + fsync on commit)"},
        "down": {"cat": "cat", "nginx": "curl -o /dev/null", "nginx_nosf": "curl -o /dev/null",
                 "drover": "curl -o /dev/null (GET /v1/blobs)"},
        "hash": {"sha256": "openssl dgst -sha256"}}
print("| cache | direction | system | how | seconds (runs) | MiB/s | server CPU s (of it kernel) |")
print("|---|---|---|---|---:|---:|---:|")
med_rate = {}
for cache in ("cold", "warm"):
    for d in ("up", "down", "hash"):
        for s in what[d]:
            rs = [r for r in rows if r[0] == "big" and r[1] == cache and r[2] == s and r[3] == d]
            if not rs:
                continue
            ok = [r for r in rs if r[7] == "ok"]
            secs = [float(r[5]) for r in ok]
            cpu = [int(r[6].split("/")[0]) / 1000 for r in ok]
            ksys = [int(r[6].split("/")[1]) / 1000 for r in ok]
            m = med(secs)
            flag = " **FAILED**" if len(ok) < len(rs) else ""
            if m:
                med_rate[(cache, d, s)] = size / 1048576 / m
            runs = ", ".join(f"{x:.2f}" for x in secs)
            c = (f"{med(cpu):.2f} ({med(ksys):.2f})" if s in ("drover", "nginx", "nginx_nosf") and cpu
                 else "-")
            print(f"| {cache} | {d} | {names[s]}{flag} | {what[d][s]} | "
                  f"{m:.2f} ({runs}) | {size / 1048576 / m:,.0f} | {c} |" if m else
                  f"| {cache} | {d} | {names[s]}{flag} | {what[d][s]} | - | - | - |")
print()
print("| comparison (median throughput, same run) | ratio |")
print("|---|---:|")
for cache in ("cold", "warm"):
    for d, refs in (("up", ("cp", "cp_fsync", "nginx")), ("down", ("cat", "nginx", "nginx_nosf"))):
        dv = med_rate.get((cache, d, "drover"))
        for ref in refs:
            rv = med_rate.get((cache, d, ref))
            if dv and rv:
                print(f"| {cache}, {'upload' if d == 'up' else 'download'}: drover / {names[ref]} | "
                      f"{dv:,.0f} / {rv:,.0f} = **{dv / rv:.2f}** |")
print()
print(f"drover server peak RSS (VmHWM): {$HWM_START / 1024:.1f} MiB after start, "
      f"{$HWM_BIG / 1024:.1f} MiB after part 1 (every transfer of the {$SIZE_MB} MiB object), "
      f"{$HWM_END / 1024:.1f} MiB at the end.")
print()

print("### (2) staging: $JOBS jobs of \`sh -c 'cat \"\$1\" > \"\$2\"'\`, one agent with $SLOTS slots, medians of $ROUNDS rounds")
print()
print("| jobs | input / output | seconds (rounds) | jobs per s | CPU ms per job: server / agent |")
print("|---|---|---:|---:|---:|")
jr = {}
for kind, label in (("plain", "local file / file in the work folder (no staging)"),
                    ("staged", "s3:// input argument ($INPUT_BYTES B) / s3:// output argument")):
    rs = [r for r in rows if r[0] == "jobs" and r[2] == kind]
    ok = [r for r in rs if r[7] == "ok"]
    secs = [float(r[5]) for r in ok]
    flag = " **FAILED**" if len(ok) < len(rs) else ""
    if not secs:
        print(f"| $JOBS | {label}{flag} | - | - | - |")
        continue
    m = med(secs)
    jr[kind] = m
    sc = med([int(r[6].split("/")[0]) / $JOBS for r in ok])
    ac = med([int(r[6].split("/")[1]) / $JOBS for r in ok])
    print(f"| $JOBS | {label}{flag} | {m:.3f} ({', '.join(f'{x:.3f}' for x in secs)}) | "
          f"{$JOBS / m:,.0f} | {sc:.2f} / {ac:.2f} |")
if "plain" in jr and "staged" in jr:
    extra = (jr["staged"] - jr["plain"]) * 1000 / $JOBS
    print()
    print(f"Staging costs **{extra:.2f} ms of wall time per job** at $SLOTS slots "
          f"({$JOBS / jr['staged']:,.0f} vs {$JOBS / jr['plain']:,.0f} jobs/s: "
          f"**{jr['plain'] / jr['staged']:.2f}x** slower), i.e. ~{extra * $SLOTS:.2f} ms per job of a slot's time "
          "(two presigns, a download and an upload with its commit, per job).")
chk = json.loads('''$CHECK''' or "{}")
if chk:
    print()
    print("Check: the last staged job " + ("succeeded with one output equal to its input" if chk.get("ok")
                                          else "FAILED the check: " + json.dumps(chk)[:300]) + ".")
print()
print("Commands (\`bash bench/blobs.sh\` ran them; PORT is a free loopback port, DIR the work folder):")
print()
print("\`\`\`")
print("head -c $SIZE /dev/urandom > DIR/src.bin")
print("drover server --listen 127.0.0.1:PORT --data DIR/drover/data --sync normal")
print("nginx -p DIR/nginx -c DIR/nginx/nginx.conf   # worker_processes 1; sendfile on; location /up/ { dav_methods PUT DELETE; }")
print("sync; echo 3 > /proc/sys/vm/drop_caches      # before each cold transfer")
print("cp DIR/src.bin DIR/cp/copy.bin   [&& sync DIR/cp/copy.bin]")
print("curl -s --fail -o /dev/null -T DIR/src.bin http://127.0.0.1:PORT/up/copy.bin                    # nginx")
print("curl -s --fail -H 'Authorization: Bearer T' -T DIR/src.bin http://127.0.0.1:PORT/v1/blobs/bench/big.bin")
print("curl -s --fail -o /dev/null http://127.0.0.1:PORT/src.bin  (and /nosendfile/src.bin)            # nginx")
print("curl -s --fail -o /dev/null -H 'Authorization: Bearer T' http://127.0.0.1:PORT/v1/blobs/bench/big.bin")
print("drover agent --server http://127.0.0.1:PORT --name bench1 --queues plain,staged --slots $SLOTS --work-dir DIR/staging/agent")
print("POST /v1/jobs [$JOBS specs] {program: /bin/sh, arguments: [-c, 'cat \"\$1\" > \"\$2\"', sh, IN, OUT]},")
print("  IN/OUT = input s3://bench/in/I/input.txt / output s3://bench/out/R/I/output.txt, or parameters")
print("  DIR/staging/local-input.txt / output.txt; then GET /v1/queues every 10 ms until $JOBS more ended")
print("\`\`\`")
EOF

if ((FAILED)); then
    log "some runs failed (see above); the report marks them"
    exit 1
fi
