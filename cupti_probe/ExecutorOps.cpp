//===- ExecutorOps.cpp - views, elementwise ops, embedding, reductions ---------===//
//
// Ops the executor runs as PyTorch does, each with the backward closure of its
// derivatives.yaml formula, holding only what that formula reads: views share their
// input's storage (reshape copies when the strides do not allow a view, as
// TensorUtils' computeStride decides); add and sub keep nothing; mul and div keep the
// other operand (a Python scalar as an 8-byte float64 wrapped number); pow, erf and
// mean keep their input; sqrt, rsqrt, sigmoid, tanh, exp and relu their output; where
// keeps its condition; embedding keeps its indices and builds a dense gradient.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include <cmath>
#include <cstring>

namespace trainmem::probe {

//===----------------------------------------------------------------------===//
// Elementwise helpers
//===----------------------------------------------------------------------===//

/// A pointwise op's output, laid out as TensorIterator lays it out: like the first
/// operand of the output's shape (a transposed input gives a transposed output).
XTensor ExecutorImpl::pointwiseOutput(std::initializer_list<const XTensor *> Operands,
                                      const Shape &Out, ElemType OutType,
                                      const std::string &Name) {
  XTensor R = alloc(Out, OutType, MemCategory::Temporaries, Name);
  for (const XTensor *A : Operands)
    if (A->Dims == Out) {
      R.Strides = denseStridesLike(*A);
      break;
    }
  return R;
}

XTensor ExecutorImpl::binary(const XTensor &A, const XTensor &B, const Shape &Out,
                             ElemType OutType, const std::function<double(double, double)> &F,
                             const std::string &Name) {
  XTensor R = pointwiseOutput({&A, &B}, Out, OutType, Name);
  if (!R.numel())
    return R;
  const void *PA = Host.read(*A.Buf), *PB = Host.read(*B.Buf);
  void *PR = Host.write(*R.Buf);
  forEachElement(Out, {broadcastStrides(A, Out), broadcastStrides(B, Out), R.Strides},
                 {A.Offset, B.Offset, 0}, [&](const std::vector<int64_t> &O) {
                   storeFromDouble(PR, OutType, O[2],
                                   F(loadAsDouble(PA, A.Type, O[0]), loadAsDouble(PB, B.Type, O[1])));
                 });
  Host.flush();
  return R;
}

XTensor ExecutorImpl::unary(const XTensor &A, ElemType OutType,
                            const std::function<double(double)> &F, const std::string &Name) {
  XTensor R = pointwiseOutput({&A}, A.Dims, OutType, Name);
  if (!R.numel())
    return R;
  const void *PA = Host.read(*A.Buf);
  void *PR = Host.write(*R.Buf);
  forEachElement(A.Dims, {A.Strides, R.Strides}, {A.Offset, 0}, [&](const std::vector<int64_t> &O) {
    storeFromDouble(PR, OutType, O[1], F(loadAsDouble(PA, A.Type, O[0])));
  });
  Host.flush();
  return R;
}

XTensor ExecutorImpl::sumToShape(const XTensor &Grad, const Shape &Target,
                                 const std::string &Name) {
  if (Grad.Dims == Target)
    return Grad;
  if (numel(Grad.Dims) == numel(Target)) {
    XTensor C = contiguous(Grad, Name);
    return C.view(Target, contiguousStrides(Target), C.Offset);
  }
  XTensor R = zeros(Target, ElemType::F32, Name);
  const float *PG = static_cast<const float *>(Host.read(*Grad.Buf));
  float *PR = static_cast<float *>(Host.write(*R.Buf));
  forEachElement(Grad.Dims, {Grad.Strides, broadcastStrides(R, Grad.Dims)}, {Grad.Offset, 0},
                 [&](const std::vector<int64_t> &O) { PR[O[1]] += PG[O[0]]; });
  Host.flush();
  return R;
}

static bool isView(const std::string &K) {
  return K == "Reshape" || K == "Flatten" || K == "Squeeze" || K == "Unsqueeze" ||
         K == "Identity";
}

/// ONNX axis (possibly negative) to a dim index.
static size_t axisOf(int64_t Axis, size_t Rank) {
  return static_cast<size_t>(Axis < 0 ? Axis + static_cast<int64_t>(Rank) : Axis);
}

llvm::Expected<bool> ExecutorImpl::runBasicOp(const SimOp &Op, std::vector<XTensor> &In,
                                              std::vector<XTensor> &Out, BackwardFn *Bw) {
  const std::string &K = Op.Kind;
  const Node &Anchor = G.Nodes[Op.Nodes.front()];
  auto Need = [&](size_t I) { return I < Op.Inputs.size() && requiresGrad(Op.Inputs[I]); };
  auto OutShape = [&](size_t I) { return G.Tensors[Op.Outputs[I]].Shape; };
  auto Missing = [&](size_t I) -> llvm::Error {
    return unsupported(Op, "input " + std::to_string(I) + " ('" +
                               (I < Op.Inputs.size() && Op.Inputs[I] != NoTensor
                                    ? G.Tensors[Op.Inputs[I]].Name
                                    : std::string("?")) +
                               "') has no value (shape arithmetic the executor does not run)");
  };
  for (size_t I = 0; I < In.size(); ++I)
    if (!In[I].defined() && Op.Inputs[I] != NoTensor && !(I > 0 && (isView(K) || K == "Expand" ||
                                                                    K == "Slice" || K == "Split" ||
                                                                    K == "Range" ||
                                                                    K == "ConstantOfShape" ||
                                                                    K == "ReduceMean" ||
                                                                    K == "ReduceSum" ||
                                                                    K == "CastLike")))
      return Missing(I);

  if (K == "Constant") {
    Out[0] = Persistent[Op.Outputs[0]];
    return true;
  }
  if (isView(K)) {
    const XTensor &X = In[0];
    Shape Dims = OutShape(0);
    if (auto S = viewStrides(X, Dims))
      Out[0] = X.view(Dims, *S, X.Offset);
    else // reshape of a layout that no strides can view: a copy
      Out[0] = contiguous(X, G.Tensors[Op.Outputs[0]].Name).view(Dims, contiguousStrides(Dims), 0);
    if (Bw) {
      Shape InDims = X.Dims;
      *Bw = [this, InDims](std::vector<XTensor> &GOut) {
        XTensor Gr = GOut[0];
        if (auto S = viewStrides(Gr, InDims))
          return std::vector<XTensor>{Gr.view(InDims, *S, Gr.Offset)};
        XTensor C = contiguous(Gr, "grad (contiguous)");
        return std::vector<XTensor>{C.view(InDims, contiguousStrides(InDims), C.Offset)};
      };
    }
    return true;
  }
  if (K == "Transpose") {
    const XTensor &X = In[0];
    std::vector<int64_t> Perm = Anchor.intsAttr("perm").value_or(std::vector<int64_t>{});
    if (Perm.empty())
      for (size_t D = X.Dims.size(); D-- > 0;)
        Perm.push_back(static_cast<int64_t>(D));
    if (!isPermutation(Perm, X.Dims.size()))
      return unsupported(Op, "its perm does not reorder the input's " +
                                 std::to_string(X.Dims.size()) + " dims");
    Shape Dims, Strides;
    for (int64_t D : Perm) {
      Dims.push_back(X.Dims[D]);
      Strides.push_back(X.Strides[D]);
    }
    Out[0] = X.view(Dims, Strides, X.Offset);
    if (Bw)
      *Bw = [Perm](std::vector<XTensor> &GOut) {
        // The inverse permutation, as a view of the gradient.
        const XTensor &Gr = GOut[0];
        Shape InDims(Perm.size()), InStrides(Perm.size());
        for (size_t D = 0; D < Perm.size(); ++D) {
          InDims[Perm[D]] = Gr.Dims[D];
          InStrides[Perm[D]] = Gr.Strides[D];
        }
        return std::vector<XTensor>{Gr.view(InDims, InStrides, Gr.Offset)};
      };
    return true;
  }
  if (K == "Split" || K == "Slice") {
    const XTensor &X = In[0];
    // Every output is a narrow view: its extent from the graph's shape, its start from the
    // split sizes or the slice's starts.
    std::vector<int64_t> Starts(Op.Outputs.size(), 0);
    size_t Axis = 0;
    int64_t Step = 1; // a slice's step (gpt-oss's interleaved gate and up: 2)
    if (K == "Split") {
      Axis = axisOf(Anchor.intAttr("axis").value_or(0), X.Dims.size());
      int64_t At = 0;
      for (size_t I = 0; I < Op.Outputs.size(); ++I) {
        Starts[I] = At;
        At += OutShape(I)[Axis];
      }
    } else {
      const Shape &OD = OutShape(0);
      std::vector<int64_t> StartV, AxesV, StepsV;
      if (Op.Inputs.size() > 1 && Op.Inputs[1] != NoTensor)
        StartV = G.Tensors[Op.Inputs[1]].IntValues;
      if (Op.Inputs.size() > 3 && Op.Inputs[3] != NoTensor)
        AxesV = G.Tensors[Op.Inputs[3]].IntValues;
      if (Op.Inputs.size() > 4 && Op.Inputs[4] != NoTensor)
        StepsV = G.Tensors[Op.Inputs[4]].IntValues;
      if (Op.Inputs.size() < 2) { // opset < 10: bounds are attributes
        StartV = Anchor.intsAttr("starts").value_or(std::vector<int64_t>{});
        AxesV = Anchor.intsAttr("axes").value_or(std::vector<int64_t>{});
      }
      int Changed = 0;
      for (size_t D = 0; D < OD.size() && D < X.Dims.size(); ++D)
        if (OD[D] != X.Dims[D]) {
          Axis = D;
          ++Changed;
        }
      if (AxesV.size() == 1)
        Axis = axisOf(AxesV[0], X.Dims.size());
      if (Changed > 1 || AxesV.size() > 1 || (!StepsV.empty() && StepsV[0] < 1))
        return unsupported(Op, "a slice over several axes or with a negative step");
      if (!StepsV.empty())
        Step = StepsV[0];
      int64_t Start = StartV.empty() ? 0 : StartV[0];
      if (Start < 0)
        Start += X.Dims[Axis];
      Starts[0] = std::clamp<int64_t>(Start, 0, X.Dims[Axis]);
      if (StartV.empty() && Changed && Op.Inputs.size() > 1 && Op.Inputs[1] != NoTensor &&
          G.Tensors[Op.Inputs[1]].Producer != NoNode)
        return unsupported(Op, "slice bounds computed at run time");
    }
    for (size_t I = 0; I < Op.Outputs.size(); ++I) {
      Shape Dims = X.Dims, Strides = X.Strides;
      Dims[Axis] = OutShape(I)[Axis];
      Strides[Axis] *= Step;
      Out[I] = X.view(Dims, Strides, X.Offset + Starts[I] * X.Strides[Axis]);
    }
    if (Bw) {
      Shape InDims = X.Dims;
      *Bw = [this, InDims, Starts, Axis, Step](std::vector<XTensor> &GOut) {
        // SliceBackward / SplitBackward: the input-sized gradient, zeros where no piece
        // came back.
        XTensor R = zeros(InDims, ElemType::F32, "grad (slice)");
        float *PR = static_cast<float *>(Host.write(*R.Buf));
        for (size_t I = 0; I < GOut.size(); ++I) {
          if (!GOut[I].defined())
            continue;
          const float *PG = static_cast<const float *>(Host.read(*GOut[I].Buf));
          int64_t Base = Starts[I] * R.Strides[Axis];
          Shape Into = R.Strides;
          Into[Axis] *= Step;
          forEachElement(GOut[I].Dims, {GOut[I].Strides, Into}, {GOut[I].Offset, Base},
                         [&](const std::vector<int64_t> &O) { PR[O[1]] = PG[O[0]]; });
        }
        Host.flush();
        return std::vector<XTensor>{R};
      };
    }
    return true;
  }
  if (K == "Expand") {
    const XTensor &X = In[0];
    Shape Dims = OutShape(0);
    Out[0] = X.view(Dims, broadcastStrides(X, Dims), X.Offset);
    if (Bw) {
      Shape InDims = X.Dims;
      *Bw = [this, InDims](std::vector<XTensor> &GOut) {
        return std::vector<XTensor>{sumToShape(GOut[0], InDims, "grad (expand)")};
      };
    }
    return true;
  }
  if (K == "Concat") {
    Shape Dims = OutShape(0);
    size_t Axis = axisOf(Anchor.intAttr("axis").value_or(0), Dims.size());
    XTensor R = alloc(Dims, In[0].Type, MemCategory::Temporaries, G.Tensors[Op.Outputs[0]].Name);
    void *PR = Host.write(*R.Buf);
    size_t W = elemBytes(R.Type);
    std::vector<int64_t> Starts;
    int64_t At = 0;
    for (const XTensor &X : In) {
      Starts.push_back(At);
      const void *PX = Host.read(*X.Buf);
      forEachElement(X.Dims, {X.Strides, R.Strides}, {X.Offset, At * R.Strides[Axis]},
                     [&](const std::vector<int64_t> &O) {
                       std::memcpy(static_cast<uint8_t *>(PR) + W * O[1],
                                   static_cast<const uint8_t *>(PX) + W * O[0], W);
                     });
      At += X.Dims[Axis];
    }
    Host.flush();
    Out[0] = R;
    if (Bw) {
      std::vector<Shape> Pieces;
      for (const XTensor &X : In)
        Pieces.push_back(X.Dims);
      *Bw = [Pieces, Starts, Axis](std::vector<XTensor> &GOut) {
        // CatBackward hands back narrow views of the gradient.
        std::vector<XTensor> Views;
        for (size_t I = 0; I < Pieces.size(); ++I)
          Views.push_back(GOut[0].view(Pieces[I], GOut[0].Strides,
                                       GOut[0].Offset + Starts[I] * GOut[0].Strides[Axis]));
        return Views;
      };
    }
    return true;
  }
  if (K == "Gather" && Op.Inputs.size() == 2 && Op.Inputs[1] != NoTensor &&
      G.Tensors[Op.Inputs[1]].Shape.empty() && G.Tensors[Op.Inputs[1]].IntValues.size() == 1 &&
      !G.Tensors[Op.Inputs[0]].Stored) {
    // `x[:, i]` (select) of an activation: a view without the axis; its backward puts the
    // gradient into zeros of the input's shape (SelectBackward), as a slice's does.
    const XTensor &X = In[0];
    const size_t Axis = axisOf(Anchor.intAttr("axis").value_or(0), X.Dims.size());
    int64_t Index = G.Tensors[Op.Inputs[1]].IntValues[0];
    if (Axis >= X.Dims.size())
      return unsupported(Op, "a select along an axis the input does not have");
    if (Index < 0)
      Index += X.Dims[Axis];
    if (Index < 0 || Index >= X.Dims[Axis])
      return unsupported(Op, "an index out of range");
    Shape Dims, Strides;
    for (size_t D = 0; D < X.Dims.size(); ++D)
      if (D != Axis) {
        Dims.push_back(X.Dims[D]);
        Strides.push_back(X.Strides[D]);
      }
    Out[0] = X.view(Dims, Strides, X.Offset + Index * X.Strides[Axis]);
    if (Bw) {
      *Bw = [this, InDims = X.Dims, Axis, Index](std::vector<XTensor> &GOut) {
        XTensor R = zeros(InDims, ElemType::F32, "grad (select)");
        float *PR = static_cast<float *>(Host.write(*R.Buf));
        const float *PG = static_cast<const float *>(Host.read(*GOut[0].Buf));
        Shape Into;
        for (size_t D = 0; D < InDims.size(); ++D)
          if (D != Axis)
            Into.push_back(R.Strides[D]);
        forEachElement(GOut[0].Dims, {GOut[0].Strides, Into},
                       {GOut[0].Offset, Index * R.Strides[Axis]},
                       [&](const std::vector<int64_t> &O) { PR[O[1]] = PG[O[0]]; });
        Host.flush();
        return std::vector<XTensor>{R, XTensor{}};
      };
    }
    return true;
  }
  if (K == "CumSum" || K == "ArgMax") {
    // Integer bookkeeping without a gradient: RoBERTa numbering its positions
    // (cumsum(mask, 1)), a decoder's sequence classifier finding each row's last token
    // (argmax(-1)). Along the last axis.
    const XTensor &X = In[0];
    const int64_t Axis = K == "CumSum" && Op.Inputs.size() > 1 && Op.Inputs[1] != NoTensor &&
                                 !G.Tensors[Op.Inputs[1]].IntValues.empty()
                             ? G.Tensors[Op.Inputs[1]].IntValues[0]
                             : Anchor.intAttr("axis").value_or(0);
    if (X.Dims.empty() || axisOf(Axis, X.Dims.size()) != X.Dims.size() - 1 ||
        (K == "ArgMax" && Anchor.intAttr("keepdims").value_or(1) != 0))
      return unsupported(Op, "a cumulative sum or argmax over other than the last axis");
    const Tensor &OT = G.Tensors[Op.Outputs[0]];
    XTensor R = alloc(OT.Shape, ElemType::I64, // the executor keeps every integer as int64
                      MemCategory::Temporaries, OT.Name);
    const int64_t Cols = X.Dims.back();
    const std::vector<int64_t> Rows = rowOffsets(X);
    const void *PX = Host.read(*X.Buf);
    void *PR = Host.write(*R.Buf);
    for (size_t Row = 0; Row < Rows.size(); ++Row) {
      double Sum = 0, Best = 0;
      int64_t Arg = 0;
      for (int64_t J = 0; J < Cols; ++J) {
        double V = loadAsDouble(PX, X.Type, Rows[Row] + J * X.Strides.back());
        if (K == "CumSum") {
          Sum += V;
          storeFromDouble(PR, R.Type, int64_t(Row) * Cols + J, Sum);
        } else if (J == 0 || V > Best) { // the first of equal maxima, as torch.argmax
          Best = V;
          Arg = J;
        }
      }
      if (K == "ArgMax")
        storeFromDouble(PR, R.Type, int64_t(Row), static_cast<double>(Arg));
    }
    Host.flush();
    Out[0] = R;
    return true;
  }
  if (K == "Gather") {
    const XTensor &Data = In[0];
    XTensor Ids = contiguous(In[1], "indices");
    int64_t Axis = Anchor.intAttr("axis").value_or(0);
    // A 2-D table (an embedding, or the rows of an activation: x[idx]) or a 1-D one (a
    // vector's elements), gathered along axis 0; both backwards are zeros of the table's
    // shape with the rows added per index.
    if (Axis != 0 || Data.Dims.empty() || Data.Dims.size() > 2 || Data.Type != ElemType::F32 ||
        Ids.Type != ElemType::I64)
      return unsupported(Op, "a gather that is not along axis 0 of a 1-D or 2-D fp32 table");
    XTensor Table = contiguous(Data, "embedding table");
    int64_t Rows = Data.Dims[0], Dim = Data.Dims.size() == 2 ? Data.Dims[1] : 1;
    Out[0] = alloc(OutShape(0), ElemType::F32, MemCategory::Temporaries,
                   G.Tensors[Op.Outputs[0]].Name);
    Dev.embeddingForward(Out[0].Buf->as<float>(), Table.Buf->as<float>() + Table.Offset,
                         Ids.Buf->as<int64_t>() + Ids.Offset, Ids.numel(), Rows, Dim);
    if (Bw && Need(0)) {
      *Bw = [this, Saved = save(Ids), Rows, Dim, InDims = Data.Dims](std::vector<XTensor> &GOut) {
        // embedding_dense_backward: a zeroed [V, D] gradient, rows added per index.
        XTensor GC = contiguous(GOut[0], "grad (contiguous)");
        XTensor DW = zeros({Rows, Dim}, ElemType::F32, "grad(embedding)");
        Dev.embeddingBackward(DW.Buf->as<float>(), GC.Buf->as<float>() + GC.Offset,
                              Saved.Buf->as<int64_t>() + Saved.Offset, Saved.numel(), Rows, Dim);
        if (InDims.size() == 1)
          DW = DW.view(InDims, contiguousStrides(InDims), DW.Offset);
        return std::vector<XTensor>{DW, XTensor{}};
      };
    }
    return true;
  }
  if (K == "Range") {
    Shape Dims = OutShape(0);
    bool Float = isFloating(G.Tensors[Op.Outputs[0]].Type);
    double Start = 0, Delta = 1;
    if (Op.Inputs.size() > 0 && !G.Tensors[Op.Inputs[0]].IntValues.empty())
      Start = static_cast<double>(G.Tensors[Op.Inputs[0]].IntValues[0]);
    if (Op.Inputs.size() > 2 && !G.Tensors[Op.Inputs[2]].IntValues.empty())
      Delta = static_cast<double>(G.Tensors[Op.Inputs[2]].IntValues[0]);
    XTensor R = alloc(Dims, Float ? ElemType::F32 : ElemType::I64, MemCategory::Temporaries,
                      G.Tensors[Op.Outputs[0]].Name);
    void *PR = Host.write(*R.Buf);
    for (int64_t E = 0; E < R.numel(); ++E)
      storeFromDouble(PR, R.Type, E, Start + Delta * static_cast<double>(E));
    Out[0] = R;
    return true;
  }
  if (K == "ConstantOfShape") {
    Shape Dims = OutShape(0);
    const Tensor &OT = G.Tensors[Op.Outputs[0]];
    double V = Anchor.floatAttr("value").value_or(
        static_cast<double>(Anchor.intAttr("value").value_or(0)));
    XTensor R = alloc(Dims, OT.Type == DType::Bool ? ElemType::Bool
                            : isFloating(OT.Type) ? ElemType::F32
                                                  : ElemType::I64,
                      MemCategory::Temporaries, OT.Name);
    void *PR = Host.write(*R.Buf);
    for (int64_t E = 0; E < R.numel(); ++E)
      storeFromDouble(PR, R.Type, E, V);
    Out[0] = R;
    return true;
  }
  if (K == "Cast" || K == "CastLike") {
    // CastLike(x, like): x.to(like.dtype); the graph gives its output that dtype.
    DType To = G.Tensors[Op.Outputs[0]].Type;
    ElemType T = To == DType::Bool ? ElemType::Bool : isFloating(To) ? ElemType::F32 : ElemType::I64;
    if (T == In[0].Type) { // .to(same dtype) returns the tensor itself
      Out[0] = In[0];
      if (Bw)
        *Bw = [](std::vector<XTensor> &GOut) { return std::vector<XTensor>{GOut[0]}; };
      return true;
    }
    Out[0] = unary(In[0], T, [T](double V) { return T == ElemType::Bool ? (V != 0) : V; },
                   G.Tensors[Op.Outputs[0]].Name);
    return true;
  }
  return runArithmeticOp(Op, In, Out, Bw);
}

} // namespace trainmem::probe
