//===- HfGptBertFamilies.cpp - GPT-2, GPT-NeoX, Phi, OPT and BERT from configs ---===//
//
// The Hugging Face families beside the LLaMA one (HfConfigImporter.cpp), built from the
// blocks of HfGraphParts.h as transformers 5.x runs them.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/HfGraphParts.h"

namespace trainmem::hf {
namespace {

/// transformers' Conv1D: addmm(bias, x.view(-1, in), weight).view(..., out). Its weight
/// is already [in, out].
TensorId conv1d(OnnxGraphBuilder &B, const Module &Mod, TensorId X, int64_t In, int64_t Out) {
  Shape S = B.shape(X);
  TensorId W = B.parameter(Mod.param("weight"), {In, Out});
  TensorId Bias = B.parameter(Mod.param("bias"), {Out});
  TensorId Flat = B.reshape(Mod.Scope, X, {S[0] * S[1], In});
  S.back() = Out;
  return B.reshape(Mod.Scope, B.gemm(Mod.Scope, Flat, W, Bias), S);
}

} // namespace

/// GPT2LMHeadModel: learned positions, pre-LayerNorm blocks of Conv1D layers.
void buildGpt2(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden;
  Module Root;
  Module Base = M.Head == HeadKind::BaseModel ? Root : Root.child("transformer");
  TensorId Ids = B.input("input_ids", {D.Batch, D.Seq});
  Module Wte = Base.child("wte"), Wpe = Base.child("wpe");
  TensorId WteW = B.parameter(Wte.param("weight"), {M.Vocab, H});
  TensorId WpeW = B.parameter(Wpe.param("weight"), {M.MaxPositions, H});
  TensorId Padding = paddingPattern(B, Base, D);
  TensorId Positions = B.range(Base.Scope, D.Seq);
  TensorId InputsEmbeds = B.gather(Wte.Scope, WteW, Ids);
  TensorId PositionEmbeds = B.gather(Wpe.Scope, WpeW, B.unsqueeze(Base.Scope, Positions, {0}));
  TensorId X = B.binary(Base.Scope, "Add", InputsEmbeds, PositionEmbeds);
  TensorId Mask = causalMask(B, Base, Positions, D, Padding);
  markSdpaSkips(B, M, D, Mask);
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Block = Base.child("h." + std::to_string(L));
    Module Attn = Block.child("attn");
    TensorId Normed = layerNorm(B, Block.child("ln_1"), M, X);
    TensorId Qkv = conv1d(B, Attn.child("c_attn"), Normed, H, 3 * H);
    std::vector<TensorId> Parts = B.split(Attn.Scope, Qkv, 2, {H, H, H});
    auto Heads = [&](TensorId T) { return splitHeads(B, Attn.Scope, T, M.Heads, M.HeadDim); };
    TensorId K = Heads(Parts[1]), V = Heads(Parts[2]), Q = Heads(Parts[0]); // HF's order
    markKvCache(B, K, V);
    double Scale = M.ScaleAttnWeights ? attentionScale(M) : 1.0;
    if (M.ScaleByInverseLayerIdx)
      Scale /= static_cast<double>(L + 1);
    TensorId Merged = attention(B, Attn.Scope, Q, K, V, Mask, Scale, 1, EagerSoftmax::ToValue);
    TensorId AttnOut = conv1d(B, Attn.child("c_proj"), Merged, H, H);
    // GPT2Block's `hidden_states` holds ln_1's output until the residual add rebinds it
    // (and ln_2's likewise after the MLP): the fp32 norms under autocast, whose
    // projections keep 16-bit copies (measured on torch 2.15: GPT-2 for sequence
    // classification, autocast, peaking at the last block's residual add).
    X = B.binary(Block.Scope, "Add", AttnOut, X);
    B.holdUntil(Normed, X);

    Module Mlp = Block.child("mlp");
    Normed = layerNorm(B, Block.child("ln_2"), M, X);
    TensorId Up = conv1d(B, Mlp.child("c_fc"), Normed, H, M.Intermediate);
    TensorId Act = activation(B, Mlp.child("act").Scope, Up, M.Act);
    TensorId MlpOut = conv1d(B, Mlp.child("c_proj"), Act, M.Intermediate, H);
    X = B.binary(Block.Scope, "Add", X, MlpOut);
    B.holdUntil(Normed, X);
    B.holdUntil(AttnOut, X); // `attn_output`, bound until the block returns
  }
  X = layerNorm(B, Base.child("ln_f"), M, X,
                M.Head == HeadKind::BaseModel ? "last_hidden_state" : "");
  // GPT2Model.forward's locals inputs_embeds and position_embeds live until it returns.
  B.holdUntil(InputsEmbeds, X);
  B.holdUntil(PositionEmbeds, X);
  finishDecoder(B, M, X, WteW, Root.child("lm_head"), Ids);
}

/// GPTNeoXForCausalLM (Pythia): fused qkv, partial rotary, parallel residual.
void buildGptNeoX(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden, Hd = M.HeadDim;
  Module Root;
  auto [Base, Embed, EmbedW, Padding, X, Ids] = decoderStart(B, M, D, "gpt_neox", "embed_in");
  // cache_position = arange(seq): the rotary position ids and the causal mask share it.
  TensorId Positions = decoderPositions(B, Base, D);
  auto [Cos, Sin] = rotaryTables(B, Base, M, Positions);
  TensorId Mask = causalMask(B, Base, Positions, D, Padding);
  markSdpaSkips(B, M, D, Mask);
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Layer = Base.child("layers." + std::to_string(L));
    Module Attn = Layer.child("attention");
    const std::string &AS = Attn.Scope;
    TensorId Qkv = linear(B, Attn.child("query_key_value"),
                          layerNorm(B, Layer.child("input_layernorm"), M, X), H, 3 * H,
                          M.QkvBias);
    // .view(b, s, heads, 3 * head_dim).transpose(1, 2).chunk(3, dim=-1)
    std::vector<TensorId> Parts =
        B.split(AS, splitHeads(B, AS, Qkv, M.Heads, 3 * Hd), -1, {Hd, Hd, Hd});
    TensorId CosL = B.unsqueeze(AS, Cos, {1}), SinL = B.unsqueeze(AS, Sin, {1});
    TensorId Q = applyRotary(B, AS, Parts[0], CosL, SinL);
    TensorId K = applyRotary(B, AS, Parts[1], CosL, SinL);
    markKvCache(B, K, Parts[2]);
    TensorId Merged =
        attention(B, AS, Q, K, Parts[2], Mask, attentionScale(M), 1, EagerSoftmax::Fp32ToQuery);
    TensorId AttnOut = linear(B, Attn.child("dense"), Merged, H, H, M.OutBias);

    Module Mlp = Layer.child("mlp");
    auto RunMlp = [&](TensorId In) {
      TensorId Normed = layerNorm(B, Layer.child("post_attention_layernorm"), M, In);
      TensorId Up = linear(B, Mlp.child("dense_h_to_4h"), Normed, H, M.Intermediate, true);
      TensorId Act = activation(B, Mlp.child("act").Scope, Up, M.Act);
      return linear(B, Mlp.child("dense_4h_to_h"), Act, M.Intermediate, H, true);
    };
    if (M.ParallelResidual) {
      // mlp_output + attn_output + hidden_states, both branches reading the block input.
      TensorId MlpOut = RunMlp(X);
      X = B.binary(Layer.Scope, "Add", B.binary(Layer.Scope, "Add", MlpOut, AttnOut), X);
    } else {
      TensorId Mid = B.binary(Layer.Scope, "Add", AttnOut, X);
      X = B.binary(Layer.Scope, "Add", RunMlp(Mid), Mid);
    }
  }
  X = layerNorm(B, Base.child("final_layer_norm"), M, X,
                M.Head == HeadKind::BaseModel ? "last_hidden_state" : "");
  finishDecoder(B, M, X, EmbedW, Root.child("lm_head"), Ids);
}

/// PhiForCausalLM (Phi-1, Phi-1.5, Phi-2): one LayerNorm whose output feeds attention and
/// MLP side by side, q/k/v with biases and maybe per-head LayerNorms, the first
/// partial_rotary_factor of each head rotated, fc1/fc2, each branch through resid_dropout,
/// then attn + mlp + residual; a final LayerNorm and a head with a bias.
void buildPhi(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden, Hd = M.HeadDim;
  Module Root;
  auto [Base, Embed, EmbedW, Padding, X, Ids] = decoderStart(B, M, D, "model", "embed_tokens");
  TensorId Positions = decoderPositions(B, Base, D);
  TensorId Mask = causalMask(B, Base, Positions, D, Padding);
  markSdpaSkips(B, M, D, Mask);
  // PhiModel: embed_dropout (Graph::DropoutSites::Embedding) after the mask, then the
  // rotary tables of its output's dtype.
  auto [Cos, Sin] = rotaryTables(B, Base, M, Positions);
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Layer = Base.child("layers." + std::to_string(L));
    Module Attn = Layer.child("self_attn");
    const std::string &AS = Attn.Scope;
    TensorId Normed = layerNorm(B, Layer.child("input_layernorm"), M, X);
    auto Heads = [&](const char *Name, int64_t Count) {
      return splitHeads(B, AS, linear(B, Attn.child(Name), Normed, H, Count * Hd, M.QkvBias),
                        Count, Hd);
    };
    TensorId Q = Heads("q_proj", M.Heads), K = Heads("k_proj", M.KvHeads);
    TensorId V = Heads("v_proj", M.KvHeads);
    if (M.QkNorm) {
      Q = layerNorm(B, Attn.child("q_layernorm"), M, Q);
      K = layerNorm(B, Attn.child("k_layernorm"), M, K);
    }
    TensorId CosL = B.unsqueeze(AS, Cos, {1}), SinL = B.unsqueeze(AS, Sin, {1});
    Q = applyRotary(B, AS, Q, CosL, SinL);
    K = applyRotary(B, AS, K, CosL, SinL);
    markKvCache(B, K, V);
    TensorId Merged = attention(B, AS, Q, K, V, Mask, attentionScale(M), M.Heads / M.KvHeads,
                                EagerSoftmax::Fp32ToQuery);
    TensorId AttnOut = linear(B, Attn.child("dense"), Merged, M.Heads * Hd, H, M.OutBias);
    Module Mlp = Layer.child("mlp");
    TensorId Up = linear(B, Mlp.child("fc1"), Normed, H, M.Intermediate, true);
    TensorId Act = activation(B, Mlp.child("activation_fn").Scope, Up, M.Act);
    TensorId MlpOut = linear(B, Mlp.child("fc2"), Act, M.Intermediate, H, true);
    X = B.binary(Layer.Scope, "Add", B.binary(Layer.Scope, "Add", AttnOut, MlpOut), X);
  }
  X = layerNorm(B, Base.child("final_layernorm"), M, X,
                M.Head == HeadKind::BaseModel ? "last_hidden_state" : "");
  finishDecoder(B, M, X, EmbedW, Root.child("lm_head"), Ids);
}

/// GPTJForCausalLM (GPT-J-6B; its sequence-classification and question-answering heads):
/// one LayerNorm feeding attention and MLP side by side, q, k and v without biases, the
/// first rotary_dim channels of each head rotated GPT-J's way (sin and cos gathered from a
/// sinusoid buffer, repeated pair by pair; rotate_every_two), fc_in/fc_out, a head with a
/// bias.
void buildGptJ(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden, Hd = M.HeadDim, Rd = M.RotaryDim;
  Module Root;
  auto [Base, Embed, EmbedW, Padding, X, Ids] = decoderStart(B, M, D, "transformer", "wte");
  TensorId Positions = decoderPositions(B, Base, D);
  TensorId Mask = causalMask(B, Base, Positions, D, Padding);
  markSdpaSkips(B, M, D, Mask);
  const TensorId InputsEmbeds = X;
  if (M.EmbeddingDropout > 0) // self.drop; inputs_embeds keeps the embeddings
    X = B.dropout(Base.Scope, X, M.EmbeddingDropout);
  // GPTJRotaryEmbedding: embed_positions[position_ids].to(x.dtype), split into sin and cos.
  Module Rope = Base.child("rotary_emb");
  TensorId Table = B.stored(Rope.param("embed_positions"), {M.MaxPositions, Rd}, DType::Float32,
                            TensorKind::Buffer);
  TensorId SinCos = B.castLike(
      Rope.Scope, B.gather(Rope.Scope, Table, B.unsqueeze(Base.Scope, Positions, {0})), X);
  std::vector<TensorId> SC = B.split(Rope.Scope, SinCos, -1, {Rd / 2, Rd / 2});
  const TensorId Sin = SC[0], Cos = SC[1];
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Block = Base.child("h." + std::to_string(L));
    Module Attn = Block.child("attn");
    const std::string &AS = Attn.Scope;
    TensorId Normed = layerNorm(B, Block.child("ln_1"), M, X);
    const Shape &NS = B.shape(Normed);
    const int64_t Bt = NS[0], S = NS[1];
    auto Heads = [&](const char *Name) { // .view(b, s, heads, head_dim)
      return B.reshape(AS, linear(B, Attn.child(Name), Normed, H, H, false), {Bt, S, M.Heads, Hd});
    };
    TensorId Q = Heads("q_proj"), K = Heads("k_proj");
    TensorId V = B.transpose(AS, Heads("v_proj"), {0, 2, 1, 3});
    // apply_rotary_pos_emb on x[..., :rotary_dim] of k, then q: sin and cos repeated pair by
    // pair (repeat_interleave: a copy each), x * cos + rotate_every_two(x) * sin, where
    // rotate_every_two stacks -x[..., 1::2] and x[..., ::2] and flattens them (a copy).
    auto Rotary = [&](TensorId T) {
      TensorId Rot = Rd < Hd ? B.slice(AS, T, 3, 0, Rd) : T;
      auto Interleave = [&](TensorId Half) {
        TensorId U = B.unsqueeze(AS, B.unsqueeze(AS, Half, {2}), {4}); // [1, S, 1, Rd/2, 1]
        return B.reshape(AS, B.expand(AS, U, {1, S, 1, Rd / 2, 2}), {1, S, 1, Rd});
      };
      TensorId SinR = Interleave(Sin), CosR = Interleave(Cos);
      TensorId Cosined = B.binary(AS, "Mul", Rot, CosR);
      TensorId X1 = B.slice(AS, Rot, 3, 0, SliceToEnd, 2), X2 = B.slice(AS, Rot, 3, 1, SliceToEnd, 2);
      TensorId Stacked = B.concat(AS, {B.unsqueeze(AS, B.unary(AS, "Neg", X2), {4}),
                                      B.unsqueeze(AS, X1, {4})},
                                  4);
      TensorId Every2 = B.reshape(AS, Stacked, {Bt, S, M.Heads, Rd});
      TensorId Out = B.binary(AS, "Add", Cosined, B.binary(AS, "Mul", Every2, SinR));
      return Rd < Hd ? B.concat(AS, {Out, B.slice(AS, T, 3, Rd, SliceToEnd)}, -1) : Out;
    };
    K = B.transpose(AS, Rotary(K), {0, 2, 1, 3});
    Q = B.transpose(AS, Rotary(Q), {0, 2, 1, 3});
    markKvCache(B, K, V);
    TensorId Merged = attention(B, AS, Q, K, V, Mask, attentionScale(M), 1, EagerSoftmax::Fp32ToQuery);
    TensorId AttnOut = linear(B, Attn.child("out_proj"), Merged, H, H, false);
    Module Mlp = Block.child("mlp");
    TensorId Up = linear(B, Mlp.child("fc_in"), Normed, H, M.Intermediate, M.MlpBias);
    TensorId Act = activation(B, Mlp.child("act").Scope, Up, M.Act);
    TensorId MlpOut = linear(B, Mlp.child("fc_out"), Act, M.Intermediate, H, M.MlpBias);
    X = B.binary(Block.Scope, "Add", B.binary(Block.Scope, "Add", AttnOut, MlpOut), X);
  }
  X = layerNorm(B, Base.child("ln_f"), M, X,
                M.Head == HeadKind::BaseModel ? "last_hidden_state" : "");
  for (TensorId Local : {InputsEmbeds, Cos, Sin}) // GPTJModel.forward's locals
    B.holdUntil(Local, X);
  finishDecoder(B, M, X, EmbedW, Root.child("lm_head"), Ids);
}

/// OPTForCausalLM (OPT-125m to -66b, and OPT's sequence-classification and
/// question-answering heads): positions numbered from a mask's cumulative sum and looked up
/// two rows on (OPTLearnedPositionalEmbedding's offset), q scaled before the attention,
/// each block's MLP on [batch * seq, hidden] rows, LayerNorms before the branches or
/// (do_layer_norm_before false) after the residual adds, word embeddings projected in and
/// out where word_embed_proj_dim differs from the hidden size (OPT-350m).
void buildOpt(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden, Hd = M.HeadDim, P = M.EmbedWidth, Rows = D.Batch * D.Seq;
  const Shape BS = {D.Batch, D.Seq};
  Module Root;
  Module Base = M.Head == HeadKind::BaseModel ? Root : Root.child("model");
  Module Dec = Base.child("decoder"), Embed = Dec.child("embed_tokens");
  Module PosEmbed = Dec.child("embed_positions");
  const std::string &DS = Dec.Scope;
  TensorId Ids = B.input("input_ids", {D.Batch, D.Seq});
  TensorId AttnMask = D.Padded ? B.input("attention_mask", BS) : NoTensor;
  TensorId EmbedW = B.parameter(Embed.param("weight"), {M.Vocab, P});
  TensorId PosW = B.parameter(PosEmbed.param("weight"), {M.MaxPositions + 2, H});
  TensorId Padding = paddingPattern(B, Dec, D, AttnMask);
  TensorId InputsEmbeds = B.gather(Embed.Scope, EmbedW, Ids);
  // position_ids = (cumsum(mask, 1) * mask - 1).long(), the mask being the batch's
  // attention_mask (int64: .long() is the tensor itself) or torch.ones(batch, seq), fp32.
  TensorId PosMask = AttnMask != NoTensor
                         ? AttnMask
                         : B.op(DS, "ConstantOfShape", {B.ints(BS)}, BS, DType::Float32);
  const DType MaskType = B.tensor(PosMask).Type;
  const bool Ints = MaskType == DType::Int64;
  TensorId Count = B.op(DS, "CumSum", {PosMask, B.ints({1}, true)}, BS, MaskType);
  TensorId Numbered = B.op(DS, "Mul", {Count, PosMask}, BS, MaskType);
  TensorId PosIds = B.op(DS, "Sub", {Numbered, Ints ? B.ints({1}, true) : B.scalar(1.0)}, BS,
                         MaskType);
  if (!Ints)
    PosIds = B.cast(DS, PosIds, DType::Int64);
  B.blockArgument(PosIds); // every decoder layer is called with position_ids
  TensorId Mask = causalMask(B, Dec, B.range(DS, D.Seq), D, Padding);
  markSdpaSkips(B, M, D, Mask);
  TensorId PosEmbeds = B.gather(
      PosEmbed.Scope, PosW,
      B.op(PosEmbed.Scope, "Add", {PosIds, B.ints({2}, true)}, BS, DType::Int64));
  if (P != H)
    InputsEmbeds = linear(B, Dec.child("project_in"), InputsEmbeds, P, H, false);
  TensorId X = B.binary(DS, "Add", InputsEmbeds, PosEmbeds);
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Layer = Dec.child("layers." + std::to_string(L));
    Module Attn = Layer.child("self_attn");
    const std::string &AS = Attn.Scope;
    Module AttnNorm = Layer.child("self_attn_layer_norm"), FfnNorm = Layer.child("final_layer_norm");
    TensorId In = M.NormAfter ? X : layerNorm(B, AttnNorm, M, X);
    // query_states = q_proj(x) * scaling; the attention then scales by 1.
    TensorId Q = B.binary(AS, "Mul", linear(B, Attn.child("q_proj"), In, H, H, M.QkvBias),
                          B.scalar(attentionScale(M)));
    Q = splitHeads(B, AS, Q, M.Heads, Hd);
    TensorId K = splitHeads(B, AS, linear(B, Attn.child("k_proj"), In, H, H, M.QkvBias), M.Heads, Hd);
    TensorId V = splitHeads(B, AS, linear(B, Attn.child("v_proj"), In, H, H, M.QkvBias), M.Heads, Hd);
    markKvCache(B, K, V);
    TensorId Merged = attention(B, AS, Q, K, V, Mask, 1.0, 1, EagerSoftmax::Fp32ToQuery);
    TensorId AttnOut = linear(B, Attn.child("out_proj"), Merged, H, H, M.OutBias);
    X = B.binary(Layer.Scope, "Add", X, AttnOut); // residual + hidden_states
    if (M.NormAfter)
      X = layerNorm(B, AttnNorm, M, X);
    // The MLP runs on hidden_states.reshape(-1, hidden), a view; so does its residual.
    TensorId Flat = B.reshape(Layer.Scope, X, {Rows, H});
    TensorId FfnIn = M.NormAfter ? Flat : layerNorm(B, FfnNorm, M, Flat);
    TensorId Up = linear(B, Layer.child("fc1"), FfnIn, H, M.Intermediate, M.MlpBias);
    TensorId Act = activation(B, Layer.child("activation_fn").Scope, Up, M.Act);
    TensorId Down = linear(B, Layer.child("fc2"), Act, M.Intermediate, H, M.MlpBias);
    X = B.reshape(Layer.Scope, B.binary(Layer.Scope, "Add", Flat, Down), {D.Batch, D.Seq, H});
    if (M.NormAfter)
      X = layerNorm(B, FfnNorm, M, X);
  }
  const bool Named = M.Head == HeadKind::BaseModel;
  if (M.FinalNorm)
    X = layerNorm(B, Dec.child("final_layer_norm"), M, X,
                  Named && P == H ? "last_hidden_state" : "");
  if (P != H) {
    Module Project = Dec.child("project_out");
    TensorId W = B.parameter(Project.param("weight"), {H, P});
    if (Named)
      B.nameNextOutput("last_hidden_state");
    X = B.matmul(Project.Scope, X, W);
  }
  // OPTDecoder.forward's locals live until it returns: the (projected) word embeddings,
  // the position embeddings, the positions' mask and the position ids.
  for (TensorId Local : {InputsEmbeds, PosEmbeds, PosMask, PosIds})
    if (Local != AttnMask)
      B.holdUntil(Local, X);
  HfModel Out = M; // the heads read word_embed_proj_dim-wide states
  Out.Hidden = P;
  finishDecoder(B, Out, X, EmbedW, Root.child("lm_head"), Ids);
}

/// BertForMaskedLM (or BertModel with its pooler, or BertForSequenceClassification /
/// BertForTokenClassification), and RoBERTa's (HfModel::Roberta) and DistilBERT's
/// (HfModel::DistilBert) of the same encoder: learned positions (and token types),
/// post-LayerNorm encoder blocks, padding mask from the `attention_mask` input.
void buildBert(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &Given) {
  const int64_t H = M.Hidden;
  // A multiple-choice head views its [batch, choices, seq] inputs as batch x choices
  // sequences (`input_ids.view(-1, seq)`), which the encoder runs as its batch.
  BoundDims D = Given;
  if (Given.Choices > 0)
    D.Batch = Given.Batch * Given.Choices;
  Module Root;
  // RobertaForSequenceClassification and the other heads build RobertaModel without its
  // pooler; BertForSequenceClassification reads BERT's.
  // DistilBERT has none.
  const bool Pooler = !M.DistilBert && (M.Head == HeadKind::BaseModel ||
                                        M.Head == HeadKind::MultipleChoice ||
                                        (M.Head == HeadKind::SequenceClassification && !M.Roberta));
  Module Base = M.Head == HeadKind::BaseModel ? Root
                : Root.child(M.Roberta ? "roberta" : M.DistilBert ? "distilbert" : "bert");
  auto Input = [&](const char *Name) {
    if (Given.Choices == 0)
      return B.input(Name, {D.Batch, D.Seq});
    return B.reshape(Root.Scope, B.input(Name, {Given.Batch, Given.Choices, D.Seq}),
                     {D.Batch, D.Seq});
  };
  TensorId Ids = Input("input_ids");
  // RoBERTa's and DistilBERT's tokenizers return no token types (ids and mask).
  TensorId TokenTypes = M.Roberta || M.DistilBert ? NoTensor : Input("token_type_ids");
  TensorId AttnMask = Input("attention_mask");

  Module Emb = Base.child("embeddings");
  TensorId WordW = B.parameter(Emb.child("word_embeddings").param("weight"), {M.Vocab, H});
  TensorId PosW = B.parameter(Emb.child("position_embeddings").param("weight"),
                              {M.MaxPositions, H});
  TensorId TypeW = M.DistilBert ? NoTensor
                                : B.parameter(Emb.child("token_type_embeddings").param("weight"),
                                              {M.TypeVocab, H});
  // Non-persistent buffers: arange position ids, and the all-zero token types used only
  // when the caller passes none (BERT's callers pass them; RoBERTa's do not).
  TensorId PosIds = B.stored(Emb.param("position_ids"), {1, M.MaxPositions}, DType::Int64,
                             TensorKind::Buffer);
  if (M.MaxPositions <= Tensor::SmallValueLimit)
    for (int64_t I = 0; I < M.MaxPositions; ++I)
      B.tensor(PosIds).IntValues.push_back(I);
  TensorId TypeBuf = NoTensor;
  if (!M.DistilBert) {
    TypeBuf = B.stored(Emb.param("token_type_ids"), {1, M.MaxPositions}, DType::Int64,
                       TensorKind::Buffer);
    B.tensor(TypeBuf).Payload.From = PayloadRef::Source::Fill;
  }

  TensorId Positions;
  if (M.Roberta) {
    // create_position_ids_from_input_ids: mask = ids.ne(pad).int();
    // (cumsum(mask, 1).type_as(mask) + 0) * mask, .long() + pad. (PyTorch's cumsum of int32
    // is int64 and the `+ 0` a copy: integer temporaries of [batch, seq] that die at once;
    // here ONNX's CumSum, which keeps the type.) bindDims checks that they fit the table.
    const std::string &S = Emb.Scope;
    const Shape BS = {D.Batch, D.Seq};
    TensorId Pad = B.op(S, "Equal", {Ids, B.ints({M.PadToken}, true)}, BS, DType::Bool);
    TensorId Mask = B.cast(S, B.op(S, "Not", {Pad}, BS, DType::Bool), DType::Int32);
    TensorId Count = B.op(S, "CumSum", {Mask, B.ints({1}, true)}, BS, DType::Int32);
    TensorId Numbered = B.op(S, "Mul", {Count, Mask}, BS, DType::Int32);
    Positions = B.op(S, "Add", {B.cast(S, Numbered, DType::Int64), B.ints({M.PadToken}, true)},
                     BS, DType::Int64);
    // The token types: the zero buffer expanded to the batch and gathered at the positions.
    TensorId Wide = B.expand(S, TypeBuf, {D.Batch, M.MaxPositions});
    TokenTypes = B.op(S, "GatherElements", {Wide, Positions}, BS, DType::Int64,
                      {{"axis", int64_t(1)}});
  } else {
    Positions = B.slice(Emb.Scope, PosIds, 1, 0, D.Seq);
  }
  TensorId X = B.gather(Emb.child("word_embeddings").Scope, WordW, Ids);
  if (TypeW != NoTensor)
    X = B.binary(Emb.Scope, "Add", X,
                 B.gather(Emb.child("token_type_embeddings").Scope, TypeW, TokenTypes));
  X = B.binary(Emb.Scope, "Add", X, B.gather(Emb.child("position_embeddings").Scope, PosW,
                                              Positions));
  X = layerNorm(B, Emb.child("LayerNorm"), M, X);

  // create_bidirectional_mask returns no mask at all for an all-ones attention_mask (no
  // padding), for SDPA and eager alike (allow_is_bidirectional_skip: the [batch, 1, seq,
  // seq] mask is never built; measured: eager BERT under autocast then keeps bf16
  // probabilities, which an fp32 mask would have promoted). A padded batch gets
  // bidirectional_mask_function (q_idx >= 0, [1, 1, seq, 1]) & padding: a [batch, 1, seq,
  // seq] boolean that SDPA reads, and eager attention adds as where(allowed, 0, min).
  TensorId Ext = NoTensor;
  if (D.Padded) {
    TensorId Q = B.unsqueeze(Base.Scope, B.range(Base.Scope, D.Seq), {0, 1, 3});
    TensorId Any = B.op(Base.Scope, "GreaterOrEqual", {Q, B.ints({0}, true)}, {1, 1, D.Seq, 1},
                        DType::Bool);
    Ext = additiveMask(B, Base.Scope,
                       withPadding(B, Base.Scope, Any, paddingPattern(B, Base, D, AttnMask), D),
                       D);
  }

  // Module names: BERT's and RoBERTa's, or DistilBERT's.
  const bool Db = M.DistilBert;
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Layer = Base.child(Db ? "transformer" : "encoder").child("layer." + std::to_string(L));
    Module Self = Db ? Layer.child("attention") : Layer.child("attention").child("self");
    auto Project = [&](const char *Name) {
      return splitHeads(B, Self.Scope, linear(B, Self.child(Name), X, H, H, true), M.Heads,
                        M.HeadDim);
    };
    TensorId Q = Project(Db ? "q_lin" : "query"), K = Project(Db ? "k_lin" : "key"),
             V = Project(Db ? "v_lin" : "value");
    TensorId Merged =
        attention(B, Self.Scope, Q, K, V, Ext, attentionScale(M), 1, EagerSoftmax::Plain);
    Module SelfOut = Db ? Self : Layer.child("attention").child("output");
    TensorId Dense = linear(B, SelfOut.child(Db ? "out_lin" : "dense"), Merged, H, H, true);
    Module AttnNorm = Db ? Layer.child("sa_layer_norm") : SelfOut.child("LayerNorm");
    TensorId AttnOut =
        layerNorm(B, AttnNorm, M, B.binary(Db ? Layer.Scope : SelfOut.Scope, "Add", Dense, X));
    // Python locals past their last use, until the function that binds them returns:
    // BertAttention's `attention_output` (the context) and BertSelfOutput's `hidden_states`
    // (the dense output, or its dropout) until the LayerNorm; DistilBERT's block binds the
    // out_lin output likewise. (Measured: BERT for multiple choice under LoRA, whose frozen
    // projections keep neither, peaks at the last layer's LayerNorm.)
    if (!Db)
      B.holdUntil(Merged, AttnOut);
    B.holdUntil(Dense, AttnOut);
    Module Inter = Db ? Layer.child("ffn") : Layer.child("intermediate");
    TensorId Up = linear(B, Inter.child(Db ? "lin1" : "dense"), AttnOut, H, M.Intermediate, true);
    TensorId Act = activation(B, Inter.child(Db ? "activation" : "intermediate_act_fn").Scope,
                              Up, M.Act);
    Module Out = Db ? Inter : Layer.child("output");
    TensorId Down = linear(B, Out.child(Db ? "lin2" : "dense"), Act, M.Intermediate, H, true);
    if (Db) // FFN.ff_chunk: dropout after lin2 (none after the attention's out_lin)
      Down = B.dropout(Out.child("dropout").Scope, Down, M.FfnDropout);
    X = layerNorm(B, Db ? Layer.child("output_layer_norm") : Out.child("LayerNorm"), M,
                  B.binary(Db ? Layer.Scope : Out.Scope, "Add", Down, AttnOut),
                  M.Head == HeadKind::BaseModel && L + 1 == M.Layers ? "last_hidden_state" : "");
    // feed_forward_chunk's `intermediate_output` and BertOutput's `hidden_states` until the
    // output LayerNorm returns (DistilBERT's ff_chunk rebinds its `x`: only `ffn_output`),
    // and the layer's `attention_output` until the layer returns.
    if (!Db)
      B.holdUntil(Act, X);
    B.holdUntil(Down, X);
    B.holdUntil(AttnOut, X);
  }

  if (M.Head == HeadKind::BaseModel)
    B.markOutput(X);
  else
    B.holdThroughLoss(X); // the head's `outputs`, holding last_hidden_state
  TensorId Pooled = NoTensor;
  if (Pooler) {
    // BertPooler: tanh(dense(hidden[:, 0])). A Linear on a 2-D input exports as Gemm with
    // the [out, in] weight; MatMul + Add keeps the one [in, out] convention of this IR.
    Module P = Base.child("pooler");
    TensorId First = B.gather(P.Scope, X, B.ints({0}, true), 1);
    TensorId Dense = linear(B, P.child("dense"), First, H, H, true);
    if (M.Head == HeadKind::BaseModel)
      B.nameNextOutput("pooler_output");
    Pooled = B.unary(P.child("activation").Scope, "Tanh", Dense);
  }
  // A classifier's Linear, its bias added last so that the output is the named logits.
  auto Classify = [&](const Module &Cls, TensorId In, int64_t Width) {
    TensorId Scores = B.matmul(Cls.Scope, In, B.parameter(Cls.param("weight"), {Width, M.NumLabels}));
    B.nameNextOutput("logits");
    B.markOutput(B.binary(Cls.Scope, "Add", Scores, B.parameter(Cls.param("bias"), {M.NumLabels})));
  };
  switch (M.Head) {
  case HeadKind::BaseModel:
    B.markOutput(Pooled);
    return;
  case HeadKind::SequenceClassification:
    if (M.DistilBert) { // classifier(dropout(relu(pre_classifier(x[:, 0]))))
      TensorId First = B.gather(Root.Scope + "/distilbert", X, B.ints({0}, true), 1);
      TensorId Pre = linear(B, Root.child("pre_classifier"), First, H, H, true);
      TensorId Relu = B.unary(Root.Scope + "/ReLU", "Relu", Pre);
      Classify(Root.child("classifier"),
               B.dropout(Root.child("dropout").Scope, Relu, M.ClassifierDropout), H);
      return;
    }
    if (!M.Roberta) { // classifier(dropout(pooled))
      Classify(Root.child("classifier"), B.dropout(Root.child("dropout").Scope, Pooled, M.ClassifierDropout), H);
      return;
    } else { // RobertaClassificationHead: out_proj(dropout(tanh(dense(dropout(x[:, 0])))))
      Module Head = Root.child("classifier");
      const std::string Drop = Head.child("dropout").Scope;
      TensorId First = B.gather(Head.Scope, X, B.ints({0}, true), 1);
      TensorId Dense = linear(B, Head.child("dense"), B.dropout(Drop, First, M.ClassifierDropout), H, H, true);
      Classify(Head.child("out_proj"), B.dropout(Drop, B.unary(Head.Scope, "Tanh", Dense), M.ClassifierDropout),
               H);
      return;
    }
  case HeadKind::MultipleChoice: { // classifier(dropout(pooled)), a score per choice
    TensorId In = Pooled;
    if (M.DistilBert) { // relu(pre_classifier(x[:, 0]))
      TensorId First = B.gather(Root.Scope + "/distilbert", X, B.ints({0}, true), 1);
      In = B.unary(Root.Scope + "/ReLU", "Relu",
                   linear(B, Root.child("pre_classifier"), First, H, H, true));
    }
    Module Cls = Root.child("classifier");
    TensorId Dropped = B.dropout(Root.child("dropout").Scope, In, M.ClassifierDropout);
    TensorId Scores = B.binary(Cls.Scope, "Add",
                               B.matmul(Cls.Scope, Dropped, B.parameter(Cls.param("weight"), {H, 1})),
                               B.parameter(Cls.param("bias"), {1}));
    B.nameNextOutput("logits"); // reshaped_logits: logits.view(-1, num_choices)
    B.markOutput(B.reshape(Cls.Scope, Scores, {Given.Batch, Given.Choices}));
    return;
  }
  case HeadKind::QuestionAnswering: // DistilBERT: qa_outputs(dropout(hidden))
    questionAnsweringHead(B, M, M.DistilBert ? B.dropout(Root.child("dropout").Scope, X,
                                                           M.ClassifierDropout)
                                             : X);
    return;
  case HeadKind::TokenClassification: // classifier(dropout(hidden))
    Classify(Root.child("classifier"), B.dropout(Root.child("dropout").Scope, X, M.ClassifierDropout), H);
    return;
  default:
    break;
  }
  if (M.DistilBert) {
    // DistilBertForMaskedLM: vocab_projector(vocab_layer_norm(act(vocab_transform(x)))),
    // the projector's weight the word embeddings' when tied, its bias its own.
    TensorId T = linear(B, Root.child("vocab_transform"), X, H, H, true);
    T = activation(B, Root.child("activation").Scope, T, M.Act);
    T = layerNorm(B, Root.child("vocab_layer_norm"), M, T);
    Module Proj = Root.child("vocab_projector");
    TensorId W = M.Tie ? B.transpose(Proj.Scope, WordW, {1, 0})
                       : B.parameter(Proj.param("weight"), {H, M.Vocab});
    TensorId Scores = B.matmul(Proj.Scope, T, W);
    B.nameNextOutput("logits");
    B.markOutput(B.binary(Proj.Scope, "Add", Scores, B.parameter(Proj.param("bias"), {M.Vocab})));
    return;
  }
  // The masked-LM head: BERT's cls.predictions (transform: dense, activation, LayerNorm;
  // decoder), RoBERTa's lm_head (dense, GELU, layer_norm; decoder).
  Module Pred = M.Roberta ? Root.child("lm_head") : Root.child("cls").child("predictions");
  Module Transform = M.Roberta ? Pred : Pred.child("transform");
  TensorId T = linear(B, Transform.child("dense"), X, H, H, true);
  T = M.Roberta ? activation(B, Pred.Scope, T, Activation::GeluErf)
                : activation(B, Transform.child("transform_act_fn").Scope, T, M.Act);
  T = layerNorm(B, Transform.child(M.Roberta ? "layer_norm" : "LayerNorm"), M, T);
  Module Decoder = Pred.child("decoder");
  // cls.predictions.bias (lm_head.bias) is decoder.bias when tied; untied, the decoder has
  // its own and the head's bias stays an unused parameter (as in transformers 5.x).
  TensorId PredBias = B.parameter(Pred.param("bias"), {M.Vocab});
  TensorId W = M.Tie ? B.transpose(Decoder.Scope, WordW, {1, 0})
                     : B.parameter(Decoder.param("weight"), {H, M.Vocab});
  TensorId Bias = M.Tie ? PredBias : B.parameter(Decoder.param("bias"), {M.Vocab});
  TensorId Scores = B.matmul(Decoder.Scope, T, W);
  B.nameNextOutput("logits");
  B.markOutput(B.binary(Decoder.Scope, "Add", Scores, Bias));
}

} // namespace trainmem::hf
