//===- ExecutorMath.cpp - elementwise ops and reductions -----------------------===//
//
// Broadcasting arithmetic, the pointwise functions and mean/sum over axes, each with the
// backward closure of its derivatives.yaml formula and only the tensors that formula
// reads: add/sub nothing; mul/div the other operand (a Python scalar as PyTorch's 8-byte
// float64 wrapped number); pow, erf, cos, sin and mean their input; sqrt, rsqrt, reciprocal, exp,
// sigmoid, tanh and relu their output; where its condition. Gradients of broadcast
// operands are computed full size and then summed down, as autograd does.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include <cmath>
#include <limits>

namespace trainmem::probe {

static Shape broadcastOf(const Shape &A, const Shape &B) {
  Shape Out(std::max(A.size(), B.size()), 1);
  for (size_t I = 0; I < Out.size(); ++I) {
    size_t FromA = Out.size() - A.size(), FromB = Out.size() - B.size();
    int64_t DA = I < FromA ? 1 : A[I - FromA], DB = I < FromB ? 1 : B[I - FromB];
    Out[I] = DA == 1 ? DB : DA;
  }
  return Out;
}

llvm::Expected<bool> ExecutorImpl::runArithmeticOp(const SimOp &Op, std::vector<XTensor> &In,
                                                   std::vector<XTensor> &Out, BackwardFn *Bw) {
  const std::string &K = Op.Kind;
  const Node &Anchor = G.Nodes[Op.Nodes.front()];
  const std::string &OutName = G.Tensors[Op.Outputs[0]].Name;
  auto Need = [&](size_t I) { return I < Op.Inputs.size() && requiresGrad(Op.Inputs[I]); };
  auto IsFloat = [](const XTensor &T) { return T.Type == ElemType::F32 || T.Type == ElemType::F64; };

  if (K == "Add" || K == "Sub" || K == "Mul" || K == "Div" || K == "Equal" || K == "Less" ||
      K == "Greater" || K == "LessOrEqual" || K == "GreaterOrEqual" || K == "And" || K == "Or") {
    const XTensor &A = In[0], &B = In[1];
    Shape Dims = broadcastOf(A.Dims, B.Dims);
    bool Compare = K == "Equal" || K == "Less" || K == "Greater" || K == "LessOrEqual" ||
                   K == "GreaterOrEqual" || K == "And" || K == "Or";
    ElemType T = Compare ? ElemType::Bool
                 : IsFloat(A) || IsFloat(B) ? ElemType::F32
                                            : ElemType::I64;
    std::function<double(double, double)> F;
    if (K == "Add") F = [](double X, double Y) { return X + Y; };
    else if (K == "Sub") F = [](double X, double Y) { return X - Y; };
    else if (K == "Mul") F = [](double X, double Y) { return X * Y; };
    else if (K == "Div")
      F = T == ElemType::I64 ? std::function<double(double, double)>(
                                   [](double X, double Y) { return std::floor(X / Y); })
                             : [](double X, double Y) { return X / Y; };
    else if (K == "Equal") F = [](double X, double Y) { return X == Y ? 1.0 : 0.0; };
    else if (K == "Less") F = [](double X, double Y) { return X < Y ? 1.0 : 0.0; };
    else if (K == "Greater") F = [](double X, double Y) { return X > Y ? 1.0 : 0.0; };
    else if (K == "LessOrEqual") F = [](double X, double Y) { return X <= Y ? 1.0 : 0.0; };
    else if (K == "GreaterOrEqual") F = [](double X, double Y) { return X >= Y ? 1.0 : 0.0; };
    else if (K == "And") F = [](double X, double Y) { return X != 0 && Y != 0 ? 1.0 : 0.0; };
    else F = [](double X, double Y) { return X != 0 || Y != 0 ? 1.0 : 0.0; };
    if (K == "Add" && G.Tensors[Op.Outputs[0]].InPlace) {
      // out.add_(bias) (gpt-oss's experts): the sum written into the first operand's
      // storage, the result of the op before, as the simulator counts it.
      if (A.Dims != Dims || A.Type != ElemType::F32)
        return unsupported(Op, "an in-place add whose first operand is broadcast or not fp32");
      const void *PB = Host.read(*B.Buf);
      Host.read(*A.Buf);
      float *PA = static_cast<float *>(Host.write(*A.Buf));
      forEachElement(Dims, {A.Strides, broadcastStrides(B, Dims)}, {A.Offset, B.Offset},
                     [&](const std::vector<int64_t> &O) {
                       PA[O[0]] += static_cast<float>(loadAsDouble(PB, B.Type, O[1]));
                     });
      Host.flush();
      Out[0] = A;
    } else {
      Out[0] = binary(A, B, Dims, T, F, OutName);
    }
    if (!Bw || Compare)
      return true;
    Shape DA = A.Dims, DB = B.Dims;
    bool NA = Need(0), NB = Need(1);
    if (K == "Add" || K == "Sub") {
      bool Negate = K == "Sub";
      *Bw = [this, DA, DB, NA, NB, Negate](std::vector<XTensor> &GOut) {
        std::vector<XTensor> R(2);
        if (NA)
          R[0] = sumToShape(GOut[0], DA, "grad (add)");
        if (NB)
          R[1] = Negate ? sumToShape(unary(GOut[0], ElemType::F32,
                                           [](double V) { return -V; }, "grad (neg)"),
                                     DB, "grad (sub)")
                        : sumToShape(GOut[0], DB, "grad (add)");
        return R;
      };
      return true;
    }
    // The other operand, kept only for the gradient that reads it; a Python scalar is
    // kept as the 8-byte wrapped number instead.
    auto Keep = [&](size_t I, XTensor &Value, XTensor &Wrapped) {
      if (isScalarConstant(Op.Inputs[I])) {
        Value = In[I];
        Wrapped = wrappedScalar(scalarValue(Op.Inputs[I]));
      } else {
        Value = save(In[I]);
      }
    };
    XTensor SA, SB, WA, WB;
    if (K == "Mul") {
      if (NA)
        Keep(1, SB, WB);
      if (NB)
        Keep(0, SA, WA);
      *Bw = [this, DA, DB, NA, NB, SA, SB, WA, WB](std::vector<XTensor> &GOut) {
        std::vector<XTensor> R(2);
        auto Prod = [this](const XTensor &G, const XTensor &O) {
          return binary(G, O, G.Dims, ElemType::F32, [](double X, double Y) { return X * Y; },
                        "grad (mul)");
        };
        if (NA)
          R[0] = sumToShape(Prod(GOut[0], SB), DA, "grad (mul)");
        if (NB)
          R[1] = sumToShape(Prod(GOut[0], SA), DB, "grad (mul)");
        return R;
      };
      return true;
    }
    // div: self's gradient reads other; other's reads self and other.
    if (NA || NB)
      Keep(1, SB, WB);
    if (NB)
      Keep(0, SA, WA);
    *Bw = [this, DA, DB, NA, NB, SA, SB, WA, WB](std::vector<XTensor> &GOut) {
      std::vector<XTensor> R(2);
      const XTensor &Gr = GOut[0];
      if (NA)
        R[0] = sumToShape(binary(Gr, SB, Gr.Dims, ElemType::F32,
                                 [](double X, double Y) { return X / Y; }, "grad (div)"),
                          DA, "grad (div)");
      if (NB) {
        XTensor GA = binary(Gr, SA, Gr.Dims, ElemType::F32,
                            [](double X, double Y) { return X * Y; }, "grad (div)");
        R[1] = sumToShape(binary(GA, SB, Gr.Dims, ElemType::F32,
                                 [](double X, double Y) { return -X / (Y * Y); }, "grad (div)"),
                          DB, "grad (div)");
      }
      return R;
    };
    return true;
  }

  if (K == "Pow") {
    if (!isScalarConstant(Op.Inputs[1]))
      return unsupported(Op, "a pow whose exponent is a tensor");
    double E = scalarValue(Op.Inputs[1]);
    Out[0] = unary(In[0], ElemType::F32, [E](double X) { return std::pow(X, E); }, OutName);
    if (Bw)
      *Bw = [this, X = save(In[0]), E](std::vector<XTensor> &GOut) {
        XTensor D = unary(X, ElemType::F32, [E](double V) { return E * std::pow(V, E - 1); },
                          "pow derivative");
        return std::vector<XTensor>{binary(GOut[0], D, GOut[0].Dims, ElemType::F32,
                                           [](double A, double B) { return A * B; },
                                           "grad (pow)"),
                                    XTensor{}};
      };
    return true;
  }

  // Pointwise functions. KeepsOutput: derivative written in terms of the result.
  struct Pointwise {
    const char *Name;
    bool KeepsOutput;
    double (*F)(double);
    double (*Derivative)(double /*input or output*/);
  };
  static const Pointwise Table[] = {
      {"Neg", false, [](double X) { return -X; }, nullptr},
      {"Sqrt", true, [](double X) { return std::sqrt(X); }, [](double Y) { return 0.5 / Y; }},
      {"Rsqrt", true, [](double X) { return 1.0 / std::sqrt(X); },
       [](double Y) { return -0.5 * Y * Y * Y; }},
      {"Reciprocal", true, [](double X) { return 1.0 / X; }, [](double Y) { return -Y * Y; }},
      {"Exp", true, [](double X) { return std::exp(X); }, [](double Y) { return Y; }},
      {"Sigmoid", true, [](double X) { return 1.0 / (1.0 + std::exp(-X)); },
       [](double Y) { return Y * (1 - Y); }},
      {"Tanh", true, [](double X) { return std::tanh(X); }, [](double Y) { return 1 - Y * Y; }},
      {"Relu", true, [](double X) { return X > 0 ? X : 0.0; },
       [](double Y) { return Y > 0 ? 1.0 : 0.0; }},
      {"Erf", false, [](double X) { return std::erf(X); },
       [](double X) { return 1.1283791670955126 * std::exp(-X * X); }},
      {"Cos", false, [](double X) { return std::cos(X); }, [](double X) { return -std::sin(X); }},
      {"Sin", false, [](double X) { return std::sin(X); }, [](double X) { return std::cos(X); }},
      {"Not", false, [](double X) { return X != 0 ? 0.0 : 1.0; }, nullptr},
  };
  for (const Pointwise &P : Table) {
    if (K != P.Name)
      continue;
    ElemType T = K == "Not" ? ElemType::Bool : ElemType::F32;
    Out[0] = unary(In[0], T, P.F, OutName);
    if (!Bw || K == "Not")
      return true;
    if (K == "Neg") {
      *Bw = [this](std::vector<XTensor> &GOut) {
        return std::vector<XTensor>{
            unary(GOut[0], ElemType::F32, [](double V) { return -V; }, "grad (neg)")};
      };
      return true;
    }
    XTensor Kept = save(P.KeepsOutput ? Out[0] : In[0]);
    auto D = P.Derivative;
    *Bw = [this, Kept, D](std::vector<XTensor> &GOut) {
      return std::vector<XTensor>{binary(GOut[0], Kept, GOut[0].Dims, ElemType::F32,
                                         [D](double G, double V) { return G * D(V); },
                                         "grad (pointwise)")};
    };
    return true;
  }

  if (K == "Clip") {
    // torch.clamp: min and max are Python numbers (absent: unbounded); the backward passes
    // the gradient where the input lay within them, so it keeps the input.
    auto Bound = [&](size_t I, double Default) {
      return I < Op.Inputs.size() && Op.Inputs[I] != NoTensor && isScalarConstant(Op.Inputs[I])
                 ? scalarValue(Op.Inputs[I])
                 : Default;
    };
    const double Lo = Bound(1, -std::numeric_limits<double>::infinity());
    const double Hi = Bound(2, std::numeric_limits<double>::infinity());
    Out[0] = unary(In[0], ElemType::F32, [Lo, Hi](double X) { return std::clamp(X, Lo, Hi); },
                   OutName);
    if (Bw)
      *Bw = [this, Kept = save(In[0]), Lo, Hi](std::vector<XTensor> &GOut) {
        return std::vector<XTensor>{
            binary(GOut[0], Kept, GOut[0].Dims, ElemType::F32,
                   [Lo, Hi](double G, double X) { return X >= Lo && X <= Hi ? G : 0.0; },
                   "grad (clamp)"),
            XTensor{}, XTensor{}};
      };
    return true;
  }

  if (K == "Where") {
    const XTensor &C = In[0], &A = In[1], &B = In[2];
    Shape Dims = broadcastOf(C.Dims, broadcastOf(A.Dims, B.Dims));
    XTensor R = alloc(Dims, IsFloat(A) ? ElemType::F32 : A.Type, MemCategory::Temporaries, OutName);
    const void *PC = Host.read(*C.Buf), *PA = Host.read(*A.Buf), *PB = Host.read(*B.Buf);
    void *PR = Host.write(*R.Buf);
    int64_t Next = 0;
    forEachElement(Dims, {broadcastStrides(C, Dims), broadcastStrides(A, Dims),
                          broadcastStrides(B, Dims)},
                   {C.Offset, A.Offset, B.Offset}, [&](const std::vector<int64_t> &O) {
                     storeFromDouble(PR, R.Type, Next++,
                                     loadAsDouble(PC, C.Type, O[0]) != 0
                                         ? loadAsDouble(PA, A.Type, O[1])
                                         : loadAsDouble(PB, B.Type, O[2]));
                   });
    Host.flush();
    Out[0] = R;
    if (Bw) {
      bool NA = Need(1), NB = Need(2);
      Shape DA = A.Dims, DB = B.Dims;
      *Bw = [this, Cond = save(C), NA, NB, DA, DB](std::vector<XTensor> &GOut) {
        std::vector<XTensor> Res(3);
        const XTensor &Gr = GOut[0];
        auto Pick = [&](bool WhenTrue) {
          return binary(Cond, Gr, Gr.Dims, ElemType::F32,
                        [WhenTrue](double Cv, double G) { return (Cv != 0) == WhenTrue ? G : 0; },
                        "grad (where)");
        };
        if (NA)
          Res[1] = sumToShape(Pick(true), DA, "grad (where)");
        if (NB)
          Res[2] = sumToShape(Pick(false), DB, "grad (where)");
        return Res;
      };
    }
    return true;
  }

  if (K == "ReduceMean" || K == "ReduceSum") {
    const XTensor &X = In[0];
    std::vector<int64_t> Axes = Anchor.intsAttr("axes").value_or(std::vector<int64_t>{});
    if (Axes.empty() && Op.Inputs.size() > 1 && Op.Inputs[1] != NoTensor)
      Axes = G.Tensors[Op.Inputs[1]].IntValues;
    if (Axes.empty())
      for (size_t D = 0; D < X.Dims.size(); ++D)
        Axes.push_back(static_cast<int64_t>(D));
    Shape Kept = X.Dims;
    int64_t Count = 1;
    for (int64_t A : Axes) {
      size_t D = static_cast<size_t>(A < 0 ? A + static_cast<int64_t>(X.Dims.size()) : A);
      Count *= X.Dims[D];
      Kept[D] = 1;
    }
    if (numel(Kept) != numel(G.Tensors[Op.Outputs[0]].Shape))
      return unsupported(Op, "reduction axes computed at run time");
    double Scale = K == "ReduceMean" ? 1.0 / static_cast<double>(Count) : 1.0;
    XTensor R = zeros(Kept, ElemType::F32, OutName);
    const float *PX = static_cast<const float *>(Host.read(*X.Buf));
    float *PR = static_cast<float *>(Host.write(*R.Buf));
    forEachElement(X.Dims, {X.Strides, broadcastStrides(R, X.Dims)}, {X.Offset, 0},
                   [&](const std::vector<int64_t> &O) { PR[O[1]] += PX[O[0]]; });
    for (int64_t E = 0; E < R.numel(); ++E)
      PR[E] = static_cast<float>(PR[E] * Scale);
    Host.flush();
    const Shape &OutDims = G.Tensors[Op.Outputs[0]].Shape;
    Out[0] = R.view(OutDims, contiguousStrides(OutDims), 0);
    if (Bw) {
      // Measured on torch 1.13: mean(dim) keeps its input alive until MeanBackward runs;
      // 2.x keeps only its sizes (measured on 2.15).
      XTensor Held = K == "ReduceMean" &&
                             Setup.torchVersionFor(G.SourceFormat) == TorchVersion::V1_13
                         ? save(X)
                         : XTensor{};
      Shape InDims = X.Dims;
      *Bw = [this, Held, InDims, Kept, Scale](std::vector<XTensor> &GOut) {
        XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
        Gr = Gr.view(Kept, contiguousStrides(Kept), Gr.Offset);
        XTensor Zero = zeros({}, ElemType::F32, "zero");
        XTensor Res = binary(Gr, Zero, InDims, ElemType::F32,
                             [Scale](double G, double) { return G * Scale; }, "grad (reduce)");
        return std::vector<XTensor>{Res, XTensor{}};
      };
    }
    return true;
  }
  return false;
}

} // namespace trainmem::probe
