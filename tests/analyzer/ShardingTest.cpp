//===- ShardingTest.cpp - ZeRO, FSDP, DDP and offload in the step simulation -----===//
//
// Per-GPU bytes of model states under each sharding stage, checked against the ZeRO
// paper's accounting (Rajbhandari et al. 2020, Fig. 1): stage 1 partitions optimizer
// states (and fp32 masters), stage 2 also gradients, stage 3 also parameters.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "support/GraphBuilder.h"

#include <gtest/gtest.h>

using namespace trainmem;
using trainmem::testing::GraphBuilder;

namespace {

/// Two blocks of one 64x64 linear each and a 64-class head: 3 x 4096 parameters.
Graph twoBlocks() {
  GraphBuilder B;
  TensorId X = B.input("x", {8, 64});
  for (int L = 0; L < 2; ++L) {
    TensorId W = B.weight("h." + std::to_string(L) + ".fc.weight", {64, 64});
    TensorId H = B.op("MatMul", {X, W}, {8, 64}, "/h." + std::to_string(L) + "/fc/MatMul");
    X = B.op("Relu", {H}, {8, 64}, "/h." + std::to_string(L) + "/Relu");
  }
  TensorId Head = B.weight("head.weight", {64, 64});
  B.output(B.op("MatMul", {X, Head}, {8, 64}, "/head/MatMul"));
  return B.finish();
}

constexpr int64_t Params = 3 * 4096;

StepSimulation simulate(const Graph &G, TrainingSetup S) {
  auto C = takeCensus(G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  return std::move(*R);
}

TrainingSetup mixed(int Stage, int64_t Gpus, OffloadKind Offload = OffloadKind::None) {
  TrainingSetup S;
  S.Prec = Precision::MixedBf16;
  S.Impl = OptimizerImpl::Fused;
  S.Sharding.ZeroStage = Stage;
  S.Sharding.Gpus = Gpus;
  S.Sharding.Offload = Offload;
  return S;
}

} // namespace

TEST(Sharding, SingleGpuHoldsSixteenBytesPerParameter) {
  StepSimulation R = simulate(twoBlocks(), mixed(0, 1));
  const CategoryBytes &M = R.MaxByCategory;
  EXPECT_EQ(M.Weights, Params * 2);          // bf16
  EXPECT_EQ(M.MasterWeights, Params * 4);    // fp32 copy
  EXPECT_EQ(M.OptimizerStates, Params * 8 + 3 * 4); // fp32 moments + step per tensor
  EXPECT_EQ(M.Gradients, Params * 2);
}

TEST(Sharding, DdpKeepsGradientBucketsBesideTheGradients) {
  StepSimulation R = simulate(twoBlocks(), mixed(0, 4));
  EXPECT_EQ(R.MaxByCategory.Gradients, Params * 2 + Params * 2);
}

TEST(Sharding, StageOnePartitionsStatesAndMasters) {
  StepSimulation R = simulate(twoBlocks(), mixed(1, 4));
  EXPECT_EQ(R.MaxByCategory.MasterWeights, Params * 4 / 4);
  EXPECT_EQ(R.MaxByCategory.OptimizerStates, (4096 * 8 + 4) / 4 * 3);
  EXPECT_EQ(R.MaxByCategory.Weights, Params * 2);
}

TEST(Sharding, StageTwoKeepsAGradientPartitionAndAReductionBucket) {
  StepSimulation R = simulate(twoBlocks(), mixed(2, 4));
  // Steady state: a 1/4 partition of every gradient plus the bucket (capped at the
  // gradients' size); while a gradient is reduced, its full tensor exists too.
  int64_t Partition = Params * 2 / 4, Bucket = Params * 2;
  EXPECT_GE(R.MaxByCategory.Gradients, Partition + Bucket);
  EXPECT_LE(R.MaxByCategory.Gradients, Partition + Bucket + 4096 * 2);
}

TEST(Sharding, StageThreeShardsParametersAndGathersOneBlockAtATime) {
  StepSimulation R = simulate(twoBlocks(), mixed(3, 4));
  // Shards of all three weights, plus one unit's gathered remainder (3/4 of 4096 bf16).
  EXPECT_EQ(R.MaxByCategory.Weights, Params * 2 / 4 + 4096 * 2 * 3 / 4);
}

TEST(Sharding, OffloadMovesStatesOrParametersToTheHost) {
  StepSimulation Opt = simulate(twoBlocks(), mixed(3, 4, OffloadKind::Optimizer));
  EXPECT_EQ(Opt.MaxByCategory.OptimizerStates, 0);
  EXPECT_EQ(Opt.MaxByCategory.MasterWeights, 0);
  StepSimulation Par = simulate(twoBlocks(), mixed(3, 4, OffloadKind::Params));
  // Nothing stays resident; each unit's parameters come over whole when it runs.
  EXPECT_EQ(Par.MaxByCategory.Weights, 4096 * 2);
}
