/* libmcefa: sharing a GPU buffer with the daemon. The CUDA driver is
 * loaded the first time a pointer is not host memory from mcefa_alloc; it
 * says whether the pointer is device memory, which allocation holds it and
 * how that allocation can be shared: a legacy IPC handle (cudaMalloc, the
 * PyTorch caching allocator) or one POSIX fd per physical allocation (VMM:
 * cuMemCreate, PyTorch expandable_segments). The GPU is named by PCI bus id,
 * which means the same GPU in every process whatever CUDA_VISIBLE_DEVICES
 * says. Built without CUDA headers, device pointers are refused with a
 * sentence saying so. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"

/* Leaves room for the dmabuf fd in one frame's descriptors. */
#define GPU_MAX_CHUNKS (WIRE_MAX_FDS - 1)

typedef struct gpu_share {
    Mcefa__GpuMemory gm;
    Mcefa__GpuChunk chunk[GPU_MAX_CHUNKS];
    Mcefa__GpuChunk *chunkp[GPU_MAX_CHUNKS];
    CUipcMemHandle ipc;
    char bus_id[32];
    unsigned char uuid[16];
    int fds[WIRE_MAX_FDS];
    unsigned nfds;
} gpu_share;

static const char *driver_path(void)
{
    const char *p = getenv("MCEFA_CUDA_LIBRARY");
    return p && p[0] ? p : NULL;
}

/* The VMM chunks [addr, addr+len) lies in, one exported fd each. */
static int share_vmm(gpu_share *g, CUdeviceptr addr, size_t len)
{
    CUdeviceptr cur = addr, end = addr + len;
    while (cur < end) {
        if (g->gm.n_chunks == GPU_MAX_CHUNKS)
            return client_error(-E2BIG,
                                "mcefa_register: 0x%llx + %zu spans more than %d VMM allocations; register it in "
                                "parts of at most %d allocations each (or allocate larger ones)",
                                (unsigned long long)addr, len, GPU_MAX_CHUNKS, GPU_MAX_CHUNKS);
        CUdeviceptr base = 0;
        size_t size = 0;
        CUresult rc = cuda_drv.cuMemGetAddressRange(&base, &size, cur);
        if (rc != CUDA_SUCCESS || size == 0 || base > cur)
            return client_error(-EFAULT,
                                "mcefa_register: 0x%llx + %zu is not mapped GPU memory all through (at 0x%llx: %s)",
                                (unsigned long long)addr, len, (unsigned long long)cur, cuda_drv_error(rc));
        CUmemGenericAllocationHandle h;
        rc = cuda_drv.cuMemRetainAllocationHandle(&h, (void *)(uintptr_t)cur);
        if (rc != CUDA_SUCCESS)
            return client_error(-EINVAL, "mcefa_register: cannot find the VMM allocation at 0x%llx: %s",
                                (unsigned long long)cur, cuda_drv_error(rc));
        int fd = -1;
        rc = cuda_drv.cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
        cuda_drv.cuMemRelease(h);
        if (rc != CUDA_SUCCESS)
            return client_error(-EPERM,
                                "mcefa_register: the VMM allocation at 0x%llx cannot be exported as a file "
                                "descriptor (%s): create it with CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR in "
                                "CUmemAllocationProp.requestedHandleTypes",
                                (unsigned long long)cur, cuda_drv_error(rc));
        Mcefa__GpuChunk *c = &g->chunk[g->gm.n_chunks];
        mcefa__gpu_chunk__init(c);
        c->addr = base;
        c->size = size;
        g->chunkp[g->gm.n_chunks++] = c;
        g->fds[g->nfds++] = fd;
        cur = base + size;
    }
    return 0;
}

/* Fills g for [addr, addr+len), on device dev (an ordinal of this
 * process). The caller made dev's primary context current. */
static int share(gpu_share *g, CUdeviceptr addr, size_t len, CUdevice dev)
{
    CUresult rc;
    if ((rc = cuda_drv.cuDeviceGetPCIBusId(g->bus_id, sizeof(g->bus_id), dev)) != CUDA_SUCCESS)
        return client_error(-ENODEV, "mcefa_register: cannot read the PCI bus id of GPU %d: %s", (int)dev,
                            cuda_drv_error(rc));
    CUuuid uu;
    if (cuda_drv.cuDeviceGetUuid(&uu, dev) == CUDA_SUCCESS) {
        memcpy(g->uuid, uu.bytes, sizeof(g->uuid));
        g->gm.uuid.data = g->uuid;
        g->gm.uuid.len = sizeof(g->uuid);
    }
    g->gm.bus_id = g->bus_id;
    int legacy = 0;
    if (cuda_drv.cuPointerGetAttribute(&legacy, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, addr) !=
        CUDA_SUCCESS)
        legacy = 0;
    CUdeviceptr base = 0;
    size_t size = 0;
    if (legacy) {
        if ((rc = cuda_drv.cuMemGetAddressRange(&base, &size, addr)) != CUDA_SUCCESS)
            return client_error(-EFAULT, "mcefa_register: cannot find the allocation that holds 0x%llx: %s",
                                (unsigned long long)addr, cuda_drv_error(rc));
        if (addr - base > size || len > size - (addr - base))
            return client_error(-EINVAL,
                                "mcefa_register: 0x%llx + %zu runs past the end of its GPU allocation 0x%llx + "
                                "%zu; register ranges inside one cudaMalloc allocation",
                                (unsigned long long)addr, len, (unsigned long long)base, size);
        if ((rc = cuda_drv.cuIpcGetMemHandle(&g->ipc, base)) != CUDA_SUCCESS)
            return client_error(-EPERM, "mcefa_register: cannot make a CUDA IPC handle of 0x%llx: %s",
                                (unsigned long long)base, cuda_drv_error(rc));
        g->gm.share = MCEFA__GPU_SHARE__GPU_SHARE_IPC;
        g->gm.ipc_handle.data = (uint8_t *)g->ipc.reserved;
        g->gm.ipc_handle.len = sizeof(g->ipc.reserved);
        g->gm.alloc_base = base;
        g->gm.alloc_size = size;
    } else {
        unsigned long long types = 0;
        if (cuda_drv.cuPointerGetAttribute(&types, CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES, addr) !=
                CUDA_SUCCESS ||
            !(types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
            return client_error(
                -EPERM,
                "mcefa_register: 0x%llx is GPU memory that cannot be shared with another process: it is neither "
                "cudaMalloc memory (CUDA IPC) nor a cuMemCreate allocation with "
                "CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR in requestedHandleTypes. Allocate it one of those ways "
                "(PyTorch: without expandable_segments in PYTORCH_CUDA_ALLOC_CONF the caching allocator uses "
                "cudaMalloc)",
                (unsigned long long)addr);
        g->gm.share = MCEFA__GPU_SHARE__GPU_SHARE_VMM;
        int rc2 = share_vmm(g, addr, len);
        if (rc2 < 0)
            return rc2;
        g->gm.chunks = g->chunkp;
        base = g->chunk[0].addr;
        size = (size_t)(g->chunk[g->gm.n_chunks - 1].addr + g->chunk[g->gm.n_chunks - 1].size - base);
    }
    /* A dmabuf of the whole allocation, for NICs that register GPU memory
     * through one (EFA); optional: older drivers and kernels have none. */
    int dmabuf_ok = 0;
    if (cuda_drv.cuDeviceGetAttribute(&dmabuf_ok, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev) == CUDA_SUCCESS &&
        dmabuf_ok) {
        int fd = -1;
        if (cuda_drv.cuMemGetHandleForAddressRange(&fd, base, size, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0) ==
                CUDA_SUCCESS &&
            fd >= 0) {
            g->fds[g->nfds++] = fd;
            g->gm.dmabuf = 1;
        }
    }
    return 0;
}

int mcefa_have_cuda(void)
{
    return 1;
}

int client_gpu_register(mcefa_client *c, void *addr, size_t len, int *is_gpu, char *why, size_t whylen)
{
    *is_gpu = 0;
    if (cuda_drv_load(driver_path(), why, whylen) < 0)
        return 0; /* no driver: not device memory, as far as anyone here can tell */
    CUdeviceptr p = (CUdeviceptr)(uintptr_t)addr;
    unsigned int mtype = 0;
    if (cuda_drv.cuPointerGetAttribute(&mtype, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p) != CUDA_SUCCESS ||
        mtype != CU_MEMORYTYPE_DEVICE) {
        snprintf(why, whylen, "the CUDA driver does not know it as GPU memory");
        return 0;
    }
    *is_gpu = 1;
    int ordinal = -1;
    CUresult rc = cuda_drv.cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p);
    CUdevice dev;
    if (rc != CUDA_SUCCESS || ordinal < 0 || cuda_drv.cuDeviceGet(&dev, ordinal) != CUDA_SUCCESS)
        return client_error(-ENODEV, "mcefa_register: cannot tell which GPU holds %p: %s", addr,
                            cuda_drv_error(rc));
    /* The calling thread may have no context (or another GPU's); IPC and
     * export calls want the allocation's, so borrow the primary one. */
    CUcontext prev = NULL, ctx = NULL;
    cuda_drv.cuCtxGetCurrent(&prev);
    if ((rc = cuda_drv.cuDevicePrimaryCtxRetain(&ctx, dev)) != CUDA_SUCCESS)
        return client_error(-ENODEV, "mcefa_register: cannot use GPU %d: %s", ordinal, cuda_drv_error(rc));
    cuda_drv.cuCtxSetCurrent(ctx);
    gpu_share *g = calloc(1, sizeof(*g));
    int ret = g ? 0 : client_error(-ENOMEM, "out of memory");
    if (g) {
        mcefa__gpu_memory__init(&g->gm);
        ret = share(g, p, len, dev);
    }
    cuda_drv.cuCtxSetCurrent(prev);
    cuda_drv.cuDevicePrimaryCtxRelease(dev);
    if (ret == 0) {
        Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
        m.addr = (uint64_t)(uintptr_t)addr;
        m.length = len;
        m.fd_count = g->nfds;
        m.numa_node = -1;
        m.gpu = &g->gm;
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.body_case = MCEFA__REQUEST__BODY_REGISTER_MEMORY;
        req.register_memory = &m;
        Mcefa__Response *resp;
        ret = client_call(c, &req, g->fds, g->nfds, &resp);
        if (ret == 0)
            mcefa__response__free_unpacked(resp, NULL);
    }
    if (g)
        for (unsigned i = 0; i < g->nfds; i++)
            close(g->fds[i]);
    free(g);
    return ret;
}

#else /* built without the CUDA headers */

int mcefa_have_cuda(void)
{
    return 0;
}

int client_gpu_register(mcefa_client *c, void *addr, size_t len, int *is_gpu, char *why, size_t whylen)
{
    (void)c;
    (void)addr;
    (void)len;
    *is_gpu = 0;
    snprintf(why, whylen, "this libmcefa was built without CUDA, so GPU memory cannot be registered");
    return 0;
}

#endif
