//===- PublishedFiguresTest.cpp - predictions against published GPU measurements -===//
//
// Measurements someone else published, with the setup they state, each with its source.
// They run on GPUs with PyTorch 2.x, where the fixtures (CPU, torch 1.13) cannot reach.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace trainmem;

namespace {
StepSimulation simulate(const std::string &Sample, int64_t Batch, int64_t Seq,
                        TrainingSetup S) {
  ImportOptions O;
  O.Dims = {{"batch", Batch}, {"seq", Seq}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/" + Sample +
                              "/config.json",
                          O);
  EXPECT_TRUE(static_cast<bool>(G));
  auto C = takeCensus(*G, S);
  EXPECT_TRUE(static_cast<bool>(C));
  auto R = simulateStep(*G, S, *C);
  EXPECT_TRUE(static_cast<bool>(R));
  return std::move(*R);
}
} // namespace

// optimum-benchmark, huggingface.co/datasets/optimum-benchmark/rocm,
// cuda_training_transformers_fill-mask_google-bert/bert-base-uncased (PyTorch 2.2.2 and
// 2.3.1, ROCm 5.7): transformers' Trainer, fill-mask, per-device batch 2, sequence 16, fp32,
// its default AdamW (torch.optim, foreach on a GPU), 5 steps; max_allocated 2195.345408 MB
// in both releases' reports.
TEST(PublishedFigures, OptimumBenchmarkBertBaseTrainingOnAGpu) {
  TrainingSetup S;
  S.Device = DeviceKind::Cuda;
  S.Impl = OptimizerImpl::Foreach;
  StepSimulation R = simulate("bert-base-uncased", 2, 16, S);
  constexpr double Measured = 2195345408.0;
  double Error = 100.0 * (static_cast<double>(R.Peak) - Measured) / Measured;
  std::printf("bert-base-uncased b2 s16 fp32 AdamW foreach: predicted %lld, published "
              "max_allocated %.0f, error %+.2f%%\n",
              static_cast<long long>(R.Peak), Measured, Error);
  EXPECT_LE(std::fabs(Error), 1.0);
  // torch 1.13's foreach kept a second list of parameter-sized temporaries.
  S.Torch = TorchVersion::V1_13;
  StepSimulation Old = simulate("bert-base-uncased", 2, 16, S);
  EXPECT_EQ(Old.Peak - R.Peak, 109514298LL * 4);
}
