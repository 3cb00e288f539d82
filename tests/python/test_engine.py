"""Mooncake's TransferEngine API over mcefad: every method with Mooncake's
return conventions, engines in separate processes, two daemons over
libfabric, and the call sequences vLLM and SGLang make."""
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import BUILD, Peer, engine, pattern

import mcefa
from mcefa import TransferEngine, TransferOpcode

MiB = 1 << 20


def test_initialize_and_rpc_port(daemon):
    te = engine()
    port = te.get_rpc_port()
    assert isinstance(port, int) and port > 0
    other = engine()
    assert other.get_rpc_port() != port  # unique on the host
    assert TransferEngine().initialize("127.0.0.1", "etcd://10.0.0.1:2379", "efa", "") < 0
    assert TransferEngine().initialize("127.0.0.1", "P2PHANDSHAKE", "carrier-pigeon", "") < 0
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") < 0  # twice


def test_initialize_without_daemon(tmp_path):
    os.environ["MCEFAD_SOCKET"] = str(tmp_path / "nothing.sock")
    try:
        assert TransferEngine().initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") < 0
    finally:
        os.environ.pop("MCEFAD_SOCKET")


def test_managed_buffers_and_bytes(daemon):
    te = engine()
    a = te.allocate_managed_buffer(MiB)
    assert a != 0
    assert te.write_bytes_to_buffer(a, b"hello mcefa", 11) == 0
    assert te.read_bytes_from_buffer(a, 11) == b"hello mcefa"
    assert te.free_managed_buffer(a, MiB) == 0
    assert te.free_managed_buffer(a, MiB) < 0  # twice


def test_register_unregister(daemon):
    te = engine()
    c = mcefa.Client(daemon.sock)
    a = c.alloc(4 * MiB)
    # Another client's buffer is plain memory to this engine: registered,
    # copied by cross-memory attach (issue 13: it used to be refused).
    assert te.register_memory(a, MiB) == 0
    assert te.unregister_memory(a) == 0
    te_a = te.allocate_managed_buffer(4 * MiB)
    assert te.unregister_memory(te_a) == 0
    assert te.register_memory(te_a, MiB, "cpu:0") == 0
    assert te.register_memory(te_a, MiB) < 0  # overlap
    assert te.unregister_memory(te_a) == 0
    assert te.unregister_memory(te_a) < 0  # twice
    ptrs = [te_a + i * MiB for i in range(4)]
    assert te.batch_register_memory(ptrs, [MiB] * 4) == 0
    assert te.batch_unregister_memory(ptrs) == 0
    # Plain process memory registers; memory the process does not have is
    # refused with a message that says so.
    buf = bytearray(4096)
    import ctypes
    addr = ctypes.addressof((ctypes.c_char * 4096).from_buffer(buf))
    assert te.register_memory(addr, 4096) == 0
    assert te.register_memory(addr, 4096) < 0  # overlap
    assert te.unregister_memory(addr) == 0
    with pytest.raises(mcefa.Error, match="not mapped readable"):
        mcefa.Client(daemon.sock).register(0x10000, 4096)


def test_two_engines_in_separate_processes(daemon):
    peer = Peer(daemon.sock, 4 * MiB)
    try:
        te = engine()
        local = te.allocate_managed_buffer(4 * MiB)
        assert te.get_first_buffer_address(peer.target) == peer.addr
        # Read the peer's first MiB, write our pattern into its second.
        assert te.transfer_sync_read(peer.target, local, peer.addr, MiB) == 0
        assert te.read_bytes_from_buffer(local, MiB) == pattern(MiB, 1)
        te.write_bytes_to_buffer(local, pattern(MiB, 5, MiB), MiB)
        assert te.transfer_sync_write(peer.target, local, peer.addr + MiB, MiB) == 0
        assert peer.check(MiB, MiB, 5)
        assert te.transfer_sync(peer.target, local, peer.addr, 4096, TransferOpcode.READ) == 0
        # Async forms.
        bid = te.batch_transfer_async_write(peer.target, [local], [peer.addr + MiB], [MiB])
        assert bid > 0
        assert te.get_batch_transfer_status([bid]) == 0
        bid = te.transfer_submit_write(peer.target, local, peer.addr + MiB, MiB)
        assert bid > 0
        # Poll as a caller would, bounded in time rather than in tries: a busy
        # machine can outrun 10000 tries.
        deadline = time.monotonic() + 10
        while (st := te.transfer_check_status(bid)) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert st == 1
        bid = te.batch_transfer_async_read(peer.target, [local, local + MiB], [peer.addr, peer.addr + MiB],
                                           [MiB, MiB])
        assert te.get_batch_transfer_status([bid]) == 0
        assert te.get_batch_transfer_status([12345]) < 0  # unknown id
        assert te.warmup_efa_segment(peer.target) == 0  # same host: nothing to connect, still fine
        assert te.send_probe(peer.target) == 0
        topology = json.loads(te.get_local_topology())  # shape and content: test_topology.py
        assert topology and all(k.startswith(("cpu:", "cuda:")) for k in topology)
        assert te.get_notifies() == []
    finally:
        peer.stop()
    # The peer is gone: its segment cannot be reached any more.
    assert te.send_probe(peer.target) != 0


def test_bad_input(daemon):
    peer = Peer(daemon.sock, MiB)
    try:
        te = engine()
        local = te.allocate_managed_buffer(MiB)
        with pytest.raises(TypeError):
            te.transfer_sync_write(peer.target, local, peer.addr, "4096")
        with pytest.raises(TypeError):  # as pybind11 refuses a negative size_t
            te.transfer_sync_write(peer.target, local, peer.addr, -1)
        with pytest.raises(TypeError):
            te.transfer_sync_write(peer.target, local, peer.addr, 1 << 70)
        with pytest.raises(TypeError):
            te.transfer_sync_write(12345, local, peer.addr, 16)
        assert te.batch_transfer_sync_write(peer.target, [local, local], [peer.addr], [16, 16]) < 0
        assert te.batch_transfer_async_write(peer.target, [local], [], [16]) == 0
        bid = te.batch_transfer_async_write(peer.target, [], [], [])
        assert bid > 0 and te.get_batch_transfer_status([bid]) == 0  # empty: done at once
        # The raw binding: negative and oversized values are refused too.
        with pytest.raises(ValueError):
            te._client.transfer([(1, local, 1, peer.addr, -1)])
        with pytest.raises(OverflowError):
            te._client.transfer([(1, local, 1, peer.addr, 1 << 70)])
        with pytest.raises(TypeError):
            te.register_memory(local, "big")
        with pytest.raises(TypeError):
            te.initialize(1, 2, 3, 4)
        # Unregistered local memory and out-of-range remote addresses: errors, not crashes.
        assert te.transfer_sync_write(peer.target, local + 2 * MiB, peer.addr, 16) < 0
        assert te.transfer_sync_write(peer.target, local, peer.addr + MiB - 8, 16) < 0
        assert te.transfer_sync_read(peer.target, local, 0x1000, 16) < 0
        # Unknown targets.
        assert te.transfer_sync_write("127.0.0.1:1", local, peer.addr, 16) < 0
        assert te.batch_transfer_async_write("127.0.0.1:1", [local], [peer.addr], [16]) == 0
        assert te.transfer_submit_write("127.0.0.1:1", local, peer.addr, 16) < 0
        assert te.get_first_buffer_address("127.0.0.1:1") == 0
        assert te.warmup_efa_segment("127.0.0.1:1") < 0
        # ...and the daemon keeps serving.
        assert te.transfer_sync_write(peer.target, local, peer.addr, 4096) == 0
        assert daemon.alive()
    finally:
        peer.stop()
    with pytest.raises(RuntimeError):
        TransferEngine().register_memory(0x1000, 16)


def test_vllm_sequence(daemon):
    """What vLLM's MooncakeConnector does: initialize, get_rpc_port,
    batch_register_memory of each KV cache's base, then writes from a
    10-thread pool with contiguous blocks merged into one transfer."""
    peer = Peer(daemon.sock, 16 * MiB)
    try:
        te = TransferEngine()
        assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
        assert te.get_rpc_port() > 0
        # Two "layers" of KV cache, registered by their unique base pointers.
        c = te._client
        bases = [c.alloc(8 * MiB), c.alloc(8 * MiB)]
        assert te.batch_register_memory(bases, [8 * MiB, 8 * MiB]) == 0
        block = 64 * 1024
        for li, base in enumerate(bases):
            for blk in range(128):
                off = li * 8 * MiB + blk * block
                mcefa.write_bytes(base + blk * block, pattern(block, 9, off))

        def send(job):
            li, first, count = job
            # Blocks first..first+count-1 are contiguous on both sides: one transfer.
            src = bases[li] + first * block
            dst = peer.addr + li * 8 * MiB + first * block
            return te.batch_transfer_sync_write(peer.target, [src], [dst], [count * block])

        jobs = [(li, first, 8) for li in range(2) for first in range(0, 128, 8)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            assert list(pool.map(send, jobs)) == [0] * len(jobs)
        assert peer.check(0, 16 * MiB, 9)
    finally:
        peer.stop()


def test_sglang_sequence(daemon):
    """What SGLang's mooncake backend does: initialize, register_memory,
    batch_transfer_sync_write, send_probe."""
    peer = Peer(daemon.sock, 4 * MiB)
    try:
        te = TransferEngine()
        assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "efa", "") == 0
        buf = te._client.alloc(4 * MiB)
        assert te.register_memory(buf, 4 * MiB) == 0
        mcefa.write_bytes(buf, pattern(4 * MiB, 3))
        n = 64
        size = 4 * MiB // n
        rc = te.batch_transfer_sync_write(peer.target, [buf + i * size for i in range(n)],
                                          [peer.addr + i * size for i in range(n)], [size] * n)
        assert rc == 0
        assert peer.check(0, 4 * MiB, 3)
        assert te.send_probe(peer.target) == 0
        assert te.send_probe("127.0.0.1:1") != 0
    finally:
        peer.stop()


def test_two_daemons_over_libfabric(daemon_pair):
    a, b = daemon_pair
    peer = Peer(b.sock, 8 * MiB, hostname="hostb")
    try:
        te = engine(a.sock)
        assert te.warmup_efa_segment(peer.target) == 0
        local = te.allocate_managed_buffer(8 * MiB)
        assert te.transfer_sync_read(peer.target, local, peer.addr, 8 * MiB) == 0
        assert te.read_bytes_from_buffer(local, 8 * MiB) == pattern(8 * MiB, 1)
        te.write_bytes_to_buffer(local, pattern(4 * MiB, 6, 4 * MiB), 4 * MiB)
        assert te.batch_transfer_sync_write(peer.target, [local + i * MiB for i in range(4)],
                                            [peer.addr + 4 * MiB + i * MiB for i in range(4)], [MiB] * 4) == 0
        assert peer.check(4 * MiB, 4 * MiB, 6)
        assert te.get_first_buffer_address(peer.target) == peer.addr
        assert te.warmup_efa_segment("hostb:1") < 0  # unknown segment there
    finally:
        peer.stop()


def test_mooncake_shim(tmp_path):
    shim = mcefa.shim_path()
    env = dict(os.environ, PYTHONPATH=shim + os.pathsep + os.path.join(BUILD, "python"))
    out = subprocess.run([sys.executable, "-c", "from mooncake.engine import TransferEngine; "
                          "print(TransferEngine.__module__)"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "mcefa.engine"
    # With a real Mooncake on the path, the shim steps aside loudly.
    real = tmp_path / "site" / "mooncake"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("")
    env["PYTHONPATH"] = os.pathsep.join([shim, os.path.join(BUILD, "python"), str(tmp_path / "site")])
    out = subprocess.run([sys.executable, "-c", "import mooncake.engine"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "real Mooncake is installed" in out.stderr


def test_client_killed_daemon_serves_others(daemon):
    """A Python client killed mid-transfer: the daemon frees it and serves on."""
    peer = Peer(daemon.sock, 64 * MiB)
    code = ("import mcefa,sys; te=mcefa.TransferEngine(); te.initialize('127.0.0.1','P2PHANDSHAKE','tcp','');"
            "a=te.allocate_managed_buffer(%d); print('go',flush=True)\n"
            "while True: te.batch_transfer_sync_write('%s',[a+i*%d for i in range(64)],[%d+i*%d for i in range(64)],"
            "[%d]*64)" % (64 * MiB, peer.target, MiB, peer.addr, MiB, MiB))
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "python"))
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "go"
        p.kill()
        p.wait()
        te = engine()
        local = te.allocate_managed_buffer(MiB)
        assert te.transfer_sync_read(peer.target, local, peer.addr, MiB) == 0
    finally:
        peer.stop()


def test_pip_install_offline(tmp_path):
    """pip install ./client/python works with no network (no build isolation)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    src = tmp_path / "src"
    import shutil
    top = os.path.join(os.path.dirname(__file__), "..", "..")
    shutil.copytree(os.path.join(top, "client", "python"), src)
    env = dict(os.environ, MCEFA_BUILD=BUILD, PIP_NO_INDEX="1")
    env.pop("PYTHONPATH", None)
    # setup.py finds the headers relative to its own folder: point it at the tree.
    (src / "setup.py").write_text((src / "setup.py").read_text().replace(
        'top = os.path.abspath(os.path.join(here, "..", ".."))', 'top = %r' % os.path.abspath(top)))
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation", str(src)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import mcefa, os; assert os.path.exists(os.path.join(mcefa.shim_path(), 'mooncake', "
                          "'engine.py')); print(mcefa.TransferEngine)"], env=env, capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr


def test_close_while_other_threads_wait(daemon):
    """Closing a Client while another thread is inside a call is safe: the
    close takes effect when the call returns."""
    peer = Peer(daemon.sock, 16 * MiB)
    try:
        c = mcefa.Client(daemon.sock)
        a = c.alloc(16 * MiB)
        c.register(a, 16 * MiB)
        h = c.open_segment(peer.target)
        errors = []

        def worker():
            try:
                for _ in range(50):
                    c.transfer([(mcefa.WRITE, a, h, peer.addr, 16 * MiB)], 10000)
            except (RuntimeError, mcefa.Error) as e:
                errors.append(e)

        t = threading.Thread(target=worker)
        t.start()
        c.close()
        t.join(30)
        assert not t.is_alive()
        with pytest.raises(RuntimeError):
            c.status()
        b = None
        with pytest.raises(RuntimeError):
            b = c.submit([(mcefa.WRITE, a, h, peer.addr, 16)])
        assert b is None
    finally:
        peer.stop()
