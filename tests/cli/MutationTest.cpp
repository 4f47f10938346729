//===- MutationTest.cpp - damaged inputs never crash or hang trainmem -------===//
//
// Files people download arrive truncated or corrupted. Each input here (an ONNX model,
// a Hugging Face config, and one file of every trace format) is damaged three ways with a
// fixed seed — truncated, bit-flipped, a span zeroed — and run through `trainmem
// analyze`: it must exit 0, or 1 with a message on stderr, within the time limit; never a
// crash, a hang or a silent failure.
//
//===----------------------------------------------------------------------------===//
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include <elf.h>

namespace {

struct Input {
  const char *Path; ///< relative to the source root, or to the fixtures folder
  bool HfConfig;
  bool Fixture = false;
};

constexpr Input Inputs[] = {
    {"tests/data/traces/kineto_small.json", false},
    {"tests/data/traces/kineto_small.json.gz", false},
    {"tests/data/traces/timeline.raw.json", false},
    {"tests/data/traces/cuda_snapshot_two_devices.pickle", false},
    {"tests/data/traces/cuda_snapshot_two_devices.json", false},
    {"tests/data/traces/nsys_memory.sqlite", false},
    {"samples/hf/gpt2/config.json", true},
    {"gt/onnx/gpt2_tiny.onnx", false, true},
    {"gt/onnx/resnet18_tiny.onnx", false, true},
};
constexpr int MutantsPerInput = 24;

std::string mutate(const std::string &Data, int Kind, std::mt19937 &Rng) {
  std::string D = Data;
  auto Pick = [&](size_t N) { return N ? std::uniform_int_distribution<size_t>(0, N - 1)(Rng) : 0; };
  switch (Kind) {
  case 0: // truncated
    D.resize(Pick(D.size()));
    break;
  case 1: // bit flips
    for (int I = 0, N = 1 + static_cast<int>(Pick(20)); I < N && !D.empty(); ++I)
      D[Pick(D.size())] ^= static_cast<char>(1 << Pick(8));
    break;
  default: { // a zeroed span
    size_t At = Pick(D.size()), Len = 1 + Pick(64);
    for (size_t I = At; I < std::min(D.size(), At + Len); ++I)
      D[I] = 0;
  }
  }
  return D;
}

TEST(Mutation, DamagedInputsExitCleanly) {
  std::mt19937 Rng(20261129);
  int Ran = 0;
  for (const Input &In : Inputs) {
    std::string Source =
        std::string(In.Fixture ? TRAINMEM_FIXTURES_DIR : TRAINMEM_SOURCE_DIR) + "/" + In.Path;
    auto Buffer = llvm::MemoryBuffer::getFile(Source, /*IsText=*/false);
    if (!Buffer)
      continue; // fixtures absent: the other inputs still run
    std::string Name = llvm::sys::path::filename(In.Path).str();
    for (int M = 0; M < MutantsPerInput; ++M) {
      llvm::SmallString<128> Dir, Path, Err;
      ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-mutant", Dir));
      Path = Dir;
      llvm::sys::path::append(Path, Name); // keep the name: formats are detected by content
      {
        std::error_code EC;
        llvm::raw_fd_ostream OS(Path, EC);
        ASSERT_FALSE(EC);
        OS << mutate((*Buffer)->getBuffer().str(), M % 3, Rng);
      }
      Err = Dir;
      llvm::sys::path::append(Err, "stderr");
      std::vector<llvm::StringRef> Argv{"trainmem", "analyze"};
      std::string HfArg = "--hf-config=" + Path.str().str();
      if (In.HfConfig)
        Argv.insert(Argv.end(), {HfArg, "--dim", "batch=1", "--dim", "seq=16"});
      else
        Argv.insert(Argv.end(), {Path, "--default-dim=2"});
      Argv.insert(Argv.end(), {"--format=json", "-o", "/dev/null"});
      std::optional<llvm::StringRef> Redirects[] = {std::nullopt, llvm::StringRef("/dev/null"),
                                                    llvm::StringRef(Err)};
      std::string Why;
      bool Failed = false;
      int Rc = llvm::sys::ExecuteAndWait(TRAINMEM_BINARY, Argv, std::nullopt, Redirects,
                                         /*SecondsToWait=*/30, 0, &Why, &Failed);
      auto Message = llvm::MemoryBuffer::getFile(Err);
      std::string Stderr = Message ? (*Message)->getBuffer().str() : "";
      SCOPED_TRACE(Name + " mutant " + std::to_string(M) + " (kind " + std::to_string(M % 3) +
                   ")");
      EXPECT_FALSE(Failed) << Why;
      EXPECT_TRUE(Rc == 0 || Rc == 1) << "exit " << Rc << " (" << Why << ")\n" << Stderr;
      if (Rc == 1) {
        EXPECT_NE(Stderr.find("error"), std::string::npos) << Stderr;
      }
      if (!HasFailure())
        llvm::sys::fs::remove_directories(Dir);
      ++Ran;
    }
  }
  std::printf("%d damaged inputs ran cleanly\n", Ran);
  EXPECT_GE(Ran, MutantsPerInput * 7);
}

} // namespace

namespace {

int runQuiet(const std::vector<llvm::StringRef> &Argv) {
  std::optional<llvm::StringRef> Redirects[] = {std::nullopt, llvm::StringRef("/dev/null"),
                                                llvm::StringRef("/dev/null")};
  return llvm::sys::ExecuteAndWait(TRAINMEM_BINARY, Argv, std::nullopt, Redirects, 60);
}

std::string slurp(const llvm::Twine &Path) {
  auto B = llvm::MemoryBuffer::getFile(Path);
  return B ? (*B)->getBuffer().str() : "<missing>";
}

TEST(AtomicOutput, AFailedRunLeavesTheExistingOutputWhole) {
  llvm::SmallString<128> Dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-atomic", Dir));
  std::string Out = (Dir + "/report.json").str();
  {
    std::error_code EC;
    llvm::raw_fd_ostream OS(Out, EC);
    OS << "the previous report\n";
  }
  std::string Config = std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json";
  std::string Missing = (Dir + "/no-such-model.onnx").str();
  // An input error, and a failure of the output itself (a directory in its place).
  EXPECT_EQ(runQuiet({"trainmem", "analyze", Missing, "-o", Out}), 1);
  EXPECT_EQ(slurp(Out), "the previous report\n");
  EXPECT_EQ(runQuiet({"trainmem", "analyze", "--hf-config=" + Config, "--dim", "batch=1",
                      "--dim", "seq=8", "--dim", "nope=3", "-o", Out}),
            1);
  EXPECT_EQ(slurp(Out), "the previous report\n");
  // A good run replaces it whole, through a temporary file and a rename.
  EXPECT_EQ(runQuiet({"trainmem", "analyze", "--hf-config=" + Config, "--dim", "batch=1",
                      "--dim", "seq=8", "--format=json", "-o", Out}),
            0);
  std::string Written = slurp(Out);
  EXPECT_EQ(Written.rfind("{", 0), 0u);
  EXPECT_NE(Written.find("\"trainmem.report/1\""), std::string::npos);
  std::error_code EC;
  int Left = 0;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC))
    ++Left;
  EXPECT_EQ(Left, 1) << "a temporary file was left beside the output";
  // Read and written by its owner, read by others (umask 022 at most): not executable.
  auto Perms = llvm::sys::fs::getPermissions(Out);
  ASSERT_TRUE(bool(Perms));
  EXPECT_EQ(*Perms & llvm::sys::fs::all_exe, 0);
  llvm::sys::fs::remove_directories(Dir);
}

TEST(AtomicOutput, AWriteThatFailsLeavesTheExistingOutputWhole) {
  // The report cannot be written whole (a file size limit of one block, as a full disk
  // would cut it): an error naming the file and exit code 1, not SIGXFSZ's kill, and the
  // file that was there is left as it was, with no temporary file beside it. On stdout
  // the same: an error and exit code 1.
  llvm::SmallString<128> Dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-full", Dir));
  const std::string Out = (Dir + "/report.json").str(), Err = (Dir + "/stderr.txt").str();
  {
    std::error_code EC;
    llvm::raw_fd_ostream OS(Out, EC);
    OS << "the previous report\n";
  }
  const std::string Config =
      std::string(TRAINMEM_SOURCE_DIR) + "/samples/hf/tiny-llama/config.json";
  const std::string Stdout = (Dir + "/stdout.json").str();
  auto runLimited = [&](const std::string &Output) {
    // ulimit -f counts 512- or 1024-byte blocks: one is far below the report's size.
    std::optional<llvm::StringRef> Redirects[] = {std::nullopt, llvm::StringRef(Stdout),
                                                  llvm::StringRef(Err)};
    return llvm::sys::ExecuteAndWait(
        "/bin/sh",
        {"sh", "-c", "ulimit -f 1 && exec \"$0\" \"$@\"", TRAINMEM_BINARY, "analyze",
         "--hf-config=" + Config, "--dim", "batch=1", "--dim", "seq=8", "--format=json", "-o",
         Output},
        std::nullopt, Redirects, 60);
  };
  EXPECT_EQ(runLimited(Out), 1);
  EXPECT_EQ(slurp(Out), "the previous report\n");
  EXPECT_NE(slurp(Err).find("report.json': File too large"), std::string::npos) << slurp(Err);
  EXPECT_EQ(slurp(Err).find("Stack dump"), std::string::npos) << slurp(Err);
  std::error_code EC;
  int Left = 0;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC))
    ++Left;
  EXPECT_EQ(Left, 3) << "a temporary file was left beside the output"; // and the two logs
  EXPECT_EQ(runLimited("-"), 1);
  EXPECT_NE(slurp(Err).find("cannot write to stdout: File too large"), std::string::npos)
      << slurp(Err);
  llvm::sys::fs::remove_directories(Dir);
}

} // namespace

namespace {

TEST(Limits, DeeplyNestedJsonIsAnErrorNotAStackOverflow) {
  llvm::SmallString<128> Dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-deep", Dir));
  std::string Deep = std::string(200000, '[') + std::string(200000, ']');
  struct Case {
    const char *File;
    std::vector<std::string> Args;
  };
  std::string Root = (Dir + "/").str();
  const Case Cases[] = {
      {"config.json", {"analyze", "--hf-config=" + Root + "config.json"}},
      {"setup.json",
       {"analyze", "--hf-config=" + std::string(TRAINMEM_SOURCE_DIR) +
                       "/samples/hf/tiny-llama/config.json",
        "--setup=" + Root + "setup.json"}},
      {"a.json", {"diff", Root + "a.json", Root + "a.json"}},
      {"snapshot.json", {"analyze", Root + "snapshot.json"}},
  };
  for (const Case &C : Cases) {
    {
      std::error_code EC;
      llvm::raw_fd_ostream OS(Root + C.File, EC);
      OS << (llvm::StringRef(C.File) == "snapshot.json" ? "{\"segments\": " + Deep + "}" : Deep);
    }
    std::string Err = Root + "stderr";
    std::vector<llvm::StringRef> Argv{"trainmem"};
    for (const std::string &A : C.Args)
      Argv.push_back(A);
    std::optional<llvm::StringRef> Redirects[] = {std::nullopt, llvm::StringRef("/dev/null"),
                                                  llvm::StringRef(Err)};
    int Rc = llvm::sys::ExecuteAndWait(TRAINMEM_BINARY, Argv, std::nullopt, Redirects, 60);
    std::string Stderr = slurp(Err);
    EXPECT_EQ(Rc, 1) << C.File << ": " << Stderr;
    EXPECT_NE(Stderr.find("nested"), std::string::npos) << C.File << ": " << Stderr;
  }
  llvm::sys::fs::remove_directories(Dir);
}

} // namespace

namespace {

/// The shared libraries an ELF executable names (DT_NEEDED), read from its dynamic
/// section through the program headers, as the dynamic loader reads them; empty with
/// Why set where the file is not a 64-bit ELF this code can read.
std::vector<std::string> neededLibraries(const std::string &Data, std::string &Why) {
  std::vector<std::string> Names;
  auto Fits = [&](uint64_t Off, uint64_t Size) {
    return Off <= Data.size() && Size <= Data.size() - Off;
  };
  if (!Fits(0, sizeof(Elf64_Ehdr)) || Data.compare(0, SELFMAG, ELFMAG) != 0 ||
      Data[EI_CLASS] != ELFCLASS64) {
    Why = "not a 64-bit ELF file";
    return Names;
  }
  Elf64_Ehdr Eh;
  std::memcpy(&Eh, Data.data(), sizeof Eh);
  std::vector<Elf64_Phdr> Ph(Eh.e_phnum);
  if (Eh.e_phentsize != sizeof(Elf64_Phdr) || !Fits(Eh.e_phoff, Ph.size() * sizeof(Elf64_Phdr))) {
    Why = "program headers out of the file";
    return Names;
  }
  std::memcpy(Ph.data(), Data.data() + Eh.e_phoff, Ph.size() * sizeof(Elf64_Phdr));
  // An address of the loaded image, as an offset in the file.
  auto OffsetOf = [&](uint64_t Addr) -> std::optional<uint64_t> {
    for (const Elf64_Phdr &P : Ph)
      if (P.p_type == PT_LOAD && Addr >= P.p_vaddr && Addr - P.p_vaddr < P.p_filesz)
        return P.p_offset + (Addr - P.p_vaddr);
    return std::nullopt;
  };
  for (const Elf64_Phdr &P : Ph) {
    if (P.p_type != PT_DYNAMIC)
      continue;
    if (!Fits(P.p_offset, P.p_filesz)) {
      Why = "dynamic section out of the file";
      return Names;
    }
    std::vector<Elf64_Dyn> Dyn(P.p_filesz / sizeof(Elf64_Dyn));
    std::memcpy(Dyn.data(), Data.data() + P.p_offset, Dyn.size() * sizeof(Elf64_Dyn));
    std::optional<uint64_t> StrTab;
    for (const Elf64_Dyn &D : Dyn)
      if (D.d_tag == DT_STRTAB)
        StrTab = OffsetOf(D.d_un.d_ptr);
    if (!StrTab) {
      Why = "no string table for the dynamic section";
      return Names;
    }
    for (const Elf64_Dyn &D : Dyn) {
      if (D.d_tag == DT_NULL)
        break;
      if (D.d_tag == DT_NEEDED && *StrTab + D.d_un.d_val < Data.size())
        Names.emplace_back(Data.c_str() + *StrTab + D.d_un.d_val);
    }
  }
  return Names;
}

// The CUDA runtime is linked statically (cmake/Dependencies.cmake): a trainmem that named
// libcudart.so refused every command, an HF config's analysis too, where that file was
// gone (a CUDA toolkit removed or upgraded after the build). CUPTI is opened when a
// measurement starts, and the driver by the runtime at its first call.
TEST(Binary, NamesNoCudaLibraryItCannotStartWithout) {
  auto Buffer = llvm::MemoryBuffer::getFile(TRAINMEM_BINARY);
  ASSERT_TRUE(Buffer) << TRAINMEM_BINARY << ": " << Buffer.getError().message();
  std::string Why;
  std::vector<std::string> Needed = neededLibraries((*Buffer)->getBuffer().str(), Why);
  ASSERT_TRUE(Why.empty()) << TRAINMEM_BINARY << ": " << Why;
  // Every executable names the C library: an empty list means the reader failed.
  ASSERT_TRUE(std::find_if(Needed.begin(), Needed.end(), [](const std::string &N) {
                return llvm::StringRef(N).starts_with("libc.so");
              }) != Needed.end())
      << "libc.so not among the libraries read";
  for (const std::string &N : Needed)
    for (const char *Cuda : {"libcudart", "libcupti", "libcuda.", "libcublas"})
      EXPECT_FALSE(llvm::StringRef(N).starts_with(Cuda)) << TRAINMEM_BINARY << " needs " << N;
}

} // namespace
