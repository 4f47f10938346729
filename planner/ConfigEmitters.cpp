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
#include "planner/CheckpointOptimal.h"
#include "planner/EmitterSupport.h"

#include "analyzer/PendingFile.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

namespace trainmem {

using namespace emit;

//===----------------------------------------------------------------------------===//
// Checks every target shares.
//===----------------------------------------------------------------------------===//

namespace {

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
                            "block or none (use --checkpoint=blocks or none); it runs as " +
                            checkpointEngines(Checkpoint));
  return Shape;
}

} // namespace

namespace emit {

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

} // namespace emit

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
  // written are they renamed into place, so a failure leaves no partial set (the files
  // not yet renamed are discarded as Pending goes).
  std::vector<PendingFile> Pending;
  Pending.reserve(Files->size());
  for (const auto &[Name, Text] : *Files) {
    llvm::SmallString<256> Path(Dir);
    llvm::sys::path::append(Path, Name);
    llvm::Expected<PendingFile> File = PendingFile::create(Path);
    if (!File)
      return File.takeError();
    File->os() << Text;
    if (llvm::Error E = File->finishWriting())
      return E;
    Pending.push_back(std::move(*File));
  }
  for (PendingFile &File : Pending)
    if (llvm::Error E = File.commit())
      return E;
  return llvm::Error::success();
}

} // namespace trainmem
