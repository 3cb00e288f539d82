#!/usr/bin/env bash
# Runs every Check suite given on the command line and prints one summary
# line per suite and a total. Exit status is non-zero if any suite failed.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
export MCEFA_SRCDIR="$here"
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
# Every daemon of this run authenticates its peers with one secret made
# here (tests about peer_auth itself name their own settings).
secret_dir=$(mktemp -d /tmp/mcefa-test-secret-XXXXXX)
trap 'rm -rf "$secret_dir"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_dir/peer.secret"
chmod 600 "$secret_dir/peer.secret"
export MCEFAD_PEER_SECRET_FILE="$secret_dir/peer.secret"
# Sanitized runs: leaks inside the libraries we link that are theirs, not
# ours (each explained there).
if [ "${SAN:-}" = 1 ]; then
    export LSAN_OPTIONS="suppressions=$here/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi
failed_suites=0
total_pass=0
total_fail=0
# run_suite NAME [ENV=VALUE...] BINARY
run_suite() {
    local name=$1
    shift
    echo "=== $name"
    out=$(env "$@" 2>&1)
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
}
for t in "$@"; do
    run_suite "$t" "$t"
done
# The GPU suite once more against the real CUDA driver: it skips, saying
# why, where there is no GPU (make check-gpu runs it where there is).
for t in "$@"; do
    case "$t" in
    */check_gpu | */check_stream) run_suite "$t (real driver)" MCEFA_TEST_GPU=real "$t" ;;
    esac
done
# The Python suites (pytest) drive real daemons through the binding.
PYTHON=${PYTHON:-python3}
B=${MCEFA_BUILD:-build}
echo "=== pytest tests/python"
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
    echo "pytest for $PYTHON is missing (install python3-pytest)"
    total_fail=$((total_fail + 1))
    failed_suites=$((failed_suites + 1))
else
    pre=
    if [ "${SAN:-}" = 1 ]; then
        # The extension is sanitized: the runtimes must load first. Python
        # itself leaks by design, so leak checks are for the daemon only.
        pre="$(${CC:-cc} -print-file-name=libasan.so):$(${CC:-cc} -print-file-name=libubsan.so)"
    fi
    out=$(cd "$here" && LD_PRELOAD=$pre ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$B/python" MCEFA_BUILD="$B" \
          "$PYTHON" -m pytest -q -p no:cacheprovider tests/python 2>&1)
    rc=$?
    echo "$out"
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ (passed|failed)' | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | awk '{s+=$1} END{print s+0}')
    f=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$line" | awk '{s+=$1} END{print s+0}')
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0}))
    if [ $rc -ne 0 ]; then
        failed_suites=$((failed_suites + 1))
        [ "${f:-0}" = 0 ] && total_fail=$((total_fail + 1))
    fi
fi

# The libFuzzer targets (make fuzz-build), a few seconds each on the
# committed seeds: one pass per target that found nothing.
echo "=== fuzz"
if [ -z "${FUZZ_TARGETS:-}" ]; then
    echo "fuzz: skipped (clang with libFuzzer not found; tools/install-deps.sh installs it)"
else
    fuzz_tmp=$(mktemp -d /tmp/mcefa-fuzz-XXXXXX)
    for t in $FUZZ_TARGETS; do
        mkdir -p "$fuzz_tmp/$t"
        # New inputs go to the scratch directory; a crash leaves its input
        # beside the build for tests/fuzz/corpus.
        out=$(cd "$here" && "$B/fuzz/fuzz_$t" -max_total_time="${FUZZ_CHECK_SECONDS:-3}" -timeout=10 \
              -artifact_prefix="$B/fuzz/crash-$t-" "$fuzz_tmp/$t" "tests/fuzz/corpus/$t" 2>&1)
        rc=$?
        if [ $rc -eq 0 ]; then
            echo "fuzz $t: passed ($(grep -E 'DONE' <<<"$out" | tail -1))"
            total_pass=$((total_pass + 1))
        else
            echo "$out" | tail -40
            echo "fuzz $t: FAILED (rc $rc; the input is under $B/fuzz/crash-$t-*)"
            total_fail=$((total_fail + 1))
            failed_suites=$((failed_suites + 1))
        fi
    done
    rm -rf "$fuzz_tmp"
fi

echo "$total_pass passed, $total_fail failed"
[ $failed_suites -eq 0 ]
