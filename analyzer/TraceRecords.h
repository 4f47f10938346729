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
// use). Nothing is lost: a record reads back bit for bit.
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

/// Bytes grown by realloc (in place, or remapped, where a large buffer can be: no copy
/// into fresh pages) with room to spare past the end: the readers load eight bytes at a
/// time, and the writers store eight and keep what the field needs. Not a SmallVector,
/// which has no notion of that slack.
class RecordBytes {
public:
  /// Room for N more bytes and the slack past them.
  uint8_t *reserveTail(size_t N) {
    if (Size + N + Slack > Capacity)
      grow(Size + N + Slack);
    return Data.get() + Size;
  }
  void commit(size_t N) { Size += N; }
  const uint8_t *data() const { return Data.get(); }
  size_t size() const { return Size; }
  bool empty() const { return Size == 0; }
  void clear() { *this = RecordBytes(); }

  static constexpr size_t Slack = 8;

private:
  void grow(size_t AtLeast);
  struct Free {
    void operator()(uint8_t *P) const { std::free(P); }
  };
  std::unique_ptr<uint8_t, Free> Data;
  size_t Size = 0, Capacity = 0;
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

/// Records kept as structs before a stream encodes them all: 64 Ki, 3 MB of memory records
/// or 1.5 MB of operators, which no trace needs to save. Structs cost nothing to write and
/// read back, encoded records a few nanoseconds each: a warm import of a trace with 60 k
/// memory events and 40 k operators, all encoded, measured 4-5% slower (bench/HISTORY.md).
inline constexpr size_t DefaultPlainLimit = size_t(1) << 16;

/// Records in the order added. The first PlainLimit are kept as structs; past that, all
/// are encoded (memory records 5-8 bytes each for the fixtures' kineto events, 12 for the
/// synthetic trace's random addresses, against 48; operators about 6, against 24), so a
/// long trace's records take a fraction of the memory. sortByTime puts them in time order.
template <typename Codec> class RecordStream {
public:
  using Record = typename Codec::Record;

  explicit RecordStream(size_t PlainLimit = DefaultPlainLimit) : PlainLimit(PlainLimit) {}

  void append(const Record &R) {
    if (Encoded.empty() && Plain.size() < PlainLimit) {
      Plain.push_back(R);
      ++Count;
      return;
    }
    appendEncoded(R);
  }
  size_t size() const { return Count; }
  /// The bytes the records take.
  size_t bytes() const { return Plain.size() * sizeof(Record) + Encoded.size(); }
  bool encoded() const { return Plain.empty() && Count > 0; }
  /// Lets the records go; the limit stays.
  void clear() { *this = RecordStream(PlainLimit); }
  /// Stably by time (records of equal times keep the order they were added in). Kineto
  /// writes a device's memory events in one or two runs already in time order: up to 64
  /// runs are merged (encoded records without decoding them all into structs), past that
  /// all are sorted.
  void sortByTime();

  /// Reads the records in order. Any number of readers may read one stream at once.
  class Reader {
  public:
    explicit Reader(const RecordStream &S)
        : Plain(S.Plain.data()), PlainEnd(S.Plain.data() + S.Plain.size()),
          P(S.Encoded.data()), Left(S.Plain.empty() ? S.Count : 0) {}
    /// The next record into R; false past the last.
    bool next(Record &R) {
      if (Plain != PlainEnd) {
        R = *Plain++;
        return true;
      }
      if (Left == 0)
        return false;
      --Left;
      P = Codec::decode(P, State, R);
      return true;
    }

  private:
    friend class RecordStream;
    Reader(const uint8_t *P, size_t Left, const typename Codec::State &S)
        : P(P), Left(Left), State(S) {}
    const Record *Plain = nullptr, *PlainEnd = nullptr;
    const uint8_t *P;
    size_t Left;
    typename Codec::State State;
  };
  Reader reader() const { return Reader(*this); }

private:
  void appendEncoded(const Record &R);

  /// Where a run of encoded records in time order starts, with the state that decodes
  /// its first. Past MaxRuns only their number is kept: such a stream is sorted whole.
  struct RunStart {
    size_t Offset, Index;
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
};

extern template class RecordStream<MemoryCodec>;
extern template class RecordStream<OperatorCodec>;

using MemoryRecordStream = RecordStream<MemoryCodec>;
using OperatorStream = RecordStream<OperatorCodec>;

} // namespace trainmem::trace

#endif
