//===- SparseUpdateSearchTest.cpp - per-layer update sets and the budget search ------===//
//
// The per-layer forms train exactly what they name; the budget search's set fits by the
// full simulation, follows TinyEngine's order (one-dim parameters of the last layers
// first), takes everything when everything fits, and refuses budgets nothing meets.
//
//===----------------------------------------------------------------------------===//
#include "planner/SparseUpdateSearch.h"
#include "planner/StrategyApply.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"

#include "llvm/Support/Regex.h"

#include <gtest/gtest.h>

using namespace trainmem;

namespace {

Graph gpt2() {
  ImportOptions O;
  O.Dims = {{"batch", 2}, {"seq", 128}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/gpt2/config.json", O);
  EXPECT_TRUE(static_cast<bool>(G));
  return std::move(*G);
}

TrainingSetup cpuSetup() {
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  return S;
}

/// The census after the strategies (the per-layer forms resolve there).
ParameterCensus censusOf(const Graph &Model, TrainingSetup S) {
  Graph G = Model;
  llvm::Error E = applyStrategies(G, S);
  EXPECT_FALSE(static_cast<bool>(E)) << llvm::toString(std::move(E));
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  return std::move(*C);
}

int64_t requiredWith(const Graph &G, const TrainingSetup &Setup, const SparseSelection *Sel) {
  TrainingSetup S = Setup;
  if (Sel)
    applySparseSelection(*Sel, S);
  else
    S.TrainableFile = std::string("(nothing)");
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  return R->PeakReserved.value_or(R->Peak);
}

} // namespace

TEST(SparseUpdateLayers, TrainsExactlyTheMatchingLayers) {
  Graph G = gpt2();
  TrainingSetup S = cpuSetup();
  S.SparseUpdate = "layers:h\\.11\\.";
  ParameterCensus Layers = censusOf(G, S);
  int Trainable = 0;
  for (const CensusParameter &P : Layers.Parameters) {
    bool InBlock = llvm::StringRef(P.LayerPath).contains("h.11.");
    EXPECT_EQ(P.Trainable, InBlock) << P.Name;
    Trainable += P.Trainable;
  }
  EXPECT_EQ(Trainable, 12); // two norms (2 each) and four linears (weight and bias)

  S.SparseUpdate = "biases:h\\.11\\.";
  for (const CensusParameter &P : censusOf(G, S).Parameters)
    EXPECT_EQ(P.Trainable, llvm::StringRef(P.LayerPath).contains("h.11.") && P.Shape.size() == 1)
        << P.Name;
  S.SparseUpdate = "weights:h\\.11\\.mlp";
  for (const CensusParameter &P : censusOf(G, S).Parameters)
    EXPECT_EQ(P.Trainable,
              llvm::StringRef(P.LayerPath).contains("h.11.mlp") && P.Shape.size() == 2)
        << P.Name;
}

TEST(SparseUpdateLayers, RefusesExpressionsThatMatchNothingOrDoNotParse) {
  Graph G = gpt2();
  TrainingSetup S = cpuSetup();
  S.SparseUpdate = "layers:decoder\\.9";
  llvm::Error E = applyStrategies(G, S);
  std::string Message = llvm::toString(std::move(E));
  EXPECT_NE(Message.find("--sparse-update=layers:decoder\\.9"), std::string::npos) << Message;
  EXPECT_NE(Message.find("matches no"), std::string::npos) << Message;
  EXPECT_NE(Message.find("transformer.h.0"), std::string::npos) << "names real layer paths";
  EXPECT_NE(llvm::toString(validateSparseUpdate("layers:(")).find("regular expression"),
            std::string::npos);
  EXPECT_NE(llvm::toString(validateSparseUpdate("budget:")).find("budget:SIZE"),
            std::string::npos);
  EXPECT_EQ(llvm::toString(validateSparseUpdate("weights:h\\.1[01]\\.")), "");
}

TEST(SparseUpdateBudget, FitsFollowsTheRuleAndGrowsToEverything) {
  Graph G = gpt2();
  TrainingSetup Base = cpuSetup();
  int64_t Nothing = requiredWith(G, Base, nullptr);
  auto FullCensus = takeCensus(G, Base);
  ASSERT_TRUE(static_cast<bool>(FullCensus));
  auto Full = simulateStep(G, Base, *FullCensus);
  ASSERT_TRUE(static_cast<bool>(Full));
  int64_t Everything = Full->Peak;
  ASSERT_LT(Nothing, Everything);

  for (int Step = 1; Step <= 4; ++Step) {
    int64_t Budget = Nothing + (Everything - Nothing) * Step / 5;
    TrainingSetup S = Base;
    S.SparseUpdate = "budget:" + std::to_string(Budget);
    auto Sel = searchSparseUpdate(G, S);
    ASSERT_TRUE(static_cast<bool>(Sel)) << llvm::toString(Sel.takeError());
    // The set fits by the full simulation, and the figure it reports is that one.
    EXPECT_LE(Sel->Required, Budget);
    EXPECT_EQ(requiredWith(G, S, &*Sel), Sel->Required);
    // TinyEngine's order: the last layer's one-dim parameters come first.
    ASSERT_FALSE(Sel->ChosenBiases.empty());
    EXPECT_NE(Sel->ChosenBiases.front().find("ln_f"), std::string::npos)
        << Sel->ChosenBiases.front();
    EXPECT_GT(Sel->Biases + Sel->Weights, 0);
    EXPECT_EQ(Sel->Names.size(), static_cast<size_t>(Sel->Biases + Sel->Weights));
  }
  // With the whole step's memory, everything trains.
  TrainingSetup S = Base;
  S.SparseUpdate = "budget:" + std::to_string(Everything);
  auto All = searchSparseUpdate(G, S);
  ASSERT_TRUE(static_cast<bool>(All));
  EXPECT_EQ(All->Biases + All->Weights, All->Candidates);
  EXPECT_EQ(All->TrainableParameters, FullCensus->TrainableParameters);
}

TEST(SparseUpdateBudget, PrefersBiasesOverWeightsAtTheSameCost) {
  Graph G = gpt2();
  TrainingSetup Base = cpuSetup();
  // Just enough for the last block's biases and norms: no weight.
  TrainingSetup Probe = Base;
  Probe.SparseUpdate = "biases:h\\.11\\.|ln_f";
  ParameterCensus C = censusOf(G, Probe);
  Graph Resolved = G;
  llvm::Error E = applyStrategies(Resolved, Probe);
  ASSERT_FALSE(static_cast<bool>(E));
  auto Sim = simulateStep(Resolved, Probe, C);
  ASSERT_TRUE(static_cast<bool>(Sim));
  TrainingSetup S = Base;
  S.SparseUpdate = "budget:" + std::to_string(Sim->Peak);
  auto Sel = searchSparseUpdate(G, S);
  ASSERT_TRUE(static_cast<bool>(Sel));
  EXPECT_GE(Sel->Biases, 6) << Sel->summary();
  EXPECT_EQ(Sel->Weights, 0) << Sel->summary();
  for (const std::string &B : Sel->ChosenBiases)
    EXPECT_TRUE(llvm::Regex("h\\.1[01]\\.|ln_f").match(B)) << B;
}

TEST(SparseUpdateBudget, RefusesBudgetsNothingMeetsAndBadSizes) {
  Graph G = gpt2();
  TrainingSetup S = cpuSetup();
  int64_t Nothing = requiredWith(G, S, nullptr);
  S.SparseUpdate = "budget:" + std::to_string(Nothing - 1);
  auto Miss = searchSparseUpdate(G, S);
  ASSERT_FALSE(static_cast<bool>(Miss));
  std::string Message = llvm::toString(Miss.takeError());
  EXPECT_NE(Message.find("--sparse-update=budget:"), std::string::npos) << Message;
  EXPECT_NE(Message.find("no update set meets"), std::string::npos) << Message;
  S.SparseUpdate = "budget:much";
  auto Bad = searchSparseUpdate(G, S);
  ASSERT_FALSE(static_cast<bool>(Bad));
  EXPECT_NE(llvm::toString(Bad.takeError()).find("expected budget:SIZE"), std::string::npos);
}
