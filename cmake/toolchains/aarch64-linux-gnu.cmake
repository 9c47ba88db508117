# CMake toolchain file: 64-bit ARM Linux (aarch64, glibc).
#
# Default: Debian/Ubuntu cross compiler and qemu-user
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#   cmake -S . -B build-aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DTVMRPC_STATIC=ON
#   cmake --build build-aarch64 --target tvmrpc
#
# Another toolchain (vendor, Linaro, Yocto SDK, ...): set these cache
# variables on the first configure (delete the build dir to change them):
#   TVMRPC_CROSS_PREFIX    compiler prefix, a path or a name on PATH; the
#                          compiler is ${TVMRPC_CROSS_PREFIX}gcc
#                          (default: aarch64-linux-gnu-)
#   TVMRPC_CROSS_SYSROOT   target root holding lib/ and usr/include; becomes
#                          CMAKE_SYSROOT (default: none, the compiler's own)
#   TVMRPC_CROSS_EMULATOR  command that runs target binaries, used by ctest
#                          and for try_run (default: qemu-aarch64 -L <root>)
# e.g. for Linaro's gcc-linaro-7.5.0-2019.12-x86_64_aarch64-linux-gnu in /opt:
#   -DTVMRPC_CROSS_PREFIX=/opt/gcc-linaro-7.5.0-2019.12-x86_64_aarch64-linux-gnu/bin/aarch64-linux-gnu-
#   -DTVMRPC_CROSS_SYSROOT=/opt/gcc-linaro-7.5.0-2019.12-x86_64_aarch64-linux-gnu/aarch64-linux-gnu/libc
#
# Without a sysroot, libraries are searched in /usr/aarch64-linux-gnu (Debian
# cross libc) and in Debian multiarch dirs (/usr/lib/aarch64-linux-gnu, e.g.
# libcmocka-dev:arm64 for the unit tests), never in the host's x86 dirs.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(_triple aarch64-linux-gnu)
set(_qemu qemu-aarch64)

# The rest is the same for every glibc Linux target.
include(${CMAKE_CURRENT_LIST_DIR}/linux-gnu-cross.cmake)
