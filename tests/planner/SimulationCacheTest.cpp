//===- SimulationCacheTest.cpp - one plan search's shared simulations -----------===//
#include "planner/SimulationCache.h"

#include "analyzer/ParameterCensus.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

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
