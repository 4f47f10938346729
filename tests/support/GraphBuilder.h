//===- GraphBuilder.h - small graph builders for unit tests -----------*- C++ -*-===//
//
// Lets a test read like the situation it checks: `B.input("x", {4, 8})`,
// `B.weight("fc.weight", {8, 16})`, `B.op("MatMul", {x, w}, {4, 16})`. Every tensor gets
// a concrete shape; finish() finalises the graph and classifies stored tensors exactly
// as an importer would.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_GRAPHBUILDER_H
#define TRAINMEM_TESTS_GRAPHBUILDER_H

#include "analyzer/Graph.h"
#include "analyzer/ModelImporter.h"
#include "analyzer/StoredTensorClassifier.h"

#include <string>
#include <vector>

namespace trainmem::testing {

class GraphBuilder {
public:
  explicit GraphBuilder(std::string Name = "test") { G.Name = std::move(Name); G.SourceFormat = "test"; }

  TensorId input(const std::string &Name, std::vector<int64_t> Shape,
                 DType Type = DType::Float32) {
    TensorId Id = add(Name, std::move(Shape), Type, TensorKind::Input, false);
    G.Inputs.push_back(Id);
    return Id;
  }

  /// A stored tensor (initializer); its kind is decided by finish() from its uses.
  TensorId weight(const std::string &Name, std::vector<int64_t> Shape,
                  DType Type = DType::Float32) {
    return add(Name, std::move(Shape), Type, TensorKind::Constant, true);
  }

  /// A stored integer constant with its values (shapes, axes).
  TensorId ints(const std::string &Name, std::vector<int64_t> Values) {
    TensorId Id = add(Name, {static_cast<int64_t>(Values.size())}, DType::Int64,
                      TensorKind::Constant, true);
    G.Tensors[Id].IntValues = std::move(Values);
    return Id;
  }

  /// Adds node `OpType` reading Inputs and producing one output of OutShape; returns it.
  TensorId op(const std::string &OpType, std::vector<TensorId> Inputs,
              std::vector<int64_t> OutShape, const std::string &NodeName = "",
              DType Type = DType::Float32) {
    std::string Name = NodeName.empty() ? "/" + OpType + "_" + std::to_string(G.Nodes.size())
                                        : NodeName;
    TensorId Out = add(Name + "_output_0", std::move(OutShape), Type, TensorKind::Activation,
                       false);
    Node N;
    N.Name = Name;
    N.OpType = OpType;
    N.Inputs = std::move(Inputs);
    N.Outputs = {Out};
    G.addNode(std::move(N));
    return Out;
  }

  /// Sets an attribute of the node added last.
  void attribute(const std::string &Key, AttributeValue Value) {
    G.Nodes.back().Attributes[Key] = std::move(Value);
  }

  void output(TensorId T) {
    G.Tensors[T].IsGraphOutput = true;
    G.Tensors[T].Kind = TensorKind::Output;
    G.Outputs.push_back(T);
  }

  Graph finish() {
    G.finalize();
    assignLayerPaths(G);
    classifyStoredTensors(G);
    return std::move(G);
  }

  Graph &graph() { return G; }

private:
  TensorId add(const std::string &Name, std::vector<int64_t> Shape, DType Type, TensorKind Kind,
               bool Stored) {
    Tensor T;
    T.Name = Name;
    T.Shape = std::move(Shape);
    T.ShapeKnown = true;
    T.Type = Type;
    T.Kind = Kind;
    T.Stored = Stored;
    return G.addTensor(std::move(T));
  }

  Graph G;
};

} // namespace trainmem::testing

#endif
