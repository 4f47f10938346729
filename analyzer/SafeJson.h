//===- SafeJson.h - llvm::json::parse with a nesting limit -------------*- C++ -*-===//
//
// llvm::json's parser (and its values' destructors) recurse once per nesting level, so
// a file of a million '[' would overflow the stack. Every JSON document trainmem reads
// (configs, setups, reports, catalogues, snapshots) goes through this check first; real
// ones nest fewer than ten levels.
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

} // namespace trainmem

#endif
