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

#include <algorithm>
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

// Hugging Face's "Model training anatomy" and "Methods and tools for efficient training on
// a single GPU" (transformers docs, January 2022; the same run in both): bert-large-uncased
// as a sequence classifier (two labels), 512 random token ids a row and no attention mask
// in the data, transformers' Trainer with its defaults of then, on a Tesla V100-SXM2 16GB
// (driver 460.91.03, CUDA 11.2). Each figure is nvidia-smi's "used" (pynvml, in MiB) after
// an epoch, so the caching allocator's reserve plus everything outside it; the doc measured
// the latter as 1,343 MiB (the context and PyTorch's kernels, loaded whole before CUDA
// 11.7's lazy loading) before the model was loaded, which is what --cuda-context is for:
// peak_reserved with it is compared with the figure as published.
//
// The setup is what PyTorch 1.10 and transformers 4.15 did then: eager attention (no
// SDPA), zero_grad() zeroing the gradients in place rather than freeing them (the default
// became set_to_none in PyTorch 2.0), for-loop AdamW; fp16 is autocast with a gradient
// scaler, gradient checkpointing every layer, Adafactor transformers' own and 8-bit Adam
// bitsandbytes'. Not modelled, so part of the error: transformers' AdamW of then
// (adamw_hf) kept one parameter-sized temporary where torch.optim's keeps two (119 MiB
// here, where the optimizer step is the peak: the checkpointed runs), cuBLAS's kernels
// (loaded at the first matmul, after the context was measured), and the fragmentation of
// the earlier steps (the replay starts from an empty allocator; a trial replay of a first
// step, its states made at the optimizer step, lowered the batch-4 reserves rather than
// raising them). The four runs at batch 4 come out 8-13% short, the five at batch 1 within
// 4%.
TEST(PublishedFigures, HfTrainingAnatomyBertLargeOnAV100) {
  const std::string Config =
      std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/published/bert-large-uncased/config.json";
  constexpr double MiB = 1 << 20, ContextMeasured = 1343;
  struct Case {
    const char *Name;
    int64_t Batch, Accumulate;
    bool Checkpoint;
    Precision Prec;
    OptimizerKind Optimizer;
    double Published; ///< nvidia-smi "used", MiB
  };
  const Case Cases[] = {
      {"batch 4", 4, 1, false, Precision::Fp32, OptimizerKind::AdamW, 14949},
      {"batch 1 x 4 accumulated", 1, 4, false, Precision::Fp32, OptimizerKind::AdamW, 8681},
      {"  + checkpointing", 1, 4, true, Precision::Fp32, OptimizerKind::AdamW, 6775},
      {"batch 4, fp16", 4, 1, false, Precision::AmpFp16, OptimizerKind::AdamW, 13939},
      {"1 x 4, checkpointing, fp16", 1, 4, true, Precision::AmpFp16, OptimizerKind::AdamW, 7275},
      {"batch 4, Adafactor", 4, 1, false, Precision::Fp32, OptimizerKind::Adafactor, 12295},
      {"1 x 4, checkpointing, fp16, Adafactor", 1, 4, true, Precision::AmpFp16,
       OptimizerKind::Adafactor, 4847},
      {"batch 4, 8-bit Adam", 4, 1, false, Precision::Fp32, OptimizerKind::AdamW8bit, 13085},
      {"1 x 4, checkpointing, fp16, 8-bit Adam", 1, 4, true, Precision::AmpFp16,
       OptimizerKind::AdamW8bit, 5363},
  };
  double Worst = 0;
  for (const Case &C : Cases) {
    ImportOptions O;
    O.Dims = {{"batch", C.Batch}, {"seq", 512}};
    auto G = importHfConfig(Config, O);
    ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
    TrainingSetup S;
    S.Device = DeviceKind::Cuda;
    S.Gpu = "v100-sxm2-16gb";
    S.Attention = AttentionImpl::Eager;
    S.Torch = TorchVersion::V1_13;
    S.KeepGrads = true;
    S.GradAccum = C.Accumulate;
    S.Checkpoint = C.Checkpoint ? "blocks" : "none";
    S.Prec = C.Prec;
    S.Optimizer = C.Optimizer;
    S.CudaContextBytes = static_cast<int64_t>(ContextMeasured * MiB);
    auto Census = takeCensus(*G, S);
    ASSERT_TRUE(static_cast<bool>(Census)) << llvm::toString(Census.takeError());
    auto R = simulateStep(*G, S, *Census);
    ASSERT_TRUE(static_cast<bool>(R)) << llvm::toString(R.takeError());
    ASSERT_TRUE(R->PeakReserved.has_value());
    double Predicted = static_cast<double>(*R->PeakReserved) / MiB;
    double Error = 100.0 * (Predicted - C.Published) / C.Published;
    Worst = std::max(Worst, std::fabs(Error));
    std::printf("bert-large-uncased on a V100, %-40s nvidia-smi: predicted %6.0f MiB, "
                "published %5.0f MiB, error %+5.1f%%\n",
                C.Name, Predicted, C.Published, Error);
    EXPECT_LE(std::fabs(Error), 15.0) << C.Name;
  }
  std::printf("bert-large-uncased on a V100: worst |error| %.1f%% over 9 published runs\n", Worst);
}
