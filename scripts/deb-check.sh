#!/usr/bin/env bash
# deb-check.sh: build the .deb and prove an installed tvmrpc works.
#
#   scripts/deb-check.sh [--build DIR] [--keep-deb] [-j N]
#
# 1. Configures DIR (default build-deb/) with -DCMAKE_INSTALL_PREFIX=/usr,
#    builds, and checks a staged `cmake --install` (binary, headers,
#    libtvmrpc_client.a, tvmrpc.pc, man page, systemd units, /etc/default).
# 2. `cpack -G DEB`, then checks the package's fields (maintainer,
#    Depends: libc6, description), files and conffiles.
# 3. As root: `dpkg -i` it, runs /usr/bin/tvmrpc --version, `man -w tvmrpc`,
#    `pkg-config --cflags --libs tvmrpc`, compiles a small C program using
#    <tvmrpc/client.h> with those flags and runs it against the installed
#    server on 127.0.0.1, checks the units with `systemd-analyze verify`, and
#    finally `dpkg --purge`s the package (also on failure), leaving the
#    machine as it was. Refuses to touch a machine where a tvmrpc package or
#    /usr/bin/tvmrpc already exists. Not root: step 3 is skipped (exit 0).
# Packages: cmake, gcc, pkg-config, dpkg (dpkg-deb), gzip; man-db and
# systemd (systemd-analyze) are used when present.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-deb
keep_deb=false
jobs=$(nproc 2>/dev/null || echo 2)

usage() { sed -n '2,21s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=${2:?--build needs a directory}; shift ;;
    --keep-deb) keep_deb=true ;;
    -j) jobs=${2:?-j needs a number}; shift ;;
    -j*) jobs=${1#-j} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deb-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

work=$(mktemp -d /tmp/tvmrpc-deb-check.XXXXXX)
installed_by_us=false
server_pid=""
step_name=setup
reported=false
step() { step_name="$*"; echo "==> $*"; }
die() { echo "deb-check: FAILED: $*" >&2; reported=true; exit 1; }
cleanup() {
    local rc=$?
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if $installed_by_us; then
        echo "==> dpkg --purge tvmrpc"
        dpkg --purge tvmrpc >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; rc=1; }
    fi
    if [ "$rc" -ne 0 ]; then
        $reported || echo "deb-check: FAILED during: $step_name (exit $rc)" >&2
        echo "deb-check: logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for t in cmake cc pkg-config dpkg-deb gzip; do
    command -v "$t" >/dev/null || die "'$t' not found"
done

# ---- 1. build and staged install ---------------------------------------------

step "configure and build $build (prefix /usr)"
cache=$build/CMakeCache.txt
if [ -f "$cache" ] && ! grep -q '^CMAKE_INSTALL_PREFIX:PATH=/usr$' "$cache"; then
    rm -rf "$build"
fi
cmake -S "$root" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTVMRPC_TESTS=OFF -DTVMRPC_BENCH=OFF >"$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log" >&2; die "configure"; }
cmake --build "$build" -j "$jobs" >>"$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log" >&2; die "build"; }

step "staged cmake --install"
stage=$work/stage
DESTDIR=$stage cmake --install "$build" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; die "cmake --install"; }
multiarch=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$cache")
for f in usr/bin/tvmrpc usr/include/tvmrpc/client.h usr/include/tvmrpc/c_runtime_api.h \
    "usr/$multiarch/libtvmrpc_client.a" "usr/$multiarch/pkgconfig/tvmrpc.pc" \
    usr/share/man/man1/tvmrpc.1.gz lib/systemd/system/tvmrpc-tracker.service \
    lib/systemd/system/tvmrpc-proxy.service lib/systemd/system/tvmrpc-server@.service \
    etc/default/tvmrpc-tracker etc/default/tvmrpc-proxy etc/default/tvmrpc-server; do
    [ -f "$stage/$f" ] || die "cmake --install did not install /$f"
done
echo "    /usr/bin, /usr/include/tvmrpc, /usr/$multiarch (+pkgconfig), man1, /lib/systemd/system, /etc/default"
# Only the public API leaves the client archive.
others=$(nm -g --defined-only "$stage/usr/$multiarch/libtvmrpc_client.a" | awk 'NF == 3 && $3 !~ /^tvmrpc_/ { print $3 }')
[ -z "$others" ] || die "libtvmrpc_client.a exports internal symbols: $others"
if command -v groff >/dev/null; then
    warn=$(zcat "$stage/usr/share/man/man1/tvmrpc.1.gz" | groff -man -Tutf8 -ww 2>&1 >/dev/null)
    [ -z "$warn" ] || die "man page: $warn"
fi
# Every subcommand `tvmrpc --help` lists has a section in the man page.
page=$(zcat "$stage/usr/share/man/man1/tvmrpc.1.gz")
for cmd in $("$build/tvmrpc" --help | awk '/^commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }'); do
    grep -q "^\.SS $cmd\$" <<<"$page" || die "man page has no section for 'tvmrpc $cmd'"
done

# ---- 2. the package ------------------------------------------------------------

step "cpack -G DEB"
rm -f "$build"/tvmrpc_*.deb
(cd "$build" && cpack -G DEB) >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log" >&2; die "cpack"; }
deb=$(ls "$build"/tvmrpc_*.deb)
echo "    $(basename "$deb"): $(stat -c %s "$deb") bytes"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = tvmrpc ] || die "Package: $(field Package)"
[[ $(field Maintainer) == *"<"*"@"*">" ]] || die "Maintainer: $(field Maintainer)"
[[ $(field Depends) == libc6* ]] || die "Depends: $(field Depends)"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || die "Architecture: $(field Architecture)"
[ -n "$(field Description)" ] || die "no Description"
echo "    Depends: $(field Depends); Maintainer: $(field Maintainer)"
dpkg-deb -c "$deb" | awk '{ print $6 }' >"$work/contents.txt"
for f in ./usr/bin/tvmrpc ./lib/systemd/system/tvmrpc-server@.service "./usr/$multiarch/pkgconfig/tvmrpc.pc"; do
    grep -qx -- "$f" "$work/contents.txt" || die "$f is not in the package"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
grep -qx /etc/default/tvmrpc-server "$work/conffiles" || die "conffiles: $(cat "$work/conffiles")"

# ---- 3. install it ---------------------------------------------------------------

if [ "$(id -u)" -ne 0 ]; then
    echo "deb-check: OK (package built and inspected; install test SKIPPED: needs root) in ${SECONDS}s"
    exit 0
fi
if dpkg-query -W -f='${Status}' tvmrpc 2>/dev/null | grep -q 'install ok'; then
    echo "deb-check: OK (package built; install test SKIPPED: a tvmrpc package is installed here)"
    exit 0
fi
if [ -e /usr/bin/tvmrpc ]; then
    echo "deb-check: OK (package built; install test SKIPPED: /usr/bin/tvmrpc exists)"
    exit 0
fi

step "dpkg -i $(basename "$deb")"
installed_by_us=true
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; die "dpkg -i"; }
out=$(/usr/bin/tvmrpc --version) || die "/usr/bin/tvmrpc --version"
[[ $out =~ ^tvmrpc\ [0-9]+\.[0-9]+ ]] || die "--version printed: $out"
echo "    $out"
if command -v man >/dev/null; then
    man -w tvmrpc >/dev/null 2>&1 || die "man -w tvmrpc finds no page"
fi

step "pkg-config and a program using <tvmrpc/client.h>"
flags=$(pkg-config --cflags --libs tvmrpc) || die "pkg-config --cflags --libs tvmrpc"
echo "    pkg-config --cflags --libs tvmrpc: $flags"
cat >"$work/hello.c" <<'EOF'
/* Links against the installed client library; calls testing.echo. */
#include <stdio.h>
#include <stdlib.h>
#include <tvmrpc/client.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    char err[512];
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = 10000;
    tvmrpc_sess_t *s = tvmrpc_connect_opts("127.0.0.1", atoi(argv[1]), "", &o, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "connect: %s\n", err);
        return 1;
    }
    uint64_t f;
    tvmrpc_value_t arg = tvmrpc_v_int(42), ret;
    if (tvmrpc_get_func(s, "testing.echo", &f) < 0 ||
        tvmrpc_call(s, f, &arg, 1, &ret) < 0 || ret.kind != TVMRPC_INT || ret.u.i != 42) {
        fprintf(stderr, "testing.echo: %s\n", tvmrpc_last_error(s));
        return 1;
    }
    printf("testing.echo(42) = %lld\n", (long long)ret.u.i);
    tvmrpc_close(s);
    return 0;
}
EOF
# shellcheck disable=SC2086 # pkg-config output is a list of flags
cc -std=c11 -Wall -Wextra -Werror -o "$work/hello" "$work/hello.c" $flags ||
    die "compiling against the installed library"
/usr/bin/tvmrpc server --host 127.0.0.1 --port 0 --work-dir "$work" >"$work/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(grep -o 'bind to 127.0.0.1:[0-9]*' "$work/server.log" | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || die "installed server did not start: $(cat "$work/server.log")"
"$work/hello" "$port" | sed 's/^/    /' || die "hello against the installed server"
kill "$server_pid"
wait "$server_pid" || die "installed server exited with $? after SIGTERM"
server_pid=""

if command -v systemd-analyze >/dev/null; then
    step "systemd-analyze verify the installed units"
    # An instance name stands for the template. Warnings about the machine
    # (no running systemd, missing network-online.target) are not ours.
    if ! systemd-analyze verify /lib/systemd/system/tvmrpc-tracker.service \
        /lib/systemd/system/tvmrpc-proxy.service \
        /lib/systemd/system/tvmrpc-server@board.service >"$work/verify.log" 2>&1; then
        cat "$work/verify.log" >&2
        die "systemd-analyze verify"
    fi
    grep -i 'tvmrpc' "$work/verify.log" >&2 && die "systemd-analyze verify complains about our units"
    echo "    clean"
fi

step "dpkg --purge tvmrpc"
installed_by_us=false
dpkg --purge tvmrpc >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; die "dpkg --purge"; }
for f in /usr/bin/tvmrpc /etc/default/tvmrpc-server /lib/systemd/system/tvmrpc-server@.service; do
    [ ! -e "$f" ] || die "$f is still there after purge"
done
! pkg-config --exists tvmrpc || die "tvmrpc.pc is still there after purge"
$keep_deb || rm -f "$deb"
step_name="done"
echo "deb-check: OK in ${SECONDS}s"
