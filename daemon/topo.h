/* PCI topology: which NICs sit nearest to which GPU. Read with libhwloc,
 * from this host (its sysfs), from a sysfs tree elsewhere, or from an
 * hwloc XML export (tests use the real AWS instance topologies), and kept
 * as a plain snapshot: the choice functions below are pure. */
#ifndef MCEFAD_TOPO_H
#define MCEFAD_TOPO_H

#include <stddef.h>
#include <stdint.h>

#define TOPO_DEPTH 16
#define TOPO_NUMA_MAX 64

typedef struct topo_dev {
    char name[64];  /* NIC: its RDMA device name (rdmap79s0); GPU: its bus id */
    char busid[16]; /* dddd:bb:dd.f */
    int numa;       /* -1 unknown */
    int gpu;        /* 1 GPU, 0 NIC */
    int depth;      /* PCI bridges above the device, host bridge included */
    uint64_t path[TOPO_DEPTH]; /* those bridges from the root down (hwloc's ids) */
} topo_dev;

/* Devices in PCI bus id order, the order CUDA numbers GPUs in with
 * CUDA_DEVICE_ORDER=PCI_BUS_ID. */
typedef struct topo {
    topo_dev *devs;
    size_t n, cap;
    int numa_nodes[TOPO_NUMA_MAX]; /* the host's NUMA nodes, ascending */
    int nnuma;
} topo;

/* GPUs: NVIDIA PCI functions of class 0300/0302. NICs: OpenFabrics OS
 * devices (rdmap* on EFA) of a PCI function. All return 0 or a negative
 * errno; hwloc's own complaints about a file go to stderr. */

/* An hwloc 2 XML export (lstopo --of xml), a file or a pipe. */
int topo_load_hwloc_xml(const char *file, topo *t);
/* A Linux sysfs tree rooted at root: "/sys" is this host. One without PCI
 * devices (containers) is no error: it just lists none. */
int topo_load_sysfs(const char *root, topo *t);
/* As the topology setting says: "" this host's /sys, a directory a sysfs
 * tree rooted there, a file an hwloc XML export. sysroot gets the sysfs
 * root that per-device files are still read from ("/sys" for XML). */
int topo_load_setting(const char *setting, topo *t, char *sysroot, size_t sysroot_len);
void topo_free(topo *t);

/* Drops NICs whose name does not start with one of the prefixes (the
 * daemon keeps the NICs it opened; "rdmap" keeps EFA, not InfiniBand). */
void topo_keep_nics(topo *t, const char *const *prefixes, int n);
/* Drops NICs not named exactly (mlx5_1 keeps mlx5_1 only, not mlx5_10). */
void topo_keep_named(topo *t, const char *const *names, int n);

/* How near a NIC is to a GPU, nearest first. */
typedef enum topo_tier {
    TOPO_PCIE = 0,   /* in the GPU's PCI tree: they share a bridge (host bridge included) */
    TOPO_NUMA = 1,   /* another PCI tree of the GPU's NUMA node */
    TOPO_REMOTE = 2, /* anywhere else, or the GPU's node is unknown */
} topo_tier;

typedef struct topo_choice {
    const char *nic; /* the NIC's name, in t */
    topo_tier tier;
    int hops; /* as topo_distance */
} topo_choice;

/* Every NIC of t for the GPU with bus id gpu_busid ("0000:59:00.0" or
 * "59:00.0"), in the order its memory should be placed on them: by tier,
 * then by hops, then in t's order. Fills up to max entries of out;
 * returns how many NICs t has, or -ENOENT for an unknown GPU. */
int topo_gpu_nic_order(const topo *t, const char *gpu_busid, topo_choice *out, int max);

/* The GPU's nearest NICs: the first of topo_gpu_nic_order and those of
 * its tier and hops. Their names into out (up to max); returns how many
 * there are in all, or -ENOENT for an unknown GPU. */
int topo_gpu_nics(const topo *t, const char *gpu_busid, const char **out, int max);

/* The NICs a GPU's memory is placed on: its nearest NICs
 * (topo_gpu_nics) shared out among the GPUs that have the same nearest
 * set at the same tier and hops, in bus id order, so no two GPUs pull through one NIC while another
 * idles: p5en's switch of two GPUs and four EFAs gives each GPU two, p4d's
 * two GPUs per EFA share it. Names into out (up to max); returns how many,
 * or -ENOENT for an unknown GPU. Sets of more than TOPO_NICS_MAX NICs are
 * cut to their first TOPO_NICS_MAX. */
#define TOPO_NICS_MAX 64
int topo_gpu_own_nics(const topo *t, const char *gpu_busid, const char **out, int max);

/* Whether two PCI bus ids name one function ("59:00.0" is "0000:59:00.0"). */
int topo_same_bus(const char *a, const char *b);

/* PCI hops between the GPU with bus id gpu_busid and the NIC named nic
 * (up from each to their deepest shared bridge, counted per bridge; all
 * of both paths when they share none), the measure Mooncake ranks a GPU's
 * NICs by; -ENOENT when either is not in t. */
int topo_distance(const topo *t, const char *gpu_busid, const char *nic);

#endif
