//===- OpMemoryRules.cpp - what each op allocates and saves, as PyTorch does -----===//
//
// Saved-for-backward rules follow PyTorch's tools/autograd/derivatives.yaml: an op
// saves an operand only when the gradient of another input needs it (mul saves `other`
// for self's gradient and `self` for other's), activations save their result when the
// derivative is written in terms of it (relu, sigmoid, tanh, softmax, sqrt, exp,
// reciprocal) and their input otherwise (gelu, silu, erf, log, pow, hardtanh).
// Normalisations save their statistics (LayerNorm: mean and rstd per row; BatchNorm in
// training: save_mean and save_invstd per channel) in fp32.
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

bool isParameter(const Graph &G, TensorId T) {
  return T != NoTensor && G.Tensors[T].Stored && G.Tensors[T].Kind == TensorKind::Parameter;
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
bool isWeightOperand(const Graph &G, TensorId T) {
  if (isParameter(G, T))
    return true;
  if (T == NoTensor || G.Tensors[T].Producer == NoNode)
    return false;
  const Node &P = G.Nodes[G.Tensors[T].Producer];
  return P.OpType == "Transpose" && isParameter(G, P.Inputs[0]);
}

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
      if (Nd.OpType == "Transpose" && isParameter(G, Nd.Inputs[0])) {
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
      if (isParameter(G, W)) {
        Weight = W;
        Nodes.push_back(id(Mul));
        Out = Mul->Outputs[0];
        if (const Node *Add = next(Out, "Add")) {
          TensorId B = Add->Inputs[0] == Out ? Add->Inputs[1] : Add->Inputs[0];
          if (isParameter(G, B)) {
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
    for (TensorId M : Masks) {
      if (G.Tensors[M].SdpaSkipsMask)
        Unused.push_back(M);
      else
        Inputs.push_back(M);
    }
    if (Inputs.size() == 3) {
      TensorId K = repeatKvSource(transposedSource(Inputs[1]));
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
      if (isParameter(G, B) && G.Tensors[B].Shape.size() == 1) {
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

bool isViewOp(llvm::StringRef K) {
  static constexpr llvm::StringLiteral Views[] = {"Transpose", "Reshape", "Squeeze",
                                                  "Unsqueeze", "Flatten",  "Identity",
                                                  "Split",     "Slice",    "Expand"};
  return llvm::is_contained(Views, K);
}

/// A Python scalar in PyTorch (saved as a number, not a tensor).
bool isScalarConstantTensor(const RuleContext &Ctx, TensorId T) {
  if (T == NoTensor)
    return true;
  const Tensor &Tn = Ctx.G.Tensors[T];
  return Tn.numElements() <= 1 && (Tn.Stored || !Tn.FloatValues.empty() || !Tn.IntValues.empty());
}

} // namespace

bool sdpaRunsMathKernel(const RuleContext &Ctx) {
  return Ctx.Cpu && Ctx.AttentionDropout > 0;
}

/// The packed storage of the parameter a linear reads as its weight, if quantized.
const QuantizedStorage *quantizedWeight(const RuleContext &Ctx, TensorId T) {
  if (T == NoTensor)
    return nullptr;
  TensorId P = T;
  if (Ctx.G.Tensors[T].Producer != NoNode) {
    const Node &N = Ctx.G.Nodes[Ctx.G.Tensors[T].Producer];
    if (N.OpType != "Transpose")
      return nullptr;
    P = N.Inputs[0];
  }
  auto It = Ctx.G.Quantized.find(P);
  return It == Ctx.G.Quantized.end() ? nullptr : &It->second;
}

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
static void cpuConvolutionScratch(const SimOp &Op, const RuleContext &Ctx, bool NeedsInput,
                                  bool NeedsWeight, OpMemoryRule &R) {
  const Node &N = Ctx.G.Nodes[Op.Nodes.front()];
  TensorId XT = Op.Inputs[0], WT = Op.Inputs[1], YT = Op.Outputs[0];
  const auto &XS = Ctx.G.Tensors[XT].Shape, &WS = Ctx.G.Tensors[WT].Shape,
             &YS = Ctx.G.Tensors[YT].Shape;
  int64_t X = Ctx.bytes(XT), W = Ctx.bytes(WT), Y = Ctx.bytes(YT);
  int64_t Group = N.intAttr("group").value_or(1);
  bool Conv2d = Op.Kind == "Conv" && XS.size() == 4 && WS.size() == 4 && YS.size() == 4;
  if (!Conv2d) {
    // Other ranks and transposed convolutions: the oneDNN reorders, as for 2-D.
    R.ForwardTransient = std::max(X + W, Y);
    R.BackwardTransient = NeedsInput ? std::max(X + Y, W) : std::max(Y, W);
    return;
  }
  int64_t Batch = XS[0], Cin = XS[1], IH = XS[2], IW = XS[3];
  int64_t KH = WS[2], KW = WS[3], OH = YS[2], OW = YS[3];
  auto Strides = N.intsAttr("strides").value_or(std::vector<int64_t>{1, 1});
  auto Dilations = N.intsAttr("dilations").value_or(std::vector<int64_t>{1, 1});
  auto Pads = N.intsAttr("pads").value_or(std::vector<int64_t>{0, 0, 0, 0});
  bool Strided = llvm::any_of(Strides, [](int64_t S) { return S != 1; });
  bool Dilated = llvm::any_of(Dilations, [](int64_t D) { return D != 1; });
  bool Padded = llvm::any_of(Pads, [](int64_t P) { return P != 0; });
  DType Compute = Ctx.AutocastType.value_or(Ctx.TypeOf[XT]);
  int64_t Elt = dtypeBytes(Compute, 1);
  bool Bf16 = Compute == DType::BFloat16;
  bool Mkldnn;
  if (Bf16)
    Mkldnn = Ctx.CpuHasAvx512Bf16;
  else
    Mkldnn = (Strided || Dilated || Batch >= 16 || KH != 1 || KW != 1 || Ctx.CpuThreads > 1) &&
             (Group > 1 || (KH > 3 && KW > 3) || Batch > 1 || Batch * Cin * IH * IW > 20480);
  if (!Mkldnn && Group == 1) {
    bool Unfolds = KH != 1 || KW != 1 || Strided || Dilated || Padded;
    int64_t Columns = Unfolds ? Batch * Cin * KH * KW * OH * OW * Elt : 0;
    R.ForwardTransient = Columns;
    R.BackwardTransient = NeedsWeight ? Columns : 0;
    return;
  }
  bool Blocked = Cin >= 8;
  int64_t XCopy = Blocked ? X : 0;
  R.ForwardTransient = std::max(XCopy + W, Y);
  // The simulator holds the scratch beside the new gradients, so the scratch is the
  // backward's peak above its start less the gradients it keeps.
  int64_t DataPeak = NeedsInput ? XCopy + Y + W : 0;
  int64_t WeightPeak = 0;
  if (NeedsWeight) {
    int64_t Held = NeedsInput ? X : 0; // dX exists by then
    if (IH < KH) {
      int64_t Im2col = Cin / Group * KH * KW * OH * OW * Elt;
      int64_t Scratchpad = Ctx.CpuThreads * (4 * W + Im2col) + 256;
      WeightPeak = Held + W + std::max(Scratchpad, W);
    } else {
      WeightPeak = Held + std::max(Y + XCopy + W, 2 * W);
    }
  }
  int64_t Kept = (NeedsInput ? X : 0) + (NeedsWeight ? W : 0);
  R.BackwardTransient = std::max<int64_t>(0, std::max(DataPeak, WeightPeak) - Kept);
}

OpMemoryRule memoryRuleFor(const SimOp &Op, const RuleContext &Ctx) {
  OpMemoryRule R;
  // A StringRef: its comparisons with literals check the length first (the rules are
  // looked up for every op of every simulated step).
  const llvm::StringRef K = Op.Kind;
  size_t NIn = Op.Inputs.size();
  R.Outputs.assign(Op.Outputs.size(), OutputKind::New);
  R.GradInputBytes.assign(NIn, 0);
  R.GradIsPassThrough.assign(NIn, false);
  auto Needs = [&](size_t I) {
    return I < NIn && Op.Inputs[I] != NoTensor && Ctx.RequiresGrad[Op.Inputs[I]];
  };
  auto In = [&](size_t I) { return I < NIn ? Op.Inputs[I] : NoTensor; };
  auto SaveIn = [&](size_t I) { R.Saved.push_back({SavedItem::Input, static_cast<int>(I), 0, ""}); };
  auto SaveOut = [&](size_t I) { R.Saved.push_back({SavedItem::Output, static_cast<int>(I), 0, ""}); };
  auto SaveExtra = [&](int64_t Bytes, const char *Name) {
    R.Saved.push_back({SavedItem::Extra, 0, Bytes, Name});
  };
  // Every input needing a gradient gets one of its own size unless the rule says else.
  for (size_t I = 0; I < NIn; ++I)
    if (Needs(I))
      R.GradInputBytes[I] = Ctx.bytes(In(I));

  if (isViewOp(K)) {
    R.Outputs.assign(Op.Outputs.size(), OutputKind::ViewOfInput0);
    // Views hand back a view of the output gradient, except where PyTorch materialises
    // the input-sized gradient: Split (cat of the pieces), Slice (zeros + copy) and
    // Expand (a sum back to the input shape).
    if (K != "Split" && K != "Slice" && K != "Expand")
      R.GradIsPassThrough[0] = true;
    for (size_t I = 1; I < NIn; ++I)
      R.GradInputBytes[I] = 0;
    return R;
  }
  if (K == "ScaledDotProductAttention") {
    // Flash / memory-efficient SDPA (aten::_scaled_dot_product_*_attention) saves q, k, v,
    // its output and a fp32 log-sum-exp per query row; dropout draws from a Philox seed
    // instead of keeping a mask. The backward accumulates dq in fp32 and keeps a per-row
    // fp32 delta beside the three input gradients.
    const Tensor &Q = Ctx.G.Tensors[In(0)];
    int64_t Rows = Q.Shape.size() >= 2 ? Q.numElements() / std::max<int64_t>(Q.Shape.back(), 1)
                                       : Q.numElements();
    if (sdpaRunsMathKernel(Ctx) && Q.Shape.size() == 4) {
      // The CPU kernel takes no dropout: _scaled_dot_product_attention_math runs (measured
      // on torch 2.15). q and k scaled by sqrt(scale) (copies the q.k^T bmm keeps), the
      // softmax (kept), dropout's mask in the input dtype and its output (the second bmm
      // keeps it) and a contiguous v; the scores exist until the softmax replaces them.
      // It computes in fp32 whatever the inputs' dtype (bf16 inputs are upcast first).
      int64_t Probs = dtypeBytes(DType::Float32, Rows * Q.Shape[2]);
      int64_t QBytes = dtypeBytes(DType::Float32, Ctx.elements(In(0)));
      SaveExtra(QBytes, "q (scaled)");
      SaveExtra(QBytes, "k (scaled)");
      SaveExtra(Probs, "attention probabilities");
      SaveExtra(Probs, "attention dropout mask");
      SaveExtra(Probs, "attention probabilities (dropped)");
      SaveExtra(QBytes, "v (contiguous)");
      for (size_t I = 3; I < NIn; ++I)
        R.GradInputBytes[I] = 0;
      R.ForwardTransient = Probs;
      // Backward: the gradients of the dropped and of the kept probabilities.
      R.BackwardTransient = 2 * Probs;
      return R;
    }
    SaveIn(0);
    SaveIn(1);
    SaveIn(2);
    SaveOut(0);
    SaveExtra(Rows * 4, "logsumexp");
    for (size_t I = 3; I < NIn; ++I) {
      R.GradInputBytes[I] = 0;
      if (In(I) != NoTensor && isFloating(Ctx.TypeOf[In(I)]) && Ctx.elements(In(I)) > 1)
        SaveIn(I); // an additive attention bias is kept for the backward
    }
    R.BackwardTransient = Ctx.elements(In(0)) * 4 + Rows * 4;
    return R;
  }
  if (K == "Linear" || K == "Gemm") {
    // addmm/mm: saves the input for the weight's gradient; the weight itself is a
    // parameter (no new memory) for the input's gradient.
    if (Needs(1))
      SaveIn(0);
    if (Needs(0))
      SaveIn(1);
    // A 4-bit weight (bitsandbytes Linear4bit) is dequantized to the compute dtype for
    // the forward matmul and again for the input's gradient.
    if (const QuantizedStorage *Q = quantizedWeight(Ctx, In(1))) {
      int64_t Dequantized = dtypeBytes(Q->ComputeType, Ctx.elements(In(1)));
      R.ForwardTransient = Dequantized;
      if (Needs(0))
        R.BackwardTransient = Dequantized;
    }
    return R;
  }
  if (K == "MatMul") {
    if (Needs(1))
      SaveIn(0);
    if (Needs(0))
      SaveIn(1);
    return R;
  }
  if (K == "Add" || K == "Sum") {
    for (size_t I = 0; I < NIn; ++I)
      if (Needs(I) && Ctx.elements(In(I)) == Ctx.elements(Op.Outputs[0]))
        R.GradIsPassThrough[I] = true; // AddBackward returns grad itself
    return R;
  }
  if (K == "Sub") {
    if (Needs(0) && Ctx.elements(In(0)) == Ctx.elements(Op.Outputs[0]))
      R.GradIsPassThrough[0] = true;
    return R;
  }
  // A Python number operand becomes an 8-byte float64 "wrapped number" tensor, which
  // MulBackward/DivBackward keep when the other operand needs a gradient.
  auto SaveScalar = [&]() { SaveExtra(8, "wrapped scalar"); };
  if (K == "Mul") {
    if (Needs(0))
      isScalarConstantTensor(Ctx, In(1)) ? SaveScalar() : SaveIn(1);
    if (Needs(1))
      isScalarConstantTensor(Ctx, In(0)) ? SaveScalar() : SaveIn(0);
    return R;
  }
  if (K == "Div") {
    if (Needs(0))
      isScalarConstantTensor(Ctx, In(1)) ? SaveScalar() : SaveIn(1);
    if (Needs(1)) {
      SaveIn(0);
      SaveIn(1);
    }
    return R;
  }
  if (K == "Pow") {
    SaveIn(0);
    R.BackwardTransient = Ctx.bytes(In(0)); // grad * exp * x.pow(exp - 1)
    return R;
  }
  if (K == "Relu" || K == "Sigmoid" || K == "Tanh" || K == "Softmax" || K == "LogSoftmax" ||
      K == "Sqrt" || K == "Exp" || K == "Reciprocal" || K == "Rsqrt") {
    SaveOut(0);
    return R;
  }
  if (K == "Gelu" || K == "Silu" || K == "Erf" || K == "Log" || K == "LeakyRelu" ||
      K == "Clip" || K == "HardSigmoid" || K == "HardSwish" || K == "Cos" || K == "Sin" ||
      K == "Elu" || K == "Selu" || K == "Softplus" || K == "Mish") {
    SaveIn(0);
    return R;
  }
  if (K == "ReduceMean" || K == "GlobalAveragePool") {
    // mean(dim), and adaptive_avg_pool2d to 1x1, which runs as mean(-1, -2): measured on
    // torch 1.13, MeanBackward1 keeps its input alive (RMSNorm's pow output is freed only
    // there), so it is charged as saved; 2.x saves the input's sizes and numel instead
    // (measured on 2.15: no tensor saved, the pow output freed at once).
    if (!Ctx.Torch2)
      SaveIn(0);
    return R;
  }
  if ((K == "Cast" || K == "CastLike") && In(0) != NoTensor && !Op.Outputs.empty() &&
      Op.Outputs[0] != NoTensor && Ctx.TypeOf[In(0)] == Ctx.TypeOf[Op.Outputs[0]]) {
    // `.to(dtype)` to the dtype the tensor already has returns the tensor itself.
    R.Alias = true;
    R.Outputs.assign(Op.Outputs.size(), OutputKind::ViewOfInput0);
    R.GradIsPassThrough[0] = true;
    for (size_t I = 1; I < NIn; ++I)
      R.GradInputBytes[I] = 0;
    return R;
  }
  if (K == "CastLike") {
    R.GradInputBytes[1] = 0; // no gradient flows to the tensor whose dtype it takes
    return R;
  }
  if (K == "Neg" || K == "Cast" || K == "Concat" || K == "ReduceSum" ||
      K == "Pad" || K == "Resize" || K == "Upsample" || K == "Not" || K == "Equal" ||
      K == "Less" || K == "Greater" || K == "LessOrEqual" || K == "GreaterOrEqual" ||
      K == "Range" || K == "ConstantOfShape" || K == "Abs" || K == "Sign") {
    if (K == "Concat")
      std::fill(R.GradIsPassThrough.begin(), R.GradIsPassThrough.end(), true);
    return R;
  }
  if (K == "Where") {
    SaveIn(0);
    return R;
  }
  if (K == "Gather") {
    // Embedding: saves the indices; its backward builds a dense [V, D] gradient.
    SaveIn(1);
    R.GradInputBytes[1] = 0;
    return R;
  }
  if (K == "LayerNormalization") {
    // native_layer_norm saves input, weight, bias and fp32 mean and rstd per row.
    TensorId X = In(0);
    const Tensor &T = Ctx.G.Tensors[X];
    int64_t Rows = T.Shape.empty() ? 1 : T.numElements() / T.Shape.back();
    // CUDA keeps the statistics in the accumulation type (fp32); the CPU kernel in the
    // input's dtype.
    int64_t StatBytes = Ctx.Cpu ? dtypeBytes(Ctx.TypeOf[X], 1) : 4;
    SaveIn(0);
    SaveExtra(Rows * StatBytes, "mean");
    SaveExtra(Rows * StatBytes, "rstd");
    return R;
  }
  if (K == "BatchNormalization") {
    TensorId X = In(0);
    const Tensor &T = Ctx.G.Tensors[X];
    int64_t Channels = T.Shape.size() > 1 ? T.Shape[1] : 1;
    // The CPU kernel keeps save_mean/save_invstd in the parameters' dtype (fp32 weights
    // under autocast, bf16 in a pure-bf16 model); CUDA in fp32.
    TensorId Wt = In(1) != NoTensor ? In(1) : X;
    int64_t StatBytes = Ctx.Cpu ? dtypeBytes(Ctx.TypeOf[Wt], 1) : 4;
    SaveIn(0);
    SaveExtra(Channels * StatBytes, "save_mean");
    SaveExtra(Channels * StatBytes, "save_invstd");
    // The CPU batch_norm_backward kernel fills an input-sized scratch first.
    if (Ctx.Cpu)
      R.BackwardTransient = Ctx.bytes(X);
    for (size_t I = 3; I < NIn; ++I)
      R.GradInputBytes[I] = 0;
    return R;
  }
  if (K == "Conv" || K == "ConvTranspose") {
    // convolution_backward is one formula for input, weight and bias, so autograd keeps
    // both operands whenever the node exists (unlike mm, whose grads are separate).
    SaveIn(0);
    SaveIn(1);
    if (Ctx.Cpu)
      cpuConvolutionScratch(Op, Ctx, Needs(0), Needs(1), R);
    return R;
  }
  if (K == "MaxPool") {
    SaveIn(0);
    SaveExtra(Ctx.elements(Op.Outputs[0]) * 8, "indices");
    return R;
  }
  if (K == "AveragePool" || K == "ReduceMax" || K == "ReduceMin") {
    SaveIn(0);
    return R;
  }
  if (K == "Dropout") {
    // CUDA's native_dropout keeps a bool mask; the CPU kernel a mask in the input dtype.
    int64_t N = Ctx.elements(In(0));
    SaveExtra(Ctx.DropoutMaskIsBool ? N : Ctx.bytes(In(0)), "dropout_mask");
    return R;
  }
  // Unknown op: assume it keeps every activation input (the conservative choice).
  for (size_t I = 0; I < NIn; ++I)
    if (In(I) != NoTensor && !Ctx.G.Tensors[In(I)].Stored)
      SaveIn(I);
  return R;
}

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
