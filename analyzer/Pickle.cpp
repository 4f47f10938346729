//===- Pickle.cpp - a data-only Python unpickler ------------------------------===//
//
// A stack machine over the opcodes of CPython's Lib/pickle.py (protocols 0-5), limited
// to those that build data. The opcodes able to import or call (GLOBAL, STACK_GLOBAL,
// REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4) are refused before anything
// is read past them; persistent IDs and out-of-band buffers are refused as unsupported.
// Every length is checked against the bytes that remain before anything is allocated,
// and the stack, the MARKs and the nesting of containers are bounded.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/Pickle.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/JSON.h"

#include <array>
#include <cassert>
#include <cstring>
#include <unordered_map>

namespace trainmem::pickle {

//===- Value ------------------------------------------------------------------===//

Value::~Value() {
  // Children shared with nobody else are emptied before they die, so destruction walks
  // a work list instead of recursing once per level of nesting.
  std::vector<ValuePtr> Work;
  auto Release = [&Work](Value &V) {
    if (auto *Items = std::get_if<std::vector<ValuePtr>>(&V.Payload)) {
      for (ValuePtr &P : *Items)
        Work.push_back(std::move(P));
      Items->clear();
    } else if (auto *Entries = std::get_if<std::vector<Entry>>(&V.Payload)) {
      for (Entry &E : *Entries) {
        Work.push_back(std::move(E.first));
        Work.push_back(std::move(E.second));
      }
      Entries->clear();
    }
  };
  Release(*this);
  while (!Work.empty()) {
    ValuePtr P = std::move(Work.back());
    Work.pop_back();
    if (P && P.use_count() == 1)
      Release(*P);
  }
}

Value Value::boolean(bool B) { return scalar(Kind::Bool, int64_t(B)); }
Value Value::integer(int64_t I) { return scalar(Kind::Int, I); }
Value Value::floating(double F) { return scalar(Kind::Float, F); }
Value Value::string(std::string S) { return scalar(Kind::String, std::move(S)); }
Value Value::bytes(std::string S) { return scalar(Kind::Bytes, std::move(S)); }

static uint32_t depthOf(const ValuePtr &P) { return P ? P->depth() : 0; }

Value Value::list(std::vector<ValuePtr> Items) {
  Value V;
  V.K = Kind::List;
  V.Depth = 1;
  for (const ValuePtr &P : Items)
    V.Depth = std::max(V.Depth, depthOf(P) + 1);
  V.Payload = std::move(Items);
  return V;
}

Value Value::tuple(std::vector<ValuePtr> Items) {
  Value V = list(std::move(Items));
  V.K = Kind::Tuple;
  return V;
}

Value Value::dict(std::vector<Entry> Entries) {
  Value V;
  V.K = Kind::Dict;
  V.Depth = 1;
  for (const Entry &E : Entries)
    V.Depth = std::max({V.Depth, depthOf(E.first) + 1, depthOf(E.second) + 1});
  V.Payload = std::move(Entries);
  return V;
}

const char *Value::kindName(Kind K) {
  static const char *const Names[] = {"None",  "bool", "int",   "float", "str",
                                      "bytes", "list", "tuple", "dict"};
  return Names[size_t(K)];
}

bool Value::asBool() const {
  assert(isBool());
  return std::get<int64_t>(Payload) != 0;
}

int64_t Value::asInt() const {
  assert(isInt());
  return std::get<int64_t>(Payload);
}

double Value::asDouble() const {
  assert(isNumber());
  if (isInt())
    return double(std::get<int64_t>(Payload));
  return std::get<double>(Payload);
}

llvm::StringRef Value::asString() const {
  assert(isString() || isBytes());
  return std::get<std::string>(Payload);
}

const std::vector<ValuePtr> &Value::items() const {
  assert(isSequence());
  return std::get<std::vector<ValuePtr>>(Payload);
}

const std::vector<Value::Entry> &Value::entries() const {
  assert(isDict());
  return std::get<std::vector<Entry>>(Payload);
}

size_t Value::size() const {
  if (isSequence())
    return items().size();
  if (isDict())
    return entries().size();
  return 0;
}

const Value *Value::get(llvm::StringRef Key) const {
  if (!isDict())
    return nullptr;
  const std::vector<Entry> &Es = entries();
  for (auto It = Es.rbegin(); It != Es.rend(); ++It)
    if (It->first && It->first->isString() && It->first->asString() == Key)
      return It->second.get();
  return nullptr;
}

//===- Opcodes ----------------------------------------------------------------===//

namespace {

enum class OpClass { Data, Code, Unsupported };

struct OpInfo {
  const char *Name;
  OpClass Class;
};

/// The opcode table of CPython's Lib/pickle.py; Name is null for bytes that are no opcode.
OpInfo opInfo(uint8_t Op) {
  constexpr OpClass D = OpClass::Data, C = OpClass::Code, U = OpClass::Unsupported;
  struct Row {
    uint8_t Byte;
    const char *Name;
    OpClass Class;
  };
  // clang-format off
  static const Row Table[] = {
    {'(', "MARK", D}, {'.', "STOP", D}, {'0', "POP", D}, {'1', "POP_MARK", D},
    {'2', "DUP", D}, {'F', "FLOAT", D}, {'I', "INT", D}, {'J', "BININT", D},
    {'K', "BININT1", D}, {'L', "LONG", D}, {'M', "BININT2", D}, {'N', "NONE", D},
    {'P', "PERSID", U}, {'Q', "BINPERSID", U}, {'R', "REDUCE", C}, {'S', "STRING", D},
    {'T', "BINSTRING", D}, {'U', "SHORT_BINSTRING", D}, {'V', "UNICODE", D},
    {'X', "BINUNICODE", D}, {'a', "APPEND", D}, {'b', "BUILD", C}, {'c', "GLOBAL", C},
    {'d', "DICT", D}, {'}', "EMPTY_DICT", D}, {'e', "APPENDS", D}, {'g', "GET", D},
    {'h', "BINGET", D}, {'i', "INST", C}, {'j', "LONG_BINGET", D}, {'l', "LIST", D},
    {']', "EMPTY_LIST", D}, {'o', "OBJ", C}, {'p', "PUT", D}, {'q', "BINPUT", D},
    {'r', "LONG_BINPUT", D}, {'s', "SETITEM", D}, {'t', "TUPLE", D},
    {')', "EMPTY_TUPLE", D}, {'u', "SETITEMS", D}, {'G', "BINFLOAT", D}, {0x80, "PROTO", D},
    {0x81, "NEWOBJ", C}, {0x82, "EXT1", C}, {0x83, "EXT2", C}, {0x84, "EXT4", C},
    {0x85, "TUPLE1", D}, {0x86, "TUPLE2", D}, {0x87, "TUPLE3", D}, {0x88, "NEWTRUE", D},
    {0x89, "NEWFALSE", D}, {0x8a, "LONG1", D}, {0x8b, "LONG4", D}, {'B', "BINBYTES", D},
    {'C', "SHORT_BINBYTES", D}, {0x8c, "SHORT_BINUNICODE", D}, {0x8d, "BINUNICODE8", D},
    {0x8e, "BINBYTES8", D}, {0x8f, "EMPTY_SET", D}, {0x90, "ADDITEMS", D},
    {0x91, "FROZENSET", D}, {0x92, "NEWOBJ_EX", C}, {0x93, "STACK_GLOBAL", C},
    {0x94, "MEMOIZE", D}, {0x95, "FRAME", D}, {0x96, "BYTEARRAY8", D},
    {0x97, "NEXT_BUFFER", U}, {0x98, "READONLY_BUFFER", U}};
  // clang-format on
  static const std::array<OpInfo, 256> ByByte = [] {
    std::array<OpInfo, 256> A;
    A.fill({nullptr, U});
    for (const Row &R : Table)
      A[R.Byte] = {R.Name, R.Class};
    return A;
  }();
  return ByByte[Op];
}

/// "c" for printable opcodes, "\x93" for the others: how pickletools shows them.
std::string opByte(uint8_t Op) {
  if (Op > 0x20 && Op < 0x7f)
    return std::string(1, char(Op));
  return "\\x" + llvm::utohexstr(Op, /*LowerCase=*/true, /*Width=*/2);
}

void appendUtf8(std::string &Out, uint32_t CP) {
  // Lone surrogates (which Python's str can hold) have no UTF-8 form.
  if ((CP >= 0xD800 && CP <= 0xDFFF) || CP > 0x10FFFF)
    CP = 0xFFFD;
  if (CP < 0x80) {
    Out += char(CP);
  } else if (CP < 0x800) {
    Out += char(0xC0 | (CP >> 6));
    Out += char(0x80 | (CP & 0x3F));
  } else if (CP < 0x10000) {
    Out += char(0xE0 | (CP >> 12));
    Out += char(0x80 | ((CP >> 6) & 0x3F));
    Out += char(0x80 | (CP & 0x3F));
  } else {
    Out += char(0xF0 | (CP >> 18));
    Out += char(0x80 | ((CP >> 12) & 0x3F));
    Out += char(0x80 | ((CP >> 6) & 0x3F));
    Out += char(0x80 | (CP & 0x3F));
  }
}

/// Strings reach report writers (llvm::json asserts on invalid UTF-8), so anything that
/// is not UTF-8 (Python's "surrogatepass" lets lone surrogates into pickles) becomes
/// U+FFFD rather than an error: a strange file name should not lose a whole snapshot.
std::string validUtf8(llvm::StringRef S) {
  if (llvm::json::isUTF8(S))
    return S.str();
  return llvm::json::fixUTF8(S);
}

int hexDigit(char C) {
  if (C >= '0' && C <= '9')
    return C - '0';
  if (C >= 'a' && C <= 'f')
    return C - 'a' + 10;
  if (C >= 'A' && C <= 'F')
    return C - 'A' + 10;
  return -1;
}

} // namespace

//===- Unpickler --------------------------------------------------------------===//

class Unpickler {
public:
  Unpickler(llvm::StringRef Data, llvm::StringRef Name, const UnpickleLimits &Limits)
      : Data(Data), Name(Name.str()), Limits(Limits) {}

  llvm::Expected<Value> run();

private:
  llvm::StringRef Data;
  std::string Name;
  UnpickleLimits Limits;
  size_t Pos = 0;
  size_t OpOffset = 0;
  const char *OpName = "";
  std::vector<ValuePtr> Stack;
  std::vector<size_t> Marks;
  std::unordered_map<uint64_t, ValuePtr> Memo;

  llvm::Error fail(const llvm::Twine &Msg) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   Name + ": offset " + llvm::Twine(OpOffset) + ": " + Msg);
  }
  llvm::Error truncated(uint64_t Needed) const {
    return fail(llvm::Twine("truncated: ") + OpName + " needs " + llvm::Twine(Needed) +
                " more bytes, " + llvm::Twine(Data.size() - Pos) + " left");
  }

  llvm::Expected<llvm::StringRef> take(uint64_t N);
  template <typename T> llvm::Expected<T> takeLE();
  llvm::Expected<llvm::StringRef> takeLine();
  /// The length prefix of a string or bytes opcode.
  llvm::Expected<uint64_t> takeLength(uint8_t Op);

  llvm::Error push(Value V) { return pushPtr(std::make_shared<Value>(std::move(V))); }
  llvm::Error pushPtr(ValuePtr P);
  llvm::Expected<ValuePtr> pop();
  llvm::Expected<Value *> top();
  llvm::Expected<std::vector<ValuePtr>> popToMark();
  llvm::Error adopt(Value &Parent, const ValuePtr &Child);
  llvm::Error growable(Value &Target, Value::Kind Expected);
  llvm::Expected<Value> makeContainer(Value::Kind K, std::vector<ValuePtr> Items);

  llvm::Error putMemo(uint64_t Index);
  llvm::Error getMemo(uint64_t Index);

  llvm::Expected<int64_t> parseTextInt(llvm::StringRef Text);
  llvm::Expected<int64_t> decodeLong(llvm::StringRef Bytes);
  llvm::Expected<std::string> decodeEscapedString(llvm::StringRef Quoted);
  llvm::Expected<std::string> decodeRawUnicodeEscape(llvm::StringRef Text);

  llvm::Error step(uint8_t Op, bool &Stopped, ValuePtr &Result);
};

llvm::Expected<llvm::StringRef> Unpickler::take(uint64_t N) {
  if (N > Data.size() - Pos)
    return truncated(N);
  llvm::StringRef S = Data.substr(Pos, N);
  Pos += N;
  return S;
}

template <typename T> llvm::Expected<T> Unpickler::takeLE() {
  auto S = take(sizeof(T));
  if (!S)
    return S.takeError();
  return llvm::support::endian::read<T, llvm::support::little, llvm::support::unaligned>(S->data());
}

llvm::Expected<uint64_t> Unpickler::takeLength(uint8_t Op) {
  switch (Op) {
  case 'U':
  case 'C':
  case 0x8c:
    return takeLE<uint8_t>();
  case 'X':
  case 'B':
    return takeLE<uint32_t>();
  case 'T': {
    auto N = takeLE<int32_t>();
    if (N && *N < 0)
      return fail("BINSTRING has a negative length");
    return N ? llvm::Expected<uint64_t>(uint64_t(*N)) : N.takeError();
  }
  default:
    return takeLE<uint64_t>();
  }
}

llvm::Expected<llvm::StringRef> Unpickler::takeLine() {
  size_t End = Data.find('\n', Pos);
  if (End == llvm::StringRef::npos)
    return fail(llvm::Twine("truncated: ") + OpName + " needs a line ending in \\n");
  llvm::StringRef Line = Data.slice(Pos, End);
  Pos = End + 1;
  return Line;
}

llvm::Error Unpickler::pushPtr(ValuePtr P) {
  if (Stack.size() >= Limits.MaxStackItems)
    return fail("more than " + llvm::Twine(Limits.MaxStackItems) + " values on the stack");
  Stack.push_back(std::move(P));
  return llvm::Error::success();
}

llvm::Expected<ValuePtr> Unpickler::pop() {
  size_t Floor = Marks.empty() ? 0 : Marks.back();
  if (Stack.size() <= Floor)
    return fail(llvm::Twine("stack underflow in ") + OpName);
  ValuePtr P = std::move(Stack.back());
  Stack.pop_back();
  return P;
}

llvm::Expected<Value *> Unpickler::top() {
  size_t Floor = Marks.empty() ? 0 : Marks.back();
  if (Stack.size() <= Floor)
    return fail(llvm::Twine("stack underflow in ") + OpName);
  return Stack.back().get();
}

llvm::Expected<std::vector<ValuePtr>> Unpickler::popToMark() {
  if (Marks.empty())
    return fail(llvm::Twine("MARK missing for ") + OpName);
  size_t M = Marks.back();
  Marks.pop_back();
  std::vector<ValuePtr> Items(std::make_move_iterator(Stack.begin() + M),
                              std::make_move_iterator(Stack.end()));
  Stack.resize(M);
  return Items;
}

llvm::Error Unpickler::adopt(Value &Parent, const ValuePtr &Child) {
  if (Child.get() == &Parent)
    return fail(llvm::Twine(OpName) + " would put a " + Parent.kindName() +
                " inside itself; trainmem reads acyclic data only");
  Child->Nested = true;
  uint64_t Depth = uint64_t(Child->Depth) + 1;
  if (Depth > Limits.MaxDepth)
    return fail("containers nested more than " + llvm::Twine(Limits.MaxDepth) + " deep");
  Parent.Depth = std::max(Parent.Depth, uint32_t(Depth));
  return llvm::Error::success();
}

llvm::Error Unpickler::growable(Value &Target, Value::Kind Expected) {
  if (Target.K != Expected)
    return fail(llvm::Twine(OpName) + " needs a " + Value::kindName(Expected) +
                " below it on the stack, found " + Target.kindName());
  // CPython's pickler fills a container before placing it in its parent; only a
  // cyclic structure grows a container that is already inside another one.
  if (Target.Nested)
    return fail(llvm::Twine(OpName) + " grows a " + Target.kindName() +
                " that is already inside another container; trainmem reads acyclic "
                "data only");
  return llvm::Error::success();
}

llvm::Expected<Value> Unpickler::makeContainer(Value::Kind K, std::vector<ValuePtr> Items) {
  Value V = Value::list();
  V.K = K;
  if (K == Value::Kind::Dict) {
    if (Items.size() % 2)
      return fail(llvm::Twine(OpName) + " has an odd number of items (" +
                  llvm::Twine(Items.size()) + ")");
    V.Payload = std::vector<Value::Entry>();
    auto &Es = std::get<std::vector<Value::Entry>>(V.Payload);
    Es.reserve(Items.size() / 2);
    for (size_t I = 0; I < Items.size(); I += 2) {
      if (auto E = adopt(V, Items[I]))
        return E;
      if (auto E = adopt(V, Items[I + 1]))
        return E;
      Es.emplace_back(std::move(Items[I]), std::move(Items[I + 1]));
    }
    return V;
  }
  for (const ValuePtr &P : Items)
    if (auto E = adopt(V, P))
      return E;
  V.Payload = std::move(Items);
  return V;
}

llvm::Error Unpickler::putMemo(uint64_t Index) {
  auto Top = top();
  if (!Top)
    return Top.takeError();
  Memo[Index] = Stack.back();
  return llvm::Error::success();
}

llvm::Error Unpickler::getMemo(uint64_t Index) {
  auto It = Memo.find(Index);
  if (It == Memo.end())
    return fail("memo index " + llvm::Twine(Index) + " is unknown (" + OpName + ")");
  return pushPtr(It->second);
}

llvm::Expected<int64_t> Unpickler::parseTextInt(llvm::StringRef Text) {
  // Python's int() ignores surrounding whitespace; LONG's text may end in 'L'.
  llvm::StringRef T = Text.trim();
  bool Negative = false;
  if (T.consume_front("-"))
    Negative = true;
  else
    T.consume_front("+");
  if (T.empty() || T.find_first_not_of("0123456789") != llvm::StringRef::npos)
    return fail(llvm::Twine(OpName) + " argument '" + Text + "' is not a decimal integer");
  uint64_t Magnitude = 0;
  for (char C : T) {
    unsigned D = unsigned(C - '0');
    if (Magnitude > (UINT64_MAX - D) / 10)
      return fail(llvm::Twine(OpName) + " argument '" + Text + "' is beyond 64 bits");
    Magnitude = Magnitude * 10 + D;
  }
  uint64_t Limit = Negative ? uint64_t(INT64_MAX) + 1 : uint64_t(INT64_MAX);
  if (Magnitude > Limit)
    return fail(llvm::Twine(OpName) + " argument '" + Text + "' is beyond 64 bits");
  return Negative ? int64_t(0 - Magnitude) : int64_t(Magnitude);
}

llvm::Expected<int64_t> Unpickler::decodeLong(llvm::StringRef B) {
  // Little-endian two's complement of any length (CPython's decode_long); it fits in
  // int64 when every byte past the eighth repeats the sign.
  size_t N = B.size();
  if (N == 0)
    return 0;
  bool Negative = uint8_t(B[N - 1]) & 0x80;
  uint64_t V = 0;
  for (size_t I = 0; I < std::min<size_t>(N, 8); ++I)
    V |= uint64_t(uint8_t(B[I])) << (8 * I);
  if (N < 8) {
    if (Negative)
      V |= ~uint64_t(0) << (8 * N);
  } else {
    uint8_t Ext = Negative ? 0xFF : 0x00;
    bool Fits = (bool(uint8_t(B[7]) & 0x80) == Negative);
    for (size_t I = 8; I < N && Fits; ++I)
      Fits = uint8_t(B[I]) == Ext;
    if (!Fits)
      return fail(llvm::Twine(OpName) + " integer of " + llvm::Twine(N) +
                  " bytes is beyond 64 bits");
  }
  return int64_t(V);
}

llvm::Expected<std::string> Unpickler::decodeEscapedString(llvm::StringRef Line) {
  // Protocol 0 STRING: a quoted repr() of bytes, undone by codecs.escape_decode.
  if (Line.size() < 2 || Line.front() != Line.back() ||
      (Line.front() != '\'' && Line.front() != '"'))
    return fail("the STRING opcode argument must be quoted");
  llvm::StringRef S = Line.drop_front().drop_back();
  std::string Out;
  Out.reserve(S.size());
  for (size_t I = 0; I < S.size(); ++I) {
    char C = S[I];
    if (C != '\\') {
      Out += C;
      continue;
    }
    if (++I == S.size())
      return fail("STRING argument ends in a lone backslash");
    char E = S[I];
    switch (E) {
    case '\n': // a line continuation
      break;
    case '\\':
    case '\'':
    case '"':
      Out += E;
      break;
    case 'x': {
      int Hi = I + 1 < S.size() ? hexDigit(S[I + 1]) : -1;
      int Lo = I + 2 < S.size() ? hexDigit(S[I + 2]) : -1;
      if (Hi < 0 || Lo < 0)
        return fail("STRING argument has an invalid \\x escape");
      Out += char(Hi * 16 + Lo);
      I += 2;
      break;
    }
    default:
      if (E >= '0' && E <= '7') {
        unsigned V = unsigned(E - '0');
        for (int K = 0; K < 2 && I + 1 < S.size() && S[I + 1] >= '0' && S[I + 1] <= '7'; ++K)
          V = V * 8 + unsigned(S[++I] - '0');
        Out += char(V & 0xFF);
      } else {
        // Letter escapes come in pairs: the letter, then the byte it stands for.
        static const char Pairs[] = "a\ab\bf\fn\nr\rt\tv\v";
        size_t K = 0;
        while (K + 1 < sizeof Pairs && Pairs[K] != E)
          K += 2;
        if (K + 1 < sizeof Pairs) {
          Out += Pairs[K + 1];
        } else { // unknown escapes stay as written
          Out += '\\';
          Out += E;
        }
      }
    }
  }
  return validUtf8(Out);
}

llvm::Expected<std::string> Unpickler::decodeRawUnicodeEscape(llvm::StringRef S) {
  // Protocol 0 UNICODE: 'raw-unicode-escape', i.e. Latin-1 bytes with \uXXXX and
  // \UXXXXXXXX escapes, recognised only after an odd run of backslashes (CPython's
  // _PyUnicode_DecodeRawUnicodeEscape).
  std::string Out;
  Out.reserve(S.size());
  size_t I = 0;
  while (I < S.size()) {
    if (S[I] != '\\') {
      appendUtf8(Out, uint8_t(S[I++]));
      continue;
    }
    size_t Run = 0;
    while (I < S.size() && S[I] == '\\') {
      Out += '\\';
      ++I;
      ++Run;
    }
    if (Run % 2 == 0 || I >= S.size() || (S[I] != 'u' && S[I] != 'U'))
      continue;
    Out.pop_back();
    size_t Count = S[I] == 'u' ? 4 : 8;
    ++I;
    if (S.size() - I < Count)
      return fail("UNICODE argument has a truncated \\u escape");
    uint32_t CP = 0;
    for (size_t K = 0; K < Count; ++K) {
      int D = hexDigit(S[I + K]);
      if (D < 0)
        return fail("UNICODE argument has an invalid \\u escape");
      CP = CP * 16 + uint32_t(D);
    }
    if (CP > 0x10FFFF)
      return fail("UNICODE argument has a \\U escape beyond U+10FFFF");
    I += Count;
    appendUtf8(Out, CP);
  }
  return Out;
}

llvm::Error Unpickler::step(uint8_t Op, bool &Stopped, ValuePtr &Result) {
  using K = Value::Kind;
  // A helper for the many opcodes that read a payload and push one value.
#define TRY(Var, Expr)                                                                             \
  auto Var = (Expr);                                                                               \
  if (!Var)                                                                                        \
    return Var.takeError();

  switch (Op) {
  case 0x80: { // PROTO
    TRY(P, take(1));
    uint8_t Proto = uint8_t((*P)[0]);
    if (Proto > 5)
      return fail("unsupported pickle protocol " + llvm::Twine(unsigned(Proto)));
    return llvm::Error::success();
  }
  case 0x95: { // FRAME: a length prefix for buffering; the opcodes inside are read as usual
    TRY(Len, takeLE<uint64_t>());
    if (*Len > Data.size() - Pos)
      return fail("truncated: FRAME of " + llvm::Twine(*Len) + " bytes, " +
                  llvm::Twine(Data.size() - Pos) + " left");
    return llvm::Error::success();
  }
  case '.': { // STOP
    TRY(P, pop());
    Result = std::move(*P);
    Stopped = true;
    return llvm::Error::success();
  }
  case '(': // MARK
    if (Marks.size() >= Limits.MaxStackItems)
      return fail("more than " + llvm::Twine(Limits.MaxStackItems) + " MARKs");
    Marks.push_back(Stack.size());
    return llvm::Error::success();
  case '0': { // POP: with nothing above the last MARK, CPython pops the MARK
    size_t Floor = Marks.empty() ? 0 : Marks.back();
    if (Stack.size() > Floor) {
      Stack.pop_back();
      return llvm::Error::success();
    }
    if (Marks.empty())
      return fail("stack underflow in POP");
    Marks.pop_back();
    return llvm::Error::success();
  }
  case '1': { // POP_MARK
    TRY(Items, popToMark());
    return llvm::Error::success();
  }
  case '2': { // DUP
    TRY(T, top());
    return pushPtr(Stack.back());
  }
  case 'N':
    return push(Value::none());
  case 0x88:
    return push(Value::boolean(true));
  case 0x89:
    return push(Value::boolean(false));
  case 'I': { // INT: "01"/"00" are True/False from protocol 0
    TRY(Line, takeLine());
    if (*Line == "01")
      return push(Value::boolean(true));
    if (*Line == "00")
      return push(Value::boolean(false));
    TRY(V, parseTextInt(*Line));
    return push(Value::integer(*V));
  }
  case 'L': { // LONG
    TRY(Line, takeLine());
    llvm::StringRef T = *Line;
    T.consume_back("L");
    TRY(V, parseTextInt(T));
    return push(Value::integer(*V));
  }
  case 'J': {
    TRY(V, takeLE<int32_t>());
    return push(Value::integer(*V));
  }
  case 'K': {
    TRY(V, takeLE<uint8_t>());
    return push(Value::integer(*V));
  }
  case 'M': {
    TRY(V, takeLE<uint16_t>());
    return push(Value::integer(*V));
  }
  case 0x8a: { // LONG1
    TRY(N, takeLE<uint8_t>());
    TRY(B, take(*N));
    TRY(V, decodeLong(*B));
    return push(Value::integer(*V));
  }
  case 0x8b: { // LONG4
    TRY(N, takeLE<int32_t>());
    if (*N < 0)
      return fail("LONG4 has a negative byte count");
    TRY(B, take(uint64_t(*N)));
    TRY(V, decodeLong(*B));
    return push(Value::integer(*V));
  }
  case 'F': { // FLOAT: repr() of a float, "inf" and "nan" included
    TRY(Line, takeLine());
    llvm::StringRef T = Line->trim();
    double D = 0;
    if (T.empty() || T.getAsDouble(D))
      return fail("FLOAT argument '" + *Line + "' is not a number");
    return push(Value::floating(D));
  }
  case 'G': { // BINFLOAT: big-endian IEEE 754 double
    TRY(B, take(8));
    uint64_t Bits =
        llvm::support::endian::read<uint64_t, llvm::support::big, llvm::support::unaligned>(
            B->data());
    double D;
    std::memcpy(&D, &Bits, sizeof D);
    return push(Value::floating(D));
  }
  case 'S': {
    TRY(Line, takeLine());
    TRY(S, decodeEscapedString(*Line));
    return push(Value::string(std::move(*S)));
  }
  case 'V': {
    TRY(Line, takeLine());
    TRY(S, decodeRawUnicodeEscape(*Line));
    return push(Value::string(std::move(*S)));
  }
  case 'T': // BINSTRING, SHORT_BINSTRING (Python 3 decodes them as str)
  case 'U':
  case 'X': // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
  case 0x8c:
  case 0x8d:
  case 'B': // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
  case 'C':
  case 0x8e:
  case 0x96: {
    TRY(N, takeLength(Op));
    TRY(B, take(*N));
    bool IsBytes = Op == 'B' || Op == 'C' || Op == 0x8e || Op == 0x96;
    return push(IsBytes ? Value::bytes(B->str()) : Value::string(validUtf8(*B)));
  }
  case ']':
    return push(Value::list());
  case ')':
    return push(Value::tuple());
  case '}':
    return push(Value::dict());
  case 0x8f: // EMPTY_SET
    return push(Value::list());
  case 'l':    // LIST
  case 't':    // TUPLE
  case 'd':    // DICT
  case 0x91: { // FROZENSET
    TRY(Items, popToMark());
    K Kind = Op == 't' ? K::Tuple : Op == 'd' ? K::Dict : K::List;
    TRY(V, makeContainer(Kind, std::move(*Items)));
    return push(std::move(*V));
  }
  case 0x85:
  case 0x86:
  case 0x87: {
    size_t N = size_t(Op - 0x84);
    size_t Floor = Marks.empty() ? 0 : Marks.back();
    if (Stack.size() < Floor + N)
      return fail(llvm::Twine("stack underflow in ") + OpName);
    std::vector<ValuePtr> Items(std::make_move_iterator(Stack.end() - N),
                                std::make_move_iterator(Stack.end()));
    Stack.resize(Stack.size() - N);
    TRY(V, makeContainer(K::Tuple, std::move(Items)));
    return push(std::move(*V));
  }
  case 'a': { // APPEND
    TRY(Item, pop());
    TRY(Target, top());
    if (auto E = growable(**Target, K::List))
      return E;
    if (auto E = adopt(**Target, *Item))
      return E;
    std::get<std::vector<ValuePtr>>((*Target)->Payload).push_back(std::move(*Item));
    return llvm::Error::success();
  }
  case 'e':    // APPENDS
  case 0x90: { // ADDITEMS (sets are lists here)
    TRY(Items, popToMark());
    TRY(Target, top());
    if (auto E = growable(**Target, K::List))
      return E;
    auto &Vec = std::get<std::vector<ValuePtr>>((*Target)->Payload);
    for (ValuePtr &P : *Items) {
      if (auto E = adopt(**Target, P))
        return E;
      Vec.push_back(std::move(P));
    }
    return llvm::Error::success();
  }
  case 's': { // SETITEM
    TRY(Val, pop());
    TRY(Key, pop());
    TRY(Target, top());
    if (auto E = growable(**Target, K::Dict))
      return E;
    if (auto E = adopt(**Target, *Key))
      return E;
    if (auto E = adopt(**Target, *Val))
      return E;
    std::get<std::vector<Value::Entry>>((*Target)->Payload)
        .emplace_back(std::move(*Key), std::move(*Val));
    return llvm::Error::success();
  }
  case 'u': { // SETITEMS
    TRY(Items, popToMark());
    TRY(Target, top());
    if (auto E = growable(**Target, K::Dict))
      return E;
    if (Items->size() % 2)
      return fail("SETITEMS has an odd number of items (" + llvm::Twine(Items->size()) + ")");
    auto &Es = std::get<std::vector<Value::Entry>>((*Target)->Payload);
    for (size_t I = 0; I < Items->size(); I += 2) {
      if (auto E = adopt(**Target, (*Items)[I]))
        return E;
      if (auto E = adopt(**Target, (*Items)[I + 1]))
        return E;
      Es.emplace_back(std::move((*Items)[I]), std::move((*Items)[I + 1]));
    }
    return llvm::Error::success();
  }
  case 'p': { // PUT
    TRY(Line, takeLine());
    TRY(Index, parseTextInt(*Line));
    if (*Index < 0)
      return fail("negative PUT argument");
    return putMemo(uint64_t(*Index));
  }
  case 'q': {
    TRY(Index, takeLE<uint8_t>());
    return putMemo(*Index);
  }
  case 'r': {
    TRY(Index, takeLE<uint32_t>());
    return putMemo(*Index);
  }
  case 0x94: // MEMOIZE
    return putMemo(Memo.size());
  case 'g': {
    TRY(Line, takeLine());
    TRY(Index, parseTextInt(*Line));
    if (*Index < 0)
      return fail("memo index " + llvm::Twine(*Index) + " is unknown (GET)");
    return getMemo(uint64_t(*Index));
  }
  case 'h': {
    TRY(Index, takeLE<uint8_t>());
    return getMemo(*Index);
  }
  case 'j': {
    TRY(Index, takeLE<uint32_t>());
    return getMemo(*Index);
  }
  default:
    break;
  }
#undef TRY
  return fail("opcode " + llvm::Twine(OpName) + " (" + opByte(Op) + ") is not handled");
}

llvm::Expected<Value> Unpickler::run() {
  while (true) {
    OpOffset = Pos;
    if (Pos >= Data.size())
      return fail("truncated: the pickle ends without a STOP opcode");
    uint8_t Op = uint8_t(Data[Pos++]);
    OpInfo Info = opInfo(Op);
    if (!Info.Name)
      return fail("unknown opcode 0x" + llvm::utohexstr(Op, true, 2) +
                  " (not a pickle, or a corrupt one)");
    OpName = Info.Name;
    if (Info.Class == OpClass::Code)
      return fail(llvm::Twine("opcode ") + Info.Name + " (" + opByte(Op) +
                  ") imports or calls code; trainmem reads data-only pickles");
    if (Info.Class == OpClass::Unsupported)
      return fail(llvm::Twine("opcode ") + Info.Name + " (" + opByte(Op) +
                  ") refers to objects outside the pickle (a persistent ID or an "
                  "out-of-band buffer) and is not supported; trainmem reads data-only "
                  "pickles");
    bool Stopped = false;
    ValuePtr Result;
    if (llvm::Error E = step(Op, Stopped, Result))
      return E;
    if (Stopped)
      return Value(*Result);
  }
}

llvm::Expected<Value> unpickle(llvm::StringRef Data, llvm::StringRef Name,
                               const UnpickleLimits &Limits) {
  Unpickler U(Data, Name, Limits);
  return U.run();
}

} // namespace trainmem::pickle
