#include "gpu.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char driver_path[512];

void gpu_init(const char *path)
{
    snprintf(driver_path, sizeof(driver_path), "%s", path ? path : "");
}

#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"

typedef struct gpu_dev {
    CUdevice dev;
    _Atomic(CUcontext) ctx; /* primary, retained on first use (ctx_lock) */
    char bus_id[32];
    unsigned char uuid[16];
    char name[96];
    unsigned imports; /* info_lock */
    uint64_t import_bytes;
} gpu_dev;

/* One allocation of a client, mapped once into the daemon. */
typedef struct gpu_alloc {
    struct gpu_alloc *next;
    int share, dev;
    unsigned char ipc[64];         /* IPC: the key */
    uint64_t size;                 /* IPC: the mapping's real size; VMM: the chunk's */
    CUdeviceptr dptr;              /* IPC: the daemon's mapping */
    CUmemGenericAllocationHandle h; /* VMM: the imported allocation */
    int dmabuf_fd;
    unsigned refs;                 /* under lock */
} gpu_alloc;

/* A VMM region's own reservation, where its chunks are mapped. */
typedef struct gpu_vmm_map {
    CUdeviceptr va;
    size_t span;
    unsigned n;
    gpu_alloc **chunk; /* as many as the registration spans */
} gpu_vmm_map;

/* lock: loading, the import list and the CUDA calls on it (held across
 * slow ones, so it is never taken on the loop thread except to release).
 * Status and metrics read what loading wrote once (before loaded is set)
 * and the counters under info_lock, so they never wait for an import. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t info_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int loaded; /* 1 ready, -1 failed */
static char state_text[ERR_TEXT_MAX] = "not loaded";
static gpu_dev devs[GPU_MAX];
static unsigned ndevs;
static gpu_alloc *imports;

typedef struct release_item {
    struct release_item *next;
    bool ipc;
    int dev;
    void *what; /* gpu_alloc (IPC) or gpu_vmm_map */
} release_item;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    release_item *head, **tail;
    bool started, stopping;
    pthread_t thread;
} rel = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .tail = &rel.head};

static void *release_thread(void *arg);

static void normalise_bus_id(const char *in, char *out, size_t n)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%s%s", strchr(in, ':') == strrchr(in, ':') ? "0000:" : "", in);
    size_t i = 0;
    for (; tmp[i] && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)tmp[i]);
    out[i] = 0;
}

static void uuid_text(const unsigned char *u, char *out, size_t n)
{
    snprintf(out, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
             u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int load_locked(err *e)
{
    char why[512];
    if (cuda_drv_load(driver_path, why, sizeof(why)) < 0) {
        snprintf(state_text, sizeof(state_text), "%s", why);
        loaded = -1;
        return err_set(e, -ENODEV, "GPU memory cannot be used: %s", why);
    }
    int n = 0;
    CUresult rc = cuda_drv.cuDeviceGetCount(&n);
    if (rc != CUDA_SUCCESS || n <= 0) {
        snprintf(state_text, sizeof(state_text),
                 "the CUDA driver sees no GPU (%s): check the daemon's CUDA_VISIBLE_DEVICES, its access to "
                 "/dev/nvidia*, its cgroup or container",
                 rc != CUDA_SUCCESS ? cuda_drv_error(rc) : "0 devices");
        loaded = -1;
        return err_set(e, -ENODEV, "GPU memory cannot be used: %s", state_text);
    }
    for (int i = 0; i < n && ndevs < GPU_MAX; i++) {
        gpu_dev *d = &devs[ndevs];
        char raw[32] = "";
        CUuuid uu;
        if (cuda_drv.cuDeviceGet(&d->dev, i) != CUDA_SUCCESS ||
            cuda_drv.cuDeviceGetPCIBusId(raw, sizeof(raw), d->dev) != CUDA_SUCCESS)
            continue;
        normalise_bus_id(raw, d->bus_id, sizeof(d->bus_id));
        if (cuda_drv.cuDeviceGetUuid(&uu, d->dev) == CUDA_SUCCESS)
            memcpy(d->uuid, uu.bytes, sizeof(d->uuid));
        if (cuda_drv.cuDeviceGetName(d->name, sizeof(d->name), d->dev) != CUDA_SUCCESS)
            snprintf(d->name, sizeof(d->name), "GPU %d", i);
        ndevs++;
    }
    pthread_mutex_lock(&rel.lock);
    rel.started = !rel.stopping && pthread_create(&rel.thread, NULL, release_thread, NULL) == 0;
    pthread_mutex_unlock(&rel.lock);
    snprintf(state_text, sizeof(state_text), "ready");
    loaded = 1;
    for (unsigned i = 0; i < ndevs; i++)
        log_info("GPU %u: %s at %s", i, devs[i].name, devs[i].bus_id);
    return 0;
}

/* The staging area (gpu_host_area); pinned set once the driver took it. */
static struct {
    void *p;
    size_t len;
    pthread_mutex_t lock;
    bool tried;
    int dev; /* whose context holds the registration */
    _Atomic bool pinned;
} host_area = {.lock = PTHREAD_MUTEX_INITIALIZER};

void gpu_host_area(void *p, size_t len)
{
    host_area.p = p;
    host_area.len = len;
}

bool gpu_host_pinned(const void *p, size_t len)
{
    const char *a = host_area.p, *q = p;
    return atomic_load(&host_area.pinned) && q >= a && len <= host_area.len && (size_t)(q - a) <= host_area.len - len;
}

void gpu_pin_host_area(int dev)
{
    if (atomic_load(&host_area.pinned))
        return;
    pthread_mutex_lock(&host_area.lock);
    /* The context of the first GPU in use (retained for the daemon's life
     * anyway) owns the registration; portable, so every GPU's copies see
     * it pinned. Tried once: a refusal is not retried per registration. */
    CUcontext ctx = host_area.p && !host_area.tried ? gpu_context(dev) : NULL;
    if (!ctx) {
        pthread_mutex_unlock(&host_area.lock);
        return;
    }
    host_area.tried = true;
    host_area.dev = dev;
    CUresult rc = cuda_drv.cuCtxSetCurrent(ctx);
    if (rc == CUDA_SUCCESS)
        rc = cuda_drv.cuMemHostRegister(host_area.p, host_area.len, CU_MEMHOSTREGISTER_PORTABLE);
    if (rc == CUDA_SUCCESS) {
        atomic_store(&host_area.pinned, true);
        log_debug("staging memory (%zu bytes) page-locked for GPU copies", host_area.len);
    } else {
        log_warn("the CUDA driver would not page-lock the staging memory (%s): GPU copies to and from other hosts "
                 "go through the copy threads' bounce buffers, one host copy more",
                 cuda_drv_error(rc));
    }
    pthread_mutex_unlock(&host_area.lock);
}

int gpu_ensure(err *e)
{
    if (atomic_load(&loaded) > 0)
        return 0;
    pthread_mutex_lock(&lock);
    int rc = loaded == 0 ? load_locked(e) : 0;
    if (loaded < 0 && rc == 0)
        rc = err_set(e, -ENODEV, "GPU memory cannot be used: %s", state_text);
    pthread_mutex_unlock(&lock);
    return rc;
}

const char *gpu_state(void)
{
    /* Before loading is decided the text is the initial one; after, it was
     * written once before loaded was set. */
    return atomic_load(&loaded) ? state_text : "not loaded";
}

unsigned gpu_count(void)
{
    return atomic_load(&loaded) > 0 ? ndevs : 0;
}

int gpu_get_info(unsigned dev, gpu_info *out)
{
    if (dev >= gpu_count())
        return -ENODEV;
    snprintf(out->bus_id, sizeof(out->bus_id), "%s", devs[dev].bus_id);
    snprintf(out->name, sizeof(out->name), "%s", devs[dev].name);
    uuid_text(devs[dev].uuid, out->uuid, sizeof(out->uuid));
    pthread_mutex_lock(&info_lock);
    out->imports = devs[dev].imports;
    out->import_bytes = devs[dev].import_bytes;
    pthread_mutex_unlock(&info_lock);
    return 0;
}

const char *gpu_bus_id(int dev)
{
    return dev >= 0 && (unsigned)dev < gpu_count() ? devs[dev].bus_id : "?";
}

int gpu_dmabuf_supported(void)
{
    unsigned n = gpu_count();
    int all = n ? 1 : -1;
    for (unsigned i = 0; i < n; i++) {
        int v = 0;
        if (cuda_drv.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, devs[i].dev) != CUDA_SUCCESS ||
            !v)
            all = 0;
    }
    return all;
}

static void count_import(int dev, int sign, uint64_t bytes)
{
    pthread_mutex_lock(&info_lock);
    devs[dev].imports += (unsigned)sign;
    devs[dev].import_bytes += (uint64_t)sign * bytes;
    pthread_mutex_unlock(&info_lock);
}

/* Retained the first time a GPU is used (a context costs GPU memory: only
 * the GPUs clients use get one); copy threads read it without a lock. */
void *gpu_context(int dev)
{
    if (dev < 0 || (unsigned)dev >= gpu_count())
        return NULL;
    gpu_dev *d = &devs[dev];
    CUcontext c = atomic_load(&d->ctx);
    if (c)
        return c;
    pthread_mutex_lock(&ctx_lock);
    if (!(c = atomic_load(&d->ctx)) && cuda_drv.cuDevicePrimaryCtxRetain(&c, d->dev) == CUDA_SUCCESS)
        atomic_store(&d->ctx, c);
    pthread_mutex_unlock(&ctx_lock);
    return atomic_load(&d->ctx);
}

/* The daemon's index of the GPU the client named; the UUID decides when
 * given (MIG slices share a bus id), the bus id otherwise. */
static int find_dev(const gpu_desc *d, err *e)
{
    char want[32];
    normalise_bus_id(d->bus_id, want, sizeof(want));
    for (unsigned i = 0; i < ndevs; i++)
        if (d->has_uuid ? !memcmp(devs[i].uuid, d->uuid, 16) : !strcmp(devs[i].bus_id, want))
            return (int)i;
    char seen[256] = "";
    size_t off = 0;
    for (unsigned i = 0; i < ndevs && off < sizeof(seen); i++)
        off += (size_t)snprintf(seen + off, sizeof(seen) - off, "%s%s", i ? ", " : "", devs[i].bus_id);
    char uu[48] = "no UUID";
    if (d->has_uuid)
        uuid_text(d->uuid, uu, sizeof(uu));
    return err_set(e, -ENODEV,
                   "the GPU at %s (%s) is not visible to mcefad, which sees %s: check the daemon's "
                   "CUDA_VISIBLE_DEVICES, that its user may open /dev/nvidia* and its cgroup or container allows "
                   "that GPU",
                   want, uu, ndevs ? seen : "no GPU");
}

/* With lock held: the import of this allocation, opened if new; a
 * reference for the caller. */
static gpu_alloc *import_ipc_locked(int dev, gpu_desc *d, err *e)
{
    for (gpu_alloc *im = imports; im; im = im->next)
        if (im->share == 1 && !memcmp(im->ipc, d->ipc, sizeof(im->ipc))) {
            if (im->dev != dev) {
                err_set(e, -EINVAL, "the CUDA IPC handle of 0x%" PRIx64 " is memory of GPU %s, not of %s", d->alloc_base,
                        devs[im->dev].bus_id, devs[dev].bus_id);
                return NULL;
            }
            if (d->alloc_size > im->size) {
                err_set(e, -EINVAL,
                        "the CUDA IPC handle of 0x%" PRIx64 " maps %zu bytes, not the %" PRIu64
                        " the registration claims",
                        d->alloc_base, im->size, d->alloc_size);
                return NULL;
            }
            im->refs++;
            return im;
        }
    gpu_alloc *im = calloc(1, sizeof(*im));
    if (!im) {
        err_set(e, -ENOMEM, "out of memory importing GPU memory");
        return NULL;
    }
    CUipcMemHandle h;
    memcpy(h.reserved, d->ipc, sizeof(h.reserved));
    CUresult rc = cuda_drv.cuIpcOpenMemHandle(&im->dptr, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    if (rc != CUDA_SUCCESS) {
        free(im);
        err_set(e, rc == CUDA_ERROR_NOT_PERMITTED ? -EPERM : -EIO,
                "cannot open the CUDA IPC handle of 0x%" PRIx64 " on GPU %s: %s%s", d->alloc_base, devs[dev].bus_id,
                cuda_drv_error(rc),
                rc == CUDA_ERROR_NOT_PERMITTED ? " (the daemon may not map another process's GPU memory: same "
                                                 "container/IPC namespace, and no CUDA MPS restriction)"
                                               : " (did the process that made it exit?)");
        return NULL;
    }
    /* The real size, not the one the client claims: copies are bounded by
     * it, and a copy past a mapping poisons the daemon's GPU context. */
    CUdeviceptr b = 0;
    size_t sz = 0;
    int ordinal = -1;
    if (cuda_drv.cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, im->dptr) != CUDA_SUCCESS ||
        ordinal != (int)devs[dev].dev) {
        cuda_drv.cuIpcCloseMemHandle(im->dptr);
        free(im);
        err_set(e, -EINVAL, "the CUDA IPC handle of 0x%" PRIx64 " is not memory of GPU %s, as the registration claims",
                d->alloc_base, devs[dev].bus_id);
        return NULL;
    }
    if (cuda_drv.cuMemGetAddressRange(&b, &sz, im->dptr) != CUDA_SUCCESS || b != im->dptr || sz < d->alloc_size) {
        cuda_drv.cuIpcCloseMemHandle(im->dptr);
        free(im);
        err_set(e, -EINVAL,
                "the CUDA IPC handle of 0x%" PRIx64 " maps %zu bytes, not the %" PRIu64 " the registration claims",
                d->alloc_base, sz, d->alloc_size);
        return NULL;
    }
    im->share = 1;
    im->dev = dev;
    memcpy(im->ipc, d->ipc, sizeof(im->ipc));
    im->size = sz;
    im->dmabuf_fd = -1;
    im->refs = 1;
    im->next = imports;
    imports = im;
    count_import(dev, 1, sz);
    return im;
}

/* Every VMM registration imports the fds it brought: nothing tells two
 * descriptors of one allocation apart from two allocations (an allocator
 * may unmap and map new memory at the same address), and trusting a pid
 * and an address would let one client name another's memory. */
static gpu_alloc *import_vmm_locked(int dev, gpu_desc *d, unsigned i, err *e)
{
    gpu_alloc *im = calloc(1, sizeof(*im));
    if (!im) {
        err_set(e, -ENOMEM, "out of memory importing GPU memory");
        return NULL;
    }
    CUresult rc = cuda_drv.cuMemImportFromShareableHandle(&im->h, (void *)(uintptr_t)d->chunk_fd[i],
                                                          CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    if (rc != CUDA_SUCCESS) {
        free(im);
        err_set(e, -EINVAL, "cannot import the VMM allocation at 0x%" PRIx64 " from its file descriptor: %s",
                d->chunk_base[i], cuda_drv_error(rc));
        return NULL;
    }
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof(prop));
    if (cuda_drv.cuMemGetAllocationPropertiesFromHandle(&prop, im->h) != CUDA_SUCCESS ||
        prop.location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop.location.id != devs[dev].dev) {
        cuda_drv.cuMemRelease(im->h);
        free(im);
        err_set(e, -EINVAL, "the VMM allocation at 0x%" PRIx64 " is not memory of GPU %s, as the registration claims",
                d->chunk_base[i], devs[dev].bus_id);
        return NULL;
    }
    im->share = 2;
    im->dev = dev;
    im->size = d->chunk_size[i];
    im->dmabuf_fd = -1;
    im->refs = 1;
    im->next = imports;
    imports = im;
    count_import(dev, 1, im->size);
    return im;
}

/* Drops a reference; the last one closes the import in its GPU's
 * context (lock held). */
static void import_unref_locked(gpu_alloc *im)
{
    if (--im->refs)
        return;
    cuda_drv.cuCtxSetCurrent(gpu_context(im->dev));
    for (gpu_alloc **pp = &imports; *pp; pp = &(*pp)->next)
        if (*pp == im) {
            *pp = im->next;
            break;
        }
    if (im->share == 1)
        cuda_drv.cuIpcCloseMemHandle(im->dptr);
    else
        cuda_drv.cuMemRelease(im->h);
    if (im->dmabuf_fd >= 0)
        close(im->dmabuf_fd);
    count_import(im->dev, -1, im->size);
    free(im);
}

static void unmap_vmm_locked(gpu_vmm_map *m)
{
    if (m->va) {
        cuda_drv.cuMemUnmap(m->va, m->span);
        cuda_drv.cuMemAddressFree(m->va, m->span);
    }
    for (unsigned i = 0; i < m->n; i++)
        import_unref_locked(m->chunk[i]);
    free(m->chunk);
    free(m);
}

/* Releases run on a thread of their own: the last reference to a region
 * may go on the event loop (unregister, a client's exit), and unmapping
 * waits for the GPU and for lock, which an import holds across slow driver
 * calls. */
static void release_now(release_item *it)
{
    pthread_mutex_lock(&lock);
    cuda_drv.cuCtxSetCurrent(gpu_context(it->dev));
    if (it->ipc)
        import_unref_locked(it->what);
    else
        unmap_vmm_locked(it->what);
    pthread_mutex_unlock(&lock);
}

static void *release_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rel.lock);
    for (;;) {
        while (!rel.head && !rel.stopping)
            pthread_cond_wait(&rel.cond, &rel.lock);
        release_item *it = rel.head;
        if (!it)
            break; /* stopping, and nothing left */
        if (!(rel.head = it->next))
            rel.tail = &rel.head;
        pthread_mutex_unlock(&rel.lock);
        release_now(it);
        free(it);
        pthread_mutex_lock(&rel.lock);
    }
    pthread_mutex_unlock(&rel.lock);
    return NULL;
}

static void release_gpu(region *r)
{
    release_item *it = calloc(1, sizeof(*it));
    release_item local = {.ipc = r->ops->kind == REGION_CUDA_IPC, .dev = r->gpu, .what = r->map_base};
    pthread_mutex_lock(&rel.lock);
    bool queued = it && rel.started && !rel.stopping;
    if (queued) {
        *it = local;
        *rel.tail = it;
        rel.tail = &it->next;
        pthread_cond_signal(&rel.cond);
    }
    pthread_mutex_unlock(&rel.lock);
    if (!queued) {
        /* No thread (out of memory, or stopping): here, slowly, but done. */
        free(it);
        release_now(&local);
    }
}

void gpu_shutdown(void)
{
    pthread_mutex_lock(&rel.lock);
    bool started = rel.started;
    rel.stopping = true;
    pthread_cond_signal(&rel.cond);
    pthread_mutex_unlock(&rel.lock);
    if (started)
        pthread_join(rel.thread, NULL); /* after what was queued */
    if (atomic_exchange(&host_area.pinned, false) &&
        cuda_drv.cuCtxSetCurrent(gpu_context(host_area.dev)) == CUDA_SUCCESS)
        cuda_drv.cuMemHostUnregister(host_area.p);
}

static const region_ops ipc_ops = {.kind = REGION_CUDA_IPC, .release = release_gpu};
static const region_ops vmm_ops = {.kind = REGION_CUDA_VMM, .release = release_gpu};

/* With lock held: the chunks imported and mapped side by side into a
 * reservation of the daemon's, so the region is one contiguous range. */
static gpu_vmm_map *map_vmm_locked(int dev, gpu_desc *d, err *e)
{
    gpu_vmm_map *m = calloc(1, sizeof(*m));
    if (m && !(m->chunk = calloc(d->nchunks, sizeof(*m->chunk)))) {
        free(m);
        m = NULL;
    }
    if (!m) {
        err_set(e, -ENOMEM, "out of memory importing GPU memory");
        return NULL;
    }
    uint64_t base = d->chunk_base[0];
    m->span = (size_t)(d->chunk_base[d->nchunks - 1] + d->chunk_size[d->nchunks - 1] - base);
    for (unsigned i = 0; i < d->nchunks; i++) {
        if (!(m->chunk[i] = import_vmm_locked(dev, d, i, e)))
            goto fail;
        m->n++;
    }
    CUresult rc = cuda_drv.cuMemAddressReserve(&m->va, m->span, 0, 0, 0);
    if (rc != CUDA_SUCCESS) {
        m->va = 0;
        err_set(e, -ENOMEM, "cannot reserve %zu bytes of GPU address space in the daemon: %s", m->span,
                cuda_drv_error(rc));
        goto fail;
    }
    for (unsigned i = 0; i < m->n; i++) {
        rc = cuda_drv.cuMemMap(m->va + (d->chunk_base[i] - base), d->chunk_size[i], 0, m->chunk[i]->h, 0);
        if (rc != CUDA_SUCCESS) {
            /* Unmap what was mapped so far: cuMemUnmap wants whole mappings. */
            for (unsigned k = 0; k < i; k++)
                cuda_drv.cuMemUnmap(m->va + (d->chunk_base[k] - base), d->chunk_size[k]);
            cuda_drv.cuMemAddressFree(m->va, m->span);
            m->va = 0;
            err_set(e, -EINVAL,
                    "cannot map the VMM allocation at 0x%" PRIx64 " (%" PRIu64 " bytes) into the daemon: %s "
                    "(is it smaller than the client says?)",
                    d->chunk_base[i], d->chunk_size[i], cuda_drv_error(rc));
            goto fail;
        }
    }
    /* Mapped memory is reachable only from the GPUs granted access: its
     * own, and every GPU of the daemon that can reach it as a peer (copies
     * to and from other GPUs run there). */
    CUmemAccessDesc acc[GPU_MAX];
    size_t nacc = 0;
    for (unsigned g = 0; g < ndevs; g++) {
        int peer = (int)g == dev;
        if (!peer && cuda_drv.cuDeviceCanAccessPeer(&peer, devs[g].dev, devs[dev].dev) != CUDA_SUCCESS)
            peer = 0;
        if (peer)
            acc[nacc++] = (CUmemAccessDesc){.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = devs[g].dev},
                                            .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    }
    if ((rc = cuda_drv.cuMemSetAccess(m->va, m->span, acc, nacc)) != CUDA_SUCCESS) {
        err_set(e, -EINVAL, "cannot enable access to GPU memory mapped at 0x%" PRIx64 ": %s", base,
                cuda_drv_error(rc));
        goto fail;
    }
    return m;
fail:
    unmap_vmm_locked(m);
    return NULL;
}

static bool is_gpu_region(const region *r)
{
    return r->ops == &ipc_ops || r->ops == &vmm_ops;
}

int gpu_region_device(const region *r)
{
    return is_gpu_region(r) && r->gpu >= 0 && (unsigned)r->gpu < gpu_count() ? (int)devs[r->gpu].dev : -1;
}

int gpu_region_dmabuf(const region *r, int *fd, uint64_t *offset)
{
    if (!is_gpu_region(r))
        return -ENOENT;
    /* The dmabuf covers the allocation (IPC) or every chunk of the VMM
     * range from the first: its first byte is the import's first byte. */
    const gpu_alloc *im = r->ops == &ipc_ops ? r->map_base : ((const gpu_vmm_map *)r->map_base)->chunk[0];
    CUdeviceptr start = r->ops == &ipc_ops ? im->dptr : ((const gpu_vmm_map *)r->map_base)->va;
    if (im->dmabuf_fd < 0)
        return -ENOENT;
    *fd = im->dmabuf_fd;
    *offset = (uint64_t)((CUdeviceptr)(uintptr_t)r->ptr - start);
    return 0;
}

int gpu_import(gpu_desc *d, uint64_t addr, uint64_t length, region **out, err *e)
{
    int rc = gpu_ensure(e);
    if (rc < 0) {
        gpu_desc_close(d);
        return rc;
    }
    pthread_mutex_lock(&lock);
    int dev = find_dev(d, e);
    CUcontext ctx = dev >= 0 ? gpu_context(dev) : NULL;
    if (dev >= 0 && !ctx)
        dev = err_set(e, -ENODEV, "cannot create a context on GPU %s", devs[dev].bus_id);
    region *r = NULL;
    if (dev >= 0) {
        cuda_drv.cuCtxSetCurrent(ctx);
        if (d->share == 1) {
            gpu_alloc *im = import_ipc_locked(dev, d, e);
            if (im && (r = region_create(&ipc_ops, addr, length, (char *)(uintptr_t)(im->dptr + (addr - d->alloc_base)),
                                         -1))) {
                r->map_base = im;
                r->gpu = dev;
                if (im->dmabuf_fd < 0) {
                    im->dmabuf_fd = d->dmabuf_fd;
                    d->dmabuf_fd = -1;
                }
            } else if (im) {
                import_unref_locked(im);
                err_set(e, -ENOMEM, "out of memory registering a region");
            }
        } else {
            gpu_vmm_map *m = map_vmm_locked(dev, d, e);
            if (m && (r = region_create(&vmm_ops, addr, length,
                                        (char *)(uintptr_t)(m->va + (addr - d->chunk_base[0])), -1))) {
                r->map_base = m;
                r->gpu = dev;
                if (m->chunk[0]->dmabuf_fd < 0) {
                    m->chunk[0]->dmabuf_fd = d->dmabuf_fd;
                    d->dmabuf_fd = -1;
                }
            } else if (m) {
                unmap_vmm_locked(m);
                err_set(e, -ENOMEM, "out of memory registering a region");
            }
        }
    }
    pthread_mutex_unlock(&lock);
    gpu_desc_close(d);
    if (!r)
        return e->code ? e->code : -EIO;
    *out = r;
    return 0;
}

#else /* built without the CUDA headers */

void gpu_shutdown(void)
{
}

void gpu_host_area(void *p, size_t len)
{
    (void)p;
    (void)len;
}

bool gpu_host_pinned(const void *p, size_t len)
{
    (void)p;
    (void)len;
    return false;
}

void gpu_pin_host_area(int dev)
{
    (void)dev;
}

int gpu_ensure(err *e)
{
    return err_set(e, -EOPNOTSUPP, "GPU memory cannot be used: this mcefad was built without CUDA");
}

const char *gpu_state(void)
{
    return "built without CUDA";
}

unsigned gpu_count(void)
{
    return 0;
}

int gpu_get_info(unsigned dev, gpu_info *out)
{
    (void)dev;
    (void)out;
    return -ENODEV;
}

const char *gpu_bus_id(int dev)
{
    (void)dev;
    return "?";
}

void *gpu_context(int dev)
{
    (void)dev;
    return NULL;
}

int gpu_dmabuf_supported(void)
{
    return -1;
}

int gpu_region_device(const region *r)
{
    (void)r;
    return -1;
}

int gpu_region_dmabuf(const region *r, int *fd, uint64_t *offset)
{
    (void)r;
    (void)fd;
    (void)offset;
    return -ENOENT;
}

int gpu_import(gpu_desc *d, uint64_t addr, uint64_t length, region **out, err *e)
{
    (void)addr;
    (void)length;
    (void)out;
    gpu_desc_close(d);
    return gpu_ensure(e);
}

#endif
