#include "memfd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

size_t shm_fd_page_size(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) == 0 && sf.f_type == HUGETLBFS_MAGIC && sf.f_bsize > 0)
        return (size_t)sf.f_bsize;
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

int shm_memfd_create(const char *name, size_t size, unsigned flags, size_t *size_out)
{
    unsigned mfd = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (flags & SHM_HUGE)
        mfd |= MFD_HUGETLB;
    if (size == 0)
        return -EINVAL;
    int fd = memfd_create(name, mfd);
    if (fd < 0)
        return -errno;
    size_t ps = shm_fd_page_size(fd);
    if (size > SIZE_MAX - ps) {
        close(fd);
        return -EOVERFLOW;
    }
    size_t real = (size + ps - 1) / ps * ps;
    if (ftruncate(fd, (off_t)real) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (size_out)
        *size_out = real;
    return fd;
}

int shm_memfd_check(int fd, uint64_t offset, uint64_t len, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) {
        *why = "the descriptor is not a memfd (allocate the buffer with mcefa_alloc)";
        return -EINVAL;
    }
    if (!(seals & F_SEAL_SHRINK)) {
        *why = "the memfd is not sealed against shrinking (add F_SEAL_SHRINK, or allocate with mcefa_alloc)";
        return -EPERM;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *why = "fstat of the memfd failed";
        return -errno;
    }
    if (len == 0 || offset > (uint64_t)st.st_size || len > (uint64_t)st.st_size - offset) {
        *why = "the range lies outside the memfd";
        return -ERANGE;
    }
    *why = "";
    return 0;
}

/* Pre-faults a mapping a slice at a time. MAP_POPULATE would fault it all
 * under one hold of the process's mmap lock: for gigabytes that stalls
 * every other thread that maps memory or takes a first-touch fault (the
 * daemon's event loop among them) for seconds. */
void shm_populate(char *p, size_t len, size_t ps)
{
    const size_t slice = (size_t)32 << 20;
    for (size_t off = 0; off < len; off += slice) {
        size_t n = len - off < slice ? len - off : slice;
#ifdef MADV_POPULATE_WRITE
        if (madvise(p + off, n, MADV_POPULATE_WRITE) == 0)
            continue;
#endif
        /* Older kernels: read-touch each page (shared memory allocates the
         * page on a read fault; the bytes stay as they are). */
        for (size_t i = 0; i < n; i += ps)
            (void)*(volatile char *)(p + off + i);
    }
}

void *shm_map(int fd, uint64_t offset, uint64_t len, int populate, void **base, size_t *base_len)
{
    size_t ps = shm_fd_page_size(fd);
    uint64_t start = offset / ps * ps;
    uint64_t end = offset + len;
    if (end < offset) {
        errno = EOVERFLOW;
        return NULL;
    }
    end = (end + ps - 1) / ps * ps;
    void *p = mmap(NULL, (size_t)(end - start), PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
    if (p == MAP_FAILED)
        return NULL;
    if (populate)
        shm_populate(p, (size_t)(end - start), ps);
    *base = p;
    *base_len = (size_t)(end - start);
    return (char *)p + (offset - start);
}
