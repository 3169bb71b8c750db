#!/usr/bin/env bash
# Cluster-mode benchmark on one machine: a private redis-server, N release nodes on it, and
# `agentcast bench` spreading its connections and publishes over every node. Prints the
# bench report, then each process's CPU time during the run (nodes, Redis) and Redis's
# commands per event.
#
#   bash benches/scripts/cluster.sh per-user   # 15,000 connections, 7,500 users, 10,000 ev/s, 30 s
#   bash benches/scripts/cluster.sh broadcast  # 15,000 connections, a broadcast every 100 ms, 30 s
#
# Environment: NODES (3), CONNECTIONS (15000), DURATION (30), RATE (10000), REDIS_PORT (6391),
# BIN (target/release/agentcast; build it with `cargo build --release -p agentcast-server`).
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario=${1:-per-user}
nodes=${NODES:-3}; conns=${CONNECTIONS:-15000}; duration=${DURATION:-30}; rate=${RATE:-10000}
rport=${REDIS_PORT:-6391}; bin=${BIN:-target/release/agentcast}
export AGENTCAST_JWT_SECRET=bench-secret-of-at-least-32-bytes-long AGENTCAST_API_KEY=bench-key
ulimit -n 20000
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
rpid=$!; pids+=("$rpid")
sleep 0.5
urls=""
for i in $(seq 1 "$nodes"); do
  port=$((9000 + i))
  "$bin" serve --listen "127.0.0.1:$port" --redis-url "redis://127.0.0.1:$rport" \
    --node-id "n$i" --log-level warn &
  pids+=("$!")
  urls="${urls:+$urls,}http://127.0.0.1:$port"
done
for i in $(seq 1 "$nodes"); do
  until curl -sf "http://127.0.0.1:$((9000 + i))/readyz" >/dev/null; do sleep 0.2; done
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A before
for p in "${pids[@]}"; do before[$p]=$(cpu "$p"); done
calls_before=$(redis-cli -p "$rport" info commandstats | awk -F'[=,:]' '/calls=/{s+=$3} END{print s}')
args=(--url "$urls" --connections "$conns" --duration "$duration" --warmup 3 --procs "$nodes" \
      --server-pid "${pids[1]}" --publishers "${PUBLISHERS:-8}")
if [ "$scenario" = broadcast ]; then
  args+=(--scenario broadcast --interval-ms 100)
else
  args+=(--users $((conns / 2)) --rate "$rate")
fi
"$bin" bench "${args[@]}"
calls_after=$(redis-cli -p "$rport" info commandstats | awk -F'[=,:]' '/calls=/{s+=$3} END{print s}')
hz=$(getconf CLK_TCK)
echo "CPU seconds during the run (connect, warm-up, measure, drain):"
echo "  redis: $(( ($(cpu "$rpid") - ${before[$rpid]}) * 1000 / hz )) ms"
for i in $(seq 1 "$nodes"); do
  p=${pids[$i]}
  echo "  node n$i: $(( ($(cpu "$p") - ${before[$p]}) * 1000 / hz )) ms"
done
echo "redis commands during the run: $((calls_after - calls_before))"
