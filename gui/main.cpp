//===- main.cpp - trainmem-gui ---------------------------------------------===//
//
// trainmem-gui [MODEL | config.json | TRACE | REPORT.json] [--batch N] [--seq N]
//   [--precision P] [--optimizer O] [--optimizer-impl I] [--checkpoint C] [--lora-rank R]
//   [--gpu NAME] [--trace TRACE] [--screenshot FILE.png]
// With --screenshot the window is rendered to FILE.png once the analysis is shown, and the
// program exits (0, or 1 when the analysis failed) — for docs and CI.
//
//===----------------------------------------------------------------------------===//
#include "gui/MainWindow.h"
#include "trainmem/Version.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>

#include <csignal>
#include <cstdio>

int main(int Argc, char **Argv) {
  // A file written past the size limit (ulimit -f) fails its write with EFBIG, which each
  // writer reports, instead of SIGXFSZ ending the program (a trace import's temporary
  // file then keeps its records in memory).
  std::signal(SIGXFSZ, SIG_IGN);
  QApplication App(Argc, Argv);
  QApplication::setApplicationName("trainmem-gui");
  QApplication::setApplicationVersion(TRAINMEM_VERSION_STRING);
  qRegisterMetaType<trainmem::gui::AnalysisResult>();
  QCommandLineParser P;
  P.setApplicationDescription("trainmem's desktop explorer: where every byte of a training "
                              "step goes, and what to change so it fits.");
  P.addHelpOption();
  P.addVersionOption();
  P.addPositionalArgument("model", "an .onnx file, a Hugging Face config.json, a trace or a "
                                   "trainmem report JSON");
  QCommandLineOption Batch("batch", "batch (HF) or dim 0 of batch inputs (ONNX)", "N", "1");
  QCommandLineOption Seq("seq", "seq (HF) or every other symbolic dim (ONNX)", "N", "128");
  QCommandLineOption Precision("precision", "fp32 | amp-bf16 | amp-fp16 | bf16 | mixed-*", "P",
                               "fp32");
  QCommandLineOption Optimizer("optimizer", "adamw | adam | sgd | ... (as trainmem analyze)",
                               "O", "adamw");
  QCommandLineOption Impl("optimizer-impl", "for-loop | foreach | fused", "I", "for-loop");
  QCommandLineOption Checkpoint("checkpoint", "none | blocks | selective | every:2", "C",
                                "none");
  QCommandLineOption Lora("lora-rank", "LoRA rank (0: off)", "R", "0");
  QCommandLineOption Gpu("gpu", "target GPU from the catalogue (trainmem gpus)", "NAME");
  QCommandLineOption Shot("screenshot", "render the window to FILE.png and exit", "FILE");
  QCommandLineOption Trace("trace", "draw a trace of a real run over the prediction", "FILE");
  P.addOptions({Batch, Seq, Precision, Optimizer, Impl, Checkpoint, Lora, Gpu, Shot, Trace});
  P.process(App);

  trainmem::gui::MainWindow W;
  trainmem::gui::AnalysisRequest R = W.currentRequest();
  R.Batch = P.value(Batch).toLongLong();
  R.Seq = P.value(Seq).toLongLong();
  auto Set = [](auto Parsed, auto &Into, const QString &Option) {
    if (Parsed) {
      Into = *Parsed;
      return true;
    }
    std::fprintf(stderr, "trainmem-gui: --%s: %s\n", Option.toStdString().c_str(),
                 llvm::toString(Parsed.takeError()).c_str());
    return false;
  };
  if (!Set(trainmem::parsePrecision(P.value(Precision).toStdString()), R.Setup.Prec,
           "precision") ||
      !Set(trainmem::parseOptimizer(P.value(Optimizer).toStdString()), R.Setup.Optimizer,
           "optimizer") ||
      !Set(trainmem::parseOptimizerImpl(P.value(Impl).toStdString()), R.Setup.Impl,
           "optimizer-impl"))
    return 1;
  if (R.Batch < 1 || R.Seq < 1) {
    std::fprintf(stderr, "trainmem-gui: --batch and --seq take positive integers\n");
    return 1;
  }
  R.Setup.Checkpoint = P.value(Checkpoint).toStdString();
  if (int Rank = P.value(Lora).toInt(); Rank > 0) {
    trainmem::LoraSetup L;
    L.Rank = Rank;
    L.Alpha = 2.0 * Rank;
    R.Setup.Lora = L;
  }
  R.Setup.Gpu = P.value(Gpu).toStdString();
  W.applyRequest(R);
  if (!R.Setup.Gpu.empty() && W.currentRequest().Setup.Gpu != R.Setup.Gpu) {
    std::fprintf(stderr, "trainmem-gui: --gpu=%s: not in the catalogue (trainmem gpus lists "
                         "it)\n", R.Setup.Gpu.c_str());
    return 1;
  }
  W.show();
  if (P.isSet(Shot)) {
    if (P.positionalArguments().isEmpty()) {
      std::fprintf(stderr, "trainmem-gui: --screenshot needs a model to analyse\n");
      return 1;
    }
    QString File = P.value(Shot);
    // With --trace the picture waits for the measured line as well.
    auto Ready = P.isSet(Trace) ? &trainmem::gui::MainWindow::measuredShown
                                : &trainmem::gui::MainWindow::analysisShown;
    QObject::connect(&W, Ready, &W, [&W, File](bool Ok) {
      // One event-loop turn so the chart lays out before it is grabbed.
      QTimer::singleShot(50, &W, [&W, File, Ok] {
        bool Saved = W.grab().save(File, "PNG");
        if (!Saved)
          std::fprintf(stderr, "trainmem-gui: cannot write %s\n", File.toStdString().c_str());
        QApplication::exit(Saved && Ok ? 0 : 1);
      });
    });
  }
  if (!P.positionalArguments().isEmpty())
    W.openPath(P.positionalArguments().front());
  if (P.isSet(Trace))
    W.compareWithTrace(P.value(Trace));
  return App.exec();
}
