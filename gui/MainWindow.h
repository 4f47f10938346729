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

class QComboBox;
class QLabel;
class QSpinBox;
class QTableView;

namespace trainmem::gui {

class CategoryModel;
class DiagnosticModel;
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
  AnalysisRunner *runner() const { return Runner; }

signals:
  /// A report (or an error) arrived and is on screen.
  void analysisShown(bool Ok);

protected:
  void dragEnterEvent(QDragEnterEvent *E) override;
  void dropEvent(QDropEvent *E) override;

private:
  void buildMenus();
  QWidget *buildSetupPanel();
  void analyse();
  void showResult(const AnalysisResult &R);
  void rememberRecent(const QString &Path);
  void refreshRecentMenu();

  QString Path;
  bool Applying = false;
  std::shared_ptr<const MemoryReport> Report;
  AnalysisRunner *Runner;
  TimelineChart *Chart;
  CategoryModel *Categories;
  TopTensorModel *Tensors;
  LayerModel *Layers;
  DiagnosticModel *Diags;
  QLabel *Summary;
  QSpinBox *Batch, *Seq, *LoraRank;
  QComboBox *Precision, *Optimizer, *Impl, *Checkpoint, *Gpu;
  QMenu *Recent = nullptr;
};

} // namespace trainmem::gui

#endif
