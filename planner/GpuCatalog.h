//===- GpuCatalog.h - the GPUs a plan can target ----------------------*- C++ -*-===//
//
// The planner needs, per target GPU, the memory the driver actually hands out (not the
// marketed figure), its bandwidth and peak rates per math precision, and which
// precisions it runs natively. Those facts live in a versioned data file
// (trainmem.gpus/1, planner/data/gpus.json) compiled into the binary; a user's file can
// replace it. Loading validates every entry so a typo is an error naming the file, the
// entry and the field, never a silently wrong number.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_GPUCATALOG_H
#define TRAINMEM_PLANNER_GPUCATALOG_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// The catalogue schema this build reads and writes.
inline constexpr llvm::StringLiteral GpuCatalogSchema = "trainmem.gpus/1";

/// A precision the GPU's arithmetic units run natively. Distinct from DType: tf32 is a
/// math mode over fp32 storage, and fp8 covers both E4M3 and E5M2.
enum class MathPrecision : uint8_t { FP32, TF32, BF16, FP16, FP8 };
inline constexpr unsigned NumMathPrecisions = 5;

/// "fp32", "tf32", "bf16", "fp16", "fp8": the catalogue's and the CLI's spelling.
llvm::StringRef mathPrecisionName(MathPrecision P);
std::optional<MathPrecision> mathPrecisionFromName(llvm::StringRef Name);
/// Every precision in the order the catalogue and its writers list them.
llvm::ArrayRef<MathPrecision> allMathPrecisions();

/// One catalogue entry. Optional figures are absent where the catalogue does not know
/// them; nothing is filled in with a guess.
struct GpuSpec {
  std::string Name;                 ///< short id, e.g. "h100-sxm-80gb"
  std::string DisplayName;          ///< e.g. "NVIDIA H100 SXM5 80GB"
  std::vector<std::string> Aliases; ///< other spellings, e.g. nvidia-smi's product name
  std::string Vendor;               ///< "nvidia", "amd"
  std::string Architecture;         ///< e.g. "Hopper"; empty when not given
  std::string ComputeCapability;    ///< CUDA "major.minor"; empty for other vendors
  int64_t MemoryBytes = 0;          ///< capacity as marketed
  int64_t UsableBytes = 0;          ///< total as the driver reports it (nvidia-smi, rocm-smi)
  std::optional<double> BandwidthBytesPerSecond;
  /// Dense peak FLOP/s, indexed by MathPrecision.
  std::array<std::optional<double>, NumMathPrecisions> PeakFlops{};
  /// Natively supported precisions, indexed by MathPrecision.
  std::array<bool, NumMathPrecisions> Supported{};
  std::string Note; ///< where the figures come from

  bool supports(MathPrecision P) const { return Supported[static_cast<unsigned>(P)]; }
  std::optional<double> peakFlops(MathPrecision P) const {
    return PeakFlops[static_cast<unsigned>(P)];
  }
};

/// A validated list of GPUs and the lookups the CLI, the planner and the GUI share.
class GpuCatalog {
public:
  /// Reads and validates a trainmem.gpus JSON file. Errors name the file, the entry
  /// (index and name) and the field.
  static llvm::Expected<GpuCatalog> load(llvm::StringRef Path);
  /// The catalogue compiled into the binary from planner/data/gpus.json.
  static llvm::Expected<GpuCatalog> builtin();
  /// Validates catalogue text; SourceName is what error messages call it.
  static llvm::Expected<GpuCatalog> parse(llvm::StringRef Text, llvm::StringRef SourceName);
  /// The catalogue a command should use: ExplicitPath (--catalog) if not empty, else
  /// $TRAINMEM_GPU_CATALOG if set and not empty, else the built-in one.
  static llvm::Expected<GpuCatalog> loadConfigured(llvm::StringRef ExplicitPath = "");

  /// The entry Query names, or null when no single entry matches (see lookup()).
  const GpuSpec *find(llvm::StringRef Query) const;
  /// Resolves a user's spelling of a GPU. Comparison ignores case and everything but
  /// letters and digits ("H100 SXM" = "h100-sxm"). An exact match on a name, display
  /// name or alias wins; otherwise Query must be the prefix of exactly one entry's
  /// spellings. An ambiguous prefix is an error listing the candidates; an unknown
  /// name is an error listing the catalogue.
  llvm::Expected<const GpuSpec &> lookup(llvm::StringRef Query) const;

  llvm::ArrayRef<GpuSpec> gpus() const & { return Gpus; }
  /// The entries live in the catalogue: iterating a temporary's would dangle.
  llvm::ArrayRef<GpuSpec> gpus() const && = delete;
  /// "built-in" or the path the catalogue was read from.
  llvm::StringRef source() const { return Source; }

private:
  std::vector<GpuSpec> Gpus;
  std::string Source;
};

/// The JSON text compiled into the binary (planner/data/gpus.json at build time).
llvm::StringRef builtinGpuCatalogText();

/// Writes GPUs as a trainmem.gpus/1 document that load() reads back unchanged.
void writeGpuCatalogJson(llvm::ArrayRef<const GpuSpec *> Gpus, llvm::raw_ostream &OS);

} // namespace trainmem

#endif
