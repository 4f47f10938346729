//===- StepPredictionTest.cpp - what predictStepReport adds to a simulation -------===//
//
// predictStepReport resolves the setup against the model and, for a decoder that fills
// a key/value cache, says what switching the cache off would free.
//
//===----------------------------------------------------------------------------===//
#include "planner/StepPrediction.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/Units.h"

#include <gtest/gtest.h>

using namespace trainmem;

namespace {

MemoryReport predict(const std::string &Sample, KvCacheMode Mode, int64_t Batch = 8,
                     int64_t Seq = 512) {
  ImportOptions O;
  O.Dims = {{"batch", Batch}, {"seq", Seq}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/" + Sample +
                              "/config.json",
                          O);
  EXPECT_TRUE(bool(G)) << llvm::toString(G.takeError());
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  S.Dropout = 0.0;
  S.KvCache = Mode;
  auto R = predictStepReport(std::move(*G), S);
  EXPECT_TRUE(bool(R)) << llvm::toString(R.takeError());
  EXPECT_NE(R->Setup.KvCache, KvCacheMode::Auto) << "the report says which was modelled";
  return std::move(*R);
}

const Diagnostic *note(const MemoryReport &R, llvm::StringRef Code) {
  for (const Diagnostic &D : R.Diags.all())
    if (D.Code == Code)
      return &D;
  return nullptr;
}

TEST(StepPrediction, SaysWhatTheKeyValueCacheCosts) {
  // GPT-2's keys and values are slices of the fused qkv: the cache's copies are extra,
  // and the note gives the difference of the two simulations (batch 8 x 512: the peak is
  // in the backward, where the copies are saved).
  MemoryReport With = predict("gpt2", KvCacheMode::Auto);
  MemoryReport Without = predict("gpt2", KvCacheMode::Off);
  EXPECT_EQ(With.Setup.KvCache, KvCacheMode::On);
  ASSERT_TRUE(With.Peak && Without.Peak);
  ASSERT_LT(*Without.Peak, *With.Peak);
  const Diagnostic *N = note(With, "kv-cache");
  ASSERT_NE(N, nullptr);
  EXPECT_NE(N->Message.find(formatBytes(*With.Peak - *Without.Peak)), std::string::npos)
      << N->Message;
  EXPECT_EQ(note(Without, "kv-cache"), nullptr) << "nothing to say with the cache off";
  // At batch 2 x 64 the optimizer step (AdamW's states) is the peak: the cache changes
  // nothing there, and nothing is said.
  MemoryReport Small = predict("gpt2", KvCacheMode::Auto, 2, 64);
  EXPECT_EQ(Small.Peak, predict("gpt2", KvCacheMode::Off, 2, 64).Peak);
  EXPECT_EQ(note(Small, "kv-cache"), nullptr);
  // LLaMA's cache copies replace tensors that die anyway: no note.
  EXPECT_EQ(note(predict("tiny-llama", KvCacheMode::Auto), "kv-cache"), nullptr);
}

} // namespace

namespace {

TEST(StepPrediction, SaysWhenTheCheckpointIsStoredIn16Bits) {
  // LLaMA-2-7B's config says float16: transformers 5 loads it so unless told float32.
  ImportOptions O;
  O.Dims = {{"batch", 1}, {"seq", 16}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/llama-2-7b/config.json",
                          O);
  ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
  EXPECT_EQ(G->DeclaredWeightType, DType::Float16);
  Graph Copy = *G;
  TrainingSetup Fp32;
  auto R = predictStepReport(std::move(*G), Fp32);
  ASSERT_TRUE(bool(R)) << llvm::toString(R.takeError());
  const Diagnostic *N = note(*R, "config-dtype");
  ASSERT_NE(N, nullptr);
  EXPECT_NE(N->Message.find("float16"), std::string::npos) << N->Message;
  TrainingSetup Bf16;
  Bf16.Prec = Precision::Bf16;
  auto Pure = predictStepReport(std::move(Copy), Bf16);
  ASSERT_TRUE(bool(Pure));
  EXPECT_EQ(note(*Pure, "config-dtype"), nullptr) << "pure 16-bit training says nothing";
}

} // namespace

TEST(StepPrediction, SaysWhatGaloresFp32ProjectorsKeep) {
  // TinyLlama-1.1B at rank 8: 22 layers of q, o, gate, up, down (k = 2048) and k, v
  // (k = 256), each fp32 projector a whole k x k factor; the bf16 slices r x k.
  for (Precision Prec : {Precision::AmpBf16, Precision::Bf16}) {
    ImportOptions O;
    O.Dims = {{"batch", 1}, {"seq", 128}};
    auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) +
                                "/samples/hf/tinyllama-1.1b/config.json",
                            O);
    ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
    TrainingSetup S;
    S.Device = DeviceKind::Cuda;
    S.Prec = Prec;
    S.Galore = GaloreSetup{};
    S.Galore->Rank = 8;
    auto R = predictStepReport(std::move(*G), S);
    ASSERT_TRUE(bool(R)) << llvm::toString(R.takeError());
    const Diagnostic *D = note(*R, "galore-projector");
    if (Prec == Precision::Bf16) {
      EXPECT_EQ(D, nullptr) << "a bf16 gradient's projector is already the slice";
      continue;
    }
    ASSERT_NE(D, nullptr);
    const int64_t Kept = 22 * 4 * (5 * 2048 * 2048 + 2 * 256 * 256);
    const int64_t Sliced = 22 * 2 * 8 * (5 * 2048 + 2 * 256);
    EXPECT_NE(D->Message.find(formatBytes(Kept)), std::string::npos) << D->Message;
    EXPECT_NE(D->Message.find(formatBytes(Sliced)), std::string::npos) << D->Message;
  }
}
