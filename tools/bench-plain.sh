#!/usr/bin/env bash
# Plain host memory (mmap'd process memory, as numpy or torch CPU tensors)
# next to managed memory (mcefa_alloc memfds), side by side in one run:
# same-host and cross-daemon (two mcefad on this machine over tcp;ofi_rxm on
# lo), writes of 1 MiB and 64 KiB blocks. Managed and plain rounds
# alternate; each line prints the median of ROUNDS and the plain/managed
# ratio.
#
#   tools/bench-plain.sh [BUILD_DIR]
#   PROVIDER='tcp;ofi_rxm' NIC=lo BATCH=16 THREADS=2 DURATION=2 ROUNDS=3 tools/bench-plain.sh
set -euo pipefail

B=${1:-build}
PROVIDER=${PROVIDER:-tcp;ofi_rxm}
NIC=${NIC:-lo}
BATCH=${BATCH:-16}
THREADS=${THREADS:-2}
DURATION=${DURATION:-2}
ROUNDS=${ROUNDS:-3}
BUFFER=${BUFFER:-67108864}
PA=$((21000 + RANDOM % 5000))
PB=$((PA + 1))

for f in "$B/mcefad" "$B/mcefa-bench"; do
    [ -x "$f" ] || { echo "bench-plain: $f not built; run make first" >&2; exit 1; }
done
. "$(dirname "$0")/bench-common.sh"
bench_setup bench-plain

"$B/mcefad" --socket_path="$dir/a.sock" --hostname=hosta --provider="$PROVIDER" --nics="$NIC" \
    --peer_port=$PA --peer_hosts="hostb=127.0.0.1:$PB" --log_level=warn --metrics_listen= 2>>"$dir/a.log" &
pids+=($!)
"$B/mcefad" --socket_path="$dir/b.sock" --hostname=hostb --provider="$PROVIDER" --nics="$NIC" \
    --peer_port=$PB --peer_hosts="hosta=127.0.0.1:$PA" --log_level=warn --metrics_listen= 2>>"$dir/b.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/a.sock" ] && [ -S "$dir/b.sock" ] && break; sleep 0.05; done

# Targets: managed and plain memory on each daemon; their segment names.
declare -A seg
for where in a b; do
    for kind in managed plain; do
        plain=false
        [ $kind = plain ] && plain=true
        out="$dir/t-$where-$kind.out"
        "$B/mcefa-bench" --mode=target --socket="$dir/$where.sock" --buffer_size="$BUFFER" \
            --plain_memory=$plain >"$out" &
        pids+=($!)
        for _ in $(seq 200); do grep -q '^segment:' "$out" 2>/dev/null && break; sleep 0.05; done
        seg[$where-$kind]=$(awk '/^segment:/{print $2}' "$out")
        [ -n "${seg[$where-$kind]}" ] || { echo "bench-plain: target did not start" >&2; cat "$dir"/*.log >&2; exit 1; }
    done
done

run() { # kind target-daemon block -> MB/s
    local plain=false
    [ "$1" = plain ] && plain=true
    "$B/mcefa-bench" --mode=initiator --socket="$dir/a.sock" --segment_id="${seg[$2-$1]}" --operation=write \
        --block_size="$3" --batch_size="$BATCH" --threads="$THREADS" --buffer_size="$BUFFER" \
        --duration="$DURATION" --plain_memory=$plain --progress=false --json >"$dir/run.json"
    awk -v b="$(num bytes <"$dir/run.json")" -v d="$(num duration_s <"$dir/run.json")" 'BEGIN{printf "%.1f\n", b/d/1e6}'
}

median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

echo "mcefa plain vs managed host memory: provider $PROVIDER, NIC $NIC, writes, $THREADS threads x batch $BATCH,"
echo "${DURATION}s per figure, median of $ROUNDS interleaved rounds; machine: $(nproc) cores, $(uname -r)"
printf '%-22s %8s %14s %14s %8s\n' path block "managed MB/s" "plain MB/s" ratio
for where in a b; do
    path="same host"
    [ $where = b ] && path="cross-daemon (staged)"
    for block in 1048576 65536; do
        m=() p=()
        for _ in $(seq "$ROUNDS"); do
            m+=("$(run managed $where $block)")
            p+=("$(run plain $where $block)")
        done
        mm=$(printf '%s\n' "${m[@]}" | median)
        pm=$(printf '%s\n' "${p[@]}" | median)
        printf '%-22s %8s %14.0f %14.0f %8.2f\n' "$path" "$block" "$mm" "$pm" "$(awk -v a="$pm" -v b="$mm" 'BEGIN{print (b>0)?a/b:0}')"
    done
done
