/* The copy pool: same-host data movement by threads that memcpy between the
 * daemon's own mappings, or hand GPU copies to the driver (gpu_copy.h).
 * Nothing here touches libfabric.
 *
 * Jobs are queued per owner (a client session) and the threads serve the
 * owners round robin, one job at a time, so one client's huge batch cannot
 * hold up another client's small copy; xfer.c keeps each job bounded
 * (copy_chunk_bytes). A fault in a client's mapping during a copy (SIGBUS:
 * a hugetlb page that went away) fails that job with -EFAULT instead of
 * killing the daemon. */
#ifndef MCEFAD_COPYPOOL_H
#define MCEFAD_COPYPOOL_H

#include <stddef.h>

typedef struct copy_job copy_job;
/* err: 0, -ECANCELED (the owner's queue was dropped), -EFAULT (the
 * memory faulted; fault_src tells which side) or -EIO (a GPU copy failed;
 * why says how). */
typedef void (*copy_done_fn)(copy_job *job, int err);

struct copy_job {
    copy_job *next;
    void *dst;
    const void *src;
    size_t len;
    int dst_gpu, src_gpu; /* -1: host memory; else the daemon's GPU index (gpu.h) */
    const void *owner; /* whose queue: jobs of one owner run in order of submission */
    int fault_src;     /* set with -EFAULT: 1 the source faulted, 0 the destination */
    const char *why;   /* set with -EIO from a GPU copy: the driver's error (static text) */
    copy_done_fn done; /* called on a copy thread after the copy, or by copypool_cancel */
};

int copypool_init(unsigned nthreads);
/* Finishes every queued job, then joins the threads. */
void copypool_shutdown(void);
/* Queues a chain of jobs linked through next (one lock for the chain); all
 * of them must have the same owner. */
void copypool_submit(copy_job *first, copy_job *last, size_t count);
/* Takes every job of owner that has not started out of the queue and
 * completes it with -ECANCELED on the calling thread. Jobs already running
 * finish normally. */
size_t copypool_cancel(const void *owner);
/* Jobs queued and not yet started. */
size_t copypool_queued(void);

#endif
