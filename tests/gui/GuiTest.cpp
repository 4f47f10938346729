//===- GuiTest.cpp - trainmem-gui under QT_QPA_PLATFORM=offscreen ----------===//
//
// Every item model through QAbstractItemModelTester; each kind of input opens; a setup
// change re-runs the analysis and redraws the chart; the window renders to a non-blank
// image (what --screenshot writes).
//
//===----------------------------------------------------------------------------===//
#include "gui/MainWindow.h"
#include "gui/PlanHistoryModels.h"
#include "gui/ReportModels.h"
#include "gui/TimelineChart.h"

#include "llvm/Support/FileSystem.h"

#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QLineEdit>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableView>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <set>

using namespace trainmem;
using namespace trainmem::gui;

namespace {

QString source(const char *Relative) {
  return QString(TRAINMEM_SOURCE_DIR) + "/" + Relative;
}

AnalysisRequest request(const QString &Path) {
  AnalysisRequest R;
  R.Path = Path;
  R.Batch = 2;
  R.Seq = 64;
  R.Setup.Device = DeviceKind::Cpu;
  return R;
}

/// Sets R on the window, opens its file and waits for the analysis it runs.
bool openAndWait(MainWindow &W, QSignalSpy &Shown, const AnalysisRequest &R) {
  W.applyRequest(R);
  W.openPath(R.Path);
  return Shown.wait(30000);
}

/// The last spin box of the model-dims box (a group box's own fields; the setup's spin
/// boxes sit elsewhere): the one a model's own dim or its choices get.
QSpinBox *lastModelDimField(MainWindow &W) {
  QSpinBox *Last = nullptr;
  for (QSpinBox *S : W.findChildren<QSpinBox *>())
    if (S->parentWidget() && S->parentWidget()->inherits("QGroupBox"))
      Last = S;
  return Last;
}

} // namespace

class GuiTest : public QObject {
  Q_OBJECT
private slots:
  void initTestCase() {
    qRegisterMetaType<AnalysisResult>();
    QStandardPaths::setTestModeEnabled(true); // recent files go to a test location
  }

  void modelsPassTheModelTester() {
    AnalysisResult R = runAnalysis(request(source("samples/hf/tiny-llama/config.json")));
    QVERIFY2(R.Report, qPrintable(R.Error));
    auto Report = std::make_shared<const MemoryReport>(*R.Report);
    CategoryModel Categories;
    TopTensorModel Tensors;
    LayerModel Layers;
    DiagnosticModel Diags;
    for (ReportTableModel *M : std::initializer_list<ReportTableModel *>{&Categories, &Tensors,
                                                                         &Layers, &Diags}) {
      QAbstractItemModelTester Tester(M, QAbstractItemModelTester::FailureReportingMode::QtTest);
      M->setReport(Report);
      M->setReport(nullptr);
      M->setReport(Report);
    }
    QCOMPARE(Categories.rowCount(), 7);
    QCOMPARE(Tensors.rowCount(), int(Report->PeakInfo->TopTensors.size()));
    QCOMPARE(Layers.rowCount(), int(Report->Layers.size()));
    QCOMPARE(Diags.rowCount(), int(Report->Diags.size()));
    // Bytes come back raw for sorting, formatted for display; shares add up to the peak.
    double Shares = 0;
    int64_t Sum = 0;
    for (int Row = 0; Row < Categories.rowCount(); ++Row) {
      Sum += Categories.data(Categories.index(Row, 1), Qt::UserRole).toLongLong();
      Shares += Categories.data(Categories.index(Row, 2), Qt::UserRole).toDouble();
    }
    QCOMPARE(Sum, *Report->Peak);
    QVERIFY(std::abs(Shares - 100.0) < 1e-6);
    QCOMPARE(Tensors.data(Tensors.index(0, 1), Qt::UserRole).toLongLong(),
             Report->PeakInfo->TopTensors[0].Bytes);
  }

  void everyKindOfInputOpens() {
    struct Input {
      QString Path;
      const char *Format;
    };
    std::vector<Input> Inputs = {
        {source("samples/hf/tiny-llama/config.json"), "hf-config"},
        {source("tests/data/traces/kineto_small.json"), "chrome-trace"},
        {source("tests/data/traces/cuda_snapshot_two_devices.pickle"), "cuda-snapshot-pickle"},
        {source("tests/data/reports/tiny_llama_b2_s64.json"), "hf-config"},
    };
    QString Onnx = QString(TRAINMEM_FIXTURES_DIR) + "/gt/onnx/gpt2_tiny.onnx";
    if (llvm::sys::fs::exists(Onnx.toStdString()))
      Inputs.push_back({Onnx, "onnx"});
    for (const Input &In : Inputs) {
      AnalysisResult R = runAnalysis(request(In.Path));
      QVERIFY2(R.Report, qPrintable(In.Path + ": " + R.Error));
      QVERIFY2(R.Report->Peak && *R.Report->Peak > 0, qPrintable(In.Path));
      QCOMPARE(QString::fromStdString(R.Report->Model.Format), QString(In.Format));
    }
    AnalysisResult Bad = runAnalysis(request(source("README.md")));
    QVERIFY(!Bad.Report);
    QVERIFY2(Bad.Error.contains("README.md"), qPrintable(Bad.Error));
  }

  void typedCheckpointValuesResolveLikeTheCli() {
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    AnalysisRequest R = request(source("samples/hf/tiny-llama/config.json"));
    QVERIFY(openAndWait(W, Shown, R));
    auto Need = [&] { return W.report()->PeakReserved.value_or(*W.report()->Peak); };
    int64_t None = Need();
    QComboBox *Ckpt = nullptr;
    for (QComboBox *C : W.findChildren<QComboBox *>())
      if (C->toolTip().startsWith("none, blocks, selective"))
        Ckpt = C;
    QVERIFY(Ckpt && Ckpt->isEditable());
    // Typing a listed value also selects that item: both runs must settle before the
    // report is read.
    auto Type = [&](const QString &Text) {
      Ckpt->setEditText(Text);
      emit Ckpt->lineEdit()->editingFinished();
      if (!Shown.wait(30000))
        return false;
      while (Shown.wait(1000)) {
      }
      return true;
    };
    QVERIFY(Type("blocks"));
    int64_t All = Need();
    QVERIFY(All < None);
    // A budget between the two: the planner's optimal choice, resolved and stated.
    int64_t Budget = (None + All) / 2;
    QVERIFY(Type(QString("optimal:%1").arg(Budget)));
    QVERIFY2(!QString::fromStdString(W.report()->Setup.Checkpoint).startsWith("optimal:"),
             W.report()->Setup.Checkpoint.c_str());
    QVERIFY(Need() <= Budget);
    bool Stated = false;
    for (const Diagnostic &D : W.report()->Diags.all())
      Stated |= D.Code == "checkpoint-optimal";
    QVERIFY(Stated);
  }

  void aSetupChangeRedrawsTheChart() {
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    AnalysisRequest R = request(source("samples/hf/tiny-llama/config.json"));
    QVERIFY(openAndWait(W, Shown, R));
    QCOMPARE(Shown.takeFirst().at(0).toBool(), true);
    double Before = W.timeline()->drawnMaximum();
    QVERIFY(Before > 0);
    QVERIFY(W.timeline()->seriesCount() >= 4);
    W.findChildren<QSpinBox *>().front()->setValue(8); // batch 2 -> 8
    QVERIFY(Shown.wait(30000));
    QVERIFY2(W.timeline()->drawnMaximum() > Before, "a larger batch must raise the peak");
    QCOMPARE(double(*W.report()->Peak), W.timeline()->drawnMaximum());

    // Clicking an op on the chart selects the tensors its layer produced among those at
    // the peak.
    const MemoryReport &R2 = *W.report();
    std::string Layer;
    for (const TensorSummary &T : R2.PeakInfo->TopTensors)
      if (!T.Layer.empty() && Layer.empty())
        Layer = T.Layer;
    int At = -1;
    for (size_t I = 0; I < R2.Timeline.size() && At < 0; ++I)
      if (R2.Timeline[I].Layer == Layer)
        At = int(I);
    QVERIFY2(At >= 0, Layer.c_str());
    emit W.timeline()->pointClicked(At);
    QTableView *Tensors = nullptr;
    for (QTableView *V : W.findChildren<QTableView *>())
      if (V->model()->columnCount() == 5)
        Tensors = V;
    QVERIFY(Tensors);
    QVERIFY(!Tensors->selectionModel()->selectedRows().isEmpty());
  }

  void plansAreSearchedAndApplied() {
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    QSignalSpy Planned(&W, &MainWindow::plansShown);
    AnalysisRequest R = request(source("samples/hf/tiny-llama/config.json"));
    R.Setup.Gpu = "rtx-4090";
    QVERIFY(openAndWait(W, Shown, R));
    W.searchPlans();
    QVERIFY(Planned.wait(60000));
    QCOMPARE(Planned.takeFirst().at(0).toBool(), true);
    QAbstractItemModelTester Tester(W.planModel(),
                                    QAbstractItemModelTester::FailureReportingMode::QtTest);
    QVERIFY(W.planModel()->rowCount() > 0);
    const Plan *First = W.planModel()->plan(0);
    QVERIFY(First);
    int64_t Expected = First->Peak;
    W.applyPlan(0);
    QVERIFY(Shown.wait(30000));
    // The window shows the same step the planner evaluated.
    QCOMPARE(*W.report()->Peak, Expected);
    // Its configs are written by the planner's emitters.
    QTemporaryDir Out;
    QString Why = W.exportPlan(0, "hf", Out.path());
    QVERIFY2(Why.isEmpty(), qPrintable(Why));
    QVERIFY(QFileInfo::exists(Out.filePath("training_args.json")));
    QVERIFY(!W.exportPlan(0, "nonsense", Out.path()).isEmpty());
  }

  void strategiesInThePanelReachThePrediction() {
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    AnalysisRequest R = request(source("samples/hf/tiny-llama/config.json"));
    QVERIFY(openAndWait(W, Shown, R));
    QCOMPARE(W.report()->TrainableParameters, W.report()->TotalParameters);
    R.Setup.Lora = LoraSetup{};
    R.Setup.Lora->Rank = 4;
    R.Setup.Sharding.ZeroStage = 2;
    R.Setup.Sharding.Gpus = 2;
    W.applyRequest(R);
    QCOMPARE(W.currentRequest().Setup.Sharding.ZeroStage, 2);
    QCOMPARE(W.currentRequest().Setup.Lora->Rank, int64_t(4));
    W.findChildren<QSpinBox *>().front()->setValue(3); // any change runs the analysis
    QVERIFY(Shown.wait(30000));
    QVERIFY(W.report()->TrainableParameters < W.report()->TotalParameters);
  }

  // The panel's context size reaches peak_reserved, as --cuda-context does in the CLI:
  // the same step's figure moves by the difference from the 400 MiB estimate.
  void aMeasuredCudaContextReplacesTheEstimate() {
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    AnalysisRequest R = request(source("samples/hf/tiny-llama/config.json"));
    R.Setup.Gpu = "rtx-4090";
    QVERIFY(openAndWait(W, Shown, R));
    QVERIFY(W.report()->PeakReserved.has_value());
    const int64_t Estimated = *W.report()->PeakReserved;
    QVERIFY(!W.currentRequest().Setup.CudaContextBytes.has_value());
    R.Setup.CudaContextBytes = int64_t(1343) << 20;
    W.applyRequest(R);
    QCOMPARE(W.currentRequest().Setup.CudaContextBytes,
             std::optional<int64_t>(int64_t(1343) << 20));
    W.openPath(R.Path);
    QVERIFY(Shown.wait(30000));
    QVERIFY(W.report()->PeakReserved.has_value());
    QCOMPARE(*W.report()->PeakReserved - Estimated, int64_t(1343 - 400) << 20);
    R.Setup.CudaContextBytes.reset();
    W.applyRequest(R);
    QVERIFY(!W.currentRequest().Setup.CudaContextBytes.has_value());
  }

  void aTraceIsDrawnOverThePrediction() {
    QString Onnx = QString(TRAINMEM_FIXTURES_DIR) + "/gt/onnx/gpt2_tiny.onnx";
    QString Trace =
        QString(TRAINMEM_FIXTURES_DIR) + "/gt/traces/gpt2_tiny__plain__adamw__b4.trace.json.gz";
    if (!QFileInfo::exists(Onnx) || !QFileInfo::exists(Trace))
      QSKIP("../shared/fixtures is absent");
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    QSignalSpy Compared(&W, &MainWindow::measuredShown);
    AnalysisRequest R = request(Onnx);
    R.Batch = 4;
    R.Seq = 32;
    W.applyRequest(R);
    W.openPath(Onnx);
    QVERIFY(Shown.wait(30000));
    W.compareWithTrace(Trace);
    QVERIFY(Compared.wait(30000));
    QCOMPARE(Compared.takeFirst().at(0).toBool(), true);
    QVERIFY(W.timeline()->measuredPoints() > 10);
    W.compareWithTrace(source("tests/data/traces/nsys_no_memory.sqlite"));
    QVERIFY(Compared.wait(30000));
    QCOMPARE(Compared.takeFirst().at(0).toBool(), false);
  }

  void onnxDimsGetTheirOwnFields() {
    QString Onnx = QString(TRAINMEM_FIXTURES_DIR) + "/gt/onnx/gpt2_tiny.onnx";
    if (!QFileInfo::exists(Onnx))
      QSKIP("../shared/fixtures is absent");
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    AnalysisRequest R = request(Onnx);
    R.Batch = 4;
    R.Seq = 32;
    W.applyRequest(R);
    W.openPath(Onnx);
    QVERIFY(Shown.wait(30000));
    std::vector<DimBinding> Dims = W.currentRequest().Dims;
    QCOMPARE(Dims.size(), size_t(1));
    QCOMPARE(QString::fromStdString(Dims[0].Name), QString("sequence"));
    QCOMPARE(Dims[0].Value, int64_t(32));
    int64_t Before = *W.report()->Peak;
    QSpinBox *Sequence = lastModelDimField(W);
    QVERIFY(Sequence);
    Sequence->setValue(16);
    QVERIFY(Shown.wait(30000));
    QVERIFY(*W.report()->Peak < Before);
    QCOMPARE(W.report()->Model.Inputs[0].Shape, (std::vector<int64_t>{4, 16}));
  }

  void multipleChoiceGetsItsChoicesField() {
    // A ...ForMultipleChoice config analyses with 4 choices per row until told otherwise:
    // the field shows them, and a change re-analyses with [batch, choices, seq] inputs.
    QTemporaryDir Dir;
    QString Config = Dir.filePath("config.json");
    QVERIFY(QFile::copy(source("tests/data/measured-hf/configs/bert-mc.json"), Config));
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    AnalysisRequest R = request(Config);
    R.Batch = 2;
    R.Seq = 32;
    W.applyRequest(R);
    W.openPath(Config);
    QVERIFY(Shown.wait(30000));
    QSpinBox *Choices = lastModelDimField(W);
    QVERIFY(Choices);
    QCOMPARE(Choices->value(), 4);
    QCOMPARE(W.report()->Model.Inputs[0].Shape, (std::vector<int64_t>{2, 4, 32}));
    const int64_t Before = *W.report()->Peak;
    Choices->setValue(2);
    QVERIFY(Shown.wait(30000));
    QCOMPARE(W.report()->Model.Inputs[0].Shape, (std::vector<int64_t>{2, 2, 32}));
    QVERIFY(*W.report()->Peak < Before);
  }

  void historyOpens() {
    QTemporaryDir Dir;
    QString Db = Dir.filePath("history.db");
    {
      auto Store = RunStore::open(Db.toStdString());
      QVERIFY(bool(Store));
      for (int I = 0; I < 3; ++I) {
        RunRecord Run;
        Run.Command = "analyze";
        Run.Model = "tiny-llama";
        Run.Commit = "abcdef1234567890";
        Run.Branch = "main";
        Run.SetupJson = "{}";
        Run.ReportJson = "{}";
        Run.Peak = 1000 + I;
        auto Id = (*Store)->record(Run);
        QVERIFY(bool(Id));
      }
    }
    MainWindow W;
    QString Why;
    QVERIFY2(W.openHistory(Db, &Why), qPrintable(Why));
    QAbstractItemModelTester Tester(W.historyModel(),
                                    QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(W.historyModel()->rowCount(), 3);
    QVERIFY(!W.openHistory(Dir.filePath("missing.db"), &Why));
    QVERIFY(Why.contains("no such file"));
    QVERIFY(!QFileInfo::exists(Dir.filePath("missing.db")));
  }

  void theWindowRendersNotBlank() {
    MainWindow W;
    QSignalSpy Shown(&W, &MainWindow::analysisShown);
    W.resize(1200, 800);
    W.show();
    W.openPath(source("samples/hf/tiny-llama/config.json"));
    QVERIFY(Shown.wait(30000));
    QImage Image = W.grab().toImage();
    QVERIFY(!Image.isNull());
    std::set<QRgb> Colours;
    for (int Y = 0; Y < Image.height(); Y += 7)
      for (int X = 0; X < Image.width(); X += 7)
        Colours.insert(Image.pixel(X, Y));
    QVERIFY2(Colours.size() > 20, "the rendered window is (nearly) one colour");
  }
};

QTEST_MAIN(GuiTest)
#include "GuiTest.moc"
