//===- TraceImport.cpp - format detection, device choice, trace reports ---===//
#include "analyzer/TraceImport.h"
#include "analyzer/TraceStream.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace trainmem {

namespace {

llvm::Error traceError(llvm::StringRef Path, const llvm::Twine &Message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 (Path + ": " + Message).str());
}

} // namespace

const char *traceFormatName(TraceFormat F) {
  switch (F) {
  case TraceFormat::ChromeTrace:
    return "chrome-trace";
  case TraceFormat::MemoryTimeline:
    return "memory-timeline";
  case TraceFormat::CudaSnapshotPickle:
    return "cuda-snapshot-pickle";
  case TraceFormat::CudaSnapshotJson:
    return "cuda-snapshot-json";
  case TraceFormat::NsysSqlite:
    return "nsys-sqlite";
  }
  return "unknown";
}

bool looksLikeTrace(llvm::StringRef Path) {
  llvm::StringRef Name = llvm::sys::path::filename(Path);
  if (Name == "config.json")
    return false;
  return Name.ends_with(".json") || Name.ends_with(".json.gz") || Name.ends_with(".gz") ||
         Name.ends_with(".pickle") || Name.ends_with(".pkl") || Name.ends_with(".sqlite") ||
         Name.ends_with(".sqlite3");
}

llvm::Expected<TraceFormat> detectTraceFormat(llvm::StringRef Path) {
  auto Head = ByteReader::peek(Path, 4096);
  if (!Head)
    return Head.takeError();
  llvm::StringRef H(*Head);
  if (H.starts_with(llvm::StringRef("SQLite format 3\0", 16)))
    return TraceFormat::NsysSqlite;
  // Pickle protocol 2+ starts with PROTO (0x80); protocol 0/1 dicts with '(' or '}'.
  if (!H.empty() && (static_cast<unsigned char>(H[0]) == 0x80 || H[0] == '}' ||
                     (H[0] == '(' && H.size() > 1 && H[1] == 'd')))
    return TraceFormat::CudaSnapshotPickle;
  llvm::StringRef T = H.ltrim();
  if (T.starts_with("[")) {
    // A list of rows [time, action, bytes, category] or a list of Chrome events.
    if (T.drop_front().ltrim().starts_with("["))
      return TraceFormat::MemoryTimeline;
    return TraceFormat::ChromeTrace;
  }
  if (T.starts_with("{")) {
    // Snapshots are dicts with "segments" and "device_traces"; Chrome traces have
    // "traceEvents" (possibly after other keys, so look for the snapshot keys first).
    if (T.contains("\"segments\"") || T.contains("\"device_traces\""))
      return TraceFormat::CudaSnapshotJson;
    return TraceFormat::ChromeTrace;
  }
  return traceError(Path, "not a trace trainmem reads: expected a Chrome trace (JSON), a "
                          "memory-timeline .raw.json, a CUDA memory snapshot (pickle or "
                          "JSON) or an Nsight Systems SQLite export");
}

llvm::Expected<MeasuredTrace> importTrace(llvm::StringRef Path, const TraceOptions &Opts) {
  auto Format = detectTraceFormat(Path);
  if (!Format)
    return Format.takeError();
  if (!Opts.WindowPattern.empty() && *Format != TraceFormat::ChromeTrace)
    return traceError(Path, llvm::Twine("--trace-window: a ") + traceFormatName(*Format) +
                                " has no named ranges (only Chrome traces do)");
  switch (*Format) {
  case TraceFormat::ChromeTrace:
    return importChromeTrace(Path, Opts);
  case TraceFormat::MemoryTimeline:
    return importMemoryTimeline(Path, Opts);
  case TraceFormat::CudaSnapshotPickle:
  case TraceFormat::CudaSnapshotJson:
    return importCudaSnapshot(Path, *Format, Opts);
  case TraceFormat::NsysSqlite:
    return importNsysSqlite(Path, Opts);
  }
  return traceError(Path, "unknown trace format");
}

llvm::Error selectTraceDevice(MeasuredTrace &T, const TraceOptions &Opts) {
  T.Selected = 0;
  if (T.Devices.empty())
    return llvm::Error::success();
  if (Opts.Device.empty()) {
    for (size_t I = 0; I < T.Devices.size(); ++I)
      if (llvm::StringRef(T.Devices[I].Device).starts_with("cuda:")) {
        T.Selected = I;
        return llvm::Error::success();
      }
    for (size_t I = 0; I < T.Devices.size(); ++I)
      if (T.Devices[I].Device == "cpu") {
        T.Selected = I;
        return llvm::Error::success();
      }
    return llvm::Error::success();
  }
  std::string Want = Opts.Device == "cuda" ? "cuda:0" : Opts.Device;
  std::string Have;
  for (size_t I = 0; I < T.Devices.size(); ++I) {
    if (T.Devices[I].Device == Want) {
      T.Selected = I;
      return llvm::Error::success();
    }
    Have += (I ? ", " : "") + T.Devices[I].Device;
  }
  return traceError(T.Path, "--trace-device=" + Opts.Device +
                                ": the trace has no memory events for that device (it has " +
                                Have + ")");
}

// torch.profiler's memory timeline (torch/profiler/_memory_profiler.py,
// MemoryProfileTimeline.export_memory_timeline_raw): a time-sorted JSON list of
// [time_ns, action, bytes, category] with action 1 preexisting, 2 create, 3
// increment_version, 4 destroy (its bytes already negative; increment_version rows come
// in -n/+n pairs), and category the index into _CATEGORY_TO_COLORS: parameter,
// optimizer_state, input, temporary, activation, gradient, autograd_detail, None.
llvm::Expected<MeasuredTrace> importMemoryTimeline(llvm::StringRef Path,
                                                   const TraceOptions &Opts) {
  static constexpr int64_t CategoryBytes::*ByIndex[] = {
      &CategoryBytes::Weights,     &CategoryBytes::OptimizerStates,
      &CategoryBytes::Inputs,      &CategoryBytes::Temporaries,
      &CategoryBytes::Activations, &CategoryBytes::Gradients,
      &CategoryBytes::AutogradDetail, &CategoryBytes::Unknown};
  static constexpr const char *Names[] = {"weights",     "optimizer_states", "inputs",
                                          "temporaries", "activations",      "gradients",
                                          "autograd_detail", "unknown"};
  auto Reader = ByteReader::open(Path, Opts.ChunkBytes);
  if (!Reader)
    return Reader.takeError();
  JsonCursor C(std::move(*Reader), Path.str());
  DeviceMemory D;
  D.Device = Opts.Device.empty() ? "cuda:0" : Opts.Device;
  D.PeakBasis = "timeline";
  CategoryBytes Live, AtPeak;
  int64_t Total = 0;
  std::vector<MeasuredSample> Samples;
  auto readRow = [&]() -> llvm::Error {
    uint64_t RowAt = C.offset();
    int64_t Row[4] = {0, 0, 0, 0};
    int N = 0;
    if (llvm::Error E = C.readArray([&]() -> llvm::Error {
          uint64_t At = C.offset();
          auto V = C.readNumber();
          if (!V)
            return V.takeError();
          // Integers as torch writes them; a time may come as a float. Anything else
          // (1e44, 0.5 bytes) is refused rather than converted out of range.
          std::optional<int64_t> I = V->Integer;
          if (!I && N == 0 && std::fabs(V->Value) < 9.0e18)
            I = static_cast<int64_t>(V->Value);
          if (!I)
            return traceError(Path, llvm::formatv("byte {0}: expected an integer, found {1}",
                                                  At, V->Value));
          if (N < 4)
            Row[N] = *I;
          ++N;
          return llvm::Error::success();
        }))
      return E;
    if (N != 4)
      return traceError(Path, llvm::formatv("byte {0}: a memory-timeline row has {1} values; "
                                            "expected [time_ns, action, bytes, category]",
                                            RowAt, N));
    auto [TimeNs, Action, Bytes, Cat] = std::tuple(Row[0], Row[1], Row[2], Row[3]);
    if (Action < 1 || Action > 4)
      return traceError(Path, llvm::formatv("byte {0}: action {1}; expected 1 preexisting, 2 "
                                            "create, 3 increment_version or 4 destroy",
                                            RowAt, Action));
    if (Cat < 0 || Cat > 7)
      return traceError(Path, llvm::formatv("byte {0}: category {1}; expected 0-7", RowAt, Cat));
    if (!addBytesChecked(Live.*ByIndex[Cat], Bytes) || !addBytesChecked(Total, Bytes))
      return traceError(Path, llvm::formatv("byte {0}: the live bytes overflow 64 bits", RowAt));
    ++D.Events;
    MeasuredSample S;
    S.TimeUs = static_cast<double>(TimeNs) / 1000.0;
    S.Allocated = Total;
    S.ByCategory = Live;
    if (Total > D.Peak || D.Events == 1) {
      D.Peak = Total;
      D.PeakTimeUs = S.TimeUs;
      AtPeak = Live;
    }
    Samples.push_back(S);
    return llvm::Error::success();
  };
  if (llvm::Error E = C.readArray(readRow))
    return E;
  MeasuredTrace T;
  T.Format = TraceFormat::MemoryTimeline;
  T.Path = Path.str();
  if (Samples.empty()) {
    T.Diags.warning("no-memory-events", Path.str(),
                    "the memory timeline has no rows; export it from a profile recorded with "
                    "profile_memory=True, record_shapes=True, with_stack=True");
    return T;
  }
  D.PeakByCategory = AtPeak;
  for (size_t I = 0; I < 8; ++I)
    if (AtPeak.*ByIndex[I] > 0)
      D.LiveAtPeak.push_back({AtPeak.*ByIndex[I], 0, D.PeakTimeUs, "", Names[I]});
  std::sort(D.LiveAtPeak.begin(), D.LiveAtPeak.end(),
            [](const MeasuredAllocation &A, const MeasuredAllocation &B) {
              return A.Bytes > B.Bytes;
            });
  D.Timeline = std::move(Samples);
  decimateTimeline(D.Timeline, Opts.MaxTimelinePoints);
  T.Devices.push_back(std::move(D));
  T.Diags.note("timeline-device", T.Devices[0].Device,
               "a memory-timeline export holds one device and does not name it; it is "
               "reported as " + T.Devices[0].Device + " (--trace-device names it)");
  return T;
}

MemoryReport traceToReport(const MeasuredTrace &T) {
  MemoryReport R;
  R.Model.Name = llvm::sys::path::filename(T.Path).str();
  R.Model.Source = T.Path;
  R.Model.Format = traceFormatName(T.Format);
  R.Diags = T.Diags;
  MeasuredSummary M;
  M.Format = traceFormatName(T.Format);
  for (const DeviceMemory &D : T.Devices)
    M.Devices.push_back({D.Device, D.Events, D.Peak, D.PeakReserved, D.PeakBasis});
  if (T.Devices.empty()) {
    R.Measured = std::move(M);
    return R;
  }
  const DeviceMemory &D = T.selected();
  M.Device = D.Device;
  M.PeakBasis = D.PeakBasis;
  M.PeakTimeUs = D.PeakTimeUs;
  M.PeakRange = D.PeakRange;
  M.FragmentationAtPeak = D.FragmentationAtPeak;
  M.LiveAtPeakCount = D.LiveAtPeakCount;
  M.HasCategories = D.PeakByCategory.has_value();
  M.Ranges = D.Ranges;
  M.PhasePeaks = D.PhasePeaks;
  R.Peak = D.Peak;
  R.PeakReserved = D.PeakReserved;
  PeakDetail P;
  P.Phase = D.PeakRange;
  P.Op = D.PeakOp;
  if (D.PeakByCategory)
    P.ByCategory = *D.PeakByCategory;
  else
    P.ByCategory.Unknown = D.Peak;
  for (const MeasuredAllocation &A : D.LiveAtPeak) {
    TensorSummary S;
    S.Name = A.Addr ? llvm::formatv("allocation at {0:x}", A.Addr).str()
                    : (A.Category.empty() ? std::string("allocation") : A.Category);
    S.Category = A.Category.empty() ? "unknown" : A.Category;
    S.Op = A.Op;
    S.Type = DType::Undefined;
    S.Bytes = A.Bytes;
    P.TopTensors.push_back(std::move(S));
  }
  R.PeakInfo = std::move(P);
  // bytes.X: each category's largest live bytes over the trace.
  for (size_t I = 0; I < D.Timeline.size(); ++I) {
    const MeasuredSample &S = D.Timeline[I];
    TimelinePoint Pt;
    Pt.Index = static_cast<int64_t>(I);
    Pt.TimeUs = S.TimeUs;
    Pt.Reserved = S.Reserved;
    Pt.Phase = S.Phase;
    if (S.ByCategory)
      Pt.Live = *S.ByCategory;
    else
      Pt.Live.Unknown = S.Allocated;
    for (const CategoryField &F : CategoryFields)
      R.Bytes.*F.Member = std::max(R.Bytes.*F.Member, Pt.Live.*F.Member);
    for (const CategoryField &F : TraceCategoryFields)
      R.Bytes.*F.Member = std::max(R.Bytes.*F.Member, Pt.Live.*F.Member);
    R.Timeline.push_back(std::move(Pt));
  }
  // The decimated timeline keeps the peak's value; make sure bytes reflect the exact peak.
  if (!D.PeakByCategory)
    R.Bytes.Unknown = std::max(R.Bytes.Unknown, D.Peak);
  R.Measured = std::move(M);
  return R;
}

} // namespace trainmem
