#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing mcefa need.
# Runs apt only when something is missing; uses sudo when not root.
# (libefa, the EFA verbs provider, ships in ibverbs-providers; the sanitizer
# runtimes come with gcc; python3-venv for the offline pip-install test,
# python3-numpy for the plain-memory tests (numpy arrays as Mooncake users register them),
# util-linux for setpriv, libsodium for peer authentication, libhwloc-dev for the PCI
# topology (GPU-NIC placement), systemd for systemd-analyze verify;
# clang for the fuzz targets, whose libFuzzer and sanitizer runtimes are in
# libclang-rt-14-dev, only recommended by clang and so named here.)
set -euo pipefail

packages=(
    build-essential pkg-config
    libfabric-dev libfabric-bin ibverbs-providers
    libuv1-dev
    libsodium-dev
    libprotobuf-c-dev protobuf-c-compiler
    libnuma-dev
    libhwloc-dev
    check
    clang libclang-rt-14-dev
    python3 python3-dev python3-pytest python3-setuptools python3-venv python3-numpy
    iproute2 procps util-linux systemd
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
