//===- ReportCommand.cpp - `trainmem report` -------------------------------------===//
//
// The prediction `analyze` makes, written as the document a CI job needs (Markdown for
// a pull-request comment, JUnit XML for the test view, a self-contained HTML page, or
// text and JSON), with the budget gate: `--budget=SIZE` or `--budget=gpu:NAME[:HEADROOM%]`
// against the peak (or with `--budget-on=reserved` the allocator-level figure); exit 2
// when it is exceeded, after the document is written.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/MemoryReport.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/Units.h"
#include "planner/GpuCatalog.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>

namespace cl = llvm::cl;

namespace trainmem::cli {

namespace {

cl::OptionCategory GateCategory("Gate options");

cl::opt<std::string> Budget("budget",
                            cl::desc("Fail (exit 2) when the step needs more: a size (24GiB, "
                                     "24GB, 25769803776B) or gpu:NAME[:HEADROOM%] (the GPU's "
                                     "usable memory less HEADROOM percent)"),
                            cl::value_desc("size|gpu:name[:pct%]"), cl::sub(reportCommand()),
                            cl::cat(GateCategory));
cl::opt<std::string> BudgetOn("budget-on",
                              cl::desc("What the budget is compared with: peak (live tensor "
                                       "bytes, default) | reserved (the caching allocator's "
                                       "reserve plus the CUDA context)"),
                              cl::init("peak"), cl::sub(reportCommand()), cl::cat(GateCategory));

struct ResolvedBudget {
  int64_t Bytes = 0;
  std::string Text;
};

llvm::Expected<ResolvedBudget> resolveBudget(llvm::StringRef Spec) {
  auto Bad = [&](const std::string &Why) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "--budget=%s: %s",
                                   Spec.str().c_str(), Why.c_str());
  };
  ResolvedBudget B;
  llvm::StringRef Rest = Spec;
  if (!Rest.consume_front("gpu:")) {
    auto Bytes = parseBytes(Spec);
    if (!Bytes)
      return Bad(llvm::toString(Bytes.takeError()));
    B.Bytes = *Bytes;
    B.Text = formatBytes(*Bytes);
    return B;
  }
  auto [Name, Headroom] = Rest.split(':');
  if (Name.empty())
    return Bad("expected gpu:NAME or gpu:NAME:HEADROOM% (see trainmem gpus)");
  auto Catalog = GpuCatalog::loadConfigured();
  if (!Catalog)
    return Catalog.takeError();
  auto Gpu = Catalog->lookup(Name);
  if (!Gpu)
    return Gpu.takeError();
  double Percent = 0;
  if (!Headroom.empty()) {
    llvm::StringRef Number = Headroom;
    if (!Number.consume_back("%") || Number.getAsDouble(Percent) || Percent < 0 ||
        Percent >= 100)
      return Bad("headroom '" + Headroom.str() + "': expected a percentage below 100, e.g. 10%");
  }
  B.Bytes = static_cast<int64_t>(std::floor(static_cast<double>(Gpu->UsableBytes) *
                                            (1.0 - Percent / 100.0)));
  B.Text = formatBytes(B.Bytes) + " (" + Gpu->DisplayName + " usable" +
           (Percent > 0 ? llvm::formatv(" less {0}%", Headroom.drop_back()).str() : "") + ")";
  return B;
}

} // namespace

int runReport() {
  std::string Format = outputFormat();
  if (Format != "text" && Format != "json" && Format != "markdown" && Format != "junit" &&
      Format != "html")
    return reportError(llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "--format=%s: report writes text, json, markdown, junit or html", Format.c_str()));
  if (BudgetOn != "peak" && BudgetOn != "reserved")
    return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                               "--budget-on=%s: expected peak or reserved",
                                               BudgetOn.c_str()));
  std::optional<ResolvedBudget> Limit;
  if (!Budget.empty()) {
    auto B = resolveBudget(Budget);
    if (!B)
      return reportError(B.takeError());
    Limit = *B;
  }
  // A trace gates what a real run measured; a model, what the simulator predicts.
  bool FromTrace = isTraceModelArgument();
  std::optional<StepRequest> Request;
  llvm::Expected<MemoryReport> Predicted = [&]() -> llvm::Expected<MemoryReport> {
    if (FromTrace) {
      if (!historyDb().empty())
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "--db records predictions; a trace is a measurement "
                                       "(record the prediction of the same setup instead)");
      auto M = measuredReport(modelPositional());
      if (M && !M->Peak && Limit)
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "%s: no memory events to gate the budget on",
                                       modelPositional().c_str());
      return M;
    }
    // A GPU's budget or the caching allocator's figure aim at a CUDA device.
    auto R = parseStepRequest(
        /*TargetsGpu=*/llvm::StringRef(Budget).starts_with("gpu:") || BudgetOn == "reserved");
    if (!R)
      return R.takeError();
    Request = std::move(*R);
    return predictStep(*Request);
  }();
  if (!Predicted)
    return reportError(Predicted.takeError());
  const MemoryReport &Report = *Predicted;
  std::vector<GateResult> Gates;
  if (Limit)
    Gates.push_back(checkBudget(Report, Limit->Bytes, Limit->Text, BudgetOn == "reserved"));
  if (llvm::Error E = writeOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json")
          writeReportJson(Report, OS);
        else if (Format == "markdown")
          writeReportMarkdown(Report, Gates, OS);
        else if (Format == "junit")
          writeReportJUnit(Report, Gates, OS);
        else if (Format == "html")
          writeReportHtml(Report, Gates,
                          Limit ? std::optional<int64_t>(Limit->Bytes) : std::nullopt, OS);
        else {
          writeReportText(Report, OS);
          for (const GateResult &G : Gates)
            OS << "\n" << (G.Passed ? "PASS " : "FAIL ") << G.Name << ": " << G.Message << "\n";
        }
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  if (Request)
    if (llvm::Error E = recordReportRun("report", *Request, Report))
      return reportError(std::move(E));
  for (const GateResult &G : Gates)
    if (!G.Passed) {
      llvm::WithColor::error(llvm::errs(), "trainmem") << "budget exceeded: " << G.Message
                                                       << "\n";
      return ExitGateFailed;
    }
  return ExitOk;
}

} // namespace trainmem::cli
