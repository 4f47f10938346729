//===- HfMoeBlocks.cpp - the mixture-of-experts blocks of transformers 5 ---------===//
//
// MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock, Qwen3MoeSparseMoeBlock, OlmoeSparseMoeBlock
// and GptOssMLP as transformers 5.24 trains them. The router (an nn.Parameter [experts, hidden] applied with F.linear)
// takes an fp32 softmax over the experts and the top k, renormalised where the model
// says. The experts run through transformers' default implementation, `grouped_mm`
// (integrations/moe.py, grouped_mm_experts_forward): the token-expert pairs sorted by
// expert, each pair's hidden state gathered, two grouped matmuls against the
// [experts, out, in] weights with the gated activation between, the routing weights
// applied, the pairs put back in token order and summed per token. Every shape is set by
// the tokens and k (S = tokens x k rows), not by which experts the router picks, so the
// memory of the block is exact without assumptions about the load balance. gpt-oss differs
// in the router (a bias; the top k logits softmaxed), the weights' layout ([experts, in,
// out]), the experts' biases (gathered per row, added in place) and its clamped SwiGLU on
// interleaved gate and up columns.
//
// The grouped matmul has no ONNX operator: it is GroupedMatMul of the domain
// "ai.trainmem" (inputs: the rows [S, in], the weights as the kernel reads them
// [experts, in, out], each row's expert in ascending order [S]; output [S, out]).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/HfGraphParts.h"

#include <array>
#include <tuple>

namespace trainmem::hf {
namespace {

/// _grouped_linear(input, weight, offs, bias): grouped_mm against weight as the kernel
/// reads it, [E, in, out]: the parameter itself where it is stored that way (gpt-oss,
/// is_transposed), else its transpose(-2, -1), a view of [E, out, in]. A bias (each row's
/// expert's, gathered) is added in place: `out.add_(bias)`.
TensorId groupedLinear(OnnxGraphBuilder &B, const std::string &S, TensorId X, TensorId W,
                       TensorId SortedExperts, bool Transposed, TensorId BiasRows = NoTensor) {
  TensorId Wt = Transposed ? W : B.transpose(S, W, {0, 2, 1});
  TensorId Y = B.op(S, "GroupedMatMul", {X, Wt, SortedExperts}, {B.shape(X)[0], B.shape(Wt)[2]},
                    DType::Float32);
  B.setDomain(Y, "ai.trainmem");
  if (BiasRows == NoTensor)
    return Y;
  TensorId Sum = B.binary(S, "Add", Y, BiasRows);
  B.tensor(Sum).InPlace = true;
  return Sum;
}

/// GptOssExperts._apply_gate on [S, 2 x width] with gate and up interleaved:
/// gate = x[..., ::2].clamp(max=limit), up = x[..., 1::2].clamp(-limit, limit),
/// (up + 1) * (gate * sigmoid(gate * alpha)). Each clamp keeps its input, a strided view
/// of the projection, for the backward.
TensorId clampedSwiglu(OnnxGraphBuilder &B, const std::string &S, TensorId GateUp,
                       const HfModel &M) {
  TensorId Gate = B.slice(S, GateUp, 1, 0, SliceToEnd, 2);
  TensorId Up = B.slice(S, GateUp, 1, 1, SliceToEnd, 2);
  const double Limit = M.SwigluLimit;
  Gate = B.op(S, "Clip", {Gate, B.scalar(-std::numeric_limits<double>::infinity()),
                          B.scalar(Limit)},
              B.shape(Gate), DType::Float32);
  Up = B.op(S, "Clip", {Up, B.scalar(-Limit), B.scalar(Limit)}, B.shape(Up), DType::Float32);
  TensorId Sig = B.unary(S, "Sigmoid", B.binary(S, "Mul", Gate, B.scalar(M.SwigluAlpha)));
  TensorId Glu = B.binary(S, "Mul", Gate, Sig);
  return B.binary(S, "Mul", B.binary(S, "Add", Up, B.scalar(1.0)), Glu);
}

/// DeepseekV3TopkRouter (and DeepseekV2TopkRouter, SoftmaxGreedyRouter):
/// logits = F.linear(x.float(), weight.float()), sigmoid scores; the
/// scores plus the correction bias rank the experts within the best topk_group of n_group
/// groups (each scored by its best two); the weights are the chosen experts' scores,
/// renormalised where norm_topk_prob says and scaled by routed_scaling_factor, in fp32.
/// Returns the logits, the weights [tokens, k] and the chosen experts.
std::tuple<TensorId, TensorId, TensorId> groupLimitedRouter(OnnxGraphBuilder &B,
                                                            const Module &Gate,
                                                            const HfModel &M, TensorId Flat,
                                                            TensorId RouterW) {
  const std::string &GS = Gate.Scope;
  const int64_t T = B.shape(Flat)[0], E = M.Experts, G = M.MoeGroups, Per = E / G;
  const int64_t Keep = M.MoeTopKGroups, K = M.TopK;
  TensorId Logits =
      B.matmul(GS, B.upcastToFp32(GS, Flat), B.upcastToFp32(GS, RouterW));
  auto TopK = [&](TensorId X, int64_t Count, const Shape &Out, bool Sorted) {
    std::vector<TensorId> R =
        B.node(GS, "TopK", {X, B.ints({Count})}, {Out, Out}, DType::Float32,
               {{"axis", int64_t{-1}}, {"largest", int64_t{1}}, {"sorted", int64_t{Sorted}}});
    B.tensor(R[1]).Type = DType::Int64;
    return R;
  };
  // The chosen groups' experts, the rest masked to Fill: zeros_like(group_scores)
  // .scatter_(1, group_idx, 1), expanded to the experts and reshaped (a copy), then
  // masked_fill(~score_mask.bool(), Fill).
  auto MaskGroups = [&](TensorId X, TensorId GroupScores, double Fill) {
    TensorId GroupIdx = TopK(GroupScores, Keep, {T, Keep}, false)[1];
    TensorId Zeros = B.op(GS, "ConstantOfShape", {B.ints({T, G})}, {T, G}, DType::Float32);
    TensorId GroupMask =
        B.op(GS, "ScatterElements", {Zeros, GroupIdx, B.expand(GS, B.scalar(1.0), {T, Keep})},
             {T, G}, DType::Float32, {{"axis", int64_t{1}}});
    TensorId ScoreMask =
        B.reshape(GS, B.expand(GS, B.unsqueeze(GS, GroupMask, {2}), {T, G, Per}), {T, E});
    TensorId Blocked = B.unary(GS, "Not", B.cast(GS, ScoreMask, DType::Bool));
    TensorId Masked = B.op(GS, "Where", {Blocked, B.scalar(Fill), X}, {T, E}, DType::Float32);
    return std::array<TensorId, 3>{GroupMask, ScoreMask, Masked};
  };
  if (M.SoftmaxGreedyRouter) {
    // DeepseekV2TopkRouter: scores = softmax(logits, dtype=float32); group_limited_greedy
    // ranks the groups by their best score (max(dim=-1), a top-1) and zeroes the others';
    // the weights are the top k scores themselves, times routed_scaling_factor.
    TensorId Scores = B.op(GS, "Softmax", {Logits}, {T, E}, DType::Float32,
                           {{"axis", int64_t{-1}}});
    std::vector<TensorId> Held;
    if (M.GroupLimited) {
      std::vector<TensorId> Best = TopK(B.reshape(GS, Scores, {T, G, Per}), 1, {T, G, 1}, true);
      TensorId GroupScores = B.reshape(GS, Best[0], {T, G});
      auto [GroupMask, ScoreMask, Masked] = MaskGroups(Scores, GroupScores, 0.0);
      Held = {GroupScores, GroupMask, ScoreMask, Scores};
      Scores = Masked;
    }
    std::vector<TensorId> Top = TopK(Scores, K, {T, K}, false);
    TensorId Weights = B.binary(GS, "Mul", Top[0], B.scalar(M.RoutedScaling));
    for (TensorId Local : Held)
      B.holdUntil(Local, Weights);
    return {Logits, Weights, Top[1]};
  }
  TensorId Scores = B.unary(GS, "Sigmoid", Logits);
  TensorId Bias = B.stored(Gate.param("e_score_correction_bias"), {E}, DType::Float32,
                           TensorKind::Buffer);
  TensorId Choice = B.binary(GS, "Add", Scores, Bias);
  // group_scores = scores_for_choice.view(-1, n_group, per).topk(2)[0].sum(-1)
  std::vector<TensorId> Best2 = TopK(B.reshape(GS, Choice, {T, G, Per}), 2, {T, G, 2}, true);
  TensorId GroupScores = B.op(GS, "ReduceSum", {Best2[0], B.ints({-1})}, {T, G},
                              DType::Float32, {{"keepdims", int64_t{0}}});
  auto [GroupMask, ScoreMask, Masked] =
      MaskGroups(Choice, GroupScores, -std::numeric_limits<double>::infinity());
  TensorId Chosen = TopK(Masked, K, {T, K}, false)[1];
  TensorId Weights = B.op(GS, "GatherElements", {Scores, Chosen}, {T, K}, DType::Float32,
                          {{"axis", int64_t{1}}});
  if (M.NormTopK) { // topk_weights /= topk_weights.sum(dim=-1, keepdim=True) + 1e-20
    TensorId Sum = B.op(GS, "ReduceSum", {Weights, B.ints({-1})}, {T, 1}, DType::Float32,
                        {{"keepdims", int64_t{1}}});
    Weights = B.binary(GS, "Div", Weights, B.binary(GS, "Add", Sum, B.scalar(1e-20)));
  }
  Weights = B.binary(GS, "Mul", Weights, B.scalar(M.RoutedScaling));
  // The router's locals until it returns.
  for (TensorId Local : {GroupScores, GroupMask, ScoreMask, Masked})
    B.holdUntil(Local, Weights);
  return {Logits, Weights, Chosen};
}

} // namespace

TensorId sparseMoe(OnnxGraphBuilder &B, const Module &Mlp, const HfModel &M, TensorId X) {
  const Shape In = B.shape(X);
  const int64_t H = M.Hidden, E = M.Experts, K = M.TopK, I = M.MoeIntermediate;
  const int64_t T = In[0] * In[1], S = T * K;
  const std::string &BS = Mlp.Scope;
  TensorId Flat = B.reshape(BS, X, {T, H}); // hidden_states.view(-1, hidden_dim)
  // Qwen2-MoE runs its shared expert (a LlamaMLP) first; DeepSeek-V3 its shared experts last.
  const bool SharedLast = M.SigmoidGroupRouter || M.SoftmaxGreedyRouter; // DeepSeek's
  TensorId Shared = M.SharedIntermediate > 0 && !SharedLast
                        ? gatedMlp(B, Mlp.child("shared_expert"), M, Flat, M.SharedIntermediate)
                        : NoTensor;

  // The router: logits = F.linear(x, weight), probabilities in fp32 (Mixtral:
  // softmax(logits.float()); Qwen: softmax(logits, dtype=torch.float)), their top k.
  // gpt-oss: F.linear(x, weight, bias), the top k logits, softmax(top, dtype=top.dtype).
  Module Gate = Mlp.child(M.GptOss ? "router" : "gate");
  const std::string &GS = Gate.Scope;
  TensorId RouterW = B.parameter(Gate.param("weight"), {H, E});
  B.routerWeight(RouterW);
  TensorId Logits, Weights, Chosen;
  if (M.SigmoidGroupRouter || M.SoftmaxGreedyRouter) {
    std::tie(Logits, Weights, Chosen) = groupLimitedRouter(B, Gate, M, Flat, RouterW);
  } else {
  Logits = B.matmul(GS, Flat, RouterW);
  if (M.GptOss)
    Logits = B.binary(GS, "Add", Logits, B.parameter(Gate.param("bias"), {E}));
  TensorId Probs;
  if (M.GptOss) {
    Probs = Logits; // the top k of the logits themselves
  } else if (M.Fp32RoutingWeights) {
    Probs = B.op(GS, "Softmax", {B.upcastToFp32(GS, Logits)}, {T, E}, DType::Float32,
                 {{"axis", int64_t{-1}}});
  } else {
    Probs = B.op(GS, "Softmax", {Logits}, {T, E}, DType::Float32, {{"axis", int64_t{-1}}});
    B.tensor(Probs).UpcastToFp32 = true;
  }
  std::vector<TensorId> Top =
      B.node(GS, "TopK", {Probs, B.ints({K})}, {{T, K}, {T, K}}, DType::Float32,
             {{"axis", int64_t{-1}}, {"largest", int64_t{1}}, {"sorted", int64_t{1}}});
  B.tensor(Top[1]).Type = DType::Int64;
  Weights = Top[0];
  Chosen = Top[1];
  if (M.GptOss)
    Weights = B.op(GS, "Softmax", {Weights}, {T, K}, DType::Float32, {{"axis", int64_t{-1}}});
  if (M.NormTopK) { // router_top_value /= router_top_value.sum(dim=-1, keepdim=True)
    TensorId Sum = B.op(GS, "ReduceSum", {Weights, B.ints({-1})}, {T, 1}, DType::Float32,
                        {{"keepdims", int64_t{1}}});
    Weights = B.binary(GS, "Div", Weights, Sum);
  }
  if (!M.Fp32RoutingWeights && !M.GptOss) // router_top_value.to(router_logits.dtype)
    Weights = B.castLike(GS, Weights, Logits);
  }

  // grouped_mm_experts_forward.
  Module Experts = Mlp.child("experts");
  const std::string &ES = Experts.Scope;
  TensorId PairWeights = B.reshape(ES, Weights, {S});
  TensorId PairExperts = B.reshape(ES, Chosen, {S});
  // expert_ids_g, perm = torch.sort(expert_ids): a TopK of all S, smallest first.
  std::vector<TensorId> Sorted =
      B.node(ES, "TopK", {PairExperts, B.ints({S})}, {{S}, {S}}, DType::Int64,
             {{"axis", int64_t{0}}, {"largest", int64_t{0}}, {"sorted", int64_t{1}}});
  TensorId SortedExperts = Sorted[0], Perm = Sorted[1];
  TensorId Tokens = B.binary(ES, "Div", Perm, B.ints({K}, true)); // perm // num_top_k
  TensorId Rows = B.gather(ES, Flat, Tokens);                      // [S, hidden]
  TensorId RowWeights = B.gather(ES, PairWeights, Perm);           // sample_weights[perm]
  // The group offsets: torch.histc of the sorted ids as floats (CPU; int32 on CUDA), then
  // a cumsum, both [experts] (left out, as small as the offsets GroupedMatMul keeps).
  TensorId HistcInput = B.upcastToFp32(ES, SortedExperts);
  // gpt-oss: [experts, in, out] weights (is_transposed) and biases, each row's expert's
  // gathered (`selected_biases`, a local until the next is gathered, the last until the
  // function returns).
  const bool Transposed = M.GptOss;
  auto BiasRows = [&](const char *Name, int64_t Width) {
    return B.gather(ES, B.parameter(Experts.param(Name), {E, Width}), SortedExperts);
  };
  TensorId UpBias = Transposed ? BiasRows("gate_up_proj_bias", 2 * I) : NoTensor;
  TensorId GateUp = groupedLinear(
      B, ES, Rows,
      B.parameter(Experts.param("gate_up_proj"), Transposed ? Shape{E, H, 2 * I} : Shape{E, 2 * I, H}),
      SortedExperts, Transposed, UpBias);
  TensorId Gated;
  if (M.GptOss) {
    Gated = clampedSwiglu(B, ES, GateUp, M);
  } else { // _default_apply_gate: gate, up = chunk(2, dim=-1); act_fn(gate) * up.
    std::vector<TensorId> Parts = B.split(ES, GateUp, -1, {I, I});
    Gated = B.binary(ES, "Mul", activation(B, ES, Parts[0], M.Act), Parts[1]);
  }
  TensorId DownBias = Transposed ? BiasRows("down_proj_bias", H) : NoTensor;
  TensorId Out = groupedLinear(
      B, ES, Gated,
      B.parameter(Experts.param("down_proj"), Transposed ? Shape{E, I, H} : Shape{E, H, I}),
      SortedExperts, Transposed, DownBias);
  TensorId Weighted = B.binary(ES, "Mul", Out, B.unsqueeze(ES, RowWeights, {1}));
  // inv_perm = empty_like(perm); inv_perm[perm] = arange(S): the pairs back in token order.
  TensorId Arange = B.range(ES, S);
  TensorId InvPerm =
      B.op(ES, "ScatterElements", {Arange, Perm, Arange}, {S}, DType::Int64, {{"axis", int64_t{0}}});
  TensorId Restored = B.reshape(ES, B.gather(ES, Weighted, InvPerm), {T, K, H});
  TensorId Summed = B.op(ES, "ReduceSum", {Restored, B.ints({1})}, {T, H}, DType::Float32,
                         {{"keepdims", int64_t{0}}});
  // The function's locals outlive their last use until it returns: the gathered rows
  // (which a frozen gate_up_proj's matmul does not keep), the sorted expert ids and the
  // fp32 copy of them that torch.histc counts on the CPU (on CUDA it counts int32 ids:
  // the same 4 bytes each).
  B.holdUntil(Rows, Summed);
  B.holdUntil(SortedExperts, Summed);
  B.holdUntil(HistcInput, Summed);
  if (M.GptOss) {
    B.holdUntil(UpBias, DownBias);
    B.holdUntil(DownBias, Summed);
  }
  TensorId Y = B.castLike(ES, Summed, Flat); // .to(hidden_states.dtype)

  if (Shared != NoTensor) { // sigmoid(shared_expert_gate(x)) * shared_expert(x), added
    Module SharedGate = Mlp.child("shared_expert_gate");
    TensorId G = B.unary(SharedGate.Scope, "Sigmoid", linear(B, SharedGate, Flat, H, 1, false));
    Y = B.binary(BS, "Add", Y, B.binary(BS, "Mul", G, Shared));
  }
  TensorId Block = B.reshape(BS, Y, In);
  if (SharedLast && M.SharedIntermediate > 0) // + self.shared_experts(residuals)
    Block = B.binary(BS, "Add", Block,
                     gatedMlp(B, Mlp.child("shared_experts"), M, X, M.SharedIntermediate));
  // `_, routing_weights, selected_experts = self.gate(x)`: the block's forward holds the
  // router's logits until it returns.
  B.holdUntil(Logits, Block);
  return Block;
}

} // namespace trainmem::hf
