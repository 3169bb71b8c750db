#!/usr/bin/env bash
# Redis's time per cluster publish: the publish script (`server/src/cluster/scripts.rs`,
# NORMALIZE inlined as the node does) run with `redis-benchmark` against a private
# redis-server, one client, one user, a 100-byte payload; prints Redis's own
# `usec_per_call` for the script (`INFO commandstats`), with history trimming (history_len
# 20: one entry out per publish) and without (history_len 10^6). Redis runs scripts on one
# thread, so 10^6 / usec_per_call bounds the publishes per second of a whole cluster on one
# Redis.
#
#   bash benches/scripts/redis_script_cost.sh            # uses scripts.rs of the work tree
#   SCRIPTS=/tmp/old_scripts.rs bash benches/...          # another version, to compare
#
# Environment: SCRIPTS (server/src/cluster/scripts.rs), N (10000 calls), REDIS_PORT (6393).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=${SCRIPTS:-server/src/cluster/scripts.rs}; n=${N:-10000}; port=${REDIS_PORT:-6393}
lua=$(mktemp)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -f "$lua"' EXIT
python3 - "$scripts" "$lua" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
const = lambda name: re.search(r'const ' + name + r': &str = r"\n(.*?)\n";', s, re.S).group(1)
open(sys.argv[2], "w").write(const("PUBLISH_USER").replace("-- NORMALIZE", const("NORMALIZE")))
PY
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
sleep 0.3
for hl in 20 1000000; do
  redis-cli -p "$port" FLUSHALL >/dev/null
  redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
  redis-benchmark -p "$port" -n "$n" -c 1 -q EVAL "$(cat "$lua")" 6 \
    'ac:{u}:m' 'ac:{u}:h' 'ac:floor' 'ac:{u}:n' 'ac:i:-' 'ac:dl' \
    '{"type":"tool_executing","seq":' ",\"data\":{\"text\":\"$(printf 'x%.0s' $(seq 1 60))\"}}" \
    1 "$hl" 300000 '' 300000 'ac:{u}:e' 'ac:node:' 3 '' 0 u 8388608 96 >/dev/null
  per_call=$(redis-cli -p "$port" INFO commandstats | sed -n 's/^cmdstat_eval:.*usec_per_call=\([0-9.]*\).*/\1/p')
  echo "history_len=$hl: $per_call us per publish script (EVAL, script hashing included)"
done
