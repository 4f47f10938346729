//===- AnalyzeCommand.cpp - `trainmem analyze` -----------------------------------===//
//
// Imports the model, takes the census under the training setup, builds the report and
// writes it as text or JSON, atomically when -o names a file.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/MemoryReport.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/StepSimulator.h"
#include "planner/GpuCatalog.h"
#include "planner/CheckpointBudget.h"
#include "planner/StrategyApply.h"

#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem::cli {

int reportError(llvm::Error E) {
  llvm::WithColor::error(llvm::errs(), "trainmem") << llvm::toString(std::move(E)) << "\n";
  return ExitInputError;
}

llvm::Expected<MemoryReport> predictStep(StepRequest &Request) {
  auto G = importRequestedModel(Request);
  if (!G)
    return G.takeError();
  if (llvm::Error E = applyStrategies(*G, Request.Setup))
    return E;
  if (Request.DeviceDefaultedToCpu)
    G->Diags.note("device-default", "--device",
                  "no GPU targeted, so the step is modelled as eager PyTorch runs it on the "
                  "CPU (dropout masks in the input's dtype, no caching allocator); --gpu=NAME "
                  "or --device=cuda models a CUDA device (bool masks, the allocator's "
                  "peak_reserved)");
  auto Census = takeCensus(*G, Request.Setup);
  if (!Census)
    return Census.takeError();
  // Resolve --gpu first: an unknown name is a usage error before any work is done, and
  // the canonical name selects the runtime overheads.
  std::optional<GpuSpec> Gpu;
  if (!Request.Setup.Gpu.empty()) {
    auto Catalog = GpuCatalog::loadConfigured();
    if (!Catalog)
      return Catalog.takeError();
    auto Spec = Catalog->lookup(Request.Setup.Gpu);
    if (!Spec)
      return Spec.takeError();
    Gpu = *Spec;
    Request.Setup.Gpu = Gpu->Name;
  }
  if (llvm::StringRef(Request.Setup.Checkpoint).startswith("budget:")) {
    auto Choice = chooseCheckpointForBudget(*G, Request.Setup, *Census);
    if (!Choice)
      return Choice.takeError();
    G->Diags.note("checkpoint-budget", Request.Setup.Checkpoint,
                  "checkpointing the first " + std::to_string(Choice->Checkpointed) + " of " +
                      std::to_string(Choice->Blocks) + " blocks meets the budget (" +
                      Choice->Mode + "); partial checkpointing is expressed by Megatron-LM "
                      "(--recompute-granularity=full --recompute-method=block "
                      "--recompute-num-layers=K) or by wrapping those blocks in "
                      "torch.utils.checkpoint; HF Trainer checkpoints all blocks");
    Request.Setup.Checkpoint = Choice->Mode;
  }
  auto Sim = simulateStep(*G, Request.Setup, *Census);
  if (!Sim)
    return Sim.takeError();
  MemoryReport Report = buildStepReport(*G, Request.Setup, *Census, *Sim);
  if (Gpu) {
    GpuFit Fit;
    Fit.Name = Gpu->Name;
    Fit.DisplayName = Gpu->DisplayName;
    Fit.UsableBytes = Gpu->UsableBytes;
    Fit.RequiredBasis = Report.PeakReserved ? "peak_reserved" : "peak";
    Fit.RequiredBytes = Report.PeakReserved ? *Report.PeakReserved : Report.Peak.value_or(0);
    Report.Gpu = Fit;
  }
  return Report;
}

int runAnalyze() {
  if (isTraceModelArgument())
    return runAnalyzeTrace();
  std::string Format = outputFormat();
  if (Format != "text" && Format != "json")
    return reportError(llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "--format=%s: analyze writes text or json (markdown, html and junit come with "
        "`trainmem report`)",
        Format.c_str()));
  auto Request = parseStepRequest();
  if (!Request)
    return reportError(Request.takeError());
  auto Predicted = predictStep(*Request);
  if (!Predicted)
    return reportError(Predicted.takeError());
  const MemoryReport &Report = *Predicted;
  if (llvm::Error E = llvm::writeToOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json")
          writeReportJson(Report, OS);
        else
          writeReportText(Report, OS);
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  if (llvm::Error E = recordReportRun("analyze", *Request, Report))
    return reportError(std::move(E));
  return ExitOk;
}

} // namespace trainmem::cli
