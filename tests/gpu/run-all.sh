#!/bin/sh
# On a machine with an NVIDIA GPU: build the CUDA parts and run every test labelled `gpu`
# (the CUDA twin of each kernel against its host twin), writing the log and a summary to
# $OUT (default build-gpu/out). Finishes in a few minutes on one GPU; without a usable GPU
# the tests report "skipped" with the CUDA runtime's reason.
#   tests/gpu/run-all.sh [BUILD_DIR]
# `trainmem validate` (the executor and the CUPTI probe) is not built yet; when it is, this
# script also validates the gt models and a LLaMA-1B-shaped config here.
set -eu
build=${1:-build-gpu}
out=${OUT:-$build/out}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRAINMEM_WITH_CUDA=ON \
  -DTRAINMEM_BUILD_GUI=OFF > "$out/configure.log" 2>&1
cmake --build "$build" -j "$(nproc)" --target kernels_tests > "$out/build.log" 2>&1
status=0
(cd "$build" && ctest -L gpu --output-on-failure) > "$out/gpu-tests.log" 2>&1 || status=$?
grep -E "tests passed|tests failed|Skipped|Failed" "$out/gpu-tests.log" | tee "$out/summary.txt"
exit $status
