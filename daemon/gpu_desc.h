/* What a client sent to register one GPU range, copied out of its request:
 * the GPU's names, the IPC handle or the VMM allocations with their
 * descriptors, and their checks. No CUDA here: the loop checks a
 * description's shape before any work is queued, and a VMM registration
 * arriving in parts waits as one of these in its session. */
#ifndef MCEFAD_GPU_DESC_H
#define MCEFAD_GPU_DESC_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* VMM allocations one registration may span: a range of PyTorch's
 * expandable segments (20 MiB allocations) up to 80 GiB. They come at most
 * GPU_MSG_CHUNKS to a message (a frame's descriptors less the dmabuf). */
#define GPU_MAX_CHUNKS 4096
#define GPU_MSG_CHUNKS 15

typedef struct gpu_desc {
    int share; /* 1 IPC, 2 VMM (the GpuShare values) */
    char bus_id[32];
    unsigned char uuid[16];
    bool has_uuid;
    unsigned char ipc[64];
    uint64_t alloc_base, alloc_size;
    unsigned nchunks, cap;
    uint64_t *chunk_base, *chunk_size; /* VMM: in address order once complete */
    int *chunk_fd;
    int dmabuf_fd; /* -1: none */
} gpu_desc;

/* A description with nothing yet; NULL when out of memory. */
gpu_desc *gpu_desc_new(void);
/* Appends a VMM chunk (the fd becomes the description's): 0, -E2BIG past
 * GPU_MAX_CHUNKS, -EMFILE when descriptions hold too many descriptors all
 * together, or -ENOMEM (the fd is closed then). */
int gpu_desc_add_chunk(gpu_desc *d, uint64_t base, uint64_t size, int fd);
/* Closes its descriptors and frees it. */
void gpu_desc_free(gpu_desc *d);

/* Checks a description against the range before anything is imported:
 * the request's shape, not the memory (loop thread, cheap). */
int gpu_desc_check(const gpu_desc *d, uint64_t addr, uint64_t length, err *e);
/* Closes its descriptors (they count against a daemon-wide bound). */
void gpu_desc_close(gpu_desc *d);

#endif
