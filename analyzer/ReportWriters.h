//===- ReportWriters.h - one report rendered several ways -------------*- C++ -*-===//
//
// Writers turn a MemoryReport into text for a terminal or JSON (`trainmem.report/1`).
// They format; they never compute a figure the report does not already hold.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_REPORTWRITERS_H
#define TRAINMEM_ANALYZER_REPORTWRITERS_H

#include "analyzer/MemoryReport.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem {

/// The report as the `trainmem.report/1` JSON value.
llvm::json::Value reportToJson(const MemoryReport &R);
void writeReportJson(const MemoryReport &R, llvm::raw_ostream &OS);
/// A readable summary in binary units with a breakdown table.
void writeReportText(const MemoryReport &R, llvm::raw_ostream &OS);

} // namespace trainmem

#endif
