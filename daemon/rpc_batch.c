/* Batch requests: allocate, free, submit, status. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ring.h"
#include "rpc.h"
#include "shm/completion.h"
#include "xfer.h"

void rpc_alloc_batch(reply *r, const Mcefa__Request *req)
{
    batch *b;
    err e;
    if (batch_alloc(&r->s->batches, req->alloc_batch->capacity, &b, &e) < 0) {
        reply_err(r, &e);
        return;
    }
    Mcefa__BatchAllocated *ba = reply_alloc(r, sizeof(*ba));
    mcefa__batch_allocated__init(ba);
    ba->batch_id = b->id;
    ba->first_slot = b->first_slot;
    ba->capacity = b->capacity;
    r->resp.body_case = MCEFA__RESPONSE__BODY_BATCH_ALLOCATED;
    r->resp.batch_allocated = ba;
}

void rpc_free_batch(reply *r, const Mcefa__Request *req)
{
    err e;
    if (batch_free(&r->s->batches, req->free_batch->batch_id, req->free_batch->when_done, &e) < 0)
        reply_err(r, &e);
}

void rpc_submit(reply *r, const Mcefa__Request *req)
{
    const Mcefa__SubmitBatch *m = req->submit_batch;
    batch *b = batch_find(&r->s->batches, m->batch_id);
    if (!b) {
        reply_fail(r, -ENOENT, "batch %" PRIu64 " is not allocated on this connection", m->batch_id);
        return;
    }
    uint32_t first;
    err e;
    if (xfer_submit(r->s, b, m->transfers, m->n_transfers, &first, &e) < 0) {
        reply_err(r, &e);
        return;
    }
    Mcefa__BatchSubmitted *bs = reply_alloc(r, sizeof(*bs));
    mcefa__batch_submitted__init(bs);
    bs->first_index = first;
    r->resp.body_case = MCEFA__RESPONSE__BODY_BATCH_SUBMITTED;
    r->resp.batch_submitted = bs;
}

void rpc_batch_status(reply *r, const Mcefa__Request *req)
{
    uint64_t id = req->batch_status->batch_id;
    batch *b = batch_find(&r->s->batches, id);
    if (!b) {
        reply_fail(r, -ENOENT, "batch %" PRIu64 " is not allocated on this connection", id);
        return;
    }
    Mcefa__BatchStatus *bs = reply_alloc(r, sizeof(*bs));
    mcefa__batch_status__init(bs);
    bs->n_transfers = b->count;
    bs->transfers = reply_alloc(r, b->count * sizeof(*bs->transfers) + 1);
    for (uint32_t i = 0; i < b->count; i++) {
        Mcefa__TransferStatus *ts = reply_alloc(r, sizeof(*ts));
        mcefa__transfer_status__init(ts);
        /* state's release store publishes err and err_text. */
        ts->state = atomic_load_explicit(&b->state[i], memory_order_acquire);
        ts->error = atomic_load_explicit(&b->err[i], memory_order_relaxed);
        if (ts->state == MCEFA_STATE_FAILED) {
            char *txt = reply_alloc(r, 600);
            snprintf(txt, 600, "transfer %u failed: %s", i, b->err_text[i] ? b->err_text[i] : strerror(-ts->error));
            ts->error_text = txt;
        }
        bs->transfers[i] = ts;
    }
    r->resp.body_case = MCEFA__RESPONSE__BODY_BATCH_STATUS;
    r->resp.batch_status = bs;
}

void rpc_open_ring(reply *r, const Mcefa__Request *req)
{
    uint32_t entries, results;
    int fds[2];
    err e;
    if (ring_open(r->s, req->open_ring->entries, (uint32_t)config.submit_ring_entries, &entries, &results, fds,
                  &e) < 0) {
        reply_err(r, &e);
        return;
    }
    r->fds[0] = fds[0];
    r->fds[1] = fds[1];
    r->nfds = 2;
    Mcefa__RingOpened *ro = reply_alloc(r, sizeof(*ro));
    mcefa__ring_opened__init(ro);
    ro->entries = entries;
    ro->results = results;
    ro->fd_count = 2;
    r->resp.body_case = MCEFA__RESPONSE__BODY_RING_OPENED;
    r->resp.ring_opened = ro;
}
