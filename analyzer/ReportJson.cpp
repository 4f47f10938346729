//===- ReportJson.cpp - the trainmem.report/1 JSON writer ------------------------===//
//
// Key names and meanings are a contract (DESIGN.md "Contracts"); a figure the build
// cannot compute yet is written as null, never as a guess.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ReportWriters.h"
#include "analyzer/SafeJson.h"

#include "trainmem/Version.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include <charconv>
#include <limits>

namespace trainmem {
namespace {

llvm::json::Array shapeJson(const std::vector<int64_t> &Shape) {
  llvm::json::Array A;
  for (int64_t D : Shape)
    A.push_back(D);
  return A;
}

llvm::json::Object categoriesJson(const CategoryBytes &B, bool Measured = false) {
  llvm::json::Object O;
  for (const CategoryField &F : CategoryFields)
    O[F.Name] = B.*F.Member;
  if (Measured)
    for (const CategoryField &F : TraceCategoryFields)
      O[F.Name] = B.*F.Member;
  return O;
}

llvm::json::Object tensorJson(const TensorSummary &T) {
  llvm::json::Object O{{"name", jsonString(T.Name)},
                       {"category", T.Category},
                       {"dtype", std::string(dtypeName(T.Type))},
                       {"shape", shapeJson(T.Shape)},
                       {"bytes", T.Bytes}};
  if (!T.Layer.empty())
    O["layer"] = jsonString(T.Layer);
  if (!T.Op.empty())
    O["op"] = jsonString(T.Op);
  return O;
}

llvm::json::Value optionalBytes(const std::optional<int64_t> &V) {
  if (V)
    return *V;
  return nullptr;
}

} // namespace

namespace {

/// The whole report but its timeline, which writeReportJson streams (for a 7B model the
/// timeline is thousands of objects: building them as llvm::json values and printing them
/// took about half of `analyze`'s time).
llvm::json::Object reportObject(const MemoryReport &R, bool WithTimeline);

/// The members of a timeline point in llvm::json's printing order (keys sorted): a
/// category (by its field), or one of the point's own fields. Worked out once per report.
struct PointMember {
  llvm::StringRef Key;
  int64_t CategoryBytes::*Category = nullptr;
  enum { None, Index, Phase, Op, TimeUs, Reserved } Field = None;
  /// What precedes the value: the separator, the indent and the quoted key.
  std::string Lead;
};

std::vector<PointMember> pointMembers(bool Measured, bool HasTime, bool HasReserved) {
  std::vector<PointMember> M;
  for (const CategoryField &F : CategoryFields)
    M.push_back({F.Name, F.Member, PointMember::None, {}});
  if (Measured)
    for (const CategoryField &F : TraceCategoryFields)
      M.push_back({F.Name, F.Member, PointMember::None, {}});
  M.push_back({"index", nullptr, PointMember::Index, {}});
  M.push_back({"phase", nullptr, PointMember::Phase, {}});
  M.push_back({"op", nullptr, PointMember::Op, {}});
  if (HasTime)
    M.push_back({"time_us", nullptr, PointMember::TimeUs, {}});
  if (HasReserved)
    M.push_back({"reserved", nullptr, PointMember::Reserved, {}});
  llvm::sort(M, [](const PointMember &A, const PointMember &B) { return A.Key < B.Key; });
  for (PointMember &P : M)
    P.Lead = std::string(&P == &M.front() ? "\n      \"" : ",\n      \"") + P.Key.str() + "\": ";
  return M;
}

/// An integer as raw_ostream prints it, through std::to_chars (the timeline's ~56,000
/// integers took 0.4 ms through raw_ostream's own formatting).
void writeInteger(llvm::raw_ostream &OS, int64_t V) {
  char Buf[24];
  auto [End, Ec] = std::to_chars(Buf, Buf + sizeof(Buf), V);
  (void)Ec; // 24 characters hold every int64_t.
  OS.write(Buf, End - Buf);
}

/// The member order of the points written last, and which optional fields it had.
struct PointOrder {
  std::vector<PointMember> Members;
  unsigned Shape = ~0u;
};

/// A string as llvm::json prints it: as it is between quotes when it is plain ASCII with
/// nothing to escape (op and phase names), else through llvm::json itself.
void writeJsonString(llvm::raw_ostream &OS, llvm::StringRef S) {
  bool Plain = llvm::none_of(S, [](char C) {
    auto U = static_cast<unsigned char>(C);
    return U < 0x20 || U == '"' || U == '\\' || U >= 0x80;
  });
  if (Plain) {
    OS << '"' << S << '"';
    return;
  }
  // Repaired first, as llvm::json::Value does in builds without assertions (with them it
  // asserts instead).
  llvm::json::OStream(OS).value(llvm::json::isUTF8(S) ? S.str() : llvm::json::fixUTF8(S));
}

/// One timeline point, written as llvm::json::OStream would write it as an element of the
/// report's "timeline" array (indent 2: the element at 4 spaces, its members at 6).
/// Hand-written because the timeline is three quarters of a report (1.4 of the 7B
/// export's 1.9 MB) and OStream's per-member bookkeeping, key quoting and UTF-8 checks
/// took 2.7 ms to write it; the test ReportJson.TimelineWrittenAsLlvmJsonPrintsIt holds the
/// bytes to OStream's.
void writeTimelinePoint(llvm::raw_ostream &OS, const TimelinePoint &P, bool Measured,
                        PointOrder &Order) {
  // Points of one report agree on their optional fields, except where a measured sample
  // lacks a reserved figure: the order is worked out again only when the shape changes.
  unsigned Shape = (Measured ? 1 : 0) | (P.TimeUs ? 2 : 0) | (P.Reserved ? 4 : 0);
  if (Shape != Order.Shape) {
    Order.Members = pointMembers(Measured, P.TimeUs.has_value(), P.Reserved.has_value());
    Order.Shape = Shape;
  }
  OS << '{';
  for (const PointMember &M : Order.Members) {
    OS << M.Lead;
    switch (M.Field) {
    case PointMember::None: writeInteger(OS, P.Live.*M.Category); break;
    case PointMember::Index: writeInteger(OS, P.Index); break;
    case PointMember::Phase: writeJsonString(OS, P.Phase); break;
    case PointMember::Op: writeJsonString(OS, P.Op); break;
    case PointMember::TimeUs:
      OS << llvm::format("%.*g", std::numeric_limits<double>::max_digits10, *P.TimeUs);
      break;
    case PointMember::Reserved: writeInteger(OS, *P.Reserved); break;
    }
  }
  OS << (Order.Members.empty() ? "}" : "\n    }");
}

} // namespace

llvm::json::Value reportToJson(const MemoryReport &R) { return reportObject(R, true); }

namespace {

llvm::json::Object reportObject(const MemoryReport &R, bool WithTimeline) {
  llvm::json::Object Dims;
  for (const DimBinding &D : R.Model.Dims)
    Dims[jsonString(D.Name)] = D.Value;
  llvm::json::Array Inputs;
  for (const InputSummary &I : R.Model.Inputs)
    Inputs.push_back(llvm::json::Object{{"name", jsonString(I.Name)},
                                        {"dtype", std::string(dtypeName(I.Type))},
                                        {"shape", shapeJson(I.Shape)},
                                        {"bytes", I.Bytes}});
  llvm::json::Object Model{{"name", jsonString(R.Model.Name)}, {"source", jsonString(R.Model.Source)},
                           {"format", R.Model.Format},   {"producer", jsonString(R.Model.Producer)},
                           {"opset", R.Model.Opset},     {"nodes", R.Model.Nodes},
                           {"tensors", R.Model.Tensors}, {"dims", std::move(Dims)},
                           {"inputs", std::move(Inputs)}};
  if (R.Model.PaddedBatches) // only when set: reports of unpadded steps are unchanged
    Model["padded_batches"] = true;

  bool Simulated = R.Peak.has_value();
  bool Measured = R.Measured.has_value();
  llvm::json::Object Bytes = categoriesJson(R.Bytes, Measured);
  if (!Simulated) {
    Bytes["activations"] = nullptr;
    Bytes["temporaries"] = nullptr;
  }
  Bytes["peak"] = optionalBytes(R.Peak);
  Bytes["peak_reserved"] = optionalBytes(R.PeakReserved);

  llvm::json::Value Peak = nullptr;
  if (R.PeakInfo) {
    llvm::json::Array Top;
    for (const TensorSummary &T : R.PeakInfo->TopTensors)
      Top.push_back(tensorJson(T));
    Peak = llvm::json::Object{{"phase", jsonString(R.PeakInfo->Phase)},
                              {"op", jsonString(R.PeakInfo->Op)},
                              {"by_category", categoriesJson(R.PeakInfo->ByCategory, Measured)},
                              {"top_tensors", std::move(Top)}};
  }
  llvm::json::Array Timeline;
  for (const TimelinePoint &P : R.Timeline) {
    if (!WithTimeline)
      break;
    llvm::json::Object O = categoriesJson(P.Live, Measured);
    O["index"] = P.Index;
    O["phase"] = jsonString(P.Phase);
    O["op"] = jsonString(P.Op);
    if (P.TimeUs)
      O["time_us"] = *P.TimeUs;
    if (P.Reserved)
      O["reserved"] = *P.Reserved;
    Timeline.push_back(std::move(O));
  }
  llvm::json::Array Layers;
  for (const LayerSummary &L : R.Layers)
    Layers.push_back(llvm::json::Object{{"path", jsonString(L.Path)},
                                        {"parameters", L.Parameters},
                                        {"trainable_parameters", L.TrainableParameters},
                                        {"weight_bytes", L.WeightBytes},
                                        {"gradient_bytes", L.GradientBytes},
                                        {"optimizer_state_bytes", L.OptimizerStateBytes},
                                        {"saved_bytes", L.SavedBytes}});
  llvm::json::Array Diags;
  for (const Diagnostic &D : R.Diags.all())
    Diags.push_back(llvm::json::Object{{"severity", severityName(D.Level)},
                                       {"code", D.Code},
                                       {"where", jsonString(D.Where)},
                                       {"message", jsonString(D.Message)}});
  llvm::json::Object States;
  for (const OptimizerStatePart &S : R.OptimizerStates)
    States[jsonString(S.Name)] = S.Bytes;
  llvm::json::Array Largest;
  for (const TensorSummary &T : R.LargestParameters)
    Largest.push_back(tensorJson(T));

  llvm::json::Value Gpu = nullptr;
  if (R.Gpu)
    Gpu = llvm::json::Object{{"name", R.Gpu->Name},
                             {"display_name", R.Gpu->DisplayName},
                             {"usable_bytes", R.Gpu->UsableBytes},
                             {"required_bytes", R.Gpu->RequiredBytes},
                             {"required_basis", R.Gpu->RequiredBasis},
                             {"fits", R.Gpu->fits()},
                             {"headroom_bytes", R.Gpu->UsableBytes - R.Gpu->RequiredBytes}};
  llvm::json::Object Doc{
      {"schema", ReportSchema},
      {"gpu", std::move(Gpu)},
      {"tool", llvm::json::Object{{"name", "trainmem"}, {"version", TRAINMEM_VERSION_STRING}}},
      {"model", std::move(Model)},
      {"setup", setupToJson(R.Setup)},
      {"parameters", llvm::json::Object{{"total", R.TotalParameters},
                                        {"trainable", R.TrainableParameters},
                                        {"tied_groups", R.TiedGroups}}},
      {"bytes", std::move(Bytes)},
      {"buffers_bytes", R.BufferBytes},
      {"optimizer_state_breakdown", std::move(States)},
      {"peak", std::move(Peak)},
      {"timeline", std::move(Timeline)},
      {"layers", std::move(Layers)},
      {"largest_parameters", std::move(Largest)},
      {"diagnostics", std::move(Diags)},
  };
  if (Measured) {
    // A measured run has no training setup; where its numbers come from instead.
    Doc["setup"] = nullptr;
    Doc["measured"] = measuredToJson(*R.Measured);
  }
  return Doc;
}

} // namespace

void writeReportJson(const MemoryReport &R, llvm::raw_ostream &OS) {
  // The same bytes as printing reportToJson(R): members in sorted key order, the timeline
  // streamed point by point instead of built as values first.
  llvm::json::Object Doc = reportObject(R, false);
  std::vector<std::string> Keys;
  for (const auto &KV : Doc)
    Keys.push_back(KV.first.str());
  llvm::sort(Keys);
  bool Measured = R.Measured.has_value();
  llvm::json::OStream J(OS, 2);
  J.object([&] {
    for (const std::string &Key : Keys) {
      if (Key != "timeline") {
        J.attribute(Key, *Doc.get(Key));
        continue;
      }
      J.attributeArray("timeline", [&] {
        PointOrder Order;
        for (const TimelinePoint &P : R.Timeline)
          J.rawValue([&](llvm::raw_ostream &Out) { writeTimelinePoint(Out, P, Measured, Order); });
      });
    }
  });
  OS << "\n";
}

} // namespace trainmem
