//===- RunStoreTest.cpp - the history database keeps every committed run ---------===//
#include "store/RunStore.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace trainmem;

namespace {

/// A fresh database path in a temporary folder, removed with the fixture.
class RunStoreTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-store", Dir));
    Path = (Dir + "/history.db").str();
  }
  void TearDown() override { llvm::sys::fs::remove_directories(Dir); }
  llvm::SmallString<128> Dir;
  std::string Path;
};

RunRecord run(const std::string &Model, int64_t Peak) {
  RunRecord R;
  R.Command = "analyze";
  R.Model = Model;
  R.ModelDigest = "d";
  R.Commit = "c" + std::to_string(Peak);
  R.Branch = "main";
  R.SetupJson = "{}";
  R.ReportJson = "{\"bytes\": {}}";
  R.Peak = Peak;
  return R;
}

std::string pragma(const std::string &Path, const char *Sql) {
  sqlite3 *Db = nullptr;
  EXPECT_EQ(sqlite3_open(Path.c_str(), &Db), SQLITE_OK);
  sqlite3_stmt *S = nullptr;
  std::string Out;
  if (sqlite3_prepare_v2(Db, Sql, -1, &S, nullptr) == SQLITE_OK && sqlite3_step(S) == SQLITE_ROW)
    Out = reinterpret_cast<const char *>(sqlite3_column_text(S, 0));
  sqlite3_finalize(S);
  sqlite3_close(Db);
  return Out;
}

} // namespace

TEST_F(RunStoreTest, RecordsAndListsRunsWithTheSchemaVersion) {
  auto Store = RunStore::open(Path);
  ASSERT_TRUE(static_cast<bool>(Store)) << llvm::toString(Store.takeError());
  RunRecord A = run("gpt2", 100);
  A.PeakReserved = 150;
  ASSERT_TRUE(static_cast<bool>((*Store)->record(A)));
  ASSERT_TRUE(static_cast<bool>((*Store)->record(run("llama", 200))));
  auto All = (*Store)->list();
  ASSERT_TRUE(static_cast<bool>(All));
  ASSERT_EQ(All->size(), 2u);
  EXPECT_EQ((*All)[0].Model, "gpt2");
  EXPECT_EQ((*All)[0].PeakReserved, 150);
  EXPECT_FALSE((*All)[1].PeakReserved.has_value());
  EXPECT_EQ((*All)[0].Time.size(), 20u) << (*All)[0].Time; // 2026-11-29T03:30:00Z
  auto Llama = (*Store)->list("llama");
  ASSERT_TRUE(static_cast<bool>(Llama));
  ASSERT_EQ(Llama->size(), 1u);
  EXPECT_EQ((*Llama)[0].Peak, 200);
  EXPECT_EQ(pragma(Path, "PRAGMA user_version"), "1");
  EXPECT_EQ(pragma(Path, "PRAGMA journal_mode"), "wal");
}

TEST_F(RunStoreTest, ANewerSchemaIsRefusedAndLeftAlone) {
  { ASSERT_TRUE(static_cast<bool>(RunStore::open(Path))); }
  sqlite3 *Db = nullptr;
  ASSERT_EQ(sqlite3_open(Path.c_str(), &Db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(Db, "PRAGMA user_version = 7", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(Db);
  auto Store = RunStore::open(Path);
  ASSERT_FALSE(static_cast<bool>(Store));
  std::string Message = llvm::toString(Store.takeError());
  EXPECT_NE(Message.find("schema version 7, newer than this trainmem's 1"), std::string::npos)
      << Message;
  EXPECT_EQ(pragma(Path, "PRAGMA user_version"), "7");
}

TEST_F(RunStoreTest, FourConcurrentWritersLoseNoRow) {
  constexpr int Writers = 4, Each = 100;
  std::vector<std::thread> Threads;
  std::atomic<int> Failures{0};
  for (int W = 0; W < Writers; ++W)
    Threads.emplace_back([&, W] {
      auto Store = RunStore::open(Path); // each writer its own connection, as processes have
      if (!Store) {
        ADD_FAILURE() << llvm::toString(Store.takeError());
        ++Failures;
        return;
      }
      for (int I = 0; I < Each; ++I)
        if (auto Id = (*Store)->record(run("m" + std::to_string(W), I)); !Id) {
          llvm::consumeError(Id.takeError());
          ++Failures;
        }
    });
  for (std::thread &T : Threads)
    T.join();
  EXPECT_EQ(Failures.load(), 0);
  auto Store = RunStore::open(Path);
  ASSERT_TRUE(static_cast<bool>(Store));
  auto All = (*Store)->list();
  ASSERT_TRUE(static_cast<bool>(All));
  EXPECT_EQ(All->size(), static_cast<size_t>(Writers * Each));
  for (int W = 0; W < Writers; ++W) {
    auto Mine = (*Store)->list("m" + std::to_string(W));
    ASSERT_TRUE(static_cast<bool>(Mine));
    EXPECT_EQ(Mine->size(), static_cast<size_t>(Each));
  }
}

TEST_F(RunStoreTest, AWriterKilledMidWriteLeavesEveryCommittedRun) {
  {
    auto Store = RunStore::open(Path);
    ASSERT_TRUE(static_cast<bool>(Store));
    ASSERT_TRUE(static_cast<bool>((*Store)->record(run("kept", 1))));
  }
  pid_t Child = fork();
  ASSERT_GE(Child, 0);
  if (Child == 0) {
    // A second writer starts a transaction, writes rows, and dies before committing.
    sqlite3 *Db = nullptr;
    sqlite3_open(Path.c_str(), &Db);
    sqlite3_exec(Db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int I = 0; I < 100; ++I)
      sqlite3_exec(Db,
                   "INSERT INTO runs (time, command, model, model_digest, git_commit, "
                   "git_branch, setup, report, peak) VALUES ('t', 'analyze', 'lost', '', '', "
                   "'', '{}', '{}', 1)",
                   nullptr, nullptr, nullptr);
    kill(getpid(), SIGKILL);
    _exit(1);
  }
  int Status = 0;
  ASSERT_EQ(waitpid(Child, &Status, 0), Child);
  ASSERT_TRUE(WIFSIGNALED(Status));
  EXPECT_EQ(pragma(Path, "PRAGMA integrity_check"), "ok");
  auto Store = RunStore::open(Path);
  ASSERT_TRUE(static_cast<bool>(Store)) << llvm::toString(Store.takeError());
  auto All = (*Store)->list();
  ASSERT_TRUE(static_cast<bool>(All));
  ASSERT_EQ(All->size(), 1u);
  EXPECT_EQ((*All)[0].Model, "kept");
  // And the database takes new runs after the crash.
  EXPECT_TRUE(static_cast<bool>((*Store)->record(run("after", 2))));
}

TEST_F(RunStoreTest, AnUnopenablePathIsAClearError) {
  auto Store = RunStore::open(Path + "/no/such/dir/history.db");
  ASSERT_FALSE(static_cast<bool>(Store));
  EXPECT_NE(llvm::toString(Store.takeError()).find("cannot open the history database"),
            std::string::npos);
}

TEST(PeakTrend, LastRunOfEachCommitPerModelInOrderOfAppearance) {
  std::vector<RunRecord> Runs;
  auto Add = [&](const char *Model, const char *Commit, int64_t Peak) {
    RunRecord R;
    R.Model = Model;
    R.Commit = Commit;
    R.Peak = Peak;
    Runs.push_back(R);
  };
  Add("gpt2", "a", 100);
  Add("llama", "a", 900);
  Add("gpt2", "a", 110); // a re-run of commit a: the last one counts
  Add("gpt2", "b", 130);
  Add("gpt2", "c", 120);
  auto Trend = peakTrend(Runs);
  ASSERT_EQ(Trend.size(), 2u);
  EXPECT_EQ(Trend[0].first, "gpt2");
  ASSERT_EQ(Trend[0].second.size(), 3u);
  EXPECT_EQ(Trend[0].second[0], (std::pair<std::string, int64_t>{"a", 110}));
  EXPECT_EQ(Trend[0].second[1], (std::pair<std::string, int64_t>{"b", 130}));
  EXPECT_EQ(Trend[0].second[2], (std::pair<std::string, int64_t>{"c", 120}));
  EXPECT_EQ(Trend[1].first, "llama");
  EXPECT_EQ(Trend[1].second.size(), 1u);
}
