//===- ExecutorDropout.cpp - training-time dropout where the export lost it ------===//
//
// An eval-mode export keeps no Dropout node, so --dropout (or the probability an HF config
// declares) is applied where transformer blocks hold nn.Dropout: on the attention
// probabilities, on each residual branch's output projection, and on the input of the
// block stack. As PyTorch runs it: on the CPU (1.13's unfused path) a mask in the input's
// dtype, `noise = empty_like(x).bernoulli_(1 - p).div_(1 - p)`, and `x * noise`; on CUDA
// native_dropout's bool mask. The backward keeps only the mask.
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/ExecutorState.h"

namespace trainmem::probe {

void ExecutorImpl::planDropout() {
  const double P = Setup.Dropout ? *Setup.Dropout : G.DeclaredDropout.value_or(0.0);
  if (P <= 0)
    return;
  // The sites a config declares (the simulator's placement, StepSimulatorForward.cpp), each
  // with its own probability; --dropout (or an ONNX file's) puts one at all three.
  Graph::DropoutSites Sites{P, P, P};
  if (!Setup.Dropout && G.DeclaredDropoutSites)
    Sites = *G.DeclaredDropoutSites;
  std::vector<int> ProducerOp(G.Tensors.size(), -1);
  for (size_t I = 0; I < Ops.size(); ++I)
    for (TensorId O : Ops[I].Outputs)
      if (O != NoTensor)
        ProducerOp[O] = static_cast<int>(I);
  for (size_t I = 0; I < Ops.size(); ++I) {
    const SimOp &Op = Ops[I];
    if (Op.Outputs.empty() || Op.Outputs[0] == NoTensor)
      continue;
    const Tensor &Out = G.Tensors[Op.Outputs[0]];
    const bool OfSoftmax = !Op.Inputs.empty() && Op.Inputs[0] != NoTensor &&
                           ProducerOp[Op.Inputs[0]] >= 0 &&
                           Ops[ProducerOp[Op.Inputs[0]]].Kind == "Softmax";
    const bool CastProbs = Op.Kind == "CastLike" && OfSoftmax;
    // gpt-oss: the probabilities less the sink's column (a view), dropped out before the cast.
    const bool SinkProbs = Op.Kind == "Slice" && OfSoftmax;
    if (Op.Kind == "Softmax" || CastProbs || SinkProbs) {
      // attn_drop: the probabilities the PV matmul reads (after transformers' cast of its
      // fp32 softmax to the query's dtype).
      for (NodeId C : Out.Consumers)
        if ((G.Nodes[C].OpType == "MatMul" || (SinkProbs && G.Nodes[C].OpType == "CastLike")) &&
            Sites.Attention > 0)
          DropoutOps[I] = Sites.Attention;
    } else if (Op.Kind == "Linear" && Out.Consumers.size() == 1) {
      // resid_drop / mlp.drop: a projection whose only reader is the residual sum.
      const Node &C = G.Nodes[Out.Consumers[0]];
      if (C.OpType == "Add" && C.Inputs.size() == 2) {
        TensorId Other = C.Inputs[0] == Op.Outputs[0] ? C.Inputs[1] : C.Inputs[0];
        if (Other != NoTensor && !G.Tensors[Other].Stored &&
            G.Tensors[Other].numElements() == Out.numElements() && Sites.Residual > 0)
          DropoutOps[I] = Sites.Residual;
      }
    }
  }
  // The embeddings' dropout: the first floating tensor made outside the blocks that an op
  // inside a block reads.
  for (const SimOp &Op : Ops) {
    if (blockOfLayerPath(Op.Layer).empty())
      continue;
    for (TensorId In : Op.Inputs) {
      int Producer = In == NoTensor ? -1 : ProducerOp[In];
      if (Producer >= 0 && blockOfLayerPath(Ops[Producer].Layer).empty() &&
          isFloating(G.Tensors[In].Type)) {
        if (Sites.Embedding > 0)
          DropoutOps[static_cast<size_t>(Producer)] = Sites.Embedding;
        return;
      }
    }
  }
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
