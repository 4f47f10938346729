//===- SafeJson.cpp - llvm::json::parse with a nesting limit ---------------===//
#include "analyzer/SafeJson.h"

#include <algorithm>

namespace trainmem {

size_t jsonNestingDepth(llvm::StringRef Text) {
  size_t Depth = 0, Max = 0;
  bool InString = false;
  for (size_t I = 0; I < Text.size(); ++I) {
    char C = Text[I];
    if (InString) {
      if (C == '\\')
        ++I;
      else if (C == '"')
        InString = false;
    } else if (C == '"') {
      InString = true;
    } else if (C == '[' || C == '{') {
      Max = std::max(Max, ++Depth);
    } else if ((C == ']' || C == '}') && Depth > 0) {
      --Depth;
    }
  }
  return Max;
}

llvm::Expected<llvm::json::Value> parseJson(llvm::StringRef Text) {
  if (size_t Depth = jsonNestingDepth(Text); Depth > MaxJsonDepth)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "JSON nested %zu levels deep; at most %zu are read", Depth,
                                   MaxJsonDepth);
  return llvm::json::parse(Text);
}

} // namespace trainmem
