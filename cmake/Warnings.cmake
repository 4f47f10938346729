# trainmem_warnings: the warning set every project target uses (clean under g++ 12 and clang 14).
add_library(trainmem_warnings INTERFACE)
target_compile_options(trainmem_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wnon-virtual-dtor -Wno-unused-parameter>
  # Shadowed locals: g++ spells it -Wshadow=local, clang has no such form.
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wshadow=local>
  # g++ 12 -O2 false positives from llvm/Support/FormatProviders.h (BUILD-NOTES.md).
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)
option(TRAINMEM_WERROR "Treat warnings as errors" OFF)
if(TRAINMEM_WERROR)
  target_compile_options(trainmem_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
