//===- CpuConvolutionTest.cpp - torch 1.13's CPU convolution backends ----------===//
//
// The scratch a CPU convolution holds depends on which backend `use_mkldnn` picks and, in
// oneDNN, which weight-gradient kernel; the figures are the c10 allocations measured with
// torch 1.13 on one thread of an AVX2 CPU (the fixtures' machine).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {
/// x[N, C, H, H] -> 3x3 conv, padding 1, C -> C channels; the input needs no gradient, so
/// the backward computes only the weight's.
Graph conv(int64_t N, int64_t C, int64_t H) {
  GraphBuilder B;
  TensorId X = B.input("x", {N, C, H, H});
  TensorId W = B.weight("conv.weight", {C, C, 3, 3});
  TensorId Y = B.op("Conv", {X, W}, {N, C, H, H}, "/conv/Conv");
  B.attribute("pads", std::vector<int64_t>{1, 1, 1, 1});
  B.attribute("kernel_shape", std::vector<int64_t>{3, 3});
  B.output(Y);
  return B.finish();
}

/// Bytes of the convolution's backward scratch held at the step's peak, or -1.
int64_t backwardScratch(const Graph &G, Precision P) {
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  S.Prec = P;
  S.Loss = LossKind::Mse;
  S.Optimizer = OptimizerKind::Sgd; // no states: the peak is in the backward
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  for (const TensorSummary &T : R->PeakInfo.TopTensors)
    if (T.Name == "/conv/Conv backward scratch")
      return T.Bytes;
  return -1;
}
} // namespace

TEST(CpuConvolution, OneDnnGemmWeightGradientWhenTheInputIsShorterThanTheKernel) {
  // [4,64,2,2] x [64,64,3,3]: 4 weights + one image's columns (64*9*2*2 floats) + 256 B,
  // the 599,296 B that holds ResNet-18's measured backward peak.
  EXPECT_EQ(backwardScratch(conv(4, 64, 2), Precision::Fp32), 4 * 147456 + 9216 + 256);
  // Independent of the batch.
  EXPECT_EQ(backwardScratch(conv(16, 64, 2), Precision::Fp32), 4 * 147456 + 9216 + 256);
}

TEST(CpuConvolution, OneDnnDirectKernelOnLargerInputs) {
  // [4,64,4,4]: the JIT kernel holds dY and X copies (16,384 B each) beside the blocked dW,
  // then the blocked dW beside the kept gradient: max(16384 + 16384 + W, 2W) above the
  // start, less the kept gradient W.
  EXPECT_EQ(backwardScratch(conv(4, 64, 4), Precision::Fp32), 147456);
}

TEST(CpuConvolution, BatchOneTakesThnnIm2col) {
  // use_mkldnn declines a 3x3 kernel at batch 1 on a small input: THNN rebuilds the
  // [1, 64*9, 2*2] column buffer for the weight gradient.
  EXPECT_EQ(backwardScratch(conv(1, 64, 2), Precision::Fp32), 64 * 9 * 4 * 4);
}

TEST(CpuConvolution, Bf16WithoutAvx512TakesThnnIm2col) {
  // mkldnn_bf16_device_check() fails on AVX2, so bf16 convolutions unfold in bf16.
  EXPECT_EQ(backwardScratch(conv(4, 64, 2), Precision::Bf16), 4 * 64 * 9 * 4 * 2);
}

namespace {

TEST(CpuConvolution, AConvolutionWithoutItsWeightIsSimulatedNotCrashedOn) {
  // A malformed file's Conv with one input (FuzzStep found it reading past the inputs):
  // no scratch is modelled for it, and the step is still simulated.
  GraphBuilder B;
  TensorId X = B.input("x", {2, 4, 8, 8});
  TensorId Y = B.op("Conv", {X}, {2, 4, 8, 8}, "/conv/Conv");
  B.output(Y);
  Graph G = B.finish();
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  auto C = takeCensus(G, S);
  ASSERT_TRUE(bool(C)) << llvm::toString(C.takeError());
  auto Sim = simulateStep(G, S, *C);
  ASSERT_TRUE(bool(Sim)) << llvm::toString(Sim.takeError());
  EXPECT_GE(Sim->Peak, G.Tensors[Y].bytes());
}

} // namespace
