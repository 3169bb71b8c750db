#!/usr/bin/env bash
# The scale run (issue 15): N cluster nodes sharing ONE port (--reuse-port) on a private
# redis-server, and `agentcast bench` load-generator processes against that port, through
# five scenarios; writes one JSON and one Markdown report with the exact command line, the
# machine's facts and every process's CPU time next to each latency figure.
#
#   scripts/scale.sh --small      # 3 nodes, 3,000 connections, short runs (< 3 min); CI
#   scripts/scale.sh              # 6 nodes, 100,000 connections (needs ~5 GiB free, 20k fds)
#
# Scenarios, in order (each on a fresh Redis and fresh nodes, so RSS growth is meaningful):
#   idle       all connections open; KiB per connection (Σ node RSS growth / connections)
#   per-user   USERS = CONNECTIONS / 2, RATE events/s to random users, DURATION s
#   broadcast  one broadcast to every connection every 2 s, BROADCAST_DURATION s
#   redis      per-user load; Redis SIGKILLed, restarted REDIS_DOWN s later on the same port:
#              publishes must be refused (503) only while it is down, none lost once accepted
#   storm      per-user load with `bench --reconnect`; SIGKILL the node holding the most
#              connections; every client of it resumes with ?last_seq= elsewhere, zero loss
#
# Flags: --small, --nodes N, --connections N, --rate R, --duration S, --out DIR,
#        --scenarios "idle per-user broadcast redis storm".
# Environment (same names, upper case): NODES CONNECTIONS USERS RATE DURATION
#   BROADCAST_DURATION REDIS_DOWN PROCS CONNECT_RATE PUBLISHERS OUT SCENARIOS BIN TIME_LIMIT;
#   STORM_DRAIN (s the storm's bench waits for late deliveries after its window, default 10).
# Exit status: 0 when every scenario had no loss, no leak, no duplicate, no failed connect,
# and the redis and storm checks held; 1 otherwise; 2 when the machine cannot run it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmdline="scripts/scale.sh${*:+ $*}"
for v in NODES CONNECTIONS USERS RATE DURATION BROADCAST_DURATION REDIS_DOWN PROCS \
  CONNECT_RATE PUBLISHERS OUT SCENARIOS BIN TIME_LIMIT; do
  [ -n "${!v:-}" ] && cmdline="$v=${!v} $cmdline"
done
small=0
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=1 ;;
    --nodes) NODES=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --out) OUT=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$small" = 1 ]; then
  nodes=${NODES:-3}; conns=${CONNECTIONS:-3000}; rate=${RATE:-1000}; duration=${DURATION:-8}
  bduration=${BROADCAST_DURATION:-8}; out=${OUT:-docs/scale/small}; limit=${TIME_LIMIT:-300}
else
  nodes=${NODES:-6}; conns=${CONNECTIONS:-100000}; rate=${RATE:-10000}; duration=${DURATION:-30}
  bduration=${BROADCAST_DURATION:-30}; out=${OUT:-docs/scale/full}; limit=${TIME_LIMIT:-1500}
fi
users=${USERS:-$((conns / 2))}
redis_down=${REDIS_DOWN:-3}
publishers=${PUBLISHERS:-16}
scenarios=${SCENARIOS:-idle per-user broadcast redis storm}
# Bench receiver processes: at most 16,000 connections each (under the 20,000-descriptor
# limit, and well under one source address's ephemeral ports).
procs=${PROCS:-$(( (conns + 15999) / 16000 ))}; [ "$procs" -ge "$nodes" ] || procs=$nodes
connect_rate=${CONNECT_RATE:-$([ "$small" = 1 ] && echo 2000 || echo 4000)}
export AGENTCAST_JWT_SECRET=scale-secret-of-at-least-32-bytes-long AGENTCAST_API_KEY=scale-key
start_s=$(date +%s)
mkdir -p "$out"
work=$(mktemp -d /tmp/agentcast-scale.XXXXXX)
hz=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes and cleanup
node_pids=(); redis_pid=""; bench_pid=""
cleanup() {
  local p
  for p in "$bench_pid" "${node_pids[@]}" "$redis_pid"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "$bench_pid" "${node_pids[@]}" "$redis_pid"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  node_pids=(); redis_pid=""; bench_pid=""
}
trap 'cleanup; rm -rf "$work"' EXIT
trap 'echo "scale.sh: interrupted" >&2; exit 130' INT TERM

say() { printf '== %s (+%ss)\n' "$*" "$(( $(date +%s) - start_s ))" >&2; }
now_ms() { date +%s%3N; }
cpu_s() { awk -v hz="$hz" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo null; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo null; }
free_port() {
  python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p != 6379: print(p); break'
}
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- 1. the machine
say "checking the machine"
problems=0
need() { echo "  MISSING: $*" >&2; problems=$((problems + 1)); }
mem_avail_kib=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
# Per connection: server ~8 KiB + bench ~4 KiB + two kernel sockets (~2 × 4 KiB when idle,
# more under load): 40 KiB is the budget asked for, plus 1 GiB for the processes.
mem_need_kib=$(( conns * 40 + 1024 * 1024 ))
[ "$mem_avail_kib" -ge "$mem_need_kib" ] \
  || need "free memory: $((mem_need_kib / 1024)) MiB needed, $((mem_avail_kib / 1024)) MiB available"
nofile_hard=$(ulimit -Hn)
[ "$nofile_hard" = unlimited ] && nofile_hard=1048576
ulimit -n "$nofile_hard"
# Per node: its share, and after the storm its share of the killed node's clients too.
per_node=$(( (conns + nodes - 1) / nodes ))
storm_conns=$conns
if [ "$nodes" -gt 1 ] && [ $(( conns / (nodes - 1) + conns / (nodes - 1) / 10 + 200 )) -gt $((nofile_hard - 500)) ]; then
  # The survivors cannot hold everyone within the descriptor limit: a smaller storm.
  storm_conns=$(( (nofile_hard - 500) * (nodes - 1) * 10 / 11 / 1000 * 1000 ))
fi
max_conns=$(( nofile_hard - 400 ))
per_bench=$(( (conns + procs - 1) / procs ))
[ $((per_node + 200)) -le "$nofile_hard" ] \
  || need "open files: $((per_node + 200)) per node needed, hard limit $nofile_hard (use more --nodes)"
[ $((per_bench + 100)) -le "$nofile_hard" ] \
  || need "open files: $((per_bench + 100)) per bench process needed, hard limit $nofile_hard (PROCS=)"
read -r port_lo port_hi < /proc/sys/net/ipv4/ip_local_port_range
ports=$((port_hi - port_lo + 1))
[ "$per_bench" -lt "$ports" ] \
  || need "ephemeral ports: $per_bench per source address needed, ip_local_port_range gives $ports (PROCS=)"
somaxconn=$(cat /proc/sys/net/core/somaxconn)
[ "$somaxconn" -ge 1024 ] || echo "  warning: net.core.somaxconn=$somaxconn; bursts of connects may be dropped (1024+ advised)" >&2
command -v redis-server >/dev/null || need "redis-server on PATH (apt-get install redis-server)"
command -v curl >/dev/null || need "curl on PATH"
command -v python3 >/dev/null || need "python3 on PATH (the report)"
if [ -z "${BIN:-}" ]; then
  bin=target/release/agentcast
  say "cargo build --release -p agentcast-server --bin agentcast"
  cargo build --release --quiet -p agentcast-server --bin agentcast || need "the release binary (cargo build failed)"
else
  bin=$BIN
fi
[ -x "$bin" ] || need "the release binary $bin"
cores=$(nproc)
echo "  memory available $((mem_avail_kib / 1024)) MiB (budget $((mem_need_kib / 1024)) MiB);" \
  "open files hard $nofile_hard; ports per source address $ports; somaxconn $somaxconn;" \
  "cores $cores; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [ "$problems" -gt 0 ]; then
  echo "scale.sh: this machine cannot run $conns connections over $nodes nodes ($problems problems above)" >&2
  exit 2
fi
cat > "$work/machine.json" <<EOF
{"cores": $cores, "mem_total_kib": $(awk '/^MemTotal/ {print $2}' /proc/meminfo),
 "mem_available_kib": $mem_avail_kib, "nofile_hard": $nofile_hard, "ephemeral_ports": $ports,
 "ip_local_port_range": "$port_lo $port_hi", "somaxconn": $somaxconn,
 "kernel": "$(uname -r)", "redis": "$(redis-server --version | head -1)",
 "load_at_start": "$(cut -d' ' -f1-3 /proc/loadavg)", "started": "$(date -u +%FT%TZ)",
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "command": "$cmdline", "nodes": $nodes, "connections": $conns, "users": $users,
 "rate": $rate, "duration": $duration, "broadcast_duration": $bduration,
 "procs": $procs, "connect_rate": $connect_rate, "publishers": $publishers,
 "max_connections_per_node": $max_conns, "storm_connections": $storm_conns,
 "redis_down_secs": $redis_down}
EOF

# ---------------------------------------------------------------- 2. the cluster
rport=""; port=""
# No persistence, except in the redis scenario (see run_redis).
redis_persist=(--save '' --appendonly no)
start_redis() {
  redis-server --port "$rport" --bind 127.0.0.1 "${redis_persist[@]}" \
    --maxclients 10000 --logfile "$work/redis-server.log" &
  redis_pid=$!
  local i
  for i in $(seq 100); do
    redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  echo "redis-server did not start on $rport" >&2; return 1
}
listening_inodes() {
  local hex; hex=$(printf '%04X' "$port")
  awk -v h=":$hex" '$2 ~ h"$" && $4 == "0A" {print $10}' /proc/net/tcp
}
start_cluster() {
  rport=$(free_port); port=$(free_port)
  start_redis
  local i
  for i in $(seq 1 "$nodes"); do
    "$bin" --log-level warn serve --listen "127.0.0.1:$port" --reuse-port \
      --redis-url "redis://127.0.0.1:$rport" --node-id "node-$i" \
      --max-connections "$max_conns" 2>> "$work/nodes.log" &
    node_pids+=("$!")
  done
  # Every node listening (its socket is one of the port's listeners) and /readyz answered
  # 200 several times in a row (the kernel spreads those requests over the nodes).
  local deadline=$(( $(date +%s) + 30 )) ok=0 p
  while [ "$(date +%s)" -lt "$deadline" ]; do
    local inodes; inodes=$(listening_inodes | tr '\n' '|')
    ok=1
    for p in "${node_pids[@]}"; do
      ls -l "/proc/$p/fd" 2>/dev/null | grep -Eq "socket:\[(${inodes%|})\]" || { ok=0; break; }
    done
    if [ "$ok" = 1 ]; then
      for i in $(seq $((nodes * 4))); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { ok=0; break; }
      done
    fi
    [ "$ok" = 1 ] && break
    sleep 0.2
  done
  [ "$ok" = 1 ] || { echo "the nodes did not become ready" >&2; return 1; }
}

# CPU seconds of each process of the scenario, read at its start and end (a process killed
# during it is read just before the kill).
declare -A cpu0 cpu1
cpu_mark() { local p; for p in "${node_pids[@]}" "$redis_pid"; do cpu0[$p]=$(cpu_s "$p"); done; }
cpu_final() { local p; for p in "$@"; do cpu1[$p]=$(cpu_s "$p"); done; }
cpu_used() { python3 -c "import sys; a,b=sys.argv[1:]; print('null' if 'null' in (a,b) else round(float(b)-float(a),2))" "${cpu0[$1]:-null}" "${cpu1[$1]:-null}"; }

# Runs the bench in the background against the shared port; its stderr goes to $work/$1.log.
bench_start() {
  local name=$1; shift
  local pids; pids=$(IFS=,; echo "${node_pids[*]}")
  "$bin" bench --url "http://127.0.0.1:$port" --procs "$procs" --connect-rate "$connect_rate" \
    --publishers "$publishers" --server-pid "$pids" --json "$work/$name.bench.json" "$@" \
    > "$work/$name.table" 2> "$work/$name.log" &
  bench_pid=$!
}
# Waits until the bench is publishing (its first `running:` line), then $1 more seconds.
bench_running_plus() {
  until grep -q '^running:' "$work/$1.log" 2>/dev/null; do
    kill -0 "$bench_pid" 2>/dev/null || { echo "the bench ended early:" >&2; tail -5 "$work/$1.log" >&2; return 1; }
    sleep 0.1
  done
  sleep "$2"
}
# Waits for the bench; records its exit status and its CPU (it and its receiver children,
# which it waits for: the shell's children time, before and after).
bench_wait() {
  local name=$1 rc=0 t0 t1
  # `times` in this shell (not in a $(...) subshell, whose children are not the bench).
  times > "$work/times0"; t0=$(tail -1 "$work/times0")
  wait "$bench_pid" || rc=$?
  times > "$work/times1"; t1=$(tail -1 "$work/times1")
  bench_pid=""
  bench_cpu=$(python3 -c "import re,sys
def s(t): return sum(float(m)*60+float(x) for m,x in re.findall(r'(\d+)m([\d.]+)s', t))
print(round(s(sys.argv[2])-s(sys.argv[1]),2))" "$t0" "$t1")
  echo "$rc" > "$work/$name.rc"
  cat "$work/$name.table" >&2
}
# Writes the scenario's facts: CPU of every process over the whole scenario, and extras.
scenario_done() {
  local name=$1 extra=${2:-} i p nodes_json=""
  cpu_final "${node_pids[@]}" "$redis_pid"
  for i in "${!all_nodes[@]}"; do
    p=${all_nodes[$i]}
    nodes_json+="${nodes_json:+,}{\"node\":\"node-$((i + 1))\",\"pid\":$p,\"cpu_secs\":$(cpu_used "$p"),\"rss_kib_end\":${rss_end[$p]:-null},\"fds_end\":${fds_end[$p]:-null}}"
  done
  local redis_cpu=0 r
  for r in "${all_redis[@]}"; do redis_cpu=$(python3 -c "import sys; a,b=sys.argv[1:]; print(b if a=='null' or b=='null' else round(float(a)+float(b),2))" "$redis_cpu" "$(cpu_used "$r")"); done
  cat > "$work/$name.facts.json" <<EOF
{"scenario": "$name", "bench_exit": $(cat "$work/$name.rc"), "bench_cpu_secs_whole": $bench_cpu,
 "redis_cpu_secs_whole": $redis_cpu, "nodes": [$nodes_json]${extra:+, $extra}}
EOF
  cleanup
}
declare -A rss_end fds_end
all_nodes=(); all_redis=()
scenario_begin() {
  say "scenario $1"
  start_cluster
  all_nodes=("${node_pids[@]}"); all_redis=("$redis_pid")
  cpu_mark
}
snapshot_nodes() { local p; for p in "${node_pids[@]}"; do rss_end[$p]=$(rss_kib "$p"); fds_end[$p]=$(fds "$p"); done; }

# ---------------------------------------------------------------- 3. the scenarios
per_user_args=(--scenario per-user --users "$users" --rate "$rate" --warmup 2)

run_idle() {
  scenario_begin idle
  # One broadcast a second for 1 s: the connect phase and the RSS reads are what counts.
  bench_start idle --connections "$conns" --users "$users" --scenario broadcast \
    --interval-ms 1000 --duration 1 --warmup 0
  bench_wait idle; snapshot_nodes
  scenario_done idle
}
run_per_user() {
  scenario_begin per-user
  bench_start per-user --connections "$conns" "${per_user_args[@]}" --duration "$duration" --drain 10
  bench_wait per-user; snapshot_nodes
  scenario_done per-user
}
run_broadcast() {
  scenario_begin broadcast
  bench_start broadcast --connections "$conns" --scenario broadcast --interval-ms 2000 \
    --duration "$bduration" --warmup 0 --drain 15
  bench_wait broadcast; snapshot_nodes
  scenario_done broadcast
}
run_redis() {
  # An append-only file fsynced before each reply: a 200 means the event survives the
  # restart, so "zero loss among accepted events" is a property the cluster can have. (A
  # Redis without persistence comes back empty: events it acknowledged but had not yet
  # pushed to the nodes' subscriptions are then gone, reported as a `gap`.)
  mkdir -p "$work/redis-aof"
  redis_persist=(--save '' --appendonly yes --appendfsync always --dir "$work/redis-aof")
  scenario_begin redis
  local d=$(( redis_down + 12 > duration ? redis_down + 12 : duration ))
  bench_start redis --connections "$conns" "${per_user_args[@]}" --duration "$d" --drain 10
  bench_running_plus redis 4
  cpu_final "$redis_pid"
  local kill_ms up_ms
  kill_ms=$(now_ms); kill -KILL "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
  say "redis SIGKILLed; restarting it in ${redis_down} s"
  sleep "$redis_down"
  start_redis; up_ms=$(now_ms)
  all_redis+=("$redis_pid"); cpu0[$redis_pid]=$(cpu_s "$redis_pid")
  bench_wait redis; snapshot_nodes
  scenario_done redis "\"redis_killed_unix_ms\": $kill_ms, \"redis_up_unix_ms\": $up_ms, \"redis_persistence\": \"appendonly, appendfsync always\""
  redis_persist=(--save '' --appendonly no)
}
run_storm() {
  scenario_begin storm
  local d=$(( duration > 15 ? duration : 15 ))
  bench_start storm --connections "$storm_conns" --scenario per-user --users $((storm_conns / 2)) \
    --rate "$rate" --warmup 2 --duration "$d" --reconnect --drain ${STORM_DRAIN:-10}
  bench_running_plus storm 3
  local best="" most=-1 p n
  for p in "${node_pids[@]}"; do
    n=$(fds "$p"); [ "$n" -gt "$most" ] && { most=$n; best=$p; }
  done
  snapshot_nodes; cpu_final "$best"
  local kill_ms; kill_ms=$(now_ms)
  kill -KILL "$best"; wait "$best" 2>/dev/null || true
  say "storm: SIGKILLed node pid $best ($most descriptors)"
  local rest=(); for p in "${node_pids[@]}"; do [ "$p" = "$best" ] || rest+=("$p"); done
  node_pids=("${rest[@]}")
  bench_wait storm; snapshot_nodes
  scenario_done storm "\"killed_pid\": $best, \"killed_fds\": $most, \"killed_unix_ms\": $kill_ms"
}

for s in $scenarios; do
  [ $(( $(date +%s) - start_s )) -lt "$limit" ] || { echo "scale.sh: time limit ${limit}s reached before $s" >&2; break; }
  case "$s" in
    idle) run_idle ;; per-user) run_per_user ;; broadcast) run_broadcast ;;
    redis) run_redis ;; storm) run_storm ;;
    *) echo "scale.sh: unknown scenario $s" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- 4. the report
say "writing $out/report.json and $out/report.md"
rc=0
python3 scripts/scale_report.py "$work" "$out" $scenarios || rc=$?
cp "$work/nodes.log" "$out/nodes.log" 2>/dev/null || true
# The benches' stderr without the progress lines (what they reported: holes, errors).
for s in $scenarios; do
  [ -f "$work/$s.log" ] && grep -v -E '^(connecting|running):' "$work/$s.log" | sed "s/^/$s: /"
done > "$out/bench.log" || true
exit "$rc"
