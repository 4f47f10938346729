//===- TraceReport.cpp - how a report read from a trace is written ----------===//
//
// A measured report has no setup, no parameters and no layers; it says where its
// numbers come from instead: the format, the device, the peak's basis (the allocator's
// own counter or a running sum from the trace's start), every device's peak and the
// peaks of the profiler steps or annotated ranges.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ReportWriters.h"
#include "analyzer/SafeJson.h"
#include "analyzer/Units.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

namespace trainmem {

namespace {

const char *basisText(llvm::StringRef Basis) {
  if (Basis == "total_allocated")
    return "the allocator's Total Allocated counter";
  if (Basis == "running_sum")
    return "a running sum of allocation sizes from the trace's start (memory allocated "
           "before profiling began is not included)";
  if (Basis == "snapshot")
    return "the caching allocator's trace replayed from the snapshot's final state";
  if (Basis == "timeline")
    return "the memory timeline's categorised events";
  if (Basis == "cuda_driver")
    return "CUDA driver allocations (the caching allocator's segments)";
  return "the trace";
}

} // namespace

llvm::json::Value measuredToJson(const MeasuredSummary &M) {
  llvm::json::Array Devices;
  for (const MeasuredDeviceSummary &D : M.Devices) {
    llvm::json::Object O{{"device", D.Device},
                         {"events", D.Events},
                         {"peak", D.Peak},
                         {"peak_basis", D.PeakBasis}};
    O["peak_reserved"] = D.PeakReserved ? llvm::json::Value(*D.PeakReserved) : nullptr;
    Devices.push_back(std::move(O));
  }
  llvm::json::Array Ranges;
  for (const MeasuredRange &R : M.Ranges)
    Ranges.push_back(llvm::json::Object{
        {"name", jsonString(R.Name)}, {"start_us", R.StartUs}, {"end_us", R.EndUs}, {"peak", R.Peak}});
  llvm::json::Object Phases;
  for (const auto &[Name, Peak] : M.PhasePeaks)
    Phases[jsonString(Name)] = Peak;
  llvm::json::Object O{{"format", M.Format},
                       {"phase_peaks", std::move(Phases)},
                       {"device", M.Device},
                       {"peak_basis", M.PeakBasis},
                       {"peak_time_us", M.PeakTimeUs},
                       {"peak_range", jsonString(M.PeakRange)},
                       {"live_at_peak", M.LiveAtPeakCount},
                       {"has_categories", M.HasCategories},
                       {"devices", std::move(Devices)},
                       {"ranges", std::move(Ranges)}};
  O["fragmentation_at_peak"] =
      M.FragmentationAtPeak ? llvm::json::Value(*M.FragmentationAtPeak) : nullptr;
  return O;
}

void writeMeasuredText(const MemoryReport &R, llvm::raw_ostream &OS) {
  const MeasuredSummary &M = *R.Measured;
  OS << "trainmem trace: " << R.Model.Name << " (" << M.Format << ")\n";
  OS << "  source: " << R.Model.Source << "\n";
  if (M.Devices.empty()) {
    OS << "\nNo memory events: nothing to report.\n";
  } else {
    OS << "  devices:";
    for (const MeasuredDeviceSummary &D : M.Devices)
      OS << " " << D.Device << " (" << formatCount(D.Events)
         << (D.Events == 1 ? " event" : " events") << ", peak "
         << formatBytes(D.Peak) << ")";
    OS << "\n\n";
    OS << "Peak on " << M.Device << ": " << formatBytes(*R.Peak) << " (" << formatCount(*R.Peak)
       << " B)";
    if (!M.PeakRange.empty())
      OS << " in " << M.PeakRange;
    if (R.PeakInfo && !R.PeakInfo->Op.empty())
      OS << " at " << R.PeakInfo->Op;
    OS << "\n  measured from " << basisText(M.PeakBasis) << "\n";
    if (R.PeakReserved)
      OS << "  reserved at most " << formatBytes(*R.PeakReserved) << " ("
         << formatCount(*R.PeakReserved) << " B)\n";
    if (M.FragmentationAtPeak)
      OS << "  reserved but not allocated at the peak: " << formatBytes(*M.FragmentationAtPeak)
         << "\n";
    if (M.HasCategories && R.PeakInfo) {
      OS << "\n  live at the peak, by category:\n";
      auto Row = [&](const CategoryField &F) {
        if (int64_t B = R.PeakInfo->ByCategory.*F.Member)
          OS << llvm::format("  %-22s %12s %17s\n", F.Name, formatBytes(B).c_str(),
                             formatCount(B).c_str());
      };
      for (const CategoryField &F : CategoryFields)
        Row(F);
      for (const CategoryField &F : TraceCategoryFields)
        Row(F);
    }
    if (R.PeakInfo && !R.PeakInfo->TopTensors.empty()) {
      OS << "\n  largest allocations live at the peak";
      if (M.LiveAtPeakCount)
        OS << " (" << formatCount(M.LiveAtPeakCount) << " live)";
      OS << ":\n";
      for (const TensorSummary &T : R.PeakInfo->TopTensors)
        OS << llvm::format("  %-28s %12s  %s\n", T.Name.c_str(), formatBytes(T.Bytes).c_str(),
                           T.Op.empty() ? "" : T.Op.c_str());
    }
    if (!M.PhasePeaks.empty()) {
      OS << "\nPeak per phase:\n";
      for (const auto &[Name, Peak] : M.PhasePeaks)
        OS << llvm::format("  %-32s %12s %17s\n", Name.c_str(), formatBytes(Peak).c_str(),
                           formatCount(Peak).c_str());
    }
    if (!M.Ranges.empty()) {
      OS << "\nPeak per range:\n";
      for (const MeasuredRange &Rg : M.Ranges)
        OS << llvm::format("  %-32s %12s %17s\n", Rg.Name.c_str(), formatBytes(Rg.Peak).c_str(),
                           formatCount(Rg.Peak).c_str());
    }
  }
  if (R.Diags.size()) {
    OS << "\nDiagnostics:\n";
    for (const Diagnostic &D : R.Diags.all())
      OS << "  " << severityName(D.Level) << " [" << D.Code << "]"
         << (D.Where.empty() ? "" : " " + D.Where) << ": " << D.Message << "\n";
  }
}

} // namespace trainmem
