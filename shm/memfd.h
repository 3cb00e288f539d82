/* Shareable host memory: sealed memfds that a client maps and passes to the
 * daemon. The seal matters: a memfd the owner could shrink would let it turn
 * the daemon's next memcpy into a SIGBUS. */
#ifndef MCEFA_SHM_MEMFD_H
#define MCEFA_SHM_MEMFD_H

#include <stddef.h>
#include <stdint.h>

#define SHM_HUGE 0x1u /* back with huge pages (hugetlbfs) */

/* Creates a memfd of at least size bytes (rounded up to the page or huge
 * page size; the real size goes to *size_out), shrink-sealed. Returns the fd
 * or a negative errno. */
int shm_memfd_create(const char *name, size_t size, unsigned flags, size_t *size_out);

/* Checks that fd is a shrink-sealed memfd holding [offset, offset+len).
 * Returns 0 or a negative errno; why is set to a static explanation. */
int shm_memfd_check(int fd, uint64_t offset, uint64_t len, const char **why);

/* Maps [offset, offset+len) of fd shared read-write. Handles offsets that
 * are not page (or huge page) aligned: *base and *base_len get what to munmap,
 * the return value points at offset. NULL with errno set on failure. */
void *shm_map(int fd, uint64_t offset, uint64_t len, int populate, void **base, size_t *base_len);

/* Faults in [p, p+len) of a shared mapping (ps: its page size) 32 MiB at a
 * time, so the mmap lock is never held for long. */
void shm_populate(char *p, size_t len, size_t ps);

/* Page size of the filesystem backing fd (huge page size on hugetlbfs). */
size_t shm_fd_page_size(int fd);

#endif
