//===- DType.cpp - element types and their sizes ---------------------------------===//
//
// Sizes and names of element types; the ONNX mapping follows onnx.proto's
// TensorProto.DataType numbering.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/DType.h"

#include <limits>

namespace trainmem {

unsigned dtypeBits(DType Type) {
  switch (Type) {
  case DType::Undefined:
  case DType::String:
    return 0;
  case DType::Int4:
    return 4;
  case DType::Bool:
  case DType::Int8:
  case DType::UInt8:
  case DType::Float8E4M3:
  case DType::Float8E5M2:
    return 8;
  case DType::Float16:
  case DType::BFloat16:
  case DType::Int16:
  case DType::UInt16:
    return 16;
  case DType::Float32:
  case DType::Int32:
  case DType::UInt32:
    return 32;
  case DType::Float64:
  case DType::Int64:
  case DType::UInt64:
  case DType::Complex64:
    return 64;
  case DType::Complex128:
    return 128;
  }
  return 0;
}

int64_t dtypeBytes(DType Type, int64_t NumElements) {
  // Saturating, like Tensor::numElements: absurd shapes are rejected by the importers'
  // limits, never wrapped into plausible byte counts on the way there.
  int64_t Bits;
  if (__builtin_mul_overflow(NumElements, static_cast<int64_t>(dtypeBits(Type)), &Bits) ||
      Bits > std::numeric_limits<int64_t>::max() - 7)
    return std::numeric_limits<int64_t>::max() / 8;
  return (Bits + 7) / 8;
}

bool isFloating(DType Type) {
  switch (Type) {
  case DType::Float32:
  case DType::Float16:
  case DType::BFloat16:
  case DType::Float64:
  case DType::Float8E4M3:
  case DType::Float8E5M2:
    return true;
  default:
    return false;
  }
}

namespace {
struct NameEntry {
  DType Type;
  std::string_view Name;
};
constexpr NameEntry Names[] = {
    {DType::Undefined, "undefined"}, {DType::Float32, "float32"},
    {DType::Float16, "float16"},     {DType::BFloat16, "bfloat16"},
    {DType::Float64, "float64"},     {DType::Float8E4M3, "float8_e4m3"},
    {DType::Float8E5M2, "float8_e5m2"}, {DType::Int4, "int4"},
    {DType::Int8, "int8"},           {DType::UInt8, "uint8"},
    {DType::Int16, "int16"},         {DType::UInt16, "uint16"},
    {DType::Int32, "int32"},         {DType::UInt32, "uint32"},
    {DType::Int64, "int64"},         {DType::UInt64, "uint64"},
    {DType::Bool, "bool"},           {DType::String, "string"},
    {DType::Complex64, "complex64"}, {DType::Complex128, "complex128"},
};
} // namespace

std::string_view dtypeName(DType Type) {
  for (const NameEntry &E : Names)
    if (E.Type == Type)
      return E.Name;
  return "undefined";
}

std::optional<DType> dtypeFromName(std::string_view Name) {
  for (const NameEntry &E : Names)
    if (E.Name == Name)
      return E.Type;
  if (Name == "float" || Name == "fp32")
    return DType::Float32;
  if (Name == "half" || Name == "fp16")
    return DType::Float16;
  if (Name == "bf16")
    return DType::BFloat16;
  return std::nullopt;
}

DType dtypeFromOnnx(int32_t OnnxType) {
  switch (OnnxType) {
  case 1: return DType::Float32;
  case 2: return DType::UInt8;
  case 3: return DType::Int8;
  case 4: return DType::UInt16;
  case 5: return DType::Int16;
  case 6: return DType::Int32;
  case 7: return DType::Int64;
  case 8: return DType::String;
  case 9: return DType::Bool;
  case 10: return DType::Float16;
  case 11: return DType::Float64;
  case 12: return DType::UInt32;
  case 13: return DType::UInt64;
  case 14: return DType::Complex64;
  case 15: return DType::Complex128;
  case 16: return DType::BFloat16;
  case 17: return DType::Float8E4M3; // FLOAT8E4M3FN (onnx >= 1.14)
  case 19: return DType::Float8E5M2;
  case 22: return DType::Int4;
  default: return DType::Undefined;
  }
}

int32_t dtypeToOnnx(DType Type) {
  if (Type == DType::Undefined)
    return 0;
  for (int32_t I = 1; I <= 22; ++I)
    if (dtypeFromOnnx(I) == Type)
      return I;
  return 0;
}

} // namespace trainmem
