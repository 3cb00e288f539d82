/* Copies with a GPU side, on the copy pool's threads: host↔GPU through a
 * pinned staging pair per thread (the host side is copied under the fault
 * guard, so a client's vanishing memfd pages fail the copy rather than the
 * driver), GPU↔GPU by the driver directly (peer copies across GPUs). Each
 * thread has its own stream per GPU, and waits on events; never libfabric. */
#ifndef MCEFAD_GPU_COPY_H
#define MCEFAD_GPU_COPY_H

#include <stddef.h>

/* dst_gpu / src_gpu: a GPU index (gpu.h), or -1 for host memory. Returns 0,
 * -EFAULT (host memory faulted; *fault_src 1 for the source) or -EIO with
 * *why the driver's error (valid on this thread until its next copy). */
int gpu_copy(void *dst, int dst_gpu, const void *src, int src_gpu, size_t len, int *fault_src, const char **why);
/* Releases this thread's streams, events and staging. */
void gpu_copy_thread_exit(void);

#endif
