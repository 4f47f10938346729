//===- TimelineChart.h - the step's memory over time, stacked by category -*- C++ -*-===//
//
// Live bytes after each op of the report's timeline, one stacked area per category,
// forward / backward / optimizer shaded, the peak marked, and the target GPU's usable
// memory as a line. Hovering names the op and its live bytes.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_GUI_TIMELINECHART_H
#define TRAINMEM_GUI_TIMELINECHART_H

#include "analyzer/MemoryReport.h"

#include <QtCharts/QChartView>

#include <memory>

namespace trainmem::gui {

class TimelineChart : public QChartView {
  Q_OBJECT
public:
  explicit TimelineChart(QWidget *Parent = nullptr);
  void setReport(std::shared_ptr<const MemoryReport> R);
  /// A measured run (a report read from a trace) drawn over the prediction, its phases
  /// aligned with the predicted ones as `trainmem compare` aligns them; null removes it.
  void setMeasured(std::shared_ptr<const MemoryReport> M);
  /// Points of the measured line currently drawn (0 without one); for tests.
  int measuredPoints() const { return MeasuredPoints; }
  /// Series drawn for the current report (areas, shading, peak, GPU line); for tests.
  int seriesCount() const;
  /// The largest stacked value drawn (the peak), in bytes.
  double drawnMaximum() const { return DrawnMax; }

signals:
  /// The timeline point under a click (its index in MemoryReport::Timeline).
  void pointClicked(int Index);

private:
  void showPoint(double X);
  void drawMeasured();
  std::shared_ptr<const MemoryReport> Report, Measured;
  int MeasuredPoints = 0;
  double DrawnMax = 0;
};

} // namespace trainmem::gui

#endif
