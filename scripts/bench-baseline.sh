#!/usr/bin/env bash
# Room fan-out side by side, in one run: the edge over Redis, the edge in single-node mode, and
# the baseline server (plain tokio-tungstenite fan-out: no Redis, auth, rooms logic or history).
# Same load for each (1 room x 1000 members, 100 msg/s by default), repeated ROUNDS times in
# turn so a noisy neighbour hits all three alike. Prints one JSON line per run.
# Usage: scripts/bench-baseline.sh [ROUNDS] [DURATION]   (needs cargo build --release --bins)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
duration=${2:-20s}
bin=target/release
redis_port=6391
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

redis-server --port $redis_port --save '' --appendonly no --dir "$work" >/dev/null &
until redis-cli -p $redis_port ping >/dev/null 2>&1; do sleep 0.1; done
# The harness's publisher connection sends 100 frames/s: lift the per-connection rate limit.
lift=(--rate 100000 --burst 100000 --log error)
$bin/edge --listen 127.0.0.1:9101 --redis-url redis://127.0.0.1:$redis_port "${lift[@]}" &
redis_edge=$!
$bin/edge --listen 127.0.0.1:9102 "${lift[@]}" &
single_edge=$!
$bin/loadtest baseline-server --listen 127.0.0.1:9103 2>/dev/null &
baseline=$!
sleep 1

run() { # name url pid publish-via
  echo -n "{\"target\":\"$1\",\"result\":"
  $bin/loadtest --json --url "$2" --edge-pid "$3" --redis-url redis://127.0.0.1:$redis_port \
    fanout --members 1000 --rate 100 --duration "$duration" --publish-via "$4"
  echo "}"
}
for _ in $(seq "$rounds"); do
  run edge-redis ws://127.0.0.1:9101/ws $redis_edge redis
  run edge-single-node ws://127.0.0.1:9102/ws $single_edge ws
  run baseline ws://127.0.0.1:9103/ $baseline ws
done
