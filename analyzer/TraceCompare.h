//===- TraceCompare.h - a prediction lined up with a measured run ----*- C++ -*-===//
//
// `trainmem compare`: the error of the peak, of every category both reports know and of
// every phase both show (forward, backward, optimizer), and the two timelines aligned by
// phase. Both sides are MemoryReports: one predicted (or read back from its JSON), one
// read from a trace (traceToReport).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_TRACECOMPARE_H
#define TRAINMEM_ANALYZER_TRACECOMPARE_H

#include "analyzer/MemoryReport.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>
#include <string>
#include <vector>

namespace trainmem {

struct CompareRow {
  std::string Name;
  int64_t Predicted = 0;
  int64_t Measured = 0;
  /// (predicted - measured) / measured in percent; none when nothing was measured.
  std::optional<double> errorPercent() const;
};

/// One side's timeline on the common axis: x in [0, phases) where phase k of the
/// aligned phases spans [k, k+1).
struct AlignedLine {
  std::vector<std::pair<double, int64_t>> Points;
};

struct Comparison {
  std::string PredictionSource, TraceSource, TraceFormat, Device, PeakBasis;
  CompareRow Peak;
  std::optional<CompareRow> PeakReserved;
  std::vector<CompareRow> Categories; ///< bytes.X both reports know
  std::vector<CompareRow> Phases;     ///< the peak of each phase both show
  std::vector<std::string> AlignedPhases;
  AlignedLine PredictedLine, MeasuredLine;
  std::vector<std::string> Notes;
};

/// Lines Predicted up with Measured (a report with MemoryReport::Measured set).
Comparison compareReports(const MemoryReport &Predicted, const MemoryReport &Measured);

/// Reads the figures compare needs back from a trainmem.report/1 JSON document: peak,
/// peak_reserved, bytes.*, peak.by_category and the timeline. Errors name the field.
llvm::Expected<MemoryReport> readReportJson(llvm::StringRef Json, llvm::StringRef File);

/// The largest error among the peak and the phases, in percent (absolute).
double worstError(const Comparison &C);

llvm::json::Value comparisonToJson(const Comparison &C);
void writeComparisonText(const Comparison &C, llvm::raw_ostream &OS);
void writeComparisonMarkdown(const Comparison &C, llvm::raw_ostream &OS);
/// A self-contained page: the figures and both timelines drawn on the phase-aligned axis.
void writeComparisonHtml(const Comparison &C, llvm::raw_ostream &OS);

} // namespace trainmem

#endif
