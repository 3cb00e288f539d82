#include "copypool.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One owner's jobs, in order. Owners with queued jobs form a list served
 * from its head; an owner served moves to the tail (round robin). */
typedef struct owner_queue {
    const void *owner;
    copy_job *head, *tail;
    struct owner_queue *next;
} owner_queue;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    owner_queue *first, *last;
    size_t queued;
    bool stopping;
    pthread_t *threads;
    unsigned nthreads;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---- Surviving a fault in a client mapping ------------------------------ */

/* What this thread is copying: the SIGBUS handler jumps back only for a
 * fault inside these ranges; any other SIGBUS is a real bug and kills us
 * as it would have without the handler. */
static __thread sigjmp_buf fault_jmp;
static __thread volatile sig_atomic_t copying;
static __thread const char *volatile copy_src, *volatile copy_dst;
static __thread volatile size_t copy_len;
static __thread volatile int fault_src;

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
            fault_src = s;
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

static int install_sigbus(void)
{
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL) < 0 ? -errno : 0;
}

/* Copies one job; -EFAULT if either side faulted (j->fault_src says
 * which). Overlapping ranges (a move inside one region) use memmove. */
static int copy_guarded(copy_job *j)
{
    copy_src = j->src;
    copy_dst = j->dst;
    copy_len = j->len;
    /* Saving the mask makes the jump unblock SIGBUS again. */
    if (sigsetjmp(fault_jmp, 1)) {
        j->fault_src = fault_src;
        return -EFAULT;
    }
    copying = 1;
    if (inside(j->dst, j->src, j->len) || inside(j->src, j->dst, j->len))
        memmove(j->dst, j->src, j->len);
    else
        memcpy(j->dst, j->src, j->len);
    copying = 0;
    return 0;
}

/* ---- Queues -------------------------------------------------------------- */

/* With the lock held: the next job, round robin across owners. */
static copy_job *take(void)
{
    owner_queue *q = pool.first;
    if (!q)
        return NULL;
    copy_job *j = q->head;
    q->head = j->next;
    pool.first = q->next;
    if (!q->head) {
        if (pool.last == q)
            pool.last = NULL;
        free(q);
    } else if (pool.first) {
        pool.last->next = q;
        q->next = NULL;
        pool.last = q;
    } else {
        pool.first = q; /* the only owner: stays first */
    }
    pool.queued--;
    return j;
}

/* With the lock held: owner's queue and the one before it in the list. */
static owner_queue *find_queue(const void *owner, owner_queue **prev)
{
    *prev = NULL;
    for (owner_queue *q = pool.first; q; *prev = q, q = q->next)
        if (q->owner == owner)
            return q;
    return NULL;
}

static void *copy_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (!pool.first && !pool.stopping)
            pthread_cond_wait(&pool.cond, &pool.lock);
        copy_job *j = take();
        pthread_mutex_unlock(&pool.lock);
        if (!j)
            return NULL;
        j->done(j, copy_guarded(j));
    }
}

int copypool_init(unsigned nthreads)
{
    if (nthreads == 0)
        return -EINVAL;
    int rc = install_sigbus();
    if (rc < 0)
        return rc;
    pool.threads = calloc(nthreads, sizeof(pthread_t));
    if (!pool.threads)
        return -ENOMEM;
    pool.stopping = false;
    for (unsigned i = 0; i < nthreads; i++) {
        rc = pthread_create(&pool.threads[i], NULL, copy_thread, NULL);
        if (rc) {
            copypool_shutdown();
            return -rc;
        }
        pool.nthreads++;
    }
    return 0;
}

void copypool_shutdown(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = true;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    for (unsigned i = 0; i < pool.nthreads; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    pool.threads = NULL;
    pool.nthreads = 0;
}

static void fail_chain(copy_job *j, int err)
{
    while (j) {
        copy_job *next = j->next;
        j->done(j, err);
        j = next;
    }
}

void copypool_submit(copy_job *first, copy_job *last, size_t count)
{
    last->next = NULL;
    pthread_mutex_lock(&pool.lock);
    owner_queue *prev, *q = find_queue(first->owner, &prev);
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q) {
            pthread_mutex_unlock(&pool.lock);
            fail_chain(first, -ENOMEM);
            return;
        }
        q->owner = first->owner;
        if (pool.last)
            pool.last->next = q;
        else
            pool.first = q;
        pool.last = q;
    }
    if (q->tail && q->head)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    pool.queued += count;
    if (count == 1)
        pthread_cond_signal(&pool.cond);
    else
        pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
}

size_t copypool_cancel(const void *owner)
{
    size_t n = 0;
    pthread_mutex_lock(&pool.lock);
    owner_queue *prev, *q = find_queue(owner, &prev);
    copy_job *chain = NULL;
    if (q) {
        if (prev)
            prev->next = q->next;
        else
            pool.first = q->next;
        if (pool.last == q)
            pool.last = prev;
        chain = q->head;
        for (copy_job *j = chain; j; j = j->next)
            n++;
        pool.queued -= n;
        free(q);
    }
    pthread_mutex_unlock(&pool.lock);
    /* Outside the lock: done callbacks may take other locks. */
    fail_chain(chain, -ECANCELED);
    return n;
}

size_t copypool_queued(void)
{
    pthread_mutex_lock(&pool.lock);
    size_t n = pool.queued;
    pthread_mutex_unlock(&pool.lock);
    return n;
}
