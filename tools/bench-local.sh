#!/usr/bin/env bash
# Same-host throughput through mcefad next to single-thread memcpy, in one
# run: starts a private daemon, a target process and initiator processes,
# and prints each figure with its ratio to memcpy.
#
#   tools/bench-local.sh [BUILD_DIR]
#   BLOCK=1048576 BATCH=32 THREADS=2 DURATION=5 BUFFER=268435456 tools/bench-local.sh
set -euo pipefail

B=${1:-build}
BLOCK=${BLOCK:-1048576}
BATCH=${BATCH:-32}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5}
BUFFER=${BUFFER:-268435456}
COPY_THREADS_LIST=${COPY_THREADS_LIST:-"1 2"}

for f in "$B/mcefad" "$B/mcefa-bench"; do
    [ -x "$f" ] || { echo "bench-local: $f not built; run make first" >&2; exit 1; }
done
dir=$(mktemp -d /tmp/mcefa-bench-XXXXXX)
daemon_pid= target_pid=
cleanup() {
    [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null || true
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
# With NICs the daemon authenticates peers (peer_auth=psk): give it a secret.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/peer.secret"
chmod 600 "$dir/peer.secret"
export MCEFAD_PEER_SECRET_FILE="$dir/peer.secret"

throughput() { sed -n 's/.*"throughput":\([0-9.]*\).*/\1/p'; }

memcpy_rate() {
    "$B/mcefa-bench" --mode=memcpy --block_size="$BLOCK" --batch_size="$BATCH" --buffer_size="$BUFFER" \
        --duration="$DURATION" --json | throughput
}

start_daemon() { # $1 = copy threads
    "$B/mcefad" --socket_path="$dir/s.sock" --provider=none --copy_threads="$1" --log_level=warn --metrics_listen= \
        2>>"$dir/mcefad.log" &
    daemon_pid=$!
    for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
    "$B/mcefa-bench" --mode=target --socket="$dir/s.sock" --buffer_size="$BUFFER" >"$dir/target.out" &
    target_pid=$!
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

run_op() { # $1 = read|write
    "$B/mcefa-bench" --mode=initiator --socket="$dir/s.sock" --segment_id="$segment" --operation="$1" \
        --block_size="$BLOCK" --batch_size="$BATCH" --threads="$THREADS" --buffer_size="$BUFFER" \
        --duration="$DURATION" --progress=false --json | throughput
}

echo "mcefa same-host benchmark: block $BLOCK, batch $BATCH, initiator threads $THREADS, ${DURATION}s per figure"
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
m1=$(memcpy_rate)
declare -A res
for ct in $COPY_THREADS_LIST; do
    start_daemon "$ct"
    res[write,$ct]=$(run_op write)
    res[read,$ct]=$(run_op read)
    stop_daemon
done
m2=$(memcpy_rate)
memcpy=$(awk -v a="$m1" -v b="$m2" 'BEGIN{printf "%.3f", (a+b)/2}')
printf '\n%-34s %10s %10s\n' "what" "GB/s" "vs memcpy"
printf '%-34s %10s %10s\n' "memcpy, 1 thread (mean of 2 runs)" "$memcpy" "1.00"
for ct in $COPY_THREADS_LIST; do
    for op in write read; do
        v=${res[$op,$ct]}
        printf '%-34s %10.3f %10s\n' "mcefad $op, copy_threads=$ct" "$v" \
            "$(awk -v v="$v" -v m="$memcpy" 'BEGIN{printf "%.2f", v/m}')"
    done
done
