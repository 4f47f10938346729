//===- GpusCommand.cpp - `trainmem gpus` -----------------------------------------===//
//
// Lists the GPU catalogue that `--gpu=NAME` resolves against, or shows one GPU with the
// sources of its figures. Memory is shown in binary units as the driver reports it, the
// figure a plan must fit in; bandwidth and rates in the decimal units vendors quote.
// JSON output is itself a trainmem.gpus/1 catalogue, so it can be edited and fed back
// with --catalog.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"

#include "analyzer/Units.h"
#include "planner/GpuCatalog.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

namespace cl = llvm::cl;

namespace trainmem::cli {

cl::SubCommand &gpusCommand() {
  static cl::SubCommand Cmd("gpus",
                            "List the GPU catalogue, or show one GPU (by name, nvidia-smi name, "
                            "unique prefix or the words of its name in any order, as "
                            "4090 or pcie-a100-40gb): usable memory, bandwidth, peak rates, "
                            "precisions");
  return Cmd;
}

namespace {

cl::OptionCategory GpusCategory("GPU catalogue options");

cl::opt<std::string> GpuName(cl::Positional, cl::desc("[gpu]"), cl::sub(gpusCommand()),
                             cl::cat(GpusCategory));
cl::opt<std::string> CatalogPath("catalog",
                                 cl::desc("Read the GPU catalogue from FILE (trainmem.gpus/1 "
                                          "JSON) instead of the built-in one; "
                                          "$TRAINMEM_GPU_CATALOG does the same"),
                                 cl::value_desc("file"), cl::sub(gpusCommand()),
                                 cl::cat(GpusCategory));
cl::opt<std::string> GpusFormat("format", cl::desc("Output format: text | json (default text)"),
                                cl::init("text"), cl::sub(gpusCommand()), cl::cat(GpusCategory));

/// "2.04" -> "2.04", "67.00" -> "67", "989.50" -> "989.5": vendor figures as written.
std::string formatDecimal(double Value) {
  std::string Text = llvm::formatv("{0:f2}", Value).str();
  while (Text.back() == '0')
    Text.pop_back();
  if (Text.back() == '.')
    Text.pop_back();
  return Text;
}

std::string formatGiB(int64_t Bytes) {
  return llvm::formatv("{0:f2} GiB", static_cast<double>(Bytes) / (1024.0 * 1024 * 1024)).str();
}

std::string formatBandwidth(const GpuSpec &G) {
  if (!G.BandwidthBytesPerSecond)
    return "-";
  return formatDecimal(*G.BandwidthBytesPerSecond / 1e9) + " GB/s";
}

std::string formatTflops(std::optional<double> Flops) {
  return Flops ? formatDecimal(*Flops / 1e12) : "-";
}

std::string dtypeList(const GpuSpec &G) {
  std::string Text;
  for (MathPrecision P : allMathPrecisions())
    if (G.supports(P))
      Text += (Text.empty() ? "" : " ") + mathPrecisionName(P).str();
  return Text;
}

std::string catalogueLabel(const GpuCatalog &Catalog) {
  return Catalog.source().str() + " (" + GpuCatalogSchema.str() + ")";
}

void writeList(const GpuCatalog &Catalog, llvm::raw_ostream &OS) {
  OS << "GPU catalogue: " << catalogueLabel(Catalog) << ", " << Catalog.gpus().size() << " GPUs\n"
     << "usable memory: the total the driver reports (nvidia-smi, rocm-smi), 1 GiB = 2^30 "
        "bytes; bandwidth and bf16 rate (dense): decimal units, 1 GB/s = 10^9 bytes/s\n\n";
  size_t NameWidth = 4, DisplayWidth = 12;
  for (const GpuSpec &G : Catalog.gpus()) {
    NameWidth = std::max(NameWidth, G.Name.size());
    DisplayWidth = std::max(DisplayWidth, G.DisplayName.size());
  }
  auto Row = [&](llvm::StringRef Name, llvm::StringRef Display, llvm::StringRef Memory,
                 llvm::StringRef Bandwidth, llvm::StringRef Bf16, llvm::StringRef DTypes) {
    OS << llvm::format("%-*s  %-*s  %13s  %11s  %11s  %s", static_cast<int>(NameWidth),
                       Name.str().c_str(), static_cast<int>(DisplayWidth), Display.str().c_str(),
                       Memory.str().c_str(), Bandwidth.str().c_str(), Bf16.str().c_str(),
                       DTypes.str().c_str())
       << "\n";
  };
  Row("name", "display name", "usable memory", "bandwidth", "bf16 TFLOPS", "dtypes");
  for (const GpuSpec &G : Catalog.gpus())
    Row(G.Name, G.DisplayName, formatGiB(G.UsableBytes), formatBandwidth(G),
        formatTflops(G.peakFlops(MathPrecision::BF16)), dtypeList(G));
  OS << "\n`trainmem gpus NAME` shows one GPU with every rate and where its figures come "
        "from.\n";
}

/// Word-wraps Text into lines of at most Width columns, the first after Label and the
/// rest indented under it.
void writeWrapped(llvm::raw_ostream &OS, llvm::StringRef Label, llvm::StringRef Text,
                  size_t Width = 100) {
  constexpr size_t Indent = 22;
  OS << llvm::format("  %-*s", static_cast<int>(Indent - 2), Label.str().c_str());
  size_t Column = Indent;
  llvm::SmallVector<llvm::StringRef, 64> Words;
  Text.split(Words, ' ', -1, /*KeepEmpty=*/false);
  bool First = true;
  for (llvm::StringRef Word : Words) {
    if (!First && Column + 1 + Word.size() > Width) {
      OS << "\n" << std::string(Indent, ' ');
      Column = Indent;
      First = true;
    }
    if (!First) {
      OS << " ";
      ++Column;
    }
    OS << Word;
    Column += Word.size();
    First = false;
  }
  OS << "\n";
}

void writeDetail(const GpuCatalog &Catalog, const GpuSpec &G, llvm::raw_ostream &OS) {
  OS << G.Name << ": " << G.DisplayName << "\n";
  auto Field = [&](llvm::StringRef Label, const std::string &Value) {
    OS << llvm::format("  %-20s", Label.str().c_str()) << Value << "\n";
  };
  if (!G.Aliases.empty()) {
    std::string Aliases;
    for (const std::string &A : G.Aliases)
      Aliases += (Aliases.empty() ? "" : ", ") + A;
    Field("also known as", Aliases);
  }
  Field("vendor", G.Vendor);
  std::string Arch = G.Architecture.empty() ? std::string("not in the catalogue") : G.Architecture;
  if (!G.ComputeCapability.empty())
    Arch += ", compute capability " + G.ComputeCapability;
  Field("architecture", Arch);
  Field("memory",
        formatGiB(G.MemoryBytes) + " (" + formatCount(G.MemoryBytes) + " bytes), as marketed");
  Field("usable memory", formatGiB(G.UsableBytes) + " (" + formatCount(G.UsableBytes) +
                             " bytes), the total the driver reports");
  Field("bandwidth",
        G.BandwidthBytesPerSecond ? formatBandwidth(G) : std::string("not in the catalogue"));
  Field("dtypes", dtypeList(G));
  std::string Peaks;
  for (MathPrecision P : allMathPrecisions())
    if (std::optional<double> F = G.peakFlops(P))
      Peaks += (Peaks.empty() ? "" : ", ") + mathPrecisionName(P).str() + " " + formatTflops(F);
  Field("peak dense TFLOPS", Peaks.empty() ? std::string("not in the catalogue") : Peaks);
  if (!G.Note.empty())
    writeWrapped(OS, "note", G.Note);
  Field("catalogue", catalogueLabel(Catalog));
}

} // namespace

int runGpus() {
  std::string Format = GpusFormat;
  if (Format != "text" && Format != "json")
    return reportError(llvm::createStringError(
        llvm::inconvertibleErrorCode(), "--format=%s: gpus writes text or json", Format.c_str()));
  llvm::Expected<GpuCatalog> Catalog = GpuCatalog::loadConfigured(CatalogPath);
  if (!Catalog)
    return reportError(Catalog.takeError());

  if (GpuName.getNumOccurrences() == 0) {
    if (Format == "json") {
      std::vector<const GpuSpec *> All;
      for (const GpuSpec &G : Catalog->gpus())
        All.push_back(&G);
      writeGpuCatalogJson(All, llvm::outs());
    } else {
      writeList(*Catalog, llvm::outs());
    }
    return ExitOk;
  }
  llvm::Expected<const GpuSpec &> Gpu = Catalog->lookup(GpuName);
  if (!Gpu)
    return reportError(Gpu.takeError());
  if (Format == "json")
    writeGpuCatalogJson({&*Gpu}, llvm::outs());
  else
    writeDetail(*Catalog, *Gpu, llvm::outs());
  return ExitOk;
}

} // namespace trainmem::cli
