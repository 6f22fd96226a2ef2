#!/bin/sh
# Checks `make install` file by file, from a build directory configured with
# --prefix=/usr --sysconfdir=/etc (and any --with-systemdsystemunitdir):
#   - `make install DESTDIR=TMP` installs exactly the expected files, with
#     the expected modes and contents: the daemon, the configuration (its
#     static_root pointing at the installed page), the page, the man pages,
#     the systemd unit (paths filled in) and the sysusers.d file;
#   - a second install keeps a configuration the operator changed;
#   - `make uninstall DESTDIR=TMP` removes every file installed.
# Nothing is written outside TMP, which is removed at the end.
#
# usage: tests/install/check-install.sh BUILD_DIR
set -eu

if [ $# -ne 1 ] || [ ! -f "$1/Makefile" ]; then
    echo "usage: $0 BUILD_DIR (a configured build directory)" >&2
    exit 2
fi
builddir=$(cd "$1" && pwd)
make="${MAKE:-make}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsbroker-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
dest="$tmp/root"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
check() {   # check DESCRIPTION COMMAND...
    what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# The installation directories as the build's Makefile expands them.
cat > "$tmp/vars.mk" <<'EOF'
print-install-dirs:
	@echo "prefix='$(prefix)'"
	@echo "sbindir='$(sbindir)'"
	@echo "sysconfdir='$(sysconfdir)'"
	@echo "datadir='$(datadir)'"
	@echo "mandir='$(mandir)'"
	@echo "unitdir='$(systemdsystemunitdir)'"
	@echo "srcdir='$(abs_srcdir)'"
EOF
prefix='' sbindir='' sysconfdir='' datadir='' mandir='' unitdir='' srcdir=''
eval "$($make -s -C "$builddir" -f Makefile -f "$tmp/vars.mk" print-install-dirs)"

if [ "$prefix" != /usr ] || [ "$sysconfdir" != /etc ]; then
    echo "$0: $builddir is configured with prefix=$prefix sysconfdir=$sysconfdir;" \
         "configure it with --prefix=/usr --sysconfdir=/etc" >&2
    exit 2
fi
case $unitdir in
    /*) ;;
    *) echo "$0: systemd unit directory '$unitdir' is not absolute" >&2; exit 2 ;;
esac
echo "checking make install of $builddir (unit directory $unitdir)"

# Paths relative to DESTDIR.
sbin=${sbindir#/}
conf=etc/wsbroker/wsbroker.conf
www=${datadir#/}/wsbroker/www
man=${mandir#/}
unit=${unitdir#/}/wsbroker.service
sysusers=${prefix#/}/lib/sysusers.d/wsbroker.conf

expected="$sbin/wsbroker
$conf
$www/index.html
$www/chat.js
$www/chat.css
$man/man8/wsbroker.8
$man/man5/wsbroker.conf.5
$man/man7/wsbroker-protocol.7
$unit
$sysusers"

# Files of the real system that a DESTDIR install must not touch.
outside="/$sbin/wsbroker /$conf /$unit /$sysusers"
before=""
for path in $outside; do
    [ -e "$path" ] && before="$before $path"
done

installed_files() {   # every file and symlink under DESTDIR, relative, sorted
    (cd "$dest" && find . \( -type f -o -type l \) -print | sed 's|^\./||' | LC_ALL=C sort)
}

run_make() {   # run_make TARGET: quietly, showing the output on failure
    if ! $make -C "$builddir" "$1" DESTDIR="$dest" > "$tmp/make.log" 2>&1; then
        cat "$tmp/make.log" >&2
        fail "make $1 DESTDIR=..."
        return 1
    fi
    ok "make $1 DESTDIR=..."
}

mode_of() { stat -c %a "$dest/$1"; }

# ---------------------------------------------------------------- install
run_make install || exit 1

printf '%s\n' "$expected" | LC_ALL=C sort > "$tmp/expected"
installed_files > "$tmp/installed"
if cmp -s "$tmp/expected" "$tmp/installed"; then
    ok "exactly the expected $(wc -l < "$tmp/expected") files are installed"
else
    fail "installed files differ from the expected list (- expected, + installed):"
    diff -u "$tmp/expected" "$tmp/installed" | sed -n '3,$p' >&2 || true
fi

# The daemon.
check "$sbin/wsbroker is an executable (mode 755)" \
    test -x "$dest/$sbin/wsbroker" -a "$(mode_of "$sbin/wsbroker" 2>/dev/null)" = 755
check "$sbin/wsbroker -v runs" sh -c "'$dest/$sbin/wsbroker' -v >/dev/null 2>&1"

# The configuration: the sample with static_root rewritten, nothing else.
check "$conf is mode 644" test "$(mode_of "$conf" 2>/dev/null)" = 644
check "$conf: static_root is the installed page" \
    grep -q "^[[:space:]]*static_root = \"/$www\";\$" "$dest/$conf"
sed -e 's|^\([[:space:]]*static_root = \)"[^"]*";$|\1"@STATIC_ROOT@";|' \
    "$srcdir/conf/wsbroker.conf" > "$tmp/conf.source"
sed -e 's|^\([[:space:]]*static_root = \)"[^"]*";$|\1"@STATIC_ROOT@";|' \
    "$dest/$conf" > "$tmp/conf.installed" 2>/dev/null || true
check "$conf is conf/wsbroker.conf but for static_root" \
    cmp -s "$tmp/conf.source" "$tmp/conf.installed"
# It is valid: checked with static_root pointing into DESTDIR, where the
# page is (the installed path exists only once installed for real).
sed -e "s|\"/$www\"|\"$dest/$www\"|" "$dest/$conf" > "$tmp/wsbroker.conf" 2>/dev/null || true
if "$dest/$sbin/wsbroker" -t -c "$tmp/wsbroker.conf" > "$tmp/t.log" 2>&1; then
    ok "wsbroker -t accepts the installed configuration"
else
    cat "$tmp/t.log" >&2
    fail "wsbroker -t accepts the installed configuration"
fi

# The page and the man pages, as shipped.
for name in index.html chat.js chat.css; do
    check "$www/$name is www/$name (mode 644)" \
        sh -c "cmp -s '$srcdir/www/$name' '$dest/$www/$name' && test \"\$(stat -c %a '$dest/$www/$name')\" = 644"
done
for page in man8/wsbroker.8 man5/wsbroker.conf.5 man7/wsbroker-protocol.7; do
    check "$man/$page is man/${page#*/}" cmp -s "$srcdir/man/${page#*/}" "$dest/$man/$page"
done

# The unit: every placeholder filled in with the configured paths.
check "$unit has no @placeholder@ left" sh -c "! grep -q '@[a-z_]*@' '$dest/$unit'"
check "$unit starts $sbindir/wsbroker with $sysconfdir/wsbroker/wsbroker.conf" \
    grep -qx "ExecStart=$sbindir/wsbroker -f -c $sysconfdir/wsbroker/wsbroker.conf" \
    "$dest/$unit"
check "$unit tests the file before starting and reloading" \
    test "$(grep -cx "Exec\(StartPre\|Reload\)=$sbindir/wsbroker -t -c $sysconfdir/wsbroker/wsbroker.conf" \
        "$dest/$unit")" = 2
sed -e "s|@sbindir@|$sbindir|g" -e "s|@sysconfdir@|$sysconfdir|g" \
    "$srcdir/systemd/wsbroker.service.in" > "$tmp/unit.expected"
check "$unit is systemd/wsbroker.service.in with the paths filled in" \
    cmp -s "$tmp/unit.expected" "$dest/$unit"
check "$unit is mode 644" test "$(mode_of "$unit" 2>/dev/null)" = 644

check "$sysusers is systemd/wsbroker.sysusers.conf" \
    cmp -s "$srcdir/systemd/wsbroker.sysusers.conf" "$dest/$sysusers"

# ---------------------------------------------------------------- reinstall
printf '\n# changed by the operator\nlog_level = "debug";\n' >> "$dest/$conf"
cp "$dest/$conf" "$tmp/conf.changed"
run_make install || exit 1
check "a second make install keeps the changed $conf" cmp -s "$tmp/conf.changed" "$dest/$conf"
check "make install says it kept it" grep -q "keeping existing .*$conf" "$tmp/make.log"
installed_files > "$tmp/installed"
check "the second install leaves the same files" cmp -s "$tmp/expected" "$tmp/installed"

# ---------------------------------------------------------------- uninstall
run_make uninstall || exit 1
installed_files > "$tmp/left"
if [ -s "$tmp/left" ]; then
    fail "make uninstall left files behind:"
    sed 's/^/    /' "$tmp/left" >&2
else
    ok "make uninstall removes every installed file"
fi

after=""
for path in $outside; do
    [ -e "$path" ] && after="$after $path"
done
check "nothing was installed outside DESTDIR" test "$before" = "$after"

echo "check-install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
