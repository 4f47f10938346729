//===- FixtureValidationTest.cpp - simulator and executor agree on the gt models -===//
//
// The host validation of issue 7: every transformer of ../shared/fixtures/gt (GPT-2,
// LLaMA, BERT, tiny tier, batch 4 x 32 tokens), plain and with LoRA, GaLore, 8-bit AdamW
// and checkpointing, predicted by the simulator (the path `trainmem analyze` takes) and
// run by the executor; the test prints both peaks per case and fails past 2%. The two are
// independent implementations of the same semantics, so a disagreement means one of them
// is wrong. The measured PyTorch steps decide which: the second test runs the executor on
// the gt cases it can run and compares with PyTorch's measured peaks.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/Executor.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "planner/StepPrediction.h"
#include "planner/StrategyApply.h"
#include "support/Fixtures.h"
#include "support/GtCase.h"

#include "llvm/Support/FileSystem.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace trainmem;
using namespace trainmem::testing;

namespace {

// The issue asks 2%; executor and simulator now agree within bytes (the batch-1 cases'
// optimizer peaks miss PyTorch's 268 B of scalar tensors, 0.01%), so the limit ratchets
// down to what they achieve.
constexpr double PeakTolerancePct = 0.02;

struct Variant {
  const char *Name;
  void (*Apply)(TrainingSetup &);
};

const Variant Variants[] = {
    {"plain", [](TrainingSetup &) {}},
    {"lora", [](TrainingSetup &S) {
       LoraSetup L;
       L.Rank = 8;
       L.Alpha = 16;
       S.Lora = L; // PEFT's targets: c_attn (GPT-2), q_proj,v_proj (LLaMA), query,value (BERT)
     }},
    {"galore", [](TrainingSetup &S) {
       GaloreSetup Gl;
       Gl.Rank = 8;
       Gl.Targets = {"h.", "layers.", "layer."}; // every 2-D weight inside the blocks
       S.Galore = Gl;
     }},
    {"adamw-8bit", [](TrainingSetup &S) { S.Optimizer = OptimizerKind::AdamW8bit; }},
    {"checkpoint", [](TrainingSetup &S) { S.Checkpoint = "blocks"; }},
};

ImportOptions tinyBatch() {
  ImportOptions I;
  I.Dims = {{"batch", 4}, {"sequence", 32}};
  return I;
}

TEST(FixtureValidation, ExecutorMeasuresWhatTheSimulatorPredicts) {
  TRAINMEM_REQUIRE_FIXTURES("gt/onnx");
  std::printf("%-24s %12s %12s %8s %12s %12s\n", "case", "predicted", "measured", "error",
              "saved pred", "saved meas");
  int Cases = 0;
  for (const char *Model : {"gpt2_tiny", "llama_tiny", "bert_tiny"}) {
    std::string Path = fixturesDir() + "/gt/onnx/" + Model + ".onnx";
    if (!llvm::sys::fs::exists(Path)) {
      ADD_FAILURE() << Path << " is missing from the fixtures";
      continue;
    }
    for (const Variant &V : Variants) {
      std::string Case = std::string(Model) + " " + V.Name;
      TrainingSetup Setup;
      Setup.Device = DeviceKind::Cpu;
      Setup.Autocast = AutocastPolicy::Cpu;
      Setup.Impl = OptimizerImpl::Fused;
      V.Apply(Setup);
      TrainingSetup ExecSetup = Setup;
      auto G = importModel(Path, tinyBatch());
      ASSERT_TRUE(bool(G)) << Case << ": " << llvm::toString(G.takeError());
      Graph Copy = *G;
      auto Predicted = predictStepReport(std::move(Copy), Setup);
      ASSERT_TRUE(bool(Predicted)) << Case << ": " << llvm::toString(Predicted.takeError());
      ASSERT_FALSE(bool(applyStrategies(*G, ExecSetup))) << Case;
      auto Census = takeCensus(*G, ExecSetup);
      ASSERT_TRUE(bool(Census)) << Case << ": " << llvm::toString(Census.takeError());
      auto Dev = kernels::makeHostDevice();
      auto Measured = probe::executeTrainingSteps(*G, ExecSetup, *Census, *Dev);
      ASSERT_TRUE(bool(Measured)) << Case << ": " << llvm::toString(Measured.takeError());
      int64_t P = Predicted->Peak.value_or(0), M = Measured->Peak;
      double Error = 100.0 * static_cast<double>(M - P) / static_cast<double>(P);
      std::printf("%-24s %12lld %12lld %+7.3f%% %12lld %12lld\n", Case.c_str(),
                  static_cast<long long>(P), static_cast<long long>(M), Error,
                  static_cast<long long>(Predicted->Bytes.Activations),
                  static_cast<long long>(Measured->SavedAtEndOfForward));
      EXPECT_LE(std::fabs(Error), PeakTolerancePct)
          << Case << ": predicted " << P << " B, measured " << M << " B";
      EXPECT_TRUE(std::isfinite(Measured->Losses.back())) << Case;
      ++Cases;
    }
  }
  EXPECT_EQ(Cases, 15);
}

TEST(FixtureValidation, ExecutorMeasuresWhatPyTorchMeasured) {
  TRAINMEM_REQUIRE_FIXTURES("gt/cases");
  // The fp32 transformer steps the executor runs (batch 4; batch 1, whose peak is the
  // for-loop Adam's sqrt and denom of the largest parameter; two micro-batches of 4;
  // dropout p=0.1 on the CPU, whose masks are fp32).
  std::printf("%-44s %12s %12s %8s\n", "gt case", "executor", "PyTorch", "error");
  int Cases = 0;
  for (const std::string &Path : gtCasePaths()) {
    llvm::StringRef Name = llvm::sys::path::stem(Path);
    if (!Name.contains("_tiny__") || Name.startswith("resnet") || Name.startswith("mobilenet") ||
        !(Name.endswith("__b4") || Name.endswith("__b1") || Name.contains("__accum2__")) ||
        !(Name.contains("__plain__") || Name.contains("__lora__") || Name.contains("__frozen__") ||
          Name.contains("__keepgrads__") || Name.contains("__checkpoint__") ||
          Name.contains("__accum2__") || Name.contains("__dropout__")) ||
        Name.contains("sgdm"))
      continue;
    std::string Why;
    std::optional<GtCase> C = readGtCase(Path, Why);
    ASSERT_TRUE(C.has_value()) << Path << ": " << Why;
    auto G = importModel(C->Onnx, C->Import);
    ASSERT_TRUE(bool(G)) << C->Id << ": " << llvm::toString(G.takeError());
    auto Census = takeCensus(*G, C->Setup);
    ASSERT_TRUE(bool(Census)) << C->Id << ": " << llvm::toString(Census.takeError());
    auto Dev = kernels::makeHostDevice();
    auto Measured = probe::executeTrainingSteps(*G, C->Setup, *Census, *Dev);
    ASSERT_TRUE(bool(Measured)) << C->Id << ": " << llvm::toString(Measured.takeError());
    double Error = 100.0 * static_cast<double>(Measured->Peak - C->Peak) /
                   static_cast<double>(C->Peak);
    std::printf("%-44s %12lld %12lld %+7.3f%%\n", C->Id.c_str(),
                static_cast<long long>(Measured->Peak), static_cast<long long>(C->Peak), Error);
    EXPECT_LE(std::fabs(Error), PeakTolerancePct) << C->Id;
    EXPECT_EQ(Measured->SavedAtEndOfForward, C->Saved) << C->Id;
    ++Cases;
  }
  EXPECT_GE(Cases, 23);
}

} // namespace

// foreach Adam as each PyTorch release runs it: 1.13 keeps the sqrt list and a second
// denominator list, 2.x divides and adds eps in place. At batch 1 GPT-2's step peaks in
// the optimizer, so the releases differ there by one list: every trainable byte.
TEST(FixtureValidation, ForeachAdamFollowsThePyTorchRelease) {
  TRAINMEM_REQUIRE_FIXTURES("gt/onnx");
  std::string Path = fixturesDir() + "/gt/onnx/gpt2_tiny.onnx";
  ImportOptions I;
  I.Dims = {{"batch", 1}, {"sequence", 32}};
  int64_t Peaks[2] = {0, 0}, Trainable = 0;
  for (TorchVersion V : {TorchVersion::V1_13, TorchVersion::V2}) {
    TrainingSetup Setup;
    Setup.Device = DeviceKind::Cpu;
    Setup.Autocast = AutocastPolicy::Cpu;
    Setup.Impl = OptimizerImpl::Foreach;
    Setup.Torch = V;
    auto G = importModel(Path, I);
    ASSERT_TRUE(bool(G)) << llvm::toString(G.takeError());
    Graph Copy = *G;
    auto Predicted = predictStepReport(std::move(Copy), Setup);
    ASSERT_TRUE(bool(Predicted)) << llvm::toString(Predicted.takeError());
    auto Census = takeCensus(*G, Setup);
    ASSERT_TRUE(bool(Census)) << llvm::toString(Census.takeError());
    Trainable = Census->TrainableBytes;
    auto Dev = kernels::makeHostDevice();
    auto Measured = probe::executeTrainingSteps(*G, Setup, *Census, *Dev);
    ASSERT_TRUE(bool(Measured)) << llvm::toString(Measured.takeError());
    EXPECT_EQ(Measured->Peak, Predicted->Peak.value_or(0)) << torchVersionName(V);
    Peaks[V == TorchVersion::V2] = Measured->Peak;
  }
  EXPECT_EQ(Peaks[0] - Peaks[1], Trainable);
}
