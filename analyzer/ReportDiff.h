//===- ReportDiff.h - what changed between two memory reports ---------*- C++ -*-===//
//
// `trainmem diff BASE.json NEW.json`: two trainmem.report/1 files compared figure by
// figure (peak, peak_reserved, each category), layer by layer (weights, gradients,
// optimizer states and saved activations together) and tensor by tensor among the
// tensors live at each peak. The GUI and the CLI read the same ReportDiff.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_REPORTDIFF_H
#define TRAINMEM_ANALYZER_REPORTDIFF_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// The figures of one report that a diff compares.
struct ReportFigures {
  std::string File;
  std::string Model;
  /// bytes.* in the report's order of importance: peak, peak_reserved, then categories.
  std::vector<std::pair<std::string, int64_t>> Bytes;
  /// Per layer path: weights + gradients + optimizer states + saved activations.
  std::map<std::string, int64_t> Layers;
  /// Tensors live at the peak (the report's top tensors), by name.
  std::map<std::string, int64_t> PeakTensors;
  /// "phase at op", where the peak happens.
  std::string PeakAt;
};

/// Reads a trainmem.report/1 JSON text; errors name the file and the field.
llvm::Expected<ReportFigures> readReportFigures(llvm::StringRef Json, llvm::StringRef File);

struct FigureDelta {
  std::string Name;
  std::optional<int64_t> Base, New; ///< absent where the report lacks it
  int64_t change() const { return New.value_or(0) - Base.value_or(0); }
  /// Change relative to the base, in percent; none when the base is absent or zero.
  std::optional<double> percent() const;
};

struct ReportDiff {
  std::string BaseFile, NewFile, BaseModel, NewModel, BasePeakAt, NewPeakAt;
  std::vector<FigureDelta> Figures;
  /// The layers and peak tensors that changed most, largest |change| first, ties by name.
  std::vector<FigureDelta> Layers, Tensors;
};

ReportDiff diffReports(const ReportFigures &Base, const ReportFigures &New, size_t Top = 10);

/// `--max-increase`: a percentage of the base peak ("5%") or a size ("512MiB").
struct IncreaseLimit {
  std::optional<double> Percent;
  std::optional<int64_t> Bytes;
};
llvm::Expected<IncreaseLimit> parseIncreaseLimit(llvm::StringRef Text);

/// The regression message when the peak grew past the limit, or nothing.
std::optional<std::string> checkIncrease(const ReportDiff &D, const IncreaseLimit &Limit);

llvm::json::Value diffToJson(const ReportDiff &D, const std::optional<std::string> &Regression);

} // namespace trainmem

#endif
