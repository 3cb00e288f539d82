/* The peer struct, for the peer_* files and warmup only. */
#ifndef MCEFAD_PEER_INTERNAL_H
#define MCEFAD_PEER_INTERNAL_H

#include <sys/queue.h>

#include "defer.h"
#include "nic.h"
#include "peer_table.h"

typedef struct peer_conn peer_conn;

typedef struct remote_nic {
    char name[64];
    char fabric[128];
    uint8_t addr[NIC_ADDR_MAX];
    size_t addrlen;
    uint64_t warmup_addr, warmup_key;
} remote_nic;

/* Someone waiting for the peer's connection to come up. */
typedef struct peer_waiter {
    STAILQ_ENTRY(peer_waiter) link;
    void (*fn)(void *arg, int status, const char *why);
    void *arg;
} peer_waiter;

struct peer {
    char host[256];    /* as named in segment names */
    char address[300]; /* what we connect to, "ip:port" */
    peer_conn *conn;   /* NULL while down */
    bool connecting;   /* an outgoing attempt is under way */
    peer_conn *attempt; /* that attempt's connection (NULL while resolving) */
    uint64_t epoch;    /* 0 until the first handshake */
    char remote_hostname[256];
    _Atomic uint64_t gen;
    uint64_t layout_gen; /* moves whenever the remote NIC list is rebuilt */
    unsigned nlocal;     /* rows of fiaddr/warm: this host's NICs */
    unsigned nrnics;     /* columns: the peer's NICs */
    remote_nic *rnic;
    fi_addr_t *fiaddr;   /* [local * nrnics + remote] */
    bool *warm;
    unsigned rr;         /* round robin over remote NICs */
    uint64_t staging_slot; /* its staging buffer size (PeerHello), 0: none */
    unsigned stage_window; /* our StagedOp requests to it in flight (xfer_stage.c) */
    unsigned stage_served; /* its StagedOp requests we are serving (peer_stage.c) */
    unsigned users;      /* requests under way that hold this pointer */
    STAILQ_HEAD(, peer_waiter) waiters;
    defer_item release_item; /* runs the waiters once the handshake is answered */
    bool release_queued;
    char last_error[256];
    _Atomic uint64_t bytes, ops, errors;
    /* NIC workers ask for a new handshake here (peer_ask_rehandshake): the
     * errno that prompted it (0: none) and the generation it applies to. */
    _Atomic int rehandshake_code;
    _Atomic uint64_t rehandshake_gen;
    _Atomic uint64_t rehandshakes; /* done, for metrics */
    LIST_ENTRY(peer) link;
};

/* Sizes the remote NIC list to n (every pair not available, not warm). */
int peer_resize(peer *p, unsigned n);
static inline fi_addr_t *peer_pair_slot(peer *p, unsigned i, unsigned j)
{
    return &p->fiaddr[i * p->nrnics + j];
}
static inline bool *peer_warm_slot(peer *p, unsigned i, unsigned j)
{
    return &p->warm[i * p->nrnics + j];
}
/* A request starts or stops holding p (a never-connected peer nobody holds
 * may be evicted to make room in the table). */
static inline void peer_hold(peer *p)
{
    p->users++;
}
static inline void peer_release(peer *p)
{
    p->users--;
}
/* Every pair unusable, the generation moved: queued work fails. */
void peer_forget_av(peer *p);
/* Loop thread: the request a NIC worker left on p (its errno, 0 if none,
 * or one for a connection that is gone already), cleared. */
int peer_take_rehandshake(peer *p);

#endif
