//===- Kernels.cpp - argument checks and kernels composed from primitives -===//
//
// What both twins share: the Device base (sticky errors), argument checks, the per-step Adam
// scalars, bitsandbytes' quantization map, and the kernels that are compositions of Device
// primitives — naive attention, LoRA, GaLore and conv2d — so the host and CUDA twins run the
// same sequence of matmuls and the same buffers for them.
//
//===----------------------------------------------------------------------------===//

#include "Kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace trainmem::kernels {

size_t dtypeBytes(DType Type) { return Type == DType::F32 ? 4 : 2; }

//===----------------------------------------------------------------------===//
// Device
//===----------------------------------------------------------------------===//

Device::~Device() = default;

std::string Device::takeError() {
  std::string Error = std::move(FirstError);
  FirstError.clear();
  return Error;
}

void Device::recordError(std::string Why) {
  if (FirstError.empty())
    FirstError = std::move(Why);
}

//===----------------------------------------------------------------------===//
// Argument checks
//===----------------------------------------------------------------------===//

std::string MatmulArgs::check() const {
  if (M < 0 || N < 0 || K < 0 || Batch < 0)
    return "negative size (M=" + std::to_string(M) + ", N=" + std::to_string(N) +
           ", K=" + std::to_string(K) + ", Batch=" + std::to_string(Batch) + ")";
  if (Batch == 0 || M == 0 || N == 0)
    return "";
  if (!C || (K > 0 && (!A || !B)))
    return "null operand pointer";
  if (ldA() < (TransA ? M : K) || ldB() < (TransB ? K : N) || ldC() < N)
    return "leading dimension smaller than a row (ldA=" + std::to_string(ldA()) +
           ", ldB=" + std::to_string(ldB()) + ", ldC=" + std::to_string(ldC()) + ")";
  if (strideA() < 0 || strideB() < 0 || strideC() < 0)
    return "negative batch stride";
  return "";
}

float AttentionShape::scale() const {
  return Scale != 0.0f ? Scale : 1.0f / std::sqrt(static_cast<float>(HeadDim));
}

std::string AttentionShape::check() const {
  if (Batch < 1 || Heads < 1 || SeqLen < 1 || HeadDim < 1)
    return "attention sizes must be positive (B=" + std::to_string(Batch) +
           ", H=" + std::to_string(Heads) + ", T=" + std::to_string(SeqLen) +
           ", Dh=" + std::to_string(HeadDim) + ")";
  return "";
}

int64_t ConvShape::outHeight() const {
  return (Height + 2 * PadH - DilationH * (KernelH - 1) - 1) / StrideH + 1;
}

int64_t ConvShape::outWidth() const {
  return (Width + 2 * PadW - DilationW * (KernelW - 1) - 1) / StrideW + 1;
}

std::string ConvShape::check() const {
  if (Batch < 1 || InChannels < 1 || Height < 1 || Width < 1 || OutChannels < 1 || KernelH < 1 ||
      KernelW < 1)
    return "conv2d sizes must be positive";
  if (StrideH < 1 || StrideW < 1 || DilationH < 1 || DilationW < 1 || PadH < 0 || PadW < 0)
    return "conv2d stride and dilation must be positive and padding non-negative";
  if (Groups < 1 || InChannels % Groups != 0 || OutChannels % Groups != 0)
    return "conv2d groups (" + std::to_string(Groups) + ") must divide in channels (" +
           std::to_string(InChannels) + ") and out channels (" + std::to_string(OutChannels) + ")";
  if (Height + 2 * PadH < DilationH * (KernelH - 1) + 1 ||
      Width + 2 * PadW < DilationW * (KernelW - 1) + 1)
    return "conv2d kernel larger than the padded input";
  return "";
}

//===----------------------------------------------------------------------===//
// Optimizer scalars and the quantization map
//===----------------------------------------------------------------------===//

AdamScalars adamScalars(const AdamOptions &O) {
  AdamScalars S;
  S.Lr = static_cast<float>(O.Lr);
  S.Beta1 = static_cast<float>(O.Beta1);
  S.Beta2 = static_cast<float>(O.Beta2);
  S.Eps = static_cast<float>(O.Eps);
  S.WeightDecay = static_cast<float>(O.WeightDecay);
  S.Decoupled = O.Decoupled;
  // torch.optim computes these in Python floats and hands them to the tensor ops, which round
  // them to float once.
  double Step = static_cast<double>(O.Step);
  double BiasCorrection1 = 1.0 - std::pow(O.Beta1, Step);
  double BiasCorrection2 = 1.0 - std::pow(O.Beta2, Step);
  S.OneMinusBeta1 = static_cast<float>(1.0 - O.Beta1);
  S.OneMinusBeta2 = static_cast<float>(1.0 - O.Beta2);
  S.DecayFactor = static_cast<float>(1.0 - O.Lr * O.WeightDecay);
  S.StepSize = static_cast<float>(O.Lr / BiasCorrection1);
  S.BiasCorrection2Sqrt = static_cast<float>(std::sqrt(BiasCorrection2));
  // bitsandbytes computes its corrections in float inside the kernel.
  float StepF = static_cast<float>(O.Step);
  float Correction1 = 1.0f - std::pow(S.Beta1, StepF);
  S.Bnb8bitCorrection2 = std::sqrt(1.0f - std::pow(S.Beta2, StepF));
  S.Bnb8bitStepSize = -S.Lr * S.Bnb8bitCorrection2 / Correction1;
  return S;
}

/// torch.linspace(Start, End, Steps) in float32 as ATen's CPU kernel evaluates it: the first
/// half counts up from Start, the second half counts down from End.
static std::vector<float> linspaceF32(float Start, float End, int Steps) {
  std::vector<float> Values(Steps);
  float Step = (End - Start) / static_cast<float>(Steps - 1);
  int Halfway = Steps / 2;
  for (int I = 0; I < Steps; ++I)
    Values[I] = I < Halfway ? Start + Step * static_cast<float>(I)
                            : End - Step * static_cast<float>(Steps - I - 1);
  return Values;
}

std::array<float, 256> dynamicQuantizationMap(bool Signed) {
  // bitsandbytes/functional.py, create_dynamic_map(signed, max_exponent_bits=7,
  // total_bits=8) (github.com/bitsandbytes-foundation/bitsandbytes): for each exponent
  // 10^(i-6), i = 0..6, the midpoints of a linspace(0.1, 1) with 2^i + 1 points (2^(i+1) + 1
  // when unsigned, which spends the sign bit on precision), mirrored for the signed map; then
  // 0 and 1, sorted. Signed: 2 * 127 + 2 = 256 values; unsigned: 254 + 2. The extra "linear"
  // items of that function are 2^(7-7) - 1 = 0 here. Its float32 arithmetic is kept.
  constexpr int MaxExponentBits = 7;
  constexpr int NonSignBits = 7; // total_bits - 1 for both signs, as in the original
  std::vector<float> Data;
  for (int I = 0; I < MaxExponentBits; ++I) {
    int Shift = I + NonSignBits - MaxExponentBits + (Signed ? 0 : 1);
    int FractionItems = (1 << Shift) + 1;
    std::vector<float> Boundaries = linspaceF32(0.1f, 1.0f, FractionItems);
    float Power = static_cast<float>(std::pow(10.0, -(MaxExponentBits - 1) + I));
    for (int J = 0; J + 1 < FractionItems; ++J) {
      float Mean = (Boundaries[J] + Boundaries[J + 1]) / 2.0f;
      Data.push_back(Power * Mean);
      if (Signed)
        Data.push_back(-Power * Mean);
    }
  }
  Data.push_back(0.0f);
  Data.push_back(1.0f);
  Data.resize(256, 0.0f); // the original pads with zeros too (never needed for 8 bits)
  std::sort(Data.begin(), Data.end());
  std::array<float, 256> Map;
  std::copy(Data.begin(), Data.end(), Map.begin());
  return Map;
}

int64_t adam8bitStateBytes(int64_t N) {
  return N + 4 * ((N + QuantBlockSize - 1) / QuantBlockSize);
}

//===----------------------------------------------------------------------===//
// Naive attention
//===----------------------------------------------------------------------===//

/// A [T x T] or [T x Dh] product batched over B * H.
static MatmulArgs attentionMatmul(const AttentionShape &S, int64_t M, int64_t N, int64_t K,
                                  bool TransA, bool TransB, const float *A, const float *B,
                                  float *C, float Alpha) {
  MatmulArgs Args = MatmulArgs::plain(M, N, K, TransA, TransB, A, B, C, Alpha);
  Args.Batch = S.Batch * S.Heads;
  return Args;
}

void attentionForwardNaive(Device &D, float *O, float *P, const float *Q, const float *K,
                           const float *V, const AttentionShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return D.recordError("attentionForwardNaive: " + Why);
  int64_t T = S.SeqLen, Dh = S.HeadDim;
  D.matmul(attentionMatmul(S, T, T, Dh, false, true, Q, K, P, S.scale()));
  D.softmaxForward(P, P, S.rows(), T, S.Causal);
  D.matmul(attentionMatmul(S, T, Dh, T, false, false, P, V, O, 1.0f));
}

void attentionBackwardNaive(Device &D, float *DQ, float *DK, float *DV, float *DScores,
                            const float *DO, const float *Q, const float *K, const float *V,
                            const float *P, const AttentionShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return D.recordError("attentionBackwardNaive: " + Why);
  int64_t T = S.SeqLen, Dh = S.HeadDim;
  D.matmul(attentionMatmul(S, T, Dh, T, true, false, P, DO, DV, 1.0f));
  D.matmul(attentionMatmul(S, T, T, Dh, false, true, DO, V, DScores, 1.0f));
  // Masked entries have P = 0, so their score gradient is 0 without a second mask.
  D.softmaxBackward(DScores, DScores, P, S.rows(), T);
  D.matmul(attentionMatmul(S, T, Dh, T, false, false, DScores, K, DQ, S.scale()));
  D.matmul(attentionMatmul(S, T, Dh, T, true, false, DScores, Q, DK, S.scale()));
}

//===----------------------------------------------------------------------===//
// LoRA and GaLore
//===----------------------------------------------------------------------===//

static std::string checkLora(const LoraShape &S) {
  if (S.Tokens < 0 || S.InFeatures < 1 || S.OutFeatures < 1 || S.Rank < 1)
    return "LoRA sizes must be positive (rank " + std::to_string(S.Rank) + ")";
  return "";
}

void loraForward(Device &D, float *Out, float *XA, const float *X, const float *A, const float *B,
                 const LoraShape &S, bool AccumulateOut) {
  if (std::string Why = checkLora(S); !Why.empty())
    return D.recordError("loraForward: " + Why);
  D.matmul(MatmulArgs::plain(S.Tokens, S.Rank, S.InFeatures, false, true, X, A, XA));
  D.matmul(MatmulArgs::plain(S.Tokens, S.OutFeatures, S.Rank, false, true, XA, B, Out, S.scaling(),
                       AccumulateOut ? 1.0f : 0.0f));
}

void loraBackward(Device &D, float *DX, float *DA, float *DB, float *DXA, const float *DOut,
                  const float *X, const float *XA, const float *A, const float *B,
                  const LoraShape &S, bool AccumulateDX) {
  if (std::string Why = checkLora(S); !Why.empty())
    return D.recordError("loraBackward: " + Why);
  float Scaling = S.scaling();
  D.matmul(MatmulArgs::plain(S.OutFeatures, S.Rank, S.Tokens, true, false, DOut, XA, DB, Scaling));
  D.matmul(MatmulArgs::plain(S.Tokens, S.Rank, S.OutFeatures, false, false, DOut, B, DXA, Scaling));
  D.matmul(MatmulArgs::plain(S.Rank, S.InFeatures, S.Tokens, true, false, DXA, X, DA));
  if (DX)
    D.matmul(MatmulArgs::plain(S.Tokens, S.InFeatures, S.Rank, false, false, DXA, A, DX, 1.0f,
                         AccumulateDX ? 1.0f : 0.0f));
}

static std::string checkGalore(int64_t M, int64_t N, int64_t Rank) {
  if (M < 1 || N < 1 || Rank < 1 || Rank > std::min(M, N))
    return "GaLore needs 1 <= rank <= min(rows, cols) (M=" + std::to_string(M) +
           ", N=" + std::to_string(N) + ", rank=" + std::to_string(Rank) + ")";
  return "";
}

void galoreProject(Device &D, float *R, const float *P, const float *G, int64_t M, int64_t N,
                   int64_t Rank) {
  if (std::string Why = checkGalore(M, N, Rank); !Why.empty())
    return D.recordError("galoreProject: " + Why);
  D.matmul(MatmulArgs::plain(Rank, N, M, true, false, P, G, R));
}

void galoreProjectBack(Device &D, float *Out, const float *P, const float *R, int64_t M, int64_t N,
                       int64_t Rank, float Scale) {
  if (std::string Why = checkGalore(M, N, Rank); !Why.empty())
    return D.recordError("galoreProjectBack: " + Why);
  D.matmul(MatmulArgs::plain(M, N, Rank, false, false, P, R, Out, Scale));
}

void galoreUpdateProjector(Device &D, float *P, float *Sketch, const float *G, int64_t M, int64_t N,
                           int64_t Rank, uint64_t Seed, int PowerIterations) {
  if (std::string Why = checkGalore(M, N, Rank); !Why.empty())
    return D.recordError("galoreUpdateProjector: " + Why);
  D.fillNormal(Sketch, N * Rank, Seed, 0);
  D.matmul(MatmulArgs::plain(M, Rank, N, false, false, G, Sketch, P));
  D.orthonormalizeColumns(P, M, Rank);
  // Each power iteration sharpens the basis towards the dominant singular vectors; the
  // orthonormalisation between the two products keeps small singular values from drowning
  // in rounding (Halko et al., Algorithm 4.4).
  for (int I = 0; I < PowerIterations; ++I) {
    D.matmul(MatmulArgs::plain(N, Rank, M, true, false, G, P, Sketch));
    D.orthonormalizeColumns(Sketch, N, Rank);
    D.matmul(MatmulArgs::plain(M, Rank, N, false, false, G, Sketch, P));
    D.orthonormalizeColumns(P, M, Rank);
  }
}

//===----------------------------------------------------------------------===//
// conv2d
//===----------------------------------------------------------------------===//

size_t conv2dWorkspaceBytes(const ConvShape &S) {
  return static_cast<size_t>(S.columnRows() * S.columnCols()) * sizeof(float);
}

namespace {
/// The per-group sizes of a convolution's matmuls.
struct ConvGroupSizes {
  int64_t OutPerGroup; ///< Kg
  int64_t ColumnRows;  ///< (C / G) * KH * KW
  int64_t OutPixels;   ///< OH * OW
  int64_t InputImage;  ///< C * H * W
  int64_t OutputImage; ///< K * OH * OW

  explicit ConvGroupSizes(const ConvShape &S)
      : OutPerGroup(S.OutChannels / S.Groups),
        ColumnRows(S.InChannels / S.Groups * S.KernelH * S.KernelW), OutPixels(S.columnCols()),
        InputImage(S.InChannels * S.Height * S.Width), OutputImage(S.OutChannels * S.columnCols()) {
  }
};
} // namespace

void conv2dForward(Device &D, float *Out, float *Workspace, const float *Input, const float *Weight,
                   const float *Bias, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return D.recordError("conv2dForward: " + Why);
  ConvGroupSizes Z(S);
  for (int64_t Image = 0; Image < S.Batch; ++Image) {
    D.im2col(Workspace, Input + Image * Z.InputImage, S);
    // Out_g [Kg, OH*OW] = W_g [Kg, Cg*KH*KW] . Col_g, one batch entry per group.
    MatmulArgs Args = MatmulArgs::plain(Z.OutPerGroup, Z.OutPixels, Z.ColumnRows, false, false, Weight,
                                  Workspace, Out + Image * Z.OutputImage);
    Args.Batch = S.Groups;
    D.matmul(Args);
  }
  if (Bias)
    D.biasAdd(Out, Out, Bias, ChannelShape{S.Batch, S.OutChannels, Z.OutPixels});
}

void conv2dBackwardData(Device &D, float *DInput, float *Workspace, const float *DOut,
                        const float *Weight, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return D.recordError("conv2dBackwardData: " + Why);
  ConvGroupSizes Z(S);
  for (int64_t Image = 0; Image < S.Batch; ++Image) {
    // Col_g [Cg*KH*KW, OH*OW] = W_g^T . DOut_g
    MatmulArgs Args = MatmulArgs::plain(Z.ColumnRows, Z.OutPixels, Z.OutPerGroup, true, false, Weight,
                                  DOut + Image * Z.OutputImage, Workspace);
    Args.Batch = S.Groups;
    D.matmul(Args);
    D.col2im(DInput + Image * Z.InputImage, Workspace, S);
  }
}

void conv2dBackwardWeight(Device &D, float *DWeight, float *DBias, float *Workspace,
                          const float *DOut, const float *Input, const ConvShape &S) {
  if (std::string Why = S.check(); !Why.empty())
    return D.recordError("conv2dBackwardWeight: " + Why);
  ConvGroupSizes Z(S);
  for (int64_t Image = 0; Image < S.Batch; ++Image) {
    D.im2col(Workspace, Input + Image * Z.InputImage, S);
    // DW_g [Kg, Cg*KH*KW] += DOut_g . Col_g^T, summed over images through Beta.
    MatmulArgs Args = MatmulArgs::plain(Z.OutPerGroup, Z.ColumnRows, Z.OutPixels, false, true,
                                  DOut + Image * Z.OutputImage, Workspace, DWeight, 1.0f,
                                  Image == 0 ? 0.0f : 1.0f);
    Args.Batch = S.Groups;
    D.matmul(Args);
  }
  if (DBias)
    D.biasGrad(DBias, DOut, ChannelShape{S.Batch, S.OutChannels, Z.OutPixels});
}

} // namespace trainmem::kernels
