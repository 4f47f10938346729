//===- OnnxGraphBuilder.h - graph IR built the way torch.onnx names it -*- C++ -*-===//
//
// A small builder for importers that synthesise a graph rather than read one (the HF
// config importer): each call adds one ONNX op with the names torch.onnx (opset 17)
// would give it (`<scope>/<Op>_<k>`, outputs `<node>_output_<i>`, folded constants
// `onnx::Constant_<n>`) and infers its output's concrete shape and dtype, so later
// passes cannot tell the result from an imported export.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXGRAPHBUILDER_H
#define TRAINMEM_ANALYZER_ONNXGRAPHBUILDER_H

#include "analyzer/Graph.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringMap.h"

#include <cassert>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace trainmem {

/// Adds tensors and nodes to a Graph with torch.onnx's naming and infers each output's
/// shape, so every tensor is concrete. Shapes must already be bound (no symbolic dims).
class OnnxGraphBuilder {
public:
  using Shape = std::vector<int64_t>;
  using Attributes = std::map<std::string, AttributeValue>;

  /// Builds into G, which must outlive the builder; G.finalize() is the caller's job.
  explicit OnnxGraphBuilder(Graph &G) : G(G) {}

  /// Called first in each of a model's Count repeated layers (L from 0): once the first
  /// is built, makes room for the others, each taken as large as the first, and a head,
  /// so that the graph does not move its tensors as it grows (BM_ImportHfConfig7B
  /// 1.36 -> 1.16 ms).
  void startLayer(int64_t L, int64_t Count) {
    if (L == 0) {
      FirstLayerTensors = G.Tensors.size();
      FirstLayerNodes = G.Nodes.size();
    } else if (L == 1) {
      constexpr size_t Head = 64; // final norm, output projection, loss
      const auto Rest = static_cast<size_t>(Count - 1);
      G.reserve(G.Tensors.size() + Rest * (G.Tensors.size() - FirstLayerTensors) + Head,
                G.Nodes.size() + Rest * (G.Nodes.size() - FirstLayerNodes) + Head);
    }
  }

  /// The shape, dtype and whole record of a tensor already in the graph.
  const Shape &shape(TensorId Id) const { return G.Tensors[Id].Shape; }
  DType type(TensorId Id) const { return G.Tensors[Id].Type; }
  Tensor &tensor(TensorId Id) { return G.Tensors[Id]; }
  /// Marks X as handed to every repeated block (Graph::BlockArguments).
  void blockArgument(TensorId X) { G.BlockArguments.push_back(X); }
  /// An nn.Dropout(P) on X where the model has one: an Identity node whose output the
  /// simulator drops out at P (Graph::DropoutAt).
  TensorId dropout(const std::string &Scope, TensorId X, double P) {
    TensorId Y = unary(Scope, "Identity", X);
    G.DropoutAt.emplace_back(Y, P);
    return Y;
  }
  /// Holds T until the op that makes Until has run (Graph::LocalHolds).
  void holdUntil(TensorId T, TensorId Until) { G.LocalHolds.emplace_back(T, Until); }
  /// Holds T until the forward returns (Graph::HeldThroughLoss).
  void holdThroughLoss(TensorId T) { G.HeldThroughLoss.push_back(T); }
  /// Marks W as a mixture-of-experts router's weight (Graph::RouterWeights).
  void routerWeight(TensorId W) { G.RouterWeights.push_back(W); }
  /// Puts the node added last, which produced Out, in Domain (an op outside the default
  /// ONNX domain). (Producers are linked only by G.finalize().)
  void setDomain(TensorId Out, std::string Domain) {
    assert(!G.Nodes.empty() && !G.Nodes.back().Outputs.empty() &&
           G.Nodes.back().Outputs[0] == Out && "not the last node's output");
    (void)Out;
    G.Nodes.back().Domain = std::move(Domain);
  }

  /// A batch input (int64: token ids, token types, masks), appended to G.Inputs.
  TensorId input(const std::string &Name, Shape S) {
    G.Inputs.push_back(addTensor(Name, std::move(S), DType::Int64, TensorKind::Input, false));
    return G.Inputs.back();
  }
  /// A stored tensor (weight, buffer or constant) named by its state-dict key.
  TensorId stored(const std::string &Name, Shape S, DType Type, TensorKind Kind) {
    return addTensor(Name, std::move(S), Type, Kind, true);
  }
  /// A learnable weight. Weights are float32 whatever `torch_dtype` says: precision
  /// recipes decide storage.
  TensorId parameter(const std::string &Name, Shape S) {
    return stored(Name, std::move(S), DType::Float32, TensorKind::Parameter);
  }

  /// An int64 constant (shape, axes, slice bounds), shared by every use of equal value;
  /// Scalar makes it 0-dim (one value) instead of a 1-D list.
  TensorId ints(const std::vector<int64_t> &Values, bool Scalar = false);
  /// A float32 0-dim constant (eps, scales, 0.5, 1.0), shared by every use of equal value.
  TensorId scalar(double Value);

  /// The first output of the next node gets this name ("logits") instead of a scope name.
  /// An empty Name leaves the scope name.
  void nameNextOutput(std::string Name) { NextOutputName = std::move(Name); }
  /// Makes Id a graph output (kind Output, appended to G.Outputs).
  void markOutput(TensorId Id);

  /// Adds one node named after Scope and OpType, with one output of dtype OutType per
  /// entry of OutShapes, and returns those outputs.
  std::vector<TensorId> node(const std::string &Scope, const std::string &OpType,
                             std::vector<TensorId> Inputs, const std::vector<Shape> &OutShapes,
                             DType OutType, Attributes Attrs = {});
  /// node() for an op with one output.
  TensorId op(const std::string &Scope, const std::string &OpType, std::vector<TensorId> Inputs,
              Shape OutShape, DType OutType, Attributes Attrs = {}) {
    const NodeId Id = addNamedNode(Scope, OpType, std::move(Inputs),
                                   llvm::MutableArrayRef<Shape>(OutShape), OutType,
                                   std::move(Attrs));
    return G.Nodes[Id].Outputs[0];
  }

  /// An elementwise op that keeps X's shape and dtype (Sqrt, Tanh, Neg, ...).
  TensorId unary(const std::string &Scope, const std::string &OpType, TensorId X) {
    return op(Scope, OpType, {X}, shape(X), type(X));
  }
  /// Elementwise op with numpy broadcasting; float32 if either side is.
  TensorId binary(const std::string &Scope, const std::string &OpType, TensorId A, TensorId B);
  /// MatMul: A's shape with the last dim of B (float32).
  TensorId matmul(const std::string &Scope, TensorId A, TensorId B);
  /// Gemm (alpha = beta = 1) of a 2-D A [m, k] and B [k, n], plus C.
  TensorId gemm(const std::string &Scope, TensorId A, TensorId B, TensorId C);
  /// Reshape to a fully given shape (no -1 or 0 entries), passed as an ints() constant.
  TensorId reshape(const std::string &Scope, TensorId X, const Shape &To);
  TensorId transpose(const std::string &Scope, TensorId X, const std::vector<int64_t> &Perm);
  /// Opset 13+ takes the axes as an input; they must be ascending here.
  TensorId unsqueeze(const std::string &Scope, TensorId X, const std::vector<int64_t> &Axes);
  /// `x[..., Start:End:Step]` on Axis; End may run past the dim (torch.onnx writes
  /// INT64_MAX for an open end).
  TensorId slice(const std::string &Scope, TensorId X, int64_t Axis, int64_t Start, int64_t End,
                 int64_t Step = 1);
  /// Concatenation along Axis (negative counts from the end).
  TensorId concat(const std::string &Scope, const std::vector<TensorId> &Xs, int64_t Axis);
  /// Opset 13+ takes the split sizes as an input.
  std::vector<TensorId> split(const std::string &Scope, TensorId X, int64_t Axis,
                              const std::vector<int64_t> &Sizes);
  /// Embedding lookup (axis 0) or `x[:, i]` with a scalar index on another axis.
  TensorId gather(const std::string &Scope, TensorId Data, TensorId Indices, int64_t Axis = 0);
  /// `x.to(torch.float32)` where the model upcasts whatever its dtype (Tensor::UpcastToFp32).
  TensorId upcastToFp32(const std::string &Scope, TensorId X);
  /// CastLike(X, Like): `x.to(like.dtype)`, back to the dtype of the tensor X came from.
  TensorId castLike(const std::string &Scope, TensorId X, TensorId Like);
  TensorId cast(const std::string &Scope, TensorId X, DType To);
  /// Broadcast X to the fully given shape To.
  TensorId expand(const std::string &Scope, TensorId X, const Shape &To);
  /// `torch.arange(n)`: int64 [n].
  TensorId range(const std::string &Scope, int64_t N);

private:
  size_t FirstLayerTensors = 0, FirstLayerNodes = 0; ///< sizes before the first layer
  TensorId addTensor(std::string Name, Shape S, DType Type, TensorKind Kind, bool Stored);
  /// node()'s work, the output shapes moved from: a graph is built with few allocations
  /// per node (a 7B graph's import was ~40% malloc and free).
  NodeId addNamedNode(const std::string &Scope, const std::string &OpType,
                      std::vector<TensorId> Inputs, llvm::MutableArrayRef<Shape> OutShapes,
                      DType OutType, Attributes Attrs);
  std::pair<TensorId, bool> constant(const std::string &Key, Shape S, DType Type);

  Graph &G;
  llvm::StringMap<int> OpCounts; ///< nodes named so far per "scope/op"
  std::unordered_map<std::string, TensorId> Constants;
  std::string NextOutputName;
};

} // namespace trainmem

#endif
