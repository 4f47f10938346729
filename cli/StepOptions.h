//===- StepOptions.h - the options every step-modelling command shares -*- C++ -*-===//
//
// DESIGN.md lists one option set for every command that models a training step
// (analyze, plan, report, validate, export-onnx). They are declared once, attached to
// each of those subcommands, and turned here into the library's typed structs.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CLI_STEPOPTIONS_H
#define TRAINMEM_CLI_STEPOPTIONS_H

#include "analyzer/Graph.h"
#include "analyzer/ModelImporter.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Error.h"

namespace trainmem::cli {

llvm::cl::SubCommand &analyzeCommand();
llvm::cl::SubCommand &exportOnnxCommand();
llvm::cl::SubCommand &planCommand();
llvm::cl::SubCommand &reportCommand();
llvm::cl::SubCommand &compareCommand();
llvm::cl::SubCommand &validateCommand();

/// What a step-modelling command was asked for, parsed and validated.
struct StepRequest {
  std::string ModelPath;
  bool FromHfConfig = false;
  ImportOptions Import;
  TrainingSetup Setup;
  /// --device was left to auto and resolved to the host (no GPU targeted).
  bool DeviceDefaultedToCpu = false;
};

/// Reads the shared options of the active subcommand. Errors name the option. TargetsGpu:
/// the command aims at a GPU (a gpu: budget), so an unset --device means CUDA.
/// ModelOverride: the model file when the command's positional is not the shared one
/// (compare's PREDICTION).
llvm::Expected<StepRequest> parseStepRequest(bool TargetsGpu = false,
                                             llvm::StringRef ModelOverride = "");
/// The positional MODEL of analyze / report / plan / export-onnx ("" when absent).
std::string modelPositional();
/// --hf-config was given.
bool hfConfigGiven();

/// Imports the model the request names (ONNX file or HF config).
llvm::Expected<Graph> importRequestedModel(const StepRequest &Request);

/// `--format` and `-o`, shared by the commands that write a report.
std::string outputFormat();
std::string outputPath();
/// `--db`: the history database to record the run in, or "".
std::string historyDb();

} // namespace trainmem::cli

#endif
