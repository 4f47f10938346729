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

  void castToBf16(uint16_t *Out, const float *In, int64_t N) override;
  void castToF32(float *Out, const uint16_t *In, int64_t N) override;
  void matmul(const MatmulArgs &Args) override;

  void biasAdd(float *Y, const float *X, const float *Bias, const ChannelShape &S) override;
  void biasGrad(float *DBias, const float *DY, const ChannelShape &S) override;
  void add(float *Out, const float *A, const float *B, int64_t N) override;
  void mul(float *Out, const float *A, const float *B, int64_t N) override;
  void mulBackward(float *DA, float *DB, const float *DOut, const float *A, const float *B,
                   int64_t N) override;
  void scale(float *Out, const float *In, float Factor, int64_t N) override;
  void activationForward(Activation Kind, float *Y, const float *X, int64_t N) override;
  void activationBackward(Activation Kind, float *DX, const float *DY, const float *X,
                          int64_t N) override;

  void layerNormForward(float *Y, float *Mean, float *Rstd, const float *X, const float *Gamma,
                        const float *Beta, int64_t Rows, int64_t Cols, float Eps) override;
  void layerNormBackward(float *DX, float *DGamma, float *DBeta, const float *DY, const float *X,
                         const float *Mean, const float *Rstd, const float *Gamma, int64_t Rows,
                         int64_t Cols) override;
  void rmsNormForward(float *Y, float *Rstd, const float *X, const float *Gamma, int64_t Rows,
                      int64_t Cols, float Eps) override;
  void rmsNormBackward(float *DX, float *DGamma, const float *DY, const float *X, const float *Rstd,
                       const float *Gamma, int64_t Rows, int64_t Cols) override;

  void softmaxForward(float *Y, const float *X, int64_t Rows, int64_t Cols, bool Causal) override;
  void softmaxBackward(float *DX, const float *DY, const float *Y, int64_t Rows,
                       int64_t Cols) override;
  void attentionForwardTiled(float *O, float *Lse, const float *Q, const float *K, const float *V,
                             const AttentionShape &S) override;
  void attentionBackwardTiled(float *DQ, float *DK, float *DV, float *Delta, const float *DO,
                              const float *Q, const float *K, const float *V, const float *O,
                              const float *Lse, const AttentionShape &S) override;

  void embeddingForward(float *Out, const float *Weight, const int64_t *Ids, int64_t NumIds,
                        int64_t Vocab, int64_t Dim) override;
  void embeddingBackward(float *DWeight, const float *DOut, const int64_t *Ids, int64_t NumIds,
                         int64_t Vocab, int64_t Dim) override;
  void crossEntropyForward(float *LogProbs, float *Loss, float *TotalWeight, const float *Logits,
                           const int64_t *Targets, int64_t Rows, int64_t Classes,
                           int64_t IgnoreIndex) override;
  void crossEntropyBackward(float *DLogits, const float *LogProbs, const int64_t *Targets,
                            const float *TotalWeight, int64_t Rows, int64_t Classes,
                            int64_t IgnoreIndex, float DLoss) override;
  void dropoutForward(float *Y, uint8_t *Mask, const float *X, int64_t N, float P, uint64_t Seed,
                      uint64_t Offset) override;
  void dropoutBackward(float *DX, const float *DY, const uint8_t *Mask, int64_t N,
                       float P) override;

  void adamStep(float *Param, const float *Grad, float *ExpAvg, float *ExpAvgSq, int64_t N,
                const AdamOptions &O) override;
  void adam8bitStep(float *Param, const float *Grad, const Adam8bitState &State, int64_t N,
                    const AdamOptions &O) override;

  void fillNormal(float *Out, int64_t N, uint64_t Seed, uint64_t Offset) override;
  void orthonormalizeColumns(float *A, int64_t Rows, int64_t Cols) override;
  void im2col(float *Col, const float *Image, const ConvShape &S) override;
  void col2im(float *Image, const float *Col, const ConvShape &S) override;
};

} // namespace trainmem::kernels

#endif
