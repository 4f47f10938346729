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
/// The same as applyGraphStrategies followed by applySetupStrategies.
llvm::Error applyStrategies(Graph &G, TrainingSetup &Setup);

/// The graph's part: G with LoRA's adapters (and QLoRA's note on its compute recipe), or
/// a copy of G when the setup changes no graph. It depends on the graph, Setup.Lora and
/// whether Setup.Prec is fp32, nothing else, so a search shares it among candidates that
/// differ otherwise (graphStrategyKey).
llvm::Expected<Graph> applyGraphStrategies(const Graph &G, const TrainingSetup &Setup);
/// What applyGraphStrategies' result depends on besides the graph; "" when it changes
/// nothing.
std::string graphStrategyKey(const TrainingSetup &Setup);
/// The setup's part, on a graph applyGraphStrategies already transformed: the adapters
/// as the trainable set, QLoRA's compute recipe, per-layer sparse updates.
llvm::Error applySetupStrategies(const Graph &G, TrainingSetup &Setup);

} // namespace trainmem

#endif
