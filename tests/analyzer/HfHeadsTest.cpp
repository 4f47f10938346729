//===- HfHeadsTest.cpp - the heads an HF config's architectures name -------------===//
//
// The base model (BertModel's pooler output), sequence and token classification heads
// (BERT's pooler and classifier, RoBERTa's head on the first token, a decoder's score at
// each row's last non-padding token), question-answering heads (qa_outputs' start and
// end logits), their dropout, their classes, and the errors a user sees: a decoder's
// sequence classifier without a pad token, RoBERTa's position table, a null pad token, a
// question-answering head with other than two labels; multiple-choice heads; their
// parameter counts against transformers'. Their measured steps are in MeasuredHf.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "support/HfConfigTestSupport.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>

using namespace trainmem;
using namespace trainmem::testing;

namespace {
/// G's one output is the loss's "logits", of shape S.
void expectLogits(const Graph &G, const Shape &S) {
  ASSERT_EQ(G.Outputs.size(), 1u);
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Name, "logits");
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, S);
}
} // namespace

TEST(HfHeads, ClassificationHeadsAndTheirErrors) {
  // BERT: the pooler, the head's dropout (hidden_dropout_prob), one row of logits each.
  ConfigVariant Bert("bert-base-uncased", "bert-cls",
                     {{"architectures", llvm::json::Array{"BertForSequenceClassification"}}});
  Graph G = importPath(Bert.path(), dims(4, 128));
  expectLogits(G, {4, 2}); // 2 labels without id2label
  EXPECT_EQ(shapeOf(G, "classifier.weight"), (Shape{768, 2}));
  EXPECT_EQ(shapeOf(G, "bert.pooler.dense.weight"), (Shape{768, 768}));
  ASSERT_EQ(G.DropoutAt.size(), 1u);
  EXPECT_EQ(G.DropoutAt[0].second, 0.1);
  EXPECT_FALSE(G.LossUpcastsLogits);
  // classifier_dropout, when given, is the head's.
  ConfigVariant Own("roberta-base", "roberta-cls-drop",
                    {{"architectures", llvm::json::Array{"RobertaForSequenceClassification"}},
                     {"classifier_dropout", 0.3}});
  G = importPath(Own.path(), dims(2, 64));
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{2, 2}));
  ASSERT_EQ(G.DropoutAt.size(), 2u) << "RoBERTa's head drops out twice";
  EXPECT_EQ(G.DropoutAt[1].second, 0.3);
  EXPECT_EQ(G.DeclaredDropout, 0.3) << "the largest of the config's dropouts";
  EXPECT_EQ(shapeOf(G, "classifier.out_proj.weight"), (Shape{768, 2}));
  // Token classification: a row of logits per token.
  ConfigVariant Token("tiny-llama", "llama-token",
                      {{"architectures", llvm::json::Array{"LlamaForTokenClassification"}},
                       {"num_labels", 7}});
  G = importPath(Token.path(), dims(2, 64));
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{2, 64, 7}));
  ASSERT_EQ(G.DropoutAt.size(), 1u);
  EXPECT_EQ(G.DropoutAt[0].second, 0.1) << "GenericForTokenClassification's default";
  EXPECT_TRUE(G.LossUpcastsLogits) << "ForTokenClassification upcasts the logits";
  // A decoder's sequence classifier needs pad_token_id for batches above 1, as transformers.
  ConfigVariant NoPad("tiny-llama", "llama-seq-nopad",
                      {{"architectures", llvm::json::Array{"LlamaForSequenceClassification"}}});
  std::string E = importError(NoPad.path(), dims(2, 64));
  EXPECT_NE(E.find(NoPad.path()), std::string::npos) << E;
  EXPECT_NE(E.find("'pad_token_id' is missing or null"), std::string::npos) << E;
  EXPECT_NE(E.find("Cannot handle batch sizes > 1"), std::string::npos) << E;
  G = importPath(NoPad.path(), dims(1, 64));
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{1, 2}));
  ConfigVariant BadPad("tiny-llama", "llama-seq-badpad",
                       {{"architectures", llvm::json::Array{"LlamaForSequenceClassification"}},
                        {"pad_token_id", 5000}});
  E = importError(BadPad.path(), dims(2, 64));
  EXPECT_NE(E.find("'pad_token_id' is 5000; expected a token id below vocab_size 512"),
            std::string::npos)
      << E;
  // Other models only name their pad token: LLaMA's early configs say -1.
  ConfigVariant Named("tiny-llama", "llama-pad-minus-one", {{"pad_token_id", -1}});
  EXPECT_EQ(importError(Named.path(), dims(2, 64)), "<imported without error>");
  // RoBERTa numbers positions after its padding token: 514 rows hold 512 tokens.
  EXPECT_EQ(shapeOf(importSample("roberta-base", dims(1, 512)), "logits"),
            (Shape{1, 512, 50265}));
  E = importError(samplePath("roberta-base"), dims(1, 513));
  EXPECT_NE(E.find("seq 513 exceeds the 512 learned positions"), std::string::npos) << E;
  EXPECT_NE(E.find("less pad_token_id + 1"), std::string::npos) << E;
  ConfigVariant NullPad("roberta-base", "roberta-null-pad", {{"pad_token_id", nullptr}});
  E = importError(NullPad.path(), dims(1, 64));
  EXPECT_NE(E.find("'pad_token_id' is null"), std::string::npos) << E;
  // A regression head (one label) trains with MSELoss: said, not silent.
  ConfigVariant Reward("qwen2-0.5b", "qwen2-one-label",
                       {{"architectures", llvm::json::Array{"Qwen2ForSequenceClassification"}},
                        {"num_labels", 1},
                        {"pad_token_id", 151643}});
  G = importPath(Reward.path(), dims(2, 64));
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{2, 1}));
  bool Noted = false;
  for (const Diagnostic &D : G.Diags.all())
    Noted |= D.Code == "classification-loss";
  EXPECT_TRUE(Noted);
}

TEST(HfHeads, ParameterCountsMatchTransformers) {
  // As HfConfigImporter.ParameterCountsOfConfigVariantsMatchTransformers, with the class
  // the head's architectures names (AutoModelForSequenceClassification,
  // ...ForTokenClassification, ...ForQuestionAnswering, ...ForMultipleChoice) under
  // torch.device("meta").
  std::vector<VariantCount> Cases;
  // Classification heads (AutoModelForSequenceClassification / ...TokenClassification):
  // the classes are id2label's size (2 without one).
  auto Labels = [](int N) {
    llvm::json::Object O;
    for (int I = 0; I < N; ++I)
      O[std::to_string(I)] = "L" + std::to_string(I);
    return O;
  };
  Cases.push_back({"bert-base-uncased", "bert-seq-cls",
                   {{"architectures", llvm::json::Array{"BertForSequenceClassification"}},
                    {"id2label", Labels(3)}},
                   109'484'547});
  Cases.push_back({"bert-base-uncased", "bert-token-cls",
                   {{"architectures", llvm::json::Array{"BertForTokenClassification"}},
                    {"id2label", Labels(9)}},
                   108'898'569});
  Cases.push_back({"roberta-base", "roberta-seq-cls",
                   {{"architectures", llvm::json::Array{"RobertaForSequenceClassification"}}},
                   124'647'170});
  Cases.push_back({"xlm-roberta-base", "xlmr-token-cls",
                   {{"architectures", llvm::json::Array{"XLMRobertaForTokenClassification"}},
                    {"id2label", Labels(7)}},
                   277'458'439});
  Cases.push_back({"gpt-j-6b", "gptj-qa",
                   {{"architectures", llvm::json::Array{"GPTJForQuestionAnswering"}}},
                   5'844'402'178});
  Cases.push_back({"opt-350m", "opt-seq-cls",
                   {{"architectures", llvm::json::Array{"OPTForSequenceClassification"}},
                    {"id2label", Labels(3)}},
                   331'197'952});
  Cases.push_back({"opt-350m", "opt-qa",
                   {{"architectures", llvm::json::Array{"OPTForQuestionAnswering"}}},
                   331'197'442});
  Cases.push_back({"phi-2", "phi-seq-cls",
                   {{"architectures", llvm::json::Array{"PhiForSequenceClassification"}},
                    {"id2label", Labels(3)}, {"pad_token_id", 50256}},
                   2'648'568'320});
  Cases.push_back({"phi-2", "phi-token-cls",
                   {{"architectures", llvm::json::Array{"PhiForTokenClassification"}},
                    {"id2label", Labels(5)}},
                   2'648'573'445});
  Cases.push_back({"tiny-llama", "llama-seq-cls",
                   {{"architectures", llvm::json::Array{"LlamaForSequenceClassification"}},
                    {"pad_token_id", 0}},
                   125'376});
  Cases.push_back({"tiny-llama", "llama-token-cls",
                   {{"architectures", llvm::json::Array{"LlamaForTokenClassification"}},
                    {"id2label", Labels(5)}},
                   125'573});
  Cases.push_back({"gpt2", "gpt2-seq-cls",
                   {{"architectures", llvm::json::Array{"GPT2ForSequenceClassification"}},
                    {"pad_token_id", 50256}},
                   124'441'344});
  Cases.push_back({"pythia-160m", "neox-seq-cls",
                   {{"architectures", llvm::json::Array{"GPTNeoXForSequenceClassification"}},
                    {"pad_token_id", 0}},
                   123'691'008});
  // A reward model: one label, Qwen2's tied embedding without a head to tie.
  Cases.push_back({"qwen2-0.5b", "qwen2-reward",
                   {{"architectures", llvm::json::Array{"Qwen2ForSequenceClassification"}},
                    {"id2label", Labels(1)},
                    {"pad_token_id", 151643}},
                   494'033'664});
  // Two classes: BERT's [2, 768] token types and the [768, 2] classifier are two
  // parameters (the census merged them as a tied pair by their shapes).
  Cases.push_back({"bert-base-uncased", "bert-seq-cls-2",
                   {{"architectures", llvm::json::Array{"BertForSequenceClassification"}}},
                   109'483'778});
  // Question answering (AutoModelForQuestionAnswering): qa_outputs, [hidden, 2] and a bias.
  Cases.push_back({"bert-base-uncased", "bert-qa",
                   {{"architectures", llvm::json::Array{"BertForQuestionAnswering"}}},
                   108'893'186});
  Cases.push_back({"roberta-base", "roberta-qa",
                   {{"architectures", llvm::json::Array{"RobertaForQuestionAnswering"}}},
                   124'056'578});
  Cases.push_back({"distilbert-base-uncased", "distilbert-qa",
                   {{"architectures", llvm::json::Array{"DistilBertForQuestionAnswering"}}},
                   66'364'418});
  Cases.push_back({"tiny-llama", "llama-qa",
                   {{"architectures", llvm::json::Array{"LlamaForQuestionAnswering"}}},
                   125'378});
  Cases.push_back({"gpt2", "gpt2-qa",
                   {{"architectures", llvm::json::Array{"GPT2ForQuestionAnswering"}}},
                   124'441'346});
  Cases.push_back({"pythia-160m", "neox-qa",
                   {{"architectures", llvm::json::Array{"GPTNeoXForQuestionAnswering"}}},
                   123'691'010});
  Cases.push_back({"qwen2-0.5b", "qwen2-qa",
                   {{"architectures", llvm::json::Array{"Qwen2ForQuestionAnswering"}}},
                   494'034'562});
  // Multiple choice (AutoModelForMultipleChoice): the pooler (DistilBERT's pre_classifier)
  // and a [hidden, 1] classifier.
  Cases.push_back({"bert-base-uncased", "bert-mc",
                   {{"architectures", llvm::json::Array{"BertForMultipleChoice"}}},
                   109'483'009});
  Cases.push_back({"roberta-base", "roberta-mc",
                   {{"architectures", llvm::json::Array{"RobertaForMultipleChoice"}}},
                   124'646'401});
  Cases.push_back({"distilbert-base-uncased", "distilbert-mc",
                   {{"architectures", llvm::json::Array{"DistilBertForMultipleChoice"}}},
                   66'954'241});
  expectParameterCounts(std::move(Cases));
}

TEST(HfHeads, BertModelHasPoolerOutputs) {
  ConfigVariant Config("bert-base-uncased", "bert-model-outputs",
                       {{"architectures", llvm::json::Array{"BertModel"}}});
  Graph G = importPath(Config.path(), dims(2, 64));
  ASSERT_EQ(G.Outputs.size(), 2u);
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Name, "last_hidden_state");
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{2, 64, 768}));
  EXPECT_EQ(G.Tensors[G.Outputs[1]].Name, "pooler_output");
  EXPECT_EQ(G.Tensors[G.Outputs[1]].Shape, (Shape{2, 768}));
  // A base model is the root module: no "bert." prefix.
  EXPECT_EQ(shapeOf(G, "pooler.dense.weight"), (Shape{768, 768}));
  EXPECT_EQ(shapeOf(G, "embeddings.word_embeddings.weight"), (Shape{30522, 768}));
  EXPECT_EQ(G.Name, "bert-model-outputs") << "the folder names a config without _name_or_path";
}

TEST(HfHeads, QuestionAnsweringHeads) {
  // qa_outputs on every token: start and end logits, one cross-entropy each over the
  // sequence's positions, read as [2 * batch, seq] rows. No pooler, no dropout.
  ConfigVariant Bert("bert-base-uncased", "bert-qa",
                     {{"architectures", llvm::json::Array{"BertForQuestionAnswering"}}});
  Graph G = importPath(Bert.path(), dims(4, 384));
  expectLogits(G, {8, 384});
  EXPECT_EQ(shapeOf(G, "qa_outputs.weight"), (Shape{768, 2}));
  EXPECT_EQ(shapeOf(G, "qa_outputs.bias"), (Shape{2}));
  EXPECT_EQ(findTensor(G, "bert.pooler.dense.weight"), nullptr);
  EXPECT_TRUE(G.DropoutAt.empty());
  EXPECT_FALSE(G.LossShiftsLabels);
  EXPECT_FALSE(G.LossUpcastsLogits);
  EXPECT_EQ(G.PeftTaskType, "QUESTION_ANS");
  EXPECT_EQ(G.ClassifierModules, (std::vector<std::string>{"qa_outputs"}));
  // DistilBERT drops out before qa_outputs (qa_dropout).
  ConfigVariant Distil("distilbert-base-uncased", "distilbert-qa",
                       {{"architectures", llvm::json::Array{"DistilBertForQuestionAnswering"}},
                        {"qa_dropout", 0.25}});
  G = importPath(Distil.path(), dims(2, 64));
  ASSERT_EQ(G.DropoutAt.size(), 7u) << "six FFN dropouts and the head's";
  EXPECT_EQ(G.DropoutAt.back().second, 0.25);
  // The decoders' qa_outputs reads the last hidden state; LLaMA's keeps its base model as
  // `transformer`, Mistral's as `model`.
  ConfigVariant Llama("tiny-llama", "llama-qa",
                      {{"architectures", llvm::json::Array{"LlamaForQuestionAnswering"}}});
  G = importPath(Llama.path(), dims(2, 64));
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{4, 64}));
  EXPECT_NE(findTensor(G, "transformer.embed_tokens.weight"), nullptr);
  EXPECT_EQ(findTensor(G, "lm_head.weight"), nullptr);
  ConfigVariant Mistral("mistral-7b", "mistral-qa",
                        {{"architectures", llvm::json::Array{"MistralForQuestionAnswering"}}});
  G = importPath(Mistral.path(), dims(1, 128));
  EXPECT_NE(findTensor(G, "model.embed_tokens.weight"), nullptr);
  EXPECT_EQ(shapeOf(G, "qa_outputs.weight"), (Shape{4096, 2}));
  // An encoder's qa_outputs has num_labels outputs, which transformers splits in two.
  ConfigVariant Three("bert-base-uncased", "bert-qa-3",
                      {{"architectures", llvm::json::Array{"BertForQuestionAnswering"}},
                       {"num_labels", 3}});
  std::string E = importError(Three.path(), dims(2, 64));
  EXPECT_NE(E.find("field 'num_labels' gives 3 labels"), std::string::npos) << E;
  EXPECT_NE(E.find("transformers needs 2"), std::string::npos) << E;
  // A family transformers has no question-answering class for: said, and the LM head.
  ConfigVariant Gemma("gemma-2b", "gemma-qa",
                      {{"architectures", llvm::json::Array{"GemmaForQuestionAnswering"}}});
  G = importPath(Gemma.path(), dims(1, 64));
  bool Warned = false;
  for (const Diagnostic &D : G.Diags.all())
    Warned |= D.Code == "head-assumed";
  EXPECT_TRUE(Warned);
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{1, 64, 256000}));
}

TEST(HfHeads, MultipleChoiceHeads) {
  // [batch, choices, seq] inputs viewed as batch x choices sequences, the pooled encoding
  // scored by a one-output classifier, the scores viewed as [batch, choices] logits.
  ConfigVariant Bert("bert-base-uncased", "bert-mc",
                     {{"architectures", llvm::json::Array{"BertForMultipleChoice"}}});
  ImportOptions O = dims(8, 128);
  O.Dims.push_back({"choices", 5});
  Graph G = importPath(Bert.path(), O);
  ASSERT_EQ(G.Inputs.size(), 3u);
  EXPECT_EQ(G.Tensors[G.Inputs[0]].Shape, (Shape{8, 5, 128}));
  expectLogits(G, {8, 5});
  EXPECT_EQ(shapeOf(G, "classifier.weight"), (Shape{768, 1}));
  EXPECT_EQ(shapeOf(G, "bert.pooler.dense.weight"), (Shape{768, 768}));
  ASSERT_EQ(G.DropoutAt.size(), 1u);
  EXPECT_EQ(G.DropoutAt[0].second, 0.1) << "hidden_dropout_prob";
  EXPECT_TRUE(G.PeftTaskType.empty()) << "PEFT has no multiple-choice task type";
  ASSERT_EQ(G.Dims.size(), 3u);
  EXPECT_EQ(G.Dims[2].Name, "choices");
  EXPECT_EQ(G.Dims[2].Value, 5);
  // Without the dim: 4, said.
  G = importPath(Bert.path(), dims(2, 64));
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{2, 4}));
  bool Noted = false;
  for (const Diagnostic &D : G.Diags.all())
    Noted |= D.Code == "dim-default" && D.Message.find("choices") != std::string::npos;
  EXPECT_TRUE(Noted);
  // --input gives the three dims.
  ImportOptions In;
  In.Inputs.push_back({"input_ids", {3, 2, 32}});
  G = importPath(Bert.path(), In);
  EXPECT_EQ(G.Tensors[G.Outputs[0]].Shape, (Shape{3, 2}));
  In.Inputs[0].Dims = {3, 32};
  std::string E = importError(Bert.path(), In);
  EXPECT_NE(E.find("expected 3 ([batch, choices, seq])"), std::string::npos) << E;
  // choices belongs to this head only.
  ImportOptions Other = dims(2, 64);
  Other.Dims.push_back({"choices", 4});
  E = importError(samplePath("bert-base-uncased"), Other);
  EXPECT_NE(E.find("--dim choices"), std::string::npos) << E;
  EXPECT_NE(E.find("ForMultipleChoice"), std::string::npos) << E;
  // DistilBERT: pre_classifier and ReLU on the first token, seq_classif_dropout.
  ConfigVariant Distil("distilbert-base-uncased", "distilbert-mc",
                       {{"architectures", llvm::json::Array{"DistilBertForMultipleChoice"}}});
  G = importPath(Distil.path(), dims(2, 64));
  EXPECT_EQ(shapeOf(G, "pre_classifier.weight"), (Shape{768, 768}));
  EXPECT_EQ(G.DropoutAt.back().second, 0.2);
}

// Configs the fuzzer found (tests/fuzz/README.md), imported as FuzzHfConfig does: batch 1,
// seq 16, a padded batch where the file's size is odd. They import or fail naming the file.
TEST(HfConfigFuzzRegressions, FoundConfigsImportOrFailNamingTheFile) {
  std::string Dir = std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/fuzz-regressions";
  std::error_code EC;
  int Seen = 0;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC)) {
    if (!llvm::StringRef(llvm::sys::path::filename(It->path())).starts_with("hfconfig-"))
      continue;
    uint64_t Size = 0;
    ASSERT_FALSE(llvm::sys::fs::file_size(It->path(), Size));
    ImportOptions Options = dims(1, 16);
    Options.PaddedBatches = Size % 2 == 1;
    llvm::Expected<Graph> G = importHfConfig(It->path(), Options);
    if (!G) {
      std::string Message = llvm::toString(G.takeError());
      EXPECT_NE(Message.find(It->path()), std::string::npos) << Message;
    } else if (llvm::StringRef(It->path()).contains("qa-head")) {
      // qa_outputs' rows read the hidden states' shape after the head had grown the
      // builder's tensors (a dangling reference under ASan).
      ASSERT_EQ(G->Outputs.size(), 1u);
      EXPECT_EQ(G->Tensors[G->Outputs[0]].Shape, (Shape{2, 16}));
    }
    ++Seen;
  }
  EXPECT_GT(Seen, 0);
}
