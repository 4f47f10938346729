//===- CuptiProbe.h - what only the device shows: CUPTI and cudaMemGetInfo -*- C++ -*-===//
//
// On a CUDA device the executor's tracking allocator knows what it asked for; CUPTI's
// activity API records what the device did: every cudaMalloc and cudaFree
// (CUPTI_ACTIVITY_KIND_MEMORY2), every kernel with its time, every memcpy. A session is
// started before the steps run and stopped after; the measured step's peak is replayed
// from its memory records, the kernel times are summed per kernel name, and
// cudaMemGetInfo samples add what the context and the driver hold. Built without CUPTI
// (no TRAINMEM_WITH_CUDA, or no cupti.h), starting a session says so.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CUPTI_PROBE_CUPTIPROBE_H
#define TRAINMEM_CUPTI_PROBE_CUPTIPROBE_H

#include "cupti_probe/Executor.h"

#include "llvm/Support/Error.h"

#include <memory>

namespace trainmem::probe {

/// True when this build has the CUPTI measurement path.
bool builtWithCupti();

/// Opens libcupti (once per process; a session's start does it) and finds every function
/// the probe calls; the error names the library and what is missing.
llvm::Error loadCupti();

class CuptiSession {
public:
  virtual ~CuptiSession();
  /// Subscribes to the activity records; errors carry CUPTI's or the runtime's reason.
  static llvm::Expected<std::unique_ptr<CuptiSession>> start();
  /// Marks the start of the measured step (records before it only set the baseline).
  virtual void markMeasuredStep() = 0;
  /// Samples cudaMemGetInfo (device memory in use, context included).
  virtual void sampleMemInfo() = 0;
  /// Flushes the records into M: the peak and source from the memory records, kernel
  /// times, the largest cudaMemGetInfo sample.
  virtual llvm::Error finish(MeasuredStep &M) = 0;
};

} // namespace trainmem::probe

#endif
