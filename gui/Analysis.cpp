//===- Analysis.cpp - running the library's analysis off the UI thread ----===//
#include "gui/Analysis.h"

#include "analyzer/TraceCompare.h"
#include "analyzer/TraceImport.h"
#include "planner/ConfigEmitters.h"
#include "planner/GpuCatalog.h"
#include "planner/StepPrediction.h"

#include "llvm/Support/MemoryBuffer.h"

#include <QElapsedTimer>
#include <QFileInfo>
#include <QtConcurrent/QtConcurrentRun>

namespace trainmem::gui {

namespace {

bool isHfConfig(const QString &Path) { return QFileInfo(Path).fileName() == "config.json"; }

bool isReportJson(const std::string &Path) {
  auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  return Buffer && (*Buffer)->getBuffer().contains("\"trainmem.report/1\"");
}

/// The importer options of a request, with dim 0 of the batch inputs set to MicroBatch.
llvm::Expected<Graph> importFor(const AnalysisRequest &R, int64_t MicroBatch) {
  ImportOptions Import;
  Import.MicroBatch = MicroBatch;
  std::string Path = R.Path.toStdString();
  if (isHfConfig(R.Path)) {
    Import.Dims = {{"batch", R.Batch}, {"seq", R.Seq}};
    // A multiple-choice head's third dim, from the field its first analysis showed.
    for (const DimBinding &D : R.Dims)
      if (D.Name == "choices")
        Import.Dims.push_back(D);
    Import.PaddedBatches = R.Padded;
    return importHfConfig(Path, Import);
  }
  Import.Dims = R.Dims;
  Import.DefaultDim = R.Seq;
  return importModel(Path, Import);
}

} // namespace

AnalysisResult runAnalysis(const AnalysisRequest &Request) {
  QElapsedTimer Timer;
  Timer.start();
  AnalysisResult Result;
  std::string Path = Request.Path.toStdString();
  auto Finish = [&](llvm::Expected<MemoryReport> R) {
    if (R)
      Result.Report = std::move(*R);
    else
      Result.Error = QString::fromStdString(llvm::toString(R.takeError()));
    Result.Milliseconds = static_cast<double>(Timer.nsecsElapsed()) / 1e6;
    return Result;
  };
  if (!isHfConfig(Request.Path) && isReportJson(Path)) {
    auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
    return Finish(readReportJson((*Buffer)->getBuffer(), Path));
  }
  if (!isHfConfig(Request.Path) && looksLikeTrace(Path)) {
    auto T = importTrace(Path);
    if (!T)
      return Finish(T.takeError());
    return Finish(traceToReport(*T));
  }
  TrainingSetup Setup = Request.Setup;
  llvm::Expected<Graph> G = importFor(Request, Request.Batch);
  if (!G)
    return Finish(G.takeError());
  return Finish(predictStepReport(std::move(*G), Setup));
}


PlanResult runPlanSearch(const AnalysisRequest &Request) {
  QElapsedTimer Timer;
  Timer.start();
  PlanResult Result;
  auto Fail = [&](llvm::Error E) {
    Result.Error = QString::fromStdString(llvm::toString(std::move(E)));
    return Result;
  };
  if (Request.Setup.Gpu.empty())
    return Fail(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                        "choose a target GPU to plan for"));
  auto Catalog = GpuCatalog::loadConfigured();
  if (!Catalog)
    return Fail(Catalog.takeError());
  auto Gpu = Catalog->lookup(Request.Setup.Gpu);
  if (!Gpu)
    return Fail(Gpu.takeError());
  PlanRequest Plan;
  Plan.Gpu = *Gpu;
  Plan.Budget = Gpu->UsableBytes;
  Plan.Base = Request.Setup;
  Plan.GlobalBatch = Request.Batch;
  Plan.Model = [Request](int64_t MicroBatch) { return importFor(Request, MicroBatch); };
  Plan.Skipped = &Result.Skipped;
  auto Plans = searchPlans(Plan);
  if (!Plans)
    return Fail(Plans.takeError());
  Result.Plans = std::move(*Plans);
  Result.Milliseconds = static_cast<double>(Timer.nsecsElapsed()) / 1e6;
  return Result;
}

QString exportConfigs(const AnalysisRequest &Request, const TrainingSetup &Setup,
                      const QString &Target, const QString &Dir) {
  auto Fail = [](llvm::Error E) { return QString::fromStdString(llvm::toString(std::move(E))); };
  auto T = parseConfigTarget(Target.toStdString());
  if (!T)
    return Fail(T.takeError());
  auto G = importFor(Request, Setup.MicroBatch.value_or(Request.Batch));
  if (!G)
    return Fail(G.takeError());
  EmitContext Ctx;
  Ctx.ModelName = G->Name;
  Ctx.ModelSource = G->SourcePath;
  Ctx.Architecture = G->Architecture;
  Ctx.CheckpointQuantization = G->DeclaredCheckpointQuantization;
  Ctx.MicroBatch = Setup.MicroBatch.value_or(Request.Batch);
  if (llvm::Error E = writeConfigs(*T, Setup, Ctx, Dir.toStdString()))
    return Fail(std::move(E));
  return QString();
}

AnalysisRunner::AnalysisRunner(QObject *Parent) : QObject(Parent) {
  connect(&Watcher, &QFutureWatcher<AnalysisResult>::finished, this, [this] {
    Running = false;
    emit finished(Watcher.result());
    startNext();
  });
}

void AnalysisRunner::request(const AnalysisRequest &R) {
  Pending = R;
  if (!Running)
    startNext();
}

void AnalysisRunner::startNext() {
  if (!Pending)
    return;
  AnalysisRequest R = std::move(*Pending);
  Pending.reset();
  Running = true;
  emit started();
  Watcher.setFuture(QtConcurrent::run([R] { return runAnalysis(R); }));
}

} // namespace trainmem::gui
