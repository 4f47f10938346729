//===- ExportOnnxCommand.cpp - `trainmem export-onnx` ----------------------------===//
//
// Writes what trainmem understood of a model as a weightless ONNX file, so users can
// open an HF-config model (or an ONNX file with its dims bound) in Netron.
//
//===----------------------------------------------------------------------------===//
#include "cli/Commands.h"
#include "cli/StepOptions.h"

#include "analyzer/OnnxExporter.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

namespace trainmem::cli {

int runExportOnnx() {
  auto Request = parseStepRequest();
  if (!Request)
    return reportError(Request.takeError());
  std::string Out = outputPath();
  if (Out == "-")
    return reportError(llvm::createStringError(llvm::inconvertibleErrorCode(),
                                               "export-onnx needs -o OUT.onnx (it writes "
                                               "a binary model and its .data file)"));
  auto G = importRequestedModel(*Request);
  if (!G)
    return reportError(G.takeError());
  ExportSummary Written;
  if (llvm::Error E = exportWeightlessOnnx(*G, Out, &Written))
    return reportError(std::move(E));
  llvm::outs() << "wrote " << Out << " (" << Written.Nodes << " nodes, " << Written.Tensors
               << " tensors";
  if (llvm::sys::fs::exists(weightlessOnnxDataPath(Out)))
    llvm::outs() << "; weights as external references to " << weightlessOnnxDataPath(Out)
                 << ", a sparse file";
  llvm::outs() << ")\n";
  return ExitOk;
}

} // namespace trainmem::cli
