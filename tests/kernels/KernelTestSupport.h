//===- KernelTestSupport.h - buffers, references and checks for kernel tests -*- C++ -*-===//
//
// What every kernel test needs: device buffers that free themselves, seeded random inputs,
// a comparison of fp32 results with a float64 reference (error relative to the reference's
// largest magnitude, reporting the worst element), central-difference gradients of a float64
// reference function, and a fixture that fails a test whose device recorded an error.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_KERNELS_KERNELTESTSUPPORT_H
#define TRAINMEM_TESTS_KERNELS_KERNELTESTSUPPORT_H

#include "kernels/Kernels.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace trainmem::kernels::testing {

/// Tolerances, relative to the largest reference magnitude: fp32 kernels against float64,
/// gradients against float64 central differences, and anything rounded to bf16.
inline constexpr double Fp32Tolerance = 1e-5;
inline constexpr double GradientTolerance = 1e-4;
inline constexpr double Bf16Tolerance = 1e-2;

/// Device memory owned for the length of a scope.
class DeviceBuffer {
public:
  DeviceBuffer(Device &D, size_t Bytes) : Dev(&D), Bytes(Bytes), Ptr(D.allocate(Bytes)) {}
  template <typename T>
  DeviceBuffer(Device &D, const std::vector<T> &Host) : DeviceBuffer(D, Host.size() * sizeof(T)) {
    D.copyFromHost(Ptr, Host.data(), Bytes);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer() { Dev->deallocate(Ptr, Bytes); }

  template <typename T = float> T *as() const { return static_cast<T *>(Ptr); }
  float *f() const { return as<float>(); }
  size_t bytes() const { return Bytes; }
  template <typename T = float> std::vector<T> read() const {
    std::vector<T> Out(Bytes / sizeof(T));
    Dev->copyToHost(Out.data(), Ptr, Bytes);
    return Out;
  }

private:
  Device *Dev;
  size_t Bytes;
  void *Ptr;
};

/// Uniform in [Low, High), reproducible from Seed.
std::vector<float> randomFloats(size_t N, uint32_t Seed, float Low = -1.0f, float High = 1.0f);
std::vector<double> widen(const std::vector<float> &Values);
std::vector<float> narrow(const std::vector<double> &Values);

/// max |Actual - Expected| / max |Expected| (absolute when Expected is all zero).
double relativeError(const std::vector<float> &Actual, const std::vector<double> &Expected);

/// ||Actual - Expected||_2 / ||Expected||_2: for results where a few elements may stray
/// (quantized optimizer states) but the whole must track.
double relativeL2Error(const std::vector<float> &Actual, const std::vector<double> &Expected);

/// Passes when relativeError <= Tolerance; the message names What, the error and the worst
/// element.
::testing::AssertionResult closeTo(const std::string &What, const std::vector<float> &Actual,
                                   const std::vector<double> &Expected, double Tolerance);

/// Central differences of F at X in float64, step H.
std::vector<double> numericGradient(const std::function<double(const std::vector<double> &)> &F,
                                    std::vector<double> X, double H = 1e-6);

/// sum_i Y[i] * W[i]: the scalar loss whose gradient with respect to Y is W, so a backward
/// kernel fed DY = W must reproduce numericGradient of this composed with the forward.
double weightedSum(const std::vector<double> &Y, const std::vector<double> &W);

/// A fixture with a host device; a test fails if the device recorded an error.
class HostKernelTest : public ::testing::Test {
protected:
  void TearDown() override { EXPECT_EQ(D->takeError(), ""); }
  std::unique_ptr<Device> D = makeHostDevice();
};

} // namespace trainmem::kernels::testing

#endif
