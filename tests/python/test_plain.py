"""Plain host memory (bytearray, mmap, numpy, malloc: what SGLang's aux
buffers and vLLM's CPU tensors are) through Mooncake's TransferEngine API:
registered, used as source, destination and passive target, on one daemon
and across two (tcp;ofi_rxm on lo), where it travels through the daemons'
staging buffers. Then the failures: clients and daemons killed mid-exchange,
access refused, memory freed under a registration, staging turned off."""
import ctypes
import mmap
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import BUILD, Peer, engine as make_engine, pattern, plain_buffer, staging_idle

import mcefa

MiB = 1 << 20
KINDS = ["bytearray", "mmap", "numpy", "malloc"]
# Below, at and above a page and a staging slot (1 MiB by default), and
# several slots with an odd tail.
SIZES = [1, 4095, 4097, MiB - 1, MiB + 1, 3 * MiB + 123]


def engine(sock, host="127.0.0.1"):
    return make_engine(sock, "tcp", host)


def plain(kind, size):
    """(keep-alive object, address) of ordinary memory of this process."""
    if kind == "numpy":
        pytest.importorskip("numpy")
    return plain_buffer(kind, size)


def roundtrip(te, peer, addr, room):
    """Every size at odd offsets: read the peer's pattern into our memory,
    write a new pattern of ours into the peer, check both ends."""
    for i, n in enumerate(SIZES):
        loff, roff = (i * 4093) % 7 + 1, 4096 - (i % 3)  # odd local offsets, remote ones around a page boundary
        assert loff + n <= room
        ctypes.memset(addr, 0, room)
        assert te.transfer_sync_read(peer.target, addr + loff, peer.addr + roff, n) == 0, n
        assert ctypes.string_at(addr + loff, n) == pattern(n, 1, roff), n
        seed = 10 + i
        ctypes.memmove(addr + loff, pattern(n, seed, roff), n)
        assert te.transfer_sync_write(peer.target, addr + loff, peer.addr + roff, n) == 0, n
        assert peer.check(roff, n, seed), n
        # Put the peer's pattern 1 back for the next size.
        ctypes.memmove(addr + loff, pattern(n, 1, roff), n)
        assert te.transfer_sync_write(peer.target, addr + loff, peer.addr + roff, n) == 0, n


@pytest.mark.parametrize("kind", KINDS)
def test_same_host_every_kind(daemon, kind):
    room = 4 * MiB
    keep, addr = plain(kind, room)
    te = engine(daemon.sock)
    assert te.register_memory(addr, room) == 0
    for target_kind in ("managed", kind):
        peer = Peer(daemon.sock, 4 * MiB + 8192, kind=target_kind)
        try:
            roundtrip(te, peer, addr, room)
        finally:
            peer.stop()
    # A move inside one plain region (overlapping source and destination),
    # larger than a bounce piece, both directions.
    me = "127.0.0.1:%d" % te.get_rpc_port()
    n = MiB + 5000
    for src, dst in ((0, 3000), (3000, 0)):
        data = pattern(n, 77)
        ctypes.memmove(addr + src, data, n)
        assert te.transfer_sync_write(me, addr + src, addr + dst, n) == 0
        assert ctypes.string_at(addr + dst, n) == data
    assert te.unregister_memory(addr) == 0
    del keep


@pytest.mark.parametrize("kind", KINDS)
def test_cross_daemon_every_kind(pair, kind):
    a, b = pair()
    room = 4 * MiB
    keep, addr = plain(kind, room)
    te = engine(a.sock, "hosta")
    assert te.register_memory(addr, room) == 0
    managed = te.allocate_managed_buffer(room)
    for target_kind in ("managed", kind):
        peer = Peer(b.sock, 4 * MiB + 8192, hostname="hostb", kind=target_kind)
        try:
            roundtrip(te, peer, addr, room)  # plain here, either kind there
            if target_kind != "managed":
                roundtrip(te, peer, managed, room)  # registered memory here, plain there
        finally:
            peer.stop()
    assert staging_idle(a.sock) and staging_idle(b.sock)
    del keep


def test_batches_and_many_pieces(pair):
    # Staging smaller than the transfer (4 slots each side): pieces wait for
    # slots and for the peer's request window, and all arrive.
    a, b = pair("--staging_bytes=4194304", extra_b=("--staging_bytes=4194304",))
    n = 24 * MiB + 17
    keep, addr = plain("bytearray", n)
    te = engine(a.sock, "hosta")
    assert te.register_memory(addr, n) == 0
    peer = Peer(b.sock, n, hostname="hostb", kind="bytearray")
    try:
        assert te.transfer_sync_read(peer.target, addr, peer.addr, n) == 0
        assert ctypes.string_at(addr, n) == pattern(n, 1)
        # A batch of many small pieces, some sharing a slot-sized region.
        k, piece = 300, 4096 + 3
        ctypes.memmove(addr, pattern(k * piece, 42), k * piece)
        offs = [i * piece for i in range(k)]
        bid = te.batch_transfer_async_write(peer.target, [addr + o for o in offs], [peer.addr + o for o in offs],
                                            [piece] * k)
        assert bid > 0
        assert te.get_batch_transfer_status([bid]) == 0
        assert peer.check(0, k * piece, 42)
    finally:
        peer.stop()
    assert staging_idle(a.sock) and staging_idle(b.sock)
    del keep


SUBMITTER = r"""
import ctypes, os, sys, time
from mcefa import TransferEngine
target, addr, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
te = TransferEngine()
assert te.initialize("hosta", "P2PHANDSHAKE", "tcp", "") == 0
buf = bytearray(n)
mine = ctypes.addressof((ctypes.c_char * n).from_buffer(buf))
assert te.register_memory(mine, n) == 0
print("ready", flush=True)
while True:
    te.batch_transfer_async_write(target, [mine], [addr], [n])
    te.batch_transfer_async_read(target, [mine], [addr], [n])
"""


def test_initiator_killed_mid_exchange(pair):
    a, b = pair()
    n = 16 * MiB
    peer = Peer(b.sock, n, hostname="hostb", kind="bytearray")
    try:
        env = dict(os.environ, MCEFAD_SOCKET=a.sock, PYTHONPATH=os.path.join(BUILD, "python"))
        p = subprocess.Popen([sys.executable, "-c", SUBMITTER, peer.target, str(peer.addr), str(n)],
                             stdout=subprocess.PIPE, env=env, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        # Both daemons go on: a new client moves bytes to the same target.
        keep, addr = plain("bytearray", MiB)
        te = engine(a.sock, "hosta")
        assert te.register_memory(addr, MiB) == 0
        ctypes.memmove(addr, pattern(MiB, 5), MiB)
        assert te.transfer_sync_write(peer.target, addr, peer.addr, MiB) == 0
        assert peer.check(0, MiB, 5)
    finally:
        peer.stop()
    assert a.alive() and b.alive()
    assert staging_idle(a.sock) and staging_idle(b.sock)


def test_target_killed_mid_exchange(pair):
    a, b = pair()
    n = 32 * MiB
    keep, addr = plain("bytearray", n)
    te = engine(a.sock, "hosta")
    assert te.register_memory(addr, n) == 0
    peer = Peer(b.sock, n, hostname="hostb", kind="bytearray")
    bids = [te.batch_transfer_async_write(peer.target, [addr], [peer.addr], [n]) for _ in range(4)]
    peer.proc.send_signal(signal.SIGKILL)
    peer.proc.wait(10)
    # Each batch ends, none hangs, and the ones the kill caught failed (128
    # MiB through staging take far longer than the kill).
    t0 = time.monotonic()
    rcs = [te.get_batch_transfer_status([bid]) for bid in bids]
    assert time.monotonic() - t0 < 15
    assert all(bid > 0 for bid in bids) and any(rc < 0 for rc in rcs), rcs
    assert a.alive() and b.alive()
    assert staging_idle(a.sock) and staging_idle(b.sock)
    # Its segment is gone: a new transfer says so, it does not hang.
    t0 = time.monotonic()
    assert te.transfer_sync_write(peer.target, addr, peer.addr, MiB) < 0
    assert time.monotonic() - t0 < 10


def test_daemon_killed_mid_exchange(pair):
    a, b = pair()
    n = 32 * MiB
    keep, addr = plain("bytearray", n)
    te = engine(a.sock, "hosta")
    assert te.register_memory(addr, n) == 0
    peer = Peer(b.sock, n, hostname="hostb", kind="bytearray")
    try:
        assert te.transfer_sync_read(peer.target, addr, peer.addr, MiB) == 0  # connected and described
        bid = te.batch_transfer_async_read(peer.target, [addr], [peer.addr], [n])
        assert bid > 0
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(10)
        t0 = time.monotonic()
        assert te.get_batch_transfer_status([bid]) < 0  # failed, not hung
        assert time.monotonic() - t0 < 15
    finally:
        peer.proc.kill()
        peer.proc.wait(10)
    # Daemon A serves on: a same-host plain copy works, and its staging
    # slots come back once the lost exchanges' hold time is over.
    me = "hosta:%d" % te.get_rpc_port()
    ctypes.memmove(addr, pattern(MiB, 8), MiB)
    assert te.transfer_sync_write(me, addr, addr + 2 * MiB, MiB) == 0
    assert ctypes.string_at(addr + 2 * MiB, MiB) == pattern(MiB, 8)
    assert a.alive()
    assert staging_idle(a.sock)


def test_freed_memory_and_switches(pair):
    a, b = pair("--plain_memory=false", extra_b=("--staging_bytes=0",))
    # plain_memory=false: refused, saying which setting.
    keep, addr = plain("bytearray", MiB)
    with pytest.raises(mcefa.Error, match="plain_memory=false"):
        mcefa.Client(a.sock).register(addr, MiB)
    # Daemon B has no staging: its plain memory is out of reach from A,
    # and the error says why.
    peer = Peer(b.sock, MiB, hostname="hostb", kind="bytearray")
    try:
        c = mcefa.Client(a.sock)
        local = c.alloc(MiB)
        c.register(local, MiB)
        h = c.open_segment(peer.segment)
        with pytest.raises(mcefa.Error, match="staging_bytes 0 there"):
            c.transfer([(mcefa.WRITE, local, h, peer.addr, 4096)])
    finally:
        peer.stop()


def test_freed_plain_memory(daemon):
    te = engine(daemon.sock)
    m = mmap.mmap(-1, MiB)
    addr = ctypes.addressof((ctypes.c_char * MiB).from_buffer(m))
    assert te.register_memory(addr, MiB) == 0
    peer = Peer(daemon.sock, MiB)
    try:
        assert te.transfer_sync_read(peer.target, addr, peer.addr, 4096) == 0
        # Unmapped without unregistering: the daemon's copy fails cleanly.
        libc = ctypes.CDLL(None)
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        assert libc.munmap(ctypes.c_void_p(addr), MiB) == 0
        assert te.transfer_sync_read(peer.target, addr, peer.addr, 4096) < 0
        # The region is marked: later transfers are refused at once.
        assert te.transfer_sync_write(peer.target, addr, peer.addr, 4096) < 0
        assert te.unregister_memory(addr) == 0
    finally:
        peer.stop()
    assert daemon.alive()


def test_access_refused_to_other_user():
    # mcefad running as nobody may not read a root process's memory: the
    # registration fails and the text says what would allow it.
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the daemon as another user")
    import tempfile
    d = tempfile.mkdtemp(prefix="mcefa-py-nobody-")  # under /tmp: reachable by nobody
    os.chmod(d, 0o777)
    sock = os.path.join(d, "mcefad.sock")
    log = open(os.path.join(d, "log"), "w")
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          os.path.join(BUILD, "mcefad"), "--socket_path=" + sock, "--socket_mode=0666",
                          "--provider=none", "--metrics_listen="], stderr=log)
    try:
        for _ in range(500):
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.01)
        assert os.path.exists(sock), open(os.path.join(d, "log")).read()
        keep, addr = plain("bytearray", MiB)
        with pytest.raises(mcefa.Error, match="CAP_SYS_PTRACE") as ei:
            mcefa.Client(sock).register(addr, MiB)
        assert "uid 65534" in str(ei.value) and "uid 0" in str(ei.value)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
        shutil.rmtree(d, ignore_errors=True)


def test_two_hosts_staging_into_each_other(pair):
    # Both daemons stage into each other's plain memory at once, with more
    # pieces than either has slots: sends and serves use separate slots,
    # so neither side can hold all its slots waiting for the other.
    a, b = pair("--staging_bytes=4194304", extra_b=("--staging_bytes=4194304",))
    n = 24 * MiB
    ka, pa_ = plain("bytearray", n)
    kb, pb_ = plain("bytearray", n)
    ea = engine(a.sock, "hosta")
    eb = engine(b.sock, "hostb")
    assert ea.register_memory(pa_, n) == 0 and eb.register_memory(pb_, n) == 0
    ctypes.memmove(pa_, pattern(n, 3), n)
    ctypes.memmove(pb_, pattern(n, 4), n)
    ta = "hosta:%d" % ea.get_rpc_port()
    tb = "hostb:%d" % eb.get_rpc_port()
    half = n // 2
    # A's first half into B's second half, B's first half into A's second.
    bid_a = ea.batch_transfer_async_write(tb, [pa_], [pb_ + half], [half])
    bid_b = eb.batch_transfer_async_write(ta, [pb_], [pa_ + half], [half])
    assert bid_a > 0 and bid_b > 0
    assert ea.get_batch_transfer_status([bid_a]) == 0
    assert eb.get_batch_transfer_status([bid_b]) == 0
    assert ctypes.string_at(pb_ + half, half) == pattern(half, 3)
    assert ctypes.string_at(pa_ + half, half) == pattern(half, 4)
    assert staging_idle(a.sock) and staging_idle(b.sock)
    del ka, kb
