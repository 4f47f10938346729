//===- OnnxExporterTest.cpp - the weightless ONNX export -------------------------===//
//
// Builds small graphs with the IR, exports them, and reads the result back with ONNX's
// own protobuf classes, checker and shape inference: the file must be valid ONNX, its
// weights external references into a sparse file, its small constants exact, and its
// failures clean. With the shared fixtures present, a real export goes through the
// importer twice.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/ModelImporter.h"
#include "analyzer/OnnxExporter.h"
#include "support/HfConfigTestSupport.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <gtest/gtest.h>

#if __has_include("trainmem/Version.h")
#include "trainmem/Version.h"
#endif

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <map>

using namespace trainmem;

namespace {

/// Small builders so a test reads like the graph it exports.
class GraphBuilder {
public:
  GraphBuilder() { G.Name = "builder"; }

  TensorId addInput(const std::string &Name, DType Type, std::vector<int64_t> Shape) {
    TensorId Id = addTensor(Name, Type, std::move(Shape), TensorKind::Input);
    G.Inputs.push_back(Id);
    return Id;
  }

  /// A learnable weight whose payload the IR does not hold.
  TensorId addWeight(const std::string &Name, DType Type, std::vector<int64_t> Shape) {
    TensorId Id = addTensor(Name, Type, std::move(Shape), TensorKind::Parameter);
    G.Tensors[Id].Stored = true;
    return Id;
  }

  TensorId addIntConstant(const std::string &Name, DType Type, std::vector<int64_t> Shape,
                          std::vector<int64_t> Values) {
    TensorId Id = addTensor(Name, Type, std::move(Shape), TensorKind::Constant);
    G.Tensors[Id].Stored = true;
    G.Tensors[Id].IntValues = std::move(Values);
    return Id;
  }

  TensorId addFloatConstant(const std::string &Name, DType Type, std::vector<int64_t> Shape,
                            std::vector<double> Values) {
    TensorId Id = addTensor(Name, Type, std::move(Shape), TensorKind::Constant);
    G.Tensors[Id].Stored = true;
    G.Tensors[Id].FloatValues = std::move(Values);
    return Id;
  }

  /// Adds a node with one output; \p Shape nullopt leaves the output's shape unknown.
  TensorId addNode(const std::string &OpType, std::vector<TensorId> Inputs,
                   const std::string &OutName, DType Type,
                   std::optional<std::vector<int64_t>> Shape,
                   std::map<std::string, AttributeValue> Attributes = {},
                   const std::string &Domain = "") {
    TensorId Out = Shape ? addTensor(OutName, Type, *Shape, TensorKind::Activation)
                         : addTensor(OutName, Type, {}, TensorKind::Activation);
    G.Tensors[Out].ShapeKnown = Shape.has_value();
    Node N;
    N.Name = "/" + OutName + "/" + OpType;
    N.OpType = OpType;
    N.Domain = Domain;
    N.Inputs = std::move(Inputs);
    N.Outputs = {Out};
    N.Attributes = std::move(Attributes);
    G.addNode(std::move(N));
    return Out;
  }

  void markOutput(TensorId Id) {
    G.Outputs.push_back(Id);
    G.Tensors[Id].Kind = TensorKind::Output;
    G.Tensors[Id].IsGraphOutput = true;
  }

  Graph finish() {
    EXPECT_TRUE(G.finalize());
    return std::move(G);
  }

  Graph G;

private:
  TensorId addTensor(const std::string &Name, DType Type, std::vector<int64_t> Shape,
                     TensorKind Kind) {
    Tensor T;
    T.Name = Name;
    T.Type = Type;
    T.Shape = std::move(Shape);
    T.ShapeKnown = true;
    T.Kind = Kind;
    return G.addTensor(std::move(T));
  }
};

constexpr int64_t VocabRows = 2048, VocabCols = 1024; // an 8 MiB fp32 weight

/// x[2,8] -> MatMul(W) -> Add(B) -> Relu -> Reshape(shape=[4,8]) -> `out`;
/// Relu * scale -> a custom-domain Probe whose output shape is unknown; an unused
/// lm_head weight large enough that a non-sparse data file would show.
Graph buildMlp() {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {2, 8});
  TensorId W = B.addWeight("fc.weight", DType::Float32, {8, 16});
  TensorId Bias = B.addWeight("fc.bias", DType::Float32, {16});
  B.addWeight("lm_head.weight", DType::Float32, {VocabRows, VocabCols});
  TensorId Shape = B.addIntConstant("shape", DType::Int64, {2}, {4, 8});
  TensorId Scale = B.addFloatConstant("scale", DType::Float32, {}, {0.5});

  TensorId H = B.addNode("MatMul", {X, W}, "h", DType::Float32, {{2, 16}});
  TensorId A = B.addNode("Add", {H, Bias}, "a", DType::Float32, {{2, 16}});
  TensorId R = B.addNode("Relu", {A}, "r", DType::Float32, {{2, 16}});
  TensorId Out = B.addNode("Reshape", {R, Shape}, "out", DType::Float32, {{4, 8}},
                           {{"allowzero", int64_t{0}}});
  TensorId S = B.addNode("Mul", {R, Scale}, "s", DType::Float32, {{2, 16}});
  B.addNode("Probe", {S}, "probe", DType::Float32, std::nullopt,
            {{"alpha", 0.25},
             {"mode", std::string("fast")},
             {"axes", std::vector<int64_t>{0, -1}},
             {"gains", std::vector<double>{1.0, 2.5}},
             {"count", int64_t{3}}},
            "com.example");
  B.markOutput(Out);
  return B.finish();
}

onnx::ModelProto loadModel(const std::string &Path) {
  onnx::ModelProto Model;
  std::ifstream In(Path, std::ios::binary);
  EXPECT_TRUE(In.good()) << Path;
  EXPECT_TRUE(Model.ParseFromIstream(&In)) << Path;
  return Model;
}

const onnx::TensorProto *findInitializer(const onnx::ModelProto &Model,
                                         const std::string &Name) {
  for (const onnx::TensorProto &T : Model.graph().initializer())
    if (T.name() == Name)
      return &T;
  return nullptr;
}

const onnx::ValueInfoProto *findValueInfo(const onnx::ModelProto &Model,
                                          const std::string &Name) {
  for (const onnx::ValueInfoProto &V : Model.graph().value_info())
    if (V.name() == Name)
      return &V;
  return nullptr;
}

std::string externalEntry(const onnx::TensorProto &T, const std::string &Key) {
  for (const onnx::StringStringEntryProto &E : T.external_data())
    if (E.key() == Key)
      return E.value();
  return "";
}

std::vector<int64_t> dimsOf(const onnx::ValueInfoProto &V) {
  std::vector<int64_t> Dims;
  for (const onnx::TensorShapeProto_Dimension &D : V.type().tensor_type().shape().dim())
    Dims.push_back(D.has_dim_value() ? D.dim_value() : -1);
  return Dims;
}

std::vector<uint16_t> rawHalves(const onnx::TensorProto &T) {
  std::vector<uint16_t> Bits(T.raw_data().size() / 2);
  for (size_t I = 0; I < Bits.size(); ++I)
    Bits[I] = static_cast<uint16_t>(static_cast<uint8_t>(T.raw_data()[2 * I]) |
                                    (static_cast<uint8_t>(T.raw_data()[2 * I + 1]) << 8));
  return Bits;
}

std::vector<std::string> listDirectory(const std::string &Dir) {
  std::vector<std::string> Names;
  std::error_code EC;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC))
    Names.push_back(llvm::sys::path::filename(It->path()).str());
  std::sort(Names.begin(), Names.end());
  return Names;
}

class OnnxExporterTest : public ::testing::Test {
protected:
  void SetUp() override {
    llvm::SmallString<128> Path;
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("trainmem-onnx-export", Path));
    Dir = Path.str().str();
  }
  void TearDown() override { llvm::sys::fs::remove_directories(Dir); }

  std::string path(const std::string &Name) const { return Dir + "/" + Name; }

  /// Exports \p G to \p Name in the test folder, failing the test on an error.
  std::string exportTo(const Graph &G, const std::string &Name) {
    std::string Path = path(Name);
    llvm::Error E = exportWeightlessOnnx(G, Path);
    EXPECT_FALSE(static_cast<bool>(E)) << llvm::toString(std::move(E));
    return Path;
  }

  std::string Dir;
};

TEST_F(OnnxExporterTest, CheckerAcceptsTheModel) {
  Graph G = buildMlp();
  std::string Path = exportTo(G, "mlp.onnx");
  onnx::ModelProto Model = loadModel(Path);

  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  // The in-memory overload resolves external data against the current directory, not
  // the model's, so it checks a copy whose weights are inline zeros instead.
  onnx::ModelProto InMemory = Model;
  for (onnx::TensorProto &T : *InMemory.mutable_graph()->mutable_initializer())
    if (T.data_location() == onnx::TensorProto::EXTERNAL) {
      T.clear_external_data();
      T.clear_data_location();
      T.set_raw_data(std::string(static_cast<size_t>(4 * [&] {
        int64_t N = 1;
        for (int64_t D : T.dims())
          N *= D;
        return N;
      }()), '\0'));
    }
  EXPECT_NO_THROW(onnx::checker::check_model(InMemory));

  EXPECT_EQ(Model.ir_version(), 8);
  EXPECT_EQ(Model.producer_name(), "trainmem");
#ifdef TRAINMEM_VERSION_STRING
  EXPECT_EQ(Model.producer_version(), TRAINMEM_VERSION_STRING);
#endif
  EXPECT_EQ(Model.graph().node_size(), 6);
  ASSERT_EQ(Model.graph().input_size(), 1);
  EXPECT_EQ(Model.graph().input(0).name(), "x");
  EXPECT_EQ(dimsOf(Model.graph().input(0)), (std::vector<int64_t>{2, 8}));
  ASSERT_EQ(Model.graph().output_size(), 1);
  EXPECT_EQ(Model.graph().output(0).name(), "out");
  EXPECT_EQ(dimsOf(Model.graph().output(0)), (std::vector<int64_t>{4, 8}));
}

TEST_F(OnnxExporterTest, NodesKeepOrderAttributesAndDomains) {
  Graph G = buildMlp();
  onnx::ModelProto Model = loadModel(exportTo(G, "mlp.onnx"));
  const onnx::GraphProto &Out = Model.graph();

  std::vector<std::string> Ops;
  for (const onnx::NodeProto &N : Out.node())
    Ops.push_back(N.op_type());
  EXPECT_EQ(Ops, (std::vector<std::string>{"MatMul", "Add", "Relu", "Reshape", "Mul", "Probe"}));
  EXPECT_EQ(Out.node(0).name(), "/h/MatMul");
  EXPECT_EQ(Out.node(0).input(0), "x");
  EXPECT_EQ(Out.node(0).input(1), "fc.weight");

  const onnx::NodeProto &Probe = Out.node(5);
  EXPECT_EQ(Probe.domain(), "com.example");
  std::map<std::string, const onnx::AttributeProto *> Attrs;
  for (const onnx::AttributeProto &A : Probe.attribute())
    Attrs[A.name()] = &A;
  ASSERT_EQ(Attrs.size(), 5u);
  EXPECT_EQ(Attrs["alpha"]->type(), onnx::AttributeProto::FLOAT);
  EXPECT_FLOAT_EQ(Attrs["alpha"]->f(), 0.25f);
  EXPECT_EQ(Attrs["mode"]->type(), onnx::AttributeProto::STRING);
  EXPECT_EQ(Attrs["mode"]->s(), "fast");
  EXPECT_EQ(Attrs["axes"]->type(), onnx::AttributeProto::INTS);
  EXPECT_EQ(std::vector<int64_t>(Attrs["axes"]->ints().begin(), Attrs["axes"]->ints().end()),
            (std::vector<int64_t>{0, -1}));
  EXPECT_EQ(Attrs["gains"]->type(), onnx::AttributeProto::FLOATS);
  ASSERT_EQ(Attrs["gains"]->floats_size(), 2);
  EXPECT_FLOAT_EQ(Attrs["gains"]->floats(1), 2.5f);
  EXPECT_EQ(Attrs["count"]->type(), onnx::AttributeProto::INT);
  EXPECT_EQ(Attrs["count"]->i(), 3);

  std::map<std::string, int64_t> Opsets;
  for (const onnx::OperatorSetIdProto &O : Model.opset_import())
    Opsets[O.domain()] = O.version();
  EXPECT_EQ(Opsets, (std::map<std::string, int64_t>{{"", 17}, {"com.example", 1}}));

  G.OpsetVersion = 14;
  onnx::ModelProto Model14 = loadModel(exportTo(G, "mlp14.onnx"));
  EXPECT_EQ(Model14.opset_import(0).domain(), "");
  EXPECT_EQ(Model14.opset_import(0).version(), 14);
}

TEST_F(OnnxExporterTest, ValueInfoCarriesShapesAndOmitsUnknownOnes) {
  onnx::ModelProto Model = loadModel(exportTo(buildMlp(), "mlp.onnx"));
  for (const char *Name : {"h", "a", "r", "s"}) {
    const onnx::ValueInfoProto *V = findValueInfo(Model, Name);
    ASSERT_NE(V, nullptr) << Name;
    EXPECT_EQ(V->type().tensor_type().elem_type(), onnx::TensorProto::FLOAT) << Name;
    EXPECT_EQ(dimsOf(*V), (std::vector<int64_t>{2, 16})) << Name;
  }
  const onnx::ValueInfoProto *Probe = findValueInfo(Model, "probe");
  ASSERT_NE(Probe, nullptr);
  EXPECT_EQ(Probe->type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  EXPECT_FALSE(Probe->type().tensor_type().has_shape());
  // Graph inputs and outputs are declared there, not repeated as value_info.
  EXPECT_EQ(findValueInfo(Model, "out"), nullptr);
  EXPECT_EQ(findValueInfo(Model, "x"), nullptr);
}

TEST_F(OnnxExporterTest, WeightsAreAlignedExternalReferencesIntoASparseFile) {
  std::string Path = exportTo(buildMlp(), "mlp.onnx");
  onnx::ModelProto Model = loadModel(Path);

  struct Expected {
    const char *Name;
    int64_t Offset, Length;
  };
  const int64_t LmHeadBytes = VocabRows * VocabCols * 4;
  // In tensor order, each offset rounded up to 4096 after the previous payload.
  for (const Expected &E : {Expected{"fc.weight", 0, 8 * 16 * 4}, Expected{"fc.bias", 4096, 64},
                            Expected{"lm_head.weight", 8192, LmHeadBytes}}) {
    const onnx::TensorProto *T = findInitializer(Model, E.Name);
    ASSERT_NE(T, nullptr) << E.Name;
    EXPECT_EQ(T->data_type(), onnx::TensorProto::FLOAT) << E.Name;
    EXPECT_EQ(T->data_location(), onnx::TensorProto::EXTERNAL) << E.Name;
    EXPECT_EQ(externalEntry(*T, "location"), "mlp.onnx.data") << E.Name;
    EXPECT_EQ(externalEntry(*T, "offset"), std::to_string(E.Offset)) << E.Name;
    EXPECT_EQ(externalEntry(*T, "length"), std::to_string(E.Length)) << E.Name;
    EXPECT_EQ(std::stoll(externalEntry(*T, "offset")) % OnnxExternalDataAlignment, 0);
    EXPECT_TRUE(T->raw_data().empty() && T->float_data_size() == 0) << E.Name;
  }
  EXPECT_EQ(findInitializer(Model, "fc.weight")->dims_size(), 2);

  std::string DataPath = weightlessOnnxDataPath(Path);
  EXPECT_EQ(DataPath, path("mlp.onnx.data"));
  struct stat St;
  ASSERT_EQ(::stat(DataPath.c_str(), &St), 0) << std::strerror(errno);
  EXPECT_EQ(St.st_size, 8192 + LmHeadBytes);
  // A written file of 8 MiB would occupy ~16384 blocks of 512 bytes; a hole none.
  EXPECT_LT(St.st_blocks * 512, 64 * 1024) << "data file is not sparse";
  // Nothing else is left beside the two files (no temporaries).
  EXPECT_EQ(listDirectory(Dir), (std::vector<std::string>{"mlp.onnx", "mlp.onnx.data"}));

  // ONNX 1.12's checker does require the data file: the export is only valid with it.
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  ASSERT_FALSE(llvm::sys::fs::remove(DataPath));
  EXPECT_THROW(onnx::checker::check_model(Path), onnx::checker::ValidationError);
}

TEST_F(OnnxExporterTest, SmallConstantsRoundTripInTheirDType) {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {3});
  B.markOutput(B.addNode("Identity", {X}, "y", DType::Float32, {{3}}));
  B.addIntConstant("i64", DType::Int64, {3}, {INT64_MAX, -1, 0});
  B.addIntConstant("i32", DType::Int32, {2}, {-7, 123456});
  B.addIntConstant("i8", DType::Int8, {2}, {-5, 127});
  B.addIntConstant("u8", DType::UInt8, {2}, {0, 255});
  B.addIntConstant("flag", DType::Bool, {2}, {1, 0});
  B.addFloatConstant("f32", DType::Float32, {}, {0.5});
  B.addFloatConstant("f64", DType::Float64, {2}, {0.1, -1e300});
  B.addFloatConstant("f16", DType::Float16, {3}, {1.0, -2.5, 65504.0});
  B.addFloatConstant("bf16", DType::BFloat16, {2}, {1.0, 3.0});
  B.addIntConstant("f32_from_ints", DType::Float32, {2}, {3, -4});
  TensorId Filled = B.addWeight("zeros", DType::Float32, {4});
  B.G.Tensors[Filled].Payload.From = PayloadRef::Source::Fill;
  B.G.Tensors[Filled].Payload.FillValue = 0.0;
  B.addWeight("empty", DType::Float32, {0, 4});
  std::string Path = exportTo(B.finish(), "consts.onnx");
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  onnx::ModelProto Model = loadModel(Path);

  auto Get = [&](const char *Name) -> const onnx::TensorProto & {
    const onnx::TensorProto *T = findInitializer(Model, Name);
    EXPECT_NE(T, nullptr) << Name;
    static const onnx::TensorProto Missing;
    if (!T)
      return Missing;
    EXPECT_NE(T->data_location(), onnx::TensorProto::EXTERNAL) << Name;
    return *T;
  };
  const onnx::TensorProto &I64 = Get("i64");
  EXPECT_EQ(I64.data_type(), onnx::TensorProto::INT64);
  EXPECT_EQ(std::vector<int64_t>(I64.int64_data().begin(), I64.int64_data().end()),
            (std::vector<int64_t>{INT64_MAX, -1, 0}));
  auto Int32s = [](const onnx::TensorProto &T) {
    return std::vector<int32_t>(T.int32_data().begin(), T.int32_data().end());
  };
  EXPECT_EQ(Get("i32").data_type(), onnx::TensorProto::INT32);
  EXPECT_EQ(Int32s(Get("i32")), (std::vector<int32_t>{-7, 123456}));
  EXPECT_EQ(Get("i8").data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(Int32s(Get("i8")), (std::vector<int32_t>{-5, 127}));
  EXPECT_EQ(Int32s(Get("u8")), (std::vector<int32_t>{0, 255}));
  EXPECT_EQ(Get("flag").data_type(), onnx::TensorProto::BOOL);
  EXPECT_EQ(Int32s(Get("flag")), (std::vector<int32_t>{1, 0}));

  const onnx::TensorProto &F32 = Get("f32");
  EXPECT_EQ(F32.dims_size(), 0);
  ASSERT_EQ(F32.float_data_size(), 1);
  EXPECT_EQ(F32.float_data(0), 0.5f);
  const onnx::TensorProto &F64 = Get("f64");
  ASSERT_EQ(F64.double_data_size(), 2);
  EXPECT_EQ(F64.double_data(0), 0.1);
  EXPECT_EQ(F64.double_data(1), -1e300);
  // IEEE half: 1.0 = 0x3c00, -2.5 = 0xc100, 65504 (largest finite) = 0x7bff.
  EXPECT_EQ(Get("f16").data_type(), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(rawHalves(Get("f16")), (std::vector<uint16_t>{0x3c00, 0xc100, 0x7bff}));
  // bfloat16: the top half of the float32 pattern (1.0 = 0x3f80, 3.0 = 0x4040).
  EXPECT_EQ(Get("bf16").data_type(), onnx::TensorProto::BFLOAT16);
  EXPECT_EQ(rawHalves(Get("bf16")), (std::vector<uint16_t>{0x3f80, 0x4040}));
  const onnx::TensorProto &FromInts = Get("f32_from_ints");
  ASSERT_EQ(FromInts.float_data_size(), 2);
  EXPECT_EQ(FromInts.float_data(1), -4.0f);
  EXPECT_EQ(Get("zeros").float_data_size(), 4);
  const onnx::TensorProto &Empty = Get("empty");
  EXPECT_EQ(Empty.dims_size(), 2);
  EXPECT_TRUE(Empty.raw_data().empty() && Empty.float_data_size() == 0);

  // Nothing was external, so no data file was written.
  EXPECT_FALSE(llvm::sys::fs::exists(weightlessOnnxDataPath(Path)));
}

TEST_F(OnnxExporterTest, ShapeInferenceAgreesWithTheExport) {
  onnx::ModelProto Model = loadModel(exportTo(buildMlp(), "mlp.onnx"));
  // Forget what trainmem wrote and let ONNX derive it from inputs, initializers and the
  // inline shape constant; it must land on the same shapes.
  Model.mutable_graph()->clear_value_info();
  Model.mutable_graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->clear_shape();
  onnx::ShapeInferenceOptions Strict(/*check_type=*/true, /*error_mode=*/1);
  ASSERT_NO_THROW(onnx::shape_inference::InferShapes(Model, onnx::OpSchemaRegistry::Instance(),
                                                     Strict));
  EXPECT_EQ(dimsOf(Model.graph().output(0)), (std::vector<int64_t>{4, 8}));
  const onnx::ValueInfoProto *H = findValueInfo(Model, "h");
  ASSERT_NE(H, nullptr);
  EXPECT_EQ(dimsOf(*H), (std::vector<int64_t>{2, 16}));

  // And with trainmem's own shapes left in, inference finds nothing to contradict.
  onnx::ModelProto Original = loadModel(path("mlp.onnx"));
  EXPECT_NO_THROW(onnx::shape_inference::InferShapes(
      Original, onnx::OpSchemaRegistry::Instance(), Strict));
}

TEST_F(OnnxExporterTest, UnknownOutputShapesComeFromOnnxInferenceOrStayUnknown) {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {2, 8});
  TensorId W = B.addWeight("w", DType::Float32, {8, 4});
  TensorId Y = B.addNode("MatMul", {X, W}, "y", DType::Float32, std::nullopt);
  B.markOutput(Y);
  TensorId Z = B.addNode("Opaque", {Y}, "z", DType::Float32, std::nullopt, {}, "com.example");
  B.markOutput(Z);
  std::string Path = exportTo(B.finish(), "partial.onnx");
  onnx::ModelProto Model = loadModel(Path);
  ASSERT_EQ(Model.graph().output_size(), 2);
  // ONNX derives MatMul's shape, so the IR's gap is filled with a fact, not a guess.
  EXPECT_EQ(dimsOf(Model.graph().output(0)), (std::vector<int64_t>{2, 4}));
  // Nothing knows what a custom op returns: no shape, which ONNX's checker refuses.
  EXPECT_FALSE(Model.graph().output(1).type().tensor_type().has_shape());
  EXPECT_EQ(Model.graph().output(1).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  EXPECT_THROW(onnx::checker::check_model(Path), onnx::checker::ValidationError);
}

TEST_F(OnnxExporterTest, ConstantOfShapeKeepsItsDtype) {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {2, 3});
  TensorId Shape = B.addNode("Shape", {X}, "shape", DType::Int64, {{2}});
  TensorId Ones = B.addNode("ConstantOfShape", {Shape}, "ones", DType::Int64, {{2, 3}});
  B.markOutput(Ones);
  // An activation whose dtype the IR lost gets no elem_type, not ONNX's number 18.
  B.addNode("Opaque", {X}, "lost", DType::Undefined, std::nullopt, {}, "com.example");
  std::string Path = exportTo(B.finish(), "fill.onnx");
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  onnx::ModelProto Model = loadModel(Path);
  const onnx::NodeProto &Fill = Model.graph().node(1);
  ASSERT_EQ(Fill.attribute_size(), 1);
  EXPECT_EQ(Fill.attribute(0).name(), "value");
  EXPECT_EQ(Fill.attribute(0).t().data_type(), onnx::TensorProto::INT64);
  onnx::ShapeInferenceOptions Strict(/*check_type=*/true, /*error_mode=*/1);
  EXPECT_NO_THROW(onnx::shape_inference::InferShapes(Model, onnx::OpSchemaRegistry::Instance(),
                                                     Strict));
  EXPECT_EQ(findValueInfo(loadModel(Path), "lost"), nullptr);
}

TEST_F(OnnxExporterTest, ConstantNodesBecomeInitializers) {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {2, 3});
  TensorId Axes = B.addNode("Constant", {}, "axes", DType::Int64, {{1}});
  B.G.Tensors[Axes].Stored = true;
  B.G.Tensors[Axes].Kind = TensorKind::Constant;
  B.G.Tensors[Axes].IntValues = {1};
  B.markOutput(B.addNode("Unsqueeze", {X, Axes}, "y", DType::Float32, {{2, 1, 3}}));
  std::string Path = exportTo(B.finish(), "unsqueeze.onnx");
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  onnx::ModelProto Model = loadModel(Path);
  ASSERT_EQ(Model.graph().node_size(), 1);
  EXPECT_EQ(Model.graph().node(0).op_type(), "Unsqueeze");
  const onnx::TensorProto *T = findInitializer(Model, "axes");
  ASSERT_NE(T, nullptr);
  ASSERT_EQ(T->int64_data_size(), 1);
  EXPECT_EQ(T->int64_data(0), 1);
}

TEST_F(OnnxExporterTest, UndeclaredInputsAndUnnamedTensorsStayDefined) {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {4});
  // A tensor nodes read that neither G.Inputs nor a node defines (an importer gap).
  Tensor Mask;
  Mask.Name = "mask";
  Mask.Type = DType::Float32;
  Mask.Shape = {4};
  Mask.ShapeKnown = true;
  TensorId M = B.G.addTensor(Mask);
  TensorId Y = B.addNode("Mul", {X, M}, "", DType::Float32, {{4}});
  B.markOutput(B.addNode("Relu", {Y}, "", DType::Float32, {{4}}));
  std::string Path = exportTo(B.finish(), "gaps.onnx");
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  onnx::ModelProto Model = loadModel(Path);
  ASSERT_EQ(Model.graph().input_size(), 2);
  EXPECT_EQ(Model.graph().input(1).name(), "mask");
  EXPECT_FALSE(Model.graph().node(0).output(0).empty());
  EXPECT_NE(Model.graph().node(0).output(0), Model.graph().node(1).output(0));
}

TEST_F(OnnxExporterTest, UnwritablePathsAreErrorsThatNameThePath) {
  Graph G = buildMlp();
  {
    std::ofstream(path("plain-file")) << "x";
  }
  for (const std::string &Bad :
       {path("plain-file") + "/model.onnx", path("missing-folder") + "/model.onnx"}) {
    llvm::Error E = exportWeightlessOnnx(G, Bad);
    ASSERT_TRUE(static_cast<bool>(E)) << Bad;
    std::string Message = llvm::toString(std::move(E));
    EXPECT_NE(Message.find(Bad), std::string::npos) << Message;
  }
  // The target is a folder: the temporaries are written, the rename fails, and nothing
  // is left behind (running as root defeats permission bits, not this).
  ASSERT_FALSE(llvm::sys::fs::create_directory(path("taken.onnx")));
  llvm::Error E = exportWeightlessOnnx(G, path("taken.onnx"));
  ASSERT_TRUE(static_cast<bool>(E));
  std::string Message = llvm::toString(std::move(E));
  EXPECT_NE(Message.find("taken.onnx"), std::string::npos) << Message;
  EXPECT_EQ(listDirectory(Dir), (std::vector<std::string>{"plain-file", "taken.onnx"}));

  llvm::Error NoPath = exportWeightlessOnnx(G, "");
  EXPECT_TRUE(static_cast<bool>(NoPath));
  llvm::consumeError(std::move(NoPath));
}

TEST_F(OnnxExporterTest, MalformedGraphsAreRefused) {
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {4});
  B.markOutput(B.addNode("Relu", {X}, "y", DType::Float32, {{4}}));
  Graph Unfinished = std::move(B.G); // never finalized: no topological order
  llvm::Error E = exportWeightlessOnnx(Unfinished, path("bad.onnx"));
  ASSERT_TRUE(static_cast<bool>(E));
  EXPECT_NE(llvm::toString(std::move(E)).find("topological order"), std::string::npos);

  Unfinished.finalize();
  Unfinished.Nodes[0].Inputs = {42};
  E = exportWeightlessOnnx(Unfinished, path("bad.onnx"));
  ASSERT_TRUE(static_cast<bool>(E));
  EXPECT_NE(llvm::toString(std::move(E)).find("tensor 42"), std::string::npos);
  EXPECT_TRUE(listDirectory(Dir).empty());
}

TEST_F(OnnxExporterTest, ReExportReplacesTheFileWhole) {
  std::string Path = exportTo(buildMlp(), "model.onnx");
  GraphBuilder B;
  TensorId X = B.addInput("x", DType::Float32, {4});
  B.markOutput(B.addNode("Relu", {X}, "y", DType::Float32, {{4}}));
  exportTo(B.finish(), "model.onnx");
  onnx::ModelProto Model = loadModel(Path);
  EXPECT_EQ(Model.graph().node_size(), 1);
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
}

/// The shared fixtures folder, or "" (with the reason in \p Why) when a test must skip.
std::string fixturesDir(std::string &Why) {
#ifdef TRAINMEM_FIXTURES_DIR
  std::string Dir = TRAINMEM_FIXTURES_DIR;
  if (llvm::sys::fs::is_directory(Dir + "/gt/onnx"))
    return Dir;
  Why = "fixtures folder " + Dir + "/gt/onnx is absent";
#else
  Why = "TRAINMEM_FIXTURES_DIR is not defined for this test target";
#endif
  return "";
}

std::map<std::string, std::vector<int64_t>> parameterShapes(const Graph &G) {
  std::map<std::string, std::vector<int64_t>> Shapes;
  for (const Tensor &T : G.Tensors)
    if (T.Kind == TensorKind::Parameter)
      Shapes[T.Name] = T.Shape;
  return Shapes;
}

TEST_F(OnnxExporterTest, RoundTripsGpt2TinyThroughTheImporter) {
  std::string Why, Fixtures = fixturesDir(Why);
  if (Fixtures.empty())
    GTEST_SKIP() << Why;
  std::string Source = Fixtures + "/gt/onnx/gpt2_tiny.onnx";
  ImportOptions Options;
  Options.DefaultDim = 8;
  llvm::Expected<Graph> First = importOnnx(Source, Options);
  ASSERT_TRUE(static_cast<bool>(First)) << llvm::toString(First.takeError());

  std::string Path = exportTo(*First, "gpt2_tiny.onnx");
  EXPECT_NO_THROW(onnx::checker::check_model(Path));
  llvm::Expected<Graph> Second = importOnnx(Path, Options);
  ASSERT_TRUE(static_cast<bool>(Second)) << llvm::toString(Second.takeError());

  EXPECT_EQ(Second->Tensors.size(), First->Tensors.size());
  EXPECT_EQ(Second->Nodes.size(), First->Nodes.size());
  auto Expected = parameterShapes(*First);
  EXPECT_GT(Expected.size(), 10u);
  EXPECT_EQ(parameterShapes(*Second), Expected);
  // A weightless file: every parameter too large for the IR to hold its values is an
  // external reference (small ones, like a tiny model's LayerNorm gains, go inline).
  int External = 0;
  for (const Tensor &T : Second->Tensors) {
    if (T.Kind != TensorKind::Parameter || T.numElements() <= Tensor::SmallValueLimit)
      continue;
    ++External;
    EXPECT_EQ(T.Payload.From, PayloadRef::Source::ExternalFile) << T.Name;
  }
  EXPECT_GT(External, 0);
}

// trainmem's exports of Hugging Face configs read back with the config's parameters: the
// rotary tables' inverse frequencies (`rotary_emb.inv_freq` and its variants), which reach
// a MatMul with the positions, stay buffers. They were counted as trainable parameters (32
// more for LLaMA-3.2-1B, and their optimizer states).
TEST_F(OnnxExporterTest, HfConfigExportsReadBackWithTheConfigsParameters) {
  for (const char *Name : {"tiny-llama", "llama-3.2-1b", "gemma-3-1b", "pythia-160m",
                           "phi-3-mini-4k", "olmo-2-7b", "gpt2", "bert-base-uncased", "phi-2",
                           "opt-350m", "starcoder2-3b", "gpt-j-6b"}) {
    SCOPED_TRACE(Name);
    const Graph Hf = trainmem::testing::importSample(Name, trainmem::testing::dims(1, 16));
    const std::string Path = exportTo(Hf, std::string(Name) + ".onnx");
    ImportOptions Options;
    Options.DefaultDim = 16;
    llvm::Expected<Graph> Back = importOnnx(Path, Options);
    ASSERT_TRUE(static_cast<bool>(Back)) << llvm::toString(Back.takeError());
    const auto Expected = parameterShapes(Hf);
    EXPECT_GT(Expected.size(), 10u);
    EXPECT_EQ(parameterShapes(*Back), Expected);
    int64_t Buffers = 0;
    // GPT-J's rotary keeps a sinusoid table, `rotary_emb.embed_positions`, instead (by
    // use an embedding: it was read back as 8,192 trainable parameters in the shrunk one).
    for (const Tensor &T : Back->Tensors)
      if (T.Kind == TensorKind::Buffer && (llvm::StringRef(T.Name).ends_with("inv_freq") ||
                                           llvm::StringRef(T.Name).ends_with("rotary_emb.embed_positions")))
        ++Buffers;
    const bool Rotary = !llvm::is_contained({llvm::StringRef("gpt2"), llvm::StringRef("bert-base-uncased"),
                                             llvm::StringRef("opt-350m")},
                                            llvm::StringRef(Name));
    EXPECT_EQ(Buffers > 0, Rotary);
  }
  // The shrunk mixture-of-experts configs: the grouped matmuls of the ai.trainmem domain,
  // gpt-oss's sinks and expert biases, DeepSeek's latent attention and its router's
  // correction bias, a buffer by name (by use it is a bias: it was read back as a
  // parameter).
  for (const char *Name : {"gpt-oss-20b", "deepseek-v3"}) {
    SCOPED_TRACE(Name);
    const Graph Hf = trainmem::testing::importPath(
        std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/measured-hf/configs/" + Name + ".json",
        trainmem::testing::dims(1, 16));
    const std::string Path = exportTo(Hf, std::string(Name) + ".onnx");
    EXPECT_NO_THROW(onnx::checker::check_model(Path));
    ImportOptions Options;
    Options.DefaultDim = 16;
    llvm::Expected<Graph> Back = importOnnx(Path, Options);
    ASSERT_TRUE(static_cast<bool>(Back)) << llvm::toString(Back.takeError());
    EXPECT_EQ(parameterShapes(*Back), parameterShapes(Hf));
  }
}

TEST_F(OnnxExporterTest, EveryMeasuredModelExportsValidOnnx) {
  std::string Why, Fixtures = fixturesDir(Why);
  if (Fixtures.empty())
    GTEST_SKIP() << Why;
  std::error_code EC;
  int Seen = 0;
  for (llvm::sys::fs::directory_iterator It(Fixtures + "/gt/onnx", EC), End; It != End && !EC;
       It.increment(EC)) {
    if (llvm::sys::path::extension(It->path()) != ".onnx")
      continue;
    ++Seen;
    std::string Name = llvm::sys::path::filename(It->path()).str();
    SCOPED_TRACE(Name);
    ImportOptions Options;
    Options.DefaultDim = 8;
    llvm::Expected<Graph> First = importOnnx(It->path(), Options);
    ASSERT_TRUE(static_cast<bool>(First)) << llvm::toString(First.takeError());
    std::string Path = exportTo(*First, Name);
    EXPECT_NO_THROW(onnx::checker::check_model(Path));
    // Strict inference fails wherever a shape or dtype trainmem wrote contradicts ONNX's
    // own reading of the same node (a dropped attribute, a wrong fallback rule).
    onnx::ModelProto Model = loadModel(Path);
    try {
      onnx::shape_inference::InferShapes(Model, onnx::OpSchemaRegistry::Instance(),
                                         onnx::ShapeInferenceOptions(true, 1));
    } catch (const std::exception &E) {
      ADD_FAILURE() << "strict shape inference: " << E.what();
    }
    llvm::Expected<Graph> Second = importOnnx(Path, Options);
    ASSERT_TRUE(static_cast<bool>(Second)) << llvm::toString(Second.takeError());
    EXPECT_EQ(Second->Tensors.size(), First->Tensors.size());
    EXPECT_EQ(parameterShapes(*Second), parameterShapes(*First));
  }
  EXPECT_GT(Seen, 0);
}

} // namespace
