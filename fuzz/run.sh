#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), starting from the committed
# seeds, and prints execs, coverage and crashes per target. Exits non-zero on any crash.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Uses the nightly toolchain when installed, else stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"; shift || true
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list)
fi
status=0
printf '%-18s %10s %8s %8s %s\n' target execs cov ft result
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/last-run.log"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  if "${fuzz[@]}" run "$t" "corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/$log and fuzz/artifacts/$t/)"
    status=1
  fi
  # A crashed run prints no final stats: every lookup may come up empty.
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  printf '%-18s %10s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $status
