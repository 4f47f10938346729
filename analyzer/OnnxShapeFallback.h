//===- OnnxShapeFallback.h - shapes ONNX's inference did not give -----*- C++ -*-===//
//
// After onnx::shape_inference, tensors produced by ops it has no schema for (the
// com.microsoft contrib ops of ONNX Runtime exports) or could not resolve still lack a
// shape. Per node, in graph order, this applies the ops' documented shape
// contracts (elementwise, broadcasting, MatMul, Attention, EmbedLayerNormalization,
// SkipLayerNormalization, ...). What stays unknown is reported as a diagnostic.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXSHAPEFALLBACK_H
#define TRAINMEM_ANALYZER_ONNXSHAPEFALLBACK_H

#include "analyzer/Graph.h"

namespace trainmem {

/// Gives node N's outputs their shapes from the op's documented contract where they
/// are still unknown. Run per node, in order, after ONNX's own inference for the node.
void applyShapeContract(Graph &G, NodeId N);

/// One diagnostic naming the nodes where shape knowledge stops, if any tensor is unknown.
void reportUnknownShapes(Graph &G);

} // namespace trainmem

#endif
