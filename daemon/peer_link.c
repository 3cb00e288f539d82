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
#include "ident.h"
#include "log.h"
#include "peer_auth.h"
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

/* Where a connection stands. With peer_auth=psk nothing but PeerAuth
 * frames is read or sent before ST_OPEN; with none it starts open. */
enum conn_stage {
    ST_WAIT_AUTH1, /* incoming: the connector's nonce */
    ST_WAIT_AUTH2, /* outgoing: the listener's nonce and proof */
    ST_WAIT_AUTH3, /* incoming: the connector's proof */
    ST_OPEN,
};

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
    enum conn_stage stage;
    peer_session *sess;  /* psk: this connection's keys; NULL with peer_auth=none */
    char auth_host[256]; /* the host name the other side proved (psk) */
    uint64_t auth_epoch;
    char remote[64];     /* "ip:port", for log lines before a hello */
    uint64_t last_rx_ms;
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

/* Who is at the other end, for log lines: the peer once known. */
static const char *conn_name(const peer_conn *c)
{
    return c->peer ? c->peer->host : c->auth_host[0] ? c->auth_host : c->remote;
}

/* Puts one frame on the wire as it is (no sealing). */
static int send_plain(peer_conn *c, const Mcefa__PeerFrame *f)
{
    if (c->closing)
        return -ENOTCONN;
    write_req *r = calloc(1, sizeof(*r));
    size_t len;
    if (!r || wire_pack(&f->base, &r->data, &len) < 0) {
        free(r);
        return -ENOMEM;
    }
    /* A peer that sends requests but does not read the replies must not
     * grow us without bound. */
    if (c->tcp.write_queue_size + len > config.peer_max_outbound_bytes) {
        free(r->data);
        free(r);
        char why[200];
        snprintf(why, sizeof(why), "more than peer_max_outbound_bytes (%llu) queued unread for it",
                 (unsigned long long)config.peer_max_outbound_bytes);
        log_warn("closing the peer connection of %s: %s", conn_name(c), why);
        peer_link_close(c, why);
        return -ENOBUFS;
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

int peer_link_send(peer_conn *c, Mcefa__PeerFrame *f)
{
    if (c->closing)
        return -ENOTCONN;
    if (!c->sess)
        return c->stage == ST_OPEN ? send_plain(c, f) : -ENOTCONN;
    if (c->stage != ST_OPEN)
        return -ENOTCONN; /* nothing leaves before the other side proved itself */
    size_t len = protobuf_c_message_get_packed_size(&f->base);
    uint8_t *inner = malloc(len ? len : 1), *box;
    size_t boxlen;
    if (!inner)
        return -ENOMEM;
    protobuf_c_message_pack(&f->base, inner);
    int rc = peer_auth_seal(c->sess, inner, len, &box, &boxlen);
    free(inner);
    if (rc < 0)
        return rc;
    Mcefa__PeerFrame w = MCEFA__PEER_FRAME__INIT;
    w.body_case = MCEFA__PEER_FRAME__BODY_SEALED;
    w.sealed.data = box;
    w.sealed.len = boxlen;
    rc = send_plain(c, &w);
    free(box);
    return rc;
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
    char clean[400];
    peer_text_clean(clean, sizeof(clean), txt); /* may quote what a peer sent */
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.status = status;
    f.error = clean;
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
    /* Admitted: frames as large as the setting allows (plus the seal). */
    c->rd.max_frame = config.max_frame_bytes + 64;
}

unsigned peer_link_count(const peer *p)
{
    unsigned n = 0;
    peer_conn *c;
    LIST_FOREACH(c, &conns, link)
        n += c->peer == p && !c->closing;
    return n;
}

void peer_link_close_others(peer *p, const peer_conn *keep, const char *why)
{
    peer_conn *c;
    LIST_FOREACH(c, &conns, link)
        /* Our attempt under way stays: it will meet the new incarnation. */
        if (c->peer == p && c != keep && !c->closing && !c->connect_deadline_ms)
            peer_link_close(c, why); /* freed later: handles close async */
}

const char *peer_link_auth_host(const peer_conn *c, uint64_t *epoch)
{
    if (!c->sess)
        return NULL;
    *epoch = c->auth_epoch;
    return c->auth_host;
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
    if (c->sess) {
        peer_auth_wipe(c->sess);
        free(c->sess);
    }
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

/* ---- Authentication (peer_auth=psk) ----------------------------------- */

/* Tells the other side in one plaintext frame why we refuse it (its log
 * and its clients then say so), then closes. */
static void refuse(peer_conn *c, uint64_t seq, int status, const char *to_them, const char *why)
{
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq; /* answers the request refused, so its sender reports why */
    f.reply = true;
    f.status = status;
    f.error = (char *)to_them;
    send_plain(c, &f);
    log_warn("peer connection %s (%s): %s", c->remote, conn_name(c), why);
    peer_link_close(c, why);
}

static void send_auth(peer_conn *c, uint32_t step)
{
    Mcefa__PeerAuth a = MCEFA__PEER_AUTH__INIT;
    a.step = step;
    if (step < 3) {
        a.hostname = (char *)ident_hostname();
        a.epoch = ident_epoch();
        a.nonce.data = c->sess->my_nonce;
        a.nonce.len = PEER_AUTH_NONCE_LEN;
    }
    if (step > 1) {
        a.proof.data = c->sess->my_proof;
        a.proof.len = PEER_AUTH_PROOF_LEN;
    }
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_AUTH;
    f.auth = &a;
    if (send_plain(c, &f) < 0 && !c->closing)
        peer_link_close(c, "cannot send the peer authentication");
}

static bool auth_identity_ok(peer_conn *c, const Mcefa__PeerAuth *a, uint32_t step)
{
    if (a->step != step || !peer_name_ok(a->hostname, sizeof(c->auth_host) - 1) ||
        a->nonce.len != PEER_AUTH_NONCE_LEN || !a->epoch)
        return false;
    snprintf(c->auth_host, sizeof(c->auth_host), "%s", a->hostname);
    c->auth_epoch = a->epoch;
    return true;
}

static const char wrong_secret[] = "check both daemons use the same peer_secret_file (mcefactl gen-secret makes one)";

/* One frame before ST_OPEN: the three steps of the handshake. */
static void auth_frame(peer_conn *c, const Mcefa__PeerFrame *f)
{
    char txt[500];
    if (f->reply && f->status < 0) {
        char theirs[300];
        peer_text_clean(theirs, sizeof(theirs), f->error);
        snprintf(txt, sizeof(txt), "host %s rejected our peer authentication: %s", conn_name(c), theirs);
        log_warn("%s", txt);
        peer_link_close(c, txt);
        return;
    }
    if (f->body_case != MCEFA__PEER_FRAME__BODY_AUTH) {
        snprintf(txt, sizeof(txt),
                 "host %s requires peer authentication (peer_auth=psk): give both daemons the same "
                 "peer_secret_file",
                 ident_hostname());
        refuse(c, f->seq, -EACCES, txt,
               "the peer did not authenticate (peer_auth=none there, or not an mcefad): give both daemons the same "
               "peer_secret_file");
        return;
    }
    const Mcefa__PeerAuth *a = f->auth;
    peer_session *x = c->sess;
    switch (c->stage) {
    case ST_WAIT_AUTH1:
        if (!auth_identity_ok(c, a, 1)) {
            refuse(c, 0, -EPROTO, "malformed peer authentication (step 1)", "malformed peer authentication (step 1)");
            return;
        }
        peer_auth_new_nonce(x);
        peer_auth_derive(x, false, a->hostname, a->epoch, a->nonce.data, ident_hostname(), ident_epoch(),
                         x->my_nonce);
        send_auth(c, 2);
        c->stage = ST_WAIT_AUTH3;
        return;
    case ST_WAIT_AUTH2:
        if (!auth_identity_ok(c, a, 2)) {
            refuse(c, 0, -EPROTO, "malformed peer authentication (step 2)", "malformed peer authentication (step 2)");
            return;
        }
        peer_auth_derive(x, true, ident_hostname(), ident_epoch(), x->my_nonce, a->hostname, a->epoch,
                         a->nonce.data);
        if (!peer_auth_proof_ok(x, a->proof.data, a->proof.len)) {
            snprintf(txt, sizeof(txt), "host %s could not verify your peer authentication: %s", ident_hostname(),
                     wrong_secret);
            char why[400];
            snprintf(why, sizeof(why), "host %s failed our peer authentication: %s", conn_name(c), wrong_secret);
            refuse(c, 0, -EACCES, txt, why);
            return;
        }
        send_auth(c, 3);
        if (c->closing)
            return;
        c->stage = ST_OPEN;
        if (on_connect_fn)
            on_connect_fn(c);
        return;
    case ST_WAIT_AUTH3:
        if (a->step != 3 || !peer_auth_proof_ok(x, a->proof.data, a->proof.len)) {
            snprintf(txt, sizeof(txt), "host %s rejected your peer authentication: %s", ident_hostname(),
                     wrong_secret);
            char why[400];
            snprintf(why, sizeof(why), "a peer claiming host %s failed authentication: %s", c->auth_host,
                     wrong_secret);
            refuse(c, 0, -EACCES, txt, why);
            return;
        }
        c->stage = ST_OPEN;
        return;
    case ST_OPEN:
        break;
    }
}

/* Every frame read: the handshake, then (psk) opening the seal. */
static void receive_frame(peer_conn *c, const Mcefa__PeerFrame *f)
{
    if (c->stage != ST_OPEN) {
        auth_frame(c, f);
        return;
    }
    if (!c->sess) {
        if (f->body_case == MCEFA__PEER_FRAME__BODY_AUTH || f->body_case == MCEFA__PEER_FRAME__BODY_SEALED) {
            char txt[300];
            snprintf(txt, sizeof(txt),
                     "host %s runs with peer_auth=none and cannot authenticate: set peer_auth=psk and the same "
                     "peer_secret_file on both daemons",
                     ident_hostname());
            refuse(c, f->seq, -EACCES, txt,
                   "the peer wants to authenticate (peer_auth=psk) and this daemon has peer_auth=none: set the "
                   "same peer_auth and peer_secret_file on both");
            return;
        }
        handle_frame(c, f);
        return;
    }
    if (f->body_case != MCEFA__PEER_FRAME__BODY_SEALED) {
        if (f->reply && f->status < 0) {
            auth_frame(c, f); /* its refusal, after our proof went out */
            return;
        }
        stats_protocol_error();
        log_warn("peer connection %s (%s): a frame that is not sealed after authentication; closing", c->remote,
                 conn_name(c));
        peer_link_close(c, "the peer sent a frame that is not sealed after authentication");
        return;
    }
    uint8_t *in;
    size_t len;
    Mcefa__PeerFrame *g = NULL;
    if (peer_auth_open(c->sess, f->sealed.data, f->sealed.len, &in, &len) == 0) {
        g = mcefa__peer_frame__unpack(NULL, len, in);
        free(in);
    }
    if (!g || g->body_case == MCEFA__PEER_FRAME__BODY_AUTH || g->body_case == MCEFA__PEER_FRAME__BODY_SEALED) {
        if (g)
            mcefa__peer_frame__free_unpacked(g, NULL);
        stats_protocol_error();
        log_warn("peer connection %s (%s): a sealed frame failed to open (tampered, replayed or reordered); "
                 "closing",
                 c->remote, conn_name(c));
        peer_link_close(c, "a sealed frame from the peer failed to open (tampered, replayed or reordered)");
        return;
    }
    handle_frame(c, g);
    mcefa__peer_frame__free_unpacked(g, NULL);
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
            log_warn("peer connection %s (%s): frame over the limit (%zu bytes before the handshake, "
                     "max_frame_bytes after); closing",
                     c->remote, conn_name(c), (size_t)PEER_PREAUTH_MAX_FRAME);
            peer_link_close(c, "peer sent an oversize frame");
            return;
        }
        Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, len, payload);
        wire_reader_consume(&c->rd);
        if (!f) {
            stats_protocol_error();
            log_warn("peer connection %s (%s): a frame that does not decode (not an mcefad?); closing", c->remote,
                     conn_name(c));
            peer_link_close(c, "peer sent a frame that does not decode (not an mcefad?)");
            return;
        }
        c->last_rx_ms = clock_now_ms();
        receive_frame(c, f);
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
}

static uint64_t handshake_ms(void)
{
    return config.request_timeout_ms < PEER_HANDSHAKE_MS ? config.request_timeout_ms : PEER_HANDSHAKE_MS;
}

/* A peer that accepted TCP but never answers must not hold requests (and
 * the clients behind them) forever. */
static void on_conn_timer(uv_timer_t *t)
{
    peer_conn *c = t->data;
    uint64_t now = clock_now_ms();
    if (c->connect_deadline_ms && now >= c->connect_deadline_ms) {
        if (!c->outgoing)
            log_warn("peer connection %s: no handshake within %llu ms; closing", c->remote,
                     (unsigned long long)handshake_ms());
        peer_link_close(c, "no handshake within request_timeout_ms (at most 5 s)");
        return;
    }
    /* A second connection of a peer (ours is p->conn), idle: close it if
     * the operator allows, so authenticated hosts cannot pile them up. Off
     * by default: the other side may use it as its own, and its open
     * segments fail while their connection is down. */
    if (c->peer && c->peer->conn != c && !c->connect_deadline_ms && config.peer_idle_timeout_ms &&
        LIST_EMPTY(&c->pending) && now - c->last_rx_ms >= config.peer_idle_timeout_ms) {
        log_info("closing a spare connection of peer %s: idle for peer_idle_timeout_ms", c->peer->host);
        peer_link_close(c, "spare connection idle for peer_idle_timeout_ms");
        return;
    }
    pending_req *pr;
    LIST_FOREACH(pr, &c->pending, link)
        if (now >= pr->deadline_ms) {
            peer_link_close(c, "the peer did not answer within request_timeout_ms");
            return;
        }
}

static peer_conn *conn_new(bool outgoing)
{
    peer_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (peer_auth_enabled()) {
        if (!(c->sess = calloc(1, sizeof(*c->sess)))) {
            free(c);
            return NULL;
        }
        c->stage = outgoing ? ST_WAIT_AUTH2 : ST_WAIT_AUTH1;
    } else {
        c->stage = ST_OPEN;
    }
    c->outgoing = outgoing;
    snprintf(c->remote, sizeof(c->remote), "?");
    c->last_rx_ms = clock_now_ms();
    /* Small frames until the other side is admitted (peer_link_bind). */
    wire_reader_init(&c->rd, PEER_PREAUTH_MAX_FRAME);
    LIST_INIT(&c->pending);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->connect_deadline_ms = clock_now_ms() + handshake_ms();
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

static void note_remote(peer_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[48] = "?";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(c->remote, sizeof(c->remote), "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
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
    note_remote(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->sess) {
        peer_auth_new_nonce(c->sess);
        send_auth(c, 1); /* the hello follows once the listener proved itself */
    } else if (on_connect_fn) {
        on_connect_fn(c);
    }
}

static void on_resolved(resolve_req *res, int status, struct addrinfo *ai)
{
    connect_req *r = (connect_req *)res;
    peer *p = r->p;
    if (status < 0) {
        connect_failed(p, NULL, r, status, "name lookup");
        return;
    }
    r->c = conn_new(true);
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
    peer_conn *c = nconns < max_conns ? conn_new(false) : NULL;
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
    note_remote(c);
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
