//===- HistoryCommand.cpp - `--db` recording and `trainmem history` --------------===//
//
// analyze, report, plan and validate record their run with --db=FILE; `trainmem history` lists
// the runs and the peak's trend per commit, per model.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "analyzer/SafeJson.h"
#include "cli/StepOptions.h"

#include "analyzer/MemoryReport.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/Units.h"
#include "store/RunStore.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"


namespace cl = llvm::cl;

namespace trainmem::cli {

cl::SubCommand &historyCommand() {
  static cl::SubCommand Cmd("history", "List the runs recorded with --db and the peak's "
                                       "trend per commit, per model");
  return Cmd;
}

namespace {

cl::OptionCategory HistoryCategory("History options");
cl::opt<std::string> Db("db", cl::desc("The history database (SQLite) that --db wrote"),
                        cl::value_desc("file"), cl::Required, cl::sub(historyCommand()),
                        cl::cat(HistoryCategory));
cl::opt<std::string> ModelFilter("model", cl::desc("Only runs of this model (its name)"),
                                 cl::value_desc("name"), cl::sub(historyCommand()),
                                 cl::cat(HistoryCategory));
cl::opt<std::string> HistoryFormat("format",
                                   cl::desc("Output format: text | json (a list of runs); "
                                            "default text"),
                                   cl::init("text"), cl::sub(historyCommand()),
                                   cl::cat(HistoryCategory));

std::string shortCommit(const std::string &Commit) {
  return Commit.empty() ? "-" : Commit.substr(0, 10);
}

} // namespace

llvm::Error recordRun(const std::string &Command, const StepRequest &Request,
                      const std::string &ModelName, const llvm::json::Value &Setup,
                      const llvm::json::Value &Report, int64_t Peak,
                      std::optional<int64_t> PeakReserved) {
  std::string Path = historyDb();
  if (Path.empty())
    return llvm::Error::success();
  auto Store = RunStore::open(Path);
  if (!Store)
    return Store.takeError();
  RunRecord Run;
  Run.Command = Command;
  Run.Model = ModelName;
  Run.ModelDigest = modelDigest(Request.ModelPath);
  std::tie(Run.Commit, Run.Branch) = currentCommitAndBranch();
  Run.SetupJson = llvm::formatv("{0}", Setup).str();
  Run.ReportJson = llvm::formatv("{0}", Report).str();
  Run.Peak = Peak;
  Run.PeakReserved = PeakReserved;
  auto Id = (*Store)->record(Run);
  if (!Id)
    return Id.takeError();
  return llvm::Error::success();
}

llvm::Error recordReportRun(const std::string &Command, const StepRequest &Request,
                            const MemoryReport &Report) {
  if (historyDb().empty()) // the report's JSON is costly (the whole timeline); skip it
    return llvm::Error::success();
  return recordRun(Command, Request, Report.Model.Name, setupToJson(Report.Setup),
                   reportToJson(Report), Report.Peak.value_or(Report.persistentBytes()),
                   Report.PeakReserved);
}

int runHistory() {
  if (HistoryFormat != "text" && HistoryFormat != "json")
    return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                               "--format=%s: history writes text or json",
                                               HistoryFormat.c_str()));
  auto Store = RunStore::open(Db);
  if (!Store)
    return reportError(Store.takeError());
  auto Runs = (*Store)->list(ModelFilter);
  if (!Runs)
    return reportError(Runs.takeError());
  if (HistoryFormat == "json") {
    llvm::json::Array Out;
    for (const RunRecord &R : *Runs) {
      llvm::json::Value Setup = llvm::json::Object{};
      if (auto Parsed = parseJson(R.SetupJson))
        Setup = std::move(*Parsed);
      else
        llvm::consumeError(Parsed.takeError());
      Out.push_back(llvm::json::Object{
          {"id", R.Id},
          {"time", R.Time},
          {"command", R.Command},
          {"model", R.Model},
          {"model_digest", R.ModelDigest},
          {"commit", R.Commit},
          {"branch", R.Branch},
          {"peak_bytes", R.Peak},
          {"peak_reserved_bytes",
           R.PeakReserved ? llvm::json::Value(*R.PeakReserved) : llvm::json::Value(nullptr)},
          {"setup", std::move(Setup)}});
    }
    llvm::outs() << llvm::formatv("{0:2}", llvm::json::Value(std::move(Out))) << "\n";
    return ExitOk;
  }
  llvm::raw_ostream &OS = llvm::outs();
  OS << "trainmem history: " << Db << " (" << Runs->size() << " runs"
     << (ModelFilter.empty() ? std::string() : ", model " + ModelFilter) << ")\n\n";
  OS << llvm::formatv("{0,5}  {1,-20}  {2,-10}  {3,-14}  {4,-8}  {5,-24} {6,12} {7,12}\n", "id",
                      "time", "commit", "branch", "command", "model", "peak", "reserved");
  for (const RunRecord &R : *Runs)
    OS << llvm::formatv("{0,5}  {1,-20}  {2,-10}  {3,-14}  {4,-8}  {5,-24} {6,12} {7,12}\n",
                        R.Id, R.Time, shortCommit(R.Commit), R.Branch.empty() ? "-" : R.Branch,
                        R.Command, R.Model, formatBytes(R.Peak),
                        R.PeakReserved ? formatBytes(*R.PeakReserved) : "-");
  // The peak per commit, per model, with the change from the commit before.
  const auto Trend = peakTrend(*Runs);
  for (const auto &[Model, Commits] : Trend) {
    OS << "\npeak per commit, " << Model << ":\n";
    for (size_t I = 0; I < Commits.size(); ++I) {
      OS << llvm::formatv("  {0,-10} {1,12}", shortCommit(Commits[I].first),
                          formatBytes(Commits[I].second));
      if (I > 0) {
        int64_t Change = Commits[I].second - Commits[I - 1].second;
        OS << "  " << (Change > 0 ? "+" : Change < 0 ? "-" : "")
           << formatBytes(Change < 0 ? -Change : Change);
        if (Commits[I - 1].second)
          OS << llvm::formatv(" ({0:f1}%)", 100.0 * static_cast<double>(Change) /
                                                static_cast<double>(Commits[I - 1].second));
      }
      OS << "\n";
    }
  }
  return ExitOk;
}

} // namespace trainmem::cli
