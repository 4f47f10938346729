#!/bin/sh
# On a machine with an NVIDIA GPU: build the CUDA parts, run every test labelled `gpu` (the
# CUDA twin of each kernel against its host twin, the executor on the GPU under CUPTI), then
# `trainmem validate --device=cuda` (the executor under CUPTI) on the gt models (tiny tier,
# and GPT-2 small) and on a LLaMA-1B-shaped Hugging Face config (TinyLlama-1.1B), plain and
# with LoRA, GaLore and 8-bit AdamW. Writes the logs, a summary and validate.md (predicted
# against measured peak, a Markdown table) to $OUT (default BUILD_DIR/out). Sized for 10
# minutes on one GPU: each validation has its own time limit, and runs left when the budget
# is spent are listed as not run. Without a usable GPU the tests report "skipped" and
# validate exits 1 with the CUDA runtime's reason (recorded in the table).
#   tests/gpu/run-all.sh [BUILD_DIR]
# TRAINMEM_BIN=PATH skips the build and the kernel tests and validates with that binary;
# TRAINMEM_PREBUILT=DIR (made by tests/gpu/pack.sh, for a GPU machine without trainmem's
# build dependencies) skips the build and runs the gpu tests and validate from DIR;
# VALIDATE_DEVICE (default cuda) and VALIDATE_BUDGET_S (default 540) change the rest.
set -eu
build=${1:-build-gpu}
out=${OUT:-$build/out}
budget=${VALIDATE_BUDGET_S:-540}
device=${VALIDATE_DEVICE:-cuda}
mkdir -p "$out"
start=$(date +%s)
status=0
launch=
command -v nvidia-smi >/dev/null && nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
if [ -n "${TRAINMEM_PREBUILT:-}" ]; then
  pre=$(cd "$TRAINMEM_PREBUILT" && pwd)
  LD_LIBRARY_PATH="$pre/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  # A target whose C library is older than the build machine's refuses the programs: run
  # them under the build machine's loader and C library, packed beside them.
  if ! "$pre/bin/trainmem" --version > "$out/loader.txt" 2>&1; then
    launch="$pre/glibc/ld-linux-x86-64.so.2 --library-path $pre/glibc:$LD_LIBRARY_PATH:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu"
    echo "the programs run under the packed C library" >> "$out/loader.txt"
  fi
  TRAINMEM_BIN=$pre/bin/trainmem
  : > "$out/gpu-tests.log"
  for t in "kernels_tests --gtest_filter=CudaTwin.*" probe_gpu_tests; do
    set -- $t
    p=$1
    shift
    echo "== $p $*" >> "$out/gpu-tests.log"
    timeout 240 $launch "$pre/bin/$p" "$@" >> "$out/gpu-tests.log" 2>&1 || status=$?
  done
  grep -E "^== |PASSED|SKIPPED|FAILED|tracking allocator" "$out/gpu-tests.log" | tee "$out/summary.txt"
elif [ -z "${TRAINMEM_BIN:-}" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRAINMEM_WITH_CUDA=ON \
    -DTRAINMEM_BUILD_GUI=OFF > "$out/configure.log" 2>&1
  cmake --build "$build" -j "$(nproc)" --target kernels_tests probe_gpu_tests trainmem > "$out/build.log" 2>&1
  (cd "$build" && ctest -L gpu --output-on-failure) > "$out/gpu-tests.log" 2>&1 || status=$?
  grep -E "tests passed|tests failed|Skipped|Failed" "$out/gpu-tests.log" | tee "$out/summary.txt"
fi
bin=${TRAINMEM_BIN:-$build/bin/trainmem}

gt=${TRAINMEM_FIXTURES:-../shared/fixtures}/gt/onnx
table="$out/validate.md"
{
  echo "| model | variant | predicted peak (B) | measured peak (B, CUPTI) | error | cudaMemGetInfo peak | seconds |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
} > "$table"
# run NAME LIMIT_S VARIANT ARGS...: one validation, one table row.
run() {
  name=$1 limit=$2 variant=$3
  shift 3
  if [ $(( $(date +%s) - start )) -gt "$budget" ]; then
    echo "| $name | $variant | | | not run: time budget spent | | |" >> "$table"
    return
  fi
  log="$out/validate-$name-$variant.txt"
  t0=$(date +%s)
  rc=0
  timeout "$limit" $launch "$bin" validate --device="$device" "$@" > "$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - t0 ))
  if [ "$rc" -ne 0 ]; then
    why=$(tail -n 1 "$log" | tr '|' '/')
    [ "$rc" -eq 124 ] && why="timed out after ${limit} s"
    echo "| $name | $variant | | | exit $rc: $why | | $secs |" >> "$table"
    status=1
    return
  fi
  set -- $(awk '$1 == "peak" { print $2, $3, $4; exit }' "$log")
  used=$(sed -n 's/^cudaMemGetInfo: \(.*\) in use.*/\1/p' "$log")
  echo "| $name | $variant | $1 | $2 | $3 | $used | $secs |" >> "$table"
}
# variants NAME LIMIT_S GALORE_TARGETS MODEL_ARGS...: plain, LoRA, GaLore, 8-bit AdamW.
variants() {
  name=$1 limit=$2 targets=$3
  shift 3
  run "$name" "$limit" plain "$@"
  run "$name" "$limit" lora "$@" --lora-rank=8 --lora-alpha=16
  run "$name" "$limit" galore "$@" --galore-rank=8 --galore-targets="$targets"
  run "$name" "$limit" adamw-8bit "$@" --optimizer=adamw-8bit
}
for m in gpt2_tiny llama_tiny bert_tiny; do
  if [ -f "$gt/$m.onnx" ]; then
    variants "$m" 60 h.,layers.,layer. "$gt/$m.onnx" --dim batch=4 --dim sequence=32
    run "$m" 60 checkpoint "$gt/$m.onnx" --dim batch=4 --dim sequence=32 --checkpoint=blocks
  fi
done
if [ -f "$gt/gpt2_small.onnx" ]; then
  variants gpt2_small 90 h. "$gt/gpt2_small.onnx" --dim batch=4 --dim sequence=128
fi
# The fused Adam: the for-loop one runs as host loops, too slow over 1.1 B parameters.
variants tinyllama-1.1b 90 attn,mlp --hf-config=samples/hf/tinyllama-1.1b/config.json \
  --dim batch=1 --dim seq=128 --optimizer-impl=fused
cat "$table" | tee -a "$out/summary.txt"
exit $status
