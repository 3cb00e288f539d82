"""The shapes of Mooncake's own transfer-engine Python tests and quick start,
written for mcefa (our code, Mooncake's call patterns): a server engine
whose buffer is a numpy array registered with register_memory, a client
engine on another daemon doing rounds of random writes and reads, batch
sync and async forms, probes, and an unknown peer."""
import ctypes
import random

import pytest

from conftest import Peer, engine, pattern

MiB = 1 << 20
SIZE = 8 * MiB


@pytest.fixture
def pair_engines(daemon_pair):
    a, b = daemon_pair
    server = Peer(b.sock, SIZE, hostname="hostb", kind="numpy")
    client = engine(a.sock, "tcp", "hosta")
    local = client.allocate_managed_buffer(SIZE)
    assert local
    yield client, server, local
    server.stop()


def test_quick_start_numpy_server(pair_engines):
    client, server, local = pair_engines
    # The quick start: the server's numpy buffer, the client writes into it.
    data = pattern(MiB, 21)
    assert client.write_bytes_to_buffer(local, data, MiB) == 0
    assert client.transfer_sync_write(server.target, local, server.addr, MiB) == 0
    assert server.check(0, MiB, 21)


def test_random_write_read_rounds(pair_engines):
    client, server, local = pair_engines
    rng = random.Random(1234)
    for r in range(40):
        n = rng.randint(1, 2 * MiB)
        off = rng.randint(0, SIZE - n)
        data = bytes(rng.getrandbits(8) for _ in range(min(n, 4096))) * (n // 4096 + 1)
        data = data[:n]
        assert client.write_bytes_to_buffer(local, data, n) == 0
        assert client.transfer_sync_write(server.target, local, server.addr + off, n) == 0, r
        ctypes.memset(local, 0, n)
        assert client.transfer_sync_read(server.target, local, server.addr + off, n) == 0, r
        assert client.read_bytes_from_buffer(local, n) == data, r


def test_batch_sync_and_async(pair_engines):
    client, server, local = pair_engines
    k, piece = 16, 64 * 1024 + 3
    offs = [i * (piece + 4096) for i in range(k)]
    bufs = [local + o for o in offs]
    peers = [server.addr + o for o in offs]
    for i, o in enumerate(offs):
        client.write_bytes_to_buffer(local + o, pattern(piece, 30 + i, o), piece)
    assert client.batch_transfer_sync_write(server.target, bufs, peers, [piece] * k) == 0
    for i, o in enumerate(offs):
        assert server.check(o, piece, 30 + i), i
    ctypes.memset(local, 0, SIZE)
    bid = client.batch_transfer_async_read(server.target, bufs, peers, [piece] * k)
    assert bid > 0
    assert client.get_batch_transfer_status([bid]) == 0
    for i, o in enumerate(offs):
        assert client.read_bytes_from_buffer(local + o, piece) == pattern(piece, 30 + i, o), i
    bid = client.batch_transfer_async_write(server.target, bufs, peers, [piece] * k)
    assert bid > 0 and client.get_batch_transfer_status([bid]) == 0


def test_probe_and_unknown_peer(pair_engines):
    client, server, local = pair_engines
    assert client.send_probe(server.target) == 0
    assert client.send_probe("nohost.invalid:15000") < 0
    assert client.transfer_sync_write("nohost.invalid:15000", local, 0x1000, 4096) < 0
    assert client.get_first_buffer_address(server.target) == server.addr
    # A range outside what the server registered.
    assert client.transfer_sync_write(server.target, local, server.addr + SIZE, 4096) < 0
