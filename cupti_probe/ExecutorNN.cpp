//===- ExecutorNN.cpp - linear, matmul, normalisation, softmax, activations ----===//
//
// The ops that run on the reference kernels: F.linear (addmm/mm: saves its input when the
// weight needs a gradient and the weight, a parameter, when the input does), torch.matmul
// (flattened to bmm; an operand whose layout cannot be viewed that way is copied, and the
// copy is what BmmBackward keeps), native_layer_norm (input, mean, rstd), softmax (its
// output), gelu and silu (their input), and fused scaled-dot-product attention (q, k, v,
// output and a log-sum-exp per row).
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include <cmath>
#include <limits>

namespace trainmem::probe {
namespace {

/// An operand of a batched matmul: the tensor and how the kernel reads it.
struct MatOperand {
  XTensor T;
  int64_t Ld = 0, BatchStride = 0;
  bool Trans = false;
};

/// T seen as [Batch, Rows, Cols] matrices (Batch == 1 and stride 0 for a 2-D operand that
/// broadcasts): a view when the strides allow it, else nothing.
std::optional<MatOperand> asMatrices(const XTensor &T, int64_t Batch) {
  size_t R = T.Dims.size();
  int64_t Rows = T.Dims[R - 2], Cols = T.Dims[R - 1];
  Shape Flat = {numel(T.Dims) / std::max<int64_t>(Rows * Cols, 1), Rows, Cols};
  auto S = viewStrides(T, Flat);
  if (!S)
    return std::nullopt;
  MatOperand M;
  M.T = T;
  if (Flat[0] != Batch) {
    if (Flat[0] != 1)
      return std::nullopt;
    M.BatchStride = 0;
  } else {
    M.BatchStride = (*S)[0];
  }
  if ((*S)[2] == 1 && (*S)[1] >= Cols) {
    M.Ld = (*S)[1];
  } else if ((*S)[1] == 1 && (*S)[2] >= Rows) {
    M.Trans = true;
    M.Ld = (*S)[2];
  } else if (Rows == 1 || Cols == 1) {
    M.Ld = Rows == 1 ? std::max<int64_t>(Cols, 1) : 1;
    if (Cols == 1 && (*S)[1] != 1)
      return std::nullopt;
  } else {
    return std::nullopt;
  }
  return M;
}

kernels::MatmulArgs matmulArgs(const MatOperand &A, const MatOperand &B, float *C, int64_t M,
                               int64_t N, int64_t K, int64_t Batch, bool TransA, bool TransB) {
  kernels::MatmulArgs Args;
  Args.M = M;
  Args.N = N;
  Args.K = K;
  Args.Batch = Batch;
  Args.TransA = A.Trans != TransA;
  Args.TransB = B.Trans != TransB;
  Args.A = A.T.Buf->as<float>() + A.T.Offset;
  Args.B = B.T.Buf->as<float>() + B.T.Offset;
  Args.C = C;
  Args.LdA = A.Ld;
  Args.LdB = B.Ld;
  Args.StrideA = A.BatchStride;
  Args.StrideB = B.BatchStride;
  return Args;
}

/// A contiguous tensor as its own [Batch, Rows, Cols] operand.
MatOperand packed(const XTensor &T, int64_t Batch) {
  size_t R = T.Dims.size();
  MatOperand M;
  M.T = T;
  M.Ld = T.Dims[R - 1];
  int64_t Own = numel(T.Dims) / std::max<int64_t>(T.Dims[R - 2] * T.Dims[R - 1], 1);
  M.BatchStride = Own == Batch ? T.Dims[R - 2] * T.Dims[R - 1] : 0;
  return M;
}

} // namespace

llvm::Expected<bool> ExecutorImpl::runNNOp(const SimOp &Op, std::vector<XTensor> &In,
                                           std::vector<XTensor> &Out, BackwardFn *Bw) {
  const std::string &K = Op.Kind;
  const Node &Anchor = G.Nodes[Op.Nodes.front()];
  auto Need = [&](size_t I) { return I < Op.Inputs.size() && requiresGrad(Op.Inputs[I]); };
  const std::string OutName = Op.Outputs.empty() || Op.Outputs[0] == NoTensor
                                  ? Op.Name
                                  : G.Tensors[Op.Outputs[0]].Name;
  auto Require = [&](size_t I) -> llvm::Error {
    if (I < In.size() && In[I].defined())
      return llvm::Error::success();
    return unsupported(Op, "input " + std::to_string(I) + " has no value");
  };

  if (K == "Linear" || K == "MatMul") {
    if (auto E = Require(0))
      return E;
    if (auto E = Require(1))
      return E;
    XTensor A = In[0], B = In[1];
    if (K == "Linear" && Anchor.OpType == "Gemm") {
      if (Anchor.intAttr("transA").value_or(0))
        return unsupported(Op, "Gemm with transA");
      if (Anchor.intAttr("transB").value_or(0))
        B = B.view({B.Dims[1], B.Dims[0]}, {B.Strides[1], B.Strides[0]}, B.Offset);
    }
    if (A.Dims.size() < 2 || B.Dims.size() < 2)
      return unsupported(Op, "a matmul with a 1-D operand");
    int64_t M = A.Dims[A.Dims.size() - 2], Kd = A.Dims.back(), N = B.Dims.back();
    Shape OutDims = G.Tensors[Op.Outputs[0]].Shape;
    // F.linear flattens the input's leading dims (x.reshape(-1, in), a copy when that is
    // no view); torch.matmul expands and flattens both operands' batch dims for bmm.
    int64_t Batch = 1;
    if (K == "Linear") {
      Shape Flat = {A.numel() / std::max<int64_t>(Kd, 1), Kd};
      auto S = viewStrides(A, Flat);
      A = S ? A.view(Flat, *S, A.Offset) : contiguous(A, OutName + " input (contiguous copy)")
                                               .view(Flat, contiguousStrides(Flat), 0);
      M = Flat[0];
    } else {
      Batch = numel(OutDims) / std::max<int64_t>(M * N, 1);
    }
    auto Prepare = [&](XTensor &T, const char *What) {
      if (auto Op2 = asMatrices(T, Batch))
        return *Op2;
      T = contiguous(T, OutName + " " + What + " (contiguous copy)");
      return packed(T, Batch);
    };
    MatOperand OA = Prepare(A, "lhs"), OB = Prepare(B, "rhs");
    XTensor Y = alloc(OutDims, ElemType::F32, MemCategory::Temporaries, OutName);
    Dev.matmul(matmulArgs(OA, OB, Y.Buf->as<float>(), M, N, Kd, Batch, false, false));
    XTensor Bias = K == "Linear" && In.size() > 2 ? In[2] : XTensor{};
    if (Bias.defined())
      Dev.biasAdd(Y.Buf->as<float>(), Y.Buf->as<float>(), Bias.Buf->as<float>() + Bias.Offset,
                  {Y.numel() / N, N, 1});
    Out[0] = Y;
    if (!Bw)
      return true;
    bool NA = Need(0), NB = Need(1), NBias = Need(2);
    // Each operand is kept only for the other's gradient (a parameter costs nothing).
    MatOperand SA = NB ? MatOperand{save(OA.T), OA.Ld, OA.BatchStride, OA.Trans} : MatOperand{};
    MatOperand SB = NA ? MatOperand{save(OB.T), OB.Ld, OB.BatchStride, OB.Trans} : MatOperand{};
    Shape ADims = In[0].Dims, BDims = B.Dims, BStrides = B.Strides;
    bool BTransposedView = K == "Linear" && Anchor.OpType == "Gemm" &&
                           Anchor.intAttr("transB").value_or(0);
    *Bw = [this, SA, SB, NA, NB, NBias, M, N, Kd, Batch, ADims, BDims, BStrides,
           BTransposedView, IsLinear = K == "Linear"](std::vector<XTensor> &GOut) {
      std::vector<XTensor> R(3);
      XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
      MatOperand OG = packed(Gr.view({Batch, M, N}, contiguousStrides({Batch, M, N}), Gr.Offset),
                             Batch);
      if (NB) {
        // The weight's gradient in the layout of the operand as the op read it, so a
        // parameter seen through a transpose gets its gradient in storage order.
        bool ColumnMajor = BStrides.size() == 2 && BStrides[0] == 1 && BDims[0] > 1;
        int64_t OwnBatch = numel(BDims) / std::max<int64_t>(Kd * N, 1);
        XTensor DB = alloc(BDims, ElemType::F32, MemCategory::Temporaries, "grad(rhs)");
        if (ColumnMajor) { // dB^T [N, K] = G^T A, which is the storage order
          Dev.matmul(matmulArgs(OG, SA, DB.Buf->as<float>(), N, Kd, M, 1, true, false));
          // Gemm's transB weight is stored [N, K]: its gradient is DB as it is.
          R[1] = BTransposedView ? DB.view({N, Kd}, {Kd, 1}, 0) : DB.view(BDims, {1, BDims[0]}, 0);
        } else if (OwnBatch == Batch) { // dB = A^T G per batch entry
          Dev.matmul(matmulArgs(SA, OG, DB.Buf->as<float>(), Kd, N, M, Batch, true, false));
          R[1] = DB;
        } else { // a broadcast operand: the batch entries' products are summed
          for (int64_t I = 0; I < Batch; ++I) {
            MatOperand A1 = SA, G1 = OG;
            A1.T.Offset += I * SA.BatchStride;
            G1.T.Offset += I * OG.BatchStride;
            kernels::MatmulArgs Args = matmulArgs(A1, G1, DB.Buf->as<float>(), Kd, N, M, 1, true,
                                                  false);
            Args.Beta = I ? 1.0f : 0.0f;
            Dev.matmul(Args);
          }
          R[1] = DB;
        }
      }
      if (NBias && IsLinear) {
        XTensor DBias = alloc({N}, ElemType::F32, MemCategory::Temporaries, "grad(bias)");
        Dev.biasGrad(DBias.Buf->as<float>(), Gr.Buf->as<float>() + Gr.Offset, {Batch * M, N, 1});
        R[2] = DBias;
      }
      if (NA) {
        XTensor DA = alloc(ADims, ElemType::F32, MemCategory::Temporaries, "grad(lhs)");
        int64_t OwnBatch = IsLinear ? 1 : numel(ADims) / std::max<int64_t>(M * Kd, 1);
        if (IsLinear || OwnBatch == Batch) {
          Dev.matmul(matmulArgs(OG, SB, DA.Buf->as<float>(), IsLinear ? Batch * M : M, Kd, N,
                                IsLinear ? 1 : Batch, false, true));
        } else {
          for (int64_t I = 0; I < Batch; ++I) {
            MatOperand G1 = OG, B1 = SB;
            G1.T.Offset += I * OG.BatchStride;
            B1.T.Offset += I * SB.BatchStride;
            kernels::MatmulArgs Args = matmulArgs(G1, B1, DA.Buf->as<float>(), M, Kd, N, 1,
                                                  false, true);
            Args.Beta = I ? 1.0f : 0.0f;
            Dev.matmul(Args);
          }
        }
        R[0] = DA;
      }
      return R;
    };
    return true;
  }

  if (K == "LayerNormalization") {
    if (auto E = Require(0))
      return E;
    int64_t Axis = Anchor.intAttr("axis").value_or(-1);
    if (Axis != -1 && Axis != static_cast<int64_t>(In[0].Dims.size()) - 1)
      return unsupported(Op, "a layer norm over other than the last axis");
    float Eps = static_cast<float>(Anchor.floatAttr("epsilon").value_or(1e-5));
    if (Op.Nodes.size() > 1) // the decomposed form: the Add of epsilon holds it
      for (NodeId Nd : Op.Nodes)
        if (G.Nodes[Nd].OpType == "Add")
          for (TensorId T : G.Nodes[Nd].Inputs)
            if (isScalarConstant(T)) {
              Eps = static_cast<float>(scalarValue(T));
              break;
            }
    XTensor X = contiguous(In[0], OutName + " input (contiguous copy)");
    int64_t Cols = X.Dims.back(), Rows = X.numel() / std::max<int64_t>(Cols, 1);
    XTensor W = In.size() > 1 ? In[1] : XTensor{}, B = In.size() > 2 ? In[2] : XTensor{};
    XTensor Y = alloc(X.Dims, ElemType::F32, MemCategory::Temporaries, OutName);
    XTensor Mean = alloc({Rows}, ElemType::F32, MemCategory::Temporaries, OutName + " mean");
    XTensor Rstd = alloc({Rows}, ElemType::F32, MemCategory::Temporaries, OutName + " rstd");
    Dev.layerNormForward(Y.Buf->as<float>(), Mean.Buf->as<float>(), Rstd.Buf->as<float>(),
                         X.Buf->as<float>() + X.Offset,
                         W.defined() ? W.Buf->as<float>() + W.Offset : nullptr,
                         B.defined() ? B.Buf->as<float>() + B.Offset : nullptr, Rows, Cols, Eps);
    Out[0] = Y.view(G.Tensors[Op.Outputs[0]].Shape, contiguousStrides(G.Tensors[Op.Outputs[0]].Shape), 0);
    if (!Bw)
      return true;
    bool NX = Need(0), NW = Need(1), NB = Need(2);
    *Bw = [this, SX = save(X), SMean = save(Mean), SRstd = save(Rstd), W, NX, NW, NB, Rows,
           Cols](std::vector<XTensor> &GOut) {
      std::vector<XTensor> R(3);
      XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
      // The kernel always writes DX; without a gradient for x it is scratch.
      XTensor DX = alloc(SX.Dims, ElemType::F32, MemCategory::Temporaries, "grad(layer_norm x)");
      XTensor DW = NW ? alloc({Cols}, ElemType::F32, MemCategory::Temporaries, "grad(gamma)")
                      : XTensor{};
      XTensor DB = NB ? alloc({Cols}, ElemType::F32, MemCategory::Temporaries, "grad(beta)")
                      : XTensor{};
      Dev.layerNormBackward(DX.Buf->as<float>(), NW ? DW.Buf->as<float>() : nullptr,
                            NB ? DB.Buf->as<float>() : nullptr, Gr.Buf->as<float>() + Gr.Offset,
                            SX.Buf->as<float>() + SX.Offset, SMean.Buf->as<float>(),
                            SRstd.Buf->as<float>(),
                            W.defined() ? W.Buf->as<float>() + W.Offset : nullptr, Rows, Cols);
      if (NX)
        R[0] = DX;
      R[1] = DW;
      R[2] = DB;
      return R;
    };
    return true;
  }

  if (K == "Softmax") {
    if (auto E = Require(0))
      return E;
    int64_t Axis = Anchor.intAttr("axis").value_or(-1);
    if (Axis != -1 && Axis != static_cast<int64_t>(In[0].Dims.size()) - 1)
      return unsupported(Op, "a softmax over other than the last axis");
    XTensor X = contiguous(In[0], OutName + " input (contiguous copy)");
    int64_t Cols = X.Dims.back(), Rows = X.numel() / std::max<int64_t>(Cols, 1);
    XTensor Y = alloc(X.Dims, ElemType::F32, MemCategory::Temporaries, OutName);
    Dev.softmaxForward(Y.Buf->as<float>(), X.Buf->as<float>() + X.Offset, Rows, Cols, false);
    Out[0] = Y;
    if (Bw)
      *Bw = [this, SY = save(Y), Rows, Cols](std::vector<XTensor> &GOut) {
        XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
        XTensor DX = alloc(SY.Dims, ElemType::F32, MemCategory::Temporaries, "grad(softmax)");
        Dev.softmaxBackward(DX.Buf->as<float>(), Gr.Buf->as<float>() + Gr.Offset,
                            SY.Buf->as<float>(), Rows, Cols);
        return std::vector<XTensor>{DX};
      };
    return true;
  }

  if (K == "Gelu" || K == "Silu") {
    if (auto E = Require(0))
      return E;
    kernels::Activation Kind = kernels::Activation::Silu;
    if (K == "Gelu") {
      Kind = kernels::Activation::GeluErf;
      for (NodeId Nd : Op.Nodes)
        if (G.Nodes[Nd].OpType == "Tanh" ||
            G.Nodes[Nd].stringAttr("approximate").value_or("") == "tanh")
          Kind = kernels::Activation::GeluTanh;
    }
    XTensor X = contiguous(In[0], OutName + " input (contiguous copy)");
    XTensor Y = alloc(X.Dims, ElemType::F32, MemCategory::Temporaries, OutName);
    Dev.activationForward(Kind, Y.Buf->as<float>(), X.Buf->as<float>() + X.Offset, X.numel());
    Out[0] = Y.view(G.Tensors[Op.Outputs[0]].Shape, contiguousStrides(G.Tensors[Op.Outputs[0]].Shape), 0);
    // Autograd keeps the input as it came (a view of a fused gate/up projection stays a
    // view); the device kernels read it contiguous, so the copy above is the kernel's
    // scratch and the backward makes its own where the input is strided.
    if (Bw)
      *Bw = [this, SX = save(In[0]), Kind](std::vector<XTensor> &GOut) {
        XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
        XTensor Xc = contiguous(SX, "activation input (contiguous copy)");
        XTensor DX = alloc(Xc.Dims, ElemType::F32, MemCategory::Temporaries, "grad(activation)");
        Dev.activationBackward(Kind, DX.Buf->as<float>(), Gr.Buf->as<float>() + Gr.Offset,
                               Xc.Buf->as<float>() + Xc.Offset, Xc.numel());
        return std::vector<XTensor>{DX};
      };
    return true;
  }

  if (K == "ScaledDotProductAttention") {
    for (size_t I = 0; I < 3; ++I)
      if (auto E = Require(I))
        return E;
    if (In[0].Dims.size() != 4 || In[1].Dims.size() != 4 || In[2].Dims.size() != 4)
      return unsupported(Op, "attention on other than [batch, heads, seq, head_dim] tensors");
    // The exported graph hands K^T to the QK matmul; the fused kernel reads K. Where the
    // repeated key/value heads were looked through (enable_gqa), K comes as it is.
    TensorId KIn = Op.Inputs[1];
    bool Transposed = G.Tensors[KIn].Producer != NoNode &&
                      G.Nodes[G.Tensors[KIn].Producer].OpType == "Transpose";
    auto KeyOf = [Transposed](const XTensor &Kt) {
      return Transposed ? Kt.view({Kt.Dims[0], Kt.Dims[1], Kt.Dims[3], Kt.Dims[2]},
                                  {Kt.Strides[0], Kt.Strides[1], Kt.Strides[3], Kt.Strides[2]},
                                  Kt.Offset)
                        : Kt;
    };
    const XTensor Key = KeyOf(In[1]);
    const Shape &QD = In[0].Dims;
    int64_t KvHeads = Key.Dims[1];
    if (Key.Dims != In[2].Dims || Key.Dims[0] != QD[0] || Key.Dims[2] != QD[2] ||
        Key.Dims[3] != QD[3] || KvHeads <= 0 || QD[1] % KvHeads != 0)
      return unsupported(Op, "attention whose q, k and v shapes do not pair (k and v must "
                             "match, with a divisor of q's heads)");
    const int64_t Groups = QD[1] / KvHeads;
    kernels::AttentionShape S;
    S.Batch = QD[0];
    S.Heads = QD[1];
    S.SeqLen = QD[2];
    S.HeadDim = QD[3];
    // Causal where a decoder's graph masks (the batches have no padding), including a mask
    // the fused op dropped for is_causal; an encoder's (BERT's) mask pads nothing here.
    bool Masked = Op.Inputs.size() > 3;
    for (NodeId Nd : Op.Nodes)
      for (TensorId T : G.Nodes[Nd].Inputs)
        Masked |= T != NoTensor && G.Tensors[T].SdpaSkipsMask;
    S.Causal = Masked && G.Architecture != "bert";
    if (S.HeadDim > kernels::MaxTiledHeadDim)
      return unsupported(Op, "a head dimension above " + std::to_string(kernels::MaxTiledHeadDim));
    // Grouped k/v heads repeated for the reference kernel (packed, only while it runs);
    // the real kernels index them.
    auto Packed = [this, Groups, QD = Shape(QD)](const XTensor &T, const std::string &Name) {
      if (Groups == 1)
        return contiguous(T, Name);
      XTensor Rep = T.view({T.Dims[0], T.Dims[1], Groups, T.Dims[2], T.Dims[3]},
                           {T.Strides[0], T.Strides[1], 0, T.Strides[2], T.Strides[3]}, T.Offset);
      XTensor C = clone(Rep, Name);
      return C.view(QD, contiguousStrides(QD), 0);
    };
    // On CUDA, fp32 with grouped k/v heads has no fused kernel (flash and cuDNN take 16-bit
    // inputs, the memory-efficient kernel no grouped heads): PyTorch runs the math kernel.
    if (Dev.isCuda() && Groups > 1 && In.size() == 3 && In[0].Type == ElemType::F32) {
      std::array<bool, 3> Needs{Need(0), Need(1), Need(2)};
      mathAttention(In[0], Key, In[2], S, Groups, Transposed, Needs, OutName, Out, Bw);
      return true;
    }
    // Flash (and the CPU kernel) allocate the output like the query; the memory-efficient
    // kernel (CUDA's for fp32) as [batch, seq, heads, head_dim]. Either way returned as
    // [batch, heads, seq, head_dim].
    XTensor O = alloc(QD, ElemType::F32, MemCategory::Temporaries, OutName);
    O.Strides = Dev.isCuda() ? Shape{QD[2] * QD[1] * QD[3], QD[3], QD[1] * QD[3], 1}
                             : denseStridesLike(In[0]);
    XTensor Lse = alloc({S.rows()}, ElemType::F32, MemCategory::Temporaries, OutName + " logsumexp");
    {
      XTensor Q = contiguous(In[0], "q (packed for the kernel)");
      XTensor Kc = Packed(Key, "k (packed for the kernel)");
      XTensor V = Packed(In[2], "v (packed for the kernel)");
      XTensor OP = O.isContiguous() ? O : alloc(QD, ElemType::F32, MemCategory::Temporaries,
                                                 OutName + " (packed for the kernel)");
      Dev.attentionForwardTiled(OP.Buf->as<float>(), Lse.Buf->as<float>(),
                                Q.Buf->as<float>() + Q.Offset, Kc.Buf->as<float>() + Kc.Offset,
                                V.Buf->as<float>() + V.Offset, S);
      if (OP.Buf != O.Buf)
        copyInto(O, OP);
    }
    Out[0] = O;
    if (!Bw)
      return true;
    // The node keeps q, k and v as they were passed (views keep their whole storage), the
    // output and the log-sum-exp; an additive attention bias is an input of the fused
    // backward (_efficient_attention_backward reads it), so it is kept too. The kernels apply
    // the causal mask themselves; the batches the executor feeds have no padding, so the bias
    // of these graphs masks exactly that.
    std::vector<XTensor> Biases;
    for (size_t I = 3; I < In.size(); ++I) {
      if (!In[I].defined() || In[I].numel() <= 1 ||
          (In[I].Type != ElemType::F32 && In[I].Type != ElemType::Bool))
        continue;
      // A boolean mask (transformers' sdpa_mask for a padded batch or a sliding window):
      // scaled_dot_product_attention first makes it a float bias, where(mask, 0, -inf)
      // (convert_boolean_attn_mask), which the backward keeps. The reference kernels mask
      // causally only, so padded rows attend to their padding here; the bytes are PyTorch's.
      XTensor Bias = In[I].Type == ElemType::F32
                         ? In[I]
                         : unary(
                               In[I], ElemType::F32,
                               [](double Allowed) {
                                 return Allowed != 0 ? 0.0
                                                     : -std::numeric_limits<double>::infinity();
                               },
                               "attention bias (from the boolean mask)");
      // On CUDA the memory-efficient kernel takes rows 8-aligned: preprocess_mask copies a
      // bias whose last dim is not a multiple of 8 into a padded tensor, viewed back to its
      // size, and the backward keeps that copy (the simulator's rule).
      const int64_t Last = Bias.Dims.empty() ? 1 : Bias.Dims.back();
      if (Dev.isCuda() && Last % 8 != 0) {
        Shape PaddedDims = Bias.Dims;
        PaddedDims.back() = Last + 8 - Last % 8;
        XTensor P = alloc(PaddedDims, ElemType::F32, MemCategory::Temporaries,
                          "attention bias (rows padded to 8)");
        XTensor View = P.view(Bias.Dims, contiguousStrides(PaddedDims), 0);
        copyInto(View, Bias);
        Bias = View;
      }
      Biases.push_back(save(Bias));
    }
    *Bw = [this, SQ = save(In[0]), SK = save(Key), SV = save(In[2]), SO = save(O), SL = save(Lse), S,
           Groups, Transposed, Packed, Biases](std::vector<XTensor> &GOut) {
      XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
      XTensor Q = contiguous(SQ, "q (packed for the kernel)");
      XTensor Kc = Packed(SK, "k (packed for the kernel)");
      XTensor V = Packed(SV, "v (packed for the kernel)");
      XTensor OutC = contiguous(SO, "output (packed for the kernel)");
      XTensor DQ = alloc(SQ.Dims, ElemType::F32, MemCategory::Temporaries, "grad(q)");
      XTensor DK = alloc(SQ.Dims, ElemType::F32, MemCategory::Temporaries, "grad(k)");
      XTensor DV = alloc(SQ.Dims, ElemType::F32, MemCategory::Temporaries, "grad(v)");
      XTensor Delta = alloc({S.rows()}, ElemType::F32, MemCategory::Temporaries, "attention delta");
      Dev.attentionBackwardTiled(DQ.Buf->as<float>(), DK.Buf->as<float>(), DV.Buf->as<float>(),
                                 Delta.Buf->as<float>(), Gr.Buf->as<float>() + Gr.Offset,
                                 Q.Buf->as<float>() + Q.Offset, Kc.Buf->as<float>() + Kc.Offset,
                                 V.Buf->as<float>() + V.Offset, OutC.Buf->as<float>() + OutC.Offset,
                                 SL.Buf->as<float>(), S);
      std::vector<XTensor> R(3);
      R[0] = DQ;
      // Grouped heads: each k/v head's gradient sums those of the query heads it served.
      R[1] = Groups == 1 ? DK : sumHeadGroups(DK, Groups, "grad(k)");
      R[2] = Groups == 1 ? DV : sumHeadGroups(DV, Groups, "grad(v)");
      if (Transposed) // the gradient of K^T is a view of K's
        R[1] = R[1].view({R[1].Dims[0], R[1].Dims[1], R[1].Dims[3], R[1].Dims[2]},
                         {R[1].Strides[0], R[1].Strides[1], R[1].Strides[3], R[1].Strides[2]},
                         R[1].Offset);
      return R;
    };
    return true;
  }

  if (K == "Dropout") {
    double Ratio = Op.Inputs.size() > 1 && isScalarConstant(Op.Inputs[1])
                       ? scalarValue(Op.Inputs[1])
                       : Anchor.floatAttr("ratio").value_or(0.0);
    if (Ratio > 0)
      return unsupported(Op, "dropout with p > 0");
    Out[0] = In[0];
    if (Bw)
      *Bw = [](std::vector<XTensor> &GOut) { return std::vector<XTensor>{GOut[0]}; };
    return true;
  }
  if (K == "Conv" || K == "BatchNormalization" || K == "MaxPool" || K == "AveragePool" ||
      K == "GlobalAveragePool" || K == "ConvTranspose")
    return unsupported(Op, "the executor does not run convolutional networks yet (pooling and "
                           "batch norm have no kernels)");
  return false;
}

void ExecutorImpl::mathAttention(const XTensor &Query, const XTensor &Key, const XTensor &Value,
                                 const kernels::AttentionShape &S, int64_t Groups, bool Transposed,
                                 std::array<bool, 3> Needs, const std::string &OutName,
                                 std::vector<XTensor> &Out, BackwardFn *Bw) {
  // _scaled_dot_product_attention_math (aten/native/transformers/attention.cpp), its
  // tensors in its order: q and k scaled by sqrt(scale) each; the causal mask, a boolean
  // tril made a float bias; k and v repeated to the query heads (repeat_interleave); the
  // scores, the bias added in place, replaced by their softmax; probabilities @ v.
  // Autograd keeps what each product's backward reads: the scaled q and k, the
  // probabilities (also the softmax's output) and the repeated v, each only where the
  // other operand needs a gradient.
  const int64_t B = S.Batch, H = S.Heads, L = S.SeqLen, D = S.HeadDim, BH = B * H;
  const float Sf = std::sqrt(S.scale());
  const Shape QD = {B, H, L, D}, PD = {B, H, L, L};
  const bool ScoresNeed = Needs[0] || Needs[1];
  XTensor Qs = alloc(QD, ElemType::F32, MemCategory::Temporaries, OutName + " q (scaled)");
  copyInto(Qs, Query);
  Dev.scale(Qs.Buf->as<float>(), Qs.Buf->as<float>(), Sf, Qs.numel());
  XTensor Mask;
  if (S.Causal) {
    Mask = alloc({L, L}, ElemType::F32, MemCategory::Temporaries, "causal mask");
    XTensor Tril = alloc({L, L}, ElemType::Bool, MemCategory::Temporaries, "causal mask (bool)");
    uint8_t *T = static_cast<uint8_t *>(Host.write(*Tril.Buf));
    for (int64_t I = 0; I < L; ++I)
      for (int64_t J = 0; J < L; ++J)
        T[I * L + J] = J <= I;
    Host.flush();
    float *M = static_cast<float *>(Host.write(*Mask.Buf));
    const uint8_t *TR = static_cast<const uint8_t *>(Host.read(*Tril.Buf));
    for (int64_t E = 0; E < L * L; ++E)
      M[E] = TR[E] ? 0.0f : -std::numeric_limits<float>::infinity();
    Host.flush();
  }
  auto Repeat = [&](const XTensor &T, const std::string &Name) {
    XTensor Rep = T.view({T.Dims[0], T.Dims[1], Groups, T.Dims[2], T.Dims[3]},
                         {T.Strides[0], T.Strides[1], 0, T.Strides[2], T.Strides[3]}, T.Offset);
    return clone(Rep, Name).view(QD, contiguousStrides(QD), 0);
  };
  XTensor KRep = Repeat(Key, "k (repeated to the query heads)");
  XTensor VRep = Repeat(Value, "v (repeated to the query heads)");
  XTensor Ks = alloc(QD, ElemType::F32, MemCategory::Temporaries, "k (repeated, scaled)");
  Dev.scale(Ks.Buf->as<float>(), KRep.Buf->as<float>(), Sf, Ks.numel());
  auto Bmm = [this, BH](const XTensor &A, const XTensor &Bt, XTensor &C, int64_t M, int64_t N,
                        int64_t K, bool TransA, bool TransB) {
    kernels::MatmulArgs Args;
    Args.M = M;
    Args.N = N;
    Args.K = K;
    Args.Batch = BH;
    Args.TransA = TransA;
    Args.TransB = TransB;
    Args.A = A.Buf->as<float>() + A.Offset;
    Args.B = Bt.Buf->as<float>() + Bt.Offset;
    Args.C = C.Buf->as<float>() + C.Offset;
    Dev.matmul(Args);
  };
  XTensor Probs;
  {
    XTensor Scores = alloc(PD, ElemType::F32, MemCategory::Temporaries, "attention scores");
    Bmm(Qs, Ks, Scores, L, L, D, false, true);
    for (int64_t I = 0; Mask.defined() && I < BH; ++I)
      Dev.add(Scores.Buf->as<float>() + I * L * L, Scores.Buf->as<float>() + I * L * L,
              Mask.Buf->as<float>(), L * L);
    Probs = alloc(PD, ElemType::F32, MemCategory::Temporaries, "attention probabilities");
    Dev.softmaxForward(Probs.Buf->as<float>(), Scores.Buf->as<float>(), BH * L, L, false);
  }
  XTensor O = alloc(QD, ElemType::F32, MemCategory::Temporaries, OutName);
  Bmm(Probs, VRep, O, L, D, L, false, false);
  Out[0] = O;
  if (!Bw)
    return;
  XTensor SQ = Needs[1] ? save(Qs) : XTensor(), SK = Needs[0] ? save(Ks) : XTensor();
  XTensor SP = ScoresNeed || Needs[2] ? save(Probs) : XTensor();
  XTensor SV = ScoresNeed ? save(VRep) : XTensor();
  *Bw = [this, SQ, SK, SP, SV, QD, PD, L, D, Sf, Groups, Transposed, Needs, ScoresNeed,
         Bmm](std::vector<XTensor> &GOut) {
    // The autograd engine runs the nodes latest first: the second product, the softmax,
    // the first product, k's scaling, then the two repeats (v's, made after k's, first)
    // and q's scaling; the repeated v's gradient waits until its repeat runs.
    XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
    std::vector<XTensor> R(3);
    XTensor GProbs, GVRep, GScores, GQs, GKs;
    if (ScoresNeed) {
      GProbs = alloc(PD, ElemType::F32, MemCategory::Temporaries, "grad(attention probabilities)");
      Bmm(Gr, SV, GProbs, L, L, D, false, true);
    }
    if (Needs[2]) {
      GVRep = alloc(QD, ElemType::F32, MemCategory::Temporaries, "grad(v repeated)");
      Bmm(SP, Gr, GVRep, L, D, L, true, false);
    }
    Gr = {};
    if (ScoresNeed) {
      GScores = alloc(PD, ElemType::F32, MemCategory::Temporaries, "grad(attention scores)");
      Dev.softmaxBackward(GScores.Buf->as<float>(), GProbs.Buf->as<float>(),
                          SP.Buf->as<float>() + SP.Offset, QD[0] * QD[1] * L, L);
      GProbs = {};
      if (Needs[0]) {
        GQs = alloc(QD, ElemType::F32, MemCategory::Temporaries, "grad(q scaled)");
        Bmm(GScores, SK, GQs, L, D, L, false, false);
      }
      if (Needs[1]) {
        GKs = alloc(QD, ElemType::F32, MemCategory::Temporaries, "grad(k scaled)");
        Bmm(GScores, SQ, GKs, L, D, L, true, false);
      }
      GScores = {};
    }
    XTensor GKRep;
    if (GKs.defined()) {
      GKRep = alloc(QD, ElemType::F32, MemCategory::Temporaries, "grad(k repeated)");
      Dev.scale(GKRep.Buf->as<float>(), GKs.Buf->as<float>(), Sf, GKRep.numel());
      GKs = {};
    }
    if (GVRep.defined()) {
      R[2] = sumHeadGroups(GVRep, Groups, "grad(v)");
      GVRep = {};
    }
    if (GKRep.defined()) {
      R[1] = sumHeadGroups(GKRep, Groups, "grad(k)");
      GKRep = {};
      if (Transposed) // the gradient of K^T is a view of K's
        R[1] = R[1].view({R[1].Dims[0], R[1].Dims[1], R[1].Dims[3], R[1].Dims[2]},
                         {R[1].Strides[0], R[1].Strides[1], R[1].Strides[3], R[1].Strides[2]},
                         R[1].Offset);
    }
    if (GQs.defined()) {
      R[0] = alloc(QD, ElemType::F32, MemCategory::Temporaries, "grad(q)");
      Dev.scale(R[0].Buf->as<float>(), GQs.Buf->as<float>(), Sf, R[0].numel());
    }
    return R;
  };
}

} // namespace trainmem::probe
