//===- MainWindow.h - trainmem-gui's window ----------------------------*- C++ -*-===//
//
// The setup panel on the left (dims, precision, optimizer, checkpointing, LoRA, target
// GPU), the timeline and the tables on the right. Every change re-runs the analysis on a
// worker thread (AnalysisRunner); the window only shows results.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_GUI_MAINWINDOW_H
#define TRAINMEM_GUI_MAINWINDOW_H

#include "gui/Analysis.h"

#include <QMainWindow>

#include <memory>

class QCheckBox;
class QComboBox;
class QFormLayout;
class QGroupBox;
class QLabel;
class QLineEdit;
class QTabWidget;
class QSpinBox;
class QTableView;

namespace trainmem::gui {

class CategoryModel;
class DiagnosticModel;
class HistoryModel;
class PlanModel;
class LayerModel;
class TimelineChart;
class TopTensorModel;

class MainWindow : public QMainWindow {
  Q_OBJECT
public:
  explicit MainWindow(QWidget *Parent = nullptr);

  /// Opens a model, config, trace or report and analyses it.
  void openPath(const QString &Path);
  /// The setup panel's values (what the next analysis runs with).
  AnalysisRequest currentRequest() const;
  /// Sets the panel from a request without triggering one analysis per field.
  void applyRequest(const AnalysisRequest &R);
  std::shared_ptr<const MemoryReport> report() const { return Report; }
  TimelineChart *timeline() const { return Chart; }
  CategoryModel *categoryModel() const { return Categories; }
  TopTensorModel *topTensorModel() const { return Tensors; }
  LayerModel *layerModel() const { return Layers; }
  DiagnosticModel *diagnosticModel() const { return Diags; }
  PlanModel *planModel() const { return Plans; }
  HistoryModel *historyModel() const { return History; }
  /// Runs the planner for the target GPU off the UI thread (plansShown when done).
  void searchPlans();
  /// Applies the plan in row Row of the plan model to the setup and re-analyses.
  void applyPlan(int Row);
  /// Reads a trace off the UI thread and draws it over the prediction (measuredShown).
  void compareWithTrace(const QString &TracePath);
  /// Writes the configs of the plan in row Row for Target ("hf", "deepspeed",
  /// "accelerate-fsdp", "torchtune") into Dir; empty on success, else the error.
  QString exportPlan(int Row, const QString &Target, const QString &Dir);
  /// Shows the runs of a history database (`--db`); an error when it cannot be read.
  bool openHistory(const QString &Path, QString *Error = nullptr);
  AnalysisRunner *runner() const { return Runner; }

signals:
  /// A report (or an error) arrived and is on screen.
  void analysisShown(bool Ok);
  /// The planner's plans (or an error) are on screen.
  void plansShown(bool Ok);
  /// A trace to compare with was read (or failed to be).
  void measuredShown(bool Ok);

protected:
  void dragEnterEvent(QDragEnterEvent *E) override;
  void dropEvent(QDropEvent *E) override;

private:
  void buildMenus();
  QWidget *buildSetupPanel();
  void analyse();
  void showResult(const AnalysisResult &R);
  void refreshSummary();
  void rememberRecent(const QString &Path);
  void refreshRecentMenu();

  QString Path;
  bool Applying = false;
  std::shared_ptr<const MemoryReport> Report, Measured;
  AnalysisRunner *Runner;
  TimelineChart *Chart;
  CategoryModel *Categories;
  TopTensorModel *Tensors;
  LayerModel *Layers;
  DiagnosticModel *Diags;
  PlanModel *Plans;
  HistoryModel *History;
  QLabel *Summary, *PlanStatus;
  QTabWidget *Tabs;
  /// A plan's whole setup (GaLore, QLoRA, accumulation...) while it is applied; a change in
  /// the panel goes back to what the panel says.
  std::optional<TrainingSetup> AppliedSetup;
  QString AppliedName;
  QSpinBox *Batch, *Seq, *GradAccum, *LoraRank, *GaloreRank, *GaloreGap, *Gpus;
  QSpinBox *CudaContext; ///< MiB; 0 shows "estimate" (--cuda-context unset)
  QComboBox *Precision, *Optimizer, *Impl, *Loss, *Checkpoint, *Sparse, *Zero, *Offload, *Gpu;
  QLineEdit *LoraTargets;
  QTableView *TensorView = nullptr;
  QCheckBox *QLora, *GalorePerLayer, *Fsdp, *Padded;
  /// One field per symbolic dim of an ONNX model (batch dims excepted: the batch field).
  QGroupBox *DimsBox;
  QFormLayout *DimsForm;
  std::vector<std::pair<std::string, QSpinBox *>> DimSpins;
  void rebuildDims(const MemoryReport &R);
  QMenu *Recent = nullptr;
};

} // namespace trainmem::gui

#endif
