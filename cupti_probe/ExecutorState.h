//===- ExecutorState.h - the executor's state, shared by its parts ----*- C++ -*-===//
//
// Private to cupti_probe/Executor*.cpp: the ExecutorImpl whose parts those files define
// (Executor.cpp: set-up, forward, checkpointing, measurement; ExecutorStep.cpp: the loss,
// the backward engine and the step; ExecutorOps.cpp: views, concatenation, embedding;
// ExecutorMath.cpp: elementwise ops and reductions; ExecutorNN.cpp: linear, matmul,
// normalisation, softmax, activations, attention; ExecutorOptim.cpp: the optimizers and
// zero_grad; ExecutorDropout.cpp: dropout where the export lost it).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CUPTI_PROBE_EXECUTORSTATE_H
#define TRAINMEM_CUPTI_PROBE_EXECUTORSTATE_H

#include "cupti_probe/ExecTensor.h"
#include "cupti_probe/Executor.h"

#include "analyzer/OpMemoryRules.h"

#include <array>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>

namespace trainmem::probe {

/// Gradients per input of a node, from the gradients of its outputs (undefined where an
/// output got none). An undefined result means "no gradient for that input".
using BackwardFn = std::function<std::vector<XTensor>(std::vector<XTensor> &OutGrads)>;

/// One recorded op: the closure holds the saved tensors; destroying it releases them.
struct TapeNode {
  std::string Name, Layer;
  std::vector<TensorId> Outputs;
  std::vector<TensorId> Inputs; ///< NoTensor where no gradient is wanted
  BackwardFn Backward;
};
using Tape = std::vector<TapeNode>;

/// Values of the forward: what each graph tensor holds now and how many ops still read it.
struct Env {
  std::vector<XTensor> Values;
  std::vector<int> PendingUses;
  /// The key/value cache the forward fills (Graph::TrainingKvCache), held until the
  /// caller drops the model's outputs.
  std::vector<XTensor> KvCache;
};

/// A repeated block run under torch.utils.checkpoint.
struct Segment {
  size_t First = 0, Last = 0;
  std::vector<TensorId> Inputs;  ///< read inside, produced outside (not stored)
  std::vector<TensorId> Outputs; ///< produced inside, read outside or graph outputs
};

/// Optimizer state of one parameter.
struct ParamState {
  XTensor ExpAvg, ExpAvgSq, Step;            // fp32 Adam (Step: torch's 4-byte tensor)
  XTensor Codes1, Absmax1, Codes2, Absmax2;  // 8-bit blockwise Adam
  XTensor Projector;                         // GaLore
  int64_t Steps = 0;
};

class ExecutorImpl {
public:
  ExecutorImpl(const Graph &G, const TrainingSetup &Setup, const ParameterCensus &Census,
               kernels::Device &Dev, const ExecutorOptions &Options)
      : G(G), Setup(Setup), Census(Census), Dev(Dev), Options(Options), Alloc(Dev) {}
  ~ExecutorImpl();

  llvm::Error initialize();
  llvm::Expected<float> step(bool RunOptimizer, bool Backward = true);
  /// Forward, loss and backward of one micro-batch (gradients accumulate).
  llvm::Expected<float> microStep(int MicroBatch, bool Backward);
  void bindMicroBatch(int MicroBatch);
  llvm::Expected<MeasuredStep> measure();

  //===--- Executor.cpp ---===//
  llvm::Error checkSetup();
  llvm::Error allocatePersistent();
  llvm::Error forward(Env &E, Tape &T);
  /// DynamicCache.update before op OpI: the key/value states it reads first (marked
  /// Tensor::KvCache) are copied into the cache, and the op and every later one read the
  /// copies.
  void fillKvCache(size_t OpI, Env &E);
  llvm::Error runOp(size_t OpI, Env &E, Tape *T);
  void planSegments();
  //===--- ExecutorDropout.cpp ---===//
  void planDropout();
  /// Replaces an op's output by its dropped version; records the dropout's backward.
  void applyDropout(size_t OpI, XTensor &Value, Tape *T);
  llvm::Error runBackward(Tape &T, std::map<TensorId, XTensor> &Grads);
  void deliver(TensorId In, XTensor Grad, std::map<TensorId, XTensor> &Grads);
  void accumulateParamGrad(size_t P, XTensor Grad);
  llvm::Expected<float> lossForward(Env &E, Tape *T);
  llvm::Error deviceError(const std::string &Where);

  //===--- ExecutorOptim.cpp ---===//
  llvm::Error optimizerStep();
  kernels::AdamOptions baseAdamOptions() const;
  /// The locals of galore-torch's AdamW.step() loop: grad, denom and norm_grad.
  struct GaloreLocals {
    XTensor Grad, Denom, NormGrad;
  };
  /// galore-torch's AdamW: every parameter, the others first, then the targets.
  llvm::Error galoreStep(const kernels::AdamOptions &Base);
  /// One parameter's turn of that loop, the loop's locals in L.
  void galoreParamStep(size_t I, const kernels::AdamOptions &Base, GaloreLocals &L);
  /// Layer-wise GaLore: parameter I's own optimizer, stepped once its gradient is complete.
  void galoreLayerWiseStep(size_t I);
  /// A new projector for parameter I from its gradient (an SVD's memory, a range finder's
  /// values).
  void galoreRefresh(size_t I, bool Right, int64_t R);
  void zeroGrad();
  kernels::AdamOptions stepOptions(size_t I, const kernels::AdamOptions &Base) const;
  void adamMoments(size_t I, const kernels::AdamOptions &O);
  XTensor adamSqrt(size_t I);
  XTensor adamDenom(size_t I, const XTensor &Sqrt, const kernels::AdamOptions &O);
  /// PyTorch 2.x's foreach step: the division and the eps in place, in the sqrt's buffer.
  void adamDenomInPlace(const XTensor &Sqrt, const kernels::AdamOptions &O);
  void adamApply(size_t I, const XTensor &Denom, const kernels::AdamOptions &O);

  //===--- helpers shared by the op files ---===//
  XTensor alloc(const Shape &Dims, ElemType Type, MemCategory C, const std::string &Name);
  XTensor zeros(const Shape &Dims, ElemType Type, const std::string &Name);
  /// T itself when contiguous, else a contiguous copy (a temporary).
  XTensor contiguous(const XTensor &T, const std::string &Name);
  /// Keeps T for backward: a temporary becomes an activation.
  const XTensor &save(const XTensor &T);
  /// PyTorch's wrapped number: a Python scalar operand kept by MulBackward/DivBackward.
  XTensor wrappedScalar(double V);
  XTensor valueOf(const Env &E, TensorId T) const;
  bool requiresGrad(TensorId T) const { return T != NoTensor && RequiresGrad[T]; }
  bool isScalarConstant(TensorId T) const;
  double scalarValue(TensorId T) const;
  /// Out(element) = F(a, b) over the broadcast of A and B.
  XTensor pointwiseOutput(std::initializer_list<const XTensor *> Operands, const Shape &Out,
                          ElemType OutType, const std::string &Name);
  XTensor binary(const XTensor &A, const XTensor &B, const Shape &Out, ElemType OutType,
                 const std::function<double(double, double)> &F, const std::string &Name);
  XTensor unary(const XTensor &A, ElemType OutType, const std::function<double(double)> &F,
                const std::string &Name);
  /// G summed over the dims that broadcasting added to reach Target (G itself if none).
  XTensor sumToShape(const XTensor &Grad, const Shape &Target, const std::string &Name);
  /// A contiguous copy of T with its own storage.
  XTensor clone(const XTensor &T, const std::string &Name);
  /// Writes Src's elements into Dst (same dims, any strides).
  void copyInto(const XTensor &Dst, const XTensor &Src);
  /// [batch, kv * Groups, seq, dim] summed over each run of Groups heads: the gradient of
  /// grouped key/value heads from the repeated ones.
  XTensor sumHeadGroups(const XTensor &G, int64_t Groups, const std::string &Name);
  std::vector<float> readFloats(const XTensor &T);
  void writeFloats(const XTensor &T, const std::vector<float> &V);

  //===--- ExecutorOps.cpp / ExecutorNN.cpp ---===//
  /// Runs a view, elementwise, embedding or reduction op; false if Op is none of those.
  llvm::Expected<bool> runBasicOp(const SimOp &Op, std::vector<XTensor> &In,
                                  std::vector<XTensor> &Out, BackwardFn *Bw);
  llvm::Expected<bool> runArithmeticOp(const SimOp &Op, std::vector<XTensor> &In,
                                       std::vector<XTensor> &Out, BackwardFn *Bw);
  /// PyTorch's math attention kernel (CUDA, fp32, grouped k/v heads), causal, no bias.
  void mathAttention(const XTensor &Query, const XTensor &Key, const XTensor &Value,
                     const kernels::AttentionShape &S, int64_t Groups, bool Transposed,
                     std::array<bool, 3> Needs, const std::string &OutName,
                     std::vector<XTensor> &Out, BackwardFn *Bw);
  llvm::Expected<bool> runNNOp(const SimOp &Op, std::vector<XTensor> &In,
                               std::vector<XTensor> &Out, BackwardFn *Bw);
  /// ExecutorMoe.cpp: TopK, ScatterElements and GroupedMatMul; false if Op is none of those.
  llvm::Expected<bool> runMoeOp(const SimOp &Op, std::vector<XTensor> &In,
                                std::vector<XTensor> &Out, BackwardFn *Bw);
  llvm::Error unsupported(const SimOp &Op, const std::string &Why) const;

  const Graph &G;
  TrainingSetup Setup;
  const ParameterCensus &Census;
  kernels::Device &Dev;
  ExecutorOptions Options;
  /// Declared before every tensor member: buffers return to it when they die.
  TrackingAllocator Alloc;
  Staging Host{Dev};

  std::vector<SimOp> Ops;
  std::vector<bool> RequiresGrad;
  std::vector<XTensor> Persistent; ///< parameters, buffers, constants, batch inputs
  std::vector<int> ParamOf;        ///< tensor -> census parameter, or -1
  std::vector<XTensor> ParamValue, ParamGrad;
  std::vector<ParamState> States;
  std::vector<int> GradUsesLeft;         ///< per parameter, deliveries still due this backward
  std::vector<XTensor> PendingParamGrad;   ///< AccumulateGrad's input buffer
  std::vector<Segment> Segments;
  std::vector<int> SegmentOfOp;            ///< -1 outside checkpointed blocks
  std::vector<XTensor> CheckpointRngStates; ///< live until the graph is freed
  /// The ops whose first output goes through dropout, with its probability (a config's
  /// sites may differ: attention_dropout, resid_pdrop, ...).
  std::map<size_t, double> DropoutOps;
  /// Per op: off the loss's gradient path (opsOffLossPath), made at the first op run.
  std::vector<bool> OffLossPath;
  int CurrentMicroBatch = 0;
  XTensor Labels, LabelsView;
  std::vector<XTensor> FullInputs; ///< per batch input: all micro-batches, one allocation
  TensorId Logits = NoTensor;
  int64_t LossRows = 0, LossClasses = 0;
  bool GradEnabled = true, TapeWanted = true;
  /// The first error raised inside a backward closure (closures return no Error).
  std::string BackwardError;
  int64_t StepsDone = 0;
  int64_t SavedAtEndOfForward = 0;
  /// The executor's generator position (what a checkpoint's RNG state records; a step
  /// without dropout draws nothing).
  uint64_t RandomOffset = 0;
  XTensor SignedMapBuf, UnsignedMapBuf;
};

/// The CPU generator state torch.utils.checkpoint copies per call (torch.get_rng_state()).
inline constexpr int64_t CpuRngStateBytes = 5056;

} // namespace trainmem::probe

#endif
