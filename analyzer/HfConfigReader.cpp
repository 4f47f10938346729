//===- HfConfigReader.cpp - a Hugging Face config.json read into an HfModel ------===//
//
// The fields of transformers' config classes (5.x) the graph depends on, with their
// defaults where a config leaves them out; every problem names the file, the field and
// what was expected (ConfigReader reads every field, then reports the first).
//
//===----------------------------------------------------------------------------===//
#include "analyzer/HfConfigModel.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>

namespace trainmem::hf {
namespace {

const char *const SupportedTypes =
    "llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, gemma, gemma2, gemma3_text, "
    "phi3, olmo2, olmoe, gpt_oss, deepseek_v2, deepseek_v3, granite, smollm3, starcoder2, "
    "stablelm, phi, opt, gptj, gpt2, gpt_neox, bert, roberta, xlm-roberta, camembert, distilbert";
const char *const SupportedActivations = "silu, swish, gelu, gelu_new, gelu_pytorch_tanh, relu";

/// Typed access to config fields that remembers the first problem, so the importer can
/// read every field and then report one message naming the file, field and expectation.
/// JSON `null` counts as absent, as it does for transformers' config classes.
class ConfigReader {
public:
  ConfigReader(const llvm::json::Object &Obj, llvm::StringRef File) : Obj(Obj), File(File) {}

  const llvm::json::Value *present(llvm::StringRef Key) const {
    const llvm::json::Value *V = Obj.get(Key);
    return V && V->kind() != llvm::json::Value::Null ? V : nullptr;
  }

  /// A positive integer under the first of Keys present; Default (0: required) if none is.
  int64_t size(std::initializer_list<llvm::StringRef> Keys, llvm::StringRef What,
               int64_t Default = 0) {
    for (llvm::StringRef Key : Keys)
      if (const llvm::json::Value *V = present(Key)) {
        if (std::optional<int64_t> I = V->getAsInteger(); I && *I > 0)
          return *I;
        fail(llvm::formatv("field '{0}' is {1}; expected a positive integer ({2})", Key, *V,
                           What));
        return 1;
      }
    if (Default == 0)
      fail(llvm::formatv("field '{0}' is missing; expected a positive integer ({1})",
                         llvm::join(Keys, "' or '"), What));
    return Default == 0 ? 1 : Default;
  }

  /// A bool, number or string field, or Default when absent.
  template <typename T> T get(llvm::StringRef Key, T Default) {
    const llvm::json::Value *V = present(Key);
    if (!V)
      return Default;
    if constexpr (std::is_same_v<T, bool>) {
      if (std::optional<bool> B = V->getAsBoolean())
        return *B;
      fail(llvm::formatv("field '{0}' is {1}; expected true or false", Key, *V));
    } else if constexpr (std::is_same_v<T, double>) {
      if (std::optional<double> D = V->getAsNumber())
        return *D;
      fail(llvm::formatv("field '{0}' is {1}; expected a number", Key, *V));
    } else {
      if (std::optional<llvm::StringRef> S = V->getAsString())
        return S->str();
      fail(llvm::formatv("field '{0}' is {1}; expected a string", Key, *V));
    }
    return Default;
  }

  void fail(std::string Message) {
    if (!FirstError)
      FirstError = std::move(Message);
  }
  llvm::Error takeError() {
    return FirstError ? fileError(File, *FirstError) : llvm::Error::success();
  }

private:
  const llvm::json::Object &Obj;
  llvm::StringRef File;
  std::optional<std::string> FirstError;
};

/// transformers' defaults (the config classes of 5.x) for fields a config may leave out.
struct TypeDefaults {
  llvm::StringRef Type;
  ArchFamily Family;
  int64_t MaxPositions;
  llvm::StringRef NormEpsKey;
  double NormEps;
  llvm::StringRef ActKey, Act;
  bool Tie;
};
constexpr TypeDefaults KnownTypes[] = {
    {"llama", ArchFamily::Llama, 2048, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"mistral", ArchFamily::Llama, 4096 * 32, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"qwen2", ArchFamily::Llama, 32768, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"qwen3", ArchFamily::Llama, 32768, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"mixtral", ArchFamily::Llama, 4096 * 32, "rms_norm_eps", 1e-5, "hidden_act", "silu", false},
    {"qwen2_moe", ArchFamily::Llama, 32768, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"qwen3_moe", ArchFamily::Llama, 32768, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"gemma", ArchFamily::Llama, 8192, "rms_norm_eps", 1e-6, "hidden_act", "gelu_pytorch_tanh",
     true},
    {"phi3", ArchFamily::Llama, 4096, "rms_norm_eps", 1e-5, "hidden_act", "silu", false},
    {"gemma2", ArchFamily::Llama, 8192, "rms_norm_eps", 1e-6, "hidden_activation",
     "gelu_pytorch_tanh", true},
    {"olmo2", ArchFamily::Llama, 2048, "rms_norm_eps", 1e-5, "hidden_act", "silu", false},
    {"olmoe", ArchFamily::Llama, 4096, "rms_norm_eps", 1e-5, "hidden_act", "silu", false},
    {"gpt_oss", ArchFamily::Llama, 131072, "rms_norm_eps", 1e-5, "hidden_act", "silu", false},
    {"deepseek_v2", ArchFamily::Llama, 2048, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"deepseek_v3", ArchFamily::Llama, 4096, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"granite", ArchFamily::Llama, 2048, "rms_norm_eps", 1e-6, "hidden_act", "silu", false},
    {"smollm3", ArchFamily::Llama, 32768, "rms_norm_eps", 1e-6, "hidden_act", "silu", true},
    {"starcoder2", ArchFamily::Llama, 4096, "norm_epsilon", 1e-5, "hidden_act",
     "gelu_pytorch_tanh", true},
    {"stablelm", ArchFamily::Llama, 4096, "layer_norm_eps", 1e-5, "hidden_act", "silu", false},
    {"gemma3_text", ArchFamily::Llama, 131072, "rms_norm_eps", 1e-6, "hidden_activation",
     "gelu_pytorch_tanh", true},
    {"gpt2", ArchFamily::Gpt2, 1024, "layer_norm_epsilon", 1e-5, "activation_function",
     "gelu_new", true},
    {"gpt_neox", ArchFamily::GptNeoX, 2048, "layer_norm_eps", 1e-5, "hidden_act", "gelu", false},
    // PhiConfig (Phi-1, Phi-1.5, Phi-2).
    {"phi", ArchFamily::Phi, 2048, "layer_norm_eps", 1e-5, "hidden_act", "gelu_new", false},
    // OPTConfig; its LayerNorms keep nn.LayerNorm's eps (no config field).
    {"opt", ArchFamily::Opt, 2048, "", 1e-5, "activation_function", "relu", true},
    {"gptj", ArchFamily::GptJ, 2048, "layer_norm_epsilon", 1e-5, "activation_function",
     "gelu_new", false},
    {"bert", ArchFamily::Bert, 512, "layer_norm_eps", 1e-12, "hidden_act", "gelu", true},
    // RobertaConfig, XLMRobertaConfig and CamembertConfig keep BertConfig's defaults; the
    // released checkpoints set 514 positions and eps 1e-5.
    {"roberta", ArchFamily::Bert, 512, "layer_norm_eps", 1e-12, "hidden_act", "gelu", true},
    {"xlm-roberta", ArchFamily::Bert, 512, "layer_norm_eps", 1e-12, "hidden_act", "gelu", true},
    {"camembert", ArchFamily::Bert, 512, "layer_norm_eps", 1e-12, "hidden_act", "gelu", true},
    // DistilBertConfig: dim, n_layers, n_heads, hidden_dim, activation; LayerNorm eps 1e-12
    // in the code.
    {"distilbert", ArchFamily::Bert, 512, "layer_norm_eps", 1e-12, "activation", "gelu", true},
};



Activation readActivation(ConfigReader &R, const TypeDefaults &T) {
  std::string Name = R.get<std::string>(T.ActKey, T.Act.str());
  // GemmaConfig rewrites the legacy "gelu" of the released checkpoints to the tanh form.
  if (T.Type == "gemma" && Name == "gelu")
    Name = "gelu_pytorch_tanh";
  if (Name == "silu" || Name == "swish")
    return Activation::Silu;
  if (Name == "gelu" || Name == "gelu_pytorch_tanh" || Name == "gelu_new")
    return Name == "gelu" ? Activation::GeluErf
           : Name == "gelu_new" ? Activation::GeluTanhPython
                                : Activation::GeluTanhFused;
  if (Name != "relu")
    R.fail(llvm::formatv("field '{0}' is \"{1}\"; expected one of {2}", T.ActKey, Name,
                         SupportedActivations));
  return Activation::Relu;
}

HeadKind readHead(const llvm::json::Object &Obj, ArchFamily Family, Diagnostics &Diags) {
  HeadKind Default = Family == ArchFamily::Bert ? HeadKind::MaskedLm : HeadKind::CausalLm;
  std::string Assumed = Default == HeadKind::MaskedLm ? "masked-LM" : "causal-LM";
  const llvm::json::Array *Archs = Obj.getArray("architectures");
  std::optional<llvm::StringRef> Arch;
  if (Archs && !Archs->empty())
    Arch = (*Archs)[0].getAsString();
  if (!Arch) {
    Diags.note("head-assumed", "architectures",
               "no architectures given; modelling the " + Assumed + " head");
    return Default;
  }
  if (Arch->ends_with("ForCausalLM") || *Arch == "GPT2LMHeadModel")
    return HeadKind::CausalLm;
  if (Arch->ends_with("ForMaskedLM"))
    return HeadKind::MaskedLm;
  if (Arch->ends_with("ForSequenceClassification"))
    return HeadKind::SequenceClassification;
  if (Arch->ends_with("ForTokenClassification"))
    return HeadKind::TokenClassification;
  // The families transformers has a ...ForQuestionAnswering class for (the others' configs
  // cannot name one that loads).
  static constexpr llvm::StringLiteral QaTypes[] = {
      "llama", "mistral", "mixtral", "qwen2",   "qwen2_moe",   "qwen3",     "qwen3_moe",
      "gpt2",  "gpt_neox", "bert",   "roberta", "xlm-roberta", "camembert", "distilbert",
      "smollm3", "opt", "gptj"};
  if (Arch->ends_with("ForQuestionAnswering") &&
      llvm::is_contained(QaTypes, Obj.getString("model_type").value_or("")))
    return HeadKind::QuestionAnswering;
  if (Arch->ends_with("ForMultipleChoice") && Family == ArchFamily::Bert)
    return HeadKind::MultipleChoice;
  if (Arch->ends_with("Model") && !Arch->contains("For") && !Arch->contains("Head"))
    return HeadKind::BaseModel; // LlamaModel, BertModel, ...: no head, no prefix
  Diags.warning("head-assumed", "architectures",
                "architecture '" + Arch->str() + "' has a head trainmem does not model; " +
                    "modelling the " + Assumed + " head");
  return Default;
}

/// rope_theta (and GPT-NeoX's rotary fraction) as flat 4.x fields or 5.x
/// `rope_parameters`. An empty FractionKey means the model rotates whole heads.
void readRope(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M,
              llvm::StringRef BaseKey, llvm::StringRef FractionKey, double Fraction) {
  if (const llvm::json::Object *Params = Obj.getObject("rope_parameters")) {
    M.RopeTheta = Params->getNumber("rope_theta").value_or(M.RopeTheta);
    if (!FractionKey.empty())
      Fraction = Params->getNumber("partial_rotary_factor").value_or(Fraction);
    M.RopeScaled = Params->getString("rope_type").value_or("default") != "default";
  }
  M.RopeTheta = R.get("rope_theta", R.get(BaseKey, M.RopeTheta));
  if (!FractionKey.empty())
    Fraction = R.get("partial_rotary_factor", R.get(FractionKey, Fraction));
  M.RopeScaled |= R.present("rope_scaling") != nullptr;
  // GPTNeoXAttention: rotary_ndims = int(head_size * rotary_pct).
  M.RotaryDim = static_cast<int64_t>(static_cast<double>(M.HeadDim) * Fraction);
  if (M.RotaryDim <= 0 || M.RotaryDim % 2 != 0 || M.RotaryDim > M.HeadDim)
    R.fail(llvm::formatv("rotary dimension {0} (head_dim {1} x rotary fraction {2}) must be "
                         "even and in (0, head_dim]",
                         M.RotaryDim, M.HeadDim, Fraction));
}

/// Which layers attend through a sliding window (Gemma 2 and 3, gpt-oss): `layer_types`
/// ("sliding_attention" or "full_attention" per layer) or, without it, every
/// sliding_window_pattern-th layer full and the rest sliding (Pattern: the type's default).
void readLayerTypes(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M,
                    int64_t Pattern) {
  M.SlidingLayers.assign(static_cast<size_t>(std::max<int64_t>(M.Layers, 0)), false);
  if (const llvm::json::Array *Types = Obj.getArray("layer_types")) {
    if (static_cast<int64_t>(Types->size()) != M.Layers)
      R.fail(llvm::formatv("field 'layer_types' has {0} entries; expected one per layer ({1})",
                           Types->size(), M.Layers));
    for (size_t I = 0; I < Types->size() && I < M.SlidingLayers.size(); ++I) {
      std::optional<llvm::StringRef> T = (*Types)[I].getAsString();
      if (!T || (*T != "sliding_attention" && *T != "full_attention"))
        R.fail(llvm::formatv("field 'layer_types' entry {0}: expected \"sliding_attention\" "
                             "or \"full_attention\"",
                             I));
      else
        M.SlidingLayers[I] = *T == "sliding_attention";
    }
  } else {
    Pattern = R.size({"sliding_window_pattern"}, "the sliding-window pattern", Pattern);
    for (size_t I = 0; I < M.SlidingLayers.size(); ++I)
      M.SlidingLayers[I] = (static_cast<int64_t>(I) + 1) % Pattern != 0;
  }
}

/// Gemma2Config's and Gemma3TextConfig's fields past the LLaMA family's: the layer types
/// (given, or every sliding_window_pattern-th layer full, the rest sliding: every second
/// for Gemma 2), query_pre_attn_scalar, four norms per layer; Gemma 3's q/k norms and two
/// rotary bases (5.x nests them per layer type in rope_parameters); Gemma 2's soft-capping
/// of the attention scores and the logits (defaults 50 and 30, null turns them off).
void readGemma(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M,
               Diagnostics &Diags) {
  const bool Gemma3 = M.ModelType == "gemma3_text";
  M.SandwichNorms = true;
  M.QkNormTransposed = M.RopePerLayerType = Gemma3;
  M.AttnScalar = R.get("query_pre_attn_scalar", 256.0);
  if (Gemma3) {
    M.RopeTheta = R.get("rope_theta", 1'000'000.0);
    M.LocalRopeTheta = R.get("rope_local_base_freq", 10'000.0);
    if (const llvm::json::Object *Params = Obj.getObject("rope_parameters")) {
      if (const llvm::json::Object *Full = Params->getObject("full_attention"))
        M.RopeTheta = Full->getNumber("rope_theta").value_or(M.RopeTheta);
      if (const llvm::json::Object *Local = Params->getObject("sliding_attention"))
        M.LocalRopeTheta = Local->getNumber("rope_theta").value_or(M.LocalRopeTheta);
    }
  }
  M.SlidingWindow = Obj.getInteger("sliding_window").value_or(4096);
  readLayerTypes(R, Obj, M, Gemma3 ? 6 : 2);
  // Gemma2Config defaults both caps on; Gemma3TextConfig both off. JSON null: off.
  auto Cap = [&](const char *Key, double Default) {
    const llvm::json::Value *V = Obj.get(Key);
    if (V && V->kind() == llvm::json::Value::Null)
      return 0.0;
    double C = R.get(Key, Default);
    if (C <= 0) // transformers would divide by it
      R.fail(llvm::formatv("field '{0}' is {1}; expected a positive cap or null", Key, C));
    return C;
  };
  M.AttnSoftcap = Cap("attn_logit_softcapping", Gemma3 ? 0.0 : 50.0);
  M.FinalSoftcap = Cap("final_logit_softcapping", Gemma3 ? 0.0 : 30.0);
  if (R.get("use_bidirectional_attention", false))
    Diags.warning("unsupported-field", "use_bidirectional_attention",
                  "bidirectional attention is not modelled; causal masks assumed");
}

/// SmolLM3Config's fields past the LLaMA family's: the layers without rotary (NoPE:
/// `no_rope_layers`, 1 where a layer rotates, or every no_rope_layer_interval-th layer
/// without, default 4), the rotary base (default 2,000,000), and with use_sliding_window a
/// window on the layers `layer_types` names (by default the NoPE ones).
void readSmolLm3(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M) {
  M.RopeTheta = 2'000'000.0;
  const size_t Layers = static_cast<size_t>(std::max<int64_t>(M.Layers, 0));
  M.NoRopeLayers.assign(Layers, false);
  if (const llvm::json::Array *Given = Obj.getArray("no_rope_layers")) {
    if (Given->size() != Layers)
      R.fail(llvm::formatv("field 'no_rope_layers' has {0} entries; expected one per layer "
                           "({1})",
                           Given->size(), Layers));
    for (size_t I = 0; I < Given->size() && I < Layers; ++I) {
      std::optional<int64_t> Uses = (*Given)[I].getAsInteger();
      if (!Uses || (*Uses != 0 && *Uses != 1))
        R.fail(llvm::formatv("field 'no_rope_layers' entry {0}: expected 1 (rotary) or 0 "
                             "(none)",
                             I));
      else
        M.NoRopeLayers[I] = *Uses == 0;
    }
  } else {
    const int64_t Interval = R.size({"no_rope_layer_interval"}, "the NoPE layer interval", 4);
    for (size_t I = 0; I < Layers; ++I)
      M.NoRopeLayers[I] = (static_cast<int64_t>(I) + 1) % Interval == 0;
  }
  if (R.get("use_sliding_window", false) && Obj.getInteger("sliding_window")) {
    M.SlidingWindow = *Obj.getInteger("sliding_window");
    if (Obj.getArray("layer_types"))
      readLayerTypes(R, Obj, M, 1);
    else
      M.SlidingLayers = M.NoRopeLayers;
  }
}

/// GptOssConfig's fields past the LLaMA family's and the experts' (readMoe): the layer
/// types (default: every second layer full, from the second), the window (default 128),
/// the rotary base and scaling (default 150,000 and YaRN: rope_parameters may set both),
/// the clamped SwiGLU's constants. Its RMSNorm multiplies by the weight in fp32, as OLMo 2's.
void readGptOss(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M) {
  M.GptOss = M.NormWeightInFp32 = true;
  readLayerTypes(R, Obj, M, 2);
  M.SlidingWindow = R.size({"sliding_window"}, "the attention window", 128);
  M.RopeTheta = 150'000.0;
  // Without rope_parameters GptOssConfig fills in YaRN (factor 32); readRope reads a given
  // one's rope_type.
  M.RopeScaled = Obj.getObject("rope_parameters") == nullptr;
  // The tables' factor: YaRN's attention_factor, or 0.1 ln(factor) + 1 (transformers'
  // _compute_yarn_parameters); values only, the memory does not depend on it.
  const llvm::json::Object *Rope = Obj.getObject("rope_parameters");
  if (!Rope)
    Rope = Obj.getObject("rope_scaling");
  const bool Yarn = !Rope || Rope->getString("rope_type").value_or(
                                 Rope->getString("type").value_or("")) == "yarn";
  if (Yarn) {
    double Factor = Rope ? Rope->getNumber("factor").value_or(32.0) : 32.0;
    M.RopeAttentionScaling =
        Rope && Rope->getNumber("attention_factor")
            ? *Rope->getNumber("attention_factor")
            : (Factor > 1 ? 0.1 * std::log(Factor) + 1.0 : 1.0);
  }
  M.SwigluAlpha = R.get("swiglu_alpha", 1.702);
  M.SwigluLimit = R.get("swiglu_limit", 7.0);
  if (const llvm::json::Value *V = R.present("swiglu_limit"); V && !(M.SwigluLimit > 0))
    R.fail(llvm::formatv("field 'swiglu_limit' is {0}; expected a positive clamp", *V));
}

/// DeepseekV3Config's attention fields (multi-head latent attention; HfModel::Mla), with
/// transformers 5's defaults. q_lora_rank null: q from one projection.
void readMla(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M) {
  M.Mla = true;
  const llvm::json::Value *QRank = Obj.get("q_lora_rank");
  M.QLoraRank = QRank && QRank->kind() == llvm::json::Value::Null
                    ? 0
                    : R.size({"q_lora_rank"}, "the query's low-rank bottleneck", 1536);
  M.KvLoraRank = R.size({"kv_lora_rank"}, "the key/value latent's width", 512);
  M.QkNopeDim = R.size({"qk_nope_head_dim"}, "each head's query/key channels without rotary", 128);
  M.QkRopeDim = R.size({"qk_rope_head_dim"}, "each head's rotated query/key channels", 64);
  M.VHeadDim = R.size({"v_head_dim"}, "each head's value width", 128);
  M.HeadDim = M.QkNopeDim + M.QkRopeDim;
  if (M.ModelType == "deepseek_v2")
    M.ComplexRotary = true; // DeepseekV2's apply_rotary_emb: complex pairs, no interleave flag
  else
    M.RopeInterleave = R.get("rope_interleave", true);
  if (M.QkRopeDim % 2 != 0)
    R.fail(llvm::formatv("field 'qk_rope_head_dim' is {0}; expected an even width", M.QkRopeDim));
}

/// MixtralConfig's, Qwen2MoeConfig's and Qwen3MoeConfig's expert fields (transformers 5's
/// defaults where a config leaves them out): which layers route their tokens to experts
/// (every decoder_sparse_step-th, less mlp_only_layers), how many experts, how many per
/// token, their width, Qwen2-MoE's shared expert.
void readMoe(ConfigReader &R, const llvm::json::Object &Obj, HfModel &M, Diagnostics &Diags) {
  const bool Mixtral = M.ModelType == "mixtral", Qwen2 = M.ModelType == "qwen2_moe";
  const bool Olmoe = M.ModelType == "olmoe", GptOss = M.ModelType == "gpt_oss";
  const bool V2 = M.ModelType == "deepseek_v2", DeepSeek = V2 || M.ModelType == "deepseek_v3";
  M.Experts = R.size({Mixtral || GptOss ? "num_local_experts"
                      : DeepSeek        ? "n_routed_experts"
                                        : "num_experts"},
                     "the number of experts",
                     Mixtral ? 8 : Qwen2 ? 60 : Olmoe || V2 ? 64 : DeepSeek ? 256 : 128);
  // DeepseekV2Config leaves num_experts_per_tok unset (None): a config must give it.
  M.TopK = R.size({"num_experts_per_tok"}, "the experts each token is routed to",
                  Mixtral ? 2 : Qwen2 || GptOss ? 4 : V2 ? 0 : 8);
  if (M.TopK > M.Experts)
    R.fail(llvm::formatv("field 'num_experts_per_tok' is {0}; expected at most the {1} experts",
                         M.TopK, M.Experts));
  // Mixtral's, OLMoE's and gpt-oss's experts are intermediate_size wide; they have no
  // dense MLP.
  const bool AllMoe = Mixtral || Olmoe || GptOss;
  M.MoeIntermediate = AllMoe ? M.Intermediate
                              : R.size({"moe_intermediate_size"}, "the width of one expert",
                                       Qwen2 ? 1408 : V2 ? 1407 : DeepSeek ? 2048 : 768);
  if (Qwen2)
    M.SharedIntermediate = R.size({"shared_expert_intermediate_size"},
                                  "the width of the shared expert", 5632);
  // DeepSeek-V2's router never renormalises, whatever norm_topk_prob says.
  M.NormTopK = !V2 && (Mixtral || R.get("norm_topk_prob", DeepSeek));
  M.Fp32RoutingWeights = Mixtral || DeepSeek;
  if (DeepSeek) {
    // DeepseekV3MoE: shared experts moe_intermediate_size x n_shared_experts wide (none
    // when 0); the first first_k_dense_replace layers keep a dense MLP.
    const llvm::json::Value *Shared = R.present("n_shared_experts");
    const int64_t NShared = Shared && Shared->getAsInteger() == 0
                                ? 0
                                : R.size({"n_shared_experts"}, "the shared experts", V2 ? 2 : 1);
    M.SharedIntermediate = NShared * M.MoeIntermediate;
    M.RoutedScaling = R.get("routed_scaling_factor", V2 ? 1.0 : 2.5);
    if (V2) {
      M.SoftmaxGreedyRouter = true;
      std::string Method = R.get<std::string>("topk_method", "greedy");
      M.GroupLimited = Method == "group_limited_greedy";
      if (!M.GroupLimited && Method != "greedy")
        R.fail("field 'topk_method' is \"" + Method +
               "\"; expected \"greedy\" or \"group_limited_greedy\"");
    } else {
      M.SigmoidGroupRouter = M.GroupLimited = true;
    }
    M.MoeGroups = M.GroupLimited ? R.size({"n_group"}, "the expert groups", V2 ? 0 : 8) : 1;
    M.MoeTopKGroups = M.GroupLimited
                          ? R.size({"topk_group"}, "the groups each token's experts come from",
                                   V2 ? 0 : 4)
                          : 1;
    if (M.GroupLimited && M.Experts % M.MoeGroups != 0)
      R.fail(llvm::formatv("field 'n_group' is {0}; expected a divisor of the {1} experts",
                           M.MoeGroups, M.Experts));
    else if (M.GroupLimited && M.MoeTopKGroups > M.MoeGroups)
      R.fail(llvm::formatv("field 'topk_group' is {0}; expected at most the {1} groups",
                           M.MoeTopKGroups, M.MoeGroups));
    else if (M.GroupLimited && M.TopK > M.MoeTopKGroups * (M.Experts / M.MoeGroups))
      R.fail(llvm::formatv("field 'num_experts_per_tok' is {0}; expected at most the {1} "
                           "experts of the topk_group groups",
                           M.TopK, M.MoeTopKGroups * (M.Experts / M.MoeGroups)));
    else if (M.SigmoidGroupRouter && M.Experts / M.MoeGroups < 2)
      R.fail(llvm::formatv("field 'n_group' is {0}; expected groups of at least 2 experts "
                           "(each group is scored by its best two)",
                           M.MoeGroups));
  }
  const int64_t Step = AllMoe || DeepSeek ? 1
                                         : R.size({"decoder_sparse_step"},
                                                  "every how many layers one has experts", 1);
  M.MoeLayers.assign(static_cast<size_t>(std::max<int64_t>(M.Layers, 0)), false);
  for (size_t I = 0; I < M.MoeLayers.size(); ++I)
    M.MoeLayers[I] = (static_cast<int64_t>(I) + 1) % Step == 0;
  if (DeepSeek) {
    const llvm::json::Value *Dense = R.present("first_k_dense_replace");
    const int64_t FirstDense =
        !Dense                         ? (V2 ? 0 : 3)
        : Dense->getAsInteger() == 0 ? 0
                                     : R.size({"first_k_dense_replace"},
                                              "the dense layers before the experts");
    for (size_t I = 0; I < M.MoeLayers.size(); ++I)
      M.MoeLayers[I] = static_cast<int64_t>(I) >= FirstDense;
  }
  if (!AllMoe && !DeepSeek && R.present("mlp_only_layers")) {
    const llvm::json::Array *Dense = Obj.getArray("mlp_only_layers");
    if (!Dense)
      R.fail("field 'mlp_only_layers' is not a list; expected the indices of the layers "
             "without experts");
    for (size_t I = 0; Dense && I < Dense->size(); ++I) {
      std::optional<int64_t> L = (*Dense)[I].getAsInteger();
      if (!L || *L < 0 || *L >= M.Layers)
        R.fail(llvm::formatv("field 'mlp_only_layers' entry {0}: expected a layer index in "
                             "[0, {1})",
                             I, M.Layers));
      else
        M.MoeLayers[static_cast<size_t>(*L)] = false;
    }
  }
  if (R.get("output_router_logits", false))
    Diags.warning("unsupported-field", "output_router_logits",
                  "the router's load-balancing loss is not modelled (each layer's [tokens, "
                  "experts] logits kept for it); the prediction is of the step without it");
  if (Olmoe && R.present("clip_qkv"))
    Diags.warning("unsupported-field", "clip_qkv",
                  "OLMoE's in-place clamps of q, k and v are not modelled");
  if (Mixtral && R.get("router_jitter_noise", 0.0) > 0)
    Diags.warning("unsupported-field", "router_jitter_noise",
                  "the router's jitter (the block's input multiplied by uniform noise in "
                  "training) is not modelled");
}

} // namespace

llvm::Error fileError(llvm::StringRef File, const llvm::Twine &Message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 (File + ": " + Message).str());
}

llvm::Expected<HfModel> readHfModel(const llvm::json::Object &Obj, llvm::StringRef File,
                                    Diagnostics &Diags) {
  std::optional<llvm::StringRef> Type = Obj.getString("model_type");
  if (!Type)
    return fileError(File, llvm::Twine("field 'model_type' is missing or not a string; ") +
                               "expected one of " + SupportedTypes);
  const TypeDefaults *T = llvm::find_if(KnownTypes, [&](auto &K) { return K.Type == *Type; });
  if (T == std::end(KnownTypes) && *Type == "gemma3" && Obj.getObject("text_config"))
    return fileError(File, "model_type 'gemma3' is a multimodal Gemma 3 (a vision tower beside "
                           "the language model), which is not modelled; its language model "
                           "is the 'text_config' object (model_type gemma3_text): save that "
                           "as a config.json of its own to predict the text model alone");
  if (T == std::end(KnownTypes))
    return fileError(File, "model_type '" + *Type + "' is not supported; expected one of " +
                               SupportedTypes);
  ConfigReader R(Obj, File);
  HfModel M;
  M.ModelType = Type->str();
  M.Family = T->Family;
  M.Head = readHead(Obj, M.Family, Diags);
  // GPT-2's own names come second: GPT2Config maps hidden_size to n_embd and so on.
  // DistilBERT's names come last (DistilBertConfig's attribute_map: dim, n_layers, n_heads).
  M.Hidden = R.size({"hidden_size", "n_embd", "dim"}, "the model width");
  M.Layers = R.size({"num_hidden_layers", "n_layer", "n_layers"}, "the number of layers");
  // The graph is built layer by layer, ~80 tensors each: a mistyped count must be an error,
  // not an allocation of the whole machine (found by FuzzHfConfig: 2,151,643 layers).
  // Released models have at most a few hundred.
  constexpr int64_t MaxLayers = 10'000;
  if (M.Layers > MaxLayers) {
    R.fail(llvm::formatv("field 'num_hidden_layers' is {0}; expected at most {1}", M.Layers,
                         MaxLayers));
    M.Layers = 1; // the rest is read for its own errors only
  }
  M.Heads = R.size({"num_attention_heads", "n_head", "n_heads"}, "the number of attention heads");
  M.Vocab = R.size({"vocab_size"}, "the vocabulary size");
  M.Intermediate = M.Family == ArchFamily::Gpt2 || M.Family == ArchFamily::GptJ
                       ? R.size({"n_inner"}, "the MLP width", 4 * M.Hidden)
                   : M.Family == ArchFamily::Opt ? R.size({"ffn_dim"}, "the MLP width")
                       : R.size({"intermediate_size", "hidden_dim"}, "the MLP width",
                                M.ModelType == "gpt_oss" ? 2880 : 0);
  M.KvHeads = M.Family == ArchFamily::Llama || M.Family == ArchFamily::Phi
                  ? R.size({"num_key_value_heads"}, "the number of k/v heads",
                           M.ModelType == "starcoder2" ? 2 : M.Heads) // Starcoder2Config's
                  : M.Heads;
  if (M.Family != ArchFamily::Gpt2 && M.Family != ArchFamily::Opt &&
      M.Family != ArchFamily::GptJ && R.present("head_dim"))
    M.HeadDim = R.size({"head_dim"}, "the width of one attention head");
  else if (M.ModelType == "gemma" || M.ModelType == "gemma2" || M.ModelType == "gemma3_text")
    M.HeadDim = 256; // GemmaConfig's, Gemma2Config's and Gemma3TextConfig's default
  else if (M.ModelType == "qwen3")
    M.HeadDim = 128; // Qwen3Config's default (not hidden / heads)
  else if (M.ModelType == "gpt_oss")
    M.HeadDim = 64; // GptOssConfig's default (not hidden / heads: 2880 / 64 = 45)
  else if (M.ModelType == "deepseek_v3" || M.ModelType == "deepseek_v2")
    M.HeadDim = 1; // readMla sets it from the latent attention's widths
  else if (M.Hidden % M.Heads != 0)
    R.fail(llvm::formatv("hidden size {0} is not a multiple of num_attention_heads {1}; "
                         "expected head_dim to be given",
                         M.Hidden, M.Heads));
  else
    M.HeadDim = M.Hidden / M.Heads;
  M.MaxPositions = R.size({"max_position_embeddings", "n_positions"}, "the longest sequence",
                          T->MaxPositions);
  M.NormEps = T->NormEpsKey.empty() ? T->NormEps : R.get(T->NormEpsKey, T->NormEps);
  M.Act = readActivation(R, *T);
  M.Tie = R.get("tie_word_embeddings", T->Tie);
  M.LearnedPositions = M.Family == ArchFamily::Gpt2 || M.Family == ArchFamily::Bert ||
                       M.Family == ArchFamily::Opt;
  // The decoders' forward builds a DynamicCache unless the caller passes use_cache=False
  // (Trainer does not); BERT as an encoder has none.
  M.UseCache = M.Family != ArchFamily::Bert && R.get("use_cache", true);
  M.Roberta = M.ModelType == "roberta" || M.ModelType == "xlm-roberta" ||
              M.ModelType == "camembert";
  M.DistilBert = M.ModelType == "distilbert";
  // pad_token_id matters to RoBERTa's positions and to a decoder's sequence classifier;
  // other models only name it (LLaMA's early configs say -1), so only those check it.
  const bool NeedsPad = M.Roberta || (M.Head == HeadKind::SequenceClassification &&
                                      M.Family != ArchFamily::Bert);
  if (const llvm::json::Value *Pad = R.present("pad_token_id")) {
    std::optional<int64_t> P = Pad->getAsInteger();
    if (P && *P >= 0 && *P < M.Vocab)
      M.PadToken = *P;
    else if (NeedsPad)
      R.fail(llvm::formatv("field 'pad_token_id' is {0}; expected a token id below vocab_size "
                           "{1}",
                           *Pad, M.Vocab));
  } else if (M.Roberta) {
    M.PadToken = Obj.get("pad_token_id") ? -1 : 1; // RobertaConfig's default; null: none
  }
  if (M.Roberta && M.PadToken < 0)
    R.fail("field 'pad_token_id' is null; RoBERTa numbers its positions after the padding "
           "token, so it needs one");
  if (M.Head == HeadKind::SequenceClassification || M.Head == HeadKind::TokenClassification) {
    // PretrainedConfig keeps num_labels as the size of id2label, which is what configs save.
    if (const llvm::json::Object *Labels = Obj.getObject("id2label"); Labels && !Labels->empty())
      M.NumLabels = static_cast<int64_t>(Labels->size());
    else
      M.NumLabels = R.size({"num_labels"}, "the number of classes", 2);
    // BERT's and RoBERTa's heads fall back on the hidden dropout; the decoders' token
    // classifiers on `hidden_dropout`, then 0.1 (GenericForTokenClassification).
    double Fallback = M.Family == ArchFamily::Bert ? R.get("hidden_dropout_prob", 0.1)
                      : M.Head == HeadKind::TokenClassification ? R.get("hidden_dropout", 0.1)
                                                                : 0.0;
    M.ClassifierDropout =
        !M.DistilBert ? R.get("classifier_dropout", Fallback)
        // DistilBERT's sequence head has its own probability; its token head, the model's.
        : M.Head == HeadKind::SequenceClassification ? R.get("seq_classif_dropout", 0.2)
                                                     : R.get("dropout", 0.1);
    if (M.ClassifierDropout < 0 || M.ClassifierDropout >= 1)
      R.fail(llvm::formatv("field 'classifier_dropout' is {0}; expected a probability in [0, 1)",
                           M.ClassifierDropout));
    if (std::string Problem = R.get<std::string>("problem_type", "");
        M.Head == HeadKind::SequenceClassification &&
        (Problem == "regression" || Problem == "multi_label_classification" ||
         (Problem.empty() && M.NumLabels == 1)))
      Diags.note("classification-loss", "problem_type",
                 (Problem.empty() ? std::string("one label: regression") : Problem) +
                     " trains with " +
                     (Problem == "multi_label_classification" ? "BCEWithLogitsLoss"
                                                              : "MSELoss") +
                     "; modelled as cross-entropy over the " + std::to_string(M.NumLabels) +
                     " logits per row (the losses differ by a few bytes per row)");
  }
  if (M.Head == HeadKind::MultipleChoice) {
    // A classifier of one output per choice; its dropout: BERT's classifier_dropout, else
    // the hidden dropout (RoBERTa's family: the hidden dropout), DistilBERT's
    // seq_classif_dropout.
    M.NumLabels = 1;
    const double Hidden = R.get("hidden_dropout_prob", 0.1);
    M.ClassifierDropout = M.DistilBert ? R.get("seq_classif_dropout", 0.2)
                          : M.Roberta  ? Hidden
                                       : R.get("classifier_dropout", Hidden);
    if (M.ClassifierDropout < 0 || M.ClassifierDropout >= 1)
      R.fail(llvm::formatv("the multiple-choice head's dropout is {0}; expected a probability "
                           "in [0, 1)",
                           M.ClassifierDropout));
  }
  if (M.Head == HeadKind::QuestionAnswering) {
    // The encoders' qa_outputs is nn.Linear(hidden, num_labels), split into start and end
    // logits (DistilBERT refuses any other count; BERT's unpacking fails); the decoders'
    // is nn.Linear(hidden, 2) whatever num_labels says.
    if (M.Family == ArchFamily::Bert) {
      const llvm::json::Object *Labels = Obj.getObject("id2label");
      int64_t Count = Labels && !Labels->empty()
                          ? static_cast<int64_t>(Labels->size())
                          : R.size({"num_labels"}, "the number of labels", 2);
      if (Count != 2)
        R.fail(llvm::formatv("field '{0}' gives {1} labels; a question-answering head splits "
                             "qa_outputs into start and end logits, so transformers needs 2",
                             Labels && !Labels->empty() ? "id2label" : "num_labels", Count));
    }
    M.NumLabels = 2;
    // DistilBERT drops out before qa_outputs (qa_dropout); the others go straight to it.
    M.ClassifierDropout = M.DistilBert ? R.get("qa_dropout", 0.1) : 0.0;
    if (M.ClassifierDropout < 0 || M.ClassifierDropout >= 1)
      R.fail(llvm::formatv("field 'qa_dropout' is {0}; expected a probability in [0, 1)",
                           M.ClassifierDropout));
  }
  // Released checkpoints stored quantized (gpt-oss's MXFP4 experts, DeepSeek-V3's block-wise
  // FP8) are trained loaded dequantized (Mxfp4Config / FineGrainedFP8Config with
  // dequantize=True); QLoRA's NF4 is a strategy of its own (--qlora).
  if (const llvm::json::Object *Q = Obj.getObject("quantization_config"))
    if (std::optional<llvm::StringRef> Method = Q->getString("quant_method");
        Method && (*Method == "mxfp4" || *Method == "fp8")) {
      M.CheckpointQuantization = Method->str();
      Diags.note("quantized-checkpoint", "quantization_config",
                 "the checkpoint stores weights quantized (" + Method->upper() +
                     "); modelled loaded dequantized (transformers' quantization config with "
                     "dequantize=True), every weight in the training precision");
    }

  switch (M.Family) {
  case ArchFamily::Llama:
    // Qwen2 hard-codes biases on q/k/v only, Qwen2-MoE has them unless qkv_bias is false;
    // Mistral, Mixtral and Phi-3 have none whatever the config says.
    if (M.ModelType == "qwen2") {
      M.QkvBias = true;
    } else if (M.ModelType == "qwen2_moe") {
      M.QkvBias = R.get("qkv_bias", true);
    } else if (M.ModelType == "starcoder2") {
      M.QkvBias = M.OutBias = M.MlpBias = R.get("use_bias", true);
      M.LayerNormBlocks = M.PlainMlp = true;
      M.EmbeddingDropout = R.get("embedding_dropout", 0.0);
      if (M.EmbeddingDropout < 0 || M.EmbeddingDropout >= 1)
        R.fail(llvm::formatv("field 'embedding_dropout' is {0}; expected a probability in "
                             "[0, 1)",
                             M.EmbeddingDropout));
    } else if (M.ModelType == "stablelm") {
      // StableLM: LayerNorms with biases, LLaMA's gated MLP without biases, q/k/v biases
      // when use_qkv_bias, o_proj without; the first partial_rotary_factor of each head
      // rotated.
      M.QkvBias = R.get("use_qkv_bias", false);
      M.LayerNormBlocks = true;
      M.MlpDropout = R.get("hidden_dropout", 0.0);
      if (M.MlpDropout < 0 || M.MlpDropout >= 1)
        R.fail(llvm::formatv("field 'hidden_dropout' is {0}; expected a probability in [0, 1)",
                             M.MlpDropout));
      // StableLM-2-12B's per-head q/k LayerNorms and parallel residual are not modelled.
      if (R.get("qk_layernorm", false))
        R.fail("field 'qk_layernorm' is true: StableLM's per-head q and k LayerNorms are not "
               "modelled (StableLM-2-1.6B and StableLM-3B-4E1T have none)");
      if (R.get("use_parallel_residual", false))
        R.fail("field 'use_parallel_residual' is true: StableLM's parallel residual is not "
               "modelled (StableLM-2-1.6B and StableLM-3B-4E1T use the sequential one)");
    } else if (M.ModelType != "mistral" && M.ModelType != "mixtral" && M.ModelType != "phi3") {
      M.QkvBias = M.OutBias = R.get("attention_bias", M.ModelType == "gpt_oss");
      M.MlpBias = (M.ModelType == "llama" || M.ModelType == "smollm3") &&
                  R.get("mlp_bias", false);
    }
    M.GemmaNorm =
        M.ModelType == "gemma" || M.ModelType == "gemma2" || M.ModelType == "gemma3_text";
    M.QkNorm = M.ModelType == "qwen3" || M.ModelType == "qwen3_moe" ||
               M.ModelType == "gemma3_text" || M.ModelType == "olmo2" || M.ModelType == "olmoe";
    M.PostNormsOnly = M.QkNormWhole = M.NormWeightInFp32 = M.RopeInFp32 =
        M.ModelType == "olmo2";
    // OLMoE normalises the whole q and k projections too, with LLaMA's RMSNorm and rotary.
    M.QkNormWhole |= M.ModelType == "olmoe";
    if (M.ModelType == "gpt_oss")
      readGptOss(R, Obj, M);
    if (M.ModelType == "deepseek_v3" || M.ModelType == "deepseek_v2")
      readMla(R, Obj, M);
    if (M.ModelType == "granite") {
      M.Granite = true;
      M.EmbeddingMultiplier = R.get("embedding_multiplier", 1.0);
      M.ResidualMultiplier = R.get("residual_multiplier", 1.0);
      M.AttentionMultiplier = R.get("attention_multiplier", 1.0);
      M.LogitsScaling = R.get("logits_scaling", 1.0);
      if (M.LogitsScaling == 0)
        R.fail("field 'logits_scaling' is 0; expected a nonzero divisor");
    }
    if (M.ModelType == "gemma2" || M.ModelType == "gemma3_text")
      readGemma(R, Obj, M, Diags);
    if (M.ModelType == "mixtral" || M.ModelType == "olmoe" || M.ModelType == "gpt_oss" ||
        M.ModelType == "deepseek_v3" || M.ModelType == "deepseek_v2" ||
        M.ModelType.ends_with("_moe"))
      readMoe(R, Obj, M, Diags);
    M.FusedQkv = M.FusedGateUp = M.ModelType == "phi3";
    if (M.ModelType == "smollm3")
      readSmolLm3(R, Obj, M);
    // Phi-3 rotates the first partial_rotary_factor of each head (Phi-4-mini: 0.75).
    readRope(R, Obj, M, "rope_theta",
             M.ModelType == "phi3" || M.ModelType == "stablelm" ? "partial_rotary_factor" : "",
             M.ModelType == "stablelm" ? 0.25 : 1.0); // StableLmConfig's default fraction
    if (M.Mla) // DeepSeek rotates qk_rope_head_dim channels of each head's 192
      M.RotaryDim = M.QkRopeDim;
    // null (Mistral v0.2 on) or absent: no window. Qwen2 and Qwen3 use it only when asked.
    if (M.ModelType == "mistral" || M.ModelType == "mixtral" || M.ModelType == "phi3" ||
        M.ModelType == "starcoder2" ||
        (M.ModelType.starts_with("qwen") && R.get("use_sliding_window", false)))
      M.SlidingWindow = Obj.getInteger("sliding_window").value_or(0);
    break;
  case ArchFamily::Gpt2:
    M.QkvBias = M.OutBias = M.MlpBias = true;
    M.ScaleAttnWeights = R.get("scale_attn_weights", true);
    M.ScaleByInverseLayerIdx = R.get("scale_attn_by_inverse_layer_idx", false);
    if (R.get("add_cross_attention", false))
      Diags.warning("unsupported-field", "add_cross_attention",
                    "cross-attention blocks are not modelled (no encoder states are fed)");
    break;
  case ArchFamily::GptNeoX:
    M.QkvBias = M.OutBias = R.get("attention_bias", true);
    M.MlpBias = true;
    M.ParallelResidual = R.get("use_parallel_residual", true);
    readRope(R, Obj, M, "rotary_emb_base", "rotary_pct", 0.25);
    break;
  case ArchFamily::Phi:
    M.QkvBias = M.OutBias = M.MlpBias = M.LmHeadBias = true;
    // qk_layernorm: a LayerNorm over each head of q and k, hidden_size // heads wide in
    // PhiAttention whatever head_dim says (the model fails to run where they differ).
    M.QkNorm = R.get("qk_layernorm", false);
    if (M.QkNorm && M.HeadDim * M.Heads != M.Hidden)
      R.fail(llvm::formatv("field 'qk_layernorm' is true with head_dim {0}: Phi's q and k "
                           "norms are hidden_size / num_attention_heads = {1} wide, so "
                           "transformers cannot run this config",
                           M.HeadDim, M.Hidden / M.Heads));
    readRope(R, Obj, M, "rope_theta", "partial_rotary_factor", 0.5);
    break;
  case ArchFamily::GptJ:
    // GPTJAttention's projections have no biases; fc_in, fc_out and lm_head have.
    M.MlpBias = M.LmHeadBias = true;
    M.EmbeddingDropout = R.get("embd_pdrop", 0.0);
    if (M.EmbeddingDropout < 0 || M.EmbeddingDropout >= 1)
      R.fail(llvm::formatv("field 'embd_pdrop' is {0}; expected a probability in [0, 1)",
                           M.EmbeddingDropout));
    // rotary_dim: the channels of each head rotated (null: all of them).
    M.RotaryDim = Obj.get("rotary_dim") && Obj.get("rotary_dim")->kind() == llvm::json::Value::Null
                      ? M.HeadDim
                      : R.size({"rotary_dim"}, "the rotated channels of a head", 64);
    if (M.RotaryDim % 2 != 0 || M.RotaryDim > M.HeadDim)
      R.fail(llvm::formatv("field 'rotary_dim' is {0}; expected an even number of channels, at "
                           "most the head width {1}",
                           M.RotaryDim, M.HeadDim));
    Diags.note("eager-attention", "",
               "GPT-J's eager attention (--attention=eager) upcasts q and k to fp32 in a 16-bit "
               "model, which is not modelled; the default SDPA attention is");
    break;
  case ArchFamily::Opt:
    M.QkvBias = M.OutBias = M.MlpBias = R.get("enable_bias", true);
    M.NormAfter = !R.get("do_layer_norm_before", true);
    M.FinalNorm = !M.NormAfter && !R.get("_remove_final_layer_norm", false);
    M.EmbedWidth = R.size({"word_embed_proj_dim"}, "the word embeddings' width", M.Hidden);
    if (!R.get("layer_norm_elementwise_affine", true))
      R.fail("field 'layer_norm_elementwise_affine' is false: LayerNorms without weights are "
             "not modelled (every released OPT config has them)");
    if (double LayerDrop = R.get("layerdrop", 0.0); LayerDrop > 0)
      Diags.warning("unsupported-field", "layerdrop",
                    "LayerDrop skips each layer with probability " +
                        llvm::formatv("{0}", LayerDrop).str() +
                        " in training; modelled with every layer run (the step's largest)");
    break;
  case ArchFamily::Bert: {
    M.QkvBias = M.OutBias = M.MlpBias = true;
    if (M.DistilBert) { // no token types
      M.FfnDropout = R.get("dropout", 0.1);
      if (R.get("sinusoidal_pos_embds", false))
        Diags.warning("unsupported-field", "sinusoidal_pos_embds",
                      "sinusoidal position embeddings (a frozen table) are modelled as a "
                      "trained one: its gradient and optimizer state are counted");
      break;
    }
    M.TypeVocab = R.size({"type_vocab_size"}, "the number of token types", 2);
    std::string PosType = R.get<std::string>("position_embedding_type", "absolute");
    if (PosType != "absolute")
      Diags.warning("unsupported-field", "position_embedding_type",
                    "'" + PosType + "' position embeddings are not modelled; absolute assumed");
    break;
  }
  }
  if (M.Heads % M.KvHeads != 0)
    R.fail(llvm::formatv("num_attention_heads {0} is not a multiple of num_key_value_heads {1}",
                         M.Heads, M.KvHeads));
  if (llvm::Error E = R.takeError())
    return E;
  return M;
}

} // namespace trainmem::hf
