//===- ExecutorTest.cpp - the tracking allocator, the tape and the gradients ----===//
//
// The tracking allocator's bookkeeping on its own; a tiny MLP whose step is worked out by
// hand, allocation by allocation, so the live bytes at the peak are known exactly; and a
// finite-difference check that the executor's gradients are right (it really computes,
// through linear layers, layer norm, a residual fork, a non-weight matmul, transpose and
// softmax).
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/Executor.h"
#include "cupti_probe/TrackingAllocator.h"

#include "analyzer/ParameterCensus.h"
#include "analyzer/ModelImporter.h"
#include "support/GraphBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace trainmem;
using namespace trainmem::probe;
using namespace trainmem::testing;

namespace {

TEST(TrackingAllocator, CountsExactBytesPerCategoryAndThePeak) {
  auto Dev = kernels::makeHostDevice();
  TrackingAllocator A(*Dev);
  A.setPhase("forward");
  A.setOp("op1");
  BufferRef W = A.allocate(1000, MemCategory::Weights, "w");
  BufferRef T = A.allocate(3, MemCategory::Temporaries, "t"); // no rounding
  EXPECT_EQ(A.live().Weights, 1000);
  EXPECT_EQ(A.live().Temporaries, 3);
  EXPECT_EQ(A.liveTotal(), 1003);
  A.recategorize(*T, MemCategory::Activations);
  EXPECT_EQ(A.live().Temporaries, 0);
  EXPECT_EQ(A.live().Activations, 3);
  BufferRef C = A.allocate(64, MemCategory::Constants, "c");
  EXPECT_EQ(A.liveTotal(), 1003) << "constants stay out of the step's total";
  EXPECT_EQ(A.constantBytes(), 64);
  A.setOp("op2");
  {
    BufferRef Big = A.allocate(500, MemCategory::Temporaries, "big");
    BufferRef Shared = Big; // a second reference keeps it alive
    Big.reset();
    EXPECT_EQ(A.liveTotal(), 1503);
  }
  EXPECT_EQ(A.liveTotal(), 1003);
  EXPECT_EQ(A.peak(), 1503);
  EXPECT_EQ(A.peakOp(), "op2");
  EXPECT_EQ(A.peakByCategory().Temporaries, 500);
  ASSERT_EQ(A.liveAtPeak().size(), 3u);
  EXPECT_EQ(A.liveAtPeak()[0].Name, "w");
  EXPECT_EQ(A.liveAtPeak()[1].Name, "big");
  A.resetPeak();
  EXPECT_EQ(A.peak(), 1003);
  A.recordTimeline(true);
  T.reset();
  ASSERT_EQ(A.timeline().size(), 1u);
  EXPECT_EQ(A.timeline()[0].Live.Activations, 0);
  EXPECT_EQ(A.maxByCategory().Activations, 3);
}

/// x [4, 8] -> Linear(W1 [8, 16]) -> Relu -> Linear(W2 [16, 10]) -> logits [4, 10].
Graph tinyMlp() {
  GraphBuilder B("mlp");
  TensorId X = B.input("x", {4, 8});
  TensorId W1 = B.weight("fc1.weight", {8, 16});
  TensorId W2 = B.weight("fc2.weight", {16, 10});
  TensorId H = B.op("MatMul", {X, W1}, {4, 16}, "/fc1/MatMul");
  TensorId R = B.op("Relu", {H}, {4, 16}, "/act/Relu");
  TensorId Logits = B.op("MatMul", {R, W2}, {4, 10}, "/fc2/MatMul");
  B.output(Logits);
  return B.finish();
}

TEST(Executor, TinyMlpLiveBytesAtThePeakByHand) {
  Graph G = tinyMlp();
  TrainingSetup Setup;
  Setup.Device = DeviceKind::Cpu;
  Setup.Impl = OptimizerImpl::Fused;
  auto Census = takeCensus(G, Setup);
  ASSERT_TRUE(bool(Census)) << llvm::toString(Census.takeError());
  auto Dev = kernels::makeHostDevice();
  auto M = executeTrainingSteps(G, Setup, *Census, *Dev);
  ASSERT_TRUE(bool(M)) << llvm::toString(M.takeError());
  // Step 2 starts with weights 512 + 640, Adam states 2 x (512 + 640) + 2 x 4-byte steps,
  // inputs x 128 + labels 4 x int64 = 3,624 bytes.
  // Forward keeps relu's output r (256: relu saves its result, fc2 its input), the fp32
  // log-probs (160) and total_weight (4) for backward: 420 bytes saved.
  EXPECT_EQ(M->SavedAtEndOfForward, 420);
  // Backward: seed 4, loss 4; NllLossBackward +160, LogSoftmaxBackward +160 (log-probs and
  // its grad freed after); fc2: dW2 640 + dr 256; ReluBackward: dh 256 while dr and r are
  // still held = 3,624 + 256 + 4 + 4 + 640 + 256 + 256 = 5,040.
  EXPECT_EQ(M->Peak, 5040);
  EXPECT_EQ(M->PeakPhase, "backward");
  EXPECT_EQ(M->AtPeak.Gradients, 640);
  EXPECT_EQ(M->AtPeak.Activations, 256);
  EXPECT_EQ(M->AtPeak.OptimizerStates, 2312);
  EXPECT_EQ(M->MaxByCategory.Gradients, 1152); // dW1 joins before the optimizer step
  EXPECT_EQ(M->Source, "host-allocator");
  ASSERT_EQ(M->Losses.size(), 2u);
  EXPECT_TRUE(std::isfinite(M->Losses[1]));
}

/// The error of running two training steps of G on the host ("" and a failure when they
/// run).
std::string executionError(const Graph &G) {
  TrainingSetup Setup;
  Setup.Impl = OptimizerImpl::Fused;
  auto Census = takeCensus(G, Setup);
  if (!Census)
    return "census: " + llvm::toString(Census.takeError());
  auto Dev = kernels::makeHostDevice();
  auto M = executeTrainingSteps(G, Setup, *Census, *Dev);
  if (M) {
    ADD_FAILURE() << "the steps ran";
    return "";
  }
  return llvm::toString(M.takeError());
}

TEST(Executor, UnsupportedOpsAreNamed) {
  GraphBuilder B("conv");
  TensorId X = B.input("x", {1, 3, 8, 8});
  TensorId W = B.weight("conv.weight", {4, 3, 3, 3});
  TensorId Y = B.op("Conv", {X, W}, {1, 4, 6, 6}, "/conv/Conv");
  TensorId F = B.op("Flatten", {Y}, {1, 144}, "/flat/Flatten");
  B.output(F);
  std::string Msg = executionError(B.finish());
  EXPECT_NE(Msg.find("/conv/Conv"), std::string::npos) << Msg;
  EXPECT_NE(Msg.find("op Conv"), std::string::npos) << Msg;
}

TEST(Executor, TensorsOfUnknownShapeAreRefusedNotRunAsScalars) {
  // A Transpose of a tensor inference left unknown indexed its dims past the end (SIGSEGV
  // in `validate` on ONNX Runtime's distilbert attention-fusion model).
  GraphBuilder B("mlp");
  TensorId X = B.input("x", {2, 8});
  TensorId W = B.weight("fc.weight", {8, 4});
  TensorId H = B.op("MatMul", {X, W}, {2, 4}, "/fc/MatMul");
  TensorId T = B.op("Transpose", {H}, {4, 2}, "/t/Transpose");
  B.output(B.op("Transpose", {T}, {2, 4}, "/back/Transpose"));
  Graph G = B.finish();
  G.Tensors[T].ShapeKnown = false;
  G.Tensors[T].Shape.clear();
  std::string Msg = executionError(G);
  EXPECT_NE(Msg.find("tensors of unknown shape (1, the first '/t/Transpose_output_0'"),
            std::string::npos)
      << Msg;
}

/// Analytic gradients against central differences of the loss, for every parameter.
void expectGradientsMatchFiniteDifferences(const Graph &G) {
  TrainingSetup Setup;
  Setup.Device = DeviceKind::Cpu;
  Setup.Impl = OptimizerImpl::Fused;
  auto Census = takeCensus(G, Setup);
  ASSERT_TRUE(bool(Census)) << llvm::toString(Census.takeError());
  auto Dev = kernels::makeHostDevice();
  ExecutorOptions Options;
  Options.Seed = 11;
  auto E = Executor::create(G, Setup, *Census, *Dev, Options);
  ASSERT_TRUE(bool(E)) << llvm::toString(E.takeError());
  // Larger weights than the default init so every path carries signal.
  for (size_t P = 0; P < Census->Parameters.size(); ++P) {
    std::vector<float> V = E->readParameter(P);
    for (size_t I = 0; I < V.size(); ++I)
      V[I] = static_cast<float>(std::sin(1.7 * static_cast<double>(I + 3 * P) + 0.3));
    E->writeParameter(P, V);
  }
  auto Loss = E->step(/*RunOptimizer=*/false);
  ASSERT_TRUE(bool(Loss)) << llvm::toString(Loss.takeError());
  int Checked = 0;
  for (size_t P = 0; P < Census->Parameters.size(); ++P) {
    std::vector<float> Grad = E->readGradient(P);
    std::vector<float> V = E->readParameter(P);
    ASSERT_EQ(Grad.size(), V.size()) << Census->Parameters[P].Name;
    for (size_t I = 0; I < V.size(); I += std::max<size_t>(1, V.size() / 7)) {
      const float Eps = 1e-2f;
      float Saved = V[I];
      V[I] = Saved + Eps;
      E->writeParameter(P, V);
      auto Up = E->lossOnly();
      V[I] = Saved - Eps;
      E->writeParameter(P, V);
      auto Down = E->lossOnly();
      V[I] = Saved;
      E->writeParameter(P, V);
      ASSERT_TRUE(Up && Down);
      double Numeric = (static_cast<double>(*Up) - *Down) / (2.0 * Eps);
      EXPECT_NEAR(Grad[I], Numeric, 2e-3 + 3e-2 * std::fabs(Numeric))
          << Census->Parameters[P].Name << "[" << I << "]";
      ++Checked;
    }
  }
  EXPECT_GT(Checked, 10);
}

TEST(Executor, GradientsMatchFiniteDifferencesThroughNormAndResidual) {
  GraphBuilder B("fd");
  TensorId X = B.input("x", {3, 5});
  TensorId W1 = B.weight("fc1.weight", {5, 6});
  TensorId B1 = B.weight("fc1.bias", {6});
  TensorId Gamma = B.weight("ln.weight", {6});
  TensorId Beta = B.weight("ln.bias", {6});
  TensorId S = B.weight("gate.scale", {6});
  TensorId W2 = B.weight("head.weight", {6, 7});
  TensorId H = B.op("MatMul", {X, W1}, {3, 6}, "/fc1/MatMul");
  TensorId HB = B.op("Add", {H, B1}, {3, 6}, "/fc1/Add");
  TensorId N = B.op("LayerNormalization", {HB, Gamma, Beta}, {3, 6}, "/ln/LayerNormalization");
  TensorId T = B.op("Tanh", {N}, {3, 6}, "/act/Tanh");
  TensorId Scaled = B.op("Mul", {T, S}, {3, 6}, "/gate/Mul");
  TensorId Res = B.op("Add", {Scaled, N}, {3, 6}, "/res/Add"); // N feeds two ops
  TensorId Logits = B.op("MatMul", {Res, W2}, {3, 7}, "/head/MatMul");
  B.output(Logits);
  expectGradientsMatchFiniteDifferences(B.finish());
}

TEST(Executor, GradientsMatchFiniteDifferencesThroughAClamp) {
  // torch.clamp(x, -0.4, 0.4): the gradient passes where the input lay within the bounds
  // (some of these values lie outside them: with the cut ignored, 8 checks fail; none lies
  // so near a bound that the central differences cross it).
  GraphBuilder B("clamp");
  TensorId X = B.input("x", {3, 4});
  TensorId W1 = B.weight("fc1.weight", {4, 6});
  TensorId W2 = B.weight("fc2.weight", {6, 5});
  TensorId Lo = B.weight("lo", {}), Hi = B.weight("hi", {});
  B.graph().Tensors[Lo].FloatValues = {-0.4};
  B.graph().Tensors[Hi].FloatValues = {0.4};
  TensorId H = B.op("MatMul", {X, W1}, {3, 6}, "/fc1/MatMul");
  TensorId C = B.op("Clip", {H, Lo, Hi}, {3, 6}, "/act/Clip");
  TensorId Logits = B.op("MatMul", {C, W2}, {3, 5}, "/fc2/MatMul");
  B.output(Logits);
  expectGradientsMatchFiniteDifferences(B.finish());
}

TEST(Executor, GradientsMatchFiniteDifferencesThroughAttention) {
  GraphBuilder B("attn");
  TensorId X = B.input("x", {4, 6});
  TensorId Wq = B.weight("q.weight", {6, 3});
  TensorId Wk = B.weight("k.weight", {6, 3});
  TensorId Wv = B.weight("v.weight", {6, 3});
  TensorId Wo = B.weight("o.weight", {3, 5});
  TensorId Q = B.op("MatMul", {X, Wq}, {4, 3}, "/q/MatMul");
  TensorId K = B.op("MatMul", {X, Wk}, {4, 3}, "/k/MatMul");
  TensorId V = B.op("MatMul", {X, Wv}, {4, 3}, "/v/MatMul");
  TensorId Kt = B.op("Transpose", {K}, {3, 4}, "/attn/Transpose");
  B.graph().Nodes.back().Attributes["perm"] = std::vector<int64_t>{1, 0};
  TensorId Scores = B.op("MatMul", {Q, Kt}, {4, 4}, "/attn/MatMul");
  TensorId P = B.op("Softmax", {Scores}, {4, 4}, "/attn/Softmax");
  TensorId O = B.op("MatMul", {P, V}, {4, 3}, "/attn/MatMul_1");
  TensorId Logits = B.op("MatMul", {O, Wo}, {4, 5}, "/o/MatMul");
  B.output(Logits);
  expectGradientsMatchFiniteDifferences(B.finish());
}

} // namespace

/// The model of a config.json text (batch 1, 5 tokens), its gradients checked against
/// central differences.
void expectConfigGradientsMatchFiniteDifferences(const char *Config) {
  llvm::SmallString<128> Path;
  ASSERT_FALSE(llvm::sys::fs::createTemporaryFile("moe-fd", "json", Path));
  {
    std::error_code EC;
    llvm::raw_fd_ostream OS(Path, EC);
    ASSERT_FALSE(EC);
    OS << Config;
  }
  ImportOptions O;
  O.Dims = {{"batch", 1}, {"seq", 5}};
  auto G = importHfConfig(std::string(Path), O);
  llvm::sys::fs::remove(Path);
  ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
  expectGradientsMatchFiniteDifferences(*G);
}

TEST(Executor, GradientsMatchFiniteDifferencesThroughMixtureOfExperts) {
  // A one-layer Mixtral (4 experts, 2 per token) from its config: the router's top-k, the
  // sorted pairs, the gathers, both grouped matmuls and the scatter back, every parameter
  // (router, experts, attention, norms) checked against central differences.
  expectConfigGradientsMatchFiniteDifferences(
      R"({"model_type": "mixtral", "architectures": ["MixtralForCausalLM"],
          "hidden_size": 8, "intermediate_size": 6, "num_hidden_layers": 1,
          "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 11,
          "num_local_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 16,
          "tie_word_embeddings": false})");
}

TEST(Executor, GradientsMatchFiniteDifferencesThroughDeepSeek) {
  // A two-layer DeepSeek-V3 (the second with experts), eager attention: the latent
  // attention's bottlenecks, split and copied keys, interleaved rotary, and the router's
  // fp32 sigmoid scores gathered for the chosen experts (its group ranking and masked top-k
  // carry no gradient), the shared expert. The routing weights scaled by 40, unnormalised,
  // so that their gradient outweighs the tolerance (at 2.5, renormalised, the gather's
  // gradient could be dropped and no check failed; with these, 125 fail: checked).
  expectConfigGradientsMatchFiniteDifferences(
      R"({"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
          "attn_implementation": "eager", "hidden_size": 8, "intermediate_size": 12,
          "moe_intermediate_size": 6, "num_hidden_layers": 2, "num_attention_heads": 2,
          "num_key_value_heads": 2, "n_routed_experts": 4, "num_experts_per_tok": 2,
          "n_group": 2, "topk_group": 1, "first_k_dense_replace": 1, "n_shared_experts": 1,
          "kv_lora_rank": 4, "q_lora_rank": 6, "qk_rope_head_dim": 2, "qk_nope_head_dim": 2,
          "v_head_dim": 3, "vocab_size": 11, "max_position_embeddings": 16,
          "routed_scaling_factor": 40, "norm_topk_prob": false})");
}

TEST(Executor, GradientsMatchFiniteDifferencesThroughGptOss) {
  // A one-layer gpt-oss: the attention sinks (their row max a top-1), the half-head
  // rotary, the sliding mask, the router's bias and top-k softmax, the experts' biases
  // added in place, the SwiGLU on strided gate and up columns (with a limit no value
  // reaches: central differences across a clamp's kink are off by its slope; the cut is
  // checked on its own below).
  expectConfigGradientsMatchFiniteDifferences(
      R"({"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"],
          "hidden_size": 8, "intermediate_size": 6, "num_hidden_layers": 1,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
          "vocab_size": 11, "num_local_experts": 4, "num_experts_per_tok": 2,
          "sliding_window": 3, "swiglu_limit": 100, "max_position_embeddings": 16})");
}
