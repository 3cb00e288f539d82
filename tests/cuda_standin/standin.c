/*
 * Test stand-in for the CUDA driver API (libcuda.so.1).  IT IS NOT A GPU.
 *
 * Tests dlopen this library in place of the real driver so that the
 * project's GPU code paths (device discovery, primary contexts, legacy IPC,
 * VMM export/import, dma-buf handles, streams, events, copies) run end to
 * end, across processes, on machines without a GPU.  It checks the caller's
 * bookkeeping only: right context, right device, every range inside one
 * live mapping, handles owned and released.  It computes nothing and says
 * nothing about performance.  Where it differs from the real driver it is
 * on purpose stricter.
 *
 * "Device memory" is a memfd per allocation.  The device VA handed out is a
 * PROT_NONE reservation, so a CPU dereference of a device pointer faults;
 * the bytes are reached only by this library's copy functions, through a
 * separate MAP_SHARED alias of the memfd.  Legacy IPC handles name the
 * exporter's pid and memfd number, and are opened via /proc/<pid>/fd/<n>.
 * One test-only function, mcefa_standin_host_alias (standin_test.h), hands
 * that alias to test tooling that plays a GPUDirect RDMA NIC
 * (tests/fi_interpose.c); no real driver has it.
 *
 * Environment (read by cuInit):
 *   MCEFA_STANDIN_GPUS      emulated physical devices, 0..8 (default 2)
 *   CUDA_VISIBLE_DEVICES    comma list of physical indices, as the driver
 *   MCEFA_STANDIN_DELAY_US  stream threads sleep this long before each op
 *
 * Host functions (cuLaunchHostFunc) run on the stream's thread in order
 * with its copies and events; a CUDA call from inside one fails with
 * CUDA_ERROR_NOT_PERMITTED, which the real driver allows itself to do.
 * The NULL stream gets a thread of its own per context the first time a
 * host function is queued there; synchronous calls and other NULL-stream
 * work of that context wait until its queue has drained (legacy default
 * stream semantics, as far as host functions go; the real legacy stream
 * also waits for the context's other blocking streams, this one does not).
 *   MCEFA_STANDIN_IPC_DENY  =1: cuIpcOpenMemHandle fails NOT_PERMITTED
 *   MCEFA_STANDIN_TRACE     =1: one stderr line per call (read at first call)
 */
#include <cuda.h>

#include "standin_test.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GRAN        ((size_t)2 << 20)          /* VMM granularity, VA alignment */
#define MAXDEV      8
#define TOTAL_MEM   ((size_t)80 << 30)
#define IPC_MAGIC   0x4e495453u                /* "STIN" */
#define MFD_PREFIX  "mcefa-standin:"
#define HANDLE_TAG  (0x5354ULL << 48)          /* stray small ints are not handles */

/* ---- global state; g_lock guards everything below except g_inited ---- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_event_cv = PTHREAD_COND_INITIALIZER;
static atomic_int g_inited;
static int g_nphys, g_nvis, g_vis[MAXDEV];     /* ordinal k -> physical g_vis[k] */
static long g_delay_us;
static int g_ipc_deny;
static size_t g_page = 4096;
static unsigned long long g_next_id = 1;        /* buffer ids, handles, events */

struct CUctx_st { int ord, phys, refs; struct CUstream_st *dflt; /* NULL stream's queue, made on demand */ };
static struct CUctx_st g_ctx[MAXDEV];
static _Thread_local struct CUctx_st *t_cur;
/* This thread runs a host function now. Initial-exec, so stream threads
 * never take this library's dynamic TLS: LeakSanitizer's exit scan of such
 * a thread still alive (the NULL stream's) read a bogus DTLS range of it
 * and crashed (gcc 12's ASan). */
static _Thread_local int t_in_hostfn __attribute__((tls_model("initial-exec")));

enum kind { K_ALLOC, K_IPC, K_VMM };

struct resv {                   /* a device VA reservation, always PROT_NONE */
    uintptr_t va;
    size_t len;
    int vmm;                    /* from cuMemAddressReserve */
    int nmaps;
    struct resv *next;
};

struct vmm {                    /* a cuMemCreate'd or imported allocation */
    CUmemGenericAllocationHandle handle;
    int fd, phys;
    size_t size;
    unsigned types;             /* requestedHandleTypes */
    int hrefs, nmaps;           /* lives while either is non-zero */
    struct vmm *next;
};

struct map {                    /* a device range whose bytes exist */
    uintptr_t va;
    size_t size;
    char *alias;                /* private host view for our copies only */
    int phys;
    enum kind kind;
    int fd;                     /* K_ALLOC/K_IPC: owned backing memfd */
    struct vmm *vmm;            /* K_VMM */
    size_t offset;              /* K_VMM: offset into the allocation */
    struct resv *resv;
    unsigned long long id;      /* BUFFER_ID; also how queued ops re-find it */
    int prot;                   /* CU_MEM_ACCESS_FLAGS_PROT_* */
    unsigned access;            /* physical devices that may touch it (bit per device); VMM: cuMemSetAccess */
    pid_t ipc_pid;              /* K_IPC: exporter identity, for double opens */
    unsigned long long ipc_id;
    struct map *next;
};

struct hostmem {
    void *p;
    size_t size, len;
    int registered;             /* cuMemHostRegister: the caller's pages, never unmapped here */
    struct CUctx_st *ctx;
    unsigned long long id;
    struct hostmem *next;
};

enum opkind { OP_HTOD, OP_DTOH, OP_DTOD, OP_EVENT, OP_HOSTFN };

struct op {                     /* arguments captured at enqueue time */
    enum opkind kind;
    CUdeviceptr dst, src;
    int dphys, sphys;
    unsigned need;              /* devices that must have access (prep_copy) */
    unsigned long long dst_sig, src_sig;
    void *hdst;
    const void *hsrc;
    size_t n;
    unsigned long long ev_id, ev_seq;
    CUhostFn fn;                /* OP_HOSTFN */
    void *user;
    struct op *next;
};

struct CUstream_st {
    struct CUctx_st *ctx;
    pthread_t thr;
    pthread_cond_t work, idle;
    struct op *head, *tail;
    int busy, stop;
    CUresult err;               /* first failure of a queued op */
    struct CUstream_st *next;
};

struct CUevent_st {
    unsigned long long id, seq; /* seq: number of the latest record */
    struct CUctx_st *ctx;
    unsigned flags;
    int recorded, pending;
    struct timespec t;          /* completion time of the latest record */
    struct CUevent_st *next;
};

static struct resv *g_resv;
static struct vmm *g_vmms;
static struct map *g_maps;
static struct hostmem *g_host;
static struct CUstream_st *g_streams;
static struct CUevent_st *g_events;

/* ---- errors and tracing ---- */

static const struct { CUresult code; const char *name, *str; } g_errs[] = {
    { CUDA_SUCCESS, "CUDA_SUCCESS", "no error" },
    { CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument" },
    { CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory" },
    { CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error" },
    { CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down" },
    { CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected" },
    { CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal" },
    { CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context" },
    { CUDA_ERROR_ALREADY_MAPPED, "CUDA_ERROR_ALREADY_MAPPED", "resource already mapped" },
    { CUDA_ERROR_NOT_MAPPED, "CUDA_ERROR_NOT_MAPPED", "resource not mapped" },
    { CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle" },
    { CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found" },
    { CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready" },
    { CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered" },
    { CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access is not supported between these two devices" },
    { CUDA_ERROR_OPERATING_SYSTEM, "CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS" },
    { CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted" },
    { CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported" },
    { CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error" },
};

static int err_index(CUresult r)
{
    for (size_t i = 0; i < sizeof g_errs / sizeof g_errs[0]; i++)
        if (g_errs[i].code == r)
            return (int)i;
    return -1;
}

static pthread_once_t g_trace_once = PTHREAD_ONCE_INIT;
static int g_trace;

static void trace_init(void)
{
    const char *e = getenv("MCEFA_STANDIN_TRACE");
    g_trace = e && strcmp(e, "1") == 0;
}

static CUresult traced(const char *fn, CUresult r)
{
    pthread_once(&g_trace_once, trace_init);
    if (g_trace) {
        int i = err_index(r);
        fprintf(stderr, "cuda-standin[%d]: %s -> %s\n", (int)getpid(), fn,
                i >= 0 ? g_errs[i].name : "?");
    }
    return r;
}

/* Every entry point returns through RET so that tracing sees it; __func__
 * is the exported (versioned) name, since cuda.h renamed the definition. */
#define RET(x) return traced(__func__, (x))
#define NEED_INIT()                                                                          \
    do {                                                                                     \
        if (t_in_hostfn)        /* documented: host functions must not call CUDA */          \
            RET(CUDA_ERROR_NOT_PERMITTED);                                                   \
        if (!atomic_load(&g_inited))                                                         \
            RET(CUDA_ERROR_NOT_INITIALIZED);                                                 \
    } while (0)
#define FAIL(c) do { r = (c); goto out; } while (0)

static void lock(void) { pthread_mutex_lock(&g_lock); }
static void unlock(void) { pthread_mutex_unlock(&g_lock); }

/* ---- small helpers (all called with g_lock held unless noted) ---- */

static int bus_of(int phys) { return 0x18 + 0x10 * phys; }
static int dev_ok(CUdevice d) { return d >= 0 && d < g_nvis; }

static int ord_of(int phys)
{
    for (int k = 0; k < g_nvis; k++)
        if (g_vis[k] == phys)
            return k;
    return -1;
}

static struct CUctx_st *ctx_lookup(CUcontext c)
{
    for (int k = 0; k < g_nvis; k++)
        if (c == &g_ctx[k])
            return c->refs > 0 ? c : NULL;
    return NULL;
}

/* The calling thread's context, if it is still retained. */
static struct CUctx_st *cur_ctx(void)
{
    return t_cur && t_cur->refs > 0 ? t_cur : NULL;
}

static unsigned long long new_id(void) { return g_next_id++; }

static int round_up(size_t n, size_t a, size_t *out)
{
    if (n > SIZE_MAX - (a - 1))
        return -1;
    *out = (n + a - 1) / a * a;
    return 0;
}

/* PROT_NONE reservation of len bytes aligned to align (a power of two). */
static void *reserve_va(size_t len, size_t align)
{
    if (len > SIZE_MAX - align)
        return NULL;
    size_t total = len + align;
    char *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = a - (uintptr_t)p, tail = total - head - len;
    if (head)
        munmap(p, head);
    if (tail)
        munmap((char *)a + len, tail);
    return (void *)a;
}

/* The memfd's name carries what an importer needs to know about it. */
static int new_memfd(char kind, int phys, unsigned types, unsigned long long id, size_t size)
{
    char name[128];
    snprintf(name, sizeof name, MFD_PREFIX "%c:d%d:t%u:p%d:b%llu", kind, phys, types,
             (int)getpid(), id);
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct fdinfo { char kind; int phys, pid; unsigned types; unsigned long long id; size_t size; };

/* Recognise one of our memfds by its /proc name ("/memfd:NAME (deleted)"). */
static int read_memfd(int fd, struct fdinfo *fi)
{
    char path[64], link[256];
    struct stat st;
    int used = -1;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0)
        return -1;
    link[n] = 0;
    if (sscanf(link, "/memfd:" MFD_PREFIX "%c:d%d:t%u:p%d:b%llu%n", &fi->kind, &fi->phys,
               &fi->types, &fi->pid, &fi->id, &used) != 5 || used < 0 ||
        strcmp(link + used, " (deleted)") != 0)
        return -1;
    if (fstat(fd, &st) != 0 || st.st_size < 0)
        return -1;
    fi->size = (size_t)st.st_size;
    return fi->phys >= 0 && fi->phys < g_nphys ? 0 : -1;
}

static char *map_alias(int fd, size_t size, size_t off)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

static struct map *map_at(uintptr_t p)
{
    for (struct map *m = g_maps; m; m = m->next)
        if (p >= m->va && p - m->va < m->size)
            return m;
    return NULL;
}

static struct map *map_base(uintptr_t p, enum kind k)
{
    for (struct map *m = g_maps; m; m = m->next)
        if (m->va == p && m->kind == k)
            return m;
    return NULL;
}

static struct resv *resv_at(uintptr_t p)
{
    for (struct resv *r = g_resv; r; r = r->next)
        if (p >= r->va && p - r->va < r->len)
            return r;
    return NULL;
}

static struct hostmem *host_at(uintptr_t p)
{
    for (struct hostmem *h = g_host; h; h = h->next)
        if (p >= (uintptr_t)h->p && p - (uintptr_t)h->p < h->size)
            return h;
    return NULL;
}

static struct vmm *vmm_find(CUmemGenericAllocationHandle h)
{
    for (struct vmm *v = g_vmms; v; v = v->next)
        if (v->handle == h && v->hrefs > 0)
            return v;
    return NULL;
}

static void vmm_maybe_free(struct vmm *v)
{
    if (v->hrefs || v->nmaps)
        return;
    for (struct vmm **pp = &g_vmms; *pp; pp = &(*pp)->next)
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    close(v->fd);
    free(v);
}

static struct CUstream_st *stream_find(CUstream s)
{
    for (struct CUstream_st *x = g_streams; x; x = x->next)
        if (x == s)
            return x;
    return NULL;
}

static struct CUevent_st *event_by_id(unsigned long long id)
{
    for (struct CUevent_st *e = g_events; e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

static struct CUevent_st *event_find(CUevent h)
{
    for (struct CUevent_st *e = g_events; e; e = e->next)
        if (e == h)
            return e;
    return NULL;
}

/* A host argument must not point into device VA: catches swapped directions. */
static CUresult host_ok(const void *h, size_t n)
{
    uintptr_t a = (uintptr_t)h;
    if (!h || n > UINTPTR_MAX - a)
        return CUDA_ERROR_INVALID_VALUE;
    for (struct resv *r = g_resv; r; r = r->next)
        if (a < r->va + r->len && r->va < a + n)
            return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

/* A device argument must lie, with its length, in memory of physical
 * device phys that every device in `need` (a bit per physical device) may
 * access: inside one mapping, or across VMM mappings side by
 * side in one reservation (the driver copies across those; never across
 * two cuMemAlloc allocations that happen to be adjacent).  *sig combines
 * the ids of the mappings it covers, so a queued op can tell whether they
 * are still the same when it runs.  n > 0. */
static CUresult dev_span(CUdeviceptr p, size_t n, int write, int phys, unsigned need, unsigned long long *sig)
{
    uintptr_t a = (uintptr_t)p;
    struct map *m = map_at(a);
    struct resv *rv = m ? m->resv : NULL;
    unsigned long long h = 0;
    for (;;) {
        if (!m || m->resv != rv || m->phys != phys || (m->access & need) != need ||
            m->prot == CU_MEM_ACCESS_FLAGS_PROT_NONE ||
            (write && m->prot != CU_MEM_ACCESS_FLAGS_PROT_READWRITE))
            return CUDA_ERROR_INVALID_VALUE;
        h = h * 1000003u + m->id;
        size_t avail = m->size - (a - m->va);
        if (n <= avail)
            break;
        if (m->kind != K_VMM)
            return CUDA_ERROR_INVALID_VALUE;
        n -= avail;
        a = m->va + m->size;
        m = map_at(a);
    }
    *sig = h;
    return CUDA_SUCCESS;
}

/* Host view of device address a (checked) and how many bytes follow it in
 * the same mapping. */
static char *alias_of(uintptr_t a, size_t *avail)
{
    struct map *m = map_at(a);
    *avail = m->size - (a - m->va);
    return m->alias + (a - m->va);
}

static void set_now(struct timespec *t) { clock_gettime(CLOCK_MONOTONIC, t); }

/* ---- copies and stream ops ---- */

/* Validates a copy at the call and records which mappings it names. */
static CUresult prep_copy(struct op *o, int dphys, int sphys)
{
    CUresult r;
    o->dphys = dphys;
    o->sphys = sphys;
    /* A copy between two devices may be carried out by either one: both
     * must have access to both sides (VMM memory is accessible only where
     * cuMemSetAccess granted it). */
    unsigned need = o->need = (1u << dphys) | (1u << sphys);
    r = o->kind == OP_DTOH ? host_ok(o->hdst, o->n) : dev_span(o->dst, o->n, 1, dphys, need, &o->dst_sig);
    if (r != CUDA_SUCCESS)
        return r;
    if (o->kind == OP_HTOD)
        return host_ok(o->hsrc, o->n);
    if ((r = dev_span(o->src, o->n, 0, sphys, need, &o->src_sig)) != CUDA_SUCCESS)
        return r;
    /* stricter: the driver does not promise overlapping copies (mcefa
     * refuses them itself) */
    if (o->kind == OP_DTOD && o->dst < o->src + o->n && o->src < o->dst + o->n)
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

/* Runs a copy; g_lock is held so that no free can unmap an alias under it.
 * A queued copy whose memory was freed or remapped since the call fails
 * instead of touching other memory. */
static CUresult exec_copy(const struct op *o)
{
    unsigned long long sig;
    if ((o->kind != OP_DTOH && (dev_span(o->dst, o->n, 1, o->dphys, o->need, &sig) || sig != o->dst_sig)) ||
        (o->kind != OP_HTOD && (dev_span(o->src, o->n, 0, o->sphys, o->need, &sig) || sig != o->src_sig)))
        return CUDA_ERROR_ILLEGAL_ADDRESS;
    for (size_t off = 0, k, av; off < o->n; off += k) {   /* piece by mapping */
        char *d;
        const char *s;
        k = o->n - off;
        if (o->kind == OP_DTOH) {
            d = (char *)o->hdst + off;
        } else {
            d = alias_of(o->dst + off, &av);
            k = av < k ? av : k;
        }
        if (o->kind == OP_HTOD) {
            s = (const char *)o->hsrc + off;
        } else {
            s = alias_of(o->src + off, &av);
            k = av < k ? av : k;
        }
        memcpy(d, s, k);        /* overlap was refused at the call */
    }
    return CUDA_SUCCESS;
}

static void event_complete(struct CUevent_st *e)
{
    e->pending = 0;
    set_now(&e->t);
    pthread_cond_broadcast(&g_event_cv);
}

static void *stream_main(void *arg)
{
    struct CUstream_st *s = arg;
    lock();
    for (;;) {
        while (!s->head && !s->stop)
            pthread_cond_wait(&s->work, &g_lock);
        if (!s->head)
            break;
        struct op *o = s->head;
        s->head = o->next;
        if (!s->head)
            s->tail = NULL;
        s->busy = 1;
        if (g_delay_us > 0) {   /* never sleep holding the lock */
            struct timespec ts = { g_delay_us / 1000000, (g_delay_us % 1000000) * 1000 };
            unlock();
            nanosleep(&ts, NULL);
            lock();
        }
        CUresult r = CUDA_SUCCESS;
        if (o->kind == OP_HOSTFN) {
            unlock();           /* it may block, and other threads go on meanwhile */
            t_in_hostfn = 1;
            o->fn(o->user);
            t_in_hostfn = 0;
            lock();
        } else if (o->kind == OP_EVENT) {
            struct CUevent_st *e = event_by_id(o->ev_id);
            if (e && e->seq == o->ev_seq)   /* a later record supersedes it */
                event_complete(e);
        } else {
            r = exec_copy(o);
        }
        if (r != CUDA_SUCCESS) {
            traced("stream op", r);
            if (s->err == CUDA_SUCCESS)
                s->err = r;
        }
        free(o);
        s->busy = 0;
        if (!s->head)
            pthread_cond_broadcast(&s->idle);
    }
    unlock();
    return NULL;
}

static CUresult enqueue(struct CUstream_st *s, const struct op *o)
{
    struct op *q = malloc(sizeof *q);
    if (!q)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *q = *o;
    q->next = NULL;
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    pthread_cond_signal(&s->work);
    return CUDA_SUCCESS;
}

/* Waits until stream s (may be NULL) has run everything queued on it. */
static void drain(struct CUstream_st *s)
{
    while (s && (s->head || s->busy))
        pthread_cond_wait(&s->idle, &g_lock);
}

/* A stream of context c with its thread, or NULL. */
static struct CUstream_st *stream_new(struct CUctx_st *c)
{
    struct CUstream_st *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ctx = c;
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (pthread_create(&s->thr, NULL, stream_main, s) != 0) {
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->idle);
        free(s);
        return NULL;
    }
    return s;
}

/* Common path of every copy.  dctx/sctx: contexts whose device the device
 * side(s) must be on (NULL: the current one).  async: hs may name a stream. */
static CUresult submit(struct op *o, CUstream hs, int async, CUcontext dctx, CUcontext sctx)
{
    struct CUctx_st *cur = cur_ctx();
    struct CUstream_st *s = NULL;
    if (!cur)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (async && hs) {
        if (!(s = stream_find(hs)))
            return CUDA_ERROR_INVALID_HANDLE;
        if (s->ctx != cur)      /* stricter: a stream is used under its own context */
            return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (o->n == 0)
        return CUDA_SUCCESS;
    CUresult r = prep_copy(o, (dctx ? dctx : cur)->phys, (sctx ? sctx : cur)->phys);
    if (r != CUDA_SUCCESS)
        return r;
    if (s)
        return enqueue(s, o);
    drain(cur->dflt);           /* NULL-stream work queued before comes first */
    return exec_copy(o);
}

static CUresult copy_call(enum opkind k, CUdeviceptr dst, void *hdst, CUdeviceptr src,
                          const void *hsrc, size_t n, CUstream hs, int async)
{
    struct op o = { .kind = k, .dst = dst, .src = src, .hdst = hdst, .hsrc = hsrc, .n = n };
    lock();
    CUresult r = submit(&o, hs, async, NULL, NULL);
    unlock();
    return r;
}

/* ---- init, errors, devices ---- */

static CUresult load_config(void)
{
    const char *e = getenv("MCEFA_STANDIN_GPUS");
    char *end;
    int n = 2;
    if (e && *e) {
        long v = strtol(e, &end, 10);
        if (*end || v < 0 || v > MAXDEV) {
            fprintf(stderr, "cuda-standin: MCEFA_STANDIN_GPUS=%s: want 0..%d\n", e, MAXDEV);
            return CUDA_ERROR_INVALID_VALUE;
        }
        n = (int)v;
    }
    g_nphys = n;
    g_nvis = 0;
    e = getenv("CUDA_VISIBLE_DEVICES");
    if (!e) {
        for (int i = 0; i < n; i++)
            g_vis[g_nvis++] = i;
    } else {
        /* Like the driver: the list ends at the first entry that is not a
         * valid, new device index. */
        const char *p = e;
        while (*p && g_nvis < MAXDEV) {
            while (*p == ' ')
                p++;
            if (!isdigit((unsigned char)*p))
                break;
            long v = strtol(p, &end, 10);
            p = end;
            while (*p == ' ')
                p++;
            if (v >= n || ord_of((int)v) >= 0 || (*p && *p != ','))
                break;
            g_vis[g_nvis++] = (int)v;
            if (*p == ',')
                p++;
        }
    }
    e = getenv("MCEFA_STANDIN_DELAY_US");
    g_delay_us = e ? strtol(e, NULL, 10) : 0;
    e = getenv("MCEFA_STANDIN_IPC_DENY");
    g_ipc_deny = e && strcmp(e, "1") == 0;
    long ps = sysconf(_SC_PAGESIZE);
    g_page = ps > 0 ? (size_t)ps : 4096;
    for (int k = 0; k < g_nvis; k++)
        g_ctx[k] = (struct CUctx_st){ .ord = k, .phys = g_vis[k], .refs = 0 };
    /* The driver fails cuInit itself when no device is visible. */
    return g_nvis ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

CUresult CUDAAPI cuInit(unsigned int Flags)
{
    if (Flags != 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    CUresult r = CUDA_SUCCESS;
    if (!atomic_load(&g_inited) && (r = load_config()) == CUDA_SUCCESS)
        atomic_store(&g_inited, 1);
    unlock();
    RET(r);
}

CUresult CUDAAPI cuDriverGetVersion(int *driverVersion)
{
    if (!driverVersion)
        RET(CUDA_ERROR_INVALID_VALUE);
    *driverVersion = 13000;
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuGetErrorString(CUresult error, const char **pStr)
{
    if (!pStr)
        RET(CUDA_ERROR_INVALID_VALUE);
    int i = err_index(error);
    *pStr = i >= 0 ? g_errs[i].str : NULL;
    RET(i >= 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
}

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **pStr)
{
    if (!pStr)
        RET(CUDA_ERROR_INVALID_VALUE);
    int i = err_index(error);
    *pStr = i >= 0 ? g_errs[i].name : NULL;
    RET(i >= 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
}

CUresult CUDAAPI cuDeviceGetCount(int *count)
{
    NEED_INIT();
    if (!count)
        RET(CUDA_ERROR_INVALID_VALUE);
    *count = g_nvis;
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal)
{
    NEED_INIT();
    if (!device)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(ordinal))
        RET(CUDA_ERROR_INVALID_DEVICE);
    *device = ordinal;
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    NEED_INIT();
    if (!pciBusId || len < 13)  /* stricter: never hand out a truncated id */
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    snprintf(pciBusId, (size_t)len, "0000:%02x:00.0", bus_of(g_vis[dev]));
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    NEED_INIT();
    if (!uuid)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    char b[17];
    snprintf(b, sizeof b, "STANDIN-GPU-%04d", g_vis[dev]);
    memcpy(uuid->bytes, b, 16);
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
    NEED_INIT();
    if (!name || len <= 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    snprintf(name, (size_t)len, "mcefa stand-in GPU %d", g_vis[dev]);
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    NEED_INIT();
    if (!pi || (int)attrib <= 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
        *pi = bus_of(g_vis[dev]);
        break;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED:
        *pi = 1;
        break;
    default:                    /* PCI domain and device ids are 0 too */
        *pi = 0;
        break;
    }
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDeviceTotalMem(size_t *bytes, CUdevice dev)
{
    NEED_INIT();
    if (!bytes)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    *bytes = TOTAL_MEM;
    RET(CUDA_SUCCESS);
}

/* Accepts domain:bus:device.function, domain:bus:device, bus:device.function
 * in hex, any case, as the driver does. */
static int parse_busid(const char *s, unsigned long out[4])
{
    unsigned long v[4];
    char sep[4];
    int n = 0;
    for (const char *p = s;;) {
        if (n == 4 || !isxdigit((unsigned char)*p))
            return -1;
        char *e;
        v[n] = strtoul(p, &e, 16);
        p = e;
        sep[n++] = *p;
        if (!*p)
            break;
        if (*p != ':' && *p != '.')
            return -1;
        p++;
    }
    if (n == 4 && sep[0] == ':' && sep[1] == ':' && sep[2] == '.')
        memcpy(out, v, sizeof v);
    else if (n == 3 && sep[0] == ':' && sep[1] == ':')
        out[0] = v[0], out[1] = v[1], out[2] = v[2], out[3] = 0;
    else if (n == 3 && sep[0] == ':' && sep[1] == '.')
        out[0] = 0, out[1] = v[0], out[2] = v[1], out[3] = v[2];
    else
        return -1;
    return 0;
}

CUresult CUDAAPI cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev)
{
    NEED_INIT();
    if (!canAccessPeer)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    CUresult r = dev_ok(dev) && dev_ok(peerDev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
    if (r == CUDA_SUCCESS)
        *canAccessPeer = dev != peerDev; /* every pair of stand-in GPUs is peer capable */
    unlock();
    RET(r);
}

CUresult CUDAAPI cuDeviceGetByPCIBusId(CUdevice *dev, const char *pciBusId)
{
    unsigned long f[4];
    NEED_INIT();
    if (!dev || !pciBusId || parse_busid(pciBusId, f) != 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    for (int k = 0; k < g_nvis; k++)
        if (f[0] == 0 && f[1] == (unsigned long)bus_of(g_vis[k]) && f[2] == 0 && f[3] == 0) {
            *dev = k;
            RET(CUDA_SUCCESS);
        }
    RET(CUDA_ERROR_INVALID_DEVICE);
}

/* ---- contexts ---- */

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    NEED_INIT();
    if (!pctx)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    lock();
    g_ctx[dev].refs++;
    *pctx = &g_ctx[dev];
    unlock();
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!dev_ok(dev))
        RET(CUDA_ERROR_INVALID_DEVICE);
    lock();
    if (g_ctx[dev].refs == 0)   /* more releases than retains */
        r = CUDA_ERROR_INVALID_CONTEXT;
    else
        g_ctx[dev].refs--;
    unlock();
    RET(r);
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    if (ctx && !ctx_lookup(ctx))
        r = CUDA_ERROR_INVALID_CONTEXT;
    else
        t_cur = ctx;
    unlock();
    RET(r);
}

CUresult CUDAAPI cuCtxGetCurrent(CUcontext *pctx)
{
    NEED_INIT();
    if (!pctx)
        RET(CUDA_ERROR_INVALID_VALUE);
    *pctx = t_cur;
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuCtxGetDevice(CUdevice *device)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!device)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    if (c)
        *device = c->ord;
    else
        r = CUDA_ERROR_INVALID_CONTEXT;
    unlock();
    RET(r);
}

/* ---- pointer queries ---- */

CUresult CUDAAPI cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!data)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct map *m = map_at((uintptr_t)ptr);
    struct hostmem *h = m ? NULL : host_at((uintptr_t)ptr);
    if (!m && !h)               /* what the driver says of unregistered memory */
        FAIL(CUDA_ERROR_INVALID_VALUE);
    int ord = m ? ord_of(m->phys) : h->ctx->ord;
    switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
        *(CUcontext *)data = ord >= 0 ? &g_ctx[ord] : NULL;
        break;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
        *(unsigned int *)data = m ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
        break;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
        *(CUdeviceptr *)data = ptr;
        break;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
        if (m)                  /* device memory has no host address */
            FAIL(CUDA_ERROR_INVALID_VALUE);
        *(void **)data = (void *)(uintptr_t)ptr;
        break;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
        *(unsigned long long *)data = m ? m->id : h->id;
        break;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
        *(int *)data = ord;
        break;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
        *(int *)data = m && m->kind == K_ALLOC;
        break;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
        *(CUdeviceptr *)data = m ? m->va : (uintptr_t)h->p;
        break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
        *(size_t *)data = m ? m->size : h->size;
        break;
    case CU_POINTER_ATTRIBUTE_MAPPED:
        *(int *)data = 1;
        break;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
        *(unsigned long long *)data = m && m->kind == K_VMM ? m->vmm->types : 0;
        break;
    default:
        FAIL(CUDA_ERROR_INVALID_VALUE);
    }
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemGetAddressRange(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    struct map *m = map_at((uintptr_t)dptr);
    struct hostmem *h = m ? NULL : host_at((uintptr_t)dptr);
    if (m || h) {
        if (pbase)
            *pbase = m ? m->va : (uintptr_t)h->p;
        if (psize)
            *psize = m ? m->size : h->size;
    } else {
        r = CUDA_ERROR_NOT_FOUND;
    }
    unlock();
    RET(r);
}

/* ---- test-only: host views of device memory (standin_test.h) ---- */

/* For test tooling that plays a NIC with GPUDirect RDMA (fi_interpose.c
 * under MCEFA_FI_HMEM=grant): a real NIC reaches device memory by DMA, the
 * stand-in's device VA is PROT_NONE, so such tooling needs the alias our
 * copies use.  Not a driver call: no context is needed or checked. */
int mcefa_standin_host_alias(CUdeviceptr p, size_t len, void **host)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!host || len == 0 || len > UINTPTR_MAX - (uintptr_t)p)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();                     /* the mapping must not go while we look */
    struct map *m = map_at((uintptr_t)p);
    /* one mapping, never a run of them: their aliases are not contiguous */
    if (!m || len > m->size - ((uintptr_t)p - m->va) || m->prot == CU_MEM_ACCESS_FLAGS_PROT_NONE)
        FAIL(CUDA_ERROR_INVALID_VALUE);
    *host = m->alias + ((uintptr_t)p - m->va);
out:
    unlock();
    RET(r);
}

/* ---- device mappings for cuMemAlloc and legacy IPC ---- */

/* Reserves VA for size bytes of fd and registers the mapping as buffer id;
 * takes fd. */
static CUresult add_mapping(int fd, size_t size, int phys, enum kind k, unsigned long long id,
                            struct map **out)
{
    size_t span;
    struct map *m = calloc(1, sizeof *m);
    struct resv *rv = calloc(1, sizeof *rv);
    void *va = round_up(size, GRAN, &span) == 0 ? reserve_va(span, GRAN) : NULL;
    char *alias = va ? map_alias(fd, size, 0) : NULL;
    if (!m || !rv || !alias) {
        if (va)
            munmap(va, span);
        free(m);
        free(rv);
        close(fd);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *rv = (struct resv){ .va = (uintptr_t)va, .len = span, .nmaps = 1, .next = g_resv };
    g_resv = rv;
    *m = (struct map){ .va = (uintptr_t)va, .size = size, .alias = alias, .phys = phys,
                       .kind = k, .fd = fd, .resv = rv, .id = id,
                       .prot = CU_MEM_ACCESS_FLAGS_PROT_READWRITE, .access = ~0u, .next = g_maps };
    g_maps = m;
    *out = m;
    return CUDA_SUCCESS;
}

static void unlink_map(struct map *m)
{
    for (struct map **pp = &g_maps; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    munmap(m->alias, m->size);
    if (--m->resv->nmaps == 0 && !m->resv->vmm) {   /* the VA was its own */
        for (struct resv **pp = &g_resv; *pp; pp = &(*pp)->next)
            if (*pp == m->resv) {
                *pp = m->resv->next;
                break;
            }
        munmap((void *)m->resv->va, m->resv->len);
        free(m->resv);
    }
    if (m->kind == K_VMM) {
        m->vmm->nmaps--;
        vmm_maybe_free(m->vmm);
    } else {
        close(m->fd);
    }
    free(m);
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize)
{
    CUresult r;
    struct map *m;
    NEED_INIT();
    if (!dptr || bytesize == 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (bytesize > TOTAL_MEM)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    unsigned long long id = new_id();
    int fd = new_memfd('a', c->phys, 0, id, bytesize);
    if (fd < 0)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    if ((r = add_mapping(fd, bytesize, c->phys, K_ALLOC, id, &m)) == CUDA_SUCCESS)
        *dptr = m->va;
out:
    unlock();
    RET(r);
}

/* Unmaps the mapping of this kind that starts at dptr (cuMemFree,
 * cuIpcCloseMemHandle). */
static CUresult drop_base(CUdeviceptr dptr, int kind)
{
    lock();
    struct map *m = map_base((uintptr_t)dptr, kind);
    if (m)
        unlink_map(m);
    unlock();
    return m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr dptr)
{
    NEED_INIT();
    CUresult r = drop_base(dptr, K_ALLOC);
    RET(r);
}

struct ipc_wire {
    uint32_t magic;
    int32_t pid, fd, phys;
    uint64_t size, id;
};
_Static_assert(sizeof(struct ipc_wire) <= CU_IPC_HANDLE_SIZE, "IPC handle too small");

CUresult CUDAAPI cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!pHandle)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct map *m = map_base((uintptr_t)dptr, K_ALLOC);
    if (m) {
        struct ipc_wire w = { IPC_MAGIC, (int32_t)getpid(), m->fd, m->phys, m->size, m->id };
        memset(pHandle, 0, sizeof *pHandle);
        memcpy(pHandle->reserved, &w, sizeof w);
    } else {
        r = CUDA_ERROR_INVALID_VALUE;
    }
    unlock();
    RET(r);
}

CUresult CUDAAPI cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
    CUresult r;
    struct ipc_wire w;
    struct fdinfo fi;
    struct map *m;
    NEED_INIT();
    memcpy(&w, handle.reserved, sizeof w);
    if (!pdptr || (Flags & ~(unsigned)CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS) ||
        w.magic != IPC_MAGIC || w.pid <= 0 || w.fd < 0 || w.size == 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (w.pid == (int32_t)getpid())  /* as the driver: no opening one's own */
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (g_ipc_deny)
        FAIL(CUDA_ERROR_NOT_PERMITTED);
    if (w.phys < 0 || w.phys >= g_nphys || ord_of(w.phys) < 0)
        FAIL(CUDA_ERROR_INVALID_DEVICE);
    for (m = g_maps; m; m = m->next)     /* stricter: import each allocation once */
        if (m->kind == K_IPC && m->ipc_pid == w.pid && m->ipc_id == w.id)
            FAIL(CUDA_ERROR_ALREADY_MAPPED);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)w.pid, (int)w.fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)                 /* exporter gone, or freed the allocation */
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    /* The fd number may have been reused since the export: it must still be
     * the very allocation the handle names. */
    if (read_memfd(fd, &fi) != 0 || fi.kind != 'a' || fi.pid != w.pid || fi.id != w.id ||
        fi.phys != w.phys || fi.size != w.size) {
        close(fd);
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    }
    if ((r = add_mapping(fd, w.size, w.phys, K_IPC, new_id(), &m)) == CUDA_SUCCESS) {
        m->ipc_pid = w.pid;
        m->ipc_id = w.id;
        *pdptr = m->va;
    }
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    NEED_INIT();
    CUresult r = drop_base(dptr, K_IPC);
    RET(r);
}

/* ---- virtual memory management ---- */

static CUresult check_location(const CUmemLocation *loc)
{
    if (loc->type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    return dev_ok(loc->id) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

static CUresult vmm_new(int fd, size_t size, int phys, unsigned types, unsigned long long id,
                        CUmemGenericAllocationHandle *out)
{
    struct vmm *v = calloc(1, sizeof *v);
    if (!v) {
        close(fd);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *v = (struct vmm){ .handle = HANDLE_TAG | id, .fd = fd, .phys = phys, .size = size,
                       .types = types, .hrefs = 1, .next = g_vmms };
    g_vmms = v;
    *out = v->handle;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                             const CUmemAllocationProp *prop, unsigned long long flags)
{
    CUresult r;
    NEED_INIT();
    if (!handle || !prop || flags || size == 0 || size % GRAN ||
        prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->win32HandleMetaData)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if ((r = check_location(&prop->location)) != CUDA_SUCCESS)
        goto out;
    unsigned types = (unsigned)prop->requestedHandleTypes;
    if (types & ~(unsigned)CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        FAIL(CUDA_ERROR_NOT_SUPPORTED);
    if (size > TOTAL_MEM)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    int phys = g_vis[prop->location.id];
    unsigned long long id = new_id();
    int fd = new_memfd('v', phys, types, id, size);
    if (fd < 0)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    r = vmm_new(fd, size, phys, types, id, handle);
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    struct vmm *v = vmm_find(handle);
    if (v) {
        v->hrefs--;
        vmm_maybe_free(v);
    } else {
        r = CUDA_ERROR_INVALID_VALUE;
    }
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                     CUdeviceptr addr, unsigned long long flags)
{
    CUresult r = CUDA_SUCCESS;
    (void)addr;                 /* a hint; the driver may ignore it too */
    NEED_INIT();
    if (!ptr || flags || size == 0 || size % GRAN || (alignment & (alignment - 1)))
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct resv *rv = calloc(1, sizeof *rv);
    void *va = rv ? reserve_va(size, alignment > GRAN ? alignment : GRAN) : NULL;
    if (!va) {
        free(rv);
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    }
    *rv = (struct resv){ .va = (uintptr_t)va, .len = size, .vmm = 1, .next = g_resv };
    g_resv = rv;
    *ptr = rv->va;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    CUresult r = CUDA_ERROR_INVALID_VALUE;
    NEED_INIT();
    lock();
    for (struct resv **pp = &g_resv; *pp; pp = &(*pp)->next) {
        struct resv *rv = *pp;
        /* stricter: whole reservation, and nothing may still be mapped */
        if (rv->vmm && rv->va == ptr && rv->len == size && rv->nmaps == 0) {
            *pp = rv->next;
            munmap((void *)rv->va, rv->len);
            free(rv);
            r = CUDA_SUCCESS;
            break;
        }
    }
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                          CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (flags || size == 0 || size % GRAN || offset % GRAN || ptr % GRAN)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct vmm *v = vmm_find(handle);
    if (!v)
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    if (offset > v->size || size > v->size - offset)
        FAIL(CUDA_ERROR_INVALID_VALUE);
    struct resv *rv = resv_at((uintptr_t)ptr);
    if (!rv || !rv->vmm || size > rv->len - ((uintptr_t)ptr - rv->va))
        FAIL(CUDA_ERROR_INVALID_VALUE);
    for (struct map *m = g_maps; m; m = m->next)
        if (m->va < ptr + size && ptr < m->va + m->size)
            FAIL(CUDA_ERROR_ALREADY_MAPPED);
    if (ord_of(v->phys) < 0)    /* imported from a device we cannot see */
        FAIL(CUDA_ERROR_INVALID_DEVICE);
    struct map *m = calloc(1, sizeof *m);
    char *alias = m ? map_alias(v->fd, size, offset) : NULL;
    if (!alias) {
        free(m);
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    }
    *m = (struct map){ .va = (uintptr_t)ptr, .size = size, .alias = alias, .phys = v->phys,
                       .kind = K_VMM, .fd = -1, .vmm = v, .offset = offset, .resv = rv,
                       .id = new_id(), .prot = CU_MEM_ACCESS_FLAGS_PROT_NONE, .next = g_maps };
    g_maps = m;
    v->nmaps++;
    rv->nmaps++;
out:
    unlock();
    RET(r);
}

/* [ptr, ptr+size) must be exactly a run of whole VMM mappings. */
static int covers_whole_maps(uintptr_t ptr, size_t size)
{
    size_t covered = 0;
    if (size == 0 || size > UINTPTR_MAX - ptr)
        return 0;
    for (struct map *m = g_maps; m; m = m->next) {
        if (!(m->va < ptr + size && ptr < m->va + m->size))
            continue;
        if (m->kind != K_VMM || m->va < ptr || m->size > ptr + size - m->va)
            return 0;
        covered += m->size;
    }
    return covered == size;
}

CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    if (!covers_whole_maps((uintptr_t)ptr, size))
        FAIL(CUDA_ERROR_INVALID_VALUE);
    for (struct map *m = g_maps, *next; m; m = next) {
        next = m->next;
        if (m->va >= ptr && m->va - ptr < size)
            unlink_map(m);
    }
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
                                size_t count)
{
    CUresult r = CUDA_SUCCESS;
    int prot = CU_MEM_ACCESS_FLAGS_PROT_NONE;
    unsigned access = 0;
    NEED_INIT();
    if (!desc || count == 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    for (size_t i = 0; i < count; i++) {
        if ((r = check_location(&desc[i].location)) != CUDA_SUCCESS)
            goto out;
        int f = (int)desc[i].flags;
        if (f != CU_MEM_ACCESS_FLAGS_PROT_NONE && f != CU_MEM_ACCESS_FLAGS_PROT_READ &&
            f != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            FAIL(CUDA_ERROR_INVALID_VALUE);
        if (f > prot)           /* one access level for the devices granted: a model */
            prot = f;
        if (f != CU_MEM_ACCESS_FLAGS_PROT_NONE)
            access |= 1u << g_vis[desc[i].location.id];
    }
    if (!covers_whole_maps((uintptr_t)ptr, size))
        FAIL(CUDA_ERROR_INVALID_VALUE);
    for (struct map *m = g_maps; m; m = m->next)
        if (m->va >= ptr && m->va - ptr < size) {
            m->prot = prot;
            m->access = access;
        }
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                               CUmemAllocationGranularity_flags option)
{
    CUresult r;
    NEED_INIT();
    if (!granularity || !prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
        (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    if ((r = check_location(&prop->location)) == CUDA_SUCCESS)
        *granularity = GRAN;
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!handle)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct map *m = map_at((uintptr_t)addr);
    if (m && m->kind == K_VMM) {
        m->vmm->hrefs++;        /* revives the handle even if all were released */
        *handle = m->vmm->handle;
    } else {
        r = CUDA_ERROR_INVALID_VALUE;
    }
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                              CUmemAllocationHandleType handleType,
                                              unsigned long long flags)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!shareableHandle || flags)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct vmm *v = vmm_find(handle);
    if (!v)
        FAIL(CUDA_ERROR_INVALID_VALUE);
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR ||
        !(v->types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
        FAIL(CUDA_ERROR_NOT_SUPPORTED);
    int fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        FAIL(CUDA_ERROR_OPERATING_SYSTEM);
    *(int *)shareableHandle = fd;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                                CUmemAllocationHandleType shHandleType)
{
    CUresult r;
    struct fdinfo fi;
    int fd = (int)(intptr_t)osHandle;   /* stays the caller's */
    NEED_INIT();
    if (!handle)
        RET(CUDA_ERROR_INVALID_VALUE);
    if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        RET(CUDA_ERROR_NOT_SUPPORTED);
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (fd < 0 || read_memfd(fd, &fi) != 0 || fi.kind != 'v' || fi.size == 0 ||
        fi.size % GRAN || !(fi.types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
        FAIL(CUDA_ERROR_INVALID_VALUE);
    int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mine < 0)
        FAIL(CUDA_ERROR_OPERATING_SYSTEM);
    r = vmm_new(mine, fi.size, fi.phys, fi.types, new_id(), handle);
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop,
                                                        CUmemGenericAllocationHandle handle)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!prop)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct vmm *v = vmm_find(handle);
    if (!v)
        FAIL(CUDA_ERROR_INVALID_VALUE);
    int ord = ord_of(v->phys);
    if (ord < 0)
        FAIL(CUDA_ERROR_INVALID_DEVICE);
    memset(prop, 0, sizeof *prop);
    prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop->location.id = ord;
    prop->requestedHandleTypes = (CUmemAllocationHandleType)v->types;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemGetHandleForAddressRange(void *handle, CUdeviceptr dptr, size_t size,
                                               CUmemRangeHandleType handleType,
                                               unsigned long long flags)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!handle || handleType != CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD ||
        (flags & ~(unsigned long long)CU_MEM_RANGE_FLAG_DMA_BUF_MAPPING_TYPE_PCIE))
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct map *m = map_at((uintptr_t)dptr);
    if (dptr % g_page || size % g_page || size == 0 || !m)
        FAIL(CUDA_ERROR_INVALID_VALUE);
    if (size > m->size - ((uintptr_t)dptr - m->va)) {
        /* The driver gives one dma-buf for VMM mappings side by side; the
         * stand-in has no single file for that.  Callers treat the dma-buf
         * as optional, so say "not supported" rather than "invalid". */
        uintptr_t a = m->va + m->size, end = (uintptr_t)dptr + size;
        struct map *n;
        while (m->kind == K_VMM && (n = map_at(a)) && n->resv == m->resv && n->va + n->size < end)
            a = n->va + n->size;
        r = m->kind == K_VMM && (n = map_at(a)) && n->resv == m->resv ? CUDA_ERROR_NOT_SUPPORTED
                                                                       : CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    /* Not a dma-buf: the whole backing memfd, whatever part was asked for. */
    int fd = fcntl(m->kind == K_VMM ? m->vmm->fd : m->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        FAIL(CUDA_ERROR_OPERATING_SYSTEM);
    *(int *)handle = fd;
out:
    unlock();
    RET(r);
}

/* ---- pinned host memory ---- */

CUresult CUDAAPI cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    CUresult r = CUDA_SUCCESS;
    size_t len;
    NEED_INIT();
    if (!pp || bytesize == 0 || round_up(bytesize, g_page, &len) != 0 ||
        (Flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP |
                             CU_MEMHOSTALLOC_WRITECOMBINED)))
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct hostmem *h = calloc(1, sizeof *h);
    void *p = h ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : MAP_FAILED;
    if (p == MAP_FAILED) {
        free(h);
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    }
    *h = (struct hostmem){ .p = p, .size = bytesize, .len = len, .ctx = c, .id = new_id(),
                           .next = g_host };
    g_host = h;
    *pp = p;
out:
    unlock();
    RET(r);
}

/* With g_lock held: takes the record of p off the list (allocated by
 * cuMemHostAlloc, or registered by cuMemHostRegister); NULL: none. */
static struct hostmem *host_take(void *p, int registered)
{
    for (struct hostmem **pp = &g_host; *pp; pp = &(*pp)->next) {
        struct hostmem *h = *pp;
        if (h->p == p && h->registered == registered) {
            *pp = h->next;
            return h;
        }
    }
    return NULL;
}

CUresult CUDAAPI cuMemFreeHost(void *p)
{
    NEED_INIT();
    lock();
    struct hostmem *h = host_take(p, 0);
    if (h) {
        munmap(h->p, h->len);
        free(h);
    }
    unlock();
    RET(h ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
}

/* Pins nothing (there is no DMA here): records the range as page-locked
 * host memory, as the driver would report it, refusing overlaps and
 * ranges outside the process's mappings (msync probes them) as the driver
 * does. */
CUresult CUDAAPI cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!p || bytesize == 0 || ((uintptr_t)p % g_page) ||
        (Flags & ~(unsigned)(CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP |
                             CU_MEMHOSTREGISTER_IOMEMORY | CU_MEMHOSTREGISTER_READ_ONLY)))
        RET(CUDA_ERROR_INVALID_VALUE);
    size_t len;
    if (round_up(bytesize, g_page, &len) != 0 || msync(p, len, MS_ASYNC) != 0)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    for (struct hostmem *h = g_host; h; h = h->next)
        if ((uintptr_t)p < (uintptr_t)h->p + h->len && (uintptr_t)h->p < (uintptr_t)p + len)
            FAIL(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    struct hostmem *h = calloc(1, sizeof *h);
    if (!h)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    *h = (struct hostmem){ .p = p, .size = bytesize, .len = len, .registered = 1, .ctx = c, .id = new_id(),
                           .next = g_host };
    g_host = h;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemHostUnregister(void *p)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct hostmem *h = host_take(p, 1);
    if (!h)
        FAIL(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    free(h);
out:
    unlock();
    RET(r);
}

/* ---- copies ---- */

CUresult CUDAAPI cuMemsetD8(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
    CUresult r = CUDA_SUCCESS;
    unsigned long long sig;
    NEED_INIT();
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (N && (r = dev_span(dstDevice, N, 1, c->phys, 1u << c->phys, &sig)) == CUDA_SUCCESS)
        for (size_t off = 0, k; off < N; off += k) {
            char *d = alias_of(dstDevice + off, &k);
            if (k > N - off)
                k = N - off;
            memset(d, uc, k);
        }
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuMemcpyHtoD(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    NEED_INIT();
    RET(copy_call(OP_HTOD, dstDevice, NULL, 0, srcHost, ByteCount, NULL, 0));
}

CUresult CUDAAPI cuMemcpyDtoH(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    NEED_INIT();
    RET(copy_call(OP_DTOH, 0, dstHost, srcDevice, NULL, ByteCount, NULL, 0));
}

CUresult CUDAAPI cuMemcpyDtoD(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    NEED_INIT();
    RET(copy_call(OP_DTOD, dstDevice, NULL, srcDevice, NULL, ByteCount, NULL, 0));
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount,
                                   CUstream hStream)
{
    NEED_INIT();
    RET(copy_call(OP_HTOD, dstDevice, NULL, 0, srcHost, ByteCount, hStream, 1));
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
                                   CUstream hStream)
{
    NEED_INIT();
    RET(copy_call(OP_DTOH, 0, dstHost, srcDevice, NULL, ByteCount, hStream, 1));
}

CUresult CUDAAPI cuMemcpyDtoDAsync(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount,
                                   CUstream hStream)
{
    NEED_INIT();
    RET(copy_call(OP_DTOD, dstDevice, NULL, srcDevice, NULL, ByteCount, hStream, 1));
}

CUresult CUDAAPI cuMemcpyPeerAsync(CUdeviceptr dstDevice, CUcontext dstContext, CUdeviceptr srcDevice,
                                   CUcontext srcContext, size_t ByteCount, CUstream hStream)
{
    CUresult r;
    struct op o = { .kind = OP_DTOD, .dst = dstDevice, .src = srcDevice, .n = ByteCount };
    NEED_INIT();
    lock();
    if (!ctx_lookup(dstContext) || !ctx_lookup(srcContext))
        r = CUDA_ERROR_INVALID_CONTEXT;
    else
        r = submit(&o, hStream, 1, dstContext, srcContext);
    unlock();
    RET(r);
}

/* ---- streams and events ---- */

CUresult CUDAAPI cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!phStream || (Flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct CUstream_st *s = stream_new(c);
    if (!s)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    s->next = g_streams;
    g_streams = s;
    *phStream = s;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuStreamDestroy(CUstream hStream)
{
    struct CUstream_st *s = NULL;
    NEED_INIT();
    lock();
    for (struct CUstream_st **pp = &g_streams; *pp; pp = &(*pp)->next)
        if (*pp == hStream) {
            s = *pp;
            *pp = s->next;      /* no new work from here on */
            break;
        }
    if (s) {
        s->stop = 1;
        pthread_cond_signal(&s->work);
    }
    unlock();
    if (!s)
        RET(CUDA_ERROR_INVALID_HANDLE);
    pthread_join(s->thr, NULL); /* the thread drains the queue first */
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    free(s);
    RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuStreamSynchronize(CUstream hStream)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (!hStream) {             /* NULL stream copies ran at the call; host functions may be queued */
        drain(cur_ctx()->dflt);
        goto out;
    }
    struct CUstream_st *s = stream_find(hStream);
    if (!s)
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    while (s->head || s->busy)
        pthread_cond_wait(&s->idle, &g_lock);
    r = s->err;
    s->err = CUDA_SUCCESS;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!phEvent || (Flags & ~(unsigned)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING |
                                         CU_EVENT_INTERPROCESS)) ||
        ((Flags & CU_EVENT_INTERPROCESS) && !(Flags & CU_EVENT_DISABLE_TIMING)))
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct CUevent_st *e = calloc(1, sizeof *e);
    if (!e)
        FAIL(CUDA_ERROR_OUT_OF_MEMORY);
    *e = (struct CUevent_st){ .id = new_id(), .ctx = c, .flags = Flags, .next = g_events };
    g_events = e;
    *phEvent = e;
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuEventRecord(CUevent hEvent, CUstream hStream)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    struct CUctx_st *c = cur_ctx();
    if (!c)
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    struct CUevent_st *e = event_find(hEvent);
    struct CUstream_st *s = hStream ? stream_find(hStream) : NULL;
    if (!e || (hStream && !s))
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    if (e->ctx != (s ? s->ctx : c))     /* documented: same context */
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    struct op o = { .kind = OP_EVENT, .ev_id = e->id, .ev_seq = e->seq + 1 };
    if (!s && c->dflt && (c->dflt->head || c->dflt->busy))
        s = c->dflt;            /* behind the NULL stream's queued host functions */
    if (s && (r = enqueue(s, &o)) != CUDA_SUCCESS)
        goto out;
    e->seq++;
    e->recorded = 1;
    e->pending = 1;
    if (!s)
        event_complete(e);
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuEventQuery(CUevent hEvent)
{
    CUresult r;
    NEED_INIT();
    lock();
    struct CUevent_st *e = event_find(hEvent);
    r = !e ? CUDA_ERROR_INVALID_HANDLE : e->pending ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
    unlock();
    RET(r);
}

CUresult CUDAAPI cuEventSynchronize(CUevent hEvent)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    lock();
    struct CUevent_st *e = event_find(hEvent);
    if (!cur_ctx())
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (!e)
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    unsigned long long id = e->id;
    /* re-find after each wake-up: another thread may destroy the event */
    while ((e = event_by_id(id)) && e->pending)
        pthread_cond_wait(&g_event_cv, &g_lock);
out:
    unlock();
    RET(r);
}

CUresult CUDAAPI cuEventDestroy(CUevent hEvent)
{
    CUresult r = CUDA_ERROR_INVALID_HANDLE;
    NEED_INIT();
    lock();
    for (struct CUevent_st **pp = &g_events; *pp; pp = &(*pp)->next)
        if (*pp == hEvent) {    /* a queued marker finds it gone by id */
            struct CUevent_st *e = *pp;
            *pp = e->next;
            free(e);
            r = CUDA_SUCCESS;
            break;
        }
    unlock();
    RET(r);
}

CUresult CUDAAPI cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!pMilliseconds)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUevent_st *a = event_find(hStart), *b = event_find(hEnd);
    if (!a || !b || !a->recorded || !b->recorded ||
        ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING))
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    if (a->pending || b->pending)
        FAIL(CUDA_ERROR_NOT_READY);
    *pMilliseconds = (float)((double)(b->t.tv_sec - a->t.tv_sec) * 1e3 +
                             (double)(b->t.tv_nsec - a->t.tv_nsec) / 1e6);
out:
    unlock();
    RET(r);
}

/* ---- host functions ---- */

CUresult CUDAAPI cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData)
{
    CUresult r = CUDA_SUCCESS;
    NEED_INIT();
    if (!fn)
        RET(CUDA_ERROR_INVALID_VALUE);
    lock();
    struct CUctx_st *c = cur_ctx();
    struct CUstream_st *s = hStream ? stream_find(hStream) : NULL;
    if (hStream && !s)
        FAIL(CUDA_ERROR_INVALID_HANDLE);
    if (!c || (s && s->ctx != c))   /* stricter: a stream is used under its own context */
        FAIL(CUDA_ERROR_INVALID_CONTEXT);
    if (!s) {
        if (!c->dflt && !(c->dflt = stream_new(c)))
            FAIL(CUDA_ERROR_OUT_OF_MEMORY);
        s = c->dflt;
    }
    struct op o = { .kind = OP_HOSTFN, .fn = fn, .user = userData };
    r = enqueue(s, &o);
out:
    unlock();
    RET(r);
}
