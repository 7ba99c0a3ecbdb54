#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzingclient (RFC 6455 conformance, 517 cases) against the edge in
# echo mode (--echo: no authentication, every message echoed back) and fails on any case that is
# not OK, NON-STRICT or INFORMATIONAL, permessage-deflate's cases (12.* and 13.*) included.
#
# Usage:
#   scripts/autobahn.sh [EDGE_BIN]   EDGE_BIN (or FERROCAST_EDGE_BIN) defaults to target/debug/edge;
#                                    the script does not build it
#
# Environment (all optional):
#   FERROCAST_EDGE_BIN         the edge binary, when not given as an argument
#   FERROCAST_PYTHON27         a Python 2.7 interpreter to use (else pyenv's 2.7.x, else python2.7)
#   FERROCAST_AUTOBAHN_CASES   comma-separated case patterns instead of all, e.g. "9.1.*,9.2.6"
#   FERROCAST_AUTOBAHN_TIMEOUT seconds wstest may take in all (default 1800: the compression cases
#                              alone take wstest about ten minutes)
#
# Needs Python 2.7 (autobahntestsuite is Python 2 code): without one it prints "SKIPPED: ..." and
# exits 0. Also needs python3 (with venv and pip reaching PyPI) and a C compiler (wsaccel builds
# from source). wstest goes into a Python 2.7 virtualenv under target/autobahn-venv, at the versions
# pinned in scripts/autobahn/requirements*.txt, and is reused while those are unchanged.
# Reports (HTML and JSON per case, index.json, summary.md, wstest.log, edge.log) go to
# target/autobahn-report, which each run starts afresh.
# Exits 0 when every case passed (or when skipped), 1 when a case failed, 2 when the harness
# itself could not run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

HERE=$ROOT/scripts/autobahn
VENV_ROOT=$ROOT/target/autobahn-venv
PY27_VENV=$VENV_ROOT/py27
OUTDIR=$ROOT/target/autobahn-report
TIMEOUT=${FERROCAST_AUTOBAHN_TIMEOUT:-1800}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "autobahn: error: $*" >&2; exit 2; }

edge_arg=""
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; usage >&2; exit 2 ;;
    *) [ -z "$edge_arg" ] || die "at most one argument (the edge binary)"; edge_arg=$arg ;;
  esac
done

# ---------------------------------------------------------------------------------------------
# Python 2.7, or skip

find_python27() {
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv} cand found
  if command -v pyenv >/dev/null 2>&1; then
    pyenv_root=$(pyenv root 2>/dev/null || echo "$pyenv_root")
  fi
  local cands=()
  [ -z "${FERROCAST_PYTHON27:-}" ] || cands+=("$FERROCAST_PYTHON27")
  cands+=("$pyenv_root/versions/2.7.18/bin/python2.7")
  for cand in "$pyenv_root"/versions/2.7.*/bin/python2.7; do cands+=("$cand"); done
  if found=$(command -v python2.7 2>/dev/null); then cands+=("$found"); fi
  for cand in "${cands[@]}"; do
    [ -x "$cand" ] || continue
    # A pyenv shim exists even when no 2.7 is installed: run it to be sure.
    if "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

if ! PY27=$(find_python27); then
  echo "SKIPPED: Autobahn needs Python 2.7 (autobahntestsuite is Python 2 code) and found none:" \
    "no FERROCAST_PYTHON27, no pyenv 2.7.x under ${PYENV_ROOT:-$HOME/.pyenv}/versions, no working" \
    "python2.7 on PATH. Install one (e.g. \`pyenv install 2.7.18\`) to run the conformance suite."
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The edge binary

EDGE=${edge_arg:-${FERROCAST_EDGE_BIN:-target/debug/edge}}
[ -e "$EDGE" ] || die "edge binary not found: $EDGE (build it with \`cargo build -p ferrocast-edge\`, or pass its path as the argument or in FERROCAST_EDGE_BIN)"
[ -x "$EDGE" ] || die "edge binary is not executable: $EDGE"
"$EDGE" --help 2>/dev/null | grep -q -- '--echo' ||
  die "$EDGE has no --echo flag (built before echo mode existed?): rebuild it"

command -v python3 >/dev/null 2>&1 || die "python3 is needed (for the virtualenv tool and the checker)"
harness() { python3 "$HERE/harness.py" "$@"; }

# ---------------------------------------------------------------------------------------------
# wstest in a Python 2.7 virtualenv, rebuilt only when the pins or the interpreter change

export PIP_NO_PYTHON_VERSION_WARNING=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

setup_venv() {
  local want
  want=$({
    cat "$HERE/requirements.txt" "$HERE/requirements-bootstrap.txt"
    "$PY27" -c 'import sys; print(sys.executable); print(sys.version)'
  } | sha256sum | cut -d' ' -f1)
  if [ -x "$PY27_VENV/bin/wstest" ] && [ "$(cat "$VENV_ROOT/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    echo "== reusing ${VENV_ROOT#"$ROOT"/} (pins unchanged)"
    return 0
  fi
  echo "== installing Autobahn|Testsuite into ${VENV_ROOT#"$ROOT"/} (Python 2.7: $PY27)"
  rm -rf "$VENV_ROOT"
  mkdir -p "$VENV_ROOT" || return 1
  # virtualenv (the last release that makes Python 2.7 environments) in a Python 3 venv of its own.
  python3 -m venv "$VENV_ROOT/bootstrap" || return 1
  "$VENV_ROOT/bootstrap/bin/pip" install --quiet -r "$HERE/requirements-bootstrap.txt" || return 1
  VIRTUALENV_OVERRIDE_APP_DATA=$VENV_ROOT/virtualenv-app-data \
    "$VENV_ROOT/bootstrap/bin/virtualenv" --quiet --no-periodic-update -p "$PY27" "$PY27_VENV" || return 1
  # --no-deps: exactly the pinned set; `pip check` then proves it is complete and consistent.
  "$PY27_VENV/bin/pip" install --quiet --no-deps -r "$HERE/requirements.txt" || return 1
  local out
  out=$("$PY27_VENV/bin/pip" check 2>&1) || { echo "$out" >&2; return 1; }
  echo "$want" >"$VENV_ROOT/.requirements.sha256" # last, so a half-built venv is rebuilt next time
}

t0=$SECONDS
# Explicit `|| return` in setup_venv: errexit does not apply inside `if !`.
if ! setup_venv; then
  die "could not install wstest into ${VENV_ROOT#"$ROOT"/} (see the pip output above)"
fi
echo "== wstest: $("$PY27_VENV/bin/python" -c 'import autobahntestsuite, autobahn; print("autobahntestsuite %s, autobahn %s" % (autobahntestsuite.version, autobahn.version))')" \
  "(setup $((SECONDS - t0)) s)"

# ---------------------------------------------------------------------------------------------
# The edge in echo mode, killed whatever happens

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"

EDGE_PID=""
stop_edge() {
  [ -n "$EDGE_PID" ] || return 0
  if kill -0 "$EDGE_PID" 2>/dev/null; then
    kill "$EDGE_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$EDGE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$EDGE_PID" 2>/dev/null || true
  fi
  wait "$EDGE_PID" 2>/dev/null || true
  EDGE_PID=""
}
WSTEST_PID=""
# shellcheck disable=SC2317 # called from the EXIT trap
stop_wstest() {
  [ -n "$WSTEST_PID" ] || return 0
  kill "$WSTEST_PID" 2>/dev/null || true # timeout(1) passes the signal on to wstest
  wait "$WSTEST_PID" 2>/dev/null || true
  WSTEST_PID=""
}
trap 'stop_wstest; stop_edge' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

edge_log_tail() { echo "-- last lines of ${OUTDIR#"$ROOT"/}/edge.log:" >&2; tail -n 20 "$OUTDIR/edge.log" >&2 || true; }

for attempt in 1 2 3; do
  PORT=$(harness free-port)
  INTERNAL_PORT=$(harness free-port)
  # Single-node mode whatever the environment says: no Redis is involved in echo mode.
  env -u FERROCAST_REDIS_URL NO_COLOR=1 "$EDGE" --echo --listen "127.0.0.1:$PORT" \
    --internal-listen "127.0.0.1:$INTERNAL_PORT" --ws-path /ws --log warn \
    --drain-timeout 2s >"$OUTDIR/edge.log" 2>&1 &
  EDGE_PID=$!
  if harness wait-healthy "http://127.0.0.1:$INTERNAL_PORT/healthz" "$EDGE_PID" 30; then
    break
  fi
  if kill -0 "$EDGE_PID" 2>/dev/null || [ "$attempt" -eq 3 ]; then
    edge_log_tail
    die "the edge did not come up on 127.0.0.1:$PORT"
  fi
  # Exited early: most likely the port was taken between picking and binding it. Try another.
  stop_edge
done
echo "== edge: $EDGE --echo on ws://127.0.0.1:$PORT/ws (pid $EDGE_PID)"

# ---------------------------------------------------------------------------------------------
# wstest -m fuzzingclient

harness spec "$HERE/fuzzingclient.json" "$OUTDIR/fuzzingclient.json" "ws://127.0.0.1:$PORT/ws" \
  "$OUTDIR" "${FERROCAST_AUTOBAHN_CASES:-}"
echo "== wstest -m fuzzingclient (log: ${OUTDIR#"$ROOT"/}/wstest.log)"
t0=$SECONDS
wstest_rc=0
# In the background and waited for, so that a signal to this script is handled (edge and wstest
# stopped) at once rather than after wstest ends.
(cd "$OUTDIR" && exec timeout "$TIMEOUT" "$PY27_VENV/bin/wstest" -m fuzzingclient -s "$OUTDIR/fuzzingclient.json") \
  >"$OUTDIR/wstest.log" 2>&1 &
WSTEST_PID=$!
wait "$WSTEST_PID" || wstest_rc=$?
WSTEST_PID=""
echo "== wstest finished in $((SECONDS - t0)) s (exit $wstest_rc)"

status=0
if [ "$wstest_rc" -ne 0 ]; then
  echo "-- last lines of ${OUTDIR#"$ROOT"/}/wstest.log:" >&2
  tail -n 20 "$OUTDIR/wstest.log" >&2
  [ "$wstest_rc" -ne 124 ] || echo "autobahn: wstest timed out after $TIMEOUT s" >&2
  status=2
fi
if ! kill -0 "$EDGE_PID" 2>/dev/null; then
  echo "autobahn: FAIL: the edge exited during the run" >&2
  edge_log_tail
  status=1
fi
stop_edge
if grep -q 'panicked' "$OUTDIR/edge.log"; then
  echo "autobahn: FAIL: the edge panicked during the run:" >&2
  grep -m 5 'panicked' "$OUTDIR/edge.log" >&2
  status=1
fi

# ---------------------------------------------------------------------------------------------
# Verdict

check_rc=0
if [ -f "$OUTDIR/index.json" ] || [ "$wstest_rc" -eq 0 ]; then
  harness check "$OUTDIR" "$OUTDIR/wstest.log" || check_rc=$?
  echo "== summary: ${OUTDIR#"$ROOT"/}/summary.md, per-case reports: ${OUTDIR#"$ROOT"/}/index.html"
fi
[ "$check_rc" -eq 0 ] || [ "$status" -ne 0 ] || status=1
exit "$status"
