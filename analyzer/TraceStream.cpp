//===- TraceStream.cpp - streamed reading of JSON traces ------------------===//
//
// The JSON side of TraceStream.h: JsonCursor, a token-at-a-time pull parser over a
// ByteReader's chunks (ByteReader.cpp), and JsonScanner, which reads values lying wholly in
// one chunk in place, with the same results.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TraceStream.h"

#include "llvm/Support/FormatVariadic.h"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TRAINMEM_RUN_END_AVX2 1
#endif

namespace trainmem {

namespace {

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


} // namespace

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
    if (!json_detail::isNumberChar(C))
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
  if (const char *Stop = json_detail::directNumber(Begin, End, N); Stop == End)
    return true;
  N = JsonCursor::Number();
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

bool JsonScanner::readEscapedString(const char *Start, llvm::StringRef &View,
                                    std::string &Scratch) {
  // Decoded from the string's start, a run of plain characters at a time.
  Scratch.clear();
  At = Start;
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

bool JsonScanner::readNumberRun(JsonCursor::Number &N) {
  const char *Start = At;
  while (At < End && json_detail::isNumberChar(*At))
    ++At;
  // A run that reaches the end may go on in the next chunk; past 64 the cursor refuses it.
  size_t Size = static_cast<size_t>(At - Start);
  if (At == End || Size == 0 || Size > 64)
    return false;
  return parseJsonNumber(llvm::StringRef(Start, Size), N);
}

namespace {
const char *runEndSse2(const char *At, const char *End) {
#ifdef __SSE2__
  const __m128i Quote = _mm_set1_epi8('"'), Backslash = _mm_set1_epi8('\\');
  for (; End - At >= 16; At += 16) {
    const __m128i V = _mm_loadu_si128(reinterpret_cast<const __m128i *>(At));
    const int Hits =
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(V, Quote), _mm_cmpeq_epi8(V, Backslash)));
    if (Hits)
      return At + __builtin_ctz(static_cast<unsigned>(Hits));
  }
#endif
  while (At < End && *At != '"' && *At != '\\')
    ++At;
  return At;
}

#ifdef TRAINMEM_RUN_END_AVX2
// Call stacks run to kilobytes (half the bytes of a kineto trace): 32 bytes a step where
// the machine has AVX2, chosen when the program starts, as the build targets any x86-64.
__attribute__((target("avx2"))) const char *runEndAvx2(const char *At, const char *End) {
  const __m256i Quote = _mm256_set1_epi8('"'), Backslash = _mm256_set1_epi8('\\');
  for (; End - At >= 32; At += 32) {
    const __m256i V = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(At));
    const unsigned Hits = static_cast<unsigned>(_mm256_movemask_epi8(
        _mm256_or_si256(_mm256_cmpeq_epi8(V, Quote), _mm256_cmpeq_epi8(V, Backslash))));
    if (Hits)
      return At + __builtin_ctz(Hits);
  }
  return runEndSse2(At, End);
}

using RunEnd = const char *(*)(const char *, const char *);
RunEnd pickRunEnd() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? runEndAvx2 : runEndSse2;
}
#endif
} // namespace

const char *json_detail::longStringRunEnd(const char *At, const char *End) {
#ifdef TRAINMEM_RUN_END_AVX2
  // Chosen at the first call, not by a namespace-scope initializer, which another
  // translation unit's static initializer could have run before.
  static const RunEnd Chosen = pickRunEnd();
  return Chosen(At, End);
#else
  return runEndSse2(At, End);
#endif
}

bool JsonScanner::skipString() {
  if (!expect('"'))
    return false;
  while (true) {
    At = json_detail::stringRunEnd(At, End);
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

namespace {
/// Where a container at P ('[' or '{') ends, found 16 bytes at a time, when its text is
/// plain: strings without escapes, and between them only whitespace, separators,
/// brackets and runs of digits shorter than 16; else null, deciding nothing (skipValue's
/// token loop then reads it, as for any other value). kineto's args are full of such
/// lists ("Input Dims": [[32, 64, 56, 56], [], ...], "Input type": ["float", ""]), and the
/// token loop spent a step per token on them. What this accepts, the token loop (and the
/// cursor) accepts, ending at the same place: it is as lenient about separators inside
/// containers; a string is plain bytes up to its closing quote; a run of digits is a
/// number (leading zeros and all, up to 64 digits, and these are shorter), and what ends
/// it here (whitespace, a separator, a bracket or a quote) cannot continue a number.
/// Anything else (a literal, a sign, a decimal point, an escape, nesting past 32, a
/// container that the buffer cuts, a bracket that does not match) is left to the loop.
const char *plainContainerEnd(const char *P, const char *End) {
#ifdef __SSE2__
  char Closers[32];
  size_t Depth = 0;
  unsigned InString = 0; // all ones when the previous block ended inside a string
  const __m128i Zero = _mm_set1_epi8('0'), Nine = _mm_set1_epi8(9);
  auto is = [](__m128i V, char C) { return _mm_cmpeq_epi8(V, _mm_set1_epi8(C)); };
  auto bits = [](__m128i M) { return static_cast<unsigned>(_mm_movemask_epi8(M)); };
  for (; End - P >= 16; P += 16) {
    const __m128i V = _mm_loadu_si128(reinterpret_cast<const __m128i *>(P));
    if (bits(is(V, '\\')))
      return nullptr;
    const unsigned Quote = bits(is(V, '"'));
    // Bit i: inside a string after byte i (an opening quote and the string's bytes; its
    // closing quote is outside): the parity of the quotes so far.
    unsigned Inside = Quote;
    Inside ^= Inside << 1;
    Inside ^= Inside << 2;
    Inside ^= Inside << 4;
    Inside ^= Inside << 8;
    Inside = (Inside ^ InString) & 0xFFFFu;
    const __m128i Offset = _mm_sub_epi8(V, Zero);
    const unsigned Digit = bits(_mm_cmpeq_epi8(_mm_min_epu8(Offset, Nine), Offset));
    const unsigned Open = bits(_mm_or_si128(is(V, '['), is(V, '{')));
    const unsigned Close = bits(_mm_or_si128(is(V, ']'), is(V, '}')));
    const unsigned Plain =
        Digit | Open | Close | Quote |
        bits(_mm_or_si128(_mm_or_si128(_mm_or_si128(is(V, ' '), is(V, '\n')),
                                       _mm_or_si128(is(V, '\r'), is(V, '\t'))),
                          _mm_or_si128(is(V, ','), is(V, ':'))));
    unsigned Mine = 0xFFFFu; // the bytes of this block up to the container's end
    for (unsigned Brackets = (Open | Close) & ~Inside; Brackets; Brackets &= Brackets - 1) {
      const unsigned I = static_cast<unsigned>(__builtin_ctz(Brackets));
      const char C = P[I];
      if (C == '[' || C == '{') {
        if (Depth == sizeof(Closers))
          return nullptr;
        Closers[Depth++] = C == '[' ? ']' : '}';
      } else if (Depth == 0 || Closers[Depth - 1] != C) {
        return nullptr;
      } else if (--Depth == 0) {
        Mine = (2u << I) - 1;
        break;
      }
    }
    const unsigned Outside = ~Inside & Mine;
    if ((~Plain & Outside) || (Digit & Outside) == 0xFFFFu)
      return nullptr;
    if (Depth == 0)
      return P + (32 - __builtin_clz(Mine)); // past the closing bracket
    InString = Inside & 0x8000u ? 0xFFFFu : 0;
  }
#endif
  (void)P;
  (void)End;
  return nullptr;
}
} // namespace

bool JsonScanner::skipValue() {
  // The cursor's skipValue token for token (it is lenient about separators inside
  // containers, and so must this be); deeper nesting than this is left to the cursor.
  char Open[32];
  size_t Depth = 0;
  {
    char C;
    if (peekToken(C) && (C == '[' || C == '{'))
      if (const char *Stop = plainContainerEnd(At, End)) {
        At = Stop;
        return true;
      }
  }
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
    } else if (const char *Stop = json_detail::plainNumberEnd(At, End);
               Stop && Stop < End && !json_detail::isNumberChar(*Stop)) {
      At = Stop; // nothing to convert: what readNumber accepts, seen without the digits' value
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
