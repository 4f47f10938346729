//===- HfFamiliesTest.cpp - the layouts of the Hugging Face families ------------===//
//
// Each family's graph against transformers 5.24's modeling code for it: which modules it
// has and how they connect (norms, rotary, positions, MLP, head), and the errors of a
// config transformers could not run. Their parameter counts are in HfConfigImporterTest.cpp
// and HfHeadsTest.cpp; their measured training steps in tests/data/measured-hf.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "support/HfConfigTestSupport.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringRef.h"

#include <gtest/gtest.h>

#include <string>

using namespace trainmem;
using namespace trainmem::testing;

TEST(HfFamilies, PhiFeedsAttentionAndMlpFromOneNormAndRotatesPartOfEachHead) {
  Graph G = importSample("phi-2", dims(1, 16));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.q_proj.weight"), (Shape{2560, 2560}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.q_proj.bias"), (Shape{2560}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.dense.weight"), (Shape{2560, 2560}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.mlp.fc1.weight"), (Shape{2560, 10240}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.mlp.fc2.bias"), (Shape{2560}));
  EXPECT_EQ(shapeOf(G, "model.final_layernorm.weight"), (Shape{2560}));
  EXPECT_EQ(shapeOf(G, "lm_head.bias"), (Shape{51200}));
  // partial_rotary_factor 0.4 of 80-wide heads: 32 channels, 16 frequencies.
  EXPECT_EQ(shapeOf(G, "model.rotary_emb.inv_freq"), (Shape{16}));
  // One LayerNorm per layer, read by q, k, v and fc1 alike.
  EXPECT_EQ(findTensor(G, "model.layers.0.post_attention_layernorm.weight"), nullptr);
  const Tensor *Normed = findTensor(G, "/model/layers.0/input_layernorm/LayerNormalization_output_0");
  ASSERT_NE(Normed, nullptr);
  EXPECT_EQ(Normed->Consumers.size(), 4u);

  // qk_layernorm normalises each head of q and k: hidden_size / heads wide.
  ConfigVariant QkNorm("phi-2", "phi-qknorm", {{"qk_layernorm", true}});
  Graph Q = importPath(QkNorm.path(), dims(1, 16));
  EXPECT_EQ(shapeOf(Q, "model.layers.0.self_attn.q_layernorm.weight"), (Shape{80}));
  EXPECT_EQ(shapeOf(Q, "model.layers.0.self_attn.k_layernorm.bias"), (Shape{80}));
  // ... whatever head_dim says, which transformers then cannot run.
  ConfigVariant Mismatch("phi-2", "phi-qknorm-head-dim", {{"qk_layernorm", true}, {"head_dim", 64}});
  std::string Error = importError(Mismatch.path());
  EXPECT_NE(Error.find("field 'qk_layernorm' is true with head_dim 64"), std::string::npos)
      << Error;
}

TEST(HfFamilies, OptNumbersPositionsFromTheMaskAndMayNormAfterTheResidual) {
  // OPT-1.3B: pre-LayerNorm blocks, the learned positions two rows on, q scaled before
  // the attention, the MLP on [batch * seq, hidden] rows, a final LayerNorm, a tied head.
  Graph G = importSample("opt-1.3b", dims(2, 16));
  EXPECT_EQ(shapeOf(G, "model.decoder.embed_positions.weight"), (Shape{2050, 2048}));
  EXPECT_EQ(shapeOf(G, "model.decoder.layers.0.self_attn.q_proj.bias"), (Shape{2048}));
  EXPECT_EQ(shapeOf(G, "model.decoder.layers.0.fc1.weight"), (Shape{2048, 8192}));
  EXPECT_EQ(shapeOf(G, "model.decoder.final_layer_norm.weight"), (Shape{2048}));
  EXPECT_EQ(findTensor(G, "lm_head.weight"), nullptr) << "tied to embed_tokens";
  const Tensor *Fc1In = findTensor(G, "/model/decoder/layers.0/final_layer_norm/LayerNormalization_output_0");
  ASSERT_NE(Fc1In, nullptr);
  EXPECT_EQ(Fc1In->Shape, (Shape{32, 2048})) << "the MLP's rows";
  // The positions: cumsum of torch.ones(batch, seq) in fp32, then int64 ids, a block
  // argument (every layer is called with position_ids).
  ASSERT_EQ(G.BlockArguments.size(), 1u);
  EXPECT_EQ(G.Tensors[G.BlockArguments[0]].Type, DType::Int64);
  EXPECT_EQ(G.Tensors[G.BlockArguments[0]].Shape, (Shape{2, 16}));

  // OPT-350m: LayerNorm after each residual add, no final norm, 512-wide word embeddings
  // projected to the 1024-wide blocks and back for the head.
  Graph P = importSample("opt-350m", dims(1, 16));
  EXPECT_EQ(shapeOf(P, "model.decoder.embed_tokens.weight"), (Shape{50272, 512}));
  EXPECT_EQ(shapeOf(P, "model.decoder.project_in.weight"), (Shape{512, 1024}));
  EXPECT_EQ(shapeOf(P, "model.decoder.project_out.weight"), (Shape{1024, 512}));
  EXPECT_EQ(findTensor(P, "model.decoder.final_layer_norm.weight"), nullptr);
  const Tensor *Normed = findTensor(P, "/model/decoder/layers.0/self_attn_layer_norm/LayerNormalization_output_0");
  ASSERT_NE(Normed, nullptr);
  // Post-norm: the attention's norm reads the residual sum, not the block input.
  const Node &Producer = P.Nodes[P.Tensors[P.findTensor("/model/decoder/layers.0/Add_output_0")].Consumers[0]];
  EXPECT_EQ(Producer.OpType, "LayerNormalization");

  ConfigVariant NoAffine("opt-350m", "opt-no-affine", {{"layer_norm_elementwise_affine", false}});
  std::string Error = importError(NoAffine.path());
  EXPECT_NE(Error.find("field 'layer_norm_elementwise_affine' is false"), std::string::npos) << Error;
  ConfigVariant LayerDrop("opt-350m", "opt-layerdrop", {{"layerdrop", 0.1}});
  Graph D = importPath(LayerDrop.path(), dims(1, 16));
  EXPECT_TRUE(llvm::any_of(D.Diags.all(), [](const Diagnostic &Dg) {
    return Dg.Where == "layerdrop" && Dg.Level == Severity::Warning;
  }));
}

TEST(HfFamilies, StarCoder2IsLlamaWithLayerNormsAPlainMlpAndItsDropouts) {
  Graph G = importSample("starcoder2-3b", dims(1, 16));
  EXPECT_EQ(shapeOf(G, "model.layers.0.input_layernorm.bias"), (Shape{3072}));
  EXPECT_EQ(shapeOf(G, "model.norm.bias"), (Shape{3072}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.mlp.c_fc.weight"), (Shape{3072, 12288}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.mlp.c_proj.bias"), (Shape{3072}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.k_proj.weight"), (Shape{3072, 256})); // 2 kv heads
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.o_proj.bias"), (Shape{3072}));
  EXPECT_EQ(findTensor(G, "model.layers.0.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(findTensor(G, "lm_head.weight"), nullptr) << "tied";
  // The embeddings' dropout is its own op, so inputs_embeds (held until the model returns)
  // stays the tensor before it; the residual branches' dropout is the config's.
  ASSERT_EQ(G.DropoutAt.size(), 1u);
  EXPECT_EQ(G.Nodes[G.Tensors[G.DropoutAt[0].first].Producer].Inputs[0],
            G.findTensor("/model/embed_tokens/Gather_output_0"));
  ASSERT_TRUE(G.DeclaredDropoutSites.has_value());
  EXPECT_EQ(G.DeclaredDropoutSites->Residual, 0.1);
  EXPECT_EQ(G.DeclaredDropoutSites->Embedding, 0.0);
}

TEST(HfFamilies, StableLmIsLlamaWithLayerNormsAndAPartialRotary) {
  Graph G = importSample("stablelm-2-1.6b", dims(1, 16));
  EXPECT_EQ(shapeOf(G, "model.layers.0.input_layernorm.bias"), (Shape{2048}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.q_proj.bias"), (Shape{2048})); // use_qkv_bias
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.o_proj.bias"), nullptr);
  EXPECT_EQ(findTensor(G, "model.layers.0.mlp.gate_proj.bias"), nullptr);
  // partial_rotary_factor 0.25 of 64-wide heads: 16 channels, 8 frequencies.
  EXPECT_EQ(shapeOf(G, "model.rotary_emb.inv_freq"), (Shape{8}));
  // hidden_dropout drops out the MLP's output only: one dropout op per layer.
  ConfigVariant Dropped("stablelm-2-1.6b", "stablelm-dropout", {{"hidden_dropout", 0.1}});
  Graph D = importPath(Dropped.path(), dims(1, 16));
  EXPECT_EQ(D.DropoutAt.size(), 24u);
  // StableLM-2-12B's per-head norms and parallel residual are refused, not mis-modelled.
  for (const char *Field : {"qk_layernorm", "use_parallel_residual"}) {
    ConfigVariant V("stablelm-2-1.6b", std::string("stablelm-") + Field, {{Field, true}});
    std::string Error = importError(V.path());
    EXPECT_NE(Error.find(std::string("field '") + Field + "' is true"), std::string::npos) << Error;
  }
}

TEST(HfFamilies, GptJRotatesTheFirstChannelsOfEachHeadPairByPair) {
  Graph G = importSample("gpt-j-6b", dims(1, 16));
  // The sinusoid table is a buffer of max positions x rotary_dim (fp32: 512 KiB).
  const Tensor *Table = findTensor(G, "transformer.rotary_emb.embed_positions");
  ASSERT_NE(Table, nullptr);
  EXPECT_EQ(Table->Shape, (Shape{2048, 64}));
  EXPECT_EQ(Table->Kind, TensorKind::Buffer);
  EXPECT_EQ(findTensor(G, "transformer.h.0.attn.q_proj.bias"), nullptr);
  EXPECT_EQ(shapeOf(G, "transformer.h.0.mlp.fc_in.bias"), (Shape{16384}));
  EXPECT_EQ(shapeOf(G, "lm_head.bias"), (Shape{50400}));
  // x[..., :64] and x[..., 64:], then rotate_every_two's x[..., ::2] and x[..., 1::2] of the
  // rotated part, for k and for q.
  int Slices = 0;
  for (const Node &N : G.Nodes)
    Slices += llvm::StringRef(N.Name).startswith("/transformer/h.0/attn/") && N.OpType == "Slice";
  EXPECT_EQ(Slices, 8);

  ConfigVariant Odd("gpt-j-6b", "gptj-odd-rotary", {{"rotary_dim", 63}});
  std::string Error = importError(Odd.path());
  EXPECT_NE(Error.find("field 'rotary_dim' is 63"), std::string::npos) << Error;
}

TEST(HfFamilies, SmolLm3SkipsTheRotaryInItsNoPeLayers) {
  // no_rope_layer_interval 4 (the default): layers 3, 7, ... attend without rotary, the
  // others rotate q and k as LLaMA's do; no_rope_layers says it per layer.
  auto RotaryNegs = [](const Graph &G, int Layer) { // rotate_half's negation, q's and k's
    int N = 0;
    std::string Scope = "/model/layers." + std::to_string(Layer) + "/self_attn/";
    for (const Node &Nd : G.Nodes)
      N += llvm::StringRef(Nd.Name).startswith(Scope) && Nd.OpType == "Neg";
    return N;
  };
  Graph G = importSample("smollm3-3b", dims(1, 64));
  EXPECT_GT(RotaryNegs(G, 0), 0);
  EXPECT_EQ(RotaryNegs(G, 3), 0);
  EXPECT_EQ(RotaryNegs(G, 4), RotaryNegs(G, 0));
  ConfigVariant Given("smollm3-3b", "smollm3-nope-given",
                      {{"num_hidden_layers", 2}, {"no_rope_layers", llvm::json::Array{0, 1}}});
  G = importPath(Given.path(), dims(1, 64));
  EXPECT_EQ(RotaryNegs(G, 0), 0);
  EXPECT_GT(RotaryNegs(G, 1), 0);
  ConfigVariant Short("smollm3-3b", "smollm3-nope-short",
                      {{"num_hidden_layers", 2}, {"no_rope_layers", llvm::json::Array{1}}});
  std::string E = importError(Short.path(), dims(1, 64));
  EXPECT_NE(E.find("field 'no_rope_layers' has 1 entries; expected one per layer (2)"),
            std::string::npos)
      << E;
}
