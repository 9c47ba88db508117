#!/usr/bin/env bash
# Build build-bench/ and run every benchmark in it (build-bench/bench/bench_*),
# then print one results table. See bench/README.md.
#
#   scripts/bench.sh                 build, run all, print the table
#   scripts/bench.sh tracker         only bench_tracker (names without "bench_")
#   scripts/bench.sh threads         thread pool scaling: TVM_NUM_THREADS=1 vs one task
#                                    per core on compiled kernels (bench/kernels/); run it
#                                    on a quiet machine, other load lowers the speedup
#   BENCH_ARGS_tracker="--duration 10" scripts/bench.sh
#                                    extra arguments for one benchmark
#   BENCH_TIMEOUT=300 scripts/bench.sh   per-benchmark time limit (default 120 s)
#
# Contract for a benchmark (so new ones need no change here): an executable
# bench/bench_<name>.c built by bench/CMakeLists.txt, finds the tvmrpc binary
# through $TVMRPC_BIN, prints whatever it likes plus one line
#   BENCH_RESULT {"bench": "<name>", "metrics": [{"name": ..., "value": ...,
#                "unit": ..., "target": ..., "ok": true|false (optional)}], ...}
# and exits 0 (targets met), 1 (a target missed) or >= 2 (could not run).
#
# Exit status: 0 all targets met, 1 some target missed, 2 a build or
# benchmark failure.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
TIMEOUT=${BENCH_TIMEOUT:-120}
OUT=$BUILD/bench-results
# RelWithDebInfo is what a plain build ships (-O2) and keeps symbols for perf.
BUILD_TYPE=${BENCH_BUILD_TYPE:-RelWithDebInfo}

echo "== building $BUILD ($BUILD_TYPE)"
mkdir -p "$BUILD"
if ! cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DTVMRPC_BENCH=ON \
        -DTVMRPC_TESTS=OFF >"$BUILD/configure.log" 2>&1; then
    cat "$BUILD/configure.log"
    exit 2
fi
if ! cmake --build "$BUILD" -j"$(nproc)" >"$BUILD/build.log" 2>&1; then
    tail -40 "$BUILD/build.log"
    echo "bench.sh: build failed (full log: $BUILD/build.log)"
    exit 2
fi

shopt -s nullglob
benches=()
for exe in "$BUILD"/bench/bench_*; do
    if [ ! -f "$exe" ] || [ ! -x "$exe" ]; then
        continue
    fi
    name=${exe##*/bench_}
    if [ $# -gt 0 ]; then
        want=0
        for n in "$@"; do [ "$n" = "$name" ] && want=1; done
        [ $want = 1 ] || continue
    fi
    benches+=("$exe")
done
if [ ${#benches[@]} = 0 ]; then
    echo "bench.sh: no benchmarks built in $BUILD/bench. The top-level CMakeLists.txt needs:"
    echo '  option(TVMRPC_BENCH "Build the benchmarks in bench/" ON)'
    echo '  if(TVMRPC_BENCH) add_subdirectory(bench) endif()'
    exit 2
fi

export TVMRPC_BIN=$BUILD/tvmrpc
mkdir -p "$OUT"
status=0
results=()
for exe in "${benches[@]}"; do
    name=${exe##*/bench_}
    argvar=BENCH_ARGS_$name
    # shellcheck disable=SC2206 # word splitting of the extra arguments is wanted
    args=(${!argvar:-})
    echo
    echo "== bench_$name ${args[*]:-}"
    timeout --kill-after=5 "$TIMEOUT" "$exe" "${args[@]}" 2>&1 | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
    line=$(grep '^BENCH_RESULT ' "$OUT/$name.txt" | tail -1)
    if [ "$rc" -ge 2 ]; then
        echo "bench.sh: bench_$name failed (exit $rc)"
        status=2
        results+=("{\"bench\": \"$name\", \"metrics\": [{\"name\": \"(failed, exit $rc)\", \"value\": 0, \"unit\": \"\", \"target\": \"\", \"ok\": false}]}")
        continue
    fi
    if [ -z "$line" ]; then
        # Ran, but printed no BENCH_RESULT line: list it, its output says the rest.
        results+=("{\"bench\": \"$name\", \"metrics\": [{\"name\": \"(no BENCH_RESULT line; see $OUT/$name.txt)\", \"value\": 0, \"unit\": \"\", \"target\": \"\"}]}")
        continue
    fi
    [ "$rc" = 1 ] && [ $status = 0 ] && status=1
    results+=("${line#BENCH_RESULT }")
done

printf '%s\n' "${results[@]}" >"$OUT/results.jsonl"
echo
echo "== results (raw: $OUT/results.jsonl)"
if command -v jq >/dev/null; then
    jq -r '. as $r | .metrics[] | [$r.bench, .name,
            (if (.value | type) == "number" then (.value * 100 | round / 100 | tostring)
             else (.value | tostring) end),
            .unit, .target,
            (if has("ok") then (if .ok then "PASS" else "FAIL" end) else "" end)] | @tsv' \
        "$OUT/results.jsonl" |
        { printf 'bench\tmetric\tvalue\tunit\ttarget\tresult\n'; cat; } | column -t -s $'\t'
elif command -v python3 >/dev/null; then
    python3 - "$OUT/results.jsonl" <<'EOF'
import json, sys
rows = [("bench", "metric", "value", "unit", "target", "result")]
for line in open(sys.argv[1]):
    r = json.loads(line)
    for m in r["metrics"]:
        ok = "" if "ok" not in m else ("PASS" if m["ok"] else "FAIL")
        rows.append((r["bench"], m["name"], "%.2f" % m["value"], m["unit"], m["target"], ok))
w = [max(len(str(row[i])) for row in rows) for i in range(6)]
for row in rows:
    print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip())
EOF
else
    cat "$OUT/results.jsonl"
fi
exit $status
