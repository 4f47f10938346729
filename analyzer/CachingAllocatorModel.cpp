//===- CachingAllocatorModel.cpp - PyTorch's CUDA caching allocator, replayed -----===//
//
// The allocator replay follows DeviceCachingAllocator::malloc / free in
// c10/cuda/CUDACachingAllocator.cpp (pytorch/pytorch 001074d2): round_size,
// get_pool, get_allocation_size, get_free_block, alloc_block, should_split,
// alloc_found_block, free_block and try_merge_blocks. The runtime estimate cites its
// sources next to each figure.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/CachingAllocatorModel.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"

#include <algorithm>
#include <cassert>

namespace trainmem {

using namespace caching_allocator;

namespace {

constexpr int64_t MiB = 1024 * 1024;

CachingAllocatorModel::Handle makeHandle(uint32_t Generation, int32_t Index) {
  return (static_cast<int64_t>(Generation) << 32) | static_cast<uint32_t>(Index);
}

// Generations stay in 1..2^31-1 so that handles are positive and never NullHandle.
uint32_t nextGeneration(uint32_t G) { return G % 0x7fffffffu + 1; }

} // namespace

int64_t CachingAllocatorModel::roundSize(int64_t Bytes) {
  // round_size: below kMinBlockSize -> kMinBlockSize, else the next multiple of it
  // (the roundup_power2_divisions branch is off unless configured).
  if (Bytes < MinBlockSize)
    return MinBlockSize;
  return MinBlockSize * ((Bytes + MinBlockSize - 1) / MinBlockSize);
}

int64_t CachingAllocatorModel::segmentSizeFor(int64_t RoundedBytes) {
  // get_allocation_size: small requests share 2 MiB segments; large ones under 10 MiB
  // get a 20 MiB segment to be split among later requests ("to reduce
  // fragmentation"); the rest get their own segment rounded up to 2 MiB.
  if (RoundedBytes <= SmallSize)
    return SmallBuffer;
  if (RoundedBytes < MinLargeAlloc)
    return LargeBuffer;
  return RoundLarge * ((RoundedBytes + RoundLarge - 1) / RoundLarge);
}

int32_t CachingAllocatorModel::newBlock() {
  if (!FreeSlots.empty()) {
    int32_t Index = FreeSlots.back();
    FreeSlots.pop_back();
    return Index;
  }
  Blocks.emplace_back();
  return static_cast<int32_t>(Blocks.size() - 1);
}

void CachingAllocatorModel::releaseBlock(int32_t Index) {
  uint32_t Generation = nextGeneration(Blocks[Index].Generation);
  Blocks[Index] = Block();
  Blocks[Index].Generation = Generation;
  FreeSlots.push_back(Index);
}

int32_t CachingAllocatorModel::liveIndex(Handle H) const {
  if (H <= 0)
    return -1;
  auto Index = static_cast<int64_t>(static_cast<uint32_t>(H));
  auto Generation = static_cast<uint32_t>(H >> 32);
  if (Index >= static_cast<int64_t>(Blocks.size()))
    return -1;
  const Block &B = Blocks[Index];
  if (!B.Allocated || B.Generation != Generation)
    return -1;
  return static_cast<int32_t>(Index);
}

int32_t CachingAllocatorModel::takeFreeBlock(FreePool &Pool, int64_t Size) {
  // get_free_block: the smallest cached block of at least Size, the lowest address
  // among equals. The oversize checks reject that one block without looking further,
  // as PyTorch does.
  const int64_t MaxSplit = Options.MaxSplitSizeBytes;
  auto Found = Pool.takeSmallestAtLeast(Size, [&](const FreeKey &F) {
    if (Size < MaxSplit && F.Size >= MaxSplit)
      return false; // "Do not return an oversized block for a large request"
    if (Size >= MaxSplit && F.Size >= Size + LargeBuffer)
      return false; // "Allow oversized block size to be rounded up but within a limit"
    return true;
  });
  return Found ? Found->Index : -1;
}

bool CachingAllocatorModel::shouldSplit(const Block &B, int64_t Size) const {
  // should_split: a small-pool remainder is kept if it can hold one minimal block; in
  // the large pool only a remainder that could serve a large request (> 1 MiB), and
  // never from an oversize block.
  const int64_t Remaining = B.Size - Size;
  if (B.InSmallPool)
    return Remaining >= MinBlockSize;
  return Size < Options.MaxSplitSizeBytes && Remaining > SmallSize;
}

CachingAllocatorModel::Handle CachingAllocatorModel::allocate(int64_t Bytes) {
  assert(Bytes >= 0 && "negative allocation size");
  // NativeCachingAllocator::allocate only calls malloc when size != 0; a zero-byte
  // storage gets a null pointer and no block.
  if (Bytes <= 0)
    return NullHandle;

  const int64_t Size = roundSize(Bytes);
  const bool Small = Size <= SmallSize; // get_pool
  FreePool &Pool = Small ? SmallPool : LargePool;

  int32_t Found = takeFreeBlock(Pool, Size);
  if (Found < 0) {
    // alloc_block: a new segment, handed out whole; should_split then decides
    // whether its tail goes back to the pool.
    const int64_t SegmentBytes = segmentSizeFor(Size);
    Found = newBlock();
    Block &Segment = Blocks[Found];
    Segment.Address = NextSegmentAddress;
    Segment.Size = SegmentBytes;
    Segment.InSmallPool = Small;
    NextSegmentAddress += SegmentBytes;
    Reserved += SegmentBytes;
    PeakReserved = std::max(PeakReserved, Reserved);
    ++Segments;
  }

  int32_t Result = Found;
  if (shouldSplit(Blocks[Found], Size)) {
    // alloc_found_block: the request takes the front of the block; the remainder keeps
    // the old block and returns to the pool.
    Result = newBlock();
    Block &Remaining = Blocks[Found];
    Block &Taken = Blocks[Result];
    Taken.Address = Remaining.Address;
    Taken.Size = Size;
    Taken.InSmallPool = Remaining.InSmallPool;
    Taken.Prev = Remaining.Prev;
    Taken.Next = Found;
    if (Taken.Prev >= 0)
      Blocks[Taken.Prev].Next = Result;
    Remaining.Prev = Result;
    Remaining.Address += Size;
    Remaining.Size -= Size;
    poolOf(Remaining).insert(FreeKey{Remaining.Size, Remaining.Address, Found});
  }

  Block &Taken = Blocks[Result];
  Taken.Allocated = true;
  Allocated += Taken.Size;
  PeakAllocated = std::max(PeakAllocated, Allocated);
  return makeHandle(Taken.Generation, Result);
}

void CachingAllocatorModel::mergeInto(int32_t Dst, int32_t Src) {
  // try_merge_blocks: Dst absorbs its free neighbour Src, which leaves the pool.
  Block &S = Blocks[Src];
  poolOf(S).erase(FreeKey{S.Size, S.Address, Src});
  Block &D = Blocks[Dst];
  if (D.Prev == Src) {
    D.Address = S.Address;
    D.Prev = S.Prev;
    if (D.Prev >= 0)
      Blocks[D.Prev].Next = Dst;
  } else {
    D.Next = S.Next;
    if (D.Next >= 0)
      Blocks[D.Next].Prev = Dst;
  }
  D.Size += S.Size;
  releaseBlock(Src);
}

void CachingAllocatorModel::free(Handle H) {
  if (H == NullHandle)
    return;
  const int32_t Index = liveIndex(H);
  assert(Index >= 0 && "free of a handle that is not live");
  if (Index < 0)
    return;

  Block &B = Blocks[Index];
  B.Allocated = false;
  B.Generation = nextGeneration(B.Generation);
  Allocated -= B.Size;

  // free_block: merge with both neighbours if they are free, then cache the result.
  // Segments are never returned to the driver here (no empty_cache, no OOM retry).
  const int32_t Prev = B.Prev, Next = B.Next;
  if (Prev >= 0 && !Blocks[Prev].Allocated)
    mergeInto(Index, Prev);
  if (Next >= 0 && !Blocks[Next].Allocated)
    mergeInto(Index, Next);
  const Block &Merged = Blocks[Index];
  poolOf(Merged).insert(FreeKey{Merged.Size, Merged.Address, Index});
}

int64_t CachingAllocatorModel::blockBytes(Handle H) const {
  const int32_t Index = liveIndex(H);
  return Index < 0 ? 0 : Blocks[Index].Size;
}

int64_t CachingAllocatorModel::addressOf(Handle H) const {
  const int32_t Index = liveIndex(H);
  return Index < 0 ? -1 : Blocks[Index].Address;
}

void CachingAllocatorModel::appendState(std::vector<int64_t> &Out) const {
  // Released slots have size 0; every other block is part of a segment.
  std::vector<const Block *> Live;
  Live.reserve(Blocks.size());
  for (const Block &B : Blocks)
    if (B.Size > 0)
      Live.push_back(&B);
  llvm::sort(Live, [](const Block *A, const Block *B) { return A->Address < B->Address; });
  Out.push_back(static_cast<int64_t>(Live.size()));
  for (const Block *B : Live) {
    Out.push_back(B->Address);
    Out.push_back(B->Size);
    // Whether the block starts a segment matters to merges: they never cross segments.
    Out.push_back((B->Allocated ? 1 : 0) | (B->InSmallPool ? 2 : 0) | (B->Prev < 0 ? 4 : 0));
  }
  for (int64_t V : {NextSegmentAddress, Allocated, Reserved, PeakAllocated, PeakReserved,
                    static_cast<int64_t>(Segments)})
    Out.push_back(V);
}

//===----------------------------------------------------------------------------===//
// CUDA runtime overhead
//===----------------------------------------------------------------------------===//

namespace {

/// What decides PyTorch's default cuBLAS (or hipBLAS) workspace.
enum class GpuFamily {
  Unknown,
  Hopper,           ///< sm_90: H100, H200, H800, H20, GH200
  Blackwell,        ///< sm_100 / sm_120: B100, B200, B300, GB200, RTX 50xx
  OlderNvidia,      ///< sm_60..sm_89: Pascal, Volta, Turing, Ampere, Ada
  RocmGfx942Gfx950, ///< MI300A/X, MI325X (gfx942), MI350X/MI355X (gfx950)
  OtherRocm,        ///< MI100, MI210, MI250(X)
};

GpuFamily classifyGpu(llvm::StringRef Name) {
  // Names come as catalogue ids ("h100-sxm-80gb") or as nvidia-smi / rocm-smi print
  // them ("NVIDIA H100 80GB HBM3"); compare whole lower-case words.
  std::string Lower = Name.lower();
  llvm::SmallVector<llvm::StringRef, 8> Words;
  llvm::StringRef Rest = Lower;
  while (!Rest.empty()) {
    Rest = Rest.drop_until([](char C) { return llvm::isAlnum(C); });
    llvm::StringRef Word = Rest.take_while([](char C) { return llvm::isAlnum(C); });
    if (!Word.empty())
      Words.push_back(Word);
    Rest = Rest.drop_front(Word.size());
  }
  static const char *const Hopper[] = {"h100", "h200", "h800", "h20", "gh200", "hopper"};
  static const char *const Blackwell[] = {"b100",  "b200",  "b300",
                                          "gb200", "gb300", "blackwell"};
  static const char *const Older[] = {
      "v100",  "t4",  "a100",   "a800",   "a10",   "a10g",  "a16",   "a2",    "a30",
      "a40",   "l4",  "l20",    "l40",    "l40s",  "a4000", "a4500", "a5000", "a5500",
      "a6000", "ada", "ampere", "turing", "volta", "p100",  "p40",   "titan"};
  static const char *const Gfx94x95x[] = {"mi300",  "mi300a", "mi300x", "mi308x",
                                          "mi325x", "mi350x", "mi355x"};
  static const char *const Rocm[] = {"mi100", "mi210", "mi250", "mi250x"};
  auto Any = [&](auto &List) {
    return llvm::any_of(Words, [&](llvm::StringRef W) {
      return llvm::any_of(List, [&](const char *L) { return W == L; });
    });
  };
  if (Any(Hopper))
    return GpuFamily::Hopper;
  if (Any(Blackwell))
    return GpuFamily::Blackwell;
  if (Any(Gfx94x95x))
    return GpuFamily::RocmGfx942Gfx950;
  if (Any(Rocm))
    return GpuFamily::OtherRocm;
  if (Any(Older))
    return GpuFamily::OlderNvidia;
  // GeForce / RTX model numbers: 20xx, 30xx, 40xx are Turing..Ada, 50xx Blackwell.
  for (llvm::StringRef W : Words) {
    if (W.size() != 4 || !llvm::all_of(W, llvm::isDigit))
      continue;
    if (W.starts_with("50"))
      return GpuFamily::Blackwell;
    if (W.starts_with("20") || W.starts_with("30") || W.starts_with("40"))
      return GpuFamily::OlderNvidia;
  }
  return GpuFamily::Unknown;
}

} // namespace

CudaRuntimeOverhead estimateCudaRuntimeOverhead(llvm::StringRef GpuName) {
  // cuBLAS workspace: at::cuda::parseChosenWorkspaceSize()
  // (aten/src/ATen/cuda/CublasHandlePool.cpp, pytorch/pytorch 26a39059) without
  // CUBLAS_WORKSPACE_CONFIG: ":4096:2:16:8 default, 32MiB for Hopper", i.e.
  //   sm_90:      4096 KiB * 8                = 33,554,432 B (32 MiB);
  //   otherwise:  4096 KiB * 2 + 16 KiB * 8   =  8,519,680 B (8.125 MiB).
  // Later PyTorch versions extend the 32 MiB default to compute capability majors
  // 10, 11 and 12 ("32MiB for Hopper and Blackwell"); Blackwell gets 32 MiB here, the
  // figure of those versions and the larger one. On ROCm the default is 32 MiB, and
  // 128 MiB on gfx942/gfx950 ("32MiB default, 128MiB for gfx94x/gfx95x").
  // getNewWorkspace() allocates it through CUDACachingAllocator, once per
  // (handle, stream) key in cublas_handle_stream_to_workspace(). The same file also
  // allocates a cuBLASLt workspace through the allocator (CUBLASLT_WORKSPACE_SIZE,
  // 1024 KiB by default) unless TORCH_CUBLASLT_UNIFIED_WORKSPACE=1 shares the cuBLAS
  // one; that 1 MiB request is not part of this estimate.
  constexpr int64_t HopperWorkspace = 4096LL * 8 * 1024;
  constexpr int64_t DefaultWorkspace = 4096LL * 1024 * 2 + 16LL * 1024 * 8;
  constexpr int64_t RocmWorkspace = 32 * MiB;
  constexpr int64_t RocmGfx942Workspace = 128 * MiB;

  // CUDA context: published figures only, none measured here.
  //  - pytorch/pytorch PR #86509 (which made PyTorch set CUDA_MODULE_LOADING=LAZY
  //    by default, PyTorch 1.13): device memory in use (cudaMemGetInfo total - free)
  //    after one 6.4 MB tensor, so one 20 MiB allocator segment included:
  //    287,047,680 B (274 MiB) with lazy loading, 666,632,192 B (636 MiB) without.
  //  - pytorch/pytorch issue #107667 (ptrblck, 2023): "~300MB" for the context with
  //    lazy loading; ">1000MB" before CUDA 11.7 loaded all kernels eagerly.
  //  - pytorch/pytorch issue #109888 (ptrblck, 2023): "around 400MB if CUDA >= 11.7
  //    is used and lazy module loading enabled".
  //  - CUDA Programming Guide, "Lazy Loading": enabled by default on Linux since
  //    CUDA 12.2 (and PyTorch sets it since 1.13).
  // So roughly 270-400 MiB with lazy loading, above 1 GB without. It grows as kernels
  // load (cuBLAS, cuDNN, NCCL on first use) and with the GPU, driver and CUDA version;
  // we take the top of the published lazy-loading range.
  constexpr int64_t ContextEstimate = 400 * MiB;

  CudaRuntimeOverhead Result;
  Result.ContextBytes = ContextEstimate;
  std::string Workspace;
  switch (classifyGpu(GpuName)) {
  case GpuFamily::Hopper:
    Result.CublasWorkspaceBytes = HopperWorkspace;
    Workspace = "cuBLAS workspace 32 MiB (PyTorch's default on sm_90)";
    break;
  case GpuFamily::Blackwell:
    Result.CublasWorkspaceBytes = HopperWorkspace;
    Workspace = "cuBLAS workspace 32 MiB (PyTorch's default on Blackwell in recent "
                "versions; older ones use 8.125 MiB)";
    break;
  case GpuFamily::OlderNvidia:
    Result.CublasWorkspaceBytes = DefaultWorkspace;
    Workspace = "cuBLAS workspace 8.125 MiB (PyTorch's default :4096:2:16:8 before "
                "Hopper)";
    break;
  case GpuFamily::RocmGfx942Gfx950:
    Result.CublasWorkspaceBytes = RocmGfx942Workspace;
    Workspace = "hipBLAS workspace 128 MiB (PyTorch's default on gfx942/gfx950); the "
                "context figure is CUDA's, none is published for HIP";
    break;
  case GpuFamily::OtherRocm:
    Result.CublasWorkspaceBytes = RocmWorkspace;
    Workspace = "hipBLAS workspace 32 MiB (PyTorch's ROCm default); the context "
                "figure is CUDA's, none is published for HIP";
    break;
  case GpuFamily::Unknown:
    Result.CublasWorkspaceBytes = HopperWorkspace;
    Workspace = GpuName.empty()
                    ? "GPU unknown: cuBLAS workspace 32 MiB, the larger CUDA default"
                    : "GPU '" + GpuName.str() +
                          "' not recognised: cuBLAS workspace 32 MiB, the larger "
                          "CUDA default";
    break;
  }
  Result.WorkspaceNote =
      Workspace +
      ", allocated through the caching allocator once per cuBLAS handle and stream "
      "(so already in memory_reserved; by our reading of the source, training may "
      "hold two, as the autograd engine runs backward on its own thread and handle).";
  Result.Note =
      "Estimate from published figures, not measured here. CUDA context ~400 MiB: "
      "figures published by PyTorch developers are 270-400 MiB with lazy module "
      "loading (CUDA >= 11.7, the default), over 1 GB without; it varies with GPU, "
      "driver, CUDA version and the libraries loaded (cuDNN, NCCL add more). " +
      Result.WorkspaceNote;
  return Result;
}

} // namespace trainmem
