//===- MainWindow.cpp - trainmem-gui's window -----------------------------===//
#include "gui/MainWindow.h"

#include "analyzer/TraceCompare.h"
#include "analyzer/Units.h"
#include "gui/PlanHistoryModels.h"
#include "gui/ReportModels.h"
#include "gui/TimelineChart.h"
#include "planner/GpuCatalog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QInputDialog>
#include <QFutureWatcher>
#include <QMessageBox>
#include <QPushButton>
#include <QtConcurrent/QtConcurrentRun>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMimeData>
#include <QScrollArea>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QSpinBox>
#include <QSplitter>
#include <QStatusBar>
#include <QTabWidget>
#include <QTableView>
#include <QHBoxLayout>
#include <QVBoxLayout>

namespace trainmem::gui {

namespace {

QTableView *tableFor(QAbstractItemModel *Model, QWidget *Parent) {
  auto *Proxy = new QSortFilterProxyModel(Parent);
  Proxy->setSourceModel(Model);
  Proxy->setSortRole(Qt::UserRole); // bytes sort as numbers
  auto *View = new QTableView(Parent);
  View->setModel(Proxy);
  View->setSortingEnabled(true);
  View->setSelectionBehavior(QAbstractItemView::SelectRows);
  View->horizontalHeader()->setStretchLastSection(true);
  View->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  View->verticalHeader()->hide();
  // Largest first where there are bytes (column 1), as the text report lists them.
  View->sortByColumn(Model->columnCount() > 1 ? 1 : 0, Qt::DescendingOrder);
  return View;
}

QComboBox *combo(const QStringList &Items, QWidget *Parent) {
  auto *C = new QComboBox(Parent);
  C->addItems(Items);
  return C;
}

} // namespace

MainWindow::MainWindow(QWidget *Parent) : QMainWindow(Parent) {
  setWindowTitle("trainmem");
  setAcceptDrops(true);
  Runner = new AnalysisRunner(this);
  Chart = new TimelineChart(this);
  Categories = new CategoryModel(this);
  Tensors = new TopTensorModel(this);
  Layers = new LayerModel(this);
  Diags = new DiagnosticModel(this);
  Plans = new PlanModel(this);
  History = new HistoryModel(this);
  Summary = new QLabel("Open an ONNX model, a Hugging Face config.json, a trace or a report "
                       "(File menu, or drop it here).",
                       this);
  Summary->setWordWrap(true);
  Summary->setTextInteractionFlags(Qt::TextSelectableByMouse);

  Tabs = new QTabWidget(this);
  Tabs->addTab(tableFor(Categories, this), "Breakdown at the peak");
  TensorView = tableFor(Tensors, this);
  Tabs->addTab(TensorView, "Tensors at the peak");
  Tabs->addTab(tableFor(Layers, this), "Layers");
  Tabs->addTab(tableFor(Diags, this), "Diagnostics");
  {
    auto *Page = new QWidget(this);
    auto *Layout = new QVBoxLayout(Page);
    auto *Search = new QPushButton("Search plans for the target GPU", Page);
    auto *Export = new QPushButton("Export config…", Page);
    PlanStatus = new QLabel("The planner ranks strategies for the GPU chosen in the setup "
                            "panel; double-click a plan to apply it.",
                            Page);
    PlanStatus->setWordWrap(true);
    QTableView *View = tableFor(Plans, Page);
    View->sortByColumn(0, Qt::AscendingOrder);
    auto *Buttons = new QHBoxLayout();
    Buttons->addWidget(Search);
    Buttons->addWidget(Export);
    Layout->addLayout(Buttons);
    Layout->addWidget(PlanStatus);
    Layout->addWidget(View, 1);
    Tabs->addTab(Page, "Plans");
    connect(Search, &QPushButton::clicked, this, &MainWindow::searchPlans);
    connect(Export, &QPushButton::clicked, this, [this, View] {
      QModelIndex I = View->currentIndex();
      if (!I.isValid()) {
        PlanStatus->setText("Select the plan to export first.");
        return;
      }
      int Row = static_cast<QSortFilterProxyModel *>(View->model())->mapToSource(I).row();
      bool Ok = false;
      QString Target = QInputDialog::getItem(
          this, "Export config", "Engine:", {"hf", "deepspeed", "accelerate-fsdp", "torchtune"},
          0, false, &Ok);
      if (!Ok)
        return;
      QString Dir = QFileDialog::getExistingDirectory(this, "Write the config files into");
      if (Dir.isEmpty())
        return;
      QString Why = exportPlan(Row, Target, Dir);
      PlanStatus->setText(Why.isEmpty() ? "wrote the " + Target + " configs into " + Dir
                                        : "<b>Cannot export:</b> " + Why.toHtmlEscaped());
    });
    connect(View, &QTableView::doubleClicked, this, [this, View](const QModelIndex &I) {
      auto *Proxy = static_cast<QSortFilterProxyModel *>(View->model());
      applyPlan(Proxy->mapToSource(I).row());
    });
  }
  Tabs->addTab(tableFor(History, this), "History");
  auto *Right = new QSplitter(Qt::Vertical, this);
  auto *Top = new QWidget(this);
  auto *TopLayout = new QVBoxLayout(Top);
  TopLayout->addWidget(Summary);
  TopLayout->addWidget(Chart, 1);
  Right->addWidget(Top);
  Right->addWidget(Tabs);
  Right->setStretchFactor(0, 3);
  Right->setStretchFactor(1, 2);
  auto *Main = new QSplitter(Qt::Horizontal, this);
  auto *Scroll = new QScrollArea(this);
  Scroll->setWidget(buildSetupPanel());
  Scroll->setWidgetResizable(true);
  Main->addWidget(Scroll);
  Main->addWidget(Right);
  Main->setStretchFactor(1, 1);
  setCentralWidget(Main);
  buildMenus();
  resize(1280, 820);

  connect(Runner, &AnalysisRunner::started, this,
          [this] { statusBar()->showMessage("analysing…"); });
  connect(Runner, &AnalysisRunner::finished, this, &MainWindow::showResult);
  connect(Chart, &TimelineChart::pointClicked, this, [this](int I) {
    if (!Report || I < 0 || size_t(I) >= Report->Timeline.size())
      return;
    // Select the tensors at the peak that the clicked op's layer produced.
    const std::string &Layer = Report->Timeline[size_t(I)].Layer;
    QAbstractItemModel *Proxy = TensorView->model();
    TensorView->selectionModel()->clearSelection();
    for (int Row = 0; Row < Proxy->rowCount() && !Layer.empty(); ++Row)
      if (Proxy->index(Row, 4).data().toString().toStdString() == Layer) {
        TensorView->selectionModel()->select(
            Proxy->index(Row, 0), QItemSelectionModel::Select | QItemSelectionModel::Rows);
        Tabs->setCurrentWidget(TensorView);
      }
    const TimelinePoint &P = Report->Timeline[size_t(I)];
    statusBar()->showMessage(QString("op %1: %2 (%3), %4 live")
                                 .arg(I)
                                 .arg(QString::fromStdString(P.Op),
                                      QString::fromStdString(P.Phase),
                                      QString::fromStdString(formatBytes(P.Live.total()))));
  });
}

QWidget *MainWindow::buildSetupPanel() {
  auto *Panel = new QWidget(this);
  auto *Form = new QFormLayout(Panel);
  Batch = new QSpinBox(Panel);
  Batch->setRange(1, 1 << 20);
  Batch->setValue(1);
  Batch->setToolTip("HF configs: dim batch. ONNX: dim 0 of every batch input (--micro-batch)");
  Seq = new QSpinBox(Panel);
  Seq->setRange(1, 1 << 22);
  Seq->setValue(128);
  Seq->setToolTip("HF configs: dim seq. ONNX: every other symbolic dim (--default-dim)");
  Padded = new QCheckBox("padded batches", Panel);
  Padded->setToolTip("HF configs: the batches are padded to their longest sequence, so "
                     "transformers builds the [batch, 1, seq, seq] attention mask and SDPA "
                     "keeps a float bias per layer (--padded); ONNX exports carry their mask");
  Precision = combo({"fp32", "amp-bf16", "amp-fp16", "bf16", "mixed-bf16", "mixed-fp16"}, Panel);
  Optimizer = combo({"adamw", "adam", "sgd", "sgd-momentum", "adafactor", "adamw-8bit",
                     "paged-adamw-8bit", "lion", "adamw-fp8"},
                    Panel);
  Impl = combo({"for-loop", "foreach", "fused"}, Panel);
  Loss = combo({"auto", "cross-entropy", "cut-cross-entropy", "mse", "none"}, Panel);
  LoraTargets = new QLineEdit(Panel);
  LoraTargets->setPlaceholderText("PEFT's defaults");
  LoraTargets->setToolTip("module names (q_proj,v_proj) or all-linear; empty: PEFT's defaults "
                          "for the architecture");
  // Editable: any --checkpoint value (first:K, blocks:0-3+selective:4-6, budget:SIZE,
  // optimal:SIZE — the last two resolved by the planner as in the CLI).
  Checkpoint = combo({"none", "blocks", "selective", "every:2", "optimal:24GiB"}, Panel);
  Checkpoint->setEditable(true);
  Checkpoint->setInsertPolicy(QComboBox::NoInsert);
  Checkpoint->setToolTip("none, blocks, selective, every:K, first:K, blocks:LIST+selective:LIST, "
                         "budget:SIZE (fewest first blocks that fit) or optimal:SIZE (least "
                         "recompute that fits); type a value and press Enter");
  GradAccum = new QSpinBox(Panel);
  GradAccum->setRange(1, 4096);
  GradAccum->setToolTip("micro-batches accumulated per optimizer step (--grad-accum)");
  LoraRank = new QSpinBox(Panel);
  LoraRank->setRange(0, 4096);
  LoraRank->setSpecialValueText("off");
  QLora = new QCheckBox("QLoRA (NF4 base weights)", Panel);
  GaloreRank = new QSpinBox(Panel);
  GaloreRank->setRange(0, 65536);
  GaloreRank->setSpecialValueText("off");
  GaloreGap = new QSpinBox(Panel);
  GaloreGap->setRange(1, 100000);
  GaloreGap->setValue(200);
  GalorePerLayer = new QCheckBox("per-layer updates", Panel);
  Sparse = combo({"none", "bias-only", "last:1", "last:2", "last:4", "budget:24GiB"}, Panel);
  Sparse->setEditable(true);
  Sparse->setInsertPolicy(QComboBox::NoInsert);
  Sparse->setToolTip("none, bias-only, last:K, layers:REGEX, weights:REGEX, biases:REGEX or "
                     "budget:SIZE (the update set that fits, TinyEngine-style); type a value "
                     "and press Enter");
  Zero = combo({"0", "1", "2", "3"}, Panel);
  Fsdp = new QCheckBox("FSDP", Panel);
  Gpus = new QSpinBox(Panel);
  Gpus->setRange(1, 4096);
  Offload = combo({"none", "optimizer", "params"}, Panel);
  CudaContext = new QSpinBox(Panel);
  CudaContext->setRange(0, 1 << 20);
  CudaContext->setSuffix(" MiB");
  CudaContext->setSpecialValueText("estimate (400 MiB)");
  CudaContext->setToolTip("device memory outside PyTorch's caching allocator (CUDA context "
                          "and loaded kernels) as you measured it, e.g. nvidia-smi after "
                          "torch.ones(1, device='cuda'); added to peak_reserved "
                          "(--cuda-context)");
  Gpu = new QComboBox(Panel);
  Gpu->addItem("none (host semantics)", QString());
  if (auto Catalog = GpuCatalog::loadConfigured())
    for (const GpuSpec &G : Catalog->gpus())
      Gpu->addItem(QString::fromStdString(G.DisplayName), QString::fromStdString(G.Name));
  else
    llvm::consumeError(Catalog.takeError());
  Form->addRow("batch", Batch);
  Form->addRow("sequence", Seq);
  Form->addRow("", Padded);
  DimsBox = new QGroupBox("model dims", Panel);
  DimsForm = new QFormLayout(DimsBox);
  DimsBox->setToolTip("the ONNX model's symbolic dims ('sequence' binds any left out), or a "
                      "multiple-choice head's choices per row");
  DimsBox->hide();
  Form->addRow(DimsBox);
  Form->addRow("precision", Precision);
  Form->addRow("optimizer", Optimizer);
  Form->addRow("implementation", Impl);
  Form->addRow("loss", Loss);
  Form->addRow("checkpointing", Checkpoint);
  Form->addRow("grad accumulation", GradAccum);
  Form->addRow("LoRA rank", LoraRank);
  Form->addRow("LoRA targets", LoraTargets);
  Form->addRow("", QLora);
  Form->addRow("GaLore rank", GaloreRank);
  Form->addRow("GaLore update gap", GaloreGap);
  Form->addRow("", GalorePerLayer);
  Form->addRow("sparse update", Sparse);
  Form->addRow("ZeRO stage", Zero);
  Form->addRow("", Fsdp);
  Form->addRow("GPUs", Gpus);
  Form->addRow("offload", Offload);
  Form->addRow("target GPU", Gpu);
  Form->addRow("CUDA context", CudaContext);
  auto Changed = [this] {
    if (Applying)
      return;
    AppliedSetup.reset(); // the panel says what runs again
    AppliedName.clear();
    analyse();
  };
  for (QSpinBox *S : {Batch, Seq, GradAccum, LoraRank, GaloreRank, GaloreGap, Gpus, CudaContext})
    connect(S, &QSpinBox::valueChanged, this, Changed);
  for (QComboBox *C : {Precision, Optimizer, Impl, Checkpoint, Sparse, Zero, Offload, Gpu})
    connect(C, &QComboBox::currentIndexChanged, this, Changed);
  for (QCheckBox *B : {QLora, GalorePerLayer, Fsdp, Padded})
    connect(B, &QCheckBox::toggled, this, Changed);
  connect(Loss, &QComboBox::currentIndexChanged, this, Changed);
  for (QComboBox *C : {Checkpoint, Sparse})
    connect(C->lineEdit(), &QLineEdit::editingFinished, this, Changed);
  connect(LoraTargets, &QLineEdit::editingFinished, this, Changed);
  Panel->setMinimumWidth(260);
  return Panel;
}

void MainWindow::buildMenus() {
  QMenu *File = menuBar()->addMenu("&File");
  File->addAction("&Open…", QKeySequence::Open, this, [this] {
    QString P = QFileDialog::getOpenFileName(
        this, "Open a model, config, trace or report", QString(),
        "Models and traces (*.onnx *.json *.gz *.pickle *.pkl *.sqlite);;All files (*)");
    if (!P.isEmpty())
      openPath(P);
  });
  Recent = File->addMenu("Open &recent");
  refreshRecentMenu();
  File->addAction("&Compare with a trace…", this, [this] {
    QString P = QFileDialog::getOpenFileName(
        this, "Open a trace of a real run", QString(),
        "Traces (*.json *.gz *.pickle *.pkl *.sqlite);;All files (*)");
    if (!P.isEmpty())
      compareWithTrace(P);
  });
  File->addAction("Open &history…", this, [this] {
    QString P = QFileDialog::getOpenFileName(this, "Open a trainmem history database",
                                             QString(), "SQLite (*.db *.sqlite);;All files (*)");
    QString Why;
    if (!P.isEmpty() && !openHistory(P, &Why))
      QMessageBox::warning(this, "trainmem", Why);
  });
  File->addSeparator();
  File->addAction("&Quit", QKeySequence::Quit, this, &QWidget::close);
}

void MainWindow::refreshRecentMenu() {
  Recent->clear();
  const QStringList Files = QSettings("trainmem", "trainmem-gui").value("recent").toStringList();
  for (const QString &F : Files)
    Recent->addAction(F, this, [this, F] { openPath(F); });
  Recent->setEnabled(!Files.isEmpty());
}

void MainWindow::rememberRecent(const QString &P) {
  QSettings S("trainmem", "trainmem-gui");
  QStringList Files = S.value("recent").toStringList();
  Files.removeAll(P);
  Files.prepend(P);
  while (Files.size() > 10)
    Files.removeLast();
  S.setValue("recent", Files);
  refreshRecentMenu();
}

void MainWindow::openPath(const QString &P) {
  Path = QFileInfo(P).absoluteFilePath();
  rebuildDims(MemoryReport()); // another model has other dims
  setWindowTitle("trainmem — " + QFileInfo(P).fileName());
  rememberRecent(Path);
  analyse();
}

AnalysisRequest MainWindow::currentRequest() const {
  AnalysisRequest R;
  R.Path = Path;
  R.Batch = Batch->value();
  R.Seq = Seq->value();
  R.Padded = Padded->isChecked();
  for (const auto &[Name, Spin] : DimSpins)
    R.Dims.push_back({Name, Spin->value()});
  if (AppliedSetup) {
    R.Setup = *AppliedSetup;
    return R;
  }
  TrainingSetup &S = R.Setup;
  auto Take = [](auto Parsed, auto &Into) {
    if (Parsed)
      Into = *Parsed;
    else
      llvm::consumeError(Parsed.takeError());
  };
  Take(parsePrecision(Precision->currentText().toStdString()), S.Prec);
  Take(parseOptimizer(Optimizer->currentText().toStdString()), S.Optimizer);
  Take(parseOptimizerImpl(Impl->currentText().toStdString()), S.Impl);
  Take(parseLoss(Loss->currentText().toStdString()), S.Loss);
  S.Checkpoint = Checkpoint->currentText().toStdString();
  S.GradAccum = GradAccum->value();
  if (LoraRank->value() > 0) {
    LoraSetup L;
    L.Rank = LoraRank->value();
    L.Alpha = 2.0 * static_cast<double>(L.Rank);
    L.QLora = QLora->isChecked();
    for (const QString &T : LoraTargets->text().split(',', Qt::SkipEmptyParts))
      L.Targets.push_back(T.trimmed().toStdString());
    S.Lora = L;
  }
  if (GaloreRank->value() > 0) {
    GaloreSetup G;
    G.Rank = GaloreRank->value();
    G.UpdateGap = GaloreGap->value();
    G.PerLayer = GalorePerLayer->isChecked();
    S.Galore = G;
  }
  if (Sparse->currentText() != "none")
    S.SparseUpdate = Sparse->currentText().toStdString();
  S.Sharding.ZeroStage = Zero->currentText().toInt();
  S.Sharding.Fsdp = Fsdp->isChecked();
  S.Sharding.Gpus = Gpus->value();
  Take(parseOffload(Offload->currentText().toStdString()), S.Sharding.Offload);
  S.Gpu = Gpu->currentData().toString().toStdString();
  if (CudaContext->value() > 0)
    S.CudaContextBytes = int64_t(CudaContext->value()) << 20;
  // As `trainmem analyze` with --device=auto: CUDA when a GPU is targeted, else the host.
  S.Device = S.Gpu.empty() ? DeviceKind::Cpu : DeviceKind::Cuda;
  S.Autocast = S.Gpu.empty() ? AutocastPolicy::Cpu : AutocastPolicy::Cuda;
  return R;
}

void MainWindow::applyRequest(const AnalysisRequest &R) {
  Applying = true;
  Batch->setValue(int(R.Batch));
  Seq->setValue(int(R.Seq));
  Precision->setCurrentText(precisionName(R.Setup.Prec));
  Optimizer->setCurrentText(optimizerName(R.Setup.Optimizer));
  Impl->setCurrentText(optimizerImplName(R.Setup.Impl));
  Loss->setCurrentText(lossName(R.Setup.Loss));
  QStringList Targets;
  if (R.Setup.Lora)
    for (const std::string &T : R.Setup.Lora->Targets)
      Targets << QString::fromStdString(T);
  LoraTargets->setText(Targets.join(","));
  Checkpoint->setCurrentText(QString::fromStdString(R.Setup.Checkpoint));
  LoraRank->setValue(R.Setup.Lora ? int(R.Setup.Lora->Rank) : 0);
  QLora->setChecked(R.Setup.Lora && R.Setup.Lora->QLora);
  GradAccum->setValue(int(R.Setup.GradAccum));
  GaloreRank->setValue(R.Setup.Galore ? int(R.Setup.Galore->Rank) : 0);
  GaloreGap->setValue(R.Setup.Galore ? int(R.Setup.Galore->UpdateGap) : 200);
  GalorePerLayer->setChecked(R.Setup.Galore && R.Setup.Galore->PerLayer);
  Sparse->setCurrentText(R.Setup.SparseUpdate.empty()
                             ? QString("none")
                             : QString::fromStdString(R.Setup.SparseUpdate));
  Zero->setCurrentText(QString::number(R.Setup.Sharding.ZeroStage));
  Fsdp->setChecked(R.Setup.Sharding.Fsdp);
  Gpus->setValue(int(R.Setup.Sharding.Gpus));
  Offload->setCurrentText(offloadName(R.Setup.Sharding.Offload));
  int G = Gpu->findData(QString::fromStdString(R.Setup.Gpu));
  Gpu->setCurrentIndex(G < 0 ? 0 : G);
  // Whole MiB, rounded up so that a context given in bytes is never shown as "estimate".
  CudaContext->setValue(R.Setup.CudaContextBytes
                            ? int((*R.Setup.CudaContextBytes + (1 << 20) - 1) >> 20)
                            : 0);
  Applying = false;
}

void MainWindow::analyse() {
  if (Applying || Path.isEmpty())
    return;
  Runner->request(currentRequest());
}

void MainWindow::showResult(const AnalysisResult &R) {
  if (!R.Report) {
    Summary->setText("<b>Error:</b> " + R.Error.toHtmlEscaped());
    statusBar()->showMessage("analysis failed");
    emit analysisShown(false);
    return;
  }
  Report = std::make_shared<const MemoryReport>(*R.Report);
  rebuildDims(*Report);
  Chart->setReport(Report);
  for (ReportTableModel *M : std::initializer_list<ReportTableModel *>{Categories, Tensors,
                                                                       Layers, Diags})
    M->setReport(Report);
  refreshSummary();
  statusBar()->showMessage(QString("analysed in %1 ms").arg(R.Milliseconds, 0, 'f', 1));
  emit analysisShown(true);
}

void MainWindow::searchPlans() {
  AnalysisRequest R = currentRequest();
  if (R.Path.isEmpty() || R.Setup.Gpu.empty()) {
    PlanStatus->setText("Open a model and choose a target GPU first.");
    emit plansShown(false);
    return;
  }
  PlanStatus->setText("searching plans…");
  auto *Watcher = new QFutureWatcher<PlanResult>(this);
  connect(Watcher, &QFutureWatcher<PlanResult>::finished, this, [this, Watcher] {
    PlanResult Result = Watcher->result();
    Watcher->deleteLater();
    if (!Result.Error.isEmpty()) {
      PlanStatus->setText("<b>Error:</b> " + Result.Error.toHtmlEscaped());
      emit plansShown(false);
      return;
    }
    size_t Fit = std::count_if(Result.Plans.begin(), Result.Plans.end(),
                               [](const Plan &P) { return P.Fits; });
    QString Status = QString("%1 plans, %2 fit (%3 ms); double-click one to apply it.")
                         .arg(Result.Plans.size())
                         .arg(Fit)
                         .arg(Result.Milliseconds, 0, 'f', 0)
                         .toHtmlEscaped();
    // The reasons, once each: LoRA's r=16, r=64 and QLoRA candidates share one.
    QStringList Reasons;
    for (const SkippedPlan &S : Result.Skipped)
      if (QString Why = QString::fromStdString(S.Why).toHtmlEscaped(); !Reasons.contains(Why))
        Reasons << Why;
    if (!Reasons.isEmpty())
      Status += QString("<br>%1 candidates not applicable to this model: %2")
                    .arg(Result.Skipped.size())
                    .arg(Reasons.join("; "));
    PlanStatus->setText(Status);
    Plans->setPlans(std::move(Result.Plans));
    emit plansShown(true);
  });
  Watcher->setFuture(QtConcurrent::run([R] { return runPlanSearch(R); }));
}

void MainWindow::compareWithTrace(const QString &TracePath) {
  AnalysisRequest R;
  R.Path = QFileInfo(TracePath).absoluteFilePath();
  auto *Watcher = new QFutureWatcher<AnalysisResult>(this);
  connect(Watcher, &QFutureWatcher<AnalysisResult>::finished, this, [this, Watcher] {
    AnalysisResult Result = Watcher->result();
    Watcher->deleteLater();
    if (!Result.Report || !Result.Report->Measured || !Result.Report->Peak) {
      QString Why = Result.Report ? QString("not a trace with memory events")
                                  : Result.Error;
      statusBar()->showMessage("cannot compare: " + Why);
      emit measuredShown(false);
      return;
    }
    Measured = std::make_shared<const MemoryReport>(std::move(*Result.Report));
    Chart->setMeasured(Measured);
    refreshSummary();
    emit measuredShown(true);
  });
  Watcher->setFuture(QtConcurrent::run([R] { return runAnalysis(R); }));
}

void MainWindow::applyPlan(int Row) {
  const Plan *P = Plans->plan(Row);
  if (!P)
    return;
  AnalysisRequest R = currentRequest();
  R.Setup = P->Setup;
  R.Batch = P->MicroBatch; // the batch dim is one micro-batch; Setup holds the accumulation
  applyRequest(R); // the panel shows what it can of the plan
  AppliedSetup = P->Setup;
  AppliedName = QString::fromStdString(P->Name);
  analyse();
}

QString MainWindow::exportPlan(int Row, const QString &Target, const QString &Dir) {
  const Plan *P = Plans->plan(Row);
  if (!P)
    return "no such plan";
  return exportConfigs(currentRequest(), P->Setup, Target, Dir);
}

bool MainWindow::openHistory(const QString &File, QString *Error) {
  auto Fail = [&](const QString &Why) {
    if (Error)
      *Error = Why;
    return false;
  };
  // Opening a store creates it; a viewer must not create files that were never there.
  if (!QFileInfo::exists(File))
    return Fail(File + ": no such file");
  auto Store = RunStore::open(File.toStdString());
  if (!Store)
    return Fail(QString::fromStdString(llvm::toString(Store.takeError())));
  auto Runs = (*Store)->list();
  if (!Runs)
    return Fail(QString::fromStdString(llvm::toString(Runs.takeError())));
  History->setRuns(std::move(*Runs));
  Tabs->setCurrentIndex(Tabs->count() - 1);
  return true;
}

void MainWindow::rebuildDims(const MemoryReport &R) {
  std::vector<std::pair<std::string, int64_t>> Wanted;
  // Padding is a choice for HF configs only: an ONNX export carries its own mask.
  Padded->setEnabled(R.Model.Format != "onnx");
  // An ONNX model's symbolic dims but its batch; an HF config's multiple-choice head's
  // choices (batch and seq have their own fields).
  for (const DimBinding &D : R.Model.Dims)
    if (R.Model.Format == "onnx" ? !llvm::StringRef(D.Name).contains_insensitive("batch")
                                 : D.Name == "choices")
      Wanted.push_back({D.Name, D.Value});
  bool Same = Wanted.size() == DimSpins.size();
  for (size_t I = 0; Same && I < Wanted.size(); ++I)
    Same = Wanted[I].first == DimSpins[I].first;
  if (Same)
    return;
  while (DimsForm->rowCount() > 0)
    DimsForm->removeRow(0);
  DimSpins.clear();
  for (const auto &[Name, Value] : Wanted) {
    auto *Spin = new QSpinBox(DimsBox);
    Spin->setRange(1, 1 << 24);
    Spin->setValue(int(std::min<int64_t>(Value, 1 << 24)));
    connect(Spin, &QSpinBox::valueChanged, this, [this] {
      AppliedSetup.reset();
      AppliedName.clear();
      analyse();
    });
    DimsForm->addRow(QString::fromStdString(Name), Spin);
    DimSpins.push_back({Name, Spin});
  }
  DimsBox->setVisible(!DimSpins.empty());
}

void MainWindow::refreshSummary() {
  if (!Report)
    return;
  QString Text = QString("<b>%1</b> (%2)").arg(QString::fromStdString(Report->Model.Name),
                                                QString::fromStdString(Report->Model.Format));
  if (Report->Peak) {
    Text += QString(" — peak <b>%1</b>").arg(QString::fromStdString(formatBytes(*Report->Peak)));
    if (Report->PeakInfo)
      Text += QString(" in %1 at %2")
                  .arg(QString::fromStdString(Report->PeakInfo->Phase),
                       QString::fromStdString(Report->PeakInfo->Op).toHtmlEscaped());
  }
  if (Report->PeakReserved)
    Text += QString("; reserved %1")
                .arg(QString::fromStdString(formatBytes(*Report->PeakReserved)));
  if (Report->Gpu)
    Text += QString("<br>%1 on %2 (%3 usable)")
                .arg(Report->Gpu->fits() ? "<span style='color:#2a7'>FITS</span>"
                                         : "<span style='color:#c22'>DOES NOT FIT</span>",
                     QString::fromStdString(Report->Gpu->DisplayName),
                     QString::fromStdString(formatBytes(Report->Gpu->UsableBytes)));
  if (!AppliedName.isEmpty())
    Text += "<br>plan applied: " + AppliedName.toHtmlEscaped();
  if (Measured && Measured->Peak) {
    Comparison C = compareReports(*Report, *Measured);
    Text += QString("<br>measured (%1): peak %2, prediction off by %3 (worst phase %4 %)")
                .arg(QString::fromStdString(C.TraceFormat),
                     QString::fromStdString(formatBytes(*Measured->Peak)),
                     C.Peak.errorPercent()
                         ? QString::number(*C.Peak.errorPercent(), 'f', 2) + " %"
                         : QString("n/a"))
                .arg(worstError(C), 0, 'f', 2);
  }
  Summary->setText(Text);
}

void MainWindow::dragEnterEvent(QDragEnterEvent *E) {
  if (E->mimeData()->hasUrls())
    E->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent *E) {
  const QList<QUrl> Urls = E->mimeData()->urls();
  if (!Urls.isEmpty() && Urls.front().isLocalFile())
    openPath(Urls.front().toLocalFile());
}

} // namespace trainmem::gui
