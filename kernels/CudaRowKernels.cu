//===- CudaRowKernels.cu - CUDA twin: per-row kernels and tiled attention -===//
//
// LayerNorm, RMSNorm, softmax and cross-entropy as one block per row with block reductions,
// column sums (dgamma, dbeta) as one thread per column walking the rows in order, and the
// memory-efficient attention: one warp per query (or key) row, keys (or queries) staged
// through shared memory in tiles, online softmax in forward, probabilities recomputed from the
// saved log-sum-exp in backward. The backward is two passes (dQ by query rows, dK and dV by
// key rows) instead of atomics, so its results do not depend on scheduling.
//
//===----------------------------------------------------------------------------===//

#include "CudaDevice.h"

namespace trainmem::kernels {

namespace {

//===----------------------------------------------------------------------===//
// Normalisation
//===----------------------------------------------------------------------===//

__global__ void layerNormForwardKernel(float *Y, float *MeanOut, float *RstdOut, const float *X,
                                       const float *Gamma, const float *Beta, int64_t Rows,
                                       int64_t Cols, float Eps) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *Xr = X + R * Cols;
    float Sum = 0.0f;
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      Sum += Xr[C];
    float Mean = cuda::blockSum(Sum) / static_cast<float>(Cols);
    float SquareSum = 0.0f;
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      SquareSum += (Xr[C] - Mean) * (Xr[C] - Mean);
    float Rstd = 1.0f / sqrtf(cuda::blockSum(SquareSum) / static_cast<float>(Cols) + Eps);
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x) {
      float Value = (Xr[C] - Mean) * Rstd;
      if (Gamma)
        Value *= Gamma[C];
      if (Beta)
        Value += Beta[C];
      Y[R * Cols + C] = Value;
    }
    if (threadIdx.x == 0) {
      MeanOut[R] = Mean;
      RstdOut[R] = Rstd;
    }
  }
}

__global__ void layerNormBackwardKernel(float *DX, const float *DY, const float *X,
                                        const float *Mean, const float *Rstd, const float *Gamma,
                                        int64_t Rows, int64_t Cols) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *Xr = X + R * Cols, *DYr = DY + R * Cols;
    float SumG = 0.0f, SumGXhat = 0.0f;
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x) {
      float G = DYr[C] * (Gamma ? Gamma[C] : 1.0f);
      SumG += G;
      SumGXhat += G * ((Xr[C] - Mean[R]) * Rstd[R]);
    }
    float MeanG = cuda::blockSum(SumG) / static_cast<float>(Cols);
    float MeanGXhat = cuda::blockSum(SumGXhat) / static_cast<float>(Cols);
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x) {
      float G = DYr[C] * (Gamma ? Gamma[C] : 1.0f);
      float Xhat = (Xr[C] - Mean[R]) * Rstd[R];
      DX[R * Cols + C] = Rstd[R] * (G - MeanG - Xhat * MeanGXhat);
    }
  }
}

/// dgamma and dbeta of LayerNorm (Mean non-null) or dgamma of RMSNorm (Mean null, xhat = x *
/// rstd): a thread per column sums the rows in order, coalesced across threads.
__global__ void normColumnSumsKernel(float *DGamma, float *DBeta, const float *DY, const float *X,
                                     const float *Mean, const float *Rstd, int64_t Rows,
                                     int64_t Cols) {
  for (int64_t C = cuda::globalThread(); C < Cols; C += cuda::gridThreads()) {
    float SumGamma = 0.0f, SumBeta = 0.0f;
    for (int64_t R = 0; R < Rows; ++R) {
      float Dy = DY[R * Cols + C];
      float Centered = Mean ? X[R * Cols + C] - Mean[R] : X[R * Cols + C];
      SumGamma += Dy * (Centered * Rstd[R]);
      SumBeta += Dy;
    }
    if (DGamma)
      DGamma[C] = SumGamma;
    if (DBeta)
      DBeta[C] = SumBeta;
  }
}

__global__ void rmsNormForwardKernel(float *Y, float *RstdOut, const float *X, const float *Gamma,
                                     int64_t Rows, int64_t Cols, float Eps) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *Xr = X + R * Cols;
    float SquareSum = 0.0f;
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      SquareSum += Xr[C] * Xr[C];
    float Rstd = 1.0f / sqrtf(cuda::blockSum(SquareSum) / static_cast<float>(Cols) + Eps);
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      Y[R * Cols + C] = Xr[C] * Rstd * (Gamma ? Gamma[C] : 1.0f);
    if (threadIdx.x == 0)
      RstdOut[R] = Rstd;
  }
}

__global__ void rmsNormBackwardKernel(float *DX, const float *DY, const float *X, const float *Rstd,
                                      const float *Gamma, int64_t Rows, int64_t Cols) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *Xr = X + R * Cols, *DYr = DY + R * Cols;
    float SumGXhat = 0.0f;
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      SumGXhat += DYr[C] * (Gamma ? Gamma[C] : 1.0f) * (Xr[C] * Rstd[R]);
    float MeanGXhat = cuda::blockSum(SumGXhat) / static_cast<float>(Cols);
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x) {
      float G = DYr[C] * (Gamma ? Gamma[C] : 1.0f);
      DX[R * Cols + C] = Rstd[R] * (G - Xr[C] * Rstd[R] * MeanGXhat);
    }
  }
}

//===----------------------------------------------------------------------===//
// Softmax and cross-entropy
//===----------------------------------------------------------------------===//

__global__ void softmaxForwardKernel(float *Y, const float *X, int64_t Rows, int64_t Cols,
                                     bool Causal) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *Xr = X + R * Cols;
    int64_t Limit = Causal ? R % Cols + 1 : Cols;
    float Max = -INFINITY;
    for (int64_t C = threadIdx.x; C < Limit; C += blockDim.x)
      Max = fmaxf(Max, Xr[C]);
    Max = cuda::blockMax(Max);
    float Sum = 0.0f;
    for (int64_t C = threadIdx.x; C < Limit; C += blockDim.x)
      Sum += expf(Xr[C] - Max);
    Sum = cuda::blockSum(Sum);
    // Every thread has read its inputs before any writes (Y may be X): blockSum's barriers.
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      Y[R * Cols + C] = C < Limit ? expf(Xr[C] - Max) / Sum : 0.0f;
  }
}

__global__ void softmaxBackwardKernel(float *DX, const float *DY, const float *Y, int64_t Rows,
                                      int64_t Cols) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *DYr = DY + R * Cols, *Yr = Y + R * Cols;
    float Dot = 0.0f;
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      Dot += DYr[C] * Yr[C];
    Dot = cuda::blockSum(Dot);
    // Each thread rewrites only the elements it read itself, so DX may be DY.
    for (int64_t C = threadIdx.x; C < Cols; C += blockDim.x)
      DX[R * Cols + C] = Yr[C] * (DYr[C] - Dot);
  }
}

__device__ inline bool isCountedTarget(int64_t Target, int64_t Classes, int64_t IgnoreIndex) {
  return Target != IgnoreIndex && Target >= 0 && Target < Classes;
}

__global__ void logSoftmaxKernel(float *LogProbs, const float *Logits, int64_t Rows,
                                 int64_t Classes) {
  for (int64_t R = blockIdx.x; R < Rows; R += gridDim.x) {
    const float *Xr = Logits + R * Classes;
    float Max = -INFINITY;
    for (int64_t C = threadIdx.x; C < Classes; C += blockDim.x)
      Max = fmaxf(Max, Xr[C]);
    Max = cuda::blockMax(Max);
    float Sum = 0.0f;
    for (int64_t C = threadIdx.x; C < Classes; C += blockDim.x)
      Sum += expf(Xr[C] - Max);
    float LogSumExp = Max + logf(cuda::blockSum(Sum));
    for (int64_t C = threadIdx.x; C < Classes; C += blockDim.x)
      LogProbs[R * Classes + C] = Xr[C] - LogSumExp;
  }
}

/// One block: the mean of -LogProbs at the targets, read back from the saved log-softmax so
/// no per-row loss buffer is needed.
__global__ void nllMeanKernel(float *Loss, float *TotalWeight, const float *LogProbs,
                              const int64_t *Targets, int64_t Rows, int64_t Classes,
                              int64_t IgnoreIndex) {
  float Sum = 0.0f, Count = 0.0f;
  for (int64_t R = threadIdx.x; R < Rows; R += blockDim.x) {
    int64_t Target = Targets[R];
    if (!isCountedTarget(Target, Classes, IgnoreIndex))
      continue;
    Sum -= LogProbs[R * Classes + Target];
    Count += 1.0f;
  }
  Sum = cuda::blockSum(Sum);
  Count = cuda::blockSum(Count);
  if (threadIdx.x == 0) {
    *Loss = Count > 0.0f ? Sum / Count : nanf("");
    *TotalWeight = Count;
  }
}

__global__ void crossEntropyBackwardKernel(float *DLogits, const float *LogProbs,
                                           const int64_t *Targets, const float *TotalWeight,
                                           int64_t Rows, int64_t Classes, int64_t IgnoreIndex,
                                           float DLoss) {
  float Scale = DLoss / *TotalWeight;
  int64_t N = Rows * Classes;
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    int64_t Target = Targets[I / Classes];
    float OneHot = I % Classes == Target ? 1.0f : 0.0f;
    DLogits[I] =
        isCountedTarget(Target, Classes, IgnoreIndex) ? (expf(LogProbs[I]) - OneHot) * Scale : 0.0f;
  }
}

//===----------------------------------------------------------------------===//
// Memory-efficient attention
//===----------------------------------------------------------------------===//

constexpr int AttnWarps = 4; ///< rows per block, one warp each
constexpr int AttnTile = 16; ///< rows of the other operand staged in shared memory at once
constexpr int AttnPerLane = MaxTiledHeadDim / 32; ///< head-dim elements a lane keeps

__device__ inline int64_t minIndex(int64_t A, int64_t B) { return A < B ? A : B; }

/// Loads Row's head vector into a lane's registers, element d = Lane + 32 * c, times Factor.
__device__ inline void loadRow(float (&Out)[AttnPerLane], const float *Row, int D, int Lane,
                               bool Active, float Factor) {
#pragma unroll
  for (int C = 0; C < AttnPerLane; ++C) {
    int Dd = Lane + 32 * C;
    Out[C] = (Active && Dd < D) ? Row[Dd] * Factor : 0.0f;
  }
}

/// The dot product of a lane-distributed row with a row in shared memory, on every lane.
__device__ inline float dotWithShared(const float (&Row)[AttnPerLane], const float *Shared, int D,
                                      int Lane) {
  float Part = 0.0f;
#pragma unroll
  for (int C = 0; C < AttnPerLane; ++C) {
    int Dd = Lane + 32 * C;
    if (Dd < D)
      Part += Row[C] * Shared[Dd];
  }
  return cuda::warpSum(Part);
}

/// Copies Count consecutive head rows (contiguous in memory) into shared memory.
__device__ inline void stageRows(float *Shared, const float *Rows, int64_t Count, int D) {
  for (int64_t I = threadIdx.x; I < Count * D; I += blockDim.x)
    Shared[I] = Rows[I];
}

struct AttnParams {
  int64_t BatchHeads, T;
  int D;
  float Scale;
  bool Causal;
};

__global__ void attentionForwardKernel(float *O, float *Lse, const float *Q, const float *K,
                                       const float *V, AttnParams P) {
  extern __shared__ float Shared[];
  float *KTile = Shared, *VTile = Shared + AttnTile * P.D;
  int Warp = threadIdx.x >> 5, Lane = threadIdx.x & 31;
  int64_t RowGroups = (P.T + AttnWarps - 1) / AttnWarps;
  for (int64_t Group = blockIdx.x; Group < P.BatchHeads * RowGroups; Group += gridDim.x) {
    int64_t Bh = Group / RowGroups, FirstRow = (Group % RowGroups) * AttnWarps;
    int64_t Row = FirstRow + Warp;
    bool Active = Row < P.T; // uniform across the warp, so the shuffles stay converged
    const float *Kb = K + Bh * P.T * P.D, *Vb = V + Bh * P.T * P.D;
    float Qv[AttnPerLane], Acc[AttnPerLane];
    // q is pre-scaled element by element, as the host twin and the backward recompute it.
    loadRow(Qv, Q + (Bh * P.T + Row) * P.D, P.D, Lane, Active, P.Scale);
#pragma unroll
    for (int C = 0; C < AttnPerLane; ++C)
      Acc[C] = 0.0f;
    float M = -INFINITY, L = 0.0f;
    int64_t KeyEnd = P.Causal ? minIndex(FirstRow + AttnWarps, P.T) : P.T;
    for (int64_t K0 = 0; K0 < KeyEnd; K0 += AttnTile) {
      int64_t Tile = minIndex(AttnTile, KeyEnd - K0);
      __syncthreads(); // the previous tile is no longer read
      stageRows(KTile, Kb + K0 * P.D, Tile, P.D);
      stageRows(VTile, Vb + K0 * P.D, Tile, P.D);
      __syncthreads();
      if (!Active)
        continue;
      int64_t Limit = P.Causal ? minIndex(Tile, Row - K0 + 1) : Tile;
      for (int64_t J = 0; J < Limit; ++J) {
        float Score = dotWithShared(Qv, KTile + J * P.D, P.D, Lane);
        float MNew = fmaxf(M, Score);
        float Correction = expf(M - MNew), Prob = expf(Score - MNew);
        L = L * Correction + Prob;
#pragma unroll
        for (int C = 0; C < AttnPerLane; ++C) {
          int Dd = Lane + 32 * C;
          if (Dd < P.D)
            Acc[C] = Acc[C] * Correction + Prob * VTile[J * P.D + Dd];
        }
        M = MNew;
      }
    }
    if (!Active)
      continue;
#pragma unroll
    for (int C = 0; C < AttnPerLane; ++C) {
      int Dd = Lane + 32 * C;
      if (Dd < P.D)
        O[(Bh * P.T + Row) * P.D + Dd] = Acc[C] / L;
    }
    if (Lane == 0)
      Lse[Bh * P.T + Row] = M + logf(L);
  }
}

/// Delta = rowsum(dO * O), one warp per row.
__global__ void attentionDeltaKernel(float *Delta, const float *DO, const float *O, int64_t Rows,
                                     int D) {
  int Warp = threadIdx.x >> 5, Lane = threadIdx.x & 31;
  for (int64_t Row = static_cast<int64_t>(blockIdx.x) * AttnWarps + Warp; Row < Rows;
       Row += static_cast<int64_t>(gridDim.x) * AttnWarps) {
    float Part = 0.0f;
    for (int Dd = Lane; Dd < D; Dd += 32)
      Part += DO[Row * D + Dd] * O[Row * D + Dd];
    Part = cuda::warpSum(Part);
    if (Lane == 0)
      Delta[Row] = Part;
  }
}

/// dQ_i = scale * sum_j dS_ij k_j, a warp per query row, keys staged in tiles.
__global__ void attentionBackwardQueryKernel(float *DQ, const float *DO, const float *Q,
                                             const float *K, const float *V, const float *Lse,
                                             const float *Delta, AttnParams P) {
  extern __shared__ float Shared[];
  float *KTile = Shared, *VTile = Shared + AttnTile * P.D;
  int Warp = threadIdx.x >> 5, Lane = threadIdx.x & 31;
  int64_t RowGroups = (P.T + AttnWarps - 1) / AttnWarps;
  for (int64_t Group = blockIdx.x; Group < P.BatchHeads * RowGroups; Group += gridDim.x) {
    int64_t Bh = Group / RowGroups, FirstRow = (Group % RowGroups) * AttnWarps;
    int64_t Row = FirstRow + Warp;
    bool Active = Row < P.T;
    const float *Kb = K + Bh * P.T * P.D, *Vb = V + Bh * P.T * P.D;
    float Qv[AttnPerLane], DOv[AttnPerLane], Acc[AttnPerLane];
    loadRow(Qv, Q + (Bh * P.T + Row) * P.D, P.D, Lane, Active, P.Scale);
    loadRow(DOv, DO + (Bh * P.T + Row) * P.D, P.D, Lane, Active, 1.0f);
#pragma unroll
    for (int C = 0; C < AttnPerLane; ++C)
      Acc[C] = 0.0f;
    float RowLse = Active ? Lse[Bh * P.T + Row] : 0.0f;
    float RowDelta = Active ? Delta[Bh * P.T + Row] : 0.0f;
    int64_t KeyEnd = P.Causal ? minIndex(FirstRow + AttnWarps, P.T) : P.T;
    for (int64_t K0 = 0; K0 < KeyEnd; K0 += AttnTile) {
      int64_t Tile = minIndex(AttnTile, KeyEnd - K0);
      __syncthreads();
      stageRows(KTile, Kb + K0 * P.D, Tile, P.D);
      stageRows(VTile, Vb + K0 * P.D, Tile, P.D);
      __syncthreads();
      if (!Active)
        continue;
      int64_t Limit = P.Causal ? minIndex(Tile, Row - K0 + 1) : Tile;
      for (int64_t J = 0; J < Limit; ++J) {
        float Prob = expf(dotWithShared(Qv, KTile + J * P.D, P.D, Lane) - RowLse);
        float DProb = dotWithShared(DOv, VTile + J * P.D, P.D, Lane);
        float DScore = Prob * (DProb - RowDelta);
#pragma unroll
        for (int C = 0; C < AttnPerLane; ++C) {
          int Dd = Lane + 32 * C;
          if (Dd < P.D)
            Acc[C] += DScore * KTile[J * P.D + Dd];
        }
      }
    }
    if (!Active)
      continue;
#pragma unroll
    for (int C = 0; C < AttnPerLane; ++C) {
      int Dd = Lane + 32 * C;
      if (Dd < P.D)
        DQ[(Bh * P.T + Row) * P.D + Dd] = P.Scale * Acc[C];
    }
  }
}

/// dK_j = scale * sum_i dS_ij q_i and dV_j = sum_i P_ij dO_i, a warp per key row, queries
/// (with their Lse and Delta) staged in tiles.
__global__ void attentionBackwardKeyKernel(float *DK, float *DV, const float *DO, const float *Q,
                                           const float *K, const float *V, const float *Lse,
                                           const float *Delta, AttnParams P) {
  extern __shared__ float Shared[];
  float *QTile = Shared, *DOTile = Shared + AttnTile * P.D;
  float *LseTile = Shared + 2 * AttnTile * P.D, *DeltaTile = LseTile + AttnTile;
  int Warp = threadIdx.x >> 5, Lane = threadIdx.x & 31;
  int64_t RowGroups = (P.T + AttnWarps - 1) / AttnWarps;
  for (int64_t Group = blockIdx.x; Group < P.BatchHeads * RowGroups; Group += gridDim.x) {
    int64_t Bh = Group / RowGroups, FirstKey = (Group % RowGroups) * AttnWarps;
    int64_t Key = FirstKey + Warp;
    bool Active = Key < P.T;
    const float *Qb = Q + Bh * P.T * P.D, *DOb = DO + Bh * P.T * P.D;
    float Kv[AttnPerLane], Vv[AttnPerLane], DKAcc[AttnPerLane], DVAcc[AttnPerLane];
    loadRow(Kv, K + (Bh * P.T + Key) * P.D, P.D, Lane, Active, 1.0f);
    loadRow(Vv, V + (Bh * P.T + Key) * P.D, P.D, Lane, Active, 1.0f);
#pragma unroll
    for (int C = 0; C < AttnPerLane; ++C) {
      DKAcc[C] = 0.0f;
      DVAcc[C] = 0.0f;
    }
    // Causal: queries before the block's first key see none of its keys.
    for (int64_t I0 = P.Causal ? FirstKey : 0; I0 < P.T; I0 += AttnTile) {
      int64_t Tile = minIndex(AttnTile, P.T - I0);
      __syncthreads();
      stageRows(QTile, Qb + I0 * P.D, Tile, P.D);
      stageRows(DOTile, DOb + I0 * P.D, Tile, P.D);
      for (int64_t I = threadIdx.x; I < Tile; I += blockDim.x) {
        LseTile[I] = Lse[Bh * P.T + I0 + I];
        DeltaTile[I] = Delta[Bh * P.T + I0 + I];
      }
      __syncthreads();
      if (!Active)
        continue;
      for (int64_t I = 0; I < Tile; ++I) {
        if (P.Causal && I0 + I < Key)
          continue;
        const float *Qi = QTile + I * P.D, *DOi = DOTile + I * P.D;
        // The forward's score expression: (q * scale) . k, element by element.
        float Part = 0.0f;
#pragma unroll
        for (int C = 0; C < AttnPerLane; ++C) {
          int Dd = Lane + 32 * C;
          if (Dd < P.D)
            Part += (Qi[Dd] * P.Scale) * Kv[C];
        }
        float Prob = expf(cuda::warpSum(Part) - LseTile[I]);
        float DScore = Prob * (dotWithShared(Vv, DOi, P.D, Lane) - DeltaTile[I]);
#pragma unroll
        for (int C = 0; C < AttnPerLane; ++C) {
          int Dd = Lane + 32 * C;
          if (Dd < P.D) {
            DVAcc[C] += Prob * DOi[Dd];
            DKAcc[C] += DScore * Qi[Dd];
          }
        }
      }
    }
    if (!Active)
      continue;
#pragma unroll
    for (int C = 0; C < AttnPerLane; ++C) {
      int Dd = Lane + 32 * C;
      if (Dd < P.D) {
        DK[(Bh * P.T + Key) * P.D + Dd] = P.Scale * DKAcc[C];
        DV[(Bh * P.T + Key) * P.D + Dd] = DVAcc[C];
      }
    }
  }
}

std::string checkTiled(const AttentionShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return Why;
  if (S.HeadDim > MaxTiledHeadDim)
    return "head dimension " + std::to_string(S.HeadDim) + " exceeds " +
           std::to_string(MaxTiledHeadDim);
  return "";
}

AttnParams attnParams(const AttentionShape &S) {
  return AttnParams{S.Batch * S.Heads, S.SeqLen, static_cast<int>(S.HeadDim), S.scale(), S.Causal};
}

unsigned attnBlocks(const AttentionShape &S) {
  return cuda::rowBlocks(S.Batch * S.Heads * ((S.SeqLen + AttnWarps - 1) / AttnWarps));
}

} // namespace

//===----------------------------------------------------------------------===//
// Launchers
//===----------------------------------------------------------------------===//

void CudaDevice::layerNormForward(float *Y, float *Mean, float *Rstd, const float *X,
                                  const float *Gamma, const float *Beta, int64_t Rows, int64_t Cols,
                                  float Eps) {
  if (Cols < 1)
    return recordError("layerNormForward: no columns");
  if (Rows <= 0 || !activate())
    return;
  layerNormForwardKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(Y, Mean, Rstd, X, Gamma, Beta,
                                                                   Rows, Cols, Eps);
  checkLaunch("layerNormForward");
}

void CudaDevice::layerNormBackward(float *DX, float *DGamma, float *DBeta, const float *DY,
                                   const float *X, const float *Mean, const float *Rstd,
                                   const float *Gamma, int64_t Rows, int64_t Cols) {
  if (Cols < 1)
    return recordError("layerNormBackward: no columns");
  if (Rows <= 0 || !activate())
    return;
  layerNormBackwardKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(DX, DY, X, Mean, Rstd, Gamma,
                                                                    Rows, Cols);
  checkLaunch("layerNormBackward");
  if (!DGamma && !DBeta)
    return;
  normColumnSumsKernel<<<cuda::blocksFor(Cols), cuda::Threads>>>(DGamma, DBeta, DY, X, Mean, Rstd,
                                                                 Rows, Cols);
  checkLaunch("layerNormBackward (dgamma, dbeta)");
}

void CudaDevice::rmsNormForward(float *Y, float *Rstd, const float *X, const float *Gamma,
                                int64_t Rows, int64_t Cols, float Eps) {
  if (Cols < 1)
    return recordError("rmsNormForward: no columns");
  if (Rows <= 0 || !activate())
    return;
  rmsNormForwardKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(Y, Rstd, X, Gamma, Rows, Cols,
                                                                 Eps);
  checkLaunch("rmsNormForward");
}

void CudaDevice::rmsNormBackward(float *DX, float *DGamma, const float *DY, const float *X,
                                 const float *Rstd, const float *Gamma, int64_t Rows,
                                 int64_t Cols) {
  if (Cols < 1)
    return recordError("rmsNormBackward: no columns");
  if (Rows <= 0 || !activate())
    return;
  rmsNormBackwardKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(DX, DY, X, Rstd, Gamma, Rows,
                                                                  Cols);
  checkLaunch("rmsNormBackward");
  if (!DGamma)
    return;
  normColumnSumsKernel<<<cuda::blocksFor(Cols), cuda::Threads>>>(DGamma, nullptr, DY, X, nullptr,
                                                                 Rstd, Rows, Cols);
  checkLaunch("rmsNormBackward (dgamma)");
}

void CudaDevice::softmaxForward(float *Y, const float *X, int64_t Rows, int64_t Cols, bool Causal) {
  if (Cols < 1)
    return recordError("softmaxForward: no columns");
  if (Rows <= 0 || !activate())
    return;
  softmaxForwardKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(Y, X, Rows, Cols, Causal);
  checkLaunch("softmaxForward");
}

void CudaDevice::softmaxBackward(float *DX, const float *DY, const float *Y, int64_t Rows,
                                 int64_t Cols) {
  if (Rows <= 0 || Cols <= 0 || !activate())
    return;
  softmaxBackwardKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(DX, DY, Y, Rows, Cols);
  checkLaunch("softmaxBackward");
}

void CudaDevice::crossEntropyForward(float *LogProbs, float *Loss, float *TotalWeight,
                                     const float *Logits, const int64_t *Targets, int64_t Rows,
                                     int64_t Classes, int64_t IgnoreIndex) {
  if (Classes < 1)
    return recordError("crossEntropyForward: no classes");
  if (!activate())
    return;
  if (Rows > 0) {
    logSoftmaxKernel<<<cuda::rowBlocks(Rows), cuda::Threads>>>(LogProbs, Logits, Rows, Classes);
    checkLaunch("crossEntropyForward (log_softmax)");
  }
  nllMeanKernel<<<1, 1024>>>(Loss, TotalWeight, LogProbs, Targets, Rows, Classes, IgnoreIndex);
  checkLaunch("crossEntropyForward (mean)");
}

void CudaDevice::crossEntropyBackward(float *DLogits, const float *LogProbs, const int64_t *Targets,
                                      const float *TotalWeight, int64_t Rows, int64_t Classes,
                                      int64_t IgnoreIndex, float DLoss) {
  int64_t N = Rows * Classes;
  if (N <= 0 || !activate())
    return;
  crossEntropyBackwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(
      DLogits, LogProbs, Targets, TotalWeight, Rows, Classes, IgnoreIndex, DLoss);
  checkLaunch("crossEntropyBackward");
}

void CudaDevice::attentionForwardTiled(float *O, float *Lse, const float *Q, const float *K,
                                       const float *V, const AttentionShape &S) {
  if (std::string Why = checkTiled(S); !Why.empty())
    return recordError("attentionForwardTiled: " + Why);
  if (!activate())
    return;
  size_t SharedBytes = 2 * AttnTile * S.HeadDim * sizeof(float);
  attentionForwardKernel<<<attnBlocks(S), AttnWarps * 32, SharedBytes>>>(O, Lse, Q, K, V,
                                                                         attnParams(S));
  checkLaunch("attentionForwardTiled");
}

void CudaDevice::attentionBackwardTiled(float *DQ, float *DK, float *DV, float *Delta,
                                        const float *DO, const float *Q, const float *K,
                                        const float *V, const float *O, const float *Lse,
                                        const AttentionShape &S) {
  if (std::string Why = checkTiled(S); !Why.empty())
    return recordError("attentionBackwardTiled: " + Why);
  if (!activate())
    return;
  AttnParams P = attnParams(S);
  attentionDeltaKernel<<<cuda::rowBlocks((S.rows() + AttnWarps - 1) / AttnWarps), AttnWarps * 32>>>(
      Delta, DO, O, S.rows(), P.D);
  checkLaunch("attentionBackwardTiled (delta)");
  size_t QuerySharedBytes = 2 * AttnTile * S.HeadDim * sizeof(float);
  attentionBackwardQueryKernel<<<attnBlocks(S), AttnWarps * 32, QuerySharedBytes>>>(DQ, DO, Q, K, V,
                                                                                    Lse, Delta, P);
  checkLaunch("attentionBackwardTiled (dq)");
  size_t KeySharedBytes = (2 * AttnTile * S.HeadDim + 2 * AttnTile) * sizeof(float);
  attentionBackwardKeyKernel<<<attnBlocks(S), AttnWarps * 32, KeySharedBytes>>>(DK, DV, DO, Q, K, V,
                                                                                Lse, Delta, P);
  checkLaunch("attentionBackwardTiled (dk, dv)");
}

} // namespace trainmem::kernels
