//===- TorchtuneEmitterTest.cpp - the torchtune target ----------------------------===//
//
// --emit=torchtune: recipe configs for LoRA, QLoRA and full fine-tuning on one device or
// sharded with FSDP, and errors for what torchtune cannot run.
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"

#include "EmitterTestSupport.h"

#include <gtest/gtest.h>

using namespace trainmem;
using namespace trainmem::emittest;

namespace {

// ---------------------------------------------------------------------------------
// torchtune.

TEST(ConfigEmittersTorchtune, LoraSingleDevice) {
  Files F = render(ConfigTarget::Torchtune, setup([](TrainingSetup &S) {
                     S.Prec = Precision::Bf16;
                     S.Checkpoint = "blocks";
                     S.Impl = OptimizerImpl::Fused;
                     lora(S);
                   }));
  ASSERT_TRUE(F.count("recipe.yaml"));
  const std::string &Text = F["recipe.yaml"];
  EXPECT_NE(Text.find("tune run lora_finetune_single_device"), std::string::npos) << Text;
  std::map<std::string, std::string> Y = yamlMap(Text);
  EXPECT_EQ(Y["model._component_"], "torchtune.models.llama2.lora_llama2_7b");
  EXPECT_EQ(Y["model.lora_attn_modules"], "['q_proj', 'v_proj']");
  EXPECT_EQ(Y["model.apply_lora_to_mlp"], "false");
  EXPECT_EQ(Y["model.lora_rank"], "16");
  EXPECT_EQ(Y["model.lora_alpha"], "32.0");
  EXPECT_EQ(Y["model.lora_dropout"], "0.05");
  EXPECT_EQ(Y["batch_size"], "4");
  EXPECT_EQ(Y["gradient_accumulation_steps"], "8");
  EXPECT_EQ(Y["enable_activation_checkpointing"], "true");
  EXPECT_EQ(Y["dtype"], "bf16");
  EXPECT_EQ(Y["optimizer._component_"], "torch.optim.AdamW");
  EXPECT_EQ(Y["optimizer.fused"], "true");
  EXPECT_EQ(Y["optimizer.lr"], "0.0003") << "YAML 1.1 reads 3e-4 as a string";
  EXPECT_FALSE(Y.count("fsdp_cpu_offload"));
}

TEST(ConfigEmittersTorchtune, QloraFullAndDistributed) {
  Files Q = render(ConfigTarget::Torchtune, setup([](TrainingSetup &S) {
                     S.Prec = Precision::Bf16;
                     lora(S, /*QLora=*/true);
                     S.Lora->Targets = {"all-linear"};
                   }));
  std::map<std::string, std::string> Y = yamlMap(Q["recipe.yaml"]);
  EXPECT_EQ(Y["model._component_"], "torchtune.models.llama2.qlora_llama2_7b");
  EXPECT_EQ(Y["model.lora_attn_modules"], "['q_proj', 'k_proj', 'v_proj', 'output_proj']");
  EXPECT_EQ(Y["model.apply_lora_to_mlp"], "true");

  EmitContext Llama31 = llama7b();
  Llama31.ModelName = "meta-llama/Meta-Llama-3.1-8B-Instruct";
  Files Full = render(ConfigTarget::Torchtune, setup([](TrainingSetup &S) {
                        S.Prec = Precision::Bf16;
                        S.Optimizer = OptimizerKind::PagedAdamW8bit;
                      }),
                      Llama31);
  Y = yamlMap(Full["recipe.yaml"]);
  EXPECT_EQ(Y["model._component_"], "torchtune.models.llama3_1.llama3_1_8b");
  EXPECT_EQ(Y["optimizer._component_"], "bitsandbytes.optim.PagedAdamW8bit");
  EXPECT_EQ(Y["optimizer_in_bwd"], "false");
  EXPECT_FALSE(Y.count("optimizer.fused")) << "bitsandbytes optimizers take no fused flag";

  Files Dist = render(ConfigTarget::Torchtune, setup([](TrainingSetup &S) {
                        S.Prec = Precision::Bf16;
                        fsdp(S, 3, 4, OffloadKind::Params);
                        lora(S);
                      }));
  EXPECT_NE(Dist["recipe.yaml"].find("tune run --nproc_per_node 4 lora_finetune_distributed"),
            std::string::npos)
      << Dist["recipe.yaml"];
  Y = yamlMap(Dist["recipe.yaml"]);
  EXPECT_EQ(Y["fsdp_cpu_offload"], "true");
  EXPECT_EQ(Y["fsdp_reshard_after_forward"], "true");
}

TEST(ConfigEmittersTorchtune, RefusesWhatTorchtuneCannotRun) {
  EmitContext NoArch = llama7b();
  NoArch.Architecture = "";
  std::string Unknown = renderError(ConfigTarget::Torchtune, setup(), NoArch);
  EXPECT_NE(Unknown.find("torchtune needs a known architecture"), std::string::npos) << Unknown;

  EmitContext Gpt2 = llama7b();
  Gpt2.Architecture = "gpt2";
  Gpt2.ModelName = "gpt2";
  std::string NoBuilder = renderError(ConfigTarget::Torchtune, setup(), Gpt2);
  EXPECT_NE(NoBuilder.find("'gpt2'"), std::string::npos) << NoBuilder;

  EmitContext NoSize = llama7b();
  NoSize.ModelName = "/models/my-llama";
  std::string Size = renderError(ConfigTarget::Torchtune, setup(), NoSize);
  EXPECT_NE(Size.find("'/models/my-llama'"), std::string::npos) << Size;

  struct Case {
    const char *Expect;
    Edit Change;
  };
  const std::vector<Case> Cases = {
      {"--precision=amp-bf16", [](TrainingSetup &S) { S.Prec = Precision::AmpBf16; }},
      {"GaLore", [](TrainingSetup &S) { galore(S, false); }},
      {"ZeRO", [](TrainingSetup &S) { zero(S, 2, 2); }},
      {"--gpus=2", [](TrainingSetup &S) { S.Sharding.Gpus = 2; }},
      {"adafactor", [](TrainingSetup &S) { S.Optimizer = OptimizerKind::Adafactor; }},
      {"down_proj only",
       [](TrainingSetup &S) {
         lora(S);
         S.Lora->Targets = {"q_proj", "down_proj"};
       }},
      {"'wq'",
       [](TrainingSetup &S) {
         lora(S);
         S.Lora->Targets = {"wq"};
       }},
  };
  for (const Case &C : Cases) {
    std::string Message = renderError(ConfigTarget::Torchtune, setup(C.Change));
    EXPECT_NE(Message.find(C.Expect), std::string::npos) << Message;
  }
}

} // namespace
