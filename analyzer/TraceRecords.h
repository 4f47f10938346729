//===- TraceRecords.h - a trace's memory events and operators, encoded -*- C++ -*-===//
//
// What a Chrome-trace import keeps of every memory event and operator until the end of
// the file: the events must be sorted by time and placed in phases that are known only
// once the whole file is read. Kept as plain structs they were most of a long trace's
// import memory (48 bytes a memory event, 24 an operator: 3 M and 2 M of them, 190 of the
// 270 MB, in a 1.17 GB trace). Here each is a header and the fields that changed, as
// differences from the record before, each in as few whole bytes as it needs; the header
// says how many, so a reader takes each field with one unaligned load and a mask instead
// of a branch per byte (`BM_MemoryRecordStream`: 6-7 ns a record read back, against 24 ns
// with every field LEB128 through llvm/Support/LEB128.h, which the rare fields still
// use). Nothing is lost: a record reads back bit for bit. Past a memory limit (4 MiB a
// stream for an import) the encoded bytes go to an unnamed temporary file and are read
// back through a window, so a trace ten times as long takes no more memory. The phases'
// ranges are kept the same way.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_TRACERECORDS_H
#define TRAINMEM_ANALYZER_TRACERECORDS_H

#include "llvm/ADT/SmallVector.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace trainmem::trace {

/// What a record holds for a missing Total Allocated or Total Reserved.
inline constexpr int64_t Absent = std::numeric_limits<int64_t>::min();

/// One `[memory]` event.
struct MemoryRecord {
  double Ts = 0;
  int64_t Bytes = 0;
  int64_t TotalAllocated = Absent;
  int64_t TotalReserved = Absent;
  uint64_t Addr = 0; ///< 0 when absent
  uint32_t Tid = 0;
};

/// One operator ("X" event of category cpu_op or Operator); Name indexes the importer's
/// interned names.
struct OperatorRecord {
  double Ts = 0, Dur = 0;
  uint32_t Tid = 0, Name = 0;
};

class SpillFile;

/// Bytes grown by realloc (in place, or remapped, where a large buffer can be: no copy
/// into fresh pages) with room to spare past the end: the readers load eight bytes at a
/// time, and the writers store eight and keep what the field needs. Not a SmallVector,
/// which has no notion of that slack.
///
/// Given a memory limit, the bytes past it go to an unnamed temporary file (SpillFile)
/// instead of memory: each time the buffer would grow past the limit, what it holds is
/// written out and the buffer starts again, so the file holds the first bytes and memory
/// the last, split between two records. A long trace's import then keeps as much in
/// memory however long the trace is. Where no file can be made or written, the bytes stay
/// in memory, as without a limit.
class RecordBytes {
public:
  /// MemoryLimit 0: everything in memory.
  explicit RecordBytes(size_t MemoryLimit = 0);
  RecordBytes(RecordBytes &&) noexcept;
  RecordBytes &operator=(RecordBytes &&) noexcept;
  ~RecordBytes();

  /// Room for N more bytes and the slack past them.
  uint8_t *reserveTail(size_t N) {
    if (Size + N + Slack > Capacity)
      makeRoom(N);
    return Data.get() + Size;
  }
  void commit(size_t N) { Size += N; }
  /// The bytes held in memory: those from spilled() on.
  const uint8_t *data() const { return Data.get(); }
  size_t size() const { return Size; }
  /// The bytes written to the file: the first ones.
  uint64_t spilled() const { return Spilled; }
  /// All the bytes: where the next one goes.
  uint64_t offset() const { return Spilled + Size; }
  bool empty() const { return offset() == 0; }
  size_t memoryLimit() const { return Limit; }
  void clear() { *this = RecordBytes(Limit); }
  /// Reads N bytes at Offset (below spilled()) into Into; false, with the reason in Why,
  /// where the file cannot be read back. Safe from several threads at once.
  bool readSpilled(uint64_t Offset, uint8_t *Into, size_t N, std::string &Why) const;

  static constexpr size_t Slack = 8;

private:
  void makeRoom(size_t N);
  void grow(size_t AtLeast);
  bool spill();
  struct Free {
    void operator()(uint8_t *P) const { std::free(P); }
  };
  std::unique_ptr<uint8_t, Free> Data;
  size_t Size = 0, Capacity = 0;
  size_t Limit;
  uint64_t Spilled = 0;
  std::unique_ptr<SpillFile> File;
};

/// Memory records, each written as its difference from the record before: a 16-bit
/// header of field lengths and flags, then the fields that changed (TraceRecords.cpp).
struct MemoryCodec {
  using Record = MemoryRecord;
  /// What the record before left.
  struct State {
    uint64_t TsBits = 0; ///< the time's bits: positive doubles order as their bits do
    int64_t Allocated = 0, Reserved = 0;
    uint64_t Addr = 0;
    uint32_t Tid = 0;
  };
  /// A header, four words and two LEB128 values.
  static constexpr size_t MaxBytes = 2 + 4 * 8 + 2 * 10;
  /// Writes R at Out (MaxBytes and RecordBytes::Slack of room); returns the bytes kept.
  static size_t encode(const Record &R, State &S, uint8_t *Out);
  /// Reads the record at P; returns where the next starts.
  static const uint8_t *decode(const uint8_t *P, State &S, Record &R);
};

/// Operators, alike: a header byte, the time's step and the duration, then the thread
/// where it changed and the name.
struct OperatorCodec {
  using Record = OperatorRecord;
  struct State {
    uint64_t TsBits = 0;
    uint32_t Tid = 0;
  };
  static constexpr size_t MaxBytes = 1 + 2 * 8 + 2 * 5;
  static size_t encode(const Record &R, State &S, uint8_t *Out);
  static const uint8_t *decode(const uint8_t *P, State &S, Record &R);
};

/// A range of time, [Ts, End]: a phase's operator (a backward range per backward
/// operator, in a long trace) or a --trace-window range.
struct IntervalRecord {
  double Ts = 0, End = 0;
};

/// Intervals: a header byte of two length codes, the start's step and the end's bits'
/// step from the start's (7 bytes or so, against 16).
struct IntervalCodec {
  using Record = IntervalRecord;
  struct State {
    uint64_t TsBits = 0;
  };
  static constexpr size_t MaxBytes = 1 + 2 * 8;
  static size_t encode(const Record &R, State &S, uint8_t *Out);
  static const uint8_t *decode(const uint8_t *P, State &S, Record &R);
};

/// Records kept as structs before a stream encodes them all: 64 Ki, 3 MB of memory records
/// or 1.5 MB of operators, which no trace needs to save. Structs cost nothing to write and
/// read back, encoded records a few nanoseconds each: a warm import of a trace with 60 k
/// memory events and 40 k operators, all encoded, measured 4-5% slower (bench/HISTORY.md).
inline constexpr size_t DefaultPlainLimit = size_t(1) << 16;

/// Encoded bytes a stream keeps in memory; past that they go to a temporary file
/// (RecordBytes). 4 MiB: about 350 k memory records or 700 k operators, more than the
/// fixtures' traces have; a 1.17 GB trace's 36 MB of memory records are then nine writes,
/// and reading them back from the page cache costs a few milliseconds a pass.
inline constexpr size_t DefaultMemoryLimit = size_t(4) << 20;

/// Records in the order added. The first PlainLimit are kept as structs; past that, all
/// are encoded (memory records 5-8 bytes each for the fixtures' kineto events, 12 for the
/// synthetic trace's random addresses, against 48; operators about 6, against 24), so a
/// long trace's records take a fraction of the memory, and past MemoryLimit bytes of them
/// (0: no limit) the earlier ones go to a temporary file. sortByTime puts them in time
/// order.
template <typename Codec> class RecordStream {
public:
  using Record = typename Codec::Record;

  explicit RecordStream(size_t PlainLimit = DefaultPlainLimit,
                        size_t MemoryLimit = DefaultMemoryLimit)
      : PlainLimit(PlainLimit), Encoded(MemoryLimit) {}

  void append(const Record &R) {
    if (Encoded.empty() && Plain.size() < PlainLimit) {
      Plain.push_back(R);
      ++Count;
      return;
    }
    appendEncoded(R);
  }
  size_t size() const { return Count; }
  /// The bytes the records take, in memory and in the file.
  uint64_t bytes() const { return Plain.size() * sizeof(Record) + Encoded.offset(); }
  /// The bytes of them in the temporary file.
  uint64_t spilledBytes() const { return Encoded.spilled(); }
  bool encoded() const { return Plain.empty() && Count > 0; }
  /// Lets the records go; the limits stay.
  void clear() { *this = RecordStream(PlainLimit, Encoded.memoryLimit()); }
  /// Stably by time (records of equal times keep the order they were added in). Kineto
  /// writes a device's memory events in one or two runs already in time order: up to 64
  /// runs are merged (encoded records without decoding them all into structs). Past that,
  /// batches of Batch records are sorted in memory and written out in turn, and the
  /// batches merged, 64 at a time, so that memory stays bounded however disordered the
  /// records are. False, with the reason in Why, where records kept in the temporary file
  /// cannot be read back (the stream then still holds every record, not yet in order).
  bool sortByTime(std::string &Why, size_t Batch = DefaultSortBatch);
  /// Records sorted in memory at a time past 64 runs: 128 Ki, 6 MiB of memory records.
  static constexpr size_t DefaultSortBatch = size_t(1) << 17;

  /// Reads the records in order. Any number of readers may read one stream at once, each
  /// with a window of its own onto the records in the file. next() says false at the end
  /// and where the file cannot be read back: failed() then says why.
  class Reader {
  public:
    explicit Reader(const RecordStream &S)
        : Reader(S.Encoded, 0, S.Plain.empty() ? S.Count : 0, typename Codec::State()) {
      Plain = S.Plain.data();
      PlainEnd = S.Plain.data() + S.Plain.size();
    }
    /// The next record into R; false past the last, or on a read error.
    bool next(Record &R) {
      if (Plain != PlainEnd) {
        R = *Plain++;
        return true;
      }
      if (Left == 0)
        return false;
      if (P >= Refill && !refill()) [[unlikely]]
        return false;
      --Left;
      P = Codec::decode(P, State, R);
      return true;
    }
    /// Why the records stopped short: empty unless the temporary file failed.
    const std::string &failed() const { return Why; }

  private:
    friend class RecordStream;
    /// Reads Left records from byte Offset, the first decoded from S.
    Reader(const RecordBytes &Bytes, uint64_t Offset, size_t Left,
           const typename Codec::State &S);
    /// Moves on where P nears Refill: the window onto the file read on (the bytes of a
    /// record it cut kept), or, the file done, on to the bytes in memory.
    bool refill();

    const RecordBytes *Bytes;
    const Record *Plain = nullptr, *PlainEnd = nullptr;
    /// Decoding is at P; refill() is due at Refill: a record's most bytes before the
    /// window's end, the window's end once the file is read, or the bytes' end in memory.
    const uint8_t *P = nullptr, *Refill = nullptr;
    size_t Left;
    typename Codec::State State;
    /// The window onto the file, while records are read from it.
    bool InFile = false;
    uint64_t FilePos = 0; ///< the next byte of the file to read into the window
    std::unique_ptr<uint8_t[]> Window;
    const uint8_t *WindowEnd = nullptr;
    std::string Why;
  };
  Reader reader() const { return Reader(*this); }

private:
  void appendEncoded(const Record &R);
  /// Appends runs [First, End) to Into, merged by time (the earlier run's record first on
  /// ties). False, with the reason in Why, where the file cannot be read back.
  bool mergeRuns(size_t First, size_t End, RecordStream &Into, std::string &Why) const;

  /// Where a run of encoded records in time order starts, with the state that decodes
  /// its first. Past RunsKept (MaxRuns, but for the streams sortByTime makes between its
  /// passes) only their number is kept: such a stream is sorted by batches.
  struct RunStart {
    uint64_t Offset;
    size_t Index;
    typename Codec::State State;
  };
  static constexpr size_t MaxRuns = 64;

  size_t PlainLimit;
  /// Grown by realloc (llvm::SmallVector does so for trivially copyable elements): a large
  /// buffer is then extended or remapped in place instead of copied into fresh pages.
  llvm::SmallVector<Record, 0> Plain;
  RecordBytes Encoded;
  size_t Count = 0;
  typename Codec::State State;
  double LastTs = 0;
  std::vector<RunStart> Runs; ///< of the encoded records, after the first
  size_t RunCount = 1;        ///< of the encoded records
  size_t RunsKept = MaxRuns;
};

extern template class RecordStream<MemoryCodec>;
extern template class RecordStream<OperatorCodec>;
extern template class RecordStream<IntervalCodec>;

using MemoryRecordStream = RecordStream<MemoryCodec>;
using OperatorStream = RecordStream<OperatorCodec>;
using IntervalStream = RecordStream<IntervalCodec>;

} // namespace trainmem::trace

#endif
