//===- ReportDiffTest.cpp - comparing two memory reports -------------------------===//
#include "analyzer/ReportDiff.h"

#include <gtest/gtest.h>

using namespace trainmem;

namespace {

/// A minimal trainmem.report/1 document with the fields a diff reads.
std::string report(int64_t Peak, int64_t Activations, const char *LayerBytes,
                   const char *TopTensors) {
  return R"({"schema": "trainmem.report/1", "model": {"name": "m"},
             "bytes": {"peak": )" +
         std::to_string(Peak) + R"(, "peak_reserved": null, "weights": 100,
                       "activations": )" +
         std::to_string(Activations) + R"(},
             "layers": [)" +
         LayerBytes + R"(],
             "peak": {"phase": "backward", "op": "MatMul", "top_tensors": [)" +
         TopTensors + "]}}";
}

ReportFigures read(const std::string &Json, const char *File) {
  auto R = readReportFigures(Json, File);
  EXPECT_TRUE(static_cast<bool>(R)) << (R ? "" : llvm::toString(R.takeError()));
  return R ? std::move(*R) : ReportFigures{};
}

} // namespace

TEST(ReportDiff, FiguresLayersAndTensorsByLargestChange) {
  ReportFigures Base = read(report(1000, 400,
                                   R"({"path": "a", "weight_bytes": 10, "saved_bytes": 5},
                                      {"path": "b", "gradient_bytes": 50})",
                                   R"({"name": "x", "bytes": 300}, {"name": "y", "bytes": 20})"),
                            "base.json");
  ReportFigures New = read(report(1300, 700,
                                  R"({"path": "a", "weight_bytes": 10, "saved_bytes": 205},
                                     {"path": "b", "gradient_bytes": 50},
                                     {"path": "c", "optimizer_state_bytes": 7})",
                                  R"({"name": "x", "bytes": 600}, {"name": "z", "bytes": 30})"),
                           "new.json");
  ReportDiff D = diffReports(Base, New);
  ASSERT_EQ(D.Figures.size(), 3u); // peak, weights, activations; null peak_reserved skipped
  EXPECT_EQ(D.Figures[0].Name, "peak");
  EXPECT_EQ(D.Figures[0].change(), 300);
  EXPECT_DOUBLE_EQ(*D.Figures[0].percent(), 30.0);
  EXPECT_EQ(D.Figures[2].Name, "activations");
  EXPECT_EQ(D.Figures[2].change(), 300);
  // Layers: a grew by 200, c is new (7); b did not change and is left out.
  ASSERT_EQ(D.Layers.size(), 2u);
  EXPECT_EQ(D.Layers[0].Name, "a");
  EXPECT_EQ(D.Layers[0].change(), 200);
  EXPECT_EQ(D.Layers[1].Name, "c");
  EXPECT_FALSE(D.Layers[1].Base.has_value());
  // Tensors: x +300, z new +30, y gone -20.
  ASSERT_EQ(D.Tensors.size(), 3u);
  EXPECT_EQ(D.Tensors[0].Name, "x");
  EXPECT_EQ(D.Tensors[1].Name, "z");
  EXPECT_EQ(D.Tensors[2].Name, "y");
  EXPECT_EQ(D.Tensors[2].change(), -20);
  EXPECT_EQ(diffReports(Base, New, 1).Tensors.size(), 1u);
}

TEST(ReportDiff, IncreaseLimitsGateThePeak) {
  ReportFigures Base = read(report(1000, 0, "", ""), "base.json");
  ReportFigures New = read(report(1060, 0, "", ""), "new.json");
  ReportDiff D = diffReports(Base, New);
  auto Pct = [](const char *Text) {
    auto L = parseIncreaseLimit(Text);
    EXPECT_TRUE(static_cast<bool>(L)) << Text;
    return L ? *L : IncreaseLimit{};
  };
  EXPECT_FALSE(checkIncrease(D, Pct("10%")).has_value());
  auto Failed = checkIncrease(D, Pct("5%"));
  ASSERT_TRUE(Failed.has_value());
  EXPECT_NE(Failed->find("peak grew by 60 B (+6.0%)"), std::string::npos) << *Failed;
  EXPECT_NE(Failed->find("more than the allowed 5%"), std::string::npos) << *Failed;
  EXPECT_TRUE(checkIncrease(D, Pct("59B")).has_value());
  EXPECT_FALSE(checkIncrease(D, Pct("60B")).has_value());
  // A shrinking peak never fails.
  EXPECT_FALSE(checkIncrease(diffReports(New, Base), Pct("0%")).has_value());
  for (const char *Bad : {"five%", "-3%", "lots"}) {
    auto L = parseIncreaseLimit(Bad);
    ASSERT_FALSE(static_cast<bool>(L)) << Bad;
    EXPECT_NE(llvm::toString(L.takeError()).find("--max-increase="), std::string::npos);
  }
}

TEST(ReportDiff, NotAReportNamesTheFileAndField) {
  auto Error = [](const char *Json) {
    auto R = readReportFigures(Json, "r.json");
    EXPECT_FALSE(static_cast<bool>(R)) << Json;
    return R ? std::string() : llvm::toString(R.takeError());
  };
  EXPECT_NE(Error("{").find("r.json: not JSON"), std::string::npos);
  EXPECT_NE(Error(R"({"schema": "trainmem.plans/1"})").find("r.json: field 'schema'"),
            std::string::npos);
  EXPECT_NE(Error(R"({"schema": "trainmem.report/1", "bytes": {"peak": -1}})")
                .find("field 'bytes.peak': expected a non-negative integer"),
            std::string::npos);
  EXPECT_NE(Error(R"({"schema": "trainmem.report/1", "bytes": {}, "layers": [{}]})")
                .find("field 'layers[0].path'"),
            std::string::npos);
}
