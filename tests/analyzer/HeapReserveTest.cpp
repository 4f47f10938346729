//===- HeapReserveTest.cpp - the CLI's heap in transparent huge pages -----------===//
//
// keepFreedMemoryForReuse(Reserve) keeps Reserve bytes of the heap free (growing it once
// if it must) and marks them MADV_HUGEPAGE, in a fresh process (ctest) or after other
// tests have left free memory at the heap's top (the whole binary in one run). A compiler that drops the malloc/free pair, or a block that ends up in a
// mapping of its own, leaves nothing marked: the kernel's own account of the heap
// (/proc/self/smaps, VmFlags "hg") is what this test reads.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StepSimulator.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

using namespace trainmem;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool SanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool SanitizerAllocator = true;
#else
constexpr bool SanitizerAllocator = false;
#endif
#else
constexpr bool SanitizerAllocator = false;
#endif

/// Bytes of [heap] mappings whose VmFlags include "hg" (madvise(MADV_HUGEPAGE)).
uint64_t heapBytesMarkedForHugePages() {
  // /proc files report size 0: read them as a stream.
  auto Smaps = llvm::MemoryBuffer::getFileAsStream("/proc/self/smaps");
  if (!Smaps)
    return 0;
  uint64_t Marked = 0, Size = 0;
  bool InHeap = false;
  llvm::StringRef Rest = (*Smaps)->getBuffer();
  while (!Rest.empty()) {
    llvm::StringRef Line;
    std::tie(Line, Rest) = Rest.split('\n');
    if (Line.empty())
      continue;
    // A mapping's first line: "start-end perms offset dev inode [name]".
    llvm::StringRef Range = Line.split(' ').first;
    if (Range.contains('-') && !Line.starts_with("VmFlags")) {
      auto [From, To] = Range.split('-');
      uint64_t A = 0, B = 0;
      if (!From.getAsInteger(16, A) && !To.getAsInteger(16, B)) {
        InHeap = Line.trim().ends_with("[heap]");
        Size = B - A;
        continue;
      }
    }
    if (InHeap && Line.starts_with("VmFlags:") && Line.contains(" hg"))
      Marked += Size;
  }
  return Marked;
}

TEST(HeapReserve, MarksTheReservedPartOfTheHeapForHugePages) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "the heap is tuned for glibc only";
#endif
  if (SanitizerAllocator)
    GTEST_SKIP() << "a sanitizer's allocator does not grow the heap with sbrk";
  struct stat St;
  if (stat("/sys/kernel/mm/transparent_hugepage", &St) != 0)
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  uint64_t Before = heapBytesMarkedForHugePages();
  constexpr size_t Reserve = CliHugePageReserve;
  size_t Marked = keepFreedMemoryForReuse(Reserve);
  // Both ends are rounded inwards to 2 MiB.
  EXPECT_GE(Marked, Reserve - (4 << 20));
  EXPECT_LE(Marked, Reserve);
  EXPECT_GE(heapBytesMarkedForHugePages(), Before + Marked);
  EXPECT_GT(Marked, 0u) << "nothing was marked: the reserve never reached the heap";
}

TEST(HeapReserve, NoReserveMarksNothing) {
  EXPECT_EQ(keepFreedMemoryForReuse(), 0u);
}

} // namespace
