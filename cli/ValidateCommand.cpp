//===- ValidateCommand.cpp - `trainmem validate` ---------------------------------===//
//
// Predicts the step exactly as `analyze` does (the shared predictStep path), runs the same
// step for real with the cupti_probe executor, and lines the two up per category and at
// the peak. The setup is adjusted to the device the step runs on (a host run is a CPU
// device) and the output says so. Exit 2 when the peak's error passes --max-error.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/MemoryReport.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/SafeJson.h"
#include "analyzer/Units.h"
#include "cupti_probe/CuptiProbe.h"
#include "cupti_probe/Executor.h"
#include "planner/StrategyApply.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <optional>

namespace cl = llvm::cl;

namespace trainmem::cli {
namespace {

cl::OptionCategory ValidateCategory("Validation options");
cl::opt<std::string> DeviceOpt("device",
                               cl::desc("Where the step runs: host (the kernels' C++ twin under "
                                        "a tracking allocator) or cuda[:N] (the CUDA twin "
                                        "under CUPTI); default host"),
                               cl::init("host"), cl::sub(validateCommand()),
                               cl::cat(ValidateCategory));
cl::opt<unsigned> StepsOpt("steps",
                           cl::desc("Training steps to run; the last is measured (default 2: "
                                    "step 2 is the steady state, optimizer states exist)"),
                           cl::init(2), cl::sub(validateCommand()), cl::cat(ValidateCategory));
cl::opt<bool> TimelineOpt("timeline",
                          cl::desc("JSON: add both timelines (live bytes per op, one point per "
                                   "op and phase, the op's largest total)"),
                          cl::sub(validateCommand()), cl::cat(ValidateCategory));
cl::opt<double> MaxError("max-error",
                         cl::desc("Exit 2 when the peak's error passes PCT percent"),
                         cl::value_desc("PCT"), cl::init(-1.0), cl::sub(validateCommand()),
                         cl::cat(ValidateCategory));

llvm::Error usage(const std::string &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s", Msg.c_str());
}

/// Relative error in percent; none when the prediction is 0 and the measurement is not.
std::optional<double> errorPct(int64_t Predicted, int64_t Measured) {
  if (Predicted == 0)
    return Measured == 0 ? std::optional<double>(0.0) : std::nullopt;
  return 100.0 * static_cast<double>(Measured - Predicted) / static_cast<double>(Predicted);
}

std::string pct(std::optional<double> E) {
  return E ? llvm::formatv("{0}{1:F2}%", *E >= 0 ? "+" : "", *E).str() : "n/a";
}

llvm::json::Object byCategory(const CategoryBytes &B) {
  llvm::json::Object O;
  for (const CategoryField &F : CategoryFields)
    O[F.Name] = B.*F.Member;
  return O;
}

/// One point per run of consecutive points with the same phase and op: the largest total.
llvm::json::Array timelineJson(const std::vector<TimelinePoint> &Points) {
  llvm::json::Array Out;
  std::string Phase, Op;
  int64_t Largest = -1;
  auto Flush = [&] {
    if (Largest >= 0)
      Out.push_back(llvm::json::Object{
          {"phase", jsonString(Phase)}, {"op", jsonString(Op)}, {"live", Largest}});
  };
  for (const TimelinePoint &P : Points) {
    std::string PointOp = P.Layer.empty() ? P.Op : P.Op + " (" + P.Layer + ")";
    if (P.Phase != Phase || PointOp != Op) {
      Flush();
      Phase = P.Phase;
      Op = PointOp;
      Largest = -1;
    }
    Largest = std::max(Largest, P.Live.total());
  }
  Flush();
  return Out;
}

struct Outcome {
  MemoryReport Predicted;
  probe::MeasuredStep Measured;
  std::string DeviceName;
  std::vector<std::string> Adjustments;
};

llvm::json::Object toJson(const Outcome &R) {
  const MemoryReport &P = R.Predicted;
  const probe::MeasuredStep &M = R.Measured;
  CategoryBytes PredAt = P.PeakInfo ? P.PeakInfo->ByCategory : CategoryBytes{};
  llvm::json::Object Errors{{"peak", errorPct(P.Peak.value_or(0), M.Peak)}};
  llvm::json::Object CatErrors;
  for (const CategoryField &F : CategoryFields)
    CatErrors[F.Name] = errorPct(PredAt.*F.Member, M.AtPeak.*F.Member);
  Errors["by_category"] = std::move(CatErrors);
  Errors["saved_for_backward"] = errorPct(P.Bytes.Activations, M.SavedAtEndOfForward);
  llvm::json::Array Top;
  for (const TensorSummary &T : M.TopTensors)
    Top.push_back(llvm::json::Object{{"name", jsonString(T.Name)}, {"category", T.Category},
                                     {"op", jsonString(T.Op)}, {"layer", jsonString(T.Layer)},
                                     {"bytes", T.Bytes}});
  llvm::json::Object Measured{{"peak", M.Peak},
                              {"by_category", byCategory(M.AtPeak)},
                              {"source", M.Source},
                              {"phase", jsonString(M.PeakPhase)},
                              {"op", jsonString(M.PeakOp)},
                              {"saved_for_backward", M.SavedAtEndOfForward},
                              {"max_by_category", byCategory(M.MaxByCategory)},
                              {"constant_bytes", M.ConstantBytes},
                              {"allocations", M.Allocations},
                              {"top_tensors", std::move(Top)}};
  llvm::json::Array Losses;
  for (float L : M.Losses)
    Losses.push_back(static_cast<double>(L));
  Measured["losses"] = std::move(Losses);
  if (M.DeviceUsedPeak)
    Measured["device_used_peak"] = *M.DeviceUsedPeak;
  if (!M.Kernels.empty()) {
    llvm::json::Array Kernels;
    for (const probe::KernelTime &K : M.Kernels)
      Kernels.push_back(llvm::json::Object{{"name", K.Name}, {"calls", K.Calls},
                                           {"total_us", K.TotalUs}});
    Measured["kernels"] = std::move(Kernels);
  }
  llvm::json::Object Predicted{{"peak", P.Peak.value_or(0)},
                               {"by_category", byCategory(PredAt)},
                               {"phase", jsonString(P.PeakInfo ? P.PeakInfo->Phase : "")},
                               {"op", jsonString(P.PeakInfo ? P.PeakInfo->Op : "")},
                               {"saved_for_backward", P.Bytes.Activations}};
  if (TimelineOpt) {
    Predicted["timeline"] = timelineJson(P.Timeline);
    Measured["timeline"] = timelineJson(M.Timeline);
  }
  llvm::json::Array Notes;
  for (const std::string &N : R.Adjustments)
    Notes.push_back(N);
  for (const std::string &N : M.Notes)
    Notes.push_back(N);
  return llvm::json::Object{
      {"schema", "trainmem.validate/1"},
      {"model", P.Model.Name},
      {"device", R.DeviceName},
      {"steps", M.StepsRun},
      {"measured_step", M.StepsRun},
      {"setup", setupToJson(P.Setup)},
      {"predicted", std::move(Predicted)},
      {"measured", std::move(Measured)},
      {"errors", std::move(Errors)},
      {"notes", std::move(Notes)}};
}

void writeText(const Outcome &R, llvm::raw_ostream &OS) {
  const MemoryReport &P = R.Predicted;
  const probe::MeasuredStep &M = R.Measured;
  CategoryBytes PredAt = P.PeakInfo ? P.PeakInfo->ByCategory : CategoryBytes{};
  OS << "trainmem validate: " << P.Model.Name << " on " << R.DeviceName << " (measured by the "
     << M.Source << "), step " << M.StepsRun << " of " << M.StepsRun << " measured\n";
  for (const std::string &N : R.Adjustments)
    OS << "note: " << N << "\n";
  OS << "\n"
     << llvm::formatv("{0,-22}{1,16}{2,16}{3,10}\n", "at the peak", "predicted", "measured",
                      "error");
  for (const CategoryField &F : CategoryFields)
    OS << llvm::formatv("{0,-22}{1,16}{2,16}{3,10}\n", F.Name, PredAt.*F.Member,
                        M.AtPeak.*F.Member, pct(errorPct(PredAt.*F.Member, M.AtPeak.*F.Member)));
  OS << llvm::formatv("{0,-22}{1,16}{2,16}{3,10}\n", "peak", P.Peak.value_or(0), M.Peak,
                      pct(errorPct(P.Peak.value_or(0), M.Peak)));
  OS << llvm::formatv("{0,-22}{1,16}{2,16}{3,10}\n", "saved for backward", P.Bytes.Activations,
                      M.SavedAtEndOfForward, pct(errorPct(P.Bytes.Activations,
                                                          M.SavedAtEndOfForward)));
  OS << "\npredicted peak: " << formatBytes(P.Peak.value_or(0)) << " in "
     << (P.PeakInfo ? P.PeakInfo->Phase + ", " + P.PeakInfo->Op : std::string("?")) << "\n";
  OS << "measured peak:  " << formatBytes(M.Peak) << " in " << M.PeakPhase << ", " << M.PeakOp
     << "\n";
  OS << "\nlargest allocations live at the measured peak:\n";
  for (const TensorSummary &T : M.TopTensors)
    OS << llvm::formatv("  {0,12}  {1,-16} {2} ({3})\n", T.Bytes, T.Category, T.Name, T.Op);
  OS << "\nlosses:";
  for (float L : M.Losses)
    OS << llvm::formatv(" {0:F4}", L);
  OS << "   allocations: " << M.Allocations << "   constants materialised: " << M.ConstantBytes
     << " B (ONNX literals; PyTorch holds them as Python numbers, not counted)\n";
  if (M.DeviceUsedPeak)
    OS << "cudaMemGetInfo: " << formatBytes(*M.DeviceUsedPeak)
       << " in use at the largest sample (CUDA context included)\n";
  if (!M.Kernels.empty()) {
    OS << "kernel time (CUPTI):\n";
    for (size_t I = 0; I < M.Kernels.size() && I < 10; ++I)
      OS << llvm::formatv("  {0,10:F1} us {1,6} calls  {2}\n", M.Kernels[I].TotalUs,
                          M.Kernels[I].Calls, M.Kernels[I].Name);
  }
  for (const std::string &N : M.Notes)
    OS << "note: " << N << "\n";
}

/// What the kernel reckons can still be allocated without swapping (MemAvailable in
/// /proc/meminfo), where it says; /proc files are read as streams (their size reads 0).
std::optional<int64_t> hostMemoryAvailable() {
  auto Info = llvm::MemoryBuffer::getFileAsStream("/proc/meminfo");
  if (!Info)
    return std::nullopt;
  llvm::StringRef Rest = (*Info)->getBuffer();
  while (!Rest.empty()) {
    llvm::StringRef Line;
    std::tie(Line, Rest) = Rest.split('\n');
    if (!Line.consume_front("MemAvailable:"))
      continue;
    Line = Line.trim();
    int64_t KiB = 0;
    if (Line.consume_back("kB") && !Line.trim().getAsInteger(10, KiB))
      return KiB * 1024;
    return std::nullopt;
  }
  return std::nullopt;
}

} // namespace

int runValidate() {
  std::string Format = outputFormat();
  if (Format != "text" && Format != "json")
    return reportError(usage("--format=" + Format + ": validate writes text or json"));
  llvm::StringRef Device = DeviceOpt.getValue();
  int CudaIndex = -1;
  if (Device.consume_front("cuda")) {
    CudaIndex = 0;
    bool Bad = !Device.empty() && (!Device.consume_front(":") ||
                                   Device.getAsInteger(10, CudaIndex) || CudaIndex < 0);
    if (Bad)
      return reportError(usage("--device=" + DeviceOpt + ": expected host, cuda or cuda:N"));
  } else if (Device != "host") {
    return reportError(usage("--device=" + DeviceOpt + ": expected host, cuda or cuda:N"));
  }
  if (StepsOpt == 0)
    return reportError(usage("--steps: expected a positive integer"));
  auto Request = parseStepRequest(CudaIndex >= 0);
  if (!Request)
    return reportError(Request.takeError());
  Outcome R;
  // The step the executor runs: a CPU device on the host (PyTorch's CPU kernels, what the
  // gt fixtures measured), CUDA on a GPU.
  TrainingSetup &Setup = Request->Setup;
  Setup.Device = CudaIndex >= 0 ? DeviceKind::Cuda : DeviceKind::Cpu;
  Setup.Autocast = CudaIndex >= 0 ? AutocastPolicy::Cuda : AutocastPolicy::Cpu;
  R.Adjustments.push_back(std::string("predicted as --device=") + deviceName(Setup.Device) +
                          ", the device the step runs on");
  TrainingSetup ExecSetup = Setup;
  std::unique_ptr<kernels::Device> Dev;
  if (CudaIndex >= 0) {
    std::string Why;
    Dev = kernels::makeCudaDevice(CudaIndex, Why);
    if (!Dev)
      return reportError(usage("--device=" + DeviceOpt + ": no usable CUDA device: " + Why));
  } else {
    Dev = kernels::makeHostDevice();
  }
  R.DeviceName = Dev->name();
  auto Predicted = predictStep(*Request);
  if (!Predicted)
    return reportError(Predicted.takeError());
  R.Predicted = std::move(*Predicted);
  // The step really runs: on the host, a model whose predicted peak does not fit in the
  // memory the kernel has left would be killed by the OOM killer (or swap for hours)
  // partway through, where a message can say what to do instead. A fifth is kept back for
  // what the prediction leaves out (the process, the allocator's slack).
  if (!Dev->isCuda())
    if (auto Available = hostMemoryAvailable();
        Available && R.Predicted.Peak.value_or(0) > *Available / 5 * 4)
      return reportError(usage(
          "the step would need about " + formatBytes(R.Predicted.Peak.value_or(0)) +
          " (the predicted peak) and this machine has " + formatBytes(*Available) +
          " available: validate runs the real step, so validate a smaller shape of the model "
          "(fewer layers in the config, a smaller --dim batch or seq); `trainmem analyze` "
          "predicts the full one"));
  // The executor runs the same strategies on its own copy of the graph.
  auto G = importRequestedModel(*Request);
  if (!G)
    return reportError(G.takeError());
  if (llvm::Error E = applyStrategies(*G, ExecSetup))
    return reportError(std::move(E));
  auto Census = takeCensus(*G, ExecSetup);
  if (!Census)
    return reportError(Census.takeError());
  probe::ExecutorOptions Options;
  Options.Steps = static_cast<int>(StepsOpt);
  if (Setup.Galore) {
    // The predicted peak includes the projector's SVD, which a run does every update gap;
    // the measured step must hold it too.
    Options.GaloreRefreshEveryStep = true;
    R.Adjustments.push_back("GaLore: the executor refreshes the projectors at every step, so "
                            "the measured step holds the SVD that every " +
                            std::to_string(Setup.Galore->UpdateGap) +
                            "th step runs (the predicted peak includes it)");
  }
  std::unique_ptr<probe::CuptiSession> Session;
  if (Dev->isCuda()) {
    auto S = probe::CuptiSession::start();
    if (!S)
      return reportError(S.takeError());
    Session = std::move(*S);
    Options.AfterEachOp = [&Session] { Session->sampleMemInfo(); };
    Options.BeforeMeasuredStep = [&Session] { Session->markMeasuredStep(); };
  }
  auto Measured = probe::executeTrainingSteps(*G, ExecSetup, *Census, *Dev, Options);
  if (!Measured)
    return reportError(Measured.takeError());
  R.Measured = std::move(*Measured);
  if (Session)
    if (llvm::Error E = Session->finish(R.Measured))
      return reportError(std::move(E));
  llvm::json::Object Json = toJson(R);
  if (llvm::Error E = writeOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json")
          OS << llvm::formatv("{0:2}", llvm::json::Value(llvm::json::Object(Json))) << "\n";
        else
          writeText(R, OS);
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  if (llvm::Error E = recordRun("validate", *Request, R.Predicted.Model.Name,
                                setupToJson(R.Predicted.Setup), llvm::json::Object(Json),
                                R.Measured.Peak, R.Measured.DeviceUsedPeak))
    return reportError(std::move(E));
  auto PeakError = errorPct(R.Predicted.Peak.value_or(0), R.Measured.Peak);
  if (MaxError >= 0 && (!PeakError || std::fabs(*PeakError) > MaxError)) {
    llvm::errs() << "trainmem: validate: the peak's error " << pct(PeakError)
                 << " passes --max-error=" << llvm::formatv("{0:F4}", MaxError.getValue()) << "%\n";
    return ExitGateFailed;
  }
  return ExitOk;
}

} // namespace trainmem::cli
