//===- OnnxShapeInference.cpp - shapes of every tensor, node by node -------------===//
//
// Two parts: an InferenceContext over the IR that ONNX's schema inference functions
// read (input types, input data for constant-valued inputs, attributes), and a small
// evaluator for the integer arithmetic exporters emit to compute shapes at run time.
// Values are kept only for tensors up to Tensor::SmallValueLimit elements.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxShapeInference.h"
#include "analyzer/OnnxSchemas.h"
#include "analyzer/OnnxShapeFallback.h"

#include "llvm/ADT/SmallVector.h"

#include <google/protobuf/arena.h>
#include <onnx/defs/schema.h>
#include <onnx/defs/shape_inference.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>

namespace trainmem {
namespace {

/// A small tensor's value, whatever its dtype, as doubles (exact for shape arithmetic).
struct Value {
  std::vector<int64_t> Shape;
  std::vector<double> Data;
  bool Integral = true;
};

std::optional<Value> valueOf(const Tensor &T) {
  if (!T.ShapeKnown)
    return std::nullopt;
  Value V;
  V.Shape = T.Shape;
  int64_t N = T.numElements();
  if (!T.IntValues.empty() && static_cast<int64_t>(T.IntValues.size()) == N) {
    for (int64_t X : T.IntValues)
      V.Data.push_back(static_cast<double>(X));
    return V;
  }
  if (!T.FloatValues.empty() && static_cast<int64_t>(T.FloatValues.size()) == N) {
    V.Data = T.FloatValues;
    V.Integral = false;
    return V;
  }
  if (N == 0 && T.ShapeKnown)
    return V;
  return std::nullopt;
}

int64_t toInt(double D) {
  if (D >= 9.2e18)
    return std::numeric_limits<int64_t>::max();
  if (D <= -9.2e18)
    return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(D);
}

/// Stores V into T (shape, dtype already set by inference or given here).
void storeValue(Tensor &T, const Value &V, DType Type) {
  int64_t N = 1;
  for (int64_t D : V.Shape)
    N *= D;
  if (N > Tensor::SmallValueLimit || static_cast<int64_t>(V.Data.size()) != N)
    return;
  T.Shape = V.Shape;
  T.ShapeKnown = true;
  if (T.Type == DType::Undefined)
    T.Type = Type;
  T.IntValues.clear();
  T.FloatValues.clear();
  if (isFloating(T.Type))
    T.FloatValues = V.Data;
  else
    for (double D : V.Data)
      T.IntValues.push_back(toInt(D));
}

int64_t numel(const std::vector<int64_t> &Shape) {
  int64_t N = 1;
  for (int64_t D : Shape)
    N *= D;
  return N;
}

std::optional<std::vector<int64_t>> broadcastShape(const std::vector<int64_t> &A,
                                                   const std::vector<int64_t> &B) {
  size_t R = std::max(A.size(), B.size());
  std::vector<int64_t> Out(R);
  for (size_t I = 0; I < R; ++I) {
    int64_t X = I + A.size() < R ? 1 : A[I + A.size() - R];
    int64_t Y = I + B.size() < R ? 1 : B[I + B.size() - R];
    if (X != Y && X != 1 && Y != 1)
      return std::nullopt;
    Out[I] = X == 1 ? Y : X;
  }
  return Out;
}

/// Element of V at the multi-index Idx of a broadcast output shape.
double broadcastAt(const Value &V, const std::vector<int64_t> &Idx) {
  int64_t Offset = 0, Stride = 1;
  for (size_t K = V.Shape.size(); K-- > 0;) {
    int64_t I = Idx[Idx.size() - V.Shape.size() + K];
    Offset += (V.Shape[K] == 1 ? 0 : I) * Stride;
    Stride *= V.Shape[K];
  }
  return V.Data.empty() ? 0 : V.Data[Offset];
}

template <typename Fn>
std::optional<Value> elementwise(const std::vector<Value> &In, Fn F) {
  std::vector<int64_t> Shape = In[0].Shape;
  for (size_t I = 1; I < In.size(); ++I) {
    auto S = broadcastShape(Shape, In[I].Shape);
    if (!S)
      return std::nullopt;
    Shape = *S;
  }
  Value Out;
  Out.Shape = Shape;
  int64_t N = numel(Shape);
  if (N > Tensor::SmallValueLimit)
    return std::nullopt;
  std::vector<int64_t> Idx(Shape.size(), 0);
  std::vector<double> Args(In.size());
  for (int64_t E = 0; E < N; ++E) {
    for (size_t I = 0; I < In.size(); ++I)
      Args[I] = broadcastAt(In[I], Idx);
    Out.Data.push_back(F(Args));
    for (size_t K = Shape.size(); K-- > 0;) {
      if (++Idx[K] < Shape[K])
        break;
      Idx[K] = 0;
    }
  }
  return Out;
}

/// Values of the optional int input Slot, or of attribute Key for older opsets.
std::optional<std::vector<int64_t>> intsFrom(const Graph &G, const Node &N, size_t Slot,
                                             const char *Key) {
  if (Slot < N.Inputs.size() && N.Inputs[Slot] != NoTensor) {
    auto V = valueOf(G.Tensors[N.Inputs[Slot]]);
    if (!V)
      return std::nullopt;
    std::vector<int64_t> Out;
    for (double D : V->Data)
      Out.push_back(toInt(D));
    return Out;
  }
  if (Key)
    return N.intsAttr(Key);
  return std::nullopt;
}

std::optional<Value> evaluate(const Graph &G, const Node &N) {
  const std::string &Op = N.OpType;
  if (!N.Domain.empty() || N.Inputs.empty() || N.Inputs[0] == NoTensor)
    return std::nullopt;
  const Tensor &In0 = G.Tensors[N.Inputs[0]];
  if (Op == "Shape") {
    if (!In0.ShapeKnown)
      return std::nullopt;
    int64_t R = static_cast<int64_t>(In0.Shape.size());
    int64_t Start = N.intAttr("start").value_or(0), End = N.intAttr("end").value_or(R);
    Start = std::clamp<int64_t>(Start < 0 ? Start + R : Start, 0, R);
    End = std::clamp<int64_t>(End < 0 ? End + R : End, 0, R);
    Value V;
    for (int64_t I = Start; I < End; ++I)
      V.Data.push_back(static_cast<double>(In0.Shape[I]));
    V.Shape = {static_cast<int64_t>(V.Data.size())};
    return V;
  }
  if (Op == "Size") {
    if (!In0.ShapeKnown)
      return std::nullopt;
    return Value{{}, {static_cast<double>(In0.numElements())}, true};
  }
  std::vector<Value> In;
  for (TensorId T : N.Inputs) {
    if (T == NoTensor) {
      In.emplace_back();
      continue;
    }
    auto V = valueOf(G.Tensors[T]);
    if (!V)
      break;
    In.push_back(*V);
  }
  bool AllKnown = In.size() == N.Inputs.size();
  if (Op == "ConstantOfShape" && AllKnown) {
    Value V;
    for (double D : In[0].Data)
      V.Shape.push_back(toInt(D));
    if (numel(V.Shape) > Tensor::SmallValueLimit)
      return std::nullopt;
    V.Data.assign(static_cast<size_t>(numel(V.Shape)), 0.0);
    return V;
  }
  if (In.empty() || !AllKnown)
    return std::nullopt;
  if (Op == "Identity" || Op == "Cast" || Op == "Flatten" || Op == "CastLike")
    return In[0]; // shape fixed below by the inferred output shape
  if (Op == "Reshape" || Op == "Unsqueeze" || Op == "Squeeze")
    return In[0];
  if (Op == "Gather") {
    const Value &Data = In[0], &Idx = In[1];
    if (Data.Shape.size() != 1)
      return std::nullopt;
    Value V;
    V.Shape = Idx.Shape;
    V.Integral = Data.Integral;
    for (double I : Idx.Data) {
      int64_t K = toInt(I) < 0 ? toInt(I) + Data.Shape[0] : toInt(I);
      if (K < 0 || K >= Data.Shape[0])
        return std::nullopt;
      V.Data.push_back(Data.Data[K]);
    }
    return V;
  }
  if (Op == "Concat") {
    Value V = In[0];
    if (V.Shape.size() != 1)
      return std::nullopt;
    for (size_t I = 1; I < In.size(); ++I) {
      if (In[I].Shape.size() != 1)
        return std::nullopt;
      V.Data.insert(V.Data.end(), In[I].Data.begin(), In[I].Data.end());
    }
    V.Shape = {static_cast<int64_t>(V.Data.size())};
    return V;
  }
  if (Op == "Slice") {
    const Value &Data = In[0];
    size_t Rank = Data.Shape.size();
    auto Starts = intsFrom(G, N, 1, "starts"), Ends = intsFrom(G, N, 2, "ends");
    auto Axes = intsFrom(G, N, 3, "axes"), Steps = intsFrom(G, N, 4, nullptr);
    if (!Starts || !Ends || Starts->size() != Ends->size() || Rank == 0)
      return std::nullopt;
    std::vector<int64_t> Begin(Rank, 0), Step(Rank, 1), Count(Data.Shape);
    for (size_t K = 0; K < Starts->size(); ++K) {
      int64_t Axis = Axes && K < Axes->size() ? (*Axes)[K] : static_cast<int64_t>(K);
      Axis = Axis < 0 ? Axis + static_cast<int64_t>(Rank) : Axis;
      if (Axis < 0 || Axis >= static_cast<int64_t>(Rank))
        return std::nullopt;
      int64_t Len = Data.Shape[Axis], St = Steps && K < Steps->size() ? (*Steps)[K] : 1;
      if (St == 0)
        return std::nullopt;
      int64_t S = (*Starts)[K], E = (*Ends)[K];
      S = S < 0 ? S + Len : S;
      E = E < 0 ? E + Len : E;
      // ONNX Slice clamps starts/ends to [0, len] for positive steps, [-1, len-1] for
      // negative ones.
      if (St > 0) {
        S = std::clamp<int64_t>(S, 0, Len);
        E = std::clamp<int64_t>(E, 0, Len);
        Count[Axis] = E > S ? (E - S + St - 1) / St : 0;
      } else {
        S = std::clamp<int64_t>(S, -1, Len - 1);
        E = std::clamp<int64_t>(E, -1, Len - 1);
        Count[Axis] = S > E ? (S - E - St - 1) / -St : 0;
      }
      Begin[Axis] = S;
      Step[Axis] = St;
    }
    Value V;
    V.Shape = Count;
    V.Integral = Data.Integral;
    int64_t Total = numel(Count);
    std::vector<int64_t> Idx(Rank, 0);
    for (int64_t E = 0; E < Total; ++E) {
      int64_t Offset = 0;
      for (size_t K = 0; K < Rank; ++K)
        Offset = Offset * Data.Shape[K] + Begin[K] + Idx[K] * Step[K];
      V.Data.push_back(Data.Data[Offset]);
      for (size_t K = Rank; K-- > 0;) {
        if (++Idx[K] < Count[K])
          break;
        Idx[K] = 0;
      }
    }
    return V;
  }
  if (Op == "Transpose") {
    const Value &Data = In[0];
    size_t Rank = Data.Shape.size();
    std::vector<int64_t> Perm = N.intsAttr("perm").value_or(std::vector<int64_t>{});
    if (Perm.empty())
      for (size_t K = Rank; K-- > 0;)
        Perm.push_back(static_cast<int64_t>(K));
    if (!isPermutation(Perm, Rank))
      return std::nullopt;
    Value V;
    V.Integral = Data.Integral;
    for (int64_t P : Perm)
      V.Shape.push_back(Data.Shape[P]);
    std::vector<int64_t> Idx(Rank, 0);
    for (int64_t E = 0; E < numel(V.Shape); ++E) {
      std::vector<int64_t> Src(Rank);
      for (size_t K = 0; K < Rank; ++K)
        Src[Perm[K]] = Idx[K];
      int64_t Offset = 0;
      for (size_t K = 0; K < Rank; ++K)
        Offset = Offset * Data.Shape[K] + Src[K];
      V.Data.push_back(Data.Data[Offset]);
      for (size_t K = Rank; K-- > 0;) {
        if (++Idx[K] < V.Shape[K])
          break;
        Idx[K] = 0;
      }
    }
    return V;
  }
  if (Op == "Range") {
    double Start = In[0].Data.at(0), Limit = In[1].Data.at(0), Delta = In[2].Data.at(0);
    if (Delta == 0)
      return std::nullopt;
    double Count = std::ceil((Limit - Start) / Delta);
    if (Count < 0 || Count > Tensor::SmallValueLimit)
      return std::nullopt;
    Value V;
    for (int64_t I = 0; I < static_cast<int64_t>(Count); ++I)
      V.Data.push_back(Start + static_cast<double>(I) * Delta);
    V.Shape = {static_cast<int64_t>(V.Data.size())};
    return V;
  }
  if (Op == "Expand") {
    std::vector<int64_t> Target;
    for (double D : In[1].Data)
      Target.push_back(toInt(D));
    auto Shape = broadcastShape(In[0].Shape, Target);
    if (!Shape)
      return std::nullopt;
    Value Ones;
    Ones.Shape = *Shape;
    Ones.Data.assign(static_cast<size_t>(numel(*Shape)), 0.0);
    if (numel(*Shape) > Tensor::SmallValueLimit)
      return std::nullopt;
    return elementwise({In[0], Ones}, [](const std::vector<double> &A) { return A[0]; });
  }
  if ((Op == "ReduceProd" || Op == "ReduceSum" || Op == "ReduceMax" || Op == "ReduceMin") &&
      In[0].Shape.size() == 1 && In.size() == 1) {
    double R = Op == "ReduceProd" ? 1 : Op == "ReduceSum" ? 0 : In[0].Data.empty() ? 0 : In[0].Data[0];
    for (double D : In[0].Data)
      R = Op == "ReduceProd" ? R * D : Op == "ReduceSum" ? R + D
          : Op == "ReduceMax" ? std::max(R, D) : std::min(R, D);
    Value V{{}, {R}, In[0].Integral};
    if (N.intAttr("keepdims").value_or(1))
      V.Shape = {1};
    return V;
  }
  using Args = const std::vector<double> &;
  bool IntMath = In[0].Integral;
  if (Op == "Add") return elementwise(In, [](Args A) { return A[0] + A[1]; });
  if (Op == "Sub") return elementwise(In, [](Args A) { return A[0] - A[1]; });
  if (Op == "Mul") return elementwise(In, [](Args A) { return A[0] * A[1]; });
  if (Op == "Div")
    return elementwise(In, [IntMath](Args A) {
      if (A[1] == 0)
        return 0.0;
      return IntMath ? std::trunc(A[0] / A[1]) : A[0] / A[1];
    });
  if (Op == "Mod")
    return elementwise(In, [](Args A) { return A[1] == 0 ? 0.0 : std::fmod(A[0], A[1]); });
  if (Op == "Max") return elementwise(In, [](Args A) { return *std::max_element(A.begin(), A.end()); });
  if (Op == "Min") return elementwise(In, [](Args A) { return *std::min_element(A.begin(), A.end()); });
  if (Op == "Pow") return elementwise(In, [](Args A) { return std::pow(A[0], A[1]); });
  if (Op == "Neg") return elementwise(In, [](Args A) { return -A[0]; });
  if (Op == "Abs") return elementwise(In, [](Args A) { return std::fabs(A[0]); });
  if (Op == "Sqrt") return elementwise(In, [](Args A) { return std::sqrt(A[0]); });
  if (Op == "Ceil") return elementwise(In, [](Args A) { return std::ceil(A[0]); });
  if (Op == "Floor") return elementwise(In, [](Args A) { return std::floor(A[0]); });
  if (Op == "Equal") return elementwise(In, [](Args A) { return double(A[0] == A[1]); });
  if (Op == "Less") return elementwise(In, [](Args A) { return double(A[0] < A[1]); });
  if (Op == "Greater") return elementwise(In, [](Args A) { return double(A[0] > A[1]); });
  if (Op == "LessOrEqual") return elementwise(In, [](Args A) { return double(A[0] <= A[1]); });
  if (Op == "GreaterOrEqual") return elementwise(In, [](Args A) { return double(A[0] >= A[1]); });
  if (Op == "Not") return elementwise(In, [](Args A) { return double(A[0] == 0); });
  if (Op == "And") return elementwise(In, [](Args A) { return double(A[0] != 0 && A[1] != 0); });
  if (Op == "Or") return elementwise(In, [](Args A) { return double(A[0] != 0 || A[1] != 0); });
  if (Op == "Where") return elementwise(In, [](Args A) { return A[0] != 0 ? A[1] : A[2]; });
  return std::nullopt;
}

/// The IR seen through ONNX's InferenceContext interface for one node. The protos it
/// hands ONNX live on the caller's arena: made and freed one by one on the heap, they
/// were a third of inferring a 7B graph's shapes.
class NodeContext final : public onnx::InferenceContext {
public:
  NodeContext(Graph &G, const Node &N, const onnx::NodeProto &Proto,
              google::protobuf::Arena &Arena)
      : G(G), N(N) {
    for (const auto &A : Proto.attribute())
      Attributes.emplace_back(A.name(), &A);
    InputTypes.assign(N.Inputs.size(), nullptr);
    InputData.assign(N.Inputs.size(), nullptr);
    for (size_t I = 0; I < N.Inputs.size(); ++I) {
      TensorId T = N.Inputs[I];
      if (T == NoTensor)
        continue;
      const Tensor &Tn = G.Tensors[T];
      if (Tn.Type != DType::Undefined) {
        auto *Type = google::protobuf::Arena::CreateMessage<onnx::TypeProto>(&Arena);
        auto *TT = Type->mutable_tensor_type();
        TT->set_elem_type(dtypeToOnnx(Tn.Type));
        if (Tn.ShapeKnown) {
          auto *Shape = TT->mutable_shape();
          for (int64_t D : Tn.Shape)
            Shape->add_dim()->set_dim_value(D);
        }
        InputTypes[I] = Type;
      }
      if (Tn.ShapeKnown && (!Tn.IntValues.empty() || !Tn.FloatValues.empty() ||
                            Tn.numElements() == 0))
        InputData[I] = dataProto(Tn, Arena);
    }
    for (size_t I = 0; I < N.Outputs.size(); ++I)
      OutputTypes.push_back(google::protobuf::Arena::CreateMessage<onnx::TypeProto>(&Arena));
  }

  const onnx::AttributeProto *getAttribute(const std::string &Name) const override {
    for (const auto &[Key, A] : Attributes)
      if (Key == Name)
        return A;
    return nullptr;
  }
  size_t getNumInputs() const override { return N.Inputs.size(); }
  const onnx::TypeProto *getInputType(size_t I) const override {
    return I < InputTypes.size() ? InputTypes[I] : nullptr;
  }
  const onnx::TensorProto *getInputData(size_t I) const override {
    return I < InputData.size() ? InputData[I] : nullptr;
  }
  size_t getNumOutputs() const override { return N.Outputs.size(); }
  onnx::TypeProto *getOutputType(size_t I) override {
    if (I >= OutputTypes.size()) // inferShapes counts it as the node's failure
      throw std::out_of_range("output " + std::to_string(I) + " of " +
                              std::to_string(OutputTypes.size()));
    return OutputTypes[I];
  }
  onnx::GraphInferencer *getGraphAttributeInferencer(const std::string &) override {
    return nullptr;
  }
  const onnx::SparseTensorProto *getInputSparseData(size_t) const override { return nullptr; }
  const onnx::TensorShapeProto *getSymbolicInput(size_t) const override { return nullptr; }

  /// Writes what inference found into the output tensors (never overriding a known shape).
  void commit() {
    for (size_t I = 0; I < N.Outputs.size(); ++I) {
      if (N.Outputs[I] == NoTensor || !OutputTypes[I]->has_tensor_type())
        continue;
      Tensor &T = G.Tensors[N.Outputs[I]];
      const auto &TT = OutputTypes[I]->tensor_type();
      if (T.Type == DType::Undefined && TT.elem_type())
        T.Type = dtypeFromOnnx(TT.elem_type());
      if (T.ShapeKnown || !TT.has_shape())
        continue;
      std::vector<int64_t> Dims;
      bool Complete = true;
      for (const auto &D : TT.shape().dim()) {
        Complete &= D.has_dim_value() && D.dim_value() >= 0;
        Dims.push_back(D.dim_value());
      }
      if (Complete) {
        T.Shape = std::move(Dims);
        T.ShapeKnown = true;
      }
    }
  }

private:
  static const onnx::TensorProto *dataProto(const Tensor &T, google::protobuf::Arena &Arena) {
    auto *P = google::protobuf::Arena::CreateMessage<onnx::TensorProto>(&Arena);
    P->set_data_type(dtypeToOnnx(T.Type));
    for (int64_t D : T.Shape)
      P->add_dims(D);
    switch (T.Type) {
    case DType::Int64:
      for (int64_t V : T.IntValues) P->add_int64_data(V);
      break;
    case DType::Int32: case DType::Int16: case DType::Int8: case DType::UInt8:
    case DType::Bool: case DType::UInt16:
      for (int64_t V : T.IntValues) P->add_int32_data(static_cast<int32_t>(V));
      break;
    case DType::Float32:
      for (double V : T.FloatValues) P->add_float_data(static_cast<float>(V));
      break;
    case DType::Float64:
      for (double V : T.FloatValues) P->add_double_data(V);
      break;
    default:
      return nullptr; // 16-bit floats: ONNX wants raw data; shapes never need them
    }
    return P;
  }

  Graph &G;
  const Node &N;
  llvm::SmallVector<std::pair<llvm::StringRef, const onnx::AttributeProto *>, 4> Attributes;
  llvm::SmallVector<const onnx::TypeProto *, 4> InputTypes;
  llvm::SmallVector<const onnx::TensorProto *, 4> InputData;
  llvm::SmallVector<onnx::TypeProto *, 2> OutputTypes;
};

/// ONNX's schema lookups for the ops inside a function body, answered from the schemas
/// built on demand (OnnxSchemas.h) rather than ONNX's whole registry.
class OnDemandSchemas final : public onnx::ISchemaRegistry {
public:
  const onnx::OpSchema *GetSchema(const std::string &Key, const int MaxInclusiveVersion,
                                  const std::string &Domain) const override {
    return onnxSchema(Key, MaxInclusiveVersion, Domain);
  }
};

bool hasSubgraph(const onnx::NodeProto &P) {
  for (const auto &A : P.attribute())
    if (A.has_g() || A.graphs_size())
      return true;
  return false;
}

} // namespace

bool propagateValues(Graph &G, NodeId NId) {
  const Node &N = G.Nodes[NId];
  if (N.Outputs.empty() || N.Outputs[0] == NoTensor)
    return false;
  std::optional<Value> V = evaluate(G, N);
  if (!V)
    return false;
  Tensor &Out = G.Tensors[N.Outputs[0]];
  // Ops that only re-shape keep the data but take the output shape inference gave.
  if (Out.ShapeKnown && numel(Out.Shape) == static_cast<int64_t>(V->Data.size()))
    V->Shape = Out.Shape;
  if (N.OpType == "Cast")
    Out.Type = dtypeFromOnnx(static_cast<int32_t>(N.intAttr("to").value_or(1)));
  DType Type = V->Integral ? DType::Int64 : DType::Float32;
  if (N.OpType == "Equal" || N.OpType == "Less" || N.OpType == "Greater" ||
      N.OpType == "Not" || N.OpType == "And" || N.OpType == "Or" ||
      N.OpType == "LessOrEqual" || N.OpType == "GreaterOrEqual")
    Type = DType::Bool;
  storeValue(Out, *V, Type);
  return true;
}

llvm::Error inferShapes(Graph &G, const std::vector<const onnx::NodeProto *> &Protos,
                        const std::map<std::string, int> &Opsets) {
  std::map<std::string, int> Failures;
  google::protobuf::Arena Arena; // the nodes' contexts; emptied every so often
  size_t SinceReset = 0;
  for (NodeId NId : G.TopologicalOrder) {
    if (++SinceReset == 256) {
      Arena.Reset();
      SinceReset = 0;
    }
    const Node &N = G.Nodes[NId];
    const onnx::NodeProto &Proto = *Protos[NId];
    auto Version = Opsets.find(N.Domain);
    const onnx::OpSchema *Schema =
        Version == Opsets.end() ? nullptr : onnxSchema(N.OpType, Version->second, N.Domain);
    if (Schema) {
      // What onnx.checker's arity check says; ONNX's inference functions and the memory
      // rules then read the operands they need by position without looking again.
      auto Outside = [](int Count, int Min, int Max) { return Count < Min || Count > Max; };
      auto Range = [](int Min, int Max, const std::string &Noun) {
        std::string Count = Max == std::numeric_limits<int>::max() ? "at least " + std::to_string(Min)
                            : Min == Max ? std::to_string(Min)
                                         : std::to_string(Min) + " to " + std::to_string(Max);
        bool One = Min == 1 && (Max == 1 || Max == std::numeric_limits<int>::max());
        return Count + " " + Noun + (One ? "" : "s");
      };
      auto Counted = [](int Count, const std::string &Noun) {
        return std::to_string(Count) + " " + Noun + (Count == 1 ? "" : "s");
      };
      if (Outside(Proto.input_size(), Schema->min_input(), Schema->max_input()) ||
          Outside(Proto.output_size(), Schema->min_output(), Schema->max_output()))
        return llvm::createStringError(
            llvm::inconvertibleErrorCode(), "node '%s' (%s) has %s and %s; %s (opset %d) takes %s and %s",
            N.Name.c_str(), N.OpType.c_str(), Counted(Proto.input_size(), "input").c_str(),
            Counted(Proto.output_size(), "output").c_str(), N.OpType.c_str(), Version->second,
            Range(Schema->min_input(), Schema->max_input(), "input").c_str(),
            Range(Schema->min_output(), Schema->max_output(), "output").c_str());
    }
    // A node downstream of an unknown tensor would only fail again; the fallback
    // rules and the unknown-shape diagnostic deal with it.
    bool InputsTyped = true;
    for (TensorId In : N.Inputs)
      InputsTyped &= In == NoTensor || G.Tensors[In].Type != DType::Undefined;
    // Ops ONNX defines as a function of others and gives no inference function of their
    // own (in ONNX 1.12: LessOrEqual and GreaterOrEqual since opset 12,
    // MeanVarianceNormalization): their shapes come from inferring the function body, as
    // onnx.shape_inference does. (Without it, the causal mask's LessOrEqual in an export
    // without value_info left every layer downstream unknown.)
    const bool ByFunction = Schema && !Schema->has_type_and_shape_inference_function() &&
                            Schema->HasFunction() && Schema->GetFunction();
    if (Schema && InputsTyped &&
        (Schema->has_type_and_shape_inference_function() || ByFunction) &&
        !hasSubgraph(Proto)) {
      NodeContext Ctx(G, N, Proto, Arena);
      try {
        if (ByFunction) {
          static const OnDemandSchemas Schemas;
          onnx::shape_inference::InferShapeForFunctionNode(*Schema->GetFunction(), &Schemas,
                                                           Ctx);
        } else {
          Schema->GetTypeAndShapeInferenceFunction()(Ctx);
        }
        Ctx.commit();
      } catch (const std::exception &E) {
        ++Failures[N.OpType + ": " + std::string(E.what()).substr(0, 160)];
      }
    }
    applyShapeContract(G, NId);
    propagateValues(G, NId);
  }
  for (const auto &[What, Count] : Failures)
    G.Diags.warning("shape-inference", "",
                    "ONNX shape inference failed on " + std::to_string(Count) + " node(s), " +
                        What);
  return llvm::Error::success();
}

} // namespace trainmem
