#!/usr/bin/env bash
# e2e-board.sh: the seed's whole flow on an emulated aarch64 board.
#
#   scripts/e2e-board.sh [--host-build DIR] [--no-netns] [--keep] [-j N]
#
# Builds an x86 tvmrpc (tracker, proxy, query, run) and libtvmrpc_client.a in
# DIR (default build-e2e/, reused if configured), an aarch64 tvmrpc with
# -DTVMRPC_STATIC=OFF in build-aarch64-dyn/ (the build a board that loads
# modules needs), and checks the static aarch64 build still runs --version.
# Cross-compiles tests/fixtures/vadd.c and tests/board/board_kernels.c with
# aarch64-linux-gnu-gcc. Then runs `tvmrpc server` under qemu-aarch64 as the
# board, in three set-ups, and drives it from the host with
# tests/board/board_client.c (linked against libtvmrpc_client.a) and the
# tvmrpc CLI:
#   A  board registered with a host tracker (server --tracker): query shows
#      it; request by key, upload, load, run, copy back and compare, time;
#      a .o linked on the board (--cc aarch64-linux-gnu-gcc); `tvmrpc run`;
#      the MISMATCH and "Cannot request" errors; SIGTERM during a session.
#   A2 a second kind of board, armhf under qemu-arm, registered with the
#      same tracker under its own key: both in query, `tvmrpc run --time`
#      of an armhf vadd.so, an aarch64 library refused clearly (skipped
#      without the armhf cross compiler).
#   B  board behind a host proxy on loopback (server --through-proxy).
#   C  as B, but the board lives in its own network namespace whose only
#      link is a veth pair to the proxy's address: it cannot reach the
#      tracker. Needs root (ip netns); skipped otherwise or with --no-netns.
# Everything listens on 127.0.0.1 or on the veth pair, on ports the kernel
# picks. Every wait has a deadline. Logs: a temporary directory, removed on
# success and kept (and named) on failure or with --keep.
# Packages: scripts/deps-cross.txt (gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user) plus iproute2 for C.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
host_build=$root/build-e2e
netns=auto
keep=false
jobs=$(nproc 2>/dev/null || echo 2)

usage() { sed -n '2,33s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --host-build) host_build=$(cd "${2:?--host-build needs a directory}" 2>/dev/null && pwd || echo "$2"); shift ;;
    --no-netns) netns=no ;;
    --keep) keep=true ;;
    -j) jobs=${2:?-j needs a number}; shift ;;
    -j*) jobs=${1#-j} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "e2e-board: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

work=$(mktemp -d /tmp/tvmrpc-e2e-board.XXXXXX)
pids=()
ns=""
step_name=setup
t_step=$SECONDS
reported=false

step() {
    [ "$step_name" = setup ] || echo "    ($((SECONDS - t_step)) s)"
    step_name="$*"
    t_step=$SECONDS
    echo "==> $*"
}
die() {
    echo "e2e-board: FAILED: $*" >&2
    reported=true
    exit 1
}

# Stop what we started, by pid, and take the namespace down.
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -z "$ns" ] || ip netns del "$ns" 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        $reported || echo "e2e-board: FAILED during: $step_name (exit $rc)" >&2
        for f in "$work"/*.log; do
            [ -s "$f" ] || continue
            echo "---- $(basename "$f") (last 15 lines)" >&2
            tail -n 15 "$f" >&2
        done
        echo "e2e-board: logs kept in $work" >&2
    elif $keep; then
        echo "e2e-board: logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# until SECONDS DESCRIPTION CMD...: run CMD every 0.1 s until it succeeds.
until_ok() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "timed out after ${secs}s waiting for: $what"
}
log_has() { grep -q -- "$2" "$1"; }
# port_of LOG ADDR: the port a "bind to ADDR:PORT" line names.
port_of() {
    until_ok 30 "'bind to $2:' in $(basename "$1")" log_has "$1" "bind to $2:"
    grep -o "bind to $2:[0-9]*" "$1" | head -n 1 | cut -d: -f2
}
# bg LOG CMD...: start CMD in the background with output to LOG; sets $last.
bg() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    last=$!
    pids+=("$last")
}
# stop PID SECS: SIGTERM, wait (bounded) for the exit; its status goes to $st.
# (Not in a $(...) subshell: only this shell can wait for its children.)
stop() {
    local pid=$1 secs=$2 i
    kill -TERM "$pid"
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "pid $pid still running ${secs}s after SIGTERM"
    st=0
    wait "$pid" || st=$?
    forget "$pid"
}
# forget PID: a reaped pid may be reused; cleanup must not signal it again.
forget() {
    local keep_pids=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
    pids=("${keep_pids[@]}")
}

# ---- tools -------------------------------------------------------------------

for t in cmake cc file aarch64-linux-gnu-gcc aarch64-linux-gnu-readelf qemu-aarch64; do
    command -v "$t" >/dev/null ||
        die "'$t' not found; install the packages in scripts/deps-cross.txt (scripts/deps.sh cross)"
done
guest_root=/usr/aarch64-linux-gnu
[ -e "$guest_root/lib/ld-linux-aarch64.so.1" ] || die "no $guest_root/lib/ld-linux-aarch64.so.1 (libc6-arm64-cross)"

# The board. LD_LIBRARY_PATH makes the guest take libc.so.6 from the same
# cross glibc as the loader -L supplies. Without it, on a machine with arm64
# multiarch (libc6:arm64, which cross-check.sh installs for cmocka), ld.so
# finds /lib/aarch64-linux-gnu/libc.so.6 of another glibc build through the
# host's ld.so.cache, and the server's forked session worker spins forever
# inside fork() (rtld and libc disagree on the layout of their shared data).
board=(qemu-aarch64 -L "$guest_root" -E "LD_LIBRARY_PATH=$guest_root/lib")

# ---- builds ------------------------------------------------------------------

cmake_build() { # cmake_build DIR LOGNAME TARGET...
    local dir=$1 log=$2
    shift 2
    cmake --build "$dir" -j "$jobs" --target "$@" >>"$work/$log" 2>&1 ||
        { tail -n 30 "$work/$log" >&2; die "build in $dir (log $work/$log)"; }
}
# configured_for DIR TOOLCHAIN STATIC: does DIR's cache match?
configured_for() {
    local cache=$1/CMakeCache.txt
    [ -f "$cache" ] && grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$root\$" "$cache" &&
        grep -q "^CMAKE_TOOLCHAIN_FILE:[A-Z]*=$2\$" "$cache" &&
        grep -qi "^TVMRPC_STATIC:BOOL=$3\$" "$cache"
}
cross_configure() { # cross_configure DIR STATIC LOGNAME [TRIPLE]
    local dir=$1 static=$2 log=$3 tc=$root/cmake/toolchains/${4:-aarch64-linux-gnu}.cmake
    configured_for "$dir" "$tc" "$static" && return 0
    rm -rf "$dir"
    cmake -S "$root" -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$tc" -DTVMRPC_STATIC="$static" \
        -DTVMRPC_TESTS=OFF >"$work/$log" 2>&1 ||
        { tail -n 30 "$work/$log" >&2; die "configure $dir"; }
}

step "host build in $host_build (tvmrpc, libtvmrpc_client.a)"
if [ ! -f "$host_build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$host_build" -DTVMRPC_TESTS=OFF -DTVMRPC_BENCH=OFF \
        >"$work/build-host.log" 2>&1 || { tail -n 30 "$work/build-host.log" >&2; die "configure $host_build"; }
fi
cmake_build "$host_build" build-host.log tvmrpc tvmrpc_client
H=$host_build/tvmrpc
[ -f "$host_build/libtvmrpc_client.a" ] || die "$host_build has no libtvmrpc_client.a"

step "aarch64 dynamic build in build-aarch64-dyn (-DTVMRPC_STATIC=OFF)"
dyn_dir=$root/build-aarch64-dyn
cross_configure "$dyn_dir" OFF build-dyn.log
cmake_build "$dyn_dir" build-dyn.log tvmrpc
B=$dyn_dir/tvmrpc
desc=$(file -b "$B")
[[ $desc == *"ARM aarch64"* && $desc == *"dynamically linked"* ]] || die "$B: $desc"
# What the board must provide: glibc's own libraries, nothing else.
needed=$(aarch64-linux-gnu-readelf -d "$B" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')
for lib in $needed; do
    case "$lib" in
    libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | ld-linux-aarch64.so.1) ;;
    *) die "$B needs $lib; a board should need only glibc" ;;
    esac
done
# Compiled kernels resolve the runtime API against the executable.
dynsyms=$(aarch64-linux-gnu-readelf --dyn-syms -W "$B")
grep -q ' TVMBackendAllocWorkspace$' <<<"$dynsyms" || die "$B does not export TVMBackendAllocWorkspace"
glibc_max=$(grep -o 'GLIBC_[0-9.]*' <<<"$dynsyms" | sort -uV | tail -n 1)
echo "    needs: $needed(newest symbol version $glibc_max)"

step "aarch64 static build runs --version"
static_dir=$root/build-aarch64
tc=$root/cmake/toolchains/aarch64-linux-gnu.cmake
# Reuse scripts/cross-check.sh's static build when there is one (make check
# runs it first); otherwise build just the binary in build-aarch64-static.
configured_for "$static_dir" "$tc" ON || static_dir=$root/build-aarch64-static
[ "$static_dir" = "$root/build-aarch64" ] || cross_configure "$static_dir" ON build-static.log
cmake_build "$static_dir" build-static.log tvmrpc
desc=$(file -b "$static_dir/tvmrpc")
[[ $desc == *"ARM aarch64"* && ($desc == *"statically linked"* || $desc == *"static-pie"*) ]] ||
    die "$static_dir/tvmrpc: $desc"
out=$(qemu-aarch64 -L "$guest_root" "$static_dir/tvmrpc" --version 2>&1) || die "static --version: $out"
[[ $out =~ ^tvmrpc\ [0-9]+\.[0-9]+ ]] || die "static --version printed: $out"
echo "    $out ($(basename "$static_dir"))"

step "cross-compile the kernels for the board; build the host client"
libs=$work/libs
mkdir -p "$libs"
kcflags=(-O2 -fPIC -Wall -Wextra -Werror -Wno-unused-parameter -I"$root/include")
# As TVM's export_library would: a shared library, and an object file the
# board links itself. No -lm: the kernels get expf from the server.
aarch64-linux-gnu-gcc "${kcflags[@]}" -shared "$root/tests/fixtures/vadd.c" -o "$libs/vadd.so"
aarch64-linux-gnu-gcc "${kcflags[@]}" -c "$root/tests/fixtures/vadd.c" -o "$libs/vadd.o"
aarch64-linux-gnu-gcc "${kcflags[@]}" -shared "$root/tests/board/board_kernels.c" -o "$libs/board.so"
for f in vadd.so vadd.o board.so; do
    [[ $(file -b "$libs/$f") == *"ARM aarch64"* ]] || die "$f is not aarch64"
done
client=$work/board_client
cc -std=c11 -O2 -Wall -Wextra -Werror -I"$root/include" "$root/tests/board/board_client.c" \
    -L"$host_build" -ltvmrpc_client -lm -o "$client"

# ---- A: board registered with a host tracker --------------------------------

step "A: host tracker, board (qemu-aarch64) registered with it"
bg "$work/tracker.log" "$H" tracker --host 127.0.0.1 --port 0
tracker_pid=$last
tport=$(port_of "$work/tracker.log" 127.0.0.1)
T=127.0.0.1:$tport
mkdir -p "$work/board-a"
bg "$work/board-a.log" "${board[@]}" "$B" server --host 127.0.0.1 --port 0 --tracker "$T" \
    --key e2e-a64 --cc aarch64-linux-gnu-gcc --work-dir "$work/board-a"
board_a=$last
sport=$(port_of "$work/board-a.log" 127.0.0.1)
queue_row() { # queue_row KEY: "total free pending" of KEY in the query table
    "$H" query --port "$tport" --timeout 5 | awk -v k="$1" '$1 == k { print $2, $3, $4 }'
}
board_free() { [ "$(queue_row e2e-a64)" = "1 1 0" ]; }
until_ok 30 "the board in tvmrpc query" board_free
"$H" query --port "$tport" >"$work/query-a.txt"
grep -q "^127.0.0.1:$sport  *server:e2e-a64 *\$" "$work/query-a.txt" ||
    { cat "$work/query-a.txt"; die "query does not list the board as 127.0.0.1:$sport server:e2e-a64"; }
sed 's/^/    /' "$work/query-a.txt"

step "A: request the board by key; upload, load, run, compare, time (C client)"
"$client" --tracker "$T" --key e2e-a64 --libs "$libs" --link-obj --number 50 | tee "$work/client-a.txt" | sed 's/^/  /'
grep -q 'all checks passed' "$work/client-a.txt" || die "board_client (A)"

step "A: the same with the CLI: tvmrpc run --time"
"$H" run --tracker "$T" --key e2e-a64 --timeout 60 --time 50 "$libs/vadd.so" vadd \
    float32:1000 float32:1000 float32:1000 >"$work/run-a.txt" 2>&1 ||
    { cat "$work/run-a.txt"; die "tvmrpc run"; }
sed 's/^/    /' "$work/run-a.txt"
grep -q '^vadd: mean .* ms, best .* ms over 3 repeats of 50 runs$' "$work/run-a.txt" || die "tvmrpc run output"

# ---- A2: a second kind of board (armhf), same tracker ---------------------------

armhf_root=/usr/arm-linux-gnueabihf
if command -v arm-linux-gnueabihf-gcc >/dev/null && command -v qemu-arm >/dev/null &&
    [ -e "$armhf_root/lib/ld-linux-armhf.so.3" ]; then
    step "A2: a second kind of board: armhf (qemu-arm) under key e2e-armhf, same tracker"
    arm_dir=$root/build-armhf-dyn
    cross_configure "$arm_dir" OFF build-armhf.log arm-linux-gnueabihf
    cmake_build "$arm_dir" build-armhf.log tvmrpc
    BA=$arm_dir/tvmrpc
    desc=$(file -b "$BA")
    [[ $desc == *"ARM, EABI5"* && $desc == *"dynamically linked"* ]] || die "$BA: $desc"
    arm-linux-gnueabihf-gcc "${kcflags[@]}" -shared "$root/tests/fixtures/vadd.c" -o "$libs/vadd-armhf.so"
    [[ $(file -b "$libs/vadd-armhf.so") == *"ARM, EABI5"* ]] || die "vadd-armhf.so is not armhf"
    mkdir -p "$work/board-armhf"
    bg "$work/board-armhf.log" qemu-arm -L "$armhf_root" -E "LD_LIBRARY_PATH=$armhf_root/lib" \
        "$BA" server --host 127.0.0.1 --port 0 --tracker "$T" --key e2e-armhf \
        --work-dir "$work/board-armhf"
    board_arm=$last
    both_free() { [ "$(queue_row e2e-armhf)" = "1 1 0" ] && board_free; }
    until_ok 60 "both kinds of board in tvmrpc query" both_free
    "$H" query --port "$tport" | sed -n '/Queue Status/,$s/^/    /p'
    "$H" run --tracker "$T" --key e2e-armhf --timeout 60 --time 20 "$libs/vadd-armhf.so" vadd \
        float32:1000 float32:1000 float32:1000 >"$work/run-armhf.txt" 2>&1 ||
        { cat "$work/run-armhf.txt"; die "tvmrpc run on the armhf board"; }
    sed 's/^/    /' "$work/run-armhf.txt"
    grep -q '^vadd: mean .* ms, best .* ms over 3 repeats of 20 runs$' "$work/run-armhf.txt" ||
        die "tvmrpc run output (armhf)"
    # An aarch64 library on the armhf board: a clear error, and the board serves on.
    set +e
    out=$("$H" run --tracker "$T" --key e2e-armhf --timeout 60 "$libs/vadd.so" vadd \
        float32:4 float32:4 float32:4 2>&1)
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || die "an aarch64 library on the armhf board: rc $rc: $out"
    echo "    aarch64 library on the armhf board: $(head -c 160 <<<"$out")"
    until_ok 30 "the armhf board free again" both_free
    stop "$board_arm" 15
    [ "$st" -eq 0 ] || die "armhf board exited with status $st after SIGTERM"
    echo "    armhf board served, refused a foreign library, stopped with exit 0"
else
    step "A2: armhf board skipped (needs gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross, qemu-user)"
fi

step "A: the errors docs/farm.md explains"
set +e
out=$("$H" call --host 127.0.0.1 --port "$sport" --key wrong-key --timeout 10 testing.nop 2>&1)
rc=$?
set -e
if [ "$rc" -ne 1 ] || [[ $out != *"cannot find server that matches key=client:wrong-key"* ]]; then
    die "wrong key: rc $rc: $out"
fi
echo "    wrong key, straight to the board: $out"
set +e
out=$("$H" call --tracker "$T" --key e2e-no-such-board --timeout 1 testing.nop 2>&1)
rc=$?
set -e
if [ "$rc" -ne 1 ] || [[ $out != *"Cannot request e2e-no-such-board after 5 retry"* ]]; then
    die "unknown key: rc $rc: $out"
fi
echo "    key nobody serves, --timeout 1: $out"

step "A: restart the tracker; the board registers again by itself"
stop "$tracker_pid" 10
[ "$st" -eq 0 ] || die "tracker exited with status $st after SIGTERM"
bg "$work/tracker2.log" "$H" tracker --host 127.0.0.1 --port "$tport" --port-end $((tport + 1))
tracker_pid=$last
[ "$(port_of "$work/tracker2.log" 127.0.0.1)" = "$tport" ] || die "tracker did not get port $tport back"
# The board retries with backoff starting at 1 s.
until_ok 30 "the board back in tvmrpc query" board_free
echo "    registered again ($(grep -c "registered with tracker" "$work/board-a.log") registrations in the board's log)"

step "A: SIGTERM to the board during a session"
"$client" --tracker "$T" --key e2e-a64 --hold 30 >"$work/hold-a.txt" 2>&1 &
hold=$!
pids+=("$hold")
until_ok 60 "the holding session" log_has "$work/hold-a.txt" holding
stop "$board_a" 15
[ "$st" -eq 0 ] || die "board exited with status $st after SIGTERM"
until_ok 15 "the client to notice" log_has "$work/hold-a.txt" "session lost"
wait "$hold" || die "board_client --hold exited with status $?"
forget "$hold"
sed -n 's/^/    client: /p' "$work/hold-a.txt" | tail -n 1
log_has "$work/board-a.log" "caught signal 15, shutting down" || die "no shutdown line in the board's log"
board_gone() {
    local q
    q=$("$H" query --port "$tport" --timeout 5) && [[ $q != *server:e2e-a64* ]]
}
until_ok 10 "the tracker to forget the board" board_gone
[ -z "$(ls -A "$work/board-a")" ] || die "workspace left behind: $(ls "$work/board-a")"
echo "    board exited 0, session cut, tracker forgot it, workspace removed"

# ---- B: board behind a host proxy (loopback) -----------------------------------

# proxy_case NAME KEY PROXY_HOST [NETNS]: proxy on PROXY_HOST registered
# with the tracker, board dialling out to it (inside NETNS if given).
proxy_case() {
    local name=$1 key=$2 phost=$3 in_ns=${4:-}
    local plog=$work/proxy-$name.log blog=$work/board-$name.log
    local pargs=(--host "$phost" --port 0 --web-port 0 --tracker "$T")
    # The tracker hands clients the proxy's address as it sees it (here
    # 127.0.0.1); on the veth the proxy listens on another one.
    [ "$phost" = 127.0.0.1 ] || pargs+=(--custom-addr "$phost")
    bg "$plog" "$H" proxy "${pargs[@]}"
    local proxy=$last pport
    pport=$(port_of "$plog" "$phost")
    local run=()
    [ -z "$in_ns" ] || run=(ip netns exec "$in_ns")
    mkdir -p "$work/board-$name"
    bg "$blog" "${run[@]}" "${board[@]}" "$B" server --through-proxy --host "$phost" \
        --port "$pport" --key "$key" --work-dir "$work/board-$name"
    local bpid=$last
    until_ok 30 "the board waiting at the proxy" log_has "$plog" "($key) waits as slot"
    # A proxy's boards are one "server:proxy[...]" row in the table and, as
    # in TVM, no queue row (total counts direct servers only): the JSON
    # summary has their free count.
    free_is() {
        local q
        q=$("$H" query --port "$tport" --json --timeout 5) && [[ $q == *"\"$key\": {\"free\": $1,"* ]]
    }
    until_ok 30 "$key free in the tracker's summary" free_is 1
    "$H" query --port "$tport" >"$work/query-$name.txt"
    grep -q "^$phost:$pport  *server:proxy\[.*$key.*\]" "$work/query-$name.txt" ||
        { cat "$work/query-$name.txt"; die "query does not list the proxy with $key"; }
    echo "    query: $phost:$pport server:proxy[...$key...], JSON: \"$key\": {\"free\": 1, ...}"
    "$client" --tracker "$T" --key "$key" --libs "$libs" --number 50 | tee "$work/client-$name.txt" |
        sed 's/^/  /'
    grep -q 'all checks passed' "$work/client-$name.txt" || die "board_client ($name)"
    # Stopped while waiting at the proxy: exit 0, and the slot goes away.
    until_ok 30 "the board back at the proxy" free_is 1
    stop "$bpid" 15
    [ "$st" -eq 0 ] || die "board ($name) exited with status $st after SIGTERM"
    until_ok 15 "$key to leave the tracker's queue" free_is 0
    [ -z "$(ls -A "$work/board-$name")" ] || die "workspace left behind ($name)"
    stop "$proxy" 15
    [ "$st" -eq 0 ] || die "proxy ($name) exited with status $st after SIGTERM"
    echo "    board and proxy stopped with SIGTERM: exit 0, slot withdrawn"
}

step "B: board behind a host proxy (server --through-proxy), on loopback"
proxy_case b e2e-a64p 127.0.0.1

# ---- C: the board in its own network namespace, reachable only via the proxy --

step "C: board in its own network namespace, only the proxy reachable"
if [ "$netns" = no ]; then
    echo "    skipped (--no-netns)"
elif [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
    echo "    SKIPPED: needs root and iproute2 (ip netns)"
else
    # 198.18.0.0/15 is reserved for network tests (RFC 2544); one /30 per
    # run, chosen from our pid, so parallel runs do not collide.
    a=$((($$ / 64) % 256)) b=$((($$ % 64) * 4))
    hip=198.18.$a.$((b + 1)) bip=198.18.$a.$((b + 2))
    ns=tvmrpc-e2e-$$
    vh=tve$$h vb=tve$$b
    if ip netns add "$ns" 2>"$work/netns.log"; then
        ip link add "$vh" type veth peer name "$vb"
        ip link set "$vb" netns "$ns"
        ip addr add "$hip/30" dev "$vh"
        ip link set "$vh" up
        ip netns exec "$ns" ip addr add "$bip/30" dev "$vb"
        ip netns exec "$ns" ip link set "$vb" up
        ip netns exec "$ns" ip link set lo up
        # The board must not reach the tracker, neither on the veth nor on
        # its own loopback.
        for addr in "$hip" 127.0.0.1; do
            if ip netns exec "$ns" timeout 3 bash -c "exec 3<>/dev/tcp/$addr/$tport" 2>/dev/null; then
                die "the board's namespace reaches the tracker at $addr:$tport"
            fi
        done
        echo "    namespace $ns: board $bip, proxy $hip; tracker unreachable from the board"
        proxy_case c e2e-a64n "$hip" "$ns"
        ip netns del "$ns"
        ns=""
    else
        echo "    SKIPPED: ip netns add failed: $(cat "$work/netns.log")"
        ns=""
    fi
fi

step "stop the tracker"
stop "$tracker_pid" 10
[ "$st" -eq 0 ] || die "tracker exited with status $st after SIGTERM"
step_name="done"
echo "e2e-board: OK in ${SECONDS}s"
