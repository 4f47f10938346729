//===- HfGraphParts.h - the blocks the Hugging Face families are built from -*- C++ -*-===//
//
// Internal to the Hugging Face importer: HfConfigImporter.cpp defines these blocks,
// HfLlamaFamily.cpp builds the LLaMA family from them, HfGptBertFamilies.cpp GPT-2,
// GPT-NeoX, Phi, OPT, GPT-J and BERT. Each block emits the ops torch.onnx (opset 17) writes
// for the module it names.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_HFGRAPHPARTS_H
#define TRAINMEM_ANALYZER_HFGRAPHPARTS_H

#include "analyzer/HfConfigModel.h"
#include "analyzer/OnnxGraphBuilder.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trainmem::hf {

using Shape = std::vector<int64_t>;

/// What torch.onnx writes as the end of an open slice (`x[..., k:]`).
constexpr int64_t SliceToEnd = std::numeric_limits<int64_t>::max();
constexpr int64_t DefaultBatch = 1;
constexpr int64_t DefaultSeq = 2048;

/// A module's place in the HF model: its state-dict prefix ("model.layers.0.self_attn")
/// and its torch.onnx scope ("/model/layers.0/self_attn"). The root is empty in both.
struct Module {
  std::string Param;
  std::string Scope;

  Module child(const std::string &Name) const {
    return {Param.empty() ? Name : Param + "." + Name, Scope + "/" + Name};
  }
  std::string param(const std::string &Leaf) const {
    return Param.empty() ? Leaf : Param + "." + Leaf;
  }
};

struct BoundDims {
  int64_t Batch = DefaultBatch;
  int64_t Seq = DefaultSeq;
  bool Padded = false; ///< ImportOptions::PaddedBatches
  /// A multiple-choice head's sequences per row (dim `choices`); 0: none. The encoder runs
  /// on Batch x Choices sequences.
  int64_t Choices = 0;
};

//===-- Blocks shared by the families ---------------------------------------------===//

/// nn.Linear as torch.onnx exports it for 3-D inputs: MatMul against the weight stored
/// transposed, [in, out] (what the exporter folds `weight.t()` into), then Add of the bias.
TensorId linear(OnnxGraphBuilder &B, const Module &Mod, TensorId X, int64_t In, int64_t Out,
                bool Bias);

/// LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight, with rsqrt exported as
/// Reciprocal(Sqrt), computed in fp32 whatever the model's dtype (`x.to(torch.float32)`,
/// then `.to(input_dtype)` before the weight). GemmaRMSNorm scales by
/// (1 + weight.float()) in fp32 and casts back after. Over X's last dim (the hidden
/// size, or one head for Qwen3's q_norm and k_norm).
TensorId rmsNorm(OnnxGraphBuilder &B, const Module &Mod, const HfModel &M, TensorId X,
                 const std::string &OutName = "");

/// nn.LayerNorm as opset 17's LayerNormalization.
TensorId layerNorm(OnnxGraphBuilder &B, const Module &Mod, const HfModel &M, TensorId X,
                   const std::string &OutName = "");

/// An activation function as torch.onnx exports it (SiLU, ReLU, the GELUs).
TensorId activation(OnnxGraphBuilder &B, const std::string &S, TensorId X, Activation Act);

/// `.view(b, s, heads, head_dim).transpose(1, 2)`.
TensorId splitHeads(OnnxGraphBuilder &B, const std::string &S, TensorId X, int64_t Heads,
                    int64_t HeadDim);

/// masking_utils.eager_mask, run once per forward and read by every layer: the boolean
/// pattern is expanded (a view) to [batch, 1, seq, seq], then where(allowed, 0, finfo.min)
/// materialises it as a float activation, as in transformers 5.x.
TensorId additiveMask(OnnxGraphBuilder &B, const std::string &S, TensorId Allowed,
                      const BoundDims &D);

/// For padded batches (BoundDims::Padded), the `attention_mask` input [batch, seq] and
/// the padding pattern masking_utils reads from it: `attention_mask.to(torch.bool)`, then
/// padding_mask_function's `padding_mask[batch_idx, kv_idx]` over broadcast indices, a
/// [batch, 1, 1, seq] boolean (a copy of batch x seq bytes, made and freed while the mask
/// is built, far from any peak: modelled as a view). NoTensor for unpadded batches, where
/// transformers finds the mask all ones and builds nothing from it.
/// AttentionMask: the model's `attention_mask` input where it has one already (BERT).
TensorId paddingPattern(OnnxGraphBuilder &B, const Module &Base, const BoundDims &D,
                        TensorId AttentionMask = NoTensor);

/// Pattern & padding (and_masks): with a padded batch the pattern becomes a
/// [batch, 1, seq, seq] boolean of its own, one per forward.
TensorId withPadding(OnnxGraphBuilder &B, const std::string &S, TensorId Allowed,
                     TensorId Padding, const BoundDims &D);

/// The start every decoder family but GPT-2 shares: its base module (BaseName, or the root
/// for a *Model head), the `input_ids` input, the token embedding EmbedName ([vocab,
/// hidden]), the padding pattern of padded batches and the looked-up embeddings.
struct DecoderStart {
  Module Base, Embed;
  TensorId EmbedW = NoTensor, Padding = NoTensor, X = NoTensor, Ids = NoTensor;
};
DecoderStart decoderStart(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D,
                          const std::string &BaseName, const std::string &EmbedName);

/// A rotary decoder's positions: cache_position = arange(seq), of which the rotary tables'
/// position_ids are a view. Every decoder layer is called with position_ids, so the
/// positions are a block argument (Graph::BlockArguments: checkpointing keeps them).
/// GPT-2's blocks take none (measured: no bytes held); it uses B.range itself.
TensorId decoderPositions(OnnxGraphBuilder &B, const Module &Base, const BoundDims &D);

/// causal_mask_function over cache_position: kv_idx <= q_idx. (Mistral's sliding window
/// only removes more positions from the same [batch, 1, seq, seq] mask.) Padding: the
/// model's paddingPattern, or NoTensor.
TensorId causalMask(OnnxGraphBuilder &B, const Module &Base, TensorId Positions,
                    const BoundDims &D, TensorId Padding);

/// The mask is the causal pattern alone when the batch has no padding and no sliding
/// window cuts into the sequence (masking_utils._ignore_causal_mask_sdpa: an all-ones
/// padding mask and kv_length < the window): the SDPA path then never builds it
/// (Tensor::SdpaSkipsMask).
void markSdpaSkips(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D, TensorId Mask);

/// `key_states, value_states = past_key_values.update(key_states, value_states, idx)`:
/// what the layer hands its DynamicCache when the model runs with use_cache
/// (Tensor::KvCache; whether it does is Graph::TrainingKvCache and the setup's).
void markKvCache(OnnxGraphBuilder &B, TensorId K, TensorId V);

/// The rotary embedding module (one per model in transformers 5.x): freqs = position_ids *
/// inv_freq, cat(freqs, freqs), then cos and sin [1, seq, rotary_dim].
/// Gemma 3 keeps one pair of tables per layer type, its buffers prefixed with the type
/// (`full_attention_inv_freq`), each with its own base (Theta).
std::pair<TensorId, TensorId> rotaryTables(OnnxGraphBuilder &B, const Module &Base,
                                           const HfModel &M, TensorId Positions,
                                           const std::string &Prefix = "",
                                           std::optional<double> Theta = std::nullopt);

/// apply_rotary_pos_emb for one of q/k: x*cos + rotate_half(x)*sin on the first
/// rotary_dim channels (all of them except for GPT-NeoX's partial rotary).
TensorId applyRotary(OnnxGraphBuilder &B, const std::string &S, TensorId X, TensorId Cos,
                     TensorId Sin, bool CastBack = false);

/// cat(x1 * cos - x2 * sin, x2 * cos + x1 * sin): the rotation of channel pairs that
/// gpt-oss (its halves) and DeepSeek (its interleaved pairs) write out.
TensorId rotatePairs(OnnxGraphBuilder &B, const std::string &S, TensorId X1, TensorId X2,
                     TensorId Cos, TensorId Sin);

/// gpt-oss's _apply_rotary_emb for one of q/k, with tables of half a head: rotatePairs of the
/// halves x1, x2 (torch.chunk).
TensorId applyHalfRotary(OnnxGraphBuilder &B, const std::string &S, TensorId X, TensorId Cos,
                         TensorId Sin);

/// eager_attention_forward: repeat_kv for grouped-query attention, softmax(q k^T * scale
/// + mask) v, heads merged back to [batch, seq, heads * head_dim].
/// How a family's eager attention takes its softmax (transformers 5):
/// `softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)` (LLaMA's family, GPT-NeoX),
/// `softmax(w, dim=-1).type(value.dtype)` (GPT-2), or `softmax(w, dim=-1)` (BERT).
enum class EagerSoftmax { Fp32ToQuery, ToValue, Plain };

/// cap * tanh(x / cap): Gemma 2's soft-capping of the attention scores and of the logits,
/// three ops as the model's code writes them (tanh keeps its output for the backward).
/// OutName names the result ("logits"); empty: the scope's name.
TensorId softcap(OnnxGraphBuilder &B, const std::string &S, TensorId X, double Cap,
                 const std::string &OutName = "");

/// Softcap: Gemma 2's cap on the scaled scores, before the mask (0: none). Sinks: gpt-oss's
/// per-head sink logits [heads] (its softmax then takes the scores' dtype, whatever
/// Softmax says).
TensorId attention(OnnxGraphBuilder &B, const std::string &S, TensorId Q, TensorId K, TensorId V,
                   TensorId Mask, double Scale, int64_t Groups, EagerSoftmax Softmax,
                   double Softcap = 0, TensorId Sinks = NoTensor);

/// head_dim ** -0.5, the `scaling` of every eager attention in transformers 5.x.
inline double attentionScale(const HfModel &M) { return 1.0 / std::sqrt(double(M.HeadDim)); }

/// LlamaMLP on X: down_proj(act_fn(gate_proj(x)) * up_proj(x)), Width wide.
TensorId gatedMlp(OnnxGraphBuilder &B, const Module &Mlp, const HfModel &M, TensorId X,
                  int64_t Width);

/// The sparse mixture-of-experts block of Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE and gpt-oss
/// on X [batch, seq, hidden] (HfMoeBlocks.cpp).
TensorId sparseMoe(OnnxGraphBuilder &B, const Module &Mlp, const HfModel &M, TensorId X);

/// DeepSeek-V3's multi-head latent attention on the normed X [batch, seq, hidden], with the
/// model's rotary tables and mask (HfMlaAttention.cpp); returns o_proj's output.
TensorId mlaAttention(OnnxGraphBuilder &B, const Module &Attn, const HfModel &M, TensorId X,
                      TensorId Cos, TensorId Sin, TensorId Mask, double Scale);

/// The output projection of a causal LM (Head, reading Embedding when tied), a decoder's
/// classifier (`score`, or GPT-2's and GPT-NeoX's token `classifier`; a sequence
/// classifier reads each row's last token that is not padding in Ids), or the base
/// model's last hidden state.
void finishDecoder(OnnxGraphBuilder &B, const HfModel &M, TensorId X, TensorId Embedding,
                   const Module &Head, TensorId Ids);

/// A question-answering head on the last hidden states X: `qa_outputs` (hidden -> 2), its
/// start and end logits made contiguous, output as the [2 * batch, seq] "logits" the loss
/// reads (two cross-entropies over the sequence's positions have the bytes of one over
/// twice the rows).
void questionAnsweringHead(OnnxGraphBuilder &B, const HfModel &M, TensorId X);

//===-- The families --------------------------------------------------------------===//

/// LlamaForCausalLM and its descendants (HfLlamaFamily.cpp).
void buildLlamaFamily(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);
/// GPT2LMHeadModel (HfGptBertFamilies.cpp).
void buildGpt2(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);
/// GPTNeoXForCausalLM (HfGptBertFamilies.cpp).
void buildGptNeoX(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);
/// GPTJForCausalLM (HfGptBertFamilies.cpp).
void buildGptJ(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);
/// OPTForCausalLM (HfGptBertFamilies.cpp).
void buildOpt(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);
/// PhiForCausalLM (HfGptBertFamilies.cpp).
void buildPhi(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);
/// BertForMaskedLM and BertModel (HfGptBertFamilies.cpp).
void buildBert(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D);

} // namespace trainmem::hf

#endif
