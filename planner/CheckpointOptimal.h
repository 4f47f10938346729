//===- CheckpointOptimal.h - least recompute that meets a memory budget -*- C++ -*-===//
//
// `--checkpoint=optimal:SIZE`: for every repeated block, keep it, checkpoint it
// selectively (matmul outputs kept, the rest recomputed) or checkpoint it whole, so that
// the recompute FLOPs are the least among the choices whose saved activations fit the
// budget. Each block's saving comes from the full step simulation, its recompute cost
// from its ops' shapes; an exact dynamic programme (a multiple-choice covering knapsack)
// chooses, and the full simulation verifies the choice, tightening and solving again
// until the simulated step fits.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_CHECKPOINTOPTIMAL_H
#define TRAINMEM_PLANNER_CHECKPOINTOPTIMAL_H

#include "analyzer/Graph.h"
#include "analyzer/OpMemoryRules.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/TrainingSetup.h"
#include "planner/SimulationCache.h"

#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace trainmem {

enum class BlockCheckpoint : uint8_t { Keep, Selective, Full };

/// One repeated block as the solver sees it.
struct CheckpointCandidate {
  std::string Block;           ///< "model.layers.3"
  int64_t SelectiveSaving = 0; ///< saved bytes freed by the selective policy (simulated)
  int64_t FullSaving = 0;      ///< saved bytes freed by checkpointing the whole block
  int64_t SelectiveFlops = 0;  ///< recompute: the block's ops other than matmuls
  int64_t FullFlops = 0;       ///< recompute: the block's whole forward
  /// Saved bytes of the block without checkpointing (what its backward has live again
  /// when it is recomputed); used by the backward constraints.
  int64_t KeepBytes = 0;
};

struct KnapsackSolution {
  bool Feasible = false;
  std::vector<BlockCheckpoint> Choice; ///< one per candidate
  int64_t Flops = 0;                   ///< recompute FLOPs of the choice
  int64_t Saving = 0;                  ///< bytes freed (exact, not bucketed)
};

/// The least-recompute choice whose saving is at least RequiredSaving. With
/// BackwardConstraints the requirement must also hold while each block's backward runs:
/// block b's activations are live again then (kept, or recomputed), the blocks after it
/// are freed, so only the savings of the blocks before it count:
///   sum over j < b of saving_j >= RequiredSaving - sum over j > b of KeepBytes_j.
/// (Chen et al. 2016's chain schedule as a covering DP: checkpointing the last block
/// frees nothing when its backward starts.) Exact over savings in whole buckets of
/// Granularity bytes (savings, requirement and thresholds rounded to the nearest
/// bucket; with Granularity 1, exact in bytes). Ties in FLOPs go to the choice that
/// checkpoints earlier blocks. O(blocks x buckets x 3).
KnapsackSolution solveCheckpointKnapsack(const std::vector<CheckpointCandidate> &Blocks,
                                         int64_t RequiredSaving, int64_t Granularity,
                                         bool BackwardConstraints = false);

/// Forward FLOPs of one op from its shapes: 2*M*N*K for matmuls and linears, 2 x output
/// x (input channels / groups x kernel) for convolutions, both products and ~5 per score
/// for fused attention, and one per element for everything else.
int64_t forwardFlops(const Graph &G, const SimOp &Op);

struct OptimalCheckpoint {
  std::string Mode;                 ///< the resolved --checkpoint value
  BlockCheckpointSelection Selection;
  int64_t Blocks = 0;               ///< repeated blocks in the model
  int64_t RecomputeFlops = 0;
  int64_t ForwardFlops = 0;         ///< the whole model's forward, for scale
  int64_t BlockFlops = 0;           ///< the repeated blocks' forward: all of them whole
  int64_t Required = 0;             ///< simulated figure compared with the budget
  int64_t Budget = 0;
  int64_t Granularity = 0;          ///< bytes per DP bucket
  int Solves = 0;                   ///< DP solutions verified by simulation
  int Simulations = 0;              ///< full step simulations, measurements included
};

/// Resolves Setup.Checkpoint == "optimal:SIZE" (or Budget when given, whatever
/// Setup.Checkpoint says). Errors: an unparsable size, a model without repeated blocks,
/// or a budget no choice meets (the message gives the least memory any choice reached).
llvm::Expected<OptimalCheckpoint>
chooseOptimalCheckpoint(const Graph &G, const TrainingSetup &Setup,
                        const ParameterCensus &Census,
                        std::optional<int64_t> Budget = std::nullopt,
                        SimulationCache *Cache = nullptr);

/// "3.42 TFLOP": floating-point operations with a decimal prefix.
std::string formatFlops(int64_t Flops);

/// Which engines can run a checkpoint mode, in words, for plans and notes.
std::string checkpointEngines(llvm::StringRef Mode);

} // namespace trainmem

#endif
