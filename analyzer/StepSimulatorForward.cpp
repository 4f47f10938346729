//===- StepSimulatorForward.cpp - forward, dropout, loss --------------------------===//
//
// The forward half of the replay: each op as PyTorch runs it (views, copies, autocast
// casts, what its backward saves), the key/value cache, ZeRO-3 gathers, dropout masks and
// the loss. Checkpointed segments and their recomputation: StepSimulatorCheckpoint.cpp.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StepSimulatorState.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"

namespace trainmem {
namespace sim {
namespace {

/// PyTorch's computeStride (aten/src/ATen/TensorUtils.cpp): the strides of a view with
/// NewShape over Old, or nothing when the data cannot be viewed and reshape copies.
std::optional<Dims> viewStrides(const Layout &Old, llvm::ArrayRef<int64_t> NewShape) {
  int64_t N = 1;
  for (int64_t D : Old.Shape)
    N *= D;
  if (N == 0 || Old.Shape.empty())
    return contiguous(NewShape).Strides;
  Dims New(NewShape.size(), 0);
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
  Dims Flat;
  int64_t Lead = 1;
  for (size_t I = 0; I + Keep < L.Shape.size(); ++I)
    Lead *= L.Shape[I];
  Flat.push_back(Lead);
  for (size_t I = L.Shape.size() - Keep; I < L.Shape.size(); ++I)
    Flat.push_back(L.Shape[I]);
  return !viewStrides(L, Flat);
}

/// The strides a new tensor of Shape gets when it is made "like" L (empty_like, and the
/// output of a pointwise op over an input with L): dense, with L's dimension order (as
/// PyTorch's infer_dense_strides, gaps in L or not); contiguous when L has another shape
/// or broadcasts a dim.
Layout denseLike(const Layout &L, llvm::ArrayRef<int64_t> Shape) {
  Layout Out = contiguous(Shape);
  if (L.Shape.size() != Shape.size() || L.Strides.size() != Shape.size() ||
      !std::equal(Shape.begin(), Shape.end(), L.Shape.begin()))
    return Out;
  for (size_t D = 0; D < Shape.size(); ++D)
    if (Shape[D] != 1 && L.Strides[D] == 0)
      return Out;
  std::vector<size_t> Order(Shape.size());
  for (size_t I = 0; I < Order.size(); ++I)
    Order[I] = I;
  // Outermost first: descending strides, ties (size-1 dims) keeping their order.
  std::stable_sort(Order.begin(), Order.end(), [&](size_t A, size_t B) {
    return L.Strides[A] > L.Strides[B];
  });
  int64_t Next = 1;
  for (size_t I = Order.size(); I-- > 0;) {
    Out.Strides[Order[I]] = Next;
    Next *= std::max<int64_t>(Shape[Order[I]], 1);
  }
  return Out;
}

/// Is L contiguous (row-major without gaps)? No allocation: this runs for every
/// pointwise op of every simulated step.
bool isRowMajor(const Layout &L) {
  int64_t Expected = 1;
  for (size_t D = L.Shape.size(); D-- > 0;) {
    if (L.Shape[D] != 1 && L.Strides[D] != Expected)
      return false;
    Expected *= std::max<int64_t>(L.Shape[D], 1);
  }
  return true;
}

} // namespace

bool isPointwise(llvm::StringRef K) {
  static constexpr llvm::StringLiteral Ops[] = {
      "Add",  "Sub",     "Mul",  "Div",     "Neg",     "Pow",  "Sqrt",    "Reciprocal",
      "Exp",  "Log",     "Tanh", "Sigmoid", "Relu",    "Gelu", "Silu",    "Erf",
      "Cos",  "Sin",     "Abs",  "Where",   "Cast",    "CastLike", "Rsqrt", "Clip"};
  return llvm::is_contained(Ops, K);
}

std::vector<std::vector<TensorId>> moduleInputHolds(const Graph &G,
                                                    const std::vector<SimOp> &Ops) {
  // Python keeps a module's input alive until the module returns: the caller's variable
  // (nn.Sequential's loop variable, a block's `hidden_states`) and the forward's own
  // argument refer to it. Where autograd saves nothing (frozen layers) that decides when
  // it is freed. A module is a layer-path prefix; it returns after its last op. A
  // container whose ops all sit in numbered children (a ModuleList, or a Sequential the
  // parent iterates: `for b in self.features: x = b(x)`) is not called, so it holds
  // nothing; its numbered elements are.
  auto Parent = [](llvm::StringRef P) {
    size_t Dot = P.rfind('.');
    return Dot == llvm::StringRef::npos ? llvm::StringRef() : P.take_front(Dot);
  };
  // Modules by number, and each distinct layer path's chain of modules (itself first,
  // then its ancestors), so the per-input work below compares small integers.
  llvm::StringMap<uint32_t> ModuleId;
  std::vector<size_t> End;
  std::vector<bool> Called;
  llvm::StringMap<std::vector<uint32_t>> Chains;
  std::vector<const std::vector<uint32_t> *> ChainOf(Ops.size());
  std::vector<size_t> ProducerOp(G.Tensors.size(), Ops.size());
  for (size_t I = 0; I < Ops.size(); ++I) {
    auto [It, New] = Chains.try_emplace(Ops[I].Layer);
    if (New) {
      llvm::StringRef Child;
      for (llvm::StringRef P = Ops[I].Layer; !P.empty(); Child = P, P = Parent(P)) {
        auto [M, Added] = ModuleId.try_emplace(P, static_cast<uint32_t>(End.size()));
        if (Added) {
          End.push_back(0);
          Called.push_back(false);
        }
        bool Numbered = !Child.empty() &&
                        llvm::all_of(Child.drop_front(P.size() + 1), llvm::isDigit);
        if (!Numbered)
          Called[M->second] = true;
        It->second.push_back(M->second);
      }
    }
    ChainOf[I] = &It->second;
    for (uint32_t M : It->second)
      End[M] = I;
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        ProducerOp[O] = I;
  }
  std::vector<size_t> Until(G.Tensors.size(), 0);
  std::vector<bool> Held(G.Tensors.size(), false);
  for (size_t C = 0; C < Ops.size(); ++C)
    for (TensorId T : Ops[C].Inputs) {
      if (T == NoTensor || ProducerOp[T] == Ops.size())
        continue; // parameters, buffers and the batch live anyway
      const std::vector<uint32_t> &From = *ChainOf[ProducerOp[T]];
      for (uint32_t M : *ChainOf[C])
        if (Called[M] && !llvm::is_contained(From, M)) {
          Until[T] = std::max(Until[T], End[M]);
          Held[T] = true;
        }
    }
  std::vector<std::vector<TensorId>> Out(Ops.size());
  for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T)
    if (Held[T])
      Out[Until[T]].push_back(T);
  return Out;
}

llvm::Error Simulator::forward(int MicroBatch) {
  // Inputs are views of the materialised batch; every tensor's consumers are counted.
  for (TensorId In : G.Inputs)
    Values[In].L = contiguous(G.Tensors[In].Shape);
  for (Value &V : Values)
    V.PendingUses = 0;
  for (const std::vector<TensorId> &Distinct : Structure->DistinctInputs)
    for (TensorId I : Distinct)
      if (I != NoTensor)
        ++Values[I].PendingUses;
  const std::vector<std::vector<TensorId>> &HeldUntil = Structure->ModuleInputHolds;
  for (const std::vector<TensorId> &Held : HeldUntil)
    for (TensorId T : Held)
      ++Values[T].PendingUses;
  for (TensorId T : G.HeldThroughLoss)
    ++Values[T].PendingUses;
  SavedBy.assign(Ops.size(), {});
  HasBackward.assign(Ops.size(), false);
  Unpacked.assign(Ops.size(), 0);
  SegmentSaved.assign(Segments.size(), {});
  SegmentRng.assign(Segments.size(), NoStorage);
  std::string Phase = phaseName("forward");
  size_t Seg = 0;
  static const std::vector<std::pair<size_t, TensorId>> NoKvUses;
  const std::vector<std::pair<size_t, TensorId>> &KvUses =
      Setup.fillsKvCache(G.TrainingKvCache) ? Structure->KvCacheUses : NoKvUses;
  size_t Kv = 0;
  for (size_t OpI = 0; OpI < Ops.size(); ++OpI) {
    while (Seg < Segments.size() && Segments[Seg].Last < OpI)
      ++Seg;
    bool InSegment = Seg < Segments.size() && Segments[Seg].First <= OpI;
    if (InSegment && OpI == Segments[Seg].First)
      enterCheckpoint(Seg, Phase);
    bool Selective = InSegment && Segments[Seg].Selective;
    ActiveSelective = Selective ? static_cast<int>(Seg) : -1;
    gatherFor(OpI, Phase);
    if (Kv < KvUses.size() && KvUses[Kv].first == OpI) {
      size_t From = Kv;
      while (Kv < KvUses.size() && KvUses[Kv].first == OpI)
        ++Kv;
      // Gradient checkpointing turns the cache off in the layers it wraps.
      if (!InSegment)
        fillKvCache(OpI, From, Kv, Phase);
    }
    runOp(OpI, !InSegment || Selective, Phase);
    if (overLimit())
      return llvm::Error::success(); // run() sees it and goes no further
    for (TensorId T : HeldUntil[OpI])
      if (--Values[T].PendingUses <= 0 && !graphOutput(T))
        dropValue(T);
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

void Simulator::fillKvCache(size_t OpI, size_t From, size_t To, const std::string &Phase) {
  // DynamicCache.update: torch.cat([cached, new], dim=-2) on an empty cache copies the
  // key states, then the value states, into new contiguous tensors; the layer rebinds its
  // names to the copies, so the originals die unless something else holds them (GPT-2's
  // and GPT-NeoX's slices of the fused qkv projection keep theirs alive through the
  // query). Measured on torch 2.15 with transformers 5.24: GPT-2 with use_cache=False
  // peaks 1,048,576 B lower (two layers, 2 x 262,144 B each), LLaMA the same.
  llvm::SmallVector<StorageId, 2> Originals;
  for (size_t I = From; I < To; ++I) {
    TensorId T = Structure->KvCacheUses[I].second;
    Value &V = Values[T];
    if (!V.Held || V.Storage == NoStorage)
      continue;
    const Tensor &Tn = G.Tensors[T];
    StorageId Copy = Mem.alloc(Tn.bytesAs(Ctx.TypeOf[T]), Cat::Temporaries,
                               llvm::Twine(Tn.Name) + " (key/value cache)", "DynamicCache.update",
                               Ops[OpI].Layer, Ctx.TypeOf[T], Tn.Shape);
    Mem.retain(Copy); // the cache's reference
    KvCacheHeld.push_back(Copy);
    Originals.push_back(V.Storage);
    V.Storage = Copy;
    V.L = contiguous(Tn.Shape);
  }
  if (Originals.empty())
    return;
  Mem.point(Phase, "DynamicCache.update", Ops[OpI].Layer);
  for (StorageId S : Originals)
    Mem.release(S);
}

void Simulator::runOp(size_t OpI, bool Save, const std::string &Phase) {
  const SimOp &Op = Ops[OpI];
  const llvm::StringRef Kind = Op.Kind; // compared by length first, unlike std::string
  const OpMemoryRule &Rule = ruleFor(OpI);
  bool AnyGrad = false;
  for (size_t K = 0; K < Op.Inputs.size(); ++K)
    AnyGrad |= carriesGradient(Op, K) && Op.Inputs[K] != NoTensor && Ctx.RequiresGrad[Op.Inputs[K]];
  AnyGrad &= Save; // inside a checkpointed segment the forward runs under no_grad
  // An op none of whose outputs reaches the loss through a gradient (DeepSeek's group
  // ranking, top-k indices of masked scores): its autograd node, with what it saved, dies
  // with its outputs, so it keeps nothing for a backward that never comes.
  AnyGrad &= !Structure->OffLossPath[OpI];
  if (Rule.Alias && Op.Outputs.size() == 1 && Op.Outputs[0] != NoTensor && !Dropouts.count(OpI)) {
    // The tensor itself under another name: no allocation, no timeline point (the
    // planner's evaluations meet one per RMSNorm and LoRA adapter in every step).
    TensorId In = Op.Inputs[0], O = Op.Outputs[0];
    if (In != NoTensor && Values[In].Storage != NoStorage) {
      Mem.retain(Values[In].Storage);
      holdValue(O, Values[In].Storage, Values[In].L);
    }
    if (AnyGrad)
      HasBackward[OpI] = true;
    for (TensorId I : Structure->DistinctInputs[OpI])
      if (I != NoTensor && transient(I) && --Values[I].PendingUses <= 0 && !graphOutput(I))
        dropValue(I);
    if (Values[O].PendingUses == 0 && !graphOutput(O))
      dropValue(O);
    return;
  }
  // Autocast runs matmul-like ops and scaled_dot_product_attention on 16-bit copies of
  // their fp32 operands (autocastsOperand; weights and biases cached): RoPE's fp32 cos and
  // sin promote LLaMA's and GPT-NeoX's q and k to fp32, and attention keeps bf16 copies
  // (measured on the CPU, torch 2.15); a bias is cast and cached with its weight
  // (measured: OPT's biases under autocast).
  const size_t CastSlots = 4;
  auto CastsOperand = [&](size_t Slot) { return autocastsOperand(OpI, Slot); };
  // What the op reads in operand slots 0 to 2 instead of the input itself: a copy that
  // matmul makes to flatten an operand with non-viewable strides (what bmm/mm sees and
  // saves), an autocast copy, or a contiguous copy of an autocast copy; and that autocast
  // copy, freed with the op.
  StorageId Copies[4] = {NoStorage, NoStorage, NoStorage, NoStorage};
  StorageId CastFirst[4] = {NoStorage, NoStorage, NoStorage, NoStorage};
  auto CopyIfNeeded = [&](size_t Slot, size_t Keep) {
    TensorId T = Op.Inputs[Slot];
    if (T == NoTensor || stored(T) || Values[T].Storage == NoStorage ||
        !flattenNeedsCopy(Values[T].L, Keep))
      return;
    DType Type = Ctx.TypeOf[T];
    if (CastsOperand(Slot)) {
      // The cast keeps the strides (preserve_format); flattening copies the 16-bit tensor.
      Type = lowPrecision();
      CastFirst[Slot] = Mem.alloc(G.Tensors[T].bytesAs(Type), Cat::Temporaries,
                                  llvm::Twine(G.Tensors[T].Name) + " (autocast copy)", Op.Kind,
                                  Op.Layer, Type, G.Tensors[T].Shape);
    }
    Copies[Slot] = Mem.alloc(G.Tensors[T].bytesAs(Type), Cat::Temporaries,
                             llvm::Twine(G.Tensors[T].Name) + " (contiguous copy)", Op.Kind,
                             Op.Layer, Type, G.Tensors[T].Shape);
  };
  if (Kind == "Linear")
    CopyIfNeeded(0, 1);
  if (Kind == "MatMul") {
    CopyIfNeeded(0, 2);
    CopyIfNeeded(1, 2);
  }
  // The math kernel's probabilities @ v (OpMemoryRules: an fp32 v is kept as it reads it).
  if (Kind == "ScaledDotProductAttention" && sdpaRunsMathKernel(Ctx, Op) && !isAmp() &&
      Op.Inputs.size() > 2 && Op.Inputs[2] != NoTensor &&
      Ctx.TypeOf[Op.Inputs[2]] == DType::Float32)
    CopyIfNeeded(2, 2);
  // Outputs.
  for (size_t OI = 0; OI < Op.Outputs.size(); ++OI) {
    TensorId O = Op.Outputs[OI];
    if (O == NoTensor)
      continue;
    const Tensor &T = G.Tensors[O];
    // A view of the batch (a graph input, counted apart from the values) is the batch.
    if (Rule.Outputs[OI] == OutputKind::ViewOfInput0 && Op.Inputs[0] != NoTensor &&
        Values[Op.Inputs[0]].Storage == NoStorage &&
        G.Tensors[Op.Inputs[0]].Kind == TensorKind::Input)
      continue;
    if (Rule.Outputs[OI] == OutputKind::ViewOfInput0 && Op.Inputs[0] != NoTensor &&
        Values[Op.Inputs[0]].Storage != NoStorage) {
      const Value &Src = Values[Op.Inputs[0]];
      Layout L;
      if (Kind == "Transpose") {
        std::vector<int64_t> Perm = G.Nodes[Op.Nodes[0]].intsAttr("perm").value_or(
            std::vector<int64_t>{});
        if (isPermutation(Perm, Src.L.Shape.size())) {
          for (int64_t P : Perm) {
            L.Shape.push_back(Src.L.Shape[P]);
            L.Strides.push_back(Src.L.Strides[P]);
          }
        }
      } else if (Kind == "Split" || Kind == "Slice") {
        L = Src.L;
        if (T.ShapeKnown && T.Shape.size() == L.Shape.size())
          L.Shape.assign(T.Shape.begin(), T.Shape.end()); // same strides, smaller extent
      } else if (Kind == "Gather") { // select: the strides without the chosen axis
        int64_t Axis = G.Nodes[Op.Nodes[0]].intAttr("axis").value_or(0);
        const auto Rank = static_cast<int64_t>(Src.L.Shape.size());
        if (Axis < 0)
          Axis += Rank;
        if (Axis >= 0 && Axis < Rank)
          for (int64_t D = 0; D < Rank; ++D)
            if (D != Axis) {
              L.Shape.push_back(Src.L.Shape[size_t(D)]);
              L.Strides.push_back(Src.L.Strides[size_t(D)]);
            }
      } else if (Kind == "Expand") {
        L = contiguous(T.Shape);
        size_t Off = T.Shape.size() - Src.L.Shape.size();
        for (size_t D = 0; D < T.Shape.size(); ++D)
          L.Strides[D] = D < Off || Src.L.Shape[D - Off] != T.Shape[D]
                             ? 0
                             : Src.L.Strides[D - Off];
      } else if (auto S = viewStrides(Src.L, T.Shape)) {
        L = {Dims(T.Shape.begin(), T.Shape.end()), std::move(*S)};
      }
      if (L.Shape.size() != T.Shape.size() || L.Strides.size() != T.Shape.size()) {
        // Not viewable: reshape copies.
        StorageId S = Mem.alloc(T.bytesAs(Ctx.TypeOf[O]), Cat::Temporaries, T.Name, Op.Kind,
                                Op.Layer, Ctx.TypeOf[O], T.Shape);
        holdContiguous(O, S, T.Shape);
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
                            llvm::Twine(T.Name) + (Unmaterialised ? " (not materialised)" : ""), Op.Kind,
                            Op.Layer, Ctx.TypeOf[O], T.Shape);
    Layout &L = Values[O].L; // written in place (an op's output is none of its inputs)
    setContiguous(L, T.Shape);
    if (Kind == "ScaledDotProductAttention" && T.Shape.size() == 4 && Op.Inputs[0] != NoTensor &&
        Values[Op.Inputs[0]].Held && !sdpaRunsMathKernel(Ctx, Op)) {
      // The memory-efficient kernel (CUDA's for fp32) writes [batch, seq, heads, head_dim]
      // and returns it transposed; flash (CUDA, 16-bit) and the CPU kernel allocate the
      // output like the query (empty_like). Merging the heads back (transpose(1, 2) and
      // reshape) is then a view when the query itself was a transposed projection.
      // (Under autocast the kernel runs on 16-bit copies: flash.)
      if (Setup.Device == DeviceKind::Cuda && Ctx.TypeOf[Op.Inputs[0]] == DType::Float32 &&
          !isAmp())
        L.Strides = {T.Shape[2] * T.Shape[1] * T.Shape[3], T.Shape[3], T.Shape[1] * T.Shape[3],
                     1};
      else
        L = denseLike(Values[Op.Inputs[0]].L, T.Shape);
    } else if (Structure->Pointwise[OpI]) {
      for (TensorId In : Op.Inputs)
        if (In != NoTensor && Values[In].Held && Values[In].L.Shape.size() == T.Shape.size() &&
            std::equal(T.Shape.begin(), T.Shape.end(), Values[In].L.Shape.begin())) {
          if (!isRowMajor(Values[In].L)) // else the output is contiguous, as it is
            L = denseLike(Values[In].L, T.Shape);
          break;
        }
    }
    Values[O].Storage = S;
    Values[O].Held = true;
  }
  // Autocast copies of the fp32 operands not copied above. Autocast caches the copy of a
  // weight that requires grad (a leaf: cached_cast's can_try_cache) until its context
  // exits, so the copy outlives an op that does not save it: every trained weight's copy
  // is live at the forward's end under checkpointing (measured: SmolLM3 under autocast
  // with every block checkpointed peaks at the loss with them, -3.6% without).
  for (size_t Slot = 0; Slot < CastSlots; ++Slot) {
    if (!CastsOperand(Slot) || Copies[Slot] != NoStorage)
      continue;
    TensorId T = Op.Inputs[Slot];
    const StorageId Weight = storageOf(T);
    const bool Cached = Weight != NoStorage && Mem[Weight].Category == Cat::Weights &&
                        Ctx.RequiresGrad[T];
    if (Cached)
      if (auto It = AutocastCache.find(Weight); It != AutocastCache.end()) {
        Copies[Slot] = It->second;
        Mem.retain(It->second);
        continue;
      }
    Copies[Slot] = Mem.alloc(G.Tensors[T].bytesAs(lowPrecision()), Cat::Temporaries,
                             llvm::Twine(G.Tensors[T].Name) + " (autocast copy)", Op.Kind,
                             Op.Layer, lowPrecision(), G.Tensors[T].Shape);
    if (Cached) {
      Mem.retain(Copies[Slot]);
      AutocastCache[Weight] = Copies[Slot];
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
        // A rule names inputs by position; a node with fewer (malformed, or optional
        // ones left off) saves nothing there, as below.
        const auto &Listed = Item.What == SavedItem::Input ? Op.Inputs : Op.Outputs;
        if (Item.Index < 0 || Item.Index >= static_cast<int>(Listed.size()))
          continue;
        StorageId Cand = storageOf(Listed[Item.Index]);
        bool Persistent = Cand != NoStorage && (Mem[Cand].Category == Cat::Weights ||
                                                 Mem[Cand].Category == Cat::Inputs);
        bool SegmentInput = false;
        for (StorageId K : SegmentSaved[ActiveSelective])
          SegmentInput |= K == Cand;
        if (!Persistent && !SegmentInput && !SelectiveKeep.count(Cand))
          continue;
      }
      if (Item.What == SavedItem::Input && Item.Index < static_cast<int>(Op.Inputs.size())) {
        S = Item.Index < 4 && Copies[Item.Index] != NoStorage
                ? Copies[Item.Index]
                : storageOf(Op.Inputs[Item.Index]);
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
        S = Mem.alloc(Item.ExtraBytes, Cat::Activations, llvm::Twine(Op.Name) + " " + Item.ExtraName,
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
                                     Mem.name(S) + " (int8)", Op.Kind, Op.Layer, DType::Int8,
                                     Mem.shape(S));
        Unpacked[OpI] += Mem[S].Bytes;
        Mem.release(S);
        S = Packed;
      }
      if (Mem[S].Category == Cat::Temporaries)
        Mem.recategorize(S, Cat::Activations);
      SavedBy[OpI].push_back(S);
    }
  }
  if (Save && OpI == EmbeddingLeafConsumer) {
    // The leaf's AccumulateGrad node, which this op's backward feeds, holds it.
    if (StorageId S = storageOf(EmbeddingLeaf); S != NoStorage &&
                                               !llvm::is_contained(SavedBy[OpI], S)) {
      Mem.retain(S);
      if (Mem[S].Category == Cat::Temporaries)
        Mem.recategorize(S, Cat::Activations);
      SavedBy[OpI].push_back(S);
    }
  }
  if (const int64_t Scratch =
          Rule.ForwardTransient + (AnyGrad ? 0 : Rule.ForwardTransientUnlessSaved)) {
    StorageId S = Mem.alloc(Scratch, Cat::Temporaries, llvm::Twine(Op.Name) + " scratch",
                            Op.Kind, Op.Layer, DType::Float32, {});
    Mem.point(Phase, Op.Name, Op.Layer);
    Mem.release(S);
  }
  Mem.point(Phase, Op.Name, Op.Layer);
  for (StorageId S : Copies)
    Mem.release(S); // the saved ones keep their own reference
  for (StorageId S : CastFirst)
    Mem.release(S);
  for (TensorId I : Structure->DistinctInputs[OpI]) {
    if (I == NoTensor || !transient(I))
      continue;
    if (--Values[I].PendingUses <= 0 && !graphOutput(I))
      dropValue(I);
  }
  // Outputs nobody reads die at once (unless they are graph outputs).
  for (TensorId O : Op.Outputs)
    if (O != NoTensor && Values[O].PendingUses == 0 && !graphOutput(O))
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
      if (auto P = ParamIndex.find(In))
        UnitParams[GatherUnit[I]].insert(*P);
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

void Simulator::planDropout() {
  double Prob = Setup.Dropout ? *Setup.Dropout : G.DeclaredDropout.value_or(0.0);
  if (Prob <= 0)
    return;
  if (!Setup.Dropout)
    Diags.note("dropout-from-config", "",
               "training-time dropout p=" + std::to_string(Prob).substr(0, 4) +
                   " from the model's config (--dropout=0 to simulate without it)");
  // Where nn.Dropout sits in the transformer blocks exported models lose it from
  // (OpMemoryRules.h); a config says which of them its model has.
  for (const auto &Site : dropoutSites(G, Ops, Setup.Dropout))
    Dropouts.insert(Site.first);
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
                             llvm::Twine(Tn.Name) + " dropout mask", "Dropout", Ops[OpI].Layer,
                             Setup.Device == DeviceKind::Cuda ? DType::Bool : Ctx.TypeOf[T],
                             Tn.Shape);
  StorageId Out = Mem.alloc(Tn.bytesAs(Ctx.TypeOf[T]), Cat::Temporaries, llvm::Twine(Tn.Name) + " (dropout)",
                            "Dropout", Ops[OpI].Layer, Ctx.TypeOf[T], Tn.Shape);
  Mem.point(Phase, llvm::Twine(Ops[OpI].Name) + " dropout", Ops[OpI].Layer);
  if (Saved && T == EmbeddingLeaf && Values[T].Held) {
    // A frozen embedding's output that requires grad (EmbeddingLeaf) dropped out: the
    // leaf's AccumulateGrad node, fed by the dropout's backward, keeps the tensor before
    // the dropout (measured: Phi with embd_pdrop, LoRA and checkpointing saved it).
    Mem.retain(In);
    if (Mem[In].Category == Cat::Temporaries)
      Mem.recategorize(In, Cat::Activations);
    LeafUnderDropout = In;
  }
  Layout L = Values[T].L;
  dropValue(T);
  int Uses = Values[T].PendingUses;
  holdContiguous(T, Out, Tn.Shape);
  Values[T].PendingUses = Uses;
  if (Saved)
    DropoutMasks[T] = Mask;
  else
    Mem.release(Mask);
  (void)L;
}

void Simulator::loss() {
  releaseGathered();
  std::string Phase = phaseName("forward");
  LossKind Kind = Setup.Loss;
  if (LossLogits != NoTensor && Kind == LossKind::Auto)
    Kind = G.Tensors[LossLogits].Shape.size() >= 2 ? LossKind::CrossEntropy : LossKind::None;
  LogSoftmax = TotalWeight = LossValue = LossTarget = NoStorage;
  StorageId PaddedLabels = NoStorage; // ForCausalLMLoss's, while the loss runs
  StorageId Upcast16 = NoStorage;     // the fp32 copy of 16-bit logits, likewise
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
      // log_softmax in fp32 (autocast's fp32 list, or a loss that upcasts the logits;
      // else pure bf16 keeps bf16), saved for nll.
      bool Upcast = isAmp() || G.LossUpcastsLogits;
      DType LsType = Upcast ? DType::Float32 : Ctx.TypeOf[LossLogits];
      if (Upcast && Ctx.TypeOf[LossLogits] != DType::Float32) {
        // The fp32 copy of 16-bit logits that cross_entropy runs on: the loss function's
        // `logits = logits.float()`, held while log_softmax makes its output (measured:
        // SmolLM3 under autocast and checkpointing peaks there).
        Upcast16 = Mem.alloc(T.bytesAs(DType::Float32), Cat::Temporaries,
                             "logits (fp32 for the loss)", "Cast", "loss", DType::Float32,
                             T.Shape);
        Mem.point(Phase, "cross_entropy", "loss");
      }
      // Under no_grad (zeroth-order) nothing is kept for a backward.
      Cat Kept = Setup.ZerothOrder ? Cat::Temporaries : Cat::Activations;
      // ForCausalLMLoss pads the labels by one position per sample and keeps a contiguous
      // copy of them shifted, which nll_loss saves as its target (measured: 4,096 B saved
      // for 2 x 256 tokens, 4,112 B more while the loss runs).
      if (G.LossShiftsLabels) {
        const int64_t Batch = T.Shape.size() >= 3 ? T.Shape[0] : 1;
        PaddedLabels = Mem.alloc((LossRows + Batch) * 8, Cat::Temporaries, "labels (padded)",
                                 "Pad", "loss", DType::Int64, {LossRows + Batch});
        LossTarget = Mem.alloc(LossRows * 8, Kept, "shift_labels", "Contiguous", "loss",
                               DType::Int64, {LossRows});
      }
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
    Mem.release(PaddedLabels); // when the loss function returns
    Mem.release(Upcast16);
  }
  // Saved bytes at the end of the forward: what backward will read.
  int64_t Saved = Mem.LiveBytes.Activations;
  SavedAtEnd = Saved;
  // Per layer, for the report's layer table: with details only (the planner never reads
  // it, and its map of layer paths was a twentieth of a LoRA step).
  if (CurrentMicroBatch == 0 && Mem.Details) {
    SavedByLayer.clear();
    for (size_t OpI = 0; OpI < Ops.size(); ++OpI)
      for (StorageId S : SavedBy[OpI])
        if (Mem[S].Category == Cat::Activations)
          SavedByLayer[Ops[OpI].Layer.empty() ? "(model)" : Ops[OpI].Layer] += Mem[S].Bytes;
  }
  // The autocast context exits with the forward (the loss computed inside it), and frees
  // its cast cache. The caller drops the model's outputs before backward (only the loss
  // is kept), and with them the key/value cache.
  clearAutocastCache();
  for (TensorId T : G.HeldThroughLoss)
    if (--Values[T].PendingUses <= 0 && !graphOutput(T))
      dropValue(T);
  for (TensorId O : G.Outputs)
    if (O != NoTensor && Values[O].Held && storageOf(O) != LossValue)
      dropValue(O);
  for (StorageId S : KvCacheHeld)
    Mem.release(S);
  KvCacheHeld.clear();
  Mem.point(phaseName("backward"), "outputs released", "");
}

} // namespace sim
} // namespace trainmem
