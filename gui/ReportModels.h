//===- ReportModels.h - item models over a MemoryReport ----------------*- C++ -*-===//
//
// Each model only adapts values the library computed to a view: no figure is derived
// here beyond a share of the peak. Raw numbers are returned for Qt::UserRole so proxies
// sort by bytes, not by their formatted text.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_GUI_REPORTMODELS_H
#define TRAINMEM_GUI_REPORTMODELS_H

#include "analyzer/MemoryReport.h"

#include <QAbstractTableModel>

#include <memory>
#include <vector>

namespace trainmem::gui {

/// Rows shared by the models: set by setReport, cleared by clear.
class ReportTableModel : public QAbstractTableModel {
  Q_OBJECT
public:
  using QAbstractTableModel::QAbstractTableModel;
  void setReport(std::shared_ptr<const MemoryReport> R);
  int rowCount(const QModelIndex &Parent = QModelIndex()) const override;
  int columnCount(const QModelIndex &Parent = QModelIndex()) const override;
  QVariant headerData(int Section, Qt::Orientation O, int Role) const override;
  QVariant data(const QModelIndex &Index, int Role) const override;

protected:
  virtual QStringList headers() const = 0;
  virtual int rows() const = 0;
  /// The cell's text (DisplayRole) and raw value (UserRole).
  virtual QVariant cell(int Row, int Column, bool Raw) const = 0;
  std::shared_ptr<const MemoryReport> Report;
};

/// Live bytes at the peak by category: category, bytes, share of the peak.
class CategoryModel : public ReportTableModel {
  Q_OBJECT
public:
  using ReportTableModel::ReportTableModel;

protected:
  QStringList headers() const override;
  int rows() const override;
  QVariant cell(int Row, int Column, bool Raw) const override;

private:
  std::vector<std::pair<QString, int64_t>> categories() const;
};

/// The largest tensors live at the peak: tensor, bytes, category, producer op, layer.
class TopTensorModel : public ReportTableModel {
  Q_OBJECT
public:
  using ReportTableModel::ReportTableModel;

protected:
  QStringList headers() const override;
  int rows() const override;
  QVariant cell(int Row, int Column, bool Raw) const override;
};

/// Per layer path: parameters, weights, gradients, optimizer states, saved activations.
class LayerModel : public ReportTableModel {
  Q_OBJECT
public:
  using ReportTableModel::ReportTableModel;

protected:
  QStringList headers() const override;
  int rows() const override;
  QVariant cell(int Row, int Column, bool Raw) const override;
};

/// Every diagnostic: severity, code, where, message.
class DiagnosticModel : public ReportTableModel {
  Q_OBJECT
public:
  using ReportTableModel::ReportTableModel;

protected:
  QStringList headers() const override;
  int rows() const override;
  QVariant cell(int Row, int Column, bool Raw) const override;
};

} // namespace trainmem::gui

#endif
