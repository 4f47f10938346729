//===- SetupJsonTest.cpp - the setup a report echoes reads back -------------------===//
//
// `--setup=FILE` takes the object a report prints under "setup"; every key written
// must read back to the same setup, and a bad value names its key.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TrainingSetup.h"

#include <gtest/gtest.h>

using namespace trainmem;

namespace {
std::string text(const llvm::json::Object &O) {
  return llvm::formatv("{0}", llvm::json::Value(llvm::json::Object(O))).str();
}
std::string applyError(const char *Json) {
  auto V = llvm::json::parse(Json);
  EXPECT_TRUE(static_cast<bool>(V));
  if (!V)
    return llvm::toString(V.takeError());
  TrainingSetup S;
  llvm::Error E = applySetupJson(*V->getAsObject(), S, "setup.json");
  return E ? llvm::toString(std::move(E)) : "";
}
} // namespace

TEST(SetupJson, EveryEchoedKeyReadsBack) {
  TrainingSetup S;
  S.Prec = Precision::MixedBf16;
  S.Device = DeviceKind::Cpu;
  S.Autocast = AutocastPolicy::Cpu;
  S.Attention = AttentionImpl::Eager;
  S.Optimizer = OptimizerKind::AdamWFp8;
  S.Impl = OptimizerImpl::Foreach;
  S.Loss = LossKind::CutCrossEntropy;
  S.Tie = TieMode::No;
  S.KeepGrads = true;
  S.Checkpoint = "every:2";
  S.GradAccum = 4;
  S.MicroBatch = 3;
  S.TrainRegex = "h\\.1";
  S.FreezeRegex = "wte";
  S.SparseUpdate = "last:2";
  S.ZerothOrder = true;
  S.Int8Activations = true;
  S.Galore = GaloreSetup{64, 50, {"attn"}, true};
  S.Sharding = ShardingSetup{3, true, 8, OffloadKind::Params};
  S.Dropout = 0.25;
  S.Gpu = "h100-sxm";
  S.CudaContextBytes = 1408237568; // 1343 MiB
  S.Lora = LoraSetup{};
  S.Lora->Rank = 16;
  S.Lora->Alpha = 32;
  S.Lora->Targets = {"q_proj", "v_proj"};
  S.Lora->Dropout = 0.05;
  S.Lora->QLora = true;

  llvm::json::Object Written = setupToJson(S);
  TrainingSetup Read;
  ASSERT_FALSE(static_cast<bool>(applySetupJson(Written, Read, "setup.json")));
  EXPECT_EQ(text(setupToJson(Read)), text(Written));
}

TEST(SetupJson, BadValuesNameTheFileAndKey) {
  EXPECT_EQ(applyError(R"({"activation_storage": "int4"})"),
            "setup.json: key 'activation_storage': expected \"native\" or \"int8\"");
  EXPECT_NE(applyError(R"({"galore": {"rank": 0}})").find("key 'galore.rank'"),
            std::string::npos);
  EXPECT_NE(applyError(R"({"sharding": {"zero": 1, "offload": "params"}})")
                .find("key 'sharding.offload'"),
            std::string::npos);
  EXPECT_NE(applyError(R"({"sharding": {"zero": 0, "fsdp": true}})").find("key 'sharding.zero'"),
            std::string::npos);
  EXPECT_NE(applyError(R"({"zeroth_order": "yes"})").find("key 'zeroth_order': expected true"),
            std::string::npos);
  EXPECT_NE(applyError(R"({"optimzer": "adamw"})").find("unknown key"), std::string::npos);
  EXPECT_EQ(applyError(R"({"cuda_context": true})"),
            "setup.json: key 'cuda_context': expected bytes (a non-negative integer) or a "
            "size such as \"1343MiB\"");
  EXPECT_NE(applyError(R"({"cuda_context": "lots"})").find("key 'cuda_context': 'lots' is not a size"),
            std::string::npos);
  EXPECT_NE(applyError(R"({"cuda_context": "9000000TiB"})").find("too large a size"),
            std::string::npos);
}

// A context size given with its unit reads as bytes, and is echoed as bytes.
TEST(SetupJson, CudaContextTakesASizeOrBytes) {
  for (const char *Json : {R"({"cuda_context": "1343MiB"})", R"({"cuda_context": 1408237568})"}) {
    auto V = llvm::json::parse(Json);
    ASSERT_TRUE(static_cast<bool>(V));
    TrainingSetup S;
    ASSERT_FALSE(static_cast<bool>(applySetupJson(*V->getAsObject(), S, "setup.json")));
    ASSERT_TRUE(S.CudaContextBytes.has_value()) << Json;
    EXPECT_EQ(*S.CudaContextBytes, 1343LL << 20) << Json;
    EXPECT_EQ(setupToJson(S).getInteger("cuda_context"), std::optional<int64_t>(1343LL << 20));
  }
}
