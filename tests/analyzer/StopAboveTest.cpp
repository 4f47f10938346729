//===- StopAboveTest.cpp - a replay that stops once the step misses a budget -----===//
//
// The planner's probes only ask whether a step fits, so simulateStep(StopAbove) stops
// at the first op after which the step's requirement (reserved plus context on CUDA,
// the peak on the CPU) exceeds the limit. The oracle is the whole replay: across setups
// that reach their peak in different places (weights, forward, loss, recompute,
// optimizer step, later micro-batches) and limits around and below the whole step's
// requirement, the replay stops exactly when the whole step needs more than the limit,
// its figures never exceed the whole step's, and one that does not stop has the whole
// step's figures.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/SetupVariants.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

using namespace trainmem;
using trainmem::testing::hfSample;
using trainmem::testing::SetupVariants;

namespace {

int64_t required(const StepSimulation &S) { return S.PeakReserved.value_or(S.Peak); }

} // namespace

TEST(StopAbove, StopsExactlyWhenTheWholeStepNeedsMore) {
  auto Llama = hfSample("tiny-llama", 2);
  auto Gpt2 = hfSample("gpt2", 2);
  ASSERT_TRUE(static_cast<bool>(Llama)) << llvm::toString(Llama.takeError());
  ASSERT_TRUE(static_cast<bool>(Gpt2)) << llvm::toString(Gpt2.takeError());

  SetupVariants Setups = SetupVariants::onCuda("a100-sxm-80gb");
  auto add = [&](const std::string &What, auto Change) { Setups.add(What, Change); };
  add("fp32 Adam", [](TrainingSetup &) {});
  add("amp-bf16 fused, blocks checkpointed", [](TrainingSetup &S) {
    S.Prec = Precision::AmpBf16;
    S.Impl = OptimizerImpl::Fused;
    S.Checkpoint = "blocks";
  });
  add("accumulation 3, selective", [](TrainingSetup &S) {
    S.GradAccum = 3;
    S.Checkpoint = "selective";
  });
  add("8-bit Adam, dropout", [](TrainingSetup &S) {
    S.Optimizer = OptimizerKind::AdamW8bit;
    S.Dropout = 0.1;
  });
  add("ZeRO-3 on 4 GPUs", [](TrainingSetup &S) {
    S.Sharding.ZeroStage = 3;
    S.Sharding.Gpus = 4;
  });
  add("sparse update: last block", [](TrainingSetup &S) { S.SparseUpdate = "last:1"; });
  add("CPU (no allocator: the peak is the requirement)", [](TrainingSetup &S) {
    S.Device = DeviceKind::Cpu;
    S.GradAccum = 2;
  });

  int Stopped = 0, Whole = 0;
  for (const auto &[Model, G] : {std::pair<const char *, const Graph *>{"tiny-llama", &*Llama},
                                 {"gpt2", &*Gpt2}})
    for (const auto &[Name, S] : Setups.all()) {
      const std::string What = std::string(Model) + ", " + Name;
      auto C = takeCensus(*G, S);
      ASSERT_TRUE(static_cast<bool>(C)) << What << ": " << llvm::toString(C.takeError());
      auto Full = simulateStep(*G, S, *C, /*Details=*/false);
      ASSERT_TRUE(static_cast<bool>(Full)) << What << ": " << llvm::toString(Full.takeError());
      EXPECT_FALSE(Full->StoppedAbove) << What;
      const int64_t Need = required(*Full);
      ASSERT_GT(Need, 0) << What;
      // Limits from below the weights to above the step, and the two around its need.
      std::vector<int64_t> Limits = {1, Need / 4, Need / 2, Need * 3 / 4, Need * 9 / 10,
                                     Need * 99 / 100, Need - 1, Need, Need + 1, Need * 2};
      for (int64_t Limit : Limits) {
        const std::string At = What + ", limit " + std::to_string(Limit) + " of " +
                               std::to_string(Need);
        auto Probe = simulateStep(*G, S, *C, /*Details=*/false, nullptr, StepStop{Limit});
        ASSERT_TRUE(static_cast<bool>(Probe)) << At;
        EXPECT_EQ(Probe->StoppedAbove.has_value(), Need > Limit) << At;
        if (Probe->StoppedAbove) {
          ++Stopped;
          EXPECT_EQ(*Probe->StoppedAbove, Limit) << At;
          EXPECT_GT(required(*Probe), Limit) << At << ": stopped without exceeding it";
          EXPECT_LE(required(*Probe), Need) << At << ": lower bounds of the whole step";
          EXPECT_LE(Probe->Peak, Full->Peak) << At;
          EXPECT_LE(Probe->MicroBatchesSimulated, Full->MicroBatchesSimulated) << At;
          continue;
        }
        ++Whole;
        EXPECT_EQ(Probe->Peak, Full->Peak) << At;
        EXPECT_EQ(Probe->PeakReserved, Full->PeakReserved) << At;
        EXPECT_EQ(Probe->SavedAtEndOfForward, Full->SavedAtEndOfForward) << At;
        EXPECT_EQ(Probe->MaxByCategory.Gradients, Full->MaxByCategory.Gradients) << At;
        EXPECT_EQ(Probe->MaxByCategory.OptimizerStates, Full->MaxByCategory.OptimizerStates)
            << At;
        EXPECT_EQ(Probe->MaxByCategory.Temporaries, Full->MaxByCategory.Temporaries) << At;
        EXPECT_EQ(Probe->MicroBatchesSimulated, Full->MicroBatchesSimulated) << At;
        EXPECT_EQ(Probe->PeakInfo.Op, Full->PeakInfo.Op) << At;
      }
    }
  EXPECT_EQ(Stopped, 2 * 7 * 7) << "every limit below the need stops";
  EXPECT_EQ(Whole, 2 * 7 * 3);
}

TEST(StopAbove, AStepThatStopsAtItsWeightsReplaysNothing) {
  // A limit below the weights: the replay ends before the first micro-batch.
  auto G = hfSample("tiny-llama", 2);
  ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
  TrainingSetup S;
  S.Device = DeviceKind::Cuda;
  S.Gpu = "a100-sxm-80gb";
  S.GradAccum = 4;
  auto C = takeCensus(*G, S);
  ASSERT_TRUE(static_cast<bool>(C));
  auto Probe = simulateStep(*G, S, *C, /*Details=*/false, nullptr, StepStop{1});
  ASSERT_TRUE(static_cast<bool>(Probe));
  ASSERT_TRUE(Probe->StoppedAbove.has_value());
  EXPECT_EQ(Probe->MicroBatchesSimulated, 0);
  EXPECT_EQ(Probe->MaxByCategory.Activations, 0);
  EXPECT_GT(Probe->MaxByCategory.Weights, 0);
}

TEST(StopAbove, AfterTheForwardTheSavedBytesAreTheWholeSteps) {
  // The checkpoint search's per-block probes need only the bytes saved for backward.
  auto Llama = hfSample("tiny-llama", 2);
  auto Gpt2 = hfSample("gpt2", 2);
  ASSERT_TRUE(Llama && Gpt2);
  int Checked = 0;
  for (const Graph *G : {&*Llama, &*Gpt2})
    for (const char *Mode : {"none", "blocks", "selective:0", "blocks:1+selective:0"})
      for (int64_t Accum : {1, 2}) {
        TrainingSetup S;
        S.Device = DeviceKind::Cuda;
        S.Gpu = "a100-sxm-80gb";
        S.Prec = Precision::AmpBf16;
        S.Checkpoint = Mode;
        S.GradAccum = Accum;
        const std::string What = std::string(Mode) + ", accumulation " + std::to_string(Accum);
        auto C = takeCensus(*G, S);
        ASSERT_TRUE(static_cast<bool>(C)) << What;
        auto Full = simulateStep(*G, S, *C, /*Details=*/false);
        StepStop Stop;
        Stop.AfterForward = true;
        auto Probe = simulateStep(*G, S, *C, /*Details=*/false, nullptr, Stop);
        ASSERT_TRUE(Full && Probe) << What;
        EXPECT_EQ(Probe->SavedAtEndOfForward, Full->SavedAtEndOfForward) << What;
        EXPECT_FALSE(Probe->StoppedAbove) << What;
        if (Accum == 1) {
          EXPECT_TRUE(Probe->StoppedAfterForward) << What;
          EXPECT_LE(required(*Probe), required(*Full)) << What;
        } else {
          // With accumulation the last micro-batch's forward is reported: replayed whole.
          EXPECT_FALSE(Probe->stopped()) << What;
          EXPECT_EQ(required(*Probe), required(*Full)) << What;
        }
        ++Checked;
      }
  EXPECT_EQ(Checked, 16);
}
