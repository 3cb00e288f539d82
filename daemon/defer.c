#include "defer.h"

#include <pthread.h>
#include <stdbool.h>

static uv_idle_t idle;
static bool active, inited;
static STAILQ_HEAD(, defer_item) queue = STAILQ_HEAD_INITIALIZER(queue);
/* Calls from other threads, taken over by the loop when woken. */
static uv_async_t wake;
static pthread_mutex_t from_lock = PTHREAD_MUTEX_INITIALIZER;
static STAILQ_HEAD(, defer_item) from_threads = STAILQ_HEAD_INITIALIZER(from_threads);

static void run_queue(uv_idle_t *h)
{
    (void)h;
    /* Calls queued while running wait for the next turn: no starvation. */
    STAILQ_HEAD(, defer_item) now = STAILQ_HEAD_INITIALIZER(now);
    STAILQ_CONCAT(&now, &queue);
    while (!STAILQ_EMPTY(&now)) {
        defer_item *it = STAILQ_FIRST(&now);
        STAILQ_REMOVE_HEAD(&now, link);
        it->fn(it);
    }
    if (STAILQ_EMPTY(&queue)) {
        uv_idle_stop(&idle);
        active = false;
    }
}

static void on_wake(uv_async_t *h)
{
    (void)h;
    STAILQ_HEAD(, defer_item) now = STAILQ_HEAD_INITIALIZER(now);
    pthread_mutex_lock(&from_lock);
    STAILQ_CONCAT(&now, &from_threads);
    pthread_mutex_unlock(&from_lock);
    while (!STAILQ_EMPTY(&now)) {
        defer_item *it = STAILQ_FIRST(&now);
        STAILQ_REMOVE_HEAD(&now, link);
        it->fn(it);
    }
}

void defer_init(uv_loop_t *loop)
{
    uv_idle_init(loop, &idle);
    uv_async_init(loop, &wake, on_wake);
    /* Not a reason to keep the loop running by itself. */
    uv_unref((uv_handle_t *)&wake);
    inited = true;
}

void defer_drain(void)
{
    for (;;) {
        pthread_mutex_lock(&from_lock);
        bool empty = STAILQ_EMPTY(&from_threads);
        pthread_mutex_unlock(&from_lock);
        if (empty && STAILQ_EMPTY(&queue))
            return;
        on_wake(NULL);
        if (!STAILQ_EMPTY(&queue))
            run_queue(&idle);
    }
}

void defer_from_thread(defer_item *item, void (*fn)(defer_item *item))
{
    item->fn = fn;
    pthread_mutex_lock(&from_lock);
    STAILQ_INSERT_TAIL(&from_threads, item, link);
    pthread_mutex_unlock(&from_lock);
    uv_async_send(&wake);
}

void defer_call(defer_item *item, void (*fn)(defer_item *item))
{
    item->fn = fn;
    STAILQ_INSERT_TAIL(&queue, item, link);
    if (!active) {
        uv_idle_start(&idle, run_queue);
        active = true;
    }
}

void defer_close(void)
{
    if (inited && !uv_is_closing((uv_handle_t *)&idle)) {
        uv_close((uv_handle_t *)&idle, NULL);
        uv_close((uv_handle_t *)&wake, NULL);
    }
}
