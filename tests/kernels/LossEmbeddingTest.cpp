//===- LossEmbeddingTest.cpp - embedding gather/scatter and cross-entropy -===//
//
// Embedding rows and their scatter-added gradient (repeated and out-of-range ids), and
// cross-entropy with ignore_index: saved log-softmax, mean loss, total weight and dlogits
// against float64 and central differences; all-ignored batches give NaN as torch does.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <algorithm>
#include <cmath>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

class LossEmbedding : public HostKernelTest {};

TEST_F(LossEmbedding, EmbeddingGatherAndScatterAdd) {
  const int64_t Vocab = 6, Dim = 4;
  // Id 2 repeats (its gradient is a sum); 7 and -1 lie outside the table.
  std::vector<int64_t> Ids = {2, 0, 2, 5, 7, -1, 2};
  const int64_t N = static_cast<int64_t>(Ids.size());
  auto Weight = randomFloats(Vocab * Dim, 60), W = randomFloats(N * Dim, 61);
  DeviceBuffer DWeight(*D, Weight), DIds(*D, Ids), DW(*D, W);
  DeviceBuffer Out(*D, N * Dim * 4), Grad(*D, Vocab * Dim * 4);
  D->embeddingForward(Out.f(), DWeight.f(), DIds.as<int64_t>(), N, Vocab, Dim);
  auto Forward = [&](const std::vector<double> &Table) {
    std::vector<double> Rows(N * Dim, 0.0);
    for (int64_t I = 0; I < N; ++I)
      for (int64_t C = 0; C < Dim; ++C)
        if (Ids[I] >= 0 && Ids[I] < Vocab)
          Rows[I * Dim + C] = Table[Ids[I] * Dim + C];
    return Rows;
  };
  EXPECT_TRUE(closeTo("rows", Out.read(), Forward(widen(Weight)), 0.0));

  D->fill(Grad.f(), Vocab * Dim, 0.0f);
  D->embeddingBackward(Grad.f(), DW.f(), DIds.as<int64_t>(), N, Vocab, Dim);
  auto Numeric = numericGradient(
      [&](const std::vector<double> &V) { return weightedSum(Forward(V), widen(W)); },
      widen(Weight));
  EXPECT_TRUE(closeTo("dWeight", Grad.read(), Numeric, GradientTolerance));
}

/// Log-softmax, then the mean negative log-likelihood over counted rows, in float64.
struct ReferenceCrossEntropy {
  std::vector<double> LogProbs;
  double Loss = 0.0, Count = 0.0;
};

ReferenceCrossEntropy referenceCrossEntropy(const std::vector<double> &Logits,
                                            const std::vector<int64_t> &Targets, int64_t Classes) {
  ReferenceCrossEntropy Ref;
  Ref.LogProbs.resize(Logits.size());
  double Sum = 0.0;
  for (size_t R = 0; R < Targets.size(); ++R) {
    auto Row = Logits.begin() + R * Classes;
    double Max = *std::max_element(Row, Row + Classes);
    double Exp = 0.0;
    for (int64_t C = 0; C < Classes; ++C)
      Exp += std::exp(Row[C] - Max);
    for (int64_t C = 0; C < Classes; ++C)
      Ref.LogProbs[R * Classes + C] = Row[C] - Max - std::log(Exp);
    if (Targets[R] == -100)
      continue;
    Sum -= Ref.LogProbs[R * Classes + Targets[R]];
    Ref.Count += 1;
  }
  Ref.Loss = Sum / Ref.Count;
  return Ref;
}

TEST_F(LossEmbedding, CrossEntropyWithIgnoreIndex) {
  const int64_t Classes = 11;
  std::vector<int64_t> Targets = {3, -100, 0, 10, 7, -100, 5};
  const int64_t N = static_cast<int64_t>(Targets.size());
  auto Logits = randomFloats(N * Classes, 62, -4.0f, 4.0f);
  DeviceBuffer DLogits(*D, Logits), DTargets(*D, Targets), LogProbs(*D, Logits.size() * 4);
  DeviceBuffer Loss(*D, 4), Total(*D, 4), Grad(*D, Logits.size() * 4);
  D->crossEntropyForward(LogProbs.f(), Loss.f(), Total.f(), DLogits.f(), DTargets.as<int64_t>(), N,
                         Classes, -100);
  auto Ref = referenceCrossEntropy(widen(Logits), Targets, Classes);
  EXPECT_TRUE(closeTo("log_softmax", LogProbs.read(), Ref.LogProbs, Fp32Tolerance));
  EXPECT_TRUE(closeTo("loss", Loss.read(), {Ref.Loss}, Fp32Tolerance));
  EXPECT_EQ(Total.read()[0], 5.0f);

  for (float DLoss : {1.0f, 2.5f}) {
    D->crossEntropyBackward(Grad.f(), LogProbs.f(), DTargets.as<int64_t>(), Total.f(), N, Classes,
                            -100, DLoss);
    auto Numeric = numericGradient(
        [&](const std::vector<double> &V) {
          return DLoss * referenceCrossEntropy(V, Targets, Classes).Loss;
        },
        widen(Logits));
    auto GradValues = Grad.read();
    EXPECT_TRUE(closeTo("dLogits", GradValues, Numeric, GradientTolerance));
    // Ignored rows get exactly zero.
    EXPECT_TRUE(std::all_of(GradValues.begin() + Classes, GradValues.begin() + 2 * Classes,
                            [](float G) { return G == 0.0f; }));
  }
}

TEST_F(LossEmbedding, CrossEntropyAllIgnoredIsNaN) {
  std::vector<int64_t> Targets = {-100, -100};
  auto Logits = randomFloats(2 * 3, 63);
  DeviceBuffer DLogits(*D, Logits), DTargets(*D, Targets), LogProbs(*D, 6 * 4);
  DeviceBuffer Loss(*D, 4), Total(*D, 4), Grad(*D, 6 * 4);
  D->crossEntropyForward(LogProbs.f(), Loss.f(), Total.f(), DLogits.f(), DTargets.as<int64_t>(), 2,
                         3, -100);
  EXPECT_TRUE(std::isnan(Loss.read()[0]));
  EXPECT_EQ(Total.read()[0], 0.0f);
  D->crossEntropyBackward(Grad.f(), LogProbs.f(), DTargets.as<int64_t>(), Total.f(), 2, 3, -100,
                          1.0f);
  EXPECT_EQ(Grad.read(), std::vector<float>(6, 0.0f));
}

} // namespace
