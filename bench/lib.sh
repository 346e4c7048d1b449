# bench/lib.sh - what the benchmark scripts share: the processes they start
# (each tracked by PID, stopped on exit), free loopback ports, readiness waits.
# Sourced after the script defines log, PYTHON, KEEP, WORKDIR and BUILD_DIR; the
# script then makes WORK with bench_work_dir (removed on exit unless KEEP).

PIDS=()

running() { # PID: alive and not a zombie
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

forget_pid() {
    local kept=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
    PIDS=("${kept[@]+"${kept[@]}"}")
}

stop_pid() { # PID: TERM, up to 15 s, then KILL (its children too: Celery's pool); reaps it
    local pid=$1 i kids
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            log "pid $pid ignored SIGTERM for 15 s; sending SIGKILL to it and its children"
            kids=$(pgrep -P "$pid" 2>/dev/null || true)
            kill -KILL "$pid" $kids 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

cleanup() {
    local rc=$? i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    if ((KEEP)) || ((rc != 0)); then
        log "work folder kept: $WORK"
    else
        rm -rf -- "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_work_dir() { # NAME: a fresh folder under $WORKDIR (made if missing) or $BUILD_DIR
    local parent=${WORKDIR:-$BUILD_DIR}
    mkdir -p "$parent" && mktemp -d "$parent/$1.XXXXXX"
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_tcp() { # PORT PID: until the port accepts, at most 10 s
    local port=$1 pid=$2 i
    for ((i = 0; i < 100; i++)); do
        running "$pid" || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

wait_healthz() { # PORT PID: until GET /healthz answers 200, at most 30 s
    local port=$1 pid=$2 i code
    for ((i = 0; i < 300; i++)); do
        running "$pid" || return 1
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null) || true
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

