//===- CudaValidationTest.cpp - the executor on a GPU, under CUPTI (label gpu) ---===//
//
// GPT-2 of the gt fixtures run by the executor on the CUDA twin: the tracking allocator
// must see the same step as on the host (the same buffers, byte for byte), and CUPTI's
// memory records, replayed, must give that step's peak. Skips, saying why, where no GPU
// is usable, the build has no CUDA, or the fixtures are absent.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/CuptiProbe.h"
#include "cupti_probe/Executor.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "support/Fixtures.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace trainmem;
using namespace trainmem::testing;

namespace {

TEST(CudaValidation, DeviceStepMatchesTheHostStepAndCupti) {
  std::string Why;
  auto Cuda = kernels::makeCudaDevice(0, Why);
  if (!Cuda)
    GTEST_SKIP() << "no usable CUDA device: " << Why;
  TRAINMEM_REQUIRE_FIXTURES("gt/onnx");
  ImportOptions Import;
  Import.Dims = {{"batch", 4}, {"sequence", 32}};
  auto G = importModel(fixturesDir() + "/gt/onnx/gpt2_tiny.onnx", Import);
  ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
  TrainingSetup Setup;
  Setup.Device = DeviceKind::Cuda;
  Setup.Impl = OptimizerImpl::Fused;
  auto Census = takeCensus(*G, Setup);
  ASSERT_TRUE(bool(Census)) << llvm::toString(Census.takeError());
  auto Host = kernels::makeHostDevice();
  auto OnHost = probe::executeTrainingSteps(*G, Setup, *Census, *Host);
  ASSERT_TRUE(bool(OnHost)) << llvm::toString(OnHost.takeError());

  std::unique_ptr<probe::CuptiSession> Session;
  probe::ExecutorOptions Options;
  if (probe::builtWithCupti()) {
    auto S = probe::CuptiSession::start();
    ASSERT_TRUE(bool(S)) << llvm::toString(S.takeError());
    Session = std::move(*S);
    Options.AfterEachOp = [&Session] { Session->sampleMemInfo(); };
    Options.BeforeMeasuredStep = [&Session] { Session->markMeasuredStep(); };
  }
  auto OnCuda = probe::executeTrainingSteps(*G, Setup, *Census, *Cuda, Options);
  ASSERT_TRUE(bool(OnCuda)) << llvm::toString(OnCuda.takeError());
  EXPECT_EQ(OnCuda->Peak, OnHost->Peak) << "the tracking allocator sees the same step";
  EXPECT_EQ(OnCuda->SavedAtEndOfForward, OnHost->SavedAtEndOfForward);
  EXPECT_NEAR(OnCuda->Losses.back(), OnHost->Losses.back(), 1e-3);
  if (!Session)
    return;
  int64_t Tracked = OnCuda->Peak;
  ASSERT_FALSE(bool(Session->finish(*OnCuda)));
  std::printf("tracking allocator %lld B, CUPTI %lld B, cudaMemGetInfo %lld B, %zu kernels\n",
              static_cast<long long>(Tracked), static_cast<long long>(OnCuda->Peak),
              static_cast<long long>(OnCuda->DeviceUsedPeak.value_or(0)),
              OnCuda->Kernels.size());
  EXPECT_EQ(OnCuda->Source, "cupti");
  // cudaMalloc records carry the requested sizes: the replay is the same step.
  EXPECT_NEAR(static_cast<double>(OnCuda->Peak), static_cast<double>(Tracked), 0.01 * Tracked);
  EXPECT_FALSE(OnCuda->Kernels.empty());
  EXPECT_GT(OnCuda->DeviceUsedPeak.value_or(0), Tracked);
}

} // namespace
