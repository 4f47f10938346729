//===- StepSimulator.cpp - replay one steady-state training step -----------------===//
//
// The passes, in order: buildSimOps (ops as PyTorch runs them), dtypes under the
// precision recipe, requires-grad propagation from trainable parameters, then the
// event replay: persistent state (weights, optimizer states, inputs, kept gradients),
// forward, loss, backward, optimizer step, zero_grad; repeated per micro-batch for
// gradient accumulation. Storages are reference-counted like PyTorch's: a tensor holds
// its storage while it has consumers left, views share their base, and each saved
// tensor holds its storage until its op's backward has run (autograd releases saved
// variables right after a node executes).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StepSimulator.h"
#include "analyzer/CachingAllocatorModel.h"
#include "analyzer/OpMemoryRules.h"

#include <algorithm>
#include <map>
#include <set>

namespace trainmem {
namespace {

enum class Cat { Weights, MasterWeights, Gradients, OptimizerStates, Activations, Temporaries, Inputs };

int64_t &slot(CategoryBytes &B, Cat C) {
  switch (C) {
  case Cat::Weights: return B.Weights;
  case Cat::MasterWeights: return B.MasterWeights;
  case Cat::Gradients: return B.Gradients;
  case Cat::OptimizerStates: return B.OptimizerStates;
  case Cat::Activations: return B.Activations;
  case Cat::Temporaries: return B.Temporaries;
  case Cat::Inputs: return B.Inputs;
  }
  return B.Temporaries;
}

const char *catName(Cat C) {
  switch (C) {
  case Cat::Weights: return "weights";
  case Cat::MasterWeights: return "master_weights";
  case Cat::Gradients: return "gradients";
  case Cat::OptimizerStates: return "optimizer_states";
  case Cat::Activations: return "activations";
  case Cat::Temporaries: return "temporaries";
  case Cat::Inputs: return "inputs";
  }
  return "temporaries";
}

using StorageId = int32_t;

bool isMatmulKind(const std::string &Kind) {
  return Kind == "Linear" || Kind == "MatMul" || Kind == "Gemm" || Kind == "Conv" ||
         Kind == "ConvTranspose";
}
constexpr StorageId NoStorage = -1;

struct Storage {
  int64_t Bytes = 0;
  Cat Category = Cat::Temporaries;
  std::string Name, Op, Layer;
  DType Type = DType::Float32;
  std::vector<int64_t> Shape;
  int Refs = 0;
  bool Live = false;
  int64_t Handle = 0; ///< the block the caching-allocator replay gave it
};

/// Live storages and the timeline over them.
class Memory {
public:
  StorageId alloc(int64_t Bytes, Cat C, std::string Name, std::string Op, std::string Layer,
                  DType Type, std::vector<int64_t> Shape) {
    Storage S;
    S.Bytes = Bytes;
    S.Category = C;
    S.Name = std::move(Name);
    S.Op = std::move(Op);
    S.Layer = std::move(Layer);
    S.Type = Type;
    S.Shape = std::move(Shape);
    S.Refs = 1;
    S.Live = true;
    if (Allocator)
      S.Handle = Allocator->allocate(Bytes);
    slot(LiveBytes, C) += Bytes;
    Total += Bytes;
    Storages.push_back(std::move(S));
    LiveSet.insert(static_cast<StorageId>(Storages.size() - 1));
    return static_cast<StorageId>(Storages.size() - 1);
  }
  void retain(StorageId S) {
    if (S != NoStorage)
      ++Storages[S].Refs;
  }
  void release(StorageId S) {
    if (S == NoStorage)
      return;
    Storage &St = Storages[S];
    if (--St.Refs > 0 || !St.Live)
      return;
    St.Live = false;
    if (Allocator)
      Allocator->free(St.Handle);
    slot(LiveBytes, St.Category) -= St.Bytes;
    Total -= St.Bytes;
    LiveSet.erase(S);
  }
  void recategorize(StorageId S, Cat C) {
    Storage &St = Storages[S];
    if (!St.Live || St.Category == C)
      return;
    slot(LiveBytes, St.Category) -= St.Bytes;
    St.Category = C;
    slot(LiveBytes, C) += St.Bytes;
  }
  Storage &operator[](StorageId S) { return Storages[S]; }

  /// Records the state after an event; keeps the per-category maxima and the peak.
  void point(const std::string &Phase, const std::string &Op, const std::string &Layer) {
    for (Cat C : {Cat::Weights, Cat::MasterWeights, Cat::Gradients, Cat::OptimizerStates,
                  Cat::Activations, Cat::Temporaries, Cat::Inputs})
      slot(Max, C) = std::max(slot(Max, C), slot(LiveBytes, C));
    TimelinePoint P;
    P.Index = static_cast<int64_t>(Timeline.size());
    P.Phase = Phase;
    P.Op = Op;
    P.Live = LiveBytes;
    Timeline.push_back(std::move(P));
    if (Total <= Peak)
      return;
    Peak = Total;
    PeakInfo.Phase = Phase;
    PeakInfo.Op = Layer.empty() ? Op : Op + " (" + Layer + ")";
    PeakInfo.ByCategory = LiveBytes;
    std::vector<StorageId> Ids(LiveSet.begin(), LiveSet.end());
    size_t Keep = std::min<size_t>(10, Ids.size());
    std::partial_sort(Ids.begin(), Ids.begin() + Keep, Ids.end(),
                      [this](StorageId A, StorageId B) {
                        return Storages[A].Bytes > Storages[B].Bytes;
                      });
    PeakInfo.TopTensors.clear();
    for (size_t I = 0; I < Keep; ++I) {
      const Storage &S = Storages[Ids[I]];
      PeakInfo.TopTensors.push_back(
          {S.Name, catName(S.Category), S.Layer, S.Op, S.Type, S.Shape, S.Bytes});
    }
  }

  /// The CUDA caching allocator replayed over the same events (CUDA runs only).
  std::optional<CachingAllocatorModel> Allocator;
  CategoryBytes LiveBytes, Max;
  int64_t Total = 0, Peak = 0;
  PeakDetail PeakInfo;
  std::vector<TimelinePoint> Timeline;

private:
  std::vector<Storage> Storages;
  std::set<StorageId> LiveSet;
};

/// A tensor's memory layout: enough of PyTorch's strides to know when an op copies.
struct Layout {
  std::vector<int64_t> Shape, Strides;
};

Layout contiguous(const std::vector<int64_t> &Shape) {
  Layout L{Shape, std::vector<int64_t>(Shape.size(), 1)};
  for (size_t I = Shape.size(); I-- > 1;)
    L.Strides[I - 1] = L.Strides[I] * std::max<int64_t>(Shape[I], 1);
  return L;
}

/// PyTorch's computeStride (aten/src/ATen/TensorUtils.cpp): the strides of a view with
/// NewShape over Old, or nothing when the data cannot be viewed and reshape copies.
std::optional<std::vector<int64_t>> viewStrides(const Layout &Old,
                                                const std::vector<int64_t> &NewShape) {
  int64_t N = 1;
  for (int64_t D : Old.Shape)
    N *= D;
  if (N == 0 || Old.Shape.empty())
    return contiguous(NewShape).Strides;
  std::vector<int64_t> New(NewShape.size(), 0);
  int64_t ViewD = static_cast<int64_t>(NewShape.size()) - 1;
  int64_t ChunkBase = Old.Strides.back(), TensorNumel = 1, ViewNumel = 1;
  for (int64_t D = static_cast<int64_t>(Old.Shape.size()) - 1; D >= 0; --D) {
    TensorNumel *= Old.Shape[D];
    if (D == 0 || (Old.Shape[D - 1] != 1 &&
                   Old.Strides[D - 1] != TensorNumel * ChunkBase)) {
      while (ViewD >= 0 && (ViewNumel < TensorNumel || NewShape[ViewD] == 1)) {
        New[ViewD] = ViewNumel * ChunkBase;
        ViewNumel *= NewShape[ViewD];
        --ViewD;
      }
      if (ViewNumel != TensorNumel)
        return std::nullopt;
      if (D > 0) {
        ChunkBase = Old.Strides[D - 1];
        TensorNumel = 1;
        ViewNumel = 1;
      }
    }
  }
  if (ViewD != -1)
    return std::nullopt;
  return New;
}


/// Does flattening all but the last Keep dims of L need a copy?
bool flattenNeedsCopy(const Layout &L, size_t Keep) {
  if (L.Shape.size() <= Keep + 1)
    return false;
  std::vector<int64_t> Flat;
  int64_t Lead = 1;
  for (size_t I = 0; I + Keep < L.Shape.size(); ++I)
    Lead *= L.Shape[I];
  Flat.push_back(Lead);
  for (size_t I = L.Shape.size() - Keep; I < L.Shape.size(); ++I)
    Flat.push_back(L.Shape[I]);
  return !viewStrides(L, Flat);
}

struct Value {
  StorageId Storage = NoStorage;
  Layout L;
  int PendingUses = 0;
  bool Held = false; ///< holds one reference to Storage
};

/// GaLore's update of one parameter (galore-torch AdamW): project the gradient to rank r,
/// run Adam on it (denom = exp_avg_sq.sqrt() + eps), project the update back to full size;
/// and, every UpdateGap steps, the projector refresh: an SVD of an fp32 copy of the
/// gradient (torch.linalg.svd, full_matrices=False: U m x k, S, Vh k x n).
std::pair<int64_t, int64_t> galoreTransients(const CensusParameter &P,
                                                    const TrainingSetup &Setup) {
  if (!isGaloreTarget(P, Setup))
    return {dtypeBytes(P.Type, P.NumElements), 0}; // transformers' AdamW: one denom
  int64_t M = P.Shape[0], N = P.Shape[1], K = std::min(M, N), Large = std::max(M, N);
  int64_t R = std::min(Setup.Galore->Rank, K);
  int64_t LowRank = dtypeBytes(P.Type, R * Large);
  int64_t Update = P.bytes() + 2 * LowRank;
  int64_t Svd = 4 * (M * N + M * K + K + K * N);
  return {Update, Svd};
}

class Simulator {
public:
  Simulator(const Graph &G, const TrainingSetup &Setup, const ParameterCensus &Census)
      : G(G), Setup(Setup), Census(Census),
        Ctx{G, std::vector<DType>(G.Tensors.size()), std::vector<bool>(G.Tensors.size()),
            Setup.Device == DeviceKind::Cuda, Setup.Device == DeviceKind::Cpu} {}

  llvm::Expected<StepSimulation> run();

private:
  void assignTypes();
  void propagateRequiresGrad();
  void allocatePersistent();
  llvm::Error forward(int MicroBatch);
  void runOp(size_t OpI, bool Save, const std::string &Phase);
  void planCheckpoints();
  void planDropout();
  void enterCheckpoint(size_t Seg, const std::string &Phase);
  void recompute(size_t Seg, const std::string &Phase);
  void leaveCheckpoint(size_t Seg);
  void applyDropout(size_t OpI, bool Save, const std::string &Phase);
  void loss();
  void backward();
  void optimizerStep();
  void zeroGrad();

  DType recipeType(DType T) const {
    if (!isFloating(T))
      return T;
    if (Setup.Prec == Precision::Bf16 || Setup.Prec == Precision::MixedBf16)
      return DType::BFloat16;
    if (Setup.Prec == Precision::MixedFp16)
      return DType::Float16;
    return T;
  }
  DType lowPrecision() const {
    return Setup.Prec == Precision::AmpFp16 || Setup.Prec == Precision::MixedFp16
               ? DType::Float16
               : DType::BFloat16;
  }
  bool isAmp() const {
    return Setup.Prec == Precision::AmpBf16 || Setup.Prec == Precision::AmpFp16;
  }

  void holdValue(TensorId T, StorageId S, Layout L) {
    Value &V = Values[T];
    V.Storage = S;
    V.L = std::move(L);
    V.Held = true;
  }
  void dropValue(TensorId T) {
    Value &V = Values[T];
    if (V.Held) {
      Mem.release(V.Storage);
      V.Held = false;
    }
  }
  /// Storage that an op reading T (possibly through a fresh copy) sees.
  StorageId storageOf(TensorId T) const { return T == NoTensor ? NoStorage : Values[T].Storage; }

  std::string phaseName(const char *Base) const {
    if (Setup.GradAccum <= 1)
      return Base;
    return std::string(Base) + " (micro-batch " + std::to_string(CurrentMicroBatch + 1) + ")";
  }

  const Graph &G;
  const TrainingSetup &Setup;
  const ParameterCensus &Census;
  RuleContext Ctx;
  Memory Mem;
  std::vector<SimOp> Ops;
  std::vector<Value> Values;
  /// Per op: the storages its backward node holds (saved tensors), one reference each.
  std::vector<std::vector<StorageId>> SavedBy;
  std::vector<bool> HasBackward;
  /// Per op: bytes its backward unpacks from int8-stored saved tensors.
  std::vector<int64_t> Unpacked;
  /// Trainable parameter tensor -> index in Census.Parameters; gradient storage per param.
  std::map<TensorId, size_t> ParamIndex;
  std::vector<StorageId> ParamGrad;
  std::vector<StorageId> GradOf;
  TensorId LossLogits = NoTensor;
  StorageId LogSoftmax = NoStorage, TotalWeight = NoStorage, LossValue = NoStorage;
  int64_t LossRows = 0, LossClasses = 0;
  int CurrentMicroBatch = 0;
  int64_t SavedAtEnd = 0;
  std::map<std::string, int64_t> SavedByLayer;
  Diagnostics Diags;

  /// A run of ops recomputed in backward (one repeated block under --checkpoint).
  struct Segment {
    size_t First = 0, Last = 0;
    std::vector<TensorId> Inputs;
    /// Selective: matmul outputs are kept, everything else is recomputed.
    bool Selective = false;
  };
  /// The selective segment whose forward is running (-1: none); its cache of kept
  /// matmul outputs.
  int ActiveSelective = -1;
  std::set<StorageId> SelectiveKeep;
  std::vector<Segment> Segments;
  std::vector<std::vector<StorageId>> SegmentSaved;
  std::vector<StorageId> RngStates;
  /// torch.get_rng_state() on CPU: the mt19937 state as a uint8 tensor.
  static constexpr int64_t CpuRngStateBytes = 5056;
  /// Ops whose first output goes through training-time dropout (--dropout).
  std::set<size_t> Dropouts;
  /// ZeRO-3 / FSDP FULL_SHARD: the parameters each op's unit gathers (bytes beyond the
  /// local shard), the unit key per op, and the gathered storage currently held.
  std::vector<std::string> GatherUnit;
  std::map<std::string, int64_t> GatherBytes;
  std::string HeldUnit;
  StorageId Gathered = NoStorage;
  void planGathers();
  void gatherFor(size_t OpI, const std::string &Phase);
  void releaseGathered();
  std::map<TensorId, StorageId> DropoutMasks;
};

void Simulator::assignTypes() {
  for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T)
    Ctx.TypeOf[T] = recipeType(G.Tensors[T].Type);
  if (!isAmp())
    return;
  // Autocast (CUDA lists by default): matmul-like ops compute in 16 bits; softmax,
  // log_softmax and layer_norm run in fp32 on CUDA and in their input's dtype on CPU;
  // elementwise ops promote to the widest input; everything else keeps its input type.
  DType Low = lowPrecision();
  for (const SimOp &Op : Ops) {
    DType In0 = Op.Inputs.empty() || Op.Inputs[0] == NoTensor ? DType::Float32
                                                              : Ctx.TypeOf[Op.Inputs[0]];
    DType Out = In0;
    const std::string &K = Op.Kind;
    if (K == "Linear" || K == "MatMul" || K == "Conv" || K == "Gemm" || K == "ConvTranspose")
      Out = Low;
    else if (K == "Softmax" || K == "LogSoftmax" || K == "LayerNormalization")
      Out = Setup.Autocast == AutocastPolicy::Cuda ? DType::Float32 : In0;
    else if (K == "Add" || K == "Sub" || K == "Mul" || K == "Div" || K == "Where" ||
             K == "Concat") {
      Out = Low;
      for (TensorId I : Op.Inputs)
        if (I != NoTensor && isFloating(Ctx.TypeOf[I]) && !G.Tensors[I].Stored &&
            Ctx.TypeOf[I] == DType::Float32)
          Out = DType::Float32;
      bool AnyLow = false;
      for (TensorId I : Op.Inputs)
        AnyLow |= I != NoTensor && Ctx.TypeOf[I] == Low;
      if (!AnyLow)
        Out = In0;
      for (TensorId I : Op.Inputs)
        if (I != NoTensor && G.Tensors[I].Stored && isFloating(G.Tensors[I].Type) &&
            G.Tensors[I].numElements() > 1)
          Out = DType::Float32; // a float32 parameter or buffer promotes the result
    }
    for (TensorId O : Op.Outputs)
      if (O != NoTensor && isFloating(G.Tensors[O].Type))
        Ctx.TypeOf[O] = Out;
  }
}

void Simulator::propagateRequiresGrad() {
  for (size_t I = 0; I < Census.Parameters.size(); ++I) {
    const CensusParameter &P = Census.Parameters[I];
    for (TensorId T : P.Tensors) {
      ParamIndex[T] = I;
      Ctx.RequiresGrad[T] = P.Trainable;
    }
  }
  if (Setup.ZerothOrder) // forward passes under torch.no_grad(): nothing requires grad
    std::fill(Ctx.RequiresGrad.begin(), Ctx.RequiresGrad.end(), false);
  for (const SimOp &Op : Ops) {
    bool Any = false;
    for (TensorId I : Op.Inputs)
      Any |= I != NoTensor && Ctx.RequiresGrad[I];
    for (TensorId O : Op.Outputs)
      if (O != NoTensor)
        Ctx.RequiresGrad[O] = Any && isFloating(G.Tensors[O].Type);
  }
}

void Simulator::allocatePersistent() {
  const ShardingSetup &Sh = Setup.Sharding;
  int64_t N = std::max<int64_t>(Sh.Gpus, 1);
  auto Shard = [N](int64_t Bytes) { return (Bytes + N - 1) / N; };
  // ZeRO-3 / FSDP FULL_SHARD keep 1/N of each parameter (none with --offload=params);
  // the full tensor exists only while its block runs (gathered below).
  bool ShardParams = Sh.ZeroStage >= 3;
  for (const CensusParameter &P : Census.Parameters) {
    int64_t Bytes = ShardParams ? (Sh.Offload == OffloadKind::Params ? 0 : Shard(P.bytes()))
                                : P.bytes();
    StorageId S = Mem.alloc(Bytes, Cat::Weights, P.Name + (ShardParams ? " (shard)" : ""),
                            "parameter", P.LayerPath, P.Type, P.Shape);
    for (TensorId T : P.Tensors)
      holdValue(T, S, contiguous(G.Tensors[T].Shape));
    for (size_t K = 1; K < P.Tensors.size(); ++K)
      Mem.retain(S);
  }
  for (const CensusBuffer &B : Census.Buffers) {
    StorageId S = Mem.alloc(B.bytes(), Cat::Weights, B.Name, "buffer", B.LayerPath, B.Type, {});
    if (B.Tensor != NoTensor)
      holdValue(B.Tensor, S, contiguous(G.Tensors[B.Tensor].Shape));
  }
  ParamGrad.assign(Census.Parameters.size(), NoStorage);
  // ZeRO-1+ shards optimizer states and fp32 masters; --offload=optimizer moves them to
  // the CPU. ZeRO-2+ keeps only a gradient partition between steps.
  bool ShardStates = Sh.ZeroStage >= 1, StatesOnCpu = Sh.Offload != OffloadKind::None;
  int64_t TrainableGradBytes = 0;
  for (const CensusParameter &P : Census.Parameters) {
    if (!P.Trainable)
      continue;
    TrainableGradBytes += P.bytes();
    int64_t StateBytes = 0;
    for (const OptimizerStatePart &Part : optimizerStateOf(P, Setup))
      StateBytes += Part.Bytes;
    if (StateBytes && !StatesOnCpu)
      Mem.alloc(ShardStates ? Shard(StateBytes) : StateBytes, Cat::OptimizerStates,
                P.Name + " (optimizer state)", "optimizer", P.LayerPath, P.Type, P.Shape);
    if (Setup.keepsMasterWeights() && !StatesOnCpu) {
      int64_t Master = dtypeBytes(DType::Float32, P.NumElements);
      Mem.alloc(ShardStates ? Shard(Master) : Master, Cat::MasterWeights,
                P.Name + " (fp32 master)", "optimizer", P.LayerPath, DType::Float32, P.Shape);
    }
    if (Setup.KeepGrads)
      ParamGrad[&P - Census.Parameters.data()] =
          Mem.alloc(Sh.ZeroStage >= 2 ? Shard(P.bytes()) : P.bytes(), Cat::Gradients,
                    P.Name + ".grad", "zero_grad", P.LayerPath, P.Type, P.Shape);
  }
  // DDP's reducer keeps its gradient buckets (about the size of all gradients) for the
  // whole run; DeepSpeed ZeRO-2/3 keeps a contiguous reduction bucket of
  // reduce_bucket_size elements (default 5e8), capped here at the gradients' size.
  if (N > 1 && Sh.ZeroStage == 0 && !Sh.Fsdp && TrainableGradBytes)
    Mem.alloc(TrainableGradBytes, Cat::Gradients, "DDP gradient buckets", "DDP", "",
              DType::Float32, {});
  if (Sh.ZeroStage >= 2 && !Sh.Fsdp && TrainableGradBytes) {
    int64_t Elements = 0;
    for (const CensusParameter &P : Census.Parameters)
      if (P.Trainable)
        Elements += P.NumElements;
    DType GradType = Census.Parameters.empty() ? DType::Float32 : Census.Parameters[0].Type;
    Mem.alloc(dtypeBytes(GradType, std::min<int64_t>(Elements, 500000000)), Cat::Gradients,
              "ZeRO reduction bucket", "DeepSpeed", "", GradType, {});
  }
  // The loss target (labels) is part of the batch: one int64 class index per row for
  // cross-entropy, a tensor like the output for MSE.
  for (TensorId O : G.Outputs)
    if (isFloating(G.Tensors[O].Type) && G.Tensors[O].ShapeKnown) {
      const Tensor &T = G.Tensors[O];
      LossKind Kind = Setup.Loss;
      if (Kind == LossKind::Auto)
        Kind = T.Shape.size() >= 2 ? LossKind::CrossEntropy : LossKind::None;
      std::vector<int64_t> Shape = T.Shape;
      int64_t Bytes = 0;
      if (Kind == LossKind::CrossEntropy || Kind == LossKind::CutCrossEntropy) {
        Shape.pop_back();
        Bytes = dtypeBytes(DType::Int64, T.numElements() / std::max<int64_t>(T.Shape.back(), 1));
      } else if (Kind == LossKind::Mse) {
        Bytes = T.bytesAs(Ctx.TypeOf[O]);
      }
      if (!Shape.empty())
        Shape[0] *= Setup.GradAccum;
      if (Bytes)
        Mem.alloc(Bytes * Setup.GradAccum, Cat::Inputs, "labels", "input", "loss",
                  Kind == LossKind::Mse ? Ctx.TypeOf[O] : DType::Int64, Shape);
      break;
    }
  // The whole batch is materialised once; micro-batches are views of it.
  for (TensorId In : G.Inputs) {
    const Tensor &T = G.Tensors[In];
    std::vector<int64_t> Shape = T.Shape;
    if (!Shape.empty())
      Shape[0] *= Setup.GradAccum;
    StorageId S = Mem.alloc(T.bytesAs(Ctx.TypeOf[In]) * Setup.GradAccum, Cat::Inputs, T.Name,
                            "input", "", Ctx.TypeOf[In], Shape);
    (void)S;
  }
}

llvm::Expected<StepSimulation> Simulator::run() {
  bool Fuse = Setup.Attention == AttentionImpl::Sdpa ||
              (Setup.Attention == AttentionImpl::Auto && G.DeclaredFusedAttention);
  Ops = buildSimOps(G, Fuse);
  assignTypes();
  propagateRequiresGrad();
  Values.assign(G.Tensors.size(), {});
  GradOf.assign(G.Tensors.size(), NoStorage);
  for (TensorId O : G.Outputs)
    if (isFloating(G.Tensors[O].Type) && G.Tensors[O].ShapeKnown) {
      LossLogits = O; // the output the loss is computed on
      break;
    }
  planCheckpoints();
  planDropout();
  planGathers();
  CudaRuntimeOverhead Runtime = estimateCudaRuntimeOverhead(Setup.Gpu);
  if (Setup.Device == DeviceKind::Cuda) {
    Mem.Allocator.emplace();
    // cuBLAS workspaces come from the caching allocator too: one for the forward's
    // handle and one for the autograd thread's, alive for the whole process.
    Mem.Allocator->allocate(Runtime.CublasWorkspaceBytes);
    Mem.Allocator->allocate(Runtime.CublasWorkspaceBytes);
  }
  allocatePersistent();
  Mem.point("start", "step start", "");
  if (Setup.ZerothOrder) {
    // MeZO: two forward passes under no_grad at theta +- eps*z; z is regenerated from a
    // seed per parameter (torch.normal of the parameter's shape), so the largest
    // parameter is the only transient of the in-place perturb-and-update.
    for (int Pass = 0; Pass < 2; ++Pass) {
      if (auto E = forward(Pass))
        return E;
      loss();
      for (StorageId S : {LogSoftmax, TotalWeight, LossValue})
        if (S != NoStorage)
          Mem.release(S);
      for (size_t OpI = 0; OpI < Ops.size(); ++OpI) {
        for (StorageId S : SavedBy[OpI])
          Mem.release(S);
        SavedBy[OpI].clear();
      }
      for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T)
        if (!G.Tensors[T].Stored && G.Tensors[T].Kind != TensorKind::Input)
          dropValue(T);
    }
    int64_t Largest = 0;
    for (const CensusParameter &P : Census.Parameters)
      if (P.Trainable)
        Largest = std::max(Largest, P.bytes());
    StorageId Z = Mem.alloc(Largest, Cat::Temporaries, "perturbation z", "MeZO", "",
                            DType::Float32, {});
    Mem.point("optimizer", "MeZO perturb and update", "");
    Mem.release(Z);
  } else {
    for (CurrentMicroBatch = 0; CurrentMicroBatch < Setup.GradAccum; ++CurrentMicroBatch) {
      if (auto E = forward(CurrentMicroBatch))
        return E;
      loss();
      backward();
    }
    optimizerStep();
    zeroGrad();
  }

  StepSimulation Sim;
  Sim.MaxByCategory = Mem.Max;
  Sim.MaxByCategory.Activations = SavedAtEnd;
  Sim.SavedAtEndOfForward = SavedAtEnd;
  Sim.Peak = Mem.Peak;
  if (Mem.Allocator) {
    Sim.PeakReserved = Mem.Allocator->peakReservedBytes() + Runtime.ContextBytes;
    Sim.ReservedNote =
        "peak_reserved replays PyTorch's CUDA caching allocator over this step (512-byte "
        "blocks, 2 MiB small and 20 MiB large segments, never released; fragmentation from "
        "earlier steps is not replayed) with two cuBLAS workspaces, and adds the CUDA "
        "context: " + Runtime.Note;
  }
  Sim.PeakInfo = Mem.PeakInfo;
  Sim.Timeline = std::move(Mem.Timeline);
  for (const auto &[Layer, Bytes] : SavedByLayer)
    Sim.SavedByLayer.emplace_back(Layer, Bytes);
  Sim.Diags = Diags;
  Sim.FirstStepNote =
      "Step 1 differs: optimizer states are created lazily inside the first optimizer "
      "step, so step 1's forward and backward run without them; the figures above are the "
      "steady state (step 2 on).";
  return Sim;
}

llvm::Error Simulator::forward(int MicroBatch) {
  // Inputs are views of the materialised batch; every tensor's consumers are counted.
  for (TensorId In : G.Inputs)
    Values[In].L = contiguous(G.Tensors[In].Shape);
  for (Value &V : Values)
    V.PendingUses = 0;
  for (const SimOp &Op : Ops) {
    std::set<TensorId> Distinct(Op.Inputs.begin(), Op.Inputs.end());
    for (TensorId I : Distinct)
      if (I != NoTensor)
        ++Values[I].PendingUses;
  }
  SavedBy.assign(Ops.size(), {});
  HasBackward.assign(Ops.size(), false);
  Unpacked.assign(Ops.size(), 0);
  SegmentSaved.assign(Segments.size(), {});
  std::string Phase = phaseName("forward");
  size_t Seg = 0;
  for (size_t OpI = 0; OpI < Ops.size(); ++OpI) {
    while (Seg < Segments.size() && Segments[Seg].Last < OpI)
      ++Seg;
    bool InSegment = Seg < Segments.size() && Segments[Seg].First <= OpI;
    if (InSegment && OpI == Segments[Seg].First)
      enterCheckpoint(Seg, Phase);
    bool Selective = InSegment && Segments[Seg].Selective;
    ActiveSelective = Selective ? static_cast<int>(Seg) : -1;
    gatherFor(OpI, Phase);
    runOp(OpI, !InSegment || Selective, Phase);
    if (Selective && isMatmulKind(Ops[OpI].Kind))
      for (TensorId O : Ops[OpI].Outputs) {
        StorageId S = storageOf(O);
        if (S == NoStorage || !Values[O].Held)
          continue;
        // The selective policy stores matmul outputs for backward (MUST_SAVE).
        Mem.retain(S);
        Mem.recategorize(S, Cat::Activations);
        SegmentSaved[Seg].push_back(S);
        SelectiveKeep.insert(S);
      }
    ActiveSelective = -1;
  }
  (void)MicroBatch;
  return llvm::Error::success();
}

void Simulator::enterCheckpoint(size_t Seg, const std::string &Phase) {
  // torch.utils.checkpoint keeps the segment's inputs (save_for_backward) and, when it
  // preserves RNG state, a copy of the CPU generator state (5,056 bytes) that lives
  // until the graph is freed after backward.
  for (TensorId In : Segments[Seg].Inputs) {
    StorageId S = storageOf(In);
    if (S == NoStorage || !Ctx.RequiresGrad[In])
      continue;
    Mem.retain(S);
    if (Mem[S].Category == Cat::Temporaries)
      Mem.recategorize(S, Cat::Activations);
    SegmentSaved[Seg].push_back(S);
  }
  if (Setup.Device == DeviceKind::Cpu)
    RngStates.push_back(Mem.alloc(CpuRngStateBytes, Cat::Activations, "checkpoint RNG state",
                                  "checkpoint", Ops[Segments[Seg].First].Layer, DType::UInt8,
                                  {CpuRngStateBytes}));
  Mem.point(Phase, "checkpoint", Ops[Segments[Seg].First].Layer);
}

void Simulator::runOp(size_t OpI, bool Save, const std::string &Phase) {
  const SimOp &Op = Ops[OpI];
  OpMemoryRule Rule = memoryRuleFor(Op, Ctx);
  bool AnyGrad = false;
  for (TensorId I : Op.Inputs)
    AnyGrad |= I != NoTensor && Ctx.RequiresGrad[I];
  AnyGrad &= Save; // inside a checkpointed segment the forward runs under no_grad
  // Operands that matmul must copy to flatten (non-viewable strides): the copy is
  // what bmm/mm sees and saves.
  std::map<size_t, StorageId> Copies;
  auto CopyIfNeeded = [&](size_t Slot, size_t Keep) {
    TensorId T = Op.Inputs[Slot];
    if (T == NoTensor || G.Tensors[T].Stored || Values[T].Storage == NoStorage)
      return;
    if (flattenNeedsCopy(Values[T].L, Keep))
      Copies[Slot] = Mem.alloc(G.Tensors[T].bytesAs(Ctx.TypeOf[T]), Cat::Temporaries,
                               G.Tensors[T].Name + " (contiguous copy)", Op.Kind, Op.Layer,
                               Ctx.TypeOf[T], G.Tensors[T].Shape);
  };
  if (Op.Kind == "Linear")
    CopyIfNeeded(0, 1);
  if (Op.Kind == "MatMul") {
    CopyIfNeeded(0, 2);
    CopyIfNeeded(1, 2);
  }
  // Outputs.
  for (size_t OI = 0; OI < Op.Outputs.size(); ++OI) {
    TensorId O = Op.Outputs[OI];
    if (O == NoTensor)
      continue;
    const Tensor &T = G.Tensors[O];
    if (Rule.Outputs[OI] == OutputKind::ViewOfInput0 && Op.Inputs[0] != NoTensor &&
        Values[Op.Inputs[0]].Storage != NoStorage) {
      const Value &Src = Values[Op.Inputs[0]];
      Layout L;
      if (Op.Kind == "Transpose") {
        std::vector<int64_t> Perm = G.Nodes[Op.Nodes[0]].intsAttr("perm").value_or(
            std::vector<int64_t>{});
        if (Perm.size() == Src.L.Shape.size()) {
          for (int64_t P : Perm) {
            L.Shape.push_back(Src.L.Shape[P]);
            L.Strides.push_back(Src.L.Strides[P]);
          }
        }
      } else if (Op.Kind == "Split" || Op.Kind == "Slice") {
        L = Src.L;
        if (T.ShapeKnown && T.Shape.size() == L.Shape.size())
          L.Shape = T.Shape; // same strides, smaller extent
      } else if (Op.Kind == "Expand") {
        L = contiguous(T.Shape);
        size_t Off = T.Shape.size() - Src.L.Shape.size();
        for (size_t D = 0; D < T.Shape.size(); ++D)
          L.Strides[D] = D < Off || Src.L.Shape[D - Off] != T.Shape[D]
                             ? 0
                             : Src.L.Strides[D - Off];
      } else if (auto S = viewStrides(Src.L, T.Shape)) {
        L = {T.Shape, *S};
      }
      if (L.Shape.size() != T.Shape.size() || L.Strides.size() != T.Shape.size()) {
        // Not viewable: reshape copies.
        StorageId S = Mem.alloc(T.bytesAs(Ctx.TypeOf[O]), Cat::Temporaries, T.Name, Op.Kind,
                                Op.Layer, Ctx.TypeOf[O], T.Shape);
        holdValue(O, S, contiguous(T.Shape));
      } else {
        Mem.retain(Src.Storage);
        holdValue(O, Src.Storage, L);
      }
      continue;
    }
    if (!T.ShapeKnown)
      continue;
    // Cut cross-entropy never materialises the logits; the head's matmul is fused into
    // the loss kernel.
    bool Unmaterialised = Setup.Loss == LossKind::CutCrossEntropy && O == LossLogits;
    StorageId S = Mem.alloc(Unmaterialised ? 0 : T.bytesAs(Ctx.TypeOf[O]), Cat::Temporaries,
                            T.Name + (Unmaterialised ? " (not materialised)" : ""), Op.Kind,
                            Op.Layer, Ctx.TypeOf[O], T.Shape);
    holdValue(O, S, contiguous(T.Shape));
  }
  // Autocast: 16-bit copies of fp32 operands of matmul-like ops (weights cached).
  std::vector<StorageId> CastCopies;
  if (isAmp() && (Op.Kind == "Linear" || Op.Kind == "MatMul" || Op.Kind == "Conv" ||
                  Op.Kind == "Gemm")) {
    for (size_t Slot = 0; Slot < std::min<size_t>(2, Op.Inputs.size()); ++Slot) {
      TensorId T = Op.Inputs[Slot];
      // bitsandbytes dequantizes 4-bit weights to the compute dtype itself (no cast).
      if (T == NoTensor || Ctx.TypeOf[T] != DType::Float32 || quantizedWeight(Ctx, T))
        continue;
      CastCopies.push_back(Mem.alloc(G.Tensors[T].bytesAs(lowPrecision()), Cat::Temporaries,
                                     G.Tensors[T].Name + " (autocast copy)", Op.Kind,
                                     Op.Layer, lowPrecision(), G.Tensors[T].Shape));
      Copies[Slot] = CastCopies.back();
    }
  }
  // Saved for backward.
  if (AnyGrad) {
    HasBackward[OpI] = true;
    for (const SavedItem &Item : Rule.Saved) {
      StorageId S = NoStorage;
      // Under selective checkpointing only stored matmul outputs (and the segment's
      // inputs, parameters and batch) stay; the rest is recomputed in backward.
      if (ActiveSelective >= 0) {
        if (Item.What == SavedItem::Extra)
          continue;
        TensorId T = Item.What == SavedItem::Input ? Op.Inputs[Item.Index]
                                                   : Op.Outputs[Item.Index];
        StorageId Cand = storageOf(T);
        bool Persistent = Cand != NoStorage && (Mem[Cand].Category == Cat::Weights ||
                                                 Mem[Cand].Category == Cat::Inputs);
        bool SegmentInput = false;
        for (StorageId K : SegmentSaved[ActiveSelective])
          SegmentInput |= K == Cand;
        if (!Persistent && !SegmentInput && !SelectiveKeep.count(Cand))
          continue;
      }
      if (Item.What == SavedItem::Input && Item.Index < static_cast<int>(Op.Inputs.size())) {
        auto C = Copies.find(Item.Index);
        S = C != Copies.end() ? C->second : storageOf(Op.Inputs[Item.Index]);
        if (S == NoStorage)
          continue;
        Mem.retain(S);
      } else if (Item.What == SavedItem::Output &&
                 Item.Index < static_cast<int>(Op.Outputs.size())) {
        S = storageOf(Op.Outputs[Item.Index]);
        if (S == NoStorage)
          continue;
        Mem.retain(S);
      } else if (Item.What == SavedItem::Extra) {
        S = Mem.alloc(Item.ExtraBytes, Cat::Activations, Op.Name + " " + Item.ExtraName,
                      Op.Kind, Op.Layer, DType::Float32, {});
      }
      if (S == NoStorage)
        continue;
      if (Setup.Int8Activations && Item.What != SavedItem::Extra &&
          (Mem[S].Category == Cat::Temporaries || Mem[S].Category == Cat::Activations) &&
          isFloating(Mem[S].Type) && Mem[S].Bytes > 0) {
        // A pack hook keeps an int8 copy with one fp32 scale per 256 values instead of
        // the tensor; the backward unpacks it to full size for the node's formula.
        int64_t Elements = Mem[S].Bytes / std::max<int64_t>(dtypeBits(Mem[S].Type) / 8, 1);
        StorageId Packed = Mem.alloc(Elements + (Elements + 255) / 256 * 4, Cat::Activations,
                                     Mem[S].Name + " (int8)", Op.Kind, Op.Layer, DType::Int8,
                                     Mem[S].Shape);
        Unpacked[OpI] += Mem[S].Bytes;
        Mem.release(S);
        S = Packed;
      }
      if (Mem[S].Category == Cat::Temporaries)
        Mem.recategorize(S, Cat::Activations);
      SavedBy[OpI].push_back(S);
    }
  }
  if (Rule.ForwardTransient) {
    StorageId S = Mem.alloc(Rule.ForwardTransient, Cat::Temporaries, Op.Name + " scratch",
                            Op.Kind, Op.Layer, DType::Float32, {});
    Mem.point(Phase, Op.Name, Op.Layer);
    Mem.release(S);
  }
  Mem.point(Phase, Op.Name, Op.Layer);
  for (auto &[Slot, S] : Copies)
    Mem.release(S); // the saved ones keep their own reference
  std::set<TensorId> Distinct(Op.Inputs.begin(), Op.Inputs.end());
  for (TensorId I : Distinct) {
    if (I == NoTensor || G.Tensors[I].Stored || G.Tensors[I].Kind == TensorKind::Input)
      continue;
    if (--Values[I].PendingUses <= 0 && !G.Tensors[I].IsGraphOutput)
      dropValue(I);
  }
  // Outputs nobody reads die at once (unless they are graph outputs).
  for (TensorId O : Op.Outputs)
    if (O != NoTensor && Values[O].PendingUses == 0 && !G.Tensors[O].IsGraphOutput)
      dropValue(O);

  if (Dropouts.count(OpI))
    applyDropout(OpI, Save, Phase);
}

void Simulator::planGathers() {
  GatherUnit.assign(Ops.size(), "");
  if (Setup.Sharding.ZeroStage < 3)
    return;
  int64_t N = std::max<int64_t>(Setup.Sharding.Gpus, 1);
  bool OnCpu = Setup.Sharding.Offload == OffloadKind::Params;
  std::map<std::string, std::set<size_t>> UnitParams;
  for (size_t I = 0; I < Ops.size(); ++I) {
    // FSDP wraps each repeated block (auto_wrap_policy on the block class); DeepSpeed
    // ZeRO-3 fetches parameters module by module, about the same at block granularity.
    std::string Block = blockOfLayerPath(Ops[I].Layer);
    GatherUnit[I] = Block.empty() ? "op#" + std::to_string(I) : Block;
    for (TensorId In : Ops[I].Inputs)
      if (auto P = ParamIndex.find(In); P != ParamIndex.end())
        UnitParams[GatherUnit[I]].insert(P->second);
  }
  for (const auto &[Unit, Params] : UnitParams) {
    int64_t Bytes = 0;
    for (size_t P : Params) {
      int64_t Full = Census.Parameters[P].bytes();
      Bytes += OnCpu ? Full : Full - (Full + N - 1) / N;
    }
    GatherBytes[Unit] = Bytes;
  }
}

void Simulator::gatherFor(size_t OpI, const std::string &Phase) {
  if (GatherUnit.empty() || GatherUnit[OpI].empty() || GatherUnit[OpI] == HeldUnit)
    return;
  releaseGathered();
  HeldUnit = GatherUnit[OpI];
  int64_t Bytes = GatherBytes.count(HeldUnit) ? GatherBytes[HeldUnit] : 0;
  if (Bytes) {
    Gathered = Mem.alloc(Bytes, Cat::Weights, HeldUnit + " (all-gathered parameters)",
                         "all-gather", HeldUnit, DType::Float32, {});
    Mem.point(Phase, "all-gather " + HeldUnit, HeldUnit);
  }
}

void Simulator::releaseGathered() {
  if (Gathered != NoStorage)
    Mem.release(Gathered);
  Gathered = NoStorage;
  HeldUnit.clear();
}

void Simulator::planCheckpoints() {
  const std::string &Mode = Setup.Checkpoint;
  if (Mode == "none")
    return;
  int64_t Every = 1, FirstK = -1;
  if (llvm::StringRef(Mode).startswith("every:"))
    llvm::StringRef(Mode).drop_front(6).getAsInteger(10, Every);
  if (llvm::StringRef(Mode).startswith("first:"))
    llvm::StringRef(Mode).drop_front(6).getAsInteger(10, FirstK);
  bool Selective = Mode == "selective";
  if (Mode != "blocks" && !Selective && !llvm::StringRef(Mode).startswith("every:") &&
      FirstK < 0) {
    Diags.warning("checkpoint-mode", Mode,
                  "--checkpoint=" + Mode + " is resolved by the planner before simulation; "
                  "simulated without checkpointing");
    return;
  }
  // Repeated blocks are the runs of ops whose layer paths share a numbered prefix
  // ("h.3", "model.layers.12"); each is wrapped in torch.utils.checkpoint.
  int BlockIndex = 0;
  for (size_t I = 0; I < Ops.size();) {
    std::string Block = blockOfLayerPath(Ops[I].Layer);
    size_t J = I;
    while (J + 1 < Ops.size() && !Block.empty() && blockOfLayerPath(Ops[J + 1].Layer) == Block)
      ++J;
    if (!Block.empty()) {
      bool Chosen = FirstK >= 0 ? BlockIndex < FirstK
                                : BlockIndex % std::max<int64_t>(Every, 1) == 0;
      if (Chosen) {
        Segment Seg{I, J, {}, Selective};
        std::set<TensorId> Produced, Inputs;
        for (size_t K = I; K <= J; ++K)
          for (TensorId O : Ops[K].Outputs)
            Produced.insert(O);
        for (size_t K = I; K <= J; ++K)
          for (TensorId In : Ops[K].Inputs)
            if (In != NoTensor && !Produced.count(In) && !G.Tensors[In].Stored &&
                G.Tensors[In].Kind != TensorKind::Input && Inputs.insert(In).second)
              Seg.Inputs.push_back(In);
        Segments.push_back(std::move(Seg));
      }
      ++BlockIndex;
    }
    I = J + 1;
  }
  if (Segments.empty())
    Diags.warning("checkpoint-blocks", "",
                  "--checkpoint=" + Mode + ": no repeated blocks found in the layer paths "
                  "(names like h.0 or layers.3); simulated without checkpointing");
}

void Simulator::planDropout() {
  double Prob = Setup.Dropout ? *Setup.Dropout : G.DeclaredDropout.value_or(0.0);
  if (Prob <= 0)
    return;
  if (!Setup.Dropout)
    Diags.note("dropout-from-config", "",
               "training-time dropout p=" + std::to_string(Prob).substr(0, 4) +
                   " from the model's config (--dropout=0 to simulate without it)");
  // Where nn.Dropout sits in the transformer blocks exported models lose it from: on the
  // attention probabilities, on each residual branch's output projection, and on the
  // input of the block stack (embeddings).
  std::map<TensorId, size_t> ProducerOp;
  for (size_t I = 0; I < Ops.size(); ++I)
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        ProducerOp[O] = I;
  auto consumers = [&](TensorId T) { return G.Tensors[T].Consumers; };
  for (size_t I = 0; I < Ops.size(); ++I) {
    const SimOp &Op = Ops[I];
    if (Op.Outputs.empty() || Op.Outputs[0] == NoTensor)
      continue;
    TensorId Out = Op.Outputs[0];
    if (Op.Kind == "Softmax") {
      for (NodeId C : consumers(Out))
        if (G.Nodes[C].OpType == "MatMul")
          Dropouts.insert(I);
    } else if (Op.Kind == "Linear" && consumers(Out).size() == 1) {
      const Node &C = G.Nodes[consumers(Out)[0]];
      if (C.OpType == "Add" && C.Inputs.size() == 2) {
        TensorId Other = C.Inputs[0] == Out ? C.Inputs[1] : C.Inputs[0];
        if (Other != NoTensor && !G.Tensors[Other].Stored &&
            G.Tensors[Other].numElements() == G.Tensors[Out].numElements())
          Dropouts.insert(I);
      }
    }
  }
  for (const SimOp &Op : Ops) {
    if (blockOfLayerPath(Op.Layer).empty())
      continue;
    for (TensorId In : Op.Inputs) {
      auto P = In == NoTensor ? ProducerOp.end() : ProducerOp.find(In);
      if (P != ProducerOp.end() && blockOfLayerPath(Ops[P->second].Layer).empty() &&
          isFloating(G.Tensors[In].Type)) {
        Dropouts.insert(P->second);
        return;
      }
    }
  }
}

void Simulator::applyDropout(size_t OpI, bool Save, const std::string &Phase) {
  TensorId T = Ops[OpI].Outputs[0];
  StorageId In = storageOf(T);
  if (In == NoStorage || !Values[T].Held)
    return;
  const Tensor &Tn = G.Tensors[T];
  // CUDA's fused native_dropout keeps a bool mask; the CPU path (1.13 _dropout) keeps a
  // mask tensor in the input's dtype. The output x * mask is new memory.
  bool Saved = Save && Ctx.RequiresGrad[T];
  int64_t MaskBytes = Setup.Device == DeviceKind::Cuda ? Tn.numElements()
                                                       : Tn.bytesAs(Ctx.TypeOf[T]);
  StorageId Mask = Mem.alloc(MaskBytes, Saved ? Cat::Activations : Cat::Temporaries,
                             Tn.Name + " dropout mask", "Dropout", Ops[OpI].Layer,
                             Setup.Device == DeviceKind::Cuda ? DType::Bool : Ctx.TypeOf[T],
                             Tn.Shape);
  StorageId Out = Mem.alloc(Tn.bytesAs(Ctx.TypeOf[T]), Cat::Temporaries, Tn.Name + " (dropout)",
                            "Dropout", Ops[OpI].Layer, Ctx.TypeOf[T], Tn.Shape);
  Mem.point(Phase, Ops[OpI].Name + " dropout", Ops[OpI].Layer);
  Layout L = Values[T].L;
  dropValue(T);
  int Uses = Values[T].PendingUses;
  holdValue(T, Out, contiguous(Tn.Shape));
  Values[T].PendingUses = Uses;
  if (Saved)
    DropoutMasks[T] = Mask;
  else
    Mem.release(Mask);
  (void)L;
}

void Simulator::recompute(size_t Seg, const std::string &Phase) {
  const Segment &S = Segments[Seg];
  for (size_t I = S.First; I <= S.Last; ++I) {
    for (TensorId In : Ops[I].Inputs)
      if (In != NoTensor)
        Values[In].PendingUses = 0;
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        Values[O].PendingUses = 0;
  }
  for (size_t I = S.First; I <= S.Last; ++I) {
    std::set<TensorId> Distinct(Ops[I].Inputs.begin(), Ops[I].Inputs.end());
    for (TensorId In : Distinct)
      if (In != NoTensor)
        ++Values[In].PendingUses;
  }
  StorageId Rng = NoStorage;
  if (Setup.Device == DeviceKind::Cpu) // fork_rng saves and restores the generator state
    Rng = Mem.alloc(CpuRngStateBytes, Cat::Temporaries, "recompute RNG state", "checkpoint",
                    Ops[S.First].Layer, DType::UInt8, {CpuRngStateBytes});
  // CheckpointFunction.backward holds the recomputed outputs while it runs backward
  // through them: a use that outlives the segment's own ops (dropped in leaveCheckpoint).
  std::set<NodeId> Inside;
  for (size_t I = S.First; I <= S.Last; ++I)
    Inside.insert(Ops[I].Nodes.begin(), Ops[I].Nodes.end());
  for (size_t I = S.First; I <= S.Last; ++I)
    for (TensorId O : Ops[I].Outputs) {
      if (O == NoTensor)
        continue;
      bool Escapes = G.Tensors[O].IsGraphOutput;
      for (NodeId C : G.Tensors[O].Consumers)
        Escapes |= !Inside.count(C);
      if (Escapes)
        ++Values[O].PendingUses;
    }
  for (size_t I = S.First; I <= S.Last; ++I) {
    if (!S.Selective || !isMatmulKind(Ops[I].Kind)) {
      runOp(I, true, Phase);
      continue;
    }
    // A stored matmul is not rerun; its backward reads the recomputed inputs.
    OpMemoryRule Rule = memoryRuleFor(Ops[I], Ctx);
    for (const SavedItem &Item : Rule.Saved)
      if (Item.What == SavedItem::Input) {
        StorageId St = storageOf(Ops[I].Inputs[Item.Index]);
        if (St == NoStorage ||
            std::find(SavedBy[I].begin(), SavedBy[I].end(), St) != SavedBy[I].end())
          continue;
        Mem.retain(St);
        SavedBy[I].push_back(St);
      }
    for (TensorId In : std::set<TensorId>(Ops[I].Inputs.begin(), Ops[I].Inputs.end()))
      if (In != NoTensor && !G.Tensors[In].Stored && --Values[In].PendingUses <= 0)
        dropValue(In);
  }
  if (Rng != NoStorage)
    Mem.release(Rng);
}

void Simulator::leaveCheckpoint(size_t Seg) {
  const Segment &S = Segments[Seg];
  for (StorageId St : SegmentSaved[Seg])
    SelectiveKeep.erase(St);
  for (size_t I = S.First; I <= S.Last; ++I)
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        dropValue(O);
  for (StorageId St : SegmentSaved[Seg])
    Mem.release(St);
  SegmentSaved[Seg].clear();
}

void Simulator::loss() {
  releaseGathered();
  std::string Phase = phaseName("forward");
  LossKind Kind = Setup.Loss;
  if (LossLogits != NoTensor && Kind == LossKind::Auto)
    Kind = G.Tensors[LossLogits].Shape.size() >= 2 ? LossKind::CrossEntropy : LossKind::None;
  LogSoftmax = TotalWeight = LossValue = NoStorage;
  if (LossLogits == NoTensor || Kind == LossKind::None) {
    if (LossLogits != NoTensor)
      LossValue = storageOf(LossLogits);
  } else {
    const Tensor &T = G.Tensors[LossLogits];
    DType LossType = Setup.Prec == Precision::Bf16 ? DType::BFloat16 : DType::Float32;
    if (Kind == LossKind::CutCrossEntropy) {
      // Only a fp32 log-sum-exp per row is kept for the backward.
      LossClasses = T.Shape.back();
      LossRows = T.numElements() / std::max<int64_t>(LossClasses, 1);
      LogSoftmax = Mem.alloc(LossRows * 4, Cat::Activations, "logsumexp (cut cross-entropy)",
                             "CutCrossEntropy", "loss", DType::Float32, {LossRows});
      LossValue = Mem.alloc(dtypeBytes(LossType, 1), Cat::Temporaries, "loss",
                            "CutCrossEntropy", "loss", LossType, {});
    } else if (Kind == LossKind::CrossEntropy) {
      LossClasses = T.Shape.back();
      LossRows = T.numElements() / std::max<int64_t>(LossClasses, 1);
      // log_softmax in fp32 (autocast's fp32 list; pure bf16 keeps bf16), saved for nll.
      DType LsType = isAmp() ? DType::Float32 : Ctx.TypeOf[LossLogits];
      if (isAmp() && Ctx.TypeOf[LossLogits] != DType::Float32) {
        // The fp32 copy of 16-bit logits that cross_entropy runs on.
        StorageId Up = Mem.alloc(T.bytesAs(DType::Float32), Cat::Temporaries,
                                 "logits (fp32 for the loss)", "Cast", "loss", DType::Float32,
                                 T.Shape);
        Mem.point(Phase, "cross_entropy", "loss");
        Mem.release(Up);
      }
      // Under no_grad (zeroth-order) nothing is kept for a backward.
      Cat Kept = Setup.ZerothOrder ? Cat::Temporaries : Cat::Activations;
      LogSoftmax = Mem.alloc(T.bytesAs(LsType), Kept, "log_softmax(logits)",
                             "LogSoftmax", "loss", LsType, {LossRows, LossClasses});
      LossValue = Mem.alloc(dtypeBytes(LossType, 1), Cat::Temporaries, "loss", "NllLoss", "loss",
                            LossType, {});
      TotalWeight = Mem.alloc(dtypeBytes(LossType, 1), Kept, "total_weight",
                              "NllLoss", "loss", LossType, {});
    } else { // MSE keeps input and target
      Mem.retain(storageOf(LossLogits));
      LogSoftmax = storageOf(LossLogits);
      if (Mem[LogSoftmax].Category == Cat::Temporaries)
        Mem.recategorize(LogSoftmax, Cat::Activations);
      LossValue = Mem.alloc(dtypeBytes(LossType, 1), Cat::Temporaries, "loss", "MseLoss", "loss",
                            LossType, {});
    }
    Mem.point(Phase, "loss", "loss");
  }
  // Saved bytes at the end of the forward: what backward will read.
  int64_t Saved = Mem.LiveBytes.Activations;
  SavedAtEnd = Saved;
  if (CurrentMicroBatch == 0) {
    SavedByLayer.clear();
    for (size_t OpI = 0; OpI < Ops.size(); ++OpI)
      for (StorageId S : SavedBy[OpI])
        if (Mem[S].Category == Cat::Activations)
          SavedByLayer[Ops[OpI].Layer.empty() ? "(model)" : Ops[OpI].Layer] += Mem[S].Bytes;
  }
  // The caller drops the model's outputs before backward (only the loss is kept).
  for (TensorId O : G.Outputs)
    if (O != NoTensor && Values[O].Held && storageOf(O) != LossValue)
      dropValue(O);
  Mem.point(phaseName("backward"), "outputs released", "");
}

void Simulator::backward() {
  std::string Phase = phaseName("backward");
  std::fill(GradOf.begin(), GradOf.end(), NoStorage);
  if (LossValue == NoStorage)
    return;
  StorageId Seed = Mem.alloc(4, Cat::Temporaries, "grad(loss)", "backward", "loss",
                             DType::Float32, {});
  if (Setup.Loss == LossKind::CutCrossEntropy && LossLogits != NoTensor) {
    // The fused backward recomputes logits blockwise (on-chip) and hands the head the
    // gradients of its input and weight directly: nothing logits-sized exists.
    Mem.release(Seed);
    Mem.release(LogSoftmax);
    GradOf[LossLogits] = Mem.alloc(0, Cat::Temporaries, "grad(logits) (not materialised)",
                                   "CutCrossEntropyBackward", "loss", DType::Float32, {});
  } else if (LossLogits != NoTensor && LogSoftmax != NoStorage && LossRows > 0) {
    const Tensor &T = G.Tensors[LossLogits];
    DType LsType = Mem[LogSoftmax].Type;
    // NllLossBackward: a dense [rows, classes] gradient, then LogSoftmaxBackward.
    StorageId GradLs = Mem.alloc(T.bytesAs(LsType), Cat::Temporaries, "grad(log_softmax)",
                                 "NllLossBackward", "loss", LsType, T.Shape);
    Mem.release(Seed);
    Mem.point(Phase, "NllLossBackward", "loss");
    StorageId GradLogits = Mem.alloc(T.bytesAs(LsType), Cat::Temporaries, "grad(logits)",
                                     "LogSoftmaxBackward", "loss", LsType, T.Shape);
    Mem.point(Phase, "LogSoftmaxBackward", "loss");
    Mem.release(GradLs);
    Mem.release(LogSoftmax);
    Mem.release(TotalWeight);
    if (LsType != Ctx.TypeOf[LossLogits]) { // cast back to the logits' dtype
      StorageId Down = Mem.alloc(T.bytesAs(Ctx.TypeOf[LossLogits]), Cat::Temporaries,
                                 "grad(logits)", "ToCopyBackward", "loss",
                                 Ctx.TypeOf[LossLogits], T.Shape);
      Mem.point(Phase, "ToCopyBackward", "loss");
      Mem.release(GradLogits);
      GradLogits = Down;
    }
    GradOf[LossLogits] = GradLogits;
  } else if (LossLogits != NoTensor) {
    if (LogSoftmax != NoStorage && LogSoftmax != LossValue)
      Mem.release(LogSoftmax);
    GradOf[LossLogits] = Seed;
  } else {
    Mem.release(Seed);
  }
  Mem.release(LossValue);

  // Gradients reaching one parameter from several uses (a tied embedding and LM head)
  // are summed in AccumulateGrad's input buffer first; it runs once all have arrived.
  std::vector<int> UsesLeft(Census.Parameters.size(), 0);
  std::vector<StorageId> Pending(Census.Parameters.size(), NoStorage);
  for (size_t OpI = 0; OpI < Ops.size(); ++OpI)
    if (HasBackward[OpI])
      for (TensorId In : std::set<TensorId>(Ops[OpI].Inputs.begin(), Ops[OpI].Inputs.end())) {
        auto P = ParamIndex.find(In);
        if (P != ParamIndex.end() && Census.Parameters[P->second].Trainable)
          ++UsesLeft[P->second];
      }
  // InputBuffer::accumulate sums a second gradient into a fresh tensor and frees both.
  auto Accumulate = [&](StorageId Old, StorageId Incoming, const SimOp &Op) {
    StorageId Sum = Mem.alloc(Mem[Old].Bytes, Mem[Old].Category, Mem[Old].Name, "AddBackward",
                              Op.Layer, Mem[Old].Type, Mem[Old].Shape);
    Mem.point(Phase, Op.Name + " (gradient sum)", Op.Layer);
    Mem.release(Old);
    Mem.release(Incoming);
    return Sum;
  };
  auto Deliver = [&](TensorId In, StorageId Grad, const SimOp &Op) {
    auto P = ParamIndex.find(In);
    if (P != ParamIndex.end()) {
      size_t I = P->second;
      if (!Census.Parameters[I].Trainable) {
        Mem.release(Grad);
        return;
      }
      StorageId Buffered = Pending[I] == NoStorage ? Grad : Accumulate(Pending[I], Grad, Op);
      Pending[I] = NoStorage;
      if (--UsesLeft[I] > 0) {
        Pending[I] = Buffered;
        return;
      }
      if (Setup.Galore && Setup.Galore->PerLayer) {
        // Per-layer GaLore steps each weight in its post-accumulate-grad hook and frees
        // the gradient there: only the weights in flight have gradients.
        auto [Update, Svd] = galoreTransients(Census.Parameters[I], Setup);
        StorageId T = Mem.alloc(std::max(Update, Svd), Cat::Temporaries,
                                Census.Parameters[I].Name + " GaLore update", "optimizer",
                                Op.Layer, DType::Float32, {});
        Mem.recategorize(Buffered, Cat::Gradients);
        Mem.point(Phase, Op.Name + " (GaLore layer-wise step)", Op.Layer);
        Mem.release(T);
        Mem.release(Buffered);
        return;
      }
      if (Setup.Sharding.ZeroStage >= 2) {
        // ZeRO-2/3 and FSDP reduce-scatter the full gradient as soon as it is complete
        // and keep this GPU's partition.
        const CensusParameter &Pm = Census.Parameters[I];
        int64_t N = std::max<int64_t>(Setup.Sharding.Gpus, 1);
        if (ParamGrad[I] == NoStorage)
          ParamGrad[I] = Mem.alloc((Pm.bytes() + N - 1) / N, Cat::Gradients,
                                   Pm.Name + ".grad (shard)", Op.Kind, Op.Layer, Pm.Type,
                                   Pm.Shape);
        Mem.point(Phase, Op.Name + " (reduce-scatter)", Op.Layer);
        Mem.release(Buffered);
        return;
      }
      if (ParamGrad[I] == NoStorage) {
        // AccumulateGrad steals a gradient it alone holds; a shared one is cloned.
        if (Mem[Buffered].Refs == 1) {
          Mem.recategorize(Buffered, Cat::Gradients);
          Mem[Buffered].Name = Census.Parameters[I].Name + ".grad";
          ParamGrad[I] = Buffered;
        } else {
          const CensusParameter &Pm = Census.Parameters[I];
          ParamGrad[I] = Mem.alloc(Pm.bytes(), Cat::Gradients, Pm.Name + ".grad", Op.Kind,
                                   Op.Layer, Pm.Type, Pm.Shape);
          Mem.release(Buffered);
        }
      } else {
        Mem.release(Buffered); // .grad += new_grad, in place
      }
      return;
    }
    if (GradOf[In] == NoStorage)
      GradOf[In] = Grad;
    else
      GradOf[In] = Accumulate(GradOf[In], Grad, Op);
  };

  std::map<size_t, size_t> SegmentEndingAt, SegmentStartingAt;
  for (size_t I = 0; I < Segments.size(); ++I) {
    SegmentEndingAt[Segments[I].Last] = I;
    SegmentStartingAt[Segments[I].First] = I;
  }
  for (size_t OpI = Ops.size(); OpI-- > 0;) {
    const SimOp &Op = Ops[OpI];
    if (HasBackward[OpI] || SegmentEndingAt.count(OpI))
      gatherFor(OpI, Phase);
    if (auto Seg = SegmentEndingAt.find(OpI); Seg != SegmentEndingAt.end()) {
      bool Needed = false;
      for (size_t I = Segments[Seg->second].First; I <= OpI; ++I)
        for (TensorId O : Ops[I].Outputs)
          Needed |= O != NoTensor && GradOf[O] != NoStorage;
      if (Needed)
        recompute(Seg->second, Phase + " (recompute)");
    }
    if (auto D = DropoutMasks.find(Op.Outputs.empty() ? NoTensor : Op.Outputs[0]);
        D != DropoutMasks.end()) {
      TensorId T = D->first;
      if (GradOf[T] != NoStorage) {
        StorageId Through = Mem.alloc(G.Tensors[T].bytesAs(Ctx.TypeOf[T]), Cat::Temporaries,
                                      "grad(" + G.Tensors[T].Name + ")", "DropoutBackward",
                                      Op.Layer, Ctx.TypeOf[T], G.Tensors[T].Shape);
        Mem.point(Phase, Op.Name + " dropout backward", Op.Layer);
        Mem.release(GradOf[T]);
        GradOf[T] = Through;
      }
      Mem.release(D->second);
      DropoutMasks.erase(D);
    }
    bool AnyOutGrad = false;
    for (TensorId O : Op.Outputs)
      AnyOutGrad |= O != NoTensor && GradOf[O] != NoStorage;
    if (!HasBackward[OpI] || !AnyOutGrad) {
      for (StorageId S : SavedBy[OpI])
        Mem.release(S);
      SavedBy[OpI].clear();
      for (TensorId O : Op.Outputs)
        if (O != NoTensor && GradOf[O] != NoStorage) {
          Mem.release(GradOf[O]);
          GradOf[O] = NoStorage;
        }
      continue;
    }
    OpMemoryRule Rule = memoryRuleFor(Op, Ctx);
    StorageId OutGrad = Op.Outputs.empty() ? NoStorage : GradOf[Op.Outputs[0]];
    std::vector<std::pair<TensorId, StorageId>> Produced;
    // Parameters' gradients first (mm computes grad_weight before grad_input).
    std::vector<size_t> Order;
    for (size_t I = 0; I < Op.Inputs.size(); ++I)
      if (ParamIndex.count(Op.Inputs[I]))
        Order.push_back(I);
    for (size_t I = 0; I < Op.Inputs.size(); ++I)
      if (!ParamIndex.count(Op.Inputs[I]))
        Order.push_back(I);
    StorageId Scratch = NoStorage;
    if (int64_t Bytes = Rule.BackwardTransient + (OpI < Unpacked.size() ? Unpacked[OpI] : 0))
      Scratch = Mem.alloc(Bytes, Cat::Temporaries, Op.Name + " backward scratch", Op.Kind,
                          Op.Layer, DType::Float32, {});
    for (size_t I : Order) {
      TensorId In = Op.Inputs[I];
      if (In == NoTensor || !Ctx.RequiresGrad[In])
        continue;
      if (Rule.GradIsPassThrough[I] && OutGrad != NoStorage) {
        Mem.retain(OutGrad);
        Produced.emplace_back(In, OutGrad);
        continue;
      }
      int64_t Bytes = Rule.GradInputBytes[I];
      if (ParamIndex.count(In))
        Bytes = Census.Parameters[ParamIndex[In]].bytes();
      if (!Bytes)
        continue;
      Produced.emplace_back(In, Mem.alloc(Bytes, Cat::Temporaries, "grad(" + G.Tensors[In].Name + ")",
                                          Op.Kind + "Backward", Op.Layer, Ctx.TypeOf[In],
                                          G.Tensors[In].Shape));
    }
    Mem.point(Phase, Op.Name, Op.Layer);
    if (Scratch != NoStorage)
      Mem.release(Scratch);
    // The engine frees a node's incoming gradients and saved tensors when the node
    // returns, then hands its outputs to the next nodes' input buffers (where sums happen).
    for (TensorId O : Op.Outputs)
      if (O != NoTensor && GradOf[O] != NoStorage) {
        Mem.release(GradOf[O]);
        GradOf[O] = NoStorage;
      }
    for (StorageId S : SavedBy[OpI])
      Mem.release(S);
    SavedBy[OpI].clear();
    for (auto &[In, S] : Produced)
      Deliver(In, S, Op);
    Mem.point(Phase, Op.Name, Op.Layer);
    if (auto Seg = SegmentStartingAt.find(OpI); Seg != SegmentStartingAt.end())
      leaveCheckpoint(Seg->second);
  }
  for (auto &[T, Mask] : DropoutMasks)
    Mem.release(Mask);
  DropoutMasks.clear();
  for (size_t I = 0; I < Segments.size(); ++I)
    leaveCheckpoint(I);
  for (StorageId &S : GradOf)
    if (S != NoStorage) {
      Mem.release(S);
      S = NoStorage;
    }
  releaseGathered();
  // The checkpoints' RNG states go with the graph, after the last backward node.
  for (StorageId S : RngStates)
    Mem.release(S);
  RngStates.clear();
  // Values still held (inputs of ops that never ran backward) are released with the graph.
  for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T)
    if (!G.Tensors[T].Stored && G.Tensors[T].Kind != TensorKind::Input)
      dropValue(T);
  Mem.point(Phase, "backward done", "");
}

void Simulator::optimizerStep() {
  if (Setup.Galore) {
    int64_t Update = 0, Svd = 0;
    for (const CensusParameter &P : Census.Parameters)
      if (P.Trainable && !Setup.Galore->PerLayer) {
        auto [U, S] = galoreTransients(P, Setup);
        Update = std::max(Update, U);
        Svd = std::max(Svd, S);
      }
    for (auto [Bytes, What] : {std::pair{Svd, "GaLore projector SVD (every update gap)"},
                               std::pair{Update, "optimizer.step"}}) {
      StorageId S = Bytes ? Mem.alloc(Bytes, Cat::Temporaries, What, "optimizer.step", "",
                                      DType::Float32, {})
                          : NoStorage;
      Mem.point("optimizer", What, "");
      if (S != NoStorage)
        Mem.release(S);
    }
    return;
  }
  // torch.optim's single-tensor Adam(W) computes denom = (exp_avg_sq.sqrt() / bc2).add_(eps):
  // two parameter-sized temporaries for the parameter being updated. The foreach
  // version does the same with lists: two temporaries the size of all parameters. The
  // fused kernel needs none; SGD (with or without momentum) updates in place at step 2+.
  int64_t Transient = 0, Largest = 0, Sum = 0;
  for (const CensusParameter &P : Census.Parameters)
    if (P.Trainable) {
      DType T = Setup.keepsMasterWeights() ? DType::Float32 : P.Type;
      Largest = std::max(Largest, dtypeBytes(T, P.NumElements));
      Sum += dtypeBytes(T, P.NumElements);
    }
  bool Adam = Setup.Optimizer == OptimizerKind::Adam || Setup.Optimizer == OptimizerKind::AdamW;
  if (Adam && Setup.Impl == OptimizerImpl::ForLoop)
    Transient = 2 * Largest;
  else if (Adam && Setup.Impl == OptimizerImpl::Foreach)
    Transient = 2 * Sum;
  else if (Setup.Optimizer == OptimizerKind::Lion ||
           Setup.Optimizer == OptimizerKind::Adafactor)
    // Lion builds `exp_avg * b1 + grad * (1 - b1)` out of place; transformers' Adafactor
    // builds `grad**2 + eps` and the approximated update: two parameter-sized tensors
    // for the parameter being updated. bitsandbytes' 8-bit kernels update in place, as
    // does torchao's AdamWFp8 (one torch.compile'd kernel per parameter; its buffers are
    // not measured here, so none are predicted).
    Transient = 2 * Largest;
  const ShardingSetup &Sh = Setup.Sharding;
  if (Sh.Offload != OffloadKind::None || (Sh.ZeroStage >= 1 && !Sh.Fsdp))
    Transient = 0; // DeepSpeed steps with FusedAdam on the GPU or CPUAdam on the host
  else if (Sh.Fsdp)
    Transient = (Transient + Sh.Gpus - 1) / std::max<int64_t>(Sh.Gpus, 1); // sharded flat params
  StorageId S = NoStorage;
  if (Transient)
    S = Mem.alloc(Transient, Cat::Temporaries, "optimizer scratch", "optimizer.step", "",
                  DType::Float32, {});
  Mem.point("optimizer", "optimizer.step", "");
  if (S != NoStorage)
    Mem.release(S);
}

void Simulator::zeroGrad() {
  if (!Setup.KeepGrads)
    for (StorageId &S : ParamGrad)
      if (S != NoStorage) {
        Mem.release(S);
        S = NoStorage;
      }
  Mem.point("zero_grad", "zero_grad", "");
}

} // namespace

llvm::Expected<StepSimulation> simulateStep(const Graph &G, const TrainingSetup &Setup,
                                            const ParameterCensus &Census) {
  return Simulator(G, Setup, Census).run();
}

MemoryReport buildStepReport(const Graph &G, const TrainingSetup &Setup,
                             const ParameterCensus &Census, const StepSimulation &Sim) {
  MemoryReport R = buildCensusReport(G, Setup, Census);
  R.Bytes.Activations = Sim.SavedAtEndOfForward;
  R.Bytes.Temporaries = Sim.MaxByCategory.Temporaries;
  R.Bytes.Inputs = Sim.MaxByCategory.Inputs; // the batch inputs and the loss's labels
  // The simulation knows when gradients live (layer-wise updates, reduce-scatter).
  R.Bytes.Gradients = Sim.MaxByCategory.Gradients;
  if (Setup.Sharding.active()) {
    // Per-GPU figures: what this GPU holds under sharding and offload.
    R.Bytes.Weights = Sim.MaxByCategory.Weights;
    R.Bytes.MasterWeights = Sim.MaxByCategory.MasterWeights;
    R.Bytes.Gradients = Sim.MaxByCategory.Gradients;
    R.Bytes.OptimizerStates = Sim.MaxByCategory.OptimizerStates;
  }
  R.Peak = Sim.Peak;
  R.PeakReserved = Sim.PeakReserved;
  R.PeakInfo = Sim.PeakInfo;
  R.Timeline = Sim.Timeline;
  R.SavedByLayer = Sim.SavedByLayer;
  for (const auto &[Path, Bytes] : Sim.SavedByLayer) {
    auto It = std::find_if(R.Layers.begin(), R.Layers.end(),
                           [&Path = Path](const LayerSummary &L) { return L.Path == Path; });
    if (It == R.Layers.end()) {
      R.Layers.push_back({Path});
      It = R.Layers.end() - 1;
    }
    It->SavedBytes += Bytes;
  }
  R.Notes.push_back(Sim.FirstStepNote);
  if (!Sim.ReservedNote.empty())
    R.Notes.push_back(Sim.ReservedNote);
  R.Diags.append(Sim.Diags);
  return R;
}

} // namespace trainmem
