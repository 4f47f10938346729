//===- ConfigEmitters.h - training configs that carry out a plan ------*- C++ -*-===//
//
// A plan is only useful once the engine people train with runs it. The emitters turn a
// TrainingSetup into the files those engines read: Hugging Face TrainingArguments with
// PEFT and bitsandbytes configs, a DeepSpeed config, an accelerate FSDP launcher config,
// or a torchtune recipe. Rendering is a pure function of the setup, so tests check text;
// a setting an engine cannot express is an error naming it, never a dropped key. The HF
// files read back into a TrainingSetup, which closes the loop for round-trip tests and
// lets `trainmem analyze` check a config someone already has.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_CONFIGEMITTERS_H
#define TRAINMEM_PLANNER_CONFIGEMITTERS_H

#include "analyzer/TrainingSetup.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trainmem {

/// The engines a config is written for (`trainmem plan --emit=...`).
enum class ConfigTarget { HfTrainer, DeepSpeed, AccelerateFsdp, Torchtune };

/// "hf", "deepspeed", "accelerate-fsdp", "torchtune".
const char *configTargetName(ConfigTarget T);
/// Parses a target name; the error lists the names allowed.
llvm::Expected<ConfigTarget> parseConfigTarget(llvm::StringRef S);

/// What an emitter needs beyond the setup: which model, and the micro-batch the
/// prediction was made for.
struct EmitContext {
  /// Hugging Face hub name or local path, written where an engine loads the model
  /// (`from_pretrained`, PEFT's base_model_name_or_path); also how torchtune's model
  /// builder is chosen ("meta-llama/Llama-2-7b-hf" -> llama2_7b). May be empty.
  std::string ModelName;
  /// The file trainmem read (ONNX or config.json); informational.
  std::string ModelSource;
  /// Samples per GPU per micro-step, used when the setup has no `--micro-batch`
  /// (TrainingSetup::MicroBatch wins when set).
  int64_t MicroBatch = 1;
  /// Hugging Face model_type ("llama", "gpt2", ...); may be empty. torchtune needs it.
  std::string Architecture;
  /// The checkpoint's own quantization ("mxfp4", "fp8": Graph::
  /// DeclaredCheckpointQuantization); the model is loaded dequantized. May be empty.
  std::string CheckpointQuantization;
  /// PEFT's task type for a classification head ("SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS": Graph::
  /// PeftTaskType); empty: by the model family.
  std::string PeftTaskType;
  /// The head's linear modules that PEFT's all-linear would adapt and that task type then
  /// refuse to wrap (headLinearsPeftWouldAdapt): an all-linear LoraConfig excludes them.
  std::vector<std::string> PeftExcludeModules;
};

/// One emitted file: a name relative to the output folder, and its contents.
using EmittedFile = std::pair<std::string, std::string>;

/// The files that run Setup on Target, by name, in a stable order. Pure (no I/O).
///
/// - hf: `training_args.json` (TrainingArguments keys), `model_load.json`
///   (`from_pretrained` keyword arguments: torch_dtype, attn_implementation, since
///   TrainingArguments cannot say the dtype of the weights), `lora_config.json` (PEFT
///   LoraConfig) with LoRA, `bnb_config.json` (BitsAndBytesConfig) with QLoRA, and
///   `ds_config.json` when DeepSpeed runs the step (ZeRO, or a mixed-* precision).
/// - deepspeed: `ds_config.json`, plus the model, PEFT and bitsandbytes files.
/// - accelerate-fsdp: `accelerate_config.yaml` (the launcher's FSDP plugin), plus the
///   hf files for what a launcher config cannot hold (batch, accumulation, optimizer).
/// - torchtune: `recipe.yaml`, the memory-shaping keys of a torchtune recipe config.
///
/// Errors name the target and the setting it cannot express, and what would work.
llvm::Expected<std::vector<EmittedFile>> renderConfigs(ConfigTarget Target,
                                                       const TrainingSetup &Setup,
                                                       const EmitContext &Ctx);

/// Renders the configs and writes each into Dir (created if missing) through a
/// temporary file renamed into place, so a reader never sees a partial file; nothing is
/// renamed unless every file was written. Errors name the path.
llvm::Error writeConfigs(ConfigTarget Target, const TrainingSetup &Setup,
                         const EmitContext &Ctx, const std::string &Dir);

/// Reads an emitted (or hand-written) TrainingArguments JSON back into a setup:
/// precision, optimizer and its implementation, GaLore, gradient accumulation,
/// micro-batch, checkpointing, FSDP and device. LoraConfigJson (PEFT LoraConfig) and
/// BnbConfigJson (BitsAndBytesConfig) add LoRA and QLoRA; ModelLoadJson
/// (`model_load.json`) tells pure bf16 from fp32, and DeepSpeedConfigJson gives the
/// ZeRO stage, offload and the precision of a run TrainingArguments hands to DeepSpeed.
/// Each may be empty. Keys this does not interpret are ignored (a TrainingArguments
/// file has dozens); a value it interprets with the wrong type or an unknown optimizer
/// is an error naming the key.
llvm::Expected<TrainingSetup>
readHfTrainerConfig(llvm::StringRef TrainingArgsJson, llvm::StringRef LoraConfigJson,
                    llvm::StringRef BnbConfigJson, llvm::StringRef ModelLoadJson = "",
                    llvm::StringRef DeepSpeedConfigJson = "");

} // namespace trainmem

#endif
