#!/bin/sh
# Runs every fuzz target of BUILD_DIR for SECONDS each, seeded from the project's test data
# and ../shared/fixtures (when present); corpora and crashes stay in BUILD_DIR/fuzz/.
# Prints each target's executions and the total.  Usage: tests/fuzz/run.sh BUILD_DIR SECONDS
set -eu
build=$1; seconds=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${TRAINMEM_FIXTURES:-$root/../shared/fixtures}
work=$build/fuzz
mkdir -p "$work"

seed() { # seed TARGET FILE [PREFIX-BYTE]: copy FILE into TARGET's seed folder
  mkdir -p "$work/$1/seeds"
  name=$(basename "$2")
  if [ $# -ge 3 ]; then
    { printf "\\$(printf '%03o' "$3")"; head -c 200000 "$2"; } > "$work/$1/seeds/$3-$name"
  else
    head -c 2000000 "$2" > "$work/$1/seeds/$name"
  fi
}

for f in "$root"/tests/data/traces/*; do
  case $f in
    # Chrome traces behind six ways of keeping their records (FuzzTraces.cpp).
    *kineto*) for b in 0 6 18 30 36 66; do seed FuzzTraces "$f" $b; done ;;
    *timeline*) seed FuzzTraces "$f" 1 ;;
    *snapshot*.pickle|*pickle_values*) seed FuzzTraces "$f" 2; seed FuzzUnpickle "$f" ;;
    *snapshot*.json) seed FuzzTraces "$f" 3 ;;
    *.sqlite) seed FuzzTraces "$f" 4 ;;
  esac
done
for f in "$root"/samples/hf/*/config.json; do
  mkdir -p "$work/FuzzHfConfig/seeds"
  cp "$f" "$work/FuzzHfConfig/seeds/$(basename "$(dirname "$f")").json"
done
for f in "$root"/tests/data/reports/*.json; do seed FuzzJsonReaders "$f" 1; seed FuzzJsonReaders "$f" 2; done
printf '\000{"precision": "bf16", "optimizer": "adamw-8bit", "checkpoint": "blocks", "lora": {"rank": 8}}' \
  > "$work/FuzzJsonReaders/seeds/setup.json" 2>/dev/null || true
if [ -d "$fixtures/gt/onnx" ]; then
  for f in "$fixtures"/gt/onnx/*_tiny.onnx; do seed FuzzOnnx "$f"; done
  for f in "$fixtures"/traces/*.json.gz; do seed FuzzTraces "$f" 5; done
fi
mkdir -p "$work/FuzzOnnx/seeds"
# FuzzStep: small models whole, weights as external references (a weightless export is
# 30-90 KB where the file with its weights is 700 KB: mutations land in the graph), each
# behind every setup byte. Exported with the regular build's trainmem where there is one.
mkdir -p "$work/FuzzStep/seeds"
tm=${TRAINMEM:-$root/build/bin/trainmem}
for f in "$fixtures"/gt/onnx/*_tiny.onnx "$root"/tests/data/measured/gt/onnx/*_tiny.onnx; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .onnx)
  if [ -x "$tm" ] && "$tm" export-onnx "$f" --default-dim=2 -o "$work/FuzzStep/$name.onnx" >/dev/null 2>&1; then
    rm -f "$work/FuzzStep/$name.onnx.data"
    model=$work/FuzzStep/$name.onnx
  else
    model=$f
  fi
  for setup in 0 1 2 3 4 5 6 7; do
    { printf "\\$(printf '%03o' "$setup")"; cat "$model"; } > "$work/FuzzStep/seeds/$setup-$name.onnx"
  done
done

total=0
failed=""
for target in FuzzOnnx FuzzStep FuzzHfConfig FuzzTraces FuzzUnpickle FuzzJsonReaders; do
  mkdir -p "$work/$target/corpus" "$work/$target/crashes"
  log=$work/$target/last-run.log
  # Small inputs run thousands of times faster; the ONNX target keeps room for real models.
  case $target in FuzzOnnx|FuzzStep) maxlen=262144 ;; *) maxlen=16384 ;; esac
  if ! "$build/bin/$target" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 \
       -max_len=$maxlen \
       -timeout=10 -artifact_prefix="$work/$target/crashes/" \
       "$work/$target/corpus" "$work/$target/seeds" > "$log" 2>&1; then
    echo "$target: FAILED (see $log and $work/$target/crashes/)"; grep -A3 "ERROR\|runtime error" "$log" | head -8
    failed="$failed $target"
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  case " $failed " in
    *" $target "*) echo "$target: stopped at a finding after $runs executions" ;;
    *) echo "$target: $runs executions in ${seconds}s, no crash, hang or leak" ;;
  esac
  total=$((total + runs))
done
echo "fuzz: $total executions in all"
if [ -n "$failed" ]; then echo "fuzz: findings in$failed"; exit 1; fi
