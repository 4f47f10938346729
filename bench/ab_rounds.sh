#!/bin/bash
# A/B of two builds of trainmem_bench, interleaved: ROUNDS rounds, each running both
# binaries once on the benchmarks FILTER matches (the order alternating between rounds),
# then per benchmark the median of each binary's figure and the median and quartiles of
# the per-round ratio NEW / BASE. The machine's speed moves by a quarter between hours, so
# a change is judged by the ratio inside each round, never against a figure of another hour.
#
#   bench/ab_rounds.sh ROUNDS FILTER BASE_BENCH NEW_BENCH
#   bench/ab_rounds.sh 12 'BM_Import(ChromeTrace|FixtureTrace)Gz' /tmp/old/trainmem_bench build/bin/trainmem_bench
#
# The figure is the benchmark's first "..._per_s=" counter (higher is better), else
# 1000 / its time (so, for every figure, a ratio above 1 means NEW is faster).
set -euo pipefail
if [ $# -ne 4 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
fi
ROUNDS=$1 FILTER=$2 BASE=$3 NEW=$4
for B in "$BASE" "$NEW"; do
  [ -x "$B" ] || { echo "ab_rounds.sh: $B: not an executable" >&2; exit 1; }
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for R in $(seq "$ROUNDS"); do
  if [ $((R % 2)) = 0 ]; then ORDER="base new"; else ORDER="new base"; fi
  for WHICH in $ORDER; do
    if [ "$WHICH" = base ]; then B=$BASE; else B=$NEW; fi
    "$B" --benchmark_filter="$FILTER" 2>/dev/null | grep -E '^BM_' | while read -r LINE; do
      if [[ "$LINE" == *"ERROR OCCURRED"* ]]; then
        echo "ab_rounds.sh: $B: $LINE" >&2
        continue
      fi
      NAME=${LINE%% *}
      V=$(echo "$LINE" | grep -o '_per_s=[0-9.]*k\?' | head -1 | cut -d= -f2 || true)
      if [ -z "$V" ]; then V=$(echo "$LINE" | awk '{print 1000 / $2}'); fi
      echo "$R $NAME $V" >> "$OUT/$WHICH"
    done
  done
  echo "round $R of $ROUNDS done" >&2
done
python3 - "$OUT/base" "$OUT/new" <<'PY'
import statistics, sys
def load(path):
    figures = {}
    for line in open(path):
        r, name, v = line.split()
        v = float(v[:-1]) * 1000 if v.endswith('k') else float(v)
        figures[(r, name)] = v
    return figures
base, new = load(sys.argv[1]), load(sys.argv[2])
for name in sorted({n for _, n in base}):
    keys = [k for k in base if k[1] == name and k in new]
    ratios = sorted(new[k] / base[k] for k in keys)
    q = lambda f: ratios[min(len(ratios) - 1, int(f * len(ratios)))]
    print(f"{name:45s} base {statistics.median(base[k] for k in keys):9.1f}  "
          f"new {statistics.median(new[k] for k in keys):9.1f}  "
          f"new/base {statistics.median(ratios):.3f} [{q(0.25):.3f}, {q(0.75):.3f}]  rounds {len(ratios)}")
PY
