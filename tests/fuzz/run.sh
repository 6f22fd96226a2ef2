#!/bin/sh
# Runs the fuzz targets built by `./configure CC=clang --enable-fuzzing &&
# make` (this is what `make fuzz` calls). For each target it replays the
# saved reproducers (tests/fuzz/regressions/<target>/, when any), then fuzzes
# for SECONDS on a temporary copy of its seed corpus (the checked-in corpus
# is never written). Up to JOBS targets run at once (default: the number of
# processors). At the end it prints a table of executions per second and
# coverage: cov and ft from libFuzzer's final status line, and the edges
# instrumented in the binary. Exits non-zero when any target crashes, leaks,
# times out or runs out of memory; the input that did it is kept under
# OUTDIR/artifacts/<target>/ and named in the output together with the
# reason, and each target's full log is kept in OUTDIR/logs/<target>.log.
#
# usage: tests/fuzz/run.sh [-j JOBS] SECONDS BINDIR [OUTDIR]
#   BINDIR  where the fuzz_* binaries are (tests/fuzz of the build tree)
#   OUTDIR  logs and artifacts (default BINDIR/out)
# environment: TARGETS (names to run, default all), FUZZ_FLAGS (extra
# libFuzzer flags, e.g. -dict=FILE)
set -u

here=$(cd "$(dirname "$0")" && pwd)
usage() {
    echo "usage: $0 [-j JOBS] SECONDS BINDIR [OUTDIR]" >&2
    exit 2
}
jobs=
while getopts j: option; do
    case "$option" in
    j) jobs=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
seconds=$1
bindir=$2
out=${3:-"$bindir/out"}
[ -n "$jobs" ] || jobs=$(nproc 2>/dev/null || echo 1)
for number in "$seconds" "$jobs"; do
    case "$number" in
    '' | *[!0-9]*) echo "$0: SECONDS and JOBS must be whole numbers" >&2; exit 2 ;;
    esac
done
[ "$jobs" -ge 1 ] || jobs=1

TARGETS=${TARGETS:-"fuzz_wsframe fuzz_utf8 fuzz_http fuzz_envelope fuzz_auth fuzz_config"}
for name in $TARGETS; do
    if [ ! -x "$bindir/$name" ]; then
        echo "$0: $bindir/$name not built (./configure CC=clang --enable-fuzzing && make)" >&2
        exit 2
    fi
done
bindir=$(cd "$bindir" && pwd)
mkdir -p "$out/logs" "$out/artifacts" || exit 2
out=$(cd "$out" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/wsbroker-fuzz.XXXXXX") || exit 2
lanes=
# Interrupted: stop the lanes (each stops its fuzzer) before cleaning up,
# so that no lane goes on to its next target.
# shellcheck disable=SC2317 # called from the traps
stop() {
    trap - INT TERM
    # shellcheck disable=SC2086 # a list of process ids
    [ -z "$lanes" ] || kill $lanes 2>/dev/null
    wait
    exit "$1"
}
trap 'rm -rf "$work"' EXIT
trap 'stop 130' INT
trap 'stop 143' TERM

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

# Replays and fuzzes one target; writes its table row to $work/<name>.row
# and, when it fails, what failed to $work/<name>.failure.
run_target() {
    name=$1
    corpus="$work/corpus-$name"
    artifacts="$out/artifacts/$name"
    log="$out/logs/$name.log"
    row="$work/$name.row"
    failure="$work/$name.failure"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$here/corpus/$name" ]; then
        cp "$here/corpus/$name"/* "$corpus"/ 2>/dev/null
    fi
    regressions="$here/regressions/$name"
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions" 2>/dev/null)" ]; then
        replay_log="$out/logs/$name.regressions.log"
        if ! "$bindir/$name" -timeout=10 -rss_limit_mb=2048 "$regressions"/* \
            </dev/null >"$replay_log" 2>&1; then
            unit=$(sed -n 's/^Running: //p' "$replay_log" | tail -n 1)
            {
                echo "$name: saved reproducer fails: $(reason_of "$replay_log")"
                echo "    input: ${unit:-$regressions}"
                echo "    log:   $replay_log"
            } >>"$failure"
        fi
    fi
    echo "running $name for ${seconds}s"
    # In the background so that the lane's TERM trap can stop it at once.
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    "$bindir/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_FLAGS:-} \
        "$corpus" </dev/null >"$log" 2>&1 &
    fuzzer=$!
    wait "$fuzzer"
    rc=$?
    fuzzer=

    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(field "$status" 'cov:')
    ft=$(field "$status" 'ft:')
    corp=$(field "$status" 'corp:')
    edges=$(sed -n 's/^INFO: Loaded [0-9]* modules* *(\([0-9]*\) inline 8-bit counters).*/\1/p' "$log" | head -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    [ -n "$rate" ] || rate=$(field "$status" 'exec/s:')
    if [ "$rc" -ne 0 ]; then
        unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        {
            echo "$name: exit $rc: $(reason_of "$log")"
            echo "    input: ${unit:-(none written)}"
            echo "    log:   $log"
        } >>"$failure"
    fi
    if [ -e "$failure" ]; then
        result="FAIL($rc)"
    else
        result=ok
    fi
    printf '%-14s %-9s %12s %9s %7s %7s %8s %10s\n' "$name" "$result" "${execs:--}" \
        "${rate:--}" "${cov:--}" "${edges:--}" "${ft:--}" "${corp:--}" >"$row"
    echo "finished $name: $result"
}

# The targets are dealt round-robin to JOBS lanes; each lane runs its
# targets one after the other. Every run takes SECONDS, so the lanes end
# together.
lane=0
while [ "$lane" -lt "$jobs" ]; do
    (
        fuzzer=
        trap '[ -z "$fuzzer" ] || { kill "$fuzzer"; wait "$fuzzer"; } 2>/dev/null; exit 143' TERM
        trap '' INT
        index=0
        for name in $TARGETS; do
            [ $((index % jobs)) -eq "$lane" ] && run_target "$name"
            index=$((index + 1))
        done
    ) &
    lanes="$lanes $!"
    lane=$((lane + 1))
done
wait

printf '\n%-14s %-9s %12s %9s %7s %7s %8s %10s\n' target result execs execs/s cov edges ft corpus
failed=0
for name in $TARGETS; do
    if [ -e "$work/$name.row" ]; then
        cat "$work/$name.row"
    else
        printf '%-14s %s\n' "$name" "no result (interrupted?)"
        failed=1
    fi
    [ -e "$work/$name.failure" ] && failed=1
done
if [ "$failed" -ne 0 ]; then
    printf '\nfailures:\n'
    cat "$work"/*.failure 2>/dev/null
    exit 1
fi
exit 0
