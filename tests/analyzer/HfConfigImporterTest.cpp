//===- HfConfigImporterTest.cpp - the Hugging Face config importer against reality ===//
//
// Pins importHfConfig() to what transformers builds from the same config.json: parameter
// counts and state-dict names measured with transformers, shapes, buffers, tied heads,
// grouped-query attention, dims binding, the graph invariants later passes rely on, and
// the errors a user sees for a broken or unsupported config.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/OpMemoryRules.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/HfConfigTestSupport.h"

#include "llvm/ADT/STLExtras.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <unistd.h>

using namespace trainmem;

using namespace trainmem::testing;

namespace {

// Measured with torch 2.15.0 and transformers 5.24.0 (CPU wheels from PyPI, `pip install
// torch transformers`): cfg = AutoConfig.from_pretrained("samples/hf/<name>"), then
// AutoModelForCausalLM (AutoModelForMaskedLM for bert).from_config(cfg) under
// `torch.device("meta")`, and sum(p.numel() for p in model.parameters()), which counts a
// tied weight once. Every name and shape in model.named_parameters() and named_buffers()
// was also compared with the IR (all equal, Linear weights transposed).
const std::map<std::string, int64_t> MeasuredParameterCounts = {
    {"llama-2-7b", 6'738'415'616},  {"mistral-7b", 7'241'732'096},
    {"qwen2-0.5b", 494'032'768},    {"gemma-2b", 2'506'172'416},
    {"gpt2", 124'439'808},          {"pythia-160m", 162'322'944},
    {"bert-base-uncased", 109'514'298}, {"tiny-llama", 158'016},
    {"qwen3-0.6b", 596'049'920},    {"phi-3-mini-4k", 3'821'079'552},
    {"phi-2", 2'779'683'840},      {"opt-1.3b", 1'315'758'080},
    {"opt-350m", 331'196'416}, // word embeddings 512 wide, projected in and out
    {"starcoder2-3b", 3'030'371'328}, {"gpt-j-6b", 6'050'882'784},
    {"stablelm-2-1.6b", 1'644'515'328},
    {"gemma-3-1b", 999'885'952},    {"gemma-2-2b", 2'614'341'888},
    {"llama-3.1-8b", 8'030'261'248}, {"llama-3.2-1b", 1'235'814'400}, // tied, head_dim 64
    {"olmo-2-7b", 7'298'617'344},   {"granite-3-2b", 2'533'531'648},
    // Mixture-of-experts (transformers 5 keeps each block's experts as two 3-D tensors).
    {"mixtral-8x7b", 46'702'792'704}, {"qwen3-30b-a3b", 30'532'122'624},
    {"qwen1.5-moe-a2.7b", 14'315'784'192}, {"olmoe-1b-7b", 6'919'161'856},
    // gpt-oss (its released configs' quantization_config dropped for the count: MXFP4
    // changes the storage, not the parameters).
    {"gpt-oss-20b", 20'914'757'184}, {"gpt-oss-120b", 116'829'156'672},
    // DeepSeek-V3 (its config's quantization_config dropped for the count, as above).
    {"deepseek-v3", 671'026'404'352}, {"deepseek-v2-lite", 15'706'484'224},
    // RoBERTa's encoders (AutoModelForMaskedLM: lm_head's dense, layer_norm and bias).
    {"roberta-base", 124'697'433}, {"xlm-roberta-base", 278'295'186},
    {"distilbert-base-uncased", 66'985'530},
    // AutoModelForSequenceClassification: RoBERTa's classification head, three labels.
    {"roberta-base-sentiment", 124'647'939},
    // AutoModelForQuestionAnswering: RoBERTa without its pooler, qa_outputs.
    {"roberta-base-squad2", 124'056'578},
    // SmolLM3Config's defaults (SmolLM3-3B's shape), the embedding tied.
    {"smollm3-3b", 3'075'098'624},
};

} // namespace

TEST(HfConfigImporter, ParameterCountsMatchTransformers) {
  for (const auto &[Name, Expected] : MeasuredParameterCounts) {
    Graph G = importSample(Name);
    EXPECT_EQ(parameterCount(G), Expected) << Name;
  }
}

// The scaling configs of bench/onnx_scaling.sh: the LLaMA formula 2*V*H + L*(2*H*H +
// 2*H*KV*Dh + 3*H*I + 2*H) + H, which gives the totals commonly published for these
// checkpoints (transformers was not available to measure them, unlike the map above).
TEST(HfConfigImporter, ParameterCountsOfTheLargeLlamaConfigs) {
  const std::map<std::string, int64_t> Published = {{"llama-2-13b", 13'015'864'320},
                                                    {"codellama-34b", 33'743'970'304},
                                                    {"llama-2-70b", 68'976'648'192}};
  for (const auto &[Name, Expected] : Published) {
    Graph G = importSample(Name);
    EXPECT_EQ(parameterCount(G), Expected) << Name;
  }
}

TEST(HfConfigImporter, ParameterCountsOfConfigVariantsMatchTransformers) {
  // Same measurement as above with the edited config (AutoModel for the *Model
  // architectures, which have no head and no "model." prefix).
  std::vector<VariantCount> Cases;
  Cases.push_back({"bert-base-uncased", "bert-model",
                   {{"architectures", llvm::json::Array{"BertModel"}}}, 109'482'240});
  Cases.push_back({"bert-base-uncased", "bert-untied", {{"tie_word_embeddings", false}},
                   132'985'716});
  Cases.push_back({"gpt2", "gpt2-untied", {{"tie_word_embeddings", false}}, 163'037'184});
  Cases.push_back({"gpt2", "gpt2-model", {{"architectures", llvm::json::Array{"GPT2Model"}}},
                   124'439'808});
  Cases.push_back({"tiny-llama", "llama-biases", {{"attention_bias", true}, {"mlp_bias", true}},
                   159'232});
  Cases.push_back({"tiny-llama", "llama-tied", {{"tie_word_embeddings", true}}, 125'248});
  Cases.push_back({"tiny-llama", "llama-model",
                   {{"architectures", llvm::json::Array{"LlamaModel"}}}, 125'248});
  Cases.push_back({"pythia-160m", "neox-serial", {{"use_parallel_residual", false}},
                   162'322'944});
  Cases.push_back({"pythia-160m", "neox-tied", {{"tie_word_embeddings", true}}, 123'689'472});
  // Phi: per-head q and k LayerNorms, grouped k/v heads, a tied head keeping its bias.
  Cases.push_back({"phi-2", "phi-qknorm-gqa-tied",
                   {{"qk_layernorm", true}, {"num_key_value_heads", 8}, {"tie_word_embeddings", true}},
                   2'333'926'400});
  Cases.push_back({"phi-2", "phi-model", {{"architectures", llvm::json::Array{"PhiModel"}}},
                   2'648'560'640});
  // OPT: no biases and an untied head; the base model (its decoder, no "model." prefix).
  Cases.push_back({"opt-350m", "opt-nobias-untied",
                   {{"enable_bias", false}, {"tie_word_embeddings", false}}, 356'714'496});
  Cases.push_back({"opt-350m", "opt-model", {{"architectures", llvm::json::Array{"OPTModel"}}},
                   331'196'416});
  expectParameterCounts(std::move(Cases));
}

TEST(HfConfigImporter, TinyLlamaStateDictMatchesTransformers) {
  // model.named_parameters() / named_buffers() of the tiny-llama sample (transformers
  // 5.24), with each Linear weight written as the IR stores it: [in, out].
  std::map<std::string, Shape> Expected = {
      {"model.embed_tokens.weight", {512, 64}}, {"model.norm.weight", {64}},
      {"lm_head.weight", {64, 512}}};
  for (int L = 0; L < 2; ++L) {
    std::string P = "model.layers." + std::to_string(L) + ".";
    Expected[P + "self_attn.q_proj.weight"] = {64, 64};
    Expected[P + "self_attn.k_proj.weight"] = {64, 32};
    Expected[P + "self_attn.v_proj.weight"] = {64, 32};
    Expected[P + "self_attn.o_proj.weight"] = {64, 64};
    Expected[P + "mlp.gate_proj.weight"] = {64, 176};
    Expected[P + "mlp.up_proj.weight"] = {64, 176};
    Expected[P + "mlp.down_proj.weight"] = {176, 64};
    Expected[P + "input_layernorm.weight"] = {64};
    Expected[P + "post_attention_layernorm.weight"] = {64};
  }
  std::map<std::string, Shape> ExpectedBuffers = {{"model.rotary_emb.inv_freq", {8}},
                                                  {"model.rotary_emb.original_inv_freq", {8}}};
  Graph G = importSample("tiny-llama");
  std::map<std::string, Shape> Params, Buffers;
  for (const Tensor &T : G.Tensors) {
    if (T.Kind == TensorKind::Parameter)
      Params[T.Name] = T.Shape;
    if (T.Kind == TensorKind::Buffer)
      Buffers[T.Name] = T.Shape;
  }
  EXPECT_EQ(Params, Expected);
  EXPECT_EQ(Buffers, ExpectedBuffers);
}

TEST(HfConfigImporter, Llama2ParameterShapes) {
  Graph G = importSample("llama-2-7b");
  EXPECT_EQ(shapeOf(G, "model.embed_tokens.weight"), (Shape{32000, 4096}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.q_proj.weight"), (Shape{4096, 4096}));
  EXPECT_EQ(shapeOf(G, "model.layers.31.mlp.gate_proj.weight"), (Shape{4096, 11008}));
  EXPECT_EQ(shapeOf(G, "model.layers.31.mlp.down_proj.weight"), (Shape{11008, 4096}));
  EXPECT_EQ(shapeOf(G, "model.norm.weight"), (Shape{4096}));
  EXPECT_EQ(shapeOf(G, "lm_head.weight"), (Shape{4096, 32000}));
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.q_proj.bias"), nullptr);
  EXPECT_EQ(findTensor(G, "model.layers.32.self_attn.q_proj.weight"), nullptr);
  ASSERT_TRUE(G.DeclaredTieWordEmbeddings.has_value());
  EXPECT_FALSE(*G.DeclaredTieWordEmbeddings);
  const Tensor *Q = findTensor(G, "model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(Q, nullptr);
  EXPECT_TRUE(Q->Stored);
  EXPECT_EQ(Q->Type, DType::Float32) << "weights are float32 whatever torch_dtype says";
  EXPECT_EQ(G.Name, "meta-llama/Llama-2-7b-hf");
  EXPECT_EQ(G.SourceFormat, "hf-config");
  EXPECT_EQ(G.OpsetVersion, 17);
}

TEST(HfConfigImporter, GroupedQueryAttentionShapes) {
  Graph Mistral = importSample("mistral-7b");
  EXPECT_EQ(shapeOf(Mistral, "model.layers.0.self_attn.q_proj.weight"), (Shape{4096, 4096}));
  EXPECT_EQ(shapeOf(Mistral, "model.layers.0.self_attn.k_proj.weight"), (Shape{4096, 1024}));
  EXPECT_EQ(shapeOf(Mistral, "model.layers.0.self_attn.v_proj.weight"), (Shape{4096, 1024}));
  // repeat_kv: [b, 8, s, 128] -> Unsqueeze -> Expand [b, 8, 4, s, 128] -> Reshape.
  const Node *Expand = findNode(Mistral, "/model/layers.0/self_attn/Expand");
  ASSERT_NE(Expand, nullptr);
  EXPECT_EQ(Mistral.Tensors[Expand->Outputs[0]].Shape, (Shape{1, 8, 4, 128, 128}));
  // q k^T is over all 32 heads.
  const Node *Scores = findNode(Mistral, "/model/layers.0/self_attn/MatMul");
  ASSERT_NE(Scores, nullptr);
  EXPECT_EQ(Mistral.Tensors[Scores->Outputs[0]].Shape, (Shape{1, 32, 128, 128}));

  Graph Qwen = importSample("qwen2-0.5b");
  EXPECT_EQ(shapeOf(Qwen, "model.layers.0.self_attn.k_proj.weight"), (Shape{896, 128}));
  EXPECT_EQ(shapeOf(Qwen, "model.layers.0.self_attn.k_proj.bias"), (Shape{128}));
  EXPECT_EQ(shapeOf(Qwen, "model.layers.0.self_attn.q_proj.bias"), (Shape{896}));
  EXPECT_EQ(findTensor(Qwen, "model.layers.0.self_attn.o_proj.bias"), nullptr);

  Graph Gemma = importSample("gemma-2b"); // head_dim 256 with one k/v head
  EXPECT_EQ(shapeOf(Gemma, "model.layers.0.self_attn.q_proj.weight"), (Shape{2048, 2048}));
  EXPECT_EQ(shapeOf(Gemma, "model.layers.0.self_attn.k_proj.weight"), (Shape{2048, 256}));
  EXPECT_EQ(shapeOf(Gemma, "model.layers.0.self_attn.o_proj.weight"), (Shape{2048, 2048}));
}

// Qwen3Attention: q_norm(q_proj(x).view(b, s, heads, head_dim)).transpose(1, 2), an
// RMSNorm over each head of the queries and keys (weights of head_dim), with head_dim
// 128 given apart from hidden / heads (64), no biases.
TEST(HfConfigImporter, Qwen3NormalisesEachHeadOfQueriesAndKeysBeforeTheRotary) {
  Graph G = importSample("qwen3-0.6b");
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.q_proj.weight"), (Shape{1024, 2048}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.k_proj.weight"), (Shape{1024, 1024}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.o_proj.weight"), (Shape{2048, 1024}));
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.q_proj.bias"), nullptr);
  for (const char *Norm : {"q_norm", "k_norm"}) {
    std::string Name = std::string("model.layers.27.self_attn.") + Norm + ".weight";
    EXPECT_EQ(shapeOf(G, Name), (Shape{128})) << Name;
    // The weight multiplies the normalised per-head view [batch, seq, heads, head_dim];
    // the transpose to [batch, heads, seq, head_dim] comes after.
    TensorId W = G.findTensor(Name);
    ASSERT_NE(W, NoTensor);
    const Node *Scale = nullptr;
    for (const Node &N : G.Nodes)
      if (N.OpType == "Mul" && llvm::is_contained(N.Inputs, W))
        Scale = &N;
    ASSERT_NE(Scale, nullptr) << Name;
    const Shape &Out = G.Tensors[Scale->Outputs[0]].Shape;
    EXPECT_EQ(Out, (Shape{1, 128, Norm[0] == 'q' ? 16 : 8, 128})) << Name; // batch 1, seq 128
  }
}

// Phi3Attention and Phi3MLP: one qkv_proj whose output is sliced into q, k and v, one
// gate_up_proj chunked into gate and up; no biases; the rotary over partial_rotary_factor
// of each head (Phi-4-mini's 0.75; Phi-3-mini rotates whole heads).
TEST(HfConfigImporter, Phi3FusesTheProjectionsAndMayRotatePartOfEachHead) {
  Graph G = importSample("phi-3-mini-4k");
  EXPECT_EQ(shapeOf(G, "model.layers.0.self_attn.qkv_proj.weight"), (Shape{3072, 9216}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.mlp.gate_up_proj.weight"), (Shape{3072, 16384}));
  EXPECT_EQ(shapeOf(G, "model.layers.0.mlp.down_proj.weight"), (Shape{8192, 3072}));
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.q_proj.weight"), nullptr);
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.qkv_proj.bias"), nullptr);
  EXPECT_EQ(shapeOf(G, "model.rotary_emb.inv_freq"), (Shape{48})); // head_dim 96, whole
  EXPECT_EQ(findTensor(G, "lm_head.weight") != nullptr, true);      // not tied

  ConfigVariant Partial("phi3-partial", R"({"model_type": "phi3", "hidden_size": 256,
      "intermediate_size": 512, "num_hidden_layers": 1, "num_attention_heads": 4,
      "num_key_value_heads": 2, "vocab_size": 1000, "partial_rotary_factor": 0.75})");
  Graph P = importPath(Partial.path(), dims(1, 16));
  EXPECT_EQ(shapeOf(P, "model.rotary_emb.inv_freq"), (Shape{24})); // 0.75 x 64 / 2
  EXPECT_EQ(shapeOf(P, "model.layers.0.self_attn.qkv_proj.weight"), (Shape{256, 512}));
}

TEST(HfConfigImporter, AnAbsurdLayerCountIsAnErrorNotAnAllocation) {
  // Found by FuzzHfConfig: 2,151,643 layers made the importer reserve the whole machine.
  ConfigVariant Huge("gemma-3-1b", "layers-2151643", {{"num_hidden_layers", 2151643}});
  std::string Error = importError(Huge.path());
  EXPECT_NE(Error.find("field 'num_hidden_layers' is 2151643; expected at most 10000"),
            std::string::npos)
      << Error;
}

TEST(HfConfigImporter, AMultimodalGemma3ConfigPointsAtItsTextConfig) {
  ConfigVariant Multimodal("gemma3-multimodal", R"({"model_type": "gemma3",
      "text_config": {"model_type": "gemma3_text", "hidden_size": 2560},
      "vision_config": {"model_type": "siglip_vision_model"}})");
  std::string Error = importError(Multimodal.path());
  EXPECT_NE(Error.find("multimodal Gemma 3"), std::string::npos) << Error;
  EXPECT_NE(Error.find("'text_config'"), std::string::npos) << Error;
}

TEST(HfConfigImporter, TiedHeadReadsTheEmbeddingThroughATranspose) {
  for (auto [Name, Embedding] :
       {std::pair<std::string, std::string>{"gpt2", "transformer.wte.weight"},
        {"gemma-2b", "model.embed_tokens.weight"},
        {"qwen2-0.5b", "model.embed_tokens.weight"}}) {
    Graph G = importSample(Name);
    ASSERT_TRUE(G.DeclaredTieWordEmbeddings.has_value()) << Name;
    EXPECT_TRUE(*G.DeclaredTieWordEmbeddings) << Name;
    EXPECT_EQ(findTensor(G, "lm_head.weight"), nullptr) << Name;
    TensorId Logits = G.findTensor("logits");
    ASSERT_NE(Logits, NoTensor) << Name;
    const Node *Head = producerOf(G, Logits);
    ASSERT_NE(Head, nullptr);
    EXPECT_EQ(Head->OpType, "MatMul");
    const Node *Transpose = producerOf(G, Head->Inputs[1]);
    ASSERT_NE(Transpose, nullptr) << Name;
    EXPECT_EQ(Transpose->OpType, "Transpose");
    EXPECT_EQ(Transpose->intsAttr("perm"), (std::vector<int64_t>{1, 0}));
    EXPECT_EQ(G.Tensors[Transpose->Inputs[0]].Name, Embedding);
  }
  // BERT's MLM decoder is tied too and adds cls.predictions.bias.
  Graph Bert = importSample("bert-base-uncased");
  EXPECT_TRUE(Bert.DeclaredTieWordEmbeddings.value_or(false));
  EXPECT_EQ(findTensor(Bert, "cls.predictions.decoder.weight"), nullptr);
  EXPECT_EQ(shapeOf(Bert, "cls.predictions.bias"), (Shape{30522}));

  // Untied: a separate [hidden, vocab] head (transformers 5.x names GPT-NeoX's lm_head).
  Graph Pythia = importSample("pythia-160m");
  EXPECT_FALSE(Pythia.DeclaredTieWordEmbeddings.value_or(true));
  EXPECT_EQ(shapeOf(Pythia, "lm_head.weight"), (Shape{768, 50304}));
  const Node *Head = producerOf(Pythia, Pythia.findTensor("logits"));
  ASSERT_NE(Head, nullptr);
  EXPECT_EQ(Pythia.Tensors[Head->Inputs[1]].Name, "lm_head.weight");
}

TEST(HfConfigImporter, Buffers) {
  Graph Llama = importSample("llama-2-7b");
  const Tensor *InvFreq = findTensor(Llama, "model.rotary_emb.inv_freq");
  ASSERT_NE(InvFreq, nullptr);
  EXPECT_EQ(InvFreq->Kind, TensorKind::Buffer);
  EXPECT_TRUE(InvFreq->Stored);
  EXPECT_EQ(InvFreq->Type, DType::Float32);
  EXPECT_EQ(InvFreq->Shape, (Shape{64}));
  ASSERT_EQ(InvFreq->FloatValues.size(), 64u);
  EXPECT_DOUBLE_EQ(InvFreq->FloatValues[0], 1.0);
  EXPECT_NEAR(InvFreq->FloatValues[1], std::pow(10000.0, -2.0 / 128), 1e-7);
  EXPECT_FALSE(InvFreq->Consumers.empty());
  EXPECT_EQ(shapeOf(Llama, "model.rotary_emb.original_inv_freq"), (Shape{64}));

  EXPECT_EQ(shapeOf(importSample("pythia-160m"), "gpt_neox.rotary_emb.inv_freq"), (Shape{8}));

  Graph Gemma = importSample("gemma-2b");
  const Tensor *Scale = findTensor(Gemma, "model.embed_tokens.embed_scale");
  ASSERT_NE(Scale, nullptr);
  EXPECT_EQ(Scale->Kind, TensorKind::Buffer);
  EXPECT_TRUE(Scale->Shape.empty());
  ASSERT_EQ(Scale->FloatValues.size(), 1u);
  EXPECT_DOUBLE_EQ(Scale->FloatValues[0], std::sqrt(2048.0));

  Graph Bert = importSample("bert-base-uncased");
  for (const char *Name : {"bert.embeddings.position_ids", "bert.embeddings.token_type_ids"}) {
    const Tensor *T = findTensor(Bert, Name);
    ASSERT_NE(T, nullptr) << Name;
    EXPECT_EQ(T->Kind, TensorKind::Buffer);
    EXPECT_EQ(T->Type, DType::Int64);
    EXPECT_EQ(T->Shape, (Shape{1, 512}));
  }

  // transformers >= 4.x dropped GPT-2's attn.bias / attn.masked_bias mask buffers.
  Graph Gpt2 = importSample("gpt2");
  for (const Tensor &T : Gpt2.Tensors)
    EXPECT_NE(T.Kind, TensorKind::Buffer) << T.Name;
}

TEST(HfConfigImporter, DimsBindInputAndLogitsShapes) {
  Graph Default = importSample("tiny-llama", ImportOptions());
  EXPECT_EQ(shapeOf(Default, "input_ids"), (Shape{1, 2048}));
  EXPECT_EQ(shapeOf(Default, "logits"), (Shape{1, 2048, 512}));

  Graph G = importSample("tiny-llama", dims(4, 128));
  ASSERT_EQ(G.Inputs.size(), 1u);
  const Tensor &Ids = G.Tensors[G.Inputs[0]];
  EXPECT_EQ(Ids.Name, "input_ids");
  EXPECT_EQ(Ids.Type, DType::Int64);
  EXPECT_EQ(Ids.Kind, TensorKind::Input);
  EXPECT_EQ(Ids.Shape, (Shape{4, 128}));
  ASSERT_EQ(G.Outputs.size(), 1u);
  const Tensor &Logits = G.Tensors[G.Outputs[0]];
  EXPECT_EQ(Logits.Name, "logits");
  EXPECT_TRUE(Logits.IsGraphOutput);
  EXPECT_EQ(Logits.Kind, TensorKind::Output);
  EXPECT_EQ(Logits.Type, DType::Float32);
  EXPECT_EQ(Logits.Shape, (Shape{4, 128, 512}));
  std::map<std::string, int64_t> Bound;
  for (const DimBinding &D : G.Dims)
    Bound[D.Name] = D.Value;
  EXPECT_EQ(Bound, (std::map<std::string, int64_t>{{"batch", 4}, {"seq", 128}}));
  // The additive mask is computed per forward over the whole batch, as transformers 5.x
  // does for eager attention, and nothing of that size is stored.
  const Node *Mask = findNode(G, "/model/Where");
  ASSERT_NE(Mask, nullptr);
  EXPECT_EQ(G.Tensors[Mask->Outputs[0]].Shape, (Shape{4, 1, 128, 128}));
  EXPECT_EQ(G.Tensors[Mask->Outputs[0]].Type, DType::Float32);
  for (const Tensor &T : G.Tensors)
    if (T.Stored && T.Kind != TensorKind::Parameter) {
      EXPECT_LE(T.numElements(), 64) << T.Name;
    }

  // --input input_ids=3x64 wins over --dim, and a later --dim of a name wins.
  ImportOptions Options = dims(4, 128);
  Options.Dims.push_back({"seq", 96});
  EXPECT_EQ(shapeOf(importSample("tiny-llama", Options), "logits"), (Shape{4, 96, 512}));
  Options.Inputs = {{"input_ids", {3, 64}}};
  EXPECT_EQ(shapeOf(importSample("tiny-llama", Options), "logits"), (Shape{3, 64, 512}));
  // --micro-batch sets dim 0 of the batch inputs.
  Options.MicroBatch = 2;
  EXPECT_EQ(shapeOf(importSample("tiny-llama", Options), "input_ids"), (Shape{2, 64}));

  // BERT's three inputs share [batch, seq].
  Graph Bert = importSample("bert-base-uncased", dims(8, 256));
  ASSERT_EQ(Bert.Inputs.size(), 3u);
  for (TensorId In : Bert.Inputs)
    EXPECT_EQ(Bert.Tensors[In].Shape, (Shape{8, 256})) << Bert.Tensors[In].Name;
  EXPECT_EQ(shapeOf(Bert, "logits"), (Shape{8, 256, 30522}));
}

TEST(HfConfigImporter, SequenceLongerThanLearnedPositionsIsRejected) {
  std::string Error = importError(samplePath("gpt2"), dims(1, 2048));
  EXPECT_NE(Error.find(samplePath("gpt2")), std::string::npos) << Error;
  EXPECT_NE(Error.find("seq 2048"), std::string::npos) << Error;
  EXPECT_NE(Error.find("1024"), std::string::npos) << Error;
  EXPECT_NE(Error.find("max_position_embeddings"), std::string::npos) << Error;
  EXPECT_NE(importError(samplePath("bert-base-uncased"), dims(1, 513)).find("512"),
            std::string::npos);
  // Rotary models have no learned table to run out of.
  EXPECT_EQ(shapeOf(importSample("pythia-160m", dims(1, 4096)), "logits"),
            (Shape{1, 4096, 50304}));
  // Without an explicit seq, learned-position models take their longest sequence.
  Graph G = importSample("gpt2", ImportOptions());
  EXPECT_EQ(shapeOf(G, "input_ids"), (Shape{1, 1024}));
  EXPECT_EQ(G.Diags.size(), 1u);
}

TEST(HfConfigImporter, BadDimsAndInputsAreRejected) {
  ImportOptions Options;
  Options.Inputs = {{"pixel_values", {1, 3, 224, 224}}};
  std::string Error = importError(samplePath("tiny-llama"), Options);
  EXPECT_NE(Error.find("pixel_values"), std::string::npos) << Error;
  EXPECT_NE(Error.find("input_ids"), std::string::npos) << Error;
  Options.Inputs = {{"input_ids", {1, 2, 3}}};
  EXPECT_NE(importError(samplePath("tiny-llama"), Options).find("expected 2"),
            std::string::npos);
  Options.Inputs = {{"input_ids", {2, 64}}, {"attention_mask", {2, 32}}};
  EXPECT_NE(importError(samplePath("bert-base-uncased"), Options).find("differ"),
            std::string::npos);
  EXPECT_NE(importError(samplePath("tiny-llama"), dims(0, 16)).find("dim 'batch' is 0"),
            std::string::npos);
}

TEST(HfConfigImporter, MissingFieldNamesFileFieldAndExpectation) {
  ConfigVariant Config("tiny-llama", "no-hidden-size", {}, {"hidden_size"});
  std::string Error = importError(Config.path());
  EXPECT_NE(Error.find(Config.path()), std::string::npos) << Error;
  EXPECT_NE(Error.find("'hidden_size'"), std::string::npos) << Error;
  EXPECT_NE(Error.find("missing"), std::string::npos) << Error;
  EXPECT_NE(Error.find("expected a positive integer"), std::string::npos) << Error;

  ConfigVariant Wrong("tiny-llama", "string-layers", {{"num_hidden_layers", "two"}});
  Error = importError(Wrong.path());
  EXPECT_NE(Error.find("'num_hidden_layers' is \"two\""), std::string::npos) << Error;

  ConfigVariant Act("tiny-llama", "bad-act", {{"hidden_act", "swiglu"}});
  Error = importError(Act.path());
  EXPECT_NE(Error.find("'hidden_act' is \"swiglu\""), std::string::npos) << Error;
  EXPECT_NE(Error.find("gelu_pytorch_tanh"), std::string::npos) << Error;

  ConfigVariant Kv("tiny-llama", "bad-kv", {{"num_key_value_heads", 3}});
  EXPECT_NE(importError(Kv.path()).find("num_key_value_heads 3"), std::string::npos);

  ConfigVariant NotJson("not-json", std::string("{\"model_type\": \"llama\",,}"));
  EXPECT_NE(importError(NotJson.path()).find("not valid JSON"), std::string::npos);
  EXPECT_NE(importError("/nonexistent/config.json").find("cannot read"), std::string::npos);
}

TEST(HfConfigImporter, UnknownModelTypeListsSupportedOnes) {
  ConfigVariant Config("tiny-llama", "t5", {{"model_type", "t5"}});
  std::string Error = importError(Config.path());
  EXPECT_NE(Error.find(Config.path()), std::string::npos) << Error;
  EXPECT_NE(Error.find("'t5'"), std::string::npos) << Error;
  EXPECT_NE(Error.find("llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, gemma, gemma2, gemma3_text, phi3, olmo2, olmoe, gpt_oss, deepseek_v2, deepseek_v3, granite, smollm3, starcoder2, stablelm, phi, opt, gptj, gpt2, gpt_neox, bert"), std::string::npos)
      << Error;

  ConfigVariant NoType("tiny-llama", "no-type", {}, {"model_type"});
  EXPECT_NE(importError(NoType.path()).find("'model_type' is missing"), std::string::npos);
}

TEST(HfConfigImporter, EveryGraphIsConcreteOrderedAndStandardOnnx) {
  // Ops of the default ONNX domain (opset 17) the importer may emit.
  const std::set<std::string> StandardOps = {
      "Add",         "Cast",       "CastLike",   "Concat",     "Cos",       "Div",     "Erf",
      "Expand",      "Gather",     "Gemm",       "LayerNormalization",  "LessOrEqual",
      "MatMul",      "Mul",        "Neg",        "Pow",       "Range",   "Reciprocal",
      "ReduceMean",  "Relu",       "Reshape",    "Sigmoid",   "Sin",     "Slice",
      "Softmax",     "Split",      "Sqrt",       "Tanh",      "Transpose", "Unsqueeze",
      "Where",       "TopK",       "ReduceSum",  "ScatterElements", "Sub",   "Clip",
      "ConstantOfShape", "GatherElements", "Not",   "Equal",   "CumSum",  "ArgMax",
      "Identity"};
  for (const auto &[Name, Count] : MeasuredParameterCounts) {
    Graph G = importSample(Name, dims(2, 64));
    for (const Tensor &T : G.Tensors) {
      EXPECT_TRUE(T.ShapeKnown) << Name << ": " << T.Name;
      EXPECT_NE(T.Type, DType::Undefined) << Name << ": " << T.Name;
      if (!T.Stored && T.Kind != TensorKind::Input) {
        EXPECT_NE(T.Producer, NoNode) << Name << ": " << T.Name << " is never computed";
      }
    }
    ASSERT_EQ(G.TopologicalOrder.size(), G.Nodes.size()) << Name;
    std::vector<NodeId> Sorted = G.TopologicalOrder;
    std::sort(Sorted.begin(), Sorted.end());
    for (size_t I = 0; I < Sorted.size(); ++I)
      ASSERT_EQ(Sorted[I], static_cast<NodeId>(I)) << Name << ": order is not a permutation";
    std::vector<size_t> Position(G.Nodes.size());
    for (size_t I = 0; I < G.TopologicalOrder.size(); ++I)
      Position[G.TopologicalOrder[I]] = I;
    for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N) {
      const Node &Nd = G.Nodes[N];
      // The experts' grouped matmul has no ONNX operator: the only op of another domain.
      if (Nd.OpType == "GroupedMatMul") {
        EXPECT_EQ(Nd.Domain, "ai.trainmem") << Nd.Name;
      } else {
        EXPECT_TRUE(StandardOps.count(Nd.OpType)) << Name << ": " << Nd.Name;
        EXPECT_EQ(Nd.Domain, "") << Nd.Name;
      }
      EXPECT_FALSE(Nd.LayerPath.empty()) << Name << ": " << Nd.Name;
      for (TensorId In : Nd.Inputs) {
        if (NodeId P = G.Tensors[In].Producer; P != NoNode) {
          EXPECT_LT(Position[P], Position[N]) << Name << ": " << Nd.Name;
        }
      }
    }
    EXPECT_FALSE(G.Diags.hasErrors()) << Name;
    // The importer declares every kind itself; the ONNX importers' classifier agrees.
    Graph Reclassified = G;
    classifyStoredTensors(Reclassified);
    for (size_t I = 0; I < G.Tensors.size(); ++I)
      EXPECT_EQ(Reclassified.Tensors[I].Kind, G.Tensors[I].Kind)
          << Name << ": " << G.Tensors[I].Name;
    int Outputs = 0;
    for (const Tensor &T : G.Tensors)
      Outputs += T.IsGraphOutput;
    EXPECT_EQ(Outputs, 1) << Name;
  }
}

TEST(HfConfigImporter, NodeNamesFollowTorchOnnxScopes) {
  Graph G = importSample("tiny-llama");
  const Node *Q = findNode(G, "/model/layers.0/self_attn/q_proj/MatMul");
  ASSERT_NE(Q, nullptr);
  EXPECT_EQ(Q->LayerPath, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(G.Tensors[Q->Outputs[0]].Name, "/model/layers.0/self_attn/q_proj/MatMul_output_0");
  EXPECT_EQ(G.Tensors[Q->Inputs[1]].Name, "model.layers.0.self_attn.q_proj.weight");
  // The second MatMul directly in self_attn (probs x v) gets torch.onnx's "_1" suffix.
  const Node *Pv = findNode(G, "/model/layers.0/self_attn/MatMul_1");
  ASSERT_NE(Pv, nullptr);
  EXPECT_EQ(G.Tensors[Pv->Outputs[0]].Shape, (Shape{1, 4, 128, 16}));
  const Node *Head = findNode(G, "/lm_head/MatMul");
  ASSERT_NE(Head, nullptr);
  EXPECT_EQ(Head->LayerPath, "lm_head");
}

TEST(HfConfigImporter, RmsNormIsDecomposedLikeTorchOnnx) {
  auto OpsIn = [](const Graph &G, const std::string &Scope) {
    std::vector<std::string> Ops;
    for (NodeId N : G.TopologicalOrder)
      if (G.Nodes[N].Name.rfind(Scope + "/", 0) == 0)
        Ops.push_back(G.Nodes[N].OpType);
    return Ops;
  };
  Graph Llama = importSample("tiny-llama");
  // hidden_states.to(torch.float32) first, .to(input_dtype) before the weight: casts that
  // change nothing in fp32, marked so that a 16-bit run keeps the norm in fp32.
  EXPECT_EQ(OpsIn(Llama, "/model/layers.0/input_layernorm"),
            (std::vector<std::string>{"Cast", "Pow", "ReduceMean", "Add", "Sqrt", "Reciprocal",
                                      "Mul", "CastLike", "Mul"}));
  const Node *Up = findNode(Llama, "/model/layers.0/input_layernorm/Cast");
  ASSERT_NE(Up, nullptr);
  EXPECT_TRUE(Llama.Tensors[Up->Outputs[0]].UpcastToFp32);
  const Node *Back = findNode(Llama, "/model/layers.0/input_layernorm/CastLike");
  ASSERT_NE(Back, nullptr);
  EXPECT_EQ(Back->Inputs[1], Up->Inputs[0]) << "cast back to the norm input's dtype";
  EXPECT_FALSE(Llama.Tensors[Back->Outputs[0]].UpcastToFp32);
  const Node *Mean = findNode(Llama, "/model/layers.0/input_layernorm/ReduceMean");
  ASSERT_NE(Mean, nullptr);
  EXPECT_EQ(Mean->intsAttr("axes"), (std::vector<int64_t>{-1}));
  EXPECT_EQ(Mean->intAttr("keepdims"), 1);
  const Node *Eps = findNode(Llama, "/model/layers.0/input_layernorm/Add");
  ASSERT_NE(Eps, nullptr);
  EXPECT_EQ(Llama.Tensors[Eps->Inputs[1]].FloatValues, (std::vector<double>{1e-6}));
  // SwiGLU: silu(gate) = gate * Sigmoid(gate), times up.
  EXPECT_EQ(OpsIn(Llama, "/model/layers.0/mlp/act_fn"),
            (std::vector<std::string>{"Sigmoid", "Mul"}));

  // Gemma scales by (1 + weight) and uses the tanh GELU for its legacy "gelu".
  Graph Gemma = importSample("gemma-2b");
  std::vector<std::string> Norm = OpsIn(Gemma, "/model/norm");
  EXPECT_EQ(Norm, (std::vector<std::string>{"Cast", "Pow", "ReduceMean", "Add", "Sqrt",
                                            "Reciprocal", "Mul", "Cast", "Add", "Mul",
                                            "CastLike"}));
  std::vector<std::string> Act = OpsIn(Gemma, "/model/layers.0/mlp/act_fn");
  EXPECT_NE(std::find(Act.begin(), Act.end(), "Tanh"), Act.end());

  // BERT's exact GELU: x * (erf(x / sqrt 2) + 1) * 0.5.
  EXPECT_EQ(OpsIn(importSample("bert-base-uncased"),
                  "/bert/encoder/layer.0/intermediate/intermediate_act_fn"),
            (std::vector<std::string>{"Div", "Erf", "Add", "Mul", "Mul"}));
}

TEST(HfConfigImporter, GptNeoXPartialRotary) {
  Graph G = importSample("pythia-160m", dims(2, 32));
  // rotary_pct 0.25 of head_dim 64: cos/sin tables are 16 wide.
  EXPECT_EQ(shapeOf(G, "/gpt_neox/rotary_emb/Cos_output_0"), (Shape{1, 32, 16}));
  const Node *Split = findNode(G, "/gpt_neox/layers.0/attention/Split");
  ASSERT_NE(Split, nullptr);
  ASSERT_EQ(Split->Outputs.size(), 3u);
  EXPECT_EQ(G.Tensors[Split->Outputs[0]].Shape, (Shape{2, 12, 32, 64}));
  // The rotated 16 channels are concatenated back with the 48 that pass through.
  const Node *Scores = findNode(G, "/gpt_neox/layers.0/attention/MatMul");
  ASSERT_NE(Scores, nullptr);
  const Node *QConcat = producerOf(G, Scores->Inputs[0]);
  ASSERT_NE(QConcat, nullptr);
  EXPECT_EQ(QConcat->OpType, "Concat");
  EXPECT_EQ(G.Tensors[QConcat->Inputs[1]].Shape, (Shape{2, 12, 32, 48}));
}

TEST(HfConfigImporter, Llama2At2048ImportsWhole) {
  // Tensors are metadata only (its speed is BM_ImportHfConfig7B's, in bench/).
  Graph G = importSample("llama-2-7b", dims(1, 2048));
  EXPECT_EQ(G.Nodes.size(), G.TopologicalOrder.size());
  EXPECT_EQ(G.Dims.size(), 2u);
  int64_t Params = 0;
  for (const Tensor &T : G.Tensors)
    if (T.Kind == TensorKind::Parameter)
      Params += T.numElements();
  EXPECT_EQ(Params, 6'738'415'616) << "LLaMA-2-7B's parameter count";
}

TEST(HfConfigImporter, OnlyTheHeadIsTiedToTheEmbedding) {
  // A shrunk BERT whose position embedding [512, 128] has the shape of its FFN output
  // weights: only the MLM decoder shares the word embedding (transformers 5.24 counts
  // 611,456 parameters for this config).
  Graph G = importPath(std::string(TRAINMEM_SOURCE_DIR) +
                           "/tests/data/measured-hf/configs/bert-base-uncased.json",
                       dims(2, 64));
  TrainingSetup S;
  auto C = takeCensus(G, S);
  ASSERT_TRUE(bool(C)) << llvm::toString(C.takeError());
  EXPECT_EQ(C->TiedGroups, 0) << "the head reads the embedding itself: nothing to merge";
  EXPECT_EQ(C->TotalParameters, 611'456);
}

TEST(HfConfigImporter, MixtureOfExpertsLayersFollowTheConfig) {
  // Qwen3-MoE: experts in every decoder_sparse_step-th layer less mlp_only_layers, the
  // others a dense MLP of intermediate_size; one router per expert layer.
  ConfigVariant Config("qwen3-30b-a3b", "moe-layers",
                       {{"num_hidden_layers", 4},
                        {"decoder_sparse_step", 2},
                        {"mlp_only_layers", llvm::json::Array{1}}});
  Graph G = importPath(Config.path());
  for (int L = 0; L < 4; ++L) {
    const std::string P = "model.layers." + std::to_string(L) + ".mlp.";
    const bool Experts = L == 3; // layers 1 and 3 by the step, less layer 1
    const Tensor *GateUp = findTensor(G, P + "experts.gate_up_proj");
    EXPECT_EQ(GateUp != nullptr, Experts) << L;
    EXPECT_EQ(findTensor(G, P + "gate_proj.weight") != nullptr, !Experts) << L;
    if (GateUp) {
      EXPECT_EQ(GateUp->Shape, (Shape{128, 2 * 768, 2048}));
      EXPECT_EQ(GateUp->Kind, TensorKind::Parameter);
      EXPECT_EQ(findTensor(G, P + "experts.down_proj")->Shape, (Shape{128, 2048, 768}));
      EXPECT_EQ(findTensor(G, P + "gate.weight")->Shape, (Shape{2048, 128}));
    }
  }
  ASSERT_EQ(G.RouterWeights.size(), 1u);
  EXPECT_EQ(G.Tensors[G.RouterWeights[0]].Name, "model.layers.3.mlp.gate.weight");
  // Every token is routed to 8 experts: the grouped matmuls see tokens x 8 rows.
  int GroupedMatMuls = 0;
  for (const Node &N : G.Nodes)
    if (N.OpType == "GroupedMatMul") {
      ++GroupedMatMuls;
      EXPECT_EQ(G.Tensors[N.Inputs[0]].Shape[0], 128 * 8) << N.Name;
    }
  EXPECT_EQ(GroupedMatMuls, 2);

  // Qwen2-MoE's shared expert and its gate are linears beside the routed experts.
  Graph Qwen2 = importSample("qwen1.5-moe-a2.7b");
  EXPECT_EQ(findTensor(Qwen2, "model.layers.0.mlp.shared_expert.up_proj.weight")->Shape,
            (Shape{2048, 5632}));
  EXPECT_EQ(findTensor(Qwen2, "model.layers.0.mlp.shared_expert_gate.weight")->Shape,
            (Shape{2048, 1}));
  EXPECT_EQ(findTensor(Qwen2, "model.layers.0.self_attn.q_proj.bias")->Shape, (Shape{2048}));
}

TEST(HfConfigImporter, MixtureOfExpertsFieldsAreChecked) {
  ConfigVariant TooMany("mixtral-8x7b", "moe-top-k", {{"num_experts_per_tok", 9}});
  std::string E = importError(TooMany.path());
  EXPECT_NE(E.find(TooMany.path()), std::string::npos) << E;
  EXPECT_NE(E.find("'num_experts_per_tok' is 9; expected at most the 8 experts"),
            std::string::npos)
      << E;
  ConfigVariant Dense("qwen3-30b-a3b", "moe-dense-range",
                      {{"mlp_only_layers", llvm::json::Array{0, 48}}});
  E = importError(Dense.path());
  EXPECT_NE(E.find("'mlp_only_layers' entry 1: expected a layer index in [0, 48)"),
            std::string::npos)
      << E;
  ConfigVariant NoExperts("qwen3-30b-a3b", "moe-zero", {{"num_experts", 0}});
  E = importError(NoExperts.path());
  EXPECT_NE(E.find("'num_experts' is 0; expected a positive integer"), std::string::npos) << E;
  // The load-balancing loss is not modelled: said, not silently left out.
  ConfigVariant Aux("mixtral-8x7b", "moe-aux", {{"output_router_logits", true}});
  Graph G = importPath(Aux.path());
  EXPECT_TRUE(llvm::any_of(G.Diags.all(), [](const Diagnostic &D) {
    return D.Code == "unsupported-field" && D.Message.find("load-balancing") != std::string::npos;
  }));
}

TEST(HfConfigImporter, GptOssSinksExpertsAndLayerTypes) {
  Graph G = importSample("gpt-oss-20b", dims(1, 256));
  // transformers refuses SDPA for gpt-oss: its attention runs eagerly.
  EXPECT_FALSE(G.DeclaredFusedAttention);
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.sinks")->Shape, (Shape{64}));
  EXPECT_EQ(findTensor(G, "model.layers.0.self_attn.q_proj.bias")->Shape, (Shape{4096}));
  // The experts' weights as transformers stores them ([experts, in, out]: is_transposed)
  // with a bias per expert; the router is a linear with a bias, never a LoRA site.
  const std::string P = "model.layers.3.mlp.";
  EXPECT_EQ(findTensor(G, P + "experts.gate_up_proj")->Shape, (Shape{32, 2880, 5760}));
  EXPECT_EQ(findTensor(G, P + "experts.gate_up_proj_bias")->Shape, (Shape{32, 5760}));
  EXPECT_EQ(findTensor(G, P + "experts.down_proj")->Shape, (Shape{32, 2880, 2880}));
  EXPECT_EQ(findTensor(G, P + "experts.down_proj_bias")->Shape, (Shape{32, 2880}));
  EXPECT_EQ(findTensor(G, P + "router.bias")->Shape, (Shape{32}));
  EXPECT_EQ(G.RouterWeights.size(), 24u);
  // Each grouped matmul's bias is added in place (no storage of its own), and the
  // interleaved gate and up are strided views of one projection.
  int InPlace = 0, Strided = 0;
  for (const Node &N : G.Nodes) {
    if (N.LayerPath != "model.layers.3.mlp.experts")
      continue;
    if (N.OpType == "Add" && G.Tensors[N.Outputs[0]].InPlace) {
      ++InPlace;
      EXPECT_EQ(G.Nodes[G.Tensors[N.Inputs[0]].Producer].OpType, "GroupedMatMul") << N.Name;
    }
    if (N.OpType == "Slice" && G.Tensors[N.Inputs[4]].IntValues == std::vector<int64_t>{2})
      ++Strided;
  }
  EXPECT_EQ(InPlace, 2);
  EXPECT_EQ(Strided, 2);
  // Sliding and full layers alternate from the first: one mask per type, 256 x 256.
  int Masks = 0;
  for (const Node &N : G.Nodes)
    if (N.OpType == "Where" && N.LayerPath == "model")
      ++Masks;
  EXPECT_EQ(Masks, 2);
  // The scores with the sink column, their row max (a top-1 keeping its indices).
  const Node *Max = findNode(G, "/model/layers.0/self_attn/TopK");
  ASSERT_NE(Max, nullptr);
  EXPECT_EQ(G.Tensors[Max->Inputs[0]].Shape, (Shape{1, 64, 256, 257}));
  EXPECT_TRUE(llvm::any_of(G.Diags.all(), [](const Diagnostic &D) {
    return D.Code == "quantized-checkpoint";
  }));
}

TEST(HfConfigImporter, GptOssFieldsAreChecked) {
  ConfigVariant Limit("gpt-oss-20b", "oss-limit", {{"swiglu_limit", -1}});
  std::string E = importError(Limit.path());
  EXPECT_NE(E.find(Limit.path()), std::string::npos) << E;
  EXPECT_NE(E.find("'swiglu_limit' is -1; expected a positive clamp"), std::string::npos) << E;
  ConfigVariant Types("gpt-oss-20b", "oss-types", {{"layer_types", llvm::json::Array{"full_attention"}}});
  E = importError(Types.path());
  EXPECT_NE(E.find("'layer_types' has 1 entries; expected one per layer (24)"), std::string::npos)
      << E;
  ConfigVariant Sdpa("gpt-oss-20b", "oss-sdpa", {{"attn_implementation", "sdpa"}});
  Graph G = importPath(Sdpa.path());
  EXPECT_FALSE(G.DeclaredFusedAttention);
  EXPECT_TRUE(llvm::any_of(G.Diags.all(), [](const Diagnostic &D) {
    return D.Code == "attention-sinks";
  }));
}

TEST(HfConfigImporter, DeepSeekLatentAttentionAndGroupedRouting) {
  Graph G = importSample("deepseek-v3", dims(1, 128));
  // Multi-head latent attention: q through its rank-1536 bottleneck, keys and values from
  // one 512-wide latent plus a 64-wide rotated key shared by the heads.
  const std::string A = "model.layers.0.self_attn.";
  EXPECT_EQ(findTensor(G, A + "q_a_proj.weight")->Shape, (Shape{7168, 1536}));
  EXPECT_EQ(findTensor(G, A + "q_a_layernorm.weight")->Shape, (Shape{1536}));
  EXPECT_EQ(findTensor(G, A + "q_b_proj.weight")->Shape, (Shape{1536, 128 * 192}));
  EXPECT_EQ(findTensor(G, A + "kv_a_proj_with_mqa.weight")->Shape, (Shape{7168, 512 + 64}));
  EXPECT_EQ(findTensor(G, A + "kv_b_proj.weight")->Shape, (Shape{512, 128 * (128 + 128)}));
  EXPECT_EQ(findTensor(G, A + "o_proj.weight")->Shape, (Shape{128 * 128, 7168}));
  EXPECT_EQ(findTensor(G, A + "q_proj.weight"), nullptr);
  // Attention over queries and keys 192 wide, values 128 wide.
  const Node *Scores = findNode(G, "/model/layers.0/self_attn/MatMul");
  ASSERT_NE(Scores, nullptr);
  EXPECT_EQ(G.Tensors[Scores->Inputs[0]].Shape, (Shape{1, 128, 128, 192}));
  // The first three layers keep a dense MLP; the rest route to 8 of 256 experts, with a
  // shared expert 2048 wide, a router kept in fp32 and its correction bias.
  EXPECT_NE(findTensor(G, "model.layers.2.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(findTensor(G, "model.layers.2.mlp.experts.gate_up_proj"), nullptr);
  const std::string P = "model.layers.3.mlp.";
  EXPECT_EQ(findTensor(G, P + "experts.gate_up_proj")->Shape, (Shape{256, 2 * 2048, 7168}));
  EXPECT_EQ(findTensor(G, P + "shared_experts.gate_proj.weight")->Shape, (Shape{7168, 2048}));
  EXPECT_EQ(findTensor(G, P + "gate.e_score_correction_bias")->Kind, TensorKind::Buffer);
  EXPECT_EQ(G.RouterWeights.size(), 58u);
  int GroupedMatMuls = 0;
  for (const Node &N : G.Nodes)
    if (N.OpType == "GroupedMatMul" && N.LayerPath == P + "experts") {
      ++GroupedMatMuls;
      EXPECT_EQ(G.Tensors[N.Inputs[0]].Shape[0], 128 * 8) << N.Name;
    }
  EXPECT_EQ(GroupedMatMuls, 2);
  EXPECT_TRUE(llvm::any_of(G.Diags.all(), [](const Diagnostic &D) {
    return D.Code == "quantized-checkpoint" && D.Message.find("FP8") != std::string::npos;
  }));
  // Without the query bottleneck (q_lora_rank null): one q_proj.
  ConfigVariant NoQLora("deepseek-v3", "ds-no-qlora", {{"q_lora_rank", nullptr}});
  Graph Q = importPath(NoQLora.path(), dims(1, 16));
  EXPECT_EQ(findTensor(Q, A + "q_proj.weight")->Shape, (Shape{7168, 128 * 192}));
}

TEST(HfConfigImporter, DeepSeekRoutingFieldsAreChecked) {
  ConfigVariant Groups("deepseek-v3", "ds-groups", {{"n_group", 7}});
  std::string E = importError(Groups.path());
  EXPECT_NE(E.find(Groups.path()), std::string::npos) << E;
  EXPECT_NE(E.find("'n_group' is 7; expected a divisor of the 256 experts"), std::string::npos)
      << E;
  ConfigVariant TopGroups("deepseek-v3", "ds-topk-group", {{"topk_group", 9}});
  E = importError(TopGroups.path());
  EXPECT_NE(E.find("'topk_group' is 9; expected at most the 8 groups"), std::string::npos) << E;
  ConfigVariant TooMany("deepseek-v3", "ds-too-many",
                        {{"topk_group", 1}, {"num_experts_per_tok", 40}});
  E = importError(TooMany.path());
  EXPECT_NE(E.find("'num_experts_per_tok' is 40; expected at most the 32 experts of the "
                   "topk_group groups"),
            std::string::npos)
      << E;
  ConfigVariant Method("deepseek-v2-lite", "ds2-method", {{"topk_method", "noaux_tc"}});
  E = importError(Method.path());
  EXPECT_NE(E.find("'topk_method' is \"noaux_tc\"; expected \"greedy\" or "
                   "\"group_limited_greedy\""),
            std::string::npos)
      << E;
  ConfigVariant NoK("deepseek-v2-lite", "ds2-no-k", {}, {"num_experts_per_tok"});
  E = importError(NoK.path());
  EXPECT_NE(E.find("'num_experts_per_tok' is missing"), std::string::npos) << E;
  ConfigVariant Rope("deepseek-v3", "ds-rope", {{"qk_rope_head_dim", 63}});
  E = importError(Rope.path());
  EXPECT_NE(E.find("'qk_rope_head_dim' is 63; expected an even width"), std::string::npos) << E;
}

