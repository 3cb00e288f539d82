"""A target process for the Python suites: one TransferEngine whose buffer
holds pattern 1. Prints "<rpc_port> <buffer address> <segment>", then answers
"check OFF LEN SEED" with ok/bad until "quit". The buffer is a managed one, or
with a third argument plain memory of that kind (registered with
register_memory): bytearray, mmap, numpy, malloc; or gpu: device memory of
the CUDA driver named by $MCEFA_CUDA_LIBRARY (the tests' stand-in)."""
import sys

from mcefa import TransferEngine

from conftest import DriverGpu, pattern, plain_buffer


def main():
    host, size = sys.argv[1], int(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) > 3 else "managed"
    te = TransferEngine()
    assert te.initialize(host, "P2PHANDSHAKE", "tcp", "") == 0
    keep = gpu = None
    if kind == "managed":
        addr = te.allocate_managed_buffer(size)
    elif kind == "gpu":
        import os
        gpu = DriverGpu(os.environ["MCEFA_CUDA_LIBRARY"], size)
        addr = gpu.addr
        assert te.register_memory(addr, size) == 0
    else:
        keep, addr = plain_buffer(kind, size)
        assert te.register_memory(addr, size) == 0
    assert addr
    if gpu:
        gpu.write(addr, pattern(size, 1))
    else:
        te.write_bytes_to_buffer(addr, pattern(size, 1), size)
    print(te.get_rpc_port(), addr, te._segment_name, flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        off, n, seed = int(w[1]), int(w[2]), int(w[3])
        got = gpu.read(addr + off, n) if gpu else te.read_bytes_from_buffer(addr + off, n)
        print("ok" if got == pattern(n, seed, off) else "bad", flush=True)


main()
