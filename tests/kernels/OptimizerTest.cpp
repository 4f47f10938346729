//===- OptimizerTest.cpp - Adam/AdamW and bitsandbytes' 8-bit blockwise Adam -===//
//
// fp32 Adam and AdamW against torch.optim's formulas in float64 over several steps; the 8-bit
// optimizer's code book against create_dynamic_map's known values, its state size (n codes
// plus one fp32 absmax per 256 values, packed into exactly that many bytes), its first step
// against fp32 Adam with every stored code the nearest one, and its trajectory against fp32
// Adam over ten steps.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

/// torch.optim.Adam / AdamW (_single_tensor_adam) in float64.
void referenceAdamStep(std::vector<double> &P, const std::vector<float> &Grad,
                       std::vector<double> &M, std::vector<double> &V, const AdamOptions &O) {
  double BiasCorrection1 = 1 - std::pow(O.Beta1, O.Step);
  double BiasCorrection2 = 1 - std::pow(O.Beta2, O.Step);
  for (size_t I = 0; I < P.size(); ++I) {
    double G = Grad[I];
    if (O.Decoupled)
      P[I] *= 1 - O.Lr * O.WeightDecay;
    else
      G += O.WeightDecay * P[I];
    M[I] = O.Beta1 * M[I] + (1 - O.Beta1) * G;
    V[I] = O.Beta2 * V[I] + (1 - O.Beta2) * G * G;
    P[I] -= O.Lr / BiasCorrection1 * M[I] / (std::sqrt(V[I] / BiasCorrection2) + O.Eps);
  }
}

std::vector<double> difference(const std::vector<float> &A, const std::vector<float> &B) {
  std::vector<double> Out(A.size());
  for (size_t I = 0; I < A.size(); ++I)
    Out[I] = double(A[I]) - double(B[I]);
  return Out;
}

std::vector<double> difference(const std::vector<double> &A, const std::vector<float> &B) {
  std::vector<double> Out(A.size());
  for (size_t I = 0; I < A.size(); ++I)
    Out[I] = A[I] - double(B[I]);
  return Out;
}

class Optimizer : public HostKernelTest {};

TEST_F(Optimizer, AdamAndAdamWFollowTorchOverSteps) {
  const int64_t N = 300;
  for (bool Decoupled : {true, false}) {
    std::string Name = Decoupled ? "AdamW " : "Adam (L2) ";
    auto Param = randomFloats(N, 100);
    DeviceBuffer DP(*D, Param), DM(*D, N * 4), DV(*D, N * 4), DG(*D, N * 4);
    D->fill(DM.f(), N, 0.0f);
    D->fill(DV.f(), N, 0.0f);
    std::vector<double> P = widen(Param), M(N, 0.0), V(N, 0.0);
    AdamOptions O;
    O.Lr = 1e-2;
    O.WeightDecay = 0.1;
    O.Decoupled = Decoupled;
    for (O.Step = 1; O.Step <= 3; ++O.Step) {
      auto Grad = randomFloats(N, 100 + static_cast<uint32_t>(O.Step));
      D->copyFromHost(DG.f(), Grad.data(), N * 4);
      D->adamStep(DP.f(), DG.f(), DM.f(), DV.f(), N, O);
      referenceAdamStep(P, Grad, M, V, O);
    }
    // The update is small next to the parameter, so compare the update itself.
    EXPECT_TRUE(
        closeTo(Name + "update", narrow(difference(DP.read(), Param)), difference(P, Param), 1e-4));
    EXPECT_TRUE(closeTo(Name + "exp_avg", DM.read(), M, Fp32Tolerance));
    EXPECT_TRUE(closeTo(Name + "exp_avg_sq", DV.read(), V, Fp32Tolerance));
  }
  AdamOptions Bad;
  Bad.Step = 0;
  D->adamStep(nullptr, nullptr, nullptr, nullptr, 1, Bad);
  EXPECT_NE(D->takeError().find("step counts from 1"), std::string::npos);
}

TEST(DynamicQuantizationMap, MatchesBitsandbytes) {
  auto Signed = dynamicQuantizationMap(true), Unsigned = dynamicQuantizationMap(false);
  EXPECT_TRUE(std::is_sorted(Signed.begin(), Signed.end()));
  EXPECT_TRUE(std::adjacent_find(Signed.begin(), Signed.end()) == Signed.end());
  EXPECT_TRUE(std::adjacent_find(Unsigned.begin(), Unsigned.end()) == Unsigned.end());
  EXPECT_TRUE(std::is_sorted(Unsigned.begin(), Unsigned.end()));
  EXPECT_EQ(std::count_if(Signed.begin(), Signed.end(), [](float V) { return V < 0; }), 127);
  EXPECT_EQ(Signed[127], 0.0f);
  EXPECT_EQ(Signed[255], 1.0f);
  // Extremes: the midpoint of linspace(0.1, 1, 65)'s last gap, and 1e-6 times the midpoint
  // of linspace(0.1, 1, 2).
  EXPECT_NEAR(Signed[0], -0.99296875, 1e-6);
  EXPECT_NEAR(Signed[128], 5.5e-7, 1e-12);
  EXPECT_EQ(Unsigned[0], 0.0f);
  EXPECT_EQ(Unsigned[255], 1.0f);
  EXPECT_NEAR(Unsigned[254], 0.996484375, 1e-6);
  EXPECT_NEAR(Unsigned[1], 3.25e-7, 1e-12);
}

TEST(Adam8bitStateBytes, CodesPlusOneAbsmaxPerBlock) {
  EXPECT_EQ(adam8bitStateBytes(1), 1 + 4);
  EXPECT_EQ(adam8bitStateBytes(256), 256 + 4);
  EXPECT_EQ(adam8bitStateBytes(257), 257 + 8);
  EXPECT_EQ(adam8bitStateBytes(1000), 1000 + 16);
  for (int64_t N : {7, 255, 4096, 123457})
    EXPECT_EQ(adam8bitStateBytes(N), N + 4 * ((N + 255) / 256)) << N;
}

/// The two 8-bit states of N values, each packed into one buffer of exactly
/// adam8bitStateBytes(N) bytes: the absmax floats first (keeping them aligned), then the codes.
struct PackedAdam8bitState {
  int64_t N, Blocks;
  DeviceBuffer ExpAvg, ExpAvgSq, SignedMap, UnsignedMap;

  PackedAdam8bitState(Device &D, int64_t Count)
      : N(Count), Blocks((Count + QuantBlockSize - 1) / QuantBlockSize),
        ExpAvg(D, adam8bitStateBytes(Count)), ExpAvgSq(D, adam8bitStateBytes(Count)),
        SignedMap(D, mapVector(true)), UnsignedMap(D, mapVector(false)) {
    D.zero(ExpAvg.as<void>(), ExpAvg.bytes());
    D.zero(ExpAvgSq.as<void>(), ExpAvgSq.bytes());
  }

  static std::vector<float> mapVector(bool Signed) {
    auto Map = dynamicQuantizationMap(Signed);
    return std::vector<float>(Map.begin(), Map.end());
  }

  Adam8bitState state() const {
    Adam8bitState S;
    S.ExpAvgAbsmax = ExpAvg.f();
    S.ExpAvgCodes = ExpAvg.as<uint8_t>() + 4 * Blocks;
    S.ExpAvgSqAbsmax = ExpAvgSq.f();
    S.ExpAvgSqCodes = ExpAvgSq.as<uint8_t>() + 4 * Blocks;
    S.SignedMap = SignedMap.f();
    S.UnsignedMap = UnsignedMap.f();
    return S;
  }

  /// The dequantized state (code value times its block's absmax).
  static std::vector<double> dequantize(const DeviceBuffer &Packed, int64_t N, int64_t Blocks,
                                        bool Signed) {
    auto Bytes = Packed.read<uint8_t>();
    auto Map = dynamicQuantizationMap(Signed);
    std::vector<double> Out(N);
    for (int64_t I = 0; I < N; ++I) {
      float Absmax;
      std::memcpy(&Absmax, Bytes.data() + 4 * (I / QuantBlockSize), 4);
      Out[I] = double(Map[Bytes[4 * Blocks + I]]) * Absmax;
    }
    return Out;
  }
};

/// Whether Code is what bitsandbytes stores for Value in a block with Absmax: the nearest
/// code, or for the signed map its neighbour when the nearest has the other sign.
bool isStoredCode(const std::array<float, 256> &Map, uint8_t Code, double Value, double Absmax,
                  bool Signed) {
  double X = Absmax > 0 ? Value / Absmax : 0.0;
  int Nearest = 0;
  for (int K = 1; K < 256; ++K)
    if (std::fabs(Map[K] - X) < std::fabs(Map[Nearest] - X))
      Nearest = K;
  if (Code == Nearest ||
      std::fabs(Map[Code] - X) <= std::fabs(Map[Nearest] - X) * (1 + 1e-6) + 1e-12)
    return true;
  bool SignFlipped = std::signbit(Map[Nearest]) != std::signbit(Value);
  return Signed && SignFlipped && std::abs(int(Code) - Nearest) == 1 &&
         std::signbit(Map[Code]) == std::signbit(Value);
}

TEST_F(Optimizer, Adam8bitFirstStepMatchesAdamAndStoresNearestCodes) {
  const int64_t N = 700; // two full blocks and a partial one
  auto Param = randomFloats(N, 110);
  // Gradients spanning four decades, so blocks hold both large and tiny values.
  auto Grad = randomFloats(N, 111);
  auto Scales = randomFloats(N, 112, -4.0f, 0.0f);
  for (int64_t I = 0; I < N; ++I)
    Grad[I] *= std::pow(10.0f, Scales[I]);
  PackedAdam8bitState State(*D, N);
  DeviceBuffer P8(*D, Param), P32(*D, Param), DG(*D, Grad), M(*D, N * 4), V(*D, N * 4);
  D->fill(M.f(), N, 0.0f);
  D->fill(V.f(), N, 0.0f);
  AdamOptions O;
  O.Lr = 1e-2;
  D->adam8bitStep(P8.f(), DG.f(), State.state(), N, O);
  D->adamStep(P32.f(), DG.f(), M.f(), V.f(), N, O);
  // Both updates read unquantized states, so they agree to fp32 precision.
  EXPECT_TRUE(closeTo("8-bit update", narrow(difference(P8.read(), Param)),
                      difference(P32.read(), Param), 1e-4));

  // The states before quantization, as bitsandbytes computes them from zero: its betas are
  // floats, so 1 - beta2 is 1 - float(0.999), not torch's float(1 - 0.999).
  std::vector<double> Exact1(N), Exact2(N);
  for (int64_t I = 0; I < N; ++I) {
    Exact1[I] = (1.0f - static_cast<float>(O.Beta1)) * Grad[I];
    Exact2[I] = (1.0f - static_cast<float>(O.Beta2)) * Grad[I] * Grad[I];
  }
  auto Signed = dynamicQuantizationMap(true), Unsigned = dynamicQuantizationMap(false);
  auto Bytes1 = State.ExpAvg.read<uint8_t>(), Bytes2 = State.ExpAvgSq.read<uint8_t>();
  for (int64_t B = 0; B < State.Blocks; ++B) {
    float Absmax1, Absmax2;
    std::memcpy(&Absmax1, Bytes1.data() + 4 * B, 4);
    std::memcpy(&Absmax2, Bytes2.data() + 4 * B, 4);
    int64_t End = std::min<int64_t>(N, (B + 1) * QuantBlockSize);
    double Max1 = 0, Max2 = 0;
    for (int64_t I = B * QuantBlockSize; I < End; ++I) {
      Max1 = std::max(Max1, std::fabs(Exact1[I]));
      Max2 = std::max(Max2, Exact2[I]);
      ASSERT_TRUE(isStoredCode(Signed, Bytes1[4 * State.Blocks + I], Exact1[I], Absmax1, true))
          << "exp_avg element " << I;
      ASSERT_TRUE(isStoredCode(Unsigned, Bytes2[4 * State.Blocks + I], Exact2[I], Absmax2, false))
          << "exp_avg_sq element " << I;
    }
    EXPECT_NEAR(Absmax1, Max1, Max1 * 1e-6) << "block " << B;
    EXPECT_NEAR(Absmax2, Max2, Max2 * 1e-6) << "block " << B;
  }
}

TEST_F(Optimizer, Adam8bitTracksFp32AdamOverTenSteps) {
  const int64_t N = 1000;
  auto Param = randomFloats(N, 120);
  PackedAdam8bitState State(*D, N);
  DeviceBuffer P8(*D, Param), P32(*D, Param), DG(*D, N * 4), M(*D, N * 4), V(*D, N * 4);
  D->fill(M.f(), N, 0.0f);
  D->fill(V.f(), N, 0.0f);
  AdamOptions O;
  O.Lr = 1e-3;
  O.WeightDecay = 0.01;
  // A gradient with a persistent per-element direction and magnitude plus noise, as a real
  // one has; pure noise would make Adam's update itself noise. Magnitudes span one decade
  // within a block: exp_avg_sq spans two, well inside the unsigned map. (Three decades would
  // put exp_avg_sq below the map's smallest step, 3.25e-7 of the block's absmax, where it
  // stores 0 and the update becomes exp_avg / eps: bitsandbytes' format does that too.)
  auto Direction = randomFloats(N, 121), Scales = randomFloats(N, 122, -1.0f, 0.0f);
  for (O.Step = 1; O.Step <= 10; ++O.Step) {
    auto Noise = randomFloats(N, 130 + static_cast<uint32_t>(O.Step));
    std::vector<float> Grad(N);
    for (int64_t I = 0; I < N; ++I)
      Grad[I] = (Direction[I] + 0.5f * Noise[I]) * std::pow(10.0f, Scales[I]);
    D->copyFromHost(DG.f(), Grad.data(), N * 4);
    D->adam8bitStep(P8.f(), DG.f(), State.state(), N, O);
    D->adamStep(P32.f(), DG.f(), M.f(), V.f(), N, O);
  }
  // Quantization error in the states feeds into every later update; with the dynamic map
  // the summed updates stay within a few percent (about 1.5% here) of fp32 Adam's.
  EXPECT_LE(relativeL2Error(narrow(difference(P8.read(), Param)), difference(P32.read(), Param)),
            0.05);
  EXPECT_LE(relativeL2Error(narrow(State.dequantize(State.ExpAvg, N, State.Blocks, true)),
                            widen(M.read())),
            0.05);
  EXPECT_LE(relativeL2Error(narrow(State.dequantize(State.ExpAvgSq, N, State.Blocks, false)),
                            widen(V.read())),
            0.05);
}

TEST_F(Optimizer, Adam8bitSkipsNonFiniteGradients) {
  const int64_t N = 10;
  auto Param = randomFloats(N, 140), Grad = randomFloats(N, 141);
  Grad[3] = std::numeric_limits<float>::quiet_NaN();
  Grad[4] = std::numeric_limits<float>::infinity();
  PackedAdam8bitState State(*D, N);
  DeviceBuffer DP(*D, Param), DG(*D, Grad);
  AdamOptions O;
  D->adam8bitStep(DP.f(), DG.f(), State.state(), N, O);
  auto After = DP.read();
  EXPECT_EQ(After[3], Param[3]);
  EXPECT_EQ(After[4], Param[4]);
  EXPECT_NE(After[5], Param[5]);
  auto Codes1 = State.ExpAvg.read<uint8_t>(), Codes2 = State.ExpAvgSq.read<uint8_t>();
  EXPECT_EQ(Codes1[4 * State.Blocks + 3], 127); // the signed map's zero
  EXPECT_EQ(Codes2[4 * State.Blocks + 3], 0);   // the unsigned map's zero
}

} // namespace
