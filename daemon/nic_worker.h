/* NIC worker threads. Each owns its NICs' endpoints outright: ops reach it
 * through a locked queue, but posting and polling happen on that thread
 * alone. Ops over a NIC's work-request cap wait here, never fail. Ops for
 * a destination that refuses work (-FI_EAGAIN) or holds its share of the
 * cap wait on that destination's own list, so the others go on. */
#ifndef MCEFAD_NIC_WORKER_H
#define MCEFAD_NIC_WORKER_H

#include <rdma/fabric.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nic.h"

/* One RMA operation. On the worker's thread, done reports the outcome once
 * (completion, error, or deadline passed); release follows once the
 * provider has let go of the buffers, which after a timeout can be later. */
typedef struct net_op net_op;
typedef void (*net_op_done_fn)(net_op *op, int err, const char *why);

struct net_op {
    struct fi_context2 ctx; /* libfabric's per-op scratch: must stay first */
    net_op *next;
    nic *nic;
    int write;
    void *local;
    void *desc;
    size_t len;
    fi_addr_t dest;
    uint64_t raddr, rkey;
    uint64_t deadline_ms;
    const _Atomic uint64_t *peer_gen; /* fail unposted ops if this moves */
    uint64_t gen;
    net_op_done_fn done;
    void (*release)(net_op *op);
    /* Set before done() when the provider says the peer looks gone or no
     * longer knows this host (nic_errors.h): its owner asks the peer for a
     * new handshake. */
    bool rehandshake;
    /* The worker's own below. */
    net_op *pprev, *pnext; /* list of posted ops */
    void *dstate;          /* its destination's state while posted */
};

/* Starts the workers over every open NIC: nworkers 0 means one per NIC,
 * at most one per CPU the process may run on;
 * an idle worker polls spin_us before it sleeps. */
int nic_worker_start(unsigned nworkers, uint64_t spin_us);
/* Finishes (or after 2 s abandons) posted work and joins the threads. */
void nic_worker_stop(void);
unsigned nic_worker_count(void);

/* Queues ops (linked through next) to their NICs' workers; after
 * nic_worker_stop they fail at once (-ECANCELED). */
void nic_submit(net_op *first);

#endif
