//===- FuzzOnnx.cpp - the ONNX importer on arbitrary bytes ----------------===//
#include "FuzzSupport.h"
#include "analyzer/ModelImporter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *Data, size_t Size) {
  trainmem::ImportOptions Options;
  Options.DefaultDim = 2;
  trainmem::fuzz::consume(
      trainmem::importOnnx(trainmem::fuzz::inputFile(Data, Size, "onnx"), Options));
  return 0;
}
