//===- PlanSearch.cpp - ranked training plans for a target GPU -------------------===//
//
// Candidates are typed setups; each is evaluated by importing the model for a
// micro-batch, applying the strategies and simulating the step. For every candidate the
// largest micro-batch that fits is found by doubling then bisection, and the global
// batch is reached with gradient accumulation.
//
// Step-time estimates are relative to a plain full fine-tune step (forward = 1 unit,
// backward = 2 units) and are rough by design; they only order plans:
//   activation checkpointing recomputes the forward (+1 unit: x4/3);
//   LoRA/QLoRA skip the base weights' gradients (backward 2 -> 1 unit: x2/3), QLoRA's
//   4-bit dequantization adds about 30% to its matmuls;
//   GaLore adds its projections and an SVD every update gap (about +5%);
//   ZeRO-3 / FSDP all-gather parameters in forward and backward (+10%), optimizer
//   offload runs the step on the CPU (+30%), parameter offload streams weights (+80%);
//   a sparse update of the last K of N blocks back-propagates through K blocks only, a
//   searched update set as deep as its earliest parameter;
//   optimal checkpointing recomputes its choice's FLOPs (x (1 + recompute / (3 x the
//   blocks' forward))).
//
//===----------------------------------------------------------------------------===//
#include "planner/PlanSearch.h"
#include "planner/CheckpointOptimal.h"
#include "planner/SparseUpdateSearch.h"
#include "planner/StrategyApply.h"

#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "analyzer/Units.h"

#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/Threading.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>

namespace trainmem {

llvm::Expected<PlanObjective> parsePlanObjective(llvm::StringRef S) {
  if (S == "fit-fastest")
    return PlanObjective::FitFastest;
  if (S == "max-trainable")
    return PlanObjective::MaxTrainable;
  if (S == "max-batch")
    return PlanObjective::MaxBatch;
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "--objective: '%s' is not one of fit-fastest, max-trainable, "
                                 "max-batch",
                                 S.str().c_str());
}

const char *planObjectiveName(PlanObjective O) {
  switch (O) {
  case PlanObjective::FitFastest: return "fit-fastest";
  case PlanObjective::MaxTrainable: return "max-trainable";
  case PlanObjective::MaxBatch: return "max-batch";
  }
  return "fit-fastest";
}

const char *fidelityName(Fidelity F) {
  switch (F) {
  case Fidelity::Full: return "full";
  case Fidelity::LowRankGradient: return "low-rank gradient";
  case Fidelity::Adapter: return "adapter";
  case Fidelity::Sparse: return "sparse";
  }
  return "full";
}

namespace {

struct Candidate {
  std::string Name;
  TrainingSetup Setup;
  Fidelity Fid = Fidelity::Full;
  double Overhead = 1.0;
  std::vector<std::string> Engines;
  int64_t RecomputeFlops = 0, ForwardFlops = 0;
  std::string CheckpointRunsAs, UpdateSet;
};


std::vector<Candidate> candidates(const PlanRequest &R) {
  bool Bf16 = R.Gpu.supports(MathPrecision::BF16);
  Precision Amp = Bf16 ? Precision::AmpBf16 : Precision::AmpFp16;
  Precision Mixed = Bf16 ? Precision::MixedBf16 : Precision::MixedFp16;
  std::vector<Candidate> Out;
  auto Add = [&](std::string Name, auto Configure, Fidelity F, double Overhead,
                 std::vector<std::string> Engines) {
    for (bool Ckpt : {false, true}) {
      Candidate C;
      C.Setup = R.Base;
      C.Setup.Gpu = R.Gpu.Name;
      C.Setup.Sharding.Gpus = R.Gpus;
      Configure(C.Setup);
      C.Setup.Checkpoint = Ckpt ? "blocks" : "none";
      C.Name = Name + (Ckpt ? " + checkpoint blocks" : "");
      C.Fid = F;
      C.Overhead = Overhead * (Ckpt ? 4.0 / 3.0 : 1.0);
      C.Engines = Engines;
      Out.push_back(std::move(C));
    }
  };
  Add(std::string("full, ") + precisionName(Amp) + ", AdamW (fused)",
      [&](TrainingSetup &S) {
        S.Prec = Amp;
        S.Optimizer = OptimizerKind::AdamW;
        S.Impl = OptimizerImpl::Fused;
      },
      Fidelity::Full, 1.0, {"hf"});
  Add(std::string("full, ") + precisionName(Amp) + ", 8-bit AdamW",
      [&](TrainingSetup &S) {
        S.Prec = Amp;
        S.Optimizer = OptimizerKind::AdamW8bit;
      },
      Fidelity::Full, 1.0, {"hf"});
  if (Bf16) {
    Add("full, pure bf16, AdamW (fused)",
        [](TrainingSetup &S) {
          S.Prec = Precision::Bf16;
          S.Optimizer = OptimizerKind::AdamW;
          S.Impl = OptimizerImpl::Fused;
        },
        Fidelity::Full, 1.0, {"torchtune", "hf"});
    Add("GaLore r=128 layer-wise, 8-bit, pure bf16",
        [](TrainingSetup &S) {
          S.Prec = Precision::Bf16;
          S.Optimizer = OptimizerKind::AdamW8bit;
          S.Galore = GaloreSetup{};
          S.Galore->Rank = 128;
          S.Galore->PerLayer = true;
        },
        Fidelity::LowRankGradient, 1.05, {"hf"});
  }
  // LoRA r=16 and r=64 on every linear layer, the base in Base's precision: fp32 under
  // autocast, or loaded in bf16 (torch_dtype=torch.bfloat16), as most PEFT recipes load it,
  // the adapters kept in fp32 by PEFT (autocast_adapter_dtype); measured: the bf16 + LoRA
  // cases of tests/data/measured-hf.
  auto AddLora = [&](Precision Base, const std::string &BaseName) {
    for (int64_t Rank : {16, 64})
      Add("LoRA r=" + std::to_string(Rank) + " (all linear), " + BaseName,
          [Base, Rank](TrainingSetup &S) {
            S.Prec = Base;
            S.Optimizer = OptimizerKind::AdamW;
            S.Impl = OptimizerImpl::Fused;
            S.Lora = LoraSetup{};
            S.Lora->Rank = Rank;
            S.Lora->Alpha = 2.0 * static_cast<double>(Rank);
            S.Lora->Targets = {"all-linear"};
          },
          Fidelity::Adapter, 2.0 / 3.0, {"hf"});
  };
  AddLora(Amp, precisionName(Amp));
  if (Bf16)
    AddLora(Precision::Bf16, "bf16 base");
  if (Bf16)
    Add("QLoRA r=64 (all linear), NF4 base",
        [](TrainingSetup &S) {
          S.Prec = Precision::AmpBf16;
          S.Optimizer = OptimizerKind::PagedAdamW8bit;
          S.Lora = LoraSetup{};
          S.Lora->Rank = 64;
          S.Lora->Alpha = 16;
          S.Lora->Targets = {"all-linear"};
          S.Lora->QLora = true;
        },
        Fidelity::Adapter, 2.0 / 3.0 * 1.3, {"hf"});
  if (R.Gpus > 1) {
    for (int Stage : {2, 3})
      Add("ZeRO-" + std::to_string(Stage) + ", " + precisionName(Mixed) + ", AdamW",
          [&, Stage](TrainingSetup &S) {
            S.Prec = Mixed;
            S.Optimizer = OptimizerKind::AdamW;
            S.Sharding.ZeroStage = Stage;
          },
          Fidelity::Full, Stage == 3 ? 1.1 : 1.0, {"deepspeed", "hf"});
    Add(std::string("ZeRO-3 + optimizer offload, ") + precisionName(Mixed),
        [&](TrainingSetup &S) {
          S.Prec = Mixed;
          S.Optimizer = OptimizerKind::AdamW;
          S.Sharding.ZeroStage = 3;
          S.Sharding.Offload = OffloadKind::Optimizer;
        },
        Fidelity::Full, 1.1 * 1.3, {"deepspeed", "hf"});
    Add(std::string("FSDP full shard, ") + precisionName(Amp),
        [&](TrainingSetup &S) {
          S.Prec = Amp;
          S.Optimizer = OptimizerKind::AdamW;
          S.Sharding.ZeroStage = 3;
          S.Sharding.Fsdp = true;
        },
        Fidelity::Full, 1.1, {"accelerate-fsdp"});
  }
  return Out;
}

struct Evaluation {
  int64_t Peak = 0, Required = 0, Trainable = 0;
  bool Ok = false;
  /// A probe's replay stopped once the step needed more than the budget: it does not
  /// fit, and Peak and Required are lower bounds.
  bool Stopped = false;
  std::string Error;
  /// The error is a strategy that does not apply to this model (StrategyNotApplicable).
  bool NotApplicable = false;
};

/// A candidate's strategy cannot be set up on this model (prepare() failed in
/// applyGraphStrategies or applySetupStrategies, not in importing the model): the search
/// lists the candidate as skipped where the caller asked for that.
class StrategyNotApplicable : public llvm::ErrorInfo<StrategyNotApplicable> {
public:
  static char ID;
  explicit StrategyNotApplicable(std::string Why) : Why(std::move(Why)) {}
  void log(llvm::raw_ostream &OS) const override { OS << Why; }
  std::error_code convertToErrorCode() const override { return llvm::inconvertibleErrorCode(); }
  const std::string &why() const { return Why; }

private:
  std::string Why;
};
char StrategyNotApplicable::ID = 0;

/// The error a search fails with for one candidate: its name, then why.
llvm::Error planError(const std::string &Name, const std::string &Why) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "plan '%s': %s", Name.c_str(),
                                 Why.c_str());
}

llvm::Error notApplicable(llvm::Error E) {
  return llvm::make_error<StrategyNotApplicable>(llvm::toString(std::move(E)));
}

/// Accumulation steps that reach the requested batch with MicroBatch samples per step.
int64_t accumulationFor(const PlanRequest &R, int64_t MicroBatch) {
  if (R.Objective == PlanObjective::MaxBatch)
    return 1;
  int64_t Target = std::max<int64_t>(R.GlobalBatch, 1);
  return (Target + MicroBatch - 1) / MicroBatch;
}

/// The graph and setup a candidate is simulated with at a micro-batch: the model for
/// that micro-batch, the strategies applied. The graph is shared (read-only) with every
/// candidate of the same graph strategies through the search's cache.
struct Prepared {
  std::shared_ptr<const Graph> G;
  TrainingSetup Setup;
};

/// A graph through the search's cache when there is one, else built here.
llvm::Expected<std::shared_ptr<const Graph>>
sharedGraph(const PlanRequest &R, const std::string &Key,
            llvm::function_ref<llvm::Expected<Graph>()> Build) {
  if (R.Simulations)
    return R.Simulations->graph(Key, Build);
  auto G = Build();
  if (!G)
    return G.takeError();
  return std::make_shared<const Graph>(std::move(*G));
}

llvm::Expected<Prepared> prepare(const PlanRequest &R, const Candidate &C, int64_t MicroBatch) {
  Prepared P{nullptr, C.Setup};
  P.Setup.MicroBatch = MicroBatch;
  P.Setup.GradAccum = accumulationFor(R, MicroBatch);
  auto Model = R.Simulations ? R.Simulations->model(MicroBatch)
                             : sharedGraph(R, "", [&] { return R.Model(MicroBatch); });
  if (!Model)
    return Model.takeError();
  P.G = *Model;
  if (std::string Key = graphStrategyKey(P.Setup); !Key.empty()) {
    auto Adapted = sharedGraph(R, Key + "\nmicro-batch " + std::to_string(MicroBatch),
                               [&] { return applyGraphStrategies(**Model, P.Setup); });
    if (!Adapted)
      return notApplicable(Adapted.takeError());
    P.G = *Adapted;
  }
  if (auto Err = applySetupStrategies(*P.G, P.Setup))
    return notApplicable(std::move(Err));
  return P;
}

/// prepare() and the census, shared through the search's cache by every probe of a
/// candidate at a micro-batch whatever its checkpointing (which changes neither).
llvm::Expected<std::shared_ptr<const PreparedModel>>
preparedModel(const PlanRequest &R, const Candidate &C, int64_t MicroBatch) {
  Candidate Unwrapped = C; // kept with checkpointing off; each probe sets its own
  Unwrapped.Setup.Checkpoint = "none";
  auto Build = [&]() -> llvm::Expected<PreparedModel> {
    auto P = prepare(R, Unwrapped, MicroBatch);
    if (!P)
      return P.takeError();
    std::shared_ptr<const ParameterCensus> Census;
    if (R.Simulations) {
      auto Shared = R.Simulations->census(*P->G, P->Setup);
      if (!Shared)
        return Shared.takeError();
      Census = std::move(*Shared);
    } else {
      auto Own = takeCensus(*P->G, P->Setup);
      if (!Own)
        return Own.takeError();
      Census = std::make_shared<const ParameterCensus>(std::move(*Own));
    }
    return PreparedModel{std::move(P->G), std::move(P->Setup), std::move(Census)};
  };
  if (!R.Simulations) {
    auto Built = Build();
    if (!Built)
      return Built.takeError();
    return std::make_shared<const PreparedModel>(std::move(*Built));
  }
  std::string Key = llvm::formatv("{0}\nmicro-batch {1}",
                                  llvm::json::Value(setupToJson(Unwrapped.Setup)), MicroBatch)
                        .str();
  for (const std::string &Name : Unwrapped.Setup.TrainableNames)
    (Key += '\n') += Name;
  return R.Simulations->prepared(Key, Build);
}

/// The candidate's step at a micro-batch. A probe (Probe: only whether it fits the
/// budget matters) stops replaying once the step needs more than the budget: half of a
/// sweep's probes miss it, most of them in their forward or at their weights.
Evaluation evaluate(const PlanRequest &R, const Candidate &C, int64_t MicroBatch,
                    bool Probe = false) {
  Evaluation E;
  auto P = preparedModel(R, C, MicroBatch);
  if (!P) {
    llvm::handleAllErrors(
        P.takeError(),
        [&](const StrategyNotApplicable &N) {
          E.Error = N.why();
          E.NotApplicable = true;
        },
        [&](const llvm::ErrorInfoBase &B) { E.Error = B.message(); });
    return E;
  }
  const PreparedModel &M = **P;
  TrainingSetup S = M.Setup;
  S.Checkpoint = C.Setup.Checkpoint;
  auto Sim = simulateForPlanning(R.Simulations.get(), *M.G, S, *M.Census,
                                 Probe ? StepStop{R.Budget} : StepStop{});
  if (!Sim) {
    E.Error = llvm::toString(Sim.takeError());
    return E;
  }
  E.Stopped = Sim->StoppedAbove.has_value();
  E.Peak = Sim->Peak;
  E.Required = Sim->PeakReserved.value_or(Sim->Peak);
  E.Trainable = M.Census->TrainableParameters;
  E.Ok = true;
  return E;
}

/// Sparse update, TinyEngine-style: search the update set that fits the budget. The set
/// grows from the output backwards in whole repeated blocks (training block i needs the
/// saved activations of every block after it anyway, so sets that skip blocks save
/// little), plus BitFit's biases. Training the last K of N blocks holds activations,
/// gradients and optimizer states for those K only, so memory grows with K: the largest
/// K that fits is found by bisection, each probe one simulated step, at the requested
/// micro-batch or, when even one block does not fit there, the largest smaller power of
/// two that lets one fit. Step time: forward (1 unit) plus backward through K of N blocks
/// (2K/N units) of a full step's 3; BitFit still back-propagates through every block but
/// computes no weight gradients (2/3, as LoRA). No engine config selects an update set
/// (the script sets requires_grad), so these plans list no engine.
/// What the search needs to know about the model's structure: its repeated blocks (by
/// layer path, as --sparse-update and --checkpoint count them) and whether it has biases.
struct ModelShape {
  int64_t Blocks = 0;
  bool HasBias = false;
};

llvm::Expected<ModelShape> modelShape(const PlanRequest &R) {
  // The search's own graph of micro-batch 1, shared (R.Model hands out copies).
  auto Shared = R.Simulations->model(1);
  if (!Shared)
    return Shared.takeError();
  const Graph &G = **Shared;
  auto Census = takeCensus(G, R.Base);
  if (!Census)
    return Census.takeError();
  ModelShape Shape;
  for (const CensusParameter &P : Census->Parameters)
    Shape.HasBias |= llvm::StringRef(P.Name).endswith("bias") && P.Shape.size() == 1;
  Shape.Blocks = static_cast<int64_t>(repeatedBlocks(G).size());
  return Shape;
}

/// Optimal activation checkpointing: for a candidate that misses the budget at the
/// requested micro-batch without checkpointing but meets it with every block
/// checkpointed, the per-block choice (keep, selective, whole) with the least recompute
/// FLOPs that meets it (planner/CheckpointOptimal: an exact DP verified by the full
/// simulation). Step time: x (1 + recompute FLOPs / (3 x the blocks' forward FLOPs)),
/// which is x 4/3 for every block whole, as the "+ checkpoint blocks" candidates count.
/// C with the cheapest per-block checkpointing that fits (chooseOptimalCheckpoint), when
/// C fits only with some checkpointing and the choice is neither none nor every block
/// (the candidates with and without "+ checkpoint blocks" cover those).
std::optional<Candidate> optimalCheckpointCandidate(const PlanRequest &R,
                                                    const ModelShape &Shape,
                                                    const Candidate &C) {
  if (Shape.Blocks < 2 || R.Objective == PlanObjective::MaxBatch)
    return std::nullopt;
  const int64_t M = std::max<int64_t>(R.GlobalBatch, 1);
  // "none" replayed whole: when it misses, chooseOptimalCheckpoint starts from its
  // figures (a probe that stopped would be replayed again there).
  auto Fits = [&](const std::string &Mode) {
    Candidate Probe = C;
    Probe.Setup.Checkpoint = Mode;
    Evaluation E = evaluate(R, Probe, M, /*Probe=*/Mode != "none");
    return E.Ok && E.Required <= R.Budget;
  };
  if (C.Setup.Checkpoint != "none" || C.Fid == Fidelity::Sparse)
    return std::nullopt;
  if (Fits("none") || !Fits("blocks"))
    return std::nullopt;
  auto P = preparedModel(R, C, M);
  if (!P) {
    llvm::consumeError(P.takeError());
    return std::nullopt;
  }
  const PreparedModel &Model = **P;
  auto Choice = chooseOptimalCheckpoint(*Model.G, Model.Setup, *Model.Census, R.Budget,
                                        R.Simulations.get());
  if (!Choice) {
    llvm::consumeError(Choice.takeError()); // "+ checkpoint blocks" is the answer
    return std::nullopt;
  }
  if (Choice->Mode == "blocks" || Choice->Mode == "none")
    return std::nullopt;
  Candidate Partial = C;
  Partial.Setup.Checkpoint = Choice->Mode;
  Partial.Name = C.Name + " + checkpoint optimal"; // the choice is in the plan's why
  Partial.Overhead =
      C.Overhead * (1.0 + static_cast<double>(Choice->RecomputeFlops) /
                              (3.0 * static_cast<double>(std::max<int64_t>(Choice->BlockFlops, 1))));
  Partial.RecomputeFlops = Choice->RecomputeFlops;
  Partial.ForwardFlops = Choice->ForwardFlops;
  Partial.CheckpointRunsAs = checkpointEngines(Choice->Mode);
  return Partial;
}

llvm::Error appendUpdateSets(const PlanRequest &R, const ModelShape &Shape,
                             std::vector<Candidate> &Out) {
  Precision Amp =
      R.Gpu.supports(MathPrecision::BF16) ? Precision::AmpBf16 : Precision::AmpFp16;
  Candidate Base;
  Base.Setup = R.Base;
  Base.Setup.Gpu = R.Gpu.Name;
  Base.Setup.Sharding.Gpus = R.Gpus;
  Base.Setup.Prec = Amp;
  Base.Setup.Optimizer = OptimizerKind::AdamW;
  Base.Setup.Impl = OptimizerImpl::Fused;
  Base.Setup.Checkpoint = "none";
  Base.Fid = Fidelity::Sparse;

  if (Shape.HasBias) {
    Candidate C = Base;
    C.Name = std::string("sparse: biases only (BitFit), ") + precisionName(Amp);
    C.Setup.SparseUpdate = "bias-only";
    C.Overhead = 2.0 / 3.0;
    Out.push_back(std::move(C));
  }
  const int64_t N = Shape.Blocks;
  if (N < 2)
    return llvm::Error::success();
  auto Fits = [&](int64_t K, int64_t MicroBatch) {
    Candidate C = Base;
    C.Setup.SparseUpdate = "last:" + std::to_string(K);
    Evaluation E = evaluate(R, C, MicroBatch, /*Probe=*/true);
    return E.Ok && E.Required <= R.Budget;
  };
  int64_t K = 0;
  for (int64_t M = std::max<int64_t>(R.GlobalBatch, 1); M >= 1 && !K; M /= 2) {
    if (!Fits(1, M))
      continue;
    int64_t Lo = 1, Hi = N + 1; // Lo fits, Hi does not (N + 1 stands for "none")
    while (Hi - Lo > 1) {
      int64_t Mid = (Lo + Hi) / 2;
      (Fits(Mid, M) ? Lo : Hi) = Mid;
    }
    K = Lo;
  }
  if (K) {
    Candidate C = Base;
    C.Name = "sparse: last " + std::to_string(K) + " of " + std::to_string(N) +
             " blocks (searched), " + precisionName(Amp);
    C.Setup.SparseUpdate = "last:" + std::to_string(K);
    C.Overhead = (1.0 + 2.0 * static_cast<double>(K) / static_cast<double>(N)) / 3.0;
    Out.push_back(std::move(C));
  }
  // Parameter by parameter (planner/SparseUpdateSearch): biases and norm scales first,
  // later layers first, each kept set a simulated step that fits; at the requested
  // micro-batch or the largest smaller power of two where any set fits. Step time:
  // forward plus backward as deep as the earliest updated parameter.
  for (int64_t M = std::max<int64_t>(R.GlobalBatch, 1); M >= 1; M /= 2) {
    Candidate C = Base;
    std::string Budget = formatBytes(R.Budget);
    Budget.erase(std::remove(Budget.begin(), Budget.end(), ' '), Budget.end());
    C.Setup.SparseUpdate = "budget:" + Budget;
    auto P = prepare(R, C, M);
    if (!P)
      return P.takeError();
    auto Sel = searchSparseUpdate(*P->G, P->Setup, R.Budget, R.Simulations.get());
    if (!Sel) {
      llvm::consumeError(Sel.takeError()); // nothing fits at this micro-batch
      continue;
    }
    if (Sel->Biases + Sel->Weights == Sel->Candidates)
      break; // everything trains: the full fine-tuning candidate already
    applySparseSelection(*Sel, C.Setup);
    C.Name = "sparse: " + std::to_string(Sel->Biases + Sel->Weights) + " of " +
             std::to_string(Sel->Candidates) + " parameters (TinyEngine search), " +
             precisionName(Amp);
    C.Overhead = (1.0 + 2.0 * Sel->BackwardDepth) / 3.0;
    C.UpdateSet = Sel->summary();
    Out.push_back(std::move(C));
    break;
  }
  return llvm::Error::success();
}

/// One candidate's plan: the largest micro-batch that fits (the requested batch first;
/// from a miss there halve until one fits, from a fit double up to Cap; then bisect
/// between the last fit and miss), the step at the micro-batch used, the engines that
/// run it.
llvm::Expected<Plan> planFor(const PlanRequest &R, const Candidate &C, int64_t Target,
                             int64_t Cap) {
  auto Fits = [&](int64_t M, Evaluation &Out) {
    Out = evaluate(R, C, M, /*Probe=*/true);
    return Out.Ok && Out.Required <= R.Budget;
  };
  // The requested batch in one step is probed first: when it fits, no smaller
  // micro-batch matters (each would only add accumulation steps, and each is a dearer
  // simulation, replaying its micro-batches until they repeat), and the search goes on
  // above it only up to Cap (--objective=max-batch). Most candidates of a sweep fit
  // there; this spares them three of their four probes.
  int64_t Lo = 0, Hi = 0; // the largest known fit and the smallest known miss (0: none)
  Evaluation BestEval, AtOne;
  {
    Evaluation AtTarget;
    if (Fits(Target, AtTarget)) {
      Lo = Target;
      BestEval = AtTarget;
    } else if (AtTarget.Ok) {
      Hi = Target;
    }
    if (Target == 1)
      AtOne = AtTarget;
  }
  if (!Lo && Hi) {
    // The requested batch misses: halve it until a micro-batch fits. A probe that misses
    // stops replaying once over the budget, while one that fits is replayed whole with
    // its accumulation steps (micro-batch 1 of 8: eight micro-batches, until they
    // repeat), so coming down from the miss replays fewer fits than climbing from 1
    // (the 7B A100 sweep's simulations: 198 -> 156 ms). The same answer where fitting
    // falls with the micro-batch, which both searches assume.
    for (int64_t M = Hi / 2; M >= 1; M /= 2) {
      Evaluation E;
      if (Fits(M, E)) {
        Lo = M;
        BestEval = E;
        break;
      }
      if (M == 1)
        AtOne = E;
      if (!E.Ok)
        break; // micro-batch 1 reports it below
      Hi = M;
    }
  }
  if (!Lo) {
    // Micro-batch 1 says whether anything fits and reports a model that cannot be set up.
    bool OneFits = Target == 1 || Hi == 1 ? false : Fits(1, AtOne);
    if (!AtOne.Ok && AtOne.NotApplicable)
      return llvm::make_error<StrategyNotApplicable>(AtOne.Error);
    if (!AtOne.Ok)
      return planError(C.Name, AtOne.Error);
    BestEval = AtOne;
    if (OneFits)
      Lo = 1;
  }
  if (Lo) {
    for (int64_t M = Lo * 2; M <= Cap && (!Hi || M < Hi); M *= 2) {
      Evaluation E;
      if (Fits(M, E)) {
        Lo = M;
        BestEval = E;
      } else {
        Hi = M;
        break;
      }
    }
    if (Hi == 0 && Lo < Cap) {
      Evaluation E;
      if (Fits(Cap, E)) {
        Lo = Cap;
        BestEval = E;
      } else {
        Hi = Cap;
      }
    }
    while (Hi && Hi - Lo > 1) {
      int64_t Mid = (Lo + Hi) / 2;
      Evaluation E;
      if (Fits(Mid, E)) {
        Lo = Mid;
        BestEval = E;
      } else {
        Hi = Mid;
      }
    }
  }
  const int64_t Best = Lo;
  Plan P;
  P.Name = C.Name;
  P.Setup = C.Setup;
  P.Fid = C.Fid;
  P.Engines = C.Engines;
  P.RecomputeFlops = C.RecomputeFlops;
  P.ForwardFlops = C.ForwardFlops;
  P.CheckpointRunsAs = C.CheckpointRunsAs;
  P.UpdateSet = C.UpdateSet;
  P.MaxMicroBatch = Best;
  P.MicroBatch = std::max<int64_t>(1, std::min(Best, Target));
  if (R.Objective == PlanObjective::MaxBatch && Best)
    P.MicroBatch = Best;
  P.GradAccum = accumulationFor(R, P.MicroBatch);
  // The step at the chosen micro-batch: the largest fit's, or micro-batch 1's when
  // nothing fits (BestEval either way); evaluated afresh if the choice is elsewhere or
  // the probe stopped short of the whole step (a plan that misses says by how much).
  Evaluation Final = P.MicroBatch == std::max<int64_t>(Best, 1) && !BestEval.Stopped
                         ? BestEval
                         : evaluate(R, C, P.MicroBatch);
  P.Setup.MicroBatch = P.MicroBatch;
  P.Setup.GradAccum = P.GradAccum;
  if (R.Emit) {
    EmitContext Ctx = *R.Emit;
    Ctx.MicroBatch = P.MicroBatch;
    P.Engines.clear();
    for (ConfigTarget T : {ConfigTarget::HfTrainer, ConfigTarget::DeepSpeed,
                           ConfigTarget::AccelerateFsdp, ConfigTarget::Torchtune}) {
      auto Files = renderConfigs(T, P.Setup, Ctx);
      if (Files)
        P.Engines.push_back(configTargetName(T));
      else if (T == ConfigTarget::HfTrainer)
        P.EngineRefusal = llvm::toString(Files.takeError());
      else
        llvm::consumeError(Files.takeError()); // not this engine: it is left out
    }
  }
  P.Peak = Final.Peak;
  P.Required = Final.Required;
  P.Fits = Final.Ok && Final.Required <= R.Budget;
  P.Headroom = R.Budget - Final.Required;
  P.TrainableParameters = Final.Trainable;
  // Smaller micro-batches run the same work in more, less efficient steps; count it
  // only as accumulation, not as extra compute.
  P.Overhead = C.Overhead;
  // transformers refuses layer-wise GaLore with gradient accumulation.
  if (P.Setup.Galore && P.Setup.Galore->PerLayer && P.GradAccum > 1)
    P.Engines.clear();
  return P;
}

} // namespace

llvm::Expected<std::vector<Plan>> searchPlans(const PlanRequest &Request) {
  // The search probes the same few micro-batches many times. Candidates run on worker
  // threads and share, through the search's cache, each micro-batch's import and LoRA
  // transform (read-only), prepared models and simulations.
  PlanRequest R = Request;
  if (!R.Simulations)
    R.Simulations = std::make_shared<SimulationCache>();
  // Each micro-batch's model is imported once into the search's cache, one import at a
  // time: the caller's Model need not be thread-safe (the CLI's once reused one request,
  // and two threads importing at once got each other's micro-batch). Callers of R.Model
  // get a copy they may change; prepare() shares the kept graph.
  R.Simulations->setModel(Request.Model);
  R.Model = [Cache = R.Simulations](int64_t MicroBatch) -> llvm::Expected<Graph> {
    auto G = Cache->model(MicroBatch);
    if (!G)
      return G.takeError();
    return **G;
  };
  std::vector<Plan> Plans;
  int64_t Target = std::max<int64_t>(R.GlobalBatch, 1);
  int64_t Cap = R.Objective == PlanObjective::MaxBatch ? std::max<int64_t>(Target, 4096) : Target;
  // A decoder's training forward gains nothing from the key/value cache transformers
  // fills unless told use_cache=False: plans switch it off where the user left it to the
  // model's config (the emitted from_pretrained arguments say so).
  if (R.Base.KvCache == KvCacheMode::Auto) {
    auto G = R.Simulations->model(1);
    if (!G)
      return G.takeError();
    if ((*G)->TrainingKvCache)
      R.Base.KvCache = KvCacheMode::Off;
  }
  std::vector<Candidate> All = candidates(R);
  auto Shape = modelShape(R);
  if (!Shape)
    return Shape.takeError();
  // Every task runs on every core, in two rounds with no serial phase between them:
  // first the fixed candidates' plans together with the searches that derive more
  // candidates (the optimal checkpointing of each, the update sets), then the derived
  // candidates' plans. The plans keep the candidates' order: fixed, optimal, update sets.
  const size_t Fixed = All.size();
  std::vector<std::optional<llvm::Expected<Plan>>> Results(Fixed);
  std::vector<std::optional<Candidate>> Optimal(Fixed);
  std::vector<Candidate> UpdateSets;
  std::optional<llvm::Error> UpdateSetsError;
  {
    llvm::ThreadPool Pool(llvm::hardware_concurrency());
    // The update-set searches are the longest chain of probes: they start first.
    Pool.async([&] { UpdateSetsError.emplace(appendUpdateSets(R, *Shape, UpdateSets)); });
    // Then the candidates from the last: the list runs from full fine-tuning to adapters,
    // whose graphs are half again as large and which mostly miss at the requested batch
    // (so their plans probe smaller micro-batches, each replaying accumulation). Longest
    // first keeps both cores busy to the end: 7B on an A100, 190 -> 170 ms for this round.
    for (size_t I = Fixed; I-- > 0;)
      Pool.async([&, I] { Optimal[I] = optimalCheckpointCandidate(R, *Shape, All[I]); });
    for (size_t I = Fixed; I-- > 0;)
      Pool.async([&, I] { Results[I].emplace(planFor(R, All[I], Target, Cap)); });
    Pool.wait();
  }
  if (*UpdateSetsError)
    return std::move(*UpdateSetsError);
  for (std::optional<Candidate> &C : Optimal)
    if (C)
      All.push_back(std::move(*C));
  for (Candidate &C : UpdateSets)
    All.push_back(std::move(C));
  Results.resize(All.size());
  {
    llvm::ThreadPool Pool(llvm::hardware_concurrency());
    for (size_t I = Fixed; I < All.size(); ++I)
      Pool.async([&, I] { Results[I].emplace(planFor(R, All[I], Target, Cap)); });
    Pool.wait();
  }
  std::vector<SkippedPlan> Skipped;
  for (size_t I = 0; I < Results.size(); ++I) {
    llvm::Expected<Plan> &Result = *Results[I];
    if (Result) {
      Plans.push_back(std::move(*Result));
      continue;
    }
    llvm::Error Failed = llvm::handleErrors(
        Result.takeError(), [&](const StrategyNotApplicable &N) -> llvm::Error {
          if (!R.Skipped)
            return planError(All[I].Name, N.why());
          Skipped.push_back({All[I].Name, N.why()});
          return llvm::Error::success();
        });
    if (Failed)
      return Failed;
  }
  if (Plans.empty() && !Skipped.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "no candidate plan applies to this model (the first, "
                                   "'%s': %s)",
                                   Skipped.front().Name.c_str(), Skipped.front().Why.c_str());
  if (R.Skipped)
    *R.Skipped = std::move(Skipped);
  auto Better = [&R](const Plan &A, const Plan &B) {
    if (A.Fits != B.Fits)
      return A.Fits;
    if (!A.Fits)
      return A.Required < B.Required;
    // A plan some engine's config carries out comes before one that needs a hand-written
    // training loop (a sparse update set, layer-wise GaLore with accumulation).
    if (A.Engines.empty() != B.Engines.empty())
      return B.Engines.empty();
    switch (R.Objective) {
    case PlanObjective::MaxTrainable:
      if (A.TrainableParameters != B.TrainableParameters)
        return A.TrainableParameters > B.TrainableParameters;
      break;
    case PlanObjective::MaxBatch:
      if (A.MaxMicroBatch != B.MaxMicroBatch)
        return A.MaxMicroBatch > B.MaxMicroBatch;
      break;
    case PlanObjective::FitFastest:
      break;
    }
    if (A.Overhead != B.Overhead)
      return A.Overhead < B.Overhead;
    if (A.Fid != B.Fid)
      return A.Fid < B.Fid;
    // The same estimated overhead: larger micro-batches (fewer accumulation steps) keep
    // the GPU busier than the estimate, which counts work, can tell.
    if (A.MicroBatch != B.MicroBatch)
      return A.MicroBatch > B.MicroBatch;
    return A.Required < B.Required;
  };
  std::stable_sort(Plans.begin(), Plans.end(), Better);
  // Pareto front of required memory against overhead among the plans that fit.
  for (Plan &P : Plans) {
    if (!P.Fits)
      continue;
    P.Pareto = true;
    for (const Plan &Q : Plans)
      if (Q.Fits && &Q != &P && Q.Required <= P.Required && Q.Overhead <= P.Overhead &&
          (Q.Required < P.Required || Q.Overhead < P.Overhead))
        P.Pareto = false;
  }
  for (size_t I = 0; I < Plans.size(); ++I) {
    Plan &P = Plans[I];
    if (!P.Fits) {
      P.Why = P.MaxMicroBatch == 0
                  ? "does not fit: needs " + formatBytes(P.Required) + " of " +
                        formatBytes(R.Budget) + " even at micro-batch 1"
                  : "does not fit";
      continue;
    }
    std::string Reason = "fits with " + formatBytes(P.Headroom) + " to spare";
    if (P.Engines.empty() && !P.EngineRefusal.empty())
      Reason += "; no engine config runs it (" + P.EngineRefusal + ")";
    else if (P.Engines.empty())
      Reason += P.Fid == Fidelity::Sparse
                    ? "; no engine config selects the update set: the training script sets "
                      "requires_grad (trainmem analyze --sparse-update predicts it)"
                    : "; no engine runs it as set up (layer-wise GaLore cannot accumulate "
                      "gradients)";
    if (P.RecomputeFlops)
      Reason += "; --checkpoint=" + P.Setup.Checkpoint + " recomputes " +
                formatFlops(P.RecomputeFlops) + " of the forward's " +
                formatFlops(P.ForwardFlops);
    if (!P.UpdateSet.empty())
      Reason += "; updates " + P.UpdateSet;
    if (P.GradAccum > 1)
      Reason += "; micro-batch " + std::to_string(P.MicroBatch) + " x " +
                std::to_string(P.GradAccum) + " accumulation steps reach the batch";
    if (I == 0)
      Reason += std::string("; best for ") + planObjectiveName(R.Objective);
    if (P.Pareto)
      Reason += "; on the memory/overhead Pareto front";
    P.Why = Reason;
  }
  return Plans;
}

llvm::json::Value plansToJson(const std::vector<Plan> &Plans, const PlanRequest &R) {
  llvm::json::Array Out;
  for (size_t I = 0; I < Plans.size(); ++I) {
    const Plan &P = Plans[I];
    llvm::json::Array Engines;
    for (const std::string &E : P.Engines)
      Engines.push_back(E);
    llvm::json::Object Entry{{"rank", static_cast<int64_t>(I + 1)},
                             {"name", P.Name},
                             {"setup", setupToJson(P.Setup)},
                             {"micro_batch", P.MicroBatch},
                             {"grad_accum", P.GradAccum},
                             {"max_micro_batch", P.MaxMicroBatch},
                             {"peak_bytes", P.Peak},
                             {"required_bytes", P.Required},
                             {"fits", P.Fits},
                             {"headroom_bytes", P.Headroom},
                             {"relative_step_time", P.Overhead},
                             {"fidelity", fidelityName(P.Fid)},
                             {"trainable_parameters", P.TrainableParameters},
                             {"engines", std::move(Engines)},
                             {"pareto", P.Pareto},
                             {"why", P.Why}};
    if (P.RecomputeFlops)
      Entry["checkpoint"] = llvm::json::Object{{"mode", P.Setup.Checkpoint},
                                               {"recompute_flops", P.RecomputeFlops},
                                               {"forward_flops", P.ForwardFlops},
                                               {"runs_as", P.CheckpointRunsAs}};
    if (!P.UpdateSet.empty())
      Entry["update_set"] = llvm::json::Object{
          {"parameters", static_cast<int64_t>(P.Setup.TrainableNames.size())},
          {"names", llvm::json::Array(P.Setup.TrainableNames)},
          {"summary", P.UpdateSet}};
    Out.push_back(std::move(Entry));
  }
  llvm::json::Array Skipped;
  if (R.Skipped)
    for (const SkippedPlan &S : *R.Skipped)
      Skipped.push_back(llvm::json::Object{{"name", S.Name}, {"why", S.Why}});
  return llvm::json::Object{{"schema", "trainmem.plans/1"},
                            {"gpu", R.Gpu.Name},
                            {"gpus", R.Gpus},
                            {"budget_bytes", R.Budget},
                            {"objective", planObjectiveName(R.Objective)},
                            {"global_batch_per_gpu", R.GlobalBatch},
                            {"plans", std::move(Out)},
                            {"not_applicable", std::move(Skipped)}};
}

} // namespace trainmem
