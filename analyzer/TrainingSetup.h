//===- TrainingSetup.h - how a training step is configured ------------*- C++ -*-===//
//
// The typed form of every option that shapes a training step (DESIGN.md, "Contracts"):
// precision recipe, optimizer and its implementation, loss, which parameters train, and
// the strategies. Parsed from the command line or a `--setup` JSON object, echoed in the
// report under `setup` with the same keys.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_TRAININGSETUP_H
#define TRAINMEM_ANALYZER_TRAININGSETUP_H

#include "analyzer/DType.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

enum class Precision { Fp32, AmpBf16, AmpFp16, Bf16, MixedBf16, MixedFp16 };
enum class AutocastPolicy { Cuda, Cpu };
enum class OptimizerKind { AdamW, Adam, Sgd, SgdMomentum, Adafactor, AdamW8bit, PagedAdamW8bit, Lion, AdamWFp8 };
enum class OptimizerImpl { ForLoop, Foreach, Fused };
/// CutCrossEntropy: Wijmans et al. 2024 (Apple's cut-cross-entropy): the loss is computed
/// from the head's input and weight blockwise; logits are never materialised and only a
/// log-sum-exp per row is kept.
enum class LossKind { Auto, CrossEntropy, CutCrossEntropy, Mse, None };
enum class TieMode { Auto, Yes, No };
/// Where the step runs: kernels differ in what they allocate (CUDA's dropout keeps a bool
/// mask, the CPU one a mask in the input dtype; oneDNN convolutions reorder operands).
enum class DeviceKind { Cuda, Cpu };
/// How attention runs: the exported ops as they are (eager: scores and probabilities
/// materialised and saved), or fused scaled_dot_product_attention (flash /
/// memory-efficient kernels save only the output and a log-sum-exp per row). Auto: SDPA
/// for Hugging Face configs (transformers' default), eager for ONNX files.
enum class AttentionImpl { Auto, Eager, Sdpa };
/// The PyTorch release whose behaviour is modelled where releases differ. The rules follow
/// torch 1.13 (the fixtures' measurements) except where 2.x is known to allocate
/// otherwise: foreach Adam(W) builds one list of temporaries in 2.x (sqrt, then
/// in-place div and add), two in 1.13 (an out-of-place add for the denominator). Auto:
/// 1.13 on the CPU (Debian's torch, the CPU measurements), 2 on CUDA devices.
enum class TorchVersion { Auto, V1_13, V2 };
/// Whether a decoder's training forward fills its key/value cache (transformers'
/// `use_cache`; Graph::TrainingKvCache). Auto: the model's config says (true unless set
/// false); Off: the script passes use_cache=False, which changes nothing but memory.
enum class KvCacheMode { Auto, On, Off };

/// LoRA as PEFT builds it (`--lora-*`, `--qlora`); applied by planner/LoraTransform.
struct LoraSetup {
  int64_t Rank = 8;
  double Alpha = 16;
  /// Module names matched against the end of layer paths ("q_proj", "c_attn"); empty
  /// means the architecture's PEFT default; {"all-linear"} every linear but the head.
  std::vector<std::string> Targets;
  double Dropout = 0.0;
  /// QLoRA: base linear weights in bitsandbytes NF4 (double-quantized), compute in bf16.
  bool QLora = false;
  /// PEFT's modules_to_save: modules (names matched against the end of module paths) that
  /// train whole beside the adapters, each as a trainable copy beside its frozen original.
  /// Unset: PEFT's task default (a classification head's `classifier` / `score`, else
  /// none); empty: none.
  std::optional<std::vector<std::string>> ModulesToSave;
};

/// GaLore (Zhao et al. 2024, galore-torch): Adam moments on a rank-r projection of each
/// target weight's gradient; the projector is refreshed by an SVD every UpdateGap steps.
struct GaloreSetup {
  int64_t Rank = 128;
  int64_t UpdateGap = 200;
  /// Substrings of layer paths that mark target weights (galore-torch's examples use
  /// "attn" and "mlp"); only 2-D weights are projected.
  std::vector<std::string> Targets = {"attn", "mlp"};
  /// Layer-wise updates in post-accumulate-grad hooks: one weight's gradient at a time.
  bool PerLayer = false;
};

/// Data parallelism over several GPUs (DeepSpeed ZeRO, PyTorch FSDP, DDP) and offload.
enum class OffloadKind { None, Optimizer, Params };

struct ShardingSetup {
  int ZeroStage = 0;     ///< 0 (DDP when Gpus > 1), 1, 2, 3
  bool Fsdp = false;     ///< PyTorch FSDP: FULL_SHARD (stage 3) or SHARD_GRAD_OP (--zero=2)
  int64_t Gpus = 1;
  OffloadKind Offload = OffloadKind::None;
  bool active() const { return Gpus > 1 || ZeroStage > 0 || Fsdp || Offload != OffloadKind::None; }
};

struct TrainingSetup {
  Precision Prec = Precision::Fp32;
  AutocastPolicy Autocast = AutocastPolicy::Cuda;
  DeviceKind Device = DeviceKind::Cuda;
  AttentionImpl Attention = AttentionImpl::Auto;
  TorchVersion Torch = TorchVersion::Auto;
  KvCacheMode KvCache = KvCacheMode::Auto;
  /// Whether the forward fills the key/value cache of a model whose config says
  /// ConfigUseCache (Graph::TrainingKvCache).
  bool fillsKvCache(bool ConfigUseCache) const {
    return KvCache == KvCacheMode::Auto ? ConfigUseCache : KvCache == KvCacheMode::On;
  }
  /// Auto resolved by the device.
  TorchVersion torchVersion() const {
    return Torch != TorchVersion::Auto ? Torch
           : Device == DeviceKind::Cpu ? TorchVersion::V1_13
                                       : TorchVersion::V2;
  }
  /// Auto resolved by the device and the model's source: a Hugging Face config builds
  /// transformers 5's graph, and transformers 5 runs on PyTorch 2 only.
  TorchVersion torchVersionFor(llvm::StringRef SourceFormat) const {
    return Torch == TorchVersion::Auto && SourceFormat == "hf-config" ? TorchVersion::V2
                                                                      : torchVersion();
  }
  OptimizerKind Optimizer = OptimizerKind::AdamW;
  OptimizerImpl Impl = OptimizerImpl::ForLoop;
  LossKind Loss = LossKind::Auto;
  TieMode Tie = TieMode::Auto;
  /// `--trainable-file`: initializer names, one a line (the file's contents, read once).
  std::optional<std::string> TrainableFile;
  std::vector<std::string> TrainableNames;
  std::string TrainRegex;   ///< `--train`
  std::string FreezeRegex;  ///< `--freeze`
  bool KeepGrads = false;   ///< `--keep-grads`: zero_grad(set_to_none=False)
  /// `--checkpoint`: none, blocks, every:K, first:K, selective, a per-block selection
  /// (see BlockCheckpointSelection), or budget:SIZE / optimal:SIZE, which the planner
  /// resolves to one of the others before simulation.
  std::string Checkpoint = "none";
  /// `--sparse-update`: "" (off), "last:K" (the last K repeated blocks and what follows
  /// them), "bias-only" (BitFit: every bias). The planner resolves layers:REGEX,
  /// weights:REGEX, biases:REGEX and budget:SIZE into TrainableNames before the census.
  std::string SparseUpdate;
  int64_t GradAccum = 1;
  std::optional<int64_t> MicroBatch;
  std::optional<double> Dropout;
  std::string Gpu;
  /// `--cuda-context`: the device memory the process holds outside the caching allocator
  /// (CUDA context, loaded kernels), as measured on the user's machine; unset, peak_reserved
  /// adds estimateCudaRuntimeOverhead()'s published-figure estimate.
  std::optional<int64_t> CudaContextBytes;
  std::optional<LoraSetup> Lora;
  ShardingSetup Sharding;
  std::optional<GaloreSetup> Galore;
  /// Zeroth-order fine-tuning (MeZO): forward passes only, parameters perturbed and
  /// updated in place; no saved activations, gradients or optimizer state.
  bool ZerothOrder = false;
  /// Saved activations kept in 8 bits (saved-tensor hooks that quantize floating tensors
  /// with one fp32 scale per block of 256 values, dequantized in backward).
  bool Int8Activations = false;

  /// Storage dtype of parameters and floating buffers under this recipe.
  DType weightDType() const;
  /// Dtype of parameter gradients.
  DType gradDType() const;
  /// Dtype of Adam-style moments (bitsandbytes 8-bit optimizers aside).
  DType optimizerStateDType() const;
  /// True when an fp32 master copy of trainable weights is kept (mixed-*).
  bool keepsMasterWeights() const;
};

const char *precisionName(Precision P);
const char *optimizerName(OptimizerKind O);
const char *optimizerImplName(OptimizerImpl I);
const char *lossName(LossKind L);
const char *autocastPolicyName(AutocastPolicy P);
const char *tieModeName(TieMode T);
const char *deviceName(DeviceKind D);
const char *attentionName(AttentionImpl A);
const char *torchVersionName(TorchVersion V);
const char *kvCacheName(KvCacheMode M);
const char *offloadName(OffloadKind O);
llvm::Expected<OffloadKind> parseOffload(llvm::StringRef S);

/// Parsers shared by the CLI and `--setup`; errors say what was found and what is allowed.
llvm::Expected<Precision> parsePrecision(llvm::StringRef S);
llvm::Expected<OptimizerKind> parseOptimizer(llvm::StringRef S);
llvm::Expected<OptimizerImpl> parseOptimizerImpl(llvm::StringRef S);
llvm::Expected<LossKind> parseLoss(llvm::StringRef S);
llvm::Expected<AutocastPolicy> parseAutocastPolicy(llvm::StringRef S);
llvm::Expected<TieMode> parseTieMode(llvm::StringRef S);
llvm::Expected<DeviceKind> parseDevice(llvm::StringRef S);
llvm::Expected<AttentionImpl> parseAttention(llvm::StringRef S);
llvm::Expected<TorchVersion> parseTorchVersion(llvm::StringRef S);
llvm::Expected<KvCacheMode> parseKvCache(llvm::StringRef S);
llvm::Error validateCheckpoint(llvm::StringRef S);

/// A per-block checkpoint selection, `blocks:0-3,7+selective:4-6`: repeated blocks by
/// index in execution order (as first:K counts them), wrapped whole (Full) or under the
/// selective policy that keeps matmul outputs (Selective). Either part may be absent.
struct BlockCheckpointSelection {
  std::vector<int64_t> Full;      ///< ascending, no duplicates
  std::vector<int64_t> Selective; ///< ascending, disjoint from Full
};
/// Parses the per-block form; nullopt when S is not of that form (plain "blocks",
/// "selective" and the other modes), an error when it is but is malformed.
llvm::Expected<std::optional<BlockCheckpointSelection>>
parseBlockCheckpointSelection(llvm::StringRef S);
/// The canonical string of a selection (ranges collapsed; "none" when empty).
std::string formatBlockCheckpointSelection(const BlockCheckpointSelection &Sel);
llvm::Error validateSparseUpdate(llvm::StringRef S);

/// Reads a trainable-names file: one initializer name a line; blank lines and lines
/// starting with '#' are skipped.
llvm::Expected<std::vector<std::string>> readTrainableFile(const std::string &Path);

/// The `setup` object of a report.
llvm::json::Object setupToJson(const TrainingSetup &Setup);
/// Applies a `--setup` JSON object (same keys as setupToJson) over Setup. Unknown keys
/// and wrong types are errors naming the key.
llvm::Error applySetupJson(const llvm::json::Object &Obj, TrainingSetup &Setup,
                           llvm::StringRef FileName);

} // namespace trainmem

#endif
