#!/usr/bin/env bash
# Long soak of the whole RPC system: tests/integration/test_soak.c, which
# `ctest` runs for 5 s, run here for minutes. Many clients cycle request ->
# upload -> load -> call -> release against a tracker, a proxy (tracker mode)
# and four servers (two direct, two behind the proxy); every result is
# checked, and afterwards every daemon's open fds and --work-dir must be back
# where they started and its RSS within a small bound. See docs/security.md.
#
#   scripts/soak.sh                   10 minutes, 8 clients, plain build in build-soak/
#   scripts/soak.sh 3600              one hour
#   SOAK_CLIENTS=16 scripts/soak.sh   more clients
#   SOAK_SANITIZE=1 scripts/soak.sh   ASan+UBSan build in build-soak-asan/
#   SOAK_FAULTS=3 scripts/soak.sh     then run the fault-injection test 3 times
#   SOAK_BUILD_DIR=DIR                use (and build) DIR instead
#
# Exit status: 0 passed, 1 the soak or a fault run failed, 2 build failure.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_WANTED=${1:-${SOAK_SECONDS:-600}}
CLIENTS=${SOAK_CLIENTS:-8}
FAULT_ROUNDS=${SOAK_FAULTS:-0}
if [ "${SOAK_SANITIZE:-0}" = 1 ]; then
    BUILD=${SOAK_BUILD_DIR:-$ROOT/build-soak-asan}
    CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Debug -DTVMRPC_SANITIZE=ON)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
else
    BUILD=${SOAK_BUILD_DIR:-$ROOT/build-soak}
    CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi

case $SECONDS_WANTED in
'' | *[!0-9]*)
    echo "soak.sh: SECONDS must be a whole number, got '$SECONDS_WANTED'" >&2
    exit 2
    ;;
esac

echo "== building $BUILD"
mkdir -p "$BUILD"
if ! cmake -S "$ROOT" -B "$BUILD" "${CMAKE_ARGS[@]}" -DTVMRPC_BENCH=OFF >"$BUILD/configure.log" 2>&1; then
    cat "$BUILD/configure.log"
    exit 2
fi
if ! cmake --build "$BUILD" -j"$(nproc)" >"$BUILD/build.log" 2>&1; then
    tail -40 "$BUILD/build.log"
    echo "soak.sh: build failed (full log: $BUILD/build.log)"
    exit 2
fi

export TVMRPC_BIN=$BUILD/tvmrpc
export TVMRPC_FIXTURES=$BUILD/tests/fixtures
# Process logs (one per daemon) go to a directory of their own.
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/tvmrpc-soak-logs.XXXXXX")
export TMPDIR=$LOGS

echo "== soak: $CLIENTS clients for $SECONDS_WANTED s (daemon logs in $LOGS)"
# A hung run must not hang the caller: the test's own waits are bounded,
# this is the last resort.
if ! TVMRPC_SOAK_SECONDS=$SECONDS_WANTED TVMRPC_SOAK_CLIENTS=$CLIENTS \
    timeout --kill-after=30 $((SECONDS_WANTED + 300)) "$BUILD/tests/test_soak"; then
    echo "soak.sh: soak FAILED (daemon logs kept in $LOGS)"
    exit 1
fi

for ((i = 1; i <= FAULT_ROUNDS; i++)); do
    echo "== fault injection, round $i of $FAULT_ROUNDS"
    if ! timeout --kill-after=30 600 "$BUILD/tests/test_faults"; then
        echo "soak.sh: fault injection FAILED in round $i (daemon logs kept in $LOGS)"
        exit 1
    fi
done

rm -rf "$LOGS"
echo "soak.sh: passed"
