/* Where the host's devices sit, as clients are told it (libmcefa builds
 * Mooncake's get_local_topology from it): the host's NUMA nodes, and for
 * every GPU on its PCI bus that GPU's NUMA node and its PCI distance to
 * each NIC the daemon opened. Read once at start, after the NICs are open,
 * from the source the NICs' NUMA nodes come from (the topology setting);
 * read-only afterwards, from any thread. The GPUs are PCI functions: the
 * daemon lists them whether or not its CUDA driver sees them, since
 * clients name GPUs by bus id in their own CUDA_VISIBLE_DEVICES. */
#ifndef MCEFAD_AFFINITY_H
#define MCEFAD_AFFINITY_H

#include "nic.h"

#define AFFINITY_GPU_MAX 64

typedef struct affinity_gpu {
    char bus_id[16];
    int numa; /* -1 unknown */
    int nic_distance[NIC_MAX]; /* PCI hops to nic_get(i); -1: that NIC is not in the PCI topology */
    uint64_t own_nics;         /* bit i: nic_get(i) is one its memory goes to (topo_gpu_own_nics); 0: none known */
} affinity_gpu;

/* 0, or a negative errno when the topology cannot be read (logged; the
 * daemon then reports no NUMA nodes and no GPUs). */
int affinity_init(const char *topology);

unsigned affinity_numa_count(void);
int affinity_numa(unsigned i);
unsigned affinity_gpu_count(void);
const affinity_gpu *affinity_gpu_get(unsigned i);

/* The NICs nearest some memory, bit k for nic_get(k): for GPU memory
 * (gpu_bus_id not NULL) the GPU's own NICs when the topology places it,
 * else those on numa_node; 0 when neither is known (no NIC is nearer). */
uint64_t affinity_near_nics(const char *gpu_bus_id, int numa_node);

#endif
