//===- SimOps.cpp - the graph's nodes grouped into the ops PyTorch runs ----------===//
//
// An exported graph spells out what PyTorch runs as one op (Linear with its bias, GELU,
// LayerNorm before opset 17, SiLU, rsqrt, scaled_dot_product_attention): the groups
// become SimOps, whose memory rules OpMemoryRules gives. Nodes that only compute shapes
// run no op; a fused attention drops what it no longer reads (a mask SDPA skips, key and
// value heads it reads unrepeated).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OpMemoryRules.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringRef.h"

#include <map>
#include <set>

namespace trainmem {
namespace {

/// Slots that only carry shapes, axes or bounds (Python ints in PyTorch).
bool isShapeSlot(const std::string &Op, size_t Slot) {
  if (Slot == 0)
    return Op == "ConstantOfShape" || Op == "Range";
  if (Op == "Reshape" || Op == "Expand" || Op == "Tile" || Op == "Unsqueeze" ||
      Op == "Squeeze" || Op == "Split" || Op == "TopK" || Op == "OneHot" || Op == "CumSum" ||
      Op == "Upsample" || Op == "ReduceMean" || Op == "ReduceSum" || Op == "ReduceMax" ||
      Op == "ReduceMin" || Op == "ReduceProd" || Op == "Range")
    return true;
  if (Op == "Slice" || Op == "Pad" || Op == "Resize")
    return Slot >= 1;
  return false;
}

/// Tensors that exist in PyTorch only as Python ints: shape arithmetic feeding shape
/// slots. Computed consumer-first, so a chain Shape -> Gather -> Concat -> Reshape is
/// recognised as a whole.
std::vector<bool> shapeOnlyTensors(const Graph &G) {
  std::vector<bool> ShapeOnly(G.Tensors.size(), false);
  for (auto It = G.TopologicalOrder.rbegin(); It != G.TopologicalOrder.rend(); ++It) {
    const Node &N = G.Nodes[*It];
    for (TensorId Out : N.Outputs) {
      if (Out == NoTensor)
        continue;
      const Tensor &T = G.Tensors[Out];
      if (T.IsGraphOutput || isFloating(T.Type) || T.Consumers.empty())
        continue;
      bool All = true;
      for (NodeId C : T.Consumers) {
        const Node &CN = G.Nodes[C];
        bool OutputsShapeOnly = !CN.Outputs.empty();
        for (TensorId O : CN.Outputs)
          OutputsShapeOnly &= O != NoTensor && ShapeOnly[O];
        bool InShapeSlot = true;
        for (size_t S = 0; S < CN.Inputs.size(); ++S)
          if (CN.Inputs[S] == Out && !isShapeSlot(CN.OpType, S))
            InShapeSlot = false;
        // A Gather of a shape is shape arithmetic; a Gather from a table is not.
        if (CN.OpType == "Gather" && CN.Inputs.size() > 1 && CN.Inputs[1] == Out &&
            CN.Inputs[0] != NoTensor && !ShapeOnly[CN.Inputs[0]] &&
            G.Tensors[CN.Inputs[0]].Producer != NoNode &&
            G.Nodes[G.Tensors[CN.Inputs[0]].Producer].OpType != "Shape")
          InShapeSlot = false;
        All &= InShapeSlot || OutputsShapeOnly;
      }
      ShapeOnly[Out] = All;
    }
  }
  // Shape and Size outputs are always Python-side.
  for (const Node &N : G.Nodes)
    if (N.OpType == "Shape" || N.OpType == "Size")
      for (TensorId Out : N.Outputs)
        if (Out != NoTensor)
          ShapeOnly[Out] = true;
  return ShapeOnly;
}

/// The single consumer of T, or NoNode.
NodeId soleConsumer(const Graph &G, TensorId T) {
  const auto &C = G.Tensors[T].Consumers;
  if (C.size() != 1 || G.Tensors[T].IsGraphOutput)
    return NoNode;
  return C[0];
}

bool isScalarConstant(const Graph &G, TensorId T) {
  return T != NoTensor && G.Tensors[T].Stored && G.Tensors[T].numElements() <= 1;
}

/// A parameter reached directly or through a Transpose (torch.onnx's Linear weight).
bool isWeightOperand(const Graph &G, TensorId T) { return weightParameter(G, T) != NoTensor; }

class SimOpBuilder {
public:
  SimOpBuilder(const Graph &G, bool FuseAttention)
      : G(G), FuseAttention(FuseAttention), Used(G.Nodes.size(), false) {}

  std::vector<SimOp> build() {
    std::vector<bool> ShapeOnly = shapeOnlyTensors(G);
    for (NodeId N : G.TopologicalOrder) {
      if (Used[N])
        continue;
      const Node &Nd = G.Nodes[N];
      bool AllShape = !Nd.Outputs.empty();
      for (TensorId O : Nd.Outputs)
        AllShape &= O == NoTensor || ShapeOnly[O];
      if (AllShape) {
        Used[N] = true;
        continue;
      }
      // A Transpose of a weight is part of the Linear that reads it.
      if (Nd.OpType == "Transpose" && isParameterTensor(G, Nd.Inputs[0])) {
        Used[N] = true;
        continue;
      }
      if ((FuseAttention && tryAttention(N)) || tryGeluErf(N) || tryGeluTanh(N) ||
          tryLayerNorm(N) || trySilu(N) || tryRsqrt(N) || tryLinear(N))
        continue;
      add(Nd.OpType, Nd.Inputs, Nd.Outputs, {N});
    }
    dropUnusedByFusion();
    return std::move(Ops);
  }

private:
  void add(std::string Kind, std::vector<TensorId> Inputs, std::vector<TensorId> Outputs,
           std::vector<NodeId> Nodes) {
    SimOp Op;
    Op.Kind = std::move(Kind);
    Op.Inputs = std::move(Inputs);
    Op.Outputs = std::move(Outputs);
    for (NodeId N : Nodes)
      Used[N] = true;
    Op.Nodes = Nodes;
    Op.Layer = G.Nodes[Nodes.front()].LayerPath;
    Op.Name = G.Nodes[Nodes.front()].Name;
    Ops.push_back(std::move(Op));
  }

  const Node *next(TensorId T, const char *OpType) {
    if (T == NoTensor)
      return nullptr;
    NodeId C = soleConsumer(G, T);
    if (C == NoNode || Used[C] || G.Nodes[C].OpType != OpType)
      return nullptr;
    return &G.Nodes[C];
  }
  NodeId id(const Node *N) { return static_cast<NodeId>(N - G.Nodes.data()); }

  /// x -> Div(x, sqrt2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5): F.gelu (saves x).
  bool tryGeluErf(NodeId N) {
    const Node &Div = G.Nodes[N];
    if ((Div.OpType != "Div" && Div.OpType != "Mul") || Div.Inputs.size() != 2 ||
        !isScalarConstant(G, Div.Inputs[1]))
      return false;
    TensorId X = Div.Inputs[0];
    const Node *Erf = next(Div.Outputs[0], "Erf");
    const Node *Add = Erf ? next(Erf->Outputs[0], "Add") : nullptr;
    const Node *Mul = Add ? next(Add->Outputs[0], "Mul") : nullptr;
    if (!Mul)
      return false;
    std::vector<NodeId> Nodes{N, id(Erf), id(Add), id(Mul)};
    TensorId Out = Mul->Outputs[0];
    bool HasX = Mul->Inputs[0] == X || Mul->Inputs[1] == X;
    if (const Node *Half = next(Out, "Mul")) {
      if (!HasX && (Half->Inputs[0] == X || Half->Inputs[1] == X))
        HasX = true;
      Nodes.push_back(id(Half));
      Out = Half->Outputs[0];
    }
    if (!HasX)
      return false;
    add("Gelu", {X}, {Out}, Nodes);
    return true;
  }

  /// 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))): F.gelu(approximate='tanh').
  bool tryGeluTanh(NodeId N) {
    const Node &Tanh = G.Nodes[N];
    if (Tanh.OpType != "Mul" || Tanh.Inputs.size() != 2 || Tanh.Inputs[0] != Tanh.Inputs[1])
      return false;
    // Walk from x*x to the Tanh and the final products; every step consumes x or the chain.
    TensorId X = Tanh.Inputs[0];
    std::vector<NodeId> Nodes{N};
    TensorId Cur = Tanh.Outputs[0];
    bool SawTanh = false;
    for (int Step = 0; Step < 8; ++Step) {
      NodeId C = soleConsumer(G, Cur);
      if (C == NoNode || Used[C])
        break;
      const Node &CN = G.Nodes[C];
      if (CN.OpType != "Mul" && CN.OpType != "Add" && CN.OpType != "Tanh")
        break;
      SawTanh |= CN.OpType == "Tanh";
      Nodes.push_back(C);
      Cur = CN.Outputs[0];
      // The last Mul by 0.5 (or by x) after the Tanh ends the pattern.
      if (SawTanh && CN.OpType == "Mul") {
        NodeId C2 = soleConsumer(G, Cur);
        if (C2 != NoNode && !Used[C2] && G.Nodes[C2].OpType == "Mul" &&
            (isScalarConstant(G, G.Nodes[C2].Inputs[0]) ||
             isScalarConstant(G, G.Nodes[C2].Inputs[1]))) {
          Nodes.push_back(C2);
          Cur = G.Nodes[C2].Outputs[0];
        }
        add("Gelu", {X}, {Cur}, Nodes);
        return true;
      }
    }
    return false;
  }

  /// ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div [-> Mul w -> Add b]:
  /// LayerNorm exported before opset 17.
  bool tryLayerNorm(NodeId N) {
    const Node &Mean = G.Nodes[N];
    if (Mean.OpType != "ReduceMean")
      return false;
    TensorId X = Mean.Inputs[0];
    const Node *Sub = nullptr;
    for (NodeId C : G.Tensors[Mean.Outputs[0]].Consumers)
      if (G.Nodes[C].OpType == "Sub" && G.Nodes[C].Inputs[0] == X)
        Sub = &G.Nodes[C];
    if (!Sub)
      return false;
    const Node *Pow = nullptr, *Div = nullptr;
    for (NodeId C : G.Tensors[Sub->Outputs[0]].Consumers) {
      if (G.Nodes[C].OpType == "Pow")
        Pow = &G.Nodes[C];
      if (G.Nodes[C].OpType == "Div")
        Div = &G.Nodes[C];
    }
    const Node *Mean2 = Pow ? next(Pow->Outputs[0], "ReduceMean") : nullptr;
    const Node *AddEps = Mean2 ? next(Mean2->Outputs[0], "Add") : nullptr;
    const Node *Sqrt = AddEps ? next(AddEps->Outputs[0], "Sqrt") : nullptr;
    if (!Sqrt || !Div || Div->Inputs[1] != Sqrt->Outputs[0])
      return false;
    std::vector<NodeId> Nodes{N, id(Sub), id(Pow), id(Mean2), id(AddEps), id(Sqrt), id(Div)};
    TensorId Out = Div->Outputs[0], Weight = NoTensor, Bias = NoTensor;
    if (const Node *Mul = next(Out, "Mul")) {
      TensorId W = Mul->Inputs[0] == Out ? Mul->Inputs[1] : Mul->Inputs[0];
      if (isParameterTensor(G, W)) {
        Weight = W;
        Nodes.push_back(id(Mul));
        Out = Mul->Outputs[0];
        if (const Node *Add = next(Out, "Add")) {
          TensorId B = Add->Inputs[0] == Out ? Add->Inputs[1] : Add->Inputs[0];
          if (isParameterTensor(G, B)) {
            Bias = B;
            Nodes.push_back(id(Add));
            Out = Add->Outputs[0];
          }
        }
      }
    }
    add("LayerNormalization", {X, Weight, Bias}, {Out}, Nodes);
    return true;
  }

  /// MatMul(q, k^T) -> [Div/Mul scale] -> [Add mask | Where] -> Softmax -> MatMul(., v):
  /// torch.nn.functional.scaled_dot_product_attention, as transformers runs it.
  bool tryAttention(NodeId N) {
    const Node &QK = G.Nodes[N];
    if (QK.OpType != "MatMul" || QK.Inputs.size() != 2 || isWeightOperand(G, QK.Inputs[1]) ||
        isWeightOperand(G, QK.Inputs[0]) || G.Tensors[QK.Outputs[0]].Shape.size() < 3)
      return false;
    std::vector<NodeId> Nodes{N};
    std::vector<TensorId> Masks;
    TensorId Cur = QK.Outputs[0];
    const Node *Softmax = nullptr;
    for (int Step = 0; Step < 6 && !Softmax; ++Step) {
      NodeId C = soleConsumer(G, Cur);
      if (C == NoNode || Used[C])
        return false;
      const Node &CN = G.Nodes[C];
      if ((CN.OpType == "Div" || CN.OpType == "Mul") && CN.Inputs.size() == 2 &&
          (isScalarConstant(G, CN.Inputs[0]) || isScalarConstant(G, CN.Inputs[1]) ||
           G.Tensors[CN.Inputs[CN.Inputs[0] == Cur ? 1 : 0]].numElements() <= 1)) {
        // a scale
      } else if (CN.OpType == "Add" && CN.Inputs.size() == 2) {
        Masks.push_back(CN.Inputs[0] == Cur ? CN.Inputs[1] : CN.Inputs[0]);
      } else if (CN.OpType == "Where" && CN.Inputs.size() == 3) {
        for (TensorId In : CN.Inputs)
          if (In != Cur)
            Masks.push_back(In);
      } else if (CN.OpType == "Softmax") {
        Softmax = &CN;
      } else {
        return false;
      }
      Nodes.push_back(C);
      Cur = CN.Outputs[0];
    }
    if (!Softmax)
      return false;
    NodeId PVId = soleConsumer(G, Cur);
    // transformers' .to(query.dtype) after its fp32 softmax (a CastLike): inside the kernel.
    if (PVId != NoNode && !Used[PVId] && G.Nodes[PVId].OpType == "CastLike" &&
        G.Nodes[PVId].Inputs.size() == 2 && G.Nodes[PVId].Inputs[0] == Cur) {
      Nodes.push_back(PVId);
      Cur = G.Nodes[PVId].Outputs[0];
      PVId = soleConsumer(G, Cur);
    }
    if (PVId == NoNode || Used[PVId] || G.Nodes[PVId].OpType != "MatMul" ||
        G.Nodes[PVId].Inputs[0] != Cur)
      return false;
    const Node &PV = G.Nodes[PVId];
    Nodes.push_back(PVId);
    std::vector<TensorId> Inputs{QK.Inputs[0], QK.Inputs[1], PV.Inputs[1]};
    // A mask the SDPA path skips is never built (a causal one becomes is_causal=True).
    // Without a mask transformers passes enable_gqa=True instead of repeating the
    // key/value heads (sdpa_attention.use_gqa_in_sdpa): the kernel reads and saves them
    // unrepeated.
    // Where transformers hands SDPA the boolean pattern (Tensor::SdpaTakesBoolPattern), the
    // kernel reads that, and the float mask eager attention adds is not built.
    for (TensorId M : Masks) {
      if (G.Tensors[M].SdpaSkipsMask) {
        Unused.push_back(M);
      } else if (TensorId Pattern = boolPatternOf(M); Pattern != NoTensor) {
        Unused.push_back(M);
        Inputs.push_back(Pattern);
      } else {
        Inputs.push_back(M);
      }
    }
    // SDPA takes k as it is, not the k^T the eager matmul reads (a view either way).
    if (TensorId K = transposedSource(Inputs[1]); K != NoTensor) {
      Unused.push_back(Inputs[1]);
      Inputs[1] = K;
    }
    if (Inputs.size() == 3) {
      TensorId K = repeatKvSource(Inputs[1]);
      TensorId V = repeatKvSource(Inputs[2]);
      if (K != NoTensor && V != NoTensor) {
        Unused.push_back(Inputs[1]);
        Unused.push_back(Inputs[2]);
        Inputs[1] = K;
        Inputs[2] = V;
      }
    }
    add("ScaledDotProductAttention", Inputs, {PV.Outputs[0]}, Nodes);
    return true;
  }

  /// The boolean pattern P of an additive mask M = Where(P, 0, min) that transformers
  /// builds as P itself for SDPA (Tensor::SdpaTakesBoolPattern), else NoTensor.
  TensorId boolPatternOf(TensorId M) const {
    if (!G.Tensors[M].SdpaTakesBoolPattern || G.Tensors[M].Producer == NoNode)
      return NoTensor;
    const Node &W = G.Nodes[G.Tensors[M].Producer];
    if (W.OpType != "Where" || W.Inputs.empty() || W.Inputs[0] == NoTensor ||
        G.Tensors[W.Inputs[0]].Type != DType::Bool)
      return NoTensor;
    return W.Inputs[0];
  }

  /// X where T = Transpose(X) swapping the last two dims, else NoTensor.
  TensorId transposedSource(TensorId T) const {
    if (T == NoTensor || G.Tensors[T].Producer == NoNode)
      return NoTensor;
    const Node &N = G.Nodes[G.Tensors[T].Producer];
    std::vector<int64_t> Perm = N.intsAttr("perm").value_or(std::vector<int64_t>{});
    if (N.OpType != "Transpose" || Perm.size() != 4 || Perm != std::vector<int64_t>{0, 1, 3, 2})
      return NoTensor;
    return N.Inputs[0];
  }

  /// X where T = repeat_kv(X): X[:, :, None].expand(b, kv, n_rep, s, d).reshape(b,
  /// kv * n_rep, s, d), as Unsqueeze -> Expand -> Reshape; else NoTensor.
  TensorId repeatKvSource(TensorId T) const {
    auto producer = [&](TensorId X, const char *OpType) -> const Node * {
      if (X == NoTensor || G.Tensors[X].Producer == NoNode)
        return nullptr;
      const Node &N = G.Nodes[G.Tensors[X].Producer];
      return N.OpType == OpType && !N.Inputs.empty() ? &N : nullptr;
    };
    const Node *R = producer(T, "Reshape");
    const Node *E = R ? producer(R->Inputs[0], "Expand") : nullptr;
    const Node *U = E ? producer(E->Inputs[0], "Unsqueeze") : nullptr;
    if (!U)
      return NoTensor;
    const Tensor &Src = G.Tensors[U->Inputs[0]], &Out = G.Tensors[T];
    if (!Src.ShapeKnown || !Out.ShapeKnown || Src.Shape.size() != 4 || Out.Shape.size() != 4 ||
        Src.Shape[0] != Out.Shape[0] || Src.Shape[2] != Out.Shape[2] ||
        Src.Shape[3] != Out.Shape[3] || Src.Shape[1] <= 0 || Out.Shape[1] % Src.Shape[1] != 0)
      return NoTensor;
    return U->Inputs[0];
  }

  /// Removes the ops that computed only what a fused attention no longer reads (the
  /// causal mask, the repeated key/value heads), walking back from those tensors: an op
  /// goes when no remaining op reads any of its outputs and none is a graph output.
  void dropUnusedByFusion() {
    if (Unused.empty())
      return;
    std::vector<int> Uses(G.Tensors.size(), 0);
    std::vector<int64_t> Producer(G.Tensors.size(), -1);
    for (size_t I = 0; I < Ops.size(); ++I) {
      for (TensorId In : Ops[I].Inputs)
        if (In != NoTensor)
          ++Uses[In];
      for (TensorId O : Ops[I].Outputs)
        if (O != NoTensor)
          Producer[O] = static_cast<int64_t>(I);
    }
    std::vector<bool> Dead(Ops.size(), false);
    std::vector<TensorId> Work = Unused;
    while (!Work.empty()) {
      TensorId T = Work.back();
      Work.pop_back();
      int64_t P = Producer[T];
      if (P < 0 || Dead[P])
        continue;
      bool Read = false;
      for (TensorId O : Ops[P].Outputs)
        Read |= O != NoTensor && (Uses[O] > 0 || G.Tensors[O].IsGraphOutput);
      if (Read)
        continue;
      Dead[P] = true;
      for (TensorId In : Ops[P].Inputs)
        if (In != NoTensor && --Uses[In] == 0)
          Work.push_back(In);
    }
    size_t Kept = 0;
    for (size_t I = 0; I < Ops.size(); ++I) {
      if (Dead[I])
        continue;
      if (Kept != I) // a self-move would empty the op
        Ops[Kept] = std::move(Ops[I]);
      ++Kept;
    }
    Ops.resize(Kept);
  }

  /// Sqrt -> Div(1, .) or Sqrt -> Reciprocal: torch.rsqrt exported, one tensor saved.
  bool tryRsqrt(NodeId N) {
    const Node &Sqrt = G.Nodes[N];
    if (Sqrt.OpType != "Sqrt")
      return false;
    NodeId C = soleConsumer(G, Sqrt.Outputs[0]);
    if (C == NoNode || Used[C])
      return false;
    const Node &Next = G.Nodes[C];
    bool Recip = Next.OpType == "Reciprocal";
    bool OneOver = Next.OpType == "Div" && Next.Inputs.size() == 2 &&
                   Next.Inputs[1] == Sqrt.Outputs[0] && isScalarConstant(G, Next.Inputs[0]);
    if (!Recip && !OneOver)
      return false;
    add("Rsqrt", {Sqrt.Inputs[0]}, {Next.Outputs[0]}, {N, C});
    return true;
  }

  /// x * Sigmoid(x): F.silu, which saves only x.
  bool trySilu(NodeId N) {
    const Node &Sig = G.Nodes[N];
    if (Sig.OpType != "Sigmoid")
      return false;
    TensorId X = Sig.Inputs[0];
    const Node *Mul = next(Sig.Outputs[0], "Mul");
    if (!Mul || (Mul->Inputs[0] != X && Mul->Inputs[1] != X))
      return false;
    add("Silu", {X}, {Mul->Outputs[0]}, {N, id(Mul)});
    return true;
  }

  /// MatMul(x, W) [+ Add(bias)]: F.linear, one addmm/mm with the bias fused in.
  bool tryLinear(NodeId N) {
    const Node &MM = G.Nodes[N];
    if ((MM.OpType != "MatMul" && MM.OpType != "Gemm") || MM.Inputs.size() < 2 ||
        !isWeightOperand(G, MM.Inputs[1]) || isWeightOperand(G, MM.Inputs[0]))
      return false;
    if (MM.OpType == "Gemm") {
      TensorId GemmBias = MM.Inputs.size() > 2 ? MM.Inputs[2] : NoTensor;
      add("Linear", {MM.Inputs[0], MM.Inputs[1], GemmBias}, {MM.Outputs[0]},
          {N});
      return true;
    }
    TensorId Out = MM.Outputs[0], Bias = NoTensor;
    std::vector<NodeId> Nodes{N};
    if (const Node *Add = next(Out, "Add")) {
      TensorId B = Add->Inputs[0] == Out ? Add->Inputs[1] : Add->Inputs[0];
      if (isParameterTensor(G, B) && G.Tensors[B].Shape.size() == 1) {
        Bias = B;
        Nodes.push_back(id(Add));
        Out = Add->Outputs[0];
      }
    }
    add("Linear", {MM.Inputs[0], MM.Inputs[1], Bias}, {Out}, Nodes);
    return true;
  }

  const Graph &G;
  bool FuseAttention;
  std::vector<bool> Used;
  std::vector<SimOp> Ops;
  /// Tensors a fused attention stopped reading (see dropUnusedByFusion).
  std::vector<TensorId> Unused;
};

} // namespace

std::vector<SimOp> buildSimOps(const Graph &G, bool FuseAttention) {
  std::vector<SimOp> Ops = SimOpBuilder(G, FuseAttention).build();
  // A fused op sits where its first node was; an input computed later (an attention
  // mask) must run first. Stable topological order over the ops' tensors: the ready op
  // of lowest index first. (Tables by tensor id and a heap, and the ops moved once the
  // order is known: the std::map, a std::set per op and a copy of every op were most of
  // building a step's structure, which a plan search does for every LoRA setup.)
  std::vector<int64_t> Producer(G.Tensors.size(), -1);
  for (size_t I = 0; I < Ops.size(); ++I)
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor && static_cast<size_t>(O) < Producer.size())
        Producer[O] = static_cast<int64_t>(I);
  std::vector<std::vector<size_t>> Users(Ops.size());
  std::vector<int> Pending(Ops.size(), 0);
  llvm::SmallVector<TensorId, 8> Distinct;
  for (size_t I = 0; I < Ops.size(); ++I) {
    Distinct.assign(Ops[I].Inputs.begin(), Ops[I].Inputs.end());
    llvm::sort(Distinct);
    Distinct.erase(std::unique(Distinct.begin(), Distinct.end()), Distinct.end());
    for (TensorId In : Distinct) {
      if (In == NoTensor || static_cast<size_t>(In) >= Producer.size())
        continue;
      const int64_t P = Producer[In];
      if (P >= 0 && static_cast<size_t>(P) != I) {
        Users[static_cast<size_t>(P)].push_back(I);
        ++Pending[I];
      }
    }
  }
  const std::vector<size_t> Order = smallestIndexFirstOrder<size_t>(
      std::move(Pending), [&](size_t I, auto Visit) {
        for (size_t U : Users[I])
          Visit(U);
      });
  if (Order.size() != Ops.size())
    return Ops;
  std::vector<SimOp> Sorted;
  Sorted.reserve(Ops.size());
  for (size_t I : Order)
    Sorted.push_back(std::move(Ops[I]));
  return Sorted;
}

/// The scratch of a 2-D convolution on the CPU, as torch 1.13 runs it. Every figure
/// below was measured with the profiler's c10 allocator events (1 intra-op thread, an
/// AVX2 CPU: the fixtures' machine; `bench/cpu_conv_probe.py` reproduces every figure).
///
/// Backend: `ConvParams::use_mkldnn` (aten/src/ATen/native/Convolution.cpp) sends fp32
/// convolutions to oneDNN unless a 1x1 stride-1 kernel meets one thread and a batch under
/// 16, or a 3x3-or-smaller kernel meets batch 1 with a small input; bf16 goes to oneDNN
/// only where `mkldnn_bf16_device_check()` holds (AVX-512 BW/VL/DQ), so on AVX2 CPUs it
/// takes THNN's im2col path. Depthwise and grouped convolutions stay with oneDNN.
///
/// THNN (`_slow_conv2d_forward/_backward`): the forward unfolds the input into a
/// [N, Cin*kH*kW, OH*OW] column buffer (none for a 1x1 stride-1 unpadded kernel, which is
/// a view), and the weight gradient builds the same buffer again; the input gradient
/// needs none.
///
/// oneDNN: forward reorders X, W and Y into the blocked layout (X + W + Y beside the
/// output, then the output copy); the data gradient holds dY, W and dX copies; the weight
/// gradient either runs the direct JIT kernel (dY and X copies beside the blocked dW) or,
/// when the input is shorter than the kernel (IH < KH), a GEMM-based kernel whose
/// scratchpad is 4 weights plus one image's im2col buffer plus 256 bytes per thread.
/// An input with fewer than 8 channels (the stem) is read in place, without a copy.
/// Depthwise convolutions follow the same rules per group (MobileNetV2, measured).

std::vector<BlockSpan> repeatedBlockSpans(const Graph &G, const std::vector<SimOp> &Ops) {
  std::vector<std::string> Repeated = repeatedBlocks(G);
  std::set<std::string> Composite(Repeated.begin(), Repeated.end());
  std::vector<BlockSpan> Spans;
  for (size_t I = 0; I < Ops.size();) {
    llvm::StringRef Block = blockPrefix(Ops[I].Layer);
    size_t J = I;
    while (J + 1 < Ops.size() && !Block.empty() && blockPrefix(Ops[J + 1].Layer) == Block)
      ++J;
    if (!Block.empty() && Composite.count(Block.str()))
      Spans.push_back({Block.str(), I, J});
    I = J + 1;
  }
  return Spans;
}

} // namespace trainmem
