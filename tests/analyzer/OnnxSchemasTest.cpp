//===- OnnxSchemasTest.cpp - schemas built on demand answer as ONNX's registry ---===//
//
// The table in OnnxSchemaTable.inc is written from ONNX 1.12's registry; these tests hold
// it to the registry of the ONNX linked in, entry by entry, and every lookup to the
// registry's own answer.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/OnnxSchemas.h"

#include <gtest/gtest.h>
#include <onnx/defs/schema.h>

#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace trainmem;

namespace {

std::vector<std::pair<std::string, int>> tableLines() {
  return {
#define TRAINMEM_ONNX_SCHEMA(Op, Since) {#Op, Since},
#include "analyzer/OnnxSchemaTable.inc"
#undef TRAINMEM_ONNX_SCHEMA
  };
}

int registryLastOpset() {
  const auto &Ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  return Ranges.at(onnx::ONNX_DOMAIN).second;
}

} // namespace

TEST(OnnxSchemas, TableMatchesTheRegistry) {
  const int TableLast = 17; // the table's opset, as OnnxSchemas.cpp says
  std::vector<std::pair<std::string, int>> Lines = tableLines();
  ASSERT_TRUE(std::is_sorted(Lines.begin(), Lines.end()))
      << "OnnxSchemaTable.inc must be sorted by operator (byte order), then version";
  std::set<std::pair<std::string, int>> Table(Lines.begin(), Lines.end());
  EXPECT_EQ(Table.size(), Lines.size()) << "a line is listed twice";
  std::set<std::pair<std::string, int>> Registry;
  for (const onnx::OpSchema &S : onnx::OpSchemaRegistry::get_all_schemas_with_history())
    if (S.domain() == onnx::ONNX_DOMAIN && S.SinceVersion() <= TableLast)
      Registry.insert({S.Name(), S.SinceVersion()});
  std::string Missing, Extra;
  for (const auto &[Op, Since] : Registry)
    if (!Table.count({Op, Since}))
      Missing += "TRAINMEM_ONNX_SCHEMA(" + Op + ", " + std::to_string(Since) + ")\n";
  for (const auto &[Op, Since] : Table)
    if (!Registry.count({Op, Since}))
      Extra += "TRAINMEM_ONNX_SCHEMA(" + Op + ", " + std::to_string(Since) + ")\n";
  EXPECT_EQ(Missing, "") << "lines to add to OnnxSchemaTable.inc";
  EXPECT_EQ(Extra, "") << "lines the registry does not have";
  EXPECT_GE(Registry.size(), 400u) << "ONNX 1.12 defines 419 default-domain schemas";
}

TEST(OnnxSchemas, AnswerAsTheRegistryDoes) {
  std::set<std::string> Ops{"NoSuchOperator", ""};
  for (const onnx::OpSchema &S : onnx::OpSchemaRegistry::get_all_schemas_with_history())
    if (S.domain() == onnx::ONNX_DOMAIN)
      Ops.insert(S.Name());
  const int Last = registryLastOpset() + 2;
  int Compared = 0, Built = 0;
  for (const std::string &Op : Ops)
    for (int Version = 0; Version <= Last; ++Version) {
      SCOPED_TRACE(Op + " at opset " + std::to_string(Version));
      const onnx::OpSchema *Want = onnx::OpSchemaRegistry::Schema(Op, Version, "");
      const onnx::OpSchema *Got = onnxSchema(Op, Version, "");
      ++Compared;
      ASSERT_EQ(Got == nullptr, Want == nullptr);
      EXPECT_EQ(onnxSchema(Op, Version, "ai.onnx"), Got) << "the domain's other name";
      if (!Want)
        continue;
      ++Built;
      EXPECT_EQ(onnxSchema(Op, Version, ""), Got) << "built once, then kept";
      EXPECT_EQ(Got->Name(), Want->Name());
      EXPECT_EQ(Got->domain(), Want->domain());
      EXPECT_EQ(Got->SinceVersion(), Want->SinceVersion());
      EXPECT_EQ(Got->Deprecated(), Want->Deprecated());
      EXPECT_EQ(Got->min_input(), Want->min_input());
      EXPECT_EQ(Got->max_input(), Want->max_input());
      EXPECT_EQ(Got->min_output(), Want->min_output());
      EXPECT_EQ(Got->max_output(), Want->max_output());
      EXPECT_EQ(Got->has_type_and_shape_inference_function(),
                Want->has_type_and_shape_inference_function());
      EXPECT_EQ(Got->typeConstraintParams().size(), Want->typeConstraintParams().size());
    }
  EXPECT_GT(Built, 2000) << "of " << Compared << " lookups";
}

TEST(OnnxSchemas, OtherDomainsComeFromTheRegistry) {
  EXPECT_FALSE(onnxSchemaInTable("LinearClassifier", 1, "ai.onnx.ml"));
  EXPECT_EQ(onnxSchema("LinearClassifier", 1, "ai.onnx.ml"),
            onnx::OpSchemaRegistry::Schema("LinearClassifier", 1, "ai.onnx.ml"));
  EXPECT_NE(onnxSchema("LinearClassifier", 1, "ai.onnx.ml"), nullptr);
  EXPECT_EQ(onnxSchema("MatMul", 13, "com.example"), nullptr);
  EXPECT_TRUE(onnxSchemaInTable("MatMul", 13, ""));
  EXPECT_FALSE(onnxSchemaInTable("NoSuchOperator", 13, ""));
}

TEST(OnnxSchemas, BuiltOnceAcrossThreads) {
  // Reshape-14 and Softmax-13 are asked for by every thread at once: each is built once.
  std::vector<const onnx::OpSchema *> Seen(8 * 2);
  std::vector<std::thread> Threads;
  for (int T = 0; T < 8; ++T)
    Threads.emplace_back([&Seen, T] {
      Seen[2 * T] = onnxSchema("Reshape", 16, "");
      Seen[2 * T + 1] = onnxSchema("Softmax", 16, "");
    });
  for (std::thread &T : Threads)
    T.join();
  for (int T = 0; T < 8; ++T) {
    EXPECT_EQ(Seen[2 * T], Seen[0]);
    EXPECT_EQ(Seen[2 * T + 1], Seen[1]);
  }
  ASSERT_NE(Seen[0], nullptr);
  EXPECT_EQ(Seen[0]->SinceVersion(), 14);
  EXPECT_EQ(Seen[1]->SinceVersion(), 13);
}
