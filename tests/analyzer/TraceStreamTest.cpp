//===- TraceStreamTest.cpp - the in-place JSON scanner against the cursor ----===//
//
// JsonScanner reads values lying wholly in a buffer and must read exactly what
// JsonCursor reads (same value, same bytes consumed), or decline; these tests hold it to
// that on tricky values, and hold the shared number conversion to std::from_chars.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/TraceStream.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Threading.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <charconv>
#include <cstring>
#include <random>
#include <thread>

namespace trainmem {
namespace {

/// A cursor over Text, read one byte at a time (so it never reads in place itself).
struct CursorOver {
  explicit CursorOver(const std::string &Text) {
    int Fd;
    EXPECT_FALSE(llvm::sys::fs::createTemporaryFile("trainmem-scan", "json", Fd, Path));
    {
      llvm::raw_fd_ostream OS(Fd, /*shouldClose=*/true);
      OS << Text;
    }
    auto Reader = ByteReader::open(Path, 1);
    EXPECT_TRUE(bool(Reader));
    Cursor.emplace(std::move(*Reader), "scan.json");
  }
  ~CursorOver() { llvm::sys::fs::remove(Path); }
  llvm::SmallString<128> Path;
  std::optional<JsonCursor> Cursor;
};

bool sameNumber(const JsonCursor::Number &A, const JsonCursor::Number &B) {
  return A.Integer == B.Integer && std::memcmp(&A.Value, &B.Value, sizeof(double)) == 0;
}

// Values of every kind, followed by a separator so that a number's run ends in the buffer.
const char *const Values[] = {
    R"("plain")", R"("")", R"("a\"b\\c\/d\b\f\n\r\t")", R"("\u0041\u00e9\u20AC\uffff")",
    R"("tab	inside")", R"("\q")", R"("\u12G4")", R"("unterminated)", R"("\)",
    "0", "-0", "+5", "007", "42", "-17", "123456789012345678", "1234567890123456789",
    "-123456789012345678", "0.0", "-5e2", "785244",
    "99999999999999999999", "1.5", "-2.25", "1000000000000020.00", "5560908385846.353",
    "0.1", "1e5", "1E-3", "-1.5e+300", "1e400", "1e-400", "1.", ".5", "-", "--1", "1-2",
    "1.2.3", "12345678901234567890123456789012345678901234567890123456789012345",
    // skipValue passes plain numbers over without converting them: the longest run the
    // cursor reads, long decimals, and numbers inside containers.
    "1234567890123456789012345678901234567890123456789012345678901234",
    "-123456789012345678901234567890.0625", "[0, -1, 2.5, 99999999999999999999, 1e3, 7]",
    R"({"ts": 1623212388426902, "dur": -0.5, "x": [[], [1, 3, 224, 224]]})",
    "true", "false", "null", "tru", "nul", "[]", "{}", "[1, [2, [3]], {\"a\": [true]}]",
    R"({"k": "v", "n": {"x": null}})", "[1 2]", R"({"a" "b"})", "[1,]", "[}", "{]", "]",
    ",", "x", "[\"\\u0041\", \"\\\"]\"]",
    // Long strings (skipped 16 bytes at a time past the first 16): escapes and ends on
    // and across 16-byte boundaries, a bad escape and no end far in.
    R"("0123456789abcdef0123456789abcdef")", R"("0123456789abcdef0123\"56789abcdef01")",
    R"("0123456789abcde\"0123456789abcdef\\23456789abcdef")",
    R"("/home/user/site-packages/torch/autograd/profiler.py(611): __init__;/home/u\u0041")",
    R"("0123456789abcdef0123456789abcdef0123456789\q")",
    R"("0123456789abcdef0123456789abcdef0123456789abcdef0123)",
    R"({"Call stack": "/home/user/anaconda3/envs/kineto/lib/python3.7/site-packages/x.py(1): f", "n": 1})"};

TEST(JsonScanner, ReadsWhatTheCursorReads) {
  int Decided = 0;
  for (const char *Value : Values) {
    std::string Text = std::string(" \r\n\t") + Value + " ,";
    SCOPED_TRACE(Text);
    // skipValue
    {
      CursorOver C(Text);
      JsonScanner S(Text);
      bool Fast = S.skipValue();
      llvm::Error Slow = C.Cursor->skipValue();
      if (Fast) {
        ++Decided;
        EXPECT_FALSE(bool(Slow)) << "the scanner accepted what the cursor refuses";
        EXPECT_EQ(S.consumed(), C.Cursor->offset());
      }
      llvm::consumeError(std::move(Slow));
    }
    // readString
    {
      CursorOver C(Text);
      JsonScanner S(Text);
      std::string Fast;
      bool Read = S.readString(Fast);
      auto Slow = C.Cursor->readString();
      if (Read) {
        ++Decided;
        ASSERT_TRUE(bool(Slow)) << llvm::toString(Slow.takeError());
        EXPECT_EQ(Fast, *Slow);
        EXPECT_EQ(S.consumed(), C.Cursor->offset());
      } else if (!Slow) {
        llvm::consumeError(Slow.takeError());
      }
    }
    // readNumber, and readCanonicalInteger: only where the text is what the number's
    // std::to_string is
    {
      CursorOver C(Text);
      JsonScanner S(Text), Canonical(Text);
      JsonCursor::Number Fast;
      llvm::StringRef Spelled;
      bool Read = S.readNumber(Fast);
      bool ReadSpelled = Canonical.readCanonicalInteger(Spelled);
      auto Slow = C.Cursor->readNumber();
      if (Read || ReadSpelled) {
        Decided += Read + ReadSpelled;
        ASSERT_TRUE(bool(Slow)) << llvm::toString(Slow.takeError());
        if (Read) {
          EXPECT_TRUE(sameNumber(Fast, *Slow)) << Fast.Value << " vs " << Slow->Value;
          EXPECT_EQ(S.consumed(), C.Cursor->offset());
        }
        if (ReadSpelled) {
          ASSERT_TRUE(Slow->Integer.has_value());
          EXPECT_EQ(Spelled, std::to_string(*Slow->Integer));
          EXPECT_EQ(Canonical.consumed(), C.Cursor->offset());
        }
      } else if (!Slow) {
        llvm::consumeError(Slow.takeError());
      }
    }
  }
  EXPECT_GT(Decided, 60); // the scanner decides the well-formed values itself
}

TEST(JsonScanner, StringRunsEndAtTheFirstQuoteOrBackslash) {
  // Runs are looked at 16 or 32 bytes at a time (SSE2, AVX2 where the machine has it)
  // after their first 16, byte by byte near the end: a '"' or '\\' at every place of runs
  // up to 200 bytes, and runs with none that end at the buffer's end, against a byte loop.
  // Each buffer is exactly its run long (ASan: nothing read past it).
  for (size_t Length = 0; Length <= 200; ++Length)
    for (size_t Stop = 0; Stop <= Length; ++Stop)
      for (char Mark : {'"', '\\'}) {
        std::vector<char> Run(Length, 'x');
        for (size_t I = 0; I < Length; ++I)
          Run[I] = "abc/.;()_ 0123456789"[I % 20];
        if (Stop < Length)
          Run[Stop] = Mark;
        if (Stop + 7 < Length)
          Run[Stop + 7] = Mark == '"' ? '\\' : '"'; // a later stop of the other kind
        const char *End = Run.data() + Length;
        auto firstStop = [&](const char *P) {
          while (P < End && *P != '"' && *P != '\\')
            ++P;
          return P;
        };
        ASSERT_EQ(json_detail::stringRunEnd(Run.data(), End), firstStop(Run.data()))
            << "run of " << Length << ", stop at " << Stop;
        if (Length > 16) {
          ASSERT_EQ(json_detail::longStringRunEnd(Run.data() + 16, End),
                    firstStop(Run.data() + 16))
              << "run of " << Length << ", stop at " << Stop;
        }
      }
}

TEST(JsonScanner, WhitespaceRunsEndAtTheFirstOtherByte) {
  // Runs of the four JSON whitespace bytes are passed 16 at a time (SSE2), byte by byte
  // near the end: runs up to 70 bytes, mixed, ending in every kind of byte a token or an
  // error may start with (control bytes, which are no whitespace, and bytes past 0x7f
  // among them), or at the buffer's end, against a byte loop; peekToken stops at the same
  // byte. Each buffer is exactly as long as its text (ASan: nothing read past it).
  for (size_t Length = 0; Length <= 70; ++Length)
    for (int Next :
         {-1, int('"'), int('{'), int('0'), int(','), 0x01, 0x1f, 0x7f, 0xc3, 0x0b, 0x0c})
      for (unsigned Mix = 0; Mix < 3; ++Mix) {
        std::vector<char> Text;
        for (size_t I = 0; I < Length; ++I)
          Text.push_back(Mix == 0 ? ' ' : " \n\r\t"[(I * (Mix + 2)) % 4]);
        if (Next >= 0)
          Text.push_back(static_cast<char>(Next));
        const char *End = Text.data() + Text.size();
        auto byteLoop = [&](const char *P) {
          while (P < End && (*P == ' ' || *P == '\n' || *P == '\r' || *P == '\t'))
            ++P;
          return P;
        };
        const char *Want = byteLoop(Text.data());
        ASSERT_EQ(json_detail::spaceRunEnd(Text.data(), End), Want)
            << "run of " << Length << ", then byte " << Next << ", mix " << Mix;
        JsonScanner S(llvm::StringRef(Text.data(), Text.size()));
        char C = 0;
        const bool Got = S.peekToken(C);
        ASSERT_EQ(Got, Want != End) << "run of " << Length << ", then byte " << Next;
        if (Got) {
          EXPECT_EQ(C, *Want);
          EXPECT_EQ(S.position(), Want);
        }
      }
}

// skipValue passes over containers of plain text 16 bytes at a time (kineto's "Input
// Dims" and "Input type" lists) and leaves the rest to its token loop: random containers
// of plain tokens, and of tokens that must send it back to the loop (escapes, literals,
// signs, decimals, long digit runs, control bytes, unmatched brackets, deep nesting),
// against the cursor. Whatever the scanner accepts, the cursor accepts, ending at the
// same byte; plain ones the scanner decides itself.
TEST(JsonScanner, SkipsContainersAsTheCursorDoes) {
  std::mt19937 Random(20261129);
  auto pick = [&](size_t N) { return static_cast<size_t>(Random() % N); };
  const char *const Plain[] = {" ", "\n      ", ",", ", ", ":", "\t", "\r\n", "0", "7",
                               "32", "007", "224", "1623212388485222", "\"float\"", "\"\"",
                               "\"GenericList\"", "\"a [ ] { } , : b\"", "\"long int\"",
                               "\"x\\\"\"" /* an escape: not plain, so last */};
  const char *const Other[] = {"true", "false", "null", "tru", "-1", "1.5", "1e3", "+2", "-",
                               "1234567890123456789012345678901234567890",
                               "12345678901234567890123456789012345678901234567890123456789012345",
                               "\"\\u0041\"",
                               "\"\\q\"", "\x01", "x", "\"open"};
  int Decided = 0, Cases = 0;
  for (int Case = 0; Case < 3000; ++Case) {
    const bool Clean = Case % 2 == 0; // plain tokens only, brackets balanced
    std::string Text;
    std::vector<char> Open;
    auto open = [&] {
      const bool Array = pick(2) == 0;
      Text += Array ? '[' : '{';
      Open.push_back(Array ? ']' : '}');
    };
    open();
    const size_t Tokens = 1 + pick(40);
    for (size_t T = 0; T < Tokens; ++T) {
      const size_t Roll = pick(20);
      if (Roll < 2 && Open.size() < (Clean ? 30u : 40u)) // past 32 is the cursor's
        open();
      else if (Roll < 4 && Open.size() > 1) {
        Text += Open.back();
        Open.pop_back();
      } else if (!Clean && Roll == 4)
        Text += Other[pick(std::size(Other))];
      else if (!Clean && Roll == 5)
        Text += pick(2) ? ']' : '}'; // maybe unmatched
      else if (!Clean && Roll == 6)
        Text += '\0';
      else
        Text += Plain[pick(std::size(Plain) - (Clean ? 1 : 0))];
    }
    while (!Open.empty()) {
      Text += Open.back();
      Open.pop_back();
    }
    Text += std::string(" ,") + std::string(20, ' ');
    SCOPED_TRACE(Text);
    CursorOver C(Text);
    JsonScanner S(Text);
    const bool Fast = S.skipValue();
    llvm::Error Slow = C.Cursor->skipValue();
    ++Cases;
    if (Fast) {
      ++Decided;
      ASSERT_FALSE(bool(Slow)) << "the scanner accepted what the cursor refuses";
      ASSERT_EQ(S.consumed(), C.Cursor->offset());
    } else if (Clean && Text.find('\\') == std::string::npos) {
      ADD_FAILURE() << "a plain container left undecided";
    }
    llvm::consumeError(std::move(Slow));
  }
  EXPECT_GT(Decided, Cases / 3);
}

TEST(JsonScanner, DeclinesAtTheEndOfTheBuffer) {
  // Every proper prefix of a value that goes on past it: the scanner cannot decide, as the
  // rest may come in the next chunk.
  for (std::string Whole : {R"({"a": [1, "x\"y", {"b": null}], "c": 12.5})", R"("a\u0041b")",
                            "123.456 "}) {
    for (size_t N = 0; N + 1 < Whole.size(); ++N) {
      JsonScanner S(llvm::StringRef(Whole).take_front(N));
      std::string Into;
      JsonCursor::Number Number;
      EXPECT_FALSE(S.skipValue()) << Whole.substr(0, N);
      EXPECT_FALSE(JsonScanner(llvm::StringRef(Whole).take_front(N)).readString(Into));
      EXPECT_FALSE(JsonScanner(llvm::StringRef(Whole).take_front(N)).readNumber(Number));
    }
  }
}

TEST(JsonScanner, MembersAsTheCursorSeparatesThem) {
  std::string Text = R"( { "a" : 1 , "b":2} )";
  JsonScanner S(Text);
  bool More = false;
  ASSERT_TRUE(S.expect('{'));
  ASSERT_TRUE(S.nextMember('}', true, More));
  EXPECT_TRUE(More);
  llvm::StringRef Key;
  std::string Scratch;
  ASSERT_TRUE(S.readString(Key, Scratch));
  EXPECT_EQ(Key, "a");
  ASSERT_TRUE(S.expect(':'));
  ASSERT_TRUE(S.skipValue());
  ASSERT_TRUE(S.nextMember('}', false, More));
  EXPECT_TRUE(More);
  ASSERT_TRUE(S.skipValue() && S.expect(':') && S.skipValue());
  ASSERT_TRUE(S.nextMember('}', false, More));
  EXPECT_FALSE(More);
  EXPECT_EQ(S.consumed(), Text.size() - 1);
  JsonScanner Bad(R"({"a": 1 "b": 2})");
  ASSERT_TRUE(Bad.expect('{') && Bad.nextMember('}', true, More) && Bad.skipValue() &&
              Bad.expect(':') && Bad.skipValue());
  EXPECT_FALSE(Bad.nextMember('}', false, More)); // no ',': the cursor words that error
}

// The direct conversions (integers, short decimals) against std::from_chars, which the
// cursor used alone before: the same Integer and bit-identical Value.
TEST(JsonNumber, SameAsFromChars) {
  auto reference = [](const std::string &Text) {
    JsonCursor::Number N;
    const char *Begin = Text.data(), *End = Text.data() + Text.size();
    if (*Begin == '+')
      ++Begin;
    if (Text.find_first_of(".eE") == std::string::npos) {
      int64_t I;
      auto [Ptr, Ec] = std::from_chars(Begin, End, I);
      if (Ec == std::errc() && Ptr == End) {
        N.Integer = I;
        N.Value = static_cast<double>(I);
        return N;
      }
    }
    std::from_chars(Begin, End, N.Value);
    return N;
  };
  std::mt19937_64 Rng(7);
  int Checked = 0;
  for (int I = 0; I < 200000; ++I) {
    std::string Text = Rng() % 4 == 0 ? "-" : "";
    int IntegerDigits = 1 + static_cast<int>(Rng() % 19);
    for (int D = 0; D < IntegerDigits; ++D)
      Text += static_cast<char>('0' + Rng() % 10);
    if (Rng() % 3) {
      Text += '.';
      int Places = 1 + static_cast<int>(Rng() % 8);
      for (int D = 0; D < Places; ++D)
        Text += static_cast<char>('0' + (Rng() % 3 == 0 ? 0 : Rng() % 10));
    }
    JsonCursor::Number Got;
    ASSERT_TRUE(parseJsonNumber(Text, Got)) << Text;
    JsonCursor::Number Want = reference(Text);
    ASSERT_TRUE(sameNumber(Got, Want)) << Text << ": " << Got.Value << " vs " << Want.Value;
    // In a buffer with 16 bytes or more past the number, the scanner classifies and
    // converts its digits 16 and 8 at a time (json_detail::digitRunEnd, digitsValue).
    const std::string Padded = Text + ", \"k\": 0123456789}";
    JsonScanner S(Padded);
    JsonCursor::Number Fast;
    ASSERT_TRUE(S.readNumber(Fast)) << Padded;
    ASSERT_TRUE(sameNumber(Fast, Want)) << Padded << ": " << Fast.Value << " vs " << Want.Value;
    ASSERT_EQ(S.consumed(), Text.size()) << Padded;
    ++Checked;
  }
  for (const char *Text : {"9007199254740993.0", "9007199254740992.5", "0.30000000000000004",
                           "123456789012345678", "-123456789012345678", "+1.25", "-0.0",
                           "1e22", "4.9e-324", "1.7976931348623157e308"}) {
    JsonCursor::Number Got;
    ASSERT_TRUE(parseJsonNumber(Text, Got)) << Text;
    EXPECT_TRUE(sameNumber(Got, reference(Text))) << Text;
  }
  EXPECT_EQ(Checked, 200000);
}

/// What the test's scanner read of a chunk before it was halted.
struct SeenChunk : ChunkScan {
  std::string Prefix;
};

TEST(ByteReader, ScansAheadOfTheConsumer) {
  // A helper thread scans chunks the consumer has not reached; each result must be of the
  // chunk the consumer then holds (results are recycled between chunks), cut short where
  // the consumer arrived first, and the bytes handed out must be the file's.
  std::string Text;
  for (int I = 0; I < 200000; ++I)
    Text += static_cast<char>('a' + (I * 7919) % 26);
  llvm::SmallString<128> Plain, Packed;
  int Fd;
  ASSERT_FALSE(llvm::sys::fs::createTemporaryFile("trainmem-ahead", "txt", Fd, Plain));
  {
    llvm::raw_fd_ostream OS(Fd, /*shouldClose=*/true);
    OS << Text;
  }
  ASSERT_FALSE(llvm::sys::fs::createTemporaryFile("trainmem-ahead", "txt.gz", Packed));
  gzFile G = gzopen(Packed.c_str(), "wb");
  gzwrite(G, Text.data(), static_cast<unsigned>(Text.size()));
  gzclose(G);
  int ScannedInAll = 0;
  for (const llvm::SmallString<128> &Path : {Plain, Packed})
    for (size_t ChunkBytes : {size_t(1000), size_t(4096)}) {
      SCOPED_TRACE(std::string(Path.str()) + ", chunks of " + std::to_string(ChunkBytes));
      ChunkScanner Scan = [](llvm::StringRef Chunk, std::unique_ptr<ChunkScan> &Into,
                             const std::atomic<bool> &Halt) {
        if (!Into)
          Into = std::make_unique<SeenChunk>();
        auto &Seen = static_cast<SeenChunk &>(*Into);
        Seen.Prefix.clear();
        for (size_t I = 0; I < Chunk.size() && !Halt.load(); I += 64)
          Seen.Prefix += Chunk.substr(I, 64).str();
      };
      auto Reader = ByteReader::open(Path, ChunkBytes, ByteReader::Inflater::Fastest, Scan);
      ASSERT_TRUE(bool(Reader)) << llvm::toString(Reader.takeError());
      std::string All;
      int Scanned = 0;
      while (true) {
        auto Chunk = (*Reader)->next();
        ASSERT_TRUE(bool(Chunk)) << llvm::toString(Chunk.takeError());
        if (Chunk->empty())
          break;
        if (const auto *Seen = static_cast<const SeenChunk *>((*Reader)->currentScan())) {
          ++Scanned;
          EXPECT_TRUE(Chunk->starts_with(Seen->Prefix)) << "a scan of another chunk";
        }
        All += Chunk->str();
        std::this_thread::sleep_for(std::chrono::microseconds(200)); // let the helper lead
      }
      EXPECT_TRUE(All == Text);
      ScannedInAll += Scanned;
    }
  // With a second core the helper got ahead somewhere (counted over all four reads, so a
  // busy machine that starves it in one does not fail the test).
  if (llvm::hardware_concurrency().compute_thread_count() > 1) {
    EXPECT_GT(ScannedInAll, 0);
  }
  llvm::sys::fs::remove(Plain);
  llvm::sys::fs::remove(Packed);
}

} // namespace
} // namespace trainmem
