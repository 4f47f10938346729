//===- ChromeTraceImport.cpp - PyTorch profiler Chrome traces with memory -===//
//
// torch.profiler (kineto) writes `[memory]` instant events when profile_memory=True:
// args `Bytes` (negative for a free), and in newer traces `Addr`, `Total Allocated`,
// `Total Reserved`, `Device Type` (0 CPU, 1 CUDA) and `Device Id`. Older kineto traces
// (categories Operator / Runtime / Kernel) carry Bytes and the device only, so the peak
// is a running sum from the trace's start; newer ones (cpu_op / cuda_runtime) give the
// allocator's own counter. Operators are the "X" events of category cpu_op or Operator.
//
// One streamed pass reads the memory events (kept as records, encoded past 64 Ki of them
// (TraceRecords.h), and time-sorted per device afterwards: kineto does not write them in
// time order), the phases' and named ranges and the operators; the allocations live at
// each device's peak are then attributed to the innermost operator enclosing them on their
// thread. Past 8 Mi operators a second streamed pass does the attribution instead of
// keeping them. The file is never held in memory, and past 4 MiB of encoded records per
// stream neither are the records (they go to a temporary file): the import's memory is
// the live blocks, the timeline and fixed buffers, however long the trace.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ChromeTraceEvents.h"
#include "analyzer/TraceImport.h"
#include "analyzer/TraceRecords.h"

#include "llvm/ADT/CachedHashString.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Allocator.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/StringSaver.h"
#include "llvm/Support/Threading.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <thread>

namespace trainmem {

namespace {

using chrome::Event;

using trace::Absent;
using trace::MemoryRecord;
using trace::MemoryRecordStream;

/// A device's records, and what the pass after reading needs to know of all of them,
/// noted as each is added (three passes over a long trace's records otherwise, a tenth of
/// the work after reading).
struct DeviceRecords {
  DeviceRecords(size_t PlainLimit, size_t MemoryLimit) : Records(PlainLimit, MemoryLimit) {}
  MemoryRecordStream Records;
  bool AllTotals = true;    ///< every record has Total Allocated
  bool AnyReserved = false; ///< some record has a positive Total Reserved
  bool HaveAddrs = true;    ///< every record has Addr

  void add(const MemoryRecord &R, bool HasAddr) {
    Records.append(R);
    AllTotals &= R.TotalAllocated != Absent;
    AnyReserved |= R.TotalReserved != Absent && R.TotalReserved > 0;
    HaveAddrs &= HasAddr;
  }
};

/// DenseMap's key traits for addresses: DenseMapInfo<uint64_t> hashes by multiplying by 37,
/// which keeps the low bits of aligned addresses zero, so they would share a few buckets.
struct AddressInfo : llvm::DenseMapInfo<uint64_t> {
  static unsigned getHashValue(uint64_t Addr) {
    return static_cast<unsigned>((Addr * 0x9E3779B97F4A7C15ull) >> 32); // Fibonacci hashing
  }
};

/// An allocation live at the peak: what the report lists of it, and its place in time
/// order (the records are read in order only, so what is listed is kept as they pass).
struct LiveRecord {
  size_t Index;
  double Ts;
  int64_t Bytes;
  uint64_t Addr;
  uint32_t Tid;
};

/// The allocations live at PeakIndex (made at or before it and not freed since), largest
/// first, earlier first on ties. Why says why, where the records could not be read back.
std::vector<LiveRecord> liveAtPeak(const MemoryRecordStream &Records, size_t PeakIndex,
                                   std::string &Why) {
  // llvm::DenseMap where std::unordered_map was a third of the work after the pass, with
  // its keys mixed (AddressInfo). Its two reserved keys (~0 and ~0 - 1) are no heap
  // address, but a trace could still write them: those live in a side table. The
  // address is the key: the values leave it out.
  struct Block {
    size_t Index;
    double Ts;
    int64_t Bytes;
    uint32_t Tid;
  };
  llvm::DenseMap<uint64_t, Block, AddressInfo> Live(1024);
  std::map<uint64_t, Block> LiveAtReservedKeys;
  MemoryRecordStream::Reader From(Records);
  MemoryRecord R;
  for (size_t I = 0; I <= PeakIndex && From.next(R); ++I) {
    const bool Reserved = R.Addr >= ~uint64_t(0) - 1;
    if (R.Bytes > 0)
      (Reserved ? LiveAtReservedKeys[R.Addr] : Live[R.Addr]) = {I, R.Ts, R.Bytes, R.Tid};
    else if (Reserved)
      LiveAtReservedKeys.erase(R.Addr);
    else
      Live.erase(R.Addr);
  }
  if (!From.failed().empty()) {
    Why = From.failed();
    return {};
  }
  std::vector<LiveRecord> Order; // sorted below: the maps' order does not matter
  Order.reserve(Live.size() + LiveAtReservedKeys.size());
  for (auto &[Addr, B] : Live)
    Order.push_back({B.Index, B.Ts, B.Bytes, Addr, B.Tid});
  for (auto &[Addr, B] : LiveAtReservedKeys)
    Order.push_back({B.Index, B.Ts, B.Bytes, Addr, B.Tid});
  std::sort(Order.begin(), Order.end(), [](const LiveRecord &A, const LiveRecord &B) {
    return A.Bytes != B.Bytes ? A.Bytes > B.Bytes : A.Index < B.Index;
  });
  return Order;
}

std::string deviceName(std::optional<int64_t> Type, std::optional<int64_t> Id) {
  int64_t T = Type.value_or(0);
  if (T == 0)
    return "cpu";
  int64_t I = std::max<int64_t>(Id.value_or(0), 0);
  if (T == 1)
    return "cuda:" + std::to_string(I);
  return "device" + std::to_string(T) + ":" + std::to_string(I);
}

using chrome::Backward;
using chrome::Forward;
using chrome::NumPhases;
using chrome::Optimizer;
using chrome::PhaseNames;
using chrome::ZeroGrad;

using Intervals = llvm::SmallVector<std::pair<double, double>, 0>;

/// Adds [Start, End], dropping the last intervals where it holds them and merged into the
/// last where it starts inside it: the union made of them all stays the same, and nested
/// ranges take no room (autograd's operators nest inside one another, and kineto writes
/// an enclosing range after those inside it as often as before them).
void addInterval(Intervals &I, double Start, double End) {
  while (!I.empty() && Start <= I.back().first && I.back().second <= End)
    I.pop_back();
  if (!I.empty() && I.back().first <= Start && Start <= I.back().second) {
    I.back().second = std::max(I.back().second, End);
    return;
  }
  I.push_back({Start, End});
}

/// A phase's intervals (or --trace-window's), whose union says where the phase is: a long
/// trace has a backward range per backward operator, a million in the 1.17 GB synthetic
/// trace, so past the last ones (kept in memory, where a new range may merge into or
/// replace them) they go to an interval stream, encoded and past its memory limit in a
/// temporary file.
class IntervalList {
public:
  IntervalList(size_t PlainLimit, size_t MemoryLimit) : Older(PlainLimit, MemoryLimit) {}
  void add(double Start, double End) {
    addInterval(Recent, Start, End);
    if (Recent.size() >= 2 * RecentKept) [[unlikely]]
      keepOlder();
  }
  /// Done adding: every interval in the stream, sorted by start (operators come in time
  /// order, mostly). False, with the reason in Why, where the stream's file fails.
  bool finish(std::string &Why) {
    for (const auto &[Start, End] : Recent)
      Older.append({Start, End});
    Recent.clear();
    return Older.sortByTime(Why);
  }
  bool empty() const { return Older.size() == 0 && Recent.empty(); }
  const trace::IntervalStream &sorted() const { return Older; }

private:
  /// The first RecentKept of the last ones on to the stream.
  [[gnu::noinline]] void keepOlder() {
    for (size_t K = 0; K < RecentKept; ++K)
      Older.append({Recent[K].first, Recent[K].second});
    Recent.erase(Recent.begin(), Recent.begin() + RecentKept);
  }

  static constexpr size_t RecentKept = 1024;
  Intervals Recent;
  trace::IntervalStream Older;
};

/// The union of a finished IntervalList, read at times that never decrease (the memory
/// records, sorted by time): its intervals are merged as they are read (touching ones
/// become one), and the first one starting after the last time asked is kept instead of
/// searched for at every record (the searches took a tenth of an import).
class IntervalCursor {
public:
  explicit IntervalCursor(const IntervalList &L) : From(L.sorted()) {
    HavePending = From.next(Pending);
    HaveAfter = nextMerged(After);
  }
  /// Whether an interval holds T.
  bool contains(double T) {
    moveTo(T);
    return HaveBefore && Before.second >= T;
  }
  /// The start of the first interval that starts after T.
  std::optional<double> nextStart(double T) {
    moveTo(T);
    if (!HaveAfter)
      return std::nullopt;
    return After.first;
  }
  /// Why the intervals stopped short: empty unless their temporary file failed.
  const std::string &failed() const { return From.failed(); }

private:
  using Interval = std::pair<double, double>;
  /// Past the intervals starting at or before T: a check inline (most records stay inside
  /// or between the same two intervals), the move out of line.
  void moveTo(double T) {
    assert(!(T < Last) && "times must not decrease");
    Last = T;
    if (HaveAfter && !(T < After.first)) [[unlikely]]
      moveOn(T);
  }
  [[gnu::noinline]] void moveOn(double T) {
    while (HaveAfter && !(T < After.first)) {
      Before = After;
      HaveBefore = true;
      HaveAfter = nextMerged(After);
    }
  }
  /// The union's next interval into Out; false past the last.
  bool nextMerged(Interval &Out) {
    if (!HavePending)
      return false;
    Out = {Pending.Ts, Pending.End};
    while ((HavePending = From.next(Pending)) && Pending.Ts <= Out.second)
      Out.second = std::max(Out.second, Pending.End);
    return true;
  }

  trace::IntervalStream::Reader From;
  trace::IntervalRecord Pending;
  bool HavePending = false;
  Interval Before, After; ///< the last interval starting at or before Last, the first after
  bool HaveBefore = false, HaveAfter = false;
  double Last = -std::numeric_limits<double>::infinity();
};

/// The phase at time T: the annotated or operator-derived range around it; without
/// explicit forward ranges, what precedes a backward range is its forward. T must not
/// decrease from one call to the next.
class PhaseClock {
public:
  explicit PhaseClock(const std::vector<IntervalList> &P)
      : NoForwardRanges(P[Forward].empty()),
        Cursors{IntervalCursor(P[Forward]), IntervalCursor(P[Backward]),
                IntervalCursor(P[Optimizer]), IntervalCursor(P[ZeroGrad])} {}
  const char *at(double T) {
    for (int K : {Backward, Optimizer, ZeroGrad, Forward})
      if (Cursors[K].contains(T))
        return PhaseNames[K];
    if (!NoForwardRanges)
      return "";
    std::optional<double> B = Cursors[Backward].nextStart(T);
    std::optional<double> O = Cursors[Optimizer].nextStart(T);
    std::optional<double> Z = Cursors[ZeroGrad].nextStart(T);
    if (B && (!O || *B < *O) && (!Z || *B < *Z))
      return PhaseNames[Forward];
    return "";
  }
  /// Why the phases stopped short: empty unless their temporary file failed.
  std::string failed() const {
    for (const IntervalCursor &C : Cursors)
      if (!C.failed().empty())
        return C.failed();
    return "";
  }

private:
  bool NoForwardRanges;
  IntervalCursor Cursors[NumPhases]; ///< indexed by PhaseKind
};

/// The record at the peak as the per-device pass below finds it (the first of the largest
/// allocated figures inside the window; 0 when none is), found ahead of that pass so that
/// liveAtPeak can run beside it. Null when the running sum overflows or the records cannot
/// be read back (the pass reports either).
std::optional<size_t> peakIndex(const MemoryRecordStream &Records, bool AllTotals,
                                const IntervalList *Window) {
  std::optional<IntervalCursor> Cursor;
  if (Window)
    Cursor.emplace(*Window);
  int64_t Sum = 0, Peak = std::numeric_limits<int64_t>::min();
  size_t PeakAt = 0;
  MemoryRecordStream::Reader From(Records);
  MemoryRecord R;
  for (size_t I = 0; From.next(R); ++I) {
    if (!addBytesChecked(Sum, R.Bytes))
      return std::nullopt;
    const int64_t Allocated = AllTotals ? R.TotalAllocated : Sum;
    if ((!Cursor || Cursor->contains(R.Ts)) && Allocated > Peak) {
      Peak = Allocated;
      PeakAt = I;
    }
  }
  if (!From.failed().empty() || (Cursor && !Cursor->failed().empty()))
    return std::nullopt;
  return PeakAt;
}

/// A point whose enclosing operator the second pass looks up.
struct OpQuery {
  uint32_t Tid;
  double Ts;
  std::string *Into;
  double BestDur = std::numeric_limits<double>::infinity();
};

} // namespace

static llvm::Expected<std::optional<llvm::Regex>> compilePattern(const std::string &Text,
                                                          const char *Option) {
  if (Text.empty())
    return std::nullopt;
  llvm::Regex R(Text);
  std::string Why;
  if (!R.isValid(Why))
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s=%s: %s", Option,
                                   Text.c_str(), Why.c_str());
  return std::optional<llvm::Regex>(std::move(R));
}

llvm::Expected<MeasuredTrace> importChromeTrace(llvm::StringRef Path, const TraceOptions &Opts) {
  auto PatternOr = compilePattern(Opts.RangePattern, "--trace-range");
  if (!PatternOr)
    return PatternOr.takeError();
  auto WindowOr = compilePattern(Opts.WindowPattern, "--trace-window");
  if (!WindowOr)
    return WindowOr.takeError();
  std::optional<llvm::Regex> &Pattern = *PatternOr;
  std::optional<llvm::Regex> &Window = *WindowOr;
  IntervalList WindowIntervals(Opts.PlainRecords, Opts.RecordMemory);
  llvm::StringMap<uint32_t> Tids;
  std::map<std::string, DeviceRecords> ByDevice;
  std::vector<MeasuredRange> Ranges;
  std::vector<IntervalList> Phases; // indexed by PhaseKind
  for (int K = 0; K < NumPhases; ++K)
    Phases.emplace_back(Opts.PlainRecords, Opts.RecordMemory);
  int64_t OpEvents = 0;
  // Consecutive events mostly share a thread and a device: the last lookup of each is
  // kept, which saves a hash (or a name built and a map searched) per event.
  std::string LastTid;
  uint32_t LastTidIndex = 0;
  bool HaveLastTid = false;
  auto tidIndex = [&](llvm::StringRef Tid) {
    if (!HaveLastTid || Tid != LastTid) {
      auto [It, New] = Tids.try_emplace(Tid, static_cast<uint32_t>(Tids.size()));
      LastTid = Tid;
      LastTidIndex = It->second;
      HaveLastTid = true;
    }
    return LastTidIndex;
  };
  std::optional<int64_t> LastDeviceType, LastDeviceId;
  DeviceRecords *LastDevice = nullptr;
  auto deviceRecords = [&](const Event &E) -> DeviceRecords & {
    if (!LastDevice || E.DeviceType != LastDeviceType || E.DeviceId != LastDeviceId) {
      LastDevice = &ByDevice.try_emplace(deviceName(E.DeviceType, E.DeviceId),
                                         Opts.PlainRecords, Opts.RecordMemory)
                        .first->second;
      LastDeviceType = E.DeviceType;
      LastDeviceId = E.DeviceId;
    }
    return *LastDevice;
  };
  // Operators are kept from the first pass for the attribution, up to a cap (8 Mi by
  // default, encoded past 64 Ki, in the temporary file past 4 MiB); a trace with more is
  // attributed by a second streamed pass instead, so the temporary file stays bounded.
  trace::OperatorStream OpRecords(Opts.PlainRecords, Opts.RecordMemory);
  // Operator names, interned: a DenseMap of hashed views (llvm::hash_value reads eight
  // bytes a step) instead of a StringMap, whose hash (LLVM 16's djbHash) reads a byte at a
  // time on the importer's thread, which sets an import's pace.
  llvm::BumpPtrAllocator NameArena;
  llvm::StringSaver NameSaver(NameArena);
  llvm::DenseMap<llvm::CachedHashStringRef, uint32_t> OpNames;
  std::vector<llvm::StringRef> NameOf;
  bool OpsKept = true;
  // Progress by the bytes of the file read, where the caller asked for it.
  uint64_t FileSize = 0;
  if (Opts.Progress && llvm::sys::fs::file_size(Path, FileSize))
    FileSize = 0; // unknown: reported as 0 bytes of 0
  int Pass = 1; // 2 for the second pass, where one is made
  auto ReportRead = [&](uint64_t Read) {
    Opts.Progress(Pass, std::min(Read, FileSize), FileSize);
  };
  llvm::function_ref<void(uint64_t)> Progress; // null: nobody asked
  if (Opts.Progress)
    Progress = ReportRead;
  auto Count = chrome::forEachEvent(Path, Opts.ChunkBytes, Opts.ParseAhead, [&](const Event &E) {
    if (E.Memory && E.Bytes && !std::isnan(E.Ts)) {
      DeviceRecords &Device = deviceRecords(E);
      Device.add({E.Ts, *E.Bytes, E.TotalAllocated.value_or(Absent),
                  E.TotalReserved.value_or(Absent), static_cast<uint64_t>(E.Addr.value_or(0)),
                  tidIndex(E.Tid)},
                 E.Addr.has_value());
      return;
    }
    if (E.Ph != "X" || std::isnan(E.Ts))
      return;
    if (E.Cat == "cpu_op" || E.Cat == "Operator") {
      ++OpEvents;
      if (OpsKept && OpRecords.size() < Opts.MaxKeptOperators) {
        const llvm::CachedHashStringRef Key(E.Name);
        auto It = OpNames.find(Key);
        if (It == OpNames.end()) {
          // The key views the event's text: kept, it views a copy that lives on.
          const llvm::StringRef Kept = NameSaver.save(E.Name);
          It = OpNames
                   .try_emplace(llvm::CachedHashStringRef(Kept, Key.hash()),
                                static_cast<uint32_t>(NameOf.size()))
                   .first;
          NameOf.push_back(Kept);
        }
        OpRecords.append({E.Ts, E.Dur, tidIndex(E.Tid), It->second});
      } else if (OpsKept) {
        OpsKept = false;
        OpRecords.clear();
      }
    }
    if (E.Phase >= 0)
      Phases[E.Phase].add(E.Ts, E.Ts + E.Dur);
    if (Window && Window->match(E.Name))
      WindowIntervals.add(E.Ts, E.Ts + E.Dur);
    if (E.Name.starts_with("ProfilerStep#") ||
        (Pattern && Pattern->match(E.Name)))
      Ranges.push_back({E.Name.str(), E.Ts, E.Ts + E.Dur, 0, 0});
  }, Progress);
  if (!Count)
    return Count.takeError();
  if (Progress)
    Progress(FileSize); // the pass has read the whole file

  MeasuredTrace T;
  T.Format = TraceFormat::ChromeTrace;
  T.Path = Path.str();
  if (ByDevice.empty()) {
    T.Diags.warning("no-memory-events", Path.str(),
                    llvm::formatv("the trace has {0} events but no [memory] events; record "
                                  "them with torch.profiler.profile(profile_memory=True, ...)",
                                  *Count)
                        .str());
    return T;
  }
  std::sort(Ranges.begin(), Ranges.end(),
            [](const MeasuredRange &A, const MeasuredRange &B) { return A.StartUs < B.StartUs; });
  for (IntervalList *I : {&Phases[Forward], &Phases[Backward], &Phases[Optimizer],
                          &Phases[ZeroGrad], &WindowIntervals}) {
    std::string Why;
    if (!I->finish(Why))
      return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s",
                                     Path.str().c_str(), Why.c_str());
  }
  if (Window && WindowIntervals.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: --trace-window=%s matches no range of the trace",
                                   Path.str().c_str(), Opts.WindowPattern.c_str());

  std::vector<OpQuery> Queries;
  // Devices in a stable order: CUDA devices first (by index), then the CPU, then others.
  std::vector<std::string> Names;
  for (auto &[Name, Device] : ByDevice)
    Names.push_back(Name);
  std::stable_sort(Names.begin(), Names.end(), [](const std::string &A, const std::string &B) {
    auto Rank = [](llvm::StringRef N) { return N.starts_with("cuda:") ? 0 : N == "cpu" ? 1 : 2; };
    if (Rank(A) != Rank(B))
      return Rank(A) < Rank(B);
    return A.size() != B.size() ? A.size() < B.size() : A < B;
  });
  T.Devices.reserve(Names.size());
  std::vector<std::vector<uint32_t>> QueryTids; // per device: tid of each LiveAtPeak entry
  for (const std::string &Name : Names) {
    DeviceRecords &Device = ByDevice.find(Name)->second;
    MemoryRecordStream &Records = Device.Records;
    std::string Why;
    if (!Records.sortByTime(Why))
      return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s",
                                     Path.str().c_str(), Why.c_str());
    DeviceMemory D;
    D.Device = Name;
    D.Events = static_cast<int64_t>(Records.size());
    const bool AllTotals = Device.AllTotals, AnyReserved = Device.AnyReserved;
    D.PeakBasis = AllTotals ? "total_allocated" : "running_sum";
    // One pass over the time-sorted records: the peak, the phases' and ranges' peaks, and
    // a timeline decimated as it grows, so only the records themselves scale with the trace.
    int64_t Sum = 0;
    size_t PeakIndex = 0;
    uint32_t PeakTid = 0;
    bool AnyInWindow = false;
    D.Peak = std::numeric_limits<int64_t>::min();
    std::optional<int64_t> PhasePeak[NumPhases];
    const char *PrevPhase = nullptr;
    int64_t PrevAllocated = 0;
    std::vector<MeasuredRange> Open; // ranges that have started, by end
    size_t NextRange = 0;
    std::vector<MeasuredRange> Closed;
    // The allocations live at the peak, where the trace pairs frees with addresses: on a
    // second thread beside the pass below, for a long trace (the hash map of live blocks
    // was a quarter of the work after reading). That thread finds the peak first, in a
    // pass of its own (decoding the records once more, which the pass below would wait
    // for if it ran here).
    const bool HaveAddrs = Device.HaveAddrs;
    std::optional<size_t> EarlyPeak;
    std::vector<LiveRecord> LiveOrder;
    std::string LiveWhy;
    std::jthread LiveWorker; // joined on every way out of this iteration
    if (HaveAddrs && Records.size() >= (size_t(1) << 16) &&
        llvm::hardware_concurrency().compute_thread_count() > 1)
      LiveWorker = std::jthread([&] {
        EarlyPeak = peakIndex(Records, AllTotals, Window ? &WindowIntervals : nullptr);
        if (EarlyPeak)
          LiveOrder = liveAtPeak(Records, *EarlyPeak, LiveWhy);
      });
    PhaseClock Clock(Phases);
    IntervalCursor WindowCursor(WindowIntervals);
    // The timeline as it is read: MeasuredSample's strings and optional categories made
    // copying a sample (once read, at each decimation) a fifth of the work after the pass.
    struct CompactSample {
      double TimeUs;
      int64_t Allocated;
      std::optional<int64_t> Reserved;
      const char *Phase = ""; // one of PhaseNames, or ""
    };
    std::vector<CompactSample> Timeline;
    MemoryRecordStream::Reader From(Records);
    MemoryRecord R;
    for (size_t I = 0; From.next(R); ++I) {
      if (!addBytesChecked(Sum, R.Bytes))
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "%s: %s: the running sum of Bytes overflows 64 bits",
                                       Path.str().c_str(), Name.c_str());
      CompactSample S;
      S.TimeUs = R.Ts;
      S.Allocated = AllTotals ? R.TotalAllocated : Sum;
      if (AnyReserved && R.TotalReserved != Absent) {
        S.Reserved = R.TotalReserved;
        D.PeakReserved = std::max(D.PeakReserved.value_or(0), R.TotalReserved);
      }
      const char *Phase = Clock.at(R.Ts);
      bool InWindow = !Window || WindowCursor.contains(R.Ts);
      if (InWindow) {
        AnyInWindow = true;
        if (S.Allocated > D.Peak) {
          D.Peak = S.Allocated;
          PeakIndex = I;
          PeakTid = R.Tid;
          D.PeakTimeUs = R.Ts;
          D.FragmentationAtPeak.reset();
          if (S.Reserved)
            D.FragmentationAtPeak = *S.Reserved - S.Allocated;
        }
        // A phase's peak counts the state it was entered with (the sample before its
        // first event), as the simulator's phase peaks do.
        for (int K = 0; K < NumPhases; ++K)
          if (Phase == PhaseNames[K]) {
            int64_t V = std::max(PhasePeak[K].value_or(S.Allocated), S.Allocated);
            if (I > 0 && PrevPhase != Phase)
              V = std::max(V, PrevAllocated);
            PhasePeak[K] = V;
          }
        S.Phase = Phase;
        Timeline.push_back(S);
        if (Timeline.size() > 4 * std::max<size_t>(Opts.MaxTimelinePoints, 2))
          decimateSamples(Timeline, Opts.MaxTimelinePoints);
      }
      PrevPhase = Phase;
      PrevAllocated = S.Allocated;
      // Ranges (sorted by start): open those begun, close those ended, raise the rest.
      while (NextRange < Ranges.size() && Ranges[NextRange].StartUs <= R.Ts) {
        Open.push_back(Ranges[NextRange++]);
        Open.back().Peak = std::numeric_limits<int64_t>::min();
      }
      for (size_t K = 0; K < Open.size();) {
        if (Open[K].EndUs < R.Ts) {
          if (Open[K].Peak != std::numeric_limits<int64_t>::min())
            Closed.push_back(Open[K]);
          Open.erase(Open.begin() + static_cast<long>(K));
          continue;
        }
        if (S.Allocated > Open[K].Peak) {
          Open[K].Peak = S.Allocated;
          Open[K].PeakTimeUs = R.Ts;
        }
        ++K;
      }
    }
    for (const std::string &Failed :
         {From.failed(), Clock.failed(), WindowCursor.failed()})
      if (!Failed.empty())
        return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s",
                                       Path.str().c_str(), Failed.c_str());
    for (const MeasuredRange &Range : Open)
      if (Range.Peak != std::numeric_limits<int64_t>::min())
        Closed.push_back(Range);
    if (!AnyInWindow) {
      T.Diags.note("window-empty", Name,
                   "no memory events of this device inside --trace-window=" +
                       Opts.WindowPattern);
      continue;
    }
    for (int K = 0; K < NumPhases; ++K)
      if (PhasePeak[K])
        D.PhasePeaks.push_back({PhaseNames[K], *PhasePeak[K]});
    std::stable_sort(Closed.begin(), Closed.end(),
                     [](const MeasuredRange &A, const MeasuredRange &B) {
                       return A.StartUs < B.StartUs;
                     });
    D.Ranges = std::move(Closed);
    for (const MeasuredRange &Range : D.Ranges)
      if (Range.StartUs <= D.PeakTimeUs && D.PeakTimeUs <= Range.EndUs)
        D.PeakRange = Range.Name; // sorted by start: the last match is the innermost
    std::vector<uint32_t> LiveTids;
    if (HaveAddrs) {
      if (LiveWorker.joinable())
        LiveWorker.join();
      const bool Early = EarlyPeak && *EarlyPeak == PeakIndex;
      std::vector<LiveRecord> Order =
          Early ? std::move(LiveOrder) : liveAtPeak(Records, PeakIndex, LiveWhy);
      if (!LiveWhy.empty())
        return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s",
                                       Path.str().c_str(), LiveWhy.c_str());
      D.LiveAtPeakCount = static_cast<int64_t>(Order.size());
      Order.resize(std::min(Order.size(), Opts.TopAllocations));
      for (const LiveRecord &L : Order) {
        D.LiveAtPeak.push_back({L.Bytes, L.Addr, L.Ts, "", ""});
        LiveTids.push_back(L.Tid);
      }
    } else {
      T.Diags.note("no-addresses", Name,
                   "the trace's memory events have no Addr (older kineto), so frees cannot be "
                   "paired with allocations: the peak is exact, the allocations live at it "
                   "are not listed");
    }
    LiveTids.push_back(PeakTid); // last: the peak event itself
    QueryTids.push_back(std::move(LiveTids));
    decimateSamples(Timeline, Opts.MaxTimelinePoints);
    D.Timeline.reserve(Timeline.size());
    for (const CompactSample &C : Timeline) {
      MeasuredSample &S = D.Timeline.emplace_back();
      S.TimeUs = C.TimeUs;
      S.Allocated = C.Allocated;
      S.Reserved = C.Reserved;
      S.Phase = C.Phase;
    }
    T.Devices.push_back(std::move(D));
  }

  if (OpEvents > 0) {
    for (size_t DI = 0; DI < T.Devices.size(); ++DI) {
      DeviceMemory &D = T.Devices[DI];
      for (size_t I = 0; I < D.LiveAtPeak.size(); ++I)
        Queries.push_back({QueryTids[DI][I], D.LiveAtPeak[I].TimeUs, &D.LiveAtPeak[I].Op});
      Queries.push_back({QueryTids[DI].back(), D.PeakTimeUs, &D.PeakOp});
    }
    // The innermost operator enclosing each point on its thread: the shortest one, the
    // first in file order on ties. The points by time, so that an operator is checked
    // against those inside it only, found by a binary search (each point keeps its own
    // best, so the order they are offered an operator in does not matter): checking every
    // point against every operator was a sixth of what follows the reading of a 100 MB
    // trace (2.4 of 14 ms), and would grow with TraceOptions::TopAllocations.
    std::vector<size_t> ByTime(Queries.size());
    for (size_t I = 0; I < ByTime.size(); ++I)
      ByTime[I] = I;
    llvm::stable_sort(ByTime, [&](size_t A, size_t B) { return Queries[A].Ts < Queries[B].Ts; });
    std::vector<double> QueryTs;
    QueryTs.reserve(ByTime.size());
    for (size_t I : ByTime)
      QueryTs.push_back(Queries[I].Ts);
    auto Offer = [&](uint32_t Tid, double Ts, double Dur, llvm::StringRef Name) {
      const double End = Ts + Dur;
      for (size_t K = static_cast<size_t>(llvm::lower_bound(QueryTs, Ts) - QueryTs.begin());
           K < QueryTs.size() && QueryTs[K] <= End; ++K) {
        OpQuery &Q = Queries[ByTime[K]];
        if (Q.Tid == Tid && Dur < Q.BestDur) {
          Q.BestDur = Dur;
          *Q.Into = Name.str();
        }
      }
    };
    if (OpsKept) {
      trace::OperatorStream::Reader From(OpRecords);
      for (trace::OperatorRecord R; From.next(R);)
        Offer(R.Tid, R.Ts, R.Dur, NameOf[R.Name]);
      if (!From.failed().empty())
        return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s",
                                       Path.str().c_str(), From.failed().c_str());
    } else {
      Pass = 2;
      auto Second = chrome::forEachEvent(
          Path, Opts.ChunkBytes, Opts.ParseAhead,
          [&](const Event &E) {
            if (E.Ph != "X" || (E.Cat != "cpu_op" && E.Cat != "Operator") || std::isnan(E.Ts))
              return;
            if (auto It = Tids.find(E.Tid); It != Tids.end())
              Offer(It->second, E.Ts, E.Dur, E.Name);
          },
          Progress);
      if (!Second)
        return Second.takeError();
      if (Progress)
        Progress(FileSize);
    }
  }
  if (llvm::Error E = selectTraceDevice(T, Opts))
    return E;
  return T;
}

} // namespace trainmem
