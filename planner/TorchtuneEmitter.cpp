//===- TorchtuneEmitter.cpp - torchtune recipe configs ----------------------------===//
//
// --emit=torchtune: the model builder for a known family and size, LoRA targets in the
// form torchtune's builders take them, and the memory-shaping keys of a recipe config.
//
//===----------------------------------------------------------------------------===//
#include "planner/EmitterSupport.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"

#include <algorithm>
#include <set>

namespace trainmem::emit {

//===----------------------------------------------------------------------------===//
// torchtune: recipe configs (recipes/configs/*, lora_finetune_single_device.py and the
// distributed recipes).
//===----------------------------------------------------------------------------===//

namespace {

struct TorchtuneModel {
  const char *Architecture; ///< Hugging Face model_type
  const char *NamePattern;  ///< lower-case substring of the hub name or path
  const char *Family;       ///< torchtune.models.<Family>
  const char *Builder;      ///< <Builder>, lora_<Builder>, qlora_<Builder>
  bool HasQlora;
  bool HasOutputLora; ///< the LoRA builder takes apply_lora_to_output
};

// Longer version strings first, so "llama-3.1-8b" is not taken for "llama-3-8b".
constexpr TorchtuneModel TorchtuneModels[] = {
    {"llama", "llama-3.2-1b", "llama3_2", "llama3_2_1b", true, false},
    {"llama", "llama-3.2-3b", "llama3_2", "llama3_2_3b", true, false},
    {"llama", "llama-3.1-8b", "llama3_1", "llama3_1_8b", true, true},
    {"llama", "llama-3.1-70b", "llama3_1", "llama3_1_70b", true, true},
    {"llama", "llama-3.1-405b", "llama3_1", "llama3_1_405b", true, true},
    {"llama", "llama-3-8b", "llama3", "llama3_8b", true, true},
    {"llama", "llama-3-70b", "llama3", "llama3_70b", true, true},
    {"llama", "llama-2-7b", "llama2", "llama2_7b", true, true},
    {"llama", "llama-2-13b", "llama2", "llama2_13b", true, true},
    {"llama", "llama-2-70b", "llama2", "llama2_70b", true, true},
    {"mistral", "mistral-7b", "mistral", "mistral_7b", true, true},
    {"gemma", "gemma-2b", "gemma", "gemma_2b", true, false},
    {"gemma", "gemma-7b", "gemma", "gemma_7b", true, false},
    {"qwen2", "qwen2.5-0.5b", "qwen2_5", "qwen2_5_0_5b", false, false},
    {"qwen2", "qwen2.5-1.5b", "qwen2_5", "qwen2_5_1_5b", false, false},
    {"qwen2", "qwen2.5-3b", "qwen2_5", "qwen2_5_3b", false, false},
    {"qwen2", "qwen2.5-7b", "qwen2_5", "qwen2_5_7b", false, true},
    {"qwen2", "qwen2-0.5b", "qwen2", "qwen2_0_5b", false, false},
    {"qwen2", "qwen2-1.5b", "qwen2", "qwen2_1_5b", false, false},
    {"qwen2", "qwen2-7b", "qwen2", "qwen2_7b", false, true},
    {"phi3", "phi-3-mini", "phi3", "phi3_mini", true, true},
};

llvm::Expected<const TorchtuneModel *> torchtuneModel(const EmitContext &Ctx) {
  const ConfigTarget T = ConfigTarget::Torchtune;
  if (Ctx.Architecture.empty())
    return emitError(T, "torchtune needs a known architecture: its recipes build models by "
                        "family and size (torchtune.models.llama2.llama2_7b), and the model's "
                        "model_type is unknown");
  std::string Name = llvm::StringRef(Ctx.ModelName).lower();
  std::replace(Name.begin(), Name.end(), '_', '-');
  bool FamilyKnown = false;
  for (const TorchtuneModel &M : TorchtuneModels) {
    if (Ctx.Architecture != M.Architecture)
      continue;
    FamilyKnown = true;
    if (llvm::StringRef(Name).contains(M.NamePattern))
      return &M;
  }
  if (!FamilyKnown)
    return emitError(T, "torchtune needs a known architecture: '" + Ctx.Architecture +
                            "' has no torchtune model builder trainmem knows (llama, "
                            "mistral, gemma, qwen2, phi3)");
  return emitError(T, "torchtune builds " + Ctx.Architecture +
                          " models by size; cannot tell which from the model name '" +
                          Ctx.ModelName + "' (expected e.g. Llama-2-7b, Meta-Llama-3.1-8B)");
}

/// PEFT module names as torchtune's LoRA builders take them: attention projections by
/// name (o_proj is output_proj), the MLP's three projections all or none
/// (apply_lora_to_mlp), the head as apply_lora_to_output.
struct TorchtuneLoraTargets {
  std::vector<std::string> Attention;
  bool Mlp = false;
  bool Output = false;
};

llvm::Expected<TorchtuneLoraTargets> torchtuneLoraTargets(const LoraSetup &L,
                                                          const TorchtuneModel &M) {
  const ConfigTarget T = ConfigTarget::Torchtune;
  std::vector<std::string> Targets = L.Targets;
  // PEFT's defaults (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING): q_proj and
  // v_proj, or phi3's fused qkv_proj.
  if (Targets.empty())
    Targets = llvm::StringRef(M.Architecture) == "phi3" ? std::vector<std::string>{"qkv_proj"}
                                                        : std::vector<std::string>{"q_proj",
                                                                                   "v_proj"};
  std::set<std::string> Attn, MlpSeen;
  TorchtuneLoraTargets Out;
  for (const std::string &Target : Targets) {
    if (Target == "all-linear") {
      // PEFT's all-linear: every linear but the output layer.
      Attn.insert({"q_proj", "k_proj", "v_proj", "output_proj"});
      MlpSeen.insert({"gate_proj", "up_proj", "down_proj"});
    } else if (Target == "q_proj" || Target == "k_proj" || Target == "v_proj") {
      Attn.insert(Target);
    } else if (Target == "qkv_proj") {
      Attn.insert({"q_proj", "k_proj", "v_proj"});
    } else if (Target == "o_proj" || Target == "output_proj") {
      Attn.insert("output_proj");
    } else if (Target == "gate_proj" || Target == "up_proj" || Target == "down_proj") {
      MlpSeen.insert(Target);
    } else if (Target == "gate_up_proj") {
      MlpSeen.insert({"gate_proj", "up_proj"});
    } else if (Target == "lm_head" || Target == "output") {
      Out.Output = true;
    } else {
      return emitError(T, "LoRA target '" + Target +
                              "' has no torchtune form (q_proj, k_proj, v_proj, o_proj, "
                              "gate_proj, up_proj, down_proj, lm_head, all-linear)");
    }
  }
  if (!MlpSeen.empty() && MlpSeen.size() != 3)
    return emitError(T, "torchtune puts LoRA on all three MLP projections or none "
                        "(apply_lora_to_mlp); the targets name " +
                            llvm::join(MlpSeen, ", ") + " only");
  Out.Mlp = MlpSeen.size() == 3;
  if (Out.Output && !M.HasOutputLora)
    return emitError(T, "torchtune's " + llvm::Twine(M.Builder) +
                            " ties its output to the embedding; LoRA on lm_head has no form");
  for (const char *Name : {"q_proj", "k_proj", "v_proj", "output_proj"})
    if (Attn.count(Name))
      Out.Attention.push_back(Name);
  if (Out.Attention.empty())
    return emitError(T, "torchtune's LoRA builders need at least one attention projection "
                        "in lora_attn_modules");
  return Out;
}

} // namespace

llvm::Expected<std::vector<EmittedFile>>
renderTorchtune(const TrainingSetup &S, const EmitContext &Ctx, const StepShape &Shape) {
  const ConfigTarget T = ConfigTarget::Torchtune;
  const ShardingSetup &Sh = S.Sharding;
  auto Model = torchtuneModel(Ctx);
  if (!Model)
    return Model.takeError();
  const TorchtuneModel &M = **Model;
  if (S.Galore)
    return emitError(T, "torchtune has no GaLore optimizer (use --emit=hf)");
  // torchtune trains in one dtype, bf16 or fp32, without autocast (training.get_dtype).
  if (S.Prec != Precision::Bf16 && S.Prec != Precision::Fp32)
    return emitError(T, "torchtune trains wholly in bf16 or fp32 without autocast or master "
                        "copies; --precision=" +
                            llvm::Twine(precisionName(S.Prec)) +
                            " has no form (use --precision=bf16 or fp32)");
  // Multi-GPU torchtune shards with FSDP2 (fully_shard); there is no DDP or ZeRO recipe.
  if (Sh.ZeroStage > 0 && !Sh.Fsdp)
    return emitError(T, "torchtune's distributed recipes shard with FSDP, not DeepSpeed "
                        "ZeRO (plan with --fsdp)");
  if (Shape.Gpus > 1 && !Sh.Fsdp)
    return emitError(T, "torchtune's multi-GPU recipes shard with FSDP; plain data "
                        "parallelism over --gpus=" +
                            llvm::Twine(Shape.Gpus) + " has no recipe (plan with --fsdp)");
  const bool Distributed = Sh.Fsdp;
  if (Distributed)
    if (llvm::Error E = checkFsdp(T, S))
      return E;
  if (!Distributed && Sh.Offload != OffloadKind::None)
    return emitError(T, "offload without FSDP has no torchtune form");
  const bool Lora = S.Lora.has_value();
  const bool QLora = Lora && S.Lora->QLora;
  if (QLora && !M.HasQlora)
    return emitError(T, "torchtune has no QLoRA builder for " + llvm::Twine(M.Builder));

  std::string Recipe = std::string(Lora ? "lora_finetune_" : "full_finetune_") +
                       (Distributed ? "distributed" : "single_device");
  YamlText Y;
  Y.comment((Distributed ? "tune run --nproc_per_node " + std::to_string(Shape.Gpus) + " "
                         : std::string("tune run ")) +
            Recipe + " --config recipe.yaml");
  Y.comment("tokenizer, checkpointer and dataset: copy them from a stock config in "
            "torchtune's recipes/configs/" +
            std::string(M.Family) + "/");

  // Model builder (torchtune.models.<family>.<builder>, lora_/qlora_ variants).
  std::string Component = "torchtune.models." + std::string(M.Family) + "." +
                          (QLora ? "qlora_" : Lora ? "lora_" : "") + M.Builder;
  Y.key(0, "model");
  Y.key(2, "_component_", Component);
  if (Lora) {
    auto Targets = torchtuneLoraTargets(*S.Lora, M);
    if (!Targets)
      return Targets.takeError();
    Y.key(2, "lora_attn_modules", yamlFlowList(Targets->Attention));
    Y.key(2, "apply_lora_to_mlp", yamlBool(Targets->Mlp));
    if (M.HasOutputLora)
      Y.key(2, "apply_lora_to_output", yamlBool(Targets->Output));
    Y.key(2, "lora_rank", std::to_string(S.Lora->Rank));
    Y.key(2, "lora_alpha", yamlFloat(S.Lora->Alpha));
    Y.key(2, "lora_dropout", yamlFloat(S.Lora->Dropout));
  }

  Y.key(0, "batch_size", std::to_string(Shape.MicroBatch));
  Y.key(0, "gradient_accumulation_steps", std::to_string(Shape.GradAccum));

  // Optimizer: any importable class with its keyword arguments. torch.optim's
  // implementation is chosen by foreach/fused, whose scratch memory differs.
  Y.key(0, "optimizer");
  bool TorchOptim = true;
  switch (S.Optimizer) {
  case OptimizerKind::AdamW:
    Y.key(2, "_component_", "torch.optim.AdamW");
    break;
  case OptimizerKind::Adam:
    Y.key(2, "_component_", "torch.optim.Adam");
    break;
  case OptimizerKind::Sgd:
  case OptimizerKind::SgdMomentum:
    Y.key(2, "_component_", "torch.optim.SGD");
    break;
  case OptimizerKind::AdamW8bit:
    Y.key(2, "_component_", "bitsandbytes.optim.AdamW8bit");
    TorchOptim = false;
    break;
  case OptimizerKind::PagedAdamW8bit:
    Y.key(2, "_component_", "bitsandbytes.optim.PagedAdamW8bit");
    TorchOptim = false;
    break;
  case OptimizerKind::Lion:
    Y.key(2, "_component_", "bitsandbytes.optim.Lion");
    TorchOptim = false;
    break;
  case OptimizerKind::AdamWFp8:
    Y.key(2, "_component_", "torchao.optim.AdamWFp8");
    TorchOptim = false;
    break;
  case OptimizerKind::Adafactor:
    return emitError(T, "--optimizer=adafactor: torchtune recipes have no Adafactor "
                        "(use --emit=hf)");
  }
  Y.key(2, "lr", yamlFloat(Lora ? LoraLr : FullFinetuneLr));
  if (S.Optimizer == OptimizerKind::AdamW)
    Y.key(2, "weight_decay", yamlFloat(AdamWWeightDecay));
  if (S.Optimizer == OptimizerKind::SgdMomentum)
    Y.key(2, "momentum", yamlFloat(0.9));
  if (TorchOptim) {
    if (S.Impl == OptimizerImpl::Fused)
      Y.key(2, "fused", "true");
    else
      Y.key(2, "foreach", yamlBool(S.Impl == OptimizerImpl::Foreach));
  }
  // Stock low-memory configs step the optimizer inside backward; the prediction did
  // not, so the merged config must not either.
  if (!Lora && !Distributed)
    Y.key(0, "optimizer_in_bwd", "false");

  Y.key(0, "compile", "false");
  Y.key(0, "device", S.Device == DeviceKind::Cpu ? "cpu" : "cuda");
  Y.key(0, "dtype", S.Prec == Precision::Bf16 ? "bf16" : "fp32");
  Y.key(0, "enable_activation_checkpointing", yamlBool(Shape.CheckpointBlocks));
  Y.key(0, "enable_activation_offloading", "false");
  if (Distributed) {
    Y.key(0, "fsdp_cpu_offload", yamlBool(Sh.Offload == OffloadKind::Params));
    // FSDP2's SHARD_GRAD_OP: keep parameters gathered from forward to backward.
    Y.key(0, "fsdp_reshard_after_forward", yamlBool(Sh.ZeroStage == 3));
  }
  std::vector<EmittedFile> Files;
  Files.emplace_back(TorchtuneRecipeFile, std::move(Y.Text));
  return Files;
}

} // namespace trainmem::emit
