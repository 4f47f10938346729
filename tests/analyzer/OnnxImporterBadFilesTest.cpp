//===- OnnxImporterBadFilesTest.cpp - hostile and broken ONNX files -----------===//
//
// Files that are no ONNX model, external data leading out of the model's folder, nesting
// and shapes past the limits, and the inputs the fuzzer found: each an error naming the
// file, never a crash.
//
//===----------------------------------------------------------------------------===//
#include "tests/analyzer/OnnxImporterSupport.h"

#include "analyzer/StepSimulator.h"

namespace {

using OnnxImporterLimits = OnnxImporterTest;

TEST_F(OnnxImporterLimits, ShapesBeyond62BitsAreAnErrorNotAWrappedNumber) {
  std::string Path = save(staticLinear(), "linear.onnx");
  ImportOptions Options;
  Options.Inputs = {{"x", {int64_t(1) << 40, int64_t(1) << 40}}};
  std::string Msg = importError(Path, Options);
  EXPECT_TRUE(contains(Msg, Path)) << Msg;
  EXPECT_TRUE(contains(Msg, "1099511627776x1099511627776")) << Msg;
  EXPECT_TRUE(contains(Msg, "2^62 bytes")) << Msg;
  // The largest shape that fits is still read.
  Options.Inputs = {{"x", {int64_t(1) << 20, 128}}};
  Graph G = importOk(Path, Options);
  EXPECT_EQ(shapeOf(G, "x"), Shape({int64_t(1) << 20, 128}));
}


// --- files that are no ONNX model -----------------------------------------------------

TEST_F(OnnxImporterBadFiles, EveryBadFileIsAnErrorNamingThePath) {
  std::string Valid = symbolicModel().bytes();
  std::vector<std::pair<const char *, std::string>> Cases = {
      {"missing", path("missing.onnx")},
      {"directory", std::string(Dir)},
      {"empty", writeBytes("empty.onnx", "")},
      {"text", writeBytes("notes.onnx", "not an onnx model\njust some text\n")},
      {"textproto", writeBytes("model.onnx", "ir_version: 8\ngraph { name: \"g\" }\n")},
      {"truncated", writeBytes("half.onnx", llvm::StringRef(Valid).take_front(Valid.size() / 2))},
  };
  for (const auto &[What, Path] : Cases) {
    SCOPED_TRACE(What);
    std::string Msg = importError(Path);
    EXPECT_TRUE(contains(Msg, Path));
    llvm::Expected<Graph> ViaDetection = importModel(Path, {});
    ASSERT_FALSE(ViaDetection) << "importModel accepted it";
    EXPECT_TRUE(contains(llvm::toString(ViaDetection.takeError()), Path));
  }
}

TEST_F(OnnxImporterBadFiles, ExternalDataOutsideTheModelFolderIsNeverOpened) {
  // A secret beside the model's folder, reachable by '..', by an absolute path and by a
  // symbolic link inside the folder.
  llvm::SmallString<256> Outside(Dir);
  llvm::sys::path::append(Outside, "secret.bin");
  writeBytes("secret.bin", std::string(32 * 8 * 4, '\x01'));
  llvm::SmallString<256> Sub(Dir);
  llvm::sys::path::append(Sub, "model");
  ASSERT_FALSE(llvm::sys::fs::create_directory(Sub));
  llvm::SmallString<256> Link(Sub);
  llvm::sys::path::append(Link, "link.bin");
  ASSERT_FALSE(llvm::sys::fs::create_link(Outside, Link));
  std::string Varied(32 * 8 * 4, '\0');
  for (size_t I = 0; I < Varied.size(); ++I)
    Varied[I] = static_cast<char>(I * 7 + 1);
  writeBytes("model/inside.bin", Varied);

  OnnxModelWriter W;
  W.input("ids", {2, 4}, OnnxInt64);
  auto External = [&](const std::string &Name, const std::string &Location) {
    onnx::TensorProto &T = W.initializer(Name, {32, 8});
    T.clear_float_data();
    T.clear_raw_data();
    T.set_data_location(onnx::TensorProto::EXTERNAL);
    onnx::StringStringEntryProto *E = T.add_external_data();
    E->set_key("location");
    E->set_value(Location);
  };
  External("up.weight", "../secret.bin");
  External("abs.weight", std::string(Outside));
  External("link.weight", "link.bin");
  External("ok.weight", "inside.bin");
  for (const char *Name : {"up.weight", "abs.weight", "link.weight", "ok.weight"})
    W.node("Gather", {Name, "ids"}, {std::string(Name) + ".out"}, std::string("/") + Name);
  for (const char *Name : {"up.weight", "abs.weight", "link.weight", "ok.weight"})
    W.output(std::string(Name) + ".out");
  std::string Path = W.save(Sub, "model.onnx");
  ASSERT_FALSE(Path.empty());
  Graph G = importOk(Path);
  std::vector<std::string> Refused;
  for (const Diagnostic &D : G.Diags.all())
    if (D.Code == "external-data-outside")
      Refused.push_back(D.Where);
  EXPECT_EQ(Refused, (std::vector<std::string>{"up.weight: ../secret.bin",
                                               "abs.weight: " + std::string(Outside),
                                               "link.weight: link.bin"}));
  // Refused payloads cannot be read (so never compared); the one inside can.
  const Tensor *Up = nullptr, *Ok = nullptr;
  for (const Tensor &T : G.Tensors) {
    if (T.Name == "up.weight")
      Up = &T;
    if (T.Name == "ok.weight")
      Ok = &T;
  }
  ASSERT_TRUE(Up && Ok);
  auto Same = payloadsEqual(*Up, *Up, false);
  EXPECT_FALSE(bool(Same));
  if (!Same)
    llvm::consumeError(Same.takeError());
  auto Inside = payloadsEqual(*Ok, *Ok, false);
  ASSERT_TRUE(bool(Inside)) << llvm::toString(Inside.takeError());
  EXPECT_TRUE(*Inside);
}

TEST_F(OnnxImporterBadFiles, SubgraphsNestedPastTheLimitAreAnError) {
  // If nodes nested 80 deep: an error naming the file, never a stack overflow.
  auto Nested = [](int Depth) {
    onnx::ModelProto M;
    M.set_ir_version(8);
    M.add_opset_import()->set_version(17);
    onnx::GraphProto *G = M.mutable_graph();
    G->set_name("outer");
    for (int I = 0; I < Depth; ++I) {
      onnx::NodeProto *If = G->add_node();
      If->set_op_type("If");
      If->add_input("cond");
      If->add_output("y" + std::to_string(I));
      onnx::AttributeProto *A = If->add_attribute();
      A->set_name("then_branch");
      A->set_type(onnx::AttributeProto::GRAPH);
      G = A->mutable_g();
      G->set_name("branch" + std::to_string(I));
    }
    // A large innermost node makes every enclosing node large too, so each level goes
    // through the streaming reader (small nodes are parsed by protobuf, whose own
    // recursion limit of 100 messages then applies).
    G->add_node()->set_doc_string(std::string(1 << 20, 'x'));
    std::string Bytes;
    M.SerializeToString(&Bytes);
    return Bytes;
  };
  std::string Deep = writeBytes("deep.onnx", Nested(80));
  std::string Msg = importError(Deep);
  EXPECT_TRUE(contains(Msg, Deep)) << Msg;
  EXPECT_TRUE(contains(Msg, "nested more than 64 levels")) << Msg;
}

TEST_F(OnnxImporterBadFiles, StridesDilationsKernelsAndGroupsMustBePositive) {
  // ONNX 1.12's convolution inference divided by a zero stride (SIGFPE inside libonnx;
  // found by FuzzStep). Each such attribute is an error naming the node and the values.
  struct Case {
    const char *Attribute;
    std::vector<int64_t> Values;
  } Cases[] = {{"strides", {0, 1}}, {"dilations", {1, -2}}, {"kernel_shape", {0, 3}}, {"group", {0}}};
  for (const Case &C : Cases) {
    OnnxModelWriter W;
    W.input("x", {1, 2, 8, 8});
    W.initializer("conv.weight", {4, 2, 3, 3}, randomFloats(72, 1));
    auto Node = W.node("Conv", {"x", "conv.weight"}, {"y"}, "/conv/Conv");
    if (std::string(C.Attribute) == "group")
      Node.i("group", C.Values[0]);
    else
      Node.ints(C.Attribute, C.Values);
    W.output("y");
    std::string Path = writeBytes("conv.onnx", W.bytes());
    std::string Msg = importError(Path);
    EXPECT_TRUE(contains(Msg, Path)) << Msg;
    EXPECT_TRUE(contains(Msg, "node '/conv/Conv' (Conv): attribute '" + std::string(C.Attribute) +
                                  "'"))
        << Msg;
    EXPECT_TRUE(contains(Msg, "every value must be at least 1")) << Msg;
  }
}

TEST_F(OnnxImporterBadFiles, ANodeWithTheWrongNumberOfOperandsIsAnError) {
  // The memory rules read a Mul's or a Conv's operands by position; a node short of them
  // read past its input list under selective checkpointing (found by FuzzStep).
  OnnxModelWriter W;
  W.input("x", {2, 4});
  W.node("Mul", {"x"}, {"y"}, "/scale/Mul");
  W.output("y");
  std::string Path = writeBytes("short.onnx", W.bytes());
  std::string Msg = importError(Path);
  EXPECT_TRUE(contains(Msg, Path)) << Msg;
  EXPECT_TRUE(contains(Msg, "node '/scale/Mul' (Mul) has 1 input and 1 output; Mul")) << Msg;
  EXPECT_TRUE(contains(Msg, "takes 2 inputs and 1 output")) << Msg;
  OnnxModelWriter V;
  V.input("x", {2, 4});
  V.node("Concat", {"x", "x"}, {"y", "z"}, "/cat/Concat").i("axis", 0);
  V.output("y");
  Msg = importError(writeBytes("extra.onnx", V.bytes()));
  EXPECT_TRUE(contains(Msg, "takes at least 1 input and 1 output")) << Msg;
}

TEST_F(OnnxImporterBadFiles, ATransposeWithABadPermIsNotReadPastItsInput) {
  // perm [0, 2, 42] (found by FuzzStep): ONNX's inference rejects it; the simulator's view
  // layout and the value propagation read the input's dims at those positions, past
  // the end (wild strides, a signed overflow under UBSan). The step is simulated with the
  // output unknown and a warning naming the node.
  OnnxModelWriter W;
  W.input("x", {2, 4, 8});
  W.initializer("fc.weight", {8, 8}, randomFloats(64, 1));
  W.node("MatMul", {"x", "fc.weight"}, {"h"}, "/fc/MatMul");
  W.node("Transpose", {"h"}, {"t"}, "/t/Transpose").ints("perm", {0, 2, 42});
  W.node("Relu", {"t"}, {"y"}, "/act/Relu");
  W.output("y");
  Graph G = importOk(writeBytes("perm.onnx", W.bytes()));
  EXPECT_FALSE(G.Tensors[G.Outputs[0]].ShapeKnown);
  bool Warned = false;
  for (const Diagnostic &D : G.Diags.all())
    Warned |= contains(D.Message, "Transpose");
  EXPECT_TRUE(Warned);
  TrainingSetup S;
  S.Device = DeviceKind::Cpu;
  auto Census = takeCensus(G, S);
  ASSERT_TRUE(static_cast<bool>(Census)) << llvm::toString(Census.takeError());
  auto Sim = simulateStep(G, S, *Census);
  ASSERT_TRUE(static_cast<bool>(Sim)) << llvm::toString(Sim.takeError());
  EXPECT_GT(Sim->Peak, 0);
}

TEST_F(OnnxImporterBadFiles, AnUnnamedGraphOutputIsAnError) {
  // Found by FuzzStep: the output's tensor id was "none" and indexed the tensor list.
  OnnxModelWriter W;
  W.input("x", {2, 4});
  W.node("Relu", {"x"}, {"y"}, "/act/Relu");
  W.output("y");
  W.output("");
  std::string Path = writeBytes("unnamed.onnx", W.bytes());
  std::string Msg = importError(Path);
  EXPECT_TRUE(contains(Msg, Path)) << Msg;
  EXPECT_TRUE(contains(Msg, "graph output 1 has no name")) << Msg;
}

TEST(OnnxFuzzRegressions, FoundInputsAreErrorsNotCrashes) {
  // Inputs the fuzzer found (tests/fuzz/README.md); under the sanitizers they were
  // overflows, here they must import or fail with a message naming the file.
  std::string Dir = std::string(TRAINMEM_SOURCE_DIR) + "/tests/data/fuzz-regressions";
  std::error_code EC;
  int Seen = 0;
  for (llvm::sys::fs::directory_iterator It(Dir, EC), End; It != End && !EC; It.increment(EC)) {
    if (!llvm::StringRef(It->path()).ends_with(".onnx"))
      continue;
    ImportOptions Options;
    Options.DefaultDim = 2;
    auto G = importOnnx(It->path(), Options);
    if (!G) {
      std::string Message = llvm::toString(G.takeError());
      EXPECT_NE(Message.find(It->path()), std::string::npos) << Message;
    }
    ++Seen;
  }
  EXPECT_GT(Seen, 0);
}

TEST_F(OnnxImporterBadFiles, NoPrefixOfAValidFileCrashes) {
  OnnxModelWriter W;
  W.input("x", {2, 4});
  W.initializer("fc.weight", {4, 8}, randomFloats(32, 1));
  W.node("MatMul", {"x", "fc.weight"}, {"y"}, "/fc/MatMul");
  W.output("y");
  std::string Valid = W.bytes();
  EXPECT_EQ(shapeOf(importOk(writeBytes("whole.onnx", Valid)), "y"), Shape({2, 8}));
  int Errors = 0;
  for (size_t Len = 1; Len < Valid.size(); ++Len) {
    std::string Path = writeBytes("prefix.onnx", llvm::StringRef(Valid).take_front(Len));
    llvm::Expected<Graph> G = importOnnx(Path, {});
    if (G)
      continue; // a prefix that ends on a field boundary after the graph is a model
    ++Errors;
    EXPECT_TRUE(contains(llvm::toString(G.takeError()), Path)) << "prefix of " << Len;
  }
  EXPECT_GT(Errors, static_cast<int>(Valid.size()) * 9 / 10);
}

} // namespace
