#!/usr/bin/env bash
# Measures the coefficients of the capacity model in docs/operations.md on this machine, with
# release builds, its own redis-server and edges on free ports (nothing else should run: the
# figures are CPU times, which a busy machine inflates less than latencies, but still inflates).
#
#   scripts/capacity.sh            # everything, ~4 minutes
#
# Prints one line per figure: name, value, unit. Steps:
#   1. Redis CPU per publish, and its output bandwidth, with 1, 4, 16 and 32 edges subscribed to
#      the same rooms (one member of each room on each edge; 500 publishes/s for 10 s).
#   2. Edge CPU per delivery (fanout on one edge) and per connection cycle (churn).
#   3. Edge memory per idle connection, and per room joined (idle, one room each vs one room).
#   4. Redis memory per history entry (256-byte payloads) and per presence member.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q -p ferrocast-edge -p ferrocast-loadtest -p ferrocast-emitter --bins
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Ports below Linux's ephemeral range (32768-60999), which outgoing connections take from, and
# apart from the test suites' (10000-32999): one that answers a connect is taken.
port=$((5000 + RANDOM % 4000))
# Sets $port to the next free one (not in a subshell: the cursor must move).
next_port() {
  port=$((port + 1))
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
}
figure() { printf '%-44s %12s %s\n' "$1" "$2" "$3"; }
json() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

next_port
redis_port=$port
redis-server --port "$redis_port" --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
redis="redis://127.0.0.1:$redis_port"
cli() { redis-cli -p "$redis_port" "$@"; }
until cli ping >/dev/null 2>&1; do sleep 0.1; done
redis_cpu() { cli info cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.4f", s}'; }
redis_out() { cli info stats | awk -F: '/^total_net_output_bytes:/ {print $2+0}'; }
redis_mem() { cli info memory | awk -F: '/^used_memory:/ {print $2+0}'; }

edges=()
edge_pids=()
start_edges() {
  local count=$1 extra=${2:-}
  edges=(); edge_pids=()
  for _ in $(seq "$count"); do
    local public internal
    next_port; public=$port
    next_port; internal=$port
    # shellcheck disable=SC2086
    "$bin/edge" --listen "127.0.0.1:$public" --internal-listen "127.0.0.1:$internal" \
      --redis-url "$redis" --log error --max-connections 200000 --rate 1000 --burst 1000 $extra &
    edge_pids+=($!); pids+=($!)
    edges+=("ws://127.0.0.1:$public/ws")
    until curl -sf "http://127.0.0.1:$internal/readyz" >/dev/null 2>&1; do
      kill -0 "${edge_pids[-1]}" 2>/dev/null || { echo "an edge did not start" >&2; exit 1; }
      sleep 0.05
    done
  done
}
stop_edges() {
  for pid in "${edge_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${edge_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
urls() { for url in "${edges[@]}"; do printf -- '--url %s ' "$url"; done; }

echo "# 1. Redis per publish, by edges subscribed to the same rooms (500/s for 10 s, 10 rooms)"
for n in 1 4 16 32; do
  start_edges "$n"
  cpu0=$(redis_cpu); out0=$(redis_out)
  # shellcheck disable=SC2046
  "$bin/loadtest" --redis-url "$redis" $(urls) fanout --rooms 10 --members "$n" --rate 500 \
    --duration 10s --payload 256 --json >"$work/fanout-$n.json"
  cpu1=$(redis_cpu); out1=$(redis_out)
  published=$(json published <"$work/fanout-$n.json")
  figure "redis_cpu_us_per_publish_edges_$n" \
    "$(python3 -c "print(round(($cpu1 - $cpu0) * 1e6 / $published, 1))")" "µs"
  figure "redis_out_bytes_per_publish_edges_$n" \
    "$(python3 -c "print(round(($out1 - $out0) / $published))")" "B"
  stop_edges
done

echo "# 2. Edge CPU per delivery and per connection cycle (one edge)"
start_edges 1
# shellcheck disable=SC2046
"$bin/loadtest" --redis-url "$redis" $(urls) fanout --rooms 10 --members 100 --rate 200 \
  --duration 10s --payload 256 --edge-pid "${edge_pids[0]}" --json >"$work/fanout.json"
per_100k=$(json edge_cpu_s_per_100k_deliveries <"$work/fanout.json")
figure edge_cpu_us_per_delivery "$(python3 -c "print(round($per_100k * 10, 2))")" "µs"
# shellcheck disable=SC2046
"$bin/loadtest" --redis-url "$redis" $(urls) churn --concurrency 10 --duration 10s \
  --edge-pid "${edge_pids[0]}" --json >"$work/churn.json"
per_cycle=$(json edge_cpu_ms_per_cycle <"$work/churn.json")
figure edge_cpu_us_per_connection_cycle "$(python3 -c "print(round($per_cycle * 1000))")" "µs"
stop_edges

echo "# 3. Edge memory per idle connection, and per room joined (5000 connections)"
start_edges 1
# shellcheck disable=SC2046
"$bin/loadtest" --redis-url "$redis" $(urls) idle --connections 5000 --rooms 1 \
  --edge-pid "${edge_pids[0]}" --json >"$work/idle-1.json"
stop_edges
start_edges 1
# shellcheck disable=SC2046
"$bin/loadtest" --redis-url "$redis" $(urls) idle --connections 5000 --rooms 5000 \
  --edge-pid "${edge_pids[0]}" --json >"$work/idle-5000.json"
stop_edges
one=$(json edge_kib_per_connection_steady <"$work/idle-1.json")
each=$(json edge_kib_per_connection_steady <"$work/idle-5000.json")
figure edge_kib_per_idle_connection "$one" "KiB"
figure edge_kib_per_room_joined "$(python3 -c "print(round($each - $one, 2))")" "KiB"

echo "# 4. Redis memory per history entry (256-byte payloads) and per presence member"
cli flushall >/dev/null
mem0=$(redis_mem)
python3 -c "
import json
for i in range(20000):
    print(json.dumps({'room': 'cap:%d' % (i % 100), 'event': 'e', 'data': 'x' * 250}))
" | "$bin/emitter" --redis-url "$redis" send --stdin >/dev/null
mem1=$(redis_mem)
figure redis_bytes_per_history_entry "$(python3 -c "print(round(($mem1 - $mem0) / 20000))")" "B"
start_edges 1 "--presence-rooms presence:*"
mem0=$(redis_mem)
# shellcheck disable=SC2046
"$bin/loadtest" --redis-url "$redis" $(urls) presence --members 4000 --json \
  >"$work/presence.json" &
presence=$!
pids+=($presence)
# The scenario's members stay a while; measure once all 4000 are recorded.
key='fc:{room:presence:0}:presence:exp'
until [ "$(cli zcard "$key")" -ge 4000 ]; do sleep 0.2; done
mem1=$(redis_mem)
figure redis_bytes_per_presence_member "$(python3 -c "print(round(($mem1 - $mem0) / 4000))")" "B"
wait "$presence" || true
stop_edges
