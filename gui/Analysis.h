//===- Analysis.h - what the GUI asks for, and running it off the UI thread -*- C++ -*-===//
//
// An AnalysisRequest is the model plus the setup panel's values; AnalysisRunner runs the
// same library path as `trainmem analyze` (import, planner/StepPrediction) on a worker
// thread and hands the MemoryReport back. Requests made while one runs coalesce: only the
// newest waiting one runs next, so dragging a slider never queues stale work.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_GUI_ANALYSIS_H
#define TRAINMEM_GUI_ANALYSIS_H

#include "analyzer/MemoryReport.h"
#include "analyzer/ModelImporter.h"
#include "analyzer/TrainingSetup.h"
#include "planner/PlanSearch.h"

#include <QFutureWatcher>
#include <QObject>
#include <QString>

#include <memory>
#include <optional>
#include <vector>

namespace trainmem::gui {

struct AnalysisRequest {
  QString Path;          ///< an .onnx file, a Hugging Face config.json, a trace or a report
  int64_t Batch = 1;     ///< HF configs: dim batch; ONNX: dim 0 of every batch input
  int64_t Seq = 128;     ///< HF configs: dim seq; ONNX: every symbolic dim not in Dims
  /// ONNX: values for named symbolic dims (the setup panel's per-dim fields).
  std::vector<DimBinding> Dims;
  /// HF configs: the batches are padded (--padded); ignored for other files.
  bool Padded = false;
  TrainingSetup Setup;
};

/// What came back: a report, or the error text `trainmem` would print, and how long the
/// analysis took.
struct AnalysisResult {
  std::optional<MemoryReport> Report;
  QString Error;
  double Milliseconds = 0;
};

/// Runs a request synchronously (the worker's body; tests call it directly). A trace or
/// a trainmem report JSON is read instead of simulated.
AnalysisResult runAnalysis(const AnalysisRequest &Request);

/// The planner's ranked plans for the request's target GPU (Setup.Gpu), with the request's
/// batch as the global batch: what `trainmem plan` lists.
struct PlanResult {
  std::vector<Plan> Plans;
  /// Candidates the model cannot take (LoRA on a model without linear layers), and why.
  std::vector<SkippedPlan> Skipped;
  QString Error;
  double Milliseconds = 0;
};
PlanResult runPlanSearch(const AnalysisRequest &Request);

/// Writes the config files that run Setup (a plan's) on Target into Dir, through the
/// planner's emitters, as `trainmem plan --emit` does. Empty on success, else the error.
QString exportConfigs(const AnalysisRequest &Request, const TrainingSetup &Setup,
                      const QString &Target, const QString &Dir);

class AnalysisRunner : public QObject {
  Q_OBJECT
public:
  explicit AnalysisRunner(QObject *Parent = nullptr);
  void request(const AnalysisRequest &R);
  bool busy() const { return Running; }

signals:
  void started();
  void finished(const trainmem::gui::AnalysisResult &Result);

private:
  void startNext();
  QFutureWatcher<AnalysisResult> Watcher;
  std::optional<AnalysisRequest> Pending;
  bool Running = false;
};

} // namespace trainmem::gui

Q_DECLARE_METATYPE(trainmem::gui::AnalysisResult)

#endif
