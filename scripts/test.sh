#!/usr/bin/env bash
# Runs every Ferrocast test. Installs redis-server (Debian package) if the machine lacks it,
# builds the edge and emitter binaries the end-to-end tests start, then runs the whole workspace's
# tests. Each end-to-end test starts its own redis-server on a free port; nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests start redis-server and redis-cli; scripts/dev-token.sh (tested too) needs openssl.
missing=()
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing from Debian's packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --workspace --bins --examples --locked
cargo test --workspace --locked "$@"
