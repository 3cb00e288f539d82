/* Transfer planning: the bounds check of every request of a submission
 * before anything moves, then same-host copies to the copy pool and
 * remote transfers as RMA ops (NICs chosen by route.c) to the NIC workers. */
#ifndef MCEFAD_XFER_H
#define MCEFAD_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "err.h"
#include "mcefa.pb-c.h"
#include "session.h"

/* Called on the copy thread when a run of s's same-host copies finished
 * (ring.c's ring_work_done: main.c composes them). */
void xfer_on_run_done(void (*fn)(session *s));
/* Settings the planner uses, given at start. */
void xfer_init(uint64_t copy_chunk_bytes, uint64_t stripe_threshold, uint64_t request_timeout_ms);

/* A checked and planned submission whose work is not queued yet. */
typedef struct xfer_started {
    session *s;
    struct xfer_local *local;
    struct xfer_run *runs;
    uint32_t npieces;
    uint64_t local_bytes;
    struct net_op *net;
    struct stage_piece *staged;
} xfer_started;

/* Submits n transfers of s into batch b. On error nothing was started. */
int xfer_submit(session *s, batch *b, Mcefa__Transfer *const *t, size_t n, uint32_t *first, err *e);
/* The same in two steps: check and plan (the transfers are pending from
 * here), then queue the work to the threads. Between them the caller
 * answers: woken copy threads can take both cores of a small host before
 * the loop gets to its answer. */
int xfer_plan(session *s, batch *b, Mcefa__Transfer *const *t, size_t n, uint32_t *first, xfer_started *out,
              err *e);
void xfer_start(xfer_started *st);

#endif
