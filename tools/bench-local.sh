#!/usr/bin/env bash
# Same-host throughput through mcefad next to single-thread memcpy, in one
# run: starts a private daemon, a target process and initiator processes,
# and prints each figure with its ratio to memcpy.
#
#   tools/bench-local.sh [BUILD_DIR]
#   BLOCK=1048576 BATCH=32 THREADS=2 DURATION=5 BUFFER=268435456 tools/bench-local.sh
#
# THREADS may be a list ("1 2 4"): one line per count of submitting
# threads. BASELINE=DIR (another build's mcefad and mcefa-bench, say of
# the commit before a change) measures that build beside this one, taking
# turns; SOCKET=1 adds this build with the submission ring off in the
# client (MCEFA_SUBMIT_RING=0: every request over the socket). REPS=N
# repeats every figure N times, taking turns, and prints medians.
set -euo pipefail

B=${1:-build}
BLOCK=${BLOCK:-1048576}
BATCH=${BATCH:-32}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5}
BUFFER=${BUFFER:-268435456}
COPY_THREADS_LIST=${COPY_THREADS_LIST:-"1 2"}
BASELINE=${BASELINE:-}
SOCKET=${SOCKET:-0}
REPS=${REPS:-1}

variants="after"
[ "$SOCKET" = 1 ] && variants="$variants socket"
[ -n "$BASELINE" ] && variants="before $variants"
build_of() { if [ "$1" = before ]; then echo "$BASELINE"; else echo "$B"; fi; }
for v in $variants; do
    for f in "$(build_of "$v")/mcefad" "$(build_of "$v")/mcefa-bench"; do
        [ -x "$f" ] || { echo "bench-local: $f not built; run make first" >&2; exit 1; }
    done
done
. "$(dirname "$0")/bench-common.sh"
bench_setup bench
daemon_pid= target_pid=

throughput() { num throughput; }

memcpy_rate() {
    "$B/mcefa-bench" --mode=memcpy --block_size="$BLOCK" --batch_size="$BATCH" --buffer_size="$BUFFER" \
        --duration="$DURATION" --json | throughput
}

start_daemon() { # $1 = build, $2 = copy threads
    "$1/mcefad" --socket_path="$dir/s.sock" --provider=none --copy_threads="$2" --log_level=warn --metrics_listen= \
        2>>"$dir/mcefad.log" &
    daemon_pid=$!
    pids+=("$daemon_pid")
    for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
    "$1/mcefa-bench" --mode=target --socket="$dir/s.sock" --buffer_size="$BUFFER" >"$dir/target.out" &
    target_pid=$!
    pids+=("$target_pid")
    for _ in $(seq 200); do grep -q '^segment:' "$dir/target.out" 2>/dev/null && break; sleep 0.05; done
    segment=$(awk '/^segment:/{print $2}' "$dir/target.out")
    [ -n "$segment" ] || { echo "bench-local: target did not start" >&2; cat "$dir/mcefad.log" >&2; exit 1; }
}

stop_daemon() {
    kill "$target_pid" "$daemon_pid"
    wait "$target_pid" "$daemon_pid" 2>/dev/null || true
    target_pid= daemon_pid=
    rm -f "$dir/s.sock"
}

run_op() { # $1 = build, $2 = read|write, $3 = threads, $4 = ring (0: off in the client)
    local ring=()
    [ "$4" = 0 ] && ring=(env MCEFA_SUBMIT_RING=0)
    "${ring[@]}" "$1/mcefa-bench" --mode=initiator --socket="$dir/s.sock" --segment_id="$segment" --operation="$2" \
        --block_size="$BLOCK" --batch_size="$BATCH" --threads="$3" --buffer_size="$BUFFER" \
        --duration="$DURATION" --progress=false --json | throughput
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "mcefa same-host benchmark: block $BLOCK, batch $BATCH, initiator threads $THREADS, ${DURATION}s per figure," \
    "median of $REPS"
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
[ -n "$BASELINE" ] && echo "before: $BASELINE   after: $B"
declare -A res
mem=""
for rep in $(seq "$REPS"); do
    mem="$mem $(memcpy_rate)"
    for ct in $COPY_THREADS_LIST; do
        for v in $variants; do
            start_daemon "$(build_of "$v")" "$ct"
            for op in write read; do
                for th in $THREADS; do
                    r=$(run_op "$(build_of "$v")" "$op" "$th" "$([ "$v" = socket ] && echo 0 || echo 1)")
                    res[$v,$ct,$op,$th]="${res[$v,$ct,$op,$th]:-} $r"
                done
            done
            stop_daemon
        done
    done
done
mem="$mem $(memcpy_rate)"
memcpy=$(echo "$mem" | median)
printf '\n%-46s %10s %10s %10s\n' "what" "GB/s" "M op/s" "vs memcpy"
printf '%-46s %10.3f %10.3f %10s\n' "memcpy, 1 thread (median of $((REPS + 1)))" "$memcpy" \
    "$(awk -v v="$memcpy" -v b="$BLOCK" 'BEGIN{print v * 1e9 / b / 1e6}')" "1.00"
for ct in $COPY_THREADS_LIST; do
    for op in write read; do
        for th in $THREADS; do
            for v in $variants; do
                m=$(echo "${res[$v,$ct,$op,$th]}" | median)
                label="mcefad $op, copy_threads=$ct, threads=$th"
                [ "$v" != after ] || [ -n "$BASELINE$([ "$SOCKET" = 1 ] && echo s)" ] && label="$label, $v"
                printf '%-46s %10.3f %10.3f %10s\n' "$label" "$m" \
                    "$(awk -v v="$m" -v b="$BLOCK" 'BEGIN{print v * 1e9 / b / 1e6}')" \
                    "$(awk -v v="$m" -v m="$memcpy" 'BEGIN{printf "%.2f", v/m}')"
            done
        done
    done
done
