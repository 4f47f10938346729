//===- HfStepRulesTest.cpp - how transformers runs a step, as the HF importer builds it -===//
//
// The rules of a training step that the Hugging Face importer's graphs carry and the
// simulator follows, each measured with transformers 5.24 on PyTorch 2.15: where a
// config's dropout applies, SDPA's masks (unpadded, sliding, padded) and grouped heads,
// the key/value cache, the non-reentrant recompute, family-specific norms, rotaries and
// soft-caps (Gemma 2 and 3, OLMo 2).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/OpMemoryRules.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/HfConfigTestSupport.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/JSON.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>

using namespace trainmem;
using namespace trainmem::testing;

// A config's dropout applies where the family's code applies it: LLaMA's
// attention_dropout on the attention probabilities only (before, every site the simulator
// finds for an exported graph took it: residual projections and embeddings too, +2.7% on
// the measured tiny-llama); GPT-2's three probabilities each at its own place.
TEST(HfStepRules, ConfigDropoutGoesWhereTheFamilysCodeAppliesIt) {
  auto DropoutSites = [](const Graph &G) {
    std::set<std::string> Kinds;
    StepSimulation R = simulateOnCpu(G, [](TrainingSetup &S) {
      S.Attention = AttentionImpl::Eager;
    });
    for (const TimelinePoint &P : R.Timeline) {
      llvm::StringRef Op(P.Op);
      if (!Op.ends_with(" dropout"))
        continue;
      Kinds.insert(Op.contains("Softmax") || Op.contains("CastLike") ? "attention"
                   : Op.contains("proj") || Op.contains("c_proj")     ? "residual"
                                                                      : "other");
    }
    return Kinds;
  };
  ConfigVariant Llama("tiny-llama", "llama-attn-dropout", {{"attention_dropout", 0.1}});
  Graph L = importPath(Llama.path(), dims(2, 32));
  ASSERT_TRUE(L.DeclaredDropoutSites);
  EXPECT_EQ(L.DeclaredDropoutSites->Attention, 0.1);
  EXPECT_EQ(L.DeclaredDropoutSites->Residual, 0.0);
  EXPECT_EQ(DropoutSites(L), (std::set<std::string>{"attention"}));
  ConfigVariant Gpt2("gpt2", "gpt2-resid-only",
                     {{"n_layer", 2}, {"attn_pdrop", 0.0}, {"embd_pdrop", 0.0}, {"resid_pdrop", 0.1}});
  Graph G = importPath(Gpt2.path(), dims(2, 32));
  EXPECT_EQ(DropoutSites(G), (std::set<std::string>{"residual"}));
  // A probability the model's code never applies in training a language model (a
  // classification head's) declares no dropout, so no note says it came from the config.
  ConfigVariant Head("tiny-llama", "llama-classifier-dropout", {{"classifier_dropout", 0.1}});
  EXPECT_FALSE(importPath(Head.path(), dims(2, 32)).DeclaredDropout);
}


// OLMo 2 (Olmo2ForCausalLM): no norm before attention or the MLP, one after each inside
// the residual; q_norm and k_norm over the whole projections (hidden and kv_heads x
// head_dim wide) before the heads are split; cos and sin kept in fp32, q and k rotated in
// fp32 and cast back; the norm's weight multiplied in fp32 before the cast back.
TEST(HfStepRules, Olmo2NormalisesAfterEachBranchAndWholeProjections) {
  ConfigVariant Small("olmo-2-7b", "olmo2-small",
                      {{"num_hidden_layers", 2}, {"hidden_size", 128}, {"intermediate_size", 384},
                       {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                       {"vocab_size", 1024}});
  Graph G = importPath(Small.path(), dims(2, 256));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.q_norm.weight"), (Shape{128}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.k_norm.weight"), (Shape{64}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.post_feedforward_layernorm.weight"), (Shape{128}));
  for (const Tensor &T : G.Tensors)
    EXPECT_EQ(llvm::StringRef(T.Name).contains("input_layernorm"), false) << T.Name;
  // In bf16 the rotary keeps fp32 cos and sin ([1, 256, 32]) where LLaMA's are bf16, and
  // the norms keep fp32 products. This is the measured case's model (MeasuredHf: transformers
  // saved 10,983,432 B at the end of this forward); before cos and sin were kept fp32 the
  // prediction was 10,950,658.
  auto Saved = [](const Graph &M) {
    return simulateOnCpu(M, [](TrainingSetup &S) { S.Prec = Precision::Bf16; })
        .SavedAtEndOfForward;
  };
  EXPECT_EQ(Saved(G), 10'983'426);
}


// Gemma 2 (transformers 5's Gemma2ForCausalLM, eager attention: it refuses SDPA): every
// second layer slides (layer_types' default), one rotary table for both types, the scaled
// scores and the logits soft-capped as cap * tanh(x / cap), each tanh keeping its output.
TEST(HfStepRules, Gemma2SoftCapsScoresAndLogitsWithOneRotaryTable) {
  auto Variant = [](const std::string &Name, std::optional<double> FinalCap) {
    FieldEdits E = {{"num_hidden_layers", 2}, {"hidden_size", 128}, {"intermediate_size", 384},
                    {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 32},
                    {"query_pre_attn_scalar", 32}, {"vocab_size", 1024},
                    {"sliding_window", 128}};
    E.push_back({"final_logit_softcapping", FinalCap ? llvm::json::Value(*FinalCap) : nullptr});
    return ConfigVariant("gemma-2-2b", Name, E);
  };
  ConfigVariant Capped = Variant("gemma2-capped", 30.0), Uncapped = Variant("gemma2-uncapped", {});
  Graph G = importPath(Capped.path(), dims(2, 256));
  EXPECT_FALSE(G.DeclaredFusedAttention) << "transformers runs Gemma 2's attention eagerly";
  EXPECT_EQ(shapeOf(G, "model.rotary_emb.inv_freq"), (Shape{16}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.post_feedforward_layernorm.weight"), (Shape{128}));
  int ScoreCaps = 0, LogitCaps = 0;
  for (const Node &N : G.Nodes) // (the tanh-form GELU of the MLPs has [batch, seq, 384])
    if (N.OpType == "Tanh" && G.Tensors[N.Inputs[0]].Shape.size() == 4)
      ++ScoreCaps;
    else if (N.OpType == "Tanh" && G.Tensors[N.Inputs[0]].Shape.back() == 1024)
      ++LogitCaps;
  EXPECT_EQ(ScoreCaps, 2) << "one per layer";
  EXPECT_EQ(LogitCaps, 1);
  // The final cap's three [batch, seq, vocab] tensors: tanh's kept output is saved, the
  // head's output and the division freed in the forward (fp32 on the CPU: 2 MiB); the
  // division and the product each keep their Python number as an 8-byte wrapped scalar.
  auto Saved = [](const Graph &M) { return simulateOnCpu(M, [](TrainingSetup &) {}).SavedAtEndOfForward; };
  Graph NoCap = importPath(Uncapped.path(), dims(2, 256));
  EXPECT_EQ(Saved(G) - Saved(NoCap), 2 * 256 * 1024 * 4 + 2 * 8);

  // A cap of 0 (transformers would divide by it) is an error naming the field.
  ConfigVariant Zero("gemma-2-2b", "gemma2-zero-cap", {{"attn_logit_softcapping", 0.0}});
  llvm::Expected<Graph> Bad = importHfConfig(Zero.path(), dims(1, 16));
  ASSERT_FALSE(bool(Bad));
  std::string Message = llvm::toString(Bad.takeError());
  EXPECT_NE(Message.find("field 'attn_logit_softcapping'"), std::string::npos) << Message;
  EXPECT_NE(Message.find("expected a positive cap or null"), std::string::npos) << Message;
}


// Gemma 3's sliding layers: where the window cuts into the sequence transformers hands
// SDPA the boolean pattern (sdpa_mask), and scaled_dot_product_attention turns it into a
// float bias in the query's dtype that the layer keeps for its backward: one
// [batch, 1, seq, seq] bias per sliding layer (measured on torch 2.15); the float mask eager
// attention adds is never built. A window longer than the sequence needs no mask at all.
// Under checkpointing the forward keeps only the boolean pattern, for the recomputation.
TEST(HfStepRules, Gemma3SlidingLayersKeepAFloatBiasMadeFromTheBooleanMask) {
  auto Variant = [](const std::string &Name, int64_t Window) {
    return ConfigVariant(
        "gemma-3-1b", Name,
        {{"num_hidden_layers", 2}, {"hidden_size", 128}, {"intermediate_size", 256},
         {"num_key_value_heads", 1}, {"head_dim", 64}, {"query_pre_attn_scalar", 64},
         {"vocab_size", 1024}, {"sliding_window", Window},
         {"layer_types", llvm::json::Array{"sliding_attention", "full_attention"}}});
  };
  ConfigVariant Cut = Variant("gemma3-window-128", 128), Whole = Variant("gemma3-window-512", 512);
  Graph GCut = importPath(Cut.path(), dims(2, 256)), GWhole = importPath(Whole.path(), dims(2, 256));
  EXPECT_EQ(shapeOf(GCut, "model.rotary_emb.sliding_attention_inv_freq"), (Shape{32}));
  EXPECT_EQ(shapeOf(GCut, "model.rotary_emb.full_attention_inv_freq"), (Shape{32}));
  for (Precision P : {Precision::Fp32, Precision::Bf16}) {
    auto Saved = [&](const Graph &G, const char *Checkpoint) {
      return simulateOnCpu(G, [&](TrainingSetup &S) {
               S.Prec = P;
               S.Checkpoint = Checkpoint;
             }).SavedAtEndOfForward;
    };
    const int64_t Bias = 2 * 256 * 256 * (P == Precision::Bf16 ? 2 : 4);
    EXPECT_EQ(Saved(GCut, "none") - Saved(GWhole, "none"), Bias);
    EXPECT_EQ(Saved(GCut, "blocks") - Saved(GWhole, "blocks"), 256 * 256); // the bool pattern
  }
}


TEST(HfStepRules, SdpaReadsGroupedKeysAndBuildsNoMaskForUnpaddedBatches) {
  // transformers 5 with SDPA and no padding: is_causal instead of the mask, enable_gqa
  // instead of repeat_kv. tiny-llama: 4 query heads, 2 key/value heads of 16.
  Graph G = importSample("tiny-llama", dims(2, 32));
  std::vector<SimOp> Fused = buildSimOps(G, /*FuseAttention=*/true);
  int Attention = 0;
  for (const SimOp &Op : Fused) {
    EXPECT_NE(Op.Kind, "LessOrEqual") << "the causal mask is not built: " << Op.Name;
    EXPECT_NE(Op.Kind, "Where") << "the causal mask is not built: " << Op.Name;
    if (Op.Kind != "ScaledDotProductAttention")
      continue;
    ++Attention;
    ASSERT_EQ(Op.Inputs.size(), 3u) << "no mask operand";
    EXPECT_EQ(G.Tensors[Op.Inputs[0]].Shape, (Shape{2, 4, 32, 16}));
    EXPECT_EQ(G.Tensors[Op.Inputs[1]].Shape, (Shape{2, 2, 32, 16})) << "k unrepeated";
    EXPECT_EQ(G.Tensors[Op.Inputs[2]].Shape, (Shape{2, 2, 32, 16})) << "v unrepeated";
  }
  EXPECT_EQ(Attention, 2);
  // Eager attention adds the mask and repeats the heads.
  std::vector<SimOp> Eager = buildSimOps(G, /*FuseAttention=*/false);
  EXPECT_TRUE(llvm::any_of(Eager, [](const SimOp &Op) { return Op.Kind == "Where"; }));
  EXPECT_TRUE(llvm::any_of(Eager, [](const SimOp &Op) { return Op.Kind == "Expand"; }));

  // A sliding window shorter than the sequence keeps the mask (and so the repeat).
  ConfigVariant Windowed("mistral-7b", "mistral-window", {{"sliding_window", 16}});
  Graph W = importPath(Windowed.path(), dims(2, 32));
  std::vector<SimOp> WOps = buildSimOps(W, /*FuseAttention=*/true);
  auto Sdpa = llvm::find_if(WOps, [](const SimOp &Op) { return Op.Kind == "ScaledDotProductAttention"; });
  ASSERT_NE(Sdpa, WOps.end());
  EXPECT_EQ(Sdpa->Inputs.size(), 4u) << "the windowed mask is an operand";
}


TEST(HfStepRules, PaddedBatchesBuildTheMaskSdpaReadsAndRepeatGroupedHeads) {
  // transformers 5 with a padded attention_mask: sdpa_mask materialises causal & padding as
  // a [batch, 1, seq, seq] boolean, SDPA reads it, and use_gqa_in_sdpa (no mask) no longer
  // holds, so k and v are repeated to the query heads.
  ImportOptions Padded = dims(2, 32);
  Padded.PaddedBatches = true;
  Graph G = importSample("tiny-llama", Padded);
  EXPECT_TRUE(G.PaddedBatches);
  ASSERT_EQ(G.Inputs.size(), 2u);
  EXPECT_EQ(G.Tensors[G.Inputs[1]].Name, "attention_mask");
  EXPECT_EQ(G.Tensors[G.Inputs[1]].Shape, (Shape{2, 32}));
  std::vector<SimOp> Fused = buildSimOps(G, /*FuseAttention=*/true);
  int Attention = 0;
  for (const SimOp &Op : Fused) {
    EXPECT_NE(Op.Kind, "Where") << "SDPA reads the boolean pattern, not a float mask";
    if (Op.Kind != "ScaledDotProductAttention")
      continue;
    ++Attention;
    ASSERT_EQ(Op.Inputs.size(), 4u) << "the padded mask is an operand";
    EXPECT_EQ(G.Tensors[Op.Inputs[1]].Shape, (Shape{2, 4, 32, 16})) << "k repeated";
    EXPECT_EQ(G.Tensors[Op.Inputs[2]].Shape, (Shape{2, 4, 32, 16})) << "v repeated";
    EXPECT_EQ(G.Tensors[Op.Inputs[3]].Type, DType::Bool);
    EXPECT_EQ(G.Tensors[Op.Inputs[3]].Shape, (Shape{2, 1, 32, 32})) << "one pattern per sample";
  }
  EXPECT_EQ(Attention, 2);

  // What that costs, exactly: every layer keeps SDPA's bias in the query's dtype
  // ([batch, 1, seq, seq]) and k and v at the query heads instead of the key/value heads.
  // tiny-llama: 2 layers, 4 query and 2 key/value heads of 16; bf16 on CUDA.
  auto Saved = [](const Graph &M) {
    TrainingSetup S;
    S.Device = DeviceKind::Cuda;
    S.Prec = Precision::Bf16;
    auto C = takeCensus(M, S);
    EXPECT_TRUE(bool(C));
    auto R = simulateStep(M, S, *C);
    EXPECT_TRUE(bool(R));
    return R ? R->SavedAtEndOfForward : 0;
  };
  // A sequence that is not a multiple of 8 (padded batches have any length): CUDA's
  // memory-efficient kernel keeps the bias in a copy whose rows are padded to 8.
  const int64_t B = 2, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 16;
  for (int64_t Seq : {256, 100}) {
    ImportOptions Long = dims(B, Seq), LongPadded = dims(B, Seq);
    LongPadded.PaddedBatches = true;
    const int64_t Row = (Seq + 7) / 8 * 8;
    const int64_t Bias = B * Seq * Row * 2;
    const int64_t Repeat = 2 * B * (Heads - KvHeads) * Seq * HeadDim * 2;
    EXPECT_EQ(Saved(importSample("tiny-llama", LongPadded)) -
                  Saved(importSample("tiny-llama", Long)),
              Layers * (Bias + Repeat))
        << "seq " << Seq;
  }

  // BERT builds no mask for an unpadded batch, and the bidirectional one for a padded one.
  ImportOptions BertPadded = dims(2, 32);
  BertPadded.PaddedBatches = true;
  for (bool P : {false, true}) {
    Graph Bert = importSample("bert-base-uncased", P ? BertPadded : dims(2, 32));
    std::vector<SimOp> Ops = buildSimOps(Bert, /*FuseAttention=*/true);
    auto Sdpa = llvm::find_if(Ops, [](const SimOp &Op) { return Op.Kind == "ScaledDotProductAttention"; });
    ASSERT_NE(Sdpa, Ops.end());
    EXPECT_EQ(Sdpa->Inputs.size(), P ? 4u : 3u) << (P ? "padded" : "unpadded");
  }

  // An ONNX export carries its own mask: the option is refused, naming the file.
  ImportOptions OnnxPadded;
  OnnxPadded.PaddedBatches = true;
  llvm::Expected<Graph> Onnx = importModel(
      std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/measured/gt/onnx/mobilenetv2_tiny.onnx", OnnxPadded);
  ASSERT_FALSE(bool(Onnx));
  std::string Message = llvm::toString(Onnx.takeError());
  EXPECT_NE(Message.find("--padded applies to Hugging Face configs"), std::string::npos) << Message;
  EXPECT_NE(Message.find("mobilenetv2_tiny.onnx"), std::string::npos) << Message;
}


TEST(HfStepRules, UseCacheCopiesKeysAndValuesUnlessCheckpointed) {
  // transformers' decoders fill a DynamicCache in a training forward (use_cache defaults
  // to true): attention reads and saves torch.cat's copies of the key and value states.
  // GPT-2's are slices of the fused qkv, which the query keeps alive: two extra copies of
  // [2, 12, 32, 64] fp32 per layer, 12 layers. LLaMA's replace tensors that die anyway.
  auto saved = [](const std::string &Sample, bool UseCache, const std::string &Checkpoint,
                  KvCacheMode Mode = KvCacheMode::Auto) {
    ConfigVariant Config(Sample, Sample + (UseCache ? "-cache" : "-nocache"),
                         {{"use_cache", UseCache}});
    Graph G = importPath(Config.path(), dims(2, 32));
    EXPECT_EQ(G.TrainingKvCache, UseCache);
    return simulateOnCpu(G, [&](TrainingSetup &S) {
             S.KvCache = Mode;
             S.Dropout = 0.0; // the fused kernel (with dropout the CPU runs the math one)
             S.Checkpoint = Checkpoint;
           })
        .SavedAtEndOfForward;
  };
  const int64_t Copy = 2 * 12 * 32 * 64 * 4;
  EXPECT_EQ(saved("gpt2", true, "none") - saved("gpt2", false, "none"), 12 * 2 * Copy);
  EXPECT_EQ(saved("gpt2", true, "blocks"), saved("gpt2", false, "blocks"))
      << "checkpointed layers run without the cache";
  EXPECT_EQ(saved("tiny-llama", true, "none"), saved("tiny-llama", false, "none"));
  // --use-cache overrides the config either way.
  EXPECT_EQ(saved("gpt2", true, "none", KvCacheMode::Off), saved("gpt2", false, "none"));
  EXPECT_EQ(saved("gpt2", false, "none", KvCacheMode::On), saved("gpt2", true, "none"));
  // The copies are what attention saves, as contiguous [batch, heads, seq, head_dim].
  Graph G = importSample("gpt2", dims(2, 32));
  int Marked = 0;
  for (const Tensor &T : G.Tensors)
    if (T.KvCache) {
      ++Marked;
      EXPECT_EQ(T.Shape, (Shape{2, 12, 32, 64})) << T.Name;
    }
  EXPECT_EQ(Marked, 24);
  EXPECT_FALSE(importSample("bert-base-uncased", dims(2, 32)).TrainingKvCache)
      << "an encoder has no cache";
}


TEST(HfStepRules, NonReentrantRecomputeStopsWhereTheLastSavedTensorIsPacked) {
  // PyTorch 2's checkpoint reruns a GPT-2 block only up to the MLP activation that c_proj
  // saves: c_proj packs its input before its kernel runs, so its output is never
  // recomputed (measured: no c_proj allocation in the recompute), while the reentrant
  // checkpoint (torch 1.13) reruns the whole block.
  // A dropout after c_proj (GPT-2's config has resid_pdrop 0.1) saves its mask, so the
  // recomputation then runs through c_proj and the dropout to pack it again (measured on
  // Phi, whose recomputation started at the residual dropout's MulBackward0).
  Graph G = importSample("gpt2", dims(2, 32));
  auto recomputed = [&](TorchVersion V, std::optional<double> Dropout) {
    StepSimulation R = simulateOnCpu(G, [&](TrainingSetup &S) {
      S.Torch = V;
      S.Checkpoint = "blocks";
      S.Dropout = Dropout;
    });
    std::set<std::string> Ops;
    for (const TimelinePoint &P : R.Timeline)
      if (llvm::StringRef(P.Phase).contains("recompute"))
        Ops.insert(P.Op);
    return Ops;
  };
  std::set<std::string> V2 = recomputed(TorchVersion::V2, 0.0);
  EXPECT_TRUE(V2.count("/transformer/h.3/mlp/act/Mul_3")) << "the activation c_proj saves";
  EXPECT_FALSE(V2.count("/transformer/h.3/mlp/c_proj/Gemm"));
  EXPECT_FALSE(V2.count("/transformer/h.3/Add_1")) << "the residual saves nothing";
  std::set<std::string> Dropped = recomputed(TorchVersion::V2, std::nullopt);
  EXPECT_TRUE(Dropped.count("/transformer/h.3/mlp/c_proj/Gemm dropout")) << "its mask";
  EXPECT_FALSE(Dropped.count("/transformer/h.3/Add_1"));
  std::set<std::string> V113 = recomputed(TorchVersion::V1_13, 0.0);
  EXPECT_TRUE(V113.count("/transformer/h.3/mlp/c_proj/Gemm"));
}


TEST(HfStepRules, CheckpointedDecoderLayersKeepThePositionIdsTheyAreCalledWith) {
  // transformers' decoder layers are called with position_ids (a view of the forward's
  // arange(seq), int64) though the rotary tables are made before them: the model holds it
  // until its last layer returns, and the non-reentrant checkpoint keeps it with each
  // layer's arguments until the layer's backward. Measured: every checkpointed decoder of
  // tests/data/measured-hf saved seq x 8 bytes more than predicted before. GPT-2's blocks
  // and BERT's layers take no position ids.
  constexpr int64_t Seq = 64;
  for (const char *Name : {"tiny-llama", "pythia-160m", "gemma-3-1b", "gpt2", "bert-base-uncased"}) {
    SCOPED_TRACE(Name);
    Graph G = importSample(Name, dims(2, Seq));
    const bool Decoder = llvm::StringRef(Name) != "gpt2" && llvm::StringRef(Name) != "bert-base-uncased";
    ASSERT_EQ(G.BlockArguments.size(), Decoder ? 1u : 0u);
    if (!Decoder)
      continue;
    const Tensor &Positions = G.Tensors[G.BlockArguments.front()];
    EXPECT_EQ(Positions.Type, DType::Int64);
    EXPECT_EQ(Positions.Shape, Shape{Seq});
    auto saved = [](const Graph &M) {
      return simulateOnCpu(M, [](TrainingSetup &S) {
               S.Torch = TorchVersion::V2;
               S.Checkpoint = "blocks";
             })
          .SavedAtEndOfForward;
    };
    Graph Without = G;
    Without.BlockArguments.clear();
    EXPECT_EQ(saved(G) - saved(Without), Seq * 8);
  }
}

TEST(HfStepRules, NonReentrantCheckpointFreesEachLayersRngStateAfterItsBackward) {
  // PyTorch 2's checkpoint keeps a layer's CPU RNG state copy (5,056 B) in the layer's frame,
  // which goes with the layer's backward; torch 1.13's CheckpointFunction keeps it until the
  // graph goes. The fp32 two-layer tiny-llama step peaks in the first layer's recompute,
  // after the second layer's backward: one state fewer there on PyTorch 2. Measured
  // (tests/data/measured-hf, 2 x 256 tokens, AdamW, every block checkpointed):
  // 16,060,572 B.
  Graph G = importPath(std::string(TRAINMEM_SOURCE_DIR) +
                           "/tests/data/measured-hf/configs/tiny-llama.json",
                       dims(2, 256));
  auto peak = [&](TorchVersion V) {
    return simulateOnCpu(G, [&](TrainingSetup &S) {
             S.Torch = V;
             S.Checkpoint = "blocks";
           })
        .Peak;
  };
  EXPECT_NEAR(static_cast<double>(peak(TorchVersion::V2)), 16060572.0, 16.0);
}

TEST(HfStepRules, MeanKeepsItsInputOnTorch113Only) {
  // torch 1.13's MeanBackward1 holds mean(dim)'s input (RMSNorm's pow output) to the
  // backward; 2.x holds its sizes. tiny-llama has 2 x 2 + 1 RMSNorms over [2, 32, 64] fp32.
  Graph G = importSample("tiny-llama", dims(2, 32));
  auto savedOn = [&](TorchVersion V) {
    return simulateOnCpu(G, [&](TrainingSetup &S) { S.Torch = V; }).SavedAtEndOfForward;
  };
  EXPECT_EQ(savedOn(TorchVersion::V1_13) - savedOn(TorchVersion::V2), 5 * 2 * 32 * 64 * 4);
  // Auto is 2 for a Hugging Face config (transformers 5 needs it), on the CPU too.
  TrainingSetup Auto;
  Auto.Device = DeviceKind::Cpu;
  EXPECT_EQ(Auto.torchVersionFor(G.SourceFormat), TorchVersion::V2);
  EXPECT_EQ(Auto.torchVersionFor("onnx"), TorchVersion::V1_13);
}
