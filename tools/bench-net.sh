#!/usr/bin/env bash
# Network path benchmark, side by side in one run: two mcefad daemons on this
# machine talking through libfabric (tcp;ofi_rxm over loopback by default)
# against tools/fi-rma-bench, a minimal two-process libfabric program with the
# same provider, block size and window. Also: 4 KiB op rate, the first-submit
# probe (cold and after warmup), and the idle CPU of a daemon.
#
#   tools/bench-net.sh [BUILD_DIR]
#   PROVIDER='tcp;ofi_rxm' NIC=lo BLOCK=1048576 BATCH=32 THREADS=2 DURATION=5 ROUNDS=3 tools/bench-net.sh
#
# LATENCY=1: only the latency of one write at a time (batch 1, 1 thread,
# BLOCK bytes), ROUNDS rounds on one daemon pair, with daemon A's CPU use.
# MCEFAD=path runs another mcefad binary (a build before a change).
set -euo pipefail

B=${1:-build}
MCEFAD=${MCEFAD:-$B/mcefad}
PROVIDER=${PROVIDER:-tcp;ofi_rxm}
NIC=${NIC:-lo}
BLOCK=${BLOCK:-1048576}
BATCH=${BATCH:-32}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
BUFFER=${BUFFER:-268435456}
WINDOW=$((BATCH * THREADS))
PA=$((21000 + RANDOM % 5000))
PB=$((PA + 1))

. "$(dirname "$0")/bench-common.sh"
bench_setup bench-net
# Both sides run one rxm configuration: mcefad's defaults for these
# (rxm_buffer_size, rxm_msg_rx_size, rxm_cm_progress_interval_us), which it
# would set itself, go to fi-rma-bench too. Set in the environment, they
# apply to both.
export FI_OFI_RXM_BUFFER_SIZE=${FI_OFI_RXM_BUFFER_SIZE:-2048}
export FI_OFI_RXM_MSG_RX_SIZE=${FI_OFI_RXM_MSG_RX_SIZE:-128}
export FI_OFI_RXM_CM_PROGRESS_INTERVAL=${FI_OFI_RXM_CM_PROGRESS_INTERVAL:-1000}

start_pair() {
    "$MCEFAD" --socket_path="$dir/a.sock" --hostname=hosta --provider="$PROVIDER" --nics="$NIC" \
        --peer_port=$PA --peer_hosts="hostb=127.0.0.1:$PB" --log_level=warn --metrics_listen= 2>>"$dir/a.log" &
    pid_a=$!
    "$MCEFAD" --socket_path="$dir/b.sock" --hostname=hostb --provider="$PROVIDER" --nics="$NIC" \
        --peer_port=$PB --peer_hosts="hosta=127.0.0.1:$PA" --log_level=warn --metrics_listen= 2>>"$dir/b.log" &
    pid_b=$!
    pids+=("$pid_a" "$pid_b")
    for _ in $(seq 100); do [ -S "$dir/a.sock" ] && [ -S "$dir/b.sock" ] && break; sleep 0.05; done
    "$B/mcefa-bench" --mode=target --socket="$dir/b.sock" --buffer_size="$BUFFER" >"$dir/target.out" &
    pid_t=$!
    pids+=("$pid_t")
    for _ in $(seq 200); do grep -q '^segment:' "$dir/target.out" 2>/dev/null && break; sleep 0.05; done
    segment=$(awk '/^segment:/{print $2}' "$dir/target.out")
    [ -n "$segment" ] || { echo "bench-net: target did not start" >&2; cat "$dir"/*.log >&2; exit 1; }
}

stop_pair() {
    kill "$pid_t" "$pid_a" "$pid_b" 2>/dev/null || true
    wait "$pid_t" "$pid_a" "$pid_b" 2>/dev/null || true
    rm -f "$dir"/*.sock
}

daemon_run() { # op block batch
    "$B/mcefa-bench" --mode=initiator --socket="$dir/a.sock" --segment_id="$segment" --operation="$1" \
        --block_size="$2" --batch_size="$3" --threads="$THREADS" --buffer_size="$BUFFER" --duration="$DURATION" \
        --progress=false --json
}

base_run() { # op block window; its target busy-polls, so it runs only meanwhile
    "$B/fi-rma-bench" --mode=target --provider="$PROVIDER" --nic="$NIC" --buffer_size="$BUFFER" >"$dir/ft.out" &
    local ft=$!
    for _ in $(seq 200); do grep -q '^target' "$dir/ft.out" 2>/dev/null && break; sleep 0.05; done
    "$B/fi-rma-bench" --target="$(cat "$dir/ft.out")" --provider="$PROVIDER" --nic="$NIC" --operation="$1" \
        --block_size="$2" --window="$3" --buffer_size="$BUFFER" --duration="$DURATION" --json
    kill $ft
    wait $ft 2>/dev/null || true
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

if [ "${LATENCY:-0}" = 1 ]; then
    echo "mcefa write latency: provider $PROVIDER, NIC $NIC, $BLOCK-byte writes one at a time, ${DURATION}s x $ROUNDS rounds"
    echo "machine: $(nproc) cores, $(uname -r); daemon: $MCEFAD"
    start_pair
    printf '%-6s %10s %10s %10s %10s %10s %14s\n' round "p50 us" "p90 us" "p99 us" "max us" "writes/s" "daemon A CPU"
    for r in $(seq "$ROUNDS"); do
        c0=$(cpu_ticks "$pid_a")
        out=$("$B/mcefa-bench" --mode=initiator --socket="$dir/a.sock" --segment_id="$segment" --operation=write \
            --block_size="$BLOCK" --batch_size=1 --threads=1 --buffer_size="$BUFFER" --duration="$DURATION" \
            --progress=false --json)
        c1=$(cpu_ticks "$pid_a")
        printf '%-6s %10s %10s %10s %10s %10.0f %13s%%\n' "$r" "$(echo "$out" | num p50)" "$(echo "$out" | num p90)" \
            "$(echo "$out" | num p99)" "$(echo "$out" | num max)" "$(echo "$out" | num ops_per_s)" \
            "$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')"
    done
    exit 0
fi

echo "mcefa network benchmark: provider $PROVIDER, NIC $NIC, ${DURATION}s per figure, $ROUNDS rounds"
echo "machine: $(nproc) cores, $(uname -r); daemon: $THREADS threads x batch $BATCH; baseline window $WINDOW"

# First-submit probe: fresh daemons each time, so the first one is cold.
start_pair
cold=$("$B/mcefa-bench" --mode=probe --socket="$dir/a.sock" --segment_id="$segment" --block_size=$BLOCK --json)
stop_pair
start_pair
warm=$("$B/mcefa-bench" --mode=probe --socket="$dir/a.sock" --segment_id="$segment" --block_size=$BLOCK --warmup=true --json)

# Interleaved rounds: each figure of mcefad runs right after its baseline,
# so a round's ratio is taken under one machine load; the medians of the
# rounds are the figures (issue 15: medians of 3).
declare -A val
for r in $(seq "$ROUNDS"); do
    for op in write read; do
        val[base,$op,$r]=$(base_run $op "$BLOCK" "$WINDOW" | num throughput)
        val[mcefa,$op,$r]=$(daemon_run $op "$BLOCK" "$BATCH" | num throughput)
    done
    val[base,small,$r]=$(base_run write 4096 $((128 * THREADS)) | num ops_per_s)
    val[mcefa,small,$r]=$(daemon_run write 4096 128 | num ops_per_s)
done

# Idle CPU of daemon A: connected to its peer, no traffic.
sleep 1
t0=$(cpu_ticks "$pid_a")
sleep 5
t1=$(cpu_ticks "$pid_a")
idle=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz/5*100}')

# figure KIND: the per-round values and ratios, then their medians.
figure() {
    local k=$1 r b d ratios=() bs=() ds=()
    for r in $(seq "$ROUNDS"); do
        b=${val[base,$k,$r]} d=${val[mcefa,$k,$r]}
        bs+=("$b") ds+=("$d")
        ratios+=("$(awk -v d="$d" -v b="$b" 'BEGIN{printf "%.2f", (b > 0 ? d / b : 0)}')")
    done
    echo "$(median "${bs[@]}") $(median "${ds[@]}") $(median "${ratios[@]}") ${ratios[*]}"
}
printf '\n%-30s %14s %14s %8s  %s\n' "median of $ROUNDS rounds" "fi-rma-bench" "mcefad" "ratio" "ratio per round"
for op in write read; do
    read -r b d ratio per <<<"$(figure $op)"
    printf '%-30s %9.3f GB/s %9.3f GB/s %8s  %s\n' "$(($BLOCK / 1024)) KiB $op" "$b" "$d" "$ratio" "$per"
done
read -r b d ratio per <<<"$(figure small)"
printf '%-30s %11.0f /s %11.0f /s %8s  %s\n' "4 KiB writes, op rate" "$b" "$d" "$ratio" "$per"
echo
echo "first-submit probe, cold:          $cold"
echo "first-submit probe, after warmup:  $warm"
echo "daemon idle CPU (5 s, peer connected): ${idle}% of one core"
