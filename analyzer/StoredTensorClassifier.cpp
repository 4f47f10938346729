//===- StoredTensorClassifier.cpp - parameters, buffers and constants -----------===//
//
// PyTorch exports parameters as initializers, but other exporters (PaddlePaddle,
// Silero, tf2onnx) put weights in Constant nodes, and constant folding turns buffers
// into initializers too. So the kind of a stored tensor is read from its use, following
// view-like ops: a weight slot makes it a parameter; BatchNorm running statistics,
// masks and tables read through Slice make it a buffer; shapes and scalars are literals.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StoredTensorClassifier.h"

#include <set>

namespace trainmem {

bool isViewLikeOp(const std::string &OpType) {
  static const std::set<std::string> Ops = {"Transpose", "Reshape", "Unsqueeze", "Squeeze",
                                            "Identity",  "Cast",    "Flatten",   "CastLike"};
  return Ops.count(OpType) != 0;
}

bool isWeightSlot(const std::string &OpType, const std::string &Domain, size_t Slot) {
  if (Domain == "com.microsoft") {
    if (OpType == "Attention")
      return Slot == 1 || Slot == 2;
    if (OpType == "EmbedLayerNormalization")
      return Slot >= 2 && Slot <= 6;
    if (OpType == "SkipLayerNormalization" || OpType == "SkipSimplifiedLayerNormalization")
      return Slot >= 2 && Slot <= 4;
    if (OpType == "BiasGelu" || OpType == "FastGelu" || OpType == "BiasAdd" ||
        OpType == "BiasDropout")
      return Slot == 1;
    if (OpType == "FusedMatMul" || OpType == "Gemm" || OpType == "MatMul")
      return true;
    if (OpType == "LayerNormalization" || OpType == "SimplifiedLayerNormalization" ||
        OpType == "FusedConv")
      return Slot == 1 || Slot == 2;
  }
  if (OpType == "MatMul" || OpType == "Gemm" || OpType == "MatMulInteger")
    return true;
  if (OpType == "Conv" || OpType == "ConvTranspose")
    return Slot == 1 || Slot == 2;
  if (OpType == "BatchNormalization" || OpType == "InstanceNormalization" ||
      OpType == "LayerNormalization" || OpType == "GroupNormalization" ||
      OpType == "SimplifiedLayerNormalization" || OpType == "RMSNormalization")
    return Slot == 1 || Slot == 2;
  if (OpType == "Gather")
    return Slot == 0;
  if (OpType == "PRelu")
    return Slot == 1;
  if (OpType == "LSTM" || OpType == "GRU" || OpType == "RNN")
    return Slot >= 1 && Slot <= 3;
  return false;
}

namespace {

bool isElementwiseArithmetic(const std::string &OpType) {
  static const std::set<std::string> Ops = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min",
                                            "Where", "Sum", "Mean"};
  return Ops.count(OpType) != 0;
}

bool isTableReadOp(const std::string &OpType) {
  return OpType == "Slice" || OpType == "Expand" || OpType == "Tile" ||
         OpType == "GatherElements" || OpType == "GatherND";
}

/// How a stored tensor is used, merged over every path through view-like ops.
struct Uses {
  bool WeightSlot = false;
  bool RunningStat = false; ///< BatchNormalization mean / var
  bool TableRead = false;
  bool Elementwise = false;
  bool GatherIndices = false;
  bool Any = false;
};

Uses collectUses(const Graph &G, TensorId Start) {
  Uses U;
  std::vector<TensorId> Work{Start};
  std::set<TensorId> Seen{Start};
  while (!Work.empty()) {
    TensorId T = Work.back();
    Work.pop_back();
    for (NodeId C : G.Tensors[T].Consumers) {
      const Node &N = G.Nodes[C];
      for (size_t Slot = 0; Slot < N.Inputs.size(); ++Slot) {
        if (N.Inputs[Slot] != T)
          continue;
        U.Any = true;
        if (isViewLikeOp(N.OpType) && Slot == 0) {
          for (TensorId Out : N.Outputs)
            if (Out != NoTensor && Seen.insert(Out).second)
              Work.push_back(Out);
          continue;
        }
        if (N.OpType == "BatchNormalization" && (Slot == 3 || Slot == 4))
          U.RunningStat = true;
        else if (isWeightSlot(N.OpType, N.Domain, Slot))
          U.WeightSlot = true;
        else if (isTableReadOp(N.OpType) && Slot == 0)
          U.TableRead = true;
        else if (N.OpType == "Gather" && Slot == 1)
          U.GatherIndices = true;
        else if (isElementwiseArithmetic(N.OpType))
          U.Elementwise = true;
      }
    }
  }
  return U;
}

/// Dims larger than 1: a bias or norm scale has one, a lookup table two or more.
int nonUnitDims(const Tensor &T) {
  int N = 0;
  for (int64_t D : T.Shape)
    N += D > 1;
  return N;
}

bool isExporterLiteralName(const std::string &Name) {
  // torch.onnx names folded constants "onnx::Op_N" and scope constants
  // "/scope/Constant_N_output_0": neither is a module parameter name.
  // A leading '/' is a scope path, never a module parameter name.
  return Name.rfind("onnx::", 0) == 0 || (!Name.empty() && Name.front() == '/') ||
         Name.find("Constant") != std::string::npos;
}

/// The rotary embedding's inverse frequencies: a buffer in every PyTorch model that has
/// one (transformers' `rotary_emb.inv_freq`, `original_inv_freq`, Gemma 3's
/// `full_attention_inv_freq`, GPT-NeoX's, and the other ports'), and exporters keep the
/// module path as the initializer's name. By use alone it is a parameter: it reaches a
/// MatMul with the positions, and was counted among the trainable parameters (32 extra for
/// a LLaMA-3.2-1B export, and its optimizer states).
/// DeepSeek-V3's router keeps `e_score_correction_bias` as a buffer too (balanced outside
/// the gradient); added to the scores, by use it is a bias. GPT-J's rotary keeps its
/// sinusoid table as `rotary_emb.embed_positions` (gathered at the positions, by use an
/// embedding; OPT's learned `embed_positions.weight` is a parameter).
bool isKnownBufferName(const std::string &Name) {
  llvm::StringRef Full(Name);
  llvm::StringRef Leaf = Full.substr(Full.find_last_of("./") + 1); // npos + 1 == 0: the whole name
  return Leaf.ends_with("inv_freq") || Leaf == "e_score_correction_bias" ||
         Full.ends_with("rotary_emb.embed_positions");
}

/// gpt-oss's attention sinks, a parameter of a logit per head that the attention expands over
/// the batch and joins to the scores: by use (an Expand reads it) it is a table.
bool isKnownParameterName(const std::string &Name) {
  llvm::StringRef Leaf(Name);
  Leaf = Leaf.substr(Leaf.find_last_of("./") + 1);
  return Leaf == "sinks";
}

TensorKind classify(const Graph &G, TensorId Id) {
  const Tensor &T = G.Tensors[Id];
  int64_t N = T.numElements();
  if (N <= 1)
    return TensorKind::Constant;
  if (isFloating(T.Type) && isKnownBufferName(T.Name))
    return TensorKind::Buffer;
  if (isFloating(T.Type) && isKnownParameterName(T.Name))
    return TensorKind::Parameter;
  // A ConstantOfShape folded into a stored tensor is a weight only where the file names it
  // as one: one named by its node's scope path (trainmem's export of OPT's
  // torch.ones(batch, seq), whose cumulative sum numbers the positions) is the forward's
  // own, never trained (by use, elementwise at batch 1, it was read back as a parameter).
  if (T.Payload.From == PayloadRef::Source::Fill && !T.Name.empty() && T.Name.front() == '/')
    return TensorKind::Buffer;
  Uses U = collectUses(G, Id);
  if (T.Type == DType::Bool)
    return TensorKind::Buffer;
  if (!isFloating(T.Type)) {
    // Integer tables (position ids) are buffers; short integer lists are shapes/axes.
    if (N > 8 && (U.GatherIndices || U.Elementwise || U.TableRead))
      return TensorKind::Buffer;
    return TensorKind::Constant;
  }
  if (U.RunningStat && !U.WeightSlot)
    return TensorKind::Buffer;
  if (U.WeightSlot)
    return TensorKind::Parameter;
  if (U.TableRead)
    return TensorKind::Buffer;
  if (U.Elementwise) {
    // Biases and norm scales are parameters; a multi-dim table an exporter emitted
    // (rotary cos/sin, an additive mask) is a buffer.
    if (nonUnitDims(T) >= 2 && isExporterLiteralName(T.Name))
      return TensorKind::Buffer;
    return TensorKind::Parameter;
  }
  if (!U.Any)
    return TensorKind::Constant; // unused: never allocated by PyTorch either
  return isExporterLiteralName(T.Name) ? TensorKind::Buffer : TensorKind::Parameter;
}

} // namespace

void classifyStoredTensors(Graph &G) {
  for (TensorId Id = 0; Id < static_cast<TensorId>(G.Tensors.size()); ++Id) {
    Tensor &T = G.Tensors[Id];
    if (!T.Stored || T.Kind == TensorKind::Parameter)
      continue; // parameters declared by an importer (HF config, inputs) stay parameters
    if (T.Kind == TensorKind::Buffer)
      continue;
    T.Kind = classify(G, Id);
  }
}

void recogniseParameterInputs(Graph &G) {
  std::vector<TensorId> Remaining;
  int Converted = 0;
  for (TensorId Id : G.Inputs) {
    Tensor &T = G.Tensors[Id];
    bool OnlyWeights = isFloating(T.Type) && !T.Consumers.empty();
    for (NodeId C : T.Consumers) {
      const Node &N = G.Nodes[C];
      for (size_t Slot = 0; Slot < N.Inputs.size(); ++Slot)
        if (N.Inputs[Slot] == Id) {
          // MatMul's first operand is the batch in every exporter; only the second (or a
          // Gemm's B and C) is a weight when it arrives as an input.
          bool Weight = isWeightSlot(N.OpType, N.Domain, Slot) &&
                        !((N.OpType == "MatMul" || N.OpType == "Gemm" ||
                           N.OpType == "FusedMatMul") && Slot == 0);
          OnlyWeights &= Weight;
        }
    }
    if (OnlyWeights && T.ShapeKnown) {
      T.Stored = true;
      T.Kind = TensorKind::Parameter;
      ++Converted;
    } else {
      Remaining.push_back(Id);
    }
  }
  if (Converted) {
    G.Inputs = std::move(Remaining);
    G.Diags.note("parameters-as-inputs", "",
                 std::to_string(Converted) +
                     " graph inputs are consumed only as weights (a training graph passes "
                     "parameters as inputs); counted as parameters, not batch inputs");
  }
}

void assignLayerPaths(Graph &G) {
  for (Node &N : G.Nodes) {
    N.LayerPath = layerPathFromName(N.Name, false);
    if (!N.LayerPath.empty())
      continue;
    for (TensorId In : N.Inputs)
      if (In != NoTensor && G.Tensors[In].Stored) {
        std::string P = layerPathFromName(G.Tensors[In].Name, true);
        if (!P.empty()) {
          N.LayerPath = P;
          break;
        }
      }
  }
}

} // namespace trainmem
