//===- CudaSnapshotImport.cpp - CUDA caching-allocator snapshots ---------------===//
//
// Reads what torch.cuda.memory._dump_snapshot() writes (a pickle, optionally gzipped)
// or the same dictionary saved as JSON, and replays its allocator trace into the
// allocated and reserved timeline of each device.
//
// The format, as read in pytorch/pytorch: torch/cuda/memory.py (_snapshot's docstring;
// _dump_snapshot is `pickle.dump(_snapshot(), f)`), torch/csrc/cuda/Module.cpp and
// torch/csrc/cuda/memory_snapshot.cpp (the dictionaries are built from py::dict /
// py::list / py::str / ints / bools / a tuple, so the pickle holds plain data only):
//   {"segments": [{"device", "address", "total_size", "allocated_size", "active_size",
//                  "requested_size", "stream", "segment_type": "small"|"large",
//                  "segment_pool_id": (int, int), "is_expandable", "frames",
//                  "blocks": [{"address", "size", "requested_size",
//                              "state": "active_allocated"|"active_pending_free"|"inactive",
//                              "frames": [{"filename", "line", "name"}]}]}],
//    "device_traces": [[{"action", "addr" (or "device_free" for "oom"), "size",
//                        "stream", "time_us", "frames"?}], one list per device],
//    "allocator_settings": {...}}
// Actions: alloc, free_requested, free_completed, segment_alloc, segment_free,
// segment_map, segment_unmap (expandable segments), snapshot, oom; newer versions add
// annotate. Older snapshots lack block addresses (they follow from the segment's) and
// keep requested sizes under blocks[i].history[0].real_size; both are understood.
//
// What "allocated" follows. DeviceCachingAllocator::free in
// c10/cuda/CUDACachingAllocator.cpp decreases stats.allocated_bytes (which
// torch.cuda.memory_allocated reports) and records FREE_REQUESTED in the same step;
// FREE_COMPLETED comes later, when the block's cross-stream events have finished, and
// only moves active_bytes. So allocated rises at `alloc` and falls at `free_requested`;
// `free_completed` changes nothing here (a block in state "active_pending_free" is not
// allocated). The trace's sizes are the requested sizes (alloc_found_block records
// orig_size, free records block->requested_size), not the rounded block sizes
// allocated_bytes counts, so the end state sums the blocks' requested_size too: mixing
// the two would skew every figure by the rounding of the blocks live at the end.
// Reserved follows segment_alloc / segment_map up and segment_free / segment_unmap down.
//
// The trace is a ring buffer of the last max_entries events, so what was allocated
// when it begins is unknown; the segments give the state at its end, and the start is
// the end minus the sum of the trace's changes, which makes the timeline absolute.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/Pickle.h"
#include "analyzer/SafeJson.h"
#include "analyzer/TraceImport.h"
#include "analyzer/TraceStream.h"
#include "analyzer/Units.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"


#include <algorithm>
#include <map>
#include <optional>
#include <unordered_map>

namespace trainmem {

namespace {

using pickle::Value;

/// Frames looked at for the top one; C++ unwinding frames come first with stacks="all".
constexpr size_t MaxFramesScanned = 64;

llvm::Error fileError(llvm::StringRef Path, const llvm::Twine &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), Path + ": " + Msg);
}

//===- Reading the file -------------------------------------------------------===//

/// The JSON form of a snapshot, as the pickle's values. Objects lose their key order
/// (llvm::json keeps none), which nothing here depends on.
Value fromJson(const llvm::json::Value &J) {
  namespace json = llvm::json;
  switch (J.kind()) {
  case json::Value::Null:
    return Value::none();
  case json::Value::Boolean:
    return Value::boolean(*J.getAsBoolean());
  case json::Value::Number:
    // Beyond int64 (an address past 2^63) becomes a float, which field checks refuse.
    if (auto I = J.getAsInteger())
      return Value::integer(*I);
    return Value::floating(*J.getAsNumber());
  case json::Value::String:
    return Value::string(J.getAsString()->str());
  case json::Value::Array: {
    std::vector<pickle::ValuePtr> Items;
    Items.reserve(J.getAsArray()->size());
    for (const json::Value &E : *J.getAsArray())
      Items.push_back(std::make_shared<Value>(fromJson(E)));
    return Value::list(std::move(Items));
  }
  case json::Value::Object: {
    std::vector<Value::Entry> Entries;
    for (const auto &KV : *J.getAsObject())
      Entries.emplace_back(std::make_shared<Value>(Value::string(KV.first.str())),
                           std::make_shared<Value>(fromJson(KV.second)));
    return Value::dict(std::move(Entries));
  }
  }
  return Value::none();
}

/// The snapshot as values, and the number of bytes they were read from.
llvm::Expected<std::pair<Value, size_t>> readSnapshot(llvm::StringRef Path, TraceFormat Format) {
  // Uncompressed files are mapped; gzip goes through the same streamed inflater as
  // every trace (TraceStream.h), with its decompression-bomb limit.
  auto Reader = ByteReader::open(Path);
  if (!Reader)
    return Reader.takeError();
  std::unique_ptr<llvm::MemoryBuffer> Mapped;
  std::string Inflated;
  llvm::StringRef Data;
  if (!(*Reader)->compressed()) {
    auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!Buffer)
      return fileError(Path, "cannot read: " + Buffer.getError().message());
    Mapped = std::move(*Buffer);
    Data = Mapped->getBuffer();
  } else {
    while (true) {
      auto Chunk = (*Reader)->next();
      if (!Chunk)
        return Chunk.takeError();
      if (Chunk->empty())
        break;
      Inflated.append(Chunk->data(), Chunk->size());
    }
    Data = Inflated;
  }
  if (Format == TraceFormat::CudaSnapshotPickle) {
    auto V = pickle::unpickle(Data, Path);
    if (!V)
      return V.takeError();
    return std::make_pair(std::move(*V), Data.size());
  }
  auto J = parseJson(Data);
  if (!J)
    return fileError(Path, "invalid JSON: " + llvm::toString(J.takeError()));
  return std::make_pair(fromJson(*J), Data.size());
}

//===- Reading the snapshot's fields ------------------------------------------===//

enum class Action { Alloc, FreeRequested, FreeCompleted, SegmentAlloc, SegmentFree, Oom, Other };

struct TraceEvent {
  Action Kind = Action::Other;
  uint64_t Addr = 0;
  int64_t Size = 0;
  std::optional<double> TimeUs;
  std::optional<int64_t> DeviceFree; ///< oom only
  const Value *Frames = nullptr;
};

/// An allocation live at the snapshot (a block in state active_allocated).
struct LiveBlock {
  uint64_t Addr = 0;
  int64_t Bytes = 0;
  int64_t BlockBytes = 0; ///< the rounded block size
  const Value *Frames = nullptr;
};

struct DeviceData {
  std::vector<TraceEvent> Events;
  std::vector<LiveBlock> LiveAtEnd;
  int64_t EndAllocated = 0;
  int64_t EndAllocatedBlocks = 0;
  int64_t EndReserved = 0;
};

/// Where a value sits, spelled only when an error names it: "segments[3].blocks[0]".
struct FieldPath {
  const char *Outer = "";
  int64_t I = -1;
  const char *Inner = "";
  int64_t J = -1;
  const char *Tail = "";
  std::string str() const {
    std::string S = Outer;
    if (I >= 0)
      S += "[" + std::to_string(I) + "]";
    S += Inner;
    if (J >= 0)
      S += "[" + std::to_string(J) + "]";
    return S + Tail;
  }
};

/// Reads the snapshot's dictionaries, naming the field and what it should have been
/// on any mismatch: "<path>: segments[3].blocks[0].size: expected an int, found str".
class SnapshotReader {
public:
  SnapshotReader(llvm::StringRef Path, size_t InputBytes)
      : Path(Path), Budget(std::max<size_t>(InputBytes, 1024)) {}

  llvm::Error expected(const FieldPath &Where, llvm::StringRef Key, const char *What,
                       const Value *Got) const {
    std::string Field = Where.str();
    if (!Key.empty())
      Field += (Field.empty() ? "" : ".") + Key.str();
    return fileError(Path, Field + ": expected " + What +
                               (Got ? llvm::Twine(", found ") + Got->kindName()
                                    : llvm::Twine(", but it is missing")));
  }

  llvm::Expected<const Value *> field(const Value &Dict, llvm::StringRef Key,
                                      const FieldPath &Where, Value::Kind K, const char *What,
                                      bool Required = true) const {
    const Value *V = Dict.get(Key);
    if (!V && !Required)
      return nullptr;
    if (!V || V->kind() != K)
      return expected(Where, Key, What, V);
    return V;
  }

  llvm::Expected<int64_t> integer(const Value &Dict, llvm::StringRef Key,
                                  const FieldPath &Where) const {
    auto V = field(Dict, Key, Where, Value::Kind::Int, "an int");
    if (!V)
      return V.takeError();
    int64_t I = (*V)->asInt();
    if (I < 0)
      return fileError(Path, Where.str() + "." + Key + ": expected a non-negative int, found " +
                                 llvm::Twine(I));
    return I;
  }

  /// Counts the elements visited; memo references could otherwise make a small pickle
  /// list the same million-entry list a million times.
  llvm::Error visit() {
    if (++Visited > Budget)
      return fileError(Path, "the snapshot refers to its entries more often than its "
                             "size allows; refusing it");
    return llvm::Error::success();
  }

  llvm::Error readSegments(const Value &Root, std::map<int64_t, DeviceData> &Devices);
  llvm::Error readBlocks(const Value &Seg, const FieldPath &Where, DeviceData &D);
  llvm::Error readTraces(const Value &Root, std::map<int64_t, DeviceData> &Devices,
                         Diagnostics &Diags);
  llvm::Expected<TraceEvent> readEvent(const Value &Entry, const FieldPath &Where,
                                       llvm::StringSet<> &UnknownActions, Diagnostics &Diags);

private:
  std::string Path;
  size_t Budget;
  size_t Visited = 0;
};

llvm::Error SnapshotReader::readSegments(const Value &Root,
                                         std::map<int64_t, DeviceData> &Devices) {
  auto Segments = field(Root, "segments", FieldPath{}, Value::Kind::List,
                        "a list of segments (torch.cuda.memory._snapshot())");
  if (!Segments)
    return Segments.takeError();
  for (size_t I = 0; I < (*Segments)->size(); ++I) {
    if (auto E = visit())
      return E;
    const Value &Seg = *(*Segments)->items()[I];
    FieldPath Where{"segments", int64_t(I)};
    if (!Seg.isDict())
      return expected(Where, "", "a dict", &Seg);
    auto Device = integer(Seg, "device", Where);
    if (!Device)
      return Device.takeError();
    if (*Device > 65535)
      return fileError(Path, Where.str() + ".device: expected a device index, found " +
                                 llvm::Twine(*Device));
    auto Total = integer(Seg, "total_size", Where);
    if (!Total)
      return Total.takeError();
    DeviceData &D = Devices[*Device];
    if (__builtin_add_overflow(D.EndReserved, *Total, &D.EndReserved))
      return fileError(Path, Where.str() + ".total_size: segment sizes overflow 64 bits");
    if (auto E = readBlocks(Seg, Where, D))
      return E;
  }
  return llvm::Error::success();
}

llvm::Error SnapshotReader::readBlocks(const Value &Seg, const FieldPath &SegWhere, DeviceData &D) {
  auto Address = integer(Seg, "address", SegWhere);
  if (!Address)
    return Address.takeError();
  auto Blocks = field(Seg, "blocks", SegWhere, Value::Kind::List, "a list of blocks");
  if (!Blocks)
    return Blocks.takeError();
  uint64_t BlockAddr = uint64_t(*Address);
  for (size_t J = 0; J < (*Blocks)->size(); ++J) {
    if (auto E = visit())
      return E;
    const Value &Block = *(*Blocks)->items()[J];
    FieldPath Where{"segments", SegWhere.I, ".blocks", int64_t(J)};
    if (!Block.isDict())
      return expected(Where, "", "a dict", &Block);
    auto Size = integer(Block, "size", Where);
    if (!Size)
      return Size.takeError();
    auto State = field(Block, "state", Where, Value::Kind::String, "a str");
    if (!State)
      return State.takeError();
    // Blocks lie back to back from the segment's address; older snapshots say so only
    // by their order.
    uint64_t Addr = BlockAddr;
    if (Block.get("address")) {
      auto A = integer(Block, "address", Where);
      if (!A)
        return A.takeError();
      Addr = uint64_t(*A);
    }
    BlockAddr = Addr + uint64_t(*Size);
    if ((*State)->asString() != "active_allocated")
      continue;
    LiveBlock L;
    L.Addr = Addr;
    L.BlockBytes = L.Bytes = *Size;
    L.Frames = Block.get("frames");
    const Value *History = Block.get("history");
    const Value *First =
        History && History->isList() && History->size() > 0 ? History->items()[0].get() : nullptr;
    if (Block.get("requested_size")) {
      auto Req = integer(Block, "requested_size", Where);
      if (!Req)
        return Req.takeError();
      L.Bytes = *Req;
    } else if (First && First->isDict() && First->get("real_size")) {
      FieldPath HWhere = Where;
      HWhere.Tail = ".history[0]";
      auto Req = integer(*First, "real_size", HWhere);
      if (!Req)
        return Req.takeError();
      L.Bytes = *Req;
      if (!L.Frames)
        L.Frames = First->get("frames");
    }
    if (__builtin_add_overflow(D.EndAllocated, L.Bytes, &D.EndAllocated) ||
        __builtin_add_overflow(D.EndAllocatedBlocks, L.BlockBytes, &D.EndAllocatedBlocks))
      return fileError(Path, Where.str() + ".size: block sizes overflow 64 bits");
    D.LiveAtEnd.push_back(L);
  }
  return llvm::Error::success();
}

llvm::Error SnapshotReader::readTraces(const Value &Root, std::map<int64_t, DeviceData> &Devices,
                                       Diagnostics &Diags) {
  auto Traces = field(Root, "device_traces", FieldPath{}, Value::Kind::List,
                      "a list with one list of trace entries per device",
                      /*Required=*/false);
  if (!Traces)
    return Traces.takeError();
  if (!*Traces)
    return llvm::Error::success(); // a snapshot taken without _record_memory_history
  if ((*Traces)->size() > 65536)
    return expected(FieldPath{"device_traces"}, "", "one list per device (at most 65536)", *Traces);
  llvm::StringSet<> UnknownActions;
  for (size_t Dev = 0; Dev < (*Traces)->size(); ++Dev) {
    const Value &List = *(*Traces)->items()[Dev];
    if (!List.isList())
      return expected(FieldPath{"device_traces", int64_t(Dev)}, "", "a list of trace entries",
                      &List);
    if (List.size() == 0)
      continue; // devices the process never touched
    DeviceData &D = Devices[int64_t(Dev)];
    D.Events.reserve(List.size());
    for (size_t I = 0; I < List.size(); ++I) {
      if (auto E = visit())
        return E;
      auto Ev =
          readEvent(*List.items()[I], FieldPath{"device_traces", int64_t(Dev), "", int64_t(I)},
                    UnknownActions, Diags);
      if (!Ev)
        return Ev.takeError();
      D.Events.push_back(*Ev);
    }
  }
  return llvm::Error::success();
}

llvm::Expected<TraceEvent> SnapshotReader::readEvent(const Value &Entry, const FieldPath &Where,
                                                     llvm::StringSet<> &UnknownActions,
                                                     Diagnostics &Diags) {
  if (!Entry.isDict())
    return expected(Where, "", "a dict", &Entry);
  auto Name = field(Entry, "action", Where, Value::Kind::String, "a str");
  if (!Name)
    return Name.takeError();
  llvm::StringRef A = (*Name)->asString();
  TraceEvent Ev;
  Ev.Kind = llvm::StringSwitch<Action>(A)
                .Case("alloc", Action::Alloc)
                .Case("free_requested", Action::FreeRequested)
                .Case("free_completed", Action::FreeCompleted)
                .Cases("segment_alloc", "segment_map", Action::SegmentAlloc)
                .Cases("segment_free", "segment_unmap", Action::SegmentFree)
                .Case("oom", Action::Oom)
                .Default(Action::Other);
  if (Ev.Kind == Action::Other && A != "snapshot" && A != "annotate" &&
      UnknownActions.insert(A).second)
    Diags.note("trace-unknown-action", "cuda:" + std::to_string(Where.I),
               "trace action '" + A.str() + "' is not known to trainmem; ignored");
  if (Ev.Kind == Action::Other) {
    // snapshot and annotate entries carry nothing the timeline needs.
  } else {
    auto Size = integer(Entry, "size", Where);
    if (!Size)
      return Size.takeError();
    Ev.Size = *Size;
    if (Ev.Kind != Action::Oom) {
      auto Addr = integer(Entry, "addr", Where);
      if (!Addr)
        return Addr.takeError();
      Ev.Addr = uint64_t(*Addr);
    } else if (Entry.get("device_free")) {
      auto Free = integer(Entry, "device_free", Where);
      if (!Free)
        return Free.takeError();
      Ev.DeviceFree = *Free;
    }
  }
  if (const Value *T = Entry.get("time_us")) {
    if (!T->isNumber())
      return expected(Where, "time_us", "a number", T);
    Ev.TimeUs = T->asDouble();
  }
  Ev.Frames = Entry.get("frames");
  return Ev;
}

/// "forward (torch/nn/modules/linear.py:125)": the innermost frame (frames run from the
/// innermost out, as torch/cuda/_memory_viz.py's _frames_fmt shows), skipping the
/// unwinder and interpreter frames _memory_viz.py's _frame_filter omits. Frames only
/// name things, so malformed ones are skipped rather than refused.
std::string topFrameOp(const Value *Frames) {
  static const char *const OmitNames[] = {"unwind::unwind",    "CapturedTraceback::gather",
                                          "gather_with_cpp",   "_start",
                                          "__libc_start_main", "PyEval_",
                                          "PyObject_",         "PyFunction_"};
  static const char *const OmitFiles[] = {"core/boxing",
                                          "/Register",
                                          "/Redispatch",
                                          "pythonrun.c",
                                          "Modules/main.c",
                                          "Objects/call.c",
                                          "Objects/methodobject.c",
                                          "pycore_ceval.h",
                                          "ceval.c",
                                          "cpython/abstract.h"};
  if (!Frames || !Frames->isList())
    return "";
  size_t N = std::min(Frames->size(), MaxFramesScanned);
  for (size_t I = 0; I < N; ++I) {
    const Value &F = *Frames->items()[I];
    const Value *Name = F.get("name"), *File = F.get("filename"), *Line = F.get("line");
    if (!Name || !Name->isString())
      continue;
    llvm::StringRef NameS = Name->asString();
    llvm::StringRef FileS = File && File->isString() ? File->asString() : "";
    auto Contains = [](llvm::StringRef S, const char *Part) { return S.contains(Part); };
    if (llvm::any_of(OmitNames, [&](const char *P) { return Contains(NameS, P); }) ||
        llvm::any_of(OmitFiles, [&](const char *P) { return Contains(FileS, P); }))
      continue;
    std::string Op = NameS.str();
    if (!FileS.empty()) {
      Op += " (" + FileS.str();
      if (Line && Line->isInt())
        Op += ":" + std::to_string(Line->asInt());
      Op += ")";
    }
    return Op;
  }
  return "";
}

//===- Replaying one device ---------------------------------------------------===//

/// What an event does to allocated and reserved bytes.
std::pair<int64_t, int64_t> deltas(const TraceEvent &E) {
  switch (E.Kind) {
  case Action::Alloc:
    return {E.Size, 0};
  case Action::FreeRequested:
    return {-E.Size, 0};
  case Action::SegmentAlloc:
    return {0, E.Size};
  case Action::SegmentFree:
    return {0, -E.Size};
  default:
    return {0, 0};
  }
}

llvm::Expected<DeviceMemory> replayDevice(llvm::StringRef Path, int64_t Index, const DeviceData &D,
                                          const TraceOptions &Opts, Diagnostics &Diags) {
  DeviceMemory M;
  M.Device = "cuda:" + std::to_string(Index);
  M.Events = int64_t(D.Events.size());
  M.PeakBasis = "snapshot";

  auto Overflow = [&] {
    return fileError(Path, "device_traces[" + llvm::Twine(Index) + "]: sizes overflow 64 bits");
  };
  int64_t SumAllocated = 0, SumReserved = 0;
  for (const TraceEvent &E : D.Events) {
    auto [DA, DR] = deltas(E);
    if (!addBytesChecked(SumAllocated, DA) || !addBytesChecked(SumReserved, DR))
      return Overflow();
  }
  int64_t Allocated = 0, Reserved = 0;
  if (__builtin_sub_overflow(D.EndAllocated, SumAllocated, &Allocated) ||
      __builtin_sub_overflow(D.EndReserved, SumReserved, &Reserved))
    return Overflow();

  // Times are the trace's own clock where every entry has one, else the number of
  // entries replayed; sample 0 is the state before the first entry.
  bool HasTime = !D.Events.empty() &&
                 llvm::all_of(D.Events, [](const TraceEvent &E) { return E.TimeUs.has_value(); });
  auto TimeOf = [&](size_t Sample) -> double {
    if (!HasTime)
      return double(Sample);
    return *D.Events[Sample == 0 ? 0 : Sample - 1].TimeUs;
  };

  size_t PeakSample = 0;
  int64_t PeakAllocated = Allocated, ReservedAtPeak = Reserved, MaxReserved = Reserved;
  bool Negative = Allocated < 0 || Reserved < 0;
  M.Timeline.reserve(D.Events.size() + 1);
  auto AddSample = [&M](double TimeUs, int64_t A, int64_t R) {
    MeasuredSample S;
    S.TimeUs = TimeUs;
    S.Allocated = A;
    S.Reserved = R;
    M.Timeline.push_back(std::move(S));
  };
  AddSample(TimeOf(0), Allocated, Reserved);
  for (size_t I = 0; I < D.Events.size(); ++I) {
    const TraceEvent &E = D.Events[I];
    auto [DA, DR] = deltas(E);
    // Partial sums of hostile sizes can overflow even where the total does not.
    if (!addBytesChecked(Allocated, DA) || !addBytesChecked(Reserved, DR))
      return Overflow();
    Negative |= Allocated < 0 || Reserved < 0;
    AddSample(TimeOf(I + 1), Allocated, Reserved);
    MaxReserved = std::max(MaxReserved, Reserved);
    if (Allocated > PeakAllocated) {
      PeakAllocated = Allocated;
      ReservedAtPeak = Reserved;
      PeakSample = I + 1;
    }
    if (E.Kind == Action::Oom) {
      std::string Msg = "the caching allocator ran out of memory allocating " +
                        formatBytes(E.Size) + " (trace entry " + std::to_string(I);
      if (E.DeviceFree)
        Msg += "; CUDA reported " + formatBytes(*E.DeviceFree) + " free";
      Diags.warning("trace-oom", M.Device, Msg + ")");
    }
  }
  if (D.Events.empty())
    Diags.note("snapshot-no-trace", M.Device,
               "the snapshot has no allocator trace for this device, so its figures are the "
               "state when it was taken, not the peak; record one with "
               "torch.cuda.memory._record_memory_history() before the steps");
  if (Negative)
    Diags.warning("snapshot-inconsistent", M.Device,
                  "replaying the trace back from the segments gives negative bytes; the "
                  "snapshot's segments and trace disagree, so its figures are unreliable");
  if (D.EndAllocatedBlocks != D.EndAllocated)
    Diags.note("snapshot-requested-bytes", M.Device,
               "allocated bytes are the sizes requested, as the allocator's trace records "
               "them; its rounded blocks hold " +
                   formatBytes(D.EndAllocatedBlocks - D.EndAllocated) +
                   " more at the snapshot (torch.cuda.memory_allocated counts those)");

  M.Peak = PeakAllocated;
  M.PeakTimeUs = TimeOf(PeakSample);
  M.PeakReserved = MaxReserved;
  int64_t Fragmentation;
  if (!__builtin_sub_overflow(ReservedAtPeak, PeakAllocated, &Fragmentation))
    M.FragmentationAtPeak = Fragmentation;
  // The sample after event k is sample k + 1; -1 stands for the state before the trace.
  int64_t PeakEvent = int64_t(PeakSample) - 1;
  if (PeakEvent >= 0)
    M.PeakOp = topFrameOp(D.Events[size_t(PeakEvent)].Frames);

  // Allocations made inside the trace and not yet freed at the peak.
  struct Live {
    int64_t Bytes;
    double TimeUs;
    const Value *Frames;
    bool FramesOfFree;
  };
  std::unordered_map<uint64_t, Live> LiveAt;
  for (int64_t I = 0; I <= PeakEvent; ++I) {
    const TraceEvent &E = D.Events[size_t(I)];
    if (E.Kind == Action::Alloc)
      LiveAt[E.Addr] = {E.Size, TimeOf(size_t(I) + 1), E.Frames, false};
    else if (E.Kind == Action::FreeRequested)
      LiveAt.erase(E.Addr);
  }
  // Allocations older than the trace: an address whose first alloc/free in the trace is
  // a free after the peak held one at the peak (nothing is allocated at an occupied
  // address), and a block live at the end whose address the trace never touches held
  // it throughout. The free's frames are where it was freed when the history records
  // context="all" (the default), so such ops say "freed in".
  std::unordered_map<uint64_t, size_t> FirstTouch;
  for (size_t I = 0; I < D.Events.size(); ++I) {
    const TraceEvent &E = D.Events[I];
    if (E.Kind == Action::Alloc || E.Kind == Action::FreeRequested)
      FirstTouch.try_emplace(E.Addr, I);
  }
  double StartTime = TimeOf(0);
  for (const auto &[Addr, I] : FirstTouch) {
    const TraceEvent &E = D.Events[I];
    if (E.Kind == Action::FreeRequested && int64_t(I) > PeakEvent)
      LiveAt.try_emplace(Addr, Live{E.Size, StartTime, E.Frames, true});
  }
  for (const LiveBlock &B : D.LiveAtEnd)
    if (!FirstTouch.count(B.Addr))
      LiveAt.try_emplace(B.Addr, Live{B.Bytes, StartTime, B.Frames, false});

  std::vector<std::pair<uint64_t, const Live *>> Order;
  Order.reserve(LiveAt.size());
  for (const auto &[Addr, L] : LiveAt)
    Order.emplace_back(Addr, &L);
  llvm::sort(Order, [](const auto &A, const auto &B) {
    if (A.second->Bytes != B.second->Bytes)
      return A.second->Bytes > B.second->Bytes;
    return A.first < B.first;
  });
  M.LiveAtPeakCount = int64_t(Order.size());
  for (size_t I = 0; I < Order.size() && I < Opts.TopAllocations; ++I) {
    MeasuredAllocation A;
    A.Addr = Order[I].first;
    A.Bytes = Order[I].second->Bytes;
    A.TimeUs = Order[I].second->TimeUs;
    A.Op = topFrameOp(Order[I].second->Frames);
    if (Order[I].second->FramesOfFree && !A.Op.empty())
      A.Op = "freed in " + A.Op;
    M.LiveAtPeak.push_back(std::move(A));
  }
  decimateTimeline(M.Timeline, Opts.MaxTimelinePoints);
  return M;
}

} // namespace

llvm::Expected<MeasuredTrace> importCudaSnapshot(llvm::StringRef Path, TraceFormat Format,
                                                 const TraceOptions &Opts) {
  if (Format != TraceFormat::CudaSnapshotPickle && Format != TraceFormat::CudaSnapshotJson)
    return fileError(Path, llvm::Twine("importCudaSnapshot reads cuda-snapshot-pickle or "
                                       "cuda-snapshot-json, not ") +
                               traceFormatName(Format));
  auto Read = readSnapshot(Path, Format);
  if (!Read)
    return Read.takeError();
  const Value &Root = Read->first;
  SnapshotReader R(Path, Read->second);
  if (!Root.isDict())
    return R.expected(FieldPath{"snapshot"}, "",
                      "a dict with segments and device_traces (what "
                      "torch.cuda.memory._dump_snapshot writes)",
                      &Root);

  MeasuredTrace T;
  T.Format = Format;
  T.Path = Path.str();
  std::map<int64_t, DeviceData> Devices;
  if (auto E = R.readSegments(Root, Devices))
    return E;
  if (auto E = R.readTraces(Root, Devices, T.Diags))
    return E;
  if (Devices.empty())
    return fileError(Path, "the snapshot holds no CUDA segments and no trace entries; call "
                           "torch.cuda.memory._record_memory_history() before the steps "
                           "and _dump_snapshot() while their memory is still held");
  for (const auto &[Index, D] : Devices) {
    auto M = replayDevice(Path, Index, D, Opts, T.Diags);
    if (!M)
      return M.takeError();
    T.Devices.push_back(std::move(*M));
  }
  if (auto E = selectTraceDevice(T, Opts))
    return E;
  return T;
}

} // namespace trainmem
