//===- CudaOptimizerKernels.cu - CUDA twin: Adam, 8-bit Adam, Gram-Schmidt -===//
//
// Adam/AdamW as one thread per element; bitsandbytes' 8-bit blockwise Adam as one thread
// block per quantization block of 256 values (the block's new absmax is a block reduction,
// as in bitsandbytes' kOptimizerStatic8bit2StateBlockwise, whose per-element arithmetic
// ScalarMath.h shares with the host twin); and the modified Gram-Schmidt of GaLore's
// projector update, one launch pair per column.
//
//===----------------------------------------------------------------------------===//

#include "CudaDevice.h"

namespace trainmem::kernels {

namespace {

__global__ void adamKernel(float *Param, const float *Grad, float *ExpAvg, float *ExpAvgSq,
                           int64_t N, AdamScalars S) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    float P = Param[I], M = ExpAvg[I], V = ExpAvgSq[I];
    adamElement(P, Grad[I], M, V, S);
    Param[I] = P;
    ExpAvg[I] = M;
    ExpAvgSq[I] = V;
  }
}

static_assert(QuantBlockSize == cuda::Threads, "one thread per value of a quantization block");

__global__ void adam8bitKernel(float *Param, const float *Grad, Adam8bitState State, int64_t N,
                               AdamScalars S) {
  __shared__ float SignedMap[256], UnsignedMap[256];
  SignedMap[threadIdx.x] = State.SignedMap[threadIdx.x];
  UnsignedMap[threadIdx.x] = State.UnsignedMap[threadIdx.x];
  __syncthreads();
  int64_t Blocks = (N + QuantBlockSize - 1) / QuantBlockSize;
  for (int64_t Block = blockIdx.x; Block < Blocks; Block += gridDim.x) {
    int64_t I = Block * QuantBlockSize + threadIdx.x;
    bool Valid = I < N;
    float G = Valid ? Grad[I] : 0.0f;
    bool Finite = Valid && isfinite(G);
    float S1 = 0.0f, S2 = 0.0f;
    if (Finite) {
      S1 = SignedMap[State.ExpAvgCodes[I]] * State.ExpAvgAbsmax[Block];
      S2 = UnsignedMap[State.ExpAvgSqCodes[I]] * State.ExpAvgSqAbsmax[Block];
      adam8bitStates(G, S1, S2, S);
    }
    // The reductions' barriers also order every read of the old absmax before its overwrite.
    float Absmax1 = cuda::blockMax(fabsf(S1));
    float Absmax2 = cuda::blockMax(fabsf(S2));
    if (threadIdx.x == 0) {
      State.ExpAvgAbsmax[Block] = Absmax1;
      State.ExpAvgSqAbsmax[Block] = Absmax2;
    }
    if (!Valid)
      continue;
    if (Finite)
      Param[I] = adam8bitParam(Param[I], S1, S2, S);
    State.ExpAvgCodes[I] = quantizeToMap(SignedMap, S1, Absmax1, true);
    State.ExpAvgSqCodes[I] = quantizeToMap(UnsignedMap, S2, Absmax2, false);
  }
}

/// Column J of A [Rows, Cols] divided by its norm (zeroed when the norm is 0). One block.
__global__ void normalizeColumnKernel(float *A, int64_t Rows, int64_t Cols, int64_t J) {
  float SquareSum = 0.0f;
  for (int64_t R = threadIdx.x; R < Rows; R += blockDim.x)
    SquareSum += A[R * Cols + J] * A[R * Cols + J];
  float Norm = sqrtf(cuda::blockSum(SquareSum));
  for (int64_t R = threadIdx.x; R < Rows; R += blockDim.x)
    A[R * Cols + J] = Norm > 0.0f ? A[R * Cols + J] / Norm : 0.0f;
}

/// Removes the (normalised) column J from every later column, a block per column.
__global__ void projectOutColumnKernel(float *A, int64_t Rows, int64_t Cols, int64_t J) {
  for (int64_t K = J + 1 + blockIdx.x; K < Cols; K += gridDim.x) {
    float Dot = 0.0f;
    for (int64_t R = threadIdx.x; R < Rows; R += blockDim.x)
      Dot += A[R * Cols + J] * A[R * Cols + K];
    Dot = cuda::blockSum(Dot);
    for (int64_t R = threadIdx.x; R < Rows; R += blockDim.x)
      A[R * Cols + K] -= Dot * A[R * Cols + J];
  }
}

} // namespace

void CudaDevice::adamStep(float *Param, const float *Grad, float *ExpAvg, float *ExpAvgSq,
                          int64_t N, const AdamOptions &O) {
  if (O.Step < 1)
    return recordError("adamStep: step counts from 1, got " + std::to_string(O.Step));
  if (N <= 0 || !activate())
    return;
  adamKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Param, Grad, ExpAvg, ExpAvgSq, N,
                                                    adamScalars(O));
  checkLaunch("adamStep");
}

void CudaDevice::adam8bitStep(float *Param, const float *Grad, const Adam8bitState &State,
                              int64_t N, const AdamOptions &O) {
  if (O.Step < 1)
    return recordError("adam8bitStep: step counts from 1, got " + std::to_string(O.Step));
  if (N <= 0 || !activate())
    return;
  int64_t Blocks = (N + QuantBlockSize - 1) / QuantBlockSize;
  adam8bitKernel<<<cuda::rowBlocks(Blocks), cuda::Threads>>>(Param, Grad, State, N, adamScalars(O));
  checkLaunch("adam8bitStep");
}

void CudaDevice::orthonormalizeColumns(float *A, int64_t Rows, int64_t Cols) {
  if (Rows <= 0 || Cols <= 0 || !activate())
    return;
  // Modified Gram-Schmidt is sequential over columns; the parallelism is within a column and
  // across the later columns each step updates.
  for (int64_t J = 0; J < Cols; ++J) {
    normalizeColumnKernel<<<1, cuda::Threads>>>(A, Rows, Cols, J);
    if (J + 1 < Cols)
      projectOutColumnKernel<<<cuda::rowBlocks(Cols - J - 1), cuda::Threads>>>(A, Rows, Cols, J);
  }
  checkLaunch("orthonormalizeColumns");
}

} // namespace trainmem::kernels
