//===- HfEmitters.cpp - Hugging Face Trainer, DeepSpeed and accelerate FSDP -------===//
//
// The emitters that run on the Hugging Face stack: TrainingArguments with the PEFT,
// bitsandbytes and from_pretrained files beside it, DeepSpeed configs (standalone or
// under the Trainer), and accelerate's FSDP launcher config, which relies on the
// Trainer's files for what a launcher config cannot hold.
//
//===----------------------------------------------------------------------------===//
#include "planner/EmitterSupport.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/Twine.h"

#include <string>
#include <utility>

namespace trainmem::emit {

namespace {

// DeepSpeed's documented defaults, which the step simulation assumes: one contiguous
// reduction bucket of reduce_bucket_size elements (StepSimulator's "ZeRO reduction
// bucket"). https://www.deepspeed.ai/docs/config-json/#zero-optimizations-for-fp16-training
constexpr int64_t DsReduceBucketSize = 500000000;
constexpr int64_t DsAllgatherBucketSize = 500000000;
constexpr int64_t DsStage3PrefetchBucketSize = 50000000;
constexpr int64_t DsStage3ParamPersistenceThreshold = 100000;
constexpr int64_t DsStage3MaxLiveParameters = 1000000000;
constexpr int64_t DsStage3MaxReuseDistance = 1000000000;

// GaLore's scale as transformers and galore-torch default it (trainer.py,
// galore_optim_kwargs); it does not change memory, so the setup does not carry it.
constexpr double GaloreScale = 0.25;

llvm::json::Array stringArray(const std::vector<std::string> &Items) {
  llvm::json::Array A;
  for (const std::string &S : Items)
    A.push_back(S);
  return A;
}

bool shardsParameters(const ShardingSetup &Sh) { return Sh.ZeroStage >= 3; }

} // namespace

//===----------------------------------------------------------------------------===//
// Hugging Face: PEFT, bitsandbytes and from_pretrained.
//===----------------------------------------------------------------------------===//

namespace {

/// PEFT's task type by the model family: only the model class PEFT wraps depends on it.
const char *peftTaskType(llvm::StringRef Architecture) {
  static const char *const Seq2Seq[] = {"t5", "mt5", "bart", "mbart", "pegasus", "marian"};
  static const char *const Encoders[] = {"bert",       "roberta", "deberta",     "deberta-v2",
                                         "distilbert", "electra", "xlm-roberta", "albert"};
  if (llvm::is_contained(Seq2Seq, Architecture))
    return "SEQ_2_SEQ_LM";
  if (llvm::is_contained(Encoders, Architecture))
    return "FEATURE_EXTRACTION";
  return "CAUSAL_LM";
}

llvm::json::Value numberValue(double D) {
  if (D == static_cast<double>(static_cast<int64_t>(D)))
    return static_cast<int64_t>(D);
  return D;
}

} // namespace

/// peft.LoraConfig (peft 0.13, src/peft/tuners/lora/config.py): r, lora_alpha,
/// target_modules (a list matched against the end of module names, "all-linear", or
/// null for the architecture's default), lora_dropout, bias.
llvm::json::Object loraConfig(const LoraSetup &L, const EmitContext &Ctx) {
  // A classification head's task type (SEQ_CLS, TOKEN_CLS, QUESTION_ANS) trains the head too
  // (modules_to_save); --lora-modules-to-save=none keeps it frozen: the family's type.
  const bool HeadFrozen = L.ModulesToSave && L.ModulesToSave->empty();
  llvm::json::Object O{{"peft_type", "LORA"},
                       {"task_type", Ctx.PeftTaskType.empty() || HeadFrozen
                                         ? std::string(peftTaskType(Ctx.Architecture))
                                         : Ctx.PeftTaskType},
                       {"r", L.Rank},
                       {"lora_alpha", numberValue(L.Alpha)},
                       {"lora_dropout", L.Dropout},
                       {"bias", "none"}};
  if (L.Targets.empty())
    O["target_modules"] = nullptr;
  else if (L.Targets.size() == 1 && L.Targets[0] == "all-linear") {
    O["target_modules"] = "all-linear";
    // Without it PEFT adapts the head and its task type then refuses to wrap it.
    if (!Ctx.PeftTaskType.empty() && !HeadFrozen && !Ctx.PeftExcludeModules.empty())
      O["exclude_modules"] = stringArray(Ctx.PeftExcludeModules);
  }
  else
    O["target_modules"] = stringArray(L.Targets);
  if (L.ModulesToSave && !L.ModulesToSave->empty())
    O["modules_to_save"] = stringArray(*L.ModulesToSave);
  if (!Ctx.ModelName.empty())
    O["base_model_name_or_path"] = Ctx.ModelName;
  return O;
}

/// transformers.BitsAndBytesConfig for QLoRA (Dettmers et al. 2023): NF4 with double
/// quantization, bf16 compute. Sharded 4-bit weights must be stored as bf16 so FSDP and
/// ZeRO-3 can flatten them with the other parameters (transformers docs, "FSDP + QLoRA"
/// and "DeepSpeed ZeRO-3 + QLoRA"); the packed bytes are the same.
llvm::json::Object bnbConfig(const TrainingSetup &S) {
  llvm::json::Object O{{"load_in_4bit", true},
                       {"bnb_4bit_quant_type", "nf4"},
                       {"bnb_4bit_use_double_quant", true},
                       {"bnb_4bit_compute_dtype", "bfloat16"}};
  if (shardsParameters(S.Sharding))
    O["bnb_4bit_quant_storage"] = "bfloat16";
  return O;
}

/// Keyword arguments for AutoModel*.from_pretrained (transformers modeling_utils):
/// TrainingArguments has no field for the dtype of the weights, and transformers 5
/// changed the default torch_dtype to "auto", so it is always written. Pure bf16 is
/// bf16 weights without autocast; every other recipe loads fp32 weights (autocast and
/// DeepSpeed cast them at run time).
llvm::json::Object modelLoad(const TrainingSetup &S, const EmitContext &Ctx) {
  llvm::json::Object O{{"torch_dtype", S.Prec == Precision::Bf16 ? "bfloat16" : "float32"}};
  if (!Ctx.ModelName.empty())
    O["pretrained_model_name_or_path"] = Ctx.ModelName;
  // transformers' attn_implementation: "eager" materialises attention probabilities,
  // "sdpa" runs fused kernels; Auto leaves transformers' own choice (sdpa).
  if (S.Attention == AttentionImpl::Eager)
    O["attn_implementation"] = "eager";
  else if (S.Attention == AttentionImpl::Sdpa)
    O["attn_implementation"] = "sdpa";
  // A config attribute from_pretrained passes on: the forward fills no key/value cache
  // (Trainer passes none, so the config's use_cache decides).
  if (S.KvCache != KvCacheMode::Auto)
    O["use_cache"] = S.KvCache == KvCacheMode::On;
  // A checkpoint stored quantized (gpt-oss's MXFP4 experts, DeepSeek-V3's FP8) trains
  // dequantized, as predicted: Mxfp4Config / FineGrainedFP8Config(dequantize=True), which
  // from_pretrained builds from this dict. QLoRA's bitsandbytes config is the plan's own.
  if (!Ctx.CheckpointQuantization.empty() && !(S.Lora && S.Lora->QLora))
    O["quantization_config"] = llvm::json::Object{
        {"quant_method", Ctx.CheckpointQuantization}, {"dequantize", true}};
  return O;
}

namespace {

/// transformers' `optim` names (training_args.py, OptimizerNames) and the arguments
/// trainer.py passes them; GaLore's keys follow trainer.py's galore_optim_kwargs.
llvm::Error addHfOptimizer(ConfigTarget T, const TrainingSetup &S, const StepShape &Shape,
                           llvm::json::Object &Args) {
  const bool AdamFamily =
      S.Optimizer == OptimizerKind::AdamW || S.Optimizer == OptimizerKind::Adam;
  if (AdamFamily)
    Args["weight_decay"] = S.Optimizer == OptimizerKind::AdamW ? AdamWWeightDecay : 0.0;
  if (S.Galore) {
    std::string Optim;
    if (AdamFamily)
      Optim = "galore_adamw";
    else if (S.Optimizer == OptimizerKind::AdamW8bit)
      Optim = "galore_adamw_8bit";
    else if (S.Optimizer == OptimizerKind::Adafactor)
      Optim = "galore_adafactor";
    else
      return emitError(T, "GaLore runs in transformers with adamw, adam, adamw-8bit or "
                          "adafactor (galore_adamw, galore_adamw_8bit, galore_adafactor), "
                          "not --optimizer=" +
                              llvm::Twine(optimizerName(S.Optimizer)));
    if (S.Galore->PerLayer) {
      // trainer.py: "Layerwise GaLoRE optimizer do not support gradient accumulation !"
      // and layer-wise low-rank optimizers refuse DDP.
      if (Shape.GradAccum != 1)
        return emitError(T, "transformers' layer-wise GaLore steps each weight in its "
                            "gradient hook and refuses gradient accumulation "
                            "(--grad-accum=" +
                                llvm::Twine(Shape.GradAccum) + ")");
      if (Shape.Gpus > 1)
        return emitError(T, "transformers' layer-wise GaLore does not run under DDP "
                            "(--gpus=" +
                                llvm::Twine(Shape.Gpus) + ")");
      Optim += "_layerwise";
    }
    if (S.Galore->Targets.empty())
      return emitError(T, "GaLore needs target modules (--galore-targets)");
    Args["optim"] = Optim;
    Args["optim_target_modules"] = stringArray(S.Galore->Targets);
    Args["optim_args"] = "rank=" + std::to_string(S.Galore->Rank) +
                         ", update_proj_gap=" + std::to_string(S.Galore->UpdateGap) +
                         ", scale=" + shortestNumber(GaloreScale);
    return llvm::Error::success();
  }
  switch (S.Optimizer) {
  case OptimizerKind::AdamW:
  case OptimizerKind::Adam:
    // torch.optim.AdamW picks the foreach implementation for CUDA tensors and the
    // single-tensor loop for CPU ones unless told fused=True; transformers names only
    // the default and fused. Their scratch differs, so the other one is refused.
    if (S.Impl != OptimizerImpl::Fused) {
      OptimizerImpl Runs =
          S.Device == DeviceKind::Cpu ? OptimizerImpl::ForLoop : OptimizerImpl::Foreach;
      if (S.Impl != Runs)
        return emitError(T, "--optimizer-impl=" + llvm::Twine(optimizerImplName(S.Impl)) +
                                ": optim=adamw_torch runs torch.optim's " +
                                optimizerImplName(Runs) + " implementation on " +
                                deviceName(S.Device) + ", whose optimizer scratch differs; "
                                "use --optimizer-impl=" + optimizerImplName(Runs) +
                                " or fused");
    }
    Args["optim"] = S.Impl == OptimizerImpl::Fused ? "adamw_torch_fused" : "adamw_torch";
    break;
  case OptimizerKind::AdamW8bit:
    Args["optim"] = "adamw_bnb_8bit";
    break;
  case OptimizerKind::PagedAdamW8bit:
    Args["optim"] = "paged_adamw_8bit";
    break;
  case OptimizerKind::Adafactor:
    Args["optim"] = "adafactor";
    break;
  case OptimizerKind::Sgd:
    Args["optim"] = "sgd";
    break;
  case OptimizerKind::Lion:
    Args["optim"] = "lion_32bit";
    break;
  case OptimizerKind::AdamWFp8:
    // transformers names torchao's 4- and 8-bit AdamW (adamw_torch_4bit/8bit), not FP8.
    return emitError(T, "--optimizer=adamw-fp8 (torchao AdamWFp8) has no TrainingArguments "
                        "optim name (use --emit=torchtune)");
  case OptimizerKind::SgdMomentum:
    return emitError(T, "transformers' optim=sgd is torch.optim.SGD without momentum; "
                        "--optimizer=sgd-momentum has no TrainingArguments form");
  }
  return llvm::Error::success();
}

} // namespace

//===----------------------------------------------------------------------------===//
// DeepSpeed (https://www.deepspeed.ai/docs/config-json/).
//===----------------------------------------------------------------------------===//

llvm::Expected<llvm::json::Object> deepSpeedConfig(ConfigTarget T, const TrainingSetup &S,
                                                   const StepShape &Shape, DsMode Mode) {
  const ShardingSetup &Sh = S.Sharding;
  if (Sh.Fsdp)
    return emitError(T, "--fsdp is PyTorch FSDP, not DeepSpeed (use --emit=accelerate-fsdp "
                        "or --emit=hf)");
  if (S.Galore)
    return emitError(T, "GaLore needs each weight's whole 2-D gradient; DeepSpeed flattens "
                        "and partitions gradients (use --emit=hf without --zero)");
  if (S.Device == DeviceKind::Cpu)
    return emitError(T, "DeepSpeed trains on accelerators, not --device=cpu");
  if (Sh.Offload == OffloadKind::Params && Sh.ZeroStage != 3)
    return emitError(T, "--offload=params needs ZeRO-3 (offload_param is a stage-3 option)");
  if (Sh.Offload == OffloadKind::Optimizer && Sh.ZeroStage == 0)
    return emitError(T, "--offload=optimizer needs ZeRO stage 1, 2 or 3");

  llvm::json::Object O{{"train_micro_batch_size_per_gpu", Shape.MicroBatch},
                       {"gradient_accumulation_steps", Shape.GradAccum},
                       {"train_batch_size", Shape.MicroBatch * Shape.GradAccum * Shape.Gpus}};

  // Precision. DeepSpeed's bf16/fp16 modes hold 16-bit weights with fp32 master copies
  // in the optimizer (trainmem's mixed-*); torch_autocast (runtime/constants.py,
  // TORCH_AUTOCAST) keeps fp32 weights and autocasts the forward (amp-*).
  switch (S.Prec) {
  case Precision::Fp32:
    break;
  case Precision::AmpBf16:
  case Precision::AmpFp16:
    O["torch_autocast"] = llvm::json::Object{
        {"enabled", true},
        {"dtype", S.Prec == Precision::AmpBf16 ? "bfloat16" : "float16"}};
    break;
  case Precision::Bf16:
    return emitError(T, "DeepSpeed's bf16 mode keeps fp32 master weights (--precision="
                        "mixed-bf16); pure bf16 without them is not a DeepSpeed mode");
  case Precision::MixedBf16:
    O["bf16"] = llvm::json::Object{{"enabled", true}};
    break;
  case Precision::MixedFp16:
    // Dynamic loss scaling (loss_scale 0) with DeepSpeed's documented defaults.
    O["fp16"] = llvm::json::Object{{"enabled", true},
                                   {"loss_scale", 0},
                                   {"initial_scale_power", 16},
                                   {"loss_scale_window", 1000},
                                   {"hysteresis", 2},
                                   {"min_loss_scale", 1}};
    break;
  }

  // ZeRO. overlap_comm keeps DeepSpeed's per-stage default (off for 1-2, where it
  // doubles the reduction buffers; on for 3); bucket sizes are the defaults the
  // simulation assumed.
  llvm::json::Object Zero{{"stage", Sh.ZeroStage}};
  if (Sh.ZeroStage >= 1) {
    Zero["contiguous_gradients"] = true;
    Zero["overlap_comm"] = Sh.ZeroStage == 3;
    Zero["reduce_bucket_size"] = DsReduceBucketSize;
    if (Sh.ZeroStage <= 2) {
      Zero["allgather_bucket_size"] = DsAllgatherBucketSize;
      Zero["reduce_scatter"] = true;
    } else {
      Zero["stage3_prefetch_bucket_size"] = DsStage3PrefetchBucketSize;
      Zero["stage3_param_persistence_threshold"] = DsStage3ParamPersistenceThreshold;
      Zero["stage3_max_live_parameters"] = DsStage3MaxLiveParameters;
      Zero["stage3_max_reuse_distance"] = DsStage3MaxReuseDistance;
      Zero["stage3_gather_16bit_weights_on_model_save"] = true;
    }
    // The simulation moves optimizer states (and masters) to the host for either kind
    // of offload, and parameters too for --offload=params (ZeRO-Infinity's CPU tier).
    if (Sh.Offload != OffloadKind::None)
      Zero["offload_optimizer"] = llvm::json::Object{{"device", "cpu"}, {"pin_memory", true}};
    if (Sh.Offload == OffloadKind::Params)
      Zero["offload_param"] = llvm::json::Object{{"device", "cpu"}, {"pin_memory", true}};
  }
  O["zero_optimization"] = std::move(Zero);

  // Optimizer. DeepSpeed's own types step on the GPU with FusedAdam/FusedLion or on the
  // host with DeepSpeedCPUAdam/CPULion (what the simulation assumes under ZeRO);
  // other names fall through to torch.optim (engine.py, _configure_basic_optimizer).
  // Under the Trainer, "auto" takes the values from TrainingArguments
  // (transformers integrations/deepspeed.py, trainer_config_process).
  const bool UnderHf = Mode == DsMode::UnderHfTrainer;
  const double Lr = S.Lora ? LoraLr : FullFinetuneLr;
  auto Param = [&](llvm::json::Value Standalone) -> llvm::json::Value {
    if (UnderHf)
      return "auto";
    return Standalone;
  };
  llvm::json::Object Params{{"lr", Param(Lr)}};
  std::string Type;
  switch (S.Optimizer) {
  case OptimizerKind::AdamW:
  case OptimizerKind::Adam:
    Type = S.Optimizer == OptimizerKind::AdamW ? "AdamW" : "Adam";
    Params["betas"] = Param(llvm::json::Array{0.9, 0.999});
    Params["eps"] = Param(1e-8);
    Params["weight_decay"] =
        Param(S.Optimizer == OptimizerKind::AdamW ? AdamWWeightDecay : 0.0);
    // DeepSpeed's "Adam" is decoupled-decay AdamW unless adam_w_mode is false.
    if (S.Optimizer == OptimizerKind::Adam)
      Params["adam_w_mode"] = false;
    break;
  case OptimizerKind::Lion:
    Type = "Lion";
    Params["betas"] = Param(llvm::json::Array{0.9, 0.99});
    Params["weight_decay"] = Param(0.0);
    break;
  case OptimizerKind::Sgd:
  case OptimizerKind::SgdMomentum:
    if (Sh.Offload != OffloadKind::None)
      return emitError(T, "ZeRO-Offload steps on the host with DeepSpeed's CPU optimizers "
                          "(Adam, AdamW, Adagrad, Lion), not SGD");
    Type = "SGD";
    if (S.Optimizer == OptimizerKind::SgdMomentum)
      Params["momentum"] = 0.9;
    break;
  case OptimizerKind::AdamWFp8:
    return emitError(T, "--optimizer=adamw-fp8 (torchao AdamWFp8) is not a DeepSpeed "
                        "optimizer type, and the Trainer cannot build it either");
  case OptimizerKind::AdamW8bit:
  case OptimizerKind::PagedAdamW8bit:
  case OptimizerKind::Adafactor:
    if (!UnderHf)
      return emitError(T, "--optimizer=" + llvm::Twine(optimizerName(S.Optimizer)) +
                              " is not a DeepSpeed optimizer type (use --emit=hf, where the "
                              "Trainer builds it)");
    if (Sh.Offload != OffloadKind::None)
      return emitError(T, "ZeRO-Offload steps on the host with DeepSpeed's CPU optimizers; "
                          "--optimizer=" +
                              llvm::Twine(optimizerName(S.Optimizer)) + " has none");
    break;
  }
  if (!Type.empty())
    O["optimizer"] = llvm::json::Object{{"type", Type}, {"params", std::move(Params)}};
  if (UnderHf) {
    // The Trainer fills gradient clipping from max_grad_norm.
    O["gradient_clipping"] = "auto";
  } else if (Shape.CheckpointBlocks) {
    // deepspeed.checkpointing's plain per-block recompute (what the model's checkpoint
    // calls, or transformers' gradient_checkpointing_enable, run); no partitioning or
    // host copies of the checkpoints, which the simulation does not model.
    O["activation_checkpointing"] = llvm::json::Object{{"partition_activations", false},
                                                       {"cpu_checkpointing", false},
                                                       {"contiguous_memory_optimization", false},
                                                       {"synchronize_checkpoint_boundary", false}};
  }
  return O;
}

//===----------------------------------------------------------------------------===//
// Hugging Face Trainer: TrainingArguments and the files beside it.
//===----------------------------------------------------------------------------===//

namespace {

/// Who runs data parallelism for a Trainer run.
enum class HfRuntime { Plain, DeepSpeed, FsdpInArgs, FsdpFromLauncher };

HfRuntime hfRuntime(ConfigTarget T, const TrainingSetup &S) {
  const ShardingSetup &Sh = S.Sharding;
  if (Sh.Fsdp)
    return T == ConfigTarget::AccelerateFsdp ? HfRuntime::FsdpFromLauncher
                                             : HfRuntime::FsdpInArgs;
  // Mixed precision with fp32 masters is DeepSpeed's bf16/fp16 mode, which also runs
  // at ZeRO stage 0 on one GPU; the Trainer's own bf16/fp16 flags are autocast.
  if (Sh.ZeroStage > 0 || Sh.Offload != OffloadKind::None || S.keepsMasterWeights())
    return HfRuntime::DeepSpeed;
  return HfRuntime::Plain;
}

llvm::Expected<llvm::json::Object> trainingArgs(ConfigTarget T, const TrainingSetup &S,
                                                const StepShape &Shape, HfRuntime Runtime) {
  // transformers TrainingArguments (training_args.py). output_dir is required before
  // 4.50, so it is written with 4.50's default.
  llvm::json::Object Args{{"output_dir", "trainer_output"},
                          {"per_device_train_batch_size", Shape.MicroBatch},
                          {"gradient_accumulation_steps", Shape.GradAccum}};
  // bf16/fp16 are autocast for a plain run and under FSDP (accelerate's MixedPrecision);
  // under DeepSpeed they switch its bf16/fp16 mode on, which is mixed-*; DeepSpeed's
  // autocast (amp-*) is in ds_config.json instead.
  switch (S.Prec) {
  case Precision::Fp32:
  case Precision::Bf16: // bf16 weights come from model_load.json; autocast is a no-op
    break;
  case Precision::AmpBf16:
  case Precision::MixedBf16:
    if (Runtime != HfRuntime::DeepSpeed || S.Prec == Precision::MixedBf16)
      Args["bf16"] = true;
    break;
  case Precision::AmpFp16:
  case Precision::MixedFp16:
    if (Runtime != HfRuntime::DeepSpeed || S.Prec == Precision::MixedFp16)
      Args["fp16"] = true;
    break;
  }
  if (llvm::Error E = addHfOptimizer(T, S, Shape, Args))
    return E;
  if (S.Device == DeviceKind::Cpu) {
    if (Runtime != HfRuntime::Plain)
      return emitError(T, "--device=cpu runs without DeepSpeed or FSDP");
    Args["use_cpu"] = true;
  }
  switch (Runtime) {
  case HfRuntime::Plain:
  case HfRuntime::DeepSpeed:
    if (Shape.CheckpointBlocks)
      Args["gradient_checkpointing"] = true;
    if (Runtime == HfRuntime::DeepSpeed)
      Args["deepspeed"] = DeepSpeedConfigFile;
    break;
  case HfRuntime::FsdpInArgs: {
    // TrainingArguments.fsdp options ("full_shard", "shard_grad_op", "offload",
    // "auto_wrap") and fsdp_config keys; without transformer_layer_cls_to_wrap the
    // wrap policy takes the model's _no_split_modules (its decoder block), the unit the
    // simulation gathers. use_orig_params lets frozen and trainable parameters share a
    // flat parameter (LoRA). FSDP checkpointing goes in fsdp_config: the Trainer
    // refuses it together with gradient_checkpointing.
    std::string Fsdp = S.Sharding.ZeroStage == 2 ? "shard_grad_op" : "full_shard";
    if (S.Sharding.Offload == OffloadKind::Params)
      Fsdp += " offload";
    Args["fsdp"] = Fsdp + " auto_wrap";
    Args["fsdp_config"] = llvm::json::Object{{"activation_checkpointing", Shape.CheckpointBlocks},
                                             {"use_orig_params", true}};
    break;
  }
  case HfRuntime::FsdpFromLauncher:
    // accelerate_config.yaml carries FSDP and its activation checkpointing.
    break;
  }
  return Args;
}

} // namespace

/// The Trainer's files: TrainingArguments, the model loading arguments, a DeepSpeed
/// config when DeepSpeed runs the step, and the PEFT and bitsandbytes configs.
llvm::Expected<std::vector<EmittedFile>> renderHfFiles(ConfigTarget T, const TrainingSetup &S,
                                                       const EmitContext &Ctx,
                                                       const StepShape &Shape) {
  HfRuntime Runtime = hfRuntime(T, S);
  if (Runtime == HfRuntime::FsdpInArgs || Runtime == HfRuntime::FsdpFromLauncher)
    if (llvm::Error E = checkFsdp(T, S))
      return E;
  auto Args = trainingArgs(T, S, Shape, Runtime);
  if (!Args)
    return Args.takeError();
  std::vector<EmittedFile> Files;
  Files.emplace_back(TrainingArgsFile, jsonText(std::move(*Args)));
  Files.emplace_back(ModelLoadFile, jsonText(modelLoad(S, Ctx)));
  if (Runtime == HfRuntime::DeepSpeed) {
    auto Ds = deepSpeedConfig(T, S, Shape, DsMode::UnderHfTrainer);
    if (!Ds)
      return Ds.takeError();
    Files.emplace_back(DeepSpeedConfigFile, jsonText(std::move(*Ds)));
  }
  if (S.Lora) {
    Files.emplace_back(LoraConfigFile, jsonText(loraConfig(*S.Lora, Ctx)));
    if (S.Lora->QLora)
      Files.emplace_back(BnbConfigFile, jsonText(bnbConfig(S)));
  }
  return Files;
}

//===----------------------------------------------------------------------------===//
// accelerate: the FSDP plugin of a launcher config (accelerate/commands/config,
// `accelerate config` output; FullyShardedDataParallelPlugin).
//===----------------------------------------------------------------------------===//

llvm::Expected<std::vector<EmittedFile>>
renderAccelerateFsdp(const TrainingSetup &S, const EmitContext &Ctx, const StepShape &Shape) {
  const ConfigTarget T = ConfigTarget::AccelerateFsdp;
  const ShardingSetup &Sh = S.Sharding;
  if (!Sh.Fsdp)
    return emitError(T, "the setup does not shard with FSDP (--fsdp); ZeRO plans are "
                        "--emit=deepspeed, single-GPU plans --emit=hf");
  if (llvm::Error E = checkFsdp(T, S))
    return E;
  // The Trainer's files carry batch, accumulation and optimizer, which a launcher
  // config cannot; the Trainer reads FSDP from the launcher's environment.
  auto Files = renderHfFiles(T, S, Ctx, Shape);
  if (!Files)
    return Files.takeError();

  const char *MixedPrecision = "'no'";
  if (S.Prec == Precision::AmpBf16)
    MixedPrecision = "bf16";
  else if (S.Prec == Precision::AmpFp16)
    MixedPrecision = "fp16";

  YamlText Y;
  if (S.Prec == Precision::Bf16)
    Y.comment("Pure bf16: load the model with torch_dtype=torch.bfloat16 (model_load.json).");
  Y.key(0, "compute_environment", "LOCAL_MACHINE");
  Y.key(0, "debug", "false");
  Y.key(0, "distributed_type", "FSDP");
  Y.key(0, "downcast_bf16", "'no'");
  Y.key(0, "fsdp_config");
  Y.key(2, "fsdp_activation_checkpointing", yamlBool(Shape.CheckpointBlocks));
  // The wrap unit is the model's decoder block (_no_split_modules), the unit whose
  // parameters the simulation gathers one at a time; prefetching would hold a second
  // unit gathered, so it is off.
  Y.key(2, "fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP");
  Y.key(2, "fsdp_backward_prefetch", "NO_PREFETCH");
  Y.key(2, "fsdp_cpu_ram_efficient_loading", "true");
  Y.key(2, "fsdp_forward_prefetch", "false");
  Y.key(2, "fsdp_offload_params", yamlBool(Sh.Offload == OffloadKind::Params));
  Y.key(2, "fsdp_sharding_strategy", Sh.ZeroStage == 2 ? "SHARD_GRAD_OP" : "FULL_SHARD");
  Y.key(2, "fsdp_state_dict_type", "SHARDED_STATE_DICT");
  Y.key(2, "fsdp_sync_module_states", "true"); // required by cpu_ram_efficient_loading
  Y.key(2, "fsdp_use_orig_params", "true");     // frozen and trainable in one unit (LoRA)
  Y.key(0, "machine_rank", "0");
  Y.key(0, "main_training_function", "main");
  Y.key(0, "mixed_precision", MixedPrecision);
  Y.key(0, "num_machines", "1");
  Y.key(0, "num_processes", std::to_string(Shape.Gpus));
  Y.key(0, "rdzv_backend", "static");
  Y.key(0, "same_network", "true");
  Y.key(0, "use_cpu", "false");

  std::vector<EmittedFile> Out;
  Out.emplace_back(AccelerateConfigFile, std::move(Y.Text));
  for (EmittedFile &F : *Files)
    Out.push_back(std::move(F));
  return Out;
}

} // namespace trainmem::emit
