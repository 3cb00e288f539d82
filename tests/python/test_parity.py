"""Mooncake TransferEngine parity: names, flags and return conventions as
Mooncake's Python module (transfer_engine_py.cpp) has them."""
import mcefa
from mcefa import TransferEngine

from conftest import BUILD  # noqa: F401  (puts the build's python dir on sys.path)

MiB = 1 << 20


def engine():
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "efa", "") == 0
    return te


def test_opcode_names_and_module_values():
    op = mcefa.TransferOpcode
    assert op.Read == op.READ == mcefa.Read == mcefa.READ
    assert op.Write == op.WRITE == mcefa.Write == mcefa.WRITE
    assert op.Read != op.Write
    assert TransferEngine.TransferOpcode is op
    assert int(op.Write) == 1 and int(op.Read) == 0


def test_support_flags_tell_the_truth():
    assert mcefa.SUPPORT_EFA is True
    assert mcefa.SUPPORT_CUDA == bool(mcefa._mcefa.HAVE_CUDA)
    assert not (mcefa.SUPPORT_HIP or mcefa.SUPPORT_MNNVL or mcefa.SUPPORT_INTRA_NVLINK)


def test_get_engine(daemon):
    te = engine()
    inner = te.get_engine()
    assert isinstance(inner, mcefa.InnerTransferEngine) and inner.engine is te
    assert te.get_engine_ptr() == 0  # there is no C++ engine in this process


def test_managed_buffer_conventions(daemon):
    te = engine()
    a = te.allocate_managed_buffer(0)  # Mooncake hands out a smallest buffer
    assert a != 0
    assert te.free_managed_buffer(a, 0) == 0
    b = te.allocate_managed_buffer(MiB)
    assert te.unregister_memory(b) == 0
    assert te.free_managed_buffer(b, MiB) == 0  # after a manual unregister: 0, and freed
    assert te.free_managed_buffer(b, MiB) < 0  # but not twice


def test_write_bytes_from_str(daemon):
    te = engine()
    a = te.allocate_managed_buffer(4096)
    assert te.write_bytes_to_buffer(a, "héllo", 6) == 0
    assert te.read_bytes_from_buffer(a, 6) == "héllo".encode()
    assert te.free_managed_buffer(a, 4096) == 0


def test_batch_register_memory_takes_location(daemon):
    te = engine()
    bufs = [te.allocate_managed_buffer(MiB), te.allocate_managed_buffer(MiB)]
    assert te.batch_unregister_memory(bufs) == 0
    assert te.batch_register_memory(bufs, [MiB, MiB], "cpu:0") == 0
    assert te.batch_unregister_memory(bufs) == 0
    assert te.batch_register_memory(bufs, [MiB, MiB]) == 0  # location defaults to "*"
    for b in bufs:
        assert te.free_managed_buffer(b, MiB) == 0
