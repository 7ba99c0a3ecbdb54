#!/usr/bin/env bash
# Runs every Ferrocast test. Installs what the machine lacks from Debian's packages (redis-server,
# openssl, gcc and make, Python, Node.js and npm, chromium, prometheus with promtool), builds the
# edge and emitter binaries the end-to-end tests start, runs the whole workspace's tests, then the
# JavaScript client's (Node, and real Chromium through playwright-core, from
# clients/js/package-lock.json), then the edge's console in Chromium (tests/browser). Python's
# `websockets` and schemathesis (pinned in tests/python/requirements*.txt) go into a venv under
# target/. Each end-to-end test starts its own redis-server on a free port; nothing else is
# needed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests start redis-server and redis-cli.
missing=()
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The edge links jemalloc, built from C source: a C compiler and make.
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)
# playwright-core drives Debian's chromium: no browser is downloaded.
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
# tests/tests/monitoring.rs runs promtool on the alert rules and a real Prometheus against an edge.
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing from Debian's packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A client we did not write, for tests/tests/python_client.rs, and schemathesis, which fuzzes the
# HTTP API from its OpenAPI document in tests/tests/openapi.rs.
[ -x target/python/bin/python ] || python3 -m venv target/python
target/python/bin/pip install -q --disable-pip-version-check \
  -r tests/python/requirements.txt -r tests/python/requirements-schemathesis.txt
export FERROCAST_PYTHON="$PWD/target/python/bin/python"

cargo build --workspace --bins --examples --locked
cargo test --workspace --locked "$@"

echo "== clients/js (Node and Chromium, against real edges)"
cd clients/js
npm ci --no-audit --no-fund
npm test

echo "== tests/browser (the edge's console in Chromium, against real edges)"
cd ../../tests/browser
npm ci --no-audit --no-fund
npm test
