#!/bin/sh
# Packs a CUDA build for a GPU machine that cannot build trainmem itself (no LLVM, ONNX,
# protobuf or SQLite headers there: a bare CUDA image). DEST gets the three programs that
# run-all.sh needs (trainmem, kernels_tests, probe_gpu_tests; debug info stripped), the
# shared libraries they load that are not the C library, and CUPTI (the CUDA runtime is
# linked in statically), the build machine's C library and loader in DEST/glibc for a
# target whose glibc is older, and the gt fixtures that run-all.sh validates. Then, on the
# GPU machine:
#   TRAINMEM_PREBUILT=DEST TRAINMEM_FIXTURES=DEST/fixtures tests/gpu/run-all.sh
#   tests/gpu/pack.sh [BUILD_DIR] [DEST]     (defaults: build, build/gpu-pack)
set -eu
build=${1:-build}
dest=${2:-$build/gpu-pack}
fixtures=${TRAINMEM_FIXTURES:-../shared/fixtures}
for p in trainmem kernels_tests probe_gpu_tests; do
  if [ ! -x "$build/bin/$p" ]; then
    echo "pack.sh: $build/bin/$p is missing: build with -DTRAINMEM_WITH_CUDA=ON first" >&2
    exit 1
  fi
done
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib" "$dest/glibc" "$dest/fixtures/gt/onnx"
for p in trainmem kernels_tests probe_gpu_tests; do
  objcopy --strip-debug "$build/bin/$p" "$dest/bin/$p"
done
# Every library ldd resolves, by its soname; the C library's own go to glibc/, which
# run-all.sh uses only when the target's loader refuses the programs.
for p in "$dest"/bin/*; do ldd "$p"; done | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' |
  sort -u | while read -r name path; do
    case $name in
      libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*) cp -L "$path" "$dest/glibc/$name" ;;
      *) cp -L "$path" "$dest/lib/$name" ;;
    esac
  done
cp -L /lib64/ld-linux-x86-64.so.2 "$dest/glibc/"
# CUPTI is opened at run time (cupti_probe/CuptiProbe.cpp), so ldd does not list it.
cupti=$(sed -n 's/^CUDA_cupti_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")
if [ -n "$cupti" ] && [ -e "$cupti" ]; then
  for so in "$(dirname "$cupti")"/libcupti.so.*; do cp -L "$so" "$dest/lib/"; done
fi
for m in gpt2_tiny llama_tiny bert_tiny gpt2_small; do
  if [ -f "$fixtures/gt/onnx/$m.onnx" ]; then
    cp "$fixtures/gt/onnx/$m.onnx" "$fixtures/gt/onnx/$m.params.json" "$dest/fixtures/gt/onnx/"
  fi
done
du -sh "$dest"
