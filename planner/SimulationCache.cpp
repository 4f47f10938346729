//===- SimulationCache.cpp - step simulations shared across a plan search ---------===//
#include "planner/SimulationCache.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

namespace trainmem {

namespace {
/// Everything besides the model that decides a simulation: the setup (setupToJson has
/// every field a `--setup` file can carry; the trained names are added, since a resolved
/// update set is a list of names) and the shapes of the graph's inputs.
std::string keyOf(const Graph &G, const TrainingSetup &Setup) {
  std::string Key = llvm::formatv("{0}", llvm::json::Value(setupToJson(Setup))).str();
  for (const std::string &Name : Setup.TrainableNames)
    (Key += '\n') += Name;
  Key += "\ninputs";
  for (TensorId T : G.Inputs) {
    for (int64_t D : G.Tensors[T].Shape)
      (Key += ' ') += std::to_string(D);
    Key += ';';
  }
  Key += llvm::formatv("\n{0} nodes {1} tensors", G.Nodes.size(), G.Tensors.size()).str();
  return Key;
}
} // namespace

llvm::Expected<StepSimulation> SimulationCache::simulate(const Graph &G,
                                                         const TrainingSetup &Setup,
                                                         const ParameterCensus &Census) {
  std::string Key = keyOf(G, Setup);
  {
    std::lock_guard<std::mutex> Guard(Lock);
    if (auto It = Results.find(Key); It != Results.end()) {
      ++Hits;
      return It->second;
    }
  }
  // Simulated outside the lock: two threads asking the same step at once both simulate
  // it (the same result), which costs less than serialising every simulation.
  auto Sim = simulateStep(G, Setup, Census, /*Details=*/false);
  if (!Sim)
    return Sim.takeError();
  ++Simulations;
  std::lock_guard<std::mutex> Guard(Lock);
  Results.emplace(std::move(Key), *Sim);
  return Sim;
}

llvm::Expected<StepSimulation> simulateForPlanning(SimulationCache *Cache, const Graph &G,
                                                   const TrainingSetup &Setup,
                                                   const ParameterCensus &Census) {
  if (Cache)
    return Cache->simulate(G, Setup, Census);
  return simulateStep(G, Setup, Census, /*Details=*/false);
}

} // namespace trainmem
