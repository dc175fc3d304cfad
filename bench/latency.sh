#!/usr/bin/env bash
# Open-loop acceptance latency at a fixed rate (time from the DATA dot to the 250, p50/p95/p99),
# warmup-mta from ./.venv, with the public harness in ../shared/bench.
#   bench/latency.sh                      # 300 msgs/s for 60 s
#   bench/latency.sh --rate 500 --duration 30
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$REPO/../shared/bench}"
export MTA_BIN="$REPO/.venv/bin/mta"
export POLICYD_BIN="$REPO/.venv/bin/policyd"
out="${OUT:-$REPO/var/bench}"
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
args=("$@")
[[ " ${args[*]} " == *" --rate "* ]] || args+=(--rate 300)
[[ " ${args[*]} " == *" --duration "* ]] || args+=(--duration 60)
"$BENCH/run.sh" latency --sut mta --json "$out/latency-$stamp.json" "${args[@]}"
echo "results: $out/latency-$stamp.json"
