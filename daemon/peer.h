/* Daemon-to-daemon: the TCP handshake (host identity, epoch, NIC
 * addresses), address-vector entries for every remote NIC, segment
 * descriptors on request, and NIC-pair warmup. One connection per host pair
 * serves every client on both hosts. */
#ifndef MCEFAD_PEER_H
#define MCEFAD_PEER_H

#include <rdma/fabric.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcefa.pb-c.h"
#include "nic.h"

typedef struct peer_conn peer_conn;
typedef struct peer_waiter peer_waiter;

typedef struct remote_nic {
    char name[64];
    char fabric[128];
    uint8_t addr[NIC_ADDR_MAX];
    size_t addrlen;
    uint64_t warmup_addr, warmup_key;
} remote_nic;

typedef struct peer {
    char host[256];    /* as named in segment names */
    char address[300]; /* what we connect to, "ip:port" */
    peer_conn *conn;   /* NULL while down */
    bool connecting;   /* an outgoing attempt is under way */
    peer_conn *attempt; /* that attempt's connection (NULL while resolving) */
    uint64_t epoch;    /* 0 until the first handshake */
    char remote_hostname[256];
    /* Moves when the connection is lost or the peer restarts: queued work
     * aimed at the old incarnation fails instead of being posted. */
    _Atomic uint64_t gen;
    uint64_t layout_gen; /* moves whenever the remote NIC list is rebuilt */
    unsigned nrnics;
    remote_nic rnic[NIC_MAX];
    fi_addr_t fiaddr[NIC_MAX][NIC_MAX]; /* [local][remote], FI_ADDR_NOTAVAIL: different fabric */
    bool warm[NIC_MAX][NIC_MAX];
    unsigned rr; /* round robin over remote NICs */
    peer_waiter *waiters;
    char last_error[256];
    _Atomic uint64_t bytes, ops, errors; /* remote transfers to this host */
    struct peer *next;
} peer;

extern peer *peers;

int peer_start(void);
/* Closes connections and fails waiters; peers stay allocated for the NIC
 * workers' ops until peer_free_all, after nic_shutdown. */
void peer_stop(void);
void peer_free_all(void);

/* Splits "host:port" and tells whether host is this daemon's host. */
bool peer_is_local_name(const char *segment_name);

/* Finds or creates the peer for a segment name's host part. */
int peer_for_segment(const char *segment_name, peer **out, char *why, size_t whylen);

/* Fetches a segment descriptor from the peer (connecting first if needed).
 * cb runs on the loop thread with status 0 and the descriptor, or a
 * negative errno and why. */
typedef void (*peer_segment_cb)(void *arg, peer *p, int status, const char *why, const Mcefa__SegmentDescriptor *d);
void peer_get_segment(peer *p, const char *name, peer_segment_cb cb, void *arg);

/* Connects every local/remote NIC pair of the peer (an 8-byte RMA read on
 * each one not yet warm). cb gets the number of pairs now warm. */
typedef void (*peer_warmup_cb)(void *arg, int status, const char *why, unsigned pairs);
void peer_warmup(peer *p, peer_warmup_cb cb, void *arg);

/* Remote NIC for local NIC i (round robin over those on its fabric), or -1. */
int peer_pick_remote(peer *p, unsigned local);

#endif
