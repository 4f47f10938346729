//===- CheckpointOptimalTest.cpp - least recompute within a memory budget ----------===//
//
// The DP against hand-computed cases and brute force; the resolved choice against the
// full simulation (it fits, larger budgets never recompute more, it never recomputes
// more than the fewest-first-blocks answer); the per-block selection form the choice
// is written in.
//
//===----------------------------------------------------------------------------===//
#include "planner/CheckpointBudget.h"
#include "planner/CheckpointOptimal.h"

#include "analyzer/ModelImporter.h"
#include "analyzer/StepSimulator.h"
#include "analyzer/Units.h"

#include <gtest/gtest.h>

#include <random>

using namespace trainmem;

namespace {

CheckpointCandidate block(int64_t SelSaving, int64_t SelFlops, int64_t FullSaving,
                          int64_t FullFlops) {
  CheckpointCandidate C;
  C.KeepBytes = FullSaving;
  C.SelectiveSaving = SelSaving;
  C.SelectiveFlops = SelFlops;
  C.FullSaving = FullSaving;
  C.FullFlops = FullFlops;
  return C;
}

using BC = BlockCheckpoint;

/// The cheapest choice by trying all 3^n of them.
int64_t bruteForce(const std::vector<CheckpointCandidate> &Blocks, int64_t Required,
                   bool BackwardConstraints) {
  int64_t Best = -1;
  size_t Total = 1;
  for (size_t I = 0; I < Blocks.size(); ++I)
    Total *= 3;
  for (size_t Code = 0; Code < Total; ++Code) {
    int64_t Saving = 0, Flops = 0;
    size_t C = Code;
    bool Ok = true;
    for (size_t I = 0; I < Blocks.size(); ++I) {
      const CheckpointCandidate &B = Blocks[I];
      // While block I's backward runs: the savings before it against the requirement
      // less what the blocks after it kept.
      int64_t After = 0;
      for (size_t J = I + 1; J < Blocks.size(); ++J)
        After += Blocks[J].KeepBytes;
      if (BackwardConstraints && Saving < Required - After)
        Ok = false;
      Saving += C % 3 == 1 ? B.SelectiveSaving : C % 3 == 2 ? B.FullSaving : 0;
      Flops += C % 3 == 1 ? B.SelectiveFlops : C % 3 == 2 ? B.FullFlops : 0;
      C /= 3;
    }
    if (Ok && Saving >= Required && (Best < 0 || Flops < Best))
      Best = Flops;
  }
  return Best;
}

const std::vector<CheckpointCandidate> ThreeBlocks = {
    block(2, 1, 10, 10), block(5, 3, 8, 9), block(4, 2, 6, 7)};

struct Model {
  Graph G;
  TrainingSetup Setup;
  ParameterCensus Census;
};

Model tinyLlama() {
  ImportOptions O;
  O.Dims = {{"batch", 8}, {"seq", 512}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json", O);
  EXPECT_TRUE(static_cast<bool>(G));
  Model M{std::move(*G), {}, {}};
  M.Setup.Device = DeviceKind::Cpu; // tensor-level peaks: no allocator rounding
  auto C = takeCensus(M.G, M.Setup);
  EXPECT_TRUE(static_cast<bool>(C));
  M.Census = std::move(*C);
  return M;
}

int64_t need(const Model &M, const std::string &Mode) {
  TrainingSetup S = M.Setup;
  S.Checkpoint = Mode;
  auto R = simulateStep(M.G, S, M.Census);
  EXPECT_TRUE(static_cast<bool>(R)) << Mode;
  return R->PeakReserved.value_or(R->Peak);
}

/// Forward FLOPs of each repeated block, in order.
std::vector<int64_t> blockFlops(const Graph &G) {
  std::vector<SimOp> Ops = buildSimOps(G, G.DeclaredFusedAttention);
  std::vector<int64_t> Out;
  std::string Current;
  for (const SimOp &Op : Ops) {
    std::string B = blockOfLayerPath(Op.Layer);
    if (B.empty()) {
      Current.clear();
      continue;
    }
    if (B != Current)
      Out.push_back(0);
    Current = B;
    Out.back() += forwardFlops(G, Op);
  }
  return Out;
}

} // namespace

TEST(CheckpointKnapsack, HandComputedChain) {
  // Nothing asked: keep everything.
  KnapsackSolution Zero = solveCheckpointKnapsack(ThreeBlocks, 0, 1);
  ASSERT_TRUE(Zero.Feasible);
  EXPECT_EQ(Zero.Flops, 0);
  EXPECT_EQ(Zero.Choice, (std::vector<BC>{BC::Keep, BC::Keep, BC::Keep}));
  // 11 bytes: the three selective options free exactly 2 + 5 + 4 for 1 + 3 + 2 FLOPs.
  KnapsackSolution Eleven = solveCheckpointKnapsack(ThreeBlocks, 11, 1);
  ASSERT_TRUE(Eleven.Feasible);
  EXPECT_EQ(Eleven.Flops, 6);
  EXPECT_EQ(Eleven.Saving, 11);
  EXPECT_EQ(Eleven.Choice, (std::vector<BC>{BC::Selective, BC::Selective, BC::Selective}));
  // 12 bytes: block 1 whole + block 2 selective (12 bytes, 11 FLOPs) ties with block 0
  // selective + block 1 selective + block 2 whole (13 bytes, 11 FLOPs); the tie goes to
  // the choice that checkpoints earlier blocks (1 + 2 against 0 + 1 + 2: fewer, lower).
  KnapsackSolution Twelve = solveCheckpointKnapsack(ThreeBlocks, 12, 1);
  ASSERT_TRUE(Twelve.Feasible);
  EXPECT_EQ(Twelve.Flops, 11);
  EXPECT_EQ(Twelve.Choice, (std::vector<BC>{BC::Keep, BC::Full, BC::Selective}));
  // 24 bytes: every block whole; 25 is more than any choice frees.
  KnapsackSolution All = solveCheckpointKnapsack(ThreeBlocks, 24, 1);
  ASSERT_TRUE(All.Feasible);
  EXPECT_EQ(All.Flops, 26);
  EXPECT_EQ(All.Choice, (std::vector<BC>{BC::Full, BC::Full, BC::Full}));
  EXPECT_FALSE(solveCheckpointKnapsack(ThreeBlocks, 25, 1).Feasible);
}

TEST(CheckpointKnapsack, BackwardConstraintsCountOnlyTheBlocksBefore) {
  // Keep bytes 10, 8, 6; 12 asked. While block 1's backward runs, block 2 (6 bytes)
  // is freed, so block 0 must free 6 or more: whole (10). While block 2's runs, blocks 0
  // and 1 must free 12: block 1 adds 2 or more, selectively for 3 FLOPs. Block 2's own
  // saving never helps its backward.
  KnapsackSolution Sol = solveCheckpointKnapsack(ThreeBlocks, 12, 1, true);
  ASSERT_TRUE(Sol.Feasible);
  EXPECT_EQ(Sol.Flops, 13);
  EXPECT_EQ(Sol.Choice, (std::vector<BC>{BC::Full, BC::Selective, BC::Keep}));
  // Without the constraints the cheapest 12 bytes cost 11 FLOPs (HandComputedChain).
  EXPECT_EQ(solveCheckpointKnapsack(ThreeBlocks, 12, 1).Flops, 11);
  // Block 0's backward has only the 8 + 6 bytes of the blocks after it freed, and
  // nothing before it to checkpoint: 14 bytes is the most that can be asked.
  EXPECT_TRUE(solveCheckpointKnapsack(ThreeBlocks, 14, 1, true).Feasible);
  EXPECT_FALSE(solveCheckpointKnapsack(ThreeBlocks, 15, 1, true).Feasible);
}

TEST(CheckpointKnapsack, MatchesBruteForceAndGrowsWithTheRequirement) {
  std::mt19937 Rng(7);
  std::uniform_int_distribution<int64_t> Bytes(0, 40), Flops(1, 30);
  for (int Case = 0; Case < 60; ++Case) {
    std::vector<CheckpointCandidate> Blocks;
    int64_t Most = 0;
    for (int I = 0; I < 6; ++I) {
      int64_t SelSaving = Bytes(Rng), FullSaving = SelSaving + Bytes(Rng);
      int64_t SelFlops = Flops(Rng);
      Blocks.push_back(block(SelSaving, SelFlops, FullSaving, SelFlops + Flops(Rng)));
      Most += FullSaving;
    }
    for (bool Backward : {false, true}) {
      int64_t Previous = 0;
      for (int64_t Required = 0; Required <= Most + 1; ++Required) {
        KnapsackSolution Sol = solveCheckpointKnapsack(Blocks, Required, 1, Backward);
        int64_t Expected = bruteForce(Blocks, Required, Backward);
        ASSERT_EQ(Sol.Feasible, Expected >= 0)
            << "case " << Case << " required " << Required << " backward " << Backward;
        if (!Sol.Feasible)
          continue;
        EXPECT_EQ(Sol.Flops, Expected) << "case " << Case << " required " << Required;
        EXPECT_GE(Sol.Saving, Required);
        EXPECT_GE(Sol.Flops, Previous) << "asking for more never recomputes less";
        Previous = Sol.Flops;
      }
    }
  }
}

TEST(CheckpointKnapsack, BucketsRoundToTheNearest) {
  // Buckets of 4 bytes, savings to the nearest: block 0 frees 1 or 3 buckets, block 1
  // 1 or 2, block 2 1 or 2; 16 bytes ask for 4. The cheapest 4 buckets are blocks 0 and
  // 1 selective and block 2 whole (1 + 3 + 7 FLOPs), which frees 13 bytes: rounding may
  // undershoot by half a bucket per block, which the caller's simulation checks.
  KnapsackSolution Sol = solveCheckpointKnapsack(ThreeBlocks, 16, 4);
  ASSERT_TRUE(Sol.Feasible);
  EXPECT_EQ(Sol.Flops, 11);
  EXPECT_EQ(Sol.Saving, 13);
  EXPECT_EQ(Sol.Choice, (std::vector<BC>{BC::Selective, BC::Selective, BC::Full}));
}

TEST(BlockCheckpointSelection, ParsesFormatsAndRefuses) {
  auto Sel = parseBlockCheckpointSelection("blocks:3,0-1,7+selective:4-5");
  ASSERT_TRUE(static_cast<bool>(Sel));
  ASSERT_TRUE(Sel->has_value());
  EXPECT_EQ((*Sel)->Full, (std::vector<int64_t>{0, 1, 3, 7}));
  EXPECT_EQ((*Sel)->Selective, (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(formatBlockCheckpointSelection(**Sel), "blocks:0-1,3,7+selective:4-5");
  auto Plain = parseBlockCheckpointSelection("blocks");
  ASSERT_TRUE(static_cast<bool>(Plain));
  EXPECT_FALSE(Plain->has_value());
  for (const char *Bad : {"blocks:", "blocks:a", "blocks:3-1", "blocks:1+selective:1",
                          "selective:0+selective:1", "blocks:0+first:2",
                          "blocks:0-99999999999", "blocks:-1"}) {
    auto E = parseBlockCheckpointSelection(Bad);
    ASSERT_FALSE(static_cast<bool>(E)) << Bad;
    EXPECT_NE(llvm::toString(E.takeError()).find("--checkpoint="), std::string::npos);
  }
  EXPECT_NE(llvm::toString(validateCheckpoint("optimal:")).find("optimal:SIZE"),
            std::string::npos);
  EXPECT_EQ(llvm::toString(validateCheckpoint("optimal:40GiB")), "");
  EXPECT_EQ(llvm::toString(validateCheckpoint("blocks:0-3+selective:4")), "");
  EXPECT_NE(llvm::toString(validateCheckpoint("blocks:x")).find("blocks:LIST"),
            std::string::npos);
}

TEST(BlockCheckpointSelection, SimulatesLikeTheUniformModes) {
  Model M = tinyLlama();
  EXPECT_EQ(need(M, "blocks:0"), need(M, "first:1"));
  EXPECT_EQ(need(M, "blocks:0-1"), need(M, "blocks"));
  EXPECT_EQ(need(M, "selective:0-1"), need(M, "selective"));
  EXPECT_NE(need(M, "blocks:1"), need(M, "none"));
  EXPECT_NE(need(M, "blocks:0+selective:1"), need(M, "blocks"));
}

/// Budgets from every block checkpointed (All) to none (None) in Steps parts, from step
/// From: each choice fits by its own simulation, recompute never rises with the budget,
/// and it is never more than the fewest first blocks that fit (budget:).
static void sweepBudgets(const Model &M, int64_t All, int64_t None, int From, int Steps) {
  std::vector<int64_t> PerBlock = blockFlops(M.G);
  int64_t Previous = INT64_MAX;
  for (int Step = From; Step <= Steps; ++Step) {
    int64_t Budget = All + (None - All) * Step / Steps;
    TrainingSetup S = M.Setup;
    S.Checkpoint = "optimal:" + std::to_string(Budget);
    auto Choice = chooseOptimalCheckpoint(M.G, S, M.Census);
    ASSERT_TRUE(static_cast<bool>(Choice)) << Budget << ": " << llvm::toString(Choice.takeError());
    EXPECT_EQ(Choice->Required, need(M, Choice->Mode)) << Choice->Mode;
    EXPECT_LE(Choice->Required, Budget) << Choice->Mode;
    EXPECT_LE(Choice->RecomputeFlops, Previous) << "budget " << Budget << ": " << Choice->Mode;
    Previous = Choice->RecomputeFlops;
    S.Checkpoint = "budget:" + std::to_string(Budget);
    auto First = chooseCheckpointForBudget(M.G, S, M.Census);
    ASSERT_TRUE(static_cast<bool>(First));
    int64_t FirstFlops = 0;
    for (int64_t K = 0; K < First->Checkpointed; ++K)
      FirstFlops += PerBlock[static_cast<size_t>(K)];
    EXPECT_LE(Choice->RecomputeFlops, FirstFlops) << Choice->Mode << " against " << First->Mode;
  }
}

TEST(CheckpointOptimal, FitsByTheFullSimulationAndNeverRecomputesMoreForMore) {
  Model M = tinyLlama();
  int64_t None = need(M, "none"), All = need(M, "blocks");
  ASSERT_LT(All, None);
  ASSERT_EQ(blockFlops(M.G).size(), 2u);
  sweepBudgets(M, All, None, 0, 8);
  // The whole budget needs nothing; every block is the most that can be done.
  TrainingSetup S = M.Setup;
  S.Checkpoint = "optimal:" + std::to_string(None);
  auto Nothing = chooseOptimalCheckpoint(M.G, S, M.Census);
  ASSERT_TRUE(static_cast<bool>(Nothing));
  EXPECT_EQ(Nothing->Mode, "none");
  EXPECT_EQ(Nothing->RecomputeFlops, 0);
}

TEST(CheckpointOptimal, MonotoneOnGpt2WithTheCachingAllocator) {
  // peak_reserved rounds to the allocator's segments, which the DP's proxy does not see.
  ImportOptions O;
  O.Dims = {{"batch", 4}, {"seq", 512}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/gpt2/config.json", O);
  ASSERT_TRUE(static_cast<bool>(G));
  Model M{std::move(*G), {}, {}};
  M.Setup.Prec = Precision::AmpBf16;
  M.Setup.Gpu = "a100-sxm-80gb";
  auto C = takeCensus(M.G, M.Setup);
  ASSERT_TRUE(static_cast<bool>(C));
  M.Census = std::move(*C);
  int64_t None = need(M, "none"), All = need(M, "blocks");
  ASSERT_LT(All, None);
  sweepBudgets(M, All, None, 1, 12);
}

TEST(CheckpointOptimal, RefusesWhatNoChoiceMeetsAndBadSizes) {
  Model M = tinyLlama();
  int64_t All = need(M, "blocks");
  TrainingSetup S = M.Setup;
  S.Checkpoint = "optimal:" + std::to_string(All / 2);
  auto Miss = chooseOptimalCheckpoint(M.G, S, M.Census);
  ASSERT_FALSE(static_cast<bool>(Miss));
  std::string Message = llvm::toString(Miss.takeError());
  EXPECT_NE(Message.find("--checkpoint=optimal:"), std::string::npos) << Message;
  EXPECT_NE(Message.find("least memory found"), std::string::npos) << Message;
  // The figure is a whole step's: the fewest bytes of every block checkpointed or
  // selective (the search's fit probes stop early, and are replayed whole for this).
  int64_t Least = std::min(All, need(M, "selective"));
  EXPECT_NE(Message.find("least memory found is " + formatBytes(Least)), std::string::npos)
      << Message << " (expected " << formatBytes(Least) << ")";
  S.Checkpoint = "optimal:lots";
  auto Bad = chooseOptimalCheckpoint(M.G, S, M.Census);
  ASSERT_FALSE(static_cast<bool>(Bad));
  EXPECT_NE(llvm::toString(Bad.takeError()).find("expected optimal:SIZE"), std::string::npos);
}

TEST(CheckpointOptimal, CountsMatmulFlopsFromShapes) {
  Model M = tinyLlama();
  std::vector<SimOp> Ops = buildSimOps(M.G, M.G.DeclaredFusedAttention);
  bool SawLinear = false;
  for (const SimOp &Op : Ops)
    if (Op.Kind == "Linear" && !SawLinear) {
      SawLinear = true;
      const Tensor &X = M.G.Tensors[Op.Inputs[0]];
      const Tensor &Y = M.G.Tensors[Op.Outputs[0]];
      // 2 * M * N * K: every output element is a K-long dot product.
      EXPECT_EQ(forwardFlops(M.G, Op), 2 * Y.numElements() * X.Shape.back());
    }
  EXPECT_TRUE(SawLinear);
  EXPECT_EQ(formatFlops(1234), "1.23 kFLOP");
  EXPECT_EQ(formatFlops(999), "999 FLOP");
}

TEST(CheckpointOptimal, CountsTheExpertsGroupedMatmulsAsMatmuls) {
  // Mixtral-8x7B at 1 x 64 tokens: each layer's two grouped matmuls multiply tokens x 2
  // rows by one expert's [4096, 2 x 14336] and [14336, 4096] matrices; recompute costs and
  // the selective policy count them as matmuls.
  ImportOptions O;
  O.Dims = {{"batch", 1}, {"seq", 64}};
  auto G = importHfConfig(std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/mixtral-8x7b/config.json", O);
  ASSERT_TRUE(static_cast<bool>(G)) << llvm::toString(G.takeError());
  int64_t Grouped = 0, Count = 0;
  for (const SimOp &Op : buildSimOps(*G, G->DeclaredFusedAttention))
    if (Op.Kind == "GroupedMatMul") {
      Grouped += forwardFlops(*G, Op);
      ++Count;
    }
  EXPECT_EQ(Count, 2 * 32);
  const int64_t Rows = 64 * 2, H = 4096, I = 14336;
  EXPECT_EQ(Grouped, 32 * (2 * Rows * H * 2 * I + 2 * Rows * I * H));
}
