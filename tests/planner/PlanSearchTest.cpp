//===- PlanSearchTest.cpp - plans are ranked, consistent and honest ---------------===//
//
// Every plan is re-simulated independently: what it says it needs is what its setup
// needs, a plan that fits fits, the largest micro-batch is the largest, the plans that
// fit come first, and no plan dominates one marked on the Pareto front.
//
//===----------------------------------------------------------------------------===//
#include "planner/PlanSearch.h"
#include "planner/StrategyApply.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <thread>

using namespace trainmem;

namespace {

const std::string TinyLlama = std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json";

llvm::Expected<Graph> tinyLlama(int64_t MicroBatch) {
  ImportOptions O;
  O.Dims = {{"seq", 256}};
  O.MicroBatch = MicroBatch;
  return importHfConfig(TinyLlama, O);
}

int64_t required(const TrainingSetup &Setup, int64_t MicroBatch) {
  auto G = tinyLlama(MicroBatch);
  EXPECT_TRUE(static_cast<bool>(G));
  TrainingSetup S = Setup;
  EXPECT_FALSE(static_cast<bool>(applyStrategies(*G, S)));
  auto C = takeCensus(*G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(*G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  // The categories at the peak add up to the peak, and no point of the timeline is
  // above it.
  EXPECT_EQ(R->PeakInfo.ByCategory.total(), R->Peak);
  for (const TimelinePoint &P : R->Timeline)
    EXPECT_LE(P.Live.total(), R->Peak) << P.Op;
  // The timeline never has negative live bytes in any category.
  for (const TimelinePoint &P : R->Timeline) {
    const CategoryBytes &L = P.Live;
    EXPECT_GE(std::min({L.Weights, L.MasterWeights, L.Gradients, L.OptimizerStates,
                        L.Activations, L.Temporaries, L.Inputs}),
              0)
        << P.Op;
  }
  return R->PeakReserved.value_or(R->Peak);
}

PlanRequest request(int64_t Budget, int64_t Batch, int64_t Gpus, PlanObjective Objective) {
  PlanRequest R;
  R.Model = tinyLlama;
  R.Gpu.Name = "test-gpu";
  R.Gpu.DisplayName = "Test GPU";
  R.Gpu.UsableBytes = Budget;
  R.Gpu.Supported[static_cast<unsigned>(MathPrecision::BF16)] = true;
  R.Budget = Budget;
  R.GlobalBatch = Batch;
  R.Gpus = Gpus;
  R.Objective = Objective;
  return R;
}

/// The base the search builds its sparse and partial-checkpoint candidates on, for
/// request(): full fine-tuning in amp-bf16 with fused AdamW at micro-batch 8.
TrainingSetup ampFusedAt8(const PlanRequest &R) {
  TrainingSetup S = R.Base;
  S.Gpu = R.Gpu.Name;
  S.Prec = Precision::AmpBf16;
  S.Optimizer = OptimizerKind::AdamW;
  S.Impl = OptimizerImpl::Fused;
  S.MicroBatch = 8;
  return S;
}

} // namespace

TEST(PlanSearch, EveryPlanIsConsistentWithItsOwnSimulation) {
  // A budget between the smallest and the largest needs at micro-batch 1, so some plans
  // fit and some do not.
  auto Probe = searchPlans(request(int64_t(1) << 40, 1, 2, PlanObjective::FitFastest));
  ASSERT_TRUE(static_cast<bool>(Probe)) << llvm::toString(Probe.takeError());
  int64_t Low = INT64_MAX, High = 0;
  for (const Plan &P : *Probe) {
    Low = std::min(Low, P.Required);
    High = std::max(High, P.Required);
  }
  ASSERT_LT(Low, High);
  PlanRequest R = request((Low + High) / 2, 16, 2, PlanObjective::FitFastest);
  auto Plans = searchPlans(R);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  ASSERT_GE(Plans->size(), 10u);
  bool SeenMiss = false;
  int Fitting = 0;
  for (const Plan &P : *Plans) {
    EXPECT_EQ(P.Required, required(P.Setup, P.MicroBatch)) << P.Name;
    EXPECT_EQ(P.Fits, P.Required <= R.Budget) << P.Name;
    EXPECT_EQ(P.Headroom, R.Budget - P.Required) << P.Name;
    EXPECT_GE(P.MicroBatch * P.GradAccum, R.GlobalBatch) << P.Name;
    if (!P.Fits)
      SeenMiss = true;
    else
      EXPECT_FALSE(SeenMiss) << P.Name << " fits but ranks below a plan that does not";
    Fitting += P.Fits;
    if (P.MaxMicroBatch > 0 && P.MaxMicroBatch < R.GlobalBatch) {
      TrainingSetup At = P.Setup, Above = P.Setup;
      At.GradAccum = (R.GlobalBatch + P.MaxMicroBatch - 1) / P.MaxMicroBatch;
      Above.GradAccum = (R.GlobalBatch + P.MaxMicroBatch) / (P.MaxMicroBatch + 1);
      EXPECT_LE(required(At, P.MaxMicroBatch), R.Budget) << P.Name;
      EXPECT_GT(required(Above, P.MaxMicroBatch + 1), R.Budget) << P.Name;
    }
  }
  EXPECT_GT(Fitting, 0);
  EXPECT_TRUE(SeenMiss) << "the budget was chosen so that some plans do not fit";
  for (const Plan &P : *Plans)
    if (P.Pareto)
      for (const Plan &Q : *Plans)
        if (Q.Fits && &Q != &P) {
          EXPECT_FALSE(Q.Required <= P.Required && Q.Overhead <= P.Overhead &&
                       (Q.Required < P.Required || Q.Overhead < P.Overhead))
              << Q.Name << " dominates " << P.Name;
        }
}

TEST(PlanSearch, ObjectivesOrderTheFittingPlans) {
  auto Trainable = searchPlans(request(int64_t(1) << 30, 8, 1, PlanObjective::MaxTrainable));
  ASSERT_TRUE(static_cast<bool>(Trainable));
  ASSERT_TRUE(Trainable->front().Fits);
  EXPECT_EQ(Trainable->front().Fid, Fidelity::Full) << "full fine-tuning trains the most";
  auto Batch = searchPlans(request(int64_t(1) << 30, 8, 1, PlanObjective::MaxBatch));
  ASSERT_TRUE(static_cast<bool>(Batch));
  for (const Plan &P : *Batch) {
    if (P.Fits) {
      EXPECT_LE(P.MaxMicroBatch, Batch->front().MaxMicroBatch) << P.Name;
    }
  }
}

TEST(PlanSearch, UpdateSetSearchTrainsTheMostBlocksThatFit) {
  // tiny-llama has 2 blocks. The setup the search probes: amp-bf16, fused AdamW, no
  // checkpointing, the last K blocks (and what follows them) trainable.
  PlanRequest Probe = request(int64_t(1) << 40, 8, 1, PlanObjective::FitFastest);
  auto Sparse = [&](const char *Mode) {
    TrainingSetup S = ampFusedAt8(Probe);
    S.SparseUpdate = Mode;
    return S;
  };
  const int64_t One = required(Sparse("last:1"), 8), Two = required(Sparse("last:2"), 8);
  ASSERT_LT(One, Two) << "a block more trains more and keeps more";
  auto Find = [](const std::vector<Plan> &Plans, llvm::StringRef Prefix) -> const Plan * {
    for (const Plan &P : Plans)
      if (llvm::StringRef(P.Setup.SparseUpdate).startswith(Prefix))
        return &P;
    return nullptr;
  };
  // Between the two: one block fits at micro-batch 8, two do not.
  PlanRequest Mid = request((One + Two) / 2, 8, 1, PlanObjective::FitFastest);
  auto Plans = searchPlans(Mid);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  const Plan *Found = Find(*Plans, "last:");
  ASSERT_NE(Found, nullptr);
  EXPECT_EQ(Found->Setup.SparseUpdate, "last:1");
  EXPECT_EQ(Found->Fid, Fidelity::Sparse);
  EXPECT_TRUE(Found->Fits);
  EXPECT_TRUE(Found->Engines.empty()) << "no engine config selects an update set";
  EXPECT_NE(Found->Name.find("last 1 of 2 blocks"), std::string::npos) << Found->Name;
  // Enough for both: the whole stack.
  auto Roomy = searchPlans(request(Two, 8, 1, PlanObjective::FitFastest));
  ASSERT_TRUE(static_cast<bool>(Roomy));
  Found = Find(*Roomy, "last:");
  ASSERT_NE(Found, nullptr);
  EXPECT_EQ(Found->Setup.SparseUpdate, "last:2");
  // tiny-llama has no biases, so no BitFit plan.
  EXPECT_EQ(Find(*Roomy, "bias-only"), nullptr);
  // Plans an engine carries out rank before those that need a hand-written loop.
  bool SeenManual = false;
  for (const Plan &P : *Roomy)
    if (P.Fits) {
      if (P.Engines.empty())
        SeenManual = true;
      else
        EXPECT_FALSE(SeenManual) << P.Name << " has an engine but ranks below a manual plan";
    }
}

TEST(PlanSearch, OptimalCheckpointingIsTheLeastRecomputeThatFits) {
  // Full fine-tuning in amp-bf16 with fused AdamW on tiny-llama (2 blocks), batch 8.
  PlanRequest Probe = request(int64_t(1) << 40, 8, 1, PlanObjective::FitFastest);
  auto Full = [&](const char *Checkpoint) {
    TrainingSetup S = ampFusedAt8(Probe);
    S.Checkpoint = Checkpoint;
    return required(S, 8);
  };
  const int64_t None = Full("none"), One = Full("first:1"), Both = Full("blocks");
  ASSERT_LT(One, None);
  ASSERT_LE(Both, One); // reserved memory rounds to the allocator's segments
  // Room for one checkpointed block but not for none.
  PlanRequest R = request(One, 8, 1, PlanObjective::FitFastest);
  auto Plans = searchPlans(R);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  const Plan *Optimal = nullptr;
  for (const Plan &P : *Plans)
    if (P.Name == "full, amp-bf16, AdamW (fused) + checkpoint optimal")
      Optimal = &P;
  ASSERT_NE(Optimal, nullptr);
  EXPECT_NE(Optimal->Setup.Checkpoint, "blocks");
  EXPECT_NE(Optimal->Setup.Checkpoint, "none");
  EXPECT_TRUE(Optimal->Fits);
  EXPECT_EQ(Optimal->MicroBatch, 8);
  // First:1 fits, so the least recompute is at most one of two blocks' forward:
  // 1 + 1/6 of a step, and more than nothing.
  EXPECT_GT(Optimal->RecomputeFlops, 0);
  EXPECT_LE(Optimal->Overhead, 1.0 + 1.0 / 6.0 + 1e-12);
  EXPECT_GT(Optimal->Overhead, 1.0);
  EXPECT_NE(Optimal->CheckpointRunsAs.find("torch.utils.checkpoint"), std::string::npos);
  // Every optimal plan misses the budget without checkpointing; its JSON says what
  // it recomputes and what runs it.
  for (const Plan &P : *Plans)
    if (P.RecomputeFlops) {
      TrainingSetup Without = P.Setup;
      Without.Checkpoint = "none";
      EXPECT_GT(required(Without, P.MicroBatch), One) << P.Name;
    }
  llvm::json::Value Json = plansToJson(*Plans, R);
  bool SawCheckpoint = false;
  for (const llvm::json::Value &V : *Json.getAsObject()->getArray("plans"))
    if (const llvm::json::Object *C = V.getAsObject()->getObject("checkpoint")) {
      SawCheckpoint = true;
      EXPECT_GT(C->getInteger("recompute_flops").value_or(0), 0);
      EXPECT_FALSE(C->getString("runs_as").value_or("").empty());
    }
  EXPECT_TRUE(SawCheckpoint);
  // With room for full fine-tuning without checkpointing, it gets no optimal plan.
  auto Roomy = searchPlans(request(None, 8, 1, PlanObjective::FitFastest));
  ASSERT_TRUE(static_cast<bool>(Roomy));
  for (const Plan &P : *Roomy)
    EXPECT_NE(P.Name, "full, amp-bf16, AdamW (fused) + checkpoint optimal");
}

TEST(PlanSearch, StrategiesTheModelCannotTakeAreListedNotFailed) {
  // MobileNetV2's one linear layer is its classifier, which LoRA's all-linear leaves
  // out: the ten LoRA and QLoRA candidates (r=16 and 64 on an amp or bf16 base, QLoRA; each
  // with and without checkpointing) cannot be set up on it.
  const std::string Onnx = std::string(TRAINMEM_SOURCE_DIR) +
                           "/tests/data/measured/gt/onnx/mobilenetv2_tiny.onnx";
  PlanRequest R = request(int64_t(80) << 30, 4, 1, PlanObjective::FitFastest);
  R.Model = [Onnx](int64_t MicroBatch) {
    ImportOptions O;
    O.MicroBatch = MicroBatch;
    return importModel(Onnx, O);
  };
  std::vector<SkippedPlan> Skipped;
  R.Skipped = &Skipped;
  auto Plans = searchPlans(R);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  EXPECT_GE(Plans->size(), 4u);
  for (const Plan &P : *Plans)
    EXPECT_FALSE(P.Setup.Lora.has_value()) << P.Name;
  ASSERT_EQ(Skipped.size(), 10u);
  for (const SkippedPlan &S : Skipped) {
    EXPECT_TRUE(llvm::StringRef(S.Name).contains("LoRA")) << S.Name;
    EXPECT_NE(S.Why.find("classifier"), std::string::npos) << S.Why;
  }
  llvm::json::Value Json = plansToJson(*Plans, R);
  const llvm::json::Array *Listed = Json.getAsObject()->getArray("not_applicable");
  ASSERT_NE(Listed, nullptr);
  ASSERT_EQ(Listed->size(), 10u);
  EXPECT_EQ((*Listed)[0].getAsObject()->getString("name").value_or(""), Skipped[0].Name);
  // A caller that does not ask for the list gets the first such candidate as the error.
  R.Skipped = nullptr;
  R.Simulations = nullptr;
  auto Failed = searchPlans(R);
  ASSERT_FALSE(static_cast<bool>(Failed));
  std::string Msg = llvm::toString(Failed.takeError());
  EXPECT_NE(Msg.find("plan 'LoRA r=16"), std::string::npos) << Msg;
}

TEST(PlanSearch, TinyEngineSearchIsASparsePlanThatFits) {
  PlanRequest Probe = request(int64_t(1) << 40, 8, 1, PlanObjective::FitFastest);
  TrainingSetup S = ampFusedAt8(Probe);
  S.SparseUpdate = "last:1";
  const int64_t One = required(S, 8);
  PlanRequest R = request(One, 8, 1, PlanObjective::MaxTrainable);
  auto Plans = searchPlans(R);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  const Plan *Searched = nullptr;
  for (const Plan &P : *Plans)
    if (llvm::StringRef(P.Setup.SparseUpdate).startswith("budget:"))
      Searched = &P;
  ASSERT_NE(Searched, nullptr);
  EXPECT_EQ(Searched->Fid, Fidelity::Sparse);
  EXPECT_TRUE(Searched->Fits);
  EXPECT_TRUE(Searched->Engines.empty()) << "no engine config selects an update set";
  EXPECT_GT(Searched->TrainableParameters, 0);
  EXPECT_NE(Searched->Name.find("TinyEngine"), std::string::npos) << Searched->Name;
  EXPECT_NE(Searched->Why.find("updates "), std::string::npos) << Searched->Why;
  EXPECT_EQ(Searched->Required, required(Searched->Setup, Searched->MicroBatch));
}
// The search's threads never call the caller's model at once: a Model that is not
// thread-safe (one shared request whose micro-batch it sets, as the CLI's once did) gets
// every micro-batch right, and the plans are those of a thread-safe one.
TEST(PlanSearch, TheModelIsImportedOneCallAtATime) {
  struct Shared {
    std::atomic<int> Inside{0}, Overlaps{0}, Calls{0};
    ImportOptions Options; // mutated by every call, like a reused request
  };
  auto State = std::make_shared<Shared>();
  State->Options.Dims = {{"seq", 256}};
  PlanRequest R = request(int64_t(1) << 30, 8, 1, PlanObjective::MaxBatch);
  R.Model = [State](int64_t MicroBatch) -> llvm::Expected<Graph> {
    if (State->Inside.fetch_add(1) > 0)
      ++State->Overlaps;
    ++State->Calls;
    State->Options.MicroBatch = MicroBatch;
    std::this_thread::sleep_for(std::chrono::milliseconds(2)); // widen any overlap
    auto G = importHfConfig(TinyLlama, State->Options);
    State->Inside.fetch_sub(1);
    return G;
  };
  auto Plans = searchPlans(R);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  EXPECT_EQ(State->Overlaps.load(), 0);
  EXPECT_GT(State->Calls.load(), 3) << "the max-batch search imports several micro-batches";
  auto Reference = searchPlans(request(int64_t(1) << 30, 8, 1, PlanObjective::MaxBatch));
  ASSERT_TRUE(static_cast<bool>(Reference));
  ASSERT_EQ(Plans->size(), Reference->size());
  for (size_t I = 0; I < Plans->size(); ++I) {
    EXPECT_EQ((*Plans)[I].Name, (*Reference)[I].Name);
    EXPECT_EQ((*Plans)[I].MaxMicroBatch, (*Reference)[I].MaxMicroBatch) << (*Plans)[I].Name;
    EXPECT_EQ((*Plans)[I].Required, (*Reference)[I].Required) << (*Plans)[I].Name;
  }
}

// Micro-batches need not need less with accumulation: gradients are held while the next
// micro-batch's activations are saved. LLaMA-2-7B on 80 GiB at batch 8 x 2048 has such a
// plan (8-bit AdamW with the optimal checkpointing for micro-batch 8 fits at 8 in one
// step, not at 4 x 2 accumulation steps). The requested batch in one step is the plan
// whenever it fits: the search once bisected below a smaller miss and chose micro-batch 2.
TEST(PlanSearch, TheRequestedBatchInOneStepIsUsedWheneverItFits) {
  auto Llama7B = [](int64_t MicroBatch) {
    ImportOptions O;
    O.Dims = {{"seq", 2048}};
    O.MicroBatch = MicroBatch;
    return importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/llama-2-7b/config.json", O);
  };
  PlanRequest R = request(int64_t(80) << 30, 8, 1, PlanObjective::FitFastest);
  R.Model = Llama7B;
  auto Plans = searchPlans(R);
  ASSERT_TRUE(static_cast<bool>(Plans)) << llvm::toString(Plans.takeError());
  auto Whole = Llama7B(8);
  ASSERT_TRUE(static_cast<bool>(Whole)) << llvm::toString(Whole.takeError());
  int InOneStep = 0;
  for (const Plan &P : *Plans) {
    TrainingSetup S = P.Setup;
    S.MicroBatch = 8;
    S.GradAccum = 1;
    Graph G = *Whole;
    ASSERT_FALSE(static_cast<bool>(applyStrategies(G, S))) << P.Name;
    auto C = takeCensus(G, S);
    ASSERT_TRUE(static_cast<bool>(C)) << P.Name;
    auto Sim = simulateStep(G, S, *C, /*Details=*/false);
    ASSERT_TRUE(static_cast<bool>(Sim)) << P.Name;
    if (Sim->PeakReserved.value_or(Sim->Peak) > R.Budget)
      continue;
    ++InOneStep;
    EXPECT_EQ(P.MicroBatch, 8) << P.Name;
    EXPECT_EQ(P.GradAccum, 1) << P.Name;
    EXPECT_EQ(P.MaxMicroBatch, 8) << P.Name;
  }
  EXPECT_GE(InOneStep, 10);
}
