//===- ChromeTraceEvents.cpp - the events of a Chrome trace, streamed ------===//
//
// Events are read with JsonScanner in place where they lie wholly in the current chunk,
// else (and for every error) with JsonCursor, which crosses chunks.
//
// Parsing ahead: the helper, ByteReader's read-ahead thread between reads (its
// ChunkScanner), reads a chunk the importer has not reached from the first place that looks
// like the start of an element of traceEvents (a '{' after "}" and ","), as many whole
// events as the chunk holds, and stops at anything else. That place is a guess (a name or
// a nested object could look the same), so its events are used only from the first one that
// starts exactly where the importer finds itself at the start of an element: from there the
// helper has read the same bytes from the same place with the same reader the importer
// would have used, so they are the events it would have read (a JSON element's reading
// depends on nothing before it). Everything else, the events between chunks, those the
// helper stopped at and every error, the importer reads itself, as before.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ChromeTraceEvents.h"
#include "analyzer/TraceStream.h"

#include "llvm/Support/FormatVariadic.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <vector>

namespace trainmem::chrome {

namespace {

/// Some writers quote numbers; a quoted integer that is not one is absent.
std::optional<int64_t> quotedInteger(llvm::StringRef Text) {
  int64_t V;
  if (Text.getAsInteger(10, V))
    return std::nullopt;
  return V;
}

std::optional<int64_t> integerValue(const JsonCursor::Number &N) {
  if (N.Integer)
    return *N.Integer;
  // A float where an integer belongs: kept when integral and in range, else absent.
  if (std::fabs(N.Value) < 9.0e18 && N.Value == std::floor(N.Value))
    return static_cast<int64_t>(N.Value);
  return std::nullopt;
}

/// A number where a name belongs (tids are strings or numbers), as text.
void numberText(const JsonCursor::Number &N, std::string &Into) {
  Into = N.Integer ? std::to_string(*N.Integer) : llvm::formatv("{0}", N.Value).str();
}

llvm::Expected<std::optional<int64_t>> readInteger(JsonCursor &C) {
  auto T = C.peekToken();
  if (!T)
    return T.takeError();
  if (*T == 'n') {
    if (llvm::Error E = C.skipValue())
      return E;
    return std::nullopt;
  }
  if (*T == '"') {
    auto S = C.readString();
    if (!S)
      return S.takeError();
    return quotedInteger(*S);
  }
  auto N = C.readNumber();
  if (!N)
    return N.takeError();
  return integerValue(*N);
}

llvm::Expected<double> readDouble(JsonCursor &C) {
  auto T = C.peekToken();
  if (!T)
    return T.takeError();
  if (*T == '"') {
    auto S = C.readString();
    if (!S)
      return S.takeError();
    double V = 0;
    if (llvm::StringRef(*S).getAsDouble(V))
      return C.error("expected a number in quotes, found '" + *S + "'");
    return V;
  }
  auto N = C.readNumber();
  if (!N)
    return N.takeError();
  return N->Value;
}

/// A string, or a number as text (tids are either); other values are skipped.
llvm::Error readScalarText(JsonCursor &C, std::string &Into) {
  auto T = C.peekToken();
  if (!T)
    return T.takeError();
  if (*T == '"')
    return C.readString(Into);
  Into.clear();
  if (*T == '{' || *T == '[' || *T == 'n' || *T == 't' || *T == 'f')
    return C.skipValue();
  auto N = C.readNumber();
  if (!N)
    return N.takeError();
  numberText(*N, Into);
  return llvm::Error::success();
}

/// The same, with View set to Into.
llvm::Error readScalarText(JsonCursor &C, llvm::StringRef &View, std::string &Into) {
  View = llvm::StringRef();
  if (llvm::Error E = readScalarText(C, Into))
    return E;
  View = Into;
  return llvm::Error::success();
}

/// The members of args the importer reads, by number; NumArgFields: any other.
enum ArgField : uint8_t { Bytes, Addr, TotalAllocated, TotalReserved, DeviceType, DeviceId,
                          NumArgFields };

ArgField argFieldOf(llvm::StringRef Key) {
  return Key == "Bytes"             ? Bytes
         : Key == "Addr"            ? Addr
         : Key == "Total Allocated" ? TotalAllocated
         : Key == "Total Reserved"  ? TotalReserved
         : Key == "Device Type"     ? DeviceType
         : Key == "Device Id"       ? DeviceId
                                    : NumArgFields;
}

/// The member of args that Field names, or null for one the importer does not read.
std::optional<int64_t> *argField(Event &E, ArgField Field) {
  static constexpr std::optional<int64_t> Event::*Members[NumArgFields] = {
      &Event::Bytes,         &Event::Addr,       &Event::TotalAllocated,
      &Event::TotalReserved, &Event::DeviceType, &Event::DeviceId};
  return Field < NumArgFields ? &(E.*Members[Field]) : nullptr;
}

/// The members of an event the importer reads, by number; OtherKey: any other.
enum EventKey : uint8_t { PhKey, CatKey, NameKey, TidKey, TsKey, DurKey, ArgsKey, OtherKey };

EventKey eventKeyOf(llvm::StringRef Key) {
  return Key == "ph"     ? PhKey
         : Key == "cat"  ? CatKey
         : Key == "name" ? NameKey
         : Key == "tid"  ? TidKey
         : Key == "ts"   ? TsKey
         : Key == "dur"  ? DurKey
         : Key == "args" ? ArgsKey
                         : OtherKey;
}

llvm::Error readArgs(JsonCursor &C, Event &E) {
  auto T = C.peekToken();
  if (!T)
    return T.takeError();
  if (*T != '{')
    return C.skipValue();
  return C.readObject([&](llvm::StringRef Key) -> llvm::Error {
    std::optional<int64_t> *Field = argField(E, argFieldOf(Key));
    if (!Field)
      return C.skipValue();
    auto V = readInteger(C);
    if (!V)
      return V.takeError();
    *Field = *V;
    return llvm::Error::success();
  });
}

// The same reading of an event in place, for one lying wholly in the cursor's buffer (all
// but those straddling a chunk boundary). The token-at-a-time cursor spends most of an
// import on per-token bookkeeping (refill checks, an Expected per token, a callback per
// member); this reads the event with plain pointer arithmetic instead. Each function
// answers false, having decided nothing, where the scanner does (the buffer ends, the
// text is malformed or unusual); the event is then read again by the cursor above, which
// gives the same result or the same error at the same offset.

bool scanInteger(JsonScanner &S, std::optional<int64_t> &Into, std::string &Scratch) {
  char T;
  if (!S.peekToken(T))
    return false;
  if (T == 'n') {
    Into = std::nullopt;
    return S.skipValue();
  }
  if (T == '"') {
    llvm::StringRef Text;
    if (!S.readString(Text, Scratch))
      return false;
    Into = quotedInteger(Text);
    return true;
  }
  JsonCursor::Number N;
  if (!S.readNumber(N))
    return false;
  Into = integerValue(N);
  return true;
}

[[gnu::always_inline]] inline bool scanDouble(JsonScanner &S, double &Into,
                                              std::string &Scratch) {
  char T;
  if (!S.peekToken(T))
    return false;
  if (T == '"') {
    llvm::StringRef Text;
    double V = 0;
    if (!S.readString(Text, Scratch) || Text.getAsDouble(V))
      return false;
    Into = V;
    return true;
  }
  JsonCursor::Number N;
  if (!S.readNumber(N))
    return false;
  Into = N.Value;
  return true;
}

/// As readScalarText: View is a view of the buffer, or of Store (decoded escapes, numbers).
/// Inline in scanEvent, as scanDouble is: GCC called both, and the calls (four of an
/// event's members go through them) measured 2-5% of importing a kineto trace.
[[gnu::always_inline]] inline bool scanScalarText(JsonScanner &S, llvm::StringRef &View,
                                                  std::string &Store) {
  char T;
  if (!S.peekToken(T))
    return false;
  if (T == '"')
    return S.readString(View, Store);
  View = llvm::StringRef();
  if (T == '{' || T == '[' || T == 'n' || T == 't' || T == 'f')
    return S.skipValue();
  if (S.readCanonicalInteger(View)) // numeric tids: the text numberText would spell
    return true;
  JsonCursor::Number N;
  if (!S.readNumber(N))
    return false;
  numberText(N, Store);
  View = Store;
  return true;
}

/// The text between one member's value and the next one's that a trace repeats: the
/// whitespace, the comma, the quoted key and the colon (`,\n    "name": `), learned where
/// the member-by-member steps read it, then matched whole (16 bytes a compare) where one
/// of the two literals that last followed the previous member's comes next. A kineto
/// trace writes each kind of event with the same members in the same order, spaced
/// alike: in the synthetic and fixture traces all but 0.1% of members are found this way,
/// and the ResNet-50 trace, pretty-printed, imports 6-8% faster (bench/HISTORY.md).
/// Same reading: a literal is learned only as the steps read it (no escapes), with what
/// its key means, and one read as a first member (no comma) is matched only there, so
/// bytes equal to it read as they did, to the same key and the same place; anything else
/// (no guess, a wrong or stale one, fewer than MaxBytes left in the buffer) is read by
/// the steps. One set per object kind (events, their args) and thread.
class MemberLiterals {
public:
  static constexpr unsigned MaxBytes = 48, NumSlots = 256, NumGuesses = 2;

  /// Slot Guess when its literal is at S's position in the context First, else -1.
  int match(int Guess, const JsonScanner &S, bool First) const {
    if (Guess < 0 || S.remaining() < MaxBytes)
      return -1;
    const Literal &L = Slots[Guess];
    if (L.Len == 0 || L.First != First) // (a stale guess: its slot was taken over)
      return -1;
    const char *P = S.position();
#ifdef __SSE2__
    // 16 bytes a block, each block's bytes of the literal in its mask (worked out when
    // the literal was stored: computing them here was a sixth of the matching).
    for (unsigned B = 0; B * 16 < L.Len; ++B) {
      const unsigned Equal = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(
          _mm_loadu_si128(reinterpret_cast<const __m128i *>(P + 16 * B)),
          _mm_loadu_si128(reinterpret_cast<const __m128i *>(L.Bytes + 16 * B)))));
      if ((Equal & L.Need[B]) != L.Need[B])
        return -1;
    }
    return Guess;
#else
    return std::memcmp(P, L.Bytes, L.Len) == 0 ? Guess : -1;
#endif
  }

  /// The slot of the literal [From, To), read as a member whose key means Key, stored
  /// (in place of whatever its slot held) unless it is; -1 when it is not kept (too long).
  int learn(const char *From, const char *To, uint8_t Key, bool First) {
    const size_t Len = static_cast<size_t>(To - From);
    if (Len == 0 || Len > MaxBytes)
      return -1;
    // The first and the last 8 bytes (the separator and the key's end), the length and
    // the context, mixed (a multiply, a shift and a multiply: literals that differ in one
    // letter's case went to one slot with a multiply alone).
    uint64_t Head = 0, Tail = 0;
    std::memcpy(&Head, From, std::min<size_t>(Len, 8));
    std::memcpy(&Tail, To - std::min<size_t>(Len, 8), std::min<size_t>(Len, 8));
    uint64_t H = (Tail ^ std::rotl(Head, 29)) * 0x9E3779B97F4A7C15ull;
    H = (H ^ (H >> 31) ^ (Len << 1) ^ First) * 0xBF58476D1CE4E5B9ull;
    // Open addressing, a few places from the hashed one: a trace has a few dozen
    // literals, and one evicting another (a direct-mapped table) made both miss.
    const unsigned Home = static_cast<unsigned>(H >> 56);
    for (unsigned Probe = 0; Probe < 8; ++Probe) {
      const int I = static_cast<int>((Home + Probe) % NumSlots);
      Literal &L = Slots[I];
      if (L.Len == 0)
        return store(I, From, Len, Key, First);
      if (L.Len == Len && L.First == First && std::memcmp(L.Bytes, From, Len) == 0)
        return I;
    }
    return store(static_cast<int>(Home), From, Len, Key, First); // crowded: evicts
  }

  uint8_t key(int I) const { return Slots[I].Key; }
  unsigned length(int I) const { return Slots[I].Len; }
  /// The slot of the literal at S's position, guessed from the two that last followed
  /// Prev (or began an object, First), or -1.
  int matchAfter(int Prev, const JsonScanner &S, bool First) const {
    const int16_t *Guess = First ? FirstGuess : Prev >= 0 ? Slots[Prev].Next : nullptr;
    if (!Guess)
      return -1;
    if (int I = match(Guess[0], S, First); I >= 0)
      return I;
    return match(Guess[1], S, First);
  }
  /// Slot I followed Prev (First: began an object): the newest guess, the older kept.
  void follows(int Prev, int I, bool First) {
    int16_t *Guess = First ? FirstGuess : Prev >= 0 ? Slots[Prev].Next : nullptr;
    if (!Guess || I < 0 || Guess[0] == I || Guess[1] == I)
      return;
    Guess[1] = Guess[0];
    Guess[0] = static_cast<int16_t>(I);
  }

private:
  static_assert(NumSlots == 256, "learn() hashes to 8 bits");
  static_assert(MaxBytes % 16 == 0, "a literal's masks cover whole 16-byte blocks");
  int store(int I, const char *From, size_t Len, uint8_t Key, bool First) {
    Literal &L = Slots[I];
    std::memcpy(L.Bytes, From, Len);
    L.Len = static_cast<uint8_t>(Len);
    for (unsigned B = 0; B < MaxBytes / 16; ++B) {
      const size_t Left = Len > 16 * B ? Len - 16 * B : 0;
      L.Need[B] = static_cast<uint16_t>(Left >= 16 ? 0xFFFFu : (1u << Left) - 1);
    }
    L.Key = Key;
    L.First = First;
    std::fill(std::begin(L.Next), std::end(L.Next), -1);
    return I;
  }

  struct Literal {
    char Bytes[MaxBytes] = {};
    uint16_t Need[MaxBytes / 16] = {}; ///< per 16-byte block, the bytes of the literal
    uint8_t Len = 0;
    uint8_t Key = 0;
    bool First = false;
    int16_t Next[NumGuesses] = {-1, -1}; ///< the literals that last followed it
  };
  Literal Slots[NumSlots];
  int16_t FirstGuess[NumGuesses] = {-1, -1};
};

thread_local MemberLiterals EventLiterals, ArgLiterals;

/// The next member of an object being read with Lits (after '{', or after the previous
/// member's value): its key's meaning in Key and the scanner at its value; More false at
/// the object's end. The member-by-member steps where no literal matches.
template <typename KeyOf>
[[gnu::always_inline]] inline bool nextKey(JsonScanner &S, MemberLiterals &Lits, bool First,
                                           int &Prev, bool &More, uint8_t &Key,
                                           std::string &KeyScratch, KeyOf keyOf) {
  int Slot = Lits.matchAfter(Prev, S, First);
  if (Slot >= 0) {
    S.pass(Lits.length(Slot));
    Key = Lits.key(Slot);
  } else {
    const char *From = S.position();
    if (!S.nextMember('}', First, More))
      return false;
    if (!More)
      return true;
    llvm::StringRef Text;
    char T;
    if (!S.readString(Text, KeyScratch) || !S.expect(':') || !S.peekToken(T))
      return false;
    Key = keyOf(Text);
    // Learned only where the key was read in place: one with escapes was decoded.
    const bool InPlace = Text.data() >= From && Text.data() + Text.size() <= S.position();
    Slot = InPlace ? Lits.learn(From, S.position(), Key, First) : -1;
  }
  Lits.follows(Prev, Slot, First);
  Prev = Slot;
  More = true;
  return true;
}

bool scanArgs(JsonScanner &S, Event &E, std::string &KeyScratch, std::string &Scratch) {
  char T;
  if (!S.peekToken(T))
    return false;
  if (T != '{')
    return S.skipValue();
  S.expect('{');
  MemberLiterals &Lits = ArgLiterals;
  int Prev = -1;
  for (bool First = true, More;; First = false) {
    uint8_t Key;
    if (!nextKey(S, Lits, First, Prev, More, Key, KeyScratch, argFieldOf))
      return false;
    if (!More)
      return true;
    std::optional<int64_t> *Field = argField(E, static_cast<ArgField>(Key));
    if (!(Field ? scanInteger(S, *Field, Scratch) : S.skipValue()))
      return false;
  }
}

// The value's reader is chosen here and in scanArgs, written out on purpose: a shared
// member loop taking it as a lambda measured 8% slower on BM_ImportChromeTraceGz (160 vs
// 174 ms per import), even forced inline.
bool scanEvent(JsonScanner &S, Event &E, std::string &KeyScratch, std::string &Scratch) {
  if (!S.expect('{'))
    return false;
  MemberLiterals &Lits = EventLiterals;
  int Prev = -1;
  for (bool First = true, More;; First = false) {
    uint8_t Key;
    if (!nextKey(S, Lits, First, Prev, More, Key, KeyScratch, eventKeyOf))
      return false;
    if (!More)
      return true;
    bool Read;
    switch (static_cast<EventKey>(Key)) {
    case PhKey:
      Read = scanScalarText(S, E.Ph, E.Store[0]);
      break;
    case CatKey:
      Read = scanScalarText(S, E.Cat, E.Store[1]);
      break;
    case NameKey:
      Read = scanScalarText(S, E.Name, E.Store[2]);
      break;
    case TidKey:
      Read = scanScalarText(S, E.Tid, E.Store[3]);
      break;
    case TsKey:
      Read = scanDouble(S, E.Ts, Scratch);
      break;
    case DurKey:
      Read = scanDouble(S, E.Dur, Scratch);
      break;
    case ArgsKey:
      Read = scanArgs(S, E, KeyScratch, Scratch);
      break;
    default:
      Read = S.skipValue();
      break;
    }
    if (!Read)
      return false;
  }
}

} // namespace

int classifyPhase(llvm::StringRef Name) {
  if (Name.starts_with("autograd::engine::evaluate_function"))
    return Backward;
  // One pass over the name where four case-insensitive searches (StringRef::
  // contains_insensitive) used to be: kernel names run to hundreds of characters, and the
  // searches were a fifth of importing a real kineto trace. Same answers: "backward" wins
  // wherever it is, then zero_grad, optimizer, forward.
  bool Found[NumPhases] = {};
  // Word (lower case) at I, ASCII letters in either case, as equals_insensitive compares,
  // but inline: kernel names are long and full of o, f and b, and the call per candidate
  // letter was a third of the classification.
  auto at = [&](size_t I, llvm::StringRef Word) {
    if (Name.size() - I < Word.size())
      return false;
    for (size_t K = 0; K < Word.size(); ++K) {
      const char C = Name[I + K], W = Word[K];
      if (W >= 'a' && W <= 'z' ? (C | 0x20) != W : C != W)
        return false;
    }
    return true;
  };
  // Candidates: where b, z, o or f (either case) is followed by the word's second letter.
  // Kernel names are full of those letters, and a switch per byte mispredicted its way
  // through 9% of importing the ResNet-50 fixture trace; where the target has SSE2, 16
  // places are sifted at a time by their first two letters, and only the few left are
  // compared letter by letter (the same comparison, so the same answers).
  auto check = [&](size_t I) {
    switch (Name[I] | 0x20) { // lower case for letters; nothing else maps onto b, z, o, f
    case 'b':
      return at(I, "backward");
    case 'z':
      Found[ZeroGrad] |= at(I, "zero_grad");
      break;
    case 'o':
      Found[Optimizer] |= at(I, "optimizer");
      break;
    case 'f':
      Found[Forward] |= at(I, "forward");
      break;
    default:
      break;
    }
    return false;
  };
  size_t I = 0;
  const size_t N = Name.size();
#ifdef __SSE2__
  const __m128i Case = _mm_set1_epi8(0x20);
  auto pair = [](__m128i First, __m128i Second, char A, char B) {
    return _mm_and_si128(_mm_cmpeq_epi8(First, _mm_set1_epi8(A)),
                         _mm_cmpeq_epi8(Second, _mm_set1_epi8(B)));
  };
  // Bits for the places [I, I + 16) of the 17 bytes at P whose first two letters may
  // start a word.
  auto candidates = [&](const char *P) {
    const __m128i First =
        _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i *>(P)), Case);
    const __m128i Second =
        _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i *>(P + 1)), Case);
    return static_cast<unsigned>(_mm_movemask_epi8(
        _mm_or_si128(_mm_or_si128(pair(First, Second, 'b', 'a'), pair(First, Second, 'z', 'e')),
                     _mm_or_si128(pair(First, Second, 'o', 'p'), pair(First, Second, 'f', 'o')))));
  };
  for (; N - I >= 17; I += 16)
    for (unsigned Hits = candidates(Name.data() + I); Hits; Hits &= Hits - 1)
      if (check(I + static_cast<size_t>(__builtin_ctz(Hits))))
        return Backward;
  // The last (up to 16) places: of a long name, from its last 17 bytes, the places
  // already sifted masked off; a short one (most operator names) from a zero-padded copy,
  // zeros matching no letter. A byte-by-byte loop here was most of what the sifting left.
  if (I < N) {
    if (N >= 17) {
      const size_t From = N - 17;
      for (unsigned Hits = candidates(Name.data() + From) & (~0u << (I - From)); Hits;
           Hits &= Hits - 1)
        if (check(From + static_cast<size_t>(__builtin_ctz(Hits))))
          return Backward;
    } else {
      char Tail[32] = {};
      std::memcpy(Tail, Name.data(), N);
      for (unsigned Hits = candidates(Tail); Hits; Hits &= Hits - 1)
        if (check(static_cast<size_t>(__builtin_ctz(Hits))))
          return Backward;
    }
    I = N;
  }
#endif
  for (; I < N; ++I)
    if (check(I))
      return Backward;
  for (int K : {ZeroGrad, Optimizer, Forward})
    if (Found[K])
      return K;
  return -1;
}

namespace {

void resetEvent(Event &E) {
  // Without giving the strings' buffers back: the next event reuses them.
  // Store keeps its buffers for reuse. Each view cleared on its own: as a chain, GCC wrote
  // one and copied it to the others through a load that waited on the two stores.
  E.Ph = llvm::StringRef();
  E.Cat = llvm::StringRef();
  E.Name = llvm::StringRef();
  E.Tid = llvm::StringRef();
  E.Ts = std::numeric_limits<double>::quiet_NaN();
  E.Dur = 0;
  E.Memory = false;
  E.Phase = -1;
  E.Bytes = E.Addr = E.TotalAllocated = E.TotalReserved = E.DeviceType = E.DeviceId =
      std::nullopt;
}

/// What both readers work out from an event they have read: whether it is a kineto
/// `[memory]` instant event, and a complete event's phase.
void finishEvent(Event &E) {
  E.Memory = E.Name == "[memory]" && (E.Ph == "i" || E.Ph == "I");
  E.Phase = E.Ph == "X" ? static_cast<int8_t>(classifyPhase(E.Name)) : -1;
}

/// Reads one element of traceEvents into E. Scratch: buffers the in-place reader reuses.
llvm::Error readEvent(JsonCursor &C, Event &E, std::string (&Scratch)[2]) {
  resetEvent(E);
  auto T = C.peekToken();
  if (!T)
    return T.takeError();
  if (*T != '{')
    return C.skipValue(); // not an event object: ignored like Perfetto does
  JsonScanner Scanner(C.buffered());
  if (scanEvent(Scanner, E, Scratch[0], Scratch[1])) {
    C.advance(Scanner.consumed());
  } else {
    resetEvent(E);
    auto Num = [&](double &Into) -> llvm::Error {
      auto D = readDouble(C);
      if (!D)
        return D.takeError();
      Into = *D;
      return llvm::Error::success();
    };
    if (llvm::Error Err = C.readObject([&](llvm::StringRef Key) -> llvm::Error {
          if (Key == "ph")
            return readScalarText(C, E.Ph, E.Store[0]);
          if (Key == "cat")
            return readScalarText(C, E.Cat, E.Store[1]);
          if (Key == "name")
            return readScalarText(C, E.Name, E.Store[2]);
          if (Key == "tid")
            return readScalarText(C, E.Tid, E.Store[3]);
          if (Key == "ts")
            return Num(E.Ts);
          if (Key == "dur")
            return Num(E.Dur);
          if (Key == "args")
            return readArgs(C, E);
          return C.skipValue();
        }))
      return Err;
  }
  finishEvent(E);
  return llvm::Error::success();
}

/// The events a helper thread read from one chunk, and where each starts in it.
struct EventBatch : ChunkScan {
  /// The first Size are this chunk's; the rest are kept for reuse. A deque: events never
  /// move (their views may point into their own Store).
  std::deque<Event> Events;
  std::vector<size_t> Starts;
  size_t Size = 0;
  size_t End = 0; ///< just past the last event's '}'
  std::string Scratch[2];
};

bool isSpace(char C) { return C == ' ' || C == '\n' || C == '\r' || C == '\t'; }

/// Where the next element starts after an element ending at P: past whitespace, ',' and
/// whitespace, a '{' (the separators as JsonCursor::readArray reads them); npos when
/// anything else comes first or the chunk ends.
size_t nextObjectAfter(llvm::StringRef Chunk, size_t P) {
  while (P < Chunk.size() && isSpace(Chunk[P]))
    ++P;
  if (P == Chunk.size() || Chunk[P] != ',')
    return llvm::StringRef::npos;
  ++P;
  while (P < Chunk.size() && isSpace(Chunk[P]))
    ++P;
  return P < Chunk.size() && Chunk[P] == '{' ? P : llvm::StringRef::npos;
}

/// Where the first element of an array of objects seems to start in Chunk: a '{' after
/// '}' and ',' (with whitespace between), or npos.
size_t firstElementGuess(llvm::StringRef Chunk) {
  for (size_t At = Chunk.find('}'); At != llvm::StringRef::npos; At = Chunk.find('}', At + 1))
    if (size_t P = nextObjectAfter(Chunk, At + 1); P != llvm::StringRef::npos)
      return P;
  return llvm::StringRef::npos;
}

/// The whole events of Chunk from At, an element's start, separated as
/// JsonCursor::readArray separates them (whitespace, ',', whitespace), into B; stops at the
/// first it cannot read in place (one straddling the chunk's end, unusual text), or once
/// Halt is set.
void scanEvents(llvm::StringRef Chunk, size_t At, EventBatch &B,
                const std::atomic<bool> *Halt) {
  B.Size = 0;
  B.End = 0;
  B.Starts.clear();
  while (At != llvm::StringRef::npos) {
    if (Halt && Halt->load(std::memory_order_relaxed))
      return;
    if (B.Size == B.Events.size())
      B.Events.emplace_back();
    Event &E = B.Events[B.Size];
    resetEvent(E);
    JsonScanner S(Chunk.substr(At));
    if (!scanEvent(S, E, B.Scratch[0], B.Scratch[1]))
      return;
    finishEvent(E);
    B.Starts.push_back(At);
    ++B.Size;
    At += S.consumed();
    B.End = At;
    At = nextObjectAfter(Chunk, At);
  }
}

/// The helper thread's part: the whole events of Chunk from the first guessed element
/// start.
void scanAhead(llvm::StringRef Chunk, std::unique_ptr<ChunkScan> &Into,
               const std::atomic<bool> &Halt) {
  if (!Into)
    Into = std::make_unique<EventBatch>();
  scanEvents(Chunk, firstElementGuess(Chunk), static_cast<EventBatch &>(*Into), &Halt);
}

} // namespace

llvm::Expected<int64_t> forEachEvent(llvm::StringRef Path, size_t ChunkBytes, bool ParseAhead,
                                     llvm::function_ref<void(const Event &)> Visit,
                                     llvm::function_ref<void(uint64_t)> Progress) {
  auto Reader = ByteReader::open(Path, ChunkBytes, ByteReader::Inflater::Fastest,
                                 ParseAhead ? ChunkScanner(scanAhead) : ChunkScanner());
  if (!Reader)
    return Reader.takeError();
  JsonCursor C(std::move(*Reader), Path.str());
  int64_t Count = 0;
  Event E;
  std::string Scratch[2];
  EventBatch Own; // events the importer reads in place itself
  // Where the current chunk starts in the stream, and the first of the helper's events in
  // it not yet passed.
  uint64_t BatchChunk = std::numeric_limits<uint64_t>::max();
  size_t Next = 0;
  uint64_t ProgressChunk = std::numeric_limits<uint64_t>::max();
  auto streamArray = [&]() {
    return C.readArray([&]() -> llvm::Error {
      // readArray has stopped on the element's first character, in the current chunk.
      const auto *B = static_cast<const EventBatch *>(C.currentScan());
      const size_t At = C.chunkOffset();
      if (Progress && C.offset() - At != ProgressChunk) {
        ProgressChunk = C.offset() - At;
        Progress(C.fileBytesRead());
      }
      if (B) {
        if (C.offset() - At != BatchChunk) {
          BatchChunk = C.offset() - At;
          Next = 0;
        }
        while (Next < B->Size && B->Starts[Next] < At)
          ++Next;
        if (Next < B->Size && B->Starts[Next] == At) {
          for (; Next < B->Size; ++Next) {
            ++Count;
            Visit(B->Events[Next]);
          }
          C.advance(B->End - At);
          return llvm::Error::success();
        }
      }
      if (!B || At >= B->End) {
        // Nothing read ahead from here on: the rest of the chunk read in place the same
        // way, the cursor kept for what the scanner declines. Reading event by event
        // through the cursor's array steps cost the importer, which sets the pace, ~3%
        // of importing a kineto trace.
        scanEvents(C.buffered(), 0, Own, nullptr);
        if (Own.Size > 0) {
          for (size_t I = 0; I < Own.Size; ++I) {
            ++Count;
            Visit(Own.Events[I]);
          }
          C.advance(Own.End);
          return llvm::Error::success();
        }
      }
      if (llvm::Error Err = readEvent(C, E, Scratch))
        return Err;
      ++Count;
      Visit(E);
      return llvm::Error::success();
    });
  };
  auto T = C.peekToken();
  if (!T)
    return T.takeError();
  if (*T == '[') {
    if (llvm::Error Err = streamArray())
      return Err;
    return Count;
  }
  if (*T != '{')
    return C.error("expected a Chrome trace: a JSON object with \"traceEvents\" or an array "
                   "of events");
  bool Found = false;
  if (llvm::Error Err = C.readObject([&](llvm::StringRef Key) -> llvm::Error {
        if (Key != "traceEvents")
          return C.skipValue();
        Found = true;
        return streamArray();
      }))
    return Err;
  if (!Found)
    return C.error("no \"traceEvents\" array: not a Chrome trace");
  return Count;
}

} // namespace trainmem::chrome
