//===- ExecutorOptim.cpp - the optimizer step and zero_grad -------------------===//
//
// torch.optim.AdamW in its three implementations (fused=True: one kernel per parameter, no
// scratch; the for-loop and foreach ones as the elementwise ops they run, with their
// temporaries: sqrt and denom per parameter, or for all parameters at once), bitsandbytes'
// AdamW8bit (blockwise 8-bit states for tensors of at least 4,096 values, fp32 states
// below that, as its min_8bit_size) and galore-torch's GaLoreAdamW (Adam on the rank-r
// projection of each target weight's gradient, projector refreshed every update gap).
// States are created lazily in the first step, as PyTorch does.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include <cmath>

namespace trainmem::probe {

namespace {

/// bitsandbytes' min_8bit_size: smaller tensors keep fp32 states.
constexpr int64_t Min8bitSize = 4096;
/// galore-torch's default projection scale (the examples' --galore_scale 0.25).
constexpr float GaloreScale = 0.25f;

} // namespace

llvm::Error ExecutorImpl::optimizerStep() {
  bool EightBit = Setup.Optimizer == OptimizerKind::AdamW8bit ||
                  Setup.Optimizer == OptimizerKind::PagedAdamW8bit;
  kernels::AdamOptions Base;
  Base.Lr = Options.LearningRate;
  Base.Decoupled = Setup.Optimizer != OptimizerKind::Adam;
  Base.WeightDecay = Base.Decoupled ? 0.01 : 0.0;
  std::vector<size_t> ForeachParams;
  for (size_t I = 0; I < Census.Parameters.size(); ++I) {
    const CensusParameter &P = Census.Parameters[I];
    if (!P.Trainable || !ParamGrad[I].defined())
      continue;
    Alloc.setOp("optimizer.step " + P.Name, P.LayerPath);
    ParamState &S = States[I];
    float *Param = ParamValue[I].Buf->as<float>();
    const float *Grad = ParamGrad[I].Buf->as<float>();
    int64_t N = P.NumElements;
    kernels::AdamOptions O = Base;
    O.Step = ++S.Steps;
    auto State = [&](int64_t Elements, ElemType Type, const std::string &What) {
      XTensor T = alloc({Elements}, Type, MemCategory::OptimizerStates, P.Name + " " + What);
      Dev.zero(T.Buf->data(), T.Buf->bytes());
      return T;
    };
    if (Setup.Galore && isGaloreTarget(P, Setup)) {
      int64_t M = P.Shape[0], Cols = P.Shape[1];
      // galore-torch projects on the smaller side: a tall gradient from the right.
      bool Right = M >= Cols;
      int64_t Small = std::min(M, Cols), Large = std::max(M, Cols);
      int64_t R = std::min<int64_t>(Setup.Galore->Rank, Small);
      bool Refresh = !S.Projector.defined() || (S.Steps - 1) % Setup.Galore->UpdateGap == 0;
      if (!S.Projector.defined()) {
        S.Projector = State(Small * R, ElemType::F32, "GaLore projector");
        S.ExpAvg = State(R * Large, ElemType::F32, "exp_avg (projected)");
        S.ExpAvgSq = State(R * Large, ElemType::F32, "exp_avg_sq (projected)");
      }
      float *Proj = S.Projector.Buf->as<float>();
      if (Refresh) {
        // The top-r singular subspace of the gradient (galore-torch takes it from an
        // SVD); the randomized range finder of kernels/ gives it for a left projection,
        // and the same steps on G^T for a right one.
        uint64_t SeedNow = Options.Seed + 7919 * static_cast<uint64_t>(S.Steps);
        if (!Right) {
          XTensor Sketch = alloc({Cols * R}, ElemType::F32, MemCategory::Temporaries,
                                 "GaLore sketch");
          kernels::galoreUpdateProjector(Dev, Proj, Sketch.Buf->as<float>(), Grad, M, Cols, R,
                                         SeedNow);
        } else {
          XTensor Omega = alloc({M * R}, ElemType::F32, MemCategory::Temporaries,
                                "GaLore sketch");
          Dev.fillNormal(Omega.Buf->as<float>(), M * R, SeedNow, 0);
          // Y = G^T Omega [Cols, R]; one power iteration (G^T G) Y; orthonormalise.
          Dev.matmul(kernels::MatmulArgs::plain(Cols, R, M, true, false, Grad, Omega.Buf->as<float>(), Proj));
          Dev.orthonormalizeColumns(Proj, Cols, R);
          Dev.matmul(kernels::MatmulArgs::plain(M, R, Cols, false, false, Grad, Proj, Omega.Buf->as<float>()));
          Dev.matmul(kernels::MatmulArgs::plain(Cols, R, M, true, false, Grad, Omega.Buf->as<float>(), Proj));
          Dev.orthonormalizeColumns(Proj, Cols, R);
        }
      }
      // The projected gradient, Adam on it into a zeroed update, and the update back in
      // the weight's shape.
      XTensor Low = alloc({R * Large}, ElemType::F32, MemCategory::Temporaries,
                          "GaLore projected gradient");
      if (!Right)
        kernels::galoreProject(Dev, Low.Buf->as<float>(), Proj, Grad, M, Cols, R);
      else
        Dev.matmul(kernels::MatmulArgs::plain(M, R, Cols, false, false, Grad, Proj, Low.Buf->as<float>()));
      XTensor Update = zeros({R * Large}, ElemType::F32, "GaLore low-rank update");
      kernels::AdamOptions Inner = O;
      Inner.WeightDecay = 0.0;
      Dev.adamStep(Update.Buf->as<float>(), Low.Buf->as<float>(), S.ExpAvg.Buf->as<float>(),
                   S.ExpAvgSq.Buf->as<float>(), R * Large, Inner);
      XTensor Full = alloc({M * Cols}, ElemType::F32, MemCategory::Temporaries,
                           "GaLore full-rank update");
      if (!Right)
        kernels::galoreProjectBack(Dev, Full.Buf->as<float>(), Proj, Update.Buf->as<float>(), M,
                                   Cols, R, GaloreScale);
      else
        Dev.matmul(kernels::MatmulArgs::plain(M, Cols, R, false, true, Update.Buf->as<float>(), Proj,
                               Full.Buf->as<float>(), GaloreScale));
      Dev.add(Param, Param, Full.Buf->as<float>(), N);
      if (O.WeightDecay > 0)
        Dev.scale(Param, Param, static_cast<float>(1.0 - O.Lr * O.WeightDecay), N);
      continue;
    }
    if (EightBit && N >= Min8bitSize) {
      if (!SignedMapBuf.defined()) {
        // The code books live on the device beside the states (bitsandbytes' qmap1/2).
        std::array<float, 256> SignedMap = kernels::dynamicQuantizationMap(true);
        std::array<float, 256> UnsignedMap = kernels::dynamicQuantizationMap(false);
        SignedMapBuf = State(256, ElemType::F32, "8-bit signed code book");
        UnsignedMapBuf = State(256, ElemType::F32, "8-bit unsigned code book");
        Dev.copyFromHost(SignedMapBuf.Buf->data(), SignedMap.data(), 1024);
        Dev.copyFromHost(UnsignedMapBuf.Buf->data(), UnsignedMap.data(), 1024);
      }
      int64_t Blocks = (N + kernels::QuantBlockSize - 1) / kernels::QuantBlockSize;
      if (!S.Codes1.defined()) {
        S.Codes1 = State(N, ElemType::Bool, "state1 (8-bit)");
        S.Codes2 = State(N, ElemType::Bool, "state2 (8-bit)");
        S.Absmax1 = State(Blocks, ElemType::F32, "absmax1");
        S.Absmax2 = State(Blocks, ElemType::F32, "absmax2");
      }
      kernels::Adam8bitState St;
      St.ExpAvgCodes = S.Codes1.Buf->as<uint8_t>();
      St.ExpAvgAbsmax = S.Absmax1.Buf->as<float>();
      St.ExpAvgSqCodes = S.Codes2.Buf->as<uint8_t>();
      St.ExpAvgSqAbsmax = S.Absmax2.Buf->as<float>();
      St.SignedMap = SignedMapBuf.Buf->as<float>();
      St.UnsignedMap = UnsignedMapBuf.Buf->as<float>();
      Dev.adam8bitStep(Param, Grad, St, N, O);
      continue;
    }
    if (!S.ExpAvg.defined()) {
      S.ExpAvg = State(N, ElemType::F32, EightBit ? "state1" : "exp_avg");
      S.ExpAvgSq = State(N, ElemType::F32, EightBit ? "state2" : "exp_avg_sq");
      // torch.optim keeps `step` as a one-element fp32 tensor; bitsandbytes and GaLore's
      // AdamW keep a Python int.
      if (!EightBit && !Setup.Galore)
        S.Step = State(1, ElemType::F32, "step");
    }
    bool Fused = EightBit || Setup.Galore || Setup.Impl == OptimizerImpl::Fused;
    if (Fused) {
      Dev.adamStep(Param, Grad, S.ExpAvg.Buf->as<float>(), S.ExpAvgSq.Buf->as<float>(), N, O);
      continue;
    }
    adamMoments(I, O);
    if (Setup.Impl == OptimizerImpl::ForLoop) {
      // _single_tensor_adam: denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps),
      // the sqrt freed once the division made its result.
      XTensor Denom;
      {
        XTensor Sqrt = adamSqrt(I);
        Denom = adamDenom(I, Sqrt, O);
      }
      adamApply(I, Denom, O);
      continue;
    }
    ForeachParams.push_back(I);
  }
  if (!ForeachParams.empty()) {
    // _multi_tensor_adam: exp_avg_sq_sqrt = _foreach_sqrt(...) is a list of every
    // parameter's size; torch 1.13 then builds denom = _foreach_add(exp_avg_sq_sqrt, eps),
    // a second list, both alive until the step returns; 2.x divides and adds in place.
    Alloc.setOp("optimizer.step (foreach)");
    std::vector<XTensor> Sqrts, Denoms;
    for (size_t I : ForeachParams)
      Sqrts.push_back(adamSqrt(I));
    bool InPlace = Setup.torchVersionFor(G.SourceFormat) == TorchVersion::V2;
    for (size_t K = 0; K < ForeachParams.size(); ++K) {
      kernels::AdamOptions O = stepOptions(ForeachParams[K], Base);
      if (InPlace)
        adamDenomInPlace(Sqrts[K], O);
      else
        Denoms.push_back(adamDenom(ForeachParams[K], Sqrts[K], O));
    }
    for (size_t K = 0; K < ForeachParams.size(); ++K)
      adamApply(ForeachParams[K], InPlace ? Sqrts[K] : Denoms[K],
                stepOptions(ForeachParams[K], Base));
  }
  return deviceError("the optimizer step");
}

kernels::AdamOptions ExecutorImpl::stepOptions(size_t I, const kernels::AdamOptions &Base) const {
  kernels::AdamOptions O = Base;
  O.Step = States[I].Steps;
  return O;
}

void ExecutorImpl::adamMoments(size_t I, const kernels::AdamOptions &O) {
  // step_t += 1; param.mul_(1 - lr * weight_decay); exp_avg.lerp_(grad, 1 - beta1);
  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2): all in place.
  ParamState &S = States[I];
  int64_t N = ParamValue[I].numel();
  float *Step = static_cast<float *>(Host.write(*S.Step.Buf));
  Step[0] += 1.0f;
  float *P = static_cast<float *>(Host.write(*ParamValue[I].Buf));
  const float *Gr = static_cast<const float *>(Host.read(*ParamGrad[I].Buf));
  float *M = static_cast<float *>(Host.write(*S.ExpAvg.Buf));
  float *V = static_cast<float *>(Host.write(*S.ExpAvgSq.Buf));
  float Decay = static_cast<float>(1.0 - O.Lr * O.WeightDecay);
  float B1 = static_cast<float>(O.Beta1), B2 = static_cast<float>(O.Beta2);
  for (int64_t E = 0; E < N; ++E) {
    if (O.Decoupled)
      P[E] *= Decay;
    float G = O.Decoupled ? Gr[E] : Gr[E] + static_cast<float>(O.WeightDecay) * P[E];
    M[E] = M[E] * B1 + G * (1.0f - B1);
    V[E] = V[E] * B2 + G * G * (1.0f - B2);
  }
  Host.flush();
}

XTensor ExecutorImpl::adamSqrt(size_t I) {
  const XTensor &V = States[I].ExpAvgSq;
  return unary(V, ElemType::F32, [](double X) { return std::sqrt(X); }, "exp_avg_sq.sqrt()");
}

XTensor ExecutorImpl::adamDenom(size_t I, const XTensor &Sqrt, const kernels::AdamOptions &O) {
  double Correction2 = std::sqrt(1.0 - std::pow(O.Beta2, static_cast<double>(O.Step)));
  double Eps = O.Eps;
  (void)I;
  return unary(Sqrt, ElemType::F32, [Correction2, Eps](double X) { return X / Correction2 + Eps; },
               "adam denom");
}

void ExecutorImpl::adamDenomInPlace(const XTensor &Sqrt, const kernels::AdamOptions &O) {
  double Correction2 = std::sqrt(1.0 - std::pow(O.Beta2, static_cast<double>(O.Step)));
  int64_t N = Sqrt.numel();
  float *D = static_cast<float *>(Host.write(*Sqrt.Buf));
  for (int64_t E = 0; E < N; ++E)
    D[E] = static_cast<float>(D[E] / Correction2 + O.Eps);
  Host.flush();
}

void ExecutorImpl::adamApply(size_t I, const XTensor &Denom, const kernels::AdamOptions &O) {
  // param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
  double StepSize = O.Lr / (1.0 - std::pow(O.Beta1, static_cast<double>(O.Step)));
  int64_t N = ParamValue[I].numel();
  float *P = static_cast<float *>(Host.write(*ParamValue[I].Buf));
  const float *M = static_cast<const float *>(Host.read(*States[I].ExpAvg.Buf));
  const float *D = static_cast<const float *>(Host.read(*Denom.Buf));
  for (int64_t E = 0; E < N; ++E)
    P[E] -= static_cast<float>(StepSize) * M[E] / D[E];
  Host.flush();
}

void ExecutorImpl::zeroGrad() {
  Alloc.setOp("zero_grad");
  for (XTensor &G : ParamGrad) {
    if (!G.defined())
      continue;
    if (Setup.KeepGrads)
      Dev.zero(G.Buf->data(), G.Buf->bytes());
    else
      G = {};
  }
}

} // namespace trainmem::probe
