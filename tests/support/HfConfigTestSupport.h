//===- HfConfigTestSupport.h - Hugging Face configs for the importer's tests -*- C++ -*-===//
//
// The samples/hf configs imported at given dims, edited variants of them written to a
// temporary folder, and the lookups the HF importer's tests (HfConfigImporterTest,
// HfStepRulesTest) share.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_SUPPORT_HFCONFIGTESTSUPPORT_H
#define TRAINMEM_TESTS_SUPPORT_HFCONFIGTESTSUPPORT_H

#include "analyzer/ModelImporter.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace trainmem::testing {

using Shape = std::vector<int64_t>;

inline std::string samplePath(const std::string &Name) {
  return std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/" + Name + "/config.json";
}

inline ImportOptions dims(int64_t Batch, int64_t Seq) {
  ImportOptions Options;
  Options.Dims = {{"batch", Batch}, {"seq", Seq}};
  return Options;
}

/// Short sequences keep the tests fast; parameter shapes do not depend on seq.
inline Graph importPath(const std::string &Path, const ImportOptions &Options = dims(1, 128)) {
  llvm::Expected<Graph> G = importHfConfig(Path, Options);
  if (!G) {
    ADD_FAILURE() << Path << ": " << llvm::toString(G.takeError());
    return Graph();
  }
  return std::move(*G);
}

inline Graph importSample(const std::string &Name, const ImportOptions &Options = dims(1, 128)) {
  return importPath(samplePath(Name), Options);
}

inline std::string importError(const std::string &Path, const ImportOptions &Options = dims(1, 128)) {
  llvm::Expected<Graph> G = importHfConfig(Path, Options);
  if (G)
    return "<imported without error>";
  return llvm::toString(G.takeError());
}

inline int64_t parameterCount(const Graph &G) {
  int64_t N = 0;
  for (const Tensor &T : G.Tensors)
    if (T.Kind == TensorKind::Parameter)
      N += T.numElements();
  return N;
}

inline const Tensor *findTensor(const Graph &G, const std::string &Name) {
  TensorId Id = G.findTensor(Name);
  return Id == NoTensor ? nullptr : &G.Tensors[Id];
}

/// One training step of G on the CPU as Edit sets it up (census and simulation checked).
inline StepSimulation simulateOnCpu(const Graph &G, llvm::function_ref<void(TrainingSetup &)> Edit) {
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  Edit(S);
  auto C = takeCensus(G, S);
  EXPECT_TRUE(bool(C)) << llvm::toString(C.takeError());
  if (!C)
    return {};
  auto R = simulateStep(G, S, *C);
  EXPECT_TRUE(bool(R)) << llvm::toString(R.takeError());
  return R ? std::move(*R) : StepSimulation{};
}

/// The shape of a named tensor, or {-1} when the graph has no such tensor.
inline Shape shapeOf(const Graph &G, const std::string &Name) {
  const Tensor *T = findTensor(G, Name);
  return T ? T->Shape : Shape{-1};
}

inline const Node *findNode(const Graph &G, const std::string &Name) {
  for (const Node &N : G.Nodes)
    if (N.Name == Name)
      return &N;
  return nullptr;
}

inline const Node *producerOf(const Graph &G, TensorId Id) {
  NodeId P = G.Tensors[Id].Producer;
  return P == NoNode ? nullptr : &G.Nodes[P];
}

/// A sample config with some fields replaced, written to a temporary folder that is
/// named after the variant (so the graph's name is predictable) and removed afterwards.
using FieldEdits = std::vector<std::pair<std::string, llvm::json::Value>>;

class ConfigVariant {
public:
  ConfigVariant(const std::string &Sample, const std::string &Variant, FieldEdits Edits,
                const std::vector<std::string> &Remove = {}) {
    std::ifstream In(samplePath(Sample));
    std::string Text((std::istreambuf_iterator<char>(In)), std::istreambuf_iterator<char>());
    llvm::Expected<llvm::json::Value> Json = llvm::json::parse(Text);
    EXPECT_TRUE(static_cast<bool>(Json)) << llvm::toString(Json.takeError());
    llvm::json::Object &Obj = *Json->getAsObject();
    for (auto &KV : Edits)
      Obj[KV.first] = KV.second;
    for (const std::string &Key : Remove)
      Obj.erase(Key);
    write(Variant, llvm::formatv("{0:2}", llvm::json::Value(std::move(Obj))).str());
  }
  /// A config from literal text (for malformed files).
  explicit ConfigVariant(const std::string &Variant, const std::string &Text) {
    write(Variant, Text);
  }
  ~ConfigVariant() {
    std::error_code Ignored;
    std::filesystem::remove_all(Dir, Ignored);
    std::filesystem::remove(Dir.parent_path(), Ignored); // only once it is empty
  }
  const std::string &path() const { return Path; }

private:
  void write(const std::string &Variant, const std::string &Text) {
    Dir = std::filesystem::temp_directory_path() /
          ("trainmem-hf-test-" + std::to_string(::getpid())) / Variant;
    std::filesystem::create_directories(Dir);
    Path = (Dir / "config.json").string();
    std::ofstream(Path) << Text;
  }
  std::filesystem::path Dir;
  std::string Path;
};

/// A sample config edited, and the parameter count transformers gives for it.
struct VariantCount {
  std::string Sample, Variant;
  FieldEdits Edits;
  int64_t Expected;
};

/// Each variant imported (default dims) counts the parameters transformers counts.
inline void expectParameterCounts(std::vector<VariantCount> Cases) {
  for (VariantCount &C : Cases) {
    ConfigVariant Config(C.Sample, C.Variant, std::move(C.Edits));
    EXPECT_EQ(parameterCount(importPath(Config.path())), C.Expected) << C.Variant;
  }
}

} // namespace trainmem::testing

#endif
