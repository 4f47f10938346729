//===- Pickle.h - a data-only Python unpickler ------------------------*- C++ -*-===//
//
// CUDA caching-allocator snapshots (torch.cuda.memory._dump_snapshot) are Python
// pickles of plain dicts, lists, strings and numbers. This reader understands exactly
// that part of the pickle format (protocols 0-5) and refuses every opcode that would
// import a module or call an object, so reading a snapshot never runs code: a hostile
// file gets an error naming the opcode and its byte offset, never an effect.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_PICKLE_H
#define TRAINMEM_ANALYZER_PICKLE_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace trainmem::pickle {

class Value;
/// Children are shared: the pickle memo may place one list in several containers.
using ValuePtr = std::shared_ptr<Value>;

/// One unpickled Python value. Sets and frozensets arrive as lists; str and the
/// protocol-0/1 byte strings (which Python 3 decodes as ASCII) as UTF-8 Strings.
class Value {
public:
  enum class Kind : uint8_t { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict };
  using Entry = std::pair<ValuePtr, ValuePtr>;

  Value() = default;
  Value(const Value &) = default;
  Value(Value &&) = default;
  Value &operator=(const Value &) = default;
  Value &operator=(Value &&) = default;
  /// Tears deep trees down iteratively, so no nesting overflows the stack.
  ~Value();

  static Value none() { return Value(); }
  static Value boolean(bool B);
  static Value integer(int64_t I);
  static Value floating(double F);
  static Value string(std::string S);
  static Value bytes(std::string S);
  static Value list(std::vector<ValuePtr> Items = {});
  static Value tuple(std::vector<ValuePtr> Items = {});
  static Value dict(std::vector<Entry> Entries = {});

  Kind kind() const { return K; }
  /// "None", "bool", "int", "float", "str", "bytes", "list", "tuple", "dict".
  const char *kindName() const { return kindName(K); }
  static const char *kindName(Kind K);

  bool isNone() const { return K == Kind::None; }
  bool isBool() const { return K == Kind::Bool; }
  bool isInt() const { return K == Kind::Int; }
  bool isFloat() const { return K == Kind::Float; }
  /// Int or Float (not Bool).
  bool isNumber() const { return K == Kind::Int || K == Kind::Float; }
  bool isString() const { return K == Kind::String; }
  bool isBytes() const { return K == Kind::Bytes; }
  bool isList() const { return K == Kind::List; }
  bool isTuple() const { return K == Kind::Tuple; }
  /// List or Tuple.
  bool isSequence() const { return K == Kind::List || K == Kind::Tuple; }
  bool isDict() const { return K == Kind::Dict; }

  // The accessors assert the kind; check it first.
  bool asBool() const;
  int64_t asInt() const;
  /// Float, or Int converted.
  double asDouble() const;
  /// The text of a String or the contents of Bytes.
  llvm::StringRef asString() const;
  /// The elements of a List or Tuple.
  const std::vector<ValuePtr> &items() const;
  /// The key/value pairs of a Dict in pickle order.
  const std::vector<Entry> &entries() const;
  /// Elements of a List/Tuple or entries of a Dict; 0 otherwise.
  size_t size() const;

  /// The value stored under a string key of a Dict, or null (also for non-dicts). A key
  /// set twice answers with the later value, as Python's dict would.
  const Value *get(llvm::StringRef Key) const;

  /// Containers nested inside this one, counting this one (0 for scalars).
  uint32_t depth() const { return Depth; }

private:
  friend class Unpickler;
  template <typename T> static Value scalar(Kind K, T Payload) {
    Value V;
    V.K = K;
    V.Payload = std::move(Payload);
    return V;
  }

  Kind K = Kind::None;
  /// Set once the value sits inside a container; such a container may no longer grow,
  /// which rules out cycles and keeps Depth exact.
  bool Nested = false;
  uint32_t Depth = 0;
  // Bool and Int share int64_t; String and Bytes std::string; List and Tuple the
  // vector. One variant keeps a value at 48 bytes: snapshots hold millions of them.
  std::variant<int64_t, double, std::string, std::vector<ValuePtr>, std::vector<Entry>> Payload;
};

/// Limits that keep a hostile pickle from exhausting memory or the stack.
struct UnpickleLimits {
  /// Values on the unpickler's stack, and MARKs, at any one time.
  size_t MaxStackItems = 1000000;
  /// Containers nested in each other.
  uint32_t MaxDepth = 10000;
};

/// Reads one pickle from Data (bytes after its STOP opcode are ignored, as Python does).
/// Name prefixes every error message, which also gives the byte offset of the opcode
/// that failed: "<name>: offset 123: opcode GLOBAL (c) imports or calls code; trainmem
/// reads data-only pickles".
llvm::Expected<Value> unpickle(llvm::StringRef Data, llvm::StringRef Name,
                               const UnpickleLimits &Limits = {});

} // namespace trainmem::pickle

#endif
