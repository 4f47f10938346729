//===- SetupVariants.h - named variations of one training setup, for tests -*- C++ -*-===//
//
// Tests that check one property across many setups (every micro-batch skipped leaves the
// same figures, a replay stops exactly when the step misses) build them as variations of
// a base and name each for their failure messages; and they run them on the small HF
// samples.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_SUPPORT_SETUPVARIANTS_H
#define TRAINMEM_TESTS_SUPPORT_SETUPVARIANTS_H

#include "analyzer/ModelImporter.h"
#include "analyzer/TrainingSetup.h"

#include <string>
#include <utility>
#include <vector>

namespace trainmem::testing {

/// A samples/hf model's graph at Batch x Seq.
inline llvm::Expected<Graph> hfSample(const char *Name, int64_t Batch, int64_t Seq = 128) {
  ImportOptions O;
  O.Dims = {{"batch", Batch}, {"seq", Seq}};
  return importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/" + Name + "/config.json",
                        O);
}

class SetupVariants {
public:
  explicit SetupVariants(TrainingSetup Base) : Base(std::move(Base)) {}
  /// Variations of the default setup on a catalogue GPU.
  static SetupVariants onCuda(const std::string &Gpu) {
    TrainingSetup S;
    S.Device = DeviceKind::Cuda;
    S.Gpu = Gpu;
    return SetupVariants(std::move(S));
  }
  /// The base as Change leaves it, named What.
  template <typename ChangeFn> void add(const std::string &What, ChangeFn Change) {
    TrainingSetup S = Base;
    Change(S);
    All.emplace_back(What, std::move(S));
  }
  const std::vector<std::pair<std::string, TrainingSetup>> &all() const { return All; }

private:
  TrainingSetup Base;
  std::vector<std::pair<std::string, TrainingSetup>> All;
};

} // namespace trainmem::testing

#endif
