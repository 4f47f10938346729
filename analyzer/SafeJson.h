//===- SafeJson.h - llvm::json::parse with a nesting limit -------------*- C++ -*-===//
//
// llvm::json's parser (and its values' destructors) recurse once per nesting level, so
// a file of a million '[' would overflow the stack. Every JSON document trainmem reads
// (configs, setups, reports, catalogues, snapshots) goes through this check first; real
// ones nest fewer than ten levels. And jsonString, for the strings trainmem writes.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_SAFEJSON_H
#define TRAINMEM_ANALYZER_SAFEJSON_H

#include "llvm/Support/JSON.h"

namespace trainmem {

inline constexpr size_t MaxJsonDepth = 512;

/// The deepest nesting of arrays and objects in Text (strings skipped), without parsing.
size_t jsonNestingDepth(llvm::StringRef Text);

/// llvm::json::parse, refusing documents nested deeper than MaxJsonDepth with an error
/// that says so (the caller adds the file name, as for any parse error).
llvm::Expected<llvm::json::Value> parseJson(llvm::StringRef Text);

/// S as a JSON string value: model files name tensors and nodes with whatever bytes they
/// like, and llvm::json asserts on invalid UTF-8 (builds with assertions) or repairs it
/// (without). Repaired here the same way in every build (invalid bytes become U+FFFD).
inline std::string jsonString(llvm::StringRef S) {
  return llvm::json::isUTF8(S) ? S.str() : llvm::json::fixUTF8(S);
}

} // namespace trainmem

#endif
