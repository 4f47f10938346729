//===- LoraTransformTest.cpp - LoRA and QLoRA graph transformations --------------===//
#include "planner/LoraTransform.h"

#include "planner/StrategyApply.h"

#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"
#include "support/HfConfigTestSupport.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::ConfigVariant;
using trainmem::testing::dims;
using trainmem::testing::GraphBuilder;
using trainmem::testing::importPath;
using trainmem::testing::parameterCount;

namespace {

/// A two-block model with q_proj/v_proj-style linears and an LM head.
Graph tinyDecoder() {
  GraphBuilder B;
  TensorId X = B.input("x", {2, 4, 16});
  for (int L = 0; L < 2; ++L) {
    std::string P = "/layers." + std::to_string(L) + "/attn/";
    TensorId Q = B.weight("layers." + std::to_string(L) + ".attn.q_proj.weight", {16, 16});
    TensorId V = B.weight("layers." + std::to_string(L) + ".attn.v_proj.weight", {16, 16});
    TensorId Up = B.weight("layers." + std::to_string(L) + ".mlp.up_proj.weight", {16, 32});
    TensorId Down = B.weight("layers." + std::to_string(L) + ".mlp.down_proj.weight", {32, 16});
    TensorId HQ = B.op("MatMul", {X, Q}, {2, 4, 16}, P + "q_proj/MatMul");
    TensorId HV = B.op("MatMul", {X, V}, {2, 4, 16}, P + "v_proj/MatMul");
    TensorId A = B.op("Add", {HQ, HV}, {2, 4, 16}, P + "Add");
    std::string M = "/layers." + std::to_string(L) + "/mlp/";
    TensorId U = B.op("MatMul", {A, Up}, {2, 4, 32}, M + "up_proj/MatMul");
    TensorId R = B.op("Relu", {U}, {2, 4, 32}, M + "Relu");
    TensorId D = B.op("MatMul", {R, Down}, {2, 4, 16}, M + "down_proj/MatMul");
    X = B.op("Add", {X, D}, {2, 4, 16}, "/layers." + std::to_string(L) + "/Add");
  }
  TensorId Head = B.weight("lm_head.weight", {16, 50});
  B.output(B.op("MatMul", {X, Head}, {2, 4, 50}, "/lm_head/MatMul"));
  return B.finish();
}

int64_t countNamed(const Graph &G, llvm::StringRef Needle) {
  int64_t N = 0;
  for (const Tensor &T : G.Tensors)
    N += llvm::StringRef(T.Name).contains(Needle) && T.Stored;
  return N;
}

/// applyLora's error for Targets on G ("" and a failure when it applies).
std::string loraError(const Graph &G, std::vector<std::string> Targets) {
  LoraSetup Lora;
  Lora.Targets = std::move(Targets);
  auto L = applyLora(G, Lora);
  if (L) {
    ADD_FAILURE() << "LoRA applied to " << G.Name;
    return "";
  }
  return llvm::toString(L.takeError());
}

TrainingSetup adaptersOnly(const Graph &G) {
  TrainingSetup S;
  S.TrainableFile = std::string("(LoRA adapters)");
  for (TensorId T : G.AdapterParameters)
    S.TrainableNames.push_back(G.Tensors[T].Name);
  return S;
}

} // namespace

TEST(LoraTransform, HfModelTypesPeftHasNoDefaultForNeedTargets) {
  // peft 0.21's mapping has no phi3 or olmo2 entry: get_peft_model raises without
  // target_modules, though OLMo 2's projections are named like LLaMA's.
  Graph G = tinyDecoder();
  G.SourceFormat = "hf-config";
  G.Architecture = "olmo2";
  EXPECT_TRUE(defaultLoraTargets(G).empty());
  std::string E = loraError(G, {});
  EXPECT_NE(E.find("no PEFT default for this model"), std::string::npos) << E;
  EXPECT_NE(E.find("q_proj"), std::string::npos) << "the error lists the linear layers: " << E;
  // Nor has it one for gpt-oss (measured: get_peft_model raises), DeepSeek-V3, DistilBERT or
  // SmolLM3 (measured).
  for (const char *Type : {"gpt_oss", "deepseek_v3", "distilbert", "smollm3", "starcoder2"}) {
    G.Architecture = Type;
    EXPECT_TRUE(defaultLoraTargets(G).empty()) << Type;
  }
  G.Architecture = "llama";
  EXPECT_EQ(defaultLoraTargets(G), (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(LoraTransform, PhiDefaultsToPeftsOwnEntryWithTheMlp) {
  // peft 0.21's mapping gives phi q_proj, v_proj, fc1 and fc2 (measured: PEFT adapts
  // those four in each of the Phi-2 sample's layers).
  Graph G = trainmem::testing::importSample("phi-2", trainmem::testing::dims(1, 16));
  EXPECT_EQ(defaultLoraTargets(G), (std::vector<std::string>{"q_proj", "v_proj", "fc1", "fc2"}));
  auto L = applyLora(G, LoraSetup{});
  ASSERT_TRUE(static_cast<bool>(L)) << llvm::toString(L.takeError());
  EXPECT_EQ(countNamed(*L, "lora_A"), 4 * 32);
}

TEST(LoraTransform, DefaultTargetsFollowPeftForLlamaStyleNames) {
  Graph G = tinyDecoder();
  EXPECT_EQ(defaultLoraTargets(G), (std::vector<std::string>{"q_proj", "v_proj"}));
  auto L = applyLora(G, LoraSetup{});
  ASSERT_TRUE(static_cast<bool>(L)) << llvm::toString(L.takeError());
  EXPECT_EQ(countNamed(*L, "lora_A"), 4);
  EXPECT_EQ(countNamed(*L, "lora_B"), 4);
  auto C = takeCensus(*L, adaptersOnly(*L));
  ASSERT_TRUE(static_cast<bool>(C));
  // 4 adapted 16x16 linears, r=8: A 16x8 + B 8x16 each.
  EXPECT_EQ(C->TrainableParameters, 4 * (16 * 8 + 8 * 16));
  // Per layer q, v (16x16) and up, down (16x32); the head 16x50; the adapters.
  EXPECT_EQ(C->TotalParameters, 2 * (2 * 256 + 2 * 512) + 16 * 50 + 4 * (16 * 8 + 8 * 16));
}

TEST(LoraTransform, ModulesToSaveTrainACopyBesideTheFrozenOriginal) {
  // PEFT's ModulesToSaveWrapper: the module trains as a copy, its original stays, frozen.
  // A tied head keeps reading the original (two parameters where there was one).
  ConfigVariant Tied("tiny-llama", "llama-tied-save", {{"tie_word_embeddings", true}});
  Graph G = importPath(Tied.path(), dims(2, 64));
  LoraSetup L;
  L.ModulesToSave = std::vector<std::string>{"embed_tokens"};
  auto Adapted = applyLora(G, L);
  ASSERT_TRUE(static_cast<bool>(Adapted)) << llvm::toString(Adapted.takeError());
  TensorId Original = Adapted->findTensor("model.embed_tokens.original_module.weight");
  ASSERT_NE(Original, NoTensor);
  ASSERT_EQ(Adapted->Tensors[Original].Consumers.size(), 1u);
  EXPECT_EQ(Adapted->Nodes[Adapted->Tensors[Original].Consumers[0]].LayerPath, "lm_head");
  TrainingSetup S;
  S.Lora = L;
  ASSERT_FALSE(static_cast<bool>(applySetupStrategies(*Adapted, S)));
  EXPECT_TRUE(llvm::is_contained(S.TrainableNames, "model.embed_tokens.weight"));
  auto C = takeCensus(*Adapted, S);
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  EXPECT_EQ(C->TiedGroups, 0);
  // The embedding's copy (512 x 64; the original, the head's, is frozen) and two layers'
  // adapters: q_proj 64 -> 64, v_proj 64 -> 32 (two 16-wide key/value heads).
  EXPECT_EQ(C->TrainableParameters, 512 * 64 + 2 * ((64 * 8 + 8 * 64) + (64 * 8 + 8 * 32)));
  EXPECT_EQ(C->TotalParameters, parameterCount(G) + 512 * 64 + 2 * (1024 + 768));
  // A classifier's head trains by default (PEFT's SEQ_CLS); none keeps it frozen; a name
  // that matches nothing is an error.
  ConfigVariant Cls("tiny-llama", "llama-cls-save",
                    {{"architectures", llvm::json::Array{"LlamaForSequenceClassification"}},
                     {"pad_token_id", 0}});
  G = importPath(Cls.path(), dims(2, 64));
  EXPECT_EQ(G.PeftTaskType, "SEQ_CLS");
  EXPECT_EQ(G.ClassifierModules, (std::vector<std::string>{"score"}));
  Adapted = applyLora(G, LoraSetup{});
  ASSERT_TRUE(static_cast<bool>(Adapted));
  EXPECT_NE(Adapted->findTensor("score.original_module.weight"), NoTensor);
  L.ModulesToSave = std::vector<std::string>{};
  Adapted = applyLora(G, L);
  ASSERT_TRUE(static_cast<bool>(Adapted));
  EXPECT_EQ(Adapted->findTensor("score.original_module.weight"), NoTensor);
  L.ModulesToSave = std::vector<std::string>{"no_such_module"};
  std::string E = llvm::toString(applyLora(G, L).takeError());
  EXPECT_NE(E.find("'no_such_module' matches no module"), std::string::npos) << E;
}

TEST(LoraTransform, AllLinearSkipsTheHeadAndUnknownTargetsListTheModules) {
  Graph G = tinyDecoder();
  LoraSetup All;
  All.Targets = {"all-linear"};
  auto L = applyLora(G, All);
  ASSERT_TRUE(static_cast<bool>(L));
  EXPECT_EQ(countNamed(*L, "lora_A"), 8) << "q, v, up, down in 2 layers; not lm_head";
  EXPECT_EQ(countNamed(*L, "lm_head.lora_A"), 0);
  std::string Msg = loraError(G, {"o_proj"});
  EXPECT_NE(Msg.find("o_proj"), std::string::npos) << Msg;
  EXPECT_NE(Msg.find("down_proj"), std::string::npos) << "lists the linear modules: " << Msg;
}

TEST(LoraTransform, ModulesThatTrainWholeAreNotAdaptedAsPeftDoes) {
  // Measured on peft 0.21 (each case's modules: lora.Linear or ModulesToSaveWrapper).
  auto Adapted = [](const Graph &G, std::vector<std::string> Targets,
                    std::optional<std::vector<std::string>> Save = std::nullopt) {
    LoraSetup L;
    L.Targets = std::move(Targets);
    L.ModulesToSave = std::move(Save);
    return applyLora(G, L);
  };
  // QUESTION_ANS wraps qa_outputs after the injection: all-linear leaves it out (an
  // emitted config says exclude_modules), naming it is PEFT's TypeError.
  ConfigVariant Qa("bert-base-uncased", "bert-qa-lora",
                   {{"architectures", llvm::json::Array{"BertForQuestionAnswering"}},
                    {"num_hidden_layers", 1}});
  Graph G = importPath(Qa.path(), dims(2, 64));
  EXPECT_EQ(headLinearsPeftWouldAdapt(G), (std::vector<std::string>{"qa_outputs"}));
  auto L = Adapted(G, {"all-linear"});
  ASSERT_TRUE(static_cast<bool>(L)) << llvm::toString(L.takeError());
  EXPECT_EQ(countNamed(*L, "lora_A"), 6) << "q, k, v, attention output, intermediate, output";
  EXPECT_EQ(countNamed(*L, "qa_outputs.lora_A"), 0);
  EXPECT_NE(L->findTensor("qa_outputs.original_module.weight"), NoTensor);
  std::string E = llvm::toString(Adapted(G, {"query", "value", "qa_outputs"}).takeError());
  EXPECT_NE(E.find("'qa_outputs' is both a LoRA target"), std::string::npos) << E;
  EXPECT_NE(E.find("QUESTION_ANS"), std::string::npos) << E;
  // Without the task type (the head frozen) all-linear adapts the head: it is not an output
  // embedding.
  L = Adapted(G, {"all-linear"}, std::vector<std::string>{});
  ASSERT_TRUE(static_cast<bool>(L));
  EXPECT_EQ(countNamed(*L, "qa_outputs.lora_A"), 1);
  // SEQ_CLS names its head before the injection: a target naming it, and what RoBERTa's
  // head holds under all-linear, are skipped, not adapted.
  ConfigVariant Bert("bert-base-uncased", "bert-cls-lora",
                     {{"architectures", llvm::json::Array{"BertForSequenceClassification"}},
                      {"num_hidden_layers", 1}});
  G = importPath(Bert.path(), dims(2, 64));
  L = Adapted(G, {"query", "value", "classifier"});
  ASSERT_TRUE(static_cast<bool>(L)) << llvm::toString(L.takeError());
  EXPECT_EQ(countNamed(*L, "lora_A"), 2);
  ConfigVariant Roberta("roberta-base", "roberta-cls-lora",
                        {{"architectures", llvm::json::Array{"RobertaForSequenceClassification"}},
                         {"num_hidden_layers", 1}});
  G = importPath(Roberta.path(), dims(2, 64));
  L = Adapted(G, {"all-linear"});
  ASSERT_TRUE(static_cast<bool>(L));
  EXPECT_EQ(countNamed(*L, "classifier.dense.lora_A"), 0);
  EXPECT_EQ(countNamed(*L, "lora_A"), 6);
  // DistilBERT's pre_classifier is wrapped by the string's end only: all-linear leaves it
  // out too, and a config must exclude it.
  ConfigVariant Distil("distilbert-base-uncased", "distil-cls-lora",
                       {{"architectures", llvm::json::Array{"DistilBertForSequenceClassification"}},
                        {"n_layers", 1}});
  G = importPath(Distil.path(), dims(2, 64));
  EXPECT_EQ(headLinearsPeftWouldAdapt(G), (std::vector<std::string>{"pre_classifier"}));
  L = Adapted(G, {"all-linear"});
  ASSERT_TRUE(static_cast<bool>(L));
  EXPECT_EQ(countNamed(*L, "pre_classifier.lora_A"), 0);
  // A module of the user's modules_to_save is not a target either.
  G = tinyDecoder();
  L = Adapted(G, {"q_proj", "v_proj"}, std::vector<std::string>{"q_proj"});
  ASSERT_TRUE(static_cast<bool>(L));
  EXPECT_EQ(countNamed(*L, "q_proj.lora_A"), 0);
  EXPECT_EQ(countNamed(*L, "v_proj.lora_A"), 2);
}

TEST(LoraTransform, AllLinearSaysWhyItFindsNothing) {
  // Only a head: all-linear leaves it out, and says so.
  GraphBuilder B;
  TensorId X = B.input("x", {2, 8});
  TensorId W = B.weight("classifier.weight", {8, 10});
  B.output(B.op("MatMul", {B.op("Relu", {X}, {2, 8}, "/Relu"), W}, {2, 10}, "/classifier/MatMul"));
  std::string Msg = loraError(B.finish(), {"all-linear"});
  EXPECT_NE(Msg.find("its only linear layers (classifier) produce its output"),
            std::string::npos)
      << Msg;
  // No linear layer at all.
  GraphBuilder C;
  TensorId Y = C.input("x", {2, 8});
  C.output(C.op("Relu", {C.op("Add", {Y, C.weight("bias", {8})}, {2, 8}, "/Add")}, {2, 8}, "/Relu"));
  Msg = loraError(C.finish(), {"all-linear"});
  EXPECT_NE(Msg.find("it has none"), std::string::npos) << Msg;
}

TEST(LoraTransform, ALinearOfUnknownShapeIsAnErrorNotACrash) {
  // Inference that stopped before a linear leaves its input without a shape: there is
  // no in-features to size lora_A by (this read past an empty shape before).
  Graph G = tinyDecoder();
  TensorId Input = NoTensor;
  for (const Node &N : G.Nodes)
    if (N.Name == "/layers.1/mlp/up_proj/MatMul")
      Input = N.Inputs[0];
  ASSERT_NE(Input, NoTensor);
  G.Tensors[Input].ShapeKnown = false;
  G.Tensors[Input].Shape.clear();
  std::string Msg = loraError(G, {"all-linear"});
  EXPECT_NE(Msg.find("'layers.1.mlp.up_proj'"), std::string::npos) << Msg;
  EXPECT_NE(Msg.find("left unknown"), std::string::npos) << Msg;
  // Targets that avoid it still apply.
  LoraSetup Qv;
  Qv.Targets = {"q_proj", "v_proj"};
  auto Around = applyLora(G, Qv);
  EXPECT_TRUE(static_cast<bool>(Around)) << (Around ? "" : llvm::toString(Around.takeError()));
}

TEST(LoraTransform, AdapterDropoutKeepsItsMaskAndTheDroppedCopy) {
  Graph G = tinyDecoder();
  LoraSetup Plain, Dropped;
  Dropped.Dropout = 0.1;
  auto A = applyLora(G, Plain), B = applyLora(G, Dropped);
  ASSERT_TRUE(A && B);
  auto CA = takeCensus(*A, adaptersOnly(*A)), CB = takeCensus(*B, adaptersOnly(*B));
  ASSERT_TRUE(CA && CB);
  TrainingSetup SA = adaptersOnly(*A), SB = adaptersOnly(*B);
  auto RA = simulateStep(*A, SA, *CA), RB = simulateStep(*B, SB, *CB);
  ASSERT_TRUE(RA && RB);
  // Each adapter's lora_A now saves its own dropped copy of x (2x4x16 fp32) instead of
  // the shared x. Layer 0 reads the batch input, which needs no gradient: its dropouts
  // record no node and keep no mask. Layer 1's x needs one: two bool masks (CUDA), and
  // x itself is no longer saved by anyone.
  int64_t X = 2 * 4 * 16;
  int64_t Layer0 = 2 * X * 4;
  int64_t Layer1 = 2 * X * 4 + 2 * X - X * 4;
  EXPECT_EQ(RB->SavedAtEndOfForward - RA->SavedAtEndOfForward, Layer0 + Layer1);
}

TEST(LoraTransform, QloraStoresBaseLinearsInNf4AndKeepsTheHead) {
  // bitsandbytes: N/2 packed + N/64 uint8 absmax + fp32 per 256 absmax + 1 KiB nested code
  // + 4 B offset + 64 B NF4 code.
  EXPECT_EQ(nf4StorageBytes(4096 * 4096),
            4096 * 4096 / 2 + 4096 * 4096 / 64 + (4096 * 4096 / 64 / 256) * 4 + 1024 + 4 + 64);
  Graph G = tinyDecoder();
  LoraSetup Q;
  Q.QLora = true;
  auto L = applyLora(G, Q);
  ASSERT_TRUE(static_cast<bool>(L));
  EXPECT_EQ(L->Quantized.size(), 8u) << "every linear but the head";
  auto C = takeCensus(*L, adaptersOnly(*L));
  ASSERT_TRUE(static_cast<bool>(C));
  int64_t Expected = 0;
  for (const CensusParameter &P : C->Parameters)
    Expected += P.Quantized ? nf4StorageBytes(P.NumElements) : P.NumElements * 4;
  EXPECT_EQ(C->ParameterBytes, Expected);
  bool HeadQuantized = false;
  for (const CensusParameter &P : C->Parameters)
    HeadQuantized |= P.Name == "lm_head.weight" && P.Quantized.has_value();
  EXPECT_FALSE(HeadQuantized);
  // transformers also keeps the module of the model's last parameter: a head whose output
  // a split or a pooling reads (qa_outputs here) stays in 16 bits.
  ConfigVariant Qa("bert-base-uncased", "bert-qa-qlora",
                   {{"architectures", llvm::json::Array{"BertForQuestionAnswering"}},
                    {"num_hidden_layers", 1}});
  G = importPath(Qa.path(), dims(2, 64));
  L = applyLora(G, Q);
  ASSERT_TRUE(static_cast<bool>(L)) << llvm::toString(L.takeError());
  EXPECT_EQ(L->Quantized.size(), 6u) << "the layer's six linears; not qa_outputs";
  EXPECT_FALSE(L->Quantized.count(G.findTensor("qa_outputs.weight")));
}

TEST(LoraTransform, MixtureOfExpertsRoutersAreNotLinears) {
  // transformers 5's routers apply an nn.Parameter with F.linear and its experts are 3-D
  // tensors: PEFT's all-linear adapts the attention alone (and Qwen2-MoE's shared expert),
  // and its default for these model types raises.
  Graph G = trainmem::testing::importSample("mixtral-8x7b", trainmem::testing::dims(1, 64));
  EXPECT_TRUE(defaultLoraTargets(G).empty());
  std::string E = loraError(G, {"gate"});
  EXPECT_NE(E.find("matches no linear layer"), std::string::npos) << E;
  LoraSetup All;
  All.Targets = {"all-linear"};
  auto L = applyLora(G, All);
  ASSERT_TRUE(static_cast<bool>(L)) << llvm::toString(L.takeError());
  EXPECT_EQ(countNamed(*L, "lora_A"), 32 * 4); // q, k, v, o in each of the 32 layers
  EXPECT_EQ(countNamed(*L, "mlp.gate.lora_A"), 0);
  Graph Qwen2 = trainmem::testing::importSample("qwen1.5-moe-a2.7b", trainmem::testing::dims(1, 64));
  auto L2 = applyLora(Qwen2, All);
  ASSERT_TRUE(static_cast<bool>(L2)) << llvm::toString(L2.takeError());
  EXPECT_EQ(countNamed(*L2, "lora_A"), 24 * (4 + 3 + 1)); // attention, shared expert, its gate
}
