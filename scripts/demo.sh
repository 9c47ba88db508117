#!/usr/bin/env bash
# demo.sh [--once] [TVMRPC]: a local RPC system on loopback, as the seed
# document sets one up: a tracker on 127.0.0.1:9190, a server registered
# under key "local", a proxy registered with the tracker and a second server
# under key "board" that reaches the system only through it (as a board
# behind a firewall does, `server --through-proxy`), the query table, a
# remote call on each through the tracker, and a compiled model run on both
# through the graph executor (examples/run_model with the fixture network
# net.so; docs/models.md).
#
# By default it stays up until Ctrl-C so you can point your own TVM client
# at it:   tvm.rpc.connect_tracker("127.0.0.1", 9190).request("local")
#
# --once  exit after the model ran (status 0 only if its output matched the
#         plain C reference); ports are then ephemeral unless
#         TVMRPC_DEMO_PORT is set, so it cannot clash with a running demo.
#
# Environment: TVMRPC_DEMO_PORT (tracker port; 0 = ephemeral),
# TVMRPC_DEMO_RUNNER (run_model binary), TVMRPC_DEMO_MODEL (net.so); by
# default both are looked for in the build directory of TVMRPC.
set -euo pipefail
once=0
if [ "${1:-}" = "--once" ]; then
    once=1
    shift
fi
bin=${1:-build/tvmrpc}
bindir=$(dirname "$bin")
runner=${TVMRPC_DEMO_RUNNER:-$bindir/examples/run_model}
model=${TVMRPC_DEMO_MODEL:-$bindir/tests/fixtures/net.so}
if [ $once = 1 ]; then
    port=${TVMRPC_DEMO_PORT:-0}
else
    port=${TVMRPC_DEMO_PORT:-9190}
fi
logdir=$(mktemp -d /tmp/tvmrpc-demo.XXXXXX)
pids=()
status=1
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ $once = 1 ] && [ $status = 0 ]; then
        rm -rf "$logdir"
        echo "demo done"
    else
        echo "demo stopped; logs are in $logdir"
    fi
}
trap cleanup EXIT
trap 'status=0; exit 0' INT TERM

wait_for() { # wait_for FILE TEXT: bounded wait for a log line
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "demo: timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    return 1
}

bound_port() { # bound_port FILE: the port of the "bind to 127.0.0.1:PORT" line
    grep -o 'bind to 127\.0\.0\.1:[0-9]*' "$1" | head -1 | cut -d: -f2
}

start_tracker() {
    local range=(--port "$port")
    # A fixed port is asked for alone (fail rather than drift); 0 is any.
    [ "$port" != 0 ] && range+=(--port-end $((port + 1)))
    "$bin" tracker --host 127.0.0.1 "${range[@]}" >"$logdir/tracker.log" 2>&1 &
    pids+=($!)
    wait_for "$logdir/tracker.log" "bind to 127.0.0.1:"
    port=$(bound_port "$logdir/tracker.log")
    echo "== tracker on 127.0.0.1:$port"
}

start_server() {
    local range=(--port 9090 --port-end 9199)
    [ $once = 1 ] && [ -z "${TVMRPC_DEMO_PORT:-}" ] && range=(--port 0)
    "$bin" server --host 127.0.0.1 "${range[@]}" --tracker "127.0.0.1:$port" --key local \
        >"$logdir/server.log" 2>&1 &
    pids+=($!)
    wait_for "$logdir/server.log" "registered with tracker"
    echo "== server on 127.0.0.1:$(bound_port "$logdir/server.log"), registered under key 'local'"
}

# A proxy registered with the tracker, and a "board" that dials out to it
# and is reached only through it (docs/proxy.md, docs/farm.md section 5).
start_proxy_and_board() {
    "$bin" proxy --host 127.0.0.1 --port 0 --tracker "127.0.0.1:$port" \
        >"$logdir/proxy.log" 2>&1 &
    pids+=($!)
    wait_for "$logdir/proxy.log" "bind to 127.0.0.1:"
    local pport
    pport=$(bound_port "$logdir/proxy.log")
    "$bin" server --through-proxy --host 127.0.0.1 --port "$pport" --key board \
        >"$logdir/board.log" 2>&1 &
    pids+=($!)
    wait_for "$logdir/proxy.log" "(board) waits as slot"
    echo "== proxy on 127.0.0.1:$pport, registered with the tracker;" \
        "a server behind it under key 'board' (--through-proxy)"
}

show_query() {
    for _ in $(seq 1 100); do # until both servers' slots are known
        "$bin" query --port "$port" | grep -q '^local ' &&
            "$bin" query --port "$port" | grep -q 'server:proxy\[.*board' && break
        sleep 0.05
    done
    echo "== tvmrpc query --port $port"
    "$bin" query --port "$port"
}

remote_call() {
    "$bin" --help | grep -q '^  call ' || return 0
    local key
    for key in local board; do
        echo "== one remote call through the tracker: rpc.test.strcat(\"tvmrpc\", 42) on key '$key'"
        "$bin" call --tracker "127.0.0.1:$port" --key "$key" rpc.test.strcat tvmrpc 42
    done
}

# The model: request 'local' from the tracker, upload net.so, load it,
# GraphExecutorFactory "default"(cpu0), set_input, run, get_output, time.
run_model() { # run_model KEY
    local key=$1
    echo "== a model on the device: $(basename "$model") through the graph executor, key '$key'"
    if [ ! -x "$runner" ] || [ ! -f "$model" ]; then
        echo "   (skipped: needs $runner and $model; build with the default"
        echo "    -DTVMRPC_EXAMPLES=ON -DTVMRPC_TESTS=ON)"
        return $((once))
    fi
    echo "   $runner --tracker 127.0.0.1:$port --key $key $model"
    "$runner" --tracker "127.0.0.1:$port" --key "$key" "$model" | sed 's/^/   /'
    return "${PIPESTATUS[0]}"
}

start_tracker
start_server
start_proxy_and_board
show_query
remote_call
echo
model_rc=0
run_model local || model_rc=$?
echo
run_model board || model_rc=$?

if [ $once = 1 ]; then
    status=$model_rc
    exit "$status"
fi
echo
echo "Running. Logs: $logdir. From Python with TVM installed:"
echo "  import tvm.rpc; r = tvm.rpc.connect_tracker('127.0.0.1', $port).request('local')"
echo "  (or .request('board') for the server behind the proxy)"
echo "Press Ctrl-C to stop."
# wait, unlike a foreground sleep, returns as soon as a signal arrives.
while :; do
    sleep 3600 &
    pids+=($!)
    wait $! || true
done
