//===- ByteReader.cpp - trace files in chunks, gunzipped on the way --------===//
//
// The file side of TraceStream.h: plain files read in chunks, gzip inflated as it is read
// (concatenated members continue the stream; corrupt, truncated and decompression-bomb
// input are errors naming the file), and a second thread that inflates ahead.
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
#include <array>
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

class PlainReader : public ByteReader {
public:
  PlainReader(llvm::sys::fs::file_t F, std::string Path, size_t ChunkBytes)
      : File(F), Path(std::move(Path)) {
    Buffer.resize(std::max<size_t>(ChunkBytes, 1));
  }
  ~PlainReader() override { llvm::sys::fs::closeFile(File); }

  llvm::Expected<llvm::StringRef> next() override {
    auto N = llvm::sys::fs::readNativeFile(File, llvm::MutableArrayRef<char>(Buffer));
    if (!N)
      return fileError(Path, "read failed: " + llvm::toString(N.takeError()));
    Read += *N;
    return llvm::StringRef(Buffer.data(), *N);
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
  std::vector<char> Buffer;
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
  uint64_t fileBytesRead() const override { return Raw->fileBytesRead(); }
  bool compressed() const override { return true; }

private:
  std::unique_ptr<PlainReader> Raw;
  std::string Path;
  std::vector<char> In, Out;
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
  std::vector<char> In, Out;
  inflate_state State;
  bool MemberOpen = false;
  uint64_t Total = 0;
  std::unique_ptr<GzipReader> Zlib; ///< set once zlib has taken over
  uint64_t Skip = 0;                ///< bytes zlib still repeats of what was handed out
};
#endif

/// Inflates on a second thread while the caller parses: zlib's inflate and the JSON scan
/// take about as long as each other, so overlapping them nearly halves a gzipped trace's
/// import. The worker fills a few chunk-sized slots ahead; each chunk handed out stays
/// valid until the next call, as ByteReader promises.
class PrefetchReader : public ByteReader {
public:
  explicit PrefetchReader(std::unique_ptr<ByteReader> Inner)
      : Inner(std::move(Inner)), IsCompressed(this->Inner->compressed()) {
    for (size_t I = 0; I < Slots.size(); ++I)
      Free.push_back(I);
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
    if (Held) {
      Free.push_back(*Held); // the chunk handed out last is done with
      Held.reset();
      Changed.notify_all();
    }
    Changed.wait(Guard, [this] { return !Ready.empty(); });
    if (Ready.front().Slot < 0) {
      // The end or an error: the worker has stopped, and it stays at the front, so
      // every later call answers the same.
      if (Ready.front().Error)
        return llvm::createStringError(llvm::inconvertibleErrorCode(), *Ready.front().Error);
      return llvm::StringRef();
    }
    Chunk C = std::move(Ready.front());
    Ready.pop_front();
    Held = static_cast<size_t>(C.Slot);
    ConsumedBytes = C.FileBytes;
    return llvm::StringRef(Slots[*Held]);
  }
  uint64_t fileBytesRead() const override { return ConsumedBytes; }
  bool compressed() const override { return IsCompressed; }

private:
  struct Chunk {
    int Slot = -1; ///< -1: the end (or an error)
    uint64_t FileBytes = 0;
    std::optional<std::string> Error;
  };

  void run() {
    while (true) {
      size_t Slot;
      {
        std::unique_lock<std::mutex> Guard(Lock);
        Changed.wait(Guard, [this] { return Stop || !Free.empty(); });
        if (Stop)
          return;
        Slot = Free.front();
        Free.pop_front();
      }
      Chunk C;
      auto Data = Inner->next();
      if (!Data)
        C.Error = llvm::toString(Data.takeError());
      else if (!Data->empty()) {
        Slots[Slot].assign(Data->data(), Data->size());
        C.Slot = static_cast<int>(Slot);
      }
      C.FileBytes = Inner->fileBytesRead();
      const bool Last = C.Slot < 0;
      {
        std::lock_guard<std::mutex> Guard(Lock);
        Ready.push_back(std::move(C));
      }
      Changed.notify_all();
      if (Last)
        return;
    }
  }

  std::unique_ptr<ByteReader> Inner;
  const bool IsCompressed;
  std::array<std::string, 4> Slots;
  std::mutex Lock;
  std::condition_variable Changed;
  std::deque<size_t> Free;
  std::deque<Chunk> Ready;
  std::optional<size_t> Held;
  uint64_t ConsumedBytes = 0;
  bool Stop = false;
  std::thread Worker;
};

} // namespace

ByteReader::~ByteReader() = default;

llvm::StringRef ByteReader::fastestInflater() {
#ifdef TRAINMEM_HAVE_ISAL
  return "isa-l";
#else
  return "zlib";
#endif
}

llvm::Expected<std::unique_ptr<ByteReader>> ByteReader::open(llvm::StringRef Path,
                                                            size_t ChunkBytes, Inflater Use) {
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
    if (Use == Inflater::Fastest)
      Gzip = std::make_unique<IsalGzipReader>(std::move(Fresh), Path.str(), ChunkBytes);
#else
    (void)Use;
#endif
    if (!Gzip)
      Gzip = std::make_unique<GzipReader>(std::move(Fresh), Path.str(), ChunkBytes);
    if (llvm::hardware_concurrency().compute_thread_count() > 1)
      return std::make_unique<PrefetchReader>(std::move(Gzip));
    return Gzip;
  }
  return std::unique_ptr<ByteReader>(std::move(Fresh));
}

llvm::Expected<std::string> ByteReader::peek(llvm::StringRef Path, size_t Bytes) {
  auto R = open(Path);
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
