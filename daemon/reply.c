#include "reply.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

void reply_init(reply *r, session *s, uint64_t seq)
{
    memset(r, 0, sizeof(*r));
    mcefa__response__init(&r->resp);
    r->resp.seq = seq;
    r->s = s;
    r->t0_ms = clock_now_ms();
}

void *reply_alloc(reply *r, size_t size)
{
    if (r->nallocs == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        void **n = realloc(r->allocs, ncap * sizeof(*n));
        if (!n)
            goto oom;
        r->allocs = n;
        r->cap = ncap;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p)
        goto oom;
    r->allocs[r->nallocs++] = p;
    return p;
oom:
    /* Replies are small; failing here means the host is out of memory and
     * the daemon cannot answer anyone sensibly. */
    log_error("out of memory building a reply; exiting");
    abort();
}

char *reply_strdup(reply *r, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = reply_alloc(r, n);
    memcpy(d, s, n);
    return d;
}

int reply_fail(reply *r, int status, const char *fmt, ...)
{
    char *txt = reply_alloc(r, 512);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(txt, 512, fmt, ap);
    va_end(ap);
    r->resp.status = status;
    r->resp.error = txt;
    r->resp.body_case = MCEFA__RESPONSE__BODY__NOT_SET;
    return status;
}

int reply_err(reply *r, const err *e)
{
    return reply_fail(r, e->code, "%s", e->text);
}

reply *reply_defer(reply *r)
{
    reply *d = malloc(sizeof(*d));
    if (!d) {
        reply_fail(r, -ENOMEM, "out of memory queueing the request");
        return NULL;
    }
    *d = *r;
    /* The copy owns the arena and descriptors now. */
    r->allocs = NULL;
    r->nallocs = r->cap = 0;
    r->nfds = 0;
    r->deferred = true;
    d->deferred = false;
    d->heap = true;
    d->counted = true;
    session_ref(d->s);
    d->s->waiting++;
    return d;
}

void reply_free(reply *r)
{
    for (size_t i = 0; i < r->nallocs; i++)
        free(r->allocs[i]);
    free(r->allocs);
    for (unsigned i = 0; i < r->nfds; i++)
        close(r->fds[i]);
    r->allocs = NULL;
    r->nallocs = r->cap = 0;
    r->nfds = 0;
    if (r->heap) {
        session *s = r->s;
        if (r->counted)
            s->waiting--;
        free(r);
        session_unref(s);
    }
}

void reply_send(reply *r)
{
    session *s = r->s;
    if (r->counted) {
        /* Before queueing, so the server sees the session may read again. */
        s->waiting--;
        r->counted = false;
    }
    if (!s->closing) {
        if (r->resp.status < 0)
            log_debug("client %s: request failed: %s", s->name, r->resp.error);
        if (r->close_after)
            s->close_after_flush = true;
        session_queue_response(s, &r->resp, r->fds, r->nfds);
        r->nfds = 0;
    }
    reply_free(r);
}
