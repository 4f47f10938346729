//===- PlanHistoryModels.cpp - the planner's plans and the run history -----===//
#include "gui/PlanHistoryModels.h"

#include "analyzer/Units.h"

#include "llvm/ADT/StringExtras.h"

namespace trainmem::gui {

namespace {

const QStringList PlanHeaders = {"rank", "plan",     "batch",    "needs",
                                 "fits", "time",     "fidelity", "engines"};
const QStringList HistoryHeaders = {"time", "command", "model", "commit", "branch",
                                    "peak", "peak reserved"};

QVariant header(const QStringList &Headers, int Section, Qt::Orientation O, int Role) {
  if (O != Qt::Horizontal || Role != Qt::DisplayRole || Section < 0 || Section >= Headers.size())
    return {};
  return Headers[Section];
}

QString bytesText(int64_t B) { return QString::fromStdString(formatBytes(B)); }

} // namespace

void PlanModel::setPlans(std::vector<Plan> P) {
  beginResetModel();
  Plans = std::move(P);
  endResetModel();
}

const Plan *PlanModel::plan(int Row) const {
  return Row >= 0 && size_t(Row) < Plans.size() ? &Plans[size_t(Row)] : nullptr;
}

int PlanModel::rowCount(const QModelIndex &Parent) const {
  return Parent.isValid() ? 0 : int(Plans.size());
}
int PlanModel::columnCount(const QModelIndex &Parent) const {
  return Parent.isValid() ? 0 : int(PlanHeaders.size());
}
QVariant PlanModel::headerData(int Section, Qt::Orientation O, int Role) const {
  return header(PlanHeaders, Section, O, Role);
}

QVariant PlanModel::data(const QModelIndex &Index, int Role) const {
  const Plan *P = Index.isValid() ? plan(Index.row()) : nullptr;
  if (!P || Index.column() >= columnCount())
    return {};
  bool Raw = Role == Qt::UserRole;
  if (Role == Qt::ToolTipRole)
    return QString::fromStdString(P->Why);
  if (Role != Qt::DisplayRole && !Raw)
    return {};
  switch (Index.column()) {
  case 0: return Index.row() + 1;
  case 1: return QString::fromStdString(P->Name);
  case 2:
    return Raw ? QVariant(qlonglong(P->MicroBatch * P->GradAccum))
               : QVariant(QString("%1x%2").arg(P->MicroBatch).arg(P->GradAccum));
  case 3: return Raw ? QVariant(qlonglong(P->Required)) : QVariant(bytesText(P->Required));
  case 4: return Raw ? QVariant(P->Fits) : QVariant(P->Fits ? "yes" : "no");
  case 5: return Raw ? QVariant(P->Overhead) : QVariant(QString::number(P->Overhead, 'f', 2) + "x");
  case 6: return QString(fidelityName(P->Fid));
  default:
    return P->Engines.empty() ? QString("none")
                              : QString::fromStdString(llvm::join(P->Engines, ","));
  }
}

void HistoryModel::setRuns(std::vector<RunRecord> R) {
  beginResetModel();
  Runs = std::move(R);
  endResetModel();
}

int HistoryModel::rowCount(const QModelIndex &Parent) const {
  return Parent.isValid() ? 0 : int(Runs.size());
}
int HistoryModel::columnCount(const QModelIndex &Parent) const {
  return Parent.isValid() ? 0 : int(HistoryHeaders.size());
}
QVariant HistoryModel::headerData(int Section, Qt::Orientation O, int Role) const {
  return header(HistoryHeaders, Section, O, Role);
}

QVariant HistoryModel::data(const QModelIndex &Index, int Role) const {
  if (!Index.isValid() || size_t(Index.row()) >= Runs.size() || Index.column() >= columnCount())
    return {};
  bool Raw = Role == Qt::UserRole;
  if (Role != Qt::DisplayRole && !Raw)
    return {};
  const RunRecord &R = Runs[size_t(Index.row())];
  switch (Index.column()) {
  case 0: return QString::fromStdString(R.Time);
  case 1: return QString::fromStdString(R.Command);
  case 2: return QString::fromStdString(R.Model);
  case 3: return QString::fromStdString(R.Commit.substr(0, 12));
  case 4: return QString::fromStdString(R.Branch);
  case 5: return Raw ? QVariant(qlonglong(R.Peak)) : QVariant(bytesText(R.Peak));
  default:
    if (!R.PeakReserved)
      return Raw ? QVariant() : QVariant(QString("n/a"));
    return Raw ? QVariant(qlonglong(*R.PeakReserved)) : QVariant(bytesText(*R.PeakReserved));
  }
}

} // namespace trainmem::gui
