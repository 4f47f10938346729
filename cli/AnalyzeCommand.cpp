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

#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem::cli {

int reportError(llvm::Error E) {
  llvm::WithColor::error(llvm::errs(), "trainmem") << llvm::toString(std::move(E)) << "\n";
  return ExitInputError;
}

int runAnalyze() {
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
  auto G = importRequestedModel(*Request);
  if (!G)
    return reportError(G.takeError());
  auto Census = takeCensus(*G, Request->Setup);
  if (!Census)
    return reportError(Census.takeError());
  auto Sim = simulateStep(*G, Request->Setup, *Census);
  if (!Sim)
    return reportError(Sim.takeError());
  MemoryReport Report = buildStepReport(*G, Request->Setup, *Census, *Sim);
  if (llvm::Error E = llvm::writeToOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json")
          writeReportJson(Report, OS);
        else
          writeReportText(Report, OS);
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  return ExitOk;
}

} // namespace trainmem::cli
