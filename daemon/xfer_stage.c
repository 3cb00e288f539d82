#include "xfer_stage.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "copypool.h"
#include "defer.h"
#include "nic.h"
#include "nic_worker.h"
#include "plain_import.h"
#include "route.h"
#include "staging.h"
#include "xfer_internal.h"


static uv_loop_t *loop;
static uint64_t timeout_ms = 10000;
static stage_send_fn sender;

/* Served pieces waiting for a slot, for the sweep that answers those whose
 * deadline passes meanwhile (an answer after the sender's own deadline
 * would close its whole peer link). Any thread, under serve_lock. */
static pthread_mutex_t serve_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, serve_piece) serve_waiting = LIST_HEAD_INITIALIZER(serve_waiting);
static uv_timer_t sweep;
static bool sweep_on;
#define SWEEP_MS 100

static void sweep_waiting(uv_timer_t *t);

void xfer_stage_init(uv_loop_t *l, uint64_t timeout)
{
    loop = l;
    timeout_ms = timeout;
    uv_timer_init(loop, &sweep);
    uv_unref((uv_handle_t *)&sweep);
    uv_timer_start(&sweep, sweep_waiting, SWEEP_MS, SWEEP_MS);
    sweep_on = true;
}

void xfer_stage_set_sender(stage_send_fn fn)
{
    sender = fn;
}

/* The largest piece every local NIC carries in one op. */
static uint64_t nic_max_piece(uint64_t want)
{
    for (unsigned i = 0; i < nic_count(); i++)
        if (nic_get(i)->max_rma_bytes < want)
            want = nic_get(i)->max_rma_bytes;
    return want;
}

/* What a failed copy of client memory means, for the text a user reads. */
static void copy_text(char *out, size_t n, const char *whose, const region *r, uint64_t addr, const copy_job *j,
                      int err)
{
    if (err == -ECANCELED)
        snprintf(out, n, "%s memory at 0x%" PRIx64 ": cancelled: the client disconnected", whose, addr);
    else if (r->gpu >= 0)
        snprintf(out, n, "%s GPU memory at 0x%" PRIx64 ": the GPU copy failed: %s", whose, addr,
                 j->why ? j->why : strerror(-err));
    else
        snprintf(out, n, "%s plain host memory at 0x%" PRIx64 ": %s", whose, addr, plain_copy_error(err));
}

/* One side of a copy job: client memory of r at client address a, however
 * the daemon reaches it (its mapping, a GPU, another process). */
static void copy_side(const region *r, uint64_t a, void **ptr, int *gpu, plain_proc **proc)
{
    *ptr = region_translate(r, a);
    *gpu = r->gpu;
    *proc = plain_region_proc(r);
}

/* What every RMA step of a piece records when the provider reports. */
static void note_op(peer *p, const net_op *op, int err, const char *why, int *xerr, char *xwhy, size_t n)
{
    peer_count_op(p, op->len, err != 0);
    if (op->rehandshake)
        peer_ask_rehandshake(p, op->gen, err);
    if (err) {
        *xerr = err;
        snprintf(xwhy, n, "%s", why ? why : "RMA failed");
    }
}

/* One RMA between staging slot `slot` (on local NIC li) and the other
 * host, queued to the NIC's worker. */
typedef struct slot_rma {
    nic *n;
    unsigned li;
    bool write;
    int slot;
    size_t len;
    fi_addr_t dest;
    uint64_t raddr, rkey, deadline_ms, gen;
    peer *p;
} slot_rma;

static void post_slot(net_op *op, const slot_rma *r, net_op_done_fn done, void (*release)(net_op *))
{
    memset(op, 0, sizeof(*op));
    op->nic = r->n;
    op->write = r->write;
    op->local = staging_ptr((unsigned)r->slot);
    op->desc = staging_region()->mrs[r->li].desc;
    op->len = r->len;
    op->dest = r->dest;
    op->raddr = r->raddr;
    op->rkey = r->rkey;
    op->deadline_ms = r->deadline_ms;
    op->peer_gen = peer_gen(r->p);
    op->gen = r->gen;
    op->done = done;
    op->release = release;
    nic_submit(op);
}

/* ---- Pieces of this host's transfers ------------------------------------- */

/* A transfer through staging: its chunks (a slot each) are taken in order
 * by at most XFER_STAGE_PIECES pieces, each moving one chunk at a time, so
 * a transfer of any size holds a bounded amount of daemon memory. */
typedef struct stage_xfer {
    _Atomic int refs;      /* its pieces */
    _Atomic uint32_t next; /* the next chunk no piece has taken */
    uint32_t nchunks;
    uint64_t chunk, length;
    uint64_t laddr, taddr; /* the transfer's first byte, here and there */
    char *segment;         /* exchange: the target segment's name */
} stage_xfer;

struct stage_piece {
    stage_wait wait;
    copy_job job;
    net_op op;
    defer_item later;
    uv_timer_t hold; /* keeps our memory back after an unanswered exchange */
    stage_piece *next; /* planned, not yet started */
    stage_xfer *xf;
    uint32_t k; /* its chunk now */
    uint64_t rbase; /* local staging: RMA address of the transfer's first byte on its remote NIC */
    session *s;
    batch *b;
    uint32_t idx;
    bool write;
    bool exchange; /* the remote region is staged: a StagedOp request */
    bool via_slot; /* our side goes through a slot too (lr is staged, or its NICs reach no NIC of the peer) */
    region *lr;    /* the client's region (a reference) */
    uint64_t laddr, len;
    int slot;      /* our staging slot, -1 none */
    peer *p;
    /* Local staging: the RMA target chosen when planned. */
    nic *n;
    unsigned li;
    fi_addr_t dest;
    uint64_t raddr, rkey;
    /* Exchange: the target in the other host's segment. */
    char *segment;
    uint64_t taddr, epoch, region_id;
    uint64_t deadline_ms;
    uint64_t gen; /* the peer's generation when planned: dest and rkey are of it */
    int err;
    char why[300];
    TAILQ_ENTRY(stage_piece) link; /* waiting for its peer's window, or held back */
};

static TAILQ_HEAD(, stage_piece) window_wait = TAILQ_HEAD_INITIALIZER(window_wait);
static TAILQ_HEAD(, stage_piece) held = TAILQ_HEAD_INITIALIZER(held);

static void xf_unref(stage_xfer *xf)
{
    if (atomic_fetch_sub(&xf->refs, 1) == 1) {
        free(xf->segment);
        free(xf);
    }
}

/* Lets go of what the piece holds; the session last, as it holds the batch. */
static void piece_release(stage_piece *x)
{
    session *s = x->s;
    if (x->slot >= 0)
        staging_put((unsigned)x->slot);
    x->slot = -1;
    region_unref(x->lr);
    xf_unref(x->xf);
    free(x);
    session_unref(s);
}

/* Points x at chunk k of its transfer. */
static void piece_chunk(stage_piece *x, uint32_t k)
{
    stage_xfer *xf = x->xf;
    uint64_t off = (uint64_t)k * xf->chunk;
    x->k = k;
    x->laddr = xf->laddr + off;
    x->len = xf->length - off < xf->chunk ? xf->length - off : xf->chunk;
    x->taddr = xf->taddr + off;
    x->raddr = x->rbase + off;
    x->err = 0;
    x->why[0] = 0;
}

static void piece_start(stage_piece *x);

/* Any thread: x's chunk is over. Reports it; on success x takes the next
 * chunk nobody took, on failure every chunk nobody took fails with it (in
 * this loop: a failing transfer never recurses chunk by chunk). keep: x
 * stays (its memory kept back), the caller frees it later. */
static void chunk_end(stage_piece *x, int err, const char *why, bool keep)
{
    char text[sizeof(x->why)] = "";
    if (why)
        snprintf(text, sizeof(text), "%s", why);
    stage_xfer *xf = x->xf;
    batch *b = x->b;
    uint32_t idx = x->idx;
    session *s = x->s;
    session_ref(s); /* the batch outlives piece_release */
    const char *w = err && text[0] ? text : NULL;
    uint32_t n = xf->nchunks; /* xf may go with x */
    uint32_t k = err ? atomic_exchange(&xf->next, n) : atomic_fetch_add(&xf->next, 1);
    if (err || k >= n) {
        if (!keep)
            piece_release(x);
        batch_piece_done(b, idx, err, w);
        for (; err && k < n; k++)
            batch_piece_done(b, idx, err, w);
    } else {
        if (x->slot >= 0)
            staging_put((unsigned)x->slot); /* behind whoever waits for one */
        x->slot = -1;
        batch_piece_done(b, idx, 0, NULL);
        piece_chunk(x, k);
        piece_start(x);
    }
    session_unref(s);
}

static void piece_end(stage_piece *x, int err, const char *why)
{
    chunk_end(x, err, why, false);
}

static void copied_out(copy_job *job, int err)
{
    stage_piece *x = container_of(job, stage_piece, job);
    if (err)
        copy_text(x->why, sizeof(x->why), "local", x->lr, x->laddr, job, err);
    piece_end(x, err, x->why);
}

/* Read pieces: our slot into the client's plain memory. */
static void copy_out(stage_piece *x)
{
    copy_job *j = &x->job;
    memset(j, 0, sizeof(*j));
    j->owner = x->s;
    j->src = staging_ptr((unsigned)x->slot);
    j->src_gpu = -1;
    copy_side(x->lr, x->laddr, &j->dst, &j->dst_gpu, &j->dst_proc);
    j->len = x->len;
    j->done = copied_out;
    copypool_submit(j, j, 1);
}

static void op_done(net_op *op, int err, const char *why)
{
    stage_piece *x = container_of(op, stage_piece, op);
    note_op(x->p, op, err, why, &x->err, x->why, sizeof(x->why));
}

/* The provider let go of the slot: only now may it be reused or read. */
static void op_release(net_op *op)
{
    stage_piece *x = container_of(op, stage_piece, op);
    if (x->err)
        piece_end(x, x->err, x->why);
    else if (x->write)
        piece_end(x, 0, NULL);
    else
        copy_out(x);
}

static void post(stage_piece *x)
{
    slot_rma r = {.n = x->n, .li = x->li, .write = x->write, .slot = x->slot, .len = x->len, .dest = x->dest,
                  .raddr = x->raddr, .rkey = x->rkey, .deadline_ms = x->deadline_ms, .gen = x->gen, .p = x->p};
    post_slot(&x->op, &r, op_done, op_release);
}

static bool send_piece(stage_piece *x);

static void send_later(defer_item *it)
{
    send_piece(container_of(it, stage_piece, later));
}

static void copied_in(copy_job *job, int err)
{
    stage_piece *x = container_of(job, stage_piece, job);
    if (err) {
        copy_text(x->why, sizeof(x->why), "local", x->lr, x->laddr, job, err);
        piece_end(x, err, x->why);
    } else if (x->exchange) {
        defer_from_thread(&x->later, send_later);
    } else {
        post(x);
    }
}

/* Work not started yet is dropped when its client left or its time ran
 * out: a queue of stale pieces must not hold up everyone behind it. */
static bool stale(stage_piece *x)
{
    if (atomic_load(&x->s->gone)) {
        piece_end(x, -ECANCELED, "cancelled: the client that submitted it disconnected");
        return true;
    }
    if (clock_now_ms() >= x->deadline_ms) {
        piece_end(x, -ETIMEDOUT, "timed out waiting for a staging buffer or for the peer's request window");
        return true;
    }
    return false;
}

static void slot_ready(stage_wait *w, unsigned slot)
{
    stage_piece *x = container_of(w, stage_piece, wait);
    x->slot = (int)slot;
    if (stale(x))
        return;
    if (x->write) {
        /* Write pieces: the client's plain memory into our slot first. */
        copy_job *j = &x->job;
        memset(j, 0, sizeof(*j));
        j->owner = x->s;
        void *src;
        copy_side(x->lr, x->laddr, &src, &j->src_gpu, &j->src_proc);
        j->src = src;
        j->dst = staging_ptr(slot);
        j->dst_gpu = -1;
        j->len = x->len;
        j->done = copied_in;
        copypool_submit(j, j, 1);
    } else if (x->exchange) {
        defer_from_thread(&x->later, send_later);
    } else {
        post(x);
    }
}

/* A request to p finished: the next piece waiting for p's window goes.
 * Pieces that end instead (stale, or the link is down) are passed over in
 * this loop, never by recursion: thousands may be waiting. */
static void piece_cancel(stage_wait *w)
{
    piece_end(container_of(w, stage_piece, wait), -ECANCELED, "the daemon is stopping");
}

static void kick(peer *p)
{
    for (stage_piece *x = TAILQ_FIRST(&window_wait), *next; x; x = next) {
        next = TAILQ_NEXT(x, link);
        if (x->p != p)
            continue;
        TAILQ_REMOVE(&window_wait, x, link);
        if (send_piece(x))
            return;
    }
}

static void hold_closed(uv_handle_t *h)
{
    stage_piece *x = h->data;
    TAILQ_REMOVE(&held, x, link);
    piece_release(x);
}

static void hold_over(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, hold_closed);
}

static void on_reply(void *arg, int status, const char *why, bool answered)
{
    stage_piece *x = arg;
    unsigned *w = peer_stage_window(x->p);
    (*w)--;
    kick(x->p);
    if (status < 0 && !answered) {
        /* The other daemon may still be working on this piece: its NIC
         * could yet reach our memory, so the memory stays ours (slot and
         * region held) for one request timeout; the transfer fails now. */
        chunk_end(x, status, why, true);
        x->hold.data = x;
        uv_timer_init(loop, &x->hold);
        uv_unref((uv_handle_t *)&x->hold);
        uv_timer_start(&x->hold, hold_over, timeout_ms, 0);
        TAILQ_INSERT_TAIL(&held, x, link);
        return;
    }
    if (status < 0)
        piece_end(x, status, why);
    else if (!x->write && x->slot >= 0)
        copy_out(x);
    else
        piece_end(x, 0, NULL);
}

/* Loop thread: one StagedOp request for x, when its peer's window has
 * room. false: x ended instead (stale, or not sent). */
static bool send_piece(stage_piece *x)
{
    unsigned *w = peer_stage_window(x->p);
    if (stale(x))
        return false;
    if (*w >= XFER_STAGE_WINDOW) {
        TAILQ_INSERT_TAIL(&window_wait, x, link);
        return true;
    }
    /* The memory the other NIC reaches: our slot, or the client's region. */
    const region *m = x->slot >= 0 ? staging_region() : x->lr;
    uint64_t off = x->slot >= 0 ? (uint64_t)x->slot * staging_slot_bytes() : x->laddr - x->lr->addr;
    unsigned nn = nic_count();
    uint64_t addrs[NIC_MAX], keys[NIC_MAX], absent = 0;
    for (unsigned k = 0; k < nn; k++) {
        addrs[k] = keys[k] = 0;
        if (region_on_nic(m, k)) {
            addrs[k] = m->mrs[k].rma_base + off;
            keys[k] = m->mrs[k].key;
        } else {
            absent |= 1ull << k;
        }
    }
    stage_req q = {.write = x->write,
                   .segment = x->segment,
                   .addr = x->taddr,
                   .length = x->len,
                   .rma_addr = addrs,
                   .rma_key = keys,
                   .nnics = nn,
                   .absent = absent,
                   .preferred = x->slot >= 0 ? 0 : x->lr->near, /* slots: no NIC is nearer */
                   .deadline_ms = x->deadline_ms,
                   .epoch = x->epoch,
                   .region_id = x->region_id};
    (*w)++;
    if (!sender || sender(x->p, &q, on_reply, x) < 0) {
        (*w)--;
        snprintf(x->why, sizeof(x->why), "the connection to host %s's daemon is down (%s); open the segment again",
                 peer_host(x->p), peer_last_error(x->p)[0] ? peer_last_error(x->p) : "not connected");
        piece_end(x, -ENOTCONN, x->why);
        return false;
    }
    return true;
}

bool xfer_stage_needed(const region *lr, const remote_region *rr)
{
    return rr->staged || region_is_staged(lr);
}

int xfer_stage_check(const region *lr, const remote_segment *rs, const remote_region *rr, size_t i, err *e)
{
    peer *p = rs->peer;
    if (rr->staged && !peer_staging_slot(p))
        return err_set(e, -EOPNOTSUPP,
                       "transfer %zu: the target range of segment '%s' is plain host memory on host %s, which that "
                       "host's daemon reaches only through staging buffers, and it has none (staging_bytes 0 there); "
                       "its owner should register memory from allocate_managed_buffer / mcefa_alloc, or its operator "
                       "set staging_bytes",
                       i, rs->name, peer_host(p));
    if (region_is_staged(lr) && !staging_slots())
        return err_set(e, -EOPNOTSUPP,
                       "transfer %zu: local range 0x%" PRIx64 " is %s, which reaches other hosts only through this "
                       "daemon's staging buffers, and it has none (staging_bytes 0, or no NIC); set staging_bytes%s",
                       i, lr->addr, lr->gpu >= 0 ? "GPU memory" : "plain host memory",
                       lr->gpu >= 0 ? "" : ", or register memory from allocate_managed_buffer / mcefa_alloc");
    if (!region_is_staged(lr) && !lr->mrs)
        return err_set(e, -EIO, "transfer %zu: the local region is not registered with the NICs", i);
    return 0;
}

/* Any thread: x's chunk begins (a request goes from the loop). */
static void piece_start(stage_piece *x)
{
    if (x->exchange && !x->via_slot) {
        defer_from_thread(&x->later, send_later);
    } else {
        x->wait.ready = slot_ready;
        x->wait.cancel = piece_cancel;
        staging_get(&x->wait, STAGE_SEND);
    }
}

/* Loop thread: starts planned pieces (after the batch counted them). */
void xfer_stage_start(stage_piece *x)
{
    while (x) {
        stage_piece *next = x->next;
        x->next = NULL;
        piece_start(x);
        x = next;
    }
}

uint32_t xfer_stage_submit(session *s, batch *b, uint32_t idx, const Mcefa__Transfer *t, region *lr,
                           remote_segment *rs, remote_region *rr, bool via_slot, stage_piece **chain)
{
    peer *p = rs->peer;
    bool exchange = rr->staged, plain = via_slot || region_is_staged(lr);
    uint64_t chunk = exchange ? peer_staging_slot(p) : staging_slot_bytes();
    if (exchange && plain && staging_slot_bytes() < chunk)
        chunk = staging_slot_bytes();
    chunk = nic_max_piece(chunk);
    /* Chunks are counted in 32 bits (and by the batch): bound them. */
    if ((t->length - 1) / chunk >= XFER_STAGE_MAX_PIECES) {
        char why[300];
        snprintf(why, sizeof(why), "a transfer through staging buffers moves at most %" PRIu64 " bytes (%u pieces of "
                 "%" PRIu64 " bytes); split it into smaller transfers", (uint64_t)XFER_STAGE_MAX_PIECES * chunk,
                 XFER_STAGE_MAX_PIECES, chunk);
        batch_finish(b, idx, -E2BIG, strdup(why));
        return 0;
    }
    unsigned use[NIC_MAX], nuse = 0;
    if (!exchange && !(nuse = xfer_usable_nics(staging_region(), 0, p, rr, rs->nrnics, use))) {
        batch_finish(b, idx, -ENETUNREACH,
                     strdup("no local NIC shares a fabric with a NIC of the peer holding the remote region (see "
                            "mcefactl nics and peers)"));
        return 0;
    }
    uint64_t deadline = clock_now_ms() + timeout_ms;
    unsigned start = nuse ? route_first(nuse) : 0;
    uint32_t nchunks = (uint32_t)((t->length + chunk - 1) / chunk);
    uint32_t npieces = nchunks < XFER_STAGE_PIECES ? nchunks : XFER_STAGE_PIECES;
    stage_xfer *xf = calloc(1, sizeof(*xf));
    if (!xf || (exchange && !(xf->segment = strdup(rs->name)))) {
        free(xf);
        batch_finish(b, idx, -ENOMEM, strdup("out of memory"));
        return 0;
    }
    xf->nchunks = nchunks;
    xf->chunk = chunk;
    xf->length = t->length;
    xf->laddr = t->local_addr;
    xf->taddr = t->remote_addr;
    atomic_init(&xf->next, npieces);
    atomic_init(&xf->refs, 1); /* ours while planning */
    stage_piece *first = NULL, **tail = &first;
    uint32_t n = 0;
    int fail = 0;
    for (uint32_t k = 0; k < npieces; k++) {
        stage_piece *x = calloc(1, sizeof(*x));
        if (!x) {
            fail = -ENOMEM;
            break;
        }
        x->xf = xf;
        x->s = s;
        x->b = b;
        x->idx = idx;
        x->write = t->opcode == MCEFA__OPCODE__OP_WRITE;
        x->exchange = exchange;
        x->via_slot = plain;
        x->lr = lr;
        x->slot = -1;
        x->p = p;
        x->deadline_ms = deadline;
        x->gen = atomic_load(peer_gen(p));
        if (exchange) {
            x->epoch = rs->epoch;
            x->region_id = rr->region_id;
            x->segment = xf->segment;
        } else {
            /* Each piece keeps one NIC pair for all its chunks. */
            unsigned li = use[(start + k) % nuse];
            int j = xfer_pick_remote(p, li, rr, rs->nrnics);
            if (j < 0) {
                free(x);
                fail = -ENETUNREACH;
                break;
            }
            x->li = li;
            x->n = nic_get(li);
            x->dest = peer_pair(p, li, (unsigned)j);
            x->rbase = rr->rma_addr[j] + (t->remote_addr - rr->addr);
            x->rkey = rr->rma_key[j];
        }
        piece_chunk(x, k);
        atomic_fetch_add(&xf->refs, 1);
        region_ref(lr);
        session_ref(s);
        *tail = x;
        tail = &x->next;
        n++;
    }
    if (fail) {
        while (first) {
            stage_piece *next = first->next;
            region_unref(first->lr);
            session_unref(first->s);
            atomic_fetch_sub(&xf->refs, 1);
            free(first);
            first = next;
        }
        xf_unref(xf);
        batch_finish(b, idx, fail, strdup(fail == -ENOMEM ? "out of memory" : "no NIC pair reaches the peer"));
        return 0;
    }
    xf_unref(xf); /* the pieces hold it now */
    n = nchunks;
    atomic_store(&b->reqs[idx].remaining, n);
    *tail = *chain;
    *chain = first;
    return n;
}

static void free_closed(uv_handle_t *h)
{
    free(h->data);
}

void xfer_stage_shutdown(void)
{
    if (sweep_on)
        uv_close((uv_handle_t *)&sweep, NULL);
    sweep_on = false;
    staging_cancel_waiters();
    while (!TAILQ_EMPTY(&window_wait)) {
        stage_piece *x = TAILQ_FIRST(&window_wait);
        TAILQ_REMOVE(&window_wait, x, link);
        piece_end(x, -ECANCELED, "the daemon is stopping");
    }
    /* Held pieces let go of their memory now (the NICs are stopped); the
     * timer's memory goes when the loop closes the handle. */
    while (!TAILQ_EMPTY(&held)) {
        stage_piece *x = TAILQ_FIRST(&held);
        TAILQ_REMOVE(&held, x, link);
        uv_timer_stop(&x->hold);
        session *s = x->s;
        if (x->slot >= 0)
            staging_put((unsigned)x->slot);
        x->slot = -1;
        region_unref(x->lr);
        xf_unref(x->xf);
        x->xf = NULL;
        uv_close((uv_handle_t *)&x->hold, free_closed);
        session_unref(s);
    }
}

/* ---- Serving other hosts' requests --------------------------------------- */

typedef struct serve_piece {
    stage_wait wait;
    LIST_ENTRY(serve_piece) waiting; /* in serve_waiting until it has a slot */
    bool listed;
    copy_job job;
    net_op op;
    defer_item later;
    peer *p;
    region *r;
    bool write;
    uint64_t addr, len;
    int slot;
    nic *n;
    unsigned li;
    fi_addr_t dest;
    uint64_t raddr, rkey;
    uint64_t deadline_ms;
    uint64_t gen; /* the peer's generation when the request came */
    int err;
    char why[300];
    stage_served_fn done;
    void *arg;
} serve_piece;

static void serve_reply(defer_item *it)
{
    serve_piece *sp = container_of(it, serve_piece, later);
    sp->done(sp->arg, sp->err, sp->err ? sp->why : NULL);
    region_unref(sp->r);
    free(sp);
}

/* Any thread: the piece is over and our NIC and copies let go of it. */
static void serve_end(serve_piece *sp, int err, const char *why)
{
    if (sp->slot >= 0)
        staging_put((unsigned)sp->slot);
    sp->slot = -1;
    sp->err = err;
    if (err && why != sp->why)
        snprintf(sp->why, sizeof(sp->why), "%s", why ? why : "failed");
    defer_from_thread(&sp->later, serve_reply);
}

static void serve_copied(copy_job *job, int err);

static void serve_copy(serve_piece *sp, bool into_client)
{
    copy_job *j = &sp->job;
    memset(j, 0, sizeof(*j));
    j->owner = sp->p;
    j->src_gpu = j->dst_gpu = -1;
    j->len = sp->len;
    if (into_client) {
        j->src = staging_ptr((unsigned)sp->slot);
        copy_side(sp->r, sp->addr, &j->dst, &j->dst_gpu, &j->dst_proc);
    } else {
        void *src;
        copy_side(sp->r, sp->addr, &src, &j->src_gpu, &j->src_proc);
        j->src = src;
        j->dst = staging_ptr((unsigned)sp->slot);
    }
    j->done = serve_copied;
    copypool_submit(j, j, 1);
}

static void serve_op_done(net_op *op, int err, const char *why)
{
    serve_piece *sp = container_of(op, serve_piece, op);
    note_op(sp->p, op, err, why, &sp->err, sp->why, sizeof(sp->why));
}

static void serve_op_release(net_op *op)
{
    serve_piece *sp = container_of(op, serve_piece, op);
    if (sp->err)
        serve_end(sp, sp->err, sp->why);
    else if (sp->write)
        serve_copy(sp, true); /* the sender's bytes are in our slot */
    else
        serve_end(sp, 0, NULL);
}

static void serve_post(serve_piece *sp)
{
    /* A write into our segment reads the sender's memory. */
    slot_rma r = {.n = sp->n, .li = sp->li, .write = !sp->write, .slot = sp->slot, .len = sp->len,
                  .dest = sp->dest, .raddr = sp->raddr, .rkey = sp->rkey, .deadline_ms = sp->deadline_ms,
                  .gen = sp->gen, .p = sp->p};
    post_slot(&sp->op, &r, serve_op_done, serve_op_release);
}

static void serve_copied(copy_job *job, int err)
{
    serve_piece *sp = container_of(job, serve_piece, job);
    if (err) {
        if (err == -EFAULT)
            atomic_store(&sp->r->faulted, true);
        copy_text(sp->why, sizeof(sp->why), "the segment's", sp->r, sp->addr, job, err);
        serve_end(sp, err, sp->why);
    } else if (sp->write) {
        serve_end(sp, 0, NULL);
    } else {
        serve_post(sp); /* our client's bytes are in the slot: out to the sender */
    }
}

static void unlist(serve_piece *sp)
{
    pthread_mutex_lock(&serve_lock);
    if (sp->listed)
        LIST_REMOVE(sp, waiting);
    sp->listed = false;
    pthread_mutex_unlock(&serve_lock);
}

static void serve_slot(stage_wait *w, unsigned slot)
{
    serve_piece *sp = container_of(w, serve_piece, wait);
    unlist(sp);
    sp->slot = (int)slot;
    if (clock_now_ms() >= sp->deadline_ms)
        serve_end(sp, -ETIMEDOUT, "its deadline passed while it waited for a staging buffer");
    else if (sp->write)
        serve_post(sp);
    else
        serve_copy(sp, false);
}

static void serve_cancel(stage_wait *w)
{
    serve_piece *sp = container_of(w, serve_piece, wait);
    unlist(sp);
    serve_end(sp, -ECANCELED, "the daemon is stopping");
}

/* Loop thread, every SWEEP_MS: served pieces still waiting for a slot past
 * their deadline are answered now, not when a slot comes. */
static void sweep_waiting(uv_timer_t *t)
{
    (void)t;
    uint64_t now = clock_now_ms();
    for (;;) {
        serve_piece *due = NULL;
        pthread_mutex_lock(&serve_lock);
        serve_piece *sp;
        LIST_FOREACH(sp, &serve_waiting, waiting)
            if (now >= sp->deadline_ms && staging_cancel(&sp->wait, STAGE_SERVE)) {
                LIST_REMOVE(sp, waiting);
                sp->listed = false;
                due = sp;
                break;
            }
        pthread_mutex_unlock(&serve_lock);
        if (!due)
            return;
        serve_end(due, -ETIMEDOUT, "its deadline passed while it waited for a staging buffer on this host");
    }
}

static void serve_fail_later(defer_item *it)
{
    serve_reply(it);
}

int xfer_stage_serve(peer *p, region *r, const stage_req *q, stage_served_fn done, void *arg)
{
    serve_piece *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    sp->p = p;
    sp->r = r;
    sp->write = q->write;
    sp->addr = q->addr;
    sp->len = q->length;
    sp->slot = -1;
    sp->deadline_ms = q->deadline_ms;
    sp->gen = atomic_load(peer_gen(p));
    sp->done = done;
    sp->arg = arg;
    remote_region sender_mem = {.rma_addr = (uint64_t *)q->rma_addr, .rma_key = (uint64_t *)q->rma_key,
                                .absent = q->absent, .preferred = q->preferred};
    unsigned use[NIC_MAX], nuse = xfer_usable_nics(staging_region(), 0, p, &sender_mem, q->nnics, use);
    sp->li = nuse ? use[route_first(nuse)] : 0;
    int j = nuse ? xfer_pick_remote(p, sp->li, &sender_mem, q->nnics) : -1;
    if (j < 0) {
        /* Answered on the next turn: done never runs inside this call. */
        sp->err = -ENETUNREACH;
        snprintf(sp->why, sizeof(sp->why), "no NIC of this host reaches a NIC of the sender that holds its memory");
        defer_call(&sp->later, serve_fail_later);
        return 0;
    }
    sp->n = nic_get(sp->li);
    sp->dest = peer_pair(p, sp->li, (unsigned)j);
    sp->raddr = q->rma_addr[j];
    sp->rkey = q->rma_key[j];
    sp->wait.ready = serve_slot;
    sp->wait.cancel = serve_cancel;
    pthread_mutex_lock(&serve_lock);
    LIST_INSERT_HEAD(&serve_waiting, sp, waiting);
    sp->listed = true;
    pthread_mutex_unlock(&serve_lock);
    staging_get(&sp->wait, STAGE_SERVE);
    return 0;
}
