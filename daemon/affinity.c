#include "affinity.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "topo.h"

static int numa[TOPO_NUMA_MAX];
static unsigned nnuma;
static affinity_gpu gpus[AFFINITY_GPU_MAX];
static unsigned ngpus;

int affinity_init(const char *topology)
{
    topo t = {0};
    char root[PATH_MAX];
    int rc = topo_load_setting(topology, &t, root, sizeof(root));
    if (rc < 0) {
        log_warn("cannot read the topology from %s: %s; clients get no NUMA nodes and no GPU placement",
                 *topology ? topology : "/sys", strerror(-rc));
        topo_free(&t);
        return rc;
    }
    /* Only the NICs this daemon opened share out a GPU's memory. */
    const char *opened[NIC_MAX];
    unsigned nn = nic_count() < NIC_MAX ? nic_count() : NIC_MAX;
    for (unsigned k = 0; k < nn; k++)
        opened[k] = nic_get(k)->name;
    topo_keep_named(&t, opened, (int)nn);
    nnuma = (unsigned)t.nnuma;
    memcpy(numa, t.numa_nodes, sizeof(int) * nnuma);
    ngpus = 0;
    for (size_t i = 0; i < t.n; i++) {
        const topo_dev *d = &t.devs[i];
        if (d->gpu != 1)
            continue;
        if (ngpus == AFFINITY_GPU_MAX) {
            log_warn("topology: more than %d GPUs; clients are told about the first %d", AFFINITY_GPU_MAX,
                     AFFINITY_GPU_MAX);
            break;
        }
        affinity_gpu *g = &gpus[ngpus++];
        snprintf(g->bus_id, sizeof(g->bus_id), "%s", d->busid);
        g->numa = d->numa;
        for (unsigned k = 0; k < nn; k++) {
            int dist = topo_distance(&t, d->busid, nic_get(k)->name);
            g->nic_distance[k] = dist < 0 ? -1 : dist;
        }
        const char *own[NIC_MAX];
        int no = topo_gpu_own_nics(&t, d->busid, own, NIC_MAX);
        g->own_nics = 0;
        for (int i = 0; i < no && i < NIC_MAX; i++)
            for (unsigned k = 0; k < nn; k++)
                if (!strcmp(own[i], nic_get(k)->name))
                    g->own_nics |= 1ull << k;
    }
    log_debug("topology: %u NUMA node(s), %u GPU(s) on the PCI bus", nnuma, ngpus);
    topo_free(&t);
    return 0;
}

unsigned affinity_numa_count(void)
{
    return nnuma;
}

int affinity_numa(unsigned i)
{
    return i < nnuma ? numa[i] : -1;
}

unsigned affinity_gpu_count(void)
{
    return ngpus;
}

const affinity_gpu *affinity_gpu_get(unsigned i)
{
    return i < ngpus ? &gpus[i] : NULL;
}

/* NICs on one NUMA node: bit k for nic_get(k). */
static uint64_t numa_nics(int node)
{
    uint64_t m = 0;
    for (unsigned k = 0; node >= 0 && k < nic_count() && k < NIC_MAX; k++)
        if (nic_get(k)->numa_node == node)
            m |= 1ull << k;
    return m;
}

uint64_t affinity_near_nics(const char *gpu_bus_id, int numa_node)
{
    for (unsigned i = 0; gpu_bus_id && i < ngpus; i++)
        if (topo_same_bus(gpus[i].bus_id, gpu_bus_id) && gpus[i].own_nics)
            return gpus[i].own_nics;
    return numa_nics(numa_node);
}
