//===- CheckpointBudget.cpp - the least checkpointing that meets a memory budget -----===//
#include "planner/CheckpointBudget.h"

#include "analyzer/StepSimulator.h"
#include "analyzer/Units.h"


namespace trainmem {

llvm::Expected<CheckpointChoice> chooseCheckpointForBudget(const Graph &G,
                                                           const TrainingSetup &Setup,
                                                           const ParameterCensus &Census) {
  llvm::StringRef Spec(Setup.Checkpoint);
  if (!Spec.consume_front("budget:"))
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "not a budget checkpoint");
  auto Budget = parseBytes(Spec);
  if (!Budget)
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "--checkpoint=budget:%s: %s",
                                   Spec.str().c_str(), llvm::toString(Budget.takeError()).c_str());
  std::vector<std::string> Blocks = repeatedBlocks(G);
  if (Blocks.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--checkpoint=budget: the model has no repeated blocks "
                                   "(layer paths such as h.3 or layers.12) to checkpoint");
  CheckpointChoice Best;
  Best.Blocks = static_cast<int64_t>(Blocks.size());
  Best.Peak = INT64_MAX;
  for (int64_t K = 0; K <= Best.Blocks; ++K) {
    TrainingSetup S = Setup;
    S.Checkpoint = K == 0 ? "none" : K == Best.Blocks ? "blocks" : "first:" + std::to_string(K);
    auto Sim = simulateStep(G, S, Census, /*Details=*/false);
    if (!Sim)
      return Sim.takeError();
    int64_t Need = Sim->PeakReserved.value_or(Sim->Peak);
    if (Need < Best.Peak) {
      Best.Peak = Need;
      Best.Mode = S.Checkpoint;
      Best.Checkpointed = K;
    }
    if (Need <= *Budget) {
      Best.Peak = Need;
      Best.Mode = S.Checkpoint;
      Best.Checkpointed = K;
      return Best;
    }
  }
  return llvm::createStringError(
      llvm::inconvertibleErrorCode(),
      "--checkpoint=budget:%s: no checkpointing of the %lld blocks meets %s; the least memory "
      "is %s with %s",
      Spec.str().c_str(), static_cast<long long>(Best.Blocks), formatBytes(*Budget).c_str(),
      formatBytes(Best.Peak).c_str(), Best.Mode.c_str());
}

} // namespace trainmem
