//===- Diagnostics.h - problems found while importing or analysing ----*- C++ -*-===//
//
// Importers and passes record what they could not model exactly (an unknown op, a
// branch chosen for an If node, a tie assumed) as diagnostics with a severity, instead of
// printing to stderr. Reports carry them; the CLI prints them.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_ANALYZER_DIAGNOSTICS_H
#define TRAINMEM_ANALYZER_DIAGNOSTICS_H

#include <string>
#include <vector>

namespace trainmem {

enum class Severity { Note, Warning, Error };

const char *severityName(Severity S);

struct Diagnostic {
  Severity Level = Severity::Note;
  /// Short stable identifier, e.g. "unknown-op", "if-branch", "tie-assumed".
  std::string Code;
  /// The node, tensor or field the diagnostic is about ("" when global).
  std::string Where;
  std::string Message;
};

/// An append-only list that also counts repeated codes, so a model with 500 unknown
/// nodes of one type reports one line with a count rather than 500 lines.
class Diagnostics {
public:
  void add(Severity Level, std::string Code, std::string Where, std::string Message);
  void note(std::string Code, std::string Where, std::string Message) {
    add(Severity::Note, std::move(Code), std::move(Where), std::move(Message));
  }
  void warning(std::string Code, std::string Where, std::string Message) {
    add(Severity::Warning, std::move(Code), std::move(Where), std::move(Message));
  }
  void error(std::string Code, std::string Where, std::string Message) {
    add(Severity::Error, std::move(Code), std::move(Where), std::move(Message));
  }
  void append(const Diagnostics &Other);
  const std::vector<Diagnostic> &all() const { return Items; }
  bool hasErrors() const;
  size_t size() const { return Items.size(); }

private:
  std::vector<Diagnostic> Items;
};

} // namespace trainmem

#endif
