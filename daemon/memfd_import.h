/* Host memory kind 1: a client's sealed memfd, mapped into the daemon.
 * Checking the seal and mapping (with pre-faulting, which is slow for
 * large buffers) happen here, on whatever thread calls it. */
#ifndef MCEFAD_MEMFD_IMPORT_H
#define MCEFAD_MEMFD_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "region.h"

/* A region for the client range [addr, addr+length) backed by fd at
 * offset. The fd stays the caller's. */
int memfd_import(int fd, uint64_t offset, uint64_t addr, uint64_t length, int numa_node, bool populate,
                 region **out, err *e);

#endif
