//===- ElementwiseTest.cpp - bias, elementwise ops, activations and dropout -===//
//
// Forward results against float64, every gradient against float64 central differences, and
// dropout's mask: density close to 1 - p, one mask per (seed, offset), and the counter-based
// property that lets a mask be produced in pieces.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <cmath>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

class Elementwise : public HostKernelTest {};

TEST_F(Elementwise, BiasAddAndGradOverChannels) {
  const ChannelShape S{3, 4, 5};
  auto X = randomFloats(S.elements(), 20), Bias = randomFloats(S.Channels, 21);
  auto W = randomFloats(S.elements(), 22);
  auto Forward = [&](const std::vector<double> &B) {
    std::vector<double> Y(S.elements());
    for (int64_t I = 0; I < S.elements(); ++I)
      Y[I] = X[I] + B[(I / S.Inner) % S.Channels];
    return Y;
  };
  DeviceBuffer DX(*D, X), DBias(*D, Bias), DW(*D, W), Y(*D, X.size() * 4), Grad(*D, 4 * 4);
  D->biasAdd(Y.f(), DX.f(), DBias.f(), S);
  D->biasGrad(Grad.f(), DW.f(), S);
  EXPECT_TRUE(closeTo("Y", Y.read(), Forward(widen(Bias)), Fp32Tolerance));
  auto Numeric = numericGradient(
      [&](const std::vector<double> &B) { return weightedSum(Forward(B), widen(W)); }, widen(Bias));
  EXPECT_TRUE(closeTo("dBias", Grad.read(), Numeric, GradientTolerance));
}

TEST_F(Elementwise, AddMulScaleAndMulGradient) {
  const int64_t N = 37;
  auto A = randomFloats(N, 23), B = randomFloats(N, 24), W = randomFloats(N, 25);
  DeviceBuffer DA(*D, A), DB(*D, B), DW(*D, W), Out(*D, N * 4), GA(*D, N * 4), GB(*D, N * 4);
  std::vector<double> Sum(N), Product(N), Scaled(N);
  for (int64_t I = 0; I < N; ++I) {
    Sum[I] = double(A[I]) + B[I];
    Product[I] = double(A[I]) * B[I];
    Scaled[I] = -2.5 * A[I];
  }
  D->add(Out.f(), DA.f(), DB.f(), N);
  EXPECT_TRUE(closeTo("add", Out.read(), Sum, Fp32Tolerance));
  D->mul(Out.f(), DA.f(), DB.f(), N);
  EXPECT_TRUE(closeTo("mul", Out.read(), Product, Fp32Tolerance));
  D->scale(Out.f(), DA.f(), -2.5f, N);
  EXPECT_TRUE(closeTo("scale", Out.read(), Scaled, Fp32Tolerance));

  D->mulBackward(GA.f(), GB.f(), DW.f(), DA.f(), DB.f(), N);
  auto Loss = [&](const std::vector<double> &AValues, const std::vector<double> &BValues) {
    double Total = 0.0;
    for (int64_t I = 0; I < N; ++I)
      Total += W[I] * AValues[I] * BValues[I];
    return Total;
  };
  auto NumA =
      numericGradient([&](const std::vector<double> &V) { return Loss(V, widen(B)); }, widen(A));
  auto NumB =
      numericGradient([&](const std::vector<double> &V) { return Loss(widen(A), V); }, widen(B));
  EXPECT_TRUE(closeTo("dA", GA.read(), NumA, GradientTolerance));
  EXPECT_TRUE(closeTo("dB", GB.read(), NumB, GradientTolerance));
  // The gradient of scale is scale: d(c * a)/da = c.
  D->scale(Out.f(), DW.f(), -2.5f, N);
  auto NumScale = numericGradient(
      [&](const std::vector<double> &V) {
        double Total = 0.0;
        for (int64_t I = 0; I < N; ++I)
          Total += W[I] * -2.5 * V[I];
        return Total;
      },
      widen(A));
  EXPECT_TRUE(closeTo("dScale", Out.read(), NumScale, GradientTolerance));
}

double referenceActivation(Activation Kind, double X) {
  switch (Kind) {
  case Activation::Relu:
    return X > 0 ? X : 0;
  case Activation::GeluErf:
    return 0.5 * X * (1 + std::erf(X / std::sqrt(2.0)));
  case Activation::GeluTanh:
    return 0.5 * X * (1 + std::tanh(std::sqrt(2 / M_PI) * (X + 0.044715 * X * X * X)));
  case Activation::Silu:
    return X / (1 + std::exp(-X));
  }
  return X;
}

TEST_F(Elementwise, ActivationsAndGradients) {
  const int64_t N = 64;
  auto X = randomFloats(N, 26, -4.0f, 4.0f), W = randomFloats(N, 27);
  // Central differences straddling ReLU's kink would be meaningless.
  for (float &Value : X)
    if (std::fabs(Value) < 1e-3f)
      Value = 0.5f;
  DeviceBuffer DX(*D, X), DW(*D, W), Y(*D, N * 4), Grad(*D, N * 4);
  for (Activation Kind :
       {Activation::Relu, Activation::GeluErf, Activation::GeluTanh, Activation::Silu}) {
    std::string Name = "activation " + std::to_string(static_cast<int>(Kind));
    auto Forward = [&](const std::vector<double> &V) {
      std::vector<double> Out(V.size());
      for (size_t I = 0; I < V.size(); ++I)
        Out[I] = referenceActivation(Kind, V[I]);
      return Out;
    };
    D->activationForward(Kind, Y.f(), DX.f(), N);
    EXPECT_TRUE(closeTo(Name + " forward", Y.read(), Forward(widen(X)), Fp32Tolerance));
    D->activationBackward(Kind, Grad.f(), DW.f(), DX.f(), N);
    auto Numeric = numericGradient(
        [&](const std::vector<double> &V) { return weightedSum(Forward(V), widen(W)); }, widen(X));
    EXPECT_TRUE(closeTo(Name + " backward", Grad.read(), Numeric, GradientTolerance));
  }
}

TEST_F(Elementwise, DropoutMaskDensityAndDeterminism) {
  const int64_t N = 100000;
  const float P = 0.3f;
  auto X = randomFloats(N, 28);
  DeviceBuffer DX(*D, X), Y(*D, N * 4), Mask(*D, N), Again(*D, N), Other(*D, N);
  D->dropoutForward(Y.f(), Mask.as<uint8_t>(), DX.f(), N, P, 1234, 0);
  auto MaskValues = Mask.read<uint8_t>();
  int64_t Kept = 0;
  for (uint8_t M : MaskValues)
    Kept += M;
  // The kept fraction has standard deviation sqrt(p (1 - p) / N) ~ 0.0015.
  EXPECT_NEAR(double(Kept) / N, 1.0 - P, 0.01);

  D->dropoutForward(Y.f(), Again.as<uint8_t>(), DX.f(), N, P, 1234, 0);
  EXPECT_EQ(Again.read<uint8_t>(), MaskValues);
  D->dropoutForward(Y.f(), Other.as<uint8_t>(), DX.f(), N, P, 1235, 0);
  EXPECT_NE(Other.read<uint8_t>(), MaskValues);
  // Counter-based: the mask of elements [100, N) at offset 100 is the tail of the full mask.
  D->dropoutForward(Y.f(), Other.as<uint8_t>(), DX.f() + 100, N - 100, P, 1234, 100);
  auto Tail = Other.read<uint8_t>();
  EXPECT_TRUE(std::equal(Tail.begin(), Tail.begin() + (N - 100), MaskValues.begin() + 100));

  D->dropoutForward(Y.f(), Mask.as<uint8_t>(), DX.f(), N, P, 1234, 0);
  auto YValues = Y.read();
  for (int64_t I = 0; I < N; ++I)
    ASSERT_EQ(YValues[I], MaskValues[I] ? X[I] * (1.0f / (1.0f - P)) : 0.0f) << I;
}

TEST_F(Elementwise, DropoutGradientAndEdgeProbabilities) {
  const int64_t N = 50;
  const float P = 0.25f;
  auto X = randomFloats(N, 29), W = randomFloats(N, 30);
  DeviceBuffer DX(*D, X), DW(*D, W), Y(*D, N * 4), Mask(*D, N), Grad(*D, N * 4);
  D->dropoutForward(Y.f(), Mask.as<uint8_t>(), DX.f(), N, P, 99, 7);
  D->dropoutBackward(Grad.f(), DW.f(), Mask.as<uint8_t>(), N, P);
  auto MaskValues = Mask.read<uint8_t>();
  auto Numeric = numericGradient(
      [&](const std::vector<double> &V) {
        double Total = 0.0;
        for (int64_t I = 0; I < N; ++I)
          Total += W[I] * (MaskValues[I] ? V[I] / (1.0 - P) : 0.0);
        return Total;
      },
      widen(X));
  EXPECT_TRUE(closeTo("dX", Grad.read(), Numeric, GradientTolerance));

  D->dropoutForward(Y.f(), Mask.as<uint8_t>(), DX.f(), N, 0.0f, 99, 0);
  EXPECT_EQ(Y.read(), X);
  D->dropoutForward(Y.f(), Mask.as<uint8_t>(), DX.f(), N, 1.0f, 99, 0);
  EXPECT_EQ(Y.read(), std::vector<float>(N, 0.0f));
  D->dropoutForward(Y.f(), Mask.as<uint8_t>(), DX.f(), N, 1.5f, 99, 0);
  EXPECT_NE(D->takeError().find("p must lie in [0, 1]"), std::string::npos);
}

} // namespace
