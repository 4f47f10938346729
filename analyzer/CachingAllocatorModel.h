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
/// A search is O(log n) in the number of free blocks; an insertion or removal moves at
/// most the entries of one block size.
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
  /// A free block as PyTorch's BlockComparatorSize orders them: size, then address.
  struct FreeKey {
    int64_t Size;
    int64_t Address;
    int32_t Index;
  };
  /// Free blocks in BlockComparatorSize's order, kept as one class per size: the sizes
  /// ascending, and each size's blocks by address. PyTorch keeps a std::set; the replay
  /// inserts and erases at nearly every event (19 k times per simulated 7B step), and a
  /// 7B step's large pool holds 180-490 blocks on average but only 11-14 sizes at once
  /// (its saved activations and their gradients come in few shapes). A search is then a
  /// binary search among the sizes and one among a class's addresses, and a change moves
  /// only its class's entries. (The sorted vector of (size, address) keys in chunks of 64
  /// that this replaces searched and moved 24-byte keys: the pools were a third of a
  /// planner simulation. LLVM has no ordered container of this shape.)
  class FreePool {
    struct Entry {
      int64_t Address;
      int32_t Index;
    };
    /// A class's blocks by descending address: the lowest, which a request takes, last.
    using Class = std::vector<Entry>;
    /// A non-empty class: its size and where its blocks are kept.
    struct SizeClass {
      int64_t Size;
      uint32_t Id; ///< index into Storage
    };

    /// Where Size belongs among Order: std::lower_bound over the sizes. GCC compiles the
    /// choice of half to a branch, which predicts well among a dozen sizes; the choice
    /// made by a multiply, without a branch, measured 8% slower on a planner step.
    size_t sizePlace(int64_t Size) const {
      const SizeClass *First = Order.data();
      size_t N = Order.size();
      while (N > 1) {
        const size_t Half = N / 2;
        First = First[Half - 1].Size < Size ? First + Half : First;
        N -= Half;
      }
      return static_cast<size_t>(First - Order.data()) +
             (N == 1 && First->Size < Size ? 1 : 0);
    }
    /// The first entry of C whose address is not above Address.
    static Class::iterator addressPlace(Class &C, int64_t Address) {
      return std::partition_point(C.begin(), C.end(),
                                  [&](const Entry &E) { return E.Address > Address; });
    }
    void dropClass(size_t I) {
      FreeIds.push_back(Order[I].Id);
      Order.erase(Order.begin() + static_cast<ptrdiff_t>(I));
    }

  public:
    /// The smallest block of at least Size, the lowest address among equals, taken out
    /// of the pool if Accept(its key) says so (get_free_block looks no further).
    template <typename AcceptFn>
    std::optional<FreeKey> takeSmallestAtLeast(int64_t Size, AcceptFn Accept) {
      const size_t I = sizePlace(Size);
      if (I == Order.size())
        return std::nullopt;
      Class &C = Storage[Order[I].Id];
      const FreeKey Found{Order[I].Size, C.back().Address, C.back().Index};
      if (!Accept(Found))
        return std::nullopt;
      C.pop_back();
      if (C.empty())
        dropClass(I);
      return Found;
    }
    void erase(const FreeKey &K) {
      const size_t I = sizePlace(K.Size);
      if (I == Order.size() || Order[I].Size != K.Size)
        return;
      Class &C = Storage[Order[I].Id];
      auto It = addressPlace(C, K.Address);
      if (It == C.end() || It->Address != K.Address)
        return;
      C.erase(It);
      if (C.empty())
        dropClass(I);
    }
    void insert(const FreeKey &K) {
      const size_t I = sizePlace(K.Size);
      if (I == Order.size() || Order[I].Size != K.Size) {
        uint32_t Id;
        if (!FreeIds.empty()) {
          Id = FreeIds.back();
          FreeIds.pop_back();
        } else {
          Id = static_cast<uint32_t>(Storage.size());
          Storage.emplace_back();
        }
        Storage[Id].push_back(Entry{K.Address, K.Index});
        Order.insert(Order.begin() + static_cast<ptrdiff_t>(I), SizeClass{K.Size, Id});
        return;
      }
      Class &C = Storage[Order[I].Id];
      auto It = addressPlace(C, K.Address);
      if (It != C.end() && It->Address == K.Address)
        return;
      C.insert(It, Entry{K.Address, K.Index});
    }

  private:
    std::vector<SizeClass> Order; ///< the non-empty classes by ascending size
    std::vector<Class> Storage;   ///< every class's blocks; emptied ones keep their room
    std::vector<uint32_t> FreeIds; ///< emptied classes of Storage, for reuse
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
  /// The part of Note about the workspace alone.
  std::string WorkspaceNote;
};

/// Estimates the context and cuBLAS workspace for a GPU named as in the catalogue
/// ("h100-sxm-80gb") or as nvidia-smi does ("NVIDIA H100 80GB HBM3"); "" means unknown
/// and gives the larger (conservative) figures. Published figures, not measured here.
CudaRuntimeOverhead estimateCudaRuntimeOverhead(llvm::StringRef GpuName);

} // namespace trainmem

#endif
