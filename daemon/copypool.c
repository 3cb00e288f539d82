#include "copypool.h"

#include "gpu_copy.h"
#include "guard.h"
#include "plain_import.h"

#include <errno.h>
#include <pthread.h>
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
    unsigned alive; /* threads not yet past their last take() */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Between the daemon's own memory: host by memcpy under the fault guard,
 * anything with a GPU side through the driver (gpu_copy.c). */
static int copy_mapped(void *dst, int dst_gpu, const void *src, int src_gpu, size_t len, int *fault_src,
                       const char **why)
{
    if (src_gpu >= 0 || dst_gpu >= 0)
        return gpu_copy(dst, dst_gpu, src, src_gpu, len, fault_src, why);
    return guard_copy(dst, src, len, fault_src);
}

/* A copy thread's buffer for copies that cannot go straight from one side
 * to the other (a plain side and a GPU or another plain side). */
#define BOUNCE_BYTES COPYPOOL_BOUNCE_BYTES
static _Thread_local char *bounce;

static int plain_fail(copy_job *j, int rc, int src_side)
{
    j->fault_src = src_side;
    if (rc != -EFAULT)
        j->why = plain_copy_error(rc);
    return rc;
}

/* A job with a plain side: one cross-memory copy when the other side is
 * the daemon's host memory, else through the bounce buffer a piece at a
 * time (forward only: a plain move inside one process is never split
 * across threads, xfer.c keeps moves in one chain). */
static int copy_plain(copy_job *j)
{
    int rc;
    if (j->src_proc && !j->dst_proc && j->dst_gpu < 0)
        return (rc = plain_copy(j->src_proc, (uintptr_t)j->src, j->dst, j->len, false)) < 0 ? plain_fail(j, rc, 1) : 0;
    if (j->dst_proc && !j->src_proc && j->src_gpu < 0)
        return (rc = plain_copy(j->dst_proc, (uintptr_t)j->dst, (void *)j->src, j->len, true)) < 0 ? plain_fail(j, rc, 0)
                                                                                                 : 0;
    if (!bounce && !(bounce = malloc(BOUNCE_BYTES)))
        return -ENOMEM;
    for (size_t off = 0; off < j->len; off += BOUNCE_BYTES) {
        size_t l = j->len - off < BOUNCE_BYTES ? j->len - off : BOUNCE_BYTES;
        const char *src = (const char *)j->src + off;
        char *dst = (char *)j->dst + off;
        rc = j->src_proc ? plain_copy(j->src_proc, (uintptr_t)src, bounce, l, false)
                         : copy_mapped(bounce, -1, src, j->src_gpu, l, &j->fault_src, &j->why);
        if (rc < 0)
            return j->src_proc ? plain_fail(j, rc, 1) : rc;
        rc = j->dst_proc ? plain_copy(j->dst_proc, (uintptr_t)dst, bounce, l, true)
                         : copy_mapped(dst, j->dst_gpu, bounce, -1, l, &j->fault_src, &j->why);
        if (rc < 0)
            return j->dst_proc ? plain_fail(j, rc, 0) : rc;
    }
    return 0;
}

static int copy_one(copy_job *j)
{
    if (j->src_proc || j->dst_proc)
        return copy_plain(j);
    return copy_mapped(j->dst, j->dst_gpu, j->src, j->src_gpu, j->len, &j->fault_src, &j->why);
}

/* ---- Queues -------------------------------------------------------------- */

/* With the lock held: the next run of jobs (up to one marked run_end),
 * round robin across owners. A whole run goes to one thread, so it takes
 * the lock and sleeps at most once per run, not per job. */
static copy_job *take(void)
{
    owner_queue *q = pool.first;
    if (!q)
        return NULL;
    copy_job *first = q->head, *j = first;
    size_t n = 1;
    for (; !j->run_end && j->next; j = j->next)
        n++;
    q->head = j->next;
    j->next = NULL;
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
    pool.queued -= n;
    return first;
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
        if (!j)
            pool.alive--; /* under the lock: a later submit sees it */
        pthread_mutex_unlock(&pool.lock);
        if (!j) {
            gpu_copy_thread_exit();
            free(bounce);
            bounce = NULL;
            return NULL;
        }
        /* done may free or requeue its job: next is read first. */
        for (copy_job *next; j; j = next) {
            next = j->next;
            j->done(j, copy_one(j));
        }
    }
}

int copypool_init(unsigned nthreads)
{
    if (nthreads == 0)
        return -EINVAL;
    int rc = guard_init();
    if (rc < 0)
        return rc;
    pool.threads = calloc(nthreads, sizeof(pthread_t));
    if (!pool.threads)
        return -ENOMEM;
    pool.stopping = false;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_mutex_lock(&pool.lock);
        pool.alive++;
        pthread_mutex_unlock(&pool.lock);
        rc = pthread_create(&pool.threads[i], NULL, copy_thread, NULL);
        if (rc) {
            pthread_mutex_lock(&pool.lock);
            pool.alive--;
            pthread_mutex_unlock(&pool.lock);
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
    last->run_end = true;
    pthread_mutex_lock(&pool.lock);
    if (pool.stopping && !pool.alive) {
        /* The threads are gone (the daemon is stopping): late jobs, from
         * work finishing meanwhile, run here so none is lost. */
        pthread_mutex_unlock(&pool.lock);
        for (copy_job *j = first, *next; j; j = next) {
            next = j->next;
            j->done(j, copy_one(j));
        }
        return;
    }
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
    size_t runs = 0;
    for (copy_job *j = first; j; j = j->next)
        runs += j->run_end;
    /* One thread per run: waking more would only have them find nothing. */
    if (runs >= pool.nthreads)
        pthread_cond_broadcast(&pool.cond);
    else
        while (runs--)
            pthread_cond_signal(&pool.cond);
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

unsigned copypool_threads(void)
{
    return pool.nthreads;
}

size_t copypool_queued(void)
{
    pthread_mutex_lock(&pool.lock);
    size_t n = pool.queued;
    pthread_mutex_unlock(&pool.lock);
    return n;
}
