//===- FuzzSupport.h - what every fuzz target shares ------------------*- C++ -*-===//
//
// The importers read paths (ONNX files are memory-mapped, traces streamed), so a target
// writes each input to one temporary file it reuses, under the name whose extension the
// importer expects. Errors are the expected outcome for most inputs; they are consumed.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_FUZZ_FUZZSUPPORT_H
#define TRAINMEM_TESTS_FUZZ_FUZZSUPPORT_H

#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <string>
#include <unistd.h>

namespace trainmem::fuzz {

/// A per-process file named ...<Suffix> holding the current input.
inline const std::string &inputFile(const uint8_t *Data, size_t Size, const char *Suffix) {
  static std::string Path = [&] {
    llvm::SmallString<128> P;
    llvm::sys::fs::createTemporaryFile("trainmem-fuzz-" + std::to_string(::getpid()), Suffix, P);
    return P.str().str();
  }();
  std::error_code EC;
  llvm::raw_fd_ostream OS(Path, EC);
  if (!EC)
    OS.write(reinterpret_cast<const char *>(Data), Size);
  return Path;
}

template <typename T> void consume(llvm::Expected<T> V) {
  if (!V)
    llvm::consumeError(V.takeError());
}
inline void consume(llvm::Error E) { llvm::consumeError(std::move(E)); }

} // namespace trainmem::fuzz

#endif
