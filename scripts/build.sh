#!/usr/bin/env bash
# Builds drover into BUILD_DIR (default build/). Extra arguments go to cmake.
# Usage: scripts/build.sh [BUILD_DIR] [-DSANITIZE=ON ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
