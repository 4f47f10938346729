//===- StepSimulatorCheckpoint.cpp - activation checkpointing in the replay --------===//
//
// Which ops each checkpointed segment covers (--checkpoint), what entering one keeps (its
// inputs, the CPU generator state), the recomputation in backward (torch 1.13's reentrant
// checkpoint, PyTorch 2's non-reentrant one with its early stop) and what leaving frees.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StepSimulatorState.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

namespace trainmem {
namespace sim {

void Simulator::enterCheckpoint(size_t Seg, const std::string &Phase) {
  // torch.utils.checkpoint keeps the segment's inputs (save_for_backward) and, when it
  // preserves RNG state, a copy of the CPU generator state (5,056 bytes) that lives
  // until the graph is freed after backward.
  for (TensorId In : Segments[Seg].Inputs) {
    StorageId S = storageOf(In);
    if (S == NoStorage)
      continue;
    Mem.retain(S);
    if (Mem[S].Category == Cat::Temporaries)
      Mem.recategorize(S, Cat::Activations);
    SegmentSaved[Seg].push_back(S);
  }
  if (Setup.Device == DeviceKind::Cpu) {
    StorageId Rng = Mem.alloc(CpuRngStateBytes, Cat::Activations, "checkpoint RNG state",
                              "checkpoint", Ops[Segments[Seg].First].Layer, DType::UInt8,
                              {CpuRngStateBytes});
    if (Ctx.Torch2)
      SegmentRng[Seg] = Rng;
    else
      RngStates.push_back(Rng);
  }
  Mem.point(Phase, "checkpoint", Ops[Segments[Seg].First].Layer);
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
  // A per-block selection (what --checkpoint=optimal resolves to): each listed block is
  // its own segment, whole or selective.
  std::optional<BlockCheckpointSelection> PerBlock;
  if (auto Sel = parseBlockCheckpointSelection(Mode))
    PerBlock = *Sel;
  else
    llvm::consumeError(Sel.takeError());
  if (Mode != "blocks" && !Selective && !llvm::StringRef(Mode).startswith("every:") &&
      FirstK < 0 && !PerBlock) {
    Diags.warning("checkpoint-mode", Mode,
                  "--checkpoint=" + Mode + " is resolved by the planner before simulation; "
                  "simulated without checkpointing");
    return;
  }
  // Repeated blocks are the runs of ops whose layer paths share a numbered prefix
  // ("h.3", "model.layers.12") of a composite module; each is wrapped in
  // torch.utils.checkpoint.
  int BlockIndex = 0;
  for (const BlockSpan &Span : Structure->Spans) {
    size_t I = Span.First, J = Span.Last;
    auto Listed = [&](const std::vector<int64_t> &V) {
      return std::binary_search(V.begin(), V.end(), int64_t{BlockIndex});
    };
    bool Chosen = PerBlock     ? Listed(PerBlock->Full) || Listed(PerBlock->Selective)
                  : FirstK >= 0 ? BlockIndex < FirstK
                                : BlockIndex % std::max<int64_t>(Every, 1) == 0;
    if (Chosen) {
      Segment Seg{I, J, {}, PerBlock ? Listed(PerBlock->Selective) : Selective};
      llvm::SmallVector<TensorId, 128> Produced; // sorted, for binary search
      for (size_t K = I; K <= J; ++K)
        Produced.append(Ops[K].Outputs.begin(), Ops[K].Outputs.end());
      llvm::sort(Produced);
      for (size_t K = I; K <= J; ++K)
        for (TensorId In : Ops[K].Inputs)
          if (In != NoTensor && !std::binary_search(Produced.begin(), Produced.end(), In) &&
              !G.Tensors[In].Stored && G.Tensors[In].Kind != TensorKind::Input &&
              !llvm::is_contained(Seg.Inputs, In))
            Seg.Inputs.push_back(In);
      // What the model hands every block beside the tensors its ops read (position_ids):
      // the checkpoint keeps the call's arguments too.
      for (TensorId Arg : G.BlockArguments)
        if (!G.Tensors[Arg].Stored && G.Tensors[Arg].Kind != TensorKind::Input &&
            !llvm::is_contained(Seg.Inputs, Arg))
          Seg.Inputs.push_back(Arg);
      Segments.push_back(std::move(Seg));
    }
    ++BlockIndex;
  }
  if (PerBlock)
    for (const std::vector<int64_t> *V : {&PerBlock->Full, &PerBlock->Selective})
      if (!V->empty() && V->back() >= BlockIndex)
        Diags.warning("checkpoint-blocks", Mode,
                      "--checkpoint=" + Mode + " lists block " + std::to_string(V->back()) +
                          " but the model has " + std::to_string(BlockIndex) +
                          " repeated blocks (0 to " + std::to_string(BlockIndex - 1) +
                          "); the blocks past the end are ignored");
  if (Segments.empty() && BlockIndex == 0)
    Diags.warning("checkpoint-blocks", "",
                  "--checkpoint=" + Mode + ": no repeated blocks found in the layer paths "
                  "(names like h.0 or layers.3); simulated without checkpointing");
}

bool Simulator::dropsOutSaved(size_t OpI) const {
  if (!Dropouts.count(OpI) || Ops[OpI].Outputs.empty())
    return false;
  const TensorId T = Ops[OpI].Outputs[0];
  return T != NoTensor && Ctx.RequiresGrad[T];
}

size_t Simulator::recomputeStop(size_t Seg) {
  const Segment &S = Segments[Seg];
  size_t Last = S.Last;
  if (!Ctx.Torch2)
    return Last;
  auto SavesSomething = [&](size_t I) {
    if (dropsOutSaved(I))
      return true;
    bool AnyGrad = false;
    for (TensorId In : Ops[I].Inputs)
      AnyGrad |= In != NoTensor && Ctx.RequiresGrad[In];
    return AnyGrad && !ruleFor(I).Saved.empty();
  };
  while (Last > S.First && !SavesSomething(Last))
    --Last;
  return Last;
}

void Simulator::recompute(size_t Seg, const std::string &Phase) {
  const Segment &S = Segments[Seg];
  // PyTorch 2's non-reentrant checkpoint (use_reentrant=False, what transformers 5
  // passes) recomputes only until the last tensor the backward will unpack is saved
  // (early stop: the block's trailing ops are not rerun) and keeps only those tensors; the
  // reentrant one (torch 1.13's default, the fixtures') reruns the whole segment and holds
  // its outputs while it runs backward through them. The backward has already run
  // through the trailing ops (their autograd nodes from the forward save nothing).
  const bool NonReentrant = Ctx.Torch2;
  const size_t Last = recomputeStop(Seg);
  bool StopBeforeLast = false;
  if (NonReentrant) {
    // Autograd packs an op's inputs before its kernel runs and its outputs after: when
    // the last op saves inputs only (a linear keeps its input and weight), the
    // recomputation stops as it packs them, before that op allocates its output.
    // A dropout after it packs its mask once the op has run.
    StopBeforeLast = !dropsOutSaved(Last) &&
                     llvm::none_of(ruleFor(Last).Saved, [](const SavedItem &Item) {
                       return Item.What != SavedItem::Input;
                     });
  }
  for (size_t I = S.First; I <= S.Last; ++I) {
    for (TensorId In : Ops[I].Inputs)
      if (In != NoTensor)
        Values[In].PendingUses = 0;
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        Values[O].PendingUses = 0;
  }
  for (size_t I = S.First; I <= Last; ++I) {
    for (TensorId In : Structure->DistinctInputs[I])
      if (In != NoTensor)
        ++Values[In].PendingUses;
  }
  // The recomputation runs the modules' Python code again, so a module holds what it was
  // called with until it returns, as in the forward (ModuleInputHolds: a decoder layer's
  // normed input stays alive through the attention it feeds): the recomputed tensors are
  // held to the same op, or to the end where the recomputation stops first (unwinding its
  // frames). Measured: Qwen2 with eager attention under autocast, checkpointed, peaked at
  // the recomputed scores plus mask with the normed input still alive.
  const std::vector<std::vector<TensorId>> &HeldUntil = Structure->ModuleInputHolds;
  llvm::SmallVector<TensorId, 16> Recomputed; // sorted, for binary search
  for (size_t I = S.First; I <= Last; ++I)
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        Recomputed.push_back(O);
  llvm::sort(Recomputed);
  auto IsRecomputed = [&](TensorId T) {
    return std::binary_search(Recomputed.begin(), Recomputed.end(), T);
  };
  llvm::SmallVector<TensorId, 8> HeldPastStop;
  for (size_t I = S.First; I <= S.Last; ++I)
    for (TensorId T : HeldUntil[I])
      if (IsRecomputed(T)) {
        ++Values[T].PendingUses;
        if (I > Last)
          HeldPastStop.push_back(T);
      }
  // A recomputed tensor that an op past the stop reads (the decoder layer's residual,
  // added back after the MLP) is held by the frame that will read it until the
  // recomputation stops and unwinds. Measured: Mixtral's block stops in its last gather,
  // with the layer's residual still held (131,072 B of the bf16 checkpointed step's peak).
  for (size_t I = Last + 1; NonReentrant && I <= S.Last; ++I)
    for (TensorId In : Structure->DistinctInputs[I])
      if (In != NoTensor && IsRecomputed(In)) {
        ++Values[In].PendingUses;
        HeldPastStop.push_back(In);
      }
  auto ReleaseHold = [&](TensorId T) {
    if (--Values[T].PendingUses <= 0 && !graphOutput(T))
      dropValue(T);
  };
  StorageId Rng = NoStorage;
  if (Setup.Device == DeviceKind::Cpu) // fork_rng saves and restores the generator state
    Rng = Mem.alloc(CpuRngStateBytes, Cat::Temporaries, "recompute RNG state", "checkpoint",
                    Ops[S.First].Layer, DType::UInt8, {CpuRngStateBytes});
  // CheckpointFunction.backward holds the recomputed outputs while it runs backward
  // through them: a use that outlives the segment's own ops (dropped in leaveCheckpoint).
  llvm::SmallVector<NodeId, 128> Inside; // sorted, for binary search
  for (size_t I = S.First; I <= S.Last; ++I)
    Inside.append(Ops[I].Nodes.begin(), Ops[I].Nodes.end());
  llvm::sort(Inside);
  for (size_t I = S.First; I <= S.Last && !NonReentrant; ++I)
    for (TensorId O : Ops[I].Outputs) {
      if (O == NoTensor)
        continue;
      bool Escapes = G.Tensors[O].IsGraphOutput;
      // Shape-only consumers (a Shape node feeding a Reshape) hold nothing at run time.
      for (NodeId C : G.Tensors[O].Consumers)
        Escapes |= Structure->NodeInOp[C] && !std::binary_search(Inside.begin(), Inside.end(), C);
      if (Escapes)
        ++Values[O].PendingUses;
    }
  for (size_t I = S.First; I <= Last; ++I) {
    const bool Packs = StopBeforeLast && I == Last;
    if (!Packs && (!S.Selective || !isMatmulKind(Ops[I].Kind))) {
      runOp(I, true, Phase);
      for (TensorId T : HeldUntil[I])
        if (IsRecomputed(T))
          ReleaseHold(T);
      continue;
    }
    // A stored matmul is not rerun, nor the op where the recomputation stops; their
    // backward reads the recomputed inputs.
    if (Packs)
      HasBackward[I] = true; // SavesSomething: an input requires grad
    const OpMemoryRule &Rule = ruleFor(I);
    for (const SavedItem &Item : Rule.Saved)
      if (Item.What == SavedItem::Input &&
          Item.Index < static_cast<int>(Ops[I].Inputs.size())) {
        StorageId St = storageOf(Ops[I].Inputs[Item.Index]);
        if (St == NoStorage ||
            std::find(SavedBy[I].begin(), SavedBy[I].end(), St) != SavedBy[I].end())
          continue;
        Mem.retain(St);
        SavedBy[I].push_back(St);
      }
    for (TensorId In : Structure->DistinctInputs[I])
      if (In != NoTensor && !G.Tensors[In].Stored && --Values[In].PendingUses <= 0)
        dropValue(In);
    for (TensorId T : HeldUntil[I])
      if (IsRecomputed(T))
        ReleaseHold(T);
  }
  for (TensorId T : HeldPastStop)
    ReleaseHold(T);
  // The recomputation ran in an autocast context of its own, which frees its cast cache.
  clearAutocastCache();
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
  // PyTorch 2: the frame that holds the RNG state goes with the layer's last saved tensor.
  // Measured: two-layer decoders in fp32, whose peak falls in the first layer's
  // recompute, peaked one state (5,056 B) lower than predicted while both were kept.
  if (Seg < SegmentRng.size() && SegmentRng[Seg] != NoStorage) {
    Mem.release(SegmentRng[Seg]);
    SegmentRng[Seg] = NoStorage;
  }
}

} // namespace sim
} // namespace trainmem
