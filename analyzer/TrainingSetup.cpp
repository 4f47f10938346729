//===- TrainingSetup.cpp - how a training step is configured --------------------===//
//
// Names, parsers and JSON form of the training setup. The CLI and `--setup` files go
// through the same parsers so an error reads the same wherever the value came from.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TrainingSetup.h"
#include "analyzer/SafeJson.h"
#include "analyzer/Units.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Regex.h"

#include <algorithm>

namespace trainmem {

namespace {
template <typename E> struct Named {
  E Value;
  const char *Name;
};

constexpr Named<Precision> Precisions[] = {
    {Precision::Fp32, "fp32"},           {Precision::AmpBf16, "amp-bf16"},
    {Precision::AmpFp16, "amp-fp16"},    {Precision::Bf16, "bf16"},
    {Precision::MixedBf16, "mixed-bf16"}, {Precision::MixedFp16, "mixed-fp16"}};
constexpr Named<OptimizerKind> Optimizers[] = {
    {OptimizerKind::AdamW, "adamw"},         {OptimizerKind::Adam, "adam"},
    {OptimizerKind::Sgd, "sgd"},             {OptimizerKind::SgdMomentum, "sgd-momentum"},
    {OptimizerKind::Adafactor, "adafactor"}, {OptimizerKind::AdamW8bit, "adamw-8bit"},
    {OptimizerKind::PagedAdamW8bit, "paged-adamw-8bit"}, {OptimizerKind::Lion, "lion"},
    {OptimizerKind::AdamWFp8, "adamw-fp8"}};
constexpr Named<OptimizerImpl> Impls[] = {{OptimizerImpl::ForLoop, "for-loop"},
                                          {OptimizerImpl::Foreach, "foreach"},
                                          {OptimizerImpl::Fused, "fused"}};
constexpr Named<LossKind> Losses[] = {{LossKind::Auto, "auto"},
                                      {LossKind::CrossEntropy, "cross-entropy"},
                                      {LossKind::CutCrossEntropy, "cut-cross-entropy"},
                                      {LossKind::Mse, "mse"},
                                      {LossKind::None, "none"}};
constexpr Named<AutocastPolicy> Policies[] = {{AutocastPolicy::Cuda, "cuda"},
                                              {AutocastPolicy::Cpu, "cpu"}};
constexpr Named<DeviceKind> Devices[] = {{DeviceKind::Cuda, "cuda"}, {DeviceKind::Cpu, "cpu"}};
constexpr Named<AttentionImpl> Attentions[] = {{AttentionImpl::Auto, "auto"},
                                               {AttentionImpl::Eager, "eager"},
                                               {AttentionImpl::Sdpa, "sdpa"}};
constexpr Named<TorchVersion> TorchVersions[] = {{TorchVersion::Auto, "auto"},
                                                 {TorchVersion::V1_13, "1.13"},
                                                 {TorchVersion::V2, "2"}};
constexpr Named<KvCacheMode> KvCacheModes[] = {
    {KvCacheMode::Auto, "auto"}, {KvCacheMode::On, "on"}, {KvCacheMode::Off, "off"}};
constexpr Named<OffloadKind> Offloads[] = {{OffloadKind::None, "none"},
                                           {OffloadKind::Optimizer, "optimizer"},
                                           {OffloadKind::Params, "params"}};
constexpr Named<TieMode> Ties[] = {
    {TieMode::Auto, "auto"}, {TieMode::Yes, "yes"}, {TieMode::No, "no"}};

template <typename E, size_t N> const char *nameOf(const Named<E> (&Table)[N], E Value) {
  for (const auto &Entry : Table)
    if (Entry.Value == Value)
      return Entry.Name;
  return "?";
}

template <typename E, size_t N>
llvm::Expected<E> parseNamed(const Named<E> (&Table)[N], llvm::StringRef S,
                             const char *What) {
  std::vector<std::string> Allowed;
  for (const auto &Entry : Table) {
    if (S == Entry.Name)
      return Entry.Value;
    Allowed.push_back(Entry.Name);
  }
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "%s: '%s' is not one of %s", What, S.str().c_str(),
                                 llvm::join(Allowed, ", ").c_str());
}
} // namespace

const char *precisionName(Precision P) { return nameOf(Precisions, P); }
const char *optimizerName(OptimizerKind O) { return nameOf(Optimizers, O); }
const char *optimizerImplName(OptimizerImpl I) { return nameOf(Impls, I); }
const char *lossName(LossKind L) { return nameOf(Losses, L); }
const char *autocastPolicyName(AutocastPolicy P) { return nameOf(Policies, P); }
const char *tieModeName(TieMode T) { return nameOf(Ties, T); }
const char *deviceName(DeviceKind D) { return nameOf(Devices, D); }
const char *attentionName(AttentionImpl A) { return nameOf(Attentions, A); }
const char *kvCacheName(KvCacheMode M) { return nameOf(KvCacheModes, M); }
const char *torchVersionName(TorchVersion V) { return nameOf(TorchVersions, V); }
const char *offloadName(OffloadKind O) { return nameOf(Offloads, O); }
llvm::Expected<OffloadKind> parseOffload(llvm::StringRef S) {
  return parseNamed(Offloads, S, "--offload");
}

llvm::Expected<Precision> parsePrecision(llvm::StringRef S) {
  return parseNamed(Precisions, S, "--precision");
}
llvm::Expected<OptimizerKind> parseOptimizer(llvm::StringRef S) {
  return parseNamed(Optimizers, S, "--optimizer");
}
llvm::Expected<OptimizerImpl> parseOptimizerImpl(llvm::StringRef S) {
  return parseNamed(Impls, S, "--optimizer-impl");
}
llvm::Expected<LossKind> parseLoss(llvm::StringRef S) { return parseNamed(Losses, S, "--loss"); }
llvm::Expected<AutocastPolicy> parseAutocastPolicy(llvm::StringRef S) {
  return parseNamed(Policies, S, "--autocast-policy");
}
llvm::Expected<TieMode> parseTieMode(llvm::StringRef S) { return parseNamed(Ties, S, "--tie"); }
llvm::Expected<AttentionImpl> parseAttention(llvm::StringRef S) {
  return parseNamed(Attentions, S, "--attention");
}
llvm::Expected<TorchVersion> parseTorchVersion(llvm::StringRef S) {
  return parseNamed(TorchVersions, S, "--torch");
}
llvm::Expected<KvCacheMode> parseKvCache(llvm::StringRef S) {
  return parseNamed(KvCacheModes, S, "--use-cache");
}
llvm::Expected<DeviceKind> parseDevice(llvm::StringRef S) {
  return parseNamed(Devices, S, "--device");
}

namespace {
/// "0-3,7" into {0,1,2,3,7}; false on anything else, and past MaxBlockIndex (no model
/// has that many blocks; a hostile range must not allocate without bound).
constexpr int64_t MaxBlockIndex = 1 << 20;
bool parseIndexRanges(llvm::StringRef S, std::vector<int64_t> &Out) {
  if (S.empty())
    return false;
  llvm::SmallVector<llvm::StringRef, 8> Parts;
  S.split(Parts, ',');
  for (llvm::StringRef P : Parts) {
    auto [Lo, Hi] = P.split('-');
    int64_t A, B;
    if (Lo.getAsInteger(10, A) || A < 0)
      return false;
    B = A;
    if (P.contains('-') && (Hi.getAsInteger(10, B) || B < A))
      return false;
    if (B > MaxBlockIndex || static_cast<int64_t>(Out.size()) + (B - A) > MaxBlockIndex)
      return false;
    for (int64_t I = A; I <= B; ++I)
      Out.push_back(I);
  }
  return true;
}

void appendIndexRanges(std::string &Out, const std::vector<int64_t> &Indices) {
  for (size_t I = 0; I < Indices.size();) {
    size_t J = I;
    while (J + 1 < Indices.size() && Indices[J + 1] == Indices[J] + 1)
      ++J;
    Out += (I ? "," : "") + std::to_string(Indices[I]);
    if (J > I)
      Out += "-" + std::to_string(Indices[J]);
    I = J + 1;
  }
}
} // namespace

llvm::Expected<std::optional<BlockCheckpointSelection>>
parseBlockCheckpointSelection(llvm::StringRef S) {
  if (!S.startswith("blocks:") && !S.startswith("selective:"))
    return std::nullopt;
  BlockCheckpointSelection Sel;
  llvm::SmallVector<llvm::StringRef, 2> Parts;
  S.split(Parts, '+');
  bool SeenFull = false, SeenSelective = false;
  for (llvm::StringRef P : Parts) {
    std::vector<int64_t> *Into = nullptr;
    if (P.consume_front("blocks:") && !SeenFull)
      Into = &Sel.Full, SeenFull = true;
    else if (P.consume_front("selective:") && !SeenSelective)
      Into = &Sel.Selective, SeenSelective = true;
    if (!Into || !parseIndexRanges(P, *Into))
      return llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          "--checkpoint=%s: expected blocks:LIST, selective:LIST or both joined by '+', "
          "LIST being block indices and ranges from 0 such as 0-3,7",
          S.str().c_str());
  }
  for (std::vector<int64_t> *V : {&Sel.Full, &Sel.Selective}) {
    std::sort(V->begin(), V->end());
    V->erase(std::unique(V->begin(), V->end()), V->end());
  }
  for (int64_t I : Sel.Selective)
    if (std::binary_search(Sel.Full.begin(), Sel.Full.end(), I))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "--checkpoint=%s: block %lld is listed both whole "
                                     "(blocks:) and selective",
                                     S.str().c_str(), static_cast<long long>(I));
  return Sel;
}

std::string formatBlockCheckpointSelection(const BlockCheckpointSelection &Sel) {
  std::string Out;
  if (!Sel.Full.empty()) {
    Out = "blocks:";
    appendIndexRanges(Out, Sel.Full);
  }
  if (!Sel.Selective.empty()) {
    Out += Out.empty() ? "selective:" : "+selective:";
    appendIndexRanges(Out, Sel.Selective);
  }
  return Out.empty() ? "none" : Out;
}

llvm::Error validateCheckpoint(llvm::StringRef S) {
  uint64_t K;
  if (S == "none" || S == "blocks" || S == "selective")
    return llvm::Error::success();
  if (S.consume_front("every:") && !S.getAsInteger(10, K) && K > 0)
    return llvm::Error::success();
  if (S.consume_front("first:") && !S.getAsInteger(10, K))
    return llvm::Error::success();
  if ((S.consume_front("budget:") || S.consume_front("optimal:")) && !S.empty())
    return llvm::Error::success();
  auto Sel = parseBlockCheckpointSelection(S);
  if (!Sel)
    return Sel.takeError();
  if (*Sel)
    return llvm::Error::success();
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "--checkpoint: expected none, blocks, every:K, first:K, "
                                 "selective, blocks:LIST[+selective:LIST], budget:SIZE or "
                                 "optimal:SIZE");
}

llvm::Error validateSparseUpdate(llvm::StringRef S) {
  uint64_t K;
  if (S.empty() || S == "none" || S == "bias-only")
    return llvm::Error::success();
  if (S.consume_front("last:") && !S.getAsInteger(10, K) && K > 0)
    return llvm::Error::success();
  if (S.consume_front("budget:") && !S.empty())
    return llvm::Error::success();
  if (S.consume_front("layers:") || S.consume_front("weights:") || S.consume_front("biases:")) {
    llvm::Regex R(S);
    std::string Why;
    if (!S.empty() && R.isValid(Why))
      return llvm::Error::success();
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--sparse-update: '%s' is not a regular expression over "
                                   "layer paths%s%s",
                                   S.str().c_str(), Why.empty() ? "" : ": ", Why.c_str());
  }
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "--sparse-update: expected last:K (K > 0), bias-only, "
                                 "layers:REGEX, weights:REGEX, biases:REGEX or budget:SIZE");
}

DType TrainingSetup::weightDType() const {
  switch (Prec) {
  case Precision::Bf16:
  case Precision::MixedBf16:
    return DType::BFloat16;
  case Precision::MixedFp16:
    return DType::Float16;
  default:
    return DType::Float32; // fp32 and autocast keep fp32 weights
  }
}

DType TrainingSetup::gradDType() const { return weightDType(); }

DType TrainingSetup::optimizerStateDType() const {
  // Pure bf16 training keeps moments in the parameter dtype (torch.zeros_like(param));
  // mixed-precision recipes keep fp32 states beside the fp32 master weights.
  return Prec == Precision::Bf16 ? DType::BFloat16 : DType::Float32;
}

bool TrainingSetup::keepsMasterWeights() const {
  return Prec == Precision::MixedBf16 || Prec == Precision::MixedFp16;
}

llvm::Expected<std::vector<std::string>> readTrainableFile(const std::string &Path) {
  auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  if (!Buffer)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--trainable-file=%s: cannot read: %s", Path.c_str(),
                                   Buffer.getError().message().c_str());
  std::vector<std::string> Names;
  llvm::SmallVector<llvm::StringRef, 64> Lines;
  (*Buffer)->getBuffer().split(Lines, '\n');
  for (llvm::StringRef Line : Lines) {
    Line = Line.trim();
    if (Line.empty() || Line.startswith("#"))
      continue;
    Names.push_back(Line.str());
  }
  return Names;
}

llvm::json::Object setupToJson(const TrainingSetup &S) {
  llvm::json::Object O{
      {"precision", precisionName(S.Prec)},
      {"autocast_policy", autocastPolicyName(S.Autocast)},
      {"device", deviceName(S.Device)},
      {"attention", attentionName(S.Attention)},
      {"torch", torchVersionName(S.torchVersion())},
      {"use_cache", kvCacheName(S.KvCache)},
      {"optimizer", optimizerName(S.Optimizer)},
      {"optimizer_impl", optimizerImplName(S.Impl)},
      {"loss", lossName(S.Loss)},
      {"tie", tieModeName(S.Tie)},
      {"keep_grads", S.KeepGrads},
      {"checkpoint", jsonString(S.Checkpoint)},
      {"grad_accum", S.GradAccum},
  };
  if (S.TrainableFile)
    O["trainable_file"] = jsonString(*S.TrainableFile);
  if (!S.TrainRegex.empty())
    O["train"] = jsonString(S.TrainRegex);
  if (!S.FreezeRegex.empty())
    O["freeze"] = jsonString(S.FreezeRegex);
  if (S.MicroBatch)
    O["micro_batch"] = *S.MicroBatch;
  if (!S.SparseUpdate.empty())
    O["sparse_update"] = jsonString(S.SparseUpdate);
  if (S.ZerothOrder)
    O["zeroth_order"] = true;
  if (S.Int8Activations)
    O["activation_storage"] = "int8";
  if (S.Galore) {
    llvm::json::Array Targets;
    for (const std::string &T : S.Galore->Targets)
      Targets.push_back(jsonString(T));
    O["galore"] = llvm::json::Object{{"rank", S.Galore->Rank},
                                     {"update_gap", S.Galore->UpdateGap},
                                     {"targets", std::move(Targets)},
                                     {"per_layer", S.Galore->PerLayer}};
  }
  if (S.Sharding.active())
    O["sharding"] = llvm::json::Object{{"zero", S.Sharding.ZeroStage},
                                       {"fsdp", S.Sharding.Fsdp},
                                       {"gpus", S.Sharding.Gpus},
                                       {"offload", offloadName(S.Sharding.Offload)}};
  if (S.Dropout)
    O["dropout"] = *S.Dropout;
  if (!S.Gpu.empty())
    O["gpu"] = jsonString(S.Gpu);
  if (S.CudaContextBytes)
    O["cuda_context"] = *S.CudaContextBytes;
  if (S.Lora) {
    llvm::json::Array Targets;
    for (const std::string &T : S.Lora->Targets)
      Targets.push_back(jsonString(T));
    O["lora"] = llvm::json::Object{{"rank", S.Lora->Rank},
                                   {"alpha", S.Lora->Alpha},
                                   {"targets", std::move(Targets)},
                                   {"dropout", S.Lora->Dropout},
                                   {"qlora", S.Lora->QLora}};
    if (S.Lora->ModulesToSave) {
      llvm::json::Array Modules;
      for (const std::string &M : *S.Lora->ModulesToSave)
        Modules.push_back(jsonString(M));
      (*O["lora"].getAsObject())["modules_to_save"] = std::move(Modules);
    }
  }
  return O;
}

llvm::Error applySetupJson(const llvm::json::Object &Obj, TrainingSetup &S,
                           llvm::StringRef FileName) {
  auto Bad = [&](llvm::StringRef Key, llvm::StringRef Expected) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: key '%s': expected %s",
                                   FileName.str().c_str(), Key.str().c_str(),
                                   Expected.str().c_str());
  };
  auto Wrap = [&](llvm::StringRef Key, llvm::Error E) -> llvm::Error {
    if (!E)
      return llvm::Error::success();
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: key '%s': %s",
                                   FileName.str().c_str(), Key.str().c_str(),
                                   llvm::toString(std::move(E)).c_str());
  };
  for (const auto &KV : Obj) {
    llvm::StringRef Key = KV.first;
    const llvm::json::Value &V = KV.second;
    auto Str = V.getAsString();
    auto Int = V.getAsInteger();
    auto Assign = [&](auto Parsed, auto &Field) -> llvm::Error {
      if (!Parsed)
        return Wrap(Key, Parsed.takeError());
      Field = *Parsed;
      return llvm::Error::success();
    };
    llvm::Error E = llvm::Error::success();
    if (Key == "precision" || Key == "optimizer" || Key == "optimizer_impl" || Key == "loss" ||
        Key == "autocast_policy" || Key == "tie" || Key == "device" || Key == "attention" || Key == "torch" || Key == "use_cache" || Key == "checkpoint" || Key == "train" ||
        Key == "freeze" || Key == "gpu" || Key == "trainable_file" || Key == "sparse_update") {
      if (!Str)
        return Bad(Key, "a string");
      if (Key == "precision") E = Assign(parsePrecision(*Str), S.Prec);
      else if (Key == "optimizer") E = Assign(parseOptimizer(*Str), S.Optimizer);
      else if (Key == "optimizer_impl") E = Assign(parseOptimizerImpl(*Str), S.Impl);
      else if (Key == "loss") E = Assign(parseLoss(*Str), S.Loss);
      else if (Key == "autocast_policy") E = Assign(parseAutocastPolicy(*Str), S.Autocast);
      else if (Key == "tie") E = Assign(parseTieMode(*Str), S.Tie);
      else if (Key == "device") E = Assign(parseDevice(*Str), S.Device);
      else if (Key == "attention") E = Assign(parseAttention(*Str), S.Attention);
      else if (Key == "torch") E = Assign(parseTorchVersion(*Str), S.Torch);
      else if (Key == "use_cache") E = Assign(parseKvCache(*Str), S.KvCache);
      else if (Key == "checkpoint") {
        E = Wrap(Key, validateCheckpoint(*Str));
        S.Checkpoint = Str->str();
      } else if (Key == "train") S.TrainRegex = Str->str();
      else if (Key == "freeze") S.FreezeRegex = Str->str();
      else if (Key == "gpu") S.Gpu = Str->str();
      else if (Key == "sparse_update") {
        E = Wrap(Key, validateSparseUpdate(*Str));
        S.SparseUpdate = Str->str();
      }
      else if (Key == "trainable_file") {
        auto Names = readTrainableFile(Str->str());
        if (!Names)
          return Wrap(Key, Names.takeError());
        S.TrainableFile = Str->str();
        S.TrainableNames = *Names;
      }
    } else if (Key == "keep_grads" || Key == "zeroth_order") {
      auto B = V.getAsBoolean();
      if (!B)
        return Bad(Key, "true or false");
      (Key == "keep_grads" ? S.KeepGrads : S.ZerothOrder) = *B;
    } else if (Key == "activation_storage") {
      if (!Str || (*Str != "native" && *Str != "int8"))
        return Bad(Key, "\"native\" or \"int8\"");
      S.Int8Activations = *Str == "int8";
    } else if (Key == "galore") {
      const llvm::json::Object *Gl = V.getAsObject();
      const char *Fields = "an object with rank, update_gap (positive integers), targets "
                           "(list of names), per_layer (bool)";
      if (!Gl)
        return Bad(Key, Fields);
      GaloreSetup Galore;
      for (const auto &F : *Gl) {
        llvm::StringRef FK = F.first;
        auto N = F.second.getAsInteger();
        if (FK == "rank" && N && *N > 0)
          Galore.Rank = *N;
        else if (FK == "update_gap" && N && *N > 0)
          Galore.UpdateGap = *N;
        else if (FK == "per_layer" && F.second.getAsBoolean())
          Galore.PerLayer = *F.second.getAsBoolean();
        else if (FK == "targets" && F.second.getAsArray()) {
          Galore.Targets.clear();
          for (const llvm::json::Value &T : *F.second.getAsArray()) {
            if (!T.getAsString())
              return Bad("galore.targets", "a list of layer-path substrings");
            Galore.Targets.push_back(T.getAsString()->str());
          }
        } else {
          return Bad(("galore." + FK).str(), Fields);
        }
      }
      S.Galore = Galore;
    } else if (Key == "sharding") {
      const llvm::json::Object *Sh = V.getAsObject();
      const char *Fields = "an object with zero (0-3), fsdp (bool), gpus (positive integer), "
                           "offload (none, optimizer or params)";
      if (!Sh)
        return Bad(Key, Fields);
      ShardingSetup Sharding;
      for (const auto &F : *Sh) {
        llvm::StringRef FK = F.first;
        auto N = F.second.getAsInteger();
        auto Name = F.second.getAsString();
        if (FK == "zero" && N && *N >= 0 && *N <= 3)
          Sharding.ZeroStage = static_cast<int>(*N);
        else if (FK == "gpus" && N && *N > 0)
          Sharding.Gpus = *N;
        else if (FK == "fsdp" && F.second.getAsBoolean())
          Sharding.Fsdp = *F.second.getAsBoolean();
        else if (FK == "offload" && Name) {
          auto O = parseOffload(*Name);
          if (!O)
            return Wrap("sharding.offload", O.takeError());
          Sharding.Offload = *O;
        } else {
          return Bad(("sharding." + FK).str(), Fields);
        }
      }
      if (Sharding.Fsdp && Sharding.ZeroStage != 2 && Sharding.ZeroStage != 3)
        return Bad("sharding.zero", "2 (SHARD_GRAD_OP) or 3 (FULL_SHARD) with fsdp");
      if (Sharding.Offload == OffloadKind::Params && Sharding.ZeroStage != 3)
        return Bad("sharding.offload", "\"params\" only with zero 3");
      if (Sharding.Offload == OffloadKind::Optimizer && Sharding.ZeroStage == 0)
        return Bad("sharding.offload", "\"optimizer\" only with zero 1, 2 or 3");
      S.Sharding = Sharding;
    } else if (Key == "grad_accum" || Key == "micro_batch") {
      if (!Int || *Int < 1)
        return Bad(Key, "a positive integer");
      if (Key == "grad_accum") S.GradAccum = *Int;
      else S.MicroBatch = *Int;
    } else if (Key == "lora") {
      const llvm::json::Object *L = V.getAsObject();
      if (!L)
        return Bad(Key, "an object with rank, alpha, targets, dropout, qlora");
      LoraSetup Lora;
      for (const auto &F : *L) {
        llvm::StringRef FK = F.first;
        if (FK == "rank" && F.second.getAsInteger() && *F.second.getAsInteger() > 0)
          Lora.Rank = *F.second.getAsInteger();
        else if (FK == "alpha" && F.second.getAsNumber())
          Lora.Alpha = *F.second.getAsNumber();
        else if (FK == "dropout" && F.second.getAsNumber() && *F.second.getAsNumber() >= 0 &&
                 *F.second.getAsNumber() < 1)
          Lora.Dropout = *F.second.getAsNumber();
        else if (FK == "qlora" && F.second.getAsBoolean())
          Lora.QLora = *F.second.getAsBoolean();
        else if (FK == "targets" && F.second.getAsArray()) {
          for (const llvm::json::Value &T : *F.second.getAsArray()) {
            if (!T.getAsString())
              return Bad("lora.targets", "a list of module names");
            Lora.Targets.push_back(T.getAsString()->str());
          }
        } else if (FK == "modules_to_save" && F.second.getAsArray()) {
          Lora.ModulesToSave.emplace();
          for (const llvm::json::Value &T : *F.second.getAsArray()) {
            if (!T.getAsString())
              return Bad("lora.modules_to_save", "a list of module names");
            Lora.ModulesToSave->push_back(T.getAsString()->str());
          }
        } else {
          return Bad(("lora." + FK).str(), "rank (positive integer), alpha (number), targets "
                                           "(list of names), dropout (in [0, 1)), qlora (bool), "
                                           "modules_to_save (list of names)");
        }
      }
      S.Lora = Lora;
    } else if (Key == "cuda_context") {
      // Bytes, as a report echoes it, or a size with its unit ("1343MiB").
      if (Int && *Int >= 0) {
        S.CudaContextBytes = *Int;
      } else if (Str) {
        auto Bytes = parseBytes(*Str);
        if (!Bytes)
          return Wrap(Key, Bytes.takeError());
        S.CudaContextBytes = *Bytes;
      } else {
        return Bad(Key, "bytes (a non-negative integer) or a size such as \"1343MiB\"");
      }
    } else if (Key == "dropout") {
      auto D = V.getAsNumber();
      if (!D || *D < 0 || *D >= 1)
        return Bad(Key, "a number in [0, 1)");
      S.Dropout = *D;
    } else {
      return Bad(Key, "one of precision, autocast_policy, device, attention, lora, galore, "
                      "sharding, sparse_update, zeroth_order, activation_storage, optimizer, "
                      "optimizer_impl, loss, tie, keep_grads, checkpoint, grad_accum, "
                      "micro_batch, dropout, gpu, cuda_context, train, freeze, trainable_file "
                      "(unknown key)");
    }
    if (E)
      return E;
  }
  if (!S.TrainRegex.empty() || !S.FreezeRegex.empty()) {
    for (const std::string &R : {S.TrainRegex, S.FreezeRegex}) {
      std::string Why;
      if (!R.empty() && !llvm::Regex(R).isValid(Why))
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "%s: invalid regular expression '%s': %s",
                                       FileName.str().c_str(), R.c_str(), Why.c_str());
    }
  }
  return llvm::Error::success();
}

} // namespace trainmem
