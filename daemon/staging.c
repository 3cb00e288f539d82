#include "staging.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gpu.h"
#include "nic.h"

/* Two pools of slots: pieces of this host's transfers take from one,
 * pieces served for other hosts from the other, so two hosts staging into
 * each other can never hold all their slots waiting for each other. */
typedef struct pool {
    unsigned first, n;  /* its slots: first .. first+n-1 */
    unsigned *free_v;   /* stack of free slot numbers */
    unsigned nfree, used, waiting;
    stage_wait *head, *tail;
} pool;

static struct {
    pthread_mutex_t lock;
    char *base;
    size_t len;
    region *r;
    unsigned nslots;
    uint64_t slot_bytes;
    unsigned *free_mem;
    pool pools[2];
} st = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void release_staging(region *r)
{
    (void)r;
    munmap(st.base, st.len);
    st.base = NULL;
}

static const region_ops staging_ops = {.kind = REGION_HOST_MEMFD, .release = release_staging};

int staging_init(uint64_t bytes, uint64_t slot_bytes, err *e)
{
    if (!bytes || !nic_count())
        return 0;
    unsigned n = (unsigned)(bytes / slot_bytes);
    if (n == 0)
        return err_set(e, -EINVAL, "staging_bytes %" PRIu64 " is less than one staging slot (staging_slot_bytes %" PRIu64
                                   "); raise it or set it to 0", bytes, slot_bytes);
    size_t len = (size_t)n * slot_bytes;
    /* Touched now: the NICs pin it, and a first transfer should not pay
     * its page faults. */
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        return err_set(e, -errno, "cannot map %zu bytes of staging memory (staging_bytes): %s", len, strerror(errno));
    st.free_mem = calloc(n, sizeof(unsigned));
    region *r = st.free_mem ? region_create(&staging_ops, (uint64_t)(uintptr_t)p, len, p, -1) : NULL;
    if (!r) {
        free(st.free_mem);
        munmap(p, len);
        return err_set(e, -ENOMEM, "out of memory");
    }
    st.base = p;
    st.len = len;
    if (nic_register_region(r, e) < 0) {
        err_prefix(e, "cannot register the staging memory (staging_bytes %" PRIu64 ")", bytes);
        region_unref(r);
        free(st.free_mem);
        st.free_mem = NULL;
        return e->code;
    }
    st.r = r;
    gpu_host_area(p, len);
    st.nslots = n;
    st.slot_bytes = slot_bytes;
    /* Half for serving (at least one each when there are two). */
    unsigned serve = n >= 2 ? n / 2 : 0;
    st.pools[STAGE_SEND] = (pool){.first = 0, .n = n - serve, .free_v = st.free_mem};
    st.pools[STAGE_SERVE] = (pool){.first = n - serve, .n = serve, .free_v = st.free_mem + (n - serve)};
    for (int k = 0; k < 2; k++) {
        pool *q = &st.pools[k];
        for (unsigned i = 0; i < q->n; i++)
            q->free_v[i] = q->first + q->n - 1 - i;
        q->nfree = q->n;
    }
    return 0;
}

void staging_shutdown(void)
{
    if (st.r)
        region_unref(st.r);
    st.r = NULL;
    free(st.free_mem);
    st.free_mem = NULL;
    st.nslots = 0;
    memset(st.pools, 0, sizeof(st.pools));
}

unsigned staging_slots(void)
{
    return st.nslots;
}

uint64_t staging_slot_bytes(void)
{
    return st.slot_bytes;
}

region *staging_region(void)
{
    return st.r;
}

char *staging_ptr(unsigned slot)
{
    return st.base + (size_t)slot * st.slot_bytes;
}

/* With the lock held: pool `which` (a single slot serves both). */
static pool *pool_for(int which)
{
    return st.pools[which].n ? &st.pools[which] : &st.pools[STAGE_SEND];
}

/* With the lock held: q's oldest waiter taken off its queue, or NULL. */
static stage_wait *pop_waiter(pool *q)
{
    stage_wait *w = q->head;
    if (w) {
        q->head = w->next;
        if (!q->head)
            q->tail = NULL;
        q->waiting--;
    }
    return w;
}

void staging_get(stage_wait *w, int which)
{
    pthread_mutex_lock(&st.lock);
    pool *q = pool_for(which);
    if (q->nfree && !q->head) {
        unsigned slot = q->free_v[--q->nfree];
        q->used++;
        pthread_mutex_unlock(&st.lock);
        w->ready(w, slot);
        return;
    }
    w->next = NULL;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->waiting++;
    pthread_mutex_unlock(&st.lock);
}

/* Hand-overs a ready callback started on this thread, run by the
 * outermost staging_put: a waiter that gives its slot straight back (its
 * client left) must not recurse once per waiter. */
static _Thread_local stage_wait *handing, **handing_tail;
static _Thread_local bool in_put;

void staging_put(unsigned slot)
{
    pthread_mutex_lock(&st.lock);
    pool *q = pool_for(slot >= st.pools[STAGE_SERVE].first ? STAGE_SERVE : STAGE_SEND);
    /* Straight to the oldest waiter, if any: the slot stays in use. */
    stage_wait *w = pop_waiter(q);
    if (!w) {
        q->free_v[q->nfree++] = slot;
        q->used--;
    }
    pthread_mutex_unlock(&st.lock);
    if (!w)
        return;
    w->slot = slot;
    w->next = NULL;
    if (in_put) {
        *handing_tail = w;
        handing_tail = &w->next;
        return;
    }
    in_put = true;
    handing = w;
    handing_tail = &w->next;
    while (handing) {
        stage_wait *x = handing;
        handing = x->next;
        if (!handing)
            handing_tail = &handing;
        x->ready(x, x->slot);
    }
    in_put = false;
}

bool staging_cancel(stage_wait *w, int which)
{
    pthread_mutex_lock(&st.lock);
    pool *q = pool_for(which);
    bool found = false;
    for (stage_wait **pp = &q->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            if (q->tail == w)
                q->tail = prev;
            q->waiting--;
            found = true;
            break;
        }
    pthread_mutex_unlock(&st.lock);
    return found;
}

void staging_cancel_waiters(void)
{
    for (int k = 0; k < 2; k++)
        for (;;) {
            pthread_mutex_lock(&st.lock);
            stage_wait *w = pop_waiter(&st.pools[k]);
            pthread_mutex_unlock(&st.lock);
            if (!w)
                break;
            w->cancel(w);
        }
}

unsigned staging_in_use(void)
{
    pthread_mutex_lock(&st.lock);
    unsigned n = st.pools[0].used + st.pools[1].used;
    pthread_mutex_unlock(&st.lock);
    return n;
}

unsigned staging_waiting(void)
{
    pthread_mutex_lock(&st.lock);
    unsigned n = st.pools[0].waiting + st.pools[1].waiting;
    pthread_mutex_unlock(&st.lock);
    return n;
}
