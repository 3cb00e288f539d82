#include "defer.h"

#include <stdbool.h>

static uv_idle_t idle;
static bool active, inited;
static STAILQ_HEAD(, defer_item) queue = STAILQ_HEAD_INITIALIZER(queue);

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

void defer_init(uv_loop_t *loop)
{
    uv_idle_init(loop, &idle);
    inited = true;
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
    if (inited && !uv_is_closing((uv_handle_t *)&idle))
        uv_close((uv_handle_t *)&idle, NULL);
}
