//===- StepOptions.cpp - the options every step-modelling command shares --------===//
#include "cli/StepOptions.h"
#include "analyzer/SafeJson.h"
#include "analyzer/Units.h"

#include "llvm/Support/MemoryBuffer.h"

#include <set>

namespace cl = llvm::cl;

namespace trainmem::cli {

cl::SubCommand &analyzeCommand() {
  static cl::SubCommand Cmd("analyze",
                            "Predict the memory of one training step: parameters, gradients, "
                            "optimizer states, inputs (and, with the simulator, activations "
                            "and the peak)");
  return Cmd;
}

cl::SubCommand &planCommand() {
  static cl::SubCommand Cmd("plan",
                            "Search strategies (precision, 8-bit optimizers, checkpointing, LoRA, "
                            "QLoRA, GaLore, ZeRO/FSDP, micro-batch) for a target GPU and rank the "
                            "plans that fit");
  return Cmd;
}

cl::SubCommand &reportCommand() {
  static cl::SubCommand Cmd("report",
                            "The memory report as a CI document (text, json, markdown for a "
                            "pull-request comment, junit, or a self-contained html page with "
                            "the timeline), with --budget as a gate (exit 2 when exceeded)");
  return Cmd;
}

cl::SubCommand &compareCommand() {
  static cl::SubCommand Cmd("compare",
                            "Line a prediction up with a measured run: PREDICTION (a report "
                            "JSON, or a model with setup options) against TRACE; the error of "
                            "the peak, of each category both know and of each phase; exit 2 "
                            "past --max-error");
  return Cmd;
}

cl::SubCommand &validateCommand() {
  static cl::SubCommand Cmd("validate",
                            "Run the model's real training step (random weights) on the "
                            "reference kernels and measure it beside the prediction: per "
                            "category and peak, predicted against measured, with the error");
  return Cmd;
}

cl::SubCommand &exportOnnxCommand() {
  static cl::SubCommand Cmd("export-onnx",
                            "Write the model's graph as a weightless ONNX file (shapes and "
                            "external-data references, no payload) that the ONNX checker "
                            "and Netron open");
  return Cmd;
}

namespace {

cl::OptionCategory ModelCategory("Model options");
cl::OptionCategory SetupCategory("Training setup options");
cl::OptionCategory OutputCategory("Output options");

// Attaches an option to every subcommand that models a step.
struct Subs {
  cl::sub A{analyzeCommand()};
  cl::sub E{exportOnnxCommand()};
  cl::sub P{planCommand()};
  cl::sub R{reportCommand()};
  cl::sub C{compareCommand()};
  cl::sub V{validateCommand()};
};
Subs S;

cl::opt<std::string> ModelPath(cl::Positional, cl::desc("<model.onnx>"), S.A, S.V, S.R, S.E, S.P,
                               cl::cat(ModelCategory));
cl::opt<std::string> HfConfig("hf-config",
                              cl::desc("Build the model from a Hugging Face config.json "
                                       "(llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, gemma, gemma2, gemma3_text, phi3, olmo2, olmoe, gpt_oss, deepseek_v2, deepseek_v3, granite, smollm3, starcoder2, stablelm, phi, opt, gptj, gpt2, gpt_neox, bert, roberta, xlm-roberta, camembert, distilbert; the head from architectures: causal or masked LM, base model, sequence or token classification, question answering, multiple choice)"),
                              cl::value_desc("file"), S.A, S.V, S.C, S.R, S.E, S.P, cl::cat(ModelCategory));
cl::list<std::string> DimBindings("dim",
                                  cl::desc("Bind a symbolic dimension, e.g. --dim batch=8 "
                                           "(repeatable)"),
                                  cl::value_desc("name=value"), S.A, S.V, S.C, S.R, S.E, S.P, cl::cat(ModelCategory));
cl::list<std::string> InputShapes("input",
                                  cl::desc("Set an input's whole shape, overriding static dims, "
                                           "e.g. --input input_ids=8x512 (repeatable)"),
                                  cl::value_desc("name=D0xD1x..."), S.A, S.V, S.C, S.R, S.E, S.P,
                                  cl::cat(ModelCategory));
cl::opt<unsigned> DefaultDim("default-dim",
                             cl::desc("Bind every symbolic dim that --dim and --input left "
                                      "unbound to N (for exploring an unfamiliar model)"),
                             cl::value_desc("N"), S.A, S.V, S.C, S.R, S.E, S.P, cl::cat(ModelCategory));
cl::opt<unsigned> MicroBatch("micro-batch",
                             cl::desc("Set dim 0 of every batch input to N (one micro-batch)"),
                             cl::value_desc("N"), S.A, S.V, S.C, S.R, S.E, S.P, cl::cat(ModelCategory));

cl::opt<bool> Padded("padded",
                     cl::desc("The batches are padded to their longest sequence (an "
                              "attention_mask with zeros; Hugging Face configs). transformers "
                              "then builds a [batch, 1, seq, seq] attention mask that it skips "
                              "for unpadded batches; SDPA turns it into a float bias in every "
                              "layer and keeps it for the backward, and grouped key/value heads "
                              "are repeated. Default: unpadded (every sequence of the batch as long as the rest, as with text concatenated into blocks)"),
                     S.A, S.V, S.C, S.R, S.E, S.P, cl::cat(ModelCategory));

cl::opt<std::string> SetupFile("setup",
                               cl::desc("Read the training setup from a JSON object (the keys "
                                        "a report echoes under 'setup'); options given on the "
                                        "command line win"),
                               cl::value_desc("file"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> PrecisionOpt("precision",
                                  cl::desc("fp32 | amp-bf16 | amp-fp16 | bf16 | mixed-bf16 | "
                                           "mixed-fp16 (default fp32)"),
                                  cl::init("fp32"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> AutocastOpt("autocast-policy",
                                 cl::desc("Whose autocast op lists amp-* follows: cuda | cpu "
                                          "(default: the device's)"),
                                 cl::init("auto"), S.A, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> DeviceOpt("device",
                               cl::desc("Where the step runs: auto | cuda | cpu (default auto: "
                                        "cuda when a GPU is targeted (--gpu, plan, a gpu: "
                                        "budget), else cpu). Kernels differ in saved masks and "
                                        "scratch; --autocast-policy defaults to the device"),
                               cl::init("auto"), S.A, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> TorchOpt("torch",
                              cl::desc("The PyTorch release modelled where releases differ "
                                       "(foreach Adam keeps two lists of temporaries in 1.13, "
                                       "one in 2.x): auto | 1.13 | 2 (default auto: 1.13 on "
                                       "the CPU, as the measured CPU cases; 2 on CUDA)"),
                              cl::init("auto"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> AttentionOpt("attention",
                                  cl::desc("auto | eager | sdpa (default auto: sdpa for Hugging "
                                           "Face configs, as transformers runs them; the "
                                           "exported ops for ONNX files)"),
                                  cl::init("auto"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> UseCacheOpt("use-cache",
                                 cl::desc("Whether a Hugging Face decoder's training forward fills "
                                          "its key/value cache: auto | on | off (default auto: "
                                          "the config's use_cache, true unless set; off models "
                                          "a script that passes use_cache=False, which saves "
                                          "the cache's copies of every layer's keys and values; "
                                          "checkpointed layers never fill it)"),
                                 cl::init("auto"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> OptimizerOpt("optimizer",
                                  cl::desc("adamw | adam | sgd | sgd-momentum | adafactor | "
                                           "adamw-8bit | paged-adamw-8bit | lion | adamw-fp8 "
                                           "(default adamw)"),
                                  cl::init("adamw"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> ImplOpt("optimizer-impl",
                             cl::desc("PyTorch's Adam implementation: for-loop | foreach | fused "
                                      "(default for-loop)"),
                             cl::init("for-loop"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> LossOpt("loss",
                             cl::desc("auto | cross-entropy | cut-cross-entropy | mse | none "
                                      "(default auto: cross-entropy over logits-shaped outputs; "
                                      "cut-cross-entropy never materialises the logits)"),
                             cl::init("auto"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> TrainableFile("trainable-file",
                                   cl::desc("Only the parameters named in FILE train (ONNX "
                                            "initializer names, one a line)"),
                                   cl::value_desc("file"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> TrainRegex("train",
                                cl::desc("Only parameters whose name or layer matches REGEX train"),
                                cl::value_desc("regex"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> FreezeRegex("freeze",
                                 cl::desc("Parameters whose name or layer matches REGEX are frozen"),
                                 cl::value_desc("regex"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> TieOpt("tie",
                            cl::desc("Tied embedding/LM head: auto (compare payloads) | yes | no "
                                     "(default auto)"),
                            cl::init("auto"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<bool> KeepGrads("keep-grads",
                        cl::desc("Gradients are zeroed, not set to None, between steps"), S.A, S.V, S.C, S.R, S.P,
                        cl::cat(SetupCategory));
cl::opt<std::string> CheckpointOpt("checkpoint",
                                   cl::desc("Activation checkpointing: none | blocks | every:K | "
                                            "first:K | selective | blocks:LIST[+selective:LIST] "
                                            "(block indices from 0, e.g. blocks:0-3,7) | "
                                            "budget:SIZE (fewest first blocks that fit) | "
                                            "optimal:SIZE (least recompute FLOPs that fit: "
                                            "keep, selective or whole per block) (default none)"),
                                   cl::init("none"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<unsigned> GradAccum("grad-accum",
                            cl::desc("Accumulate K micro-batches per optimizer step (default 1)"),
                            cl::value_desc("K"), cl::init(1), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<double> DropoutOpt("dropout",
                           cl::desc("Training-time dropout probability where the exported graph "
                                    "lost it"),
                           cl::value_desc("P"), S.A, S.V, S.C, S.R, S.P, cl::cat(SetupCategory));

cl::opt<std::string> GpuOpt("gpu",
                            cl::desc("Target GPU from the catalogue ('trainmem gpus' lists it): "
                                     "the report says whether the step fits"),
                            cl::value_desc("name"), S.A, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::opt<std::string> CudaContextOpt(
    "cuda-context",
    cl::desc("Device memory the process holds outside PyTorch's caching allocator (CUDA "
             "context and loaded kernels), as measured on your machine, e.g. nvidia-smi "
             "after torch.ones(1, device='cuda'): 1343MiB; added to peak_reserved instead "
             "of the published-figure estimate (~400 MiB, CUDA >= 11.7 with lazy loading)"),
    cl::value_desc("size"), S.A, S.C, S.R, S.P, cl::cat(SetupCategory));
cl::OptionCategory StrategyCategory("Strategy options");
cl::opt<unsigned> LoraRank("lora-rank",
                           cl::desc("Train LoRA adapters of rank R on the target linears (base "
                                    "weights frozen, as PEFT does)"),
                           cl::value_desc("R"), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<double> LoraAlpha("lora-alpha", cl::desc("LoRA alpha (default 8, PEFT's; scale only)"),
                          cl::value_desc("A"), cl::init(8.0), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<std::string> LoraTargets("lora-targets",
                                 cl::desc("Comma-separated module names matched against the end "
                                          "of layer paths (q_proj,v_proj), or all-linear "
                                          "(default: PEFT's for the architecture)"),
                                 cl::value_desc("list"), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<std::string> LoraModulesToSave(
    "lora-modules-to-save",
    cl::desc("PEFT's modules_to_save: comma-separated module names (matched against the end "
             "of module paths, e.g. embed_tokens,lm_head) trained whole beside the adapters, "
             "each a trainable copy beside its frozen original; none for no module (default: "
             "PEFT's task default, a classification head's classifier or score)"),
    cl::value_desc("list|none"), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<double> LoraDropout("lora-dropout",
                            cl::desc("Dropout on the adapter input; its dropped copy is saved "
                                     "(default 0)"),
                            cl::value_desc("P"), cl::init(0.0), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<std::string> SparseUpdate("sparse-update",
                                  cl::desc("Train only part of the model: last:K (the last K "
                                           "repeated blocks and what follows them), "
                                           "bias-only (BitFit), layers:REGEX (every parameter "
                                           "of the layers whose path matches), weights:REGEX, "
                                           "biases:REGEX (their weights or biases and norm "
                                           "scales only), or budget:SIZE (the set that fits, "
                                           "searched TinyEngine-style: biases first, later "
                                           "layers first)"),
                                  cl::value_desc("mode"), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<unsigned> ZeroStage("zero",
                            cl::desc("DeepSpeed ZeRO stage 0-3: 1 shards optimizer states (and "
                                     "fp32 masters), 2 also gradients, 3 also parameters"),
                            cl::value_desc("stage"), S.A, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<bool> Fsdp("fsdp",
                   cl::desc("PyTorch FSDP: FULL_SHARD (like ZeRO-3), SHARD_GRAD_OP with --zero=2"),
                   S.A, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<unsigned> Gpus("gpus", cl::desc("Data-parallel GPUs (default 1); figures are per GPU"),
                       cl::value_desc("N"), S.A, S.C, S.R, S.P, cl::cat(StrategyCategory));
cl::opt<std::string> Offload("offload",
                             cl::desc("none | optimizer (states and masters to CPU) | params "
                                      "(ZeRO-3/FSDP parameters to CPU too)"),
                             cl::init("none"), S.A, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<unsigned> GaloreRank("galore-rank",
                             cl::desc("GaLore: Adam on rank-R projections of the 2-D target "
                                      "weights' gradients (galore-torch)"),
                             cl::value_desc("R"), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<unsigned> GaloreGap("galore-update-gap",
                            cl::desc("Steps between projector SVDs (default 200)"),
                            cl::value_desc("T"), cl::init(200), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<std::string> GaloreTargets("galore-targets",
                                   cl::desc("Comma-separated substrings of layer paths to "
                                            "project (default attn,mlp)"),
                                   cl::value_desc("list"), S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<bool> GalorePerLayer("galore-per-layer",
                             cl::desc("Layer-wise GaLore: each weight steps in its gradient "
                                      "hook, so one gradient is alive at a time"),
                             S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<bool> ZerothOrder("zeroth-order",
                          cl::desc("Zeroth-order fine-tuning (MeZO): two forward passes, "
                                   "in-place perturbation and update; no backward"),
                          S.A, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<std::string> ActivationStorage("activation-storage",
                                        cl::desc("Saved activations: native (default) | int8 "
                                                 "(quantized by saved-tensor hooks, one fp32 "
                                                 "scale per 256 values)"),
                                        cl::value_desc("mode"), cl::init("native"), S.A, S.C, S.R,
                                        cl::cat(StrategyCategory));
cl::opt<bool> QLora("qlora",
                    cl::desc("QLoRA: LoRA on base linear weights stored in bitsandbytes NF4 "
                             "(double-quantized), computing in bf16 under autocast"),
                    S.A, S.V, S.C, S.R, cl::cat(StrategyCategory));
cl::opt<std::string> Format("format",
                            cl::desc("Output format: text | json (analyze, plan, report, "
                                     "compare) | markdown (plan, report, compare) | junit "
                                     "(report) | html (report, compare); default text"),
                            cl::init("text"), S.A, S.V, S.C, S.R, S.P, cl::cat(OutputCategory));
cl::opt<std::string> HistoryDb("db",
                               cl::desc("Record this run (model digest, setup, report, git "
                                        "commit and branch, time) in the SQLite history FILE; "
                                        "see trainmem history"),
                               cl::value_desc("file"), S.A, S.V, S.R, S.P, cl::cat(OutputCategory));
cl::opt<std::string> Output("o", cl::desc("Write to FILE (atomically) instead of stdout"),
                            cl::value_desc("file"), S.A, S.V, S.C, S.R, S.E, S.P, cl::cat(OutputCategory));

llvm::Error optionError(const std::string &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s", Msg.c_str());
}

llvm::Expected<int64_t> positive(llvm::StringRef Text, const std::string &Context) {
  int64_t V;
  if (Text.getAsInteger(10, V) || V <= 0)
    return optionError(Context + ": '" + Text.str() + "' is not a positive integer");
  return V;
}

template <typename T, typename Parser>
llvm::Error applyIfGiven(const cl::opt<std::string> &Opt, Parser Parse, T &Field,
                         bool FromSetupFile) {
  if (FromSetupFile && Opt.getNumOccurrences() == 0)
    return llvm::Error::success();
  auto V = Parse(Opt.getValue());
  if (!V)
    return V.takeError();
  Field = *V;
  return llvm::Error::success();
}

} // namespace

std::string outputFormat() { return Format; }
std::string modelPositional() { return ModelPath; }
bool hfConfigGiven() { return !HfConfig.empty(); }
std::string historyDb() { return HistoryDb; }

std::string outputPath() { return Output.empty() ? "-" : Output.getValue(); }

llvm::Expected<StepRequest> parseStepRequest(bool TargetsGpu, llvm::StringRef ModelOverride) {
  StepRequest R;
  std::string Model = ModelOverride.empty() ? ModelPath.getValue() : ModelOverride.str();
  if (!HfConfig.empty() && !Model.empty())
    return optionError("give either MODEL or --hf-config=FILE, not both");
  if (HfConfig.empty() && Model.empty())
    return optionError("no model: give an ONNX file as MODEL or --hf-config=FILE");
  R.FromHfConfig = !HfConfig.empty();
  R.ModelPath = R.FromHfConfig ? HfConfig.getValue() : Model;

  for (const std::string &B : DimBindings) {
    auto [Name, Value] = llvm::StringRef(B).split('=');
    if (Name.empty() || Value.empty())
      return optionError("--dim " + B + ": expected NAME=VALUE");
    auto V = positive(Value, "--dim " + Name.str());
    if (!V)
      return V.takeError();
    R.Import.Dims.push_back({Name.str(), *V});
  }
  for (const std::string &I : InputShapes) {
    auto [Name, Shape] = llvm::StringRef(I).split('=');
    if (Name.empty() || Shape.empty())
      return optionError("--input " + I + ": expected NAME=D0xD1x...");
    InputShape IS{Name.str(), {}};
    llvm::SmallVector<llvm::StringRef, 8> Dims;
    Shape.split(Dims, 'x');
    for (llvm::StringRef D : Dims) {
      auto V = positive(D, "--input " + Name.str());
      if (!V)
        return V.takeError();
      IS.Dims.push_back(*V);
    }
    R.Import.Inputs.push_back(IS);
  }
  if (DefaultDim.getNumOccurrences()) {
    if (DefaultDim == 0)
      return optionError("--default-dim: expected a positive integer");
    R.Import.DefaultDim = DefaultDim;
  }
  if (Padded) {
    if (!R.FromHfConfig)
      return optionError("--padded applies to Hugging Face configs (--hf-config); an ONNX "
                         "export carries its attention mask in the graph");
    R.Import.PaddedBatches = true;
  }
  if (MicroBatch.getNumOccurrences()) {
    if (MicroBatch == 0)
      return optionError("--micro-batch: expected a positive integer");
    R.Import.MicroBatch = MicroBatch;
    R.Setup.MicroBatch = MicroBatch;
  }

  TrainingSetup &Setup = R.Setup;
  bool FromFile = !SetupFile.empty();
  std::set<std::string> SetupFileKeys;
  if (FromFile) {
    auto Buffer = llvm::MemoryBuffer::getFile(SetupFile, /*IsText=*/true);
    if (!Buffer)
      return optionError("--setup=" + SetupFile + ": cannot read: " +
                         Buffer.getError().message());
    auto Parsed = parseJson((*Buffer)->getBuffer());
    if (!Parsed)
      return optionError("--setup=" + SetupFile + ": not JSON: " +
                         llvm::toString(Parsed.takeError()));
    const llvm::json::Object *Obj = Parsed->getAsObject();
    if (!Obj)
      return optionError("--setup=" + SetupFile + ": expected a JSON object");
    if (auto E = applySetupJson(*Obj, Setup, SetupFile))
      return E;
    for (const auto &KV : *Obj)
      SetupFileKeys.insert(KV.first.str());
  }
  if (auto E = applyIfGiven(PrecisionOpt, parsePrecision, Setup.Prec, FromFile))
    return E;
  if (auto E = applyIfGiven(AttentionOpt, parseAttention, Setup.Attention, FromFile))
    return E;
  if (auto E = applyIfGiven(TorchOpt, parseTorchVersion, Setup.Torch, FromFile))
    return E;
  if (auto E = applyIfGiven(UseCacheOpt, parseKvCache, Setup.KvCache, FromFile))
    return E;
  // The device: given (option or setup file), else implied by CPU autocast, else CUDA when a
  // GPU is targeted and the host otherwise. The autocast op lists follow the device unless set.
  bool DeviceGiven = DeviceOpt.getNumOccurrences() ? DeviceOpt != "auto"
                                                   : FromFile && SetupFileKeys.count("device");
  bool AutocastGiven = AutocastOpt.getNumOccurrences()
                           ? AutocastOpt != "auto"
                           : FromFile && SetupFileKeys.count("autocast_policy");
  if (DeviceOpt.getNumOccurrences() && DeviceOpt != "auto")
    if (auto E = applyIfGiven(DeviceOpt, parseDevice, Setup.Device, false))
      return E;
  if (AutocastOpt.getNumOccurrences() && AutocastOpt != "auto")
    if (auto E = applyIfGiven(AutocastOpt, parseAutocastPolicy, Setup.Autocast, false))
      return E;
  if (!DeviceGiven) {
    Setup.Device = AutocastGiven && Setup.Autocast == AutocastPolicy::Cpu ? DeviceKind::Cpu
                   : TargetsGpu || GpuOpt.getNumOccurrences() || !Setup.Gpu.empty()
                       ? DeviceKind::Cuda
                       : DeviceKind::Cpu;
    R.DeviceDefaultedToCpu = Setup.Device == DeviceKind::Cpu && !AutocastGiven;
  }
  if (!AutocastGiven)
    Setup.Autocast = Setup.Device == DeviceKind::Cpu ? AutocastPolicy::Cpu : AutocastPolicy::Cuda;
  if (auto E = applyIfGiven(OptimizerOpt, parseOptimizer, Setup.Optimizer, FromFile))
    return E;
  if (auto E = applyIfGiven(ImplOpt, parseOptimizerImpl, Setup.Impl, FromFile))
    return E;
  if (auto E = applyIfGiven(LossOpt, parseLoss, Setup.Loss, FromFile))
    return E;
  if (auto E = applyIfGiven(TieOpt, parseTieMode, Setup.Tie, FromFile))
    return E;
  if (!FromFile || CheckpointOpt.getNumOccurrences()) {
    if (auto E = validateCheckpoint(CheckpointOpt))
      return E;
    Setup.Checkpoint = CheckpointOpt;
  }
  if (!TrainableFile.empty()) {
    auto Names = readTrainableFile(TrainableFile);
    if (!Names)
      return Names.takeError();
    Setup.TrainableFile = TrainableFile.getValue();
    Setup.TrainableNames = std::move(*Names);
  }
  if (GpuOpt.getNumOccurrences())
    Setup.Gpu = GpuOpt;
  if (CudaContextOpt.getNumOccurrences()) {
    auto Bytes = parseBytes(CudaContextOpt);
    if (!Bytes)
      return optionError("--cuda-context: " + llvm::toString(Bytes.takeError()));
    Setup.CudaContextBytes = *Bytes;
  }
  if (ZeroStage.getNumOccurrences() || Fsdp || Gpus.getNumOccurrences() ||
      Offload.getNumOccurrences()) {
    ShardingSetup &Sh = Setup.Sharding;
    if (ZeroStage.getNumOccurrences()) {
      if (ZeroStage > 3)
        return optionError("--zero: expected a stage from 0 to 3");
      Sh.ZeroStage = static_cast<int>(ZeroStage);
    }
    Sh.Fsdp = Fsdp;
    if (Sh.Fsdp && !ZeroStage.getNumOccurrences())
      Sh.ZeroStage = 3;
    if (Sh.Fsdp && Sh.ZeroStage != 2 && Sh.ZeroStage != 3)
      return optionError("--fsdp: FULL_SHARD is --zero=3 (the default), SHARD_GRAD_OP --zero=2");
    if (Gpus.getNumOccurrences()) {
      if (Gpus == 0)
        return optionError("--gpus: expected a positive integer");
      Sh.Gpus = Gpus;
    }
    auto O = parseOffload(Offload);
    if (!O)
      return O.takeError();
    Sh.Offload = *O;
    if (Sh.Offload == OffloadKind::Params && Sh.ZeroStage != 3)
      return optionError("--offload=params needs parameters to be sharded (--zero=3 or --fsdp)");
    if (Sh.Offload == OffloadKind::Optimizer && Sh.ZeroStage == 0)
      return optionError("--offload=optimizer needs ZeRO (--zero=1, 2 or 3) or --fsdp");
  }
  if (GaloreRank.getNumOccurrences() || GalorePerLayer || GaloreTargets.getNumOccurrences()) {
    GaloreSetup Gl = Setup.Galore.value_or(GaloreSetup{});
    if (GaloreRank.getNumOccurrences()) {
      if (GaloreRank == 0)
        return optionError("--galore-rank: expected a positive integer");
      Gl.Rank = GaloreRank;
    }
    if (GaloreGap == 0)
      return optionError("--galore-update-gap: expected a positive integer");
    Gl.UpdateGap = GaloreGap;
    Gl.PerLayer = GalorePerLayer;
    if (!GaloreTargets.empty()) {
      Gl.Targets.clear();
      llvm::SmallVector<llvm::StringRef, 8> Parts;
      llvm::StringRef(GaloreTargets).split(Parts, ',', -1, false);
      for (llvm::StringRef P : Parts)
        Gl.Targets.push_back(P.trim().str());
    }
    if (Setup.Optimizer != OptimizerKind::AdamW && Setup.Optimizer != OptimizerKind::Adam &&
        Setup.Optimizer != OptimizerKind::AdamW8bit)
      return optionError("--galore-*: GaLore runs with --optimizer=adamw or adamw-8bit");
    Setup.Galore = Gl;
  }
  if (ZerothOrder)
    Setup.ZerothOrder = true;
  if (ActivationStorage != "native" && ActivationStorage != "int8")
    return optionError("--activation-storage: expected native or int8, got '" +
                       ActivationStorage + "'");
  if (!FromFile || ActivationStorage.getNumOccurrences())
    Setup.Int8Activations = ActivationStorage == "int8";
  if (SparseUpdate.getNumOccurrences()) {
    if (auto E = validateSparseUpdate(SparseUpdate))
      return E;
    Setup.SparseUpdate = SparseUpdate;
  }
  if (LoraModulesToSave.getNumOccurrences() && !LoraRank.getNumOccurrences() && !QLora &&
      !Setup.Lora)
    return optionError("--lora-modules-to-save: needs --lora-rank (or --qlora)");
  if (LoraRank.getNumOccurrences() || QLora || LoraTargets.getNumOccurrences()) {
    LoraSetup L = Setup.Lora.value_or(LoraSetup{});
    if (LoraRank.getNumOccurrences()) {
      if (LoraRank == 0)
        return optionError("--lora-rank: expected a positive integer");
      L.Rank = LoraRank;
    }
    L.Alpha = LoraAlpha;
    if (LoraDropout < 0 || LoraDropout >= 1)
      return optionError("--lora-dropout: expected a probability in [0, 1)");
    L.Dropout = LoraDropout;
    L.QLora = L.QLora || QLora;
    if (!LoraTargets.empty()) {
      L.Targets.clear();
      llvm::SmallVector<llvm::StringRef, 8> Parts;
      llvm::StringRef(LoraTargets).split(Parts, ',', -1, false);
      for (llvm::StringRef P : Parts)
        L.Targets.push_back(P.trim().str());
    }
    if (LoraModulesToSave.getNumOccurrences()) {
      L.ModulesToSave.emplace();
      llvm::SmallVector<llvm::StringRef, 8> Parts;
      llvm::StringRef(LoraModulesToSave).split(Parts, ',', -1, false);
      for (llvm::StringRef P : Parts)
        if (P.trim() != "none")
          L.ModulesToSave->push_back(P.trim().str());
      if (L.ModulesToSave->empty() && LoraModulesToSave != "none")
        return optionError("--lora-modules-to-save: expected module names or none");
    }
    Setup.Lora = L;
  }
  if (TrainRegex.getNumOccurrences())
    Setup.TrainRegex = TrainRegex;
  if (FreezeRegex.getNumOccurrences())
    Setup.FreezeRegex = FreezeRegex;
  if (KeepGrads.getNumOccurrences())
    Setup.KeepGrads = KeepGrads;
  if (GradAccum.getNumOccurrences()) {
    if (GradAccum == 0)
      return optionError("--grad-accum: expected a positive integer");
    Setup.GradAccum = GradAccum;
  }
  if (DropoutOpt.getNumOccurrences()) {
    if (DropoutOpt < 0 || DropoutOpt >= 1)
      return optionError("--dropout: expected a probability in [0, 1)");
    Setup.Dropout = DropoutOpt;
  }
  return R;
}

llvm::Expected<Graph> importRequestedModel(const StepRequest &Request) {
  if (Request.FromHfConfig)
    return importHfConfig(Request.ModelPath, Request.Import);
  return importModel(Request.ModelPath, Request.Import);
}

} // namespace trainmem::cli
