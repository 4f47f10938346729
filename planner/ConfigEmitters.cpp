//===- ConfigEmitters.cpp - training configs that carry out a plan ---------------===//
//
// One renderer per engine over shared checks. Every key group cites the library
// documentation or source it follows; where an engine has a default that would change
// memory against what trainmem predicted (bucket sizes, prefetching, optimizer
// implementations), the key is written out with the value the prediction assumed.
// Settings that are not an engine's business are ignored on purpose: the target GPU
// (--gpu), the loss, weight tying, the autocast op list and --dropout (a model's own
// config.json sets its dropout in train mode, which --dropout only restores).
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>

namespace trainmem {

namespace {

constexpr const char *TrainingArgsFile = "training_args.json";
constexpr const char *ModelLoadFile = "model_load.json";
constexpr const char *LoraConfigFile = "lora_config.json";
constexpr const char *BnbConfigFile = "bnb_config.json";
constexpr const char *DeepSpeedConfigFile = "ds_config.json";
constexpr const char *AccelerateConfigFile = "accelerate_config.yaml";
constexpr const char *TorchtuneRecipeFile = "recipe.yaml";

// DeepSpeed's documented defaults, which the step simulation assumes: one contiguous
// reduction bucket of reduce_bucket_size elements (StepSimulator's "ZeRO reduction
// bucket"). https://www.deepspeed.ai/docs/config-json/#zero-optimizations-for-fp16-training
constexpr int64_t DsReduceBucketSize = 500000000;
constexpr int64_t DsAllgatherBucketSize = 500000000;
constexpr int64_t DsStage3PrefetchBucketSize = 50000000;
constexpr int64_t DsStage3ParamPersistenceThreshold = 100000;
constexpr int64_t DsStage3MaxLiveParameters = 1000000000;
constexpr int64_t DsStage3MaxReuseDistance = 1000000000;

// Starting learning rates for the engines whose configs must name one (DeepSpeed's
// optimizer block, torchtune's optimizer): torchtune's own full and LoRA recipes use
// these. A learning rate is not part of a memory plan; users tune it.
constexpr double FullFinetuneLr = 2e-5;
constexpr double LoraLr = 3e-4;

// torch.optim.AdamW's default weight decay. TrainingArguments defaults to 0, which makes
// AdamW the same update as Adam; writing AdamW's own default keeps the two apart.
constexpr double AdamWWeightDecay = 0.01;

// GaLore's scale as transformers and galore-torch default it (trainer.py,
// galore_optim_kwargs); it does not change memory, so the setup does not carry it.
constexpr double GaloreScale = 0.25;

llvm::Error error(const llvm::Twine &Msg) {
  return llvm::make_error<llvm::StringError>(Msg, llvm::inconvertibleErrorCode());
}

llvm::Error emitError(ConfigTarget T, const llvm::Twine &Msg) {
  return error("--emit=" + llvm::Twine(configTargetName(T)) + ": " + Msg);
}

//===----------------------------------------------------------------------------===//
// Text output. llvm::json prints doubles with 17 significant digits (0.05 becomes
// 0.050000000000000003); configs are read by people, so numbers are printed in their
// shortest round-tripping form. Object keys come out sorted, so output is stable.
//===----------------------------------------------------------------------------===//

enum class Notation { General, Fixed };

std::string shortestNumber(double D, Notation N = Notation::General) {
  char Buf[64];
  for (int Precision = 1; Precision <= 17; ++Precision) {
    if (N == Notation::Fixed)
      std::snprintf(Buf, sizeof Buf, "%.*f", Precision, D);
    else
      std::snprintf(Buf, sizeof Buf, "%.*g", Precision, D);
    if (std::strtod(Buf, nullptr) == D)
      break;
  }
  return Buf;
}

bool isScalar(const llvm::json::Value &V) {
  return V.kind() != llvm::json::Value::Array && V.kind() != llvm::json::Value::Object;
}

void printJson(llvm::raw_ostream &OS, const llvm::json::Value &V, unsigned Indent) {
  switch (V.kind()) {
  case llvm::json::Value::Null:
    OS << "null";
    return;
  case llvm::json::Value::Boolean:
    OS << (*V.getAsBoolean() ? "true" : "false");
    return;
  case llvm::json::Value::Number:
    if (std::optional<int64_t> I = V.getAsInteger())
      OS << *I;
    else
      OS << shortestNumber(*V.getAsNumber());
    return;
  case llvm::json::Value::String:
    llvm::json::OStream(OS).value(V);
    return;
  case llvm::json::Value::Array: {
    const llvm::json::Array &A = *V.getAsArray();
    if (llvm::all_of(A, isScalar)) {
      OS << "[";
      for (size_t I = 0; I < A.size(); ++I) {
        OS << (I ? ", " : "");
        printJson(OS, A[I], Indent);
      }
      OS << "]";
      return;
    }
    OS << "[\n";
    for (size_t I = 0; I < A.size(); ++I) {
      OS.indent(Indent + 2);
      printJson(OS, A[I], Indent + 2);
      OS << (I + 1 < A.size() ? ",\n" : "\n");
    }
    OS.indent(Indent) << "]";
    return;
  }
  case llvm::json::Value::Object: {
    const llvm::json::Object &O = *V.getAsObject();
    if (O.empty()) {
      OS << "{}";
      return;
    }
    std::vector<const llvm::json::Object::value_type *> Members;
    for (const auto &KV : O)
      Members.push_back(&KV);
    llvm::sort(Members, [](const auto *A, const auto *B) {
      return llvm::StringRef(A->first) < llvm::StringRef(B->first);
    });
    OS << "{\n";
    for (size_t I = 0; I < Members.size(); ++I) {
      OS.indent(Indent + 2);
      llvm::json::OStream(OS).value(llvm::StringRef(Members[I]->first));
      OS << ": ";
      printJson(OS, Members[I]->second, Indent + 2);
      OS << (I + 1 < Members.size() ? ",\n" : "\n");
    }
    OS.indent(Indent) << "}";
    return;
  }
  }
}

std::string jsonText(llvm::json::Object O) {
  std::string Text;
  llvm::raw_string_ostream OS(Text);
  printJson(OS, llvm::json::Value(std::move(O)), 0);
  OS << "\n";
  return Text;
}

llvm::json::Array stringArray(const std::vector<std::string> &Items) {
  llvm::json::Array A;
  for (const std::string &S : Items)
    A.push_back(S);
  return A;
}

/// YAML 1.1 (PyYAML, which accelerate and OmegaConf build on) reads `1e-05` as a
/// string and `no` as false, so floats are written in fixed notation and words that
/// YAML would reinterpret are quoted.
std::string yamlFloat(double D) {
  std::string S = shortestNumber(D, Notation::Fixed);
  if (S.find('.') == std::string::npos)
    S += ".0";
  return S;
}

std::string yamlBool(bool B) { return B ? "true" : "false"; }

std::string yamlQuoted(llvm::StringRef S) { return "'" + S.str() + "'"; }

std::string yamlFlowList(const std::vector<std::string> &Items) {
  std::string Out = "[";
  for (size_t I = 0; I < Items.size(); ++I)
    Out += (I ? ", " : "") + yamlQuoted(Items[I]);
  return Out + "]";
}

struct YamlText {
  std::string Text;
  void comment(llvm::StringRef Line) { Text += "# " + Line.str() + "\n"; }
  void key(unsigned Indent, llvm::StringRef Key, llvm::StringRef Value = "") {
    Text += std::string(Indent, ' ') + Key.str() + ":" + (Value.empty() ? "" : " ") +
            Value.str() + "\n";
  }
};

//===----------------------------------------------------------------------------===//
// Checks every target shares.
//===----------------------------------------------------------------------------===//

struct StepShape {
  int64_t MicroBatch = 1;
  int64_t GradAccum = 1;
  int64_t Gpus = 1;
  bool CheckpointBlocks = false;
};

llvm::Expected<StepShape> stepShape(ConfigTarget T, const TrainingSetup &S,
                                    const EmitContext &Ctx) {
  // Which parameters train is decided in the training script (requires_grad, or the
  // adapters PEFT adds); no engine config holds a selection of parameters.
  auto InScript = [&](const std::string &Option) {
    return emitError(T, Option + " chooses which parameters train, which a training script "
                                 "does (requires_grad); no " +
                            configTargetName(T) + " config can say it");
  };
  if (!S.SparseUpdate.empty() && S.SparseUpdate != "none")
    return InScript("--sparse-update=" + S.SparseUpdate);
  if (!S.TrainRegex.empty())
    return InScript("--train");
  if (!S.FreezeRegex.empty())
    return InScript("--freeze");
  // planner/StrategyApply records the adapters PEFT trains as the trainable set under
  // this name; that selection is the LoRA config's own, not an extra one.
  const bool AdapterSelection =
      S.Lora && S.TrainableFile && *S.TrainableFile == "(LoRA adapters)";
  if ((S.TrainableFile || !S.TrainableNames.empty()) && !AdapterSelection)
    return InScript("--trainable-file");
  // Trainer, DeepSpeed, accelerate and torchtune all free gradients between steps
  // (zero_grad(set_to_none=True), PyTorch 2's default); kept gradients were predicted.
  if (S.KeepGrads)
    return emitError(T, "--keep-grads (zero_grad(set_to_none=False)) is a training-loop "
                        "choice; the engines free gradients between steps");
  if (S.Lora && S.Galore)
    return emitError(T, "GaLore projects the gradients of full weights and LoRA freezes "
                        "them; choose one");
  // These change what the training script itself does; a config that left them out
  // would train a step the prediction did not describe.
  if (S.ZerothOrder)
    return emitError(T, "--zeroth-order (MeZO) replaces backward and the optimizer in the "
                        "training loop; no " +
                            llvm::Twine(configTargetName(T)) + " config can say it");
  if (S.Loss == LossKind::CutCrossEntropy)
    return emitError(T, "--loss=cut-cross-entropy patches the model's loss in the training "
                        "script (cut_cross_entropy.cce_patch); no " +
                            llvm::Twine(configTargetName(T)) + " config can say it");
  if (S.Int8Activations)
    return emitError(T, "--activation-storage=int8 installs saved-tensor hooks "
                        "(torch.autograd.graph.saved_tensors_hooks) in the training script; "
                        "no " +
                            llvm::Twine(configTargetName(T)) + " config can say it");

  StepShape Shape;
  Shape.MicroBatch = S.MicroBatch.value_or(Ctx.MicroBatch);
  Shape.GradAccum = S.GradAccum;
  Shape.Gpus = std::max<int64_t>(S.Sharding.Gpus, 1);
  if (Shape.MicroBatch < 1)
    return emitError(T, "micro-batch " + llvm::Twine(Shape.MicroBatch) +
                            ": expected a positive number of samples per GPU");
  if (Shape.GradAccum < 1)
    return emitError(T, "--grad-accum=" + llvm::Twine(Shape.GradAccum) +
                            ": expected a positive number of micro-steps");

  // Every engine here checkpoints whole transformer blocks (transformers'
  // gradient_checkpointing_enable, FSDP's and torchtune's block wrappers), or nothing.
  llvm::StringRef Checkpoint = S.Checkpoint;
  if (Checkpoint == "blocks" || Checkpoint == "every:1")
    Shape.CheckpointBlocks = true;
  else if (!Checkpoint.empty() && Checkpoint != "none")
    return emitError(T, "--checkpoint=" + Checkpoint +
                            " is not expressible: the engine checkpoints every transformer "
                            "block or none (use --checkpoint=blocks or none)");
  return Shape;
}

bool shardsParameters(const ShardingSetup &Sh) { return Sh.ZeroStage >= 3; }

/// PyTorch FSDP keeps fp32 sharded parameters and casts the gathered copies for
/// compute (torch.distributed.fsdp.MixedPrecision), with fp32 gradients and states:
/// trainmem's amp-* recipes, not mixed-* (16-bit weights beside fp32 masters).
llvm::Error checkFsdp(ConfigTarget T, const TrainingSetup &S) {
  const ShardingSetup &Sh = S.Sharding;
  if (Sh.ZeroStage != 2 && Sh.ZeroStage != 3)
    return emitError(T, "--fsdp shards as FULL_SHARD (--zero=3) or SHARD_GRAD_OP "
                        "(--zero=2), not --zero=" +
                            llvm::Twine(Sh.ZeroStage));
  if (S.keepsMasterWeights())
    return emitError(T, "--precision=" + llvm::Twine(precisionName(S.Prec)) +
                            " has no FSDP form: FSDP mixed precision keeps fp32 sharded "
                            "parameters and casts gathered copies (use --precision=amp-bf16 "
                            "or amp-fp16)");
  if (Sh.Offload == OffloadKind::Optimizer)
    return emitError(T, "FSDP offloads parameters, gradients and optimizer states together "
                        "(CPUOffload(offload_params=True)); plan with --offload=params");
  if (S.Galore)
    return emitError(T, "GaLore needs each weight's whole 2-D gradient; FSDP flattens and "
                        "shards them (drop --fsdp)");
  if (S.Device == DeviceKind::Cpu)
    return emitError(T, "FSDP runs on CUDA devices, not --device=cpu");
  return llvm::Error::success();
}

//===----------------------------------------------------------------------------===//
// Hugging Face: PEFT, bitsandbytes and from_pretrained.
//===----------------------------------------------------------------------------===//

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

/// peft.LoraConfig (peft 0.13, src/peft/tuners/lora/config.py): r, lora_alpha,
/// target_modules (a list matched against the end of module names, "all-linear", or
/// null for the architecture's default), lora_dropout, bias.
llvm::json::Object loraConfig(const LoraSetup &L, const EmitContext &Ctx) {
  llvm::json::Object O{{"peft_type", "LORA"},
                       {"task_type", peftTaskType(Ctx.Architecture)},
                       {"r", L.Rank},
                       {"lora_alpha", numberValue(L.Alpha)},
                       {"lora_dropout", L.Dropout},
                       {"bias", "none"}};
  if (L.Targets.empty())
    O["target_modules"] = nullptr;
  else if (L.Targets.size() == 1 && L.Targets[0] == "all-linear")
    O["target_modules"] = "all-linear";
  else
    O["target_modules"] = stringArray(L.Targets);
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
  return O;
}

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
    // torch.optim.AdamW picks the foreach implementation for CUDA tensors unless told
    // fused=True; transformers has no name for the single-tensor loop.
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

//===----------------------------------------------------------------------------===//
// DeepSpeed (https://www.deepspeed.ai/docs/config-json/).
//===----------------------------------------------------------------------------===//

enum class DsMode { Standalone, UnderHfTrainer };

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

//===----------------------------------------------------------------------------===//
// torchtune: recipe configs (recipes/configs/*, lora_finetune_single_device.py and the
// distributed recipes).
//===----------------------------------------------------------------------------===//

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

//===----------------------------------------------------------------------------===//
// Reading TrainingArguments back.
//===----------------------------------------------------------------------------===//

llvm::Expected<llvm::json::Object> parseObject(llvm::StringRef Text, llvm::StringRef What) {
  llvm::Expected<llvm::json::Value> V = llvm::json::parse(Text);
  if (!V)
    return error(What + ": not valid JSON: " + llvm::toString(V.takeError()));
  if (!V->getAsObject())
    return error(What + ": expected a JSON object");
  return std::move(*V->getAsObject());
}

/// Typed lookups that name the file and key when a value has the wrong type.
struct Reader {
  const llvm::json::Object &O;
  llvm::StringRef What;

  llvm::Error bad(llvm::StringRef Key, llvm::StringRef Expected) const {
    return error(What + ": key '" + Key + "': expected " + Expected);
  }
  bool has(llvm::StringRef Key) const {
    const llvm::json::Value *V = O.get(Key);
    return V && V->kind() != llvm::json::Value::Null;
  }
  llvm::Expected<std::optional<bool>> boolean(llvm::StringRef Key) const {
    if (!has(Key))
      return std::nullopt;
    if (auto B = O.get(Key)->getAsBoolean())
      return std::optional<bool>(*B);
    return bad(Key, "true or false");
  }
  llvm::Expected<std::optional<int64_t>> positive(llvm::StringRef Key) const {
    if (!has(Key))
      return std::nullopt;
    if (auto I = O.get(Key)->getAsInteger(); I && *I > 0)
      return std::optional<int64_t>(*I);
    return bad(Key, "a positive integer");
  }
  llvm::Expected<std::optional<double>> number(llvm::StringRef Key) const {
    if (!has(Key))
      return std::nullopt;
    if (auto D = O.get(Key)->getAsNumber())
      return std::optional<double>(*D);
    return bad(Key, "a number");
  }
  llvm::Expected<std::optional<std::string>> string(llvm::StringRef Key) const {
    if (!has(Key))
      return std::nullopt;
    if (auto S = O.get(Key)->getAsString())
      return std::optional<std::string>(S->str());
    return bad(Key, "a string");
  }
  llvm::Expected<std::optional<std::vector<std::string>>> strings(llvm::StringRef Key) const {
    if (!has(Key))
      return std::nullopt;
    const llvm::json::Array *A = O.get(Key)->getAsArray();
    if (!A)
      return bad(Key, "a list of strings");
    std::vector<std::string> Out;
    for (const llvm::json::Value &V : *A) {
      if (!V.getAsString())
        return bad(Key, "a list of strings");
      Out.push_back(V.getAsString()->str());
    }
    return std::optional<std::vector<std::string>>(std::move(Out));
  }
};

/// Moves an Expected<T>'s value into Out, or returns its error from the caller.
#define TRAINMEM_READ(Out, Expr)                                                        \
  auto Out##OrErr = (Expr);                                                             \
  if (!Out##OrErr)                                                                      \
    return Out##OrErr.takeError();                                                      \
  auto Out = std::move(*Out##OrErr)

struct DeepSpeedFacts {
  std::optional<Precision> Prec;
  int ZeroStage = 0;
  OffloadKind Offload = OffloadKind::None;
  std::optional<int64_t> TrainBatch;
};

llvm::Expected<DeepSpeedFacts> readDeepSpeed(const llvm::json::Object &O) {
  DeepSpeedFacts F;
  auto Enabled = [&](llvm::StringRef Group) {
    const llvm::json::Object *G = O.getObject(Group);
    return G && G->getBoolean("enabled").value_or(false);
  };
  if (Enabled("bf16"))
    F.Prec = Precision::MixedBf16;
  else if (Enabled("fp16"))
    F.Prec = Precision::MixedFp16;
  else if (Enabled("torch_autocast")) {
    std::optional<llvm::StringRef> DType = O.getObject("torch_autocast")->getString("dtype");
    F.Prec = DType && *DType == "float16" ? Precision::AmpFp16 : Precision::AmpBf16;
  } else {
    F.Prec = Precision::Fp32;
  }
  if (const llvm::json::Object *Zero = O.getObject("zero_optimization")) {
    std::optional<int64_t> Stage = Zero->getInteger("stage");
    if (!Stage || *Stage < 0 || *Stage > 3)
      return error("ds_config.json: key 'zero_optimization.stage': expected 0, 1, 2 or 3");
    F.ZeroStage = static_cast<int>(*Stage);
    auto OnCpu = [&](llvm::StringRef Group) -> llvm::Expected<bool> {
      const llvm::json::Object *G = Zero->getObject(Group);
      if (!G)
        return false;
      std::optional<llvm::StringRef> Device = G->getString("device");
      if (!Device || *Device == "none")
        return false;
      if (*Device == "cpu")
        return true;
      return error("ds_config.json: key 'zero_optimization." + Group + ".device': '" +
                   *Device + "' offload is not modelled (cpu or none)");
    };
    TRAINMEM_READ(Params, OnCpu("offload_param"));
    TRAINMEM_READ(Optimizer, OnCpu("offload_optimizer"));
    F.Offload = Params ? OffloadKind::Params
                       : Optimizer ? OffloadKind::Optimizer : OffloadKind::None;
  }
  F.TrainBatch = O.getInteger("train_batch_size");
  return F;
}

/// "rank=128, update_proj_gap=200, scale=0.25" as trainer.py splits it.
llvm::Expected<std::vector<std::pair<std::string, std::string>>>
splitOptimArgs(llvm::StringRef Text) {
  std::vector<std::pair<std::string, std::string>> Out;
  llvm::SmallVector<llvm::StringRef, 8> Parts;
  Text.split(Parts, ',', -1, false);
  for (llvm::StringRef Part : Parts) {
    auto [Key, Value] = Part.split('=');
    if (Key.trim().empty() || !Part.contains('='))
      return error("training_args.json: key 'optim_args': expected key=value pairs separated "
                   "by commas, found '" +
                   Part.trim() + "'");
    Out.emplace_back(Key.trim().str(), Value.trim().str());
  }
  return Out;
}

llvm::Error readGalore(const Reader &R, llvm::StringRef Optim, TrainingSetup &S) {
  GaloreSetup G;
  G.PerLayer = Optim.endswith("_layerwise");
  const llvm::json::Value *Targets = R.O.get("optim_target_modules");
  if (!Targets || Targets->kind() == llvm::json::Value::Null)
    return R.bad("optim_target_modules", "the GaLore target modules (transformers refuses "
                                         "GaLore without them)");
  if (Targets->getAsString())
    return R.bad("optim_target_modules",
                 "a list of module-name substrings; a regular expression or 'all-linear' "
                 "cannot be matched the way trainmem matches targets");
  TRAINMEM_READ(Names, R.strings("optim_target_modules"));
  G.Targets = std::move(*Names);
  TRAINMEM_READ(Args, R.string("optim_args"));
  if (Args) {
    TRAINMEM_READ(Pairs, splitOptimArgs(*Args));
    for (const auto &Pair : Pairs) {
      const std::string &Key = Pair.first, &Value = Pair.second;
      auto Positive = [&](int64_t &Field) -> llvm::Error {
        if (llvm::StringRef(Value).getAsInteger(10, Field) || Field < 1)
          return R.bad("optim_args", Key + " as a positive integer");
        return llvm::Error::success();
      };
      if (Key == "rank") {
        if (llvm::Error E = Positive(G.Rank))
          return E;
      } else if (Key == "update_proj_gap") {
        if (llvm::Error E = Positive(G.UpdateGap))
          return E;
      } else if (Key == "proj_type" && Value != "std") {
        // The other projections pick a side regardless of shape; trainmem projects the
        // smaller side, as "std" does.
        return R.bad("optim_args", "proj_type=std (the projection trainmem models)");
      }
    }
  }
  S.Galore = std::move(G);
  return llvm::Error::success();
}

llvm::Error readOptimizer(const Reader &R, TrainingSetup &S) {
  TRAINMEM_READ(OptimOpt, R.string("optim"));
  // TrainingArguments' default before transformers 5 with torch 2.8.
  std::string Optim = OptimOpt.value_or("adamw_torch");
  TRAINMEM_READ(WeightDecay, R.number("weight_decay"));
  // Adam and AdamW differ only in decoupled weight decay; an explicit 0 is Adam.
  OptimizerKind AdamKind =
      WeightDecay && *WeightDecay == 0 ? OptimizerKind::Adam : OptimizerKind::AdamW;
  llvm::StringRef O = Optim;
  if (O.startswith("galore_")) {
    llvm::StringRef Base = O.drop_front(llvm::StringRef("galore_").size());
    Base.consume_back("_layerwise");
    if (Base == "adamw")
      S.Optimizer = AdamKind;
    else if (Base == "adamw_8bit")
      S.Optimizer = OptimizerKind::AdamW8bit;
    else if (Base == "adafactor")
      S.Optimizer = OptimizerKind::Adafactor;
    else
      return R.bad("optim", "a GaLore optimizer (galore_adamw, galore_adamw_8bit, "
                            "galore_adafactor, optionally _layerwise), found '" +
                                Optim + "'");
    return readGalore(R, O, S);
  }
  if (O == "adamw_torch" || O == "adamw_hf") {
    S.Optimizer = AdamKind;
    S.Impl = OptimizerImpl::Foreach; // torch.optim's choice for CUDA tensors
  } else if (O == "adamw_torch_fused") {
    S.Optimizer = AdamKind;
    S.Impl = OptimizerImpl::Fused;
  } else if (O == "adamw_bnb_8bit" || O == "adamw_8bit") {
    S.Optimizer = OptimizerKind::AdamW8bit;
  } else if (O == "paged_adamw_8bit") {
    S.Optimizer = OptimizerKind::PagedAdamW8bit;
  } else if (O == "adafactor") {
    S.Optimizer = OptimizerKind::Adafactor;
  } else if (O == "sgd") {
    S.Optimizer = OptimizerKind::Sgd;
  } else if (O == "lion_32bit") {
    S.Optimizer = OptimizerKind::Lion;
  } else {
    return R.bad("optim", "an optimizer trainmem models (adamw_torch, adamw_torch_fused, "
                          "adamw_bnb_8bit, paged_adamw_8bit, adafactor, sgd, lion_32bit, "
                          "galore_*), found '" +
                              Optim + "'");
  }
  return llvm::Error::success();
}

llvm::Error readLora(llvm::StringRef Text, TrainingSetup &S) {
  TRAINMEM_READ(O, parseObject(Text, LoraConfigFile));
  Reader R{O, LoraConfigFile};
  TRAINMEM_READ(PeftType, R.string("peft_type"));
  if (PeftType && *PeftType != "LORA")
    return R.bad("peft_type", "LORA");
  TRAINMEM_READ(Dora, R.boolean("use_dora"));
  if (Dora && *Dora)
    return R.bad("use_dora", "false (DoRA's magnitude vectors are not modelled)");
  LoraSetup L;
  L.Alpha = 8; // peft.LoraConfig's defaults: r=8, lora_alpha=8, lora_dropout=0
  TRAINMEM_READ(Rank, R.positive("r"));
  TRAINMEM_READ(Alpha, R.number("lora_alpha"));
  TRAINMEM_READ(Dropout, R.number("lora_dropout"));
  L.Rank = Rank.value_or(L.Rank);
  L.Alpha = Alpha.value_or(L.Alpha);
  L.Dropout = Dropout.value_or(0.0);
  if (L.Dropout < 0 || L.Dropout >= 1)
    return R.bad("lora_dropout", "a number in [0, 1)");
  if (const llvm::json::Value *T = O.get("target_modules");
      T && T->kind() != llvm::json::Value::Null) {
    if (auto Str = T->getAsString()) {
      if (*Str != "all-linear")
        return R.bad("target_modules", "a list of module names or 'all-linear' (a regular "
                                       "expression cannot be matched the way trainmem "
                                       "matches targets)");
      L.Targets = {"all-linear"};
    } else {
      TRAINMEM_READ(Names, R.strings("target_modules"));
      L.Targets = std::move(*Names);
    }
  }
  S.Lora = std::move(L);
  return llvm::Error::success();
}

llvm::Error readBnb(llvm::StringRef Text, TrainingSetup &S) {
  TRAINMEM_READ(O, parseObject(Text, BnbConfigFile));
  Reader R{O, BnbConfigFile};
  TRAINMEM_READ(Int8, R.boolean("load_in_8bit"));
  if (Int8 && *Int8)
    return R.bad("load_in_8bit", "false (LLM.int8 bases are not modelled; QLoRA is 4-bit)");
  TRAINMEM_READ(FourBit, R.boolean("load_in_4bit"));
  if (!FourBit || !*FourBit)
    return llvm::Error::success();
  // BitsAndBytesConfig defaults: bnb_4bit_quant_type "fp4", no double quantization.
  TRAINMEM_READ(QuantType, R.string("bnb_4bit_quant_type"));
  if (QuantType.value_or("fp4") != "nf4")
    return R.bad("bnb_4bit_quant_type", "\"nf4\" (trainmem models QLoRA's NF4)");
  TRAINMEM_READ(DoubleQuant, R.boolean("bnb_4bit_use_double_quant"));
  if (!DoubleQuant.value_or(false))
    return R.bad("bnb_4bit_use_double_quant", "true (trainmem models QLoRA's double-"
                                              "quantized scales)");
  if (!S.Lora)
    return error("bnb_config.json: a 4-bit base trains only through adapters; give the "
                 "LoRA config too");
  S.Lora->QLora = true;
  return llvm::Error::success();
}

} // namespace

const char *configTargetName(ConfigTarget T) {
  switch (T) {
  case ConfigTarget::HfTrainer:
    return "hf";
  case ConfigTarget::DeepSpeed:
    return "deepspeed";
  case ConfigTarget::AccelerateFsdp:
    return "accelerate-fsdp";
  case ConfigTarget::Torchtune:
    return "torchtune";
  }
  return "?";
}

llvm::Expected<ConfigTarget> parseConfigTarget(llvm::StringRef S) {
  for (ConfigTarget T : {ConfigTarget::HfTrainer, ConfigTarget::DeepSpeed,
                         ConfigTarget::AccelerateFsdp, ConfigTarget::Torchtune})
    if (S == configTargetName(T))
      return T;
  return error("--emit: '" + S + "' is not one of hf, deepspeed, accelerate-fsdp, torchtune");
}

llvm::Expected<std::vector<EmittedFile>>
renderConfigs(ConfigTarget Target, const TrainingSetup &Setup, const EmitContext &Ctx) {
  auto Shape = stepShape(Target, Setup, Ctx);
  if (!Shape)
    return Shape.takeError();
  switch (Target) {
  case ConfigTarget::HfTrainer:
    return renderHfFiles(Target, Setup, Ctx, *Shape);
  case ConfigTarget::DeepSpeed: {
    auto Ds = deepSpeedConfig(Target, Setup, *Shape, DsMode::Standalone);
    if (!Ds)
      return Ds.takeError();
    // The engine config plus what builds the model a DeepSpeed script trains.
    std::vector<EmittedFile> Files;
    Files.emplace_back(DeepSpeedConfigFile, jsonText(std::move(*Ds)));
    Files.emplace_back(ModelLoadFile, jsonText(modelLoad(Setup, Ctx)));
    if (Setup.Lora) {
      Files.emplace_back(LoraConfigFile, jsonText(loraConfig(*Setup.Lora, Ctx)));
      if (Setup.Lora->QLora)
        Files.emplace_back(BnbConfigFile, jsonText(bnbConfig(Setup)));
    }
    return Files;
  }
  case ConfigTarget::AccelerateFsdp:
    return renderAccelerateFsdp(Setup, Ctx, *Shape);
  case ConfigTarget::Torchtune:
    return renderTorchtune(Setup, Ctx, *Shape);
  }
  return error("unknown config target");
}

llvm::Error writeConfigs(ConfigTarget Target, const TrainingSetup &Setup,
                         const EmitContext &Ctx, const std::string &Dir) {
  auto Files = renderConfigs(Target, Setup, Ctx);
  if (!Files)
    return Files.takeError();
  if (std::error_code EC = llvm::sys::fs::create_directories(Dir))
    return error(Dir + ": cannot create the folder: " + EC.message());

  // Every file goes to a temporary beside its destination first; only when all are
  // written are they renamed into place, so a failure leaves no partial set.
  std::vector<std::pair<std::string, llvm::sys::fs::TempFile>> Pending;
  auto DiscardFrom = [&](size_t First) {
    for (size_t I = First; I < Pending.size(); ++I)
      llvm::consumeError(Pending[I].second.discard());
  };
  for (const auto &[Name, Text] : *Files) {
    llvm::SmallString<256> Path(Dir);
    llvm::sys::path::append(Path, Name);
    llvm::Expected<llvm::sys::fs::TempFile> Temp =
        llvm::sys::fs::TempFile::create(Path + "-%%%%%%%%.tmp");
    if (!Temp) {
      DiscardFrom(0);
      return error(Path + ": cannot create a temporary file in its folder: " +
                   llvm::toString(Temp.takeError()));
    }
    llvm::raw_fd_ostream OS(Temp->FD, /*shouldClose=*/false);
    OS << Text;
    OS.flush();
    if (std::error_code EC = OS.error()) {
      OS.clear_error(); // raw_fd_ostream aborts in its destructor on an unchecked error
      llvm::consumeError(Temp->discard());
      DiscardFrom(0);
      return error(Path + ": cannot write: " + EC.message());
    }
    Pending.emplace_back(Path.str().str(), std::move(*Temp));
  }
  for (size_t I = 0; I < Pending.size(); ++I)
    if (llvm::Error E = Pending[I].second.keep(Pending[I].first)) {
      DiscardFrom(I + 1);
      return error(Pending[I].first + ": cannot rename the temporary file into place: " +
                   llvm::toString(std::move(E)));
    }
  return llvm::Error::success();
}

llvm::Expected<TrainingSetup> readHfTrainerConfig(llvm::StringRef TrainingArgsJson,
                                                  llvm::StringRef LoraConfigJson,
                                                  llvm::StringRef BnbConfigJson,
                                                  llvm::StringRef ModelLoadJson,
                                                  llvm::StringRef DeepSpeedConfigJson) {
  TRAINMEM_READ(Args, parseObject(TrainingArgsJson, TrainingArgsFile));
  Reader R{Args, TrainingArgsFile};
  TrainingSetup S;

  // TrainingArguments' defaults where a key is absent: 8 samples per device, no
  // accumulation.
  TRAINMEM_READ(MicroBatch, R.positive("per_device_train_batch_size"));
  TRAINMEM_READ(GradAccum, R.positive("gradient_accumulation_steps"));
  S.MicroBatch = MicroBatch.value_or(8);
  S.GradAccum = GradAccum.value_or(1);

  if (llvm::Error E = readOptimizer(R, S))
    return E;

  TRAINMEM_READ(UseCpu, R.boolean("use_cpu"));
  TRAINMEM_READ(NoCuda, R.boolean("no_cuda"));
  if (UseCpu.value_or(false) || NoCuda.value_or(false))
    S.Device = DeviceKind::Cpu;

  // Checkpointing: the Trainer's flag, or FSDP's own (fsdp_config).
  TRAINMEM_READ(Checkpointing, R.boolean("gradient_checkpointing"));
  bool Blocks = Checkpointing.value_or(false);
  if (const llvm::json::Object *FsdpConfig = Args.getObject("fsdp_config")) {
    Reader F{*FsdpConfig, "training_args.json: fsdp_config"};
    TRAINMEM_READ(Ac, F.boolean("activation_checkpointing"));
    TRAINMEM_READ(PrefixedAc, F.boolean("fsdp_activation_checkpointing"));
    Blocks = Blocks || Ac.value_or(false) || PrefixedAc.value_or(false);
  }
  S.Checkpoint = Blocks ? "blocks" : "none";

  // FSDP options: a space-separated string or a list of FSDPOption names.
  if (R.has("fsdp")) {
    std::vector<std::string> Options;
    if (auto Str = Args.get("fsdp")->getAsString()) {
      llvm::SmallVector<llvm::StringRef, 4> Parts;
      Str->split(Parts, ' ', -1, false);
      for (llvm::StringRef P : Parts)
        Options.push_back(P.str());
    } else {
      TRAINMEM_READ(List, R.strings("fsdp"));
      Options = std::move(*List);
    }
    for (const std::string &Option : Options) {
      if (Option == "full_shard" || Option == "shard_grad_op") {
        S.Sharding.Fsdp = true;
        S.Sharding.ZeroStage = Option == "full_shard" ? 3 : 2;
      } else if (Option == "offload") {
        S.Sharding.Offload = OffloadKind::Params;
      } else if (Option != "auto_wrap" && Option != "no_shard") {
        return R.bad("fsdp", "full_shard or shard_grad_op with optional offload and "
                             "auto_wrap (hybrid sharding is not modelled), found '" +
                                 Option + "'");
      }
    }
    if (S.Sharding.Offload == OffloadKind::Params && !S.Sharding.Fsdp)
      return R.bad("fsdp", "offload together with full_shard or shard_grad_op");
  }

  // DeepSpeed: a path (whose contents may be passed in) or the config inline.
  std::optional<DeepSpeedFacts> Ds;
  const bool UnderDeepSpeed = R.has("deepspeed");
  if (UnderDeepSpeed) {
    std::optional<llvm::json::Object> DsObject;
    if (const llvm::json::Object *Inline = Args.getObject("deepspeed"))
      DsObject = *Inline;
    else if (!DeepSpeedConfigJson.empty()) {
      TRAINMEM_READ(Parsed, parseObject(DeepSpeedConfigJson, DeepSpeedConfigFile));
      DsObject = std::move(Parsed);
    }
    if (DsObject) {
      TRAINMEM_READ(Facts, readDeepSpeed(*DsObject));
      Ds = Facts;
      S.Sharding.ZeroStage = Facts.ZeroStage;
      S.Sharding.Offload = Facts.Offload;
      int64_t PerGpu = S.MicroBatch.value_or(1) * S.GradAccum;
      if (Facts.TrainBatch && *Facts.TrainBatch % PerGpu == 0)
        S.Sharding.Gpus = std::max<int64_t>(*Facts.TrainBatch / PerGpu, 1);
    }
  }

  // Precision: the Trainer's flags, DeepSpeed's mode, and the weights' dtype.
  TRAINMEM_READ(Bf16, R.boolean("bf16"));
  TRAINMEM_READ(Fp16, R.boolean("fp16"));
  if (Bf16.value_or(false) && Fp16.value_or(false))
    return R.bad("bf16", "at most one of bf16 and fp16 to be true");
  bool Bf16Weights = false;
  if (!ModelLoadJson.empty()) {
    TRAINMEM_READ(Load, parseObject(ModelLoadJson, ModelLoadFile));
    Reader L{Load, ModelLoadFile};
    TRAINMEM_READ(DType, L.string("torch_dtype"));
    if (DType && *DType != "float32" && *DType != "bfloat16")
      return L.bad("torch_dtype", "\"float32\" or \"bfloat16\" (trainmem's recipes keep fp32 "
                                  "or pure bf16 weights; \"auto\" depends on the checkpoint)");
    Bf16Weights = DType && *DType == "bfloat16";
    TRAINMEM_READ(Attention, L.string("attn_implementation"));
    if (Attention && *Attention == "eager")
      S.Attention = AttentionImpl::Eager;
    else if (Attention && *Attention == "sdpa")
      S.Attention = AttentionImpl::Sdpa;
  }
  if (UnderDeepSpeed) {
    // With the DeepSpeed config at hand its mode decides; without it, the Trainer's
    // flags switch DeepSpeed's bf16/fp16 (mixed) mode on.
    if (Ds)
      S.Prec = *Ds->Prec;
    else
      S.Prec = Bf16.value_or(false)   ? Precision::MixedBf16
               : Fp16.value_or(false) ? Precision::MixedFp16
                                      : Precision::Fp32;
  } else if (Bf16Weights) {
    S.Prec = Precision::Bf16; // autocast over bf16 weights changes nothing
  } else {
    S.Prec = Bf16.value_or(false)   ? Precision::AmpBf16
             : Fp16.value_or(false) ? Precision::AmpFp16
                                    : Precision::Fp32;
  }

  if (!LoraConfigJson.empty())
    if (llvm::Error E = readLora(LoraConfigJson, S))
      return E;
  if (!BnbConfigJson.empty())
    if (llvm::Error E = readBnb(BnbConfigJson, S))
      return E;
  return S;
}

#undef TRAINMEM_READ

} // namespace trainmem
