#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz into OUTDIR (default
# tests/fuzz/build). The pure modules under src/ are compiled directly with
# the fuzzing sanitizers, not through the project's configure/make, so the
# daemon's own build stays untouched. A target is rebuilt only when its
# binary is older than its source, a src/ file or this script.
#
# usage: tests/fuzz/build.sh [OUTDIR]
# environment: CC (default clang), EXTRA_CFLAGS, TARGETS (names to build,
# default all)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
src="$top/src"
out=${1:-"$here/build"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

CC=${CC:-clang}
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I $src ${EXTRA_CFLAGS:-}"
LIBS="-ljansson -ljwt -lconfig -lssl -lcrypto -lz"

ALL_TARGETS="fuzz_wsframe fuzz_utf8 fuzz_http fuzz_envelope fuzz_auth fuzz_config"
TARGETS=${TARGETS:-$ALL_TARGETS}

# The src/ modules each target links (what its code and theirs call).
modules_of() {
    case "$1" in
    fuzz_wsframe) echo "wsframe utf8 deflate http" ;;
    fuzz_utf8) echo "utf8" ;;
    fuzz_http) echo "http handshake deflate" ;;
    fuzz_envelope) echo "envelope" ;;
    fuzz_auth) echo "auth pattern utf8" ;;
    fuzz_config) echo "config auth route tls pattern netaddr utf8" ;;
    *) echo "unknown fuzz target: $1" >&2; return 1 ;;
    esac
}

# True when $1 is missing or older than any of the remaining files.
stale() {
    target=$1
    shift
    [ -e "$target" ] || return 0
    for dependency in "$@"; do
        [ -n "$(find "$dependency" -prune -newer "$target")" ] && return 0
    done
    return 1
}

status=0
for name in $TARGETS; do
    modules=$(modules_of "$name")
    sources="$here/$name.c"
    for module in $modules; do
        sources="$sources $src/$module.c"
    done
    # shellcheck disable=SC2086 # word splitting of the lists is intended
    if ! stale "$out/$name" $sources "$src"/*.h "$here/build.sh"; then
        echo "up to date: $out/$name"
        continue
    fi
    echo "building $out/$name"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS -o "$out/$name.tmp" $sources $LIBS; then
        echo "FAILED to build $name" >&2
        rm -f "$out/$name.tmp"
        status=1
        continue
    fi
    mv "$out/$name.tmp" "$out/$name"
done
exit $status
