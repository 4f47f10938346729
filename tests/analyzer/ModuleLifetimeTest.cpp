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

// The recomputation runs the modules' code again, so a module holds its input until it
// returns there too: each block's `norm` output feeds its `attn` (fc1 then fc2), and with
// fc1's weight frozen nothing saves that input, yet attn's frame keeps it through fc2
// (measured on PyTorch 2.15: a decoder layer's normed input alive at the recomputed
// attention's peak). Without the hold it went with fc1, its last reader.
TEST(ModuleLifetime, TheRecomputationHoldsAModulesInputUntilItReturns) {
  GraphBuilder B;
  TensorId X = B.input("x", {4, 64});
  auto Linear = [&](TensorId In, const std::string &Module) {
    TensorId W = B.weight(Module + ".weight", {64, 64});
    return B.op("MatMul", {In, W}, {4, 64}, "/" + Module + "/MatMul");
  };
  TensorId H = Linear(X, "stem/stem.0");
  for (const char *Block : {"features.0", "features.1"}) {
    std::string P(Block);
    TensorId Normed = Linear(H, P + "/norm");
    H = Linear(Linear(Normed, P + "/attn/fc1"), P + "/attn/fc2");
  }
  B.output(Linear(H, "head"));
  Graph G = B.finish();
  TrainingSetup S;
  S.Checkpoint = "blocks";
  S.TrainRegex = "stem|fc2|head"; // fc1 frozen: it saves its weight, not its input
  StepSimulation R = run(G, S);
  auto LiveAt = [&](const std::string &Op) {
    for (const TimelinePoint &P : R.Timeline)
      if (P.Phase == "backward (recompute)" && P.Op == Op)
        return P.Live.Temporaries + P.Live.Activations;
    ADD_FAILURE() << "no recompute point at " << Op;
    return int64_t{-1};
  };
  // fc2 adds its output; the normed input is still there.
  EXPECT_EQ(LiveAt("/features.1/attn/fc2/MatMul") - LiveAt("/features.1/attn/fc1/MatMul"), 1024);
  EXPECT_EQ(LiveAt("/features.0/attn/fc2/MatMul") - LiveAt("/features.0/attn/fc1/MatMul"), 1024);
}
