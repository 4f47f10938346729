//===- ChromeTraceEvents.h - the events of a Chrome trace, streamed -*- C++ -*-===//
//
// The reading side of ChromeTraceImport.cpp: each element of a Chrome trace's
// traceEvents, reduced to the fields the importer reads, in file order. The file is read in
// chunks (TraceStream.h); with more than one core the thread that reads (and inflates)
// ahead also parses chunks the caller has not reached, and the caller takes its events over
// where they start exactly where it finds itself (ChromeTraceEvents.cpp says why that gives
// the same events and errors).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_CHROMETRACEEVENTS_H
#define TRAINMEM_ANALYZER_CHROMETRACEEVENTS_H

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace trainmem::chrome {

// Phases of a training step as the trace names them: explicit annotations ("forward",
// "## backward ##", "phase:optimizer#2"), the autograd engine's evaluate_function ranges
// and *_backward operators, and the optimizer's "Optimizer.step#..." /
// "Optimizer.zero_grad#..." ranges that torch.optim records.
enum PhaseKind { Forward, Backward, Optimizer, ZeroGrad, NumPhases };
inline constexpr const char *PhaseNames[NumPhases] = {"forward", "backward", "optimizer",
                                                      "zero_grad"};
/// The phase a range's name says it is (a PhaseKind), or -1.
int classifyPhase(llvm::StringRef Name);

/// The fields of one trace event that the importer reads; everything else is skipped.
struct Event {
  Event() = default;
  Event(const Event &) = delete; // the views may point into Store
  Event &operator=(const Event &) = delete;
  /// Views of the event's text, valid while the visitor runs: into the chunk being read, or
  /// into Store where the text had to be decoded (escapes), spelled (numbers) or gathered
  /// across chunks. Copying every name was a few percent of a trace's import.
  llvm::StringRef Ph, Cat, Name, Tid;
  double Ts = std::numeric_limits<double>::quiet_NaN();
  double Dur = 0;
  bool Memory = false; ///< a `[memory]` instant event
  /// For a complete ("X") event, classifyPhase of its name, else -1. Worked out where the
  /// event is read, by whichever thread reads it: in the importer's visitor it was a
  /// tenth of the consumer's work, which sets an import's pace.
  int8_t Phase = -1;
  std::optional<int64_t> Bytes, Addr, TotalAllocated, TotalReserved, DeviceType, DeviceId;
  std::string Store[4]; ///< for Ph, Cat, Name, Tid
};

/// Calls Visit for each event of the Chrome trace at Path (a JSON array of events, or an
/// object whose "traceEvents" member is one), in file order; returns how many there were.
/// ParseAhead: let a second thread parse too (same events, same errors; tests compare).
/// Progress, where given, is called with the bytes of the file read so far (compressed
/// bytes for gzip) each time the reading moves to a new chunk.
llvm::Expected<int64_t>
forEachEvent(llvm::StringRef Path, size_t ChunkBytes, bool ParseAhead,
             llvm::function_ref<void(const Event &)> Visit,
             llvm::function_ref<void(uint64_t FileBytesRead)> Progress = nullptr);

} // namespace trainmem::chrome

#endif
