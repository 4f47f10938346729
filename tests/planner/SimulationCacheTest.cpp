//===- SimulationCacheTest.cpp - one plan search's shared simulations -----------===//
#include "planner/SimulationCache.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "planner/StrategyApply.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {
Graph mlp() {
  GraphBuilder B;
  TensorId X = B.input("x", {8, 64});
  TensorId W1 = B.weight("fc1.weight", {64, 64});
  TensorId W2 = B.weight("fc2.weight", {64, 64});
  TensorId H = B.op("MatMul", {X, W1}, {8, 64}, "/fc1/MatMul");
  B.output(B.op("MatMul", {H, W2}, {8, 64}, "/fc2/MatMul"));
  return B.finish();
}

/// A sample model's graph at a micro-batch (sequence 64).
llvm::Expected<Graph> sample(const char *Model, int64_t MicroBatch) {
  ImportOptions O;
  O.Dims = {{"batch", MicroBatch}, {"seq", 64}};
  return importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/" + Model + "/config.json", O);
}

int64_t peak(SimulationCache &Cache, const Graph &G, const TrainingSetup &S) {
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto Sim = Cache.simulate(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(Sim));
  auto Direct = simulateStep(G, S, *C, /*Details=*/false);
  EXPECT_TRUE(static_cast<bool>(Direct));
  EXPECT_EQ(Sim->Peak, Direct->Peak); // a kept result is the simulation's own
  return Sim->Peak;
}
} // namespace

TEST(SimulationCache, EqualRequestsSimulateOnceOthersAgain) {
  Graph G = mlp();
  SimulationCache Cache;
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  int64_t First = peak(Cache, G, S);
  EXPECT_EQ(peak(Cache, G, S), First);
  EXPECT_EQ(Cache.simulations(), 1);
  EXPECT_EQ(Cache.hits(), 1);
  // A different update set (resolved to names, as the sparse search does) is a new step.
  TrainingSetup Sparse = S;
  Sparse.TrainableFile = "(update set)";
  Sparse.TrainableNames = {"fc2.weight"};
  EXPECT_LT(peak(Cache, G, Sparse), First);
  EXPECT_EQ(Cache.simulations(), 2);
  // The same label over other names (the search's sets all carry one label) too.
  TrainingSetup Other = Sparse;
  Other.TrainableNames = {"fc1.weight"};
  peak(Cache, G, Other);
  EXPECT_EQ(Cache.simulations(), 3);
  // So is another batch of the same model.
  GraphBuilder B;
  TensorId X = B.input("x", {16, 64});
  TensorId W1 = B.weight("fc1.weight", {64, 64});
  TensorId W2 = B.weight("fc2.weight", {64, 64});
  TensorId H = B.op("MatMul", {X, W1}, {16, 64}, "/fc1/MatMul");
  B.output(B.op("MatMul", {H, W2}, {16, 64}, "/fc2/MatMul"));
  Graph Bigger = B.finish();
  EXPECT_GT(peak(Cache, Bigger, S), First);
  EXPECT_EQ(Cache.simulations(), 4);
}

TEST(SimulationCache, ThreadsShareOneCache) {
  Graph G = mlp();
  SimulationCache Cache;
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  auto C = takeCensus(G, S);
  ASSERT_TRUE(static_cast<bool>(C));
  auto Expected = simulateStep(G, S, *C, /*Details=*/false);
  ASSERT_TRUE(static_cast<bool>(Expected));
  std::vector<int64_t> Peaks(8, 0);
  std::vector<std::thread> Threads;
  for (size_t I = 0; I < Peaks.size(); ++I)
    Threads.emplace_back([&, I] {
      auto Sim = Cache.simulate(G, S, *C);
      Peaks[I] = Sim ? Sim->Peak : -1;
      if (!Sim)
        llvm::consumeError(Sim.takeError());
    });
  for (std::thread &T : Threads)
    T.join();
  for (int64_t P : Peaks)
    EXPECT_EQ(P, Expected->Peak);
  EXPECT_EQ(Cache.simulations() + Cache.hits(), 8);
  EXPECT_GE(Cache.simulations(), 1);
}

TEST(SimulationCache, ProbesThatStopAreKeptApartFromWholeSteps) {
  Graph G = mlp();
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  auto C = takeCensus(G, S);
  ASSERT_TRUE(static_cast<bool>(C));
  auto Whole = simulateStep(G, S, *C, /*Details=*/false);
  ASSERT_TRUE(static_cast<bool>(Whole));
  const int64_t Limit = Whole->Peak / 2;
  SimulationCache Cache;
  // A probe below the step's need stops; the same probe again is answered by it.
  auto Probe = Cache.simulate(G, S, *C, StepStop{Limit});
  ASSERT_TRUE(static_cast<bool>(Probe));
  EXPECT_EQ(Probe->StoppedAbove, Limit);
  EXPECT_GT(Probe->Peak, Limit);
  auto Again = Cache.simulate(G, S, *C, StepStop{Limit});
  ASSERT_TRUE(static_cast<bool>(Again));
  EXPECT_EQ(Again->StoppedAbove, Limit);
  EXPECT_EQ(Cache.simulations(), 1);
  EXPECT_EQ(Cache.hits(), 1);
  EXPECT_EQ(Cache.stopped(), 1);
  // A request for the whole step's figures replays it whole, once...
  auto Full = Cache.simulate(G, S, *C);
  ASSERT_TRUE(static_cast<bool>(Full));
  EXPECT_FALSE(Full->StoppedAbove);
  EXPECT_EQ(Full->Peak, Whole->Peak);
  EXPECT_EQ(Cache.simulations(), 2);
  // ...and then answers every probe, at any limit.
  auto Later = Cache.simulate(G, S, *C, StepStop{Limit / 2});
  ASSERT_TRUE(static_cast<bool>(Later));
  EXPECT_FALSE(Later->StoppedAbove);
  EXPECT_EQ(Later->Peak, Whole->Peak);
  EXPECT_EQ(Cache.simulations(), 2);
  // A probe that fits replays the whole step, which whole requests then take.
  SimulationCache Fresh;
  auto Fits = Fresh.simulate(G, S, *C, StepStop{Whole->Peak});
  ASSERT_TRUE(static_cast<bool>(Fits));
  EXPECT_FALSE(Fits->StoppedAbove);
  auto Taken = Fresh.simulate(G, S, *C);
  ASSERT_TRUE(static_cast<bool>(Taken));
  EXPECT_EQ(Taken->Peak, Whole->Peak);
  EXPECT_EQ(Fresh.simulations(), 1);
  EXPECT_EQ(Fresh.hits(), 1);
  EXPECT_EQ(Fresh.stopped(), 0);
}

namespace {
/// Every figure a planner's evaluation reads, compared field by field.
void expectSameFigures(const StepSimulation &A, const StepSimulation &B, const std::string &What) {
  EXPECT_EQ(A.Peak, B.Peak) << What;
  EXPECT_EQ(A.PeakReserved, B.PeakReserved) << What;
  EXPECT_EQ(A.SavedAtEndOfForward, B.SavedAtEndOfForward) << What;
  EXPECT_EQ(A.MaxByCategory.Gradients, B.MaxByCategory.Gradients) << What;
  EXPECT_EQ(A.MaxByCategory.Temporaries, B.MaxByCategory.Temporaries) << What;
  EXPECT_EQ(A.MaxByCategory.OptimizerStates, B.MaxByCategory.OptimizerStates) << What;
  EXPECT_EQ(A.PeakInfo.Phase, B.PeakInfo.Phase) << What;
  EXPECT_EQ(A.PeakInfo.Op, B.PeakInfo.Op) << What;
}

llvm::Expected<Graph> tinyLlama() {
  ImportOptions O;
  O.Dims = {{"batch", 4}, {"seq", 256}};
  return importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json", O);
}
} // namespace

// One structure serves every setup of a graph: the same figures as a simulation that
// builds its own, whatever the setups before it were (nothing leaks between runs).
TEST(SimulationCache, OneStepStructureServesEverySetup) {
  auto G = tinyLlama();
  ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
  TrainingSetup Base;
  Base.Device = DeviceKind::Cuda;
  Base.Gpu = "a100-sxm-80gb";
  std::shared_ptr<const StepStructure> Shared =
      buildStepStructure(*G, fusesAttention(*G, Base));
  ASSERT_FALSE(Shared->Spans.empty());
  std::vector<std::pair<std::string, TrainingSetup>> Setups;
  for (const char *Mode : {"none", "blocks", "selective", "first:1", "every:2",
                           "blocks:1+selective:0"}) {
    TrainingSetup S = Base;
    S.Checkpoint = Mode;
    Setups.emplace_back(std::string("checkpoint ") + Mode, S);
  }
  TrainingSetup Amp = Base;
  Amp.Prec = Precision::AmpBf16;
  Amp.Impl = OptimizerImpl::Foreach;
  Setups.emplace_back("amp-bf16 foreach", Amp);
  TrainingSetup Accum = Base;
  Accum.GradAccum = 2;
  Accum.Checkpoint = "blocks";
  Setups.emplace_back("accumulation 2 + checkpoint", Accum);
  TrainingSetup Frozen = Base;
  Frozen.TrainableFile = "(update set)";
  Frozen.TrainableNames = {"model.layers.1.mlp.down_proj.weight"};
  Setups.emplace_back("one trainable weight", Frozen);
  for (int Pass = 0; Pass < 2; ++Pass) // the second pass runs after every other setup
    for (const auto &[What, S] : Setups) {
      auto C = takeCensus(*G, S);
      ASSERT_TRUE(static_cast<bool>(C)) << What;
      auto Own = simulateStep(*G, S, *C, /*Details=*/false);
      auto WithShared = simulateStep(*G, S, *C, /*Details=*/false, Shared);
      ASSERT_TRUE(Own && WithShared) << What;
      expectSameFigures(*Own, *WithShared, What);
      // And the report a user reads (details on) is the same as well.
      auto Detailed = simulateStep(*G, S, *C, /*Details=*/true, Shared);
      ASSERT_TRUE(static_cast<bool>(Detailed)) << What;
      expectSameFigures(*Own, *Detailed, What + " (details)");
    }
  // A structure built for the other attention implementation is not used for this one.
  TrainingSetup Eager = Base;
  Eager.Attention = fusesAttention(*G, Base) ? AttentionImpl::Eager : AttentionImpl::Sdpa;
  auto C = takeCensus(*G, Eager);
  ASSERT_TRUE(static_cast<bool>(C));
  auto Own = simulateStep(*G, Eager, *C, false);
  auto Mismatched = simulateStep(*G, Eager, *C, false, Shared);
  ASSERT_TRUE(Own && Mismatched);
  expectSameFigures(*Own, *Mismatched, "other attention");
}

TEST(SimulationCache, StructuresAndPreparedModelsAreKeptPerGraph) {
  auto G = tinyLlama();
  ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
  SimulationCache Cache;
  TrainingSetup S;
  auto First = Cache.structureFor(*G, S);
  EXPECT_EQ(Cache.structureFor(*G, S), First) << "the same graph: one structure";
  TrainingSetup Checkpointed = S;
  Checkpointed.Checkpoint = "blocks";
  EXPECT_EQ(Cache.structureFor(*G, Checkpointed), First) << "checkpointing is not structure";
  TrainingSetup Lora = S;
  Lora.Lora = LoraSetup{};
  EXPECT_NE(Cache.structureFor(*G, Lora), First) << "LoRA builds another graph";
  // The adapters' rank changes dims only (OneStructureServesEveryRank); their targets
  // change which nodes there are.
  TrainingSetup Rank16 = Lora;
  Rank16.Lora->Rank = 16;
  EXPECT_EQ(Cache.structureFor(*G, Rank16), Cache.structureFor(*G, Lora));
  TrainingSetup AllLinear = Lora;
  AllLinear.Lora->Targets = {"all-linear"};
  EXPECT_NE(Cache.structureFor(*G, AllLinear), Cache.structureFor(*G, Lora));
  TrainingSetup WithDropout = Lora;
  WithDropout.Lora->Dropout = 0.05;
  EXPECT_NE(Cache.structureFor(*G, WithDropout), Cache.structureFor(*G, Lora));

  int Builds = 0;
  auto Build = [&]() -> llvm::Expected<PreparedModel> {
    ++Builds;
    auto C = takeCensus(*G, S);
    if (!C)
      return C.takeError();
    return PreparedModel{std::make_shared<const Graph>(*G), S, std::make_shared<const ParameterCensus>(std::move(*C))};
  };
  auto A = Cache.prepared("key", Build);
  auto B = Cache.prepared("key", Build);
  ASSERT_TRUE(A && B);
  EXPECT_EQ(A->get(), B->get());
  EXPECT_EQ(Builds, 1);
  // Errors are not kept: the next request builds again.
  auto Failing = [&]() -> llvm::Expected<PreparedModel> {
    ++Builds;
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "no model");
  };
  auto E1 = Cache.prepared("broken", Failing);
  EXPECT_FALSE(static_cast<bool>(E1));
  llvm::consumeError(E1.takeError());
  auto E2 = Cache.prepared("broken", Build);
  ASSERT_TRUE(static_cast<bool>(E2));
  EXPECT_EQ(Builds, 3);
}

namespace {
void expectSameStructure(const StepStructure &A, const StepStructure &B, const std::string &What) {
  ASSERT_EQ(A.Ops.size(), B.Ops.size()) << What;
  for (size_t I = 0; I < A.Ops.size(); ++I) {
    EXPECT_EQ(A.Ops[I].Kind, B.Ops[I].Kind) << What << ", op " << I;
    EXPECT_EQ(A.Ops[I].Inputs, B.Ops[I].Inputs) << What << ", op " << I;
    EXPECT_EQ(A.Ops[I].Outputs, B.Ops[I].Outputs) << What << ", op " << I;
    EXPECT_EQ(A.Ops[I].Nodes, B.Ops[I].Nodes) << What << ", op " << I;
    EXPECT_EQ(A.Ops[I].Layer, B.Ops[I].Layer) << What << ", op " << I;
  }
  EXPECT_EQ(A.DistinctInputs, B.DistinctInputs) << What;
  EXPECT_EQ(A.NodeInOp, B.NodeInOp) << What;
  EXPECT_EQ(A.ModuleInputHolds, B.ModuleInputHolds) << What;
  EXPECT_EQ(A.TensorBits, B.TensorBits) << What;
  ASSERT_EQ(A.Spans.size(), B.Spans.size()) << What;
  for (size_t I = 0; I < A.Spans.size(); ++I) {
    EXPECT_EQ(A.Spans[I].Block, B.Spans[I].Block) << What;
    EXPECT_EQ(A.Spans[I].First, B.Spans[I].First) << What;
    EXPECT_EQ(A.Spans[I].Last, B.Spans[I].Last) << What;
  }
}
} // namespace

// The search keeps one structure for all micro-batches of a graph: what it would build
// for each micro-batch on its own is the same, with and without fused attention.
TEST(SimulationCache, OneStructureServesEveryMicroBatch) {
  for (const char *Model : {"tiny-llama", "gpt2", "bert-base-uncased"})
    for (AttentionImpl Attention : {AttentionImpl::Eager, AttentionImpl::Sdpa}) {
      SimulationCache Cache;
      TrainingSetup S;
      S.Attention = Attention;
      std::shared_ptr<const StepStructure> Shared;
      for (int64_t MicroBatch : {1, 2, 3, 8}) {
        auto G = sample(Model, MicroBatch);
        ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
        const std::string What = std::string(Model) + " micro-batch " +
                                 std::to_string(MicroBatch) +
                                 (Attention == AttentionImpl::Sdpa ? " sdpa" : " eager");
        auto Kept = Cache.structureFor(*G, S);
        if (!Shared)
          Shared = Kept;
        EXPECT_EQ(Kept, Shared) << What << ": one structure for every micro-batch";
        expectSameStructure(*buildStepStructure(*G, fusesAttention(*G, S)), *Kept, What);
      }
    }
}

// LoRA and QLoRA of one target list at any rank share one structure with each other and
// across micro-batches (the planner sweeps r=16, r=64 and QLoRA r=64): what each rank's
// transform of each micro-batch would build on its own is the same.
TEST(SimulationCache, OneStructureServesEveryRank) {
  for (const char *Model : {"tiny-llama", "gpt2"})
    for (AttentionImpl Attention : {AttentionImpl::Eager, AttentionImpl::Sdpa})
      for (std::vector<std::string> Targets :
           {std::vector<std::string>{}, std::vector<std::string>{"all-linear"}}) {
        SimulationCache Cache;
        std::shared_ptr<const StepStructure> Shared;
        for (int64_t MicroBatch : {1, 3})
          for (int64_t Rank : {1, 16, 64})
            for (bool QLora : {false, true}) {
              TrainingSetup S;
              S.Attention = Attention;
              S.Prec = Precision::AmpBf16;
              S.Lora = LoraSetup{};
              S.Lora->Rank = Rank;
              S.Lora->Alpha = 2.0 * static_cast<double>(Rank);
              S.Lora->Targets = Targets;
              S.Lora->QLora = QLora;
              auto Base = sample(Model, MicroBatch);
              ASSERT_TRUE(static_cast<bool>(Base)) << llvm::toString(Base.takeError());
              auto G = applyGraphStrategies(*Base, S);
              ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
              const std::string What =
                  std::string(Model) + (Targets.empty() ? " default targets" : " all-linear") +
                  " micro-batch " + std::to_string(MicroBatch) + " r=" + std::to_string(Rank) +
                  (QLora ? " qlora" : "") + (Attention == AttentionImpl::Sdpa ? " sdpa" : " eager");
              auto Kept = Cache.structureFor(*G, S);
              if (!Shared)
                Shared = Kept;
              EXPECT_EQ(Kept, Shared) << What << ": one structure for every rank";
              expectSameStructure(*buildStepStructure(*G, fusesAttention(*G, S)), *Kept, What);
            }
      }
}

// The census reads the stored tensors, the graph's structure and the setup: every
// micro-batch of a model shares one, which equals the micro-batch's own; another
// optimizer has its own.
TEST(SimulationCache, OneCensusServesEveryMicroBatch) {
  for (const char *Model : {"tiny-llama", "gpt2", "bert-base-uncased"}) {
    SimulationCache Cache;
    TrainingSetup S;
    S.Prec = Precision::AmpBf16;
    std::shared_ptr<const ParameterCensus> Shared;
    for (int64_t MicroBatch : {1, 2, 3, 8}) {
      auto G = sample(Model, MicroBatch);
      ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
      const std::string What = std::string(Model) + " micro-batch " + std::to_string(MicroBatch);
      TrainingSetup AtBatch = S;
      AtBatch.MicroBatch = MicroBatch;
      AtBatch.GradAccum = 8 / MicroBatch;
      auto Kept = Cache.census(*G, AtBatch);
      ASSERT_TRUE(static_cast<bool>(Kept)) << llvm::toString(Kept.takeError());
      if (!Shared)
        Shared = *Kept;
      EXPECT_EQ(*Kept, Shared) << What << ": one census for every micro-batch";
      auto Own = takeCensus(*G, AtBatch);
      ASSERT_TRUE(static_cast<bool>(Own));
      const ParameterCensus &A = **Kept, &B = *Own;
      EXPECT_EQ(A.Parameters.size(), B.Parameters.size()) << What;
      EXPECT_EQ(A.Buffers.size(), B.Buffers.size()) << What;
      EXPECT_EQ(A.TotalParameters, B.TotalParameters) << What;
      EXPECT_EQ(A.TrainableParameters, B.TrainableParameters) << What;
      EXPECT_EQ(A.ParameterBytes, B.ParameterBytes) << What;
      EXPECT_EQ(A.BufferBytes, B.BufferBytes) << What;
      EXPECT_EQ(A.GradientBytes, B.GradientBytes) << What;
      EXPECT_EQ(A.OptimizerStateBytes, B.OptimizerStateBytes) << What;
      EXPECT_EQ(A.MasterWeightBytes, B.MasterWeightBytes) << What;
      EXPECT_EQ(A.TiedGroups, B.TiedGroups) << What;
      TrainingSetup EightBit = AtBatch;
      EightBit.Optimizer = OptimizerKind::AdamW8bit;
      auto Other = Cache.census(*G, EightBit);
      ASSERT_TRUE(static_cast<bool>(Other));
      EXPECT_NE(*Other, Shared) << What << ": another optimizer, another census";
      EXPECT_LT((*Other)->OptimizerStateBytes, Shared->OptimizerStateBytes) << What;
    }
  }
}

// Two threads asking for the same value at once: one builds it, the other waits for it
// (no second build); when the build fails the waiter builds it itself (errors are not
// kept).
TEST(SimulationCache, ConcurrentRequestsBuildOnce) {
  SimulationCache Cache;
  std::atomic<int> Builds{0};
  auto Slow = [&]() -> llvm::Expected<Graph> {
    ++Builds;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return mlp();
  };
  std::shared_ptr<const Graph> A, B;
  std::thread First([&] { A = llvm::cantFail(Cache.graph("k", Slow)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::thread Second([&] { B = llvm::cantFail(Cache.graph("k", Slow)); });
  First.join();
  Second.join();
  EXPECT_EQ(Builds.load(), 1);
  EXPECT_EQ(A, B);

  std::atomic<int> Attempts{0};
  auto FailsFirst = [&]() -> llvm::Expected<Graph> {
    int N = ++Attempts;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    if (N == 1)
      return llvm::createStringError(llvm::inconvertibleErrorCode(), "first build fails");
    return mlp();
  };
  // Whichever thread builds first fails; the other then builds and succeeds.
  std::atomic<int> Failed{0};
  std::shared_ptr<const Graph> Got[2];
  auto Ask = [&](int I) {
    auto G = Cache.graph("other", FailsFirst);
    if (!G) {
      ++Failed;
      llvm::consumeError(G.takeError());
      return;
    }
    Got[I] = *G;
  };
  std::thread One(Ask, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::thread Two(Ask, 1);
  One.join();
  Two.join();
  EXPECT_EQ(Failed.load(), 1);
  EXPECT_EQ(Attempts.load(), 2);
  EXPECT_TRUE(Got[0] || Got[1]);
}

TEST(SimulationCache, ModelWithoutImporterIsAnErrorNotACrash) {
  SimulationCache Cache;
  auto G = Cache.model(1);
  ASSERT_FALSE(static_cast<bool>(G));
  EXPECT_NE(llvm::toString(G.takeError()).find("no model"), std::string::npos);
  int Imports = 0;
  Cache.setModel([&](int64_t MicroBatch) -> llvm::Expected<Graph> {
    ++Imports;
    EXPECT_EQ(MicroBatch, 2);
    return mlp();
  });
  auto First = Cache.model(2);
  auto Again = Cache.model(2);
  ASSERT_TRUE(First && Again);
  EXPECT_EQ(*First, *Again);
  EXPECT_EQ(Imports, 1);
}
