#include "gpu_desc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* VMM descriptors that descriptions hold, all clients together: a client
 * sending a multi-part registration slowly must not use up the daemon's
 * descriptors. */
#define HELD_FDS_MAX 65536
static _Atomic unsigned held_fds;

gpu_desc *gpu_desc_new(void)
{
    gpu_desc *d = calloc(1, sizeof(*d));
    if (d)
        d->dmabuf_fd = -1;
    return d;
}

int gpu_desc_add_chunk(gpu_desc *d, uint64_t base, uint64_t size, int fd)
{
    if (fd >= 0 && atomic_fetch_add(&held_fds, 1) >= HELD_FDS_MAX) {
        atomic_fetch_sub(&held_fds, 1);
        close(fd);
        return -EMFILE;
    }
    if (d->nchunks == d->cap) {
        unsigned ncap = d->cap ? d->cap * 2 : 16;
        uint64_t *b = d->nchunks < GPU_MAX_CHUNKS ? realloc(d->chunk_base, ncap * sizeof(*b)) : NULL;
        if (b)
            d->chunk_base = b;
        uint64_t *z = b ? realloc(d->chunk_size, ncap * sizeof(*z)) : NULL;
        if (z)
            d->chunk_size = z;
        int *f = z ? realloc(d->chunk_fd, ncap * sizeof(*f)) : NULL;
        if (f)
            d->chunk_fd = f;
        if (!f) {
            if (fd >= 0) {
                close(fd);
                atomic_fetch_sub(&held_fds, 1);
            }
            return d->nchunks < GPU_MAX_CHUNKS ? -ENOMEM : -E2BIG;
        }
        d->cap = ncap;
    }
    d->chunk_base[d->nchunks] = base;
    d->chunk_size[d->nchunks] = size;
    d->chunk_fd[d->nchunks++] = fd;
    return 0;
}

void gpu_desc_free(gpu_desc *d)
{
    if (!d)
        return;
    gpu_desc_close(d);
    free(d->chunk_base);
    free(d->chunk_size);
    free(d->chunk_fd);
    free(d);
}

void gpu_desc_close(gpu_desc *d)
{
    for (unsigned i = 0; i < d->nchunks; i++)
        if (d->chunk_fd[i] >= 0) {
            close(d->chunk_fd[i]);
            d->chunk_fd[i] = -1;
            atomic_fetch_sub(&held_fds, 1);
        }
    if (d->dmabuf_fd >= 0) {
        close(d->dmabuf_fd);
        d->dmabuf_fd = -1;
    }
}

int gpu_desc_check(const gpu_desc *d, uint64_t addr, uint64_t length, err *e)
{
    if (!d->bus_id[0])
        return err_set(e, -EINVAL, "GPU registration of 0x%" PRIx64 " names no GPU (empty bus_id)", addr);
    if (d->share == 1) {
        if (d->nchunks)
            return err_set(e, -EINVAL, "GPU registration of 0x%" PRIx64 ": an IPC share carries no VMM chunks", addr);
        if (addr < d->alloc_base || addr - d->alloc_base > d->alloc_size ||
            length > d->alloc_size - (addr - d->alloc_base))
            return err_set(e, -EINVAL,
                           "GPU registration of 0x%" PRIx64 " + %" PRIu64 " lies outside its allocation 0x%" PRIx64
                           " + %" PRIu64,
                           addr, length, d->alloc_base, d->alloc_size);
        return 0;
    }
    if (d->share != 2)
        return err_set(e, -EINVAL, "GPU registration of 0x%" PRIx64 ": unknown share kind %d (1 IPC, 2 VMM)", addr,
                       d->share);
    if (d->nchunks == 0 || d->nchunks > GPU_MAX_CHUNKS)
        return err_set(e, -EINVAL, "GPU registration of 0x%" PRIx64 ": a VMM share needs 1 to %d chunks (got %u)", addr,
                       GPU_MAX_CHUNKS, d->nchunks);
    for (unsigned i = 0; i < d->nchunks; i++) {
        if (d->chunk_size[i] == 0 || d->chunk_base[i] + d->chunk_size[i] < d->chunk_base[i])
            return err_set(e, -EINVAL, "GPU registration of 0x%" PRIx64 ": VMM chunk %u is empty or wraps", addr, i);
        if (i && d->chunk_base[i] != d->chunk_base[i - 1] + d->chunk_size[i - 1])
            return err_set(e, -EINVAL,
                           "GPU registration of 0x%" PRIx64 ": VMM chunks %u and %u are not contiguous", addr, i - 1,
                           i);
    }
    uint64_t b = d->chunk_base[0], end = d->chunk_base[d->nchunks - 1] + d->chunk_size[d->nchunks - 1];
    if (addr < b || addr + length > end)
        return err_set(e, -EINVAL,
                       "GPU registration of 0x%" PRIx64 " + %" PRIu64 " lies outside its VMM chunks 0x%" PRIx64
                       " + %" PRIu64,
                       addr, length, b, end - b);
    return 0;
}

