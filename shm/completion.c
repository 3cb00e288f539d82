#include "completion.h"

#include <string.h>

#include "futex.h"

void shm_cq_init(void *area, uint32_t nslots)
{
    memset(area, 0, shm_cq_size(nslots));
    shm_cq_header *h = area;
    h->magic = SHM_CQ_MAGIC;
    h->version = SHM_CQ_VERSION;
    h->nslots = nslots;
}

void shm_cq_set(void *area, uint32_t hdr, uint32_t idx, int err)
{
    shm_cq_slot *s = shm_cq_slots(area);
    s[idx].error = err;
    atomic_store_explicit(&s[idx].state, err ? MCEFA_STATE_FAILED : MCEFA_STATE_COMPLETED, memory_order_release);
    if (err)
        atomic_fetch_add_explicit(&s[hdr].failed, 1, memory_order_release);
    atomic_fetch_add_explicit(&s[hdr].done, 1, memory_order_release);
}

void shm_cq_wake(void *area)
{
    shm_cq_header *h = area;
    atomic_fetch_add_explicit(&h->wake_seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&h->waiters, memory_order_seq_cst))
        shm_futex_wake_all(&h->wake_seq);
}

void shm_cq_complete(void *area, uint32_t hdr, uint32_t idx, int err)
{
    shm_cq_set(area, hdr, idx, err);
    shm_cq_wake(area);
}

int shm_cq_wait(void *area, uint32_t seq, int timeout_ms)
{
    shm_cq_header *h = area;
    atomic_fetch_add_explicit(&h->waiters, 1, memory_order_seq_cst);
    int rc = 0;
    if (atomic_load_explicit(&h->wake_seq, memory_order_seq_cst) == seq)
        rc = shm_futex_wait(&h->wake_seq, seq, timeout_ms);
    atomic_fetch_sub_explicit(&h->waiters, 1, memory_order_seq_cst);
    return rc;
}
