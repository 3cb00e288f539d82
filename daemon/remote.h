/* Segments on other hosts, as their daemons described them: regions with
 * the RMA address and key per remote NIC. Checked on arrival (a peer is
 * another process we do not control) and looked up on every transfer. */
#ifndef MCEFAD_REMOTE_H
#define MCEFAD_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mcefa.pb-c.h"
#include "peer_table.h"

typedef struct remote_region {
    uint64_t addr, length;
    int numa_node;
    uint64_t *rma_addr; /* per remote NIC */
    uint64_t *rma_key;
    uint64_t absent; /* bit j: not registered on remote NIC j, never to be used for it */
    uint64_t preferred; /* bit j: remote NIC j is nearest the memory, aimed at first */
    bool staged;     /* plain memory of the peer: reached by StagedOp requests, never by RMA */
    uint64_t region_id; /* staged: the peer's name for the registration */
} remote_region;

typedef struct remote_segment {
    peer *peer;
    uint64_t epoch; /* of the peer when described */
    uint64_t layout_gen;
    char *name;
    size_t nregions;
    remote_region *regions; /* sorted by addr */
    unsigned nrnics;
} remote_segment;

remote_segment *remote_from_descriptor(peer *p, const Mcefa__SegmentDescriptor *d, err *e);
void remote_free(remote_segment *r);
/* The region holding all of [addr, addr+len), or NULL. */
remote_region *remote_find(const remote_segment *rs, uint64_t addr, uint64_t len);
/* Whether remote NIC j holds a registration of rr. */
static inline int remote_on_nic(const remote_region *rr, unsigned j)
{
    return j < 64 && !(rr->absent >> j & 1);
}

#endif
