//===- OpMemoryRules.h - what each op allocates and saves, as PyTorch does -*- C++ -*-===//
//
// The simulator replays ops, not ONNX nodes: a pre-pass groups the nodes an exporter
// decomposed (GELU's Erf arithmetic, LayerNorm before opset 17, SiLU, Linear = MatMul +
// bias Add) back into the op PyTorch ran, and drops shape arithmetic PyTorch does on
// Python ints. Each op then has a rule, in the spirit of PyTorch's derivative formulas
// (tools/autograd/derivatives.yaml): which outputs are new storage and which are views,
// what the forward saves for backward given which inputs need a gradient, and what its
// backward allocates.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_OPMEMORYRULES_H
#define TRAINMEM_ANALYZER_OPMEMORYRULES_H

#include "analyzer/Graph.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// One op as PyTorch runs it, possibly covering several IR nodes.
struct SimOp {
  std::string Kind;              ///< "Linear", "Gelu", "LayerNorm", or an ONNX op type
  std::vector<TensorId> Inputs;  ///< NoTensor for omitted optional inputs
  std::vector<TensorId> Outputs;
  std::vector<NodeId> Nodes;     ///< the IR nodes it stands for (first is the anchor)
  std::string Layer;             ///< layer path of the anchor node
  std::string Name;              ///< anchor node name
};

/// The matmul-like ops (linear, matmul, convolution, the experts' grouped matmul): the
/// outputs selective checkpointing keeps (the simulator's policy, and the planner's
/// recompute costs of it).
inline bool isMatmulKind(llvm::StringRef Kind) {
  return Kind == "Linear" || Kind == "MatMul" || Kind == "Gemm" || Kind == "Conv" ||
         Kind == "ConvTranspose" || Kind == "GroupedMatMul";
}

/// Groups the graph's nodes into the ops PyTorch executes, in execution order. Nodes that
/// only compute shapes (every output has a value known at import) are dropped. With
/// FuseAttention, MatMul -> [scale] -> [mask] -> Softmax -> MatMul chains become one
/// ScaledDotProductAttention op.
std::vector<SimOp> buildSimOps(const Graph &G, bool FuseAttention = false);

/// One repeated block's ops: Ops[First..Last], consecutive in execution order.
struct BlockSpan {
  std::string Block; ///< the layer path of the block ("h.3", "model.layers.12")
  size_t First = 0, Last = 0;
};
/// The runs of ops of each repeated block (repeatedBlocks: composite numbered modules), in
/// execution order: what --checkpoint counts, wraps and recomputes.
std::vector<BlockSpan> repeatedBlockSpans(const Graph &G, const std::vector<SimOp> &Ops);

/// Where an output's memory comes from.
enum class OutputKind { New, ViewOfInput0, None };

/// What is saved for backward; sizes are resolved by the simulator.
struct SavedItem {
  enum Kind { Input, Output, Extra } What = Input;
  int Index = 0;           ///< input or output index
  int64_t ExtraBytes = 0;  ///< for Extra: bytes of a tensor the op makes only to save it
  const char *ExtraName = ""; ///< for Extra: what it is (a literal)
};

/// Forward and backward memory behaviour of one op, given which inputs need grads.
/// Inline vectors: a rule is made for every op of every simulated step, and ops have a
/// few inputs and outputs.
struct OpMemoryRule {
  llvm::SmallVector<OutputKind, 2> Outputs;
  /// Tensors saved for backward (only filled when some input requires grad).
  llvm::SmallVector<SavedItem, 4> Saved;
  /// Bytes allocated inside the forward and freed before it returns (contiguous copies
  /// of operands that are not kept).
  int64_t ForwardTransient = 0;
  /// Bytes the forward allocates that a Saved extra keeps when the op records for the
  /// backward, and that are freed when it returns where it does not (under no_grad: a
  /// checkpointed segment's forward): SDPA's float bias made from a boolean mask.
  int64_t ForwardTransientUnlessSaved = 0;
  /// Per input: bytes its gradient allocates (0 when the gradient is the output
  /// gradient itself passed through, or a view of it). Only for inputs needing grad.
  llvm::SmallVector<int64_t, 4> GradInputBytes;
  /// True where the input's gradient is the output gradient passed through unchanged.
  llvm::SmallVector<bool, 4> GradIsPassThrough;
  /// Extra bytes the backward holds while it computes (freed when it returns).
  int64_t BackwardTransient = 0;
  /// The output is the input itself (`.to()` the dtype it already has): nothing runs,
  /// nothing is allocated or saved, the gradient passes through.
  bool Alias = false;
};

/// Byte size of a tensor under the simulated precision, for rules that size extras.
struct RuleContext {
  const Graph &G;
  std::vector<DType> TypeOf;        ///< per tensor: dtype in the simulated step
  std::vector<bool> RequiresGrad;   ///< per tensor
  bool DropoutMaskIsBool = true;    ///< CUDA native_dropout keeps a bool mask
  bool Cpu = false;                 ///< oneDNN kernels: operand reorders in conv
  /// PyTorch 2.x derivative formulas where they save less than 1.13's (mean(dim) keeps
  /// only its input's sizes, not the input).
  bool Torch2 = false;
  /// CPU convolution backends (torch 1.13): intra-op threads (the fixtures use 1) and
  /// whether oneDNN takes bf16 (AVX-512 BW/VL/DQ); on AVX2, bf16 convolutions run im2col.
  int64_t CpuThreads = 1;
  bool CpuHasAvx512Bf16 = false;
  /// Under autocast: the 16-bit type matmuls and convolutions compute in.
  std::optional<DType> AutocastType;
  /// Training-time dropout on the attention probabilities (0: none). On the CPU it sends
  /// scaled_dot_product_attention to PyTorch's math kernel.
  double AttentionDropout = 0.0;

  int64_t bytes(TensorId T) const {
    return T == NoTensor ? 0 : G.Tensors[T].bytesAs(TypeOf[T]);
  }
  int64_t elements(TensorId T) const {
    return T == NoTensor ? 0 : G.Tensors[T].numElements();
  }
};

OpMemoryRule memoryRuleFor(const SimOp &Op, const RuleContext &Ctx);

/// Does a gradient flow to operand I of Op? Not to CastLike's second operand, which gives
/// only its dtype.
inline bool carriesGradient(const SimOp &Op, size_t I) {
  return I != 1 || llvm::StringRef(Op.Kind) != "CastLike"; // length compared first
}

/// The operands whose values Op reads, which it keeps alive until it has run: all but
/// CastLike's second (`x.to(like.dtype)` reads only like's dtype).
inline std::vector<TensorId> operandsRead(const SimOp &Op) {
  if (Op.Inputs.size() < 2 || llvm::StringRef(Op.Kind) != "CastLike")
    return Op.Inputs;
  return {Op.Inputs[0]};
}

/// Per op: none of its outputs reaches a graph output (what the loss reads) through
/// gradient-carrying inputs of the ops after it. PyTorch frees such an op's autograd node,
/// and what it saved, with its outputs: it keeps nothing for a backward that never comes
/// (DeepSeek's router ranks expert groups and takes top-k indices of masked scores).
std::vector<bool> opsOffLossPath(const Graph &G, const std::vector<SimOp> &Ops);

/// Where training-time dropout runs, and with which probability (op index -> p), when the
/// export lost its nn.Dropout modules: on the attention probabilities the PV matmul reads
/// (after transformers' cast of its fp32 softmax, or gpt-oss's probabilities less the
/// sink's column), on each residual branch's output projection (directly or through
/// GPT-2's Conv1D reshape), on the input of the block stack, and at a classification
/// head's own sites (Graph::DropoutAt). Override (--dropout) puts one probability at
/// every site; else the sites the graph declares, or its one probability at each. The
/// simulator and validate's executor both run these.
std::map<size_t, double> dropoutSites(const Graph &G, const std::vector<SimOp> &Ops,
                                      std::optional<double> Override);

/// The probability of the attention probabilities' dropout (what SDPA is handed).
inline double attentionDropout(const Graph &G, std::optional<double> Override) {
  return Override                 ? *Override
         : G.DeclaredDropoutSites ? G.DeclaredDropoutSites->Attention
                                  : G.DeclaredDropout.value_or(0.0);
}

/// Does scaled_dot_product_attention run PyTorch's math kernel (the CPU with dropout, or
/// values of another head width than the queries)?
bool sdpaRunsMathKernel(const RuleContext &Ctx, const SimOp &Op);

/// The packed storage of the parameter a linear reads as its weight (directly or through
/// a Transpose), or null when it is not quantized.
const QuantizedStorage *quantizedWeight(const RuleContext &Ctx, TensorId Weight);

} // namespace trainmem

#endif
