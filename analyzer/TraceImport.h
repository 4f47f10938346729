//===- TraceImport.h - measured memory from traces of real runs -----*- C++ -*-===//
//
// What people already record of a training run, read through one interface
// (DESIGN.md "Traces of real runs"): PyTorch profiler Chrome traces with `[memory]`
// events, torch.profiler's memory-timeline export, CUDA caching-allocator snapshots
// (pickle or JSON) and Nsight Systems SQLite exports. Each importer yields a
// MeasuredTrace: per device the allocated (and where known reserved) timeline, its peak,
// the allocations live at the peak with the operator that made them, and per-range peaks;
// traceToReport turns it into the MemoryReport every writer renders.
//
// Importers stream their input: a trace is read in memory proportional to what is live
// (plus the memory-event records a time sort needs, a few bytes each), never to the file.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_TRACEIMPORT_H
#define TRAINMEM_ANALYZER_TRACEIMPORT_H

#include "analyzer/Diagnostics.h"
#include "analyzer/MemoryReport.h"
#include "analyzer/TraceRecords.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <functional>
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

enum class TraceFormat { ChromeTrace, MemoryTimeline, CudaSnapshotPickle, CudaSnapshotJson, NsysSqlite };

/// "chrome-trace", "memory-timeline", "cuda-snapshot-pickle", "cuda-snapshot-json",
/// "nsys-sqlite".
const char *traceFormatName(TraceFormat F);

struct TraceOptions {
  /// "cpu", "cuda:N", or empty: the first CUDA device, else the CPU.
  std::string Device;
  /// A regular expression over range names (Chrome-trace "X" events, user annotations)
  /// whose peaks are reported besides the `ProfilerStep#N` ranges; empty for none.
  std::string RangePattern;
  /// A regular expression over range names: when set, the report covers only the events
  /// inside the matching ranges (e.g. one profiler step, or skipping warm-up steps).
  /// Chrome traces only.
  std::string WindowPattern;
  /// The timeline keeps at most this many samples (each the maximum of the events it
  /// stands for, so the peak is never decimated away).
  size_t MaxTimelinePoints = 2048;
  /// How many allocations live at the peak are kept (largest first).
  size_t TopAllocations = 10;
  /// Bytes read (and inflated) at a time; tests make it tiny to cross every boundary.
  /// 512 KB: with one thread inflating and parsing ahead, the last chunk (parsed by the
  /// importer alone) costs less than with 1 MB chunks, and more chunks split the parsing
  /// more evenly (fixture traces +3-4%; 256 KB slower again).
  size_t ChunkBytes = 1 << 19;
  /// Chrome traces: operators kept from the first pass to attribute the allocations at
  /// the peak; a trace with more is attributed by a second pass over the file instead,
  /// which doubles the import's time. 8 Mi, encoded at about 6-8 bytes each: the 48 MB
  /// that 2 Mi took as 24-byte structs, in the temporary file past RecordMemory.
  size_t MaxKeptOperators = size_t(1) << 23;
  /// Chrome traces: a device's memory events, and the operators, kept as structs (48 and
  /// 24 bytes each) until there are this many; past that, all are kept encoded (5-12 and
  /// about 6 bytes each), which costs a few nanoseconds a record to write and read back.
  /// Tests set 0 to encode every record.
  size_t PlainRecords = trace::DefaultPlainLimit;
  /// Chrome traces: the encoded bytes of each stream of records (a device's memory events,
  /// the operators) kept in memory; past that, the earlier ones go to an unnamed temporary
  /// file in TMPDIR and are read back from it, so a trace ten times as long takes no more
  /// memory. 0: all in memory. Tests make it tiny to cross every boundary.
  size_t RecordMemory = trace::DefaultMemoryLimit;
  /// Chrome traces: called as the file is read, on the importing thread, with the pass
  /// (1, or 2 when a second pass attributes the peak's allocations), the bytes of the file
  /// read so far and its size (compressed bytes for gzip); last with Done == Total.
  std::function<void(int Pass, uint64_t Done, uint64_t Total)> Progress;
  /// Chrome traces, with more than one core: a second thread parses chunks ahead of the
  /// importer (same results and errors; off only to compare).
  bool ParseAhead = true;
};

/// One allocation live at a device's peak.
struct MeasuredAllocation {
  int64_t Bytes = 0;
  uint64_t Addr = 0;
  double TimeUs = 0; ///< when it was allocated (trace clock)
  /// The innermost operator enclosing the allocation on its thread, or the top Python
  /// frame (snapshots); empty when the trace does not say.
  std::string Op;
  /// A trainmem category name where the trace knows it (memory timeline), else "".
  std::string Category;
};

/// The device's memory after one event (or the maximum over a run of events when the
/// timeline was decimated).
struct MeasuredSample {
  double TimeUs = 0;
  int64_t Allocated = 0;
  std::optional<int64_t> Reserved;
  /// Live bytes by trainmem category (memory timeline only).
  std::optional<CategoryBytes> ByCategory;
  /// forward, backward, optimizer, zero_grad or "" (Chrome traces: from the ranges and
  /// operator names around the event).
  std::string Phase;
};

struct DeviceMemory {
  std::string Device; ///< "cpu" or "cuda:N"
  int64_t Events = 0; ///< memory events read for this device
  int64_t Peak = 0;
  double PeakTimeUs = 0;
  /// "total_allocated" (the allocator's own counter), "running_sum" (sum of Bytes from
  /// the trace's start: relative to whatever was allocated before profiling began),
  /// "snapshot" (replayed from the allocator's segments and trace), "timeline".
  std::string PeakBasis;
  std::string PeakOp;    ///< innermost operator at the peak, if known
  std::string PeakRange; ///< innermost named range at the peak (e.g. ProfilerStep#3)
  std::optional<int64_t> PeakReserved;
  /// Reserved minus allocated at the allocated peak, where reserved is known.
  std::optional<int64_t> FragmentationAtPeak;
  std::optional<CategoryBytes> PeakByCategory;
  std::vector<MeasuredAllocation> LiveAtPeak; ///< largest first, TopAllocations of them
  int64_t LiveAtPeakCount = 0;                ///< all allocations live at the peak
  std::vector<MeasuredRange> Ranges;
  /// The peak of each phase the trace shows (forward, backward, optimizer, zero_grad).
  std::vector<std::pair<std::string, int64_t>> PhasePeaks;
  std::vector<MeasuredSample> Timeline;
};

struct MeasuredTrace {
  TraceFormat Format = TraceFormat::ChromeTrace;
  std::string Path;
  std::vector<DeviceMemory> Devices;
  /// Index into Devices of the one the report is about (TraceOptions::Device).
  size_t Selected = 0;
  Diagnostics Diags;
  const DeviceMemory &selected() const { return Devices[Selected]; }
};

/// Guesses the format from the first bytes of the (decompressed) file: a pickle opcode,
/// the SQLite header, a JSON object with traceEvents / segments, a JSON list of rows.
llvm::Expected<TraceFormat> detectTraceFormat(llvm::StringRef Path);

/// True when Path names something importTrace reads rather than a model: a .json,
/// .json.gz, .pickle, .pkl, .sqlite or .raw.json file that is not a Hugging Face config.
bool looksLikeTrace(llvm::StringRef Path);

/// Reads any supported trace. Errors name the file and what was expected; a trace with
/// no memory events is an error that says how to record them.
llvm::Expected<MeasuredTrace> importTrace(llvm::StringRef Path, const TraceOptions &Opts = {});

// The per-format importers (importTrace dispatches to them).
llvm::Expected<MeasuredTrace> importChromeTrace(llvm::StringRef Path, const TraceOptions &Opts);
llvm::Expected<MeasuredTrace> importMemoryTimeline(llvm::StringRef Path,
                                                   const TraceOptions &Opts);
llvm::Expected<MeasuredTrace> importCudaSnapshot(llvm::StringRef Path, TraceFormat Format,
                                                 const TraceOptions &Opts);
llvm::Expected<MeasuredTrace> importNsysSqlite(llvm::StringRef Path, const TraceOptions &Opts);

/// Chooses MeasuredTrace::Selected from TraceOptions::Device; an error lists the devices
/// the trace has.
llvm::Error selectTraceDevice(MeasuredTrace &T, const TraceOptions &Opts);

/// The report of a measured run: bytes.peak and peak_reserved from the selected device,
/// peak.by_category where the trace has categories (else everything under "unknown"),
/// the live allocations at the peak as top tensors, and the timeline.
MemoryReport traceToReport(const MeasuredTrace &T);

/// Acc += V unless that overflows int64 (hostile byte counts); false then.
inline bool addBytesChecked(int64_t &Acc, int64_t V) {
  return !__builtin_add_overflow(Acc, V, &Acc);
}

/// Keeps at most Max samples by merging neighbours pairwise, each merged sample taking the
/// larger allocated (and reserved) figure, so the peak survives. Any sample type with
/// Allocated and Reserved members: the Chrome-trace importer decimates compact samples as
/// it reads and builds MeasuredSamples only of those it keeps.
///
/// In place: the vector keeps its capacity, so one that grows again after (the importer's)
/// is not reallocated and copied each time (a new vector per halving had made its growth
/// and copies a fifth of the work after reading a long trace).
template <typename Sample> void decimateSamples(std::vector<Sample> &Timeline, size_t Max) {
  if (Max < 2)
    Max = 2;
  while (Timeline.size() > Max) {
    const size_t N = Timeline.size();
    size_t Out = 0;
    for (size_t I = 0; I + 1 < N; I += 2) {
      // Out <= I: the pair is read before its slot (or an earlier one) is written.
      const Sample &A = Timeline[I];
      const Sample &B = Timeline[I + 1];
      Sample M = A.Allocated >= B.Allocated ? A : B; // the time of the larger
      if (A.Reserved || B.Reserved)
        M.Reserved = std::max(A.Reserved.value_or(0), B.Reserved.value_or(0));
      Timeline[Out++] = std::move(M);
    }
    if (N % 2)
      Timeline[Out++] = std::move(Timeline[N - 1]); // the last sample stays the last state
    Timeline.resize(Out);
  }
}
inline void decimateTimeline(std::vector<MeasuredSample> &Timeline, size_t Max) {
  decimateSamples(Timeline, Max);
}

} // namespace trainmem

#endif
