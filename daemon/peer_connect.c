/* Connecting to a peer on demand and answering those waiting for it:
 * name resolution, TCP connect, then the handshake (peer_link_auth.c or,
 * without auth, the hello). Answers never run inside peer_when_up. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "log.h"
#include "peer_link_internal.h"
#include "resolve.h"

/* ---- Waiting for a connection ------------------------------------------- */

typedef struct waiter_call {
    defer_item item; /* first */
    void (*fn)(void *arg, int status, const char *why);
    void *arg;
    int status;
    char why[300];
} waiter_call;

static void run_deferred_waiter(defer_item *it)
{
    waiter_call *w = (waiter_call *)it;
    w->fn(w->arg, w->status, w->status < 0 ? w->why : NULL);
    free(w);
}

/* fn's answer on the loop's next turn: callers never see it run early. */
static void answer_later(void (*fn)(void *, int, const char *), void *arg, int status, const char *why)
{
    waiter_call *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("out of memory deferring a peer callback; exiting");
        abort();
    }
    w->fn = fn;
    w->arg = arg;
    w->status = status;
    snprintf(w->why, sizeof(w->why), "%s", why ? why : "");
    defer_call(&w->item, run_deferred_waiter);
}

static void run_waiters_now(peer *p, int status, const char *why)
{
    STAILQ_HEAD(, peer_waiter) now = STAILQ_HEAD_INITIALIZER(now);
    STAILQ_CONCAT(&now, &p->waiters);
    while (!STAILQ_EMPTY(&now)) {
        peer_waiter *w = STAILQ_FIRST(&now);
        STAILQ_REMOVE_HEAD(&now, link);
        w->fn(w->arg, status, why);
        free(w);
    }
}

/* The loop's next turn after the connection came up: the waiters go once
 * the other side has our addresses (av_ready). Until then they stay; the
 * answer to its hello queues this again (peer_link_answered). */
static void release_waiters(defer_item *it)
{
    peer *p = (peer *)((char *)it - offsetof(peer, release_item));
    p->release_queued = false;
    peer_conn *c = p->conn;
    if (STAILQ_EMPTY(&p->waiters) || (c && !c->closing && !c->av_ready))
        return;
    if (c && !c->closing) {
        log_debug("peer %s: handshake answered; releasing the requests waiting for it", p->host);
        run_waiters_now(p, 0, NULL);
    } else if (!p->connecting) {
        /* Lost before they could go (an attempt under way answers them). */
        run_waiters_now(p, -ECONNRESET,
                        p->last_error[0] ? p->last_error : "the connection to the peer closed during the handshake");
    }
}

void peer_link_run_waiters(peer *p, int status, const char *why)
{
    if (status < 0) {
        run_waiters_now(p, status, why);
        return;
    }
    if (!p->release_queued) {
        p->release_queued = true;
        defer_call(&p->release_item, release_waiters);
    }
}

void peer_link_answered(peer_conn *c)
{
    c->av_ready = true;
    log_debug("peer %s: answered its hello", peer_link_conn_name(c));
    if (c->peer == NULL || c->peer->conn != c)
        return;
    peer_link_run_waiters(c->peer, 0, NULL);
}

void peer_link_attempt_done(peer *p, peer_conn *c, int status, const char *why)
{
    if (!p->connecting || p->attempt != c)
        return;
    p->connecting = false;
    p->attempt = NULL;
    peer_link_run_waiters(p, status, why);
}

/* ---- Connecting --------------------------------------------------------- */

typedef struct connect_req {
    resolve_req res; /* first */
    uv_connect_t req;
    peer_conn *c;
    peer *p;
} connect_req;

static void connect_failed(peer *p, peer_conn *c, connect_req *r, int status, const char *what)
{
    if (c && c->closing) {
        free(r); /* closed already (its timer): the attempt is over */
        return;
    }
    char why[400];
    snprintf(why, sizeof(why),
             "cannot reach the mcefad of host %s at %s (%s: %s); is it running, and is its peer_port reachable?",
             p->host, p->address, what, uv_strerror(status));
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
    peer_link_attempt_done(p, c, -EHOSTUNREACH, why);
    if (c)
        peer_link_close(c, why);
    free(r);
}

static void on_connected(uv_connect_t *req, int status)
{
    connect_req *r = (connect_req *)((char *)req - offsetof(connect_req, req));
    peer_conn *c = r->c;
    peer *p = r->p;
    if (status < 0) {
        connect_failed(p, c, r, status, "connect");
        return;
    }
    free(r);
    peer_link_start_reading(c);
    if (c->sess)
        peer_link_auth_start(c);
    else if (peer_link_on_connect_fn)
        peer_link_on_connect_fn(c);
}

static void on_resolved(resolve_req *res, int status, struct addrinfo *ai)
{
    connect_req *r = (connect_req *)res;
    peer *p = r->p;
    if (status < 0) {
        connect_failed(p, NULL, r, status, "name lookup");
        return;
    }
    r->c = peer_link_conn_new(true);
    if (!r->c) {
        uv_freeaddrinfo(ai);
        connect_failed(p, NULL, r, UV_ENOMEM, "connect");
        return;
    }
    r->c->peer = p;
    p->attempt = r->c;
    int rc = uv_tcp_connect(&r->req, &r->c->tcp, ai->ai_addr, on_connected);
    uv_freeaddrinfo(ai);
    if (rc < 0)
        connect_failed(p, r->c, r, rc, "connect");
}

void peer_when_up(peer *p, void (*fn)(void *, int, const char *), void *arg)
{
    if (peer_link_stopping()) {
        answer_later(fn, arg, -ESHUTDOWN, "the daemon is shutting down");
        return;
    }
    if (p->conn && !p->conn->closing && p->conn->av_ready) {
        answer_later(fn, arg, 0, NULL);
        return;
    }
    peer_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        answer_later(fn, arg, -ENOMEM, "out of memory");
        return;
    }
    w->fn = fn;
    w->arg = arg;
    STAILQ_INSERT_TAIL(&p->waiters, w, link);
    if (p->connecting || (p->conn && !p->conn->closing))
        return; /* that attempt, or the answer to the peer's hello, releases it */
    connect_req *r = calloc(1, sizeof(*r));
    if (!r) {
        STAILQ_REMOVE(&p->waiters, w, peer_waiter, link);
        free(w);
        answer_later(fn, arg, -ENOMEM, "out of memory");
        return;
    }
    p->connecting = true;
    p->attempt = NULL; /* resolving */
    r->p = p;
    int rc = resolve_start(&r->res, p->address, on_resolved);
    if (rc < 0) {
        /* Our waiter must not run inside this call: take it back. */
        STAILQ_REMOVE(&p->waiters, w, peer_waiter, link);
        free(w);
        p->connecting = false;
        char why[400];
        snprintf(why, sizeof(why),
                 "cannot reach the mcefad of host %s at %s (name lookup: %s); is it running, and is its peer_port "
                 "reachable?",
                 p->host, p->address, uv_strerror(rc));
        snprintf(p->last_error, sizeof(p->last_error), "%s", why);
        free(r);
        answer_later(fn, arg, -EHOSTUNREACH, why);
        peer_link_run_waiters(p, -EHOSTUNREACH, why);
    }
}

/* ---- A request once the connection is up --------------------------------- */

typedef struct when_up_req {
    peer *p;
    Mcefa__PeerFrame *f;
    peer_reply_fn fn;
    void *arg;
    unsigned tries;
} when_up_req;

static void when_up_fail(when_up_req *w, int status, const char *why)
{
    Mcefa__PeerFrame fail = MCEFA__PEER_FRAME__INIT;
    fail.reply = true;
    fail.status = status;
    fail.error = (char *)why;
    w->fn(NULL, w->arg, &fail);
    free(w);
}

static void request_when_up(void *arg, int status, const char *why)
{
    when_up_req *w = arg;
    if (status < 0) {
        when_up_fail(w, status, why ? why : "the peer cannot be reached");
        return;
    }
    if (!w->p->conn && w->tries++ < 1) {
        /* It went down between "up" and now: connect again, once. */
        peer_when_up(w->p, request_when_up, w);
        return;
    }
    if (!w->p->conn || peer_link_request(w->p->conn, w->f, w->fn, w->arg) < 0) {
        when_up_fail(w, -ECONNRESET, "the connection to the peer broke");
        return;
    }
    free(w);
}

void peer_request_when_up(peer *p, Mcefa__PeerFrame *f, peer_reply_fn fn, void *arg)
{
    when_up_req *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("out of memory queueing a peer request; exiting");
        abort();
    }
    w->p = p;
    w->f = f;
    w->fn = fn;
    w->arg = arg;
    peer_when_up(p, request_when_up, w);
}

/* ---- A new handshake on the NICs' word ---------------------------------- */

static void rehandshake_done(void *arg, int status, const char *why)
{
    peer *p = arg;
    if (status < 0)
        log_warn("peer %s: the new handshake failed: %s", p->host, why);
    else
        log_info("peer %s: handshake renewed", p->host);
}

void peer_link_rehandshake(peer *p, peer_conn *c, int code)
{
    char why[300];
    snprintf(why, sizeof(why),
             "a NIC reported RMA to it failed (%s: unresponsive, unreachable, or it lost this host's address); "
             "handshaking again",
             strerror(-code));
    log_warn("peer %s: %s", p->host, why);
    atomic_fetch_add_explicit(&p->rehandshakes, 1, memory_order_relaxed);
    /* Closing fails what is queued for the old connection (its generation
     * moves); the new handshake replaces the address entries if the peer
     * restarted, and transfers on open segments go on if it did not. */
    peer_link_close(c, why);
    peer_when_up(p, rehandshake_done, p);
}
