#include "peer_notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "inbox.h"
#include "log.h"
#include "peer_auth.h"
#include "peer_link.h"
#include "segment.h"
#include "session.h"

/* Segment names are at most this long (segment.c); a longer one names
 * nothing here. The texts leave the segment out: the sender's daemon puts
 * it in front. */
#define NOTIFY_SEGMENT_MAX 255

static void serve_notify(peer_conn *c, uint64_t seq, const Mcefa__PeerFrame *fr)
{
    const Mcefa__PeerNotify *n = fr->notify;
    err e;
    size_t sl = n->segment ? strlen(n->segment) : 0;
    if (sl == 0 || sl > NOTIFY_SEGMENT_MAX) {
        peer_link_reply_error(c, seq, -EINVAL,
                              "notification refused by host %s: the segment name is %zu bytes, not 1-%d",
                              ident_hostname(), sl, NOTIFY_SEGMENT_MAX);
        return;
    }
    if (inbox_check_sizes(n->name.len, n->msg.len, &e) < 0) {
        peer_link_reply_error(c, seq, e.code, "host %s: %s", ident_hostname(), e.text);
        return;
    }
    if (n->epoch && n->epoch != ident_epoch()) {
        peer_link_reply_error(c, seq, -ESTALE, "host %s's daemon restarted since the segment was opened; open it again",
                              ident_hostname());
        return;
    }
    segment_entry *se = segment_find(n->segment);
    if (!se) {
        peer_link_reply_error(c, seq, -ENOENT,
                              "no client on host %s exports it (its owner may have exited), so nobody would take it",
                              ident_hostname());
        return;
    }
    if (session_notify(se->owner, se->name, n->name.data, n->name.len, n->msg.data, n->msg.len, &e) < 0) {
        peer_link_reply_error(c, seq, e.code, "%s", e.text);
        return;
    }
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    peer_link_send(c, &f);
}

typedef struct notify_req {
    peer *p;
    peer_notify_cb cb;
    void *arg;
    char segment[300];
    Mcefa__PeerNotify n;
    Mcefa__PeerFrame f;
    uint8_t data[]; /* name, then msg */
} notify_req;

static void on_notify_reply(peer_conn *c, void *arg, const Mcefa__PeerFrame *f)
{
    (void)c;
    notify_req *r = arg;
    char theirs[400];
    if (f->status < 0) {
        peer_text_clean(theirs, sizeof(theirs), f->error); /* bound for a client's reply */
        r->cb(r->arg, f->status, theirs);
    } else {
        r->cb(r->arg, 0, NULL); /* queued: the reply has no body */
    }
    peer_release(r->p);
    free(r);
}

void peer_notify(peer *p, uint64_t epoch, const char *segment, const void *name, size_t name_len, const void *msg,
                 size_t msg_len, peer_notify_cb cb, void *arg)
{
    notify_req *r = calloc(1, sizeof(*r) + name_len + msg_len);
    if (!r) {
        log_error("out of memory sending a notification; exiting");
        abort();
    }
    r->p = p;
    r->cb = cb;
    r->arg = arg;
    snprintf(r->segment, sizeof(r->segment), "%s", segment);
    if (name_len)
        memcpy(r->data, name, name_len);
    if (msg_len)
        memcpy(r->data + name_len, msg, msg_len);
    mcefa__peer_notify__init(&r->n);
    r->n.segment = r->segment;
    r->n.name.data = r->data;
    r->n.name.len = name_len;
    r->n.msg.data = r->data + name_len;
    r->n.msg.len = msg_len;
    r->n.epoch = epoch;
    mcefa__peer_frame__init(&r->f);
    r->f.body_case = MCEFA__PEER_FRAME__BODY_NOTIFY;
    r->f.notify = &r->n;
    peer_hold(p);
    peer_request_when_up(p, &r->f, on_notify_reply, r);
}

void peer_notify_init(void)
{
    peer_link_serve(MCEFA__PEER_FRAME__BODY_NOTIFY, serve_notify, false);
}
