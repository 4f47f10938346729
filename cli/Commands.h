//===- Commands.h - trainmem subcommands ------------------------------*- C++ -*-===//
//
// One function per subcommand; each returns the process exit code (DESIGN.md: 0 ok,
// 1 usage or input error, 2 budget exceeded or regression, 3 internal error) after
// printing its errors. main() only dispatches.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CLI_COMMANDS_H
#define TRAINMEM_CLI_COMMANDS_H

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <optional>
#include <string>

namespace llvm::cl {
class SubCommand;
} // namespace llvm::cl

namespace trainmem {
struct MemoryReport;
} // namespace trainmem

namespace trainmem::cli {

struct StepRequest;

/// Imports, applies the strategies, resolves --gpu and --checkpoint=budget:, simulates:
/// the report `analyze` and `report` write. The setup in Request is updated to what ran.
llvm::Expected<MemoryReport> predictStep(StepRequest &Request);

enum ExitCode : int { ExitOk = 0, ExitInputError = 1, ExitGateFailed = 2, ExitInternal = 3 };

int runAnalyze();
/// `analyze TRACE`: a trace where a model is expected is read, not simulated.
bool isTraceModelArgument();
int runAnalyzeTrace();
/// The report of a trace named on the command line (--trace-device, --trace-range and
/// --trace-window apply).
llvm::Expected<MemoryReport> measuredReport(llvm::StringRef Path);
int runCompare();
int runReport();
int runExportOnnx();
int runPlan();
int runValidate();

/// `trainmem gpus`: the subcommand (its options live with it) and its action.
llvm::cl::SubCommand &gpusCommand();
int runGpus();

/// `trainmem diff BASE.json NEW.json`: the subcommand and its action.
llvm::cl::SubCommand &diffCommand();
int runDiff();

/// `trainmem history --db=FILE`: the subcommand and its action.
llvm::cl::SubCommand &historyCommand();
int runHistory();

/// With --db=FILE, records a run of Command in the history database (a no-op without).
llvm::Error recordRun(const std::string &Command, const StepRequest &Request,
                      const std::string &ModelName, const llvm::json::Value &Setup,
                      const llvm::json::Value &Report, int64_t Peak,
                      std::optional<int64_t> PeakReserved);

/// recordRun for a step's report (analyze, report).
llvm::Error recordReportRun(const std::string &Command, const StepRequest &Request,
                            const MemoryReport &Report);

/// Prints "trainmem: error: MESSAGE" to stderr and returns ExitInputError.
int reportError(llvm::Error E);

/// Writes an output through Write: to stdout for "-", else through a PendingFile
/// (analyzer/PendingFile.h), renamed over Path once whole. A failed write (a full disk, a
/// file past ulimit -f) is an error naming Path, and leaves the file that was there as
/// it was.
llvm::Error writeOutput(llvm::StringRef Path,
                        llvm::function_ref<llvm::Error(llvm::raw_ostream &)> Write);

} // namespace trainmem::cli

#endif
