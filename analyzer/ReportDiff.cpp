//===- ReportDiff.cpp - what changed between two memory reports ------------------===//
#include "analyzer/ReportDiff.h"
#include "analyzer/MemoryReport.h"
#include "analyzer/SafeJson.h"
#include "analyzer/Units.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace trainmem {

namespace {

llvm::Error fieldError(llvm::StringRef File, llvm::StringRef Field, llvm::StringRef Expected) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: field '%s': expected %s",
                                 File.str().c_str(), Field.str().c_str(),
                                 Expected.str().c_str());
}

/// The report's byte figures, most important first: the peak figures, then the
/// categories in the report's order.
std::vector<const char *> byteKeys() {
  std::vector<const char *> Keys = {"peak", "peak_reserved"};
  for (const CategoryField &F : CategoryFields)
    Keys.push_back(F.Name);
  return Keys;
}

std::vector<FigureDelta> largestChanges(const std::map<std::string, int64_t> &Base,
                                        const std::map<std::string, int64_t> &New,
                                        size_t Top) {
  std::set<std::string> Names;
  for (const auto &[Name, Bytes] : Base)
    Names.insert(Name);
  for (const auto &[Name, Bytes] : New)
    Names.insert(Name);
  std::vector<FigureDelta> Out;
  for (const std::string &Name : Names) {
    FigureDelta D;
    D.Name = Name;
    if (auto It = Base.find(Name); It != Base.end())
      D.Base = It->second;
    if (auto It = New.find(Name); It != New.end())
      D.New = It->second;
    if (D.change() != 0)
      Out.push_back(std::move(D));
  }
  std::stable_sort(Out.begin(), Out.end(), [](const FigureDelta &A, const FigureDelta &B) {
    return std::llabs(A.change()) > std::llabs(B.change());
  });
  if (Out.size() > Top)
    Out.resize(Top);
  return Out;
}

llvm::json::Value optionalBytes(const std::optional<int64_t> &V) {
  return V ? llvm::json::Value(*V) : llvm::json::Value(nullptr);
}

} // namespace

std::optional<double> FigureDelta::percent() const {
  if (!Base || *Base == 0)
    return std::nullopt;
  return 100.0 * static_cast<double>(change()) / static_cast<double>(*Base);
}

llvm::Expected<ReportFigures> readReportFigures(llvm::StringRef Json, llvm::StringRef File) {
  llvm::Expected<llvm::json::Value> V = parseJson(Json);
  if (!V)
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: not JSON: %s",
                                   File.str().c_str(), llvm::toString(V.takeError()).c_str());
  const llvm::json::Object *O = V->getAsObject();
  if (!O)
    return fieldError(File, "(top level)", "an object (a trainmem analyze --format=json report)");
  std::optional<llvm::StringRef> Schema = O->getString("schema");
  if (!Schema || *Schema != "trainmem.report/1")
    return fieldError(File, "schema", "\"trainmem.report/1\" (a trainmem analyze "
                                      "--format=json report)");
  ReportFigures R;
  R.File = File.str();
  if (const llvm::json::Object *Model = O->getObject("model"))
    R.Model = Model->getString("name").value_or("").str();
  const llvm::json::Object *Bytes = O->getObject("bytes");
  if (!Bytes)
    return fieldError(File, "bytes", "an object of byte figures");
  for (const char *Key : byteKeys()) {
    const llvm::json::Value *B = Bytes->get(Key);
    if (!B || B->kind() == llvm::json::Value::Null)
      continue;
    std::optional<int64_t> N = B->getAsInteger();
    if (!N || *N < 0)
      return fieldError(File, std::string("bytes.") + Key, "a non-negative integer");
    R.Bytes.emplace_back(Key, *N);
  }
  if (const llvm::json::Array *Layers = O->getArray("layers")) {
    for (size_t I = 0; I < Layers->size(); ++I) {
      const llvm::json::Object *L = (*Layers)[I].getAsObject();
      std::optional<llvm::StringRef> Path = L ? L->getString("path") : std::nullopt;
      if (!Path)
        return fieldError(File, "layers[" + std::to_string(I) + "].path", "a string");
      int64_t Total = 0;
      for (const char *Key :
           {"weight_bytes", "gradient_bytes", "optimizer_state_bytes", "saved_bytes"})
        Total += L->getInteger(Key).value_or(0);
      R.Layers[Path->str()] += Total;
    }
  }
  if (const llvm::json::Object *Peak = O->getObject("peak")) {
    R.PeakAt = (Peak->getString("phase").value_or("") + " at " +
                Peak->getString("op").value_or(""))
                   .str();
    if (const llvm::json::Array *Top = Peak->getArray("top_tensors"))
      for (size_t I = 0; I < Top->size(); ++I) {
        const llvm::json::Object *T = (*Top)[I].getAsObject();
        std::optional<llvm::StringRef> Name = T ? T->getString("name") : std::nullopt;
        std::optional<int64_t> B = T ? T->getInteger("bytes") : std::nullopt;
        if (!Name || !B)
          return fieldError(File, "peak.top_tensors[" + std::to_string(I) + "]",
                            "an object with name and bytes");
        R.PeakTensors[Name->str()] += *B;
      }
  }
  return R;
}

ReportDiff diffReports(const ReportFigures &Base, const ReportFigures &New, size_t Top) {
  ReportDiff D;
  D.BaseFile = Base.File;
  D.NewFile = New.File;
  D.BaseModel = Base.Model;
  D.NewModel = New.Model;
  D.BasePeakAt = Base.PeakAt;
  D.NewPeakAt = New.PeakAt;
  for (const char *Key : byteKeys()) {
    FigureDelta F;
    F.Name = Key;
    for (const auto &[Name, Bytes] : Base.Bytes)
      if (Name == Key)
        F.Base = Bytes;
    for (const auto &[Name, Bytes] : New.Bytes)
      if (Name == Key)
        F.New = Bytes;
    if (F.Base || F.New)
      D.Figures.push_back(std::move(F));
  }
  D.Layers = largestChanges(Base.Layers, New.Layers, Top);
  D.Tensors = largestChanges(Base.PeakTensors, New.PeakTensors, Top);
  return D;
}

llvm::Expected<IncreaseLimit> parseIncreaseLimit(llvm::StringRef Text) {
  IncreaseLimit L;
  llvm::StringRef T = Text.trim();
  if (T.consume_back("%")) {
    double P = 0;
    if (T.trim().getAsDouble(P) || P < 0 || !std::isfinite(P))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "--max-increase=%s: expected a percentage such as 5%% "
                                     "or a size such as 512MiB",
                                     Text.str().c_str());
    L.Percent = P;
    return L;
  }
  auto B = parseBytes(T);
  if (!B)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--max-increase=%s: expected a percentage such as 5%% or a "
                                   "size such as 512MiB (%s)",
                                   Text.str().c_str(), llvm::toString(B.takeError()).c_str());
  L.Bytes = *B;
  return L;
}

std::optional<std::string> checkIncrease(const ReportDiff &D, const IncreaseLimit &Limit) {
  const FigureDelta *Peak = nullptr;
  for (const FigureDelta &F : D.Figures)
    if (F.Name == "peak")
      Peak = &F;
  if (!Peak || !Peak->Base || !Peak->New || Peak->change() <= 0)
    return std::nullopt;
  std::string Grew = "peak grew by " + formatBytes(Peak->change());
  if (auto P = Peak->percent())
    Grew += llvm::formatv(" (+{0:f1}%)", *P).str();
  Grew += ", from " + formatBytes(*Peak->Base) + " to " + formatBytes(*Peak->New);
  if (Limit.Bytes && Peak->change() > *Limit.Bytes)
    return Grew + ", more than the allowed " + formatBytes(*Limit.Bytes);
  if (Limit.Percent) {
    auto P = Peak->percent();
    if (P && *P > *Limit.Percent)
      return Grew + ", more than the allowed " +
             llvm::formatv(*Limit.Percent == std::floor(*Limit.Percent) ? "{0:f0}%" : "{0:f2}%",
                           *Limit.Percent)
                 .str();
  }
  return std::nullopt;
}

llvm::json::Value diffToJson(const ReportDiff &D, const std::optional<std::string> &Regression) {
  auto Deltas = [](const std::vector<FigureDelta> &List) {
    llvm::json::Array Out;
    for (const FigureDelta &F : List) {
      llvm::json::Object O{{"name", jsonString(F.Name)},
                           {"base", optionalBytes(F.Base)},
                           {"new", optionalBytes(F.New)},
                           {"change", F.change()}};
      if (auto P = F.percent())
        O["percent"] = std::round(*P * 100.0) / 100.0;
      Out.push_back(std::move(O));
    }
    return Out;
  };
  llvm::json::Object O{{"schema", "trainmem.diff/1"},
                       {"base", llvm::json::Object{{"file", jsonString(D.BaseFile)},
                                                   {"model", jsonString(D.BaseModel)},
                                                   {"peak_at", jsonString(D.BasePeakAt)}}},
                       {"new", llvm::json::Object{{"file", jsonString(D.NewFile)},
                                                  {"model", jsonString(D.NewModel)},
                                                  {"peak_at", jsonString(D.NewPeakAt)}}},
                       {"figures", Deltas(D.Figures)},
                       {"layers", Deltas(D.Layers)},
                       {"peak_tensors", Deltas(D.Tensors)},
                       {"regression", Regression ? llvm::json::Value(*Regression)
                                                 : llvm::json::Value(nullptr)}};
  return O;
}

} // namespace trainmem
