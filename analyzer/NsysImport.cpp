//===- NsysImport.cpp - Nsight Systems SQLite exports: CUDA memory usage ---===//
//
// `nsys profile --cuda-memory-usage=true` then `nsys export --type sqlite` writes the
// table CUDA_GPU_MEMORY_USAGE_EVENTS: one row per device allocation or free made through
// the CUDA driver (`start` ns, `deviceId`, `address`, `bytes`, `memKind` as
// ENUM_CUDA_MEM_KIND: 0 pageable, 1 pinned host, 2 device, 3 array, 4 managed, 5 device
// static, 6 managed static; `memoryOperationType` 0 allocation, 1 free; `globalPid`,
// `contextId`). For PyTorch these are the caching allocator's segments, so the figure is
// the process's reserved memory, not its live tensors. Read with SQLite, one streamed
// query in time order.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TraceImport.h"

#include "llvm/Support/FormatVariadic.h"

#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <tuple>

namespace trainmem {

namespace {

llvm::Error nsysError(llvm::StringRef Path, const llvm::Twine &Message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 (Path + ": " + Message).str());
}

struct DbCloser {
  void operator()(sqlite3 *Db) const { sqlite3_close(Db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt *S) const { sqlite3_finalize(S); }
};

bool hasColumn(sqlite3 *Db, const char *Table, const char *Column) {
  sqlite3_stmt *Raw = nullptr;
  std::string Sql = std::string("PRAGMA table_info(") + Table + ")";
  if (sqlite3_prepare_v2(Db, Sql.c_str(), -1, &Raw, nullptr) != SQLITE_OK)
    return false;
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> S(Raw);
  while (sqlite3_step(Raw) == SQLITE_ROW)
    if (const unsigned char *Name = sqlite3_column_text(Raw, 1))
      if (std::string(reinterpret_cast<const char *>(Name)) == Column)
        return true;
  return false;
}

} // namespace

llvm::Expected<MeasuredTrace> importNsysSqlite(llvm::StringRef Path, const TraceOptions &Opts) {
  sqlite3 *RawDb = nullptr;
  std::string File = Path.str();
  int Rc = sqlite3_open_v2(File.c_str(), &RawDb, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, DbCloser> Db(RawDb);
  if (Rc != SQLITE_OK)
    return nsysError(Path, llvm::Twine("cannot open as SQLite: ") +
                               (RawDb ? sqlite3_errmsg(RawDb) : sqlite3_errstr(Rc)));
  MeasuredTrace T;
  T.Format = TraceFormat::NsysSqlite;
  T.Path = File;
  const char *Table = "CUDA_GPU_MEMORY_USAGE_EVENTS";
  if (!hasColumn(RawDb, Table, "bytes")) {
    T.Diags.warning("no-memory-events", File,
                    "the Nsight Systems export has no CUDA_GPU_MEMORY_USAGE_EVENTS table; "
                    "record with `nsys profile --cuda-memory-usage=true` and export with "
                    "`nsys export --type sqlite`");
    return T;
  }
  for (const char *Column : {"start", "deviceId", "address", "memoryOperationType"})
    if (!hasColumn(RawDb, Table, Column))
      return nsysError(Path, llvm::Twine(Table) + ": no column '" + Column +
                                 "' (expected an Nsight Systems 2021.2 or newer export)");
  bool HasKind = hasColumn(RawDb, Table, "memKind");
  bool HasPid = hasColumn(RawDb, Table, "globalPid");
  bool HasContext = hasColumn(RawDb, Table, "contextId");
  std::string Sql = llvm::formatv("SELECT start, deviceId, address, bytes, memoryOperationType, "
                                  "{0}, {1}, {2} FROM {3} ORDER BY start, rowid",
                                  HasKind ? "memKind" : "2", HasPid ? "globalPid" : "0",
                                  HasContext ? "contextId" : "0", Table)
                        .str();
  sqlite3_stmt *RawStmt = nullptr;
  if (sqlite3_prepare_v2(RawDb, Sql.c_str(), -1, &RawStmt, nullptr) != SQLITE_OK)
    return nsysError(Path, llvm::Twine("cannot read ") + Table + ": " + sqlite3_errmsg(RawDb));
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> Stmt(RawStmt);

  struct Live {
    int64_t Bytes;
    double TimeUs;
  };
  struct DeviceState {
    DeviceMemory D;
    int64_t Current = 0;
    std::map<std::tuple<int64_t, int64_t, int64_t>, Live> Allocations;
    std::map<std::tuple<int64_t, int64_t, int64_t>, Live> AtPeak;
  };
  std::map<int64_t, DeviceState> Devices;
  int64_t HostRows = 0, UnpairedFrees = 0;
  while ((Rc = sqlite3_step(RawStmt)) == SQLITE_ROW) {
    int64_t Kind = sqlite3_column_int64(RawStmt, 5);
    if (Kind == 0 || Kind == 1) { // host memory is not the GPU's
      ++HostRows;
      continue;
    }
    double TimeUs = static_cast<double>(sqlite3_column_int64(RawStmt, 0)) / 1000.0;
    int64_t Device = sqlite3_column_int64(RawStmt, 1);
    int64_t Bytes = sqlite3_column_int64(RawStmt, 3);
    auto Key = std::make_tuple(sqlite3_column_int64(RawStmt, 6), sqlite3_column_int64(RawStmt, 7),
                               sqlite3_column_int64(RawStmt, 2));
    DeviceState &S = Devices[Device];
    ++S.D.Events;
    bool Fits = true;
    if (sqlite3_column_int64(RawStmt, 4) == 0) {
      S.Allocations[Key] = {Bytes, TimeUs};
      Fits = addBytesChecked(S.Current, Bytes);
    } else {
      auto It = S.Allocations.find(Key);
      if (It == S.Allocations.end()) {
        ++UnpairedFrees; // allocated before the capture began
        Fits = Bytes != std::numeric_limits<int64_t>::min() && addBytesChecked(S.Current, -Bytes);
      } else {
        Fits = addBytesChecked(S.Current, -It->second.Bytes);
        S.Allocations.erase(It);
      }
    }
    if (!Fits)
      return nsysError(Path, llvm::Twine(Table) + ": the bytes of device " +
                                 llvm::Twine(Device) + " overflow 64 bits");
    MeasuredSample Sample;
    Sample.TimeUs = TimeUs;
    Sample.Allocated = S.Current;
    Sample.Reserved = S.Current;
    if (S.D.Timeline.empty() || S.Current > S.D.Peak) {
      S.D.Peak = S.Current;
      S.D.PeakTimeUs = TimeUs;
      S.AtPeak = S.Allocations;
    }
    S.D.Timeline.push_back(Sample);
    // Keep memory bounded on long captures: decimate as the timeline grows.
    if (S.D.Timeline.size() > 4 * std::max<size_t>(Opts.MaxTimelinePoints, 2))
      decimateTimeline(S.D.Timeline, Opts.MaxTimelinePoints);
  }
  if (Rc != SQLITE_DONE)
    return nsysError(Path, llvm::Twine("reading ") + Table + ": " + sqlite3_errmsg(RawDb));
  if (Devices.empty()) {
    T.Diags.warning("no-memory-events", File,
                    HostRows ? "CUDA_GPU_MEMORY_USAGE_EVENTS holds host allocations only"
                             : "CUDA_GPU_MEMORY_USAGE_EVENTS is empty; record with `nsys "
                               "profile --cuda-memory-usage=true`");
    return T;
  }
  for (auto &[Index, S] : Devices) {
    DeviceMemory &D = S.D;
    D.Device = "cuda:" + std::to_string(Index);
    D.PeakBasis = "cuda_driver";
    D.PeakReserved = D.Peak;
    D.FragmentationAtPeak.reset();
    std::vector<std::pair<Live, uint64_t>> Order;
    for (auto &[Key, L] : S.AtPeak)
      Order.push_back({L, static_cast<uint64_t>(std::get<2>(Key))});
    std::sort(Order.begin(), Order.end(), [](const auto &A, const auto &B) {
      return A.first.Bytes != B.first.Bytes ? A.first.Bytes > B.first.Bytes
                                            : A.second < B.second;
    });
    D.LiveAtPeakCount = static_cast<int64_t>(Order.size());
    Order.resize(std::min(Order.size(), Opts.TopAllocations));
    for (auto &[L, Addr] : Order)
      D.LiveAtPeak.push_back({L.Bytes, Addr, L.TimeUs, "", ""});
    decimateTimeline(D.Timeline, Opts.MaxTimelinePoints);
    T.Devices.push_back(std::move(D));
  }
  T.Diags.note("nsys-driver-level", File,
               "Nsight Systems records CUDA driver allocations: under PyTorch these are the "
               "caching allocator's segments, so the peak is reserved memory (compare it "
               "with peak_reserved), not live tensors");
  if (UnpairedFrees)
    T.Diags.note("nsys-unpaired-frees", File,
                 std::to_string(UnpairedFrees) +
                     " frees of allocations made before the capture began; the timeline is "
                     "relative to the memory allocated then");
  if (llvm::Error E = selectTraceDevice(T, Opts))
    return E;
  return T;
}

} // namespace trainmem
