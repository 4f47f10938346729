//===- ReportWriters.h - one report rendered several ways -------------*- C++ -*-===//
//
// Writers turn a MemoryReport into text for a terminal, JSON (`trainmem.report/1`), and
// the documents `trainmem report` writes for CI: Markdown for a pull-request comment,
// JUnit XML (one testcase per gate) and a self-contained HTML page with the timeline as
// inline SVG. They format; they never compute a figure the report does not already hold.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_REPORTWRITERS_H
#define TRAINMEM_ANALYZER_REPORTWRITERS_H

#include "analyzer/MemoryReport.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// The report as the `trainmem.report/1` JSON value.
llvm::json::Value reportToJson(const MemoryReport &R);
void writeReportJson(const MemoryReport &R, llvm::raw_ostream &OS);
/// A readable summary in binary units with a breakdown table.
void writeReportText(const MemoryReport &R, llvm::raw_ostream &OS);
/// Text for XML and HTML: & < > " ' escaped.
std::string escapeXml(llvm::StringRef Text);

/// The text and JSON parts of a report read from a trace (MemoryReport::Measured);
/// writeReportText and reportToJson call them.
void writeMeasuredText(const MemoryReport &R, llvm::raw_ostream &OS);
llvm::json::Value measuredToJson(const MeasuredSummary &M);

/// A CI gate on a report: its name, whether it passed, and the sentence that says why.
struct GateResult {
  std::string Name;
  bool Passed = true;
  std::string Message;
};

/// `--budget`: the step's peak (or, with OnReserved, peak_reserved where the report has
/// it) against Budget bytes. BudgetText says where the budget came from ("6 GiB",
/// "NVIDIA A100 80GB less 10%"). A failure names the excess, where the peak is and the
/// categories and tensors that make it.
GateResult checkBudget(const MemoryReport &R, int64_t Budget, const std::string &BudgetText,
                       bool OnReserved);

void writeReportMarkdown(const MemoryReport &R, const std::vector<GateResult> &Gates,
                         llvm::raw_ostream &OS);
void writeReportJUnit(const MemoryReport &R, const std::vector<GateResult> &Gates,
                      llvm::raw_ostream &OS);
/// One HTML file, no network and no script: the summary, the timeline stacked by
/// category as inline SVG (phases shaded, the peak marked, the GPU's usable memory or the
/// budget as a line) and the breakdown.
void writeReportHtml(const MemoryReport &R, const std::vector<GateResult> &Gates,
                     std::optional<int64_t> BudgetLine, llvm::raw_ostream &OS);

} // namespace trainmem

#endif
