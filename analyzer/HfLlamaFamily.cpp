//===- HfLlamaFamily.cpp - the LLaMA family from its configs ----------------------===//
//
// LlamaForCausalLM and the families that share its layers in transformers 5.x, built from
// the blocks of HfGraphParts.h (HfConfigImporter.cpp defines them).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/HfGraphParts.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringRef.h"

#include <cmath>
#include <tuple>

namespace trainmem::hf {

/// LlamaForCausalLM and its descendants MistralForCausalLM, Qwen2ForCausalLM,
/// Qwen3ForCausalLM, GemmaForCausalLM and Phi3ForCausalLM (RMSNorm, rotary, gated MLP,
/// grouped-query attention; Qwen3 normalises each head of q and k; Phi-3 fuses the q/k/v
/// and the gate/up projections and may rotate part of each head), and the
/// mixture-of-experts MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM and
/// OlmoeForCausalLM (sparseMoe in place of the MLP in their expert layers).
void buildLlamaFamily(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden, Hd = M.HeadDim;
  Module Root;
  // LlamaForQuestionAnswering, Qwen2's, Qwen3's and Qwen3-MoE's keep the base model as
  // `transformer` (their base_model_prefix, for old checkpoints); every other head, `model`.
  static constexpr llvm::StringLiteral QaTransformerTypes[] = {"llama", "qwen2", "qwen3",
                                                               "qwen3_moe", "smollm3"};
  const bool QaTransformer = M.Head == HeadKind::QuestionAnswering &&
                             llvm::is_contained(QaTransformerTypes, M.ModelType);
  auto [Base, Embed, EmbedW, Padding, X, Ids] =
      decoderStart(B, M, D, QaTransformer ? "transformer" : "model", "embed_tokens");
  if (M.GemmaNorm) {
    // GemmaTextScaledWordEmbedding multiplies by a sqrt(hidden) buffer.
    TensorId Scale = B.stored(Embed.param("embed_scale"), {}, DType::Float32, TensorKind::Buffer);
    B.tensor(Scale).FloatValues = {std::sqrt(static_cast<double>(H))};
    X = B.binary(Embed.Scope, "Mul", X, Scale);
  }
  if (M.Granite) // GraniteModel: inputs_embeds * embedding_multiplier
    X = B.binary(Base.Scope, "Mul", X, B.scalar(M.EmbeddingMultiplier));
  const TensorId InputsEmbeds = X;
  // LLaMA's RMSNorm, or StarCoder2's LayerNorm.
  auto Norm = [&](const Module &Mod, TensorId In, const std::string &OutName = "") {
    return M.LayerNormBlocks ? layerNorm(B, Mod, M, In, OutName) : rmsNorm(B, Mod, M, In, OutName);
  };
  // cache_position = arange(seq): the rotary position ids and the causal mask share it.
  TensorId Positions = decoderPositions(B, Base, D);
  // Gemma 3 mixes sliding-window layers into full ones: each type has its rotary tables
  // (its own base) and its mask, all made once per forward.
  TensorId Cos = NoTensor, Sin = NoTensor, Mask = NoTensor;
  TensorId LocalCos = NoTensor, LocalSin = NoTensor, LocalMask = NoTensor;
  if (!M.SlidingLayers.empty() && !M.RopePerLayerType) {
    // Gemma 2: one rotary table, a mask per layer type.
    std::tie(Cos, Sin) = rotaryTables(B, Base, M, Positions);
    LocalCos = Cos;
    LocalSin = Sin;
    if (llvm::is_contained(M.SlidingLayers, false)) {
      Mask = causalMask(B, Base, Positions, D, Padding);
      B.tensor(Mask).SdpaSkipsMask = !D.Padded;
    }
    if (llvm::is_contained(M.SlidingLayers, true)) {
      LocalMask = causalMask(B, Base, Positions, D, Padding);
      markSdpaSkips(B, M, D, LocalMask);
    }
  } else if (!M.SlidingLayers.empty()) {
    if (llvm::is_contained(M.SlidingLayers, false)) {
      std::tie(Cos, Sin) = rotaryTables(B, Base, M, Positions, "full_attention_");
      Mask = causalMask(B, Base, Positions, D, Padding);
      B.tensor(Mask).SdpaSkipsMask = !D.Padded;
    }
    if (llvm::is_contained(M.SlidingLayers, true)) {
      std::tie(LocalCos, LocalSin) =
          rotaryTables(B, Base, M, Positions, "sliding_attention_", M.LocalRopeTheta);
      LocalMask = causalMask(B, Base, Positions, D, Padding);
      markSdpaSkips(B, M, D, LocalMask);
    }
  } else {
    std::tie(Cos, Sin) = rotaryTables(B, Base, M, Positions);
    Mask = causalMask(B, Base, Positions, D, Padding);
    markSdpaSkips(B, M, D, Mask);
  }
  // StarCoder2: hidden_states = dropout(inputs_embeds), after the mask is made; the
  // model's inputs_embeds keeps the embeddings themselves.
  if (M.EmbeddingDropout > 0)
    X = B.dropout(Base.Scope, X, M.EmbeddingDropout);
  const double Scale = M.Granite          ? M.AttentionMultiplier
                       : M.AttnScalar > 0 ? 1.0 / std::sqrt(M.AttnScalar)
                                          : attentionScale(M);
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    const bool Sliding = !M.SlidingLayers.empty() && M.SlidingLayers[static_cast<size_t>(L)];
    Module Layer = Base.child("layers." + std::to_string(L));
    Module Attn = Layer.child("self_attn");
    const std::string &AS = Attn.Scope;
    TensorId Normed = M.PostNormsOnly ? X : Norm(Layer.child("input_layernorm"), X);
    TensorId O;
    if (M.Mla) {
      O = mlaAttention(B, Attn, M, Normed, Sliding ? LocalCos : Cos, Sliding ? LocalSin : Sin,
                       Sliding ? LocalMask : Mask, Scale);
    } else {
      // Qwen3: q_norm(q_proj(x).view(b, s, heads, head_dim)).transpose(1, 2), so the norm
      // runs on the contiguous view and the rotary on the transposed result.
      auto Project = [&](const char *Name, int64_t Heads, const char *NormName = nullptr) {
        TensorId P = linear(B, Attn.child(Name), Normed, H, Heads * Hd, M.QkvBias);
        if (!NormName || !M.QkNorm)
          return splitHeads(B, AS, P, Heads, Hd);
        if (M.QkNormWhole) // OLMo 2: q_norm(q_proj(x)), then the heads
          return splitHeads(B, AS, rmsNorm(B, Attn.child(NormName), M, P), Heads, Hd);
        if (M.QkNormTransposed) // Gemma 3: q_norm(q_proj(x).view(...).transpose(1, 2))
          return rmsNorm(B, Attn.child(NormName), M, splitHeads(B, AS, P, Heads, Hd));
        const Shape &In = B.shape(P);
        TensorId PerHead = B.reshape(AS, P, {In[0], In[1], Heads, Hd});
        return B.transpose(AS, rmsNorm(B, Attn.child(NormName), M, PerHead), {0, 2, 1, 3});
      };
      TensorId Q, K, V;
      if (M.FusedQkv) {
        // Phi3Attention: qkv = qkv_proj(x); q, k, v = slices of its last dim (each slice's
        // backward is a zero-filled qkv-sized gradient), viewed as heads and transposed.
        const int64_t QW = M.Heads * Hd, KvW = M.KvHeads * Hd;
        TensorId Qkv = linear(B, Attn.child("qkv_proj"), Normed, H, QW + 2 * KvW, M.QkvBias);
        auto Heads = [&](int64_t From, int64_t Width) {
          return splitHeads(B, AS, B.slice(AS, Qkv, 2, From, From + Width), Width / Hd, Hd);
        };
        Q = Heads(0, QW);
        K = Heads(QW, KvW);
        V = Heads(QW + KvW, KvW);
      } else {
        Q = Project("q_proj", M.Heads, "q_norm");
        K = Project("k_proj", M.KvHeads, "k_norm");
        V = Project("v_proj", M.KvHeads);
      }
      // SmolLM3's NoPE layers attend with the projections as they are.
      if (M.NoRopeLayers.empty() || !M.NoRopeLayers[static_cast<size_t>(L)]) {
        TensorId CosL = B.unsqueeze(AS, Sliding ? LocalCos : Cos, {1});
        TensorId SinL = B.unsqueeze(AS, Sliding ? LocalSin : Sin, {1});
        if (M.GptOss) {
          Q = applyHalfRotary(B, AS, Q, CosL, SinL);
          K = applyHalfRotary(B, AS, K, CosL, SinL);
        } else {
          Q = applyRotary(B, AS, Q, CosL, SinL, M.RopeInFp32);
          K = applyRotary(B, AS, K, CosL, SinL, M.RopeInFp32);
        }
      }
      markKvCache(B, K, V);
      TensorId Sinks = M.GptOss ? B.parameter(Attn.param("sinks"), {M.Heads}) : NoTensor;
      TensorId Merged = attention(B, AS, Q, K, V, Sliding ? LocalMask : Mask, Scale,
                                  M.Heads / M.KvHeads, EagerSoftmax::Fp32ToQuery, M.AttnSoftcap,
                                  Sinks);
      O = linear(B, Attn.child("o_proj"), Merged, M.Heads * Hd, H, M.OutBias);
      // The attention's forward holds its query, key and value states (the key and value
      // rebound to the cache's copies where it fills one) until it returns.
      for (TensorId Local : {Q, K, V})
        B.holdUntil(Local, O);
    }
    // The decoder layer's `hidden_states` holds the normed input until the attention
    // returns (and the MLP's below until the MLP returns).
    B.holdUntil(Normed, O);
    // Gemma 2/3 and OLMo 2 normalise the branch before the residual add.
    if (M.SandwichNorms || M.PostNormsOnly)
      O = rmsNorm(B, Layer.child("post_attention_layernorm"), M, O);
    if (M.Granite) // residual + hidden_states * residual_multiplier
      O = B.binary(Layer.Scope, "Mul", O, B.scalar(M.ResidualMultiplier));
    X = B.binary(Layer.Scope, "Add", X, O);

    Module Mlp = Layer.child("mlp");
    Normed = M.PostNormsOnly
                 ? X
                 : Norm(Layer.child(M.SandwichNorms ? "pre_feedforward_layernorm"
                                                    : "post_attention_layernorm"),
                        X);
    TensorId Down;
    if (!M.MoeLayers.empty() && M.MoeLayers[static_cast<size_t>(L)]) {
      Down = sparseMoe(B, Mlp, M, Normed);
    } else if (M.PlainMlp) {
      // Starcoder2MLP: c_proj(act(c_fc(x))).
      TensorId Up = linear(B, Mlp.child("c_fc"), Normed, H, M.Intermediate, M.MlpBias);
      TensorId Act = activation(B, Mlp.child("act").Scope, Up, M.Act);
      Down = linear(B, Mlp.child("c_proj"), Act, M.Intermediate, H, M.MlpBias);
    } else if (M.FusedGateUp) {
      // Phi3MLP: gate, up = gate_up_proj(x).chunk(2, dim=-1); up * activation_fn(gate).
      TensorId GateUp = linear(B, Mlp.child("gate_up_proj"), Normed, H, 2 * M.Intermediate,
                               M.MlpBias);
      std::vector<TensorId> Parts =
          B.split(Mlp.Scope, GateUp, -1, {M.Intermediate, M.Intermediate});
      TensorId Act = activation(B, Mlp.child("activation_fn").Scope, Parts[0], M.Act);
      TensorId Gated = B.binary(Mlp.Scope, "Mul", Parts[1], Act);
      Down = linear(B, Mlp.child("down_proj"), Gated, M.Intermediate, H, M.MlpBias);
    } else {
      Down = gatedMlp(B, Mlp, M, Normed, M.Intermediate);
      if (M.MlpDropout > 0) // StableLM's self.dropout(mlp_output)
        Down = B.dropout(Layer.Scope, Down, M.MlpDropout);
    }
    B.holdUntil(Normed, Down);
    if (M.SandwichNorms || M.PostNormsOnly)
      Down = rmsNorm(B, Layer.child("post_feedforward_layernorm"), M, Down);
    if (M.Granite)
      Down = B.binary(Layer.Scope, "Mul", Down, B.scalar(M.ResidualMultiplier));
    X = B.binary(Layer.Scope, "Add", X, Down);
  }
  X = Norm(Base.child("norm"), X, M.Head == HeadKind::BaseModel ? "last_hidden_state" : "");
  // The model's forward holds its locals until it returns: inputs_embeds, the masks (one
  // per layer type in causal_mask_mapping: a type's mask outlives its last layer) and the
  // rotary tables. Measured on torch 2.15 (gpt-oss with LoRA, whose forward peaks in its
  // second layer with the first layer's sliding mask and the frozen embeddings' output).
  for (TensorId Local : {InputsEmbeds, Mask, LocalMask, Cos, Sin, LocalCos, LocalSin})
    B.holdUntil(Local, X);
  finishDecoder(B, M, X, EmbedW, Root.child("lm_head"), Ids);
}

} // namespace trainmem::hf
