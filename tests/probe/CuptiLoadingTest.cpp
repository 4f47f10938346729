//===- CuptiLoadingTest.cpp - libcupti opened when a measurement starts ---------===//
//
// libcupti is not linked into trainmem; the probe opens it and finds its functions when a
// CUPTI session starts. That needs no GPU, so it is checked wherever the build has CUPTI.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/CuptiProbe.h"

#include <gtest/gtest.h>

using namespace trainmem::probe;

TEST(CuptiLoading, FindsEveryFunctionTheProbeCalls) {
  if (!builtWithCupti()) {
    llvm::Error E = loadCupti();
    ASSERT_TRUE(static_cast<bool>(E));
    EXPECT_NE(llvm::toString(std::move(E)).find("without CUPTI"), std::string::npos);
    GTEST_SKIP() << "this build has no CUPTI";
  }
  llvm::Error E = loadCupti();
  EXPECT_FALSE(static_cast<bool>(E)) << llvm::toString(std::move(E));
  llvm::Error Again = loadCupti(); // once per process: the same answer
  EXPECT_FALSE(static_cast<bool>(Again)) << llvm::toString(std::move(Again));
}
