//===- OnnxExporter.cpp - the graph IR written back as a weightless ONNX file ----===//
//
// Builds an onnx::ModelProto from the graph IR (nodes in topological order, concrete
// shapes as value_info, small constants inline, weights as external-data references)
// and writes it, with a sparse zero-filled data file, atomically beside the requested
// path. Nothing here ever reads or writes a weight payload.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxExporter.h"

#include "analyzer/PendingFile.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

// Generated into the build tree; absent when the file is compiled on its own.
#if __has_include("trainmem/Version.h")
#include "trainmem/Version.h"
#endif

#include <algorithm>
#include <climits>
#include <cmath>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace trainmem {

namespace {

/// IR version 8 is what ONNX 1.10-1.12 write for opsets up to 17.
constexpr int64_t ExportIrVersion = 8;
constexpr int64_t DefaultOpsetVersion = 17;

#if defined(TRAINMEM_VERSION_STRING)
constexpr const char *ProducerVersion = TRAINMEM_VERSION_STRING;
#elif defined(TRAINMEM_VERSION)
constexpr const char *ProducerVersion = TRAINMEM_VERSION;
#else
constexpr const char *ProducerVersion = "0"; // a standalone build without Version.h
#endif

llvm::Error makeError(const std::string &Path, const llvm::Twine &What,
                      std::error_code EC = llvm::inconvertibleErrorCode()) {
  return llvm::createStringError(EC, "cannot write '%s': %s", Path.c_str(),
                                 What.str().c_str());
}

/// Names every tensor uniquely. ONNX refers to values by name only, so an IR tensor with
/// an empty name (possible for synthesized graphs) or a name repeated by a sloppy
/// exporter would otherwise alias another value; such tensors get `<name>__<id>`.
std::vector<std::string> exportNames(const Graph &G) {
  std::vector<std::string> Names(G.Tensors.size());
  std::unordered_set<std::string> Taken;
  std::vector<size_t> Renamed;
  for (size_t I = 0; I < G.Tensors.size(); ++I) {
    const std::string &Name = G.Tensors[I].Name;
    if (!Name.empty() && Taken.insert(Name).second)
      Names[I] = Name;
    else
      Renamed.push_back(I);
  }
  for (size_t I : Renamed) {
    std::string Base = G.Tensors[I].Name.empty() ? "trainmem_tensor" : G.Tensors[I].Name;
    std::string Candidate = Base + "__" + std::to_string(I);
    for (int Suffix = 1; !Taken.insert(Candidate).second; ++Suffix)
      Candidate = Base + "__" + std::to_string(I) + "_" + std::to_string(Suffix);
    Names[I] = Candidate;
  }
  return Names;
}

/// The TensorProto data type for \p Type, 0 when ONNX has none. Undefined is guarded
/// here because ONNX numbers some types (18, 20, 21) that the IR reads as Undefined.
int32_t onnxTypeOf(DType Type) {
  return Type == DType::Undefined ? 0 : dtypeToOnnx(Type);
}

/// Declares a value's type: dtype always (when ONNX has one), dims only when the IR
/// knows the shape, since an absent shape is how ONNX says "unknown rank".
void describeValue(onnx::ValueInfoProto &Info, const Tensor &T, const std::string &Name) {
  Info.set_name(Name);
  onnx::TypeProto_Tensor *Type = Info.mutable_type()->mutable_tensor_type();
  if (int32_t OnnxType = onnxTypeOf(T.Type))
    Type->set_elem_type(OnnxType);
  if (!T.ShapeKnown)
    return;
  onnx::TensorShapeProto *Shape = Type->mutable_shape();
  for (int64_t Dim : T.Shape)
    Shape->add_dim()->set_dim_value(Dim);
}

/// The values of a small stored tensor, exactly as the IR holds them: int64 values stay
/// exact (slice ends like INT64_MAX do not survive a trip through double).
class SmallValues {
public:
  static std::optional<SmallValues> of(const Tensor &T, int64_t NumElements) {
    auto N = static_cast<size_t>(NumElements);
    SmallValues V;
    if (!T.IntValues.empty() && T.IntValues.size() == N) {
      V.Ints = &T.IntValues;
      return V;
    }
    if (!T.FloatValues.empty() && T.FloatValues.size() == N) {
      V.Floats = T.FloatValues;
      return V;
    }
    // A Fill payload (ConstantOfShape, a zero-initialised buffer) is its value too, but
    // only small ones are inlined: a filled weight must stay as weightless as any other.
    if (T.Payload.From == PayloadRef::Source::Fill && NumElements <= Tensor::SmallValueLimit) {
      V.Floats.assign(N, T.Payload.FillValue);
      return V;
    }
    return std::nullopt;
  }

  size_t size() const { return Ints ? Ints->size() : Floats.size(); }
  double asDouble(size_t I) const {
    return Ints ? static_cast<double>((*Ints)[I]) : Floats[I];
  }
  int64_t asInt64(size_t I) const {
    if (Ints)
      return (*Ints)[I];
    double D = Floats[I];
    // Saturate like a clamp rather than hit undefined behaviour on NaN or overflow.
    if (std::isnan(D))
      return 0;
    if (D >= 9223372036854775807.0)
      return INT64_MAX;
    if (D <= -9223372036854775808.0)
      return INT64_MIN;
    return static_cast<int64_t>(D);
  }

private:
  const std::vector<int64_t> *Ints = nullptr;
  std::vector<double> Floats; ///< small (at most SmallValueLimit), so copied
};

/// The 16-bit pattern of \p Value in \p Semantics, rounded to nearest-even as PyTorch's
/// `.to(torch.float16)` / `.to(torch.bfloat16)` do.
uint16_t halfBits(double Value, const llvm::fltSemantics &Semantics) {
  llvm::APFloat F(Value);
  bool LosesInfo = false;
  F.convert(Semantics, llvm::APFloat::rmNearestTiesToEven, &LosesInfo);
  return static_cast<uint16_t>(F.bitcastToAPInt().getZExtValue());
}

/// Dtypes whose values ONNX can hold inline in a typed field or raw_data here.
bool hasInlineForm(DType Type) {
  switch (Type) {
  case DType::Float32:
  case DType::Float64:
  case DType::Int64:
  case DType::Int32:
  case DType::Int16:
  case DType::UInt16:
  case DType::Int8:
  case DType::UInt8:
  case DType::Bool:
  case DType::UInt32:
  case DType::UInt64:
  case DType::Float16:
  case DType::BFloat16:
    return true;
  default:
    return false;
  }
}

/// Writes \p Values into \p Proto in the field ONNX's checker expects for the dtype.
/// Returns false for dtypes without an inline form (see hasInlineForm).
bool writeInlineValues(onnx::TensorProto &Proto, DType Type, const SmallValues &Values) {
  size_t N = Values.size();
  switch (Type) {
  case DType::Float32:
    for (size_t I = 0; I < N; ++I)
      Proto.add_float_data(static_cast<float>(Values.asDouble(I)));
    return true;
  case DType::Float64:
    for (size_t I = 0; I < N; ++I)
      Proto.add_double_data(Values.asDouble(I));
    return true;
  case DType::Int64:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int64_data(Values.asInt64(I));
    return true;
  // ONNX keeps these in int32_data as values (not bit patterns), one per element.
  case DType::Int32:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int32_data(static_cast<int32_t>(Values.asInt64(I)));
    return true;
  case DType::Int16:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int32_data(static_cast<int16_t>(Values.asInt64(I)));
    return true;
  case DType::UInt16:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int32_data(static_cast<uint16_t>(Values.asInt64(I)));
    return true;
  case DType::Int8:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int32_data(static_cast<int8_t>(Values.asInt64(I)));
    return true;
  case DType::UInt8:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int32_data(static_cast<uint8_t>(Values.asInt64(I)));
    return true;
  case DType::Bool:
    for (size_t I = 0; I < N; ++I)
      Proto.add_int32_data(Values.asDouble(I) != 0.0 ? 1 : 0);
    return true;
  case DType::UInt32:
    for (size_t I = 0; I < N; ++I)
      Proto.add_uint64_data(static_cast<uint32_t>(Values.asInt64(I)));
    return true;
  case DType::UInt64:
    for (size_t I = 0; I < N; ++I)
      Proto.add_uint64_data(static_cast<uint64_t>(Values.asInt64(I)));
    return true;
  // raw_data (little-endian bit patterns) is how PyTorch's exporter writes 16-bit floats.
  case DType::Float16:
  case DType::BFloat16: {
    const llvm::fltSemantics &Semantics = Type == DType::Float16
                                              ? llvm::APFloat::IEEEhalf()
                                              : llvm::APFloat::BFloat();
    std::string Raw;
    Raw.reserve(2 * N);
    for (size_t I = 0; I < N; ++I) {
      uint16_t Bits = halfBits(Values.asDouble(I), Semantics);
      Raw.push_back(static_cast<char>(Bits & 0xff));
      Raw.push_back(static_cast<char>(Bits >> 8));
    }
    Proto.set_raw_data(std::move(Raw));
    return true;
  }
  default:
    return false;
  }
}

/// How one stored tensor is written.
enum class StoredForm { Inline, External, Empty, GraphInput };

StoredForm storedFormOf(const Tensor &T, std::optional<SmallValues> &Values) {
  if (!T.ShapeKnown || onnxTypeOf(T.Type) == 0)
    return StoredForm::GraphInput;
  int64_t N = T.numElements();
  if (N == 0)
    return StoredForm::Empty;
  if (hasInlineForm(T.Type)) {
    Values = SmallValues::of(T, N);
    if (Values)
      return StoredForm::Inline;
  }
  // Strings have no fixed-size binary form an external reference could point into.
  if (T.Type == DType::String || dtypeBits(T.Type) == 0)
    return StoredForm::GraphInput;
  return StoredForm::External;
}

void setAttribute(onnx::AttributeProto &Attr, const std::string &Name,
                  const AttributeValue &Value) {
  Attr.set_name(Name);
  if (const auto *I = std::get_if<int64_t>(&Value)) {
    Attr.set_type(onnx::AttributeProto::INT);
    Attr.set_i(*I);
  } else if (const auto *F = std::get_if<double>(&Value)) {
    Attr.set_type(onnx::AttributeProto::FLOAT);
    Attr.set_f(static_cast<float>(*F));
  } else if (const auto *S = std::get_if<std::string>(&Value)) {
    Attr.set_type(onnx::AttributeProto::STRING);
    Attr.set_s(*S);
  } else if (const auto *Is = std::get_if<std::vector<int64_t>>(&Value)) {
    Attr.set_type(onnx::AttributeProto::INTS);
    for (int64_t V : *Is)
      Attr.add_ints(V);
  } else if (const auto *Fs = std::get_if<std::vector<double>>(&Value)) {
    Attr.set_type(onnx::AttributeProto::FLOATS);
    for (double V : *Fs)
      Attr.add_floats(static_cast<float>(V));
  }
}

/// ConstantOfShape's `value` is a TENSOR attribute, which the IR does not keep; without
/// it ONNX means float32 zeros, so an int64 or fp16 fill would change dtype on export.
/// The dtype is known from the output tensor and is written back; the fill value is
/// not known and is written as zero, like every weight in a weightless file.
void addConstantOfShapeValue(onnx::NodeProto &P, const Node &N, const Graph &G) {
  if (N.OpType != "ConstantOfShape" || !N.Domain.empty() || N.Outputs.size() != 1 ||
      N.Outputs[0] == NoTensor || N.Attributes.count("value"))
    return;
  DType Type = G.Tensors[N.Outputs[0]].Type;
  if (Type == DType::Float32 || !hasInlineForm(Type))
    return;
  onnx::AttributeProto &Attr = *P.add_attribute();
  Attr.set_name("value");
  Attr.set_type(onnx::AttributeProto::TENSOR);
  onnx::TensorProto &Value = *Attr.mutable_t();
  Value.set_data_type(onnxTypeOf(Type));
  Value.add_dims(1);
  Tensor Zero;
  Zero.FloatValues = {0.0};
  writeInlineValues(Value, Type, *SmallValues::of(Zero, 1));
}

/// "ai.onnx" is an alias of the default domain; writing it as "" keeps one opset import.
std::string normalizedDomain(const std::string &Domain) {
  return Domain == "ai.onnx" ? std::string() : Domain;
}

/// Completes graph outputs and value_info whose shape or dtype the IR does not know
/// from ONNX's own inference, if it derives them: the checker requires both on every
/// graph output, and a derived shape is not an invented one. What the IR knows is never
/// overwritten, and a graph ONNX cannot infer is written as it is.
void fillUnknownTypesFromOnnx(onnx::ModelProto &Model) {
  auto Incomplete = [](const onnx::ValueInfoProto &V) {
    const onnx::TypeProto_Tensor &Type = V.type().tensor_type();
    return !Type.has_shape() || Type.elem_type() == 0;
  };
  onnx::GraphProto &Out = *Model.mutable_graph();
  if (std::none_of(Out.output().begin(), Out.output().end(), Incomplete) &&
      std::none_of(Out.value_info().begin(), Out.value_info().end(), Incomplete))
    return;
  onnx::ModelProto Inferred = Model;
  try {
    onnx::shape_inference::InferShapes(Inferred);
  } catch (const std::exception &) {
    return;
  }
  std::unordered_map<std::string, const onnx::TypeProto_Tensor *> InferredTypes;
  for (const auto *List : {&Inferred.graph().output(), &Inferred.graph().value_info()})
    for (const onnx::ValueInfoProto &V : *List)
      if (V.type().has_tensor_type())
        InferredTypes.emplace(V.name(), &V.type().tensor_type());
  for (auto *List : {Out.mutable_output(), Out.mutable_value_info()})
    for (onnx::ValueInfoProto &V : *List) {
      auto It = InferredTypes.find(V.name());
      if (!Incomplete(V) || It == InferredTypes.end())
        continue;
      onnx::TypeProto_Tensor *Type = V.mutable_type()->mutable_tensor_type();
      if (!Type->has_shape() && It->second->has_shape())
        *Type->mutable_shape() = It->second->shape();
      if (Type->elem_type() == 0 && It->second->elem_type() != 0)
        Type->set_elem_type(It->second->elem_type());
    }
}

/// Builds the model; fills \p ExternalBytes with the data file's length (0: none).
llvm::Expected<onnx::ModelProto> buildModel(const Graph &G, const std::string &OutPath,
                                            int64_t &ExternalBytes) {
  auto NumTensors = static_cast<TensorId>(G.Tensors.size());
  auto InRange = [&](TensorId Id) { return Id >= 0 && Id < NumTensors; };
  auto NodeLabel = [&](NodeId Id) {
    const Node &N = G.Nodes[Id];
    return "node " + std::to_string(Id) + " ('" + N.Name + "', " + N.OpType + ")";
  };

  if (G.TopologicalOrder.size() != G.Nodes.size())
    return makeError(OutPath, "the graph has " + std::to_string(G.Nodes.size()) +
                                  " nodes but a topological order of " +
                                  std::to_string(G.TopologicalOrder.size()) +
                                  " (Graph::finalize not run, or a cycle)");
  for (NodeId Id : G.TopologicalOrder) {
    if (Id < 0 || static_cast<size_t>(Id) >= G.Nodes.size())
      return makeError(OutPath, "the topological order names node " + std::to_string(Id) +
                                    ", which does not exist");
    for (const std::vector<TensorId> *Ids : {&G.Nodes[Id].Inputs, &G.Nodes[Id].Outputs})
      for (TensorId T : *Ids)
        if (T != NoTensor && !InRange(T))
          return makeError(OutPath, NodeLabel(Id) + " refers to tensor " +
                                        std::to_string(T) + ", but the graph has " +
                                        std::to_string(NumTensors));
  }
  for (const std::vector<TensorId> *Ids : {&G.Inputs, &G.Outputs})
    for (TensorId T : *Ids)
      if (!InRange(T))
        return makeError(OutPath, "a graph input or output refers to tensor " +
                                      std::to_string(T) + ", but the graph has " +
                                      std::to_string(NumTensors));

  const std::vector<std::string> Names = exportNames(G);

  // A node whose every output is a stored tensor is a Constant (or a folded
  // ConstantOfShape); the IR keeps its value on the tensor, not its TENSOR attribute, so
  // the value is written as an initializer and the node left out.
  auto IsReplacedByInitializers = [&](const Node &N) {
    bool AnyOutput = false;
    for (TensorId Out : N.Outputs) {
      if (Out == NoTensor)
        continue;
      AnyOutput = true;
      if (!G.Tensors[Out].Stored)
        return false;
    }
    return AnyOutput;
  };
  // The HF importer's casts (RMSNorm's upcast, Tensor::UpcastToFp32, and the CastLike
  // back) change nothing in the exported fp32 graph, and what they mean in a 16-bit run
  // no ONNX field carries: the file leaves them out, as torch.onnx's dynamo exporter drops
  // no-op casts, and their readers read the input. Casts read from a file are kept, so a
  // file round-trips node for node.
  std::vector<TensorId> Same(G.Tensors.size());
  for (TensorId Id = 0; Id < NumTensors; ++Id)
    Same[Id] = Id;
  auto IsNoOpCast = [&](const Node &N) {
    if ((N.OpType != "Cast" && N.OpType != "CastLike") || N.Inputs.empty() ||
        N.Outputs.size() != 1 || N.Inputs[0] == NoTensor || N.Outputs[0] == NoTensor)
      return false;
    if (N.OpType == "Cast" && !G.Tensors[N.Outputs[0]].UpcastToFp32)
      return false;
    const Tensor &In = G.Tensors[N.Inputs[0]], &Res = G.Tensors[N.Outputs[0]];
    return In.Type == Res.Type && In.Type != DType::Undefined && !Res.IsGraphOutput &&
           !llvm::is_contained(G.Outputs, N.Outputs[0]);
  };
  std::vector<NodeId> EmittedNodes;
  std::vector<bool> DefinedByNode(G.Tensors.size(), false);
  for (NodeId Id : G.TopologicalOrder) {
    if (IsReplacedByInitializers(G.Nodes[Id]))
      continue;
    if (IsNoOpCast(G.Nodes[Id])) {
      Same[G.Nodes[Id].Outputs[0]] = Same[G.Nodes[Id].Inputs[0]];
      continue;
    }
    EmittedNodes.push_back(Id);
    for (TensorId Out : G.Nodes[Id].Outputs)
      if (Out != NoTensor)
        DefinedByNode[Out] = true;
  }

  onnx::ModelProto Model;
  Model.set_ir_version(ExportIrVersion);
  Model.set_producer_name("trainmem");
  Model.set_producer_version(ProducerVersion);
  std::string DataPath = weightlessOnnxDataPath(OutPath);
  std::string DataLocation = llvm::sys::path::filename(DataPath).str();
  {
    std::string Doc = "Weightless export by trainmem";
    if (!G.SourcePath.empty())
      Doc += " of " + G.SourcePath;
    Doc += ": initializers reference " + DataLocation +
           ", a sparse file of zeros; shapes are concrete";
    if (!G.Dims.empty()) {
      Doc += " for";
      for (size_t I = 0; I < G.Dims.size(); ++I)
        Doc += (I ? ", " : " ") + G.Dims[I].Name + "=" + std::to_string(G.Dims[I].Value);
    }
    Doc += ".";
    Model.set_doc_string(Doc);
  }

  onnx::GraphProto &Out = *Model.mutable_graph();
  Out.set_name(G.Name.empty() ? "trainmem" : G.Name);

  std::vector<bool> IsGraphInput(G.Tensors.size(), false);
  auto AddGraphInput = [&](TensorId Id) {
    if (IsGraphInput[Id])
      return;
    IsGraphInput[Id] = true;
    describeValue(*Out.add_input(), G.Tensors[Id], Names[Id]);
  };
  for (TensorId Id : G.Inputs)
    AddGraphInput(Id);

  std::vector<bool> IsInitializer(G.Tensors.size(), false);
  int64_t NextOffset = 0;
  ExternalBytes = 0;
  for (TensorId Id = 0; Id < NumTensors; ++Id) {
    const Tensor &T = G.Tensors[Id];
    if (!T.Stored || DefinedByNode[Id])
      continue;
    std::optional<SmallValues> Values;
    StoredForm Form = storedFormOf(T, Values);
    if (Form == StoredForm::GraphInput) {
      AddGraphInput(Id);
      continue;
    }
    IsInitializer[Id] = true;
    onnx::TensorProto &Init = *Out.add_initializer();
    Init.set_name(Names[Id]);
    Init.set_data_type(onnxTypeOf(T.Type));
    for (int64_t Dim : T.Shape)
      Init.add_dims(Dim);
    if (Form == StoredForm::Inline) {
      writeInlineValues(Init, T.Type, *Values);
    } else if (Form == StoredForm::External) {
      int64_t Offset = static_cast<int64_t>(
          llvm::alignTo(static_cast<uint64_t>(NextOffset), OnnxExternalDataAlignment));
      int64_t Length = T.bytes();
      Init.set_data_location(onnx::TensorProto::EXTERNAL);
      auto AddEntry = [&](const char *Key, const std::string &Value) {
        onnx::StringStringEntryProto &Entry = *Init.add_external_data();
        Entry.set_key(Key);
        Entry.set_value(Value);
      };
      AddEntry("location", DataLocation);
      AddEntry("offset", std::to_string(Offset));
      AddEntry("length", std::to_string(Length));
      NextOffset = Offset + Length;
      ExternalBytes = NextOffset;
    }
    // StoredForm::Empty: dims with a zero and no data field is a complete empty tensor.
  }

  // Anything a node or the graph's outputs read that nothing defines (an input the
  // importer did not list, a stored tensor without a usable description) must still be
  // declared, or ONNX considers the graph unsorted.
  auto EnsureDefined = [&](TensorId Id) {
    if (!DefinedByNode[Id] && !IsInitializer[Id])
      AddGraphInput(Id);
  };

  std::set<std::string> CustomDomains;
  for (NodeId Id : EmittedNodes) {
    const Node &N = G.Nodes[Id];
    onnx::NodeProto &P = *Out.add_node();
    if (!N.Name.empty())
      P.set_name(N.Name);
    P.set_op_type(N.OpType);
    std::string Domain = normalizedDomain(N.Domain);
    if (!Domain.empty()) {
      P.set_domain(Domain);
      CustomDomains.insert(Domain);
    }
    for (TensorId In : N.Inputs) {
      if (In != NoTensor) {
        In = Same[In];
        EnsureDefined(In);
      }
      P.add_input(In == NoTensor ? std::string() : Names[In]);
    }
    for (TensorId Res : N.Outputs)
      P.add_output(Res == NoTensor ? std::string() : Names[Res]);
    for (const auto &[Key, Value] : N.Attributes)
      setAttribute(*P.add_attribute(), Key, Value);
    addConstantOfShapeValue(P, N, G);
  }

  std::vector<bool> IsGraphOutput(G.Tensors.size(), false);
  auto AddGraphOutput = [&](TensorId Id) {
    if (IsGraphOutput[Id])
      return;
    IsGraphOutput[Id] = true;
    EnsureDefined(Id);
    describeValue(*Out.add_output(), G.Tensors[Id], Names[Id]);
  };
  for (TensorId Id : G.Outputs)
    AddGraphOutput(Id);
  for (TensorId Id = 0; Id < NumTensors; ++Id)
    if (G.Tensors[Id].IsGraphOutput)
      AddGraphOutput(Id);

  for (TensorId Id = 0; Id < NumTensors; ++Id)
    if (DefinedByNode[Id] && !IsGraphOutput[Id] && !IsGraphInput[Id] &&
        onnxTypeOf(G.Tensors[Id].Type) != 0)
      describeValue(*Out.add_value_info(), G.Tensors[Id], Names[Id]);

  onnx::OperatorSetIdProto &Default = *Model.add_opset_import();
  Default.set_domain("");
  Default.set_version(G.OpsetVersion > 0 ? G.OpsetVersion : DefaultOpsetVersion);
  for (const std::string &Domain : CustomDomains) {
    onnx::OperatorSetIdProto &Custom = *Model.add_opset_import();
    Custom.set_domain(Domain);
    Custom.set_version(1);
  }
  fillUnknownTypesFromOnnx(Model);
  return Model;
}

} // namespace

std::string weightlessOnnxDataPath(const std::string &OutPath) { return OutPath + ".data"; }

llvm::Error exportWeightlessOnnx(const Graph &G, const std::string &OutPath,
                                 ExportSummary *Summary) {
  if (OutPath.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "cannot write an ONNX file: no output path given");
  int64_t ExternalBytes = 0;
  llvm::Expected<onnx::ModelProto> Model = buildModel(G, OutPath, ExternalBytes);
  if (!Model)
    return Model.takeError();
  if (Summary) {
    const onnx::GraphProto &Gr = Model->graph();
    Summary->Nodes = Gr.node_size();
    Summary->Tensors = Gr.initializer_size() + Gr.input_size() + Gr.output_size() +
                       Gr.value_info_size();
  }

  // Without payloads a model is a few MB at most; protobuf refuses anything over 2 GiB.
  size_t Size = Model->ByteSizeLong();
  if (Size > static_cast<size_t>(INT_MAX))
    return makeError(OutPath, "the model is " + std::to_string(Size) +
                                  " bytes, over protobuf's 2 GiB limit");
  std::string Bytes;
  if (!Model->SerializeToString(&Bytes))
    return makeError(OutPath, "protobuf could not serialize the model");

  // Prepare both files completely before either is renamed into place.
  llvm::Expected<PendingFile> ModelFile = PendingFile::create(OutPath);
  if (!ModelFile)
    return ModelFile.takeError();
  ModelFile->os().write(Bytes.data(), Bytes.size());
  if (llvm::Error E = ModelFile->finishWriting())
    return E;

  if (ExternalBytes == 0)
    return ModelFile->commit();

  std::string DataPath = weightlessOnnxDataPath(OutPath);
  llvm::Expected<PendingFile> DataFile = PendingFile::create(DataPath);
  if (!DataFile)
    return DataFile.takeError();
  // Truncating up makes a hole: the file reads as zeros and occupies no blocks.
  if (std::error_code EC =
          llvm::sys::fs::resize_file(DataFile->fd(), static_cast<uint64_t>(ExternalBytes)))
    return makeError(DataPath, "cannot extend to " + std::to_string(ExternalBytes) +
                                   " bytes: " + EC.message(), EC);

  // The data file goes first so the model never points at a missing or stale one.
  if (llvm::Error E = DataFile->commit())
    return E;
  if (llvm::Error E = ModelFile->commit()) {
    llvm::sys::fs::remove(DataPath);
    return E;
  }
  return llvm::Error::success();
}

} // namespace trainmem
