"""GPU memory through Mooncake's TransferEngine API: register_memory of a
device pointer (what vLLM and SGLang pass: a torch tensor's data_ptr()),
then transfers into and out of it. The device memory comes from the CUDA
driver stand-in (build/tests/libcuda-standin.so), which checks mcefa's
bookkeeping, not a GPU."""
import ctypes
import os

import pytest

from conftest import BUILD, Daemon

from mcefa import TransferEngine

MiB = 1 << 20
STANDIN = os.path.join(BUILD, "tests", "libcuda-standin.so")

pytestmark = pytest.mark.skipif(not os.path.exists(STANDIN),
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
