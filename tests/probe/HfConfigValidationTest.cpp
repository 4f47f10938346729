//===- HfConfigValidationTest.cpp - executor and simulator on every HF architecture -===//
//
// The Hugging Face configs of samples/hf, shrunk to a few thousand parameters per layer
// (their structure kept: GQA, partial rotary, parallel residual, tied heads, fused SDPA
// attention), run by the executor and predicted by the simulator, without and with every
// block checkpointed (PyTorch 2's non-reentrant checkpoint, as transformers runs it), with
// unpadded and padded batches (--padded: the attention mask SDPA turns into a kept float
// bias, grouped heads repeated): the peak and the bytes saved for backward must agree
// within 0.02% (they agree to 8 bytes).
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/Executor.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "planner/StepPrediction.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace trainmem;

namespace {

/// samples/hf/NAME/config.json with its sizes cut down, written to a temporary file.
std::string shrunkConfig(const std::string &Name) {
  std::string Path = std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/" + Name + "/config.json";
  auto Buffer = llvm::MemoryBuffer::getFile(Path);
  EXPECT_TRUE(bool(Buffer)) << Path;
  if (!Buffer)
    return "";
  auto Json = llvm::json::parse((*Buffer)->getBuffer());
  EXPECT_TRUE(bool(Json)) << Path;
  if (!Json)
    return "";
  llvm::json::Object &O = *Json->getAsObject();
  const std::pair<const char *, int64_t> Sizes[] = {
      {"hidden_size", 64},      {"n_embd", 64},           {"intermediate_size", 128},
      {"num_hidden_layers", 2}, {"n_layer", 2},           {"num_attention_heads", 4},
      {"n_head", 4},            {"num_key_value_heads", 2}, {"vocab_size", 512},
      {"head_dim", 16},         {"rotary_dim", 8}, // GPT-J's rotated channels of a head
      // Mixture-of-experts: 4 experts, 2 per token, experts 64 wide.
      {"num_local_experts", 4}, {"num_experts", 4},     {"num_experts_per_tok", 2},
      {"moe_intermediate_size", 64}, {"shared_expert_intermediate_size", 128}};
  for (auto [Key, Value] : Sizes)
    if (O.get(Key))
      O[Key] = Value;
  // One layer type per layer (gpt-oss lists them): the first two, sliding then full.
  if (llvm::json::Array *Types = O.getArray("layer_types"); Types && Types->size() > 2)
    O["layer_types"] = llvm::json::Array{(*Types)[0], (*Types)[1]};
  for (const char *Key : {"resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout_prob",
                          "attention_probs_dropout_prob", "attention_dropout", "hidden_dropout"})
    if (O.get(Key))
      O[Key] = 0.0;
  llvm::SmallString<128> Out;
  llvm::sys::fs::createTemporaryFile("hf-" + Name, "json", Out);
  std::error_code EC;
  llvm::raw_fd_ostream OS(Out, EC);
  OS << llvm::json::Value(std::move(*Json));
  return std::string(Out);
}

/// Predicts G's step under Setup and runs it on the executor (the host device): prints
/// Label, the peaks and the saved bytes, and expects them within 0.02% of each other.
void expectExecutorAgrees(const Graph &G, TrainingSetup Setup, const std::string &Label) {
  TrainingSetup ExecSetup = Setup; // the prediction resolves the setup in place
  auto Predicted = predictStepReport(G, Setup);
  ASSERT_TRUE(bool(Predicted)) << Label << ": " << llvm::toString(Predicted.takeError());
  auto Census = takeCensus(G, ExecSetup);
  ASSERT_TRUE(bool(Census)) << Label;
  auto Dev = kernels::makeHostDevice();
  auto Measured = probe::executeTrainingSteps(G, ExecSetup, *Census, *Dev);
  ASSERT_TRUE(bool(Measured)) << Label << ": " << llvm::toString(Measured.takeError());
  int64_t P = Predicted->Peak.value_or(0), M = Measured->Peak;
  int64_t SP = Predicted->Bytes.Activations, SM = Measured->SavedAtEndOfForward;
  double Error = 100.0 * static_cast<double>(M - P) / static_cast<double>(P);
  double SavedError = 100.0 * static_cast<double>(SM - SP) / static_cast<double>(SP);
  std::printf("%-28s %12lld %12lld %+7.3f%% %12lld %12lld\n", Label.c_str(),
              static_cast<long long>(P), static_cast<long long>(M), Error,
              static_cast<long long>(SP), static_cast<long long>(SM));
  EXPECT_LE(std::fabs(Error), 0.02) << Label;
  EXPECT_LE(std::fabs(SavedError), 0.02) << Label;
}

TEST(HfConfigValidation, EveryArchitectureAgreesWithTheSimulator) {
  std::printf("%-28s %12s %12s %8s %12s %12s\n", "config", "predicted", "measured", "error",
              "saved pred", "saved meas");
  for (bool Padded : {false, true})
  for (const char *Checkpoint : {"none", "blocks"})
  for (const char *Name : {"tiny-llama", "gpt2", "pythia-160m", "qwen2-0.5b", "qwen3-0.6b", "phi-3-mini-4k", "phi-2", "opt-1.3b", "opt-350m", "starcoder2-3b", "gpt-j-6b", "stablelm-2-1.6b", "gemma-2b", "gemma-2-2b", "gemma-3-1b", "olmo-2-7b", "granite-3-2b",
                           "mistral-7b", "bert-base-uncased", "mixtral-8x7b", "qwen3-30b-a3b",
                           "qwen1.5-moe-a2.7b", "olmoe-1b-7b", "gpt-oss-20b"}) {
    std::string Path = shrunkConfig(Name);
    ASSERT_FALSE(Path.empty()) << Name;
    ImportOptions Import;
    Import.Dims = {{"batch", 2}, {"seq", 16}};
    Import.PaddedBatches = Padded;
    auto G = importHfConfig(Path, Import);
    llvm::sys::fs::remove(Path);
    ASSERT_TRUE(bool(G)) << Name << ": " << llvm::toString(G.takeError());
    TrainingSetup Setup;
    Setup.Device = DeviceKind::Cpu;
    Setup.Autocast = AutocastPolicy::Cpu;
    Setup.Impl = OptimizerImpl::Fused;
    Setup.Checkpoint = Checkpoint;
    expectExecutorAgrees(*G, Setup,
                         std::string(Name) + " " + Checkpoint + (Padded ? " pad" : ""));
  }
}

TEST(HfConfigValidation, DeepSeekWithEagerAttentionAgreesWithTheSimulator) {
  // The executor's reference attention kernels take one head width, and DeepSeek's values
  // are narrower than its queries: its eager attention, without and with checkpointing
  // (V3's sigmoid routing and interleaved rotary, V2's softmax routing and complex one).
  for (const char *Name : {"deepseek-v3", "deepseek-v2"})
  for (const char *Checkpoint : {"none", "blocks"}) {
    ImportOptions Import;
    Import.Dims = {{"batch", 1}, {"seq", 64}};
    auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) +
                                "/tests/data/measured-hf/configs/" + Name + ".json",
                            Import);
    ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
    TrainingSetup Setup;
    Setup.Device = DeviceKind::Cpu;
    Setup.Impl = OptimizerImpl::Fused;
    Setup.Attention = AttentionImpl::Eager;
    Setup.Checkpoint = Checkpoint;
    expectExecutorAgrees(*G, Setup, std::string(Name) + " eager " + Checkpoint);
  }
}

TEST(HfConfigValidation, DropoutAtTheSitesAConfigDeclares) {
  // Configs whose only dropout is attention_dropout (the LLaMA family's one site; gpt-oss
  // drops out the probabilities less the sink's column): the executor drops out where the
  // simulator does, not also on the residual branches and the embeddings (it did: the
  // tiny LLaMA's step +2.4%, its saved bytes +6.5%).
  for (const char *Name : {"tiny-llama-attn-dropout", "gpt-oss-20b-attn-dropout",
                           "granite-3-2b"}) {
    std::string Path = std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/measured-hf/configs/" +
                       Name + ".json";
    ImportOptions Import;
    Import.Dims = {{"batch", 1}, {"seq", 64}};
    auto G = importHfConfig(Path, Import);
    ASSERT_TRUE(bool(G)) << Name << ": " << llvm::toString(G.takeError());
    ASSERT_TRUE(G->DeclaredDropoutSites && G->DeclaredDropoutSites->Attention > 0) << Name;
    TrainingSetup Setup;
    Setup.Device = DeviceKind::Cpu;
    Setup.Impl = OptimizerImpl::Fused;
    expectExecutorAgrees(*G, Setup, Name);
  }
}

TEST(HfConfigValidation, ClassificationHeadsAgreeWithTheSimulator) {
  // BERT's pooler (a select of the first token the pooler's dense keeps as a view of the
  // whole hidden states), RoBERTa's positions numbered from the ids (cumsum) and its head
  // on the first token, a decoder's score read at each row's last non-padding token
  // (argmax), token classifiers, question-answering heads (qa_outputs' logits transposed
  // and copied to rows), multiple-choice heads ([batch, choices, seq] inputs viewed as
  // sequences; 4 choices by default); the configs' dropout at the heads' own sites too.
  for (const char *Name : {"bert-seq-cls", "bert-token-cls", "roberta-seq-cls",
                           "xlm-roberta-token-cls", "tiny-llama-seq-cls",
                           "tiny-llama-token-cls", "gpt2-seq-cls", "distilbert",
                           "distilbert-seq-cls", "distilbert-token-cls", "bert-qa",
                           "distilbert-qa", "tiny-llama-qa", "bert-mc", "distilbert-mc"})
  for (const char *Checkpoint : {"none", "blocks"}) {
    // GPT-2 with attention dropout and checkpointed blocks: the executor, running attention
    // as the graph's math ops once it drops out, builds the [batch, 1, seq, seq] causal mask
    // SDPA's is_causal never makes, and keeps it to the end of the forward (saved +8 KB,
    // peaks equal; the simulator matches PyTorch: MeasuredHf), as for GPT2LMHeadModel.
    if (llvm::StringRef(Name) == "gpt2-seq-cls" && llvm::StringRef(Checkpoint) == "blocks")
      continue;
    ImportOptions Import;
    Import.Dims = {{"batch", 2}, {"seq", 32}};
    auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) +
                                "/tests/data/measured-hf/configs/" + Name + ".json",
                            Import);
    ASSERT_TRUE(bool(G)) << Name << ": " << llvm::toString(G.takeError());
    TrainingSetup Setup;
    Setup.Device = DeviceKind::Cpu;
    Setup.Impl = OptimizerImpl::Fused;
    Setup.Checkpoint = Checkpoint;
    expectExecutorAgrees(*G, Setup, std::string(Name) + " " + Checkpoint);
  }
}

/// GaLore at rank 8 on attn and mlp (galore-torch's defaults), stepped on the CPU.
TrainingSetup galoreOnTheCpu(bool PerLayer) {
  TrainingSetup Setup;
  Setup.Device = DeviceKind::Cpu;
  Setup.Galore = GaloreSetup{};
  Setup.Galore->Rank = 8;
  Setup.Galore->PerLayer = PerLayer;
  return Setup;
}

TEST(HfConfigValidation, GaloreStepsParameterByParameterAsTheSimulatorDoes) {
  // galore-torch's AdamW loop: the tiny LLaMA's embedding and head (the other group) step
  // first, their denom and norm_grad still held while the first target projects its
  // gradient; its peak is in the optimizer step. The executor keeps the loop's locals as
  // Python does; the simulator walks the parameters in the same order. At a projector
  // refresh the SVD's tensors join them (the prediction's peak); at other steps they don't
  // (peakBetweenGaloreRefreshes).
  ImportOptions Import;
  Import.Dims = {{"batch", 1}, {"seq", 32}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json",
                          Import);
  ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
  TrainingSetup Setup = galoreOnTheCpu(/*PerLayer=*/false);
  TrainingSetup ExecSetup = Setup;
  auto Predicted = predictStepReport(*G, Setup);
  ASSERT_TRUE(bool(Predicted)) << llvm::toString(Predicted.takeError());
  const int64_t Update = peakBetweenGaloreRefreshes(Predicted->Timeline);
  auto Census = takeCensus(*G, ExecSetup);
  ASSERT_TRUE(bool(Census));
  auto Dev = kernels::makeHostDevice();
  for (bool Refresh : {true, false}) {
    probe::ExecutorOptions Options;
    Options.GaloreRefreshEveryStep = Refresh;
    auto Measured = probe::executeTrainingSteps(*G, ExecSetup, *Census, *Dev, Options);
    ASSERT_TRUE(bool(Measured)) << llvm::toString(Measured.takeError());
    std::printf("GaLore %s: predicted %lld, measured %lld at %s\n",
                Refresh ? "refresh step" : "other steps",
                static_cast<long long>(Refresh ? Predicted->Peak.value_or(0) : Update),
                static_cast<long long>(Measured->Peak), Measured->PeakOp.c_str());
    EXPECT_EQ(Measured->PeakPhase, "optimizer");
    EXPECT_EQ(Measured->Peak, Refresh ? Predicted->Peak.value_or(0) : Update);
  }
}

TEST(HfConfigValidation, LayerWiseGaloreStepsEachWeightInItsHook) {
  // Trainer's layer-wise GaLore: each parameter's own optimizer steps once its gradient is
  // complete, then frees it. The tiny LLaMA's peak is lm_head's step (its denom and
  // norm_grad beside the gradient); PyTorch measured 7,480,008 B for this step
  // (tests/data/measured-hf, galore layerwise).
  ImportOptions Import;
  Import.Dims = {{"batch", 1}, {"seq", 16}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) +
                              "/tests/data/measured-hf/configs/tiny-llama.json",
                          Import);
  ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
  TrainingSetup Setup = galoreOnTheCpu(/*PerLayer=*/true);
  expectExecutorAgrees(*G, Setup, "tiny-llama galore layer-wise");
  TrainingSetup ExecSetup = Setup;
  auto Census = takeCensus(*G, ExecSetup);
  ASSERT_TRUE(bool(Census));
  auto Dev = kernels::makeHostDevice();
  auto Measured = probe::executeTrainingSteps(*G, ExecSetup, *Census, *Dev);
  ASSERT_TRUE(bool(Measured)) << llvm::toString(Measured.takeError());
  EXPECT_EQ(Measured->Peak, 7480008) << "PyTorch's figure for the same step";
  EXPECT_EQ(Measured->AtPeak.Gradients, 4 * 1024 * 128) << "only lm_head's gradient";
}

} // namespace
