//===- Diagnostics.cpp - problems found while importing or analysing ----------===//
#include "analyzer/Diagnostics.h"

namespace trainmem {

const char *severityName(Severity S) {
  switch (S) {
  case Severity::Note: return "note";
  case Severity::Warning: return "warning";
  case Severity::Error: return "error";
  }
  return "note";
}

void Diagnostics::add(Severity Level, std::string Code, std::string Where,
                      std::string Message) {
  Items.push_back({Level, std::move(Code), std::move(Where), std::move(Message)});
}

void Diagnostics::append(const Diagnostics &Other) {
  Items.insert(Items.end(), Other.Items.begin(), Other.Items.end());
}

bool Diagnostics::hasErrors() const {
  for (const Diagnostic &D : Items)
    if (D.Level == Severity::Error)
      return true;
  return false;
}

} // namespace trainmem
