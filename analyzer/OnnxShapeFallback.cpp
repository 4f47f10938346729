//===- OnnxShapeFallback.cpp - shapes ONNX's inference did not give -------------===//
//
// Shape contracts of ops ONNX's schema registry does not cover, from ONNX Runtime's
// contrib-op documentation (docs/ContribOperators.md), plus the generic rules
// (elementwise, numpy broadcasting, MatMul) for standard ops whose inference stopped
// early. A tensor no rule reaches stays unknown and is listed in one diagnostic.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxShapeFallback.h"

#include <map>
#include <set>

namespace trainmem {
namespace {

using Dims = std::vector<int64_t>;

std::optional<Dims> broadcast(const Dims &A, const Dims &B) {
  Dims Out(std::max(A.size(), B.size()), 1);
  for (size_t I = 0; I < Out.size(); ++I) {
    int64_t X = I < Out.size() - A.size() ? 1 : A[I - (Out.size() - A.size())];
    int64_t Y = I < Out.size() - B.size() ? 1 : B[I - (Out.size() - B.size())];
    if (X != Y && X != 1 && Y != 1)
      return std::nullopt;
    Out[I] = std::max(X, Y);
  }
  return Out;
}

std::optional<Dims> matmulShape(Dims A, Dims B, bool TransA, bool TransB) {
  if (A.empty() || B.empty())
    return std::nullopt;
  bool VecA = A.size() == 1, VecB = B.size() == 1;
  if (VecA)
    A.insert(A.begin(), 1);
  if (VecB)
    B.push_back(1);
  if (TransA)
    std::swap(A[A.size() - 1], A[A.size() - 2]);
  if (TransB)
    std::swap(B[B.size() - 1], B[B.size() - 2]);
  if (A.back() != B[B.size() - 2])
    return std::nullopt;
  auto Batch = broadcast(Dims(A.begin(), A.end() - 2), Dims(B.begin(), B.end() - 2));
  if (!Batch)
    return std::nullopt;
  Dims Out = *Batch;
  if (!VecA)
    Out.push_back(A[A.size() - 2]);
  if (!VecB)
    Out.push_back(B.back());
  return Out;
}

bool sameShapeAsFirstInput(const std::string &Op) {
  static const std::set<std::string> Ops = {
      "Relu", "LeakyRelu", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Sigmoid", "Tanh",
      "Erf", "Identity", "Dropout", "BiasDropout", "Softmax", "LogSoftmax", "BiasSoftmax",
      "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
      "SkipSimplifiedLayerNormalization", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Abs",
      "Clip", "HardSigmoid", "HardSwish", "Cast", "BatchNormalization", "Gemm_bias",
      "ReluGrad", "GeluGrad", "FastGeluGrad", "SoftmaxGrad", "BiasFastGeluGrad_dX",
      "DropoutGrad", "BitmaskDropout", "BiasSplitGelu", "Cos", "Sin", "Softsign", "Selu",
      "Elu", "Celu", "Mish", "Swish", "Silu", "ImageScaler", "ScaledTanh",
      "ThresholdedRelu", "ParametricSoftplus", "Affine"};
  return Ops.count(Op) != 0;
}

bool isBroadcastOp(const std::string &Op) {
  static const std::set<std::string> Ops = {"Add", "Sub", "Mul", "Div", "Pow", "Where",
                                            "Max", "Min", "Equal", "Less", "Greater",
                                            "And", "Or", "BiasAdd", "Sum", "Mean"};
  return Ops.count(Op) != 0;
}

bool complete(const Tensor &T) { return T.ShapeKnown && T.Type != DType::Undefined; }

} // namespace

void applyShapeContract(Graph &G, NodeId NId) {
  auto Known = [&G](TensorId Id) { return Id != NoTensor && G.Tensors[Id].ShapeKnown; };
  auto ShapeOf = [&G](TensorId Id) -> const Dims & { return G.Tensors[Id].Shape; };
  auto Set = [&G](TensorId Id, Dims D, DType Type) {
    if (Id == NoTensor)
      return;
    Tensor &T = G.Tensors[Id];
    if (!T.ShapeKnown) {
      T.Shape = std::move(D);
      T.ShapeKnown = true;
    }
    if (T.Type == DType::Undefined)
      T.Type = Type;
  };
  {
    const Node &N = G.Nodes[NId];
    bool AllOut = true;
    for (TensorId Out : N.Outputs)
      if (Out != NoTensor && !complete(G.Tensors[Out]))
        AllOut = false;
    if (AllOut || N.Inputs.empty() || !Known(N.Inputs[0]))
      return;
    const Tensor &In0 = G.Tensors[N.Inputs[0]];
    TensorId Out0 = N.Outputs.empty() ? NoTensor : N.Outputs[0];
    const std::string &Op = N.OpType;
    if (Op == "Cast") {
      Set(Out0, In0.Shape, dtypeFromOnnx(static_cast<int32_t>(N.intAttr("to").value_or(1))));
    } else if (sameShapeAsFirstInput(Op)) {
      Set(Out0, In0.Shape, In0.Type);
      // Dropout's mask is bool from opset 12 on, the input's type before.
      if (Op == "Dropout" || Op == "BiasDropout" || Op == "BitmaskDropout")
        if (N.Outputs.size() > 1)
          Set(N.Outputs[1], In0.Shape,
              N.Domain.empty() && G.OpsetVersion < 12 ? In0.Type : DType::Bool);
      if ((Op == "LayerNormalization" || Op == "SimplifiedLayerNormalization") &&
          N.Outputs.size() > 1) {
        // Mean and inverse std dev keep the leading dims and set the normalised ones
        // to 1 (ONNX Runtime's LayerNormalization contract, ONNX's since opset 17).
        int64_t Axis = N.intAttr("axis").value_or(-1);
        if (Axis < 0)
          Axis += static_cast<int64_t>(In0.Shape.size());
        Dims Stat = In0.Shape;
        for (size_t K = static_cast<size_t>(std::max<int64_t>(Axis, 0)); K < Stat.size(); ++K)
          Stat[K] = 1;
        for (size_t I = 1; I < N.Outputs.size(); ++I)
          Set(N.Outputs[I], Stat, DType::Float32);
      }
      if (Op == "SkipLayerNormalization" && N.Outputs.size() > 3)
        Set(N.Outputs[3], In0.Shape, In0.Type); // input + skip + bias sum
    } else if (isBroadcastOp(Op)) {
      std::optional<Dims> D = In0.Shape;
      for (size_t I = 1; I < N.Inputs.size() && D; ++I)
        D = Known(N.Inputs[I]) ? broadcast(*D, ShapeOf(N.Inputs[I])) : std::nullopt;
      if (D) {
        bool Compare = Op == "Equal" || Op == "Less" || Op == "Greater" || Op == "And" ||
                       Op == "Or";
        DType Type = Op == "Where" && Known(N.Inputs[1]) ? G.Tensors[N.Inputs[1]].Type
                                                          : In0.Type;
        Set(Out0, *D, Compare ? DType::Bool : Type);
      }
    } else if ((Op == "MatMul" || Op == "FusedMatMul") && N.Inputs.size() >= 2 &&
               Known(N.Inputs[1])) {
      if (auto D = matmulShape(In0.Shape, ShapeOf(N.Inputs[1]), N.intAttr("transA").value_or(0),
                               N.intAttr("transB").value_or(0)))
        Set(Out0, *D, In0.Type);
    } else if (Op == "Attention" && N.Domain == "com.microsoft" && N.Inputs.size() >= 2 &&
               Known(N.Inputs[1]) && In0.Shape.size() == 3) {
      // Output [batch, seq, v_hidden]; v_hidden is the last of qkv_hidden_sizes, else a
      // third of the packed weight's columns.
      int64_t VHidden = ShapeOf(N.Inputs[1]).back() / 3;
      if (auto Sizes = N.intsAttr("qkv_hidden_sizes"); Sizes && Sizes->size() == 3)
        VHidden = (*Sizes)[2];
      Set(Out0, {In0.Shape[0], In0.Shape[1], VHidden}, In0.Type);
    } else if (Op == "EmbedLayerNormalization" && N.Domain == "com.microsoft" &&
               N.Inputs.size() >= 3 && Known(N.Inputs[2]) && In0.Shape.size() == 2) {
      int64_t Hidden = ShapeOf(N.Inputs[2]).back();
      DType Type = G.Tensors[N.Inputs[2]].Type;
      Set(Out0, {In0.Shape[0], In0.Shape[1], Hidden}, Type);
      if (N.Outputs.size() > 1)
        Set(N.Outputs[1], {In0.Shape[0]}, DType::Int32); // mask_index
      if (N.Outputs.size() > 2)
        Set(N.Outputs[2], {In0.Shape[0], In0.Shape[1], Hidden}, Type);
    }
  }
}

void reportUnknownShapes(Graph &G) {
  // Report the nodes where knowledge stops (all inputs known, an output not), apart
  // from the tensors that are unknown only because something upstream is.
  std::map<std::string, int> Roots;
  int Total = 0;
  for (const Node &N : G.Nodes) {
    bool InputsKnown = true, OutputUnknown = false;
    for (TensorId In : N.Inputs)
      InputsKnown &= In == NoTensor || G.Tensors[In].ShapeKnown;
    for (TensorId Out : N.Outputs)
      if (Out != NoTensor && !G.Tensors[Out].ShapeKnown) {
        OutputUnknown = true;
        ++Total;
      }
    if (InputsKnown && OutputUnknown)
      ++Roots[(N.Domain.empty() ? "" : N.Domain + ".") + N.OpType + " '" + N.Name + "'"];
  }
  if (Total) {
    std::string List;
    int Shown = 0;
    for (const auto &[Op, Count] : Roots) {
      if (++Shown > 6) {
        List += ", ...";
        break;
      }
      List += (List.empty() ? "" : ", ") + Op;
    }
    G.Diags.warning("unknown-shape", "",
                    std::to_string(Total) + " tensors have no inferable shape; inference stops at " +
                        std::to_string(Roots.size()) + " node(s): " + List +
                        "; unknown tensors count as 0 bytes");
  }
}

} // namespace trainmem
