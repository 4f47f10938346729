//===- TraceStream.h - streamed reading of (gzipped) JSON traces ----*- C++ -*-===//
//
// Profiler traces run to gigabytes, so they are never read whole: ByteReader hands out
// the file in chunks, inflating gzip on the way, and JsonCursor pulls JSON tokens from it.
// llvm::json parses whole documents only, which would hold the file (and a tree several
// times its size) in memory; this cursor holds one chunk and the value being read.
// JsonScanner reads the values lying wholly in the current chunk in place, several times
// faster, and leaves the rest (and every error) to the cursor.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_TRACESTREAM_H
#define TRAINMEM_ANALYZER_TRACESTREAM_H

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace trainmem {

/// What the read-ahead thread made of one chunk before the consumer reached it (see
/// ByteReader::open's Scan); a reader's user derives its own result from it.
struct ChunkScan {
  virtual ~ChunkScan();
};
/// Reads Chunk into Into, which holds null or an earlier result handed back for reuse;
/// stops early, with what it has, once Halt is set (the consumer has reached the chunk).
using ChunkScanner = std::function<void(llvm::StringRef Chunk, std::unique_ptr<ChunkScan> &Into,
                                        const std::atomic<bool> &Halt)>;

/// The storage of a chunk: a byte vector whose growth leaves new bytes uninitialised
/// (std::vector<char> zeroes them, and a trace import's ten 512 KiB chunk buffers were
/// zeroed only to be overwritten: 2-3% of importing a 31 MB trace).
template <typename T> struct DefaultInitAllocator : std::allocator<T> {
  template <typename U> struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U> DefaultInitAllocator(const DefaultInitAllocator<U> &) noexcept {}
  template <typename U> void construct(U *P) noexcept { ::new (static_cast<void *>(P)) U; }
  template <typename U, typename... Args> void construct(U *P, Args &&...A) {
    ::new (static_cast<void *>(P)) U(std::forward<Args>(A)...);
  }
};
using ChunkBuffer = std::vector<char, DefaultInitAllocator<char>>;

/// A file read in chunks, gunzipped when it starts with the gzip magic.
class ByteReader {
public:
  /// Which library inflates gzip: the fastest this build has (ISA-L's igzip where CMake
  /// found libisal, else zlib), or zlib (tests compare the two). Both hand out the same
  /// bytes and the same errors.
  enum class Inflater { Fastest, Zlib };
  /// ChunkBytes: how much is read (and inflated) at a time. With more than one core the
  /// file is read (and inflated) ahead on a second thread; with Scan, that thread also
  /// passes chunks the consumer has not reached yet to Scan between reads, so that two
  /// threads parse (currentScan() answers the result).
  static llvm::Expected<std::unique_ptr<ByteReader>>
  open(llvm::StringRef Path, size_t ChunkBytes = 1 << 20, Inflater Use = Inflater::Fastest,
       ChunkScanner Scan = nullptr);
  /// Scan's result for the chunk next() handed out last, valid until the next call; null
  /// where there is none (no scanner, one core, or the consumer got there first).
  virtual const ChunkScan *currentScan() const { return nullptr; }
  /// "isa-l" or "zlib": what Inflater::Fastest is in this build.
  static llvm::StringRef fastestInflater();
  virtual ~ByteReader();
  /// The next chunk; empty at the end. Errors name the file (corrupt gzip, read error,
  /// a decompression bomb).
  virtual llvm::Expected<llvm::StringRef> next() = 0;
  /// The next chunk in Buffer (its first N bytes; N is 0 at the end). A reader may lend
  /// Buffer out as its own output and keep the one it had, so the bytes land there without
  /// a copy; the default copies next()'s.
  virtual llvm::Expected<size_t> nextInto(ChunkBuffer &Buffer);
  /// Bytes of the file consumed so far (compressed bytes for gzip).
  virtual uint64_t fileBytesRead() const = 0;
  virtual bool compressed() const = 0;
  /// The first bytes of the (decompressed) content, for format detection.
  static llvm::Expected<std::string> peek(llvm::StringRef Path, size_t Bytes);

protected:
  ByteReader() = default;
};

/// A pull parser over a ByteReader. Every method that reads reports errors with the
/// file name and the byte offset (in the decompressed stream).
class JsonCursor {
public:
  JsonCursor(std::unique_ptr<ByteReader> Reader, std::string Name);

  /// The next non-space character without consuming it; 0 at the end.
  llvm::Expected<char> peekToken();
  /// Consumes the expected structural character (after whitespace).
  llvm::Error expect(char C);
  /// Inside an object or array after its opening bracket: true when another member
  /// follows (consuming the ',' separator), false at the closing bracket (consumed).
  llvm::Expected<bool> nextMember(char Close, bool First);

  llvm::Expected<std::string> readString();
  /// The same into a caller's buffer (cleared first), so a hot loop allocates nothing.
  llvm::Error readString(std::string &Into);
  /// A number; Integer holds it exactly when it has no fraction or exponent.
  struct Number {
    double Value = 0;
    std::optional<int64_t> Integer;
  };
  llvm::Expected<Number> readNumber();
  /// Reads an object: Member is called after each key's ':' and must consume the value.
  llvm::Error readObject(llvm::function_ref<llvm::Error(llvm::StringRef Key)> Member);
  /// Reads an array: Element is called at each element and must consume it.
  llvm::Error readArray(llvm::function_ref<llvm::Error()> Element);
  /// Skips one value of any kind (containers iteratively, so depth cannot overflow).
  llvm::Error skipValue();

  /// The bytes read from the file and not yet consumed: the rest of the current chunk,
  /// possibly empty (nothing is read to fill it). A hot loop can read a value lying wholly
  /// in it with a JsonScanner and advance() past it, and leave any other to the methods
  /// above, which report errors and cross chunk boundaries.
  llvm::StringRef buffered() const { return Chunk.substr(Pos); }
  /// Consumes the first N bytes of buffered().
  void advance(size_t N) { Pos += std::min(N, Chunk.size() - Pos); }
  /// Where buffered() starts in the current chunk, and the reader's scan of that chunk.
  size_t chunkOffset() const { return Pos; }
  const ChunkScan *currentScan() const { return Reader->currentScan(); }

  uint64_t offset() const { return Consumed + Pos; }
  /// Bytes of the file the chunks handed out so far came from (compressed bytes for gzip).
  uint64_t fileBytesRead() const { return Reader->fileBytesRead(); }
  const std::string &name() const { return Name; }
  llvm::Error error(const llvm::Twine &Message) const;

private:
  llvm::Expected<bool> fill();
  llvm::Expected<int> get();
  llvm::Error skipString();

  std::unique_ptr<ByteReader> Reader;
  std::string Name;
  llvm::StringRef Chunk;
  size_t Pos = 0;
  uint64_t Consumed = 0;
  bool AtEnd = false;
  std::string Skipped;
};

/// Reads JSON lying wholly in one buffer (JsonCursor::buffered()) in place: no refills, no
/// Expected per token, strings as views where they hold no escape. Each method reads what
/// JsonCursor's method of the same name reads, with the same result, or answers false:
/// "not decided here" (the buffer ends first, or the text is malformed or unusual). The
/// caller then reads the whole value again with the cursor, which reports the error at
/// its offset, so a scanner never words an error itself and accepts nothing the cursor
/// refuses. After a false the scanner's position is unspecified.
class JsonScanner {
public:
  explicit JsonScanner(llvm::StringRef Buffer)
      : Begin(Buffer.data()), At(Buffer.data()), End(Buffer.data() + Buffer.size()) {}

  /// Bytes read so far (for JsonCursor::advance once the value is whole).
  size_t consumed() const { return static_cast<size_t>(At - Begin); }
  /// The next non-space character, not consumed; false at the end of the buffer.
  bool peekToken(char &C);
  /// Consumes C after whitespace.
  bool expect(char C);
  /// As JsonCursor::nextMember: More is true when another member follows.
  bool nextMember(char Close, bool First, bool &More);
  /// A string as a view of the buffer when it holds no escape, else decoded into Scratch
  /// (and the view of Scratch).
  bool readString(llvm::StringRef &View, std::string &Scratch);
  bool readString(std::string &Into);
  bool readNumber(JsonCursor::Number &N);
  /// An integer spelled as std::to_string spells it (no '+', no leading zero, not -0; at
  /// most 18 digits), as a view of the buffer: its own text, with nothing to convert.
  /// False, having read nothing, for any other value.
  bool readCanonicalInteger(llvm::StringRef &Text);
  bool skipValue();

  /// Where the scanner stands, and how many bytes lie ahead of it in the buffer.
  const char *position() const { return At; }
  size_t remaining() const { return static_cast<size_t>(End - At); }
  /// Passes over N bytes the caller has matched against text this scanner read before
  /// (N <= remaining()).
  void pass(size_t N) { At += N; }

private:
  bool readNumberRun(JsonCursor::Number &N);
  bool readEscapedString(const char *Start, llvm::StringRef &View, std::string &Scratch);
  bool skipString();

  const char *Begin, *At, *End;
};

// The per-token steps are inline: the importers call them for every member, and a call
// per token cost about 14% of BM_ImportChromeTraceGz (bench/README.md).

namespace json_detail {
inline bool isNumberChar(char C) {
  return (C >= '0' && C <= '9') || C == '-' || C == '+' || C == '.' || C == 'e' || C == 'E';
}

/// Reads up to Max decimal digits at P into Mantissa; returns how many.
inline size_t readDigits(const char *&P, const char *End, uint64_t &Mantissa, size_t Max) {
  const char *Start = P;
  const char *Stop = static_cast<size_t>(End - P) < Max ? End : P + Max;
  while (P < Stop && static_cast<unsigned char>(*P - '0') < 10)
    Mantissa = Mantissa * 10 + static_cast<uint64_t>(*P++ - '0');
  return static_cast<size_t>(P - Start);
}

/// Most numbers in a trace are integers (ids, sizes, addresses) or decimals with a few
/// places (microseconds): those are converted here, several times cheaper than
/// std::from_chars. Exact: integers of up to 18 digits fit; for a decimal whose digits
/// (without trailing zeros) fit a double's 53-bit mantissa, 10^k is exact (k <= 18) and
/// one division is correctly rounded, as std::from_chars is (Clinger's fast path).
/// Reads -?D+ or -?D+.D+ from P and returns where it stopped, having set N; null for any
/// other form (exponents, longer digit strings), which std::from_chars converts.
inline const char *directNumber(const char *P, const char *End, JsonCursor::Number &N) {
  const bool Negative = P < End && *P == '-';
  P += Negative;
  uint64_t Mantissa = 0;
  const size_t IntegerDigits = readDigits(P, End, Mantissa, 18);
  if (IntegerDigits == 0 || (P < End && *P >= '0' && *P <= '9'))
    return nullptr;
  if (P == End || *P != '.') {
    const int64_t I = static_cast<int64_t>(Mantissa);
    N.Integer = Negative ? -I : I;
    N.Value = static_cast<double>(*N.Integer);
    return P;
  }
  ++P;
  size_t Places = readDigits(P, End, Mantissa, 19 - IntegerDigits);
  if (Places == 0 || (P < End && *P >= '0' && *P <= '9'))
    return nullptr;
  while (Places > 0 && Mantissa % 10 == 0) {
    Mantissa /= 10;
    --Places;
  }
  if (Mantissa > (uint64_t(1) << 53))
    return nullptr;
  static constexpr double PowersOfTen[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,
                                           1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13,
                                           1e14, 1e15, 1e16, 1e17, 1e18};
  const double V = static_cast<double>(Mantissa) / PowersOfTen[Places];
  N.Integer.reset();
  N.Value = Negative ? -V : V;
  return P;
}
/// Where -?D+ or -?D+.D+ at P ends (at most 64 characters, as the cursor reads), or null
/// for any other form: a number skipValue need not convert. Every such number is one
/// readNumber accepts (directNumber's, or std::from_chars' past 18 digits).
inline const char *plainNumberEnd(const char *P, const char *End) {
  const char *Start = P;
  P += P < End && *P == '-';
  const char *Digits = P;
  while (P < End && static_cast<unsigned char>(*P - '0') < 10)
    ++P;
  if (P == Digits)
    return nullptr;
  if (P < End && *P == '.') {
    const char *Places = ++P;
    while (P < End && static_cast<unsigned char>(*P - '0') < 10)
      ++P;
    if (P == Places)
      return nullptr;
  }
  return P - Start <= 64 ? P : nullptr;
}
/// stringRunEnd past a string's first 16 bytes (out of line: SIMD where the target has it).
const char *longStringRunEnd(const char *At, const char *End);

/// Where the run of plain characters at At ends: the first '"' or '\\', or End. Most of a
/// trace's strings are a few bytes long, scanned here inline (a library call would cost
/// more than the scan); kernel names and call stacks run to hundreds of bytes, and past
/// the first 16 they are scanned 32 or 16 bytes at a time (longStringRunEnd).
inline const char *stringRunEnd(const char *At, const char *End) {
#ifdef __SSE2__
  // The first 16 bytes in one step: a loop of a byte a step mispredicted its exit on
  // nearly every string, keys and values alike (their lengths vary), twice per member;
  // this made importing the fixtures' kineto traces 9-11% faster.
  if (End - At >= 16) {
    const __m128i V = _mm_loadu_si128(reinterpret_cast<const __m128i *>(At));
    const unsigned Hits = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(
        _mm_cmpeq_epi8(V, _mm_set1_epi8('"')), _mm_cmpeq_epi8(V, _mm_set1_epi8('\\')))));
    return Hits ? At + __builtin_ctz(Hits) : longStringRunEnd(At + 16, End);
  }
#endif
  while (At < End && *At != '"' && *At != '\\')
    ++At;
  return At;
}

/// Where the run of JSON whitespace at At ends (the first other byte, or End): 16 bytes a
/// step where the target has SSE2. Pretty-printed traces (the fixtures' ResNet-50 one)
/// start each member on a new, indented line, and a byte a step, mispredicting its exit
/// at each run's varying length, was 7.5% of its parse.
inline const char *spaceRunEnd(const char *At, const char *End) {
#ifdef __SSE2__
  for (; End - At >= 16; At += 16) {
    const __m128i V = _mm_loadu_si128(reinterpret_cast<const __m128i *>(At));
    auto is = [&](char C) { return _mm_cmpeq_epi8(V, _mm_set1_epi8(C)); };
    const __m128i Space = _mm_or_si128(_mm_or_si128(is(' '), is('\n')),
                                       _mm_or_si128(is('\r'), is('\t')));
    const unsigned Other = ~static_cast<unsigned>(_mm_movemask_epi8(Space)) & 0xFFFFu;
    if (Other)
      return At + __builtin_ctz(Other);
  }
#endif
  while (At < End && (*At == ' ' || *At == '\n' || *At == '\r' || *At == '\t'))
    ++At;
  return At;
}
} // namespace json_detail

inline bool JsonScanner::peekToken(char &C) {
  // Every byte above ' ' ends a run of whitespace at once: most tokens follow none.
  if (At < End && static_cast<unsigned char>(*At) > ' ') [[likely]] {
    C = *At;
    return true;
  }
  At = json_detail::spaceRunEnd(At, End);
  if (At == End)
    return false;
  C = *At;
  return true;
}

inline bool JsonScanner::expect(char C) {
  char T;
  if (!peekToken(T) || T != C)
    return false;
  ++At;
  return true;
}

inline bool JsonScanner::nextMember(char Close, bool First, bool &More) {
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

inline bool JsonScanner::readString(llvm::StringRef &View, std::string &Scratch) {
  if (!expect('"'))
    return false;
  const char *Start = At;
  At = json_detail::stringRunEnd(At, End);
  if (At == End)
    return false;
  if (*At != '"')
    return readEscapedString(Start, View, Scratch);
  View = llvm::StringRef(Start, static_cast<size_t>(At - Start));
  ++At;
  return true;
}

inline bool JsonScanner::readNumber(JsonCursor::Number &N) {
  char T;
  if (!peekToken(T))
    return false;
  // The common forms in one pass, when what follows them ends the number's run.
  const char *Stop = json_detail::directNumber(At, End, N);
  if (Stop && Stop < End && !json_detail::isNumberChar(*Stop)) {
    At = Stop;
    return true;
  }
  return readNumberRun(N);
}

inline bool JsonScanner::readCanonicalInteger(llvm::StringRef &Text) {
  char T;
  if (!peekToken(T))
    return false;
  // The run skipValue would pass over, if it is an integer of at most 18 digits.
  const char *Stop = json_detail::plainNumberEnd(At, End);
  if (!Stop || Stop == End || json_detail::isNumberChar(*Stop))
    return false;
  const char *Digits = At + (T == '-');
  const size_t N = static_cast<size_t>(Stop - Digits);
  if (N > 18 || std::memchr(Digits, '.', N))
    return false;
  // A zero first only as the whole number, and never after '-'.
  if (*Digits == '0' && (T == '-' || N > 1))
    return false;
  Text = llvm::StringRef(At, static_cast<size_t>(Stop - At));
  At = Stop;
  return true;
}

/// The conversion both readers share: Text (a run of number characters) as a number, or
/// false when it is malformed.
bool parseJsonNumber(llvm::StringRef Text, JsonCursor::Number &N);

} // namespace trainmem

#endif
