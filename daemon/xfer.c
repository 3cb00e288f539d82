/* Batches and transfers: slot allocation in the completion area, the bounds
 * check of every request before anything moves, splitting into copy jobs,
 * and completion reporting. */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "local.h"
#include "log.h"
#include "nic.h"
#include "peer.h"
#include "shm/completion.h"

typedef struct xfer_chunk {
    local_job job; /* first: the copy thread hands us back this pointer */
    session *s;
    batch *b;
    uint32_t idx;
    region *lr, *rr;
} xfer_chunk;

static batch *find_batch(session *s, uint64_t id)
{
    for (batch *b = s->batches; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

static void batch_destroy(batch *b)
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

void xfer_alloc_batch(session *s, const Mcefa__AllocBatch *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    uint32_t cap = m->capacity;
    if (cap == 0 || cap >= s->cq_slots) {
        rpc_fail(ctx, resp, -EINVAL, "batch capacity %u is out of range: it must be 1..%u (completion_slots - 1)",
                 cap, s->cq_slots - 1);
        return;
    }
    /* First fit over the batches, which are kept sorted by first slot. */
    uint32_t need = cap + 1, start = 0;
    batch **pp = &s->batches;
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->first_slot - start >= need)
            break;
        start = (*pp)->first_slot + (*pp)->capacity + 1;
    }
    if (!*pp && s->cq_slots - start < need) {
        rpc_fail(ctx, resp, -ENOSPC,
                 "no room for a batch of %u transfers: the %u completion slots are taken by allocated batches; "
                 "free finished batches (or raise completion_slots)",
                 cap, s->cq_slots);
        return;
    }
    batch *b = calloc(1, sizeof(*b));
    if (b) {
        b->state = calloc(cap, sizeof(*b->state));
        b->err = calloc(cap, sizeof(*b->err));
        b->reqs = calloc(cap, sizeof(*b->reqs));
        b->err_text = calloc(cap, sizeof(*b->err_text));
    }
    if (!b || !b->state || !b->err || !b->reqs || !b->err_text) {
        if (b)
            batch_destroy(b);
        rpc_fail(ctx, resp, -ENOMEM, "out of memory allocating a batch of %u transfers", cap);
        return;
    }
    b->id = s->next_batch_id++;
    b->first_slot = start;
    b->capacity = cap;
    b->next = *pp;
    *pp = b;
    memset(shm_cq_slots(s->cq) + start, 0, (size_t)need * sizeof(shm_cq_slot));

    Mcefa__BatchAllocated *ba = rpc_alloc(ctx, sizeof(*ba));
    mcefa__batch_allocated__init(ba);
    ba->batch_id = b->id;
    ba->first_slot = b->first_slot;
    ba->capacity = cap;
    resp->body_case = MCEFA__RESPONSE__BODY_BATCH_ALLOCATED;
    resp->batch_allocated = ba;
}

void xfer_free_batch(session *s, const Mcefa__FreeBatch *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    batch **pp = &s->batches;
    while (*pp && (*pp)->id != m->batch_id)
        pp = &(*pp)->next;
    if (!*pp) {
        rpc_fail(ctx, resp, -ENOENT, "batch %" PRIu64 " is not allocated on this connection (freed twice?)",
                 m->batch_id);
        return;
    }
    batch *b = *pp;
    uint32_t pending = atomic_load_explicit(&b->pending, memory_order_acquire);
    if (pending) {
        rpc_fail(ctx, resp, -EBUSY, "batch %" PRIu64 " still has %u transfers in flight; wait for them first",
                 b->id, pending);
        return;
    }
    /* A completion between its count and its shared-memory write takes
     * nanoseconds: wait it out rather than refuse the client. */
    while (atomic_load_explicit(&b->finishing, memory_order_acquire))
        sched_yield();
    *pp = b->next;
    batch_destroy(b);
}

void xfer_destroy_batches(session *s)
{
    for (batch *b = s->batches, *nb; b; b = nb) {
        nb = b->next;
        batch_destroy(b);
    }
    s->batches = NULL;
}

/* Records the end of transfer idx and wakes the client. Any thread. */
static void finish(session *s, batch *b, uint32_t idx, int err, char *why)
{
    uint32_t hdr = b->first_slot;
    daemon_record_latency(daemon_now_us() - b->reqs[idx].t0_us);
    b->err[idx] = err;
    free(b->err_text[idx]);
    b->err_text[idx] = why; /* owned by the batch now */
    atomic_store_explicit(&b->state[idx], err ? MCEFA_STATE_FAILED : MCEFA_STATE_COMPLETED, memory_order_release);
    atomic_fetch_add_explicit(err ? &mcefad.transfers_failed : &mcefad.transfers_completed, 1,
                              memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
    /* The daemon's count drops before the client is told, so a client that
     * frees the batch as soon as it sees it done is never refused; FreeBatch
     * then waits out `finishing` so that this late write cannot land in
     * slots already given to a new batch. */
    atomic_fetch_add_explicit(&b->finishing, 1, memory_order_acq_rel);
    atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel);
    shm_cq_complete(s->cq, hdr, hdr + 1 + idx, err);
    atomic_fetch_sub_explicit(&b->finishing, 1, memory_order_release); /* last touch of b */
}

static void chunk_done(local_job *job, int err)
{
    xfer_chunk *c = (xfer_chunk *)job;
    session *s = c->s;
    batch *b = c->b;
    uint32_t idx = c->idx;
    if (!err)
        atomic_fetch_add_explicit(&mcefad.bytes_copied, job->len, memory_order_relaxed);
    region_unref(c->lr);
    region_unref(c->rr);
    free(c);
    xfer_req *r = &b->reqs[idx];
    if (err) {
        int32_t zero = 0;
        atomic_compare_exchange_strong(&r->err, &zero, err);
    }
    if (atomic_fetch_sub_explicit(&r->remaining, 1, memory_order_acq_rel) == 1)
        finish(s, b, idx, atomic_load(&r->err), NULL);
    session_unref(s);
}

/* ---- Remote transfers: RMA ops on the NIC workers ----------------------- */

typedef struct xfer_net {
    net_op op; /* first: the worker hands us back this pointer */
    peer *p;
    session *s;
    batch *b;
    uint32_t idx;
    region *lr;
} xfer_net;

static void net_done(net_op *op, int err, const char *why)
{
    xfer_net *x = (xfer_net *)op;
    batch *b = x->b;
    xfer_req *r = &b->reqs[x->idx];
    atomic_fetch_add_explicit(&x->p->ops, 1, memory_order_relaxed);
    if (!err)
        atomic_fetch_add_explicit(&x->p->bytes, op->len, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&x->p->errors, 1, memory_order_relaxed);
    if (err) {
        int32_t zero = 0;
        if (atomic_compare_exchange_strong(&r->err, &zero, err) && why)
            r->why = strdup(why);
    }
    if (atomic_fetch_sub_explicit(&r->remaining, 1, memory_order_acq_rel) == 1) {
        char *w = r->why;
        r->why = NULL;
        finish(x->s, b, x->idx, atomic_load(&r->err), w);
    }
}

static void net_release(net_op *op)
{
    xfer_net *x = (xfer_net *)op;
    region_unref(x->lr);
    session_unref(x->s);
    free(x);
}

static remote_region *remote_find(const remote_segment *rs, uint64_t addr, uint64_t len)
{
    size_t lo = 0, hi = rs->nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rs->regions[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    remote_region *r = &rs->regions[lo - 1];
    if (addr - r->addr >= r->length || len > r->length - (addr - r->addr))
        return NULL;
    return r;
}

/* Local NICs that can reach the peer, NUMA-local to the buffer first. */
static unsigned usable_nics(const region *lr, peer *p, unsigned *out)
{
    unsigned cand[NIC_MAX], n = nic_choose(lr->numa_node, cand, NIC_MAX), k = 0;
    for (unsigned c = 0; c < n; c++)
        for (unsigned j = 0; j < p->nrnics; j++)
            if (p->fiaddr[cand[c]][j] != FI_ADDR_NOTAVAIL) {
                out[k++] = cand[c];
                break;
            }
    if (k == 0 && lr->numa_node >= 0) {
        /* No NUMA-local NIC reaches the peer: any NIC that does. */
        for (unsigned i = 0; i < nnics; i++)
            for (unsigned j = 0; j < p->nrnics; j++)
                if (p->fiaddr[i][j] != FI_ADDR_NOTAVAIL) {
                    out[k++] = i;
                    break;
                }
    }
    return k;
}

/* Splits transfer idx into RMA ops (striped across NICs when large) and
 * links them onto *head. Returns the number of ops. */
static uint32_t plan_remote(session *s, batch *b, uint32_t idx, const Mcefa__Transfer *t, region *lr,
                            remote_segment *rs, remote_region *rr, const unsigned *use, unsigned nuse, net_op **head)
{
    static unsigned rr_nic;
    peer *p = rs->peer;
    uint64_t len = t->length;
    unsigned pieces = len > mcefad.cfg.stripe_threshold && nuse > 1 ? nuse : 1;
    uint64_t piece = pieces > 1 ? ((len + pieces - 1) / pieces + 4095) / 4096 * 4096 : len;
    uint64_t deadline = nic_now_ms() + mcefad.cfg.request_timeout_ms;
    uint64_t gen = atomic_load(&p->gen);
    uint32_t count = 0;
    unsigned start = rr_nic++;
    for (uint64_t off = 0, k = 0; off < len; k++) {
        unsigned li = use[(start + k) % nuse];
        nic *n = nics[li];
        uint64_t l = len - off < piece ? len - off : piece;
        if (l > n->max_msg)
            l = n->max_msg;
        int j = peer_pick_remote(p, li);
        if (j >= (int)rs->nrnics)
            j = -1; /* the peer's NIC list changed since the description */
        xfer_net *x = calloc(1, sizeof(*x));
        if (!x || j < 0) {
            /* The pieces already planned still run; the transfer fails. */
            int32_t zero = 0, e = x ? -ENETUNREACH : -ENOMEM;
            free(x);
            atomic_compare_exchange_strong(&b->reqs[idx].err, &zero, e);
            break;
        }
        x->p = p;
        x->s = s;
        x->b = b;
        x->idx = idx;
        x->lr = lr;
        region_ref(lr);
        session_ref(s);
        x->op.nic = n;
        x->op.write = t->opcode == MCEFA__OPCODE__OP_WRITE;
        x->op.local = (char *)region_translate(lr, t->local_addr) + off;
        x->op.desc = lr->mrs[li].desc;
        x->op.len = l;
        x->op.dest = p->fiaddr[li][j];
        x->op.raddr = rr->rma_addr[j] + (t->remote_addr - rr->addr) + off;
        x->op.rkey = rr->rma_key[j];
        x->op.deadline_ms = deadline;
        x->op.peer_gen = &p->gen;
        x->op.gen = gen;
        x->op.done = net_done;
        x->op.release = net_release;
        x->op.next = *head;
        *head = &x->op;
        count++;
        off += l;
    }
    return count;
}

/* Checks [addr, addr+len) against a table: the client's own (segname
 * NULL) or a segment's. The names go into the text only on failure. */
static region *check_range(const region_table *t, uint64_t addr, uint64_t len, const char *segname, uint32_t i,
                           rpc_ctx *ctx, Mcefa__Response *resp)
{
    region *r = addr + len < addr ? NULL : region_table_find(t, addr, len);
    if (r)
        return r;
    char whose[300] = "local";
    if (segname)
        snprintf(whose, sizeof(whose), "segment '%s'", segname);
    if (addr + len < addr) {
        rpc_fail(ctx, resp, -EOVERFLOW, "transfer %u: %s range 0x%" PRIx64 " + %" PRIu64 " wraps around", i, whose,
                 addr, len);
        return NULL;
    }
    region *near = region_table_find_addr(t, addr);
    if (near)
        rpc_fail(ctx, resp, -EFAULT,
                 "transfer %u: %s range 0x%" PRIx64 " + %" PRIu64 " runs past the end of its registered region "
                 "0x%" PRIx64 " + %" PRIu64,
                 i, whose, addr, len, near->addr, near->length);
    else
        rpc_fail(ctx, resp, -EFAULT, "transfer %u: %s address 0x%" PRIx64 " is not inside any registered region (%s)",
                 i, whose, addr,
                 segname ? "check the address the segment's owner advertised" : "register the memory first");
    return NULL;
}

void xfer_submit(session *s, const Mcefa__SubmitBatch *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    batch *b = find_batch(s, m->batch_id);
    if (!b) {
        rpc_fail(ctx, resp, -ENOENT, "batch %" PRIu64 " is not allocated on this connection", m->batch_id);
        return;
    }
    size_t n = m->n_transfers;
    if (n > b->capacity - b->count) {
        rpc_fail(ctx, resp, -ENOSPC,
                 "batch %" PRIu64 " holds %u transfers and %u are already submitted; %zu more do not fit "
                 "(allocate a larger batch)",
                 b->id, b->capacity, b->count, n);
        return;
    }
    if (n == 0) {
        rpc_fail(ctx, resp, -EINVAL, "empty submission to batch %" PRIu64 ": give at least one transfer", b->id);
        return;
    }
    /* Validate everything first: a rejected submission moves no byte. */
    region **lr = rpc_alloc(ctx, n * sizeof(*lr));
    region **rr = rpc_alloc(ctx, n * sizeof(*rr));
    remote_region **rreg = rpc_alloc(ctx, n * sizeof(*rreg));
    remote_segment **rseg = rpc_alloc(ctx, n * sizeof(*rseg));
    uint64_t chunk = mcefad.cfg.copy_chunk_bytes ? mcefad.cfg.copy_chunk_bytes : UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const Mcefa__Transfer *t = m->transfers[i];
        if (t->opcode != MCEFA__OPCODE__OP_READ && t->opcode != MCEFA__OPCODE__OP_WRITE) {
            rpc_fail(ctx, resp, -EINVAL, "transfer %zu: unknown opcode %d (0 = read, 1 = write)", i, t->opcode);
            return;
        }
        open_segment *o = segment_open_find(s, t->segment);
        if (!o) {
            rpc_fail(ctx, resp, -EBADF, "transfer %zu: segment handle %" PRIu64
                                        " is not open on this connection (open the segment first)",
                     i, t->segment);
            return;
        }
        if (o->remote) {
            remote_segment *rs = rseg[i] = o->remote;
            peer *p = rs->peer;
            if (!p->conn) {
                rpc_fail(ctx, resp, -ENOTCONN,
                         "transfer %zu: the connection to host %s's daemon is down (%s); open the segment again "
                         "to reconnect",
                         i, p->host, p->last_error[0] ? p->last_error : "not connected");
                return;
            }
            if (p->epoch != rs->epoch || p->layout_gen != rs->layout_gen) {
                rpc_fail(ctx, resp, -ESTALE,
                         "transfer %zu: host %s's daemon restarted since segment '%s' was opened; open it again", i,
                         p->host, rs->name);
                return;
            }
            if (!(lr[i] = check_range(&s->regions, t->local_addr, t->length, NULL, (uint32_t)i, ctx, resp)))
                return;
            if (t->remote_addr + t->length < t->remote_addr || !(rreg[i] = remote_find(rs, t->remote_addr, t->length))) {
                rpc_fail(ctx, resp, -EFAULT,
                         "transfer %zu: remote range 0x%" PRIx64 " + %" PRIu64
                         " is not inside a registered region of segment '%s' on host %s",
                         i, t->remote_addr, t->length, rs->name, p->host);
                return;
            }
            if (!lr[i]->mrs) {
                rpc_fail(ctx, resp, -EIO, "transfer %zu: the local region is not registered with the NICs", i);
                return;
            }
            continue;
        }
        if (!o->seg->owner) {
            rpc_fail(ctx, resp, -ENOTCONN,
                     "transfer %zu: segment '%s' is gone (its client disconnected); open it again once it is back",
                     i, o->seg->name);
            return;
        }
        if (!(lr[i] = check_range(&s->regions, t->local_addr, t->length, NULL, (uint32_t)i, ctx, resp)))
            return;
        if (!(rr[i] = check_range(&o->seg->owner->regions, t->remote_addr, t->length, o->seg->name, (uint32_t)i, ctx,
                                  resp)))
            return;
    }

    uint32_t first = b->count;
    uint64_t t0 = daemon_now_us();
    for (size_t i = 0; i < n; i++)
        b->reqs[first + i].t0_us = t0;
    xfer_chunk *head = NULL, *tail = NULL;
    size_t njobs = 0;
    net_op *net_head = NULL;
    for (size_t i = 0; i < n; i++) {
        const Mcefa__Transfer *t = m->transfers[i];
        uint32_t idx = first + (uint32_t)i;
        shm_cq_slot *slot = shm_cq_slots(s->cq) + b->first_slot + 1 + idx;
        atomic_store_explicit(&slot->state, MCEFA_STATE_PENDING, memory_order_relaxed);
        atomic_store_explicit(&b->state[idx], MCEFA_STATE_PENDING, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->pending, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
        if (t->length == 0) {
            finish(s, b, idx, 0, NULL);
            continue;
        }
        if (rreg[i]) {
            remote_segment *rs = rseg[i];
            unsigned use[NIC_MAX], nuse = usable_nics(lr[i], rs->peer, use);
            uint32_t pieces = 0;
            if (nuse) {
                /* Ops are queued only after the loop, so remaining can be
                 * set once they are all planned. */
                atomic_store(&b->reqs[idx].err, 0);
                pieces = plan_remote(s, b, idx, t, lr[i], rs, rreg[i], use, nuse, &net_head);
            }
            if (!pieces) {
                char *why = strdup(nuse ? "out of memory" : "no local NIC shares a fabric with the peer's NICs");
                finish(s, b, idx, nuse ? -ENOMEM : -ENETUNREACH, why);
                continue;
            }
            atomic_store(&b->reqs[idx].remaining, pieces);
            continue;
        }
        uint32_t pieces = (uint32_t)((t->length + chunk - 1) / chunk);
        atomic_store(&b->reqs[idx].remaining, pieces);
        atomic_store(&b->reqs[idx].err, 0);
        char *local = region_translate(lr[i], t->local_addr);
        char *remote = region_translate(rr[i], t->remote_addr);
        for (uint64_t off = 0; off < t->length; off += chunk) {
            xfer_chunk *c = calloc(1, sizeof(*c));
            if (!c) {
                /* Count the pieces we will never queue as failed so the
                 * transfer still completes (with ENOMEM). */
                uint32_t left = (uint32_t)((t->length - off + chunk - 1) / chunk);
                int32_t zero = 0;
                atomic_compare_exchange_strong(&b->reqs[idx].err, &zero, -ENOMEM);
                if (atomic_fetch_sub(&b->reqs[idx].remaining, left) == left)
                    finish(s, b, idx, -ENOMEM, NULL);
                break;
            }
            uint64_t len = t->length - off < chunk ? t->length - off : chunk;
            c->s = s;
            c->b = b;
            c->idx = idx;
            c->lr = lr[i];
            c->rr = rr[i];
            region_ref(c->lr);
            region_ref(c->rr);
            session_ref(s);
            if (t->opcode == MCEFA__OPCODE__OP_WRITE) {
                c->job.dst = remote + off;
                c->job.src = local + off;
            } else {
                c->job.dst = local + off;
                c->job.src = remote + off;
            }
            c->job.len = len;
            c->job.done = chunk_done;
            if (tail)
                tail->job.next = &c->job;
            else
                head = c;
            tail = c;
            njobs++;
        }
    }
    b->count += (uint32_t)n;
    if (head)
        local_submit(&head->job, &tail->job, njobs);
    if (net_head)
        nic_submit(net_head);
    Mcefa__BatchSubmitted *bs = rpc_alloc(ctx, sizeof(*bs));
    mcefa__batch_submitted__init(bs);
    bs->first_index = first;
    resp->body_case = MCEFA__RESPONSE__BODY_BATCH_SUBMITTED;
    resp->batch_submitted = bs;
}

void xfer_batch_status(session *s, const Mcefa__BatchStatusQuery *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    batch *b = find_batch(s, m->batch_id);
    if (!b) {
        rpc_fail(ctx, resp, -ENOENT, "batch %" PRIu64 " is not allocated on this connection", m->batch_id);
        return;
    }
    Mcefa__BatchStatus *bs = rpc_alloc(ctx, sizeof(*bs));
    mcefa__batch_status__init(bs);
    bs->n_transfers = b->count;
    bs->transfers = rpc_alloc(ctx, b->count * sizeof(*bs->transfers) + 1);
    for (uint32_t i = 0; i < b->count; i++) {
        Mcefa__TransferStatus *ts = rpc_alloc(ctx, sizeof(*ts));
        mcefa__transfer_status__init(ts);
        ts->state = atomic_load_explicit(&b->state[i], memory_order_acquire);
        ts->error = b->err[i];
        if (ts->state == MCEFA_STATE_FAILED) {
            char *txt = rpc_alloc(ctx, 600);
            snprintf(txt, 600, "transfer %u failed: %s", i, b->err_text[i] ? b->err_text[i] : strerror(-ts->error));
            ts->error_text = txt;
        }
        bs->transfers[i] = ts;
    }
    resp->body_case = MCEFA__RESPONSE__BODY_BATCH_STATUS;
    resp->batch_status = bs;
}
