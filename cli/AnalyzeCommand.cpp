//===- AnalyzeCommand.cpp - `trainmem analyze` -----------------------------------===//
//
// Imports the model, takes the census under the training setup, builds the report and
// writes it as text or JSON, atomically when -o names a file.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/MemoryReport.h"
#include "analyzer/ModelImporter.h"
#include "analyzer/PendingFile.h"
#include "analyzer/ReportWriters.h"
#include "planner/StepPrediction.h"

#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem::cli {

int reportError(llvm::Error E) {
  llvm::WithColor::error(llvm::errs(), "trainmem") << llvm::toString(std::move(E)) << "\n";
  return ExitInputError;
}

llvm::Error writeOutput(llvm::StringRef Path,
                        llvm::function_ref<llvm::Error(llvm::raw_ostream &)> Write) {
  if (Path == "-") {
    llvm::raw_fd_ostream &Out = llvm::outs();
    if (llvm::Error E = Write(Out))
      return E;
    Out.flush();
    if (!Out.has_error())
      return llvm::Error::success();
    const std::error_code EC = Out.error();
    Out.clear_error(); // else its destructor aborts
    return llvm::createStringError(EC, "cannot write to stdout: %s", EC.message().c_str());
  }
  if (Path == "/dev/null") {
    llvm::raw_null_ostream Null;
    return Write(Null);
  }
  llvm::Expected<PendingFile> File = PendingFile::create(Path);
  if (!File)
    return File.takeError();
  if (llvm::Error E = Write(File->os()))
    return E; // the file is discarded as it goes
  return File->commit();
}

llvm::Expected<MemoryReport> predictStep(StepRequest &Request) {
  auto G = importRequestedModel(Request);
  if (!G)
    return G.takeError();
  if (Request.DeviceDefaultedToCpu)
    G->Diags.note("device-default", "--device",
                  "no GPU targeted, so the step is modelled as eager PyTorch runs it on the "
                  "CPU (dropout masks in the input's dtype, no caching allocator); --gpu=NAME "
                  "or --device=cuda models a CUDA device (bool masks, the allocator's "
                  "peak_reserved)");
  auto Report = predictStepReport(std::move(*G), Request.Setup);
  if (!Report || !Request.FromHfConfig || Request.Import.PaddedBatches)
    return Report;
  // What padding would add: a note only (the analysis stands without it; a failure here is
  // the padded import's, which the note would have described).
  ImportOptions Padded = Request.Import;
  Padded.PaddedBatches = true;
  auto PG = importHfConfig(Request.ModelPath, Padded);
  if (!PG) {
    llvm::consumeError(PG.takeError());
    return Report;
  }
  if (llvm::Error E = notePaddingEffect(std::move(*PG), *Report))
    llvm::consumeError(std::move(E));
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
  if (llvm::Error E = writeOutput(outputPath(), [&](llvm::raw_ostream &OS) {
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
