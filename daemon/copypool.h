/* The copy pool: same-host data movement by threads that memcpy between the
 * daemon's own mappings, or hand GPU copies to the driver (gpu_copy.h).
 * Nothing here touches libfabric.
 *
 * Jobs are queued per owner (a client session) and the threads serve the
 * owners round robin, one run of jobs at a time, so one client's huge batch
 * cannot hold up another client's small copy; xfer.c keeps each run bounded
 * (copy_chunk_bytes, or one job). A fault in a client's mapping during a copy (SIGBUS:
 * a hugetlb page that went away) fails that job with -EFAULT instead of
 * killing the daemon. */
#ifndef MCEFAD_COPYPOOL_H
#define MCEFAD_COPYPOOL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct copy_job copy_job;
/* err: 0, -ECANCELED (the owner's queue was dropped), -EFAULT (the
 * memory faulted; fault_src tells which side), -EIO (a GPU copy failed;
 * why says how), or -ESRCH / -EPERM (a plain side's process exited or
 * withdrew access; why says so). */
typedef void (*copy_done_fn)(copy_job *job, int err);

struct copy_job {
    copy_job *next;
    void *dst;
    const void *src;
    size_t len;
    int dst_gpu, src_gpu; /* -1: host memory; else the daemon's GPU index (gpu.h) */
    /* Set: that side is an address in this client process, reached by
     * cross-memory attach (plain_import.h); NULL: the daemon's own mapping. */
    struct plain_proc *dst_proc, *src_proc;
    const void *owner; /* whose queue: jobs of one owner run in order of submission */
    /* Last job of a run: a thread takes a run whole and runs its jobs one
     * after another (copypool_submit sets it on the chain's last job). */
    bool run_end;
    int fault_src;     /* set with -EFAULT: 1 the source faulted, 0 the destination */
    const char *why;   /* set with -EIO (the driver's error) or a plain side's error: static text */
    copy_done_fn done; /* called on a copy thread after the copy, or by copypool_cancel */
};

/* A job with a plain side and a GPU or another plain side goes through a
 * buffer of this size a piece at a time; a job no longer than it reads
 * all its source before it writes (a move may overlap). */
#define COPYPOOL_BOUNCE_BYTES (1u << 20)

int copypool_init(unsigned nthreads);
/* Finishes every queued job, then joins the threads. */
void copypool_shutdown(void);
/* Queues a chain of jobs linked through next (one lock for the chain); all
 * of them must have the same owner. The chain is one run, or several where
 * the caller set run_end inside it. After copypool_shutdown they run on the
 * calling thread. */
void copypool_submit(copy_job *first, copy_job *last, size_t count);
/* Takes every job of owner that has not started out of the queue and
 * completes it with -ECANCELED on the calling thread. Jobs already running
 * finish normally. */
size_t copypool_cancel(const void *owner);
/* The number of copy threads. */
unsigned copypool_threads(void);
/* Jobs queued and not yet started. */
size_t copypool_queued(void);

#endif
