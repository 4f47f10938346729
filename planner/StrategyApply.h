//===- StrategyApply.h - turn a setup's strategies into the graph to simulate -*- C++ -*-===//
//
// The one place where a TrainingSetup's graph-changing strategies are applied before the
// census and the simulation, so `analyze` and `plan` evaluate a strategy the same way:
// LoRA / QLoRA adapters (and the trainable set they imply), QLoRA's compute recipe, and
// the per-layer forms of --sparse-update (layers:/weights:/biases:REGEX).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_STRATEGYAPPLY_H
#define TRAINMEM_PLANNER_STRATEGYAPPLY_H

#include "analyzer/Graph.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/Error.h"

namespace trainmem {

/// Rewrites G and Setup for the setup's strategies. Errors: LoRA targets that match no
/// linear layer, a per-layer sparse update that matches no parameter.
llvm::Error applyStrategies(Graph &G, TrainingSetup &Setup);

} // namespace trainmem

#endif
