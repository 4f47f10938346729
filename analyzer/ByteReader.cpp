//===- ByteReader.cpp - trace files in chunks, gunzipped on the way --------===//
//
// The file side of TraceStream.h: plain files read in chunks, gzip inflated as it is read
// (concatenated members continue the stream; corrupt, truncated and decompression-bomb
// input are errors naming the file), and a second thread that inflates ahead (and, given a
// scanner, parses ahead between chunks).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TraceStream.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Threading.h"

#include <zlib.h>
#ifdef TRAINMEM_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include <algorithm>
#include <cstring>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace trainmem {

namespace {

// A decompression bomb: more than this many output bytes per input byte, once the output
// is past MinBombBytes. Chrome traces compress 10-30x; repetitive ones reach ~100x.
constexpr uint64_t MaxExpansion = 1000;
constexpr uint64_t MinBombBytes = uint64_t(256) << 20;

llvm::Error fileError(llvm::StringRef Path, const llvm::Twine &Message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 (Path + ": " + Message).str());
}

/// ByteReader::nextInto for a reader whose next() fills its own buffer Out: Buffer is lent
/// to it as Out for the call, so the chunk lands in Buffer without a copy; bytes handed
/// out from elsewhere (zlib taking over from ISA-L) are copied.
template <typename Reader>
llvm::Expected<size_t> nextLending(Reader &R, ChunkBuffer &Out, ChunkBuffer &Buffer) {
  if (Buffer.size() < Out.size())
    Buffer.resize(Out.size());
  std::swap(Out, Buffer);
  auto C = R.next();
  std::swap(Out, Buffer);
  if (!C)
    return C.takeError();
  if (!C->empty() && C->data() != Buffer.data()) {
    if (Buffer.size() < C->size())
      Buffer.resize(C->size());
    std::memcpy(Buffer.data(), C->data(), C->size());
  }
  return C->size();
}

class PlainReader : public ByteReader {
public:
  PlainReader(llvm::sys::fs::file_t F, std::string Path, size_t ChunkBytes)
      : File(F), Path(std::move(Path)) {
    Buffer.resize(std::max<size_t>(ChunkBytes, 1));
  }
  ~PlainReader() override { llvm::sys::fs::closeFile(File); }

  llvm::Expected<llvm::StringRef> next() override {
    auto N = llvm::sys::fs::readNativeFile(File, llvm::MutableArrayRef<char>(Buffer.data(), Buffer.size()));
    if (!N)
      return fileError(Path, "read failed: " + llvm::toString(N.takeError()));
    Read += *N;
    return llvm::StringRef(Buffer.data(), *N);
  }
  llvm::Expected<size_t> nextInto(ChunkBuffer &Into) override {
    return nextLending(*this, Buffer, Into);
  }
  uint64_t fileBytesRead() const override { return Read; }
  bool compressed() const override { return false; }

  /// Reads raw file bytes for the gzip reader.
  llvm::Expected<size_t> readRaw(char *Into, size_t Bytes) {
    auto N = llvm::sys::fs::readNativeFile(File, llvm::MutableArrayRef<char>(Into, Bytes));
    if (!N)
      return fileError(Path, "read failed: " + llvm::toString(N.takeError()));
    Read += *N;
    return *N;
  }

private:
  llvm::sys::fs::file_t File;
  std::string Path;
  ChunkBuffer Buffer;
  uint64_t Read = 0;
};

// zlib directly: LLVM's compression API inflates whole buffers only.
class GzipReader : public ByteReader {
public:
  GzipReader(std::unique_ptr<PlainReader> Raw, std::string Path, size_t ChunkBytes)
      : Raw(std::move(Raw)), Path(std::move(Path)) {
    In.resize(std::max<size_t>(ChunkBytes, 1));
    Out.resize(std::max<size_t>(ChunkBytes, 1));
    Stream.zalloc = Z_NULL;
    Stream.zfree = Z_NULL;
    Stream.opaque = Z_NULL;
    Ready = inflateInit2(&Stream, 16 + MAX_WBITS) == Z_OK;
  }
  ~GzipReader() override {
    if (Ready)
      inflateEnd(&Stream);
  }

  llvm::Expected<llvm::StringRef> next() override {
    if (!Ready)
      return fileError(Path, "cannot initialise zlib");
    while (true) {
      if (Stream.avail_in == 0) {
        auto N = Raw->readRaw(In.data(), In.size());
        if (!N)
          return N.takeError();
        if (*N == 0) {
          if (!MemberOpen)
            return llvm::StringRef();
          return fileError(Path, "truncated gzip stream (ends inside compressed data)");
        }
        Stream.next_in = reinterpret_cast<Bytef *>(In.data());
        Stream.avail_in = static_cast<uInt>(*N);
      }
      if (!MemberOpen) {
        // Concatenated gzip members continue the same stream.
        if (inflateReset(&Stream) != Z_OK)
          return fileError(Path, "cannot reset zlib");
        MemberOpen = true;
      }
      Stream.next_out = reinterpret_cast<Bytef *>(Out.data());
      Stream.avail_out = static_cast<uInt>(Out.size());
      int Rc = inflate(&Stream, Z_NO_FLUSH);
      if (Rc != Z_OK && Rc != Z_STREAM_END && Rc != Z_BUF_ERROR)
        return fileError(Path, llvm::formatv("corrupt gzip data near compressed byte {0}: {1}",
                                             Raw->fileBytesRead() - Stream.avail_in,
                                             Stream.msg ? Stream.msg : "inflate failed"));
      if (Rc == Z_STREAM_END)
        MemberOpen = false;
      size_t Produced = Out.size() - Stream.avail_out;
      Total += Produced;
      if (Total > MinBombBytes && Total / std::max<uint64_t>(Raw->fileBytesRead(), 1) >
                                      MaxExpansion)
        return fileError(Path, llvm::formatv("gzip expands more than {0}x ({1} bytes from {2}); "
                                             "refusing a likely decompression bomb",
                                             MaxExpansion, Total, Raw->fileBytesRead()));
      if (Produced)
        return llvm::StringRef(Out.data(), Produced);
      if (Rc == Z_BUF_ERROR && Stream.avail_in != 0)
        return fileError(Path, "corrupt gzip data (inflate made no progress)");
    }
  }
  llvm::Expected<size_t> nextInto(ChunkBuffer &Buffer) override {
    return nextLending(*this, Out, Buffer);
  }
  uint64_t fileBytesRead() const override { return Raw->fileBytesRead(); }
  bool compressed() const override { return true; }

private:
  std::unique_ptr<PlainReader> Raw;
  std::string Path;
  ChunkBuffer In, Out;
  z_stream Stream{};
  bool Ready = false;
  bool MemberOpen = false;
  uint64_t Total = 0;
};

#ifdef TRAINMEM_HAVE_ISAL
/// ISA-L's igzip inflates the same gzip 2-3x as fast as zlib (table-driven multi-symbol
/// Huffman decoding, SIMD CRC), which keeps the inflating thread ahead of the parser.
/// It only ever hands out bytes zlib would hand out: on anything but a clean end (an
/// error, a truncated file, a stalled stream, the decompression-bomb limit) zlib inflates
/// the file again from its start, skips what was handed out already and carries on in
/// its place, so every error, its wording and its byte position are zlib's, as before.
class IsalGzipReader : public ByteReader {
public:
  IsalGzipReader(std::unique_ptr<PlainReader> Raw, std::string Path, size_t ChunkBytes)
      : Raw(std::move(Raw)), Path(std::move(Path)), ChunkBytes(std::max<size_t>(ChunkBytes, 1)) {
    In.resize(this->ChunkBytes);
    Out.resize(this->ChunkBytes);
    isal_inflate_init(&State);
  }

  llvm::Expected<llvm::StringRef> next() override {
    if (Zlib)
      return nextFromZlib();
    while (true) {
      if (State.avail_in == 0) {
        auto N = Raw->readRaw(In.data(), In.size());
        if (!N)
          return N.takeError();
        if (*N == 0)
          return MemberOpen ? handOverToZlib() : llvm::StringRef();
        State.next_in = reinterpret_cast<uint8_t *>(In.data());
        State.avail_in = static_cast<uint32_t>(*N);
      }
      if (!MemberOpen) {
        // Concatenated gzip members continue the same stream.
        isal_inflate_reset(&State);
        State.crc_flag = ISAL_GZIP;
        MemberOpen = true;
      }
      State.next_out = reinterpret_cast<uint8_t *>(Out.data());
      State.avail_out = static_cast<uint32_t>(Out.size());
      const uint32_t InBefore = State.avail_in;
      if (isal_inflate(&State) != ISAL_DECOMP_OK)
        return handOverToZlib();
      if (State.block_state == ISAL_BLOCK_FINISH)
        MemberOpen = false;
      const size_t Produced = Out.size() - State.avail_out;
      const uint64_t After = Total + Produced;
      if (After > MinBombBytes &&
          After / std::max<uint64_t>(Raw->fileBytesRead(), 1) > MaxExpansion)
        return handOverToZlib();
      Total = After;
      if (Produced)
        return llvm::StringRef(Out.data(), Produced);
      if (MemberOpen && State.avail_in == InBefore)
        return handOverToZlib();
    }
  }
  // ISA-L keeps its own history (the output buffer is only written), so each call may
  // inflate into a different buffer.
  llvm::Expected<size_t> nextInto(ChunkBuffer &Buffer) override {
    return nextLending(*this, Out, Buffer);
  }
  uint64_t fileBytesRead() const override {
    return Zlib ? Zlib->fileBytesRead() : Raw->fileBytesRead();
  }
  bool compressed() const override { return true; }

private:
  llvm::Expected<llvm::StringRef> handOverToZlib() {
    auto F = llvm::sys::fs::openNativeFileForRead(Path);
    if (!F)
      return fileError(Path, "cannot open: " + llvm::toString(F.takeError()));
    Zlib = std::make_unique<GzipReader>(std::make_unique<PlainReader>(*F, Path, ChunkBytes),
                                        Path, ChunkBytes);
    Skip = Total;
    return nextFromZlib();
  }
  llvm::Expected<llvm::StringRef> nextFromZlib() {
    while (true) {
      auto C = Zlib->next();
      if (!C || Skip == 0 || C->empty())
        return C;
      const size_t Drop = static_cast<size_t>(std::min<uint64_t>(Skip, C->size()));
      Skip -= Drop;
      if (Drop < C->size())
        return C->drop_front(Drop);
    }
  }

  std::unique_ptr<PlainReader> Raw;
  std::string Path;
  size_t ChunkBytes;
  ChunkBuffer In, Out;
  inflate_state State;
  bool MemberOpen = false;
  uint64_t Total = 0;
  std::unique_ptr<GzipReader> Zlib; ///< set once zlib has taken over
  uint64_t Skip = 0;                ///< bytes zlib still repeats of what was handed out
};
#endif

/// Answers the end, or the first error, again on every later call, as PrefetchReader does:
/// the gzip readers used without it (one core) went on inflating after an error and
/// answered a different one.
class StickyEndReader : public ByteReader {
public:
  explicit StickyEndReader(std::unique_ptr<ByteReader> Inner) : Inner(std::move(Inner)) {}
  llvm::Expected<llvm::StringRef> next() override {
    if (Error)
      return llvm::createStringError(llvm::inconvertibleErrorCode(), *Error);
    if (Ended)
      return llvm::StringRef();
    auto C = Inner->next();
    if (!C) {
      Error = llvm::toString(C.takeError());
      return llvm::createStringError(llvm::inconvertibleErrorCode(), *Error);
    }
    Ended = C->empty();
    return C;
  }
  uint64_t fileBytesRead() const override { return Inner->fileBytesRead(); }
  bool compressed() const override { return Inner->compressed(); }

private:
  std::unique_ptr<ByteReader> Inner;
  std::optional<std::string> Error;
  bool Ended = false;
};

/// Inflates (or reads) on a second thread while the caller parses: inflating and the JSON
/// scan overlap. The worker fills a few chunk-sized slots ahead; each chunk handed out stays
/// valid until the next call, as ByteReader promises.
///
/// With a scanner the same thread also parses ahead: between chunks it keeps InflateAhead
/// of them ready for the consumer, it scans chunks the consumer has not reached (from the
/// one after the consumer's), and the consumer picks up its results. A chunk is claimed
/// once: by the worker's scan, or by the consumer when it gets there first; a consumer
/// reaching a chunk being scanned halts the scan at its next event and reads on from
/// there, as it does when it finds no chunk ready while a scan runs (the worker then
/// inflates). Inflating and scanning on separate threads, as this did first, ran three
/// threads on two cores: the scheduler kept the two parsers on one core half the time
/// while the inflater's short bursts held the other (perf sched), 1.5-1.7 cores busy.
class PrefetchReader : public ByteReader {
public:
  PrefetchReader(std::unique_ptr<ByteReader> Inner, ChunkScanner Scan)
      : Inner(std::move(Inner)), IsCompressed(this->Inner->compressed()), Scan(std::move(Scan)),
        Slots(this->Scan ? 10 : 4), Sizes(Slots.size()), Claims(Slots.size(), Claim::None),
        Scans(Slots.size()),
        Halt(new std::atomic<bool>[Slots.size()]()) {
    for (size_t I = 0; I < Slots.size(); ++I)
      Free.push_back(I);
    if (this->Scan)
      Worker = std::thread([this] { inflateAndScan(); });
    else
      Worker = std::thread([this] { run(); });
  }
  ~PrefetchReader() override {
    {
      std::lock_guard<std::mutex> Guard(Lock);
      Stop = true;
    }
    Changed.notify_all();
    Worker.join();
  }

  llvm::Expected<llvm::StringRef> next() override {
    std::unique_lock<std::mutex> Guard(Lock);
    Current = nullptr;
    if (Held) {
      // The chunk handed out last is done with; its scan is kept for reuse.
      if (Scans[*Held])
        Spare.push_back(std::move(Scans[*Held]));
      Claims[*Held] = Claim::None;
      Free.push_back(*Held);
      Held.reset();
      Changed.notify_all();
    }
    if (Ready.empty() && Scanning >= 0) {
      // Nothing ready and the worker scanning ahead: it stops at the next event and
      // inflates the chunk wanted here.
      Halt[static_cast<size_t>(Scanning)].store(true, std::memory_order_relaxed);
    }
    Changed.wait(Guard, [this] { return !Ready.empty(); });
    if (Ready.front().Slot < 0) {
      // The end or an error: the worker has stopped, and it stays at the front, so
      // every later call answers the same.
      if (Ready.front().Error)
        return llvm::createStringError(llvm::inconvertibleErrorCode(), *Ready.front().Error);
      return llvm::StringRef();
    }
    const size_t Slot = static_cast<size_t>(Ready.front().Slot);
    if (Claims[Slot] == Claim::Helper) {
      // The worker is still scanning it: it stops at the next event, and the consumer reads on
      // from there.
      Halt[Slot].store(true, std::memory_order_relaxed);
      Changed.wait(Guard, [&] { return Claims[Slot] != Claim::Helper; });
    }
    if (Claims[Slot] == Claim::Scanned)
      Current = Scans[Slot].get();
    else
      Claims[Slot] = Claim::Consumer;
    ConsumedBytes = Ready.front().FileBytes;
    ConsumerNext = Ready.front().Seq + 1;
    Ready.pop_front();
    Held = Slot;
    Changed.notify_all(); // the worker's lower bound for scanning moved
    return llvm::StringRef(Slots[Slot].data(), Sizes[Slot]);
  }
  uint64_t fileBytesRead() const override { return ConsumedBytes; }
  bool compressed() const override { return IsCompressed; }
  const ChunkScan *currentScan() const override { return Current; }

private:
  struct Chunk {
    int Slot = -1; ///< -1: the end (or an error)
    uint64_t FileBytes = 0;
    uint64_t Seq = 0; ///< the chunk's place in the stream: 0, 1, 2, ...
    std::optional<std::string> Error;
  };
  enum class Claim : uint8_t { None, Helper, Scanned, Consumer };

  /// Inflates (or reads) the next chunk into Slot outside the lock and queues it; false
  /// after the end or an error, which stay at the queue's front. Called with Guard held.
  bool inflateInto(size_t Slot, uint64_t Seq, std::unique_lock<std::mutex> &Guard) {
    Guard.unlock();
    Chunk C;
    C.Seq = Seq;
    auto Size = Inner->nextInto(Slots[Slot]);
    if (!Size)
      C.Error = llvm::toString(Size.takeError());
    else if (*Size) {
      Sizes[Slot] = *Size;
      C.Slot = static_cast<int>(Slot);
    }
    C.FileBytes = Inner->fileBytesRead();
    const bool Last = C.Slot < 0;
    Guard.lock();
    if (Last)
      Free.push_back(Slot);
    Ready.push_back(std::move(C));
    Changed.notify_all();
    return !Last;
  }

  /// The worker without a scanner: fill every free slot in order.
  void run() {
    std::unique_lock<std::mutex> Guard(Lock);
    for (uint64_t Seq = 0;; ++Seq) {
      Changed.wait(Guard, [this] { return Stop || !Free.empty(); });
      if (Stop)
        return;
      const size_t Slot = Free.front();
      Free.pop_front();
      if (!inflateInto(Slot, Seq, Guard))
        return;
    }
  }

  /// The worker with a scanner: inflate while fewer than InflateAhead chunks wait for the
  /// consumer, else scan the first unclaimed chunk past the consumer's, else inflate
  /// further ahead while slots are free.
  void inflateAndScan() {
    constexpr size_t InflateAhead = 2;
    std::unique_lock<std::mutex> Guard(Lock);
    uint64_t Seq = 0;
    bool Ended = false;
    while (true) {
      const Chunk *Target = nullptr;
      bool Inflate = false;
      Changed.wait(Guard, [&] {
        if (Stop)
          return true;
        const bool CanInflate = !Ended && !Free.empty();
        if (CanInflate && Ready.size() < InflateAhead) {
          Inflate = true;
          return true;
        }
        const uint64_t From = ConsumerNext + 1;
        for (const Chunk &C : Ready)
          if (C.Slot >= 0 && C.Seq >= From && Claims[static_cast<size_t>(C.Slot)] == Claim::None) {
            Target = &C;
            return true;
          }
        Inflate = CanInflate;
        return Inflate;
      });
      if (Stop)
        return;
      if (Inflate) {
        const size_t Slot = Free.front();
        Free.pop_front();
        Ended = !inflateInto(Slot, Seq++, Guard);
        continue;
      }
      const size_t Slot = static_cast<size_t>(Target->Slot);
      Claims[Slot] = Claim::Helper;
      Halt[Slot].store(false, std::memory_order_relaxed);
      Scanning = static_cast<int>(Slot);
      std::unique_ptr<ChunkScan> Result;
      if (!Spare.empty()) {
        Result = std::move(Spare.back());
        Spare.pop_back();
      }
      Guard.unlock();
      Scan(llvm::StringRef(Slots[Slot].data(), Sizes[Slot]), Result, Halt[Slot]);
      Guard.lock();
      Scanning = -1;
      Scans[Slot] = std::move(Result);
      Claims[Slot] = Claim::Scanned;
      Changed.notify_all();
    }
  }

  std::unique_ptr<ByteReader> Inner;
  const bool IsCompressed;
  const ChunkScanner Scan;
  std::vector<ChunkBuffer> Slots; ///< filled by Inner->nextInto, which may swap them
  std::vector<size_t> Sizes;            ///< the bytes of each slot's chunk
  std::vector<Claim> Claims;                    ///< per slot, under Lock
  std::vector<std::unique_ptr<ChunkScan>> Scans; ///< per slot: the worker's scan
  std::vector<std::unique_ptr<ChunkScan>> Spare; ///< results handed back, for reuse
  std::unique_ptr<std::atomic<bool>[]> Halt;     ///< per slot: the consumer has got there
  std::mutex Lock;
  std::condition_variable Changed;
  std::deque<size_t> Free;
  std::deque<Chunk> Ready;
  std::optional<size_t> Held;
  uint64_t ConsumerNext = 0; ///< Seq of the chunk the consumer takes next
  const ChunkScan *Current = nullptr;
  uint64_t ConsumedBytes = 0;
  int Scanning = -1; ///< the slot the worker is scanning, -1 when none
  bool Stop = false;
  std::thread Worker;
};

} // namespace

ByteReader::~ByteReader() = default;

llvm::Expected<size_t> ByteReader::nextInto(ChunkBuffer &Buffer) {
  auto C = next();
  if (!C)
    return C.takeError();
  if (Buffer.size() < C->size())
    Buffer.resize(C->size());
  std::memcpy(Buffer.data(), C->data(), C->size());
  return C->size();
}
ChunkScan::~ChunkScan() = default;

llvm::StringRef ByteReader::fastestInflater() {
#ifdef TRAINMEM_HAVE_ISAL
  return "isa-l";
#else
  return "zlib";
#endif
}

namespace {
/// ByteReader::open, with the read-ahead thread only where Ahead asks for it: peek() reads
/// a few kilobytes, which a thread to start and join made cost 0.2 ms a trace.
llvm::Expected<std::unique_ptr<ByteReader>> openReader(llvm::StringRef Path, size_t ChunkBytes,
                                                       ByteReader::Inflater Use,
                                                       ChunkScanner Scan, bool Ahead) {
  Ahead = Ahead && llvm::hardware_concurrency().compute_thread_count() > 1;
  if (llvm::sys::fs::is_directory(Path))
    return fileError(Path, "is a directory, not a trace file");
  char Magic[2] = {0, 0};
  size_t N = 0;
  {
    auto F = llvm::sys::fs::openNativeFileForRead(Path);
    if (!F)
      return fileError(Path, "cannot open: " + llvm::toString(F.takeError()));
    auto Got = llvm::sys::fs::readNativeFile(*F, llvm::MutableArrayRef<char>(Magic, 2));
    llvm::sys::fs::closeFile(*F);
    if (!Got)
      return fileError(Path, "read failed: " + llvm::toString(Got.takeError()));
    N = *Got;
  }
  auto F = llvm::sys::fs::openNativeFileForRead(Path);
  if (!F)
    return fileError(Path, "cannot open: " + llvm::toString(F.takeError()));
  auto Fresh = std::make_unique<PlainReader>(*F, Path.str(), ChunkBytes);
  if (N == 2 && static_cast<unsigned char>(Magic[0]) == 0x1f &&
      static_cast<unsigned char>(Magic[1]) == 0x8b) {
    std::unique_ptr<ByteReader> Gzip;
#ifdef TRAINMEM_HAVE_ISAL
    if (Use == ByteReader::Inflater::Fastest)
      Gzip = std::make_unique<IsalGzipReader>(std::move(Fresh), Path.str(), ChunkBytes);
#else
    (void)Use;
#endif
    if (!Gzip)
      Gzip = std::make_unique<GzipReader>(std::move(Fresh), Path.str(), ChunkBytes);
    if (Ahead)
      return std::make_unique<PrefetchReader>(std::move(Gzip), std::move(Scan));
    return std::make_unique<StickyEndReader>(std::move(Gzip));
  }
  if (Scan && Ahead)
    return std::make_unique<PrefetchReader>(std::move(Fresh), std::move(Scan));
  return std::unique_ptr<ByteReader>(std::move(Fresh));
}
} // namespace

llvm::Expected<std::unique_ptr<ByteReader>>
ByteReader::open(llvm::StringRef Path, size_t ChunkBytes, Inflater Use, ChunkScanner Scan) {
  return openReader(Path, ChunkBytes, Use, std::move(Scan), /*Ahead=*/true);
}

llvm::Expected<std::string> ByteReader::peek(llvm::StringRef Path, size_t Bytes) {
  // Chunks of the size wanted: a megabyte would inflate that much (and, read ahead on a
  // second thread, four times that) only to look at the first few kilobytes.
  auto R = openReader(Path, std::max<size_t>(Bytes, 1), Inflater::Fastest, nullptr,
                      /*Ahead=*/false);
  if (!R)
    return R.takeError();
  std::string Head;
  while (Head.size() < Bytes) {
    auto C = (*R)->next();
    if (!C)
      return C.takeError();
    if (C->empty())
      break;
    Head += C->take_front(Bytes - Head.size()).str();
  }
  return Head;
}

} // namespace trainmem
