/* What xfer.c shares with xfer_stage.c (transfers through staging
 * buffers): the NIC choice for one local region and one remote region. */
#ifndef MCEFAD_XFER_INTERNAL_H
#define MCEFAD_XFER_INTERNAL_H

#include "peer_table.h"
#include "region.h"
#include "remote.h"

/* Local NICs that may carry a transfer to rr on peer p (route.c decides):
 * both ends must hold the memory's registration (held: the local region,
 * or the staging slots a staged one goes through), and those in near (the
 * local memory's nearest NICs, region.near) go first. */
unsigned xfer_usable_nics(const region *held, uint64_t near, peer *p, const remote_region *rr, unsigned nrnics,
                          unsigned *out);
/* The remote NIC local NIC `local` targets for rr, round robin; -1: none. */
int xfer_pick_remote(peer *p, unsigned local, const remote_region *rr, unsigned nrnics);

#endif
