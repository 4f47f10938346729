//===- ParameterCensus.cpp - parameters, buffers, gradients, optimizer state ----===//
//
// Storage formats mirrored here:
// - torch.optim.Adam/AdamW (1.12+ and 2.x): exp_avg and exp_avg_sq shaped like the
//   parameter (torch.zeros_like, so in its dtype) and `step` as a one-element fp32
//   tensor, 4 bytes per parameter tensor, for every implementation.
// - torch.optim.SGD with momentum: one momentum_buffer like the parameter.
// - bitsandbytes >= 0.44 8-bit Adam: uint8 state1/state2 with one fp32 absmax per 256
//   values; tensors under 4096 elements keep 32-bit states (min_8bit_size); two 256-entry
//   fp32 quantization maps per optimizer.
// - transformers.Adafactor (beta1=None): factored second moments, a row and a column
//   vector per matrix, a full one for vectors, in the gradient's dtype.
// - Lion: one exp_avg like the parameter.
// - torch.onnx exports a tied LM head as the embedding plus a transposed constant copy,
//   and folds equal per-layer buffers into one constant; both are undone here.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ParameterCensus.h"
#include "analyzer/OnnxModelReader.h"
#include "analyzer/StoredTensorClassifier.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Regex.h"

#include <algorithm>
#include <climits>

#include <map>
#include <set>

namespace trainmem {
namespace {

/// Nodes that read T, following view-like ops, each with the slot they read it in.
std::vector<std::pair<NodeId, size_t>> effectiveUses(const Graph &G, TensorId Start) {
  std::vector<std::pair<NodeId, size_t>> Uses;
  std::vector<TensorId> Work{Start};
  std::set<TensorId> Seen{Start};
  while (!Work.empty()) {
    TensorId T = Work.back();
    Work.pop_back();
    for (NodeId C : G.Tensors[T].Consumers) {
      const Node &N = G.Nodes[C];
      for (size_t Slot = 0; Slot < N.Inputs.size(); ++Slot) {
        if (N.Inputs[Slot] != T)
          continue;
        if (isViewLikeOp(N.OpType) && Slot == 0) {
          for (TensorId Out : N.Outputs)
            if (Out != NoTensor && Seen.insert(Out).second)
              Work.push_back(Out);
        } else {
          Uses.emplace_back(C, Slot);
        }
      }
    }
  }
  return Uses;
}

bool isModuleStyleName(const std::string &Name) {
  return Name.rfind("onnx::", 0) != 0 && Name.find('/') == std::string::npos;
}

DType storageType(DType FileType, const TrainingSetup &Setup) {
  if (!isFloating(FileType))
    return FileType;
  switch (Setup.Prec) {
  case Precision::Bf16:
  case Precision::MixedBf16:
    return DType::BFloat16;
  case Precision::MixedFp16:
    return DType::Float16;
  default:
    return FileType; // fp32 and autocast recipes keep the weights as stored
  }
}

/// An embedding and a MatMul weight that may be the same PyTorch parameter.
struct TieCandidate {
  size_t Embedding, Head;
  bool Transposed;
};

/// Does T reach a graph output through at most a few bias adds and views? (The output
/// head's matmul produces the logits; a tie is between the embedding and that head, never
/// a weight inside the model that happens to have the embedding's shape.)
bool reachesGraphOutput(const Graph &G, TensorId T) {
  for (int Step = 0; Step < 4 && T != NoTensor; ++Step) {
    const Tensor &Tn = G.Tensors[T];
    if (Tn.IsGraphOutput)
      return true;
    if (Tn.Consumers.size() != 1)
      return false;
    const Node &N = G.Nodes[Tn.Consumers[0]];
    if (N.OpType != "Add" && N.OpType != "Reshape" && N.OpType != "Transpose" &&
        N.OpType != "Identity" && N.OpType != "Flatten" && N.OpType != "Squeeze" &&
        N.OpType != "Unsqueeze")
      return false;
    T = N.Outputs.empty() ? NoTensor : N.Outputs[0];
  }
  return false;
}

std::vector<TieCandidate> findTieCandidates(const Graph &G,
                                            const std::vector<CensusParameter> &Params) {
  std::vector<size_t> Embeddings, Heads;
  for (size_t I = 0; I < Params.size(); ++I) {
    const CensusParameter &P = Params[I];
    if (P.Shape.size() != 2)
      continue;
    bool Gathered = false, Multiplied = false;
    for (auto [N, Slot] : effectiveUses(G, P.Tensors[0])) {
      const std::string &Op = G.Nodes[N].OpType;
      Gathered |= Op == "Gather" && Slot == 0;
      Multiplied |= (Op == "MatMul" || Op == "Gemm" || Op == "FusedMatMul") &&
                    !G.Nodes[N].Outputs.empty() && reachesGraphOutput(G, G.Nodes[N].Outputs[0]);
    }
    if (Gathered)
      Embeddings.push_back(I);
    else if (Multiplied)
      Heads.push_back(I);
  }
  std::vector<TieCandidate> Out;
  for (size_t E : Embeddings)
    for (size_t H : Heads) {
      const CensusParameter &PE = Params[E], &PH = Params[H];
      if (PE.FileType != PH.FileType)
        continue;
      bool Same = PE.Shape == PH.Shape;
      bool Swapped = PE.Shape[0] == PH.Shape[1] && PE.Shape[1] == PH.Shape[0];
      if (Same || Swapped)
        Out.push_back({E, H, !Same});
    }
  return Out;
}

void mergeTies(const Graph &G, const TrainingSetup &Setup, std::vector<CensusParameter> &Params,
               ParameterCensus &C) {
  // An HF config's graph shares a tied head's weight itself (a Transpose of the
  // embedding): none of its parameters are copies of another unless --tie=yes says so, and
  // a shape match is a coincidence (BERT's [2, hidden] token types and a two-class
  // classifier's or qa_outputs' [hidden, 2] weight were merged by tie_word_embeddings).
  if (Setup.Tie == TieMode::No || (Setup.Tie == TieMode::Auto && G.SourceFormat == "hf-config"))
    return;
  std::set<size_t> Removed;
  for (const TieCandidate &T : findTieCandidates(G, Params)) {
    if (Removed.count(T.Embedding) || Removed.count(T.Head))
      continue;
    const Tensor &E = G.Tensors[Params[T.Embedding].Tensors[0]];
    const Tensor &H = G.Tensors[Params[T.Head].Tensors[0]];
    bool Tied = Setup.Tie == TieMode::Yes;
    if (!Tied) {
      llvm::Expected<bool> Equal = payloadsEqual(E, H, T.Transposed);
      if (Equal) {
        Tied = *Equal;
      } else {
        std::string Why = llvm::toString(Equal.takeError());
        if (G.DeclaredTieWordEmbeddings) {
          // The model says (HF tie_word_embeddings); nothing to compare.
          Tied = *G.DeclaredTieWordEmbeddings;
        } else {
          C.Diags.warning("tie-unconfirmed", E.Name,
                          "'" + E.Name + "' and '" + H.Name +
                              "' have tie-compatible shapes but their payloads cannot be "
                              "compared (" + Why + "); counted as two parameters. Pass "
                              "--tie=yes if the LM head shares the embedding");
        }
      }
    }
    if (!Tied)
      continue;
    CensusParameter &Keep = Params[T.Embedding];
    Keep.Tensors.push_back(Params[T.Head].Tensors[0]);
    Removed.insert(T.Head);
    ++C.TiedGroups;
    C.Diags.note("tied-weights", E.Name,
                 "'" + H.Name + "' is " + (T.Transposed ? "the transpose of " : "a copy of ") +
                     "'" + E.Name + "' (" +
                     (Setup.Tie == TieMode::Yes          ? "--tie=yes"
                      : G.DeclaredTieWordEmbeddings ? "tie_word_embeddings"
                                                    : "payloads compared") +
                     "): one parameter, counted once");
  }
  std::vector<CensusParameter> Kept;
  for (size_t I = 0; I < Params.size(); ++I)
    if (!Removed.count(I))
      Kept.push_back(std::move(Params[I]));
  Params = std::move(Kept);
}

llvm::Error selectTrainable(const Graph &G, const TrainingSetup &Setup,
                            std::vector<CensusParameter> &Params, Diagnostics &Diags) {
  std::optional<llvm::Regex> Train, Freeze;
  for (auto [Pattern, Slot, Flag] :
       {std::tuple{&Setup.TrainRegex, &Train, "--train"},
        std::tuple{&Setup.FreezeRegex, &Freeze, "--freeze"}}) {
    if (Pattern->empty())
      continue;
    Slot->emplace(*Pattern);
    std::string Why;
    if (!(*Slot)->isValid(Why))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "%s: invalid regular expression '%s': %s", Flag,
                                     Pattern->c_str(), Why.c_str());
  }
  std::map<std::string, size_t> ByTensorName;
  for (size_t I = 0; I < Params.size(); ++I)
    for (TensorId T : Params[I].Tensors)
      ByTensorName[G.Tensors[T].Name] = I;
  std::set<size_t> Listed;
  if (Setup.TrainableFile) {
    std::vector<std::string> Missing;
    for (const std::string &Name : Setup.TrainableNames) {
      auto It = ByTensorName.find(Name);
      if (It == ByTensorName.end())
        Missing.push_back(Name);
      else
        Listed.insert(It->second);
    }
    if (!Missing.empty()) {
      std::string List;
      for (size_t I = 0; I < Missing.size() && I < 5; ++I)
        List += (I ? ", " : "") + ("'" + Missing[I] + "'");
      if (Missing.size() > 5)
        List += " and " + std::to_string(Missing.size() - 5) + " more";
      return llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          "--trainable-file=%s: %zu names are no parameter of the model: %s (expected "
          "initializer names as the ONNX file spells them)",
          Setup.TrainableFile->c_str(), Missing.size(), List.c_str());
    }
  }
  // --sparse-update: which parameters the update set holds, by execution order.
  std::set<size_t> Sparse;
  // The per-layer and budget forms arrive resolved by the planner as TrainableNames.
  bool SparseOn = Setup.SparseUpdate == "bias-only" ||
                  llvm::StringRef(Setup.SparseUpdate).startswith("last:");
  if (SparseOn) {
    std::vector<int> Position(G.Nodes.size(), 0);
    for (size_t I = 0; I < G.TopologicalOrder.size(); ++I)
      Position[G.TopologicalOrder[I]] = static_cast<int>(I);
    std::vector<int> FirstUse(Params.size(), INT32_MAX);
    for (size_t I = 0; I < Params.size(); ++I)
      for (TensorId T : Params[I].Tensors)
        for (auto [N, Slot] : effectiveUses(G, T))
          FirstUse[I] = std::min(FirstUse[I], Position[N]);
    if (Setup.SparseUpdate == "bias-only") {
      // BitFit: every bias vector.
      for (size_t I = 0; I < Params.size(); ++I)
        for (TensorId T : Params[I].Tensors)
          if (llvm::StringRef(G.Tensors[T].Name).endswith("bias") &&
              G.Tensors[T].Shape.size() == 1)
            Sparse.insert(I);
    } else {
      int64_t K = 0;
      llvm::StringRef(Setup.SparseUpdate).drop_front(5).getAsInteger(10, K);
      // Repeated blocks in the order they run; the last K and everything after them train
      // (the final norm and an untied head), everything before stays frozen.
      std::vector<std::string> Repeated = repeatedBlocks(G);
      std::set<std::string> Composite(Repeated.begin(), Repeated.end());
      std::map<std::string, int> BlockStart;
      for (size_t I = 0; I < Params.size(); ++I) {
        std::string Block = blockOfLayerPath(Params[I].LayerPath);
        if (!Composite.count(Block))
          Block.clear();
        if (!Block.empty() && FirstUse[I] != INT32_MAX) {
          auto [It, New] = BlockStart.emplace(Block, FirstUse[I]);
          if (!New)
            It->second = std::min(It->second, FirstUse[I]);
        }
      }
      std::vector<int> Starts;
      for (const auto &[Block, Start] : BlockStart)
        Starts.push_back(Start);
      std::sort(Starts.begin(), Starts.end());
      if (Starts.empty())
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "--sparse-update=%s: the model has no repeated blocks "
                                       "(layer paths such as h.3 or layers.12)",
                                       Setup.SparseUpdate.c_str());
      int Cut = Starts[Starts.size() - std::min<size_t>(static_cast<size_t>(K), Starts.size())];
      for (size_t I = 0; I < Params.size(); ++I) {
        std::string Block = blockOfLayerPath(Params[I].LayerPath);
        int Start = !Composite.count(Block) ? FirstUse[I] : BlockStart[Block];
        if (Start >= Cut && FirstUse[I] != INT32_MAX)
          Sparse.insert(I);
      }
    }
  }
  auto Matches = [&G](const llvm::Regex &R, const CensusParameter &P) {
    for (TensorId T : P.Tensors)
      if (R.match(G.Tensors[T].Name))
        return true;
    return !P.LayerPath.empty() && R.match(P.LayerPath);
  };
  for (size_t I = 0; I < Params.size(); ++I) {
    CensusParameter &P = Params[I];
    if (SparseOn)
      P.Trainable = Sparse.count(I) != 0 || Listed.count(I) != 0 || (Train && Matches(*Train, P));
    else if (Setup.TrainableFile)
      P.Trainable = Listed.count(I) != 0 || (Train && Matches(*Train, P));
    else if (Train)
      P.Trainable = Matches(*Train, P);
    else
      P.Trainable = true;
    if (Freeze && Matches(*Freeze, P))
      P.Trainable = false;
  }
  bool Any = false;
  for (const CensusParameter &P : Params)
    Any |= P.Trainable;
  if (!Any && !Params.empty())
    Diags.warning("nothing-trains", "",
                  "no parameter is trainable under the given selection: the step has no "
                  "gradients and no optimizer state");
  return llvm::Error::success();
}

void collectBuffers(const Graph &G, const TrainingSetup &Setup, ParameterCensus &C) {
  int Folded = 0;
  for (TensorId Id = 0; Id < static_cast<TensorId>(G.Tensors.size()); ++Id) {
    const Tensor &T = G.Tensors[Id];
    if (!T.Stored || T.Kind != TensorKind::Buffer)
      continue;
    CensusBuffer B;
    B.Name = T.Name;
    B.Tensor = Id;
    B.Type = storageType(T.Type, Setup);
    B.NumElements = T.numElements();
    std::set<std::string> Blocks;
    std::string Path;
    for (NodeId N : T.Consumers) {
      std::string Block = blockOfLayerPath(G.Nodes[N].LayerPath);
      if (!Block.empty())
        Blocks.insert(Block);
      if (Path.empty())
        Path = G.Nodes[N].LayerPath;
    }
    B.LayerPath = Path;
    // torch.onnx deduplicates initializers by value, so per-block buffers with equal
    // contents (one causal mask per attention layer) reach the file as one "onnx::"
    // constant read from every block; PyTorch held one per block.
    if (T.Name.rfind("onnx::", 0) == 0 && Blocks.size() > 1) {
      B.Copies = static_cast<int>(Blocks.size());
      ++Folded;
    }
    C.Buffers.push_back(B);
  }
  if (Folded)
    C.Diags.note("buffer-copies", "",
                 std::to_string(Folded) + " exporter-folded buffer constants are read from "
                 "several blocks; counted once per block, as PyTorch stores them");
  // PyTorch's BatchNorm keeps an int64 num_batches_tracked beside its running stats.
  for (const Node &N : G.Nodes)
    if (N.OpType == "BatchNormalization" && N.Domain.empty() && N.Inputs.size() >= 5) {
      CensusBuffer B;
      B.Name = (N.LayerPath.empty() ? N.Name : N.LayerPath) + ".num_batches_tracked";
      B.Type = DType::Int64;
      B.NumElements = 1;
      B.LayerPath = N.LayerPath;
      C.Buffers.push_back(B);
    }
}

} // namespace

bool isGaloreTarget(const CensusParameter &P, const TrainingSetup &Setup) {
  if (!Setup.Galore || P.Shape.size() != 2)
    return false;
  for (const std::string &T : Setup.Galore->Targets)
    if (P.LayerPath.find(T) != std::string::npos || P.Name.find(T) != std::string::npos)
      return true;
  return false;
}

std::vector<OptimizerStatePart> optimizerStateOf(const CensusParameter &P,
                                                 const TrainingSetup &Setup) {
  // States live beside the fp32 master weights in mixed-precision recipes, else in the
  // parameter's own dtype.
  DType StateType = Setup.keepsMasterWeights() ? DType::Float32 : P.Type;
  int64_t N = P.NumElements;
  if (Setup.Galore) {
    // galore-torch's AdamW (a transformers AdamW) keeps `step` as a Python int. A target
    // m x n weight keeps Adam moments of the projected gradient, r x max(m, n), and a
    // projector: Vh[:r] (or U[:, :r]) of the gradient's SVD. For an fp32 gradient that is
    // a view, which keeps the whole k x k factor (k = min(m, n)) alive; a 16-bit gradient
    // is decomposed in fp32 and the slice copied back to its dtype, r x k (galore-torch's
    // get_orthogonal_matrix). Measured on an H200 (TinyLlama in fp32, r 8): 1.73 GiB of
    // projectors, against 7.2 MiB for r x k.
    int64_t R = Setup.Galore->Rank;
    if (isGaloreTarget(P, Setup)) {
      int64_t Small = std::min(P.Shape[0], P.Shape[1]), Large = std::max(P.Shape[0], P.Shape[1]);
      R = std::min(R, Small);
      CensusParameter LowRank = P;
      LowRank.NumElements = R * Large;
      LowRank.Shape = {R, Large};
      TrainingSetup Inner = Setup;
      Inner.Galore.reset();
      std::vector<OptimizerStatePart> Parts;
      for (OptimizerStatePart &Part : optimizerStateOf(LowRank, Inner))
        if (Part.Name != "step")
          Parts.push_back(Part);
      DType GradType = Setup.keepsMasterWeights() ? DType::Float32 : P.Type;
      Parts.push_back({"projector", GradType == DType::Float32
                                        ? dtypeBytes(DType::Float32, Small * Small)
                                        : dtypeBytes(GradType, R * Small)});
      return Parts;
    }
    TrainingSetup Inner = Setup;
    Inner.Galore.reset();
    std::vector<OptimizerStatePart> Parts;
    for (OptimizerStatePart &Part : optimizerStateOf(P, Inner))
      if (Part.Name != "step")
        Parts.push_back(Part);
    return Parts;
  }
  int64_t Full = dtypeBytes(StateType, N);
  switch (Setup.Optimizer) {
  case OptimizerKind::Adam:
  case OptimizerKind::AdamW:
    // torch.optim's Adam(W) keeps `step` as a scalar tensor on the host unless the
    // implementation is fused (or capturable): "Deliberately host `step` on CPU if both
    // capturable and fused are off" (_init_group, PyTorch 1.12 on). On a CUDA device it
    // then takes no device memory; on the CPU the host is the device.
    if (Setup.Device == DeviceKind::Cuda && Setup.Impl != OptimizerImpl::Fused)
      return {{"exp_avg", Full}, {"exp_avg_sq", Full}};
    return {{"exp_avg", Full}, {"exp_avg_sq", Full}, {"step", 4}};
  case OptimizerKind::Sgd:
    return {};
  case OptimizerKind::SgdMomentum:
    return {{"momentum_buffer", Full}};
  case OptimizerKind::Lion:
    return {{"exp_avg", Full}};
  case OptimizerKind::Adafactor: {
    if (P.Shape.size() < 2)
      return {{"exp_avg_sq", Full}};
    int64_t Rows = 1, Cols = 1;
    for (size_t I = 0; I + 1 < P.Shape.size(); ++I)
      Rows *= P.Shape[I];
    for (size_t I = 0; I + 2 < P.Shape.size(); ++I)
      Cols *= P.Shape[I];
    Cols *= P.Shape.back();
    return {{"exp_avg_sq_row", dtypeBytes(StateType, Rows)},
            {"exp_avg_sq_col", dtypeBytes(StateType, Cols)}};
  }
  case OptimizerKind::AdamWFp8: {
    // torchao's AdamWFp8 (_AdamBase._new_buffer): a tensor of at least 4096 values that
    // divides into blocks of 256 keeps each moment as float8_e4m3fn codes plus one fp32
    // scale per block; any other keeps zeros_like(p). Its step counter is
    // torch.tensor(0.0), created on the host, so it takes no device memory.
    if (N < 4096 || N % 256 != 0)
      return {{"exp_avg", Full}, {"exp_avg_sq", Full}};
    int64_t Moment = N + N / 256 * 4;
    return {{"exp_avg", Moment}, {"exp_avg_sq", Moment}};
  }
  case OptimizerKind::AdamW8bit:
  case OptimizerKind::PagedAdamW8bit: {
    if (N < 4096)
      return {{"state1", dtypeBytes(DType::Float32, N)}, {"state2", dtypeBytes(DType::Float32, N)}};
    int64_t Blocks = (N + 255) / 256;
    return {{"state1", N}, {"state2", N}, {"absmax1", Blocks * 4}, {"absmax2", Blocks * 4}};
  }
  }
  return {};
}

llvm::Expected<ParameterCensus> takeCensus(const Graph &G, const TrainingSetup &Setup) {
  ParameterCensus C;
  std::vector<CensusParameter> Params;
  for (TensorId Id = 0; Id < static_cast<TensorId>(G.Tensors.size()); ++Id) {
    const Tensor &T = G.Tensors[Id];
    if (!T.Stored || T.Kind != TensorKind::Parameter)
      continue;
    CensusParameter P;
    P.Name = T.Name;
    P.Tensors = {Id};
    if (auto Q = G.Quantized.find(Id); Q != G.Quantized.end())
      P.Quantized = Q->second;
    P.Shape = T.Shape;
    P.FileType = T.Type;
    P.Type = storageType(T.Type, Setup);
    // PEFT creates LoRA adapters in fp32 on a 16-bit model (autocast_adapter_dtype).
    if (Setup.Prec == Precision::Bf16 && isFloating(T.Type) &&
        llvm::is_contained(G.AdapterParameters, Id))
      P.Type = DType::Float32;
    P.NumElements = T.numElements();
    for (auto [N, Slot] : effectiveUses(G, Id))
      if (!G.Nodes[N].LayerPath.empty()) {
        P.LayerPath = G.Nodes[N].LayerPath;
        break;
      }
    if (P.LayerPath.empty())
      P.LayerPath = layerPathFromName(T.Name, true);
    Params.push_back(std::move(P));
  }
  mergeTies(G, Setup, Params, C);
  for (CensusParameter &P : Params)
    for (TensorId T : P.Tensors)
      if (isModuleStyleName(G.Tensors[T].Name)) {
        P.Name = G.Tensors[T].Name;
        break;
      }
  if (auto E = selectTrainable(G, Setup, Params, C.Diags))
    return E;
  collectBuffers(G, Setup, C);

  std::map<std::string, int64_t> States;
  std::vector<std::string> StateOrder;
  for (const CensusParameter &P : Params) {
    C.TotalParameters += P.NumElements;
    C.ParameterBytes += P.bytes();
    if (!P.Trainable)
      continue;
    C.TrainableParameters += P.NumElements;
    C.TrainableBytes += P.bytes();
    if (Setup.ZerothOrder)
      continue; // MeZO estimates the gradient from two losses: no .grad, no state
    C.GradientBytes += P.bytes();
    if (Setup.keepsMasterWeights())
      C.MasterWeightBytes += dtypeBytes(DType::Float32, P.NumElements);
    for (const OptimizerStatePart &Part : optimizerStateOf(P, Setup)) {
      if (!States.count(Part.Name))
        StateOrder.push_back(Part.Name);
      States[Part.Name] += Part.Bytes;
      C.OptimizerStateBytes += Part.Bytes;
    }
  }
  // bitsandbytes' Optimizer2State moves its "dynamic" and "udynamic" maps (256 fp32 each)
  // to the device once, when the first parameter gets 8-bit states; every such parameter's
  // state refers to those two tensors (qmap1, qmap2).
  if (States.count("state1") && States.count("absmax1")) {
    C.SharedOptimizerStateBytes = 2 * dtypeBytes(DType::Float32, 256);
    StateOrder.push_back("qmap");
    States["qmap"] = C.SharedOptimizerStateBytes;
    C.OptimizerStateBytes += C.SharedOptimizerStateBytes;
  }
  for (const std::string &Name : StateOrder)
    C.OptimizerStates.push_back({Name, States[Name]});
  for (const CensusBuffer &B : C.Buffers)
    C.BufferBytes += B.bytes();
  C.Parameters = std::move(Params);
  return C;
}

} // namespace trainmem
