"""GPU memory across hosts through the staging buffers (no provider here
offers FI_HMEM): GPU to GPU, GPU to host and host to GPU between two
daemons over tcp;ofi_rxm, sizes below, at and above a staging slot and not
multiples of it, then a target, an initiating client and a daemon killed
mid-transfer. The device memory comes from the CUDA driver stand-in
(build/tests/libcuda-standin.so), which checks mcefa's bookkeeping and
copies, not a GPU: nothing here is verified on GPU hardware."""
import os
import signal
import time

import pytest

from conftest import BUILD, DriverGpu, Peer, engine, pattern, staging_idle

MiB = 1 << 20
STANDIN = os.path.join(BUILD, "tests", "libcuda-standin.so")
SIZES = [1, 4097, MiB - 1, MiB, MiB + 1, 3 * MiB + 5]

pytestmark = pytest.mark.skipif(not os.path.exists(STANDIN),
                                reason="built without the CUDA headers: no driver stand-in")


@pytest.fixture
def gpu_pair(pair, monkeypatch):
    monkeypatch.setenv("MCEFA_CUDA_LIBRARY", STANDIN)
    return pair(common_extra=("--cuda_library=" + STANDIN,))


def LocalGpu(size):
    return DriverGpu(STANDIN, size)


def rounds(te, peer, write_local, read_local, local_addr):
    for i, n in enumerate(SIZES):
        roff, loff = 4096 * i + 3, 11 * i
        assert te.transfer_sync_read(peer.target, local_addr + loff, peer.addr + roff, n) == 0, n
        assert read_local(local_addr + loff, n) == pattern(n, 1, roff), n
        seed = 40 + i
        write_local(local_addr + loff, pattern(n, seed, roff))
        assert te.transfer_sync_write(peer.target, local_addr + loff, peer.addr + roff, n) == 0, n
        assert peer.check(roff, n, seed), n
        write_local(local_addr + loff, pattern(n, 1, roff))
        assert te.transfer_sync_write(peer.target, local_addr + loff, peer.addr + roff, n) == 0, n


def test_gpu_to_gpu_and_host_across_daemons(gpu_pair):
    a, b = gpu_pair
    size = 24 * MiB
    te = engine(a.sock, "tcp", "hosta")
    gpu = LocalGpu(size)
    assert te.register_memory(gpu.addr, size) == 0
    host = te.allocate_managed_buffer(size)
    for kind in ("gpu", "managed", "bytearray"):
        peer = Peer(b.sock, size, hostname="hostb", kind=kind)
        try:
            rounds(te, peer, gpu.write, gpu.read, gpu.addr)  # our GPU, their GPU / host / plain memory
            if kind == "gpu":  # our host memory, their GPU
                rounds(te, peer, lambda a, d: te.write_bytes_to_buffer(a, d, len(d)), te.read_bytes_from_buffer,
                       host)
            # Many slot-sized pieces in one transfer: they overlap copies and the network.
            n = 20 * MiB + 7
            gpu.write(gpu.addr, pattern(n, 66))
            assert te.transfer_sync_write(peer.target, gpu.addr, peer.addr, n) == 0
            assert peer.check(0, n, 66)
        finally:
            peer.stop()
    assert staging_idle(a.sock) and staging_idle(b.sock)
    # Both daemons loaded the driver with a GPU registration, and it took
    # their staging slots page-locked: the copies went straight, no bounce.
    import mcefa
    for d in (a, b):
        c = mcefa.Client(d.sock)
        assert c.status()["staging_gpu_pinned"] is True
        c.close()


def test_gpu_target_killed_mid_transfer(gpu_pair):
    a, b = gpu_pair
    size = 32 * MiB
    te = engine(a.sock, "tcp", "hosta")
    gpu = LocalGpu(size)
    assert te.register_memory(gpu.addr, size) == 0
    peer = Peer(b.sock, size, hostname="hostb", kind="gpu")
    bids = [te.batch_transfer_async_write(peer.target, [gpu.addr], [peer.addr], [size]) for _ in range(4)]
    peer.proc.send_signal(signal.SIGKILL)
    peer.proc.wait(10)
    t0 = time.monotonic()
    rcs = [te.get_batch_transfer_status([bid]) for bid in bids]
    assert time.monotonic() - t0 < 15
    assert all(bid > 0 for bid in bids) and any(rc < 0 for rc in rcs), rcs
    assert a.alive() and b.alive()
    assert staging_idle(a.sock) and staging_idle(b.sock)


INITIATOR = """
import os, sys
from conftest import DriverGpu
from mcefa import TransferEngine
size, target, raddr = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
te = TransferEngine()
assert te.initialize("hosta", "P2PHANDSHAKE", "tcp", "") == 0
gpu = DriverGpu(os.environ["MCEFA_CUDA_LIBRARY"], size)
assert te.register_memory(gpu.addr, size) == 0
bids = [te.batch_transfer_async_write(target, [gpu.addr], [raddr], [size]) for _ in range(4)]
assert all(b > 0 for b in bids)
print("go", flush=True)
sys.stdin.readline()
"""


def test_gpu_initiator_killed_mid_transfer(gpu_pair):
    """The local client dies with its GPU pieces in the pipeline (copies
    out of its GPU, StagedOps out, slots held): both daemons go on, every
    slot comes back, and the next client's transfer lands whole."""
    import subprocess
    import sys
    a, b = gpu_pair
    size = 32 * MiB
    peer = Peer(b.sock, size, hostname="hostb", kind="gpu")
    try:
        env = dict(os.environ, MCEFAD_SOCKET=a.sock, PYTHONPATH=os.pathsep.join(
            [os.path.join(BUILD, "python"), os.path.dirname(__file__)]))
        proc = subprocess.Popen([sys.executable, "-c", INITIATOR, str(size), peer.target, str(peer.addr)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        assert proc.stdout.readline().strip() == "go"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert a.alive() and b.alive()
        assert staging_idle(a.sock) and staging_idle(b.sock)
        te = engine(a.sock, "tcp", "hosta")
        gpu = LocalGpu(4 * MiB)
        assert te.register_memory(gpu.addr, 4 * MiB) == 0
        gpu.write(gpu.addr, pattern(3 * MiB + 5, 77, 7))
        assert te.transfer_sync_write(peer.target, gpu.addr, peer.addr + 7, 3 * MiB + 5) == 0
        assert peer.check(7, 3 * MiB + 5, 77)
    finally:
        peer.proc.kill()
        peer.proc.wait(10)


def test_gpu_daemon_killed_mid_transfer(gpu_pair):
    a, b = gpu_pair
    size = 32 * MiB
    te = engine(a.sock, "tcp", "hosta")
    gpu = LocalGpu(size)
    assert te.register_memory(gpu.addr, size) == 0
    peer = Peer(b.sock, size, hostname="hostb", kind="managed")
    try:
        assert te.transfer_sync_read(peer.target, gpu.addr, peer.addr, MiB) == 0
        bid = te.batch_transfer_async_read(peer.target, [gpu.addr], [peer.addr], [size])
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(10)
        t0 = time.monotonic()
        assert te.get_batch_transfer_status([bid]) < 0
        assert time.monotonic() - t0 < 15
    finally:
        peer.proc.kill()
        peer.proc.wait(10)
    # Daemon A goes on: a same-host GPU copy works.
    me = "hosta:%d" % te.get_rpc_port()
    gpu.write(gpu.addr, pattern(MiB, 9))
    assert te.transfer_sync_write(me, gpu.addr, gpu.addr + 2 * MiB, MiB) == 0
    assert gpu.read(gpu.addr + 2 * MiB, MiB) == pattern(MiB, 9)
    assert staging_idle(a.sock)


def test_pieces_waiting_past_their_deadline_are_answered(pair, monkeypatch):
    # Daemon B serves slowly (every stand-in GPU copy takes 400 ms) from one
    # serve slot: pieces that wait for it past their deadline are answered
    # -ETIMEDOUT by B's sweep, in time, so the peer link stays up and the
    # same open segment works for the next transfer.
    monkeypatch.setenv("MCEFA_CUDA_LIBRARY", STANDIN)
    monkeypatch.setenv("MCEFA_STANDIN_DELAY_US", "400000")
    a, b = pair(extra_b=("--staging_bytes=2097152",),
                common_extra=("--cuda_library=" + STANDIN, "--request_timeout_ms=2500"))
    te = engine(a.sock, "tcp", "hosta")
    host = te.allocate_managed_buffer(16 * MiB)
    peer = Peer(b.sock, 16 * MiB, hostname="hostb", kind="gpu")
    try:
        assert te.transfer_sync_write(peer.target, host, peer.addr, 4096) == 0
        t0 = time.monotonic()
        assert te.transfer_sync_write(peer.target, host, peer.addr, 16 * MiB) < 0  # most pieces time out
        assert time.monotonic() - t0 < 10
        # The link held: no reopen needed, the segment still works.
        te.write_bytes_to_buffer(host, pattern(4096, 5), 4096)
        assert te.transfer_sync_write(peer.target, host, peer.addr, 4096) == 0
        assert peer.check(0, 4096, 5)
    finally:
        peer.stop()
