//===- FuzzHfConfig.cpp - the Hugging Face config reader -------------------===//
#include "FuzzSupport.h"
#include "analyzer/ModelImporter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *Data, size_t Size) {
  trainmem::ImportOptions Options;
  Options.Dims = {{"batch", 1}, {"seq", 16}};
  // Half the inputs as padded batches (the masks built for every family), chosen by the
  // input itself so a finding replays.
  Options.PaddedBatches = Size % 2 == 1;
  trainmem::fuzz::consume(
      trainmem::importHfConfig(trainmem::fuzz::inputFile(Data, Size, "json"), Options));
  return 0;
}
