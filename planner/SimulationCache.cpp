//===- SimulationCache.cpp - step simulations shared across a plan search ---------===//
#include "planner/SimulationCache.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem {

namespace {
/// What tells two graphs of one search apart: the shapes of their inputs and their size.
std::string graphKey(const Graph &G) {
  std::string Key = "inputs";
  for (TensorId T : G.Inputs) {
    for (int64_t D : G.Tensors[T].Shape)
      (Key += ' ') += std::to_string(D);
    Key += ';';
  }
  Key += llvm::formatv("\n{0} nodes {1} tensors", G.Nodes.size(), G.Tensors.size()).str();
  return Key;
}

/// Everything besides the model that decides a simulation: the setup (setupToJson has
/// every field a `--setup` file can carry; the trained names are added, since a resolved
/// update set is a list of names) and the graph.
std::string keyOf(const Graph &G, const TrainingSetup &Setup) {
  std::string Key = llvm::formatv("{0}", llvm::json::Value(setupToJson(Setup))).str();
  for (const std::string &Name : Setup.TrainableNames)
    (Key += '\n') += Name;
  return Key + '\n' + graphKey(G);
}
} // namespace

llvm::Expected<std::shared_ptr<const PreparedModel>>
SimulationCache::prepared(const std::string &Key,
                          llvm::function_ref<llvm::Expected<PreparedModel>()> Build) {
  return keepShared(Prepared, Key, Build);
}

void SimulationCache::setModel(std::function<llvm::Expected<Graph>(int64_t)> Fn) {
  Import = std::move(Fn);
}

llvm::Expected<std::shared_ptr<const Graph>> SimulationCache::model(int64_t MicroBatch) {
  if (!Import)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the plan search's cache was given no model to import");
  return graph("model, micro-batch " + std::to_string(MicroBatch), [&] {
    std::lock_guard<std::mutex> Guard(ImportLock);
    return Import(MicroBatch);
  });
}

llvm::Expected<std::shared_ptr<const Graph>>
SimulationCache::graph(const std::string &Key, llvm::function_ref<llvm::Expected<Graph>()> Build) {
  return keepShared(Graphs, Key, Build);
}

llvm::Expected<std::shared_ptr<const ParameterCensus>>
SimulationCache::census(const Graph &G, const TrainingSetup &Setup) {
  llvm::json::Object S = setupToJson(Setup);
  S.erase("micro_batch");
  S.erase("grad_accum");
  std::string Key = llvm::formatv("{0}", llvm::json::Value(std::move(S))).str();
  for (const std::string &Name : Setup.TrainableNames)
    (Key += '\n') += Name;
  // Written through a stream: a formatv per stored tensor was most of the census's
  // cost to the search (every probe asks for it).
  llvm::raw_string_ostream OS(Key);
  OS << '\n' << G.Nodes.size() << " nodes " << G.Tensors.size() << " tensors";
  for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T) {
    const Tensor &X = G.Tensors[T];
    if (!X.Stored)
      continue;
    OS << '\n' << T << ' ' << static_cast<int>(X.Type) << ':';
    for (int64_t D : X.Shape)
      OS << ' ' << D;
  }
  OS.flush();
  return keepShared(Censuses, Key, [&] { return takeCensus(G, Setup); });
}

std::shared_ptr<const StepStructure> SimulationCache::structureFor(const Graph &G,
                                                                   const TrainingSetup &Setup) {
  // The structure does not depend on the micro-batch: a search's graphs of one LoRA
  // transform differ only in their batch dims, and the ops, module holds and block spans
  // read no dims except in one test, whether a tensor is a single element (attention's
  // scale), which is part of the key. So every micro-batch shares one structure.
  const bool Fuse = fusesAttention(G, Setup);
  std::string Key = llvm::formatv("{0} nodes {1} tensors", G.Nodes.size(), G.Tensors.size()).str();
  Key += Fuse ? "\nfused" : "\nunfused";
  if (Fuse) {
    Key += "\nsingle-element";
    for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T)
      if (!G.Tensors[T].Stored && G.Tensors[T].numElements() <= 1)
        (Key += ' ') += std::to_string(T);
  }
  if (Setup.Lora) {
    // The targets and dropout decide which nodes the adapters add; their rank, scaling
    // and the base weights' quantization change dims, constants and storage, none of
    // which the structure reads: LoRA r=16, r=64 and QLoRA of one target list share one.
    Key += "\nlora targets";
    for (const std::string &Target : Setup.Lora->Targets)
      (Key += ' ') += Target;
    Key += Setup.Lora->Dropout > 0 ? " with dropout" : " without dropout";
  }
  return llvm::cantFail(once(Structures, std::move(Key), [&]() {
    return llvm::Expected<std::shared_ptr<const StepStructure>>(buildStepStructure(G, Fuse));
  }));
}

llvm::Expected<StepSimulation> SimulationCache::simulate(const Graph &G,
                                                         const TrainingSetup &Setup,
                                                         const ParameterCensus &Census,
                                                         StepStop Stop) {
  std::string Key = keyOf(G, Setup);
  auto Replay = [&](StepStop When) {
    auto Fresh = simulateStep(G, Setup, Census, /*Details=*/false, structureFor(G, Setup), When);
    if (Fresh) {
      ++Simulations;
      if (Fresh->stopped())
        ++Stopped;
    }
    return Fresh;
  };
  bool Hit = false;
  llvm::Expected<StepSimulation> Sim = StepSimulation();
  if (!Stop.any()) {
    Sim = once(Results, std::move(Key), [&] { return Replay({}); }, &Hit);
  } else {
    // A probe: the whole step's result answers it when there is one; else a replay that
    // may stop, kept under what it was asked (a whole one is kept for every request too).
    {
      std::lock_guard<std::mutex> Guard(Lock);
      if (auto It = Results.find(Key); It != Results.end()) {
        ++Hits;
        return It->second;
      }
    }
    std::string ProbeKey = Key;
    if (Stop.Above)
      ProbeKey += "\nstop above " + std::to_string(*Stop.Above);
    if (Stop.AfterForward)
      ProbeKey += "\nstop after the forward";
    Sim = once(
        Probes, std::move(ProbeKey),
        [&] {
          auto Fresh = Replay(Stop);
          if (Fresh && !Fresh->stopped()) {
            std::lock_guard<std::mutex> Guard(Lock);
            Results.emplace(std::move(Key), *Fresh);
          }
          return Fresh;
        },
        &Hit);
  }
  if (Hit)
    ++Hits;
  return Sim;
}

llvm::Expected<StepSimulation> simulateForPlanning(SimulationCache *Cache, const Graph &G,
                                                   const TrainingSetup &Setup,
                                                   const ParameterCensus &Census,
                                                   StepStop Stop) {
  if (Cache)
    return Cache->simulate(G, Setup, Census, Stop);
  return simulateStep(G, Setup, Census, /*Details=*/false, nullptr, Stop);
}

} // namespace trainmem
