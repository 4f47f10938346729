//===- GuiBench.cpp - trainmem-gui's re-analysis after a setup change --------===//
//
// What a user waits for after changing a setup field on a 7B model: the analysis on the
// worker (import of the HF config, prediction) and the redraw of the chart and the tables
// on the UI thread. Goal (issue 8): under 200 ms. Runs offscreen.
//
//===----------------------------------------------------------------------------===//
#include "gui/MainWindow.h"
#include "gui/ReportModels.h"
#include "gui/TimelineChart.h"

#include <QApplication>
#include <benchmark/benchmark.h>

namespace {

void BM_GuiReanalysisLlama7B(benchmark::State &State) {
  trainmem::gui::AnalysisRequest R;
  R.Path = TRAINMEM_SOURCE_DIR "/samples/hf/llama-2-7b/config.json";
  R.Batch = 1;
  R.Seq = 2048;
  R.Setup.Prec = trainmem::Precision::Bf16;
  trainmem::gui::TimelineChart Chart;
  trainmem::gui::TopTensorModel Tensors;
  for (auto _ : State) {
    trainmem::gui::AnalysisResult Result = trainmem::gui::runAnalysis(R);
    if (!Result.Report) {
      State.SkipWithError(Result.Error.toStdString().c_str());
      break;
    }
    auto Report = std::make_shared<const trainmem::MemoryReport>(std::move(*Result.Report));
    Chart.setReport(Report);
    Tensors.setReport(Report);
    benchmark::DoNotOptimize(Chart.drawnMaximum());
  }
}
BENCHMARK(BM_GuiReanalysisLlama7B)->Unit(benchmark::kMillisecond);

} // namespace

int main(int Argc, char **Argv) {
  qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication App(Argc, Argv);
  benchmark::Initialize(&Argc, Argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
