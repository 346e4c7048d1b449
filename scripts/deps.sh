#!/usr/bin/env bash
# Installs the Debian packages drover needs to build and test, when missing.
# Usage: scripts/deps.sh [build|test|bench]   (each includes the ones before it)
set -euo pipefail

want=(build-essential cmake pkg-config libevent-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libssl-dev libhttp-parser-dev libpq-dev libcmocka-dev curl python3
      libsystemd-dev libjemalloc-dev tzdata)
test_pkgs=(python3-pytest python3-requests valgrind python3-boto3 awscli
           hmmer hmmer-examples infernal systemd podman runc catatonit busybox-static prometheus
           openssl zsh
           bubblewrap docker-registry postgresql chromium)
case "${1:-build}" in
  test)  want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" nginx beanstalkd redis-server python3-celery python3-redis) ;;
esac

# node and npm run the tests' npm tools (tests/tools): Debian's, unless some are installed.
if [ "${1:-build}" != build ] && ! { command -v node && command -v npm; } >/dev/null; then
  want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "drover: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The npm packages the tests run (an OpenAPI validator), as package-lock.json pins them.
if [ "${1:-build}" != build ]; then
  tools="$(dirname "$0")/../tests/tools"
  if [ ! -d "$tools/node_modules" ] || [ "$tools/package-lock.json" -nt "$tools/node_modules" ]; then
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# The browser test's driver (playwright-core, pinned by tests/browser/package-lock.json; it
# drives Debian's chromium and downloads no browser of its own).
if [ "${1:-build}" != build ]; then
  browser_dir="$(dirname "$0")/../tests/browser"
  if [ ! -d "$browser_dir/node_modules/playwright-core" ] ||
     [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
    echo "drover: npm ci in tests/browser" >&2
    (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
