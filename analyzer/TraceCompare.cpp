//===- TraceCompare.cpp - a prediction lined up with a measured run -------===//
#include "analyzer/TraceCompare.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/SafeJson.h"
#include "analyzer/Units.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace trainmem {

namespace {

constexpr const char *PhaseOrder[] = {"forward", "backward", "optimizer", "zero_grad"};

std::map<std::string, int64_t> phasePeaksOf(const MemoryReport &R) {
  std::map<std::string, int64_t> Peaks;
  if (R.Measured) {
    for (const auto &[Name, Peak] : R.Measured->PhasePeaks)
      Peaks[Name] = Peak;
    return Peaks;
  }
  // A predicted point is the state after its op; the state a phase starts from (the last
  // point of the phase before) is live inside it too, as a measured range sees it.
  for (size_t I = 0; I < R.Timeline.size(); ++I) {
    const TimelinePoint &P = R.Timeline[I];
    if (P.Phase.empty())
      continue;
    int64_t &Peak = Peaks[P.Phase];
    Peak = std::max(Peak, P.Live.total());
    if (I > 0 && R.Timeline[I - 1].Phase != P.Phase)
      Peak = std::max(Peak, R.Timeline[I - 1].Live.total());
  }
  return Peaks;
}

/// The points of R's timeline that belong to the step compare draws: for a measured
/// report, those inside the range holding the peak (one profiler step), else all.
std::vector<const TimelinePoint *> stepPoints(const MemoryReport &R) {
  std::vector<const TimelinePoint *> Out;
  std::optional<std::pair<double, double>> Window;
  if (R.Measured && !R.Measured->PeakRange.empty())
    for (const MeasuredRange &Rg : R.Measured->Ranges)
      if (Rg.Name == R.Measured->PeakRange)
        Window = {Rg.StartUs, Rg.EndUs};
  for (const TimelinePoint &P : R.Timeline)
    if (!Window || (P.TimeUs && *P.TimeUs >= Window->first && *P.TimeUs <= Window->second))
      Out.push_back(&P);
  return Out;
}

AlignedLine align(const MemoryReport &R, const std::vector<std::string> &Phases) {
  AlignedLine L;
  std::vector<const TimelinePoint *> Points = stepPoints(R);
  // A measured run without a step range holds several steps: draw the last one (from the
  // last start of its first phase), the steady state the prediction describes.
  if (R.Measured && R.Measured->PeakRange.empty() && !Phases.empty()) {
    size_t Start = 0;
    for (size_t I = 0; I < Points.size(); ++I)
      if (Points[I]->Phase == Phases.front() && (I == 0 || Points[I - 1]->Phase != Phases.front()))
        Start = I;
    Points.erase(Points.begin(), Points.begin() + static_cast<long>(Start));
  }
  for (size_t K = 0; K < Phases.size(); ++K) {
    std::vector<int64_t> Totals;
    for (const TimelinePoint *P : Points)
      if (P->Phase == Phases[K])
        Totals.push_back(P->Live.total());
    for (size_t I = 0; I < Totals.size(); ++I)
      L.Points.push_back({static_cast<double>(K) + static_cast<double>(I) /
                                                       static_cast<double>(Totals.size()),
                          Totals[I]});
  }
  return L;
}

std::string errorText(const CompareRow &R) {
  auto E = R.errorPercent();
  if (!E)
    return "n/a";
  double Rounded = std::round(*E * 100) / 100;
  return llvm::formatv("{0:F2}%", Rounded == 0 ? 0.0 : Rounded).str();
}

/// The rows every writer prints, in order: the peak, peak_reserved, the categories, the
/// phases (named "peak in <phase>").
void forEachRow(const Comparison &C,
                llvm::function_ref<void(const CompareRow &, llvm::StringRef Prefix)> Row) {
  Row(C.Peak, "");
  if (C.PeakReserved)
    Row(*C.PeakReserved, "");
  for (const CompareRow &R : C.Categories)
    Row(R, "");
  for (const CompareRow &R : C.Phases)
    Row(R, "peak in ");
}

llvm::Error fieldError(llvm::StringRef File, const llvm::Twine &Field, const llvm::Twine &What) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 (File + ": " + Field + ": " + What).str());
}

void readCategories(const llvm::json::Object &O, CategoryBytes &B) {
  for (const CategoryField &F : CategoryFields)
    if (auto V = O.getInteger(F.Name))
      B.*F.Member = *V;
  for (const CategoryField &F : TraceCategoryFields)
    if (auto V = O.getInteger(F.Name))
      B.*F.Member = *V;
}

} // namespace

std::optional<double> CompareRow::errorPercent() const {
  if (Measured == 0)
    return std::nullopt;
  return 100.0 * static_cast<double>(Predicted - Measured) / static_cast<double>(Measured);
}

Comparison compareReports(const MemoryReport &Predicted, const MemoryReport &Measured) {
  Comparison C;
  C.PredictionSource = Predicted.Model.Source.empty() ? Predicted.Model.Name
                                                      : Predicted.Model.Source;
  C.TraceSource = Measured.Model.Source;
  if (Measured.Measured) {
    C.TraceFormat = Measured.Measured->Format;
    C.Device = Measured.Measured->Device;
    C.PeakBasis = Measured.Measured->PeakBasis;
  }
  C.Peak = {"peak", Predicted.Peak.value_or(0), Measured.Peak.value_or(0)};
  if (Predicted.PeakReserved && Measured.PeakReserved)
    C.PeakReserved = CompareRow{"peak_reserved", *Predicted.PeakReserved, *Measured.PeakReserved};
  if (Measured.Measured && Measured.Measured->HasCategories) {
    // The memory timeline's categories; it has no master weights.
    for (const CategoryField &F : CategoryFields)
      if (llvm::StringRef(F.Name) != "master_weights")
        C.Categories.push_back({F.Name, Predicted.Bytes.*F.Member, Measured.Bytes.*F.Member});
    if (Measured.Bytes.AutogradDetail || Measured.Bytes.Unknown)
      C.Notes.push_back(llvm::formatv("the measured run also has {0} of autograd_detail and {1} "
                                      "of unknown memory at most, which the prediction does "
                                      "not separate",
                                      formatBytes(Measured.Bytes.AutogradDetail),
                                      formatBytes(Measured.Bytes.Unknown))
                            .str());
  }
  std::map<std::string, int64_t> P = phasePeaksOf(Predicted), M = phasePeaksOf(Measured);
  for (const char *Phase : PhaseOrder)
    if (P.count(Phase) && M.count(Phase)) {
      C.Phases.push_back({Phase, P[Phase], M[Phase]});
      C.AlignedPhases.push_back(Phase);
    }
  if (C.Phases.empty())
    C.Notes.push_back("no phase appears on both sides (the trace names no forward, backward "
                      "or optimizer ranges); only the peaks are compared");
  C.PredictedLine = align(Predicted, C.AlignedPhases);
  C.MeasuredLine = align(Measured, C.AlignedPhases);
  if (C.PeakBasis == "running_sum")
    C.Notes.push_back("the measured peak is a running sum from the trace's start: memory "
                      "allocated before profiling began (weights, optimizer states) is not in "
                      "it");
  return C;
}

double worstError(const Comparison &C) {
  double Worst = std::fabs(C.Peak.errorPercent().value_or(0));
  for (const CompareRow &R : C.Phases)
    Worst = std::max(Worst, std::fabs(R.errorPercent().value_or(0)));
  return Worst;
}

llvm::Expected<MemoryReport> readReportJson(llvm::StringRef Json, llvm::StringRef File) {
  auto Parsed = parseJson(Json);
  if (!Parsed)
    return fieldError(File, "JSON", llvm::toString(Parsed.takeError()));
  const llvm::json::Object *Doc = Parsed->getAsObject();
  if (!Doc || Doc->getString("schema") != llvm::StringRef(ReportSchema))
    return fieldError(File, "schema", llvm::Twine("expected a ") + ReportSchema + " report");
  MemoryReport R;
  if (const llvm::json::Object *Model = Doc->getObject("model")) {
    R.Model.Name = Model->getString("name").value_or("").str();
    R.Model.Source = Model->getString("source").value_or("").str();
    R.Model.Format = Model->getString("format").value_or("").str();
  }
  const llvm::json::Object *Bytes = Doc->getObject("bytes");
  if (!Bytes)
    return fieldError(File, "bytes", "missing");
  readCategories(*Bytes, R.Bytes);
  R.Peak = Bytes->getInteger("peak");
  if (!R.Peak)
    return fieldError(File, "bytes.peak", "expected an integer (a report of a simulated step)");
  R.PeakReserved = Bytes->getInteger("peak_reserved");
  if (const llvm::json::Object *Peak = Doc->getObject("peak")) {
    PeakDetail D;
    D.Phase = Peak->getString("phase").value_or("").str();
    D.Op = Peak->getString("op").value_or("").str();
    if (const llvm::json::Object *By = Peak->getObject("by_category"))
      readCategories(*By, D.ByCategory);
    R.PeakInfo = D;
  }
  if (const llvm::json::Array *Timeline = Doc->getArray("timeline")) {
    for (size_t I = 0; I < Timeline->size(); ++I) {
      const llvm::json::Object *O = (*Timeline)[I].getAsObject();
      if (!O)
        return fieldError(File, llvm::formatv("timeline[{0}]", I), "expected an object");
      TimelinePoint P;
      P.Index = static_cast<int64_t>(I);
      P.Phase = O->getString("phase").value_or("").str();
      P.Op = O->getString("op").value_or("").str();
      readCategories(*O, P.Live);
      if (auto T = O->getNumber("time_us"))
        P.TimeUs = *T;
      R.Timeline.push_back(std::move(P));
    }
  }
  if (const llvm::json::Object *M = Doc->getObject("measured")) {
    MeasuredSummary S;
    S.Format = M->getString("format").value_or("").str();
    S.Device = M->getString("device").value_or("").str();
    S.PeakBasis = M->getString("peak_basis").value_or("").str();
    S.PeakRange = M->getString("peak_range").value_or("").str();
    S.HasCategories = M->getBoolean("has_categories").value_or(false);
    if (const llvm::json::Object *Phases = M->getObject("phase_peaks"))
      for (const char *Phase : PhaseOrder)
        if (auto V = Phases->getInteger(Phase))
          S.PhasePeaks.push_back({Phase, *V});
    if (const llvm::json::Array *Ranges = M->getArray("ranges"))
      for (const llvm::json::Value &V : *Ranges)
        if (const llvm::json::Object *O = V.getAsObject())
          S.Ranges.push_back({O->getString("name").value_or("").str(),
                              O->getNumber("start_us").value_or(0),
                              O->getNumber("end_us").value_or(0),
                              O->getInteger("peak").value_or(0), 0});
    R.Measured = std::move(S);
  }
  return R;
}

llvm::json::Value comparisonToJson(const Comparison &C) {
  auto Row = [](const CompareRow &R) {
    llvm::json::Object O{{"name", jsonString(R.Name)}, {"predicted", R.Predicted}, {"measured", R.Measured}};
    auto E = R.errorPercent();
    O["error_percent"] = E ? llvm::json::Value(std::round(*E * 100) / 100) : nullptr;
    return O;
  };
  llvm::json::Array Categories, Phases, Notes;
  for (const CompareRow &R : C.Categories)
    Categories.push_back(Row(R));
  for (const CompareRow &R : C.Phases)
    Phases.push_back(Row(R));
  for (const std::string &N : C.Notes)
    Notes.push_back(N);
  auto Line = [](const AlignedLine &L) {
    llvm::json::Array A;
    for (const auto &[X, Y] : L.Points)
      A.push_back(llvm::json::Array{X, Y});
    return A;
  };
  llvm::json::Array Aligned;
  for (const std::string &P : C.AlignedPhases)
    Aligned.push_back(P);
  return llvm::json::Object{
      {"schema", "trainmem.compare/1"},
      {"prediction", C.PredictionSource},
      {"trace", llvm::json::Object{{"source", C.TraceSource},
                                   {"format", C.TraceFormat},
                                   {"device", C.Device},
                                   {"peak_basis", C.PeakBasis}}},
      {"peak", Row(C.Peak)},
      {"peak_reserved", C.PeakReserved ? llvm::json::Value(Row(*C.PeakReserved)) : nullptr},
      {"categories", std::move(Categories)},
      {"phases", std::move(Phases)},
      {"worst_error_percent", std::round(worstError(C) * 100) / 100},
      {"aligned_phases", std::move(Aligned)},
      {"predicted_timeline", Line(C.PredictedLine)},
      {"measured_timeline", Line(C.MeasuredLine)},
      {"notes", std::move(Notes)}};
}

void writeComparisonText(const Comparison &C, llvm::raw_ostream &OS) {
  OS << "trainmem compare: " << C.PredictionSource << "\n  against " << C.TraceSource;
  if (!C.TraceFormat.empty())
    OS << " (" << C.TraceFormat << ", " << C.Device << ", peak basis " << C.PeakBasis << ")";
  OS << "\n\n";
  OS << llvm::format("  %-22s %14s %14s %9s\n", static_cast<const char *>(""),
                     static_cast<const char *>("predicted"),
                     static_cast<const char *>("measured"), static_cast<const char *>("error"));
  forEachRow(C, [&](const CompareRow &R, llvm::StringRef Prefix) {
    OS << llvm::format("  %-22s %14s %14s %9s\n", (Prefix + R.Name).str().c_str(),
                       formatBytes(R.Predicted).c_str(), formatBytes(R.Measured).c_str(),
                       errorText(R).c_str());
  });
  OS << llvm::formatv("\nworst |error| (peak and phases): {0:F2}%\n", worstError(C));
  for (const std::string &N : C.Notes)
    OS << "note: " << N << "\n";
}

void writeComparisonMarkdown(const Comparison &C, llvm::raw_ostream &OS) {
  OS << "### trainmem compare\n\n`" << C.PredictionSource << "` against `" << C.TraceSource
     << "`";
  if (!C.TraceFormat.empty())
    OS << " (" << C.TraceFormat << ", " << C.Device << ")";
  OS << "\n\n| figure | predicted | measured | error |\n| --- | ---: | ---: | ---: |\n";
  forEachRow(C, [&](const CompareRow &R, llvm::StringRef Prefix) {
    OS << "| " << Prefix << R.Name << " | " << formatBytes(R.Predicted) << " | "
       << formatBytes(R.Measured) << " | " << errorText(R) << " |\n";
  });
  OS << llvm::formatv("\nWorst |error| (peak and phases): **{0:F2}%**\n", worstError(C));
  for (const std::string &N : C.Notes)
    OS << "\n> " << N << "\n";
}

void writeComparisonHtml(const Comparison &C, llvm::raw_ostream &OS) {
  constexpr int W = 900, H = 320, Left = 70, Bottom = 30, Top = 20;
  double Phases = std::max<double>(1, static_cast<double>(C.AlignedPhases.size()));
  int64_t Max = 1;
  for (const AlignedLine *L : {&C.PredictedLine, &C.MeasuredLine})
    for (const auto &[X, Y] : L->Points)
      Max = std::max(Max, Y);
  auto Xof = [&](double X) { return Left + X / Phases * (W - Left - 10); };
  auto Yof = [&](int64_t Y) {
    return Top + (H - Top - Bottom) * (1.0 - static_cast<double>(Y) / static_cast<double>(Max));
  };
  OS << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>trainmem compare</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>\n";
  OS << "<h1>trainmem compare</h1><p>" << escapeXml(C.PredictionSource) << " against "
     << escapeXml(C.TraceSource) << " (" << escapeXml(C.TraceFormat) << ", "
     << escapeXml(C.Device) << ")</p>\n<table><tr><th>figure</th><th>predicted</th>"
     << "<th>measured</th><th>error</th></tr>\n";
  forEachRow(C, [&](const CompareRow &R, llvm::StringRef Prefix) {
    OS << "<tr><td>" << escapeXml((Prefix + R.Name).str()) << "</td><td>"
       << formatBytes(R.Predicted) << "</td><td>" << formatBytes(R.Measured) << "</td><td>"
       << errorText(R) << "</td></tr>\n";
  });
  OS << "</table>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\""
     << H << "\" role=\"img\" aria-label=\"predicted and measured timelines\">\n";
  for (size_t K = 0; K < C.AlignedPhases.size(); ++K) {
    OS << llvm::formatv("<rect x=\"{0:F1}\" y=\"{1}\" width=\"{2:F1}\" height=\"{3}\" "
                        "fill=\"{4}\"/>\n",
                        Xof(static_cast<double>(K)), Top, Xof(1) - Left, H - Top - Bottom,
                        K % 2 ? "#f4f4f4" : "#fbfbfb");
    OS << llvm::formatv("<text x=\"{0:F1}\" y=\"{1}\" font-size=\"12\">{2}</text>\n",
                        Xof(static_cast<double>(K)) + 4, H - 10, C.AlignedPhases[K]);
  }
  auto Poly = [&](const AlignedLine &L, const char *Colour, const char *Name) {
    OS << "<polyline fill=\"none\" stroke=\"" << Colour << "\" stroke-width=\"2\" points=\"";
    for (const auto &[X, Y] : L.Points)
      OS << llvm::formatv("{0:F1},{1:F1} ", Xof(X), Yof(Y));
    OS << "\"><title>" << Name << "</title></polyline>\n";
  };
  Poly(C.PredictedLine, "#1f77b4", "predicted");
  Poly(C.MeasuredLine, "#d62728", "measured");
  OS << llvm::formatv("<text x=\"4\" y=\"{0}\" font-size=\"12\">{1}</text>\n", Top + 10,
                      escapeXml(formatBytes(Max)));
  OS << llvm::formatv("<text x=\"{0}\" y=\"14\" font-size=\"12\" fill=\"#1f77b4\">predicted"
                      "</text><text x=\"{1}\" y=\"14\" font-size=\"12\" fill=\"#d62728\">"
                      "measured</text>\n",
                      W - 200, W - 120);
  OS << "</svg>\n";
  for (const std::string &N : C.Notes)
    OS << "<p>" << escapeXml(N) << "</p>\n";
  OS << "</body></html>\n";
}

} // namespace trainmem
