/* GPU memory of clients, mapped into the daemon (CUDA driver loaded at run
 * time, shm/cuda_drv.h). An allocation shared by legacy IPC handle is
 * imported once per host and reference counted across clients and ranges
 * (keyed by the handle's bytes); VMM allocations (one fd each) are imported
 * per registration, as nothing identifies one allocation across two
 * descriptors. A region of GPU kind points at the daemon's device address
 * of the client range; its release drops the imports (on a thread of its
 * own), and regions live as long as any copy using them (region.h), so
 * nothing is closed under a copy.
 *
 * GPUs are named by PCI bus id (and UUID when the client sent one), never
 * by ordinal. Any thread; the slow calls (loading the driver, opening
 * handles) run on libuv's worker threads with the registration. */
#ifndef MCEFAD_GPU_H
#define MCEFAD_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "region.h"

#define GPU_MAX 64
/* VMM allocations one registration may span: a range of PyTorch's
 * expandable segments (20 MiB allocations) up to 80 GiB. They come at most
 * GPU_MSG_CHUNKS to a message (a frame's descriptors less the dmabuf). */
#define GPU_MAX_CHUNKS 4096
#define GPU_MSG_CHUNKS 15

/* The driver library to load (cuda_library); nothing is loaded yet. */
void gpu_init(const char *driver_path);
/* Loads the driver and lists the GPUs, once; 0 or an error saying why GPU
 * memory cannot be used on this daemon. */
int gpu_ensure(err *e);
/* Finishes the releases still queued (GPU regions dropped last) and stops
 * their thread; at exit, after the copy threads. */
void gpu_shutdown(void);
/* "not loaded", "ready", or why the driver is unusable. */
const char *gpu_state(void);

typedef struct gpu_info {
    char bus_id[32];
    char name[96];
    char uuid[48];
    unsigned imports;      /* allocations mapped now */
    uint64_t import_bytes;
} gpu_info;

unsigned gpu_count(void);
int gpu_get_info(unsigned dev, gpu_info *out);
const char *gpu_bus_id(int dev);
/* The device's primary context (a CUcontext), retained on first use; NULL
 * if dev is not a GPU of this daemon. */
void *gpu_context(int dev);

/* What a client sent for one GPU range (copied out of the request). The
 * descriptors become gpu_import's to close, whatever it returns. */
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
 * GPU_MAX_CHUNKS or -ENOMEM (the fd is closed then). */
int gpu_desc_add_chunk(gpu_desc *d, uint64_t base, uint64_t size, int fd);
/* Closes its descriptors and frees it. */
void gpu_desc_free(gpu_desc *d);

/* Checks a description against the range before anything is imported:
 * the request's shape, not the memory (loop thread, cheap). */
int gpu_desc_check(const gpu_desc *d, uint64_t addr, uint64_t length, err *e);
/* A region of GPU kind for the client range [addr, addr+length). */
int gpu_import(gpu_desc *d, uint64_t addr, uint64_t length, region **out, err *e);
/* Closes the descriptors of a description never imported. */
void gpu_desc_close(gpu_desc *d);

#endif
