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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"

/* VMM allocations a registration may span (the daemon's bound too), and
 * how many go in one message: a frame's descriptors less the dmabuf. */
#define GPU_MAX_CHUNKS 4096
#define GPU_MSG_CHUNKS (WIRE_MAX_FDS - 1)

typedef struct gpu_share {
    Mcefa__GpuMemory gm;
    Mcefa__GpuChunk *chunk; /* VMM: every allocation the range spans, with its fd */
    Mcefa__GpuChunk **chunkp;
    int *chunk_fd;
    size_t nchunks, cap;
    int dmabuf_fd;
    CUipcMemHandle ipc;
    char bus_id[32];
    unsigned char uuid[16];
} gpu_share;

static int add_chunk(gpu_share *g, CUdeviceptr base, size_t size, int fd)
{
    if (g->nchunks == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 16;
        Mcefa__GpuChunk *c = realloc(g->chunk, ncap * sizeof(*c));
        if (c)
            g->chunk = c;
        int *f = c ? realloc(g->chunk_fd, ncap * sizeof(*f)) : NULL;
        if (f)
            g->chunk_fd = f;
        if (!f) {
            close(fd);
            return client_error(-ENOMEM, "out of memory");
        }
        g->cap = ncap;
    }
    Mcefa__GpuChunk *c = &g->chunk[g->nchunks];
    mcefa__gpu_chunk__init(c);
    c->addr = base;
    c->size = size;
    g->chunk_fd[g->nchunks++] = fd;
    return 0;
}

int client_cuda_load(char *why, size_t whylen)
{
    const char *p = getenv("MCEFA_CUDA_LIBRARY");
    return cuda_drv_load(p && p[0] ? p : NULL, why, whylen);
}

int client_gpu_bus_ids(char (*ids)[32], int max)
{
    char why[512];
    int n = 0;
    if (client_cuda_load(why, sizeof(why)) < 0 || cuda_drv.cuDeviceGetCount(&n) != CUDA_SUCCESS)
        return 0;
    for (int k = 0; k < n && k < max; k++) {
        CUdevice d;
        if (cuda_drv.cuDeviceGet(&d, k) != CUDA_SUCCESS ||
            cuda_drv.cuDeviceGetPCIBusId(ids[k], (int)sizeof(ids[k]), d) != CUDA_SUCCESS)
            ids[k][0] = 0; /* keeps the ordinals: an entry that matches no GPU of the daemon's */
    }
    return n;
}

/* The VMM chunks [addr, addr+len) lies in, one exported fd each. */
static int share_vmm(gpu_share *g, CUdeviceptr addr, size_t len)
{
    CUdeviceptr cur = addr, end = addr + len;
    while (cur < end) {
        if (g->nchunks == GPU_MAX_CHUNKS)
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
        int rc2 = add_chunk(g, base, size, fd);
        if (rc2 < 0)
            return rc2;
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
        base = g->chunk[0].addr;
        size = (size_t)(g->chunk[g->nchunks - 1].addr + g->chunk[g->nchunks - 1].size - base);
    }
    /* A dmabuf of the whole allocation, for NICs that register GPU memory
     * through one (EFA); optional: older drivers and kernels have none. */
    int dmabuf_ok = 0;
    if (cuda_drv.cuDeviceGetAttribute(&dmabuf_ok, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev) == CUDA_SUCCESS &&
        dmabuf_ok) {
        int fd = -1;
        if (cuda_drv.cuMemGetHandleForAddressRange(&fd, base, size, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0) ==
                CUDA_SUCCESS &&
            fd >= 0)
            g->dmabuf_fd = fd;
    }
    return 0;
}

int mcefa_have_cuda(void)
{
    return 1;
}

/* The daemon keeps one registration in parts per connection: another
 * thread's parts must not come in between. */
static pthread_mutex_t parts_lock = PTHREAD_MUTEX_INITIALIZER;

/* The registration's messages: one, or for VMM ranges spanning more than
 * GPU_MSG_CHUNKS allocations several for the same range, all but the last
 * marked `more` (the dmabuf rides on the last). Each is answered. */
static int send_share(mcefa_client *c, gpu_share *g, uint64_t addr, size_t len)
{
    if (g->nchunks && !(g->chunkp = calloc(g->nchunks, sizeof(*g->chunkp))))
        return client_error(-ENOMEM, "out of memory");
    for (size_t i = 0; i < g->nchunks; i++)
        g->chunkp[i] = &g->chunk[i];
    bool parts = g->nchunks > GPU_MSG_CHUNKS;
    if (parts)
        pthread_mutex_lock(&parts_lock);
    int ret = 0;
    size_t at = 0;
    do {
        size_t n = g->nchunks - at < GPU_MSG_CHUNKS ? g->nchunks - at : GPU_MSG_CHUNKS;
        bool last = at + n == g->nchunks;
        int fds[WIRE_MAX_FDS];
        unsigned nfds = 0;
        for (size_t i = 0; i < n; i++)
            fds[nfds++] = g->chunk_fd[at + i];
        g->gm.n_chunks = n;
        g->gm.chunks = n ? &g->chunkp[at] : NULL;
        g->gm.more = !last;
        g->gm.dmabuf = last && g->dmabuf_fd >= 0;
        if (g->gm.dmabuf)
            fds[nfds++] = g->dmabuf_fd;
        Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
        m.addr = addr;
        m.length = len;
        m.fd_count = nfds;
        m.numa_node = -1;
        m.gpu = &g->gm;
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.body_case = MCEFA__REQUEST__BODY_REGISTER_MEMORY;
        req.register_memory = &m;
        Mcefa__Response *resp;
        if ((ret = client_call(c, &req, fds, nfds, &resp)) < 0)
            break;
        mcefa__response__free_unpacked(resp, NULL);
        at += n;
    } while (at < g->nchunks);
    if (parts)
        pthread_mutex_unlock(&parts_lock);
    return ret;
}

int client_gpu_register(mcefa_client *c, void *addr, size_t len, int *is_gpu, char *why, size_t whylen)
{
    *is_gpu = 0;
    if (client_cuda_load(why, whylen) < 0)
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
        g->dmabuf_fd = -1;
        mcefa__gpu_memory__init(&g->gm);
        ret = share(g, p, len, dev);
    }
    cuda_drv.cuCtxSetCurrent(prev);
    cuda_drv.cuDevicePrimaryCtxRelease(dev);
    if (ret == 0)
        ret = send_share(c, g, (uint64_t)(uintptr_t)addr, len);
    if (g) {
        for (size_t i = 0; i < g->nchunks; i++)
            close(g->chunk_fd[i]);
        if (g->dmabuf_fd >= 0)
            close(g->dmabuf_fd);
        free(g->chunk);
        free(g->chunkp);
        free(g->chunk_fd);
    }
    free(g);
    return ret;
}

#else /* built without the CUDA headers */

#define NO_CUDA_TEXT "this libmcefa was built without CUDA"

int mcefa_have_cuda(void)
{
    return 0;
}

int client_cuda_load(char *why, size_t whylen)
{
    snprintf(why, whylen, NO_CUDA_TEXT " (rebuild with the CUDA headers: make CUDA=1)");
    return -ENOTSUP;
}

int client_gpu_bus_ids(char (*ids)[32], int max)
{
    (void)ids;
    (void)max;
    return 0;
}

int client_gpu_register(mcefa_client *c, void *addr, size_t len, int *is_gpu, char *why, size_t whylen)
{
    (void)c;
    (void)addr;
    (void)len;
    *is_gpu = 0;
    snprintf(why, whylen, NO_CUDA_TEXT ", so GPU memory cannot be registered");
    return 0;
}

#endif
