//===- StrategyApply.cpp - turn a setup's strategies into the graph to simulate ------===//
#include "planner/StrategyApply.h"
#include "planner/LoraTransform.h"

namespace trainmem {

llvm::Error applyStrategies(Graph &G, TrainingSetup &Setup) {
  if (!Setup.Lora)
    return llvm::Error::success();
  // LoRA is a transformation of the graph; the adapters are what trains (PEFT freezes
  // the base), plus whatever --train selects (modules_to_save).
  auto Adapted = applyLora(G, *Setup.Lora);
  if (!Adapted)
    return Adapted.takeError();
  G = std::move(*Adapted);
  if (!Setup.TrainableFile) {
    Setup.TrainableFile = std::string("(LoRA adapters)");
    for (TensorId T : G.AdapterParameters)
      Setup.TrainableNames.push_back(G.Tensors[T].Name);
  }
  if (Setup.Lora->QLora && Setup.Prec == Precision::Fp32) {
    // QLoRA computes in bf16 (bnb_4bit_compute_dtype) with fp32 adapters and norms
    // (peft's prepare_model_for_kbit_training): autocast is how that runs.
    Setup.Prec = Precision::AmpBf16;
    G.Diags.note("qlora-precision", "",
                 "--qlora computes in bf16: simulated as amp-bf16 (fp32 adapters, norms and "
                 "embeddings, NF4 base linears)");
  }
  return llvm::Error::success();
}

} // namespace trainmem
