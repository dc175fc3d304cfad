#!/usr/bin/env bash
# Alternating throughput runs of several revisions of this repository, one after the other in
# each round, with the public harness in ../shared/bench (smtp-source -> mta + policyd ->
# smtp-sink, 20 KB, 20 sessions). This machine's speed drifts by a quarter within minutes, so
# two versions are compared run against run (same round), not against a figure from earlier.
#
#   bench/ab.sh [--rounds 5] [--n 10000] REV [REV ...]      # REV: a commit, a branch, or "work"
#   bench/ab.sh --rounds 5 HEAD~3 work                      # the working tree against HEAD~3
#
# Each REV other than "work" is checked out in a temporary git worktree and run with this
# repository's .venv (PYTHONPATH puts the worktree first). Prints one line per run and, per
# revision, the median delivered/s and CPU per message.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$REPO/../shared/bench}"
rounds=5
n=10000
revs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --n) n="$2"; shift 2 ;;
        *) revs+=("$1"); shift ;;
    esac
done
[ ${#revs[@]} -ge 1 ] || { echo "usage: bench/ab.sh [--rounds R] [--n N] REV [REV ...]" >&2; exit 2; }
tmp="$(mktemp -d /tmp/ab-XXXXXX)"
key_of() { echo "$1" | tr '/~^' '___'; }      # a revision as a file name
cleanup() {
    for rev in "${revs[@]}"; do
        [ "$rev" = work ] || git -C "$REPO" worktree remove --force "$tmp/tree-$(key_of "$rev")" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
for rev in "${revs[@]}"; do
    key="$(key_of "$rev")"
    bin="$tmp/bin-$key"
    mkdir -p "$bin"
    if [ "$rev" = work ]; then
        src="$REPO"
    else
        src="$tmp/tree-$key"
        git -C "$REPO" worktree add --detach "$src" "$rev" >/dev/null
    fi
    for b in mta policyd; do
        printf '#!/bin/sh\nPYTHONPATH=%s exec %s/.venv/bin/%s "$@"\n' "$src" "$REPO" "$b" > "$bin/$b"
        chmod +x "$bin/$b"
    done
done
results="$tmp/results"
: > "$results"
cd /tmp     # not the repository: the working tree must not shadow a worktree on sys.path
for round in $(seq "$rounds"); do
    for rev in "${revs[@]}"; do
        key="$(key_of "$rev")"
        line=$(MTA_BIN="$tmp/bin-$key/mta" POLICYD_BIN="$tmp/bin-$key/policyd" \
               "$BENCH/run.sh" throughput --sut mta --n "$n" 2>&1 | grep '^RESULT' || true)
        rate=$(echo "$line" | grep -o 'delivered_per_s=[0-9.]*' | cut -d= -f2)
        cpu=$(echo "$line" | grep -o 'sut_cpu_ms_per_msg=[0-9.]*' | cut -d= -f2)
        echo "round $round  $rev  delivered/s ${rate:-?}  cpu ms/msg ${cpu:-?}"
        [ -n "$rate" ] && echo "$rev $rate $cpu" >> "$results"
    done
done
python3 - "$results" "${revs[@]}" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for rev in sys.argv[2:]:
    mine = [(float(r), float(c)) for name, r, c in rows if name == rev]
    if mine:
        print(f"{rev}: median {statistics.median(r for r, _ in mine):.1f} delivered/s, "
              f"{statistics.median(c for _, c in mine):.3f} ms CPU/msg over {len(mine)} runs "
              f"(CPU {min(c for _, c in mine):.3f}-{max(c for _, c in mine):.3f})")
EOF
