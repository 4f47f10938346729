//===- ReportDocuments.cpp - Markdown, JUnit and HTML reports for CI --------------===//
//
// The documents `trainmem report` writes. XML and HTML escaping are written here (five
// characters) rather than taken from a library: LLVM Support has none, and Qt may not
// be linked into the libraries.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ReportWriters.h"
#include "analyzer/Units.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <iterator>

namespace trainmem {

std::string escapeXml(llvm::StringRef Text) {
  std::string Out;
  Out.reserve(Text.size());
  for (char C : Text) {
    switch (C) {
    case '&': Out += "&amp;"; break;
    case '<': Out += "&lt;"; break;
    case '>': Out += "&gt;"; break;
    case '"': Out += "&quot;"; break;
    case '\'': Out += "&apos;"; break;
    default: Out += C;
    }
  }
  return Out;
}

namespace {

/// Markdown table cells: a pipe would end the cell.
std::string cell(llvm::StringRef Text) {
  std::string Out;
  for (char C : Text)
    Out += C == '|' ? std::string("\\|") : std::string(1, C);
  return Out;
}

/// The categories in stacking order (bottom first) with their chart colours.
struct ChartCategory {
  const char *Name;
  int64_t CategoryBytes::*Member;
  const char *Color;
};
constexpr ChartCategory Categories[] = {
    {"weights", &CategoryBytes::Weights, "#4e79a7"},
    {"master_weights", &CategoryBytes::MasterWeights, "#a0cbe8"},
    {"gradients", &CategoryBytes::Gradients, "#f28e2b"},
    {"optimizer_states", &CategoryBytes::OptimizerStates, "#ffbe7d"},
    {"inputs", &CategoryBytes::Inputs, "#bab0ac"},
    {"activations", &CategoryBytes::Activations, "#59a14f"},
    {"temporaries", &CategoryBytes::Temporaries, "#e15759"},
    // Only reports read from traces have these (a Chrome trace knows no categories).
    {"autograd_detail", &CategoryBytes::AutogradDetail, "#9c755f"},
    {"unknown", &CategoryBytes::Unknown, "#d4a6c8"}};
static_assert(std::size(Categories) == std::size(CategoryFields) + std::size(TraceCategoryFields),
              "every report category has a place in the chart");

/// The categories a report has: the trace-only ones for reports read from traces.
std::vector<ChartCategory> categoriesOf(const MemoryReport &R) {
  std::vector<ChartCategory> Out;
  for (const ChartCategory &C : Categories)
    if (R.Measured ||
        (C.Member != &CategoryBytes::AutogradDetail && C.Member != &CategoryBytes::Unknown))
      Out.push_back(C);
  return Out;
}

int64_t gatedFigure(const MemoryReport &R, bool OnReserved) {
  if (OnReserved && R.PeakReserved)
    return *R.PeakReserved;
  return R.Peak.value_or(R.persistentBytes());
}

} // namespace

GateResult checkBudget(const MemoryReport &R, int64_t Budget, const std::string &BudgetText,
                       bool OnReserved) {
  GateResult G;
  const bool Reserved = OnReserved && R.PeakReserved;
  const char *Basis = Reserved ? "peak_reserved" : "peak";
  G.Name = std::string("budget: ") + Basis;
  const int64_t Figure = gatedFigure(R, OnReserved);
  if (Figure <= Budget) {
    G.Message = std::string(Basis) + " " + formatBytes(Figure) + " is within the budget " +
                BudgetText + " (" + formatBytes(Budget - Figure) + " to spare)";
    return G;
  }
  G.Passed = false;
  G.Message = std::string(Basis) + " " + formatBytes(Figure) + " exceeds the budget " +
              BudgetText + " by " + formatBytes(Figure - Budget);
  if (R.PeakInfo) {
    G.Message += "; the peak is in " + R.PeakInfo->Phase + " at " + R.PeakInfo->Op;
    std::vector<std::pair<int64_t, std::string>> Parts;
    for (const auto &[Name, Member, Color] : Categories)
      if (int64_t B = R.PeakInfo->ByCategory.*Member)
        Parts.push_back({B, Name});
    std::sort(Parts.rbegin(), Parts.rend());
    if (!Parts.empty()) {
      G.Message += "; there";
      for (size_t I = 0; I < std::min<size_t>(3, Parts.size()); ++I)
        G.Message += (I ? ", " : " ") + Parts[I].second + " " + formatBytes(Parts[I].first);
    }
    if (!R.PeakInfo->TopTensors.empty())
      G.Message += "; largest tensor " + R.PeakInfo->TopTensors.front().Name + " (" +
                   formatBytes(R.PeakInfo->TopTensors.front().Bytes) + ")";
  }
  if (Reserved != OnReserved)
    G.Message += " (no peak_reserved for this device, the peak was used)";
  return G;
}

void writeReportMarkdown(const MemoryReport &R, const std::vector<GateResult> &Gates,
                         llvm::raw_ostream &OS) {
  OS << "### trainmem: " << cell(R.Model.Name);
  if (R.Measured)
    OS << ", measured (" << R.Measured->Format << ", " << R.Measured->Device << ", peak from "
       << R.Measured->PeakBasis << ")\n\n";
  else
    OS << ", one training step" << (R.Model.PaddedBatches ? " (padded batches)" : "") << "\n\n";
  for (const GateResult &G : Gates)
    OS << (G.Passed ? "✅ " : "❌ ") << "**" << cell(G.Name) << "**: " << cell(G.Message)
       << "\n\n";
  OS << "| | bytes | share of the peak |\n| --- | ---: | ---: |\n";
  const int64_t Peak = R.Peak.value_or(0);
  if (R.Peak)
    OS << "| **peak** | **" << formatBytes(*R.Peak) << "** | |\n";
  if (R.PeakReserved)
    OS << "| peak_reserved (allocator + context) | " << formatBytes(*R.PeakReserved) << " | |\n";
  if (R.Gpu)
    OS << "| " << cell(R.Gpu->DisplayName) << " usable | " << formatBytes(R.Gpu->UsableBytes)
       << " | " << (R.Gpu->fits() ? "fits" : "does not fit") << " |\n";
  const CategoryBytes &AtPeak = R.PeakInfo ? R.PeakInfo->ByCategory : R.Bytes;
  for (const auto &[Name, Member, Color] : Categories) {
    int64_t B = AtPeak.*Member;
    if (!B)
      continue;
    OS << "| " << Name << " | " << formatBytes(B) << " | ";
    if (Peak)
      OS << llvm::format("%.1f%%", 100.0 * static_cast<double>(B) / static_cast<double>(Peak));
    OS << " |\n";
  }
  if (R.PeakInfo) {
    OS << "\nThe peak is in **" << cell(R.PeakInfo->Phase) << "** at `" << R.PeakInfo->Op
       << "`.";
    if (!R.Measured)
      OS << " Parameters: " << formatParamCount(R.TotalParameters) << " ("
         << formatParamCount(R.TrainableParameters) << " trainable).";
    OS << "\n";
    if (!R.PeakInfo->TopTensors.empty()) {
      OS << "\n<details><summary>Largest tensors live at the peak</summary>\n\n"
         << "| tensor | category | layer | bytes |\n| --- | --- | --- | ---: |\n";
      for (const TensorSummary &T : R.PeakInfo->TopTensors)
        OS << "| `" << cell(T.Name) << "` | " << T.Category << " | " << cell(T.Layer) << " | "
           << formatBytes(T.Bytes) << " |\n";
      OS << "\n</details>\n";
    }
  }
}

void writeReportJUnit(const MemoryReport &R, const std::vector<GateResult> &Gates,
                      llvm::raw_ostream &OS) {
  size_t Failures = std::count_if(Gates.begin(), Gates.end(),
                                  [](const GateResult &G) { return !G.Passed; });
  std::string Suite = "trainmem " + R.Model.Name;
  OS << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
     << "<testsuites name=\"trainmem\" tests=\"" << Gates.size() << "\" failures=\"" << Failures
     << "\">\n"
     << "  <testsuite name=\"" << escapeXml(Suite) << "\" tests=\"" << Gates.size()
     << "\" failures=\"" << Failures << "\" errors=\"0\" skipped=\"0\">\n";
  for (const GateResult &G : Gates) {
    OS << "    <testcase classname=\"trainmem.memory\" name=\"" << escapeXml(G.Name) << "\"";
    if (G.Passed) {
      OS << ">\n      <system-out>" << escapeXml(G.Message) << "</system-out>\n    </testcase>\n";
      continue;
    }
    OS << ">\n      <failure message=\"" << escapeXml(G.Message) << "\" type=\"budget\">"
       << escapeXml(G.Message) << "</failure>\n    </testcase>\n";
  }
  OS << "  </testsuite>\n</testsuites>\n";
}

void writeReportHtml(const MemoryReport &R, const std::vector<GateResult> &Gates,
                     std::optional<int64_t> BudgetLine, llvm::raw_ostream &OS) {
  const std::string Title = "trainmem: " + R.Model.Name;
  OS << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>"
     << escapeXml(Title) << "</title>\n<style>\n"
     << "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\n"
     << "table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 10px;border-bottom:1px "
        "solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}\n"
     << ".pass{color:#2a7d2a}.fail{color:#b00020}.sw{display:inline-block;width:10px;"
        "height:10px;margin-right:4px}\n</style></head><body>\n";
  OS << "<h1>" << escapeXml(Title) << "</h1>\n<p>One training step"
     << (R.Model.PaddedBatches ? " (padded batches)" : "") << ", "
     << escapeXml(formatParamCount(R.TotalParameters)) << " parameters ("
     << escapeXml(formatParamCount(R.TrainableParameters)) << " trainable).";
  if (R.Peak)
    OS << " Peak <b>" << escapeXml(formatBytes(*R.Peak)) << "</b>";
  if (R.PeakInfo)
    OS << " in " << escapeXml(R.PeakInfo->Phase) << " at <code>" << escapeXml(R.PeakInfo->Op)
       << "</code>";
  if (R.PeakReserved)
    OS << "; peak_reserved " << escapeXml(formatBytes(*R.PeakReserved));
  OS << ".</p>\n";
  for (const GateResult &G : Gates)
    OS << "<p class=\"" << (G.Passed ? "pass" : "fail") << "\"><b>"
       << (G.Passed ? "PASS" : "FAIL") << "</b> " << escapeXml(G.Name) << ": "
       << escapeXml(G.Message) << "</p>\n";

  // The timeline, stacked by category.
  const double W = 960, H = 340, Left = 70, Top = 24, Bottom = 30;
  const size_t N = R.Timeline.size();
  int64_t Max = R.Peak.value_or(0);
  for (const TimelinePoint &P : R.Timeline)
    Max = std::max(Max, P.Live.total());
  std::optional<int64_t> Line = BudgetLine;
  std::string LineLabel = "budget";
  if (!Line && R.Gpu) {
    Line = R.Gpu->UsableBytes;
    LineLabel = R.Gpu->DisplayName + " usable";
  }
  if (Line)
    Max = std::max(Max, *Line);
  if (N >= 2 && Max > 0) {
    auto X = [&](size_t I) { return Left + (W - Left) * static_cast<double>(I) / (N - 1); };
    auto Y = [&](int64_t B) {
      return Top + (H - Top - Bottom) * (1.0 - static_cast<double>(B) / Max);
    };
    OS << "<h2>Timeline</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W
       << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H
       << "\" role=\"img\" aria-label=\"memory over the step\">\n";
    // Phases shaded, alternating, labelled at the bottom.
    size_t Start = 0;
    int Band = 0;
    for (size_t I = 1; I <= N; ++I) {
      if (I < N && R.Timeline[I].Phase == R.Timeline[Start].Phase)
        continue;
      double X0 = X(Start), X1 = X(I - 1);
      OS << llvm::formatv("<rect x=\"{0:f1}\" y=\"{1}\" width=\"{2:f1}\" height=\"{3}\" "
                          "fill=\"{4}\"/>\n",
                          X0, Top, std::max(X1 - X0, 1.0), H - Top - Bottom,
                          Band++ % 2 ? "#f4f4f4" : "#ffffff");
      if (X1 - X0 > 40)
        OS << llvm::formatv("<text x=\"{0:f1}\" y=\"{1}\" font-size=\"11\" fill=\"#666\">{2}"
                            "</text>\n",
                            X0 + 2, H - 12, escapeXml(R.Timeline[Start].Phase));
      Start = I;
    }
    // Stacked areas, bottom category first.
    std::vector<int64_t> Below(N, 0);
    for (const auto &[Name, Member, Color] : Categories) {
      std::vector<int64_t> Above(N);
      bool Any = false;
      for (size_t I = 0; I < N; ++I) {
        int64_t B = R.Timeline[I].Live.*Member;
        Any |= B > 0;
        Above[I] = Below[I] + B;
      }
      if (Any) {
        std::string Points;
        for (size_t I = 0; I < N; ++I)
          Points += llvm::formatv("{0:f1},{1:f1} ", X(I), Y(Above[I])).str();
        for (size_t I = N; I-- > 0;)
          Points += llvm::formatv("{0:f1},{1:f1} ", X(I), Y(Below[I])).str();
        OS << "<polygon fill=\"" << Color << "\" fill-opacity=\"0.85\" points=\"" << Points
           << "\"><title>" << Name << "</title></polygon>\n";
      }
      Below = std::move(Above);
    }
    // Axis labels: 0 and the top.
    OS << llvm::formatv("<text x=\"4\" y=\"{0:f1}\" font-size=\"11\">0</text>\n", Y(0))
       << llvm::formatv("<text x=\"4\" y=\"{0:f1}\" font-size=\"11\">{1}</text>\n", Y(Max) + 10,
                        escapeXml(formatBytes(Max)));
    if (Line)
      OS << llvm::formatv("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:f1}\" y2=\"{2:f1}\" "
                          "stroke=\"#b00020\" stroke-dasharray=\"6,4\"/>\n<text x=\"{3}\" "
                          "y=\"{4:f1}\" font-size=\"11\" fill=\"#b00020\">{5} {6}</text>\n",
                          Left, W, Y(*Line), Left + 4, Y(*Line) - 4, escapeXml(LineLabel),
                          escapeXml(formatBytes(*Line)));
    if (R.Peak) {
      size_t At = 0;
      for (size_t I = 0; I < N; ++I)
        if (R.Timeline[I].Live.total() > R.Timeline[At].Live.total())
          At = I;
      OS << llvm::formatv("<circle cx=\"{0:f1}\" cy=\"{1:f1}\" r=\"4\" fill=\"#000\"/>\n"
                          "<text x=\"{2:f1}\" y=\"{3:f1}\" font-size=\"11\">peak {4}</text>\n",
                          X(At), Y(R.Timeline[At].Live.total()), std::min(X(At) + 6, W - 110),
                          Y(R.Timeline[At].Live.total()) + 4, escapeXml(formatBytes(*R.Peak)));
    }
    OS << "</svg>\n<p>";
    for (const auto &[Name, Member, Color] : categoriesOf(R))
      OS << "<span class=\"sw\" style=\"background:" << Color << "\"></span>" << Name
         << " &nbsp; ";
    OS << "</p>\n";
  }

  OS << "<h2>Breakdown</h2>\n<table><tr><th>category</th><th>at the peak</th>"
        "<th>largest over the step</th></tr>\n";
  for (const auto &[Name, Member, Color] : categoriesOf(R))
    OS << "<tr><td><span class=\"sw\" style=\"background:" << Color << "\"></span>" << Name
       << "</td><td>"
       << escapeXml(formatBytes(R.PeakInfo ? R.PeakInfo->ByCategory.*Member : 0))
       << "</td><td>" << escapeXml(formatBytes(R.Bytes.*Member)) << "</td></tr>\n";
  OS << "</table>\n";
  if (R.PeakInfo && !R.PeakInfo->TopTensors.empty()) {
    OS << "<h2>Largest tensors live at the peak</h2>\n<table><tr><th>tensor</th>"
          "<th>category</th><th>layer</th><th>bytes</th></tr>\n";
    for (const TensorSummary &T : R.PeakInfo->TopTensors)
      OS << "<tr><td><code>" << escapeXml(T.Name) << "</code></td><td>" << T.Category
         << "</td><td>" << escapeXml(T.Layer) << "</td><td>" << escapeXml(formatBytes(T.Bytes))
         << "</td></tr>\n";
    OS << "</table>\n";
  }
  OS << "</body></html>\n";
}

} // namespace trainmem
