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

# The rest is the same for every glibc Linux target.
include(${CMAKE_CURRENT_LIST_DIR}/linux-gnu-cross.cmake)
