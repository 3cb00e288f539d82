/* Futex calls on words in memory shared between the daemon and a client
 * (not FUTEX_PRIVATE: they are different processes). */
#ifndef MCEFA_SHM_FUTEX_H
#define MCEFA_SHM_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Wakes every thread waiting on addr. */
static inline void shm_futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Sleeps while *addr == val, at most timeout_ms (-1: no limit). Returns 0
 * (woken, changed, interrupted) or -ETIMEDOUT. */
static inline int shm_futex_wait(_Atomic uint32_t *addr, uint32_t val, int timeout_ms)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, tp, NULL, 0);
    return r < 0 && errno == ETIMEDOUT ? -ETIMEDOUT : 0;
}

#endif
