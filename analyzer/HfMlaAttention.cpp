//===- HfMlaAttention.cpp - DeepSeek-V3's multi-head latent attention ---------------===//
//
// DeepseekV3Attention as transformers 5.24 trains it: the query through its low-rank
// bottleneck (q_a_proj, an RMSNorm, q_b_proj) or q_proj, split per head into channels
// without position and rotated ones; keys and values from one compressed latent
// (kv_a_proj_with_mqa, which also gives a rotated key shared by every head, an RMSNorm,
// then kv_b_proj per head); the latent and the shared rotated key are what the cache
// keeps; each head's key is its unrotated part and the shared rotated one copied into a
// new tensor (new_empty and two copy_, a Concat here), and attention runs on queries and
// keys qk_nope + qk_rope wide and values v_head_dim wide.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/HfGraphParts.h"

namespace trainmem::hf {
namespace {

/// apply_rotary_pos_emb_interleave on one of q/k [batch, heads, seq, rope]: the tables'
/// first halves (cos[..., :rope / 2], one angle per pair), the pairs' even and odd channels
/// (strided views), cat(x1 * cos - x2 * sin, x2 * cos + x1 * sin).
TensorId interleavedRotary(OnnxGraphBuilder &B, const std::string &S, TensorId X, TensorId Cos,
                           TensorId Sin) {
  TensorId X1 = B.slice(S, X, 3, 0, SliceToEnd, 2);
  TensorId X2 = B.slice(S, X, 3, 1, SliceToEnd, 2);
  return rotatePairs(B, S, X1, X2, Cos, Sin);
}

} // namespace

TensorId mlaAttention(OnnxGraphBuilder &B, const Module &Attn, const HfModel &M, TensorId X,
                      TensorId Cos, TensorId Sin, TensorId Mask, double Scale) {
  const std::string &AS = Attn.Scope;
  const Shape In = B.shape(X);
  const int64_t Batch = In[0], Seq = In[1], H = M.Hidden, Heads = M.Heads;
  const int64_t Qk = M.HeadDim, Nope = M.QkNopeDim, Rope = M.QkRopeDim, Vd = M.VHeadDim;
  const int64_t Kl = M.KvLoraRank;
  // q_states = q_b_proj(q_a_layernorm(q_a_proj(x))) (or q_proj(x)), viewed per head.
  TensorId Q;
  if (M.QLoraRank > 0) {
    TensorId Low = linear(B, Attn.child("q_a_proj"), X, H, M.QLoraRank, M.QkvBias);
    Low = rmsNorm(B, Attn.child("q_a_layernorm"), M, Low);
    Q = linear(B, Attn.child("q_b_proj"), Low, M.QLoraRank, Heads * Qk, false);
  } else {
    Q = linear(B, Attn.child("q_proj"), X, H, Heads * Qk, false);
  }
  Q = splitHeads(B, AS, Q, Heads, Qk);
  std::vector<TensorId> QParts = B.split(AS, Q, -1, {Nope, Rope}); // q_pass, q_rot
  // compressed_kv = kv_a_proj_with_mqa(x); kv_nope, k_rot = split; kv_a_layernorm(kv_nope).
  TensorId Compressed = linear(B, Attn.child("kv_a_proj_with_mqa"), X, H, Kl + Rope, M.QkvBias);
  std::vector<TensorId> KvParts = B.split(AS, Compressed, -1, {Kl, Rope});
  TensorId KvNope = B.reshape(AS, rmsNorm(B, Attn.child("kv_a_layernorm"), M, KvParts[0]),
                              {Batch, 1, Seq, Kl});
  TensorId KRot = B.reshape(AS, KvParts[1], {Batch, 1, Seq, Rope});
  TensorId QRot;
  if (M.ComplexRotary) {
    // DeepSeek-V2's apply_rotary_emb: view_as_complex(x.float().reshape(..., -1, 2)) times
    // the complex table, view_as_real(...).flatten(3).type_as(x): one product of x's bytes
    // in fp32 (the table kept for the backward), cast back.
    TensorId Table = B.unsqueeze(AS, Cos, {1});
    auto Rotate = [&](TensorId Part) {
      return B.castLike(AS, B.binary(AS, "Mul", B.upcastToFp32(AS, Part), Table), Part);
    };
    QRot = Rotate(QParts[1]);
    KRot = Rotate(KRot);
  } else if (M.RopeInterleave) {
    TensorId C = B.unsqueeze(AS, B.slice(AS, Cos, 2, 0, Rope / 2), {1});
    TensorId S = B.unsqueeze(AS, B.slice(AS, Sin, 2, 0, Rope / 2), {1});
    QRot = interleavedRotary(B, AS, QParts[1], C, S);
    KRot = interleavedRotary(B, AS, KRot, C, S);
  } else {
    TensorId C = B.unsqueeze(AS, Cos, {1}), S = B.unsqueeze(AS, Sin, {1});
    QRot = applyRotary(B, AS, QParts[1], C, S);
    KRot = applyRotary(B, AS, KRot, C, S);
  }
  // The cache keeps the latent and the shared rotated key (cache.update rebinds both).
  markKvCache(B, KvNope, KRot);
  TensorId Query = B.concat(AS, {QParts[0], QRot}, -1);
  // expand_kv: kv_b_proj(kv_nope).view(b, s, heads, nope + v).transpose(1, 2), split into
  // k_nope and the values; the key a new tensor of k_nope and k_rot expanded to the heads.
  TensorId Kv = linear(B, Attn.child("kv_b_proj"), KvNope, Kl, Heads * (Nope + Vd), false);
  Kv = B.transpose(AS, B.reshape(AS, Kv, {Batch, Seq, Heads, Nope + Vd}), {0, 2, 1, 3});
  std::vector<TensorId> KvHeads = B.split(AS, Kv, -1, {Nope, Vd});
  TensorId Key =
      B.concat(AS, {KvHeads[0], B.expand(AS, KRot, {Batch, Heads, Seq, Rope})}, -1);
  TensorId Value = KvHeads[1];
  TensorId Merged = attention(B, AS, Query, Key, Value, Mask, Scale, Heads / M.KvHeads,
                              EagerSoftmax::Fp32ToQuery);
  TensorId O = linear(B, Attn.child("o_proj"), Merged, Heads * Vd, H, M.OutBias);
  // The forward's locals live until it returns: q_states, compressed_kv, the rotated q and
  // k, the latent, the query, key and value states.
  for (TensorId Local : {Q, Compressed, QRot, KvNope, KRot, Query, Key, Value})
    B.holdUntil(Local, O);
  return O;
}

} // namespace trainmem::hf
