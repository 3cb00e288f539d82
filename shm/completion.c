#include "completion.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    /* Not FUTEX_PRIVATE: daemon and client are different processes. */
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void shm_cq_init(void *area, uint32_t nslots)
{
    memset(area, 0, shm_cq_size(nslots));
    shm_cq_header *h = area;
    h->magic = SHM_CQ_MAGIC;
    h->version = SHM_CQ_VERSION;
    h->nslots = nslots;
}

void shm_cq_complete(void *area, uint32_t hdr, uint32_t idx, int err)
{
    shm_cq_header *h = area;
    shm_cq_slot *s = shm_cq_slots(area);
    s[idx].error = err;
    atomic_store_explicit(&s[idx].state, err ? MCEFA_STATE_FAILED : MCEFA_STATE_COMPLETED, memory_order_release);
    if (err)
        atomic_fetch_add_explicit(&s[hdr].failed, 1, memory_order_release);
    atomic_fetch_add_explicit(&s[hdr].done, 1, memory_order_release);
    atomic_fetch_add_explicit(&h->wake_seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&h->waiters, memory_order_seq_cst))
        futex(&h->wake_seq, FUTEX_WAKE, INT_MAX, NULL);
}

int shm_cq_wait(void *area, uint32_t seq, int timeout_ms)
{
    shm_cq_header *h = area;
    struct timespec ts, *tp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    atomic_fetch_add_explicit(&h->waiters, 1, memory_order_seq_cst);
    long r = 0;
    if (atomic_load_explicit(&h->wake_seq, memory_order_seq_cst) == seq)
        r = futex(&h->wake_seq, FUTEX_WAIT, seq, tp);
    int e = r < 0 ? errno : 0;
    atomic_fetch_sub_explicit(&h->waiters, 1, memory_order_seq_cst);
    return e == ETIMEDOUT ? -ETIMEDOUT : 0;
}
