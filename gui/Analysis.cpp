//===- Analysis.cpp - running the library's analysis off the UI thread ----===//
#include "gui/Analysis.h"

#include "analyzer/TraceCompare.h"
#include "analyzer/TraceImport.h"
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
  ImportOptions Import;
  TrainingSetup Setup = Request.Setup;
  llvm::Expected<Graph> G = [&]() -> llvm::Expected<Graph> {
    if (isHfConfig(Request.Path)) {
      Import.Dims = {{"batch", Request.Batch}, {"seq", Request.Seq}};
      return importHfConfig(Path, Import);
    }
    Import.MicroBatch = Request.Batch;
    Import.DefaultDim = Request.Seq;
    return importModel(Path, Import);
  }();
  if (!G)
    return Finish(G.takeError());
  return Finish(predictStepReport(std::move(*G), Setup));
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
