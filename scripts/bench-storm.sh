#!/usr/bin/env bash
# A reconnect storm, measured: one redis-server and three release edges; CLIENTS clients all on
# the first edge, which is killed (SIGKILL); every client reconnects to the other two with the
# official client's back-off and resumes. Prints the loadtest's JSON line. Extra arguments go to
# the storm scenario (e.g. --backoff-min 100ms).
# Usage: scripts/bench-storm.sh [CLIENTS] [storm flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-5000}
shift $(( $# < 1 ? $# : 1 ))
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; redis-cli -p 6397 shutdown nosave >/dev/null 2>&1; wait 2>/dev/null; rm -rf "$work"' EXIT
redis-server --port 6397 --save '' --appendonly no --dir "$work" >/dev/null &
until redis-cli -p 6397 ping >/dev/null 2>&1; do sleep 0.1; done
for i in 0 1 2; do
  target/release/edge --listen 127.0.0.1:915$i --internal-listen 127.0.0.1:916$i \
    --redis-url redis://127.0.0.1:6397 --log error &
  echo $! > "$work/edge$i.pid"
  until (exec 3<>/dev/tcp/127.0.0.1/916$i) 2>/dev/null; do sleep 0.1; done
done
target/release/loadtest --json --url ws://127.0.0.1:9150/ws --url ws://127.0.0.1:9151/ws \
  --url ws://127.0.0.1:9152/ws --edge-pid "$(cat "$work/edge1.pid")" \
  --redis-url redis://127.0.0.1:6397 storm --clients "$clients" \
  --kill-cmd "kill -9 $(cat "$work/edge0.pid")" "$@"
