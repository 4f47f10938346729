//===- StepSimulator.h - replay one steady-state training step --------*- C++ -*-===//
//
// Replays one training step of a graph under a setup, as eager PyTorch runs it: the
// forward allocates outputs and keeps what backward needs, the loss, the backward in
// reverse order with gradients accumulated and saved tensors released, the optimizer
// step with its implementation's scratch, zero_grad. Every allocation and free is an
// event on a live-bytes timeline split by category; the peak is the largest total.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_STEPSIMULATOR_H
#define TRAINMEM_ANALYZER_STEPSIMULATOR_H

#include "analyzer/Graph.h"
#include "analyzer/MemoryReport.h"
#include "analyzer/OpMemoryRules.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/Error.h"

#include <memory>

namespace trainmem {

struct StepSimulation {
  /// Largest live bytes of each category over the step.
  CategoryBytes MaxByCategory;
  /// Bytes saved for backward when the (last micro-batch's) forward ends, loss included.
  int64_t SavedAtEndOfForward = 0;
  int64_t Peak = 0;
  /// What nvidia-smi would show at the peak: the caching allocator's reserved bytes
  /// (replayed over the step's events, cuBLAS workspaces included) plus the CUDA context.
  /// Only for CUDA runs.
  std::optional<int64_t> PeakReserved;
  std::string ReservedNote;
  PeakDetail PeakInfo;
  std::vector<TimelinePoint> Timeline;
  /// Saved-for-backward bytes per layer path at the end of the forward (with details).
  std::vector<std::pair<std::string, int64_t>> SavedByLayer;
  /// Micro-batches replayed (gradient accumulation). Without details the replay stops
  /// once one micro-batch has left the state it found: each later one would repeat it
  /// event for event, so the figures are already final. 0 for zeroth-order runs.
  int64_t MicroBatchesSimulated = 0;
  /// What the first step does differently (states created lazily), for the text report.
  std::string FirstStepNote;
  /// Set when a replay asked to stop above a requirement (StepStop::Above) did: the step
  /// needs more than that, and the figures are what it had reached then, lower bounds of
  /// the whole step's.
  std::optional<int64_t> StoppedAbove;
  /// A replay asked to stop after the forward (StepStop::AfterForward) did: only
  /// SavedAtEndOfForward is the whole step's; the other figures are lower bounds.
  bool StoppedAfterForward = false;
  bool stopped() const { return StoppedAbove || StoppedAfterForward; }
  Diagnostics Diags;
};

/// What a simulation derives from the graph alone, whatever the setup: the ops PyTorch
/// runs, which IR nodes they run, the tensors each module's return releases, the repeated
/// blocks' spans. A search that simulates one graph under many setups (the planner's
/// checkpointing and update-set probes) builds it once and shares it.
struct StepStructure {
  bool FuseAttention = false;
  std::vector<SimOp> Ops;
  /// Per op: its inputs without repeats (x * x reads x once), ascending.
  std::vector<std::vector<TensorId>> DistinctInputs;
  std::vector<bool> NodeInOp;
  /// Per op: the tensors whose module returns after it (they stay alive until then).
  std::vector<std::vector<TensorId>> ModuleInputHolds;
  /// Per op: off the loss's gradient path (opsOffLossPath in OpMemoryRules.h): it keeps
  /// nothing for the backward.
  std::vector<bool> OffLossPath;
  std::vector<BlockSpan> Spans;
  /// Per tensor, in a byte, what the replay asks of it at every op it meets: whether it
  /// is transient (neither stored nor a batch input), a graph output, stored. The Tensor
  /// records are 224 bytes apart, and reading a flag from one per input was a cache miss.
  enum TensorBit : uint8_t { Transient = 1, GraphOutput = 2, Stored = 4 };
  std::vector<uint8_t> TensorBits;
  /// Per op: a pointwise op, whose output TensorIterator lays out like its input (looked
  /// up once here rather than by name at every op of every step).
  std::vector<bool> Pointwise;
  /// The key/value states a training forward copies into the model's cache
  /// (Tensor::KvCache), each with the first op that reads it, in op order.
  std::vector<std::pair<size_t, TensorId>> KvCacheUses;
};

/// What a search needs of a step when it does not need all of it: a replay may stop
/// once it knows. The default replays the whole step.
struct StepStop {
  /// Only whether the step fits in this many bytes: the replay stops at the first op
  /// after which the step's requirement (the peak reserved plus the CUDA context on CUDA,
  /// the peak elsewhere: running maxima, so the whole step's cannot be lower) exceeds it
  /// (StepSimulation::StoppedAbove). A step that stays within it is replayed whole, its
  /// result the same as without.
  std::optional<int64_t> Above;
  /// Only the bytes saved for backward: the replay ends with the forward's loss
  /// (StepSimulation::StoppedAfterForward). Without gradient accumulation only; with it
  /// the whole step is replayed (the last micro-batch's forward is the one reported).
  bool AfterForward = false;
  bool any() const { return Above || AfterForward; }
};

/// Whether the setup runs the graph's attention as one fused op (SDPA).
bool fusesAttention(const Graph &G, const TrainingSetup &Setup);
std::shared_ptr<const StepStructure> buildStepStructure(const Graph &G, bool FuseAttention);

/// Details: the timeline and the tensors live at the peak; searches that only compare
/// figures (the planner) leave them out. Structure: built from G with
/// fusesAttention(G, Setup) (buildStepStructure), or null to build it here.
/// Stop: where a search that needs less than the whole step lets the replay end.
llvm::Expected<StepSimulation>
simulateStep(const Graph &G, const TrainingSetup &Setup, const ParameterCensus &Census,
             bool Details = true, std::shared_ptr<const StepStructure> Structure = nullptr,
             StepStop Stop = {});

/// The report with the simulation's figures: activations, temporaries, peak, peak
/// detail, timeline and saved bytes per layer, on top of the census. Takes the
/// simulation's timeline and peak detail over: pass an rvalue to move them, not copy.
MemoryReport buildStepReport(const Graph &G, const TrainingSetup &Setup,
                             const ParameterCensus &Census, StepSimulation Sim);

/// The timeline point of GaLore's projector refresh: an SVD of each target's gradient,
/// which a run does every update gap. The report's peak includes it.
inline constexpr const char *GaloreRefreshPoint = "GaLore projector SVD (every update gap)";
/// The largest total of Timeline leaving out GaloreRefreshPoint: the peak of a GaLore step
/// between refreshes (the report's peak for any other setup).
int64_t peakBetweenGaloreRefreshes(const std::vector<TimelinePoint> &Timeline);

/// For programs (the CLI, the benchmarks) that simulate many steps in one process, as a
/// plan search does: the C library keeps freed memory for reuse instead of returning
/// each large buffer to the kernel and faulting it in again for the next simulation.
/// Process-wide, so the programs' main() calls it; libraries never do. No effect where the
/// C library is not glibc.
///
/// With HugePageReserve > 0 (the CLI: one short run per process), the heap also keeps
/// that many bytes free (growing once if it must), asking the kernel for transparent huge pages on them
/// (madvise(MADV_HUGEPAGE), as glibc's own glibc.malloc.hugetlb=1 does): a run then
/// faults its memory in 2 MiB at a time instead of 4 KiB. Virtual until touched; where
/// the kernel offers no huge pages, or the heap cannot grow in place (sanitizers'
/// allocators), the heap stays as it was. Returns the bytes so marked (0 if none).
size_t keepFreedMemoryForReuse(size_t HugePageReserve = 0);

/// The CLI's reserve: covers a LLaMA-70B-shaped ONNX analysis (~30 MB peak RSS).
inline constexpr size_t CliHugePageReserve = 48 << 20;

} // namespace trainmem

#endif
