//===- HfGptBertFamilies.cpp - GPT-2, GPT-NeoX and BERT from their configs -------===//
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
  TensorId X = B.binary(Base.Scope, "Add", B.gather(Wte.Scope, WteW, Ids),
                        B.gather(Wpe.Scope, WpeW, B.unsqueeze(Base.Scope, Positions, {0})));
  TensorId Mask = causalMask(B, Base, Positions, D, Padding);
  markSdpaSkips(B, M, D, Mask);
  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Block = Base.child("h." + std::to_string(L));
    Module Attn = Block.child("attn");
    TensorId Qkv = conv1d(B, Attn.child("c_attn"), layerNorm(B, Block.child("ln_1"), M, X), H,
                          3 * H);
    std::vector<TensorId> Parts = B.split(Attn.Scope, Qkv, 2, {H, H, H});
    auto Heads = [&](TensorId T) { return splitHeads(B, Attn.Scope, T, M.Heads, M.HeadDim); };
    TensorId K = Heads(Parts[1]), V = Heads(Parts[2]), Q = Heads(Parts[0]); // HF's order
    markKvCache(B, K, V);
    double Scale = M.ScaleAttnWeights ? attentionScale(M) : 1.0;
    if (M.ScaleByInverseLayerIdx)
      Scale /= static_cast<double>(L + 1);
    TensorId Merged = attention(B, Attn.Scope, Q, K, V, Mask, Scale, 1, EagerSoftmax::ToValue);
    X = B.binary(Block.Scope, "Add", conv1d(B, Attn.child("c_proj"), Merged, H, H), X);

    Module Mlp = Block.child("mlp");
    TensorId Up = conv1d(B, Mlp.child("c_fc"), layerNorm(B, Block.child("ln_2"), M, X), H,
                         M.Intermediate);
    TensorId Act = activation(B, Mlp.child("act").Scope, Up, M.Act);
    X = B.binary(Block.Scope, "Add", X, conv1d(B, Mlp.child("c_proj"), Act, M.Intermediate, H));
  }
  X = layerNorm(B, Base.child("ln_f"), M, X,
                M.Head == HeadKind::BaseModel ? "last_hidden_state" : "");
  finishDecoder(B, M, X, WteW, Root.child("lm_head"));
}

/// GPTNeoXForCausalLM (Pythia): fused qkv, partial rotary, parallel residual.
void buildGptNeoX(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden, Hd = M.HeadDim;
  Module Root;
  auto [Base, Embed, EmbedW, Padding, X] = decoderStart(B, M, D, "gpt_neox", "embed_in");
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
  finishDecoder(B, M, X, EmbedW, Root.child("lm_head"));
}

/// BertForMaskedLM (or BertModel with its pooler): learned positions and token types,
/// post-LayerNorm encoder blocks, padding mask from the `attention_mask` input.
void buildBert(OnnxGraphBuilder &B, const HfModel &M, const BoundDims &D) {
  const int64_t H = M.Hidden;
  Module Root;
  Module Base = M.Head == HeadKind::BaseModel ? Root : Root.child("bert");
  TensorId Ids = B.input("input_ids", {D.Batch, D.Seq});
  TensorId TokenTypes = B.input("token_type_ids", {D.Batch, D.Seq});
  TensorId AttnMask = B.input("attention_mask", {D.Batch, D.Seq});

  Module Emb = Base.child("embeddings");
  TensorId WordW = B.parameter(Emb.child("word_embeddings").param("weight"), {M.Vocab, H});
  TensorId PosW = B.parameter(Emb.child("position_embeddings").param("weight"),
                              {M.MaxPositions, H});
  TensorId TypeW = B.parameter(Emb.child("token_type_embeddings").param("weight"),
                               {M.TypeVocab, H});
  // Non-persistent buffers: arange position ids, and the all-zero token types used only
  // when the caller passes none (here it does, so that buffer has no consumer).
  TensorId PosIds = B.stored(Emb.param("position_ids"), {1, M.MaxPositions}, DType::Int64,
                             TensorKind::Buffer);
  if (M.MaxPositions <= Tensor::SmallValueLimit)
    for (int64_t I = 0; I < M.MaxPositions; ++I)
      B.tensor(PosIds).IntValues.push_back(I);
  TensorId TypeBuf = B.stored(Emb.param("token_type_ids"), {1, M.MaxPositions}, DType::Int64,
                              TensorKind::Buffer);
  B.tensor(TypeBuf).Payload.From = PayloadRef::Source::Fill;

  TensorId X = B.binary(Emb.Scope, "Add",
                        B.gather(Emb.child("word_embeddings").Scope, WordW, Ids),
                        B.gather(Emb.child("token_type_embeddings").Scope, TypeW, TokenTypes));
  TensorId Positions = B.slice(Emb.Scope, PosIds, 1, 0, D.Seq);
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

  for (int64_t L = 0; L < M.Layers; ++L) {
    B.startLayer(L, M.Layers);
    Module Layer = Base.child("encoder").child("layer." + std::to_string(L));
    Module Self = Layer.child("attention").child("self");
    auto Project = [&](const char *Name) {
      return splitHeads(B, Self.Scope, linear(B, Self.child(Name), X, H, H, true), M.Heads,
                        M.HeadDim);
    };
    TensorId Q = Project("query"), K = Project("key"), V = Project("value");
    TensorId Merged =
        attention(B, Self.Scope, Q, K, V, Ext, attentionScale(M), 1, EagerSoftmax::Plain);
    Module SelfOut = Layer.child("attention").child("output");
    TensorId Dense = linear(B, SelfOut.child("dense"), Merged, H, H, true);
    TensorId AttnOut = layerNorm(B, SelfOut.child("LayerNorm"), M,
                                 B.binary(SelfOut.Scope, "Add", Dense, X));
    Module Inter = Layer.child("intermediate");
    TensorId Up = linear(B, Inter.child("dense"), AttnOut, H, M.Intermediate, true);
    TensorId Act = activation(B, Inter.child("intermediate_act_fn").Scope, Up, M.Act);
    Module Out = Layer.child("output");
    TensorId Down = linear(B, Out.child("dense"), Act, M.Intermediate, H, true);
    X = layerNorm(B, Out.child("LayerNorm"), M, B.binary(Out.Scope, "Add", Down, AttnOut),
                  M.Head == HeadKind::BaseModel && L + 1 == M.Layers ? "last_hidden_state" : "");
  }

  if (M.Head == HeadKind::BaseModel) {
    B.markOutput(X);
    // BertPooler: tanh(dense(hidden[:, 0])). A Linear on a 2-D input exports as Gemm with
    // the [out, in] weight; MatMul + Add keeps the one [in, out] convention of this IR.
    Module Pooler = Base.child("pooler");
    TensorId First = B.gather(Pooler.Scope, X, B.ints({0}, true), 1);
    TensorId Dense = linear(B, Pooler.child("dense"), First, H, H, true);
    B.nameNextOutput("pooler_output");
    B.markOutput(B.unary(Pooler.child("activation").Scope, "Tanh", Dense));
    return;
  }
  Module Pred = Root.child("cls").child("predictions");
  Module Transform = Pred.child("transform");
  TensorId T = linear(B, Transform.child("dense"), X, H, H, true);
  T = activation(B, Transform.child("transform_act_fn").Scope, T, M.Act);
  T = layerNorm(B, Transform.child("LayerNorm"), M, T);
  Module Decoder = Pred.child("decoder");
  // cls.predictions.bias is decoder.bias when tied; untied, the decoder has its own and
  // cls.predictions.bias stays an unused parameter (as in transformers 5.x).
  TensorId PredBias = B.parameter(Pred.param("bias"), {M.Vocab});
  TensorId W = M.Tie ? B.transpose(Decoder.Scope, WordW, {1, 0})
                     : B.parameter(Decoder.param("weight"), {H, M.Vocab});
  TensorId Bias = M.Tie ? PredBias : B.parameter(Decoder.param("bias"), {M.Vocab});
  TensorId Scores = B.matmul(Decoder.Scope, T, W);
  B.nameNextOutput("logits");
  B.markOutput(B.binary(Decoder.Scope, "Add", Scores, Bias));
}

} // namespace trainmem::hf
