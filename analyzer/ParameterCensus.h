//===- ParameterCensus.h - parameters, buffers, gradients, optimizer state -*- C++ -*-===//
//
// The census of a model under a training setup: which stored tensors are PyTorch
// parameters (tied copies merged into one), which are buffers, which parameters train,
// and the bytes of weights, gradients, optimizer states and master weights that follow
// from the precision recipe and the optimizer's storage format.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_PARAMETERCENSUS_H
#define TRAINMEM_ANALYZER_PARAMETERCENSUS_H

#include "analyzer/Graph.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/Error.h"

namespace trainmem {

struct CensusParameter {
  /// The PyTorch-side name: the first of its tensors with a module-style name.
  std::string Name;
  /// Every IR tensor holding this parameter (an embedding and its transposed tied copy).
  std::vector<TensorId> Tensors;
  std::vector<int64_t> Shape;
  DType FileType = DType::Float32; ///< dtype in the model file
  DType Type = DType::Float32;     ///< storage dtype under the precision recipe
  int64_t NumElements = 0;
  bool Trainable = true;
  std::string LayerPath;
  /// Packed storage (QLoRA NF4): the bytes replace NumElements x Type.
  std::optional<QuantizedStorage> Quantized;
  int64_t bytes() const {
    return Quantized ? Quantized->Bytes : dtypeBytes(Type, NumElements);
  }
};

struct CensusBuffer {
  std::string Name;
  TensorId Tensor = NoTensor; ///< NoTensor for state the graph does not show
  DType Type = DType::Float32;
  int64_t NumElements = 0;
  /// How many PyTorch buffers this stored tensor stands for (torch.onnx folds equal
  /// per-layer buffers into one constant).
  int Copies = 1;
  std::string LayerPath;
  int64_t bytes() const { return dtypeBytes(Type, NumElements) * Copies; }
};

/// One kind of optimizer state ("exp_avg", "step", "momentum_buffer", ...) and its bytes.
struct OptimizerStatePart {
  std::string Name;
  int64_t Bytes = 0;
};

struct ParameterCensus {
  std::vector<CensusParameter> Parameters;
  std::vector<CensusBuffer> Buffers;
  int64_t TotalParameters = 0;     ///< elements, tied weights once
  int64_t TrainableParameters = 0;
  int64_t ParameterBytes = 0;
  int64_t TrainableBytes = 0;
  int64_t BufferBytes = 0;
  int64_t GradientBytes = 0;
  int64_t OptimizerStateBytes = 0;
  /// State the optimizer keeps once, not per parameter (included in OptimizerStateBytes):
  /// bitsandbytes' two 256-entry fp32 quantization maps on the device.
  int64_t SharedOptimizerStateBytes = 0;
  int64_t MasterWeightBytes = 0;
  std::vector<OptimizerStatePart> OptimizerStates;
  int TiedGroups = 0;
  Diagnostics Diags;

  int64_t weightBytes() const { return ParameterBytes + BufferBytes; }
};

/// True when GaLore projects this parameter's gradient (a 2-D weight on a target path).
bool isGaloreTarget(const CensusParameter &P, const TrainingSetup &Setup);

/// Optimizer state bytes of one trainable parameter, by part, under the setup.
std::vector<OptimizerStatePart> optimizerStateOf(const CensusParameter &P,
                                                 const TrainingSetup &Setup);

/// Takes the census. Errors: a --trainable-file name that is no parameter, an invalid
/// regular expression.
llvm::Expected<ParameterCensus> takeCensus(const Graph &G, const TrainingSetup &Setup);

} // namespace trainmem

#endif
