//===- StoredTensorClassifier.h - parameters, buffers and constants ---*- C++ -*-===//
//
// Decides what each stored tensor is in PyTorch terms from how the graph uses it:
// a learnable parameter (it reaches a weight slot of a weighted op), a buffer (running
// statistics, masks, lookup tables read through Slice), or an exporter literal (shapes,
// axes, scalars). Also recognises parameters passed as graph inputs and derives the
// layer path of every node. Importers run these once their graph is final.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_STOREDTENSORCLASSIFIER_H
#define TRAINMEM_ANALYZER_STOREDTENSORCLASSIFIER_H

#include "analyzer/Graph.h"

namespace trainmem {

/// True when input Slot of an op holds a learnable weight in every framework we know:
/// MatMul/Gemm operands, Conv weight and bias, normalisation scale and bias, the
/// embedding table of a Gather, recurrent weights, and the weights of com.microsoft
/// fused ops.
bool isWeightSlot(const std::string &OpType, const std::string &Domain, size_t Slot);

/// Ops that only re-view or re-type their first input; a weight passed through them
/// (torch.onnx's Transpose of a Linear weight) is still a weight.
bool isViewLikeOp(const std::string &OpType);

/// Graph inputs consumed only in weight slots (ONNX Runtime training graphs pass
/// parameters as inputs) become stored parameters.
void recogniseParameterInputs(Graph &G);

/// Fills Node::LayerPath from node names, else the parameters a node reads.
void assignLayerPaths(Graph &G);

} // namespace trainmem

#endif
