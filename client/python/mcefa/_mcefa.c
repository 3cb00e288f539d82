/* mcefa._mcefa: CPython binding of libmcefa. Thin on purpose: the
 * Mooncake-compatible TransferEngine is written in Python on top of it
 * (mcefa/engine.py). Every blocking call releases the GIL. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "mcefa.h"

static PyObject *McefaError;

/* Raises mcefa.Error(errno, text). */
static PyObject *raise_text(int rc, const char *txt)
{
    PyObject *args = Py_BuildValue("(is)", -rc, txt && *txt ? txt : mcefa_strerror(rc));
    if (args) {
        PyErr_SetObject(McefaError, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* Raises mcefa.Error(errno, "daemon's explanation"). */
static PyObject *raise_rc(int rc)
{
    return raise_text(rc, mcefa_last_error());
}

/* An address from an int (>= 0, fits 64 bits) or a writable buffer object. */
static int get_addr(PyObject *o, uint64_t *out, const char *what)
{
    if (PyLong_Check(o)) {
        if (_PyLong_Sign(o) < 0) {
            PyErr_Format(PyExc_ValueError, "%s must not be negative", what);
            return -1;
        }
        unsigned long long v = PyLong_AsUnsignedLongLong(o);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_OverflowError, "%s does not fit in 64 bits", what);
            return -1;
        }
        *out = v;
        return 0;
    }
    if (PyObject_CheckBuffer(o)) {
        Py_buffer view;
        if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0)
            return -1;
        *out = (uint64_t)(uintptr_t)view.buf;
        PyBuffer_Release(&view);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be an int address or a buffer object, not %s", what, Py_TYPE(o)->tp_name);
    return -1;
}

static int get_len(PyObject *o, uint64_t *out, const char *what)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    return get_addr(o, out, what);
}

/* ---- Client -------------------------------------------------------------- */

/* Calls that run without the GIL hold the client open: close() while they
 * run only marks it, and the last one out disconnects. */
typedef struct {
    PyObject_HEAD mcefa_client *c;
    int in_flight;
    bool closing;
    bool used; /* connected once: no reconnecting the same object */
} ClientObject;

typedef struct {
    PyObject_HEAD ClientObject *client;
    mcefa_batch *b;
    int in_use; /* GIL-free calls on it right now */
} BatchObject;

static PyTypeObject BatchType;

/* With the GIL held: the client for a GIL-free call, or NULL (raised). */
static mcefa_client *enter(ClientObject *self)
{
    if (!self->c || self->closing) {
        PyErr_SetString(PyExc_RuntimeError, "Client is closed");
        return NULL;
    }
    self->in_flight++;
    return self->c;
}

static void finish_close(ClientObject *self)
{
    mcefa_client *c = self->c;
    self->c = NULL;
    self->closing = false;
    Py_BEGIN_ALLOW_THREADS mcefa_disconnect(c);
    Py_END_ALLOW_THREADS
}

/* With the GIL held, after the GIL-free part. */
static void leave(ClientObject *self)
{
    if (--self->in_flight == 0 && self->closing && self->c)
        finish_close(self);
}

static int Client_init(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"socket", "name", NULL};
    const char *sock = NULL, *name = "python";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zz", kwlist, &sock, &name))
        return -1;
    if (self->used) {
        PyErr_SetString(PyExc_RuntimeError, "a Client connects once; make a new one");
        return -1;
    }
    int rc;
    mcefa_client *c = NULL;
    Py_BEGIN_ALLOW_THREADS rc = mcefa_connect(sock, name ? name : "python", &c);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        raise_rc(rc);
        return -1;
    }
    self->c = c;
    self->used = true;
    return 0;
}

static void Client_dealloc(ClientObject *self)
{
    /* Batches hold a reference, and calls hold self: nothing is in flight. */
    if (self->c)
        mcefa_disconnect(self->c);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Client_close(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->c || self->closing)
        Py_RETURN_NONE;
    self->closing = true;
    if (self->in_flight == 0)
        finish_close(self);
    Py_RETURN_NONE;
}

static PyObject *Client_hostname(ClientObject *self, PyObject *unused)
{
    (void)unused;
    mcefa_client *c = enter(self);
    if (!c)
        return NULL;
    PyObject *r = PyUnicode_FromString(mcefa_daemon_hostname(c));
    leave(self);
    return r;
}

/* The body of a GIL-free call on the client: `call` sees `c`. */
#define CLIENT_CALL(self, call)                 \
    mcefa_client *c = enter(self);              \
    if (!c)                                     \
        return NULL;                            \
    int rc;                                     \
    Py_BEGIN_ALLOW_THREADS rc = (call);         \
    Py_END_ALLOW_THREADS leave(self);

static PyObject *Client_alloc(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"size", "numa_node", "huge", NULL};
    PyObject *size_o;
    int numa = -1, huge = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|ip", kwlist, &size_o, &numa, &huge))
        return NULL;
    uint64_t size;
    if (get_len(size_o, &size, "size") < 0)
        return NULL;
    if (size == 0) {
        PyErr_SetString(PyExc_ValueError, "size must be > 0");
        return NULL;
    }
    void *p = NULL;
    CLIENT_CALL(self, mcefa_alloc(c, size, numa, huge ? MCEFA_ALLOC_HUGE : 0, &p))
    if (rc < 0)
        return raise_rc(rc);
    return PyLong_FromUnsignedLongLong((uintptr_t)p);
}

static PyObject *Client_free(ClientObject *self, PyObject *arg)
{
    uint64_t a;
    if (get_addr(arg, &a, "address") < 0)
        return NULL;
    CLIENT_CALL(self, mcefa_free(c, (void *)(uintptr_t)a))
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Client_register(ClientObject *self, PyObject *args)
{
    PyObject *ao, *lo;
    uint64_t a, l;
    if (!PyArg_ParseTuple(args, "OO", &ao, &lo) || get_addr(ao, &a, "address") < 0 || get_len(lo, &l, "length") < 0)
        return NULL;
    CLIENT_CALL(self, mcefa_register(c, (void *)(uintptr_t)a, l))
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Client_unregister(ClientObject *self, PyObject *arg)
{
    uint64_t a;
    if (get_addr(arg, &a, "address") < 0)
        return NULL;
    CLIENT_CALL(self, mcefa_unregister(c, (void *)(uintptr_t)a))
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Client_export_segment(ClientObject *self, PyObject *args)
{
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|z", &name))
        return NULL;
    char out[300];
    CLIENT_CALL(self, mcefa_segment_export(c, name, out, sizeof(out)))
    if (rc < 0)
        return raise_rc(rc);
    return PyUnicode_FromString(out);
}

static PyObject *Client_open_segment(ClientObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    mcefa_segment h;
    CLIENT_CALL(self, mcefa_segment_open(c, name, &h))
    if (rc < 0)
        return raise_rc(rc);
    return PyLong_FromUnsignedLongLong(h);
}

static PyObject *Client_close_segment(ClientObject *self, PyObject *args)
{
    unsigned long long h;
    if (!PyArg_ParseTuple(args, "K", &h))
        return NULL;
    CLIENT_CALL(self, mcefa_segment_close(c, h))
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Client_segment_regions(ClientObject *self, PyObject *args)
{
    unsigned long long h;
    if (!PyArg_ParseTuple(args, "K", &h))
        return NULL;
    mcefa_region_info r[256];
    r[0] = (mcefa_region_info)MCEFA_REGION_INFO_INIT;
    CLIENT_CALL(self, mcefa_segment_regions(c, h, r, 256))
    if (rc < 0)
        return raise_rc(rc);
    PyObject *list = PyList_New(0);
    for (int i = 0; i < rc && i < 256 && list; i++) {
        PyObject *t = Py_BuildValue("(KK)", (unsigned long long)r[i].addr, (unsigned long long)r[i].length);
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *Client_warmup(ClientObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    unsigned pairs = 0;
    CLIENT_CALL(self, mcefa_segment_warmup(c, name, &pairs))
    if (rc < 0)
        return raise_rc(rc);
    return PyLong_FromUnsignedLong(pairs);
}

/* [(opcode, local, segment, remote, length), ...] -> C array. */
static mcefa_transfer *parse_ops(PyObject *ops, Py_ssize_t *n_out)
{
    PyObject *seq = PySequence_Fast(ops, "transfers must be a sequence of (opcode, local, segment, remote, length)");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    mcefa_transfer *t = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*t));
    if (!t) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 5) {
            PyErr_Format(PyExc_TypeError, "transfer %zd must be a 5-tuple (opcode, local, segment, remote, length)", i);
            goto bad;
        }
        uint64_t op, local, seg, remote, len;
        if (get_len(PyTuple_GET_ITEM(it, 0), &op, "opcode") < 0 ||
            get_addr(PyTuple_GET_ITEM(it, 1), &local, "local address") < 0 ||
            get_len(PyTuple_GET_ITEM(it, 2), &seg, "segment handle") < 0 ||
            get_len(PyTuple_GET_ITEM(it, 3), &remote, "remote address") < 0 ||
            get_len(PyTuple_GET_ITEM(it, 4), &len, "length") < 0)
            goto bad;
        if (op > 1) {
            PyErr_Format(PyExc_ValueError, "transfer %zd: opcode must be 0 (read) or 1 (write)", i);
            goto bad;
        }
        t[i] = (mcefa_transfer){(int)op, (void *)(uintptr_t)local, seg, remote, len};
    }
    Py_DECREF(seq);
    *n_out = n;
    return t;
bad:
    Py_DECREF(seq);
    PyMem_Free(t);
    return NULL;
}

/* Bytes of a notification's name or message: bytes-like, or str (UTF-8;
 * surrogateescape keeps bytes that came in as undecodable). Release with
 * PyBuffer_Release. */
static int get_note_bytes(PyObject *o, Py_buffer *view, const char *what)
{
    if (PyUnicode_Check(o)) {
        PyObject *b = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape");
        if (!b)
            return -1;
        int rc = PyObject_GetBuffer(b, view, PyBUF_SIMPLE);
        Py_DECREF(b); /* the view holds it */
        return rc;
    }
    if (PyObject_CheckBuffer(o))
        return PyObject_GetBuffer(o, view, PyBUF_SIMPLE);
    PyErr_Format(PyExc_TypeError, "notification %s must be str or bytes, not %s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* notify=(name, msg) -> the two views; None -> *have = false. */
static int get_notify_arg(PyObject *o, Py_buffer *name, Py_buffer *msg, bool *have)
{
    *have = false;
    if (!o || o == Py_None)
        return 0;
    if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 2) {
        PyErr_SetString(PyExc_TypeError, "notify must be a (name, msg) tuple or None");
        return -1;
    }
    if (get_note_bytes(PyTuple_GET_ITEM(o, 0), name, "name") < 0)
        return -1;
    if (get_note_bytes(PyTuple_GET_ITEM(o, 1), msg, "msg") < 0) {
        PyBuffer_Release(name);
        return -1;
    }
    *have = true;
    return 0;
}

/* parse_ops, then enter: the transfers (PyMem_Free them) with *c entered
(leave it), or NULL with nothing held (raised). */
static mcefa_transfer *ops_enter(ClientObject *self, PyObject *ops, Py_ssize_t *n, mcefa_client **c)
{
    mcefa_transfer *t = parse_ops(ops, n);
    if (t && !(*c = enter(self))) {
        PyMem_Free(t);
        t = NULL;
    }
    return t;
}

/* The transfers, synchronous or queued on a CUDA stream, without the GIL. */
static PyObject *ops_call(ClientObject *self, PyObject *ops, bool on_stream, uint64_t stream, int timeout)
{
    Py_ssize_t n;
    mcefa_client *c;
    mcefa_transfer *t = ops_enter(self, ops, &n, &c);
    if (!t)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = on_stream ? mcefa_transfer_on_stream(c, t, (size_t)n, stream, timeout)
                                          : mcefa_transfer_sync(c, t, (size_t)n, timeout);
    Py_END_ALLOW_THREADS leave(self);
    PyMem_Free(t);
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Client_transfer(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"transfers", "timeout_ms", "notify", NULL};
    PyObject *ops, *note = NULL;
    int timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iO", kwlist, &ops, &timeout, &note))
        return NULL;
    Py_buffer name, msg;
    bool have;
    if (get_notify_arg(note, &name, &msg, &have) < 0)
        return NULL;
    if (!have)
        return ops_call(self, ops, false, 0, timeout);
    Py_ssize_t n;
    mcefa_client *c;
    mcefa_transfer *t = ops_enter(self, ops, &n, &c);
    if (!t) {
        if (have) {
            PyBuffer_Release(&name);
            PyBuffer_Release(&msg);
        }
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    if (have)
        rc = mcefa_transfer_sync_notify(c, t, (size_t)n, timeout, name.buf, (size_t)name.len, msg.buf,
                                        (size_t)msg.len);
    else
        rc = mcefa_transfer_sync(c, t, (size_t)n, timeout);
    Py_END_ALLOW_THREADS;
    leave(self);
    PyMem_Free(t);
    if (have) {
        PyBuffer_Release(&name);
        PyBuffer_Release(&msg);
    }
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Client_notify(ClientObject *self, PyObject *args)
{
    unsigned long long h;
    PyObject *no, *mo;
    if (!PyArg_ParseTuple(args, "KOO", &h, &no, &mo))
        return NULL;
    Py_buffer name, msg;
    if (get_note_bytes(no, &name, "name") < 0)
        return NULL;
    if (get_note_bytes(mo, &msg, "msg") < 0) {
        PyBuffer_Release(&name);
        return NULL;
    }
    mcefa_client *c = enter(self);
    int rc = 0;
    if (c) {
        Py_BEGIN_ALLOW_THREADS rc = mcefa_notify(c, h, name.buf, (size_t)name.len, msg.buf, (size_t)msg.len);
        Py_END_ALLOW_THREADS leave(self);
    }
    PyBuffer_Release(&name);
    PyBuffer_Release(&msg);
    if (!c)
        return NULL;
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

/* Notifications taken per call into the daemon. */
#define NOTE_CHUNK 256

static PyObject *Client_get_notifies(ClientObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    mcefa_notification v[NOTE_CHUNK];
    /* Until a call finds fewer than it asked for: the queue is empty. */
    for (;;) {
        v[0] = (mcefa_notification)MCEFA_NOTIFICATION_INIT;
        mcefa_client *c = enter(self);
        if (!c) {
            Py_DECREF(list);
            return NULL;
        }
        int rc;
        Py_BEGIN_ALLOW_THREADS rc = mcefa_get_notifies(c, v, NOTE_CHUNK);
        Py_END_ALLOW_THREADS leave(self);
        if (rc < 0) {
            Py_DECREF(list);
            return raise_rc(rc);
        }
        int ok = 1;
        for (int i = 0; i < rc && ok; i++) {
            PyObject *t = Py_BuildValue("(y#y#)", v[i].name, (Py_ssize_t)v[i].name_len, v[i].msg,
                                        (Py_ssize_t)v[i].msg_len);
            ok = t && PyList_Append(list, t) == 0;
            Py_XDECREF(t);
        }
        mcefa_notifications_free(v, (size_t)rc);
        if (!ok) {
            Py_DECREF(list);
            return NULL;
        }
        if (rc < NOTE_CHUNK)
            return list;
    }
}

static PyObject *Client_submit(ClientObject *self, PyObject *args)
{
    PyObject *ops;
    if (!PyArg_ParseTuple(args, "O", &ops))
        return NULL;
    Py_ssize_t n;
    mcefa_client *c;
    mcefa_transfer *t = ops_enter(self, ops, &n, &c);
    if (!t)
        return NULL;
    if (n == 0 || n > UINT32_MAX - 1) {
        leave(self);
        PyMem_Free(t);
        PyErr_SetString(PyExc_ValueError, "submit needs 1 or more transfers");
        return NULL;
    }
    mcefa_batch *b = NULL;
    int rc;
    char saved[512] = "";
    Py_BEGIN_ALLOW_THREADS rc = mcefa_batch_alloc(c, (uint32_t)n, &b);
    if (rc >= 0) {
        rc = mcefa_batch_submit(b, t, (size_t)n);
        if (rc < 0) {
            /* Keep the submit error, not the free's. */
            snprintf(saved, sizeof(saved), "%s", mcefa_last_error());
            mcefa_batch_free(b);
            b = NULL;
        }
    } else {
        snprintf(saved, sizeof(saved), "%s", mcefa_last_error());
    }
    Py_END_ALLOW_THREADS leave(self);
    PyMem_Free(t);
    if (rc < 0)
        return raise_text(rc, saved);
    BatchObject *bo = PyObject_New(BatchObject, &BatchType);
    if (!bo)
        return NULL; /* the daemon frees the batch with the connection */
    Py_INCREF(self);
    bo->client = self;
    bo->b = b;
    bo->in_use = 0;
    return (PyObject *)bo;
}

static PyObject *Client_transfer_on_stream(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"transfers", "stream", "timeout_ms", NULL};
    PyObject *ops, *stream_o;
    int timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|i", kwlist, &ops, &stream_o, &timeout))
        return NULL;
    uint64_t stream;
    if (get_len(stream_o, &stream, "stream") < 0)
        return NULL;
    return ops_call(self, ops, true, stream, timeout);
}

static PyObject *Client_stream_check(ClientObject *self, PyObject *unused)
{
    (void)unused;
    uint64_t q, f, x;
    CLIENT_CALL(self, mcefa_stream_check(c, &q, &f, &x))
    if (rc < 0)
        return raise_rc(rc);
    return Py_BuildValue("(KKK)", (unsigned long long)q, (unsigned long long)f, (unsigned long long)x);
}

static PyObject *Client_status(ClientObject *self, PyObject *unused)
{
    (void)unused;
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    CLIENT_CALL(self, mcefa_status(c, &st))
    if (rc < 0)
        return raise_rc(rc);
    return Py_BuildValue("{s:s,s:s,s:K,s:K,s:I,s:K,s:K,s:K,s:I,s:I,s:I,s:O}", "version", st.version, "hostname",
                         st.hostname, "epoch", (unsigned long long)st.epoch, "uptime_ms",
                         (unsigned long long)st.uptime_ms, "clients", st.clients, "bytes_copied",
                         (unsigned long long)st.bytes_copied, "transfers_completed",
                         (unsigned long long)st.transfers_completed, "transfers_failed",
                         (unsigned long long)st.transfers_failed, "staging_slots", st.staging_slots,
                         "staging_in_use", st.staging_in_use, "staging_waiting", st.staging_waiting,
                         "staging_gpu_pinned", st.staging_gpu_pinned ? Py_True : Py_False);
}

static PyObject *Client_local_topology(ClientObject *self, PyObject *args)
{
    const char *filter = NULL;
    if (!PyArg_ParseTuple(args, "|z", &filter))
        return NULL;
    size_t len = 16384;
    /* Again with the size it said, should it have grown in between. */
    for (int attempt = 0; attempt < 3; attempt++) {
        char *buf = PyMem_Malloc(len);
        if (!buf)
            return PyErr_NoMemory();
        CLIENT_CALL(self, mcefa_local_topology(c, filter, buf, len))
        if (rc < 0) {
            PyMem_Free(buf);
            return raise_rc(rc);
        }
        if ((size_t)rc < len) {
            PyObject *s = PyUnicode_FromStringAndSize(buf, rc);
            PyMem_Free(buf);
            return s;
        }
        PyMem_Free(buf);
        len = (size_t)rc + 1;
    }
    PyErr_SetString(PyExc_RuntimeError, "local_topology: the topology kept growing while it was read");
    return NULL;
}

static PyMethodDef Client_methods[] = {
    {"close", (PyCFunction)Client_close, METH_NOARGS, "Disconnect from the daemon (after calls in progress)."},
    {"hostname", (PyCFunction)Client_hostname, METH_NOARGS, "Host name the daemon uses in segment names."},
    {"alloc", (PyCFunction)(void (*)(void))Client_alloc, METH_VARARGS | METH_KEYWORDS,
     "alloc(size, numa_node=-1, huge=False) -> address of shareable host memory"},
    {"free", (PyCFunction)Client_free, METH_O, "free(address) of memory from alloc"},
    {"register", (PyCFunction)Client_register, METH_VARARGS, "register(address, length)"},
    {"unregister", (PyCFunction)Client_unregister, METH_O, "unregister(address)"},
    {"export_segment", (PyCFunction)Client_export_segment, METH_VARARGS, "export_segment(name=None) -> name"},
    {"open_segment", (PyCFunction)Client_open_segment, METH_VARARGS, "open_segment(name) -> handle"},
    {"close_segment", (PyCFunction)Client_close_segment, METH_VARARGS, "close_segment(handle)"},
    {"segment_regions", (PyCFunction)Client_segment_regions, METH_VARARGS,
     "segment_regions(handle) -> [(address, length), ...]"},
    {"warmup", (PyCFunction)Client_warmup, METH_VARARGS, "warmup(segment_name) -> NIC pairs connected"},
    {"transfer", (PyCFunction)(void (*)(void))Client_transfer, METH_VARARGS | METH_KEYWORDS,
     "transfer([(opcode, local, segment, remote, length), ...], timeout_ms=-1, notify=None): synchronous; "
     "notify=(name, msg) is sent to the segment's owner once every transfer completed (all to one segment)"},
    {"notify", (PyCFunction)Client_notify, METH_VARARGS,
     "notify(segment, name, msg): queue a notification for the segment's owner (str or bytes)"},
    {"get_notifies", (PyCFunction)Client_get_notifies, METH_NOARGS,
     "get_notifies() -> [(name, msg), ...] as bytes, oldest first, taken off the daemon's queue"},
    {"submit", (PyCFunction)Client_submit, METH_VARARGS, "submit([...]) -> Batch (asynchronous)"},
    {"transfer_on_stream", (PyCFunction)(void (*)(void))Client_transfer_on_stream, METH_VARARGS | METH_KEYWORDS,
     "transfer_on_stream([...], stream, timeout_ms=-1): queued on a CUDA stream (an int); outcome: stream_check"},
    {"stream_check", (PyCFunction)Client_stream_check, METH_NOARGS,
     "stream_check() -> (queued, finished, failed) of transfer_on_stream; raises the earliest unreported failure"},
    {"status", (PyCFunction)Client_status, METH_NOARGS, "Daemon status as a dict."},
    {"local_topology", (PyCFunction)Client_local_topology, METH_VARARGS,
     "local_topology(device_filter=None) -> Mooncake's topology matrix as a JSON str"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mcefa._mcefa.Client",
    .tp_basicsize = sizeof(ClientObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Client(socket=None, name='python'): a connection to mcefad.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_methods = Client_methods,
};

/* ---- Batch --------------------------------------------------------------- */

/* With the GIL held: the batch and its client for a GIL-free call. */
static mcefa_batch *benter(BatchObject *self)
{
    if (!self->b) {
        PyErr_SetString(PyExc_RuntimeError, "Batch is freed");
        return NULL;
    }
    if (!enter(self->client))
        return NULL;
    self->in_use++;
    return self->b;
}

static void bleave(BatchObject *self)
{
    self->in_use--;
    leave(self->client);
}

static void Batch_dealloc(BatchObject *self)
{
    mcefa_batch *b = self->b;
    if (b && enter(self->client)) {
        /* Nobody can wait for it any more: one still in flight is
         * released when its transfers finished. */
        Py_BEGIN_ALLOW_THREADS mcefa_batch_free_when_done(b);
        Py_END_ALLOW_THREADS leave(self->client);
    }
    PyErr_Clear();
    Py_XDECREF(self->client);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Batch_wait(BatchObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout_ms", NULL};
    int timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|i", kwlist, &timeout))
        return NULL;
    mcefa_batch *b = benter(self);
    if (!b)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mcefa_batch_wait(b, timeout);
    Py_END_ALLOW_THREADS bleave(self);
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Batch_progress(BatchObject *self, PyObject *unused)
{
    (void)unused;
    mcefa_batch *b = benter(self);
    if (!b)
        return NULL;
    uint32_t s, f, x;
    mcefa_batch_progress(b, &s, &f, &x);
    bleave(self);
    return Py_BuildValue("(III)", s, f, x);
}

static PyObject *Batch_state(BatchObject *self, PyObject *args)
{
    unsigned idx;
    if (!PyArg_ParseTuple(args, "I", &idx))
        return NULL;
    mcefa_batch *b = benter(self);
    if (!b)
        return NULL;
    int err = 0;
    int st = mcefa_batch_state(b, idx, &err);
    bleave(self);
    if (st < 0)
        return raise_rc(st);
    return Py_BuildValue("(ii)", st, err);
}

static PyObject *Batch_free(BatchObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->b)
        Py_RETURN_NONE;
    if (self->in_use) {
        PyErr_SetString(PyExc_RuntimeError, "Batch is in use by another thread (wait() in progress)");
        return NULL;
    }
    mcefa_batch *b = self->b;
    if (!enter(self->client))
        return NULL;
    self->b = NULL; /* nobody else may start on it while it is freed */
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mcefa_batch_free(b);
    Py_END_ALLOW_THREADS leave(self->client);
    if (rc < 0) {
        self->b = b; /* e.g. -EBUSY: still in flight, still ours */
        return raise_rc(rc);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Batch_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))Batch_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout_ms=-1): until every transfer finished; raises on failure"},
    {"progress", (PyCFunction)Batch_progress, METH_NOARGS, "(submitted, finished, failed), without a system call"},
    {"state", (PyCFunction)Batch_state, METH_VARARGS, "state(i) -> (state, errno)"},
    {"free", (PyCFunction)Batch_free, METH_NOARGS, "Release the batch (refused while in flight)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mcefa._mcefa.Batch",
    .tp_basicsize = sizeof(BatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A submitted batch of transfers (from Client.submit).",
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_methods = Batch_methods,
};

/* ---- Raw memory helpers (Mooncake's write_bytes_to_buffer & co) ---------- */

static PyObject *mod_write_bytes(PyObject *m, PyObject *args)
{
    (void)m;
    PyObject *ao;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "Oy*", &ao, &data))
        return NULL;
    uint64_t a;
    if (get_addr(ao, &a, "address") < 0 || a == 0) {
        PyBuffer_Release(&data);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "address must not be 0");
        return NULL;
    }
    memcpy((void *)(uintptr_t)a, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *mod_read_bytes(PyObject *m, PyObject *args)
{
    (void)m;
    PyObject *ao, *lo;
    uint64_t a, l;
    if (!PyArg_ParseTuple(args, "OO", &ao, &lo) || get_addr(ao, &a, "address") < 0 || get_len(lo, &l, "length") < 0)
        return NULL;
    if (a == 0 || l > PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_ValueError, "address must not be 0 and length must fit in memory");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)(uintptr_t)a, (Py_ssize_t)l);
}

static PyMethodDef module_methods[] = {
    {"write_bytes", mod_write_bytes, METH_VARARGS, "write_bytes(address, data): copy data to raw memory"},
    {"read_bytes", mod_read_bytes, METH_VARARGS, "read_bytes(address, length) -> bytes from raw memory"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mcefa._mcefa",
    .m_doc = "Binding of libmcefa, the client library of mcefad.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__mcefa(void)
{
    if (PyType_Ready(&ClientType) < 0 || PyType_Ready(&BatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    McefaError = PyErr_NewExceptionWithDoc("mcefa._mcefa.Error",
                                           "A libmcefa failure: errno and the daemon's explanation.", PyExc_OSError,
                                           NULL);
    Py_INCREF(&ClientType);
    Py_INCREF(&BatchType);
    if (PyModule_AddObject(m, "Client", (PyObject *)&ClientType) < 0 ||
        PyModule_AddObject(m, "Batch", (PyObject *)&BatchType) < 0 || PyModule_AddObject(m, "Error", McefaError) < 0 ||
        PyModule_AddIntConstant(m, "READ", MCEFA_READ) < 0 || PyModule_AddIntConstant(m, "WRITE", MCEFA_WRITE) < 0 ||
        PyModule_AddIntConstant(m, "PENDING", MCEFA_PENDING) < 0 ||
        PyModule_AddIntConstant(m, "COMPLETED", MCEFA_COMPLETED) < 0 ||
        PyModule_AddIntConstant(m, "FAILED", MCEFA_FAILED) < 0 ||
        PyModule_AddIntConstant(m, "HAVE_CUDA", mcefa_have_cuda()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
