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

# The rest is the same for every glibc Linux target.
include(${CMAKE_CURRENT_LIST_DIR}/linux-gnu-cross.cmake)
