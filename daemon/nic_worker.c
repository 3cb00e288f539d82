/* NIC workers: post up to each NIC's cap, poll completions, enforce
 * deadlines, sleep on the CQ wait fds when idle. */
#include "nic_worker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

typedef struct nic_worker {
    unsigned idx;
    pthread_t thread;
    pthread_mutex_t lock;
    net_op *qhead, *qtail; /* from other threads */
    int evfd;
    bool stop;
    nic *nics[NIC_MAX];
    unsigned nnics;
    /* Worker-only state below. */
    net_op *pend_head[NIC_MAX], *pend_tail[NIC_MAX];
    net_op posted; /* sentinel of the posted ops, oldest first */
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
static void op_report(net_op *op, int err, const char *why)
{
    if (op->deadline_ms == UINT64_MAX)
        return; /* already reported (timed out earlier) */
    op->deadline_ms = UINT64_MAX;
    op->done(op, err, why);
}

static void op_release(net_op *op)
{
    op->release(op);
}

static int poll_cq(nic_worker *w, nic *n)
{
    struct fi_cq_entry e[64];
    ssize_t got = fi_cq_read(n->cq, e, 64);
    if (got > 0) {
        for (ssize_t i = 0; i < got; i++) {
            net_op *op = (net_op *)e[i].op_context;
            posted_del(op);
            atomic_fetch_sub(&n->outstanding, 1);
            atomic_fetch_add(&n->ops, 1);
            atomic_fetch_add(&n->bytes, op->len);
            op_report(op, 0, NULL);
            op_release(op);
        }
        return (int)got;
    }
    if (got == -FI_EAVAIL) {
        struct fi_cq_err_entry err = {0};
        if (fi_cq_readerr(n->cq, &err, 0) > 0) {
            net_op *op = (net_op *)err.op_context;
            char buf[256];
            const char *txt = fi_cq_strerror(n->cq, err.prov_errno, err.err_data, buf, sizeof(buf));
            char why[400];
            snprintf(why, sizeof(why), "NIC %s: %s failed: %s (%s)", n->name, op && op->write ? "RMA write" : "RMA read",
                     fi_strerror(err.err), txt ? txt : "no provider detail");
            atomic_fetch_add(&n->errors, 1);
            if (op) {
                posted_del(op);
                atomic_fetch_sub(&n->outstanding, 1);
                op_report(op, -(err.err ? err.err : EIO), why);
                op_release(op);
            }
            return 1;
        }
    }
    (void)w;
    return 0;
}

/* Posts what fits under the NIC's cap. Returns ops posted. */
static int post_pending(nic_worker *w, unsigned k)
{
    nic *n = w->nics[k];
    int posted = 0;
    uint64_t now = clock_now_ms();
    while (w->pend_head[k]) {
        net_op *op = w->pend_head[k];
        const char *why = NULL;
        int err = 0;
        if (op->peer_gen && atomic_load(op->peer_gen) != op->gen) {
            err = -ECONNRESET;
            why = "the peer daemon went away (or restarted) before this transfer was posted";
        } else if (now >= op->deadline_ms) {
            err = -ETIMEDOUT;
            why = "request_timeout_ms passed before the NIC had room to post this transfer";
        }
        if (!err && atomic_load(&n->outstanding) >= n->max_wr)
            break;
        if (!err) {
            int rc = post(n, op);
            if (rc == -FI_EAGAIN) {
                poll_cq(w, n); /* make room, then try again next round */
                break;
            }
            if (rc) {
                err = rc < 0 ? rc : -rc;
                why = fi_strerror(-err);
                atomic_fetch_add(&n->errors, 1);
            }
        }
        w->pend_head[k] = op->next;
        if (!w->pend_head[k])
            w->pend_tail[k] = NULL;
        if (err) {
            char buf[300];
            snprintf(buf, sizeof(buf), "NIC %s: %s", n->name, why);
            op_report(op, err, buf);
            op_release(op);
            continue;
        }
        atomic_fetch_add(&n->outstanding, 1);
        posted_add(w, op);
        posted++;
    }
    return posted;
}

static void check_deadlines(nic_worker *w)
{
    uint64_t now = clock_now_ms();
    for (net_op *op = w->posted.pnext; op != &w->posted; op = op->pnext)
        if (op->deadline_ms != UINT64_MAX && now >= op->deadline_ms)
            op_report(op, -ETIMEDOUT,
                      "no completion within request_timeout_ms (peer unreachable or stopped answering)");
}

static void take_queue(nic_worker *w)
{
    pthread_mutex_lock(&w->lock);
    net_op *op = w->qhead;
    w->qhead = w->qtail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (op) {
        net_op *next = op->next;
        unsigned k = 0;
        while (k < w->nnics && w->nics[k] != op->nic)
            k++;
        op->next = NULL;
        if (w->pend_tail[k])
            w->pend_tail[k]->next = op;
        else
            w->pend_head[k] = op;
        w->pend_tail[k] = op;
        op = next;
    }
}

static bool has_work(nic_worker *w)
{
    if (w->posted.pnext != &w->posted)
        return true;
    for (unsigned k = 0; k < w->nnics; k++)
        if (w->pend_head[k])
            return true;
    return false;
}

/* fi_trywait on each NIC's own fabric: true when every CQ may block. */
static bool trywait_all(nic_worker *w, struct fid **fids)
{
    for (unsigned k = 0; k < w->nnics; k++)
        if (fi_trywait(w->nics[k]->fabric_fid, &fids[k], 1) != FI_SUCCESS)
            return false;
    return true;
}

static void *worker_main(void *arg)
{
    nic_worker *w = arg;
    uint64_t spin_ns = spin_us * 1000;
    struct timespec idle_since;
    clock_gettime(CLOCK_MONOTONIC, &idle_since);
    uint64_t last_deadline_check = 0, stop_at = 0;
    for (;;) {
        take_queue(w);
        int progress = 0;
        for (unsigned k = 0; k < w->nnics; k++) {
            progress += post_pending(w, k);
            /* Polling also drives the provider's progress for transfers
             * where this host is the passive side. */
            while (poll_cq(w, w->nics[k]) > 0)
                progress++;
        }
        uint64_t now = clock_now_ms();
        if (now - last_deadline_check >= 20) {
            check_deadlines(w);
            last_deadline_check = now;
        }
        pthread_mutex_lock(&w->lock);
        bool stop = w->stop && !w->qhead;
        pthread_mutex_unlock(&w->lock);
        if (stop) {
            if (!stop_at)
                stop_at = now;
            /* Ops a dead peer never completes must not hold up exit. */
            if (!has_work(w) || now - stop_at > 2000)
                return NULL;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (progress) {
            idle_since = ts;
            continue;
        }
        uint64_t idle = (uint64_t)(ts.tv_sec - idle_since.tv_sec) * 1000000000ull + (uint64_t)ts.tv_nsec -
                        (uint64_t)idle_since.tv_nsec;
        if (idle < spin_ns)
            continue;
        /* Sleep until new work, a completion or incoming traffic (the CQ's
         * wait fd), or the next deadline check. */
        struct pollfd pfd[NIC_MAX + 1];
        unsigned np = 0;
        pfd[np++] = (struct pollfd){.fd = w->evfd, .events = POLLIN};
        struct fid *fids[NIC_MAX];
        bool can_block = true;
        for (unsigned k = 0; k < w->nnics; k++) {
            if (w->nics[k]->cq_fd >= 0)
                pfd[np++] = (struct pollfd){.fd = w->nics[k]->cq_fd, .events = POLLIN};
            else
                can_block = false;
            fids[k] = &w->nics[k]->cq->fid;
        }
        /* With work posted, wake often: not every provider signals every
         * event it needs driven (connection setup) through the wait fd. */
        int timeout = has_work(w) ? 1 : 1000;
        if (!can_block) {
            /* No wait fd from this provider: sleep 1 ms at a time on the
             * eventfd alone rather than spin. */
            np = 1;
            timeout = 1;
        } else if (!trywait_all(w, fids)) {
            continue;
        }
        poll(pfd, np, timeout);
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            if (read(w->evfd, &v, sizeof(v)) < 0) {
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &idle_since);
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
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        if (write(w->evfd, &one, sizeof(one)) < 0) {
        }
    }
}


int nic_worker_start(unsigned want_workers, uint64_t spin)
{
    unsigned nn = nic_count();
    if (!nn)
        return 0;
    spin_us = spin;
    unsigned want = want_workers && want_workers < nn ? want_workers : nn;
    workers = calloc(want, sizeof(*workers));
    if (!workers)
        return -ENOMEM;
    for (unsigned i = 0; i < nn; i++) {
        nic_worker *w = &workers[i % want];
        w->nics[w->nnics++] = nic_get(i);
        nic_get(i)->worker = w;
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
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        if (write(w->evfd, &one, sizeof(one)) < 0) {
        }
    }
    for (unsigned i = 0; i < nworkers; i++) {
        pthread_join(workers[i].thread, NULL);
        close(workers[i].evfd);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}
