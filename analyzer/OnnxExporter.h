//===- OnnxExporter.h - the graph IR written back as a weightless ONNX file -*- C++ -*-===//
//
// `trainmem export-onnx` writes what trainmem understood of a model (an ONNX file after
// dims were bound, or the graph built from a Hugging Face config) as an ONNX file that
// Netron, onnxruntime and ONNX's checker open: every node, concrete shapes, and every
// weight as an initializer with its dims and an external-data reference into a sparse
// file of zeros, so a 70B-parameter model exports in milliseconds and takes no disk.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXEXPORTER_H
#define TRAINMEM_ANALYZER_ONNXEXPORTER_H

#include "analyzer/Graph.h"

#include "llvm/Support/Error.h"

#include <string>

namespace trainmem {

/// Alignment of each external payload's offset, the same granularity ONNX's and
/// onnxruntime's external-data writers use so the data file could be memory-mapped.
inline constexpr int64_t OnnxExternalDataAlignment = 4096;

/// The external-data file beside \p OutPath that exportWeightlessOnnx() references:
/// `<OutPath>.data` (e.g. `out/model.onnx` -> `out/model.onnx.data`).
std::string weightlessOnnxDataPath(const std::string &OutPath);

/// Writes \p G to \p OutPath as an ONNX model (IR version 8) without weight payloads.
///
/// - `G.Inputs` become graph inputs, `G.Outputs` and tensors marked `IsGraphOutput`
///   graph outputs; every other tensor with a known dtype gets a `value_info` (with its
///   shape when `ShapeKnown`), so viewers show shapes on every edge.
/// - A stored tensor whose values the IR holds (`IntValues`/`FloatValues`, or a small
///   `Fill` payload) is written inline in its own dtype; any other stored tensor is
///   written with dims, dtype and an EXTERNAL reference (`location`, 4096-aligned
///   `offset`, `length`) into weightlessOnnxDataPath(OutPath), which is created as a
///   sparse file of zeros of the total length. No data file is written when nothing is
///   external.
/// - A node whose outputs are all stored tensors (a `Constant`, whose `value` attribute
///   the IR does not keep) is replaced by initializers for those outputs.
/// - A stored tensor that no initializer can describe (unknown shape, undefined or
///   string dtype without values) and a tensor that nodes read but nothing defines are
///   declared as graph inputs instead, so every node input stays defined.
///
/// A tensor whose shape the IR does not know gets the shape ONNX's own shape inference
/// derives, or else no `shape` field (ONNX's "unknown rank"), never a guessed one. A graph
/// input or output left without a shape fails ONNX's checker, which requires one, but
/// still opens in Netron and onnxruntime; a guessed rank would break shape inference.
///
/// Both files are written to temporary files in OutPath's folder and renamed into
/// place, so an error never leaves a partial file. Errors name the path and the cause;
/// a graph without a complete topological order (see Graph::finalize) is refused.
/// What the file holds: its nodes (the no-op casts the IR keeps are left out) and the
/// tensors it names (initializers, graph inputs and outputs, value_info).
struct ExportSummary {
  int64_t Nodes = 0, Tensors = 0;
};
llvm::Error exportWeightlessOnnx(const Graph &G, const std::string &OutPath,
                                 ExportSummary *Summary = nullptr);

} // namespace trainmem

#endif
