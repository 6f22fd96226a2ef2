#!/bin/sh
# Builds the fuzz targets when needed, replays each target's saved
# reproducers (tests/fuzz/regressions/<target>/, when any), then runs each
# for SECONDS on a temporary copy of its seed corpus (the checked-in corpus is never
# written), and prints a table of executions per second and coverage
# (cov: and ft: from libFuzzer's final status line). Exits non-zero when
# any target crashes, leaks, times out or runs out of memory; the input
# that did it is kept under OUTDIR/artifacts/<target>/ and named in the
# output, and each target's full log is kept in OUTDIR/logs/<target>.log.
#
# usage: tests/fuzz/run.sh SECONDS [OUTDIR]
# environment: TARGETS (names to run, default all), FUZZ_FLAGS (extra
# libFuzzer flags, e.g. -jobs or -dict)
set -u

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 SECONDS [OUTDIR]" >&2
    exit 2
fi
seconds=$1
case "$seconds" in
'' | *[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2 ;;
esac
out=${2:-"$here/build"}

TARGETS=${TARGETS:-"fuzz_wsframe fuzz_utf8 fuzz_http fuzz_envelope fuzz_auth fuzz_config"}
export TARGETS
"$here/build.sh" "$out" || exit 2
out=$(cd "$out" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/wsbroker-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$out/logs" "$out/artifacts"

# "key: value" from a libFuzzer status line such as
# "#123 DONE cov: 412 ft: 1800 corp: 90/3Kb lim: 4096 exec/s: 2057 rss: 50Mb"
field() {
    printf '%s\n' "$1" | sed -n "s/.* $2 \\([^ ]*\\).*/\\1/p"
}

# The most telling line of a failed run: a harness check, a sanitizer
# report, or libFuzzer's own verdict.
reason_of() {
    line=$(grep -m 1 -E '^fuzz_[a-z0-9_]+: ' "$1")
    [ -n "$line" ] || line=$(grep -m 1 -E 'runtime error|^==[0-9]+==ERROR: (Address|Leak|Undefined)' "$1")
    [ -n "$line" ] || line=$(grep -m 1 -E '^==[0-9]+==.*ERROR|ERROR: libFuzzer|^SUMMARY' "$1")
    printf '%s\n' "${line:-see log}"
}

results="$work/results"
: >"$results"
failures="$work/failures"
: >"$failures"
failed=0
for name in $TARGETS; do
    corpus="$work/corpus-$name"
    artifacts="$out/artifacts/$name"
    log="$out/logs/$name.log"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$here/corpus/$name" ]; then
        cp "$here/corpus/$name"/* "$corpus"/ 2>/dev/null
    fi
    regressions="$here/regressions/$name"
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions" 2>/dev/null)" ]; then
        echo "replaying $regressions"
        if ! "$out/$name" -timeout=10 -rss_limit_mb=2048 "$regressions"/* \
            </dev/null >"$out/logs/$name.regressions.log" 2>&1; then
            failed=1
            what=$(reason_of "$out/logs/$name.regressions.log")
            unit=$(sed -n 's/^Running: //p' "$out/logs/$name.regressions.log" | tail -n 1)
            {
                echo "$name: saved reproducer fails: $what"
                echo "    input: ${unit:-$regressions}"
                echo "    log:   $out/logs/$name.regressions.log"
            } >>"$failures"
        fi
    fi
    echo "running $name for ${seconds}s"
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    "$out/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_FLAGS:-} \
        "$corpus" </dev/null >"$log" 2>&1
    rc=$?

    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(field "$status" 'cov:')
    ft=$(field "$status" 'ft:')
    corp=$(field "$status" 'corp:')
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    [ -n "$rate" ] || rate=$(field "$status" 'exec/s:')
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAIL($rc)"
        failed=1
        unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        what=$(reason_of "$log")
        {
            echo "$name: exit $rc: $what"
            echo "    input: ${unit:-(none written)}"
            echo "    log:   $log"
        } >>"$failures"
    fi
    printf '%-14s %-9s %12s %9s %7s %8s %10s\n' "$name" "$result" "${execs:--}" "${rate:--}" \
        "${cov:--}" "${ft:--}" "${corp:--}" >>"$results"
done

printf '\n%-14s %-9s %12s %9s %7s %8s %10s\n' target result execs execs/s cov ft corpus
cat "$results"
if [ "$failed" -ne 0 ]; then
    printf '\nfailures:\n'
    cat "$failures"
    exit 1
fi
exit 0
