/* NIC workers: post up to each NIC's cap (per destination when one
 * refuses work), poll completions, enforce deadlines; poll without pause
 * while any op is live, and sleep on the CQ wait fds (or nap) only when
 * idle. */
#include "nic_worker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "nic_dest.h"
#include "nic_errors.h"

/* A NIC as one worker drives it. */
typedef struct nic_lane {
    nic *n;
    nic_op_list pend; /* not tried yet, oldest first */
    nic_dests dests;
    uint64_t dest_cap; /* most ops one destination may hold posted */
    uint64_t last_err_log_ms;
} nic_lane;

typedef struct nic_worker {
    unsigned idx;
    pthread_t thread;
    pthread_mutex_t lock;
    net_op *qhead, *qtail; /* from other threads */
    _Atomic bool queued;   /* qhead is set: the lock is taken only then */
    _Atomic bool stop;
    int evfd;
    nic_lane lanes[NIC_MAX];
    unsigned nlanes;
    /* Worker-only state below. */
    uint64_t live;  /* ops taken and not yet reported: polling never pauses */
    net_op posted;  /* sentinel of the posted ops, oldest first */
} nic_worker;

static nic_worker *workers;
static unsigned nworkers;
static uint64_t spin_us;

/* Posted ops sit on a list, oldest first, for deadline checks. */
static void posted_add(nic_worker *w, net_op *op)
{
    op->pnext = &w->posted;
    op->pprev = w->posted.pprev;
    op->pprev->pnext = op;
    w->posted.pprev = op;
}

static void posted_del(net_op *op)
{
    op->pprev->pnext = op->pnext;
    op->pnext->pprev = op->pprev;
}

/* ---- Posting and completions -------------------------------------------- */

static int post(nic *n, net_op *op)
{
    struct iovec iov = {.iov_base = op->local, .iov_len = op->len};
    struct fi_rma_iov rma = {.addr = op->raddr, .len = op->len, .key = op->rkey};
    void *desc = op->desc;
    struct fi_msg_rma msg = {.msg_iov = &iov,
                             .desc = &desc,
                             .iov_count = 1,
                             .addr = op->dest,
                             .rma_iov = &rma,
                             .rma_iov_count = 1,
                             .context = &op->ctx};
    if (op->write)
        return (int)fi_writemsg(n->ep, &msg, FI_COMPLETION | (n->delivery_complete ? FI_DELIVERY_COMPLETE : 0));
    return (int)fi_readmsg(n->ep, &msg, FI_COMPLETION);
}

/* Marks op finished for its transfer; the op itself lives on until the
 * provider is done with it (release). */
static void op_report(nic_worker *w, net_op *op, int err, const char *why)
{
    if (op->deadline_ms == UINT64_MAX)
        return; /* already reported (timed out earlier) */
    op->deadline_ms = UINT64_MAX;
    w->live--;
    op->done(op, err, why);
}

/* An op that never reached the provider: reported and let go at once. */
static void op_fail(nic_worker *w, nic_lane *l, net_op *op, int err, const char *why)
{
    char buf[480];
    snprintf(buf, sizeof(buf), "NIC %s: %s", l->n->name, why);
    op_report(w, op, err, buf);
    op->release(op);
}

/* The provider let go of op (completion or error). */
static void op_retire(nic_lane *l, net_op *op)
{
    posted_del(op);
    atomic_fetch_sub(&l->n->outstanding, 1);
    nic_dest *d = op->dstate;
    if (d) {
        d->posted--;
        nic_dest_put(&l->dests, d);
    }
}

static void report_cq_error(nic_worker *w, nic_lane *l, const struct fi_cq_err_entry *e)
{
    nic *n = l->n;
    net_op *op = (net_op *)e->op_context;
    char buf[256], what[400], why[480];
    const char *txt = fi_cq_strerror(n->cq, e->prov_errno, e->err_data, buf, sizeof(buf));
    nic_errors_cq in = {.err = e->err, .prov_errno = e->prov_errno, .provider = n->provider, .prov_text = txt};
    nic_errors_verdict v;
    nic_errors_map(&in, &v, what, sizeof(what));
    snprintf(why, sizeof(why), "NIC %s: RMA %s failed: %s", n->name, op && op->write ? "write" : "read", what);
    atomic_fetch_add(&n->errors, 1);
    /* One line a second per NIC: a lost peer fails every op in flight. */
    uint64_t now = clock_now_ms();
    if (now - l->last_err_log_ms >= 1000) {
        l->last_err_log_ms = now;
        log_warn("%s", why);
    }
    if (!op)
        return;
    op_retire(l, op);
    op->rehandshake = v.rehandshake;
    op_report(w, op, v.code, why);
    op->release(op);
}

static int poll_cq(nic_worker *w, nic_lane *l)
{
    struct fi_cq_entry e[64];
    nic *n = l->n;
    ssize_t got = fi_cq_read(n->cq, e, 64);
    if (got > 0) {
        for (ssize_t i = 0; i < got; i++) {
            net_op *op = (net_op *)e[i].op_context;
            op_retire(l, op);
            atomic_fetch_add(&n->ops, 1);
            atomic_fetch_add(&n->bytes, op->len);
            op_report(w, op, 0, NULL);
            op->release(op);
        }
        return (int)got;
    }
    if (got == -FI_EAVAIL) {
        struct fi_cq_err_entry err = {0};
        if (fi_cq_readerr(n->cq, &err, 0) > 0) {
            report_cq_error(w, l, &err);
            return 1;
        }
    }
    return 0;
}

enum post_result {
    POSTED,
    FAILED,    /* reported and released */
    WAIT_NIC,  /* the NIC is at its cap */
    WAIT_DEST, /* the destination refused it or holds its share */
};

/* One attempt at op. *dp is its destination's state, found or made here
 * once the op is about to be posted (NULL if out of memory). */
static enum post_result try_post(nic_worker *w, nic_lane *l, net_op *op, nic_dest **dp, uint64_t now)
{
    nic *n = l->n;
    nic_dest *d = *dp;
    if (op->peer_gen && atomic_load(op->peer_gen) != op->gen) {
        op_fail(w, l, op, -ECONNRESET, "the peer daemon went away (or restarted) before this transfer was posted");
        return FAILED;
    }
    if (now >= op->deadline_ms) {
        op_fail(w, l, op, -ETIMEDOUT,
                !d || !d->wait.head ? "request_timeout_ms passed before the NIC had room to post this transfer"
                : d->eagain     ? "request_timeout_ms passed while the peer's endpoint kept refusing new work "
                                  "(not connected yet, or not ready); check that the peer host is up and its NICs "
                                  "reachable"
                                : "request_timeout_ms passed while the peer held its share of this NIC's work "
                                  "requests without completing them (peer stopped or overloaded)");
        return FAILED;
    }
    if (d && d->posted >= l->dest_cap) {
        d->eagain = false;
        return WAIT_DEST;
    }
    if (atomic_load(&n->outstanding) >= n->max_wr)
        return WAIT_NIC;
    if (!d)
        d = *dp = nic_dest_get(&l->dests, op->dest); /* new: nothing posted yet */
    int rc = post(n, op);
    if (rc == -FI_EAGAIN) {
        /* Per destination on efa (RNR backoff, queue before its
         * handshake) and rxm (connecting): the others go on. */
        if (!d)
            return WAIT_NIC;
        d->eagain = true;
        return WAIT_DEST;
    }
    if (rc) {
        /* Refused outright: the same reading as a failed completion. */
        int fe = rc < 0 ? -rc : rc;
        nic_errors_cq in = {.err = fe, .provider = n->provider, .prov_text = fi_strerror(fe)};
        nic_errors_verdict v;
        char what[400], why[440];
        nic_errors_map(&in, &v, what, sizeof(what));
        snprintf(why, sizeof(why), "posting the RMA %s failed: %s", op->write ? "write" : "read", what);
        atomic_fetch_add(&n->errors, 1);
        op->rehandshake = v.rehandshake;
        op_fail(w, l, op, v.code, why);
        return FAILED;
    }
    atomic_fetch_add(&n->outstanding, 1);
    posted_add(w, op);
    op->dstate = d;
    if (d)
        d->posted++;
    return POSTED;
}

/* Waiting destinations first (their ops are older), each from its oldest
 * op; one still waiting goes to the back. Every head is checked for its
 * deadline even when the NIC is full. Returns ops posted. */
static int post_blocked(nic_worker *w, nic_lane *l, uint64_t now)
{
    int posted = 0;
    /* Each once: those still waiting go back at the end. */
    for (unsigned n = nic_dest_blocked_count(&l->dests); n; n--) {
        nic_dest *d = nic_dest_next_blocked(&l->dests);
        while (d->wait.head) {
            net_op *next = d->wait.head->next;
            enum post_result r = try_post(w, l, d->wait.head, &d, now);
            if (r == WAIT_NIC || r == WAIT_DEST)
                break;
            nic_dest_list_advance(&d->wait, next);
            posted += r == POSTED;
        }
        nic_dest_requeue(&l->dests, d);
    }
    return posted;
}

/* New ops in order; one whose destination has ops waiting goes behind
 * them. Returns ops posted. */
static int post_pending(nic_worker *w, nic_lane *l, uint64_t now)
{
    int posted = 0;
    while (l->pend.head) {
        net_op *op = l->pend.head, *next = op->next;
        nic_dest *d = nic_dest_find(&l->dests, op->dest);
        enum post_result r = d && d->wait.head ? WAIT_DEST : try_post(w, l, op, &d, now);
        if (r == WAIT_NIC)
            break;
        nic_dest_list_advance(&l->pend, next);
        if (r == WAIT_DEST)
            nic_dest_wait(&l->dests, d, op);
        else if (r == FAILED)
            nic_dest_put(&l->dests, d);
        posted += r == POSTED;
    }
    return posted;
}

static void check_deadlines(nic_worker *w)
{
    uint64_t now = clock_now_ms();
    for (net_op *op = w->posted.pnext; op != &w->posted; op = op->pnext)
        if (op->deadline_ms != UINT64_MAX && now >= op->deadline_ms)
            op_report(w, op, -ETIMEDOUT,
                      "no completion within request_timeout_ms (peer unreachable or stopped answering)");
}

static void take_queue(nic_worker *w)
{
    if (!atomic_load_explicit(&w->queued, memory_order_acquire))
        return;
    pthread_mutex_lock(&w->lock);
    net_op *op = w->qhead;
    w->qhead = w->qtail = NULL;
    atomic_store_explicit(&w->queued, false, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
    while (op) {
        net_op *next = op->next;
        unsigned k = 0;
        while (k < w->nlanes && w->lanes[k].n != op->nic)
            k++;
        op->dstate = NULL;
        nic_dest_list_push(&w->lanes[k].pend, op);
        w->live++;
        op = next;
    }
}

static bool has_work(nic_worker *w)
{
    if (w->posted.pnext != &w->posted)
        return true;
    for (unsigned k = 0; k < w->nlanes; k++)
        if (w->lanes[k].pend.head || w->lanes[k].dests.blocked_head)
            return true;
    return false;
}

/* fi_trywait on each NIC's own fabric: true when every CQ may block. */
static bool trywait_all(nic_worker *w, struct fid **fids)
{
    for (unsigned k = 0; k < w->nlanes; k++)
        if (fi_trywait(w->lanes[k].n->fabric_fid, &fids[k], 1) != FI_SUCCESS)
            return false;
    return true;
}

/* Whether every live op waits for a destination that refused it (rxm
 * connecting, efa before its handshake) and none is posted: then nothing
 * can complete before the provider's connection set-up moves, which comes
 * through the same wait fds. */
static bool only_refused(nic_worker *w)
{
    if (w->posted.pnext != &w->posted)
        return false;
    for (unsigned k = 0; k < w->nlanes; k++)
        if (w->lanes[k].pend.head)
            return false;
    return true;
}

/* Idle: sleep until new work, a completion or incoming traffic (the CQs'
 * wait fds), where every NIC has a wait fd; else nap 1 ms on the eventfd
 * (the provider then needs fi_cq_read calls for passive-side progress).
 * At most cap_ms either way. */
static void sleep_idle(nic_worker *w, int cap_ms)
{
    struct pollfd pfd[NIC_MAX + 1];
    struct fid *fids[NIC_MAX];
    unsigned np = 0;
    bool fds = true;
    pfd[np++] = (struct pollfd){.fd = w->evfd, .events = POLLIN};
    for (unsigned k = 0; k < w->nlanes; k++) {
        nic *n = w->lanes[k].n;
        fds &= n->cq_fd >= 0;
        if (n->cq_fd >= 0)
            pfd[np++] = (struct pollfd){.fd = n->cq_fd, .events = POLLIN};
        fids[k] = &n->cq->fid;
    }
    int timeout = 1;
    if (fds) {
        if (!trywait_all(w, fids))
            return; /* events are waiting: read them first */
        /* Ops whose deadline passed may still complete (the peer came
         * back): not every provider signals all it needs driven
         * (connection set-up) through the wait fd, so look again soon. */
        timeout = w->posted.pnext != &w->posted ? 10 : 1000;
    } else {
        np = 1;
    }
    if (timeout > cap_ms)
        timeout = cap_ms;
    poll(pfd, np, timeout);
    if (pfd[0].revents & POLLIN) {
        uint64_t v;
        if (read(w->evfd, &v, sizeof(v)) < 0) {
        }
    }
}

static void *worker_main(void *arg)
{
    nic_worker *w = arg;
    uint64_t idle_since = clock_now_us();
    uint64_t last_deadline_check = 0, stop_at = 0;
    for (;;) {
        take_queue(w);
        /* One clock read a turn: while ops are live this loop spins, and
         * the vDSO call was a tenth of its time at 4 KiB. */
        uint64_t us = clock_now_us(), now = us / 1000;
        int progress = 0;
        for (unsigned k = 0; k < w->nlanes; k++) {
            nic_lane *l = &w->lanes[k];
            progress += post_blocked(w, l, now);
            progress += post_pending(w, l, now);
            /* Polling also drives the provider's progress for transfers
             * where this host is the passive side. */
            while (poll_cq(w, l) > 0)
                progress++;
        }
        if (now - last_deadline_check >= 20) {
            check_deadlines(w);
            last_deadline_check = now;
        }
        if (atomic_load(&w->stop) && !atomic_load(&w->queued)) {
            if (!stop_at)
                stop_at = now;
            /* Ops a dead peer never completes must not hold up exit. */
            if (!has_work(w) || now - stop_at > 2000)
                return NULL;
        }
        if (progress || (w->live && !only_refused(w))) {
            /* Ops live (posted or waiting for room): a nap now would make
             * each of them complete up to a nap late. */
            idle_since = us;
            continue;
        }
        if (w->live) {
            /* Connecting: spinning here only takes the CPU from the
             * threads that set connections up (many NICs warming at
             * once on a few cores); wake on their events, or in 1 ms to
             * post again. */
            sleep_idle(w, 1);
            continue;
        }
        if (us - idle_since < spin_us)
            continue;
        sleep_idle(w, 1000);
        idle_since = clock_now_us();
    }
}

void nic_submit(net_op *first)
{
    /* Group by worker so each gets one lock and one wake-up. */
    for (unsigned wi = 0; wi < nworkers; wi++) {
        nic_worker *w = &workers[wi];
        net_op *head = NULL, *tail = NULL, **pp = &first;
        while (*pp) {
            net_op *op = *pp;
            if (op->nic->worker == w) {
                *pp = op->next;
                op->next = NULL;
                if (tail)
                    tail->next = op;
                else
                    head = op;
                tail = op;
            } else {
                pp = &op->next;
            }
        }
        if (!head)
            continue;
        pthread_mutex_lock(&w->lock);
        if (w->qtail)
            w->qtail->next = head;
        else
            w->qhead = head;
        w->qtail = tail;
        atomic_store_explicit(&w->queued, true, memory_order_release);
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        if (write(w->evfd, &one, sizeof(one)) < 0) {
        }
    }
    /* No worker (the daemon is stopping): they end here, never silently. */
    while (first) {
        net_op *op = first;
        first = op->next;
        op->next = NULL;
        op->done(op, -ECANCELED, "the daemon is stopping");
        op->release(op);
    }
}

/* CPUs this process may run on (at least 1). */
static unsigned usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? (unsigned)n : 1;
}

int nic_worker_start(unsigned want_workers, uint64_t spin)
{
    unsigned nn = nic_count();
    if (!nn)
        return 0;
    spin_us = spin;
    /* By default one per NIC, but no more than there are CPUs: a worker
     * with ops live polls without pause, so more of them than CPUs only
     * take turns, and during a warmup of many NIC pairs they starved the
     * threads that set the connections up (docs/benchmarks.md). */
    unsigned cpus = usable_cpus();
    unsigned want = want_workers ? want_workers : nn < cpus ? nn : cpus;
    if (want > nn)
        want = nn;
    workers = calloc(want, sizeof(*workers));
    if (!workers)
        return -ENOMEM;
    for (unsigned i = 0; i < nn; i++) {
        nic_worker *w = &workers[i % want];
        nic_lane *l = &w->lanes[w->nlanes++];
        nic *n = nic_get(i);
        l->n = n;
        /* One destination may hold at most three quarters of the NIC's
         * work requests: one that stops completing them (a stopped or
         * dead peer, whose ops the provider may hold for good) leaves the
         * rest to the others. */
        uint64_t reserve = n->max_wr >= 2 ? (n->max_wr / 4 ? n->max_wr / 4 : 1) : 0;
        l->dest_cap = n->max_wr - reserve;
        n->worker = w;
    }
    nworkers = 0; /* counts the threads really started, for nic_worker_stop */
    for (unsigned i = 0; i < want; i++) {
        nic_worker *w = &workers[i];
        w->idx = i;
        pthread_mutex_init(&w->lock, NULL);
        w->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        w->posted.pnext = w->posted.pprev = &w->posted;
        int rc = w->evfd < 0 ? errno : pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            log_error("cannot start NIC worker %u: %s", i, strerror(rc));
            if (w->evfd >= 0)
                close(w->evfd);
            return -rc;
        }
        nworkers++;
    }
    log_info("%u NIC worker thread(s)", nworkers);
    return 0;
}

unsigned nic_worker_count(void)
{
    return nworkers;
}

void nic_worker_stop(void)
{
    for (unsigned i = 0; i < nworkers; i++) {
        nic_worker *w = &workers[i];
        atomic_store(&w->stop, true);
        uint64_t one = 1;
        if (write(w->evfd, &one, sizeof(one)) < 0) {
        }
    }
    for (unsigned i = 0; i < nworkers; i++) {
        nic_worker *w = &workers[i];
        pthread_join(w->thread, NULL);
        close(w->evfd);
        /* Destinations of ops abandoned at exit (a dead peer's). */
        for (unsigned k = 0; k < w->nlanes; k++)
            nic_dests_free(&w->lanes[k].dests);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}
