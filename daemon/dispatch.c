#include "dispatch.h"

#include <errno.h>

#include "config.h"
#include "log.h"
#include "rpc.h"
#include "stats.h"
#include "wire.h"

enum {
    CMD_BEFORE_HELLO = 1, /* allowed as the first message */
    CMD_ADMIN = 2,        /* root, the daemon's user or admin_group */
};

typedef struct command {
    int body_case;
    const char *name;
    rpc_handler fn;
    unsigned flags;
} command;

static const command commands[] = {
    {MCEFA__REQUEST__BODY_HELLO, "hello", rpc_hello, CMD_BEFORE_HELLO},
    {MCEFA__REQUEST__BODY_REGISTER_MEMORY, "register_memory", rpc_register, 0},
    {MCEFA__REQUEST__BODY_UNREGISTER_MEMORY, "unregister_memory", rpc_unregister, 0},
    {MCEFA__REQUEST__BODY_EXPORT_SEGMENT, "export_segment", rpc_export, 0},
    {MCEFA__REQUEST__BODY_OPEN_SEGMENT, "open_segment", rpc_open, 0},
    {MCEFA__REQUEST__BODY_WARMUP, "warmup", rpc_warmup, 0},
    {MCEFA__REQUEST__BODY_CLOSE_SEGMENT, "close_segment", rpc_close_segment, 0},
    {MCEFA__REQUEST__BODY_QUERY_SEGMENT, "query_segment", rpc_query, 0},
    {MCEFA__REQUEST__BODY_ALLOC_BATCH, "alloc_batch", rpc_alloc_batch, 0},
    {MCEFA__REQUEST__BODY_FREE_BATCH, "free_batch", rpc_free_batch, 0},
    {MCEFA__REQUEST__BODY_SUBMIT_BATCH, "submit_batch", rpc_submit, 0},
    {MCEFA__REQUEST__BODY_BATCH_STATUS, "batch_status", rpc_batch_status, 0},
    {MCEFA__REQUEST__BODY_OPEN_RING, "open_ring", rpc_open_ring, 0},
    {MCEFA__REQUEST__BODY_NOTIFY, "notify", rpc_notify, 0},
    {MCEFA__REQUEST__BODY_GET_NOTIFIES, "get_notifies", rpc_get_notifies, 0},
    {MCEFA__REQUEST__BODY_STATUS, "status", rpc_status, 0},
    {MCEFA__REQUEST__BODY_SET_LOG_LEVEL, "set_log_level", rpc_set_log_level, CMD_ADMIN},
    {MCEFA__REQUEST__BODY_WARMUP_HOST, "warmup_host", rpc_warmup_host, CMD_ADMIN},
};

static const command *find(int body_case)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (commands[i].body_case == body_case)
            return &commands[i];
    return NULL;
}

static void finish(reply *r)
{
    if (r->deferred) {
        reply_free(r); /* the handler's copy answers later */
        return;
    }
    reply_send(r);
}

void dispatch_request(session *s, const Mcefa__Request *req)
{
    reply r;
    reply_init(&r, s, req->seq);
    const command *c = find(req->body_case);
    if (!s->hello_done && (!c || !(c->flags & CMD_BEFORE_HELLO))) {
        reply_fail(&r, -EPROTO, "the first message on a connection must be hello (protocol version %u)",
                   MCEFA_PROTOCOL_VERSION);
        r.close_after = true;
    } else if (!c) {
        stats_protocol_error();
        reply_fail(&r, -EOPNOTSUPP,
                   "unknown message type: the request carries no message this daemon (%s, protocol %u) knows; is "
                   "the client newer than the daemon?",
                   MCEFA_VERSION, MCEFA_PROTOCOL_VERSION);
    } else if (s->hello_done && (c->flags & CMD_BEFORE_HELLO)) {
        reply_fail(&r, -EALREADY, "hello sent twice on one connection");
    } else if ((c->flags & CMD_ADMIN) && !s->admin) {
        reply_fail(&r, -EPERM,
                   "admin request refused: it needs root, the daemon's user, or membership of group '%s' "
                   "(admin_group)",
                   config.admin_group);
    } else {
        c->fn(&r, req);
    }
    finish(&r);
}

void dispatch_error(session *s, int status, bool fatal, const char *msg)
{
    reply r;
    reply_init(&r, s, 0);
    reply_fail(&r, status, "%s", msg);
    r.close_after = fatal;
    reply_send(&r);
}
