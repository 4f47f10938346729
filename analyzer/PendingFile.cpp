//===- PendingFile.cpp - a file replaced only once written whole ------------===//
#include "analyzer/PendingFile.h"

namespace trainmem {

static llvm::Error cannotWrite(const std::string &Path, const llvm::Twine &What,
                               std::error_code EC) {
  return llvm::createStringError(EC, "cannot write '%s': %s", Path.c_str(),
                                 What.str().c_str());
}

llvm::Expected<PendingFile> PendingFile::create(const llvm::Twine &FinalPath) {
  PendingFile P;
  P.FinalPath = FinalPath.str();
  llvm::Expected<llvm::sys::fs::TempFile> Temp =
      llvm::sys::fs::TempFile::create(P.FinalPath + "-%%%%%%%%.tmp");
  if (!Temp) {
    const std::error_code EC = llvm::errorToErrorCode(Temp.takeError());
    return cannotWrite(P.FinalPath,
                       "cannot create a temporary file in its folder: " + EC.message(), EC);
  }
  P.File.emplace(std::move(*Temp));
  return P;
}

// A moved-from PendingFile owns nothing, so its destructor must not discard.
PendingFile::PendingFile(PendingFile &&Other) noexcept
    : File(std::move(Other.File)), Stream(std::move(Other.Stream)),
      FinalPath(std::move(Other.FinalPath)) {
  Other.File.reset();
}

PendingFile::~PendingFile() {
  if (Stream)
    Stream->clear_error(); // raw_fd_ostream aborts in its destructor on an unchecked error
  Stream.reset();
  if (File)
    llvm::consumeError(File->discard());
}

llvm::raw_fd_ostream &PendingFile::os() {
  if (!Stream)
    Stream = std::make_unique<llvm::raw_fd_ostream>(File->FD, /*shouldClose=*/false);
  return *Stream;
}

llvm::Error PendingFile::finishWriting() {
  if (!Stream)
    return llvm::Error::success();
  Stream->flush();
  if (!Stream->has_error())
    return llvm::Error::success();
  const std::error_code EC = Stream->error();
  Stream->clear_error();
  return cannotWrite(FinalPath, EC.message(), EC);
}

llvm::Error PendingFile::commit() {
  llvm::Error Written = finishWriting();
  Stream.reset();
  if (Written) {
    llvm::consumeError(File->discard());
    File.reset();
    return Written;
  }
  llvm::Error Kept = File->keep(FinalPath);
  File.reset();
  if (Kept) {
    const std::error_code EC = llvm::errorToErrorCode(std::move(Kept));
    return cannotWrite(FinalPath,
                       "cannot rename the temporary file into place: " + EC.message(), EC);
  }
  return llvm::Error::success();
}

} // namespace trainmem
