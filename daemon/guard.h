/* Copies between client mappings that survive a fault in them. A client's
 * memory can go away under the daemon (SIGBUS: a hugetlb pool ran out, a
 * memfd was punched); such a copy fails with -EFAULT instead of killing the
 * daemon. Used by the copy pool and by GPU staging. */
#ifndef MCEFAD_GUARD_H
#define MCEFAD_GUARD_H

#include <stddef.h>

/* Installs the SIGBUS handler (once, before any copy thread starts). */
int guard_init(void);
/* memcpy (memmove for overlapping ranges); 0, or -EFAULT with *fault_src
 * 1 when the source faulted, 0 when the destination did. */
int guard_copy(void *dst, const void *src, size_t len, int *fault_src);

#endif
