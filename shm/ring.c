#include "ring.h"

#include <string.h>

#include "futex.h"

void shm_ring_init(void *area, uint32_t entries, uint32_t results)
{
    memset(area, 0, shm_ring_size(entries, results));
    shm_ring_header *h = area;
    h->magic = SHM_RING_MAGIC;
    h->version = SHM_RING_VERSION;
    h->entries = entries;
    h->results = results;
}

void shm_ring_publish_answered(void *area, uint32_t answered)
{
    shm_ring_header *h = area;
    atomic_store_explicit(&h->answered, answered, memory_order_seq_cst);
    /* seq_cst against the waiter's increment then re-check: no lost wake. */
    if (atomic_load_explicit(&h->waiters, memory_order_seq_cst))
        shm_futex_wake_all(&h->answered);
}

int shm_ring_wait_answered(void *area, uint32_t seen, int timeout_ms)
{
    shm_ring_header *h = area;
    atomic_fetch_add_explicit(&h->waiters, 1, memory_order_seq_cst);
    int rc = 0;
    if (atomic_load_explicit(&h->answered, memory_order_seq_cst) == seen &&
        !atomic_load_explicit(&h->broken, memory_order_seq_cst))
        rc = shm_futex_wait(&h->answered, seen, timeout_ms);
    atomic_fetch_sub_explicit(&h->waiters, 1, memory_order_seq_cst);
    return rc;
}
