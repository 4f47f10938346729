//===- TraceRecords.cpp - a trace's memory events and operators, encoded --===//
#include "analyzer/TraceRecords.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/LEB128.h"
#include "llvm/Support/MemAlloc.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>

namespace trainmem::trace {

static_assert(std::endian::native == std::endian::little,
              "fields are stored and loaded as little-endian words");

/// An unnamed temporary file, written at its end and read anywhere (pread, so readers on
/// several threads need no lock): removed as soon as it is made, so that nothing is left
/// behind however the process ends. In the system's temporary folder (TMPDIR). LLVM's
/// file functions underneath; not llvm::sys::fs::TempFile, which keeps its name until it
/// is discarded, so a killed import would leave the file behind.
class SpillFile {
public:
  static std::unique_ptr<SpillFile> create() {
    int FD = -1;
    llvm::SmallString<128> Path;
    if (llvm::sys::fs::createTemporaryFile("trainmem-records", "bin", FD, Path))
      return nullptr;
    (void)llvm::sys::fs::remove(Path); // open, it lives on without a name
    return std::unique_ptr<SpillFile>(new SpillFile(FD));
  }
  ~SpillFile() {
    Out.close();
  }
  /// Writes N bytes at the end; false where they could not all be written.
  bool append(const uint8_t *P, size_t N) {
    Out.write(reinterpret_cast<const char *>(P), N);
    Out.flush();
    if (Out.has_error()) {
      Out.clear_error(); // else raw_fd_ostream's destructor aborts
      return false;
    }
    return true;
  }
  bool read(uint64_t Offset, uint8_t *Into, size_t N, std::string &Why) const {
    while (N > 0) {
      llvm::Expected<size_t> Got = llvm::sys::fs::readNativeFileSlice(
          FD, llvm::MutableArrayRef<char>(reinterpret_cast<char *>(Into), N), Offset);
      if (!Got) {
        Why = "reading back the trace's records from their temporary file: " +
              llvm::toString(Got.takeError());
        return false;
      }
      if (*Got == 0) {
        Why = "reading back the trace's records from their temporary file: it ended early";
        return false;
      }
      Into += *Got;
      Offset += *Got;
      N -= *Got;
    }
    return true;
  }

private:
  explicit SpillFile(int FD) : FD(FD), Out(FD, /*shouldClose=*/true, /*unbuffered=*/true) {}
  int FD;
  llvm::raw_fd_ostream Out;
};

RecordBytes::RecordBytes(size_t MemoryLimit) : Limit(MemoryLimit) {}
RecordBytes::RecordBytes(RecordBytes &&) noexcept = default;
RecordBytes &RecordBytes::operator=(RecordBytes &&) noexcept = default;
RecordBytes::~RecordBytes() = default;

void RecordBytes::makeRoom(size_t N) {
  // Past the limit, what memory holds goes to the file and the buffer starts again.
  if (Limit && Size > 0 && Size + N + Slack > Limit && spill() && N + Slack <= Capacity)
    return;
  grow(Size + N + Slack);
}

bool RecordBytes::spill() {
  if (!File)
    File = SpillFile::create();
  if (!File || !File->append(Data.get(), Size)) {
    // No file, or a full disk: the bytes stay in memory, as without a limit (bytes the
    // file holds past Spilled, from a write cut short, are never read).
    Limit = 0;
    return false;
  }
  Spilled += Size;
  Size = 0;
  return true;
}

bool RecordBytes::readSpilled(uint64_t Offset, uint8_t *Into, size_t N,
                              std::string &Why) const {
  assert(File && Offset + N <= Spilled && "only the spilled bytes are in the file");
  return File->read(Offset, Into, N, Why);
}

void RecordBytes::grow(size_t AtLeast) {
  size_t NewCapacity = std::max({AtLeast, 2 * Capacity, size_t(4096)});
  if (Limit) {
    // Never past the limit but for a record that needs it.
    NewCapacity = std::min(NewCapacity, std::max(AtLeast, Limit));
  } else {
    // From 1 MiB straight to 16 MiB: a block that size is mapped on its own (glibc's mmap
    // threshold, which the CLI fixes at 16 MiB), and pages it has not touched take no
    // memory. Doubling through 2, 4 and 8 MiB in the heap left those blocks there, freed
    // but resident, after each move (a 1.17 GB trace: ~15 MB of its peak RSS).
    constexpr size_t Mapped = size_t(16) << 20;
    if (NewCapacity > (size_t(1) << 20) && NewCapacity < Mapped)
      NewCapacity = Mapped;
  }
  void *P = llvm::safe_realloc(Data.get(), NewCapacity); // reports a failure, never null
  (void)Data.release();
  Data.reset(static_cast<uint8_t *>(P));
  Capacity = NewCapacity;
}

namespace {

// A field's length code (3 bits): 0-6 bytes, or 7 for all eight.
constexpr unsigned LengthOf[8] = {0, 1, 2, 3, 4, 5, 6, 8};
constexpr uint64_t MaskOf[8] = {0,          0xff,           0xffff,           0xffffff,
                                0xffffffff, 0xffffffffffull, 0xffffffffffffull, ~0ull};

unsigned lengthCode(uint64_t V) {
  const unsigned Bytes = (64 - static_cast<unsigned>(std::countl_zero(V)) + 7) / 8;
  return std::min(Bytes, 7u);
}

/// Stores V's low bytes that its code keeps: eight are written, the slack past the record
/// takes the rest until the next field overwrites them.
uint8_t *put(uint8_t *P, uint64_t V, unsigned Code) {
  std::memcpy(P, &V, sizeof V);
  return P + LengthOf[Code];
}

uint64_t take(const uint8_t *&P, unsigned Code) {
  uint64_t V;
  std::memcpy(&V, P, sizeof V);
  P += LengthOf[Code];
  return V & MaskOf[Code];
}

uint64_t zigzag(int64_t V) {
  return (static_cast<uint64_t>(V) << 1) ^ static_cast<uint64_t>(V >> 63);
}
int64_t unzigzag(uint64_t Z) { return static_cast<int64_t>((Z >> 1) ^ (0 - (Z & 1))); }

// Differences are taken modulo 2^64 and read back the same way, so any value survives.
int64_t minus(uint64_t A, uint64_t B) { return static_cast<int64_t>(A - B); }
uint64_t plus(uint64_t A, int64_t D) { return A + static_cast<uint64_t>(D); }

/// A time as the step of its bits from the last one's (zigzagged), which it replaces:
/// positive doubles order as their bits do, so close times differ in their low bits.
uint64_t timeStep(double Ts, uint64_t &LastBits) {
  const uint64_t Bits = std::bit_cast<uint64_t>(Ts);
  const uint64_t Step = zigzag(minus(Bits, LastBits));
  LastBits = Bits;
  return Step;
}
double timeAfter(uint64_t Step, uint64_t &LastBits) {
  LastBits = plus(LastBits, unzigzag(Step));
  return std::bit_cast<double>(LastBits);
}

// The values were written here, so the LEB128 decoders' bounds and overflow checks are
// not asked for (null end and error).
int64_t readSigned(const uint8_t *&P) {
  unsigned N;
  const int64_t V = llvm::decodeSLEB128(P, &N);
  P += N;
  return V;
}

uint64_t readUnsigned(const uint8_t *&P) {
  unsigned N;
  const uint64_t V = llvm::decodeULEB128(P, &N);
  P += N;
  return V;
}

// A memory record's 16-bit header: four 3-bit codes (the time's, Bytes', the address's
// and Total Reserved's steps), then flags. A changed Total Allocated and thread follow the
// fixed fields as LEB128: in kineto's traces the counter moves by each event's Bytes, and
// one thread allocates.
enum : uint16_t {
  TsShift = 0,
  BytesShift = 3,
  AddrShift = 6,     ///< Addr 0 (absent) is written as any address: the step to it
  ReservedShift = 9, ///< ReservedSame, a length (1-5 bytes, or 8) or ReservedAbsent
  AllocatedAbsent = 1 << 12,
  AllocatedPredicted = 1 << 13, ///< the last Total Allocated plus Bytes: nothing written
  SameTid = 1 << 14,
  /// Bytes and the address's step divided by 512 (CUDA's caching allocator rounds both).
  By512 = 1 << 15,
};

// Total Reserved's code: the same as the last one present, a step of 1-5 or 8 bytes, or
// absent (which leaves the last one present as it was).
constexpr unsigned ReservedSame = 0, ReservedAbsent = 7;
constexpr unsigned ReservedLengthOf[8] = {0, 1, 2, 3, 4, 5, 8, 0};
constexpr uint64_t ReservedMaskOf[8] = {0,          0xff,          0xffff, 0xffffff,
                                        0xffffffff, 0xffffffffffull, ~0ull, 0};

} // namespace

size_t MemoryCodec::encode(const MemoryRecord &R, State &S, uint8_t *Out) {
  uint16_t Header = 0;
  const uint64_t TsStep = timeStep(R.Ts, S.TsBits);
  int64_t Bytes = R.Bytes;
  int64_t AddrStep = minus(R.Addr, S.Addr);
  S.Addr = R.Addr;
  if (Bytes % 512 == 0 && AddrStep % 512 == 0) {
    Header |= By512;
    Bytes /= 512;
    AddrStep /= 512;
  }
  const uint64_t BytesCode = zigzag(Bytes), AddrCode = zigzag(AddrStep);
  const unsigned TsLen = lengthCode(TsStep), BytesLen = lengthCode(BytesCode),
                 AddrLen = lengthCode(AddrCode);
  uint8_t *P = Out + 2;
  P = put(P, TsStep, TsLen);
  P = put(P, BytesCode, BytesLen);
  P = put(P, AddrCode, AddrLen);
  unsigned Reserved = ReservedSame;
  if (R.TotalReserved == Absent) {
    Reserved = ReservedAbsent;
  } else if (R.TotalReserved != S.Reserved) {
    const uint64_t Step = zigzag(minus(static_cast<uint64_t>(R.TotalReserved),
                                       static_cast<uint64_t>(S.Reserved)));
    const unsigned Len = lengthCode(Step);
    Reserved = Len <= 5 ? Len : 6;
    std::memcpy(P, &Step, sizeof Step);
    P += ReservedLengthOf[Reserved];
    S.Reserved = R.TotalReserved;
  }
  Header |= static_cast<uint16_t>(TsLen << TsShift | BytesLen << BytesShift |
                                  AddrLen << AddrShift | Reserved << ReservedShift);
  if (R.TotalAllocated == Absent) {
    Header |= AllocatedAbsent;
  } else {
    const uint64_t Predicted = plus(static_cast<uint64_t>(S.Allocated), R.Bytes);
    if (static_cast<uint64_t>(R.TotalAllocated) == Predicted)
      Header |= AllocatedPredicted;
    else
      P += llvm::encodeSLEB128(minus(static_cast<uint64_t>(R.TotalAllocated), Predicted), P);
    S.Allocated = R.TotalAllocated;
  }
  if (R.Tid == S.Tid) {
    Header |= SameTid;
  } else {
    P += llvm::encodeULEB128(R.Tid, P);
    S.Tid = R.Tid;
  }
  std::memcpy(Out, &Header, sizeof Header);
  return static_cast<size_t>(P - Out);
}

const uint8_t *MemoryCodec::decode(const uint8_t *P, State &S, MemoryRecord &R) {
  uint16_t Header;
  std::memcpy(&Header, P, sizeof Header);
  P += 2;
  R.Ts = timeAfter(take(P, Header >> TsShift & 7), S.TsBits);
  const int64_t Scale = Header & By512 ? 512 : 1;
  R.Bytes = unzigzag(take(P, Header >> BytesShift & 7)) * Scale;
  S.Addr = plus(S.Addr, unzigzag(take(P, Header >> AddrShift & 7)) * Scale);
  R.Addr = S.Addr;
  const unsigned Reserved = Header >> ReservedShift & 7;
  if (Reserved == ReservedAbsent) {
    R.TotalReserved = Absent;
  } else {
    if (Reserved != ReservedSame) {
      uint64_t Step;
      std::memcpy(&Step, P, sizeof Step);
      P += ReservedLengthOf[Reserved];
      S.Reserved = static_cast<int64_t>(
          plus(static_cast<uint64_t>(S.Reserved), unzigzag(Step & ReservedMaskOf[Reserved])));
    }
    R.TotalReserved = S.Reserved;
  }
  if (Header & AllocatedAbsent) {
    R.TotalAllocated = Absent;
  } else {
    uint64_t V = plus(static_cast<uint64_t>(S.Allocated), R.Bytes);
    if (!(Header & AllocatedPredicted))
      V = plus(V, readSigned(P));
    R.TotalAllocated = S.Allocated = static_cast<int64_t>(V);
  }
  if (!(Header & SameTid))
    S.Tid = static_cast<uint32_t>(readUnsigned(P));
  R.Tid = S.Tid;
  return P;
}

namespace {

// An operator's header byte: the time's step and the duration's length codes, then flags.
// The thread (when it changes) and the name follow as LEB128.
enum : uint8_t {
  OpTsShift = 0,
  OpDurShift = 3,
  OpSameTid = 1 << 6,
  /// Dur is a whole number of nanoseconds, written as that number; else its bits.
  OpDurNanos = 1 << 7,
};

} // namespace

size_t OperatorCodec::encode(const OperatorRecord &R, State &S, uint8_t *Out) {
  uint8_t Header = 0;
  const uint64_t TsStep = timeStep(R.Ts, S.TsBits);
  // Kineto writes durations in microseconds with three decimals: their nanoseconds are a
  // whole number whose quotient by 1000 gives the same double back (the division is
  // correctly rounded, as the parse of the decimal text was).
  uint64_t Dur = std::bit_cast<uint64_t>(R.Dur);
  const double Nanos = R.Dur * 1000.0;
  if (Nanos >= 0 && Nanos < 0x1p53) {
    const uint64_t N = static_cast<uint64_t>(Nanos + 0.5);
    if (std::bit_cast<uint64_t>(static_cast<double>(N) / 1000.0) == Dur) {
      Header |= OpDurNanos;
      Dur = N;
    }
  }
  const unsigned TsLen = lengthCode(TsStep), DurLen = lengthCode(Dur);
  uint8_t *P = put(Out + 1, TsStep, TsLen);
  P = put(P, Dur, DurLen);
  Header |= static_cast<uint8_t>(TsLen << OpTsShift | DurLen << OpDurShift);
  if (R.Tid == S.Tid) {
    Header |= OpSameTid;
  } else {
    P += llvm::encodeULEB128(R.Tid, P);
    S.Tid = R.Tid;
  }
  P += llvm::encodeULEB128(R.Name, P);
  *Out = Header;
  return static_cast<size_t>(P - Out);
}

const uint8_t *OperatorCodec::decode(const uint8_t *P, State &S, OperatorRecord &R) {
  const uint8_t Header = *P++;
  R.Ts = timeAfter(take(P, Header >> OpTsShift & 7), S.TsBits);
  const uint64_t Dur = take(P, Header >> OpDurShift & 7);
  R.Dur = Header & OpDurNanos ? static_cast<double>(Dur) / 1000.0 : std::bit_cast<double>(Dur);
  if (!(Header & OpSameTid))
    S.Tid = static_cast<uint32_t>(readUnsigned(P));
  R.Tid = S.Tid;
  R.Name = static_cast<uint32_t>(readUnsigned(P));
  return P;
}

size_t IntervalCodec::encode(const IntervalRecord &R, State &S, uint8_t *Out) {
  const uint64_t TsStep = timeStep(R.Ts, S.TsBits);
  const uint64_t Length = zigzag(minus(std::bit_cast<uint64_t>(R.End), S.TsBits));
  const unsigned TsLen = lengthCode(TsStep), LengthLen = lengthCode(Length);
  uint8_t *P = put(Out + 1, TsStep, TsLen);
  P = put(P, Length, LengthLen);
  *Out = static_cast<uint8_t>(TsLen | LengthLen << 3);
  return static_cast<size_t>(P - Out);
}

const uint8_t *IntervalCodec::decode(const uint8_t *P, State &S, IntervalRecord &R) {
  const uint8_t Header = *P++;
  R.Ts = timeAfter(take(P, Header & 7), S.TsBits);
  R.End = std::bit_cast<double>(plus(S.TsBits, unzigzag(take(P, Header >> 3 & 7))));
  return P;
}

template <typename Codec> void RecordStream<Codec>::appendEncoded(const Record &R) {
  if (!Plain.empty()) {
    // Past the limit: the records so far are encoded first, and the structs let go.
    llvm::SmallVector<Record, 0> Kept;
    Kept.swap(Plain);
    Count = 0;
    for (const Record &K : Kept)
      appendEncoded(K);
  }
  if (Count > 0 && R.Ts < LastTs) {
    if (++RunCount <= RunsKept)
      Runs.push_back({Encoded.offset(), Count, State});
  }
  LastTs = R.Ts;
  Encoded.commit(Codec::encode(R, State, Encoded.reserveTail(Codec::MaxBytes)));
  ++Count;
}

namespace {

/// Sorts records by time, stably, merging the runs already in order pairwise (the same
/// order as std::stable_sort's, in n log(runs) rather than n log n: sorting was a fifth of
/// a 100 MB trace's import).
template <typename Record> void sortPlain(llvm::SmallVectorImpl<Record> &Records) {
  auto Earlier = [](const Record &A, const Record &B) { return A.Ts < B.Ts; };
  std::vector<size_t> Bounds{0}; // where each run starts, and the end
  for (size_t I = 1; I < Records.size(); ++I)
    if (Earlier(Records[I], Records[I - 1]))
      Bounds.push_back(I);
  Bounds.push_back(Records.size());
  if (Bounds.size() > 65) {
    std::stable_sort(Records.begin(), Records.end(), Earlier);
    return;
  }
  while (Bounds.size() > 2) {
    std::vector<size_t> Merged{0};
    size_t K = 0;
    for (; K + 2 < Bounds.size(); K += 2) {
      std::inplace_merge(Records.begin() + static_cast<long>(Bounds[K]),
                         Records.begin() + static_cast<long>(Bounds[K + 1]),
                         Records.begin() + static_cast<long>(Bounds[K + 2]), Earlier);
      Merged.push_back(Bounds[K + 2]);
    }
    if (Merged.back() != Bounds.back())
      Merged.push_back(Bounds.back()); // an odd run out: carried to the next round
    Bounds = std::move(Merged);
  }
}

} // namespace

template <typename Codec>
RecordStream<Codec>::Reader::Reader(const RecordBytes &Bytes, uint64_t Offset, size_t Left,
                                    const typename Codec::State &S)
    : Bytes(&Bytes), Left(Left), State(S) {
  if (Offset < Bytes.spilled()) {
    // P == Refill (both null): the first next() reads the window.
    InFile = true;
    FilePos = Offset;
  } else {
    P = Bytes.data() + (Offset - Bytes.spilled());
    Refill = Bytes.data() + Bytes.size(); // never reached: Left ends first
  }
}

template <typename Codec> bool RecordStream<Codec>::Reader::refill() {
  if (!InFile) {
    Why = "a record stream read past its end"; // cannot happen: Left ends first
    Left = 0;
    return false;
  }
  const size_t Tail = static_cast<size_t>(WindowEnd - P); // a record cut by the window
  const uint64_t FileEnd = Bytes->spilled();
  if (FilePos == FileEnd) {
    if (Tail > 0) { // the last records of the file, whole: read to the window's end
      Refill = WindowEnd;
      return true;
    }
    // The file ends between two records: on to the bytes in memory.
    InFile = false;
    Window.reset();
    P = Bytes->data();
    Refill = Bytes->data() + Bytes->size();
    return true;
  }
  // A window of up to 256 KiB (one pread each: the syscall is nothing beside decoding
  // 20 k records), smaller with a small memory limit, down to what lets tests cross
  // every boundary: never under a record and its cut predecessor.
  const size_t WindowBytes =
      std::clamp(Bytes->memoryLimit(), 4 * Codec::MaxBytes, size_t(256) << 10);
  if (!Window)
    Window.reset(new uint8_t[WindowBytes + RecordBytes::Slack]()); // zeroed: loads past a
                                                                    // field read set bytes
  if (Tail > 0)
    std::memmove(Window.get(), P, Tail);
  const size_t N =
      static_cast<size_t>(std::min<uint64_t>(WindowBytes - Tail, FileEnd - FilePos));
  if (!Bytes->readSpilled(FilePos, Window.get() + Tail, N, Why)) {
    Left = 0;
    return false;
  }
  FilePos += N;
  P = Window.get();
  WindowEnd = P + Tail + N;
  Refill = FilePos == FileEnd ? WindowEnd : WindowEnd - Codec::MaxBytes;
  return true;
}

template <typename Codec>
bool RecordStream<Codec>::mergeRuns(size_t First, size_t End, RecordStream &Into,
                                    std::string &Why) const {
  // Each run's next record; the earliest is taken, the first run's on ties (stable).
  struct Head {
    Reader From;
    Record R;
    bool Live;
  };
  std::vector<Head> Heads;
  Heads.reserve(End - First);
  for (size_t K = First; K < End; ++K) {
    // Run 0 starts the stream; run K > 0 at Runs[K - 1].
    const uint64_t Offset = K == 0 ? 0 : Runs[K - 1].Offset;
    const size_t Index = K == 0 ? 0 : Runs[K - 1].Index;
    const size_t Next = K < Runs.size() ? Runs[K].Index : Count;
    Heads.push_back({Reader(Encoded, Offset, Next - Index,
                            K == 0 ? typename Codec::State() : Runs[K - 1].State),
                     {},
                     false});
    Heads.back().Live = Heads.back().From.next(Heads.back().R);
  }
  while (true) {
    Head *Best = nullptr;
    for (Head &H : Heads)
      if (H.Live && (!Best || H.R.Ts < Best->R.Ts))
        Best = &H;
    if (!Best)
      break; // every run read (or one ended early: its reader says why)
    Into.append(Best->R);
    Best->Live = Best->From.next(Best->R);
  }
  for (const Head &H : Heads)
    if (!H.From.failed().empty()) {
      Why = H.From.failed();
      return false;
    }
  return true;
}

template <typename Codec>
bool RecordStream<Codec>::sortByTime(std::string &Why, size_t Batch) {
  if (!Plain.empty()) {
    sortPlain(Plain);
    return true;
  }
  if (RunCount == 1)
    return true;
  const size_t Memory = Encoded.memoryLimit();
  // Streams between passes: every record encoded, every run's start kept (they are few).
  auto Between = [&] {
    RecordStream S(/*PlainLimit=*/0, Memory);
    S.RunsKept = std::numeric_limits<size_t>::max();
    return S;
  };
  if (RunCount > MaxRuns) {
    // Too many runs to merge at once, and only the first ones' starts were kept: batches
    // of Batch records, sorted in memory, are written out in turn, which leaves a run or
    // less per batch. Stable: a batch keeps its ties' order, and the merges below prefer
    // the earlier run.
    RecordStream Batched = Between();
    llvm::SmallVector<Record, 0> Some;
    Some.reserve(std::min(Batch, Count));
    Reader From(*this);
    for (bool More = true; More;) {
      Some.clear();
      Record R;
      while (Some.size() < Batch && (More = From.next(R)))
        Some.push_back(R);
      std::stable_sort(Some.begin(), Some.end(),
                       [](const Record &A, const Record &B) { return A.Ts < B.Ts; });
      for (const Record &K : Some)
        Batched.append(K);
    }
    if (!From.failed().empty()) {
      Why = From.failed();
      return false;
    }
    Batched.PlainLimit = PlainLimit;
    Batched.RunsKept = RunsKept;
    *this = std::move(Batched);
    // More than MaxRuns batches (8 Mi records out of order, with the default batch):
    // each pass merges MaxRuns runs into one.
    while (RunCount > MaxRuns) {
      RecordStream Merged = Between();
      for (size_t First = 0; First < RunCount; First += MaxRuns)
        if (!mergeRuns(First, std::min(RunCount, First + MaxRuns), Merged, Why))
          return false;
      Merged.PlainLimit = PlainLimit;
      Merged.RunsKept = RunsKept;
      *this = std::move(Merged);
    }
    if (RunCount == 1)
      return true;
  }
  RecordStream Sorted(/*PlainLimit=*/0, Memory);
  Sorted.Encoded.reserveTail(static_cast<size_t>(
      std::min<uint64_t>(Encoded.offset(), Memory ? Memory : Encoded.offset())));
  if (!mergeRuns(0, RunCount, Sorted, Why))
    return false;
  Sorted.PlainLimit = PlainLimit;
  *this = std::move(Sorted);
  return true;
}

template class RecordStream<MemoryCodec>;
template class RecordStream<OperatorCodec>;
template class RecordStream<IntervalCodec>;

} // namespace trainmem::trace
