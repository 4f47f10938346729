//===- OnnxShapeFallback.h - shapes ONNX's inference did not give -----*- C++ -*-===//
//
// After onnx::shape_inference, tensors produced by ops it has no schema for (the
// com.microsoft contrib ops of ONNX Runtime exports) or could not resolve still lack a
// shape. This pass walks the graph in order and applies the ops' documented shape
// contracts (elementwise, broadcasting, MatMul, Attention, EmbedLayerNormalization,
// SkipLayerNormalization, ...). What stays unknown is reported as a diagnostic.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXSHAPEFALLBACK_H
#define TRAINMEM_ANALYZER_ONNXSHAPEFALLBACK_H

#include "analyzer/Graph.h"

namespace trainmem {

void completeShapes(Graph &G);

} // namespace trainmem

#endif
