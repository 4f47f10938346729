//===- ModuleLifetimeTest.cpp - what Python's frames keep alive ------------------===//
//
// A module's input lives until the module returns (the caller's variable and the
// forward's argument refer to it); autograd saving nothing in frozen layers makes that
// visible. Checkpointing wraps composite blocks, not numbered single layers.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {
/// x[4,64] -> stem.0 (one Linear) -> features.0 (fc1, fc2) -> features.1 (fc1, fc2)
/// -> head. Every activation is [4,64] fp32: 1,024 bytes.
Graph model() {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 64});
  auto Linear = [&](TensorId In, const std::string &Module) {
    std::string Path = "/" + Module + "/MatMul";
    TensorId W = B.weight(Module + ".weight", {64, 64});
    return B.op("MatMul", {In, W}, {4, 64}, Path);
  };
  TensorId H = Linear(X, "stem/stem.0");
  for (const char *Block : {"features.0", "features.1"})
    H = Linear(Linear(H, std::string(Block) + "/fc1"), std::string(Block) + "/fc2");
  B.output(Linear(H, "head"));
  return B.finish();
}

StepSimulation run(const Graph &G, TrainingSetup S) {
  S.Device = DeviceKind::Cpu;
  S.Loss = LossKind::Mse;
  S.Optimizer = OptimizerKind::Sgd;
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  return std::move(*R);
}

int64_t temporariesAt(const StepSimulation &R, const std::string &Op) {
  for (const TimelinePoint &P : R.Timeline)
    if (P.Phase == "forward" && P.Op == Op)
      return P.Live.Temporaries;
  ADD_FAILURE() << "no forward point at " << Op;
  return -1;
}
} // namespace

TEST(ModuleLifetime, AFrozenBlocksInputLivesUntilTheBlockReturns) {
  TrainingSetup S;
  S.TrainRegex = "^head";
  StepSimulation R = run(model(), S);
  // At features.0's second linear: its input (fc1's output), its output, and the
  // block's input, which the loop `h = block(h)` still refers to.
  EXPECT_EQ(temporariesAt(R, "/features.0/fc2/MatMul"), 3 * 1024);
  // At the block's first linear the input is read anyway: input and output.
  EXPECT_EQ(temporariesAt(R, "/features.0/fc1/MatMul"), 2 * 1024);
}

TEST(ModuleLifetime, CheckpointWrapsCompositeBlocksOnly) {
  Graph G = model();
  EXPECT_EQ(repeatedBlocks(G), (std::vector<std::string>{"features.0", "features.1"}));
  TrainingSetup S;
  S.Checkpoint = "blocks";
  StepSimulation R = run(G, S);
  // One CPU RNG state per checkpointed block: two, not three (stem.0 is one layer).
  int64_t Segments = 0;
  for (const TimelinePoint &P : R.Timeline)
    Segments += P.Phase == "forward" && P.Op == "checkpoint";
  EXPECT_EQ(Segments, 2);
}
