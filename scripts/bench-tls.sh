#!/usr/bin/env bash
# TLS to Redis against plain, side by side in one run: one release edge binary twice over one
# redis-server, one edge's Redis connections (its live pub/sub connection and its pools) over
# rediss:// with a CA made here by openssl, the other's over redis://; the loadtest publishes
# the same way as the edge it measures (so latency includes the publish over TLS), alternating
# ROUNDS times. Prints one JSON line per run, with the
# Redis process's CPU ticks (1/100 s) during it.
# Usage: [SCENARIO=fanout|direct] scripts/bench-tls.sh [ROUNDS] [DURATION] [scenario flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} duration=${2:-20s}
shift $(( $# < 2 ? $# : 2 ))
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; redis-cli -p 6395 shutdown nosave >/dev/null 2>&1; wait 2>/dev/null; rm -rf "$work"' EXIT
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@" 2>/dev/null; }
ec -x509 -keyout "$work/ca-key.pem" -out "$work/ca.pem" -days 1 -subj "/CN=bench CA"
ec -keyout "$work/key.pem" -out "$work/server.csr" -subj "/CN=localhost"
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" > "$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" \
  -CAcreateserial -out "$work/server.pem" -days 1 -extfile "$work/ext.cnf" 2>/dev/null
redis-server --port 6395 --tls-port 6396 --tls-cert-file "$work/server.pem" --tls-key-file "$work/key.pem" \
  --tls-ca-cert-file "$work/ca.pem" --tls-auth-clients no --save '' --appendonly no --dir "$work" >/dev/null &
until redis-cli -p 6395 ping >/dev/null 2>&1; do sleep 0.1; done
target/release/edge --listen 127.0.0.1:9141 --internal-listen 127.0.0.1:9142 \
  --redis-url redis://127.0.0.1:6395 --log error &
plain=$!
target/release/edge --listen 127.0.0.1:9143 --internal-listen 127.0.0.1:9144 \
  --redis-url rediss://localhost:6396 --redis-ca-file "$work/ca.pem" --log error &
tls=$!
sleep 1
redis_pid=$(redis-cli -p 6395 info server | grep process_id | cut -d: -f2 | tr -d '\r')
ticks() { awk '{print $14+$15}' "/proc/$redis_pid/stat"; }
for _ in $(seq "$rounds"); do
  for which in plain tls; do
    if [ $which = plain ]; then
      port=9141 pid=$plain publish=(--redis-url redis://127.0.0.1:6395)
    else
      port=9143 pid=$tls publish=(--redis-url rediss://localhost:6396 --redis-ca-file "$work/ca.pem")
    fi
    before=$(ticks)
    result=$(target/release/loadtest --json --url ws://127.0.0.1:$port/ws --edge-pid $pid \
      "${publish[@]}" "${SCENARIO:-fanout}" --duration "$duration" "$@")
    echo "{\"edge\":\"$which\",\"redis_cpu_ticks\":$(( $(ticks) - before )),\"result\":$result}"
  done
done
