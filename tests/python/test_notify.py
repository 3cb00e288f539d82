"""Mooncake's notifications over mcefad: transfer_sync and batch_transfer_sync
with notify=TransferNotify(name, msg) deliver (name, msg) to the target
engine's get_notifies() once the data is there; get_notifies() returns a list
of TransferNotify, oldest first, each once."""
import pytest

from conftest import engine

import mcefa
from mcefa import TransferNotify, TransferOpcode

MiB = 1 << 20


def test_transfer_notify_shape():
    n = TransferNotify("req-1", "done")
    assert (n.name, n.msg) == ("req-1", "done")
    assert TransferNotify().name == "" and TransferNotify().msg == ""  # as Mooncake's default constructor
    assert n == TransferNotify("req-1", "done") and n != TransferNotify("req-1", "other")
    assert "req-1" in repr(n)
    n.msg = "changed"  # read-write, as Mooncake's def_readwrite
    assert n.msg == "changed"


def test_transfer_sync_with_notify_same_host(daemon):
    sender, target = engine(), engine()
    src = sender.allocate_managed_buffer(MiB)
    dst = target.allocate_managed_buffer(MiB)
    name = "127.0.0.1:%d" % target.get_rpc_port()
    sender.write_bytes_to_buffer(src, b"kv-block-0", 10)
    assert target.get_notifies() == []
    assert sender.transfer_sync(name, src, dst, 10, TransferOpcode.Write, TransferNotify("req-7", "layer 0")) == 0
    notes = target.get_notifies()
    assert isinstance(notes, list) and len(notes) == 1
    assert isinstance(notes[0], TransferNotify)
    assert (notes[0].name, notes[0].msg) == ("req-7", "layer 0")
    assert target.read_bytes_from_buffer(dst, 10) == b"kv-block-0"  # the data came first
    assert target.get_notifies() == []  # taken once
    assert sender.get_notifies() == []  # the sender gets none
    # Keyword form, a read, and text that is not ASCII.
    assert sender.transfer_sync(name, src, dst, 10, TransferOpcode.Read,
                                notify=TransferNotify("lecture", "données")) == 0
    assert target.get_notifies() == [TransferNotify("lecture", "données")]


def test_batch_transfer_sync_with_notify_other_host(daemon_pair):
    a, b = daemon_pair
    target = engine(b.sock)
    dst = target.allocate_managed_buffer(4 * MiB)
    sender = engine(a.sock)
    src = sender.allocate_managed_buffer(4 * MiB)
    name = "hostb:%d" % target.get_rpc_port()
    blocks = [bytes([i + 1]) * MiB for i in range(4)]
    for i, blk in enumerate(blocks):
        sender.write_bytes_to_buffer(src + i * MiB, blk, MiB)
    for k in range(20):
        rc = sender.batch_transfer_sync(name, [src + i * MiB for i in range(4)], [dst + i * MiB for i in range(4)],
                                        [MiB] * 4, TransferOpcode.Write, TransferNotify("batch", str(k)))
        assert rc == 0
    notes = target.get_notifies()
    assert [n.msg for n in notes] == [str(k) for k in range(20)]  # in order, none lost
    assert all(n.name == "batch" for n in notes)
    for i, blk in enumerate(blocks):
        assert target.read_bytes_from_buffer(dst + i * MiB, MiB) == blk
    assert target.get_notifies() == []


def test_failed_transfer_sends_no_notification(daemon):
    sender, target = engine(), engine()
    src = sender.allocate_managed_buffer(4096)
    dst = target.allocate_managed_buffer(4096)
    name = "127.0.0.1:%d" % target.get_rpc_port()
    # Past the end of the target's buffer: the transfer fails, nothing is sent.
    assert sender.transfer_sync(name, src, dst + MiB, 64, TransferOpcode.Write, TransferNotify("n", "m")) < 0
    assert sender.batch_transfer_sync(name, [src], [dst + MiB], [64], TransferOpcode.Write,
                                      TransferNotify("n", "m")) < 0
    # No transfer at all: refused, as Mooncake refuses an empty submission.
    assert sender.batch_transfer_sync(name, [], [], [], TransferOpcode.Write, TransferNotify("n", "m")) < 0
    assert target.get_notifies() == []


def test_notify_bad_input(daemon):
    sender, target = engine(), engine()
    src = sender.allocate_managed_buffer(4096)
    dst = target.allocate_managed_buffer(4096)
    name = "127.0.0.1:%d" % target.get_rpc_port()
    with pytest.raises(TypeError):  # as pybind11 refuses what is not a TransferNotify
        sender.transfer_sync(name, src, dst, 8, TransferOpcode.Write, ("n", "m"))
    with pytest.raises(TypeError):
        sender.transfer_sync(name, src, dst, 8, TransferOpcode.Write, TransferNotify(1, "m"))
    # Too long: refused before anything moves, with a negative value.
    sender.write_bytes_to_buffer(src, b"x" * 8, 8)
    assert sender.transfer_sync(name, src, dst, 8, TransferOpcode.Write, TransferNotify("n" * 257, "m")) == -90
    assert sender.transfer_sync(name, src, dst, 8, TransferOpcode.Write, TransferNotify("n", "m" * 65537)) == -90
    assert target.read_bytes_from_buffer(dst, 8) == b"\0" * 8
    # The largest that fits, and bytes that are not UTF-8 (surrogate escapes).
    big = TransferNotify("n" * 256, "m" * 65536)
    assert sender.transfer_sync(name, src, dst, 8, TransferOpcode.Write, big) == 0
    assert sender.transfer_sync(name, src, dst, 8, TransferOpcode.Write, TransferNotify(b"\xffraw", b"\x00\xfe")) == 0
    notes = target.get_notifies()
    assert notes[0] == big
    assert notes[1].name.encode("utf-8", "surrogateescape") == b"\xffraw"
    assert notes[1].msg.encode("utf-8", "surrogateescape") == b"\x00\xfe"


def test_client_binding(daemon):
    """mcefa.Client's own surface: notify, transfer(notify=...), get_notifies as bytes."""
    owner, sender = mcefa.Client(daemon.sock), mcefa.Client(daemon.sock)
    buf = owner.alloc(4096)
    owner.register(buf, 4096)
    seg = owner.export_segment(None)
    local = sender.alloc(4096)
    sender.register(local, 4096)
    h = sender.open_segment(seg)
    sender.notify(h, "a", b"1")
    sender.transfer([(mcefa.WRITE, local, h, buf, 64)], 5000, notify=(b"b", "2"))
    for i in range(600):  # more than one call of the library takes
        sender.notify(h, "c", str(i))
    got = owner.get_notifies()
    assert got[:2] == [(b"a", b"1"), (b"b", b"2")]
    assert [m for _, m in got[2:]] == [str(i).encode() for i in range(600)]
    assert owner.get_notifies() == []
    with pytest.raises(mcefa.Error) as e:
        sender.notify(12345, "n", "m")
    assert e.value.errno == 9 and "not open" in e.value.strerror  # EBADF
    with pytest.raises(TypeError):
        sender.transfer([(mcefa.WRITE, local, h, buf, 64)], 5000, notify="nm")
    owner.close()
    # The owner is gone: its segment takes no more.
    with pytest.raises(mcefa.Error) as e:
        sender.notify(h, "n", "m")
    assert e.value.errno == 107 and "gone" in e.value.strerror  # ENOTCONN
