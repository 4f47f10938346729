//===- SparseUpdateSearch.h - per-layer update sets and their budget search -*- C++ -*-===//
//
// The forms of `--sparse-update` that choose parameters layer by layer:
//   layers:REGEX   every parameter of the layers whose path matches
//   weights:REGEX  their weights (parameters of two or more dims) only
//   biases:REGEX   their biases and normalisation scales (one-dim parameters) only
//   budget:SIZE    the update set searched to fit SIZE, TinyEngine-style
// Each resolves to a list of parameter names that the census trains (the setup's
// TrainableNames), so the step simulation evaluates it like any other selection.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_SPARSEUPDATESEARCH_H
#define TRAINMEM_PLANNER_SPARSEUPDATESEARCH_H

#include "analyzer/Graph.h"
#include "analyzer/TrainingSetup.h"
#include "planner/SimulationCache.h"

#include "llvm/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace trainmem {

struct SparseSelection {
  std::vector<std::string> Names;   ///< one tensor name per chosen parameter
  std::vector<std::string> ChosenBiases;  ///< "h.11.mlp.c_fc.bias", in the order chosen
  std::vector<std::string> ChosenWeights; ///< "h.11.mlp.c_fc.weight", in the order chosen
  /// Share of the graph's nodes from the earliest updated parameter's first use to the
  /// end: how deep back-propagation must go (1: the whole model).
  double BackwardDepth = 0;
  int64_t Biases = 0;               ///< one-dim parameters chosen (biases, norm scales)
  int64_t Weights = 0;              ///< parameters of two or more dims chosen
  int64_t Candidates = 0;           ///< parameters the search could choose from
  int64_t TrainableParameters = 0;  ///< elements
  int64_t Required = 0;             ///< budget search: the simulated figure of the set
  int64_t Budget = 0;
  int Simulations = 0;
  /// "20 of 148 parameters (16 biases or norm scales, back to h.9.ln_1.bias; 4 weights:
  /// h.11.mlp.c_proj.weight, ...; 1.18 M elements)"
  std::string summary() const;
};

/// True for the forms this file resolves (layers:, weights:, biases:, budget:).
bool isPlannerSparseUpdate(llvm::StringRef Spec);

/// Resolves layers:/weights:/biases:REGEX against the model's parameters. Errors: an
/// invalid expression, or one that matches no parameter (the message lists layer paths).
llvm::Expected<SparseSelection> selectSparseLayers(const Graph &G, const TrainingSetup &Setup);

/// The TinyEngine-style search for `budget:SIZE` (or Budget when given): which
/// parameters to update so that the full simulated step fits, preferring what "On-Device
/// Training Under 256KB Memory" (Lin et al., NeurIPS 2022, section 3.2) found gives the
/// most accuracy per byte: biases (and norm scales) before weights, since a bias
/// gradient needs no saved input, and later layers before earlier ones, since they
/// contribute more and back-propagation stops at the earliest updated layer. The
/// candidates are ordered by that rule; for each class (one-dim, then the rest) the
/// longest prefix that fits is found by bisection, then the remaining candidates are
/// tried greedily in order, each kept if the simulated step still fits. A candidate is
/// skipped without simulation when a candidate no larger and no earlier already failed
/// (memory grows with the set, its parameters and the depth of back-propagation).
/// Simulations: O(log n) for the prefixes plus one per candidate tried after them.
/// Errors: an unparsable size, or a budget that not even the cheapest candidate meets.
llvm::Expected<SparseSelection> searchSparseUpdate(const Graph &G, const TrainingSetup &Setup,
                                                   std::optional<int64_t> Budget = std::nullopt,
                                                   SimulationCache *Cache = nullptr);

/// Makes Setup train the selection (on top of what it already lists).
void applySparseSelection(const SparseSelection &Sel, TrainingSetup &Setup);

} // namespace trainmem

#endif
