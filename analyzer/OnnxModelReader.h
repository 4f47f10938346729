//===- OnnxModelReader.h - read an ONNX file without its weights ------*- C++ -*-===//
//
// Reads an ONNX model into onnx::ModelProto while leaving tensor payloads in the file:
// large initializers and Constant tensors keep their dims and dtype and get a PayloadRef
// (file, offset, length) instead of data. Memory and time grow with the graph, not the
// weights, and files over 2 GiB work (protobuf's own parser refuses messages that large,
// and onnx::LoadProtoFromPath then returns an empty model without an error).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXMODELREADER_H
#define TRAINMEM_ANALYZER_ONNXMODELREADER_H

#include "analyzer/Graph.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <google/protobuf/arena.h>
#include <onnx/onnx_pb.h>

#include <memory>
#include <string>
#include <unordered_map>

namespace trainmem {

struct OnnxFile {
  std::string Path;
  uint64_t FileSize = 0;
  /// The model with large payloads stripped (dims, dtype, names, small values kept),
  /// on an arena: a 7B export is ~20 k small messages, which the heap made and freed one
  /// by one (plain protobuf parses of its 482 KB: 1.27 ms and 0.31 ms to free on the
  /// heap, 0.69 and 0.07-0.13 ms on an arena). The importer's edits stay on the arena.
  std::unique_ptr<google::protobuf::Arena> Arena = std::make_unique<google::protobuf::Arena>();
  onnx::ModelProto &Model = *google::protobuf::Arena::CreateMessage<onnx::ModelProto>(Arena.get());
  /// Where each stored tensor's payload lives, by tensor name (initializers) or by the
  /// output name of the Constant node holding it.
  std::unordered_map<std::string, PayloadRef> Payloads;
  /// Names of initializers whose payload was stripped (the IR must not trust their data).
  std::unordered_map<std::string, bool> Stripped;
  /// External-data locations refused because they lead out of the model's folder
  /// ("tensor: location"); such payloads are never opened.
  std::vector<std::string> RefusedLocations;
};

/// Tensors with at most this many elements keep their data in the proto.
inline constexpr int64_t InlineElementLimit = 4096;

llvm::Expected<OnnxFile> readOnnxModel(const std::string &Path);

/// Compares two stored tensors' payloads bit for bit, B read as A transposed when
/// Transposed (both 2-D). Memory-maps only the two payload ranges and walks them in
/// tiles, so memory stays bounded by the page cache. An error when a payload is not in
/// the file (ConstantOfShape fills, missing external data).
llvm::Expected<bool> payloadsEqual(const Tensor &A, const Tensor &B, bool Transposed);

} // namespace trainmem

#endif
