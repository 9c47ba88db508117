#!/usr/bin/env bash
# deps.sh PROFILE...: make sure the Debian packages a make target needs are
# installed. As root, installs what is missing with apt-get; otherwise prints
# the exact apt-get line and fails, so nothing is done behind the user's back.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

packages_for() {
    case "$1" in
    build) echo "cmake make gcc libc6-dev pkg-config libcmocka-dev" ;;
    check) echo "cmake make gcc libc6-dev pkg-config libcmocka-dev clang libclang-rt-14-dev file procps iproute2 dpkg" ;;
    cross) grep -v '^#' "$here/deps-cross.txt" 2>/dev/null | tr '\n' ' ' ;;
    *) echo "deps.sh: unknown profile '$1'" >&2; exit 2 ;;
    esac
}

want=()
for profile in "$@"; do
    for p in $(packages_for "$profile"); do want+=("$p"); done
done

missing=()
for p in "${want[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in *"install ok installed"*) ;; *) missing+=("$p") ;; esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
