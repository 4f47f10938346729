//===- Kernels.h - reference kernels behind one device interface -----*- C++ -*-===//
//
// The kernels `trainmem validate` builds a real training step from: matmul (fp32 and bf16
// inputs), bias, elementwise ops and activations, LayerNorm and RMSNorm, softmax, causal
// attention (naive, saving the probabilities, and memory-efficient, saving one log-sum-exp
// per row), embedding, cross-entropy, dropout, Adam/AdamW in fp32 and in bitsandbytes' 8-bit
// blockwise form, LoRA, GaLore projection and conv2d. One abstract Device has two twins: plain
// host loops (HostKernels.cpp and friends) and CUDA (CudaKernels.cu and friends).
//
// The device allocates nothing on its own. Every tensor, saved activation and workspace is a
// buffer the caller obtained from allocate(), so a tracking allocator layered above this
// interface sees every byte a step uses; a kernel that needs scratch memory says how much and
// takes it as an argument.
//
// Conventions: pointers are device pointers from allocate(); tensors are dense and row-major;
// sizes are element counts; gradients overwrite their output unless a function says it
// accumulates; kernels run in call order. Errors (bad arguments, a failed CUDA call) are
// recorded, the offending kernel does nothing, and the first error stays until takeError().
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_KERNELS_KERNELS_H
#define TRAINMEM_KERNELS_KERNELS_H

#include "ScalarMath.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace trainmem::kernels {

enum class DType : uint8_t {
  F32,
  BF16, ///< stored as uint16_t bit patterns (floatToBf16 / bf16ToFloat)
};

size_t dtypeBytes(DType Type);

/// Strided-batched C = Alpha * op(A) * op(B) + Beta * C, row-major. op(A) is M x K (stored
/// K x M when TransA), op(B) is K x N (stored N x K when TransB), C is M x N. Products
/// accumulate in fp32 whatever InputType is. Beta == 0 means C is not read (a NaN in an
/// uninitialised C does not leak through), as in BLAS.
struct MatmulArgs {
  static constexpr int64_t Packed = -1; ///< leading dimension or stride of a dense layout

  int64_t M = 0, N = 0, K = 0;
  int64_t Batch = 1;
  bool TransA = false, TransB = false;
  DType InputType = DType::F32;  ///< of A and B
  DType OutputType = DType::F32; ///< of C
  const void *A = nullptr;
  const void *B = nullptr;
  void *C = nullptr;
  int64_t LdA = Packed, LdB = Packed, LdC = Packed;
  /// Elements between consecutive batch entries; 0 repeats one matrix for every entry.
  int64_t StrideA = Packed, StrideB = Packed, StrideC = Packed;
  float Alpha = 1.0f, Beta = 0.0f;

  int64_t ldA() const { return LdA != Packed ? LdA : (TransA ? M : K); }
  int64_t ldB() const { return LdB != Packed ? LdB : (TransB ? K : N); }
  int64_t ldC() const { return LdC != Packed ? LdC : N; }
  int64_t strideA() const { return StrideA != Packed ? StrideA : M * K; }
  int64_t strideB() const { return StrideB != Packed ? StrideB : K * N; }
  int64_t strideC() const { return StrideC != Packed ? StrideC : M * N; }
  /// Empty when the arguments are consistent, else what is wrong.
  std::string check() const;
  /// A single dense fp32 product, C = Alpha * op(A) * op(B) + Beta * C.
  static MatmulArgs plain(int64_t M, int64_t N, int64_t K, bool TransA, bool TransB,
                          const float *A, const float *B, float *C, float Alpha = 1.0f,
                          float Beta = 0.0f) {
    MatmulArgs Args;
    Args.M = M;
    Args.N = N;
    Args.K = K;
    Args.TransA = TransA;
    Args.TransB = TransB;
    Args.A = A;
    Args.B = B;
    Args.C = C;
    Args.Alpha = Alpha;
    Args.Beta = Beta;
    return Args;
  }
};

/// A tensor seen as [Outer, Channels, Inner] for a per-channel bias: [rows, features, 1] for
/// a linear layer, [batch, channels, height * width] for a convolution.
struct ChannelShape {
  int64_t Outer = 1, Channels = 0, Inner = 1;
  int64_t elements() const { return Outer * Channels * Inner; }
};

/// Q, K, V, O and their gradients are [Batch, Heads, SeqLen, HeadDim].
struct AttentionShape {
  int64_t Batch = 1, Heads = 1, SeqLen = 0, HeadDim = 0;
  bool Causal = true;
  float Scale = 0.0f; ///< 0: 1 / sqrt(HeadDim)

  float scale() const;
  int64_t rows() const { return Batch * Heads * SeqLen; } ///< also the Lse length
  int64_t elements() const { return rows() * HeadDim; }
  int64_t probabilityElements() const { return rows() * SeqLen; }
  std::string check() const;
};

/// NCHW input [Batch, InChannels, Height, Width], weight [OutChannels, InChannels / Groups,
/// KernelH, KernelW], output [Batch, OutChannels, outHeight(), outWidth()].
struct ConvShape {
  int64_t Batch = 1, InChannels = 0, Height = 0, Width = 0;
  int64_t OutChannels = 0, KernelH = 1, KernelW = 1;
  int64_t StrideH = 1, StrideW = 1, PadH = 0, PadW = 0, DilationH = 1, DilationW = 1;
  int64_t Groups = 1;

  int64_t outHeight() const;
  int64_t outWidth() const;
  /// Rows of the im2col matrix of one image: InChannels * KernelH * KernelW.
  int64_t columnRows() const { return InChannels * KernelH * KernelW; }
  int64_t columnCols() const { return outHeight() * outWidth(); }
  std::string check() const;
};

/// Hyperparameters in double, as torch.optim holds them (Python floats).
struct AdamOptions {
  double Lr = 1e-3;
  double Beta1 = 0.9, Beta2 = 0.999;
  double Eps = 1e-8;
  double WeightDecay = 0.0;
  bool Decoupled = true; ///< AdamW; false: Adam with L2 decay added to the gradient
  int64_t Step = 1;      ///< the step being taken, counted from 1 as torch's state['step']
};

/// The largest head dimension attentionForwardTiled and attentionBackwardTiled take.
inline constexpr int64_t MaxTiledHeadDim = 256;

/// Values per absmax block of bitsandbytes' blockwise optimizers (BLOCKSIZE_2STATE).
inline constexpr int64_t QuantBlockSize = 256;

/// The buffers of 8-bit blockwise Adam: each state is N uint8 codes plus one fp32 absmax per
/// block of QuantBlockSize values. The maps are the 256-entry code books of
/// dynamicQuantizationMap(true) and (false), uploaded by the caller.
struct Adam8bitState {
  uint8_t *ExpAvgCodes = nullptr;
  float *ExpAvgAbsmax = nullptr;
  uint8_t *ExpAvgSqCodes = nullptr;
  float *ExpAvgSqAbsmax = nullptr;
  const float *SignedMap = nullptr;
  const float *UnsignedMap = nullptr;
};

/// A device: memory, copies and the kernels. Implementations: makeHostDevice(),
/// makeCudaDevice().
class Device {
public:
  virtual ~Device();
  Device(const Device &) = delete;
  Device &operator=(const Device &) = delete;

  /// "host", or "cuda:0 (NVIDIA H200)".
  virtual std::string name() const = 0;
  virtual bool isCuda() const = 0;

  //===--- Memory -------------------------------------------------------------===//

  /// Bytes of device memory, aligned to at least 64 bytes; nullptr (with the reason recorded)
  /// when the device is out of memory, and for Bytes == 0.
  virtual void *allocate(size_t Bytes) = 0;
  /// Bytes is the size given to allocate(), for allocators that keep counts.
  virtual void deallocate(void *Ptr, size_t Bytes) = 0;
  /// Waits for earlier kernels, then copies; the host buffer is ready on return.
  virtual void copyToHost(void *HostDst, const void *DeviceSrc, size_t Bytes) = 0;
  virtual void copyFromHost(void *DeviceDst, const void *HostSrc, size_t Bytes) = 0;
  /// Device to device; the ranges must not overlap.
  virtual void copy(void *Dst, const void *Src, size_t Bytes) = 0;
  virtual void fill(float *Out, int64_t N, float Value) = 0;
  virtual void zero(void *Ptr, size_t Bytes) = 0;
  /// Waits for every kernel issued so far. False when an error is pending.
  virtual bool synchronize() = 0;

  bool hasError() const { return !FirstError.empty(); }
  /// The first error since the last takeError(), or "" when there was none; clears it.
  std::string takeError();
  /// Keeps Why when no earlier error is pending. Composed kernels report through this too.
  void recordError(std::string Why);

  //===--- Conversions and matmul ----------------------------------------------===//

  virtual void castToBf16(uint16_t *Out, const float *In, int64_t N) = 0;
  virtual void castToF32(float *Out, const uint16_t *In, int64_t N) = 0;
  virtual void matmul(const MatmulArgs &Args) = 0;

  //===--- Bias and elementwise --------------------------------------------------===//

  /// Y[o, c, i] = X[o, c, i] + Bias[c]. Y may be X.
  virtual void biasAdd(float *Y, const float *X, const float *Bias, const ChannelShape &S) = 0;
  /// DBias[c] = sum over o and i of DY[o, c, i].
  virtual void biasGrad(float *DBias, const float *DY, const ChannelShape &S) = 0;
  /// Out = A + B. The gradient of add is DOut for both operands (use copy, or nothing).
  virtual void add(float *Out, const float *A, const float *B, int64_t N) = 0;
  /// Out = A * B (Out may alias either input).
  virtual void mul(float *Out, const float *A, const float *B, int64_t N) = 0;
  /// DA = DOut * B, DB = DOut * A; either output may be null when not needed.
  virtual void mulBackward(float *DA, float *DB, const float *DOut, const float *A, const float *B,
                           int64_t N) = 0;
  /// Out = Factor * In. Its own gradient: DIn = Factor * DOut.
  virtual void scale(float *Out, const float *In, float Factor, int64_t N) = 0;
  virtual void activationForward(Activation Kind, float *Y, const float *X, int64_t N) = 0;
  /// DX = DY * activation'(X), from the saved forward input as torch does.
  virtual void activationBackward(Activation Kind, float *DX, const float *DY, const float *X,
                                  int64_t N) = 0;

  //===--- Normalisation ---------------------------------------------------------===//

  /// Per row of X [Rows, Cols]: Mean, Rstd = 1 / sqrt(biased variance + Eps), and
  /// Y = (X - Mean) * Rstd * Gamma + Beta. Gamma or Beta may be null (1 and 0).
  virtual void layerNormForward(float *Y, float *Mean, float *Rstd, const float *X,
                                const float *Gamma, const float *Beta, int64_t Rows, int64_t Cols,
                                float Eps) = 0;
  /// DX from DY and the saved X, Mean, Rstd; DGamma and DBeta (sums over rows) may be null.
  virtual void layerNormBackward(float *DX, float *DGamma, float *DBeta, const float *DY,
                                 const float *X, const float *Mean, const float *Rstd,
                                 const float *Gamma, int64_t Rows, int64_t Cols) = 0;
  /// Rstd = 1 / sqrt(mean(X^2) + Eps) per row, Y = X * Rstd * Gamma (Gamma may be null).
  virtual void rmsNormForward(float *Y, float *Rstd, const float *X, const float *Gamma,
                              int64_t Rows, int64_t Cols, float Eps) = 0;
  virtual void rmsNormBackward(float *DX, float *DGamma, const float *DY, const float *X,
                               const float *Rstd, const float *Gamma, int64_t Rows,
                               int64_t Cols) = 0;

  //===--- Softmax and attention ---------------------------------------------------===//

  /// Softmax over the last dimension. Causal: the rows are consecutive [Cols, Cols] matrices
  /// and row i of each keeps columns 0..i (the rest become 0), the mask of causal attention.
  /// Y may be X.
  virtual void softmaxForward(float *Y, const float *X, int64_t Rows, int64_t Cols,
                              bool Causal) = 0;
  /// DX = Y * (DY - sum(DY * Y)) per row. DX may be DY.
  virtual void softmaxBackward(float *DX, const float *DY, const float *Y, int64_t Rows,
                               int64_t Cols) = 0;
  /// Memory-efficient attention (FlashAttention-style online softmax over key tiles): saves
  /// only Lse [B, H, T], the natural-log sum of exp(scale * q.k) per query row. HeadDim must
  /// be at most MaxTiledHeadDim.
  virtual void attentionForwardTiled(float *O, float *Lse, const float *Q, const float *K,
                                     const float *V, const AttentionShape &S) = 0;
  /// Recomputes the probabilities from Lse. Delta is a workspace of S.rows() floats (rowsum of
  /// DO * O, FlashAttention-2's D), as the real kernels allocate it.
  virtual void attentionBackwardTiled(float *DQ, float *DK, float *DV, float *Delta,
                                      const float *DO, const float *Q, const float *K,
                                      const float *V, const float *O, const float *Lse,
                                      const AttentionShape &S) = 0;

  //===--- Embedding, loss, dropout --------------------------------------------------===//

  /// Out[i] = Weight[Ids[i]], Weight [Vocab, Dim]. Ids outside [0, Vocab) give zero rows
  /// (torch raises; callers check ids on the host).
  virtual void embeddingForward(float *Out, const float *Weight, const int64_t *Ids, int64_t NumIds,
                                int64_t Vocab, int64_t Dim) = 0;
  /// DWeight[Ids[i]] += DOut[i]: accumulates, so zero DWeight first. The CUDA twin uses
  /// atomics, so repeated ids sum in an unspecified order.
  virtual void embeddingBackward(float *DWeight, const float *DOut, const int64_t *Ids,
                                 int64_t NumIds, int64_t Vocab, int64_t Dim) = 0;
  /// LogProbs [Rows, Classes] = log_softmax(Logits) (saved for backward); Loss[0] = mean of
  /// -LogProbs[r, Targets[r]] over rows whose target is not IgnoreIndex; TotalWeight[0] = the
  /// number of those rows (nll_loss's total_weight; NaN loss when it is 0, as torch). Targets
  /// outside [0, Classes) count as ignored.
  virtual void crossEntropyForward(float *LogProbs, float *Loss, float *TotalWeight,
                                   const float *Logits, const int64_t *Targets, int64_t Rows,
                                   int64_t Classes, int64_t IgnoreIndex) = 0;
  /// DLogits = (softmax - onehot) * DLoss / TotalWeight[0]; ignored rows get 0.
  virtual void crossEntropyBackward(float *DLogits, const float *LogProbs, const int64_t *Targets,
                                    const float *TotalWeight, int64_t Rows, int64_t Classes,
                                    int64_t IgnoreIndex, float DLoss) = 0;
  /// Mask[i] = uniformFloat(Seed, Offset + i) >= P, Y = X * Mask / (1 - P) (0 when P == 1).
  /// The mask is identical on every twin for the same Seed and Offset.
  virtual void dropoutForward(float *Y, uint8_t *Mask, const float *X, int64_t N, float P,
                              uint64_t Seed, uint64_t Offset) = 0;
  virtual void dropoutBackward(float *DX, const float *DY, const uint8_t *Mask, int64_t N,
                               float P) = 0;

  //===--- Optimizers ----------------------------------------------------------------===//

  /// One torch.optim.AdamW (or Adam) step, in place.
  virtual void adamStep(float *Param, const float *Grad, float *ExpAvg, float *ExpAvgSq, int64_t N,
                        const AdamOptions &O) = 0;
  /// One step of bitsandbytes' 8-bit blockwise Adam: per block of 256, dequantize both
  /// states, update them, take the new absmax, update Param, requantize. Zeroed codes and
  /// absmax are a valid initial state (dequantizes to 0). A non-finite gradient element
  /// leaves its parameter alone and zeroes its states, as bitsandbytes does.
  virtual void adam8bitStep(float *Param, const float *Grad, const Adam8bitState &State, int64_t N,
                            const AdamOptions &O) = 0;

  //===--- GaLore and convolution helpers ----------------------------------------------===//

  /// Out[i] = normalFloat(Seed, Offset + i).
  virtual void fillNormal(float *Out, int64_t N, uint64_t Seed, uint64_t Offset) = 0;
  /// Orthonormalises the columns of A [Rows, Cols] in place by modified Gram-Schmidt. A column
  /// that becomes zero (A rank-deficient) stays zero.
  virtual void orthonormalizeColumns(float *A, int64_t Rows, int64_t Cols) = 0;
  /// The im2col matrix [columnRows(), columnCols()] of one image [InChannels, H, W]; row
  /// (c, r, s) holds input pixel (c, oh*stride - pad + r*dilation, ...) per output pixel, zero
  /// in the padding. Groups are consecutive row blocks.
  virtual void im2col(float *Col, const float *Image, const ConvShape &S) = 0;
  /// The adjoint of im2col: Image (overwritten) sums every column entry that came from it.
  virtual void col2im(float *Image, const float *Col, const ConvShape &S) = 0;

protected:
  Device() = default;

private:
  std::string FirstError;
};

//===----------------------------------------------------------------------===//
// Kernels composed from the Device primitives (Kernels.cpp), shared by both twins
//===----------------------------------------------------------------------===//

/// Naive attention as eager PyTorch runs it: P [B, H, T, T] = softmax(scale Q K^T, causal
/// mask), O = P V. P is saved for backward.
void attentionForwardNaive(Device &D, float *O, float *P, const float *Q, const float *K,
                           const float *V, const AttentionShape &S);
/// DScores is a workspace of S.probabilityElements() floats (the gradient of the scores that
/// eager PyTorch materialises).
void attentionBackwardNaive(Device &D, float *DQ, float *DK, float *DV, float *DScores,
                            const float *DO, const float *Q, const float *K, const float *V,
                            const float *P, const AttentionShape &S);

/// A LoRA adapter on a linear layer: A [Rank, InFeatures], B [OutFeatures, Rank], scaled by
/// Alpha / Rank as PEFT does.
struct LoraShape {
  int64_t Tokens = 0, InFeatures = 0, OutFeatures = 0, Rank = 0;
  float Alpha = 1.0f;
  float scaling() const { return Alpha / static_cast<float>(Rank); }
};

/// XA [Tokens, Rank] = X A^T (saved for backward); Out (+)= scaling * XA B^T. With
/// AccumulateOut the adapter adds onto the frozen layer's output already in Out.
void loraForward(Device &D, float *Out, float *XA, const float *X, const float *A, const float *B,
                 const LoraShape &S, bool AccumulateOut);
/// DB = scaling DOut^T XA, DXA = scaling DOut B, DA = DXA^T X, DX (+)= DXA A. DXA is a
/// workspace of Tokens * Rank floats. DX may be null (input needs no gradient).
void loraBackward(Device &D, float *DX, float *DA, float *DB, float *DXA, const float *DOut,
                  const float *X, const float *XA, const float *A, const float *B,
                  const LoraShape &S, bool AccumulateDX);

/// GaLore (Zhao et al. 2024): R [Rank, N] = P^T G for a gradient G [M, N] and projector
/// P [M, Rank].
void galoreProject(Device &D, float *R, const float *P, const float *G, int64_t M, int64_t N,
                   int64_t Rank);
/// Out [M, N] = Scale * P R: the low-rank update back in the weight's shape.
void galoreProjectBack(Device &D, float *Out, const float *P, const float *R, int64_t M, int64_t N,
                       int64_t Rank, float Scale);
/// A new projector P [M, Rank] with orthonormal columns spanning (approximately) the top-Rank
/// left singular subspace of G, by the randomized range finder with power iterations (Halko,
/// Martinsson and Tropp 2011, Algorithm 4.4): Gaussian sketch, Y = G Omega, orthonormalise,
/// then (G G^T)^q. Sketch is a workspace of N * Rank floats.
void galoreUpdateProjector(Device &D, float *P, float *Sketch, const float *G, int64_t M, int64_t N,
                           int64_t Rank, uint64_t Seed, int PowerIterations = 1);

/// The im2col workspace of the conv2d functions: one image's columns.
size_t conv2dWorkspaceBytes(const ConvShape &S);
/// Out = conv2d(Input, Weight) + Bias (Bias may be null), image by image: im2col, then one
/// matmul batched over groups.
void conv2dForward(Device &D, float *Out, float *Workspace, const float *Input, const float *Weight,
                   const float *Bias, const ConvShape &S);
/// DInput by W^T DOut into the workspace, then col2im.
void conv2dBackwardData(Device &D, float *DInput, float *Workspace, const float *DOut,
                        const float *Weight, const ConvShape &S);
/// DWeight = sum over images of DOut im2col(Input)^T; DBias (may be null) = channel sums.
void conv2dBackwardWeight(Device &D, float *DWeight, float *DBias, float *Workspace,
                          const float *DOut, const float *Input, const ConvShape &S);

/// bitsandbytes' dynamic quantization map (create_dynamic_map with max_exponent_bits=7,
/// total_bits=8): 256 sorted values in [-1, 1] (Signed, for exp_avg) or [0, 1] (for
/// exp_avg_sq).
std::array<float, 256> dynamicQuantizationMap(bool Signed);
/// Bytes of one 8-bit state of N values: N codes + 4 * ceil(N / 256) absmax bytes.
int64_t adam8bitStateBytes(int64_t N);
/// The per-step scalars both Adam kernels use.
AdamScalars adamScalars(const AdamOptions &O);

//===----------------------------------------------------------------------===//
// Devices
//===----------------------------------------------------------------------===//

std::unique_ptr<Device> makeHostDevice();
/// The CUDA twin on GPU Index, or nullptr with the CUDA runtime's reason in Why (no driver,
/// no such GPU, or "built without CUDA").
std::unique_ptr<Device> makeCudaDevice(int Index, std::string &Why);

} // namespace trainmem::kernels

#endif
