#!/usr/bin/env bash
# check-deps.sh BINARY: the device binary may need nothing beyond the C
# library (libc, libm, libdl, libpthread and the dynamic loader). libm is
# linked on purpose: compiled kernels call expf & co. through the server's
# global scope (RUNTIME.md §2.11).
set -euo pipefail
bin=${1:-build/tvmrpc}
bad=$(ldd "$bin" | awk '{print $1}' | grep -Ev '^(linux-vdso\.so|linux-gate\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|/lib.*/ld-linux.*\.so|ld-linux.*\.so)' || true)
if [ -n "$bad" ]; then
    echo "check-deps: $bin needs libraries beyond libc/libm/libdl/libpthread:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "check-deps: $bin needs only: $(ldd "$bin" | awk '{print $1}' | tr '\n' ' ')"
