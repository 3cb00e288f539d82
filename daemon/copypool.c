#include "copypool.h"

#include "gpu_copy.h"
#include "guard.h"

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
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* One job: host memory by memcpy under the fault guard, anything with a GPU
 * side through the driver (gpu_copy.c). */
static int copy_one(copy_job *j)
{
    if (j->src_gpu >= 0 || j->dst_gpu >= 0)
        return gpu_copy(j->dst, j->dst_gpu, j->src, j->src_gpu, j->len, &j->fault_src, &j->why);
    return guard_copy(j->dst, j->src, j->len, &j->fault_src);
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
        if (!j) {
            gpu_copy_thread_exit();
            return NULL;
        }
        j->done(j, copy_one(j));
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
