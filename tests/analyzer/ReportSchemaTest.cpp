//===- ReportSchemaTest.cpp - the trainmem.report/1 contract ---------------------===//
//
// DESIGN.md fixes the report JSON: its top-level keys, the byte figures (integers, every
// category under its name), the peak with by_category under the same names, the
// timeline and the layers. A simulated step's report must have all of them, typed.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {

const char *const Categories[] = {"weights",          "master_weights", "gradients",
                                  "optimizer_states", "activations",    "temporaries",
                                  "inputs"};

/// The simulated step of one linear layer, as a report.
MemoryReport linearStepReport() {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 16});
  TensorId W = B.weight("fc.weight", {16, 8});
  B.output(B.op("MatMul", {X, W}, {4, 8}, "/fc/MatMul"));
  Graph G = B.finish();
  TrainingSetup S;
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto Sim = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(Sim));
  return buildStepReport(G, S, *C, std::move(*Sim));
}

llvm::json::Object stepReport() {
  llvm::json::Value V = reportToJson(linearStepReport());
  // Through text and back, as a consumer reads it.
  auto Parsed = llvm::json::parse(llvm::formatv("{0}", V).str());
  EXPECT_TRUE(static_cast<bool>(Parsed));
  return *Parsed->getAsObject();
}

} // namespace

TEST(ReportSchema, TopLevelKeysAndTypes) {
  llvm::json::Object R = stepReport();
  EXPECT_EQ(R.getString("schema"), "trainmem.report/1");
  for (const char *Key : {"model", "setup", "parameters", "bytes", "peak"})
    EXPECT_NE(R.getObject(Key), nullptr) << Key;
  for (const char *Key : {"timeline", "layers", "diagnostics"})
    EXPECT_NE(R.getArray(Key), nullptr) << Key;
  const llvm::json::Object *Params = R.getObject("parameters");
  ASSERT_NE(Params, nullptr);
  EXPECT_EQ(Params->getInteger("total"), 128);
  EXPECT_EQ(Params->getInteger("trainable"), 128);
}

TEST(ReportSchema, EveryByteFigureIsAnIntegerUnderItsCategoryName) {
  llvm::json::Object R = stepReport();
  const llvm::json::Object *Bytes = R.getObject("bytes");
  ASSERT_NE(Bytes, nullptr);
  for (const char *Key : Categories) {
    auto V = Bytes->getInteger(Key);
    ASSERT_TRUE(V.has_value()) << "bytes." << Key;
    EXPECT_GE(*V, 0) << Key;
  }
  ASSERT_TRUE(Bytes->getInteger("peak").has_value());
  ASSERT_TRUE(Bytes->getInteger("peak_reserved").has_value()) << "a CUDA step has one";
  // bytes.peak is the largest total: no timeline point exceeds it, and peak.by_category
  // adds up to it.
  const int64_t Peak = *Bytes->getInteger("peak");
  const llvm::json::Object *At = R.getObject("peak");
  ASSERT_NE(At, nullptr);
  for (const char *Key : {"phase", "op"})
    EXPECT_TRUE(At->getString(Key).has_value()) << "peak." << Key;
  const llvm::json::Object *ByCategory = At->getObject("by_category");
  ASSERT_NE(ByCategory, nullptr);
  int64_t Sum = 0;
  for (const char *Key : Categories) {
    auto V = ByCategory->getInteger(Key);
    ASSERT_TRUE(V.has_value()) << "peak.by_category." << Key;
    Sum += *V;
  }
  EXPECT_EQ(Sum, Peak);
  const llvm::json::Array *Top = At->getArray("top_tensors");
  ASSERT_NE(Top, nullptr);
  ASSERT_FALSE(Top->empty());
  for (const llvm::json::Value &T : *Top) {
    const llvm::json::Object *O = T.getAsObject();
    ASSERT_NE(O, nullptr);
    EXPECT_TRUE(O->getString("name") && O->getInteger("bytes") && O->getString("category"));
  }
  for (const llvm::json::Value &P : *R.getArray("timeline")) {
    const llvm::json::Object *O = P.getAsObject();
    ASSERT_NE(O, nullptr);
    int64_t Total = 0;
    for (const char *Key : Categories) {
      auto V = O->getInteger(Key);
      ASSERT_TRUE(V.has_value()) << "timeline point without " << Key;
      Total += *V;
    }
    EXPECT_LE(Total, Peak);
    EXPECT_TRUE(O->getString("phase").has_value());
  }
}

TEST(ReportJson, TimelineWrittenAsLlvmJsonPrintsIt) {
  // writeReportJson streams the timeline by hand; its bytes must be those of printing
  // reportToJson with llvm::json (indent 2), for simulated points and for measured ones
  // with times and reserved bytes, and for names that need escaping or UTF-8 repair.
  MemoryReport Simulated = linearStepReport();
  ASSERT_GT(Simulated.Timeline.size(), 3u);

  MemoryReport Measured = Simulated;
  Measured.Measured.emplace();
  std::vector<std::string> Names = {"aten::mm", "quote \" only", "back\\slash only",
                                    "tab\tnew\nline\x01", "caf\xc3\xa9 (UTF-8)", "",
                                    "bad \xff\xfe UTF-8"};
  for (size_t I = 0; I < Measured.Timeline.size(); ++I) {
    TimelinePoint &P = Measured.Timeline[I];
    P.Op = Names[I % Names.size()];
    P.Phase = Names[(I + 1) % Names.size()];
    P.TimeUs = 1234.5 + 0.1 * static_cast<double>(I) + (I == 1 ? 1e-300 : 0.0);
    if (I % 3 != 0) // a measured sample may lack the reserved figure
      P.Reserved = static_cast<int64_t>(I) << 40;
    P.Live.Unknown = -static_cast<int64_t>(I);
  }
  MemoryReport Empty = Simulated;
  Empty.Timeline.clear();

  for (const MemoryReport *R : {&Simulated, &Measured, &Empty}) {
    std::string Streamed;
    llvm::raw_string_ostream OS(Streamed);
    writeReportJson(*R, OS);
    OS.flush();
    std::string Printed = llvm::formatv("{0:2}", reportToJson(*R)).str() + "\n";
    EXPECT_EQ(Streamed, Printed);
  }
}

TEST(ReportJson, InvalidUtf8InModelNamesIsRepairedInEveryBuild) {
  // An ONNX file may name its graph, nodes and tensors with any bytes; llvm::json asserts
  // on invalid UTF-8 where assertions are on. Every string a report writes is repaired
  // first (U+FFFD), so Debug and sanitizer builds write the same valid JSON.
  MemoryReport R = linearStepReport();
  R.Model.Name = "model \xff";
  R.Model.Producer = "exporter \xc3";
  R.Model.Dims.push_back({"dim\xfe", 4});
  R.Diags.warning("code", "node \x80", "names node \x80");
  ASSERT_FALSE(R.Layers.empty());
  R.Layers[0].Path = "layer \xf0\x28";
  ASSERT_TRUE(R.PeakInfo.has_value());
  R.PeakInfo->Op = "op \xff";
  if (!R.PeakInfo->TopTensors.empty())
    R.PeakInfo->TopTensors[0].Name = "tensor \xfe";
  std::string Json;
  llvm::raw_string_ostream OS(Json);
  writeReportJson(R, OS);
  OS.flush();
  auto Parsed = llvm::json::parse(Json);
  ASSERT_TRUE(bool(Parsed)) << llvm::toString(Parsed.takeError());
  EXPECT_NE(Json.find("model \xef\xbf\xbd"), std::string::npos);
  EXPECT_NE(Json.find("names node \xef\xbf\xbd"), std::string::npos);
  EXPECT_NE(Json.find("op \xef\xbf\xbd"), std::string::npos);
}
