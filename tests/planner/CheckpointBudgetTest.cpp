//===- CheckpointBudgetTest.cpp - the least checkpointing within a budget --------===//
#include "planner/CheckpointBudget.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/StepSimulator.h"

#include <gtest/gtest.h>

using namespace trainmem;

namespace {
int64_t need(const Graph &G, TrainingSetup S, const ParameterCensus &C, const std::string &Mode) {
  S.Checkpoint = Mode;
  auto R = simulateStep(G, S, C);
  EXPECT_TRUE(static_cast<bool>(R));
  return R->PeakReserved.value_or(R->Peak);
}
} // namespace

TEST(CheckpointBudget, PicksTheFewestBlocksThatMeetTheBudget) {
  ImportOptions O;
  O.Dims = {{"batch", 8}, {"seq", 512}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json", O);
  ASSERT_TRUE(static_cast<bool>(G));
  TrainingSetup S;
  S.Device = DeviceKind::Cpu; // tensor-level peaks: no allocator rounding in the way
  auto C = takeCensus(*G, S);
  ASSERT_TRUE(static_cast<bool>(C));
  int64_t None = need(*G, S, *C, "none"), All = need(*G, S, *C, "blocks");
  ASSERT_LT(All, None);
  S.Checkpoint = "budget:" + std::to_string((None + All) / 2);
  auto Choice = chooseCheckpointForBudget(*G, S, *C);
  ASSERT_TRUE(static_cast<bool>(Choice)) << llvm::toString(Choice.takeError());
  EXPECT_EQ(Choice->Blocks, 2);
  EXPECT_GT(Choice->Checkpointed, 0);
  EXPECT_LE(Choice->Peak, (None + All) / 2);
  EXPECT_EQ(Choice->Peak, need(*G, S, *C, Choice->Mode));
  std::string Fewer = Choice->Checkpointed == 1 ? "none" : "first:" + std::to_string(Choice->Checkpointed - 1);
  EXPECT_GT(need(*G, S, *C, Fewer), (None + All) / 2) << "one block fewer must not fit";
  // Below what checkpointing every block reaches there is no answer, and the error says
  // what the least memory is.
  S.Checkpoint = "budget:" + std::to_string(All / 2);
  auto Miss = chooseCheckpointForBudget(*G, S, *C);
  ASSERT_FALSE(static_cast<bool>(Miss));
  EXPECT_NE(llvm::toString(Miss.takeError()).find("least memory"), std::string::npos);
}
