//===- ExecutorStep.cpp - the loss, the backward engine and one training step -===//
//
// The backward engine runs the tape in reverse: a node whose outputs got no gradient is
// dropped (its saved tensors with it); otherwise its closure computes the input gradients
// while the saved tensors are still held, then the engine releases the incoming gradients
// and the closure (release_variables) before handing the results on. A tensor that gets a
// second gradient has the two summed into a new tensor (InputBuffer::accumulate); a
// parameter's gradient waits in AccumulateGrad's buffer until all its uses delivered, and
// is then stolen when nothing else holds it.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

#include <algorithm>
#include <cmath>

namespace trainmem::probe {

static llvm::Error errorf(const std::string &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s", Msg.c_str());
}

//===----------------------------------------------------------------------===//
// Backward engine
//===----------------------------------------------------------------------===//

void ExecutorImpl::accumulateParamGrad(size_t P, XTensor Grad) {
  Alloc.setOp("AccumulateGrad " + Census.Parameters[P].Name);
  if (PendingParamGrad[P].defined()) {
    // InputBuffer::accumulate: a second gradient for one input is summed into a new
    // tensor and both are freed (the tied embedding / LM head weight).
    XTensor Sum = binary(PendingParamGrad[P], Grad, ParamValue[P].Dims, ElemType::F32,
                         [](double A, double B) { return A + B; }, "grad sum");
    PendingParamGrad[P] = {};
    Grad = Sum;
  }
  if (--GradUsesLeft[P] > 0) {
    PendingParamGrad[P] = std::move(Grad);
    return;
  }
  const XTensor &Value = ParamValue[P];
  if (!ParamGrad[P].defined()) {
    // AccumulateGrad steals a contiguous gradient nobody else holds; else it clones.
    bool Steal = Grad.Buf.use_count() == 1 && Grad.isContiguous() && Grad.Offset == 0 &&
                 Grad.Buf->bytes() == static_cast<size_t>(Value.bytes());
    XTensor Owned = Steal ? Grad : clone(Grad, "");
    Alloc.recategorize(*Owned.Buf, MemCategory::Gradients);
    ParamGrad[P] = Owned.view(Value.Dims, contiguousStrides(Value.Dims), 0);
    if (Setup.Galore && Setup.Galore->PerLayer)
      galoreLayerWiseStep(P);
    return;
  }
  // .grad += new_grad, in place (kept gradients, or a second backward).
  XTensor C = contiguous(Grad, "grad");
  Dev.add(ParamGrad[P].Buf->as<float>(), ParamGrad[P].Buf->as<float>(),
          C.Buf->as<float>() + C.Offset, Value.numel());
}

void ExecutorImpl::deliver(TensorId In, XTensor Grad, std::map<TensorId, XTensor> &Grads) {
  if (ParamOf[In] >= 0) {
    size_t P = static_cast<size_t>(ParamOf[In]);
    if (!Census.Parameters[P].Trainable)
      return;
    const XTensor &View = Persistent[In];
    if (Grad.Strides != View.Strides || Grad.Offset != View.Offset ||
        Grad.Buf->bytes() != static_cast<size_t>(ParamValue[P].bytes())) {
      // Lay the gradient out like the parameter's storage (a tied, transposed use).
      XTensor Laid = alloc(ParamValue[P].Dims, ElemType::F32, MemCategory::Temporaries,
                           "grad");
      XTensor Target = Laid.view(View.Dims, View.Strides, View.Offset);
      const float *Src = static_cast<const float *>(Host.read(*Grad.Buf));
      float *Dst = static_cast<float *>(Host.write(*Laid.Buf));
      forEachElement(View.Dims, {Grad.Strides, Target.Strides}, {Grad.Offset, Target.Offset},
                     [&](const std::vector<int64_t> &O) { Dst[O[1]] = Src[O[0]]; });
      Host.flush();
      Grad = Laid;
    } else {
      Grad = Grad.view(ParamValue[P].Dims, contiguousStrides(ParamValue[P].Dims), 0);
    }
    accumulateParamGrad(P, std::move(Grad));
    return;
  }
  auto It = Grads.find(In);
  if (It == Grads.end()) {
    Grads.emplace(In, std::move(Grad));
    return;
  }
  XTensor Sum = binary(It->second, Grad, It->second.Dims, ElemType::F32,
                       [](double A, double B) { return A + B; }, "grad sum");
  It->second = {};
  Grad = {};
  It->second = std::move(Sum);
}

llvm::Error ExecutorImpl::runBackward(Tape &T, std::map<TensorId, XTensor> &Grads) {
  // Deliveries each parameter expects from this tape (AccumulateGrad runs once all came).
  std::vector<int> Uses(Census.Parameters.size(), 0);
  for (const TapeNode &N : T)
    for (TensorId In : std::set<TensorId>(N.Inputs.begin(), N.Inputs.end()))
      if (In != NoTensor && ParamOf[In] >= 0)
        ++Uses[ParamOf[In]];
  for (size_t P = 0; P < Uses.size(); ++P)
    GradUsesLeft[P] += Uses[P];
  for (size_t I = T.size(); I-- > 0;) {
    TapeNode &N = T[I];
    std::vector<XTensor> OutGrads(N.Outputs.size());
    bool Any = false;
    for (size_t K = 0; K < N.Outputs.size(); ++K)
      if (auto It = Grads.find(N.Outputs[K]); It != Grads.end()) {
        OutGrads[K] = std::move(It->second);
        Grads.erase(It);
        Any = true;
      }
    if (!Any) {
      N.Backward = nullptr;
      for (TensorId In : std::set<TensorId>(N.Inputs.begin(), N.Inputs.end()))
        if (In != NoTensor && ParamOf[In] >= 0)
          --GradUsesLeft[ParamOf[In]];
      continue;
    }
    Alloc.setOp(N.Name, N.Layer);
    std::vector<XTensor> InGrads = N.Backward(OutGrads);
    Host.flush();
    if (Options.AfterEachOp)
      Options.AfterEachOp();
    if (auto Err = deviceError(N.Name + " backward"))
      return Err;
    if (!BackwardError.empty())
      return errorf(BackwardError);
    // The engine releases the node's incoming gradients and saved tensors when it returns.
    OutGrads.clear();
    N.Backward = nullptr;
    std::set<size_t> Delivered;
    for (size_t K = 0; K < N.Inputs.size() && K < InGrads.size(); ++K) {
      TensorId In = N.Inputs[K];
      if (In == NoTensor)
        continue;
      if (InGrads[K].defined())
        deliver(In, std::move(InGrads[K]), Grads);
      else if (ParamOf[In] >= 0 && Delivered.insert(static_cast<size_t>(ParamOf[In])).second)
        --GradUsesLeft[ParamOf[In]];
    }
  }
  T.clear();
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Loss and the step
//===----------------------------------------------------------------------===//

void ExecutorImpl::bindMicroBatch(int MicroBatch) {
  // The batch is materialised once; each micro-batch is a view of it (as the gt accum2
  // harness splits one batch into contiguous views).
  for (TensorId In : G.Inputs) {
    const XTensor &Full = FullInputs[In];
    int64_t Each = Full.numel() / std::max<int64_t>(Setup.GradAccum, 1);
    Shape Dims = G.Tensors[In].ShapeKnown ? G.Tensors[In].Shape : Shape{};
    Persistent[In] = Full.view(Dims, contiguousStrides(Dims), Each * MicroBatch);
  }
  LabelsView = Labels.view({LossRows}, {1}, LossRows * MicroBatch);
}

static std::string phaseOf(const char *Base, int MicroBatch, int64_t MicroBatches) {
  if (MicroBatches <= 1)
    return Base;
  return std::string(Base) + " (micro-batch " + std::to_string(MicroBatch + 1) + ")";
}

llvm::Expected<float> ExecutorImpl::step(bool RunOptimizer, bool Backward) {
  BackwardError.clear();
  float Total = 0;
  int64_t MicroBatches = std::max<int64_t>(Setup.GradAccum, 1);
  for (int MicroBatch = 0; MicroBatch < MicroBatches; ++MicroBatch) {
    auto Loss = microStep(MicroBatch, Backward);
    if (!Loss)
      return Loss.takeError();
    Total += *Loss / static_cast<float>(MicroBatches);
  }
  if (!Backward)
    return Total;
  if (RunOptimizer) {
    Alloc.setPhase("optimizer");
    if (auto Err = optimizerStep())
      return Err;
    Alloc.setPhase("zero_grad");
    zeroGrad();
  }
  if (auto Err = deviceError("the step"))
    return Err;
  ++StepsDone;
  return Total;
}

llvm::Expected<float> ExecutorImpl::microStep(int MicroBatch, bool Backward) {
  int64_t MicroBatches = std::max<int64_t>(Setup.GradAccum, 1);
  CurrentMicroBatch = MicroBatch;
  bindMicroBatch(MicroBatch);
  Alloc.setPhase(phaseOf("forward", MicroBatch, MicroBatches));
  Env E;
  Tape T;
  GradEnabled = TapeWanted = Backward;
  if (auto Err = forward(E, T))
    return Err;
  GradEnabled = TapeWanted = true;
  // F.cross_entropy = log_softmax (its fp32 output saved) + nll_loss (total_weight saved).
  Alloc.setOp("cross_entropy", "loss");
  XTensor LogitsV = contiguous(E.Values[Logits], "logits (contiguous)");
  // transformers' ForCausalLMLoss (Graph::LossShiftsLabels): the labels padded with -100 by
  // one position per sample, then `labels[..., 1:].contiguous()`, which nll_loss keeps as
  // its target; each row predicts the next token.
  XTensor Target = LabelsView, PaddedLabels;
  if (G.LossShiftsLabels) {
    const Shape &LD = G.Tensors[Logits].Shape;
    const int64_t Batch = LD.size() >= 3 ? LD[0] : 1, Seq = LossRows / std::max<int64_t>(Batch, 1);
    PaddedLabels = alloc({Batch, Seq + 1}, ElemType::I64, MemCategory::Temporaries,
                         "labels (padded)");
    Target = alloc({LossRows}, ElemType::I64, MemCategory::Temporaries, "shift_labels");
    const int64_t *Lab =
        static_cast<const int64_t *>(Host.read(*LabelsView.Buf)) + LabelsView.Offset;
    int64_t *Pad = static_cast<int64_t *>(Host.write(*PaddedLabels.Buf));
    for (int64_t B = 0; B < Batch; ++B) {
      std::copy(Lab + B * Seq, Lab + (B + 1) * Seq, Pad + B * (Seq + 1));
      Pad[B * (Seq + 1) + Seq] = -100;
    }
    Host.flush();
    const int64_t *PadR = static_cast<const int64_t *>(Host.read(*PaddedLabels.Buf));
    int64_t *Shifted = static_cast<int64_t *>(Host.write(*Target.Buf));
    for (int64_t B = 0; B < Batch; ++B)
      std::copy(PadR + B * (Seq + 1) + 1, PadR + (B + 1) * (Seq + 1), Shifted + B * Seq);
    Host.flush();
  }
  XTensor LogProbs = alloc({LossRows, LossClasses}, ElemType::F32, MemCategory::Temporaries,
                           "log_softmax(logits)");
  XTensor Loss = alloc({}, ElemType::F32, MemCategory::Temporaries, "loss");
  XTensor TotalWeight = alloc({}, ElemType::F32, MemCategory::Temporaries, "total_weight");
  Dev.crossEntropyForward(LogProbs.Buf->as<float>(), Loss.Buf->as<float>(),
                          TotalWeight.Buf->as<float>(), LogitsV.Buf->as<float>() + LogitsV.Offset,
                          Target.Buf->as<int64_t>() + Target.Offset, LossRows, LossClasses,
                          -100);
  PaddedLabels = {}; // when the loss function returns
  float LossValue = 0;
  Dev.copyToHost(&LossValue, Loss.Buf->data(), 4);
  // Accumulation divides each micro-batch's loss: `loss / K` keeps the divisor, a Python
  // number, as an 8-byte wrapped number until DivBackward.
  XTensor Divisor, Scaled;
  if (MicroBatches > 1) {
    Scaled = alloc({}, ElemType::F32, MemCategory::Temporaries, "loss / K");
    Dev.scale(Scaled.Buf->as<float>(), Loss.Buf->as<float>(),
              1.0f / static_cast<float>(MicroBatches), 1);
    if (Backward)
      Divisor = wrappedScalar(static_cast<double>(MicroBatches));
  }
  if (Backward) {
    save(LogProbs);
    save(TotalWeight);
    if (G.LossShiftsLabels)
      save(Target);
  }
  // The caller keeps only the loss: the logits, and the key/value cache with the other
  // outputs, go before backward.
  LogitsV = {};
  E.Values[Logits] = {};
  E.KvCache.clear();
  if (auto Err = deviceError("cross_entropy"))
    return Err;
  if (MicroBatch == 0)
    SavedAtEndOfForward = Alloc.live().Activations;
  if (!Backward) {
    T.clear();
    return LossValue;
  }
  Alloc.setPhase(phaseOf("backward", MicroBatch, MicroBatches));
  Alloc.setOp("NllLossBackward", "loss");
  XTensor Seed = alloc({}, ElemType::F32, MemCategory::Temporaries, "grad(loss)");
  Dev.fill(Seed.Buf->as<float>(), 1, 1.0f);
  float DLoss = 1.0f;
  if (MicroBatches > 1) {
    // DivBackward: grad / K into a new scalar; the divisor goes with the node.
    XTensor GradLoss = alloc({}, ElemType::F32, MemCategory::Temporaries, "grad(loss) / K");
    DLoss = 1.0f / static_cast<float>(MicroBatches);
    Dev.fill(GradLoss.Buf->as<float>(), 1, DLoss);
    Divisor = {};
    Seed = GradLoss;
  }
  // nll_loss_backward: zeros, then -1 / total_weight at each row's target.
  XTensor GradLogProbs = zeros({LossRows, LossClasses}, ElemType::F32, "grad(log_softmax)");
  {
    float Total = 0;
    Dev.copyToHost(&Total, TotalWeight.Buf->data(), 4);
    float *GL = static_cast<float *>(Host.write(*GradLogProbs.Buf));
    const int64_t *Lab = static_cast<const int64_t *>(Host.read(*Target.Buf)) + Target.Offset;
    for (int64_t R = 0; R < LossRows; ++R)
      if (Lab[R] != -100) // ignore_index
        GL[R * LossClasses + Lab[R]] = -DLoss / Total;
    Host.flush();
  }
  TotalWeight = {};
  Target = {}; // the nll node's saved target goes with it
  Alloc.setOp("LogSoftmaxBackward", "loss");
  // _log_softmax_backward_data: g - exp(logp) * sum(g), per row.
  XTensor GradLogits = alloc({LossRows, LossClasses}, ElemType::F32, MemCategory::Temporaries,
                             "grad(logits)");
  {
    const float *GL = static_cast<const float *>(Host.read(*GradLogProbs.Buf));
    const float *LP = static_cast<const float *>(Host.read(*LogProbs.Buf));
    float *DX = static_cast<float *>(Host.write(*GradLogits.Buf));
    for (int64_t R = 0; R < LossRows; ++R) {
      const float *G = GL + R * LossClasses, *L = LP + R * LossClasses;
      double Sum = 0;
      for (int64_t C = 0; C < LossClasses; ++C)
        Sum += G[C];
      for (int64_t C = 0; C < LossClasses; ++C)
        DX[R * LossClasses + C] = static_cast<float>(G[C] - std::exp(L[C]) * Sum);
    }
    Host.flush();
  }
  GradLogProbs = {};
  LogProbs = {};
  std::map<TensorId, XTensor> Grads;
  Grads[Logits] = GradLogits.view(G.Tensors[Logits].Shape,
                                  contiguousStrides(G.Tensors[Logits].Shape), 0);
  GradLogits = {};
  if (auto Err = runBackward(T, Grads))
    return Err;
  // Gradients no node consumed (batch inputs) and any AccumulateGrad still waiting.
  Grads.clear();
  for (size_t P = 0; P < PendingParamGrad.size(); ++P)
    if (PendingParamGrad[P].defined()) {
      GradUsesLeft[P] = 1;
      XTensor Pending = std::move(PendingParamGrad[P]);
      PendingParamGrad[P] = {};
      accumulateParamGrad(P, std::move(Pending));
    }
  std::fill(GradUsesLeft.begin(), GradUsesLeft.end(), 0);
  E.Values.clear();
  Seed = {};
  Loss = {};
  // The checkpoints' RNG states go with the graph, after the last backward node.
  CheckpointRngStates.clear();
  Scaled = {};
  Alloc.setOp("backward done");
  return LossValue;
}

} // namespace trainmem::probe
