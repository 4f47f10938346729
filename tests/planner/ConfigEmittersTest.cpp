//===- ConfigEmittersTest.cpp - configs for HF, DeepSpeed, accelerate, torchtune -===//
//
// Every key an emitter writes must be a key its engine reads: the key lists in
// data/emitter-keys were taken from each library's documentation or source (versions in
// their headers), and a sweep over representative setups checks every emitted key,
// nested ones as dotted paths, against them. Then, per target, a setup produces the
// values the engine needs; a setting it cannot express is an error naming it; the HF
// files read back into the same setup; and files are written atomically.
//
// This file holds the key-list sweep and what every target shares (target names, the
// settings no engine config holds, writing files); the per-engine tests are in
// HfEmitterTest.cpp, DeepSpeedFsdpEmitterTest.cpp and TorchtuneEmitterTest.cpp, the
// read-back tests in ConfigReaderTest.cpp.
//
//===----------------------------------------------------------------------------===//
#include "planner/ConfigEmitters.h"

#include "EmitterTestSupport.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

using namespace trainmem;
using namespace trainmem::emittest;

namespace {

// ---------------------------------------------------------------------------------
// Key lists: which keys each engine reads.

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
