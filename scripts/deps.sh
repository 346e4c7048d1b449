#!/usr/bin/env bash
# Installs the Debian packages drover needs to build and test, when missing.
# Usage: scripts/deps.sh [build|test|bench]   (each includes the ones before it)
set -euo pipefail

want=(build-essential cmake pkg-config libevent-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libssl-dev libhttp-parser-dev libcmocka-dev curl python3)
case "${1:-build}" in
  test)  want+=(libcmocka-dev python3-pytest python3-requests valgrind python3-boto3 awscli podman runc bubblewrap docker-registry busybox-static) ;;
  bench) want+=(libcmocka-dev python3-pytest python3-requests valgrind python3-boto3 awscli podman runc bubblewrap docker-registry busybox-static nginx beanstalkd redis-server python3-celery python3-redis) ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "drover: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
