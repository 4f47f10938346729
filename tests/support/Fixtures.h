//===- Fixtures.h - locating the shared measured fixtures -------------*- C++ -*-===//
//
// Tests read ../shared/fixtures (measured PyTorch training steps and real models) and
// skip with a message when the folder is absent, as it is in a user's fresh clone.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_FIXTURES_H
#define TRAINMEM_TESTS_FIXTURES_H

#include "llvm/Support/FileSystem.h"

#include <cstdlib>
#include <string>

namespace trainmem::testing {

/// The fixtures folder: $TRAINMEM_FIXTURES if set, else the one CMake was told about.
inline std::string fixturesDir() {
  if (const char *Env = std::getenv("TRAINMEM_FIXTURES"))
    return Env;
  return TRAINMEM_FIXTURES_DIR;
}

inline bool haveFixtures(const std::string &Sub = "") {
  return llvm::sys::fs::is_directory(fixturesDir() + (Sub.empty() ? "" : "/" + Sub));
}

} // namespace trainmem::testing

#define TRAINMEM_REQUIRE_FIXTURES(SUB)                                                     \
  do {                                                                                     \
    if (!::trainmem::testing::haveFixtures(SUB))                                           \
      GTEST_SKIP() << "fixtures folder " << ::trainmem::testing::fixturesDir() << "/"      \
                   << (SUB) << " is absent (it lives in ../shared beside the project); "  \
                   << "skipping the measured-fixture comparison";                         \
  } while (0)

#endif
