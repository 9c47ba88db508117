# CMake toolchain file: 64-bit RISC-V Linux (riscv64 lp64d, glibc).
#
# Default: Debian/Ubuntu cross compiler and qemu-user
#   apt-get install gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user
#   cmake -S . -B build-riscv64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/riscv64-linux-gnu.cmake \
#         -DTVMRPC_STATIC=ON
#   cmake --build build-riscv64 --target tvmrpc
#
# Another toolchain (vendor, Linaro, Yocto SDK, ...): set these cache
# variables on the first configure (delete the build dir to change them):
#   TVMRPC_CROSS_PREFIX    compiler prefix, a path or a name on PATH; the
#                          compiler is ${TVMRPC_CROSS_PREFIX}gcc
#                          (default: riscv64-linux-gnu-)
#   TVMRPC_CROSS_SYSROOT   target root holding lib/ and usr/include; becomes
#                          CMAKE_SYSROOT (default: none, the compiler's own)
#   TVMRPC_CROSS_EMULATOR  command that runs target binaries, used by ctest
#                          and for try_run (default: qemu-riscv64 -L <root>)
# e.g. for a riscv-gnu-toolchain (Linux/glibc) build installed in /opt/riscv:
#   -DTVMRPC_CROSS_PREFIX=/opt/riscv/bin/riscv64-unknown-linux-gnu-
#   -DTVMRPC_CROSS_SYSROOT=/opt/riscv/sysroot
#
# Without a sysroot, libraries are searched in /usr/riscv64-linux-gnu (Debian
# cross libc) and in Debian multiarch dirs (/usr/lib/riscv64-linux-gnu; Debian
# 12 itself has no riscv64 packages, so only tvmrpc is built this way), never in
# the host's x86 dirs.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR riscv64)
set(_triple riscv64-linux-gnu)
set(_qemu qemu-riscv64)

# try_compile() projects re-read this file without the cache: pass these on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES
  TVMRPC_CROSS_PREFIX TVMRPC_CROSS_SYSROOT TVMRPC_CROSS_EMULATOR)

set(TVMRPC_CROSS_PREFIX "${_triple}-" CACHE STRING "Cross compiler prefix (path or name), compiler is <prefix>gcc")
set(TVMRPC_CROSS_SYSROOT "" CACHE PATH "Target sysroot (empty: the compiler's built-in one)")

set(CMAKE_C_COMPILER "${TVMRPC_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${TVMRPC_CROSS_PREFIX}g++")

if(TVMRPC_CROSS_SYSROOT)
  set(CMAKE_SYSROOT "${TVMRPC_CROSS_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH "${TVMRPC_CROSS_SYSROOT}")
  set(_guest_root "${TVMRPC_CROSS_SYSROOT}")
  set(_emulator "${_qemu};-L;${_guest_root}")
else()
  # Debian: cross libc under /usr/<triple>, multiarch packages under
  # /usr/lib/<triple> and /usr/include ("/" root + CMAKE_LIBRARY_ARCHITECTURE).
  set(CMAKE_FIND_ROOT_PATH "/usr/${_triple};/")
  set(CMAKE_LIBRARY_ARCHITECTURE ${_triple})
  set(_guest_root "/usr/${_triple}")
  # Guest library path: the cross libc first (it must match the loader that
  # -L supplies), then multiarch libraries such as libcmocka.so.0.
  set(_emulator "${_qemu};-L;${_guest_root};-E;LD_LIBRARY_PATH=${_guest_root}/lib:/usr/lib/${_triple}")
endif()
set(TVMRPC_CROSS_EMULATOR "${_emulator}" CACHE STRING "Runs target binaries on the build host (ctest, try_run)")
set(CMAKE_CROSSCOMPILING_EMULATOR "${TVMRPC_CROSS_EMULATOR}")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
