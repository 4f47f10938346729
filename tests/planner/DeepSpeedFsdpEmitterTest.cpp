//===- DeepSpeedFsdpEmitterTest.cpp - the deepspeed and accelerate-fsdp targets ----===//
//
// --emit=deepspeed (a standalone DeepSpeed config) and --emit=accelerate-fsdp (the
// launcher's FSDP plugin beside the Trainer's files): the values each engine needs, and
// errors for what it cannot run.
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"

#include "EmitterTestSupport.h"

#include "llvm/Support/JSON.h"

#include <gtest/gtest.h>

using namespace trainmem;
using namespace trainmem::emittest;

namespace {

// ---------------------------------------------------------------------------------
// deepspeed.

TEST(ConfigEmittersDeepSpeed, Zero3OffloadOptimizerStandalone) {
  Files F = render(ConfigTarget::DeepSpeed, setup([](TrainingSetup &S) {
                     S.Prec = Precision::MixedBf16;
                     S.Checkpoint = "blocks";
                     zero(S, 3, 2, OffloadKind::Optimizer);
                   }));
  ASSERT_TRUE(F.count("ds_config.json"));
  EXPECT_FALSE(F.count("training_args.json"));
  llvm::json::Object Ds = parseJson(F["ds_config.json"]);
  EXPECT_EQ(integer(Ds, "zero_optimization.stage"), 3);
  EXPECT_EQ(str(Ds, "zero_optimization.offload_optimizer.device"), "cpu");
  EXPECT_EQ(boolean(Ds, "zero_optimization.offload_optimizer.pin_memory"), true);
  EXPECT_EQ(boolean(Ds, "zero_optimization.overlap_comm"), true);
  EXPECT_EQ(integer(Ds, "zero_optimization.reduce_bucket_size"), 500000000)
      << "the bucket the simulation assumes";
  EXPECT_EQ(integer(Ds, "zero_optimization.stage3_prefetch_bucket_size"), 50000000);
  EXPECT_EQ(integer(Ds, "train_micro_batch_size_per_gpu"), 4);
  EXPECT_EQ(integer(Ds, "gradient_accumulation_steps"), 8);
  EXPECT_EQ(integer(Ds, "train_batch_size"), 4 * 8 * 2);
  EXPECT_EQ(boolean(Ds, "bf16.enabled"), true);
  EXPECT_EQ(str(Ds, "optimizer.type"), "AdamW");
  ASSERT_TRUE(at(Ds, "optimizer.params.lr"));
  EXPECT_EQ(at(Ds, "optimizer.params.lr")->getAsNumber(), 2e-5);
  EXPECT_EQ(at(Ds, "optimizer.params.weight_decay")->getAsNumber(), 0.01);
  EXPECT_EQ(boolean(Ds, "activation_checkpointing.partition_activations"), false);
}

TEST(ConfigEmittersDeepSpeed, StagesPrecisionsAndOptimizers) {
  Files Z2 = render(ConfigTarget::DeepSpeed, setup([](TrainingSetup &S) {
                      S.Prec = Precision::AmpFp16;
                      S.Optimizer = OptimizerKind::Adam;
                      zero(S, 2, 4);
                    }));
  llvm::json::Object Ds = parseJson(Z2["ds_config.json"]);
  EXPECT_EQ(integer(Ds, "zero_optimization.stage"), 2);
  EXPECT_EQ(boolean(Ds, "zero_optimization.overlap_comm"), false);
  EXPECT_FALSE(at(Ds, "zero_optimization.offload_optimizer"));
  EXPECT_EQ(str(Ds, "torch_autocast.dtype"), "float16");
  EXPECT_EQ(str(Ds, "optimizer.type"), "Adam");
  EXPECT_EQ(boolean(Ds, "optimizer.params.adam_w_mode"), false)
      << "DeepSpeed's Adam is AdamW unless told";

  Files Params = render(ConfigTarget::DeepSpeed, setup([](TrainingSetup &S) {
                          zero(S, 3, 4, OffloadKind::Params);
                        }));
  llvm::json::Object P = parseJson(Params["ds_config.json"]);
  EXPECT_EQ(str(P, "zero_optimization.offload_param.device"), "cpu");
  EXPECT_EQ(str(P, "zero_optimization.offload_optimizer.device"), "cpu");
  EXPECT_FALSE(at(P, "bf16"));
  EXPECT_FALSE(at(P, "torch_autocast"));

  Files Lora = render(ConfigTarget::DeepSpeed, setup([](TrainingSetup &S) {
                        zero(S, 2, 2);
                        lora(S, /*QLora=*/true);
                        S.Prec = Precision::MixedBf16;
                      }));
  EXPECT_TRUE(Lora.count("lora_config.json"));
  EXPECT_TRUE(Lora.count("bnb_config.json"));
  EXPECT_EQ(at(parseJson(Lora["ds_config.json"]), "optimizer.params.lr")->getAsNumber(), 3e-4);
}

TEST(ConfigEmittersDeepSpeed, RefusesWhatDeepSpeedCannotRun) {
  struct Case {
    const char *Expect;
    Edit Change;
  };
  const std::vector<Case> Cases = {
      {"GaLore", [](TrainingSetup &S) { galore(S, false); }},
      {"--fsdp", [](TrainingSetup &S) { fsdp(S, 3, 2); }},
      {"pure bf16", [](TrainingSetup &S) { S.Prec = Precision::Bf16; }},
      {"--optimizer=paged-adamw-8bit",
       [](TrainingSetup &S) { S.Optimizer = OptimizerKind::PagedAdamW8bit; }},
      {"not SGD",
       [](TrainingSetup &S) {
         S.Optimizer = OptimizerKind::Sgd;
         zero(S, 2, 2, OffloadKind::Optimizer);
       }},
      {"--offload=params needs ZeRO-3",
       [](TrainingSetup &S) { zero(S, 2, 2, OffloadKind::Params); }},
      {"--device=cpu", [](TrainingSetup &S) { S.Device = DeviceKind::Cpu; }},
  };
  for (const Case &C : Cases) {
    std::string Message = renderError(ConfigTarget::DeepSpeed, setup(C.Change));
    EXPECT_NE(Message.find(C.Expect), std::string::npos) << Message;
  }
}

// ---------------------------------------------------------------------------------
// accelerate-fsdp.

TEST(ConfigEmittersAccelerate, FullShardLauncherConfigAndTrainerFiles) {
  Files F = render(ConfigTarget::AccelerateFsdp, setup([](TrainingSetup &S) {
                     S.Prec = Precision::AmpBf16;
                     S.Checkpoint = "blocks";
                     fsdp(S, 3, 4, OffloadKind::Params);
                     lora(S);
                   }));
  ASSERT_TRUE(F.count("accelerate_config.yaml"));
  std::map<std::string, std::string> Y = yamlMap(F["accelerate_config.yaml"]);
  EXPECT_EQ(Y["distributed_type"], "FSDP");
  EXPECT_EQ(Y["num_processes"], "4");
  EXPECT_EQ(Y["mixed_precision"], "bf16");
  EXPECT_EQ(Y["fsdp_config.fsdp_sharding_strategy"], "FULL_SHARD");
  EXPECT_EQ(Y["fsdp_config.fsdp_offload_params"], "true");
  EXPECT_EQ(Y["fsdp_config.fsdp_activation_checkpointing"], "true");
  EXPECT_EQ(Y["fsdp_config.fsdp_auto_wrap_policy"], "TRANSFORMER_BASED_WRAP");
  EXPECT_EQ(Y["fsdp_config.fsdp_backward_prefetch"], "NO_PREFETCH");
  EXPECT_EQ(Y["fsdp_config.fsdp_use_orig_params"], "true");
  // Batch, accumulation and optimizer live in TrainingArguments; FSDP and its
  // checkpointing come from the launcher.
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_EQ(integer(Args, "per_device_train_batch_size"), 4);
  EXPECT_EQ(integer(Args, "gradient_accumulation_steps"), 8);
  EXPECT_EQ(boolean(Args, "bf16"), true);
  EXPECT_FALSE(at(Args, "fsdp"));
  EXPECT_FALSE(at(Args, "fsdp_config"));
  EXPECT_FALSE(at(Args, "gradient_checkpointing"));
  EXPECT_TRUE(F.count("lora_config.json"));
}

TEST(ConfigEmittersAccelerate, ShardGradOpAndQuotedNo) {
  Files F = render(ConfigTarget::AccelerateFsdp, setup([](TrainingSetup &S) { fsdp(S, 2, 8); }));
  std::map<std::string, std::string> Y = yamlMap(F["accelerate_config.yaml"]);
  EXPECT_EQ(Y["fsdp_config.fsdp_sharding_strategy"], "SHARD_GRAD_OP");
  EXPECT_EQ(Y["num_processes"], "8");
  // Unquoted, YAML 1.1 reads `no` as false, which accelerate rejects.
  EXPECT_EQ(Y["mixed_precision"], "'no'");
  EXPECT_EQ(Y["fsdp_config.fsdp_activation_checkpointing"], "false");
}

TEST(ConfigEmittersAccelerate, RefusesWhatFsdpCannotRun) {
  struct Case {
    const char *Expect;
    Edit Change;
  };
  const std::vector<Case> Cases = {
      {"--fsdp", [](TrainingSetup &S) { zero(S, 3, 4); }},
      {"--offload=params",
       [](TrainingSetup &S) { fsdp(S, 3, 4, OffloadKind::Optimizer); }},
      {"amp-bf16",
       [](TrainingSetup &S) {
         S.Prec = Precision::MixedBf16;
         fsdp(S, 3, 4);
       }},
      {"GaLore",
       [](TrainingSetup &S) {
         galore(S, false);
         fsdp(S, 3, 4);
       }},
  };
  for (const Case &C : Cases) {
    std::string Message = renderError(ConfigTarget::AccelerateFsdp, setup(C.Change));
    EXPECT_NE(Message.find(C.Expect), std::string::npos) << Message;
  }
}

} // namespace
