//===- GpuCatalog.cpp - reading, validating and searching the GPU catalogue ------===//
//
// The catalogue is data people edit by hand, so validation is strict: unknown keys,
// wrong types, non-positive figures, usable memory above the marketed total, and two
// entries answering to the same spelling are all errors that name the entry and field.
//
//===----------------------------------------------------------------------------===//
#include "planner/GpuCatalog.h"
#include "analyzer/SafeJson.h"

#include "analyzer/Units.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cmath>
#include <cstdlib>

namespace trainmem {

namespace {

constexpr MathPrecision AllPrecisions[] = {MathPrecision::FP32, MathPrecision::TF32,
                                           MathPrecision::BF16, MathPrecision::FP16,
                                           MathPrecision::FP8};
static_assert(std::size(AllPrecisions) == NumMathPrecisions);

constexpr llvm::StringLiteral SchemaPrefix = "trainmem.gpus/";
constexpr int SchemaVersion = 1;

llvm::Error makeError(const llvm::Twine &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), Msg);
}

/// What two spellings are compared by: lower-case letters and digits only, so
/// "NVIDIA A100-SXM4-80GB", "nvidia a100 sxm4 80gb" and "nvidiaa100sxm480gb" agree.
std::string spellingKey(llvm::StringRef Text) {
  std::string Key;
  for (char C : Text)
    if (llvm::isAlnum(C))
      Key.push_back(llvm::toLower(C));
  return Key;
}

std::string describeJson(const llvm::json::Value &V) {
  std::string Text;
  llvm::raw_string_ostream OS(Text);
  OS << V;
  if (Text.size() > 40)
    Text = Text.substr(0, 37) + "...";
  return Text;
}

/// Reads one document; every error it makes starts with the source and, inside an
/// entry, the entry's index and name.
class CatalogReader {
public:
  explicit CatalogReader(llvm::StringRef SourceName) : SourceName(SourceName) {}

  llvm::Expected<std::vector<GpuSpec>> read(llvm::StringRef Text) {
    llvm::Expected<llvm::json::Value> Doc = parseJson(Text);
    if (!Doc)
      return makeError(SourceName + ": not valid JSON: " + llvm::toString(Doc.takeError()));
    const llvm::json::Object *Top = Doc->getAsObject();
    if (!Top)
      return makeError(SourceName + ": expected a JSON object with \"schema\" and \"gpus\"");
    if (llvm::Error E = checkSchema(*Top))
      return E;
    for (const auto &[Key, Value] : *Top)
      if (Key != "schema" && Key != "gpus" && Key != "note")
        return makeError(SourceName + ": unknown top-level key \"" + Key.str() +
                         "\"; expected schema, gpus and an optional note");
    const llvm::json::Value *GpusValue = Top->get("gpus");
    if (!GpusValue)
      return makeError(SourceName + ": no \"gpus\" list");
    const llvm::json::Array *GpuArray = GpusValue->getAsArray();
    if (!GpuArray)
      return makeError(SourceName + ": \"gpus\" must be a list of GPU objects, found " +
                       describeJson(*GpusValue));
    if (GpuArray->empty())
      return makeError(SourceName + ": \"gpus\" is empty; a catalogue lists at least one GPU");

    std::vector<GpuSpec> Gpus;
    for (size_t I = 0; I < GpuArray->size(); ++I) {
      llvm::Expected<GpuSpec> Spec = readEntry((*GpuArray)[I], I);
      if (!Spec)
        return Spec.takeError();
      Gpus.push_back(std::move(*Spec));
    }
    if (llvm::Error E = checkSpellingsAreUnique(Gpus))
      return E;
    return Gpus;
  }

private:
  std::string SourceName;
  std::string Where; ///< "gpus[3] (h100-sxm-80gb)" while reading an entry

  llvm::Error fieldError(llvm::StringRef Field, const llvm::Twine &Msg) const {
    return makeError(SourceName + ": " + Where + ": " + Field + ": " + Msg);
  }

  llvm::Error checkSchema(const llvm::json::Object &Top) const {
    const llvm::json::Value *Schema = Top.get("schema");
    if (!Schema)
      return makeError(SourceName +
                       ": no \"schema\" key; a GPU catalogue starts with "
                       "\"schema\": \"" +
                       GpuCatalogSchema + "\"");
    std::optional<llvm::StringRef> Name = Schema->getAsString();
    int Version = 0;
    if (!Name || !Name->starts_with(SchemaPrefix) ||
        Name->drop_front(SchemaPrefix.size()).getAsInteger(10, Version) || Version < 1)
      return makeError(SourceName + ": schema " + describeJson(*Schema) +
                       " is not a GPU catalogue; expected \"" + GpuCatalogSchema + "\"");
    if (Version > SchemaVersion)
      return makeError(SourceName + ": written by a newer trainmem (schema " + *Name +
                       "); this build reads " + GpuCatalogSchema +
                       ". Use a newer trainmem, or a catalogue in the older schema");
    return llvm::Error::success();
  }

  llvm::Expected<std::string> readString(const llvm::json::Object &Entry, llvm::StringRef Field,
                                         bool Required) const {
    const llvm::json::Value *V = Entry.get(Field);
    if (!V) {
      if (Required)
        return fieldError(Field, "missing");
      return std::string();
    }
    std::optional<llvm::StringRef> S = V->getAsString();
    if (!S)
      return fieldError(Field, "expected a string, found " + describeJson(*V));
    if (S->trim().empty())
      return fieldError(Field, "is empty");
    return S->str();
  }

  /// Bytes as an integer or, for hand-written files, a size string ("80 GiB").
  llvm::Expected<int64_t> readBytes(const llvm::json::Object &Entry, llvm::StringRef Field,
                                    llvm::StringRef Meaning) const {
    const llvm::json::Value *V = Entry.get(Field);
    if (!V)
      return fieldError(Field, "missing; expected " + Meaning);
    int64_t Bytes;
    if (std::optional<llvm::StringRef> S = V->getAsString()) {
      llvm::Expected<int64_t> Parsed = parseBytes(*S);
      if (!Parsed)
        return fieldError(Field, llvm::toString(Parsed.takeError()));
      Bytes = *Parsed;
    } else if (std::optional<int64_t> I = V->getAsInteger()) {
      Bytes = *I;
    } else if (V->getAsNumber()) {
      return fieldError(Field, describeJson(*V) + " is not a whole number of bytes");
    } else {
      return fieldError(Field, "expected a number of bytes, found " + describeJson(*V));
    }
    if (Bytes <= 0)
      return fieldError(Field, llvm::formatv("must be positive, found {0}", Bytes).str());
    return Bytes;
  }

  llvm::Expected<double> readRate(const llvm::json::Value &V, llvm::StringRef Field) const {
    std::optional<double> D = V.getAsNumber();
    if (!D)
      return fieldError(Field, "expected a number, found " + describeJson(V));
    if (!std::isfinite(*D) || *D <= 0)
      return fieldError(Field, "must be positive, found " + describeJson(V));
    return *D;
  }

  llvm::Expected<MathPrecision> readPrecision(llvm::StringRef Field, llvm::StringRef Name) const {
    if (std::optional<MathPrecision> P = mathPrecisionFromName(Name))
      return *P;
    return fieldError(Field,
                      "unknown precision \"" + Name + "\"; expected fp32, tf32, bf16, fp16 or fp8");
  }

  llvm::Expected<GpuSpec> readEntry(const llvm::json::Value &Value, size_t Index) {
    Where = llvm::formatv("gpus[{0}]", Index).str();
    const llvm::json::Object *Entry = Value.getAsObject();
    if (!Entry)
      return makeError(SourceName + ": " + Where + ": expected a GPU object, found " +
                       describeJson(Value));
    GpuSpec Spec;
    // The name first, so every later message can say which GPU it is about.
    llvm::Expected<std::string> Name = readString(*Entry, "name", true);
    if (!Name)
      return Name.takeError();
    Spec.Name = *Name;
    if (!llvm::all_of(Spec.Name, [](char C) {
          return llvm::isDigit(C) || (C >= 'a' && C <= 'z') || C == '-' || C == '.';
        }))
      return fieldError("name", "\"" + Spec.Name +
                                    "\" must be lower-case letters, digits, '-' and '.' "
                                    "(it is typed on command lines; spaces and capitals "
                                    "belong in display_name)");
    Where += " (" + Spec.Name + ")";

    static const llvm::StringLiteral KnownFields[] = {
        "name",         "display_name", "aliases",
        "vendor",       "architecture", "compute_capability",
        "memory_bytes", "usable_bytes", "bandwidth_bytes_per_s",
        "peak_flops",   "dtypes",       "note"};
    for (const auto &[Key, Unused] : *Entry)
      if (!llvm::is_contained(KnownFields, llvm::StringRef(Key)))
        return makeError(SourceName + ": " + Where + ": unknown field \"" + Key.str() +
                         "\"; expected " +
                         llvm::join(std::begin(KnownFields), std::end(KnownFields), ", "));

    struct StringField {
      llvm::StringRef Key;
      std::string *Target;
      bool Required;
    };
    for (StringField F : {StringField{"display_name", &Spec.DisplayName, true},
                          StringField{"vendor", &Spec.Vendor, true},
                          StringField{"architecture", &Spec.Architecture, false},
                          StringField{"compute_capability", &Spec.ComputeCapability, false},
                          StringField{"note", &Spec.Note, false}}) {
      llvm::Expected<std::string> S = readString(*Entry, F.Key, F.Required);
      if (!S)
        return S.takeError();
      *F.Target = std::move(*S);
    }
    if (spellingKey(Spec.DisplayName).empty())
      return fieldError("display_name", "\"" + Spec.DisplayName + "\" has no letters or digits");
    if (!Spec.ComputeCapability.empty()) {
      auto [Major, Minor] = llvm::StringRef(Spec.ComputeCapability).split('.');
      unsigned Ignored;
      if (Major.getAsInteger(10, Ignored) || Minor.getAsInteger(10, Ignored))
        return fieldError("compute_capability",
                          "\"" + Spec.ComputeCapability + "\" is not MAJOR.MINOR, e.g. \"8.0\"");
    }

    if (const llvm::json::Value *Aliases = Entry->get("aliases")) {
      const llvm::json::Array *List = Aliases->getAsArray();
      if (!List)
        return fieldError("aliases", "expected a list of strings, found " + describeJson(*Aliases));
      for (size_t I = 0; I < List->size(); ++I) {
        std::optional<llvm::StringRef> A = (*List)[I].getAsString();
        std::string Field = llvm::formatv("aliases[{0}]", I).str();
        if (!A)
          return fieldError(Field, "expected a string, found " + describeJson((*List)[I]));
        if (spellingKey(*A).empty())
          return fieldError(Field, "\"" + *A + "\" has no letters or digits");
        Spec.Aliases.push_back(A->str());
      }
    }

    llvm::Expected<int64_t> Memory =
        readBytes(*Entry, "memory_bytes", "the capacity as marketed, in bytes");
    if (!Memory)
      return Memory.takeError();
    Spec.MemoryBytes = *Memory;
    llvm::Expected<int64_t> Usable =
        readBytes(*Entry, "usable_bytes", "the total the driver reports (nvidia-smi), in bytes");
    if (!Usable)
      return Usable.takeError();
    Spec.UsableBytes = *Usable;
    // The driver never reports more than the board carries; more means a unit slip
    // (GB typed for GiB) that would make every plan on this GPU optimistic.
    if (Spec.UsableBytes > Spec.MemoryBytes)
      return fieldError("usable_bytes",
                        llvm::formatv("{0} bytes exceeds memory_bytes ({1} bytes); the "
                                      "driver's total cannot exceed the board's memory",
                                      Spec.UsableBytes, Spec.MemoryBytes)
                            .str());

    if (const llvm::json::Value *Bandwidth = Entry->get("bandwidth_bytes_per_s")) {
      llvm::Expected<double> Rate = readRate(*Bandwidth, "bandwidth_bytes_per_s");
      if (!Rate)
        return Rate.takeError();
      Spec.BandwidthBytesPerSecond = *Rate;
    }

    const llvm::json::Value *DTypes = Entry->get("dtypes");
    if (!DTypes)
      return fieldError("dtypes", "missing; expected the precisions the GPU runs natively, "
                                  "e.g. [\"fp32\", \"fp16\"]");
    const llvm::json::Array *DTypeList = DTypes->getAsArray();
    if (!DTypeList || DTypeList->empty())
      return fieldError("dtypes",
                        "expected a non-empty list of precisions, found " + describeJson(*DTypes));
    for (size_t I = 0; I < DTypeList->size(); ++I) {
      std::string Field = llvm::formatv("dtypes[{0}]", I).str();
      std::optional<llvm::StringRef> S = (*DTypeList)[I].getAsString();
      if (!S)
        return fieldError(Field, "expected a string, found " + describeJson((*DTypeList)[I]));
      auto P = readPrecision(Field, *S);
      if (!P)
        return P.takeError();
      bool &Flag = Spec.Supported[static_cast<unsigned>(*P)];
      if (Flag)
        return fieldError(Field, "\"" + *S + "\" is listed twice");
      Flag = true;
    }

    if (const llvm::json::Value *Peaks = Entry->get("peak_flops")) {
      const llvm::json::Object *PeakObject = Peaks->getAsObject();
      if (!PeakObject)
        return fieldError("peak_flops", "expected an object of FLOP/s per precision, e.g. "
                                        "{\"bf16\": 312e12}, found " +
                                            describeJson(*Peaks));
      for (const auto &[Key, Rate] : *PeakObject) {
        std::string Field = "peak_flops." + Key.str();
        auto P = readPrecision(Field, Key);
        if (!P)
          return P.takeError();
        // A rate for a precision the GPU lacks is a contradiction the planner could
        // otherwise pick up as a reason to choose that precision.
        if (!Spec.supports(*P))
          return fieldError(Field, "given, but \"" + Key.str() + "\" is not in dtypes");
        llvm::Expected<double> Flops = readRate(Rate, Field);
        if (!Flops)
          return Flops.takeError();
        Spec.PeakFlops[static_cast<unsigned>(*P)] = *Flops;
      }
    }
    return Spec;
  }

  /// Every spelling (name, display name, alias) must lead to one GPU, or an exact
  /// lookup would depend on the order of the file.
  llvm::Error checkSpellingsAreUnique(const std::vector<GpuSpec> &Gpus) const {
    struct Owner {
      size_t Index;
      std::string Field;
    };
    llvm::StringMap<Owner> Seen;
    for (size_t I = 0; I < Gpus.size(); ++I) {
      const GpuSpec &G = Gpus[I];
      std::vector<std::pair<std::string, std::string>> Spellings = {
          {"name", G.Name}, {"display_name", G.DisplayName}};
      for (size_t A = 0; A < G.Aliases.size(); ++A)
        Spellings.push_back({llvm::formatv("aliases[{0}]", A).str(), G.Aliases[A]});
      for (const auto &[Field, Text] : Spellings) {
        auto [It, Inserted] = Seen.try_emplace(spellingKey(Text), Owner{I, Field});
        if (Inserted || It->second.Index == I)
          continue;
        const Owner &First = It->second;
        bool SameName = Field == "name" && First.Field == "name";
        return makeError(llvm::formatv("{0}: gpus[{1}] ({2}): {3}: \"{4}\" {5} gpus[{6}] "
                                       "({7}){8}; every name, display name and alias must "
                                       "pick out one GPU",
                                       SourceName, I, G.Name, Field, Text,
                                       SameName ? "duplicates the name of" : "is also", First.Index,
                                       Gpus[First.Index].Name, SameName ? "" : "'s " + First.Field)
                             .str());
      }
    }
    return llvm::Error::success();
  }
};

/// All spellings of one entry, as keys.
std::vector<std::string> spellingKeys(const GpuSpec &G) {
  std::vector<std::string> Keys = {spellingKey(G.Name), spellingKey(G.DisplayName)};
  for (const std::string &A : G.Aliases)
    Keys.push_back(spellingKey(A));
  return Keys;
}

} // namespace

llvm::StringRef mathPrecisionName(MathPrecision P) {
  switch (P) {
  case MathPrecision::FP32:
    return "fp32";
  case MathPrecision::TF32:
    return "tf32";
  case MathPrecision::BF16:
    return "bf16";
  case MathPrecision::FP16:
    return "fp16";
  case MathPrecision::FP8:
    return "fp8";
  }
  llvm_unreachable("unknown MathPrecision");
}

std::optional<MathPrecision> mathPrecisionFromName(llvm::StringRef Name) {
  for (MathPrecision P : AllPrecisions)
    if (Name == mathPrecisionName(P))
      return P;
  return std::nullopt;
}

llvm::ArrayRef<MathPrecision> allMathPrecisions() { return AllPrecisions; }

llvm::Expected<GpuCatalog> GpuCatalog::parse(llvm::StringRef Text, llvm::StringRef SourceName) {
  llvm::Expected<std::vector<GpuSpec>> Gpus = CatalogReader(SourceName).read(Text);
  if (!Gpus)
    return Gpus.takeError();
  GpuCatalog Catalog;
  Catalog.Gpus = std::move(*Gpus);
  Catalog.Source = SourceName.str();
  return Catalog;
}

llvm::Expected<GpuCatalog> GpuCatalog::load(llvm::StringRef Path) {
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> Buffer =
      llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  if (!Buffer)
    return makeError(Path + ": cannot read the GPU catalogue: " + Buffer.getError().message());
  return parse((*Buffer)->getBuffer(), Path);
}

llvm::Expected<GpuCatalog> GpuCatalog::builtin() {
  return parse(builtinGpuCatalogText(), "built-in");
}

llvm::Expected<GpuCatalog> GpuCatalog::loadConfigured(llvm::StringRef ExplicitPath) {
  if (!ExplicitPath.empty())
    return load(ExplicitPath);
  const char *FromEnvironment = std::getenv("TRAINMEM_GPU_CATALOG");
  if (FromEnvironment && *FromEnvironment) {
    llvm::Expected<GpuCatalog> Catalog = load(FromEnvironment);
    if (!Catalog)
      return makeError("TRAINMEM_GPU_CATALOG: " + llvm::toString(Catalog.takeError()));
    return Catalog;
  }
  return builtin();
}

const GpuSpec *GpuCatalog::find(llvm::StringRef Query) const {
  llvm::Expected<const GpuSpec &> Found = lookup(Query);
  if (!Found) {
    llvm::consumeError(Found.takeError());
    return nullptr;
  }
  return &*Found;
}

llvm::Expected<const GpuSpec &> GpuCatalog::lookup(llvm::StringRef Query) const {
  std::string Where =
      Source == "built-in" ? std::string("the built-in GPU catalogue") : "GPU catalogue " + Source;
  std::string Key = spellingKey(Query);
  if (Key.empty())
    return makeError("no GPU name given; `trainmem gpus` lists " + Where);
  // Validation made exact spellings unique, so the first exact hit is the only one.
  for (const GpuSpec &G : Gpus)
    if (llvm::is_contained(spellingKeys(G), Key))
      return G;
  std::vector<const GpuSpec *> Candidates;
  for (const GpuSpec &G : Gpus)
    if (llvm::any_of(spellingKeys(G),
                     [&](const std::string &K) { return llvm::StringRef(K).starts_with(Key); }))
      Candidates.push_back(&G);
  if (Candidates.empty()) {
    // No name starts so: the GPUs whose names hold every word of the query, in any order
    // ("a100-80gb" names both 80 GB A100s, "4090" the RTX 4090).
    std::vector<std::string> Words(1);
    for (char C : Query) {
      if (llvm::isAlnum(C))
        Words.back().push_back(llvm::toLower(C));
      else if (!Words.back().empty())
        Words.emplace_back();
    }
    for (const GpuSpec &G : Gpus) {
      const std::vector<std::string> Keys = spellingKeys(G);
      if (llvm::all_of(Words, [&](const std::string &W) {
            return llvm::any_of(Keys, [&](const std::string &K) {
              return llvm::StringRef(K).contains(W);
            });
          }))
        Candidates.push_back(&G);
    }
  }
  if (Candidates.size() == 1)
    return *Candidates.front();
  if (Candidates.empty()) {
    std::vector<llvm::StringRef> Names;
    for (const GpuSpec &G : Gpus)
      Names.push_back(G.Name);
    return makeError("unknown GPU \"" + Query + "\" in " + Where +
                     "; known GPUs: " + llvm::join(Names, ", "));
  }
  std::vector<std::string> Listed;
  for (const GpuSpec *G : Candidates)
    Listed.push_back(G->Name + " (" + G->DisplayName + ")");
  return makeError("GPU name \"" + Query + "\" is ambiguous in " + Where + ": it matches " +
                   llvm::join(Listed, ", ") + "; give more of the name");
}

void writeGpuCatalogJson(llvm::ArrayRef<const GpuSpec *> Gpus, llvm::raw_ostream &OS) {
  llvm::json::OStream J(OS, /*IndentSize=*/2);
  J.object([&] {
    J.attribute("schema", GpuCatalogSchema);
    J.attributeArray("gpus", [&] {
      for (const GpuSpec *G : Gpus) {
        J.object([&] {
          J.attribute("name", G->Name);
          J.attribute("display_name", G->DisplayName);
          if (!G->Aliases.empty())
            J.attributeArray("aliases", [&] {
              for (const std::string &A : G->Aliases)
                J.value(A);
            });
          J.attribute("vendor", G->Vendor);
          if (!G->Architecture.empty())
            J.attribute("architecture", G->Architecture);
          if (!G->ComputeCapability.empty())
            J.attribute("compute_capability", G->ComputeCapability);
          J.attribute("memory_bytes", G->MemoryBytes);
          J.attribute("usable_bytes", G->UsableBytes);
          if (G->BandwidthBytesPerSecond)
            J.attribute("bandwidth_bytes_per_s", *G->BandwidthBytesPerSecond);
          if (llvm::any_of(G->PeakFlops, [](const auto &F) { return F.has_value(); }))
            J.attributeObject("peak_flops", [&] {
              for (MathPrecision P : AllPrecisions)
                if (std::optional<double> F = G->peakFlops(P))
                  J.attribute(mathPrecisionName(P), *F);
            });
          J.attributeArray("dtypes", [&] {
            for (MathPrecision P : AllPrecisions)
              if (G->supports(P))
                J.value(mathPrecisionName(P));
          });
          if (!G->Note.empty())
            J.attribute("note", G->Note);
        });
      }
    });
  });
  OS << "\n";
}

} // namespace trainmem
