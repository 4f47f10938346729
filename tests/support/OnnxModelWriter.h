//===- OnnxModelWriter.h - small ONNX files for importer tests --------*- C++ -*-===//
//
// Builds an onnx::ModelProto the way a test describes a model: `W.input("ids",
// {"batch", "seq"}, OnnxInt64)`, `W.initializer("fc.weight", {4, 8}, Values)`,
// `W.node("MatMul", {"x", "fc.weight"}, {"y"}).i("transB", 1)`, then `W.save(Dir,
// "mlp.onnx")`. Nothing is validated here: tests write malformed files on purpose.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_TESTS_ONNXMODELWRITER_H
#define TRAINMEM_TESTS_ONNXMODELWRITER_H

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trainmem::testing {

inline constexpr int32_t OnnxFloat = onnx::TensorProto::FLOAT;
inline constexpr int32_t OnnxInt64 = onnx::TensorProto::INT64;
inline constexpr int32_t OnnxBool = onnx::TensorProto::BOOL;

/// One dim of a declared input shape: a size, a symbolic name, or neither.
struct OnnxDim {
  OnnxDim(int Size) : Value(Size) {}
  OnnxDim(int64_t Size) : Value(Size) {}
  OnnxDim(const char *Name) : Param(Name) {}
  static OnnxDim unnamed() { return OnnxDim(); }

  int64_t Value = -1;
  std::string Param;

private:
  OnnxDim() = default;
};

/// A float tensor with the values in raw_data (zeros when Values is empty).
inline onnx::TensorProto floatTensor(const std::string &Name, const std::vector<int64_t> &Dims,
                                     std::vector<float> Values = {}) {
  onnx::TensorProto T;
  T.set_name(Name);
  T.set_data_type(OnnxFloat);
  int64_t N = 1;
  for (int64_t D : Dims) {
    T.add_dims(D);
    N *= D;
  }
  if (Values.empty())
    Values.assign(static_cast<size_t>(N), 0.0f);
  T.set_raw_data(std::string(reinterpret_cast<const char *>(Values.data()),
                             Values.size() * sizeof(float)));
  return T;
}

/// An int64 tensor in int64_data; Dims defaults to a 1-D list, `{}` makes a scalar.
inline onnx::TensorProto int64Tensor(const std::string &Name, const std::vector<int64_t> &Values,
                                     std::optional<std::vector<int64_t>> Dims = std::nullopt) {
  onnx::TensorProto T;
  T.set_name(Name);
  T.set_data_type(OnnxInt64);
  for (int64_t D : Dims.value_or(std::vector<int64_t>{static_cast<int64_t>(Values.size())}))
    T.add_dims(D);
  for (int64_t V : Values)
    T.add_int64_data(V);
  return T;
}

/// A bool tensor with every element equal to Fill, in raw_data.
inline onnx::TensorProto boolTensor(const std::string &Name, const std::vector<int64_t> &Dims,
                                    bool Fill) {
  onnx::TensorProto T;
  T.set_name(Name);
  T.set_data_type(OnnxBool);
  int64_t N = 1;
  for (int64_t D : Dims) {
    T.add_dims(D);
    N *= D;
  }
  T.set_raw_data(std::string(static_cast<size_t>(N), Fill ? '\1' : '\0'));
  return T;
}

/// Appends a protobuf varint: for writing field headers by hand, e.g. a payload too
/// large for protobuf's own serializer.
inline void putVarint(std::string &Out, uint64_t V) {
  while (V >= 0x80) {
    Out.push_back(static_cast<char>((V & 0x7f) | 0x80));
    V >>= 7;
  }
  Out.push_back(static_cast<char>(V));
}

/// Appends the tag and length of a length-delimited field whose Length bytes follow.
inline void putFieldHeader(std::string &Out, uint32_t Field, uint64_t Length) {
  putVarint(Out, (static_cast<uint64_t>(Field) << 3) | 2);
  putVarint(Out, Length);
}

/// A node being written; attribute setters chain, named as in onnx.helper.
class OnnxNodeRef {
public:
  explicit OnnxNodeRef(onnx::NodeProto &N) : N(&N) {}
  OnnxNodeRef &i(const std::string &Name, int64_t V) {
    add(Name, onnx::AttributeProto::INT)->set_i(V);
    return *this;
  }
  OnnxNodeRef &f(const std::string &Name, float V) {
    add(Name, onnx::AttributeProto::FLOAT)->set_f(V);
    return *this;
  }
  OnnxNodeRef &ints(const std::string &Name, const std::vector<int64_t> &V) {
    auto *A = add(Name, onnx::AttributeProto::INTS);
    for (int64_t X : V)
      A->add_ints(X);
    return *this;
  }
  OnnxNodeRef &t(const std::string &Name, const onnx::TensorProto &V) {
    *add(Name, onnx::AttributeProto::TENSOR)->mutable_t() = V;
    return *this;
  }
  OnnxNodeRef &g(const std::string &Name, const onnx::GraphProto &V) {
    *add(Name, onnx::AttributeProto::GRAPH)->mutable_g() = V;
    return *this;
  }
  onnx::NodeProto &proto() { return *N; }

private:
  onnx::AttributeProto *add(const std::string &Name, onnx::AttributeProto::AttributeType Type) {
    onnx::AttributeProto *A = N->add_attribute();
    A->set_name(Name);
    A->set_type(Type);
    return A;
  }
  onnx::NodeProto *N;
};

class OnnxModelWriter {
public:
  explicit OnnxModelWriter(int64_t Opset = 17, int64_t IrVersion = 8) {
    Model.set_ir_version(IrVersion);
    Model.set_producer_name("trainmem-tests");
    Model.mutable_graph()->set_name("test");
    opset("", Opset);
  }

  void opset(const std::string &Domain, int64_t Version) {
    auto *Op = Model.add_opset_import();
    Op->set_domain(Domain);
    Op->set_version(Version);
  }

  /// A graph input with a declared shape.
  onnx::ValueInfoProto &input(const std::string &Name, const std::vector<OnnxDim> &Dims,
                              int32_t ElemType = OnnxFloat) {
    onnx::ValueInfoProto &VI = inputWithoutShape(Name, ElemType);
    auto *Shape = VI.mutable_type()->mutable_tensor_type()->mutable_shape();
    for (const OnnxDim &D : Dims) {
      auto *Dim = Shape->add_dim();
      if (!D.Param.empty())
        Dim->set_dim_param(D.Param);
      else if (D.Value >= 0)
        Dim->set_dim_value(D.Value);
    }
    return VI;
  }

  /// A graph input whose rank is unknown (no shape field at all).
  onnx::ValueInfoProto &inputWithoutShape(const std::string &Name, int32_t ElemType = OnnxFloat) {
    onnx::ValueInfoProto *VI = graph().add_input();
    VI->set_name(Name);
    VI->mutable_type()->mutable_tensor_type()->set_elem_type(ElemType);
    return *VI;
  }

  /// A graph output with only its element type declared.
  void output(const std::string &Name, int32_t ElemType = OnnxFloat) {
    onnx::ValueInfoProto *VI = graph().add_output();
    VI->set_name(Name);
    VI->mutable_type()->mutable_tensor_type()->set_elem_type(ElemType);
  }

  onnx::TensorProto &initializer(const onnx::TensorProto &T) {
    onnx::TensorProto *Added = graph().add_initializer();
    *Added = T;
    return *Added;
  }
  onnx::TensorProto &initializer(const std::string &Name, const std::vector<int64_t> &Dims,
                                 std::vector<float> Values = {}) {
    return initializer(floatTensor(Name, Dims, std::move(Values)));
  }
  onnx::TensorProto &ints(const std::string &Name, const std::vector<int64_t> &Values) {
    return initializer(int64Tensor(Name, Values));
  }
  onnx::TensorProto &scalar(const std::string &Name, int64_t Value) {
    return initializer(int64Tensor(Name, {Value}, std::vector<int64_t>{}));
  }

  OnnxNodeRef node(const std::string &OpType, const std::vector<std::string> &Inputs,
                   const std::vector<std::string> &Outputs, const std::string &Name = "",
                   const std::string &Domain = "") {
    onnx::NodeProto *N = graph().add_node();
    N->set_op_type(OpType);
    N->set_name(Name);
    if (!Domain.empty())
      N->set_domain(Domain);
    for (const std::string &In : Inputs)
      N->add_input(In);
    for (const std::string &Out : Outputs)
      N->add_output(Out);
    return OnnxNodeRef(*N);
  }

  onnx::GraphProto &graph() { return *Model.mutable_graph(); }
  onnx::ModelProto &model() { return Model; }
  std::string bytes() const { return Model.SerializeAsString(); }

  /// Writes the model to Dir/FileName and returns the path ("" if writing failed).
  std::string save(llvm::StringRef Dir, llvm::StringRef FileName) const {
    llvm::SmallString<256> Path(Dir);
    llvm::sys::path::append(Path, FileName);
    std::error_code EC;
    llvm::raw_fd_ostream OS(Path, EC);
    if (EC)
      return "";
    OS << bytes();
    OS.close();
    bool Failed = OS.has_error();
    OS.clear_error(); // an unchecked error would abort in the stream's destructor
    return Failed ? "" : std::string(Path);
  }

  /// Writes the model plus one last initializer, Header (name, dtype, dims), whose
  /// raw_data of PayloadBytes is a hole at the end of the file: the initializer is the
  /// graph's last field and the graph the model's, their headers written by hand since
  /// protobuf cannot serialize messages over 2 GiB. Returns the payload's file offset,
  /// or nullopt with Error set when the file cannot be written or extended.
  std::optional<uint64_t> saveWithTrailingPayload(const std::string &Path,
                                                  const onnx::TensorProto &Header,
                                                  uint64_t PayloadBytes,
                                                  std::string &Error) const {
    std::string Tensor = Header.SerializeAsString();
    putFieldHeader(Tensor, /*raw_data=*/9, PayloadBytes);
    std::string GraphBytes = Model.graph().SerializeAsString();
    putFieldHeader(GraphBytes, /*initializer=*/5, Tensor.size() + PayloadBytes);
    GraphBytes += Tensor;
    onnx::ModelProto WithoutGraph = Model;
    WithoutGraph.clear_graph();
    std::string File = WithoutGraph.SerializeAsString();
    putFieldHeader(File, /*graph=*/7, GraphBytes.size() + PayloadBytes);
    File += GraphBytes;

    int FD;
    if (std::error_code EC = llvm::sys::fs::openFileForWrite(Path, FD)) {
      Error = EC.message();
      return std::nullopt;
    }
    llvm::raw_fd_ostream OS(FD, /*shouldClose=*/false);
    OS << File;
    OS.flush();
    std::error_code EC = OS.error();
    OS.clear_error();
    if (!EC)
      EC = llvm::sys::fs::resize_file(FD, File.size() + PayloadBytes);
    llvm::sys::fs::closeFile(FD);
    if (EC) {
      Error = EC.message();
      return std::nullopt;
    }
    return File.size();
  }

private:
  onnx::ModelProto Model;
};

} // namespace trainmem::testing

#endif
