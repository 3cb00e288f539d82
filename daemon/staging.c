#include "staging.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nic.h"

static struct {
    pthread_mutex_t lock;
    char *base;
    size_t len;
    region *r;
    unsigned nslots, used;
    uint64_t slot_bytes;
    unsigned *free_v; /* stack of free slot numbers */
    unsigned nfree;
    stage_wait *head, *tail;
    unsigned waiting;
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
    st.free_v = calloc(n, sizeof(unsigned));
    region *r = st.free_v ? region_create(&staging_ops, (uint64_t)(uintptr_t)p, len, p, -1) : NULL;
    if (!r) {
        free(st.free_v);
        munmap(p, len);
        return err_set(e, -ENOMEM, "out of memory");
    }
    st.base = p;
    st.len = len;
    if (nic_register_region(r, e) < 0) {
        err_prefix(e, "cannot register the staging memory (staging_bytes %" PRIu64 ")", bytes);
        region_unref(r);
        free(st.free_v);
        st.free_v = NULL;
        return e->code;
    }
    st.r = r;
    st.nslots = n;
    st.slot_bytes = slot_bytes;
    for (unsigned i = 0; i < n; i++)
        st.free_v[i] = n - 1 - i;
    st.nfree = n;
    return 0;
}

void staging_shutdown(void)
{
    if (st.r)
        region_unref(st.r);
    st.r = NULL;
    free(st.free_v);
    st.free_v = NULL;
    st.nslots = st.nfree = 0;
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

void staging_get(stage_wait *w)
{
    pthread_mutex_lock(&st.lock);
    if (st.nfree && !st.head) {
        unsigned slot = st.free_v[--st.nfree];
        st.used++;
        pthread_mutex_unlock(&st.lock);
        w->ready(w, slot);
        return;
    }
    w->next = NULL;
    if (st.tail)
        st.tail->next = w;
    else
        st.head = w;
    st.tail = w;
    st.waiting++;
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
    stage_wait *w = st.head;
    if (w) {
        /* Straight to the oldest waiter: the slot stays in use. */
        st.head = w->next;
        if (!st.head)
            st.tail = NULL;
        st.waiting--;
    } else {
        st.free_v[st.nfree++] = slot;
        st.used--;
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

void staging_cancel_waiters(void)
{
    for (;;) {
        pthread_mutex_lock(&st.lock);
        stage_wait *w = st.head;
        if (w) {
            st.head = w->next;
            if (!st.head)
                st.tail = NULL;
            st.waiting--;
        }
        pthread_mutex_unlock(&st.lock);
        if (!w)
            return;
        w->cancel(w);
    }
}

unsigned staging_in_use(void)
{
    pthread_mutex_lock(&st.lock);
    unsigned n = st.used;
    pthread_mutex_unlock(&st.lock);
    return n;
}

unsigned staging_waiting(void)
{
    pthread_mutex_lock(&st.lock);
    unsigned n = st.waiting;
    pthread_mutex_unlock(&st.lock);
    return n;
}
