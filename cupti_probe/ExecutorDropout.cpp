//===- ExecutorDropout.cpp - training-time dropout where the export lost it ------===//
//
// An eval-mode export keeps no Dropout node, so --dropout (or the probability an HF config
// declares) is applied where transformer blocks hold nn.Dropout: on the attention
// probabilities, on each residual branch's output projection, on the input of the block
// stack and at a classification head's own sites. As PyTorch runs it: on the CPU (1.13's
// unfused path) a mask in the input's dtype, `noise = empty_like(x).bernoulli_(1 -
// p).div_(1 - p)`, and `x * noise`; on CUDA native_dropout's bool mask. The backward keeps
// only the mask.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

namespace trainmem::probe {

void ExecutorImpl::planDropout() {
  // The simulator's sites (OpMemoryRules.h), each with its own probability.
  DropoutOps = dropoutSites(G, Ops, Setup.Dropout);
}

void ExecutorImpl::applyDropout(size_t OpI, XTensor &Value, Tape *T) {
  const SimOp &Op = Ops[OpI];
  TensorId Out = Op.Outputs[0];
  XTensor X = contiguous(Value, G.Tensors[Out].Name + " (contiguous)");
  int64_t N = X.numel();
  float P = static_cast<float>(DropoutOps.at(OpI));
  // One stream per step, micro-batch and op: a checkpoint's recompute draws the same mask,
  // as fork_rng makes PyTorch's do.
  uint64_t Offset = ((static_cast<uint64_t>(StepsDone) * 64 + CurrentMicroBatch) << 40) +
                    (static_cast<uint64_t>(OpI) << 24);
  XTensor Mask, Y = alloc(X.Dims, ElemType::F32, MemCategory::Temporaries,
                          G.Tensors[Out].Name + " (dropout)");
  if (Dev.isCuda()) {
    Mask = alloc(X.Dims, ElemType::Bool, MemCategory::Temporaries, "dropout mask");
    Dev.dropoutForward(Y.Buf->as<float>(), Mask.Buf->as<uint8_t>(), X.Buf->as<float>() + X.Offset,
                       N, P, Options.Seed, Offset);
  } else {
    Mask = alloc(X.Dims, ElemType::F32, MemCategory::Temporaries, "dropout mask");
    float *Noise = static_cast<float *>(Host.write(*Mask.Buf));
    float Scale = P < 1.0f ? 1.0f / (1.0f - P) : 0.0f;
    for (int64_t I = 0; I < N; ++I)
      Noise[I] = kernels::uniformFloat(Options.Seed, Offset + static_cast<uint64_t>(I)) >= P
                     ? Scale
                     : 0.0f;
    Host.flush();
    Dev.mul(Y.Buf->as<float>(), X.Buf->as<float>() + X.Offset, Mask.Buf->as<float>(), N);
  }
  Value = Y.view(G.Tensors[Out].Shape, contiguousStrides(G.Tensors[Out].Shape), 0);
  if (!T || !requiresGrad(Out))
    return;
  TapeNode Node;
  Node.Name = Op.Name + " dropout";
  Node.Layer = Op.Layer;
  Node.Outputs = {Out};
  Node.Inputs = {Out};
  Node.Backward = [this, Kept = save(Mask), P, N](std::vector<XTensor> &GOut) {
    XTensor Gr = contiguous(GOut[0], "grad (contiguous)");
    XTensor DX = alloc(Gr.Dims, ElemType::F32, MemCategory::Temporaries, "grad(dropout)");
    if (Kept.Type == ElemType::Bool)
      Dev.dropoutBackward(DX.Buf->as<float>(), Gr.Buf->as<float>() + Gr.Offset,
                          Kept.Buf->as<uint8_t>(), N, P);
    else
      Dev.mul(DX.Buf->as<float>(), Gr.Buf->as<float>() + Gr.Offset, Kept.Buf->as<float>(), N);
    return std::vector<XTensor>{DX};
  };
  T->push_back(std::move(Node));
}

} // namespace trainmem::probe
