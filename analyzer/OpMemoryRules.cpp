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

bool sdpaRunsMathKernel(const RuleContext &Ctx, const SimOp &Op) {
  if (!Ctx.Cpu) {
    // CUDA's fused kernels: flash and cuDNN take 16-bit inputs only; the memory-efficient
    // kernel takes fp32 but not grouped key/value heads (sdp_utils.cpp's
    // check_batch_size_and_num_heads_dense<false>). fp32 with enable_gqa runs the math
    // kernel: measured on an H200 (torch 2.11), TinyLlama's layers in fp32 save the
    // scaled q and k, the probabilities and the repeated v (BmmBackward0), while with
    // 32 key/value heads or in bf16 they save q, k, v and the log-sum-exp.
    if (Op.Inputs.size() < 3 || Op.Inputs[0] == NoTensor || Op.Inputs[1] == NoTensor ||
        Ctx.AutocastType || Ctx.TypeOf[Op.Inputs[0]] != DType::Float32)
      return false;
    const std::vector<int64_t> &Q = Ctx.G.Tensors[Op.Inputs[0]].Shape,
                               &K = Ctx.G.Tensors[Op.Inputs[1]].Shape;
    return Q.size() == 4 && K.size() == 4 && Q[1] != K[1];
  }
  if (Ctx.AttentionDropout > 0)
    return true;
  // The CPU's flash kernel wants q, k and v of one head width: DeepSeek's latent attention
  // (values narrower than queries and keys) runs the math kernel (measured on torch 2.15).
  if (Op.Inputs.size() < 3 || Op.Inputs[0] == NoTensor || Op.Inputs[2] == NoTensor)
    return false;
  const std::vector<int64_t> &Q = Ctx.G.Tensors[Op.Inputs[0]].Shape,
                             &V = Ctx.G.Tensors[Op.Inputs[2]].Shape;
  return !Q.empty() && !V.empty() && Q.back() != V.back();
}

std::map<size_t, double> dropoutSites(const Graph &G, const std::vector<SimOp> &Ops,
                                      std::optional<double> Override) {
  std::map<size_t, double> Sites;
  const double P = Override ? *Override : G.DeclaredDropout.value_or(0.0);
  if (P <= 0)
    return Sites; // DeclaredDropout is the largest of the declared probabilities
  Graph::DropoutSites At{P, P, P};
  if (!Override && G.DeclaredDropoutSites)
    At = *G.DeclaredDropoutSites;
  std::vector<int> ProducerOp(G.Tensors.size(), -1);
  for (size_t I = 0; I < Ops.size(); ++I)
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        ProducerOp[O] = static_cast<int>(I);
  auto ProducerKind = [&](TensorId T) -> llvm::StringRef {
    return T == NoTensor || ProducerOp[T] < 0 ? "" : Ops[size_t(ProducerOp[T])].Kind;
  };
  auto Consumers = [&](TensorId T) -> const std::vector<NodeId> & {
    return G.Tensors[T].Consumers;
  };
  for (size_t I = 0; I < Ops.size(); ++I) {
    const SimOp &Op = Ops[I];
    if (Op.Outputs.empty() || Op.Outputs[0] == NoTensor)
      continue;
    const TensorId Out = Op.Outputs[0];
    const llvm::StringRef Kind = Op.Kind;
    const bool OfSoftmax = !Op.Inputs.empty() && ProducerKind(Op.Inputs[0]) == "Softmax";
    if (Kind == "Softmax" || (Kind == "CastLike" && OfSoftmax) ||
        (Kind == "Slice" && OfSoftmax)) {
      // The probabilities the PV matmul reads: after transformers' cast of its fp32
      // softmax to the query's dtype; gpt-oss's less the sink's column (a view), dropped
      // out before that cast.
      for (NodeId C : Consumers(Out))
        if ((G.Nodes[C].OpType == "MatMul" ||
             (Kind == "Slice" && G.Nodes[C].OpType == "CastLike")) &&
            At.Attention > 0)
          Sites[I] = At.Attention;
    } else if (Kind == "Linear" && At.Residual > 0 && !blockPrefix(Op.Layer).empty()) {
      // resid_drop / mlp.drop: a projection inside a block whose only reader is the
      // residual sum, maybe through a reshape (GPT-2's Conv1D computes addmm on [batch *
      // seq, width] and views the result back). Outside the blocks a projection added to
      // the positions is no residual branch (OPT-350m's project_in: measured, no dropout). A LoRA-adapted projection's output is its adapter's sum
      // (Graph::AdapterSums), which is what drops out (measured: BERT with LoRA on every
      // linear lost its dropout masks).
      TensorId Fed = Out;
      size_t SiteOp = I;
      for (auto [BaseOut, Sum] : G.AdapterSums)
        if (BaseOut == Out && ProducerOp[Sum] >= 0) {
          Fed = Sum;
          SiteOp = size_t(ProducerOp[Sum]);
          break;
        }
      if (Consumers(Fed).size() != 1)
        continue;
      const TensorId LinearOut = Fed;
      const Node *C = &G.Nodes[Consumers(Fed)[0]];
      if (C->OpType == "Reshape" && !C->Outputs.empty() && C->Outputs[0] != NoTensor &&
          Consumers(C->Outputs[0]).size() == 1) {
        Fed = C->Outputs[0];
        C = &G.Nodes[Consumers(Fed)[0]];
      }
      if (C->OpType == "Add" && C->Inputs.size() == 2) {
        TensorId Other = C->Inputs[0] == Fed ? C->Inputs[1] : C->Inputs[0];
        if (Other != NoTensor && !G.Tensors[Other].Stored &&
            G.Tensors[Other].numElements() == G.Tensors[LinearOut].numElements())
          Sites[SiteOp] = At.Residual;
      }
    }
  }
  // The dropouts a builder put where the model has them (a classification head's).
  for (auto [T, Declared] : G.DropoutAt)
    if (double Site = Override ? *Override : Declared; ProducerOp[T] >= 0 && Site > 0)
      Sites[size_t(ProducerOp[T])] = Site;
  // The embeddings' dropout: the first floating tensor made outside the blocks that an op
  // inside a block reads.
  if (At.Embedding > 0)
    for (const SimOp &Op : Ops) {
      if (blockPrefix(Op.Layer).empty())
        continue;
      for (TensorId In : Op.Inputs) {
        int Producer = In == NoTensor ? -1 : ProducerOp[In];
        if (Producer >= 0 && blockPrefix(Ops[size_t(Producer)].Layer).empty() &&
            isFloating(G.Tensors[In].Type)) {
          Sites[size_t(Producer)] = At.Embedding;
          return Sites;
        }
      }
    }
  return Sites;
}

std::vector<bool> opsOffLossPath(const Graph &G, const std::vector<SimOp> &Ops) {
  // From the graph's outputs back: an op reaches them when one of its outputs does, and
  // then so do its floating inputs that a gradient flows to.
  std::vector<bool> Reaches(G.Tensors.size(), false);
  for (TensorId O : G.Outputs)
    if (O != NoTensor)
      Reaches[O] = true;
  std::vector<bool> Off(Ops.size(), false);
  for (size_t I = Ops.size(); I-- > 0;) {
    const SimOp &Op = Ops[I];
    bool Live = false;
    for (TensorId O : Op.Outputs)
      Live |= O != NoTensor && (Reaches[O] || G.Tensors[O].IsGraphOutput);
    Off[I] = !Live;
    if (Live)
      for (size_t K = 0; K < Op.Inputs.size(); ++K)
        if (Op.Inputs[K] != NoTensor && carriesGradient(Op, K) &&
            isFloating(G.Tensors[Op.Inputs[K]].Type))
          Reaches[Op.Inputs[K]] = true;
  }
  return Off;
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

static void cpuConvolutionScratch(const SimOp &Op, const RuleContext &Ctx, bool NeedsInput,
                                  bool NeedsWeight, OpMemoryRule &R) {
  // A convolution without its input, weight or output (a malformed file's) runs nowhere:
  // no scratch to model.
  if (Op.Nodes.empty() || Op.Inputs.size() < 2 || Op.Outputs.empty() ||
      Op.Inputs[0] == NoTensor || Op.Inputs[1] == NoTensor || Op.Outputs[0] == NoTensor)
    return;
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
  // On the CPU a binary op whose operands differ in dtype copies each operand that is not
  // in the result's dtype to it first (TensorIteratorBase::compute_types promotes inputs
  // "by creating temporaries of the correct dtype" on CPU only; CUDA casts inside the
  // kernel), freed when the op returns. Measured on torch 2.15: bf16 [1024, 1024] plus
  // fp32 [1024, 1024] or [1, 1024] allocates a 4 MiB fp32 copy beside the 4 MiB result.
  // Autocast's mixed steps meet it: the residual adds, RMSNorm's fp32 weight times its
  // bf16 result, eager attention's bf16 scores plus the fp32 mask. Single elements (Python
  // numbers, 0-dim tensors) are left out.
  if (Ctx.Cpu && (K == "Add" || K == "Sub" || K == "Mul" || K == "Div") &&
      !Op.Outputs.empty() && Op.Outputs[0] != NoTensor) {
    const DType Common = Ctx.TypeOf[Op.Outputs[0]];
    for (size_t I = 0; I < NIn; ++I)
      if (In(I) != NoTensor && Ctx.TypeOf[In(I)] != Common && Ctx.elements(In(I)) > 1 &&
          !llvm::is_contained(llvm::ArrayRef<TensorId>(Op.Inputs.data(), I), In(I)))
        R.ForwardTransient += Ctx.G.Tensors[In(I)].bytesAs(Common);
  }

  // `x[:, i]` (select; torch.onnx writes a Gather with a 0-dim constant index) of an
  // activation is a view too: whoever saves it keeps the whole of x alive (BERT's pooler
  // dense saves hidden[:, 0], holding the last hidden states). Its backward, like a
  // slice's, fills an input-sized gradient.
  const bool Select = K == "Gather" && NIn == 2 && In(0) != NoTensor && In(1) != NoTensor &&
                      !Ctx.G.Tensors[In(0)].Stored && Ctx.G.Tensors[In(1)].Shape.empty() &&
                      isScalarConstantTensor(Ctx, In(1));
  if (isViewOp(K) || Select) {
    R.Outputs.assign(Op.Outputs.size(), OutputKind::ViewOfInput0);
    // Views hand back a view of the output gradient, except where PyTorch materialises
    // the input-sized gradient: Split (cat of the pieces), Slice (zeros + copy) and
    // Expand (a sum back to the input shape).
    if (K != "Split" && K != "Slice" && K != "Expand" && !Select)
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
    if (sdpaRunsMathKernel(Ctx, Op) && Q.Shape.size() == 4) {
      // The CPU kernel takes no dropout: _scaled_dot_product_attention_math runs (measured
      // on torch 2.15). q and k scaled by sqrt(scale) (copies the q.k^T bmm keeps), the
      // softmax (kept), dropout's mask in the input dtype and its output (the second bmm
      // keeps it) and v as that bmm reads it: v itself, or the contiguous copy flattening
      // its batch dims makes (a slice of a fused qkv; the simulator's copy); the scores
      // exist until the softmax replaces them. It computes in fp32 whatever the inputs'
      // dtype (bf16 inputs are upcast first, and the fp32 v is new).
      int64_t Probs = dtypeBytes(DType::Float32, Rows * Q.Shape[2]);
      int64_t QBytes = dtypeBytes(DType::Float32, Ctx.elements(In(0)));
      // Each bmm keeps an operand only for the other's gradient (measured: a LoRA step whose
      // first layer's k is frozen keeps no scaled q there, 262,144 B less).
      const bool ScoresNeedGrad = Needs(0) || Needs(1);
      if (Needs(1))
        SaveExtra(QBytes, "q (scaled)");
      if (Needs(0))
        SaveExtra(QBytes, "k (scaled)");
      // Without dropout the second bmm keeps the probabilities themselves.
      const bool Dropout = Ctx.AttentionDropout > 0;
      if (ScoresNeedGrad || (Needs(2) && !Dropout))
        SaveExtra(Probs, "attention probabilities");
      if (ScoresNeedGrad && Dropout)
        SaveExtra(Probs, "attention dropout mask");
      if (Needs(2) && Dropout)
        SaveExtra(Probs, "attention probabilities (dropped)");
      // Grouped key/value heads (enable_gqa): the kernel repeat_interleaves its fp32 k and v
      // to the query heads (pre_process_group_query_attention_input); the second bmm keeps
      // that v (measured: 262,144 B per layer for 2 x 256 tokens, 4 heads of 32 from 2).
      const Tensor &V = Ctx.G.Tensors[In(2)];
      if (!ScoresNeedGrad)
        ; // the second bmm keeps v for the probabilities' gradient only
      else if (V.Shape.size() == 4 && V.Shape[1] > 0 && V.Shape[1] != Q.Shape[1])
        SaveExtra(dtypeBytes(DType::Float32, Ctx.elements(In(2)) / V.Shape[1] * Q.Shape[1]),
                  "v (fp32, repeated to the query heads)");
      else if (Ctx.TypeOf[In(2)] == DType::Float32 && !Ctx.AutocastType) // else a new fp32 v
        SaveIn(2);
      else
        SaveExtra(dtypeBytes(DType::Float32, Ctx.elements(In(2))), "v (fp32)");
      for (size_t I = 3; I < NIn; ++I)
        R.GradInputBytes[I] = 0;
      R.ForwardTransient = Probs;
      // Backward: the gradients of the dropped and of the kept probabilities, once the
      // second bmm's backward has let go of the dropped ones it kept.
      R.BackwardTransient = Needs(2) ? Probs : 2 * Probs;
      if (!Dropout && ScoresNeedGrad) {
        // Without dropout (DeepSeek's values narrower than its queries): the probabilities'
        // gradient (from the second bmm, which then lets go of the v it kept and of the
        // output's gradient) and the scores' gradient (softmax's backward) live together,
        // beside v's gradient, before q's and k's are made (measured on torch 2.15). An
        // fp32 v kept as it is frees its whole storage (DeepSeek's v is a view of kv_b_proj's
        // output, its keys' half copied away).
        TensorId VRoot = In(2);
        while (Ctx.G.Tensors[VRoot].Producer != NoNode) {
          const Node &P = Ctx.G.Nodes[Ctx.G.Tensors[VRoot].Producer];
          if (!isViewOp(P.OpType) || P.OpType == "Expand" || P.Inputs.empty() ||
              P.Inputs[0] == NoTensor)
            break;
          VRoot = P.Inputs[0];
        }
        const bool KeptAsIs = Ctx.TypeOf[In(2)] == DType::Float32 && !Ctx.AutocastType;
        const int64_t Freed = (Op.Outputs.empty() ? 0 : Ctx.bytes(Op.Outputs[0])) +
                              (KeptAsIs ? Ctx.bytes(VRoot) : Ctx.bytes(In(2)));
        const int64_t Later = (Needs(0) ? Ctx.bytes(In(0)) : 0) + (Needs(1) ? Ctx.bytes(In(1)) : 0);
        R.BackwardTransient = std::max(Probs, 2 * Probs - Freed - Later);
      }
      return R;
    }
    SaveIn(0);
    SaveIn(1);
    SaveIn(2);
    SaveOut(0);
    SaveExtra(Rows * 4, "logsumexp");
    for (size_t I = 3; I < NIn; ++I) {
      R.GradInputBytes[I] = 0;
      if (In(I) == NoTensor || Ctx.elements(In(I)) <= 1)
        continue;
      const bool Bool = Ctx.TypeOf[In(I)] == DType::Bool;
      if (!Bool && !isFloating(Ctx.TypeOf[In(I)]))
        continue;
      // A boolean mask becomes a float bias in the query's dtype (convert_boolean_attn_mask,
      // measured on the CPU: where() of the [batch, 1, seq, seq] pattern), kept as an
      // additive one is. Under autocast the kernel runs on 16-bit copies: the bias takes
      // their dtype.
      const Tensor &Mask = Ctx.G.Tensors[In(I)];
      const int64_t Bias =
          Bool ? Mask.bytesAs(Ctx.AutocastType.value_or(Ctx.TypeOf[In(0)]))
               : dtypeBytes(Ctx.TypeOf[In(I)], Ctx.elements(In(I)));
      // CUDA's memory-efficient kernel (the one that takes a mask) wants the bias's rows
      // 8-aligned: preprocess_mask pads a last dim that is not a multiple of 8 into a new
      // tensor and slices it back (pad_bias<8>), and that copy is what the backward keeps;
      // the unpadded bias is freed once copied. Read from PyTorch's source
      // (transformers/cuda/attention.cu), not measured here.
      const int64_t Last = Mask.Shape.empty() ? 1 : std::max<int64_t>(Mask.Shape.back(), 1);
      const bool Padded = !Ctx.Cpu && Last % 8 != 0;
      const int64_t Kept = Padded ? Bias / Last * (Last + 8 - Last % 8) : Bias;
      if (!Bool && !Padded) {
        SaveIn(I); // an additive attention bias is kept for the backward
        continue;
      }
      SaveExtra(Kept, Bool ? "attention bias (from the boolean mask)"
                           : "attention bias (rows padded to 8)");
      R.ForwardTransientUnlessSaved += Kept;
      if (Bool && Padded)
        R.ForwardTransient += Bias; // the unpadded bias, while it is copied
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
  if (K == "GroupedMatMul") {
    // torch's _grouped_mm (transformers' mixture-of-experts experts): keeps each operand
    // for the other's gradient and the group offsets, an int32 per expert (made from the
    // sorted expert ids, which are not kept).
    if (Needs(1))
      SaveIn(0);
    if (Needs(0))
      SaveIn(1);
    if (Needs(0) || Needs(1)) {
      const Tensor &W = Ctx.G.Tensors[In(1)];
      SaveExtra(W.Shape.empty() ? 4 : W.Shape.front() * 4, "group offsets");
    }
    R.GradInputBytes[2] = 0;
    return R;
  }
  if (K == "TopK") {
    // topk keeps its indices; the backward scatters the values' gradient into zeros of
    // the input's shape.
    if (Needs(0))
      SaveOut(1);
    R.GradInputBytes[1] = 0;
    // value_selecting_reduction_backward: zeros of the input's shape, then scatter_, which
    // on the CPU works on an fp32 copy of a 16-bit self (measured on torch 2.15: a bf16
    // [1, 4, 512, 513] max(dim) backward allocates 2 MiB of zeros and 4 MiB beside them).
    if (Ctx.Cpu && Needs(0) && dtypeBytes(Ctx.TypeOf[In(0)], 1) == 2)
      R.BackwardTransient += dtypeBytes(DType::Float32, Ctx.elements(In(0)));
    return R;
  }
  if (K == "ScatterElements" || K == "GatherElements") {
    // Both keep their indices: scatter's for the gradients of data and updates, gather's
    // (GatherBackward) to scatter the gradient into zeros of the input's shape.
    SaveIn(1);
    R.GradInputBytes[1] = 0;
    return R;
  }
  if (K == "Add" || K == "Sum") {
    if (K == "Add" && !Op.Outputs.empty() && Op.Outputs[0] != NoTensor &&
        Ctx.G.Tensors[Op.Outputs[0]].InPlace)
      R.Outputs[0] = OutputKind::ViewOfInput0; // add_: the sum is written into input 0
    // AddBackward returns grad itself; the engine casts it to an input of another dtype (a
    // bf16 branch added to an fp32 residual under autocast) into a tensor of its own.
    for (size_t I = 0; I < NIn; ++I)
      if (Needs(I) && Ctx.elements(In(I)) == Ctx.elements(Op.Outputs[0]) &&
          Ctx.TypeOf[In(I)] == Ctx.TypeOf[Op.Outputs[0]])
        R.GradIsPassThrough[I] = true;
    return R;
  }
  if (K == "Sub") {
    if (Needs(0) && Ctx.elements(In(0)) == Ctx.elements(Op.Outputs[0]) &&
        Ctx.TypeOf[In(0)] == Ctx.TypeOf[Op.Outputs[0]])
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
    // MulBackward0 returns grad * other and grad * self in the output's dtype and shape and
    // releases its saved tensors; the engine (validate_outputs) then casts each product to
    // its input's dtype and sums it to its input's shape. So the peak holds both products
    // and the saved tensors, not yet the gradients made from them: a product the input does
    // not take as it is counts as scratch less that gradient (the simulator holds both at
    // one point). Measured on torch 2.15: Mixtral's bf16 expert outputs times its fp32
    // routing weights [S, 1] (the two fp32 [S, hidden] products, then the bf16 gradient).
    if (NIn == 2 && !Op.Outputs.empty() && Op.Outputs[0] != NoTensor) {
      const TensorId Out = Op.Outputs[0];
      for (size_t I = 0; I < 2; ++I)
        if (Needs(I) &&
            (Ctx.TypeOf[In(I)] != Ctx.TypeOf[Out] || Ctx.elements(In(I)) < Ctx.elements(Out)) &&
            !isScalarConstantTensor(Ctx, In(1 - I)))
          R.BackwardTransient += std::max<int64_t>(0, Ctx.bytes(Out) - R.GradInputBytes[I]);
    }
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
    // pow_backward: grad * (exp * self.pow(exp - 1)), one expression, so x.pow(exp - 1) (a
    // copy for exp 2) and exp times it both live until the gradient is made. Measured on
    // torch 2.15 (Gemma 3's post-MLP RMSNorm in bf16, checkpointed: the step's peak).
    R.BackwardTransient = 2 * Ctx.bytes(In(0));
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
    // input's dtype, or in fp32 when a 16-bit input meets fp32 weights (its "mixed type",
    // as CPU autocast runs LayerNorm: measured, Phi's per-head q and k norms on bf16
    // projections under autocast kept fp32 statistics).
    const TensorId Wt = In(1);
    const bool Mixed = Wt != NoTensor && Ctx.TypeOf[Wt] == DType::Float32;
    int64_t StatBytes = Ctx.Cpu && !Mixed ? dtypeBytes(Ctx.TypeOf[X], 1) : 4;
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

} // namespace trainmem
