#include "ring.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <unistd.h>

#include "batch.h"
#include "clock.h"
#include "log.h"
#include "shm/memfd.h"
#include "shm/ring.h"
#include "xfer.h"

/* Everything the daemon relies on is its own: sizes, head, the count of
 * answers. The shared area is only read through `tail` (once per pass)
 * and one copy of each descriptor. */
struct ring {
    LIST_ENTRY(ring) link;
    session *s;
    void *area;
    size_t len;
    shm_ring_header *h;
    shm_ring_desc *desc;
    shm_ring_result *res;
    uint32_t entries, results;
    uint32_t head;    /* descriptors taken */
    uint32_t answers; /* submissions answered */
    bool broken;
    bool misstep_logged;
    int efd;
    uv_poll_t poll;
    shm_ring_desc *copy;  /* one submission's descriptors, copied out */
    Mcefa__Transfer *tv;  /* the same as xfer_submit takes them */
    Mcefa__Transfer **tp;
};

static LIST_HEAD(, ring) rings = LIST_HEAD_INITIALIZER(rings);
static uv_loop_t *loop;
static uv_idle_t idle;
static bool polling; /* the idle handle runs: rings are read every loop turn */
static uint64_t spin_us, last_work_us;

static void on_idle(uv_idle_t *h);

void ring_init(uv_loop_t *l, uint64_t spin)
{
    loop = l;
    spin_us = spin;
    uv_idle_init(loop, &idle);
}

void ring_stop(void)
{
    uv_idle_stop(&idle);
    uv_close((uv_handle_t *)&idle, NULL);
}

static void set_sleeping(uint32_t v)
{
    ring *r;
    LIST_FOREACH(r, &rings, link)
        atomic_store_explicit(&r->h->sleeping, v, memory_order_seq_cst);
}

static void start_polling(void)
{
    last_work_us = clock_now_us();
    if (polling)
        return;
    polling = true;
    set_sleeping(0);
    uv_idle_start(&idle, on_idle);
}

/* The client overwrote the ring's bookkeeping: stop reading it. Its threads
 * waiting for answers see `broken` and fail; the socket keeps working. */
static void ring_break(ring *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ring_break(ring *r, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_warn("client %s (pid %d): %s; its submission ring is no longer read (it may still submit over the socket)",
             r->s->name, (int)r->s->pid, why);
    r->broken = true;
    uv_poll_stop(&r->poll);
    atomic_store_explicit(&r->h->broken, -EPROTO, memory_order_seq_cst);
    shm_ring_publish_answered(r->area, r->answers); /* wakes its waiters */
}

/* What a submission's answer carries besides its status. */
typedef struct outcome {
    uint32_t first; /* transfers: the batch index of the first; alloc: the first slot */
    uint32_t capacity;
    uint64_t batch_id;
} outcome;

static void answer(ring *r, const err *e, const outcome *o)
{
    shm_ring_result *res = &r->res[r->answers & (r->results - 1)];
    res->status = e->code;
    res->first_index = e->code ? 0 : o->first;
    res->capacity = e->code ? 0 : o->capacity;
    res->batch_id = e->code ? 0 : o->batch_id;
    snprintf(res->text, sizeof(res->text), "%s", e->code ? e->text : "");
    atomic_store_explicit(&res->seq, r->answers + 1, memory_order_release);
    r->answers++;
    shm_ring_publish_answered(r->area, r->answers);
}

/* The n descriptors in r->copy, one submission, as a SubmitBatch. */
static int submit_copy(ring *r, uint32_t n, uint32_t *first, xfer_started *st, err *e)
{
    uint64_t id = r->copy[0].batch_id;
    for (uint32_t i = 0; i < n; i++) {
        const shm_ring_desc *d = &r->copy[i];
        if (d->kind != SHM_RING_TRANSFER)
            return err_set(e, -EINVAL,
                           "descriptor %u of a ring submission of transfers is of kind %u: batch requests go alone",
                           i, d->kind);
        if (d->batch_id != id)
            return err_set(e, -EINVAL,
                           "transfer %u of a ring submission names batch %" PRIu64 ", its first names batch %" PRIu64
                           ": one submission goes to one batch",
                           i, d->batch_id, id);
        Mcefa__Transfer *t = &r->tv[i];
        mcefa__transfer__init(t);
        /* Any value: check_one refuses what is not a read or a write. */
        t->opcode = (Mcefa__Opcode)(int)d->opcode;
        t->local_addr = d->local_addr;
        t->segment = d->segment;
        t->remote_addr = d->remote_addr;
        t->length = d->length;
    }
    batch *b = batch_find(&r->s->batches, id);
    if (!b)
        return err_set(e, -ENOENT, "batch %" PRIu64 " is not allocated on this connection", id);
    return xfer_plan(r->s, b, r->tp, n, first, st, e);
}

/* One submission, copied out: what its first descriptor's kind asks, as
 * the socket's AllocBatch, FreeBatch or SubmitBatch would do it. */
static int run_copy(ring *r, uint32_t n, outcome *o, xfer_started *st, err *e)
{
    const shm_ring_desc *d = &r->copy[0];
    if (d->kind == SHM_RING_TRANSFER)
        return submit_copy(r, n, &o->first, st, e);
    if (d->kind != SHM_RING_ALLOC && d->kind != SHM_RING_FREE)
        return err_set(e, -EINVAL, "ring descriptor kind %u is unknown (0 transfer, 1 alloc batch, 2 free batch)",
                       d->kind);
    if (n != 1)
        return err_set(e, -EINVAL, "a ring batch request (kind %u) must be alone in its submission, not one of %u",
                       d->kind, n);
    if (d->kind == SHM_RING_FREE)
        return batch_free(&r->s->batches, d->batch_id, d->flags & SHM_RING_FREE_WHEN_DONE, e);
    batch *b;
    if (d->length > UINT32_MAX)
        return err_set(e, -EINVAL, "batch capacity %" PRIu64 " is out of range", d->length);
    int rc = batch_alloc(&r->s->batches, (uint32_t)d->length, &b, e);
    if (rc < 0)
        return rc;
    o->batch_id = b->id;
    o->first = b->first_slot;
    o->capacity = b->capacity;
    return 0;
}

/* Takes what the client published, up to one ring's worth. Returns the
 * number of descriptors taken. */
static uint32_t drain(ring *r)
{
    if (r->broken)
        return 0;
    uint32_t tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
    uint32_t avail = tail - r->head, taken = 0, mask = r->entries - 1;
    if (avail > r->entries) {
        ring_break(r, "its ring tail %u is %u descriptors past the daemon's head %u, more than the ring's %u", tail,
                   avail, r->head, r->entries);
        return 0;
    }
    while (avail) {
        memcpy(&r->copy[0], &r->desc[r->head & mask], sizeof(r->copy[0]));
        uint32_t n = r->copy[0].count;
        outcome o = {0};
        xfer_started st = {0};
        err e = {0};
        if (n == 0 || n > avail) {
            /* Out of step: this descriptor alone is refused, the next is
             * read as the start of a submission. */
            if (!r->misstep_logged)
                log_warn("client %s (pid %d): ring descriptor %u %s; refusing it (logged once per client)",
                         r->s->name, (int)r->s->pid, r->head,
                         n ? "counts more descriptors than are published" : "does not start a submission");
            r->misstep_logged = true;
            if (n)
                err_set(&e, -EINVAL,
                        "ring descriptor %u starts a submission of %u descriptors but only %u are published: publish "
                        "the tail after writing a whole submission",
                        r->head, n, avail);
            else
                err_set(&e, -EINVAL,
                        "ring descriptor %u does not start a submission (count 0): the ring's writes are out of step",
                        r->head);
            n = 1;
        }
        for (uint32_t i = 1; i < n; i++)
            memcpy(&r->copy[i], &r->desc[(r->head + i) & mask], sizeof(r->copy[i]));
        r->head += n;
        avail -= n;
        taken += n;
        /* The slots are the client's again before the work starts. */
        atomic_store_explicit(&r->h->head, r->head, memory_order_release);
        if (!e.code)
            run_copy(r, n, &o, &st, &e);
        answer(r, &e, &o);
        /* After the answer: see xfer_plan. */
        if (st.s)
            xfer_start(&st);
    }
    return taken;
}

static bool pending(const ring *r)
{
    return !r->broken && atomic_load_explicit(&r->h->tail, memory_order_seq_cst) != r->head;
}

/* A client with transfers in flight is about to free its batch or submit
 * the next one: stay awake for it rather than pay a wake-up on the way. */
static bool busy(const ring *r)
{
    return !r->broken && session_inflight(r->s) > 0;
}

static void on_idle(uv_idle_t *h)
{
    (void)h;
    bool work = false;
    ring *r;
    LIST_FOREACH(r, &rings, link)
        work |= drain(r) > 0 || busy(r);
    uint64_t now = clock_now_us();
    if (work || now - last_work_us < spin_us) {
        if (work)
            last_work_us = now;
        return;
    }
    /* Say we sleep, then look once more: a client publishes its tail and
     * then reads `sleeping` (both seq_cst), so either it sees the flag and
     * writes the eventfd, or we see its tail here. */
    set_sleeping(1);
    LIST_FOREACH(r, &rings, link)
        work |= pending(r);
    if (work) {
        set_sleeping(0);
        last_work_us = now;
        return;
    }
    polling = false;
    uv_idle_stop(&idle);
}

static void on_kick(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    ring *r = p->data;
    uint64_t v;
    if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_debug("ring eventfd of client %s: %s", r->s->name, strerror(errno));
    start_polling();
}

static void on_closed(uv_handle_t *h)
{
    ring *r = h->data;
    close(r->efd);
    munmap(r->area, r->len);
    free(r->copy);
    free(r->tv);
    free(r->tp);
    free(r);
}

static uint32_t round_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

int ring_open(session *s, uint32_t want, uint32_t max_entries, uint32_t *entries, uint32_t *results, int fds[2],
              err *e)
{
    if (s->ring)
        return err_set(e, -EALREADY, "this connection already has a submission ring");
    if (!max_entries)
        return err_set(e, -EOPNOTSUPP, "submission rings are off on this daemon (submit_ring_entries = 0); submit "
                                       "over the socket");
    uint32_t n = want && want < max_entries ? round_pow2(want) : max_entries;
    ring *r = calloc(1, sizeof(*r));
    if (!r || !(r->copy = calloc(n, sizeof(*r->copy))) || !(r->tv = calloc(n, sizeof(*r->tv))) ||
        !(r->tp = calloc(n, sizeof(*r->tp)))) {
        if (r) {
            free(r->copy);
            free(r->tv);
            free(r);
        }
        return err_set(e, -ENOMEM, "out of memory for a submission ring of %u descriptors", n);
    }
    for (uint32_t i = 0; i < n; i++)
        r->tp[i] = &r->tv[i];
    r->s = s;
    r->entries = n;
    r->results = SHM_RING_RESULTS;
    int rc = 0, fd = shm_memfd_create("mcefad-ring", shm_ring_size(n, r->results), 0, &r->len);
    const char *what = "create its memfd";
    if (fd >= 0) {
        r->area = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        what = "map it";
        if (r->area == MAP_FAILED) {
            rc = -errno;
            r->area = NULL;
        } else if ((r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 || (fds[1] = dup(r->efd)) < 0) {
            rc = -errno;
            what = "create its eventfd";
            if (r->efd >= 0)
                close(r->efd);
        }
    } else {
        rc = fd;
    }
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        if (r->area)
            munmap(r->area, r->len);
        free(r->copy);
        free(r->tv);
        free(r->tp);
        free(r);
        return err_set(e, rc, "cannot %s for a submission ring: %s", what, strerror(-rc));
    }
    fds[0] = fd;
    shm_ring_init(r->area, n, r->results);
    r->h = r->area;
    r->desc = shm_ring_descs(r->area);
    r->res = shm_ring_results(r->area, n);
    /* Asleep unless the loop polls already: the first submission wakes it. */
    atomic_store(&r->h->sleeping, polling ? 0 : 1);
    uv_poll_init(loop, &r->poll, r->efd);
    r->poll.data = r;
    uv_poll_start(&r->poll, UV_READABLE, on_kick);
    LIST_INSERT_HEAD(&rings, r, link);
    s->ring = r;
    *entries = n;
    *results = r->results;
    return 0;
}

void ring_close(session *s)
{
    ring *r = s->ring;
    if (!r)
        return;
    s->ring = NULL;
    LIST_REMOVE(r, link);
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, on_closed);
}
