//===- TraceStream.cpp - streamed reading of (gzipped) JSON traces --------===//
#include "analyzer/TraceStream.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Threading.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
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

/// The character a one-letter escape stands for ('"' for \"), or 0 for 'u' and bad ones.
char simpleEscape(int E) {
  switch (E) {
  case '"': return '"';
  case '\\': return '\\';
  case '/': return '/';
  case 'b': return '\b';
  case 'f': return '\f';
  case 'n': return '\n';
  case 'r': return '\r';
  case 't': return '\t';
  default: return 0;
  }
}

int hexDigit(int D) {
  if (D >= '0' && D <= '9')
    return D - '0';
  if (D >= 'a' && D <= 'f')
    return D - 'a' + 10;
  if (D >= 'A' && D <= 'F')
    return D - 'A' + 10;
  return -1;
}

/// A \u escape's code point as UTF-8. Names in traces are ASCII; other code points are
/// kept as UTF-8 (surrogate pairs become two replacement-free 3-byte sequences, which is
/// enough for display).
void appendCodePoint(std::string &S, unsigned Code) {
  if (Code < 0x80) {
    S += static_cast<char>(Code);
  } else if (Code < 0x800) {
    S += static_cast<char>(0xC0 | (Code >> 6));
    S += static_cast<char>(0x80 | (Code & 0x3F));
  } else {
    S += static_cast<char>(0xE0 | (Code >> 12));
    S += static_cast<char>(0x80 | ((Code >> 6) & 0x3F));
    S += static_cast<char>(0x80 | (Code & 0x3F));
  }
}

bool isNumberChar(char C) {
  return (C >= '0' && C <= '9') || C == '-' || C == '+' || C == '.' || C == 'e' || C == 'E';
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

llvm::Expected<std::unique_ptr<ByteReader>> ByteReader::open(llvm::StringRef Path,
                                                            size_t ChunkBytes) {
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
    auto Gzip = std::make_unique<GzipReader>(std::move(Fresh), Path.str(), ChunkBytes);
    if (llvm::hardware_concurrency().compute_thread_count() > 1)
      return std::make_unique<PrefetchReader>(std::move(Gzip));
    return std::unique_ptr<ByteReader>(std::move(Gzip));
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

JsonCursor::JsonCursor(std::unique_ptr<ByteReader> Reader, std::string Name)
    : Reader(std::move(Reader)), Name(std::move(Name)) {}

llvm::Error JsonCursor::error(const llvm::Twine &Message) const {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 llvm::formatv("{0}: byte {1}: {2}", Name, offset(), Message.str())
                                     .str());
}

llvm::Expected<bool> JsonCursor::fill() {
  if (Pos < Chunk.size())
    return true;
  if (AtEnd)
    return false;
  Consumed += Chunk.size();
  auto C = Reader->next();
  if (!C)
    return C.takeError();
  Chunk = *C;
  Pos = 0;
  if (Chunk.empty())
    AtEnd = true;
  return !Chunk.empty();
}

llvm::Expected<int> JsonCursor::get() {
  if (Pos >= Chunk.size()) {
    auto More = fill();
    if (!More)
      return More.takeError();
    if (!*More)
      return -1;
  }
  return static_cast<unsigned char>(Chunk[Pos++]);
}

llvm::Expected<char> JsonCursor::peekToken() {
  while (true) {
    if (Pos >= Chunk.size()) {
      auto More = fill();
      if (!More)
        return More.takeError();
      if (!*More)
        return 0;
    }
    char C = Chunk[Pos];
    if (C != ' ' && C != '\n' && C != '\r' && C != '\t')
      return C;
    ++Pos;
  }
}

llvm::Error JsonCursor::expect(char C) {
  auto T = peekToken();
  if (!T)
    return T.takeError();
  if (*T != C)
    return error(*T ? llvm::formatv("expected '{0}', found '{1}'", C, *T).str()
                    : llvm::formatv("expected '{0}', found the end of the file", C).str());
  ++Pos;
  return llvm::Error::success();
}

llvm::Expected<bool> JsonCursor::nextMember(char Close, bool First) {
  auto T = peekToken();
  if (!T)
    return T.takeError();
  if (*T == Close) {
    ++Pos;
    return false;
  }
  if (!First) {
    if (*T != ',')
      return error(*T ? llvm::formatv("expected ',' or '{0}', found '{1}'", Close, *T).str()
                      : llvm::formatv("expected ',' or '{0}', found the end of the file", Close)
                            .str());
    ++Pos;
  }
  auto Next = peekToken();
  if (!Next)
    return Next.takeError();
  if (*Next == 0)
    return error("unexpected end of the file");
  return true;
}

llvm::Error JsonCursor::readObject(llvm::function_ref<llvm::Error(llvm::StringRef)> Member) {
  if (llvm::Error E = expect('{'))
    return E;
  std::string Key; // keys are short: no allocation past the small-string buffer
  for (bool First = true;; First = false) {
    auto More = nextMember('}', First);
    if (!More)
      return More.takeError();
    if (!*More)
      return llvm::Error::success();
    if (llvm::Error E = readString(Key))
      return E;
    if (llvm::Error E = expect(':'))
      return E;
    if (llvm::Error E = Member(Key))
      return E;
  }
}

llvm::Error JsonCursor::readArray(llvm::function_ref<llvm::Error()> Element) {
  if (llvm::Error E = expect('['))
    return E;
  for (bool First = true;; First = false) {
    auto More = nextMember(']', First);
    if (!More)
      return More.takeError();
    if (!*More)
      return llvm::Error::success();
    if (llvm::Error E = Element())
      return E;
  }
}

llvm::Expected<std::string> JsonCursor::readString() {
  std::string S;
  if (llvm::Error E = readString(S))
    return E;
  return S;
}

llvm::Error JsonCursor::readString(std::string &S) {
  S.clear();
  if (llvm::Error E = expect('"'))
    return E;
  while (true) {
    // Copy runs of plain characters at once.
    size_t Start = Pos;
    while (Pos < Chunk.size() && Chunk[Pos] != '"' && Chunk[Pos] != '\\')
      ++Pos;
    S.append(Chunk.data() + Start, Pos - Start);
    auto C = get();
    if (!C)
      return C.takeError();
    if (*C < 0)
      return error("unterminated string");
    if (*C == '"')
      return llvm::Error::success();
    if (*C != '\\') {
      S += static_cast<char>(*C); // the run reached the chunk's end; get() refilled
      continue;
    }
    auto E = get();
    if (!E)
      return E.takeError();
    if (char Plain = simpleEscape(*E)) {
      S += Plain;
      continue;
    }
    if (*E != 'u')
      return error("bad escape in a string");
    unsigned Code = 0;
    for (int I = 0; I < 4; ++I) {
      auto H = get();
      if (!H)
        return H.takeError();
      int Digit = hexDigit(*H);
      if (Digit < 0)
        return error("bad \\u escape in a string");
      Code = Code << 4 | static_cast<unsigned>(Digit);
    }
    appendCodePoint(S, Code);
  }
}

llvm::Expected<JsonCursor::Number> JsonCursor::readNumber() {
  auto T = peekToken();
  if (!T)
    return T.takeError();
  char Text[65];
  size_t Size = 0;
  while (true) {
    if (Pos >= Chunk.size()) {
      auto More = fill();
      if (!More)
        return More.takeError();
      if (!*More)
        break;
    }
    char C = Chunk[Pos];
    if (!isNumberChar(C))
      break;
    if (Size == 64)
      return error("number longer than 64 characters");
    Text[Size++] = C;
    ++Pos;
  }
  if (Size == 0)
    return error(*T ? llvm::formatv("expected a number, found '{0}'", *T).str()
                    : std::string("expected a number, found the end of the file"));
  Number N;
  llvm::StringRef Ref(Text, Size);
  if (!parseJsonNumber(Ref, N))
    return error("malformed number '" + Ref + "'");
  return N;
}

bool parseJsonNumber(llvm::StringRef Text, JsonCursor::Number &N) {
  N = JsonCursor::Number();
  const char *Begin = Text.begin(), *End = Text.end();
  if (Begin < End && *Begin == '+')
    ++Begin;
  // Most numbers in a trace are integers (ids, sizes, addresses) or decimals with a few
  // places (microseconds): those are computed directly, several times cheaper than
  // std::from_chars. Exact: integers of up to 18 digits fit; for a decimal, when its
  // digits (without trailing zeros) fit a double's 53-bit mantissa and 10^k is exact
  // (k <= 22), one division is correctly rounded, as std::from_chars is (Clinger's fast
  // path). Anything else (exponents, longer digit strings, odd forms) goes to from_chars.
  {
    const char *P = Begin;
    const bool Negative = P < End && *P == '-';
    P += Negative;
    const char *Digits = P;
    uint64_t Mantissa = 0;
    while (P < End && *P >= '0' && *P <= '9' && P - Digits < 18)
      Mantissa = Mantissa * 10 + static_cast<uint64_t>(*P++ - '0');
    const size_t IntegerDigits = static_cast<size_t>(P - Digits);
    if (P == End && IntegerDigits > 0) {
      int64_t I = static_cast<int64_t>(Mantissa);
      N.Integer = Negative ? -I : I;
      N.Value = static_cast<double>(*N.Integer);
      return true;
    }
    if (IntegerDigits > 0 && P < End && *P == '.') {
      const char *Fraction = ++P;
      while (P < End && *P >= '0' && *P <= '9' &&
             IntegerDigits + static_cast<size_t>(P - Fraction) < 19)
        Mantissa = Mantissa * 10 + static_cast<uint64_t>(*P++ - '0');
      size_t Places = static_cast<size_t>(P - Fraction);
      if (P == End && Places > 0) {
        while (Places > 0 && Mantissa % 10 == 0) {
          Mantissa /= 10;
          --Places;
        }
        static constexpr double PowersOfTen[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,
                                                 1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13,
                                                 1e14, 1e15, 1e16, 1e17, 1e18};
        if (Mantissa <= (uint64_t(1) << 53)) {
          double V = static_cast<double>(Mantissa) / PowersOfTen[Places];
          N.Value = Negative ? -V : V;
          return true;
        }
      }
    }
  }
  // std::from_chars rather than StringRef::getAsDouble (APFloat): traces are mostly
  // numbers, and this is several times faster with the same correctly rounded result.
  if (Text.find_first_of(".eE") == llvm::StringRef::npos) {
    int64_t I;
    auto [Ptr, Ec] = std::from_chars(Begin, End, I);
    if (Ec == std::errc() && Ptr == End) {
      N.Integer = I;
      N.Value = static_cast<double>(I);
      return true;
    }
  }
  auto [Ptr, Ec] = std::from_chars(Begin, End, N.Value);
  if (Ptr != End || (Ec != std::errc() && Ec != std::errc::result_out_of_range))
    return false;
  if (Ec == std::errc::result_out_of_range) // as strtod: overflow to infinity, underflow to 0
    N.Value = std::strtod(std::string(Text).c_str(), nullptr);
  return true;
}

llvm::Error JsonCursor::skipString() {
  // Read into a reused buffer: one implementation of escapes and chunk boundaries.
  return readString(Skipped);
}

llvm::Error JsonCursor::skipValue() {
  // Iterative: a stack of the closing brackets still open.
  std::vector<char> Open;
  while (true) {
    auto T = peekToken();
    if (!T)
      return T.takeError();
    char C = *T;
    if (C == 0)
      return error("unexpected end of the file");
    if (C == '"') {
      if (llvm::Error E = skipString())
        return E;
    } else if (C == '{' || C == '[') {
      ++Pos;
      Open.push_back(C == '{' ? '}' : ']');
      continue;
    } else if (C == '}' || C == ']') {
      if (Open.empty() || Open.back() != C)
        return error(llvm::formatv("unexpected '{0}'", C).str());
      ++Pos;
      Open.pop_back();
    } else if (C == ',' || C == ':') {
      if (Open.empty())
        return error(llvm::formatv("unexpected '{0}'", C).str());
      ++Pos;
      continue;
    } else if (C == 't' || C == 'f' || C == 'n') {
      llvm::StringRef Word = C == 't' ? "true" : C == 'f' ? "false" : "null";
      for (char W : Word) {
        auto G = get();
        if (!G)
          return G.takeError();
        if (*G != W)
          return error("malformed literal (expected " + Word + ")");
      }
    } else {
      auto N = readNumber();
      if (!N)
        return N.takeError();
    }
    if (Open.empty())
      return llvm::Error::success();
  }
}

bool JsonScanner::peekToken(char &C) {
  while (At < End && (*At == ' ' || *At == '\n' || *At == '\r' || *At == '\t'))
    ++At;
  if (At == End)
    return false;
  C = *At;
  return true;
}

bool JsonScanner::expect(char C) {
  char T;
  if (!peekToken(T) || T != C)
    return false;
  ++At;
  return true;
}

bool JsonScanner::nextMember(char Close, bool First, bool &More) {
  char T;
  if (!peekToken(T))
    return false;
  if (T == Close) {
    ++At;
    More = false;
    return true;
  }
  if (!First) {
    if (T != ',')
      return false;
    ++At;
  }
  char Next;
  if (!peekToken(Next) || Next == 0) // a NUL byte is the end of the file to the cursor
    return false;
  More = true;
  return true;
}

bool JsonScanner::readString(llvm::StringRef &View, std::string &Scratch) {
  if (!expect('"'))
    return false;
  // A plain loop, not memchr: the strings of a trace are mostly a few bytes long, where
  // a library call costs more than the scan.
  const char *Run = At;
  while (At < End && *At != '"' && *At != '\\')
    ++At;
  if (At == End)
    return false;
  if (*At == '"') {
    View = llvm::StringRef(Run, static_cast<size_t>(At - Run));
    ++At;
    return true;
  }
  At = Run;
  Scratch.clear();
  while (true) {
    const char *Run = At;
    while (At < End && *At != '"' && *At != '\\')
      ++At;
    Scratch.append(Run, At);
    if (At == End)
      return false;
    if (*At++ == '"') {
      View = Scratch;
      return true;
    }
    if (At == End)
      return false;
    char E = *At++;
    if (char Plain = simpleEscape(static_cast<unsigned char>(E))) {
      Scratch += Plain;
      continue;
    }
    if (E != 'u' || End - At < 4)
      return false;
    unsigned Code = 0;
    for (int I = 0; I < 4; ++I) {
      int Digit = hexDigit(static_cast<unsigned char>(*At++));
      if (Digit < 0)
        return false;
      Code = Code << 4 | static_cast<unsigned>(Digit);
    }
    appendCodePoint(Scratch, Code);
  }
}

bool JsonScanner::readString(std::string &Into) {
  llvm::StringRef View;
  if (!readString(View, Into))
    return false;
  if (View.data() != Into.data())
    Into.assign(View.data(), View.size());
  return true;
}

bool JsonScanner::readNumber(JsonCursor::Number &N) {
  char T;
  if (!peekToken(T))
    return false;
  const char *Start = At;
  while (At < End && isNumberChar(*At))
    ++At;
  // A run that reaches the end may go on in the next chunk; past 64 the cursor refuses it.
  size_t Size = static_cast<size_t>(At - Start);
  if (At == End || Size == 0 || Size > 64)
    return false;
  return parseJsonNumber(llvm::StringRef(Start, Size), N);
}

bool JsonScanner::skipString() {
  if (!expect('"'))
    return false;
  while (true) {
    while (At < End && *At != '"' && *At != '\\')
      ++At;
    if (At == End)
      return false;
    if (*At++ == '"')
      return true;
    // An escape is checked as the cursor checks it: it refuses bad ones.
    if (At == End)
      return false;
    char E = *At++;
    if (simpleEscape(static_cast<unsigned char>(E)))
      continue;
    if (E != 'u' || End - At < 4)
      return false;
    for (int I = 0; I < 4; ++I)
      if (hexDigit(static_cast<unsigned char>(*At++)) < 0)
        return false;
  }
}

bool JsonScanner::skipValue() {
  // The cursor's skipValue token for token (it is lenient about separators inside
  // containers, and so must this be); deeper nesting than this is left to the cursor.
  char Open[32];
  size_t Depth = 0;
  while (true) {
    char C;
    if (!peekToken(C))
      return false;
    if (C == '"') {
      if (!skipString())
        return false;
    } else if (C == '{' || C == '[') {
      if (Depth == sizeof(Open))
        return false;
      Open[Depth++] = C == '{' ? '}' : ']';
      ++At;
      continue;
    } else if (C == '}' || C == ']') {
      if (Depth == 0 || Open[Depth - 1] != C)
        return false;
      --Depth;
      ++At;
    } else if (C == ',' || C == ':') {
      if (Depth == 0)
        return false;
      ++At;
      continue;
    } else if (C == 't' || C == 'f' || C == 'n') {
      llvm::StringRef Word = C == 't' ? "true" : C == 'f' ? "false" : "null";
      if (static_cast<size_t>(End - At) < Word.size() ||
          std::memcmp(At, Word.data(), Word.size()) != 0)
        return false;
      At += Word.size();
    } else {
      JsonCursor::Number N;
      if (!readNumber(N))
        return false;
    }
    if (Depth == 0)
      return true;
  }
}

} // namespace trainmem
