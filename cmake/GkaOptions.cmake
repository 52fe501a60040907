# Options, prefixed GKA_; tests, benchmarks and apps default on only when gka is the top-level project.
include(CheckLanguage)
include(GNUInstallDirs)

set(_gka_top OFF)
if(PROJECT_IS_TOP_LEVEL)
  set(_gka_top ON)
endif()

check_language(CUDA)
set(_gka_cuda_found OFF)
if(CMAKE_CUDA_COMPILER)
  set(_gka_cuda_found ON)
endif()

option(GKA_ENABLE_CUDA "Build the CUDA backend (default: on when nvcc is found)" ${_gka_cuda_found})
option(GKA_BUILD_TESTS "Build the GoogleTest suite" ${_gka_top})
option(GKA_BUILD_BENCH "Build the Google Benchmark programs" ${_gka_top})
option(GKA_BUILD_APPS "Build the command-line programs" ${_gka_top})
option(GKA_BUILD_TORCH "Build the PyTorch/LibTorch binding (gka::torch, the torch.ops.gka library)" OFF)
option(GKA_NATIVE_ARCH "Compile the CPU kernels for this machine's instruction set (-march=native)" ON)
set(GKA_CUDA_ARCHS "90a" CACHE STRING "CUDA architectures of the CUDA backend")

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

find_program(GKA_CCACHE ccache)
if(GKA_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${GKA_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${GKA_CCACHE})
endif()
