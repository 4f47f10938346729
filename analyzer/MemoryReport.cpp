//===- MemoryReport.cpp - assembling the report from analysis results -----------===//
#include "analyzer/MemoryReport.h"

#include <algorithm>
#include <map>

namespace trainmem {

MemoryReport buildCensusReport(const Graph &G, const TrainingSetup &Setup,
                               const ParameterCensus &Census) {
  MemoryReport R;
  R.Model.Name = G.Name;
  R.Model.Source = G.SourcePath;
  R.Model.Format = G.SourceFormat;
  R.Model.Producer = G.Producer;
  R.Model.Opset = G.OpsetVersion;
  R.Model.Nodes = static_cast<int64_t>(G.Nodes.size());
  R.Model.Tensors = static_cast<int64_t>(G.Tensors.size());
  R.Model.Dims = G.Dims;
  R.Model.PaddedBatches = G.PaddedBatches;
  R.Setup = Setup;
  R.TotalParameters = Census.TotalParameters;
  R.TrainableParameters = Census.TrainableParameters;
  R.Bytes.Weights = Census.weightBytes();
  R.Bytes.MasterWeights = Census.MasterWeightBytes;
  R.Bytes.Gradients = Census.GradientBytes;
  R.Bytes.OptimizerStates = Census.OptimizerStateBytes;
  for (TensorId In : G.Inputs) {
    const Tensor &T = G.Tensors[In];
    R.Model.Inputs.push_back({T.Name, T.Type, T.Shape, T.bytes()});
    R.Bytes.Inputs += T.bytes();
  }
  R.BufferBytes = Census.BufferBytes;
  R.TiedGroups = Census.TiedGroups;
  R.OptimizerStates = Census.OptimizerStates;

  // Layers in first-appearance order of their parameters.
  std::map<std::string, size_t> LayerIndex;
  for (const CensusParameter &P : Census.Parameters) {
    std::string Path = P.LayerPath.empty() ? "(model)" : P.LayerPath;
    auto [It, New] = LayerIndex.emplace(Path, R.Layers.size());
    if (New)
      R.Layers.push_back({Path});
    LayerSummary &L = R.Layers[It->second];
    L.Parameters += P.NumElements;
    L.WeightBytes += P.bytes();
    if (P.Trainable) {
      L.TrainableParameters += P.NumElements;
      L.GradientBytes += P.bytes();
      for (const OptimizerStatePart &S : optimizerStateOf(P, Setup))
        L.OptimizerStateBytes += S.Bytes;
    }
  }
  for (const CensusParameter &P : Census.Parameters)
    R.LargestParameters.push_back({P.Name, P.Trainable ? "trainable" : "frozen", P.LayerPath,
                                   "", P.Type, P.Shape, P.bytes()});
  std::stable_sort(R.LargestParameters.begin(), R.LargestParameters.end(),
                   [](const TensorSummary &A, const TensorSummary &B) {
                     return A.Bytes > B.Bytes;
                   });
  if (R.LargestParameters.size() > 10)
    R.LargestParameters.resize(10);
  R.Diags.append(G.Diags);
  R.Diags.append(Census.Diags);
  return R;
}

} // namespace trainmem
