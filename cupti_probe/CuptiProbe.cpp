//===- CuptiProbe.cpp - CUPTI activity records and cudaMemGetInfo --------------===//
#include "cupti_probe/CuptiProbe.h"

#ifdef TRAINMEM_PROBE_HAVE_CUPTI
#include <cuda_runtime.h>
#include <cupti.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>
#endif

namespace trainmem::probe {

CuptiSession::~CuptiSession() = default;

#ifndef TRAINMEM_PROBE_HAVE_CUPTI

bool builtWithCupti() { return false; }

llvm::Expected<std::unique_ptr<CuptiSession>> CuptiSession::start() {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "this trainmem was built without CUPTI (configure with the "
                                 "CUDA toolkit and its CUPTI headers to measure on a GPU)");
}

#else

bool builtWithCupti() { return true; }

namespace {

struct MemoryEvent {
  uint64_t Time;
  int64_t Delta;
};

/// What the buffer-completed callback collects (CUPTI calls it from its own thread).
struct Records {
  std::mutex Lock;
  std::vector<MemoryEvent> Memory;
  std::map<std::string, KernelTime> Kernels;
  int64_t Memcpys = 0;
};
Records *Active = nullptr;

constexpr size_t RecordBufferBytes = 8 << 20;

void CUPTIAPI bufferRequested(uint8_t **Buffer, size_t *Size, size_t *MaxRecords) {
  *Buffer = static_cast<uint8_t *>(std::aligned_alloc(8, RecordBufferBytes));
  *Size = RecordBufferBytes;
  *MaxRecords = 0;
}

void CUPTIAPI bufferCompleted(CUcontext, uint32_t, uint8_t *Buffer, size_t, size_t Valid) {
  CUpti_Activity *Record = nullptr;
  if (Active) {
    std::lock_guard<std::mutex> Guard(Active->Lock);
    while (cuptiActivityGetNextRecord(Buffer, Valid, &Record) == CUPTI_SUCCESS) {
      if (Record->kind == CUPTI_ACTIVITY_KIND_MEMORY2) {
        auto *M = reinterpret_cast<CUpti_ActivityMemory4 *>(Record);
        if (M->memoryKind != CUPTI_ACTIVITY_MEMORY_KIND_DEVICE)
          continue;
        int64_t Bytes = static_cast<int64_t>(M->bytes);
        if (M->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION)
          Active->Memory.push_back({M->timestamp, Bytes});
        else if (M->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE)
          Active->Memory.push_back({M->timestamp, -Bytes});
      } else if (Record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
        auto *K = reinterpret_cast<CUpti_ActivityKernel10 *>(Record);
        KernelTime &T = Active->Kernels[K->name ? K->name : "?"];
        T.Name = K->name ? K->name : "?";
        ++T.Calls;
        T.TotalUs += static_cast<double>(K->end - K->start) / 1000.0;
      } else if (Record->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
        ++Active->Memcpys;
      }
    }
  }
  std::free(Buffer);
}

llvm::Error cuptiError(const char *What, CUptiResult R) {
  const char *Text = nullptr;
  cuptiGetResultString(R, &Text);
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "CUPTI %s: %s", What,
                                 Text ? Text : "unknown error");
}

class Session final : public CuptiSession {
public:
  ~Session() override {
    cuptiActivityFlushAll(1);
    for (CUpti_ActivityKind K : Kinds)
      cuptiActivityDisable(K);
    Active = nullptr;
  }

  llvm::Error begin() {
    Active = &Data;
    if (CUptiResult R = cuptiActivityRegisterCallbacks(bufferRequested, bufferCompleted);
        R != CUPTI_SUCCESS)
      return cuptiError("registering activity buffers", R);
    for (CUpti_ActivityKind K : Kinds)
      if (CUptiResult R = cuptiActivityEnable(K); R != CUPTI_SUCCESS)
        return cuptiError("enabling activity records", R);
    return llvm::Error::success();
  }

  void markMeasuredStep() override {
    uint64_t Now = 0;
    cuptiGetTimestamp(&Now);
    MeasuredFrom = Now;
  }

  void sampleMemInfo() override {
    size_t Free = 0, Total = 0;
    if (cudaMemGetInfo(&Free, &Total) == cudaSuccess)
      UsedPeak = std::max<int64_t>(UsedPeak, static_cast<int64_t>(Total - Free));
  }

  llvm::Error finish(MeasuredStep &M) override {
    if (CUptiResult R = cuptiActivityFlushAll(1); R != CUPTI_SUCCESS)
      return cuptiError("flushing activity records", R);
    std::lock_guard<std::mutex> Guard(Data.Lock);
    std::sort(Data.Memory.begin(), Data.Memory.end(),
              [](const MemoryEvent &A, const MemoryEvent &B) { return A.Time < B.Time; });
    // Live bytes replayed from every record; the peak over the measured step.
    int64_t Live = 0, Peak = 0;
    bool Started = false;
    for (const MemoryEvent &E : Data.Memory) {
      if (!Started && E.Time >= MeasuredFrom) {
        Started = true;
        Peak = Live;
      }
      Live += E.Delta;
      if (Started)
        Peak = std::max(Peak, Live);
    }
    if (Data.Memory.empty())
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "CUPTI delivered no memory records (is another profiler "
                                     "attached?)");
    M.Notes.push_back("tracking allocator peak " + std::to_string(M.Peak) +
                      " B; CUPTI memory records peak " + std::to_string(Peak) + " B over " +
                      std::to_string(Data.Memory.size()) + " records, " +
                      std::to_string(Data.Memcpys) + " memcpys");
    M.Peak = Started ? Peak : M.Peak;
    M.Source = "cupti";
    for (auto &[Name, T] : Data.Kernels)
      M.Kernels.push_back(T);
    std::sort(M.Kernels.begin(), M.Kernels.end(),
              [](const KernelTime &A, const KernelTime &B) { return A.TotalUs > B.TotalUs; });
    if (UsedPeak)
      M.DeviceUsedPeak = UsedPeak;
    return llvm::Error::success();
  }

private:
  static constexpr CUpti_ActivityKind Kinds[] = {CUPTI_ACTIVITY_KIND_MEMORY2,
                                                 CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                                                 CUPTI_ACTIVITY_KIND_MEMCPY};
  Records Data;
  uint64_t MeasuredFrom = 0;
  int64_t UsedPeak = 0;
};

} // namespace

llvm::Expected<std::unique_ptr<CuptiSession>> CuptiSession::start() {
  auto S = std::make_unique<Session>();
  if (auto E = S->begin())
    return E;
  return std::unique_ptr<CuptiSession>(std::move(S));
}

#endif

} // namespace trainmem::probe
