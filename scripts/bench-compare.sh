#!/usr/bin/env bash
# Two edge binaries side by side under the same load (over one Redis), alternating ROUNDS
# times, so before/after figures come from one run on the same noisy machine.
# Usage: [SCENARIO=fanout] scripts/bench-compare.sh BEFORE_EDGE AFTER_EDGE [ROUNDS] [DURATION] [scenario flags...]
# Prints one JSON line per run: {"edge":"before"|"after","result":{...}}.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-3} duration=${4:-20s}
shift $(( $# < 4 ? $# : 4 ))
redis_port=6393
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
redis-server --port $redis_port --save '' --appendonly no --dir "$work" >/dev/null &
until redis-cli -p $redis_port ping >/dev/null 2>&1; do sleep 0.1; done
# Edges from before the internal listener (--internal-listen) have none to give a port.
internal() { "$1" --help | grep -q -- --internal-listen && echo "--internal-listen 127.0.0.1:$2"; }
# shellcheck disable=SC2046 # word splitting of internal's output is intended
"$before" --listen 127.0.0.1:9111 $(internal "$before" 9121) --redis-url redis://127.0.0.1:$redis_port --log error &
pid_before=$!
# shellcheck disable=SC2046
"$after" --listen 127.0.0.1:9112 $(internal "$after" 9122) --redis-url redis://127.0.0.1:$redis_port --log error &
pid_after=$!
sleep 1
for _ in $(seq "$rounds"); do
  for which in before after; do
    if [ $which = before ]; then port=9111 pid=$pid_before; else port=9112 pid=$pid_after; fi
    result=$(target/release/loadtest --json --url ws://127.0.0.1:$port/ws --edge-pid $pid \
      --redis-url redis://127.0.0.1:$redis_port "${SCENARIO:-fanout}" --duration "$duration" "$@")
    echo "{\"edge\":\"$which\",\"result\":$result}"
  done
done
