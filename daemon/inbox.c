#include "inbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcefa_defaults.h"

void inbox_init(inbox *q)
{
    memset(q, 0, sizeof(*q));
    STAILQ_INIT(&q->items);
}

void inbox_clear(inbox *q)
{
    while (!STAILQ_EMPTY(&q->items))
        inbox_pop(q);
    q->full_logged = false;
}

int inbox_check_sizes(size_t name_len, size_t msg_len, err *e)
{
    if (name_len > MCEFA_NOTIFY_NAME_MAX)
        return err_set(e, -EMSGSIZE,
                       "notification name of %zu bytes refused: names are at most %d bytes (MCEFA_NOTIFY_NAME_MAX); "
                       "put longer text in the message",
                       name_len, MCEFA_NOTIFY_NAME_MAX);
    if (msg_len > MCEFA_NOTIFY_MSG_MAX)
        return err_set(e, -EMSGSIZE,
                       "notification message of %zu bytes refused: messages are at most %d bytes "
                       "(MCEFA_NOTIFY_MSG_MAX); move bulk data with a transfer and notify about it",
                       msg_len, MCEFA_NOTIFY_MSG_MAX);
    return 0;
}

size_t inbox_cost(size_t name_len, size_t msg_len)
{
    return sizeof(inbox_item) + name_len + msg_len;
}

int inbox_push(inbox *q, size_t cap, const void *name, size_t name_len, const void *msg, size_t msg_len)
{
    size_t cost = inbox_cost(name_len, msg_len);
    if (q->bytes + cost > cap)
        return -ENOBUFS;
    inbox_item *it = malloc(sizeof(*it) + name_len + msg_len);
    if (!it)
        return -ENOMEM;
    it->name_len = name_len;
    it->msg_len = msg_len;
    if (name_len)
        memcpy(it->data, name, name_len);
    if (msg_len)
        memcpy(it->data + name_len, msg, msg_len);
    STAILQ_INSERT_TAIL(&q->items, it, link);
    q->n++;
    q->bytes += cost;
    return 0;
}

const inbox_item *inbox_first(const inbox *q)
{
    return STAILQ_FIRST(&q->items);
}

void inbox_pop(inbox *q)
{
    inbox_item *it = STAILQ_FIRST(&q->items);
    if (!it)
        return;
    STAILQ_REMOVE_HEAD(&q->items, link);
    q->n--;
    q->bytes -= inbox_cost(it->name_len, it->msg_len);
    free(it);
}
