//===- NoCudaDevice.cpp - makeCudaDevice in a build without CUDA ---------===//
//
// Built instead of the .cu files when TRAINMEM_WITH_CUDA is off, so callers ask for a CUDA
// device the same way in every build and get a reason, not a link error.
//
//===----------------------------------------------------------------------------===//

#include "Kernels.h"

namespace trainmem::kernels {

std::unique_ptr<Device> makeCudaDevice(int, std::string &Why) {
  Why = "built without CUDA";
  return nullptr;
}

} // namespace trainmem::kernels
