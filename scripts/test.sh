#!/usr/bin/env bash
# Sets up, builds and runs every test: unit tests (ctest) and end-to-end tests
# (pytest) twice, once on a normal build and once on an ASan + UBSan build.
# Exits non-zero when any suite fails or runs no test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
scripts/s3rver.sh install # the S3 server test_blob_s3 and test_s3_clients.py start

PYTEST=(/usr/bin/python3 -m pytest -q -p no:cacheprovider)
status=0

# One throwaway PostgreSQL for the whole run (scripts/pgtest.sh): test_store runs its
# conformance suite on it in both builds (a database per test), and tests/e2e/test_postgres.py
# uses it rather than starting its own. Stopped on exit.
pgtest=$PWD/scripts/pgtest.sh
pgdir=$(mktemp -d)
trap '"$pgtest" stop "$pgdir"' EXIT
DROVER_TEST_PG_URI=$("$pgtest" start "$pgdir")
export DROVER_TEST_PG_URI

run_suite() { # NAME BUILD_DIR PYTEST_MARKS [ENV...]
  local name=$1 dir=$2 marks=$3
  shift 3
  echo "== $name: unit tests (ctest)"
  if ! (cd "$dir" && env "$@" ctest --output-on-failure --no-tests=error); then
    echo "== $name: unit tests FAILED"; status=1
  fi
  echo "== $name: end-to-end tests (pytest)"
  local rc=0
  env "$@" DROVER_BIN="$PWD/$dir/drover" "${PYTEST[@]}" -m "$marks" tests/e2e || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "== $name: pytest collected no test"; status=1
  elif [ "$rc" -ne 0 ]; then
    echo "== $name: end-to-end tests FAILED"; status=1
  fi
}

echo "== building (warnings are errors)"
scripts/build.sh build
# Slow suites (marked `once`: containers, PostgreSQL, browser) run in the normal build only.
run_suite "normal build" build "" DROVER_VALGRIND=1

echo "== building with AddressSanitizer + UndefinedBehaviorSanitizer"
scripts/build.sh build-asan -DSANITIZE=ON
run_suite "asan+ubsan build" build-asan "not once" \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

if [ "$status" -eq 0 ]; then echo "== all suites passed"; else echo "== some suite FAILED"; fi
exit "$status"
