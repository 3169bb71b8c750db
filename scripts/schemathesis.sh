#!/usr/bin/env bash
# Fuzzes a live agentcast server from its own OpenAPI document (docs/openapi.json, read back
# from GET /api/v1/openapi.json) with schemathesis (PyPI), and fails on any 5xx, any status
# the document does not list, any response whose body or content type does not match it.
#
# It builds and starts its own debug `agentcast` on a free loopback port with a fixed secret
# and API key, runs schemathesis from a virtualenv it creates under target/, stops the server
# by its PID, and exits non-zero on any failure. Needs cargo and python3 (with venv).
#
# Operations not fuzzed, because schemathesis cannot exercise them meaningfully:
# - `GET /ws`: a WebSocket upgrade (schemathesis speaks plain HTTP; a 101 hands the socket
#   over). tests/tests/openapi_doc.rs checks its documented refusals instead.
# - `GET /sse` and `GET /api/v1/stats/stream`: endless event streams; a 200 never ends, so
#   every example would wait out the request timeout. openapi_doc.rs checks their heads.
# - `POST /api/v1/debug/fault`: exists only with fault injection on (404 to every method
#   otherwise, which schemathesis's `unsupported_method` check rightly reads as a missing
#   405); turning it on would let the fuzzer panic and stall the shards it is testing.
# Everything else is fuzzed: the publish API (single, batch, streaming NDJSON) with the API
# key, `POST /api/v1/ack` with a client JWT, the operations endpoints and this document.
#
# Checks: no 5xx, only documented statuses, documented content types, bodies valid against
# the documented schemas (NDJSON line by line: scripts/schemathesis_hooks.py), and a 405
# with `Allow` for a method the document does not list. Not run: `positive_data_acceptance`
# and `negative_data_rejection` (the schemas describe what to send, not every rule the
# parser applies: a batch answers 200 with per-item errors, a body's numbers beyond 64 bits
# are refused), `missing_required_header`, `ignored_auth`.
#
# Usage: scripts/schemathesis.sh [max examples per operation, default 50]
# (50: about 6 s of fuzzing on a 2-core machine, after the build.)
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-${SCHEMATHESIS_EXAMPLES:-50}}"
# Pinned: schemathesis's CLI changed between major versions (flags, check names).
version="4.32.5"
venv=target/schemathesis-venv
secret="schemathesis-secret-0123456789-of-32-bytes"
key="schemathesis-api-key"

if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet -p agentcast-server --bin agentcast
bin=target/debug/agentcast
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log=target/schemathesis-server.log

AGENTCAST_JWT_SECRET="$secret" AGENTCAST_API_KEY="$key" \
  "$bin" serve --listen "127.0.0.1:$port" --log-level warn >"$log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 100); do
  curl -sf "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "agentcast did not start" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$base/healthz" >/dev/null || { cat "$log" >&2; echo "agentcast did not answer" >&2; exit 1; }

token=$(AGENTCAST_JWT_SECRET="$secret" "$bin" token --user schemathesis-user)
# The NDJSON serializer and the per-line check of streaming publish responses.
export SCHEMATHESIS_HOOKS="$PWD/scripts/schemathesis_hooks.py"
checks="not_a_server_error,status_code_conformance,content_type_conformance"
checks="$checks,response_schema_conformance,unsupported_method,allow_header_conformance"
checks="$checks,ndjson_lines_conform"
# Run from target/: schemathesis keeps its cache of failures (replayed first by the next run)
# in ./.schemathesis.
run() {
  (cd target && "../$venv/bin/schemathesis" run "$base/api/v1/openapi.json" --url "$base" \
    --checks "$checks" --max-examples "$examples" --seed 17 --workers 1 \
    --request-timeout 10 --suppress-health-check all --warnings off \
    --generation-database none "$@")
}

status=0
echo "== schemathesis: publish API and operations endpoints (API key)"
run -H "Authorization: Bearer $key" \
  --exclude-path /ws --exclude-path /sse --exclude-path /api/v1/stats/stream \
  --exclude-path /api/v1/debug/fault --exclude-path /api/v1/ack || status=1
echo "== schemathesis: POST /api/v1/ack (client JWT)"
run -H "Authorization: Bearer $token" --include-path /api/v1/ack || status=1

# A server that died under the run is a failure even if every answer before it was fine.
kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "agentcast exited during the run" >&2; status=1; }
exit "$status"
