/* Registered memory: a client's address range, the daemon's mapping of the
 * same bytes, and a table per client to translate and bounds-check every
 * address before a byte moves. Regions are reference counted: a transfer in
 * flight keeps its regions mapped even if the owner unregisters or dies. */
#ifndef MCEFAD_REGION_H
#define MCEFAD_REGION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct region {
    _Atomic int refs;
    uint64_t addr;   /* client virtual address */
    uint64_t length;
    char *ptr;       /* daemon's mapping of addr */
    void *map_base;  /* what to munmap (NULL: not ours to unmap) */
    size_t map_len;
    int numa_node;   /* -1 unknown */
    struct nic_mr *mrs; /* one per NIC (nic.c), NULL without NICs */
    unsigned nmrs;
} region;

/* Set by the NIC layer: closes a region's NIC registrations before its
 * memory is unmapped. */
extern void (*region_release_hook)(region *r);

/* Takes ownership of the mapping [map_base, map_base+map_len). */
region *region_create(uint64_t addr, uint64_t length, void *ptr, void *map_base, size_t map_len, int numa_node);
void region_ref(region *r);
void region_unref(region *r);

static inline void *region_translate(const region *r, uint64_t addr)
{
    return r->ptr + (addr - r->addr);
}

/* Sorted by addr, non-overlapping. Touched only by the event-loop thread. */
typedef struct region_table {
    region **v;
    size_t n, cap;
    uint64_t bytes;
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
void region_table_clear(region_table *t);

#endif
