//===- OnnxSchemas.cpp - ONNX operator schemas, built when a model uses them ----===//
//
// The table holds a pointer to each schema's own builder (onnx::GetOpSchema<Op_Onnx_verN>,
// which libonnx exports) and builds it as ONNX's registration would: the builder, then
// Finalize. Same schema objects, same inference functions, only fewer of them.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxSchemas.h"

#include "llvm/ADT/StringMap.h"

#include <onnx/defs/schema.h>

#include <climits>
#include <iterator>
#include <memory>
#include <mutex>

#define TRAINMEM_ONNX_SCHEMA(Op, Since)                                                    \
  namespace onnx {                                                                         \
  class Op##_Onnx_ver##Since;                                                              \
  template <> OpSchema GetOpSchema<Op##_Onnx_ver##Since>();                                \
  }
#include "analyzer/OnnxSchemaTable.inc"
#undef TRAINMEM_ONNX_SCHEMA

namespace trainmem {
namespace {

struct TableEntry {
  llvm::StringLiteral Op;
  int Since;
  onnx::OpSchema (*Build)();
};

constexpr TableEntry Table[] = {
#define TRAINMEM_ONNX_SCHEMA(Op, Since)                                                    \
  {llvm::StringLiteral(#Op), Since, &onnx::GetOpSchema<onnx::Op##_Onnx_ver##Since>},
#include "analyzer/OnnxSchemaTable.inc"
#undef TRAINMEM_ONNX_SCHEMA
};
constexpr size_t TableSize = std::size(Table);

/// The newest default-domain opset the table was written from (ONNX 1.12).
constexpr int TableLastOpset = 17;

/// The newest opset the table answers for: any, when the ONNX linked in knows no
/// default-domain opset past the table's (then the registry holds nothing newer either);
/// otherwise the table's own, and newer ones go to the registry.
int tableCeiling() {
  static const int Ceiling = [] {
    const auto &Ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
    auto It = Ranges.find(onnx::ONNX_DOMAIN);
    return It != Ranges.end() && It->second.second <= TableLastOpset ? INT_MAX
                                                                       : TableLastOpset;
  }();
  return Ceiling;
}

bool isDefaultDomain(llvm::StringRef Domain) {
  return Domain.empty() || Domain == "ai.onnx";
}

/// The operator's entries, in version order; empty when the table does not list it.
/// Found by hash: a binary search of the 419 names, twice per node, was 4% of an import.
std::pair<const TableEntry *, const TableEntry *> entriesOf(llvm::StringRef Op) {
  static const llvm::StringMap<std::pair<uint16_t, uint16_t>> Ranges = [] {
    llvm::StringMap<std::pair<uint16_t, uint16_t>> R;
    for (size_t I = 0; I < TableSize; ++I) {
      auto [It, New] = R.try_emplace(Table[I].Op, static_cast<uint16_t>(I),
                                     static_cast<uint16_t>(I + 1));
      if (!New)
        It->second.second = static_cast<uint16_t>(I + 1); // the table is sorted by name
    }
    return R;
  }();
  auto It = Ranges.find(Op);
  if (It == Ranges.end())
    return {std::end(Table), std::end(Table)};
  return {Table + It->second.first, Table + It->second.second};
}

const onnx::OpSchema *built(const TableEntry &E) {
  static std::once_flag Once[TableSize];
  static std::unique_ptr<onnx::OpSchema> Schemas[TableSize];
  size_t I = static_cast<size_t>(&E - Table);
  std::call_once(Once[I], [&] {
    auto S = std::make_unique<onnx::OpSchema>(E.Build());
    S->Finalize();
    Schemas[I] = std::move(S);
  });
  return Schemas[I].get();
}

} // namespace

namespace {

/// The operator's table entries when the table answers for it (default domain, an opset
/// the table covers, an operator it lists); empty otherwise.
std::pair<const TableEntry *, const TableEntry *>
tableEntries(llvm::StringRef Op, int Version, llvm::StringRef Domain) {
  if (!isDefaultDomain(Domain) || Version > tableCeiling())
    return {std::end(Table), std::end(Table)};
  return entriesOf(Op);
}

} // namespace

bool onnxSchemaInTable(llvm::StringRef Op, int Version, llvm::StringRef Domain) {
  auto [First, Last] = tableEntries(Op, Version, Domain);
  return First != Last;
}

const onnx::OpSchema *onnxSchema(llvm::StringRef Op, int Version, llvm::StringRef Domain) {
  auto [First, Last] = tableEntries(Op, Version, Domain);
  if (First == Last)
    return onnx::OpSchemaRegistry::Schema(Op.str(), Version,
                                          isDefaultDomain(Domain) ? "" : Domain.str());
  const TableEntry *Chosen = nullptr;
  for (const TableEntry *E = First; E != Last && E->Since <= Version; ++E)
    Chosen = E;
  return Chosen ? built(*Chosen) : nullptr;
}

std::shared_future<void> startSchemaRegistration() {
  // The first Schema() call builds the registry inside a function-local static, so a
  // concurrent caller blocks until it is complete.
  static std::shared_future<void> Registered =
      std::async(std::launch::async, [] {
        (void)onnx::OpSchemaRegistry::Schema("Relu", 14, "");
      }).share();
  return Registered;
}

} // namespace trainmem
