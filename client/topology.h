/* libmcefa: Mooncake's local topology matrix, built from what the daemon
 * reports (its NICs with their NUMA nodes, the host's NUMA nodes, each PCI
 * GPU's distance to each NIC) and the GPUs this process sees.
 * client_topology_json is pure (no daemon, no driver); mcefa_local_topology
 * (mcefa.h) feeds it from the daemon and the driver. */
#ifndef MCEFA_CLIENT_TOPOLOGY_H
#define MCEFA_CLIENT_TOPOLOGY_H

#include <stddef.h>

#include "mcefa.pb-c.h"

#define CLIENT_BUS_ID_LEN 32

/* Writes {"cpu:N": [[preferred], [others]], ..., "cuda:K": [[...], [...]]}
 * into buf (NUL-terminated, cut at len) as Mooncake does:
 *  - cpu:N for each NUMA node of st: the NICs on node N first;
 *  - cuda:K for each of this process's GPUs (gpus[K] its bus id): among
 *    the NICs on the GPU's NUMA node (all NICs when none is there), those
 *    at the smallest PCI distance; a NIC of unknown distance is never
 *    preferred, and a GPU the daemon does not list prefers none.
 * Only NICs named in filter (comma-separated device or domain names; NULL
 * or "": every NIC) appear, and preference is among them. Returns the
 * length the JSON needs, without the NUL (>= len: buf was too small), or
 * -ENOMEM. */
int client_topology_json(const Mcefa__DaemonStatus *st, const char (*gpus)[CLIENT_BUS_ID_LEN], int ngpus,
                         const char *filter, char *buf, size_t len);

#endif
