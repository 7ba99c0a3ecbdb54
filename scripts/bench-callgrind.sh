#!/usr/bin/env bash
# Instructions the edge's user space spends under a loadtest fanout, by valgrind's callgrind.
# Run it twice with two durations and divide the difference in instructions by the difference in
# deliveries: set-up (connects, joins, start-up) cancels out.
# Usage: scripts/bench-callgrind.sh EDGE DURATION [fanout flags...]
#   e.g. scripts/bench-callgrind.sh target/release/edge 12s --rooms 1 --members 500 --rate 50
# Prints {"duration":D,"instructions":N,"deliveries":N,"lost":N}. Needs valgrind, redis-server and
# target/release/loadtest.
set -euo pipefail
cd "$(dirname "$0")/.."
edge=$1 duration=$2
shift 2
work=$(mktemp -d)
redis_port=$((6400 + RANDOM % 500))
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
redis-server --port $redis_port --save '' --appendonly no --dir "$work" >/dev/null &
until redis-cli -p $redis_port ping >/dev/null 2>&1; do sleep 0.1; done
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$edge" --listen 127.0.0.1:9131 \
  --internal-listen 127.0.0.1:9141 --redis-url redis://127.0.0.1:$redis_port --log error \
  2>"$work/valgrind.log" &
edge_pid=$!
deadline=$((SECONDS + 60))
until curl -sf http://127.0.0.1:9141/readyz >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "the edge never became ready" >&2; exit 1; }
  sleep 0.5
done
target/release/loadtest --json --url ws://127.0.0.1:9131/ws \
  --redis-url redis://127.0.0.1:$redis_port fanout --duration "$duration" "$@" >"$work/load.json"
kill -INT $edge_pid
wait $edge_pid 2>/dev/null || true
instructions=$(grep -m1 '^summary:' "$work/cg.out" | awk '{print $2}')
python3 -c "
import json, sys
r = json.load(open('$work/load.json'))
print(json.dumps({'duration': '$duration', 'instructions': $instructions,
                  'deliveries': r.get('deliveries'), 'lost': r.get('lost')}))"
