#!/bin/sh
# Analysis time against graph size, and against Python's onnx on the same files.
# For LLaMA-2-7B, LLaMA-2-13B, CodeLlama-34B and LLaMA-2-70B (samples/hf): export a
# weightless ONNX file (batch 1, seq 2048), then time, median of 3 runs each,
#   trainmem analyze FILE --format=json -o /dev/null        (process start to JSON written)
#   python3: onnx.load(FILE, load_external_data=False); onnx.shape_inference.infer_shapes(m)
# Python is timed two ways: inside the interpreter (its start-up and `import onnx` not
# counted: python_s, ratio) and as a process, start to exit, like trainmem
# (python_proc_s, ratio_proc). Prints a table with nodes, the times, both ratios and
# trainmem's peak RSS. Usage: bench/onnx_scaling.sh [BUILD_DIR]
set -eu
build=${1:-build}
tm=$build/bin/trainmem
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | sed -n 2p; }
havepy=no
python3 -c 'import onnx' 2>/dev/null && havepy=yes
printf '%-16s %7s %11s %9s %6s %14s %10s %7s\n' model nodes trainmem_s python_s ratio python_proc_s ratio_proc rss_MB
for m in llama-2-7b llama-2-13b codellama-34b llama-2-70b; do
  f=$work/$m.onnx
  "$tm" export-onnx --hf-config=samples/hf/$m/config.json --dim batch=1 --dim seq=2048 -o "$f" >/dev/null
  times=""
  rss=""
  for i in 1 2 3; do
    out=$( { /usr/bin/time -f '%e %M' "$tm" analyze "$f" --format=json -o /dev/null; } 2>&1 | tail -1)
    times="$times ${out% *}"
    rss=${out#* }
  done
  t=$(printf '%s\n' $times | median)
  n=$("$tm" analyze "$f" --format=json -o - | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"]["nodes"])')
  if [ $havepy = yes ]; then
    p=$(python3 - "$f" <<'PY'
import sys, time, onnx
ts = []
for _ in range(3):
    t = time.perf_counter()
    m = onnx.load(sys.argv[1], load_external_data=False)
    onnx.shape_inference.infer_shapes(m)
    ts.append(time.perf_counter() - t)
print("%.4f" % sorted(ts)[1])
PY
)
    r=$(python3 -c "print('%.2f' % ($t / $p))")
    ptimes=""
    for i in 1 2 3; do
      pt=$( { /usr/bin/time -f '%e' python3 -c 'import sys, onnx
m = onnx.load(sys.argv[1], load_external_data=False)
onnx.shape_inference.infer_shapes(m)' "$f"; } 2>&1 | tail -1)
      ptimes="$ptimes $pt"
    done
    pp=$(printf '%s\n' $ptimes | median)
    rp=$(python3 -c "print('%.2f' % ($t / $pp))")
  else
    p=n/a; r=n/a; pp=n/a; rp=n/a
  fi
  printf '%-16s %7s %11s %9s %6s %14s %10s %7s\n' "$m" "$n" "$t" "$p" "$r" "$pp" "$rp" "$((rss / 1024))"
  rm -f "$f" "$f.data"
done
