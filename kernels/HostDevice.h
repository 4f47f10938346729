//===- HostDevice.h - the host twin of the reference kernels ---------*- C++ -*-===//
//
// Private to kernels/: the Device whose memory is ordinary host memory and whose kernels are
// plain loops, written for clarity over speed. Its methods are spread over HostKernels.cpp
// (memory, matmul, elementwise, embedding, dropout, im2col), HostRowKernels.cpp
// (normalisation, softmax, cross-entropy, tiled attention) and HostOptimizerKernels.cpp
// (Adam, 8-bit Adam, Gram-Schmidt). Accumulation is in fp32 like the CUDA twin, so the two
// differ by summation order only.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_KERNELS_HOSTDEVICE_H
#define TRAINMEM_KERNELS_HOSTDEVICE_H

#include "Kernels.h"

namespace trainmem::kernels {

class HostDevice final : public Device {
public:
  std::string name() const override { return "host"; }
  bool isCuda() const override { return false; }

  void *allocate(size_t Bytes) override;
  void deallocate(void *Ptr, size_t Bytes) override;
  void copyToHost(void *HostDst, const void *DeviceSrc, size_t Bytes) override;
  void copyFromHost(void *DeviceDst, const void *HostSrc, size_t Bytes) override;
  void copy(void *Dst, const void *Src, size_t Bytes) override;
  void fill(float *Out, int64_t N, float Value) override;
  void zero(void *Ptr, size_t Bytes) override;
  bool synchronize() override { return !hasError(); }

#include "DeviceKernelOverrides.inc"
};

} // namespace trainmem::kernels

#endif
