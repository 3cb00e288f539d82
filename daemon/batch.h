/* Batches: slots in a client's shared completion area, the daemon's own
 * record of each transfer's state and error, and their lifetime. A batch
 * the client freed keeps its slots until no completion can still write
 * them (counted by `users`), so freeing never waits and a late write never
 * lands in a newer batch's slots. */
#ifndef MCEFAD_BATCH_H
#define MCEFAD_BATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "err.h"

/* One transfer inside a batch: it may be split into chunks or RMA ops. */
typedef struct xfer_req {
    uint64_t t0_us;             /* submission, for the latency histogram */
    _Atomic uint32_t remaining; /* pieces not finished */
    _Atomic int32_t err;        /* first piece error */
    char *why;                  /* its explanation, set by whoever set err */
} xfer_req;

typedef struct batch {
    uint64_t id;
    uint32_t first_slot; /* header slot in the completion area */
    uint32_t capacity;
    uint32_t count;      /* transfers submitted so far */
    bool freed;          /* the client let go; slots return once users is 0 */
    _Atomic uint32_t pending; /* transfers not finished */
    _Atomic uint32_t users;   /* finishes that may still write the shared area */
    _Atomic uint32_t *state;  /* daemon's own copy of each transfer's state */
    _Atomic int32_t *err;
    char **err_text;          /* published by the release store of state */
    xfer_req *reqs;
    void *cq;                 /* the completion area */
    _Atomic uint64_t *inflight; /* the owner's count of unfinished transfers */
    SLIST_ENTRY(batch) link;
} batch;

/* A client's batches, sorted by first slot. Loop thread only. */
typedef struct batch_set {
    SLIST_HEAD(, batch) list;
    uint64_t next_id;
    void *cq;
    uint32_t cq_slots;
    _Atomic uint64_t inflight;
} batch_set;

void batch_set_init(batch_set *bs, void *cq, uint32_t cq_slots);
/* A batch of capacity transfers, first fit over the free slots. */
int batch_alloc(batch_set *bs, uint32_t capacity, batch **out, err *e);
/* A live (not freed) batch by id, or NULL. */
batch *batch_find(batch_set *bs, uint64_t id);
/* Frees a batch for the client. With transfers in flight: -EBUSY, unless
 * when_done, which releases it for the client now. */
int batch_free(batch_set *bs, uint64_t id, bool when_done, err *e);
/* Live batches (for status). */
unsigned batch_count(const batch_set *bs);
/* Every batch, at the end of the session (nothing is in flight then). */
void batch_destroy_all(batch_set *bs);

/* Loop thread, before its pieces are queued: transfer idx is pending. */
void batch_begin(batch *b, uint32_t idx, uint64_t t0_us);
/* Records the end of transfer idx (why: owned by the batch now, may be
 * NULL) and wakes the client. Any thread; the last touch of b. */
void batch_finish(batch *b, uint32_t idx, int err, char *why);
/* A piece of transfer idx ended; the last one finishes the transfer. */
void batch_piece_done(batch *b, uint32_t idx, int err, const char *why);
/* Same without waking the client: for a thread that ends a run of pieces
 * and then calls batch_wake once (each wake can be a system call and a
 * context switch in the client). */
void batch_piece_done_quiet(batch *b, uint32_t idx, int err, const char *why);
/* Wakes the client's threads waiting on the completion area cq (the
 * session's, which outlives its batches). */
void batch_wake(void *cq);

#endif
