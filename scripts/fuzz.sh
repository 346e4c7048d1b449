#!/usr/bin/env bash
# Builds the fuzz targets (tests/fuzz/fuzz_<name>.c) as libFuzzer binaries (clang, ASan +
# UBSan) and runs each for SECONDS (default 60), one after the other, at low priority; then
# prints a summary. Not part of CI: there, ctest replays each target's corpus (tests/fuzz).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     TARGET: spec, cron, ... (default: all)
#
# Each run starts from tests/fuzz/corpus/<name> and tests/fuzz/crashes/<name>; what it finds
# new is kept in build-fuzz/corpus/<name> for the next run, a crashing input is written to
# build-fuzz/artifacts/<name>/ (replay it: build-fuzz/fuzz_<name> FILE). Environment:
# FUZZ_BUILD_DIR (instead of build-fuzz), FUZZ_ARGS (more libFuzzer options, e.g. -max_len=65536).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
dir=${FUZZ_BUILD_DIR:-build-fuzz}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DFUZZ=ON \
      -DBUILD_TESTING=OFF >/dev/null
cmake --build "$dir" --target fuzz -j"$(nproc)"

if [ $# -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do
    f=${f##*/fuzz_}
    set -- "$@" "${f%.c}"
  done
fi
summary=()
status=0
for t in "$@"; do
  t=${t#fuzz_}
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
  log="$dir/artifacts/$t/last.log"
  echo "== fuzz_$t: ${secs}s"
  opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$dir/artifacts/$t/")
  case $t in spec|array|workflow|service|agent|stage) opts+=(-dict=tests/fuzz/json.dict) ;; esac
  inputs=("$dir/corpus/$t" "tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/crashes/$t" ] && inputs+=("tests/fuzz/crashes/$t")
  rc=0
  # shellcheck disable=SC2086 # FUZZ_ARGS: several options
  nice -n 19 "$dir/fuzz_$t" "${opts[@]}" ${FUZZ_ARGS:-} "${inputs[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" -eq 0 ]; then
    summary+=("fuzz_$t: ok, ${execs:-?} execs, ${cov:-cov: ?}")
  else
    status=1
    found=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //')
    summary+=("fuzz_$t: FAILED (exit $rc), ${execs:-?} execs: ${found:-see $log}")
  fi
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
