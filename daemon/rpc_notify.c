/* Notification requests: Notify (queue a (name, msg) for the owner of an
 * opened segment: here directly, on another host through its daemon) and
 * GetNotifies (take this client's own, oldest first). libmcefa sends a
 * Notify only once the transfers it goes with completed, so the data is
 * at the target before the owner can see the notification. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "inbox.h"
#include "peer_notify.h"
#include "rpc.h"

/* Most notification bytes in one GetNotifies reply: far below any frame
 * limit, however many the client asks for. */
#define NOTIFY_REPLY_BYTES (1u << 20)

static void on_remote_notify(void *arg, int status, const char *why)
{
    reply *r = arg;
    if (status < 0)
        reply_fail(r, status, "notification for segment '%s' not queued: %s", r->name, why);
    reply_send(r);
}

void rpc_notify(reply *r, const Mcefa__Request *req)
{
    const Mcefa__Notify *m = req->notify;
    err e;
    if (inbox_check_sizes(m->name.len, m->msg.len, &e) < 0) {
        reply_err(r, &e);
        return;
    }
    open_segment *o = segment_open_find(&r->s->opens, m->segment);
    if (!o) {
        reply_fail(r, -EBADF,
                   "notify: segment handle %" PRIu64 " is not open on this connection; open the segment the "
                   "transfers went to",
                   m->segment);
        return;
    }
    if (!o->remote) {
        segment_entry *se = o->seg;
        if (!se->owner) {
            reply_fail(r, -ENOTCONN,
                       "notification for segment '%s' refused: the segment is gone (its client disconnected), so "
                       "nobody would take it; open it again once it is back",
                       se->name);
            return;
        }
        if (session_notify(se->owner, se->name, m->name.data, m->name.len, m->msg.data, m->msg.len, &e) < 0)
            reply_fail(r, e.code, "notification for segment '%s' refused: %s", se->name, e.text);
        return;
    }
    const remote_segment *rs = o->remote;
    snprintf(r->name, sizeof(r->name), "%s", rs->name);
    reply *d = reply_defer(r);
    if (d)
        peer_notify(rs->peer, rs->epoch, rs->name, m->name.data, m->name.len, m->msg.data, m->msg.len,
                    on_remote_notify, d);
}

void rpc_get_notifies(reply *r, const Mcefa__Request *req)
{
    uint32_t max = req->get_notifies->max_count;
    if (max == 0) {
        reply_fail(r, -EINVAL, "get_notifies: max_count is 0; ask for at least 1 notification");
        return;
    }
    inbox *q = &r->s->inbox;
    size_t cap = q->n < max ? q->n : max;
    Mcefa__Notifications *ns = reply_alloc(r, sizeof(*ns));
    mcefa__notifications__init(ns);
    ns->notifications = reply_alloc(r, cap * sizeof(*ns->notifications));
    size_t n = 0, bytes = 0;
    for (const inbox_item *it; n < cap && (it = inbox_first(q)); n++) {
        size_t len = it->name_len + it->msg_len;
        if (n && bytes + len > NOTIFY_REPLY_BYTES)
            break; /* the rest in the next reply: remaining says so */
        /* Copied into the reply: the item goes now, the reply later. */
        Mcefa__Notification *x = reply_alloc(r, sizeof(*x) + len);
        mcefa__notification__init(x);
        uint8_t *data = (uint8_t *)(x + 1);
        memcpy(data, it->data, len);
        x->name.data = data;
        x->name.len = it->name_len;
        x->msg.data = data + it->name_len;
        x->msg.len = it->msg_len;
        ns->notifications[n] = x;
        bytes += len;
        inbox_pop(q);
    }
    ns->n_notifications = n;
    ns->remaining = (uint32_t)(q->n > UINT32_MAX ? UINT32_MAX : q->n);
    if (n)
        q->full_logged = false;
    r->resp.body_case = MCEFA__RESPONSE__BODY_NOTIFICATIONS;
    r->resp.notifications = ns;
}
