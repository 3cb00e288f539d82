#include "plain_import.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 */
#endif

struct plain_proc {
    _Atomic int refs;
    pid_t pid;
    uid_t uid;
    int pidfd;
    /* /proc/<pid>/mem, opened at the first plain registration: it is bound
     * to the address space the process had then, so after an exec (of a
     * setuid program, say) or its exit every copy through it fails instead
     * of reaching whatever now runs under that pid. */
    _Atomic int memfd;
};

static int ptrace_scope(void)
{
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

int plain_proc_open(int sock, pid_t pid, uid_t uid, plain_proc **out, err *e)
{
    /* The socket's own pidfd names the process that connected even if its
     * pid was reused since; older kernels give a pidfd by pid, taken while
     * the connection is up. */
    int pidfd = -1;
    socklen_t sl = sizeof(pidfd);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &sl) < 0 || pidfd < 0) {
        /* Only a kernel without the option falls back; any other failure
         * (the client already exited) must not name its pid's successor. */
        if (errno != ENOPROTOOPT)
            return err_set(e, -ESRCH, "client pid %d: %s", (int)pid, strerror(errno));
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    }
    if (pidfd < 0)
        return err_set(e, -errno, "cannot open a pidfd for client pid %d: %s", (int)pid, strerror(errno));
    plain_proc *p = calloc(1, sizeof(*p));
    if (!p) {
        close(pidfd);
        return err_set(e, -ENOMEM, "out of memory");
    }
    atomic_init(&p->refs, 1);
    p->pid = pid;
    p->uid = uid;
    p->pidfd = pidfd;
    atomic_init(&p->memfd, -1);
    *out = p;
    return 0;
}

void plain_proc_ref(plain_proc *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void plain_proc_unref(plain_proc *p)
{
    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    close(p->pidfd);
    if (atomic_load(&p->memfd) >= 0)
        close(atomic_load(&p->memfd));
    free(p);
}

pid_t plain_proc_pid(const plain_proc *p)
{
    return p->pid;
}

/* A pidfd turns readable when its process exits: from then on its pid may
 * name somebody else. */
static bool gone(const plain_proc *p)
{
    struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
    return poll(&pf, 1, 0) != 0;
}

/* The uids of pid now (real, effective, saved, filesystem) all equal uid:
 * not a setuid program it exec'd since it connected. */
static bool same_user(pid_t pid, uid_t uid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned r, e, s, fs;
        if (sscanf(line, "Uid: %u %u %u %u", &r, &e, &s, &fs) == 4) {
            ok = r == uid && e == uid && s == uid && fs == uid;
            break;
        }
    }
    fclose(f);
    return ok;
}

/* Opens /proc/<pid>/mem for p once: then (the pidfd still alive) the pid
 * is still p's process, and its uids say it is still the program that
 * connected. Any thread; the first opener wins. */
static int open_mem(plain_proc *p)
{
    int fd = atomic_load(&p->memfd);
    if (fd >= 0)
        return fd;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)p->pid);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == EACCES ? -EPERM : errno == ENOENT ? -ESRCH : -errno;
    if (gone(p)) {
        close(fd);
        return -ESRCH;
    }
    if (p->uid != 0 && !same_user(p->pid, p->uid)) {
        close(fd);
        return -EPERM;
    }
    int none = -1;
    if (!atomic_compare_exchange_strong(&p->memfd, &none, fd)) {
        close(fd);
        fd = none;
    }
    return fd;
}

int plain_copy(plain_proc *p, uint64_t raddr, void *local, size_t len, bool to_proc)
{
    int fd = open_mem(p);
    if (fd < 0)
        return fd;
    char *l = local;
    while (len) {
        ssize_t n = to_proc ? pwrite(fd, l, len, (off_t)raddr) : pread(fd, l, len, (off_t)raddr);
        if (n < 0 && errno == EINTR)
            continue;
        /* 0: the address space is gone (exit or exec); EIO: nothing mapped
         * there (or not writable). */
        if (n == 0)
            return -ESRCH;
        if (n < 0)
            return errno == EIO || errno == EFAULT ? -EFAULT : errno == ENOMEM ? -ENOMEM : -errno;
        l += n;
        raddr += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

const char *plain_copy_error(int err)
{
    switch (err) {
    case -ESRCH:
        return "the client process that registered it has exited";
    case -EPERM:
        return "the daemon may no longer reach the client's memory (its ptrace permission was withdrawn)";
    case -EFAULT:
        return "the client's range is no longer mapped (or not writable): memory freed without unregistering it";
    case -ENOMEM:
        return "the kernel ran out of memory copying it";
    default:
        return "cross-memory copy failed";
    }
}

static void release_plain(region *r)
{
    plain_proc_unref(r->map_base);
}

static const region_ops plain_ops = {.kind = REGION_HOST_PLAIN, .release = release_plain};

plain_proc *plain_region_proc(const region *r)
{
    return r->ops == &plain_ops ? r->map_base : NULL;
}

/* Why the kernel refused the daemon access to p, as the user must act on. */
static int access_error(plain_proc *p, int code, uint64_t at, uint64_t addr, uint64_t length, err *e)
{
    if (code == -EPERM) {
        int scope = ptrace_scope();
        char yama[160] = "";
        if (scope == 1)
            snprintf(yama, sizeof(yama), "; Yama ptrace_scope is 1, so the client must also name the daemon with "
                                         "prctl(PR_SET_PTRACER) (libmcefa does; another library may have changed it)");
        else if (scope >= 2)
            snprintf(yama, sizeof(yama), "; Yama ptrace_scope is %d, so only CAP_SYS_PTRACE (scope 2) or nothing "
                                         "(scope 3) allows it", scope);
        return err_set(e, -EPERM,
                       "cannot register plain host memory 0x%" PRIx64 " + %" PRIu64 ": mcefad (uid %u) may not read "
                       "the memory of client pid %d (uid %u): cross-memory attach needs the same uid and a dumpable "
                       "client, or CAP_SYS_PTRACE for mcefad (its systemd unit grants it)%s, and a client whose uids "
                       "are all the one it connected with (not a setuid program); or register memory from "
                       "mcefa_alloc / allocate_managed_buffer, which needs neither",
                       addr, length, (unsigned)geteuid(), (int)p->pid, (unsigned)p->uid, yama);
    }
    if (code == -ESRCH)
        return err_set(e, -ESRCH, "cannot register 0x%" PRIx64 " + %" PRIu64 ": the client process %d has exited", addr,
                       length, (int)p->pid);
    if (code == -EFAULT)
        return err_set(e, -EFAULT,
                       "cannot register 0x%" PRIx64 " + %" PRIu64 ": address 0x%" PRIx64 " is not mapped readable in "
                       "the client process; register memory the process has allocated",
                       addr, length, at);
    return err_set(e, code, "cannot register 0x%" PRIx64 " + %" PRIu64 ": reading the client's memory failed: %s", addr,
                   length, strerror(-code));
}

int plain_import(plain_proc *p, uint64_t addr, uint64_t length, int numa_node, region **out, err *e)
{
    /* The first and last byte: enough to learn whether the kernel lets us
     * in, and that the range is mapped at both ends. A hole in between
     * shows up as -EFAULT on the transfer that touches it. */
    uint64_t probe[2] = {addr, addr + length - 1};
    for (int i = 0; i < 2; i++) {
        char b;
        int rc = plain_copy(p, probe[i], &b, 1, false);
        if (rc < 0)
            return access_error(p, rc, probe[i], addr, length, e);
    }
    /* ptr is the client's own address: translating gives the address the
     * copies pass to the kernel. */
    region *r = region_create(&plain_ops, addr, length, (void *)(uintptr_t)addr, numa_node);
    if (!r)
        return err_set(e, -ENOMEM, "out of memory");
    plain_proc_ref(p);
    r->map_base = p;
    *out = r;
    return 0;
}
