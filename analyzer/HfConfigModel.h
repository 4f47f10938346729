//===- HfConfigModel.h - what a Hugging Face config.json says about the graph -*- C++ -*-===//
//
// Internal to the Hugging Face importer: HfConfigReader.cpp reads a `config.json` into an
// HfModel (transformers' defaults applied, every problem reported with the file and field),
// and HfConfigImporter.cpp (the LLaMA family) and HfGptBertFamilies.cpp (GPT-2, GPT-NeoX,
// BERT) build the graph from it, of the blocks HfGraphParts.h declares.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_HFCONFIGMODEL_H
#define TRAINMEM_ANALYZER_HFCONFIGMODEL_H

#include "analyzer/Diagnostics.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <string>
#include <vector>

namespace trainmem::hf {

// Llama: also mistral, qwen2/3, gemma, gemma2, gemma3_text, phi3, olmo2, granite, and the
// mixture-of-experts decoders mixtral, qwen2_moe, qwen3_moe, olmoe and gpt_oss
// (HfModel::Experts). Phi: Phi-1, Phi-1.5 and Phi-2 (one LayerNorm feeding attention and
// MLP side by side, partial rotary, biases everywhere). Opt: OPT-125m to -66b (learned
// positions, pre- or post-LayerNorm blocks, ReLU MLP).
// GptJ: GPT-J (attention and MLP side by side from one LayerNorm, rotary on the first
// rotary_dim channels of each head, pairs rotated as GPT-J interleaves them).
enum class ArchFamily { Llama, Gpt2, GptNeoX, Phi, Opt, GptJ, Bert };
/// SequenceClassification: one row of NumLabels logits per sequence (BERT's pooler and
/// classifier, RoBERTa's classification head on the first token, a decoder's `score` read at
/// each row's last token that is not padding); TokenClassification: NumLabels logits per
/// token; QuestionAnswering: `qa_outputs`, two logits per token (an answer's start and end),
/// each a cross-entropy over the sequence's positions; MultipleChoice (encoders): each of a
/// row's `choices` sequences scored by a one-output classifier on the pooled encoding, one
/// cross-entropy over the choices.
enum class HeadKind {
  CausalLm,
  MaskedLm,
  BaseModel,
  SequenceClassification,
  TokenClassification,
  QuestionAnswering,
  MultipleChoice
};
/// GeluTanhPython is GPT-2's `gelu_new` (Python arithmetic, unfused in eager PyTorch);
/// GeluTanhFused is F.gelu(approximate="tanh"): the graphs differ so later passes can tell.
enum class Activation { Silu, GeluErf, GeluTanhPython, GeluTanhFused, Relu };

/// The architecture facts the graph depends on, after transformers' defaults are applied.
struct HfModel {
  std::string ModelType;
  ArchFamily Family = ArchFamily::Llama;
  HeadKind Head = HeadKind::CausalLm;
  int64_t Hidden = 0, Intermediate = 0, Layers = 0, Heads = 0, KvHeads = 0, HeadDim = 0;
  int64_t Vocab = 0, MaxPositions = 0, TypeVocab = 0, RotaryDim = 0;
  /// Classification heads: the classes (`id2label`'s size, or `num_labels`; 2 by default),
  /// and the dropout before the classifier (`classifier_dropout`, else the hidden dropout).
  int64_t NumLabels = 2;
  double ClassifierDropout = 0;
  /// `pad_token_id` (-1: none), which a decoder's sequence classifier looks for to find each
  /// row's last token, and RoBERTa numbers positions after.
  int64_t PadToken = -1;
  /// RoBERTa (and XLM-RoBERTa, CamemBERT): BERT's encoder, with positions numbered from the
  /// token ids (`pad_token_id + 1` onwards, padding keeping pad_token_id), token types
  /// gathered from a zero buffer when the tokenizer passes none, and its own heads
  /// (`lm_head`: dense, GELU, layer_norm, decoder; `classifier`: dense, tanh, out_proj on
  /// the first token).
  bool Roberta = false;
  /// DistilBERT: BERT's post-LayerNorm encoder without token types or pooler, under its
  /// own names (transformer.layer.N: q_lin/k_lin/v_lin/out_lin, sa_layer_norm, ffn.lin1/lin2,
  /// output_layer_norm), dropping out after the FFN only (FfnDropout), and its heads
  /// (vocab_transform/vocab_layer_norm/vocab_projector; pre_classifier, ReLU, classifier).
  bool DistilBert = false;
  double FfnDropout = 0;
  double NormEps = 1e-6, RopeTheta = 10000.0;
  bool RopeScaled = false;
  /// Mistral's (and Qwen2's, with use_sliding_window) attention window; 0: none.
  int64_t SlidingWindow = 0;
  Activation Act = Activation::Silu;
  bool Tie = false, QkvBias = false, OutBias = false, MlpBias = false;
  /// Phi's causal-LM head has a bias (tied or not, `lm_head.bias` is its own).
  bool LmHeadBias = false;
  /// OPT: the word embeddings' width (word_embed_proj_dim; project_in / project_out
  /// between it and the hidden size where they differ, as in OPT-350m), LayerNorm after
  /// each residual add instead of before its branch (do_layer_norm_before false, which
  /// also drops the final norm), and whether the decoder ends in final_layer_norm.
  int64_t EmbedWidth = 0;
  bool NormAfter = false, FinalNorm = true;
  bool ParallelResidual = true, GemmaNorm = false, LearnedPositions = false;
  /// Qwen3: an RMSNorm over each head of q and k (q_norm, k_norm) before the rotary.
  bool QkNorm = false;
  /// Phi-3 (and Phi-4, model_type phi3): q, k and v from one qkv_proj, the MLP's gate and
  /// up from one gate_up_proj.
  bool FusedQkv = false, FusedGateUp = false;
  /// Gemma 3: q_norm and k_norm on the transposed heads (Qwen3 normalises before the
  /// transpose); an RMSNorm after attention and around the MLP as well (four per layer);
  /// the scores scaled by query_pre_attn_scalar ** -0.5; sliding-window layers (their own
  /// mask and a local rotary base) among full ones.
  bool QkNormTransposed = false, SandwichNorms = false;
  double AttnScalar = 0; ///< 0: head_dim
  std::vector<bool> SlidingLayers;
  /// SmolLM3: the layers that apply no rotary (NoPE); empty: every layer rotates.
  std::vector<bool> NoRopeLayers;
  /// StarCoder2: LLaMA's layers with LayerNorms (with biases) instead of RMSNorms, a plain
  /// MLP (c_fc, activation, c_proj), biases everywhere (use_bias), and an nn.functional
  /// dropout of the embeddings' output (EmbeddingDropout) before the first layer.
  bool LayerNormBlocks = false, PlainMlp = false;
  double EmbeddingDropout = 0;
  /// StableLM: nn.Dropout(hidden_dropout) on the MLP's output only (the attention's is not
  /// dropped out), placed by the builder.
  double MlpDropout = 0;
  double LocalRopeTheta = 10000.0;
  /// Gemma 3: each layer type has its rotary tables, the sliding layers' at
  /// LocalRopeTheta; Gemma 2 shares one table between them.
  bool RopePerLayerType = false;
  /// OLMo 2: no norm before attention or the MLP, one after each (post_attention_layernorm,
  /// post_feedforward_layernorm) inside the residual; q_norm and k_norm over the whole q
  /// and k projections before they are split into heads; its RMSNorm multiplies by the
  /// weight in fp32 and casts the product back (LLaMA casts first).
  bool PostNormsOnly = false, QkNormWhole = false, NormWeightInFp32 = false;
  /// OLMo 2: its rotary module returns cos and sin in fp32 (no cast to the hidden states'
  /// dtype), and apply_rotary_pos_emb computes q and k in fp32 then casts them back.
  bool RopeInFp32 = false;
  /// Granite's scalar multipliers, each a `* m` (or `/ m`) op of its own, run even at 1:
  /// the embeddings by EmbeddingMultiplier, each residual branch by ResidualMultiplier, the
  /// scores by AttentionMultiplier (in place of head_dim ** -0.5), the logits divided by
  /// LogitsScaling. Granite: whether the model has them.
  bool Granite = false;
  double EmbeddingMultiplier = 1, ResidualMultiplier = 1, AttentionMultiplier = 1,
         LogitsScaling = 1;
  /// Gemma 2's soft-capping, cap * tanh(x / cap), of the attention scores (eager attention
  /// only: transformers' SDPA path has none) and of the logits; 0: none.
  double AttnSoftcap = 0, FinalSoftcap = 0;
  bool ScaleAttnWeights = true, ScaleByInverseLayerIdx = false; // GPT-2 only
  /// `use_cache` (default true): the decoder's forward fills a DynamicCache, in training too.
  bool UseCache = false;
  /// Mixture-of-experts decoders (Mixtral, Qwen2-MoE, Qwen3-MoE): the layers MoeLayers marks
  /// route each token to TopK of Experts gated MLPs of width MoeIntermediate (the others
  /// keep the dense MLP of width Intermediate); Qwen2-MoE adds a shared expert of width
  /// SharedIntermediate behind a sigmoid gate. Experts 0: a dense model.
  int64_t Experts = 0, TopK = 0, MoeIntermediate = 0, SharedIntermediate = 0;
  std::vector<bool> MoeLayers;
  /// The top-k probabilities renormalised to sum to 1 (Mixtral always; Qwen's
  /// norm_topk_prob).
  bool NormTopK = false;
  /// Mixtral's router upcasts its logits with `.float()` and hands the experts fp32 routing
  /// weights (the weighted expert outputs are fp32 until the block casts its sum back);
  /// Qwen's take softmax(dtype=float) and cast the weights back to the logits' dtype.
  bool Fp32RoutingWeights = false;
  /// gpt-oss (model_type gpt_oss): learned attention sinks (a logit per head joined to each
  /// row of scores before the softmax, then dropped), rotary tables of half a head
  /// (`cos(freqs) * attention_scaling`, the halves rotated by chunking), and its experts:
  /// a router with a bias that takes the top k logits and softmaxes them, [experts, in,
  /// out] weights with biases, gate and up interleaved in one projection, and the clamped
  /// SwiGLU `(clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g)`, g = clamp(gate,
  /// max=limit).
  bool GptOss = false;
  /// DeepSeek-V3 (model_type deepseek_v3): multi-head latent attention. q from q_proj, or
  /// through a rank-QLoraRank bottleneck (q_a_proj, an RMSNorm, q_b_proj); keys and values
  /// from one latent of KvLoraRank (kv_a_proj_with_mqa, which also gives the shared rotary
  /// key of QkRopeDim, an RMSNorm, kv_b_proj per head); each head's q and k are QkNopeDim
  /// channels without position and QkRopeDim rotated (RopeInterleave: in interleaved
  /// pairs), its value VHeadDim wide. HeadDim is QkNopeDim + QkRopeDim.
  bool Mla = false, RopeInterleave = false;
  /// DeepSeek-V2: the rotary applied as a complex product (torch.polar tables, q and k
  /// viewed as complex pairs), one fp32 table of [seq, rotary_dim / 2] complex numbers.
  bool ComplexRotary = false;
  int64_t QLoraRank = 0, KvLoraRank = 0, QkNopeDim = 0, QkRopeDim = 0, VHeadDim = 0;
  /// DeepSeek-V3's router: sigmoid scores in fp32 plus a correction bias choose the
  /// experts among the best TopKGroups of MoeGroups groups; the weights are the chosen
  /// scores, renormalised (NormTopK) and scaled by RoutedScaling; its shared experts
  /// (SharedIntermediate wide, no gate) run after the routed ones.
  bool SigmoidGroupRouter = false;
  /// DeepSeek-V2's router: softmax scores in fp32, the top k of them (within the best
  /// MoeTopKGroups groups by their best score where GroupLimited), scaled, not renormalised.
  bool SoftmaxGreedyRouter = false, GroupLimited = false;
  int64_t MoeGroups = 1, MoeTopKGroups = 1;
  double RoutedScaling = 1.0;
  double SwigluAlpha = 1.702, SwigluLimit = 7.0;
  /// The checkpoint's own quantization (its quantization_config: "mxfp4", "fp8"), or empty.
  std::string CheckpointQuantization;
  /// gpt-oss's rotary tables are multiplied by YaRN's attention factor (1 unscaled).
  double RopeAttentionScaling = 1.0;
};

/// "File: Message" as an llvm::Error.
llvm::Error fileError(llvm::StringRef File, const llvm::Twine &Message);

/// The model Obj (the parsed config, read from File) describes, or an error naming the
/// file, the field and what was expected. Fields the graph cannot show go to Diags.
llvm::Expected<HfModel> readHfModel(const llvm::json::Object &Obj, llvm::StringRef File,
                                    Diagnostics &Diags);

} // namespace trainmem::hf

#endif
