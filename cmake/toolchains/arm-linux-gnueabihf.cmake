# CMake toolchain file: 32-bit ARM Linux, hard-float (armv7 and later, glibc).
#
# Default: Debian/Ubuntu cross compiler and qemu-user
#   apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user
#   cmake -S . -B build-armhf \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake \
#         -DTVMRPC_STATIC=ON
#   cmake --build build-armhf --target tvmrpc
#
# Another toolchain (vendor, Linaro, Yocto SDK, ...): set these cache
# variables on the first configure (delete the build dir to change them):
#   TVMRPC_CROSS_PREFIX    compiler prefix, a path or a name on PATH; the
#                          compiler is ${TVMRPC_CROSS_PREFIX}gcc
#                          (default: arm-linux-gnueabihf-)
#   TVMRPC_CROSS_SYSROOT   target root holding lib/ and usr/include; becomes
#                          CMAKE_SYSROOT (default: none, the compiler's own)
#   TVMRPC_CROSS_EMULATOR  command that runs target binaries, used by ctest
#                          and for try_run (default: qemu-arm -L <root>)
# e.g. for a Linaro toolchain unpacked in /opt:
#   -DTVMRPC_CROSS_PREFIX=/opt/gcc-linaro-7.5.0-2019.12-x86_64_arm-linux-gnueabihf/bin/arm-linux-gnueabihf-
#   -DTVMRPC_CROSS_SYSROOT=/opt/gcc-linaro-7.5.0-2019.12-x86_64_arm-linux-gnueabihf/arm-linux-gnueabihf/libc
#
# Without a sysroot, libraries are searched in /usr/arm-linux-gnueabihf (Debian
# cross libc) and in Debian multiarch dirs (/usr/lib/arm-linux-gnueabihf, e.g.
# libcmocka-dev:armhf for the unit tests), never in the host's x86 dirs.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(_triple arm-linux-gnueabihf)
set(_qemu qemu-arm)

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
