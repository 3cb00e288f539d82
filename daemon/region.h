/* Registered memory: a client's address range, how the daemon reaches the
 * same bytes (its kind), the NICs it is registered on, and a table per
 * client to translate and bounds-check every address before a byte moves.
 * Regions are reference counted: a transfer in flight keeps its regions
 * alive even if the owner unregisters or dies. */
#ifndef MCEFAD_REGION_H
#define MCEFAD_REGION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How the daemon reaches a region's bytes, each kind with its own import
 * file and release operation. */
typedef enum region_kind {
    REGION_HOST_MEMFD = 1, /* a sealed memfd the daemon maps (memfd_import.c) */
    REGION_CUDA_IPC = 2,   /* GPU memory by legacy CUDA IPC handle (gpu.c) */
    REGION_CUDA_VMM = 3,   /* GPU memory by VMM file descriptors (gpu.c) */
    REGION_HOST_PLAIN = 4, /* a client's own memory, copied by cross-memory attach (plain_import.c) */
} region_kind;

const char *region_kind_name(region_kind k);

struct region;

/* What a region's memory needs when the last reference goes: unmapping,
 * closing an import. Set by the file that imported it. */
typedef struct region_ops {
    region_kind kind;
    void (*release)(struct region *r);
} region_ops;

/* How one NIC sees a region (nic.c fills it; mr NULL: not registered on
 * that NIC). */
typedef struct nic_mr {
    void *mr; /* struct fid_mr * */
    void *desc;
    uint64_t key;
    uint64_t rma_base; /* RMA address of the region's first byte */
} nic_mr;

typedef struct region {
    _Atomic int refs;
    uint64_t id; /* never reused in a daemon's run: names it to other hosts (StagedOp) */
    const region_ops *ops;
    uint64_t addr;   /* client virtual address */
    uint64_t length;
    /* The daemon's mapping of addr (memfd), its device address (GPU kinds),
     * or addr itself (plain: an address in the client process). */
    char *ptr;
    int gpu;         /* -1 host memory, else the daemon's GPU index (gpu.h) */
    void *map_base;  /* the kind's own bookkeeping (memfd: what to munmap) */
    size_t map_len;
    int numa_node;   /* -1 unknown */
    /* Set when a copy faulted in this memory (SIGBUS: the backing pages
     * went away); later transfers on it are refused. Any thread. */
    _Atomic bool faulted;
    /* Per NIC index; NULL when the daemon has no NIC. The NIC layer sets
     * unregister, which closes them before the memory is released. */
    nic_mr *mrs;
    unsigned nmrs;
    unsigned nics_held; /* how many of mrs hold it (GPU memory: 0 when it goes through staging) */
    /* Bit i: local NIC i is nearest this memory (its GPU's own NICs, or its
     * NUMA node's; affinity_near_nics), preferred for its transfers and
     * named to peers; 0: none is nearer. Set once, before the region is
     * published. */
    uint64_t near;
    void (*unregister)(struct region *r);
} region;

/* A region with one reference, of the kind ops describes. */
region *region_create(const region_ops *ops, uint64_t addr, uint64_t length, void *ptr, int numa_node);
void region_ref(region *r);
void region_unref(region *r);
static inline int region_is_plain(const region *r)
{
    return r->ops && r->ops->kind == REGION_HOST_PLAIN;
}
/* Memory no NIC holds, which other hosts reach through staging: plain
 * host memory, and GPU memory no NIC could register (no FI_HMEM). */
static inline bool region_is_staged(const region *r)
{
    return region_is_plain(r) || (r->gpu >= 0 && r->nics_held == 0);
}
/* Whether NIC i holds a registration of r. */
static inline int region_on_nic(const region *r, unsigned i)
{
    return i < r->nmrs && r->mrs[i].mr != NULL;
}

static inline void *region_translate(const region *r, uint64_t addr)
{
    return r->ptr + (addr - r->addr);
}

/* Sorted by addr, non-overlapping. Touched only by the event-loop thread. */
typedef struct region_table {
    region **v;
    size_t n, cap;
    uint64_t bytes;     /* host memory: charged against the registration caps */
    uint64_t gpu_bytes; /* GPU memory: the client's own, not the daemon's */
    uint64_t plain_bytes; /* plain host memory: the client's own, never mapped by the daemon */
} region_table;

/* Holds one reference. -EEXIST if it overlaps a region in the table,
 * -EINVAL for an empty or wrapping range. */
int region_table_insert(region_table *t, region *r);
/* The region that starts exactly at addr, taken out (caller gets the
 * table's reference), or NULL. */
region *region_table_remove(region_table *t, uint64_t addr);
/* The region that holds all of [addr, addr+len), or NULL. */
region *region_table_find(const region_table *t, uint64_t addr, uint64_t len);
/* The region that holds addr, if any (for error messages). */
region *region_table_find_addr(const region_table *t, uint64_t addr);
/* Any region overlapping [addr, addr+len), or NULL. */
region *region_table_overlap(const region_table *t, uint64_t addr, uint64_t len);
void region_table_clear(region_table *t);
/* Host bytes registered in all tables together (max_registered_bytes). */
uint64_t region_tables_bytes(void);

#endif
