//===- TrackingAllocator.cpp - every byte a validated step allocates -----------===//
#include "cupti_probe/TrackingAllocator.h"

#include <algorithm>

namespace trainmem::probe {

const char *categoryName(MemCategory C) {
  switch (C) {
  case MemCategory::Weights: return "weights";
  case MemCategory::MasterWeights: return "master_weights";
  case MemCategory::Gradients: return "gradients";
  case MemCategory::OptimizerStates: return "optimizer_states";
  case MemCategory::Activations: return "activations";
  case MemCategory::Temporaries: return "temporaries";
  case MemCategory::Inputs: return "inputs";
  case MemCategory::Constants: return "constants";
  }
  return "temporaries";
}

int64_t &TrackingAllocator::slot(CategoryBytes &Bytes, MemCategory C) {
  switch (C) {
  case MemCategory::Weights: return Bytes.Weights;
  case MemCategory::MasterWeights: return Bytes.MasterWeights;
  case MemCategory::Gradients: return Bytes.Gradients;
  case MemCategory::OptimizerStates: return Bytes.OptimizerStates;
  case MemCategory::Activations: return Bytes.Activations;
  case MemCategory::Temporaries: return Bytes.Temporaries;
  case MemCategory::Inputs: return Bytes.Inputs;
  case MemCategory::Constants: return Bytes.Unknown; // never read: constants stay out
  }
  return Bytes.Temporaries;
}

Buffer::~Buffer() { Owner.release(*this); }

BufferRef TrackingAllocator::allocate(size_t Bytes, MemCategory Category, std::string Name) {
  void *Ptr = nullptr;
  if (Bytes) {
    Ptr = Dev.allocate(Bytes);
    if (!Ptr)
      return nullptr;
  }
  int64_t Id = NextId++;
  ++AllocationCount;
  AllocationRecord R;
  R.Id = Id;
  R.Bytes = static_cast<int64_t>(Bytes);
  R.Category = Category;
  R.Name = std::move(Name);
  R.Op = CurrentOp;
  R.Layer = CurrentLayer;
  R.Phase = CurrentPhase;
  LiveRecords.emplace(Id, std::move(R));
  if (Category == MemCategory::Constants) {
    ConstantBytes += static_cast<int64_t>(Bytes);
  } else {
    slot(Live, Category) += static_cast<int64_t>(Bytes);
    Total += static_cast<int64_t>(Bytes);
    point();
  }
  return BufferRef(new Buffer(*this, Ptr, Bytes, Id));
}

void TrackingAllocator::release(Buffer &B) {
  auto It = LiveRecords.find(B.Id);
  if (It != LiveRecords.end()) {
    if (It->second.Category == MemCategory::Constants) {
      ConstantBytes -= It->second.Bytes;
    } else {
      slot(Live, It->second.Category) -= It->second.Bytes;
      Total -= It->second.Bytes;
    }
    LiveRecords.erase(It);
  }
  if (B.Ptr)
    Dev.deallocate(B.Ptr, B.Bytes);
  if (RecordTimeline)
    point();
}

void TrackingAllocator::recategorize(const Buffer &B, MemCategory Category) {
  auto It = LiveRecords.find(B.id());
  if (It == LiveRecords.end() || It->second.Category == Category ||
      It->second.Category == MemCategory::Constants || Category == MemCategory::Constants)
    return;
  slot(Live, It->second.Category) -= It->second.Bytes;
  It->second.Category = Category;
  slot(Live, Category) += It->second.Bytes;
  for (const CategoryField &F : CategoryFields)
    Max.*F.Member = std::max(Max.*F.Member, Live.*F.Member);
}

MemCategory TrackingAllocator::categoryOf(const Buffer &B) const {
  auto It = LiveRecords.find(B.id());
  return It == LiveRecords.end() ? MemCategory::Temporaries : It->second.Category;
}

std::vector<AllocationRecord> TrackingAllocator::liveAllocations() const {
  std::vector<AllocationRecord> All;
  All.reserve(LiveRecords.size());
  for (const auto &[Id, R] : LiveRecords)
    if (R.Category != MemCategory::Constants)
      All.push_back(R);
  std::sort(All.begin(), All.end(), [](const AllocationRecord &A, const AllocationRecord &B) {
    return A.Bytes != B.Bytes ? A.Bytes > B.Bytes : A.Id < B.Id;
  });
  return All;
}

void TrackingAllocator::resetPeak() {
  Peak = Total;
  PeakLive = Live;
  Max = Live;
  PeakPhase = CurrentPhase;
  PeakOp = CurrentOp;
  PeakSet = liveAllocations();
  Timeline.clear();
}

void TrackingAllocator::point() {
  for (const CategoryField &F : CategoryFields)
    Max.*F.Member = std::max(Max.*F.Member, Live.*F.Member);
  if (RecordTimeline) {
    TimelinePoint P;
    P.Index = static_cast<int64_t>(Timeline.size());
    P.Phase = CurrentPhase;
    P.Op = CurrentOp;
    P.Layer = CurrentLayer;
    P.Live = Live;
    Timeline.push_back(std::move(P));
  }
  if (Total <= Peak)
    return;
  Peak = Total;
  PeakLive = Live;
  PeakPhase = CurrentPhase;
  PeakOp = CurrentLayer.empty() ? CurrentOp : CurrentOp + " (" + CurrentLayer + ")";
  PeakSet = liveAllocations();
}

} // namespace trainmem::probe
