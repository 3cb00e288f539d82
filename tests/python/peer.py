"""A target process for the Python suites: one TransferEngine whose managed
buffer holds pattern 1. Prints "<rpc_port> <buffer address> <segment>", then
answers "check OFF LEN SEED" with ok/bad until "quit"."""
import sys

from mcefa import TransferEngine


def pattern(n, seed, start=0):
    base = bytes((i * 7 + seed) & 0xFF for i in range(256))
    s = start % 256
    return (base * ((s + n) // 256 + 1))[s:s + n]


def main():
    host, size = sys.argv[1], int(sys.argv[2])
    te = TransferEngine()
    assert te.initialize(host, "P2PHANDSHAKE", "tcp", "") == 0
    addr = te.allocate_managed_buffer(size)
    assert addr
    te.write_bytes_to_buffer(addr, pattern(size, 1), size)
    print(te.get_rpc_port(), addr, te._segment_name, flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        off, n, seed = int(w[1]), int(w[2]), int(w[3])
        ok = te.read_bytes_from_buffer(addr + off, n) == pattern(n, seed, off)
        print("ok" if ok else "bad", flush=True)


main()
