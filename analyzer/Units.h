//===- Units.h - byte sizes for people --------------------------------*- C++ -*-===//
//
// trainmem keeps bytes as integers everywhere and formats them only at the edge, with
// binary units labelled as such (KiB, MiB, GiB). Parsing accepts both binary and
// decimal units, spelled out, because users copy both from vendor sheets.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_UNITS_H
#define TRAINMEM_ANALYZER_UNITS_H

#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>

namespace trainmem {

/// "1.50 GiB", "812.0 KiB", "96 B": three significant digits, binary units.
std::string formatBytes(int64_t Bytes);
/// "6,738,415,616": digit groups for exact counts.
std::string formatCount(int64_t Count);
/// "6.74 B", "124.4 M", "3.1 K" parameter counts.
std::string formatParamCount(int64_t Count);
/// Parses "80GiB", "24 GB", "512MiB", "1000000" (bytes). Decimal units are powers of
/// 1000, binary ones of 1024.
llvm::Expected<int64_t> parseBytes(llvm::StringRef Text);

} // namespace trainmem

#endif
