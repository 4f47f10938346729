//===- GpuCatalogTest.cpp - the GPU catalogue: data, lookups and validation ------===//
//
// Pins the built-in catalogue to the driver-reported totals it claims (nvidia-smi
// memory.total per GPU), checks the invariants every entry must keep, resolves names the
// way users type them, and walks every validation error with a small builder that
// breaks one field of an otherwise valid catalogue at a time.
//
//===----------------------------------------------------------------------------===//
#include "planner/GpuCatalog.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>

using namespace trainmem;

namespace {

constexpr int64_t MiB = 1024 * 1024;
constexpr int64_t GiB = 1024 * MiB;

GpuCatalog builtinCatalog() {
  llvm::Expected<GpuCatalog> C = GpuCatalog::builtin();
  if (!C) {
    ADD_FAILURE() << llvm::toString(C.takeError());
    return *GpuCatalog::parse(R"({"schema": "trainmem.gpus/1", "gpus": [{"name": "x",
        "display_name": "X", "vendor": "v", "memory_bytes": 1, "usable_bytes": 1,
        "dtypes": ["fp32"]}]})",
                              "fallback");
  }
  return std::move(*C);
}

// ---------------------------------------------------------------------------------
// Builders: one valid entry, a document around entries, and the error a document gives.

llvm::json::Object validEntry(llvm::StringRef Name = "test-gpu-24gb") {
  return llvm::json::Object{{"name", Name},
                            {"display_name", "Test GPU " + Name.str()},
                            {"vendor", "nvidia"},
                            {"architecture", "Ampere"},
                            {"compute_capability", "8.6"},
                            {"memory_bytes", 24 * GiB},
                            {"usable_bytes", 24564 * MiB},
                            {"bandwidth_bytes_per_s", 936e9},
                            {"peak_flops", llvm::json::Object{{"fp32", 35.6e12}, {"bf16", 71e12}}},
                            {"dtypes", llvm::json::Array{"fp32", "bf16"}},
                            {"note", "made up for the test"}};
}

std::string document(std::vector<llvm::json::Object> Entries,
                     llvm::StringRef Schema = "trainmem.gpus/1") {
  llvm::json::Array Gpus;
  for (llvm::json::Object &E : Entries)
    Gpus.push_back(std::move(E));
  std::string Text;
  llvm::raw_string_ostream OS(Text);
  OS << llvm::json::Value(llvm::json::Object{{"schema", Schema}, {"gpus", std::move(Gpus)}});
  return Text;
}

/// The one-entry document with Edit applied to the entry.
template <typename EditFn> std::string withEntry(EditFn Edit) {
  llvm::json::Object E = validEntry();
  Edit(E);
  std::vector<llvm::json::Object> Entries;
  Entries.push_back(std::move(E));
  return document(std::move(Entries));
}

/// The error message parsing Text gives; fails the test if it parses.
std::string parseError(llvm::StringRef Text) {
  llvm::Expected<GpuCatalog> C = GpuCatalog::parse(Text, "my-gpus.json");
  if (C) {
    ADD_FAILURE() << "expected an error for: " << Text.str();
    return "";
  }
  return llvm::toString(C.takeError());
}

#define EXPECT_CONTAINS(Haystack, Needle)                                                          \
  EXPECT_NE(std::string(Haystack).find(Needle), std::string::npos)                                 \
      << "message: " << (Haystack) << "\nexpected to contain: " << (Needle)

/// Every entry-level error names the file, the entry and the field.
void expectEntryError(const std::string &Message, llvm::StringRef Field, llvm::StringRef What) {
  EXPECT_CONTAINS(Message, "my-gpus.json: gpus[0] (test-gpu-24gb): ");
  EXPECT_CONTAINS(Message, Field.str() + ": ");
  EXPECT_CONTAINS(Message, What.str());
}

// ---------------------------------------------------------------------------------
// The built-in catalogue.

TEST(BuiltinGpuCatalog, LoadsAndCoversTheAgreedGpus) {
  GpuCatalog C = builtinCatalog();
  EXPECT_EQ(C.source(), "built-in");
  std::set<std::string> Names;
  for (const GpuSpec &G : C.gpus())
    Names.insert(G.Name);
  for (const char *Name :
       {"b200-hgx-180gb", "h200-sxm-141gb", "h100-sxm-80gb", "h100-pcie-80gb", "h100-nvl-94gb",
        "a100-sxm-80gb", "a100-sxm-40gb", "a100-pcie-80gb", "a100-pcie-40gb", "l40s", "l40", "l4",
        "a40", "a10g", "rtx-4090", "rtx-4080", "rtx-3090", "rtx-6000-ada", "rtx-a6000",
        "v100-sxm2-32gb", "v100-sxm2-16gb", "t4", "mi300x", "mi250x"})
    EXPECT_TRUE(Names.count(Name)) << Name << " is missing from the built-in catalogue";
  // From T4 and V100 to H200 and B200, with AMD's MI250X and MI300X.
  EXPECT_GE(C.gpus().size(), 20u);
}

TEST(BuiltinGpuCatalog, IsTheDataFileCompiledIn) {
  // A stale generated .cpp would mean editing gpus.json silently changes nothing.
  auto File = llvm::MemoryBuffer::getFile(
      std::string(TRAINMEM_SOURCE_DIR) + "/planner/data/gpus.json", /*IsText=*/true);
  ASSERT_TRUE(static_cast<bool>(File));
  EXPECT_EQ(builtinGpuCatalogText(), (*File)->getBuffer());
}

TEST(BuiltinGpuCatalog, UsableBytesAreTheDriverReportedTotals) {
  // nvidia-smi memory.total (MiB) for each part; rocm-smi's byte figures for the AMD
  // parts (the MI250X's per GCD, the device ROCm shows).
  const std::map<std::string, int64_t> DriverTotal = {{"b200-hgx-180gb", 183359 * MiB},
                                                      {"h200-sxm-141gb", 143771 * MiB},
                                                      {"h100-sxm-80gb", 81559 * MiB},
                                                      {"h100-pcie-80gb", 81559 * MiB},
                                                      {"h100-nvl-94gb", 95830 * MiB},
                                                      {"a100-sxm-80gb", 81920 * MiB},
                                                      {"a100-sxm-40gb", 40960 * MiB},
                                                      {"a100-pcie-80gb", 81920 * MiB},
                                                      {"a100-pcie-40gb", 40960 * MiB},
                                                      {"l40s", 46068 * MiB},
                                                      {"l40", 46068 * MiB},
                                                      {"l4", 23034 * MiB},
                                                      {"a40", 46068 * MiB},
                                                      {"a10g", 23028 * MiB},
                                                      {"rtx-4090", 24564 * MiB},
                                                      {"rtx-4080", 16376 * MiB},
                                                      {"rtx-3090", 24576 * MiB},
                                                      {"rtx-6000-ada", 49140 * MiB},
                                                      {"rtx-a6000", 49140 * MiB},
                                                      {"v100-sxm2-32gb", 32768 * MiB},
                                                      {"v100-sxm2-16gb", 16384 * MiB},
                                                      {"t4", 15360 * MiB},
                                                      {"mi300x", 206141652992},
                                                      {"mi250x", 68702699520}};
  GpuCatalog C = builtinCatalog();
  for (const auto &[Name, Bytes] : DriverTotal) {
    const GpuSpec *G = C.find(Name);
    ASSERT_NE(G, nullptr) << Name;
    EXPECT_EQ(G->UsableBytes, Bytes) << Name;
  }
  EXPECT_EQ(C.gpus().size(), DriverTotal.size())
      << "a GPU was added without pinning its driver total here";
}

TEST(BuiltinGpuCatalog, EveryEntryKeepsTheInvariants) {
  GpuCatalog C = builtinCatalog();
  for (const GpuSpec &G : C.gpus()) {
    SCOPED_TRACE(G.Name);
    // HBM parts with no ECC carve-out report all of it (A100, V100), so equality is
    // allowed; the driver never reports more than the board carries.
    EXPECT_LE(G.UsableBytes, G.MemoryBytes);
    // No part in the list loses more than ~7% (GDDR ECC takes 1/16; H200's firmware
    // reservation is the largest HBM gap).
    EXPECT_GT(static_cast<double>(G.UsableBytes), 0.92 * static_cast<double>(G.MemoryBytes));
    EXPECT_FALSE(G.Note.empty()) << "every figure needs its source";
    EXPECT_FALSE(G.Architecture.empty());
    EXPECT_TRUE(G.supports(MathPrecision::FP32));
    EXPECT_TRUE(G.supports(MathPrecision::FP16));
    for (MathPrecision P : allMathPrecisions()) {
      if (G.peakFlops(P)) {
        EXPECT_TRUE(G.supports(P)) << mathPrecisionName(P).str();
      }
    }
    // Dense tensor rates are never below the plain fp32 rate.
    if (auto FP32 = G.peakFlops(MathPrecision::FP32)) {
      for (MathPrecision P : allMathPrecisions()) {
        if (auto Rate = G.peakFlops(P)) {
          EXPECT_GE(*Rate, *FP32) << mathPrecisionName(P).str();
        }
      }
    }
    if (G.Vendor == "nvidia") {
      EXPECT_FALSE(G.ComputeCapability.empty());
    }
  }
}

TEST(BuiltinGpuCatalog, PrecisionSupportFollowsTheArchitecture) {
  GpuCatalog C = builtinCatalog();
  for (const GpuSpec &G : C.gpus()) {
    SCOPED_TRACE(G.Name);
    bool PreAmpere = G.Architecture == "Volta" || G.Architecture == "Turing";
    EXPECT_EQ(G.supports(MathPrecision::BF16), !PreAmpere);
    // CDNA 2 (MI250X) has bf16 matrix cores but no TF32; AMD added it with CDNA 3.
    EXPECT_EQ(G.supports(MathPrecision::TF32), !PreAmpere && G.Architecture != "CDNA 2");
    bool HasFp8 = G.Architecture == "Hopper" || G.Architecture == "Ada Lovelace" ||
                  G.Architecture == "Blackwell" || G.Architecture == "CDNA 3";
    EXPECT_EQ(G.supports(MathPrecision::FP8), HasFp8);
  }
}

TEST(BuiltinGpuCatalog, PinsDatasheetFigures) {
  GpuCatalog C = builtinCatalog();
  const GpuSpec *H100 = C.find("h100-sxm-80gb");
  ASSERT_NE(H100, nullptr);
  EXPECT_EQ(H100->MemoryBytes, 80 * GiB);
  EXPECT_EQ(H100->UsableBytes, 85520809984);
  EXPECT_EQ(H100->BandwidthBytesPerSecond, 3.35e12);
  EXPECT_EQ(H100->peakFlops(MathPrecision::BF16), 989.5e12);
  const GpuSpec *A100 = C.find("a100-sxm-80gb");
  ASSERT_NE(A100, nullptr);
  EXPECT_EQ(A100->peakFlops(MathPrecision::TF32), 156e12);
  EXPECT_FALSE(A100->peakFlops(MathPrecision::FP8));
  // The A10G has no published datasheet: its rates stay absent rather than guessed.
  const GpuSpec *A10G = C.find("a10g");
  ASSERT_NE(A10G, nullptr);
  EXPECT_FALSE(A10G->BandwidthBytesPerSecond);
  for (MathPrecision P : allMathPrecisions())
    EXPECT_FALSE(A10G->peakFlops(P));

  // HGX B200: 180 GB read as GiB, as marketed for HGX (not the 192 GB of the stacks).
  const GpuSpec *B200 = C.find("b200-hgx-180gb");
  ASSERT_NE(B200, nullptr);
  EXPECT_EQ(B200->MemoryBytes, 180 * GiB);
  EXPECT_EQ(B200->ComputeCapability, "10.0");
  EXPECT_EQ(B200->BandwidthBytesPerSecond, 7.7e12);
  EXPECT_EQ(B200->peakFlops(MathPrecision::BF16), 2250e12);
  EXPECT_EQ(B200->peakFlops(MathPrecision::FP8), 4500e12);
  const GpuSpec *H100Nvl = C.find("h100-nvl-94gb");
  ASSERT_NE(H100Nvl, nullptr);
  EXPECT_EQ(H100Nvl->MemoryBytes, 94 * GiB);
  EXPECT_EQ(H100Nvl->peakFlops(MathPrecision::BF16), 835.5e12);
  // The L40 runs half the L40S's tensor rates on the same die.
  const GpuSpec *L40 = C.find("l40"), *L40S = C.find("l40s");
  ASSERT_NE(L40, nullptr);
  ASSERT_NE(L40S, nullptr);
  EXPECT_EQ(L40->peakFlops(MathPrecision::BF16), 181.05e12);
  EXPECT_EQ(L40S->peakFlops(MathPrecision::BF16), 362.05e12);
  // One MI250X GCD: half the module's memory, bandwidth and rates; no TF32 or FP8.
  const GpuSpec *MI250X = C.find("mi250x");
  ASSERT_NE(MI250X, nullptr);
  EXPECT_EQ(MI250X->MemoryBytes, 64 * GiB);
  EXPECT_EQ(MI250X->BandwidthBytesPerSecond, 1.6384e12);
  EXPECT_EQ(MI250X->peakFlops(MathPrecision::BF16), 191.5e12);
  EXPECT_FALSE(MI250X->supports(MathPrecision::TF32));
  EXPECT_TRUE(MI250X->ComputeCapability.empty());
  // The RTX 6000 Ada's one datasheet tensor figure does not say its accumulator, so its
  // tensor rates stay absent; the FP32 rate is known.
  const GpuSpec *Rtx6000 = C.find("rtx-6000-ada");
  ASSERT_NE(Rtx6000, nullptr);
  EXPECT_EQ(Rtx6000->peakFlops(MathPrecision::FP32), 91.1e12);
  for (MathPrecision P : {MathPrecision::TF32, MathPrecision::BF16, MathPrecision::FP16,
                          MathPrecision::FP8})
    EXPECT_FALSE(Rtx6000->peakFlops(P)) << mathPrecisionName(P).str();
}

TEST(BuiltinGpuCatalog, JsonWriterRoundTrips) {
  GpuCatalog C = builtinCatalog();
  std::vector<const GpuSpec *> All;
  for (const GpuSpec &G : C.gpus())
    All.push_back(&G);
  std::string Text;
  llvm::raw_string_ostream OS(Text);
  writeGpuCatalogJson(All, OS);
  llvm::Expected<GpuCatalog> Again = GpuCatalog::parse(Text, "written");
  ASSERT_TRUE(static_cast<bool>(Again)) << llvm::toString(Again.takeError());
  ASSERT_EQ(Again->gpus().size(), C.gpus().size());
  for (size_t I = 0; I < C.gpus().size(); ++I) {
    const GpuSpec &A = C.gpus()[I], &B = Again->gpus()[I];
    SCOPED_TRACE(A.Name);
    EXPECT_EQ(A.Name, B.Name);
    EXPECT_EQ(A.DisplayName, B.DisplayName);
    EXPECT_EQ(A.Aliases, B.Aliases);
    EXPECT_EQ(A.Vendor, B.Vendor);
    EXPECT_EQ(A.Architecture, B.Architecture);
    EXPECT_EQ(A.ComputeCapability, B.ComputeCapability);
    EXPECT_EQ(A.MemoryBytes, B.MemoryBytes);
    EXPECT_EQ(A.UsableBytes, B.UsableBytes);
    EXPECT_EQ(A.BandwidthBytesPerSecond, B.BandwidthBytesPerSecond);
    EXPECT_EQ(A.PeakFlops, B.PeakFlops);
    EXPECT_EQ(A.Supported, B.Supported);
    EXPECT_EQ(A.Note, B.Note);
  }
}

// ---------------------------------------------------------------------------------
// Lookups.

TEST(GpuLookup, ExactNameIgnoringCaseAndPunctuation) {
  GpuCatalog C = builtinCatalog();
  for (const char *Query : {"h100-sxm-80gb", "H100-SXM-80GB", "h100 sxm 80gb", "H100_SXM_80GB"}) {
    const GpuSpec *G = C.find(Query);
    ASSERT_NE(G, nullptr) << Query;
    EXPECT_EQ(G->Name, "h100-sxm-80gb") << Query;
  }
}

TEST(GpuLookup, DisplayNameAndNvidiaSmiName) {
  GpuCatalog C = builtinCatalog();
  EXPECT_EQ(C.find("NVIDIA H100 SXM5 80GB"), C.find("h100-sxm-80gb"));
  // What `nvidia-smi --query-gpu=name` prints, so scripts can pass it straight in.
  EXPECT_EQ(C.find("NVIDIA H100 80GB HBM3"), C.find("h100-sxm-80gb"));
  EXPECT_EQ(C.find("NVIDIA A100-SXM4-40GB"), C.find("a100-sxm-40gb"));
  EXPECT_EQ(C.find("Tesla T4"), C.find("t4"));
  EXPECT_NE(C.find("t4"), nullptr);
  const std::map<std::string, std::string> SmiNames = {
      {"NVIDIA B200", "b200-hgx-180gb"},
      {"NVIDIA H100 NVL", "h100-nvl-94gb"},
      {"NVIDIA A100 80GB PCIe", "a100-pcie-80gb"},
      {"NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"},
      {"NVIDIA L40", "l40"},
      {"NVIDIA L40S", "l40s"},
      {"NVIDIA A40", "a40"},
      {"NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"},
      {"NVIDIA RTX A6000", "rtx-a6000"},
      {"NVIDIA GeForce RTX 4080", "rtx-4080"},
      {"AMD Instinct MI250X", "mi250x"}};
  for (const auto &[Query, Name] : SmiNames) {
    const GpuSpec *G = C.find(Query);
    ASSERT_NE(G, nullptr) << Query;
    EXPECT_EQ(G->Name, Name) << Query;
  }
}

TEST(GpuLookup, UniquePrefix) {
  GpuCatalog C = builtinCatalog();
  ASSERT_NE(C.find("h200"), nullptr);
  EXPECT_EQ(C.find("h200")->Name, "h200-sxm-141gb");
  ASSERT_NE(C.find("H100 PCIe"), nullptr);
  EXPECT_EQ(C.find("H100 PCIe")->Name, "h100-pcie-80gb");
  ASSERT_NE(C.find("rtx-409"), nullptr);
  EXPECT_EQ(C.find("rtx-409")->Name, "rtx-4090");
  EXPECT_EQ(C.find("rtx-40"), nullptr) << "rtx-4090 and rtx-4080";
  ASSERT_NE(C.find("b200"), nullptr);
  EXPECT_EQ(C.find("b200")->Name, "b200-hgx-180gb");
  ASSERT_NE(C.find("H100 NVL"), nullptr);
  EXPECT_EQ(C.find("H100 NVL")->Name, "h100-nvl-94gb");
  // "rtx 6000" is not a prefix of the RTX A6000's spellings.
  ASSERT_NE(C.find("rtx 6000"), nullptr);
  EXPECT_EQ(C.find("rtx 6000")->Name, "rtx-6000-ada");
  ASSERT_NE(C.find("mi250"), nullptr);
  EXPECT_EQ(C.find("mi250")->Name, "mi250x");
  EXPECT_EQ(C.find("a100 pcie"), nullptr) << "80 GB and 40 GB";
}

TEST(GpuLookup, ExactMatchBeatsLongerNamesItPrefixes) {
  // "l4" is also a prefix of "l40" and "l40s", and "l40" of "l40s"; the exact name wins.
  GpuCatalog C = builtinCatalog();
  for (const char *Name : {"l4", "l40", "l40s"}) {
    ASSERT_NE(C.find(llvm::StringRef(Name).upper()), nullptr) << Name;
    EXPECT_EQ(C.find(llvm::StringRef(Name).upper())->Name, Name);
  }
}

TEST(GpuLookup, AmbiguousPrefixListsTheCandidates) {
  GpuCatalog C = builtinCatalog();
  EXPECT_EQ(C.find("h100"), nullptr);
  llvm::Expected<const GpuSpec &> G = C.lookup("h100");
  ASSERT_FALSE(static_cast<bool>(G));
  std::string Message = llvm::toString(G.takeError());
  EXPECT_CONTAINS(Message, "\"h100\" is ambiguous");
  EXPECT_CONTAINS(Message, "h100-sxm-80gb (NVIDIA H100 SXM5 80GB)");
  EXPECT_CONTAINS(Message, "h100-pcie-80gb (NVIDIA H100 PCIe 80GB)");
  EXPECT_CONTAINS(Message, "h100-nvl-94gb (NVIDIA H100 NVL 94GB)");
  EXPECT_EQ(Message.find("h200"), std::string::npos) << Message;
}

TEST(GpuLookup, UnknownNameListsTheCatalogue) {
  GpuCatalog C = builtinCatalog();
  EXPECT_EQ(C.find("rtx-9090"), nullptr);
  llvm::Expected<const GpuSpec &> G = C.lookup("rtx-9090");
  ASSERT_FALSE(static_cast<bool>(G));
  std::string Message = llvm::toString(G.takeError());
  EXPECT_CONTAINS(Message, "unknown GPU \"rtx-9090\" in the built-in GPU catalogue");
  EXPECT_CONTAINS(Message, "h100-sxm-80gb");
  EXPECT_CONTAINS(Message, "mi300x");
}

// A name no GPU starts with: the GPUs holding every word of it, in any order.
TEST(GpuLookup, WordsOfTheNameInAnyOrder) {
  GpuCatalog C = builtinCatalog();
  llvm::Expected<const GpuSpec &> Rtx = C.lookup("4090");
  ASSERT_TRUE(static_cast<bool>(Rtx)) << llvm::toString(Rtx.takeError());
  EXPECT_EQ(Rtx->Name, "rtx-4090");
  llvm::Expected<const GpuSpec &> Pcie = C.lookup("pcie_a100/40gb");
  ASSERT_TRUE(static_cast<bool>(Pcie)) << llvm::toString(Pcie.takeError());
  EXPECT_EQ(Pcie->Name, "a100-pcie-40gb");
  llvm::Expected<const GpuSpec &> Both = C.lookup("a100-80gb");
  ASSERT_FALSE(static_cast<bool>(Both));
  std::string Message = llvm::toString(Both.takeError());
  EXPECT_CONTAINS(Message, "GPU name \"a100-80gb\" is ambiguous");
  EXPECT_CONTAINS(Message, "a100-sxm-80gb (NVIDIA A100 SXM4 80GB)");
  EXPECT_CONTAINS(Message, "a100-pcie-80gb (NVIDIA A100 PCIe 80GB)");
  EXPECT_EQ(Message.find("40gb"), std::string::npos) << Message;
}

TEST(GpuLookup, EmptyNameIsAnError) {
  GpuCatalog C = builtinCatalog();
  for (const char *Query : {"", "  ", "--"}) {
    llvm::Expected<const GpuSpec &> G = C.lookup(Query);
    ASSERT_FALSE(static_cast<bool>(G)) << Query;
    EXPECT_CONTAINS(llvm::toString(G.takeError()), "no GPU name given");
  }
}

TEST(GpuLookup, ErrorsNameAUserCatalogueByPath) {
  llvm::Expected<GpuCatalog> C = GpuCatalog::parse(withEntry([](auto &) {}), "my-gpus.json");
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  llvm::Expected<const GpuSpec &> G = C->lookup("h100");
  ASSERT_FALSE(static_cast<bool>(G));
  EXPECT_CONTAINS(llvm::toString(G.takeError()), "in GPU catalogue my-gpus.json");
}

// ---------------------------------------------------------------------------------
// Validation: the document.

TEST(GpuCatalogValidation, AValidEntryLoads) {
  llvm::Expected<GpuCatalog> C = GpuCatalog::parse(withEntry([](auto &) {}), "my-gpus.json");
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  const GpuSpec &G = C->gpus().front();
  EXPECT_EQ(G.UsableBytes, 24564 * MiB);
  EXPECT_EQ(G.peakFlops(MathPrecision::BF16), 71e12);
  EXPECT_FALSE(G.peakFlops(MathPrecision::FP16));
  EXPECT_TRUE(G.supports(MathPrecision::BF16));
  EXPECT_FALSE(G.supports(MathPrecision::FP16));
}

TEST(GpuCatalogValidation, NotJson) {
  std::string M = parseError("{\"schema\": \"trainmem.gpus/1\", \"gpus\": [");
  EXPECT_CONTAINS(M, "my-gpus.json: not valid JSON");
}

TEST(GpuCatalogValidation, NotAnObject) {
  EXPECT_CONTAINS(parseError("[1, 2]"), "my-gpus.json: expected a JSON object");
}

TEST(GpuCatalogValidation, MissingSchema) {
  EXPECT_CONTAINS(parseError(R"({"gpus": []})"), "my-gpus.json: no \"schema\" key");
}

TEST(GpuCatalogValidation, ForeignSchema) {
  std::string M = parseError(document({validEntry()}, "trainmem.report/1"));
  EXPECT_CONTAINS(M, "my-gpus.json: schema \"trainmem.report/1\" is not a GPU catalogue");
  EXPECT_CONTAINS(parseError(document({validEntry()}, "trainmem.gpus/one")),
                  "is not a GPU catalogue");
  EXPECT_CONTAINS(parseError(R"({"schema": 1, "gpus": []})"), "is not a GPU catalogue");
}

TEST(GpuCatalogValidation, NewerSchemaIsARefusalNotAGuess) {
  std::string M = parseError(document({validEntry()}, "trainmem.gpus/2"));
  EXPECT_CONTAINS(M, "my-gpus.json: written by a newer trainmem (schema trainmem.gpus/2)");
  EXPECT_CONTAINS(M, "this build reads trainmem.gpus/1");
}

TEST(GpuCatalogValidation, UnknownTopLevelKey) {
  EXPECT_CONTAINS(parseError(R"({"schema": "trainmem.gpus/1", "gpu": []})"),
                  "unknown top-level key \"gpu\"");
}

TEST(GpuCatalogValidation, GpusMissingNotAListOrEmpty) {
  EXPECT_CONTAINS(parseError(R"({"schema": "trainmem.gpus/1"})"), "no \"gpus\" list");
  EXPECT_CONTAINS(parseError(R"({"schema": "trainmem.gpus/1", "gpus": {}})"),
                  "\"gpus\" must be a list");
  EXPECT_CONTAINS(parseError(R"({"schema": "trainmem.gpus/1", "gpus": []})"), "\"gpus\" is empty");
}

TEST(GpuCatalogValidation, EntryNotAnObject) {
  EXPECT_CONTAINS(parseError(R"({"schema": "trainmem.gpus/1", "gpus": ["h100"]})"),
                  "my-gpus.json: gpus[0]: expected a GPU object, found \"h100\"");
}

// ---------------------------------------------------------------------------------
// Validation: fields of an entry.

TEST(GpuCatalogValidation, MissingName) {
  std::string M = parseError(withEntry([](llvm::json::Object &E) { E.erase("name"); }));
  EXPECT_CONTAINS(M, "my-gpus.json: gpus[0]: name: missing");
}

TEST(GpuCatalogValidation, NameMustBeTypable) {
  std::string M = parseError(withEntry([](llvm::json::Object &E) { E["name"] = "H100 SXM"; }));
  EXPECT_CONTAINS(M, "my-gpus.json: gpus[0]: name: \"H100 SXM\" must be lower-case letters");
}

TEST(GpuCatalogValidation, UnknownFieldCatchesTypos) {
  std::string M = parseError(withEntry([](llvm::json::Object &E) {
    E.erase("bandwidth_bytes_per_s");
    E["bandwith_bytes_per_s"] = 936e9;
  }));
  EXPECT_CONTAINS(M, "my-gpus.json: gpus[0] (test-gpu-24gb): unknown field "
                     "\"bandwith_bytes_per_s\"");
}

TEST(GpuCatalogValidation, MissingRequiredFields) {
  for (const char *Field : {"display_name", "vendor", "memory_bytes", "usable_bytes", "dtypes"}) {
    SCOPED_TRACE(Field);
    expectEntryError(parseError(withEntry([&](llvm::json::Object &E) { E.erase(Field); })), Field,
                     "missing");
  }
}

TEST(GpuCatalogValidation, MissingUsableBytesSaysWhatItMeans) {
  std::string M = parseError(withEntry([](llvm::json::Object &E) { E.erase("usable_bytes"); }));
  expectEntryError(M, "usable_bytes", "missing; expected the total the driver reports");
}

TEST(GpuCatalogValidation, WrongTypes) {
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["vendor"] = 10; })), "vendor",
                   "expected a string, found 10");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["display_name"] = ""; })),
                   "display_name", "is empty");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["usable_bytes"] = true; })),
                   "usable_bytes", "expected a number of bytes, found true");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["aliases"] = "x"; })),
                   "aliases", "expected a list of strings");
  expectEntryError(
      parseError(withEntry([](llvm::json::Object &E) { E["aliases"] = llvm::json::Array{3}; })),
      "aliases[0]", "expected a string, found 3");
}

TEST(GpuCatalogValidation, NegativeAndZeroFigures) {
  expectEntryError(
      parseError(withEntry([](llvm::json::Object &E) { E["usable_bytes"] = -85520809984; })),
      "usable_bytes", "must be positive, found -85520809984");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["memory_bytes"] = 0; })),
                   "memory_bytes", "must be positive, found 0");
  expectEntryError(
      parseError(withEntry([](llvm::json::Object &E) { E["bandwidth_bytes_per_s"] = -1e9; })),
      "bandwidth_bytes_per_s", "must be positive");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) {
                     E["peak_flops"] = llvm::json::Object{{"bf16", -71e12}};
                   })),
                   "peak_flops.bf16", "must be positive");
}

TEST(GpuCatalogValidation, BytesMustBeWhole) {
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["usable_bytes"] = 2.5; })),
                   "usable_bytes", "2.5 is not a whole number of bytes");
}

TEST(GpuCatalogValidation, BytesMayBeWrittenWithUnits) {
  llvm::Expected<GpuCatalog> C = GpuCatalog::parse(withEntry([](llvm::json::Object &E) {
                                                     E["memory_bytes"] = "24 GiB";
                                                     E["usable_bytes"] = "24564 MiB";
                                                   }),
                                                   "my-gpus.json");
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  EXPECT_EQ(C->gpus().front().MemoryBytes, 24 * GiB);
  EXPECT_EQ(C->gpus().front().UsableBytes, 24564 * MiB);
  expectEntryError(
      parseError(withEntry([](llvm::json::Object &E) { E["usable_bytes"] = "24 gigs"; })),
      "usable_bytes", "unknown unit");
}

TEST(GpuCatalogValidation, UsableAboveMemoryIsAUnitSlip) {
  // 24 GB typed as decimal for memory while usable is in MiB: usable comes out larger.
  std::string M = parseError(withEntry([](llvm::json::Object &E) { E["memory_bytes"] = "24 GB"; }));
  expectEntryError(M, "usable_bytes", "exceeds memory_bytes (24000000000 bytes)");
}

TEST(GpuCatalogValidation, DTypes) {
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) {
                     E["dtypes"] = llvm::json::Array{"fp32", "int4"};
                   })),
                   "dtypes[1]",
                   "unknown precision \"int4\"; expected fp32, tf32, bf16, fp16 "
                   "or fp8");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) {
                     E["dtypes"] = llvm::json::Array{"fp32", "bf16", "fp32"};
                   })),
                   "dtypes[2]", "\"fp32\" is listed twice");
  expectEntryError(
      parseError(withEntry([](llvm::json::Object &E) { E["dtypes"] = llvm::json::Array{}; })),
      "dtypes", "expected a non-empty list");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["dtypes"] = "fp32"; })),
                   "dtypes", "expected a non-empty list");
}

TEST(GpuCatalogValidation, PeakFlops) {
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) {
                     E["peak_flops"] = llvm::json::Object{{"fp8", 1e15}};
                   })),
                   "peak_flops.fp8", "given, but \"fp8\" is not in dtypes");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) {
                     E["peak_flops"] = llvm::json::Object{{"int8", 1e15}};
                   })),
                   "peak_flops.int8", "unknown precision \"int8\"");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) {
                     E["peak_flops"] = llvm::json::Object{{"bf16", "71 TFLOPS"}};
                   })),
                   "peak_flops.bf16", "expected a number");
  expectEntryError(parseError(withEntry([](llvm::json::Object &E) { E["peak_flops"] = 71e12; })),
                   "peak_flops", "expected an object of FLOP/s per precision");
}

TEST(GpuCatalogValidation, ComputeCapabilityIsMajorMinor) {
  expectEntryError(
      parseError(withEntry([](llvm::json::Object &E) { E["compute_capability"] = "sm_86"; })),
      "compute_capability", "\"sm_86\" is not MAJOR.MINOR");
}

TEST(GpuCatalogValidation, DuplicateNames) {
  std::string M = parseError(document({validEntry("a"), validEntry("b"), validEntry("a")}));
  EXPECT_CONTAINS(M, "my-gpus.json: gpus[2] (a): name: \"a\" duplicates the name of gpus[0] (a)");
}

TEST(GpuCatalogValidation, SpellingsMustPickOutOneGpu) {
  // Equal once case and punctuation are ignored, which is how lookups compare.
  llvm::json::Object Second = validEntry("b");
  Second["aliases"] = llvm::json::Array{"TEST GPU a"};
  std::string M = parseError(document({validEntry("a"), std::move(Second)}));
  EXPECT_CONTAINS(M, "my-gpus.json: gpus[1] (b): aliases[0]: \"TEST GPU a\" is also gpus[0] "
                     "(a)'s display_name");
}

// ---------------------------------------------------------------------------------
// Files and the override order.

class TempCatalog {
public:
  explicit TempCatalog(llvm::StringRef Text) {
    int FD;
    if (llvm::sys::fs::createTemporaryFile("gpus", "json", FD, Path))
      ADD_FAILURE() << "cannot create a temporary file";
    llvm::raw_fd_ostream OS(FD, /*shouldClose=*/true);
    OS << Text;
  }
  ~TempCatalog() { llvm::sys::fs::remove(Path); }
  std::string path() const { return std::string(Path); }

private:
  llvm::SmallString<128> Path;
};

TEST(GpuCatalogFiles, LoadNamesTheFileInErrors) {
  TempCatalog Good(withEntry([](auto &) {}));
  llvm::Expected<GpuCatalog> C = GpuCatalog::load(Good.path());
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  EXPECT_EQ(C->source(), Good.path());

  TempCatalog Bad(withEntry([](llvm::json::Object &E) { E.erase("usable_bytes"); }));
  llvm::Expected<GpuCatalog> B = GpuCatalog::load(Bad.path());
  ASSERT_FALSE(static_cast<bool>(B));
  EXPECT_CONTAINS(llvm::toString(B.takeError()),
                  Bad.path() + ": gpus[0] (test-gpu-24gb): usable_bytes: missing");

  llvm::Expected<GpuCatalog> Missing = GpuCatalog::load("/no/such/gpus.json");
  ASSERT_FALSE(static_cast<bool>(Missing));
  EXPECT_CONTAINS(llvm::toString(Missing.takeError()),
                  "/no/such/gpus.json: cannot read the GPU catalogue");
}

/// Sets an environment variable for one test and restores it after.
class ScopedEnv {
public:
  ScopedEnv(const char *Name, const std::string &Value) : Name(Name) {
    if (const char *Old = std::getenv(Name))
      Previous = Old;
    ::setenv(Name, Value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (Previous)
      ::setenv(Name, Previous->c_str(), 1);
    else
      ::unsetenv(Name);
  }

private:
  const char *Name;
  std::optional<std::string> Previous;
};

TEST(GpuCatalogFiles, OptionBeatsEnvironmentBeatsBuiltin) {
  TempCatalog FromOption(withEntry([](llvm::json::Object &E) { E["name"] = "from-option"; }));
  TempCatalog FromEnv(withEntry([](llvm::json::Object &E) { E["name"] = "from-env"; }));
  {
    ScopedEnv Env("TRAINMEM_GPU_CATALOG", "");
    llvm::Expected<GpuCatalog> C = GpuCatalog::loadConfigured();
    ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
    EXPECT_EQ(C->source(), "built-in");
  }
  ScopedEnv Env("TRAINMEM_GPU_CATALOG", FromEnv.path());
  llvm::Expected<GpuCatalog> C = GpuCatalog::loadConfigured();
  ASSERT_TRUE(static_cast<bool>(C)) << llvm::toString(C.takeError());
  EXPECT_EQ(C->gpus().front().Name, "from-env");
  llvm::Expected<GpuCatalog> D = GpuCatalog::loadConfigured(FromOption.path());
  ASSERT_TRUE(static_cast<bool>(D)) << llvm::toString(D.takeError());
  EXPECT_EQ(D->gpus().front().Name, "from-option");
}

TEST(GpuCatalogFiles, EnvironmentErrorsSayWhereThePathCameFrom) {
  ScopedEnv Env("TRAINMEM_GPU_CATALOG", "/no/such/gpus.json");
  llvm::Expected<GpuCatalog> C = GpuCatalog::loadConfigured();
  ASSERT_FALSE(static_cast<bool>(C));
  EXPECT_CONTAINS(llvm::toString(C.takeError()), "TRAINMEM_GPU_CATALOG: /no/such/gpus.json: ");
}

} // namespace
