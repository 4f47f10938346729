//===- GoldenTest.cpp - `trainmem` output pinned by checked-in expectations ------===//
//
// Each case runs the built binary from the project root with fixed arguments and
// compares its exit code, stdout and stderr with tests/golden/NAME.out. On a mismatch
// the actual output is written beside the expectation as NAME.out.actual and a unified
// diff is printed. TRAINMEM_UPDATE_GOLDEN=1 rewrites the expectations (review the diff
// before committing it).
//
//===----------------------------------------------------------------------------===//
#include "support/Fixtures.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <unistd.h> // environ

using namespace trainmem::testing;

namespace {

struct GoldenCase {
  const char *Name;
  std::vector<std::string> Args;
  bool NeedsFixtures;
};

std::string readFile(const std::string &Path) {
  auto B = llvm::MemoryBuffer::getFile(Path, /*IsText=*/true);
  return B ? (*B)->getBuffer().str() : std::string();
}

// A debug build under AddressSanitizer runs `plan` on a 7B model some 30x slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr unsigned CommandSeconds = 1200;
#else
constexpr unsigned CommandSeconds = 120;
#endif

/// Runs trainmem from the source root; returns "exit code N\n--- stdout\n...--- stderr\n...".
/// Extra "NAME=VALUE" entries are added to the environment.
std::string runTrainmem(const std::vector<std::string> &Args,
                        const std::vector<std::string> &ExtraEnv = {}) {
  llvm::SmallString<128> Out, Err;
  llvm::sys::fs::createTemporaryFile("golden", "out", Out);
  llvm::sys::fs::createTemporaryFile("golden", "err", Err);
  // argv[0] is what usage messages print; keep it independent of the build folder.
  std::vector<llvm::StringRef> Argv{"trainmem"};
  for (const std::string &A : Args)
    Argv.push_back(A);
  std::optional<llvm::StringRef> Redirects[] = {std::nullopt, llvm::StringRef(Out),
                                                llvm::StringRef(Err)};
  // Relative paths in arguments and messages are relative to the project root.
  llvm::SmallString<256> Cwd;
  llvm::sys::fs::current_path(Cwd);
  llvm::sys::fs::set_current_path(TRAINMEM_SOURCE_DIR);
  std::string ErrMsg;
  std::optional<llvm::ArrayRef<llvm::StringRef>> Env;
  std::vector<std::string> EnvStrings;
  std::vector<llvm::StringRef> EnvRefs;
  if (!ExtraEnv.empty()) {
    // The extra entries replace inherited ones of the same name (CI sets GITHUB_SHA).
    auto Overridden = [&](llvm::StringRef Entry) {
      for (const std::string &X : ExtraEnv)
        if (Entry.split('=').first == llvm::StringRef(X).split('=').first)
          return true;
      return false;
    };
    for (char **E = environ; *E; ++E)
      if (!Overridden(*E))
        EnvStrings.push_back(*E);
    EnvStrings.insert(EnvStrings.end(), ExtraEnv.begin(), ExtraEnv.end());
    for (const std::string &E : EnvStrings)
      EnvRefs.push_back(E);
    Env = EnvRefs;
  }
  int Rc = llvm::sys::ExecuteAndWait(TRAINMEM_BINARY, Argv, Env, Redirects, CommandSeconds, 0,
                                     &ErrMsg);
  llvm::sys::fs::set_current_path(Cwd);
  std::string Result = "exit code " + std::to_string(Rc) + "\n--- stdout\n" +
                       readFile(std::string(Out)) + "--- stderr\n" + readFile(std::string(Err));
  llvm::sys::fs::remove(Out);
  llvm::sys::fs::remove(Err);
  return Result;
}

void writeFile(const std::string &Path, const std::string &Text) {
  std::error_code EC;
  llvm::raw_fd_ostream OS(Path, EC);
  OS << Text;
}

/// Test names already say which case runs; print the arguments, not the struct's bytes.
void PrintTo(const GoldenCase &C, std::ostream *OS) {
  *OS << "trainmem " << llvm::join(C.Args, " ");
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

/// Compares Actual with tests/golden/NAME.out (or rewrites it under
/// TRAINMEM_UPDATE_GOLDEN); Command names the run in the failure message.
void expectGolden(const std::string &Name, const std::string &Command,
                  const std::string &Actual) {
  std::string Expected = std::string(TRAINMEM_SOURCE_DIR) + "/tests/golden/" + Name + ".out";
  if (std::getenv("TRAINMEM_UPDATE_GOLDEN")) {
    writeFile(Expected, Actual);
    GTEST_SKIP() << "updated " << Expected;
  }
  std::string Want = readFile(Expected);
  if (Want == Actual) {
    llvm::sys::fs::remove(Expected + ".actual");
    SUCCEED();
    return;
  }
  const std::string ActualPath = Expected + ".actual"; // outlives the diff's arguments
  writeFile(ActualPath, Actual);
  std::string Diff;
  if (auto DiffTool = llvm::sys::findProgramByName("diff")) {
    llvm::SmallString<128> DiffOut;
    llvm::sys::fs::createTemporaryFile("golden", "diff", DiffOut);
    std::optional<llvm::StringRef> R[] = {std::nullopt, llvm::StringRef(DiffOut), std::nullopt};
    llvm::StringRef DiffArgs[] = {*DiffTool, "-u", Expected, ActualPath};
    llvm::sys::ExecuteAndWait(*DiffTool, DiffArgs, std::nullopt, R);
    Diff = readFile(std::string(DiffOut));
    llvm::sys::fs::remove(DiffOut);
  }
  ADD_FAILURE() << "output of `" << Command << "` differs from "
                << Expected << " (actual written beside it; rerun with "
                << "TRAINMEM_UPDATE_GOLDEN=1 to accept):\n"
                << (Diff.empty() ? Actual : Diff);
}

TEST_P(Golden, OutputMatchesExpectation) {
  const GoldenCase &C = GetParam();
  if (C.NeedsFixtures)
    TRAINMEM_REQUIRE_FIXTURES("gt/onnx");
  expectGolden(C.Name, "trainmem " + llvm::join(C.Args, " "), runTrainmem(C.Args));
}

/// Runs recorded with --db under fixed commits and times, then listed by `history`.
TEST(GoldenHistory, RecordedRunsAndThePeakPerCommit) {
  llvm::SmallString<128> Dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-history", Dir));
  const std::string Db = (Dir + "/history.db").str();
  auto Record = [&](const char *Commit, const char *Seq, const char *Command, long Time) {
    std::string Out = runTrainmem(
        {Command, "--hf-config=samples/hf/tiny-llama/config.json", "--dim", "batch=2", "--dim",
         Seq, "--format=json", "-o", "/dev/null", "--db=" + Db},
        {std::string("GITHUB_SHA=") + Commit, "GITHUB_REF_NAME=main",
         "SOURCE_DATE_EPOCH=" + std::to_string(Time)});
    EXPECT_EQ(Out.rfind("exit code 0", 0), 0u) << Out;
  };
  Record("1111111111aaaa", "seq=64", "analyze", 1764300000);
  Record("1111111111aaaa", "seq=64", "report", 1764300060);
  Record("2222222222bbbb", "seq=128", "analyze", 1764303600);
  auto Listed = [&](std::vector<std::string> Args) {
    Args.insert(Args.begin(), {"history", "--db=" + Db});
    std::string Out = runTrainmem(Args);
    // The database lives in a temporary folder; its name is not part of the expectation.
    for (size_t At; (At = Out.find(Db)) != std::string::npos;)
      Out.replace(At, Db.size(), "HISTORY.db");
    return Out;
  };
  expectGolden("history_text", "trainmem history", Listed({}));
  expectGolden("history_json", "trainmem history --format=json",
               Listed({"--format=json", "--model=tiny-llama"}));
  llvm::sys::fs::remove_directories(Dir);
}

TEST(Validate, AModelTooLargeForThisMachineIsRefusedBeforeItRuns) {
  // validate runs the real step with random weights: gemma-2b at seq 8 filled a 23 GiB
  // machine until the OOM killer ended it (exit 137). LLaMA-2-70B's ~1 TiB step fits no
  // build machine; the command must say so, not start. (The available bytes vary.)
  std::string Out = runTrainmem({"validate", "--hf-config=samples/hf/llama-2-70b/config.json",
                                 "--dim", "batch=1", "--dim", "seq=8"});
  EXPECT_EQ(Out.rfind("exit code 1", 0), 0u) << Out;
  EXPECT_NE(Out.find("trainmem: error: the step would need about "), std::string::npos) << Out;
  EXPECT_NE(Out.find("available: validate runs the real step"), std::string::npos) << Out;
}

const std::string GT = "../shared/fixtures/gt/onnx/";

const GoldenCase Cases[] = {
    {"version", {"--version"}, false},
    {"help", {"--help"}, false},
    {"analyze_help", {"analyze", "--help"}, false},
    {"analyze_gpt2_tiny_text", {"analyze", GT + "gpt2_tiny.onnx", "--dim", "batch=4", "--dim", "sequence=32"}, true},
    {"analyze_gpt2_tiny_json", {"analyze", GT + "gpt2_tiny.onnx", "--input=input_ids=4x32", "--format=json"}, true},
    {"analyze_llama_tiny_bf16_frozen", {"analyze", GT + "llama_tiny.onnx", "--dim=batch=2", "--dim=sequence=16", "--precision=bf16", "--freeze=^embed_tokens"}, true},
    {"analyze_resnet18_sgdm_json", {"analyze", GT + "resnet18_tiny.onnx", "--default-dim=4", "--optimizer=sgd-momentum", "--format=json"}, true},
    {"analyze_bert_tiny_tie_no", {"analyze", GT + "bert_tiny.onnx", "--default-dim=2", "--tie=no", "--optimizer=adamw-8bit"}, true},
    {"analyze_hf_llama2_7b", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=4", "--dim", "seq=4096"}, false},
    {"analyze_hf_gpt2_json", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--precision=mixed-bf16", "--format=json"}, false},
    {"analyze_hf_gpt2_fit_4090", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--gpu=rtx-4090"}, false},
    // A measured context in place of the estimate (CUDA 11.2 on a V100, every kernel
    // loaded at start); bad sizes are errors that name the option.
    {"analyze_hf_gpt2_cuda_context_v100", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=2", "--dim", "seq=512", "--gpu=v100-sxm2-16gb", "--cuda-context=1343MiB"}, false},
    {"error_cuda_context_not_a_size", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--gpu=v100-sxm2-16gb", "--cuda-context=1.3 gigs"}, false},
    {"analyze_gpt2_tiny_checkpoint_cpu", {"analyze", GT + "gpt2_tiny.onnx", "--input=input_ids=4x32", "--checkpoint=blocks", "--device=cpu"}, true},
    {"analyze_gpt2_tiny_lora", {"analyze", GT + "gpt2_tiny.onnx", "--input=input_ids=4x32", "--lora-rank=8", "--lora-alpha=16"}, true},
    {"analyze_hf_qwen3_moe_lora_h100", {"analyze", "--hf-config=samples/hf/qwen3-30b-a3b/config.json", "--dim", "batch=4", "--dim", "seq=2048", "--precision=bf16", "--lora-rank=16", "--lora-targets=all-linear", "--checkpoint=blocks", "--gpu=h100-sxm"}, false},
    {"analyze_hf_gpt_oss_lora_h100", {"analyze", "--hf-config=samples/hf/gpt-oss-20b/config.json", "--dim", "batch=4", "--dim", "seq=2048", "--precision=bf16", "--lora-rank=16", "--lora-targets=all-linear", "--checkpoint=blocks", "--gpu=h100-sxm"}, false},
    {"analyze_hf_tiny_mixtral_cpu", {"analyze", "--hf-config=tests/data/measured-hf/configs/mixtral-8x7b.json", "--dim", "batch=2", "--dim", "seq=256", "--device=cpu", "--checkpoint=blocks", "--precision=bf16"}, false},
    {"analyze_hf_llama2_7b_qlora", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=1", "--dim", "seq=512", "--qlora", "--lora-rank=64", "--lora-targets=all-linear", "--gpu=rtx-4090"}, false},
    {"analyze_hf_roberta_squad2_4090", {"analyze", "--hf-config=samples/hf/roberta-base-squad2/config.json", "--dim", "batch=32", "--dim", "seq=384", "--gpu=rtx-4090", "--precision=amp-bf16"}, false},
    {"analyze_hf_roberta_sentiment_lora_4090", {"analyze", "--hf-config=samples/hf/roberta-base-sentiment/config.json", "--dim", "batch=32", "--dim", "seq=256", "--gpu=rtx-4090", "--precision=amp-bf16", "--lora-rank=8", "--lora-targets=query,value"}, false},
    {"analyze_hf_roberta_cls_lora_cpu", {"analyze", "--hf-config=tests/data/measured-hf/configs/roberta-seq-cls.json", "--dim", "batch=2", "--dim", "seq=128", "--device=cpu", "--lora-rank=8", "--lora-targets=query,value"}, false},
    {"error_lora_modules_to_save_alone", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "seq=64", "--lora-modules-to-save=embed_tokens"}, false},
    {"error_lora_modules_to_save_no_match", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "seq=64", "--lora-rank=8", "--lora-modules-to-save=classifier"}, false},
    {"error_lora_targets", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "seq=64", "--lora-rank=8", "--lora-targets=c_attn"}, false},
    {"analyze_gpt2_tiny_sparse_last1", {"analyze", GT + "gpt2_tiny.onnx", "--input=input_ids=4x32", "--sparse-update=last:1", "--format=json"}, true},
    {"analyze_hf_llama2_7b_zero3", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=1", "--dim", "seq=2048", "--precision=mixed-bf16", "--zero=3", "--gpus=8", "--gpu=a100-sxm-40gb"}, false},
    {"error_offload_without_zero", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--offload=optimizer"}, false},
    {"analyze_hf_llama2_7b_galore8bit", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=1", "--dim", "seq=256", "--precision=bf16", "--optimizer=adamw-8bit", "--galore-rank=128", "--galore-per-layer", "--checkpoint=blocks", "--gpu=rtx-4090"}, false},
    {"plan_hf_llama2_7b_a100", {"plan", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=8", "--dim", "seq=2048", "--gpu=a100-sxm-80gb"}, false},
    {"plan_hf_gpt2_json_gpus2", {"plan", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=16", "--dim", "seq=1024", "--gpu=rtx-4090", "--gpus=2", "--format=json"}, false},
    {"plan_cnn_without_lora_targets_markdown", {"plan", "tests/data/measured/gt/onnx/mobilenetv2_tiny.onnx", "--dim", "batch=8", "--gpu=t4", "--format=markdown"}, false},
    {"plan_hf_qwen2_markdown", {"plan", "--hf-config=samples/hf/qwen2-0.5b/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--gpu=t4", "--format=markdown"}, false},
    {"analyze_hf_llama2_7b_checkpoint_budget", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=2", "--dim", "seq=2048", "--precision=bf16", "--checkpoint=budget:60GiB"}, false},
    {"error_checkpoint_budget_unreachable", {"analyze", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=2", "--dim", "seq=2048", "--precision=bf16", "--checkpoint=budget:20GiB"}, false},
    {"analyze_hf_gpt2_checkpoint_optimal", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--precision=amp-bf16", "--gpu=a100-sxm-80gb", "--checkpoint=optimal:5600MiB"}, false},
    {"analyze_hf_gpt2_checkpoint_per_block", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--precision=amp-bf16", "--gpu=a100-sxm-80gb", "--checkpoint=blocks:6-10+selective:0-5"}, false},
    {"error_checkpoint_optimal_unreachable", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--precision=amp-bf16", "--gpu=a100-sxm-80gb", "--checkpoint=optimal:4GiB"}, false},
    {"error_checkpoint_optimal_bad_size", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--checkpoint=optimal:4GB-ish"}, false},
    {"error_checkpoint_bad_block_list", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--checkpoint=blocks:3-1"}, false},
    {"analyze_hf_gpt2_sparse_budget", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--precision=amp-bf16", "--gpu=a100-sxm-80gb", "--sparse-update=budget:5GiB"}, false},
    {"analyze_hf_gpt2_sparse_layers", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--precision=amp-bf16", "--gpu=a100-sxm-80gb", "--sparse-update=weights:h\\.1[01]\\.mlp"}, false},
    {"error_sparse_budget_unreachable", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=4", "--dim", "seq=1024", "--precision=amp-bf16", "--gpu=a100-sxm-80gb", "--sparse-update=budget:2GiB"}, false},
    {"error_sparse_budget_bad_size", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--sparse-update=budget:lots"}, false},
    {"error_sparse_layers_no_match", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--sparse-update=layers:decoder\\.9"}, false},
    {"analyze_hf_gpt2_cut_ce", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--loss=cut-cross-entropy", "--format=json"}, false},
    {"analyze_hf_gpt2_zeroth_order", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--zeroth-order"}, false},
    {"analyze_hf_gpt2_use_cache_off", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--gpu=rtx-4090", "--use-cache=off"}, false},
    {"error_use_cache_bad_value", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--use-cache=maybe"}, false},
    // A padded batch of a grouped-query model on a GPU: the mask, SDPA's per-layer bias
    // and the repeated key/value heads; and the option refused for an ONNX export.
    {"analyze_hf_mistral_padded", {"analyze", "--hf-config=samples/hf/mistral-7b/config.json", "--dim", "batch=4", "--dim", "seq=2048", "--precision=bf16", "--gpu=h100-sxm-80gb", "--padded"}, false},
    {"error_padded_onnx", {"analyze", "tests/data/measured/gt/onnx/mobilenetv2_tiny.onnx", "--padded"}, false},
    {"plan_emit_deepspeed", {"plan", "--hf-config=samples/hf/llama-2-7b/config.json", "--dim", "batch=8", "--dim", "seq=2048", "--gpu=a100-sxm-40gb", "--gpus=8", "--emit=deepspeed", "-o", "/tmp/trainmem-golden-emit-deepspeed"}, false},
    {"error_emit_without_dir", {"plan", "--hf-config=samples/hf/gpt2/config.json", "--gpu=t4", "--emit=hf"}, false},
    {"report_markdown_gpu_budget", {"report", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--budget=gpu:rtx-4090:10%", "--format=markdown"}, false},
    {"report_junit_budget_exceeded", {"report", "--hf-config=samples/hf/gpt2/config.json", "--dim", "batch=8", "--dim", "seq=1024", "--budget=12GiB", "--budget-on=reserved", "--format=junit"}, false},
    {"report_html_tiny_llama", {"report", "--hf-config=samples/hf/tiny-llama/config.json", "--dim", "batch=2", "--dim", "seq=64", "--budget=8MiB", "--format=html"}, false},
    {"report_json_tiny_llama", {"report", "--hf-config=samples/hf/tiny-llama/config.json", "--dim", "batch=2", "--dim", "seq=64", "--budget=8MiB", "--format=json"}, false},
    {"report_text_budget_exceeded", {"report", "--hf-config=samples/hf/tiny-llama/config.json", "--dim", "batch=2", "--dim", "seq=64", "--budget=4MiB"}, false},
    {"error_report_bad_budget", {"report", "--hf-config=samples/hf/gpt2/config.json", "--budget=gpu:rtx-4090:150%"}, false},
    {"error_report_bad_format", {"report", "--hf-config=samples/hf/gpt2/config.json", "--format=pdf"}, false},
    {"error_history_bad_db", {"history", "--db=/nonexistent/dir/history.db"}, false},
    {"error_history_bad_format", {"history", "--db=/nonexistent/dir/history.db", "--format=xml"}, false},
    {"error_analyze_bad_db", {"analyze", "--hf-config=samples/hf/tiny-llama/config.json", "--dim", "batch=1", "--dim", "seq=16", "--format=json", "-o", "/dev/null", "--db=/nonexistent/dir/history.db"}, false},
    {"diff_text", {"diff", "tests/data/reports/tiny_llama_b2_s64.json", "tests/data/reports/tiny_llama_b2_s128_lora.json", "--top=5"}, false},
    {"diff_markdown_gate_fails", {"diff", "tests/data/reports/tiny_llama_b2_s64.json", "tests/data/reports/tiny_llama_b2_s128_lora.json", "--max-increase=5%", "--format=markdown", "--top=3"}, false},
    {"diff_json_gate_passes", {"diff", "tests/data/reports/tiny_llama_b2_s64.json", "tests/data/reports/tiny_llama_b2_s128_lora.json", "--max-increase=1MiB", "--format=json", "--top=2"}, false},
    {"error_diff_one_file", {"diff", "tests/data/reports/tiny_llama_b2_s64.json"}, false},
    {"error_diff_not_a_report", {"diff", "tests/data/reports/tiny_llama_b2_s64.json", "samples/hf/gpt2/config.json"}, false},
    {"error_diff_bad_limit", {"diff", "tests/data/reports/tiny_llama_b2_s64.json", "tests/data/reports/tiny_llama_b2_s64.json", "--max-increase=lots"}, false},
    {"diff_help", {"diff", "--help"}, false},
    {"error_plan_without_gpu", {"plan", "--hf-config=samples/hf/gpt2/config.json"}, false},
    {"error_unknown_gpu", {"analyze", "--hf-config=samples/hf/gpt2/config.json", "--gpu=h100"}, false},
    {"error_unbound_dims", {"analyze", GT + "gpt2_tiny.onnx"}, true},
    {"error_unknown_dim", {"analyze", GT + "gpt2_tiny.onnx", "--dim", "batch=4", "--dim", "sequence=32", "--dim", "seqlen=8"}, true},
    {"error_not_onnx", {"analyze", "README.md"}, false},
    {"error_missing_file", {"analyze", "no/such/model.onnx"}, false},
    {"error_bad_optimizer", {"analyze", "no/such/model.onnx", "--optimizer=rmsprop"}, false},
    {"error_unknown_option", {"analyze", "--frobnicate"}, false},
    {"error_no_model", {"analyze"}, false},
    {"gpus_list", {"gpus"}, false},
    {"gpus_help", {"gpus", "--help"}, false},
    {"gpus_h100_sxm_json", {"gpus", "h100-sxm-80gb", "--format=json"}, false},
    {"gpus_detail_by_nvidia_smi_name", {"gpus", "NVIDIA A100-SXM4-40GB"}, false},
    {"gpus_error_unknown", {"gpus", "rtx-9090"}, false},
    {"gpus_error_ambiguous", {"gpus", "h100"}, false},
    {"gpus_error_newer_catalog", {"gpus", "--catalog=tests/golden/data/gpus-newer-schema.json"}, false},
    {"trace_kineto_small_text", {"analyze", "tests/data/traces/kineto_small.json.gz"}, false},
    {"trace_timeline_json", {"analyze", "tests/data/traces/timeline.raw.json", "--format=json"}, false},
    {"trace_nsys_text", {"analyze", "tests/data/traces/nsys_memory.sqlite", "--trace-device=cuda:1"}, false},
    {"trace_resnet50_kineto_text", {"analyze", "../shared/fixtures/traces/resnet50_num_workers_4.worker0.1623212756351.pt.trace.json.gz"}, true},
    {"trace_no_memory_events", {"analyze", "../shared/fixtures/traces/tests__data__cpu_only__rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz"}, true},
    {"compare_gpt2_tiny_text", {"compare", GT + "gpt2_tiny.onnx", "../shared/fixtures/gt/traces/gpt2_tiny__plain__adamw__b4.trace.json.gz", "--input=input_ids=4x32", "--trace-window=^phase:.*#2", "--max-error=1"}, true},
    {"compare_report_markdown_gate_fails", {"compare", "tests/data/reports/gpt2_tiny_b4_cpu.json", "../shared/fixtures/gt/traces/gpt2_tiny__plain__adamw__b4.trace.json.gz", "--max-error=5", "--format=markdown"}, true},
    {"compare_help", {"compare", "--help"}, false},
    {"validate_help", {"validate", "--help"}, false},
    {"validate_gpt2_tiny_lora_text", {"validate", GT + "gpt2_tiny.onnx", "--input=input_ids=4x32", "--lora-rank=8", "--lora-alpha=16"}, true},
    {"validate_llama_tiny_checkpoint_json", {"validate", GT + "llama_tiny.onnx", "--input=input_ids=4x32", "--checkpoint=blocks", "--format=json", "--max-error=2"}, true},
    {"error_validate_bf16", {"validate", GT + "gpt2_tiny.onnx", "--input=input_ids=4x32", "--precision=bf16"}, true},
    {"error_validate_bad_device", {"validate", GT + "gpt2_tiny.onnx", "--device=tpu"}, true},
    {"error_validate_conv", {"validate", GT + "resnet18_tiny.onnx", "--dim", "batch=2"}, true},
    {"report_trace_markdown_gpu_budget", {"report", "../shared/fixtures/traces/resnet50_num_workers_4.worker0.1623212756351.pt.trace.json.gz", "--budget=gpu:v100-sxm2-16gb", "--format=markdown"}, true},
    {"report_trace_budget_exceeded", {"report", "tests/data/traces/kineto_small.json.gz", "--budget=100MiB"}, false},
    {"error_report_trace_with_db", {"report", "tests/data/traces/kineto_small.json", "--db=/tmp/never-created.db"}, false},
    {"error_compare_one_argument", {"compare", "tests/data/traces/kineto_small.json"}, false},
    {"error_compare_no_memory_events", {"compare", "tests/data/reports/gpt2_tiny_b4_cpu.json", "tests/data/traces/nsys_no_memory.sqlite"}, false},
    {"error_trace_device_missing", {"analyze", "tests/data/traces/kineto_small.json", "--trace-device=cuda:3"}, false},
    {"error_bad_trainable_name", {"analyze", GT + "gpt2_tiny.onnx", "--default-dim=2", "--trainable-file=tests/golden/data/not-a-parameter.txt"}, true},
};

INSTANTIATE_TEST_SUITE_P(Cli, Golden, ::testing::ValuesIn(Cases),
                         [](const ::testing::TestParamInfo<GoldenCase> &I) {
                           return std::string(I.param.Name);
                         });

} // namespace
