//===- ExecTensor.h - the executor's tensors, views and host loops ---*- C++ -*-===//
//
// Private to cupti_probe/: a tensor as the executor holds it (a reference-counted buffer
// plus shape, strides and offset, like a PyTorch tensor over its storage), PyTorch's rule
// for when a reshape can be a view, and the strided host loops behind the ops the kernel
// interface has no kernel for (broadcast elementwise ops, reductions, concatenation).
// Those loops read and write device buffers through Staging, which is the buffer itself
// on the host and a copy on a CUDA device; device memory is only ever allocated through
// the tracking allocator.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_CUPTI_PROBE_EXECTENSOR_H
#define TRAINMEM_CUPTI_PROBE_EXECTENSOR_H

#include "cupti_probe/TrackingAllocator.h"

#include <functional>
#include <map>
#include <optional>
#include <vector>

namespace trainmem::probe {

/// Element types the executor computes with: fp32 values, int64 ids, bool masks, and the
/// float64 "wrapped numbers" PyTorch makes of Python scalars that backward keeps.
enum class ElemType : uint8_t { F32, I64, Bool, F64 };
size_t elemBytes(ElemType T);

using Shape = std::vector<int64_t>;

int64_t numel(const Shape &S);
Shape contiguousStrides(const Shape &S);

struct XTensor {
  BufferRef Buf;
  ElemType Type = ElemType::F32;
  Shape Dims, Strides;
  int64_t Offset = 0; ///< elements from the start of Buf

  bool defined() const { return Buf != nullptr; }
  int64_t numel() const { return probe::numel(Dims); }
  int64_t bytes() const { return numel() * static_cast<int64_t>(elemBytes(Type)); }
  bool isContiguous() const;
  /// The same storage seen with another shape and strides.
  XTensor view(Shape NewDims, Shape NewStrides, int64_t NewOffset) const;
};

/// PyTorch's computeStride (aten/src/ATen/TensorUtils.cpp): strides that let NewDims view
/// T's storage, or nothing when reshape must copy.
std::optional<Shape> viewStrides(const XTensor &T, const Shape &NewDims);

/// Dense strides for a new tensor made like T (empty_like, a pointwise op's output): T's
/// dimension order, largest stride outermost, without T's gaps (PyTorch's
/// infer_dense_strides); contiguous when T broadcasts a dim.
Shape denseStridesLike(const XTensor &T);

/// Right-aligned broadcast of T's strides onto Out (stride 0 where T has size 1 or lacks
/// the dim).
Shape broadcastStrides(const XTensor &T, const Shape &Out);

/// Host-side access to device buffers for the loops below: the buffer itself on the host,
/// a copy on a CUDA device (written copies go back on flush()).
class Staging {
public:
  explicit Staging(kernels::Device &D) : Dev(D) {}
  ~Staging() { flush(); }
  const void *read(const Buffer &B);
  void *write(const Buffer &B);
  void flush();

private:
  kernels::Device &Dev;
  std::map<int64_t, std::pair<const Buffer *, std::vector<uint8_t>>> Copies;
  std::vector<int64_t> Dirty;
};

/// Reads element I (multi-index through Strides, already offset) as double.
double loadAsDouble(const void *Base, ElemType T, int64_t Index);
void storeFromDouble(void *Base, ElemType T, int64_t Index, double V);

/// Calls F(Offsets) for every element of Out in row-major order, where Offsets[k] is the
/// element offset into operand k (its base offset plus the multi-index times Strides[k]).
void forEachElement(const Shape &Out, const std::vector<Shape> &Strides,
                    const std::vector<int64_t> &Bases,
                    const std::function<void(const std::vector<int64_t> &)> &F);

/// The element offset of each row (every index but the last) of T, in row-major order.
std::vector<int64_t> rowOffsets(const XTensor &T);

} // namespace trainmem::probe

#endif
