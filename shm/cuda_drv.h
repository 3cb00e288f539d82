/* The CUDA driver API, loaded at run time. Nothing links libcuda: the client
 * library and the daemon dlopen it the first time they meet GPU memory, so a
 * host without CUDA keeps working for host memory. Compiled only where the
 * CUDA headers are (MCEFA_CUDA); the types come from the real cuda.h.
 *
 * cuda.h renames many entry points to versioned symbols (cuMemAlloc is
 * cuMemAlloc_v2); the table's members carry the same macros, so
 * cuda_drv.cuMemAlloc(...) calls the symbol the prototype names. */
#ifndef MCEFA_SHM_CUDA_DRV_H
#define MCEFA_SHM_CUDA_DRV_H

#include <stddef.h>

#include <cuda.h>

#define CUDA_DRV_FNS(X)                                                                                            \
    X(cuInit)                                                                                                      \
    X(cuDriverGetVersion)                                                                                          \
    X(cuGetErrorString)                                                                                            \
    X(cuGetErrorName)                                                                                              \
    X(cuDeviceGetCount)                                                                                            \
    X(cuDeviceGet)                                                                                                 \
    X(cuDeviceGetPCIBusId)                                                                                         \
    X(cuDeviceGetUuid)                                                                                             \
    X(cuDeviceGetName)                                                                                             \
    X(cuDeviceGetAttribute)                                                                                        \
    X(cuDeviceTotalMem)                                                                                            \
    X(cuDeviceGetByPCIBusId)                                                                                       \
    X(cuDeviceCanAccessPeer)                                                                                       \
    X(cuDevicePrimaryCtxRetain)                                                                                    \
    X(cuDevicePrimaryCtxRelease)                                                                                   \
    X(cuCtxSetCurrent)                                                                                             \
    X(cuCtxGetCurrent)                                                                                             \
    X(cuPointerGetAttribute)                                                                                       \
    X(cuMemGetAddressRange)                                                                                        \
    X(cuIpcGetMemHandle)                                                                                           \
    X(cuIpcOpenMemHandle)                                                                                          \
    X(cuIpcCloseMemHandle)                                                                                         \
    X(cuMemCreate)                                                                                                 \
    X(cuMemRelease)                                                                                                \
    X(cuMemAddressReserve)                                                                                         \
    X(cuMemAddressFree)                                                                                            \
    X(cuMemMap)                                                                                                    \
    X(cuMemUnmap)                                                                                                  \
    X(cuMemSetAccess)                                                                                              \
    X(cuMemGetAllocationGranularity)                                                                               \
    X(cuMemRetainAllocationHandle)                                                                                 \
    X(cuMemExportToShareableHandle)                                                                                \
    X(cuMemImportFromShareableHandle)                                                                              \
    X(cuMemGetAllocationPropertiesFromHandle)                                                                      \
    X(cuMemGetHandleForAddressRange)                                                                               \
    X(cuMemAlloc)                                                                                                  \
    X(cuMemFree)                                                                                                   \
    X(cuMemHostAlloc)                                                                                              \
    X(cuMemFreeHost)                                                                                               \
    X(cuMemHostRegister)                                                                                           \
    X(cuMemHostUnregister)                                                                                         \
    X(cuMemsetD8)                                                                                                  \
    X(cuMemcpyHtoD)                                                                                                \
    X(cuMemcpyDtoH)                                                                                                \
    X(cuMemcpyDtoD)                                                                                                \
    X(cuMemcpyHtoDAsync)                                                                                           \
    X(cuMemcpyDtoHAsync)                                                                                           \
    X(cuMemcpyDtoDAsync)                                                                                           \
    X(cuMemcpyPeerAsync)                                                                                           \
    X(cuStreamCreate)                                                                                              \
    X(cuStreamDestroy)                                                                                             \
    X(cuStreamSynchronize)                                                                                         \
    X(cuLaunchHostFunc)                                                                                            \
    X(cuEventCreate)                                                                                               \
    X(cuEventRecord)                                                                                               \
    X(cuEventQuery)                                                                                                \
    X(cuEventSynchronize)                                                                                          \
    X(cuEventDestroy)                                                                                              \
    X(cuEventElapsedTime)

typedef struct cuda_drv_table {
#define CUDA_DRV_MEMBER(n) __typeof__(n) *n;
    CUDA_DRV_FNS(CUDA_DRV_MEMBER)
#undef CUDA_DRV_MEMBER
} cuda_drv_table;

/* Filled by a successful cuda_drv_load; read-only afterwards. */
extern cuda_drv_table cuda_drv;

/* Loads the driver from path (NULL or "": libcuda.so.1, found the usual
 * way) and initialises it, once per process: once loaded, later calls
 * return success whatever path they name; a failure is retried only for a
 * different path. Returns 0 or a negative errno
 * (-ENOENT: no driver library; -ENOSYS: an entry point is missing, the
 * driver is too old; -ENODEV: cuInit failed, e.g. no GPU or no device
 * nodes); why gets a sentence that names the cause. Thread-safe. */
int cuda_drv_load(const char *path, char *why, size_t whylen);

/* "CUDA_ERROR_X (text)" for a driver result, in a static buffer per thread. */
const char *cuda_drv_error(CUresult rc);

#endif
