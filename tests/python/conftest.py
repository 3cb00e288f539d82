"""Fixtures that start real mcefad daemons for the Python suites."""
import atexit
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

BUILD = os.environ.get("MCEFA_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BUILD = os.path.abspath(BUILD)
sys.path.insert(0, os.path.join(BUILD, "python"))


def free_ports(count):
    """`count` consecutive TCP ports free now, below the ephemeral range."""
    import socket
    for _ in range(200):
        base = random.randrange(10000, 30000 - count)
        try:
            for k in range(count):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", base + k))
            return base
        except OSError:
            continue
    raise RuntimeError("no free TCP ports for the test daemons")


class Daemon:
    def __init__(self, *flags, name="d"):
        self.dir = tempfile.mkdtemp(prefix="mcefa-py-")
        self.sock = os.path.join(self.dir, "mcefad.sock")
        self.log = os.path.join(self.dir, "mcefad.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([os.path.join(BUILD, "mcefad"), "--socket_path=" + self.sock,
                                          "--log_level=debug", "--metrics_listen=", *flags], stderr=log)
        for _ in range(500):
            if os.path.exists(self.sock):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("mcefad exited at start: " + open(self.log).read())
            time.sleep(0.01)
        raise RuntimeError("mcefad did not start")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(20)
        else:
            rc = self.proc.returncode
        log = open(self.log).read()
        shutil.rmtree(self.dir, ignore_errors=True)
        assert rc == 0, "mcefad exited with %s:\n%s" % (rc, log[-4000:])


@pytest.fixture
def daemon():
    d = Daemon("--provider=none")
    os.environ["MCEFAD_SOCKET"] = d.sock
    yield d
    os.environ.pop("MCEFAD_SOCKET", None)
    d.stop()


_secret = None


def peer_secret():
    """The run's cluster secret: run-all.sh exports one; a run by hand makes its own."""
    global _secret
    path = os.environ.get("MCEFAD_PEER_SECRET_FILE")
    if path:
        return path
    if _secret is None:
        d = tempfile.mkdtemp(prefix="mcefa-py-secret-")
        atexit.register(shutil.rmtree, d, True)
        _secret = os.path.join(d, "peer.secret")
        fd = os.open(_secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(32).hex().encode())
        os.close(fd)
    return _secret


def start_pair(*extra, extra_a=(), extra_b=(), timeout_ms=5000):
    """Two daemons, hosta and hostb, reaching each other through libfabric
    (tcp;ofi_rxm on lo): extra for both, extra_a / extra_b for one."""
    if subprocess.call(["fi_info", "-p", "tcp;ofi_rxm"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        pytest.skip("libfabric's tcp;ofi_rxm provider is not available here")
    pa = free_ports(2)
    pb = pa + 1
    common = ["--provider=tcp;ofi_rxm", "--nics=lo", "--request_timeout_ms=%d" % timeout_ms,
              "--peer_secret_file=" + peer_secret(), *extra]
    a = Daemon(*common, *extra_a, "--hostname=hosta", "--peer_port=%d" % pa, "--peer_hosts=hostb=127.0.0.1:%d" % pb)
    b = Daemon(*common, *extra_b, "--hostname=hostb", "--peer_port=%d" % pb, "--peer_hosts=hosta=127.0.0.1:%d" % pa)
    return a, b


@pytest.fixture
def daemon_pair():
    a, b = start_pair()
    yield a, b
    a.stop()
    b.stop()


class Peer:
    """Another process with its own TransferEngine (tests/python/peer.py)."""

    def __init__(self, sock, size, hostname="127.0.0.1", kind="managed"):
        env = dict(os.environ, MCEFAD_SOCKET=sock, PYTHONPATH=os.path.join(BUILD, "python"))
        self.proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "peer.py"),
                                      hostname, str(size), kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True)
        line = self.proc.stdout.readline()
        assert line, "peer process failed to start"
        port, addr, seg = line.split()
        self.port, self.addr, self.segment = int(port), int(addr), seg
        self.target = "%s:%d" % (hostname, self.port)

    def check(self, off, length, seed):
        self.proc.stdin.write("check %d %d %d\n" % (off, length, seed))
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip() == "ok"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


def pattern(n, seed, start=0):
    """n bytes of a seed's pattern as laid from offset start (fast to build)."""
    base = bytes((i * 7 + seed) & 0xFF for i in range(256))
    s = start % 256
    return (base * ((s + n) // 256 + 1))[s:s + n]


def engine(sock=None, protocol="efa", host="127.0.0.1"):
    """An initialized TransferEngine on the daemon at sock (else $MCEFAD_SOCKET)."""
    from mcefa import TransferEngine
    if sock:
        os.environ["MCEFAD_SOCKET"] = sock
    te = TransferEngine()
    assert te.initialize(host, "P2PHANDSHAKE", protocol, "") == 0
    return te


@pytest.fixture
def pair():
    """Two daemons over tcp;ofi_rxm that the test may kill: stop() in the
    end tolerates a daemon the test killed itself."""
    made = []

    def make(*extra_a, extra_b=(), common_extra=()):
        a, b = start_pair(*common_extra, extra_a=extra_a, extra_b=extra_b, timeout_ms=3000)
        made.extend([a, b])
        return a, b

    yield make
    for d in made:
        if d.alive():
            d.stop()
        else:
            shutil.rmtree(d.dir, ignore_errors=True)


def staging_idle(sock, wait_s=15):
    """The daemon's staging slots all come back (after a lost exchange it
    keeps them one request timeout)."""
    import mcefa
    c = mcefa.Client(sock)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        st = c.status()
        if st["staging_in_use"] == 0 and st["staging_waiting"] == 0:
            c.close()
            return True
        time.sleep(0.1)
    c.close()
    return False


class DriverGpu:
    """Device memory of this process through a CUDA driver library (the
    tests' stand-in), written and read by the driver's copies."""

    def __init__(self, library, size):
        import ctypes
        self.ct = ctypes
        cu = self.cu = ctypes.CDLL(library)
        assert cu.cuInit(0) == 0
        dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
        assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
        assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
        assert cu.cuCtxSetCurrent(ctx) == 0
        assert cu.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(size)) == 0
        self.addr = ptr.value

    def write(self, addr, data):
        ct = self.ct
        assert self.cu.cuMemcpyHtoD_v2(ct.c_uint64(addr), data, ct.c_size_t(len(data))) == 0

    def read(self, addr, n):
        ct = self.ct
        out = ct.create_string_buffer(n)
        assert self.cu.cuMemcpyDtoH_v2(out, ct.c_uint64(addr), ct.c_size_t(n)) == 0
        return out.raw


def plain_buffer(kind, size):
    """Ordinary memory of this process of one kind (not from mcefa_alloc), zeroed:
    (the object that keeps it alive, its address)."""
    import ctypes
    import mmap
    if kind == "bytearray":
        buf = bytearray(size)
        return buf, ctypes.addressof((ctypes.c_char * size).from_buffer(buf))
    if kind == "mmap":
        buf = mmap.mmap(-1, size)
        return buf, ctypes.addressof((ctypes.c_char * size).from_buffer(buf))
    if kind == "numpy":
        import numpy
        buf = numpy.zeros(size, dtype=numpy.uint8)
        return buf, buf.ctypes.data
    if kind == "malloc":
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        addr = libc.malloc(size)
        ctypes.memset(addr, 0, size)
        return addr, addr
    raise ValueError(kind)
