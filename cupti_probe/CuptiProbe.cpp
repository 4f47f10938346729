//===- CuptiProbe.cpp - CUPTI activity records and cudaMemGetInfo --------------===//
//
// libcupti is opened when a session starts, not linked: loading its 4 MB at every start
// of the trainmem process cost 0.9 ms, a sixth of `trainmem --version`, for the one
// command that measures on a GPU. The seven functions used are looked up by name, typed
// from cupti.h's own declarations. dlopen itself, not LLVM's DynamicLibrary: that closes
// its libraries when global destructors run, and unloading CUPTI while its activity
// thread may still run is what linking it never did (RTLD_NODELETE: never unloaded).
//
//===----------------------------------------------------------------------------===//
#include "cupti_probe/CuptiProbe.h"

#ifdef TRAINMEM_PROBE_HAVE_CUPTI
#include <cuda_runtime.h>
#include <cupti.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>
#endif

namespace trainmem::probe {

CuptiSession::~CuptiSession() = default;

#ifndef TRAINMEM_PROBE_HAVE_CUPTI

bool builtWithCupti() { return false; }

llvm::Error loadCupti() {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "this trainmem was built without CUPTI");
}

llvm::Expected<std::unique_ptr<CuptiSession>> CuptiSession::start() {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "this trainmem was built without CUPTI (configure with the "
                                 "CUDA toolkit and its CUPTI headers to measure on a GPU)");
}

#else

bool builtWithCupti() { return true; }

namespace {

/// The CUPTI functions the probe calls, from the library found when trainmem was built
/// (TRAINMEM_CUPTI_LIBRARY), else the one the dynamic loader finds by that file's name.
struct CuptiApi {
  decltype(&cuptiActivityGetNextRecord) ActivityGetNextRecord = nullptr;
  decltype(&cuptiGetResultString) GetResultString = nullptr;
  decltype(&cuptiActivityFlushAll) ActivityFlushAll = nullptr;
  decltype(&cuptiActivityDisable) ActivityDisable = nullptr;
  decltype(&cuptiActivityEnable) ActivityEnable = nullptr;
  decltype(&cuptiActivityRegisterCallbacks) ActivityRegisterCallbacks = nullptr;
  decltype(&cuptiGetTimestamp) GetTimestamp = nullptr;
  std::string Error; ///< why it could not be loaded; empty once it is
};

const CuptiApi &cupti() {
  static const CuptiApi Api = [] {
    CuptiApi A;
    const char *Tried = TRAINMEM_CUPTI_LIBRARY;
    void *Lib = ::dlopen(Tried, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!Lib) {
      std::string First = ::dlerror();
      Tried = TRAINMEM_CUPTI_NAME;
      Lib = ::dlopen(Tried, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
      if (!Lib) {
        A.Error = "cannot open CUPTI (" + First + "; " + ::dlerror() + ")";
        return A;
      }
    }
    auto Bind = [&](auto &Fn, const char *Name) {
      Fn = reinterpret_cast<std::remove_reference_t<decltype(Fn)>>(::dlsym(Lib, Name));
      if (!Fn && A.Error.empty())
        A.Error = std::string(Tried) + " has no " + Name;
    };
    Bind(A.ActivityGetNextRecord, "cuptiActivityGetNextRecord");
    Bind(A.GetResultString, "cuptiGetResultString");
    Bind(A.ActivityFlushAll, "cuptiActivityFlushAll");
    Bind(A.ActivityDisable, "cuptiActivityDisable");
    Bind(A.ActivityEnable, "cuptiActivityEnable");
    Bind(A.ActivityRegisterCallbacks, "cuptiActivityRegisterCallbacks");
    Bind(A.GetTimestamp, "cuptiGetTimestamp");
    return A;
  }();
  return Api;
}

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
    while (cupti().ActivityGetNextRecord(Buffer, Valid, &Record) == CUPTI_SUCCESS) {
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
  cupti().GetResultString(R, &Text);
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "CUPTI %s: %s", What,
                                 Text ? Text : "unknown error");
}

class Session final : public CuptiSession {
public:
  ~Session() override {
    cupti().ActivityFlushAll(1);
    for (CUpti_ActivityKind K : Kinds)
      cupti().ActivityDisable(K);
    Active = nullptr;
  }

  llvm::Error begin() {
    Active = &Data;
    if (CUptiResult R = cupti().ActivityRegisterCallbacks(bufferRequested, bufferCompleted);
        R != CUPTI_SUCCESS)
      return cuptiError("registering activity buffers", R);
    for (CUpti_ActivityKind K : Kinds)
      if (CUptiResult R = cupti().ActivityEnable(K); R != CUPTI_SUCCESS)
        return cuptiError("enabling activity records", R);
    return llvm::Error::success();
  }

  void markMeasuredStep() override {
    uint64_t Now = 0;
    cupti().GetTimestamp(&Now);
    MeasuredFrom = Now;
  }

  void sampleMemInfo() override {
    size_t Free = 0, Total = 0;
    if (cudaMemGetInfo(&Free, &Total) == cudaSuccess)
      UsedPeak = std::max<int64_t>(UsedPeak, static_cast<int64_t>(Total - Free));
  }

  llvm::Error finish(MeasuredStep &M) override {
    if (CUptiResult R = cupti().ActivityFlushAll(1); R != CUPTI_SUCCESS)
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

llvm::Error loadCupti() {
  if (!cupti().Error.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(), cupti().Error);
  return llvm::Error::success();
}

llvm::Expected<std::unique_ptr<CuptiSession>> CuptiSession::start() {
  if (auto E = loadCupti())
    return E;
  auto S = std::make_unique<Session>();
  if (auto E = S->begin())
    return E;
  return std::unique_ptr<CuptiSession>(std::move(S));
}

#endif

} // namespace trainmem::probe
