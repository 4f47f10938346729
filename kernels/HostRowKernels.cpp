//===- HostRowKernels.cpp - host twin: per-row kernels and tiled attention -===//
//
// LayerNorm, RMSNorm, softmax, cross-entropy and the memory-efficient attention of the host
// twin. Each works a row at a time, as the CUDA twin's one-block-per-row kernels do; the
// memory-efficient attention streams over keys with the online softmax of FlashAttention
// (Dao et al. 2022; Milakov and Gimelshein 2018), keeping nothing but one log-sum-exp per row.
//
//===----------------------------------------------------------------------------===//

#include "HostDevice.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace trainmem::kernels {

//===----------------------------------------------------------------------===//
// Normalisation
//===----------------------------------------------------------------------===//

void HostDevice::layerNormForward(float *Y, float *Mean, float *Rstd, const float *X,
                                  const float *Gamma, const float *Beta, int64_t Rows, int64_t Cols,
                                  float Eps) {
  if (Cols < 1)
    return recordError("layerNormForward: no columns");
  for (int64_t R = 0; R < Rows; ++R) {
    const float *Xr = X + R * Cols;
    float Sum = 0.0f;
    for (int64_t C = 0; C < Cols; ++C)
      Sum += Xr[C];
    float RowMean = Sum / static_cast<float>(Cols);
    // Two passes over the row: the one-pass E[x^2] - E[x]^2 loses digits when |mean| >> std.
    float SquareSum = 0.0f;
    for (int64_t C = 0; C < Cols; ++C)
      SquareSum += (Xr[C] - RowMean) * (Xr[C] - RowMean);
    float RowRstd = 1.0f / std::sqrt(SquareSum / static_cast<float>(Cols) + Eps);
    for (int64_t C = 0; C < Cols; ++C) {
      float Value = (Xr[C] - RowMean) * RowRstd;
      if (Gamma)
        Value *= Gamma[C];
      if (Beta)
        Value += Beta[C];
      Y[R * Cols + C] = Value;
    }
    Mean[R] = RowMean;
    Rstd[R] = RowRstd;
  }
}

void HostDevice::layerNormBackward(float *DX, float *DGamma, float *DBeta, const float *DY,
                                   const float *X, const float *Mean, const float *Rstd,
                                   const float *Gamma, int64_t Rows, int64_t Cols) {
  if (Cols < 1)
    return recordError("layerNormBackward: no columns");
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma: the gradient
  // through the mean and the variance in closed form (as ATen's LayerNormBackwardKernel).
  for (int64_t R = 0; R < Rows; ++R) {
    const float *Xr = X + R * Cols, *DYr = DY + R * Cols;
    float SumG = 0.0f, SumGXhat = 0.0f;
    for (int64_t C = 0; C < Cols; ++C) {
      float G = DYr[C] * (Gamma ? Gamma[C] : 1.0f);
      float Xhat = (Xr[C] - Mean[R]) * Rstd[R];
      SumG += G;
      SumGXhat += G * Xhat;
    }
    float MeanG = SumG / static_cast<float>(Cols);
    float MeanGXhat = SumGXhat / static_cast<float>(Cols);
    for (int64_t C = 0; C < Cols; ++C) {
      float G = DYr[C] * (Gamma ? Gamma[C] : 1.0f);
      float Xhat = (Xr[C] - Mean[R]) * Rstd[R];
      DX[R * Cols + C] = Rstd[R] * (G - MeanG - Xhat * MeanGXhat);
    }
  }
  // Column sums in row order, as the CUDA twin's thread per column.
  for (int64_t C = 0; C < Cols; ++C) {
    float SumGamma = 0.0f, SumBeta = 0.0f;
    for (int64_t R = 0; R < Rows; ++R) {
      float Dy = DY[R * Cols + C];
      SumGamma += Dy * ((X[R * Cols + C] - Mean[R]) * Rstd[R]);
      SumBeta += Dy;
    }
    if (DGamma)
      DGamma[C] = SumGamma;
    if (DBeta)
      DBeta[C] = SumBeta;
  }
}

void HostDevice::rmsNormForward(float *Y, float *Rstd, const float *X, const float *Gamma,
                                int64_t Rows, int64_t Cols, float Eps) {
  if (Cols < 1)
    return recordError("rmsNormForward: no columns");
  for (int64_t R = 0; R < Rows; ++R) {
    const float *Xr = X + R * Cols;
    float SquareSum = 0.0f;
    for (int64_t C = 0; C < Cols; ++C)
      SquareSum += Xr[C] * Xr[C];
    float RowRstd = 1.0f / std::sqrt(SquareSum / static_cast<float>(Cols) + Eps);
    for (int64_t C = 0; C < Cols; ++C)
      Y[R * Cols + C] = Xr[C] * RowRstd * (Gamma ? Gamma[C] : 1.0f);
    Rstd[R] = RowRstd;
  }
}

void HostDevice::rmsNormBackward(float *DX, float *DGamma, const float *DY, const float *X,
                                 const float *Rstd, const float *Gamma, int64_t Rows,
                                 int64_t Cols) {
  if (Cols < 1)
    return recordError("rmsNormBackward: no columns");
  // dx = rstd * (g - xhat * mean(g * xhat)): LayerNorm's formula without the mean terms.
  for (int64_t R = 0; R < Rows; ++R) {
    const float *Xr = X + R * Cols, *DYr = DY + R * Cols;
    float SumGXhat = 0.0f;
    for (int64_t C = 0; C < Cols; ++C)
      SumGXhat += DYr[C] * (Gamma ? Gamma[C] : 1.0f) * (Xr[C] * Rstd[R]);
    float MeanGXhat = SumGXhat / static_cast<float>(Cols);
    for (int64_t C = 0; C < Cols; ++C) {
      float G = DYr[C] * (Gamma ? Gamma[C] : 1.0f);
      DX[R * Cols + C] = Rstd[R] * (G - Xr[C] * Rstd[R] * MeanGXhat);
    }
  }
  if (!DGamma)
    return;
  for (int64_t C = 0; C < Cols; ++C) {
    float Sum = 0.0f;
    for (int64_t R = 0; R < Rows; ++R)
      Sum += DY[R * Cols + C] * (X[R * Cols + C] * Rstd[R]);
    DGamma[C] = Sum;
  }
}

//===----------------------------------------------------------------------===//
// Softmax and cross-entropy
//===----------------------------------------------------------------------===//

void HostDevice::softmaxForward(float *Y, const float *X, int64_t Rows, int64_t Cols, bool Causal) {
  if (Cols < 1)
    return recordError("softmaxForward: no columns");
  for (int64_t R = 0; R < Rows; ++R) {
    const float *Xr = X + R * Cols;
    float *Yr = Y + R * Cols;
    int64_t Limit = Causal ? R % Cols + 1 : Cols;
    float Max = -std::numeric_limits<float>::infinity();
    for (int64_t C = 0; C < Limit; ++C)
      Max = std::max(Max, Xr[C]);
    float Sum = 0.0f;
    for (int64_t C = 0; C < Limit; ++C)
      Sum += std::exp(Xr[C] - Max);
    for (int64_t C = 0; C < Cols; ++C)
      Yr[C] = C < Limit ? std::exp(Xr[C] - Max) / Sum : 0.0f;
  }
}

void HostDevice::softmaxBackward(float *DX, const float *DY, const float *Y, int64_t Rows,
                                 int64_t Cols) {
  for (int64_t R = 0; R < Rows; ++R) {
    const float *DYr = DY + R * Cols, *Yr = Y + R * Cols;
    float Dot = 0.0f;
    for (int64_t C = 0; C < Cols; ++C)
      Dot += DYr[C] * Yr[C];
    for (int64_t C = 0; C < Cols; ++C)
      DX[R * Cols + C] = Yr[C] * (DYr[C] - Dot);
  }
}

static bool isCountedTarget(int64_t Target, int64_t Classes, int64_t IgnoreIndex) {
  return Target != IgnoreIndex && Target >= 0 && Target < Classes;
}

void HostDevice::crossEntropyForward(float *LogProbs, float *Loss, float *TotalWeight,
                                     const float *Logits, const int64_t *Targets, int64_t Rows,
                                     int64_t Classes, int64_t IgnoreIndex) {
  if (Classes < 1)
    return recordError("crossEntropyForward: no classes");
  for (int64_t R = 0; R < Rows; ++R) {
    const float *Xr = Logits + R * Classes;
    float Max = -std::numeric_limits<float>::infinity();
    for (int64_t C = 0; C < Classes; ++C)
      Max = std::max(Max, Xr[C]);
    float Sum = 0.0f;
    for (int64_t C = 0; C < Classes; ++C)
      Sum += std::exp(Xr[C] - Max);
    float LogSumExp = Max + std::log(Sum);
    for (int64_t C = 0; C < Classes; ++C)
      LogProbs[R * Classes + C] = Xr[C] - LogSumExp;
  }
  float Sum = 0.0f, Count = 0.0f;
  for (int64_t R = 0; R < Rows; ++R) {
    if (!isCountedTarget(Targets[R], Classes, IgnoreIndex))
      continue;
    Sum -= LogProbs[R * Classes + Targets[R]];
    Count += 1.0f;
  }
  // torch's mean reduction divides by total_weight, giving NaN when every row is ignored.
  *Loss = Count > 0.0f ? Sum / Count : std::numeric_limits<float>::quiet_NaN();
  *TotalWeight = Count;
}

void HostDevice::crossEntropyBackward(float *DLogits, const float *LogProbs, const int64_t *Targets,
                                      const float *TotalWeight, int64_t Rows, int64_t Classes,
                                      int64_t IgnoreIndex, float DLoss) {
  float Scale = DLoss / *TotalWeight;
  for (int64_t R = 0; R < Rows; ++R) {
    bool Counted = isCountedTarget(Targets[R], Classes, IgnoreIndex);
    for (int64_t C = 0; C < Classes; ++C) {
      int64_t Index = R * Classes + C;
      float OneHot = C == Targets[R] ? 1.0f : 0.0f;
      DLogits[Index] = Counted ? (std::exp(LogProbs[Index]) - OneHot) * Scale : 0.0f;
    }
  }
}

//===----------------------------------------------------------------------===//
// Memory-efficient attention
//===----------------------------------------------------------------------===//

static std::string checkTiled(const AttentionShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return Why;
  if (S.HeadDim > MaxTiledHeadDim)
    return "head dimension " + std::to_string(S.HeadDim) + " exceeds " +
           std::to_string(MaxTiledHeadDim);
  return "";
}

/// scale * q . k with q pre-scaled element by element, the order the CUDA twin uses, so both
/// recompute the same scores in forward and backward.
static float scaledDot(const float *Q, const float *K, int64_t D, float Scale) {
  float Sum = 0.0f;
  for (int64_t I = 0; I < D; ++I)
    Sum += (Q[I] * Scale) * K[I];
  return Sum;
}

void HostDevice::attentionForwardTiled(float *O, float *Lse, const float *Q, const float *K,
                                       const float *V, const AttentionShape &S) {
  if (std::string Why = checkTiled(S); !Why.empty())
    return recordError("attentionForwardTiled: " + Why);
  int64_t T = S.SeqLen, D = S.HeadDim;
  float Scale = S.scale();
  // On the stack: on this twin the heap is device memory, and the kernel allocates none.
  float Acc[MaxTiledHeadDim];
  for (int64_t Bh = 0; Bh < S.Batch * S.Heads; ++Bh) {
    const float *Qb = Q + Bh * T * D, *Kb = K + Bh * T * D, *Vb = V + Bh * T * D;
    for (int64_t I = 0; I < T; ++I) {
      // Running max M and normaliser L: each new key rescales what came before by
      // exp(M_old - M_new), so no row of probabilities is ever stored.
      float M = -std::numeric_limits<float>::infinity(), L = 0.0f;
      std::fill(Acc, Acc + D, 0.0f);
      int64_t KeyEnd = S.Causal ? I + 1 : T;
      for (int64_t J = 0; J < KeyEnd; ++J) {
        float Score = scaledDot(Qb + I * D, Kb + J * D, D, Scale);
        float MNew = std::max(M, Score);
        float Correction = std::exp(M - MNew), P = std::exp(Score - MNew);
        L = L * Correction + P;
        for (int64_t C = 0; C < D; ++C)
          Acc[C] = Acc[C] * Correction + P * Vb[J * D + C];
        M = MNew;
      }
      for (int64_t C = 0; C < D; ++C)
        O[(Bh * T + I) * D + C] = Acc[C] / L;
      Lse[Bh * T + I] = M + std::log(L);
    }
  }
}

void HostDevice::attentionBackwardTiled(float *DQ, float *DK, float *DV, float *Delta,
                                        const float *DO, const float *Q, const float *K,
                                        const float *V, const float *O, const float *Lse,
                                        const AttentionShape &S) {
  if (std::string Why = checkTiled(S); !Why.empty())
    return recordError("attentionBackwardTiled: " + Why);
  int64_t T = S.SeqLen, D = S.HeadDim;
  float Scale = S.scale();
  // Delta_i = sum_j P_ij dP_ij = dO_i . O_i (FlashAttention-2, Algorithm 2): the softmax
  // backward's row term without the row of probabilities.
  for (int64_t R = 0; R < S.rows(); ++R) {
    float Sum = 0.0f;
    for (int64_t C = 0; C < D; ++C)
      Sum += DO[R * D + C] * O[R * D + C];
    Delta[R] = Sum;
  }
  std::fill(DQ, DQ + S.elements(), 0.0f);
  std::fill(DK, DK + S.elements(), 0.0f);
  std::fill(DV, DV + S.elements(), 0.0f);
  for (int64_t Bh = 0; Bh < S.Batch * S.Heads; ++Bh) {
    int64_t Base = Bh * T * D;
    for (int64_t I = 0; I < T; ++I) {
      const float *Qi = Q + Base + I * D, *DOi = DO + Base + I * D;
      int64_t KeyEnd = S.Causal ? I + 1 : T;
      for (int64_t J = 0; J < KeyEnd; ++J) {
        const float *Kj = K + Base + J * D, *Vj = V + Base + J * D;
        float P = std::exp(scaledDot(Qi, Kj, D, Scale) - Lse[Bh * T + I]);
        float DP = 0.0f;
        for (int64_t C = 0; C < D; ++C)
          DP += DOi[C] * Vj[C];
        float DS = P * (DP - Delta[Bh * T + I]);
        for (int64_t C = 0; C < D; ++C) {
          DV[Base + J * D + C] += P * DOi[C];
          DK[Base + J * D + C] += Scale * DS * Qi[C];
          DQ[Base + I * D + C] += Scale * DS * Kj[C];
        }
      }
    }
  }
}

} // namespace trainmem::kernels
