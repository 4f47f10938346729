//===- MemoryReport.h - the one result every front end reads ----------*- C++ -*-===//
//
// A MemoryReport is computed once per analysis and rendered by every writer (text,
// JSON `trainmem.report/1`, later Markdown, HTML, JUnit), stored in SQLite and shown by
// the GUI. Every byte figure is an integer number of bytes.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_MEMORYREPORT_H
#define TRAINMEM_ANALYZER_MEMORYREPORT_H

#include "analyzer/Diagnostics.h"
#include "analyzer/Graph.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/TrainingSetup.h"

#include <optional>
#include <string>
#include <vector>

namespace trainmem {

inline constexpr const char *ReportSchema = "trainmem.report/1";

/// Bytes per category (DESIGN.md "The model of a training step").
struct CategoryBytes {
  int64_t Weights = 0;
  int64_t MasterWeights = 0;
  int64_t Gradients = 0;
  int64_t OptimizerStates = 0;
  int64_t Activations = 0;
  int64_t Temporaries = 0;
  int64_t Inputs = 0;
  /// Only in reports read from traces: torch's memory timeline has an autograd_detail
  /// category, and a Chrome trace or snapshot knows no categories at all (unknown).
  int64_t AutogradDetail = 0;
  int64_t Unknown = 0;

  int64_t total() const {
    return Weights + MasterWeights + Gradients + OptimizerStates + Activations + Temporaries +
           Inputs + AutogradDetail + Unknown;
  }
};

/// Each category under its report name (DESIGN.md: bytes.X, peak.by_category.X), in the
/// order the report lists them. Writers and readers go through this one table.
struct CategoryField {
  const char *Name;
  int64_t CategoryBytes::*Member;
};
inline constexpr CategoryField CategoryFields[] = {
    {"weights", &CategoryBytes::Weights},
    {"master_weights", &CategoryBytes::MasterWeights},
    {"gradients", &CategoryBytes::Gradients},
    {"optimizer_states", &CategoryBytes::OptimizerStates},
    {"activations", &CategoryBytes::Activations},
    {"temporaries", &CategoryBytes::Temporaries},
    {"inputs", &CategoryBytes::Inputs}};
/// The categories only reports read from traces carry (DESIGN.md: "reports read from
/// traces may add autograd_detail and unknown").
inline constexpr CategoryField TraceCategoryFields[] = {
    {"autograd_detail", &CategoryBytes::AutogradDetail}, {"unknown", &CategoryBytes::Unknown}};

/// A batch input with its bound shape.
struct InputSummary {
  std::string Name;
  DType Type = DType::Int64;
  std::vector<int64_t> Shape;
  int64_t Bytes = 0;
};

struct ModelInfo {
  std::string Name;
  std::string Source;
  std::string Format;
  std::string Producer;
  int64_t Opset = 0;
  int64_t Nodes = 0;
  int64_t Tensors = 0;
  std::vector<DimBinding> Dims;
  std::vector<InputSummary> Inputs;
  bool PaddedBatches = false; ///< Graph::PaddedBatches
};

/// Parameters, gradients and optimizer state of one module path.
struct LayerSummary {
  std::string Path;
  int64_t Parameters = 0;
  int64_t TrainableParameters = 0;
  int64_t WeightBytes = 0;
  int64_t GradientBytes = 0;
  int64_t OptimizerStateBytes = 0;
  /// Bytes saved for backward by this layer's ops at the end of the forward.
  int64_t SavedBytes = 0;
};

/// One tensor named in a report (largest parameters, tensors live at the peak).
struct TensorSummary {
  std::string Name;
  std::string Category;
  std::string Layer;
  std::string Op;
  DType Type = DType::Float32;
  std::vector<int64_t> Shape;
  int64_t Bytes = 0;
};

struct PeakDetail {
  std::string Phase;
  std::string Op;
  CategoryBytes ByCategory;
  std::vector<TensorSummary> TopTensors;
};

struct TimelinePoint {
  int64_t Index = 0;
  std::string Phase;
  std::string Op;
  /// The layer path of the op (not written to JSON; the GUI selects by it).
  std::string Layer;
  CategoryBytes Live;
  /// Measured timelines: the trace's clock (microseconds) and the reserved bytes.
  std::optional<double> TimeUs;
  std::optional<int64_t> Reserved;
};

/// What a report read from a trace adds: where its numbers come from.
struct MeasuredDeviceSummary {
  std::string Device;
  int64_t Events = 0;
  int64_t Peak = 0;
  std::optional<int64_t> PeakReserved;
  std::string PeakBasis;
};
/// The peak inside one named range of a trace (a profiler step, an annotated phase).
struct MeasuredRange {
  std::string Name;
  double StartUs = 0;
  double EndUs = 0;
  int64_t Peak = 0;
  double PeakTimeUs = 0;
};
struct MeasuredSummary {
  std::string Format; ///< traceFormatName
  std::string Device; ///< the device the report is about
  std::string PeakBasis;
  double PeakTimeUs = 0;
  std::string PeakRange;
  std::optional<int64_t> FragmentationAtPeak;
  int64_t LiveAtPeakCount = 0;
  bool HasCategories = false;
  std::vector<MeasuredDeviceSummary> Devices;
  std::vector<MeasuredRange> Ranges;
  std::vector<std::pair<std::string, int64_t>> PhasePeaks;
};

/// The target GPU of `--gpu` and whether the step fits on it.
struct GpuFit {
  std::string Name;
  std::string DisplayName;
  int64_t UsableBytes = 0;
  /// The figure compared with the GPU: peak_reserved on CUDA runs, else the peak.
  int64_t RequiredBytes = 0;
  std::string RequiredBasis; ///< "peak_reserved" or "peak"
  bool fits() const { return RequiredBytes <= UsableBytes; }
};

struct MemoryReport {
  ModelInfo Model;
  TrainingSetup Setup;
  int64_t TotalParameters = 0;
  int64_t TrainableParameters = 0;
  /// Per category: its largest live bytes over the step (activations: saved for
  /// backward at the end of forward).
  CategoryBytes Bytes;
  /// Largest total live bytes over the step; empty until a step is simulated.
  std::optional<int64_t> Peak;
  std::optional<int64_t> PeakReserved;
  std::optional<PeakDetail> PeakInfo;
  std::optional<GpuFit> Gpu;
  /// Set when the report was read from a trace of a real run rather than predicted.
  std::optional<MeasuredSummary> Measured;
  std::vector<TimelinePoint> Timeline;
  std::vector<LayerSummary> Layers;
  std::vector<TensorSummary> LargestParameters;
  std::vector<OptimizerStatePart> OptimizerStates;
  int64_t BufferBytes = 0;
  int TiedGroups = 0;
  /// Saved-for-backward bytes per layer path at the end of the forward.
  std::vector<std::pair<std::string, int64_t>> SavedByLayer;
  /// Sentences the text report prints after the numbers (e.g. what step 1 does).
  std::vector<std::string> Notes;
  Diagnostics Diags;

  /// Weights + master weights + gradients + optimizer states + inputs: memory a
  /// steady-state step holds before its forward allocates anything.
  int64_t persistentBytes() const {
    return Bytes.Weights + Bytes.MasterWeights + Bytes.Gradients + Bytes.OptimizerStates +
           Bytes.Inputs;
  }
};

/// The report of a census: parameters, gradients, optimizer states, inputs, layers.
MemoryReport buildCensusReport(const Graph &G, const TrainingSetup &Setup,
                               const ParameterCensus &Census);

} // namespace trainmem

#endif
