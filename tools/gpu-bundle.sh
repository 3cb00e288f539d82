#!/usr/bin/env bash
# Packs what `make check-gpu` needs on a GPU machine that reaches no package
# registry: the Debian .deb files of every shared library the build links
# (unpacked there with dpkg -x into a private prefix by check-gpu.sh). Run
# here, after make, where apt can download.
#
#   tools/gpu-bundle.sh [BUILD_DIR]      -> BUILD_DIR/gpu-bundle/debs/*.deb
set -euo pipefail
B=${1:-build}
out="$B/gpu-bundle/debs"
mkdir -p "$out"
# The packages that own the libraries our binaries load (glibc excepted:
# the GPU machine has its own, and it must be as new as Debian 12's).
libs=$(ldd "$B/mcefad" "$B/mcefa-bench" "$B/tests/check_gpu" "$B/mcefactl" 2>/dev/null |
       awk '$3 ~ /^\// {print $3}' | sort -u)
pkgs=
owner() { dpkg -S "$1" 2>/dev/null | head -1 | cut -d: -f1; }
for l in $libs; do
    # dpkg knows each file by one of its names (merged /usr: /lib or
    # /usr/lib; the soname link or the file it points to).
    r=$(readlink -f "$l")
    p=
    for cand in "$l" "$r" "${l/#\/usr\/lib/\/lib}" "${r/#\/usr\/lib/\/lib}" "${l/#\/lib/\/usr\/lib}"; do
        p=$(owner "$cand") && [ -n "$p" ] && break
    done
    case "$p" in "" | libc6 | libgcc-s1) continue ;; esac
    pkgs="$pkgs $p"
done
pkgs=$(tr ' ' '\n' <<<"$pkgs" | sort -u | tr '\n' ' ')
echo "gpu-bundle: downloading$pkgs"
(cd "$out" && apt-get download $pkgs)
ls -l "$out"
