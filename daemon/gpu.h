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
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gpu_desc.h"
#include "region.h"

#define GPU_MAX 64

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

/* Whether every GPU of the daemon reports dmabuf support
 * (CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED): 1, 0 when some does not, -1
 * when the driver is not loaded or lists none. */
int gpu_dmabuf_supported(void);

/* Host memory the daemon owns for its whole run (the staging slots):
 * page-locked with the driver (cuMemHostRegister, portable) at the first
 * GPU registration, so GPU copies between it and a GPU go straight instead
 * of through a copy thread's bounce buffers (gpu_copy.c). One area, given
 * at start before any GPU registration; gpu_shutdown unlocks it, before it
 * is unmapped. A driver that refuses leaves it unpinned (logged once):
 * copies still work. */
void gpu_host_area(void *p, size_t len);
/* Page-locks the area under GPU dev's context, once; any thread, after a
 * successful import on dev. */
void gpu_pin_host_area(int dev);
/* Whether [p, p+len) lies inside the page-locked area. Any thread. */
bool gpu_host_pinned(const void *p, size_t len);

/* For registering a GPU region with NICs (nic_register_gpu_region): the
 * daemon's CUDA device ordinal of its GPU, or -1 for a region of other
 * kind; and the dmabuf the client sent with its allocation, which stays
 * open as long as the region (*fd borrowed, not to be closed), with where
 * the region's first byte lies in it: 0, or -ENOENT where none came. */
int gpu_region_device(const region *r);
int gpu_region_dmabuf(const region *r, int *fd, uint64_t *offset);

/* A region of GPU kind for the client range [addr, addr+length); d's
 * descriptors are closed whatever it returns. */
int gpu_import(gpu_desc *d, uint64_t addr, uint64_t length, region **out, err *e);

#endif
