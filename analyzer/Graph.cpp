//===- Graph.cpp - trainmem's graph IR -------------------------------------------===//
//
// Tensor sizes, attribute access, consumer bookkeeping, the topological order and the
// layer-path heuristics shared by every importer.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/Graph.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <limits>
#include <set>

namespace trainmem {

const char *tensorKindName(TensorKind Kind) {
  switch (Kind) {
  case TensorKind::Input: return "input";
  case TensorKind::Parameter: return "parameter";
  case TensorKind::Buffer: return "buffer";
  case TensorKind::Constant: return "constant";
  case TensorKind::Activation: return "activation";
  case TensorKind::Output: return "output";
  }
  return "activation";
}

int64_t Tensor::numElements() const {
  if (!ShapeKnown)
    return 0;
  // Saturating: importers reject shapes past 2^62 bytes (Graph::checkLimits), but code that
  // runs before that check (shape inference, stored-tensor classification) must never see
  // a wrapped count.
  int64_t N = 1;
  for (int64_t D : Shape)
    if (D < 0 || __builtin_mul_overflow(N, D, &N))
      return std::numeric_limits<int64_t>::max();
  return N;
}

llvm::Error Graph::checkLimits(llvm::StringRef Path) const {
  // Far beyond any model (LLaMA-70B has ~10^4 nodes), small enough that a hostile file
  // cannot make the simulator's per-node tables exhaust memory.
  constexpr size_t MaxNodes = 20'000'000, MaxTensors = 50'000'000;
  constexpr int64_t MaxBytes = int64_t(1) << 62;
  // All tensors together: what the simulator sums (live sets, states a few times the
  // parameters) then stays far from int64's limit.
  constexpr int64_t MaxTotalBytes = int64_t(1) << 60;
  int64_t Total = 0;
  auto Fail = [&](const std::string &Message) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   (Path + ": " + Message).str());
  };
  if (Nodes.size() > MaxNodes)
    return Fail(std::to_string(Nodes.size()) + " nodes; at most " + std::to_string(MaxNodes) +
                " are read");
  if (Tensors.size() > MaxTensors)
    return Fail(std::to_string(Tensors.size()) + " tensors; at most " +
                std::to_string(MaxTensors) + " are read");
  for (const Tensor &T : Tensors) {
    if (!T.ShapeKnown)
      continue;
    int64_t N = 1;
    bool Overflow = false;
    for (int64_t D : T.Shape) {
      if (D < 0)
        return Fail("tensor '" + T.Name + "': negative dimension " + std::to_string(D));
      Overflow |= __builtin_mul_overflow(N, D, &N);
    }
    int64_t Bits = 0;
    Overflow |= __builtin_mul_overflow(N, static_cast<int64_t>(dtypeBits(T.Type)), &Bits);
    if (Overflow || Bits / 8 > MaxBytes) {
      std::string Shape;
      for (size_t I = 0; I < T.Shape.size(); ++I)
        Shape += (I ? "x" : "") + std::to_string(T.Shape[I]);
      return Fail("tensor '" + (T.Name.empty() ? std::string("(unnamed)") : T.Name) +
                  "' of shape [" + Shape +
                  "]: its size does not fit in 2^62 bytes (check --dim and --input values)");
    }
    if (__builtin_add_overflow(Total, Bits / 8, &Total) || Total > MaxTotalBytes)
      return Fail("the tensors of the graph add up to more than 2^60 bytes (1 EiB) at tensor '" +
                  T.Name + "' (check --dim and --input values)");
  }
  return llvm::Error::success();
}

int64_t Tensor::bytesAs(DType AsType) const {
  return dtypeBytes(AsType, numElements());
}

template <typename T>
static std::optional<T> getAttr(const std::map<std::string, AttributeValue> &Attrs,
                                const std::string &Key) {
  auto It = Attrs.find(Key);
  if (It == Attrs.end())
    return std::nullopt;
  if (const T *V = std::get_if<T>(&It->second))
    return *V;
  return std::nullopt;
}

std::optional<int64_t> Node::intAttr(const std::string &Key) const {
  return getAttr<int64_t>(Attributes, Key);
}
std::optional<double> Node::floatAttr(const std::string &Key) const {
  return getAttr<double>(Attributes, Key);
}
std::optional<std::vector<int64_t>> Node::intsAttr(const std::string &Key) const {
  return getAttr<std::vector<int64_t>>(Attributes, Key);
}
std::optional<std::string> Node::stringAttr(const std::string &Key) const {
  return getAttr<std::string>(Attributes, Key);
}

/// The slot holding Name's tensor, or the empty slot where it would go (linear probing;
/// the table is never more than half full).
size_t Graph::slotOf(llvm::StringRef Name) const {
  const size_t Mask = TensorIndex.size() - 1;
  for (size_t I = static_cast<size_t>(llvm::hash_value(Name)) & Mask;; I = (I + 1) & Mask) {
    TensorId Id = TensorIndex[I];
    if (Id == NoTensor || Tensors[Id].Name == Name)
      return I;
  }
}

TensorId Graph::findTensor(const std::string &TensorName) const {
  if (TensorIndex.empty())
    return NoTensor;
  return TensorIndex[slotOf(TensorName)];
}

TensorId Graph::addTensor(Tensor T) {
  auto Id = static_cast<TensorId>(Tensors.size());
  Tensors.push_back(std::move(T));
  if (2 * (Indexed + 1) > TensorIndex.size()) {
    std::vector<TensorId> Old(std::max<size_t>(64, 2 * TensorIndex.size()), NoTensor);
    Old.swap(TensorIndex);
    for (TensorId Kept : Old)
      if (Kept != NoTensor)
        TensorIndex[slotOf(Tensors[Kept].Name)] = Kept;
  }
  TensorId &Slot = TensorIndex[slotOf(Tensors[Id].Name)];
  if (Slot == NoTensor) { // a name seen before keeps its first tensor
    Slot = Id;
    ++Indexed;
  }
  return Id;
}

void Graph::reserve(size_t TensorCount, size_t NodeCount) {
  Tensors.reserve(TensorCount);
  Nodes.reserve(NodeCount);
  // addTensor keeps the table at most half full.
  size_t Slots = llvm::PowerOf2Ceil(2 * (TensorCount + 1));
  if (Slots <= TensorIndex.size())
    return;
  std::vector<TensorId> Old(Slots, NoTensor);
  Old.swap(TensorIndex);
  for (TensorId Kept : Old)
    if (Kept != NoTensor)
      TensorIndex[slotOf(Tensors[Kept].Name)] = Kept;
}

NodeId Graph::addNode(Node N) {
  auto Id = static_cast<NodeId>(Nodes.size());
  Nodes.push_back(std::move(N));
  return Id;
}

bool Graph::finalize() {
  for (Tensor &T : Tensors) {
    T.Consumers.clear();
    T.Producer = NoNode;
  }
  for (NodeId N = 0; N < static_cast<NodeId>(Nodes.size()); ++N) {
    for (TensorId In : Nodes[N].Inputs)
      if (In != NoTensor) {
        auto &C = Tensors[In].Consumers;
        if (C.empty() || C.back() != N)
          C.push_back(N);
      }
    for (TensorId Out : Nodes[N].Outputs)
      if (Out != NoTensor)
        Tensors[Out].Producer = N;
  }
  // Ties broken by file order, so the order is stable and matches the exporter's (which
  // is already topological for every exporter we know). An edge per input slot: a node
  // reading a tensor twice waits for it twice.
  std::vector<int> Pending(Nodes.size(), 0);
  for (NodeId N = 0; N < static_cast<NodeId>(Nodes.size()); ++N)
    for (TensorId In : Nodes[N].Inputs)
      if (In != NoTensor && Tensors[In].Producer != NoNode)
        ++Pending[N];
  TopologicalOrder = smallestIndexFirstOrder<NodeId>(std::move(Pending), [&](NodeId N, auto Visit) {
    for (TensorId Out : Nodes[N].Outputs)
      if (Out != NoTensor)
        for (NodeId C : Tensors[Out].Consumers)
          for (TensorId In : Nodes[C].Inputs)
            if (In == Out)
              Visit(C);
  });
  if (TopologicalOrder.size() != Nodes.size()) {
    Diags.error("cycle", "",
                "the graph has a cycle: " +
                    std::to_string(Nodes.size() - TopologicalOrder.size()) +
                    " nodes never become ready");
    return false;
  }
  return true;
}

static bool isAllDigits(llvm::StringRef S) {
  return !S.empty() && std::all_of(S.begin(), S.end(), [](unsigned char C) {
    return std::isdigit(C) != 0;
  });
}

// Both below read the name's components as views: splitting them into strings was the
// planner's most frequent allocation (blockOfLayerPath runs for every op of every step
// structure and census).
std::string layerPathFromName(const std::string &Name, bool IsTensorName) {
  if (Name.empty() || Name.rfind("onnx::", 0) == 0)
    return "";
  const llvm::StringRef N(Name);
  auto plain = [](llvm::StringRef Part) {
    return Part.find_first_of(" :;,\"{}") == llvm::StringRef::npos;
  };
  if (N.front() == '/') {
    // torch.onnx scope names: "/model/layers.3/self_attn/q_proj/MatMul" or the output
    // "/model/layers.3/self_attn/q_proj/MatMul_output_0". The last component is the op.
    llvm::SmallVector<llvm::StringRef, 8> Parts;
    N.drop_front().split(Parts, '/', /*MaxSplit=*/-1, /*KeepEmpty=*/false);
    if (!Parts.empty())
      Parts.pop_back();
    size_t Length = 0;
    for (llvm::StringRef P : Parts) {
      if (!plain(P))
        return "";
      Length += P.size() + 1;
    }
    std::string Path; // sized once: appending part by part regrew it (one graph's
    Path.reserve(Length); // most frequent allocation)
    for (llvm::StringRef P : Parts) {
      if (!Path.empty())
        Path.push_back('.');
      Path += P;
    }
    return Path;
  }
  if (!IsTensorName)
    return "";
  // Parameter names: "h.3.attn.c_attn.weight" -> drop the leaf attribute name.
  const size_t Leaf = N.rfind('.');
  if (Leaf == llvm::StringRef::npos)
    return "";
  const llvm::StringRef Path = N.take_front(Leaf);
  return plain(Path) ? Path.str() : ""; // '.' is no refused character: the parts' test
}

llvm::StringRef blockPrefix(llvm::StringRef LayerPath) {
  for (size_t Start = 0;;) {
    const size_t Dot = LayerPath.find('.', Start);
    const size_t End = Dot == llvm::StringRef::npos ? LayerPath.size() : Dot;
    if (isAllDigits(LayerPath.slice(Start, End)))
      return LayerPath.take_front(End);
    if (Dot == llvm::StringRef::npos)
      return "";
    Start = Dot + 1;
  }
}

std::string blockOfLayerPath(const std::string &LayerPath) { return blockPrefix(LayerPath).str(); }

std::vector<std::string> repeatedBlocks(const Graph &G) {
  std::vector<std::string> Order;
  std::set<std::string> Seen, Composite;
  for (NodeId N : G.TopologicalOrder) {
    const std::string &Path = G.Nodes[N].LayerPath;
    std::string Block = blockOfLayerPath(Path);
    if (Block.empty())
      continue;
    if (Seen.insert(Block).second)
      Order.push_back(Block);
    if (Path.size() > Block.size())
      Composite.insert(Block);
  }
  llvm::erase_if(Order, [&](const std::string &B) { return !Composite.count(B); });
  return Order;
}

bool isParameterTensor(const Graph &G, TensorId T) {
  return T != NoTensor && G.Tensors[T].Stored && G.Tensors[T].Kind == TensorKind::Parameter;
}

TensorId weightParameter(const Graph &G, TensorId T) {
  if (isParameterTensor(G, T))
    return T;
  if (T == NoTensor || G.Tensors[T].Producer == NoNode)
    return NoTensor;
  const Node &P = G.Nodes[G.Tensors[T].Producer];
  if (P.OpType == "Transpose" && !P.Inputs.empty() && isParameterTensor(G, P.Inputs[0]))
    return P.Inputs[0];
  return NoTensor;
}

bool isPermutation(llvm::ArrayRef<int64_t> Perm, size_t Rank) {
  if (Perm.size() != Rank)
    return false;
  llvm::SmallVector<bool, 8> Seen(Rank, false);
  for (int64_t P : Perm) {
    if (P < 0 || P >= static_cast<int64_t>(Rank) || Seen[P])
      return false;
    Seen[P] = true;
  }
  return true;
}

} // namespace trainmem
