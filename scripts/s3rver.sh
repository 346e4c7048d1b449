#!/usr/bin/env bash
# s3rver, a small S3-compatible server (npm package, 3.x), for the S3 blob backend's tests.
#
#   scripts/s3rver.sh install          installs it under .cache/s3rver (ignored by git), once
#   scripts/s3rver.sh start PORT DIR   runs it in the foreground on 127.0.0.1:PORT, storing
#                                      objects under DIR (made if missing); exec'd, so the
#                                      caller's PID for this script is the server's PID
#   scripts/s3rver.sh path             prints the server's entry point (exit 1 if not installed)
#
# The server accepts the access key "S3RVER" with the secret "S3RVER" (SigV4 headers and
# presigned query URLs, multipart uploads). Buckets are made with --configure-bucket NAME,
# given after DIR: scripts/s3rver.sh start PORT DIR --configure-bucket drover-test.
# DROVER_S3RVER_DIR overrides the install folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${DROVER_S3RVER_DIR:-$root/.cache/s3rver}"
version="3.7.1"
bin="$dir/node_modules/s3rver/bin/s3rver.js"

need_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then return; fi
  echo "s3rver.sh: installing nodejs and npm" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}

case "${1:-}" in
  install)
    if [ -f "$bin" ] && grep -q "\"version\": \"$version\"" "$dir/node_modules/s3rver/package.json"; then
      exit 0
    fi
    need_node
    mkdir -p "$dir"
    # No package.json, no lock file: nothing naming a registry is written.
    (cd "$dir" && npm install --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "s3rver@$version" >&2)
    [ -f "$bin" ] || { echo "s3rver.sh: install failed: $bin missing" >&2; exit 1; }
    ;;
  start)
    [ $# -ge 3 ] || { echo "usage: $0 start PORT DIR [s3rver options]" >&2; exit 2; }
    port=$2 data=$3
    shift 3
    [ -f "$bin" ] || { echo "s3rver.sh: not installed; run: $0 install" >&2; exit 1; }
    mkdir -p "$data"
    # Its list continuation tokens use a cipher OpenSSL 3 keeps in the legacy provider.
    exec node --openssl-legacy-provider "$bin" --address 127.0.0.1 --port "$port" --directory "$data" --silent "$@"
    ;;
  path)
    [ -f "$bin" ] || exit 1
    echo "$bin"
    ;;
  *)
    echo "usage: $0 install | start PORT DIR [s3rver options] | path" >&2
    exit 2
    ;;
esac
