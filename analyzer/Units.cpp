//===- Units.cpp - byte sizes for people -----------------------------------------===//
#include "analyzer/Units.h"

#include "llvm/ADT/StringExtras.h"

#include <cmath>
#include <cstdio>

namespace trainmem {

std::string formatBytes(int64_t Bytes) {
  static const char *Units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double V = static_cast<double>(Bytes < 0 ? -Bytes : Bytes);
  int U = 0;
  while (V >= 1024.0 && U < 4) {
    V /= 1024.0;
    ++U;
  }
  char Buf[48];
  const char *Sign = Bytes < 0 ? "-" : "";
  if (U == 0)
    std::snprintf(Buf, sizeof Buf, "%s%lld B", Sign, static_cast<long long>(V));
  else if (V >= 100)
    std::snprintf(Buf, sizeof Buf, "%s%.1f %s", Sign, V, Units[U]);
  else
    std::snprintf(Buf, sizeof Buf, "%s%.2f %s", Sign, V, Units[U]);
  return Buf;
}

std::string formatCount(int64_t Count) {
  std::string Digits = std::to_string(Count < 0 ? -Count : Count), Out;
  for (size_t I = 0; I < Digits.size(); ++I) {
    if (I && (Digits.size() - I) % 3 == 0)
      Out.push_back(',');
    Out.push_back(Digits[I]);
  }
  return (Count < 0 ? "-" : "") + Out;
}

std::string formatParamCount(int64_t Count) {
  char Buf[32];
  double V = static_cast<double>(Count);
  if (V >= 1e9)
    std::snprintf(Buf, sizeof Buf, "%.2f B", V / 1e9);
  else if (V >= 1e6)
    std::snprintf(Buf, sizeof Buf, "%.1f M", V / 1e6);
  else if (V >= 1e3)
    std::snprintf(Buf, sizeof Buf, "%.1f K", V / 1e3);
  else
    std::snprintf(Buf, sizeof Buf, "%lld", static_cast<long long>(Count));
  return Buf;
}

llvm::Expected<int64_t> parseBytes(llvm::StringRef Text) {
  llvm::StringRef S = Text.trim();
  size_t NumEnd = 0;
  while (NumEnd < S.size() && (llvm::isDigit(S[NumEnd]) || S[NumEnd] == '.'))
    ++NumEnd;
  llvm::StringRef Num = S.substr(0, NumEnd), Unit = S.substr(NumEnd).trim();
  double V;
  if (Num.empty() || Num.getAsDouble(V))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "'%s' is not a size; expected a number with an optional "
                                   "unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
                                   Text.str().c_str());
  struct UnitScale {
    const char *Name;
    double Scale;
  };
  static const UnitScale Units[] = {
      {"", 1},           {"B", 1},           {"KiB", 1024.0},   {"MiB", 1048576.0},
      {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6},
      {"GB", 1e9},       {"TB", 1e12}};
  for (const UnitScale &U : Units)
    if (Unit.equals_insensitive(U.Name) && (Unit == U.Name || Unit.size() <= 1 ||
                                            Unit.equals_insensitive(U.Name))) {
      // Past 2^63 bytes llround has no answer (and no memory is that large).
      if (!(V * U.Scale < 9.2e18))
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "'%s' is too large a size", Text.str().c_str());
      return static_cast<int64_t>(std::llround(V * U.Scale));
    }
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "'%s': unknown unit '%s'; expected B, KiB, MiB, GiB, TiB, "
                                 "KB, MB, GB or TB",
                                 Text.str().c_str(), Unit.str().c_str());
}

} // namespace trainmem
