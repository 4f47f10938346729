//===- main.cpp - the trainmem command -------------------------------------------===//
//
// Parses the command line (LLVM cl subcommands, grouped --help) and dispatches to the
// subcommand; turns nothing into an exit code that a command did not decide.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/StepSimulator.h"

#include "trainmem/Version.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"

#include <csignal>

static int run(int Argc, char **Argv) {
  llvm::InitLLVM X(Argc, Argv);
  // A file written past the size limit (ulimit -f) fails its write with EFBIG, which each
  // writer reports (an output: an error and exit code 1, the file that was there kept;
  // a trace import's temporary file: its records kept in memory instead), rather than
  // the default SIGXFSZ killing the process with a stack dump (LLVM's handler, installed
  // just above, which ignoring the signal replaces).
  std::signal(SIGXFSZ, SIG_IGN);
  llvm::cl::SetVersionPrinter([](llvm::raw_ostream &OS) {
    OS << "trainmem " << TRAINMEM_VERSION_STRING << "\n";
  });
  // Force the subcommands into existence before parsing.
  trainmem::cli::analyzeCommand();
  trainmem::cli::exportOnnxCommand();
  trainmem::cli::planCommand();
  trainmem::cli::gpusCommand();
  trainmem::cli::diffCommand();
  trainmem::cli::reportCommand();
  trainmem::cli::historyCommand();
  trainmem::cli::compareCommand();
  trainmem::cli::validateCommand();
  llvm::cl::HideUnrelatedOptions({});
  if (!llvm::cl::ParseCommandLineOptions(
          Argc, Argv,
          "trainmem: will this training run fit on my GPU, where does the memory go, and "
          "what is the cheapest change that makes it fit?\n\n"
          "  trainmem analyze MODEL.onnx --dim batch=8 --optimizer=adamw\n"
          "  trainmem analyze --hf-config=config.json --dim seq=4096 --format=json -o r.json\n"
          "  trainmem export-onnx --hf-config=config.json -o model.onnx\n"
          "  trainmem diff base.json new.json --max-increase=5%\n"
          "  trainmem analyze run.pt.trace.json.gz            (a profiler trace, measured)\n"
          "  trainmem compare predicted.json run.pt.trace.json.gz --max-error=5\n"
          "  trainmem validate MODEL.onnx --dim batch=4 --dim sequence=32   (run it, measure)\n\n"
          "Run 'trainmem SUBCOMMAND --help' for a subcommand's options.\n",
          &llvm::errs()))
    return trainmem::cli::ExitInputError;
  if (trainmem::cli::analyzeCommand())
    return trainmem::cli::runAnalyze();
  if (trainmem::cli::exportOnnxCommand())
    return trainmem::cli::runExportOnnx();
  if (trainmem::cli::planCommand())
    return trainmem::cli::runPlan();
  if (trainmem::cli::gpusCommand())
    return trainmem::cli::runGpus();
  if (trainmem::cli::reportCommand())
    return trainmem::cli::runReport();
  if (trainmem::cli::historyCommand())
    return trainmem::cli::runHistory();
  if (trainmem::cli::diffCommand())
    return trainmem::cli::runDiff();
  if (trainmem::cli::compareCommand())
    return trainmem::cli::runCompare();
  if (trainmem::cli::validateCommand())
    return trainmem::cli::runValidate();
  llvm::errs() << "trainmem: no subcommand given. Run 'trainmem --help' for the list.\n";
  return trainmem::cli::ExitInputError;
}

int main(int Argc, char **Argv) {
  trainmem::keepFreedMemoryForReuse(trainmem::CliHugePageReserve);
  int Code = run(Argc, Argv);
  // Every output file is complete and closed by now. Skipping the static destructors saves
  // a few milliseconds per run (ONNX's schema registry alone is ~25,000 allocations).
  llvm::outs().flush();
  llvm::errs().flush();
  llvm::sys::Process::Exit(Code, /*NoCleanup=*/true);
}
