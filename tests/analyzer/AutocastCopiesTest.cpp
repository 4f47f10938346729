//===- AutocastCopiesTest.cpp - copies a matmul makes of its operands ------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

// An fp32 operand with strides a matmul cannot flatten, under autocast: autocast casts
// it to bf16 keeping the strides, the matmul copies the bf16 tensor to flatten it and
// saves that copy for the weight's gradient. Both copies are gone after the step (an
// fp32 copy used to be made and never freed).
TEST(AutocastCopies, AStridedFp32OperandIsCastThenCopiedAndNothingLeaks) {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 32, 64});
  TensorId H = B.op("Relu", {X}, {4, 32, 64}, "/act/Relu"); // an fp32 activation
  TensorId Xt = B.op("Transpose", {H}, {4, 64, 32}, "/t/Transpose"); // a view of it
  B.attribute("perm", std::vector<int64_t>{0, 2, 1});
  TensorId W = B.weight("proj.weight", {32, 16});
  B.output(B.op("MatMul", {Xt, W}, {4, 64, 16}, "/proj/MatMul"));
  Graph G = B.finish();
  TrainingSetup S;
  S.Device = DeviceKind::Cuda;
  S.Prec = Precision::AmpBf16;
  S.Loss = LossKind::Mse;
  auto C = takeCensus(G, S);
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  auto Sim = simulateStep(G, S, *C);
  ASSERT_TRUE(static_cast<bool>(Sim)) << llvm::toString(Sim.takeError());
  ASSERT_FALSE(Sim->Timeline.empty());
  EXPECT_EQ(Sim->Timeline.back().Live.Temporaries, 0) << "a copy outlived the step";
  EXPECT_EQ(Sim->Timeline.back().Live.Activations, 0);
  // While the matmul runs: the fp32 activation (32 KiB), its bf16 cast and the cast's
  // contiguous copy (16 KiB each), the weight's bf16 copy (1 KiB) and the bf16 output
  // (8 KiB); never an fp32 copy (it would be 32 KiB more).
  int64_t AtMatmul = -1;
  for (const TimelinePoint &P : Sim->Timeline)
    if (P.Phase == "forward" && P.Op == "/proj/MatMul")
      AtMatmul = P.Live.Temporaries + P.Live.Activations;
  EXPECT_EQ(AtMatmul, 32768 + 16384 + 16384 + 1024 + 8192);
}
