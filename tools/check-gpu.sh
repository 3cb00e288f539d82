#!/usr/bin/env bash
# make check-gpu: the GPU suite against the real CUDA driver, then the GPU
# benchmarks, printing figures. Needs a GPU; fails, saying why, without one.
# On a machine without the build's libraries, the .deb files packed by
# tools/gpu-bundle.sh (BUILD_DIR/gpu-bundle) are unpacked into a private
# prefix first. See docs/gpu.md.
#
#   tools/check-gpu.sh [BUILD_DIR]
#   DURATION=5 BUFFER=1073741824 tools/check-gpu.sh build
set -uo pipefail
B=${1:-build}
DURATION=${DURATION:-5}
BUFFER=${BUFFER:-1073741824}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
for f in "$B/mcefad" "$B/mcefa-bench" "$B/tests/check_gpu" "$B/tests/check_stream"; do
    [ -x "$f" ] || { echo "check-gpu: $f not built; run make first" >&2; exit 1; }
done

missing() { ldd "$B/mcefad" "$B/mcefa-bench" "$B/tests/check_gpu" 2>&1 | grep 'not found' | sort -u; }
if [ -n "$(missing)" ]; then
    bundle=${MCEFA_GPU_BUNDLE:-$B/gpu-bundle}
    prefix=$(mktemp -d /tmp/mcefa-gpu-prefix-XXXXXX)
    [ -d "$bundle/debs" ] || { echo "check-gpu: libraries missing and no $bundle/debs (tools/gpu-bundle.sh):"; missing; exit 1; }
    for d in "$bundle"/debs/*.deb; do
        if command -v dpkg >/dev/null; then
            dpkg -x "$d" "$prefix"
        else # not Debian-like: a .deb is an ar archive around a tarball
            (cd "$prefix" && ar p "$d" "$(ar t "$d" | grep '^data.tar')" | tar -x -f - 2>/dev/null ||
                ar p "$d" "$(ar t "$d" | grep '^data.tar')" | unxz | tar -x -f -)
        fi
    done
    export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if [ -n "$(missing)" ]; then echo "check-gpu: still missing after unpacking $bundle:"; missing; exit 1; fi
    echo "check-gpu: libraries from $bundle unpacked into $prefix"
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L

status=0
echo "=== GPU suite (real driver)"
out=$(MCEFA_TEST_GPU=real MCEFA_BUILD="$B" timeout 300 "$B/tests/check_gpu" 2>&1)
rc=$?
echo "$out"
if grep -q 'skipped: no usable GPU' <<<"$out"; then
    echo "check-gpu: FAILED: no usable GPU here"
    exit 1
fi
[ $rc -eq 0 ] || status=1
echo "=== stream-ordered transfers (real driver)"
MCEFA_TEST_GPU=real MCEFA_BUILD="$B" timeout 120 "$B/tests/check_stream" || status=1

echo "=== GPU benchmarks (${DURATION}s each)"
dir=$(mktemp -d /tmp/mcefa-gpu-bench-XXXXXX)
daemon_pid= target_pid=
cleanup() {
    [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
"$B/mcefad" --socket_path="$dir/s.sock" --provider=none --copy_threads=4 --log_level=warn --metrics_listen= \
    2>>"$dir/mcefad.log" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
bench() { "$B/mcefa-bench" --socket="$dir/s.sock" --duration="$DURATION" --progress=false "$@"; }
for blk in 67108864 4194304; do
    echo "--- GPU to GPU, block $blk"
    bench --mode=gpu_local --gpu_id=0 --block_size=$blk --batch_size=8 --threads=4 --buffer_size="$BUFFER" ||
        status=1
done
# Host <-> GPU: a GPU target, a host-memory initiator.
bench --mode=target --use_vram=true --gpu_id=0 --buffer_size="$BUFFER" >"$dir/target.out" &
target_pid=$!
for _ in $(seq 200); do grep -q '^segment:' "$dir/target.out" 2>/dev/null && break; sleep 0.05; done
seg=$(awk '/^segment:/{print $2}' "$dir/target.out")
if [ -z "$seg" ]; then
    echo "check-gpu: the GPU target did not start"; cat "$dir/mcefad.log"; status=1
else
    for op in write read; do
        echo "--- host to GPU ($op: $([ $op = write ] && echo H2D || echo D2H)), block 16777216"
        bench --mode=initiator --segment_id="$seg" --operation=$op --block_size=16777216 --batch_size=4 --threads=4 \
            --buffer_size="$BUFFER" --check=true || status=1
    done
fi
# Across daemons (two on this machine over tcp;ofi_rxm on lo, no FI_HMEM):
# GPU to GPU through the staging buffers, next to host memory to host memory
# on the same pair in the same run (issue 14's target: >= 0.8x).
if fi_info -p 'tcp;ofi_rxm' >/dev/null 2>&1; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/peer.secret"
    chmod 600 "$dir/peer.secret"
    pa=$((21000 + RANDOM % 5000))
    common=(--provider='tcp;ofi_rxm' --nics=lo --peer_secret_file="$dir/peer.secret" --log_level=warn --metrics_listen=)
    "$B/mcefad" --socket_path="$dir/a.sock" --hostname=hosta --peer_port=$pa --peer_hosts="hostb=127.0.0.1:$((pa + 1))" \
        "${common[@]}" 2>>"$dir/mcefad.log" &
    net_a=$!
    "$B/mcefad" --socket_path="$dir/b.sock" --hostname=hostb --peer_port=$((pa + 1)) --peer_hosts="hosta=127.0.0.1:$pa" \
        "${common[@]}" 2>>"$dir/mcefad.log" &
    net_b=$!
    for _ in $(seq 100); do [ -S "$dir/a.sock" ] && [ -S "$dir/b.sock" ] && break; sleep 0.05; done
    net_rate() { # vram(true|false) -> MB/s of 4 MiB writes A -> B, data checked
        "$B/mcefa-bench" --mode=target --socket="$dir/b.sock" --use_vram=$1 --buffer_size=268435456 >"$dir/nt.out" &
        local t=$!
        for _ in $(seq 200); do grep -q '^segment:' "$dir/nt.out" 2>/dev/null && break; sleep 0.05; done
        "$B/mcefa-bench" --mode=initiator --socket="$dir/a.sock" --segment_id="$(awk '/^segment:/{print $2}' "$dir/nt.out")" \
            --operation=write --block_size=4194304 --batch_size=4 --threads=2 --buffer_size=268435456 --use_vram=$1 \
            --duration="$DURATION" --check=true --progress=false --json >"$dir/nr.json" || status=1
        kill $t; wait $t 2>/dev/null
        local b d
        b=$(sed -n 's/.*"bytes":\([0-9.]*\).*/\1/p' "$dir/nr.json")
        d=$(sed -n 's/.*"duration_s":\([0-9.]*\).*/\1/p' "$dir/nr.json")
        awk -v b="$b" -v d="$d" 'BEGIN{printf "%.0f\n", (d>0)?b/d/1e6:0}'
    }
    host=$(net_rate false)
    gpu=$(net_rate true)
    echo "--- across daemons (tcp;ofi_rxm on lo), 4 MiB writes: host->host $host MB/s, GPU->GPU (staged) $gpu MB/s," \
        "ratio $(awk -v g="$gpu" -v h="$host" 'BEGIN{printf "%.2f", (h>0)?g/h:0}')"
    kill $net_a $net_b; wait $net_a $net_b 2>/dev/null
else
    echo "--- across daemons: skipped (libfabric's tcp;ofi_rxm provider is not available here)"
fi
echo "--- host memcpy (yardstick)"
bench --mode=memcpy --block_size=16777216 --batch_size=4 --buffer_size="$BUFFER"
[ $status -eq 0 ] && echo "check-gpu: passed" || echo "check-gpu: FAILED (see above; daemon log: $dir/mcefad.log)"
[ $status -eq 0 ] || cat "$dir/mcefad.log"
exit $status
