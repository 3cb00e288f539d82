/* Host memory kind 1: a client's sealed memfd, mapped into the daemon.
 * Checking the seal and mapping (with pre-faulting, which is slow for
 * large buffers) happen here, on whatever thread calls it.
 *
 * Every mapping counts against the kernel's vm.max_map_count, which the
 * whole daemon shares: a client registering many small regions of one
 * memfd must not use up the maps every other client's completion area
 * needs. So the regions of one memfd share one mapping of it (looked up by
 * the file's st_dev and st_ino in a set per client), reference counted. */
#ifndef MCEFAD_MEMFD_IMPORT_H
#define MCEFAD_MEMFD_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "region.h"

/* One client's memfd mappings. Reference counted: its owner and every
 * mapping in it hold one. Any thread. */
typedef struct memfd_maps memfd_maps;

/* whole_max: a memfd up to this size is mapped whole, so later regions of
 * it share the mapping; larger ones are mapped a range at a time. Also
 * bounded by a budget of address space for whole mappings. */
void memfd_import_init(uint64_t whole_max);
memfd_maps *memfd_maps_new(void);
void memfd_maps_ref(memfd_maps *m);
void memfd_maps_unref(memfd_maps *m);
/* Mappings of client memory the daemon holds now, all clients together. */
size_t memfd_mappings(void);

/* A region for the client range [addr, addr+length) backed by fd at
 * offset, mapped through maps. The fd stays the caller's, who has checked
 * it with shm_memfd_check (on the loop, before queuing this). */
int memfd_import(memfd_maps *maps, int fd, uint64_t offset, uint64_t addr, uint64_t length, int numa_node,
                 bool populate, region **out, err *e);

#endif
