/* Registration with the NICs: the one path every caller uses
 * (nic_mr_reg), and which NICs a region is registered with. */
#include "nic_mr.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"
#include "nic.h"
#include "route.h"

static bool register_all;

void nic_register_init(bool all_nics)
{
    register_all = all_nics;
}

/* ---- Registration ------------------------------------------------------- */

static uint64_t random_key(const nic *n)
{
    uint64_t k = 0;
    while (k == 0) {
        if (getrandom(&k, sizeof(k), 0) != sizeof(k)) {
            /* getrandom only fails before the kernel's pool is seeded or
             * on a signal; the clock is a poor but unique stand-in. */
            k = clock_now_us() * 0x9e3779b97f4a7c15ull;
        }
        k &= n->key_mask;
    }
    return k;
}

int nic_mr_reg(nic *n, const nic_mem *m, uint64_t access, nic_mr *out, err *e)
{
    if (m->reg != GPU_REG_STAGING && nic_hmem_region_reg(&n->gpu, m->reg == GPU_REG_DMABUF) != m->reg)
        return err_set(e, -EOPNOTSUPP, "NIC %s cannot register GPU memory by %s: its GPU plan is %s (%s)", n->name,
                       nic_hmem_reg_name(m->reg), nic_hmem_reg_name(n->gpu.reg), n->gpu.why);
    struct fid_mr *mr = NULL;
    int rc;
    /* A random key can collide with one in use (-FI_ENOKEY): draw again. */
    for (int tries = 0;; tries++) {
        uint64_t key = (n->mr_mode & FI_MR_PROV_KEY) ? 0 : random_key(n);
        nic_hmem_mr_args a;
        if ((rc = nic_hmem_mr_args_fill(m, access, key, &a, e)) < 0)
            return err_prefix(e, "NIC %s", n->name);
        rc = fi_mr_regattr(n->domain, &a.attr, a.flags, &mr);
        if (rc != -FI_ENOKEY || (n->mr_mode & FI_MR_PROV_KEY) || tries >= 8)
            break;
    }
    if (!rc && (n->mr_mode & FI_MR_ENDPOINT)) {
        rc = fi_mr_bind(mr, &n->ep->fid, 0);
        if (!rc)
            rc = fi_mr_enable(mr);
    }
    if (rc) {
        if (mr)
            fi_close(&mr->fid);
        rc = rc < 0 ? rc : -rc;
        return err_set(e, rc, "registering %s with NIC %s failed: %s (is the memlock limit high enough?)",
                       m->reg == GPU_REG_STAGING ? "memory" : m->reg == GPU_REG_DMABUF ? "GPU memory by dmabuf"
                                                                                    : "GPU memory (iface CUDA)",
                       n->name, fi_strerror(-rc));
    }
    out->mr = mr;
    out->key = fi_mr_key(mr);
    out->desc = fi_mr_desc(mr);
    out->rma_base = (n->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)m->addr : 0;
    return 0;
}

void nic_mr_close(nic_mr *m)
{
    if (m->mr)
        fi_close(&((struct fid_mr *)m->mr)->fid);
    m->mr = NULL;
}

static void release_mrs(region *r)
{
    for (unsigned i = 0; i < r->nmrs; i++)
        nic_mr_close(&r->mrs[i]);
    free(r->mrs);
    r->mrs = NULL;
    r->nmrs = 0;
    r->nics_held = 0;
}

/* Regions at least this large are registered with their NICs at once,
 * one thread per NIC: each registration pins and maps the whole range
 * (seconds for tens of GiB on EFA), and the NICs do not share the work. */
#define REG_PARALLEL_MIN (64ull << 20)

typedef struct reg_task {
    nic *n;
    nic_mem m;
    nic_mr *out;
    pthread_t thread;
    bool threaded;
    int rc;
    err e;
} reg_task;

static void *reg_run(void *arg)
{
    reg_task *t = arg;
    t->rc = nic_mr_reg(t->n, &t->m, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, t->out, &t->e);
    return NULL;
}

/* How one NIC takes r: host memory as it is; GPU memory as the NIC's plan
 * says (staging: not at all). */
typedef struct reg_how {
    bool gpu;
    int dmabuf_fd, device;
    uint64_t dmabuf_off;
} reg_how;

static gpu_reg reg_kind(const nic *n, const reg_how *h)
{
    return h->gpu ? nic_hmem_region_reg(&n->gpu, h->dmabuf_fd >= 0) : GPU_REG_STAGING;
}

/* Registers r with the NICs route_register picks that take it (all of
 * them for host memory); returns how many hold it, or the first error
 * with nothing left registered. */
static int register_on_nics(region *r, const reg_how *h, err *e)
{
    unsigned nnics = nic_count();
    if (!nnics)
        return 0;
    int numa[NIC_MAX];
    bool use[NIC_MAX];
    for (unsigned i = 0; i < nnics; i++)
        numa[i] = nic_get(i)->numa_node;
    route_register(numa, nnics, r->numa_node, register_all, use);
    /* GPU memory goes to its GPU's own NICs (r->near) where the topology
     * places it: pinning it on every NIC of the node costs each NIC a
     * registration of the whole range and buys nothing, since transfers
     * take the near NICs first. */
    bool by_gpu = h->gpu && r->near && !register_all;
    unsigned nuse = 0;
    for (unsigned i = 0; i < nnics; i++) {
        bool takes = !h->gpu || reg_kind(nic_get(i), h) != GPU_REG_STAGING;
        nuse += by_gpu && takes && (r->near >> i & 1);
    }
    /* None of the GPU's own NICs takes GPU memory: the node's NICs that do. */
    by_gpu = by_gpu && nuse > 0;
    nuse = 0;
    for (unsigned i = 0; i < nnics; i++) {
        if (by_gpu)
            use[i] = r->near >> i & 1;
        use[i] = use[i] && (!h->gpu || reg_kind(nic_get(i), h) != GPU_REG_STAGING);
        nuse += use[i];
    }
    r->mrs = calloc(nnics, sizeof(*r->mrs));
    reg_task *tasks = calloc(nuse ? nuse : 1, sizeof(*tasks));
    if (!r->mrs || !tasks) {
        free(r->mrs);
        free(tasks);
        r->mrs = NULL;
        return err_set(e, -ENOMEM, "out of memory registering a region with the NICs");
    }
    r->nmrs = nnics;
    r->unregister = release_mrs;
    char names[NIC_MAX * 8] = "";
    for (unsigned i = 0, k = 0; i < nnics; i++)
        if (use[i]) {
            nic *n = nic_get(i);
            gpu_reg how = reg_kind(n, h);
            tasks[k++] = (reg_task){.n = n,
                                    .m = {.addr = r->ptr,
                                          .len = r->length,
                                          .reg = how,
                                          .device = h->device,
                                          .dmabuf_fd = how == GPU_REG_DMABUF ? h->dmabuf_fd : -1,
                                          .dmabuf_off = h->dmabuf_off},
                                    .out = &r->mrs[i]};
            size_t l = strlen(names);
            snprintf(names + l, sizeof(names) - l, "%s%s%s%s", l ? ", " : "", n->name, h->gpu ? " by " : "",
                     h->gpu ? nic_hmem_reg_name(how) : "");
        }
    bool parallel = nuse > 1 && r->length >= REG_PARALLEL_MIN;
    for (unsigned k = 1; parallel && k < nuse; k++)
        tasks[k].threaded = pthread_create(&tasks[k].thread, NULL, reg_run, &tasks[k]) == 0;
    for (unsigned k = 0; k < nuse; k++)
        if (!tasks[k].threaded)
            reg_run(&tasks[k]);
    int rc = 0;
    for (unsigned k = 0; k < nuse; k++) {
        if (tasks[k].threaded)
            pthread_join(tasks[k].thread, NULL);
        if (tasks[k].rc < 0 && rc == 0) {
            rc = tasks[k].rc;
            *e = tasks[k].e;
        }
    }
    free(tasks);
    if (rc < 0) {
        release_mrs(r);
        r->unregister = NULL;
        return rc;
    }
    r->nics_held = nuse;
    log_debug("region 0x%" PRIx64 " + %" PRIu64 " (NUMA node %d) registered with NIC(s) %s", r->addr, r->length,
              r->numa_node, nuse ? names : "none");
    return (int)nuse;
}

int nic_register_region(region *r, err *e)
{
    reg_how h = {.dmabuf_fd = -1, .device = -1};
    int rc = register_on_nics(r, &h, e);
    return rc < 0 ? rc : 0;
}

int nic_register_gpu_region(region *r, int dmabuf_fd, uint64_t dmabuf_off, int device, err *e)
{
    if (device < 0)
        return err_set(e, -EINVAL, "region 0x%" PRIx64 " is not GPU memory of this daemon: no CUDA device", r->addr);
    reg_how h = {.gpu = true, .dmabuf_fd = dmabuf_fd, .dmabuf_off = dmabuf_off, .device = device};
    return register_on_nics(r, &h, e);
}
