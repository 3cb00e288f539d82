#include "batch.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "shm/completion.h"
#include "stats.h"

void batch_set_init(batch_set *bs, void *cq, uint32_t cq_slots)
{
    SLIST_INIT(&bs->list);
    bs->next_id = 1;
    bs->cq = cq;
    bs->cq_slots = cq_slots;
    atomic_init(&bs->inflight, 0);
}

static void destroy(batch *b)
{
    if (b->err_text)
        for (uint32_t i = 0; i < b->capacity; i++)
            free(b->err_text[i]);
    for (uint32_t i = 0; b->reqs && i < b->capacity; i++)
        free(b->reqs[i].why);
    free(b->err_text);
    free(b->state);
    free(b->err);
    free(b->reqs);
    free(b);
}

/* Freed batches whose last completion has written: their slots are free. */
static void reclaim(batch_set *bs)
{
    batch *b, *next;
    for (b = SLIST_FIRST(&bs->list); b; b = next) {
        next = SLIST_NEXT(b, link);
        if (b->freed && atomic_load_explicit(&b->users, memory_order_acquire) == 0) {
            SLIST_REMOVE(&bs->list, b, batch, link);
            destroy(b);
        }
    }
}

/* A freed batch whose transfers all finished may still be inside the last
 * finish's shared-memory write for a few instructions (the client saw it
 * done and freed it at once). Rather than refuse an allocation for that,
 * wait those writes out; true when one was reclaimed. Freeing never waits. */
static bool settle(batch_set *bs)
{
    bool any = false;
    batch *b;
    SLIST_FOREACH(b, &bs->list, link)
        if (b->freed && atomic_load_explicit(&b->pending, memory_order_acquire) == 0) {
            while (atomic_load_explicit(&b->users, memory_order_acquire))
                sched_yield();
            any = true;
        }
    if (any)
        reclaim(bs);
    return any;
}

int batch_alloc(batch_set *bs, uint32_t cap, batch **out, err *e)
{
    if (cap == 0 || cap >= bs->cq_slots)
        return err_set(e, -EINVAL, "batch capacity %u is out of range: it must be 1..%u (completion_slots - 1)", cap,
                       bs->cq_slots - 1);
    reclaim(bs);
    /* First fit over the batches, which are kept sorted by first slot. */
    uint32_t need = cap + 1, start = 0;
    batch *prev = NULL, *b;
    SLIST_FOREACH(b, &bs->list, link) {
        if (b->first_slot - start >= need)
            break;
        start = b->first_slot + b->capacity + 1;
        prev = b;
    }
    if (!b && bs->cq_slots - start < need && settle(bs))
        return batch_alloc(bs, cap, out, e);
    if (!b && bs->cq_slots - start < need)
        return err_set(e, -ENOSPC,
                       "no room for a batch of %u transfers: the %u completion slots are taken by allocated batches; "
                       "free finished batches (or raise completion_slots)",
                       cap, bs->cq_slots);
    batch *nb = calloc(1, sizeof(*nb));
    if (nb) {
        nb->state = calloc(cap, sizeof(*nb->state));
        nb->err = calloc(cap, sizeof(*nb->err));
        nb->reqs = calloc(cap, sizeof(*nb->reqs));
        nb->err_text = calloc(cap, sizeof(*nb->err_text));
    }
    if (!nb || !nb->state || !nb->err || !nb->reqs || !nb->err_text) {
        if (nb)
            destroy(nb);
        return err_set(e, -ENOMEM, "out of memory allocating a batch of %u transfers", cap);
    }
    nb->id = bs->next_id++;
    nb->first_slot = start;
    nb->capacity = cap;
    nb->cq = bs->cq;
    nb->inflight = &bs->inflight;
    if (prev)
        SLIST_INSERT_AFTER(prev, nb, link);
    else
        SLIST_INSERT_HEAD(&bs->list, nb, link);
    memset(shm_cq_slots(bs->cq) + start, 0, (size_t)need * sizeof(shm_cq_slot));
    *out = nb;
    return 0;
}

batch *batch_find(batch_set *bs, uint64_t id)
{
    batch *b;
    SLIST_FOREACH(b, &bs->list, link)
        if (b->id == id && !b->freed)
            return b;
    return NULL;
}

int batch_free(batch_set *bs, uint64_t id, bool when_done, err *e)
{
    batch *b = batch_find(bs, id);
    if (!b)
        return err_set(e, -ENOENT, "batch %" PRIu64 " is not allocated on this connection (freed twice?)", id);
    uint32_t pending = atomic_load_explicit(&b->pending, memory_order_acquire);
    if (pending && !when_done)
        return err_set(e, -EBUSY, "batch %" PRIu64 " still has %u transfers in flight; wait for them first", b->id,
                       pending);
    b->freed = true;
    reclaim(bs);
    return 0;
}

unsigned batch_count(const batch_set *bs)
{
    unsigned n = 0;
    const batch *b;
    SLIST_FOREACH(b, &bs->list, link)
        n += !b->freed;
    return n;
}

void batch_destroy_all(batch_set *bs)
{
    while (!SLIST_EMPTY(&bs->list)) {
        batch *b = SLIST_FIRST(&bs->list);
        SLIST_REMOVE_HEAD(&bs->list, link);
        destroy(b);
    }
}

void batch_begin(batch *b, uint32_t idx, uint64_t t0_us)
{
    shm_cq_slot *slot = shm_cq_slots(b->cq) + b->first_slot + 1 + idx;
    b->reqs[idx].t0_us = t0_us;
    atomic_store_explicit(&b->reqs[idx].err, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->state, MCEFA_STATE_PENDING, memory_order_relaxed);
    atomic_store_explicit(&b->state[idx], MCEFA_STATE_PENDING, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->pending, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->users, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(b->inflight, 1, memory_order_relaxed);
}

static void finish(batch *b, uint32_t idx, int err, char *why, bool wake)
{
    uint32_t hdr = b->first_slot;
    stats_transfer_done(err != 0, clock_now_us() - b->reqs[idx].t0_us);
    atomic_store_explicit(&b->err[idx], err, memory_order_relaxed);
    free(b->err_text[idx]);
    b->err_text[idx] = why;
    atomic_store_explicit(&b->state[idx], err ? MCEFA_STATE_FAILED : MCEFA_STATE_COMPLETED, memory_order_release);
    atomic_fetch_sub_explicit(b->inflight, 1, memory_order_relaxed);
    /* The daemon's count drops before the client is told, so a client that
     * frees the batch as soon as it sees it done is never refused; `users`
     * keeps the slots reserved until this write has landed. */
    atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel);
    shm_cq_set(b->cq, hdr, hdr + 1 + idx, err);
    if (wake)
        shm_cq_wake(b->cq);
    atomic_fetch_sub_explicit(&b->users, 1, memory_order_release); /* last touch of b */
}

void batch_finish(batch *b, uint32_t idx, int err, char *why)
{
    finish(b, idx, err, why, true);
}

void batch_wake(void *cq)
{
    shm_cq_wake(cq);
}

static void piece_done(batch *b, uint32_t idx, int err, const char *why, bool wake)
{
    xfer_req *r = &b->reqs[idx];
    if (err) {
        int32_t zero = 0;
        if (atomic_compare_exchange_strong(&r->err, &zero, err) && why)
            r->why = strdup(why);
    }
    if (atomic_fetch_sub_explicit(&r->remaining, 1, memory_order_acq_rel) == 1) {
        char *w = r->why;
        r->why = NULL;
        finish(b, idx, atomic_load(&r->err), w, wake);
    }
}

void batch_piece_done(batch *b, uint32_t idx, int err, const char *why)
{
    piece_done(b, idx, err, why, true);
}

void batch_piece_done_quiet(batch *b, uint32_t idx, int err, const char *why)
{
    piece_done(b, idx, err, why, false);
}
