//===- RunStore.cpp - the run history in SQLite ----------------------------------===//
#include "store/RunStore.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SHA256.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <thread>

namespace trainmem {

namespace {

/// Finalizes a prepared statement on every path out.
struct Statement {
  sqlite3_stmt *S = nullptr;
  ~Statement() { sqlite3_finalize(S); }
};

/// Now, or $SOURCE_DATE_EPOCH when set (the reproducible-builds convention), so that
/// recorded histories can be reproduced in tests.
std::string utcNow() {
  std::time_t T = std::time(nullptr);
  if (const char *Epoch = std::getenv("SOURCE_DATE_EPOCH")) {
    long long Seconds = 0;
    if (!llvm::StringRef(Epoch).getAsInteger(10, Seconds) && Seconds >= 0)
      T = static_cast<std::time_t>(Seconds);
  }
  std::tm Tm{};
  gmtime_r(&T, &Tm);
  char Buf[32];
  std::strftime(Buf, sizeof(Buf), "%Y-%m-%dT%H:%M:%SZ", &Tm);
  return Buf;
}

std::string column(sqlite3_stmt *S, int I) {
  const unsigned char *Text = sqlite3_column_text(S, I);
  return Text ? reinterpret_cast<const char *>(Text) : "";
}

} // namespace

llvm::Error RunStore::sqlError(const std::string &What) const {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s: %s", Path.c_str(),
                                 What.c_str(), sqlite3_errmsg(Db));
}

llvm::Error RunStore::exec(const char *Sql) const {
  char *Message = nullptr;
  if (sqlite3_exec(Db, Sql, nullptr, nullptr, &Message) == SQLITE_OK)
    return llvm::Error::success();
  std::string Text = Message ? Message : "unknown error";
  sqlite3_free(Message);
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s", Path.c_str(),
                                 Text.c_str());
}

llvm::Expected<std::unique_ptr<RunStore>> RunStore::open(const std::string &Path) {
  sqlite3 *Db = nullptr;
  if (sqlite3_open_v2(Path.c_str(), &Db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      nullptr) != SQLITE_OK) {
    std::string Why = Db ? sqlite3_errmsg(Db) : "out of memory";
    sqlite3_close(Db);
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: cannot open the history database: %s", Path.c_str(),
                                   Why.c_str());
  }
  std::unique_ptr<RunStore> Store(new RunStore(Db, Path));
  // Concurrent CI jobs wait for each other's transactions instead of failing.
  sqlite3_busy_timeout(Db, 30000);
  // Switching a new file to WAL while other connections open it can report "database is
  // locked" at once, without the busy handler (seen with four writers opening one new
  // file on a loaded machine): the set-up is retried for up to ~30 s, as the busy
  // timeout would have waited.
  for (int Attempt = 0;; ++Attempt) {
    llvm::Error E = Store->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    if (!E)
      E = Store->migrate();
    if (!E)
      return Store;
    int Code = sqlite3_errcode(Db);
    if ((Code != SQLITE_BUSY && Code != SQLITE_LOCKED) || Attempt >= 300)
      return E;
    llvm::consumeError(std::move(E));
    std::this_thread::sleep_for(std::chrono::milliseconds(10 + Attempt % 90));
  }
}

RunStore::~RunStore() { sqlite3_close(Db); }

llvm::Error RunStore::migrate() {
  // BEGIN IMMEDIATE takes the write lock first, so two processes creating the schema at
  // once serialise instead of both reading version 0.
  if (llvm::Error E = exec("BEGIN IMMEDIATE"))
    return E;
  auto Rollback = [&](llvm::Error E) {
    llvm::consumeError(exec("ROLLBACK"));
    return E;
  };
  Statement V;
  if (sqlite3_prepare_v2(Db, "PRAGMA user_version", -1, &V.S, nullptr) != SQLITE_OK ||
      sqlite3_step(V.S) != SQLITE_ROW)
    return Rollback(sqlError("reading the schema version"));
  int Version = sqlite3_column_int(V.S, 0);
  if (Version > SchemaVersion)
    return Rollback(llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "%s: the history database has schema version %d, newer than this trainmem's %d; "
        "update trainmem to read it (the file is left unchanged)",
        Path.c_str(), Version, SchemaVersion));
  if (Version < 1) {
    if (llvm::Error E = exec("CREATE TABLE IF NOT EXISTS runs ("
                             " id INTEGER PRIMARY KEY,"
                             " time TEXT NOT NULL,"
                             " command TEXT NOT NULL,"
                             " model TEXT NOT NULL,"
                             " model_digest TEXT NOT NULL,"
                             " git_commit TEXT NOT NULL,"
                             " git_branch TEXT NOT NULL,"
                             " setup TEXT NOT NULL,"
                             " report TEXT NOT NULL,"
                             " peak INTEGER NOT NULL,"
                             " peak_reserved INTEGER);"
                             "CREATE INDEX IF NOT EXISTS runs_model ON runs(model, id);"
                             "PRAGMA user_version = 1;"))
      return Rollback(std::move(E));
  }
  return exec("COMMIT");
}

llvm::Expected<int64_t> RunStore::record(const RunRecord &Run) {
  if (llvm::Error E = exec("BEGIN IMMEDIATE"))
    return E;
  Statement S;
  const char *Sql = "INSERT INTO runs (time, command, model, model_digest, git_commit, "
                    "git_branch, setup, report, peak, peak_reserved) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
  if (sqlite3_prepare_v2(Db, Sql, -1, &S.S, nullptr) != SQLITE_OK) {
    llvm::Error E = sqlError("preparing the insert");
    llvm::consumeError(exec("ROLLBACK"));
    return E;
  }
  std::string Time = Run.Time.empty() ? utcNow() : Run.Time;
  const std::string *Texts[] = {&Time,   &Run.Command,   &Run.Model,     &Run.ModelDigest,
                                &Run.Commit, &Run.Branch, &Run.SetupJson, &Run.ReportJson};
  for (int I = 0; I < 8; ++I)
    sqlite3_bind_text(S.S, I + 1, Texts[I]->c_str(), static_cast<int>(Texts[I]->size()),
                      SQLITE_TRANSIENT);
  sqlite3_bind_int64(S.S, 9, Run.Peak);
  if (Run.PeakReserved)
    sqlite3_bind_int64(S.S, 10, *Run.PeakReserved);
  else
    sqlite3_bind_null(S.S, 10);
  if (sqlite3_step(S.S) != SQLITE_DONE) {
    llvm::Error E = sqlError("recording the run");
    llvm::consumeError(exec("ROLLBACK"));
    return E;
  }
  int64_t Id = sqlite3_last_insert_rowid(Db);
  if (llvm::Error E = exec("COMMIT")) {
    llvm::consumeError(exec("ROLLBACK"));
    return E;
  }
  return Id;
}

llvm::Expected<std::vector<RunRecord>> RunStore::list(const std::string &ModelFilter) const {
  Statement S;
  const char *Sql = "SELECT id, time, command, model, model_digest, git_commit, git_branch, "
                    "setup, report, peak, peak_reserved FROM runs "
                    "WHERE ?1 = '' OR model = ?1 ORDER BY id";
  if (sqlite3_prepare_v2(Db, Sql, -1, &S.S, nullptr) != SQLITE_OK)
    return sqlError("reading the runs");
  sqlite3_bind_text(S.S, 1, ModelFilter.c_str(), static_cast<int>(ModelFilter.size()),
                    SQLITE_TRANSIENT);
  std::vector<RunRecord> Out;
  int Rc;
  while ((Rc = sqlite3_step(S.S)) == SQLITE_ROW) {
    RunRecord R;
    R.Id = sqlite3_column_int64(S.S, 0);
    R.Time = column(S.S, 1);
    R.Command = column(S.S, 2);
    R.Model = column(S.S, 3);
    R.ModelDigest = column(S.S, 4);
    R.Commit = column(S.S, 5);
    R.Branch = column(S.S, 6);
    R.SetupJson = column(S.S, 7);
    R.ReportJson = column(S.S, 8);
    R.Peak = sqlite3_column_int64(S.S, 9);
    if (sqlite3_column_type(S.S, 10) != SQLITE_NULL)
      R.PeakReserved = sqlite3_column_int64(S.S, 10);
    Out.push_back(std::move(R));
  }
  if (Rc != SQLITE_DONE)
    return sqlError("reading the runs");
  return Out;
}

std::vector<std::pair<std::string, std::vector<std::pair<std::string, int64_t>>>>
peakTrend(const std::vector<RunRecord> &Runs) {
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, int64_t>>>> Out;
  for (const RunRecord &R : Runs) {
    auto Model = std::find_if(Out.begin(), Out.end(),
                              [&](const auto &M) { return M.first == R.Model; });
    if (Model == Out.end()) {
      Out.push_back({R.Model, {}});
      Model = Out.end() - 1;
    }
    auto &Commits = Model->second;
    auto Commit = std::find_if(Commits.begin(), Commits.end(),
                               [&](const auto &C) { return C.first == R.Commit; });
    if (Commit == Commits.end())
      Commits.push_back({R.Commit, R.Peak});
    else
      Commit->second = R.Peak;
  }
  return Out;
}

std::string modelDigest(const std::string &Path) {
  constexpr uint64_t Limit = 64ull << 20;
  uint64_t Size = 0;
  if (llvm::sys::fs::file_size(Path, Size))
    return "";
  auto Buffer = llvm::MemoryBuffer::getFileSlice(Path, std::min(Size, Limit), 0);
  if (!Buffer)
    return "";
  llvm::SHA256 Hash;
  Hash.update(std::to_string(Size) + ":");
  Hash.update((*Buffer)->getBuffer());
  auto Digest = Hash.final();
  return llvm::toHex(llvm::ArrayRef<uint8_t>(Digest.data(), Digest.size()), /*LowerCase=*/true);
}

namespace {

/// The first line `git ARGS` prints in the current directory, or "".
std::string gitOutput(llvm::ArrayRef<llvm::StringRef> Args) {
  auto Git = llvm::sys::findProgramByName("git");
  if (!Git)
    return "";
  llvm::SmallString<128> Out;
  if (llvm::sys::fs::createTemporaryFile("trainmem-git", "txt", Out))
    return "";
  std::vector<llvm::StringRef> Argv = {"git"};
  Argv.insert(Argv.end(), Args.begin(), Args.end());
  std::optional<llvm::StringRef> Redirects[] = {llvm::StringRef(""), llvm::StringRef(Out),
                                                llvm::StringRef("")};
  int Rc = llvm::sys::ExecuteAndWait(*Git, Argv, std::nullopt, Redirects, /*Seconds=*/10);
  std::string Line;
  if (Rc == 0)
    if (auto Buffer = llvm::MemoryBuffer::getFile(Out))
      Line = (*Buffer)->getBuffer().split('\n').first.trim().str();
  llvm::sys::fs::remove(Out);
  return Line;
}

std::string env(const char *Name) {
  std::optional<std::string> V = llvm::sys::Process::GetEnv(Name);
  return V ? *V : "";
}

} // namespace

std::pair<std::string, std::string> currentCommitAndBranch() {
  std::string Commit = env("GITHUB_SHA");
  if (Commit.empty())
    Commit = env("CI_COMMIT_SHA");
  std::string Branch = env("GITHUB_REF_NAME");
  if (Branch.empty())
    Branch = env("CI_COMMIT_REF_NAME");
  if (Commit.empty())
    Commit = gitOutput({"rev-parse", "HEAD"});
  if (Branch.empty())
    Branch = gitOutput({"rev-parse", "--abbrev-ref", "HEAD"});
  return {Commit, Branch};
}

} // namespace trainmem
