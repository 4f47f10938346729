//===- ConfigEmittersTest.cpp - configs for HF, DeepSpeed, accelerate, torchtune -===//
//
// Every key an emitter writes must be a key its engine reads: the key lists in
// data/emitter-keys were taken from each library's documentation or source (versions in
// their headers), and a sweep over representative setups checks every emitted key,
// nested ones as dotted paths, against them. Then, per target, a setup produces the
// values the engine needs; a setting it cannot express is an error naming it; the HF
// files read back into the same setup; and files are written atomically.
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

using namespace trainmem;

namespace {

// ---------------------------------------------------------------------------------
// Builders: setups that read like the situation they describe.

using Edit = std::function<void(TrainingSetup &)>;

TrainingSetup setup(const Edit &Change = {}) {
  TrainingSetup S;
  S.MicroBatch = 4;
  S.GradAccum = 8;
  if (Change)
    Change(S);
  return S;
}

EmitContext llama7b() {
  EmitContext Ctx;
  Ctx.ModelName = "meta-llama/Llama-2-7b-hf";
  Ctx.ModelSource = "samples/llama-2-7b/config.json";
  Ctx.Architecture = "llama";
  return Ctx;
}

void lora(TrainingSetup &S, bool QLora = false) {
  LoraSetup L;
  L.Rank = 16;
  L.Alpha = 32;
  L.Dropout = 0.05;
  L.Targets = {"q_proj", "v_proj"};
  L.QLora = QLora;
  S.Lora = L;
}

void galore(TrainingSetup &S, bool PerLayer) {
  GaloreSetup G;
  G.Rank = 64;
  G.UpdateGap = 100;
  G.Targets = {"attn", "mlp"};
  G.PerLayer = PerLayer;
  S.Galore = G;
}

void zero(TrainingSetup &S, int Stage, int64_t Gpus, OffloadKind Offload = OffloadKind::None) {
  S.Sharding.ZeroStage = Stage;
  S.Sharding.Gpus = Gpus;
  S.Sharding.Offload = Offload;
}

void fsdp(TrainingSetup &S, int Stage, int64_t Gpus, OffloadKind Offload = OffloadKind::None) {
  zero(S, Stage, Gpus, Offload);
  S.Sharding.Fsdp = true;
}

using Files = std::map<std::string, std::string>;

Files render(ConfigTarget T, const TrainingSetup &S, const EmitContext &Ctx = llama7b()) {
  auto Rendered = renderConfigs(T, S, Ctx);
  if (!Rendered) {
    ADD_FAILURE() << "renderConfigs(" << configTargetName(T)
                  << "): " << llvm::toString(Rendered.takeError());
    return {};
  }
  Files Out;
  for (auto &[Name, Text] : *Rendered) {
    EXPECT_TRUE(Out.emplace(Name, Text).second) << "file emitted twice: " << Name;
  }
  return Out;
}

/// The error renderConfigs gives; fails the test if it renders.
std::string renderError(ConfigTarget T, const TrainingSetup &S,
                        const EmitContext &Ctx = llama7b()) {
  auto Rendered = renderConfigs(T, S, Ctx);
  if (Rendered) {
    ADD_FAILURE() << "expected --emit=" << configTargetName(T) << " to refuse the setup";
    return "";
  }
  return llvm::toString(Rendered.takeError());
}

llvm::json::Object parseJson(llvm::StringRef Text) {
  llvm::Expected<llvm::json::Value> V = llvm::json::parse(Text);
  if (!V) {
    ADD_FAILURE() << "not JSON: " << llvm::toString(V.takeError()) << "\n" << Text.str();
    return {};
  }
  if (!V->getAsObject()) {
    ADD_FAILURE() << "not a JSON object:\n" << Text.str();
    return {};
  }
  return *V->getAsObject();
}

/// The value at a dotted path ("zero_optimization.offload_optimizer.device").
const llvm::json::Value *at(const llvm::json::Object &O, llvm::StringRef Path) {
  auto [Head, Rest] = Path.split('.');
  const llvm::json::Value *V = O.get(Head);
  if (!V || Rest.empty())
    return V;
  const llvm::json::Object *Inner = V->getAsObject();
  return Inner ? at(*Inner, Rest) : nullptr;
}

std::string str(const llvm::json::Object &O, llvm::StringRef Path) {
  const llvm::json::Value *V = at(O, Path);
  if (!V || !V->getAsString())
    return "<no string at " + Path.str() + ">";
  return V->getAsString()->str();
}

std::optional<int64_t> integer(const llvm::json::Object &O, llvm::StringRef Path) {
  const llvm::json::Value *V = at(O, Path);
  return V ? V->getAsInteger() : std::nullopt;
}

std::optional<bool> boolean(const llvm::json::Object &O, llvm::StringRef Path) {
  const llvm::json::Value *V = at(O, Path);
  return V ? V->getAsBoolean() : std::nullopt;
}

std::vector<std::string> strings(const llvm::json::Object &O, llvm::StringRef Path) {
  std::vector<std::string> Out;
  if (const llvm::json::Value *V = at(O, Path))
    if (const llvm::json::Array *A = V->getAsArray())
      for (const llvm::json::Value &E : *A)
        Out.push_back(E.getAsString() ? E.getAsString()->str() : "<not a string>");
  return Out;
}

/// The YAML emitters write block mappings, two spaces a level, one `key: value` a line
/// and flow lists; this reads exactly that into dotted paths and their raw values.
std::map<std::string, std::string> yamlMap(llvm::StringRef Text) {
  std::map<std::string, std::string> Out;
  std::vector<std::pair<size_t, std::string>> Parents;
  llvm::SmallVector<llvm::StringRef, 64> Lines;
  Text.split(Lines, '\n', -1, false);
  for (llvm::StringRef Line : Lines) {
    llvm::StringRef Body = Line.ltrim(' ');
    if (Body.empty() || Body.startswith("#"))
      continue;
    size_t Indent = Line.size() - Body.size();
    EXPECT_EQ(Indent % 2, 0u) << "odd indentation: " << Line.str();
    while (!Parents.empty() && Parents.back().first >= Indent)
      Parents.pop_back();
    auto [Key, Value] = Body.split(':');
    EXPECT_TRUE(Body.contains(':')) << "not a key: " << Line.str();
    std::string Path = Parents.empty() ? Key.str() : Parents.back().second + "." + Key.str();
    Out[Path] = Value.trim().str();
    if (Value.trim().empty())
      Parents.emplace_back(Indent, Path);
  }
  return Out;
}

/// Every key of a JSON object as dotted paths, parents included.
void jsonKeys(const llvm::json::Object &O, const std::string &Prefix,
              std::set<std::string> &Out) {
  for (const auto &KV : O) {
    std::string Path = Prefix + KV.first.str();
    Out.insert(Path);
    if (const llvm::json::Object *Inner = KV.second.getAsObject())
      jsonKeys(*Inner, Path + ".", Out);
  }
}

std::set<std::string> keyList(llvm::StringRef Name) {
  llvm::SmallString<256> Path(TRAINMEM_SOURCE_DIR);
  llvm::sys::path::append(Path, "tests", "planner", "data", "emitter-keys");
  llvm::sys::path::append(Path, Name + ".txt");
  auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  if (!Buffer) {
    ADD_FAILURE() << Path.str().str() << ": " << Buffer.getError().message();
    return {};
  }
  std::set<std::string> Keys;
  llvm::SmallVector<llvm::StringRef, 128> Lines;
  (*Buffer)->getBuffer().split(Lines, '\n', -1, false);
  for (llvm::StringRef Line : Lines) {
    Line = Line.trim();
    if (!Line.empty() && !Line.startswith("#"))
      Keys.insert(Line.str());
  }
  return Keys;
}

/// Which key list governs an emitted file.
std::string keyListFor(const std::string &File) {
  static const std::map<std::string, std::string> Lists = {
      {"training_args.json", "hf"},        {"model_load.json", "hf-model-load"},
      {"lora_config.json", "peft-lora"},   {"bnb_config.json", "bnb"},
      {"ds_config.json", "deepspeed"},     {"accelerate_config.yaml", "accelerate-fsdp"},
      {"recipe.yaml", "torchtune"}};
  auto It = Lists.find(File);
  return It == Lists.end() ? "" : It->second;
}

/// Fails for every emitted key its engine's key list does not have.
void expectKnownKeys(const Files &Emitted, const std::string &Case) {
  for (const auto &[File, Text] : Emitted) {
    std::string List = keyListFor(File);
    ASSERT_FALSE(List.empty()) << Case << ": no key list for emitted file " << File;
    std::set<std::string> Allowed = keyList(List);
    std::set<std::string> Keys;
    if (llvm::StringRef(File).endswith(".json")) {
      jsonKeys(parseJson(Text), "", Keys);
    } else {
      for (const auto &KV : yamlMap(Text))
        Keys.insert(KV.first);
    }
    EXPECT_FALSE(Keys.empty()) << Case << ": " << File << " has no keys";
    for (const std::string &Key : Keys)
      EXPECT_TRUE(Allowed.count(Key))
          << Case << ": " << File << " emits '" << Key << "', which is not in " << List
          << ".txt\n"
          << Text;
  }
}

// ---------------------------------------------------------------------------------
// Targets by name.

TEST(ConfigEmitters, TargetNamesRoundTrip) {
  for (ConfigTarget T : {ConfigTarget::HfTrainer, ConfigTarget::DeepSpeed,
                         ConfigTarget::AccelerateFsdp, ConfigTarget::Torchtune}) {
    auto Parsed = parseConfigTarget(configTargetName(T));
    ASSERT_TRUE(bool(Parsed)) << llvm::toString(Parsed.takeError());
    EXPECT_EQ(*Parsed, T);
  }
  auto Bad = parseConfigTarget("megatron");
  ASSERT_FALSE(bool(Bad));
  std::string Message = llvm::toString(Bad.takeError());
  EXPECT_NE(Message.find("'megatron'"), std::string::npos) << Message;
  EXPECT_NE(Message.find("accelerate-fsdp"), std::string::npos) << Message;
}

// ---------------------------------------------------------------------------------
// Every emitted key is one its engine reads.

TEST(ConfigEmitters, EveryEmittedKeyIsInTheEnginesKeyList) {
  struct Case {
    const char *Name;
    ConfigTarget Target;
    Edit Change;
  };
  const std::vector<Case> Cases = {
      {"hf fp32", ConfigTarget::HfTrainer, {}},
      {"hf amp-bf16 fused lora eager", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Impl = OptimizerImpl::Fused;
         S.Attention = AttentionImpl::Eager;
         S.Checkpoint = "blocks";
         lora(S);
       }},
      {"hf qlora paged 8-bit", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.Prec = Precision::Bf16;
         S.Optimizer = OptimizerKind::PagedAdamW8bit;
         lora(S, /*QLora=*/true);
       }},
      {"hf galore layer-wise 8-bit", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.GradAccum = 1;
         S.Optimizer = OptimizerKind::AdamW8bit;
         galore(S, /*PerLayer=*/true);
       }},
      {"hf zero-3 offload mixed-bf16", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.Prec = Precision::MixedBf16;
         S.Checkpoint = "blocks";
         zero(S, 3, 8, OffloadKind::Params);
       }},
      {"hf zero-2 amp-fp16 adafactor", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpFp16;
         S.Optimizer = OptimizerKind::Adafactor;
         zero(S, 2, 4);
       }},
      {"hf fsdp offload qlora", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Checkpoint = "blocks";
         fsdp(S, 3, 4, OffloadKind::Params);
         lora(S, /*QLora=*/true);
       }},
      {"hf cpu sgd", ConfigTarget::HfTrainer,
       [](TrainingSetup &S) {
         S.Device = DeviceKind::Cpu;
         S.Optimizer = OptimizerKind::Sgd;
       }},
      {"deepspeed zero-3 offload optimizer", ConfigTarget::DeepSpeed,
       [](TrainingSetup &S) {
         S.Prec = Precision::MixedBf16;
         S.Checkpoint = "blocks";
         zero(S, 3, 2, OffloadKind::Optimizer);
       }},
      {"deepspeed zero-1 fp16 adam lora", ConfigTarget::DeepSpeed,
       [](TrainingSetup &S) {
         S.Prec = Precision::MixedFp16;
         S.Optimizer = OptimizerKind::Adam;
         zero(S, 1, 2);
         lora(S);
       }},
      {"deepspeed zero-2 amp-bf16 lion", ConfigTarget::DeepSpeed,
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Optimizer = OptimizerKind::Lion;
         zero(S, 2, 4);
       }},
      {"deepspeed sgd-momentum", ConfigTarget::DeepSpeed,
       [](TrainingSetup &S) { S.Optimizer = OptimizerKind::SgdMomentum; }},
      {"accelerate full shard", ConfigTarget::AccelerateFsdp,
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Checkpoint = "blocks";
         fsdp(S, 3, 4);
         lora(S);
       }},
      {"accelerate shard-grad-op bf16 offload", ConfigTarget::AccelerateFsdp,
       [](TrainingSetup &S) {
         S.Prec = Precision::Bf16;
         fsdp(S, 3, 8, OffloadKind::Params);
       }},
      {"torchtune lora", ConfigTarget::Torchtune,
       [](TrainingSetup &S) {
         S.Prec = Precision::Bf16;
         S.Checkpoint = "blocks";
         lora(S);
       }},
      {"torchtune full paged", ConfigTarget::Torchtune,
       [](TrainingSetup &S) {
         S.Prec = Precision::Bf16;
         S.Optimizer = OptimizerKind::PagedAdamW8bit;
       }},
      {"torchtune distributed qlora", ConfigTarget::Torchtune,
       [](TrainingSetup &S) {
         S.Prec = Precision::Bf16;
         fsdp(S, 2, 2);
         lora(S, /*QLora=*/true);
       }},
      {"torchtune sgd-momentum for-loop", ConfigTarget::Torchtune,
       [](TrainingSetup &S) { S.Optimizer = OptimizerKind::SgdMomentum; }},
  };
  for (const Case &C : Cases) {
    Files Emitted = render(C.Target, setup(C.Change));
    EXPECT_FALSE(Emitted.empty()) << C.Name;
    expectKnownKeys(Emitted, C.Name);
  }
}

/// The check above must be able to fail: a key outside the list is reported.
TEST(ConfigEmitters, KeyCheckCatchesAnUnknownKey) {
  std::set<std::string> Allowed = keyList("deepspeed");
  std::set<std::string> Keys;
  jsonKeys(parseJson(R"({"zero_optimization": {"stage": 3, "offload_optimiser": {}}})"), "",
           Keys);
  EXPECT_TRUE(Allowed.count("zero_optimization.stage"));
  EXPECT_FALSE(Allowed.count("zero_optimization.offload_optimiser"));
  EXPECT_TRUE(Keys.count("zero_optimization.offload_optimiser"));
}

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
                 Case{OptimizerKind::Adam, OptimizerImpl::ForLoop, "adamw_torch"},
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
  Files F = render(ConfigTarget::HfTrainer,
                   setup([](TrainingSetup &S) { S.Device = DeviceKind::Cpu; }));
  EXPECT_EQ(boolean(parseJson(F["training_args.json"]), "use_cpu"), true);
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

// ---------------------------------------------------------------------------------
// Settings no target expresses.

TEST(ConfigEmitters, SettingsNoEngineConfigHoldsAreErrors) {
  struct Case {
    const char *Expect;
    Edit Change;
  };
  const std::vector<Case> Cases = {
      {"--sparse-update=last:2", [](TrainingSetup &S) { S.SparseUpdate = "last:2"; }},
      {"--train", [](TrainingSetup &S) { S.TrainRegex = "layers\\.3"; }},
      {"--freeze", [](TrainingSetup &S) { S.FreezeRegex = "embed"; }},
      {"--keep-grads", [](TrainingSetup &S) { S.KeepGrads = true; }},
      {"--checkpoint=every:2", [](TrainingSetup &S) { S.Checkpoint = "every:2"; }},
      {"--checkpoint=selective", [](TrainingSetup &S) { S.Checkpoint = "selective"; }},
      {"--checkpoint=budget:1GiB", [](TrainingSetup &S) { S.Checkpoint = "budget:1GiB"; }},
      {"GaLore", [](TrainingSetup &S) {
         lora(S);
         galore(S, false);
       }},
      {"--zeroth-order", [](TrainingSetup &S) { S.ZerothOrder = true; }},
      {"--loss=cut-cross-entropy", [](TrainingSetup &S) { S.Loss = LossKind::CutCrossEntropy; }},
      {"--activation-storage=int8", [](TrainingSetup &S) { S.Int8Activations = true; }},
  };
  for (ConfigTarget T : {ConfigTarget::HfTrainer, ConfigTarget::DeepSpeed,
                         ConfigTarget::AccelerateFsdp, ConfigTarget::Torchtune})
    for (const Case &C : Cases) {
      std::string Message = renderError(T, setup(C.Change));
      EXPECT_NE(Message.find(C.Expect), std::string::npos) << Message;
      EXPECT_NE(Message.find(std::string("--emit=") + configTargetName(T)), std::string::npos)
          << Message;
    }
  // The trainable set planner/StrategyApply derives from LoRA is the adapters' own.
  Files Adapters = render(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                            lora(S);
                            S.TrainableFile = "(LoRA adapters)";
                            S.TrainableNames = {"layers.0.q_proj.lora_A"};
                          }));
  EXPECT_TRUE(Adapters.count("lora_config.json"));
  std::string Chosen = renderError(ConfigTarget::HfTrainer, setup([](TrainingSetup &S) {
                                     S.TrainableFile = "trainable.txt";
                                     S.TrainableNames = {"layers.0.q_proj.weight"};
                                   }));
  EXPECT_NE(Chosen.find("--trainable-file"), std::string::npos) << Chosen;
  // every:1 is every block.
  Files F = render(ConfigTarget::HfTrainer,
                   setup([](TrainingSetup &S) { S.Checkpoint = "every:1"; }));
  EXPECT_EQ(boolean(parseJson(F["training_args.json"]), "gradient_checkpointing"), true);
}

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

// ---------------------------------------------------------------------------------
// Round trip through the HF files.

/// The fields a Trainer config carries, in one comparable line.
std::string describe(const TrainingSetup &S) {
  std::string Out = std::string(precisionName(S.Prec)) + " " + optimizerName(S.Optimizer) +
                    " accum=" + std::to_string(S.GradAccum) +
                    " micro=" + std::to_string(S.MicroBatch.value_or(-1)) +
                    " checkpoint=" + S.Checkpoint;
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

TEST(ConfigEmittersRoundTrip, HfFilesReadBackIntoTheSameSetup) {
  const std::vector<std::pair<const char *, Edit>> Cases = {
      {"fp32 adamw", {}},
      {"amp-bf16 fused blocks lora",
       [](TrainingSetup &S) {
         S.Prec = Precision::AmpBf16;
         S.Impl = OptimizerImpl::Fused;
         S.Checkpoint = "blocks";
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
  for (const auto &[Name, Change] : Cases) {
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

// ---------------------------------------------------------------------------------
// Writing files.

struct TempDir {
  llvm::SmallString<128> Path;
  TempDir() {
    std::error_code EC = llvm::sys::fs::createUniqueDirectory("trainmem-emit", Path);
    EXPECT_FALSE(EC) << EC.message();
  }
  ~TempDir() { llvm::sys::fs::remove_directories(Path); }
  std::string sub(llvm::StringRef Name) const {
    llvm::SmallString<128> P(Path);
    llvm::sys::path::append(P, Name);
    return P.str().str();
  }
};

std::vector<std::string> listDir(const std::string &Dir) {
  std::vector<std::string> Names;
  std::error_code EC;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC))
    Names.push_back(llvm::sys::path::filename(It->path()).str());
  EXPECT_FALSE(EC) << EC.message();
  llvm::sort(Names);
  return Names;
}

TEST(ConfigEmittersWrite, WritesEveryFileIntoANewFolder) {
  TempDir Tmp;
  TrainingSetup S = setup([](TrainingSetup &Edited) {
    Edited.Prec = Precision::MixedBf16;
    zero(Edited, 3, 2);
    lora(Edited, /*QLora=*/true);
  });
  std::string Out = Tmp.sub("nested/configs");
  llvm::Error E = writeConfigs(ConfigTarget::HfTrainer, S, llama7b(), Out);
  ASSERT_FALSE(bool(E)) << llvm::toString(std::move(E));
  EXPECT_EQ(listDir(Out),
            (std::vector<std::string>{"bnb_config.json", "ds_config.json", "lora_config.json",
                                      "model_load.json", "training_args.json"}))
      << "no temporary files are left behind";
  Files Expected = render(ConfigTarget::HfTrainer, S);
  for (const auto &[Name, Text] : Expected) {
    auto Buffer = llvm::MemoryBuffer::getFile(Out + "/" + Name);
    ASSERT_TRUE(bool(Buffer)) << Name;
    EXPECT_EQ((*Buffer)->getBuffer().str(), Text) << Name;
  }
  // Writing again replaces the files in place.
  E = writeConfigs(ConfigTarget::HfTrainer, S, llama7b(), Out);
  ASSERT_FALSE(bool(E)) << llvm::toString(std::move(E));
  EXPECT_EQ(listDir(Out).size(), 5u);
}

TEST(ConfigEmittersWrite, AnUnwritableFolderIsAnErrorNamingThePath) {
  TempDir Tmp;
  // A folder below a regular file cannot exist, whoever runs the test (root included).
  std::string Blocker = Tmp.sub("not-a-folder");
  {
    std::error_code EC;
    llvm::raw_fd_ostream OS(Blocker, EC);
    ASSERT_FALSE(EC) << EC.message();
    OS << "x";
  }
  std::string Out = Blocker + "/configs";
  llvm::Error E = writeConfigs(ConfigTarget::HfTrainer, setup(), llama7b(), Out);
  ASSERT_TRUE(bool(E));
  std::string Message = llvm::toString(std::move(E));
  EXPECT_NE(Message.find(Out), std::string::npos) << Message;

  // A render error comes before anything touches the disk.
  std::string Fresh = Tmp.sub("never-created");
  E = writeConfigs(ConfigTarget::Torchtune, setup(), EmitContext{}, Fresh);
  ASSERT_TRUE(bool(E));
  llvm::consumeError(std::move(E));
  EXPECT_FALSE(llvm::sys::fs::exists(Fresh));
}

} // namespace
