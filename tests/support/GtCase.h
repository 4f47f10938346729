//===- GtCase.h - the measured PyTorch training steps of ../shared/fixtures/gt -*- C++ -*-===//
//
// Reads one gt case into the import options and training setup that reproduce it, the
// way ../shared/tools/score-fixtures turns a case into command-line options, plus the
// measured figures the tests compare with. The cases were measured on CPU, so the
// setup says so (--device=cpu).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_GTCASE_H
#define TRAINMEM_TESTS_GTCASE_H

#include "analyzer/ModelImporter.h"
#include "analyzer/TrainingSetup.h"
#include "support/Fixtures.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace trainmem::testing {

struct GtCase {
  std::string Id;
  std::string Onnx;
  ImportOptions Import;
  TrainingSetup Setup;
  int64_t Weights = 0, Gradients = 0, States = 0, Trainable = 0;
  int64_t Peak = 0, Saved = 0;
};

/// Reads a gt case the way ../shared/tools/score-fixtures turns it into CLI options. Its
/// ONNX file is named relative to Root (the fixtures folder unless said).
inline std::optional<GtCase> readGtCase(const std::string &Path, std::string &Why,
                                        const std::string &Root = fixturesDir()) {
  auto Buffer = llvm::MemoryBuffer::getFile(Path);
  if (!Buffer) {
    Why = "cannot read";
    return std::nullopt;
  }
  auto Json = llvm::json::parse((*Buffer)->getBuffer());
  if (!Json) {
    Why = llvm::toString(Json.takeError());
    return std::nullopt;
  }
  const llvm::json::Object &O = *Json->getAsObject();
  GtCase C;
  C.Id = O.getString("case_id").value_or("").str();
  C.Onnx = Root + "/" + O.getObject("model")->getString("onnx_file").value_or("").str();
  const llvm::json::Object &Variant = *O.getObject("variant");
  int64_t Accum = 1;
  if (const llvm::json::Object *GA = Variant.getObject("grad_accumulation"))
    Accum = GA->getInteger("micro_batches").value_or(1);
  for (const auto &KV : *O.getObject("inputs")) {
    if (KV.first == "labels")
      continue;
    InputShape S{KV.first.str(), {}};
    for (const llvm::json::Value &D : *KV.second.getAsObject()->getArray("shape"))
      S.Dims.push_back(*D.getAsInteger());
    S.Dims[0] /= Accum;
    C.Import.Inputs.push_back(S);
  }
  C.Setup.GradAccum = Accum;
  const llvm::json::Object &Opt = *O.getObject("optimizer");
  std::string Name = Opt.getString("name").value_or("").str();
  if (Name == "AdamW")
    C.Setup.Optimizer = OptimizerKind::AdamW;
  else if (Name == "Adam")
    C.Setup.Optimizer = OptimizerKind::Adam;
  else if (Name == "SGD")
    C.Setup.Optimizer = Opt.getNumber("momentum").value_or(0) ? OptimizerKind::SgdMomentum
                                                              : OptimizerKind::Sgd;
  C.Setup.Impl = Opt.getBoolean("foreach").value_or(false) ? OptimizerImpl::Foreach
                                                            : OptimizerImpl::ForLoop;
  if (const llvm::json::Object *P = O.getObject("precision")) {
    std::string Prec = P->getString("name").value_or("fp32").str();
    std::replace(Prec.begin(), Prec.end(), '_', '-');
    auto Parsed = parsePrecision(Prec);
    if (!Parsed) {
      Why = llvm::toString(Parsed.takeError());
      return std::nullopt;
    }
    C.Setup.Prec = *Parsed;
  }
  std::string V = Variant.getString("name").value_or("").str();
  if (V == "frozen" || V == "lora") {
    C.Setup.TrainableFile = C.Id + ".trainable";
    for (const llvm::json::Value &N : *Variant.getArray("trainable_onnx_initializers"))
      C.Setup.TrainableNames.push_back(N.getAsString()->str());
  }
  C.Setup.KeepGrads = !Variant.getBoolean("zero_grad_set_to_none").value_or(true);
  if (V == "checkpoint")
    C.Setup.Checkpoint = "blocks";
  if (V == "dropout")
    C.Setup.Dropout = 0.1;
  // Measured with the CPU build of PyTorch: CPU kernels and CPU autocast lists.
  C.Setup.Device = DeviceKind::Cpu;
  C.Setup.Autocast = AutocastPolicy::Cpu;
  const llvm::json::Object &M = *O.getObject("measured");
  C.Weights = M.getInteger("param_bytes").value_or(0) + M.getInteger("buffer_bytes").value_or(0);
  C.Gradients = M.getInteger("grad_bytes").value_or(0);
  C.States = M.getInteger("optimizer_state_bytes").value_or(0);
  C.Trainable = M.getInteger("trainable_param_count").value_or(0);
  C.Saved = M.getInteger("saved_activation_bytes_at_end_of_forward").value_or(0);
  if (const llvm::json::Object *S2 = M.getObject("step2"))
    C.Peak = S2->getInteger("peak_bytes").value_or(0);
  return C;
}

/// Every case file under Root/gt/cases, sorted by name.
inline std::vector<std::string> gtCasePaths(const std::string &Root = fixturesDir()) {
  std::vector<std::string> Paths;
  std::error_code EC;
  for (llvm::sys::fs::directory_iterator It(Root + "/gt/cases", EC), End;
       It != End && !EC; It.increment(EC))
    if (llvm::sys::path::extension(It->path()) == ".json")
      Paths.push_back(It->path());
  std::sort(Paths.begin(), Paths.end());
  return Paths;
}

} // namespace trainmem::testing

#endif
