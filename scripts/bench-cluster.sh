#!/usr/bin/env bash
# One Redis against a 3-master Redis Cluster, side by side, on this machine: the same edge
# binary and load over each in turn. All shards share the machine's cores, so this measures the
# cost of the cluster path, not the scaling a cluster gives across machines.
# Usage: scripts/bench-cluster.sh [DURATION]   (needs cargo build --release --bins)
# Prints one JSON line per run, then the Redis client connections each edge held.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15s}
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
start_redis() { # port [extra...]
  local port=$1; shift
  mkdir -p "$work/$port"
  redis-server --port "$port" --save '' --appendonly no --dir "$work/$port" "$@" >/dev/null &
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
}
start_redis 6401
for port in 6411 6412 6413; do start_redis $port --cluster-enabled yes; done
redis-cli --cluster create 127.0.0.1:6411 127.0.0.1:6412 127.0.0.1:6413 --cluster-yes >/dev/null
until [ "$(redis-cli -p 6411 cluster info | grep -c cluster_state:ok)" = 1 ]; do sleep 0.1; done
nodes=127.0.0.1:6411,127.0.0.1:6412,127.0.0.1:6413
$bin/edge --listen 127.0.0.1:9121 --redis-url redis://127.0.0.1:6401 --log error &
single=$!
$bin/edge --listen 127.0.0.1:9122 --redis-cluster-nodes $nodes --log error &
cluster=$!
sleep 1
run() { # name url pid redis-flags... -- scenario flags...
  local name=$1 url=$2 pid=$3; shift 3
  local redis=(); while [ "$1" != "--" ]; do redis+=("$1"); shift; done; shift
  echo "{\"redis\":\"$name\",\"result\":$($bin/loadtest --json --url "$url" --edge-pid "$pid" "${redis[@]}" "$@")}"
}
for load in "direct --users 2000 --rate 2000 --duration $duration" \
            "fanout --rooms 100 --members 10 --rate 1000 --duration $duration"; do
  # shellcheck disable=SC2086
  run single ws://127.0.0.1:9121/ws $single --redis-url redis://127.0.0.1:6401 -- $load
  # shellcheck disable=SC2086
  run cluster ws://127.0.0.1:9122/ws $cluster --redis-cluster-nodes $nodes -- $load
done
echo "{\"single_redis_clients\":$(redis-cli -p 6401 client list | wc -l),\"cluster_clients_per_node\":[$(for p in 6411 6412 6413; do redis-cli -p $p client list | wc -l; done | paste -sd,)]}"
