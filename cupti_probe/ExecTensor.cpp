//===- ExecTensor.cpp - the executor's tensors, views and host loops -----------===//
#include "cupti_probe/ExecTensor.h"

#include <algorithm>

#include <cstring>

namespace trainmem::probe {

size_t elemBytes(ElemType T) {
  switch (T) {
  case ElemType::F32: return 4;
  case ElemType::I64: return 8;
  case ElemType::Bool: return 1;
  case ElemType::F64: return 8;
  }
  return 4;
}

int64_t numel(const Shape &S) {
  int64_t N = 1;
  for (int64_t D : S)
    N *= D;
  return N;
}

Shape contiguousStrides(const Shape &S) {
  Shape Strides(S.size(), 1);
  for (size_t I = S.size(); I-- > 1;)
    Strides[I - 1] = Strides[I] * std::max<int64_t>(S[I], 1);
  return Strides;
}

bool XTensor::isContiguous() const {
  int64_t Expected = 1;
  for (size_t I = Dims.size(); I-- > 0;) {
    if (Dims[I] != 1 && Strides[I] != Expected)
      return false;
    Expected *= Dims[I];
  }
  return true;
}

XTensor XTensor::view(Shape NewDims, Shape NewStrides, int64_t NewOffset) const {
  XTensor V;
  V.Buf = Buf;
  V.Type = Type;
  V.Dims = std::move(NewDims);
  V.Strides = std::move(NewStrides);
  V.Offset = NewOffset;
  return V;
}

std::optional<Shape> viewStrides(const XTensor &T, const Shape &NewDims) {
  // Walk the old dims from the innermost, in chunks of dims that are contiguous with each
  // other; every chunk must be covered exactly by a run of new dims.
  if (T.Dims.empty() || T.numel() == 0)
    return contiguousStrides(NewDims);
  Shape New(NewDims.size(), 0);
  int64_t ViewD = static_cast<int64_t>(NewDims.size()) - 1;
  int64_t ChunkBase = T.Strides.back(), TensorNumel = 1, ViewNumel = 1;
  for (int64_t D = static_cast<int64_t>(T.Dims.size()) - 1; D >= 0; --D) {
    TensorNumel *= T.Dims[D];
    bool ChunkEnds = D == 0 || (T.Dims[D - 1] != 1 && T.Strides[D - 1] != TensorNumel * ChunkBase);
    if (!ChunkEnds)
      continue;
    while (ViewD >= 0 && (ViewNumel < TensorNumel || NewDims[ViewD] == 1)) {
      New[ViewD] = ViewNumel * ChunkBase;
      ViewNumel *= NewDims[ViewD];
      --ViewD;
    }
    if (ViewNumel != TensorNumel)
      return std::nullopt;
    if (D > 0) {
      ChunkBase = T.Strides[D - 1];
      TensorNumel = 1;
      ViewNumel = 1;
    }
  }
  if (ViewD != -1)
    return std::nullopt;
  return New;
}

Shape denseStridesLike(const XTensor &T) {
  Shape Out = contiguousStrides(T.Dims);
  if (T.Strides.size() != T.Dims.size())
    return Out;
  for (size_t D = 0; D < T.Dims.size(); ++D)
    if (T.Dims[D] != 1 && T.Strides[D] == 0)
      return Out;
  std::vector<size_t> Order(T.Dims.size());
  for (size_t I = 0; I < Order.size(); ++I)
    Order[I] = I;
  std::stable_sort(Order.begin(), Order.end(),
                   [&](size_t A, size_t B) { return T.Strides[A] > T.Strides[B]; });
  int64_t Next = 1;
  for (size_t I = Order.size(); I-- > 0;) {
    Out[Order[I]] = Next;
    Next *= std::max<int64_t>(T.Dims[Order[I]], 1);
  }
  return Out;
}

Shape broadcastStrides(const XTensor &T, const Shape &Out) {
  Shape S(Out.size(), 0);
  size_t Lead = Out.size() - std::min(Out.size(), T.Dims.size());
  for (size_t D = Lead; D < Out.size(); ++D) {
    size_t Src = D - Lead;
    S[D] = T.Dims[Src] == 1 && Out[D] != 1 ? 0 : T.Strides[Src];
  }
  return S;
}

const void *Staging::read(const Buffer &B) {
  if (!Dev.isCuda() || !B.data())
    return B.data();
  auto It = Copies.find(B.id());
  if (It == Copies.end()) {
    std::vector<uint8_t> Host(B.bytes());
    Dev.copyToHost(Host.data(), B.data(), B.bytes());
    It = Copies.emplace(B.id(), std::make_pair(&B, std::move(Host))).first;
  }
  return It->second.second.data();
}

void *Staging::write(const Buffer &B) {
  if (!Dev.isCuda() || !B.data())
    return B.data();
  void *P = const_cast<void *>(read(B));
  Dirty.push_back(B.id());
  return P;
}

void Staging::flush() {
  for (int64_t Id : Dirty) {
    auto It = Copies.find(Id);
    if (It != Copies.end())
      Dev.copyFromHost(It->second.first->data(), It->second.second.data(),
                       It->second.second.size());
  }
  Dirty.clear();
  Copies.clear();
}

double loadAsDouble(const void *Base, ElemType T, int64_t Index) {
  switch (T) {
  case ElemType::F32: return static_cast<const float *>(Base)[Index];
  case ElemType::I64: return static_cast<double>(static_cast<const int64_t *>(Base)[Index]);
  case ElemType::Bool: return static_cast<const uint8_t *>(Base)[Index] ? 1.0 : 0.0;
  case ElemType::F64: return static_cast<const double *>(Base)[Index];
  }
  return 0.0;
}

void storeFromDouble(void *Base, ElemType T, int64_t Index, double V) {
  switch (T) {
  case ElemType::F32: static_cast<float *>(Base)[Index] = static_cast<float>(V); return;
  case ElemType::I64: static_cast<int64_t *>(Base)[Index] = static_cast<int64_t>(V); return;
  case ElemType::Bool: static_cast<uint8_t *>(Base)[Index] = V != 0.0; return;
  case ElemType::F64: static_cast<double *>(Base)[Index] = V; return;
  }
}

void forEachElement(const Shape &Out, const std::vector<Shape> &Strides,
                    const std::vector<int64_t> &Bases,
                    const std::function<void(const std::vector<int64_t> &)> &F) {
  int64_t N = numel(Out);
  if (N == 0)
    return;
  size_t K = Strides.size(), Rank = Out.size();
  std::vector<int64_t> Index(Rank, 0), Offsets(Bases);
  for (int64_t E = 0; E < N; ++E) {
    F(Offsets);
    // Odometer increment, innermost dim first.
    for (size_t D = Rank; D-- > 0;) {
      if (++Index[D] < Out[D]) {
        for (size_t Op = 0; Op < K; ++Op)
          Offsets[Op] += Strides[Op][D];
        break;
      }
      for (size_t Op = 0; Op < K; ++Op)
        Offsets[Op] -= Strides[Op][D] * (Out[D] - 1);
      Index[D] = 0;
    }
  }
}

std::vector<int64_t> rowOffsets(const XTensor &T) {
  std::vector<int64_t> Rows;
  Shape Outer(T.Dims.begin(), T.Dims.end() - 1);
  Shape Strides(T.Strides.begin(), T.Strides.end() - 1);
  forEachElement(Outer, {Strides}, {T.Offset},
                 [&](const std::vector<int64_t> &O) { Rows.push_back(O[0]); });
  return Rows;
}

} // namespace trainmem::probe
