//===- HostOptimizerKernels.cpp - host twin: Adam, 8-bit Adam, Gram-Schmidt -===//
//
// The optimizer steps of the host twin (the per-element formulas live in ScalarMath.h and are
// shared with CUDA) and the modified Gram-Schmidt that GaLore's projector update uses.
//
//===----------------------------------------------------------------------------===//

#include "HostDevice.h"

#include <algorithm>
#include <cmath>

namespace trainmem::kernels {

void HostDevice::adamStep(float *Param, const float *Grad, float *ExpAvg, float *ExpAvgSq,
                          int64_t N, const AdamOptions &O) {
  if (O.Step < 1)
    return recordError("adamStep: step counts from 1, got " + std::to_string(O.Step));
  AdamScalars S = adamScalars(O);
  for (int64_t I = 0; I < N; ++I)
    adamElement(Param[I], Grad[I], ExpAvg[I], ExpAvgSq[I], S);
}

void HostDevice::adam8bitStep(float *Param, const float *Grad, const Adam8bitState &State,
                              int64_t N, const AdamOptions &O) {
  if (O.Step < 1)
    return recordError("adam8bitStep: step counts from 1, got " + std::to_string(O.Step));
  AdamScalars S = adamScalars(O);
  float S1[QuantBlockSize], S2[QuantBlockSize];
  for (int64_t Start = 0; Start < N; Start += QuantBlockSize) {
    int64_t Block = Start / QuantBlockSize;
    int64_t Count = std::min<int64_t>(QuantBlockSize, N - Start);
    float OldAbsmax1 = State.ExpAvgAbsmax[Block], OldAbsmax2 = State.ExpAvgSqAbsmax[Block];
    float NewAbsmax1 = 0.0f, NewAbsmax2 = 0.0f;
    for (int64_t I = 0; I < Count; ++I) {
      float G = Grad[Start + I];
      S1[I] = 0.0f;
      S2[I] = 0.0f;
      if (std::isfinite(G)) {
        S1[I] = State.SignedMap[State.ExpAvgCodes[Start + I]] * OldAbsmax1;
        S2[I] = State.UnsignedMap[State.ExpAvgSqCodes[Start + I]] * OldAbsmax2;
        adam8bitStates(G, S1[I], S2[I], S);
      }
      NewAbsmax1 = std::max(NewAbsmax1, std::fabs(S1[I]));
      NewAbsmax2 = std::max(NewAbsmax2, std::fabs(S2[I]));
    }
    State.ExpAvgAbsmax[Block] = NewAbsmax1;
    State.ExpAvgSqAbsmax[Block] = NewAbsmax2;
    for (int64_t I = 0; I < Count; ++I) {
      // The update reads the unquantized new states; only what is stored loses precision.
      if (std::isfinite(Grad[Start + I]))
        Param[Start + I] = adam8bitParam(Param[Start + I], S1[I], S2[I], S);
      State.ExpAvgCodes[Start + I] = quantizeToMap(State.SignedMap, S1[I], NewAbsmax1, true);
      State.ExpAvgSqCodes[Start + I] = quantizeToMap(State.UnsignedMap, S2[I], NewAbsmax2, false);
    }
  }
}

void HostDevice::orthonormalizeColumns(float *A, int64_t Rows, int64_t Cols) {
  // Modified Gram-Schmidt: each finished column is removed from all later ones at once, which
  // keeps the basis orthogonal to working precision where classical Gram-Schmidt drifts.
  for (int64_t J = 0; J < Cols; ++J) {
    float SquareSum = 0.0f;
    for (int64_t R = 0; R < Rows; ++R)
      SquareSum += A[R * Cols + J] * A[R * Cols + J];
    float Norm = std::sqrt(SquareSum);
    for (int64_t R = 0; R < Rows; ++R)
      A[R * Cols + J] = Norm > 0.0f ? A[R * Cols + J] / Norm : 0.0f;
    for (int64_t K = J + 1; K < Cols; ++K) {
      float Dot = 0.0f;
      for (int64_t R = 0; R < Rows; ++R)
        Dot += A[R * Cols + J] * A[R * Cols + K];
      for (int64_t R = 0; R < Rows; ++R)
        A[R * Cols + K] -= Dot * A[R * Cols + J];
    }
  }
}

} // namespace trainmem::kernels
