//===- CheckpointOptimal.cpp - least recompute that meets a memory budget ------------===//
//
// The order of passes:
//   1. the repeated blocks, as the simulator segments them (runs of ops sharing a
//      numbered layer-path prefix), with each block's forward FLOPs from its shapes;
//   2. the simulated step without checkpointing, and for one block of each distinct
//      shape (a signature of its ops' kinds and output shapes) the step with only that
//      block checkpointed selectively and whole: the drop in saved-for-backward bytes is
//      that option's saving for every block of the same signature;
//   3. the DP over blocks (solveCheckpointKnapsack, with the backward constraints: while
//      a block's backward runs only the blocks before it have saved less) for the
//      saving the budget asks for, first the step's requirement without checkpointing
//      minus the budget;
//   4. the full simulation of the choice. The simulated requirement does not fall one
//      for one with the saving (recompute keeps one block's working set live, the
//      allocator rounds, some temporaries shrink with the saved tensors), so the saving
//      to ask the DP for is searched by regula falsi between a saving that misses and one
//      that fits, each probe a DP solution verified by simulation (at most MaxSolves).
//      The returned choice is the cheapest verified one, so it always fits by the full
//      simulation.
// This is Checkmate (Jain et al. 2020) restricted to block granularity with three
// options per block, which the simulator and PyTorch both express; a per-tensor choice
// would need a policy no engine config carries.
//
//===----------------------------------------------------------------------------===//
#include "planner/CheckpointOptimal.h"

#include "analyzer/StepSimulator.h"
#include "analyzer/Units.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>

namespace trainmem {

namespace {

int64_t numel(const Graph &G, TensorId T) {
  if (T == NoTensor || !G.Tensors[T].ShapeKnown)
    return 0;
  return G.Tensors[T].numElements();
}

int64_t dimFromEnd(const Graph &G, TensorId T, size_t FromEnd) {
  if (T == NoTensor || !G.Tensors[T].ShapeKnown || G.Tensors[T].Shape.size() < FromEnd)
    return 1;
  return G.Tensors[T].Shape[G.Tensors[T].Shape.size() - FromEnd];
}

struct BlockRun {
  std::string Block;
  size_t First = 0, Last = 0;
  std::string Signature;
  int64_t FullFlops = 0, SelectiveFlops = 0;
};

struct Cost {
  int64_t Flops = std::numeric_limits<int64_t>::max();
  int64_t Penalty = 0;
  bool operator<(const Cost &O) const {
    return Flops != O.Flops ? Flops < O.Flops : Penalty < O.Penalty;
  }
  bool finite() const { return Flops != std::numeric_limits<int64_t>::max(); }
};

constexpr int MaxSolves = 12;
constexpr int64_t Buckets = 16384;

} // namespace

int64_t forwardFlops(const Graph &G, const SimOp &Op) {
  TensorId Out = Op.Outputs.empty() ? NoTensor : Op.Outputs[0];
  TensorId In0 = Op.Inputs.empty() ? NoTensor : Op.Inputs[0];
  // A grouped matmul (mixture-of-experts experts) multiplies each of its rows by one
  // expert's matrix: as many multiply-adds as one matmul of all the rows.
  if (Op.Kind == "Linear" || Op.Kind == "MatMul" || Op.Kind == "Gemm" ||
      Op.Kind == "GroupedMatMul")
    return 2 * numel(G, Out) * dimFromEnd(G, In0, 1);
  if ((Op.Kind == "Conv" || Op.Kind == "ConvTranspose") && Op.Inputs.size() >= 2) {
    TensorId W = Op.Inputs[1];
    int64_t PerOutput = 1;
    if (W != NoTensor && G.Tensors[W].ShapeKnown)
      for (size_t D = 1; D < G.Tensors[W].Shape.size(); ++D)
        PerOutput *= G.Tensors[W].Shape[D];
    // A transposed convolution scatters every input element over the kernel.
    return 2 * (Op.Kind == "Conv" ? numel(G, Out) : numel(G, In0)) * PerOutput;
  }
  if (Op.Kind == "ScaledDotProductAttention" && Op.Inputs.size() >= 3) {
    // q [.., S, D] x k^T [.., D, T] and probabilities [.., S, T] x v [.., T, Dv], plus
    // about five operations per score for scale, mask and softmax.
    int64_t KeyLength = dimFromEnd(G, Op.Inputs[2], 2);
    int64_t Scores = numel(G, In0) / std::max<int64_t>(dimFromEnd(G, In0, 1), 1) * KeyLength;
    return 2 * numel(G, In0) * KeyLength + 2 * numel(G, Out) * KeyLength + 5 * Scores;
  }
  int64_t Elements = 0;
  for (TensorId T : Op.Outputs)
    Elements = std::max(Elements, numel(G, T));
  for (TensorId T : Op.Inputs)
    if (T != NoTensor && !G.Tensors[T].Stored)
      Elements = std::max(Elements, numel(G, T));
  return Elements;
}

KnapsackSolution solveCheckpointKnapsack(const std::vector<CheckpointCandidate> &Blocks,
                                         int64_t RequiredSaving, int64_t Granularity,
                                         bool BackwardConstraints) {
  KnapsackSolution Sol;
  const size_t N = Blocks.size();
  Sol.Choice.assign(N, BlockCheckpoint::Keep);
  if (RequiredSaving <= 0) {
    Sol.Feasible = true;
    return Sol;
  }
  Granularity = std::max<int64_t>(Granularity, 1);
  auto Bucketed = [Granularity](int64_t Bytes) { return (Bytes + Granularity / 2) / Granularity; };
  const int64_t Target = Bucketed(RequiredSaving);
  const size_t W = static_cast<size_t>(Target) + 1;
  // Cur[j]: the cheapest choice over the blocks so far that frees at least j buckets
  // (j = Target: Target or more).
  std::vector<Cost> Cur(W), Next(W);
  Cur[0] = {0, 0};
  // Option[I * W + j]: block I's option on the best path to j. Below Target the state it
  // came from is j minus that option's weight; only Target, where larger sums are capped,
  // needs its origin kept (FromAtTarget). One table of N x W bytes, not N x W origins.
  std::vector<uint8_t> Option(N * W, 0);
  std::vector<int32_t> FromAtTarget(N, -1);
  // After[i]: the keep bytes of the blocks after block i, freed when its backward runs.
  std::vector<int64_t> After(N, 0);
  for (size_t I = N; I-- > 1;)
    After[I - 1] = After[I] + Blocks[I].KeepBytes;
  // Only Cur[Lo..Hi] can be finite: nothing frees less than the thresholds passed (Lo),
  // or more than the blocks so far can (Hi, at most Target). Early blocks reach few
  // states, so the loops cover those, not the whole row.
  size_t Lo = 0, Hi = 0;
  for (size_t I = 0; I < N; ++I) {
    if (BackwardConstraints) {
      // Savings so far must cover what block I's backward needs.
      int64_t Threshold = Bucketed(std::max<int64_t>(RequiredSaving - After[I], 0));
      Lo = std::max(Lo, static_cast<size_t>(std::min<int64_t>(Threshold, Target + 1)));
    }
    if (Lo > Hi)
      return Sol; // no choice so far meets a backward's need
    const CheckpointCandidate &B = Blocks[I];
    const std::pair<int64_t, int64_t> Options[3] = {
        {0, 0},
        {Bucketed(B.SelectiveSaving), B.SelectiveFlops},
        {Bucketed(B.FullSaving), B.FullFlops}};
    int64_t MostFreed = 0;
    for (const auto &[Weight, Flops] : Options)
      MostFreed = std::max(MostFreed, Weight);
    const size_t NextHi =
        static_cast<size_t>(std::min<int64_t>(Target, static_cast<int64_t>(Hi) + MostFreed));
    std::fill(Next.begin() + static_cast<std::ptrdiff_t>(Lo),
              Next.begin() + static_cast<std::ptrdiff_t>(NextHi) + 1, Cost{});
    for (size_t J = Lo; J <= Hi; ++J) {
      if (!Cur[J].finite())
        continue;
      for (uint8_t O = 0; O < 3; ++O) {
        auto [Weight, Flops] = Options[O];
        if (O && Weight <= 0)
          continue; // frees nothing: never worth its recompute
        size_t To = static_cast<size_t>(std::min<int64_t>(Target, static_cast<int64_t>(J) + Weight));
        Cost C{Cur[J].Flops + Flops, Cur[J].Penalty + (O ? static_cast<int64_t>(I) + 1 : 0)};
        if (C < Next[To]) {
          Next[To] = C;
          Option[I * W + To] = O;
          if (static_cast<int64_t>(To) == Target)
            FromAtTarget[I] = static_cast<int32_t>(J);
        }
      }
    }
    Hi = NextHi;
    std::swap(Cur, Next);
  }
  if (static_cast<int64_t>(Hi) < Target || !Cur[Target].finite())
    return Sol;
  Sol.Feasible = true;
  Sol.Flops = Cur[Target].Flops;
  size_t J = static_cast<size_t>(Target);
  for (size_t I = N; I-- > 0;) {
    uint8_t O = Option[I * W + J];
    Sol.Choice[I] = static_cast<BlockCheckpoint>(O);
    const int64_t Weight = O == 0 ? 0
                           : O == 1 ? Bucketed(Blocks[I].SelectiveSaving)
                                    : Bucketed(Blocks[I].FullSaving);
    J = static_cast<int64_t>(J) == Target ? static_cast<size_t>(FromAtTarget[I])
                                          : J - static_cast<size_t>(Weight);
  }
  for (size_t I = 0; I < N; ++I)
    Sol.Saving += Sol.Choice[I] == BlockCheckpoint::Full        ? Blocks[I].FullSaving
                  : Sol.Choice[I] == BlockCheckpoint::Selective ? Blocks[I].SelectiveSaving
                                                                : 0;
  return Sol;
}

llvm::Expected<OptimalCheckpoint> chooseOptimalCheckpoint(const Graph &G,
                                                          const TrainingSetup &Setup,
                                                          const ParameterCensus &Census,
                                                          std::optional<int64_t> Budget,
                                                          SimulationCache *Cache) {
  std::string Option = "--checkpoint=" + Setup.Checkpoint;
  if (!Budget) {
    llvm::StringRef Spec(Setup.Checkpoint);
    if (!Spec.consume_front("optimal:"))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "not an optimal checkpoint: %s", Option.c_str());
    auto Parsed = parseBytes(Spec);
    if (!Parsed)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "%s: %s (expected optimal:SIZE, e.g. optimal:40GiB)",
                                     Option.c_str(), llvm::toString(Parsed.takeError()).c_str());
    Budget = *Parsed;
  } else {
    Option = "optimal checkpointing for " + formatBytes(*Budget);
  }
  OptimalCheckpoint Result;
  Result.Budget = *Budget;

  // 1. Blocks, as planCheckpoints segments them.
  // The search's step structure when there is one (its ops and spans read no dims).
  std::shared_ptr<const StepStructure> Structure =
      Cache ? Cache->structureFor(G, Setup) : buildStepStructure(G, fusesAttention(G, Setup));
  const std::vector<SimOp> &Ops = Structure->Ops;
  std::vector<BlockRun> Runs;
  for (const BlockSpan &Span : Structure->Spans) {
    BlockRun R{Span.Block, Span.First, Span.Last, "", 0, 0};
    for (size_t K = Span.First; K <= Span.Last; ++K) {
      int64_t F = forwardFlops(G, Ops[K]);
      R.FullFlops += F;
      if (!isMatmulKind(Ops[K].Kind)) // what the selective policy keeps
        R.SelectiveFlops += F;
      R.Signature += Ops[K].Kind;
      for (TensorId T : Ops[K].Outputs)
        if (T != NoTensor && G.Tensors[T].ShapeKnown)
          for (int64_t D : G.Tensors[T].Shape)
            R.Signature += "," + std::to_string(D);
      R.Signature += ";";
    }
    Runs.push_back(std::move(R));
  }
  for (const SimOp &Op : Ops)
    Result.ForwardFlops += forwardFlops(G, Op);
  for (const BlockRun &R : Runs)
    Result.BlockFlops += R.FullFlops;
  Result.Blocks = static_cast<int64_t>(Runs.size());
  if (Runs.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: the model has no repeated blocks (layer paths such as "
                                   "h.3 or layers.12) to checkpoint",
                                   Option.c_str());

  // Stopped: the replay stopped short of the whole step (Stop), so Required is a lower
  // bound above the budget, or (after the forward) none at all.
  struct Measured {
    int64_t Required = 0, Saved = 0;
    bool Stopped = false;
  };
  auto Simulate = [&](const std::string &Mode, StepStop Stop = {}) -> llvm::Expected<Measured> {
    TrainingSetup S = Setup;
    S.Checkpoint = Mode;
    auto Sim = simulateForPlanning(Cache, G, S, Census, Stop);
    if (!Sim)
      return Sim.takeError();
    ++Result.Simulations;
    return Measured{Sim->PeakReserved.value_or(Sim->Peak), Sim->SavedAtEndOfForward,
                    Sim->stopped()};
  };
  // What each probe needs: the per-block savings only the saved bytes (the replay ends
  // with the forward); the prefix bisection and the last resorts only whether the step
  // fits; the DP's verifications the requirement itself (the regula falsi interpolates it).
  StepStop SavedOnly;
  SavedOnly.AfterForward = true;
  StepStop FitsOnly;
  FitsOnly.Above = Budget;

  // 2. Savings per block signature.
  auto None = Simulate("none");
  if (!None)
    return None.takeError();
  if (None->Required <= *Budget) {
    Result.Mode = "none";
    Result.Required = None->Required;
    return Result;
  }
  std::map<std::string, std::pair<int64_t, int64_t>> SavingBySignature;
  std::vector<CheckpointCandidate> Candidates;
  for (size_t B = 0; B < Runs.size(); ++B) {
    auto It = SavingBySignature.find(Runs[B].Signature);
    if (It == SavingBySignature.end()) {
      auto Selective = Simulate("selective:" + std::to_string(B), SavedOnly);
      if (!Selective)
        return Selective.takeError();
      auto Whole = Simulate("blocks:" + std::to_string(B), SavedOnly);
      if (!Whole)
        return Whole.takeError();
      It = SavingBySignature
               .emplace(Runs[B].Signature,
                        std::pair{std::max<int64_t>(None->Saved - Selective->Saved, 0),
                                  std::max<int64_t>(None->Saved - Whole->Saved, 0)})
               .first;
    }
    // Checkpointing a block whole frees all it saves but its input: that stands for
    // what its backward has live again.
    Candidates.push_back({Runs[B].Block, It->second.first, It->second.second,
                          Runs[B].SelectiveFlops, Runs[B].FullFlops,
                          std::max(It->second.first, It->second.second)});
  }
  int64_t MostSaving = 0;
  for (const CheckpointCandidate &C : Candidates)
    MostSaving += std::max(C.SelectiveSaving, C.FullSaving);
  Result.Granularity = std::max<int64_t>(1, (MostSaving + Buckets - 1) / Buckets);
  // What the DP can be asked for under the backward constraints: while block b's
  // backward runs, the largest savings of the blocks before it plus what the blocks
  // after it kept (freed by then); the least of these over b, in whole buckets.
  {
    int64_t Before = 0, After = 0;
    for (const CheckpointCandidate &C : Candidates)
      After += C.KeepBytes;
    MostSaving = INT64_MAX;
    for (const CheckpointCandidate &C : Candidates) {
      After -= C.KeepBytes;
      MostSaving = std::min(MostSaving, Before + After);
      Before += std::max(C.SelectiveSaving, C.FullSaving);
    }
    MostSaving = MostSaving / Result.Granularity * Result.Granularity;
  }

  auto ModeOf = [&](const KnapsackSolution &Sol, BlockCheckpointSelection &Sel) {
    for (size_t B = 0; B < Sol.Choice.size(); ++B) {
      if (Sol.Choice[B] == BlockCheckpoint::Full)
        Sel.Full.push_back(static_cast<int64_t>(B));
      if (Sol.Choice[B] == BlockCheckpoint::Selective)
        Sel.Selective.push_back(static_cast<int64_t>(B));
    }
    // The plain names where they say the same, so engines that only know them apply.
    const size_t N = Sol.Choice.size();
    if (Sel.Selective.empty() && Sel.Full.size() == N)
      return std::string("blocks");
    if (Sel.Full.empty() && Sel.Selective.size() == N)
      return std::string("selective");
    if (Sel.Selective.empty() && !Sel.Full.empty() &&
        Sel.Full.back() == static_cast<int64_t>(Sel.Full.size()) - 1)
      return "first:" + std::to_string(Sel.Full.size());
    return formatBlockCheckpointSelection(Sel);
  };

  // 3-4. Solve, verify, search. The simulated requirement falls with the saving the DP
  // is asked for, but not one for one (recompute working sets, allocator rounding,
  // temporaries that shrink with the saved tensors), so the saving to ask for is found
  // by regula falsi between the largest saving known to miss (Miss) and the smallest
  // known to fit (Fit), starting from the one-for-one guess; each probe is a DP solution
  // verified by the full simulation, and the cheapest verified fit is the answer.
  int64_t LeastSeen = None->Required;
  std::string LeastMode = "none";
  std::map<std::string, int64_t> Verified; // mode -> simulated requirement
  int64_t MissSaving = 0, MissNeed = None->Required;
  int64_t FitSaving = -1, FitNeed = 0;
  std::optional<KnapsackSolution> Best;
  BlockCheckpointSelection BestSel;
  std::string BestMode;
  int64_t Ask = None->Required - *Budget;
  for (int Solve = 0; Solve < MaxSolves; ++Solve) {
    // No choice frees more than every block's largest saving: ask for that at most.
    Ask = std::min(Ask, MostSaving);
    KnapsackSolution Sol = solveCheckpointKnapsack(Candidates, Ask, Result.Granularity,
                                                   /*BackwardConstraints=*/true);
    if (!Sol.Feasible)
      break;
    BlockCheckpointSelection Sel;
    std::string Mode = ModeOf(Sol, Sel);
    int64_t Need;
    if (auto It = Verified.find(Mode); It != Verified.end()) {
      // Nothing new between the ask and this choice's saving: the bracket closes there.
      Need = It->second;
      if (Need <= *Budget && Ask > MissSaving) {
        // No cheaper choice frees Ask or more; the requirement there is estimated one
        // for one from the fit.
        MissSaving = Ask;
        MissNeed = FitNeed + (FitSaving - Ask);
      }
    } else {
      auto Sim = Simulate(Mode);
      if (!Sim)
        return Sim.takeError();
      ++Result.Solves;
      Need = Verified[Mode] = Sim->Required;
      if (Need < LeastSeen) {
        LeastSeen = Need;
        LeastMode = Mode;
      }
      if (Need <= *Budget) {
        if (!Best || Sol.Flops < Best->Flops) {
          Best = Sol;
          BestSel = std::move(Sel);
          BestMode = Mode;
        }
        if (FitSaving < 0 || Sol.Saving < FitSaving) {
          FitSaving = Sol.Saving;
          FitNeed = Need;
        }
      } else if (Sol.Saving > MissSaving) {
        MissSaving = Sol.Saving;
        MissNeed = Need;
      }
    }
    if (FitSaving >= 0 && FitSaving - MissSaving <= Result.Granularity)
      break;
    // The next ask: interpolate the requirement between the bracket's ends (one for one
    // beyond the last miss while no fit is known); bisect when that leaves the bracket.
    int64_t Next;
    if (FitSaving < 0) {
      double Rate = MissSaving > 0 ? static_cast<double>(None->Required - MissNeed) /
                                         static_cast<double>(MissSaving)
                                   : 1.0;
      Next = MissSaving + static_cast<int64_t>(static_cast<double>(MissNeed - *Budget) /
                                               std::max(Rate, 0.05));
      Next = std::max(Next, MissSaving + Result.Granularity);
    } else {
      double Span = static_cast<double>(MissNeed - FitNeed);
      Next = Span > 0 ? MissSaving + static_cast<int64_t>(
                                         static_cast<double>(FitSaving - MissSaving) *
                                         static_cast<double>(MissNeed - *Budget) / Span)
                      : (MissSaving + FitSaving) / 2;
      if (Next <= MissSaving || Next >= FitSaving || Next == Ask)
        Next = (MissSaving + FitSaving) / 2;
    }
    if (std::min(Next, MostSaving) == Ask)
      break;
    Ask = Next;
  }
  // The answer is the cheapest verified choice among the DP's, the first-K family's and,
  // where the DP found none, every block selective.
  struct Choice {
    std::string Mode;
    BlockCheckpointSelection Selection;
    int64_t Flops = 0;
  };
  std::optional<Choice> Pick;
  auto Offer = [&](Choice C) {
    if (!Pick || C.Flops < Pick->Flops)
      Pick = std::move(C);
  };
  if (Best)
    Offer({BestMode, BestSel, Best->Flops});
  // Only whether each fits: a miss's requirement is a lower bound above the budget, kept
  // out of the least seen (replayed whole only if nothing fits, for the error's figure).
  std::vector<std::string> StoppedModes;
  auto Verify = [&](const std::string &Mode) -> llvm::Expected<int64_t> {
    if (auto It = Verified.find(Mode); It != Verified.end())
      return It->second;
    auto Sim = Simulate(Mode, FitsOnly);
    if (!Sim)
      return Sim.takeError();
    if (Sim->Stopped)
      StoppedModes.push_back(Mode);
    else if (Sim->Required < LeastSeen) {
      LeastSeen = Sim->Required;
      LeastMode = Mode;
    }
    return Verified[Mode] = Sim->Required;
  };
  // The first-K family (Megatron-LM's block method, what budget: picks) as a floor: the
  // DP works on per-block savings measured one block at a time and can miss a prefix
  // that fits. Bisect for the fewest first blocks that fit (each probe simulated), so
  // optimal: never recomputes more than budget: would.
  const int64_t N = static_cast<int64_t>(Candidates.size());
  auto PrefixMode = [N](int64_t K) {
    return K == N ? std::string("blocks") : "first:" + std::to_string(K);
  };
  // A prefix is offered only if it recomputes less than the DP's choice, and the first
  // K blocks recompute more the larger K is: with a DP choice, only K up to the largest
  // that recomputes less (Cheaper) can win. If first:Cheaper misses, so do all fewer (the
  // bisection's premise) and none is simulated further; if it fits, the bisection runs
  // below it. The same answer, without probing prefixes that could only lose.
  int64_t Cheaper = N;
  if (Best) {
    int64_t Flops = 0;
    Cheaper = 0;
    while (Cheaper < N && Flops + Candidates[Cheaper].FullFlops < Best->Flops)
      Flops += Candidates[Cheaper++].FullFlops;
  }
  auto AllNeed = Cheaper > 0 ? Verify(PrefixMode(Cheaper)) : llvm::Expected<int64_t>(INT64_MAX);
  if (!AllNeed)
    return AllNeed.takeError();
  if (*AllNeed <= *Budget) {
    int64_t Lo = 0, Hi = Cheaper; // first:Lo misses (none does), first:Hi fits
    while (Hi - Lo > 1) {
      int64_t Mid = Lo + (Hi - Lo) / 2;
      auto Need = Verify(PrefixMode(Mid));
      if (!Need)
        return Need.takeError();
      (*Need <= *Budget ? Hi : Lo) = Mid;
    }
    Choice C{PrefixMode(Hi), {}, 0};
    for (int64_t B = 0; B < Hi; ++B) {
      C.Flops += Candidates[B].FullFlops;
      C.Selection.Full.push_back(B);
    }
    Offer(std::move(C));
  }
  // Where the peak is not in the backward (the loss, say) the last block's saving counts
  // too, which the DP's constraints leave out: try every block selective.
  if (!Best) {
    auto Need = Verify("selective");
    if (!Need)
      return Need.takeError();
    if (*Need <= *Budget) {
      Choice C{"selective", {}, 0};
      for (int64_t B = 0; B < N; ++B) {
        C.Flops += Candidates[B].SelectiveFlops;
        C.Selection.Selective.push_back(B);
      }
      Offer(std::move(C));
    }
  }
  if (Pick) {
    Result.Mode = Pick->Mode;
    Result.Selection = std::move(Pick->Selection);
    Result.RecomputeFlops = Pick->Flops;
    Result.Required = Verified[Pick->Mode];
    return Result;
  }
  for (const std::string &Mode : StoppedModes) {
    auto Sim = Simulate(Mode);
    if (!Sim)
      return Sim.takeError();
    if (Sim->Required < LeastSeen) {
      LeastSeen = Sim->Required;
      LeastMode = Mode;
    }
  }
  return llvm::createStringError(
      llvm::inconvertibleErrorCode(),
      "%s: no choice of keeping, selectively checkpointing or checkpointing each of the %lld "
      "blocks meets %s; the least memory found is %s with --checkpoint=%s",
      Option.c_str(), static_cast<long long>(Result.Blocks), formatBytes(*Budget).c_str(),
      formatBytes(LeastSeen).c_str(), LeastMode.c_str());
}

std::string formatFlops(int64_t Flops) {
  const char *Units[] = {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"};
  double V = static_cast<double>(Flops);
  size_t U = 0;
  while (V >= 1000.0 && U + 1 < std::size(Units)) {
    V /= 1000.0;
    ++U;
  }
  char Buf[32];
  std::snprintf(Buf, sizeof Buf, U ? "%.2f %s" : "%.0f %s", V, Units[U]);
  return Buf;
}

std::string checkpointEngines(llvm::StringRef Mode) {
  const std::string Flags = "Hugging Face gradient_checkpointing, FSDP's activation_checkpointing "
                            "and torchtune's enable_activation_checkpointing checkpoint every "
                            "block";
  const std::string Policy =
      "a per-op policy that saves matmul outputs (torch.utils.checkpoint with "
      "context_fn=create_selective_checkpoint_contexts, PyTorch 2.4+, as torchtitan's op-level "
      "selective AC; not Megatron-LM's selective, which recomputes core attention only)";
  const std::string Wrap = "torch.utils.checkpoint or deepspeed.checkpointing.checkpoint "
                           "around those blocks in the model code";
  if (Mode == "none")
    return "";
  if (Mode == "blocks" || Mode == "every:1")
    return "every block: Hugging Face gradient_checkpointing, DeepSpeed activation "
           "checkpointing, FSDP activation_checkpointing, torchtune "
           "enable_activation_checkpointing";
  if (Mode == "selective")
    return "every block under " + Policy;
  if (Mode.startswith("first:"))
    return "the first " + Mode.drop_front(6).str() +
           " blocks: Megatron-LM --recompute-granularity=full --recompute-method=block "
           "--recompute-num-layers=" + Mode.drop_front(6).str() + ", or " + Wrap + " (" +
           Flags + ")";
  if (Mode.startswith("every:"))
    return "every " + Mode.drop_front(6).str() + "th block: " + Wrap + " (" + Flags + ")";
  auto Sel = parseBlockCheckpointSelection(Mode);
  if (!Sel) {
    llvm::consumeError(Sel.takeError());
    return "";
  }
  if (!*Sel)
    return "";
  std::string Out = "a per-block selection: " + Wrap;
  if (!(*Sel)->Selective.empty())
    Out += ", the selective ones under " + Policy;
  return Out + " (" + Flags + ")";
}

} // namespace trainmem
