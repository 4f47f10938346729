//===- CudaSnapshotTest.cpp - CUDA caching-allocator snapshot import ----------===//
//
// tests/data/traces/cuda_snapshot_two_devices.* hold one snapshot, written by
// make_snapshots.py as a pickle, as JSON and as a gzipped pickle. The figures asserted
// here were worked out by hand in the comments beside its trace and are printed by the
// script's own replay (python3 make_snapshots.py); all three files must give them.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TraceImport.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

using namespace trainmem;

namespace {

constexpr int64_t MiB = 1024 * 1024;
constexpr uint64_t SegA = 0x7F0000000000, SegB = 0x7F0001600000, SegC = 0x7F0004000000;
constexpr uint64_t Old = 0x7F0006000000;
constexpr double T0 = 1700000000000000.0; // time_us of device 0's first entry

std::string tracePath(llvm::StringRef Name) {
  return std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/traces/" + Name.str();
}

MeasuredTrace importOk(llvm::StringRef Name, TraceFormat Format, TraceOptions Opts = {}) {
  auto T = importCudaSnapshot(tracePath(Name), Format, Opts);
  if (!T) {
    ADD_FAILURE() << llvm::toString(T.takeError());
    return MeasuredTrace();
  }
  return std::move(*T);
}

/// A scratch file holding Text, removed when the test ends.
class TempFile {
public:
  TempFile(llvm::StringRef Suffix, llvm::StringRef Text) {
    int FD;
    if (llvm::sys::fs::createTemporaryFile("trainmem-snapshot", Suffix, FD, Path)) {
      ADD_FAILURE() << "cannot create a temporary file";
      return;
    }
    llvm::raw_fd_ostream OS(FD, /*shouldClose=*/true);
    OS << Text;
  }
  ~TempFile() { llvm::sys::fs::remove(Path); }
  std::string path() const { return std::string(Path.str()); }

private:
  llvm::SmallString<128> Path;
};

std::string importError(llvm::StringRef Path, TraceFormat Format) {
  auto T = importCudaSnapshot(Path, Format, TraceOptions());
  if (T) {
    ADD_FAILURE() << "imported " << Path.str() << " where an error was expected";
    return "";
  }
  return llvm::toString(T.takeError());
}

std::string gzipOf(llvm::StringRef Data) {
  z_stream Z{};
  EXPECT_EQ(deflateInit2(&Z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string Out(deflateBound(&Z, uLong(Data.size())), '\0');
  Z.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(Data.data()));
  Z.avail_in = uInt(Data.size());
  Z.next_out = reinterpret_cast<Bytef *>(Out.data());
  Z.avail_out = uInt(Out.size());
  EXPECT_EQ(deflate(&Z, Z_FINISH), Z_STREAM_END);
  Out.resize(Z.total_out);
  deflateEnd(&Z);
  return Out;
}

const DeviceMemory *device(const MeasuredTrace &T, llvm::StringRef Name) {
  for (const DeviceMemory &D : T.Devices)
    if (D.Device == Name)
      return &D;
  ADD_FAILURE() << "no device " << Name.str();
  return nullptr;
}

bool hasDiag(const MeasuredTrace &T, llvm::StringRef Code, llvm::StringRef Where,
             llvm::StringRef Part) {
  for (const Diagnostic &D : T.Diags.all())
    if (D.Code == Code && D.Where == Where && llvm::StringRef(D.Message).contains(Part))
      return true;
  return false;
}

} // namespace

TEST(CudaSnapshot, DeviceWithTimestamps) {
  MeasuredTrace T = importOk("cuda_snapshot_two_devices.pickle", TraceFormat::CudaSnapshotPickle);
  ASSERT_EQ(T.Devices.size(), 2u); // device_traces[2] is empty and has no segments
  const DeviceMemory *D = device(T, "cuda:0");
  ASSERT_NE(D, nullptr);
  EXPECT_EQ(D->Events, 15);
  EXPECT_EQ(D->PeakBasis, "snapshot");
  // Peak after the second alloc: 16 MiB + 10 MiB inside the trace on top of the
  // 8000000 + 400 + 512 + 6 MiB allocated before it began.
  EXPECT_EQ(D->Peak, 41555344);
  EXPECT_EQ(D->PeakTimeUs, T0 + 20);
  EXPECT_EQ(D->PeakOp, "attention (model.py:20)"); // CapturedTraceback::gather skipped
  EXPECT_EQ(D->PeakReserved, 60 * MiB);            // 20 + 2 + 6 + 32 MiB of segments
  EXPECT_EQ(D->FragmentationAtPeak, 60 * MiB - 41555344);
  EXPECT_EQ(*D->FragmentationAtPeak, 21359216);

  ASSERT_EQ(D->Timeline.size(), 16u); // the start, then one sample per entry
  EXPECT_EQ(D->Timeline.front().TimeUs, T0);
  EXPECT_EQ(D->Timeline.front().Allocated, 14292368);
  EXPECT_EQ(D->Timeline.front().Reserved, 28 * MiB);
  EXPECT_EQ(D->Timeline.back().TimeUs, T0 + 140);
  EXPECT_EQ(D->Timeline.back().Allocated, 12194704); // requested sizes of the live blocks
  EXPECT_EQ(D->Timeline.back().Reserved, 22 * MiB);

  ASSERT_EQ(D->LiveAtPeakCount, 6);
  ASSERT_EQ(D->LiveAtPeak.size(), 6u);
  struct Want {
    int64_t Bytes;
    uint64_t Addr;
    double TimeUs;
    const char *Op;
  };
  const Want Wants[] = {
      {16 * MiB, SegC, T0 + 10, "linear (model.py:10)"},
      {10 * MiB, SegC + 16 * MiB, T0 + 20, "attention (model.py:20)"},
      {8000000, SegA, T0, "embed (model.py:3)"},                // live from before to the end
      {6 * MiB, Old, T0, "freed in clear_cache (train.py:77)"}, // older, freed after the peak
      {512, SegB + 512, T0, "freed in all_reduce (comm.py:5)"}, // now active_pending_free
      {400, SegB, T0, ""},                                      // no frames recorded
  };
  int64_t Sum = 0;
  for (size_t I = 0; I < 6; ++I) {
    const MeasuredAllocation &A = D->LiveAtPeak[I];
    EXPECT_EQ(A.Bytes, Wants[I].Bytes) << I;
    EXPECT_EQ(A.Addr, Wants[I].Addr) << I;
    EXPECT_EQ(A.TimeUs, Wants[I].TimeUs) << I;
    EXPECT_EQ(A.Op, Wants[I].Op) << I;
    Sum += A.Bytes;
  }
  EXPECT_EQ(Sum, D->Peak); // every allocation live at the peak is accounted for

  EXPECT_TRUE(hasDiag(T, "trace-oom", "cuda:0", "1.00 GiB"));
  EXPECT_TRUE(hasDiag(T, "snapshot-requested-bytes", "cuda:0", ""));
}

TEST(CudaSnapshot, DeviceWithoutTimestampsCountsEntries) {
  MeasuredTrace T = importOk("cuda_snapshot_two_devices.pickle", TraceFormat::CudaSnapshotPickle);
  const DeviceMemory *D = device(T, "cuda:1");
  ASSERT_NE(D, nullptr);
  EXPECT_EQ(D->Events, 6);
  EXPECT_EQ(D->Peak, 4500);
  EXPECT_EQ(D->PeakTimeUs, 2); // after the second entry
  EXPECT_EQ(D->PeakOp, "scratch (train.py:99)");
  EXPECT_EQ(D->PeakReserved, 2 * MiB);
  EXPECT_EQ(D->FragmentationAtPeak, 2 * MiB - 4500);
  ASSERT_EQ(D->Timeline.size(), 7u);
  EXPECT_EQ(D->Timeline.front().TimeUs, 0);
  EXPECT_EQ(D->Timeline.front().Allocated, 1000);
  EXPECT_EQ(D->Timeline.back().TimeUs, 6);
  EXPECT_EQ(D->Timeline.back().Allocated, 1000);
  ASSERT_EQ(D->LiveAtPeakCount, 3);
  ASSERT_EQ(D->LiveAtPeak.size(), 3u);
  EXPECT_EQ(D->LiveAtPeak[0].Bytes, 3000);
  EXPECT_EQ(D->LiveAtPeak[0].Op, "tmp (data.py:12)");
  EXPECT_EQ(D->LiveAtPeak[0].TimeUs, 1);
  EXPECT_EQ(D->LiveAtPeak[1].Bytes, 1000);
  EXPECT_EQ(D->LiveAtPeak[1].Op, "load (data.py:7)");
  EXPECT_EQ(D->LiveAtPeak[2].Bytes, 500);
  EXPECT_FALSE(hasDiag(T, "trace-oom", "cuda:1", ""));
}

TEST(CudaSnapshot, PickleJsonAndGzipAgree) {
  MeasuredTrace P = importOk("cuda_snapshot_two_devices.pickle", TraceFormat::CudaSnapshotPickle);
  MeasuredTrace J = importOk("cuda_snapshot_two_devices.json", TraceFormat::CudaSnapshotJson);
  MeasuredTrace G =
      importOk("cuda_snapshot_two_devices.pickle.gz", TraceFormat::CudaSnapshotPickle);
  EXPECT_EQ(J.Format, TraceFormat::CudaSnapshotJson);
  for (const MeasuredTrace *O : {&J, &G}) {
    ASSERT_EQ(O->Devices.size(), P.Devices.size());
    EXPECT_EQ(O->Diags.size(), P.Diags.size());
    for (size_t I = 0; I < P.Devices.size(); ++I) {
      const DeviceMemory &A = P.Devices[I], &B = O->Devices[I];
      EXPECT_EQ(A.Device, B.Device);
      EXPECT_EQ(A.Events, B.Events);
      EXPECT_EQ(A.Peak, B.Peak);
      EXPECT_EQ(A.PeakTimeUs, B.PeakTimeUs);
      EXPECT_EQ(A.PeakOp, B.PeakOp);
      EXPECT_EQ(A.PeakReserved, B.PeakReserved);
      EXPECT_EQ(A.FragmentationAtPeak, B.FragmentationAtPeak);
      EXPECT_EQ(A.LiveAtPeakCount, B.LiveAtPeakCount);
      ASSERT_EQ(A.LiveAtPeak.size(), B.LiveAtPeak.size());
      for (size_t K = 0; K < A.LiveAtPeak.size(); ++K) {
        EXPECT_EQ(A.LiveAtPeak[K].Bytes, B.LiveAtPeak[K].Bytes);
        EXPECT_EQ(A.LiveAtPeak[K].Addr, B.LiveAtPeak[K].Addr);
        EXPECT_EQ(A.LiveAtPeak[K].TimeUs, B.LiveAtPeak[K].TimeUs);
        EXPECT_EQ(A.LiveAtPeak[K].Op, B.LiveAtPeak[K].Op);
      }
      ASSERT_EQ(A.Timeline.size(), B.Timeline.size());
      for (size_t K = 0; K < A.Timeline.size(); ++K) {
        EXPECT_EQ(A.Timeline[K].TimeUs, B.Timeline[K].TimeUs);
        EXPECT_EQ(A.Timeline[K].Allocated, B.Timeline[K].Allocated);
        EXPECT_EQ(A.Timeline[K].Reserved, B.Timeline[K].Reserved);
      }
    }
  }
}

TEST(CudaSnapshot, OptionsLimitAllocationsAndSamples) {
  TraceOptions Opts;
  Opts.TopAllocations = 3;
  Opts.MaxTimelinePoints = 4;
  Opts.Device = "cuda:1";
  MeasuredTrace T =
      importOk("cuda_snapshot_two_devices.pickle", TraceFormat::CudaSnapshotPickle, Opts);
  const DeviceMemory *D = device(T, "cuda:0");
  ASSERT_NE(D, nullptr);
  EXPECT_EQ(D->LiveAtPeak.size(), 3u);
  EXPECT_EQ(D->LiveAtPeakCount, 6);
  EXPECT_EQ(D->LiveAtPeak[2].Bytes, 8000000);
  EXPECT_LE(D->Timeline.size(), 4u);
  int64_t Max = 0;
  for (const MeasuredSample &S : D->Timeline)
    Max = std::max(Max, S.Allocated);
  EXPECT_EQ(Max, 41555344); // decimation keeps the peak
  EXPECT_EQ(T.selected().Device, "cuda:1");
}

TEST(CudaSnapshot, DeviceOnlyInSegments) {
  // A snapshot taken without _record_memory_history: segments, no trace.
  TempFile F(".json", R"({"segments": [{"device": 2, "address": 4096, "total_size": 2097152,
      "blocks": [{"address": 4096, "size": 1024, "requested_size": 1000,
                  "state": "active_allocated",
                  "frames": [{"filename": "a.py", "line": 3, "name": "f"}]},
                 {"address": 5120, "size": 2096128, "requested_size": 0,
                  "state": "inactive", "frames": []}]}]})");
  auto T = importCudaSnapshot(F.path(), TraceFormat::CudaSnapshotJson, TraceOptions());
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  ASSERT_EQ(T->Devices.size(), 1u);
  const DeviceMemory &D = T->Devices[0];
  EXPECT_EQ(D.Device, "cuda:2");
  EXPECT_EQ(D.Events, 0);
  EXPECT_EQ(D.Peak, 1000);
  EXPECT_EQ(D.PeakReserved, 2 * MiB);
  ASSERT_EQ(D.Timeline.size(), 1u);
  EXPECT_EQ(D.Timeline[0].Allocated, 1000);
  ASSERT_EQ(D.LiveAtPeak.size(), 1u);
  EXPECT_EQ(D.LiveAtPeak[0].Op, "f (a.py:3)");
  EXPECT_EQ(D.LiveAtPeak[0].Addr, 4096u);
  EXPECT_TRUE(hasDiag(*T, "snapshot-no-trace", "cuda:2", "_record_memory_history"));
}

TEST(CudaSnapshotErrors, NameTheField) {
  TempFile NoSegments(".json", R"({"device_traces": []})");
  std::string E = importError(NoSegments.path(), TraceFormat::CudaSnapshotJson);
  EXPECT_NE(E.find(NoSegments.path() + ": segments: expected a list of segments"),
            std::string::npos)
      << E;
  EXPECT_NE(E.find("but it is missing"), std::string::npos) << E;

  TempFile List(".json", "[1, 2]");
  E = importError(List.path(), TraceFormat::CudaSnapshotJson);
  EXPECT_NE(E.find("snapshot: expected a dict with segments"), std::string::npos) << E;
  EXPECT_NE(E.find("found list"), std::string::npos) << E;

  TempFile BadSize(".json", R"({"segments": [{"device": 0, "address": 0, "total_size": 512,
      "blocks": [{"size": "512", "state": "inactive"}]}]})");
  E = importError(BadSize.path(), TraceFormat::CudaSnapshotJson);
  EXPECT_NE(E.find("segments[0].blocks[0].size: expected an int, found str"), std::string::npos)
      << E;

  TempFile BadAction(".json", R"({"segments": [], "device_traces": [[{"action": "alloc",
      "addr": 0, "size": -5}]]})");
  E = importError(BadAction.path(), TraceFormat::CudaSnapshotJson);
  EXPECT_NE(E.find("device_traces[0][0].size: expected a non-negative int, found -5"),
            std::string::npos)
      << E;

  TempFile Empty(".json", R"({"segments": [], "device_traces": [[], []]})");
  E = importError(Empty.path(), TraceFormat::CudaSnapshotJson);
  EXPECT_NE(E.find("_record_memory_history"), std::string::npos) << E;

  TempFile Deep(".json", std::string(5000, '[') + std::string(5000, ']'));
  E = importError(Deep.path(), TraceFormat::CudaSnapshotJson);
  EXPECT_NE(E.find("JSON nested 5000 levels deep; at most 512 are read"), std::string::npos) << E;
}

TEST(CudaSnapshotErrors, HostileFiles) {
  std::string E =
      importError(tracePath("pickle_evil_os_system_p4.pickle"), TraceFormat::CudaSnapshotPickle);
  EXPECT_NE(E.find("opcode STACK_GLOBAL"), std::string::npos) << E;
  EXPECT_NE(E.find("imports or calls code"), std::string::npos) << E;

  E = importError(tracePath("cuda_snapshot_memo_bomb.pickle"), TraceFormat::CudaSnapshotPickle);
  EXPECT_NE(E.find("refers to its entries more often than its size allows"), std::string::npos)
      << E;
}

TEST(CudaSnapshotErrors, Gzip) {
  // Gzip goes through the streamed inflater every trace uses (TraceStream.h); its
  // decompression-bomb limit is tested in TraceImportTest (TraceStream.*).
  std::string Whole = gzipOf("N.");
  TempFile Cut(".pickle.gz", llvm::StringRef(Whole).drop_back(6));
  std::string E = importError(Cut.path(), TraceFormat::CudaSnapshotPickle);
  EXPECT_NE(E.find("truncated gzip"), std::string::npos) << E;

  // The content decides, not the name: a plain pickle named .gz is read as a pickle.
  TempFile NotGzip(".pickle.gz", "N.");
  E = importError(NotGzip.path(), TraceFormat::CudaSnapshotPickle);
  EXPECT_NE(E.find("expected a dict"), std::string::npos) << E;

  E = importError(tracePath("no_such_snapshot.pickle"), TraceFormat::CudaSnapshotPickle);
  EXPECT_NE(E.find("cannot open"), std::string::npos) << E;
}
