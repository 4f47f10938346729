//===- StepPrediction.cpp - a setup applied to a graph, simulated, reported -===//
#include "planner/StepPrediction.h"

#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "planner/CheckpointBudget.h"
#include "planner/CheckpointOptimal.h"
#include "planner/GpuCatalog.h"
#include "planner/SparseUpdateSearch.h"
#include "planner/StrategyApply.h"

#include "analyzer/Units.h"

#include "llvm/Support/FormatVariadic.h"

#include <optional>

namespace trainmem {

llvm::Expected<MemoryReport> predictStepReport(Graph G, TrainingSetup &Setup) {
  // The report says which release was modelled.
  if (Setup.Torch == TorchVersion::Auto)
    Setup.Torch = Setup.torchVersionFor(G.SourceFormat);
  // A 16-bit checkpoint: from_pretrained loads it as saved unless told otherwise
  // (transformers 5's default torch_dtype is "auto"), which trains in pure 16 bits.
  if (G.DeclaredWeightType && *G.DeclaredWeightType != DType::Float32 &&
      Setup.Prec != Precision::Bf16 && !(Setup.Lora && Setup.Lora->QLora))
    G.Diags.note("config-dtype", "torch_dtype",
                 std::string("the config stores the weights in ") +
                     std::string(dtypeName(*G.DeclaredWeightType)) +
                     ", and transformers 5's from_pretrained loads them so by default "
                     "(torch_dtype=\"auto\"): that trains in pure 16 bits (--precision=bf16 "
                     "for bfloat16) unless the script passes torch_dtype=torch.float32, as "
                     "this prediction (" +
                     precisionName(Setup.Prec) +
                     ", fp32 weights) and trainmem's emitted configs do");
  // And whether the forward filled a key/value cache.
  if (Setup.KvCache == KvCacheMode::Auto)
    Setup.KvCache = G.TrainingKvCache ? KvCacheMode::On : KvCacheMode::Off;
  if (llvm::Error E = applyStrategies(G, Setup))
    return E;
  // Resolve the GPU first: an unknown name is a usage error before any work is done, and
  // the canonical name selects the runtime overheads every simulation below includes.
  std::optional<GpuSpec> Gpu;
  if (!Setup.Gpu.empty()) {
    auto Catalog = GpuCatalog::loadConfigured();
    if (!Catalog)
      return Catalog.takeError();
    auto Spec = Catalog->lookup(Setup.Gpu);
    if (!Spec)
      return Spec.takeError();
    Gpu = *Spec;
    Setup.Gpu = Gpu->Name;
  }
  // The update set first: checkpointing is chosen for the parameters that train.
  if (llvm::StringRef(Setup.SparseUpdate).startswith("budget:")) {
    auto Sel = searchSparseUpdate(G, Setup);
    if (!Sel)
      return Sel.takeError();
    G.Diags.note("sparse-update-budget", Setup.SparseUpdate,
                 "the update set that meets the budget (" + formatBytes(Sel->Required) +
                     " simulated, " + std::to_string(Sel->Simulations) +
                     " simulations): " + Sel->summary() +
                     "; biases first, then weights, later layers first (TinyEngine, Lin et "
                     "al. 2022); no engine config selects it: the training script sets "
                     "requires_grad on exactly these parameters");
    applySparseSelection(*Sel, Setup);
  }
  auto Census = takeCensus(G, Setup);
  if (!Census)
    return Census.takeError();
  if (Setup.Galore) {
    // galore-torch keeps an fp32 gradient's projector as a view of the SVD's factor, which
    // stays whole; a 16-bit one is sliced and copied. Users expect the paper's r x n.
    int64_t Kept = 0, Sliced = 0;
    for (const CensusParameter &P : Census->Parameters)
      if (P.Trainable && isGaloreTarget(P, Setup)) {
        for (const OptimizerStatePart &Part : optimizerStateOf(P, Setup))
          if (Part.Name == "projector")
            Kept += Part.Bytes;
        int64_t K = std::min(P.Shape[0], P.Shape[1]);
        Sliced += dtypeBytes(DType::BFloat16, std::min(Setup.Galore->Rank, K) * K);
      }
    if (Kept > 2 * Sliced)
      G.Diags.note("galore-projector", "--galore-rank",
                   "galore-torch keeps each projector as a view of the fp32 SVD factor it "
                   "slices (U or Vh), so the whole factor stays: " + formatBytes(Kept) +
                       " of projectors here (measured on an H200: 1.73 GiB for "
                       "TinyLlama-1.1B at rank 8); with the weights in bf16 "
                       "(--precision=bf16) it copies the slice, " + formatBytes(Sliced));
  }
  if (llvm::StringRef(Setup.Checkpoint).startswith("budget:")) {
    auto Choice = chooseCheckpointForBudget(G, Setup, *Census);
    if (!Choice)
      return Choice.takeError();
    G.Diags.note("checkpoint-budget", Setup.Checkpoint,
                 "checkpointing the first " + std::to_string(Choice->Checkpointed) + " of " +
                     std::to_string(Choice->Blocks) + " blocks meets the budget (" +
                     Choice->Mode + "); partial checkpointing is expressed by Megatron-LM "
                     "(--recompute-granularity=full --recompute-method=block "
                     "--recompute-num-layers=K) or by wrapping those blocks in "
                     "torch.utils.checkpoint; HF Trainer checkpoints all blocks");
    Setup.Checkpoint = Choice->Mode;
  } else if (llvm::StringRef(Setup.Checkpoint).startswith("optimal:")) {
    auto Choice = chooseOptimalCheckpoint(G, Setup, *Census);
    if (!Choice)
      return Choice.takeError();
    std::string Engines = checkpointEngines(Choice->Mode);
    if (Choice->Mode == "none")
      G.Diags.note("checkpoint-optimal", Setup.Checkpoint,
                   "the step meets the budget without checkpointing (" +
                       formatBytes(Choice->Required) + " simulated)");
    else
      G.Diags.note("checkpoint-optimal", Setup.Checkpoint,
                 "--checkpoint=" + Choice->Mode + " recomputes the least (" +
                     formatFlops(Choice->RecomputeFlops) + " against the forward's " +
                     formatFlops(Choice->ForwardFlops) + ") of the " +
                     std::to_string(Choice->Blocks) +
                     " blocks' keep / selective / whole choices that meet the budget (" +
                     formatBytes(Choice->Required) + " simulated; " +
                     std::to_string(Choice->Solves) + " DP solutions verified, " +
                     std::to_string(Choice->Simulations) + " simulations)" +
                     (Engines.empty() ? std::string() : "; runs as " + Engines));
    Setup.Checkpoint = Choice->Mode;
  }
  auto Sim = simulateStep(G, Setup, *Census);
  if (!Sim)
    return Sim.takeError();
  // A decoder's key/value cache costs memory and nothing else in training: say what
  // switching it off would free, from a second simulation (figures only) without it.
  if (Setup.KvCache == KvCacheMode::On &&
      llvm::any_of(G.Tensors, [](const Tensor &T) { return T.KvCache; })) {
    TrainingSetup NoCache = Setup;
    NoCache.KvCache = KvCacheMode::Off;
    auto Without = simulateStep(G, NoCache, *Census, /*Details=*/false);
    if (!Without)
      return Without.takeError();
    const bool Reserved = Sim->PeakReserved && Without->PeakReserved;
    const int64_t With = Reserved ? *Sim->PeakReserved : Sim->Peak;
    const int64_t Less = Reserved ? *Without->PeakReserved : Without->Peak;
    if (With > 0 && Less < With && double(With - Less) >= 0.005 * double(With))
      G.Diags.note("kv-cache", "use_cache",
                   "the forward fills the model's key/value cache (the config's use_cache); "
                   "passing use_cache=False (--use-cache=off) lowers the " +
                       std::string(Reserved ? "peak_reserved" : "peak") + " by " +
                       formatBytes(With - Less) + " (" +
                       llvm::formatv("{0:f1}", 100.0 * double(With - Less) / double(With))
                           .str() +
                       "%) and changes nothing else in training");
  }
  MemoryReport Report = buildStepReport(G, Setup, *Census, std::move(*Sim));
  if (Gpu) {
    GpuFit Fit;
    Fit.Name = Gpu->Name;
    Fit.DisplayName = Gpu->DisplayName;
    Fit.UsableBytes = Gpu->UsableBytes;
    Fit.RequiredBasis = Report.PeakReserved ? "peak_reserved" : "peak";
    Fit.RequiredBytes = Report.PeakReserved ? *Report.PeakReserved : Report.Peak.value_or(0);
    Report.Gpu = Fit;
  }
  return Report;
}

llvm::Error notePaddingEffect(Graph Padded, MemoryReport &Report) {
  TrainingSetup Setup = Report.Setup; // resolved: the checkpoint mode, the update set
  if (llvm::Error E = applyStrategies(Padded, Setup))
    return E;
  auto Census = takeCensus(Padded, Setup);
  if (!Census)
    return Census.takeError();
  auto Sim = simulateStep(Padded, Setup, *Census, /*Details=*/false);
  if (!Sim)
    return Sim.takeError();
  const bool Reserved = Report.PeakReserved && Sim->PeakReserved;
  const int64_t Unpadded = Reserved ? *Report.PeakReserved : Report.Peak.value_or(0);
  const int64_t With = Reserved ? *Sim->PeakReserved : Sim->Peak;
  if (Unpadded <= 0 || With <= Unpadded || double(With - Unpadded) < 0.005 * double(Unpadded))
    return llvm::Error::success();
  Report.Diags.note(
      "padding", "--padded",
      "modelled for unpadded batches; batches padded to their longest sequence (an "
      "attention_mask with zeros) raise the " +
          std::string(Reserved ? "peak_reserved" : "peak") + " by " +
          formatBytes(With - Unpadded) + " (" +
          llvm::formatv("{0:f1}", 100.0 * double(With - Unpadded) / double(Unpadded)).str() +
          "%): transformers then builds a [batch, 1, seq, seq] attention mask, SDPA keeps a "
          "float bias made from it in every layer, and grouped key/value heads (where the "
          "model has them) are repeated; --padded models such batches (and, within about "
          "half a percent, rows that pack several documents when the forward runs without "
          "a cache, as with gradient checkpointing: the same mask)");
  return llvm::Error::success();
}

} // namespace trainmem
