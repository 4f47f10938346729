//===- OnnxShapeInference.h - shapes of every tensor, node by node ----*- C++ -*-===//
//
// Drives ONNX's per-op type and shape inference functions node by node over the IR,
// feeding them the values of small integer tensors that trainmem computes itself
// (Shape -> Gather -> Concat -> Reshape chains). Doing the walk here, instead of calling
// onnx::shape_inference::InferShapes on the whole model, keeps one failing node from
// stopping the rest, and avoids ONNX 1.12's data propagation, which crashes on some
// real models (Silero VAD v5).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXSHAPEINFERENCE_H
#define TRAINMEM_ANALYZER_ONNXSHAPEINFERENCE_H

#include "analyzer/Graph.h"

#include "llvm/Support/Error.h"

#include <onnx/onnx_pb.h>

#include <map>
#include <string>
#include <vector>

namespace trainmem {

/// Infers dtype and shape of every tensor produced by a node, in topological order.
/// Protos[N] is the NodeProto of IR node N (its attributes, including subgraphs);
/// Opsets maps each domain to its imported version ("" for the default domain).
/// Schemas come from onnxSchema (OnnxSchemas.h); a model with operators outside its table
/// should have started the full registration (startSchemaRegistration) beforehand.
/// Errors: a node with fewer or more inputs or outputs than its operator's schema allows
/// (no runtime can run it, and the memory rules read operands by position).
llvm::Error inferShapes(Graph &G, const std::vector<const onnx::NodeProto *> &Protos,
                        const std::map<std::string, int> &Opsets);

/// Computes the values of a node's small outputs from its inputs' values (shape
/// arithmetic). Returns true when it filled at least one output.
bool propagateValues(Graph &G, NodeId N);

} // namespace trainmem

#endif
