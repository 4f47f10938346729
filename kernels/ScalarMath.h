//===- ScalarMath.h - per-element formulas shared by both kernel twins -*- C++ -*-===//
//
// The host and CUDA twins compile these formulas from the same source, so that what they
// compute per element is the same expression: bf16 rounding, the counter-based random numbers
// behind dropout masks and Gaussian sketches (bit-identical on both twins: integer arithmetic
// only), the activations and their derivatives, the Adam element updates of torch.optim and of
// bitsandbytes, and the nearest-code search of 8-bit quantization. Under nvcc every function is
// __host__ __device__; elsewhere they are plain inline functions. Nothing here allocates.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_KERNELS_SCALARMATH_H
#define TRAINMEM_KERNELS_SCALARMATH_H

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TRAINMEM_HD __host__ __device__ inline
#else
#define TRAINMEM_HD inline
#endif

namespace trainmem::kernels {

//===----------------------------------------------------------------------===//
// bf16
//===----------------------------------------------------------------------===//

TRAINMEM_HD uint32_t floatBits(float F) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(F);
#else
  uint32_t Bits;
  std::memcpy(&Bits, &F, sizeof(Bits));
  return Bits;
#endif
}

TRAINMEM_HD float floatFromBits(uint32_t Bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(Bits);
#else
  float F;
  std::memcpy(&F, &Bits, sizeof(F));
  return F;
#endif
}

/// Rounds to the nearest bf16, ties to even, as c10::BFloat16's round_to_nearest_even does.
/// A NaN stays a (quiet) NaN instead of rounding up into infinity.
TRAINMEM_HD uint16_t floatToBf16(float F) {
  uint32_t Bits = floatBits(F);
  if ((Bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((Bits >> 16) | 0x0040u);
  uint32_t RoundingBias = 0x7fffu + ((Bits >> 16) & 1u);
  return static_cast<uint16_t>((Bits + RoundingBias) >> 16);
}

/// bf16 is the upper half of an fp32, so widening is exact.
TRAINMEM_HD float bf16ToFloat(uint16_t Half) { return floatFromBits(uint32_t(Half) << 16); }

//===----------------------------------------------------------------------===//
// Counter-based random numbers
//===----------------------------------------------------------------------===//

/// SplitMix64's finaliser (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; constants as in Vigna's splitmix64.c).
TRAINMEM_HD uint64_t mix64(uint64_t Z) {
  Z = (Z ^ (Z >> 30)) * 0xbf58476d1ce4e5b9ull;
  Z = (Z ^ (Z >> 27)) * 0x94d049bb133111ebull;
  return Z ^ (Z >> 31);
}

/// The Counter-th output of the SplitMix64 stream that Seed selects. Being a pure function of
/// (Seed, Counter), element i of a mask needs no state from elements before it, which is what
/// lets one CUDA thread per element and a host loop produce the same bits.
TRAINMEM_HD uint64_t randomBits(uint64_t Seed, uint64_t Counter) {
  // The seed goes through the finaliser first so that neighbouring seeds give unrelated
  // streams rather than the same stream shifted by one counter.
  return mix64(mix64(Seed) + (Counter + 1) * 0x9e3779b97f4a7c15ull);
}

/// Uniform in [0, 1) with 24 random bits: every value is an exact float, so comparisons with
/// the dropout probability decide identically on every twin.
TRAINMEM_HD float uniformFloat(uint64_t Seed, uint64_t Counter) {
  return static_cast<float>(randomBits(Seed, Counter) >> 40) * 5.9604644775390625e-08f;
}

/// Standard normal by Box-Muller from counters 2*Counter and 2*Counter+1. Twins agree to the
/// last bits of logf/cosf, not bit for bit.
TRAINMEM_HD float normalFloat(uint64_t Seed, uint64_t Counter) {
  // U1 in (0, 1]: log(0) must not occur.
  float U1 =
      static_cast<float>((randomBits(Seed, 2 * Counter) >> 40) + 1) * 5.9604644775390625e-08f;
  float U2 = uniformFloat(Seed, 2 * Counter + 1);
  return sqrtf(-2.0f * logf(U1)) * cosf(6.283185307179586f * U2);
}

//===----------------------------------------------------------------------===//
// Activations
//===----------------------------------------------------------------------===//

enum class Activation : uint8_t {
  Relu,
  GeluErf,  ///< 0.5 x (1 + erf(x / sqrt 2)), torch's approximate='none'
  GeluTanh, ///< 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), approximate='tanh'
  Silu,     ///< x * sigmoid(x)
};

TRAINMEM_HD float activate(Activation Kind, float X) {
  switch (Kind) {
  case Activation::Relu:
    return X > 0.0f ? X : 0.0f;
  case Activation::GeluErf:
    return 0.5f * X * (1.0f + erff(X * 0.70710678118654752f));
  case Activation::GeluTanh: {
    float Inner = 0.79788456080286536f * (X + 0.044715f * X * X * X);
    return 0.5f * X * (1.0f + tanhf(Inner));
  }
  case Activation::Silu:
    return X / (1.0f + expf(-X));
  }
  return X;
}

/// d activate(X) / dX, evaluated at the forward input as torch's *_backward kernels do.
TRAINMEM_HD float activationDerivative(Activation Kind, float X) {
  switch (Kind) {
  case Activation::Relu:
    return X > 0.0f ? 1.0f : 0.0f;
  case Activation::GeluErf: {
    float Cdf = 0.5f * (1.0f + erff(X * 0.70710678118654752f));
    float Pdf = 0.39894228040143268f * expf(-0.5f * X * X);
    return Cdf + X * Pdf;
  }
  case Activation::GeluTanh: {
    float Inner = 0.79788456080286536f * (X + 0.044715f * X * X * X);
    float Tanh = tanhf(Inner);
    float InnerDerivative = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * X * X);
    return 0.5f * (1.0f + Tanh) + 0.5f * X * (1.0f - Tanh * Tanh) * InnerDerivative;
  }
  case Activation::Silu: {
    float Sigmoid = 1.0f / (1.0f + expf(-X));
    return Sigmoid * (1.0f + X * (1.0f - Sigmoid));
  }
  }
  return 1.0f;
}

//===----------------------------------------------------------------------===//
// Optimizers
//===----------------------------------------------------------------------===//

/// The scalars of one Adam step, computed once on the host (adamScalars() in Kernels.cpp) the
/// way the reference implementations compute them before touching any tensor.
struct AdamScalars {
  float Lr = 1e-3f;
  float Beta1 = 0.9f;
  float Beta2 = 0.999f;
  float Eps = 1e-8f;
  float WeightDecay = 0.0f;
  bool Decoupled = true;
  // torch.optim (Python floats, i.e. double, rounded once to float).
  float OneMinusBeta1 = 0.1f;
  float OneMinusBeta2 = 0.001f;
  float DecayFactor = 1.0f;         ///< 1 - lr * weight_decay
  float StepSize = 0.0f;            ///< lr / (1 - beta1^step)
  float BiasCorrection2Sqrt = 1.0f; ///< sqrt(1 - beta2^step)
  // bitsandbytes' kOptimizerStatic8bit2StateBlockwise (float arithmetic).
  float Bnb8bitStepSize = 0.0f;    ///< -lr * correction2 / correction1
  float Bnb8bitCorrection2 = 1.0f; ///< sqrtf(1 - beta2^step)
};

/// One element of torch.optim.AdamW (Decoupled) or Adam with L2 weight decay, following
/// _single_tensor_adam in torch/optim/adam.py (which AdamW shares): decay, then
/// exp_avg.lerp_(grad, 1 - beta1), exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2),
/// denom = sqrt(exp_avg_sq) / sqrt(bias_correction2) + eps, param.addcdiv_(exp_avg, denom,
/// -step_size).
TRAINMEM_HD void adamElement(float &Param, float Grad, float &ExpAvg, float &ExpAvgSq,
                             const AdamScalars &S) {
  if (S.WeightDecay != 0.0f) {
    if (S.Decoupled)
      Param *= S.DecayFactor;
    else
      Grad += S.WeightDecay * Param;
  }
  // lerp_ picks its formula by weight to stay exact at both ends (ATen's lerp kernel).
  if (S.OneMinusBeta1 < 0.5f)
    ExpAvg = ExpAvg + S.OneMinusBeta1 * (Grad - ExpAvg);
  else
    ExpAvg = Grad - (Grad - ExpAvg) * (1.0f - S.OneMinusBeta1);
  ExpAvgSq = ExpAvgSq * S.Beta2 + S.OneMinusBeta2 * Grad * Grad;
  float Denom = sqrtf(ExpAvgSq) / S.BiasCorrection2Sqrt + S.Eps;
  Param = Param + (-S.StepSize) * (ExpAvg / Denom);
}

/// The state update of bitsandbytes' 8-bit blockwise Adam on dequantized values
/// (csrc/kernels.cu, kOptimizerStatic8bit2StateBlockwise): s1 = s1 b1 + (1 - b1) g,
/// s2 = s2 b2 + (1 - b2) g^2. The parameter update comes after the new block absmax is known
/// and is adam8bitParam().
TRAINMEM_HD void adam8bitStates(float Grad, float &S1, float &S2, const AdamScalars &S) {
  S2 = S2 * S.Beta2 + (1.0f - S.Beta2) * Grad * Grad;
  S1 = S1 * S.Beta1 + (1.0f - S.Beta1) * Grad;
}

/// bitsandbytes applies weight decay after the Adam update and always decoupled, for Adam8bit
/// and AdamW8bit alike (the same blockwise kernel runs both).
TRAINMEM_HD float adam8bitParam(float Param, float S1, float S2, const AdamScalars &S) {
  Param = Param + S.Bnb8bitStepSize * (S1 / (sqrtf(S2) + S.Bnb8bitCorrection2 * S.Eps));
  if (S.WeightDecay > 0.0f)
    Param = Param * (1.0f - S.Lr * S.WeightDecay);
  return Param;
}

/// Index of the entry of a sorted 256-entry code book nearest to X (ties to the lower index).
TRAINMEM_HD uint8_t nearestCode(const float *Map, float X) {
  // Lower bound: the first entry >= X.
  int Low = 0, High = 256;
  while (Low < High) {
    int Mid = (Low + High) / 2;
    if (Map[Mid] < X)
      Low = Mid + 1;
    else
      High = Mid;
  }
  if (Low == 256)
    return 255;
  if (Low == 0)
    return 0;
  return (X - Map[Low - 1] <= Map[Low] - X) ? static_cast<uint8_t>(Low - 1)
                                            : static_cast<uint8_t>(Low);
}

/// Quantizes Value / Absmax to Map. For the signed (exp_avg) map, bitsandbytes then moves a
/// code whose sign differs from the value's by one step, so momentum never flips sign through
/// quantization; the unsigned (exp_avg_sq) map has no such step.
TRAINMEM_HD uint8_t quantizeToMap(const float *Map, float Value, float Absmax, bool Signed) {
  float Normalized = Absmax > 0.0f ? Value / Absmax : 0.0f;
  uint8_t Code = nearestCode(Map, Normalized);
  // Sign bits compared as bits: std::signbit is not usable in device code everywhere.
  if (Signed && (floatBits(Map[Code]) >> 31) != (floatBits(Value) >> 31)) {
    if (Value > 0.0f && Code < 255)
      ++Code;
    else if (Value <= 0.0f && Code > 0)
      --Code;
  }
  return Code;
}

} // namespace trainmem::kernels

#endif
