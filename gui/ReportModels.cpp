//===- ReportModels.cpp - item models over a MemoryReport ----------------===//
#include "gui/ReportModels.h"

#include "analyzer/Units.h"

namespace trainmem::gui {

namespace {

QString bytesText(int64_t B) { return QString::fromStdString(formatBytes(B)); }
QString text(const std::string &S) { return QString::fromStdString(S); }

} // namespace

void ReportTableModel::setReport(std::shared_ptr<const MemoryReport> R) {
  beginResetModel();
  Report = std::move(R);
  endResetModel();
}

int ReportTableModel::rowCount(const QModelIndex &Parent) const {
  return Parent.isValid() || !Report ? 0 : rows();
}

int ReportTableModel::columnCount(const QModelIndex &Parent) const {
  return Parent.isValid() ? 0 : static_cast<int>(headers().size());
}

QVariant ReportTableModel::headerData(int Section, Qt::Orientation O, int Role) const {
  if (O != Qt::Horizontal || Role != Qt::DisplayRole || Section < 0 ||
      Section >= headers().size())
    return {};
  return headers()[Section];
}

QVariant ReportTableModel::data(const QModelIndex &Index, int Role) const {
  if (!Index.isValid() || !Report || Index.row() >= rows() ||
      Index.column() >= columnCount())
    return {};
  if (Role == Qt::DisplayRole || Role == Qt::ToolTipRole)
    return cell(Index.row(), Index.column(), false);
  if (Role == Qt::UserRole)
    return cell(Index.row(), Index.column(), true);
  if (Role == Qt::TextAlignmentRole) {
    QVariant Raw = cell(Index.row(), Index.column(), true);
    return Raw.typeId() == QMetaType::LongLong || Raw.typeId() == QMetaType::Double
               ? QVariant(int(Qt::AlignRight | Qt::AlignVCenter))
               : QVariant(int(Qt::AlignLeft | Qt::AlignVCenter));
  }
  return {};
}

std::vector<std::pair<QString, int64_t>> CategoryModel::categories() const {
  std::vector<std::pair<QString, int64_t>> Out;
  if (!Report || !Report->PeakInfo)
    return Out;
  for (const CategoryField &F : CategoryFields)
    Out.push_back({F.Name, Report->PeakInfo->ByCategory.*F.Member});
  if (Report->Measured)
    for (const CategoryField &F : TraceCategoryFields)
      Out.push_back({F.Name, Report->PeakInfo->ByCategory.*F.Member});
  return Out;
}

QStringList CategoryModel::headers() const { return {"category", "bytes", "share of peak"}; }
int CategoryModel::rows() const { return static_cast<int>(categories().size()); }

QVariant CategoryModel::cell(int Row, int Column, bool Raw) const {
  auto [Name, Bytes] = categories()[static_cast<size_t>(Row)];
  int64_t Peak = Report->Peak.value_or(0);
  double Share = Peak > 0 ? 100.0 * static_cast<double>(Bytes) / static_cast<double>(Peak) : 0;
  switch (Column) {
  case 0: return Name;
  case 1: return Raw ? QVariant(qlonglong(Bytes)) : QVariant(bytesText(Bytes));
  default: return Raw ? QVariant(Share) : QVariant(QString::number(Share, 'f', 1) + " %");
  }
}

QStringList TopTensorModel::headers() const {
  return {"tensor", "bytes", "category", "producer op", "layer"};
}
int TopTensorModel::rows() const {
  return Report->PeakInfo ? static_cast<int>(Report->PeakInfo->TopTensors.size()) : 0;
}

QVariant TopTensorModel::cell(int Row, int Column, bool Raw) const {
  const TensorSummary &T = Report->PeakInfo->TopTensors[static_cast<size_t>(Row)];
  switch (Column) {
  case 0: return text(T.Name);
  case 1: return Raw ? QVariant(qlonglong(T.Bytes)) : QVariant(bytesText(T.Bytes));
  case 2: return text(T.Category);
  case 3: return text(T.Op);
  default: return text(T.Layer);
  }
}

QStringList LayerModel::headers() const {
  return {"layer", "parameters", "weights", "gradients", "optimizer states", "saved"};
}
int LayerModel::rows() const { return static_cast<int>(Report->Layers.size()); }

QVariant LayerModel::cell(int Row, int Column, bool Raw) const {
  const LayerSummary &L = Report->Layers[static_cast<size_t>(Row)];
  int64_t V = Column == 1   ? L.Parameters
              : Column == 2 ? L.WeightBytes
              : Column == 3 ? L.GradientBytes
              : Column == 4 ? L.OptimizerStateBytes
                            : L.SavedBytes;
  if (Column == 0)
    return text(L.Path);
  if (Raw)
    return qlonglong(V);
  return Column == 1 ? QString::fromStdString(formatCount(V)) : bytesText(V);
}

QStringList DiagnosticModel::headers() const { return {"severity", "code", "where", "message"}; }
int DiagnosticModel::rows() const { return static_cast<int>(Report->Diags.size()); }

QVariant DiagnosticModel::cell(int Row, int Column, bool Raw) const {
  const Diagnostic &D = Report->Diags.all()[static_cast<size_t>(Row)];
  switch (Column) {
  case 0: return QString(severityName(D.Level));
  case 1: return text(D.Code);
  case 2: return text(D.Where);
  default: return text(D.Message);
  }
}

} // namespace trainmem::gui
