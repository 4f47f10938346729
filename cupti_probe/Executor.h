//===- Executor.h - run a model's real training step on the kernels ----*- C++ -*-===//
//
// The second implementation of trainmem's step semantics. The simulator (analyzer/)
// replays rules; the executor runs the step: the graph's ops on random weights with the
// reference kernels, a tape-based autograd in which each backward closure holds exactly
// the tensors its formula reads (as PyTorch's derivatives.yaml does), every buffer from
// the tracking allocator, and buffers freed when their last reference goes. Nothing of the
// simulator's event list or saved-bytes rules is used; only graph-level helpers (which
// nodes PyTorch runs as one fused op, which ops form a repeated block) are shared.
//
// One call runs Steps training steps (forward, cross-entropy loss, backward, optimizer
// step, zero_grad) and measures the last one: step 2 and on is the steady state, with the
// optimizer states already allocated. An op or option the executor cannot run is an error
// that names it; nothing is skipped.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CUPTI_PROBE_EXECUTOR_H
#define TRAINMEM_CUPTI_PROBE_EXECUTOR_H

#include "analyzer/Graph.h"
#include "analyzer/MemoryReport.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/TrainingSetup.h"
#include "kernels/Kernels.h"

#include "llvm/Support/Error.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace trainmem::probe {

struct ExecutorOptions {
  int Steps = 2;         ///< training steps to run; the last is measured
  uint64_t Seed = 2024;  ///< weights, batch and every random draw
  bool RecordTimeline = true;
  double LearningRate = 1e-3;
  /// GaLore refreshes its projector at every step, not every update gap: the measured step
  /// then holds the SVD that the prediction's peak includes (it runs every gap steps).
  bool GaloreRefreshEveryStep = false;
  /// Called after every forward and backward op (CUDA: cudaMemGetInfo samples).
  std::function<void()> AfterEachOp;
  /// Called right before the measured step starts (CUDA: the CUPTI window opens).
  std::function<void()> BeforeMeasuredStep;
};

/// Kernel time from CUPTI's activity records (CUDA runs).
struct KernelTime {
  std::string Name;
  int64_t Calls = 0;
  double TotalUs = 0;
};

/// What one measured step used.
struct MeasuredStep {
  std::string Source; ///< "host-allocator" or "cupti"
  std::string Device;
  int StepsRun = 0;
  int64_t Peak = 0;
  CategoryBytes AtPeak;        ///< by category at the peak
  CategoryBytes MaxByCategory; ///< each category's largest live bytes over the step
  /// Bytes saved for backward when the forward (loss included) ends.
  int64_t SavedAtEndOfForward = 0;
  std::string PeakPhase, PeakOp;
  std::vector<TensorSummary> TopTensors; ///< the largest allocations live at the peak
  std::vector<TimelinePoint> Timeline;
  /// ONNX literals materialised to run the graph (not part of any category).
  int64_t ConstantBytes = 0;
  int64_t Allocations = 0;
  std::vector<float> Losses; ///< per step
  std::vector<KernelTime> Kernels;
  /// CUDA: device memory in use at the peak of cudaMemGetInfo samples, context included.
  std::optional<int64_t> DeviceUsedPeak;
  std::vector<std::string> Notes;
};

class ExecutorImpl;

/// A model ready to train on a device: parameters, buffers and batch allocated.
class Executor {
public:
  ~Executor();
  Executor(Executor &&) noexcept;
  Executor &operator=(Executor &&) noexcept;

  /// Prepares G (after the setup's strategies were applied) for Setup on Dev. Errors: an
  /// option or op the executor cannot run, named.
  static llvm::Expected<Executor> create(const Graph &G, const TrainingSetup &Setup,
                                         const ParameterCensus &Census, kernels::Device &Dev,
                                         const ExecutorOptions &Options = {});

  /// One training step. Without the optimizer the gradients stay for readGradient().
  llvm::Expected<float> step(bool RunOptimizer = true);
  /// The loss of a forward pass alone (no tape), for finite differences.
  llvm::Expected<float> lossOnly();

  /// Census parameter I's values and gradient (empty when it has none), read to the host.
  std::vector<float> readParameter(size_t I);
  void writeParameter(size_t I, const std::vector<float> &Values);
  std::vector<float> readGradient(size_t I);

  /// Runs Options.Steps steps and measures the last.
  llvm::Expected<MeasuredStep> measure();

private:
  explicit Executor(std::unique_ptr<ExecutorImpl> Impl);
  std::unique_ptr<ExecutorImpl> Impl;
};

/// Convenience: create + measure.
llvm::Expected<MeasuredStep> executeTrainingSteps(const Graph &G, const TrainingSetup &Setup,
                                                  const ParameterCensus &Census,
                                                  kernels::Device &Dev,
                                                  const ExecutorOptions &Options = {});

} // namespace trainmem::probe

#endif
