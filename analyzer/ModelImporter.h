//===- ModelImporter.h - the one entry point for reading a model ------*- C++ -*-===//
//
// Every model source (ONNX file, Hugging Face config.json, ...) is read through
// importModel(), which detects the format and dispatches to one importer per file.
// Importers bind symbolic dims, build the graph IR and classify stored tensors.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_MODELIMPORTER_H
#define TRAINMEM_ANALYZER_MODELIMPORTER_H

#include "analyzer/Graph.h"

#include "llvm/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// `--input NAME=D0xD1x...`: an input's whole shape.
struct InputShape {
  std::string Name;
  std::vector<int64_t> Dims;
};

struct ImportOptions {
  /// `--dim NAME=VALUE`, in command-line order (a later binding of a name wins).
  std::vector<DimBinding> Dims;
  /// `--input NAME=SHAPE`, overriding static dims too.
  std::vector<InputShape> Inputs;
  /// Binds every dim still unbound after Dims and Inputs (used by import sweeps and
  /// `--default-dim`); unset means an unbound dim is an error.
  std::optional<int64_t> DefaultDim;
  /// `--micro-batch=N`: dim 0 of every batch input (and the `batch` dim) is N.
  std::optional<int64_t> MicroBatch;
  /// `--padded`: the batches carry padding (an `attention_mask` with zeros), so
  /// transformers builds the [batch, 1, seq, seq] attention mask it skips for unpadded
  /// ones, and SDPA repeats grouped key/value heads. Hugging Face configs only: an ONNX
  /// export's mask is in its graph.
  bool PaddedBatches = false;
};

enum class ModelFormat { Onnx, HfConfig, Unknown };

/// Looks at the path and the first bytes: ONNX protobuf or HF config.json.
ModelFormat detectModelFormat(const std::string &Path);

/// Reads any supported model file. Errors name the file and what was expected.
llvm::Expected<Graph> importModel(const std::string &Path, const ImportOptions &Options);

llvm::Expected<Graph> importOnnx(const std::string &Path, const ImportOptions &Options);
/// A Hugging Face `config.json` (llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, gemma, gemma2, gemma3_text, phi3, olmo2, olmoe, gpt_oss, deepseek_v2, deepseek_v3, granite, smollm3, starcoder2, stablelm, phi, opt, gptj, gpt2, gpt_neox, bert, roberta, xlm-roberta, camembert, distilbert):
/// builds the same IR an ONNX export of the model would give, with dims `batch` and
/// `seq` (defaults 1 and 2048).
llvm::Expected<Graph> importHfConfig(const std::string &Path, const ImportOptions &Options);

/// Sets Kind on every stored tensor (Parameter / Buffer / Constant) from how the graph
/// uses it. Run by importers once the graph is final.
void classifyStoredTensors(Graph &G);

/// Resolves the value bound to a symbolic dim from Options, or nullopt.
std::optional<int64_t> lookupDim(const ImportOptions &Options, const std::string &Name);

} // namespace trainmem

#endif
