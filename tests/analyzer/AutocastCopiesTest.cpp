//===- AutocastCopiesTest.cpp - copies a matmul makes of its operands ------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/OpMemoryRules.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {
/// One autocast (bf16) step of G on CUDA, with an MSE loss.
StepSimulation ampStepOnCuda(const Graph &G) {
  TrainingSetup S;
  S.Device = DeviceKind::Cuda;
  S.Prec = Precision::AmpBf16;
  S.Loss = LossKind::Mse;
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  if (!C)
    return StepSimulation();
  auto Sim = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(Sim)) << llvm::toString(Sim.takeError());
  return Sim ? std::move(*Sim) : StepSimulation();
}

/// x [64, 128] through a linear to 256 features (with or without a bias), then a ReLU.
StepSimulation ampLinearStep(bool WithBias) {
  GraphBuilder B;
  TensorId X = B.input("x", {64, 128});
  TensorId Y = B.op("MatMul", {X, B.weight("proj.weight", {128, 256})}, {64, 256}, "/proj/MatMul");
  if (WithBias)
    Y = B.op("Add", {Y, B.weight("proj.bias", {256})}, {64, 256}, "/proj/Add");
  B.output(B.op("Relu", {Y}, {64, 256}, "/act/Relu"));
  return ampStepOnCuda(B.finish());
}
} // namespace

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
  const StepSimulation Sim = ampStepOnCuda(B.finish());
  ASSERT_FALSE(Sim.Timeline.empty());
  EXPECT_EQ(Sim.Timeline.back().Live.Temporaries, 0) << "a copy outlived the step";
  EXPECT_EQ(Sim.Timeline.back().Live.Activations, 0);
  // While the matmul runs: the fp32 activation (32 KiB), its bf16 cast and the cast's
  // contiguous copy (16 KiB each), the weight's bf16 copy (1 KiB) and the bf16 output
  // (8 KiB); never an fp32 copy (it would be 32 KiB more).
  int64_t AtMatmul = -1;
  for (const TimelinePoint &P : Sim.Timeline)
    if (P.Phase == "forward" && P.Op == "/proj/MatMul")
      AtMatmul = P.Live.Temporaries + P.Live.Activations;
  EXPECT_EQ(AtMatmul, 32768 + 16384 + 16384 + 1024 + 8192);
}

// On the CPU a binary op whose operands differ in dtype first copies the narrower one to
// the result's dtype (TensorIterator's input promotion makes a temporary there; CUDA casts
// inside the kernel). Under autocast a bf16 matmul output plus an fp32 activation: the
// add holds a 32 KiB fp32 copy of the 16 KiB bf16 operand beside its 32 KiB fp32 result on
// the CPU, not on CUDA; an add of two fp32 tensors copies nothing on either.
TEST(AutocastCopies, OnTheCpuAMixedDtypeBinaryOpCopiesTheNarrowerOperand) {
  GraphBuilder B;
  TensorId X = B.input("x", {64, 128});
  TensorId A = B.op("Relu", {X}, {64, 128}, "/act/Relu"); // fp32
  TensorId W = B.weight("proj.weight", {128, 128});
  TensorId H = B.op("MatMul", {A, W}, {64, 128}, "/proj/MatMul"); // bf16 under autocast
  TensorId Mixed = B.op("Add", {H, A}, {64, 128}, "/mixed/Add");
  B.output(B.op("Add", {Mixed, A}, {64, 128}, "/same/Add"));
  Graph G = B.finish();
  auto LiveAt = [&](DeviceKind Device, const char *Op) {
    TrainingSetup S;
    S.Device = Device;
    S.Prec = Precision::AmpBf16;
    S.Loss = LossKind::Mse;
    auto C = takeCensus(G, S);
    EXPECT_TRUE(static_cast<bool>(C));
    auto Sim = simulateStep(G, S, *C);
    EXPECT_TRUE(static_cast<bool>(Sim));
    int64_t Most = -1;
    for (const TimelinePoint &P : Sim->Timeline)
      if (P.Phase == "forward" && P.Op == Op)
        Most = std::max(Most, P.Live.Temporaries + P.Live.Activations);
    return Most;
  };
  EXPECT_EQ(LiveAt(DeviceKind::Cpu, "/mixed/Add") - LiveAt(DeviceKind::Cuda, "/mixed/Add"),
            64 * 128 * 4);
  EXPECT_EQ(LiveAt(DeviceKind::Cpu, "/same/Add"), LiveAt(DeviceKind::Cuda, "/same/Add"));
}

// The CPU's LayerNorm keeps its mean and rstd in the input's dtype, unless a 16-bit input
// meets fp32 weights (its "mixed type", how CPU autocast runs it: autocast leaves LayerNorm
// alone on the CPU), where they are fp32; CUDA keeps them in fp32 always. Measured: Phi's
// per-head q and k norms on bf16 projections under autocast kept fp32 statistics.
TEST(AutocastCopies, CpuLayerNormStatisticsFollowTheMixedInputRule) {
  GraphBuilder B;
  TensorId X = B.input("x", {64, 128});
  TensorId W = B.weight("norm.weight", {128});
  TensorId Bias = B.weight("norm.bias", {128});
  B.output(B.op("LayerNormalization", {X, W, Bias}, {64, 128}, "/norm/LayerNormalization"));
  Graph G = B.finish();
  std::vector<SimOp> Ops = buildSimOps(G);
  ASSERT_EQ(Ops.size(), 1u);
  auto StatBytes = [&](bool Cpu, DType Input, DType Weights) {
    RuleContext Ctx{G};
    Ctx.Cpu = Cpu;
    Ctx.TypeOf.assign(G.Tensors.size(), Weights);
    Ctx.TypeOf[X] = Input;
    Ctx.RequiresGrad.assign(G.Tensors.size(), true);
    int64_t Bytes = 0;
    for (const SavedItem &Item : memoryRuleFor(Ops[0], Ctx).Saved)
      if (Item.What == SavedItem::Extra)
        Bytes += Item.ExtraBytes;
    return Bytes;
  };
  const int64_t Rows = 64;
  EXPECT_EQ(StatBytes(true, DType::BFloat16, DType::Float32), 2 * Rows * 4);  // autocast
  EXPECT_EQ(StatBytes(true, DType::BFloat16, DType::BFloat16), 2 * Rows * 2); // pure bf16
  EXPECT_EQ(StatBytes(true, DType::Float32, DType::Float32), 2 * Rows * 4);
  EXPECT_EQ(StatBytes(false, DType::BFloat16, DType::BFloat16), 2 * Rows * 4); // CUDA
}

// Autocast casts a linear's bias with its weight and caches both copies (leaves that
// require grad) until its context exits: after the linear, a biased model holds the
// bias's 16-bit copy beside the weight's. Measured: OPT's biases under autocast with
// checkpointing, live at the loss (4,608 B in the shrunk model), and BERT's and GPT-2's
// heads under autocast (-0.02..-0.03% before).

TEST(AutocastCopies, ALinearsBiasCopyIsCachedLikeItsWeight) {
  auto LiveAfterLinear = [](bool WithBias) {
    const StepSimulation Sim = ampLinearStep(WithBias);
    for (const TimelinePoint &P : Sim.Timeline)
      if (P.Phase == "forward" && P.Op == "/act/Relu")
        return P.Live.Temporaries + P.Live.Activations;
    ADD_FAILURE() << "no point at the activation";
    return int64_t(-1);
  };
  EXPECT_EQ(LiveAfterLinear(true) - LiveAfterLinear(false), 256 * 2);
}

// Under autocast a matmul's backward makes its operands' gradients in the copies' 16-bit
// type; each copy's ToCopyBackward casts them to fp32 after the matmul's node returns (its
// incoming gradient freed), the 16-bit one live until the fp32 one is made. Measured on the
// CPU: OPT-350m under autocast peaked 134 KB lower than fp32 gradients at the matmul gave,
// and ResNet-18's convolutions (-0.05% -> 0).
TEST(AutocastCopies, GradientsAreMadeIn16BitsAndCastToFp32AfterTheOp) {
  const StepSimulation Sim = ampLinearStep(false);
  const std::vector<TimelinePoint> &T = Sim.Timeline;
  auto Live = [](const TimelinePoint &P) { return P.Live.Temporaries + P.Live.Gradients; };
  size_t Mm = 0, Cast = 0;
  for (size_t I = 1; I < T.size(); ++I) {
    if (T[I].Phase != "backward")
      continue;
    if (!Mm && T[I].Op == "/proj/MatMul")
      Mm = I;
    if (!Cast && T[I].Op == "/proj/MatMul (gradient to fp32)")
      Cast = I;
  }
  ASSERT_GT(Mm, 0u);
  ASSERT_GT(Cast, Mm) << "the cast to fp32 follows the matmul's backward";
  // The matmul's backward adds the weight's gradient in bf16: 128 x 256 x 2 bytes.
  EXPECT_EQ(Live(T[Mm]) - Live(T[Mm - 1]), 128 * 256 * 2);
  // The cast holds it beside the fp32 one, the incoming bf16 gradient of the output
  // ([64, 256]) freed by then.
  EXPECT_EQ(Live(T[Cast]) - Live(T[Mm]), 128 * 256 * 4 - 64 * 256 * 2);
}
