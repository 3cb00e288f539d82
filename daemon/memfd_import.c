#include "memfd_import.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

#include "shm/memfd.h"

static void memfd_release(region *r)
{
    if (r->map_base)
        munmap(r->map_base, r->map_len);
}

static const region_ops memfd_ops = {.kind = REGION_HOST_MEMFD, .release = memfd_release};

int memfd_import(int fd, uint64_t offset, uint64_t addr, uint64_t length, int numa_node, bool populate,
                 region **out, err *e)
{
    const char *why;
    int rc = shm_memfd_check(fd, offset, length, &why);
    if (rc < 0)
        return err_set(e, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": %s", addr, length, why);
    void *base;
    size_t base_len;
    void *ptr = shm_map(fd, offset, length, populate, &base, &base_len);
    if (!ptr) {
        rc = -errno;
        return err_set(e, rc, "cannot map 0x%" PRIx64 " + %" PRIu64 " into the daemon: %s", addr, length,
                       strerror(-rc));
    }
    region *r = region_create(&memfd_ops, addr, length, ptr, numa_node);
    if (!r) {
        munmap(base, base_len);
        return err_set(e, -ENOMEM, "out of memory registering a region");
    }
    r->map_base = base;
    r->map_len = base_len;
    *out = r;
    return 0;
}
