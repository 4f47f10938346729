//===- ReportText.cpp - the terminal report --------------------------------------===//
//
// What a person reads first: the model and setup in one line each, the breakdown table
// with binary units and shares, the largest parameters and layers, and every
// diagnostic. Figures the build does not compute yet say so instead of showing a zero.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ReportWriters.h"
#include "analyzer/Units.h"

#include "llvm/Support/Format.h"

#include <algorithm>

namespace trainmem {
namespace {

void row(llvm::raw_ostream &OS, llvm::StringRef Label, int64_t Bytes, int64_t Total,
         llvm::StringRef Note = "") {
  double Share = Total > 0 ? 100.0 * static_cast<double>(Bytes) / static_cast<double>(Total) : 0;
  OS << llvm::format("  %-22s %12s %6.1f%%  %17s", Label.str().c_str(),
                     formatBytes(Bytes).c_str(), Share, formatCount(Bytes).c_str());
  if (!Note.empty())
    OS << "  " << Note;
  OS << "\n";
}

std::string shapeText(const std::vector<int64_t> &Shape) {
  std::string S = "[";
  for (size_t I = 0; I < Shape.size(); ++I)
    S += (I ? "x" : "") + std::to_string(Shape[I]);
  return S + "]";
}

} // namespace

void writeReportText(const MemoryReport &R, llvm::raw_ostream &OS) {
  if (R.Measured)
    return writeMeasuredText(R, OS);
  OS << "trainmem report: " << R.Model.Name << " (" << R.Model.Format;
  if (R.Model.Opset)
    OS << ", opset " << R.Model.Opset;
  OS << ", " << R.Model.Nodes << " nodes)\n";
  OS << "  source: " << R.Model.Source << "\n";
  OS << "  setup:  " << precisionName(R.Setup.Prec) << ", " << optimizerName(R.Setup.Optimizer)
     << " (" << optimizerImplName(R.Setup.Impl) << "), device " << deviceName(R.Setup.Device);
  if (R.Setup.Checkpoint != "none")
    OS << ", checkpoint " << R.Setup.Checkpoint;
  if (R.Setup.Dropout)
    OS << ", dropout " << *R.Setup.Dropout;
  const ShardingSetup &Sh = R.Setup.Sharding;
  if (Sh.active()) {
    OS << ", " << (Sh.Fsdp ? (Sh.ZeroStage == 2 ? "FSDP SHARD_GRAD_OP" : "FSDP FULL_SHARD")
                           : Sh.ZeroStage ? "ZeRO-" + std::to_string(Sh.ZeroStage) : "DDP")
       << " over " << Sh.Gpus << " GPU" << (Sh.Gpus > 1 ? "s" : "");
    if (Sh.Offload != OffloadKind::None)
      OS << ", offload " << offloadName(Sh.Offload);
    OS << " (figures per GPU)";
  }
  if (R.Setup.Lora)
    OS << ", " << (R.Setup.Lora->QLora ? "QLoRA" : "LoRA") << " r=" << R.Setup.Lora->Rank;
  if (R.Setup.Galore)
    OS << ", GaLore r=" << R.Setup.Galore->Rank << (R.Setup.Galore->PerLayer ? " per layer" : "");
  if (!R.Setup.SparseUpdate.empty())
    OS << ", sparse update " << R.Setup.SparseUpdate;
  if (R.Setup.GradAccum > 1)
    OS << ", grad-accum " << R.Setup.GradAccum;
  if (R.Setup.KeepGrads)
    OS << ", keep-grads";
  OS << "\n";
  if (!R.Model.Inputs.empty()) {
    OS << "  inputs:";
    for (const InputSummary &I : R.Model.Inputs)
      OS << " " << I.Name << " " << dtypeName(I.Type) << shapeText(I.Shape);
    if (R.Model.PaddedBatches)
      OS << " (padded batches: the attention mask is built)";
    OS << "\n";
  }
  OS << "\nParameters: " << formatCount(R.TotalParameters) << " ("
     << formatParamCount(R.TotalParameters) << "), trainable "
     << formatCount(R.TrainableParameters);
  if (R.TotalParameters > 0)
    OS << llvm::format(" (%.2f%%)", 100.0 * static_cast<double>(R.TrainableParameters) /
                                        static_cast<double>(R.TotalParameters));
  if (R.TiedGroups)
    OS << ", " << R.TiedGroups << " tied group" << (R.TiedGroups > 1 ? "s" : "")
       << " counted once";
  OS << "\n\n";

  int64_t Persistent = R.persistentBytes();
  int64_t Total = R.Peak ? *R.Peak : Persistent;
  if (R.Peak) {
    OS << "Peak: " << formatBytes(*R.Peak) << " (" << formatCount(*R.Peak) << " B)";
    if (R.PeakInfo)
      OS << " in " << R.PeakInfo->Phase << " at " << R.PeakInfo->Op;
    OS << "\n";
    if (R.PeakReserved)
      OS << "  as the CUDA caching allocator reserves it, with context and workspaces: "
         << formatBytes(*R.PeakReserved) << "\n";
    if (R.Gpu) {
      int64_t Headroom = R.Gpu->UsableBytes - R.Gpu->RequiredBytes;
      OS << (R.Gpu->fits() ? "  FITS on " : "  DOES NOT FIT on ") << R.Gpu->DisplayName << " ("
         << formatBytes(R.Gpu->UsableBytes) << " usable): "
         << (R.Gpu->fits() ? formatBytes(Headroom) + " to spare"
                           : formatBytes(-Headroom) + " over")
         << " (" << R.Gpu->RequiredBasis << ")\n";
    }
    if (R.PeakInfo) {
      const CategoryBytes &C = R.PeakInfo->ByCategory;
      OS << "\n  live at the peak, by category:\n";
      auto PeakRow = [&](const char *Label, int64_t Bytes) {
        if (Bytes)
          row(OS, Label, Bytes, *R.Peak);
      };
      PeakRow("weights", C.Weights);
      PeakRow("master weights", C.MasterWeights);
      PeakRow("gradients", C.Gradients);
      PeakRow("optimizer states", C.OptimizerStates);
      PeakRow("activations (saved)", C.Activations);
      PeakRow("temporaries", C.Temporaries);
      PeakRow("inputs", C.Inputs);
      OS << "\n  largest tensors live at the peak:\n";
      size_t Shown = 0;
      for (const TensorSummary &T : R.PeakInfo->TopTensors) {
        if (++Shown > 5)
          break;
        OS << llvm::format("  %-44s %-9s %-16s %12s  %s%s%s\n", T.Name.c_str(),
                           std::string(dtypeName(T.Type)).c_str(), shapeText(T.Shape).c_str(),
                           formatBytes(T.Bytes).c_str(), T.Op.c_str(),
                           T.Layer.empty() ? "" : " in ", T.Layer.c_str());
      }
    }
    OS << "\nLargest over the step, per category:\n";
  }
  OS << "  category                       size   share              bytes\n";
  row(OS, "weights", R.Bytes.Weights, Total,
      R.BufferBytes ? ("incl. " + formatBytes(R.BufferBytes) + " of buffers") : "");
  if (R.Bytes.MasterWeights)
    row(OS, "master weights", R.Bytes.MasterWeights, Total, "fp32 copies");
  row(OS, "gradients", R.Bytes.Gradients, Total);
  std::string StateNote;
  for (const OptimizerStatePart &S : R.OptimizerStates)
    StateNote += (StateNote.empty() ? "" : ", ") + S.Name + " " + formatBytes(S.Bytes);
  row(OS, "optimizer states", R.Bytes.OptimizerStates, Total, StateNote);
  row(OS, "inputs", R.Bytes.Inputs, Total);
  if (R.Peak) {
    row(OS, "activations (saved)", R.Bytes.Activations, Total, "at the end of the forward");
    row(OS, "temporaries (max)", R.Bytes.Temporaries, Total);
  } else {
    OS << "  activations            not modelled\n";
    OS << "  temporaries            not modelled\n";
    OS << "\nPersistent state: " << formatBytes(Persistent) << " (" << formatCount(Persistent)
       << " B) = weights + master weights + gradients + optimizer states + inputs.\n";
  }
  for (const std::string &Note : R.Notes)
    OS << "\n" << Note << "\n";

  if (!R.LargestParameters.empty()) {
    OS << "\nLargest parameters:\n";
    for (const TensorSummary &T : R.LargestParameters)
      OS << llvm::format("  %-40s %-10s %-14s %12s  %s\n", T.Name.c_str(),
                         T.Category.c_str(), shapeText(T.Shape).c_str(),
                         formatBytes(T.Bytes).c_str(), T.Layer.c_str());
  }
  if (!R.Layers.empty()) {
    std::vector<const LayerSummary *> Sorted;
    for (const LayerSummary &L : R.Layers)
      Sorted.push_back(&L);
    std::stable_sort(Sorted.begin(), Sorted.end(), [](const LayerSummary *A, const LayerSummary *B) {
      return A->WeightBytes + A->GradientBytes + A->OptimizerStateBytes >
             B->WeightBytes + B->GradientBytes + B->OptimizerStateBytes;
    });
    OS << "\nLayers by weights + gradients + optimizer states (" << R.Layers.size()
       << " layers, top " << std::min<size_t>(10, Sorted.size()) << "):\n";
    for (size_t I = 0; I < Sorted.size() && I < 10; ++I) {
      const LayerSummary &L = *Sorted[I];
      OS << llvm::format("  %-40s %12s params %12s\n", L.Path.c_str(),
                         formatCount(L.Parameters).c_str(),
                         formatBytes(L.WeightBytes + L.GradientBytes + L.OptimizerStateBytes)
                             .c_str());
    }
  }
  if (R.Diags.size()) {
    OS << "\nDiagnostics:\n";
    for (const Diagnostic &D : R.Diags.all()) {
      OS << "  " << severityName(D.Level) << " [" << D.Code << "]";
      if (!D.Where.empty())
        OS << " " << D.Where;
      OS << ": " << D.Message << "\n";
    }
  }
}

} // namespace trainmem
