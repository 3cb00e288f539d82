/* libefa at run time (efa_dev.h). Debian's libefa1 has no development
 * package here, so the little of its ABI we use is declared below, as
 * rdma-core defines it (providers/efa/efadv.h, symbol version EFA_1.1;
 * libibverbs/verbs.h, IBVERBS_1.1). efadv_query_device fills at most the
 * inlen bytes it is given, so an older libefa answers the fields it knows
 * and a newer one the ones we ask for. */
#include "efa_dev.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<infiniband/efadv.h>)
#include <infiniband/efadv.h>
#define EFA_DEV_HAVE_HEADER 1
#endif
#endif

struct ibv_device;
struct ibv_context;

/* struct efadv_device_attr as rdma-core defines it now (inline_buf_size_ex
 * took two bytes that were reserved before, so the size never changed);
 * older libefa leave device_caps or max_rdma_size zero. */
typedef struct efa_dev_abi_attr {
    uint64_t comp_mask;
    uint32_t max_sq_wr;
    uint32_t max_rq_wr;
    uint16_t max_sq_sge;
    uint16_t max_rq_sge;
    uint16_t inline_buf_size;
    uint16_t inline_buf_size_ex;
    uint32_t device_caps;
    uint32_t max_rdma_size;
} efa_dev_abi_attr;

/* EFADV_DEVICE_ATTR_CAPS_RDMA_READ / _RDMA_WRITE */
#define EFA_DEV_CAP_RDMA_READ (1u << 0)
#define EFA_DEV_CAP_RDMA_WRITE (1u << 3)

#ifdef EFA_DEV_HAVE_HEADER
/* Where the real header is installed, hold our copy to it. */
_Static_assert(offsetof(struct efadv_device_attr, device_caps) == offsetof(efa_dev_abi_attr, device_caps),
               "efadv_device_attr layout");
_Static_assert(offsetof(struct efadv_device_attr, max_rdma_size) == offsetof(efa_dev_abi_attr, max_rdma_size),
               "efadv_device_attr layout");
_Static_assert(EFADV_DEVICE_ATTR_CAPS_RDMA_READ == EFA_DEV_CAP_RDMA_READ, "efadv caps");
#endif

/* Why the libraries are not usable, once load() failed. */
static char load_why[200];

static struct {
    void *verbs, *efa;
    bool tried;
    struct ibv_device **(*get_device_list)(int *);
    void (*free_device_list)(struct ibv_device **);
    const char *(*get_device_name)(struct ibv_device *);
    struct ibv_context *(*open_device)(struct ibv_device *);
    int (*close_device)(struct ibv_context *);
    int (*query_device)(struct ibv_context *, efa_dev_abi_attr *, uint32_t);
} lib;

static bool load(void)
{
    if (lib.tried)
        return lib.query_device != NULL;
    lib.tried = true;
    /* RTLD_LOCAL: nothing of ours resolves against them by accident. */
    lib.verbs = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
    lib.efa = lib.verbs ? dlopen("libefa.so.1", RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!lib.efa) {
        snprintf(load_why, sizeof(load_why), "%s (install rdma-core's libefa1 and libibverbs1)", dlerror());
        efa_dev_unload();
        lib.tried = true;
        return false;
    }
    *(void **)&lib.get_device_list = dlsym(lib.verbs, "ibv_get_device_list");
    *(void **)&lib.free_device_list = dlsym(lib.verbs, "ibv_free_device_list");
    *(void **)&lib.get_device_name = dlsym(lib.verbs, "ibv_get_device_name");
    *(void **)&lib.open_device = dlsym(lib.verbs, "ibv_open_device");
    *(void **)&lib.close_device = dlsym(lib.verbs, "ibv_close_device");
    *(void **)&lib.query_device = dlsym(lib.efa, "efadv_query_device");
    if (!lib.get_device_list || !lib.free_device_list || !lib.get_device_name || !lib.open_device ||
        !lib.close_device || !lib.query_device) {
        snprintf(load_why, sizeof(load_why), "libibverbs.so.1 or libefa.so.1 lacks a function mcefad needs (%s)",
                 dlerror());
        efa_dev_unload();
        lib.tried = true;
        return false;
    }
    return true;
}

int efa_dev_query(const char *device, efa_dev_attr *out, err *e)
{
    memset(out, 0, sizeof(*out));
    if (!load())
        return err_set(e, -ENOSYS, "libefa not loaded: %s", load_why);
    int n = 0;
    struct ibv_device **list = lib.get_device_list(&n);
    if (!list)
        return err_set(e, -errno ? -errno : -ENODEV, "libibverbs lists no RDMA devices: %s", strerror(errno));
    struct ibv_device *dev = NULL;
    for (int i = 0; i < n && !dev; i++)
        if (!strcmp(lib.get_device_name(list[i]), device))
            dev = list[i];
    int rc = 0;
    struct ibv_context *ctx = dev ? lib.open_device(dev) : NULL;
    if (!dev) {
        rc = err_set(e, -ENODEV, "libibverbs has no device named %s", device);
    } else if (!ctx) {
        rc = err_set(e, -errno ? -errno : -EIO, "cannot open RDMA device %s: %s", device, strerror(errno));
    } else {
        efa_dev_abi_attr a;
        memset(&a, 0, sizeof(a));
        int q = lib.query_device(ctx, &a, sizeof(a)); /* a positive errno on failure */
        if (q) {
            rc = err_set(e, -q, "efadv_query_device(%s) failed: %s", device, strerror(q));
        } else {
            *out = (efa_dev_attr){
                .known = true,
                .rdma_read = (a.device_caps & EFA_DEV_CAP_RDMA_READ) != 0,
                .rdma_write = (a.device_caps & EFA_DEV_CAP_RDMA_WRITE) != 0,
                .max_rdma_size = a.max_rdma_size,
                .max_sq_wr = a.max_sq_wr,
                .max_rq_wr = a.max_rq_wr,
                .max_sq_sge = a.max_sq_sge,
                .max_rq_sge = a.max_rq_sge,
                .inline_buf_size = a.inline_buf_size,
                .device_caps = a.device_caps,
            };
        }
        lib.close_device(ctx);
    }
    lib.free_device_list(list);
    return rc;
}

void efa_dev_unload(void)
{
    if (lib.efa)
        dlclose(lib.efa);
    if (lib.verbs)
        dlclose(lib.verbs);
    memset(&lib, 0, sizeof(lib));
}
