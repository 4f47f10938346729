//===- TraceStream.h - streamed reading of (gzipped) JSON traces ----*- C++ -*-===//
//
// Profiler traces run to gigabytes, so they are never read whole: ByteReader hands out
// the file in chunks, inflating gzip on the way, and JsonCursor pulls JSON tokens from it.
// llvm::json parses whole documents only, which would hold the file (and a tree several
// times its size) in memory; this cursor holds one chunk and the value being read.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_TRACESTREAM_H
#define TRAINMEM_ANALYZER_TRACESTREAM_H

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace trainmem {

/// A file read in chunks, gunzipped when it starts with the gzip magic.
class ByteReader {
public:
  /// Which library inflates gzip: the fastest this build has (ISA-L's igzip where CMake
  /// found libisal, else zlib), or zlib (tests compare the two). Both hand out the same
  /// bytes and the same errors.
  enum class Inflater { Fastest, Zlib };
  /// ChunkBytes: how much is read (and inflated) at a time.
  static llvm::Expected<std::unique_ptr<ByteReader>>
  open(llvm::StringRef Path, size_t ChunkBytes = 1 << 20, Inflater Use = Inflater::Fastest);
  /// "isa-l" or "zlib": what Inflater::Fastest is in this build.
  static llvm::StringRef fastestInflater();
  virtual ~ByteReader();
  /// The next chunk; empty at the end. Errors name the file (corrupt gzip, read error,
  /// a decompression bomb).
  virtual llvm::Expected<llvm::StringRef> next() = 0;
  /// Bytes of the file consumed so far (compressed bytes for gzip).
  virtual uint64_t fileBytesRead() const = 0;
  virtual bool compressed() const = 0;
  /// The first bytes of the (decompressed) content, for format detection.
  static llvm::Expected<std::string> peek(llvm::StringRef Path, size_t Bytes);

protected:
  ByteReader() = default;
};

/// A pull parser over a ByteReader. Every method that reads reports errors with the
/// file name and the byte offset (in the decompressed stream).
class JsonCursor {
public:
  JsonCursor(std::unique_ptr<ByteReader> Reader, std::string Name);

  /// The next non-space character without consuming it; 0 at the end.
  llvm::Expected<char> peekToken();
  /// Consumes the expected structural character (after whitespace).
  llvm::Error expect(char C);
  /// Inside an object or array after its opening bracket: true when another member
  /// follows (consuming the ',' separator), false at the closing bracket (consumed).
  llvm::Expected<bool> nextMember(char Close, bool First);

  llvm::Expected<std::string> readString();
  /// The same into a caller's buffer (cleared first), so a hot loop allocates nothing.
  llvm::Error readString(std::string &Into);
  /// A number; Integer holds it exactly when it has no fraction or exponent.
  struct Number {
    double Value = 0;
    std::optional<int64_t> Integer;
  };
  llvm::Expected<Number> readNumber();
  /// Reads an object: Member is called after each key's ':' and must consume the value.
  llvm::Error readObject(llvm::function_ref<llvm::Error(llvm::StringRef Key)> Member);
  /// Reads an array: Element is called at each element and must consume it.
  llvm::Error readArray(llvm::function_ref<llvm::Error()> Element);
  /// Skips one value of any kind (containers iteratively, so depth cannot overflow).
  llvm::Error skipValue();

  /// The bytes read from the file and not yet consumed: the rest of the current chunk,
  /// possibly empty (nothing is read to fill it). A hot loop can read a value lying wholly
  /// in it with a JsonScanner and advance() past it, and leave any other to the methods
  /// above, which report errors and cross chunk boundaries.
  llvm::StringRef buffered() const { return Chunk.substr(Pos); }
  /// Consumes the first N bytes of buffered().
  void advance(size_t N) { Pos += std::min(N, Chunk.size() - Pos); }

  uint64_t offset() const { return Consumed + Pos; }
  const std::string &name() const { return Name; }
  llvm::Error error(const llvm::Twine &Message) const;

private:
  llvm::Expected<bool> fill();
  llvm::Expected<int> get();
  llvm::Error skipString();

  std::unique_ptr<ByteReader> Reader;
  std::string Name;
  llvm::StringRef Chunk;
  size_t Pos = 0;
  uint64_t Consumed = 0;
  bool AtEnd = false;
  std::string Skipped;
};

/// Reads JSON lying wholly in one buffer (JsonCursor::buffered()) in place: no refills, no
/// Expected per token, strings as views where they hold no escape. Each method reads what
/// JsonCursor's method of the same name reads, with the same result, or answers false:
/// "not decided here" (the buffer ends first, or the text is malformed or unusual). The
/// caller then reads the whole value again with the cursor, which reports the error at
/// its offset, so a scanner never words an error itself and accepts nothing the cursor
/// refuses. After a false the scanner's position is unspecified.
class JsonScanner {
public:
  explicit JsonScanner(llvm::StringRef Buffer)
      : Begin(Buffer.data()), At(Buffer.data()), End(Buffer.data() + Buffer.size()) {}

  /// Bytes read so far (for JsonCursor::advance once the value is whole).
  size_t consumed() const { return static_cast<size_t>(At - Begin); }
  /// The next non-space character, not consumed; false at the end of the buffer.
  bool peekToken(char &C);
  /// Consumes C after whitespace.
  bool expect(char C);
  /// As JsonCursor::nextMember: More is true when another member follows.
  bool nextMember(char Close, bool First, bool &More);
  /// A string as a view of the buffer when it holds no escape, else decoded into Scratch
  /// (and the view of Scratch).
  bool readString(llvm::StringRef &View, std::string &Scratch);
  bool readString(std::string &Into);
  bool readNumber(JsonCursor::Number &N);
  bool skipValue();

private:
  bool skipString();

  const char *Begin, *At, *End;
};

/// The conversion both readers share: Text (a run of number characters) as a number, or
/// false when it is malformed.
bool parseJsonNumber(llvm::StringRef Text, JsonCursor::Number &N);

} // namespace trainmem

#endif
