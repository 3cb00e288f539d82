/* libmcefa: shareable host memory and its registration. */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "shm/memfd.h"

int mcefa_alloc(mcefa_client *c, size_t size, int numa_node, unsigned flags, void **out)
{
    if (!c || !out || size == 0)
        return client_error(-EINVAL, "mcefa_alloc: needs a client, a size > 0 and an out pointer");
    if (numa_node >= 0) {
        if (numa_available() < 0 || numa_node > numa_max_node())
            return client_error(-EINVAL, "mcefa_alloc: NUMA node %d does not exist on this host (max %d)",
                                numa_node, numa_available() < 0 ? -1 : numa_max_node());
    }
    const char *hint = (flags & MCEFA_ALLOC_HUGE) ? " with huge pages (are enough huge pages reserved? see "
                                                    "/proc/sys/vm/nr_hugepages)"
                                                  : "";
    size_t real;
    int fd = shm_memfd_create("mcefa-buffer", size, (flags & MCEFA_ALLOC_HUGE) ? SHM_HUGE : 0, &real);
    if (fd < 0)
        return client_error(fd, "mcefa_alloc: cannot create a %zu-byte memfd%s: %s", size, hint, strerror(-fd));
    void *p = mmap(NULL, real, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return client_error(e, "mcefa_alloc: cannot map %zu bytes%s: %s", real, hint, strerror(-e));
    }
    /* Bind before first touch so the pages come from the node. */
    if (numa_node >= 0)
        numa_tonode_memory(p, real, numa_node);
    alloc_rec *a = calloc(1, sizeof(*a));
    if (!a) {
        munmap(p, real);
        close(fd);
        return client_error(-ENOMEM, "out of memory");
    }
    a->ptr = p;
    a->len = real;
    a->fd = fd;
    a->numa_node = numa_node;
    pthread_mutex_lock(&c->alloc_lock);
    a->next = c->allocs;
    c->allocs = a;
    pthread_mutex_unlock(&c->alloc_lock);
    *out = p;
    return 0;
}

int mcefa_free(mcefa_client *c, void *ptr)
{
    pthread_mutex_lock(&c->alloc_lock);
    alloc_rec **pp = &c->allocs;
    while (*pp && (*pp)->ptr != ptr)
        pp = &(*pp)->next;
    alloc_rec *a = *pp;
    if (a)
        *pp = a->next;
    pthread_mutex_unlock(&c->alloc_lock);
    if (!a)
        return client_error(-EINVAL, "mcefa_free: %p was not returned by mcefa_alloc (or was freed already)", ptr);
    munmap(a->ptr, a->len);
    close(a->fd);
    free(a);
    return 0;
}

int mcefa_register_fd(mcefa_client *c, void *addr, size_t len, int fd, uint64_t offset, int numa_node)
{
    Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
    m.addr = (uint64_t)(uintptr_t)addr;
    m.length = len;
    m.fd_offset = offset;
    m.fd_count = 1;
    m.numa_node = numa_node;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_REGISTER_MEMORY;
    req.register_memory = &m;
    Mcefa__Response *resp;
    int rc = client_call(c, &req, &fd, 1, &resp);
    if (rc == 0)
        mcefa__response__free_unpacked(resp, NULL);
    return rc;
}

/* Ordinary memory of this process: the daemon copies it with
 * process_vm_readv/writev. Under Yama's ptrace_scope 1 that needs this
 * process to name the daemon as its ptracer (one per process: the last
 * client to register plain memory wins). */
static int register_plain(mcefa_client *c, void *addr, size_t len)
{
    struct ucred cr;
    socklen_t sl = sizeof(cr);
    if (getsockopt(c->sock, SOL_SOCKET, SO_PEERCRED, &cr, &sl) == 0 && cr.pid > 0 &&
        prctl(PR_SET_PTRACER, (unsigned long)cr.pid, 0, 0, 0) < 0 && errno != EINVAL)
        return client_error(-errno, "mcefa_register: cannot allow mcefad (pid %d) to reach this process's memory "
                                    "(prctl PR_SET_PTRACER): %s", (int)cr.pid, strerror(errno));
    Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
    m.addr = (uint64_t)(uintptr_t)addr;
    m.length = len;
    m.plain = true;
    m.numa_node = -1;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_REGISTER_MEMORY;
    req.register_memory = &m;
    Mcefa__Response *resp;
    int rc = client_call(c, &req, NULL, 0, &resp);
    if (rc == 0)
        mcefa__response__free_unpacked(resp, NULL);
    return rc;
}

int mcefa_register(mcefa_client *c, void *addr, size_t len)
{
    if (!c || !addr || len == 0)
        return client_error(-EINVAL, "mcefa_register: needs a client, an address and a length > 0");
    char *p = addr;
    int fd = -1, node = -1;
    uint64_t off = 0;
    pthread_mutex_lock(&c->alloc_lock);
    for (alloc_rec *a = c->allocs; a; a = a->next)
        if (p >= a->ptr && (size_t)(p - a->ptr) < a->len) {
            if (len <= a->len - (size_t)(p - a->ptr)) {
                fd = a->fd;
                off = (uint64_t)(p - a->ptr);
                node = a->numa_node;
            }
            break;
        }
    /* Duplicate under the lock so a concurrent mcefa_free cannot close the
     * descriptor before it is sent. */
    if (fd < 0) {
        pthread_mutex_unlock(&c->alloc_lock);
        int is_gpu;
        char why[512] = "";
        int rc = client_gpu_register(c, addr, len, &is_gpu, why, sizeof(why));
        if (is_gpu)
            return rc;
        return register_plain(c, addr, len);
    }
    int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0)
        dupfd = -errno;
    pthread_mutex_unlock(&c->alloc_lock);
    if (dupfd < 0)
        return client_error(dupfd, "mcefa_register: cannot duplicate the buffer's descriptor: %s",
                            strerror(-dupfd));
    int rc = mcefa_register_fd(c, addr, len, dupfd, off, node);
    close(dupfd);
    return rc;
}

int mcefa_unregister(mcefa_client *c, void *addr)
{
    Mcefa__UnregisterMemory m = MCEFA__UNREGISTER_MEMORY__INIT;
    m.addr = (uint64_t)(uintptr_t)addr;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_UNREGISTER_MEMORY;
    req.unregister_memory = &m;
    return client_call_simple(c, &req);
}
