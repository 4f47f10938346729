//===- OnnxGraphBuilder.cpp - graph IR built the way torch.onnx names it ---------===//
//
// The node naming, constant folding and per-op shape rules of OnnxGraphBuilder. Names
// follow torch.onnx's exporter so layerPathFromName and StoredTensorClassifier read a
// built graph exactly as they read an exported one.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxGraphBuilder.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cassert>

namespace trainmem {

TensorId OnnxGraphBuilder::ints(const std::vector<int64_t> &Values, bool Scalar) {
  std::string Key = Scalar ? "i" : "I";
  for (int64_t V : Values)
    Key += "," + std::to_string(V);
  auto [Id, New] = constant(Key, Scalar ? Shape{} : Shape{int64_t(Values.size())}, DType::Int64);
  if (New)
    tensor(Id).IntValues = Values;
  return Id;
}

TensorId OnnxGraphBuilder::scalar(double Value) {
  auto [Id, New] = constant(llvm::formatv("f{0:e17}", Value).str(), {}, DType::Float32);
  if (New) {
    tensor(Id).FloatValues = {Value};
    tensor(Id).Payload.From = PayloadRef::Source::Fill;
    tensor(Id).Payload.FillValue = Value;
  }
  return Id;
}

void OnnxGraphBuilder::markOutput(TensorId Id) {
  tensor(Id).Kind = TensorKind::Output;
  tensor(Id).IsGraphOutput = true;
  G.Outputs.push_back(Id);
}

std::vector<TensorId> OnnxGraphBuilder::node(const std::string &Scope, const std::string &OpType,
                                             std::vector<TensorId> Inputs,
                                             const std::vector<Shape> &OutShapes, DType OutType,
                                             Attributes Attrs) {
  std::vector<Shape> Shapes = OutShapes;
  return G.Nodes[addNamedNode(Scope, OpType, std::move(Inputs), Shapes, OutType,
                              std::move(Attrs))]
      .Outputs;
}

NodeId OnnxGraphBuilder::addNamedNode(const std::string &Scope, const std::string &OpType,
                                      std::vector<TensorId> Inputs,
                                      llvm::MutableArrayRef<Shape> OutShapes, DType OutType,
                                      Attributes Attrs) {
  Node N;
  llvm::SmallString<128> Name(Scope);
  Name += '/';
  Name += OpType;
  const int Count = OpCounts[Name]++;
  if (Count > 0) {
    Name += '_';
    Name += std::to_string(Count);
  }
  N.Name = Name.str();
  N.OpType = OpType;
  N.Attributes = std::move(Attrs);
  N.Inputs = std::move(Inputs);
  N.LayerPath = layerPathFromName(N.Name, false);
  N.Outputs.reserve(OutShapes.size());
  for (size_t I = 0; I < OutShapes.size(); ++I) {
    std::string OutName;
    if (I == 0 && !NextOutputName.empty()) {
      OutName = std::exchange(NextOutputName, std::string());
    } else {
      const std::string Index = std::to_string(I);
      OutName.reserve(N.Name.size() + 8 + Index.size());
      OutName.append(N.Name).append("_output_").append(Index);
    }
    N.Outputs.push_back(addTensor(std::move(OutName), std::move(OutShapes[I]), OutType,
                                  TensorKind::Activation, false));
  }
  return G.addNode(std::move(N));
}

TensorId OnnxGraphBuilder::binary(const std::string &Scope, const std::string &OpType,
                                  TensorId A, TensorId B) {
  const Shape &SA = shape(A), &SB = shape(B);
  Shape Out(std::max(SA.size(), SB.size()), 1);
  for (size_t I = 0; I < Out.size(); ++I) {
    int64_t DA = I < SA.size() ? SA[SA.size() - 1 - I] : 1;
    int64_t DB = I < SB.size() ? SB[SB.size() - 1 - I] : 1;
    assert((DA == DB || DA == 1 || DB == 1) && "shapes do not broadcast");
    Out[Out.size() - 1 - I] = DA == 1 ? DB : DA;
  }
  return op(Scope, OpType, {A, B}, std::move(Out),
            type(A) == DType::Float32 ? DType::Float32 : type(B));
}

TensorId OnnxGraphBuilder::matmul(const std::string &Scope, TensorId A, TensorId B) {
  Shape Out = shape(A);
  Out.back() = shape(B).back();
  return op(Scope, "MatMul", {A, B}, std::move(Out), DType::Float32);
}

TensorId OnnxGraphBuilder::gemm(const std::string &Scope, TensorId A, TensorId B, TensorId C) {
  return op(Scope, "Gemm", {A, B, C}, {shape(A)[0], shape(B)[1]}, DType::Float32,
            {{"alpha", 1.0}, {"beta", 1.0}});
}

TensorId OnnxGraphBuilder::reshape(const std::string &Scope, TensorId X, const Shape &To) {
  return op(Scope, "Reshape", {X, ints(To)}, To, type(X));
}

TensorId OnnxGraphBuilder::transpose(const std::string &Scope, TensorId X,
                                     const std::vector<int64_t> &Perm) {
  Shape Out;
  for (int64_t P : Perm)
    Out.push_back(shape(X)[P]);
  return op(Scope, "Transpose", {X}, std::move(Out), type(X), {{"perm", Perm}});
}

TensorId OnnxGraphBuilder::unsqueeze(const std::string &Scope, TensorId X,
                                     const std::vector<int64_t> &Axes) {
  Shape Out = shape(X);
  for (int64_t A : Axes)
    Out.insert(Out.begin() + A, 1);
  return op(Scope, "Unsqueeze", {X, ints(Axes)}, std::move(Out), type(X));
}

TensorId OnnxGraphBuilder::slice(const std::string &Scope, TensorId X, int64_t Axis,
                                 int64_t Start, int64_t End, int64_t Step) {
  Shape Out = shape(X);
  Out[Axis] = (std::min(End, Out[Axis]) - Start + Step - 1) / Step;
  return op(Scope, "Slice", {X, ints({Start}), ints({End}), ints({Axis}), ints({Step})},
            std::move(Out), type(X));
}

TensorId OnnxGraphBuilder::concat(const std::string &Scope, const std::vector<TensorId> &Xs,
                                  int64_t Axis) {
  Shape Out = shape(Xs[0]);
  size_t A = Axis < 0 ? Out.size() + Axis : Axis;
  for (size_t I = 1; I < Xs.size(); ++I)
    Out[A] += shape(Xs[I])[A];
  return op(Scope, "Concat", Xs, std::move(Out), type(Xs[0]), {{"axis", Axis}});
}

std::vector<TensorId> OnnxGraphBuilder::split(const std::string &Scope, TensorId X, int64_t Axis,
                                              const std::vector<int64_t> &Sizes) {
  std::vector<Shape> Outs(Sizes.size(), shape(X));
  for (size_t I = 0; I < Sizes.size(); ++I)
    Outs[I][Axis < 0 ? Outs[I].size() + Axis : Axis] = Sizes[I];
  return node(Scope, "Split", {X, ints(Sizes)}, Outs, type(X), {{"axis", Axis}});
}

TensorId OnnxGraphBuilder::gather(const std::string &Scope, TensorId Data, TensorId Indices,
                                  int64_t Axis) {
  const Shape &D = shape(Data);
  Shape Out(D.begin(), D.begin() + Axis);
  Out.insert(Out.end(), shape(Indices).begin(), shape(Indices).end());
  Out.insert(Out.end(), D.begin() + Axis + 1, D.end());
  return op(Scope, "Gather", {Data, Indices}, std::move(Out), type(Data), {{"axis", Axis}});
}

TensorId OnnxGraphBuilder::cast(const std::string &Scope, TensorId X, DType To) {
  return op(Scope, "Cast", {X}, shape(X), To, {{"to", int64_t(dtypeToOnnx(To))}});
}

TensorId OnnxGraphBuilder::upcastToFp32(const std::string &Scope, TensorId X) {
  TensorId Y = cast(Scope, X, DType::Float32);
  tensor(Y).UpcastToFp32 = true;
  return Y;
}

TensorId OnnxGraphBuilder::castLike(const std::string &Scope, TensorId X, TensorId Like) {
  return op(Scope, "CastLike", {X, Like}, shape(X), type(Like));
}

TensorId OnnxGraphBuilder::expand(const std::string &Scope, TensorId X, const Shape &To) {
  return op(Scope, "Expand", {X, ints(To)}, To, type(X));
}

TensorId OnnxGraphBuilder::range(const std::string &Scope, int64_t N) {
  return op(Scope, "Range", {ints({0}, true), ints({N}, true), ints({1}, true)}, {N},
            DType::Int64);
}

TensorId OnnxGraphBuilder::addTensor(std::string Name, Shape S, DType Type, TensorKind Kind,
                                     bool Stored) {
  Tensor T;
  T.Name = std::move(Name);
  T.Type = Type;
  T.Shape = std::move(S);
  T.ShapeKnown = true;
  T.Kind = Kind;
  T.Stored = Stored;
  return G.addTensor(std::move(T));
}

/// torch.onnx names folded constants "onnx::<Op>_<n>"; layerPathFromName skips them.
std::pair<TensorId, bool> OnnxGraphBuilder::constant(const std::string &Key, Shape S,
                                                     DType Type) {
  auto [It, New] = Constants.try_emplace(Key, NoTensor);
  if (New)
    It->second = stored("onnx::Constant_" + std::to_string(Constants.size() - 1), std::move(S),
                        Type, TensorKind::Constant);
  return {It->second, New};
}

} // namespace trainmem
