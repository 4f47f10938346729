//===- FuzzJsonReaders.cpp - setup JSON and report JSON readers -------------===//
//
// The first byte picks the reader: --setup's JSON object, diff's report reader, or
// compare's report reader.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ReportDiff.h"
#include "analyzer/TraceCompare.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/JSON.h"

using namespace trainmem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *Data, size_t Size) {
  if (Size < 1)
    return 0;
  llvm::StringRef Text(reinterpret_cast<const char *>(Data + 1), Size - 1);
  switch (Data[0] % 3) {
  case 0: {
    auto J = llvm::json::parse(Text);
    if (!J) {
      llvm::consumeError(J.takeError());
      break;
    }
    if (const llvm::json::Object *O = J->getAsObject()) {
      TrainingSetup Setup;
      llvm::consumeError(applySetupJson(*O, Setup, "fuzz"));
    }
    break;
  }
  case 1: {
    auto R = readReportFigures(Text, "fuzz");
    if (!R)
      llvm::consumeError(R.takeError());
    break;
  }
  default: {
    auto R = readReportJson(Text, "fuzz");
    if (!R)
      llvm::consumeError(R.takeError());
  }
  }
  return 0;
}
