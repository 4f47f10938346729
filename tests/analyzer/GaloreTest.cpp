//===- GaloreTest.cpp - GaLore's optimizer state and layer-wise updates ----------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

#include <algorithm>

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
  // q: 256x64 -> moments 2 x 16x256; fc: 64x512 -> 2 x 16x512. An fp32 projector is a view
  // of the SVD's 64x64 factor and keeps all of it. norm (1-D): full moments 2 x 64.
  // galore-torch's step is a Python int.
  int64_t Expected = 4 * (2 * 16 * 256 + 64 * 64) + 4 * (2 * 16 * 512 + 64 * 64) + 4 * 2 * 64;
  EXPECT_EQ(C->OptimizerStateBytes, Expected);
  // A rank above the smaller side is clipped to it.
  auto Big = takeCensus(G, galore(1000));
  ASSERT_TRUE(static_cast<bool>(Big));
  EXPECT_EQ(Big->OptimizerStateBytes, 4 * (2 * 64 * 256 + 64 * 64) + 4 * (2 * 64 * 512 + 64 * 64) +
                                          4 * 2 * 64);
  // A bf16 gradient's factor is sliced and copied back to bf16: r x 64.
  TrainingSetup Bf16 = galore(16);
  Bf16.Prec = Precision::Bf16;
  auto Half = takeCensus(G, Bf16);
  ASSERT_TRUE(static_cast<bool>(Half));
  EXPECT_EQ(Half->OptimizerStateBytes,
            2 * (2 * 16 * 256 + 16 * 64) + 2 * (2 * 16 * 512 + 16 * 64) + 2 * 2 * 64);
}

/// An embedding-like weight the targets leave out (the other group, stepped first), then a
/// target 256x64 and a target 64x512.
Graph headThenTargets() {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 256});
  TensorId Head = B.weight("wte.weight", {256, 256});
  TensorId Wq = B.weight("h.0.attn.q.weight", {256, 64});
  TensorId Wm = B.weight("h.0.mlp.fc.weight", {64, 512});
  TensorId H = B.op("MatMul", {X, Head}, {4, 256}, "/wte/MatMul");
  H = B.op("MatMul", {H, Wq}, {4, 64}, "/h.0/attn/q/MatMul");
  B.output(B.op("MatMul", {H, Wm}, {4, 512}, "/h.0/mlp/fc/MatMul"));
  return B.finish();
}

TEST(Galore, TheStepHoldsThePreviousParametersUpdateWhileTheNextBegins) {
  // galore-torch's loop (a transformers AdamW): the other group's wte first, its denom and
  // norm_grad (256 KiB each) still held while q's projected gradient and denom are made;
  // then each target's project_back holds the product and its scaled copy beside the
  // projected grad, denom and norm_grad. Measured the same way on an H200 (TinyLlama).
  Graph G = headThenTargets();
  TrainingSetup S = galore(16);
  S.Galore->Targets = {"attn", "mlp"};
  auto C = takeCensus(G, S);
  ASSERT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(G, S, *C);
  ASSERT_TRUE(static_cast<bool>(R));
  const int64_t Wte = 4 * 256 * 256, Q = 4 * 256 * 64, LowQ = 4 * 16 * 256,
                Fc = 4 * 64 * 512, LowFc = 4 * 16 * 512;
  const int64_t Update = std::max({2 * Wte + 2 * LowQ,      // q's denom, wte's two held
                                   Wte + 3 * LowQ,          // q's norm_grad
                                   3 * LowQ + 2 * Q,        // q's project_back
                                   LowQ + Q + 2 * LowFc,    // fc's denom
                                   3 * LowFc + 2 * Fc});    // fc's project_back
  // At a refresh (every update gap) the SVD runs inside project(), wte's two still held:
  // the gradient's copy, U, S and Vh.
  const int64_t SvdQ = 4 * (256 * 64 + 256 * 64 + 64 + 64 * 64);
  const int64_t SvdFc = 4 * (64 * 512 + 64 * 64 + 64 + 64 * 512);
  const int64_t Svd = std::max(2 * Wte + SvdQ, LowQ + Q + SvdFc);
  int64_t AtOptimizer = 0, AtUpdate = 0;
  for (const TimelinePoint &P : R->Timeline)
    if (P.Phase == "optimizer") {
      AtOptimizer = std::max(AtOptimizer, P.Live.Temporaries);
      if (P.Op == "optimizer.step")
        AtUpdate = P.Live.Temporaries;
    }
  EXPECT_EQ(AtUpdate, Update);
  EXPECT_EQ(AtOptimizer, std::max(Update, Svd));
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
