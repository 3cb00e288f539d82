/* libmcefa: notifications (Mooncake's TransferNotify): sending one to a
 * segment's owner, after the transfers it goes with, and taking this
 * client's own. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Notifications asked for per GetNotifies; the daemon may answer fewer. */
#define GET_CHUNK 1024

static int check_sizes(size_t name_len, size_t msg_len)
{
    if (name_len > MCEFA_NOTIFY_NAME_MAX)
        return client_error(-EMSGSIZE, "notification name of %zu bytes refused: at most %d (MCEFA_NOTIFY_NAME_MAX)",
                            name_len, MCEFA_NOTIFY_NAME_MAX);
    if (msg_len > MCEFA_NOTIFY_MSG_MAX)
        return client_error(-EMSGSIZE,
                            "notification message of %zu bytes refused: at most %d (MCEFA_NOTIFY_MSG_MAX); move bulk "
                            "data with a transfer",
                            msg_len, MCEFA_NOTIFY_MSG_MAX);
    return 0;
}

int mcefa_notify(mcefa_client *c, mcefa_segment seg, const void *name, size_t name_len, const void *msg,
                 size_t msg_len)
{
    if (!c || (!name && name_len) || (!msg && msg_len))
        return client_error(-EINVAL, "mcefa_notify: client, and name and msg when their lengths are not 0, must "
                                     "not be NULL");
    int rc = check_sizes(name_len, msg_len);
    if (rc < 0)
        return rc;
    Mcefa__Notify m = MCEFA__NOTIFY__INIT;
    m.segment = seg;
    m.name.data = (uint8_t *)name;
    m.name.len = name_len;
    m.msg.data = (uint8_t *)msg;
    m.msg.len = msg_len;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_NOTIFY;
    req.notify = &m;
    return client_call_simple(c, &req);
}

int mcefa_transfer_sync_notify(mcefa_client *c, const mcefa_transfer *t, size_t n, int timeout_ms, const void *name,
                               size_t name_len, const void *msg, size_t msg_len)
{
    if (!t || n == 0)
        return client_error(-EINVAL, "mcefa_transfer_sync_notify: needs at least one transfer (the notification "
                                     "goes to their segment's owner); use mcefa_notify alone for none");
    for (size_t i = 1; i < n; i++)
        if (t[i].segment != t[0].segment)
            return client_error(-EINVAL,
                                "mcefa_transfer_sync_notify: transfer %zu goes to segment handle %llu, transfer 0 "
                                "to %llu; one notification has one owner: send one call per segment",
                                i, (unsigned long long)t[i].segment, (unsigned long long)t[0].segment);
    /* Refused before any byte moves, so a bad notification moves nothing. */
    int rc = check_sizes(name_len, msg_len);
    if (rc < 0)
        return rc;
    if ((rc = mcefa_transfer_sync(c, t, n, timeout_ms)) < 0) {
        char saved[512];
        snprintf(saved, sizeof(saved), "%s", mcefa_last_error());
        return client_error(rc, "%s (the notification was not sent)", saved);
    }
    if ((rc = mcefa_notify(c, t[0].segment, name, name_len, msg, msg_len)) < 0) {
        char saved[512];
        snprintf(saved, sizeof(saved), "%s", mcefa_last_error());
        return client_error(rc, "the %zu transfers completed, but their notification was not delivered: %s", n,
                            saved);
    }
    return 0;
}

static mcefa_notification *element(mcefa_notification *v, size_t stride, size_t i)
{
    return (mcefa_notification *)((char *)v + i * stride);
}

void mcefa_notifications_free(mcefa_notification *v, size_t n)
{
    if (!v || !n)
        return;
    size_t stride = v[0].struct_size;
    for (size_t i = 0; i < n; i++) {
        mcefa_notification *x = element(v, stride, i);
        free(x->name);
        x->name = x->msg = NULL;
    }
}

/* Copies one notification of a reply into element x, in one allocation. */
static int take_one(mcefa_notification *x, size_t stride, const Mcefa__Notification *m)
{
    char *p = malloc(m->name.len + m->msg.len + 2);
    if (!p)
        return -ENOMEM;
    mcefa_notification r = {
        .struct_size = stride,
        .name = p,
        .name_len = m->name.len,
        .msg = p + m->name.len + 1,
        .msg_len = m->msg.len,
    };
    if (m->name.len)
        memcpy(r.name, m->name.data, m->name.len);
    r.name[r.name_len] = 0;
    if (m->msg.len)
        memcpy(r.msg, m->msg.data, m->msg.len);
    r.msg[r.msg_len] = 0;
    /* Nothing past the caller's size; fields it has that we do not know read 0. */
    memset(x, 0, stride);
    memcpy(x, &r, stride < sizeof(r) ? stride : sizeof(r));
    return 0;
}

int mcefa_get_notifies(mcefa_client *c, mcefa_notification *v, size_t max)
{
    if (!c || (max && !v))
        return client_error(-EINVAL, "mcefa_get_notifies: client must not be NULL, nor v when max is %zu", max);
    if (max == 0)
        return 0;
    size_t stride = v[0].struct_size;
    int rc = CLIENT_CHECK_SIZE(stride, mcefa_notification, msg_len, "MCEFA_NOTIFICATION_INIT");
    if (rc < 0)
        return rc;
    if (max > INT_MAX)
        max = INT_MAX; /* the count is returned as an int */
    size_t got = 0;
    while (got < max) {
        Mcefa__GetNotifies m = MCEFA__GET_NOTIFIES__INIT;
        m.max_count = max - got < GET_CHUNK ? (uint32_t)(max - got) : GET_CHUNK;
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.body_case = MCEFA__REQUEST__BODY_GET_NOTIFIES;
        req.get_notifies = &m;
        Mcefa__Response *resp;
        if ((rc = client_call(c, &req, NULL, 0, &resp)) < 0)
            break;
        if (resp->body_case != MCEFA__RESPONSE__BODY_NOTIFICATIONS) {
            mcefa__response__free_unpacked(resp, NULL);
            rc = client_error(-EPROTO, "mcefad answered get_notifies without notifications");
            break;
        }
        const Mcefa__Notifications *ns = resp->notifications;
        size_t k = ns->n_notifications < m.max_count ? ns->n_notifications : m.max_count;
        size_t i = 0;
        while (i < k && take_one(element(v, stride, got), stride, ns->notifications[i]) == 0) {
            i++;
            got++;
        }
        unsigned remaining = ns->remaining;
        mcefa__response__free_unpacked(resp, NULL);
        if (i < k) {
            /* They left the daemon's queue already: say how many are gone. */
            mcefa_notifications_free(v, got);
            return client_error(-ENOMEM, "out of memory: %zu notifications taken from mcefad were lost",
                                got + k - i);
        }
        if (k == 0 || remaining == 0)
            break;
    }
    /* A later request that failed leaves those taken so far to the caller;
     * the next call reports its error. */
    return got || rc == 0 ? (int)got : rc;
}
