#include "peer_link.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "defer.h"
#include "log.h"
#include "resolve.h"
#include "stats.h"
#include "wire.h"

typedef struct pending_req {
    LIST_ENTRY(pending_req) link;
    uint64_t seq;
    uint64_t deadline_ms;
    peer_reply_fn fn;
    void *arg;
} pending_req;

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;             /* request and handshake deadlines */
    uint64_t connect_deadline_ms; /* 0 once the handshake is done */
    unsigned open_handles;
    LIST_ENTRY(peer_conn) link;   /* every connection, for shutdown */
    peer *peer; /* NULL on an incoming connection until its hello */
    bool outgoing;
    bool closing;
    wire_reader rd;
    uint64_t next_seq;
    LIST_HEAD(, pending_req) pending;
};

#define SERVE_MAX 8
typedef struct serve_entry {
    int body_case;
    peer_serve_fn fn;
    bool before_hello;
} serve_entry;
static serve_entry serve_table[SERVE_MAX];
static unsigned nserve;
static void (*on_connect_fn)(peer_conn *c);

static uv_loop_t *loop;
static uv_tcp_t listener;
static bool listening;
static bool stopping;
static LIST_HEAD(, peer_conn) conns = LIST_HEAD_INITIALIZER(conns);
static unsigned nconns, max_conns;

void peer_link_serve(int body_case, peer_serve_fn fn, bool before_hello)
{
    if (nserve < SERVE_MAX)
        serve_table[nserve++] = (serve_entry){body_case, fn, before_hello};
}

void peer_link_on_connect(void (*fn)(peer_conn *c))
{
    on_connect_fn = fn;
}

peer *peer_link_peer(const peer_conn *c)
{
    return c->peer;
}

bool peer_link_closing(const peer_conn *c)
{
    return c->closing;
}

/* ---- Sending ------------------------------------------------------------ */

typedef struct write_req {
    uv_write_t w;
    uint8_t *data;
} write_req;

static void on_written(uv_write_t *w, int status)
{
    write_req *r = (write_req *)w;
    (void)status; /* a broken connection shows up on the read side */
    free(r->data);
    free(r);
}

int peer_link_send(peer_conn *c, Mcefa__PeerFrame *f)
{
    if (c->closing)
        return -ENOTCONN;
    write_req *r = calloc(1, sizeof(*r));
    size_t len;
    if (!r || wire_pack(&f->base, &r->data, &len) < 0) {
        free(r);
        return -ENOMEM;
    }
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
    int rc = uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(r->data);
        free(r);
        return -ENOTCONN;
    }
    return 0;
}

int peer_link_request(peer_conn *c, Mcefa__PeerFrame *f, peer_reply_fn fn, void *arg)
{
    pending_req *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return -ENOMEM;
    f->seq = ++c->next_seq;
    pr->seq = f->seq;
    pr->deadline_ms = clock_now_ms() + config.request_timeout_ms;
    pr->fn = fn;
    pr->arg = arg;
    int rc = peer_link_send(c, f);
    if (rc < 0) {
        free(pr);
        return rc;
    }
    LIST_INSERT_HEAD(&c->pending, pr, link);
    return 0;
}

void peer_link_reply_error(peer_conn *c, uint64_t seq, int status, const char *fmt, ...)
{
    char txt[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(txt, sizeof(txt), fmt, ap);
    va_end(ap);
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.status = status;
    f.error = txt;
    peer_link_send(c, &f);
}

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

void peer_link_run_waiters(peer *p, int status, const char *why)
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

void peer_link_attempt_done(peer *p, peer_conn *c, int status, const char *why)
{
    if (!p->connecting || p->attempt != c)
        return;
    p->connecting = false;
    p->attempt = NULL;
    peer_link_run_waiters(p, status, why);
}

void peer_link_bind(peer_conn *c, peer *p)
{
    c->peer = p;
    c->connect_deadline_ms = 0;
}

/* ---- Connections -------------------------------------------------------- */

/* A connection owns two handles (socket, timer); it is freed once both
 * have closed. */
static void on_conn_closed(uv_handle_t *h)
{
    peer_conn *c = h->data;
    if (--c->open_handles)
        return;
    nconns--;
    LIST_REMOVE(c, link);
    wire_reader_free(&c->rd);
    free(c);
}

static void conn_close_handles(peer_conn *c)
{
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

void peer_link_close(peer_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = true;
    peer *p = c->peer;
    for (peer *q = peer_first(); q; q = peer_next(q))
        if (q->conn == c) {
            q->conn = NULL;
            atomic_fetch_add(&q->gen, 1);
            snprintf(q->last_error, sizeof(q->last_error), "%s", why);
            log_warn("lost the connection to peer %s: %s", q->host, why);
        }
    if (p)
        peer_link_attempt_done(p, c, -ECONNREFUSED, why);
    Mcefa__PeerFrame fail = MCEFA__PEER_FRAME__INIT;
    fail.reply = true;
    fail.status = -ECONNRESET;
    char txt[300];
    snprintf(txt, sizeof(txt), "connection to peer %s lost: %s", p ? p->host : "?", why);
    fail.error = txt;
    while (!LIST_EMPTY(&c->pending)) {
        pending_req *pr = LIST_FIRST(&c->pending);
        LIST_REMOVE(pr, link);
        fail.seq = pr->seq;
        pr->fn(c, pr->arg, &fail);
        free(pr);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_close_handles(c);
}

static void handle_frame(peer_conn *c, const Mcefa__PeerFrame *f)
{
    if (f->reply) {
        pending_req *pr;
        LIST_FOREACH(pr, &c->pending, link)
            if (pr->seq == f->seq) {
                LIST_REMOVE(pr, link);
                pr->fn(c, pr->arg, f);
                free(pr);
                return;
            }
        log_warn("peer connection: reply to unknown request %" PRIu64 " ignored", f->seq);
        return;
    }
    for (unsigned i = 0; i < nserve; i++) {
        if (serve_table[i].body_case != (int)f->body_case)
            continue;
        if (!c->peer && !serve_table[i].before_hello) {
            peer_link_reply_error(c, f->seq, -EPROTO, "send hello first");
            peer_link_close(c, "request before hello");
            return;
        }
        serve_table[i].fn(c, f->seq, f);
        return;
    }
    if (!c->peer) {
        peer_link_reply_error(c, f->seq, -EPROTO, "send hello first");
        peer_link_close(c, "request before hello");
        return;
    }
    peer_link_reply_error(c, f->seq, -EOPNOTSUPP, "unknown peer request (daemon %s)", MCEFA_VERSION);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    peer_conn *c = h->data;
    (void)suggested;
    size_t avail = 0;
    uint8_t *p = wire_reader_space(&c->rd, &avail);
    *b = uv_buf_init((char *)p, p ? (unsigned)avail : 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    peer_conn *c = s->data;
    (void)b;
    if (n < 0) {
        peer_link_close(c, n == UV_EOF ? "the peer closed the connection" : uv_strerror((int)n));
        return;
    }
    wire_reader_commit(&c->rd, (size_t)n);
    const uint8_t *payload;
    size_t len;
    int rc;
    while (!c->closing && (rc = wire_reader_next(&c->rd, &payload, &len)) != 0) {
        if (rc < 0) {
            peer_link_close(c, "peer sent an oversize frame");
            return;
        }
        Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, len, payload);
        wire_reader_consume(&c->rd);
        if (!f) {
            stats_protocol_error();
            peer_link_close(c, "peer sent a frame that does not decode (not an mcefad?)");
            return;
        }
        handle_frame(c, f);
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
}

/* A peer that accepted TCP but never answers must not hold requests (and
 * the clients behind them) forever. */
static void on_conn_timer(uv_timer_t *t)
{
    peer_conn *c = t->data;
    uint64_t now = clock_now_ms();
    if (c->connect_deadline_ms && now >= c->connect_deadline_ms) {
        peer_link_close(c, "no handshake within request_timeout_ms");
        return;
    }
    pending_req *pr;
    LIST_FOREACH(pr, &c->pending, link)
        if (now >= pr->deadline_ms) {
            peer_link_close(c, "the peer did not answer within request_timeout_ms");
            return;
        }
}

static peer_conn *conn_new(void)
{
    peer_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    wire_reader_init(&c->rd, config.max_frame_bytes);
    LIST_INIT(&c->pending);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->connect_deadline_ms = clock_now_ms() + config.request_timeout_ms;
    uint64_t tick = config.request_timeout_ms / 4 ? config.request_timeout_ms / 4 : 1;
    if (tick > 1000)
        tick = 1000;
    uv_timer_start(&c->timer, on_conn_timer, tick, tick);
    LIST_INSERT_HEAD(&conns, c, link);
    nconns++;
    return c;
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
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (on_connect_fn)
        on_connect_fn(c);
}

static void on_resolved(resolve_req *res, int status, struct addrinfo *ai)
{
    connect_req *r = (connect_req *)res;
    peer *p = r->p;
    if (status < 0) {
        connect_failed(p, NULL, r, status, "name lookup");
        return;
    }
    r->c = conn_new();
    if (!r->c) {
        uv_freeaddrinfo(ai);
        connect_failed(p, NULL, r, UV_ENOMEM, "connect");
        return;
    }
    r->c->peer = p;
    r->c->outgoing = true;
    p->attempt = r->c;
    int rc = uv_tcp_connect(&r->req, &r->c->tcp, ai->ai_addr, on_connected);
    uv_freeaddrinfo(ai);
    if (rc < 0)
        connect_failed(p, r->c, r, rc, "connect");
}

void peer_when_up(peer *p, void (*fn)(void *, int, const char *), void *arg)
{
    if (stopping) {
        answer_later(fn, arg, -ESHUTDOWN, "the daemon is shutting down");
        return;
    }
    if (p->conn && !p->conn->closing) {
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
    if (p->connecting)
        return;
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

/* ---- Listener ----------------------------------------------------------- */

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

static void on_peer_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    peer_conn *c = nconns < max_conns ? conn_new() : NULL;
    if (!c) {
        log_warn("refusing a peer connection: %u open already (or out of memory)", nconns);
        /* Accept and drop it, or libuv would stop watching the listener. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t) {
            uv_tcp_init(loop, t);
            uv_accept(srv, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, on_refused_closed);
        }
        return;
    }
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        c->closing = true;
        conn_close_handles(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int peer_link_start(uv_loop_t *l, const char *listen_addr, unsigned port, unsigned maxc)
{
    loop = l;
    max_conns = maxc;
    struct sockaddr_in sa;
    int rc = uv_ip4_addr(listen_addr, (int)port, &sa);
    if (rc < 0) {
        log_error("peer_listen '%s' is not an IPv4 address", listen_addr);
        return -EINVAL;
    }
    uv_tcp_init(loop, &listener);
    if ((rc = uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&listener, 128, on_peer_connection)) < 0) {
        log_error("cannot listen for peers on %s:%u: %s (another mcefad? set peer_port)", listen_addr, port,
                  uv_strerror(rc));
        uv_close((uv_handle_t *)&listener, NULL);
        return -EADDRINUSE;
    }
    listening = true;
    log_info("peers connect to %s:%u", listen_addr, port);
    return 0;
}

void peer_link_stop(void)
{
    stopping = true;
    resolve_stop();
    if (listening) {
        uv_close((uv_handle_t *)&listener, NULL);
        listening = false;
    }
    peer_conn *c;
    LIST_FOREACH(c, &conns, link)
        peer_link_close(c, "daemon shutting down");
    for (peer *p = peer_first(); p; p = peer_next(p))
        peer_link_run_waiters(p, -ESHUTDOWN, "daemon shutting down");
}
