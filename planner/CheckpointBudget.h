//===- CheckpointBudget.h - the least checkpointing that meets a memory budget -*- C++ -*-===//
//
// `--checkpoint=budget:SIZE`: among "checkpoint the first K repeated blocks" for every K,
// the smallest K whose full step simulation peaks within the budget. Every K is
// simulated (the peak need not fall monotonically with K), and recompute cost grows with
// K, so the smallest K that fits is the cheapest.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_CHECKPOINTBUDGET_H
#define TRAINMEM_PLANNER_CHECKPOINTBUDGET_H

#include "analyzer/Graph.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/Error.h"

namespace trainmem {

struct CheckpointChoice {
  std::string Mode;        ///< "none", "first:K" or "blocks"
  int64_t Blocks = 0;      ///< repeated blocks in the model
  int64_t Checkpointed = 0;
  int64_t Peak = 0;        ///< the figure compared with the budget
};

/// Resolves Setup.Checkpoint == "budget:SIZE". Errors: an unparsable size, a model without
/// repeated blocks, or a budget no setting meets (the message gives the best one).
llvm::Expected<CheckpointChoice> chooseCheckpointForBudget(const Graph &G,
                                                           const TrainingSetup &Setup,
                                                           const ParameterCensus &Census);

} // namespace trainmem

#endif
