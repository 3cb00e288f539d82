/* Peer links: connections, sending, framing, deadlines, the listener.
 * The handshake's frames are in peer_link_auth.c, connecting and waiting
 * for a connection in peer_connect.c (they share peer_link_internal.h). */
#include "peer_link_internal.h"

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

#define SERVE_MAX 8
typedef struct serve_entry {
    int body_case;
    peer_serve_fn fn;
    bool before_hello;
} serve_entry;
static serve_entry serve_table[SERVE_MAX];
static unsigned nserve;
void (*peer_link_on_connect_fn)(peer_conn *c);

static uv_loop_t *loop;
static uv_tcp_t listener;
static bool listening;
static bool stopping;

bool peer_link_stopping(void)
{
    return stopping;
}
static LIST_HEAD(, peer_conn) conns = LIST_HEAD_INITIALIZER(conns);
static unsigned nconns, max_conns;

void peer_link_serve(int body_case, peer_serve_fn fn, bool before_hello)
{
    if (nserve < SERVE_MAX)
        serve_table[nserve++] = (serve_entry){body_case, fn, before_hello};
}

void peer_link_on_connect(void (*fn)(peer_conn *c))
{
    peer_link_on_connect_fn = fn;
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
const char *peer_link_conn_name(const peer_conn *c)
{
    return c->peer ? c->peer->host : c->auth_host[0] ? c->auth_host : c->remote;
}

/* Puts one frame on the wire as it is (no sealing). */
int peer_link_send_plain(peer_conn *c, const Mcefa__PeerFrame *f)
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
        log_warn("closing the peer connection of %s: %s", peer_link_conn_name(c), why);
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

/* Sends f as it goes on this connection (sealed with peer_auth=psk). */
static int send_frame(peer_conn *c, Mcefa__PeerFrame *f)
{
    if (c->closing)
        return -ENOTCONN;
    if (!c->sess)
        return c->stage == ST_OPEN ? peer_link_send_plain(c, f) : -ENOTCONN;
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
    rc = peer_link_send_plain(c, &w);
    free(box);
    return rc;
}

int peer_link_send(peer_conn *c, Mcefa__PeerFrame *f)
{
    int rc = send_frame(c, f);
    if (!c->outgoing && !c->av_ready && c->peer && f->reply && f->status == 0 &&
        f->body_case == MCEFA__PEER_FRAME__BODY_HELLO) {
        /* Our answer to the other side's hello is out: it inserts our
         * addresses before it reads anything we send after it. Unanswered,
         * the connection is of no use (and would hold its waiters). */
        if (rc == 0)
            peer_link_answered(c);
        else
            peer_link_close(c, "cannot send the answer to its hello");
    }
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

uint64_t peer_link_id(const peer_conn *c)
{
    return c->id;
}

peer_conn *peer_link_by_id(uint64_t id)
{
    peer_conn *c;
    LIST_FOREACH(c, &conns, link)
        if (c->id == id)
            return c->closing ? NULL : c;
    return NULL;
}

void peer_link_bind(peer_conn *c, peer *p)
{
    c->peer = p;
    c->connect_deadline_ms = 0;
    /* Outgoing: bound once the other side's hello reply came, which it
     * sent after inserting our addresses. */
    c->av_ready = c->outgoing;
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

void peer_link_deliver(peer_conn *c, const Mcefa__PeerFrame *f)
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
            log_warn("peer connection %s (%s): frame over the limit (%zu bytes before the handshake, "
                     "max_frame_bytes after); closing",
                     c->remote, peer_link_conn_name(c), (size_t)PEER_PREAUTH_MAX_FRAME);
            peer_link_close(c, "peer sent an oversize frame");
            return;
        }
        Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, len, payload);
        wire_reader_consume(&c->rd);
        if (!f) {
            stats_protocol_error();
            log_warn("peer connection %s (%s): a frame that does not decode (not an mcefad?); closing", c->remote,
                     peer_link_conn_name(c));
            peer_link_close(c, "peer sent a frame that does not decode (not an mcefad?)");
            return;
        }
        c->last_rx_ms = clock_now_ms();
        peer_link_receive(c, f);
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
    /* NIC workers may have asked for a new handshake (peer_ask_rehandshake):
     * the connection that serves the peer answers for it. */
    int code = c->peer && c->peer->conn == c && !c->connect_deadline_ms ? peer_take_rehandshake(c->peer) : 0;
    if (code) {
        peer_link_rehandshake(c->peer, c, code);
        return;
    }
    pending_req *pr;
    LIST_FOREACH(pr, &c->pending, link)
        if (now >= pr->deadline_ms) {
            peer_link_close(c, "the peer did not answer within request_timeout_ms");
            return;
        }
}

peer_conn *peer_link_conn_new(bool outgoing)
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
    static uint64_t next_id;
    c->id = ++next_id;
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

void peer_link_note_remote(peer_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[48] = "?";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(c->remote, sizeof(c->remote), "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
}

void peer_link_start_reading(peer_conn *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
    peer_link_note_remote(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
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
    peer_conn *c = nconns < max_conns ? peer_link_conn_new(false) : NULL;
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
    peer_link_start_reading(c);
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
