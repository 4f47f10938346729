//===- GraphTest.cpp - the graph's producers, consumers and topological order ----===//
#include "analyzer/Graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <queue>
#include <random>

using namespace trainmem;

namespace {

/// The order finalize() promises, written out plainly: Kahn's algorithm taking the
/// smallest ready node index first; empty for a graph with a cycle.
std::vector<NodeId> smallestFirstOrder(const Graph &G) {
  std::vector<NodeId> Producer(G.Tensors.size(), NoNode);
  for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N)
    for (TensorId Out : G.Nodes[N].Outputs)
      if (Out != NoTensor)
        Producer[Out] = N;
  std::vector<std::vector<NodeId>> After(G.Nodes.size());
  std::vector<int> Pending(G.Nodes.size(), 0);
  for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N)
    for (TensorId In : G.Nodes[N].Inputs)
      if (In != NoTensor && Producer[In] != NoNode) {
        After[Producer[In]].push_back(N);
        ++Pending[N];
      }
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> Ready;
  for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N)
    if (Pending[N] == 0)
      Ready.push(N);
  std::vector<NodeId> Order;
  while (!Ready.empty()) {
    NodeId N = Ready.top();
    Ready.pop();
    Order.push_back(N);
    for (NodeId C : After[N])
      if (--Pending[C] == 0)
        Ready.push(C);
  }
  if (Order.size() != G.Nodes.size())
    Order.clear();
  return Order;
}

/// A random graph of Nodes nodes, each reading up to three earlier nodes' outputs (some
/// twice) or the input, listed in a shuffled order (or in order), with a back edge or a
/// node reading its own output when Cycle is set.
Graph randomGraph(std::mt19937 &Random, size_t Nodes, bool Shuffle, bool Cycle) {
  Graph G;
  Tensor X;
  X.Name = "x";
  X.Kind = TensorKind::Input;
  G.addTensor(X);
  std::vector<TensorId> Made;
  std::vector<Node> Built;
  for (size_t I = 0; I < Nodes; ++I) {
    Node N;
    N.Name = "n" + std::to_string(I);
    N.OpType = "Add";
    for (size_t K = 1 + Random() % 3; K-- > 0;)
      N.Inputs.push_back(Made.empty() || Random() % 5 == 0 ? 0 : Made[Random() % Made.size()]);
    if (Random() % 4 == 0)
      N.Inputs.push_back(N.Inputs.front()); // the same tensor in two slots
    Tensor Out;
    Out.Name = "t" + std::to_string(I);
    Made.push_back(G.addTensor(Out));
    N.Outputs = {Made.back()};
    Built.push_back(std::move(N));
  }
  if (Cycle) {
    const size_t K = Random() % Nodes;
    if (Random() % 2 == 0)
      Built[K].Inputs.push_back(Made[K]); // a node reading its own output
    else
      Built.front().Inputs.push_back(Made.back()); // a back edge (a self-loop for one node)
  }
  std::vector<size_t> Place(Nodes);
  std::iota(Place.begin(), Place.end(), 0);
  if (Shuffle)
    std::shuffle(Place.begin(), Place.end(), Random);
  for (size_t I : Place)
    G.Nodes.push_back(Built[I]);
  return G;
}

} // namespace

// finalize() takes file order where it is topological (one pass) and runs Kahn's
// algorithm otherwise: either way the smallest-index-first order, and a cycle is an error.
TEST(Graph, TopologicalOrderIsSmallestIndexFirst) {
  std::mt19937 Random(29112026);
  int InFileOrder = 0, Sorted = 0, Cycles = 0;
  for (int Case = 0; Case < 600; ++Case) {
    const bool Shuffle = Case % 3 != 0, Cycle = Case % 7 == 0;
    Graph G = randomGraph(Random, 1 + Random() % 60, Shuffle, Cycle);
    SCOPED_TRACE("case " + std::to_string(Case));
    const std::vector<NodeId> Expected = smallestFirstOrder(G);
    const bool Ok = G.finalize();
    ASSERT_EQ(Ok, !Expected.empty());
    if (!Ok) {
      ++Cycles;
      continue;
    }
    ASSERT_EQ(G.TopologicalOrder, Expected);
    std::vector<NodeId> Identity(G.Nodes.size());
    std::iota(Identity.begin(), Identity.end(), 0);
    (Expected == Identity ? InFileOrder : Sorted) += 1;
    // Producers and consumers agree with the nodes.
    for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N) {
      for (TensorId Out : G.Nodes[N].Outputs)
        EXPECT_EQ(G.Tensors[Out].Producer, N);
      for (TensorId In : G.Nodes[N].Inputs)
        EXPECT_TRUE(llvm::is_contained(G.Tensors[In].Consumers, N));
    }
  }
  // Both ways taken, and cycles seen.
  EXPECT_GT(InFileOrder, 100);
  EXPECT_GT(Sorted, 100);
  EXPECT_GT(Cycles, 20);
}

TEST(Graph, ReservingKeepsEveryNameFound) {
  // Tensors added before a reserve, after it, past what it reserved, and a repeated name
  // (which keeps its first tensor): every lookup answers as without the reserve.
  for (size_t Reserved : {0u, 1u, 5u, 40u, 1000u}) {
    SCOPED_TRACE("reserved " + std::to_string(Reserved));
    Graph G;
    auto Add = [&G](const std::string &Name) {
      Tensor T;
      T.Name = Name;
      return G.addTensor(std::move(T));
    };
    std::vector<TensorId> Ids;
    for (int I = 0; I < 30; ++I)
      Ids.push_back(Add("before." + std::to_string(I)));
    G.reserve(Reserved, Reserved);
    for (int I = 0; I < 300; ++I)
      Ids.push_back(Add("after." + std::to_string(I)));
    TensorId Repeat = Add("before.7");
    EXPECT_EQ(G.findTensor("before.7"), Ids[7]);
    EXPECT_NE(Repeat, Ids[7]);
    for (TensorId Id : Ids)
      EXPECT_EQ(G.findTensor(G.Tensors[Id].Name), Id);
    EXPECT_EQ(G.findTensor("missing"), NoTensor);
    EXPECT_GE(G.Tensors.capacity(), Reserved);
  }
}

TEST(Graph, PermutationsAreEachDimOnce) {
  EXPECT_TRUE(isPermutation({0, 2, 1}, 3));
  EXPECT_TRUE(isPermutation({}, 0));
  EXPECT_FALSE(isPermutation({0, 2, 1, 42}, 4)) << "a dim past the rank";
  EXPECT_FALSE(isPermutation({0, -1, 1}, 3)) << "a negative dim";
  EXPECT_FALSE(isPermutation({0, 1, 1}, 3)) << "a dim twice";
  EXPECT_FALSE(isPermutation({1, 0}, 3)) << "the wrong length";
}
