//===- StepSimulatorState.h - the step simulator's state, shared by its parts -*- C++ -*-===//
//
// Internal to analyzer/StepSimulator*.cpp: the storages and their reference counts
// (Memory), tensor layouts, and the Simulator whose passes those files define
// (StepSimulator.cpp: dtypes, requires-grad, persistent state and the replay loop;
// StepSimulatorForward.cpp: forward, checkpointing, dropout and the loss;
// StepSimulatorBackward.cpp: backward, optimizer step and zero_grad).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_STEPSIMULATORSTATE_H
#define TRAINMEM_ANALYZER_STEPSIMULATORSTATE_H

#include "analyzer/StepSimulator.h"
#include "analyzer/CachingAllocatorModel.h"
#include "analyzer/OpMemoryRules.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Allocator.h"
#include "llvm/Support/StringSaver.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace trainmem {
namespace sim {

enum class Cat { Weights, MasterWeights, Gradients, OptimizerStates, Activations, Temporaries, Inputs };

inline int64_t &slot(CategoryBytes &B, Cat C) {
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

inline const char *catName(Cat C) {
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

constexpr StorageId NoStorage = -1;

/// Ops whose output TensorIterator lays out like their (first full-size) input.
bool isPointwise(llvm::StringRef K);

/// An op's inputs without repeats (x * x reads x once), in ascending order, without the
/// allocation of a std::set: this runs for every op of every simulated step.
inline llvm::SmallVector<TensorId, 4> distinctInputs(const std::vector<TensorId> &Inputs) {
  llvm::SmallVector<TensorId, 4> V(Inputs.begin(), Inputs.end());
  llvm::sort(V);
  V.erase(std::unique(V.begin(), V.end()), V.end());
  return V;
}

/// A storage's figures: what every event reads (a few words, cheap to append).
struct Storage {
  int64_t Bytes = 0;
  int64_t Handle = 0; ///< the block the caching-allocator replay gave it
  size_t LivePos = 0; ///< index in Memory's live list while live
  int Refs = 0;
  Cat Category = Cat::Temporaries;
  DType Type = DType::Float32;
  bool Live = false;
};

/// What describes a storage in a report (the tensors at the peak); kept with details only,
/// in the Memory's arena (never freed before the Memory: views stay valid).
struct StorageDetail {
  llvm::StringRef Name, Op, Layer;
  llvm::ArrayRef<int64_t> Shape;
};

/// Live storages and the timeline over them.
class Memory {
public:
  /// Names, op, layer and shape only describe tensors at the peak, so a run without
  /// details keeps none of them (no string is built: callers pass Twines).
  StorageId alloc(int64_t Bytes, Cat C, const llvm::Twine &Name, const llvm::Twine &Op,
                  llvm::StringRef Layer, DType Type, llvm::ArrayRef<int64_t> Shape) {
    Storage S;
    S.Bytes = Bytes;
    S.Category = C;
    if (Details)
      Described.push_back({save(Name), save(Op), save(Layer), save(Shape)});
    S.Type = Type;
    S.Refs = 1;
    S.Live = true;
    if (Allocator)
      S.Handle = Allocator->allocate(Bytes);
    slot(LiveBytes, C) += Bytes;
    Total += Bytes;
    S.LivePos = LiveList.size();
    Storages.push_back(S);
    const auto Id = static_cast<StorageId>(Storages.size() - 1);
    LiveList.push_back(Id);
    if (Details)
      BornSinceTop.push_back(Id);
    return Id;
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
    if (Details && !TopLost &&
        llvm::any_of(PeakTop, [S](const TopTensor &T) { return T.Id == S; }))
      TopLost = true;
    if (Allocator)
      Allocator->free(St.Handle);
    slot(LiveBytes, St.Category) -= St.Bytes;
    Total -= St.Bytes;
    // Swap-remove from the live list.
    StorageId Last = LiveList.back();
    LiveList[St.LivePos] = Last;
    Storages[Last].LivePos = St.LivePos;
    LiveList.pop_back();
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
  /// A storage's name and shape ("" and none in runs without details).
  llvm::StringRef name(StorageId S) const {
    return Details ? Described[S].Name : llvm::StringRef();
  }
  llvm::ArrayRef<int64_t> shape(StorageId S) const {
    return Details ? Described[S].Shape : llvm::ArrayRef<int64_t>();
  }
  void rename(StorageId S, const llvm::Twine &Name) {
    if (Details)
      Described[S].Name = save(Name);
  }
  bool live(StorageId S) const {
    return S >= 0 && static_cast<size_t>(S) < Storages.size() && Storages[S].Live;
  }
  /// Appends the figures so far, the live storages by id (with their allocator
  /// addresses) and the allocator's state: see Simulator::carriedState().
  void appendState(std::vector<int64_t> &Out) const {
    for (int64_t V : {Total, Peak})
      Out.push_back(V);
    for (const CategoryBytes *B : {&LiveBytes, &Max})
      for (int64_t V : {B->Weights, B->MasterWeights, B->Gradients, B->OptimizerStates,
                        B->Activations, B->Temporaries, B->Inputs})
        Out.push_back(V);
    std::vector<StorageId> Ids(LiveList);
    llvm::sort(Ids);
    Out.push_back(static_cast<int64_t>(Ids.size()));
    for (StorageId Id : Ids) {
      const Storage &S = Storages[Id];
      for (int64_t V : {static_cast<int64_t>(Id), S.Bytes, static_cast<int64_t>(S.Category),
                        static_cast<int64_t>(S.Type), static_cast<int64_t>(S.Refs),
                        Allocator ? Allocator->addressOf(S.Handle) : 0})
        Out.push_back(V);
    }
    if (Allocator)
      Allocator->appendState(Out);
  }
  void reserve(size_t N) {
    Storages.reserve(N);
    if (Details)
      Described.reserve(N);
    LiveList.reserve(N / 4);
  }

  /// Without details (the planner's evaluations) no timeline and no tensors at the peak
  /// are kept: only the figures.
  bool Details = true;

  /// Records the state after an event; keeps the per-category maxima and the peak.
  void point(llvm::StringRef Phase, const llvm::Twine &Op, llvm::StringRef Layer) {
    // Field by field: slot()'s switch in a loop over categories was half of point().
    Max.Weights = std::max(Max.Weights, LiveBytes.Weights);
    Max.MasterWeights = std::max(Max.MasterWeights, LiveBytes.MasterWeights);
    Max.Gradients = std::max(Max.Gradients, LiveBytes.Gradients);
    Max.OptimizerStates = std::max(Max.OptimizerStates, LiveBytes.OptimizerStates);
    Max.Activations = std::max(Max.Activations, LiveBytes.Activations);
    Max.Temporaries = std::max(Max.Temporaries, LiveBytes.Temporaries);
    Max.Inputs = std::max(Max.Inputs, LiveBytes.Inputs);
    if (Details) {
      TimelinePoint P;
      P.Index = static_cast<int64_t>(Timeline.size());
      P.Phase = Phase.str();
      P.Op = Op.str();
      P.Layer = Layer.str();
      P.Live = LiveBytes;
      Timeline.push_back(std::move(P));
    }
    if (Total <= Peak)
      return;
    Peak = Total;
    // The peak rises at most events of the forward: assign() reuses the strings' storage.
    PeakInfo.Phase.assign(Phase.data(), Phase.size());
    PeakOp.clear();
    Op.toVector(PeakOp);
    if (!Layer.empty()) {
      PeakOp += " (";
      PeakOp += Layer;
      PeakOp += ")";
    }
    PeakInfo.Op.assign(PeakOp.data(), PeakOp.size());
    PeakInfo.ByCategory = LiveBytes;
    if (!Details)
      return;
    // The peak rises at most events of the forward, so this runs often: a top-10
    // selection (largest first, the older storage first on ties) over the storages that
    // can be in it. While none of the last top 10 has been freed, every other storage
    // that was live then is beaten by ten still live (a storage's bytes never change), so
    // only the last top 10 and the storages made since compete: a 7B step's ~1,800 rises
    // each sorted the whole live list (thousands) before.
    Candidates.clear();
    if (TopLost || PeakTop.size() + BornSinceTop.size() >= LiveList.size()) {
      Candidates.assign(LiveList.begin(), LiveList.end());
    } else {
      for (const TopTensor &T : PeakTop)
        Candidates.push_back(T.Id);
      for (StorageId Id : BornSinceTop)
        if (Storages[Id].Live)
          Candidates.push_back(Id);
    }
    size_t Keep = std::min<size_t>(10, Candidates.size());
    std::partial_sort(Candidates.begin(), Candidates.begin() + Keep, Candidates.end(),
                      [this](StorageId A, StorageId B) {
                        if (Storages[A].Bytes != Storages[B].Bytes)
                          return Storages[A].Bytes > Storages[B].Bytes;
                        return A < B;
                      });
    BornSinceTop.clear();
    TopLost = false;
    // Views and figures as they are now (a later rename or recategorisation must not
    // show); the summaries' strings are made once, by peakDetail().
    PeakTop.clear();
    for (size_t I = 0; I < Keep; ++I) {
      const StorageId Id = Candidates[I];
      const Storage &S = Storages[Id];
      PeakTop.push_back({Id, Described[Id], S.Category, S.Type, S.Bytes});
    }
  }

  /// The peak's phase, op, categories and, with details, its ten largest tensors.
  PeakDetail peakDetail() const {
    PeakDetail D = PeakInfo;
    D.TopTensors.clear();
    for (const TopTensor &T : PeakTop)
      D.TopTensors.push_back({T.Detail.Name.str(), catName(T.Category), T.Detail.Layer.str(),
                              T.Detail.Op.str(), T.Type,
                              {T.Detail.Shape.begin(), T.Detail.Shape.end()}, T.Bytes});
    return D;
  }

  /// The CUDA caching allocator replayed over the same events (CUDA runs only).
  std::optional<CachingAllocatorModel> Allocator;
  CategoryBytes LiveBytes, Max;
  int64_t Total = 0, Peak = 0;
  PeakDetail PeakInfo;
  std::vector<TimelinePoint> Timeline;
  llvm::SmallString<128> PeakOp;

private:
  std::vector<Storage> Storages;
  std::vector<StorageDetail> Described; ///< parallel to Storages, with details only
  std::vector<StorageId> LiveList; ///< live storages, unordered (swap-remove)
  // With details: the storages made since the peak's last rise, whether one of the ten
  // largest then (PeakTop) has been freed since, and point()'s scratch list.
  std::vector<StorageId> BornSinceTop, Candidates;
  bool TopLost = true;
  /// One of the ten largest tensors at the peak, as it was then.
  struct TopTensor {
    StorageId Id;
    StorageDetail Detail;
    Cat Category;
    DType Type;
    int64_t Bytes;
  };
  llvm::SmallVector<TopTensor, 10> PeakTop;
  /// The storages' names and shapes: a malloc and a free per string, for every storage
  /// of a detailed step, were a tenth of simulating one.
  llvm::BumpPtrAllocator DetailArena;
  llvm::StringRef save(const llvm::Twine &S) { return llvm::StringSaver(DetailArena).save(S); }
  llvm::ArrayRef<int64_t> save(llvm::ArrayRef<int64_t> Dims) {
    if (Dims.empty())
      return {};
    int64_t *Copy = DetailArena.Allocate<int64_t>(Dims.size());
    std::copy(Dims.begin(), Dims.end(), Copy);
    return {Copy, Dims.size()};
  }
};

/// Dims of a shape or its strides; inline up to 6, so a value's layout allocates nothing.
using Dims = llvm::SmallVector<int64_t, 6>;

/// A tensor's memory layout: enough of PyTorch's strides to know when an op copies.
struct Layout {
  Dims Shape, Strides;
};

/// L made the row-major layout of Shape, in place (its vectors keep their storage: a
/// layout built apart and moved in copied both, ~3% of a plan sweep's instructions).
inline void setContiguous(Layout &L, llvm::ArrayRef<int64_t> Shape) {
  L.Shape.assign(Shape.begin(), Shape.end());
  L.Strides.assign(Shape.size(), 1);
  for (size_t I = Shape.size(); I-- > 1;)
    L.Strides[I - 1] = L.Strides[I] * std::max<int64_t>(Shape[I], 1);
}

inline Layout contiguous(llvm::ArrayRef<int64_t> Shape) {
  Layout L;
  setContiguous(L, Shape);
  return L;
}

/// Tensor -> its parameter's index in Census.Parameters: a table by tensor id, since
/// backward asks it for every input of every op.
class ParameterTable {
public:
  void assign(size_t Tensors) { Index.assign(Tensors, -1); }
  void set(TensorId T, size_t I) { Index[T] = static_cast<int32_t>(I); }
  /// The parameter T is part of, if any (NoTensor is none).
  std::optional<size_t> find(TensorId T) const {
    if (T < 0 || static_cast<size_t>(T) >= Index.size() || Index[T] < 0)
      return std::nullopt;
    return static_cast<size_t>(Index[T]);
  }
  bool count(TensorId T) const { return find(T).has_value(); }

private:
  std::vector<int32_t> Index;
};

struct Value {
  StorageId Storage = NoStorage;
  Layout L;
  int PendingUses = 0;
  bool Held = false; ///< holds one reference to Storage
};

class Simulator {
public:
  Simulator(const Graph &G, const TrainingSetup &Setup, const ParameterCensus &Census,
            bool Details, std::shared_ptr<const StepStructure> Shared,
            StepStop Stop = {})
      : StopAbove(Stop.Above), StopAfterForward(Stop.AfterForward), G(G), Setup(Setup), Census(Census),
        Structure(Shared ? std::move(Shared)
                         : buildStepStructure(G, fusesAttention(G, Setup))),
        Ops(Structure->Ops),
        Ctx{G, std::vector<DType>(G.Tensors.size()), std::vector<bool>(G.Tensors.size()),
            Setup.Device == DeviceKind::Cuda, Setup.Device == DeviceKind::Cpu,
            Setup.torchVersionFor(G.SourceFormat) == TorchVersion::V2,
            /*CpuThreads=*/1, /*CpuHasAvx512Bf16=*/false, /*AutocastType=*/std::nullopt} {
    Mem.Details = Details;
    Ctx.AttentionDropout = attentionDropout(G, Setup.Dropout);
    if (isAmp())
      Ctx.AutocastType = lowPrecision();
  }

  llvm::Expected<StepSimulation> run();
  /// The caching-allocator replay (CUDA runs), as run() left it: for tests that check
  /// that skipped micro-batches leave it where replaying them all does.
  const CachingAllocatorModel *allocator() const { return Mem.Allocator ? &*Mem.Allocator : nullptr; }

private:
  /// simulateStep's StepStop, and the CUDA context the requirement adds to the
  /// allocator's reserved bytes.
  std::optional<int64_t> StopAbove;
  bool StopAfterForward;
  int64_t ContextBytes = 0;
  bool Stopped = false;
  /// Whether the replay should stop: the step already needs more than StopAbove. Checked
  /// after every op; once true it stays true (the figures are running maxima).
  bool overLimit() {
    if (!StopAbove || Stopped)
      return Stopped;
    const int64_t Need =
        Mem.Allocator ? Mem.Allocator->peakReservedBytes() + ContextBytes : Mem.Peak;
    return Stopped = Need > *StopAbove;
  }

  /// What a micro-batch finds of what the earlier ones left: the storages, the allocator,
  /// the values and gradients held, the figures so far. Storages that are no longer live
  /// are numbered by first appearance, so that a state that repeats itself compares
  /// equal although its temporaries got new ids.
  std::vector<int64_t> carriedState() const;
  void assignTypes();
  void propagateRequiresGrad();
  void allocatePersistent();
  llvm::Error forward(int MicroBatch);
  void runOp(size_t OpI, bool Save, const std::string &Phase);
  void planCheckpoints();
  void planDropout();
  void enterCheckpoint(size_t Seg, const std::string &Phase);
  void recompute(size_t Seg, const std::string &Phase);
  /// The last op of segment Seg that the recomputation reruns: with PyTorch 2's
  /// non-reentrant checkpoint, the last that saves a tensor for the backward (the
  /// recomputation starts when the backward first unpacks one and stops once all are
  /// saved again); with the reentrant one, the segment's last op.
  size_t recomputeStop(size_t Seg);
  /// Whether a dropout follows op OpI and saves its mask for the backward (what it drops
  /// requires grad): the op then saves something, whatever its own rule says (a LoRA
  /// adapter's closing cast, dropped out as the block's residual branch).
  bool dropsOutSaved(size_t OpI) const;
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
  /// Whether autocast runs op OpI on a 16-bit copy of its operand in Slot: matmul-like
  /// ops and scaled_dot_product_attention (the lower-precision lists of CUDA and of the
  /// CPU) copy their fp32 operands, a linear's or convolution's bias with its weight (q,
  /// k, v and an additive mask for attention). bitsandbytes dequantizes 4-bit weights to
  /// the compute dtype itself.
  bool autocastsOperand(size_t OpI, size_t Slot) const {
    const SimOp &Op = Ops[OpI];
    const llvm::StringRef Kind = Op.Kind;
    const bool Fused = Kind == "ScaledDotProductAttention";
    const bool Biased = Kind == "Linear" || Kind == "Gemm" || Kind == "Conv";
    if (!isAmp() || !(Biased || Kind == "MatMul" || Fused) || Slot >= (Fused ? 4u : Biased ? 3u : 2u))
      return false;
    TensorId T = Slot < Op.Inputs.size() ? Op.Inputs[Slot] : NoTensor;
    return T != NoTensor && Ctx.TypeOf[T] == DType::Float32 && !quantizedWeight(Ctx, T);
  }

  void holdValue(TensorId T, StorageId S, Layout L) {
    Value &V = Values[T];
    V.Storage = S;
    V.L = std::move(L);
    V.Held = true;
  }
  /// holdValue with the row-major layout of Shape, written in place.
  void holdContiguous(TensorId T, StorageId S, llvm::ArrayRef<int64_t> Shape) {
    Value &V = Values[T];
    V.Storage = S;
    setContiguous(V.L, Shape);
    V.Held = true;
  }
  void dropValue(TensorId T) {
    Value &V = Values[T];
    if (V.Held) {
      Mem.release(V.Storage);
      V.Held = false;
    }
  }
  /// StepStructure::TensorBits of T.
  bool transient(TensorId T) const { return Structure->TensorBits[T] & StepStructure::Transient; }
  bool graphOutput(TensorId T) const { return Structure->TensorBits[T] & StepStructure::GraphOutput; }
  bool stored(TensorId T) const { return Structure->TensorBits[T] & StepStructure::Stored; }
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
  std::shared_ptr<const StepStructure> Structure;
  const std::vector<SimOp> &Ops;
  RuleContext Ctx;
  Memory Mem;
  /// Each op's rule depends only on the op and on dtypes and requires-grad, which are
  /// settled before the forward: computed once, read by forward, recompute and backward.
  std::vector<std::optional<OpMemoryRule>> Rules;
  const OpMemoryRule &ruleFor(size_t OpI) {
    if (Rules.size() != Ops.size())
      Rules.assign(Ops.size(), std::nullopt);
    if (!Rules[OpI])
      Rules[OpI] = memoryRuleFor(Ops[OpI], Ctx);
    return *Rules[OpI];
  }
  std::vector<Value> Values;
  /// Per op: the storages its backward node holds (saved tensors), one reference each.
  /// Inline up to 4 (most ops save 1-4 tensors): a micro-batch's forward fills one list
  /// per op, and a heap list each was a malloc and a free per op per micro-batch.
  std::vector<llvm::SmallVector<StorageId, 4>> SavedBy;
  std::vector<bool> HasBackward;
  /// Per op: bytes its backward unpacks from int8-stored saved tensors.
  std::vector<int64_t> Unpacked;
  /// Trainable parameter tensor -> index in Census.Parameters; gradient storage per param.
  ParameterTable ParamIndex;
  std::vector<StorageId> ParamGrad;
  std::vector<StorageId> GradOf;
  TensorId LossLogits = NoTensor;
  /// The input embeddings' output when transformers' enable_input_require_grads() makes a
  /// frozen embedding's output a leaf that requires grad: the AccumulateGrad node of its
  /// first consumer's backward holds it until that backward (propagateRequiresGrad).
  TensorId EmbeddingLeaf = NoTensor;
  size_t EmbeddingLeafConsumer = SIZE_MAX; ///< the first op that reads EmbeddingLeaf
  /// EmbeddingLeaf's storage before a dropout of it, held until the dropout's backward.
  StorageId LeafUnderDropout = NoStorage;
  StorageId LogSoftmax = NoStorage, TotalWeight = NoStorage, LossValue = NoStorage;
  StorageId LossTarget = NoStorage; ///< shifted labels nll_loss keeps (Graph::LossShiftsLabels)
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
  /// Per segment: its RNG state copy. PyTorch 2's non-reentrant checkpoint keeps it in the
  /// layer's frame, freed with the layer's last saved tensor (leaveCheckpoint); the
  /// reentrant one's CheckpointFunction keeps it until the graph goes (RngStates).
  std::vector<StorageId> SegmentRng;
  /// The key/value cache the forward fills (Graph::TrainingKvCache): copies that live
  /// until the caller drops the model's outputs, which hold the cache.
  std::vector<StorageId> KvCacheHeld;
  /// Autocast's cast cache: the 16-bit copy of each fp32 weight that requires grad, made at
  /// its first autocast op and reused until the autocast context exits (the forward's end,
  /// or a checkpointed segment's recomputation). By the weight's storage.
  llvm::SmallDenseMap<StorageId, StorageId, 16> AutocastCache;
  void clearAutocastCache() {
    for (auto [Weight, Copy] : AutocastCache)
      Mem.release(Copy);
    AutocastCache.clear();
  }
  void fillKvCache(size_t OpI, size_t From, size_t To, const std::string &Phase);
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

/// Per op: the tensors whose module returns after it (StepStructure::ModuleInputHolds).
std::vector<std::vector<TensorId>> moduleInputHolds(const Graph &G,
                                                    const std::vector<SimOp> &Ops);

} // namespace sim
} // namespace trainmem

#endif
