/* Deferred callbacks on the event loop (libuv's pattern): a function that
 * reports through a callback never calls it before returning; it queues
 * the call here and the loop runs it on its next turn. Callers therefore
 * never see their callback run in the middle of their own code. */
#ifndef MCEFAD_DEFER_H
#define MCEFAD_DEFER_H

#include <sys/queue.h>
#include <uv.h>

typedef struct defer_item {
    STAILQ_ENTRY(defer_item) link;
    void (*fn)(struct defer_item *item);
} defer_item;

void defer_init(uv_loop_t *loop);
/* Runs item->fn(item) on the loop's next turn. Loop thread only. The item
 * is usually embedded in the caller's request. */
void defer_call(defer_item *item, void (*fn)(defer_item *item));
/* Runs item->fn(item) on the loop thread soon; callable from any thread
 * (copy threads, NIC workers hand their results back this way). */
void defer_from_thread(defer_item *item, void (*fn)(defer_item *item));
/* After the loop stopped: runs the calls other threads handed over, on
 * this thread, until none is left. */
void defer_drain(void);
/* Closes the loop handles (after the last deferred call ran). */
void defer_close(void);

#endif
