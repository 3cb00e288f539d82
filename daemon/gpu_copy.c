#include "gpu_copy.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "gpu.h"
#include "guard.h"

#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"

/* Each staging buffer; two per thread, so the host side of one piece is
 * copied while the driver moves the other. */
#define STAGE_BYTES ((size_t)4 << 20)

typedef struct thread_gpu {
    CUstream stream[GPU_MAX];
    CUevent ev[GPU_MAX][2];
    void *stage[2];
    int stage_dev; /* whose context allocated the staging (pinned, portable) */
} thread_gpu;

static __thread thread_gpu *tg;

/* Makes dev's context current and its stream, events and the staging
 * exist on this thread; all or nothing, so a failure leaves no half-made
 * state behind for the next copy. */
static int ready(int dev, const char **why)
{
    if (!tg && !(tg = calloc(1, sizeof(*tg)))) {
        *why = "out of memory";
        return -EIO;
    }
    CUcontext ctx = gpu_context(dev);
    if (!ctx) {
        *why = "the GPU's context could not be created";
        return -EIO;
    }
    CUresult rc = cuda_drv.cuCtxSetCurrent(ctx);
    if (rc == CUDA_SUCCESS && !tg->stream[dev]) {
        CUstream st = NULL;
        CUevent ev[2] = {NULL, NULL};
        unsigned fl = CU_EVENT_DISABLE_TIMING | CU_EVENT_BLOCKING_SYNC;
        if ((rc = cuda_drv.cuStreamCreate(&st, CU_STREAM_NON_BLOCKING)) == CUDA_SUCCESS &&
            (rc = cuda_drv.cuEventCreate(&ev[0], fl)) == CUDA_SUCCESS &&
            (rc = cuda_drv.cuEventCreate(&ev[1], fl)) == CUDA_SUCCESS) {
            tg->stream[dev] = st;
            tg->ev[dev][0] = ev[0];
            tg->ev[dev][1] = ev[1];
        } else {
            for (int i = 0; i < 2; i++)
                if (ev[i])
                    cuda_drv.cuEventDestroy(ev[i]);
            if (st)
                cuda_drv.cuStreamDestroy(st);
        }
    }
    if (rc == CUDA_SUCCESS && !tg->stage[0]) {
        void *p[2] = {NULL, NULL};
        if ((rc = cuda_drv.cuMemHostAlloc(&p[0], STAGE_BYTES, CU_MEMHOSTALLOC_PORTABLE)) == CUDA_SUCCESS &&
            (rc = cuda_drv.cuMemHostAlloc(&p[1], STAGE_BYTES, CU_MEMHOSTALLOC_PORTABLE)) == CUDA_SUCCESS) {
            tg->stage[0] = p[0];
            tg->stage[1] = p[1];
            tg->stage_dev = dev;
        } else if (p[0]) {
            cuda_drv.cuMemFreeHost(p[0]);
        }
    }
    if (rc != CUDA_SUCCESS) {
        *why = cuda_drv_error(rc);
        return -EIO;
    }
    return 0;
}

/* The end of every copy, failed or not: nothing of it may still be moving
 * when the caller drops its regions or the next copy refills staging. The
 * event wait blocks (BLOCKING_SYNC) where a stream sync could spin. */
static int finish(int dev, CUresult rc, int ret, const char **why)
{
    CUresult w = cuda_drv.cuEventRecord(tg->ev[dev][0], tg->stream[dev]);
    if (w == CUDA_SUCCESS)
        w = cuda_drv.cuEventSynchronize(tg->ev[dev][0]);
    if (w != CUDA_SUCCESS)
        w = cuda_drv.cuStreamSynchronize(tg->stream[dev]);
    if (rc == CUDA_SUCCESS)
        rc = w;
    if (rc != CUDA_SUCCESS) {
        *why = cuda_drv_error(rc);
        return -EIO;
    }
    return ret;
}

/* Host to GPU: pieces copied into staging (guarded), then by the driver;
 * a staging buffer is refilled only after its previous piece landed. */
static int h2d(CUdeviceptr dst, int dev, const char *src, size_t len, int *fault_src, const char **why)
{
    CUstream st = tg->stream[dev];
    CUresult rc = CUDA_SUCCESS;
    int ret = 0;
    size_t off = 0;
    for (unsigned i = 0; off < len && rc == CUDA_SUCCESS; i++) {
        unsigned b = i & 1;
        size_t n = len - off < STAGE_BYTES ? len - off : STAGE_BYTES;
        if (i >= 2 && (rc = cuda_drv.cuEventSynchronize(tg->ev[dev][b])) != CUDA_SUCCESS)
            break;
        int fs = 0;
        if ((ret = guard_copy(tg->stage[b], src + off, n, &fs)) < 0) {
            *fault_src = 1;
            break;
        }
        if ((rc = cuda_drv.cuMemcpyHtoDAsync(dst + off, tg->stage[b], n, st)) == CUDA_SUCCESS)
            rc = cuda_drv.cuEventRecord(tg->ev[dev][b], st);
        off += n;
    }
    return finish(dev, rc, ret, why);
}

/* GPU to host: the driver fills one staging buffer while the previous
 * piece is copied out of the other. */
static int d2h(char *dst, CUdeviceptr src, int dev, size_t len, int *fault_src, const char **why)
{
    CUstream st = tg->stream[dev];
    CUresult rc = CUDA_SUCCESS;
    int ret = 0;
    size_t off = 0, prev_off = 0, prev_n = 0;
    for (unsigned i = 0; rc == CUDA_SUCCESS; i++) {
        unsigned b = i & 1;
        size_t n = len - off < STAGE_BYTES ? len - off : STAGE_BYTES;
        if (n && (rc = cuda_drv.cuMemcpyDtoHAsync(tg->stage[b], src + off, n, st)) == CUDA_SUCCESS)
            rc = cuda_drv.cuEventRecord(tg->ev[dev][b], st);
        if (rc != CUDA_SUCCESS)
            break;
        if (prev_n) {
            if ((rc = cuda_drv.cuEventSynchronize(tg->ev[dev][b ^ 1])) != CUDA_SUCCESS)
                break;
            int fs = 0;
            if ((ret = guard_copy(dst + prev_off, tg->stage[b ^ 1], prev_n, &fs)) < 0) {
                *fault_src = 0;
                break;
            }
        }
        if (!n)
            break;
        prev_off = off;
        prev_n = n;
        off += n;
    }
    return finish(dev, rc, ret, why);
}

static int d2d(CUdeviceptr dst, int ddev, CUdeviceptr src, int sdev, size_t len, const char **why)
{
    CUstream st = tg->stream[ddev];
    CUresult rc = ddev == sdev ? cuda_drv.cuMemcpyDtoDAsync(dst, src, len, st)
                               : cuda_drv.cuMemcpyPeerAsync(dst, gpu_context(ddev), src, gpu_context(sdev), len, st);
    return finish(ddev, rc, 0, why);
}

/* Host memory of the daemon's own that the driver holds page-locked (the
 * staging slots): one driver copy, no bounce, no guard (it never faults). */
static int pinned(void *dst, int dst_gpu, const void *src, int src_gpu, size_t len, const char **why)
{
    int dev = dst_gpu >= 0 ? dst_gpu : src_gpu;
    CUstream st = tg->stream[dev];
    CUresult rc = dst_gpu >= 0 ? cuda_drv.cuMemcpyHtoDAsync((CUdeviceptr)(uintptr_t)dst, src, len, st)
                               : cuda_drv.cuMemcpyDtoHAsync(dst, (CUdeviceptr)(uintptr_t)src, len, st);
    return finish(dev, rc, 0, why);
}

int gpu_copy(void *dst, int dst_gpu, const void *src, int src_gpu, size_t len, int *fault_src, const char **why)
{
    int dev = dst_gpu >= 0 ? dst_gpu : src_gpu;
    int rc = ready(dev, why);
    if (rc < 0)
        return rc;
    if (dst_gpu >= 0 && src_gpu >= 0)
        return d2d((CUdeviceptr)(uintptr_t)dst, dst_gpu, (CUdeviceptr)(uintptr_t)src, src_gpu, len, why);
    if (gpu_host_pinned(dst_gpu >= 0 ? src : dst, len))
        return pinned(dst, dst_gpu, src, src_gpu, len, why);
    if (dst_gpu >= 0)
        return h2d((CUdeviceptr)(uintptr_t)dst, dst_gpu, src, len, fault_src, why);
    return d2h(dst, (CUdeviceptr)(uintptr_t)src, src_gpu, len, fault_src, why);
}

void gpu_copy_thread_exit(void)
{
    if (!tg)
        return;
    for (int d = 0; d < GPU_MAX; d++) {
        if (!tg->stream[d])
            continue;
        if (cuda_drv.cuCtxSetCurrent(gpu_context(d)) != CUDA_SUCCESS)
            continue;
        cuda_drv.cuStreamDestroy(tg->stream[d]);
        for (int i = 0; i < 2; i++)
            cuda_drv.cuEventDestroy(tg->ev[d][i]);
    }
    if (tg->stage[0] && cuda_drv.cuCtxSetCurrent(gpu_context(tg->stage_dev)) == CUDA_SUCCESS)
        for (int i = 0; i < 2; i++)
            if (tg->stage[i])
                cuda_drv.cuMemFreeHost(tg->stage[i]);
    free(tg);
    tg = NULL;
}

#else /* built without the CUDA headers: no region is ever GPU memory */

int gpu_copy(void *dst, int dst_gpu, const void *src, int src_gpu, size_t len, int *fault_src, const char **why)
{
    (void)dst;
    (void)dst_gpu;
    (void)src;
    (void)src_gpu;
    (void)len;
    (void)fault_src;
    *why = "this mcefad was built without CUDA";
    return -EIO;
}

void gpu_copy_thread_exit(void)
{
}

#endif
