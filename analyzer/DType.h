//===- DType.h - element types and their sizes -------------------------*- C++ -*-===//
//
// Element types as trainmem counts them: ONNX's TensorProto types plus the 4-bit and
// 8-bit storage formats strategies introduce. Sizes are in bits so packed types are exact.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_DTYPE_H
#define TRAINMEM_ANALYZER_DTYPE_H

#include <cstdint>
#include <optional>
#include <string_view>

namespace trainmem {

enum class DType : uint8_t {
  Undefined,
  Float32,
  Float16,
  BFloat16,
  Float64,
  Float8E4M3,
  Float8E5M2,
  Int4,  ///< packed 4-bit (NF4 / int4 weights)
  Int8,
  UInt8,
  Int16,
  UInt16,
  Int32,
  UInt32,
  Int64,
  UInt64,
  Bool,
  String,
  Complex64,
  Complex128,
};

/// Bits per element; 0 for Undefined and String (no fixed size).
unsigned dtypeBits(DType Type);
/// Bytes for NumElements elements, rounding packed sub-byte types up to whole bytes.
int64_t dtypeBytes(DType Type, int64_t NumElements);
bool isFloating(DType Type);
/// PyTorch-style name ("float32", "bfloat16", "int64", ...).
std::string_view dtypeName(DType Type);
std::optional<DType> dtypeFromName(std::string_view Name);
/// From onnx::TensorProto::DataType's integer value.
DType dtypeFromOnnx(int32_t OnnxType);
/// To onnx::TensorProto::DataType's integer value (0 if ONNX has no such type).
int32_t dtypeToOnnx(DType Type);

} // namespace trainmem

#endif
