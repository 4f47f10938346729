//===- ConfigReaderTest.cpp - HF Trainer configs read back ------------------------===//
//
// readHfTrainerConfig: the HF files an emitter writes read back into the same setup, and
// hand-written configs with the errors their wrong values give.
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"
#include "planner/StrategyApply.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"

#include "EmitterTestSupport.h"

#include "llvm/ADT/StringExtras.h"

#include <gtest/gtest.h>

using namespace trainmem;
using namespace trainmem::emittest;

namespace {

// ---------------------------------------------------------------------------------
// Round trip through the HF files.

/// The fields a Trainer config carries, in one comparable line.
std::string describe(const TrainingSetup &S) {
  std::string Out = std::string(precisionName(S.Prec)) + " " + optimizerName(S.Optimizer) +
                    " accum=" + std::to_string(S.GradAccum) +
                    " micro=" + std::to_string(S.MicroBatch.value_or(-1)) +
                    " checkpoint=" + S.Checkpoint + " use_cache=" + kvCacheName(S.KvCache);
  if (S.Lora)
    Out += " lora(r=" + std::to_string(S.Lora->Rank) + " alpha=" +
           std::to_string(S.Lora->Alpha) + " dropout=" + std::to_string(S.Lora->Dropout) +
           " targets=" + llvm::join(S.Lora->Targets, ",") +
           (S.Lora->QLora ? " qlora)" : ")");
  if (S.Galore)
    Out += " galore(r=" + std::to_string(S.Galore->Rank) +
           " gap=" + std::to_string(S.Galore->UpdateGap) +
           " targets=" + llvm::join(S.Galore->Targets, ",") +
           (S.Galore->PerLayer ? " per-layer)" : ")");
  if (S.Sharding.active())
    Out += " zero=" + std::to_string(S.Sharding.ZeroStage) +
           (S.Sharding.Fsdp ? " fsdp" : "") + " gpus=" + std::to_string(S.Sharding.Gpus) +
           " offload=" + offloadName(S.Sharding.Offload);
  return Out;
}

llvm::Expected<TrainingSetup> readBack(Files &F) {
  return readHfTrainerConfig(F["training_args.json"], F["lora_config.json"],
                             F["bnb_config.json"], F["model_load.json"], F["ds_config.json"]);
}

/// Setups that exercise every part of the HF files.
std::vector<std::pair<const char *, Edit>> roundTripCases() {
  return {
      {"fp32 adamw", {}},
      {"amp-bf16 fused blocks lora",
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Impl = OptimizerImpl::Fused;
         S.Checkpoint = "blocks";
         S.KvCache = KvCacheMode::Off;
         lora(S);
       }},
      {"amp-fp16 adam", [](TrainingSetup &S) {
         S.Prec = Precision::AmpFp16;
         S.Optimizer = OptimizerKind::Adam;
       }},
      {"bf16 qlora paged all-linear",
       [](TrainingSetup &S) {
         S.Prec = Precision::Bf16;
         S.Optimizer = OptimizerKind::PagedAdamW8bit;
         lora(S, /*QLora=*/true);
         S.Lora->Targets = {"all-linear"};
         S.Lora->Alpha = 12.5;
       }},
      {"galore layer-wise 8-bit",
       [](TrainingSetup &S) {
         S.GradAccum = 1;
         S.Optimizer = OptimizerKind::AdamW8bit;
         galore(S, /*PerLayer=*/true);
       }},
      {"galore adafactor", [](TrainingSetup &S) {
         S.Optimizer = OptimizerKind::Adafactor;
         galore(S, /*PerLayer=*/false);
       }},
      {"sgd", [](TrainingSetup &S) { S.Optimizer = OptimizerKind::Sgd; }},
      {"lion", [](TrainingSetup &S) { S.Optimizer = OptimizerKind::Lion; }},
      {"mixed-bf16 zero-3 offload params",
       [](TrainingSetup &S) {
         S.Prec = Precision::MixedBf16;
         S.Checkpoint = "blocks";
         zero(S, 3, 8, OffloadKind::Params);
       }},
      {"amp-bf16 zero-2", [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         zero(S, 2, 4, OffloadKind::Optimizer);
       }},
      {"amp-bf16 fsdp offload lora",
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Checkpoint = "blocks";
         fsdp(S, 3, 1, OffloadKind::Params);
         lora(S);
       }},
  };
}

/// What trainmem predicts for a setup on tiny-llama (seq 64): the step's peak, what the
/// caching allocator reserves, and the trainable parameters.
std::string predict(TrainingSetup S) {
  ImportOptions O;
  O.Dims = {{"seq", 64}};
  O.MicroBatch = S.MicroBatch.value_or(1);
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json", O);
  if (!G)
    return "import: " + llvm::toString(G.takeError());
  if (llvm::Error E = applyStrategies(*G, S))
    return "strategies: " + llvm::toString(std::move(E));
  auto C = takeCensus(*G, S);
  if (!C)
    return "census: " + llvm::toString(C.takeError());
  auto R = simulateStep(*G, S, *C);
  if (!R)
    return "simulation: " + llvm::toString(R.takeError());
  return "peak=" + std::to_string(R->Peak) +
         " reserved=" + std::to_string(R->PeakReserved.value_or(-1)) +
         " trainable=" + std::to_string(C->TrainableParameters);
}


TEST(ConfigEmittersRoundTrip, HfFilesReadBackIntoTheSameSetup) {
  for (const auto &[Name, Change] : roundTripCases()) {
    TrainingSetup Original = setup(Change);
    Files F = render(ConfigTarget::HfTrainer, Original);
    auto Read = readBack(F);
    ASSERT_TRUE(bool(Read)) << Name << ": " << llvm::toString(Read.takeError());
    EXPECT_EQ(describe(*Read), describe(Original)) << Name;
    if (Original.Impl == OptimizerImpl::Fused) {
      EXPECT_EQ(Read->Impl, OptimizerImpl::Fused) << Name;
    }
  }
}

TEST(ConfigEmittersRoundTrip, ReadBackSetupPredictsTheSameStep) {
  for (const auto &[Name, Change] : roundTripCases()) {
    TrainingSetup Original = setup(Change);
    Files F = render(ConfigTarget::HfTrainer, Original);
    auto Read = readBack(F);
    ASSERT_TRUE(bool(Read)) << Name << ": " << llvm::toString(Read.takeError());
    std::string Expected = predict(Original);
    EXPECT_EQ(Expected.rfind("peak=", 0), 0u) << Name << ": " << Expected;
    EXPECT_EQ(predict(*Read), Expected) << Name;
  }
}

TEST(ConfigEmittersRoundTrip, WithoutTheDeepSpeedFileTheTrainersFlagsDecide) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Prec = Precision::MixedBf16;
                     zero(S, 3, 2);
                   }));
  auto Read = readHfTrainerConfig(F["training_args.json"], "", "");
  ASSERT_TRUE(bool(Read)) << llvm::toString(Read.takeError());
  EXPECT_EQ(Read->Prec, Precision::MixedBf16);
  // Without model_load.json, pure bf16 cannot be told from fp32.
  Files Pure = render(ConfigTarget::HfTrainer,
                      setup([](TrainingSetup &S) { S.Prec = Precision::Bf16; }));
  auto Fp32 = readHfTrainerConfig(Pure["training_args.json"], "", "");
  ASSERT_TRUE(bool(Fp32)) << llvm::toString(Fp32.takeError());
  EXPECT_EQ(Fp32->Prec, Precision::Fp32);
}

TEST(ConfigEmittersRoundTrip, HandWrittenConfigsAndTheirErrors) {
  auto Read = readHfTrainerConfig(
      R"({"output_dir": "out", "optim": "adamw_torch", "bf16": true, "learning_rate": 1e-4,
          "fsdp": ["full_shard", "auto_wrap"], "fsdp_config": {"activation_checkpointing": true}})",
      R"({"r": 4, "target_modules": ["c_attn"]})", "");
  ASSERT_TRUE(bool(Read)) << llvm::toString(Read.takeError());
  EXPECT_EQ(Read->MicroBatch, 8) << "TrainingArguments' default";
  EXPECT_EQ(Read->Optimizer, OptimizerKind::AdamW);
  EXPECT_EQ(Read->Impl, OptimizerImpl::Foreach);
  EXPECT_EQ(Read->Prec, Precision::AmpBf16);
  EXPECT_TRUE(Read->Sharding.Fsdp);
  EXPECT_EQ(Read->Sharding.ZeroStage, 3);
  EXPECT_EQ(Read->Checkpoint, "blocks");
  ASSERT_TRUE(Read->Lora.has_value());
  EXPECT_EQ(Read->Lora->Rank, 4);
  EXPECT_EQ(Read->Lora->Alpha, 8) << "PEFT's default lora_alpha";

  struct Case {
    const char *Args, *Lora, *Bnb, *Expect;
  };
  for (Case C : {
           Case{"[1, 2]", "", "", "expected a JSON object"},
           Case{"{\"optim\": \"rmsprop\"}", "", "", "'rmsprop'"},
           Case{"{\"per_device_train_batch_size\": \"4\"}", "", "",
                "'per_device_train_batch_size': expected a positive integer"},
           Case{"{\"bf16\": true, \"fp16\": true}", "", "", "at most one"},
           Case{"{\"optim\": \"galore_adamw\"}", "", "", "optim_target_modules"},
           Case{"{\"optim\": \"galore_adamw\", \"optim_target_modules\": [\"attn\"], "
                "\"optim_args\": \"rank=-3\"}",
                "", "", "rank as a positive integer"},
           Case{"{\"fsdp\": \"hybrid_shard\"}", "", "", "'hybrid_shard'"},
           Case{"{}", "{\"r\": 8, \"use_dora\": true}", "", "use_dora"},
           Case{"{}", "{\"r\": 8}", "{\"load_in_4bit\": true}", "nf4"},
           Case{"{}", "{\"r\": 8}",
                "{\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\"}",
                "bnb_4bit_use_double_quant"},
           Case{"{}", "",
                "{\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\", "
                "\"bnb_4bit_use_double_quant\": true}",
                "give the LoRA config"},
       }) {
    auto Bad = readHfTrainerConfig(C.Args, C.Lora, C.Bnb);
    ASSERT_FALSE(bool(Bad)) << C.Args << " " << C.Lora << " " << C.Bnb;
    std::string Message = llvm::toString(Bad.takeError());
    EXPECT_NE(Message.find(C.Expect), std::string::npos) << Message;
  }
}

} // namespace
