#include "ring.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/socket.h>
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
    shm_ring_view v;
    uint32_t head;    /* descriptors taken */
    uint32_t answers; /* submissions answered */
    bool broken;
    bool misstep_logged;
    unsigned missteps; /* descriptors refused out of step: past RING_MISSTEPS_MAX the ring is broken */
    int efd;
    uv_poll_t poll;
    shm_ring_desc *copy;  /* one submission's descriptors, copied out */
    Mcefa__Transfer *tv;  /* the same as xfer_submit takes them */
    Mcefa__Transfer **tp;
};

static LIST_HEAD(, ring) rings = LIST_HEAD_INITIALIZER(rings);

/* Work one ring gets per loop turn (the rest waits for the next turn,
 * which comes at once: every other handle is served in between). */
#define RING_TURN_SUBMISSIONS 32
#define RING_TURN_DESCRIPTORS 1024
/* Out-of-step descriptors a client may write before its ring is dropped
 * (each is refused on its own; past this it is garbage, not a slip). */
#define RING_MISSTEPS_MAX 1024
static uv_loop_t *loop;
static uv_idle_t idle;
static bool polling; /* the idle handle runs: rings are read every loop turn */
/* !polling, for copy threads: ring_work_done wakes the loop through kick. */
static _Atomic bool asleep = true;
static uv_async_t kick;
static uint64_t spin_us, last_work_us;

static void on_idle(uv_idle_t *h);
static void on_work_done(uv_async_t *h);

void ring_init(uv_loop_t *l, uint64_t spin)
{
    loop = l;
    spin_us = spin;
    uv_idle_init(loop, &idle);
    uv_async_init(loop, &kick, on_work_done);
    /* Copy threads may send it until they are joined (ring_shutdown): it
     * must outlive the loop's main run without keeping it going. */
    uv_unref((uv_handle_t *)&kick);
}

void ring_stop(void)
{
    uv_idle_stop(&idle);
    uv_close((uv_handle_t *)&idle, NULL);
}

void ring_shutdown(void)
{
    uv_close((uv_handle_t *)&kick, NULL);
}

void ring_work_done(session *s)
{
    if (atomic_load_explicit(&s->ring_on, memory_order_relaxed) && atomic_load_explicit(&asleep, memory_order_relaxed))
        uv_async_send(&kick);
}

static void set_sleeping(uint32_t v)
{
    ring *r;
    LIST_FOREACH(r, &rings, link)
        atomic_store_explicit(&r->v.h->sleeping, v, memory_order_seq_cst);
}

static void start_polling(void)
{
    last_work_us = clock_now_us();
    if (polling)
        return;
    polling = true;
    atomic_store_explicit(&asleep, false, memory_order_relaxed);
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
    atomic_store_explicit(&r->v.h->broken, -EPROTO, memory_order_seq_cst);
    shm_ring_publish_answered(r->v.area, r->answers); /* wakes its waiters */
}

/* What a submission's answer carries besides its status. */
typedef struct outcome {
    uint32_t first; /* transfers: the batch index of the first; alloc: the first slot */
    uint32_t capacity;
    uint64_t batch_id;
} outcome;

static void answer(ring *r, const err *e, const outcome *o)
{
    shm_ring_result *res = &r->v.res[r->answers & (r->v.results - 1)];
    res->status = e->code;
    res->first_index = e->code ? 0 : o->first;
    res->capacity = e->code ? 0 : o->capacity;
    res->batch_id = e->code ? 0 : o->batch_id;
    snprintf(res->text, sizeof(res->text), "%s", e->code ? e->text : "");
    atomic_store_explicit(&res->seq, r->answers + 1, memory_order_release);
    r->answers++;
    shm_ring_publish_answered(r->v.area, r->answers);
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
    uint32_t tail = atomic_load_explicit(&r->v.h->tail, memory_order_acquire);
    uint32_t avail = tail - r->head, taken = 0, mask = r->v.entries - 1;
    if (avail > r->v.entries) {
        ring_break(r, "its ring tail %u is %u descriptors past the daemon's head %u, more than the ring's %u", tail,
                   avail, r->head, r->v.entries);
        return 0;
    }
    /* A budget per turn: one client refilling its ring without a system
     * call must not hold the loop (socket clients, peers, other rings). */
    for (unsigned subs = 0; avail && subs < RING_TURN_SUBMISSIONS && taken < RING_TURN_DESCRIPTORS; subs++) {
        memcpy(&r->copy[0], &r->v.desc[r->head & mask], sizeof(r->copy[0]));
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
            if (++r->missteps > RING_MISSTEPS_MAX) {
                ring_break(r, "more than %d ring descriptors out of step", RING_MISSTEPS_MAX);
                return taken;
            }
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
            memcpy(&r->copy[i], &r->v.desc[(r->head + i) & mask], sizeof(r->copy[i]));
        r->head += n;
        avail -= n;
        taken += n;
        /* The slots are the client's again before the work starts. */
        atomic_store_explicit(&r->v.h->head, r->head, memory_order_release);
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
    return !r->broken && atomic_load_explicit(&r->v.h->tail, memory_order_seq_cst) != r->head;
}


static void on_idle(uv_idle_t *h)
{
    (void)h;
    bool work = false;
    ring *r;
    LIST_FOREACH(r, &rings, link)
        work |= drain(r) > 0;
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
    atomic_store_explicit(&asleep, true, memory_order_relaxed);
    uv_idle_stop(&idle);
}

static void on_work_done(uv_async_t *h)
{
    (void)h;
    start_polling();
}

static void on_kick(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    ring *r = p->data;
    /* Our own end, read without blocking whatever its flags; a bounded
     * drain (whatever is left wakes us again). */
    char buf[256];
    for (int k = 0; k < 16; k++) {
        ssize_t n = recv(r->efd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            /* The client shut its end: it can no longer wake us, and an
             * end-of-file would make the loop spin on it. */
            ring_break(r, "it shut the ring's wake-up socket");
            return;
        }
        if (n < (ssize_t)sizeof(buf)) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                log_debug("ring wake-up socket of client %s: %s", r->s->name, strerror(errno));
            break;
        }
    }
    start_polling();
}

static void ring_free(ring *r)
{
    free(r->copy);
    free(r->tv);
    free(r->tp);
    free(r);
}

static void on_closed(uv_handle_t *h)
{
    ring *r = h->data;
    close(r->efd);
    munmap(r->v.area, r->v.len);
    ring_free(r);
}

static uint32_t round_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

/* The ring's memfd (returned) mapped at *area, and its wake-up socket
 * pair: our end in *efd, the client's in *client_efd. Not a shared
 * eventfd: the ends are separate open files, so the client cannot make
 * ours blocking or read the wake-ups away (a blocking read would hang the
 * loop); not a pipe: a write after we closed our end is EPIPE with
 * MSG_NOSIGNAL, never a SIGPIPE in the client. */
static int make_area(uint32_t n, void **area, size_t *len, int *efd, int *client_efd, err *e)
{
    int fd = shm_memfd_create("mcefad-ring", shm_ring_size(n, SHM_RING_RESULTS), 0, len);
    if (fd < 0)
        return err_set(e, fd, "cannot create the memfd of a submission ring: %s", strerror(-fd));
    *area = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int rc = *area == MAP_FAILED ? -errno : 0;
    const char *what = "map";
    int pfd[2];
    if (!rc && socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pfd) < 0) {
        rc = -errno;
        what = "create the wake-up socket of";
        munmap(*area, *len);
    } else if (!rc) {
        *efd = pfd[0];
        *client_efd = pfd[1];
    }
    if (rc < 0) {
        close(fd);
        return err_set(e, rc, "cannot %s a submission ring: %s", what, strerror(-rc));
    }
    return fd;
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
        if (r)
            ring_free(r);
        return err_set(e, -ENOMEM, "out of memory for a submission ring of %u descriptors", n);
    }
    for (uint32_t i = 0; i < n; i++)
        r->tp[i] = &r->tv[i];
    void *area;
    size_t len;
    int fd = make_area(n, &area, &len, &r->efd, &fds[1], e);
    if (fd < 0) {
        ring_free(r);
        return fd;
    }
    fds[0] = fd;
    shm_ring_init(area, n, SHM_RING_RESULTS);
    shm_ring_view_set(&r->v, area, n, SHM_RING_RESULTS);
    r->v.len = len; /* what was mapped */
    r->s = s;
    /* Asleep unless the loop polls already: the first submission wakes it. */
    atomic_store(&r->v.h->sleeping, polling ? 0 : 1);
    uv_poll_init(loop, &r->poll, r->efd);
    r->poll.data = r;
    uv_poll_start(&r->poll, UV_READABLE, on_kick);
    LIST_INSERT_HEAD(&rings, r, link);
    s->ring = r;
    atomic_store(&s->ring_on, true);
    *entries = n;
    *results = r->v.results;
    return 0;
}

void ring_close(session *s)
{
    ring *r = s->ring;
    if (!r)
        return;
    s->ring = NULL;
    atomic_store(&s->ring_on, false);
    LIST_REMOVE(r, link);
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, on_closed);
}
