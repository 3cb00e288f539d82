/* PCI topology: which NICs sit nearest to which GPU. Built from sysfs on a
 * live host, or from an hwloc XML export (tests use the real AWS instance
 * topologies). Nearest = the NICs that share the deepest PCI bridge with
 * the GPU; where none shares one, the NICs on the GPU's NUMA node. */
#ifndef MCEFAD_TOPO_H
#define MCEFAD_TOPO_H

#include <stddef.h>

#define TOPO_DEPTH 16
#define TOPO_NUMA_MAX 64

typedef struct topo_dev {
    char name[64];  /* NIC: its RDMA device name (rdmap79s0); GPU: its bus id */
    char busid[16]; /* dddd:bb:dd.f */
    int numa;       /* -1 unknown */
    int gpu;        /* 1 GPU, 0 NIC */
    int depth;
    char path[TOPO_DEPTH][32]; /* bridges from the root down */
} topo_dev;

typedef struct topo {
    topo_dev *devs;
    size_t n, cap;
    int numa_nodes[TOPO_NUMA_MAX]; /* the host's NUMA nodes, ascending */
    int nnuma;
} topo;

/* hwloc 2 XML (lstopo --of xml). GPUs: NVIDIA PCI functions of class
 * 0300/0302. NICs: OpenFabrics OS devices (rdmap* on EFA). */
int topo_load_hwloc_xml(const char *file, topo *t);
/* sysfs under root ("/sys" on a live host). */
int topo_load_sysfs(const char *root, topo *t);
/* As the topology setting says: "" this host's /sys, a directory a sysfs
 * tree rooted there, a file an hwloc XML export. sysroot gets the sysfs
 * root that per-device files are still read from ("/sys" for XML). A sysfs
 * tree without PCI devices is no error: it just lists none. */
int topo_load_setting(const char *setting, topo *t, char *sysroot, size_t sysroot_len);
void topo_free(topo *t);

/* Drops NICs whose name does not start with one of the prefixes (the
 * daemon keeps the NICs it opened; "rdmap" keeps EFA, not InfiniBand). */
void topo_keep_nics(topo *t, const char *const *prefixes, int n);

/* NICs nearest to the GPU with bus id gpu_busid ("0000:59:00.0" or
 * "59:00.0"): their names into out (up to max). Returns how many there are
 * in all, or -ENOENT for an unknown GPU. */
int topo_gpu_nics(const topo *t, const char *gpu_busid, const char **out, int max);

/* PCI hops between the GPU with bus id gpu_busid and the NIC named nic
 * (up from each to their deepest shared bridge, counted per bridge), the
 * measure Mooncake ranks a GPU's NICs by; -ENOENT when either is not in t. */
int topo_distance(const topo *t, const char *gpu_busid, const char *nic);

#endif
