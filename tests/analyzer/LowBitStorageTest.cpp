//===- LowBitStorageTest.cpp - FP8 optimizer states and int8 saved activations ----===//
//
// Byte counts worked out by hand from torchao's AdamWFp8 (_AdamBase._new_buffer) and
// from a saved-tensor pack hook that keeps int8 codes and one fp32 scale per 256 values.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>


using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {
ParameterCensus census(const Graph &G, const TrainingSetup &S) {
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C)) << (C ? "" : llvm::toString(C.takeError()));
  return C ? std::move(*C) : ParameterCensus{};
}

StepSimulation run(const Graph &G, TrainingSetup S) {
  S.Device = DeviceKind::Cpu;
  ParameterCensus C = census(G, S);
  auto R = simulateStep(G, S, C);
  EXPECT_TRUE(static_cast<bool>(R)) << (R ? "" : llvm::toString(R.takeError()));
  return R ? std::move(*R) : StepSimulation{};
}
} // namespace

TEST(AdamWFp8, QuantizesMomentsOfLargeDivisibleTensorsOnly) {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 64});
  TensorId Big = B.weight("big.weight", {64, 128});    // 8192 values: 256-blocks
  TensorId Odd = B.weight("odd.weight", {128, 33});    // 4224 values: 4224 % 256 != 0
  TensorId Small = B.weight("small.weight", {33, 16}); // 528 values: under 4096
  TensorId H = B.op("MatMul", {X, Big}, {4, 128}, "/big/MatMul");
  H = B.op("MatMul", {H, Odd}, {4, 33}, "/odd/MatMul");
  B.output(B.op("MatMul", {H, Small}, {4, 16}, "/small/MatMul"));
  Graph G = B.finish();

  TrainingSetup S;
  S.Optimizer = OptimizerKind::AdamWFp8;
  ParameterCensus C = census(G, S);
  // Big: float8 codes plus 8192/256 fp32 scales per moment. Odd and Small: fp32
  // zeros_like(p) per moment. The step counters live on the host.
  const int64_t BigMoments = 2 * (8192 + 32 * 4);
  const int64_t PlainMoments = 2 * (4224 + 528) * 4;
  EXPECT_EQ(C.OptimizerStateBytes, BigMoments + PlainMoments);
  for (const auto &Part : C.OptimizerStates)
    EXPECT_NE(Part.Name, "step");

  // Under bf16 with fp32 master weights the unquantized moments follow the masters.
  S.Prec = Precision::MixedBf16;
  EXPECT_EQ(census(G, S).OptimizerStateBytes, BigMoments + PlainMoments);
  // Pure bf16: zeros_like(p) is bf16.
  S.Prec = Precision::Bf16;
  EXPECT_EQ(census(G, S).OptimizerStateBytes, BigMoments + PlainMoments / 2);
}

TEST(Int8Activations, SavedActivationsShrinkToCodesAndScales) {
  // x -> fc1 -> fc2: fc2's MatMul saves fc1's output h[16,64,32] (an activation) and its
  // weight; fc1 saves the batch input x and its weight. Only h is packed.
  GraphBuilder B;
  TensorId X = B.input("x", {16, 64, 32});
  TensorId W1 = B.weight("fc1.weight", {32, 32}), W2 = B.weight("fc2.weight", {32, 8});
  TensorId H = B.op("MatMul", {X, W1}, {16, 64, 32}, "/fc1/MatMul");
  B.output(B.op("MatMul", {H, W2}, {16, 64, 8}, "/fc2/MatMul"));
  Graph G = B.finish();

  TrainingSetup Native, Packed;
  Native.Loss = Packed.Loss = LossKind::None;
  Packed.Int8Activations = true;
  StepSimulation A = run(G, Native), P = run(G, Packed);
  const int64_t Elements = 16 * 64 * 32;
  EXPECT_EQ(A.SavedAtEndOfForward - P.SavedAtEndOfForward,
            Elements * 4 - (Elements + Elements / 256 * 4));
  // Backward unpacks h to full fp32 for fc2's gradients while the packed copy is still
  // held by the node: in a net this shallow the peak is there, and it grows by the packed
  // bytes. Int8 storage pays off only when many layers' saved tensors are live at once.
  EXPECT_EQ(P.Peak, A.Peak + Elements + Elements / 256 * 4);
}
