//===- OnnxImporterSupport.h - what the ONNX importer tests share -----*- C++ -*-===//
//
// The fixture (a temporary folder), import helpers and the small models several test
// files build. Included by test files only; the anonymous namespace gives each its copy.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_ANALYZER_ONNXIMPORTERSUPPORT_H
#define TRAINMEM_TESTS_ANALYZER_ONNXIMPORTERSUPPORT_H

#include "analyzer/ModelImporter.h"
#include "analyzer/OnnxModelReader.h"
#include "analyzer/ParameterCensus.h"
#include "tests/support/OnnxModelWriter.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <random>

using namespace trainmem;
using namespace trainmem::testing;

namespace {

using Shape = std::vector<int64_t>;

class OnnxImporterTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-onnx-import", Dir));
  }
  void TearDown() override { llvm::sys::fs::remove_directories(Dir); }

  std::string path(llvm::StringRef Name) const {
    llvm::SmallString<256> P(Dir);
    llvm::sys::path::append(P, Name);
    return std::string(P);
  }
  std::string save(const OnnxModelWriter &W, llvm::StringRef Name) const {
    std::string P = W.save(Dir, Name);
    EXPECT_FALSE(P.empty()) << "cannot write " << Name.str();
    return P;
  }
  std::string writeBytes(llvm::StringRef Name, llvm::StringRef Bytes) const {
    std::error_code EC;
    llvm::raw_fd_ostream OS(path(Name), EC);
    EXPECT_FALSE(EC) << EC.message();
    OS << Bytes;
    OS.close();
    EXPECT_FALSE(OS.has_error()) << "cannot write " << Name.str();
    OS.clear_error();
    return path(Name);
  }

  llvm::SmallString<128> Dir;
};

using OnnxImporterDims = OnnxImporterTest;
using OnnxImporterBadFiles = OnnxImporterTest;
using OnnxImporterGraphs = OnnxImporterTest;
using OnnxImporterCensus = OnnxImporterTest;
using OnnxImporterLargeFile = OnnxImporterTest;

/// The imported graph, or an empty one and a failure naming the error.
inline Graph importOk(const std::string &Path, const ImportOptions &Options = {}) {
  llvm::Expected<Graph> G = importOnnx(Path, Options);
  if (!G) {
    ADD_FAILURE() << llvm::toString(G.takeError());
    return Graph();
  }
  return std::move(*G);
}

/// The import's error message, or "" and a failure when it imported.
inline std::string importError(const std::string &Path, const ImportOptions &Options = {}) {
  llvm::Expected<Graph> G = importOnnx(Path, Options);
  if (G) {
    ADD_FAILURE() << Path << " imported; expected an error";
    return "";
  }
  return llvm::toString(G.takeError());
}

inline ::testing::AssertionResult contains(const std::string &Text, const std::string &Part) {
  if (Text.find(Part) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << Part << "' not in: " << Text;
}

inline const Tensor *tensor(const Graph &G, const std::string &Name) {
  TensorId Id = G.findTensor(Name);
  return Id == NoTensor ? nullptr : &G.Tensors[Id];
}

/// A tensor's shape; nullopt when the tensor is missing or its shape unknown.
inline std::optional<Shape> shapeOf(const Graph &G, const std::string &Name) {
  const Tensor *T = tensor(G, Name);
  if (!T || !T->ShapeKnown)
    return std::nullopt;
  return T->Shape;
}

inline std::optional<TensorKind> kindOf(const Graph &G, const std::string &Name) {
  const Tensor *T = tensor(G, Name);
  return T ? std::optional<TensorKind>(T->Kind) : std::nullopt;
}

inline std::vector<std::string> inputNames(const Graph &G) {
  std::vector<std::string> Names;
  for (TensorId Id : G.Inputs)
    Names.push_back(G.Tensors[Id].Name);
  return Names;
}

inline std::map<std::string, int64_t> boundDims(const Graph &G) {
  std::map<std::string, int64_t> Dims;
  for (const DimBinding &B : G.Dims)
    Dims[B.Name] = B.Value;
  return Dims;
}

inline const Diagnostic *findDiag(const Diagnostics &D, Severity Level, const std::string &Code) {
  for (const Diagnostic &X : D.all())
    if (X.Level == Level && X.Code == Code)
      return &X;
  return nullptr;
}

inline ParameterCensus censusOf(const Graph &G, TieMode Tie = TieMode::Auto) {
  TrainingSetup Setup;
  Setup.Tie = Tie;
  llvm::Expected<ParameterCensus> C = takeCensus(G, Setup);
  if (!C) {
    ADD_FAILURE() << llvm::toString(C.takeError());
    return ParameterCensus();
  }
  return std::move(*C);
}

inline std::vector<float> randomFloats(size_t N, unsigned Seed) {
  std::mt19937 Rng(Seed);
  std::uniform_real_distribution<float> Dist(-1.0f, 1.0f);
  std::vector<float> V(N);
  for (float &X : V)
    X = Dist(Rng);
  return V;
}

inline std::vector<float> transposed(const std::vector<float> &V, int64_t Rows, int64_t Cols) {
  std::vector<float> T(V.size());
  for (int64_t I = 0; I < Rows; ++I)
    for (int64_t J = 0; J < Cols; ++J)
      T[J * Rows + I] = V[I * Cols + J];
  return T;
}

/// ids [batch, seq] read by an embedding; extra [batch, past] through a Relu.
inline OnnxModelWriter symbolicModel() {
  OnnxModelWriter W;
  W.input("ids", {"batch", "seq"}, OnnxInt64);
  W.input("extra", {"batch", "past"});
  W.initializer("wte.weight", {100, 8});
  W.node("Gather", {"wte.weight", "ids"}, {"h"}, "/wte/Gather");
  W.node("Relu", {"extra"}, {"r"}, "/Relu");
  W.output("h");
  W.output("r");
  return W;
}

/// x [1, 128] (static) through a Linear without bias.
inline OnnxModelWriter staticLinear() {
  OnnxModelWriter W;
  W.input("x", {1, 128});
  W.initializer("fc.weight", {128, 16});
  W.node("MatMul", {"x", "fc.weight"}, {"y"}, "/fc/MatMul");
  W.output("y");
  return W;
}

} // namespace

#endif
