//===- FuzzTraces.cpp - every trace importer, chosen by the first byte -----===//
//
// The first byte picks the importer (Chrome trace, memory timeline, snapshot as pickle or
// JSON, Nsight Systems SQLite, or detection), and for Chrome traces how the records are
// kept; the rest is the file. Seeds carry the byte.
//
//===----------------------------------------------------------------------------===//
#include "FuzzSupport.h"
#include "analyzer/TraceImport.h"

using namespace trainmem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *Data, size_t Size) {
  if (Size < 1)
    return 0;
  const std::string &Path = fuzz::inputFile(Data + 1, Size - 1, "trace");
  TraceOptions Opts;
  Opts.ChunkBytes = 61; // cross chunk boundaries everywhere
  Opts.MaxTimelinePoints = 16;
  switch (Data[0] % 6) {
  case 0: {
    // The rest of the byte picks how a Chrome trace's records are kept: as structs or all
    // encoded; in memory, or in the temporary file past 1 or 100 bytes a stream (a record
    // cut by every window); the peak attributed from the kept operators or by a second
    // pass.
    unsigned Mode = Data[0] / 6;
    if (Mode % 2)
      Opts.PlainRecords = 0;
    if (unsigned Memory = Mode / 2 % 3)
      Opts.RecordMemory = Memory == 1 ? 1 : 100;
    if (Mode / 6 % 2)
      Opts.MaxKeptOperators = 0;
    fuzz::consume(importChromeTrace(Path, Opts));
    break;
  }
  case 1: fuzz::consume(importMemoryTimeline(Path, Opts)); break;
  case 2: fuzz::consume(importCudaSnapshot(Path, TraceFormat::CudaSnapshotPickle, Opts)); break;
  case 3: fuzz::consume(importCudaSnapshot(Path, TraceFormat::CudaSnapshotJson, Opts)); break;
  case 4: fuzz::consume(importNsysSqlite(Path, Opts)); break;
  default: {
    auto T = importTrace(Path, Opts);
    if (T)
      (void)traceToReport(*T);
    else
      llvm::consumeError(T.takeError());
  }
  }
  return 0;
}
