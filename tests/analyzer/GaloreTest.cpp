//===- GaloreTest.cpp - GaLore's optimizer state and layer-wise updates ----------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {

/// An attention-like 256x64 projection, an MLP 64x512 and a 64-wide norm scale.
Graph projections() {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 256});
  TensorId Wq = B.weight("h.0.attn.q.weight", {256, 64});
  TensorId Wm = B.weight("h.0.mlp.fc.weight", {64, 512});
  TensorId Scale = B.weight("h.0.norm.weight", {64});
  TensorId H = B.op("MatMul", {X, Wq}, {4, 64}, "/h.0/attn/q/MatMul");
  H = B.op("Mul", {H, Scale}, {4, 64}, "/h.0/norm/Mul");
  B.output(B.op("MatMul", {H, Wm}, {4, 512}, "/h.0/mlp/fc/MatMul"));
  return B.finish();
}

TrainingSetup galore(int64_t Rank, bool PerLayer = false) {
  TrainingSetup S;
  S.Galore = GaloreSetup{};
  S.Galore->Rank = Rank;
  S.Galore->PerLayer = PerLayer;
  return S;
}

} // namespace

TEST(Galore, ProjectedMomentsAndProjectorsForTargetsFullAdamForTheRest) {
  Graph G = projections();
  auto C = takeCensus(G, galore(16));
  ASSERT_TRUE(static_cast<bool>(C));
  // q: 256x64 -> moments 2 x 16x256, projector 16x64. fc: 64x512 -> 2 x 16x512 and 16x64.
  // norm (1-D): full moments 2 x 64. fp32; galore-torch's step is a Python int.
  int64_t Expected = 4 * (2 * 16 * 256 + 16 * 64) + 4 * (2 * 16 * 512 + 16 * 64) + 4 * 2 * 64;
  EXPECT_EQ(C->OptimizerStateBytes, Expected);
  // A rank above the smaller side is clipped to it.
  auto Big = takeCensus(G, galore(1000));
  ASSERT_TRUE(static_cast<bool>(Big));
  EXPECT_EQ(Big->OptimizerStateBytes, 4 * (2 * 64 * 256 + 64 * 64) + 4 * (2 * 64 * 512 + 64 * 64) +
                                          4 * 2 * 64);
}

TEST(Galore, LayerWiseUpdatesKeepOneGradientAtATime) {
  Graph G = projections();
  for (bool PerLayer : {false, true}) {
    TrainingSetup S = galore(16, PerLayer);
    auto C = takeCensus(G, S);
    ASSERT_TRUE(static_cast<bool>(C));
    auto R = simulateStep(G, S, *C);
    ASSERT_TRUE(static_cast<bool>(R));
    int64_t AllGrads = 4 * (256 * 64 + 64 * 512 + 64);
    if (PerLayer) // the largest single gradient, never all of them
      EXPECT_EQ(R->MaxByCategory.Gradients, 4 * 64 * 512);
    else
      EXPECT_EQ(R->MaxByCategory.Gradients, AllGrads);
  }
}
