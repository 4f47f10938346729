//===- StrategyApply.cpp - turn a setup's strategies into the graph to simulate ------===//
#include "planner/StrategyApply.h"
#include "planner/LoraTransform.h"
#include "planner/SparseUpdateSearch.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

namespace trainmem {

namespace {
/// --sparse-update=layers:/weights:/biases:REGEX becomes the names the census trains.
llvm::Error applySparseLayers(const Graph &G, TrainingSetup &Setup) {
  llvm::StringRef Spec(Setup.SparseUpdate);
  if (!isPlannerSparseUpdate(Spec) || Spec.startswith("budget:") ||
      (Setup.TrainableFile && llvm::StringRef(*Setup.TrainableFile).startswith("(sparse update")))
    return llvm::Error::success(); // a budget needs the simulation; resolved already
  auto Sel = selectSparseLayers(G, Setup);
  if (!Sel)
    return Sel.takeError();
  applySparseSelection(*Sel, Setup);
  return llvm::Error::success();
}
} // namespace

llvm::Expected<Graph> applyGraphStrategies(const Graph &G, const TrainingSetup &Setup) {
  if (!Setup.Lora)
    return G;
  // LoRA is a transformation of the graph; the adapters are what trains (PEFT freezes
  // the base), plus whatever --train selects (modules_to_save).
  auto Adapted = applyLora(G, *Setup.Lora);
  if (!Adapted)
    return Adapted.takeError();
  if (Setup.Lora->QLora && Setup.Prec == Precision::Fp32)
    Adapted->Diags.note("qlora-precision", "",
                        "--qlora computes in bf16: simulated as amp-bf16 (fp32 adapters, norms "
                        "and embeddings, NF4 base linears)");
  return Adapted;
}

std::string graphStrategyKey(const TrainingSetup &Setup) {
  if (!Setup.Lora)
    return "";
  llvm::json::Object S = setupToJson(Setup);
  return llvm::formatv("lora {0}{1}", llvm::json::Value(std::move(S["lora"])),
                       Setup.Lora->QLora && Setup.Prec == Precision::Fp32 ? " fp32" : "")
      .str();
}

llvm::Error applySetupStrategies(const Graph &G, TrainingSetup &Setup) {
  if (Setup.Lora) {
    if (!Setup.TrainableFile) {
      Setup.TrainableFile = std::string("(LoRA adapters)");
      for (TensorId T : G.AdapterParameters)
        Setup.TrainableNames.push_back(G.Tensors[T].Name);
      // modules_to_save train too (a classification head by PEFT's SEQ_CLS / TOKEN_CLS,
      // qa_outputs by QUESTION_ANS): their parameters, not the frozen originals beside them.
      const std::vector<std::string> Saved = modulesToSave(G, *Setup.Lora);
      for (const Tensor &T : G.Tensors)
        if (T.Kind == TensorKind::Parameter && inModulesToSave(T.Name, Saved)) {
          if (Setup.TrainableNames.size() == G.AdapterParameters.size())
            Setup.TrainableFile = "(LoRA adapters and modules_to_save " +
                                  llvm::join(Saved, ",") + ")";
          Setup.TrainableNames.push_back(T.Name);
        }
    }
    // QLoRA computes in bf16 (bnb_4bit_compute_dtype) with fp32 adapters and norms
    // (peft's prepare_model_for_kbit_training): autocast is how that runs.
    if (Setup.Lora->QLora && Setup.Prec == Precision::Fp32)
      Setup.Prec = Precision::AmpBf16;
  }
  return applySparseLayers(G, Setup);
}

llvm::Error applyStrategies(Graph &G, TrainingSetup &Setup) {
  if (Setup.Lora) {
    auto Adapted = applyGraphStrategies(G, Setup);
    if (!Adapted)
      return Adapted.takeError();
    G = std::move(*Adapted);
  }
  return applySetupStrategies(G, Setup);
}

} // namespace trainmem
