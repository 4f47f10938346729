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
#include "analyzer/ReportWriters.h"
#include "planner/StepPrediction.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem::cli {

int reportError(llvm::Error E) {
  llvm::WithColor::error(llvm::errs(), "trainmem") << llvm::toString(std::move(E)) << "\n";
  return ExitInputError;
}

// llvm::writeToOutput's steps (stdout for "-", else a temporary file beside Path renamed
// over it once whole), written out here because LLVM 16's neither checks the stream
// before the rename (a full disk or a file past ulimit -f put a cut file in place of the
// user's, then aborted on the stream's error) nor leaves the executable bits out of the
// file's mode.
llvm::Error writeOutput(llvm::StringRef Path,
                        llvm::function_ref<llvm::Error(llvm::raw_ostream &)> Write) {
  // The stream's write error, cleared (else its destructor aborts), as an error naming Name.
  auto streamError = [](llvm::raw_fd_ostream &OS, llvm::StringRef Name) -> llvm::Error {
    OS.flush();
    if (!OS.has_error())
      return llvm::Error::success();
    const std::error_code EC = OS.error();
    OS.clear_error();
    return llvm::createFileError(Name, EC);
  };
  if (Path == "-") {
    if (llvm::Error E = Write(llvm::outs()))
      return E;
    return streamError(llvm::outs(), "<stdout>");
  }
  if (Path == "/dev/null") {
    llvm::raw_null_ostream Null;
    return Write(Null);
  }
  llvm::Expected<llvm::sys::fs::TempFile> Temp = llvm::sys::fs::TempFile::create(
      Path + ".temp-stream-%%%%%%", llvm::sys::fs::all_read | llvm::sys::fs::all_write);
  if (!Temp)
    return llvm::createFileError(Path, Temp.takeError());
  llvm::Error Failed = llvm::Error::success();
  {
    llvm::raw_fd_ostream Out(Temp->FD, /*shouldClose=*/false);
    Failed = Write(Out);
    if (!Failed)
      Failed = streamError(Out, Path);
    else
      Out.clear_error(); // the write's own error is the one reported
  }
  if (Failed) {
    if (llvm::Error Discard = Temp->discard())
      return llvm::joinErrors(std::move(Failed), std::move(Discard));
    return Failed;
  }
  if (llvm::Error E = Temp->keep(Path))
    return llvm::createFileError(Path, std::move(E));
  return llvm::Error::success();
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
