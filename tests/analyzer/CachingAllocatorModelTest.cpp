//===- CachingAllocatorModelTest.cpp - the caching allocator replay --------------===//
//
// Each test sets up the allocator state it checks with a few allocations and frees and
// compares with what PyTorch's CUDACachingAllocator does in that state, worked out by
// hand from its source (round_size, get_allocation_size, get_free_block, should_split,
// free_block). A seeded random replay checks the invariants over many operations.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/CachingAllocatorModel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <set>
#include <utility>
#include <vector>

using namespace trainmem;
using Handle = CachingAllocatorModel::Handle;

namespace {

constexpr int64_t KiB = 1024;
constexpr int64_t MiB = 1024 * KiB;

/// Allocates blocks of the given sizes (in MiB, under 10 MiB each, at most 20 in all)
/// from one 20 MiB large-pool segment and returns their handles; the blocks lie in
/// order from address 0 and whatever is left stays free at the end.
std::vector<Handle> fillLargeSegment(CachingAllocatorModel &A,
                                     std::initializer_list<int64_t> SizesMiB) {
  std::vector<Handle> Hs;
  for (int64_t S : SizesMiB)
    Hs.push_back(A.allocate(S * MiB));
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.reservedBytes(), 20 * MiB);
  return Hs;
}

} // namespace

TEST(CachingAllocator, RoundsRequestsUpToMultiplesOf512Bytes) {
  EXPECT_EQ(CachingAllocatorModel::roundSize(1), 512);
  EXPECT_EQ(CachingAllocatorModel::roundSize(512), 512);
  EXPECT_EQ(CachingAllocatorModel::roundSize(513), 1024);
  EXPECT_EQ(CachingAllocatorModel::roundSize(10 * MiB + 1), 10 * MiB + 512);

  CachingAllocatorModel A;
  Handle One = A.allocate(1);
  Handle Odd = A.allocate(513);
  EXPECT_EQ(A.blockBytes(One), 512);
  EXPECT_EQ(A.blockBytes(Odd), 1024);
  EXPECT_EQ(A.allocatedBytes(), 512 + 1024);
  // Both fit in the first small segment, back to back.
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.addressOf(Odd), A.addressOf(One) + 512);
}

TEST(CachingAllocator, SegmentSizeDependsOnPoolAndRequest) {
  struct Case {
    int64_t Request;
    int64_t Reserved;
  };
  const Case Cases[] = {
      {1 * KiB, 2 * MiB},         // small pool: 2 MiB segments
      {1 * MiB, 2 * MiB},         // 1 MiB is still small (size <= kSmallSize)
      {1 * MiB + 1, 20 * MiB},    // large, under 10 MiB: one 20 MiB segment
      {3 * MiB / 2, 20 * MiB},    // 1.5 MiB
      {10 * MiB - 512, 20 * MiB}, // last size below kMinLargeAlloc
      {10 * MiB, 10 * MiB},       // from kMinLargeAlloc on: rounded to 2 MiB
      {10 * MiB + 1, 12 * MiB},   // 10 MiB + 512 rounds up to 12 MiB
      {12 * MiB, 12 * MiB},       {100 * MiB + 3, 102 * MiB},
  };
  for (const Case &C : Cases) {
    CachingAllocatorModel A;
    A.allocate(C.Request);
    EXPECT_EQ(A.reservedBytes(), C.Reserved) << "request " << C.Request;
    EXPECT_EQ(A.segmentCount(), 1u) << "request " << C.Request;
    EXPECT_EQ(CachingAllocatorModel::segmentSizeFor(
                  CachingAllocatorModel::roundSize(C.Request)),
              C.Reserved)
        << "request " << C.Request;
  }
}

TEST(CachingAllocator, ZeroByteRequestIsNullAndReservesNothing) {
  CachingAllocatorModel A;
  Handle H = A.allocate(0);
  EXPECT_EQ(H, CachingAllocatorModel::NullHandle);
  EXPECT_EQ(A.allocatedBytes(), 0);
  EXPECT_EQ(A.reservedBytes(), 0);
  EXPECT_EQ(A.segmentCount(), 0u);
  A.free(H);
  EXPECT_EQ(A.allocatedBytes(), 0);
  EXPECT_EQ(A.reservedBytes(), 0);
}

TEST(CachingAllocator, FreedBlockIsReusedWithoutANewSegment) {
  CachingAllocatorModel A;
  Handle First = A.allocate(4 * MiB);
  const int64_t Address = A.addressOf(First);
  A.free(First);
  EXPECT_EQ(A.allocatedBytes(), 0);
  EXPECT_EQ(A.reservedBytes(), 20 * MiB); // segments are kept
  EXPECT_EQ(A.blockBytes(First), 0);      // the old handle is no longer live
  EXPECT_EQ(A.addressOf(First), -1);

  Handle Second = A.allocate(4 * MiB);
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.reservedBytes(), 20 * MiB);
  EXPECT_EQ(A.addressOf(Second), Address);
  EXPECT_NE(Second, First);

  // Same in the small pool.
  Handle Small = A.allocate(100 * KiB);
  A.free(Small);
  A.allocate(100 * KiB);
  EXPECT_EQ(A.segmentCount(), 2u);
  EXPECT_EQ(A.reservedBytes(), 22 * MiB);
}

TEST(CachingAllocator, SmallPoolPacksRequestsIntoTwoMiBSegments) {
  CachingAllocatorModel A;
  for (int I = 0; I < 4; ++I)
    A.allocate(512 * KiB);
  // The fourth takes the last 512 KiB exactly: nothing left to split.
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.allocatedBytes(), 2 * MiB);
  A.allocate(512);
  EXPECT_EQ(A.segmentCount(), 2u);
  EXPECT_EQ(A.reservedBytes(), 4 * MiB);
}

TEST(CachingAllocator, LargeSegmentIsSplitAmongRequests) {
  CachingAllocatorModel A;
  Handle First = A.allocate(4 * MiB);
  Handle Second = A.allocate(4 * MiB);
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.blockBytes(First), 4 * MiB);
  EXPECT_EQ(A.addressOf(Second), A.addressOf(First) + 4 * MiB);
  EXPECT_EQ(A.allocatedBytes(), 8 * MiB);
}

TEST(CachingAllocator, LargeRemainderOfOneMiBOrLessIsNotSplitOff) {
  // 19 MiB gets a 20 MiB segment (rounded to 2 MiB); the 1 MiB left is not > kSmallSize,
  // so the block keeps it and memory_allocated counts it.
  CachingAllocatorModel A;
  Handle H = A.allocate(19 * MiB);
  EXPECT_EQ(A.blockBytes(H), 20 * MiB);
  EXPECT_EQ(A.allocatedBytes(), 20 * MiB);
  // In the small pool a remainder of 512 B is split off, and the next 512 B request
  // takes it exactly.
  CachingAllocatorModel B;
  B.allocate(1 * MiB);
  Handle Small = B.allocate(1 * MiB - 600);
  EXPECT_EQ(B.blockBytes(Small), 1 * MiB - 512);
  Handle Tail = B.allocate(512);
  EXPECT_EQ(B.blockBytes(Tail), 512);
  EXPECT_EQ(B.addressOf(Tail), 2 * MiB - 512);
  EXPECT_EQ(B.segmentCount(), 1u);
}

TEST(CachingAllocator, AdjacentFreesMergeAndServeALargerRequest) {
  CachingAllocatorModel A;
  std::vector<Handle> Hs = fillLargeSegment(A, {4, 4, 4, 8});
  A.free(Hs[0]);
  A.free(Hs[1]);
  // Two 4 MiB blocks merged into 8 MiB at address 0: a 7 MiB request fits there
  // (its 1 MiB remainder stays with the block), no new segment.
  Handle H = A.allocate(7 * MiB);
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.addressOf(H), 0);
  EXPECT_EQ(A.blockBytes(H), 8 * MiB);
}

TEST(CachingAllocator, FreeMergesWithBothNeighbours) {
  CachingAllocatorModel A;
  std::vector<Handle> Hs = fillLargeSegment(A, {4, 4, 4, 8});
  A.free(Hs[0]);
  A.free(Hs[2]);
  A.free(Hs[1]); // joins [0, 4) and [8, 12) into [0, 12)
  Handle H = A.allocate(12 * MiB);
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.addressOf(H), 0);
  EXPECT_EQ(A.blockBytes(H), 12 * MiB);
  // Everything freed: the whole segment is one block again.
  A.free(H);
  A.free(Hs[3]);
  Handle Whole = A.allocate(20 * MiB);
  EXPECT_EQ(A.segmentCount(), 1u);
  EXPECT_EQ(A.addressOf(Whole), 0);
}

TEST(CachingAllocator, BestFitTakesTheSmallestBlockThatFits) {
  CachingAllocatorModel A;
  // [X 6][keep 2][Z 3][keep 2][rest 7]
  std::vector<Handle> Hs = fillLargeSegment(A, {6, 2, 3, 2});
  A.free(Hs[0]);
  A.free(Hs[2]);
  // Free blocks: 6 MiB at 0, 3 MiB at 8, 7 MiB at 13.
  Handle Three = A.allocate(3 * MiB);
  EXPECT_EQ(A.addressOf(Three), 8 * MiB);
  Handle Five = A.allocate(5 * MiB);
  EXPECT_EQ(A.addressOf(Five), 0);
  EXPECT_EQ(A.blockBytes(Five), 6 * MiB); // 1 MiB remainder is not split off
  Handle Seven = A.allocate(7 * MiB);
  EXPECT_EQ(A.addressOf(Seven), 13 * MiB);
  EXPECT_EQ(A.segmentCount(), 1u);
}

TEST(CachingAllocator, BestFitBreaksTiesByLowerAddress) {
  CachingAllocatorModel A;
  std::vector<Handle> Hs = fillLargeSegment(A, {4, 2, 4, 2, 8});
  A.free(Hs[2]);
  A.free(Hs[0]);
  Handle H = A.allocate(4 * MiB);
  EXPECT_EQ(A.addressOf(H), 0);
  Handle Next = A.allocate(4 * MiB);
  EXPECT_EQ(A.addressOf(Next), 6 * MiB);
}

TEST(CachingAllocator, FragmentationForcesANewSegment) {
  CachingAllocatorModel A;
  std::vector<Handle> Hs = fillLargeSegment(A, {4, 4, 4, 4, 4});
  A.free(Hs[0]);
  A.free(Hs[2]);
  A.free(Hs[4]);
  // 12 MiB free in the segment, but in three separate 4 MiB holes.
  EXPECT_EQ(A.allocatedBytes(), 8 * MiB);
  EXPECT_EQ(A.reservedBytes(), 20 * MiB);
  A.allocate(6 * MiB);
  EXPECT_EQ(A.segmentCount(), 2u);
  EXPECT_EQ(A.reservedBytes(), 40 * MiB);
  EXPECT_EQ(A.allocatedBytes(), 14 * MiB);
  EXPECT_GT(A.reservedBytes(), A.allocatedBytes());
}

TEST(CachingAllocator, PoolsDoNotShareSegments) {
  CachingAllocatorModel A;
  Handle Large = A.allocate(4 * MiB);
  A.free(Large);
  // 16 MiB+ free in the large pool, yet a small request opens a small segment.
  A.allocate(4 * KiB);
  EXPECT_EQ(A.segmentCount(), 2u);
  EXPECT_EQ(A.reservedBytes(), 22 * MiB);
}

TEST(CachingAllocator, TracksPeaks) {
  CachingAllocatorModel A;
  Handle First = A.allocate(8 * MiB);
  Handle Second = A.allocate(8 * MiB);
  EXPECT_EQ(A.peakAllocatedBytes(), 16 * MiB);
  A.free(First);
  A.free(Second);
  EXPECT_EQ(A.allocatedBytes(), 0);
  EXPECT_EQ(A.peakAllocatedBytes(), 16 * MiB);
  EXPECT_EQ(A.peakReservedBytes(), 20 * MiB);
  A.allocate(30 * MiB);
  EXPECT_EQ(A.peakAllocatedBytes(), 30 * MiB);
  EXPECT_EQ(A.reservedBytes(), 50 * MiB);
  EXPECT_EQ(A.peakReservedBytes(), 50 * MiB);
}

TEST(CachingAllocator, MaxSplitSizeKeepsOversizeBlocksWhole) {
  CachingAllocatorOptions Options;
  Options.MaxSplitSizeBytes = 32 * MiB; // PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:32
  CachingAllocatorModel A(Options);
  Handle Big = A.allocate(40 * MiB);
  A.free(Big);
  // A request under max_split_size may not take (and split) an oversize block.
  A.allocate(8 * MiB);
  EXPECT_EQ(A.segmentCount(), 2u);
  // One at or above it takes the cached 40 MiB block whole, as it is < 36 + 20 MiB.
  Handle Reused = A.allocate(36 * MiB);
  EXPECT_EQ(A.segmentCount(), 2u);
  EXPECT_EQ(A.blockBytes(Reused), 40 * MiB);
  // But not when the cached block is kLargeBuffer (20 MiB) or more above the request.
  CachingAllocatorModel B(Options);
  B.free(B.allocate(100 * MiB));
  B.allocate(64 * MiB);
  EXPECT_EQ(B.segmentCount(), 2u);
  EXPECT_EQ(B.reservedBytes(), 164 * MiB);
}

TEST(CachingAllocator, RandomReplayKeepsInvariants) {
  std::mt19937_64 Rng(20240611);
  auto pickSize = [&]() -> int64_t {
    switch (Rng() % 10) {
    case 0:
      return 0;
    case 1:
    case 2:
    case 3:
    case 4:
      return static_cast<int64_t>(Rng() % (1 * MiB)) + 1;
    case 5:
    case 6:
    case 7:
      return static_cast<int64_t>(Rng() % (10 * MiB)) + 1;
    default:
      return static_cast<int64_t>(Rng() % (96 * MiB)) + 1;
    }
  };
  CachingAllocatorModel A;
  std::vector<std::pair<Handle, int64_t>> Live;
  int64_t LiveBytes = 0, LastReserved = 0;
  size_t LastSegments = 0;
  auto checkInvariants = [&](int Step) {
    ASSERT_EQ(A.allocatedBytes(), LiveBytes) << "step " << Step;
    ASSERT_LE(A.allocatedBytes(), A.reservedBytes()) << "step " << Step;
    ASSERT_GE(A.reservedBytes(), LastReserved) << "step " << Step;
    ASSERT_GE(A.segmentCount(), LastSegments) << "step " << Step;
    ASSERT_GE(A.peakAllocatedBytes(), A.allocatedBytes()) << "step " << Step;
    ASSERT_EQ(A.peakReservedBytes(), A.reservedBytes()) << "step " << Step;
    LastReserved = A.reservedBytes();
    LastSegments = A.segmentCount();
  };
  auto checkNoOverlap = [&]() {
    std::vector<std::pair<int64_t, int64_t>> Ranges;
    for (auto &[H, Request] : Live)
      if (H != CachingAllocatorModel::NullHandle)
        Ranges.emplace_back(A.addressOf(H), A.blockBytes(H));
    std::sort(Ranges.begin(), Ranges.end());
    for (size_t I = 1; I < Ranges.size(); ++I)
      ASSERT_LE(Ranges[I - 1].first + Ranges[I - 1].second, Ranges[I].first);
  };

  for (int Step = 0; Step < 20000; ++Step) {
    const bool DoAllocate = Live.empty() || Rng() % 100 < (Live.size() < 64 ? 60 : 40);
    if (DoAllocate) {
      int64_t Request = pickSize();
      Handle H = A.allocate(Request);
      if (Request == 0) {
        ASSERT_EQ(H, CachingAllocatorModel::NullHandle);
      } else {
        ASSERT_GE(A.blockBytes(H), CachingAllocatorModel::roundSize(Request));
        LiveBytes += A.blockBytes(H);
      }
      Live.emplace_back(H, Request);
    } else {
      size_t Pick = Rng() % Live.size();
      LiveBytes -= A.blockBytes(Live[Pick].first);
      A.free(Live[Pick].first);
      Live[Pick] = Live.back();
      Live.pop_back();
    }
    checkInvariants(Step);
    if (Step % 1000 == 0)
      checkNoOverlap();
  }
  checkNoOverlap();
  const int64_t Reserved = A.reservedBytes();
  for (auto &[H, Request] : Live)
    A.free(H);
  EXPECT_EQ(A.allocatedBytes(), 0);
  EXPECT_EQ(A.reservedBytes(), Reserved);
  EXPECT_GT(A.peakAllocatedBytes(), 0);
}

TEST(CachingAllocatorRuntime, CublasWorkspaceFollowsPyTorchDefaults) {
  const int64_t Hopper = 32 * MiB;                     // :4096:8
  const int64_t Older = 4096 * KiB * 2 + 16 * KiB * 8; // :4096:2:16:8
  EXPECT_EQ(Older, 8519680);
  EXPECT_EQ(estimateCudaRuntimeOverhead("h100-sxm-80gb").CublasWorkspaceBytes, Hopper);
  EXPECT_EQ(estimateCudaRuntimeOverhead("NVIDIA H200 SXM 141GB").CublasWorkspaceBytes,
            Hopper);
  EXPECT_EQ(estimateCudaRuntimeOverhead("a100-sxm-80gb").CublasWorkspaceBytes, Older);
  EXPECT_EQ(estimateCudaRuntimeOverhead("NVIDIA GeForce RTX 4090").CublasWorkspaceBytes,
            Older);
  EXPECT_EQ(estimateCudaRuntimeOverhead("l40s").CublasWorkspaceBytes, Older);
  EXPECT_EQ(estimateCudaRuntimeOverhead("t4").CublasWorkspaceBytes, Older);
  EXPECT_EQ(estimateCudaRuntimeOverhead("mi300x").CublasWorkspaceBytes, 128 * MiB);
  // Unknown: the larger CUDA default, and the note says why.
  CudaRuntimeOverhead Unknown = estimateCudaRuntimeOverhead("");
  EXPECT_EQ(Unknown.CublasWorkspaceBytes, Hopper);
  EXPECT_NE(Unknown.Note.find("unknown"), std::string::npos) << Unknown.Note;
  CudaRuntimeOverhead Odd = estimateCudaRuntimeOverhead("some-future-gpu");
  EXPECT_EQ(Odd.CublasWorkspaceBytes, Hopper);
  EXPECT_NE(Odd.Note.find("not recognised"), std::string::npos) << Odd.Note;
}

TEST(CachingAllocatorRuntime, ContextIsAnEstimateAndSaysSo) {
  CudaRuntimeOverhead O = estimateCudaRuntimeOverhead("h100-sxm-80gb");
  // Published figures with lazy loading span roughly 270-400 MiB.
  EXPECT_GE(O.ContextBytes, 270 * MiB);
  EXPECT_LE(O.ContextBytes, 1024 * MiB);
  EXPECT_NE(O.Note.find("not measured"), std::string::npos) << O.Note;
  EXPECT_NE(O.Note.find("memory_reserved"), std::string::npos) << O.Note;
}

TEST(CachingAllocator, BestFitHoldsWithHundredsOfFreeBlocks) {
  // Hundreds of free small-pool blocks of 64 sizes (the pool keeps a class per size, so
  // this creates and empties classes): every request must take the smallest free block
  // that fits, the lowest address among equals, and leave the remainder free.
  std::mt19937_64 Rng(7);
  CachingAllocatorModel A;
  struct Placed {
    int64_t Address, Bytes;
    bool Freed;
  };
  std::vector<Placed> Blocks;
  std::vector<Handle> ToFree;
  for (int I = 0; I < 600; ++I) {
    Handle F = A.allocate(static_cast<int64_t>(1 + Rng() % 64) * 512);
    Handle K = A.allocate(512); // stays live (it may land in an older segment's tail)
    ToFree.push_back(F);
    Blocks.push_back({A.addressOf(F), A.blockBytes(F), true});
    Blocks.push_back({A.addressOf(K), A.blockBytes(K), false});
  }
  for (Handle H : ToFree)
    A.free(H);
  // The free blocks as the allocator must see them: within each 2 MiB segment (laid end
  // to end) the blocks tile it from its start; neighbouring freed blocks merge, and the
  // unused tail merges with a freed block before it.
  const int64_t Reserved = A.reservedBytes();
  const int64_t Segment = 2 * MiB;
  std::sort(Blocks.begin(), Blocks.end(),
            [](const Placed &X, const Placed &Y) { return X.Address < Y.Address; });
  std::set<std::pair<int64_t, int64_t>> Free; // (size, address): BlockComparatorSize
  int64_t RunStart = -1, Cursor = 0;
  auto closeRun = [&](int64_t End) {
    if (RunStart >= 0 && End > RunStart)
      Free.insert({End - RunStart, RunStart});
    RunStart = -1;
  };
  for (const Placed &B : Blocks) {
    if (B.Address / Segment != Cursor / Segment || B.Address != Cursor) {
      // The previous segment ended: its tail (from Cursor) is free.
      ASSERT_EQ(B.Address % Segment, 0) << "blocks must tile their segment";
      if (RunStart < 0 && Cursor % Segment != 0)
        RunStart = Cursor;
      closeRun(Cursor % Segment == 0 ? Cursor : (Cursor / Segment + 1) * Segment);
    }
    if (B.Freed && RunStart < 0)
      RunStart = B.Address;
    if (!B.Freed)
      closeRun(B.Address);
    Cursor = B.Address + B.Bytes;
  }
  if (RunStart < 0 && Cursor % Segment != 0)
    RunStart = Cursor;
  closeRun(Cursor % Segment == 0 ? Cursor : (Cursor / Segment + 1) * Segment);
  ASSERT_EQ(Reserved % Segment, 0);
  ASSERT_GT(Free.size(), 400u);

  int Checked = 0;
  for (int I = 0; I < 2000; ++I) {
    const int64_t Request = static_cast<int64_t>(1 + Rng() % 64) * 512;
    auto Best = Free.lower_bound({Request, std::numeric_limits<int64_t>::min()});
    if (Best == Free.end())
      break; // the next request needs a new segment
    Handle H = A.allocate(Request);
    ASSERT_EQ(A.addressOf(H), Best->second) << "request " << Request << ", step " << I;
    const auto [Size, Address] = *Best;
    Free.erase(Best);
    if (Size - Request >= 512) // a small-pool remainder is split off when it can be used
      Free.insert({Size - Request, Address + Request});
    ASSERT_EQ(A.blockBytes(H), Size - Request >= 512 ? Request : Size);
    ++Checked;
  }
  EXPECT_EQ(A.reservedBytes(), Reserved);
  EXPECT_GT(Checked, 500); // 708 with this seed, until a request needs a new segment
}

TEST(CachingAllocator, StateComparesBlocksNotHandles) {
  // Two replays that reach the same blocks by different routes (A frees a block and
  // takes it back under a new handle) have the same state; a free makes it differ.
  CachingAllocatorModel A, B;
  Handle A1 = A.allocate(3 * MiB);
  A.allocate(1 * MiB);
  A.free(A1);
  Handle A3 = A.allocate(3 * MiB);
  Handle B1 = B.allocate(3 * MiB);
  B.allocate(1 * MiB);
  EXPECT_NE(A3, B1);
  EXPECT_EQ(A.addressOf(A3), B.addressOf(B1));
  std::vector<int64_t> SA, SB;
  A.appendState(SA);
  B.appendState(SB);
  EXPECT_EQ(SA, SB);
  B.free(B1);
  SB.clear();
  B.appendState(SB);
  EXPECT_NE(SA, SB) << "a freed block changes the state";
  // So does a second segment, even once it is free again.
  Handle A4 = A.allocate(30 * MiB);
  A.free(A4);
  std::vector<int64_t> SA2;
  A.appendState(SA2);
  EXPECT_NE(SA, SA2);
}

TEST(CachingAllocator, EveryRequestTakesTheBestFitOfItsPool) {
  // A seeded replay in both pools, sizes drawn from a few shapes (the pools' size classes
  // then hold tens of blocks, as a training step's do) and from anywhere: before every
  // request the free blocks are read from the model's own state, and the request must
  // take the one BlockComparatorSize puts first among those of its pool that fit (the
  // smallest, the lowest address among equals), or a new segment at the end of the
  // others when none fits.
  std::mt19937_64 Rng(20261130);
  const int64_t Shapes[] = {512,      4 * KiB,  96 * KiB, 1 * MiB,  3 * MiB,
                            8 * MiB,  12 * MiB, 32 * MiB, 45 * MiB, 64 * MiB};
  auto pickSize = [&]() -> int64_t {
    if (Rng() % 4 != 0)
      return Shapes[Rng() % std::size(Shapes)] - static_cast<int64_t>(Rng() % 512);
    return static_cast<int64_t>(Rng() % (70 * MiB)) + 1;
  };
  CachingAllocatorModel A;
  std::vector<Handle> Live;
  std::vector<int64_t> State;
  int Checked = 0, FromPool = 0;
  for (int Step = 0; Step < 6000; ++Step) {
    if (!Live.empty() && Rng() % 100 < (Live.size() < 200 ? 40 : 60)) {
      const size_t Pick = Rng() % Live.size();
      A.free(Live[Pick]);
      Live[Pick] = Live.back();
      Live.pop_back();
      continue;
    }
    const int64_t Request = pickSize();
    const int64_t Rounded = CachingAllocatorModel::roundSize(Request);
    const bool Small = Rounded <= 1 * MiB;
    State.clear();
    A.appendState(State);
    // appendState: a count, then (address, size, flags) per block, then the next
    // segment's address first among the counters.
    const size_t Count = static_cast<size_t>(State[0]);
    std::set<std::pair<int64_t, int64_t>> Free; // (size, address)
    for (size_t I = 0; I < Count; ++I) {
      const int64_t Address = State[1 + 3 * I], Size = State[2 + 3 * I],
                    Flags = State[3 + 3 * I];
      if (!(Flags & 1) && ((Flags & 2) != 0) == Small)
        Free.insert({Size, Address});
    }
    const int64_t NextSegment = State[1 + 3 * Count];
    auto Best = Free.lower_bound({Rounded, std::numeric_limits<int64_t>::min()});
    const Handle H = A.allocate(Request);
    ASSERT_EQ(A.addressOf(H), Best == Free.end() ? NextSegment : Best->second)
        << "request " << Request << " at step " << Step;
    FromPool += Best != Free.end();
    ++Checked;
    Live.push_back(H);
  }
  EXPECT_GT(Checked, 2500);
  EXPECT_GT(FromPool, 1500); // most requests are served from cached blocks
}
