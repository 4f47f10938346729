//===- TrackingAllocator.h - every byte a validated step allocates -----*- C++ -*-===//
//
// The measurement of a host validation run, and the bookkeeping of a CUDA one: every
// buffer the executor uses comes from here. Each allocation is the exact requested size
// (no rounding, like PyTorch's CPU allocator), carries one of trainmem's categories
// (analyzer/MemoryReport.h), a name and the op that made it; the allocator keeps the live
// bytes per category, the peak with the live set at that moment, and a timeline. Buffers
// are reference counted (BufferRef): the last reference returns the memory to the device,
// so liveness follows from who still holds a tensor, as in PyTorch.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CUPTI_PROBE_TRACKINGALLOCATOR_H
#define TRAINMEM_CUPTI_PROBE_TRACKINGALLOCATOR_H

#include "analyzer/MemoryReport.h"
#include "kernels/Kernels.h"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace trainmem::probe {

/// trainmem's categories (DESIGN.md "The model of a training step"), plus Constants: ONNX
/// literals the executor must materialise to run a graph that PyTorch holds as Python
/// numbers or folded shapes. Constants are tracked but kept out of the step's total.
enum class MemCategory : uint8_t {
  Weights,
  MasterWeights,
  Gradients,
  OptimizerStates,
  Activations,
  Temporaries,
  Inputs,
  Constants,
};

/// The report name ("weights", "activations", ...; "constants").
const char *categoryName(MemCategory C);

class TrackingAllocator;

/// One device allocation. Destroying it (the last BufferRef going away) frees it.
class Buffer {
public:
  ~Buffer();
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;

  void *data() const { return Ptr; }
  size_t bytes() const { return Bytes; }
  int64_t id() const { return Id; }
  template <typename T> T *as() const { return static_cast<T *>(Ptr); }

private:
  friend class TrackingAllocator;
  Buffer(TrackingAllocator &Owner, void *Ptr, size_t Bytes, int64_t Id)
      : Owner(Owner), Ptr(Ptr), Bytes(Bytes), Id(Id) {}
  TrackingAllocator &Owner;
  void *Ptr;
  size_t Bytes;
  int64_t Id;
};
using BufferRef = std::shared_ptr<Buffer>;

/// What is known about one live allocation.
struct AllocationRecord {
  int64_t Id = 0;
  int64_t Bytes = 0;
  MemCategory Category = MemCategory::Temporaries;
  std::string Name, Op, Layer, Phase;
};

class TrackingAllocator {
public:
  explicit TrackingAllocator(kernels::Device &D) : Dev(D) {}
  TrackingAllocator(const TrackingAllocator &) = delete;
  TrackingAllocator &operator=(const TrackingAllocator &) = delete;

  /// Bytes of device memory under Category, named Name, made by the current op. Zero
  /// bytes give a buffer with no memory. Null when the device could not allocate (the
  /// device records why).
  BufferRef allocate(size_t Bytes, MemCategory Category, std::string Name);
  /// Moves a live buffer to another category (a tensor that a backward node saved becomes
  /// an activation).
  void recategorize(const Buffer &B, MemCategory Category);
  MemCategory categoryOf(const Buffer &B) const;

  /// The phase ("forward", "backward", "optimizer", "zero_grad") and op that the next
  /// allocations belong to.
  void setPhase(std::string Phase) { CurrentPhase = std::move(Phase); }
  void setOp(std::string Op, std::string Layer = "") {
    CurrentOp = std::move(Op);
    CurrentLayer = std::move(Layer);
  }
  const std::string &phase() const { return CurrentPhase; }

  /// Starts a new measurement window: the peak, the per-category maxima and the timeline
  /// restart from what is live now.
  void resetPeak();
  /// With timeline recording on, every allocation and free adds a point.
  void recordTimeline(bool On) { RecordTimeline = On; }

  /// Live bytes per category now (Constants excluded) and their total.
  const CategoryBytes &live() const { return Live; }
  int64_t liveTotal() const { return Total; }
  int64_t constantBytes() const { return ConstantBytes; }
  int64_t peak() const { return Peak; }
  const CategoryBytes &peakByCategory() const { return PeakLive; }
  const CategoryBytes &maxByCategory() const { return Max; }
  const std::string &peakPhase() const { return PeakPhase; }
  const std::string &peakOp() const { return PeakOp; }
  /// Every allocation live at the peak, largest first.
  const std::vector<AllocationRecord> &liveAtPeak() const { return PeakSet; }
  const std::vector<TimelinePoint> &timeline() const { return Timeline; }
  int64_t allocations() const { return AllocationCount; }
  /// Every live allocation, largest first.
  std::vector<AllocationRecord> liveAllocations() const;

  kernels::Device &device() { return Dev; }

private:
  friend class Buffer;
  void release(Buffer &B);
  void point();
  static int64_t &slot(CategoryBytes &Bytes, MemCategory C);

  kernels::Device &Dev;
  std::unordered_map<int64_t, AllocationRecord> LiveRecords;
  CategoryBytes Live, Max, PeakLive;
  int64_t Total = 0, Peak = 0, ConstantBytes = 0, NextId = 1, AllocationCount = 0;
  std::string CurrentPhase = "setup", CurrentOp, CurrentLayer, PeakPhase, PeakOp;
  std::vector<AllocationRecord> PeakSet;
  std::vector<TimelinePoint> Timeline;
  bool RecordTimeline = false;
};

} // namespace trainmem::probe

#endif
