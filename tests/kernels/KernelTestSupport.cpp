//===- KernelTestSupport.cpp - buffers, references and checks for kernel tests -===//
//
// The comparison and finite-difference helpers of KernelTestSupport.h.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

namespace trainmem::kernels::testing {

std::vector<float> randomFloats(size_t N, uint32_t Seed, float Low, float High) {
  std::mt19937 Engine(Seed);
  std::uniform_real_distribution<float> Distribution(Low, High);
  std::vector<float> Values(N);
  for (float &Value : Values)
    Value = Distribution(Engine);
  return Values;
}

std::vector<double> widen(const std::vector<float> &Values) {
  return std::vector<double>(Values.begin(), Values.end());
}

std::vector<float> narrow(const std::vector<double> &Values) {
  std::vector<float> Out(Values.size());
  for (size_t I = 0; I < Values.size(); ++I)
    Out[I] = static_cast<float>(Values[I]);
  return Out;
}

double relativeError(const std::vector<float> &Actual, const std::vector<double> &Expected) {
  double MaxDiff = 0.0, MaxRef = 0.0;
  for (size_t I = 0; I < Expected.size(); ++I) {
    double Diff = std::fabs(static_cast<double>(Actual[I]) - Expected[I]);
    // A NaN anywhere must fail, and NaN comparisons are false, hence the explicit test.
    MaxDiff = std::isnan(Diff) ? INFINITY : std::max(MaxDiff, Diff);
    MaxRef = std::max(MaxRef, std::fabs(Expected[I]));
  }
  return MaxRef > 0.0 ? MaxDiff / MaxRef : MaxDiff;
}

double relativeL2Error(const std::vector<float> &Actual, const std::vector<double> &Expected) {
  double Diff = 0.0, Ref = 0.0;
  for (size_t I = 0; I < Expected.size(); ++I) {
    double D = static_cast<double>(Actual[I]) - Expected[I];
    Diff += D * D;
    Ref += Expected[I] * Expected[I];
  }
  return Ref > 0.0 ? std::sqrt(Diff / Ref) : std::sqrt(Diff);
}

::testing::AssertionResult closeTo(const std::string &What, const std::vector<float> &Actual,
                                   const std::vector<double> &Expected, double Tolerance) {
  if (Actual.size() != Expected.size())
    return ::testing::AssertionFailure()
           << What << ": " << Actual.size() << " values, expected " << Expected.size();
  double Error = relativeError(Actual, Expected);
  if (Error <= Tolerance)
    return ::testing::AssertionSuccess();
  size_t Worst = 0;
  double WorstDiff = -1.0;
  for (size_t I = 0; I < Expected.size(); ++I) {
    double Diff = std::fabs(static_cast<double>(Actual[I]) - Expected[I]);
    if (std::isnan(Diff) || Diff > WorstDiff) {
      Worst = I;
      WorstDiff = std::isnan(Diff) ? INFINITY : Diff;
    }
  }
  return ::testing::AssertionFailure()
         << What << ": relative error " << Error << " > " << Tolerance << "; worst element "
         << Worst << " is " << Actual[Worst] << ", expected " << Expected[Worst];
}

std::vector<double> numericGradient(const std::function<double(const std::vector<double> &)> &F,
                                    std::vector<double> X, double H) {
  std::vector<double> Gradient(X.size());
  for (size_t I = 0; I < X.size(); ++I) {
    double Saved = X[I];
    X[I] = Saved + H;
    double Plus = F(X);
    X[I] = Saved - H;
    double Minus = F(X);
    X[I] = Saved;
    Gradient[I] = (Plus - Minus) / (2.0 * H);
  }
  return Gradient;
}

double weightedSum(const std::vector<double> &Y, const std::vector<double> &W) {
  double Sum = 0.0;
  for (size_t I = 0; I < Y.size(); ++I)
    Sum += Y[I] * W[I];
  return Sum;
}

} // namespace trainmem::kernels::testing
