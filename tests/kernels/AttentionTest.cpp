//===- AttentionTest.cpp - naive and memory-efficient attention ----------===//
//
// Naive attention (saves P) and the tiled, memory-efficient one (saves the log-sum-exp)
// against a float64 reference, against each other in forward and backward, and their
// gradients against float64 central differences, causal and not.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <algorithm>
#include <cmath>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

struct ReferenceAttention {
  std::vector<double> O, P, Lse;
};

ReferenceAttention referenceAttention(const std::vector<double> &Q, const std::vector<double> &K,
                                      const std::vector<double> &V, const AttentionShape &S) {
  int64_t T = S.SeqLen, Dh = S.HeadDim;
  ReferenceAttention Ref{std::vector<double>(S.elements(), 0.0),
                         std::vector<double>(S.probabilityElements(), 0.0),
                         std::vector<double>(S.rows(), 0.0)};
  std::vector<double> Scores(T);
  for (int64_t Bh = 0; Bh < S.Batch * S.Heads; ++Bh)
    for (int64_t I = 0; I < T; ++I) {
      int64_t KeyEnd = S.Causal ? I + 1 : T;
      for (int64_t J = 0; J < KeyEnd; ++J) {
        double Dot = 0;
        for (int64_t C = 0; C < Dh; ++C)
          Dot += Q[(Bh * T + I) * Dh + C] * K[(Bh * T + J) * Dh + C];
        Scores[J] = S.scale() * Dot;
      }
      double Max = *std::max_element(Scores.begin(), Scores.begin() + KeyEnd), Sum = 0;
      for (int64_t J = 0; J < KeyEnd; ++J)
        Sum += std::exp(Scores[J] - Max);
      for (int64_t J = 0; J < KeyEnd; ++J) {
        double P = std::exp(Scores[J] - Max) / Sum;
        Ref.P[(Bh * T + I) * T + J] = P;
        for (int64_t C = 0; C < Dh; ++C)
          Ref.O[(Bh * T + I) * Dh + C] += P * V[(Bh * T + J) * Dh + C];
      }
      Ref.Lse[Bh * T + I] = Max + std::log(Sum);
    }
  return Ref;
}

/// Q, K, V, an output gradient and device copies of them.
struct AttentionInputs {
  AttentionShape S;
  std::vector<float> Q, K, V, DO;
  DeviceBuffer DQ, DK, DV, DDO;

  AttentionInputs(Device &D, const AttentionShape &Shape, uint32_t Seed)
      : S(Shape), Q(randomFloats(S.elements(), Seed)), K(randomFloats(S.elements(), Seed + 1)),
        V(randomFloats(S.elements(), Seed + 2)), DO(randomFloats(S.elements(), Seed + 3)), DQ(D, Q),
        DK(D, K), DV(D, V), DDO(D, DO) {}
};

/// dQ, dK, dV from either implementation.
struct Gradients {
  std::vector<float> DQ, DK, DV;
};

Gradients naiveGradients(Device &D, AttentionInputs &In) {
  size_t Bytes = In.S.elements() * 4;
  DeviceBuffer O(D, Bytes), P(D, In.S.probabilityElements() * 4);
  DeviceBuffer DScores(D, In.S.probabilityElements() * 4);
  DeviceBuffer GQ(D, Bytes), GK(D, Bytes), GV(D, Bytes);
  attentionForwardNaive(D, O.f(), P.f(), In.DQ.f(), In.DK.f(), In.DV.f(), In.S);
  attentionBackwardNaive(D, GQ.f(), GK.f(), GV.f(), DScores.f(), In.DDO.f(), In.DQ.f(), In.DK.f(),
                         In.DV.f(), P.f(), In.S);
  return {GQ.read(), GK.read(), GV.read()};
}

Gradients tiledGradients(Device &D, AttentionInputs &In) {
  size_t Bytes = In.S.elements() * 4;
  DeviceBuffer O(D, Bytes), Lse(D, In.S.rows() * 4), Delta(D, In.S.rows() * 4);
  DeviceBuffer GQ(D, Bytes), GK(D, Bytes), GV(D, Bytes);
  D.attentionForwardTiled(O.f(), Lse.f(), In.DQ.f(), In.DK.f(), In.DV.f(), In.S);
  D.attentionBackwardTiled(GQ.f(), GK.f(), GV.f(), Delta.f(), In.DDO.f(), In.DQ.f(), In.DK.f(),
                           In.DV.f(), O.f(), Lse.f(), In.S);
  return {GQ.read(), GK.read(), GV.read()};
}

class Attention : public HostKernelTest {};

TEST_F(Attention, NaiveAndTiledForwardMatchReference) {
  for (bool Causal : {true, false}) {
    AttentionShape S{2, 3, 11, 8, Causal};
    std::string Name = Causal ? " (causal)" : " (full)";
    AttentionInputs In(*D, S, 70);
    DeviceBuffer O(*D, S.elements() * 4), P(*D, S.probabilityElements() * 4);
    DeviceBuffer TiledO(*D, S.elements() * 4), Lse(*D, S.rows() * 4);
    attentionForwardNaive(*D, O.f(), P.f(), In.DQ.f(), In.DK.f(), In.DV.f(), S);
    D->attentionForwardTiled(TiledO.f(), Lse.f(), In.DQ.f(), In.DK.f(), In.DV.f(), S);
    auto Ref = referenceAttention(widen(In.Q), widen(In.K), widen(In.V), S);
    EXPECT_TRUE(closeTo("naive O" + Name, O.read(), Ref.O, Fp32Tolerance));
    EXPECT_TRUE(closeTo("naive P" + Name, P.read(), Ref.P, Fp32Tolerance));
    EXPECT_TRUE(closeTo("tiled O" + Name, TiledO.read(), Ref.O, Fp32Tolerance));
    EXPECT_TRUE(
        closeTo("tiled O vs naive O" + Name, TiledO.read(), widen(O.read()), Fp32Tolerance));
    EXPECT_TRUE(closeTo("tiled Lse" + Name, Lse.read(), Ref.Lse, Fp32Tolerance));
  }
}

TEST_F(Attention, NaiveAndTiledGradientsMatchFiniteDifferences) {
  for (bool Causal : {true, false}) {
    AttentionShape S{1, 2, 5, 3, Causal};
    std::string Name = Causal ? " (causal)" : " (full)";
    AttentionInputs In(*D, S, 80);
    auto Q = widen(In.Q), K = widen(In.K), V = widen(In.V), W = widen(In.DO);
    auto NumQ = numericGradient(
        [&](const std::vector<double> &X) {
          return weightedSum(referenceAttention(X, K, V, S).O, W);
        },
        Q);
    auto NumK = numericGradient(
        [&](const std::vector<double> &X) {
          return weightedSum(referenceAttention(Q, X, V, S).O, W);
        },
        K);
    auto NumV = numericGradient(
        [&](const std::vector<double> &X) {
          return weightedSum(referenceAttention(Q, K, X, S).O, W);
        },
        V);
    Gradients Naive = naiveGradients(*D, In), Tiled = tiledGradients(*D, In);
    EXPECT_TRUE(closeTo("naive dQ" + Name, Naive.DQ, NumQ, GradientTolerance));
    EXPECT_TRUE(closeTo("naive dK" + Name, Naive.DK, NumK, GradientTolerance));
    EXPECT_TRUE(closeTo("naive dV" + Name, Naive.DV, NumV, GradientTolerance));
    EXPECT_TRUE(closeTo("tiled dQ" + Name, Tiled.DQ, NumQ, GradientTolerance));
    EXPECT_TRUE(closeTo("tiled dK" + Name, Tiled.DK, NumK, GradientTolerance));
    EXPECT_TRUE(closeTo("tiled dV" + Name, Tiled.DV, NumV, GradientTolerance));
  }
}

TEST_F(Attention, TiledBackwardAgreesWithNaiveAtSize) {
  // Longer than the CUDA twin's 16-row tiles and its 4-row groups, with an odd head dim.
  for (bool Causal : {true, false}) {
    AttentionShape S{2, 2, 37, 40, Causal};
    std::string Name = Causal ? " (causal)" : " (full)";
    AttentionInputs In(*D, S, 90);
    Gradients Naive = naiveGradients(*D, In), Tiled = tiledGradients(*D, In);
    EXPECT_TRUE(closeTo("dQ" + Name, Tiled.DQ, widen(Naive.DQ), Fp32Tolerance));
    EXPECT_TRUE(closeTo("dK" + Name, Tiled.DK, widen(Naive.DK), Fp32Tolerance));
    EXPECT_TRUE(closeTo("dV" + Name, Tiled.DV, widen(Naive.DV), Fp32Tolerance));
  }
}

TEST_F(Attention, TiledRejectsOversizedHeadDim) {
  AttentionShape S{1, 1, 2, MaxTiledHeadDim + 1};
  D->attentionForwardTiled(nullptr, nullptr, nullptr, nullptr, nullptr, S);
  EXPECT_NE(D->takeError().find("head dimension"), std::string::npos);
}

} // namespace
