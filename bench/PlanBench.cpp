//===- PlanBench.cpp - speed of the plan search -----------------------------------===//
//
// `trainmem plan` for LLaMA-2-7B, batch 8 x 2048 tokens, on one A100 80GB: every
// candidate, its micro-batch search, the sparse update-set search and the partial
// checkpointing search, each probe a simulated step on a graph imported once per
// micro-batch. Reported with the number of plans and of model imports. Run by hand:
// `build/bin/trainmem_bench`.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "planner/GpuCatalog.h"
#include "planner/PlanSearch.h"

#include <benchmark/benchmark.h>

#include <atomic>

using namespace trainmem;

namespace {

void BM_PlanLlama7BOnA100(benchmark::State &State) {
  auto Catalog = GpuCatalog::loadConfigured();
  if (!Catalog) {
    State.SkipWithError(llvm::toString(Catalog.takeError()).c_str());
    return;
  }
  auto Gpu = Catalog->lookup("a100-sxm-80gb");
  if (!Gpu) {
    State.SkipWithError(llvm::toString(Gpu.takeError()).c_str());
    return;
  }
  auto Imports = std::make_shared<std::atomic<int64_t>>(0);
  PlanRequest R;
  R.Model = [Imports](int64_t MicroBatch) {
    ++*Imports;
    ImportOptions O;
    O.Dims = {{"seq", 2048}};
    O.MicroBatch = MicroBatch;
    return importHfConfig(TRAINMEM_SOURCE_DIR "/samples/hf/llama-2-7b/config.json", O);
  };
  R.Gpu = *Gpu;
  R.Budget = Gpu->UsableBytes;
  R.GlobalBatch = 8;
  size_t Plans = 0;
  int64_t Simulated = 0, Reused = 0, Stopped = 0;
  for (auto _ : State) {
    R.Simulations = std::make_shared<SimulationCache>(); // a fresh search each time
    auto Result = searchPlans(R);
    if (!Result) {
      State.SkipWithError(llvm::toString(Result.takeError()).c_str());
      return;
    }
    Plans = Result->size();
    Simulated += R.Simulations->simulations();
    Reused += R.Simulations->hits();
    Stopped += R.Simulations->stopped();
  }
  State.counters["plans"] = static_cast<double>(Plans);
  // Setups evaluated (each a full step simulation, or the same one reused) per second of
  // wall time, and how many simulations that took.
  State.counters["evaluated_per_s"] =
      benchmark::Counter(static_cast<double>(Simulated + Reused), benchmark::Counter::kIsRate);
  State.counters["simulations"] =
      static_cast<double>(Simulated) / static_cast<double>(State.iterations());
  // Of those, the probes that stopped replaying once the step missed the budget or the
  // forward had given what they asked (StepStop).
  State.counters["stopped"] =
      static_cast<double>(Stopped) / static_cast<double>(State.iterations());
  State.counters["imports"] =
      static_cast<double>(Imports->load()) / static_cast<double>(State.iterations());
}
BENCHMARK(BM_PlanLlama7BOnA100)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

} // namespace
