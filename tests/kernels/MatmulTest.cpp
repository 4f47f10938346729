//===- MatmulTest.cpp - matmul, bf16 conversion and a linear layer's gradients -===//
//
// The host matmul against float64 for every transpose combination, strided and broadcast
// batches, BLAS's beta == 0 rule, bf16 inputs with fp32 accumulation (fp32 and bf16 outputs),
// round-to-nearest-even bf16 conversion, and the gradients of a linear layer (x W^T + b) built
// from matmul and biasGrad against central differences.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <cmath>
#include <limits>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

/// A dense row-major matrix product with op() as MatmulArgs defines it, in float64.
struct ReferenceMatmul {
  int64_t M, N, K, Batch = 1;
  bool TransA = false, TransB = false;
  double Alpha = 1.0, Beta = 0.0;

  std::vector<double> operator()(const std::vector<double> &A, const std::vector<double> &B,
                                 const std::vector<double> &C) const {
    std::vector<double> Out(static_cast<size_t>(Batch * M * N));
    for (int64_t E = 0; E < Batch; ++E)
      for (int64_t I = 0; I < M; ++I)
        for (int64_t J = 0; J < N; ++J) {
          double Sum = 0.0;
          for (int64_t P = 0; P < K; ++P) {
            double AValue = TransA ? A[E * M * K + P * M + I] : A[E * M * K + I * K + P];
            double BValue = TransB ? B[E * K * N + J * K + P] : B[E * K * N + P * N + J];
            Sum += AValue * BValue;
          }
          size_t Index = static_cast<size_t>(E * M * N + I * N + J);
          Out[Index] = Alpha * Sum + (Beta != 0.0 ? Beta * C[Index] : 0.0);
        }
    return Out;
  }
};

MatmulArgs packedArgs(const ReferenceMatmul &R, const void *A, const void *B, void *C) {
  MatmulArgs Args;
  Args.M = R.M;
  Args.N = R.N;
  Args.K = R.K;
  Args.Batch = R.Batch;
  Args.TransA = R.TransA;
  Args.TransB = R.TransB;
  Args.A = A;
  Args.B = B;
  Args.C = C;
  Args.Alpha = static_cast<float>(R.Alpha);
  Args.Beta = static_cast<float>(R.Beta);
  return Args;
}

std::vector<float> roundedToBf16(const std::vector<float> &Values) {
  std::vector<float> Out(Values.size());
  for (size_t I = 0; I < Values.size(); ++I)
    Out[I] = bf16ToFloat(floatToBf16(Values[I]));
  return Out;
}

std::vector<uint16_t> bf16Bits(const std::vector<float> &Values) {
  std::vector<uint16_t> Out(Values.size());
  for (size_t I = 0; I < Values.size(); ++I)
    Out[I] = floatToBf16(Values[I]);
  return Out;
}

class Matmul : public HostKernelTest {};

TEST_F(Matmul, Fp32EveryTransposeWithAlphaBeta) {
  for (bool TransA : {false, true})
    for (bool TransB : {false, true}) {
      ReferenceMatmul R{7, 5, 33, 3, TransA, TransB, 0.7, 0.3};
      auto A = randomFloats(R.Batch * R.M * R.K, 1), B = randomFloats(R.Batch * R.K * R.N, 2);
      auto C = randomFloats(R.Batch * R.M * R.N, 3);
      DeviceBuffer DA(*D, A), DB(*D, B), DC(*D, C);
      D->matmul(packedArgs(R, DA.f(), DB.f(), DC.f()));
      EXPECT_TRUE(closeTo("C (TransA=" + std::to_string(TransA) +
                              ", TransB=" + std::to_string(TransB) + ")",
                          DC.read(), R(widen(A), widen(B), widen(C)), Fp32Tolerance));
    }
}

TEST_F(Matmul, LeadingDimensionsAndBroadcastBatch) {
  // A is a 4 x 6 window of a 4 x 9 buffer; B (stride 0) is one matrix shared by all three
  // batch entries, as a weight is across a batch.
  const int64_t M = 4, N = 5, K = 6, Batch = 3, LdA = 9;
  auto A = randomFloats(Batch * M * LdA, 4), B = randomFloats(K * N, 5);
  DeviceBuffer DA(*D, A), DB(*D, B), DC(*D, Batch * M * N * sizeof(float));
  MatmulArgs Args;
  Args.M = M;
  Args.N = N;
  Args.K = K;
  Args.Batch = Batch;
  Args.A = DA.f();
  Args.B = DB.f();
  Args.C = DC.f();
  Args.LdA = LdA;
  Args.StrideA = M * LdA;
  Args.StrideB = 0;
  D->matmul(Args);
  std::vector<double> Expected(Batch * M * N, 0.0);
  for (int64_t E = 0; E < Batch; ++E)
    for (int64_t I = 0; I < M; ++I)
      for (int64_t J = 0; J < N; ++J)
        for (int64_t P = 0; P < K; ++P)
          Expected[E * M * N + I * N + J] +=
              double(A[E * M * LdA + I * LdA + P]) * double(B[P * N + J]);
  EXPECT_TRUE(closeTo("C", DC.read(), Expected, Fp32Tolerance));
}

TEST_F(Matmul, BetaZeroDoesNotReadC) {
  ReferenceMatmul R{3, 4, 5};
  auto A = randomFloats(R.M * R.K, 6), B = randomFloats(R.K * R.N, 7);
  std::vector<float> C(R.M * R.N, std::numeric_limits<float>::quiet_NaN());
  DeviceBuffer DA(*D, A), DB(*D, B), DC(*D, C);
  D->matmul(packedArgs(R, DA.f(), DB.f(), DC.f()));
  EXPECT_TRUE(closeTo("C", DC.read(), R(widen(A), widen(B), {}), Fp32Tolerance));
}

TEST_F(Matmul, RejectsInconsistentArguments) {
  MatmulArgs Args;
  Args.M = 2;
  Args.N = 2;
  Args.K = 2;
  Args.LdA = 1; // shorter than a row of K = 2
  float Buffer[4] = {};
  Args.A = Buffer;
  Args.B = Buffer;
  Args.C = Buffer;
  D->matmul(Args);
  EXPECT_NE(D->takeError().find("leading dimension"), std::string::npos);
}

TEST_F(Matmul, Bf16InputsAccumulateInFp32) {
  for (bool TransB : {false, true}) {
    ReferenceMatmul R{9, 6, 70, 2, false, TransB, 1.0, 0.5};
    auto A = randomFloats(R.Batch * R.M * R.K, 8), B = randomFloats(R.Batch * R.K * R.N, 9);
    auto C = randomFloats(R.Batch * R.M * R.N, 10);
    DeviceBuffer DA(*D, bf16Bits(A)), DB(*D, bf16Bits(B)), DC(*D, C);
    MatmulArgs Args = packedArgs(R, DA.as<uint16_t>(), DB.as<uint16_t>(), DC.f());
    Args.InputType = DType::BF16;
    D->matmul(Args);
    // The inputs are exactly the bf16 values, so fp32 accumulation is held to fp32 accuracy;
    // against the unrounded inputs only bf16 accuracy holds.
    auto Exact = R(widen(roundedToBf16(A)), widen(roundedToBf16(B)), widen(C));
    auto Result = DC.read();
    EXPECT_TRUE(closeTo("fp32 C from bf16 inputs", Result, Exact, Fp32Tolerance));
    EXPECT_TRUE(
        closeTo("fp32 C vs fp32 inputs", Result, R(widen(A), widen(B), widen(C)), Bf16Tolerance));

    DeviceBuffer DCb(*D, bf16Bits(C));
    Args.C = DCb.as<uint16_t>();
    Args.OutputType = DType::BF16;
    D->matmul(Args);
    std::vector<float> Bf16Result;
    for (uint16_t Bits : DCb.read<uint16_t>())
      Bf16Result.push_back(bf16ToFloat(Bits));
    auto ExactFromBf16C =
        R(widen(roundedToBf16(A)), widen(roundedToBf16(B)), widen(roundedToBf16(C)));
    EXPECT_TRUE(closeTo("bf16 C", Bf16Result, ExactFromBf16C, Bf16Tolerance));
    // One rounding of an fp32-accurate result: within half a bf16 ulp, at most 2^-8 of the
    // value, per element.
    for (size_t I = 0; I < Bf16Result.size(); ++I)
      ASSERT_LE(std::fabs(Bf16Result[I] - ExactFromBf16C[I]),
                std::fabs(ExactFromBf16C[I]) * (1.0 / 256) + 1e-5)
          << "element " << I;
  }
}

TEST(Bf16, RoundsToNearestEven) {
  auto Bits = [](uint32_t B) { return floatToBf16(floatFromBits(B)); };
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bits(0x3f808000u), 0x3f80); // halfway, even neighbour below
  EXPECT_EQ(Bits(0x3f818000u), 0x3f82); // halfway, even neighbour above
  EXPECT_EQ(Bits(0x3f808001u), 0x3f81); // just above halfway
  EXPECT_EQ(Bits(0x3f807fffu), 0x3f80); // just below halfway
  EXPECT_EQ(Bits(0xbf818000u), 0xbf82); // negative values round by magnitude
  EXPECT_EQ(Bits(0x7f800000u), 0x7f80); // infinity stays infinity
  EXPECT_EQ(Bits(0x7f7fffffu), 0x7f80); // the largest float rounds up to infinity
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16ToFloat(Bits(0x7f800001u)))); // a signalling NaN stays NaN
  EXPECT_EQ(bf16ToFloat(0x4049), 3.140625f);
}

TEST_F(Matmul, CastsRoundTrip) {
  auto Values = randomFloats(100, 11, -1000.0f, 1000.0f);
  DeviceBuffer In(*D, Values), Half(*D, Values.size() * 2), Back(*D, Values.size() * 4);
  D->castToBf16(Half.as<uint16_t>(), In.f(), 100);
  D->castToF32(Back.f(), Half.as<uint16_t>(), 100);
  EXPECT_EQ(Half.read<uint16_t>(), bf16Bits(Values));
  EXPECT_EQ(Back.read(), roundedToBf16(Values));
}

TEST_F(Matmul, LinearLayerGradientsMatchFiniteDifferences) {
  // Y [T, Out] = X [T, In] W^T + b; DX = DY W, DW = DY^T X, Db = column sums of DY.
  const int64_t T = 4, In = 5, Out = 3;
  auto X = randomFloats(T * In, 12), W = randomFloats(Out * In, 13), B = randomFloats(Out, 14);
  auto DYv = randomFloats(T * Out, 15);
  auto Forward = [&](const std::vector<double> &Xd, const std::vector<double> &Wd,
                     const std::vector<double> &Bd) {
    std::vector<double> Y(T * Out);
    for (int64_t I = 0; I < T; ++I)
      for (int64_t J = 0; J < Out; ++J) {
        double Sum = Bd[J];
        for (int64_t P = 0; P < In; ++P)
          Sum += Xd[I * In + P] * Wd[J * In + P];
        Y[I * Out + J] = Sum;
      }
    return Y;
  };
  DeviceBuffer DX(*D, X), DW(*D, W), DB(*D, B), DY(*D, DYv), Y(*D, T * Out * 4);
  DeviceBuffer GradX(*D, T * In * 4), GradW(*D, Out * In * 4), GradB(*D, Out * 4);
  ReferenceMatmul Fwd{T, Out, In, 1, false, true};
  D->matmul(packedArgs(Fwd, DX.f(), DW.f(), Y.f()));
  D->biasAdd(Y.f(), Y.f(), DB.f(), ChannelShape{T, Out, 1});
  EXPECT_TRUE(closeTo("Y", Y.read(), Forward(widen(X), widen(W), widen(B)), Fp32Tolerance));
  D->matmul(packedArgs(ReferenceMatmul{T, In, Out}, DY.f(), DW.f(), GradX.f()));
  D->matmul(packedArgs(ReferenceMatmul{Out, In, T, 1, true}, DY.f(), DX.f(), GradW.f()));
  D->biasGrad(GradB.f(), DY.f(), ChannelShape{T, Out, 1});

  auto Wd = widen(DYv);
  auto NumX = numericGradient(
      [&](const std::vector<double> &V) { return weightedSum(Forward(V, widen(W), widen(B)), Wd); },
      widen(X));
  auto NumW = numericGradient(
      [&](const std::vector<double> &V) { return weightedSum(Forward(widen(X), V, widen(B)), Wd); },
      widen(W));
  auto NumB = numericGradient(
      [&](const std::vector<double> &V) { return weightedSum(Forward(widen(X), widen(W), V), Wd); },
      widen(B));
  EXPECT_TRUE(closeTo("dX", GradX.read(), NumX, GradientTolerance));
  EXPECT_TRUE(closeTo("dW", GradW.read(), NumW, GradientTolerance));
  EXPECT_TRUE(closeTo("db", GradB.read(), NumB, GradientTolerance));
}

} // namespace
