//===- RunStore.h - the run history in SQLite -------------------------*- C++ -*-===//
//
// `--db=FILE` records each analyze, report and plan run; `trainmem history` reads them
// back. One SQLite file with a versioned schema (PRAGMA user_version; a file from a
// newer trainmem is refused with a readable message, older ones are migrated), WAL
// journaling so readers never block the writer, a busy timeout so concurrent CI jobs
// wait instead of failing, and every write in one transaction: a writer killed mid-way
// leaves the database as it was before.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_STORE_RUNSTORE_H
#define TRAINMEM_STORE_RUNSTORE_H

#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace trainmem {

struct RunRecord {
  int64_t Id = 0;           ///< assigned by record()
  std::string Time;         ///< UTC, ISO 8601 (assigned by record() when empty)
  std::string Command;      ///< analyze, report, plan
  std::string Model;        ///< the model's name
  std::string ModelDigest;  ///< see modelDigest()
  std::string Commit, Branch;
  std::string SetupJson;    ///< the setup as a report echoes it
  std::string ReportJson;   ///< the whole report (or plan list)
  int64_t Peak = 0;
  std::optional<int64_t> PeakReserved;
};

class RunStore {
public:
  /// The schema this build writes.
  static constexpr int SchemaVersion = 1;

  /// Opens (creating) the database at Path and brings its schema up to date.
  static llvm::Expected<std::unique_ptr<RunStore>> open(const std::string &Path);
  ~RunStore();
  RunStore(const RunStore &) = delete;
  RunStore &operator=(const RunStore &) = delete;

  /// Appends one run in its own transaction; returns its id.
  llvm::Expected<int64_t> record(const RunRecord &Run);
  /// Runs oldest first; ModelFilter, when not empty, keeps runs of that model name.
  llvm::Expected<std::vector<RunRecord>> list(const std::string &ModelFilter = "") const;

private:
  RunStore(sqlite3 *Db, std::string Path) : Db(Db), Path(std::move(Path)) {}
  llvm::Error migrate();
  llvm::Error exec(const char *Sql) const;
  llvm::Error sqlError(const std::string &What) const;

  sqlite3 *Db;
  std::string Path;
};

/// The peak per commit, per model: for each model, its commits in the order they first
/// appear among Runs, each with the peak of its last run.
std::vector<std::pair<std::string, std::vector<std::pair<std::string, int64_t>>>>
peakTrend(const std::vector<RunRecord> &Runs);

/// SHA-256 (hex) of a model file: its size and its first 64 MiB, so that a multi-gigabyte
/// ONNX file is not read whole; empty when the file cannot be read.
std::string modelDigest(const std::string &Path);

/// The commit and branch a run belongs to: $GITHUB_SHA / $CI_COMMIT_SHA and
/// $GITHUB_REF_NAME / $CI_COMMIT_REF_NAME when CI sets them, else `git rev-parse` in the
/// current directory; empty strings when neither is available.
std::pair<std::string, std::string> currentCommitAndBranch();

} // namespace trainmem

#endif
