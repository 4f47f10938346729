//===- Executor.cpp - set-up, the step loop, loss, backward engine, checkpoints -===//
//
// The passes of one step, in order: forward (op by op in the order buildSimOps gives,
// each op pushing a backward closure when an input requires grad; checkpointed blocks run
// without a tape and push one node that recomputes them), the cross-entropy loss, the
// backward engine (reverse tape order, incoming gradients and saved tensors released when
// a node returns, gradients summed out of place where a tensor has several consumers,
// AccumulateGrad stealing a parameter's first gradient), the optimizer step, zero_grad.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace trainmem::probe {

static llvm::Error errorf(const std::string &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s", Msg.c_str());
}

ExecutorImpl::~ExecutorImpl() {
  // Tensors first (they return their buffers to Alloc), in no particular order.
  Labels = {};
  LabelsView = {};
  FullInputs.clear();
  Persistent.clear();
  ParamValue.clear();
  ParamGrad.clear();
  PendingParamGrad.clear();
  States.clear();
  CheckpointRngStates.clear();
  SignedMapBuf = {};
  UnsignedMapBuf = {};
}

llvm::Error ExecutorImpl::unsupported(const SimOp &Op, const std::string &Why) const {
  return errorf("the executor cannot run node '" + Op.Name + "' (op " + Op.Kind +
                (Op.Layer.empty() ? "" : ", layer " + Op.Layer) + "): " + Why);
}

llvm::Error ExecutorImpl::deviceError(const std::string &Where) {
  std::string Why = Dev.takeError();
  if (Why.empty())
    return llvm::Error::success();
  return errorf("device error in " + Where + ": " + Why);
}

//===----------------------------------------------------------------------===//
// Set-up
//===----------------------------------------------------------------------===//

llvm::Error ExecutorImpl::checkSetup() {
  auto No = [](const std::string &What) {
    return errorf("the executor cannot run " + What);
  };
  if (Setup.Prec != Precision::Fp32)
    return No(std::string("--precision=") + precisionName(Setup.Prec) +
              ": it computes in fp32 (run the step with --precision=fp32)");
  if (Setup.Sharding.active())
    return No("ZeRO/FSDP/offload or several GPUs: it runs one device");
  if (Setup.ZerothOrder)
    return No("--zeroth-order");
  if (Setup.Int8Activations)
    return No("--activation-storage=int8");
  if (Setup.Lora && Setup.Lora->QLora)
    return No("--qlora: the kernels have no NF4 dequantization");
  if (Setup.Lora && Setup.Lora->Dropout > 0)
    return No("--lora-dropout above 0");
  if (Setup.Loss != LossKind::Auto && Setup.Loss != LossKind::CrossEntropy)
    return No(std::string("--loss=") + lossName(Setup.Loss) + ": it runs cross-entropy");
  if (Setup.Checkpoint != "none" && Setup.Checkpoint != "blocks" &&
      !llvm::StringRef(Setup.Checkpoint).startswith("every:"))
    return No("--checkpoint=" + Setup.Checkpoint + ": it runs none, blocks or every:K");
  switch (Setup.Optimizer) {
  case OptimizerKind::AdamW:
  case OptimizerKind::Adam:
  case OptimizerKind::AdamW8bit:
  case OptimizerKind::PagedAdamW8bit:
    break;
  default:
    return No(std::string("--optimizer=") + optimizerName(Setup.Optimizer) +
              ": it runs adamw, adam and adamw-8bit");
  }
  if (Setup.Galore && Setup.Galore->PerLayer && Setup.GradAccum > 1)
    return No("--galore-per-layer with --grad-accum (transformers refuses it: each weight "
              "steps in its gradient hook)");
  if (Setup.Galore && (Setup.Optimizer == OptimizerKind::AdamW8bit ||
                       Setup.Optimizer == OptimizerKind::PagedAdamW8bit))
    return No("--galore-rank with an 8-bit optimizer (galore-torch's GaLoreAdamW8bit)");
  // Every kernel is sized by the graph's shapes; a tensor inference left unknown would be
  // run as a scalar (a Transpose indexed its dims past the end).
  size_t Unknown = 0;
  TensorId First = NoTensor;
  for (TensorId T = 0; T < static_cast<TensorId>(G.Tensors.size()); ++T) {
    const Tensor &X = G.Tensors[T];
    if (X.ShapeKnown || (X.Consumers.empty() && !X.IsGraphOutput))
      continue;
    ++Unknown;
    if (First == NoTensor)
      First = T;
  }
  if (Unknown)
    return No("a graph with tensors of unknown shape (" + std::to_string(Unknown) +
              ", the first '" + G.Tensors[First].Name +
              "'; see the unknown-shape warning, and bind dims with --dim or --input)");
  return llvm::Error::success();
}

XTensor ExecutorImpl::alloc(const Shape &Dims, ElemType Type, MemCategory C,
                            const std::string &Name) {
  XTensor T;
  T.Type = Type;
  T.Dims = Dims;
  T.Strides = contiguousStrides(Dims);
  T.Buf = Alloc.allocate(static_cast<size_t>(numel(Dims)) * elemBytes(Type), C, Name);
  return T;
}

XTensor ExecutorImpl::zeros(const Shape &Dims, ElemType Type, const std::string &Name) {
  XTensor T = alloc(Dims, Type, MemCategory::Temporaries, Name);
  if (T.Buf && T.Buf->bytes())
    Dev.zero(T.Buf->data(), T.Buf->bytes());
  return T;
}

static ElemType elemTypeOf(DType T) {
  if (T == DType::Bool)
    return ElemType::Bool;
  if (isFloating(T))
    return ElemType::F32;
  return ElemType::I64;
}

static Shape effectiveShape(const Tensor &T) { return T.ShapeKnown ? T.Shape : Shape{}; }

llvm::Error ExecutorImpl::allocatePersistent() {
  Persistent.assign(G.Tensors.size(), {});
  ParamOf.assign(G.Tensors.size(), -1);
  Alloc.setPhase("setup");
  Alloc.setOp("parameters");
  uint64_t Draw = 0;
  auto FillNormal = [&](const XTensor &T, float Scale) {
    if (!T.numel())
      return;
    Dev.fillNormal(T.Buf->as<float>(), T.numel(), Options.Seed, Draw);
    Draw += static_cast<uint64_t>(T.numel());
    Dev.scale(T.Buf->as<float>(), T.Buf->as<float>(), Scale, T.numel());
  };
  for (size_t I = 0; I < Census.Parameters.size(); ++I) {
    const CensusParameter &P = Census.Parameters[I];
    if (!isFloating(P.FileType) || P.Quantized)
      return errorf("the executor cannot run parameter '" + P.Name + "': stored as " +
                    std::string(dtypeName(P.FileType)) + (P.Quantized ? " (quantized)" : ""));
    XTensor Value = alloc(P.Shape, ElemType::F32, MemCategory::Weights, P.Name);
    if (!Value.Buf)
      return deviceError("allocating " + P.Name);
    FillNormal(Value, 0.02f);
    ParamValue.push_back(Value);
    for (TensorId T : P.Tensors) {
      const Shape &Dims = G.Tensors[T].Shape;
      ParamOf[T] = static_cast<int>(I);
      if (Dims == P.Shape)
        Persistent[T] = Value;
      else if (Dims.size() == 2 && P.Shape.size() == 2 && Dims[0] == P.Shape[1] &&
               Dims[1] == P.Shape[0])
        // A tied copy stored transposed (the LM head beside its embedding).
        Persistent[T] = Value.view(Dims, {1, P.Shape[1]}, 0);
      else if (numel(Dims) == numel(P.Shape))
        Persistent[T] = Value.view(Dims, contiguousStrides(Dims), 0);
      else
        return errorf("the executor cannot tie '" + G.Tensors[T].Name + "' to parameter '" +
                      P.Name + "': shapes differ");
    }
    // Its transposed views (a tied LM head's Transpose of the embedding) are the
    // parameter too: their gradient is delivered to it.
    for (TensorId T : P.Tensors)
      for (NodeId C : G.Tensors[T].Consumers) {
        const Node &N = G.Nodes[C];
        if (N.OpType != "Transpose" || N.Outputs.empty() || N.Outputs[0] == NoTensor)
          continue;
        std::vector<int64_t> Perm = N.intsAttr("perm").value_or(std::vector<int64_t>{});
        const XTensor &Src = Persistent[T];
        if (Perm.empty())
          for (size_t D = Src.Dims.size(); D-- > 0;)
            Perm.push_back(static_cast<int64_t>(D));
        if (!isPermutation(Perm, Src.Dims.size()))
          continue;
        Shape Dims, Strides;
        for (int64_t D : Perm) {
          Dims.push_back(Src.Dims[D]);
          Strides.push_back(Src.Strides[D]);
        }
        ParamOf[N.Outputs[0]] = static_cast<int>(I);
        Persistent[N.Outputs[0]] = Src.view(Dims, Strides, Src.Offset);
      }
  }
  ParamGrad.assign(Census.Parameters.size(), {});
  PendingParamGrad.assign(Census.Parameters.size(), {});
  States.assign(Census.Parameters.size(), {});
  GradUsesLeft.assign(Census.Parameters.size(), 0);
  Alloc.setOp("buffers");
  for (const CensusBuffer &B : Census.Buffers) {
    if (B.Tensor == NoTensor)
      continue;
    const Tensor &T = G.Tensors[B.Tensor];
    ElemType Type = elemTypeOf(T.Type);
    XTensor Value;
    Value.Type = Type;
    Value.Dims = effectiveShape(T);
    Value.Strides = contiguousStrides(Value.Dims);
    // torch.onnx folds equal per-layer buffers into one constant: the model holds Copies.
    size_t Bytes = std::max<size_t>(static_cast<size_t>(B.bytes()),
                                    static_cast<size_t>(Value.bytes()));
    Value.Buf = Alloc.allocate(Bytes, MemCategory::Weights, B.Name);
    if (Type == ElemType::F32)
      FillNormal(Value, 1.0f);
    else if (Bytes)
      // Masks all true: nothing masked, so no row of a softmax is empty.
      Type == ElemType::Bool ? (void)std::memset(Host.write(*Value.Buf), 1, Value.bytes())
                             : Dev.zero(Value.Buf->data(), Bytes);
    Persistent[B.Tensor] = Value;
  }
  Host.flush();
  // ONNX literals read by the ops (Python numbers and folded tables in PyTorch).
  Alloc.setOp("constants");
  for (const SimOp &Op : Ops)
    for (TensorId In : Op.Inputs) {
      if (In == NoTensor || Persistent[In].defined() || !G.Tensors[In].Stored)
        continue;
      const Tensor &T = G.Tensors[In];
      XTensor Value = alloc(effectiveShape(T), elemTypeOf(T.Type), MemCategory::Constants,
                            T.Name);
      void *Out = Host.write(*Value.Buf);
      for (int64_t E = 0; E < Value.numel(); ++E) {
        double V = T.Payload.From == PayloadRef::Source::Fill ? T.Payload.FillValue : 0.0;
        if (E < static_cast<int64_t>(T.FloatValues.size()))
          V = T.FloatValues[E];
        else if (E < static_cast<int64_t>(T.IntValues.size()))
          V = static_cast<double>(T.IntValues[E]);
        else if (Value.Type == ElemType::Bool)
          V = 1.0;
        storeFromDouble(Out, Value.Type, E, V);
      }
      Persistent[In] = Value;
    }
  Host.flush();
  // The batch, materialised once: ids drawn below the smallest table they index.
  Alloc.setOp("inputs");
  int64_t IdBound = 0;
  for (const SimOp &Op : Ops)
    if (Op.Kind == "Gather" && Op.Inputs.size() == 2 && Op.Inputs[0] != NoTensor &&
        G.Tensors[Op.Inputs[0]].Stored && !G.Tensors[Op.Inputs[0]].Shape.empty()) {
      int64_t Rows = G.Tensors[Op.Inputs[0]].Shape[0];
      IdBound = IdBound ? std::min(IdBound, Rows) : Rows;
    }
  uint64_t Counter = 0;
  int64_t MicroBatches = std::max<int64_t>(Setup.GradAccum, 1);
  FullInputs.assign(G.Tensors.size(), {});
  for (TensorId In : G.Inputs) {
    const Tensor &T = G.Tensors[In];
    Shape Dims = effectiveShape(T);
    if (!Dims.empty())
      Dims[0] *= MicroBatches;
    XTensor Value = alloc(Dims, elemTypeOf(T.Type), MemCategory::Inputs, T.Name);
    if (Value.Type == ElemType::F32) {
      FillNormal(Value, 1.0f);
    } else {
      void *Out = Host.write(*Value.Buf);
      bool Mask = llvm::StringRef(T.Name).contains_insensitive("mask");
      for (int64_t E = 0; E < Value.numel(); ++E)
        storeFromDouble(Out, Value.Type, E,
                        Mask ? 1.0
                             : static_cast<double>(kernels::randomBits(Options.Seed, Counter++) %
                                                   static_cast<uint64_t>(std::max<int64_t>(
                                                       IdBound, 2))));
    }
    FullInputs[In] = Value;
  }
  for (TensorId O : G.Outputs)
    if (isFloating(G.Tensors[O].Type) && G.Tensors[O].ShapeKnown &&
        G.Tensors[O].Shape.size() >= 2) {
      Logits = O;
      break;
    }
  if (Logits == NoTensor)
    return errorf("the executor needs a logits-shaped graph output for its cross-entropy "
                  "loss; the graph has none");
  LossClasses = G.Tensors[Logits].Shape.back();
  LossRows = G.Tensors[Logits].numElements() / std::max<int64_t>(LossClasses, 1);
  Labels = alloc({LossRows * MicroBatches}, ElemType::I64, MemCategory::Inputs, "labels");
  int64_t *L = static_cast<int64_t *>(Host.write(*Labels.Buf));
  for (int64_t R = 0; R < LossRows * MicroBatches; ++R)
    L[R] = static_cast<int64_t>(kernels::randomBits(Options.Seed + 1, static_cast<uint64_t>(R)) %
                                static_cast<uint64_t>(LossClasses));
  Host.flush();
  return deviceError("setting up parameters and batch");
}

void ExecutorImpl::planSegments() {
  SegmentOfOp.assign(Ops.size(), -1);
  if (Setup.Checkpoint == "none")
    return;
  std::vector<int> OpOfNode(G.Nodes.size(), -1);
  for (size_t I = 0; I < Ops.size(); ++I)
    for (NodeId N : Ops[I].Nodes)
      OpOfNode[N] = static_cast<int>(I);
  int64_t Every = 1;
  if (llvm::StringRef(Setup.Checkpoint).startswith("every:"))
    llvm::StringRef(Setup.Checkpoint).drop_front(6).getAsInteger(10, Every);
  int BlockIndex = 0;
  for (const BlockSpan &Span : repeatedBlockSpans(G, Ops)) {
    if (BlockIndex++ % std::max<int64_t>(Every, 1) != 0)
      continue;
    size_t I = Span.First, J = Span.Last;
    Segment S{I, J, {}, {}};
    std::set<TensorId> Produced, Seen;
    for (size_t K = I; K <= J; ++K)
      for (TensorId O : Ops[K].Outputs)
        Produced.insert(O);
    for (size_t K = I; K <= J; ++K)
      for (TensorId In : Ops[K].Inputs)
        if (In != NoTensor && !Produced.count(In) && !G.Tensors[In].Stored &&
            Seen.insert(In).second)
          S.Inputs.push_back(In);
    // Graph::BlockArguments: the block's call holds them though its ops do not read them.
    for (TensorId Arg : G.BlockArguments)
      if (!G.Tensors[Arg].Stored && Seen.insert(Arg).second)
        S.Inputs.push_back(Arg);
    // A tensor escapes when an op outside the block reads it. Consumers that run no op
    // (Shape and the rest of the shape arithmetic PyTorch does on Python ints) do not
    // hold it.
    for (size_t K = I; K <= J; ++K)
      for (TensorId O : Ops[K].Outputs) {
        if (O == NoTensor)
          continue;
        bool Escapes = G.Tensors[O].IsGraphOutput;
        for (NodeId C : G.Tensors[O].Consumers)
          Escapes |= OpOfNode[C] >= 0 && (OpOfNode[C] < static_cast<int>(I) ||
                                          OpOfNode[C] > static_cast<int>(J));
        if (Escapes)
          S.Outputs.push_back(O);
      }
    for (size_t K = I; K <= J; ++K)
      SegmentOfOp[K] = static_cast<int>(Segments.size());
    Segments.push_back(std::move(S));
  }
}

llvm::Error ExecutorImpl::initialize() {
  if (auto E = checkSetup())
    return E;
  bool Fuse = Setup.Attention == AttentionImpl::Sdpa ||
              (Setup.Attention == AttentionImpl::Auto && G.DeclaredFusedAttention);
  // With dropout on the attention probabilities PyTorch's CPU kernel gives way to its math
  // kernel (scores, softmax, dropout and two bmms, each keeping what eager attention
  // keeps): run on the host, the attention runs as the graph's own ops.
  if (!Dev.isCuda() && attentionDropout(G, Setup.Dropout) > 0)
    Fuse = false;
  Ops = buildSimOps(G, Fuse);
  // requires_grad flows forward from the trainable parameters.
  RequiresGrad.assign(G.Tensors.size(), false);
  for (const CensusParameter &P : Census.Parameters)
    for (TensorId T : P.Tensors) {
      RequiresGrad[T] = P.Trainable;
      // A Transpose of a weight runs no op of its own (the Linear or tied LM head reading
      // it absorbs it): its output is the parameter, seen transposed.
      for (NodeId C : G.Tensors[T].Consumers)
        if (G.Nodes[C].OpType == "Transpose" && !G.Nodes[C].Outputs.empty() &&
            G.Nodes[C].Outputs[0] != NoTensor)
          RequiresGrad[G.Nodes[C].Outputs[0]] = P.Trainable;
    }
  for (const SimOp &Op : Ops) {
    bool Any = false;
    for (size_t K = 0; K < Op.Inputs.size(); ++K)
      Any |= carriesGradient(Op, K) && requiresGrad(Op.Inputs[K]);
    for (TensorId O : Op.Outputs)
      if (O != NoTensor)
        RequiresGrad[O] = Any && isFloating(G.Tensors[O].Type);
  }
  if (auto E = allocatePersistent())
    return E;
  planSegments();
  planDropout();
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Helpers the op files share
//===----------------------------------------------------------------------===//

XTensor ExecutorImpl::valueOf(const Env &E, TensorId T) const {
  if (T == NoTensor)
    return {};
  if (Persistent[T].defined())
    return Persistent[T];
  if (E.Values[T].defined())
    return E.Values[T];
  // A Transpose of a parameter is part of the Linear that reads it (buildSimOps): a view.
  NodeId P = G.Tensors[T].Producer;
  if (P != NoNode && G.Nodes[P].OpType == "Transpose" && !G.Nodes[P].Inputs.empty()) {
    XTensor Src = valueOf(E, G.Nodes[P].Inputs[0]);
    if (!Src.defined())
      return {};
    std::vector<int64_t> Perm = G.Nodes[P].intsAttr("perm").value_or(std::vector<int64_t>{});
    if (Perm.empty())
      for (size_t D = Src.Dims.size(); D-- > 0;)
        Perm.push_back(static_cast<int64_t>(D));
    Shape Dims, Strides;
    for (int64_t D : Perm) {
      Dims.push_back(Src.Dims[D]);
      Strides.push_back(Src.Strides[D]);
    }
    return Src.view(Dims, Strides, Src.Offset);
  }
  return {};
}

void ExecutorImpl::copyInto(const XTensor &Dst, const XTensor &Src) {
  const void *PS = Host.read(*Src.Buf);
  void *PD = Host.write(*Dst.Buf);
  size_t W = elemBytes(Src.Type);
  forEachElement(Src.Dims, {Src.Strides, Dst.Strides}, {Src.Offset, Dst.Offset},
                 [&](const std::vector<int64_t> &O) {
                   std::memcpy(static_cast<uint8_t *>(PD) + O[1] * static_cast<int64_t>(W),
                               static_cast<const uint8_t *>(PS) + O[0] * static_cast<int64_t>(W), W);
                 });
  Host.flush();
}

XTensor ExecutorImpl::sumHeadGroups(const XTensor &Gr, int64_t Groups, const std::string &Name) {
  const Shape &D = Gr.Dims;
  XTensor Out = zeros({D[0], D[1] / Groups, D[2], D[3]}, ElemType::F32, Name);
  const void *PG = Host.read(*Gr.Buf);
  void *PO = Host.write(*Out.Buf);
  // The group's heads as a size-Groups dim summed away: Out[b, h / Groups, s, d] += G.
  XTensor Into = Out.view(D, {Out.Strides[0], Out.Strides[1], Out.Strides[2], Out.Strides[3]}, 0);
  Into.Dims = {D[0], D[1] / Groups, Groups, D[2], D[3]};
  Into.Strides = {Out.Strides[0], Out.Strides[1], 0, Out.Strides[2], Out.Strides[3]};
  Shape GS = {Gr.Strides[0], Gr.Strides[1] * Groups, Gr.Strides[1], Gr.Strides[2], Gr.Strides[3]};
  forEachElement(Into.Dims, {GS, Into.Strides}, {Gr.Offset, 0}, [&](const std::vector<int64_t> &Off) {
    storeFromDouble(PO, ElemType::F32, Off[1],
                    loadAsDouble(PO, ElemType::F32, Off[1]) + loadAsDouble(PG, Gr.Type, Off[0]));
  });
  Host.flush();
  return Out;
}

XTensor ExecutorImpl::contiguous(const XTensor &T, const std::string &Name) {
  if (T.isContiguous())
    return T;
  return clone(T, Name);
}

XTensor ExecutorImpl::clone(const XTensor &T, const std::string &Name) {
  XTensor Out = alloc(T.Dims, T.Type, MemCategory::Temporaries, Name);
  if (!Out.numel())
    return Out;
  if (T.isContiguous()) {
    Dev.copy(Out.Buf->data(), static_cast<const uint8_t *>(T.Buf->data()) +
                                  T.Offset * static_cast<int64_t>(elemBytes(T.Type)),
             static_cast<size_t>(Out.bytes()));
    return Out;
  }
  const void *Src = Host.read(*T.Buf);
  void *Dst = Host.write(*Out.Buf);
  size_t W = elemBytes(T.Type);
  int64_t Next = 0;
  forEachElement(T.Dims, {T.Strides}, {T.Offset}, [&](const std::vector<int64_t> &Off) {
    std::memcpy(static_cast<uint8_t *>(Dst) + W * Next++,
                static_cast<const uint8_t *>(Src) + W * Off[0], W);
  });
  Host.flush();
  return Out;
}

const XTensor &ExecutorImpl::save(const XTensor &T) {
  if (T.Buf && Alloc.categoryOf(*T.Buf) == MemCategory::Temporaries)
    Alloc.recategorize(*T.Buf, MemCategory::Activations);
  return T;
}

XTensor ExecutorImpl::wrappedScalar(double V) {
  XTensor T = alloc({}, ElemType::F64, MemCategory::Activations, "wrapped number");
  storeFromDouble(Host.write(*T.Buf), ElemType::F64, 0, V);
  Host.flush();
  return T;
}

bool ExecutorImpl::isScalarConstant(TensorId T) const {
  return T != NoTensor && G.Tensors[T].Stored && G.Tensors[T].numElements() <= 1;
}

double ExecutorImpl::scalarValue(TensorId T) const {
  const Tensor &Tn = G.Tensors[T];
  if (!Tn.FloatValues.empty())
    return Tn.FloatValues[0];
  if (!Tn.IntValues.empty())
    return static_cast<double>(Tn.IntValues[0]);
  return Tn.Payload.From == PayloadRef::Source::Fill ? Tn.Payload.FillValue : 0.0;
}

std::vector<float> ExecutorImpl::readFloats(const XTensor &T) {
  std::vector<float> Out;
  if (!T.defined())
    return Out;
  XTensor C = T.isContiguous() ? T : clone(T, "read-back");
  Out.resize(static_cast<size_t>(C.numel()));
  Dev.copyToHost(Out.data(), C.Buf->as<float>() + C.Offset, Out.size() * 4);
  return Out;
}

void ExecutorImpl::writeFloats(const XTensor &T, const std::vector<float> &V) {
  Dev.copyFromHost(T.Buf->as<float>() + T.Offset, V.data(),
                   std::min<size_t>(V.size(), static_cast<size_t>(T.numel())) * 4);
}

//===----------------------------------------------------------------------===//
// Forward
//===----------------------------------------------------------------------===//

llvm::Error ExecutorImpl::runOp(size_t OpI, Env &E, Tape *T) {
  const SimOp &Op = Ops[OpI];
  Alloc.setOp(Op.Name, Op.Layer);
  std::vector<XTensor> In, Out(Op.Outputs.size());
  for (TensorId I : Op.Inputs)
    In.push_back(valueOf(E, I));
  bool AnyGrad = false;
  for (size_t K = 0; K < Op.Inputs.size(); ++K)
    AnyGrad |= carriesGradient(Op, K) && requiresGrad(Op.Inputs[K]);
  // An op off the loss's gradient path keeps nothing: PyTorch frees its node with its
  // outputs (the simulator's rule).
  if (OffLossPath.empty())
    OffLossPath = opsOffLossPath(G, Ops);
  AnyGrad &= !OffLossPath[OpI];
  BackwardFn Bw;
  BackwardFn *BwPtr = T && AnyGrad ? &Bw : nullptr;
  auto Handled = runNNOp(Op, In, Out, BwPtr);
  if (!Handled)
    return Handled.takeError();
  if (!*Handled) {
    Handled = runBasicOp(Op, In, Out, BwPtr);
    if (!Handled)
      return Handled.takeError();
    if (!*Handled) {
      Handled = runMoeOp(Op, In, Out, BwPtr);
      if (!Handled)
        return Handled.takeError();
      if (!*Handled)
        return unsupported(Op, "no implementation of this op");
    }
  }
  Host.flush();
  if (Options.AfterEachOp)
    Options.AfterEachOp();
  if (auto Err = deviceError(Op.Name))
    return Err;
  if (BwPtr && Bw) {
    TapeNode N;
    N.Name = Op.Name;
    N.Layer = Op.Layer;
    N.Outputs = Op.Outputs;
    for (size_t K = 0; K < Op.Inputs.size(); ++K)
      N.Inputs.push_back(carriesGradient(Op, K) && requiresGrad(Op.Inputs[K]) ? Op.Inputs[K]
                                                                               : NoTensor);
    N.Backward = std::move(Bw);
    T->push_back(std::move(N));
  }
  if (DropoutOps.count(OpI) && !Out.empty() && Out[0].defined()) {
    applyDropout(OpI, Out[0], T);
    Host.flush();
    if (auto Err = deviceError(Op.Name + " dropout"))
      return Err;
  }
  for (size_t K = 0; K < Op.Outputs.size(); ++K)
    if (Op.Outputs[K] != NoTensor && !Persistent[Op.Outputs[K]].defined())
      E.Values[Op.Outputs[K]] = std::move(Out[K]);
  In.clear();
  Out.clear();
  // Python drops a tensor when its last reader has run (graph outputs go to the loss).
  std::vector<TensorId> Read = operandsRead(Op);
  for (TensorId I : std::set<TensorId>(Read.begin(), Read.end()))
    if (I != NoTensor && --E.PendingUses[I] <= 0 && !G.Tensors[I].IsGraphOutput)
      E.Values[I] = {};
  for (TensorId O : Op.Outputs)
    if (O != NoTensor && E.PendingUses[O] <= 0 && !G.Tensors[O].IsGraphOutput)
      E.Values[O] = {};
  return llvm::Error::success();
}

static void countUses(const std::vector<SimOp> &Ops, size_t First, size_t Last, Env &E) {
  for (size_t I = First; I <= Last && I < Ops.size(); ++I) {
    std::vector<TensorId> Read = operandsRead(Ops[I]);
    for (TensorId In : std::set<TensorId>(Read.begin(), Read.end()))
      if (In != NoTensor)
        ++E.PendingUses[In];
  }
}

void ExecutorImpl::fillKvCache(size_t OpI, Env &E) {
  // torch.cat([cached, new], dim=-2) on an empty cache: the key states, then the value
  // states, copied; the layer then rebinds its names to the copies.
  std::vector<std::pair<TensorId, XTensor>> Copies;
  std::vector<TensorId> Read = operandsRead(Ops[OpI]);
  for (TensorId I : std::set<TensorId>(Read.begin(), Read.end())) {
    if (I == NoTensor || !G.Tensors[I].KvCache || !E.Values[I].defined() ||
        llvm::any_of(E.KvCache, [&](const XTensor &C) { return C.Buf == E.Values[I].Buf; }))
      continue;
    Alloc.setOp("DynamicCache.update", Ops[OpI].Layer);
    Copies.emplace_back(I, clone(E.Values[I], G.Tensors[I].Name + " (key/value cache)"));
  }
  for (auto &[I, C] : Copies) {
    E.KvCache.push_back(C);
    E.Values[I] = std::move(C);
  }
}

llvm::Error ExecutorImpl::forward(Env &E, Tape &T) {
  E.Values.assign(G.Tensors.size(), {});
  E.PendingUses.assign(G.Tensors.size(), 0);
  if (!Ops.empty())
    countUses(Ops, 0, Ops.size() - 1, E);
  // Graph::BlockArguments: the model's forward holds them until its last block returns.
  const std::vector<BlockSpan> Spans = repeatedBlockSpans(G, Ops);
  const size_t ArgumentsReleasedAfter =
      Spans.empty() || G.BlockArguments.empty() ? Ops.size() : Spans.back().Last;
  if (ArgumentsReleasedAfter < Ops.size())
    for (TensorId Arg : G.BlockArguments)
      ++E.PendingUses[Arg];
  std::vector<XTensor> SegmentInputs;
  XTensor Rng;
  const bool FillsKvCache = Setup.fillsKvCache(G.TrainingKvCache);
  for (size_t OpI = 0; OpI < Ops.size(); ++OpI) {
    int Seg = SegmentOfOp[OpI];
    if (Seg >= 0 && OpI == Segments[Seg].First) {
      // torch.utils.checkpoint (reentrant): the block's tensor inputs are kept by
      // save_for_backward, the CPU generator state is copied (a host run only: on CUDA
      // the state it keeps lives in host memory), and the block runs under no_grad.
      Alloc.setOp("checkpoint", Ops[OpI].Layer);
      SegmentInputs.clear();
      for (TensorId In : Segments[Seg].Inputs)
        SegmentInputs.push_back(save(valueOf(E, In)));
      if (!Dev.isCuda()) {
        Rng = alloc({CpuRngStateBytes}, ElemType::Bool, MemCategory::Activations,
                    "checkpoint RNG state");
        Dev.zero(Rng.Buf->data(), Rng.Buf->bytes());
        Dev.copyFromHost(Rng.Buf->data(), &RandomOffset, sizeof(RandomOffset));
        // PyTorch 2's non-reentrant checkpoint keeps it in the layer's frame, freed after
        // the layer's backward (below); the reentrant one until the graph goes.
        if (Setup.torchVersionFor(G.SourceFormat) != TorchVersion::V2)
          CheckpointRngStates.push_back(Rng);
      }
      GradEnabled = false;
    }
    // Gradient checkpointing turns the cache off in the layers it wraps.
    if (FillsKvCache && Seg < 0)
      fillKvCache(OpI, E);
    if (auto Err = runOp(OpI, E, GradEnabled ? &T : nullptr))
      return Err;
    if (OpI == ArgumentsReleasedAfter)
      for (TensorId Arg : G.BlockArguments)
        if (--E.PendingUses[Arg] <= 0 && !G.Tensors[Arg].IsGraphOutput)
          E.Values[Arg] = {};
    if (Seg >= 0 && OpI == Segments[Seg].Last) {
      GradEnabled = TapeWanted;
      bool AnyGrad = false;
      for (TensorId O : Segments[Seg].Outputs)
        AnyGrad |= requiresGrad(O);
      if (AnyGrad && TapeWanted) {
        TapeNode N;
        N.Name = "CheckpointFunction " + blockOfLayerPath(Ops[OpI].Layer);
        N.Layer = blockOfLayerPath(Ops[OpI].Layer);
        N.Outputs = Segments[Seg].Outputs;
        for (TensorId In : Segments[Seg].Inputs)
          N.Inputs.push_back(requiresGrad(In) ? In : NoTensor);
        N.Backward = [this, Seg, Saved = SegmentInputs,
                      FrameRng = Setup.torchVersionFor(G.SourceFormat) == TorchVersion::V2
                                     ? Rng
                                     : XTensor()](std::vector<XTensor> &OutGrads) mutable {
          const Segment &S = Segments[Seg];
          Alloc.setOp("checkpoint recompute", Ops[S.First].Layer);
          std::string Phase = Alloc.phase();
          Alloc.setPhase(Phase + " (recompute)");
          XTensor ForkedRng;
          if (!Dev.isCuda()) // fork_rng saves and restores the generator around the rerun
            ForkedRng = alloc({CpuRngStateBytes}, ElemType::Bool, MemCategory::Temporaries,
                              "recompute RNG state");
          Env Local;
          Local.Values.assign(G.Tensors.size(), {});
          Local.PendingUses.assign(G.Tensors.size(), 0);
          for (size_t K = 0; K < S.Inputs.size(); ++K)
            Local.Values[S.Inputs[K]] = Saved[K];
          countUses(Ops, S.First, S.Last, Local);
          // The reentrant CheckpointFunction.backward (torch 1.13) holds the recomputed
          // outputs while it runs backward through them; PyTorch 2's non-reentrant
          // checkpoint (transformers' use_reentrant=False) keeps only what the backward
          // unpacks, so an output nothing inside reads goes at once. (It also stops
          // before ops that save nothing; they run here, their outputs freed at once.)
          if (Setup.torchVersionFor(G.SourceFormat) != TorchVersion::V2)
            for (TensorId O : S.Outputs)
              ++Local.PendingUses[O];
          Tape Inner;
          for (size_t I = S.First; I <= S.Last; ++I)
            if (auto Err = runOp(I, Local, &Inner)) {
              BackwardError = llvm::toString(std::move(Err));
              return std::vector<XTensor>(S.Inputs.size());
            }
          ForkedRng = {};
          Alloc.setPhase(Phase);
          // torch.autograd.backward(outputs, grads): the incoming gradients stay referenced
          // by CheckpointFunction.backward's arguments until it returns.
          // (PyTorch 2's non-reentrant checkpoint has no such node: the gradients are
          // handed on, not held.)
          const bool Holds = Setup.torchVersionFor(G.SourceFormat) != TorchVersion::V2;
          std::map<TensorId, XTensor> Grads;
          for (size_t K = 0; K < S.Outputs.size() && K < OutGrads.size(); ++K)
            if (OutGrads[K].defined())
              Grads[S.Outputs[K]] = Holds ? OutGrads[K] : std::move(OutGrads[K]);
          if (auto Err = runBackward(Inner, Grads))
            BackwardError = llvm::toString(std::move(Err));
          Local.Values.clear();
          std::vector<XTensor> InGrads(S.Inputs.size());
          for (size_t K = 0; K < S.Inputs.size(); ++K)
            if (auto It = Grads.find(S.Inputs[K]); It != Grads.end())
              InGrads[K] = std::move(It->second);
          FrameRng = {}; // the layer's frame goes with its backward (PyTorch 2)
          return InGrads;
        };
        T.push_back(std::move(N));
      }
      SegmentInputs.clear();
      Rng = {};
    }
  }
  return llvm::Error::success();
}

llvm::Expected<MeasuredStep> ExecutorImpl::measure() {
  MeasuredStep M;
  M.Source = Dev.isCuda() ? "cupti" : "host-allocator";
  M.Device = Dev.name();
  int Steps = std::max(Options.Steps, 1);
  for (int S = 0; S < Steps; ++S) {
    if (S == Steps - 1) {
      Alloc.setPhase("start");
      Alloc.setOp("step start");
      Alloc.resetPeak();
      Alloc.recordTimeline(Options.RecordTimeline);
      if (Options.BeforeMeasuredStep)
        Options.BeforeMeasuredStep();
    }
    auto Loss = step(true);
    if (!Loss)
      return Loss.takeError();
    M.Losses.push_back(*Loss);
  }
  Alloc.recordTimeline(false);
  M.StepsRun = Steps;
  M.Peak = Alloc.peak();
  M.AtPeak = Alloc.peakByCategory();
  M.MaxByCategory = Alloc.maxByCategory();
  M.SavedAtEndOfForward = SavedAtEndOfForward;
  M.PeakPhase = Alloc.peakPhase();
  M.PeakOp = Alloc.peakOp();
  for (const AllocationRecord &R : Alloc.liveAtPeak()) {
    if (M.TopTensors.size() == 10)
      break;
    TensorSummary T;
    T.Name = R.Name;
    T.Category = categoryName(R.Category);
    T.Layer = R.Layer;
    T.Op = R.Op;
    T.Bytes = R.Bytes;
    M.TopTensors.push_back(std::move(T));
  }
  M.Timeline = Alloc.timeline();
  M.ConstantBytes = Alloc.constantBytes();
  M.Allocations = Alloc.allocations();
  if (Steps == 1)
    M.Notes.push_back("one step measured: optimizer states are created inside it, as in "
                      "PyTorch's first step");
  return M;
}

//===----------------------------------------------------------------------===//
// Executor
//===----------------------------------------------------------------------===//

Executor::Executor(std::unique_ptr<ExecutorImpl> Impl) : Impl(std::move(Impl)) {}
Executor::~Executor() = default;
Executor::Executor(Executor &&) noexcept = default;
Executor &Executor::operator=(Executor &&) noexcept = default;

llvm::Expected<Executor> Executor::create(const Graph &G, const TrainingSetup &Setup,
                                          const ParameterCensus &Census, kernels::Device &Dev,
                                          const ExecutorOptions &Options) {
  auto Impl = std::make_unique<ExecutorImpl>(G, Setup, Census, Dev, Options);
  if (auto Err = Impl->initialize())
    return Err;
  return Executor(std::move(Impl));
}

llvm::Expected<float> Executor::step(bool RunOptimizer) { return Impl->step(RunOptimizer); }
llvm::Expected<float> Executor::lossOnly() { return Impl->step(false, false); }
llvm::Expected<MeasuredStep> Executor::measure() { return Impl->measure(); }

std::vector<float> Executor::readParameter(size_t I) {
  return I < Impl->ParamValue.size() ? Impl->readFloats(Impl->ParamValue[I])
                                     : std::vector<float>{};
}

void Executor::writeParameter(size_t I, const std::vector<float> &Values) {
  if (I < Impl->ParamValue.size())
    Impl->writeFloats(Impl->ParamValue[I], Values);
}

std::vector<float> Executor::readGradient(size_t I) {
  return I < Impl->ParamGrad.size() ? Impl->readFloats(Impl->ParamGrad[I])
                                    : std::vector<float>{};
}

llvm::Expected<MeasuredStep> executeTrainingSteps(const Graph &G, const TrainingSetup &Setup,
                                                  const ParameterCensus &Census,
                                                  kernels::Device &Dev,
                                                  const ExecutorOptions &Options) {
  auto E = Executor::create(G, Setup, Census, Dev, Options);
  if (!E)
    return E.takeError();
  return E->measure();
}

} // namespace trainmem::probe
