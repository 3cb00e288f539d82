/* Same-host data movement: a pool of copy threads that memcpy between the
 * daemon's own mappings. Nothing here touches libfabric. */
#ifndef MCEFAD_LOCAL_H
#define MCEFAD_LOCAL_H

#include <stddef.h>

typedef struct local_job local_job;
typedef void (*local_done_fn)(local_job *job, int err);

struct local_job {
    local_job *next;
    void *dst;
    const void *src;
    size_t len;
    local_done_fn done; /* called on a copy thread after the copy */
};

int local_init(unsigned nthreads);
/* Finishes every queued job, then joins the threads. */
void local_shutdown(void);
/* Queues a chain of jobs linked through next (one lock for the chain). */
void local_submit(local_job *first, local_job *last, size_t count);
/* Jobs queued and not yet started. */
size_t local_queued(void);

#endif
