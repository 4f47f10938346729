//===- OnnxSchemas.h - ONNX operator schemas, built when a model uses them -*- C++ -*-===//
//
// ONNX's schema registry builds every schema of every opset of every domain the first
// time anyone asks for one: 5-7 ms and ~3 MB of heap per process, more than the whole
// rest of importing a 7B model. A model uses a few dozen operators, so for ONNX's default
// domain the schemas come from a table of every operator version (OnnxSchemaTable.inc),
// each built the first time it is asked for; other domains, and opsets newer than the
// table in an ONNX newer than the one it was written from, go to the registry.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_ONNXSCHEMAS_H
#define TRAINMEM_ANALYZER_ONNXSCHEMAS_H

#include "llvm/ADT/StringRef.h"

#include <future>

namespace onnx {
class OpSchema;
}

namespace trainmem {

/// The schema ONNX applies to operator \p Op of \p Domain ("" or "ai.onnx" for the
/// default one) in a model that imports opset \p Version of that domain: the operator's
/// latest version not newer than \p Version, as onnx::OpSchemaRegistry::Schema answers.
/// Null when ONNX defines none. Thread-safe; the schema lives as long as the process.
const onnx::OpSchema *onnxSchema(llvm::StringRef Op, int Version, llvm::StringRef Domain);

/// Whether onnxSchema answers for this operator without ONNX's full registry.
bool onnxSchemaInTable(llvm::StringRef Op, int Version, llvm::StringRef Domain);

/// Starts ONNX's full schema registration on a background thread, once per process, for
/// a model that needs schemas outside the table, so that it overlaps the rest of the
/// import; a registry lookup waits for it through the registry's own static
/// initialisation. Callers wait on the result before they return, so the thread never
/// outlives them (an exit during registration would destroy statics it is using).
std::shared_future<void> startSchemaRegistration();

} // namespace trainmem

#endif
