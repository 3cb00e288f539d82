"""Mooncake-compatible TransferEngine on top of mcefad.

Method names, arguments, defaults and return conventions follow Mooncake's
Python ``TransferEngine`` (0 on success, a negative value on failure; batch
ids > 0) as vLLM's MooncakeConnector and SGLang's mooncake backend call them.
The protocol argument ("efa", "tcp") is accepted and recorded; which provider
carries the bytes is the daemon's configuration, not a second engine.
"""
import enum
import logging
import os
import threading

from . import _mcefa

log = logging.getLogger("mcefa")

# Mooncake's transfer_check_status codes.
_DONE, _RUNNING, _FAILED, _TIMEOUT = 1, 0, -1, -2


class TransferOpcode(enum.IntEnum):
    # Mooncake's member names; READ and WRITE stay as aliases.
    Read = _mcefa.READ
    Write = _mcefa.WRITE
    READ = _mcefa.READ
    WRITE = _mcefa.WRITE


# Mooncake exports the opcode's values at module level too.
Read = TransferOpcode.Read
Write = TransferOpcode.Write

# What this build can do, under Mooncake's names. EFA: the daemon drives EFA
# NICs (provider efa); CUDA: GPU memory can be registered (libmcefa built
# with the CUDA headers; the driver is loaded at run time). The others are
# transports mcefa does not have.
SUPPORT_EFA = True
SUPPORT_CUDA = bool(getattr(_mcefa, "HAVE_CUDA", 0))
SUPPORT_HIP = False
SUPPORT_MNNVL = False
SUPPORT_INTRA_NVLINK = False


class InnerTransferEngine:
    """What get_engine() returns: Mooncake hands out its C++ engine here; mcefa
    has none in the process (the daemon moves the bytes), so this names the
    TransferEngine it came from and nothing else."""

    def __init__(self, engine):
        self.engine = engine

    def __repr__(self):
        return "<mcefa InnerTransferEngine of segment %s>" % self.engine._segment_name


class TransferNotify:
    """Mooncake's TransferNotify: a name and a message for the owner of the
    target segment, delivered once the transfer's data is there. Both are
    str (bytes are accepted when sending); received bytes that are not UTF-8
    come back as surrogate escapes, so nothing is lost."""

    def __init__(self, name="", msg=""):
        self.name = name
        self.msg = msg

    def __eq__(self, other):
        if not isinstance(other, TransferNotify):
            return NotImplemented
        return (self.name, self.msg) == (other.name, other.msg)

    def __repr__(self):
        return "TransferNotify(name=%r, msg=%r)" % (self.name, self.msg)


def _notify_arg(notify):
    """(name, msg) for the binding, or None; TypeError as pybind11 raises
    for anything that is not a TransferNotify."""
    if notify is None:
        return None
    if not isinstance(notify, TransferNotify):
        raise TypeError("notify must be a TransferNotify, not %s" % type(notify).__name__)
    for what, v in (("name", notify.name), ("msg", notify.msg)):
        if not isinstance(v, (str, bytes)):
            raise TypeError("TransferNotify.%s must be a str, not %s" % (what, type(v).__name__))
    return (notify.name, notify.msg)


def _text(b):
    return b.decode("utf-8", "surrogateescape")


def _neg(err):
    return -err.errno if isinstance(err, OSError) and err.errno else -1


def _check_len(n, what="length"):
    # TypeError for all three, as Mooncake's pybind11 layer raises for an
    # argument that does not convert to size_t.
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("%s must be an int, not %s" % (what, type(n).__name__))
    if n < 0:
        raise TypeError("%s must not be negative (got %d)" % (what, n))
    if n >= 1 << 64:
        raise TypeError("%s does not fit in 64 bits" % what)
    return n


class TransferEngine:
    """One connection to the local mcefad, one exported segment."""

    TransferOpcode = TransferOpcode

    def __init__(self):
        self._client = None
        self._lock = threading.Lock()
        self._segments = {}      # target name -> segment handle
        self._batches = {}       # batch id -> _mcefa.Batch
        self._next_batch = 1
        self._rpc_port = 0
        self._segment_name = ""
        self._local_hostname = ""
        self._protocol = ""
        self._managed = {}       # address -> length, from allocate_managed_buffer
        self._open_lock = threading.Lock()
        self._zombies = []       # batches that timed out in flight: freed later
        self.timeout_ms = int(float(os.environ.get("MC_TRANSFER_TIMEOUT", "30")) * 1000)

    # ---- set-up -------------------------------------------------------------

    def initialize(self, local_hostname, metadata_server, protocol, device_name):
        for name, v in (("local_hostname", local_hostname), ("metadata_server", metadata_server),
                        ("protocol", protocol), ("device_name", device_name)):
            if not isinstance(v, str):
                raise TypeError("%s must be a str, not %s" % (name, type(v).__name__))
        if metadata_server.upper() not in ("P2PHANDSHAKE", "P2P"):
            log.error("mcefa: metadata_server %r is not supported: mcefad daemons exchange segment descriptions "
                      "themselves; use 'P2PHANDSHAKE'", metadata_server)
            return -1
        if protocol not in ("efa", "tcp", "rdma", ""):
            log.error("mcefa: protocol %r is not supported (use 'efa' or 'tcp'; the daemon's provider decides)",
                      protocol)
            return -1
        if self._client is not None:
            log.error("mcefa: initialize called twice on one TransferEngine")
            return -1
        try:
            self._client = _mcefa.Client(os.environ.get("MCEFAD_SOCKET"), "mooncake-compat")
            self._segment_name = self._client.export_segment(None)
        except _mcefa.Error as e:
            log.error("mcefa: initialize failed: %s", e.strerror)
            self._client = None
            return _neg(e)
        self._rpc_port = int(self._segment_name.rsplit(":", 1)[1])
        self._local_hostname = local_hostname.rsplit(":", 1)[0] if local_hostname.count(":") == 1 else local_hostname
        self._protocol = protocol
        log.info("mcefa: engine ready as segment %s (local hostname %s, protocol %s)", self._segment_name,
                 self._local_hostname, protocol or "daemon default")
        return 0

    def initialize_ext(self, local_hostname, metadata_server, protocol, device_name, metadata_type="p2p"):
        return self.initialize(local_hostname, metadata_server, protocol, device_name)

    def get_rpc_port(self):
        return self._rpc_port

    def get_local_hostname(self):
        return self._local_hostname

    def _need(self):
        if self._client is None:
            raise RuntimeError("TransferEngine is not initialized: call initialize() first")
        return self._client

    # ---- memory -------------------------------------------------------------

    def register_memory(self, buffer_addr, capacity, location="*"):
        c = self._need()
        _check_len(capacity, "capacity")
        try:
            c.register(buffer_addr, capacity)
            return 0
        except _mcefa.Error as e:
            log.error("mcefa: register_memory(0x%x, %d) failed: %s", buffer_addr, capacity, e.strerror)
            return _neg(e)

    def unregister_memory(self, buffer_addr):
        c = self._need()
        try:
            c.unregister(buffer_addr)
            return 0
        except _mcefa.Error as e:
            log.error("mcefa: unregister_memory(0x%x) failed: %s", buffer_addr, e.strerror)
            return _neg(e)

    def batch_register_memory(self, buffer_addresses, capacities, location="*"):
        if len(buffer_addresses) != len(capacities):
            raise ValueError("buffer_addresses and capacities differ in length")
        rc = 0
        for a, n in zip(buffer_addresses, capacities):
            r = self.register_memory(a, n)
            rc = rc or r
        return rc

    def batch_unregister_memory(self, buffer_addresses):
        rc = 0
        for a in buffer_addresses:
            r = self.unregister_memory(a)
            rc = rc or r
        return rc

    def allocate_managed_buffer(self, length):
        """Shareable host memory, registered: returns its address, 0 on failure.
        A length of 0 gets a (smallest) buffer, as Mooncake's allocator does."""
        c = self._need()
        _check_len(length)
        length = length or 1
        try:
            a = c.alloc(length)
        except _mcefa.Error as e:
            log.error("mcefa: allocate_managed_buffer(%d) failed: %s", length, e.strerror)
            return 0
        try:
            c.register(a, length)
        except _mcefa.Error as e:
            log.error("mcefa: allocate_managed_buffer(%d): registering failed: %s", length, e.strerror)
            c.free(a)
            return 0
        with self._lock:
            self._managed[a] = length
        return a

    def free_managed_buffer(self, buffer_addr, length):
        c = self._need()
        with self._lock:
            if self._managed.get(buffer_addr) is None:
                log.error("mcefa: free_managed_buffer(0x%x): not from allocate_managed_buffer (or freed twice)",
                          buffer_addr)
                return -1
            del self._managed[buffer_addr]
        try:
            try:
                c.unregister(buffer_addr)
            except _mcefa.Error as e:
                if e.errno != 2:  # ENOENT: unregistered by hand already, as Mooncake allows
                    raise
            c.free(buffer_addr)
            return 0
        except _mcefa.Error as e:
            log.error("mcefa: free_managed_buffer(0x%x) failed: %s", buffer_addr, e.strerror)
            return _neg(e)

    def write_bytes_to_buffer(self, dest_address, src_ptr, length):
        _check_len(length)
        if not dest_address:
            return -1
        # Mooncake takes str (as UTF-8) as well as bytes-like sources.
        data = (src_ptr.encode() if isinstance(src_ptr, str) else bytes(src_ptr))[:length]
        _mcefa.write_bytes(dest_address, data)
        return 0

    def read_bytes_from_buffer(self, source_address, length):
        _check_len(length)
        return _mcefa.read_bytes(source_address, length)

    # ---- segments -----------------------------------------------------------

    def _segment(self, target):
        if not isinstance(target, str):
            raise TypeError("target must be a 'host:port' str, not %s" % type(target).__name__)
        with self._lock:
            h = self._segments.get(target)
        if h is not None:
            return h
        # One open per target even when many threads meet a new one at once.
        with self._open_lock:
            with self._lock:
                h = self._segments.get(target)
            if h is None:
                h = self._need().open_segment(target)
                with self._lock:
                    self._segments[target] = h
        return h

    def _reopen(self, target):
        with self._lock:
            self._segments.pop(target, None)
        return self._segment(target)

    def get_first_buffer_address(self, segment_name):
        try:
            regions = self._need().segment_regions(self._reopen(segment_name))
        except _mcefa.Error as e:
            log.error("mcefa: get_first_buffer_address(%s) failed: %s", segment_name, e.strerror)
            return 0
        return regions[0][0] if regions else 0

    def warmup_efa_segment(self, segment_name):
        try:
            self._need().warmup(segment_name)
            return 0
        except _mcefa.Error as e:
            log.error("mcefa: warmup_efa_segment(%s) failed: %s", segment_name, e.strerror)
            return _neg(e)

    def send_probe(self, peer_server_name):
        """0 if the peer's segment can be reached now, non-zero otherwise."""
        try:
            self._reopen(peer_server_name)
            return 0
        except _mcefa.Error as e:
            log.warning("mcefa: probe of %s failed: %s", peer_server_name, e.strerror)
            return _neg(e)

    def get_local_topology(self, device_name=None):
        """Mooncake's matrix as a JSON str: {"cpu:N": [[preferred NICs], [other NICs]], "cuda:K": [...]},
        from the daemon's NICs and PCI topology; K is this process's CUDA ordinal. device_name: a
        comma-separated list of NIC names to keep (None or "": all). As in Mooncake it works before
        initialize() too (over a connection of its own)."""
        if device_name is not None and not isinstance(device_name, str):
            raise TypeError("device_name must be a str or None, not %s" % type(device_name).__name__)
        c = self._client
        own = c is None
        try:
            if own:
                c = _mcefa.Client(os.environ.get("MCEFAD_SOCKET"), "mooncake-topology")
            return c.local_topology(device_name)
        except _mcefa.Error as e:
            raise RuntimeError("get_local_topology: %s" % e.strerror) from e
        finally:
            if own and c is not None:
                c.close()

    def get_engine(self):
        return InnerTransferEngine(self)

    def get_engine_ptr(self):
        """Mooncake's raw C++ engine pointer: there is none in an mcefa process
        (the daemon moves the bytes), so 0, which no caller can mistake for one."""
        log.warning("mcefa: get_engine_ptr: no in-process C++ engine exists; returning 0")
        return 0

    def get_notifies(self):
        """The notifications other engines sent to this engine's segment since
        the last call, oldest first, as TransferNotify; [] when there are none
        (or, as in Mooncake, when taking them failed: that is logged)."""
        c = self._need()
        try:
            notes = c.get_notifies()
        except _mcefa.Error as e:
            log.error("mcefa: get_notifies failed: %s", e.strerror)
            return []
        return [TransferNotify(_text(n), _text(m)) for n, m in notes]

    # ---- transfers ----------------------------------------------------------

    def _ops(self, target, buffers, peers, lengths, opcode):
        if not (len(buffers) == len(peers) == len(lengths)):
            raise _mcefa.Error(22, "buffers, peer addresses and lengths differ in length (%d, %d, %d)"
                               % (len(buffers), len(peers), len(lengths)))
        h = self._segment(target)
        return [(int(opcode), b, h, p, _check_len(n)) for b, p, n in zip(buffers, peers, lengths)]

    def _sync(self, target, buffers, peers, lengths, opcode, notify=None):
        self._need()
        self._reap()
        note = _notify_arg(notify)
        try:
            ops = self._ops(target, buffers, peers, lengths, opcode)
            if not ops:
                if note is not None:
                    # As Mooncake's submitTransferWithNotify: a notification
                    # goes with transfers, so it needs at least one.
                    log.error("mcefa: a transfer with a notification needs at least one buffer")
                    return -1
                return 0
            # The library sends the notification only once every transfer
            # completed, so the target sees it after the data.
            try:
                self._client.transfer(ops, self.timeout_ms, note)
            except _mcefa.Error as e:
                # A peer daemon restart makes the cached handle stale: reopen
                # once. Whether the transfers or the notification met it, what
                # they reached is gone, so both go again to the new owner.
                if e.errno not in (116, 107):  # ESTALE, ENOTCONN
                    raise
                h = self._reopen(target)
                self._client.transfer([(o, b, h, p, n) for o, b, _, p, n in ops], self.timeout_ms, note)
            return 0
        except _mcefa.Error as e:
            log.error("mcefa: transfer to %s failed: %s", target, e.strerror)
            return _neg(e)

    def transfer_sync_write(self, target_hostname, buffer, peer_buffer_address, length, transport_hint=""):
        return self._sync(target_hostname, [buffer], [peer_buffer_address], [length], TransferOpcode.WRITE)

    def transfer_sync_read(self, target_hostname, buffer, peer_buffer_address, length, transport_hint=""):
        return self._sync(target_hostname, [buffer], [peer_buffer_address], [length], TransferOpcode.READ)

    def transfer_sync(self, target_hostname, buffer, peer_buffer_address, length, opcode, notify=None,
                      transport_hint=""):
        return self._sync(target_hostname, [buffer], [peer_buffer_address], [length], opcode, notify)

    def batch_transfer_sync_write(self, target_hostname, buffers, peer_buffer_addresses, lengths, transport_hint=""):
        return self._sync(target_hostname, buffers, peer_buffer_addresses, lengths, TransferOpcode.WRITE)

    def batch_transfer_sync_read(self, target_hostname, buffers, peer_buffer_addresses, lengths, transport_hint=""):
        return self._sync(target_hostname, buffers, peer_buffer_addresses, lengths, TransferOpcode.READ)

    def batch_transfer_sync(self, target_hostname, buffers, peer_buffer_addresses, lengths, opcode, notify=None,
                            transport_hint=""):
        return self._sync(target_hostname, buffers, peer_buffer_addresses, lengths, opcode, notify)

    def _async(self, target, buffers, peers, lengths, opcode, failure):
        c = self._need()
        self._reap()
        try:
            ops = self._ops(target, buffers, peers, lengths, opcode)
            if not ops:
                b = None  # nothing to move: done at once
            else:
                try:
                    b = c.submit(ops)
                except _mcefa.Error as e:
                    if e.errno not in (116, 107):  # ESTALE, ENOTCONN: the peer restarted
                        raise
                    h = self._reopen(target)
                    b = c.submit([(o, l, h, p, n) for o, l, _, p, n in ops])
        except _mcefa.Error as e:
            log.error("mcefa: submit to %s failed: %s", target, e.strerror)
            return failure if failure is not None else _neg(e)
        with self._lock:
            bid = self._next_batch
            self._next_batch += 1
            self._batches[bid] = b
        return bid

    def batch_transfer_async_write(self, target_hostname, buffers, peer_buffer_addresses, lengths, transport_hint=""):
        return self._async(target_hostname, buffers, peer_buffer_addresses, lengths, TransferOpcode.WRITE, 0)

    def batch_transfer_async_read(self, target_hostname, buffers, peer_buffer_addresses, lengths, transport_hint=""):
        return self._async(target_hostname, buffers, peer_buffer_addresses, lengths, TransferOpcode.READ, 0)

    def batch_transfer_async(self, target_hostname, buffers, peer_buffer_addresses, lengths, opcode,
                             transport_hint=""):
        return self._async(target_hostname, buffers, peer_buffer_addresses, lengths, opcode, 0)

    def transfer_submit_write(self, target_hostname, buffer, peer_buffer_address, length, transport_hint=""):
        return self._async(target_hostname, [buffer], [peer_buffer_address], [length], TransferOpcode.WRITE, None)

    def transfer_submit_read(self, target_hostname, buffer, peer_buffer_address, length, transport_hint=""):
        return self._async(target_hostname, [buffer], [peer_buffer_address], [length], TransferOpcode.READ, None)

    # ---- transfers ordered on a CUDA stream (Mooncake's *_on_cuda) -----------

    def _on_cuda(self, what, target, buffers, peers, lengths, opcode, stream_ptr):
        """Queues the transfers on the CUDA stream stream_ptr (an int: a cudaStream_t such as
        torch.cuda.current_stream().cuda_stream; 0 the default stream of the current device): they start once
        the stream's earlier work is done, and its later work waits for them. Returns None, as Mooncake does;
        raises RuntimeError when they cannot be queued, or when an earlier *_on_cuda transfer failed and was not
        yet reported (check_on_cuda_transfers reports it without raising)."""
        c = self._need()
        if not SUPPORT_CUDA:
            raise RuntimeError("mcefa: %s: this mcefa was built without CUDA, so transfers cannot be ordered on "
                               "a CUDA stream; rebuild libmcefa with the CUDA headers" % what)
        if not isinstance(stream_ptr, int) or isinstance(stream_ptr, bool):
            raise TypeError("stream_ptr must be an int (a cudaStream_t), not %s" % type(stream_ptr).__name__)
        _check_len(stream_ptr, "stream_ptr")
        err = self._on_cuda_failure()
        if err is not None:
            raise RuntimeError("mcefa: %s: not queued, since an earlier transfer on a CUDA stream failed: %s"
                               % (what, err.strerror)) from err
        try:
            ops = self._ops(target, buffers, peers, lengths, opcode)
            if ops:
                c.transfer_on_stream(ops, stream_ptr, self.timeout_ms)
        except _mcefa.Error as e:
            raise RuntimeError("mcefa: %s to %s: %s" % (what, target, e.strerror)) from e

    def _on_cuda_failure(self):
        """The earliest unreported failure of a stream-ordered transfer (an mcefa.Error), or None."""
        try:
            self._need().stream_check()
            return None
        except _mcefa.Error as e:
            if e.errno in (116, 107):  # ESTALE, ENOTCONN: a peer restarted; reopen its segment next time
                with self._lock:
                    self._segments.clear()
            return e

    def transfer_write_on_cuda(self, target_hostname, buffer, peer_buffer_address, length, stream_ptr=0,
                               transport_hint=""):
        self._on_cuda("transfer_write_on_cuda", target_hostname, [buffer], [peer_buffer_address], [length],
                      TransferOpcode.WRITE, stream_ptr)

    def transfer_read_on_cuda(self, target_hostname, buffer, peer_buffer_address, length, stream_ptr=0,
                              transport_hint=""):
        self._on_cuda("transfer_read_on_cuda", target_hostname, [buffer], [peer_buffer_address], [length],
                      TransferOpcode.READ, stream_ptr)

    def batch_transfer_write_on_cuda(self, target_hostname, buffers, peer_buffer_addresses, lengths, stream_ptr=0,
                                     transport_hint=""):
        self._on_cuda("batch_transfer_write_on_cuda", target_hostname, buffers, peer_buffer_addresses, lengths,
                      TransferOpcode.WRITE, stream_ptr)

    def batch_transfer_read_on_cuda(self, target_hostname, buffers, peer_buffer_addresses, lengths, stream_ptr=0,
                                    transport_hint=""):
        self._on_cuda("batch_transfer_read_on_cuda", target_hostname, buffers, peer_buffer_addresses, lengths,
                      TransferOpcode.READ, stream_ptr)

    def check_on_cuda_transfers(self):
        """mcefa's own (Mooncake ends the process instead): 0 if no *_on_cuda transfer failed since the last
        check, else the earliest failure's negative errno, logged with its reason. Call it after synchronizing
        the stream to know the stream's transfers all completed."""
        err = self._on_cuda_failure()
        if err is None:
            return 0
        log.error("mcefa: %s", err.strerror)
        return _neg(err)

    def _take(self, batch_id):
        """(found, batch): only the caller that takes an id may use it."""
        with self._lock:
            if batch_id not in self._batches:
                return False, None
            return True, self._batches.pop(batch_id)

    def get_batch_transfer_status(self, batch_ids):
        """Waits for every batch; 0 if all completed, -1 if any failed."""
        rc = 0
        for bid in batch_ids:
            found, b = self._take(bid)
            if not found:
                log.error("mcefa: unknown batch id %r", bid)
                rc = -1
                continue
            if b is None:
                continue  # an empty batch
            try:
                b.wait(self.timeout_ms)
            except _mcefa.Error as e:
                log.error("mcefa: batch %d failed: %s", bid, e.strerror)
                rc = -1
            self._release(b)
        return rc

    def transfer_check_status(self, batch_id):
        """1 done, 0 in progress, -1 failed, -2 timed out (Mooncake's codes)."""
        with self._lock:
            if batch_id not in self._batches:
                return _FAILED
            b = self._batches[batch_id]
        if b is not None:
            submitted, finished, failed = b.progress()
            if finished < submitted:
                return _RUNNING
        found, b = self._take(batch_id)
        if not found:
            return _FAILED  # another thread took it
        if b is None:
            return _DONE
        code = _DONE
        if failed:
            code = _FAILED
            for i in range(submitted):
                state, err = b.state(i)
                if state == _mcefa.FAILED and err == -110:  # ETIMEDOUT
                    code = _TIMEOUT
        self._release(b)
        return code

    def _release(self, b):
        try:
            b.free()
        except (_mcefa.Error, RuntimeError):
            with self._lock:
                self._zombies.append(b)  # still in flight after a timeout

    def _reap(self):
        """Frees batches that timed out once they are no longer in flight."""
        with self._lock:
            zombies, self._zombies = self._zombies, []
        for b in zombies:
            submitted, finished, _ = b.progress()
            if finished < submitted:
                with self._lock:
                    self._zombies.append(b)
            else:
                self._release(b)
