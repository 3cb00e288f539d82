#!/usr/bin/env bash
# Runs every Check suite given on the command line and prints one summary
# line per suite and a total. Exit status is non-zero if any suite failed.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
export MCEFA_SRCDIR="$here"
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
failed_suites=0
total_pass=0
total_fail=0
for t in "$@"; do
    echo "=== $t"
    out=$("$t" 2>&1)
    rc=$?
    echo "$out"
    # Check prints "NN%: Checks: N, Failures: F, Errors: E".
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -1)
    if [ -n "$line" ]; then
        n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
        e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
        total_pass=$((total_pass + n - f - e))
        total_fail=$((total_fail + f + e))
    fi
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        failed_suites=$((failed_suites + 1))
        [ -z "$line" ] && total_fail=$((total_fail + 1))
    fi
done
echo "$total_pass passed, $total_fail failed"
[ $failed_suites -eq 0 ]
