//===- HostKernels.cpp - host twin: memory, matmul, elementwise, gathers -===//
//
// The host Device's memory (aligned operator new, so a tracking allocator above sees the same
// calls it would see on a GPU) and its simplest kernels: conversions, matmul, bias,
// elementwise ops and activations, dropout, embedding, Gaussian fill, im2col and col2im.
// Every loop visits elements in the order the CUDA twin sums them where that order is
// observable (col2im), so the twins agree bit for bit there.
//
//===----------------------------------------------------------------------------===//

#include "HostDevice.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace trainmem::kernels {

std::unique_ptr<Device> makeHostDevice() { return std::make_unique<HostDevice>(); }

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

static constexpr std::align_val_t HostAlignment{64};

void *HostDevice::allocate(size_t Bytes) {
  if (Bytes == 0)
    return nullptr;
  void *Ptr = ::operator new(Bytes, HostAlignment, std::nothrow);
  if (!Ptr)
    recordError("host: out of memory allocating " + std::to_string(Bytes) + " bytes");
  return Ptr;
}

void HostDevice::deallocate(void *Ptr, size_t) {
  if (Ptr)
    ::operator delete(Ptr, HostAlignment);
}

void HostDevice::copyToHost(void *HostDst, const void *DeviceSrc, size_t Bytes) {
  if (Bytes)
    std::memcpy(HostDst, DeviceSrc, Bytes);
}

void HostDevice::copyFromHost(void *DeviceDst, const void *HostSrc, size_t Bytes) {
  if (Bytes)
    std::memcpy(DeviceDst, HostSrc, Bytes);
}

void HostDevice::copy(void *Dst, const void *Src, size_t Bytes) {
  if (Bytes)
    std::memcpy(Dst, Src, Bytes);
}

void HostDevice::fill(float *Out, int64_t N, float Value) {
  if (N > 0)
    std::fill(Out, Out + N, Value);
}

void HostDevice::zero(void *Ptr, size_t Bytes) {
  if (Bytes)
    std::memset(Ptr, 0, Bytes);
}

//===----------------------------------------------------------------------===//
// Conversions and matmul
//===----------------------------------------------------------------------===//

void HostDevice::castToBf16(uint16_t *Out, const float *In, int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    Out[I] = floatToBf16(In[I]);
}

void HostDevice::castToF32(float *Out, const uint16_t *In, int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    Out[I] = bf16ToFloat(In[I]);
}

static float loadValue(const float *P, int64_t I) { return P[I]; }
static float loadValue(const uint16_t *P, int64_t I) { return bf16ToFloat(P[I]); }
static void storeValue(float *P, int64_t I, float V) { P[I] = V; }
static void storeValue(uint16_t *P, int64_t I, float V) { P[I] = floatToBf16(V); }

template <typename In, typename Out> static void matmulLoops(const MatmulArgs &Args) {
  // op(A)(i, k) = A[i * RowA + k * ColA], whichever way A is stored; likewise for B.
  int64_t RowA = Args.TransA ? 1 : Args.ldA(), ColA = Args.TransA ? Args.ldA() : 1;
  int64_t RowB = Args.TransB ? 1 : Args.ldB(), ColB = Args.TransB ? Args.ldB() : 1;
  int64_t LdC = Args.ldC();
  for (int64_t Entry = 0; Entry < Args.Batch; ++Entry) {
    const In *A = static_cast<const In *>(Args.A) + Entry * Args.strideA();
    const In *B = static_cast<const In *>(Args.B) + Entry * Args.strideB();
    Out *C = static_cast<Out *>(Args.C) + Entry * Args.strideC();
    for (int64_t I = 0; I < Args.M; ++I) {
      for (int64_t J = 0; J < Args.N; ++J) {
        float Acc = 0.0f;
        for (int64_t K = 0; K < Args.K; ++K)
          Acc += loadValue(A, I * RowA + K * ColA) * loadValue(B, K * RowB + J * ColB);
        float Result = Args.Alpha * Acc;
        if (Args.Beta != 0.0f)
          Result += Args.Beta * loadValue(C, I * LdC + J);
        storeValue(C, I * LdC + J, Result);
      }
    }
  }
}

void HostDevice::matmul(const MatmulArgs &Args) {
  if (std::string Why = Args.check(); !Why.empty())
    return recordError("matmul: " + Why);
  bool Bf16In = Args.InputType == DType::BF16, Bf16Out = Args.OutputType == DType::BF16;
  if (!Bf16In && !Bf16Out)
    matmulLoops<float, float>(Args);
  else if (!Bf16In)
    matmulLoops<float, uint16_t>(Args);
  else if (!Bf16Out)
    matmulLoops<uint16_t, float>(Args);
  else
    matmulLoops<uint16_t, uint16_t>(Args);
}

//===----------------------------------------------------------------------===//
// Bias and elementwise
//===----------------------------------------------------------------------===//

void HostDevice::biasAdd(float *Y, const float *X, const float *Bias, const ChannelShape &S) {
  for (int64_t O = 0; O < S.Outer; ++O)
    for (int64_t C = 0; C < S.Channels; ++C)
      for (int64_t I = 0; I < S.Inner; ++I) {
        int64_t Index = (O * S.Channels + C) * S.Inner + I;
        Y[Index] = X[Index] + Bias[C];
      }
}

void HostDevice::biasGrad(float *DBias, const float *DY, const ChannelShape &S) {
  for (int64_t C = 0; C < S.Channels; ++C) {
    float Sum = 0.0f;
    for (int64_t O = 0; O < S.Outer; ++O)
      for (int64_t I = 0; I < S.Inner; ++I)
        Sum += DY[(O * S.Channels + C) * S.Inner + I];
    DBias[C] = Sum;
  }
}

void HostDevice::add(float *Out, const float *A, const float *B, int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    Out[I] = A[I] + B[I];
}

void HostDevice::mul(float *Out, const float *A, const float *B, int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    Out[I] = A[I] * B[I];
}

void HostDevice::mulBackward(float *DA, float *DB, const float *DOut, const float *A,
                             const float *B, int64_t N) {
  for (int64_t I = 0; I < N; ++I) {
    // Read both inputs first: DA may alias B (or DB alias A) when buffers are reused.
    float G = DOut[I], AValue = A[I], BValue = B[I];
    if (DA)
      DA[I] = G * BValue;
    if (DB)
      DB[I] = G * AValue;
  }
}

void HostDevice::scale(float *Out, const float *In, float Factor, int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    Out[I] = Factor * In[I];
}

void HostDevice::activationForward(Activation Kind, float *Y, const float *X, int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    Y[I] = activate(Kind, X[I]);
}

void HostDevice::activationBackward(Activation Kind, float *DX, const float *DY, const float *X,
                                    int64_t N) {
  for (int64_t I = 0; I < N; ++I)
    DX[I] = DY[I] * activationDerivative(Kind, X[I]);
}

//===----------------------------------------------------------------------===//
// Embedding and dropout
//===----------------------------------------------------------------------===//

void HostDevice::embeddingForward(float *Out, const float *Weight, const int64_t *Ids,
                                  int64_t NumIds, int64_t Vocab, int64_t Dim) {
  for (int64_t I = 0; I < NumIds; ++I) {
    int64_t Id = Ids[I];
    for (int64_t D = 0; D < Dim; ++D)
      Out[I * Dim + D] = (Id >= 0 && Id < Vocab) ? Weight[Id * Dim + D] : 0.0f;
  }
}

void HostDevice::embeddingBackward(float *DWeight, const float *DOut, const int64_t *Ids,
                                   int64_t NumIds, int64_t Vocab, int64_t Dim) {
  for (int64_t I = 0; I < NumIds; ++I) {
    int64_t Id = Ids[I];
    if (Id < 0 || Id >= Vocab)
      continue;
    for (int64_t D = 0; D < Dim; ++D)
      DWeight[Id * Dim + D] += DOut[I * Dim + D];
  }
}

/// torch scales kept elements by 1 / (1 - p); with p == 1 nothing is kept and the scale is moot.
static float dropoutScale(float P) { return P < 1.0f ? 1.0f / (1.0f - P) : 0.0f; }

void HostDevice::dropoutForward(float *Y, uint8_t *Mask, const float *X, int64_t N, float P,
                                uint64_t Seed, uint64_t Offset) {
  if (!(P >= 0.0f && P <= 1.0f))
    return recordError("dropoutForward: p must lie in [0, 1], got " + std::to_string(P));
  float Scale = dropoutScale(P);
  for (int64_t I = 0; I < N; ++I) {
    bool Keep = uniformFloat(Seed, Offset + static_cast<uint64_t>(I)) >= P;
    Mask[I] = Keep ? 1 : 0;
    Y[I] = Keep ? X[I] * Scale : 0.0f;
  }
}

void HostDevice::dropoutBackward(float *DX, const float *DY, const uint8_t *Mask, int64_t N,
                                 float P) {
  if (!(P >= 0.0f && P <= 1.0f))
    return recordError("dropoutBackward: p must lie in [0, 1], got " + std::to_string(P));
  float Scale = dropoutScale(P);
  for (int64_t I = 0; I < N; ++I)
    DX[I] = Mask[I] ? DY[I] * Scale : 0.0f;
}

//===----------------------------------------------------------------------===//
// Random fill and convolution layout
//===----------------------------------------------------------------------===//

void HostDevice::fillNormal(float *Out, int64_t N, uint64_t Seed, uint64_t Offset) {
  for (int64_t I = 0; I < N; ++I)
    Out[I] = normalFloat(Seed, Offset + static_cast<uint64_t>(I));
}

void HostDevice::im2col(float *Col, const float *Image, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return recordError("im2col: " + Why);
  int64_t OH = S.outHeight(), OW = S.outWidth(), Pixels = OH * OW;
  for (int64_t C = 0; C < S.InChannels; ++C)
    for (int64_t Kh = 0; Kh < S.KernelH; ++Kh)
      for (int64_t Kw = 0; Kw < S.KernelW; ++Kw) {
        float *Row = Col + ((C * S.KernelH + Kh) * S.KernelW + Kw) * Pixels;
        for (int64_t Oh = 0; Oh < OH; ++Oh) {
          int64_t Ih = Oh * S.StrideH - S.PadH + Kh * S.DilationH;
          for (int64_t Ow = 0; Ow < OW; ++Ow) {
            int64_t Iw = Ow * S.StrideW - S.PadW + Kw * S.DilationW;
            bool Inside = Ih >= 0 && Ih < S.Height && Iw >= 0 && Iw < S.Width;
            Row[Oh * OW + Ow] = Inside ? Image[(C * S.Height + Ih) * S.Width + Iw] : 0.0f;
          }
        }
      }
}

void HostDevice::col2im(float *Image, const float *Col, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return recordError("col2im: " + Why);
  int64_t OH = S.outHeight(), OW = S.outWidth(), Pixels = OH * OW;
  // A gather per input pixel, kernel taps in increasing order: the CUDA twin runs this very
  // loop per thread, so both sum in the same order.
  for (int64_t C = 0; C < S.InChannels; ++C)
    for (int64_t Ih = 0; Ih < S.Height; ++Ih)
      for (int64_t Iw = 0; Iw < S.Width; ++Iw) {
        float Sum = 0.0f;
        for (int64_t Kh = 0; Kh < S.KernelH; ++Kh) {
          int64_t Th = Ih + S.PadH - Kh * S.DilationH;
          if (Th < 0 || Th % S.StrideH != 0 || Th / S.StrideH >= OH)
            continue;
          for (int64_t Kw = 0; Kw < S.KernelW; ++Kw) {
            int64_t Tw = Iw + S.PadW - Kw * S.DilationW;
            if (Tw < 0 || Tw % S.StrideW != 0 || Tw / S.StrideW >= OW)
              continue;
            int64_t Row = (C * S.KernelH + Kh) * S.KernelW + Kw;
            Sum += Col[Row * Pixels + (Th / S.StrideH) * OW + Tw / S.StrideW];
          }
        }
        Image[(C * S.Height + Ih) * S.Width + Iw] = Sum;
      }
}

} // namespace trainmem::kernels
