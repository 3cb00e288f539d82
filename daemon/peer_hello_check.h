/* The checks of a peer's hello, apart from the handshake that applies it:
 * a pure function of the message, the provider and the local NICs' address
 * lengths, so it can be tested and fuzzed without libfabric. */
#ifndef MCEFAD_PEER_HELLO_CHECK_H
#define MCEFAD_PEER_HELLO_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mcefa.pb-c.h"

/* Everything a hello carries, checked before any of it is used: names
 * printable (they go to logs and replies), counts bounded, each NIC
 * address as long as one of the nlocal local addresses (local_addrlen)
 * and of provider's format. Returns 0 or -EPROTO with e naming what was
 * wrong. */
int peer_hello_check(const Mcefa__PeerHello *h, const char *provider, const size_t *local_addrlen, unsigned nlocal,
                     err *e);

/* This host as a hello describes it, for the fabric check. */
typedef struct peer_hello_local {
    const char *hostname;
    const char *provider;
    const char *fabric;              /* the host's one fabric, "" if several */
    uint32_t libfabric_version;      /* fi_version() */
    const char *const *nic_fabrics;  /* each local NIC's */
    unsigned nnics;
} peer_hello_local;

/* Refuses (-EPROTO) a hello (already through peer_hello_check) of a host
 * that names one fabric when this host names another and no NIC of one
 * shares a fabric with a NIC of the other: a libfabric 2.0 host offers
 * only efa, a 2.1 host picks efa-direct, and they can never talk. e names
 * both hosts, fabrics and libfabric versions and what to set. 0 otherwise
 * (hosts on several fabrics pair NIC by NIC, as before). */
int peer_hello_fabric_check(const Mcefa__PeerHello *h, const peer_hello_local *me, err *e);

#endif
