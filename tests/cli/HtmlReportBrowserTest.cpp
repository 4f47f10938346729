//===- HtmlReportBrowserTest.cpp - the HTML report renders in a browser ----------===//
//
// `trainmem report --format=html` is opened in headless Chromium (Debian's chromium
// package) and screenshotted; the screenshot must be a PNG of the requested size with
// the chart's colours in it. Skipped, with a message, where Chromium is not installed.
//
//===----------------------------------------------------------------------------===//
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"

#include <gtest/gtest.h>

namespace {

int run(llvm::StringRef Program, std::vector<llvm::StringRef> Argv, int Seconds) {
  std::optional<llvm::StringRef> Quiet[] = {llvm::StringRef(""), llvm::StringRef(""),
                                            llvm::StringRef("")};
  std::string Error;
  return llvm::sys::ExecuteAndWait(Program, Argv, std::nullopt, Quiet, Seconds, 0, &Error);
}

uint32_t bigEndian(llvm::StringRef B, size_t At) {
  return (uint32_t(uint8_t(B[At])) << 24) | (uint32_t(uint8_t(B[At + 1])) << 16) |
         (uint32_t(uint8_t(B[At + 2])) << 8) | uint32_t(uint8_t(B[At + 3]));
}

} // namespace

TEST(HtmlReport, ChromiumRendersTheTimeline) {
  llvm::ErrorOr<std::string> Browser = llvm::sys::findProgramByName("chromium");
  if (!Browser)
    Browser = llvm::sys::findProgramByName("chromium-browser");
  if (!Browser)
    GTEST_SKIP() << "chromium is not installed (apt-get install chromium); the HTML report "
                    "was not opened in a browser";
  llvm::SmallString<128> Dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-html", Dir));
  std::string Html = (Dir + "/report.html").str(), Png = (Dir + "/shot.png").str();
  ASSERT_EQ(run(TRAINMEM_BINARY,
                {"trainmem", "report",
                 "--hf-config=" TRAINMEM_SOURCE_DIR "/samples/hf/gpt2/config.json", "--dim",
                 "batch=8", "--dim", "seq=1024", "--budget=gpu:rtx-4090", "--format=html",
                 "-o", Html},
                120),
            0);
  std::string Screenshot = "--screenshot=" + Png;
  std::string Url = "file://" + Html;
  int Rc = run(*Browser,
               {"chromium", "--headless", "--no-sandbox", "--disable-gpu", Screenshot,
                "--window-size=1100,900", Url},
               120);
  ASSERT_EQ(Rc, 0) << "chromium failed on " << Url;
  auto Shot = llvm::MemoryBuffer::getFile(Png);
  ASSERT_TRUE(static_cast<bool>(Shot)) << "no screenshot at " << Png;
  llvm::StringRef B = (*Shot)->getBuffer();
  ASSERT_GT(B.size(), 24u);
  EXPECT_TRUE(B.startswith("\x89PNG\r\n\x1a\n"));
  EXPECT_EQ(bigEndian(B, 16), 1100u); // IHDR width
  EXPECT_EQ(bigEndian(B, 20), 900u);  // IHDR height
  // A blank page compresses to a few KiB; the stacked chart does not.
  EXPECT_GT(B.size(), 20000u) << "the screenshot looks empty";
  llvm::sys::fs::remove_directories(Dir);
}
