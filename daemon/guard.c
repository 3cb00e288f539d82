#include "guard.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* What this thread is copying: the handler jumps back only for a fault
 * inside these ranges; any other SIGBUS is a real bug and kills us as it
 * would have without the handler. */
static __thread sigjmp_buf fault_jmp;
static __thread volatile sig_atomic_t copying;
static __thread const char *volatile copy_src, *volatile copy_dst;
static __thread volatile size_t copy_len;
static __thread volatile int fault_in_src;

static bool inside(const char *a, const char *base, size_t len)
{
    return (uintptr_t)a >= (uintptr_t)base && (uintptr_t)a - (uintptr_t)base < len;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    const char *a = si->si_addr;
    if (copying && si->si_code > 0 /* raised by the kernel for a fault, not kill() */) {
        bool s = inside(a, copy_src, copy_len), d = inside(a, copy_dst, copy_len);
        if (s || d) {
            copying = 0;
            fault_in_src = s;
            siglongjmp(fault_jmp, 1);
        }
    }
    /* Not ours: restore the default action; the signal is blocked while we
     * run, so it is delivered (and kills with a core) when we return. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

int guard_init(void)
{
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL) < 0 ? -errno : 0;
}

int guard_copy(void *dst, const void *src, size_t len, int *fault_src)
{
    copy_src = src;
    copy_dst = dst;
    copy_len = len;
    /* Not saving the mask: that is a sigprocmask call per copy (a third of
     * the cost of a 4 KiB one). The jump out of the handler leaves SIGBUS
     * blocked, so the fault path unblocks it. */
    if (sigsetjmp(fault_jmp, 0)) {
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        *fault_src = fault_in_src;
        return -EFAULT;
    }
    copying = 1;
    if (inside(dst, src, len) || inside(src, dst, len))
        memmove(dst, src, len);
    else
        memcpy(dst, src, len);
    copying = 0;
    return 0;
}
