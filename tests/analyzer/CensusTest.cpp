//===- CensusTest.cpp - parameter census on small built graphs -------------------===//
//
// Each test builds the situation it checks with GraphBuilder and compares the census
// with the bytes PyTorch / bitsandbytes / transformers allocate for it, worked out by
// hand in the test.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/CachingAllocatorModel.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {

/// x[4,8] -> fc1 (8x16 + 16) -> relu -> fc2 (16x4 + 4).
Graph twoLayerMlp() {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 8});
  TensorId W1 = B.weight("fc1.weight", {8, 16}), B1 = B.weight("fc1.bias", {16});
  TensorId W2 = B.weight("fc2.weight", {16, 4}), B2 = B.weight("fc2.bias", {4});
  TensorId H = B.op("MatMul", {X, W1}, {4, 16}, "/fc1/MatMul");
  H = B.op("Add", {H, B1}, {4, 16}, "/fc1/Add");
  H = B.op("Relu", {H}, {4, 16}, "/act/Relu");
  H = B.op("MatMul", {H, W2}, {4, 4}, "/fc2/MatMul");
  B.output(B.op("Add", {H, B2}, {4, 4}, "/fc2/Add"));
  return B.finish();
}

ParameterCensus census(const Graph &G, TrainingSetup S = {}) {
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C)) << (C ? "" : llvm::toString(C.takeError()));
  return C ? std::move(*C) : ParameterCensus{};
}

constexpr int64_t MlpParams = 8 * 16 + 16 + 16 * 4 + 4; // 212

} // namespace

TEST(Census, AdamWKeepsTwoMomentsAndAStepTensorPerParameter) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.TotalParameters, MlpParams);
  EXPECT_EQ(C.TrainableParameters, MlpParams);
  EXPECT_EQ(C.weightBytes(), MlpParams * 4);
  EXPECT_EQ(C.GradientBytes, MlpParams * 4);
  // exp_avg + exp_avg_sq in fp32, plus torch's 4-byte `step` tensor for each of 4 tensors.
  EXPECT_EQ(C.OptimizerStateBytes, 2 * MlpParams * 4 + 4 * 4);
  ASSERT_EQ(C.OptimizerStates.size(), 3u);
  EXPECT_EQ(C.OptimizerStates[2].Name, "step");
  EXPECT_EQ(C.OptimizerStates[2].Bytes, 16);
}

// torch.optim's Adam(W) hosts `step` on the CPU unless it is fused (or capturable):
// on a CUDA device only the fused implementation keeps it in device memory.
TEST(Census, AdamsStepIsDeviceMemoryOnCudaOnlyWhenFused) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Device = DeviceKind::Cuda;
  for (OptimizerImpl I : {OptimizerImpl::ForLoop, OptimizerImpl::Foreach}) {
    S.Impl = I;
    ParameterCensus C = census(G, S);
    EXPECT_EQ(C.OptimizerStateBytes, 2 * MlpParams * 4) << optimizerImplName(I);
    EXPECT_EQ(C.OptimizerStates.size(), 2u) << optimizerImplName(I);
  }
  S.Impl = OptimizerImpl::Fused;
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.OptimizerStateBytes, 2 * MlpParams * 4 + 4 * 4);
  ASSERT_EQ(C.OptimizerStates.size(), 3u);
  EXPECT_EQ(C.OptimizerStates[2].Name, "step");
}

TEST(Census, SgdVariantsAndLion) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Optimizer = OptimizerKind::Sgd;
  EXPECT_EQ(census(G, S).OptimizerStateBytes, 0);
  S.Optimizer = OptimizerKind::SgdMomentum;
  EXPECT_EQ(census(G, S).OptimizerStateBytes, MlpParams * 4);
  S.Optimizer = OptimizerKind::Lion;
  EXPECT_EQ(census(G, S).OptimizerStateBytes, MlpParams * 4);
}

TEST(Census, AdafactorFactorsMatricesIntoRowAndColumn) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Optimizer = OptimizerKind::Adafactor;
  // fc1.weight [8,16]: 8 + 16; fc2.weight [16,4]: 16 + 4; biases keep full moments.
  EXPECT_EQ(census(G, S).OptimizerStateBytes, (8 + 16 + 16 + 4 + 16 + 4) * 4);
}

TEST(Census, EightBitAdamKeepsSmallTensorsIn32Bit) {
  GraphBuilder B;
  TensorId X = B.input("x", {2, 128});
  TensorId Big = B.weight("big.weight", {128, 100}); // 12,800 elements >= 4096
  TensorId Bias = B.weight("big.bias", {100});       // 100 elements < 4096
  TensorId H = B.op("MatMul", {X, Big}, {2, 100}, "/big/MatMul");
  B.output(B.op("Add", {H, Bias}, {2, 100}, "/big/Add"));
  Graph G = B.finish();
  TrainingSetup S;
  S.Optimizer = OptimizerKind::AdamW8bit;
  int64_t Blocks = (12800 + 255) / 256; // 50 blocks, one fp32 absmax each per state
  // Plus the optimizer's two 256-entry fp32 quantization maps, once.
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.SharedOptimizerStateBytes, 2 * 256 * 4);
  EXPECT_EQ(C.OptimizerStateBytes, 2 * 12800 + 2 * Blocks * 4 + 2 * 100 * 4 + 2 * 256 * 4);
}

TEST(Census, Bf16HalvesWeightsGradsAndMomentsButNotTheStep) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Prec = Precision::Bf16;
  S.Device = DeviceKind::Cpu; // where `step` is in the device's memory
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.weightBytes(), MlpParams * 2);
  EXPECT_EQ(C.GradientBytes, MlpParams * 2);
  EXPECT_EQ(C.OptimizerStateBytes, 2 * MlpParams * 2 + 4 * 4);
  EXPECT_EQ(C.MasterWeightBytes, 0);
}

TEST(Census, MixedPrecisionKeepsFp32MasterWeightsAndStates) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Prec = Precision::MixedBf16;
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.weightBytes(), MlpParams * 2);
  EXPECT_EQ(C.GradientBytes, MlpParams * 2);
  EXPECT_EQ(C.MasterWeightBytes, MlpParams * 4);
  EXPECT_EQ(C.OptimizerStateBytes, 2 * MlpParams * 4); // `step` on the host (CUDA, for-loop)
}

TEST(Census, AmpKeepsEverythingFp32) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.Prec = Precision::AmpBf16;
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.weightBytes(), MlpParams * 4);
  EXPECT_EQ(C.GradientBytes, MlpParams * 4);
}

TEST(Census, TrainableFileSelectsByInitializerName) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.TrainableFile = "list.txt";
  S.TrainableNames = {"fc2.weight", "fc2.bias"};
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.TotalParameters, MlpParams);
  EXPECT_EQ(C.TrainableParameters, 16 * 4 + 4);
  EXPECT_EQ(C.GradientBytes, (16 * 4 + 4) * 4);
  EXPECT_EQ(C.OptimizerStateBytes, 2 * (16 * 4 + 4) * 4); // `step` on the host
}

TEST(Census, TrainableFileNamingNoParameterIsAnError) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.TrainableFile = "list.txt";
  S.TrainableNames = {"fc2.weight", "fc9.weight"};
  auto C = takeCensus(G, S);
  ASSERT_FALSE(static_cast<bool>(C));
  std::string Msg = llvm::toString(C.takeError());
  EXPECT_NE(Msg.find("fc9.weight"), std::string::npos) << Msg;
  EXPECT_NE(Msg.find("list.txt"), std::string::npos) << Msg;
}

TEST(Census, TrainAndFreezeRegexes) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.TrainRegex = "^fc1";
  EXPECT_EQ(census(G, S).TrainableParameters, 8 * 16 + 16);
  S.TrainRegex.clear();
  S.FreezeRegex = "bias$";
  EXPECT_EQ(census(G, S).TrainableParameters, 8 * 16 + 16 * 4);
  S.FreezeRegex = "(";
  auto C = takeCensus(G, S);
  ASSERT_FALSE(static_cast<bool>(C));
  EXPECT_NE(llvm::toString(C.takeError()).find("--freeze"), std::string::npos);
}

TEST(Census, NothingTrainableWarns) {
  Graph G = twoLayerMlp();
  TrainingSetup S;
  S.FreezeRegex = ".*";
  ParameterCensus C = census(G, S);
  EXPECT_EQ(C.GradientBytes, 0);
  EXPECT_EQ(C.OptimizerStateBytes, 0);
  bool Warned = false;
  for (const Diagnostic &D : C.Diags.all())
    Warned |= D.Code == "nothing-trains";
  EXPECT_TRUE(Warned);
}

namespace {
/// ids -> Gather(embedding [32, 8]) -> MatMul(head [8, 32]): the tied-LM-head shape.
Graph tiedHeadCandidate() {
  GraphBuilder B;
  TensorId Ids = B.input("input_ids", {2, 5}, DType::Int64);
  TensorId Emb = B.weight("wte.weight", {32, 8});
  TensorId Head = B.weight("onnx::MatMul_9", {8, 32});
  TensorId H = B.op("Gather", {Emb, Ids}, {2, 5, 8}, "/wte/Gather");
  B.output(B.op("MatMul", {H, Head}, {2, 5, 32}, "/lm_head/MatMul"));
  return B.finish();
}
} // namespace

TEST(Census, TieModesOnAnEmbeddingAndATransposedHead) {
  Graph G = tiedHeadCandidate();
  TrainingSetup S;
  S.Tie = TieMode::Yes;
  ParameterCensus Yes = census(G, S);
  EXPECT_EQ(Yes.TotalParameters, 256);
  EXPECT_EQ(Yes.TiedGroups, 1);
  ASSERT_EQ(Yes.Parameters.size(), 1u);
  EXPECT_EQ(Yes.Parameters[0].Name, "wte.weight");
  EXPECT_EQ(Yes.Parameters[0].Tensors.size(), 2u);
  S.Tie = TieMode::No;
  EXPECT_EQ(census(G, S).TotalParameters, 512);
  // Auto without payloads cannot confirm: two parameters and a warning saying so.
  S.Tie = TieMode::Auto;
  ParameterCensus Auto = census(G, S);
  EXPECT_EQ(Auto.TotalParameters, 512);
  bool Warned = false;
  for (const Diagnostic &D : Auto.Diags.all())
    Warned |= D.Code == "tie-unconfirmed" && D.Message.find("--tie=yes") != std::string::npos;
  EXPECT_TRUE(Warned);
}

TEST(Census, DeclaredTieIsUsedWhenPayloadsAreMissing) {
  Graph G = tiedHeadCandidate();
  G.DeclaredTieWordEmbeddings = true;
  EXPECT_EQ(census(G).TotalParameters, 256);
}

TEST(Census, BatchNormRunningStatsAreBuffersWithABatchCounter) {
  GraphBuilder B;
  TensorId X = B.input("x", {2, 3, 8, 8});
  TensorId W = B.weight("conv.weight", {4, 3, 3, 3});
  TensorId Scale = B.weight("bn.weight", {4}), Bias = B.weight("bn.bias", {4});
  TensorId Mean = B.weight("bn.running_mean", {4}), Var = B.weight("bn.running_var", {4});
  TensorId H = B.op("Conv", {X, W}, {2, 4, 6, 6}, "/conv/Conv");
  B.output(B.op("BatchNormalization", {H, Scale, Bias, Mean, Var}, {2, 4, 6, 6},
                "/bn/BatchNormalization"));
  Graph G = B.finish();
  ParameterCensus C = census(G);
  EXPECT_EQ(C.TotalParameters, 4 * 27 + 8);
  // running_mean + running_var (fp32) + num_batches_tracked (int64).
  EXPECT_EQ(C.BufferBytes, 4 * 4 + 4 * 4 + 8);
  EXPECT_EQ(C.weightBytes(), (4 * 27 + 8) * 4 + 40);
  TrainingSetup S;
  S.Prec = Precision::Bf16;
  EXPECT_EQ(census(G, S).BufferBytes, 4 * 2 + 4 * 2 + 8) << "the int64 counter stays int64";
}

TEST(Census, ExporterFoldedMaskCountsOncePerBlock) {
  GraphBuilder B;
  TensorId X = B.input("x", {1, 1, 4, 4});
  TensorId Mask = B.weight("onnx::Slice_7", {1, 1, 16, 16}, DType::Bool);
  TensorId Start = B.ints("starts", {0}), End = B.ints("ends", {4}), Axes = B.ints("axes", {2});
  TensorId M0 = B.op("Slice", {Mask, Start, End, Axes}, {1, 1, 4, 16}, "/h.0/attn/Slice",
                     DType::Bool);
  TensorId M1 = B.op("Slice", {Mask, Start, End, Axes}, {1, 1, 4, 16}, "/h.1/attn/Slice",
                     DType::Bool);
  TensorId H = B.op("Where", {M0, X, X}, {1, 1, 4, 4}, "/h.0/attn/Where");
  B.output(B.op("Where", {M1, H, H}, {1, 1, 4, 4}, "/h.1/attn/Where"));
  Graph G = B.finish();
  EXPECT_EQ(G.Tensors[Mask].Kind, TensorKind::Buffer);
  EXPECT_EQ(census(G).BufferBytes, 2 * 256);
}

TEST(Census, ScalarsAndShapeListsAreNotParameters) {
  GraphBuilder B;
  TensorId X = B.input("x", {2, 6});
  TensorId Scale = B.weight("/attn/Constant_output_0", {});
  TensorId Shape = B.ints("/attn/Constant_1_output_0", {3, 4});
  TensorId H = B.op("Div", {X, Scale}, {2, 6}, "/attn/Div");
  B.output(B.op("Reshape", {H, Shape}, {3, 4}, "/attn/Reshape"));
  Graph G = B.finish();
  ParameterCensus C = census(G);
  EXPECT_EQ(C.TotalParameters, 0);
  EXPECT_EQ(C.BufferBytes, 0);
  EXPECT_EQ(G.Tensors[Scale].Kind, TensorKind::Constant);
  EXPECT_EQ(G.Tensors[Shape].Kind, TensorKind::Constant);
}

TEST(Census, RotaryTableReadThroughSliceIsABuffer) {
  GraphBuilder B;
  TensorId Q = B.input("q", {1, 2, 4, 8});
  TensorId Cos = B.weight("/layers.0/self_attn/Constant_8_output_0", {64, 8});
  TensorId Start = B.ints("s", {0}), End = B.ints("e", {4});
  TensorId C4 = B.op("Slice", {Cos, Start, End}, {4, 8}, "/layers.0/self_attn/Slice");
  B.output(B.op("Mul", {Q, C4}, {1, 2, 4, 8}, "/layers.0/self_attn/Mul"));
  Graph G = B.finish();
  EXPECT_EQ(G.Tensors[Cos].Kind, TensorKind::Buffer);
  ParameterCensus C = census(G);
  EXPECT_EQ(C.TotalParameters, 0);
  EXPECT_EQ(C.BufferBytes, 64 * 8 * 4) << "a shared module's table counts once";
}

TEST(Census, WeightReachedThroughTransposeIsAParameter) {
  GraphBuilder B;
  TensorId X = B.input("x", {2, 8});
  TensorId W = B.weight("/fc/Constant_output_0", {16, 8});
  TensorId WT = B.op("Transpose", {W}, {8, 16}, "/fc/Transpose");
  B.output(B.op("MatMul", {X, WT}, {2, 16}, "/fc/MatMul"));
  Graph G = B.finish();
  EXPECT_EQ(G.Tensors[W].Kind, TensorKind::Parameter);
  ParameterCensus C = census(G);
  ASSERT_EQ(C.Parameters.size(), 1u);
  EXPECT_EQ(C.Parameters[0].LayerPath, "fc");
}

namespace {

/// x[1,2048] -> fc (2048 x 2048, 16 MiB in fp32): one weight whose tensors are each
/// exactly 16 MiB, a multiple of the caching allocator's 2 MiB rounding.
Graph oneSquareLayer() {
  GraphBuilder B;
  TensorId X = B.input("x", {1, 2048});
  TensorId W = B.weight("fc.weight", {2048, 2048});
  B.output(B.op("MatMul", {X, W}, {1, 2048}, "/fc/MatMul"));
  return B.finish();
}

} // namespace

// Adam's moments are two tensors (zeros_like each), so the caching allocator gives each a
// 16 MiB segment of its own; as one storage with the 4-byte step they took 32 MiB + 4 B,
// rounded to a 34 MiB segment. On CUDA the replay then reserves: the cuBLAS workspaces'
// 20 MiB segment, the weight, two moments, the gradient and the update's two temporaries
// (16 MiB each), and one 2 MiB small-pool segment for everything under 1 MiB.
TEST(Census, EachOptimizerStateIsItsOwnAllocationInTheAllocatorReplay) {
  Graph G = oneSquareLayer();
  constexpr int64_t MiB = 1 << 20;
  for (OptimizerImpl I : {OptimizerImpl::ForLoop, OptimizerImpl::Fused}) {
    TrainingSetup S;
    S.Device = DeviceKind::Cuda;
    S.Gpu = "a100-sxm-80gb";
    S.Impl = I;
    ParameterCensus C = census(G, S);
    auto R = simulateStep(G, S, C);
    ASSERT_TRUE(static_cast<bool>(R)) << llvm::toString(R.takeError());
    ASSERT_TRUE(R->PeakReserved.has_value());
    int64_t Context = estimateCudaRuntimeOverhead(S.Gpu).ContextBytes;
    // The fused update needs no temporaries: 32 MiB less.
    int64_t Expected = I == OptimizerImpl::Fused ? 20 + 4 * 16 + 2 : 20 + 6 * 16 + 2;
    EXPECT_EQ(*R->PeakReserved - Context, Expected * MiB) << optimizerImplName(I);
  }
}
