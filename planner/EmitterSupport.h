//===- EmitterSupport.h - internals the config emitters share -----------*- C++ -*-===//
//
// Internal to the config emitters (ConfigEmitters.cpp, HfEmitters.cpp,
// TorchtuneEmitter.cpp, ConfigReader.cpp); not part of the planner's interface, which is
// ConfigEmitters.h, and not to be included from outside planner/. Declares what more than
// one of those files needs: the names of the emitted files, values several engines'
// configs are given, the error helpers, JSON and YAML text output, the step shape every
// target is checked into, and the renderers ConfigEmitters.cpp dispatches to. Helpers
// that one file uses stay in that file.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_EMITTERSUPPORT_H
#define TRAINMEM_PLANNER_EMITTERSUPPORT_H

#include "planner/ConfigEmitters.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <string>
#include <vector>

namespace trainmem::emit {

inline constexpr const char *TrainingArgsFile = "training_args.json";
inline constexpr const char *ModelLoadFile = "model_load.json";
inline constexpr const char *LoraConfigFile = "lora_config.json";
inline constexpr const char *BnbConfigFile = "bnb_config.json";
inline constexpr const char *DeepSpeedConfigFile = "ds_config.json";
inline constexpr const char *AccelerateConfigFile = "accelerate_config.yaml";
inline constexpr const char *TorchtuneRecipeFile = "recipe.yaml";

// Starting learning rates for the engines whose configs must name one (DeepSpeed's
// optimizer block, torchtune's optimizer): torchtune's own full and LoRA recipes use
// these. A learning rate is not part of a memory plan; users tune it.
inline constexpr double FullFinetuneLr = 2e-5;
inline constexpr double LoraLr = 3e-4;

// torch.optim.AdamW's default weight decay. TrainingArguments defaults to 0, which makes
// AdamW the same update as Adam; writing AdamW's own default keeps the two apart.
inline constexpr double AdamWWeightDecay = 0.01;

//===----------------------------------------------------------------------------===//
// Errors (EmitterSupport.cpp).
//===----------------------------------------------------------------------------===//

/// An error whose message is Msg.
llvm::Error error(const llvm::Twine &Msg);
/// An error naming the target: "--emit=<target>: <Msg>".
llvm::Error emitError(ConfigTarget T, const llvm::Twine &Msg);

//===----------------------------------------------------------------------------===//
// Text output (EmitterSupport.cpp): numbers in their shortest round-tripping form,
// JSON with sorted keys, and the YAML the launcher and recipe configs are written in.
//===----------------------------------------------------------------------------===//

enum class Notation { General, Fixed };

/// D in the fewest digits that read back as D.
std::string shortestNumber(double D, Notation N = Notation::General);
/// O pretty-printed with sorted keys, ending in a newline.
std::string jsonText(llvm::json::Object O);
/// D in fixed notation with a decimal point (YAML 1.1 reads `1e-05` as a string).
std::string yamlFloat(double D);
std::string yamlBool(bool B);
/// Items as a YAML flow list of quoted strings.
std::string yamlFlowList(const std::vector<std::string> &Items);

struct YamlText {
  std::string Text;
  void comment(llvm::StringRef Line) { Text += "# " + Line.str() + "\n"; }
  void key(unsigned Indent, llvm::StringRef Key, llvm::StringRef Value = "") {
    Text += std::string(Indent, ' ') + Key.str() + ":" + (Value.empty() ? "" : " ") +
            Value.str() + "\n";
  }
};

//===----------------------------------------------------------------------------===//
// Checks every target shares (ConfigEmitters.cpp).
//===----------------------------------------------------------------------------===//

struct StepShape {
  int64_t MicroBatch = 1;
  int64_t GradAccum = 1;
  int64_t Gpus = 1;
  bool CheckpointBlocks = false;
};

/// What PyTorch FSDP can run: FULL_SHARD or SHARD_GRAD_OP, amp-* precision,
/// parameter offload, no GaLore, CUDA; the error names what the setup asks otherwise.
llvm::Error checkFsdp(ConfigTarget T, const TrainingSetup &S);

//===----------------------------------------------------------------------------===//
// Renderers (HfEmitters.cpp, TorchtuneEmitter.cpp).
//===----------------------------------------------------------------------------===//

/// peft.LoraConfig (lora_config.json).
llvm::json::Object loraConfig(const LoraSetup &L, const EmitContext &Ctx);
/// transformers.BitsAndBytesConfig for QLoRA (bnb_config.json).
llvm::json::Object bnbConfig(const TrainingSetup &S);
/// Keyword arguments for AutoModel*.from_pretrained (model_load.json).
llvm::json::Object modelLoad(const TrainingSetup &S, const EmitContext &Ctx);

/// A DeepSpeed config of its own, or one under the Trainer with "auto" values.
enum class DsMode { Standalone, UnderHfTrainer };

/// ds_config.json for Mode.
llvm::Expected<llvm::json::Object> deepSpeedConfig(ConfigTarget T, const TrainingSetup &S,
                                                   const StepShape &Shape, DsMode Mode);

/// The Trainer's files (--emit=hf, and beside accelerate_config.yaml).
llvm::Expected<std::vector<EmittedFile>> renderHfFiles(ConfigTarget T, const TrainingSetup &S,
                                                       const EmitContext &Ctx,
                                                       const StepShape &Shape);

/// --emit=accelerate-fsdp: accelerate_config.yaml, then the Trainer's files.
llvm::Expected<std::vector<EmittedFile>>
renderAccelerateFsdp(const TrainingSetup &S, const EmitContext &Ctx, const StepShape &Shape);

/// --emit=torchtune: recipe.yaml.
llvm::Expected<std::vector<EmittedFile>>
renderTorchtune(const TrainingSetup &S, const EmitContext &Ctx, const StepShape &Shape);

} // namespace trainmem::emit

#endif // TRAINMEM_PLANNER_EMITTERSUPPORT_H
