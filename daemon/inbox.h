/* A client's notifications (Mooncake's TransferNotify): the (name, msg)
 * pairs other clients sent to the segment it exports, oldest first, until
 * it takes them. Bounded in bytes, so a client that never takes them holds
 * at most that much of the daemon's memory; a full inbox refuses, never
 * drops. Loop thread only. */
#ifndef MCEFAD_INBOX_H
#define MCEFAD_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "err.h"

typedef struct inbox_item {
    STAILQ_ENTRY(inbox_item) link;
    size_t name_len, msg_len;
    uint8_t data[]; /* name, then msg */
} inbox_item;

typedef struct inbox {
    STAILQ_HEAD(, inbox_item) items;
    size_t n;
    size_t bytes;      /* charged: inbox_cost of every item */
    bool full_logged;  /* "not draining" was logged since the last take */
} inbox;

void inbox_init(inbox *q);
/* Frees every item. */
void inbox_clear(inbox *q);

/* Whether a notification of these sizes is acceptable at all: 0, or
 * -EMSGSIZE with a text naming the bound (MCEFA_NOTIFY_*_MAX). */
int inbox_check_sizes(size_t name_len, size_t msg_len, err *e);
/* What an item of these sizes counts against the cap: its bytes and its
 * bookkeeping. */
size_t inbox_cost(size_t name_len, size_t msg_len);

/* Appends a copy. Returns 0, -ENOBUFS when it would take the inbox past
 * cap bytes (nothing queued), or -ENOMEM. Sizes must have passed
 * inbox_check_sizes. */
int inbox_push(inbox *q, size_t cap, const void *name, size_t name_len, const void *msg, size_t msg_len);
/* The oldest item (NULL when empty); inbox_pop frees it. */
const inbox_item *inbox_first(const inbox *q);
void inbox_pop(inbox *q);

#endif
