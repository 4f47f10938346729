//===- EmitterSupport.cpp - internals the config emitters share -------------------===//
//
// Errors and text output the config emitters share; see EmitterSupport.h.
//
//===----------------------------------------------------------------------------===//
#include "planner/EmitterSupport.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>
#include <cstdlib>
#include <optional>

namespace trainmem::emit {

llvm::Error error(const llvm::Twine &Msg) {
  return llvm::make_error<llvm::StringError>(Msg, llvm::inconvertibleErrorCode());
}

llvm::Error emitError(ConfigTarget T, const llvm::Twine &Msg) {
  return error("--emit=" + llvm::Twine(configTargetName(T)) + ": " + Msg);
}

//===----------------------------------------------------------------------------===//
// Text output. llvm::json prints doubles with 17 significant digits (0.05 becomes
// 0.050000000000000003); configs are read by people, so numbers are printed in their
// shortest round-tripping form. Object keys come out sorted, so output is stable.
//===----------------------------------------------------------------------------===//

std::string shortestNumber(double D, Notation N) {
  char Buf[64];
  for (int Precision = 1; Precision <= 17; ++Precision) {
    if (N == Notation::Fixed)
      std::snprintf(Buf, sizeof Buf, "%.*f", Precision, D);
    else
      std::snprintf(Buf, sizeof Buf, "%.*g", Precision, D);
    if (std::strtod(Buf, nullptr) == D)
      break;
  }
  return Buf;
}

namespace {

bool isScalar(const llvm::json::Value &V) {
  return V.kind() != llvm::json::Value::Array && V.kind() != llvm::json::Value::Object;
}

void printJson(llvm::raw_ostream &OS, const llvm::json::Value &V, unsigned Indent) {
  switch (V.kind()) {
  case llvm::json::Value::Null:
    OS << "null";
    return;
  case llvm::json::Value::Boolean:
    OS << (*V.getAsBoolean() ? "true" : "false");
    return;
  case llvm::json::Value::Number:
    if (std::optional<int64_t> I = V.getAsInteger())
      OS << *I;
    else
      OS << shortestNumber(*V.getAsNumber());
    return;
  case llvm::json::Value::String:
    llvm::json::OStream(OS).value(V);
    return;
  case llvm::json::Value::Array: {
    const llvm::json::Array &A = *V.getAsArray();
    if (llvm::all_of(A, isScalar)) {
      OS << "[";
      for (size_t I = 0; I < A.size(); ++I) {
        OS << (I ? ", " : "");
        printJson(OS, A[I], Indent);
      }
      OS << "]";
      return;
    }
    OS << "[\n";
    for (size_t I = 0; I < A.size(); ++I) {
      OS.indent(Indent + 2);
      printJson(OS, A[I], Indent + 2);
      OS << (I + 1 < A.size() ? ",\n" : "\n");
    }
    OS.indent(Indent) << "]";
    return;
  }
  case llvm::json::Value::Object: {
    const llvm::json::Object &O = *V.getAsObject();
    if (O.empty()) {
      OS << "{}";
      return;
    }
    std::vector<const llvm::json::Object::value_type *> Members;
    for (const auto &KV : O)
      Members.push_back(&KV);
    llvm::sort(Members, [](const auto *A, const auto *B) {
      return llvm::StringRef(A->first) < llvm::StringRef(B->first);
    });
    OS << "{\n";
    for (size_t I = 0; I < Members.size(); ++I) {
      OS.indent(Indent + 2);
      llvm::json::OStream(OS).value(llvm::StringRef(Members[I]->first));
      OS << ": ";
      printJson(OS, Members[I]->second, Indent + 2);
      OS << (I + 1 < Members.size() ? ",\n" : "\n");
    }
    OS.indent(Indent) << "}";
    return;
  }
  }
}

} // namespace

std::string jsonText(llvm::json::Object O) {
  std::string Text;
  llvm::raw_string_ostream OS(Text);
  printJson(OS, llvm::json::Value(std::move(O)), 0);
  OS << "\n";
  return Text;
}

/// YAML 1.1 (PyYAML, which accelerate and OmegaConf build on) reads `1e-05` as a
/// string and `no` as false, so floats are written in fixed notation and words that
/// YAML would reinterpret are quoted.
std::string yamlFloat(double D) {
  std::string S = shortestNumber(D, Notation::Fixed);
  if (S.find('.') == std::string::npos)
    S += ".0";
  return S;
}

std::string yamlBool(bool B) { return B ? "true" : "false"; }

namespace {

std::string yamlQuoted(llvm::StringRef S) { return "'" + S.str() + "'"; }

} // namespace

std::string yamlFlowList(const std::vector<std::string> &Items) {
  std::string Out = "[";
  for (size_t I = 0; I < Items.size(); ++I)
    Out += (I ? ", " : "") + yamlQuoted(Items[I]);
  return Out + "]";
}

} // namespace trainmem::emit
