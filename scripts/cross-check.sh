#!/usr/bin/env bash
# cross-check.sh: cross-compile tvmrpc and prove the result under qemu-user.
#
#   scripts/cross-check.sh [--all] [-j N] [-- EXTRA_CMAKE_ARGS...]
#
# aarch64 (always), in build-aarch64/ with -DTVMRPC_STATIC=ON:
#   builds tvmrpc and the unit tests, runs `tvmrpc --version` under
#   qemu-aarch64, checks `file` says "ARM aarch64" and statically linked, and
#   runs `ctest -L unit` (the toolchain file's CMAKE_CROSSCOMPILING_EMULATOR
#   makes ctest run each test under qemu). tvmrpc is static; the unit tests
#   link Debian's arm64 libcmocka.so (multiarch libcmocka-dev:arm64).
# --all: also armhf (build-armhf/) and riscv64 (build-riscv64/): static tvmrpc
#   only, `--version` under qemu-arm / qemu-riscv64, `file` check.
#
# Packages come from scripts/deps-cross.txt plus libcmocka-dev:arm64. As root,
# missing ones are installed with apt-get (adding the arm64 architecture if
# needed); otherwise the exact commands are printed and the script stops.
# Rerunnable: build dirs are reused, and recreated if they were configured
# for another toolchain or source tree. Exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
all=false
jobs=$(nproc 2>/dev/null || echo 2)
extra=()

usage() { sed -n '2,20s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --all) all=true ;;
    -j) jobs=${2:?-j needs a number}; shift ;;
    -j*) jobs=${1#-j} ;;
    --jobs=*) jobs=${1#--jobs=} ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "cross-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

step_name=""
step() { step_name="$*"; echo "==> $*"; }
reported=false
die() { echo "cross-check: FAILED: $*" >&2; reported=true; exit 1; }
on_exit() {
    local rc=$?
    [ "$rc" -eq 0 ] || $reported || echo "cross-check: FAILED during: ${step_name:-setup} (exit $rc)" >&2
}
trap on_exit EXIT

# ---- packages -------------------------------------------------------------

installed() {
    case "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" in
    *"install ok installed"*) return 0 ;;
    *) return 1 ;;
    esac
}

step "checking Debian packages"
if command -v dpkg-query >/dev/null; then
    missing=()
    while read -r p; do
        p=${p%%#*}; p=${p//[[:space:]]/}
        [ -n "$p" ] || continue
        if ! $all && [[ $p =~ armhf|riscv64 ]]; then continue; fi
        installed "$p" || missing+=("$p")
    done <"$root/scripts/deps-cross.txt"
    need_arch=false
    native=$(dpkg --print-architecture)
    if [ "$native" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        need_arch=true
    fi
    installed libcmocka-dev:arm64 || missing+=(libcmocka-dev:arm64)

    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "missing Debian packages: ${missing[*]}; install them with:" >&2
            $need_arch && echo "  sudo dpkg --add-architecture arm64" >&2
            echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
            reported=true
            exit 1
        fi
        if $need_arch; then
            echo "    dpkg --add-architecture arm64"
            dpkg --add-architecture arm64
        fi
        echo "    apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
else
    echo "    no dpkg: not a Debian system, checking commands only"
fi

tools=(cmake file aarch64-linux-gnu-gcc qemu-aarch64)
$all && tools+=(arm-linux-gnueabihf-gcc qemu-arm riscv64-linux-gnu-gcc qemu-riscv64)
for t in "${tools[@]}"; do
    command -v "$t" >/dev/null || die "'$t' not found (see scripts/deps-cross.txt)"
done

# ---- helpers --------------------------------------------------------------

# configure DIR TOOLCHAIN CMAKE_ARGS...: (re)configure DIR, output to DIR/cross-check.log
configure() {
    local dir=$1 toolchain=$2
    shift 2
    local cache=$dir/CMakeCache.txt
    if [ -f "$cache" ] && ! { grep -q "^CMAKE_TOOLCHAIN_FILE:[A-Z]*=$toolchain\$" "$cache" &&
        grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$root\$" "$cache"; }; then
        echo "    $dir was configured for another toolchain or tree: recreating it"
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    if ! cmake -S "$root" -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$toolchain" "$@" "${extra[@]}" \
        >"$dir/cross-check.log" 2>&1; then
        tail -n 40 "$dir/cross-check.log" >&2
        die "cmake configure of $dir (full log: $dir/cross-check.log)"
    fi
}

# build DIR [TARGET]: build, output appended to DIR/cross-check.log
build() {
    local dir=$1
    shift
    local targets=()
    [ $# -gt 0 ] && targets=(--target "$@")
    if ! cmake --build "$dir" -j "$jobs" "${targets[@]}" >>"$dir/cross-check.log" 2>&1; then
        grep -E 'error|Error' "$dir/cross-check.log" | tail -n 30 >&2
        if grep -q 'attempted static link of dynamic object' "$dir/cross-check.log"; then
            echo "hint: the unit tests are linked -static but there is only a shared libcmocka;" >&2
            echo "      tests/CMakeLists.txt must link them -static only if CMOCKA_LIBRARY is a .a" >&2
        fi
        die "build of $dir (full log: $dir/cross-check.log)"
    fi
}

# check_binary BIN QEMU TRIPLE FILE_ARCH: --version under qemu, then `file`
check_binary() {
    local bin=$1 qemu=$2 triple=$3 arch=$4 out desc
    step "$(basename "$(dirname "$bin")")/tvmrpc --version under $qemu"
    out=$("$qemu" -L "/usr/$triple" "$bin" --version 2>&1) || die "$qemu $bin --version: $out"
    [[ $out =~ ^tvmrpc\ [0-9]+\.[0-9]+ ]] || die "unexpected --version output: $out"
    echo "    $out"
    step "file $(basename "$(dirname "$bin")")/tvmrpc"
    desc=$(file -b "$bin")
    echo "    $desc"
    [[ $desc == *"$arch"* ]] || die "$bin is not $arch"
    [[ $desc == *"statically linked"* || $desc == *"static-pie linked"* ]] ||
        die "$bin is not statically linked"
    echo "    size: $(stat -c %s "$bin") bytes"
}

# ---- aarch64: static tvmrpc + unit tests under qemu -----------------------

dir=$root/build-aarch64
step "configure $dir (aarch64, TVMRPC_STATIC=ON)"
configure "$dir" "$root/cmake/toolchains/aarch64-linux-gnu.cmake" -DTVMRPC_STATIC=ON -DTVMRPC_TESTS=ON
step "build tvmrpc and unit tests (aarch64, -j $jobs)"
build "$dir"
check_binary "$dir/tvmrpc" qemu-aarch64 aarch64-linux-gnu "ARM aarch64"
step "ctest -L unit under qemu-aarch64"
(cd "$dir" && ctest -L unit --output-on-failure --no-tests=error -j "$jobs") ||
    die "unit tests under qemu-aarch64"

# ---- --all: armhf and riscv64, build-only smoke ---------------------------

if $all; then
    for spec in "armhf arm-linux-gnueabihf qemu-arm ARM,_EABI5" \
        "riscv64 riscv64-linux-gnu qemu-riscv64 RISC-V"; do
        read -r name triple qemu arch <<<"$spec"
        arch=${arch//_/ }
        dir=$root/build-$name
        step "configure $dir ($name, TVMRPC_STATIC=ON, no tests)"
        configure "$dir" "$root/cmake/toolchains/$triple.cmake" -DTVMRPC_STATIC=ON -DTVMRPC_TESTS=OFF
        step "build tvmrpc ($name, -j $jobs)"
        build "$dir" tvmrpc
        check_binary "$dir/tvmrpc" "$qemu" "$triple" "$arch"
    done
fi

step_name="done"
echo "cross-check: OK ($(
    $all && echo "aarch64 + unit tests, armhf, riscv64" || echo "aarch64 + unit tests"
)) in ${SECONDS}s"
