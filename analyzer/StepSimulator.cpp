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
#include "analyzer/StepSimulatorState.h"
#include "analyzer/Units.h"

#include "llvm/ADT/DenseMap.h"

#if defined(__GLIBC__)
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace trainmem {
namespace sim {

void Simulator::assignTypes() {
  bool Upcasts = false;
  for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T) {
    const Tensor &Tn = G.Tensors[T];
    Upcasts |= Tn.UpcastToFp32;
    Ctx.TypeOf[T] = Tn.UpcastToFp32 && isFloating(Tn.Type) ? DType::Float32
                                                           : recipeType(Tn.Type);
  }
  // PEFT's LoRA adapters stay fp32 on a bf16 model (the census stores them so); the
  // adapter path casts its input to their dtype and its sum back (CastLike).
  if (Setup.Prec == Precision::Bf16)
    for (TensorId T : G.AdapterParameters)
      if (isFloating(G.Tensors[T].Type)) {
        Ctx.TypeOf[T] = DType::Float32;
        Upcasts = true;
      }
  if (!isAmp()) {
    if (!Upcasts)
      return;
    // The model's explicit fp32 upcasts (RMSNorm's): what is computed from them stays
    // fp32 by type promotion (an fp32 tensor with a 16-bit one gives fp32) until a
    // CastLike takes it back to the model's dtype.
    for (const SimOp &Op : Ops) {
      std::optional<DType> Out;
      if (Op.Inputs.size() > 1 && Op.Inputs[1] != NoTensor &&
          llvm::StringRef(Op.Kind) == "CastLike")
        Out = Ctx.TypeOf[Op.Inputs[1]];
      else
        for (TensorId I : Op.Inputs)
          if (I != NoTensor && !G.Tensors[I].Stored && Ctx.TypeOf[I] == DType::Float32)
            Out = DType::Float32;
      if (!Out)
        continue;
      for (TensorId O : Op.Outputs)
        if (O != NoTensor && isFloating(G.Tensors[O].Type) && !G.Tensors[O].UpcastToFp32)
          Ctx.TypeOf[O] = *Out;
    }
    return;
  }
  // Autocast (CUDA lists by default): matmul-like ops and fused attention compute in 16
  // bits; softmax,
  // log_softmax and layer_norm run in fp32 on CUDA and in their input's dtype on CPU;
  // elementwise ops promote to the widest input; everything else keeps its input type.
  DType Low = lowPrecision();
  for (const SimOp &Op : Ops) {
    DType In0 = Op.Inputs.empty() || Op.Inputs[0] == NoTensor ? DType::Float32
                                                              : Ctx.TypeOf[Op.Inputs[0]];
    DType Out = In0;
    const llvm::StringRef K = Op.Kind;
    if (K == "CastLike" && Op.Inputs.size() > 1 && Op.Inputs[1] != NoTensor)
      Out = Ctx.TypeOf[Op.Inputs[1]];
    else if (K == "Linear" || K == "MatMul" || K == "Conv" || K == "Gemm" ||
             K == "ConvTranspose" || K == "ScaledDotProductAttention")
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
      if (!AnyLow) {
        Out = In0;
        // Where's first operand is its condition: the result has its values' type (an
        // additive mask built from fp32 constants is fp32 under autocast).
        if (K == "Where")
          for (size_t I = 1; I < Op.Inputs.size(); ++I)
            if (Op.Inputs[I] != NoTensor && isFloating(Ctx.TypeOf[Op.Inputs[I]])) {
              Out = Ctx.TypeOf[Op.Inputs[I]];
              break;
            }
      }
      for (TensorId I : Op.Inputs)
        if (I != NoTensor && G.Tensors[I].Stored && isFloating(G.Tensors[I].Type) &&
            G.Tensors[I].numElements() > 1)
          Out = DType::Float32; // a float32 parameter or buffer promotes the result
    }
    for (TensorId O : Op.Outputs)
      if (O != NoTensor && isFloating(G.Tensors[O].Type) && !G.Tensors[O].UpcastToFp32)
        Ctx.TypeOf[O] = Out;
  }
}

void Simulator::propagateRequiresGrad() {
  ParamIndex.assign(G.Tensors.size());
  for (size_t I = 0; I < Census.Parameters.size(); ++I) {
    const CensusParameter &P = Census.Parameters[I];
    for (TensorId T : P.Tensors) {
      ParamIndex.set(T, I);
      Ctx.RequiresGrad[T] = P.Trainable;
      // A Transpose of a weight is no op of its own (the Linear reading it absorbs it;
      // a tied LM head reads the embedding so): its output is the parameter, seen
      // transposed, and its gradient is the parameter's.
      for (NodeId C : G.Tensors[T].Consumers) {
        const Node &N = G.Nodes[C];
        if (N.OpType == "Transpose" && !N.Outputs.empty() && N.Outputs[0] != NoTensor) {
          ParamIndex.set(N.Outputs[0], I);
          Ctx.RequiresGrad[N.Outputs[0]] = P.Trainable;
        }
      }
    }
  }
  if (Setup.ZerothOrder) // forward passes under torch.no_grad(): nothing requires grad
    std::fill(Ctx.RequiresGrad.begin(), Ctx.RequiresGrad.end(), false);
  // transformers 5's gradient_checkpointing_enable() calls enable_input_require_grads() on
  // a model that takes input_ids: a hook makes the input embeddings' output require grad
  // whether the embedding trains or not, so a frozen first layer (LoRA, a sparse update)
  // keeps what its backward to that output needs. Measured: Qwen3-MoE with LoRA on q and v,
  // checkpointed, peaked in its first layer's recomputation holding k before and after
  // k_norm (0.77% above the prediction without this).
  TensorId InputEmbeddings = NoTensor;
  if (G.SourceFormat == "hf-config" && Setup.Checkpoint != "none" && !Setup.ZerothOrder) {
    const TensorId Ids = G.findTensor("input_ids");
    for (size_t GI = 0; GI < Ops.size(); ++GI)
      if (const SimOp &Op = Ops[GI];
          Op.Kind == "Gather" && Op.Inputs.size() == 2 && Op.Inputs[1] == Ids &&
          Ids != NoTensor && ParamIndex.count(Op.Inputs[0]) && !Op.Outputs.empty()) {
        // The hook sees the embedding module's output: past the ops the module runs after
        // its lookup (Gemma scales by sqrt(hidden) inside it).
        InputEmbeddings = Op.Outputs[0];
        for (size_t I = GI + 1; I < Ops.size(); ++I)
          if (Ops[I].Layer == Op.Layer && !Ops[I].Outputs.empty() &&
              llvm::is_contained(Ops[I].Inputs, InputEmbeddings))
            InputEmbeddings = Ops[I].Outputs[0];
        // A frozen embedding's output is a leaf then, which autograd's AccumulateGrad keeps
        // until the backward reaches it. Measured: GPT-2 with its first block frozen and
        // checkpointing (the leaf is added to the position embeddings, so nothing else
        // keeps it) saved 262,144 B more than predicted without this.
        if (!Census.Parameters[*ParamIndex.find(Op.Inputs[0])].Trainable)
          EmbeddingLeaf = InputEmbeddings;
        break;
      }
    for (size_t I = 0; EmbeddingLeaf != NoTensor && I < Ops.size(); ++I)
      if (llvm::is_contained(Ops[I].Inputs, EmbeddingLeaf)) {
        EmbeddingLeafConsumer = I;
        break;
      }
  }
  for (const SimOp &Op : Ops) {
    bool Any = false;
    for (TensorId O : Op.Outputs)
      Any |= O != NoTensor && O == InputEmbeddings;
    for (size_t K = 0; K < Op.Inputs.size(); ++K)
      Any |= carriesGradient(Op, K) && Op.Inputs[K] != NoTensor && Ctx.RequiresGrad[Op.Inputs[K]];
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
      holdContiguous(T, S, G.Tensors[T].Shape);
    for (size_t K = 1; K < P.Tensors.size(); ++K)
      Mem.retain(S);
  }
  for (const CensusBuffer &B : Census.Buffers) {
    StorageId S = Mem.alloc(B.bytes(), Cat::Weights, B.Name, "buffer", B.LayerPath, B.Type, {});
    if (B.Tensor != NoTensor)
      holdContiguous(B.Tensor, S, G.Tensors[B.Tensor].Shape);
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
    std::vector<OptimizerStatePart> Parts = optimizerStateOf(P, Setup);
    if (ShardStates) {
      // DeepSpeed keeps a rank's partition of the states flat, one tensor for many
      // parameters: one storage per parameter here.
      int64_t StateBytes = 0;
      for (const OptimizerStatePart &Part : Parts)
        StateBytes += Part.Bytes;
      if (StateBytes && !StatesOnCpu)
        Mem.alloc(Shard(StateBytes), Cat::OptimizerStates,
                  llvm::Twine(P.Name) + " (optimizer state)", "optimizer", P.LayerPath, P.Type,
                  P.Shape);
    } else if (!StatesOnCpu) {
      // Each part is a tensor of its own (zeros_like for each moment), so the caching
      // allocator rounds and places each one: one storage of both Adam moments and the
      // step counter took a 34 MiB segment for a 16 MiB weight's 2 x 16 MiB + 4 B.
      // Described as what it is where its size says so: a moment of the parameter's shape
      // (in the states' dtype, or one byte a value for 8-bit codes); anything else (a step
      // counter, block scales, factored rows) without a shape.
      const DType StateType = Setup.keepsMasterWeights() ? DType::Float32 : P.Type;
      for (const OptimizerStatePart &Part : Parts) {
        if (!Part.Bytes)
          continue;
        const bool Full = Part.Bytes == dtypeBytes(StateType, P.NumElements);
        const bool Codes = !Full && Part.Bytes == P.NumElements;
        Mem.alloc(Part.Bytes, Cat::OptimizerStates, llvm::Twine(P.Name) + " (" + Part.Name + ")",
                  "optimizer", P.LayerPath,
                  Full ? StateType : Codes ? DType::UInt8 : DType::Float32,
                  Full || Codes ? llvm::ArrayRef<int64_t>(P.Shape) : llvm::ArrayRef<int64_t>());
      }
    }
    if (Setup.keepsMasterWeights() && !StatesOnCpu) {
      int64_t Master = dtypeBytes(DType::Float32, P.NumElements);
      Mem.alloc(ShardStates ? Shard(Master) : Master, Cat::MasterWeights,
                llvm::Twine(P.Name) + " (fp32 master)", "optimizer", P.LayerPath, DType::Float32, P.Shape);
    }
    if (Setup.KeepGrads)
      ParamGrad[&P - Census.Parameters.data()] =
          Mem.alloc(Sh.ZeroStage >= 2 ? Shard(P.bytes()) : P.bytes(), Cat::Gradients,
                    llvm::Twine(P.Name) + ".grad", "zero_grad", P.LayerPath, P.Type, P.Shape);
  }
  if (Census.SharedOptimizerStateBytes && !StatesOnCpu)
    Mem.alloc(Census.SharedOptimizerStateBytes, Cat::OptimizerStates,
              "quantization maps (qmap1, qmap2)", "optimizer", "", DType::Float32, {2, 256});
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

std::vector<int64_t> Simulator::carriedState() const {
  std::vector<int64_t> S;
  S.reserve(Values.size() * 6 + ParamGrad.size() + GradOf.size() + 1024);
  Mem.appendState(S);
  llvm::DenseMap<StorageId, int64_t> Dead;
  auto Id = [&](StorageId X) -> int64_t {
    if (X == NoStorage || Mem.live(X))
      return X;
    return Dead.try_emplace(X, -2 - static_cast<int64_t>(Dead.size())).first->second;
  };
  auto Ids = [&](const auto &List) {
    S.push_back(static_cast<int64_t>(List.size()));
    for (StorageId X : List)
      S.push_back(Id(X));
  };
  for (const Value &V : Values) {
    S.push_back(Id(V.Storage));
    S.push_back(V.PendingUses * 2 + (V.Held ? 1 : 0));
    S.push_back(static_cast<int64_t>(V.L.Shape.size()));
    S.insert(S.end(), V.L.Shape.begin(), V.L.Shape.end());
    S.insert(S.end(), V.L.Strides.begin(), V.L.Strides.end());
  }
  Ids(ParamGrad);
  Ids(GradOf);
  for (const llvm::SmallVector<StorageId, 4> &Saved : SavedBy)
    Ids(Saved);
  for (const std::vector<StorageId> &Saved : SegmentSaved)
    Ids(Saved);
  Ids(RngStates);
  Ids(SegmentRng);
  Ids(SelectiveKeep);
  S.push_back(static_cast<int64_t>(DropoutMasks.size()));
  for (const auto &[T, Mask] : DropoutMasks) {
    S.push_back(T);
    S.push_back(Id(Mask));
  }
  S.insert(S.end(), Unpacked.begin(), Unpacked.end());
  S.insert(S.end(), HasBackward.begin(), HasBackward.end());
  S.push_back(static_cast<int64_t>(SavedByLayer.size()));
  for (const auto &[Layer, Bytes] : SavedByLayer)
    S.push_back(Bytes);
  for (int64_t V : {Id(Gathered), static_cast<int64_t>(std::hash<std::string>()(HeldUnit)),
                    SavedAtEnd, static_cast<int64_t>(Diags.size()),
                    static_cast<int64_t>(ActiveSelective)})
    S.push_back(V);
  return S;
}

llvm::Expected<StepSimulation> Simulator::run() {
  int64_t Replayed = 0;
  bool AfterForward = false; // stopped there (StepStop::AfterForward)
  // Roughly: each op's outputs, saved extras and gradients, plus parameters and states.
  Mem.reserve(Ops.size() * 4 + G.Tensors.size());
  // About three points per op (a 7B step: 5,623 for 1,814 ops); doubling as they came
  // moved every point's three strings a dozen times.
  if (Mem.Details)
    Mem.Timeline.reserve(Ops.size() * 4);
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
  if (Setup.CudaContextBytes) {
    Runtime.ContextBytes = *Setup.CudaContextBytes;
    Runtime.Note = "CUDA context " + formatBytes(Runtime.ContextBytes) +
                   " as given (--cuda-context), in place of the estimate from published "
                   "figures (~400 MiB). " + Runtime.WorkspaceNote;
  }
  ContextBytes = Runtime.ContextBytes;
  if (Setup.Device == DeviceKind::Cuda) {
    Mem.Allocator.emplace();
    // cuBLAS workspaces come from the caching allocator too: one for the forward's
    // handle and one for the autograd thread's, alive for the whole process.
    Mem.Allocator->allocate(Runtime.CublasWorkspaceBytes);
    Mem.Allocator->allocate(Runtime.CublasWorkspaceBytes);
  }
  allocatePersistent();
  Mem.point("start", "step start", "");
  if (overLimit()) {
    // The weights and states alone exceed it (full fine-tuning of a model this GPU
    // cannot hold): nothing to replay.
  } else if (Setup.ZerothOrder) {
    // MeZO: two forward passes under no_grad at theta +- eps*z; z is regenerated from a
    // seed per parameter (torch.normal of the parameter's shape), so the largest
    // parameter is the only transient of the in-place perturb-and-update.
    for (int Pass = 0; Pass < 2; ++Pass) {
      if (auto E = forward(Pass))
        return E;
      loss();
      for (StorageId S : {LogSoftmax, TotalWeight, LossValue, LossTarget})
        if (S != NoStorage)
          Mem.release(S);
      for (size_t OpI = 0; OpI < Ops.size(); ++OpI) {
        for (StorageId S : SavedBy[OpI])
          Mem.release(S);
        SavedBy[OpI].clear();
      }
      for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T)
        if (transient(T))
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
    std::vector<int64_t> Left; // what the previous micro-batch left
    for (CurrentMicroBatch = 0; CurrentMicroBatch < Setup.GradAccum; ++CurrentMicroBatch) {
      if (auto E = forward(CurrentMicroBatch))
        return E;
      if (!Stopped)
        loss();
      if (!Stopped && StopAfterForward && Setup.GradAccum == 1) {
        AfterForward = true; // SavedAtEnd is known: what the search asked for
        ++Replayed;
        break;
      }
      if (!Stopped)
        backward();
      ++Replayed;
      if (Stopped) // above the limit: run() goes no further
        break;
      // Gradient accumulation repeats one micro-batch: once a micro-batch has left the
      // state it found, each later one runs exactly as it did (same events, same
      // allocator decisions, figures that do not rise), so the figures are final and the
      // rest are skipped. Not with details: each micro-batch is on the timeline.
      // The state is taken only where a later micro-batch can be compared with it: not
      // after the last, and after the first only if two more follow (with two in all,
      // the second is the last and is simulated anyway).
      if (Mem.Details || CurrentMicroBatch + 1 >= Setup.GradAccum ||
          (Left.empty() && CurrentMicroBatch + 2 >= Setup.GradAccum))
        continue;
      std::vector<int64_t> Now = carriedState();
      if (Now == Left) {
        CurrentMicroBatch = static_cast<int>(Setup.GradAccum);
        break;
      }
      Left = std::move(Now);
    }
    if (!overLimit() && !AfterForward) {
      optimizerStep();
      zeroGrad();
    }
  }

  StepSimulation Sim;
  if (overLimit())
    Sim.StoppedAbove = StopAbove;
  Sim.StoppedAfterForward = AfterForward;
  Sim.MicroBatchesSimulated = Replayed;
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
  Sim.PeakInfo = Mem.peakDetail();
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


} // namespace sim

using sim::Simulator;

bool fusesAttention(const Graph &G, const TrainingSetup &Setup) {
  return Setup.Attention == AttentionImpl::Sdpa ||
         (Setup.Attention == AttentionImpl::Auto && G.DeclaredFusedAttention);
}

std::shared_ptr<const StepStructure> buildStepStructure(const Graph &G, bool FuseAttention) {
  auto S = std::make_shared<StepStructure>();
  S->FuseAttention = FuseAttention;
  S->Ops = buildSimOps(G, FuseAttention);
  S->NodeInOp.assign(G.Nodes.size(), false);
  S->Pointwise.reserve(S->Ops.size());
  for (const SimOp &Op : S->Ops)
    S->Pointwise.push_back(sim::isPointwise(Op.Kind));
  S->DistinctInputs.reserve(S->Ops.size());
  for (const SimOp &Op : S->Ops) {
    auto Distinct = sim::distinctInputs(operandsRead(Op));
    S->DistinctInputs.emplace_back(Distinct.begin(), Distinct.end());
  }
  for (const SimOp &Op : S->Ops)
    for (NodeId N : Op.Nodes)
      S->NodeInOp[N] = true;
  S->ModuleInputHolds = sim::moduleInputHolds(G, S->Ops);
  S->OffLossPath = opsOffLossPath(G, S->Ops);
  S->Spans = repeatedBlockSpans(G, S->Ops);
  // Graph::BlockArguments: the model's forward holds them (a local it passes to every
  // block) until its last block returns; checkpointed blocks keep them longer.
  if (!S->Spans.empty())
    for (TensorId Arg : G.BlockArguments)
      S->ModuleInputHolds[S->Spans.back().Last].push_back(Arg);
  // Graph::LocalHolds: a function's locals, held until the op that makes what it returns.
  if (!G.LocalHolds.empty()) {
    std::vector<int64_t> OpMaking(G.Tensors.size(), -1);
    for (size_t I = 0; I < S->Ops.size(); ++I)
      for (TensorId O : S->Ops[I].Outputs)
        if (O != NoTensor)
          OpMaking[O] = static_cast<int64_t>(I);
    for (auto [Held, Until] : G.LocalHolds)
      if (Held != NoTensor && Until != NoTensor && OpMaking[Until] >= 0)
        S->ModuleInputHolds[static_cast<size_t>(OpMaking[Until])].push_back(Held);
  }
  S->TensorBits.reserve(G.Tensors.size());
  for (const Tensor &T : G.Tensors)
    S->TensorBits.push_back(
        static_cast<uint8_t>((!T.Stored && T.Kind != TensorKind::Input ? StepStructure::Transient : 0) |
                             (T.IsGraphOutput ? StepStructure::GraphOutput : 0) |
                             (T.Stored ? StepStructure::Stored : 0)));
  {
    std::vector<bool> Seen(G.Tensors.size(), false);
    for (size_t I = 0; I < S->Ops.size(); ++I)
      for (TensorId T : S->DistinctInputs[I])
        if (T != NoTensor && G.Tensors[T].KvCache && !Seen[T]) {
          Seen[T] = true;
          S->KvCacheUses.emplace_back(I, T);
        }
  }
  return S;
}

llvm::Expected<StepSimulation> simulateStep(const Graph &G, const TrainingSetup &Setup,
                                            const ParameterCensus &Census, bool Details,
                                            std::shared_ptr<const StepStructure> Structure,
                                            StepStop Stop) {
  if (Structure && (Structure->FuseAttention != fusesAttention(G, Setup) ||
                    Structure->TensorBits.size() != G.Tensors.size()))
    Structure = nullptr; // built for another attention implementation, or another graph
  return Simulator(G, Setup, Census, Details, std::move(Structure), Stop).run();
}

MemoryReport buildStepReport(const Graph &G, const TrainingSetup &Setup,
                             const ParameterCensus &Census, StepSimulation Sim) {
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
  R.PeakInfo = std::move(Sim.PeakInfo);
  R.Timeline = std::move(Sim.Timeline);
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

int64_t peakBetweenGaloreRefreshes(const std::vector<TimelinePoint> &Timeline) {
  int64_t Peak = 0;
  for (const TimelinePoint &P : Timeline)
    if (P.Op != GaloreRefreshPoint)
      Peak = std::max(Peak, P.Live.total());
  return Peak;
}

size_t keepFreedMemoryForReuse(size_t HugePageReserve) {
  size_t Marked = 0;
#if defined(__GLIBC__)
  // A simulation's large buffers (the values' layouts, the storages, the allocator's
  // pools: hundreds of KiB each) come from the heap rather than their own mappings, and
  // the heap keeps up to 64 MiB free at its top between simulations: glibc's dynamic
  // thresholds left 3% of a plan sweep in page faults. Buffers of 16 MiB and more (a
  // large trace's records) still get mappings of their own, returned when freed.
  // Measured with the same settings as GLIBC_TUNABLES (glibc defaults -> these): 7B
  // `plan` 0.257 -> 0.232 s (419 -> 380 ms CPU); a 117 MB trace 0.186 -> 0.177 s; a
  // 1.17 GB trace 1.76 -> 1.81 s, 360 -> 355 MB peak RSS (256 MiB / 1 GiB: 1.69 s but
  // 412 MB). Either setting alone is slower: a trim threshold set alone fixes the mmap
  // threshold at its 128 KiB default.
  constexpr size_t MmapThreshold = 16 << 20, TrimThreshold = 64 << 20;
  mallopt(M_MMAP_THRESHOLD, MmapThreshold);
  mallopt(M_TRIM_THRESHOLD, TrimThreshold);
  // A 7B ONNX analysis took 2,090 page faults, 1,700 of them the heap's, each a trap
  // into the kernel: 17.7 -> 14.7 ms per run with the heap in huge pages (70B 37.7 ->
  // 28.5 ms, a trace 24.0 -> 20.5 ms; 1-2 MB more peak RSS), the same as running under
  // GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which a program cannot set for itself. The
  // reserve stays below the trim threshold, so freeing never hands it back; a run that
  // needs more grows the heap in small pages as before.
  if (HugePageReserve > 0 && HugePageReserve <= TrimThreshold - (8 << 20)) {
    // Above the mmap threshold for this one block, so that it comes from the heap; through
    // a volatile pointer, as compilers drop a malloc that is freed unused. The block's own
    // range is what is marked, not the heap's growth: in a process whose heap already has
    // free memory at its top (a test binary after other tests), the block takes that first
    // and the heap grows by less.
    mallopt(M_MMAP_THRESHOLD, TrimThreshold);
    void *volatile Block = malloc(HugePageReserve);
    uintptr_t Start = reinterpret_cast<uintptr_t>(static_cast<void *>(Block));
    uintptr_t End = Start + HugePageReserve;
    constexpr uintptr_t HugePage = 2 << 20;
    uintptr_t From = (Start + HugePage - 1) & ~(HugePage - 1), To = End & ~(HugePage - 1);
    // Marked while still allocated, and only where the block lies below the heap's end: a
    // block the allocator had to map on its own goes back to the kernel when freed.
    if (Start != 0 && To > From && End <= reinterpret_cast<uintptr_t>(sbrk(0)) &&
        madvise(reinterpret_cast<void *>(From), To - From, MADV_HUGEPAGE) == 0)
      Marked = To - From;
    free(Block);
    mallopt(M_MMAP_THRESHOLD, MmapThreshold);
  }
#else
  (void)HugePageReserve;
#endif
  return Marked;
}

} // namespace trainmem
