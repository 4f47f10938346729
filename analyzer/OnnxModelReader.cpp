//===- OnnxModelReader.cpp - read an ONNX file without its weights --------------===//
//
// A protobuf wire-format walk over a memory-mapped ONNX file. Small messages are handed
// to protobuf's generated parsers; messages that can hold weights (graphs, nodes,
// attributes, tensors) are walked field by field so payload bytes are skipped, never
// copied. Offsets are 64-bit, so files past protobuf's 2 GiB message limit work.
// Field numbers are those of onnx.proto (ONNX 1.12).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxModelReader.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <google/protobuf/io/coded_stream.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace trainmem {
namespace {

/// Messages below this size are parsed by protobuf directly: they cannot hold a payload
/// large enough to matter.
constexpr uint64_t DirectParseLimit = 64 * 1024;

struct Span {
  const uint8_t *Data = nullptr;
  uint64_t Size = 0;
  uint64_t FileOffset = 0; ///< offset of Data[0] in the file
};

enum WireType { Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5 };

/// One field of a message: its number, wire type and either a varint value or a span.
struct Field {
  uint32_t Number = 0;
  int Wire = 0;
  uint64_t Value = 0;
  Span Bytes;
};

class WireCursor {
public:
  explicit WireCursor(Span S) : S(S) {}
  bool atEnd() const { return Pos >= S.Size; }
  /// Where the next field starts, from the start of the span.
  uint64_t offset() const { return Pos; }

  llvm::Expected<Field> next() {
    uint64_t Tag;
    if (!readVarint(Tag))
      return bad("truncated field tag");
    Field F;
    F.Number = static_cast<uint32_t>(Tag >> 3);
    F.Wire = static_cast<int>(Tag & 7);
    switch (F.Wire) {
    case Varint:
      if (!readVarint(F.Value))
        return bad("truncated varint");
      return F;
    case Fixed64:
      if (S.Size - Pos < 8)
        return bad("truncated fixed64");
      std::memcpy(&F.Value, S.Data + Pos, 8);
      Pos += 8;
      return F;
    case Fixed32: {
      if (S.Size - Pos < 4)
        return bad("truncated fixed32");
      uint32_t V;
      std::memcpy(&V, S.Data + Pos, 4);
      F.Value = V;
      Pos += 4;
      return F;
    }
    case LengthDelimited: {
      uint64_t Len;
      if (!readVarint(Len) || Len > S.Size - Pos)
        return bad("length-delimited field runs past the end of its message");
      F.Bytes = {S.Data + Pos, Len, S.FileOffset + Pos};
      Pos += Len;
      return F;
    }
    default:
      return bad("unsupported wire type " + std::to_string(F.Wire));
    }
  }

private:
  bool readVarint(uint64_t &Out) {
    Out = 0;
    for (int Shift = 0; Shift < 64; Shift += 7) {
      if (Pos >= S.Size)
        return false;
      uint8_t B = S.Data[Pos++];
      Out |= static_cast<uint64_t>(B & 0x7f) << Shift;
      if (!(B & 0x80))
        return true;
    }
    return false;
  }
  llvm::Error bad(const std::string &Msg) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "malformed protobuf at byte " +
                                       std::to_string(S.FileOffset + Pos) + ": " + Msg);
  }
  Span S;
  uint64_t Pos = 0;
};


template <typename Message>
llvm::Error parseDirect(Span S, Message &Out, const char *What) {
  if (S.Size > static_cast<uint64_t>(INT32_MAX) ||
      !Out.ParseFromArray(S.Data, static_cast<int>(S.Size)))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "malformed %s message at byte %llu", What,
                                   static_cast<unsigned long long>(S.FileOffset));
  return llvm::Error::success();
}

class Scanner {
public:
  Scanner(OnnxFile &File) : File(File) {}

  /// The file's memory mapping, when it is one: pages the scan has passed are handed
  /// back as it goes (see releasePassed).
  void setMapping(const uint8_t *Base) { MapBase = Base; }

  llvm::Error scanModel(Span S) {
    WireCursor C(S);
    onnx::ModelProto &M = File.Model;
    PlainRun Run;
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F)
        return F.takeError();
      bool Graph = F->Number == 7 && F->Wire == LengthDelimited;
      // training_info, functions: not modelled
      if (!Graph && F->Number != 20 && F->Number != 25) {
        Run.End = C.offset();
        continue;
      }
      if (auto E = mergeRun(S, Run, C.offset(), M))
        return E;
      if (Graph)
        if (auto E = scanGraph(F->Bytes, *M.mutable_graph()))
          return E;
    }
    return mergeRun(S, Run, C.offset(), M);
  }

private:
  /// Re-encodes one field and lets protobuf merge it into Msg (for small fields).
  template <typename Message> llvm::Error mergeField(const Field &F, Message &Msg) {
    std::string Buf;
    auto PutVarint = [&Buf](uint64_t V) {
      while (V >= 0x80) {
        Buf.push_back(static_cast<char>((V & 0x7f) | 0x80));
        V >>= 7;
      }
      Buf.push_back(static_cast<char>(V));
    };
    PutVarint((static_cast<uint64_t>(F.Number) << 3) | static_cast<uint64_t>(F.Wire));
    switch (F.Wire) {
    case Varint:
      PutVarint(F.Value);
      break;
    case Fixed64:
      Buf.append(reinterpret_cast<const char *>(&F.Value), 8);
      break;
    case Fixed32: {
      auto V = static_cast<uint32_t>(F.Value);
      Buf.append(reinterpret_cast<const char *>(&V), 4);
      break;
    }
    case LengthDelimited:
      if (F.Bytes.Size > static_cast<uint64_t>(INT32_MAX))
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "field %u at byte %llu is over 2 GiB", F.Number,
                                       static_cast<unsigned long long>(F.Bytes.FileOffset));
      PutVarint(F.Bytes.Size);
      Buf.append(reinterpret_cast<const char *>(F.Bytes.Data), F.Bytes.Size);
      break;
    }
    if (!Msg.MergeFromString(Buf))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "malformed field %u at byte %llu", F.Number,
                                     static_cast<unsigned long long>(F.Bytes.FileOffset));
    return llvm::Error::success();
  }

  /// Consecutive fields of one message that the scan hands to protobuf as they are:
  /// [Begin, End) of the message's span.
  struct PlainRun {
    uint64_t Begin = 0, End = 0;
  };

  /// Merges a run of plain fields into Msg with one parse of their bytes where they lie,
  /// then starts the next run at Next, where each field used to be re-encoded into a
  /// string for a MergeFromString of its own (a 7B export's 1,813 value_info entries and
  /// every weight's name, dims and external-data entries: reading it took 1.47 ms warm
  /// that way, 1.34 ms in runs). A run that does not parse is merged again field by
  /// field, so that the error names the field.
  template <typename Message>
  llvm::Error mergeRun(Span S, PlainRun &Run, uint64_t Next, Message &Msg) {
    const uint64_t Begin = Run.Begin, End = Run.End;
    Run = {Next, Next};
    if (End <= Begin)
      return llvm::Error::success();
    if (End - Begin <= static_cast<uint64_t>(INT32_MAX)) {
      google::protobuf::io::CodedInputStream In(S.Data + Begin, static_cast<int>(End - Begin));
      if (Msg.MergeFromCodedStream(&In))
        return llvm::Error::success();
    }
    WireCursor C({S.Data + Begin, End - Begin, S.FileOffset + Begin});
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F)
        return F.takeError();
      if (auto E = mergeField(F.get(), Msg))
        return E;
    }
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "malformed fields at bytes %llu-%llu",
                                   static_cast<unsigned long long>(S.FileOffset + Begin),
                                   static_cast<unsigned long long>(S.FileOffset + End));
  }

  llvm::Error scanGraph(Span S, onnx::GraphProto &G) {
    // Subgraphs (If branches, Loop and Scan bodies) recurse through here; real models nest
    // a few levels, a hostile file could nest until the stack overflows.
    constexpr unsigned MaxGraphDepth = 64;
    if (GraphDepth >= MaxGraphDepth)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "subgraphs nested more than %u levels deep", MaxGraphDepth);
    ++GraphDepth;
    auto Leave = llvm::make_scope_exit([this] { --GraphDepth; });
    WireCursor C(S);
    PlainRun Run;
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F)
        return F.takeError();
      bool Node = F->Wire == LengthDelimited && F->Number == 1;
      bool Initializer = F->Wire == LengthDelimited && F->Number == 5;
      // Field 15, sparse initializers: payload-only, their dense shape is in the proto.
      if (!Node && !Initializer && F->Number != 15) {
        Run.End = C.offset();
        continue;
      }
      if (auto E = mergeRun(S, Run, C.offset(), G))
        return E;
      if (Node) {
        if (auto E = scanNode(F->Bytes, *G.add_node()))
          return E;
      } else if (Initializer) {
        onnx::TensorProto *T = G.add_initializer();
        auto Ref = scanTensor(F->Bytes, *T);
        if (!Ref)
          return Ref.takeError();
        File.Payloads[T->name()] = *Ref;
      }
    }
    return mergeRun(S, Run, C.offset(), G);
  }

  llvm::Error scanNode(Span S, onnx::NodeProto &N) {
    if (S.Size < DirectParseLimit) {
      if (auto E = parseDirect(S, N, "NodeProto"))
        return E;
      recordSmallConstant(N, S);
      return llvm::Error::success();
    }
    WireCursor C(S);
    PlainRun Run;
    std::optional<PayloadRef> ValueRef;
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F)
        return F.takeError();
      if (F->Wire != LengthDelimited || F->Number != 5) {
        Run.End = C.offset();
        continue;
      }
      if (auto E = mergeRun(S, Run, C.offset(), N))
        return E;
      auto Ref = scanAttribute(F->Bytes, *N.add_attribute());
      if (!Ref)
        return Ref.takeError();
      if (*Ref && N.attribute(N.attribute_size() - 1).name() == "value")
        ValueRef = **Ref;
    }
    if (auto E = mergeRun(S, Run, C.offset(), N))
      return E;
    if (N.op_type() == "Constant" && N.output_size() > 0 && ValueRef)
      File.Payloads[N.output(0)] = *ValueRef;
    return llvm::Error::success();
  }

  /// A small Constant node was parsed directly; find its tensor's payload offset anyway
  /// so ties on small models can still be confirmed.
  void recordSmallConstant(const onnx::NodeProto &N, Span S) {
    if (N.op_type() != "Constant" || N.output_size() == 0)
      return;
    WireCursor C(S);
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F) {
        llvm::consumeError(F.takeError());
        return;
      }
      if (F->Wire != LengthDelimited || F->Number != 5)
        continue;
      onnx::AttributeProto Scratch;
      auto Ref = scanAttribute(F->Bytes, Scratch);
      if (!Ref) {
        llvm::consumeError(Ref.takeError());
        return;
      }
      if (*Ref && Scratch.name() == "value")
        File.Payloads[N.output(0)] = **Ref;
    }
  }

  /// Returns the payload of the attribute's `t` tensor when it has one.
  llvm::Expected<std::optional<PayloadRef>> scanAttribute(Span S, onnx::AttributeProto &A) {
    WireCursor C(S);
    PlainRun Run;
    std::optional<PayloadRef> Ref;
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F)
        return F.takeError();
      if (F->Wire != LengthDelimited ||
          (F->Number != 5 && F->Number != 10 && F->Number != 6 && F->Number != 11)) {
        Run.End = C.offset();
        continue;
      }
      if (auto E = mergeRun(S, Run, C.offset(), A))
        return E;
      if (F->Number == 5) {
        auto R = scanTensor(F->Bytes, *A.mutable_t());
        if (!R)
          return R.takeError();
        Ref = *R;
      } else if (F->Number == 10) {
        auto R = scanTensor(F->Bytes, *A.add_tensors());
        if (!R)
          return R.takeError();
      } else if (F->Number == 6) {
        if (auto E = scanGraph(F->Bytes, *A.mutable_g()))
          return E;
      } else if (auto E = scanGraph(F->Bytes, *A.add_graphs())) {
        return E;
      }
    }
    if (auto E = mergeRun(S, Run, C.offset(), A))
      return E;
    return Ref;
  }

  /// Fills T with everything but a large payload and says where the payload is.
  llvm::Expected<PayloadRef> scanTensor(Span S, onnx::TensorProto &T) {
    WireCursor C(S);
    PayloadRef Ref;
    Ref.File = File.Path;
    std::vector<Field> PayloadFields;
    PlainRun Run;
    while (!C.atEnd()) {
      auto F = C.next();
      if (!F)
        return F.takeError();
      switch (F->Number) {
      case 4: case 5: case 6: case 7: case 9: case 10: case 11:
        if (auto E = mergeRun(S, Run, C.offset(), T))
          return E;
        PayloadFields.push_back(*F);
        break;
      default:
        Run.End = C.offset();
      }
    }
    if (auto E = mergeRun(S, Run, C.offset(), T))
      return E;
    int64_t Elements = 1;
    bool Huge = false; // negative or overflowing dims: never parsed as a small tensor
    for (int64_t D : T.dims())
      Huge |= D < 0 || __builtin_mul_overflow(Elements, D, &Elements);
    bool Small = !Huge && Elements <= InlineElementLimit && S.Size < DirectParseLimit;
    for (const Field &F : PayloadFields) {
      if (Small) {
        if (auto E = mergeField(F, T))
          return E;
      }
      if (F.Wire != LengthDelimited)
        continue; // unpacked repeated values: no contiguous payload to point at
      if (F.Number == 9 || F.Number == 4 || F.Number == 10) {
        // raw_data, packed float_data (fixed32) and packed double_data (fixed64) are
        // little-endian arrays in the file.
        Ref.From = F.Number == 9 ? PayloadRef::Source::InlineRaw
                                 : PayloadRef::Source::InlineTyped;
        Ref.Offset = static_cast<int64_t>(F.Bytes.FileOffset);
        Ref.Length = static_cast<int64_t>(F.Bytes.Size);
      }
    }
    if (!Small && !PayloadFields.empty()) {
      File.Stripped[T.name()] = true;
      for (const Field &F : PayloadFields)
        if (F.Wire == LengthDelimited)
          releasePassed(F.Bytes.Data + F.Bytes.Size);
    }
    if (T.data_location() == onnx::TensorProto::EXTERNAL) {
      Ref.From = PayloadRef::Source::ExternalFile;
      Ref.Offset = 0; // the external-data defaults, whatever inline fields said
      Ref.Length = -1;
      std::string Location;
      for (const auto &Entry : T.external_data()) {
        if (Entry.key() == "location")
          Location = Entry.value();
        else if (Entry.key() == "offset")
          Ref.Offset = std::strtoll(Entry.value().c_str(), nullptr, 10);
        else if (Entry.key() == "length")
          Ref.Length = std::strtoll(Entry.value().c_str(), nullptr, 10);
      }
      if (!locationInsideFolder(Location)) {
        // Never opened: a downloaded model must not make trainmem read /etc/passwd.
        Ref.From = PayloadRef::Source::None;
        File.RefusedLocations.push_back(T.name() + ": " + Location);
        return Ref;
      }
      llvm::SmallString<256> Full(llvm::sys::path::parent_path(File.Path));
      llvm::sys::path::append(Full, Location);
      Ref.File = std::string(Full);
    }
    return Ref;
  }

  /// ONNX external data is "relative to the model file's folder": an absolute path, a
  /// ".." component, or a symbolic link that resolves outside that folder is refused.
  /// Every weight of an exported model usually names the same data file, so the verdict
  /// is kept per location: the two real_path calls (a readlink per path component) for
  /// each of a 7B model's 291 weights took 2-4 ms, more than parsing the file.
  bool locationInsideFolder(llvm::StringRef Location) {
    auto [It, Inserted] = LocationVerdicts.try_emplace(Location, false);
    if (Inserted)
      It->second = checkLocation(Location);
    return It->second;
  }

  bool checkLocation(llvm::StringRef Location) {
    if (Location.empty() || llvm::sys::path::is_absolute(Location) ||
        Location.contains('\0'))
      return false;
    for (auto It = llvm::sys::path::begin(Location), End = llvm::sys::path::end(Location);
         It != End; ++It)
      if (*It == "..")
        return false;
    llvm::SmallString<256> Folder(llvm::sys::path::parent_path(File.Path)), Real;
    if (Folder.empty())
      Folder = ".";
    llvm::SmallString<256> Full(Folder);
    llvm::sys::path::append(Full, Location);
    if (!RealFolder) {
      llvm::SmallString<256> Resolved;
      if (llvm::sys::fs::real_path(Folder, Resolved))
        RealFolder = std::string();
      else {
        llvm::sys::path::append(Resolved, "");
        RealFolder = std::string(Resolved);
      }
    }
    if (RealFolder->empty() || llvm::sys::fs::real_path(Full, Real))
      return true; // nothing there to open; reading it fails with its own message
    return llvm::StringRef(Real).starts_with(*RealFolder);
  }

  /// Unmaps the mapped file's pages before End (they stay in the page cache; a later
  /// read maps them again). Reading a tensor's header maps the page cache around it,
  /// whole large folios on recent kernels (2 MB per weight: a 1.35 GB file with
  /// embedded weights peaked at 152 MB RSS while the scan touched 1 MB of it), and the
  /// payloads are never read, so the scan hands back what it passed at each large one.
  void releasePassed(const uint8_t *End) {
#ifdef MADV_DONTNEED
    if (!MapBase || End - MapBase < (1 << 20) + static_cast<ptrdiff_t>(Released))
      return;
    const uintptr_t Page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t Start = reinterpret_cast<uintptr_t>(MapBase) & ~(Page - 1);
    const uintptr_t Stop = reinterpret_cast<uintptr_t>(End) & ~(Page - 1);
    if (Stop > Start)
      ::madvise(reinterpret_cast<void *>(Start), Stop - Start, MADV_DONTNEED);
    Released = static_cast<uint64_t>(End - MapBase);
#else
    (void)End;
#endif
  }

  const uint8_t *MapBase = nullptr;
  uint64_t Released = 0; ///< bytes of the file handed back at the last release
  OnnxFile &File;
  unsigned GraphDepth = 0;
  llvm::StringMap<bool> LocationVerdicts; ///< locationInsideFolder's answers
  std::optional<std::string> RealFolder;  ///< the model's folder, resolved; empty if not
};

} // namespace

llvm::Expected<OnnxFile> readOnnxModel(const std::string &Path) {
  auto Fail = [&Path](const std::string &Msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s", Path.c_str(),
                                   Msg.c_str());
  };
  if (llvm::sys::fs::is_directory(Path))
    return Fail("is a directory, expected an .onnx file");
  auto Buffer = llvm::MemoryBuffer::getFile(Path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!Buffer)
    return Fail("cannot read: " + Buffer.getError().message());
  OnnxFile File;
  File.Path = Path;
  File.FileSize = (*Buffer)->getBufferSize();
  if (File.FileSize == 0)
    return Fail("the file is empty, expected an ONNX model");
  Span Whole{reinterpret_cast<const uint8_t *>((*Buffer)->getBufferStart()), File.FileSize, 0};
  Scanner S(File);
  if ((*Buffer)->getBufferKind() == llvm::MemoryBuffer::MemoryBuffer_MMap)
    S.setMapping(Whole.Data);
  if (auto E = S.scanModel(Whole))
    return Fail("not an ONNX model (" + llvm::toString(std::move(E)) + ")");
  if (!File.Model.has_graph() || File.Model.ir_version() <= 0)
    return Fail("not an ONNX model: no graph or no ir_version field");
  return File;
}

static llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> mapPayload(const Tensor &T) {
  const PayloadRef &Ref = T.Payload;
  bool Contiguous = Ref.From == PayloadRef::Source::InlineRaw ||
                    Ref.From == PayloadRef::Source::ExternalFile ||
                    (Ref.From == PayloadRef::Source::InlineTyped &&
                     (T.Type == DType::Float32 || T.Type == DType::Float64));
  if (!Contiguous)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: payload of '%s' is not stored in the file",
                                   Ref.File.c_str(), T.Name.c_str());
  int64_t Want = T.bytes();
  if (Ref.Length >= 0 && Ref.Length < Want)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: payload of '%s' has %lld bytes, its shape needs %lld",
                                   Ref.File.c_str(), T.Name.c_str(),
                                   static_cast<long long>(Ref.Length),
                                   static_cast<long long>(Want));
  auto Buf = llvm::MemoryBuffer::getFileSlice(Ref.File, static_cast<uint64_t>(Want),
                                              static_cast<uint64_t>(Ref.Offset),
                                              /*IsVolatile=*/false);
  if (!Buf)
    return llvm::createStringError(Buf.getError(), "%s: cannot read payload of '%s': %s",
                                   Ref.File.c_str(), T.Name.c_str(),
                                   Buf.getError().message().c_str());
  if (static_cast<int64_t>((*Buf)->getBufferSize()) < Want)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: payload of '%s' runs past the end of the file",
                                   Ref.File.c_str(), T.Name.c_str());
  return std::move(*Buf);
}

/// True when T's external payload lies in a hole of a sparse file (what a weightless
/// export writes): it is all zeros, and reading it would only fault in zero pages. POSIX
/// lseek(SEEK_DATA) says so without reading; LLVM's file API has no such query.
static bool payloadIsHole(const Tensor &T) {
#ifdef SEEK_DATA
  if (T.Payload.From != PayloadRef::Source::ExternalFile || T.Payload.Offset < 0)
    return false;
  int Fd = ::open(T.Payload.File.c_str(), O_RDONLY | O_CLOEXEC);
  if (Fd < 0)
    return false;
  off_t Data = ::lseek(Fd, static_cast<off_t>(T.Payload.Offset), SEEK_DATA);
  int Errno = errno;
  ::close(Fd);
  if (Data < 0)
    return Errno == ENXIO; // no data from Offset to the end of the file
  return Data >= static_cast<off_t>(T.Payload.Offset + T.bytes());
#else
  return false;
#endif
}

llvm::Expected<bool> payloadsEqual(const Tensor &A, const Tensor &B, bool Transposed) {
  if (A.Type != B.Type || A.numElements() != B.numElements())
    return false;
  if (payloadIsHole(A) || payloadIsHole(B))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: the payload of '%s' is a hole of a sparse file (a "
                                   "weightless export), so it says nothing about a tie",
                                   A.Payload.File.c_str(), A.Name.c_str());
  auto MA = mapPayload(A);
  if (!MA)
    return MA.takeError();
  auto MB = mapPayload(B);
  if (!MB)
    return MB.takeError();
  const char *PA = (*MA)->getBufferStart(), *PB = (*MB)->getBufferStart();
  size_t Elem = dtypeBits(A.Type) / 8;
  // A payload whose elements are all equal (zeros of a weightless export, a constant
  // fill) says nothing about a tie.
  // All elements equal <=> the payload equals itself shifted by one element.
  int64_t N = A.numElements();
  bool Constant = N < 2 || std::memcmp(PA, PA + Elem, static_cast<size_t>(N - 1) * Elem) == 0;
  if (Constant)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: every element of '%s' is equal (a weightless export?)",
                                   A.Payload.File.c_str(), A.Name.c_str());
  if (!Transposed || A.Shape.size() != 2)
    return std::memcmp(PA, PB, static_cast<size_t>(A.bytes())) == 0;
  // B is A^T: B[j][i] == A[i][j]. Tiles keep both walks cache-friendly.
  int64_t Rows = A.Shape[0], Cols = A.Shape[1];
  constexpr int64_t Tile = 64;
  for (int64_t I0 = 0; I0 < Rows; I0 += Tile)
    for (int64_t J0 = 0; J0 < Cols; J0 += Tile)
      for (int64_t I = I0; I < std::min(Rows, I0 + Tile); ++I)
        for (int64_t J = J0; J < std::min(Cols, J0 + Tile); ++J)
          if (std::memcmp(PA + (I * Cols + J) * Elem, PB + (J * Rows + I) * Elem, Elem) != 0)
            return false;
  return true;
}

} // namespace trainmem
