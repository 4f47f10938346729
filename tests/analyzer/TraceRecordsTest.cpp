// The encoded memory and operator records a Chrome-trace import keeps: every record reads
// back bit for bit, the time sort is std::stable_sort's order, and kineto's records take
// the few bytes the import's memory figures rest on.
#include "analyzer/TraceRecords.h"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <string>
#include <limits>
#include <random>
#include <vector>

using namespace trainmem::trace;

namespace {

constexpr int64_t Min = std::numeric_limits<int64_t>::min();
constexpr int64_t Max = std::numeric_limits<int64_t>::max();

void expectSame(const MemoryRecord &Want, const MemoryRecord &Got, size_t I) {
  EXPECT_EQ(std::bit_cast<uint64_t>(Want.Ts), std::bit_cast<uint64_t>(Got.Ts)) << "record " << I;
  EXPECT_EQ(Want.Bytes, Got.Bytes) << "record " << I;
  EXPECT_EQ(Want.TotalAllocated, Got.TotalAllocated) << "record " << I;
  EXPECT_EQ(Want.TotalReserved, Got.TotalReserved) << "record " << I;
  EXPECT_EQ(Want.Addr, Got.Addr) << "record " << I;
  EXPECT_EQ(Want.Tid, Got.Tid) << "record " << I;
}

std::vector<MemoryRecord> readAll(const MemoryRecordStream &S) {
  std::vector<MemoryRecord> Out;
  MemoryRecordStream::Reader From(S);
  for (MemoryRecord R; From.next(R);)
    Out.push_back(R);
  EXPECT_TRUE(From.failed().empty()) << From.failed();
  return Out;
}

/// Records as kineto writes them: an allocator counter that moves by each event's bytes,
/// a reserved figure that moves now and then, frees of earlier addresses.
std::vector<MemoryRecord> kinetoLike(size_t N, std::mt19937_64 &Rng) {
  std::vector<MemoryRecord> Out;
  std::vector<std::pair<uint64_t, int64_t>> Live;
  double Ts = 1623212756351.123;
  int64_t Total = 0, Reserved = int64_t(1) << 30;
  for (size_t I = 0; I < N; ++I) {
    MemoryRecord R;
    Ts += static_cast<double>(Rng() % 50000) / 1000.0;
    R.Ts = Ts;
    if (Live.empty() || Rng() % 2) {
      const uint64_t Addr = 0x7f0000000000ull + (Rng() % (uint64_t(1) << 32)) * 512;
      const int64_t Bytes = 512 * static_cast<int64_t>(1 + Rng() % 4096);
      Live.push_back({Addr, Bytes});
      R.Addr = Addr;
      R.Bytes = Bytes;
    } else {
      const size_t K = Rng() % Live.size();
      R.Addr = Live[K].first;
      R.Bytes = -Live[K].second;
      Live.erase(Live.begin() + static_cast<long>(K));
    }
    Total += R.Bytes;
    if (Rng() % 100 == 0)
      Reserved += int64_t(2) << 20;
    R.TotalAllocated = Total;
    R.TotalReserved = Reserved;
    R.Tid = Rng() % 20 == 0 ? 2 : 1;
    Out.push_back(R);
  }
  return Out;
}

} // namespace

TEST(TraceRecords, MemoryRecordsReadBackBitForBit) {
  std::vector<MemoryRecord> Records = {
      {0.0, 0, Absent, Absent, 0, 0},
      {-0.0, Min, Max, Min, ~uint64_t(0), std::numeric_limits<uint32_t>::max()},
      {-1e300, Max, Min + 1, Max, 1, 0},
      {std::numeric_limits<double>::infinity(), -1, 0, 0, ~uint64_t(0) - 1, 7},
      {-std::numeric_limits<double>::infinity(), 1, 1, 1, 0x7f0000000000ull, 7},
      {std::numeric_limits<double>::denorm_min(), 512, 513, 1 << 20, 0x7f0000000200ull, 8},
      {1e15, -512, 1, 1 << 20, 0x7f0000000200ull, 8},
      {1e15, -512, Absent, Absent, 0, 8},
  };
  std::mt19937_64 Rng(7);
  auto Any = [&]() -> int64_t {
    switch (Rng() % 4) {
    case 0: return static_cast<int64_t>(Rng());
    case 1: return static_cast<int64_t>(Rng() % 1000) - 500;
    case 2: return Absent;
    default: return Rng() % 2 ? Max : Min + 1;
    }
  };
  for (int I = 0; I < 5000; ++I) {
    MemoryRecord R;
    R.Ts = std::bit_cast<double>(Rng() & ~(uint64_t(0x7ff) << 52)); // any finite double
    R.Bytes = Any();
    R.TotalAllocated = Any();
    R.TotalReserved = Any();
    R.Addr = Rng() % 3 == 0 ? 0 : Rng();
    R.Tid = static_cast<uint32_t>(Rng() % 3 == 0 ? Rng() : 1);
    Records.push_back(R);
  }
  // Encoded from the first record, from the 1001st (the first thousand encoded then),
  // and never; all in memory, or past a memory limit in the temporary file: each record
  // written on its own (1 byte), a few at a time (300), and past 4 KiB.
  struct Limits {
    size_t Plain, Memory;
  };
  for (Limits L : {Limits{0, 0}, Limits{1000, 0}, Limits{DefaultPlainLimit, 0},
                   Limits{0, 1}, Limits{0, 300}, Limits{1000, 4096}}) {
    SCOPED_TRACE("plain " + std::to_string(L.Plain) + ", memory " + std::to_string(L.Memory));
    const size_t Limit = L.Plain;
    MemoryRecordStream S(L.Plain, L.Memory);
    for (const MemoryRecord &R : Records)
      S.append(R);
    ASSERT_EQ(S.size(), Records.size());
    EXPECT_EQ(S.encoded(), Limit < Records.size()) << "limit " << Limit;
    EXPECT_EQ(S.spilledBytes() > 0, L.Memory > 0);
    EXPECT_LE(S.bytes() - S.spilledBytes(), L.Memory ? L.Memory + 64 : S.bytes());
    std::vector<MemoryRecord> Back = readAll(S);
    ASSERT_EQ(Back.size(), Records.size());
    for (size_t I = 0; I < Records.size(); ++I)
      expectSame(Records[I], Back[I], I);
    // Two readers at once, each from the start.
    MemoryRecordStream::Reader A(S), B(S);
    MemoryRecord RA, RB;
    ASSERT_TRUE(A.next(RA) && A.next(RA) && B.next(RB));
    expectSame(Records[0], RB, 0);
    expectSame(Records[1], RA, 1);
  }
  MemoryRecord R;
  EXPECT_FALSE(MemoryRecordStream().reader().next(R));
  EXPECT_FALSE(MemoryRecordStream(0).reader().next(R));
}

TEST(TraceRecords, KinetoMemoryEventsTakeAQuarterOfTheirStructs) {
  std::mt19937_64 Rng(11);
  std::vector<MemoryRecord> Records = kinetoLike(100000, Rng);
  MemoryRecordStream S(0);
  for (const MemoryRecord &R : Records)
    S.append(R);
  const double PerRecord = static_cast<double>(S.bytes()) / static_cast<double>(S.size());
  std::printf("kineto-like memory records: %.2f bytes each encoded, %zu as a struct\n",
              PerRecord, sizeof(MemoryRecord));
  EXPECT_LE(PerRecord, sizeof(MemoryRecord) / 4.0);
  std::vector<MemoryRecord> Back = readAll(S);
  ASSERT_EQ(Back.size(), Records.size());
  for (size_t I = 0; I < Records.size(); ++I)
    expectSame(Records[I], Back[I], I);
}

TEST(TraceRecords, TimeSortIsStableSortsOrder) {
  // Runs already in time order, with equal times across and inside runs (the addresses
  // tell the records apart): merged up to 64 runs, sorted by batches past that.
  for (size_t Runs : {1, 2, 3, 8, 63, 64, 65, 300}) {
    std::mt19937_64 Rng(Runs);
    std::vector<MemoryRecord> Records = kinetoLike(6000, Rng);
    for (size_t I = 0; I < Records.size(); ++I)
      Records[I].Ts = std::floor(Records[I].Ts / 40.0); // ties
    // Split into runs: each starts again from a time in [0, 10) (so runs start on ties
    // with each other) and climbs from there.
    const size_t PerRun = Records.size() / Runs;
    for (size_t Run = 0; Run * PerRun < Records.size(); ++Run) {
      const size_t First = Run * PerRun, End = std::min(Records.size(), First + PerRun);
      const double Start = Records[First].Ts, Base = static_cast<double>(Rng() % 10);
      for (size_t I = First; I < End; ++I)
        Records[I].Ts = Base + (Records[I].Ts - Start);
    }
    std::vector<MemoryRecord> Want = Records;
    std::stable_sort(Want.begin(), Want.end(),
                     [](const MemoryRecord &A, const MemoryRecord &B) { return A.Ts < B.Ts; });
    // Encoded (with the switch from structs in the middle of a run), and as structs; the
    // encoded runs read back from the temporary file, where memory holds 200 bytes. Past
    // 64 runs, sorted in batches: one, 120 batches merged in one pass and a last merge,
    // and 858 of 7 records merged in two passes and a last merge.
    for (size_t Batch : {MemoryRecordStream::DefaultSortBatch, size_t(50), size_t(7)})
    for (size_t Memory : {size_t(0), size_t(200)})
    for (size_t Limit : {size_t(0), size_t(2500), DefaultPlainLimit}) {
      SCOPED_TRACE("memory limit " + std::to_string(Memory) + ", batch " +
                   std::to_string(Batch));
      MemoryRecordStream S(Limit, Memory);
      for (const MemoryRecord &R : Records)
        S.append(R);
      std::string Why;
      ASSERT_TRUE(S.sortByTime(Why, Batch)) << Why;
      std::vector<MemoryRecord> Got = readAll(S);
      ASSERT_EQ(Got.size(), Want.size()) << Runs << " runs";
      size_t Wrong = 0;
      for (size_t I = 0; I < Want.size(); ++I)
        Wrong += std::bit_cast<uint64_t>(Want[I].Ts) != std::bit_cast<uint64_t>(Got[I].Ts) ||
                 Want[I].Addr != Got[I].Addr || Want[I].Bytes != Got[I].Bytes ||
                 Want[I].TotalAllocated != Got[I].TotalAllocated ||
                 Want[I].TotalReserved != Got[I].TotalReserved || Want[I].Tid != Got[I].Tid;
      EXPECT_EQ(Wrong, 0u) << Runs << " runs, limit " << Limit;
      // Sorted again: nothing moves.
      ASSERT_TRUE(S.sortByTime(Why)) << Why;
      Got = readAll(S);
      ASSERT_EQ(Got.size(), Want.size());
      for (size_t I = 0; I < Want.size(); ++I)
        ASSERT_EQ(Want[I].Addr, Got[I].Addr) << Runs << " runs, record " << I;
    }
  }
}

TEST(TraceRecords, OperatorsReadBackBitForBit) {
  std::vector<OperatorRecord> Ops = {
      {0.0, 0.0, 0, 0},
      {-0.0, -0.0, 1, 1},
      {1623212756351.123, 15.123, 1, 2},
      {1623212756361.5, 0.001, 1, 2},
      {1623212756361.5, 1e-4, 1, 3},   // not whole nanoseconds
      {1e15, std::nan(""), 2, 3},
      {1e15, std::numeric_limits<double>::infinity(), 2, 4},
      {-5.0, -15.0, std::numeric_limits<uint32_t>::max(), std::numeric_limits<uint32_t>::max()},
      {7.0, 9007199254740.993, 3, 5}, // 2^53 nanoseconds and more: kept as its bits
      {8.0, 0.1 + 0.2, 3, 5},         // a double no three-decimal text parses to
  };
  std::mt19937_64 Rng(3);
  double Ts = 1623212756351.0;
  for (int I = 0; I < 5000; ++I) {
    Ts += static_cast<double>(Rng() % 100000) / 1000.0;
    const double Dur = Rng() % 4 == 0 ? std::bit_cast<double>(Rng() & ~(uint64_t(0x7ff) << 52))
                                      : static_cast<double>(Rng() % 10000000) / 1000.0;
    Ops.push_back({Ts, Dur, static_cast<uint32_t>(Rng() % 3), static_cast<uint32_t>(Rng() % 400)});
  }
  for (size_t Memory : {size_t(0), size_t(100)})
  for (size_t Limit : {size_t(0), size_t(1000), DefaultPlainLimit}) {
    SCOPED_TRACE("memory limit " + std::to_string(Memory));
    OperatorStream S(Limit, Memory);
    for (const OperatorRecord &R : Ops)
      S.append(R);
    ASSERT_EQ(S.size(), Ops.size());
    EXPECT_EQ(S.encoded(), Limit < Ops.size()) << "limit " << Limit;
    OperatorStream::Reader From(S);
    size_t I = 0;
    for (OperatorRecord R; From.next(R); ++I) {
      ASSERT_LT(I, Ops.size());
      EXPECT_EQ(std::bit_cast<uint64_t>(Ops[I].Ts), std::bit_cast<uint64_t>(R.Ts)) << I;
      EXPECT_EQ(std::bit_cast<uint64_t>(Ops[I].Dur), std::bit_cast<uint64_t>(R.Dur)) << I;
      EXPECT_EQ(Ops[I].Tid, R.Tid) << I;
      EXPECT_EQ(Ops[I].Name, R.Name) << I;
    }
    EXPECT_EQ(I, Ops.size());
    S.clear();
    EXPECT_EQ(S.size(), 0u);
    EXPECT_EQ(S.bytes(), 0u);
    OperatorRecord R;
    EXPECT_FALSE(OperatorStream::Reader(S).next(R));
  }
}

TEST(TraceRecords, KinetoOperatorsTakeUnderAThirdOfTheirStructs) {
  // Operators a few microseconds apart on one thread, durations in whole nanoseconds.
  std::mt19937_64 Rng(13);
  OperatorStream S(0);
  double Ts = 1623212756351.123;
  for (int I = 0; I < 100000; ++I) {
    Ts += static_cast<double>(Rng() % 30000) / 1000.0;
    S.append({Ts, static_cast<double>(Rng() % 20000) / 1000.0, Rng() % 50 == 0 ? 2u : 1u,
              static_cast<uint32_t>(Rng() % 100)});
  }
  const double PerRecord = static_cast<double>(S.bytes()) / static_cast<double>(S.size());
  std::printf("kineto-like operators: %.2f bytes each encoded, %zu as a struct\n", PerRecord,
              sizeof(OperatorRecord));
  EXPECT_LE(PerRecord, sizeof(OperatorRecord) / 3.0);
}

TEST(TraceRecords, IntervalsReadBackBitForBit) {
  std::vector<IntervalRecord> Intervals = {
      {0.0, 0.0},
      {-0.0, 1e-300},
      {1e15, 1e15},
      {-5.0, -15.0}, // an end before its start: kept as given
      {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()},
      {1623212756351.123, std::nan("")},
      {std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::max()},
  };
  std::mt19937_64 Rng(5);
  double Ts = 1623212756351.0;
  for (int I = 0; I < 5000; ++I) {
    Ts += static_cast<double>(Rng() % 100000) / 1000.0;
    Intervals.push_back({Ts, Rng() % 4 == 0 ? std::bit_cast<double>(Rng())
                                            : Ts + static_cast<double>(Rng() % 10000000) / 1e3});
  }
  for (size_t Memory : {size_t(0), size_t(1), size_t(64)}) {
    IntervalStream S(0, Memory);
    for (const IntervalRecord &R : Intervals)
      S.append(R);
    EXPECT_EQ(S.spilledBytes() > 0, Memory > 0);
    IntervalStream::Reader From(S);
    size_t I = 0;
    for (IntervalRecord R; From.next(R); ++I) {
      ASSERT_LT(I, Intervals.size());
      EXPECT_EQ(std::bit_cast<uint64_t>(Intervals[I].Ts), std::bit_cast<uint64_t>(R.Ts)) << I;
      EXPECT_EQ(std::bit_cast<uint64_t>(Intervals[I].End), std::bit_cast<uint64_t>(R.End)) << I;
    }
    EXPECT_EQ(I, Intervals.size()) << "memory limit " << Memory;
    EXPECT_TRUE(From.failed().empty()) << From.failed();
  }
  // Kineto-like ranges (microseconds with three decimals, microseconds long) take under
  // half their 16-byte structs.
  IntervalStream S(0, 0);
  for (size_t I = 7; I < Intervals.size(); ++I)
    if (std::isfinite(Intervals[I].End) && Intervals[I].End >= Intervals[I].Ts &&
        Intervals[I].End - Intervals[I].Ts < 1e4)
      S.append(Intervals[I]);
  ASSERT_GT(S.size(), 3000u);
  const double PerRecord = static_cast<double>(S.bytes()) / static_cast<double>(S.size());
  std::printf("kineto-like ranges: %.2f bytes each encoded, %zu as a struct\n", PerRecord,
              sizeof(IntervalRecord));
  EXPECT_LE(PerRecord, sizeof(IntervalRecord) / 2.0);
}

TEST(TraceRecords, RecordsStayInMemoryWhereNoTemporaryFileCanBeMade) {
  // TMPDIR names no folder: the stream keeps its bytes in memory, as without a limit,
  // and reads them all back.
  const char *Was = std::getenv("TMPDIR");
  const std::string Saved = Was ? Was : "";
  ::setenv("TMPDIR", "/nonexistent/trainmem-no-such-folder", 1);
  std::mt19937_64 Rng(17);
  std::vector<MemoryRecord> Records = kinetoLike(20000, Rng);
  MemoryRecordStream S(0, 256);
  for (const MemoryRecord &R : Records)
    S.append(R);
  if (Was)
    ::setenv("TMPDIR", Saved.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
  EXPECT_EQ(S.spilledBytes(), 0u);
  std::vector<MemoryRecord> Back = readAll(S);
  ASSERT_EQ(Back.size(), Records.size());
  for (size_t I = 0; I < Records.size(); ++I)
    expectSame(Records[I], Back[I], I);
}

TEST(TraceRecords, RecordsStayInMemoryWhenTheTemporaryFileCannotGrow) {
  // The process may write files of 64 KiB at most (RLIMIT_FSIZE, with SIGXFSZ ignored, as
  // a full disk would): the spill that passes that fails, possibly after writing part of
  // its bytes, and the stream keeps the rest in memory. Every record reads back, the first
  // ones from the file.
  rlimit Was{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &Was), 0);
  constexpr rlim_t Cap = 64 << 10;
  if (Was.rlim_max != RLIM_INFINITY && Was.rlim_max < Cap)
    GTEST_SKIP() << "the file size limit is already under 64 KiB";
  std::mt19937_64 Rng(19);
  std::vector<MemoryRecord> Records = kinetoLike(30000, Rng);
  MemoryRecordStream S(0, 4096);
  {
    auto *OldHandler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit Small = Was;
    Small.rlim_cur = Cap;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &Small), 0);
    for (const MemoryRecord &R : Records)
      S.append(R);
    ::setrlimit(RLIMIT_FSIZE, &Was);
    std::signal(SIGXFSZ, OldHandler);
  }
  EXPECT_GT(S.spilledBytes(), 0u);
  EXPECT_LE(S.spilledBytes(), Cap);
  EXPECT_GT(S.bytes(), 2 * Cap); // most of it stayed in memory
  std::vector<MemoryRecord> Back = readAll(S);
  ASSERT_EQ(Back.size(), Records.size());
  for (size_t I = 0; I < Records.size(); ++I)
    expectSame(Records[I], Back[I], I);
}
