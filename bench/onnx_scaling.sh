#!/bin/bash
# Analysis time against graph size, and against Python's onnx on the same files.
# For LLaMA-2-7B, LLaMA-2-13B, CodeLlama-34B and LLaMA-2-70B (samples/hf): export a
# weightless ONNX file (batch 1, seq 2048), then time, median of 5 runs each,
#   trainmem analyze FILE --format=json -o /dev/null        (process start to JSON written)
#   python3: onnx.load(FILE, load_external_data=False); onnx.shape_inference.infer_shapes(m)
# Python is timed three ways: the calls inside a running interpreter, repeated
# (python_ms, ratio: its start-up, `import onnx` and first-call costs not counted); the
# same calls made once in a fresh interpreter after `import onnx` (python_first_ms,
# ratio_first: what a one-shot script pays for them); and as a process, start to exit,
# like trainmem (python_proc_ms, ratio_proc). start_ms is `trainmem --version`: the
# process start and exit every trainmem run pays before and after any work (loading its
# shared libraries: ONNX, protobuf, libstdc++). Prints a table with
# nodes, the times, the ratios and trainmem's peak RSS, then a least-squares line through
# trainmem's times against the node counts (milliseconds per 1,000 nodes, the intercept,
# R^2) to show the growth is linear.
# Times are wall clock in milliseconds, medians of 5 runs. Python is
# Debian's (/usr/bin/python3 with python3-onnx) where it has onnx, else python3 on PATH;
# PYTHON=... picks another. Usage: bench/onnx_scaling.sh [BUILD_DIR]
# Run as `sh bench/onnx_scaling.sh`, dash would have no EPOCHREALTIME: bash runs it.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu
export LC_ALL=C  # EPOCHREALTIME with a decimal point
build=${1:-build}
tm=$build/bin/trainmem
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | sed -n 3p; }
# Milliseconds a command takes, start to exit: bash's clock, read without starting a
# process (timing with `date` added the second date's start, ~2 ms, to every run).
wall_ms() {
  local t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1
  local t1=$EPOCHREALTIME
  echo "$t0 $t1" | awk '{ printf "%.1f\n", ($2 - $1) * 1e3 }'
}
py=${PYTHON:-}
if [ -z "$py" ]; then
  py=python3
  /usr/bin/python3 -c 'import onnx' 2>/dev/null && py=/usr/bin/python3
fi
havepy=no
"$py" -c 'import onnx' 2>/dev/null && havepy=yes
[ $havepy = yes ] && echo "python: $py, onnx $("$py" -c 'import onnx; print(onnx.__version__)')"
starts=""
for i in 1 2 3 4 5; do
  starts="$starts $(wall_ms "$tm" --version)"
done
echo "trainmem start_ms (--version): $(printf '%s\n' $starts | median)"
printf '%-14s %6s %11s %9s %6s %15s %11s %14s %10s %6s\n' model nodes trainmem_ms python_ms ratio python_first_ms ratio_first python_proc_ms ratio_proc rss_MB
points=""
py7b=n/a
for m in llama-2-7b llama-2-13b codellama-34b llama-2-70b; do
  f=$work/$m.onnx
  "$tm" export-onnx --hf-config=samples/hf/$m/config.json --dim batch=1 --dim seq=2048 -o "$f" >/dev/null
  rss=$( { /usr/bin/time -f '%M' "$tm" analyze "$f" --format=json -o /dev/null; } 2>&1 | tail -1)
  times=""
  for i in 1 2 3 4 5; do
    times="$times $(wall_ms "$tm" analyze "$f" --format=json -o /dev/null)"
  done
  t=$(printf '%s\n' $times | median)
  n=$("$tm" analyze "$f" --format=json -o - | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"]["nodes"])')
  if [ $havepy = yes ]; then
    p=$("$py" - "$f" <<'PY'
import sys, time, onnx
ts = []
for _ in range(5):
    t = time.perf_counter()
    m = onnx.load(sys.argv[1], load_external_data=False)
    onnx.shape_inference.infer_shapes(m)
    ts.append(time.perf_counter() - t)
print("%.2f" % (sorted(ts)[2] * 1e3))
PY
)
    r=$(python3 -c "print('%.2f' % ($t / $p))")
    ftimes=""
    for i in 1 2 3 4 5; do
      ftimes="$ftimes $("$py" - "$f" <<'PY'
import sys, time, onnx
t = time.perf_counter()
m = onnx.load(sys.argv[1], load_external_data=False)
onnx.shape_inference.infer_shapes(m)
print("%.2f" % ((time.perf_counter() - t) * 1e3))
PY
)"
    done
    pf=$(printf '%s\n' $ftimes | median)
    rf=$(python3 -c "print('%.2f' % ($t / $pf))")
    ptimes=""
    for i in 1 2 3 4 5; do
      ptimes="$ptimes $(wall_ms "$py" -c 'import sys, onnx
m = onnx.load(sys.argv[1], load_external_data=False)
onnx.shape_inference.infer_shapes(m)' "$f")"
    done
    pp=$(printf '%s\n' $ptimes | median)
    rp=$(python3 -c "print('%.2f' % ($t / $pp))")
  else
    p=n/a; r=n/a; pf=n/a; rf=n/a; pp=n/a; rp=n/a
  fi
  printf '%-14s %6s %11s %9s %6s %15s %11s %14s %10s %6s\n' "$m" "$n" "$t" "$p" "$r" "$pf" "$rf" "$pp" "$rp" "$((rss / 1024))"
  points="$points $n:$t"
  [ "$m" = llama-2-7b ] && py7b=$p
  rm -f "$f" "$f.data"
done
python3 - $points <<'PY'
import sys
xs, ys = zip(*((float(a), float(b)) for a, b in (p.split(":") for p in sys.argv[1:])))
n = len(xs)
mx, my = sum(xs) / n, sum(ys) / n
sxx = sum((x - mx) ** 2 for x in xs)
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
icpt = my - slope * mx
ss_res = sum((y - (icpt + slope * x)) ** 2 for x, y in zip(xs, ys))
ss_tot = sum((y - my) ** 2 for y in ys)
print("trainmem: %.2f ms per 1,000 nodes + %.1f ms, R^2 = %.4f"
      % (slope * 1000, icpt, 1 - ss_res / ss_tot if ss_tot else 1.0))
PY
# Both sides warm inside a running process: trainmem's library calls repeated
# (build/bin/trainmem_bench BM_AnalyzeOnnx7B, the same 7B export) against Python's
# repeated calls above. The import alone is the same work as Python's two calls.
bench=$build/bin/trainmem_bench
if [ -x "$bench" ]; then
  out=$("$bench" --benchmark_filter='BM_AnalyzeOnnx7B' --benchmark_repetitions=5 \
          --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null |
        awk -F, '/_median"/ { gsub(/"/, "", $1); print $1, $3 }')
  imp=$(echo "$out" | awk '/whole:0/ { printf "%.2f", $2 }')
  all=$(echo "$out" | awk '/whole:1/ { printf "%.2f", $2 }')
  if [ -n "$imp" ] && [ -n "$all" ]; then
    if [ "$py7b" != n/a ]; then
      ri=$(python3 -c "print('%.2f' % ($imp / $py7b))")
      ra=$(python3 -c "print('%.2f' % ($all / $py7b))")
    else
      ri=n/a; ra=n/a
    fi
    echo "in a running process, 7B (trainmem_bench, median of 5): import $imp ms" \
         "(ratio $ri to Python's repeated calls), whole analysis to JSON $all ms (ratio $ra)"
  fi
fi
