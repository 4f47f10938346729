//===- CudaDevice.h - the CUDA twin of the reference kernels ---------*- CUDA -*-===//
//
// Private to kernels/ and included only by .cu files: the Device that runs on one GPU, plus
// the launch helpers and warp/block reductions its kernels share. Kernels are deliberately
// simple (one thread per element, one block per row, one warp per attention row) and run on
// the legacy default stream, so they execute in call order like the host twin. Launch and
// runtime failures are recorded as the Device's sticky error, never thrown.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_KERNELS_CUDADEVICE_H
#define TRAINMEM_KERNELS_CUDADEVICE_H

#include "Kernels.h"

#include <cuda_runtime.h>

namespace trainmem::kernels {

class CudaDevice final : public Device {
public:
  CudaDevice(int Index, std::string Name) : Index(Index), DeviceName(std::move(Name)) {}

  std::string name() const override { return DeviceName; }
  bool isCuda() const override { return true; }

  void *allocate(size_t Bytes) override;
  void deallocate(void *Ptr, size_t Bytes) override;
  void copyToHost(void *HostDst, const void *DeviceSrc, size_t Bytes) override;
  void copyFromHost(void *DeviceDst, const void *HostSrc, size_t Bytes) override;
  void copy(void *Dst, const void *Src, size_t Bytes) override;
  void fill(float *Out, int64_t N, float Value) override;
  void zero(void *Ptr, size_t Bytes) override;
  bool synchronize() override;

#include "DeviceKernelOverrides.inc"

  /// Makes this device current for the calling thread; false (error recorded) on failure.
  bool activate();
  /// Records Status under What unless it is cudaSuccess; returns whether it was.
  bool check(cudaError_t Status, const char *What);
  /// Records a failed launch of What (cudaGetLastError after the <<<>>>).
  void checkLaunch(const char *What) { check(cudaGetLastError(), What); }

private:
  int Index;
  std::string DeviceName;
};

namespace cuda {

inline constexpr int Threads = 256;

/// Blocks for a grid-stride loop over N items; capped because every kernel strides.
inline unsigned blocksFor(int64_t Items, int PerBlock = Threads) {
  int64_t Blocks = (Items + PerBlock - 1) / PerBlock;
  if (Blocks < 1)
    Blocks = 1;
  return static_cast<unsigned>(Blocks < (1 << 20) ? Blocks : (1 << 20));
}

/// One block per row, strided over rows when there are more than the cap.
inline unsigned rowBlocks(int64_t Rows) {
  return static_cast<unsigned>(Rows < (1 << 20) ? (Rows < 1 ? 1 : Rows) : (1 << 20));
}

__device__ inline int64_t globalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ inline int64_t gridThreads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

__device__ inline float warpSum(float Value) {
  for (int Offset = 16; Offset > 0; Offset >>= 1)
    Value += __shfl_xor_sync(0xffffffffu, Value, Offset);
  return Value;
}

__device__ inline float warpMax(float Value) {
  for (int Offset = 16; Offset > 0; Offset >>= 1)
    Value = fmaxf(Value, __shfl_xor_sync(0xffffffffu, Value, Offset));
  return Value;
}

/// Sum over the block (blockDim.x a multiple of 32), returned to every thread. Every thread
/// of the block must call it; consecutive calls may share the scratch because each begins
/// with a barrier.
__device__ inline float blockSum(float Value) {
  __shared__ float Partial[32];
  int Lane = threadIdx.x & 31, Warp = threadIdx.x >> 5, Warps = (blockDim.x + 31) >> 5;
  Value = warpSum(Value);
  __syncthreads();
  if (Lane == 0)
    Partial[Warp] = Value;
  __syncthreads();
  if (Warp == 0) {
    Value = warpSum(Lane < Warps ? Partial[Lane] : 0.0f);
    if (Lane == 0)
      Partial[0] = Value;
  }
  __syncthreads();
  return Partial[0];
}

/// Maximum over the block, with the same calling rules as blockSum.
__device__ inline float blockMax(float Value) {
  __shared__ float Partial[32];
  int Lane = threadIdx.x & 31, Warp = threadIdx.x >> 5, Warps = (blockDim.x + 31) >> 5;
  Value = warpMax(Value);
  __syncthreads();
  if (Lane == 0)
    Partial[Warp] = Value;
  __syncthreads();
  if (Warp == 0) {
    Value = warpMax(Lane < Warps ? Partial[Lane] : -INFINITY);
    if (Lane == 0)
      Partial[0] = Value;
  }
  __syncthreads();
  return Partial[0];
}

} // namespace cuda
} // namespace trainmem::kernels

#endif
