//===- ChromeTraceReadingTest.cpp - the fast readers read what the cursor reads -===//
//
// A Chrome trace is read in place where an event lies wholly in a chunk, ahead of the
// importer by a second thread, and with the text between members learned and matched
// whole; the token-at-a-time cursor reads the rest and words every error. Each of these
// must give the cursor's result: the same report, or the same error at the same byte,
// whatever the chunk size (one byte: the cursor alone).
//
//===----------------------------------------------------------------------------===//
#include "support/TraceTestFiles.h"

#include "analyzer/TraceImport.h"

#include "llvm/Support/FileSystem.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

namespace trainmem {
namespace {

using testing::gzipFile;
using testing::reportJson;
using testing::tempFile;

const char *const TrickyTrace = "{\"schemaVersion\": 1, \"deviceProperties\": [{\"name\": "
    "\"GPU \\\"0\\\"\", \"x\": [1, 2]}],\r\n\"traceEvents\": [\n"
    R"({"name": "ProfilerStep#1", "ph": "X", "cat": "user_annotation", "ts": 100, "dur": 1000, "tid": 1, "pid": 1},)"
    "\n"
    R"({"args": {"Input Dims": [[8, 1024], []], "Input type": ["float", "c10::Half"], "nested": {"a": {"b": [null, true, false, "}]"]}}}, "dur": 50, "ts": 110.5, "tid": "1", "name": "aten::mm", "cat": "cpu_op", "ph": "X"},)"
    "\n"
    R"({"ph": "i", "name": "[memory]", "tid": 1, "ts": "120", "args": {"Device Type": 1, "Device Id": "0", "Addr": 140000000000, "Bytes": 16777216, "Total Allocated": 16777216.0, "Total Reserved": 33554432}},)"
    "\n\t"
    R"({"ph":"I","name":"\u005bmemory]","tid":1,"ts":130.25,"args":{"Device Type":1,"Device Id":0,"Addr":140000100000,"Bytes":"8388608","Total Allocated":25165824,"Total Reserved":33554432}},)"
    R"({"ph": "X", "cat": "cpu_op", "name": "aten::\"quoted\"\\back\/slash \u00e9\t", "tid": 1, "ts": 125, "dur": 20},)"
    R"( 42 , "string event", null, [1, {"ph": "X"}], true,)"
    R"({"ph": "X", "cat": "cpu_op", "name": "dup", "name": "aten::relu", "tid": 2, "ts": 1.35e2, "dur": 10},)"
    R"({"ph": "i", "name": "[memory]", "tid": 2, "ts": 140, "args": {"Device Type": 1, "Device Id": 0, "Addr": 140000200000, "Bytes": 4194304}, "args": {"Total Allocated": 29360128, "Total Reserved": null}},)"
    R"({"ph": "i", "name": "[memory]", "tid": 1, "ts": 160, "args": {"Device Type": 1, "Device Id": 0, "Addr": 140000000000, "Bytes": -16777216, "Total Allocated": 12582912, "Total Reserved": 33554432}},)"
    R"({"ph": "i", "name": "[memory]", "tid": 1, "ts": 170, "args": {"Device Type": 0, "Addr": 1, "Bytes": 4096, "Total Allocated": 4096}},)"
    R"({"ph": "X", "cat": "cpu_op", "name": "aten::backward_thing", "tid": {"weird": 1}, "ts": 155, "dur": 10, "extra": "\t\r\n"},)"
    R"({"ph": "X", "cat": "cpu_op", "name": "aten::deep", "tid": 1.0, "ts": 150, "dur": 1, "args": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},)"
    R"({"ph": "X", "cat": "cpu_op", "name": "Optimizer.step#SGD.step", "tid": 1, "ts": 180, "dur": +10, "args": {"Bytes": 5, "n": 1E2}})"
    "\n]}\n";

TEST(ChromeTrace, InPlaceReadingChangesNothing) {
  std::string Path = tempFile(".json", TrickyTrace);
  TraceOptions Opts;
  Opts.ChunkBytes = 1;
  auto Reference = importChromeTrace(Path, Opts);
  ASSERT_TRUE(bool(Reference)) << llvm::toString(Reference.takeError());
  ASSERT_EQ(Reference->Devices.size(), 2u);
  const DeviceMemory &D = Reference->selected();
  EXPECT_EQ(D.Device, "cuda:0");
  EXPECT_EQ(D.Events, 4);
  EXPECT_EQ(D.Peak, 29360128);
  EXPECT_EQ(D.PeakOp, "aten::relu");
  EXPECT_EQ(D.PeakRange, "ProfilerStep#1");
  std::string Expected = reportJson(*Reference);
  EXPECT_NE(Expected.find("aten::\\\"quoted\\\"\\\\back/slash"), std::string::npos) << Expected;
  for (size_t Chunk = 2; Chunk <= std::strlen(TrickyTrace) + 1; ++Chunk) {
    Opts.ChunkBytes = Chunk;
    auto T = importChromeTrace(Path, Opts);
    ASSERT_TRUE(bool(T)) << "chunks of " << Chunk << ": " << llvm::toString(T.takeError());
    ASSERT_EQ(reportJson(*T), Expected) << "chunks of " << Chunk;
  }
  llvm::sys::fs::remove(Path);
}

/// A trace of Steps profiler steps whose text tempts a reader that guesses where events
/// start: names and nested arguments holding "}, {", escapes, elements that are not
/// objects, events the in-place reader declines, pretty-printed and compact events.
std::string temptingTrace(int Steps) {
  std::string T = "{\"deviceProperties\": [{\"id\": 0}, {\"id\": 1}],\n\"traceEvents\": [\n";
  int64_t Total = 0;
  for (int S = 0; S < Steps; ++S) {
    const int64_t Base = 1000 + S * 1000;
    const std::string Ts = std::to_string(Base);
    T += (S ? ",\n" : "") + std::string("{\"ph\": \"X\", \"cat\": \"user_annotation\", "
         "\"name\": \"ProfilerStep#") + std::to_string(S) + "\", \"tid\": 1, \"ts\": " + Ts +
         ", \"dur\": 900}";
    for (int Op = 0; Op < 8; ++Op) {
      const std::string At = std::to_string(Base + 10 + Op * 100);
      const bool Back = Op >= 4;
      T += ",\n  {\n    \"ph\": \"X\", \"cat\": \"cpu_op\", \"name\": \"aten::" +
           std::string(Back ? "mm_backward" : Op % 2 ? "x}, {y" : "linear") +
           "\", \"tid\": " + (Back ? "2" : "1") + ",\n    \"ts\": " + At +
           ", \"dur\": 90,\n    \"args\": {\"stack\": [{\"a\": 1}, {\"b\": \"}, {\"}],"
           " \"Input Dims\": [[8, 1024], []]}\n  }";
      const int64_t Bytes = (Op + 1) * 4096;
      Total += Bytes;
      T += ",{\"ph\": \"i\", \"name\": \"[memory]\", \"tid\": 1, \"ts\": " +
           std::to_string(Base + 20 + Op * 100) + ", \"args\": {\"Device Type\": 1, \"Device "
           "Id\": 0, \"Addr\": " + std::to_string(1000000 + S * 100 + Op) + ", \"Bytes\": " +
           std::to_string(Bytes) + ", \"Total Allocated\": " + std::to_string(Total) + "}}";
      if (Op == 3)
        T += ", 42, \"a string\", [1, {\"ph\": \"X\"}], null"; // not events
      if (Op == 5) // an escape and an exponent: the in-place reader declines, the cursor reads
        T += ",{\"ph\": \"X\", \"cat\": \"cpu_op\", \"name\": \"a\\u0074en::\\\"q\\\"\", "
             "\"tid\": 1, \"ts\": " + std::to_string(Base + 560) + ".5e0, \"dur\": 1}";
    }
    for (int Op = 0; Op < 8; ++Op) {
      const int64_t Bytes = (Op + 1) * 4096;
      Total -= Bytes;
      T += ",\t{\"ph\": \"i\", \"name\": \"[memory]\", \"tid\": 2, \"ts\": " +
           std::to_string(Base + 850 + Op) + ", \"args\": {\"Device Type\": 1, \"Device Id\": "
           "0, \"Addr\": " + std::to_string(1000000 + S * 100 + Op) + ", \"Bytes\": -" +
           std::to_string(Bytes) + ", \"Total Allocated\": " + std::to_string(Total) + "}}";
    }
  }
  return T + "\n], \"after\": {\"x\": [{}, {}]}}\n";
}

TEST(ChromeTrace, ParsingAheadChangesNothing) {
  // A second thread parses chunks ahead of the importer from guessed event starts; its
  // events count only from where the importer finds itself at an event's start.
  const std::string Text = temptingTrace(60);
  ASSERT_GT(Text.size(), 100000u);
  const std::string Plain = tempFile(".json", Text), Packed = gzipFile(Text);
  TraceOptions Opts;
  Opts.ParseAhead = false;
  auto Reference = importChromeTrace(Plain, Opts);
  ASSERT_TRUE(bool(Reference)) << llvm::toString(Reference.takeError());
  EXPECT_EQ(Reference->selected().Events, 60 * 16);
  EXPECT_EQ(Reference->selected().Peak, 36 * 4096);
  Reference->Path = "trace";
  const std::string Expected = reportJson(*Reference);
  for (const std::string &Path : {Plain, Packed})
    for (size_t Chunk : {size_t(97), size_t(1000), size_t(4096), size_t(30000), size_t(1) << 20})
      for (bool Ahead : {true, false}) {
        SCOPED_TRACE(Path + ", chunks of " + std::to_string(Chunk) + (Ahead ? ", ahead" : ""));
        Opts.ChunkBytes = Chunk;
        Opts.ParseAhead = Ahead;
        auto T = importChromeTrace(Path, Opts);
        ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
        T->Path = "trace";
        EXPECT_TRUE(reportJson(*T) == Expected); // (not EXPECT_EQ: pages of JSON)
      }
  llvm::sys::fs::remove(Plain);
  llvm::sys::fs::remove(Packed);
}

TEST(ChromeTrace, ParsingAheadKeepsErrorsAndOffsets) {
  // Errors late in a long trace, after many chunks the second thread has parsed.
  std::string Valid = temptingTrace(40);
  Valid.resize(Valid.rfind("\n]")); // the events, without the closing bracket
  for (const char *Tail : {R"(, {"ph": "i" "ts": 1}]})", R"(, {"name": "\q"}]})",
                           R"(, {"ts": 1} {"ts": 2}]})", ", {\"ph\": \"X\", \"ts\": 1,"}) {
    SCOPED_TRACE(Tail);
    const std::string Text = Valid + Tail;
    const std::string Plain = tempFile(".json", Text), Packed = gzipFile(Text);
    TraceOptions Opts;
    Opts.ParseAhead = false;
    auto Reference = importChromeTrace(Plain, Opts);
    ASSERT_FALSE(bool(Reference));
    std::string Expected = llvm::toString(Reference.takeError());
    EXPECT_NE(Expected.find(": byte "), std::string::npos) << Expected;
    for (size_t Chunk : {size_t(97), size_t(4096), size_t(1) << 20}) {
      Opts.ChunkBytes = Chunk;
      Opts.ParseAhead = true;
      auto T = importChromeTrace(Plain, Opts);
      ASSERT_FALSE(bool(T));
      EXPECT_EQ(llvm::toString(T.takeError()), Expected) << "chunks of " << Chunk;
      auto G = importChromeTrace(Packed, Opts);
      ASSERT_FALSE(bool(G));
      std::string Message = llvm::toString(G.takeError());
      EXPECT_EQ(Message.substr(Message.find(": byte ")), Expected.substr(Expected.find(": byte ")))
          << "gzip, chunks of " << Chunk;
    }
    llvm::sys::fs::remove(Plain);
    llvm::sys::fs::remove(Packed);
  }
}

TEST(ChromeTrace, LearnedMemberTextReadsAsTheStepsRead) {
  // The in-place reader learns the text between members that events repeat (`,\n    "ts": `)
  // and matches it whole. After events that teach it, the same bytes and bytes a little
  // different must read as the member-by-member steps read them: a first member's text
  // after a value (no comma) is an error at the same byte, keys spelled with escapes or
  // spaced otherwise are the same keys, and any one-byte change to the last events gives
  // the cursor's result (chunks of one byte: no in-place reading, nothing learned).
  auto event = [](int I, int64_t Total) {
    const std::string Ts = std::to_string(1000 + 10 * I);
    return "  {\n    \"ph\": \"X\", \"cat\": \"cpu_op\",\n    \"name\": \"aten::mm\", \"pid\": 7, "
           "\"tid\": 7,\n    \"ts\": " + Ts + ", \"dur\": 5,\n    \"args\": {\n      \"External "
           "id\": " + std::to_string(I) + ", \"Input Dims\": [[8, 16], [16, 4]]\n    }\n  },\n"
           "  {\n    \"ph\": \"i\", \"cat\": \"cpu_instant_event\", \"s\": \"t\", \"name\": "
           "\"[memory]\",\n    \"pid\": 7, \"tid\": 7,\n    \"ts\": " + Ts + ",\n    \"args\": {\n"
           "      \"Total Reserved\": 0, \"Total Allocated\": " + std::to_string(Total) +
           ", \"Bytes\": 512, \"Addr\": " + std::to_string(4096 + 512 * I) +
           ", \"Device Id\": -1, \"Device Type\": 0\n    }\n  }";
  };
  std::string Events = "{\"traceEvents\": [\n";
  for (int I = 0; I < 12; ++I)
    Events += (I ? ",\n" : "") + event(I, 512 * (I + 1));
  const size_t Learned = Events.size();
  // The same keys, escaped and spaced otherwise.
  Events += ",\n{\"ph\":\"i\",\"n\\u0061me\":\"[memory]\", \"ts\" : 5000,\"args\":{\"Byt\\u0065s\":"
            "512,\"Total Allocated\":" + std::to_string(512 * 13) + "}}";
  for (int I = 13; I < 16; ++I)
    Events += ",\n" + event(I, 512 * (I + 1));
  auto import = [](const std::string &Text, size_t Chunk) {
    const std::string Path = tempFile(".json", Text);
    TraceOptions Opts;
    Opts.ChunkBytes = Chunk;
    auto T = importChromeTrace(Path, Opts);
    llvm::sys::fs::remove(Path);
    if (!T)
      return "error" + [&] {
        std::string M = llvm::toString(T.takeError());
        return M.substr(M.find(": byte ")); // (the paths differ)
      }();
    T->Path = "trace";
    return reportJson(*T);
  };
  const std::string Valid = Events + "]}";
  const std::string Reference = import(Valid, 1);
  ASSERT_EQ(Reference.rfind("error", 0), std::string::npos) << Reference;
  EXPECT_NE(Reference.find("\"peak\": " + std::to_string(512 * 16)), std::string::npos);
  for (size_t Chunk : {size_t(4096), size_t(1) << 20})
    EXPECT_TRUE(import(Valid, Chunk) == Reference) << "chunks of " << Chunk;
  // `"name":` where a second member belongs, right after a value: the steps want a comma.
  const std::string Bad = Events + ",\n  {\n    \"ts\": 7000\"name\": \"x\"}]}";
  const std::string Error = import(Bad, 1);
  EXPECT_NE(Error.find("','"), std::string::npos) << Error;
  EXPECT_EQ(import(Bad, 1 << 20), Error);
  // One-byte changes past the learned events (fixed seed).
  std::mt19937 Rng(7);
  const char Bytes[] = ",:\"{}[] \n\\a0-";
  for (int K = 0; K < 100; ++K) {
    std::string Text = Valid;
    const size_t At = Learned + Rng() % (Text.size() - Learned);
    const char C = Bytes[Rng() % (sizeof(Bytes) - 1)];
    switch (Rng() % 3) {
    case 0:
      Text.erase(At, 1);
      break;
    case 1:
      Text.insert(At, 1, C);
      break;
    default:
      Text[At] = C;
    }
    SCOPED_TRACE("change at byte " + std::to_string(At));
    EXPECT_TRUE(import(Text, 1 << 20) == import(Text, 1));
  }
}

TEST(ChromeTrace, LearnedMemberTextIsMatchedToItsLastByte) {
  // A learned literal is compared 16 bytes at a time under a mask of its bytes: a key that
  // differs from a learned one in a single byte, at every place of the literal's blocks
  // (its 's' from the 7th to the 45th byte, spaces before the key and after the colon
  // putting it first, last or inside a whole or a partial block, up to the longest
  // literal kept), must read as the steps read it: "Bytez" is no Bytes, so the event is
  // no allocation.
  for (int Spaces = 0; Spaces <= 38; ++Spaces)
  for (int After : {1, 2, 9, 17, 25, 33}) {
    if (Spaces + 9 + After > 48) // the literal: ',', the spaces, "Bytes":, the spaces after
      continue;
    const std::string Gap = "," + std::string(static_cast<size_t>(Spaces), ' ');
    const std::string Colon = ":" + std::string(static_cast<size_t>(After), ' ');
    auto event = [&](int I, const char *Key) {
      return "{\"ph\": \"i\", \"name\": \"[memory]\", \"ts\": " + std::to_string(10 + I) +
             ", \"args\": {\"Device Type\": 1" + Gap + "\"" + Key + "\"" + Colon + "512}}";
    };
    std::string Text = "{\"traceEvents\": [";
    for (int I = 0; I < 12; ++I)
      Text += (I ? ",\n" : "") + event(I, "Bytes");
    Text += ",\n" + event(12, "Bytez") + ",\n" + event(13, "Bytes") + "]}";
    SCOPED_TRACE("the key's last letter at byte " + std::to_string(Spaces + 6) +
                 " of a literal of " + std::to_string(Spaces + 9 + After));
    const std::string Path = tempFile(".json", Text);
    TraceOptions InPlace, Steps;
    Steps.ChunkBytes = 1; // no in-place reading: nothing learned
    auto A = importChromeTrace(Path, InPlace), B = importChromeTrace(Path, Steps);
    llvm::sys::fs::remove(Path);
    ASSERT_TRUE(A && B);
    EXPECT_EQ(A->selected().Events, 13);
    EXPECT_EQ(A->selected().Peak, 13 * 512);
    EXPECT_TRUE(reportJson(*A) == reportJson(*B));
  }
}

TEST(ChromeTrace, InPlaceReadingKeepsErrorsAndOffsets) {
  const std::string Cases[] = {
      R"({"traceEvents": [{"ph": "i", "ts": 1,)",
      R"({"traceEvents": [{"ph": "i" "ts": 1}]})",
      R"({"traceEvents": [{"name": "\q"}]})",
      R"({"traceEvents": [{"name": "\u12G4"}]})",
      R"({"traceEvents": [{"name": "a", "ts": 1.2.3}]})",
      R"({"traceEvents": [{"name": "a", "ts": "abc"}]})",
      R"({"traceEvents": [{"args": {"Bytes": tru}}]})",
      R"({"traceEvents": [{"args": {"Bytes": 1,}}]})",
      R"({"traceEvents": [{"x": [1 2}]})",
      R"({"traceEvents": [{"ts": 1} {"ts": 2}]})",
      R"({"traceEvents": [{"tid": -}]})",
      R"({"traceEvents": [{"ts": 1, 5: 2}]})",
      R"({"traceEvents": [{"ts": 1, "x": 123456789012345678901234567890123456789012345678901234567890123456789}]})",
      R"({"traceEvents": [{"name": "unterminated}]})",
      std::string("{\"traceEvents\": [{\"name\": \"a\", \0\"ts\": 1}]}", 41),
  };
  for (const std::string &Text : Cases) {
    SCOPED_TRACE(Text);
    std::string Path = tempFile(".json", Text);
    TraceOptions Opts;
    Opts.ChunkBytes = 1;
    auto Reference = importChromeTrace(Path, Opts);
    ASSERT_FALSE(bool(Reference));
    std::string Expected = llvm::toString(Reference.takeError());
    EXPECT_NE(Expected.find(": byte "), std::string::npos) << Expected;
    for (size_t Chunk = 2; Chunk <= Text.size() + 1; ++Chunk) {
      Opts.ChunkBytes = Chunk;
      auto T = importChromeTrace(Path, Opts);
      ASSERT_FALSE(bool(T)) << "chunks of " << Chunk;
      EXPECT_EQ(llvm::toString(T.takeError()), Expected) << "chunks of " << Chunk;
    }
    llvm::sys::fs::remove(Path);
  }
}

} // namespace
} // namespace trainmem
