/* Host memory kind 4: a client's ordinary memory (malloc, numpy, torch CPU
 * tensors, mmap), which the daemon cannot map. It reaches those bytes by
 * cross-memory attach (process_vm_readv / process_vm_writev) into the
 * client process, named by a pidfd taken while its socket is connected, so
 * a pid reused after the client died is never copied into (docs/security.md,
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
 * SO_PEERCRED). */
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
