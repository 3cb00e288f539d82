/* NIC choice: which local NICs may carry a transfer (by where its memory
 * sits), which remote NIC each one targets, and how a large transfer is
 * striped. Pure functions over small tables, so failover and GPU placement
 * change this file only and it is unit-tested without NICs. */
#ifndef MCEFAD_ROUTE_H
#define MCEFAD_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

/* What route needs to know of one local NIC for one transfer. */
typedef struct route_nic {
    bool near;      /* nearest the local memory: its GPU's PCIe-local NICs, or its NUMA node's */
    bool has_mr;    /* the local region is registered on it */
    bool reaches;   /* it shares a fabric with at least one remote NIC */
} route_nic;

/* Local NICs for one transfer: the near ones that hold the region and
 * reach the peer, else any that do. Indexes into out (room for n); returns
 * how many. */
unsigned route_local(const route_nic *nics, unsigned n, unsigned *out);

/* NICs to register memory on numa_node with (out[i] true), given each NIC's
 * node (-1 unknown): those on that node and those of unknown node. Every
 * NIC when all is set, when the memory's node is unknown, or when no NIC
 * is on it. Returns how many. */
unsigned route_register(const int *nic_numa, unsigned n, int numa_node, bool all, bool *out);

/* The next remote NIC reachable from one local NIC, round robin: row[j] is
 * true when remote NIC j is reachable and holds the remote region; among
 * those, the ones with their bit in preferred (the owner's nearest NICs
 * to that memory) come first. *rr is the peer's cursor. -1: none. */
int route_remote(const bool *row, unsigned nremote, uint64_t preferred, unsigned *rr);

/* Pieces of a transfer of len bytes over nuse NICs: striped across them
 * (4 KiB-aligned) above threshold, else one. *piece gets each piece's
 * length (the last may be shorter). */
unsigned route_stripes(uint64_t len, uint64_t threshold, unsigned nuse, uint64_t *piece);

/* Where a transfer's first piece starts in the local NIC list, rotating so
 * successive transfers spread over the NICs. */
unsigned route_first(unsigned nuse);

#endif
