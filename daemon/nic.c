/* NIC contexts and NIC workers. Each worker thread owns its NICs' endpoints
 * outright: ops reach it through a locked queue, but posting and polling
 * happen on that thread alone. */
#include "nic.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

nic *nics[NIC_MAX];
unsigned nnics;

struct nic_worker {
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
};

static nic_worker *workers;
static unsigned nworkers;

uint64_t nic_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- Selection ---------------------------------------------------------- */

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && *p == ' ')
            p++, l--;
        while (l && p[l - 1] == ' ')
            l--;
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static int read_numa(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

static int nic_numa_node(const struct fi_info *fi)
{
    char p[256];
    if (fi->nic && fi->nic->bus_attr && fi->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *pci = &fi->nic->bus_attr->attr.pci;
        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%04x:%02x:%02x.%x/numa_node", pci->domain_id, pci->bus_id,
                 pci->device_id, pci->function_id);
        return read_numa(p);
    }
    snprintf(p, sizeof(p), "/sys/class/net/%s/device/numa_node", fi->domain_attr->name);
    return read_numa(p);
}

const char *nic_link_state(const nic *n, char *buf, size_t len)
{
    char p[256], line[64] = "";
    /* RDMA devices (EFA): "4: ACTIVE"; network interfaces (tcp): "up". */
    snprintf(p, sizeof(p), "/sys/class/infiniband/%s/ports/1/state", n->name);
    FILE *f = fopen(p, "r");
    if (!f) {
        snprintf(p, sizeof(p), "/sys/class/net/%s/operstate", n->name);
        f = fopen(p, "r");
    }
    if (f) {
        if (!fgets(line, sizeof(line), f))
            line[0] = 0;
        fclose(f);
    }
    line[strcspn(line, "\n")] = 0;
    const char *v = strchr(line, ':') ? strchr(line, ':') + 1 : line;
    while (*v == ' ')
        v++;
    snprintf(buf, len, "%s", *v ? v : "unknown");
    return buf;
}

/* ---- Opening ------------------------------------------------------------ */

#define CHECK(call, what)                                                                              \
    do {                                                                                               \
        int rc_ = (call);                                                                              \
        if (rc_) {                                                                                     \
            log_error("NIC %s: %s failed: %s", n->name, what, fi_strerror(-rc_));                      \
            return rc_ < 0 ? rc_ : -rc_;                                                               \
        }                                                                                              \
    } while (0)

static int nic_open(nic *n, struct fi_info *fi)
{
    n->info = fi_dupinfo(fi);
    snprintf(n->name, sizeof(n->name), "%s", fi->domain_attr->name);
    snprintf(n->fabric, sizeof(n->fabric), "%s", fi->fabric_attr->name);
    snprintf(n->provider, sizeof(n->provider), "%s", fi->fabric_attr->prov_name);
    n->numa_node = nic_numa_node(fi);
    n->mr_mode = fi->domain_attr->mr_mode;
    n->delivery_complete = (fi->tx_attr->op_flags & FI_DELIVERY_COMPLETE) != 0;
    n->max_msg = fi->ep_attr->max_msg_size ? fi->ep_attr->max_msg_size : SIZE_MAX;
    n->max_wr = mcefad.cfg.max_wr;
    if (fi->tx_attr->size && fi->tx_attr->size < n->max_wr)
        n->max_wr = fi->tx_attr->size;
    if (n->max_wr == 0)
        n->max_wr = 1;
    /* Keys we choose start at a value unique to this incarnation, so a
     * stale key from a peer that knew our previous run matches nothing. */
    uint64_t base = mcefad.epoch & ~0xffffull;
    if (fi->domain_attr->mr_key_size && fi->domain_attr->mr_key_size < 8)
        base &= (1ull << (8 * fi->domain_attr->mr_key_size)) - 1;
    atomic_init(&n->next_key, base | 1);

    CHECK(fi_fabric(fi->fabric_attr, &n->fabric_fid, NULL), "fi_fabric");
    CHECK(fi_domain(n->fabric_fid, n->info, &n->domain, NULL), "fi_domain");
    struct fi_av_attr av_attr = {.type = FI_AV_TABLE};
    CHECK(fi_av_open(n->domain, &av_attr, &n->av, NULL), "fi_av_open");
    struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_FD,
                                 .size = fi->tx_attr->size ? fi->tx_attr->size * 2 : 4096};
    if (fi_cq_open(n->domain, &cq_attr, &n->cq, NULL) != 0) {
        /* Not every provider can hand out a wait fd; then we poll. */
        cq_attr.wait_obj = FI_WAIT_NONE;
        CHECK(fi_cq_open(n->domain, &cq_attr, &n->cq, NULL), "fi_cq_open");
    }
    if (cq_attr.wait_obj == FI_WAIT_NONE || fi_control(&n->cq->fid, FI_GETWAIT, &n->cq_fd) != 0)
        n->cq_fd = -1;
    CHECK(fi_endpoint(n->domain, n->info, &n->ep, NULL), "fi_endpoint");
    CHECK(fi_ep_bind(n->ep, &n->av->fid, 0), "fi_ep_bind(av)");
    CHECK(fi_ep_bind(n->ep, &n->cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
    CHECK(fi_enable(n->ep), "fi_enable");
    n->addrlen = sizeof(n->addr);
    CHECK(fi_getname(&n->ep->fid, n->addr, &n->addrlen), "fi_getname");

    uint64_t key = (n->mr_mode & FI_MR_PROV_KEY) ? 0 : atomic_fetch_add(&n->next_key, 1);
    CHECK(fi_mr_reg(n->domain, &n->warmup_word, sizeof(n->warmup_word), FI_REMOTE_READ | FI_READ, 0, key, 0,
                    &n->warmup_mr, NULL),
          "fi_mr_reg(warmup)");
    if (n->mr_mode & FI_MR_ENDPOINT) {
        CHECK(fi_mr_bind(n->warmup_mr, &n->ep->fid, 0), "fi_mr_bind(warmup)");
        CHECK(fi_mr_enable(n->warmup_mr), "fi_mr_enable(warmup)");
    }
    n->warmup_key = fi_mr_key(n->warmup_mr);
    n->warmup_desc = fi_mr_desc(n->warmup_mr);
    n->warmup_addr = (n->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)&n->warmup_word : 0;
    log_info("NIC %s: provider %s, fabric %s, NUMA node %d, max %" PRIu64 " work requests, mr_mode 0x%x%s", n->name,
             n->provider, n->fabric, n->numa_node, n->max_wr, n->mr_mode,
             n->delivery_complete ? ", delivery-complete writes" : "");
    return 0;
}

static void nic_close(nic *n)
{
    if (n->warmup_mr)
        fi_close(&n->warmup_mr->fid);
    if (n->ep)
        fi_close(&n->ep->fid);
    if (n->cq)
        fi_close(&n->cq->fid);
    if (n->av)
        fi_close(&n->av->fid);
    if (n->domain)
        fi_close(&n->domain->fid);
    if (n->fabric_fid)
        fi_close(&n->fabric_fid->fid);
    if (n->info)
        fi_freeinfo(n->info);
    free(n);
}

static struct fi_info *get_info(const char *prov, bool delivery, int *rc)
{
    struct fi_info *hints = fi_allocinfo(), *list = NULL;
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    /* Every mr_mode bit we know how to honour; the provider keeps those it needs. */
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    hints->domain_attr->threading = FI_THREAD_SAFE;
    hints->fabric_attr->prov_name = strdup(prov);
    if (delivery)
        hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
    *rc = fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, hints, &list);
    fi_freeinfo(hints);
    return *rc ? NULL : list;
}

/* ---- Workers ------------------------------------------------------------ */

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
    uint64_t now = nic_now_ms();
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
    uint64_t now = nic_now_ms();
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

static void *worker_main(void *arg)
{
    nic_worker *w = arg;
    uint64_t spin_ns = mcefad.cfg.spin_us * 1000;
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
        uint64_t now = nic_now_ms();
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
        } else if (fi_trywait(w->nics[0]->fabric_fid, fids, (int)w->nnics) != FI_SUCCESS) {
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

/* ---- Registration ------------------------------------------------------- */

static void release_mrs(region *r)
{
    for (unsigned i = 0; i < r->nmrs; i++)
        if (r->mrs[i].mr)
            fi_close(&r->mrs[i].mr->fid);
    free(r->mrs);
    r->mrs = NULL;
    r->nmrs = 0;
}

int nic_register_region(region *r, char *why, size_t whylen)
{
    if (!nnics)
        return 0;
    r->mrs = calloc(nnics, sizeof(*r->mrs));
    if (!r->mrs)
        return -ENOMEM;
    r->nmrs = nnics;
    for (unsigned i = 0; i < nnics; i++) {
        nic *n = nics[i];
        nic_mr *m = &r->mrs[i];
        uint64_t key = (n->mr_mode & FI_MR_PROV_KEY) ? 0 : atomic_fetch_add(&n->next_key, 1);
        int rc = fi_mr_reg(n->domain, r->ptr, r->length,
                           FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, 0, key, 0, &m->mr, NULL);
        if (!rc && (n->mr_mode & FI_MR_ENDPOINT)) {
            rc = fi_mr_bind(m->mr, &n->ep->fid, 0);
            if (!rc)
                rc = fi_mr_enable(m->mr);
        }
        if (rc) {
            snprintf(why, whylen, "registering with NIC %s failed: %s (is the memlock limit high enough?)",
                     n->name, fi_strerror(rc < 0 ? -rc : rc));
            release_mrs(r);
            return rc < 0 ? rc : -rc;
        }
        m->key = fi_mr_key(m->mr);
        m->desc = fi_mr_desc(m->mr);
        m->rma_base = (n->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)r->ptr : 0;
    }
    return 0;
}

unsigned nic_choose(int numa_node, unsigned *out, unsigned max)
{
    unsigned k = 0;
    if (numa_node >= 0)
        for (unsigned i = 0; i < nnics && k < max; i++)
            if (nics[i]->numa_node == numa_node)
                out[k++] = i;
    if (k == 0)
        for (unsigned i = 0; i < nnics && k < max; i++)
            out[k++] = i;
    return k;
}

/* ---- Start and stop ----------------------------------------------------- */

int nic_init(void)
{
    const char *prov = mcefad.cfg.provider;
    region_release_hook = release_mrs;
    if (!*prov || !strcmp(prov, "none")) {
        log_info("provider 'none': serving same-host transfers only");
        return 0;
    }
    int rc;
    struct fi_info *list = get_info(prov, true, &rc);
    if (!list) {
        list = get_info(prov, false, &rc);
        if (list)
            log_warn("provider %s cannot report delivery completion: a write completes when the NIC sent it, "
                     "not when it landed",
                     prov);
    }
    if (!list) {
        log_warn("provider %s lists no NIC with RDM endpoints and RMA (%s): serving same-host transfers only. "
                 "On AWS check the EFA driver and libfabric; elsewhere set provider=tcp;ofi_rxm",
                 prov, fi_strerror(-rc));
        return 0;
    }
    for (struct fi_info *fi = list; fi && nnics < NIC_MAX; fi = fi->next) {
        const char *name = fi->domain_attr->name;
        /* fi_getinfo does not filter by name for us; one entry per domain. */
        if (strcmp(fi->fabric_attr->prov_name, prov) != 0 && !strstr(fi->fabric_attr->prov_name, prov))
            continue;
        bool dup = false;
        for (unsigned i = 0; i < nnics; i++)
            dup |= strcmp(nics[i]->name, name) == 0;
        if (dup)
            continue;
        if (*mcefad.cfg.nics ? !in_list(mcefad.cfg.nics, name) : strcmp(name, "lo") == 0)
            continue; /* loopback only when named: a peer's "lo" would be ourselves */
        if (in_list(mcefad.cfg.nics_exclude, name))
            continue;
        nic *n = calloc(1, sizeof(*n));
        n->idx = nnics;
        if ((rc = nic_open(n, fi)) < 0) {
            nic_close(n);
            fi_freeinfo(list);
            return rc;
        }
        nics[nnics++] = n;
    }
    fi_freeinfo(list);
    if (*mcefad.cfg.nics)
        for (const char *p = mcefad.cfg.nics; *p;) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            bool found = false;
            for (unsigned i = 0; i < nnics; i++)
                found |= strlen(nics[i]->name) == l && !strncmp(nics[i]->name, p, l);
            if (!found)
                log_warn("NIC '%.*s' from the nics setting was not found with provider %s", (int)l, p, prov);
            if (!e)
                break;
            p = e + 1;
        }
    if (!nnics) {
        log_warn("provider %s: no NIC left after the nics/nics_exclude settings: serving same-host only", prov);
        return 0;
    }
    nworkers = mcefad.cfg.nic_workers && mcefad.cfg.nic_workers < nnics ? (unsigned)mcefad.cfg.nic_workers : nnics;
    workers = calloc(nworkers, sizeof(*workers));
    for (unsigned i = 0; i < nnics; i++) {
        nic_worker *w = &workers[i % nworkers];
        w->nics[w->nnics++] = nics[i];
        nics[i]->worker = w;
    }
    unsigned want = nworkers;
    nworkers = 0; /* counts the threads really started, for nic_shutdown */
    for (unsigned i = 0; i < want; i++) {
        nic_worker *w = &workers[i];
        w->idx = i;
        pthread_mutex_init(&w->lock, NULL);
        w->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        w->posted.pnext = w->posted.pprev = &w->posted;
        if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
            log_error("cannot start NIC worker %u: %s", i, strerror(rc));
            close(w->evfd);
            return -rc;
        }
        nworkers++;
    }
    log_info("%u NIC(s) with provider %s, %u worker thread(s)", nnics, prov, nworkers);
    return 0;
}

void nic_shutdown(void)
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
    for (unsigned i = 0; i < nnics; i++)
        nic_close(nics[i]);
    nnics = 0;
}
