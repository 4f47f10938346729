//===- OnnxImporter.cpp - ONNX file -> graph IR ----------------------------------===//
//
// Reads an ONNX model without its payloads, inlines If branches (the larger one, by
// stored bytes), binds symbolic dims from --dim / --input, runs ONNX's own shape
// inference with data propagation, then builds the IR: Constant and ConstantOfShape
// weights become stored tensors, parameters passed as graph inputs (ONNX Runtime
// training graphs) are recognised, and shapes ONNX cannot infer (com.microsoft ops)
// come from the ops' documented contracts in OnnxShapeFallback.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/OnnxModelReader.h"
#include "analyzer/OnnxSchemas.h"
#include "analyzer/OnnxShapeFallback.h"
#include "analyzer/OnnxShapeInference.h"
#include "analyzer/StoredTensorClassifier.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Path.h"

#include <onnx/defs/schema.h>

#include <map>
#include <set>

namespace trainmem {
namespace {

llvm::Error fileError(const std::string &Path, const std::string &Msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s", Path.c_str(),
                                 Msg.c_str());
}

int64_t tensorProtoBytes(const onnx::TensorProto &T) {
  int64_t N = 1;
  for (int64_t D : T.dims())
    N *= D;
  return dtypeBytes(dtypeFromOnnx(T.data_type()), N);
}

/// Stored bytes of a subgraph (initializers and Constant tensors, nested graphs too):
/// the measure used to pick the larger If branch.
int64_t storedBytes(const onnx::GraphProto &G) {
  int64_t Bytes = 0;
  for (const auto &I : G.initializer())
    Bytes += tensorProtoBytes(I);
  for (const auto &N : G.node())
    for (const auto &A : N.attribute()) {
      if (A.has_t())
        Bytes += tensorProtoBytes(A.t());
      if (A.has_g())
        Bytes += storedBytes(A.g());
    }
  return Bytes;
}

/// Replaces every If node by the nodes of its larger branch, renaming the names the
/// branch defines so two inlined branches never collide. Branch outputs reach the If's
/// outputs through Identity nodes.
void inlineIfNodes(onnx::GraphProto &G, OnnxFile &File, Diagnostics &Diags, int &Counter) {
  // Most graphs hold no If node anywhere: leave their node list as it is.
  bool MayHoldIf = false;
  for (const onnx::NodeProto &N : G.node()) {
    MayHoldIf |= N.op_type() == "If" && N.domain().empty();
    for (const auto &A : N.attribute())
      MayHoldIf |= A.has_g();
    if (MayHoldIf)
      break;
  }
  if (!MayHoldIf)
    return;
  // On the graph's arena, so that moving a node in and swapping the list back copy nothing.
  google::protobuf::RepeatedPtrField<onnx::NodeProto> NewNodes(G.GetArena());
  for (onnx::NodeProto &N : *G.mutable_node()) {
    if (N.op_type() != "If" || !N.domain().empty()) {
      for (auto &A : *N.mutable_attribute()) // Loop/Scan bodies may hold If nodes too
        if (A.has_g())
          inlineIfNodes(*A.mutable_g(), File, Diags, Counter);
      *NewNodes.Add() = std::move(N);
      continue;
    }
    const onnx::GraphProto *Then = nullptr, *Else = nullptr;
    for (auto &A : *N.mutable_attribute()) {
      if (A.name() == "then_branch")
        Then = A.mutable_g();
      else if (A.name() == "else_branch")
        Else = A.mutable_g();
    }
    if (!Then || !Else) {
      Diags.warning("if-malformed", N.name(), "If node without both branches; kept as is");
      *NewNodes.Add() = std::move(N);
      continue;
    }
    int64_t ThenBytes = storedBytes(*Then), ElseBytes = storedBytes(*Else);
    bool TakeThen = ThenBytes > ElseBytes ||
                    (ThenBytes == ElseBytes && Then->node_size() >= Else->node_size());
    onnx::GraphProto Branch = TakeThen ? *Then : *Else;
    inlineIfNodes(Branch, File, Diags, Counter);
    // The counter keeps prefixes unique even when node names repeat or are empty.
    std::string Prefix = (N.name().empty() ? "If" : N.name()) + "#" + std::to_string(Counter) +
                         "/" + (TakeThen ? "then" : "else") + "/";
    ++Counter;
    std::map<std::string, std::string> Renamed;
    auto Rename = [&](const std::string &Old) {
      auto [It, New] = Renamed.emplace(Old, Prefix + Old);
      if (New) {
        auto P = File.Payloads.find(Old);
        if (P != File.Payloads.end())
          File.Payloads[It->second] = P->second;
      }
      return It->second;
    };
    for (auto &Init : *Branch.mutable_initializer()) {
      Init.set_name(Rename(Init.name()));
      *G.add_initializer() = Init;
    }
    for (auto &BN : *Branch.mutable_node())
      for (auto &Out : *BN.mutable_output())
        if (!Out.empty())
          Out = Rename(Out);
    for (auto &BN : *Branch.mutable_node()) {
      for (auto &In : *BN.mutable_input()) {
        auto It = Renamed.find(In);
        if (It != Renamed.end())
          In = It->second;
      }
      *NewNodes.Add() = std::move(BN);
    }
    for (int I = 0; I < N.output_size() && I < Branch.output_size(); ++I) {
      onnx::NodeProto *Id = NewNodes.Add();
      Id->set_op_type("Identity");
      Id->set_name(Prefix + "Identity_" + std::to_string(I));
      auto It = Renamed.find(Branch.output(I).name());
      Id->add_input(It != Renamed.end() ? It->second : Branch.output(I).name());
      Id->add_output(N.output(I));
    }
    Diags.note("if-branch", N.name(),
               std::string("If node: accounted the ") + (TakeThen ? "then" : "else") +
                   " branch (" + std::to_string(std::max(ThenBytes, ElseBytes)) +
                   " stored bytes against " + std::to_string(std::min(ThenBytes, ElseBytes)) +
                   "), the larger one");
  }
  G.mutable_node()->Swap(&NewNodes);
}

/// Graph inputs read only in weight slots: parameters of a training graph, which
/// binding must leave alone (recogniseParameterInputs makes them parameters later).
std::set<std::string> parameterInputs(const onnx::GraphProto &G,
                                      const std::set<std::string> &StoredNames) {
  std::map<std::string, bool> OnlyWeights;
  for (const auto &In : G.input())
    if (!StoredNames.count(In.name()) && In.type().has_tensor_type() &&
        isFloating(dtypeFromOnnx(In.type().tensor_type().elem_type())))
      OnlyWeights[In.name()] = false;
  std::map<std::string, bool> Seen;
  for (const auto &N : G.node())
    for (int Slot = 0; Slot < N.input_size(); ++Slot) {
      auto It = OnlyWeights.find(N.input(Slot));
      if (It == OnlyWeights.end())
        continue;
      bool Weight = isWeightSlot(N.op_type(), N.domain(), static_cast<size_t>(Slot)) &&
                    !((N.op_type() == "MatMul" || N.op_type() == "Gemm" ||
                       N.op_type() == "FusedMatMul") && Slot == 0);
      It->second = (Seen[It->first] ? It->second : true) && Weight;
      Seen[It->first] = true;
    }
  std::set<std::string> Result;
  for (const auto &[Name, Only] : OnlyWeights)
    if (Only && Seen[Name])
      Result.insert(Name);
  return Result;
}

/// Binds every symbolic dim of the batch inputs; collects the unbound ones.
llvm::Error bindInputs(onnx::GraphProto &G, const std::set<std::string> &StoredNames,
                       const std::set<std::string> &ParameterInputs,
                       const ImportOptions &Options, const std::string &Path,
                       std::vector<DimBinding> &Bound) {
  std::map<std::string, std::vector<std::string>> Unbound; // dim -> "input[k]" uses
  std::set<std::string> KnownInputs, KnownDims;
  auto Record = [&Bound](const std::string &Name, int64_t Value) {
    for (const DimBinding &B : Bound)
      if (B.Name == Name)
        return;
    Bound.push_back({Name, Value});
  };
  for (onnx::ValueInfoProto &In : *G.mutable_input()) {
    if (StoredNames.count(In.name()) || !In.type().has_tensor_type())
      continue;
    // Parameters passed as inputs (training graphs) keep their declared shape.
    if (ParameterInputs.count(In.name()))
      continue;
    KnownInputs.insert(In.name());
    bool HasShape = In.type().tensor_type().has_shape();
    auto *Shape = In.mutable_type()->mutable_tensor_type()->mutable_shape();
    const InputShape *Override = nullptr;
    for (const InputShape &S : Options.Inputs)
      if (S.Name == In.name())
        Override = &S;
    if (Override) {
      if (HasShape && Shape->dim_size() != static_cast<int>(Override->Dims.size()))
        return fileError(Path, "--input " + In.name() + ": the model declares rank " +
                                   std::to_string(Shape->dim_size()) + ", the option gives " +
                                   std::to_string(Override->Dims.size()) + " dims");
      for (int K = 0; K < Shape->dim_size(); ++K)
        if (Shape->dim(K).has_dim_param() && !Shape->dim(K).dim_param().empty()) {
          KnownDims.insert(Shape->dim(K).dim_param());
          Record(Shape->dim(K).dim_param(), Override->Dims[K]);
        }
      Shape->clear_dim();
      for (int64_t D : Override->Dims)
        Shape->add_dim()->set_dim_value(D);
      continue;
    }
    if (!HasShape)
      return fileError(Path, "input '" + In.name() + "' declares no shape; set it with --input " +
                                 In.name() + "=D0xD1x...");
    for (int K = 0; K < Shape->dim_size(); ++K) {
      auto *Dim = Shape->mutable_dim(K);
      if (K == 0 && Options.MicroBatch) {
        std::string Name = Dim->has_dim_param() && !Dim->dim_param().empty() ? Dim->dim_param()
                                                                              : "batch";
        KnownDims.insert(Name);
        Record(Name, *Options.MicroBatch);
        Dim->clear_dim_param();
        Dim->set_dim_value(*Options.MicroBatch);
        continue;
      }
      if (Dim->has_dim_value() && Dim->dim_value() > 0)
        continue;
      std::string Name = Dim->has_dim_param() && !Dim->dim_param().empty()
                             ? Dim->dim_param()
                             : In.name() + "[" + std::to_string(K) + "]";
      KnownDims.insert(Name);
      std::optional<int64_t> V = lookupDim(Options, Name);
      if (!V)
        V = Options.DefaultDim;
      if (!V) {
        Unbound[Name].push_back(In.name() + " dim " + std::to_string(K));
        continue;
      }
      Dim->clear_dim_param();
      Dim->set_dim_value(*V);
      Record(Name, *V);
    }
  }
  for (const InputShape &S : Options.Inputs)
    if (!KnownInputs.count(S.Name))
      return fileError(Path, "--input " + S.Name + ": the model has no batch input of that "
                             "name (inputs: " + llvm::join(KnownInputs, ", ") + ")");
  for (const DimBinding &B : Options.Dims)
    if (!KnownDims.count(B.Name) && !Unbound.count(B.Name)) {
      bool OverriddenAway = false;
      for (const DimBinding &Done : Bound)
        OverriddenAway |= Done.Name == B.Name;
      if (!OverriddenAway && !KnownDims.empty())
        return fileError(Path, "--dim " + B.Name + ": the model has no symbolic dim of that "
                               "name (dims: " + llvm::join(KnownDims, ", ") + ")");
      if (KnownDims.empty() && Options.Inputs.empty())
        return fileError(Path, "--dim " + B.Name + ": the model has no symbolic dims");
    }
  if (!Unbound.empty()) {
    std::string Msg = "unbound symbolic dims: ";
    bool First = true;
    for (const auto &[Name, Uses] : Unbound) {
      Msg += (First ? "" : "; ") + Name + " (" + llvm::join(Uses, ", ") + ")";
      First = false;
    }
    Msg += "; bind each with --dim NAME=VALUE or set whole shapes with --input NAME=D0xD1x...";
    return fileError(Path, Msg);
  }
  // Outputs and value_info declare the same symbolic dims; give them the bound values
  // so they can stand in where inference cannot reach.
  auto Substitute = [&Bound](onnx::ValueInfoProto &VI) {
    if (!VI.type().has_tensor_type() || !VI.type().tensor_type().has_shape())
      return;
    for (auto &Dim : *VI.mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim())
      if (Dim.has_dim_param()) {
        std::string P = Dim.dim_param();
        Dim.clear_dim_param();
        for (const DimBinding &B : Bound)
          if (B.Name == P)
            Dim.set_dim_value(B.Value);
      }
  };
  for (onnx::ValueInfoProto &Out : *G.mutable_output())
    Substitute(Out);
  for (onnx::ValueInfoProto &VI : *G.mutable_value_info())
    Substitute(VI);
  return llvm::Error::success();
}

void setTypeFrom(Tensor &T, const onnx::TypeProto &Type) {
  if (!Type.has_tensor_type())
    return;
  const auto &TT = Type.tensor_type();
  if (TT.elem_type() != 0)
    T.Type = dtypeFromOnnx(TT.elem_type());
  if (!TT.has_shape())
    return;
  std::vector<int64_t> Dims;
  for (const auto &D : TT.shape().dim()) {
    if (!D.has_dim_value() || D.dim_value() < 0)
      return;
    Dims.push_back(D.dim_value());
  }
  T.Shape = std::move(Dims);
  T.ShapeKnown = true;
}

void fillSmallValues(Tensor &T, const onnx::TensorProto &P) {
  if (T.numElements() > Tensor::SmallValueLimit)
    return;
  // The proto keeps small payloads inline; decode the integer and float kinds.
  int64_t N = T.numElements();
  const std::string &Raw = P.raw_data();
  auto FromRaw = [&](auto Sample, auto Sink) {
    using E = decltype(Sample);
    if (Raw.size() != static_cast<size_t>(N) * sizeof(E))
      return false;
    for (int64_t I = 0; I < N; ++I) {
      E V;
      std::memcpy(&V, Raw.data() + I * sizeof(E), sizeof(E));
      Sink(V);
    }
    return true;
  };
  auto PushInt = [&T](auto V) { T.IntValues.push_back(static_cast<int64_t>(V)); };
  auto PushFloat = [&T](auto V) { T.FloatValues.push_back(static_cast<double>(V)); };
  switch (T.Type) {
  case DType::Int64:
    if (!Raw.empty()) FromRaw(int64_t{}, PushInt);
    else for (int64_t V : P.int64_data()) PushInt(V);
    break;
  case DType::Int32:
  case DType::Int16:
  case DType::Int8:
  case DType::UInt8:
  case DType::Bool:
    if (!Raw.empty()) {
      if (T.Type == DType::Int32) FromRaw(int32_t{}, PushInt);
      else if (T.Type == DType::Int16) FromRaw(int16_t{}, PushInt);
      else if (T.Type == DType::Int8) FromRaw(int8_t{}, PushInt);
      else FromRaw(uint8_t{}, PushInt);
    } else {
      for (int32_t V : P.int32_data()) PushInt(V);
    }
    break;
  case DType::Float32:
    if (!Raw.empty()) FromRaw(float{}, PushFloat);
    else for (float V : P.float_data()) PushFloat(V);
    break;
  case DType::Float64:
    if (!Raw.empty()) FromRaw(double{}, PushFloat);
    else for (double V : P.double_data()) PushFloat(V);
    break;
  default:
    break;
  }
  if (static_cast<int64_t>(T.IntValues.size()) != N)
    T.IntValues.clear();
  if (static_cast<int64_t>(T.FloatValues.size()) != N)
    T.FloatValues.clear();
}

Tensor tensorFromProto(const onnx::TensorProto &P, const std::string &Name) {
  Tensor T;
  T.Name = Name;
  T.Type = dtypeFromOnnx(P.data_type());
  T.Shape.assign(P.dims().begin(), P.dims().end());
  T.ShapeKnown = true;
  T.Stored = true;
  T.Kind = TensorKind::Constant;
  fillSmallValues(T, P);
  return T;
}

AttributeValue attributeValue(const onnx::AttributeProto &A, bool &Supported) {
  Supported = true;
  switch (A.type()) {
  case onnx::AttributeProto::INT: return A.i();
  case onnx::AttributeProto::FLOAT: return static_cast<double>(A.f());
  case onnx::AttributeProto::STRING: return A.s();
  case onnx::AttributeProto::INTS:
    return std::vector<int64_t>(A.ints().begin(), A.ints().end());
  case onnx::AttributeProto::FLOATS:
    return std::vector<double>(A.floats().begin(), A.floats().end());
  default:
    Supported = false;
    return int64_t{0};
  }
}

/// A Constant node's value as a stored tensor (value, value_float(s), value_int(s)).
std::optional<Tensor> constantNodeTensor(const onnx::NodeProto &N) {
  for (const auto &A : N.attribute()) {
    if (A.name() == "value" && A.has_t())
      return tensorFromProto(A.t(), N.output(0));
    Tensor T;
    T.Name = N.output(0);
    T.Stored = true;
    T.ShapeKnown = true;
    T.Kind = TensorKind::Constant;
    if (A.name() == "value_float") {
      T.Type = DType::Float32;
      T.FloatValues = {A.f()};
      return T;
    }
    if (A.name() == "value_int") {
      T.Type = DType::Int64;
      T.IntValues = {A.i()};
      return T;
    }
    if (A.name() == "value_floats") {
      T.Type = DType::Float32;
      T.Shape = {A.floats_size()};
      T.FloatValues.assign(A.floats().begin(), A.floats().end());
      return T;
    }
    if (A.name() == "value_ints") {
      T.Type = DType::Int64;
      T.Shape = {A.ints_size()};
      T.IntValues.assign(A.ints().begin(), A.ints().end());
      return T;
    }
  }
  return std::nullopt;
}

} // namespace

llvm::Expected<Graph> importOnnx(const std::string &Path, const ImportOptions &Options) {
  if (Options.PaddedBatches)
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "%s: --padded applies to Hugging Face configs (--hf-config); an ONNX export carries "
        "its attention mask in the graph (export it with a padded attention_mask instead)",
        Path.c_str());
  auto FileOr = readOnnxModel(Path);
  if (!FileOr)
    return FileOr.takeError();
  OnnxFile &File = *FileOr;
  onnx::ModelProto &M = File.Model;
  onnx::GraphProto &GP = *M.mutable_graph();
  std::map<std::string, int> Opsets;
  for (const auto &Op : M.opset_import())
    Opsets[Op.domain() == "ai.onnx" ? "" : Op.domain()] = static_cast<int>(Op.version());
  // Schemas outside the table need ONNX's whole registry: build it while the graph is.
  std::shared_future<void> Registration;
  auto WaitForRegistration = llvm::make_scope_exit([&] {
    if (Registration.valid())
      Registration.wait();
  });
  for (const auto &N : GP.node()) {
    auto Version = Opsets.find(N.domain() == "ai.onnx" ? "" : N.domain());
    if (Version != Opsets.end() && !onnxSchemaInTable(N.op_type(), Version->second, N.domain())) {
      Registration = startSchemaRegistration();
      break;
    }
  }

  Graph G;
  G.SourcePath = Path;
  G.SourceFormat = "onnx";
  G.Name = std::string(llvm::sys::path::stem(Path));
  G.Producer = M.producer_name() + (M.producer_version().empty() ? "" : " " + M.producer_version());
  for (const std::string &Refused : File.RefusedLocations)
    G.Diags.warning("external-data-outside", Refused,
                    "the external-data location leads out of the model's folder (an absolute "
                    "path, '..' or a symbolic link); trainmem never opens it");
  for (const auto &Op : M.opset_import())
    if (Op.domain().empty() || Op.domain() == "ai.onnx")
      G.OpsetVersion = Op.version();

  int IfCounter = 0;
  inlineIfNodes(GP, File, G.Diags, IfCounter);

  std::set<std::string> StoredNames;
  for (const auto &I : GP.initializer())
    StoredNames.insert(I.name());
  if (auto E = bindInputs(GP, StoredNames, parameterInputs(GP, StoredNames), Options, Path,
                          G.Dims))
    return E;

  // A static dim the user overrode with --input makes the file's declared shapes stale.
  bool DeclaredShapesValid = Options.Inputs.empty() && !Options.MicroBatch;

  auto Ensure = [&G](const std::string &Name) -> TensorId {
    if (Name.empty())
      return NoTensor;
    TensorId Id = G.findTensor(Name);
    if (Id != NoTensor)
      return Id;
    Tensor T;
    T.Name = Name;
    return G.addTensor(std::move(T));
  };
  auto AttachPayload = [&File](Tensor &T) {
    auto It = File.Payloads.find(T.Name);
    if (It != File.Payloads.end())
      T.Payload = It->second;
  };

  size_t TensorCount = static_cast<size_t>(GP.initializer_size() + GP.input_size());
  for (const auto &N : GP.node())
    TensorCount += static_cast<size_t>(N.output_size());
  G.reserve(TensorCount, static_cast<size_t>(GP.node_size()));
  for (const auto &I : GP.initializer()) {
    Tensor T = tensorFromProto(I, I.name());
    AttachPayload(T);
    G.addTensor(std::move(T));
  }
  for (const auto &In : GP.input()) {
    if (StoredNames.count(In.name()))
      continue;
    Tensor T;
    T.Name = In.name();
    T.Kind = TensorKind::Input;
    setTypeFrom(T, In.type());
    G.Inputs.push_back(G.addTensor(std::move(T)));
  }

  // Constant nodes first: some files list a Constant after its consumer.
  std::set<const onnx::NodeProto *> Folded;
  for (const auto &N : GP.node())
    if (N.op_type() == "Constant" && N.domain().empty() && N.output_size() == 1)
      if (std::optional<Tensor> T = constantNodeTensor(N)) {
        AttachPayload(*T);
        if (G.findTensor(T->Name) == NoTensor) {
          G.addTensor(std::move(*T));
          Folded.insert(&N);
        }
      }
  std::vector<const onnx::NodeProto *> Protos;
  std::map<std::string, int> UnsupportedAttrs;
  for (const auto &N : GP.node()) {
    if (Folded.count(&N))
      continue;
    // Weights exported as ConstantOfShape(shape initializer) (onnx-light models) are
    // stored tensors whose shape is the shape input's value.
    if (N.op_type() == "ConstantOfShape" && N.input_size() == 1 && N.output_size() == 1) {
      TensorId ShapeId = G.findTensor(N.input(0));
      if (ShapeId != NoTensor && G.Tensors[ShapeId].Stored &&
          !G.Tensors[ShapeId].IntValues.empty()) {
        Tensor T;
        T.Name = N.output(0);
        T.Type = DType::Float32;
        T.Shape = G.Tensors[ShapeId].IntValues;
        T.ShapeKnown = true;
        T.Stored = true;
        T.Kind = TensorKind::Constant;
        T.Payload.From = PayloadRef::Source::Fill;
        for (const auto &A : N.attribute())
          if (A.name() == "value" && A.has_t()) {
            T.Type = dtypeFromOnnx(A.t().data_type());
            Tensor V = tensorFromProto(A.t(), "");
            if (!V.FloatValues.empty())
              T.Payload.FillValue = V.FloatValues[0];
            if (!V.IntValues.empty())
              T.Payload.FillValue = static_cast<double>(V.IntValues[0]);
          }
        // Small fills are shape arithmetic (pads, zero offsets): keep their values.
        if (T.numElements() <= Tensor::SmallValueLimit) {
          if (isFloating(T.Type))
            T.FloatValues.assign(static_cast<size_t>(T.numElements()), T.Payload.FillValue);
          else
            T.IntValues.assign(static_cast<size_t>(T.numElements()),
                               static_cast<int64_t>(T.Payload.FillValue));
        }
        G.addTensor(std::move(T));
        continue;
      }
    }
    Node Out;
    Out.Name = N.name();
    Out.OpType = N.op_type();
    Out.Domain = N.domain() == "ai.onnx" ? "" : N.domain();
    for (const auto &A : N.attribute()) {
      bool Supported;
      AttributeValue V = attributeValue(A, Supported);
      if (Supported)
        Out.Attributes.emplace(A.name(), std::move(V));
      else if (!A.has_g() && A.graphs_size() == 0 &&
               !(N.op_type() == "ConstantOfShape" && A.name() == "value"))
        ++UnsupportedAttrs[N.op_type() + "." + A.name()];
    }
    for (const auto &In : N.input())
      Out.Inputs.push_back(Ensure(In));
    for (const auto &O : N.output())
      Out.Outputs.push_back(Ensure(O));
    for (const auto &A : N.attribute())
      if (A.has_g() || A.graphs_size()) {
        G.Diags.warning("subgraph-op", N.name(),
                        N.op_type() + " node carries a subgraph ('" + A.name() +
                            "'); it is accounted as one opaque op and the weights inside "
                            "its subgraph are not counted");
        break;
      }
    G.addNode(std::move(Out));
    Protos.push_back(&N);
  }
  for (const auto &A : UnsupportedAttrs)
    G.Diags.note("attribute-skipped", A.first,
                 "attribute of a kind the IR does not keep (" + std::to_string(A.second) +
                     " nodes); not needed for memory");
  for (int K = 0; K < GP.output_size(); ++K) {
    const onnx::ValueInfoProto &O = GP.output(K);
    if (O.name().empty())
      return fileError(Path, "graph output " + std::to_string(K) +
                                 " has no name; every graph output names the tensor it returns");
    TensorId Id = Ensure(O.name());
    Tensor &T = G.Tensors[Id];
    T.IsGraphOutput = true;
    if (!T.Stored && T.Kind == TensorKind::Activation)
      T.Kind = TensorKind::Output;
    G.Outputs.push_back(Id);
  }
  // Dropping Constant nodes may leave a node input naming a tensor created only later;
  // Ensure() resolved them all by name, so only dangling references remain unknown.
  if (!G.finalize())
    return fileError(Path, "the graph has a cycle; an ONNX graph must be topologically sortable");
  for (NodeId N = 0; N < static_cast<NodeId>(G.Nodes.size()); ++N) {
    Node &Nd = G.Nodes[N];
    for (TensorId In : Nd.Inputs)
      if (In != NoTensor && !G.Tensors[In].Stored && G.Tensors[In].Kind != TensorKind::Input &&
          G.Tensors[In].Producer == NoNode)
        return fileError(Path, "node '" + Nd.Name + "' (" + Nd.OpType + ") reads '" +
                                   G.Tensors[In].Name +
                                   "', which no node, initializer or input defines");
    // ONNX 1.12's convolution and pooling inference divides by the strides without
    // checking them (a stride of 0 was a SIGFPE inside libonnx), and the CPU convolution
    // rule divides channels by the group: such a node can run nowhere, so it is an error.
    for (const auto &[Key, Value] : Nd.Attributes) {
      bool Positive = Key == "strides" || Key == "dilations" || Key == "kernel_shape" ||
                      (Key == "group" && llvm::StringRef(Nd.OpType).startswith("Conv"));
      if (!Positive)
        continue;
      // A view of the value, not a copy: every Conv and pooling node of a CNN passes here.
      llvm::ArrayRef<int64_t> Values;
      if (const auto *One = std::get_if<int64_t>(&Value))
        Values = *One;
      else if (const auto *Many = std::get_if<std::vector<int64_t>>(&Value))
        Values = *Many;
      if (llvm::any_of(Values, [](int64_t V) { return V < 1; }))
        return fileError(Path, "node '" + Nd.Name + "' (" + Nd.OpType + "): attribute '" + Key +
                                   "' is [" + llvm::join(llvm::map_range(Values, [](int64_t V) {
                                                           return std::to_string(V);
                                                         }),
                                                         ", ") +
                                   "]; every value must be at least 1");
    }
  }

  if (llvm::Error E = inferShapes(G, Protos, Opsets))
    return fileError(Path, llvm::toString(std::move(E)));
  // Declared types of outputs (and value_info the exporter wrote) complete what inference
  // cannot reach; bindInputs gave their symbolic dims the bound values. Only the tensors
  // inference left unknown are looked up (an export declares every tensor, and a table of
  // a 7B export's 1,813 declared names took 0.2 ms of its 3.0 ms import); an output's
  // declaration wins over value_info's.
  if (DeclaredShapesValid) {
    llvm::StringMap<const onnx::TypeProto *> Unknown;
    for (const Tensor &T : G.Tensors)
      if (!T.ShapeKnown)
        Unknown.try_emplace(T.Name, nullptr);
    if (!Unknown.empty()) {
      auto Declare = [&Unknown](const onnx::ValueInfoProto &VI) {
        auto It = Unknown.find(VI.name());
        if (It != Unknown.end())
          It->second = &VI.type();
      };
      llvm::for_each(GP.value_info(), Declare);
      llvm::for_each(GP.output(), Declare);
      for (Tensor &T : G.Tensors)
        if (!T.ShapeKnown)
          if (const onnx::TypeProto *Type = Unknown.lookup(T.Name))
            setTypeFrom(T, *Type);
    }
  }
  if (llvm::Error E = G.checkLimits(Path))
    return E;
  recogniseParameterInputs(G);
  reportUnknownShapes(G);
  assignLayerPaths(G);
  classifyStoredTensors(G);
  return G;
}

} // namespace trainmem
