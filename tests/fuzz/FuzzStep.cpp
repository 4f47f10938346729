//===- FuzzStep.cpp - a whole step's prediction on arbitrary ONNX bytes ----------===//
//
// FuzzOnnx stops at the import; this target goes on with what imports: the strategies
// (LoRA on every linear, checkpointing, a sparse update, ZeRO-3, GaLore), the census, the
// step simulation with details, the report and its JSON. The first byte picks the setup,
// the rest is the ONNX file. It found a zero stride dividing inside ONNX's inference and
// a Conv with one input read past under selective checkpointing.
//
//===----------------------------------------------------------------------------===//
#include "FuzzSupport.h"
#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/ReportWriters.h"
#include "analyzer/StepSimulator.h"
#include "planner/StrategyApply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *Data, size_t Size) {
  if (Size < 1)
    return 0;
  const uint8_t Pick = Data[0];
  trainmem::ImportOptions Options;
  Options.DefaultDim = 2;
  auto G = trainmem::importOnnx(trainmem::fuzz::inputFile(Data + 1, Size - 1, "onnx"), Options);
  if (!G) {
    llvm::consumeError(G.takeError());
    return 0;
  }
  trainmem::TrainingSetup Setup;
  switch (Pick % 8) {
  case 0: Setup.Device = trainmem::DeviceKind::Cpu; break;
  case 1:
    Setup.Prec = trainmem::Precision::AmpBf16;
    Setup.Checkpoint = "blocks";
    break;
  case 2:
    Setup.Lora = trainmem::LoraSetup{};
    Setup.Lora->Rank = 4;
    Setup.Lora->Targets = {"all-linear"};
    Setup.Lora->QLora = Pick & 8;
    break;
  case 3: Setup.SparseUpdate = "last:1"; break;
  case 4:
    Setup.Optimizer = trainmem::OptimizerKind::AdamW8bit;
    Setup.GradAccum = 2;
    Setup.KeepGrads = true;
    break;
  case 5: Setup.Checkpoint = "blocks:0-0+selective:1-1"; break;
  case 6:
    Setup.Sharding.ZeroStage = 3;
    Setup.Sharding.Gpus = 2;
    Setup.Prec = trainmem::Precision::MixedBf16;
    break;
  case 7:
    Setup.Galore = trainmem::GaloreSetup{};
    Setup.Galore->Rank = 2;
    Setup.Galore->PerLayer = Pick & 8;
    Setup.Prec = trainmem::Precision::Bf16;
    break;
  }
  if (llvm::Error E = trainmem::applyStrategies(*G, Setup)) {
    llvm::consumeError(std::move(E));
    return 0;
  }
  auto Census = trainmem::takeCensus(*G, Setup);
  if (!Census) {
    llvm::consumeError(Census.takeError());
    return 0;
  }
  auto Sim = trainmem::simulateStep(*G, Setup, *Census);
  if (!Sim) {
    llvm::consumeError(Sim.takeError());
    return 0;
  }
  trainmem::MemoryReport R = trainmem::buildStepReport(*G, Setup, *Census, std::move(*Sim));
  llvm::raw_null_ostream Null;
  trainmem::writeReportJson(R, Null);
  return 0;
}
