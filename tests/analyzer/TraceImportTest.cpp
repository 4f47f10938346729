//===- TraceImportTest.cpp - Chrome traces, memory timelines, nsys exports ---===//
//
// The inputs are written by tests/data/traces/make_traces.py, which prints the figures
// asserted here (worked out from the events by hand, not by trainmem).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ChromeTraceEvents.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/TraceCompare.h"
#include "analyzer/TraceImport.h"
#include "analyzer/TraceStream.h"
#include "support/TraceTestFiles.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <fstream>

namespace trainmem {
namespace {

using testing::data;
using testing::reportJson;
using testing::tempFile;

constexpr int64_t MiB = 1 << 20;

const std::pair<std::string, int64_t> *phase(const DeviceMemory &D, llvm::StringRef Name) {
  for (const auto &P : D.PhasePeaks)
    if (P.first == Name)
      return &P;
  return nullptr;
}

void expectKinetoSmall(const MeasuredTrace &T) {
  ASSERT_EQ(T.Devices.size(), 2u);
  EXPECT_EQ(T.Devices[0].Device, "cuda:0");
  EXPECT_EQ(T.Devices[1].Device, "cpu");
  const DeviceMemory &D = T.selected();
  EXPECT_EQ(D.Device, "cuda:0");
  EXPECT_EQ(D.PeakBasis, "total_allocated");
  EXPECT_EQ(D.Events, 8);
  EXPECT_EQ(D.Peak, 128 * MiB);
  EXPECT_EQ(D.PeakReserved, 160 * MiB);
  EXPECT_EQ(D.FragmentationAtPeak, 32 * MiB);
  EXPECT_EQ(D.PeakRange, "ProfilerStep#1");
  EXPECT_EQ(D.PeakOp, "aten::mm");
  ASSERT_EQ(D.LiveAtPeak.size(), 3u);
  EXPECT_EQ(D.LiveAtPeakCount, 3);
  EXPECT_EQ(D.LiveAtPeak[0].Bytes, 16 * MiB);
  EXPECT_EQ(D.LiveAtPeak[0].Op, "aten::mm"); // on the autograd thread
  EXPECT_EQ(D.LiveAtPeak[1].Bytes, 8 * MiB);
  EXPECT_EQ(D.LiveAtPeak[1].Op, "aten::mm");
  EXPECT_EQ(D.LiveAtPeak[2].Bytes, 4 * MiB);
  EXPECT_EQ(D.LiveAtPeak[2].Op, "aten::relu");
  ASSERT_TRUE(phase(D, "forward"));
  EXPECT_EQ(phase(D, "forward")->second, 112 * MiB);
  EXPECT_EQ(phase(D, "backward")->second, 128 * MiB);
  EXPECT_EQ(phase(D, "optimizer")->second, 106 * MiB);
  EXPECT_EQ(phase(D, "zero_grad")->second, 104 * MiB);
  ASSERT_EQ(D.Ranges.size(), 1u);
  EXPECT_EQ(D.Ranges[0].Peak, 128 * MiB);
}

TEST(ChromeTrace, PlainGzippedAndTinyChunksAgree) {
  for (const char *Name : {"kineto_small.json", "kineto_small.json.gz"})
    for (size_t Chunk : {size_t(1) << 20, size_t(7), size_t(1)}) {
      SCOPED_TRACE(std::string(Name) + " chunk " + std::to_string(Chunk));
      TraceOptions Opts;
      Opts.ChunkBytes = Chunk;
      auto T = importTrace(data(Name), Opts);
      ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
      EXPECT_EQ(T->Format, TraceFormat::ChromeTrace);
      expectKinetoSmall(*T);
    }
}

TEST(ChromeTrace, TheSecondPassAttributesLikeTheKeptOperators) {
  // Past MaxKeptOperators the operators are read again in a second pass: same answers.
  for (size_t Kept : {size_t(0), size_t(2)}) {
    SCOPED_TRACE("operators kept: " + std::to_string(Kept));
    TraceOptions Opts;
    Opts.MaxKeptOperators = Kept;
    auto T = importTrace(data("kineto_small.json.gz"), Opts);
    ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
    expectKinetoSmall(*T);
  }
}

TEST(ChromeTrace, EncodedRecordsGiveTheSameReports) {
  // Memory events kept encoded from the first, or from the third on (the two kinds of
  // record in one stream), against structs: the same reports, for the small trace and
  // the fixtures' kineto traces (two devices each, out-of-order runs in the DDP one).
  std::vector<std::string> Paths = {data("kineto_small.json.gz")};
  for (const char *Name : {"resnet50_num_workers_4.worker0.1623212756351.pt.trace.json.gz",
                           "tests__data__df_index_resolver__df_index_resolver.json.gz"}) {
    const std::string Path = std::string(TRAINMEM_FIXTURES_DIR) + "/traces/" + Name;
    if (llvm::sys::fs::exists(Path))
      Paths.push_back(Path);
    else
      std::printf("no fixture trace %s: checked on the small trace only\n", Path.c_str());
  }
  for (const std::string &Path : Paths)
    for (const char *Device : {"", "cpu"}) {
      SCOPED_TRACE(Path + " device '" + Device + "'");
      TraceOptions Opts;
      Opts.Device = Device;
      auto Structs = importChromeTrace(Path, Opts);
      ASSERT_TRUE(bool(Structs)) << llvm::toString(Structs.takeError());
      const std::string Expected = reportJson(*Structs);
      // Encoded, and past a memory limit read back from the temporary file (the
      // memory events, the operators and the phases' ranges).
      for (auto [Plain, Memory] : {std::pair<size_t, size_t>{0, 0}, {2, 0}, {0, 64}, {2, 4096}}) {
        Opts.PlainRecords = Plain;
        Opts.RecordMemory = Memory;
        auto Encoded = importChromeTrace(Path, Opts);
        ASSERT_TRUE(bool(Encoded)) << llvm::toString(Encoded.takeError());
        EXPECT_TRUE(reportJson(*Encoded) == Expected)
            << "plain records: " << Plain << ", memory: " << Memory;
      }
    }
}

TEST(ChromeTrace, ProgressCountsTheFileBytes) {
  // Each new chunk reports the file bytes read so far; the last call says all were read.
  // Past MaxKeptOperators (0 here) a second pass reports as pass 2.
  for (const char *Name : {"kineto_small.json", "kineto_small.json.gz"})
    for (bool Ahead : {false, true}) {
      SCOPED_TRACE(std::string(Name) + (Ahead ? ", parsed ahead" : ""));
      uint64_t Size = 0;
      ASSERT_FALSE(llvm::sys::fs::file_size(data(Name), Size));
      struct Call {
        int Pass;
        uint64_t Done, Total;
      };
      std::vector<Call> Calls;
      TraceOptions Opts;
      Opts.ChunkBytes = 64;
      Opts.ParseAhead = Ahead;
      Opts.MaxKeptOperators = 0;
      Opts.Progress = [&](int Pass, uint64_t Done, uint64_t Total) {
        Calls.push_back({Pass, Done, Total});
      };
      auto T = importTrace(data(Name), Opts);
      ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
      expectKinetoSmall(*T);
      ASSERT_GE(Calls.size(), 4u);
      size_t Second = 0;
      for (size_t I = 0; I < Calls.size(); ++I) {
        EXPECT_EQ(Calls[I].Total, Size) << "call " << I;
        EXPECT_LE(Calls[I].Done, Size) << "call " << I;
        if (I > 0 && Calls[I].Pass == Calls[I - 1].Pass) {
          EXPECT_GE(Calls[I].Done, Calls[I - 1].Done) << "call " << I;
        }
        if (Calls[I].Pass == 2 && Second == 0)
          Second = I;
      }
      ASSERT_GT(Second, 1u) << "no second pass reported";
      EXPECT_EQ(Calls[Second - 1].Pass, 1);
      EXPECT_EQ(Calls[Second - 1].Done, Size); // the first pass ends at the file's end
      EXPECT_LT(Calls[1].Done, Size);          // and reported before it
      EXPECT_EQ(Calls.back().Pass, 2);
      EXPECT_EQ(Calls.back().Done, Size);
    }
}

TEST(ChromeTrace, DeviceSelection) {
  TraceOptions Opts;
  Opts.Device = "cpu";
  auto T = importTrace(data("kineto_small.json"), Opts);
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  EXPECT_EQ(T->selected().Device, "cpu");
  EXPECT_EQ(T->selected().Peak, 4096);
  Opts.Device = "cuda:3";
  auto Missing = importTrace(data("kineto_small.json"), Opts);
  ASSERT_FALSE(bool(Missing));
  std::string Message = llvm::toString(Missing.takeError());
  EXPECT_NE(Message.find("--trace-device=cuda:3"), std::string::npos) << Message;
  EXPECT_NE(Message.find("cuda:0, cpu"), std::string::npos) << Message;
}

TEST(ChromeTrace, WindowRestrictsThePeak) {
  TraceOptions Opts;
  Opts.WindowPattern = "^Optimizer\\.step";
  auto T = importTrace(data("kineto_small.json"), Opts);
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  EXPECT_EQ(T->selected().Peak, 106 * MiB);
  Opts.WindowPattern = "no such range";
  auto None = importTrace(data("kineto_small.json"), Opts);
  ASSERT_FALSE(bool(None));
  EXPECT_NE(llvm::toString(None.takeError()).find("matches no range"), std::string::npos);
}

TEST(ChromeTrace, ReportAndJson) {
  auto T = importTrace(data("kineto_small.json"));
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  MemoryReport R = traceToReport(*T);
  ASSERT_TRUE(R.Peak && R.Measured);
  EXPECT_EQ(*R.Peak, 128 * MiB);
  EXPECT_EQ(R.PeakInfo->ByCategory.Unknown, 128 * MiB);
  EXPECT_EQ(R.Bytes.Unknown, 128 * MiB);
  std::string Json;
  llvm::raw_string_ostream OS(Json);
  writeReportJson(R, OS);
  auto Back = readReportJson(Json, "round-trip");
  ASSERT_TRUE(bool(Back)) << llvm::toString(Back.takeError());
  EXPECT_EQ(*Back->Peak, 128 * MiB);
  ASSERT_TRUE(Back->Measured);
  EXPECT_EQ(Back->Measured->PhasePeaks.size(), 4u);
  EXPECT_EQ(Back->Measured->Device, "cuda:0");
}

TEST(ChromeTrace, NoMemoryEventsIsSaidNotFailed) {
  std::string Path = tempFile(".json", R"({"traceEvents": [{"ph": "X", "cat": "cpu_op",
      "name": "aten::mm", "ts": 1, "dur": 2, "tid": 1, "pid": 1}]})");
  auto T = importTrace(Path);
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  EXPECT_TRUE(T->Devices.empty());
  ASSERT_EQ(T->Diags.size(), 1u);
  EXPECT_EQ(T->Diags.all()[0].Code, "no-memory-events");
  EXPECT_NE(T->Diags.all()[0].Message.find("profile_memory=True"), std::string::npos);
  llvm::sys::fs::remove(Path);
}

TEST(ChromeTrace, MalformedInputNamesTheByte) {
  for (const char *Text : {R"({"traceEvents": [{"ph": "i", "ts": 1,)",
                           R"({"traceEvents": [{"ph": "i" "ts": 1}]})", R"({"other": 1})",
                           R"({"traceEvents": [{"name": "\q"}]})", "42"}) {
    std::string Path = tempFile(".json", Text);
    auto T = importChromeTrace(Path, {});
    ASSERT_FALSE(bool(T)) << Text;
    std::string Message = llvm::toString(T.takeError());
    EXPECT_NE(Message.find(Path), std::string::npos) << Message;
    llvm::sys::fs::remove(Path);
  }
}

// Events lying wholly in a chunk are read in place, the others (and any the in-place
// reader declines) by the cursor. With chunks of one byte every event takes the cursor;
// every other size splits the events differently: the reports must not change.
TEST(ChromeTrace, PhasesByName) {
  // Case-insensitive for letters only, anywhere in the name; "backward" wins, then
  // zero_grad, optimizer, forward; the words whole.
  const std::pair<const char *, int> Cases[] = {
      {"## backward ##", chrome::Backward},
      {"autograd::engine::evaluate_function: AddmmBackward0", chrome::Backward},
      {"MulBACKWARD0", chrome::Backward},
      {"forward_then_backward", chrome::Backward},
      {"Optimizer.zero_grad#SGD.zero_grad", chrome::ZeroGrad},
      {"ZERO_GRAD", chrome::ZeroGrad},
      {"Optimizer.step#AdamW.step", chrome::Optimizer},
      {"phase:OPTIMIZER#2", chrome::Optimizer},
      {"optimizer forward", chrome::Optimizer},
      {"## forward ##", chrome::Forward},
      {"nn.Module: FoRwArD", chrome::Forward},
      {"zero grad", -1},
      {"zero\x7fgrad", -1}, // '_' is not a letter: 0x7f is not its other case
      {"backwar", -1},
      {"forwar", -1},
      {"optimize", -1},
      {"void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>", -1},
      {"", -1}};
  for (const auto &[Name, Phase] : Cases)
    EXPECT_EQ(chrome::classifyPhase(Name), Phase) << Name;
}

TEST(ChromeTrace, NestedRangesInEitherOrderGiveTheSamePhases) {
  // Backward ranges nested both ways round in the file (the enclosing one after those
  // inside it, and before them), touching, and apart; a memory event in each place. The
  // ranges kept as they arrive must place every event as the whole sorted union does.
  auto range = [](double Ts, double Dur) {
    return "{\"ph\": \"X\", \"cat\": \"cpu_op\", \"name\": \"MmBackward0\", \"tid\": 1, "
           "\"ts\": " + std::to_string(Ts) + ", \"dur\": " + std::to_string(Dur) + "}";
  };
  std::string T = "[" + range(10, 2) + ",\n" + range(9, 5) + ",\n" + range(20, 5) + ",\n" +
                  range(21, 1) + ",\n" + range(25, 3) + ",\n" + range(40, 1) + ",\n" +
                  range(39, 1) + ",\n" + range(40.5, 2);
  const double Times[] = {8, 13, 15, 23, 26.5, 29, 39.5, 40.25, 42, 50};
  const char *Want[] = {"forward",  "backward", "forward",  "backward", "backward",
                        "forward",  "backward", "backward", "backward", ""};
  int64_t Total = 0;
  for (double Ts : Times) {
    Total += 4096;
    T += ",\n{\"ph\": \"i\", \"name\": \"[memory]\", \"tid\": 1, \"ts\": " +
         std::to_string(Ts) + ", \"args\": {\"Device Type\": 1, \"Device Id\": 0, "
         "\"Bytes\": 4096, \"Total Allocated\": " + std::to_string(Total) + "}}";
  }
  const std::string Path = tempFile(".json", T + "]");
  // The ranges kept as structs, and encoded and read back from the temporary file.
  for (size_t Memory : {TraceOptions().RecordMemory, size_t(1)}) {
    TraceOptions Opts;
    Opts.PlainRecords = Memory == 1 ? 0 : Opts.PlainRecords;
    Opts.RecordMemory = Memory;
    auto M = importChromeTrace(Path, Opts);
    ASSERT_TRUE(bool(M)) << llvm::toString(M.takeError());
    const DeviceMemory &D = M->selected();
    ASSERT_EQ(D.Timeline.size(), std::size(Times));
    for (size_t I = 0; I < std::size(Times); ++I) {
      EXPECT_EQ(D.Timeline[I].TimeUs, Times[I]);
      EXPECT_EQ(D.Timeline[I].Phase, Want[I]) << "the event at " << Times[I];
    }
  }
  llvm::sys::fs::remove(Path);
}

TEST(ChromeTrace, ThousandsOfPhaseRangesGiveTheSamePhases) {
  // 5,000 backward operators apart from one another (each a range of its own, as in a
  // long trace), written in time order, then one holding the first 2,000 of them (too
  // many for the ranges kept in memory to absorb), then a second batch written in
  // reverse; a memory event inside each range and one in each gap. Past the last ranges
  // kept in memory the ranges are streamed (and past a memory limit, written to the
  // temporary file) and merged as they are read back: every event must still fall in the
  // phase the ranges give it. Without forward ranges, what precedes a backward range is
  // forward; after the last, no phase.
  std::string T = "[";
  auto add = [&](const std::string &Event) { T += (T.size() > 1 ? ",\n" : "") + Event; };
  auto range = [](int64_t Ts, int64_t Dur = 10) {
    return "{\"ph\": \"X\", \"cat\": \"cpu_op\", \"name\": \"MmBackward0\", \"tid\": 1, "
           "\"ts\": " + std::to_string(Ts) + ", \"dur\": " + std::to_string(Dur) + "}";
  };
  constexpr int64_t N = 5000, Held = 2000;
  for (int64_t K = 0; K < N; ++K)
    add(range(100 + 20 * K)); // [100 + 20K, 110 + 20K]
  add(range(100, 20 * (Held - 1) + 10));
  for (int64_t K = 2 * N; K-- > N;)
    add(range(100 + 20 * K));
  std::vector<std::pair<int64_t, const char *>> Want;
  int64_t Total = 0;
  for (int64_t K = 0; K < 2 * N; ++K)
    for (auto [Ts, Phase] : {std::pair<int64_t, const char *>{105 + 20 * K, "backward"},
                             {115 + 20 * K, K + 1 < Held    ? "backward"
                                            : K + 1 < 2 * N ? "forward"
                                                            : ""}}) {
      Total += 512;
      add("{\"ph\": \"i\", \"name\": \"[memory]\", \"tid\": 1, \"ts\": " +
          std::to_string(Ts) + ", \"args\": {\"Device Type\": 1, \"Device Id\": 0, "
          "\"Bytes\": 512, \"Total Allocated\": " + std::to_string(Total) + "}}");
      Want.push_back({Ts, Phase});
    }
  const std::string Path = tempFile(".json", T + "]");
  for (auto [Plain, Memory] : {std::pair<size_t, size_t>{TraceOptions().PlainRecords, 0},
                               {0, 0}, {0, 100}}) {
    SCOPED_TRACE("plain " + std::to_string(Plain) + ", memory " + std::to_string(Memory));
    TraceOptions Opts;
    Opts.PlainRecords = Plain;
    Opts.RecordMemory = Memory;
    Opts.MaxTimelinePoints = 4 * N; // every event kept
    auto M = importChromeTrace(Path, Opts);
    ASSERT_TRUE(bool(M)) << llvm::toString(M.takeError());
    const DeviceMemory &D = M->selected();
    ASSERT_EQ(D.Timeline.size(), Want.size());
    size_t Wrong = 0;
    for (size_t I = 0; I < Want.size(); ++I)
      Wrong += D.Timeline[I].TimeUs != static_cast<double>(Want[I].first) ||
               D.Timeline[I].Phase != Want[I].second;
    EXPECT_EQ(Wrong, 0u);
  }
  llvm::sys::fs::remove(Path);
}

TEST(ChromeTrace, PhasesByNameAtEveryPlace) {
  // The names are sifted 16 places at a time by their first two letters: each word, in
  // either case, at every place of a name long enough for several blocks, among letters
  // that start the words but do not finish them, against the plain definition.
  auto expected = [](std::string Name) {
    for (char &C : Name)
      C = static_cast<char>(llvm::toLower(C));
    llvm::StringRef L(Name);
    return L.contains("backward")    ? chrome::Backward
           : L.contains("zero_grad") ? chrome::ZeroGrad
           : L.contains("optimizer") ? chrome::Optimizer
           : L.contains("forward")   ? chrome::Forward
                                     : -1;
  };
  const std::string Filler = "fobzBa_FoOpzeZEbAforwar";
  for (const char *Word : {"backward", "ZERO_GRAD", "Optimizer", "forward", "forwarx"})
    for (size_t Length : {9u, 12u, 16u, 17u, 20u, 24u, 30u, 32u, 33u, 40u, 47u, 50u})
      for (size_t At = 0; At + std::strlen(Word) <= Length; ++At) {
        std::string Name;
        while (Name.size() < Length)
          Name += Filler;
        Name.resize(Length);
        Name.replace(At, std::strlen(Word), Word);
        EXPECT_EQ(chrome::classifyPhase(Name), expected(Name)) << Name;
      }
}

TEST(ChromeTrace, MemoryEventsInAnyOrderGiveTheSameReport) {
  // The records are sorted by time: runs already in order are merged (up to 64), more are
  // sorted outright. Distinct times, so every order has one sorted form.
  std::vector<std::string> Events;
  int64_t Total = 0;
  for (int I = 0; I < 600; ++I) {
    const int64_t Bytes = I % 3 == 2 ? -4096 : 8192;
    Total += Bytes;
    Events.push_back("{\"ph\": \"i\", \"name\": \"[memory]\", \"tid\": 1, \"ts\": " +
                     std::to_string(100 + I) + ", \"args\": {\"Device Type\": 1, \"Device Id\": "
                     "0, \"Bytes\": " + std::to_string(Bytes) + ", \"Total Allocated\": " +
                     std::to_string(Total) + "}}");
  }
  auto traceOf = [](const std::vector<std::string> &E) {
    std::string T = "[";
    for (size_t I = 0; I < E.size(); ++I)
      T += (I ? ",\n" : "") + E[I];
    return T + "]";
  };
  const std::string Sorted = tempFile(".json", traceOf(Events));
  auto Reference = importChromeTrace(Sorted, TraceOptions());
  ASSERT_TRUE(bool(Reference)) << llvm::toString(Reference.takeError());
  Reference->Path = "trace";
  const std::string Expected = reportJson(*Reference);
  for (size_t Runs : {size_t(2), size_t(3), size_t(7), size_t(64), size_t(65), size_t(600)}) {
    SCOPED_TRACE(std::to_string(Runs) + " runs");
    // The sorted events cut into Runs pieces, written last piece first: Runs runs.
    std::vector<std::string> Shuffled;
    for (size_t R = Runs; R-- > 0;)
      for (size_t I = R * Events.size() / Runs; I < (R + 1) * Events.size() / Runs; ++I)
        Shuffled.push_back(Events[I]);
    const std::string Path = tempFile(".json", traceOf(Shuffled));
    // As structs, encoded, and encoded from the 101st record on; encoded runs read back
    // from the temporary file.
    for (auto [Plain, Memory] : {std::pair<size_t, size_t>{TraceOptions().PlainRecords, 0},
                                 {0, 0}, {100, 0}, {0, 100}}) {
      SCOPED_TRACE("plain records: " + std::to_string(Plain) + ", memory " +
                   std::to_string(Memory));
      TraceOptions Opts;
      Opts.PlainRecords = Plain;
      Opts.RecordMemory = Memory;
      auto T = importChromeTrace(Path, Opts);
      ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
      T->Path = "trace";
      EXPECT_TRUE(reportJson(*T) == Expected);
    }
    llvm::sys::fs::remove(Path);
  }
  llvm::sys::fs::remove(Sorted);
}

TEST(ChromeTrace, AllocationsLiveAtThePeakOfALongTrace) {
  // Past 65,536 records the allocations live at the peak are found on a second thread,
  // from the peak found ahead of the per-device pass; figures worked out by hand.
  // 40,000 blocks of (I % 100 + 1) KiB at address 4096 * (I + 1), every even one freed,
  // then 1 GiB allocated inside a "step" range and everything freed.
  std::string T = "[";
  int64_t Total = 0, Ts = 0;
  auto event = [&](int64_t Addr, int64_t Bytes) {
    Total += Bytes;
    T += (T.size() > 1 ? ",\n" : "") + std::string("{\"ph\": \"i\", \"name\": \"[memory]\", ") +
         "\"tid\": 1, \"ts\": " + std::to_string(++Ts) + ", \"args\": {\"Device Type\": 1, " +
         "\"Device Id\": 0, \"Addr\": " + std::to_string(Addr) + ", \"Bytes\": " +
         std::to_string(Bytes) + ", \"Total Allocated\": " + std::to_string(Total) + "}}";
  };
  auto size = [](int64_t I) { return (I % 100 + 1) * 1024; };
  for (int64_t I = 0; I < 40000; ++I)
    event(4096 * (I + 1), size(I));
  for (int64_t I = 0; I < 40000; I += 2)
    event(4096 * (I + 1), -size(I));
  const int64_t Kept = Total;
  T += ",\n{\"ph\": \"X\", \"name\": \"step\", \"tid\": 1, \"ts\": " + std::to_string(Ts + 1) +
       ", \"dur\": 2}";
  event(int64_t(1) << 40, int64_t(1) << 30);
  event(int64_t(1) << 40, -(int64_t(1) << 30));
  for (int64_t I = 1; I < 40000; I += 2)
    event(4096 * (I + 1), -size(I));
  const std::string Path = tempFile(".json", T + "]");
  for (const char *Window : {"", "step"})
  for (auto [Plain, Memory] : {std::pair<size_t, size_t>{TraceOptions().PlainRecords, 0},
                               {0, 0}, {0, 4096}}) {
    SCOPED_TRACE(std::string("window: ") + Window + ", plain records: " +
                 std::to_string(Plain) + ", memory " + std::to_string(Memory));
    TraceOptions Opts;
    Opts.WindowPattern = Window;
    Opts.PlainRecords = Plain;
    Opts.RecordMemory = Memory;
    auto M = importChromeTrace(Path, Opts);
    ASSERT_TRUE(bool(M)) << llvm::toString(M.takeError());
    const DeviceMemory &D = M->selected();
    EXPECT_EQ(D.Events, 80002);
    EXPECT_EQ(D.Peak, Kept + (int64_t(1) << 30));
    EXPECT_EQ(D.LiveAtPeakCount, 20001);
    ASSERT_EQ(D.LiveAtPeak.size(), 10u);
    EXPECT_EQ(D.LiveAtPeak[0].Bytes, int64_t(1) << 30);
    // Then the 100 KiB blocks, earliest first: I = 99, 199, ...
    for (size_t K = 1; K < 10; ++K) {
      EXPECT_EQ(D.LiveAtPeak[K].Bytes, 100 * 1024);
      EXPECT_EQ(D.LiveAtPeak[K].Addr, uint64_t(4096) * (100 * (K - 1) + 99 + 1));
    }
  }
  llvm::sys::fs::remove(Path);
}

TEST(TraceStream, TruncatedGzipIsAnError) {
  std::ifstream In(data("kineto_small.json.gz"), std::ios::binary);
  std::string Bytes((std::istreambuf_iterator<char>(In)), std::istreambuf_iterator<char>());
  std::string Path = tempFile(".json.gz", Bytes.substr(0, Bytes.size() / 2));
  auto T = importTrace(Path);
  ASSERT_FALSE(bool(T));
  EXPECT_NE(llvm::toString(T.takeError()).find("gzip"), std::string::npos);
  llvm::sys::fs::remove(Path);
}

namespace {
/// Everything a ByteReader hands out, and how it ended (three more calls after the end
/// must answer the same at once: a reader never hangs or changes its mind).
struct ReadAll {
  std::string Bytes;
  std::string Error;
};
ReadAll readAll(const std::string &Path, size_t Chunk,
                ByteReader::Inflater Use = ByteReader::Inflater::Fastest) {
  ReadAll R;
  auto Reader = ByteReader::open(Path, Chunk, Use);
  if (!Reader) {
    R.Error = llvm::toString(Reader.takeError());
    return R;
  }
  while (true) {
    auto C = (*Reader)->next();
    if (!C) {
      R.Error = llvm::toString(C.takeError());
      break;
    }
    if (C->empty())
      break;
    R.Bytes += C->str();
  }
  for (int I = 0; I < 3; ++I) {
    auto Again = (*Reader)->next();
    if (!Again)
      EXPECT_EQ(llvm::toString(Again.takeError()), R.Error) << "call " << I << " after the end";
    else
      EXPECT_TRUE(Again->empty() && R.Error.empty()) << "call " << I << " after the end";
  }
  return R;
}
} // namespace

// Gzip is inflated on a second thread while the parser reads: the bytes, their order and
// the errors are the same as inflating in place, for any chunk size.
TEST(TraceStream, InflatingAheadChangesNothing) {
  std::ifstream In(data("kineto_small.json.gz"), std::ios::binary);
  std::string Packed((std::istreambuf_iterator<char>(In)), std::istreambuf_iterator<char>());
  // The whole member inflated at once by zlib, as the reference.
  std::string Expected(1 << 20, '\0');
  z_stream S{};
  ASSERT_EQ(inflateInit2(&S, 16 + MAX_WBITS), Z_OK);
  S.next_in = reinterpret_cast<Bytef *>(Packed.data());
  S.avail_in = static_cast<uInt>(Packed.size());
  S.next_out = reinterpret_cast<Bytef *>(Expected.data());
  S.avail_out = static_cast<uInt>(Expected.size());
  ASSERT_EQ(inflate(&S, Z_FINISH), Z_STREAM_END);
  Expected.resize(S.total_out);
  inflateEnd(&S);
  ASSERT_FALSE(Expected.empty());
  for (size_t Chunk : {size_t(1), size_t(7), size_t(4096), size_t(1) << 20}) {
    ReadAll R = readAll(data("kineto_small.json.gz"), Chunk);
    EXPECT_EQ(R.Error, "") << Chunk;
    EXPECT_TRUE(R.Bytes == Expected) << "chunks of " << Chunk << ": " << R.Bytes.size()
                                     << " bytes, expected " << Expected.size();
  }
  // A damaged stream: the same error, after the same good bytes, whatever the chunk.
  std::string Damaged = Packed;
  for (size_t I = Damaged.size() / 2; I < Damaged.size() / 2 + 16; ++I)
    Damaged[I] = static_cast<char>(~Damaged[I]);
  std::string Path = tempFile(".json.gz", Damaged);
  ReadAll Small = readAll(Path, 64), Large = readAll(Path, 1 << 20);
  EXPECT_NE(Small.Error.find("gzip"), std::string::npos) << Small.Error;
  EXPECT_EQ(Small.Error, Large.Error);
  // A reader dropped half-way stops its worker (the test would hang otherwise).
  {
    auto Reader = ByteReader::open(data("kineto_small.json.gz"), 16);
    ASSERT_TRUE(static_cast<bool>(Reader));
    ASSERT_TRUE(static_cast<bool>((*Reader)->next()));
  }
  llvm::sys::fs::remove(Path);
}

// ISA-L inflates where the build has it (ByteReader::fastestInflater), zlib otherwise;
// zlib takes over from ISA-L on anything but a clean end. Either way the bytes handed
// out and the errors must be zlib's, for sound, damaged, truncated and concatenated
// streams, whatever the chunk size.
TEST(TraceStream, BothInflatersHandOutTheSameBytesAndErrors) {
  SCOPED_TRACE("fastest inflater: " + ByteReader::fastestInflater().str());
  auto slurp = [](const std::string &Path) {
    std::ifstream In(Path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(In)), std::istreambuf_iterator<char>());
  };
  std::string Packed = slurp(data("kineto_small.json.gz"));
  std::string Other = slurp(data("timeline.raw.json.gz"));
  // What zlib hands out for the sound files (InflatingAheadChangesNothing holds it to
  // zlib inflating a whole member at once).
  std::string Sound = readAll(data("kineto_small.json.gz"), 1 << 20, ByteReader::Inflater::Zlib).Bytes;
  std::string SoundOther =
      readAll(data("timeline.raw.json.gz"), 1 << 20, ByteReader::Inflater::Zlib).Bytes;
  ASSERT_FALSE(Sound.empty() || SoundOther.empty());
  std::string Damaged = Packed, BadCrc = Packed, BadLength = Packed;
  for (size_t I = Damaged.size() / 2; I < Damaged.size() / 2 + 16; ++I)
    Damaged[I] = static_cast<char>(~Damaged[I]);
  BadCrc[BadCrc.size() - 6] ^= 1;
  BadLength[BadLength.size() - 1] ^= 1;
  const std::pair<const char *, std::string> Cases[] = {
      {"sound", Packed},
      {"two members", Packed + Other},
      {"damaged", Damaged},
      {"bad crc", BadCrc},
      {"bad length", BadLength},
      {"truncated in the data", Packed.substr(0, Packed.size() / 3)},
      {"truncated in the trailer", Packed.substr(0, Packed.size() - 3)},
      {"truncated in the second header", Packed + Other.substr(0, 5)},
      {"trailing zeros", Packed + std::string(2, '\0')},
      {"trailing garbage", Packed + "garbage after the member"},
  };
  for (const auto &[Name, Bytes] : Cases) {
    std::string Path = tempFile(".json.gz", Bytes);
    for (size_t Chunk : {size_t(1), size_t(7), size_t(4096), size_t(1) << 20}) {
      SCOPED_TRACE(std::string(Name) + ", chunks of " + std::to_string(Chunk));
      ReadAll Fast = readAll(Path, Chunk), Zlib = readAll(Path, Chunk, ByteReader::Inflater::Zlib);
      EXPECT_EQ(Fast.Error, Zlib.Error);
      EXPECT_TRUE(Fast.Bytes == Zlib.Bytes) << Fast.Bytes.size() << " vs " << Zlib.Bytes.size();
      if (llvm::StringRef(Name) == "sound") {
        EXPECT_EQ(Fast.Error, "");
        EXPECT_TRUE(Fast.Bytes == Sound);
      } else if (llvm::StringRef(Name) == "two members") {
        EXPECT_EQ(Fast.Error, "");
        EXPECT_TRUE(Fast.Bytes == Sound + SoundOther);
      } else {
        EXPECT_NE(Zlib.Error.find("gzip"), std::string::npos) << Zlib.Error;
      }
    }
    llvm::sys::fs::remove(Path);
  }
}

TEST(TraceStream, DecompressionBombIsRefused) {
  // 300 MiB of spaces deflate to ~300 KiB: a ratio of ~1000 past 256 MiB.
  std::string Packed;
  z_stream S{};
  ASSERT_EQ(deflateInit2(&S, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string Block(1 << 20, ' ');
  Block[0] = '[';
  std::vector<char> Out(1 << 16);
  for (int I = 0; I < 300; ++I) {
    S.next_in = reinterpret_cast<Bytef *>(Block.data());
    S.avail_in = static_cast<uInt>(Block.size());
    do {
      S.next_out = reinterpret_cast<Bytef *>(Out.data());
      S.avail_out = static_cast<uInt>(Out.size());
      deflate(&S, I == 299 ? Z_FINISH : Z_NO_FLUSH);
      Packed.append(Out.data(), Out.size() - S.avail_out);
    } while (S.avail_out == 0);
    Block[0] = ' ';
  }
  deflateEnd(&S);
  std::string Path = tempFile(".json.gz", Packed);
  auto T = importChromeTrace(Path, {});
  ASSERT_FALSE(bool(T));
  EXPECT_NE(llvm::toString(T.takeError()).find("decompression bomb"), std::string::npos);
  llvm::sys::fs::remove(Path);
}

TEST(MemoryTimeline, CategoriesAtThePeak) {
  for (const char *Name : {"timeline.raw.json", "timeline.raw.json.gz"}) {
    SCOPED_TRACE(Name);
    auto T = importTrace(data(Name));
    ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
    EXPECT_EQ(T->Format, TraceFormat::MemoryTimeline);
    const DeviceMemory &D = T->selected();
    EXPECT_EQ(D.Peak, 191 * MiB);
    ASSERT_TRUE(D.PeakByCategory);
    EXPECT_EQ(D.PeakByCategory->Weights, 40 * MiB);
    EXPECT_EQ(D.PeakByCategory->OptimizerStates, 80 * MiB);
    EXPECT_EQ(D.PeakByCategory->Activations, 30 * MiB);
    EXPECT_EQ(D.PeakByCategory->Gradients, 40 * MiB);
    EXPECT_EQ(D.PeakByCategory->Inputs, MiB);
    EXPECT_EQ(D.PeakByCategory->Temporaries, 0);
    MemoryReport R = traceToReport(*T);
    EXPECT_EQ(R.Bytes.AutogradDetail, 30 * MiB); // after the version bump
    EXPECT_EQ(R.Bytes.Temporaries, 5 * MiB);
    EXPECT_EQ(R.Bytes.Activations, 30 * MiB);
  }
}

TEST(MemoryTimeline, BadRowsAreNamed) {
  for (const char *Text : {"[[0, 9, 10, 0]]", "[[0, 2, 10, 12]]", "[[0, 2, 10]]"}) {
    std::string Path = tempFile(".raw.json", Text);
    auto T = importTrace(Path);
    ASSERT_FALSE(bool(T)) << Text;
    EXPECT_NE(llvm::toString(T.takeError()).find("byte 1"), std::string::npos) << Text;
    llvm::sys::fs::remove(Path);
  }
}

TEST(NsysSqlite, DriverAllocationsPerDevice) {
  auto T = importTrace(data("nsys_memory.sqlite"));
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  EXPECT_EQ(T->Format, TraceFormat::NsysSqlite);
  ASSERT_EQ(T->Devices.size(), 2u);
  const DeviceMemory &D = T->selected();
  EXPECT_EQ(D.Device, "cuda:0");
  EXPECT_EQ(D.Peak, 62 * MiB);
  EXPECT_EQ(D.PeakReserved, 62 * MiB);
  EXPECT_EQ(D.LiveAtPeakCount, 3);
  EXPECT_EQ(D.LiveAtPeak[0].Bytes, 40 * MiB);
  EXPECT_EQ(T->Devices[1].Peak, 2 * MiB);
  auto Empty = importTrace(data("nsys_no_memory.sqlite"));
  ASSERT_TRUE(bool(Empty)) << llvm::toString(Empty.takeError());
  EXPECT_TRUE(Empty->Devices.empty());
  EXPECT_EQ(Empty->Diags.all()[0].Code, "no-memory-events");
}

TEST(TraceFormats, DetectionAndRefusal) {
  auto Detect = [](const std::string &Path) {
    auto F = detectTraceFormat(Path);
    return F ? std::string(traceFormatName(*F)) : llvm::toString(F.takeError());
  };
  EXPECT_EQ(Detect(data("kineto_small.json.gz")), "chrome-trace");
  EXPECT_EQ(Detect(data("timeline.raw.json")), "memory-timeline");
  EXPECT_EQ(Detect(data("nsys_memory.sqlite")), "nsys-sqlite");
  std::string Text = tempFile(".json", "hello");
  EXPECT_NE(Detect(Text).find("not a trace trainmem reads"), std::string::npos);
  llvm::sys::fs::remove(Text);
  EXPECT_TRUE(looksLikeTrace("run.pt.trace.json.gz"));
  EXPECT_FALSE(looksLikeTrace("models/llama/config.json"));
  EXPECT_FALSE(looksLikeTrace("model.onnx"));
}

TEST(TraceTimeline, DecimationKeepsThePeak) {
  std::vector<MeasuredSample> Samples;
  for (int I = 0; I < 10000; ++I)
    Samples.push_back({static_cast<double>(I), I == 6123 ? 1000000 : I % 97, std::nullopt,
                       std::nullopt, ""});
  decimateTimeline(Samples, 100);
  EXPECT_LE(Samples.size(), 100u);
  int64_t Max = 0;
  for (const MeasuredSample &S : Samples)
    Max = std::max(Max, S.Allocated);
  EXPECT_EQ(Max, 1000000);
}

TEST(TraceTimeline, DecimationMergesPairsInPlace) {
  // Each round merges neighbours: the larger allocated figure with its time (the earlier
  // on a tie), the larger reserved of the two, an odd last sample carried as it is.
  std::vector<MeasuredSample> Samples = {{0, 5, std::nullopt, std::nullopt, ""},
                                         {1, 5, 7, std::nullopt, ""},
                                         {2, 3, std::nullopt, std::nullopt, ""},
                                         {3, 9, 1, std::nullopt, ""},
                                         {4, 2, std::nullopt, std::nullopt, ""}};
  const size_t Capacity = Samples.capacity();
  // Round one: (0, 5, 7) (3, 9, 1) (4, 2); round two: (3, 9, 7) (4, 2).
  decimateTimeline(Samples, 2);
  ASSERT_EQ(Samples.size(), 2u);
  EXPECT_EQ(Samples[0].TimeUs, 3);
  EXPECT_EQ(Samples[0].Allocated, 9);
  EXPECT_EQ(Samples[0].Reserved, 7);
  EXPECT_EQ(Samples[1].TimeUs, 4);
  EXPECT_EQ(Samples[1].Allocated, 2);
  EXPECT_FALSE(Samples[1].Reserved);
  // In place: the importer's timeline grows again after each decimation.
  EXPECT_EQ(Samples.capacity(), Capacity);
}

TEST(Compare, ErrorsPerPhase) {
  auto T = importTrace(data("kineto_small.json"));
  ASSERT_TRUE(bool(T)) << llvm::toString(T.takeError());
  MemoryReport Measured = traceToReport(*T);
  MemoryReport Predicted;
  Predicted.Model.Name = "prediction";
  Predicted.Peak = 120 * MiB;
  auto Point = [&](const char *Phase, int64_t Total) {
    TimelinePoint P;
    P.Phase = Phase;
    P.Live.Temporaries = Total;
    Predicted.Timeline.push_back(P);
  };
  Point("forward", 110 * MiB);
  Point("backward", 120 * MiB);
  Point("optimizer", 106 * MiB);
  Comparison C = compareReports(Predicted, Measured);
  EXPECT_NEAR(*C.Peak.errorPercent(), -6.25, 1e-9);
  ASSERT_EQ(C.Phases.size(), 3u); // zero_grad is on one side only
  EXPECT_EQ(C.Phases[0].Name, "forward");
  EXPECT_NEAR(*C.Phases[0].errorPercent(), 100.0 * (110.0 - 112.0) / 112.0, 1e-9);
  // The optimizer phase is entered with the backward's last state (120 MiB) live.
  EXPECT_EQ(C.Phases[2].Predicted, 120 * MiB);
  EXPECT_NEAR(worstError(C), 100.0 * (120.0 - 106.0) / 106.0, 1e-9);
  EXPECT_EQ(C.AlignedPhases.size(), 3u);
  EXPECT_FALSE(C.PredictedLine.Points.empty());
  EXPECT_FALSE(C.MeasuredLine.Points.empty());

  // Every writer lists the same rows; HTML draws both lines on the phase-aligned axis.
  std::string Html, Markdown, Text;
  llvm::raw_string_ostream H(Html), Md(Markdown), Tx(Text);
  writeComparisonHtml(C, H);
  writeComparisonMarkdown(C, Md);
  writeComparisonText(C, Tx);
  size_t Lines = 0;
  for (size_t At = 0; (At = Html.find("<polyline", At)) != std::string::npos; ++At)
    ++Lines;
  EXPECT_EQ(Lines, 2u);
  EXPECT_NE(Html.find("<title>predicted</title>"), std::string::npos);
  EXPECT_NE(Html.find("<title>measured</title>"), std::string::npos);
  for (const std::string *Doc : {&Html, &Markdown, &Text})
    EXPECT_NE(Doc->find("peak in backward"), std::string::npos);
  llvm::json::Value J = comparisonToJson(C);
  EXPECT_EQ(J.getAsObject()->getString("schema"), "trainmem.compare/1");
  EXPECT_EQ(J.getAsObject()->getArray("phases")->size(), 3u);
}

} // namespace
} // namespace trainmem

namespace trainmem {
namespace {

// Inputs the fuzzers found (tests/fuzz/README.md): each file starts with the byte
// FuzzTraces uses to pick the importer. They must be errors with a message, not crashes.
TEST(FuzzRegressions, FoundInputsAreErrorsOrReports) {
  std::string Dir = std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/fuzz-regressions";
  std::error_code EC;
  int Seen = 0;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC)) {
    if (!llvm::StringRef(It->path()).starts_with(Dir + "/traces-"))
      continue;
    std::ifstream In(It->path(), std::ios::binary);
    std::string Bytes((std::istreambuf_iterator<char>(In)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(Bytes.empty());
    std::string Path = tempFile(".trace", Bytes.substr(1));
    TraceOptions Opts;
    Opts.ChunkBytes = 61;
    llvm::Expected<MeasuredTrace> T =
        Bytes[0] % 6 == 0   ? importChromeTrace(Path, Opts)
        : Bytes[0] % 6 == 1 ? importMemoryTimeline(Path, Opts)
        : Bytes[0] % 6 == 2 ? importCudaSnapshot(Path, TraceFormat::CudaSnapshotPickle, Opts)
        : Bytes[0] % 6 == 3 ? importCudaSnapshot(Path, TraceFormat::CudaSnapshotJson, Opts)
        : Bytes[0] % 6 == 4 ? importNsysSqlite(Path, Opts)
                            : importTrace(Path, Opts);
    if (!T) {
      std::string Message = llvm::toString(T.takeError());
      EXPECT_NE(Message.find(Path), std::string::npos) << It->path() << ": " << Message;
    }
    llvm::sys::fs::remove(Path);
    ++Seen;
  }
  EXPECT_GT(Seen, 0);
}

TEST(FuzzRegressions, TimelineValuesOutOfIntegerRangeAreRefused) {
  std::string Path = tempFile(".raw.json", "[[0, 2, 4.28283e+44, 3]]");
  auto T = importTrace(Path);
  ASSERT_FALSE(bool(T));
  EXPECT_NE(llvm::toString(T.takeError()).find("expected an integer"), std::string::npos);
  llvm::sys::fs::remove(Path);
  Path = tempFile(".raw.json", "[[0, 2, 9223372036854775807, 3], [1, 2, 9223372036854775807, 3]]");
  auto Sum = importTrace(Path);
  ASSERT_FALSE(bool(Sum));
  EXPECT_NE(llvm::toString(Sum.takeError()).find("overflow"), std::string::npos);
  llvm::sys::fs::remove(Path);
}

} // namespace
} // namespace trainmem
