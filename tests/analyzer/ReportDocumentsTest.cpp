//===- ReportDocumentsTest.cpp - budget gate, JUnit, Markdown and HTML ----------===//
#include "analyzer/ReportWriters.h"

#include "llvm/ADT/StringRef.h"

#include <gtest/gtest.h>

using namespace trainmem;

namespace {

/// A report of a simulated step: 600 B at the peak (400 activations, 200 weights) in
/// backward, peak_reserved 1000 B, a three-point timeline.
MemoryReport report() {
  MemoryReport R;
  R.Model.Name = "m<&>";
  R.Peak = 600;
  R.PeakReserved = 1000;
  PeakDetail P;
  P.Phase = "backward";
  P.Op = "MatMul (h.0)";
  P.ByCategory.Activations = 400;
  P.ByCategory.Weights = 200;
  P.TopTensors.push_back({"h.0 \"out\"", "activations", "h.0", "MatMul", DType::Float32, {10}, 400});
  R.PeakInfo = P;
  R.Bytes.Weights = 200;
  R.Bytes.Activations = 400;
  for (int I = 0; I < 3; ++I) {
    TimelinePoint T;
    T.Index = I;
    T.Phase = I < 2 ? "forward" : "backward";
    T.Live.Weights = 200;
    T.Live.Activations = I == 2 ? 400 : 100 * I;
    R.Timeline.push_back(T);
  }
  return R;
}

std::string render(void (*Write)(const MemoryReport &, const std::vector<GateResult> &,
                                 llvm::raw_ostream &),
                   const std::vector<GateResult> &Gates) {
  std::string Out;
  llvm::raw_string_ostream OS(Out);
  Write(report(), Gates, OS);
  return Out;
}

} // namespace

TEST(BudgetGate, PeakOrReservedAgainstTheBudgetWithTheExcessExplained) {
  MemoryReport R = report();
  GateResult Pass = checkBudget(R, 600, "600 B", /*OnReserved=*/false);
  EXPECT_TRUE(Pass.Passed);
  EXPECT_EQ(Pass.Name, "budget: peak");
  EXPECT_NE(Pass.Message.find("(0 B to spare)"), std::string::npos) << Pass.Message;
  GateResult Fail = checkBudget(R, 599, "599 B", /*OnReserved=*/false);
  EXPECT_FALSE(Fail.Passed);
  EXPECT_EQ(Fail.Message,
            "peak 600 B exceeds the budget 599 B by 1 B; the peak is in backward at MatMul "
            "(h.0); there activations 400 B, weights 200 B; largest tensor h.0 \"out\" (400 B)");
  GateResult Reserved = checkBudget(R, 999, "999 B", /*OnReserved=*/true);
  EXPECT_FALSE(Reserved.Passed);
  EXPECT_EQ(Reserved.Name, "budget: peak_reserved");
  // Without peak_reserved (a CPU run) the peak is gated and the message says so.
  R.PeakReserved.reset();
  GateResult Cpu = checkBudget(R, 700, "700 B", /*OnReserved=*/true);
  EXPECT_TRUE(Cpu.Passed);
  EXPECT_EQ(Cpu.Name, "budget: peak");
}

TEST(ReportDocuments, JUnitHasOneEscapedTestcasePerGate) {
  std::vector<GateResult> Gates = {{"budget: peak", false, "over by 1 B <see> & \"fix\""},
                                   {"fits", true, "ok"}};
  std::string Xml = render(writeReportJUnit, Gates);
  EXPECT_NE(Xml.find("<testsuites name=\"trainmem\" tests=\"2\" failures=\"1\">"),
            std::string::npos)
      << Xml;
  EXPECT_NE(Xml.find("<testsuite name=\"trainmem m&lt;&amp;&gt;\""), std::string::npos) << Xml;
  EXPECT_NE(Xml.find("<failure message=\"over by 1 B &lt;see&gt; &amp; &quot;fix&quot;\""),
            std::string::npos)
      << Xml;
  EXPECT_EQ(llvm::StringRef(Xml).count("<testcase "), 2u);
  EXPECT_EQ(llvm::StringRef(Xml).count("</testcase>"), 2u);
  // No gate: an empty suite, still well formed.
  std::string Empty = render(writeReportJUnit, {});
  EXPECT_NE(Empty.find("tests=\"0\" failures=\"0\""), std::string::npos) << Empty;
}

TEST(ReportDocuments, MarkdownSharesOfThePeakAndTheGate) {
  std::string Md = render(writeReportMarkdown, {{"budget: peak", false, "over | by 1 B"}});
  EXPECT_NE(Md.find("❌ **budget: peak**: over \\| by 1 B"), std::string::npos) << Md;
  EXPECT_NE(Md.find("| activations | 400 B | 66.7% |"), std::string::npos) << Md;
  EXPECT_NE(Md.find("| weights | 200 B | 33.3% |"), std::string::npos) << Md;
}

TEST(ReportDocuments, HtmlIsSelfContainedWithTheTimelineStacked) {
  std::string Html;
  llvm::raw_string_ostream OS(Html);
  writeReportHtml(report(), {}, std::optional<int64_t>(800), OS);
  EXPECT_EQ(llvm::StringRef(Html).count("<svg"), 1u);
  EXPECT_EQ(Html.find("<script"), std::string::npos);
  EXPECT_NE(Html.find("http://www.w3.org/2000/svg"), std::string::npos);
  EXPECT_EQ(llvm::StringRef(Html).count("src="), 0u) << "nothing loaded from elsewhere";
  // Two categories live over the timeline: two stacked polygons; the budget line; the peak.
  EXPECT_EQ(llvm::StringRef(Html).count("<polygon"), 2u);
  EXPECT_NE(Html.find("budget 800 B"), std::string::npos);
  EXPECT_NE(Html.find("peak 600 B"), std::string::npos);
  EXPECT_NE(Html.find("<title>trainmem: m&lt;&amp;&gt;</title>"), std::string::npos);
}
