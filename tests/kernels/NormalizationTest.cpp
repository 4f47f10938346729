//===- NormalizationTest.cpp - LayerNorm, RMSNorm and softmax -------------===//
//
// Forward outputs and saved statistics against float64; dx, dgamma and dbeta against float64
// central differences of the reference forward; softmax with and without the causal mask.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <algorithm>
#include <cmath>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

constexpr int64_t Rows = 5, Cols = 17;
constexpr float Eps = 1e-5f;

struct NormStats {
  std::vector<double> Y, Mean, Rstd;
};

NormStats referenceLayerNorm(const std::vector<double> &X, const std::vector<double> &Gamma,
                             const std::vector<double> &Beta) {
  NormStats S{std::vector<double>(X.size()), std::vector<double>(Rows), std::vector<double>(Rows)};
  for (int64_t R = 0; R < Rows; ++R) {
    double Mean = 0, Var = 0;
    for (int64_t C = 0; C < Cols; ++C)
      Mean += X[R * Cols + C] / Cols;
    for (int64_t C = 0; C < Cols; ++C)
      Var += (X[R * Cols + C] - Mean) * (X[R * Cols + C] - Mean) / Cols;
    double Rstd = 1 / std::sqrt(Var + Eps);
    for (int64_t C = 0; C < Cols; ++C)
      S.Y[R * Cols + C] = (X[R * Cols + C] - Mean) * Rstd * Gamma[C] + Beta[C];
    S.Mean[R] = Mean;
    S.Rstd[R] = Rstd;
  }
  return S;
}

NormStats referenceRmsNorm(const std::vector<double> &X, const std::vector<double> &Gamma) {
  NormStats S{std::vector<double>(X.size()), {}, std::vector<double>(Rows)};
  for (int64_t R = 0; R < Rows; ++R) {
    double MeanSquare = 0;
    for (int64_t C = 0; C < Cols; ++C)
      MeanSquare += X[R * Cols + C] * X[R * Cols + C] / Cols;
    double Rstd = 1 / std::sqrt(MeanSquare + Eps);
    for (int64_t C = 0; C < Cols; ++C)
      S.Y[R * Cols + C] = X[R * Cols + C] * Rstd * Gamma[C];
    S.Rstd[R] = Rstd;
  }
  return S;
}

std::vector<double> referenceSoftmax(const std::vector<double> &X, int64_t RowCount,
                                     int64_t ColCount, bool Causal) {
  std::vector<double> Y(X.size(), 0.0);
  for (int64_t R = 0; R < RowCount; ++R) {
    int64_t Limit = Causal ? R % ColCount + 1 : ColCount;
    double Max = *std::max_element(X.begin() + R * ColCount, X.begin() + R * ColCount + Limit);
    double Sum = 0;
    for (int64_t C = 0; C < Limit; ++C)
      Sum += std::exp(X[R * ColCount + C] - Max);
    for (int64_t C = 0; C < Limit; ++C)
      Y[R * ColCount + C] = std::exp(X[R * ColCount + C] - Max) / Sum;
  }
  return Y;
}

class Normalization : public HostKernelTest {};

TEST_F(Normalization, LayerNormForwardAndBackward) {
  // An offset mean tests the two-pass variance.
  auto X = randomFloats(Rows * Cols, 40, 2.0f, 4.0f), Gamma = randomFloats(Cols, 41);
  auto Beta = randomFloats(Cols, 42), W = randomFloats(Rows * Cols, 43);
  DeviceBuffer DX(*D, X), DGamma(*D, Gamma), DBeta(*D, Beta), DW(*D, W);
  DeviceBuffer Y(*D, X.size() * 4), Mean(*D, Rows * 4), Rstd(*D, Rows * 4);
  DeviceBuffer GX(*D, X.size() * 4), GGamma(*D, Cols * 4), GBeta(*D, Cols * 4);
  D->layerNormForward(Y.f(), Mean.f(), Rstd.f(), DX.f(), DGamma.f(), DBeta.f(), Rows, Cols, Eps);
  NormStats Ref = referenceLayerNorm(widen(X), widen(Gamma), widen(Beta));
  EXPECT_TRUE(closeTo("Y", Y.read(), Ref.Y, Fp32Tolerance));
  EXPECT_TRUE(closeTo("mean", Mean.read(), Ref.Mean, Fp32Tolerance));
  EXPECT_TRUE(closeTo("rstd", Rstd.read(), Ref.Rstd, Fp32Tolerance));

  D->layerNormBackward(GX.f(), GGamma.f(), GBeta.f(), DW.f(), DX.f(), Mean.f(), Rstd.f(),
                       DGamma.f(), Rows, Cols);
  auto Loss = [&](const std::vector<double> &Xv, const std::vector<double> &Gv,
                  const std::vector<double> &Bv) {
    return weightedSum(referenceLayerNorm(Xv, Gv, Bv).Y, widen(W));
  };
  auto NumX = numericGradient(
      [&](const std::vector<double> &V) { return Loss(V, widen(Gamma), widen(Beta)); }, widen(X));
  auto NumGamma = numericGradient(
      [&](const std::vector<double> &V) { return Loss(widen(X), V, widen(Beta)); }, widen(Gamma));
  auto NumBeta = numericGradient(
      [&](const std::vector<double> &V) { return Loss(widen(X), widen(Gamma), V); }, widen(Beta));
  EXPECT_TRUE(closeTo("dX", GX.read(), NumX, GradientTolerance));
  EXPECT_TRUE(closeTo("dGamma", GGamma.read(), NumGamma, GradientTolerance));
  EXPECT_TRUE(closeTo("dBeta", GBeta.read(), NumBeta, GradientTolerance));
}

TEST_F(Normalization, LayerNormWithoutAffine) {
  auto X = randomFloats(Rows * Cols, 44);
  DeviceBuffer DX(*D, X), Y(*D, X.size() * 4), Mean(*D, Rows * 4), Rstd(*D, Rows * 4);
  D->layerNormForward(Y.f(), Mean.f(), Rstd.f(), DX.f(), nullptr, nullptr, Rows, Cols, Eps);
  NormStats Ref =
      referenceLayerNorm(widen(X), std::vector<double>(Cols, 1.0), std::vector<double>(Cols, 0.0));
  EXPECT_TRUE(closeTo("Y", Y.read(), Ref.Y, Fp32Tolerance));
}

TEST_F(Normalization, RmsNormForwardAndBackward) {
  auto X = randomFloats(Rows * Cols, 45), Gamma = randomFloats(Cols, 46);
  auto W = randomFloats(Rows * Cols, 47);
  DeviceBuffer DX(*D, X), DGamma(*D, Gamma), DW(*D, W), Y(*D, X.size() * 4);
  DeviceBuffer Rstd(*D, Rows * 4), GX(*D, X.size() * 4), GGamma(*D, Cols * 4);
  D->rmsNormForward(Y.f(), Rstd.f(), DX.f(), DGamma.f(), Rows, Cols, Eps);
  NormStats Ref = referenceRmsNorm(widen(X), widen(Gamma));
  EXPECT_TRUE(closeTo("Y", Y.read(), Ref.Y, Fp32Tolerance));
  EXPECT_TRUE(closeTo("rstd", Rstd.read(), Ref.Rstd, Fp32Tolerance));

  D->rmsNormBackward(GX.f(), GGamma.f(), DW.f(), DX.f(), Rstd.f(), DGamma.f(), Rows, Cols);
  auto NumX = numericGradient(
      [&](const std::vector<double> &V) {
        return weightedSum(referenceRmsNorm(V, widen(Gamma)).Y, widen(W));
      },
      widen(X));
  auto NumGamma = numericGradient(
      [&](const std::vector<double> &V) {
        return weightedSum(referenceRmsNorm(widen(X), V).Y, widen(W));
      },
      widen(Gamma));
  EXPECT_TRUE(closeTo("dX", GX.read(), NumX, GradientTolerance));
  EXPECT_TRUE(closeTo("dGamma", GGamma.read(), NumGamma, GradientTolerance));
}

TEST_F(Normalization, SoftmaxForwardAndBackward) {
  for (bool Causal : {false, true}) {
    // Causal rows are consecutive [6 x 6] matrices.
    const int64_t R = 12, C = 6;
    std::string Name = Causal ? "causal softmax" : "softmax";
    auto X = randomFloats(R * C, 48, -3.0f, 3.0f), W = randomFloats(R * C, 49);
    DeviceBuffer DX(*D, X), DW(*D, W), Y(*D, X.size() * 4), G(*D, X.size() * 4);
    D->softmaxForward(Y.f(), DX.f(), R, C, Causal);
    auto YValues = Y.read();
    EXPECT_TRUE(closeTo(Name, YValues, referenceSoftmax(widen(X), R, C, Causal), Fp32Tolerance));
    if (Causal) {
      EXPECT_EQ(YValues[1], 0.0f); // row 0 keeps column 0 only
    }

    D->softmaxBackward(G.f(), DW.f(), Y.f(), R, C);
    auto Numeric = numericGradient(
        [&](const std::vector<double> &V) {
          return weightedSum(referenceSoftmax(V, R, C, Causal), widen(W));
        },
        widen(X));
    EXPECT_TRUE(closeTo(Name + " backward", G.read(), Numeric, GradientTolerance));
  }
}

TEST_F(Normalization, SoftmaxInPlace) {
  auto X = randomFloats(4 * 9, 50);
  DeviceBuffer Buffer(*D, X);
  D->softmaxForward(Buffer.f(), Buffer.f(), 4, 9, false);
  EXPECT_TRUE(
      closeTo("in place", Buffer.read(), referenceSoftmax(widen(X), 4, 9, false), Fp32Tolerance));
}

} // namespace
