//===- TraceTestFiles.h - trace files for the importers' tests --------*- C++ -*-===//
//
// The traces of tests/data/traces by name, and traces the tests write: plain, gzipped,
// and the report a trace gives as JSON (what two readings of one trace are compared by).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_TRACETESTFILES_H
#define TRAINMEM_TESTS_TRACETESTFILES_H

#include "analyzer/ReportWriters.h"
#include "analyzer/TraceImport.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace trainmem::testing {

inline std::string data(const std::string &Name) {
  return std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/traces/" + Name;
}

/// A temporary file holding Content, named with Suffix (which picks the reader).
inline std::string tempFile(const std::string &Suffix, const std::string &Content) {
  llvm::SmallString<128> Path;
  int Fd;
  EXPECT_FALSE(llvm::sys::fs::createTemporaryFile("trainmem-trace", Suffix, Fd, Path));
  llvm::raw_fd_ostream OS(Fd, /*shouldClose=*/true);
  OS << Content;
  return Path.str().str();
}

/// A gzip file of Text (one member).
inline std::string gzipFile(const std::string &Text) {
  llvm::SmallString<128> Path;
  EXPECT_FALSE(llvm::sys::fs::createTemporaryFile("trainmem-trace", "json.gz", Path));
  gzFile F = gzopen(Path.c_str(), "wb6");
  gzwrite(F, Text.data(), static_cast<unsigned>(Text.size()));
  gzclose(F);
  return Path.str().str();
}

/// The report of T as JSON.
inline std::string reportJson(const MeasuredTrace &T) {
  std::string Json;
  llvm::raw_string_ostream OS(Json);
  writeReportJson(traceToReport(T), OS);
  return Json;
}

} // namespace trainmem::testing

#endif
