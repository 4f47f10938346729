//===- StepPrediction.h - a setup applied to a graph, simulated, reported -*- C++ -*-===//
//
// The one path from an imported graph and a training setup to the report every front
// end shows: strategies applied, census taken, the target GPU resolved, a checkpoint
// budget turned into a block count, the step simulated, the GPU verdict attached. The CLI
// (`analyze`, `report`, `compare`) and the GUI call it; neither repeats it.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_STEPPREDICTION_H
#define TRAINMEM_PLANNER_STEPPREDICTION_H

#include "analyzer/Graph.h"
#include "analyzer/MemoryReport.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/Error.h"

namespace trainmem {

/// Predicts one training step of G under Setup. Setup is updated to what ran (the GPU's
/// canonical name, the checkpoint mode a budget resolved to). G is consumed.
llvm::Expected<MemoryReport> predictStepReport(Graph G, TrainingSetup &Setup);

/// For a report of an unpadded Hugging Face step: simulates Padded (the same config
/// imported with ImportOptions::PaddedBatches) under the report's resolved setup, figures
/// only, and adds a `padding` note to the report when padded batches would raise its
/// peak_reserved (else peak) by at least 0.5%, saying by how much and that `--padded`
/// models them. Leaves the report alone when padding changes little. Padded is consumed.
llvm::Error notePaddingEffect(Graph Padded, MemoryReport &Report);

} // namespace trainmem

#endif
