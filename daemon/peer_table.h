/* The peer table: one entry per other host this daemon talks to, found by
 * the host part of segment names. Bounded: anyone who reaches peer_port can
 * announce a host. Other modules read peers through these functions; only
 * the peer_* files see the struct (peer_internal.h). */
#ifndef MCEFAD_PEER_TABLE_H
#define MCEFAD_PEER_TABLE_H

#include <rdma/fabric.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct peer peer;

/* nlocal: this host's NIC count (sizes every peer's address table). */
void peer_table_init(unsigned nlocal, unsigned max_peers);
/* How a new peer's address ("ip:port") is found from its host name (name
 * resolution sets this; without it the host name is used as is). */
void peer_table_set_resolver(void (*fn)(const char *host, char *out, size_t outlen));
/* Frees every peer (after the NIC workers stopped: their ops point in). */
void peer_table_free(void);

/* The peer for the host part of a segment name, created if new. */
int peer_for_name(const char *segment_name, peer **out, err *e);
peer *peer_first(void);
peer *peer_next(const peer *p);

const char *peer_host(const peer *p);
const char *peer_address(const peer *p);
uint64_t peer_epoch(const peer *p);
uint64_t peer_layout_gen(const peer *p);
/* Moves whenever the connection is lost or the peer restarts. */
const _Atomic uint64_t *peer_gen(const peer *p);
bool peer_connected(const peer *p);
const char *peer_last_error(const peer *p);
unsigned peer_nrnics(const peer *p);
/* AV address of remote NIC j from local NIC i; FI_ADDR_NOTAVAIL when the
 * two are on different fabrics (or the peer is not known yet). */
fi_addr_t peer_pair(const peer *p, unsigned i, unsigned j);
bool peer_pair_warm(const peer *p, unsigned i, unsigned j);
unsigned peer_pairs(const peer *p);
unsigned peer_pairs_warm(const peer *p);
/* The round-robin cursor over remote NICs (NIC choice owns its meaning). */
unsigned *peer_rr(peer *p);
/* The peer's staging buffer size, 0 when it has none (its plain memory is
 * then out of reach). */
uint64_t peer_staging_slot(const peer *p);
/* Our staged requests to p in flight (xfer_stage.c owns the count). */
unsigned *peer_stage_window(peer *p);

/* Any thread (NIC workers): the provider says p is unresponsive or no
 * longer knows this host (code, a negative errno from nic_errors.h) for an
 * op of generation gen. The peer links then handshake with it again, once
 * however many ops failed, and not for a connection that is gone already. */
void peer_ask_rehandshake(peer *p, uint64_t gen, int code);
/* New handshakes asked for that way and done, for metrics. */
uint64_t peer_rehandshakes(const peer *p);

/* Remote transfers to this host, for status and metrics. */
void peer_count_op(peer *p, uint64_t bytes, bool failed);
uint64_t peer_bytes(const peer *p);
uint64_t peer_ops(const peer *p);
uint64_t peer_errors(const peer *p);

#endif
