//===- PendingFile.h - a file replaced only once written whole ------*- C++ -*-===//
//
// Every file trainmem writes (reports, exported models, training configs) goes to a
// temporary file beside its destination and is renamed over it only once written whole:
// a failure anywhere leaves the file that was there as it was, and no partial file. The
// one place that checks the stream's write errors (a full disk, a file past ulimit -f)
// before the rename: LLVM 16's llvm::writeToOutput does not, and put a cut file in place
// of the user's before aborting on the stream's error.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_PENDINGFILE_H
#define TRAINMEM_ANALYZER_PENDINGFILE_H

#include "llvm/ADT/Twine.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <optional>
#include <string>

namespace trainmem {

/// A temporary file beside FinalPath (mode 0666 less the umask), discarded unless
/// committed. Errors read "cannot write 'PATH': ...".
class PendingFile {
public:
  static llvm::Expected<PendingFile> create(const llvm::Twine &FinalPath);
  PendingFile(PendingFile &&Other) noexcept;
  PendingFile &operator=(PendingFile &&) = delete;
  ~PendingFile();

  /// A buffered stream onto the file, made at the first call.
  llvm::raw_fd_ostream &os();
  /// The file's descriptor (for resizing it; not to be mixed with os()).
  int fd() const { return File->FD; }
  const std::string &path() const { return FinalPath; }
  /// Flushes the stream and reports whatever it failed to write; the file stays pending.
  llvm::Error finishWriting();
  /// finishWriting, then the rename over the final path. Afterwards the object owns
  /// nothing, whatever the outcome.
  llvm::Error commit();

private:
  PendingFile() = default;
  std::optional<llvm::sys::fs::TempFile> File;
  std::unique_ptr<llvm::raw_fd_ostream> Stream;
  std::string FinalPath;
};

} // namespace trainmem

#endif
