#include "region.h"

#include <errno.h>
#include <stdlib.h>

const char *region_kind_name(region_kind k)
{
    switch (k) {
    case REGION_HOST_MEMFD:
        return "host memfd";
    case REGION_CUDA_IPC:
        return "GPU (CUDA IPC)";
    case REGION_CUDA_VMM:
        return "GPU (CUDA VMM)";
    case REGION_HOST_PLAIN:
        return "plain host";
    }
    return "unknown";
}

region *region_create(const region_ops *ops, uint64_t addr, uint64_t length, void *ptr, int numa_node)
{
    region *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    static _Atomic uint64_t next_id;
    atomic_init(&r->refs, 1);
    r->id = atomic_fetch_add(&next_id, 1) + 1;
    r->ops = ops;
    r->addr = addr;
    r->length = length;
    r->ptr = ptr;
    r->numa_node = numa_node;
    r->gpu = -1;
    return r;
}

void region_ref(region *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void region_unref(region *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* NIC registrations go before the memory they point at. */
    if (r->unregister)
        r->unregister(r);
    if (r->ops && r->ops->release)
        r->ops->release(r);
    free(r);
}

/* Bytes in every table (loop thread only, like the tables). */
static uint64_t all_tables_bytes;

uint64_t region_tables_bytes(void)
{
    return all_tables_bytes;
}

/* Index of the first region whose addr is > addr. */
static size_t upper_bound(const region_table *t, uint64_t addr)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid]->addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int region_table_insert(region_table *t, region *r)
{
    if (r->length == 0 || r->addr + r->length < r->addr)
        return -EINVAL;
    size_t i = upper_bound(t, r->addr);
    /* Neighbours: the one before must end at or before us, the one after
     * must start at or after our end. */
    if (i > 0 && t->v[i - 1]->addr + t->v[i - 1]->length > r->addr)
        return -EEXIST;
    if (i < t->n && t->v[i]->addr < r->addr + r->length)
        return -EEXIST;
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        region **nv = realloc(t->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        t->v = nv;
        t->cap = ncap;
    }
    for (size_t j = t->n; j > i; j--)
        t->v[j] = t->v[j - 1];
    t->v[i] = r;
    t->n++;
    if (r->gpu >= 0) {
        t->gpu_bytes += r->length;
    } else if (region_is_plain(r)) {
        t->plain_bytes += r->length;
    } else {
        t->bytes += r->length;
        all_tables_bytes += r->length;
    }
    return 0;
}

region *region_table_find_addr(const region_table *t, uint64_t addr)
{
    size_t i = upper_bound(t, addr);
    if (i == 0)
        return NULL;
    region *r = t->v[i - 1];
    return addr - r->addr < r->length ? r : NULL;
}

region *region_table_find(const region_table *t, uint64_t addr, uint64_t len)
{
    region *r = region_table_find_addr(t, addr);
    if (!r)
        return NULL;
    /* addr is inside r, so addr - r->addr < length: no overflow here. */
    uint64_t room = r->length - (addr - r->addr);
    return len <= room ? r : NULL;
}

region *region_table_overlap(const region_table *t, uint64_t addr, uint64_t len)
{
    region *r = region_table_find_addr(t, addr);
    if (r)
        return r;
    /* The first region starting after addr overlaps if it starts before
     * the end. */
    size_t i = upper_bound(t, addr);
    if (i < t->n && t->v[i]->addr - addr < len)
        return t->v[i];
    return NULL;
}

region *region_table_remove(region_table *t, uint64_t addr)
{
    size_t i = upper_bound(t, addr);
    if (i == 0 || t->v[i - 1]->addr != addr)
        return NULL;
    region *r = t->v[i - 1];
    for (size_t j = i - 1; j + 1 < t->n; j++)
        t->v[j] = t->v[j + 1];
    t->n--;
    if (r->gpu >= 0) {
        t->gpu_bytes -= r->length;
    } else if (region_is_plain(r)) {
        t->plain_bytes -= r->length;
    } else {
        t->bytes -= r->length;
        all_tables_bytes -= r->length;
    }
    return r;
}

void region_table_clear(region_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        region_unref(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
    all_tables_bytes -= t->bytes;
    t->bytes = t->gpu_bytes = t->plain_bytes = 0;
}
