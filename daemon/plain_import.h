/* Host memory kind 4: a client's ordinary memory (malloc, numpy, torch CPU
 * tensors, mmap), which the daemon cannot map. It reaches those bytes
 * through /proc/<pid>/mem of the client process (pread / pwrite), named by
 * the pidfd of its socket taken when it connected and opened once while
 * that pidfd shows it alive: the file is bound to the address space the
 * client had then, so after its exit or an exec (a setuid program) every
 * copy fails instead of reaching the pid's next owner (docs/security.md,
 * "Plain host memory").
 *
 * The kernel allows it when the daemon may ptrace the client: the same uid
 * (and, with Yama's ptrace_scope 1, the client naming the daemon with
 * prctl(PR_SET_PTRACER), which libmcefa does), or CAP_SYS_PTRACE. */
#ifndef MCEFAD_PLAIN_IMPORT_H
#define MCEFAD_PLAIN_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "region.h"

/* A client process as the copies see it. Reference counted (its session
 * and each of its plain regions hold one); any thread. */
typedef struct plain_proc plain_proc;

/* The process on the other end of the connected Unix socket sock (pid from
 * SO_PEERCRED): call when it connects. */
int plain_proc_open(int sock, pid_t pid, uid_t uid, plain_proc **out, err *e);
void plain_proc_ref(plain_proc *p);
void plain_proc_unref(plain_proc *p);
pid_t plain_proc_pid(const plain_proc *p);

/* A region for the client range [addr, addr+length) of p, after checking
 * that the daemon can read its first and last byte. Any thread. */
int plain_import(plain_proc *p, uint64_t addr, uint64_t length, int numa_node, region **out, err *e);
/* The process whose memory r is, or NULL when the daemon maps r itself. */
plain_proc *plain_region_proc(const region *r);

/* Copies len bytes between the daemon's memory at local and the client
 * address raddr of p: into the client when to_proc. 0, -EFAULT (the
 * client's range is not mapped, or not writable, any more), -ESRCH (the
 * client has exited), -EPERM (access withdrawn). Any thread. */
int plain_copy(plain_proc *p, uint64_t raddr, void *local, size_t len, bool to_proc);

/* Text for an error plain_copy returned, naming the client. */
const char *plain_copy_error(int err);

#endif
