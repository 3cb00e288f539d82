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
 * Unset, every call reaches the provider unchanged. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void tag(const void *fid, const char *prov, const char *domain, const void *orig_ops, const void *orig_mr)
{
    pthread_mutex_lock(&lock);
    if (ntags < TAGS_MAX) {
        tagged *t = &tags[ntags++];
        t->fid = fid;
        snprintf(t->prov, sizeof(t->prov), "%s", prov ? prov : "?");
        snprintf(t->domain, sizeof(t->domain), "%s", domain ? domain : "?");
        t->orig_ops = orig_ops;
        t->orig_mr = orig_mr;
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
        tag(&(*ep)->fid, dt.prov, dt.domain, (*ep)->ops, NULL);
        c->getopt = ep_getopt;
        c->setopt = ep_setopt;
        (*ep)->ops = c;
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
    tag(&(*d)->fid, prov, name, orig_ops, orig_mr);
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
        tag(&(*fabric)->fid, attr->prov_name, attr->name, (*fabric)->ops, NULL);
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
