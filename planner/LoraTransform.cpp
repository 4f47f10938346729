//===- LoraTransform.cpp - LoRA and QLoRA as graph transformations --------------===//
//
// PEFT (peft/tuners/lora/layer.py, Linear.forward) computes
//   result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling,  scaling = alpha / r
// with lora_A: in -> r and lora_B: r -> out, both without bias, and freezes every base
// parameter (bias="none"). The adapter weights are created in the base layer's dtype.
// bitsandbytes (functional.quantize_4bit, QuantState) stores a 4-bit weight as packed
// nibbles (N/2 bytes), one absmax per 64 values, and with compress_statistics those
// absmax are themselves quantized to uint8 with an fp32 absmax per 256 of them, a
// 256-entry fp32 code and an fp32 offset; the NF4 code adds 16 fp32 values.
//
//===----------------------------------------------------------------------------===//
#include "planner/LoraTransform.h"

#include "analyzer/StoredTensorClassifier.h"

#include "llvm/ADT/StringExtras.h"

#include <algorithm>
#include <tuple>
#include <set>

namespace trainmem {
namespace {

struct LinearSite {
  NodeId MatMul = NoNode;
  NodeId Last = NoNode;   ///< the bias Add when there is one, else the MatMul
  TensorId Input = NoTensor, Output = NoTensor, Weight = NoTensor;
  std::string Module;     ///< dotted module path ("h.0.attn.c_attn")
};

std::vector<LinearSite> linearSites(const Graph &G) {
  std::vector<LinearSite> Sites;
  for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N) {
    const Node &Nd = G.Nodes[N];
    if ((Nd.OpType != "MatMul" && Nd.OpType != "Gemm") || Nd.Inputs.size() < 2)
      continue;
    TensorId W = weightParameter(G, Nd.Inputs[1]);
    if (W == NoTensor || weightParameter(G, Nd.Inputs[0]) != NoTensor)
      continue;
    // A mixture-of-experts router is not an nn.Linear: PEFT neither adapts it under
    // all-linear nor accepts it as a target.
    if (llvm::is_contained(G.RouterWeights, W))
      continue;
    LinearSite S{N, N, Nd.Inputs[0], Nd.Outputs[0], W, Nd.LayerPath};
    const auto &C = G.Tensors[S.Output].Consumers;
    if (Nd.OpType == "MatMul" && C.size() == 1 && G.Nodes[C[0]].OpType == "Add") {
      const Node &Add = G.Nodes[C[0]];
      TensorId B = Add.Inputs[0] == S.Output ? Add.Inputs[1] : Add.Inputs[0];
      if (isParameterTensor(G, B) && G.Tensors[B].Shape.size() == 1) {
        S.Last = C[0];
        S.Output = Add.Outputs[0];
      }
    }
    if (S.Module.empty())
      S.Module = layerPathFromName(G.Tensors[W].Name, true);
    Sites.push_back(S);
  }
  return Sites;
}

bool matchesTarget(const std::string &Module, const std::string &Target) {
  // PEFT matches a target name against the end of the module's dotted path.
  return Module == Target ||
         (Module.size() > Target.size() && llvm::StringRef(Module).endswith(Target) &&
          Module[Module.size() - Target.size() - 1] == '.');
}

std::string lastComponent(const std::string &Module) {
  size_t Dot = Module.rfind('.');
  return Dot == std::string::npos ? Module : Module.substr(Dot + 1);
}

} // namespace

std::vector<std::string> defaultLoraTargets(const Graph &G) {
  // peft/utils/constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING. A
  // Hugging Face model type missing from it (peft 0.21: phi3, olmo2, granite, qwen2_moe,
  // qwen3_moe, olmoe, gpt_oss, deepseek_v2, deepseek_v3, distilbert, camembert, smollm3,
  // starcoder2;
  // measured for distilbert) has no default: get_peft_model
  // raises, so the user must name the modules here too (measured for gpt_oss with peft
  // 0.21.2: "Please specify `target_modules`"). So does mixtral's, measured with peft 0.21.2
  // and transformers 5.24 (its conversion of v4 configs for v5's fused experts leaves it no
  // target modules).
  if (G.SourceFormat == "hf-config" &&
      (G.Architecture == "phi3" || G.Architecture == "olmo2" || G.Architecture == "granite" ||
       G.Architecture == "mixtral" || G.Architecture == "qwen2_moe" ||
       G.Architecture == "qwen3_moe" || G.Architecture == "olmoe" ||
       G.Architecture == "gpt_oss" || G.Architecture == "deepseek_v2" ||
       G.Architecture == "deepseek_v3" || G.Architecture == "distilbert" ||
       G.Architecture == "camembert" || G.Architecture == "smollm3" ||
       G.Architecture == "starcoder2"))
    return {};
  if (G.SourceFormat == "hf-config" && G.Architecture == "phi")
    return {"q_proj", "v_proj", "fc1", "fc2"}; // PEFT's own entry for Phi's model type
  std::set<std::string> Names;
  for (const LinearSite &S : linearSites(G))
    Names.insert(lastComponent(S.Module));
  if (Names.count("q_proj") && Names.count("v_proj"))
    return {"q_proj", "v_proj"};
  if (Names.count("c_attn"))
    return {"c_attn"};
  if (Names.count("query_key_value"))
    return {"query_key_value"};
  if (Names.count("query") && Names.count("value"))
    return {"query", "value"};
  return {};
}

int64_t nf4StorageBytes(int64_t Elements) {
  int64_t Packed = (Elements + 1) / 2;
  int64_t Blocks = (Elements + 63) / 64;
  int64_t NestedBlocks = (Blocks + 255) / 256;
  return Packed + Blocks /* uint8 absmax */ + NestedBlocks * 4 /* fp32 absmax of absmax */ +
         256 * 4 /* nested code */ + 4 /* offset */ + 16 * 4 /* NF4 code */;
}

std::vector<std::string> modulesToSave(const Graph &G, const LoraSetup &Lora) {
  if (!Lora.ModulesToSave)
    return G.ClassifierModules;
  // A list of one's own: PEFT's classification task types extend it with the head (none:
  // the emitted config then names no classification task, and the head stays frozen).
  std::vector<std::string> Modules = *Lora.ModulesToSave;
  if (!Modules.empty())
    for (const std::string &M : G.ClassifierModules)
      if (!llvm::is_contained(Modules, M))
        Modules.push_back(M);
  return Modules;
}

bool inModulesToSave(llvm::StringRef ParamName, const std::vector<std::string> &Modules) {
  if (ParamName.contains(".original_module."))
    return false;
  // The module or any module holding it (RoBERTa's `classifier` holds dense and out_proj).
  for (llvm::StringRef Module = ParamName.rsplit('.').first; !Module.empty();
       Module = Module.contains('.') ? Module.rsplit('.').first : llvm::StringRef())
    if (llvm::any_of(Modules, [&](const std::string &M) {
          // PEFT's test is the string's end (`key.endswith(target_key)`): "classifier"
          // also finds DistilBERT's pre_classifier.
          return Module.endswith(M);
        }))
      return true;
  return false;
}

namespace {
/// PEFT's test for a module named in the config's modules_to_save when the adapters are
/// injected (`(^|.*\.)name($|\..*)` in check_target_module_exists): the name is the
/// module or an ancestor, whole between dots.
bool namedAtInjection(llvm::StringRef Module, llvm::StringRef Name) {
  for (llvm::StringRef M = Module; !M.empty();
       M = M.contains('.') ? M.rsplit('.').first : llvm::StringRef())
    if (M == Name || M.endswith(("." + Name).str()))
      return true;
  return false;
}
} // namespace

std::vector<std::string> headLinearsPeftWouldAdapt(const Graph &G) {
  std::vector<std::string> Out;
  if (G.PeftTaskType.empty())
    return Out;
  for (const LinearSite &S : linearSites(G)) {
    if (!inModulesToSave(S.Module + ".weight", G.ClassifierModules))
      continue;
    // SEQ_CLS names its head before the injection, which then skips it and what it holds.
    if (G.PeftTaskType == "SEQ_CLS" &&
        llvm::any_of(G.ClassifierModules,
                     [&](const std::string &M) { return namedAtInjection(S.Module, M); }))
      continue;
    if (!llvm::is_contained(Out, S.Module))
      Out.push_back(S.Module);
  }
  return Out;
}

llvm::Expected<Graph> applyLora(const Graph &Base, const LoraSetup &Lora) {
  std::vector<std::string> Targets = Lora.Targets;
  if (Targets.empty())
    Targets = defaultLoraTargets(Base);
  bool AllLinear = Targets.size() == 1 && Targets[0] == "all-linear";
  std::vector<LinearSite> Sites = linearSites(Base);
  const std::vector<std::string> Saved = modulesToSave(Base, Lora);
  auto Available = [&Sites] { // the linear modules, for the errors
    std::set<std::string> Names;
    for (const LinearSite &S : Sites)
      Names.insert(lastComponent(S.Module));
    return llvm::join(Names, ", ");
  };
  if (Targets.empty())
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "--lora-targets: no PEFT default for this model; name the modules (linear layers: %s) "
        "or use all-linear",
        Available().c_str());

  // The chosen sites by the node that ends them (the bias Add, else the MatMul).
  std::vector<const LinearSite *> EndingAt(Base.Nodes.size(), nullptr);
  size_t Chosen = 0;
  // A module that trains whole (modules_to_save) is not also adapted. PEFT skips the
  // modules its config's modules_to_save names when it injects the adapters: the user's
  // list and SEQ_CLS's head (and what they hold). TOKEN_CLS and QUESTION_ANS add their
  // head after the injection, and ModulesToSaveWrapper then refuses one that LoRA adapted
  // (a TypeError; as for DistilBERT's pre_classifier, which SEQ_CLS's "classifier" finds
  // by the string's end only): all-linear leaves those out here and an emitted config
  // names them in exclude_modules; a target naming one is PEFT's error (measured, peft
  // 0.21). all-linear also leaves out the output layer (the output embedding; a
  // classifier's head is not one: without a task type PEFT adapts it).
  const bool HeadTrains = llvm::any_of(Base.ClassifierModules, [&](const std::string &M) {
    return llvm::is_contained(Saved, M);
  });
  std::vector<std::string> AtInjection;
  if (Lora.ModulesToSave)
    AtInjection = *Lora.ModulesToSave;
  if (HeadTrains && Base.PeftTaskType == "SEQ_CLS")
    llvm::append_range(AtInjection, Base.ClassifierModules);
  const std::vector<std::string> Refused =
      HeadTrains ? headLinearsPeftWouldAdapt(Base) : std::vector<std::string>{};
  for (const LinearSite &S : Sites) {
    if (llvm::any_of(AtInjection,
                     [&](const std::string &M) { return namedAtInjection(S.Module, M); }))
      continue;
    const bool Wrapped = llvm::is_contained(Refused, S.Module);
    bool Match = false;
    if (AllLinear)
      Match = !Wrapped &&
              !(Base.Tensors[S.Output].IsGraphOutput && Base.PeftTaskType.empty());
    else
      for (const std::string &T : Targets)
        Match |= matchesTarget(S.Module, T);
    if (Match && Wrapped)
      return llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          "--lora-targets: '%s' is both a LoRA target and, under PEFT's %s task type, a "
          "module that trains whole (modules_to_save); PEFT refuses that (\"modules_to_save "
          "cannot be applied to modules of type lora.Linear\"): leave it out of the "
          "targets, or --lora-modules-to-save=none to keep the head frozen",
          S.Module.c_str(), Base.PeftTaskType.c_str());
    if (Match) {
      EndingAt[S.Last] = &S;
      ++Chosen;
    }
  }
  if (Chosen == 0 && Sites.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--lora-targets=%s matches no linear layer of %s: it has "
                                   "none (no MatMul or Gemm takes a parameter as its weight)",
                                   llvm::join(Targets, ",").c_str(), Base.Name.c_str());
  if (Chosen == 0 && AllLinear)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--lora-targets=all-linear matches no linear layer of %s: "
                                   "its only linear layers (%s) produce its output, which "
                                   "all-linear leaves out as PEFT does",
                                   Base.Name.c_str(), Available().c_str());
  if (Chosen == 0)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--lora-targets=%s matches no linear layer of %s (linear "
                                   "modules: %s)",
                                   llvm::join(Targets, ",").c_str(), Base.Name.c_str(),
                                   Available().c_str());

  // An adapter is shaped by its linear's input and output; where inference left either
  // unknown (the unknown-shape warning says where it stopped), there is nothing to size
  // it by.
  for (const LinearSite *S : EndingAt)
    if (S && (!Base.Tensors[S->Input].ShapeKnown || Base.Tensors[S->Input].Shape.empty() ||
              !Base.Tensors[S->Output].ShapeKnown || Base.Tensors[S->Output].Shape.empty()))
      return llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          "a LoRA adapter on '%s' of %s needs the shapes of its input '%s' and output '%s', "
          "which shape inference left unknown (see the unknown-shape warning; --dim or "
          "--input may bind what it needs)",
          S->Module.c_str(), Base.Name.c_str(), Base.Tensors[S->Input].Name.c_str(),
          Base.Tensors[S->Output].Name.c_str());

  Graph G = Base;
  auto AddTensor = [&G](std::string Name, std::vector<int64_t> Shape, DType Type, TensorKind Kind,
                        bool Stored) {
    Tensor T;
    T.Name = std::move(Name);
    T.Shape = std::move(Shape);
    T.ShapeKnown = true;
    T.Type = Type;
    T.Kind = Kind;
    T.Stored = Stored;
    return G.addTensor(std::move(T));
  };
  // Each adapter adds at most 7 nodes and 9 tensors: room for them up front.
  std::vector<Node> NewNodes;
  NewNodes.reserve(Base.Nodes.size() + 7 * Chosen);
  G.Tensors.reserve(Base.Tensors.size() + 9 * Chosen);
  std::vector<TensorId> Redirect(Base.Tensors.size(), NoTensor); // base output -> base + adapter
  for (NodeId N = 0; N < static_cast<NodeId>(Base.Nodes.size()); ++N) {
    NewNodes.push_back(std::move(G.Nodes[N])); // G is Base's copy: its nodes move
    for (TensorId &In : NewNodes.back().Inputs)
      if (In != NoTensor && Redirect[In] != NoTensor)
        In = Redirect[In];
    if (!EndingAt[N])
      continue;
    const LinearSite &S = *EndingAt[N];
    const Tensor &X = Base.Tensors[S.Input], &Y = Base.Tensors[S.Output];
    DType Type = Base.Tensors[S.Weight].Type;
    int64_t In = X.Shape.back(), Out = Y.Shape.back(), R = Lora.Rank;
    std::string Prefix = "/" + S.Module;
    std::replace(Prefix.begin(), Prefix.end(), '.', '/');
    auto MakeNode = [&](const std::string &Op, const std::string &Sub,
                        std::vector<TensorId> Inputs, TensorId Output) {
      Node Nd;
      Nd.Name = Prefix + "/" + Sub + "/" + Op;
      Nd.OpType = Op;
      Nd.Inputs = std::move(Inputs);
      Nd.Outputs = {Output};
      Nd.LayerPath = S.Module + "." + Sub;
      NewNodes.push_back(std::move(Nd));
    };
    auto Shaped = [&X](int64_t Last) {
      std::vector<int64_t> Sh = X.Shape;
      Sh.back() = Last;
      return Sh;
    };
    TensorId A = AddTensor(S.Module + ".lora_A.weight", {In, R}, Type, TensorKind::Parameter, true);
    TensorId B = AddTensor(S.Module + ".lora_B.weight", {R, Out}, Type, TensorKind::Parameter, true);
    G.AdapterParameters.push_back(A);
    G.AdapterParameters.push_back(B);
    // PEFT keeps the adapters in fp32 on a 16-bit model (autocast_adapter_dtype) and casts
    // the input to their dtype, the sum back to the base output's (result.to(
    // torch_result_dtype)): CastLike both ways, each the tensor itself where the dtypes
    // already agree.
    TensorId Src = AddTensor(Prefix + "/lora_A/CastLike_output_0", X.Shape, Type,
                             TensorKind::Activation, false);
    MakeNode("CastLike", "lora_A", {S.Input, A}, Src);
    if (Lora.Dropout > 0) {
      TensorId D = AddTensor(Prefix + "/lora_dropout/Dropout_output_0", X.Shape, X.Type,
                             TensorKind::Activation, false);
      MakeNode("Dropout", "lora_dropout", {Src}, D);
      Src = D;
    }
    TensorId HA = AddTensor(Prefix + "/lora_A/MatMul_output_0", Shaped(R), Y.Type,
                            TensorKind::Activation, false);
    MakeNode("MatMul", "lora_A", {Src, A}, HA);
    TensorId HB = AddTensor(Prefix + "/lora_B/MatMul_output_0", Y.Shape, Y.Type,
                            TensorKind::Activation, false);
    MakeNode("MatMul", "lora_B", {HA, B}, HB);
    TensorId Scale = AddTensor(Prefix + "/lora_scaling", {}, DType::Float32, TensorKind::Constant,
                               true);
    G.Tensors[Scale].FloatValues = {Lora.Alpha / static_cast<double>(R)};
    TensorId Scaled = AddTensor(Prefix + "/Mul_output_0", Y.Shape, Y.Type,
                                TensorKind::Activation, false);
    MakeNode("Mul", "lora_scaling", {HB, Scale}, Scaled);
    TensorId Added = AddTensor(Prefix + "/lora_Add_output_0", Y.Shape, Y.Type,
                               TensorKind::Activation, false);
    TensorId Sum = AddTensor(Prefix + "/lora_CastLike_output_0", Y.Shape, Y.Type,
                             Y.IsGraphOutput ? TensorKind::Output : TensorKind::Activation, false);
    for (auto [Op, Operands, Result] : {std::tuple<const char *, std::vector<TensorId>, TensorId>{
                                            "Add", {S.Output, Scaled}, Added},
                                        {"CastLike", {Added, S.Output}, Sum}}) {
      Node Nd;
      Nd.Name = Prefix + "/lora/" + Op;
      Nd.OpType = Op;
      Nd.Inputs = std::move(Operands);
      Nd.Outputs = {Result};
      Nd.LayerPath = S.Module;
      NewNodes.push_back(std::move(Nd));
    }
    Redirect[S.Output] = Sum; // a base tensor: ids below Base.Tensors.size()
    G.AdapterSums.emplace_back(S.Output, Sum);
    if (Y.IsGraphOutput) {
      G.Tensors[S.Output].IsGraphOutput = false;
      G.Tensors[Sum].IsGraphOutput = true;
      for (TensorId &O : G.Outputs)
        if (O == S.Output)
          O = Sum;
    }
  }
  G.Nodes = std::move(NewNodes);
  // modules_to_save (a classification head by PEFT's SEQ_CLS / TOKEN_CLS / QUESTION_ANS,
  // or the user's list) train beside the adapters: ModulesToSaveWrapper trains a copy of
  // each module and keeps the original, frozen. The graph's module is the copy; the
  // originals are stored beside it.
  for (TensorId T = 0; T < static_cast<TensorId>(Base.Tensors.size()); ++T) {
    const Tensor &P = Base.Tensors[T];
    if (P.Kind != TensorKind::Parameter || !inModulesToSave(P.Name, Saved))
      continue;
    auto [Module, Leaf] = llvm::StringRef(P.Name).rsplit('.');
    TensorId Original = AddTensor((Module + ".original_module." + Leaf).str(), P.Shape, P.Type,
                                  TensorKind::Parameter, true);
    // A module tied to this one (a tied LM head reading the embedding) keeps the original:
    // only the wrapped module runs the trainable copy (PEFT's default, without
    // ensure_weight_tying).
    for (Node &Nd : G.Nodes)
      if (!llvm::StringRef(Nd.LayerPath).startswith(Module))
        for (TensorId &In : Nd.Inputs)
          if (In == T) {
            In = Original;
            // The head shares the original, not the trained copy: two parameters.
            G.DeclaredTieWordEmbeddings = false;
          }
  }
  for (const std::string &M : Saved)
    if (llvm::none_of(Base.Tensors, [&](const Tensor &P) {
          return P.Kind == TensorKind::Parameter && inModulesToSave(P.Name, {M});
        }))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "--lora-modules-to-save: '%s' matches no module of %s "
                                     "with parameters (expected module names such as "
                                     "embed_tokens, lm_head, classifier)",
                                     M.c_str(), Base.Name.c_str());
  if (Lora.QLora) {
    // transformers' bitsandbytes integration quantizes every nn.Linear but the output
    // embedding and the module of the model's last parameter (get_keys_to_not_convert: a
    // classifier's or qa_outputs' head, whose output is not the graph's when a pooling or
    // a split follows); embeddings and norms stay in 16/32 bits. The builders make a
    // model's parameters in transformers' order, the head's last.
    llvm::StringRef LastModule;
    for (const Tensor &T : llvm::reverse(Base.Tensors))
      if (T.Kind == TensorKind::Parameter) {
        LastModule = llvm::StringRef(T.Name).rsplit('.').first;
        break;
      }
    for (const LinearSite &S : Sites) {
      if (Base.Tensors[S.Output].IsGraphOutput || S.Module == LastModule)
        continue;
      G.Quantized[S.Weight] = {"nf4", nf4StorageBytes(Base.Tensors[S.Weight].numElements()),
                               DType::BFloat16};
    }
  }
  if (!G.finalize())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "internal error: the LoRA graph has a cycle");
  G.Diags.note("lora", "",
               std::to_string(Chosen) + " linear layers get LoRA adapters (r=" +
                   std::to_string(Lora.Rank) + ", targets " + llvm::join(Targets, ",") +
                   (Lora.QLora ? "; base linear weights in NF4" : "") + ")");
  if (!Saved.empty())
    G.Diags.note("lora-modules-to-save", "",
                 llvm::join(Saved, ", ") + (Saved.size() == 1 ? " trains" : " train") +
                     " whole beside the adapters (PEFT's " +
                     (Lora.ModulesToSave ? std::string("modules_to_save")
                                         : Base.PeftTaskType + " task type") +
                     "): each a trainable copy beside its frozen original" +
                     (Lora.ModulesToSave ? "" : "; --lora-modules-to-save=none keeps the head "
                                                "frozen"));
  return G;
}

} // namespace trainmem
