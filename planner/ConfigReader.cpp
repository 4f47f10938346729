//===- ConfigReader.cpp - Trainer configs read back into a setup ------------------===//
//
// readHfTrainerConfig: TrainingArguments, and the PEFT, bitsandbytes, from_pretrained and
// DeepSpeed files beside it, read back into a TrainingSetup. Values of the wrong type are
// errors naming the file and the key.
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"
#include "analyzer/SafeJson.h"
#include "planner/EmitterSupport.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/JSON.h"

#include <algorithm>
#include <optional>

namespace trainmem {

using namespace emit;

//===----------------------------------------------------------------------------===//
// Reading TrainingArguments back.
//===----------------------------------------------------------------------------===//

namespace {

llvm::Expected<llvm::json::Object> parseObject(llvm::StringRef Text, llvm::StringRef What) {
  llvm::Expected<llvm::json::Value> V = parseJson(Text);
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
  if (UseCpu.value_or(false) || NoCuda.value_or(false)) {
    S.Device = DeviceKind::Cpu;
    // torch.optim defaults to the single-tensor loop for CPU tensors.
    if (S.Impl == OptimizerImpl::Foreach)
      S.Impl = OptimizerImpl::ForLoop;
  }

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
    TRAINMEM_READ(UseCache, L.boolean("use_cache"));
    if (UseCache)
      S.KvCache = *UseCache ? KvCacheMode::On : KvCacheMode::Off;
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
