//===- DiffCommand.cpp - `trainmem diff` -----------------------------------------===//
//
// Compares two reports written by `trainmem analyze --format=json` (a base, e.g. from the
// main branch, and a new one from a change): the peak and each category, the layers and
// the tensors at the peak that changed most. With --max-increase it is a CI gate: exit 2
// when the peak grew past the limit, with the growth explained.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"

#include "analyzer/ReportDiff.h"
#include "analyzer/Units.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace cl = llvm::cl;

namespace trainmem::cli {

cl::SubCommand &diffCommand() {
  static cl::SubCommand Cmd("diff", "Compare two analyze --format=json reports: peak, "
                                    "categories, layers and peak tensors; with "
                                    "--max-increase, exit 2 when the peak grew past it");
  return Cmd;
}

namespace {

cl::OptionCategory DiffCategory("Diff options");

cl::list<std::string> Files(cl::Positional, cl::desc("BASE.json NEW.json"), cl::OneOrMore,
                            cl::sub(diffCommand()), cl::cat(DiffCategory));
cl::opt<std::string> MaxIncrease("max-increase",
                                 cl::desc("Fail (exit 2) when the peak grew by more than this: "
                                          "a percentage of the base peak (5%) or a size "
                                          "(512MiB)"),
                                 cl::value_desc("pct|size"), cl::sub(diffCommand()),
                                 cl::cat(DiffCategory));
cl::opt<std::string> DiffFormat("format",
                                cl::desc("Output format: text | markdown | json (default text)"),
                                cl::init("text"), cl::sub(diffCommand()), cl::cat(DiffCategory));
cl::opt<std::string> DiffOutput("o", cl::desc("Write to FILE (atomically) instead of stdout"),
                                cl::value_desc("file"), cl::init("-"), cl::sub(diffCommand()),
                                cl::cat(DiffCategory));
cl::opt<unsigned> Top("top", cl::desc("Layers and tensors to list (default 10)"), cl::init(10),
                      cl::sub(diffCommand()), cl::cat(DiffCategory));

std::string signedBytes(int64_t Bytes) {
  if (Bytes == 0)
    return "0 B";
  return (Bytes > 0 ? "+" : "-") + formatBytes(Bytes > 0 ? Bytes : -Bytes);
}

std::string change(const FigureDelta &F) {
  std::string Out = signedBytes(F.change());
  if (!F.New)
    Out += " (gone)";
  else if (!F.Base)
    Out += " (new)";
  else if (auto P = F.percent())
    Out += llvm::formatv(" ({0}{1:f1}%)", *P >= 0 ? "+" : "", *P).str();
  return Out;
}

std::string bytesOrDash(const std::optional<int64_t> &B) { return B ? formatBytes(*B) : "-"; }

void writeText(const ReportDiff &D, const std::optional<std::string> &Regression,
               llvm::raw_ostream &OS) {
  OS << "trainmem diff: " << D.BaseFile << " (" << D.BaseModel << ") -> " << D.NewFile << " ("
     << D.NewModel << ")\n";
  OS << "peak at: " << D.BasePeakAt << " -> " << D.NewPeakAt << "\n\n";
  OS << llvm::formatv("  {0,-18} {1,12} {2,12}  {3}\n", "figure", "base", "new", "change");
  for (const FigureDelta &F : D.Figures)
    OS << llvm::formatv("  {0,-18} {1,12} {2,12}  {3}\n", F.Name, bytesOrDash(F.Base),
                        bytesOrDash(F.New), change(F));
  auto List = [&](const char *Title, const std::vector<FigureDelta> &Items) {
    OS << "\n" << Title << (Items.empty() ? ": none changed\n" : ":\n");
    for (const FigureDelta &F : Items)
      OS << llvm::formatv("  {0,-44} {1,12} {2,12}  {3}\n", F.Name, bytesOrDash(F.Base),
                          bytesOrDash(F.New), change(F));
  };
  List("layers that changed most (weights + gradients + states + saved)", D.Layers);
  List("tensors live at the peak that changed most", D.Tensors);
  OS << "\n" << (Regression ? "REGRESSION: " + *Regression : std::string("no regression"))
     << "\n";
}

void writeMarkdown(const ReportDiff &D, const std::optional<std::string> &Regression,
                   llvm::raw_ostream &OS) {
  OS << "### trainmem: memory of one training step, " << D.BaseModel << "\n\n";
  if (Regression)
    OS << "**Regression:** " << *Regression << ".\n\n";
  OS << "| figure | base | new | change |\n| --- | ---: | ---: | ---: |\n";
  for (const FigureDelta &F : D.Figures)
    OS << "| " << F.Name << " | " << bytesOrDash(F.Base) << " | " << bytesOrDash(F.New)
       << " | " << change(F) << " |\n";
  OS << "\nPeak at: " << D.BasePeakAt << " → " << D.NewPeakAt << "\n";
  auto List = [&](const char *Title, const std::vector<FigureDelta> &Items) {
    if (Items.empty())
      return;
    OS << "\n<details><summary>" << Title << "</summary>\n\n"
       << "| name | base | new | change |\n| --- | ---: | ---: | ---: |\n";
    for (const FigureDelta &F : Items)
      OS << "| `" << F.Name << "` | " << bytesOrDash(F.Base) << " | " << bytesOrDash(F.New)
         << " | " << change(F) << " |\n";
    OS << "\n</details>\n";
  };
  List("Layers that changed most", D.Layers);
  List("Tensors at the peak that changed most", D.Tensors);
}

} // namespace

int runDiff() {
  if (Files.size() != 2)
    return reportError(llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "diff takes two reports, BASE.json NEW.json (from trainmem analyze --format=json); "
        "got %zu",
        Files.size()));
  if (DiffFormat != "text" && DiffFormat != "markdown" && DiffFormat != "json")
    return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                               "--format=%s: diff writes text, markdown or json",
                                               DiffFormat.c_str()));
  std::optional<IncreaseLimit> Limit;
  if (!MaxIncrease.empty()) {
    auto L = parseIncreaseLimit(MaxIncrease);
    if (!L)
      return reportError(L.takeError());
    Limit = *L;
  }
  ReportFigures Reports[2];
  for (int I = 0; I < 2; ++I) {
    auto Buffer = llvm::MemoryBuffer::getFile(Files[I], /*IsText=*/true);
    if (!Buffer)
      return reportError(llvm::createStringError(Buffer.getError(), "%s: cannot read: %s",
                                                 Files[I].c_str(),
                                                 Buffer.getError().message().c_str()));
    auto R = readReportFigures((*Buffer)->getBuffer(), Files[I]);
    if (!R)
      return reportError(R.takeError());
    Reports[I] = std::move(*R);
  }
  ReportDiff D = diffReports(Reports[0], Reports[1], Top);
  std::optional<std::string> Regression;
  if (Limit)
    Regression = checkIncrease(D, *Limit);
  if (llvm::Error E = writeOutput(DiffOutput, [&](llvm::raw_ostream &OS) {
        if (DiffFormat == "json")
          OS << llvm::formatv("{0:2}", diffToJson(D, Regression)) << "\n";
        else if (DiffFormat == "markdown")
          writeMarkdown(D, Regression, OS);
        else
          writeText(D, Regression, OS);
        return llvm::Error::success();
      }))
    return reportError(std::move(E));
  if (Regression) {
    llvm::WithColor::error(llvm::errs(), "trainmem") << "regression: " << *Regression << "\n";
    return ExitGateFailed;
  }
  return ExitOk;
}

} // namespace trainmem::cli
