//===- TimelineChart.cpp - the step's memory over time, stacked by category ===//
#include "gui/TimelineChart.h"

#include "analyzer/TraceCompare.h"
#include "analyzer/Units.h"

#include <QToolTip>
#include <QtCharts/QAreaSeries>
#include <QtCharts/QLineSeries>
#include <QtCharts/QScatterSeries>
#include <QtCharts/QValueAxis>

#include <algorithm>
#include <cmath>

namespace trainmem::gui {

namespace {

// The category colours of the HTML report (ReportDocuments.cpp), so both read alike.
const char *colourOf(llvm::StringRef Name) {
  if (Name == "weights") return "#4e79a7";
  if (Name == "master_weights") return "#76b7b2";
  if (Name == "gradients") return "#f28e2b";
  if (Name == "optimizer_states") return "#e15759";
  if (Name == "activations") return "#59a14f";
  if (Name == "temporaries") return "#edc948";
  if (Name == "inputs") return "#b07aa1";
  if (Name == "autograd_detail") return "#9c755f";
  return "#bab0ac";
}

} // namespace

TimelineChart::TimelineChart(QWidget *Parent) : QChartView(new QChart(), Parent) {
  setRenderHint(QPainter::Antialiasing);
  chart()->legend()->setAlignment(Qt::AlignBottom);
  chart()->setTitle("Memory over one training step");
  setMouseTracking(true);
}

int TimelineChart::seriesCount() const { return static_cast<int>(chart()->series().size()); }

void TimelineChart::setReport(std::shared_ptr<const MemoryReport> R) {
  Report = std::move(R);
  QChart *C = chart();
  C->removeAllSeries();
  for (QAbstractAxis *A : C->axes()) {
    C->removeAxis(A); // gives the axis back to us
    delete A;
  }
  DrawnMax = 0;
  if (!Report || Report->Timeline.empty())
    return;
  const std::vector<TimelinePoint> &T = Report->Timeline;
  std::vector<const CategoryField *> Fields;
  for (const CategoryField &F : CategoryFields)
    Fields.push_back(&F);
  if (Report->Measured)
    for (const CategoryField &F : TraceCategoryFields)
      Fields.push_back(&F);
  auto *X = new QValueAxis();
  X->setTitleText("op (timeline index)");
  X->setLabelFormat("%d");
  X->setRange(0, std::max<double>(1, static_cast<double>(T.size() - 1)));
  auto *Y = new QValueAxis();
  Y->setTitleText("MiB live");
  C->addAxis(X, Qt::AlignBottom);
  C->addAxis(Y, Qt::AlignLeft);
  constexpr double MiB = 1024.0 * 1024.0;
  for (const TimelinePoint &P : T)
    DrawnMax = std::max(DrawnMax, static_cast<double>(P.Live.total()));
  double Top = DrawnMax / MiB;
  if (Report->Gpu)
    Top = std::max(Top, static_cast<double>(Report->Gpu->UsableBytes) / MiB);
  Y->setRange(0, Top * 1.08 + 1e-9);

  // Phase shading first, under the areas.
  size_t Start = 0;
  for (size_t I = 1; I <= T.size(); ++I) {
    if (I < T.size() && T[I].Phase == T[Start].Phase)
      continue;
    const std::string &Phase = T[Start].Phase;
    if (Phase == "backward" || Phase == "optimizer") {
      auto *Lo = new QLineSeries(), *Hi = new QLineSeries();
      Lo->append(double(Start), 0);
      Lo->append(double(I - 1), 0);
      Hi->append(double(Start), Top * 1.08);
      Hi->append(double(I - 1), Top * 1.08);
      auto *Shade = new QAreaSeries(Hi, Lo);
      Hi->setParent(Shade); // an area series does not own its boundary lines
      Lo->setParent(Shade);
      Shade->setName(QString::fromStdString(Phase));
      Shade->setColor(Phase == "backward" ? QColor(0, 0, 0, 18) : QColor(0, 0, 120, 18));
      Shade->setBorderColor(Qt::transparent);
      C->addSeries(Shade);
      Shade->attachAxis(X);
      Shade->attachAxis(Y);
    }
    Start = I;
  }
  // One stacked area per category with any bytes.
  std::vector<double> Below(T.size(), 0.0);
  for (const CategoryField *F : Fields) {
    bool Any = std::any_of(T.begin(), T.end(),
                           [&](const TimelinePoint &P) { return P.Live.*F->Member != 0; });
    if (!Any)
      continue;
    auto *Lo = new QLineSeries(), *Hi = new QLineSeries();
    for (size_t I = 0; I < T.size(); ++I) {
      double Now = Below[I] + static_cast<double>(T[I].Live.*F->Member) / MiB;
      Lo->append(double(I), Below[I]);
      Hi->append(double(I), Now);
      Below[I] = Now;
    }
    auto *Area = new QAreaSeries(Hi, Lo);
    Hi->setParent(Area);
    Lo->setParent(Area);
    Area->setName(F->Name);
    Area->setColor(QColor(colourOf(F->Name)));
    Area->setBorderColor(QColor(colourOf(F->Name)).darker(120));
    C->addSeries(Area);
    Area->attachAxis(X);
    Area->attachAxis(Y);
    connect(Area, &QAreaSeries::hovered, this, [this](const QPointF &At, bool State) {
      if (State)
        showPoint(At.x());
    });
    connect(Area, &QAreaSeries::clicked, this,
            [this](const QPointF &At) { emit pointClicked(int(std::lround(At.x()))); });
  }
  // The peak, and the GPU's usable memory.
  auto PeakAt = std::max_element(T.begin(), T.end(), [](const TimelinePoint &A,
                                                        const TimelinePoint &B) {
    return A.Live.total() < B.Live.total();
  });
  auto *Peak = new QScatterSeries();
  Peak->setName("peak " + QString::fromStdString(formatBytes(PeakAt->Live.total())));
  Peak->append(double(PeakAt - T.begin()), static_cast<double>(PeakAt->Live.total()) / MiB);
  Peak->setColor(Qt::black);
  Peak->setMarkerSize(9);
  C->addSeries(Peak);
  Peak->attachAxis(X);
  Peak->attachAxis(Y);
  if (Report->Gpu) {
    auto *Gpu = new QLineSeries();
    double Usable = static_cast<double>(Report->Gpu->UsableBytes) / MiB;
    Gpu->append(0, Usable);
    Gpu->append(double(T.size() - 1), Usable);
    Gpu->setName(QString::fromStdString(Report->Gpu->DisplayName) + " usable");
    QPen Pen(Qt::red);
    Pen.setStyle(Qt::DashLine);
    Pen.setWidth(2);
    Gpu->setPen(Pen);
    C->addSeries(Gpu);
    Gpu->attachAxis(X);
    Gpu->attachAxis(Y);
  }
  drawMeasured();
}

void TimelineChart::setMeasured(std::shared_ptr<const MemoryReport> M) {
  Measured = std::move(M);
  setReport(Report); // redraws, with the measured line when there is one
}

void TimelineChart::drawMeasured() {
  MeasuredPoints = 0;
  if (!Measured || !Report || Report->Timeline.empty() || chart()->axes().size() < 2)
    return;
  Comparison C = compareReports(*Report, *Measured);
  // Phase k of the aligned axis spans the predicted ops of that phase.
  std::vector<std::pair<double, double>> Span;
  for (const std::string &Phase : C.AlignedPhases) {
    double First = -1, Last = -1;
    for (size_t I = 0; I < Report->Timeline.size(); ++I)
      if (Report->Timeline[I].Phase == Phase) {
        if (First < 0)
          First = double(I);
        Last = double(I);
      }
    Span.push_back({First, Last});
  }
  auto *Line = new QLineSeries();
  Line->setName("measured (" + QString::fromStdString(C.TraceFormat) + ")");
  for (const auto &[X, Y] : C.MeasuredLine.Points) {
    size_t K = std::min(Span.size() - 1, static_cast<size_t>(X));
    auto [First, Last] = Span[K];
    Line->append(First + (X - double(K)) * (Last - First), static_cast<double>(Y) / (1 << 20));
  }
  MeasuredPoints = static_cast<int>(Line->count());
  QPen Pen(Qt::black);
  Pen.setWidth(2);
  Line->setPen(Pen);
  chart()->addSeries(Line);
  for (QAbstractAxis *A : chart()->axes())
    Line->attachAxis(A);
}

void TimelineChart::showPoint(double X) {
  if (!Report || Report->Timeline.empty())
    return;
  long I = std::clamp<long>(std::lround(X), 0, long(Report->Timeline.size()) - 1);
  const TimelinePoint &P = Report->Timeline[static_cast<size_t>(I)];
  QToolTip::showText(QCursor::pos(),
                     QString("%1 · %2\n%3 live")
                         .arg(QString::fromStdString(P.Phase), QString::fromStdString(P.Op),
                              QString::fromStdString(formatBytes(P.Live.total()))),
                     this);
}

} // namespace trainmem::gui
