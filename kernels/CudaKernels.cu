//===- CudaKernels.cu - CUDA twin: device, memory, matmul, elementwise ---===//
//
// makeCudaDevice, the CUDA Device's memory (cudaMalloc and nothing else, so CUPTI's activity
// records and a tracking allocator see the same buffers) and its simplest kernels:
// conversions, a shared-memory tiled matmul with fp32 accumulation for fp32 and bf16 inputs,
// bias, elementwise ops and activations, dropout, embedding, Gaussian fill, im2col and col2im.
// Per-element formulas come from ScalarMath.h, as on the host twin.
//
//===----------------------------------------------------------------------------===//

#include "CudaDevice.h"

namespace trainmem::kernels {

std::unique_ptr<Device> makeCudaDevice(int Index, std::string &Why) {
  int Count = 0;
  cudaError_t Status = cudaGetDeviceCount(&Count);
  if (Status != cudaSuccess) {
    Why = std::string("CUDA: ") + cudaGetErrorString(Status);
    return nullptr;
  }
  if (Index < 0 || Index >= Count) {
    Why = "CUDA: no GPU " + std::to_string(Index) + " (" + std::to_string(Count) + " visible)";
    return nullptr;
  }
  cudaDeviceProp Properties;
  if ((Status = cudaSetDevice(Index)) != cudaSuccess ||
      (Status = cudaGetDeviceProperties(&Properties, Index)) != cudaSuccess ||
      // Creates the context now, so a broken driver shows here rather than in a first kernel.
      (Status = cudaFree(nullptr)) != cudaSuccess) {
    Why = std::string("CUDA: ") + cudaGetErrorString(Status);
    return nullptr;
  }
  return std::make_unique<CudaDevice>(Index, "cuda:" + std::to_string(Index) + " (" +
                                                 Properties.name + ")");
}

bool CudaDevice::activate() { return check(cudaSetDevice(Index), "cudaSetDevice"); }

bool CudaDevice::check(cudaError_t Status, const char *What) {
  if (Status == cudaSuccess)
    return true;
  recordError(DeviceName + ": " + What + ": " + cudaGetErrorString(Status));
  return false;
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

namespace {

__global__ void fillKernel(float *Out, int64_t N, float Value) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = Value;
}

} // namespace

void *CudaDevice::allocate(size_t Bytes) {
  if (Bytes == 0 || !activate())
    return nullptr;
  void *Ptr = nullptr;
  cudaError_t Status = cudaMalloc(&Ptr, Bytes);
  if (Status != cudaSuccess) {
    // Out of memory is not sticky; clear it so the next launch check does not report it again.
    (void)cudaGetLastError();
    recordError(DeviceName + ": cudaMalloc of " + std::to_string(Bytes) +
                " bytes: " + cudaGetErrorString(Status));
    return nullptr;
  }
  return Ptr;
}

void CudaDevice::deallocate(void *Ptr, size_t) {
  if (Ptr && activate())
    check(cudaFree(Ptr), "cudaFree");
}

void CudaDevice::copyToHost(void *HostDst, const void *DeviceSrc, size_t Bytes) {
  if (Bytes && activate())
    check(cudaMemcpy(HostDst, DeviceSrc, Bytes, cudaMemcpyDeviceToHost), "copy to host");
}

void CudaDevice::copyFromHost(void *DeviceDst, const void *HostSrc, size_t Bytes) {
  if (Bytes && activate())
    check(cudaMemcpy(DeviceDst, HostSrc, Bytes, cudaMemcpyHostToDevice), "copy from host");
}

void CudaDevice::copy(void *Dst, const void *Src, size_t Bytes) {
  if (Bytes && activate())
    check(cudaMemcpy(Dst, Src, Bytes, cudaMemcpyDeviceToDevice), "device copy");
}

void CudaDevice::fill(float *Out, int64_t N, float Value) {
  if (N <= 0 || !activate())
    return;
  fillKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, N, Value);
  checkLaunch("fill");
}

void CudaDevice::zero(void *Ptr, size_t Bytes) {
  if (Bytes && activate())
    check(cudaMemset(Ptr, 0, Bytes), "cudaMemset");
}

bool CudaDevice::synchronize() {
  if (activate())
    check(cudaDeviceSynchronize(), "synchronize");
  return !hasError();
}

//===----------------------------------------------------------------------===//
// Conversions and matmul
//===----------------------------------------------------------------------===//

namespace {

__global__ void castToBf16Kernel(uint16_t *Out, const float *In, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = floatToBf16(In[I]);
}

__global__ void castToF32Kernel(float *Out, const uint16_t *In, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = bf16ToFloat(In[I]);
}

constexpr int MatmulTile = 16;

/// MatmulArgs resolved to strides: op(A)(i, k) = A[i * RowA + k * ColA], likewise for B.
struct MatmulParams {
  int64_t M, N, K, Batch;
  const void *A;
  const void *B;
  void *C;
  int64_t RowA, ColA, RowB, ColB, LdC;
  int64_t StrideA, StrideB, StrideC;
  float Alpha, Beta;
};

__device__ inline float loadValue(const float *P, int64_t I) { return P[I]; }
__device__ inline float loadValue(const uint16_t *P, int64_t I) { return bf16ToFloat(P[I]); }
__device__ inline void storeValue(float *P, int64_t I, float V) { P[I] = V; }
__device__ inline void storeValue(uint16_t *P, int64_t I, float V) { P[I] = floatToBf16(V); }

/// A 16 x 16 output tile per block: rows of C along blockIdx.x (tokens can be many), columns
/// along blockIdx.y, batch entries along blockIdx.z (strided when over the grid limit).
template <typename In, typename Out> __global__ void matmulKernel(MatmulParams P) {
  __shared__ float ATile[MatmulTile][MatmulTile + 1];
  __shared__ float BTile[MatmulTile][MatmulTile + 1];
  int Tx = threadIdx.x, Ty = threadIdx.y;
  int64_t Row = static_cast<int64_t>(blockIdx.x) * MatmulTile + Ty;
  int64_t Col = static_cast<int64_t>(blockIdx.y) * MatmulTile + Tx;
  for (int64_t Entry = blockIdx.z; Entry < P.Batch; Entry += gridDim.z) {
    const In *A = static_cast<const In *>(P.A) + Entry * P.StrideA;
    const In *B = static_cast<const In *>(P.B) + Entry * P.StrideB;
    float Acc = 0.0f;
    for (int64_t K0 = 0; K0 < P.K; K0 += MatmulTile) {
      int64_t KA = K0 + Tx, KB = K0 + Ty;
      ATile[Ty][Tx] = (Row < P.M && KA < P.K) ? loadValue(A, Row * P.RowA + KA * P.ColA) : 0.0f;
      BTile[Ty][Tx] = (KB < P.K && Col < P.N) ? loadValue(B, KB * P.RowB + Col * P.ColB) : 0.0f;
      __syncthreads();
#pragma unroll
      for (int Kk = 0; Kk < MatmulTile; ++Kk)
        Acc += ATile[Ty][Kk] * BTile[Kk][Tx];
      __syncthreads();
    }
    if (Row < P.M && Col < P.N) {
      Out *C = static_cast<Out *>(P.C) + Entry * P.StrideC;
      float Result = P.Alpha * Acc;
      if (P.Beta != 0.0f)
        Result += P.Beta * loadValue(C, Row * P.LdC + Col);
      storeValue(C, Row * P.LdC + Col, Result);
    }
  }
}

} // namespace

void CudaDevice::castToBf16(uint16_t *Out, const float *In, int64_t N) {
  if (N <= 0 || !activate())
    return;
  castToBf16Kernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, In, N);
  checkLaunch("castToBf16");
}

void CudaDevice::castToF32(float *Out, const uint16_t *In, int64_t N) {
  if (N <= 0 || !activate())
    return;
  castToF32Kernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, In, N);
  checkLaunch("castToF32");
}

void CudaDevice::matmul(const MatmulArgs &Args) {
  if (std::string Why = Args.check(); !Why.empty())
    return recordError("matmul: " + Why);
  if (Args.M == 0 || Args.N == 0 || Args.Batch == 0 || !activate())
    return;
  int64_t ColumnTiles = (Args.N + MatmulTile - 1) / MatmulTile;
  if (ColumnTiles > 65535)
    return recordError("matmul: N = " + std::to_string(Args.N) + " exceeds the grid");
  MatmulParams P;
  P.M = Args.M;
  P.N = Args.N;
  P.K = Args.K;
  P.Batch = Args.Batch;
  P.A = Args.A;
  P.B = Args.B;
  P.C = Args.C;
  P.RowA = Args.TransA ? 1 : Args.ldA();
  P.ColA = Args.TransA ? Args.ldA() : 1;
  P.RowB = Args.TransB ? 1 : Args.ldB();
  P.ColB = Args.TransB ? Args.ldB() : 1;
  P.LdC = Args.ldC();
  P.StrideA = Args.strideA();
  P.StrideB = Args.strideB();
  P.StrideC = Args.strideC();
  P.Alpha = Args.Alpha;
  P.Beta = Args.Beta;
  dim3 Block(MatmulTile, MatmulTile);
  dim3 Grid(static_cast<unsigned>((Args.M + MatmulTile - 1) / MatmulTile),
            static_cast<unsigned>(ColumnTiles),
            static_cast<unsigned>(Args.Batch < 65535 ? Args.Batch : 65535));
  bool Bf16In = Args.InputType == DType::BF16, Bf16Out = Args.OutputType == DType::BF16;
  if (!Bf16In && !Bf16Out)
    matmulKernel<float, float><<<Grid, Block>>>(P);
  else if (!Bf16In)
    matmulKernel<float, uint16_t><<<Grid, Block>>>(P);
  else if (!Bf16Out)
    matmulKernel<uint16_t, float><<<Grid, Block>>>(P);
  else
    matmulKernel<uint16_t, uint16_t><<<Grid, Block>>>(P);
  checkLaunch("matmul");
}

//===----------------------------------------------------------------------===//
// Bias and elementwise
//===----------------------------------------------------------------------===//

namespace {

__global__ void biasAddKernel(float *Y, const float *X, const float *Bias, int64_t Channels,
                              int64_t Inner, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Y[I] = X[I] + Bias[(I / Inner) % Channels];
}

/// One block per channel: its values are scattered over Outer, so a block reduction beats a
/// thread walking them alone when Outer * Inner is large (convolutions).
__global__ void biasGradKernel(float *DBias, const float *DY, int64_t Outer, int64_t Channels,
                               int64_t Inner) {
  for (int64_t C = blockIdx.x; C < Channels; C += gridDim.x) {
    float Sum = 0.0f;
    for (int64_t Idx = threadIdx.x; Idx < Outer * Inner; Idx += blockDim.x)
      Sum += DY[((Idx / Inner) * Channels + C) * Inner + Idx % Inner];
    Sum = cuda::blockSum(Sum);
    if (threadIdx.x == 0)
      DBias[C] = Sum;
  }
}

__global__ void addKernel(float *Out, const float *A, const float *B, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = A[I] + B[I];
}

__global__ void mulKernel(float *Out, const float *A, const float *B, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = A[I] * B[I];
}

__global__ void mulBackwardKernel(float *DA, float *DB, const float *DOut, const float *A,
                                  const float *B, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    float G = DOut[I], AValue = A[I], BValue = B[I];
    if (DA)
      DA[I] = G * BValue;
    if (DB)
      DB[I] = G * AValue;
  }
}

__global__ void scaleKernel(float *Out, const float *In, float Factor, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = Factor * In[I];
}

__global__ void activationForwardKernel(Activation Kind, float *Y, const float *X, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Y[I] = activate(Kind, X[I]);
}

__global__ void activationBackwardKernel(Activation Kind, float *DX, const float *DY,
                                         const float *X, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    DX[I] = DY[I] * activationDerivative(Kind, X[I]);
}

} // namespace

void CudaDevice::biasAdd(float *Y, const float *X, const float *Bias, const ChannelShape &S) {
  int64_t N = S.elements();
  if (N <= 0 || !activate())
    return;
  biasAddKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Y, X, Bias, S.Channels, S.Inner, N);
  checkLaunch("biasAdd");
}

void CudaDevice::biasGrad(float *DBias, const float *DY, const ChannelShape &S) {
  if (S.Channels <= 0 || !activate())
    return;
  biasGradKernel<<<cuda::rowBlocks(S.Channels), cuda::Threads>>>(DBias, DY, S.Outer, S.Channels,
                                                                 S.Inner);
  checkLaunch("biasGrad");
}

void CudaDevice::add(float *Out, const float *A, const float *B, int64_t N) {
  if (N <= 0 || !activate())
    return;
  addKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, A, B, N);
  checkLaunch("add");
}

void CudaDevice::mul(float *Out, const float *A, const float *B, int64_t N) {
  if (N <= 0 || !activate())
    return;
  mulKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, A, B, N);
  checkLaunch("mul");
}

void CudaDevice::mulBackward(float *DA, float *DB, const float *DOut, const float *A,
                             const float *B, int64_t N) {
  if (N <= 0 || !activate())
    return;
  mulBackwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(DA, DB, DOut, A, B, N);
  checkLaunch("mulBackward");
}

void CudaDevice::scale(float *Out, const float *In, float Factor, int64_t N) {
  if (N <= 0 || !activate())
    return;
  scaleKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, In, Factor, N);
  checkLaunch("scale");
}

void CudaDevice::activationForward(Activation Kind, float *Y, const float *X, int64_t N) {
  if (N <= 0 || !activate())
    return;
  activationForwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Kind, Y, X, N);
  checkLaunch("activationForward");
}

void CudaDevice::activationBackward(Activation Kind, float *DX, const float *DY, const float *X,
                                    int64_t N) {
  if (N <= 0 || !activate())
    return;
  activationBackwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Kind, DX, DY, X, N);
  checkLaunch("activationBackward");
}

//===----------------------------------------------------------------------===//
// Embedding, dropout, random fill
//===----------------------------------------------------------------------===//

namespace {

__global__ void embeddingForwardKernel(float *Out, const float *Weight, const int64_t *Ids,
                                       int64_t Vocab, int64_t Dim, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    int64_t Id = Ids[I / Dim];
    Out[I] = (Id >= 0 && Id < Vocab) ? Weight[Id * Dim + I % Dim] : 0.0f;
  }
}

__global__ void embeddingBackwardKernel(float *DWeight, const float *DOut, const int64_t *Ids,
                                        int64_t Vocab, int64_t Dim, int64_t N) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    int64_t Id = Ids[I / Dim];
    if (Id >= 0 && Id < Vocab)
      atomicAdd(&DWeight[Id * Dim + I % Dim], DOut[I]);
  }
}

__global__ void dropoutForwardKernel(float *Y, uint8_t *Mask, const float *X, int64_t N, float P,
                                     float Scale, uint64_t Seed, uint64_t Offset) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    bool Keep = uniformFloat(Seed, Offset + static_cast<uint64_t>(I)) >= P;
    Mask[I] = Keep ? 1 : 0;
    Y[I] = Keep ? X[I] * Scale : 0.0f;
  }
}

__global__ void dropoutBackwardKernel(float *DX, const float *DY, const uint8_t *Mask, int64_t N,
                                      float Scale) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    DX[I] = Mask[I] ? DY[I] * Scale : 0.0f;
}

__global__ void fillNormalKernel(float *Out, int64_t N, uint64_t Seed, uint64_t Offset) {
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads())
    Out[I] = normalFloat(Seed, Offset + static_cast<uint64_t>(I));
}

/// As on the host twin: 1 / (1 - p), and nothing kept when p == 1.
float dropoutScale(float P) { return P < 1.0f ? 1.0f / (1.0f - P) : 0.0f; }

} // namespace

void CudaDevice::embeddingForward(float *Out, const float *Weight, const int64_t *Ids,
                                  int64_t NumIds, int64_t Vocab, int64_t Dim) {
  int64_t N = NumIds * Dim;
  if (N <= 0 || !activate())
    return;
  embeddingForwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, Weight, Ids, Vocab, Dim, N);
  checkLaunch("embeddingForward");
}

void CudaDevice::embeddingBackward(float *DWeight, const float *DOut, const int64_t *Ids,
                                   int64_t NumIds, int64_t Vocab, int64_t Dim) {
  int64_t N = NumIds * Dim;
  if (N <= 0 || !activate())
    return;
  embeddingBackwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(DWeight, DOut, Ids, Vocab, Dim, N);
  checkLaunch("embeddingBackward");
}

void CudaDevice::dropoutForward(float *Y, uint8_t *Mask, const float *X, int64_t N, float P,
                                uint64_t Seed, uint64_t Offset) {
  if (!(P >= 0.0f && P <= 1.0f))
    return recordError("dropoutForward: p must lie in [0, 1], got " + std::to_string(P));
  if (N <= 0 || !activate())
    return;
  dropoutForwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Y, Mask, X, N, P, dropoutScale(P),
                                                              Seed, Offset);
  checkLaunch("dropoutForward");
}

void CudaDevice::dropoutBackward(float *DX, const float *DY, const uint8_t *Mask, int64_t N,
                                 float P) {
  if (!(P >= 0.0f && P <= 1.0f))
    return recordError("dropoutBackward: p must lie in [0, 1], got " + std::to_string(P));
  if (N <= 0 || !activate())
    return;
  dropoutBackwardKernel<<<cuda::blocksFor(N), cuda::Threads>>>(DX, DY, Mask, N, dropoutScale(P));
  checkLaunch("dropoutBackward");
}

void CudaDevice::fillNormal(float *Out, int64_t N, uint64_t Seed, uint64_t Offset) {
  if (N <= 0 || !activate())
    return;
  fillNormalKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Out, N, Seed, Offset);
  checkLaunch("fillNormal");
}

//===----------------------------------------------------------------------===//
// im2col and col2im
//===----------------------------------------------------------------------===//

namespace {

/// ConvShape with the derived sizes resolved on the host (its members are host functions).
struct ConvParams {
  int64_t Channels, Height, Width, KernelH, KernelW;
  int64_t StrideH, StrideW, PadH, PadW, DilationH, DilationW;
  int64_t OutH, OutW;
};

ConvParams convParams(const ConvShape &S) {
  return ConvParams{S.InChannels, S.Height,      S.Width,     S.KernelH, S.KernelW,
                    S.StrideH,    S.StrideW,     S.PadH,      S.PadW,    S.DilationH,
                    S.DilationW,  S.outHeight(), S.outWidth()};
}

__global__ void im2colKernel(float *Col, const float *Image, ConvParams P, int64_t N) {
  int64_t Pixels = P.OutH * P.OutW;
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    int64_t Row = I / Pixels, Pixel = I % Pixels;
    int64_t C = Row / (P.KernelH * P.KernelW), Tap = Row % (P.KernelH * P.KernelW);
    int64_t Ih = (Pixel / P.OutW) * P.StrideH - P.PadH + (Tap / P.KernelW) * P.DilationH;
    int64_t Iw = (Pixel % P.OutW) * P.StrideW - P.PadW + (Tap % P.KernelW) * P.DilationW;
    bool Inside = Ih >= 0 && Ih < P.Height && Iw >= 0 && Iw < P.Width;
    Col[I] = Inside ? Image[(C * P.Height + Ih) * P.Width + Iw] : 0.0f;
  }
}

/// The host twin's col2im loop body, one thread per input pixel: same taps, same order.
__global__ void col2imKernel(float *Image, const float *Col, ConvParams P, int64_t N) {
  int64_t Pixels = P.OutH * P.OutW;
  for (int64_t I = cuda::globalThread(); I < N; I += cuda::gridThreads()) {
    int64_t C = I / (P.Height * P.Width), Ih = (I / P.Width) % P.Height, Iw = I % P.Width;
    float Sum = 0.0f;
    for (int64_t Kh = 0; Kh < P.KernelH; ++Kh) {
      int64_t Th = Ih + P.PadH - Kh * P.DilationH;
      if (Th < 0 || Th % P.StrideH != 0 || Th / P.StrideH >= P.OutH)
        continue;
      for (int64_t Kw = 0; Kw < P.KernelW; ++Kw) {
        int64_t Tw = Iw + P.PadW - Kw * P.DilationW;
        if (Tw < 0 || Tw % P.StrideW != 0 || Tw / P.StrideW >= P.OutW)
          continue;
        int64_t Row = (C * P.KernelH + Kh) * P.KernelW + Kw;
        Sum += Col[Row * Pixels + (Th / P.StrideH) * P.OutW + Tw / P.StrideW];
      }
    }
    Image[I] = Sum;
  }
}

} // namespace

void CudaDevice::im2col(float *Col, const float *Image, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return recordError("im2col: " + Why);
  int64_t N = S.columnRows() * S.columnCols();
  if (!activate())
    return;
  im2colKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Col, Image, convParams(S), N);
  checkLaunch("im2col");
}

void CudaDevice::col2im(float *Image, const float *Col, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return recordError("col2im: " + Why);
  int64_t N = S.InChannels * S.Height * S.Width;
  if (!activate())
    return;
  col2imKernel<<<cuda::blocksFor(N), cuda::Threads>>>(Image, Col, convParams(S), N);
  checkLaunch("col2im");
}

} // namespace trainmem::kernels
