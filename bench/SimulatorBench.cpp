//===- SimulatorBench.cpp - speed of the allocator replay, importer and simulator ===//
//
// Google Benchmark programs for the hot paths of a prediction: replaying allocations
// through the caching allocator model, importing a 7B Hugging Face config, and
// simulating one training step of it (reported per graph node). Run by hand:
// `build/bin/trainmem_bench`; nothing here asserts a time.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/CachingAllocatorModel.h"
#include "analyzer/ModelImporter.h"
#include "analyzer/OnnxExporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/StepSimulator.h"
#include "planner/StepPrediction.h"
#include "planner/StrategyApply.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <benchmark/benchmark.h>

#include <chrono>
#include <random>
#include <vector>

using namespace trainmem;

namespace {

constexpr int64_t KiB = 1024;
constexpr int64_t MiB = 1024 * KiB;
const char *const Llama7BConfig =
    TRAINMEM_SOURCE_DIR "/samples/hf/llama-2-7b/config.json";

/// One allocation or free of a pre-drawn replay script.
struct AllocatorOp {
  int64_t Bytes; ///< > 0: allocate this much into slot Slot; 0: free slot Slot
  uint32_t Slot;
};

/// Pairs alloc/free operations with a training-like size mix: half small tensors
/// (biases, norms, scalars: up to 1 MiB), a third activations of 1-10 MiB, the rest
/// 10-256 MiB (weights, logits, optimizer states), with up to 512 live at a time.
std::vector<AllocatorOp> makeAllocatorScript(int64_t Pairs) {
  std::mt19937_64 Rng(7);
  auto drawBytes = [&]() -> int64_t {
    const uint64_t Kind = Rng() % 100;
    if (Kind < 50)
      return 1 + static_cast<int64_t>(Rng() % MiB);
    if (Kind < 85)
      return MiB + 1 + static_cast<int64_t>(Rng() % (9 * MiB));
    return 10 * MiB + static_cast<int64_t>(Rng() % (246 * MiB));
  };
  constexpr uint32_t Window = 512;
  std::vector<AllocatorOp> Ops;
  Ops.reserve(2 * Pairs);
  std::vector<uint32_t> FreeSlots, LiveSlots;
  for (uint32_t Slot = Window; Slot > 0; --Slot)
    FreeSlots.push_back(Slot - 1);
  for (int64_t I = 0; I < Pairs; ++I) {
    if (FreeSlots.empty()) {
      size_t Pick = Rng() % LiveSlots.size();
      Ops.push_back({0, LiveSlots[Pick]});
      FreeSlots.push_back(LiveSlots[Pick]);
      LiveSlots[Pick] = LiveSlots.back();
      LiveSlots.pop_back();
    }
    uint32_t Slot = FreeSlots.back();
    FreeSlots.pop_back();
    LiveSlots.push_back(Slot);
    Ops.push_back({drawBytes(), Slot});
  }
  for (uint32_t Slot : LiveSlots)
    Ops.push_back({0, Slot});
  return Ops;
}

void BM_AllocatorModel(benchmark::State &State) {
  const std::vector<AllocatorOp> Ops = makeAllocatorScript(State.range(0));
  std::vector<CachingAllocatorModel::Handle> Slots(512,
                                                   CachingAllocatorModel::NullHandle);
  int64_t PeakReserved = 0;
  for (auto _ : State) {
    CachingAllocatorModel Allocator;
    for (const AllocatorOp &Op : Ops) {
      if (Op.Bytes > 0)
        Slots[Op.Slot] = Allocator.allocate(Op.Bytes);
      else
        Allocator.free(Slots[Op.Slot]);
    }
    PeakReserved = Allocator.peakReservedBytes();
    benchmark::DoNotOptimize(PeakReserved);
  }
  State.SetItemsProcessed(State.iterations() * State.range(0));
  State.counters["peak_reserved_MiB"] = static_cast<double>(PeakReserved) / MiB;
}
BENCHMARK(BM_AllocatorModel)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMillisecond);

ImportOptions llama7BOptions() {
  ImportOptions Options;
  Options.Dims = {{"batch", 1}, {"seq", 2048}};
  return Options;
}

void BM_ImportHfConfig7B(benchmark::State &State) {
  const ImportOptions Options = llama7BOptions();
  size_t Nodes = 0;
  for (auto _ : State) {
    llvm::Expected<Graph> G = importHfConfig(Llama7BConfig, Options);
    if (!G) {
      State.SkipWithError(llvm::toString(G.takeError()).c_str());
      return;
    }
    Nodes = G->Nodes.size();
    benchmark::DoNotOptimize(G->Nodes.data());
  }
  State.counters["nodes"] = static_cast<double>(Nodes);
}
BENCHMARK(BM_ImportHfConfig7B)->Unit(benchmark::kMillisecond);

/// The LLaMA-2-7B weightless ONNX export (batch 1, seq 2048: what bench/onnx_scaling.sh
/// analyses), written once to a temporary file and removed at exit.
const std::string &llama7BOnnx() {
  struct TempOnnx {
    std::string Path;
    std::string Error;
    TempOnnx() {
      llvm::SmallString<128> P;
      if (std::error_code EC =
              llvm::sys::fs::createTemporaryFile("trainmem-bench-llama7b", "onnx", P)) {
        Error = EC.message();
        return;
      }
      Path = std::string(P);
      llvm::Expected<Graph> G = importHfConfig(Llama7BConfig, llama7BOptions());
      if (!G) {
        Error = llvm::toString(G.takeError());
        return;
      }
      if (llvm::Error E = exportWeightlessOnnx(*G, Path))
        Error = llvm::toString(std::move(E));
    }
    ~TempOnnx() {
      if (!Path.empty()) {
        llvm::sys::fs::remove(Path);
        llvm::sys::fs::remove(weightlessOnnxDataPath(Path));
      }
    }
  };
  static TempOnnx File;
  return File.Error.empty() ? File.Path : File.Error;
}

/// Counts the bytes written to it, through a buffer as the CLI's file stream.
class CountingStream : public llvm::raw_ostream {
  uint64_t Bytes = 0;
  void write_impl(const char *, size_t Size) override { Bytes += Size; }
  uint64_t current_pos() const override { return Bytes; }
};

/// `trainmem analyze` of the 7B ONNX export inside a running process, every call after
/// the first: Arg 0 the import alone (reading the file and inferring every tensor's
/// shape: the work of Python's `onnx.load` + `infer_shapes`, which bench/onnx_scaling.sh
/// times the same way, repeated in one interpreter), 1 the whole analysis (import,
/// census, step simulation with details, report, JSON formatted into a buffered
/// stream that counts its bytes). The first
/// call, which also builds the ONNX operator schemas the model uses, is reported as the
/// counter first_call_ms.
void BM_AnalyzeOnnx7B(benchmark::State &State) {
  const std::string &Path = llama7BOnnx();
  if (!llvm::sys::fs::exists(Path)) {
    State.SkipWithError(Path.c_str());
    return;
  }
  const bool Whole = State.range(0) == 1;
  ImportOptions Options;
  uint64_t JsonBytes = 0;
  auto analyzeOnce = [&]() -> llvm::Error {
    llvm::Expected<Graph> G = importModel(Path, Options);
    if (!G)
      return G.takeError();
    if (!Whole) {
      benchmark::DoNotOptimize(G->Nodes.data());
      return llvm::Error::success();
    }
    TrainingSetup Setup;
    llvm::Expected<MemoryReport> Report = predictStepReport(std::move(*G), Setup);
    if (!Report)
      return Report.takeError();
    CountingStream OS;
    writeReportJson(*Report, OS);
    JsonBytes = OS.tell();
    return llvm::Error::success();
  };
  static double FirstCallMs = -1;
  if (FirstCallMs < 0) {
    auto Start = std::chrono::steady_clock::now();
    if (llvm::Error E = analyzeOnce()) {
      State.SkipWithError(llvm::toString(std::move(E)).c_str());
      return;
    }
    FirstCallMs = std::chrono::duration<double, std::milli>(
                      std::chrono::steady_clock::now() - Start)
                      .count();
  }
  for (auto _ : State) {
    if (llvm::Error E = analyzeOnce()) {
      State.SkipWithError(llvm::toString(std::move(E)).c_str());
      return;
    }
  }
  State.counters["first_call_ms"] = FirstCallMs;
  // A label rather than a counter: the CSV reporter needs every run to have the same ones.
  State.SetLabel(Whole ? "import, census, simulation, report, " + std::to_string(JsonBytes) +
                             " bytes of JSON"
                       : std::string("import"));
}
BENCHMARK(BM_AnalyzeOnnx7B)->ArgName("whole")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

/// Arg 0: with details (the timeline and the tensors at the peak, as `analyze` reports),
/// 1: figures only (as the planner's evaluations), both on CUDA with the allocator replay.
void BM_SimulateStep7B(benchmark::State &State) {
  llvm::Expected<Graph> G = importHfConfig(Llama7BConfig, llama7BOptions());
  if (!G) {
    State.SkipWithError(llvm::toString(G.takeError()).c_str());
    return;
  }
  const bool Details = State.range(0) == 0;
  const TrainingSetup Setup;
  llvm::Expected<ParameterCensus> Census = takeCensus(*G, Setup);
  if (!Census) {
    State.SkipWithError(llvm::toString(Census.takeError()).c_str());
    return;
  }
  std::chrono::nanoseconds Elapsed{0};
  for (auto _ : State) {
    auto Start = std::chrono::steady_clock::now();
    llvm::Expected<StepSimulation> Sim = simulateStep(*G, Setup, *Census, Details);
    Elapsed += std::chrono::steady_clock::now() - Start;
    if (!Sim) {
      State.SkipWithError(llvm::toString(Sim.takeError()).c_str());
      return;
    }
    benchmark::DoNotOptimize(Sim->Peak);
  }
  const double Nodes = static_cast<double>(G->Nodes.size());
  State.counters["nodes"] = Nodes;
  State.counters["ns_per_node"] = static_cast<double>(Elapsed.count()) /
                                  (static_cast<double>(State.iterations()) * Nodes);
}
BENCHMARK(BM_SimulateStep7B)->ArgName("figures_only")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

/// One evaluation of the plan search: LLaMA-2-7B, micro-batch 8 x 2048, CUDA with the
/// allocator replay, amp-bf16, fused AdamW, figures only, the step structure shared as
/// the search shares it. Arg: the checkpointing (0 none, 1 blocks, 2 first:16, 3
/// blocks:8-30+selective:0-7, as the optimal-checkpoint search tries), or 4: LoRA r=16 on
/// every linear (PEFT's adapters, 2,710 nodes) without checkpointing.
void BM_SimulatePlannerStep7B(benchmark::State &State) {
  ImportOptions Options = llama7BOptions();
  Options.Dims = {{"batch", 8}, {"seq", 2048}};
  llvm::Expected<Graph> G = importHfConfig(Llama7BConfig, Options);
  if (!G) {
    State.SkipWithError(llvm::toString(G.takeError()).c_str());
    return;
  }
  static const char *const Modes[] = {"none", "blocks", "first:16",
                                      "blocks:8-30+selective:0-7", "none"};
  TrainingSetup Setup;
  Setup.Device = DeviceKind::Cuda;
  Setup.Prec = Precision::AmpBf16;
  Setup.Impl = OptimizerImpl::Fused;
  Setup.Checkpoint = Modes[State.range(0)];
  if (State.range(0) == 4) {
    Setup.Lora = LoraSetup{};
    Setup.Lora->Rank = 16;
    Setup.Lora->Targets = {"all-linear"};
    if (llvm::Error E = applyStrategies(*G, Setup)) {
      State.SkipWithError(llvm::toString(std::move(E)).c_str());
      return;
    }
  }
  llvm::Expected<ParameterCensus> Census = takeCensus(*G, Setup);
  if (!Census) {
    State.SkipWithError(llvm::toString(Census.takeError()).c_str());
    return;
  }
  auto Structure = buildStepStructure(*G, fusesAttention(*G, Setup));
  for (auto _ : State) {
    llvm::Expected<StepSimulation> Sim =
        simulateStep(*G, Setup, *Census, /*Details=*/false, Structure);
    if (!Sim) {
      State.SkipWithError(llvm::toString(Sim.takeError()).c_str());
      return;
    }
    benchmark::DoNotOptimize(Sim->Peak);
  }
  State.SetLabel(State.range(0) == 4 ? "lora r16 all-linear" : Modes[State.range(0)]);
}
BENCHMARK(BM_SimulatePlannerStep7B)
    ->ArgName("checkpoint")
    ->DenseRange(0, 4)
    ->Unit(benchmark::kMillisecond);

} // namespace

// BENCHMARK_MAIN, with the CLI's process setting (cli/main.cpp), so the figures are the
// CLI's.
int main(int Argc, char **Argv) {
  trainmem::keepFreedMemoryForReuse();
  benchmark::Initialize(&Argc, Argv);
  if (benchmark::ReportUnrecognizedArguments(Argc, Argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
