#!/bin/sh
# Checks the shipped systemd files: fills in systemd/wsbroker.service.in the
# way the build does, with paths leading to a real daemon binary, and runs
# `systemd-analyze verify` on it (which also checks that the binary and the
# man pages named in Documentation= exist); then applies
# systemd/wsbroker.sysusers.conf to an empty root directory.
# Any warning or error fails the check.
#
# usage: tests/systemd/verify-unit.sh WSBROKER_BINARY [SOURCE_DIR]
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 WSBROKER_BINARY [SOURCE_DIR]" >&2
    exit 2
fi
binary=$1
srcdir=${2:-$(cd "$(dirname "$0")/../.." && pwd)}

if [ ! -x "$binary" ]; then
    echo "$0: $binary is not an executable" >&2
    exit 2
fi
for tool in systemd-analyze systemd-sysusers; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: $tool not found (install the systemd package)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsbroker-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# The unit names @sbindir@/wsbroker, so the binary goes in under that name.
mkdir -p "$tmp/sbin" "$tmp/etc/wsbroker" "$tmp/man/man5" "$tmp/man/man8"
binary_dir=$(cd "$(dirname "$binary")" && pwd)
ln -s "$binary_dir/$(basename "$binary")" "$tmp/sbin/wsbroker"
sed -e "s|@sbindir@|$tmp/sbin|g" -e "s|@sysconfdir@|$tmp/etc|g" \
    "$srcdir/systemd/wsbroker.service.in" > "$tmp/wsbroker.service"
if grep -n '@[a-z_]*@' "$tmp/wsbroker.service"; then
    echo "FAIL: placeholders left unsubstituted" >&2
    exit 1
fi

status=0

# verify looks at ExecStart= only; every Exec*= program must exist.
sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' "$tmp/wsbroker.service" \
    > "$tmp/programs"
while IFS= read -r program; do
    if [ ! -x "$program" ]; then
        echo "FAIL: $program (from an Exec line) is not an executable" >&2
        status=1
    fi
done < "$tmp/programs"

# Documentation= is checked with man(1) when it is there: point it at the
# source tree's pages.
man_option=--man=no
if command -v man >/dev/null 2>&1; then
    cp "$srcdir/man/wsbroker.conf.5" "$tmp/man/man5/"
    cp "$srcdir/man/wsbroker.8" "$tmp/man/man8/"
    man_option=--man=yes
fi

# verify reports problems on stderr but exits 0 for some of them (unknown
# settings, for one), so any output at all is a failure.
if ! output=$(cd "$tmp" && MANPATH="$tmp/man" SYSTEMD_LOG_COLOR=0 \
        systemd-analyze verify "$man_option" "$tmp/wsbroker.service" 2>&1); then
    status=1
fi
if [ -n "$output" ]; then
    printf '%s\n' "$output" >&2
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "ok: systemd-analyze verify wsbroker.service"
else
    echo "FAIL: systemd-analyze verify wsbroker.service" >&2
fi

# sysusers: the file parses and yields a locked system account.
mkdir -p "$tmp/root/etc"
if ! output=$(systemd-sysusers --root="$tmp/root" \
        "$srcdir/systemd/wsbroker.sysusers.conf" 2>&1); then
    printf '%s\n' "$output" >&2
    echo "FAIL: systemd-sysusers wsbroker.sysusers.conf" >&2
    status=1
elif ! grep -q '^wsbroker:x:[0-9]*:[0-9]*:[^:]*:/nonexistent:/usr/sbin/nologin$' \
        "$tmp/root/etc/passwd" || ! grep -q '^wsbroker:' "$tmp/root/etc/group"; then
    printf '%s\n' "$output" >&2
    cat "$tmp/root/etc/passwd" "$tmp/root/etc/group" >&2 || true
    echo "FAIL: systemd-sysusers did not create user and group wsbroker" >&2
    status=1
else
    echo "ok: systemd-sysusers wsbroker.sysusers.conf"
fi

exit "$status"
