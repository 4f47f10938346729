//===- PlanHistoryModels.h - the planner's plans and the run history -*- C++ -*-===//
//
// Two more adapters of library results to views: the ranked plans of planner/PlanSearch
// for the target GPU, and the runs of a history database (store/RunStore).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_GUI_PLANHISTORYMODELS_H
#define TRAINMEM_GUI_PLANHISTORYMODELS_H

#include "planner/PlanSearch.h"
#include "store/RunStore.h"

#include <QAbstractTableModel>

#include <vector>

namespace trainmem::gui {

class PlanModel : public QAbstractTableModel {
  Q_OBJECT
public:
  using QAbstractTableModel::QAbstractTableModel;
  void setPlans(std::vector<Plan> P);
  const Plan *plan(int Row) const;
  int rowCount(const QModelIndex &Parent = QModelIndex()) const override;
  int columnCount(const QModelIndex &Parent = QModelIndex()) const override;
  QVariant headerData(int Section, Qt::Orientation O, int Role) const override;
  QVariant data(const QModelIndex &Index, int Role) const override;

private:
  std::vector<Plan> Plans;
};

class HistoryModel : public QAbstractTableModel {
  Q_OBJECT
public:
  using QAbstractTableModel::QAbstractTableModel;
  void setRuns(std::vector<RunRecord> R);
  int rowCount(const QModelIndex &Parent = QModelIndex()) const override;
  int columnCount(const QModelIndex &Parent = QModelIndex()) const override;
  QVariant headerData(int Section, Qt::Orientation O, int Role) const override;
  QVariant data(const QModelIndex &Index, int Role) const override;

private:
  std::vector<RunRecord> Runs;
};

} // namespace trainmem::gui

#endif
