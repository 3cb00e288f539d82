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
    struct fid_mr *mr = NULL;
    int rc;
    /* A random key can collide with one in use (-FI_ENOKEY): draw again. */
    for (int tries = 0;; tries++) {
        uint64_t key = (n->mr_mode & FI_MR_PROV_KEY) ? 0 : random_key(n);
        rc = fi_mr_reg(n->domain, m->addr, m->len, access, 0, key, 0, &mr, NULL);
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
        return err_set(e, rc, "registering with NIC %s failed: %s (is the memlock limit high enough?)", n->name,
                       fi_strerror(-rc));
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
}

/* Regions at least this large are registered with their NICs at once,
 * one thread per NIC: each registration pins and maps the whole range
 * (seconds for tens of GiB on EFA), and the NICs do not share the work. */
#define REG_PARALLEL_MIN (64ull << 20)

typedef struct reg_task {
    nic *n;
    const nic_mem *m;
    nic_mr *out;
    pthread_t thread;
    bool threaded;
    int rc;
    err e;
} reg_task;

static void *reg_run(void *arg)
{
    reg_task *t = arg;
    t->rc = nic_mr_reg(t->n, t->m, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, t->out, &t->e);
    return NULL;
}

int nic_register_region(region *r, err *e)
{
    unsigned nnics = nic_count();
    if (!nnics)
        return 0;
    int numa[NIC_MAX];
    bool use[NIC_MAX];
    for (unsigned i = 0; i < nnics; i++)
        numa[i] = nic_get(i)->numa_node;
    unsigned nuse = route_register(numa, nnics, r->numa_node, register_all, use);
    r->mrs = calloc(nnics, sizeof(*r->mrs));
    reg_task *tasks = calloc(nuse, sizeof(*tasks));
    if (!r->mrs || !tasks) {
        free(r->mrs);
        free(tasks);
        r->mrs = NULL;
        return err_set(e, -ENOMEM, "out of memory registering a region with the NICs");
    }
    r->nmrs = nnics;
    r->unregister = release_mrs;
    nic_mem m = {.addr = r->ptr, .len = r->length};
    char names[NIC_MAX * 8] = "";
    for (unsigned i = 0, k = 0; i < nnics; i++)
        if (use[i]) {
            tasks[k++] = (reg_task){.n = nic_get(i), .m = &m, .out = &r->mrs[i]};
            size_t l = strlen(names);
            snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "", nic_get(i)->name);
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
    log_debug("region 0x%" PRIx64 " + %" PRIu64 " (NUMA node %d) registered with NIC(s) %s", r->addr, r->length,
              r->numa_node, names);
    return 0;
}

