//===- TraceCommands.cpp - `analyze TRACE` and `trainmem compare` ---------===//
//
// A trace given where a model is expected is read instead of simulated: `trainmem
// analyze run.pt.trace.json.gz` reports the measured peak through the same writers.
// `trainmem compare PREDICTION TRACE` lines a prediction (a report JSON, or a model with
// setup options) up with a trace and gates on the error.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ReportWriters.h"
#include "analyzer/TraceCompare.h"
#include "analyzer/TraceImport.h"
#include "analyzer/Units.h"
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"

#include <chrono>
#include <optional>

namespace cl = llvm::cl;

namespace trainmem::cli {

namespace {

cl::OptionCategory TraceCategory("Trace options");

cl::opt<std::string> TraceDevice("trace-device",
                                 cl::desc("The device of a trace to report: cpu | cuda:N "
                                          "(default: the first CUDA device, else the CPU)"),
                                 cl::value_desc("device"), cl::sub(analyzeCommand()),
                                 cl::sub(compareCommand()), cl::sub(reportCommand()),
                                 cl::cat(TraceCategory));
cl::opt<std::string> TraceRange("trace-range",
                                cl::desc("Also report the peak of every trace range (an "
                                         "operator or annotation) whose name matches REGEX, "
                                         "e.g. 'phase:.*'; ProfilerStep#N ranges always"),
                                cl::value_desc("regex"), cl::sub(analyzeCommand()),
                                cl::sub(compareCommand()), cl::sub(reportCommand()),
                                cl::cat(TraceCategory));
cl::opt<std::string> TraceWindow("trace-window",
                                 cl::desc("Report only the events inside the trace ranges whose "
                                          "name matches REGEX (e.g. 'ProfilerStep#[3-9]' to skip "
                                          "warm-up, 'phase:.*#2' for one step)"),
                                 cl::value_desc("regex"), cl::sub(analyzeCommand()),
                                 cl::sub(compareCommand()), cl::sub(reportCommand()),
                                 cl::cat(TraceCategory));
cl::list<std::string> CompareInputs(cl::Positional,
                                    cl::desc("<PREDICTION: report.json | model.onnx> <TRACE> "
                                             "(with --hf-config: <TRACE> only)"),
                                    cl::sub(compareCommand()));
cl::opt<double> MaxError("max-error",
                         cl::desc("Exit 2 when the error of the peak or of a phase's peak "
                                  "exceeds PCT percent"),
                         cl::value_desc("PCT"), cl::sub(compareCommand()),
                         cl::cat(TraceCategory));

llvm::Error usage(const llvm::Twine &Message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), Message.str());
}

} // namespace

namespace {

/// How far a long trace import is, on a terminal: one line on stderr, rewritten in place
/// after the first second and at most five times a second, cleared when the import ends.
/// Nothing where stderr is no terminal (logs, pipes, CI), and nothing for a trace read in
/// under a second.
class ProgressLine {
public:
  explicit ProgressLine(llvm::StringRef Path) : Name(llvm::sys::path::filename(Path).str()) {}
  ~ProgressLine() { clear(); }

  void update(int Pass, uint64_t Done, uint64_t Total) {
    const auto Now = Clock::now();
    if (Now - Start < std::chrono::seconds(1) ||
        (Shown && Now - Last < std::chrono::milliseconds(200)))
      return;
    Last = Now;
    const std::string Text =
        llvm::formatv("trainmem: reading {0}{1}: {2}% of {3}", Name,
                      Pass == 2 ? " again, for the operators at the peak" : "",
                      Total ? Done * 100 / Total : 0, formatBytes(static_cast<int64_t>(Total)))
            .str();
    llvm::errs() << '\r' << Text;
    if (Text.size() < Width)
      llvm::errs().indent(static_cast<unsigned>(Width - Text.size()));
    llvm::errs().flush();
    Width = std::max(Width, Text.size());
    Shown = true;
  }
  void clear() {
    if (!Shown)
      return;
    llvm::errs() << '\r';
    llvm::errs().indent(static_cast<unsigned>(Width)) << '\r';
    llvm::errs().flush();
    Shown = false;
  }

private:
  using Clock = std::chrono::steady_clock;
  std::string Name;
  Clock::time_point Start = Clock::now(), Last;
  size_t Width = 0;
  bool Shown = false;
};

} // namespace

llvm::Expected<MemoryReport> measuredReport(llvm::StringRef Path) {
  TraceOptions Opts;
  Opts.Device = TraceDevice;
  Opts.RangePattern = TraceRange;
  Opts.WindowPattern = TraceWindow;
  std::optional<ProgressLine> Line;
  if (llvm::errs().is_displayed()) {
    Line.emplace(Path);
    Opts.Progress = [&Line](int Pass, uint64_t Done, uint64_t Total) {
      Line->update(Pass, Done, Total);
    };
  }
  auto T = importTrace(Path, Opts);
  if (Line)
    Line->clear();
  if (!T)
    return T.takeError();
  return traceToReport(*T);
}

namespace {

bool isReportJson(llvm::StringRef Path) {
  if (!Path.ends_with(".json"))
    return false;
  auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  // Keys are written sorted, so "schema" comes late: look through the whole document.
  return Buffer && (*Buffer)->getBuffer().contains("\"trainmem.report/1\"");
}

} // namespace

bool isTraceModelArgument() {
  std::string Model = modelPositional();
  return !hfConfigGiven() && !Model.empty() && looksLikeTrace(Model) && !isReportJson(Model);
}

int runAnalyzeTrace() {
  std::string Format = outputFormat();
  if (Format != "text" && Format != "json")
    return reportError(usage("--format=" + Format + ": analyze writes text or json"));
  auto Report = measuredReport(modelPositional());
  if (!Report)
    return reportError(Report.takeError());
  if (llvm::Error E = writeOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json")
          writeReportJson(*Report, OS);
        else
          writeReportText(*Report, OS);
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  return ExitOk;
}

int runCompare() {
  std::string Format = outputFormat();
  if (Format != "text" && Format != "json" && Format != "markdown" && Format != "html")
    return reportError(
        usage("--format=" + Format + ": compare writes text, json, markdown or html"));
  size_t Want = hfConfigGiven() ? 1 : 2;
  if (CompareInputs.size() != Want)
    return reportError(usage(hfConfigGiven()
                                 ? "compare --hf-config=FILE takes one argument: the TRACE"
                                 : "compare takes two arguments: PREDICTION (a report JSON or "
                                   "a model) and TRACE"));
  std::string TracePath = CompareInputs[CompareInputs.size() - 1];
  std::string PredictionPath = Want == 2 ? CompareInputs[0] : std::string();
  if (MaxError.getNumOccurrences() && !(MaxError >= 0))
    return reportError(usage("--max-error: expected a percentage of zero or more"));

  std::optional<MemoryReport> Predicted;
  if (!PredictionPath.empty() && isReportJson(PredictionPath)) {
    auto Buffer = llvm::MemoryBuffer::getFile(PredictionPath, /*IsText=*/true);
    if (!Buffer)
      return reportError(usage(PredictionPath + ": cannot read: " + Buffer.getError().message()));
    auto R = readReportJson((*Buffer)->getBuffer(), PredictionPath);
    if (!R)
      return reportError(R.takeError());
    Predicted = std::move(*R);
  } else {
    auto Request = parseStepRequest(/*TargetsGpu=*/false, PredictionPath);
    if (!Request)
      return reportError(Request.takeError());
    auto R = predictStep(*Request);
    if (!R)
      return reportError(R.takeError());
    Predicted = std::move(*R);
  }
  auto Measured = measuredReport(TracePath);
  if (!Measured)
    return reportError(Measured.takeError());
  if (!Measured->Peak)
    return reportError(usage(TracePath + ": nothing to compare: " +
                             (Measured->Diags.size() ? Measured->Diags.all()[0].Message
                                                     : std::string("no memory events"))));
  Comparison C = compareReports(*Predicted, *Measured);
  if (llvm::Error E = writeOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json")
          OS << llvm::formatv("{0:2}", comparisonToJson(C)) << "\n";
        else if (Format == "markdown")
          writeComparisonMarkdown(C, OS);
        else if (Format == "html")
          writeComparisonHtml(C, OS);
        else
          writeComparisonText(C, OS);
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  if (MaxError.getNumOccurrences() && worstError(C) > MaxError) {
    llvm::WithColor::error(llvm::errs(), "trainmem")
        << llvm::formatv("prediction off by {0:F2}%, more than --max-error={1}%\n",
                         worstError(C), MaxError.getValue());
    return ExitGateFailed;
  }
  return ExitOk;
}

} // namespace trainmem::cli
