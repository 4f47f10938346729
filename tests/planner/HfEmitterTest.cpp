//===- HfEmitterTest.cpp - the hf target ------------------------------------------===//
//
// --emit=hf: TrainingArguments, the PEFT and bitsandbytes configs, from_pretrained's
// arguments, and the DeepSpeed or FSDP settings a Trainer run carries.
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
// hf: TrainingArguments, PEFT, bitsandbytes, from_pretrained.

TEST(ConfigEmittersHf, AmpBf16IsTheTrainersBf16FlagOverFp32Weights) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Prec = Precision::AmpBf16;
                     S.Checkpoint = "blocks";
                   }));
  ASSERT_EQ(F.size(), 2u) << "training_args.json and model_load.json only";
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_EQ(boolean(Args, "bf16"), true);
  EXPECT_FALSE(at(Args, "fp16"));
  EXPECT_EQ(integer(Args, "per_device_train_batch_size"), 4);
  EXPECT_EQ(integer(Args, "gradient_accumulation_steps"), 8);
  EXPECT_EQ(boolean(Args, "gradient_checkpointing"), true);
  EXPECT_EQ(str(Args, "optim"), "adamw_torch");
  EXPECT_FALSE(at(Args, "deepspeed"));
  llvm::json::Object Load = parseJson(F["model_load.json"]);
  EXPECT_EQ(str(Load, "torch_dtype"), "float32");
  EXPECT_EQ(str(Load, "pretrained_model_name_or_path"), "meta-llama/Llama-2-7b-hf");
}

TEST(ConfigEmittersHf, UseCacheGoesToFromPretrainedWhenTheSetupDecides) {
  // from_pretrained passes use_cache on to the model's config, which the forward reads
  // (Trainer passes none); left to the config (auto), nothing is written.
  Files Auto = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &) {}));
  EXPECT_FALSE(at(parseJson(Auto["model_load.json"]), "use_cache"));
  Files Off = render(ConfigTarget::HfTrainer,
                     setup([](TrainingSetup &S) { S.KvCache = KvCacheMode::Off; }));
  EXPECT_EQ(boolean(parseJson(Off["model_load.json"]), "use_cache"), false);
}

TEST(ConfigEmittersHf, AQuantizedCheckpointIsLoadedDequantized) {
  // gpt-oss's MXFP4 experts (and DeepSeek-V3's FP8 weights) are predicted dequantized, as
  // training loads them: from_pretrained gets Mxfp4Config(dequantize=True) as a dict. A
  // QLoRA plan's own bitsandbytes config replaces it.
  EmitContext Ctx = llama7b();
  Ctx.CheckpointQuantization = "mxfp4";
  Files F = render(ConfigTarget::HfTrainer,
                   setup([](TrainingSetup &S) { S.Prec = Precision::Bf16; }), Ctx);
  llvm::json::Object Load = parseJson(F["model_load.json"]);
  const llvm::json::Object *Q = Load.getObject("quantization_config");
  ASSERT_NE(Q, nullptr);
  EXPECT_EQ(Q->getString("quant_method"), llvm::StringRef("mxfp4"));
  EXPECT_EQ(Q->getBoolean("dequantize"), true);
  Files Plain = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &) {}));
  EXPECT_FALSE(at(parseJson(Plain["model_load.json"]), "quantization_config"));
  Files QLora = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                         S.Lora = LoraSetup{};
                         S.Lora->QLora = true;
                         S.Prec = Precision::AmpBf16;
                       }),
                       Ctx);
  EXPECT_FALSE(at(parseJson(QLora["model_load.json"]), "quantization_config"));
}

TEST(ConfigEmittersHf, AClassifierTrainsItsHeadUnderPeftsTaskType) {
  // A sequence classifier's plan trains its head beside the adapters, as PEFT's SEQ_CLS
  // does (modules_to_save); --lora-modules-to-save=none keeps it frozen, which only the
  // family's task type does; a list of one's own is written out.
  EmitContext Ctx = llama7b();
  Ctx.PeftTaskType = "SEQ_CLS";
  auto Lora = [&](std::optional<std::vector<std::string>> Saved) {
    Files F = render(ConfigTarget::HfTrainer, setup([&](TrainingSetup &S) {
                       S.Lora = LoraSetup{};
                       S.Lora->ModulesToSave = Saved;
                     }),
                     Ctx);
    return parseJson(F["lora_config.json"]);
  };
  llvm::json::Object Default = Lora(std::nullopt);
  EXPECT_EQ(str(Default, "task_type"), "SEQ_CLS");
  EXPECT_FALSE(at(Default, "modules_to_save"));
  EXPECT_EQ(str(Lora(std::vector<std::string>{}), "task_type"), "CAUSAL_LM");
  llvm::json::Object Own = Lora(std::vector<std::string>{"embed_tokens"});
  EXPECT_EQ(str(Own, "task_type"), "SEQ_CLS");
  EXPECT_EQ(strings(Own, "modules_to_save"), (std::vector<std::string>{"embed_tokens"}));
  // A question-answering head with all-linear: PEFT would adapt qa_outputs and then refuse
  // to wrap it (measured, peft 0.21), so the config excludes it; not with named targets,
  // nor with the head frozen.
  Ctx.PeftTaskType = "QUESTION_ANS";
  Ctx.PeftExcludeModules = {"qa_outputs"};
  auto AllLinear = [&](std::optional<std::vector<std::string>> Saved,
                       std::vector<std::string> Targets) {
    Files F = render(ConfigTarget::HfTrainer, setup([&](TrainingSetup &S) {
                       S.Lora = LoraSetup{};
                       S.Lora->Targets = Targets;
                       S.Lora->ModulesToSave = Saved;
                     }),
                     Ctx);
    return parseJson(F["lora_config.json"]);
  };
  llvm::json::Object Qa = AllLinear(std::nullopt, {"all-linear"});
  EXPECT_EQ(str(Qa, "task_type"), "QUESTION_ANS");
  EXPECT_EQ(strings(Qa, "exclude_modules"), (std::vector<std::string>{"qa_outputs"}));
  EXPECT_FALSE(at(AllLinear(std::nullopt, {"q_proj", "v_proj"}), "exclude_modules"));
  EXPECT_FALSE(at(AllLinear(std::vector<std::string>{}, {"all-linear"}), "exclude_modules"));
}

TEST(ConfigEmittersHf, PureBf16LoadsBf16WeightsWithoutAutocast) {
  Files F = render(ConfigTarget::HfTrainer,
                   setup([](TrainingSetup &S) { S.Prec = Precision::Bf16; }));
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_FALSE(at(Args, "bf16"));
  EXPECT_FALSE(at(Args, "fp16"));
  EXPECT_EQ(str(parseJson(F["model_load.json"]), "torch_dtype"), "bfloat16");
}

TEST(ConfigEmittersHf, OptimizerNames) {
  struct Case {
    OptimizerKind Kind;
    OptimizerImpl Impl;
    const char *Optim;
  };
  for (Case C : {Case{OptimizerKind::AdamW, OptimizerImpl::Foreach, "adamw_torch"},
                 Case{OptimizerKind::AdamW, OptimizerImpl::Fused, "adamw_torch_fused"},
                 Case{OptimizerKind::Adam, OptimizerImpl::Foreach, "adamw_torch"},
                 Case{OptimizerKind::AdamW8bit, OptimizerImpl::ForLoop, "adamw_bnb_8bit"},
                 Case{OptimizerKind::PagedAdamW8bit, OptimizerImpl::ForLoop, "paged_adamw_8bit"},
                 Case{OptimizerKind::Adafactor, OptimizerImpl::ForLoop, "adafactor"},
                 Case{OptimizerKind::Sgd, OptimizerImpl::ForLoop, "sgd"},
                 Case{OptimizerKind::Lion, OptimizerImpl::ForLoop, "lion_32bit"}}) {
    Files F = render(ConfigTarget::HfTrainer, setup([&](TrainingSetup &S) {
                       S.Optimizer = C.Kind;
                       S.Impl = C.Impl;
                     }));
    llvm::json::Object Args = parseJson(F["training_args.json"]);
    EXPECT_EQ(str(Args, "optim"), C.Optim) << optimizerName(C.Kind);
  }
  // Adam is AdamW without decay; TrainingArguments' weight_decay tells them apart.
  auto Decay = [](OptimizerKind K) {
    Files F = render(ConfigTarget::HfTrainer, setup([&](TrainingSetup &S) { S.Optimizer = K; }));
    llvm::json::Object Args = parseJson(F["training_args.json"]);
    const llvm::json::Value *V = at(Args, "weight_decay");
    return V ? V->getAsNumber().value_or(-1) : -1.0;
  };
  EXPECT_EQ(Decay(OptimizerKind::AdamW), 0.01);
  EXPECT_EQ(Decay(OptimizerKind::Adam), 0.0);
  std::string Message = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                      S.Optimizer = OptimizerKind::SgdMomentum;
                                    }));
  EXPECT_NE(Message.find("sgd-momentum"), std::string::npos) << Message;
  // torchao's FP8 AdamW has no TrainingArguments name nor DeepSpeed type; torchtune
  // instantiates it by its import path.
  auto Fp8 = [](TrainingSetup &S) { S.Optimizer = OptimizerKind::AdamWFp8; };
  for (ConfigTarget T : {ConfigTarget::HfTrainer, ConfigTarget::DeepSpeed}) {
    std::string Refusal = renderError(T, setup(Fp8));
    EXPECT_NE(Refusal.find("adamw-fp8"), std::string::npos) << Refusal;
  }
  Files Tune = render(ConfigTarget::Torchtune, setup(Fp8));
  ASSERT_EQ(Tune.size(), 1u);
  EXPECT_NE(Tune.begin()->second.find("_component_: torchao.optim.AdamWFp8"), std::string::npos)
      << Tune.begin()->second;
}

TEST(ConfigEmittersHf, GaloreLayerWise8BitIsGaloreAdamw8bitLayerwise) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.GradAccum = 1;
                     S.Optimizer = OptimizerKind::AdamW8bit;
                     galore(S, /*PerLayer=*/true);
                   }));
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_EQ(str(Args, "optim"), "galore_adamw_8bit_layerwise");
  EXPECT_EQ(strings(Args, "optim_target_modules"), (std::vector<std::string>{"attn", "mlp"}));
  EXPECT_EQ(str(Args, "optim_args"), "rank=64, update_proj_gap=100, scale=0.25");

  Files Plain = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                         galore(S, /*PerLayer=*/false);
                       }));
  EXPECT_EQ(str(parseJson(Plain["training_args.json"]), "optim"), "galore_adamw");
}

TEST(ConfigEmittersHf, GaloreRefusalsNameTheCause) {
  // transformers' layer-wise GaLore raises on gradient accumulation.
  std::string Accum = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                    galore(S, /*PerLayer=*/true);
                                  }));
  EXPECT_NE(Accum.find("gradient accumulation"), std::string::npos) << Accum;
  std::string Lion = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                   S.Optimizer = OptimizerKind::Lion;
                                   galore(S, /*PerLayer=*/false);
                                 }));
  EXPECT_NE(Lion.find("--optimizer=lion"), std::string::npos) << Lion;
  std::string Zero = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                   galore(S, /*PerLayer=*/false);
                                   zero(S, 2, 2);
                                 }));
  EXPECT_NE(Zero.find("GaLore"), std::string::npos) << Zero;
}

TEST(ConfigEmittersHf, QloraIsNf4DoubleQuantWithPeftAdapters) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Prec = Precision::AmpBf16;
                     S.Optimizer = OptimizerKind::PagedAdamW8bit;
                     lora(S, /*QLora=*/true);
                   }));
  ASSERT_TRUE(F.count("bnb_config.json"));
  llvm::json::Object Bnb = parseJson(F["bnb_config.json"]);
  EXPECT_EQ(boolean(Bnb, "load_in_4bit"), true);
  EXPECT_EQ(str(Bnb, "bnb_4bit_quant_type"), "nf4");
  EXPECT_EQ(boolean(Bnb, "bnb_4bit_use_double_quant"), true);
  EXPECT_EQ(str(Bnb, "bnb_4bit_compute_dtype"), "bfloat16");
  EXPECT_FALSE(at(Bnb, "bnb_4bit_quant_storage")) << "only sharded 4-bit weights need it";

  ASSERT_TRUE(F.count("lora_config.json"));
  llvm::json::Object Lora = parseJson(F["lora_config.json"]);
  EXPECT_EQ(integer(Lora, "r"), 16);
  EXPECT_EQ(integer(Lora, "lora_alpha"), 32);
  EXPECT_EQ(at(Lora, "lora_dropout")->getAsNumber(), 0.05);
  EXPECT_EQ(strings(Lora, "target_modules"), (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(str(Lora, "task_type"), "CAUSAL_LM");
  EXPECT_EQ(str(Lora, "bias"), "none");
  // Numbers are written as people write them, not with 17 digits.
  EXPECT_NE(F["lora_config.json"].find("\"lora_dropout\": 0.05,"), std::string::npos)
      << F["lora_config.json"];
}

TEST(ConfigEmittersHf, LoraTargetsDefaultAndAllLinear) {
  Files Default = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                           S.Lora = LoraSetup{};
                         }));
  llvm::json::Object DefaultLora = parseJson(Default["lora_config.json"]);
  const llvm::json::Value *Targets = at(DefaultLora, "target_modules");
  ASSERT_TRUE(Targets);
  EXPECT_EQ(Targets->kind(), llvm::json::Value::Null) << "PEFT's per-architecture default";
  Files All = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                       S.Lora = LoraSetup{};
                       S.Lora->Targets = {"all-linear"};
                     }));
  EXPECT_EQ(str(parseJson(All["lora_config.json"]), "target_modules"), "all-linear");
}

TEST(ConfigEmittersHf, Zero3WithOffloadGoesThroughDeepSpeedWithAutoValues) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Prec = Precision::MixedBf16;
                     S.Checkpoint = "blocks";
                     zero(S, 3, 8, OffloadKind::Optimizer);
                   }));
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_EQ(str(Args, "deepspeed"), "ds_config.json");
  EXPECT_EQ(boolean(Args, "bf16"), true) << "DeepSpeed's bf16 mode: mixed-bf16";
  EXPECT_EQ(boolean(Args, "gradient_checkpointing"), true);
  ASSERT_TRUE(F.count("ds_config.json"));
  llvm::json::Object Ds = parseJson(F["ds_config.json"]);
  EXPECT_EQ(integer(Ds, "zero_optimization.stage"), 3);
  EXPECT_EQ(str(Ds, "zero_optimization.offload_optimizer.device"), "cpu");
  EXPECT_FALSE(at(Ds, "zero_optimization.offload_param"));
  EXPECT_EQ(boolean(Ds, "bf16.enabled"), true);
  EXPECT_EQ(integer(Ds, "train_batch_size"), 4 * 8 * 8);
  // The Trainer fills optimizer hyper-parameters from TrainingArguments.
  EXPECT_EQ(str(Ds, "optimizer.type"), "AdamW");
  EXPECT_EQ(str(Ds, "optimizer.params.lr"), "auto");
  EXPECT_EQ(str(Ds, "gradient_clipping"), "auto");
  EXPECT_FALSE(at(Ds, "activation_checkpointing")) << "the Trainer's flag checkpoints";
}

TEST(ConfigEmittersHf, MixedPrecisionWithoutZeroIsDeepSpeedStage0) {
  Files F = render(ConfigTarget::HfTrainer,
                   setup([](TrainingSetup &S) { S.Prec = Precision::MixedFp16; }));
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_EQ(boolean(Args, "fp16"), true);
  EXPECT_EQ(str(Args, "deepspeed"), "ds_config.json");
  llvm::json::Object Ds = parseJson(F["ds_config.json"]);
  EXPECT_EQ(integer(Ds, "zero_optimization.stage"), 0);
  EXPECT_EQ(boolean(Ds, "fp16.enabled"), true);
}

TEST(ConfigEmittersHf, AmpUnderDeepSpeedIsTorchAutocastNotTheTrainersFlag) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Prec = Precision::AmpBf16;
                     zero(S, 2, 4);
                   }));
  EXPECT_FALSE(at(parseJson(F["training_args.json"]), "bf16"))
      << "the Trainer's bf16 would switch DeepSpeed's mixed mode on";
  llvm::json::Object Ds = parseJson(F["ds_config.json"]);
  EXPECT_EQ(boolean(Ds, "torch_autocast.enabled"), true);
  EXPECT_EQ(str(Ds, "torch_autocast.dtype"), "bfloat16");
  EXPECT_FALSE(at(Ds, "bf16"));
}

TEST(ConfigEmittersHf, FsdpInTrainingArguments) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Prec = Precision::AmpBf16;
                     S.Checkpoint = "blocks";
                     fsdp(S, 3, 4, OffloadKind::Params);
                     lora(S, /*QLora=*/true);
                   }));
  llvm::json::Object Args = parseJson(F["training_args.json"]);
  EXPECT_EQ(str(Args, "fsdp"), "full_shard offload auto_wrap");
  EXPECT_EQ(boolean(Args, "fsdp_config.activation_checkpointing"), true);
  EXPECT_EQ(boolean(Args, "fsdp_config.use_orig_params"), true);
  EXPECT_FALSE(at(Args, "gradient_checkpointing"))
      << "the Trainer refuses both checkpointing flags";
  EXPECT_FALSE(at(Args, "deepspeed"));
  EXPECT_EQ(str(parseJson(F["bnb_config.json"]), "bnb_4bit_quant_storage"), "bfloat16");

  Files Grad = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) { fsdp(S, 2, 2); }));
  EXPECT_EQ(str(parseJson(Grad["training_args.json"]), "fsdp"), "shard_grad_op auto_wrap");
}

TEST(ConfigEmittersHf, CpuRunsUseCpu) {
  Files F = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                     S.Device = DeviceKind::Cpu;
                     S.Impl = OptimizerImpl::ForLoop;
                   }));
  EXPECT_EQ(boolean(parseJson(F["training_args.json"]), "use_cpu"), true);
}

TEST(ConfigEmittersHf, AdamwTorchRunsTheDevicesDefaultImplementation) {
  // optim=adamw_torch is torch.optim.AdamW without foreach/fused: foreach for CUDA
  // tensors, the single-tensor loop for CPU ones. Asking for the other is refused.
  std::string Cuda = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                   S.Impl = OptimizerImpl::ForLoop;
                                 }));
  EXPECT_NE(Cuda.find("--optimizer-impl=for-loop: optim=adamw_torch runs torch.optim's "
                      "foreach implementation on cuda"),
            std::string::npos)
      << Cuda;
  std::string Cpu = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                  S.Device = DeviceKind::Cpu;
                                }));
  EXPECT_NE(Cpu.find("runs torch.optim's for-loop implementation on cpu"), std::string::npos)
      << Cpu;
}

TEST(ConfigEmittersHf, MicroBatchComesFromTheSetupOrTheContext) {
  TrainingSetup S = setup();
  S.MicroBatch.reset();
  EmitContext Ctx = llama7b();
  Ctx.MicroBatch = 3;
  Files F = render(ConfigTarget::HfTrainer, S, Ctx);
  EXPECT_EQ(integer(parseJson(F["training_args.json"]), "per_device_train_batch_size"), 3);
  S.MicroBatch = 0;
  EXPECT_NE(renderError(ConfigTarget::HfTrainer, S, Ctx).find("micro-batch 0"),
            std::string::npos);
}

} // namespace
