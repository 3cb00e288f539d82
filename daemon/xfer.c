#include "xfer.h"
#include "xfer_internal.h"
#include "xfer_stage.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "copypool.h"
#include "gpu.h"
#include "log.h"
#include "nic.h"
#include "nic_worker.h"
#include "plain_import.h"
#include "remote.h"
#include "route.h"
#include "staging.h"
#include "stats.h"

static uint64_t copy_chunk = UINT64_MAX, stripe_threshold = UINT64_MAX, timeout_ms = 10000;

void xfer_init(uint64_t chunk, uint64_t stripe, uint64_t timeout)
{
    copy_chunk = chunk ? chunk : UINT64_MAX;
    stripe_threshold = stripe;
    timeout_ms = timeout;
}

typedef struct xfer_run xfer_run;

typedef struct xfer_chunk {
    copy_job job; /* first: the copy thread hands us back this pointer */
    xfer_run *run;
    batch *b;
    uint32_t idx;
    bool write;
    region *lr, *rr;
    bool own_refs; /* holds lr and rr itself; else its run holds them */
    /* A move (source and destination overlap): one piece at a time, each
     * queueing the next, in the order that never reads a byte an earlier
     * piece wrote (from the end when moving up). */
    char *move_dst;
    const char *move_src;
    uint64_t move_off, move_left, move_piece;
    bool move_up;
} xfer_chunk;

/* A submission's same-host pieces live in one allocation, cut into runs:
 * each run goes to one copy thread whole, holds one session reference and
 * wakes the client once, when its last piece is done. */
typedef struct xfer_local {
    _Atomic uint32_t runs_left;
    xfer_chunk chunks[];
} xfer_local;

struct xfer_run {
    _Atomic uint32_t left; /* pieces not done */
    /* One reference for all its pieces on these: a count per piece, taken
     * on the loop and dropped on two copy threads, was 13% of the daemon. */
    region *lr, *rr;
    uint64_t copied;       /* bytes, counted once per run: a shared counter per piece was 12% of the daemon */
    session *s;
    xfer_local *all;
};

static void (*run_done_hook)(session *s);

void xfer_on_run_done(void (*fn)(session *s))
{
    run_done_hook = fn;
}

static void run_piece_done(xfer_run *run)
{
    if (atomic_fetch_sub_explicit(&run->left, 1, memory_order_acq_rel) != 1)
        return;
    session *s = run->s;
    xfer_local *all = run->all;
    stats_copied(run->copied);
    region_unref(run->lr);
    region_unref(run->rr);
    batch_wake(s->cq);
    if (run_done_hook)
        run_done_hook(s);
    session_unref(s);
    if (atomic_fetch_sub_explicit(&all->runs_left, 1, memory_order_acq_rel) == 1)
        free(all);
}

static void chunk_done(copy_job *job, int err)
{
    xfer_chunk *c = (xfer_chunk *)job;
    batch *b = c->b;
    uint32_t idx = c->idx;
    char why[200] = "";
    if (!err && c->move_left) {
        /* Back into the owner's queue, behind other clients' jobs. A piece
         * finishing after its client died still queues the next one: at
         * most the rest of this one transfer. */
        c->run->copied += job->len;
        uint64_t l = c->move_left < c->move_piece ? c->move_left : c->move_piece;
        c->move_off = c->move_up ? c->move_off - l : c->move_off + job->len;
        c->move_left -= l;
        job->dst = c->move_dst + c->move_off;
        job->src = c->move_src + c->move_off;
        job->len = l;
        copypool_submit(job, job, 1);
        return;
    }
    if (!err) {
        c->run->copied += job->len; /* one thread runs a run's pieces, one after another */
    } else if (err == -EFAULT) {
        /* A write copies from the local region, a read into it. */
        region *bad = job->fault_src == c->write ? c->lr : c->rr;
        atomic_store(&bad->faulted, true);
        snprintf(why, sizeof(why),
                 region_is_plain(bad)
                     ? "plain host memory 0x%" PRIx64 " + %" PRIu64 " is no longer mapped (or not writable) in the "
                       "process that registered it: it was freed or unmapped without being unregistered; unregister "
                       "it and register memory that stays allocated"
                     : "the memory of region 0x%" PRIx64 " + %" PRIu64 " faulted during the copy (its pages went "
                       "away: a hugetlb pool ran out or the memfd was punched); unregister it and register new memory",
                 bad->addr, bad->length);
    } else if ((err == -ESRCH || err == -EPERM) && job->why) {
        region *bad = job->fault_src == c->write ? c->lr : c->rr;
        snprintf(why, sizeof(why), "plain host memory 0x%" PRIx64 " + %" PRIu64 ": %s", bad->addr, bad->length,
                 job->why);
    } else if (err == -ECANCELED) {
        snprintf(why, sizeof(why), "cancelled: the client that submitted it disconnected");
    } else if (err == -EIO && job->why) {
        snprintf(why, sizeof(why), "the GPU copy failed: %s", job->why);
        /* A GPU error can be sticky (the context is then unusable until the
         * daemon restarts): say so in the log, without flooding it. */
        static _Atomic unsigned long gpu_failures;
        unsigned long n = atomic_fetch_add(&gpu_failures, 1) + 1;
        if (n <= 20 || n % 1000 == 0)
            log_error("GPU copy failed (%lu so far): %s; if every GPU copy fails, the GPU context is broken: "
                      "restart mcefad",
                      n, job->why);
    }
    if (c->own_refs) {
        region_unref(c->lr);
        region_unref(c->rr);
    }
    batch_piece_done_quiet(b, idx, err, why[0] ? why : NULL);
    run_piece_done(c->run);
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
    peer_count_op(x->p, op->len, err != 0);
    if (op->rehandshake)
        peer_ask_rehandshake(x->p, op->gen, err);
    batch_piece_done(x->b, x->idx, err, why);
}

static void net_release(net_op *op)
{
    xfer_net *x = (xfer_net *)op;
    region_unref(x->lr);
    session_unref(x->s);
    free(x);
}

/* row[j]: remote NIC j holds rr's registration and shares a fabric with
 * local NIC local. Returns how many remote NICs row covers. */
static unsigned remote_row(peer *p, unsigned local, const remote_region *rr, unsigned nrnics, bool *row)
{
    unsigned nr = peer_nrnics(p);
    if (nr > nrnics)
        nr = nrnics; /* the peer's NIC list grew since the description */
    for (unsigned j = 0; j < nr; j++)
        row[j] = remote_on_nic(rr, j) && peer_pair(p, local, j) != FI_ADDR_NOTAVAIL;
    return nr;
}

unsigned xfer_usable_nics(const region *held, uint64_t near, peer *p, const remote_region *rr, unsigned nrnics,
                          unsigned *out)
{
    unsigned nn = nic_count();
    route_nic rn[NIC_MAX];
    bool row[NIC_MAX];
    for (unsigned i = 0; i < nn; i++) {
        rn[i].near = near >> i & 1;
        rn[i].has_mr = region_on_nic(held, i);
        rn[i].reaches = false;
        for (unsigned j = 0, nr = remote_row(p, i, rr, nrnics, row); j < nr && !rn[i].reaches; j++)
            rn[i].reaches = row[j];
    }
    return route_local(rn, nn, out);
}

int xfer_pick_remote(peer *p, unsigned local, const remote_region *rr, unsigned nrnics)
{
    bool row[NIC_MAX];
    unsigned nr = remote_row(p, local, rr, nrnics, row);
    return route_remote(row, nr, rr->preferred, peer_rr(p));
}

/* Splits transfer idx into RMA ops (striped across NICs when large) and
 * links them onto *head. Returns the number of ops. */
static uint32_t plan_remote(session *s, batch *b, uint32_t idx, const Mcefa__Transfer *t, region *lr,
                            remote_segment *rs, remote_region *rr, const unsigned *use, unsigned nuse, net_op **head)
{
    peer *p = rs->peer;
    uint64_t len = t->length, piece;
    route_stripes(len, stripe_threshold, nuse, &piece);
    uint64_t deadline = clock_now_ms() + timeout_ms;
    uint64_t gen = atomic_load(peer_gen(p));
    uint32_t count = 0;
    unsigned start = route_first(nuse);
    for (uint64_t off = 0, k = 0; off < len; k++) {
        unsigned li = use[(start + k) % nuse];
        nic *n = nic_get(li);
        uint64_t l = len - off < piece ? len - off : piece;
        /* The provider's largest op (efa-direct: the device's RDMA size,
         * which it does not check itself): the rest goes in further ops. */
        if (l > n->max_rma_bytes)
            l = n->max_rma_bytes;
        int j = xfer_pick_remote(p, li, rr, rs->nrnics);
        xfer_net *x = j < 0 ? NULL : calloc(1, sizeof(*x));
        if (!x) {
            /* The pieces already planned still run; the transfer fails. */
            int32_t zero = 0, e = j < 0 ? -ENETUNREACH : -ENOMEM;
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
        x->op.dest = peer_pair(p, li, (unsigned)j);
        x->op.raddr = rr->rma_addr[j] + (t->remote_addr - rr->addr) + off;
        x->op.rkey = rr->rma_key[j];
        x->op.deadline_ms = deadline;
        x->op.peer_gen = peer_gen(p);
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

/* ---- Checking a submission ---------------------------------------------- */

/* Checks [addr, addr+len) against a table: the client's own (segname
 * NULL) or a segment's. The names go into the text only on failure. */
static region *check_range(const region_table *t, uint64_t addr, uint64_t len, const char *segname, size_t i,
                           err *e)
{
    region *r = addr + len < addr ? NULL : region_table_find(t, addr, len);
    if (r)
        return r;
    char whose[300] = "local";
    if (segname)
        snprintf(whose, sizeof(whose), "segment '%s'", segname);
    if (addr + len < addr) {
        err_set(e, -EOVERFLOW, "transfer %zu: %s range 0x%" PRIx64 " + %" PRIu64 " wraps around", i, whose, addr,
                len);
        return NULL;
    }
    region *near = region_table_find_addr(t, addr);
    if (near)
        err_set(e, -EFAULT,
                "transfer %zu: %s range 0x%" PRIx64 " + %" PRIu64 " runs past the end of its registered region "
                "0x%" PRIx64 " + %" PRIu64,
                i, whose, addr, len, near->addr, near->length);
    else
        err_set(e, -EFAULT, "transfer %zu: %s address 0x%" PRIx64 " is not inside any registered region (%s)", i,
                whose, addr, segname ? "check the address the segment's owner advertised" : "register the memory first");
    return NULL;
}

/* What one checked transfer resolved to. */
typedef struct planned {
    region *lr, *rr;       /* local region; same-host target region */
    remote_segment *rseg;  /* remote target */
    remote_region *rreg;
} planned;

static int check_one(session *s, const Mcefa__Transfer *t, size_t i, planned *pl, err *e)
{
    if (t->opcode != MCEFA__OPCODE__OP_READ && t->opcode != MCEFA__OPCODE__OP_WRITE)
        return err_set(e, -EINVAL, "transfer %zu: unknown opcode %d (0 = read, 1 = write)", i, t->opcode);
    open_segment *o = segment_open_find(&s->opens, t->segment);
    if (!o)
        return err_set(e, -EBADF,
                       "transfer %zu: segment handle %" PRIu64 " is not open on this connection (open the segment first)",
                       i, t->segment);
    if (o->remote) {
        remote_segment *rs = pl->rseg = o->remote;
        peer *p = rs->peer;
        if (!peer_connected(p))
            return err_set(e, -ENOTCONN,
                           "transfer %zu: the connection to host %s's daemon is down (%s); open the segment again to "
                           "reconnect",
                           i, peer_host(p), peer_last_error(p)[0] ? peer_last_error(p) : "not connected");
        if (peer_epoch(p) != rs->epoch || peer_layout_gen(p) != rs->layout_gen)
            return err_set(e, -ESTALE,
                           "transfer %zu: host %s's daemon restarted since segment '%s' was opened; open it again", i,
                           peer_host(p), rs->name);
        if (!(pl->lr = check_range(&s->regions, t->local_addr, t->length, NULL, i, e)))
            return e->code;
        if (!(pl->rreg = remote_find(rs, t->remote_addr, t->length)))
            return err_set(e, -EFAULT,
                           "transfer %zu: remote range 0x%" PRIx64 " + %" PRIu64
                           " is not inside a registered region of segment '%s' on host %s",
                           i, t->remote_addr, t->length, rs->name, peer_host(p));
        if (atomic_load(&pl->lr->faulted))
            return err_set(e, -EFAULT,
                           "transfer %zu: local region 0x%" PRIx64 " + %" PRIu64 " faulted in an earlier copy (its "
                           "memory went away); unregister it and register new memory",
                           i, pl->lr->addr, pl->lr->length);
        if (xfer_stage_needed(pl->lr, pl->rreg))
            return xfer_stage_check(pl->lr, rs, pl->rreg, i, e);
        if (!pl->lr->mrs)
            return err_set(e, -EIO, "transfer %zu: the local region is not registered with the NICs", i);
        return 0;
    }
    if (!o->seg->regions)
        return err_set(e, -ENOTCONN,
                       "transfer %zu: segment '%s' is gone (its client disconnected); open it again once it is back",
                       i, o->seg->name);
    if (!(pl->lr = check_range(&s->regions, t->local_addr, t->length, NULL, i, e)))
        return e->code;
    if (!(pl->rr = check_range(o->seg->regions, t->remote_addr, t->length, o->seg->name, i, e)))
        return e->code;
    if (pl->lr->gpu >= 0 && pl->rr->gpu >= 0) {
        /* The driver's copies do not move overlapping ranges. */
        uintptr_t a = (uintptr_t)region_translate(pl->lr, t->local_addr);
        uintptr_t b = (uintptr_t)region_translate(pl->rr, t->remote_addr);
        if (a < b + t->length && b < a + t->length)
            return err_set(e, -EINVAL,
                           "transfer %zu: source and destination overlap in the same GPU memory; overlapping GPU "
                           "copies are not supported",
                           i);
    }
    region *bad = atomic_load(&pl->lr->faulted) ? pl->lr : atomic_load(&pl->rr->faulted) ? pl->rr : NULL;
    if (bad)
        return err_set(e, -EFAULT,
                       "transfer %zu: %s region 0x%" PRIx64 " + %" PRIu64 " faulted in an earlier copy (its memory "
                       "went away); unregister it and register new memory",
                       i, bad == pl->lr ? "local" : "the segment's", bad->addr, bad->length);
    return 0;
}

/* ---- Submitting --------------------------------------------------------- */

/* How transfer t (same host, checked) is cut into copy pieces: chunk bytes
 * each; *move when its ranges overlap (one chain of pieces, see below). */
static uint32_t local_pieces(const Mcefa__Transfer *t, const planned *pl, uint64_t *chunk_out, bool *move_out)
{
    char *local = region_translate(pl->lr, t->local_addr);
    char *remote = region_translate(pl->rr, t->remote_addr);
    /* Overlapping ranges (a move inside one region) are one chain of pieces
     * run one after another (chunk_done), each a memmove: pieces on several
     * threads at once would read bytes another piece already overwrote. */
    uint64_t chunk = copy_chunk;
    /* Addresses compare only within one address space: the daemon's
     * (mapped kinds) or one client process's (plain). */
    plain_proc *lp = plain_region_proc(pl->lr), *rp = plain_region_proc(pl->rr);
    bool move = lp == rp && (uintptr_t)local < (uintptr_t)remote + t->length &&
                (uintptr_t)remote < (uintptr_t)local + t->length;
    /* GPU to GPU is one driver call: the copy engines split it better than
     * threads could, and each piece would pay a wait on its event. */
    if (move || (pl->lr->gpu >= 0 && pl->rr->gpu >= 0))
        chunk = t->length;
    *chunk_out = chunk;
    *move_out = move;
    return (uint32_t)((t->length + chunk - 1) / chunk);
}

/* Fills c[0..pieces) for transfer idx. */
static void plan_local(batch *b, uint32_t idx, const Mcefa__Transfer *t, const planned *pl, xfer_chunk *c)
{
    char *local = region_translate(pl->lr, t->local_addr);
    char *remote = region_translate(pl->rr, t->remote_addr);
    plain_proc *lp = plain_region_proc(pl->lr), *rp = plain_region_proc(pl->rr);
    uint64_t chunk;
    bool move;
    uint32_t pieces = local_pieces(t, pl, &chunk, &move);
    /* A plain move goes through the bounce buffer, so each piece must fit
     * it to read all its bytes before writing any. */
    uint64_t move_piece = lp && copy_chunk > COPYPOOL_BOUNCE_BYTES ? COPYPOOL_BOUNCE_BYTES : copy_chunk;
    atomic_store(&b->reqs[idx].remaining, pieces);
    for (uint64_t off = 0; off < t->length; off += chunk, c++) {
        uint64_t len = t->length - off < chunk ? t->length - off : chunk;
        c->write = t->opcode == MCEFA__OPCODE__OP_WRITE;
        c->b = b;
        c->idx = idx;
        c->lr = pl->lr;
        c->rr = pl->rr;
        if (t->opcode == MCEFA__OPCODE__OP_WRITE) {
            c->job.dst = remote + off;
            c->job.src = local + off;
            c->job.dst_gpu = pl->rr->gpu;
            c->job.src_gpu = pl->lr->gpu;
            c->job.dst_proc = rp;
            c->job.src_proc = lp;
        } else {
            c->job.dst = local + off;
            c->job.src = remote + off;
            c->job.dst_gpu = pl->lr->gpu;
            c->job.src_gpu = pl->rr->gpu;
            c->job.dst_proc = lp;
            c->job.src_proc = rp;
        }
        c->job.len = len;
        c->job.done = chunk_done;
        if (move && t->length > move_piece) {
            c->move_dst = c->job.dst;
            c->move_src = c->job.src;
            c->move_up = (uintptr_t)c->job.dst > (uintptr_t)c->job.src;
            c->job.len = move_piece;
            c->move_piece = move_piece;
            c->move_left = t->length - move_piece;
            c->move_off = c->move_up ? t->length - move_piece : 0;
            c->job.dst = c->move_dst + c->move_off;
            c->job.src = c->move_src + c->move_off;
        }
    }
}

/* Below this a run is not worth a second thread's wake-up. */
#define RUN_MIN_BYTES (64u << 10)
/* Bounds the pieces of one run, as copy_chunk bounds its bytes. */
#define RUN_MAX_PIECES 1024u

/* Cuts the pieces c[0..n) into runs, links them into one chain and queues
 * it: about one run per copy thread, none over copy_chunk bytes; a move
 * chain (it queues its own next piece) is a run alone. */
static void queue_local(session *s, xfer_local *all, xfer_run *runs, uint32_t n, uint64_t bytes)
{
    xfer_chunk *c = all->chunks;
    unsigned threads = copypool_threads();
    uint64_t per_run = (bytes + threads - 1) / (threads ? threads : 1);
    if (per_run < RUN_MIN_BYTES)
        per_run = RUN_MIN_BYTES;
    if (per_run > copy_chunk)
        per_run = copy_chunk;
    uint32_t nruns = 0, in_run = 0;
    uint64_t run_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        xfer_run *r = &runs[nruns];
        if (!in_run) {
            r->s = s;
            r->all = all;
            r->lr = c[i].lr;
            r->rr = c[i].rr;
            region_ref(r->lr);
            region_ref(r->rr);
            session_ref(s);
        }
        c[i].own_refs = c[i].lr != r->lr || c[i].rr != r->rr;
        if (c[i].own_refs) {
            region_ref(c[i].lr);
            region_ref(c[i].rr);
        }
        c[i].run = r;
        c[i].job.owner = s;
        c[i].job.next = i + 1 < n ? &c[i + 1].job : NULL;
        in_run++;
        run_bytes += c[i].job.len;
        bool alone = c[i].move_left || (i + 1 < n && c[i + 1].move_left);
        c[i].job.run_end = i + 1 == n || alone || run_bytes >= per_run || in_run == RUN_MAX_PIECES;
        if (c[i].job.run_end) {
            atomic_init(&r->left, in_run);
            nruns++;
            in_run = 0;
            run_bytes = 0;
        }
    }
    atomic_init(&all->runs_left, nruns);
    copypool_submit(&c[0].job, &c[n - 1].job, n);
}

int xfer_submit(session *s, batch *b, Mcefa__Transfer *const *tv, size_t n, uint32_t *first_out, err *e)
{
    xfer_started st;
    int rc = xfer_plan(s, b, tv, n, first_out, &st, e);
    if (rc == 0)
        xfer_start(&st);
    return rc;
}

void xfer_start(xfer_started *st)
{
    if (st->local)
        queue_local(st->s, st->local, st->runs, st->npieces, st->local_bytes);
    if (st->net)
        nic_submit(st->net);
    xfer_stage_start(st->staged);
}

int xfer_plan(session *s, batch *b, Mcefa__Transfer *const *tv, size_t n, uint32_t *first_out, xfer_started *st,
              err *e)
{
    if (n > b->capacity - b->count)
        return err_set(e, -ENOSPC,
                       "batch %" PRIu64 " holds %u transfers and %u are already submitted; %zu more do not fit "
                       "(allocate a larger batch)",
                       b->id, b->capacity, b->count, n);
    if (n == 0)
        return err_set(e, -EINVAL, "empty submission to batch %" PRIu64 ": give at least one transfer", b->id);
    /* Validate everything first: a rejected submission moves no byte. */
    planned *pl = calloc(n, sizeof(*pl));
    if (!pl)
        return err_set(e, -ENOMEM, "out of memory checking a submission of %zu transfers", n);
    for (size_t i = 0; i < n; i++)
        if (check_one(s, tv[i], i, &pl[i], e) < 0) {
            free(pl);
            return e->code;
        }

    /* Every same-host piece of the submission in one allocation. */
    uint64_t npieces = 0, local_bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (tv[i]->length && !pl[i].rreg) {
            uint64_t chunk;
            bool move;
            npieces += local_pieces(tv[i], &pl[i], &chunk, &move);
            local_bytes += tv[i]->length;
        }
    xfer_local *all = NULL;
    xfer_run *runs = NULL;
    if (npieces) {
        uint64_t size = sizeof(xfer_local) + npieces * (sizeof(xfer_chunk) + sizeof(xfer_run));
        all = npieces < UINT32_MAX && size < SIZE_MAX / 2 ? calloc(1, (size_t)size) : NULL;
        runs = all ? (xfer_run *)(all->chunks + npieces) : NULL;
    }

    uint32_t first = b->count;
    uint64_t t0 = clock_now_us();
    uint32_t used = 0;
    net_op *net_head = NULL;
    stage_piece *staged = NULL;
    for (size_t i = 0; i < n; i++) {
        const Mcefa__Transfer *t = tv[i];
        uint32_t idx = first + (uint32_t)i;
        batch_begin(b, idx, t0);
        if (t->length == 0) {
            batch_finish(b, idx, 0, NULL);
            continue;
        }
        if (!pl[i].rreg) {
            uint64_t chunk;
            bool move;
            uint32_t pieces = local_pieces(t, &pl[i], &chunk, &move);
            if (all) {
                plan_local(b, idx, t, &pl[i], all->chunks + used);
                used += pieces;
            } else {
                batch_finish(b, idx, -ENOMEM, strdup("out of memory planning the copies"));
            }
            continue;
        }
        remote_segment *rs = pl[i].rseg;
        if (xfer_stage_needed(pl[i].lr, pl[i].rreg)) {
            xfer_stage_submit(s, b, idx, t, pl[i].lr, rs, pl[i].rreg, false, &staged);
            continue;
        }
        unsigned use[NIC_MAX], nuse = xfer_usable_nics(pl[i].lr, pl[i].lr->near, rs->peer, pl[i].rreg, rs->nrnics, use);
        /* GPU memory lives on its own NICs only; where none of them
         * reaches the peer (NICs on several fabrics), its bytes go through
         * the staging slots, which every NIC holds. */
        if (!nuse && pl[i].lr->gpu >= 0 && staging_slots()) {
            xfer_stage_submit(s, b, idx, t, pl[i].lr, rs, pl[i].rreg, true, &staged);
            continue;
        }
        /* Ops are queued only after the loop, so remaining can be set once
         * they are all planned. */
        uint32_t pieces = nuse ? plan_remote(s, b, idx, t, pl[i].lr, rs, pl[i].rreg, use, nuse, &net_head) : 0;
        if (!pieces) {
            char *why = strdup(nuse ? "out of memory"
                                    : "no local NIC holding the local region shares a fabric with a NIC of the "
                                      "peer holding the remote region (see mcefactl nics and peers)");
            batch_finish(b, idx, nuse ? -ENOMEM : -ENETUNREACH, why);
            continue;
        }
        atomic_store(&b->reqs[idx].remaining, pieces);
    }
    free(pl);
    b->count += (uint32_t)n;
    *st = (xfer_started){s, all, runs, used, local_bytes, net_head, staged};
    *first_out = first;
    return 0;
}
