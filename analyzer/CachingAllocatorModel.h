//===- CachingAllocatorModel.h - PyTorch's CUDA caching allocator -*- C++ -*-===//
//
// Replays allocations and frees through a model of PyTorch's CUDA caching allocator
// (c10/cuda/CUDACachingAllocator.cpp, DeviceCachingAllocator, read at pytorch/pytorch
// commit 001074d2) to predict torch.cuda.memory_reserved(): the segments the allocator
// has cudaMalloc'ed, which is what nvidia-smi shows for the process, less the CUDA
// context. The constants are PyTorch's:
//   kMinBlockSize  =       512 B  every request is rounded up to a multiple of it;
//   kSmallSize     = 1,048,576 B  (1 MiB) requests up to it use the small pool;
//   kSmallBuffer   = 2,097,152 B  (2 MiB) small-pool segment size;
//   kMinLargeAlloc = 10,485,760 B (10 MiB) large requests below it get a kLargeBuffer
//                                 segment;
//   kLargeBuffer   = 20,971,520 B (20 MiB);
//   kRoundLarge    = 2,097,152 B  (2 MiB) larger requests get a segment rounded up to it.
// Modelled: one stream, best-fit search ordered by (size, address), splitting, merging
// of free neighbours on free, `max_split_size_mb` (unlimited by default) with its
// oversize rules. Not modelled: `expandable_segments`, `roundup_power2_divisions`,
// `garbage_collection_threshold`, multiple streams and recordStream, CUDA graph
// private pools, and anything that releases segments (empty_cache, the OOM retry that
// frees cached blocks): a segment once reserved stays reserved.
//
// Also: estimateCudaRuntimeOverhead(), the memory a PyTorch process holds outside its
// tensors (CUDA context, cuBLAS workspace), from published figures.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_CACHINGALLOCATORMODEL_H
#define TRAINMEM_ANALYZER_CACHINGALLOCATORMODEL_H

#include "llvm/ADT/StringRef.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// PyTorch's allocator constants (CUDACachingAllocator.cpp), in bytes.
namespace caching_allocator {
inline constexpr int64_t MinBlockSize = 512;       ///< kMinBlockSize
inline constexpr int64_t SmallSize = 1048576;      ///< kSmallSize, 1 MiB
inline constexpr int64_t SmallBuffer = 2097152;    ///< kSmallBuffer, 2 MiB
inline constexpr int64_t MinLargeAlloc = 10485760; ///< kMinLargeAlloc, 10 MiB
inline constexpr int64_t LargeBuffer = 20971520;   ///< kLargeBuffer, 20 MiB
inline constexpr int64_t RoundLarge = 2097152;     ///< kRoundLarge, 2 MiB
} // namespace caching_allocator

/// The `PYTORCH_CUDA_ALLOC_CONF` settings the model follows.
struct CachingAllocatorOptions {
  /// `max_split_size_mb` in bytes. Blocks of at least this size are never split, a
  /// request below it never takes such a block, and a request at or above it takes a
  /// cached block only if that block is less than kLargeBuffer (20 MiB) larger.
  /// PyTorch's default is SIZE_MAX: unlimited, and the rules never apply.
  int64_t MaxSplitSizeBytes = std::numeric_limits<int64_t>::max();
};

/// A replay of PyTorch's CUDA caching allocator for one device and one stream.
/// Every operation is O(log n) in the number of blocks.
class CachingAllocatorModel {
public:
  /// Names one live allocation; NullHandle is the allocation of zero bytes.
  using Handle = int64_t;
  static constexpr Handle NullHandle = 0;

  CachingAllocatorModel() = default;
  explicit CachingAllocatorModel(CachingAllocatorOptions Options) : Options(Options) {}

  /// Allocates Bytes (≥ 0) as `CUDACachingAllocator::allocate` would: rounds the size,
  /// takes the best-fitting cached block of its pool or reserves a new segment, and
  /// splits off what the request does not need. Zero bytes give NullHandle and touch
  /// nothing, as PyTorch returns a null pointer without calling malloc for them.
  Handle allocate(int64_t Bytes);
  /// Returns the block to its pool and merges it with free neighbours in its segment.
  /// H must be live (from allocate() and not freed yet); NullHandle is ignored, like
  /// `free(nullptr)`. The segment stays reserved.
  void free(Handle H);

  /// Sum of the rounded sizes of live blocks (`torch.cuda.memory_allocated()`).
  int64_t allocatedBytes() const { return Allocated; }
  /// Sum of the segments reserved so far (`torch.cuda.memory_reserved()`).
  int64_t reservedBytes() const { return Reserved; }
  /// Largest reservedBytes() seen (`max_memory_reserved()`); equal to reservedBytes()
  /// here because the model never releases a segment.
  int64_t peakReservedBytes() const { return PeakReserved; }
  /// Largest allocatedBytes() seen (`max_memory_allocated()`).
  int64_t peakAllocatedBytes() const { return PeakAllocated; }
  /// Segments reserved so far (each one cudaMalloc call).
  size_t segmentCount() const { return Segments; }

  /// Size of a live allocation's block (the rounded request; more when the remainder
  /// was too small to split off).
  int64_t blockBytes(Handle H) const;
  /// A live allocation's address in the model's own address space, where segments are
  /// laid end to end in the order they were reserved. For tests and diagnostics: the
  /// real addresses come from cudaMalloc, and they only break ties between free blocks
  /// of equal size here.
  int64_t addressOf(Handle H) const;

  /// Appends what decides every later answer: each block of every segment in address
  /// order (address, size, allocated, pool) and the counters. Two models with equal
  /// states serve equal sequences of requests identically (handles aside), which lets
  /// a caller recognise a replay that has started repeating itself.
  void appendState(std::vector<int64_t> &Out) const;

  /// The request size PyTorch's `round_size` gives (roundup_power2_divisions unset):
  /// at least kMinBlockSize, rounded up to a multiple of it.
  static int64_t roundSize(int64_t Bytes);
  /// The segment a rounded request reserves when no cached block fits
  /// (`get_allocation_size`).
  static int64_t segmentSizeFor(int64_t RoundedBytes);

private:
  struct Block {
    int64_t Address = 0;
    int64_t Size = 0;
    int32_t Prev = -1; ///< neighbour at lower address in the same segment
    int32_t Next = -1; ///< neighbour at higher address in the same segment
    uint32_t Generation = 1;
    bool Allocated = false;
    bool InSmallPool = false;
  };
  /// Free blocks ordered as PyTorch's BlockComparatorSize: size, then address.
  struct FreeKey {
    int64_t Size;
    int64_t Address;
    int32_t Index;
    bool operator<(const FreeKey &O) const {
      // Without branches: equal sizes are common, and a mispredicted branch per step of
      // the pools' binary searches was most of their cost.
      return (Size < O.Size) | ((Size == O.Size) & (Address < O.Address));
    }
  };
  /// Free blocks sorted as BlockComparatorSize, in sorted chunks of at most 64 keys.
  /// PyTorch keeps a std::set; here the replay inserts and erases at nearly every event
  /// (19 k times per simulated 7B step, the pool holding 170 blocks on average and up to
  /// 1,300), where a set's node allocations, and a single sorted vector's moves, were a
  /// fifth of the planner's time. A chunk moves at most 64 keys; a search is two
  /// binary searches. (LLVM has no B-tree; this is the smallest structure that bounds
  /// both costs.)
  class FreePool {
    /// std::lower_bound over [First, First + N) without a branch per step (the
    /// comparison picks the half with a conditional move).
    template <typename It> static It firstNotLess(It First, size_t N, const FreeKey &K) {
      while (N > 1) {
        const size_t Half = N / 2;
        First = First[Half - 1] < K ? First + Half : First;
        N -= Half;
      }
      return N == 1 && *First < K ? First + 1 : First;
    }

  public:
    /// The first key not less than K, taken out of the pool if Accept(key) says so: one
    /// search where finding it and then erasing it made two (a third of the pool's
    /// searches). (Putting a split block's remainder in its place in the same step
    /// measured slower than inserting it apart.)
    template <typename AcceptFn>
    std::optional<FreeKey> takeFirstNotLess(const FreeKey &K, AcceptFn Accept) {
      auto C = chunkFor(K);
      if (C == Chunks.end())
        return std::nullopt;
      auto It = firstNotLess(C->begin(), C->size(), K);
      const FreeKey Found = *It;
      if (!Accept(Found))
        return std::nullopt;
      C->erase(It);
      if (C->empty())
        Chunks.erase(C);
      return Found;
    }
    void erase(const FreeKey &K) {
      auto C = chunkFor(K);
      if (C == Chunks.end())
        return;
      auto It = firstNotLess(C->begin(), C->size(), K);
      if (K < *It)
        return;
      C->erase(It);
      if (C->empty())
        Chunks.erase(C);
    }
    void insert(const FreeKey &K) {
      if (Chunks.empty()) {
        Chunks.emplace_back(1, K);
        return;
      }
      auto C = chunkFor(K);
      if (C == Chunks.end())
        --C; // past every key: the last chunk grows
      auto It = firstNotLess(C->begin(), C->size(), K);
      if (It != C->end() && !(K < *It))
        return;
      C->insert(It, K);
      if (C->size() <= ChunkKeys)
        return;
      // Split a full chunk in halves.
      std::vector<FreeKey> Upper(C->begin() + ChunkKeys / 2, C->end());
      C->resize(ChunkKeys / 2);
      Chunks.insert(C + 1, std::move(Upper));
    }

  private:
    static constexpr size_t ChunkKeys = 64;
    using Chunk = std::vector<FreeKey>;
    /// The first chunk whose last key is not less than K (the one that holds K's place).
    std::vector<Chunk>::iterator chunkFor(const FreeKey &K) {
      return std::partition_point(Chunks.begin(), Chunks.end(),
                                  [&](const Chunk &C) { return C.back() < K; });
    }
    std::vector<Chunk> Chunks; ///< non-empty, sorted, each chunk's keys before the next's
  };

  int32_t newBlock();
  void releaseBlock(int32_t Index);
  int32_t liveIndex(Handle H) const;
  FreePool &poolOf(const Block &B) { return B.InSmallPool ? SmallPool : LargePool; }
  int32_t takeFreeBlock(FreePool &Pool, int64_t Size);
  bool shouldSplit(const Block &B, int64_t Size) const;
  void mergeInto(int32_t Dst, int32_t Src);

  CachingAllocatorOptions Options;
  std::vector<Block> Blocks;
  std::vector<int32_t> FreeSlots;
  FreePool SmallPool, LargePool;
  int64_t NextSegmentAddress = 0;
  int64_t Allocated = 0, Reserved = 0, PeakAllocated = 0, PeakReserved = 0;
  size_t Segments = 0;
};

/// Device memory a PyTorch process uses besides its tensors, from published figures;
/// see estimateCudaRuntimeOverhead().
struct CudaRuntimeOverhead {
  /// CUDA context (driver state plus loaded kernels): outside the caching allocator,
  /// so to be added to memory_reserved() to estimate what nvidia-smi shows.
  int64_t ContextBytes = 0;
  /// The cuBLAS workspace PyTorch gives each (cuBLAS handle, stream) pair, at its first
  /// matmul. It is a request to the caching allocator, so it is part of
  /// memory_reserved(): replay it through CachingAllocatorModel, don't add it on top.
  int64_t CublasWorkspaceBytes = 0;
  /// Where the figures come from and how far to trust them.
  std::string Note;
};

/// Estimates the context and cuBLAS workspace for a GPU named as in the catalogue
/// ("h100-sxm-80gb") or as nvidia-smi does ("NVIDIA H100 80GB HBM3"); "" means unknown
/// and gives the larger (conservative) figures. Published figures, not measured here.
CudaRuntimeOverhead estimateCudaRuntimeOverhead(llvm::StringRef GpuName);

} // namespace trainmem

#endif
