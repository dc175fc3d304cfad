#!/usr/bin/env bash
# Side-by-side throughput: warmup-mta (mta + policyd from ./.venv) against Postfix, with the
# public harness in ../shared/bench (smtp-source -> SUT -> smtp-sink, 20 KB, 20 sessions).
# Prints the median ratio of delivered msgs/s. Needs ../shared/bench/setup.sh run once (root).
#
#   bench/compare.sh                     # 3 pairs, 20,000 messages each
#   bench/compare.sh --pairs 5 --n 50000
#   bench/compare.sh --no-policyd        # the MTA on its static limits only
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$REPO/../shared/bench}"
export MTA_BIN="$REPO/.venv/bin/mta"
export POLICYD_BIN="$REPO/.venv/bin/policyd"
if [ "${1:-}" = "--no-policyd" ]; then
    shift
    # No policyd found (empty POLICYD_BIN, our venv off PATH): the harness drops [policy].
    export POLICYD_BIN=""
    PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$REPO/.venv/bin" | paste -sd: -)
    export PATH
fi
out="${OUT:-$REPO/var/bench}"
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
"$BENCH/run.sh" compare --sut mta --vs postfix --json "$out/compare-$stamp.json" "$@"
echo "results: $out/compare-$stamp.json"
