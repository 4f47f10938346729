//===- MeasuredCases.h - the measured training steps of tests/data ----*- C++ -*-===//
//
// tests/data/measured-hf and measured-cuda hold {"cases": [...]} files of steps this
// project measured; their tests read them the same way.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_MEASUREDCASES_H
#define TRAINMEM_TESTS_MEASUREDCASES_H

#include "analyzer/SafeJson.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include <string>
#include <vector>

namespace trainmem::testing {

/// Path's JSON document, which must hold a "cases" array (see casesOf).
inline llvm::Expected<llvm::json::Value> readMeasuredCases(const std::string &Path) {
  auto Buffer = llvm::MemoryBuffer::getFile(Path);
  if (!Buffer)
    return llvm::createStringError(Buffer.getError(), Path + ": " + Buffer.getError().message());
  auto Doc = parseJson((*Buffer)->getBuffer());
  if (!Doc)
    return Doc.takeError();
  const llvm::json::Object *O = Doc->getAsObject();
  if (!O || !O->getArray("cases"))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   Path + ": expected {\"cases\": [...]}");
  return Doc;
}

/// The "cases" array of a document readMeasuredCases returned.
inline const llvm::json::Array &casesOf(const llvm::json::Value &Doc) {
  return *Doc.getAsObject()->getArray("cases");
}

/// "a,b,c" as its items (a case's module lists).
inline std::vector<std::string> commaList(llvm::StringRef List) {
  llvm::SmallVector<llvm::StringRef, 8> Items;
  llvm::SplitString(List, Items, ",");
  return {Items.begin(), Items.end()};
}

} // namespace trainmem::testing

#endif
