#!/usr/bin/env bash
# demo.sh TVMRPC: a local RPC system on loopback, as the seed document sets
# one up: a tracker on 127.0.0.1:9190, a server registered under key
# "local", the query table, and one remote call through the tracker. It
# stays up until Ctrl-C so you can point your own TVM client at it:
#   tvm.rpc.connect_tracker("127.0.0.1", 9190).request("local")
set -euo pipefail
bin=${1:-build/tvmrpc}
port=${TVMRPC_DEMO_PORT:-9190}
logdir=$(mktemp -d /tmp/tvmrpc-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo stopped; logs were in $logdir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_for() { # wait_for FILE TEXT: bounded wait for a log line
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "demo: timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    return 1
}

echo "== tracker on 127.0.0.1:$port"
"$bin" tracker --host 127.0.0.1 --port "$port" --port-end $((port + 1)) >"$logdir/tracker.log" 2>&1 &
pids+=($!)
wait_for "$logdir/tracker.log" "bind to 127.0.0.1:$port"

echo "== server registered under key 'local'"
"$bin" server --host 127.0.0.1 --port 9090 --port-end 9199 --tracker "127.0.0.1:$port" --key local \
    >"$logdir/server.log" 2>&1 &
pids+=($!)
wait_for "$logdir/server.log" "registered with tracker"

for _ in $(seq 1 100); do # until the server's slot is queued
    "$bin" query --port "$port" | grep -q '^local ' && break
    sleep 0.05
done
echo "== tvmrpc query --port $port"
"$bin" query --port "$port"

if "$bin" --help | grep -q '^  call '; then
    echo "== one remote call through the tracker: rpc.test.strcat(\"tvmrpc\", 42) on key 'local'"
    "$bin" call --tracker "127.0.0.1:$port" --key local rpc.test.strcat tvmrpc 42
fi

echo
echo "Running. Logs: $logdir. From Python with TVM installed:"
echo "  import tvm.rpc; r = tvm.rpc.connect_tracker('127.0.0.1', $port).request('local')"
echo "Press Ctrl-C to stop."
while :; do sleep 3600; done
