//===- ExecutorMoe.cpp - the mixture-of-experts ops: top-k, scatter, grouped matmul ---===//
//
// What transformers 5's grouped_mm experts run beyond the dense ops: topk over the
// router's probabilities (and sort, a top-k of every element, smallest first), the scatter
// that puts the token-expert pairs back in order, and torch's _grouped_mm, each row times
// its expert's matrix. Host loops through the buffers' host mirror, as the elementwise ops
// run; each allocates what PyTorch's kernel allocates (OpMemoryRules' rules): topk keeps its
// indices, the grouped matmul each operand for the other's gradient and an int32 offset per
// expert, the scatter (integers only) nothing.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include <algorithm>
#include <numeric>

namespace trainmem::probe {
namespace {

/// The flat index of element (I, J) of a 2-D view, or (I) of a 1-D one (J ignored).
int64_t at2(const XTensor &T, int64_t I, int64_t J) {
  return T.Offset + I * T.Strides[0] + (T.Dims.size() > 1 ? J * T.Strides[1] : 0);
}

/// Out[r, c] = sum over k of A[r, k] W[e(r), k, c] (A [S, K], W a view [E, K, Cols]); with
/// Transposed, W[e(r), c, k] (the input's gradient: the rows times each expert's W^T).
void groupedRows(const float *PA, const XTensor &A, const float *PW, const XTensor &W,
                 const std::vector<int64_t> &Expert, bool Transposed, float *POut,
                 int64_t Cols) {
  const int64_t S = A.Dims[0], Depth = A.Dims[1];
  for (int64_t R = 0; R < S; ++R) {
    const int64_t Base = W.Offset + Expert[static_cast<size_t>(R)] * W.Strides[0];
    for (int64_t C = 0; C < Cols; ++C) {
      double Acc = 0;
      for (int64_t D = 0; D < Depth; ++D)
        Acc += double(PA[at2(A, R, D)]) *
               double(PW[Base + (Transposed ? C * W.Strides[1] + D * W.Strides[2]
                                            : D * W.Strides[1] + C * W.Strides[2])]);
      POut[R * Cols + C] = static_cast<float>(Acc);
    }
  }
}


} // namespace

llvm::Expected<bool> ExecutorImpl::runMoeOp(const SimOp &Op, std::vector<XTensor> &In,
                                            std::vector<XTensor> &Out, BackwardFn *Bw) {
  const std::string &K = Op.Kind;
  if (K != "TopK" && K != "ScatterElements" && K != "GatherElements" && K != "GroupedMatMul")
    return false;
  auto Need = [&](size_t I) { return I < Op.Inputs.size() && requiresGrad(Op.Inputs[I]); };
  auto OutShape = [&](size_t I) { return G.Tensors[Op.Outputs[I]].Shape; };
  const Node &Anchor = G.Nodes[Op.Nodes.front()];

  if (K == "TopK") {
    // Over the last axis of any rank: the routers' [tokens, experts], the experts' sort of
    // the pair ids [S], gpt-oss's row max of its scores [batch, heads, seq, seq + 1].
    const XTensor &X = In[0];
    const int64_t Axis = Anchor.intAttr("axis").value_or(-1);
    const bool Largest = Anchor.intAttr("largest").value_or(1) != 0;
    if (X.Dims.empty() || (Axis != -1 && Axis != static_cast<int64_t>(X.Dims.size()) - 1) ||
        Out.size() != 2)
      return unsupported(Op, "a top-k over other than the last axis");
    const Shape VD = OutShape(0);
    const int64_t Cols = X.Dims.back(), Keep = VD.back();
    XTensor Values = alloc(VD, X.Type, MemCategory::Temporaries, G.Tensors[Op.Outputs[0]].Name);
    XTensor Indices =
        alloc(OutShape(1), ElemType::I64, MemCategory::Temporaries, G.Tensors[Op.Outputs[1]].Name);
    const std::vector<int64_t> XRows = rowOffsets(X);
    const int64_t Rows = static_cast<int64_t>(XRows.size()), XStep = X.Strides.back();
    const void *PX = Host.read(*X.Buf);
    void *PV = Host.write(*Values.Buf), *PI = Host.write(*Indices.Buf);
    std::vector<int64_t> Order(static_cast<size_t>(Cols));
    std::vector<double> Row(static_cast<size_t>(Cols));
    for (int64_t R = 0; R < Rows; ++R) {
      for (int64_t C = 0; C < Cols; ++C)
        Row[static_cast<size_t>(C)] = loadAsDouble(PX, X.Type, XRows[R] + C * XStep);
      std::iota(Order.begin(), Order.end(), 0);
      std::stable_sort(Order.begin(), Order.end(), [&](int64_t A, int64_t B) {
        return Largest ? Row[static_cast<size_t>(A)] > Row[static_cast<size_t>(B)]
                       : Row[static_cast<size_t>(A)] < Row[static_cast<size_t>(B)];
      });
      for (int64_t C = 0; C < Keep; ++C) {
        storeFromDouble(PV, Values.Type, R * Keep + C, Row[static_cast<size_t>(Order[C])]);
        storeFromDouble(PI, ElemType::I64, R * Keep + C, static_cast<double>(Order[C]));
      }
    }
    Host.flush();
    Out[0] = Values;
    Out[1] = Indices;
    if (Bw && Need(0)) {
      // value_selecting_reduction_backward: the values' gradient scattered into zeros of the
      // input's shape at the kept indices.
      *Bw = [this, Saved = save(Indices), InDims = X.Dims, Rows, Cols,
             Keep](std::vector<XTensor> &GOut) {
        XTensor GX = zeros(InDims, ElemType::F32, "grad (topk)");
        if (GOut[0].defined()) {
          const XTensor &Gr = GOut[0];
          const std::vector<int64_t> GRows = rowOffsets(Gr);
          const void *PG = Host.read(*Gr.Buf);
          const void *PS = Host.read(*Saved.Buf);
          float *PGX = static_cast<float *>(Host.write(*GX.Buf));
          for (int64_t R = 0; R < Rows; ++R)
            for (int64_t C = 0; C < Keep; ++C) {
              auto Col = static_cast<int64_t>(
                  loadAsDouble(PS, ElemType::I64, Saved.Offset + R * Keep + C));
              PGX[R * Cols + Col] += static_cast<float>(
                  loadAsDouble(PG, Gr.Type, GRows[R] + C * Gr.Strides.back()));
            }
          Host.flush();
        }
        return std::vector<XTensor>{GX, XTensor{}};
      };
    }
    return true;
  }

  if (K == "ScatterElements" || K == "GatherElements") {
    // Along the last axis of any rank: inv_perm[perm] = arange(S) (1-D); DeepSeek's router
    // marks its chosen groups (zeros.scatter_(1, idx, 1)) and gathers the chosen experts'
    // scores (scores.gather(1, idx)).
    const XTensor &Data = In[0], &Idx = In[1];
    const int64_t Axis = Anchor.intAttr("axis").value_or(0);
    const size_t Rank = Data.Dims.size();
    if (Rank == 0 || Idx.Dims.size() != Rank || (Axis != -1 && Axis != int64_t(Rank) - 1) ||
        !std::equal(Idx.Dims.begin(), Idx.Dims.end() - 1, Data.Dims.begin()))
      return unsupported(Op, "a scatter or gather along other than the last axis");
    const std::vector<int64_t> IRows = rowOffsets(Idx), DRows = rowOffsets(Data);
    const int64_t Cols = Data.Dims.back(), Per = Idx.Dims.back();
    const void *PI = Host.read(*Idx.Buf);
    auto Target = [&](int64_t R, int64_t J) -> llvm::Expected<int64_t> {
      auto Where = static_cast<int64_t>(
          loadAsDouble(PI, Idx.Type, IRows[size_t(R)] + J * Idx.Strides.back()));
      if (Where < 0 || Where >= Cols)
        return unsupported(Op, "an index out of range");
      return Where;
    };
    // F(row, j, column) at every index; the first index out of range is the error.
    auto EachTarget = [&](auto F) -> llvm::Error {
      for (size_t Row = 0; Row < IRows.size(); ++Row)
        for (int64_t J = 0; J < Per; ++J) {
          auto Where = Target(int64_t(Row), J);
          if (!Where)
            return Where.takeError();
          F(Row, J, *Where);
        }
      return llvm::Error::success();
    };
    if (K == "ScatterElements") { // integers or constants here: no gradient
      const XTensor &Upd = In[2];
      if (Upd.Dims != Idx.Dims)
        return unsupported(Op, "a scatter whose updates are not shaped as its indices");
      XTensor R = clone(Data, G.Tensors[Op.Outputs[0]].Name);
      const std::vector<int64_t> URows = rowOffsets(Upd), RRows = rowOffsets(R);
      const void *PU = Host.read(*Upd.Buf);
      void *PR = Host.write(*R.Buf);
      if (llvm::Error E = EachTarget([&](size_t Row, int64_t J, int64_t Col) {
            storeFromDouble(PR, R.Type, RRows[Row] + Col * R.Strides.back(),
                            loadAsDouble(PU, Upd.Type, URows[Row] + J * Upd.Strides.back()));
          }))
        return E;
      Host.flush();
      Out[0] = R;
      return true;
    }
    // Scores stay fp32; integers (RoBERTa's token types gathered at its positions) keep
    // their type.
    XTensor Y = alloc(Idx.Dims, Data.Type == ElemType::I64 ? ElemType::I64 : ElemType::F32,
                      MemCategory::Temporaries, G.Tensors[Op.Outputs[0]].Name);
    const void *PD = Host.read(*Data.Buf);
    void *PY = Host.write(*Y.Buf);
    if (llvm::Error E = EachTarget([&](size_t Row, int64_t J, int64_t Col) {
          storeFromDouble(PY, Y.Type, int64_t(Row) * Per + J,
                          loadAsDouble(PD, Data.Type, DRows[Row] + Col * Data.Strides.back()));
        }))
      return E;
    Host.flush();
    Out[0] = Y;
    if (Bw && Need(0))
      // GatherBackward: the gradient scattered (added) into zeros of the input's shape at
      // the gathered places; it keeps the index.
      *Bw = [this, Saved = save(Idx), InDims = Data.Dims, Cols, Per](std::vector<XTensor> &GOut) {
        XTensor GX = zeros(InDims, ElemType::F32, "grad (gather)");
        if (GOut[0].defined()) {
          const XTensor &Gr = GOut[0];
          const std::vector<int64_t> GRows = rowOffsets(Gr), SRows = rowOffsets(Saved);
          const void *PG = Host.read(*Gr.Buf), *PS = Host.read(*Saved.Buf);
          float *PGX = static_cast<float *>(Host.write(*GX.Buf));
          for (size_t Row = 0; Row < GRows.size(); ++Row)
            for (int64_t J = 0; J < Per; ++J) {
              auto Col = static_cast<int64_t>(
                  loadAsDouble(PS, Saved.Type, SRows[Row] + J * Saved.Strides.back()));
              PGX[int64_t(Row) * Cols + Col] += static_cast<float>(
                  loadAsDouble(PG, Gr.Type, GRows[Row] + J * Gr.Strides.back()));
            }
          Host.flush();
        }
        return std::vector<XTensor>{GX, XTensor{}};
      };
    return true;
  }

  // GroupedMatMul: rows X [S, in], weights Wt [E, in, out] (a view), each row's expert in
  // ascending order [S]: Y[r] = X[r] Wt[e(r)].
  const XTensor &X = In[0], &Wt = In[1], &Ids = In[2];
  if (X.Dims.size() != 2 || Wt.Dims.size() != 3 || Ids.Dims.size() != 1 ||
      Ids.Dims[0] != X.Dims[0] || Wt.Dims[1] != X.Dims[1] || X.Type != ElemType::F32 ||
      Wt.Type != ElemType::F32)
    return unsupported(Op, "a grouped matmul other than fp32 rows [S, in] by [E, in, out]");
  const int64_t S = X.Dims[0], InW = X.Dims[1], OutW = Wt.Dims[2], E = Wt.Dims[0];
  std::vector<int64_t> Expert(static_cast<size_t>(S));
  {
    const void *PE = Host.read(*Ids.Buf);
    for (int64_t R = 0; R < S; ++R) {
      Expert[static_cast<size_t>(R)] = static_cast<int64_t>(loadAsDouble(PE, Ids.Type, at2(Ids, R, 0)));
      if (Expert[static_cast<size_t>(R)] < 0 || Expert[static_cast<size_t>(R)] >= E)
        return unsupported(Op, "an expert id out of range");
    }
  }
  XTensor Y = alloc({S, OutW}, ElemType::F32, MemCategory::Temporaries,
                    G.Tensors[Op.Outputs[0]].Name);
  groupedRows(static_cast<const float *>(Host.read(*X.Buf)), X,
              static_cast<const float *>(Host.read(*Wt.Buf)), Wt, Expert, false,
              static_cast<float *>(Host.write(*Y.Buf)), OutW);
  Host.flush();
  Out[0] = Y;
  if (Bw && (Need(0) || Need(1))) {
    // _grouped_mm keeps each operand for the other's gradient and its offsets, an int32
    // per expert (OpMemoryRules' "group offsets").
    XTensor Offsets = save(alloc({E}, ElemType::F32, MemCategory::Temporaries, "group offsets"));
    XTensor KeptX = Need(1) ? save(X) : XTensor{};
    XTensor KeptW = Need(0) ? save(Wt) : XTensor{};
    *Bw = [this, KeptX, KeptW, Offsets, Expert, S, InW, OutW, E, NX = Need(0),
           NW = Need(1), WS = denseStridesLike(Wt)](std::vector<XTensor> &GOut) {
      std::vector<XTensor> Res(3);
      const XTensor &GY = GOut[0];
      const float *PG = static_cast<const float *>(Host.read(*GY.Buf));
      // grad_weight first, as mm computes it.
      if (NW) {
        // Made in the weights' own layout: the [E, out, in] parameter's where they are its
        // transposed view, the [E, in, out] parameter's where they are it (gpt-oss), so
        // AccumulateGrad takes it without a copy (measured: torch's CPU backward allocates
        // it so).
        XTensor Buf = zeros({E, OutW, InW}, ElemType::F32, "grad (grouped matmul weight)");
        const float *PX = static_cast<const float *>(Host.read(*KeptX.Buf));
        float *PGW = static_cast<float *>(Host.write(*Buf.Buf));
        for (int64_t R = 0; R < S; ++R) {
          const int64_t Base = Buf.Offset + Expert[static_cast<size_t>(R)] * WS[0];
          for (int64_t I = 0; I < InW; ++I) {
            const double XV = PX[at2(KeptX, R, I)];
            for (int64_t J = 0; J < OutW; ++J)
              PGW[Base + I * WS[1] + J * WS[2]] +=
                  static_cast<float>(XV * double(PG[at2(GY, R, J)]));
          }
        }
        Host.flush();
        Res[1] = Buf.view({E, InW, OutW}, WS, Buf.Offset);
      }
      if (NX) {
        XTensor GX = alloc({S, InW}, ElemType::F32, MemCategory::Temporaries,
                           "grad (grouped matmul input)");
        groupedRows(PG, GY, static_cast<const float *>(Host.read(*KeptW.Buf)), KeptW, Expert,
                    true, static_cast<float *>(Host.write(*GX.Buf)), InW);
        Host.flush();
        Res[0] = GX;
      }
      (void)Offsets; // kept until this backward has run
      return Res;
    };
  }
  return true;
}

} // namespace trainmem::probe
