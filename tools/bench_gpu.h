/* mcefa-bench's GPU side: buffers in GPU memory (cuMemAlloc, so clients
 * share them by CUDA IPC), moving bytes in and out of them for --check,
 * and the cuMemcpy device-to-device yardstick. The driver is loaded at run
 * time (MCEFA_CUDA_LIBRARY or libcuda.so.1). Every function makes the GPU's
 * primary context current on the calling thread. */
#ifndef MCEFA_BENCH_GPU_H
#define MCEFA_BENCH_GPU_H

#include <stddef.h>
#include <stdint.h>

/* GPUs this process sees, or a negative errno with why filled. */
int bench_gpu_count(char *why, size_t whylen);
int bench_gpu_alloc(int gpu, size_t size, void **out, char *why, size_t whylen);
void bench_gpu_free(int gpu, void *p);
int bench_gpu_upload(int gpu, void *dst, const void *src, size_t len);
int bench_gpu_download(int gpu, void *dst, const void *src, size_t len);
int bench_gpu_zero(int gpu, void *dst, size_t len);
/* cuMemcpyDtoDAsync of block-byte copies between two buffers of
 * buffer_size on gpu, batch copies per stream synchronisation, for
 * duration seconds: bytes per second, or a negative value with why. */
double bench_gpu_d2d(int gpu, uint64_t block, uint64_t batch, uint64_t buffer_size, double duration, char *why,
                     size_t whylen);

#endif
