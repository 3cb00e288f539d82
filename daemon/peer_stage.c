#include "peer_stage.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "ident.h"
#include "peer_auth.h"
#include "peer_internal.h"
#include "peer_link.h"
#include "segment.h"
#include "staging.h"
#include "xfer_stage.h"

/* ---- Sending ------------------------------------------------------------- */

typedef struct sent {
    stage_reply_fn fn;
    void *arg;
    char host[256];
} sent;

static void on_reply(peer_conn *c, void *arg, const Mcefa__PeerFrame *f)
{
    (void)c;
    sent *x = arg;
    /* Only the other daemon answers with a body: without one the link
     * failed (or the deadline passed) and it may still be at work. */
    bool answered = f->body_case == MCEFA__PEER_FRAME__BODY_STAGED_OP;
    char text[400] = "", theirs[300];
    if (f->status < 0) {
        peer_text_clean(theirs, sizeof(theirs), f->error);
        snprintf(text, sizeof(text), "host %s: %s", x->host, theirs[0] ? theirs : "staged transfer failed");
    }
    x->fn(x->arg, f->status < 0 ? f->status : 0, f->status < 0 ? text : NULL, answered);
    free(x);
}

static int send_staged(peer *p, const stage_req *q, stage_reply_fn fn, void *arg)
{
    if (!p->conn)
        return -ENOTCONN;
    sent *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->fn = fn;
    x->arg = arg;
    snprintf(x->host, sizeof(x->host), "%s", p->host);
    uint64_t now = clock_now_ms();
    Mcefa__StagedOp m = MCEFA__STAGED_OP__INIT;
    m.write = q->write;
    m.segment = (char *)q->segment;
    m.addr = q->addr;
    m.length = q->length;
    m.n_rma_addr = m.n_rma_key = q->nnics;
    m.rma_addr = (uint64_t *)q->rma_addr;
    m.rma_key = (uint64_t *)q->rma_key;
    m.nics_absent = q->absent;
    m.nics_preferred = q->preferred;
    m.epoch = q->epoch;
    m.region_id = q->region_id;
    m.deadline_ms = q->deadline_ms > now ? (uint32_t)(q->deadline_ms - now < UINT32_MAX ? q->deadline_ms - now : UINT32_MAX) : 0;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_STAGED_OP;
    f.staged_op = &m;
    int rc = peer_link_request(p->conn, &f, on_reply, x);
    if (rc < 0)
        free(x);
    return rc;
}

/* ---- Serving ------------------------------------------------------------- */

typedef struct serving {
    uint64_t conn_id, seq, length;
    peer *p;
} serving;

/* The answer always carries a StagedOp body: it tells the sender we are
 * done with its memory, error or not. */
static void answer(peer_conn *c, uint64_t seq, uint64_t length, int status, const char *why)
{
    char clean[400] = "";
    if (why)
        peer_text_clean(clean, sizeof(clean), why);
    Mcefa__StagedOp m = MCEFA__STAGED_OP__INIT;
    m.length = length;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.status = status;
    f.error = status < 0 ? clean : (char *)"";
    f.body_case = MCEFA__PEER_FRAME__BODY_STAGED_OP;
    f.staged_op = &m;
    peer_link_send(c, &f);
}

static void served(void *arg, int status, const char *why)
{
    serving *sv = arg;
    sv->p->stage_served--;
    peer_release(sv->p);
    peer_conn *c = peer_link_by_id(sv->conn_id);
    if (c)
        answer(c, sv->seq, sv->length, status, why);
    free(sv);
}

#define refuse(c, seq, len, status, ...)                                                                           \
    do {                                                                                                           \
        char why_[400];                                                                                            \
        snprintf(why_, sizeof(why_), __VA_ARGS__);                                                                 \
        answer(c, seq, len, status, why_);                                                                         \
    } while (0)

static void serve_staged(peer_conn *c, uint64_t seq, const Mcefa__PeerFrame *fr)
{
    const Mcefa__StagedOp *m = fr->staged_op;
    peer *p = peer_link_peer(c);
    uint64_t slot = staging_slot_bytes();
    if (!p)
        return; /* served only after the hello (peer_link_serve) */
    if (!staging_slots()) {
        refuse(c, seq, m->length, -EOPNOTSUPP, "this daemon has no staging buffers (staging_bytes 0)");
        return;
    }
    if (m->length == 0 || m->length > slot || m->addr + m->length < m->addr) {
        refuse(c, seq, m->length, -EINVAL, "staged piece of %" PRIu64 " bytes at 0x%" PRIx64 ": 1 to %" PRIu64
               " bytes (this host's staging_slot_bytes)", m->length, m->addr, slot);
        return;
    }
    if (!m->segment || !*m->segment) {
        refuse(c, seq, m->length, -EINVAL, "staged piece without a segment name");
        return;
    }
    if (m->n_rma_addr != peer_nrnics(p) || m->n_rma_key != peer_nrnics(p)) {
        refuse(c, seq, m->length, -EPROTO, "staged piece names memory on %zu NICs; the sender announced %u",
               m->n_rma_addr, peer_nrnics(p));
        return;
    }
    if (p->stage_served >= 2 * XFER_STAGE_WINDOW) {
        refuse(c, seq, m->length, -EBUSY, "more than %d staged pieces in flight from one host", 2 * XFER_STAGE_WINDOW);
        return;
    }
    segment_entry *e = segment_find(m->segment);
    if (!e || !e->regions) {
        refuse(c, seq, m->length, -ENOENT, "segment '%.200s' not found (its owner left?); open it again", m->segment);
        return;
    }
    region *r = region_table_find(e->regions, m->addr, m->length);
    if (!r || !region_is_staged(r)) {
        refuse(c, seq, m->length, -EFAULT, "0x%" PRIx64 " + %" PRIu64 " is not inside plain host memory or GPU memory "
               "of segment '%.200s'; open the segment again", m->addr, m->length, m->segment);
        return;
    }
    if (m->epoch != ident_epoch() || m->region_id != r->id) {
        refuse(c, seq, m->length, -ESTALE, "segment '%.200s' changed since it was described (%s); open it again",
               m->segment, m->epoch != ident_epoch() ? "this daemon restarted" : "its region was registered anew");
        return;
    }
    if (atomic_load(&r->faulted)) {
        refuse(c, seq, m->length, -EFAULT, "memory 0x%" PRIx64 " of segment '%.200s' faulted in an earlier copy (no "
               "longer mapped in its owner process)", r->addr, m->segment);
        return;
    }
    serving *sv = calloc(1, sizeof(*sv));
    if (!sv) {
        refuse(c, seq, m->length, -ENOMEM, "out of memory");
        return;
    }
    sv->conn_id = peer_link_id(c);
    sv->seq = seq;
    sv->length = m->length;
    sv->p = p;
    /* Never later than our own timeout, whatever the sender asks, and a
     * tenth early: an answer after the sender's link deadline would close
     * the whole connection there. */
    uint64_t left = m->deadline_ms < config.request_timeout_ms ? m->deadline_ms : config.request_timeout_ms;
    left -= left / 10;
    stage_req q = {.write = m->write,
                   .segment = m->segment,
                   .addr = m->addr,
                   .length = m->length,
                   .rma_addr = m->rma_addr,
                   .rma_key = m->rma_key,
                   .nnics = (unsigned)m->n_rma_addr,
                   .absent = m->nics_absent,
                   .preferred = m->nics_preferred,
                   .deadline_ms = clock_now_ms() + left};
    region_ref(r);
    if (xfer_stage_serve(p, r, &q, served, sv) < 0) {
        region_unref(r);
        free(sv);
        refuse(c, seq, m->length, -ENOMEM, "out of memory");
        return;
    }
    p->stage_served++;
    peer_hold(p);
}

void peer_stage_init(void)
{
    xfer_stage_set_sender(send_staged);
    peer_link_serve(MCEFA__PEER_FRAME__BODY_STAGED_OP, serve_staged, false);
}
