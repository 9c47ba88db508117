#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS: run every libFuzzer harness for SECONDS each,
# growing a scratch corpus per harness (the committed seeds stay untouched).
# Crashes land in BUILD_DIR/fuzz-artifacts/; turn each into a unit test.
set -euo pipefail
build=${1:-build-fuzz}
secs=${2:-300}
mkdir -p "$build/fuzz-artifacts"
status=0
for h in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$h" ] || continue
    name=$(basename "$h")
    short=${name#fuzz_}
    scratch="$build/fuzz-corpus/$short"
    mkdir -p "$scratch"
    echo "== $name for ${secs}s"
    seeds=tests/fuzz/corpus/$short
    [ -d "$seeds" ] || seeds=
    if ! "$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/fuzz-artifacts/$short-" "$scratch" $seeds; then
        echo "fuzz.sh: $name found a failure (see $build/fuzz-artifacts)" >&2
        status=1
    fi
done
exit $status
