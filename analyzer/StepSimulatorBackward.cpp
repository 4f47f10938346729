//===- StepSimulatorBackward.cpp - backward, optimizer step, zero_grad ----------===//
//
// The backward half of the replay: gradients per op in reverse order, saved tensors
// released as each node runs, gradient accumulation and reduction under sharding,
// GaLore's projected updates, the optimizer step's scratch and zero_grad.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StepSimulatorState.h"

namespace trainmem {
namespace sim {
namespace {

/// The bytes of one GaLore step's tensors for a parameter (galore-torch 1.0's AdamW, a copy
/// of transformers' AdamW): the update's tensor (denom, and norm_grad) in the gradient's
/// dtype, full-size for the other parameters and r x max(m, n) for a target's projected
/// gradient; the weight's own size; the SVD's transients at a projector refresh.
struct GaloreSizes {
  bool Target = false;
  int64_t Full = 0;    ///< the parameter's size: the update projected back
  int64_t Update = 0;  ///< grad (projected), denom and norm_grad, each this size
  int64_t Svd = 0;     ///< torch.linalg.svd(grad, full_matrices=False), every update gap
};

/// galore-torch's GaLoreAdamW8bit: bitsandbytes updates the states and the weight in place,
/// so the other parameters step without temporaries; a target clones its weight
/// (p.saved_data), steps a projected copy in place and adds project_back's result (the
/// product and its scaled copy) to the clone. Read from galore-torch 1.0's source, not
/// measured here.
bool galoreEightBit(const TrainingSetup &Setup) {
  return Setup.Optimizer == OptimizerKind::AdamW8bit ||
         Setup.Optimizer == OptimizerKind::PagedAdamW8bit;
}

GaloreSizes galoreSizes(const CensusParameter &P, const TrainingSetup &Setup) {
  DType T = Setup.keepsMasterWeights() ? DType::Float32 : P.Type;
  GaloreSizes S;
  S.Full = dtypeBytes(T, P.NumElements);
  S.Update = galoreEightBit(Setup) ? 0 : S.Full;
  if (!isGaloreTarget(P, Setup))
    return S;
  int64_t M = P.Shape[0], N = P.Shape[1], K = std::min(M, N), Large = std::max(M, N);
  int64_t R = std::min(Setup.Galore->Rank, K);
  S.Target = true;
  S.Update = dtypeBytes(T, R * Large);
  // The input copied (the solver overwrites it), U m x k, S and Vh k x n, in fp32; a
  // 16-bit gradient is first made fp32 (`module_params.data.float()`), a second copy.
  // Measured on an H200 (TinyLlama, 2 layers, r 8, a refresh step): the refresh still
  // needs about 34 MiB more than this in fp32 (cuSOLVER's workspace and its V, not
  // modelled), 36 MiB more in bf16.
  S.Svd = 4 * (M * N + M * K + K + K * N) + (T == DType::Float32 ? 0 : 4 * M * N);
  return S;
}

/// The largest GaLore step of one parameter in its own step() call (per-layer GaLore: an
/// optimizer per weight). A target projects its gradient (grad), computes denom and
/// norm_grad at that size, then project_back makes the full-size product and its scaled
/// copy (`full_rank_grad * self.scale`) while the three are alive; another parameter
/// holds a full-size denom and norm_grad.
std::pair<int64_t, int64_t> galoreTransients(const CensusParameter &P,
                                             const TrainingSetup &Setup) {
  GaloreSizes S = galoreSizes(P, Setup);
  if (galoreEightBit(Setup))
    return {S.Target ? 2 * S.Update + 2 * S.Full : 0, S.Svd};
  if (!S.Target)
    return {2 * S.Full, 0};
  return {3 * S.Update + 2 * S.Full, S.Svd};
}

/// The largest live GaLore step tensors over one optimizer.step(), parameter by parameter
/// as galore-torch's loop runs: Hugging Face's Trainer (and galore-torch's own training
/// script) put the other parameters in the first group and the targets in the second,
/// each in model order. The loop's locals keep their tensors until the next parameter
/// rebinds them: `denom` and `norm_grad` (the full-size update, for a target too) of one
/// parameter are alive while the next one's projection and denom are made, and the
/// previous norm_grad until the new one replaces it. Measured on an H200 with
/// galore-torch 1.0 (TinyLlama, r 8): the largest moment is the first target's denom,
/// made while lm_head's denom and norm_grad are still held.
struct GaloreStepPeaks {
  int64_t Update = 0, Svd = 0;
  std::string UpdateAt, SvdAt;
};

GaloreStepPeaks galoreStepPeaks(const ParameterCensus &Census, const TrainingSetup &Setup) {
  GaloreStepPeaks Peaks;
  if (galoreEightBit(Setup)) {
    // No locals outlive a parameter's update but the small projected gradient.
    for (const CensusParameter &P : Census.Parameters)
      if (P.Trainable) {
        auto [Update, Svd] = galoreTransients(P, Setup);
        if (Update > Peaks.Update) {
          Peaks.Update = Update;
          Peaks.UpdateAt = P.Name;
        }
        if (Svd > Peaks.Svd) {
          Peaks.Svd = Svd;
          Peaks.SvdAt = P.Name;
        }
      }
    return Peaks;
  }
  int64_t Denom = 0, NormGrad = 0; // held from the previous parameter
  auto Moment = [](int64_t Live, const CensusParameter &P, int64_t &Peak, std::string &At) {
    if (Live > Peak) {
      Peak = Live;
      At = P.Name;
    }
  };
  for (bool Targets : {false, true})
    for (const CensusParameter &P : Census.Parameters) {
      if (!P.Trainable || isGaloreTarget(P, Setup) != Targets)
        continue;
      GaloreSizes S = galoreSizes(P, Setup);
      int64_t Grad = S.Target ? S.Update : 0; // grad = p.grad frees the last projection
      if (S.Target)
        Moment(Denom + NormGrad + S.Svd, P, Peaks.Svd, Peaks.SvdAt);
      Moment(Denom + NormGrad + Grad + S.Update, P, Peaks.Update, Peaks.UpdateAt); // denom
      Moment(NormGrad + Grad + 2 * S.Update, P, Peaks.Update, Peaks.UpdateAt);     // norm_grad
      if (S.Target)
        Moment(3 * S.Update + 2 * S.Full, P, Peaks.Update, Peaks.UpdateAt); // project_back
      Denom = S.Update;
      NormGrad = S.Full;
    }
  return Peaks;
}

} // namespace

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
    if (LossTarget != NoStorage) // nll_loss's saved target goes with its node
      Mem.release(LossTarget);
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
      for (TensorId In : Structure->DistinctInputs[OpI]) {
        auto P = ParamIndex.find(In);
        if (!P || !Census.Parameters[*P].Trainable)
          continue;
        bool Flows = false;
        for (size_t K = 0; K < Ops[OpI].Inputs.size(); ++K)
          Flows |= Ops[OpI].Inputs[K] == In && carriesGradient(Ops[OpI], K);
        if (Flows)
          ++UsesLeft[*P];
      }
  // InputBuffer::accumulate sums a second gradient into a fresh tensor and frees both.
  auto Accumulate = [&](StorageId Old, StorageId Incoming, const SimOp &Op) {
    StorageId Sum = Mem.alloc(Mem[Old].Bytes, Mem[Old].Category, Mem.name(Old), "AddBackward",
                              Op.Layer, Mem[Old].Type, Mem.shape(Old));
    Mem.point(Phase, llvm::Twine(Op.Name) + " (gradient sum)", Op.Layer);
    Mem.release(Old);
    Mem.release(Incoming);
    return Sum;
  };
  auto Deliver = [&](TensorId In, StorageId Grad, const SimOp &Op) {
    if (auto P = ParamIndex.find(In)) {
      size_t I = *P;
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
                                llvm::Twine(Census.Parameters[I].Name) + " GaLore update", "optimizer",
                                Op.Layer, DType::Float32, {});
        Mem.recategorize(Buffered, Cat::Gradients);
        Mem.point(Phase, llvm::Twine(Op.Name) + " (GaLore layer-wise step)", Op.Layer);
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
                                   llvm::Twine(Pm.Name) + ".grad (shard)", Op.Kind, Op.Layer, Pm.Type,
                                   Pm.Shape);
        Mem.point(Phase, llvm::Twine(Op.Name) + " (reduce-scatter)", Op.Layer);
        Mem.release(Buffered);
        return;
      }
      if (ParamGrad[I] == NoStorage) {
        // AccumulateGrad steals a gradient it alone holds; a shared one is cloned.
        if (Mem[Buffered].Refs == 1) {
          Mem.recategorize(Buffered, Cat::Gradients);
          Mem.rename(Buffered, llvm::Twine(Census.Parameters[I].Name) + ".grad");
          ParamGrad[I] = Buffered;
        } else {
          const CensusParameter &Pm = Census.Parameters[I];
          ParamGrad[I] = Mem.alloc(Pm.bytes(), Cat::Gradients, llvm::Twine(Pm.Name) + ".grad", Op.Kind,
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

  // Per op: the checkpointed segment that ends, starts or is recomputed there (-1: none).
  // PyTorch 2's non-reentrant checkpoint recomputes when the backward first unpacks a
  // saved tensor of the segment, at its last op that saves one (recomputeStop): the
  // trailing ops' backward (a residual add, a sum, a cast, a reshape whose gradient is
  // materialised) runs before, its gradients live through the recomputation. Measured:
  // Mixtral's block ends in a gather, a reshape, a sum and a cast after its last saving op,
  // and its checkpointed bf16 step peaked in the recomputation, 0.65 MB above the point
  // predicted when the recomputation ran at the segment's end.
  std::vector<int> SegmentEndingAt(Ops.size(), -1), SegmentStartingAt(Ops.size(), -1),
      RecomputeAt(Ops.size(), -1);
  for (size_t I = 0; I < Segments.size(); ++I) {
    SegmentEndingAt[Segments[I].Last] = static_cast<int>(I);
    SegmentStartingAt[Segments[I].First] = static_cast<int>(I);
    const size_t Stop = recomputeStop(I);
    RecomputeAt[Stop] = static_cast<int>(I);
    // The ops after the stop keep their autograd nodes from the forward (which ran with
    // grad enabled, its saved tensors dropped): they save nothing, so their backward needs
    // no recomputation.
    for (size_t Op = Stop + 1; Op <= Segments[I].Last; ++Op)
      for (TensorId In : Ops[Op].Inputs)
        if (In != NoTensor && Ctx.RequiresGrad[In])
          HasBackward[Op] = true;
  }
  for (size_t OpI = Ops.size(); OpI-- > 0;) {
    if (overLimit())
      return; // run() sees it and goes no further
    const SimOp &Op = Ops[OpI];
    if (HasBackward[OpI] || SegmentEndingAt[OpI] >= 0)
      gatherFor(OpI, Phase);
    if (const int Seg = RecomputeAt[OpI]; Seg >= 0) {
      bool Needed = false;
      for (size_t I = Segments[Seg].First; I <= OpI; ++I)
        for (TensorId O : Ops[I].Outputs)
          Needed |= O != NoTensor && GradOf[O] != NoStorage;
      if (Needed) {
        recompute(Seg, Phase + " (recompute)");
        // The reentrant CheckpointFunction.backward (torch 1.13) receives the outputs'
        // gradients as arguments and holds them until it returns, after the whole
        // segment's backward; PyTorch 2's non-reentrant checkpoint has no such node, its
        // gradients flow through the forward's own nodes and are freed as they are used
        // (measured: eager attention under autocast peaked one residual gradient high).
        if (!Ctx.Torch2)
          for (size_t I = Segments[Seg].First; I <= OpI; ++I)
            for (TensorId O : Ops[I].Outputs)
              if (O != NoTensor && GradOf[O] != NoStorage) {
                Mem.retain(GradOf[O]);
                SegmentSaved[Seg].push_back(GradOf[O]);
              }
      }
    }
    if (auto D = DropoutMasks.find(Op.Outputs.empty() ? NoTensor : Op.Outputs[0]);
        D != DropoutMasks.end()) {
      TensorId T = D->first;
      if (GradOf[T] != NoStorage) {
        StorageId Through = Mem.alloc(G.Tensors[T].bytesAs(Ctx.TypeOf[T]), Cat::Temporaries,
                                      "grad(" + llvm::Twine(G.Tensors[T].Name) + ")", "DropoutBackward",
                                      Op.Layer, Ctx.TypeOf[T], G.Tensors[T].Shape);
        Mem.point(Phase, llvm::Twine(Op.Name) + " dropout backward", Op.Layer);
        Mem.release(GradOf[T]);
        GradOf[T] = Through;
      }
      Mem.release(D->second);
      DropoutMasks.erase(D);
      if (T == EmbeddingLeaf && LeafUnderDropout != NoStorage) {
        Mem.release(LeafUnderDropout); // the gradient has reached the leaf
        LeafUnderDropout = NoStorage;
      }
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
    const OpMemoryRule &Rule = ruleFor(OpI);
    if (Rule.Alias && Op.Outputs.size() == 1 && SegmentStartingAt[OpI] < 0) {
      // The tensor itself under another name: its gradient is the input's, handed on
      // without an allocation or a timeline point.
      StorageId Through = GradOf[Op.Outputs[0]];
      GradOf[Op.Outputs[0]] = NoStorage;
      TensorId In = Op.Inputs[0];
      if (In != NoTensor && Ctx.RequiresGrad[In])
        Deliver(In, Through, Op);
      else
        Mem.release(Through);
      continue;
    }
    StorageId OutGrad = Op.Outputs.empty() ? NoStorage : GradOf[Op.Outputs[0]];
    llvm::SmallVector<std::pair<TensorId, StorageId>, 4> Produced;
    llvm::SmallVector<TensorId, 4> CastBack; // operands whose gradient is an autocast copy's
    // Parameters' gradients first (mm computes grad_weight before grad_input).
    llvm::SmallVector<size_t, 4> Order;
    for (size_t I = 0; I < Op.Inputs.size(); ++I)
      if (ParamIndex.count(Op.Inputs[I]))
        Order.push_back(I);
    for (size_t I = 0; I < Op.Inputs.size(); ++I)
      if (!ParamIndex.count(Op.Inputs[I]))
        Order.push_back(I);
    StorageId Scratch = NoStorage;
    if (int64_t Bytes = Rule.BackwardTransient + (OpI < Unpacked.size() ? Unpacked[OpI] : 0))
      Scratch = Mem.alloc(Bytes, Cat::Temporaries, llvm::Twine(Op.Name) + " backward scratch", Op.Kind,
                          Op.Layer, DType::Float32, {});
    for (size_t I : Order) {
      TensorId In = Op.Inputs[I];
      if (In == NoTensor || !Ctx.RequiresGrad[In] || !carriesGradient(Op, I))
        continue;
      if (Rule.GradIsPassThrough[I] && OutGrad != NoStorage) {
        Mem.retain(OutGrad);
        Produced.emplace_back(In, OutGrad);
        continue;
      }
      int64_t Bytes = Rule.GradInputBytes[I];
      if (auto P = ParamIndex.find(In))
        Bytes = Census.Parameters[*P].bytes();
      if (!Bytes)
        continue;
      // An operand autocast copied gets its gradient in the copy's 16-bit type; the cast's
      // ToCopyBackward makes the fp32 one after this node returns (below).
      const bool Cast = autocastsOperand(OpI, I);
      if (Cast) {
        Bytes = G.Tensors[In].bytesAs(lowPrecision());
        CastBack.push_back(In);
      }
      Produced.emplace_back(In, Mem.alloc(Bytes, Cat::Temporaries, llvm::Twine("grad(") + llvm::Twine(G.Tensors[In].Name) + ")",
                                          llvm::Twine(Op.Kind) + "Backward", Op.Layer,
                                          Cast ? lowPrecision() : Ctx.TypeOf[In],
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
    // Under autocast each operand's gradient in turn, in the order of the operands
    // (measured on the CPU: a linear's input, weight, bias), a 16-bit one cast to fp32
    // first (the autocast copy's ToCopyBackward), beside the 16-bit one until it is made.
    if (!CastBack.empty())
      llvm::stable_sort(Produced, [&](const auto &A, const auto &B) {
        return llvm::find(Op.Inputs, A.first) < llvm::find(Op.Inputs, B.first);
      });
    for (auto &[In, S] : Produced) {
      if (llvm::is_contained(CastBack, In)) {
        int64_t Bytes = G.Tensors[In].bytesAs(Ctx.TypeOf[In]);
        if (auto P = ParamIndex.find(In))
          Bytes = Census.Parameters[*P].bytes();
        StorageId Full = Mem.alloc(Bytes, Cat::Temporaries, llvm::Twine("grad(") + llvm::Twine(G.Tensors[In].Name) + ")",
                                   "ToCopyBackward", Op.Layer, Ctx.TypeOf[In], G.Tensors[In].Shape);
        Mem.point(Phase, llvm::Twine(Op.Name) + " (gradient to fp32)", Op.Layer);
        Mem.release(S);
        S = Full;
      }
      Deliver(In, S, Op);
    }
    Mem.point(Phase, Op.Name, Op.Layer);
    if (const int Seg = SegmentStartingAt[OpI]; Seg >= 0)
      leaveCheckpoint(Seg);
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
    if (transient(T))
      dropValue(T);
  Mem.point(Phase, "backward done", "");
}

void Simulator::optimizerStep() {
  if (Setup.Galore) {
    if (!Setup.Galore->PerLayer) {
      GaloreStepPeaks Peaks = galoreStepPeaks(Census, Setup);
      for (auto [Bytes, What, At] :
           {std::tuple{Peaks.Svd, GaloreRefreshPoint, &Peaks.SvdAt},
            std::tuple{Peaks.Update, "optimizer.step", &Peaks.UpdateAt}}) {
        StorageId S = Bytes ? Mem.alloc(Bytes, Cat::Temporaries, What,
                                        "optimizer.step " + *At, "", DType::Float32, {})
                            : NoStorage;
        Mem.point("optimizer", What, "");
        if (S != NoStorage)
          Mem.release(S);
      }
    }
    Mem.point("optimizer", "optimizer.step done", "");
    return;
  }
  // torch.optim's single-tensor Adam(W) computes denom = (exp_avg_sq.sqrt() / bc2).add_(eps):
  // two parameter-sized temporaries for the parameter being updated. The foreach
  // version in 1.13 does the same with lists (`denom = _foreach_add(sqrt, eps)`): two
  // temporaries the size of all parameters; 2.x divides and adds eps in place
  // (`_foreach_add_(exp_avg_sq_sqrt, eps)`, torch/optim/adamw.py): one. The fused kernel
  // needs none; SGD (with or without momentum) updates in place at step 2+.
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
    Transient = (Setup.torchVersionFor(G.SourceFormat) == TorchVersion::V1_13 ? 2 : 1) * Sum;
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
  if (S != NoStorage) {
    // The state the step leaves behind (what zero_grad starts from), scratch freed.
    Mem.release(S);
    Mem.point("optimizer", "optimizer.step done", "");
  }
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


} // namespace sim
} // namespace trainmem
