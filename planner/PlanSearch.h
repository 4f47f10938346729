//===- PlanSearch.h - ranked training plans for a target GPU ----------*- C++ -*-===//
//
// The planner tries combinations of strategies (precision recipe, 8-bit optimizer,
// activation checkpointing, LoRA, QLoRA, GaLore, ZeRO / FSDP over several GPUs,
// micro-batch with gradient accumulation) and evaluates every one with the full step
// simulation — never a formula on the side — then ranks the ones that fit.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_PLANSEARCH_H
#define TRAINMEM_PLANNER_PLANSEARCH_H

#include "analyzer/Graph.h"
#include "analyzer/TrainingSetup.h"
#include "planner/ConfigEmitters.h"
#include "planner/GpuCatalog.h"
#include "planner/SimulationCache.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

enum class PlanObjective { FitFastest, MaxTrainable, MaxBatch };
llvm::Expected<PlanObjective> parsePlanObjective(llvm::StringRef S);
const char *planObjectiveName(PlanObjective O);

/// What a plan gives up, coarsest first.
enum class Fidelity { Full, LowRankGradient, Adapter, Sparse };
const char *fidelityName(Fidelity F);

struct Plan {
  std::string Name;             ///< "QLoRA r=64 + checkpoint blocks"
  TrainingSetup Setup;          ///< the setup, micro-batch and accumulation included
  int64_t MicroBatch = 1;
  int64_t GradAccum = 1;
  int64_t Peak = 0;             ///< tensor-level peak per GPU
  int64_t Required = 0;         ///< what is compared with the budget (peak_reserved on CUDA)
  bool Fits = false;
  int64_t Headroom = 0;         ///< budget - required (negative when it does not fit)
  /// Estimated step time relative to a plain full fine-tune step without checkpointing
  /// on the same hardware (see the assumptions in PlanSearch.cpp).
  double Overhead = 1.0;
  Fidelity Fid = Fidelity::Full;
  int64_t TrainableParameters = 0;
  /// The largest micro-batch that fits with this strategy (0: none).
  int64_t MaxMicroBatch = 0;
  std::vector<std::string> Engines;
  /// Optimal checkpointing (the cheapest per-block choice that fits): its recompute and
  /// the forward's FLOPs, and in words what runs it; zero and empty otherwise.
  int64_t RecomputeFlops = 0;
  int64_t ForwardFlops = 0;
  std::string CheckpointRunsAs;
  /// A searched sparse update set (TinyEngine-style), in words; empty otherwise.
  std::string UpdateSet;
  /// Why the Hugging Face emitter refuses the plan when no engine runs it.
  std::string EngineRefusal;
  std::string Why;
  bool Pareto = false;          ///< on the front of required memory against overhead
};

/// A candidate the model cannot take: a strategy that does not apply to it (LoRA's
/// all-linear targets on a model whose only linear layer is its head, or that has none).
struct SkippedPlan {
  std::string Name; ///< the candidate, as a plan would be named
  std::string Why;  ///< what the strategy found wrong with the model
};

struct PlanRequest {
  /// Builds the model for one micro-batch size (the importer with dim 0 bound to N).
  /// searchPlans calls it once per micro-batch, one call at a time, from its threads.
  std::function<llvm::Expected<Graph>(int64_t MicroBatch)> Model;
  TrainingSetup Base;            ///< precision, optimizer, loss... the user chose
  GpuSpec Gpu;
  int64_t Budget = 0;            ///< bytes per GPU the plan may use (usable memory by default)
  int64_t GlobalBatch = 1;       ///< samples per optimizer step per GPU the user wants
  int64_t Gpus = 1;
  PlanObjective Objective = PlanObjective::FitFastest;
  /// The model as the engines load it. When set, a plan's engines are the config targets
  /// whose emitter accepts its final setup (renderConfigs succeeds), so `plan --emit`
  /// and the listed engines agree; otherwise each candidate's own list.
  std::optional<EmitContext> Emit;
  /// Simulations shared by the search's candidates and threads; searchPlans makes one
  /// when this is empty. A caller may pass one to read its counts afterwards, never one
  /// that served another model or request.
  std::shared_ptr<SimulationCache> Simulations;
  /// Where searchPlans lists the candidates the model cannot take, which are then left
  /// out of the ranking (plansToJson writes them as "not_applicable"); the search fails
  /// only when none applies. Unset, such a candidate fails the search.
  std::vector<SkippedPlan> *Skipped = nullptr;
};

/// Evaluates every candidate and returns them ranked: plans that fit first, ordered by
/// the objective, then the ones that do not, closest first.
llvm::Expected<std::vector<Plan>> searchPlans(const PlanRequest &Request);

llvm::json::Value plansToJson(const std::vector<Plan> &Plans, const PlanRequest &Request);

} // namespace trainmem

#endif
