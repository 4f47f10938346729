//===- ExecutorOptim.cpp - the optimizer step and zero_grad -------------------===//
//
// torch.optim.AdamW in its three implementations (fused=True: one kernel per parameter, no
// scratch; the for-loop and foreach ones as the elementwise ops they run, with their
// temporaries: sqrt and denom per parameter, or for all parameters at once), bitsandbytes'
// AdamW8bit (blockwise 8-bit states for tensors of at least 4,096 values, fp32 states
// below that, as its min_8bit_size) and galore-torch's GaLoreAdamW (a transformers AdamW
// run on the rank-r projection of each target weight's gradient, the projector refreshed
// every update gap).
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

kernels::AdamOptions ExecutorImpl::baseAdamOptions() const {
  kernels::AdamOptions Base;
  Base.Lr = Options.LearningRate;
  Base.Decoupled = Setup.Optimizer != OptimizerKind::Adam;
  Base.WeightDecay = Base.Decoupled ? 0.01 : 0.0;
  return Base;
}

llvm::Error ExecutorImpl::optimizerStep() {
  bool EightBit = Setup.Optimizer == OptimizerKind::AdamW8bit ||
                  Setup.Optimizer == OptimizerKind::PagedAdamW8bit;
  kernels::AdamOptions Base = baseAdamOptions();
  if (Setup.Galore)
    return galoreStep(Base);
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
      // torch.optim keeps `step` as a one-element fp32 tensor, on the device only when
      // fused (on the host otherwise: off a CUDA device's memory); bitsandbytes keeps a
      // Python int.
      if (!EightBit && (!Dev.isCuda() || Setup.Impl == OptimizerImpl::Fused))
        S.Step = State(1, ElemType::F32, "step");
    }
    bool Fused = EightBit || Setup.Impl == OptimizerImpl::Fused;
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

llvm::Error ExecutorImpl::galoreStep(const kernels::AdamOptions &Base) {
  // galore-torch 1.0's AdamW.step(), a copy of transformers' AdamW, run as Hugging Face's
  // Trainer and galore-torch's own training script group the parameters: the others
  // first, then the target weights, each group in model order. The loop's Python locals
  // (grad, denom, norm_grad) are mirrored by these three: each keeps its tensor until the
  // next parameter rebinds it, which frees the old one only once the new one exists.
  std::vector<size_t> Order;
  for (bool Targets : {false, true})
    for (size_t I = 0; I < Census.Parameters.size(); ++I)
      if (Census.Parameters[I].Trainable && ParamGrad[I].defined() &&
          isGaloreTarget(Census.Parameters[I], Setup) == Targets)
        Order.push_back(I);
  GaloreLocals Locals;
  for (size_t I : Order)
    galoreParamStep(I, Base, Locals);
  return deviceError("the GaLore optimizer step");
}

void ExecutorImpl::galoreParamStep(size_t I, const kernels::AdamOptions &Base,
                                   GaloreLocals &L) {
  XTensor &GradVar = L.Grad, &Denom = L.Denom, &NormGrad = L.NormGrad;
  const CensusParameter &P = Census.Parameters[I];
  Alloc.setOp("optimizer.step " + P.Name, P.LayerPath);
  ParamState &S = States[I];
  GradVar = ParamGrad[I]; // grad = p.grad
  const bool Target = isGaloreTarget(P, Setup);
  int64_t M = Target ? P.Shape[0] : 0, Cols = Target ? P.Shape[1] : 0;
  // galore-torch's 'std' projection: a tall gradient from the right (G Vh[:r]^T, m x r),
  // a wide one from the left (U[:, :r]^T G, r x n).
  const bool Right = M >= Cols;
  const int64_t K = std::min(M, Cols);
  const int64_t R = std::min<int64_t>(Setup.Galore->Rank, K);
  if (Target) {
    // project(grad, state["step"]) runs before the step is counted: it refreshes the
    // projector at steps 0, gap, 2 gap, ...
    bool Refresh = !S.Projector.defined() || S.Steps % Setup.Galore->UpdateGap == 0 ||
                   Options.GaloreRefreshEveryStep;
    if (Refresh)
      galoreRefresh(I, Right, R);
    const float *Proj = S.Projector.Buf->as<float>();
    const float *Grad = ParamGrad[I].Buf->as<float>();
    XTensor Low = alloc(Right ? Shape{M, R} : Shape{R, Cols}, ElemType::F32,
                        MemCategory::Temporaries, "GaLore projected gradient");
    if (Right)
      Dev.matmul(kernels::MatmulArgs::plain(M, R, Cols, false, false, Grad, Proj,
                                            Low.Buf->as<float>()));
    else
      kernels::galoreProject(Dev, Low.Buf->as<float>(), Proj, Grad, M, Cols, R);
    GradVar = Low;
  }
  const int64_t Len = GradVar.numel();
  if (!S.ExpAvg.defined()) {
    for (XTensor *St : {&S.ExpAvg, &S.ExpAvgSq}) {
      *St = alloc({Len}, ElemType::F32, MemCategory::OptimizerStates,
                  P.Name + (St == &S.ExpAvg ? " exp_avg" : " exp_avg_sq") +
                      (Target ? " (projected)" : ""));
      Dev.zero(St->Buf->data(), St->Buf->bytes());
    }
  }
  kernels::AdamOptions O = Base;
  O.Step = ++S.Steps;
  // exp_avg.mul_(b1).add_(grad, 1 - b1); exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2)
  const float *G = static_cast<const float *>(Host.read(*GradVar.Buf));
  float *Mom = static_cast<float *>(Host.write(*S.ExpAvg.Buf));
  float *Var = static_cast<float *>(Host.write(*S.ExpAvgSq.Buf));
  const float B1 = static_cast<float>(O.Beta1), B2 = static_cast<float>(O.Beta2);
  for (int64_t E = 0; E < Len; ++E) {
    Mom[E] = Mom[E] * B1 + G[E] * (1.0f - B1);
    Var[E] = Var[E] * B2 + G[E] * G[E] * (1.0f - B2);
  }
  Host.flush();
  // denom = exp_avg_sq.sqrt().add_(eps); norm_grad = exp_avg / denom
  const double Eps = O.Eps;
  Denom = unary(S.ExpAvgSq, ElemType::F32, [Eps](double X) { return std::sqrt(X) + Eps; },
                "denom");
  NormGrad = binary(S.ExpAvg, Denom, S.ExpAvg.Dims, ElemType::F32,
                    [](double A, double B) { return A / B; }, "norm_grad");
  if (Target) {
    // project_back: the product, then `full_rank_grad * self.scale`, a second tensor;
    // the product goes when the function returns, the projected norm_grad when the
    // result replaces it.
    const float *Proj = S.Projector.Buf->as<float>();
    XTensor Scaled;
    {
      XTensor Product = alloc({M, Cols}, ElemType::F32, MemCategory::Temporaries,
                              "GaLore update, projected back");
      if (Right)
        Dev.matmul(kernels::MatmulArgs::plain(M, Cols, R, false, true, NormGrad.Buf->as<float>(),
                                              Proj, Product.Buf->as<float>()));
      else
        kernels::galoreProjectBack(Dev, Product.Buf->as<float>(), Proj,
                                   NormGrad.Buf->as<float>(), M, Cols, R, 1.0f);
      Scaled = alloc({M, Cols}, ElemType::F32, MemCategory::Temporaries,
                     "GaLore update, scaled");
      Dev.scale(Scaled.Buf->as<float>(), Product.Buf->as<float>(), GaloreScale, M * Cols);
    }
    NormGrad = Scaled;
  }
  // p.add_(norm_grad, alpha=-step_size), the bias corrections folded into step_size;
  // then the decoupled decay, p.add_(p, alpha=-lr * weight_decay).
  double StepSize = O.Lr * std::sqrt(1.0 - std::pow(O.Beta2, static_cast<double>(O.Step))) /
                    (1.0 - std::pow(O.Beta1, static_cast<double>(O.Step)));
  int64_t N = P.NumElements;
  float *Param = static_cast<float *>(Host.write(*ParamValue[I].Buf));
  const float *U = static_cast<const float *>(Host.read(*NormGrad.Buf));
  float Decay = static_cast<float>(1.0 - O.Lr * O.WeightDecay);
  for (int64_t E = 0; E < N; ++E)
    Param[E] = (Param[E] - static_cast<float>(StepSize) * U[E]) * Decay;
  Host.flush();
}

void ExecutorImpl::galoreLayerWiseStep(size_t I) {
  // Trainer's layer-wise GaLore: an optimizer of its own per parameter, stepped in the
  // post-accumulate-grad hook, then zero_grad() (the gradient freed). Each step() call
  // has its own locals, gone when it returns.
  {
    GaloreLocals Fresh;
    galoreParamStep(I, baseAdamOptions(), Fresh);
  }
  ParamGrad[I] = {};
}

void ExecutorImpl::galoreRefresh(size_t I, bool Right, int64_t R) {
  // get_orthogonal_matrix: torch.linalg.svd(grad, full_matrices=False) copies its input
  // (the solver overwrites it) and returns U [m, k], S [k] and Vh [k, n]; galore-torch
  // keeps Vh[:r] (right) or U[:, :r] (left), views that keep the whole k x k factor alive,
  // drops the other factor and S when the function returns, and the old projector when the
  // new one is assigned. kernels/ has no SVD: the randomized range finder fills the kept
  // factor's first r columns (the span galore-torch's slice has); the rest is never read.
  const CensusParameter &P = Census.Parameters[I];
  ParamState &S = States[I];
  int64_t M = P.Shape[0], Cols = P.Shape[1], K = std::min(M, Cols), Large = std::max(M, Cols);
  const float *Grad = ParamGrad[I].Buf->as<float>();
  uint64_t Seed = Options.Seed + 7919 * static_cast<uint64_t>(S.Steps + 1);
  XTensor Kept = alloc({K, K}, ElemType::F32, MemCategory::Temporaries,
                       P.Name + " GaLore projector (the SVD factor its slice keeps)");
  {
    XTensor Input = alloc({M, Cols}, ElemType::F32, MemCategory::Temporaries,
                          "SVD input (a copy of the gradient)");
    Dev.copy(Input.Buf->data(), Grad, Input.Buf->bytes());
    XTensor Other = alloc({K, Large}, ElemType::F32, MemCategory::Temporaries,
                          "SVD factor galore-torch drops");
    XTensor Singular = alloc({K}, ElemType::F32, MemCategory::Temporaries, "singular values");
    float *Proj = Kept.Buf->as<float>();
    float *Work = Other.Buf->as<float>();
    const float *A = Input.Buf->as<float>();
    if (!Right) {
      kernels::galoreUpdateProjector(Dev, Proj, Work, A, M, Cols, R, Seed);
    } else {
      // The same steps on G^T: Y = G^T Omega [Cols, R], one power iteration, orthonormal.
      Dev.fillNormal(Work, M * R, Seed, 0);
      Dev.matmul(kernels::MatmulArgs::plain(Cols, R, M, true, false, A, Work, Proj));
      Dev.orthonormalizeColumns(Proj, Cols, R);
      Dev.matmul(kernels::MatmulArgs::plain(M, R, Cols, false, false, A, Proj, Work));
      Dev.matmul(kernels::MatmulArgs::plain(Cols, R, M, true, false, A, Work, Proj));
      Dev.orthonormalizeColumns(Proj, Cols, R);
    }
  }
  Alloc.recategorize(*Kept.Buf, MemCategory::OptimizerStates);
  S.Projector = Kept;
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
  if (S.Step.defined()) {
    float *Step = static_cast<float *>(Host.write(*S.Step.Buf));
    Step[0] += 1.0f;
  }
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
