# Finds every dependency once; folders link the imported targets by name.
find_package(LLVM 16 CONFIG QUIET)
if(NOT LLVM_FOUND)
  find_package(LLVM CONFIG REQUIRED)  # 14 and 15 work too (BUILD-NOTES.md)
endif()
# LLVM's exported flags would force -fno-exceptions -std=c++17; take only includes and defs.
add_library(trainmem_llvm INTERFACE)
target_include_directories(trainmem_llvm SYSTEM INTERFACE ${LLVM_INCLUDE_DIRS})
separate_arguments(_llvm_defs NATIVE_COMMAND ${LLVM_DEFINITIONS})
target_compile_definitions(trainmem_llvm INTERFACE ${_llvm_defs})
llvm_map_components_to_libnames(_llvm_libs support)
target_link_libraries(trainmem_llvm INTERFACE ${_llvm_libs})

# ONNX's CMake config does not look for protobuf itself (BUILD-NOTES.md).
find_package(Protobuf REQUIRED)
find_package(ONNX CONFIG REQUIRED)
add_library(trainmem_onnx INTERFACE)
target_link_libraries(trainmem_onnx INTERFACE onnx onnx_proto protobuf::libprotobuf)
target_compile_definitions(trainmem_onnx INTERFACE ONNX_ML=1 ONNX_NAMESPACE=onnx)

# SQLite: the run history (store/). libsqlite3-dev.
find_package(SQLite3 REQUIRED)

# zlib: streamed gunzip of profiler traces (analyzer/TraceStream.cpp). zlib1g-dev, which
# LLVM's own packages already pull in.
find_package(ZLIB REQUIRED)

# ISA-L's igzip (libisal-dev): inflates gzipped traces 2-3x as fast as zlib. Optional: a
# build without it inflates with zlib alone, with the same results.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(ISAL QUIET IMPORTED_TARGET libisal)
endif()
if(ISAL_FOUND)
  option(TRAINMEM_WITH_ISAL "Inflate gzipped traces with ISA-L's igzip (libisal-dev)" ON)
else()
  option(TRAINMEM_WITH_ISAL "Inflate gzipped traces with ISA-L's igzip (libisal-dev)" OFF)
endif()
if(TRAINMEM_WITH_ISAL AND NOT ISAL_FOUND)
  message(WARNING "TRAINMEM_WITH_ISAL is on but libisal was not found: zlib inflates alone")
  set(TRAINMEM_WITH_ISAL OFF CACHE BOOL "" FORCE)
endif()

find_package(GTest)

find_package(benchmark QUIET)
set(TRAINMEM_HAVE_BENCHMARK ${benchmark_FOUND})

find_package(Qt6 QUIET COMPONENTS Widgets Charts Concurrent Test)
if(Qt6_FOUND)
  option(TRAINMEM_BUILD_GUI "Build trainmem-gui (Qt 6)" ON)
else()
  option(TRAINMEM_BUILD_GUI "Build trainmem-gui (Qt 6)" OFF)
endif()

include(CheckLanguage)
check_language(CUDA)
find_package(CUDAToolkit QUIET)
if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND TARGET CUDA::cupti)
  option(TRAINMEM_WITH_CUDA "Build the CUDA kernels and the CUPTI probe" ON)
else()
  option(TRAINMEM_WITH_CUDA "Build the CUDA kernels and the CUPTI probe" OFF)
endif()
# The CUDA runtime is linked statically, as nvcc does by default and PyTorch does (its
# profiler's CUPTI works with it): linked as libcudart.so, every trainmem command, an HF
# config's analysis too, refused to start where that file is missing (a CUDA toolkit
# removed or upgraded after the build: "error while loading shared libraries"), and each
# start paid 0.2-0.3 ms to load it. The static runtime opens the driver (libcuda.so.1) at
# its first call and answers "no device" where there is none.
if(TARGET CUDA::cudart_static)
  set(TRAINMEM_CUDART CUDA::cudart_static)
else()
  set(TRAINMEM_CUDART CUDA::cudart)
endif()
