/* LD_PRELOAD library for tests (never installed): records what a process
 * asks of libfabric, one line per call, to the file named by
 * MCEFA_FI_LOG.
 *
 * Only fi_getinfo and fi_fabric are real exported symbols; fi_domain,
 * fi_endpoint, fi_setopt/fi_getopt and fi_mr_reg are static inline
 * functions that call through the objects' ops tables. So fi_fabric
 * returns the provider's fabric with its ops table swapped for a copy whose
 * domain call does the same to each domain (mr and endpoint calls), and
 * each endpoint gets a copy whose getopt/setopt record before they forward.
 * Every call still reaches the provider unchanged.
 *
 *   getinfo version=1.17 prov=tcp;ofi_rxm caps=0x.. mr_mode=0x.. mode=0x.. hmem_env=system rc=0
 *   domain prov=tcp;ofi_rxm name=eth0 hmem=0 rc=0
 *   endpoint prov=tcp;ofi_rxm domain=eth0 hmem=0
 *   mr_reg prov=tcp;ofi_rxm domain=eth0 iface=0 flags=0x0 len=4096
 *   setopt prov=efa domain=rdmap79s0-rdm level=0 name=11 rc=0
 *   getopt prov=efa domain=rdmap79s0-rdm level=0 name=14 rc=0
 *
 * Layered providers (tcp;ofi_rxm) open their core provider's objects
 * through the same calls; those lines carry the core's prov= (tcp).
 *
 * MCEFA_FI_HMEM makes the provider look like one with GPU memory support
 * (tcp has none), to test what mcefad does with each answer:
 *   grant             fi_getinfo with FI_HMEM asked answers the entries it
 *                     has without, with FI_HMEM and FI_MR_HMEM added;
 *                     domains and endpoints of such entries open (the bits
 *                     are hidden from the provider), and
 *                     FI_OPT_CUDA_API_PERMITTED is accepted
 *   domain_refuses    as grant, but fi_domain of an FI_HMEM entry fails
 *                     with -FI_EOPNOTSUPP
 *   cuda_api_refused  as grant, but FI_OPT_CUDA_API_PERMITTED is refused
 *                     with -FI_EOPNOTSUPP
 * Unset, every call reaches the provider unchanged.
 *
 * GPUDirect RDMA, emulated (every mode but unset): a test stand-in that
 * exercises mcefad's GPUDirect logic on tcp, never a GPU. The "GPU" is
 * the CUDA driver stand-in (tests/cuda_standin), whose device VA is
 * PROT_NONE, its bytes a memfd. fi_mr_regattr with iface FI_HMEM_CUDA
 * reaches the provider as an FI_HMEM_SYSTEM registration of a host view
 * of those bytes (mcefa_standin_host_alias, found by dlsym in whatever
 * loaded the stand-in, then mapped again by us so that it outlives a
 * too-early cuMemFree); the endpoint's RMA calls (fi_read/readv/readmsg,
 * fi_write/writev/writemsg, fi_inject_write, fi_writedata,
 * fi_inject_writedata) on endpoints opened with FI_HMEM send a local
 * buffer inside such a registration to the provider as its host view. A
 * peer's RMA into the region lands in the memfd, so cuMemcpyDtoH sees it.
 * The line of such a registration ends in "hmem=alias rc=N"; its close
 * records "mr_close ... hmem=alias rc=N". Refused with -FI_EOPNOTSUPP and
 * a line saying why ("hmem=refused why=..."): a domain with
 * FI_MR_VIRT_ADDR (peers would address the region by its device VA, which
 * the provider cannot map to the host view; tcp;ofi_rxm has none, so
 * remote addresses are offsets and need no translation), FI_MR_DMABUF
 * (not emulated: the stand-in's dma-buf is its memfd, and libfabric
 * below 1.20 has no FI_MR_DMABUF anyway), more than one iov, memory the
 * stand-in does not know (why=not_device, -FI_EINVAL) and no stand-in
 * loaded (why=no_standin). An RMA call whose local buffer is stand-in
 * device memory outside any live registration, or runs past one, fails
 * with -FI_EINVAL and a line "rma ... hmem=unregistered" (the real NIC
 * would fault or fail it; here the CPU would fault). */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/cuda_standin/standin_test.h"

/* FI_OPT_CUDA_API_PERMITTED: named from 1.18 headers on; the value (an
 * ABI-stable enum) lets the recorder recognise it under older ones. */
#if FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION) >= FI_VERSION(1, 18)
#define OPT_CUDA_API FI_OPT_CUDA_API_PERMITTED
#else
#define OPT_CUDA_API 10
#endif

/* The MCEFA_FI_HMEM mode: 0 none, else one of these. */
enum { FAKE_NONE, FAKE_GRANT, FAKE_DOMAIN_REFUSES, FAKE_CUDA_API_REFUSED };

static int fake_mode(void)
{
    const char *m = getenv("MCEFA_FI_HMEM");
    if (!m || !*m)
        return FAKE_NONE;
    if (!strcmp(m, "domain_refuses"))
        return FAKE_DOMAIN_REFUSES;
    if (!strcmp(m, "cuda_api_refused"))
        return FAKE_CUDA_API_REFUSED;
    return FAKE_GRANT;
}

/* Hides FI_HMEM from the provider for one call on info, then puts it
 * back: the provider opens what it can, mcefad keeps what it was told. */
typedef struct hidden {
    struct fi_info *info;
    uint64_t caps, dom_caps;
    int mr_mode;
} hidden;

static hidden hide_hmem(struct fi_info *info)
{
    hidden h = {0};
    if (fake_mode() == FAKE_NONE || !info || !(info->caps & FI_HMEM))
        return h;
    h.info = info;
    h.caps = info->caps;
    info->caps &= ~FI_HMEM;
    if (info->domain_attr) {
        h.dom_caps = info->domain_attr->caps;
        h.mr_mode = info->domain_attr->mr_mode;
        info->domain_attr->caps &= ~FI_HMEM;
        info->domain_attr->mr_mode &= ~FI_MR_HMEM;
    }
    return h;
}

static void unhide(hidden h)
{
    if (!h.info)
        return;
    h.info->caps = h.caps;
    if (h.info->domain_attr) {
        h.info->domain_attr->caps = h.dom_caps;
        h.info->domain_attr->mr_mode = h.mr_mode;
    }
}

/* What a wrapped domain or endpoint was opened as. */
typedef struct tagged {
    const void *fid;
    char prov[64], domain[64];
    const void *orig_ops; /* the provider's table the copy forwards to */
    const void *orig_mr;  /* domains: the provider's mr table */
    const void *orig_rma; /* endpoints opened with FI_HMEM: the provider's rma table */
    uint64_t mr_mode;     /* domains: what the caller was told (its fi_info) */
} tagged;

#define TAGS_MAX 4096
static tagged tags[TAGS_MAX];
static unsigned ntags;
/* Copies of ops tables live in static storage until exit (the objects may
 * live that long, and heap copies would read as leaks to LeakSanitizer in
 * a sanitized daemon). */
#define COPIES_MAX 1024
#define COPY_BYTES 512
static _Alignas(max_align_t) unsigned char copies[COPIES_MAX][COPY_BYTES];
static unsigned ncopies;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void record(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void record(const char *fmt, ...)
{
    const char *path = getenv("MCEFA_FI_LOG");
    if (!path || !*path)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* One write of a whole line with O_APPEND: lines of threads that
     * register at once do not interleave. */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n) {
        }
        close(fd);
    }
}

static void *copy_ops(const void *orig, size_t size, size_t ours)
{
    pthread_mutex_lock(&lock);
    unsigned k = ncopies < COPIES_MAX ? ncopies++ : COPIES_MAX;
    pthread_mutex_unlock(&lock);
    if (k == COPIES_MAX || size > COPY_BYTES || ours > COPY_BYTES) {
        fprintf(stderr, "fi_interpose: no room to copy an ops table of %zu bytes\n", size);
        abort();
    }
    memcpy(copies[k], orig, size);
    return copies[k];
}

static void tag(const void *fid, const char *prov, const char *domain, const void *orig_ops, const void *orig_mr,
                const void *orig_rma, uint64_t mr_mode)
{
    pthread_mutex_lock(&lock);
    if (ntags < TAGS_MAX) {
        tagged *t = &tags[ntags++];
        t->fid = fid;
        snprintf(t->prov, sizeof(t->prov), "%s", prov ? prov : "?");
        snprintf(t->domain, sizeof(t->domain), "%s", domain ? domain : "?");
        t->orig_ops = orig_ops;
        t->orig_mr = orig_mr;
        t->orig_rma = orig_rma;
        t->mr_mode = mr_mode;
    }
    pthread_mutex_unlock(&lock);
}

static tagged find(const void *fid)
{
    tagged t = {0};
    pthread_mutex_lock(&lock);
    for (unsigned i = ntags; i-- > 0;)
        if (tags[i].fid == fid) {
            t = tags[i];
            break;
        }
    pthread_mutex_unlock(&lock);
    return t;
}

/* ---- Endpoint options ---------------------------------------------------- */

static int ep_getopt(fid_t fid, int level, int name, void *val, size_t *len)
{
    tagged t = find(fid);
    const struct fi_ops_ep *o = t.orig_ops;
    int rc = o->getopt(fid, level, name, val, len);
    record("getopt prov=%s domain=%s level=%d name=%d rc=%d", t.prov, t.domain, level, name, rc);
    return rc;
}

static int ep_setopt(fid_t fid, int level, int name, const void *val, size_t len)
{
    tagged t = find(fid);
    const struct fi_ops_ep *o = t.orig_ops;
    int rc, fake = fake_mode();
    if (fake != FAKE_NONE && level == FI_OPT_ENDPOINT && name == OPT_CUDA_API)
        rc = fake == FAKE_CUDA_API_REFUSED ? -FI_EOPNOTSUPP : 0;
    else
        rc = o->setopt(fid, level, name, val, len);
    record("setopt prov=%s domain=%s level=%d name=%d rc=%d", t.prov, t.domain, level, name, rc);
    return rc;
}

/* ---- GPUDirect RDMA, emulated over the CUDA driver stand-in --------------- */

/* A test stand-in: it lets mcefad's GPUDirect code (CUDA registrations,
 * RMA from and into GPU memory) run on tcp; no GPU is involved. The
 * provider is given host views of the stand-in's device memory, the way a
 * real NIC is given the GPU's pages. */

/* mcefa_standin_host_alias of the stand-in the process loaded, once
 * found. mcefad (and check_gpu) dlopen it RTLD_LOCAL by a path of their
 * own (cuda_library), so RTLD_DEFAULT may not see it: every loaded object
 * is asked by name with RTLD_NOLOAD, which loads nothing new. */
static _Atomic(mcefa_standin_host_alias_fn) standin_fn;
static pthread_mutex_t resolve_lock = PTHREAD_MUTEX_INITIALIZER;

#define LOADED_MAX 512
typedef struct loaded {
    char *name[LOADED_MAX];
    unsigned n;
} loaded;

static int collect_loaded(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    loaded *l = arg;
    /* dlopen is not called from here: the loader's lock is held. */
    if (info->dlpi_name && info->dlpi_name[0] && l->n < LOADED_MAX && (l->name[l->n] = strdup(info->dlpi_name)))
        l->n++;
    return 0;
}

static mcefa_standin_host_alias_fn standin_alias(void)
{
    mcefa_standin_host_alias_fn fn = atomic_load(&standin_fn);
    if (fn)
        return fn;
    pthread_mutex_lock(&resolve_lock);
    if (!(fn = atomic_load(&standin_fn))) {
        *(void **)&fn = dlsym(RTLD_DEFAULT, MCEFA_STANDIN_HOST_ALIAS);
        loaded l = {.n = 0};
        if (!fn)
            dl_iterate_phdr(collect_loaded, &l);
        for (unsigned i = 0; i < l.n; i++) {
            void *h = fn ? NULL : dlopen(l.name[i], RTLD_NOW | RTLD_NOLOAD);
            if (h && !(*(void **)&fn = dlsym(h, MCEFA_STANDIN_HOST_ALIAS)))
                dlclose(h);     /* the one found keeps its reference: it stays loaded */
            free(l.name[i]);
        }
        if (fn)
            atomic_store(&standin_fn, fn);
    }
    pthread_mutex_unlock(&resolve_lock);
    return fn;
}

/* One CUDA registration given to the provider as host memory: device range
 * [dev, dev + len) is at host in our own mapping view (view_len bytes,
 * page aligned). Lives from a successful fi_mr_regattr to the MR's close. */
typedef struct dev_reg {
    const struct fid_mr *mr;
    uintptr_t dev;
    size_t len;
    char *host, *view;
    size_t view_len;
    const struct fi_ops *orig_fid_ops; /* the MR's own, which our copy's close calls */
    char prov[64], domain[64];
    struct dev_reg *next;
} dev_reg;
static dev_reg *dev_regs; /* under lock */

/* One copy of each provider's MR fid ops table, with close wrapped (a
 * copy per MR would run out of the static room). */
#define MR_OPS_MAX 16
static struct {
    const struct fi_ops *orig;
    struct fi_ops *copy;
} mr_ops[MR_OPS_MAX];
static pthread_mutex_t mr_ops_lock = PTHREAD_MUTEX_INITIALIZER; /* copy_ops takes lock */

/* A mapping of our own of the pages at host (a MAP_SHARED alias, the
 * stand-in's): mremap with old_size 0 maps the same shared pages again,
 * so the provider's view stays valid (if stale) even when the caller
 * frees the device memory before it closes the MR, as pinned pages
 * would; the stand-in's alias is unmapped by cuMemFree. */
static char *own_view(char *host, size_t len, char **view, size_t *view_len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)host & ~(uintptr_t)(pg - 1);
    size_t head = (uintptr_t)host - start, span = (head + len + pg - 1) / pg * pg;
    void *v = mremap((void *)start, 0, span, MREMAP_MAYMOVE);
    if (v == MAP_FAILED)
        return NULL;
    *view = v;
    *view_len = span;
    return (char *)v + head;
}

static int mr_close(struct fid *fid)
{
    const struct fi_ops *orig = NULL;
    dev_reg r = {0};
    pthread_mutex_lock(&lock);
    for (dev_reg *x = dev_regs; x; x = x->next)
        if (&x->mr->fid == fid) {
            orig = x->orig_fid_ops;
            r = *x;
            break;
        }
    pthread_mutex_unlock(&lock);
    if (!orig) {    /* cannot happen: only registered MRs get this table */
        fprintf(stderr, "fi_interpose: close of an MR it has no record of\n");
        abort();
    }
    /* The provider may still touch the view until its close returns. */
    int rc = orig->close(fid);
    record("mr_close prov=%s domain=%s len=%zu hmem=alias rc=%d", r.prov, r.domain, r.len, rc);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&lock);
    for (dev_reg **pp = &dev_regs; *pp; pp = &(*pp)->next)
        if (&(*pp)->mr->fid == fid) {
            dev_reg *x = *pp;
            *pp = x->next;
            munmap(x->view, x->view_len);
            free(x);
            break;
        }
    pthread_mutex_unlock(&lock);
    return rc;
}

static const struct fi_ops *mr_fid_ops(const struct fi_ops *orig)
{
    struct fi_ops *c = NULL;
    pthread_mutex_lock(&mr_ops_lock);
    for (unsigned i = 0; i < MR_OPS_MAX && !c; i++) {
        if (!mr_ops[i].orig) {
            c = copy_ops(orig, orig->size, sizeof(*c));
            c->close = mr_close;
            mr_ops[i].orig = orig;
            mr_ops[i].copy = c;
        } else if (mr_ops[i].orig == orig) {
            c = mr_ops[i].copy;
        }
    }
    pthread_mutex_unlock(&mr_ops_lock);
    if (!c) {
        fprintf(stderr, "fi_interpose: more than %d MR ops tables\n", MR_OPS_MAX);
        abort();
    }
    return c;
}

/* Why a CUDA registration cannot be emulated ("" when it can). */
static const char *cuda_reg_refusal(const tagged *t, const struct fi_mr_attr *attr, uint64_t flags)
{
    if (t->mr_mode & FI_MR_VIRT_ADDR)
        return "virt_addr"; /* peers would send device VAs the provider checks against the view */
#ifdef FI_MR_DMABUF
    if (flags & FI_MR_DMABUF)
        return "dmabuf";
#else
    (void)flags;
#endif
    if (attr->iov_count != 1)
        return "iov_count";
    return "";
}

/* fi_mr_regattr with iface FI_HMEM_CUDA: the provider registers the host
 * view of the device range as host memory, and the range is remembered
 * until the MR is closed. */
static int cuda_regattr(const tagged *t, struct fid *fid, const struct fi_mr_attr *attr, uint64_t flags,
                        struct fid_mr **mr)
{
    size_t len = attr->iov_count ? attr->mr_iov[0].iov_len : 0;
    char head[256];
    snprintf(head, sizeof(head), "mr_reg prov=%s domain=%s iface=%d flags=0x%llx len=%zu", t->prov, t->domain,
             (int)attr->iface, (unsigned long long)flags, len);
    const char *why = cuda_reg_refusal(t, attr, flags);
    mcefa_standin_host_alias_fn fn = why[0] ? NULL : standin_alias();
    if (!why[0] && !fn) {
        fprintf(stderr, "fi_interpose: a CUDA registration, but no loaded library has " MCEFA_STANDIN_HOST_ALIAS
                        " (the CUDA driver stand-in is not loaded)\n");
        why = "no_standin";
    }
    if (why[0]) {
        record("%s hmem=refused why=%s rc=%d", head, why, -FI_EOPNOTSUPP);
        return -FI_EOPNOTSUPP;
    }
    uintptr_t dev = (uintptr_t)attr->mr_iov[0].iov_base;
    void *alias = NULL;
    int cu = fn(dev, len, &alias);
    if (cu != 0) {
        record("%s hmem=refused why=not_device cuda_rc=%d rc=%d", head, cu, -FI_EINVAL);
        return -FI_EINVAL;
    }
    dev_reg *r = calloc(1, sizeof(*r));
    char *host = r ? own_view(alias, len, &r->view, &r->view_len) : NULL;
    if (!host) {
        free(r);
        record("%s hmem=refused why=no_view rc=%d", head, -FI_ENOMEM);
        return -FI_ENOMEM;
    }
    struct iovec iov = {.iov_base = host, .iov_len = len};
    struct fi_mr_attr a = *attr;
    a.mr_iov = &iov;
    a.iface = FI_HMEM_SYSTEM;
    a.device.reserved = 0;
    int rc = ((const struct fi_ops_mr *)t->orig_mr)->regattr(fid, &a, flags, mr);
    record("%s hmem=alias rc=%d", head, rc);
    if (rc != 0 || !*mr) {
        munmap(r->view, r->view_len);
        free(r);
        return rc;
    }
    r->mr = *mr;
    r->dev = dev;
    r->len = len;
    r->host = host;
    r->orig_fid_ops = (*mr)->fid.ops;
    snprintf(r->prov, sizeof(r->prov), "%s", t->prov);
    snprintf(r->domain, sizeof(r->domain), "%s", t->domain);
    const struct fi_ops *ours = mr_fid_ops((*mr)->fid.ops);
    pthread_mutex_lock(&lock);
    r->next = dev_regs;
    dev_regs = r;
    pthread_mutex_unlock(&lock);
    (*mr)->fid.ops = (struct fi_ops *)ours;
    return 0;
}

/* Where local buffer [p, p + n) is for the provider: p itself (host
 * memory), or inside the view of the live registration that holds it.
 * -FI_EINVAL when it is stand-in device memory that no registration
 * covers whole. */
static int local_buf(const void *p, size_t n, void **out)
{
    uintptr_t a = (uintptr_t)p;
    *out = (void *)p;
    if (!p || n == 0)
        return 0;
    int rc = 1;
    pthread_mutex_lock(&lock);
    for (dev_reg *r = dev_regs; r && rc == 1; r = r->next)
        if (a >= r->dev && a - r->dev < r->len) {
            rc = n <= r->len - (a - r->dev) ? 0 : -FI_EINVAL;
            if (rc == 0)
                *out = r->host + (a - r->dev);
        }
    pthread_mutex_unlock(&lock);
    if (rc != 1)
        return rc;
    /* Not ours. Device memory? Only asked once the stand-in was needed. */
    mcefa_standin_host_alias_fn fn = atomic_load(&standin_fn);
    void *h;
    return fn && fn(a, 1, &h) == 0 ? -FI_EINVAL : 0;
}

#define RMA_IOV_MAX 16

/* The iov the provider is given (out, count entries, when *moved); 0, or
 * -FI_EINVAL. Longer iovs than we have room for pass unchanged if they
 * hold no device memory. */
static int local_iov(const struct iovec *iov, size_t count, struct iovec *out, bool *moved)
{
    *moved = false;
    for (size_t i = 0; i < count; i++) {
        void *b;
        int rc = local_buf(iov[i].iov_base, iov[i].iov_len, &b);
        if (rc)
            return rc;
        if (b != iov[i].iov_base && count > RMA_IOV_MAX)
            return -FI_EINVAL;
        if (i < RMA_IOV_MAX)
            out[i] = (struct iovec){.iov_base = b, .iov_len = iov[i].iov_len};
        *moved |= b != iov[i].iov_base;
    }
    return 0;
}

static const struct fi_ops_rma *rma_of(struct fid_ep *ep, tagged *t)
{
    *t = find(&ep->fid);
    return t->orig_rma;
}

/* Records an RMA call refused for its local buffer. */
static ssize_t rma_refused(const tagged *t, const char *op, int rc)
{
    record("rma prov=%s domain=%s op=%s hmem=unregistered rc=%d", t->prov, t->domain, op, rc);
    return rc;
}

/* Records an RMA call whose local buffer was moved to a host view (the
 * others are not recorded: the daemon's host-memory RMA is its bulk). */
static ssize_t rma_done(const tagged *t, const char *op, bool moved, ssize_t rc)
{
    if (moved)
        record("rma prov=%s domain=%s op=%s hmem=alias rc=%zd", t->prov, t->domain, op, rc);
    return rc;
}

/* The one-buffer calls: buf, as the provider is to see it, or refusal. */
#define RMA_BUF(op, call)                                                                                          \
    tagged t;                                                                                                      \
    const struct fi_ops_rma *o = rma_of(ep, &t);                                                                   \
    void *b;                                                                                                       \
    int brc = local_buf(buf, len, &b);                                                                             \
    if (brc)                                                                                                       \
        return rma_refused(&t, op, brc);                                                                           \
    return rma_done(&t, op, b != buf, call)

static ssize_t rma_read(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src, uint64_t addr,
                        uint64_t key, void *ctx)
{
    RMA_BUF("read", o->read(ep, b, len, desc, src, addr, key, ctx));
}

static ssize_t rma_write(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest, uint64_t addr,
                         uint64_t key, void *ctx)
{
    RMA_BUF("write", o->write(ep, b, len, desc, dest, addr, key, ctx));
}

static ssize_t rma_inject(struct fid_ep *ep, const void *buf, size_t len, fi_addr_t dest, uint64_t addr, uint64_t key)
{
    RMA_BUF("inject", o->inject(ep, b, len, dest, addr, key));
}

static ssize_t rma_writedata(struct fid_ep *ep, const void *buf, size_t len, void *desc, uint64_t data,
                             fi_addr_t dest, uint64_t addr, uint64_t key, void *ctx)
{
    RMA_BUF("writedata", o->writedata(ep, b, len, desc, data, dest, addr, key, ctx));
}

static ssize_t rma_injectdata(struct fid_ep *ep, const void *buf, size_t len, uint64_t data, fi_addr_t dest,
                              uint64_t addr, uint64_t key)
{
    RMA_BUF("injectdata", o->injectdata(ep, b, len, data, dest, addr, key));
}

/* The iov calls: iov (or msg's), as the provider is to see it, or refusal. */
#define RMA_IOV(op, in, count, call)                                                                               \
    tagged t;                                                                                                      \
    const struct fi_ops_rma *o = rma_of(ep, &t);                                                                   \
    struct iovec v[RMA_IOV_MAX];                                                                                   \
    bool moved;                                                                                                    \
    int vrc = local_iov(in, count, v, &moved);                                                                     \
    if (vrc)                                                                                                       \
        return rma_refused(&t, op, vrc);                                                                           \
    return rma_done(&t, op, moved, call)

static ssize_t rma_readv(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count, fi_addr_t src,
                         uint64_t addr, uint64_t key, void *ctx)
{
    RMA_IOV("readv", iov, count, o->readv(ep, moved ? v : iov, desc, count, src, addr, key, ctx));
}

static ssize_t rma_writev(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count, fi_addr_t dest,
                          uint64_t addr, uint64_t key, void *ctx)
{
    RMA_IOV("writev", iov, count, o->writev(ep, moved ? v : iov, desc, count, dest, addr, key, ctx));
}

/* msg with its iov swapped for ours when a buffer moved. */
static const struct fi_msg_rma *msg_with(const struct fi_msg_rma *msg, struct fi_msg_rma *copy, bool moved,
                                         const struct iovec *v)
{
    if (!moved)
        return msg;
    *copy = *msg;
    copy->msg_iov = v;
    return copy;
}

static ssize_t rma_readmsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags)
{
    struct fi_msg_rma m;
    RMA_IOV("readmsg", msg->msg_iov, msg->iov_count, o->readmsg(ep, msg_with(msg, &m, moved, v), flags));
}

static ssize_t rma_writemsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags)
{
    struct fi_msg_rma m;
    RMA_IOV("writemsg", msg->msg_iov, msg->iov_count, o->writemsg(ep, msg_with(msg, &m, moved, v), flags));
}

/* The endpoint's rma table: a copy whose calls move local buffers. */
static void wrap_rma(struct fid_ep *ep)
{
    struct fi_ops_rma *c = copy_ops(ep->rma, ep->rma->size, sizeof(*c));
    c->read = rma_read;
    c->readv = rma_readv;
    c->readmsg = rma_readmsg;
    c->write = rma_write;
    c->writev = rma_writev;
    c->writemsg = rma_writemsg;
    c->inject = rma_inject;
    c->writedata = rma_writedata;
    c->injectdata = rma_injectdata;
    ep->rma = c;
}

/* ---- Domains: endpoints and registrations -------------------------------- */

static int dom_endpoint(struct fid_domain *d, struct fi_info *info, struct fid_ep **ep, void *ctx)
{
    tagged dt = find(&d->fid);
    const struct fi_ops_domain *o = dt.orig_ops;
    bool hmem = info && (info->caps & FI_HMEM);
    hidden h = hide_hmem(info);
    int rc = o->endpoint(d, info, ep, ctx);
    unhide(h);
    if (rc == 0 && *ep && (*ep)->ops) {
        struct fi_ops_ep *c = copy_ops((*ep)->ops, (*ep)->ops->size, sizeof(*c));
        /* RMA from and into emulated GPU memory: only where the caller
         * asked for FI_HMEM (a layered provider's core endpoints get host
         * addresses from the layer above). */
        bool rma = hmem && fake_mode() != FAKE_NONE && (*ep)->rma;
        tag(&(*ep)->fid, dt.prov, dt.domain, (*ep)->ops, NULL, rma ? (*ep)->rma : NULL, 0);
        c->getopt = ep_getopt;
        c->setopt = ep_setopt;
        (*ep)->ops = c;
        if (rma)
            wrap_rma(*ep);
        record("endpoint prov=%s domain=%s hmem=%d", dt.prov, dt.domain, hmem);
    }
    return rc;
}

static int mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access, uint64_t offset, uint64_t key,
                  uint64_t flags, struct fid_mr **mr, void *ctx)
{
    tagged t = find(fid);
    record("mr_reg prov=%s domain=%s len=%zu", t.prov, t.domain, len);
    return ((const struct fi_ops_mr *)t.orig_mr)->reg(fid, buf, len, access, offset, key, flags, mr, ctx);
}

static int mr_regv(struct fid *fid, const struct iovec *iov, size_t count, uint64_t access, uint64_t offset,
                   uint64_t key, uint64_t flags, struct fid_mr **mr, void *ctx)
{
    tagged t = find(fid);
    size_t len = 0;
    for (size_t i = 0; i < count; i++)
        len += iov[i].iov_len;
    record("mr_reg prov=%s domain=%s len=%zu", t.prov, t.domain, len);
    return ((const struct fi_ops_mr *)t.orig_mr)->regv(fid, iov, count, access, offset, key, flags, mr, ctx);
}

static int mr_regattr(struct fid *fid, const struct fi_mr_attr *attr, uint64_t flags, struct fid_mr **mr)
{
    tagged t = find(fid);
    if (fake_mode() != FAKE_NONE && attr->iface == FI_HMEM_CUDA)
        return cuda_regattr(&t, fid, attr, flags, mr);
    size_t len = 0;
    for (size_t i = 0; i < attr->iov_count; i++)
        len += attr->mr_iov[i].iov_len;
    record("mr_reg prov=%s domain=%s iface=%d flags=0x%llx len=%zu", t.prov, t.domain, (int)attr->iface,
           (unsigned long long)flags, len);
    return ((const struct fi_ops_mr *)t.orig_mr)->regattr(fid, attr, flags, mr);
}

/* ---- Fabrics --------------------------------------------------------------- */

static int fab_domain(struct fid_fabric *f, struct fi_info *info, struct fid_domain **d, void *ctx)
{
    const struct fi_ops_fabric *o = find(&f->fid).orig_ops;
    const char *prov = info->fabric_attr ? info->fabric_attr->prov_name : NULL;
    const char *name = info->domain_attr ? info->domain_attr->name : NULL;
    bool hmem = (info->caps & FI_HMEM) != 0;
    int rc;
    if (hmem && fake_mode() == FAKE_DOMAIN_REFUSES) {
        rc = -FI_EOPNOTSUPP;
    } else {
        hidden h = hide_hmem(info);
        rc = o->domain(f, info, d, ctx);
        unhide(h);
    }
    record("domain prov=%s name=%s hmem=%d rc=%d", prov ? prov : "?", name ? name : "?", hmem, rc);
    if (rc != 0 || !*d)
        return rc;
    const void *orig_ops = (*d)->ops, *orig_mr = (*d)->mr;
    tag(&(*d)->fid, prov, name, orig_ops, orig_mr, NULL,
        info->domain_attr ? (uint64_t)(unsigned)info->domain_attr->mr_mode : 0);
    if (orig_ops) {
        struct fi_ops_domain *c = copy_ops(orig_ops, (*d)->ops->size, sizeof(*c));
        c->endpoint = dom_endpoint;
        (*d)->ops = c;
    }
    if (orig_mr) {
        struct fi_ops_mr *c = copy_ops(orig_mr, (*d)->mr->size, sizeof(*c));
        c->reg = mr_reg;
        c->regv = mr_regv;
        c->regattr = mr_regattr;
        (*d)->mr = c;
    }
    return rc;
}

int fi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
    static int (*real)(struct fi_fabric_attr *, struct fid_fabric **, void *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fi_fabric");
    int rc = real(attr, fabric, context);
    if (rc == 0 && *fabric && (*fabric)->ops) {
        struct fi_ops_fabric *c = copy_ops((*fabric)->ops, (*fabric)->ops->size, sizeof(*c));
        tag(&(*fabric)->fid, attr->prov_name, attr->name, (*fabric)->ops, NULL, NULL, 0);
        c->domain = fab_domain;
        (*fabric)->ops = c;
    }
    return rc;
}

int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags, const struct fi_info *hints,
               struct fi_info **info)
{
    static int (*real)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *, struct fi_info **);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fi_getinfo");
    int rc;
    if (fake_mode() != FAKE_NONE && hints && (hints->caps & FI_HMEM)) {
        /* Ask without, answer with. */
        struct fi_info *h = fi_dupinfo(hints);
        if (!h)
            return -FI_ENOMEM;
        h->caps &= ~FI_HMEM;
        if (h->domain_attr)
            h->domain_attr->mr_mode &= ~FI_MR_HMEM;
        rc = real(version, node, service, flags, h, info);
        fi_freeinfo(h);
        for (struct fi_info *i = rc == 0 ? *info : NULL; i; i = i->next) {
            i->caps |= FI_HMEM;
            if (i->domain_attr) {
                i->domain_attr->caps |= FI_HMEM;
                i->domain_attr->mr_mode |= FI_MR_HMEM;
            }
        }
    } else {
        rc = real(version, node, service, flags, hints, info);
    }
    const char *hmem = getenv("FI_HMEM");
    record("getinfo version=%u.%u prov=%s caps=0x%llx mr_mode=0x%x mode=0x%llx hmem_env=%s rc=%d", FI_MAJOR(version),
           FI_MINOR(version),
           hints && hints->fabric_attr && hints->fabric_attr->prov_name ? hints->fabric_attr->prov_name : "-",
           hints ? (unsigned long long)hints->caps : 0ull,
           hints && hints->domain_attr ? (unsigned)hints->domain_attr->mr_mode : 0u,
           hints ? (unsigned long long)hints->mode : 0ull, hmem ? hmem : "-", rc);
    return rc;
}
