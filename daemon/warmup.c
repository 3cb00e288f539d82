#include "warmup.h"

#include <errno.h>
#include <rdma/fi_domain.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "nic_worker.h"
#include "peer_link.h"

static uv_loop_t *loop;
static uint64_t timeout_ms;

void warmup_init(uv_loop_t *l, uint64_t request_timeout_ms)
{
    loop = l;
    timeout_ms = request_timeout_ms;
}

/* The request (loop thread) and its ops (NIC workers) live apart: the
 * client is answered once every op has reported (completion, error or
 * deadline); the ops' memory goes with the last release, which after a
 * timeout can come much later. Both are sized to the real NIC counts. */
typedef struct warm_result {
    unsigned i, j;
    int err;
    char why[200];
} warm_result;

typedef struct warm_req {
    peer *p;
    peer_warmup_cb cb;
    void *arg;
    uint64_t gen;
    uv_async_t async;
    _Atomic unsigned reports_left;
    unsigned total;
    int err;
    char why[300];
    warm_result *res;
} warm_req;

typedef struct warm_ops warm_ops;
typedef struct warm_op {
    net_op op; /* first */
    warm_ops *owner;
    warm_req *req;
    unsigned k;
} warm_op;

struct warm_ops {
    _Atomic unsigned releases_left;
    unsigned nlocal;
    uint64_t *sink;   /* one word per op */
    nic_mr *sink_mr;  /* per local NIC */
    warm_op *ops;
};

static void ops_free(warm_ops *ops)
{
    for (unsigned i = 0; i < ops->nlocal; i++)
        nic_mr_close(&ops->sink_mr[i]);
    free(ops->sink);
    free(ops->sink_mr);
    free(ops->ops);
    free(ops);
}

static void warm_closed(uv_handle_t *h)
{
    warm_req *w = h->data;
    free(w->res);
    free(w);
}

static void warm_finish(warm_req *w)
{
    peer *p = w->p;
    for (unsigned k = 0; k < w->total; k++) {
        if (w->res[k].err) {
            if (!w->err) {
                w->err = w->res[k].err;
                snprintf(w->why, sizeof(w->why), "%s", w->res[k].why);
            }
        } else if (atomic_load(&p->gen) == w->gen && w->res[k].i < p->nlocal && w->res[k].j < p->nrnics) {
            *peer_warm_slot(p, w->res[k].i, w->res[k].j) = true;
        }
    }
    w->cb(w->arg, w->err, w->err ? w->why : NULL, peer_pairs_warm(p));
    peer_release(p);
    uv_close((uv_handle_t *)&w->async, warm_closed);
}

static void warm_async(uv_async_t *a)
{
    warm_finish(a->data);
}

/* Worker thread. After the last report the loop may free w at once. */
static void warm_done(net_op *op, int err, const char *why)
{
    warm_op *o = (warm_op *)op;
    warm_req *w = o->req;
    if (op->rehandshake)
        peer_ask_rehandshake(w->p, op->gen, err);
    w->res[o->k].err = err;
    if (why)
        snprintf(w->res[o->k].why, sizeof(w->res[o->k].why), "%s", why);
    if (atomic_fetch_sub(&w->reports_left, 1) == 1)
        uv_async_send(&w->async);
}

static void warm_release(net_op *op)
{
    warm_ops *ops = ((warm_op *)op)->owner;
    if (atomic_fetch_sub(&ops->releases_left, 1) == 1)
        ops_free(ops);
}

static int fail(warm_req *w, int code, const char *why)
{
    w->err = code;
    snprintf(w->why, sizeof(w->why), "%s", why);
    /* Through the async handle: the caller never sees cb run early. */
    atomic_store(&w->reports_left, 0);
    uv_async_send(&w->async);
    return code;
}

static void warmup_when_up(void *arg, int status, const char *why)
{
    warm_req *w = arg;
    peer *p = w->p;
    if (status < 0) {
        fail(w, status, why);
        return;
    }
    unsigned nl = nic_count(), nr = p->nrnics, want = 0;
    for (unsigned i = 0; i < nl; i++)
        for (unsigned j = 0; j < nr; j++)
            want += *peer_pair_slot(p, i, j) != FI_ADDR_NOTAVAIL && !*peer_warm_slot(p, i, j);
    if (!want) {
        warm_finish(w);
        return;
    }
    warm_ops *ops = calloc(1, sizeof(*ops));
    if (ops) {
        ops->nlocal = nl;
        ops->sink = calloc(want, sizeof(*ops->sink));
        ops->sink_mr = calloc(nl, sizeof(*ops->sink_mr));
        ops->ops = calloc(want, sizeof(*ops->ops));
    }
    w->res = calloc(want, sizeof(*w->res));
    if (!ops || !ops->sink || !ops->sink_mr || !ops->ops || !w->res) {
        if (ops)
            ops_free(ops);
        fail(w, -ENOMEM, "out of memory");
        return;
    }
    w->gen = atomic_load(&p->gen);
    net_op *head = NULL;
    uint64_t deadline = clock_now_ms() + timeout_ms;
    /* One sink registration per NIC covers all of its ops' words. */
    nic_mem sink = {.addr = ops->sink, .len = want * sizeof(uint64_t)};
    for (unsigned i = 0; i < nl; i++) {
        nic *n = nic_get(i);
        bool any = false;
        for (unsigned j = 0; j < nr; j++)
            any |= *peer_pair_slot(p, i, j) != FI_ADDR_NOTAVAIL && !*peer_warm_slot(p, i, j);
        if (!any)
            continue;
        err e;
        if (nic_mr_reg(n, &sink, FI_READ, &ops->sink_mr[i], &e) < 0) {
            w->err = -EIO;
            snprintf(w->why, sizeof(w->why), "NIC %s: cannot register the warmup buffer", n->name);
            continue;
        }
        for (unsigned j = 0; j < nr; j++) {
            if (*peer_pair_slot(p, i, j) == FI_ADDR_NOTAVAIL || *peer_warm_slot(p, i, j))
                continue;
            unsigned k = w->total++;
            warm_op *o = &ops->ops[k];
            o->owner = ops;
            o->req = w;
            o->k = k;
            w->res[k].i = i;
            w->res[k].j = j;
            o->op.nic = n;
            o->op.write = 0;
            o->op.local = &ops->sink[k];
            o->op.desc = ops->sink_mr[i].desc;
            o->op.len = sizeof(uint64_t);
            o->op.dest = *peer_pair_slot(p, i, j);
            o->op.raddr = p->rnic[j].warmup_addr;
            o->op.rkey = p->rnic[j].warmup_key;
            o->op.deadline_ms = deadline;
            o->op.peer_gen = &p->gen;
            o->op.gen = w->gen;
            o->op.done = warm_done;
            o->op.release = warm_release;
            o->op.next = head;
            head = &o->op;
        }
    }
    if (!w->total) {
        ops_free(ops);
        warm_finish(w);
        return;
    }
    atomic_store(&w->reports_left, w->total);
    atomic_store(&ops->releases_left, w->total);
    nic_submit(head);
}

void peer_warmup(peer *p, peer_warmup_cb cb, void *arg)
{
    warm_req *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("out of memory starting a warmup; exiting");
        abort();
    }
    w->p = p;
    w->cb = cb;
    w->arg = arg;
    peer_hold(p);
    uv_async_init(loop, &w->async, warm_async);
    w->async.data = w;
    peer_when_up(p, warmup_when_up, w);
}
