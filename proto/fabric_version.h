/* Which libfabric API version to ask fi_getinfo for. Shared by mcefad and
 * the tools (fi-rma-bench) so both negotiate alike; it knows nothing of
 * either, only of libfabric's headers. */
#ifndef MCEFA_FABRIC_VERSION_H
#define MCEFA_FABRIC_VERSION_H

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <stddef.h>
#include <stdint.h>

/* The newest API version the headers of this build know. */
#define FABRIC_VERSION_HEADERS FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION)
#define FABRIC_VERSION_STEPS 8

/* The versions to ask, newest first, into out (room for
 * FABRIC_VERSION_STEPS): the headers' own, the library's when it is older
 * (fi_version()), then the milestones below both. Each milestone is where
 * behaviour a user notices changes, so stepping down loses as little as
 * possible: 1.22 FI_OPT_MAX_RMA_SIZE; 1.21 FI_OPT_SHARED_MEMORY_PERMITTED;
 * 1.20 FI_MR_DMABUF; 1.18 efa keeps device RDMA on and reports emulated
 * RMA (below it, device RDMA is off on p4d/p5/p5e); 1.9 a last resort.
 * Returns how many. */
static inline size_t fabric_version_ladder(uint32_t headers, uint32_t library, uint32_t *out)
{
    const uint32_t milestones[] = {FI_VERSION(1, 22), FI_VERSION(1, 21), FI_VERSION(1, 20), FI_VERSION(1, 18),
                                   FI_VERSION(1, 9)};
    size_t n = 0;
    out[n++] = headers;
    if (library && library < headers)
        out[n++] = library;
    for (size_t i = 0; i < sizeof(milestones) / sizeof(milestones[0]) && n < FABRIC_VERSION_STEPS; i++)
        if (milestones[i] < out[n - 1])
            out[n++] = milestones[i];
    return n;
}

/* One fi_getinfo at version; returns what fi_getinfo returned. */
typedef int (*fabric_version_ask)(uint32_t version, void *arg);

/* Asks down the ladder while the library answers -FI_ENOSYS (the version
 * is newer than it). Returns the last answer; *used gets the version that
 * answered otherwise (0 if none did). */
static inline int fabric_version_negotiate(uint32_t headers, uint32_t library, fabric_version_ask ask, void *arg,
                                           uint32_t *used)
{
    uint32_t steps[FABRIC_VERSION_STEPS];
    size_t n = fabric_version_ladder(headers, library, steps);
    int rc = -FI_ENOSYS;
    *used = 0;
    for (size_t i = 0; i < n && rc == -FI_ENOSYS; i++) {
        rc = ask(steps[i], arg);
        if (rc != -FI_ENOSYS)
            *used = steps[i];
    }
    return rc;
}

#endif
