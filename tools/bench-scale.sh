#!/usr/bin/env bash
# What a daemon costs with many NICs, and how long warming every NIC pair
# takes: two network namespaces ("hosts") joined by N veth pairs, every end
# on one /16 so that each local NIC pairs with each remote NIC, as EFA NICs
# of one fabric do. Prints per daemon: start time, threads, RSS and open
# descriptors and CPU time at start and after the warmup of N x N pairs, the
# warmup time and the first submits (tcp;ofi_rxm; needs root and iproute2). The
# namespaces are removed on every exit.
#
#   tools/bench-scale.sh [N] [BUILD_DIR]        (N: 1..64, default 16)
#   ROUNDS=3 tools/bench-scale.sh 16             (three runs and their medians)
#
# MCEFAD=path runs another mcefad binary (a build before a change); the
# daemons get the caller's environment (MCEFAD_*, FI_* settings).
set -euo pipefail

N=${1:-16}
B=${2:-build}
MCEFAD=${MCEFAD:-$B/mcefad}
[ "$N" -ge 1 ] && [ "$N" -le 64 ] || { echo "bench-scale: N must be 1..64" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-scale: needs root (network namespaces)" >&2; exit 2; }
# ROUNDS=K: K whole runs, each printed, then the medians (make bench: 3).
if [ "${ROUNDS:-1}" -gt 1 ]; then
    . "$(dirname "$0")/bench-common.sh"
    w=() rs=() rw=()
    for _ in $(seq "$ROUNDS"); do
        out=$(ROUNDS=1 "$0" "$N" "$B")
        echo "$out"
        w+=("$(sed -n 's/^warmup: \([0-9.]*\) ms.*/\1/p' <<<"$out")")
        rs+=("$(awk '/^host a at start/{print $8}' <<<"$out")")
        rw+=("$(awk '/^host a after warmup/{print $8}' <<<"$out")")
    done
    echo "median of $ROUNDS runs, $N NICs a host: warmup of $((N * N)) pairs $(median "${w[@]}") ms;" \
        "host a RSS $(median "${rs[@]}") MiB at start, $(median "${rw[@]}") MiB after warmup"
    exit 0
fi
for f in "$MCEFAD" "$B/mcefa-bench"; do
    [ -x "$f" ] || { echo "bench-scale: $f not built; run make first" >&2; exit 1; }
done
command -v ip >/dev/null || { echo "bench-scale: needs iproute2" >&2; exit 2; }

id=$$
nsa="mcefa-scale-a-$id" nsb="mcefa-scale-b-$id"
dir=$(mktemp -d /tmp/mcefa-scale-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$nsa" 2>/dev/null || true
    ip netns del "$nsb" 2>/dev/null || true
    # A veth made but not yet moved (a failure in the middle of the set-up)
    # is still here; those in the namespaces went with them.
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^ms${id}[ab]"); do
        ip link del "$l" 2>/dev/null || true
    done
    rm -rf "$dir"
}
# A signal ends the script, so cleanup runs once, on EXIT.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$nsa"
ip netns add "$nsb"
nics_a= nics_b=
for k in $(seq 0 $((N - 1))); do
    a="ms${id}a$k" b="ms${id}b$k"
    ip link add "$a" type veth peer name "$b"
    ip link set "$a" netns "$nsa"
    ip link set "$b" netns "$nsb"
    ip -n "$nsa" addr add "10.231.1.$((k + 1))/16" dev "$a"
    ip -n "$nsb" addr add "10.231.2.$((k + 1))/16" dev "$b"
    ip -n "$nsa" link set "$a" up
    ip -n "$nsb" link set "$b" up
    nics_a="${nics_a:+$nics_a,}$a" nics_b="${nics_b:+$nics_b,}$b"
done
for ns in "$nsa" "$nsb"; do
    ip -n "$ns" link set lo up
    # Any NIC answers for every address of its host (one fabric, one subnet).
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
done

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/peer.secret"
chmod 600 "$dir/peer.secret"
pa=17650 pb=17650
now_ms() { date +%s%3N; }

start_ms=0 start_pid=0
start() { # ns name nics peer peer_addr sock; sets start_ms and start_pid
    local t0 t1
    t0=$(now_ms)
    ip netns exec "$1" "$MCEFAD" --socket_path="$6" --provider='tcp;ofi_rxm' --nics="$3" --hostname="$2" \
        --peer_port=$pa --peer_hosts="$4=$5:$pb" --peer_secret_file="$dir/peer.secret" --metrics_listen= \
        --log_level=warn 2>>"$dir/$2.log" &
    start_pid=$!
    pids+=("$start_pid")
    for _ in $(seq 600); do [ -S "$6" ] && break; sleep 0.05; done
    [ -S "$6" ] || { echo "bench-scale: $2 did not start:" >&2; cat "$dir/$2.log" >&2; exit 1; }
    t1=$(now_ms)
    start_ms=$((t1 - t0))
}

# The daemon's pid inside "ip netns exec" is the exec'd mcefad itself.
report() { # label sock pid
    local pid=$3
    local thr rss fds
    thr=$(awk '/^Threads:/{print $2}' "/proc/$pid/status")
    rss=$(awk '/^VmRSS:/{printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    # CPU time so far (user + system): unlike the times, it hardly depends
    # on what else the machine runs.
    cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1000 / hz}' "/proc/$pid/stat")
    printf '%-26s threads %4s   RSS %8s MiB   fds %5s   CPU %6s ms\n' "$1" "$thr" "$rss" "$fds" "$cpu"
}

echo "bench-scale: $N NICs a host, tcp;ofi_rxm over veth pairs on one /16 (${N}x$N = $((N * N)) NIC pairs)"
start "$nsa" scalea "$nics_a" scaleb 10.231.2.1 "$dir/a.sock"
ms_a=$start_ms pid_a=$start_pid
start "$nsb" scaleb "$nics_b" scalea 10.231.1.1 "$dir/b.sock"
ms_b=$start_ms pid_b=$start_pid
printf 'start (to socket listening)  host a %s ms, host b %s ms\n' "$ms_a" "$ms_b"
report "host a at start" "$dir/a.sock" "$pid_a"
report "host b at start" "$dir/b.sock" "$pid_b"

"$B/mcefa-bench" --mode=target --socket="$dir/b.sock" --buffer_size=16777216 >"$dir/target.out" &
pids+=($!)
for _ in $(seq 200); do grep -q '^segment:' "$dir/target.out" 2>/dev/null && break; sleep 0.05; done
seg=$(awk '/^segment:/{print $2}' "$dir/target.out")
[ -n "$seg" ] || { echo "bench-scale: target did not start" >&2; cat "$dir/scaleb.log" >&2; exit 1; }

"$B/mcefa-bench" --mode=probe --socket="$dir/a.sock" --segment_id="$seg" --block_size=4096 --warmup=true
report "host a after warmup" "$dir/a.sock" "$pid_a"
report "host b after warmup" "$dir/b.sock" "$pid_b"
