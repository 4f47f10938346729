//===- Graph.h - trainmem's graph IR -----------------------------------*- C++ -*-===//
//
// The graph IR every importer produces and every pass reads: tensors with their dtype,
// concrete shape (after symbolic dims are bound), kind, producer and consumers; nodes with
// op type, domain, attributes and a layer path; a topological order. Importers build it,
// later passes (census, simulator, planner) only read it.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_GRAPH_H
#define TRAINMEM_ANALYZER_GRAPH_H

#include "analyzer/DType.h"
#include "analyzer/Diagnostics.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace trainmem {

using TensorId = int32_t;
using NodeId = int32_t;
inline constexpr TensorId NoTensor = -1;
inline constexpr NodeId NoNode = -1;

/// What a tensor is in the training step. Importers set Input/Constant/Activation/Output
/// and mark stored tensors as Initializer; the parameter census decides which stored
/// tensors are Parameters, Buffers or plain Constants.
enum class TensorKind : uint8_t {
  Input,       ///< a batch tensor fed by the user (ids, images, masks)
  Parameter,   ///< a learnable weight (may be frozen)
  Buffer,      ///< persistent non-learnable state (running stats, masks, rotary tables)
  Constant,    ///< a literal the exporter emitted (shapes, scalars, axes)
  Activation,  ///< an intermediate value computed in the forward pass
  Output,      ///< a graph output (logits, loss)
};

const char *tensorKindName(TensorKind Kind);

/// Where a stored tensor's payload lives, so a tie can be confirmed by comparing bytes
/// without ever loading every weight.
struct PayloadRef {
  enum class Source : uint8_t { None, InlineRaw, InlineTyped, ExternalFile, Fill };
  Source From = Source::None;
  /// InlineRaw / InlineTyped: index of the initializer or Constant in the importer's own
  /// bookkeeping; ExternalFile: the file and byte range. Fill: every element equals FillValue.
  std::string File;
  int64_t Offset = 0;
  int64_t Length = -1;
  double FillValue = 0.0;
  int32_t Index = -1;
};

struct Tensor {
  std::string Name;
  DType Type = DType::Undefined;
  /// Concrete dims after binding; empty for a scalar. Meaningful only if ShapeKnown.
  std::vector<int64_t> Shape;
  bool ShapeKnown = false;
  TensorKind Kind = TensorKind::Activation;
  /// True for tensors whose value is stored in the model (initializers, Constant nodes,
  /// ConstantOfShape weights, parameters passed as graph inputs of training graphs).
  bool Stored = false;
  NodeId Producer = NoNode;
  std::vector<NodeId> Consumers;
  bool IsGraphOutput = false;
  /// The model computes this tensor in fp32 whatever the training precision: an explicit
  /// upcast in its code (transformers' RMSNorm: `hidden_states.to(torch.float32)`) that
  /// an fp32 graph cannot show, as the cast changes nothing there. Set by the HF
  /// importer; the simulator keeps it, and what is computed from it, in fp32 up to a
  /// CastLike back to the model's dtype.
  bool UpcastToFp32 = false;
  /// An attention mask transformers does not build for SDPA when the batch has no padding:
  /// a decoder's causal pattern alone (no sliding window cutting into the sequence; SDPA
  /// runs with is_causal=True); an encoder's all-ones padding mask is not built at all, for
  /// eager attention either (the HF importer leaves it out). Without a mask it
  /// also passes enable_gqa instead of repeating grouped key/value heads. Eager attention
  /// adds the mask. Set by the HF importer, whose graphs model unpadded batches.
  bool SdpaSkipsMask = false;
  /// An additive mask (where(allowed, 0, min)) that transformers builds for SDPA as the
  /// boolean pattern itself, expanded over the batch (masking_utils.sdpa_mask): only eager
  /// attention materialises the float mask. scaled_dot_product_attention then makes a float
  /// bias in the query's dtype per call (convert_boolean_attn_mask), kept for the backward.
  /// Set by the HF importer.
  bool SdpaTakesBoolPattern = false;
  /// A layer's key or value states as transformers' DynamicCache receives them (after
  /// RoPE, before grouped heads are repeated). A decoder trained with `use_cache` on (the
  /// config's default; gradient checkpointing turns it off in the layers it wraps) builds
  /// the cache in its forward: `torch.cat` copies each into the cache, and attention reads,
  /// and autograd saves, the copy (Graph::TrainingKvCache). Set by the HF importer.
  bool KvCache = false;
  /// Computed in place into its op's first input (`out.add_(bias)`): no storage of its
  /// own, the first input's. Set by the HF importer (gpt-oss's expert biases).
  bool InPlace = false;
  PayloadRef Payload;
  /// Values of small stored integer/float tensors (at most SmallValueLimit elements):
  /// shapes, axes, slice bounds and scalars that shape inference and export need.
  std::vector<int64_t> IntValues;
  std::vector<double> FloatValues;
  static constexpr int64_t SmallValueLimit = 64;

  int64_t numElements() const;
  /// Bytes in the tensor's own dtype; 0 when the shape is unknown.
  int64_t bytes() const { return bytesAs(Type); }
  int64_t bytesAs(DType AsType) const;
};

/// One attribute value, enough for every attribute a memory model needs.
using AttributeValue = std::variant<int64_t, double, std::string, std::vector<int64_t>,
                                    std::vector<double>>;

struct Node {
  std::string Name;
  std::string OpType;
  std::string Domain; ///< "" for the default ONNX domain
  std::map<std::string, AttributeValue> Attributes;
  std::vector<TensorId> Inputs;  ///< NoTensor for an omitted optional input
  std::vector<TensorId> Outputs; ///< NoTensor for an omitted optional output
  /// Module path such as "h.3.attn" or "model.layers.3.self_attn.q_proj", derived from
  /// node and tensor names; empty when nothing names a module.
  std::string LayerPath;

  std::optional<int64_t> intAttr(const std::string &Key) const;
  std::optional<double> floatAttr(const std::string &Key) const;
  std::optional<std::vector<int64_t>> intsAttr(const std::string &Key) const;
  std::optional<std::string> stringAttr(const std::string &Key) const;
};

/// A binding of one symbolic dimension, with where the user set it.
struct DimBinding {
  std::string Name;
  int64_t Value = 0;
};

/// A parameter stored in a packed format (bitsandbytes NF4, int8): its bytes and the
/// dtype its compute dequantizes to. Set by strategies, read by the census and simulator.
struct QuantizedStorage {
  std::string Format;     ///< e.g. "nf4"
  int64_t Bytes = 0;      ///< packed payload plus quantization constants
  DType ComputeType = DType::BFloat16;
};

struct Graph {
  std::string Name;           ///< model name: file stem or config name
  std::string SourcePath;     ///< file the graph was read from
  std::string SourceFormat;   ///< "onnx", "hf-config", ...
  std::string Producer;       ///< producer_name/version of an ONNX file
  std::string Architecture;   ///< HF model_type ("llama", "gpt2"...), empty for ONNX files
  int64_t OpsetVersion = 0;   ///< default-domain opset
  std::vector<Tensor> Tensors;
  std::vector<Node> Nodes;
  std::vector<TensorId> Inputs;   ///< batch inputs, in declaration order
  std::vector<TensorId> Outputs;
  std::vector<NodeId> TopologicalOrder;
  std::vector<DimBinding> Dims;   ///< symbolic dims and the values they were bound to
  /// Facts an importer knows better than a graph can show (e.g. HF `tie_word_embeddings`):
  /// pairs of stored tensors that are one parameter in PyTorch.
  std::vector<std::pair<TensorId, TensorId>> DeclaredTies;
  std::optional<bool> DeclaredTieWordEmbeddings;
  /// Training-time dropout probability the model's config declares (HF configs); the
  /// simulator applies it unless --dropout says otherwise.
  std::optional<double> DeclaredDropout;
  /// Where the model's own code drops out, with which probability (HF configs: transformers
  /// applies `attention_dropout` to the attention probabilities only in the LLaMA family,
  /// GPT-2 `attn_pdrop` / `resid_pdrop` / `embd_pdrop` each at its place). Unset (ONNX
  /// files): DeclaredDropout at every site the simulator finds. --dropout=P overrides both.
  struct DropoutSites {
    double Attention = 0; ///< the attention probabilities
    double Residual = 0;  ///< each residual branch's output projection
    double Embedding = 0; ///< the input of the block stack
  };
  std::optional<DropoutSites> DeclaredDropoutSites;
  /// Where a model's own nn.Dropout modules sit that the sites above do not describe (HF
  /// configs: a classification head's, DistilBERT's after its FFN only): Identity nodes'
  /// outputs, each with its probability (0: the module is there, the config turned it
  /// off). --dropout=P puts P at each.
  std::vector<std::pair<TensorId, double>> DropoutAt;
  /// The dtype the model's config stores its weights in (HF `torch_dtype`, or `dtype` in
  /// transformers 5), which from_pretrained loads by default; unset when not declared.
  std::optional<DType> DeclaredWeightType;
  /// A Hugging Face checkpoint stored quantized (its config's quantization_config: "mxfp4",
  /// "fp8"); empty otherwise. The prediction is of the weights dequantized, as training
  /// loads them, and the emitted configs ask for that.
  std::string DeclaredCheckpointQuantization;
  /// The model's loss casts the logits to fp32 first whatever its dtype (transformers'
  /// ForCausalLMLoss: `logits.float()`), so a 16-bit model's log_softmax is fp32 as under
  /// autocast.
  bool LossUpcastsLogits = false;
  /// The loss shifts the labels (ForCausalLMLoss: `labels = pad(labels, (0, 1), value=-100)`,
  /// then `labels[..., 1:].contiguous()`): a [rows + batch] int64 copy while the loss runs and
  /// a [rows] int64 one that nll_loss keeps as its target until its backward.
  bool LossShiftsLabels = false;
  /// True when the model's source says attention runs fused (HF's default SDPA).
  bool DeclaredFusedAttention = false;
  /// The forward of a training step fills a key/value cache (transformers' decoders with
  /// `use_cache`): the tensors marked Tensor::KvCache are copied into it where no
  /// activation checkpointing wraps their layer.
  bool TrainingKvCache = false;
  /// The batches are padded (ImportOptions::PaddedBatches): the HF importer built the
  /// attention mask transformers makes from a padded `attention_mask`.
  bool PaddedBatches = false;
  /// Parameters stored quantized (QLoRA's NF4 base weights), by tensor.
  std::map<TensorId, QuantizedStorage> Quantized;
  /// Tensors a model hands every repeated block as an argument that the block's own ops do
  /// not read (transformers' decoder layers get the `position_ids`, a view of the forward's
  /// `arange(seq)`). Activation checkpointing keeps them with each block's inputs until its
  /// backward (the non-reentrant checkpoint saves the layer call's arguments), where they
  /// would otherwise be freed once the rotary tables and the mask are made. Measured: the
  /// checkpointed decoders of tests/data/measured-hf saved seq x 8 bytes more than predicted.
  std::vector<TensorId> BlockArguments;
  /// Tensors a Python function keeps in its local variables until it returns, past their
  /// last use: {held, the tensor made as the function returns}. The simulator holds each
  /// until the op that makes the second has run (in the forward and in a recomputation).
  /// Set by the HF importer (transformers' grouped_mm experts keep the gathered rows and
  /// the sorted expert ids, which a frozen expert weight's matmul does not save).
  std::vector<std::pair<TensorId, TensorId>> LocalHolds;
  /// Tensors held until the forward returns, the loss computed: a head's forward keeps the
  /// base model's outputs (`outputs = self.model(...)`), whose last hidden state outlives
  /// the head's ops (under autocast the head saves only its 16-bit copy). Set by the HF
  /// importer; the simulator drops them with the model's outputs.
  std::vector<TensorId> HeldThroughLoss;
  /// The weights of mixture-of-experts routers (an nn.Parameter the router module applies
  /// with F.linear, not an nn.Linear): PEFT's `all-linear` does not adapt them, nor can a
  /// target name (PEFT refuses the module). Set by the HF importer.
  std::vector<TensorId> RouterWeights;
  /// Tensors a strategy added as trainable adapters (LoRA A and B).
  std::vector<TensorId> AdapterParameters;
  /// Per adapted linear: {its base output, the adapter's sum that replaces it for every
  /// reader} (what the module returns, and what a dropout after the module drops).
  std::vector<std::pair<TensorId, TensorId>> AdapterSums;
  /// A classification or question-answering head (HF configs): PEFT's task type for it
  /// ("SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"), which trains the head's modules
  /// (`classifier`, `score`, `qa_outputs`) beside the adapters.
  std::string PeftTaskType;
  std::vector<std::string> ClassifierModules;
  Diagnostics Diags;

  TensorId findTensor(const std::string &TensorName) const;
  TensorId addTensor(Tensor T);
  NodeId addNode(Node N);
  /// Room for this many tensors and nodes in all, so that adding them moves nothing: for
  /// importers that know about how many they will add (growing by doubling, a 7B ONNX
  /// import spent a tenth of its time moving tensors and rebuilding the name table).
  void reserve(size_t TensorCount, size_t NodeCount);
  /// Recomputes consumers/producers from node inputs/outputs and the topological order
  /// (Kahn's algorithm, stable in file order). Returns false and records an error
  /// diagnostic if the graph has a cycle.
  bool finalize();

  /// Limits every importer enforces before the graph is used: node and tensor counts,
  /// and shapes whose element count or byte size does not fit 62 bits (checked
  /// arithmetic: a 2^40 x 2^40 shape is an error naming the tensor, never a wrapped
  /// number). Errors name Path.
  llvm::Error checkLimits(llvm::StringRef Path) const;

private:
  /// Tensor ids by name: an open-addressed table of ids whose keys are the tensors' own
  /// names. A std::unordered_map<std::string, TensorId> copied every name into a node of
  /// its own, two allocations and ~130 bytes per tensor that every copy of a graph (the
  /// planner keeps one per LoRA setup and micro-batch) made again; this is one array.
  /// (llvm::StringMap would still copy the names.) The first tensor of a name wins.
  std::vector<TensorId> TensorIndex; ///< NoTensor where empty; a power of two long
  size_t Indexed = 0;
  size_t slotOf(llvm::StringRef Name) const;
};

/// Kahn's algorithm taking the ready item of lowest index first: the stable topological
/// order both a graph's nodes (Graph::finalize) and the simulator's ops (buildSimOps) are
/// sorted in. Pending[I]: how many edges enter item I; EachSuccessor(I, Visit) calls
/// Visit(J) once for every edge I -> J. Where every edge goes from a lower index to a
/// higher one (file order is topological, as in the importers' graphs) that order is
/// file order, found in one pass over the edges instead of a heap operation per item.
/// Fewer than Pending.size() items when there is a cycle.
template <typename Index, typename EachSuccessorFn>
std::vector<Index> smallestIndexFirstOrder(std::vector<int> Pending, EachSuccessorFn EachSuccessor) {
  const Index N = static_cast<Index>(Pending.size());
  bool InFileOrder = true;
  for (Index I = 0; I < N && InFileOrder; ++I)
    EachSuccessor(I, [&](Index J) { InFileOrder &= J > I; });
  std::vector<Index> Order;
  Order.reserve(Pending.size());
  if (InFileOrder) {
    for (Index I = 0; I < N; ++I)
      Order.push_back(I);
    return Order;
  }
  std::vector<Index> Ready; // a min-heap
  for (Index I = 0; I < N; ++I)
    if (Pending[I] == 0)
      Ready.push_back(I);
  std::make_heap(Ready.begin(), Ready.end(), std::greater<>());
  while (!Ready.empty()) {
    std::pop_heap(Ready.begin(), Ready.end(), std::greater<>());
    const Index I = Ready.back();
    Ready.pop_back();
    Order.push_back(I);
    EachSuccessor(I, [&](Index J) {
      if (--Pending[J] == 0) {
        Ready.push_back(J);
        std::push_heap(Ready.begin(), Ready.end(), std::greater<>());
      }
    });
  }
  return Order;
}

/// Derives a module path from an exporter node name or a tensor name:
/// "/model/layers.3/self_attn/q_proj/MatMul" -> "model.layers.3.self_attn.q_proj",
/// "h.3.attn.c_attn.weight" -> "h.3.attn.c_attn". Returns "" when nothing looks like a path.
std::string layerPathFromName(const std::string &Name, bool IsTensorName);

/// The repeated block a layer path belongs to: the prefix through the first all-digit
/// component ("model.layers.3.self_attn" -> "model.layers.3"), or "" if there is none.
std::string blockOfLayerPath(const std::string &LayerPath);
/// The same as a view of LayerPath (no allocation, for hot loops).
llvm::StringRef blockPrefix(llvm::StringRef LayerPath);

/// The blocks of blockOfLayerPath that are composite modules (some node sits in a
/// submodule below the block: "h.3.attn", "features.4.conv"), in graph order. A numbered
/// single layer such as a Sequential's "stem.0" Conv2d is not a repeated block: models
/// checkpoint their transformer or residual blocks, not those.
std::vector<std::string> repeatedBlocks(const Graph &G);

/// Whether Perm (a Transpose's "perm") reorders the dims of a rank-Rank tensor: each of
/// 0..Rank-1 once. A file's attribute is read as such only after this says so.
bool isPermutation(llvm::ArrayRef<int64_t> Perm, size_t Rank);

/// Is T a stored trainable-kind tensor (a parameter)?
bool isParameterTensor(const Graph &G, TensorId T);

/// The parameter a linear reads as its weight: T itself, or what T transposes (torch.onnx
/// writes a Linear's weight through a Transpose); NoTensor when T is neither.
TensorId weightParameter(const Graph &G, TensorId T);

} // namespace trainmem

#endif
