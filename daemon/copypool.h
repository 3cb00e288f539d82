/* The copy pool: same-host data movement by threads that memcpy between the
 * daemon's own mappings. Nothing here touches libfabric. */
#ifndef MCEFAD_COPYPOOL_H
#define MCEFAD_COPYPOOL_H

#include <stddef.h>

typedef struct copy_job copy_job;
typedef void (*copy_done_fn)(copy_job *job, int err);

struct copy_job {
    copy_job *next;
    void *dst;
    const void *src;
    size_t len;
    copy_done_fn done; /* called on a copy thread after the copy */
};

int copypool_init(unsigned nthreads);
/* Finishes every queued job, then joins the threads. */
void copypool_shutdown(void);
/* Queues a chain of jobs linked through next (one lock for the chain). */
void copypool_submit(copy_job *first, copy_job *last, size_t count);
/* Jobs queued and not yet started. */
size_t copypool_queued(void);

#endif
