//===- ModelImporter.cpp - format detection and dispatch ------------------------===//
//
// The one detection point for model sources. ONNX files are protobuf (the first byte
// of a ModelProto is field 1 ir_version, a varint: 0x08); an HF config is a JSON object
// with "model_type" or "architectures".
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

namespace trainmem {

ModelFormat detectModelFormat(const std::string &Path) {
  llvm::StringRef Ext = llvm::sys::path::extension(Path);
  if (Ext.equals_insensitive(".onnx"))
    return ModelFormat::Onnx;
  auto Head = llvm::MemoryBuffer::getFileSlice(Path, 4096, 0, /*IsVolatile=*/false);
  if (!Head)
    return ModelFormat::Unknown;
  llvm::StringRef Text = (*Head)->getBuffer().ltrim();
  if (Text.startswith("{") &&
      (Text.contains("\"model_type\"") || Text.contains("\"architectures\"")))
    return ModelFormat::HfConfig;
  if (!(*Head)->getBuffer().empty() && static_cast<uint8_t>((*Head)->getBuffer()[0]) == 0x08)
    return ModelFormat::Onnx;
  return ModelFormat::Unknown;
}

llvm::Expected<Graph> importModel(const std::string &Path, const ImportOptions &Options) {
  if (!llvm::sys::fs::exists(Path))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: no such file", Path.c_str());
  switch (detectModelFormat(Path)) {
  case ModelFormat::Onnx:
    return importOnnx(Path, Options);
  case ModelFormat::HfConfig:
    return importHfConfig(Path, Options);
  case ModelFormat::Unknown:
    break;
  }
  return llvm::createStringError(
      llvm::inconvertibleErrorCode(),
      "%s: not a model trainmem reads; expected an ONNX file (.onnx) or a Hugging Face "
      "config.json (use --hf-config=FILE)",
      Path.c_str());
}

std::optional<int64_t> lookupDim(const ImportOptions &Options, const std::string &Name) {
  std::optional<int64_t> Value;
  if (Name == "batch" && Options.MicroBatch)
    return Options.MicroBatch;
  for (const DimBinding &B : Options.Dims)
    if (B.Name == Name)
      Value = B.Value;
  return Value;
}

} // namespace trainmem
