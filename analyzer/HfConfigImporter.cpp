//===- HfConfigImporter.cpp - graph IR from a Hugging Face config.json -----------===//
//
// Builds, from nothing but a `config.json`, the graph torch.onnx (opset 17) would export
// for the model's training forward (`model(input_ids)` -> logits), so every later pass
// treats an HF config and an ONNX file alike. Weights are metadata only (name, shape,
// dtype), which keeps a 7B model's import in milliseconds. The modules, parameter and
// buffer names mirror transformers 5.x (measured against 5.24 with torch 2.15): rotary
// tables live once per model (`model.rotary_emb`), GPT-2 has no causal-mask buffers, and
// GPT-NeoX's head is `lm_head` (4.x called it `embed_out`). This file holds the blocks
// the families share (HfGraphParts.h) and the entry point; the LLaMA family is in
// HfLlamaFamily.cpp, GPT-2, GPT-NeoX, Phi, OPT, GPT-J and BERT in HfGptBertFamilies.cpp.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/HfConfigModel.h"
#include "analyzer/SafeJson.h"
#include "analyzer/HfGraphParts.h"
#include "analyzer/OnnxGraphBuilder.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cmath>
#include <limits>
#include <numbers>

namespace trainmem {
namespace hf {

//===-- Blocks shared by the families ---------------------------------------------===//

TensorId linear(OnnxGraphBuilder &B, const Module &Mod, TensorId X, int64_t In, int64_t Out,
                bool Bias) {
  TensorId Y = B.matmul(Mod.Scope, X, B.parameter(Mod.param("weight"), {In, Out}));
  if (Bias)
    Y = B.binary(Mod.Scope, "Add", Y, B.parameter(Mod.param("bias"), {Out}));
  return Y;
}

TensorId rmsNorm(OnnxGraphBuilder &B, const Module &Mod, const HfModel &M, TensorId X,
                 const std::string &OutName) {
  const std::string &S = Mod.Scope;
  TensorId Weight = B.parameter(Mod.param("weight"), {B.shape(X).back()});
  TensorId Xf = B.upcastToFp32(S, X);
  TensorId Sq = B.binary(S, "Pow", Xf, B.scalar(2.0));
  Shape MeanShape = B.shape(X);
  MeanShape.back() = 1;
  TensorId Mean = B.op(S, "ReduceMean", {Sq}, MeanShape, DType::Float32,
                       {{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t{1}}});
  TensorId Inv = B.unary(S, "Reciprocal",
                         B.unary(S, "Sqrt", B.binary(S, "Add", Mean, B.scalar(M.NormEps))));
  TensorId Normed = B.binary(S, "Mul", Xf, Inv);
  if (M.GemmaNorm) {
    TensorId Scale = B.binary(S, "Add", B.upcastToFp32(S, Weight), B.scalar(1.0));
    TensorId Scaled = B.binary(S, "Mul", Normed, Scale);
    B.nameNextOutput(OutName);
    return B.castLike(S, Scaled, X);
  }
  if (M.NormWeightInFp32) {
    // Olmo2RMSNorm: (weight * x_normed).to(input_dtype): the product is fp32 by type
    // promotion, and the backward keeps the weight itself, not an fp32 copy (measured: a
    // copy per norm had been 4,096 B of saved bytes too many in bf16).
    TensorId Scaled = B.binary(S, "Mul", Weight, Normed);
    B.nameNextOutput(OutName);
    return B.castLike(S, Scaled, X);
  }
  TensorId Back = B.castLike(S, Normed, X);
  B.nameNextOutput(OutName);
  return B.binary(S, "Mul", Weight, Back);
}

TensorId layerNorm(OnnxGraphBuilder &B, const Module &Mod, const HfModel &M, TensorId X,
                   const std::string &OutName) {
  const int64_t Width = B.shape(X).back(); // the hidden size, or one head (Phi's qk norms)
  TensorId W = B.parameter(Mod.param("weight"), {Width});
  TensorId Bias = B.parameter(Mod.param("bias"), {Width});
  B.nameNextOutput(OutName);
  return B.op(Mod.Scope, "LayerNormalization", {X, W, Bias}, B.shape(X), DType::Float32,
              {{"axis", int64_t{-1}}, {"epsilon", M.NormEps}});
}

TensorId activation(OnnxGraphBuilder &B, const std::string &S, TensorId X, Activation Act) {
  const double Beta = std::sqrt(2.0 / std::numbers::pi), Kappa = 0.044715; // tanh GELU
  switch (Act) {
  case Activation::Silu: // torch.onnx: silu(x) = x * Sigmoid(x)
    return B.binary(S, "Mul", X, B.unary(S, "Sigmoid", X));
  case Activation::Relu:
    return B.unary(S, "Relu", X);
  case Activation::GeluErf: { // opset-9 symbolic of gelu(approximate="none")
    TensorId Erf = B.unary(S, "Erf", B.binary(S, "Div", X, B.scalar(std::numbers::sqrt2)));
    TensorId Inner = B.binary(S, "Mul", X, B.binary(S, "Add", Erf, B.scalar(1.0)));
    return B.binary(S, "Mul", Inner, B.scalar(0.5));
  }
  case Activation::GeluTanhFused: { // opset-9 symbolic of gelu(approximate="tanh")
    TensorId Cube = B.binary(S, "Mul", X, B.binary(S, "Mul", X, X));
    TensorId Inner = B.binary(S, "Add", X, B.binary(S, "Mul", B.scalar(Kappa), Cube));
    TensorId Tanh = B.unary(S, "Tanh", B.binary(S, "Mul", B.scalar(Beta), Inner));
    TensorId Half = B.binary(S, "Mul", X, B.binary(S, "Add", Tanh, B.scalar(1.0)));
    return B.binary(S, "Mul", B.scalar(0.5), Half);
  }
  case Activation::GeluTanhPython: { // NewGELUActivation, traced op by op
    TensorId HalfX = B.binary(S, "Mul", X, B.scalar(0.5));
    TensorId Cube = B.binary(S, "Pow", X, B.scalar(3.0));
    TensorId Inner = B.binary(S, "Add", X, B.binary(S, "Mul", Cube, B.scalar(Kappa)));
    TensorId Tanh = B.unary(S, "Tanh", B.binary(S, "Mul", Inner, B.scalar(Beta)));
    return B.binary(S, "Mul", HalfX, B.binary(S, "Add", Tanh, B.scalar(1.0)));
  }
  }
  return X;
}

TensorId splitHeads(OnnxGraphBuilder &B, const std::string &S, TensorId X, int64_t Heads,
                    int64_t HeadDim) {
  const Shape &In = B.shape(X);
  TensorId R = B.reshape(S, X, {In[0], In[1], Heads, HeadDim});
  return B.transpose(S, R, {0, 2, 1, 3});
}

TensorId additiveMask(OnnxGraphBuilder &B, const std::string &S, TensorId Allowed,
                      const BoundDims &D) {
  Shape Full = {D.Batch, 1, D.Seq, D.Seq};
  TensorId Expanded = B.expand(S, Allowed, Full);
  double Min = std::numeric_limits<float>::lowest();
  TensorId Mask = B.op(S, "Where", {Expanded, B.scalar(0.0), B.scalar(Min)}, Full, DType::Float32);
  B.tensor(Mask).SdpaTakesBoolPattern = true; // sdpa_mask hands SDPA the expanded pattern
  return Mask;
}

TensorId paddingPattern(OnnxGraphBuilder &B, const Module &Base, const BoundDims &D,
                        TensorId AttentionMask) {
  if (!D.Padded)
    return NoTensor;
  if (AttentionMask == NoTensor)
    AttentionMask = B.input("attention_mask", {D.Batch, D.Seq});
  return B.unsqueeze(Base.Scope, B.cast(Base.Scope, AttentionMask, DType::Bool), {1, 2});
}

TensorId withPadding(OnnxGraphBuilder &B, const std::string &S, TensorId Allowed,
                     TensorId Padding, const BoundDims &D) {
  if (Padding == NoTensor)
    return Allowed;
  return B.op(S, "And", {Allowed, Padding}, {D.Batch, 1, D.Seq, D.Seq}, DType::Bool);
}

DecoderStart decoderStart(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D,
                          const std::string &BaseName, const std::string &EmbedName) {
  DecoderStart S;
  Module Root;
  S.Base = M.Head == HeadKind::BaseModel ? Root : Root.child(BaseName);
  S.Ids = B.input("input_ids", {D.Batch, D.Seq});
  S.Embed = S.Base.child(EmbedName);
  S.EmbedW = B.parameter(S.Embed.param("weight"), {M.Vocab, M.Hidden});
  S.Padding = paddingPattern(B, S.Base, D);
  S.X = B.gather(S.Embed.Scope, S.EmbedW, S.Ids);
  return S;
}

TensorId decoderPositions(OnnxGraphBuilder &B, const Module &Base, const BoundDims &D) {
  TensorId Positions = B.range(Base.Scope, D.Seq);
  B.blockArgument(Positions);
  return Positions;
}

TensorId causalMask(OnnxGraphBuilder &B, const Module &Base, TensorId Positions,
                    const BoundDims &D, TensorId Padding) {
  TensorId Q = B.unsqueeze(Base.Scope, Positions, {0, 1, 3});
  TensorId Kv = B.unsqueeze(Base.Scope, Positions, {0, 1, 2});
  TensorId Allowed =
      B.op(Base.Scope, "LessOrEqual", {Kv, Q}, {1, 1, D.Seq, D.Seq}, DType::Bool);
  return additiveMask(B, Base.Scope, withPadding(B, Base.Scope, Allowed, Padding, D), D);
}

void markSdpaSkips(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D, TensorId Mask) {
  B.tensor(Mask).SdpaSkipsMask = !D.Padded && (M.SlidingWindow <= 0 || D.Seq < M.SlidingWindow);
}

void markKvCache(OnnxGraphBuilder &B, TensorId K, TensorId V) {
  B.tensor(K).KvCache = true;
  B.tensor(V).KvCache = true;
}

std::pair<TensorId, TensorId> rotaryTables(OnnxGraphBuilder &B, const Module &Base,
                                           const HfModel &M, TensorId Positions,
                                           const std::string &Prefix,
                                           std::optional<double> Theta) {
  Module Rope = Base.child("rotary_emb");
  int64_t Half = M.RotaryDim / 2;
  const double Base10 = Theta.value_or(M.RopeTheta);
  TensorId InvFreq =
      B.stored(Rope.param(Prefix + "inv_freq"), {Half}, DType::Float32, TensorKind::Buffer);
  // 5.x keeps an unused clone for dynamic RoPE variants; it is part of the model's memory.
  TensorId Original = B.stored(Rope.param(Prefix + "original_inv_freq"), {Half}, DType::Float32,
                               TensorKind::Buffer);
  // Values only where they are exact: scaled RoPE variants rewrite them.
  if (Half <= Tensor::SmallValueLimit && !M.RopeScaled)
    for (int64_t I = 0; I < Half; ++I) {
      float Exponent = static_cast<float>(2 * I) / static_cast<float>(M.RotaryDim);
      double V = 1.0f / std::pow(static_cast<float>(Base10), Exponent);
      B.tensor(InvFreq).FloatValues.push_back(V);
      B.tensor(Original).FloatValues.push_back(V);
    }
  TensorId PositionIds = B.unsqueeze(Base.Scope, Positions, {0});
  TensorId Pos = B.cast(Rope.Scope, B.unsqueeze(Rope.Scope, PositionIds, {2}), DType::Float32);
  TensorId Freqs = B.binary(Rope.Scope, "Mul", Pos, InvFreq);
  if (M.ComplexRotary) {
    // DeepseekV2RotaryEmbedding: freqs_cis = torch.polar(ones_like(freqs), freqs) *
    // attention_scaling, complex64 [1, seq, rotary_dim / 2]: the bytes of an fp32
    // [1, seq, rotary_dim], in fp32 whatever the model's dtype. Returned as the first table.
    TensorId Table = B.binary(
        Rope.Scope, "Mul",
        B.concat(Rope.Scope, {B.unary(Rope.Scope, "Cos", Freqs), B.unary(Rope.Scope, "Sin", Freqs)},
                 -1),
        B.scalar(M.RopeAttentionScaling));
    B.tensor(Table).UpcastToFp32 = true;
    return {Table, NoTensor};
  }
  if (M.GptOss) {
    // GptOssRotaryEmbedding: emb = freqs (half a head), cos = emb.cos() * attention_scaling.
    TensorId Scaling = B.scalar(M.RopeAttentionScaling);
    return {B.binary(Rope.Scope, "Mul", B.unary(Rope.Scope, "Cos", Freqs), Scaling),
            B.binary(Rope.Scope, "Mul", B.unary(Rope.Scope, "Sin", Freqs), Scaling)};
  }
  TensorId Emb = B.concat(Rope.Scope, {Freqs, Freqs}, -1);
  TensorId Cos = B.unary(Rope.Scope, "Cos", Emb), Sin = B.unary(Rope.Scope, "Sin", Emb);
  // Most families return cos.to(x.dtype); OLMo 2 keeps them fp32 (HfModel::RopeInFp32).
  B.tensor(Cos).UpcastToFp32 = B.tensor(Sin).UpcastToFp32 = M.RopeInFp32;
  return {Cos, Sin};
}

TensorId applyRotary(OnnxGraphBuilder &B, const std::string &S, TensorId X, TensorId Cos,
                     TensorId Sin, bool CastBack) {
  int64_t Rot = B.shape(Cos).back(), HeadDim = B.shape(X).back();
  TensorId Rotated = X, Pass = NoTensor;
  if (Rot < HeadDim) {
    Rotated = B.slice(S, X, 3, 0, Rot);
    Pass = B.slice(S, X, 3, Rot, SliceToEnd);
  }
  TensorId X1 = B.slice(S, Rotated, 3, 0, Rot / 2);
  TensorId X2 = B.slice(S, Rotated, 3, Rot / 2, SliceToEnd);
  TensorId Half = B.concat(S, {B.unary(S, "Neg", X2), X1}, -1);
  TensorId Emb = B.binary(S, "Add", B.binary(S, "Mul", Rotated, Cos),
                          B.binary(S, "Mul", Half, Sin));
  if (CastBack) // OLMo 2: q_embed.to(q_type) after computing with fp32 cos and sin
    Emb = B.castLike(S, Emb, X);
  return Pass == NoTensor ? Emb : B.concat(S, {Emb, Pass}, -1);
}

TensorId rotatePairs(OnnxGraphBuilder &B, const std::string &S, TensorId X1, TensorId X2,
                     TensorId Cos, TensorId Sin) {
  // Python's order: x1 * cos, x2 * sin, their difference, then the second half's.
  TensorId A = B.binary(S, "Mul", X1, Cos), Bs = B.binary(S, "Mul", X2, Sin);
  TensorId First = B.binary(S, "Sub", A, Bs);
  TensorId C = B.binary(S, "Mul", X2, Cos), D = B.binary(S, "Mul", X1, Sin);
  TensorId Second = B.binary(S, "Add", C, D);
  return B.concat(S, {First, Second}, -1);
}

TensorId applyHalfRotary(OnnxGraphBuilder &B, const std::string &S, TensorId X, TensorId Cos,
                         TensorId Sin) {
  const int64_t Half = B.shape(X).back() / 2;
  std::vector<TensorId> H = B.split(S, X, -1, {Half, Half}); // torch.chunk(x, 2, dim=-1)
  return rotatePairs(B, S, H[0], H[1], Cos, Sin);
}

TensorId softcap(OnnxGraphBuilder &B, const std::string &S, TensorId X, double Cap,
                 const std::string &OutName) {
  TensorId Tanh = B.unary(S, "Tanh", B.binary(S, "Div", X, B.scalar(Cap)));
  if (!OutName.empty())
    B.nameNextOutput(OutName);
  return B.binary(S, "Mul", Tanh, B.scalar(Cap));
}

TensorId attention(OnnxGraphBuilder &B, const std::string &S, TensorId Q, TensorId K, TensorId V,
                   TensorId Mask, double Scale, int64_t Groups, EagerSoftmax Softmax,
                   double Softcap, TensorId Sinks) {
  if (Groups > 1) {
    // hidden[:, :, None].expand(b, kv, n_rep, s, d).reshape(b, kv * n_rep, s, d)
    auto RepeatKv = [&](TensorId X) {
      const Shape In = B.shape(X);
      TensorId E = B.expand(S, B.unsqueeze(S, X, {2}), {In[0], In[1], Groups, In[2], In[3]});
      return B.reshape(S, E, {In[0], In[1] * Groups, In[2], In[3]});
    };
    K = RepeatKv(K);
    V = RepeatKv(V);
  }
  // The heads merged back; the function's locals (the repeated keys and values) are held
  // until it returns.
  auto Returned = [&, Kr = Groups > 1 ? K : NoTensor, Vr = Groups > 1 ? V : NoTensor](TensorId Out) {
    const Shape &O = B.shape(Out);
    TensorId Merged = B.reshape(S, Out, {O[0], O[1], O[2] * O[3]});
    B.holdUntil(Kr, Merged);
    B.holdUntil(Vr, Merged);
    return Merged;
  };
  TensorId Scores = B.matmul(S, Q, B.transpose(S, K, {0, 1, 3, 2}));
  if (Scale != 1.0)
    Scores = B.binary(S, "Mul", Scores, B.scalar(Scale));
  if (Softcap > 0)
    Scores = softcap(B, S, Scores, Softcap);
  if (Mask != NoTensor)
    Scores = B.binary(S, "Add", Scores, Mask);
  if (Sinks != NoTensor) {
    // gpt-oss: each head's sink logit joins every row (sinks.reshape(1, -1, 1, 1).expand,
    // torch.cat), the row's max is taken off (`max(dim=-1, keepdim=True).values`, which
    // keeps its indices for the backward: a TopK of 1), softmax(dtype=its own dtype), and
    // the sink's column dropped (a view) before `.to(value.dtype)`.
    const Shape Sc = B.shape(Scores);
    TensorId Column = B.expand(S, B.reshape(S, Sinks, {1, Sc[1], 1, 1}), {Sc[0], Sc[1], Sc[2], 1});
    TensorId Joined = B.concat(S, {Scores, Column}, -1);
    const Shape J = B.shape(Joined);
    std::vector<TensorId> Max =
        B.node(S, "TopK", {Joined, B.ints({1})}, {{J[0], J[1], J[2], 1}, {J[0], J[1], J[2], 1}},
               DType::Float32, {{"axis", int64_t{-1}}, {"largest", int64_t{1}}, {"sorted", int64_t{1}}});
    B.tensor(Max[1]).Type = DType::Int64;
    TensorId Shifted = B.binary(S, "Sub", Joined, Max[0]);
    TensorId Probs = B.op(S, "Softmax", {Shifted}, J, DType::Float32, {{"axis", int64_t{-1}}});
    TensorId Weights = B.castLike(S, B.slice(S, Probs, 3, 0, Sc[3]), V);
    TensorId Out = B.transpose(S, B.matmul(S, Weights, V), {0, 2, 1, 3});
    // The function's locals: `attn_weights` (the masked scores) is rebound only to the cast
    // probabilities, `combined_logits` (the shifted ones) lives until it returns. Measured
    // on torch 2.15 (autocast, a checkpointed block's recomputation: its peak).
    B.holdUntil(Scores, Weights);
    B.holdUntil(Shifted, Out);
    return Returned(Out);
  }
  // With dtype=torch.float32 the probabilities are computed (and kept for the backward) in
  // fp32 whatever the model's dtype (Tensor::UpcastToFp32), then cast (CastLike). SDPA
  // runs all of it inside its kernel.
  TensorId Probs = B.op(S, "Softmax", {Scores}, B.shape(Scores), DType::Float32,
                        {{"axis", int64_t{-1}}});
  if (Softmax == EagerSoftmax::Fp32ToQuery) {
    B.tensor(Probs).UpcastToFp32 = true;
    Probs = B.castLike(S, Probs, Q);
    // `attn_weights = softmax(attn_weights, dtype=torch.float32).to(query.dtype)`: the
    // scores stay bound to the name until the cast's result replaces them.
    B.holdUntil(Scores, Probs);
  } else if (Softmax == EagerSoftmax::ToValue) {
    Probs = B.castLike(S, Probs, V);
  }
  return Returned(B.transpose(S, B.matmul(S, Probs, V), {0, 2, 1, 3}));
}

TensorId gatedMlp(OnnxGraphBuilder &B, const Module &Mlp, const HfModel &M, TensorId X,
                  int64_t Width) {
  const int64_t H = M.Hidden;
  // down_proj(act_fn(gate_proj(x)) * up_proj(x)): Python evaluates the activation before
  // up_proj, so its output is live through up_proj (measured: LLaMA with LoRA on every
  // linear in bf16, checkpointed, peaks in the MLP's recomputation with it).
  TensorId Gate = linear(B, Mlp.child("gate_proj"), X, H, Width, M.MlpBias);
  TensorId Act = activation(B, Mlp.child("act_fn").Scope, Gate, M.Act);
  TensorId Up = linear(B, Mlp.child("up_proj"), X, H, Width, M.MlpBias);
  return linear(B, Mlp.child("down_proj"), B.binary(Mlp.Scope, "Mul", Act, Up), Width, H,
                M.MlpBias);
}

void questionAnsweringHead(OnnxGraphBuilder &B, const HfModel &M, TensorId X) {
  // transformers: logits = qa_outputs(x); start, end = logits.split(1, -1); each
  // .squeeze(-1).contiguous(). Here the [batch, seq, 2] logits are viewed as [2, batch,
  // seq] and reshaped to rows: not a view of that layout, so one copy with the bytes of
  // the two contiguous ones.
  const Module Qa = Module().child("qa_outputs");
  const Shape XS = B.shape(X); // a copy: the builder's tensors move as the head adds its own
  TensorId Logits = linear(B, Qa, X, M.Hidden, 2, true);
  TensorId ByEnd = B.transpose(Qa.Scope, Logits, {2, 0, 1});
  B.nameNextOutput("logits");
  B.markOutput(B.reshape(Qa.Scope, ByEnd, {2 * XS[0], XS[1]}));
}

/// The output projection of a causal LM, or the base model's last hidden state.
void finishDecoder(OnnxGraphBuilder &B, const HfModel &M, TensorId X, TensorId Embedding,
                   const Module &Head, TensorId Ids) {
  if (M.Head == HeadKind::BaseModel) {
    B.markOutput(X);
    return;
  }
  B.holdThroughLoss(X); // the head's `outputs`, holding last_hidden_state
  const Module Root;
  if (M.Head == HeadKind::QuestionAnswering) {
    questionAnsweringHead(B, M, X);
    return;
  }
  if (M.Head == HeadKind::TokenClassification) {
    // GenericForTokenClassification: score(dropout(hidden)), with a bias; GPT-2's and
    // GPT-NeoX's name theirs `classifier`.
    TensorId Dropped = B.dropout(Root.child("dropout").Scope, X, M.ClassifierDropout);
    Module Cls = Root.child(
        M.Family == ArchFamily::Llama || M.Family == ArchFamily::Phi ? "score" : "classifier");
    TensorId W = B.parameter(Cls.param("weight"), {M.Hidden, M.NumLabels});
    TensorId Scores = B.matmul(Cls.Scope, Dropped, W);
    B.nameNextOutput("logits");
    B.markOutput(B.binary(Cls.Scope, "Add", Scores, B.parameter(Cls.param("bias"), {M.NumLabels})));
    return;
  }
  if (M.Head == HeadKind::SequenceClassification) {
    // GenericForSequenceClassification (and GPT-2's, GPT-NeoX's): score every token without
    // a bias, then keep each row's logits at its last token that is not padding:
    // `(arange(seq, int32) * (input_ids != pad).int()).argmax(-1)`, and
    // `logits[arange(batch), last]`, here a gather from the flattened [batch * seq,
    // labels] logits (the same saved indices and dense gradient). Without a pad token
    // (batch 1 only, which the importer checks) the last token.
    Module Score = Root.child("score");
    const std::string &S = Score.Scope;
    const Shape &XS = B.shape(X);
    const int64_t Batch = XS[0], Seq = XS[1];
    TensorId W = B.parameter(Score.param("weight"), {M.Hidden, M.NumLabels});
    TensorId Logits = B.matmul(S, X, W);
    TensorId Last;
    if (M.PadToken >= 0) {
      TensorId Pad = B.op(S, "Equal", {Ids, B.ints({M.PadToken}, true)}, {Batch, Seq},
                          DType::Bool);
      TensorId NonPad = B.cast(S, B.op(S, "Not", {Pad}, {Batch, Seq}, DType::Bool), DType::Int32);
      TensorId Index = B.op(S, "Mul", {B.cast(S, B.range(S, Seq), DType::Int32), NonPad},
                            {Batch, Seq}, DType::Int32);
      Last = B.op(S, "ArgMax", {Index}, {Batch}, DType::Int64,
                  {{"axis", int64_t(-1)}, {"keepdims", int64_t(0)}});
    } else {
      Last = B.ints({Seq - 1});
    }
    TensorId RowStart = B.op(S, "Mul", {B.range(S, Batch), B.ints({Seq}, true)}, {Batch},
                             DType::Int64);
    TensorId Rows = B.op(S, "Add", {RowStart, Last}, {Batch}, DType::Int64);
    TensorId Flat = B.reshape(S, Logits, {Batch * Seq, M.NumLabels});
    B.nameNextOutput("logits");
    B.markOutput(B.gather(S, Flat, Rows));
    return;
  }
  // A tied head reads the embedding itself: no stored `lm_head.weight`, a Transpose view.
  TensorId W = M.Tie ? B.transpose(Head.Scope, Embedding, {1, 0})
                     : B.parameter(Head.param("weight"), {M.Hidden, M.Vocab});
  if (M.Granite) { // logits = lm_head(x) / logits_scaling
    TensorId Raw = B.matmul(Head.Scope, X, W);
    B.nameNextOutput("logits");
    B.markOutput(B.binary(Head.Scope, "Div", Raw, B.scalar(M.LogitsScaling)));
    return;
  }
  if (M.FinalSoftcap <= 0 && M.LmHeadBias) { // Phi: nn.Linear(hidden, vocab, bias=True)
    TensorId Raw = B.matmul(Head.Scope, X, W);
    TensorId Bias = B.parameter(Head.param("bias"), {M.Vocab});
    B.nameNextOutput("logits");
    B.markOutput(B.binary(Head.Scope, "Add", Raw, Bias));
    return;
  }
  if (M.FinalSoftcap <= 0) {
    B.nameNextOutput("logits");
    B.markOutput(B.matmul(Head.Scope, X, W));
    return;
  }
  // Gemma 2: logits = cap * tanh(lm_head(x) / cap) (in Gemma2ForCausalLM.forward; the ops
  // are attributed to the head, whose output they rewrite).
  B.markOutput(softcap(B, Head.Scope, B.matmul(Head.Scope, X, W), M.FinalSoftcap, "logits"));
}

} // namespace hf

namespace {

using hf::Activation;
using hf::ArchFamily;
using hf::BoundDims;
using hf::DefaultBatch;
using hf::DefaultSeq;
using hf::fileError;
using hf::HeadKind;
using hf::HfModel;

//===-- Dims and the entry point ----------------------------------------------------===//

llvm::Expected<BoundDims> bindDims(const ImportOptions &Options, const HfModel &M,
                                   llvm::StringRef File, Diagnostics &Diags) {
  std::vector<std::string> InputNames = {"input_ids"};
  if (M.Family == ArchFamily::Bert)
    InputNames = {"input_ids", "token_type_ids", "attention_mask"};
  else if (Options.PaddedBatches)
    InputNames = {"input_ids", "attention_mask"};
  // A misspelt dim (--dim sequence=4096) would otherwise be ignored without a word.
  const bool Choices = M.Head == HeadKind::MultipleChoice;
  for (const DimBinding &B : Options.Dims)
    if (B.Name != "batch" && B.Name != "seq" && !(Choices && B.Name == "choices"))
      return fileError(File, "--dim " + B.Name + ": a Hugging Face config has the dims batch " +
                                 "and seq only" +
                                 (B.Name == "choices" ? " (choices: a ...ForMultipleChoice head's)"
                                                      : ""));
  std::optional<int64_t> Batch = lookupDim(Options, "batch");
  std::optional<int64_t> Seq = lookupDim(Options, "seq");
  std::optional<int64_t> ChoiceCount = lookupDim(Options, "choices");
  std::optional<InputShape> FromInput;
  const char *Layout = Choices ? "[batch, choices, seq]" : "[batch, seq]";
  for (const InputShape &In : Options.Inputs) {
    if (llvm::find(InputNames, In.Name) == InputNames.end())
      return fileError(File, "--input names '" + In.Name + "', but this model's inputs are " +
                                 llvm::join(InputNames, ", "));
    if (In.Dims.size() != (Choices ? 3u : 2u))
      return fileError(File, "--input " + In.Name + " has " + std::to_string(In.Dims.size()) +
                                 " dims; expected " + std::to_string(Choices ? 3 : 2) + " (" +
                                 Layout + ")");
    if (FromInput && FromInput->Dims != In.Dims)
      return fileError(File, "--input " + In.Name + " and --input " + FromInput->Name +
                                 " differ; every input of this model is " + Layout);
    FromInput = In;
    Batch = In.Dims[0];
    Seq = In.Dims.back();
    if (Choices)
      ChoiceCount = In.Dims[1];
  }
  if (Options.MicroBatch) // `--micro-batch` sets dim 0 of every batch input
    Batch = Options.MicroBatch;
  BoundDims D;
  D.Padded = Options.PaddedBatches;
  if (Choices) {
    if (!ChoiceCount) {
      ChoiceCount = 4;
      Diags.note("dim-default", "choices",
                 "choices not given; using 4 sequences per row (SWAG's, RACE's); --dim "
                 "choices=N for another count");
    }
    D.Choices = *ChoiceCount;
    if (D.Choices <= 0)
      return fileError(File, "dim 'choices' is " + std::to_string(D.Choices) +
                                 "; expected a positive integer");
  }
  D.Batch = Batch.value_or(DefaultBatch);
  if (D.Batch <= 0)
    return fileError(File, "dim 'batch' is " + std::to_string(D.Batch) +
                               "; expected a positive integer");
  // RoBERTa numbers positions from pad_token_id + 1: 514 rows hold 512 tokens.
  const int64_t Longest = M.Roberta ? M.MaxPositions - M.PadToken - 1 : M.MaxPositions;
  if (M.LearnedPositions && Longest < 1)
    return fileError(File, "max_position_embeddings " + std::to_string(M.MaxPositions) +
                               " leaves no position after pad_token_id " +
                               std::to_string(M.PadToken) + " (RoBERTa numbers positions "
                               "from pad_token_id + 1)");
  if (!Seq && M.LearnedPositions && Longest < DefaultSeq) {
    // The default would always be rejected below: take the longest sequence it allows.
    Seq = Longest;
    Diags.note("dim-default", "seq",
               std::string("seq not given; using the model's max_position_embeddings") +
                   (M.Roberta ? " less pad_token_id + 1, " : " ") + std::to_string(Longest));
  }
  D.Seq = Seq.value_or(DefaultSeq);
  if (D.Seq <= 0)
    return fileError(File, "dim 'seq' is " + std::to_string(D.Seq) +
                               "; expected a positive integer");
  if (M.LearnedPositions && D.Seq > Longest)
    return fileError(File, "seq " + std::to_string(D.Seq) + " exceeds the " +
                               std::to_string(Longest) + " learned positions of this " +
                               M.ModelType + " model (max_position_embeddings" +
                               (M.Roberta ? " less pad_token_id + 1" : "") +
                               "); expected seq <= " + std::to_string(Longest));
  return D;
}

std::string modelName(const llvm::json::Object &Obj, llvm::StringRef Path) {
  if (std::optional<llvm::StringRef> Name = Obj.getString("_name_or_path"))
    if (!Name->empty())
      return Name->str();
  llvm::StringRef Dir = llvm::sys::path::filename(llvm::sys::path::parent_path(Path));
  return (Dir.empty() || Dir == ".") ? llvm::sys::path::stem(Path).str() : Dir.str();
}

} // namespace

llvm::Expected<Graph> importHfConfig(const std::string &Path, const ImportOptions &Options) {
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> Buffer =
      llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  if (!Buffer)
    return fileError(Path, "cannot read: " + Buffer.getError().message());
  llvm::Expected<llvm::json::Value> Json = parseJson((*Buffer)->getBuffer());
  if (!Json)
    return fileError(Path, "not valid JSON: " + llvm::toString(Json.takeError()));
  const llvm::json::Object *Obj = Json->getAsObject();
  if (!Obj)
    return fileError(Path, "expected a JSON object at the top level (a config.json)");

  Graph G;
  llvm::Expected<HfModel> M = hf::readHfModel(*Obj, Path, G.Diags);
  if (!M)
    return M.takeError();
  llvm::Expected<BoundDims> D = bindDims(Options, *M, Path, G.Diags);
  if (!D)
    return D.takeError();

  if (M->Head == HeadKind::SequenceClassification && M->Family != ArchFamily::Bert &&
      M->PadToken < 0 && D->Batch > 1)
    return fileError(Path, "field 'pad_token_id' is missing or null: a decoder's sequence "
                           "classifier finds each row's last token by it, and transformers "
                           "refuses batches above 1 without one (\"Cannot handle batch sizes "
                           "> 1 if no padding token is defined\"); set pad_token_id in the "
                           "config (a tokenizer's pad token), or train with batch 1");
  G.Name = modelName(*Obj, Path);
  G.SourcePath = Path;
  G.SourceFormat = "hf-config";
  G.Architecture = Obj->getString("model_type").value_or("").str();
  G.OpsetVersion = 17;
  G.Dims = {{"batch", D->Batch}, {"seq", D->Seq}};
  if (D->Choices > 0)
    G.Dims.push_back({"choices", D->Choices});
  G.DeclaredTieWordEmbeddings = M->Tie;
  // transformers' causal-LM loss (ForCausalLMLoss) starts with logits.float();
  // BertForMaskedLM calls CrossEntropyLoss on the logits as they are.
  // The decoders' token classifiers go through ForTokenClassification, which upcasts too
  // (GPT-2's calls CrossEntropyLoss itself); sequence classifiers take the logits as they are.
  G.LossShiftsLabels = M->Head == HeadKind::CausalLm;
  G.LossUpcastsLogits = M->Head == HeadKind::CausalLm ||
                        (M->Head == HeadKind::TokenClassification &&
                         (M->Family == ArchFamily::Llama || M->Family == ArchFamily::GptNeoX ||
                          M->Family == ArchFamily::Phi));
  G.TrainingKvCache = M->UseCache;
  G.PaddedBatches = D->Padded;
  // Training-time dropout the config asks for, each at the place the family's modeling code
  // applies it (transformers 5).
  auto Prob = [&](std::initializer_list<const char *> Keys) {
    for (const char *Key : Keys)
      if (std::optional<double> P = Obj->getNumber(Key); P && *P > 0 && *P < 1)
        return *P;
    return 0.0;
  };
  Graph::DropoutSites Sites;
  switch (M->Family) {
  case ArchFamily::Llama: // the probabilities; Phi-3 also its residual dropout
    Sites.Attention = Prob({"attention_dropout"});
    // Phi-3 drops out both residual branches; its config's embd_pdrop is read by nothing in
    // transformers 5 (Phi3Model has no embedding dropout; measured: a Phi-3 with embd_pdrop
    // 0.1 trains as one without, which the prediction had dropped out, +0.87%).
    if (M->ModelType == "phi3")
      Sites.Residual = Prob({"resid_pdrop"});
    // StarCoder2 drops out o_proj's and c_proj's outputs; its embeddings' dropout is the
    // builder's (HfModel::EmbeddingDropout).
    if (M->ModelType == "starcoder2")
      Sites.Residual = Prob({"residual_dropout"});
    break;
  case ArchFamily::Gpt2:
    Sites = {Prob({"attn_pdrop"}), Prob({"resid_pdrop"}), Prob({"embd_pdrop"})};
    break;
  case ArchFamily::GptNeoX: // post_attention / post_mlp and emb_dropout: hidden_dropout
    Sites = {Prob({"attention_dropout"}), Prob({"hidden_dropout"}), Prob({"hidden_dropout"})};
    break;
  case ArchFamily::Phi: // resid_dropout after attention and after the MLP, embed_dropout
    Sites = {Prob({"attention_dropout"}), Prob({"resid_pdrop"}), Prob({"embd_pdrop"})};
    break;
  case ArchFamily::Opt: // `dropout` on both residual branches; none on the embeddings
    Sites = {Prob({"attention_dropout"}), Prob({"dropout"}), 0.0};
    break;
  case ArchFamily::GptJ: // resid_dropout and the MLP's dropout; `drop` is the builder's
    Sites = {Prob({"attn_pdrop"}), Prob({"resid_pdrop"}), 0.0};
    break;
  case ArchFamily::Bert:
    Sites = {Prob({"attention_probs_dropout_prob"}), Prob({"hidden_dropout_prob"}),
             Prob({"hidden_dropout_prob"})};
    if (M->DistilBert) // no dropout after out_lin: the FFN's is the builder's (DropoutAt)
      Sites = {Prob({"attention_dropout"}), 0.0, Prob({"dropout"})};
    break;
  }
  G.DeclaredDropoutSites = Sites;
  // The largest of them, for the note that says dropout came from the config (a probability
  // the model's code never applies, such as a causal LM's classifier_dropout, is not one).
  // (The builder's own sites, Graph::DropoutAt, join in once the graph is built.)
  if (double Largest = std::max({Sites.Attention, Sites.Residual, Sites.Embedding});
      Largest > 0)
    G.DeclaredDropout = Largest;
  // The weights' dtype as saved (transformers 5 writes `dtype`, 4.x `torch_dtype`).
  for (const char *Key : {"dtype", "torch_dtype"})
    if (std::optional<llvm::StringRef> T = Obj->getString(Key)) {
      if (*T == "float32")
        G.DeclaredWeightType = DType::Float32;
      else if (*T == "bfloat16")
        G.DeclaredWeightType = DType::BFloat16;
      else if (*T == "float16")
        G.DeclaredWeightType = DType::Float16;
      break;
    }
  G.DeclaredCheckpointQuantization = M->CheckpointQuantization;
  // transformers runs attention through torch's scaled_dot_product_attention unless the
  // config pins another implementation.
  std::optional<llvm::StringRef> Impl = Obj->getString("attn_implementation");
  if (!Impl)
    Impl = Obj->getString("_attn_implementation");
  G.DeclaredFusedAttention = !Impl || *Impl == "sdpa" || Impl->startswith("flash");
  if (M->AttnSoftcap > 0) {
    // Gemma 2 (_supports_sdpa = False): transformers runs its soft-capped attention eagerly
    // by default, and refuses SDPA, which has no cap.
    G.DeclaredFusedAttention = false;
    if (Impl && *Impl == "sdpa")
      G.Diags.warning("attention-softcap", "attn_implementation",
                      "attn_implementation \"sdpa\" cannot run attn_logit_softcapping "
                      "(transformers refuses it for this model); modelling eager attention");
  }
  if (M->GptOss) {
    // GptOssPreTrainedModel._supports_sdpa = False: transformers refuses SDPA and runs the
    // sinks' attention eagerly (flash-attention kernels from the hub aside).
    G.DeclaredFusedAttention = false;
    if (Impl && *Impl == "sdpa")
      G.Diags.warning("attention-sinks", "attn_implementation",
                      "attn_implementation \"sdpa\" cannot run gpt-oss's attention sinks "
                      "(transformers refuses it for this model); modelling eager attention");
  }
  if (M->RopeScaled)
    G.Diags.note("rope-scaling", "rope_scaling",
                 "scaled RoPE changes inv_freq values only; shapes and memory are unchanged");

  OnnxGraphBuilder B(G);
  switch (M->Family) {
  case ArchFamily::Llama: buildLlamaFamily(B, *M, *D); break;
  case ArchFamily::Gpt2: buildGpt2(B, *M, *D); break;
  case ArchFamily::GptNeoX: buildGptNeoX(B, *M, *D); break;
  case ArchFamily::Phi: buildPhi(B, *M, *D); break;
  case ArchFamily::Opt: buildOpt(B, *M, *D); break;
  case ArchFamily::GptJ: buildGptJ(B, *M, *D); break;
  case ArchFamily::Bert: buildBert(B, *M, *D); break;
  }
  if (!G.finalize())
    return fileError(Path, "internal error: the built graph has a cycle");
  for (auto [T, P] : G.DropoutAt)
    if (P > G.DeclaredDropout.value_or(0.0))
      G.DeclaredDropout = P;
  if (M->Head == HeadKind::SequenceClassification || M->Head == HeadKind::TokenClassification ||
      M->Head == HeadKind::QuestionAnswering) {
    // PEFT's classification and question-answering task types wrap the head modules it
    // knows by name.
    G.PeftTaskType = M->Head == HeadKind::SequenceClassification ? "SEQ_CLS"
                     : M->Head == HeadKind::TokenClassification  ? "TOKEN_CLS"
                                                                 : "QUESTION_ANS";
    for (const char *Name : {"classifier", "score", "qa_outputs"})
      if (llvm::any_of(G.Tensors, [&](const Tensor &T) {
            return T.Kind == TensorKind::Parameter &&
                   llvm::StringRef(T.Name).startswith(std::string(Name) + ".");
          }))
        G.ClassifierModules.push_back(Name);
  }
  if (llvm::Error E = G.checkLimits(Path))
    return E;
  return G;
}

} // namespace trainmem
