/* libmcefa: the submission ring (shm/ring.h, docs/protocol.md "Submission
 * ring"). mcefa_batch_submit writes descriptors here instead of a
 * SubmitBatch frame and waits for the daemon's answer in shared memory:
 * no system call while the daemon is awake. The answer keeps the socket
 * path's meaning (every address checked before any byte moves, errors
 * returned by the call), and since each call waits for it, requests on the
 * socket and submissions on the ring stay in the order a thread made them. */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "shm/ring.h"

/* Polls for the answer this many times before yielding, then sleeps. The
 * daemon checks a submission in microseconds when awake. */
#define ANSWER_SPINS 64
#define ANSWER_YIELDS 8
#define ANSWER_SLICE_MS 200

struct client_ring {
    shm_ring_view v;
    int efd;
    pthread_mutex_t lock; /* producers: tail, subs, busy */
    uint32_t tail;        /* descriptors published */
    uint32_t subs;        /* submissions published */
    bool busy[SHM_RING_RESULTS]; /* a thread has yet to read that answer */
    pthread_cond_t freed;        /* a busy slot became free (its reader took the answer) */
};

static void ring_free(client_ring *r)
{
    if (r->v.area)
        munmap(r->v.area, r->v.len);
    if (r->efd >= 0)
        close(r->efd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->freed);
    free(r);
}

int client_ring_request(mcefa_client *c, uint32_t *entries, uint32_t *results, int fds[2])
{
    Mcefa__OpenRing m = MCEFA__OPEN_RING__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_OPEN_RING;
    req.open_ring = &m;
    Mcefa__Response *resp;
    int rc = client_call_fds(c, &req, NULL, 0, &resp, fds, 2);
    if (rc < 0)
        return rc;
    *entries = *results = 0;
    if (resp->body_case == MCEFA__RESPONSE__BODY_RING_OPENED) {
        *entries = resp->ring_opened->entries;
        *results = resp->ring_opened->results;
    }
    mcefa__response__free_unpacked(resp, NULL);
    return 0;
}

int client_ring_open(mcefa_client *c)
{
    const char *env = getenv("MCEFA_SUBMIT_RING");
    if (!(c->features & MCEFA_FEATURE_SUBMIT_RING) || (env && !strcmp(env, "0")))
        return 0; /* an older daemon, the ring off there, or here: the socket */
    uint32_t entries, results;
    int fds[2];
    int rc = client_ring_request(c, &entries, &results, fds);
    if (rc < 0) {
        /* The daemon said no (rings off, or out of memory or descriptors
         * for one): the socket serves. Only a lost connection is fatal. */
        pthread_mutex_lock(&c->lock);
        bool broken = c->broken;
        pthread_mutex_unlock(&c->lock);
        return broken ? rc : 0;
    }
    client_ring *r = calloc(1, sizeof(*r));
    if (!r || fds[0] < 0 || fds[1] < 0 || !entries || (entries & (entries - 1)) || !results ||
        (results & (results - 1)) || results > SHM_RING_RESULTS || entries > (1u << 24)) {
        free(r);
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        return client_error(r ? -EPROTO : -ENOMEM, r ? "mcefad answered OpenRing with an unusable ring" : "out of memory");
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->freed, NULL);
    r->efd = fds[1];
    void *area = mmap(NULL, shm_ring_size(entries, results), PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    int e = errno;
    close(fds[0]);
    if (area == MAP_FAILED) {
        ring_free(r);
        return client_error(-e, "cannot map mcefad's submission ring: %s", strerror(e));
    }
    shm_ring_view_set(&r->v, area, entries, results);
    if (r->v.h->magic != SHM_RING_MAGIC || r->v.h->version != SHM_RING_VERSION || r->v.h->entries != entries ||
        r->v.h->results != results) {
        ring_free(r);
        return client_error(-EPROTO, "mcefad's submission ring has an unexpected layout (version mismatch?)");
    }
    c->ring = r;
    return 0;
}

void client_ring_close(mcefa_client *c)
{
    if (c->ring)
        ring_free(c->ring);
    c->ring = NULL;
}

static int broken_error(void)
{
    return client_error(-EPROTO, "mcefad stopped reading this connection's submission ring: its shared memory was "
                                 "overwritten (see the daemon's log); reconnect");
}

/* Waits for `answered` to move from seen: spins, yields, then sleeps in
 * slices, checking that the daemon is still there. */
static int wait_answered(mcefa_client *c, uint32_t seen, unsigned *round)
{
    client_ring *r = c->ring;
    unsigned k = (*round)++;
    if (k < ANSWER_SPINS) {
        client_cpu_relax();
        return 0;
    }
    if (k < ANSWER_SPINS + ANSWER_YIELDS) {
        sched_yield();
        return 0;
    }
    shm_ring_wait_answered(r->v.area, seen, ANSWER_SLICE_MS);
    if (atomic_load_explicit(&r->v.h->answered, memory_order_acquire) == seen && client_daemon_gone(c))
        return client_error(-ECONNRESET, "mcefad went away before it answered a submission");
    return 0;
}

/* Fills descriptor i of a submission (kind, and what it asks). */
typedef void (*fill_fn)(const void *arg, size_t i, shm_ring_desc *d);

/* Publishes one submission of n descriptors, waits for its answer and
 * copies it to *out. Returns 0 (then out->status says how it went) or a
 * negative errno when no answer came. With out NULL it does not wait: the
 * answer goes unread. */
static int ring_call(mcefa_client *c, size_t n, fill_fn fill, const void *arg, shm_ring_result *out)
{
    client_ring *r = c->ring;
    uint32_t mask = r->v.entries - 1, k;
    unsigned round = 0;
    int rc;
    pthread_mutex_lock(&r->lock);
    /* Room for n descriptors and a free result slot. Full: wait for the
     * daemon, which is awake while descriptors are unread. */
    for (;;) {
        if (atomic_load_explicit(&r->v.h->broken, memory_order_acquire)) {
            pthread_mutex_unlock(&r->lock);
            return broken_error();
        }
        uint32_t seen = atomic_load_explicit(&r->v.h->answered, memory_order_acquire);
        uint32_t used = r->tail - atomic_load_explicit(&r->v.h->head, memory_order_acquire);
        bool room = used <= r->v.entries && n <= r->v.entries - used;
        if (room && !r->busy[r->subs & (r->v.results - 1)])
            break;
        if (room) {
            /* Only the answer slot is taken: its reader frees it. */
            pthread_cond_wait(&r->freed, &r->lock);
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        if ((rc = wait_answered(c, seen, &round)) < 0)
            return rc;
        pthread_mutex_lock(&r->lock);
    }
    for (size_t i = 0; i < n; i++) {
        shm_ring_desc *d = &r->v.desc[(r->tail + i) & mask];
        fill(arg, i, d);
        d->count = i ? 0 : (uint32_t)n;
    }
    k = r->subs++;
    r->busy[k & (r->v.results - 1)] = out != NULL;
    r->tail += (uint32_t)n;
    /* Publish, then look whether the daemon sleeps (both seq_cst, against
     * its flag-then-recheck): either it sees the tail or we see the flag. */
    atomic_store_explicit(&r->v.h->tail, r->tail, memory_order_seq_cst);
    rc = 0;
    if (atomic_load_explicit(&r->v.h->sleeping, memory_order_seq_cst)) {
        uint64_t one = 1;
        /* Full (EAGAIN): the daemon is being woken already. EPIPE: it
         * closed the ring; the answer wait sees that. */
        if (send(r->efd, &one, sizeof(one), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN &&
            errno != EWOULDBLOCK && errno != EPIPE)
            rc = client_error(-errno, "cannot wake mcefad through its ring's wake-up socket: %s", strerror(errno));
    }
    pthread_mutex_unlock(&r->lock);
    if (!out)
        return rc;

    shm_ring_result *res = &r->v.res[k & (r->v.results - 1)];
    round = 0;
    while (rc == 0) {
        uint32_t seen = atomic_load_explicit(&r->v.h->answered, memory_order_acquire);
        if (atomic_load_explicit(&res->seq, memory_order_acquire) == k + 1) {
            memcpy((char *)out + sizeof(out->seq), (char *)res + sizeof(res->seq), sizeof(*out) - sizeof(out->seq));
            out->text[sizeof(out->text) - 1] = 0;
            break;
        }
        if (atomic_load_explicit(&r->v.h->broken, memory_order_acquire))
            rc = broken_error();
        else
            rc = wait_answered(c, seen, &round);
    }
    pthread_mutex_lock(&r->lock);
    r->busy[k & (r->v.results - 1)] = false;
    pthread_cond_broadcast(&r->freed);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* The daemon's status as the call's result, its text as the last error. */
static int answer_status(const shm_ring_result *res)
{
    if (res->status < 0)
        return client_error(res->status, "%s", *res->text ? res->text : mcefa_strerror(res->status));
    if (res->status > 0)
        return client_error(-EPROTO, "mcefad answered a ring request with status %d", res->status);
    client_error(0, "%s", "");
    return 0;
}

typedef struct transfers_arg {
    uint64_t batch_id;
    const mcefa_transfer *t;
} transfers_arg;

static void fill_transfer(const void *arg, size_t i, shm_ring_desc *d)
{
    const transfers_arg *a = arg;
    const mcefa_transfer *t = &a->t[i];
    d->kind = SHM_RING_TRANSFER;
    d->batch_id = a->batch_id;
    d->local_addr = (uint64_t)(uintptr_t)t->local;
    d->segment = t->segment;
    d->remote_addr = t->remote;
    d->length = t->length;
    d->opcode = (uint32_t)t->opcode;
    d->flags = 0;
}

int client_ring_submit(mcefa_client *c, uint64_t batch_id, const mcefa_transfer *t, size_t n)
{
    transfers_arg a = {batch_id, t};
    shm_ring_result res;
    int rc = ring_call(c, n, fill_transfer, &a, &res);
    if (rc == 0 && (rc = answer_status(&res)) == 0)
        rc = (int)res.first_index;
    return rc;
}

static void fill_request(const void *arg, size_t i, shm_ring_desc *d)
{
    (void)i;
    *d = *(const shm_ring_desc *)arg;
}

int client_ring_alloc(mcefa_client *c, uint32_t capacity, uint64_t *id, uint32_t *first_slot, uint32_t *cap)
{
    shm_ring_desc d = {.kind = SHM_RING_ALLOC, .length = capacity};
    shm_ring_result res;
    int rc = ring_call(c, 1, fill_request, &d, &res);
    if (rc == 0 && (rc = answer_status(&res)) == 0) {
        *id = res.batch_id;
        *first_slot = res.first_index;
        *cap = res.capacity;
    }
    return rc;
}

int client_ring_free(mcefa_client *c, uint64_t id, bool when_done, bool finished)
{
    shm_ring_desc d = {.kind = SHM_RING_FREE, .batch_id = id, .flags = when_done ? SHM_RING_FREE_WHEN_DONE : 0};
    shm_ring_result res;
    /* Nothing in flight: the daemon cannot refuse it, and the next request
     * of this thread, whichever way it goes, is read after it. Waiting
     * for the answer would cost a wake-up of a daemon that went to sleep
     * during the copies. */
    if (finished)
        return ring_call(c, 1, fill_request, &d, NULL);
    int rc = ring_call(c, 1, fill_request, &d, &res);
    return rc == 0 ? answer_status(&res) : rc;
}

bool client_ring_fits(const mcefa_client *c, size_t n)
{
    return c->ring && n && n <= c->ring->v.entries;
}
