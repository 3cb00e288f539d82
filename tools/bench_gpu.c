#include "bench_gpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"

static int use(int gpu, char *why, size_t whylen)
{
    int rc = cuda_drv_load(getenv("MCEFA_CUDA_LIBRARY"), why, whylen);
    if (rc < 0)
        return rc;
    CUdevice d;
    CUcontext ctx;
    CUresult r;
    if ((r = cuda_drv.cuDeviceGet(&d, gpu)) != CUDA_SUCCESS || (r = cuda_drv.cuDevicePrimaryCtxRetain(&ctx, d)) ||
        (r = cuda_drv.cuCtxSetCurrent(ctx))) {
        if (why)
            snprintf(why, whylen, "GPU %d: %s", gpu, cuda_drv_error(r));
        return -ENODEV;
    }
    return 0;
}

int bench_gpu_count(char *why, size_t whylen)
{
    int rc = cuda_drv_load(getenv("MCEFA_CUDA_LIBRARY"), why, whylen), n = 0;
    if (rc < 0)
        return rc;
    CUresult r = cuda_drv.cuDeviceGetCount(&n);
    if (r != CUDA_SUCCESS || n == 0) {
        snprintf(why, whylen, "the CUDA driver lists no GPU (%s)", r ? cuda_drv_error(r) : "0 devices");
        return -ENODEV;
    }
    return n;
}

int bench_gpu_alloc(int gpu, size_t size, void **out, char *why, size_t whylen)
{
    int rc = use(gpu, why, whylen);
    if (rc < 0)
        return rc;
    CUdeviceptr p;
    CUresult r = cuda_drv.cuMemAlloc(&p, size);
    if (r != CUDA_SUCCESS) {
        snprintf(why, whylen, "cuMemAlloc of %zu bytes on GPU %d: %s", size, gpu, cuda_drv_error(r));
        return -ENOMEM;
    }
    *out = (void *)(uintptr_t)p;
    return 0;
}

void bench_gpu_free(int gpu, void *p)
{
    if (use(gpu, NULL, 0) == 0)
        cuda_drv.cuMemFree((CUdeviceptr)(uintptr_t)p);
}

int bench_gpu_upload(int gpu, void *dst, const void *src, size_t len)
{
    if (use(gpu, NULL, 0) < 0)
        return -ENODEV;
    return cuda_drv.cuMemcpyHtoD((CUdeviceptr)(uintptr_t)dst, src, len) == CUDA_SUCCESS ? 0 : -EIO;
}

int bench_gpu_download(int gpu, void *dst, const void *src, size_t len)
{
    if (use(gpu, NULL, 0) < 0)
        return -ENODEV;
    return cuda_drv.cuMemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)src, len) == CUDA_SUCCESS ? 0 : -EIO;
}

int bench_gpu_zero(int gpu, void *dst, size_t len)
{
    if (use(gpu, NULL, 0) < 0)
        return -ENODEV;
    return cuda_drv.cuMemsetD8((CUdeviceptr)(uintptr_t)dst, 0, len) == CUDA_SUCCESS ? 0 : -EIO;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_gpu_d2d(int gpu, uint64_t block, uint64_t batch, uint64_t buffer_size, double duration, char *why,
                     size_t whylen)
{
    void *a, *b;
    if (bench_gpu_alloc(gpu, buffer_size, &a, why, whylen) < 0)
        return -1;
    if (bench_gpu_alloc(gpu, buffer_size, &b, why, whylen) < 0) {
        bench_gpu_free(gpu, a);
        return -1;
    }
    CUstream st;
    CUresult r = cuda_drv.cuStreamCreate(&st, CU_STREAM_NON_BLOCKING);
    double rate = -1;
    if (r == CUDA_SUCCESS) {
        uint64_t span = buffer_size / block * block, off = 0, bytes = 0;
        double t0 = now_s(), end = t0 + duration;
        while (r == CUDA_SUCCESS && now_s() < end) {
            for (uint64_t i = 0; i < batch && r == CUDA_SUCCESS; i++) {
                if (off + block > span)
                    off = 0;
                r = cuda_drv.cuMemcpyDtoDAsync((CUdeviceptr)(uintptr_t)b + off, (CUdeviceptr)(uintptr_t)a + off, block,
                                               st);
                off += block;
            }
            if (r == CUDA_SUCCESS)
                r = cuda_drv.cuStreamSynchronize(st);
            bytes += batch * block;
        }
        if (r == CUDA_SUCCESS)
            rate = (double)bytes / (now_s() - t0);
        cuda_drv.cuStreamDestroy(st);
    }
    if (r != CUDA_SUCCESS)
        snprintf(why, whylen, "cuMemcpyDtoDAsync on GPU %d: %s", gpu, cuda_drv_error(r));
    bench_gpu_free(gpu, a);
    bench_gpu_free(gpu, b);
    return rate;
}

#else /* built without the CUDA headers */

static int none(char *why, size_t whylen)
{
    if (why)
        snprintf(why, whylen, "this mcefa-bench was built without CUDA");
    return -EOPNOTSUPP;
}

int bench_gpu_count(char *why, size_t whylen)
{
    return none(why, whylen);
}

int bench_gpu_alloc(int gpu, size_t size, void **out, char *why, size_t whylen)
{
    (void)gpu;
    (void)size;
    (void)out;
    return none(why, whylen);
}

void bench_gpu_free(int gpu, void *p)
{
    (void)gpu;
    (void)p;
}

int bench_gpu_upload(int gpu, void *dst, const void *src, size_t len)
{
    (void)gpu;
    (void)dst;
    (void)src;
    (void)len;
    return -EOPNOTSUPP;
}

int bench_gpu_download(int gpu, void *dst, const void *src, size_t len)
{
    return bench_gpu_upload(gpu, dst, src, len);
}

int bench_gpu_zero(int gpu, void *dst, size_t len)
{
    return bench_gpu_upload(gpu, dst, NULL, len);
}

double bench_gpu_d2d(int gpu, uint64_t block, uint64_t batch, uint64_t buffer_size, double duration, char *why,
                     size_t whylen)
{
    (void)gpu;
    (void)block;
    (void)batch;
    (void)buffer_size;
    (void)duration;
    none(why, whylen);
    return -1;
}

#endif
