//===- TraceBench.cpp - trace import throughput and memory -----------------===//
//
// A synthetic kineto-style Chrome trace (a training loop of profiler steps: cpu_op events
// with shapes, autograd ranges, [memory] events with addresses and totals, written in
// shuffled order), gzipped as the profiler's .json.gz, imported end to end. Reports the
// gzipped and the decompressed bytes per second; the goal (issue 9) is >= 100 MB/s of
// gzipped trace. Arg: profiler steps (each ~1.3 MB of JSON).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TraceImport.h"
#include "analyzer/TraceRecords.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"

#include <benchmark/benchmark.h>
#include <zlib.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

std::string writeTrace(int Steps, uint64_t &RawBytes) {
  llvm::SmallString<128> Path;
  llvm::sys::fs::createTemporaryFile("trainmem-bench-trace", "json.gz", Path);
  gzFile F = gzopen(Path.c_str(), "wb6");
  std::mt19937_64 Rng(42);
  std::string Out = "{\"schemaVersion\": 1, \"traceEvents\": [\n";
  RawBytes = 0;
  auto flush = [&](bool Force) {
    if (Out.size() > (1 << 20) || Force) {
      gzwrite(F, Out.data(), static_cast<unsigned>(Out.size()));
      RawBytes += Out.size();
      Out.clear();
    }
  };
  int64_t Total = 0;
  double Ts = 1e15;
  bool First = true;
  for (int S = 0; S < Steps; ++S) {
    Out += llvm::formatv("{0}{{\"ph\": \"X\", \"cat\": \"user_annotation\", \"name\": "
                         "\"ProfilerStep#{1}\", \"pid\": 1, \"tid\": 1, \"ts\": {2}, \"dur\": "
                         "50000}\n",
                         First ? "" : ",", S, Ts)
               .str();
    First = false;
    std::vector<std::pair<uint64_t, int64_t>> Live;
    for (int Op = 0; Op < 2000; ++Op) {
      double At = Ts + Op * 20;
      bool Backward = Op >= 1000;
      Out += llvm::formatv(",{{\"ph\": \"X\", \"cat\": \"cpu_op\", \"name\": \"aten::{0}\", "
                           "\"pid\": 1, \"tid\": {1}, \"ts\": {2}, \"dur\": 15, \"args\": "
                           "{{\"External id\": {3}, \"Input Dims\": [[8, 1024, 768], [768, "
                           "768]], \"Input type\": [\"float\", \"float\"]}}\n",
                           Backward ? "mm_backward" : "linear", Backward ? 2 : 1, At, Op)
                 .str();
      int64_t Bytes;
      uint64_t Addr;
      if (!Backward || Live.empty() || Rng() % 2) {
        Bytes = static_cast<int64_t>(512 * (1 + Rng() % 4096));
        Addr = 0x7f0000000000ull + (Rng() % (1ull << 32)) * 512;
        Live.push_back({Addr, Bytes});
      } else {
        size_t I = Rng() % Live.size();
        Addr = Live[I].first;
        Bytes = -Live[I].second;
        Live.erase(Live.begin() + static_cast<long>(I));
      }
      Total += Bytes;
      Out += llvm::formatv(",{{\"ph\": \"i\", \"cat\": \"cpu_instant_event\", \"s\": \"t\", "
                           "\"name\": \"[memory]\", \"pid\": 1, \"tid\": {0}, \"ts\": {1}, "
                           "\"args\": {{\"Device Type\": 1, \"Device Id\": 0, \"Addr\": {2}, "
                           "\"Bytes\": {3}, \"Total Allocated\": {4}, \"Total Reserved\": "
                           "{5}}}\n",
                           Backward ? 2 : 1, At + 5, Addr, Bytes, Total, Total + (1 << 30))
                 .str();
      flush(false);
    }
    for (auto &[Addr, Bytes] : Live) {
      Total -= Bytes;
      Out += llvm::formatv(",{{\"ph\": \"i\", \"name\": \"[memory]\", \"pid\": 1, \"tid\": 1, "
                           "\"ts\": {0}, \"args\": {{\"Device Type\": 1, \"Device Id\": 0, "
                           "\"Addr\": {1}, \"Bytes\": {2}, \"Total Allocated\": {3}}}\n",
                           Ts + 45000, Addr, -Bytes, Total)
                 .str();
    }
    Ts += 50000;
  }
  Out += "]}\n";
  flush(true);
  gzclose(F);
  return Path.str().str();
}

/// Imports Path once per iteration; rates of its gzipped (Packed) and JSON (Raw) bytes.
void importEachIteration(benchmark::State &State, const std::string &Path, uint64_t Packed,
                         uint64_t Raw) {
  for (auto _ : State) {
    auto T = trainmem::importTrace(Path);
    if (!T) {
      State.SkipWithError(llvm::toString(T.takeError()).c_str());
      break;
    }
    benchmark::DoNotOptimize(T->selected().Peak);
  }
  State.counters["gz_MB_per_s"] = benchmark::Counter(
      static_cast<double>(Packed) / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  State.counters["json_MB_per_s"] = benchmark::Counter(
      static_cast<double>(Raw) / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  State.counters["gz_MB"] = static_cast<double>(Packed) / 1e6;
  State.counters["json_MB"] = static_cast<double>(Raw) / 1e6;
}

void BM_ImportChromeTraceGz(benchmark::State &State) {
  uint64_t Raw = 0;
  std::string Path = writeTrace(static_cast<int>(State.range(0)), Raw);
  uint64_t Packed = 0;
  llvm::sys::fs::file_size(Path, Packed);
  importEachIteration(State, Path, Packed, Raw);
  llvm::sys::fs::remove(Path);
}
// Rates by wall time: gzip is inflated on a second thread, so the importing thread's CPU
// time alone would overstate them.
BENCHMARK(BM_ImportChromeTraceGz)->Arg(20)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();

/// Real kineto traces from ../shared/fixtures/traces (skipped without them): pretty-printed,
/// they compress 18-28x where the synthetic one compresses 13x, so the same JSON rate is a
/// lower gzip rate. Arg: 0 the ResNet-50 trace (1.1 MB gz, 31 MB JSON), 1 the DDP
/// transformer trace (3.0 MB gz, 54 MB JSON).
void BM_ImportFixtureTraceGz(benchmark::State &State) {
  static const char *const Names[] = {
      "resnet50_num_workers_4.worker0.1623212756351.pt.trace.json.gz",
      "tests__data__df_index_resolver__df_index_resolver.json.gz"};
  const std::string Path =
      std::string(TRAINMEM_FIXTURES_DIR) + "/traces/" + Names[State.range(0)];
  uint64_t Packed = 0;
  if (llvm::sys::fs::file_size(Path, Packed)) {
    State.SkipWithError(("no fixture trace " + Path).c_str());
    return;
  }
  uint64_t Raw = 0;
  if (gzFile F = gzopen(Path.c_str(), "rb")) {
    char Buffer[1 << 16];
    for (int N; (N = gzread(F, Buffer, sizeof Buffer)) > 0;)
      Raw += static_cast<uint64_t>(N);
    gzclose(F);
  }
  importEachIteration(State, Path, Packed, Raw);
}
BENCHMARK(BM_ImportFixtureTraceGz)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

/// The encoded records a Chrome-trace import keeps (analyzer/TraceRecords.h): kineto-like
/// memory events (an allocator counter moved by each event, frees of earlier addresses,
/// 512-byte multiples) appended, or read back in order, per second. First arg: 0 appends,
/// 1 reads; second: 0 keeps every byte in memory, 1 the import's default memory limit
/// (4 MiB: the rest written to, and read back from, the temporary file).
void BM_MemoryRecordStream(benchmark::State &State) {
  using namespace trainmem::trace;
  std::mt19937_64 Rng(5);
  std::vector<MemoryRecord> Records;
  std::vector<std::pair<uint64_t, int64_t>> Live;
  double Ts = 1623212756351.123;
  int64_t Total = 0;
  for (int I = 0; I < (1 << 20); ++I) {
    MemoryRecord R;
    Ts += static_cast<double>(Rng() % 50000) / 1000.0;
    R.Ts = Ts;
    if (Live.empty() || Rng() % 2) {
      Live.push_back({0x7f0000000000ull + (Rng() % (uint64_t(1) << 32)) * 512,
                      512 * static_cast<int64_t>(1 + Rng() % 4096)});
      R.Addr = Live.back().first;
      R.Bytes = Live.back().second;
    } else {
      const size_t K = Rng() % Live.size();
      R.Addr = Live[K].first;
      R.Bytes = -Live[K].second;
      Live[K] = Live.back();
      Live.pop_back();
    }
    R.TotalAllocated = Total += R.Bytes;
    R.TotalReserved = int64_t(1) << 32;
    R.Tid = 1;
    Records.push_back(R);
  }
  const size_t Memory = State.range(1) ? DefaultMemoryLimit : 0;
  MemoryRecordStream Kept(DefaultPlainLimit, Memory);
  for (const MemoryRecord &R : Records)
    Kept.append(R);
  for (auto _ : State) {
    if (State.range(0) == 0) {
      MemoryRecordStream S(DefaultPlainLimit, Memory);
      for (const MemoryRecord &R : Records)
        S.append(R);
      benchmark::DoNotOptimize(S.bytes());
    } else {
      int64_t Sum = 0;
      MemoryRecordStream::Reader From(Kept);
      for (MemoryRecord R; From.next(R);)
        Sum += R.Bytes;
      benchmark::DoNotOptimize(Sum);
    }
  }
  State.SetItemsProcessed(State.iterations() * static_cast<int64_t>(Records.size()));
  State.counters["bytes_per_record"] =
      static_cast<double>(Kept.bytes()) / static_cast<double>(Kept.size());
}
BENCHMARK(BM_MemoryRecordStream)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"read", "spill"})
    ->Unit(benchmark::kMillisecond);
