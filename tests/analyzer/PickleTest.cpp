//===- PickleTest.cpp - the data-only unpickler -------------------------------===//
//
// Values pickled by CPython at protocols 0, 2, 4 and 5 (tests/data/traces, written by
// make_snapshots.py) must read back to the same tree, compared through the canonical
// spelling the script wrote beside each file. The opcodes CPython 3 never writes
// (STRING, BINUNICODE8, LONG4, DUP, POP_MARK...) are checked with hand-made pickles
// whose values were confirmed with pickle.loads. Every opcode that imports or calls is
// refused by name, and broken or hostile input gives errors, never a crash.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/Pickle.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

using namespace trainmem::pickle;

namespace {

std::string tracePath(llvm::StringRef Name) {
  return std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/traces/" + Name.str();
}

std::string readFile(llvm::StringRef Name) {
  auto B = llvm::MemoryBuffer::getFile(tracePath(Name), /*IsText=*/false,
                                       /*RequiresNullTerminator=*/false);
  EXPECT_TRUE(bool(B)) << "cannot read " << tracePath(Name);
  return B ? (*B)->getBuffer().str() : std::string();
}

/// make_snapshots.py's canon(): types tagged, floats as IEEE bits, text as hex.
std::string canon(const Value &V) {
  switch (V.kind()) {
  case Value::Kind::None:
    return "None";
  case Value::Kind::Bool:
    return V.asBool() ? "True" : "False";
  case Value::Kind::Int:
    return "i:" + std::to_string(V.asInt());
  case Value::Kind::Float: {
    double D = V.asDouble();
    uint64_t Bits;
    std::memcpy(&Bits, &D, sizeof Bits);
    char Hex[17];
    std::snprintf(Hex, sizeof Hex, "%016llx", static_cast<unsigned long long>(Bits));
    return std::string("f:") + Hex;
  }
  case Value::Kind::String:
    return "s:" + llvm::toHex(V.asString(), /*LowerCase=*/true);
  case Value::Kind::Bytes:
    return "b:" + llvm::toHex(V.asString(), /*LowerCase=*/true);
  case Value::Kind::List:
  case Value::Kind::Tuple: {
    std::string S = V.isList() ? "[" : "(";
    for (size_t I = 0; I < V.items().size(); ++I)
      S += (I ? "," : "") + canon(*V.items()[I]);
    return S + (V.isList() ? "]" : ")");
  }
  case Value::Kind::Dict: {
    std::string S = "{";
    for (size_t I = 0; I < V.entries().size(); ++I)
      S += (I ? "," : "") + canon(*V.entries()[I].first) + ":" + canon(*V.entries()[I].second);
    return S + "}";
  }
  }
  return "?";
}

Value load(llvm::StringRef Bytes) {
  auto V = unpickle(Bytes, "test");
  if (!V) {
    ADD_FAILURE() << llvm::toString(V.takeError());
    return Value();
  }
  return std::move(*V);
}

std::string errorOf(llvm::StringRef Bytes, const UnpickleLimits &Limits = {}) {
  auto V = unpickle(Bytes, "evil.pkl", Limits);
  if (V) {
    ADD_FAILURE() << "unpickled " << canon(*V) << " where an error was expected";
    return "";
  }
  return llvm::toString(V.takeError());
}

// Literal pickles hold NUL bytes: take their whole length, not strlen's.
template <size_t N> Value load(const char (&Bytes)[N]) {
  return load(llvm::StringRef(Bytes, N - 1));
}
template <size_t N> std::string errorOf(const char (&Bytes)[N]) {
  return errorOf(llvm::StringRef(Bytes, N - 1));
}

} // namespace

//===- Round trips of CPython's own pickles -----------------------------------===//

class PickleProtocol : public ::testing::TestWithParam<int> {};

TEST_P(PickleProtocol, ReadsWhatCPythonWrote) {
  std::string Stem = "pickle_values_p" + std::to_string(GetParam());
  std::string Expected = llvm::StringRef(readFile(Stem + ".expected")).rtrim().str();
  ASSERT_FALSE(Expected.empty());
  Value V = load(readFile(Stem + ".pickle"));
  // The spellings run to 27 KB; show where they part rather than both in full.
  std::string Got = canon(V);
  size_t At = 0;
  while (At < Got.size() && At < Expected.size() && Got[At] == Expected[At])
    ++At;
  EXPECT_TRUE(Got == Expected) << "differs at " << At << ": got ..."
                               << Got.substr(At > 40 ? At - 40 : 0, 120) << "... expected ..."
                               << Expected.substr(At > 40 ? At - 40 : 0, 120) << "...";

  ASSERT_TRUE(V.isDict());
  ASSERT_NE(V.get("ints"), nullptr);
  const Value &Ints = *V.get("ints");
  EXPECT_EQ(Ints.items()[11]->asInt(), INT64_MAX);
  EXPECT_EQ(Ints.items()[12]->asInt(), INT64_MIN);
  EXPECT_TRUE(V.get("true")->asBool());
  EXPECT_TRUE(V.get("none")->isNone());
  EXPECT_EQ(V.get("str")->items()[4]->asString(), "emoji \xF0\x9F\x98\x80");
  if (GetParam() >= 4) {
    EXPECT_TRUE(V.get("sets")->isList()); // sets become lists
    EXPECT_EQ(V.get("sets")->items()[3]->size(), 2u);
  }
  if (GetParam() >= 5) {
    EXPECT_EQ(V.get("bytearray")->asString(), llvm::StringRef("ab\0", 3));
  }
}

INSTANTIATE_TEST_SUITE_P(Protocols, PickleProtocol, ::testing::Values(0, 2, 4, 5));

TEST(Pickle, MemoSharesOneValue) {
  for (int P : {0, 2, 4, 5}) {
    Value V = load(readFile("pickle_values_p" + std::to_string(P) + ".pickle"));
    ASSERT_TRUE(V.isDict());
    const Value &Shared = *V.get("shared");
    ASSERT_EQ(Shared.size(), 2u);
    EXPECT_EQ(Shared.items()[0].get(), Shared.items()[1].get()) << "protocol " << P;
    // 300 strings each referenced twice: past memo index 255 (LONG_BINPUT/LONG_BINGET).
    const Value &Memo = *V.get("memo");
    ASSERT_EQ(Memo.size(), 600u);
    EXPECT_EQ(Memo.items()[299].get(), Memo.items()[599].get()) << "protocol " << P;
    EXPECT_EQ(Memo.items()[299]->asString(), "k299");
  }
}

TEST(Pickle, DictLookupAndKinds) {
  Value V = load(readFile("pickle_values_p2.pickle"));
  EXPECT_EQ(V.get("missing"), nullptr);
  EXPECT_EQ(V.get("nested")
                ->get("a")
                ->items()[1]
                ->items()[1]
                ->items()[1]
                ->get("deep")
                ->items()[0]
                ->asInt(),
            4);
  EXPECT_EQ(V.get("nested")->depth(), 6u); // dict, list, list, list, dict, tuple
  EXPECT_TRUE(V.get("tuples")->items()[3]->isTuple());
  EXPECT_EQ(V.get("long_list")->size(), 1100u);
  EXPECT_EQ(V.get("int_keys")->size(), 1001u);
  EXPECT_EQ(V.get("int_keys")->entries()[1000].second->asInt(), -1000);
  EXPECT_EQ(std::string(V.kindName()), "dict");
  EXPECT_EQ(V.get("ints")->get("x"), nullptr); // get() on a non-dict
}

//===- Opcodes CPython 3 does not write ---------------------------------------===//

TEST(Pickle, Protocol0And1Strings) {
  EXPECT_EQ(load("S'a\\'b\\x41\\101\\n'\n.").asString(), "a'bAA\n");
  EXPECT_EQ(load(llvm::StringRef("T\x03\x00\x00\x00"
                                 "abc.",
                                 9))
                .asString(),
            "abc");
  EXPECT_EQ(load("U\x03"
                 "abc.")
                .asString(),
            "abc");
  // raw-unicode-escape: \u and \U escapes, other bytes Latin-1.
  EXPECT_EQ(load("V\\u00e9\\U0001f600\xe9\n.").asString(), "\xC3\xA9\xF0\x9F\x98\x80\xC3\xA9");
  EXPECT_TRUE(load("I01\n.").asBool());
  EXPECT_FALSE(load("I00\n.").asBool());
  EXPECT_EQ(load("L123L\n.").asInt(), 123);
  EXPECT_EQ(load("L-9223372036854775808\n.").asInt(), INT64_MIN);
  EXPECT_TRUE(std::isnan(load("Fnan\n.").asDouble()));
  EXPECT_EQ(load("F-inf\n.").asDouble(), -INFINITY);
}

TEST(Pickle, EightByteLengthsAndLong4) {
  EXPECT_EQ(load(llvm::StringRef("\x8d\x02\0\0\0\0\0\0\0hi.", 12)).asString(), "hi");
  Value B = load(llvm::StringRef("\x8e\x02\0\0\0\0\0\0\0hi.", 12));
  EXPECT_TRUE(B.isBytes());
  EXPECT_EQ(B.asString(), "hi");
  // LONG4 with redundant sign bytes still fits in 64 bits.
  std::string Five = std::string("\x8b\x0a\0\0\0\x05", 6) + std::string(9, '\0') + ".";
  EXPECT_EQ(load(Five).asInt(), 5);
  std::string MinusTwo = std::string("\x8b\x0a\0\0\0\xfe", 6) + std::string(9, '\xff') + ".";
  EXPECT_EQ(load(MinusTwo).asInt(), -2);
}

TEST(Pickle, StackOpcodes) {
  Value Dup = load("\x80\x02K\x05"
                   "2\x86.");
  ASSERT_TRUE(Dup.isTuple());
  EXPECT_EQ(canon(Dup), "(i:5,i:5)");
  EXPECT_EQ(load("\x80\x02K\x01K\x02"
                 "0.")
                .asInt(),
            1); // POP
  EXPECT_EQ(load("(K\x01K\x02"
                 "1K\x03.")
                .asInt(),
            3);                                                         // POP_MARK
  EXPECT_EQ(load("(0K\x07.").asInt(), 7);                               // POP of a bare MARK
  EXPECT_EQ(load(llvm::StringRef("K\x01.\0\0garbage", 12)).asInt(), 1); // after STOP
}

TEST(Pickle, InvalidUtf8IsRepaired) {
  Value V = load("\x8c\x02\xff\xfe.");
  ASSERT_TRUE(V.isString());
  EXPECT_EQ(V.asString(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

//===- Refused opcodes ----------------------------------------------------------===//

namespace {

void expectRefused(llvm::StringRef Bytes, llvm::StringRef Opcode, size_t Offset) {
  std::string E = errorOf(Bytes);
  EXPECT_NE(E.find("evil.pkl: offset " + std::to_string(Offset) + ": opcode " + Opcode.str()),
            std::string::npos)
      << E;
  EXPECT_NE(E.find("imports or calls code; trainmem reads data-only pickles"), std::string::npos)
      << E;
}

} // namespace

TEST(PickleRefuses, Global) { expectRefused("cos\nsystem\n(S'echo'\ntR.", "GLOBAL (c)", 0); }
TEST(PickleRefuses, StackGlobal) {
  expectRefused("\x80\x04\x8c\x02os\x8c\x06system\x93.", "STACK_GLOBAL (\\x93)", 14);
}
TEST(PickleRefuses, Reduce) { expectRefused("N)R.", "REDUCE (R)", 2); }
TEST(PickleRefuses, Build) { expectRefused("}}b.", "BUILD (b)", 2); }
TEST(PickleRefuses, Inst) { expectRefused("(ios\nsystem\n.", "INST (i)", 1); }
TEST(PickleRefuses, Obj) { expectRefused("(No.", "OBJ (o)", 2); }
TEST(PickleRefuses, NewObj) { expectRefused("\x80\x02N)\x81.", "NEWOBJ (\\x81)", 4); }
TEST(PickleRefuses, NewObjEx) { expectRefused("\x80\x04N)}\x92.", "NEWOBJ_EX (\\x92)", 5); }
TEST(PickleRefuses, Ext1) { expectRefused("\x80\x02\x82\x01.", "EXT1 (\\x82)", 2); }
TEST(PickleRefuses, Ext2) {
  expectRefused(llvm::StringRef("\x80\x02\x83\x01\0.", 6), "EXT2 (\\x83)", 2);
}
TEST(PickleRefuses, Ext4) {
  expectRefused(llvm::StringRef("\x80\x02\x84\x01\0\0\0.", 8), "EXT4 (\\x84)", 2);
}

TEST(PickleRefuses, PersistentIdsAndBuffers) {
  for (auto [Bytes, Name] : {std::pair<const char *, const char *>{"P1\n.", "PERSID (P)"},
                             {"NQ.", "BINPERSID (Q)"},
                             {"\x80\x05\x97.", "NEXT_BUFFER (\\x97)"},
                             {"\x80\x05N\x98.", "READONLY_BUFFER (\\x98)"}}) {
    std::string E = errorOf(Bytes);
    EXPECT_NE(E.find(std::string("opcode ") + Name + " refers to objects outside"),
              std::string::npos)
        << E;
  }
}

TEST(PickleRefuses, OsSystemAtEveryProtocol) {
  for (int P : {0, 2, 4, 5}) {
    std::string E = errorOf(readFile("pickle_evil_os_system_p" + std::to_string(P) + ".pickle"));
    EXPECT_NE(E.find(P < 4 ? "opcode GLOBAL (c)" : "opcode STACK_GLOBAL"), std::string::npos) << E;
    EXPECT_NE(E.find("imports or calls code"), std::string::npos) << E;
  }
}

//===- Broken and hostile input -------------------------------------------------===//

TEST(PickleErrors, NameTheProblemAndOffset) {
  EXPECT_NE(errorOf("a.").find("offset 0: stack underflow in APPEND"), std::string::npos);
  EXPECT_NE(errorOf("K\x01"
                    "e.")
                .find("offset 2: MARK missing for APPENDS"),
            std::string::npos);
  EXPECT_NE(errorOf("h\x05.").find("memo index 5 is unknown (BINGET)"), std::string::npos);
  EXPECT_NE(errorOf("g7\n.").find("memo index 7 is unknown (GET)"), std::string::npos);
  EXPECT_NE(errorOf("\xff").find("offset 0: unknown opcode 0xff"), std::string::npos);
  EXPECT_NE(errorOf("\x80\x06.").find("unsupported pickle protocol 6"), std::string::npos);
  EXPECT_NE(errorOf("").find("ends without a STOP"), std::string::npos);
  EXPECT_NE(errorOf(".").find("stack underflow in STOP"), std::string::npos);
  EXPECT_NE(errorOf("(.").find("stack underflow in STOP"), std::string::npos);
  EXPECT_NE(errorOf("(K\x01K\x02K\x03"
                    "d.")
                .find("DICT has an odd number of items (3)"),
            std::string::npos);
  EXPECT_NE(errorOf("K\x01K\x02"
                    "a.")
                .find("APPEND needs a list below it on the stack, found int"),
            std::string::npos);
  EXPECT_NE(errorOf("S'abc\n.").find("must be quoted"), std::string::npos);
  EXPECT_NE(errorOf("Ix1\n.").find("is not a decimal integer"), std::string::npos);
}

TEST(PickleErrors, IntegersBeyond64Bits) {
  // 2**63 needs nine bytes in two's complement.
  std::string TwoTo63 = std::string("\x8a\x09\0\0\0\0\0\0\0\x80\0.", 12);
  EXPECT_NE(errorOf(TwoTo63).find("LONG1 integer of 9 bytes is beyond 64 bits"), std::string::npos);
  EXPECT_NE(errorOf("I99999999999999999999\n.").find("beyond 64 bits"), std::string::npos);
  EXPECT_NE(errorOf("L9223372036854775808L\n.").find("beyond 64 bits"), std::string::npos);
}

TEST(PickleErrors, LengthsBeyondTheInputAllocateNothing) {
  EXPECT_NE(errorOf("X\xff\xff\xff\xff").find("truncated: BINUNICODE needs 4294967295 more"),
            std::string::npos);
  EXPECT_NE(errorOf("\x8d\xff\xff\xff\xff\xff\xff\xff\xff").find("truncated: BINUNICODE8"),
            std::string::npos);
  EXPECT_NE(errorOf("\x96\xff\xff\xff\xff\xff\xff\xff\x7f").find("truncated: BYTEARRAY8"),
            std::string::npos);
  EXPECT_NE(errorOf("T\xff\xff\xff\xff").find("BINSTRING has a negative length"),
            std::string::npos);
  EXPECT_NE(errorOf("\x8b\xff\xff\xff\xff").find("LONG4 has a negative byte count"),
            std::string::npos);
  EXPECT_NE(errorOf(llvm::StringRef("\x95\x10\0\0\0\0\0\0\0N.", 11)).find("FRAME of 16 bytes"),
            std::string::npos);
}

TEST(PickleErrors, CyclesAreRefused) {
  // l = []; l.append(l)
  EXPECT_NE(errorOf("]q\x00h\x00"
                    "a.")
                .find("would put a list inside itself"),
            std::string::npos);
  // Growing a list after it was placed in another one.
  EXPECT_NE(errorOf("]q\x00]q\x01"
                    "ah\x01K\x01"
                    "a.")
                .find("already inside another"),
            std::string::npos);
  EXPECT_NE(errorOf("}q\x00h\x00"
                    "K\x01s.")
                .find("would put a dict inside itself"),
            std::string::npos);
  // d = {}; e = {1: d}; d[2] = None
  EXPECT_NE(errorOf("}q\x00K\x01}q\x01sh\x01K\x02Ns.").find("grows a dict"), std::string::npos);
}

TEST(PickleErrors, LimitsOnStackAndNesting) {
  UnpickleLimits Small;
  Small.MaxStackItems = 100;
  EXPECT_NE(errorOf(std::string(101, 'N'), Small).find("more than 100 values on the stack"),
            std::string::npos);
  EXPECT_NE(errorOf(std::string(101, '('), Small).find("more than 100 MARKs"), std::string::npos);
  // N, then 10,001 TUPLE1s: one container too deep.
  std::string Deep = "N" + std::string(10001, '\x85') + ".";
  EXPECT_NE(errorOf(Deep).find("nested more than 10000 deep"), std::string::npos);
  Value AtLimit = load("N" + std::string(10000, '\x85') + ".");
  EXPECT_EQ(AtLimit.depth(), 10000u);
}

TEST(PickleErrors, DeepTreesAreDestroyedWithoutRecursion) {
  UnpickleLimits Loose;
  Loose.MaxDepth = 2000000;
  std::string Deep = "N" + std::string(200000, '\x85') + ".";
  auto V = unpickle(Deep, "deep", Loose);
  ASSERT_TRUE(bool(V)) << llvm::toString(V.takeError());
  EXPECT_EQ(V->depth(), 200000u);
  // V's destructor runs here; a recursive one would overflow the stack.
}

TEST(PickleErrors, EveryPrefixOfARealPickleIsAnError) {
  for (llvm::StringRef Name : {"cuda_snapshot_two_devices.pickle", "pickle_values_p0.pickle",
                               "pickle_evil_os_system_p4.pickle"}) {
    std::string Data = readFile(Name);
    ASSERT_FALSE(Data.empty());
    size_t Max = std::min<size_t>(Data.size(), 4096);
    for (size_t N = 0; N < Max; ++N) {
      auto V = unpickle(llvm::StringRef(Data).take_front(N), Name);
      EXPECT_FALSE(bool(V)) << Name.str() << " prefix of " << N << " bytes";
      if (!V)
        llvm::consumeError(V.takeError());
    }
  }
}

TEST(PickleErrors, MutatedBytesNeverCrash) {
  std::string Data = readFile("cuda_snapshot_two_devices.pickle");
  ASSERT_FALSE(Data.empty());
  size_t Errors = 0;
  for (size_t I = 0; I < Data.size(); ++I) {
    for (unsigned char B : {0x00, 0xff, 0x68}) {
      std::string M = Data;
      M[I] = char(B);
      auto V = unpickle(M, "mutated");
      if (!V) {
        ++Errors;
        llvm::consumeError(V.takeError());
      }
    }
  }
  EXPECT_GT(Errors, 0u);
}
