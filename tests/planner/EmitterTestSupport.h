//===- EmitterTestSupport.h - builders the config emitter tests share ----*- C++ -*-===//
//
// Setups that read like the situation they describe, rendering with failures reported
// through gtest, and lookups into the JSON and YAML the emitters write. Shared by the
// ConfigEmitters*, *EmitterTest and ConfigReaderTest files; inline, so each test file
// includes it on its own.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_PLANNER_EMITTERTESTSUPPORT_H
#define TRAINMEM_TESTS_PLANNER_EMITTERTESTSUPPORT_H

#include "planner/ConfigEmitters.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/JSON.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trainmem::emittest {

// ---------------------------------------------------------------------------------
// Builders: setups that read like the situation they describe.

using Edit = std::function<void(TrainingSetup &)>;

inline TrainingSetup setup(const Edit &Change = {}) {
  TrainingSetup S;
  S.Impl = OptimizerImpl::Foreach; // what the Trainer's adamw_torch runs on CUDA
  S.MicroBatch = 4;
  S.GradAccum = 8;
  if (Change)
    Change(S);
  return S;
}

inline EmitContext llama7b() {
  EmitContext Ctx;
  Ctx.ModelName = "meta-llama/Llama-2-7b-hf";
  Ctx.ModelSource = "samples/llama-2-7b/config.json";
  Ctx.Architecture = "llama";
  return Ctx;
}

inline void lora(TrainingSetup &S, bool QLora = false) {
  LoraSetup L;
  L.Rank = 16;
  L.Alpha = 32;
  L.Dropout = 0.05;
  L.Targets = {"q_proj", "v_proj"};
  L.QLora = QLora;
  S.Lora = L;
}

inline void galore(TrainingSetup &S, bool PerLayer) {
  GaloreSetup G;
  G.Rank = 64;
  G.UpdateGap = 100;
  G.Targets = {"attn", "mlp"};
  G.PerLayer = PerLayer;
  S.Galore = G;
}

inline void zero(TrainingSetup &S, int Stage, int64_t Gpus,
                 OffloadKind Offload = OffloadKind::None) {
  S.Sharding.ZeroStage = Stage;
  S.Sharding.Gpus = Gpus;
  S.Sharding.Offload = Offload;
}

inline void fsdp(TrainingSetup &S, int Stage, int64_t Gpus,
                 OffloadKind Offload = OffloadKind::None) {
  zero(S, Stage, Gpus, Offload);
  S.Sharding.Fsdp = true;
}

using Files = std::map<std::string, std::string>;

inline Files render(ConfigTarget T, const TrainingSetup &S, const EmitContext &Ctx = llama7b()) {
  auto Rendered = renderConfigs(T, S, Ctx);
  if (!Rendered) {
    ADD_FAILURE() << "renderConfigs(" << configTargetName(T)
                  << "): " << llvm::toString(Rendered.takeError());
    return {};
  }
  Files Out;
  for (auto &[Name, Text] : *Rendered) {
    EXPECT_TRUE(Out.emplace(Name, Text).second) << "file emitted twice: " << Name;
  }
  return Out;
}

/// The error renderConfigs gives; fails the test if it renders.
inline std::string renderError(ConfigTarget T, const TrainingSetup &S,
                               const EmitContext &Ctx = llama7b()) {
  auto Rendered = renderConfigs(T, S, Ctx);
  if (Rendered) {
    ADD_FAILURE() << "expected --emit=" << configTargetName(T) << " to refuse the setup";
    return "";
  }
  return llvm::toString(Rendered.takeError());
}

inline llvm::json::Object parseJson(llvm::StringRef Text) {
  llvm::Expected<llvm::json::Value> V = llvm::json::parse(Text);
  if (!V) {
    ADD_FAILURE() << "not JSON: " << llvm::toString(V.takeError()) << "\n" << Text.str();
    return {};
  }
  if (!V->getAsObject()) {
    ADD_FAILURE() << "not a JSON object:\n" << Text.str();
    return {};
  }
  return *V->getAsObject();
}

/// The value at a dotted path ("zero_optimization.offload_optimizer.device").
inline const llvm::json::Value *at(const llvm::json::Object &O, llvm::StringRef Path) {
  auto [Head, Rest] = Path.split('.');
  const llvm::json::Value *V = O.get(Head);
  if (!V || Rest.empty())
    return V;
  const llvm::json::Object *Inner = V->getAsObject();
  return Inner ? at(*Inner, Rest) : nullptr;
}

inline std::string str(const llvm::json::Object &O, llvm::StringRef Path) {
  const llvm::json::Value *V = at(O, Path);
  if (!V || !V->getAsString())
    return "<no string at " + Path.str() + ">";
  return V->getAsString()->str();
}

inline std::optional<int64_t> integer(const llvm::json::Object &O, llvm::StringRef Path) {
  const llvm::json::Value *V = at(O, Path);
  return V ? V->getAsInteger() : std::nullopt;
}

inline std::optional<bool> boolean(const llvm::json::Object &O, llvm::StringRef Path) {
  const llvm::json::Value *V = at(O, Path);
  return V ? V->getAsBoolean() : std::nullopt;
}

inline std::vector<std::string> strings(const llvm::json::Object &O, llvm::StringRef Path) {
  std::vector<std::string> Out;
  if (const llvm::json::Value *V = at(O, Path))
    if (const llvm::json::Array *A = V->getAsArray())
      for (const llvm::json::Value &E : *A)
        Out.push_back(E.getAsString() ? E.getAsString()->str() : "<not a string>");
  return Out;
}

/// The YAML emitters write block mappings, two spaces a level, one `key: value` a line
/// and flow lists; this reads exactly that into dotted paths and their raw values.
inline std::map<std::string, std::string> yamlMap(llvm::StringRef Text) {
  std::map<std::string, std::string> Out;
  std::vector<std::pair<size_t, std::string>> Parents;
  llvm::SmallVector<llvm::StringRef, 64> Lines;
  Text.split(Lines, '\n', -1, false);
  for (llvm::StringRef Line : Lines) {
    llvm::StringRef Body = Line.ltrim(' ');
    if (Body.empty() || Body.startswith("#"))
      continue;
    size_t Indent = Line.size() - Body.size();
    EXPECT_EQ(Indent % 2, 0u) << "odd indentation: " << Line.str();
    while (!Parents.empty() && Parents.back().first >= Indent)
      Parents.pop_back();
    auto [Key, Value] = Body.split(':');
    EXPECT_TRUE(Body.contains(':')) << "not a key: " << Line.str();
    std::string Path = Parents.empty() ? Key.str() : Parents.back().second + "." + Key.str();
    Out[Path] = Value.trim().str();
    if (Value.trim().empty())
      Parents.emplace_back(Indent, Path);
  }
  return Out;
}

} // namespace trainmem::emittest

#endif // TRAINMEM_TESTS_PLANNER_EMITTERTESTSUPPORT_H
