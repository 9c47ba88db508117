# Shared part of the Linux cross toolchain files: expects CMAKE_SYSTEM_NAME,
# CMAKE_SYSTEM_PROCESSOR, _triple (GNU triple) and _qemu (qemu-user binary)
# set by the including file; see aarch64-linux-gnu.cmake for the options.

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
