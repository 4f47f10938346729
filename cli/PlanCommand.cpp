//===- PlanCommand.cpp - `trainmem plan` ------------------------------------------===//
//
// Searches strategies for a target GPU and prints the ranked plans: what each needs
// against the GPU's usable memory, its relative step time, what it gives up, the
// engines that run it and the largest micro-batch that fits.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/Units.h"
#include "planner/GpuCatalog.h"
#include "planner/LoraTransform.h"
#include "planner/ConfigEmitters.h"
#include "planner/PlanSearch.h"

#include "llvm/Support/BuryPointer.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

namespace cl = llvm::cl;

namespace trainmem::cli {
namespace {

cl::OptionCategory PlanCategory("Plan options");
cl::opt<std::string> Objective("objective",
                               cl::desc("fit-fastest (default) | max-trainable | max-batch"),
                               cl::init("fit-fastest"), cl::sub(planCommand()),
                               cl::cat(PlanCategory));
cl::opt<std::string> Emit("emit",
                          cl::desc("Write the configs that run the best fitting plan on an engine: "
                                   "hf | deepspeed | accelerate-fsdp | torchtune (into the "
                                   "folder -o names; the ranking still goes to stdout)"),
                          cl::value_desc("engine"), cl::sub(planCommand()), cl::cat(PlanCategory));
cl::opt<std::string> Budget("budget",
                            cl::desc("Memory per GPU a plan may use (e.g. 70GiB); default the "
                                     "GPU's usable memory"),
                            cl::value_desc("size"), cl::sub(planCommand()), cl::cat(PlanCategory));

int64_t batchOf(const Graph &G) {
  for (const DimBinding &D : G.Dims)
    if (D.Name == "batch")
      return D.Value;
  for (TensorId In : G.Inputs)
    if (!G.Tensors[In].Shape.empty())
      return G.Tensors[In].Shape[0];
  return 1;
}

/// The engines whose configs carry a plan out; "none" where only a hand-written training
/// loop does (a sparse update set, layer-wise GaLore with accumulation).
std::string engineList(const Plan &P, llvm::StringRef Separator) {
  std::string Out;
  for (const std::string &Engine : P.Engines)
    Out += (Out.empty() ? "" : Separator.str()) + Engine;
  return Out.empty() ? "none" : Out;
}

/// The skipped candidates grouped by their reason, in the search's order: the names that
/// share a reason (LoRA r=16, r=64 and QLoRA, each with and without checkpointing) once.
std::vector<std::pair<std::string, std::vector<std::string>>>
skippedByReason(const std::vector<SkippedPlan> &Skipped) {
  std::vector<std::pair<std::string, std::vector<std::string>>> Groups;
  for (const SkippedPlan &S : Skipped) {
    auto It = llvm::find_if(Groups, [&](const auto &G) { return G.first == S.Why; });
    if (It == Groups.end()) {
      Groups.push_back({S.Why, {}});
      It = Groups.end() - 1;
    }
    It->second.push_back(S.Name);
  }
  return Groups;
}

} // namespace

int runPlan() {
  std::string Format = outputFormat();
  if (Format != "text" && Format != "json" && Format != "markdown")
    return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                               "--format=%s: plan writes text, json or markdown",
                                               Format.c_str()));
  auto Request = parseStepRequest(/*TargetsGpu=*/true);
  if (!Request)
    return reportError(Request.takeError());
  if (Request->Setup.Gpu.empty())
    return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                               "plan needs --gpu=NAME (see trainmem gpus)"));
  auto Objectives = parsePlanObjective(Objective);
  if (!Objectives)
    return reportError(Objectives.takeError());
  auto Catalog = GpuCatalog::loadConfigured();
  if (!Catalog)
    return reportError(Catalog.takeError());
  auto Gpu = Catalog->lookup(Request->Setup.Gpu);
  if (!Gpu)
    return reportError(Gpu.takeError());
  // The batch the user asked for (dim 0 of the inputs) is the global batch per GPU.
  auto First = importRequestedModel(*Request);
  if (!First)
    return reportError(First.takeError());
  PlanRequest Plan;
  Plan.Gpu = *Gpu;
  Plan.Budget = Gpu->UsableBytes;
  if (!Budget.empty()) {
    auto B = parseBytes(Budget);
    if (!B)
      return reportError(B.takeError());
    Plan.Budget = *B;
  }
  Plan.Base = Request->Setup;

  Plan.Gpus = Request->Setup.Sharding.Gpus;
  Plan.Objective = *Objectives;
  Plan.GlobalBatch = batchOf(*First);
  StepRequest Base = *Request;
  Plan.Model = [Base](int64_t MicroBatch) -> llvm::Expected<Graph> {
    StepRequest ForMicroBatch = Base; // a copy: the search may call this from two threads
    ForMicroBatch.Import.MicroBatch = MicroBatch;
    return importRequestedModel(ForMicroBatch);
  };
  EmitContext Ctx;
  Ctx.ModelName = First->Name;
  Ctx.ModelSource = First->SourcePath;
  Ctx.Architecture = First->Architecture;
  Ctx.CheckpointQuantization = First->DeclaredCheckpointQuantization;
  Ctx.PeftTaskType = First->PeftTaskType;
  Ctx.PeftExcludeModules = headLinearsPeftWouldAdapt(*First);
  Plan.Emit = Ctx;
  std::optional<ConfigTarget> Target;
  std::string EmitDir;
  if (!Emit.empty()) {
    auto T = parseConfigTarget(Emit);
    if (!T)
      return reportError(T.takeError());
    Target = *T;
    EmitDir = outputPath();
    if (EmitDir == "-")
      return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                                 "--emit needs -o DIR, the folder to write "
                                                 "the configs into"));
  }
  // The search's graphs and simulations (~100 MB in many small allocations for 7B) are
  // left to the process's exit, as clang's -disable-free does: freeing them one by one
  // took a tenth of a 7B plan's time, after the answer was known.
  Plan.Simulations = std::make_shared<SimulationCache>();
  llvm::BuryPointer(std::make_unique<std::shared_ptr<SimulationCache>>(Plan.Simulations));
  std::vector<SkippedPlan> Skipped;
  Plan.Skipped = &Skipped;
  auto Plans = searchPlans(Plan);
  if (!Plans)
    return reportError(Plans.takeError());
  // searchPlans switched the cache off where the setup left it to the model's config.
  const bool CacheOff = Plan.Base.KvCache == KvCacheMode::Auto && !Plans->empty() &&
                        Plans->front().Setup.KvCache == KvCacheMode::Off;
  if (Target) {
    const trainmem::Plan *Chosen = nullptr;
    for (const trainmem::Plan &P : *Plans)
      if (P.Fits && std::find(P.Engines.begin(), P.Engines.end(), Emit.getValue()) !=
                        P.Engines.end()) {
        Chosen = &P;
        break;
      }
    if (!Chosen)
      return reportError(llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          "--emit=%s: no plan that fits runs on %s (see the ranking with --format=text)",
          Emit.getValue().c_str(), Emit.getValue().c_str()));
    Ctx.MicroBatch = Chosen->MicroBatch;
    if (llvm::Error E = writeConfigs(*Target, Chosen->Setup, Ctx, EmitDir))
      return reportError(std::move(E));
    llvm::outs() << "wrote the " << Emit << " configs for plan '" << Chosen->Name
                 << "' (micro-batch " << Chosen->MicroBatch << " x " << Chosen->GradAccum
                 << ", needs " << formatBytes(Chosen->Required) << " of "
                 << formatBytes(Plan.Budget) << ") into " << EmitDir << "\n";
    return ExitOk;
  }
  if (llvm::Error E = writeOutput(outputPath(), [&](llvm::raw_ostream &OS) {
        if (Format == "json") {
          llvm::json::Value Json = plansToJson(*Plans, Plan);
          if (Request->Import.PaddedBatches) // only when set: other plans' JSON unchanged
            if (llvm::json::Object *O = Json.getAsObject())
              (*O)["padded_batches"] = true;
          OS << llvm::formatv("{0:2}", Json) << "\n";
          return llvm::Error::success();
        }
        if (Format == "markdown") {
          OS << "### trainmem plan: " << First->Name << " on " << Gpu->DisplayName
             << (Plan.Gpus > 1 ? " x" + std::to_string(Plan.Gpus) : "") << "\n\n"
             << "Budget " << formatBytes(Plan.Budget) << " per GPU, batch " << Plan.GlobalBatch
             << " per GPU" << (Request->Import.PaddedBatches ? " (padded)" : "")
             << ", objective `" << planObjectiveName(Plan.Objective) << "`.\n\n"
             << "| rank | plan | micro-batch × accumulation | needs per GPU | fits | step time "
                "| fidelity | engines | largest micro-batch |\n"
             << "| ---: | --- | ---: | ---: | :---: | ---: | --- | --- | ---: |\n";
          for (size_t I = 0; I < Plans->size(); ++I) {
            const trainmem::Plan &P = (*Plans)[I];
            std::string Engines = engineList(P, ", ");
            OS << "| " << I + 1 << " | " << P.Name << (P.Pareto ? " ★" : "") << " | "
               << P.MicroBatch << " × " << P.GradAccum << " | " << formatBytes(P.Required)
               << " | " << (P.Fits ? "yes" : "no") << " | "
               << llvm::format("%.2f", P.Overhead) << "× | " << fidelityName(P.Fid) << " | "
               << Engines << " | " << P.MaxMicroBatch << " |\n";
          }
          OS << "\n★ on the Pareto front of memory against step time. Needs: peak_reserved "
                "(caching allocator reserve plus CUDA context). Step time relative to a full "
                "fine-tune step without checkpointing (coarse estimate).\n";
          if (CacheOff)
            OS << "\nEvery plan trains with `use_cache=False` (the emitted `from_pretrained` "
                  "arguments set it): the key/value cache a decoder's forward fills by default "
                  "costs memory and nothing else in training.\n";
          for (const auto &[Why, Names] : skippedByReason(Skipped))
            OS << "\nNot applicable to this model: " << llvm::join(Names, "; ") << " (" << Why
               << ").\n";
          return llvm::Error::success();
        }
        OS << "trainmem plan: " << First->Name << " on " << Gpu->DisplayName;
        if (Plan.Gpus > 1)
          OS << " x" << Plan.Gpus;
        OS << " (budget " << formatBytes(Plan.Budget) << " per GPU, batch " << Plan.GlobalBatch
           << " per GPU" << (Request->Import.PaddedBatches ? ", padded" : "") << ", objective "
           << planObjectiveName(Plan.Objective) << ")\n\n";
        OS << llvm::formatv("{0,4}  {1,-68} {2,9} {3,12} {4,5} {5,7} {6,-17} {7}\n", "rank",
                            "plan", "batch", "needs", "fits", "time", "fidelity", "engines");
        for (size_t I = 0; I < Plans->size(); ++I) {
          const trainmem::Plan &P = (*Plans)[I];
          std::string Batch = std::to_string(P.MicroBatch) +
                              (P.GradAccum > 1 ? "x" + std::to_string(P.GradAccum) : "");
          std::string Engines = engineList(P, ",");
          OS << llvm::format("%4zu  %-68s %9s %12s %5s %6.2fx %-17s %s\n", I + 1,
                             (P.Name + (P.Pareto ? " *" : "")).c_str(), Batch.c_str(),
                             formatBytes(P.Required).c_str(), P.Fits ? "yes" : "no",
                             P.Overhead, fidelityName(P.Fid), Engines.c_str());
          OS << "      " << P.Why;
          if (P.MaxMicroBatch)
            OS << "; largest micro-batch that fits: " << P.MaxMicroBatch;
          OS << "\n";
        }
        OS << "\nbatch: micro-batch x accumulation steps. needs: peak_reserved per GPU (the "
              "caching allocator's reserve plus the CUDA context). time: estimated step time "
              "relative to a full fine-tune step without checkpointing. * on the Pareto front "
              "of memory against time.\n";
        if (CacheOff)
          OS << "use_cache: every plan trains with use_cache=False (the emitted from_pretrained "
                "arguments set it): the key/value cache a decoder's forward fills by default "
                "costs memory and nothing else in training.\n";
        for (const auto &[Why, Names] : skippedByReason(Skipped)) {
          OS << "\nnot applicable to this model: " << Why << "\n";
          for (const std::string &Name : Names)
            OS << "      " << Name << "\n";
        }
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  // The history keeps the ranked plans; its peak is the best plan's requirement.
  if (!Plans->empty())
    if (llvm::Error E = recordRun("plan", *Request, First->Name,
                                  setupToJson(Plans->front().Setup), plansToJson(*Plans, Plan),
                                  Plans->front().Required, std::nullopt))
      return reportError(std::move(E));
  return ExitOk;
}

} // namespace trainmem::cli
