"""GPU memory through Mooncake's TransferEngine API: register_memory of a
device pointer (what vLLM and SGLang pass: a torch tensor's data_ptr()),
then transfers into and out of it, also ordered on a CUDA stream (the
*_on_cuda methods). The device memory and the streams come from the CUDA
driver stand-in (build/tests/libcuda-standin.so), which checks mcefa's
bookkeeping, not a GPU."""
import ctypes
import os
import threading
import time

import pytest

from conftest import BUILD, Daemon, Peer, pattern, start_pair

from mcefa import TransferEngine
from mcefa import engine as mengine

MiB = 1 << 20
STANDIN = os.path.join(BUILD, "tests", "libcuda-standin.so")

need_standin = pytest.mark.skipif(not os.path.exists(STANDIN),
                                  reason="built without the CUDA headers: no driver stand-in")


@pytest.fixture
def gpu_daemon(monkeypatch):
    monkeypatch.setenv("MCEFA_CUDA_LIBRARY", STANDIN)
    d = Daemon("--provider=none", "--cuda_library=" + STANDIN)
    monkeypatch.setenv("MCEFAD_SOCKET", d.sock)
    yield d
    d.stop()


def cuda():
    """The stand-in driver with GPU 0's context current; the library loads
    the same one (same path, one copy per process)."""
    cu = ctypes.CDLL(STANDIN)
    assert cu.cuInit(0) == 0
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
    assert cu.cuCtxSetCurrent(ctx) == 0
    return cu


@need_standin
def test_register_device_pointer_and_move_bytes(gpu_daemon):
    cu = cuda()
    ptr = ctypes.c_uint64()
    assert cu.cuMemAlloc_v2(ctypes.byref(ptr), 2 * MiB) == 0
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "efa", "") == 0
    host = te.allocate_managed_buffer(MiB)
    data = bytes((i * 7 + 3) & 0xFF for i in range(MiB))
    assert te.write_bytes_to_buffer(host, data, MiB) == 0
    gpu = ptr.value + MiB // 2  # a tensor inside a larger cudaMalloc segment
    assert te.register_memory(gpu, MiB) == 0
    me = "127.0.0.1:%d" % te.get_rpc_port()
    assert te.transfer_sync_write(me, host, gpu, MiB) == 0  # host -> GPU
    back = ctypes.create_string_buffer(MiB)
    assert cu.cuMemcpyDtoH_v2(back, ctypes.c_uint64(gpu), ctypes.c_size_t(MiB)) == 0
    assert back.raw == data
    assert te.write_bytes_to_buffer(host, b"\0" * MiB, MiB) == 0
    assert te.transfer_sync_read(me, host, gpu, MiB) == 0  # GPU -> host
    assert te.read_bytes_from_buffer(host, MiB) == data
    assert te.unregister_memory(gpu) == 0
    assert cu.cuMemFree_v2(ptr) == 0


@need_standin
def test_plain_host_pointer_with_gpu_memory(gpu_daemon):
    # With a driver loaded, a host pointer is still plain host memory (not
    # taken for GPU memory), and moves to and from GPU memory through the
    # copy threads' bounce buffer, at odd offsets and lengths.
    cu = cuda()
    ptr = ctypes.c_uint64()
    assert cu.cuMemAlloc_v2(ctypes.byref(ptr), 4 * MiB) == 0
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "efa", "") == 0
    buf = ctypes.create_string_buffer(3 * MiB)
    plain = ctypes.addressof(buf)
    assert te.register_memory(plain, 3 * MiB) == 0
    assert te.register_memory(ptr.value, 4 * MiB) == 0
    me = "127.0.0.1:%d" % te.get_rpc_port()
    n = 2 * MiB + 333
    data = bytes((i * 13 + 1) & 0xFF for i in range(n))
    ctypes.memmove(plain + 5, data, n)
    assert te.transfer_sync_write(me, plain + 5, ptr.value + 7, n) == 0  # plain -> GPU
    back = ctypes.create_string_buffer(n)
    assert cu.cuMemcpyDtoH_v2(back, ctypes.c_uint64(ptr.value + 7), ctypes.c_size_t(n)) == 0
    assert back.raw == data
    ctypes.memset(plain, 0, 3 * MiB)
    assert te.transfer_sync_read(me, plain + 1, ptr.value + 7, n) == 0  # GPU -> plain
    assert ctypes.string_at(plain + 1, n) == data
    assert te.unregister_memory(ptr.value) == 0
    assert te.unregister_memory(plain) == 0
    assert cu.cuMemFree_v2(ptr) == 0


# ---- transfers ordered on a CUDA stream -----------------------------------

HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def new_stream(cu):
    s = ctypes.c_void_p()
    assert cu.cuStreamCreate(ctypes.byref(s), 1) == 0  # CU_STREAM_NON_BLOCKING
    return s


def hold(cu, stream):
    """Holds the stream until the returned event is set (a host function of the test's own)."""
    gate = threading.Event()
    fn = HOSTFN(lambda _: gate.wait(20))
    assert cu.cuLaunchHostFunc(stream, fn, None) == 0
    gate.fn = fn  # alive while queued
    return gate


def engine_with_gpu(cu, size):
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "efa", "") == 0
    ptr = ctypes.c_uint64()
    assert cu.cuMemAlloc_v2(ctypes.byref(ptr), size) == 0
    assert te.register_memory(ptr.value, size) == 0
    return te, ptr.value


@need_standin
def test_on_cuda_transfers_keep_stream_order(gpu_daemon):
    cu = cuda()
    te, gpu = engine_with_gpu(cu, 2 * MiB)
    me = "127.0.0.1:%d" % te.get_rpc_port()
    host = te.allocate_managed_buffer(MiB)
    s = new_stream(cu)
    gate = hold(cu, s)
    data = bytes((i * 13 + 5) & 0xFF for i in range(MiB))
    src = ctypes.create_string_buffer(data, MiB)
    back = ctypes.create_string_buffer(MiB)
    assert cu.cuMemcpyHtoDAsync_v2(ctypes.c_uint64(gpu), src, ctypes.c_size_t(MiB), s) == 0
    # GPU -> host after the copy that fills the GPU, then host -> the GPU's second half, then a copy reads it.
    assert te.transfer_write_on_cuda(me, gpu, host, MiB, s.value) is None
    te.batch_transfer_read_on_cuda(me, [gpu + MiB], [host], [MiB], stream_ptr=s.value)
    assert cu.cuMemcpyDtoHAsync_v2(back, ctypes.c_uint64(gpu + MiB), ctypes.c_size_t(MiB), s) == 0
    time.sleep(0.2)
    assert te.read_bytes_from_buffer(host, MiB) != data  # the stream is held: nothing ran yet
    gate.set()
    assert cu.cuStreamSynchronize(s) == 0
    assert te.read_bytes_from_buffer(host, MiB) == data
    assert back.raw == data
    assert te.check_on_cuda_transfers() == 0
    # Stream 0 (the default stream: torch's current stream unless one is set), the other two methods.
    other = bytes(reversed(data))
    assert te.write_bytes_to_buffer(host, other, MiB) == 0
    te.transfer_read_on_cuda(me, gpu, host, MiB)
    te.batch_transfer_write_on_cuda(me, [gpu], [host], [MiB], 0)  # writes back what it just read
    assert cu.cuMemcpyDtoH_v2(back, ctypes.c_uint64(gpu), ctypes.c_size_t(MiB)) == 0  # waits for stream 0
    assert back.raw == other
    assert cu.cuStreamSynchronize(None) == 0
    assert te.check_on_cuda_transfers() == 0
    assert cu.cuStreamDestroy_v2(s) == 0
    assert te.unregister_memory(gpu) == 0


@need_standin
def test_on_cuda_failures_surface(gpu_daemon):
    cu = cuda()
    te, gpu = engine_with_gpu(cu, MiB)
    me = "127.0.0.1:%d" % te.get_rpc_port()
    host = te.allocate_managed_buffer(MiB)
    s = new_stream(cu)
    plain = ctypes.create_string_buffer(MiB)  # not registered: the daemon refuses it in the stream
    te.transfer_write_on_cuda(me, ctypes.addressof(plain), host, MiB, s.value)
    assert cu.cuStreamSynchronize(s) == 0
    with pytest.raises(RuntimeError, match="earlier transfer on a CUDA stream failed.*not inside any registered"):
        te.transfer_write_on_cuda(me, gpu, host, MiB, s.value)
    te.transfer_write_on_cuda(me, gpu, host, MiB, s.value)  # reported once: queued now
    te.transfer_read_on_cuda(me, ctypes.addressof(plain), host, MiB, s.value)
    assert cu.cuStreamSynchronize(s) == 0
    assert te.check_on_cuda_transfers() == -14  # EFAULT, logged with the daemon's reason
    assert te.check_on_cuda_transfers() == 0
    # What cannot be queued raises at once, as Mooncake's does.
    with pytest.raises(RuntimeError, match="cuLaunchHostFunc"):
        te.transfer_write_on_cuda(me, gpu, host, MiB, 0xdead0000)
    with pytest.raises(RuntimeError):
        te.transfer_write_on_cuda("127.0.0.1:1", gpu, host, MiB, s.value)  # no such segment
    with pytest.raises(RuntimeError, match="differ in length"):
        te.batch_transfer_write_on_cuda(me, [gpu, gpu], [host], [MiB], s.value)
    with pytest.raises(TypeError):
        te.transfer_write_on_cuda(me, gpu, host, MiB, "stream")
    assert cu.cuStreamDestroy_v2(s) == 0


@need_standin
def test_on_cuda_to_another_host(monkeypatch):
    """Host memory and GPU memory (through the staging buffers) cross hosts in stream order;
    a failure shows through check_on_cuda_transfers."""
    monkeypatch.setenv("MCEFA_CUDA_LIBRARY", STANDIN)
    a, b = start_pair("--cuda_library=" + STANDIN)
    peer = Peer(b.sock, 2 * MiB, hostname="hostb")
    try:
        monkeypatch.setenv("MCEFAD_SOCKET", a.sock)
        cu = cuda()
        te, gpu = engine_with_gpu(cu, MiB)
        host = te.allocate_managed_buffer(MiB)
        te.write_bytes_to_buffer(host, pattern(MiB, 9, MiB), MiB)
        s = new_stream(cu)
        te.transfer_write_on_cuda(peer.target, host, peer.addr + MiB, MiB, s.value)
        assert cu.cuStreamSynchronize(s) == 0
        assert te.check_on_cuda_transfers() == 0
        assert peer.check(MiB, MiB, 9)
        assert cu.cuMemcpyHtoD_v2(ctypes.c_uint64(gpu), pattern(MiB, 12), ctypes.c_size_t(MiB)) == 0
        te.transfer_write_on_cuda(peer.target, gpu, peer.addr, MiB, s.value)
        assert cu.cuStreamSynchronize(s) == 0
        assert te.check_on_cuda_transfers() == 0
        assert peer.check(0, MiB, 12)
        te.batch_transfer_read_on_cuda(peer.target, [gpu], [peer.addr + MiB], [MiB], s.value)
        assert cu.cuStreamSynchronize(s) == 0
        assert te.check_on_cuda_transfers() == 0
        back = ctypes.create_string_buffer(MiB)
        assert cu.cuMemcpyDtoH_v2(back, ctypes.c_uint64(gpu), ctypes.c_size_t(MiB)) == 0
        assert back.raw == pattern(MiB, 9, MiB)
        # A failure (outside the segment) shows through the check.
        te.transfer_write_on_cuda(peer.target, gpu, peer.addr + 2 * MiB, MiB, s.value)
        assert cu.cuStreamSynchronize(s) == 0
        assert te.check_on_cuda_transfers() < 0
        assert cu.cuStreamDestroy_v2(s) == 0
        assert te.unregister_memory(gpu) == 0
    finally:
        peer.stop()
        a.stop()
        b.stop()


@pytest.mark.skipif(mengine.SUPPORT_CUDA, reason="built with CUDA: the tests above cover the methods")
def test_on_cuda_without_cuda(daemon):
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "efa", "") == 0
    host = te.allocate_managed_buffer(MiB)
    me = "127.0.0.1:%d" % te.get_rpc_port()
    for call in (te.transfer_write_on_cuda, te.transfer_read_on_cuda):
        with pytest.raises(RuntimeError, match="built without CUDA"):
            call(me, host, host, 4096, 0)
    with pytest.raises(RuntimeError, match="built without CUDA"):
        te.batch_transfer_write_on_cuda(me, [host], [host], [4096])
