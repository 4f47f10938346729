//===- LossAndZerothOrderTest.cpp - cut cross-entropy and MeZO --------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {
/// x[16,64,32] -> head 32 x 1000: a language-model head with a large vocabulary.
Graph head() {
  GraphBuilder B;
  TensorId X = B.input("x", {16, 64, 32});
  TensorId W = B.weight("block.fc.weight", {32, 32});
  TensorId H = B.op("MatMul", {X, W}, {16, 64, 32}, "/block/fc/MatMul");
  TensorId Head = B.weight("lm_head.weight", {32, 1000});
  B.output(B.op("MatMul", {H, Head}, {16, 64, 1000}, "/lm_head/MatMul"));
  return B.finish();
}
StepSimulation run(const Graph &G, TrainingSetup S) {
  S.Device = DeviceKind::Cpu;
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  return std::move(*R);
}
constexpr int64_t Rows = 16 * 64, Vocab = 1000;
} // namespace

TEST(Loss, CutCrossEntropyKeepsOneLogSumExpPerRowInsteadOfTheLogProbabilities) {
  Graph G = head();
  TrainingSetup Plain, Cut;
  Cut.Loss = LossKind::CutCrossEntropy;
  StepSimulation A = run(G, Plain), B = run(G, Cut);
  // Cross-entropy keeps fp32 log-probabilities (rows x vocab) and a 4-byte total weight;
  // cut cross-entropy a fp32 log-sum-exp per row.
  EXPECT_EQ(A.SavedAtEndOfForward - B.SavedAtEndOfForward, Rows * Vocab * 4 + 4 - Rows * 4);
  // Its peak has neither the logits nor their two gradients.
  EXPECT_LE(B.Peak + 2 * Rows * Vocab * 4, A.Peak);
}

TEST(ZerothOrder, ForwardOnlyNoSavedTensorsGradientsOrStates) {
  Graph G = head();
  TrainingSetup S;
  S.ZerothOrder = true;
  auto C = takeCensus(G, S);
  ASSERT_TRUE(static_cast<bool>(C));
  EXPECT_EQ(C->GradientBytes, 0);
  EXPECT_EQ(C->OptimizerStateBytes, 0);
  StepSimulation R = run(G, S);
  EXPECT_EQ(R.SavedAtEndOfForward, 0);
  EXPECT_EQ(R.MaxByCategory.Gradients, 0);
  // Two forward passes and an in-place update hold less than a training step.
  EXPECT_LT(R.Peak, run(G, TrainingSetup{}).Peak);
}
