/* libmcefa: batches. Submission is one request to the daemon; completion is
 * read from the shared completion area. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "shm/completion.h"

/* Polls this many times before sleeping: short, since on a small machine
 * the spinning thread competes with the daemon's copy threads. */
#define WAIT_SPINS 256
/* Longest sleep between checks that the daemon is still there. */
#define WAIT_SLICE_MS 200

static shm_cq_slot *slots(const mcefa_batch *b)
{
    return shm_cq_slots(b->c->cq) + b->first_slot;
}

static int new_batch(mcefa_client *c, uint64_t id, uint32_t first_slot, uint32_t capacity, mcefa_batch **out)
{
    if (first_slot + (uint64_t)capacity + 1 > c->cq_slots)
        return client_error(-EPROTO, "mcefad placed a batch outside the completion area");
    mcefa_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return client_error(-ENOMEM, "out of memory");
    b->c = c;
    b->id = id;
    b->first_slot = first_slot;
    b->capacity = capacity;
    *out = b;
    return 0;
}

static int ring_alloc(mcefa_client *c, uint32_t capacity, mcefa_batch **out)
{
    uint64_t id;
    uint32_t first, cap;
    int rc = client_ring_alloc(c, capacity, &id, &first, &cap);
    return rc < 0 ? rc : new_batch(c, id, first, cap, out);
}

int mcefa_batch_alloc(mcefa_client *c, uint32_t capacity, mcefa_batch **out)
{
    if (!c || !out)
        return client_error(-EINVAL, "mcefa_batch_alloc: client and out must not be NULL");
    if (c->ring)
        return ring_alloc(c, capacity, out);
    Mcefa__AllocBatch m = MCEFA__ALLOC_BATCH__INIT;
    m.capacity = capacity;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_ALLOC_BATCH;
    req.alloc_batch = &m;
    Mcefa__Response *resp;
    int rc = client_call(c, &req, NULL, 0, &resp);
    if (rc < 0)
        return rc;
    Mcefa__BatchAllocated *ba = resp->batch_allocated;
    rc = new_batch(c, ba->batch_id, ba->first_slot, ba->capacity, out);
    mcefa__response__free_unpacked(resp, NULL);
    return rc;
}

/* Sends FreeBatch. A daemon that went away freed the batch with the
 * session: that counts as freed. */
static int send_free(mcefa_batch *b, bool when_done)
{
    if (b->c->ring) {
        /* The daemon drops its count before it bumps done (batch.c). */
        bool finished = atomic_load_explicit(&slots(b)->done, memory_order_acquire) >= b->submitted;
        int rc = client_ring_free(b->c, b->id, when_done, finished);
        return rc == -ECONNRESET ? 0 : rc;
    }
    Mcefa__FreeBatch m = MCEFA__FREE_BATCH__INIT;
    m.batch_id = b->id;
    m.when_done = when_done;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_FREE_BATCH;
    req.free_batch = &m;
    int rc = client_call_simple(b->c, &req);
    return rc == -ECONNRESET || rc == -EPIPE ? 0 : rc;
}

int mcefa_batch_free(mcefa_batch *b)
{
    if (!b)
        return 0;
    int rc = send_free(b, false);
    if (rc == 0)
        free(b);
    return rc;
}

int mcefa_batch_free_when_done(mcefa_batch *b)
{
    if (!b)
        return 0;
    int rc = send_free(b, true);
    /* Even on -EBUSY (a daemon that ignores when_done): the daemon frees the
     * batch with the connection at the latest, and the caller has given up
     * on it. */
    free(b);
    return rc;
}

int mcefa_batch_submit(mcefa_batch *b, const mcefa_transfer *t, size_t n)
{
    if (!b || (!t && n))
        return client_error(-EINVAL, "mcefa_batch_submit: batch and transfers must not be NULL");
    if (n > b->capacity - b->submitted)
        return client_error(-ENOSPC, "mcefa_batch_submit: batch holds %u transfers, %u submitted, %zu more do not fit",
                            b->capacity, b->submitted, n);
    if (client_ring_fits(b->c, n)) {
        int rc = client_ring_submit(b->c, b->id, t, n);
        if (rc >= 0)
            b->submitted += (uint32_t)n;
        return rc;
    }
    Mcefa__Transfer *tv = calloc(n ? n : 1, sizeof(*tv));
    Mcefa__Transfer **tp = calloc(n ? n : 1, sizeof(*tp));
    if (!tv || !tp) {
        free(tv);
        free(tp);
        return client_error(-ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        mcefa__transfer__init(&tv[i]);
        tv[i].opcode = (Mcefa__Opcode)t[i].opcode;
        tv[i].local_addr = (uint64_t)(uintptr_t)t[i].local;
        tv[i].segment = t[i].segment;
        tv[i].remote_addr = t[i].remote;
        tv[i].length = t[i].length;
        tp[i] = &tv[i];
    }
    Mcefa__SubmitBatch m = MCEFA__SUBMIT_BATCH__INIT;
    m.batch_id = b->id;
    m.n_transfers = n;
    m.transfers = tp;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_SUBMIT_BATCH;
    req.submit_batch = &m;
    Mcefa__Response *resp;
    int rc = client_call(b->c, &req, NULL, 0, &resp);
    free(tv);
    free(tp);
    if (rc < 0)
        return rc;
    rc = (int)resp->batch_submitted->first_index;
    mcefa__response__free_unpacked(resp, NULL);
    b->submitted += (uint32_t)n;
    return rc;
}

int mcefa_batch_state(const mcefa_batch *b, uint32_t idx, int *err)
{
    if (idx >= b->submitted)
        return client_error(-EINVAL, "transfer %u was not submitted to this batch (%u were)", idx, b->submitted);
    shm_cq_slot *s = &slots(b)[1 + idx];
    int st = (int)atomic_load_explicit(&s->state, memory_order_acquire);
    if (err)
        *err = st == MCEFA_STATE_FAILED ? s->error : 0;
    return st;
}

void mcefa_batch_progress(const mcefa_batch *b, uint32_t *submitted, uint32_t *finished, uint32_t *failed)
{
    shm_cq_slot *h = slots(b);
    if (submitted)
        *submitted = b->submitted;
    if (finished)
        *finished = atomic_load_explicit(&h->done, memory_order_acquire);
    if (failed)
        *failed = atomic_load_explicit(&h->failed, memory_order_acquire);
}

static int finished_result(mcefa_batch *b)
{
    shm_cq_slot *h = slots(b);
    if (atomic_load_explicit(&h->failed, memory_order_acquire) == 0)
        return 0;
    for (uint32_t i = 0; i < b->submitted; i++) {
        int err;
        if (mcefa_batch_state(b, i, &err) == MCEFA_STATE_FAILED)
            return client_error(err ? err : -EIO, "transfer %u of the batch failed: %s", i, mcefa_strerror(err));
    }
    return client_error(-EIO, "a transfer of the batch failed");
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mcefa_batch_wait(mcefa_batch *b, int timeout_ms)
{
    shm_cq_slot *h = slots(b);
    shm_cq_header *hdr = b->c->cq;
    for (int i = 0; i < WAIT_SPINS; i++) {
        if (atomic_load_explicit(&h->done, memory_order_acquire) >= b->submitted)
            return finished_result(b);
        client_cpu_relax();
    }
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
    for (;;) {
        uint32_t seq = atomic_load_explicit(&hdr->wake_seq, memory_order_acquire);
        if (atomic_load_explicit(&h->done, memory_order_acquire) >= b->submitted)
            return finished_result(b);
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return client_error(-ETIMEDOUT, "batch not finished after %d ms (%u of %u transfers done)", timeout_ms,
                                atomic_load(&h->done), b->submitted);
        shm_cq_wait(b->c->cq, seq, left < WAIT_SLICE_MS ? (int)left : WAIT_SLICE_MS);
        if (atomic_load_explicit(&h->done, memory_order_acquire) < b->submitted && client_daemon_gone(b->c))
            return client_error(-ECONNRESET, "mcefad went away with %u of %u transfers unfinished",
                                b->submitted - atomic_load(&h->done), b->submitted);
    }
}

int mcefa_batch_error_text(mcefa_batch *b, uint32_t idx, char *buf, size_t len)
{
    Mcefa__BatchStatusQuery m = MCEFA__BATCH_STATUS_QUERY__INIT;
    m.batch_id = b->id;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_BATCH_STATUS;
    req.batch_status = &m;
    Mcefa__Response *resp;
    int rc = client_call(b->c, &req, NULL, 0, &resp);
    if (rc < 0)
        return rc;
    Mcefa__BatchStatus *bs = resp->batch_status;
    if (idx >= bs->n_transfers) {
        mcefa__response__free_unpacked(resp, NULL);
        return client_error(-EINVAL, "transfer %u was not submitted to this batch", idx);
    }
    snprintf(buf, len, "%s", bs->transfers[idx]->error_text ? bs->transfers[idx]->error_text : "");
    mcefa__response__free_unpacked(resp, NULL);
    return 0;
}

int mcefa_transfer_sync(mcefa_client *c, const mcefa_transfer *t, size_t n, int timeout_ms)
{
    if (n == 0)
        return 0;
    if (n > UINT32_MAX)
        return client_error(-EINVAL, "mcefa_transfer_sync: too many transfers");
    mcefa_batch *b;
    int rc = mcefa_batch_alloc(c, (uint32_t)n, &b);
    if (rc < 0)
        return rc;
    rc = mcefa_batch_submit(b, t, n);
    if (rc >= 0)
        rc = mcefa_batch_wait(b, timeout_ms);
    char saved[512];
    snprintf(saved, sizeof(saved), "%s", mcefa_last_error());
    /* A wait that gave up leaves transfers in flight: the batch is released
     * when they finish, not held until disconnect. With nothing in flight
     * this is a plain free. */
    int frc = mcefa_batch_free_when_done(b);
    if (rc < 0)
        return client_error(rc, "%s", saved);
    return frc;
}
