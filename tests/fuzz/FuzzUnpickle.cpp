//===- FuzzUnpickle.cpp - the data-only unpickler ---------------------------===//
#include "analyzer/Pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *Data, size_t Size) {
  auto V = trainmem::pickle::unpickle(
      llvm::StringRef(reinterpret_cast<const char *>(Data), Size), "fuzz");
  if (!V)
    llvm::consumeError(V.takeError());
  return 0;
}
