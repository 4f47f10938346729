//===- SparseUpdateSearch.cpp - per-layer update sets and their budget search --------===//
//
// Candidates are the census's parameters (tied copies merged), each with the position
// of its first use in execution order. The budget search evaluates every set it keeps
// with the full step simulation: census, then simulateStep, on the setup that trains
// exactly that set.
//
//===----------------------------------------------------------------------------===//
#include "planner/SparseUpdateSearch.h"

#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "analyzer/Units.h"

#include "llvm/Support/Regex.h"

#include <algorithm>
#include <climits>
#include <map>

namespace trainmem {

namespace {

struct Candidate {
  size_t Param = 0;
  std::string Name;       ///< PyTorch-side name
  std::string TensorName; ///< what TrainableNames matches
  std::string LayerPath;
  int64_t Elements = 0;
  int Position = INT_MAX; ///< first use in execution order
  bool OneDim = false;
};

/// The parameters the selection chooses from, in execution order of first use.
llvm::Expected<std::vector<Candidate>> candidatesOf(const Graph &G, const TrainingSetup &Setup) {
  TrainingSetup All = Setup;
  All.SparseUpdate.clear();
  auto Census = takeCensus(G, All);
  if (!Census)
    return Census.takeError();
  std::vector<int> Position(G.Nodes.size(), INT_MAX);
  for (size_t I = 0; I < G.TopologicalOrder.size(); ++I)
    Position[G.TopologicalOrder[I]] = static_cast<int>(I);
  std::vector<Candidate> Out;
  for (size_t I = 0; I < Census->Parameters.size(); ++I) {
    const CensusParameter &P = Census->Parameters[I];
    if (P.Tensors.empty())
      continue;
    Candidate C;
    C.Param = I;
    C.Name = P.Name;
    C.TensorName = G.Tensors[P.Tensors[0]].Name;
    C.LayerPath = P.LayerPath;
    C.Elements = P.NumElements;
    C.OneDim = P.Shape.size() <= 1;
    for (TensorId T : P.Tensors)
      for (NodeId N : G.Tensors[T].Consumers)
        C.Position = std::min(C.Position, Position[N]);
    if (C.Position != INT_MAX) // a parameter nothing reads gets no gradient
      Out.push_back(std::move(C));
  }
  std::stable_sort(Out.begin(), Out.end(),
                   [](const Candidate &A, const Candidate &B) { return A.Position < B.Position; });
  return Out;
}

void choose(SparseSelection &Sel, const Candidate &C, int Nodes) {
  Sel.Names.push_back(C.TensorName);
  (C.OneDim ? Sel.ChosenBiases : Sel.ChosenWeights).push_back(C.Name);
  (C.OneDim ? Sel.Biases : Sel.Weights) += 1;
  Sel.TrainableParameters += C.Elements;
  if (Nodes > 0)
    Sel.BackwardDepth = std::max(Sel.BackwardDepth, 1.0 - static_cast<double>(C.Position) /
                                                              static_cast<double>(Nodes));
}

} // namespace

bool isPlannerSparseUpdate(llvm::StringRef Spec) {
  return Spec.startswith("layers:") || Spec.startswith("weights:") ||
         Spec.startswith("biases:") || Spec.startswith("budget:");
}

std::string SparseSelection::summary() const {
  std::string Out = std::to_string(Biases + Weights) + " of " + std::to_string(Candidates) +
                    " parameters (" + std::to_string(Biases) + " biases or norm scales";
  if (!ChosenBiases.empty())
    Out += ", back to " + ChosenBiases.back();
  Out += "; " + std::to_string(Weights) + " weights";
  for (size_t I = 0; I < ChosenWeights.size() && I < 4; ++I)
    Out += (I ? ", " : ": ") + ChosenWeights[I];
  if (ChosenWeights.size() > 4)
    Out += " and " + std::to_string(ChosenWeights.size() - 4) + " more";
  return Out + "; " + formatParamCount(TrainableParameters) + " elements)";
}

llvm::Expected<SparseSelection> selectSparseLayers(const Graph &G, const TrainingSetup &Setup) {
  llvm::StringRef Spec(Setup.SparseUpdate);
  bool Weights = true, Biases = true;
  if (Spec.consume_front("weights:"))
    Biases = false;
  else if (Spec.consume_front("biases:"))
    Weights = false;
  else if (!Spec.consume_front("layers:"))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--sparse-update=%s: not a per-layer selection",
                                   Setup.SparseUpdate.c_str());
  llvm::Regex Pattern(Spec);
  std::string Why;
  if (Spec.empty() || !Pattern.isValid(Why))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--sparse-update=%s: expected a regular expression over "
                                   "layer paths (%s)",
                                   Setup.SparseUpdate.c_str(),
                                   Why.empty() ? "it is empty" : Why.c_str());
  auto Candidates = candidatesOf(G, Setup);
  if (!Candidates)
    return Candidates.takeError();
  SparseSelection Sel;
  Sel.Candidates = static_cast<int64_t>(Candidates->size());
  for (const Candidate &C : *Candidates)
    if ((C.OneDim ? Biases : Weights) && Pattern.match(C.LayerPath.empty() ? C.Name : C.LayerPath))
      choose(Sel, C, static_cast<int>(G.TopologicalOrder.size()));
  if (Sel.Names.empty()) {
    std::string Examples;
    for (size_t I = 0, Shown = 0; I < Candidates->size() && Shown < 4; ++I)
      if (!(*Candidates)[I].LayerPath.empty() &&
          Examples.find((*Candidates)[I].LayerPath) == std::string::npos) {
        Examples += (Shown++ ? ", " : "") + (*Candidates)[I].LayerPath;
      }
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "--sparse-update=%s: the expression matches no %s of the model's %zu parameters "
        "(expected a regular expression over layer paths such as %s)",
        Setup.SparseUpdate.c_str(), !Weights ? "bias or norm scale" : !Biases ? "weight" : "layer",
        Candidates->size(), Examples.c_str());
  }
  return Sel;
}

void applySparseSelection(const SparseSelection &Sel, TrainingSetup &Setup) {
  if (!Setup.TrainableFile)
    Setup.TrainableFile = "(sparse update " + Setup.SparseUpdate + ")";
  Setup.TrainableNames.insert(Setup.TrainableNames.end(), Sel.Names.begin(), Sel.Names.end());
}

llvm::Expected<SparseSelection> searchSparseUpdate(const Graph &G, const TrainingSetup &Setup,
                                                   std::optional<int64_t> Budget,
                                                   SimulationCache *Cache) {
  std::string Option = "--sparse-update=" + Setup.SparseUpdate;
  if (!Budget) {
    llvm::StringRef Spec(Setup.SparseUpdate);
    if (!Spec.consume_front("budget:"))
      return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: not a budget",
                                     Option.c_str());
    auto Parsed = parseBytes(Spec);
    if (!Parsed)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "%s: %s (expected budget:SIZE, e.g. budget:24GiB)",
                                     Option.c_str(), llvm::toString(Parsed.takeError()).c_str());
    Budget = *Parsed;
  } else {
    Option = "the sparse-update search for " + formatBytes(*Budget);
  }
  auto Candidates = candidatesOf(G, Setup);
  if (!Candidates)
    return Candidates.takeError();
  SparseSelection Sel;
  Sel.Budget = *Budget;
  Sel.Candidates = static_cast<int64_t>(Candidates->size());

  // The rule's order: one-dim parameters from the last layer back, then the rest.
  std::vector<size_t> Cheap, Rest;
  for (size_t I = Candidates->size(); I-- > 0;)
    ((*Candidates)[I].OneDim ? Cheap : Rest).push_back(I);

  TrainingSetup Base = Setup;
  // A budget-driven checkpoint is resolved after the update set is known; the search
  // itself runs without it.
  if (llvm::StringRef(Base.Checkpoint).startswith("budget:") ||
      llvm::StringRef(Base.Checkpoint).startswith("optimal:"))
    Base.Checkpoint = "none";
  std::vector<size_t> Accepted;
  auto Requirement = [&](const std::vector<size_t> &Extra,
                         size_t Count) -> llvm::Expected<int64_t> {
    TrainingSetup S = Base;
    SparseSelection Trial;
    for (size_t I : Accepted)
      choose(Trial, (*Candidates)[I], 0);
    for (size_t I = 0; I < Count; ++I)
      choose(Trial, (*Candidates)[Extra[I]], 0);
    if (Trial.Names.empty() && !S.TrainableFile)
      S.TrainableFile = std::string("(nothing)"); // a selection of nothing trains nothing
    applySparseSelection(Trial, S);
    auto Census = takeCensus(G, S);
    if (!Census)
      return Census.takeError();
    auto Sim = simulateForPlanning(Cache, G, S, *Census);
    if (!Sim)
      return Sim.takeError();
    ++Sel.Simulations;
    return Sim->PeakReserved.value_or(Sim->Peak);
  };

  auto Nothing = Requirement({}, 0);
  if (!Nothing)
    return Nothing.takeError();
  if (*Nothing > *Budget)
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "%s: no update set meets %s: the step needs %s even with no parameter training",
        Option.c_str(), formatBytes(*Budget).c_str(), formatBytes(*Nothing).c_str());
  Sel.Required = *Nothing;

  std::vector<size_t> Failed;
  int64_t CheapestMiss = INT64_MAX;
  auto Pruned = [&](size_t I) {
    const Candidate &C = (*Candidates)[I];
    for (size_t F : Failed)
      if (C.Elements >= (*Candidates)[F].Elements && C.Position <= (*Candidates)[F].Position)
        return true;
    return false;
  };
  // Accepts the longest fitting prefix of List (galloping, then bisection), marks the
  // candidate after it as failed, prunes, and repeats on what is left.
  auto Extend = [&](std::vector<size_t> List) -> llvm::Error {
    while (true) {
      List.erase(std::remove_if(List.begin(), List.end(), Pruned), List.end());
      if (List.empty())
        return llvm::Error::success();
      size_t Lo = 0, Hi = 0; // prefix Lo fits; prefix Hi (when non-zero) does not
      std::map<size_t, int64_t> Fit;
      for (size_t K = 1;; K *= 2) {
        size_t Try = std::min(K, List.size());
        auto Need = Requirement(List, Try);
        if (!Need)
          return Need.takeError();
        if (*Need <= *Budget) {
          Lo = Try;
          Fit[Try] = *Need;
          if (Try == List.size())
            break;
        } else {
          Hi = Try;
          if (Try == Lo + 1)
            CheapestMiss = std::min(CheapestMiss, *Need);
          break;
        }
      }
      while (Hi && Hi - Lo > 1) {
        size_t Mid = (Lo + Hi) / 2;
        auto Need = Requirement(List, Mid);
        if (!Need)
          return Need.takeError();
        if (*Need <= *Budget) {
          Lo = Mid;
          Fit[Mid] = *Need;
        } else {
          Hi = Mid;
          if (Hi == Lo + 1)
            CheapestMiss = std::min(CheapestMiss, *Need);
        }
      }
      for (size_t I = 0; I < Lo; ++I)
        Accepted.push_back(List[I]);
      if (Lo)
        Sel.Required = Fit[Lo];
      if (!Hi)
        return llvm::Error::success();
      Failed.push_back(List[Lo]);
      List.erase(List.begin(), List.begin() + static_cast<std::ptrdiff_t>(Lo) + 1);
    }
  };
  if (llvm::Error E = Extend(Cheap))
    return E;
  if (llvm::Error E = Extend(Rest))
    return E;
  if (Accepted.empty())
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "%s: no update set meets %s: training the cheapest candidate alone needs %s (%s with "
        "nothing training)",
        Option.c_str(), formatBytes(*Budget).c_str(), formatBytes(CheapestMiss).c_str(),
        formatBytes(*Nothing).c_str());
  for (size_t I : Accepted)
    choose(Sel, (*Candidates)[I], static_cast<int>(G.TopologicalOrder.size()));
  return Sel;
}

} // namespace trainmem
