#include "copypool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    copy_job *head, *tail;
    size_t queued;
    bool stopping;
    pthread_t *threads;
    unsigned nthreads;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *copy_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (!pool.head && !pool.stopping)
            pthread_cond_wait(&pool.cond, &pool.lock);
        copy_job *j = pool.head;
        if (!j) {
            pthread_mutex_unlock(&pool.lock);
            return NULL;
        }
        pool.head = j->next;
        if (!pool.head)
            pool.tail = NULL;
        pool.queued--;
        pthread_mutex_unlock(&pool.lock);
        memcpy(j->dst, j->src, j->len);
        j->done(j, 0);
    }
}

int copypool_init(unsigned nthreads)
{
    if (nthreads == 0)
        return -EINVAL;
    pool.threads = calloc(nthreads, sizeof(pthread_t));
    if (!pool.threads)
        return -ENOMEM;
    pool.stopping = false;
    for (unsigned i = 0; i < nthreads; i++) {
        int rc = pthread_create(&pool.threads[i], NULL, copy_thread, NULL);
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

void copypool_submit(copy_job *first, copy_job *last, size_t count)
{
    last->next = NULL;
    pthread_mutex_lock(&pool.lock);
    if (pool.tail)
        pool.tail->next = first;
    else
        pool.head = first;
    pool.tail = last;
    pool.queued += count;
    if (count == 1)
        pthread_cond_signal(&pool.cond);
    else
        pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
}

size_t copypool_queued(void)
{
    pthread_mutex_lock(&pool.lock);
    size_t n = pool.queued;
    pthread_mutex_unlock(&pool.lock);
    return n;
}
