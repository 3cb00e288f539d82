/* Daemon-to-daemon connections over TCP (libuv), same framing as the
 * client socket, PeerFrame messages. */
#include "peer.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon.h"
#include "log.h"

peer *peers;

typedef void (*reply_fn)(peer_conn *c, void *arg, const Mcefa__PeerFrame *f);

typedef struct pending_req {
    struct pending_req *next;
    uint64_t seq;
    uint64_t deadline_ms;
    reply_fn fn;
    void *arg;
} pending_req;

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;             /* request and handshake deadlines */
    uint64_t connect_deadline_ms; /* 0 once the handshake is done */
    unsigned open_handles;
    peer_conn *lnext, *lprev; /* every connection, for shutdown */
    peer *peer; /* NULL on an incoming connection until its hello */
    bool outgoing;
    bool closing;
    uint8_t *buf;
    size_t len, cap;
    uint64_t next_seq;
    pending_req *pending;
};

struct peer_waiter {
    peer_waiter *next;
    void (*fn)(void *arg, int status, const char *why);
    void *arg;
};

static uv_tcp_t listener;
static bool listening;
static bool stopping;
static peer_conn *all_conns;
static unsigned nconns;
static unsigned npeers;
/* Connections that have not said hello hold up to two frames of buffer:
 * bound how many anyone can open. */
#define PEER_CONNS_MAX 1024
/* Anyone who reaches peer_port can announce a host: bound the table. */
#define PEERS_MAX 4096

/* ---- Names -------------------------------------------------------------- */

static size_t host_len(const char *name)
{
    const char *colon = strrchr(name, ':');
    return colon ? (size_t)(colon - name) : strlen(name);
}

/* This host's interface addresses, read once: a segment named by one of
 * them is local. */
static char local_addrs[64][INET6_ADDRSTRLEN];
static int nlocal_addrs = -1;

static void load_local_addrs(void)
{
    struct ifaddrs *ifa, *i;
    nlocal_addrs = 0;
    if (getifaddrs(&ifa) < 0)
        return;
    for (i = ifa; i && nlocal_addrs < 64; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        const void *a = NULL;
        if (i->ifa_addr->sa_family == AF_INET)
            a = &((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        else if (i->ifa_addr->sa_family == AF_INET6)
            a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        if (a && inet_ntop(i->ifa_addr->sa_family, a, local_addrs[nlocal_addrs], INET6_ADDRSTRLEN))
            nlocal_addrs++;
    }
    freeifaddrs(ifa);
}

bool peer_is_local_name(const char *name)
{
    size_t hl = host_len(name);
    if (hl == 0 || (hl == strlen(mcefad.hostname) && strncmp(name, mcefad.hostname, hl) == 0))
        return true;
    /* Loopback names always mean this host. */
    if ((hl == 9 && strncmp(name, "localhost", 9) == 0) || strncmp(name, "127.", 4) == 0)
        return true;
    if (nlocal_addrs < 0)
        load_local_addrs();
    for (int k = 0; k < nlocal_addrs; k++)
        if (strlen(local_addrs[k]) == hl && strncmp(name, local_addrs[k], hl) == 0)
            return true;
    return false;
}

/* Looks host up in peer_hosts ("name=addr[:port],..."). */
static bool static_address(const char *host, char *out, size_t outlen)
{
    const char *p = mcefad.cfg.peer_hosts;
    size_t hl = strlen(host);
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', l);
        if (eq && (size_t)(eq - p) == hl && strncmp(p, host, hl) == 0) {
            size_t al = l - (size_t)(eq + 1 - p);
            if (memchr(eq + 1, ':', al))
                snprintf(out, outlen, "%.*s", (int)al, eq + 1);
            else
                snprintf(out, outlen, "%.*s:%llu", (int)al, eq + 1, (unsigned long long)mcefad.cfg.peer_port);
            return true;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

int peer_for_segment(const char *name, peer **out, char *why, size_t whylen)
{
    size_t hl = host_len(name);
    char host[256];
    if (hl == 0 || hl >= sizeof(host)) {
        snprintf(why, whylen, "segment name '%.200s' has no host part (expected host:port)", name);
        return -EINVAL;
    }
    for (size_t i = 0; i < hl; i++)
        if (!isgraph((unsigned char)name[i])) {
            snprintf(why, whylen, "the host part of segment name '%.200s' is not a printable ASCII host name", name);
            return -EINVAL;
        }
    memcpy(host, name, hl);
    host[hl] = 0;
    for (peer *p = peers; p; p = p->next)
        if (!strcmp(p->host, host)) {
            *out = p;
            return 0;
        }
    if (!nnics) {
        snprintf(why, whylen,
                 "segment '%s' is on host %s, but this daemon has no NIC (provider '%s'); configure a provider "
                 "to reach other hosts",
                 name, host, mcefad.cfg.provider);
        return -ENETUNREACH;
    }
    if (npeers >= PEERS_MAX) {
        snprintf(why, whylen, "too many peer hosts (%d) known to this daemon", PEERS_MAX);
        return -ENOSPC;
    }
    peer *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    npeers++;
    snprintf(p->host, sizeof(p->host), "%s", host);
    if (!static_address(host, p->address, sizeof(p->address)))
        snprintf(p->address, sizeof(p->address), "%s:%llu", host, (unsigned long long)mcefad.cfg.peer_port);
    for (unsigned i = 0; i < NIC_MAX; i++)
        for (unsigned j = 0; j < NIC_MAX; j++)
            p->fiaddr[i][j] = FI_ADDR_NOTAVAIL;
    p->next = peers;
    peers = p;
    *out = p;
    return 0;
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

static void conn_close(peer_conn *c, const char *why);

static int conn_send(peer_conn *c, Mcefa__PeerFrame *f)
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

static int conn_request(peer_conn *c, Mcefa__PeerFrame *f, reply_fn fn, void *arg)
{
    pending_req *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return -ENOMEM;
    f->seq = ++c->next_seq;
    pr->seq = f->seq;
    pr->deadline_ms = daemon_now_ms() + mcefad.cfg.request_timeout_ms;
    pr->fn = fn;
    pr->arg = arg;
    int rc = conn_send(c, f);
    if (rc < 0) {
        free(pr);
        return rc;
    }
    pr->next = c->pending;
    c->pending = pr;
    return 0;
}

static void reply_error(peer_conn *c, uint64_t seq, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_error(peer_conn *c, uint64_t seq, int status, const char *fmt, ...)
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
    conn_send(c, &f);
}

/* ---- Handshake ---------------------------------------------------------- */

static void fill_hello(Mcefa__PeerHello *h, Mcefa__PeerNic *nv, Mcefa__PeerNic **np)
{
    mcefa__peer_hello__init(h);
    h->protocol_version = MCEFA_PROTOCOL_VERSION;
    h->hostname = mcefad.hostname;
    h->epoch = mcefad.epoch;
    h->provider = mcefad.cfg.provider;
    h->n_nics = nnics;
    h->nics = np;
    for (unsigned i = 0; i < nnics; i++) {
        mcefa__peer_nic__init(&nv[i]);
        nv[i].name = nics[i]->name;
        nv[i].fabric = nics[i]->fabric;
        nv[i].address.data = nics[i]->addr;
        nv[i].address.len = nics[i]->addrlen;
        nv[i].warmup_addr = nics[i]->warmup_addr;
        nv[i].warmup_key = nics[i]->warmup_key;
        np[i] = &nv[i];
    }
}

/* Stops using the peer's address entries. They are not removed: a NIC
 * worker may be posting to one right now, and an op that slips through
 * fails at the peer (its new incarnation's keys differ, see nic.c). */
static void forget_av(peer *p)
{
    atomic_fetch_add(&p->gen, 1);
    for (unsigned i = 0; i < nnics; i++)
        for (unsigned j = 0; j < p->nrnics; j++) {
            p->fiaddr[i][j] = FI_ADDR_NOTAVAIL;
            p->warm[i][j] = false;
        }
}

/* Takes in a peer's hello: epoch check, then every remote NIC address into
 * each local NIC's AV in one insert. */
static int apply_hello(peer *p, const Mcefa__PeerHello *h, char *why, size_t whylen)
{
    if (h->protocol_version != MCEFA_PROTOCOL_VERSION) {
        snprintf(why, whylen, "peer %s speaks protocol %u, this daemon %u; run the same mcefad version on both",
                 h->hostname, h->protocol_version, MCEFA_PROTOCOL_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (strcmp(h->provider, mcefad.cfg.provider) != 0) {
        snprintf(why, whylen, "peer %s uses provider '%s', this daemon '%s'; configure the same provider on both",
                 h->hostname, h->provider, mcefad.cfg.provider);
        return -EPROTO;
    }
    if (h->n_nics > NIC_MAX) {
        snprintf(why, whylen, "peer %s announced %zu NICs (at most %d)", h->hostname, h->n_nics, NIC_MAX);
        return -EPROTO;
    }
    if (p->epoch == h->epoch && p->nrnics == h->n_nics)
        return 0; /* a reconnect to the same incarnation: entries stand */
    if (p->epoch && p->epoch != h->epoch)
        log_info("peer %s restarted (epoch %016" PRIx64 " -> %016" PRIx64 "): replacing its address entries", p->host,
                 p->epoch, h->epoch);
    forget_av(p);
    p->layout_gen++;
    p->epoch = 0; /* set once every entry is in: a half-applied hello is redone */
    snprintf(p->remote_hostname, sizeof(p->remote_hostname), "%s", h->hostname);
    p->nrnics = (unsigned)h->n_nics;
    for (unsigned j = 0; j < p->nrnics; j++) {
        const Mcefa__PeerNic *n = h->nics[j];
        remote_nic *r = &p->rnic[j];
        if (n->address.len > NIC_ADDR_MAX) {
            snprintf(why, whylen, "peer %s: NIC address of %zu bytes is too long", h->hostname, n->address.len);
            p->nrnics = 0;
            return -EPROTO;
        }
        snprintf(r->name, sizeof(r->name), "%s", n->name);
        snprintf(r->fabric, sizeof(r->fabric), "%s", n->fabric);
        memcpy(r->addr, n->address.data, n->address.len);
        r->addrlen = n->address.len;
        r->warmup_addr = n->warmup_addr;
        r->warmup_key = n->warmup_key;
    }
    for (unsigned i = 0; i < nnics; i++) {
        uint8_t all[NIC_MAX * NIC_ADDR_MAX];
        unsigned idx[NIC_MAX], cnt = 0;
        size_t off = 0;
        for (unsigned j = 0; j < p->nrnics; j++)
            if (!strcmp(p->rnic[j].fabric, nics[i]->fabric) && p->rnic[j].addrlen == nics[i]->addrlen) {
                memcpy(all + off, p->rnic[j].addr, p->rnic[j].addrlen);
                off += p->rnic[j].addrlen;
                idx[cnt++] = j;
            }
        if (!cnt)
            continue;
        fi_addr_t out[NIC_MAX];
        int rc = fi_av_insert(nics[i]->av, all, cnt, out, 0, NULL);
        if (rc != (int)cnt) {
            snprintf(why, whylen, "NIC %s: inserting %u addresses of peer %s failed (%d)", nics[i]->name, cnt,
                     h->hostname, rc);
            forget_av(p);
            return -EIO;
        }
        for (unsigned k = 0; k < cnt; k++)
            p->fiaddr[i][idx[k]] = out[k];
    }
    p->epoch = h->epoch;
    log_info("peer %s (%s): epoch %016" PRIx64 ", %u NICs", p->host, p->address, p->epoch, p->nrnics);
    return 0;
}

static void run_waiters(peer *p, int status, const char *why)
{
    peer_waiter *w = p->waiters;
    p->waiters = NULL;
    while (w) {
        peer_waiter *n = w->next;
        w->fn(w->arg, status, why);
        free(w);
        w = n;
    }
}

/* Ends the peer's outgoing connection attempt c (NULL: still resolving)
 * and answers everyone waiting. Anything that is not the current attempt
 * (a stale one closed by its timer, say) changes nothing. */
static void attempt_done(peer *p, peer_conn *c, int status, const char *why)
{
    if (!p->connecting || p->attempt != c)
        return;
    p->connecting = false;
    p->attempt = NULL;
    run_waiters(p, status, why);
}

static void on_hello_reply(peer_conn *c, void *arg, const Mcefa__PeerFrame *f)
{
    (void)arg;
    peer *p = c->peer;
    if (c->closing)
        return; /* conn_close already ended the attempt */
    char why[300] = "";
    int rc = f->status;
    if (rc < 0)
        snprintf(why, sizeof(why), "peer %s refused the handshake: %s", p->host, f->error);
    else if (f->body_case != MCEFA__PEER_FRAME__BODY_HELLO) {
        rc = -EPROTO;
        snprintf(why, sizeof(why), "peer %s answered the handshake without a hello", p->host);
    } else
        rc = apply_hello(p, f->hello, why, sizeof(why));
    if (rc < 0) {
        snprintf(p->last_error, sizeof(p->last_error), "%s", why);
        log_warn("%s", why);
        attempt_done(p, c, rc, why);
        conn_close(c, why);
        return;
    }
    c->connect_deadline_ms = 0;
    if (p->conn && p->conn != c && !p->conn->closing) {
        /* The peer connected to us meanwhile: one connection is enough. */
        attempt_done(p, c, 0, NULL);
        conn_close(c, "a connection to this peer is already up");
        return;
    }
    p->conn = c;
    p->last_error[0] = 0;
    attempt_done(p, c, 0, NULL);
}

/* ---- Serving a peer's requests ----------------------------------------- */

static void serve_get_segment(peer_conn *c, uint64_t seq, const Mcefa__GetSegment *g)
{
    segment_entry *e = segment_find(g->name);
    if (!e) {
        reply_error(c, seq, -ENOENT, "segment '%s' not found on host %s: no client there exports it", g->name,
                    mcefad.hostname);
        return;
    }
    const region_table *t = &e->owner->regions;
    Mcefa__SegmentDescriptor d = MCEFA__SEGMENT_DESCRIPTOR__INIT;
    d.name = e->name;
    d.n_regions = t->n;
    d.regions = calloc(t->n + 1, sizeof(*d.regions));
    Mcefa__RemoteRegion *rv = calloc(t->n + 1, sizeof(*rv));
    uint64_t *vals = calloc(2 * (t->n + 1) * (nnics + 1), sizeof(uint64_t));
    for (size_t i = 0; i < t->n; i++) {
        region *r = t->v[i];
        mcefa__remote_region__init(&rv[i]);
        rv[i].addr = r->addr;
        rv[i].length = r->length;
        rv[i].numa_node = r->numa_node;
        rv[i].n_rma_addr = rv[i].n_rma_key = r->nmrs;
        rv[i].rma_addr = vals + 2 * i * (nnics + 1);
        rv[i].rma_key = rv[i].rma_addr + nnics + 1;
        for (unsigned k = 0; k < r->nmrs; k++) {
            rv[i].rma_addr[k] = r->mrs[k].rma_base;
            rv[i].rma_key[k] = r->mrs[k].key;
        }
        d.regions[i] = &rv[i];
    }
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.body_case = MCEFA__PEER_FRAME__BODY_SEGMENT;
    f.segment = &d;
    conn_send(c, &f);
    free(vals);
    free(rv);
    free(d.regions);
}

static void serve_hello(peer_conn *c, uint64_t seq, const Mcefa__PeerHello *h)
{
    char why[300];
    peer *p = NULL;
    if (c->peer) {
        reply_error(c, seq, -EPROTO, "hello sent twice on one connection");
        conn_close(c, "a second hello on one connection");
        return;
    }
    char name[300];
    snprintf(name, sizeof(name), "%s:0", h->hostname);
    int rc = peer_for_segment(name, &p, why, sizeof(why));
    if (rc == 0 && p->conn && p->conn != c && p->epoch != h->epoch)
        /* The host restarted and reached us before we noticed: the old
         * connection is dead. */
        conn_close(p->conn, "the peer came back with a new epoch");
    if (rc == 0)
        rc = apply_hello(p, h, why, sizeof(why));
    if (rc < 0) {
        log_warn("refusing a peer handshake: %s", why);
        reply_error(c, seq, rc, "%s", why);
        return;
    }
    c->peer = p;
    c->connect_deadline_ms = 0;
    if (!p->conn) {
        p->conn = c; /* one connection serves both directions */
        run_waiters(p, 0, NULL);
    }
    Mcefa__PeerHello mine;
    Mcefa__PeerNic nv[NIC_MAX], *np[NIC_MAX];
    fill_hello(&mine, nv, np);
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    f.hello = &mine;
    conn_send(c, &f);
}

static void handle_frame(peer_conn *c, const Mcefa__PeerFrame *f)
{
    if (f->reply) {
        for (pending_req **pp = &c->pending; *pp; pp = &(*pp)->next)
            if ((*pp)->seq == f->seq) {
                pending_req *pr = *pp;
                *pp = pr->next;
                pr->fn(c, pr->arg, f);
                free(pr);
                return;
            }
        log_warn("peer connection: reply to unknown request %" PRIu64 " ignored", f->seq);
        return;
    }
    if (f->body_case == MCEFA__PEER_FRAME__BODY_HELLO) {
        serve_hello(c, f->seq, f->hello);
        return;
    }
    if (!c->peer) {
        reply_error(c, f->seq, -EPROTO, "send hello first");
        conn_close(c, "request before hello");
        return;
    }
    switch (f->body_case) {
    case MCEFA__PEER_FRAME__BODY_GET_SEGMENT:
        serve_get_segment(c, f->seq, f->get_segment);
        break;
    default:
        reply_error(c, f->seq, -EOPNOTSUPP, "unknown peer request (daemon %s)", MCEFAD_VERSION);
    }
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
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        all_conns = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    free(c->buf);
    free(c);
}

static void conn_close_handles(peer_conn *c)
{
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void conn_close(peer_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = true;
    peer *p = c->peer;
    for (peer *q = peers; q; q = q->next)
        if (q->conn == c) {
            q->conn = NULL;
            atomic_fetch_add(&q->gen, 1);
            snprintf(q->last_error, sizeof(q->last_error), "%s", why);
            log_warn("lost the connection to peer %s: %s", q->host, why);
        }
    if (p)
        attempt_done(p, c, -ECONNREFUSED, why);
    Mcefa__PeerFrame fail = MCEFA__PEER_FRAME__INIT;
    fail.reply = true;
    fail.status = -ECONNRESET;
    char txt[300];
    snprintf(txt, sizeof(txt), "connection to peer %s lost: %s", p ? p->host : "?", why);
    fail.error = txt;
    while (c->pending) {
        pending_req *pr = c->pending;
        c->pending = pr->next;
        fail.seq = pr->seq;
        pr->fn(c, pr->arg, &fail);
        free(pr);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_close_handles(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    peer_conn *c = h->data;
    (void)suggested;
    if (c->cap - c->len < 65536) {
        size_t ncap = c->cap ? c->cap * 2 : 131072;
        uint8_t *nb = realloc(c->buf, ncap);
        if (!nb) {
            *b = uv_buf_init(NULL, 0);
            return;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    *b = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    peer_conn *c = s->data;
    (void)b;
    if (n < 0) {
        conn_close(c, n == UV_EOF ? "the peer closed the connection" : uv_strerror((int)n));
        return;
    }
    c->len += (size_t)n;
    while (!c->closing && c->len >= WIRE_HDR_LEN) {
        uint32_t fl = (uint32_t)c->buf[0] | (uint32_t)c->buf[1] << 8 | (uint32_t)c->buf[2] << 16 |
                      (uint32_t)c->buf[3] << 24;
        if (fl > mcefad.cfg.max_frame_bytes) {
            conn_close(c, "peer sent an oversize frame");
            return;
        }
        if (c->len - WIRE_HDR_LEN < fl)
            break;
        Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, fl, c->buf + WIRE_HDR_LEN);
        size_t used = WIRE_HDR_LEN + fl;
        if (!f) {
            atomic_fetch_add(&mcefad.protocol_errors, 1);
            conn_close(c, "peer sent a frame that does not decode (not an mcefad?)");
            return;
        }
        handle_frame(c, f);
        mcefa__peer_frame__free_unpacked(f, NULL);
        if (c->closing)
            return;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
}

/* A peer that accepted TCP but never answers must not hold requests (and
 * the clients behind them) forever. */
static void on_conn_timer(uv_timer_t *t)
{
    peer_conn *c = t->data;
    uint64_t now = daemon_now_ms();
    if (c->connect_deadline_ms && now >= c->connect_deadline_ms) {
        conn_close(c, "no handshake within request_timeout_ms");
        return;
    }
    for (pending_req *pr = c->pending; pr; pr = pr->next)
        if (now >= pr->deadline_ms) {
            conn_close(c, "the peer did not answer within request_timeout_ms");
            return;
        }
}

static peer_conn *conn_new(void)
{
    peer_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    uv_tcp_init(mcefad.loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(mcefad.loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->connect_deadline_ms = daemon_now_ms() + mcefad.cfg.request_timeout_ms;
    uint64_t tick = mcefad.cfg.request_timeout_ms / 4 ? mcefad.cfg.request_timeout_ms / 4 : 1;
    if (tick > 1000)
        tick = 1000;
    uv_timer_start(&c->timer, on_conn_timer, tick, tick);
    c->lnext = all_conns;
    if (all_conns)
        all_conns->lprev = c;
    all_conns = c;
    nconns++;
    return c;
}

typedef struct connect_req {
    uv_connect_t req;
    uv_getaddrinfo_t gai;
    peer_conn *c;
    peer *p;
    bool resolving;
    struct connect_req *next, *prev; /* resolving ones, cancelled at stop */
} connect_req;

static connect_req *resolving;

static void resolving_del(connect_req *r)
{
    if (!r->resolving)
        return;
    r->resolving = false;
    if (r->prev)
        r->prev->next = r->next;
    else
        resolving = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

static void connect_failed(peer *p, peer_conn *c, connect_req *r, int status, const char *what)
{
    if (c && c->closing) {
        free(r); /* closed already (its timer): the attempt is over */
        return;
    }
    char why[400];
    snprintf(why, sizeof(why), "cannot reach the mcefad of host %s at %s (%s: %s); is it running, and is its "
             "peer_port reachable?",
             p->host, p->address, what, uv_strerror(status));
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
    attempt_done(p, c, -EHOSTUNREACH, why);
    if (c)
        conn_close(c, why);
    free(r);
}

static void on_connected(uv_connect_t *req, int status)
{
    connect_req *r = (connect_req *)req;
    peer_conn *c = r->c;
    peer *p = r->p;
    if (status < 0) {
        connect_failed(p, c, r, status, "connect");
        return;
    }
    free(r);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    Mcefa__PeerHello h;
    Mcefa__PeerNic nv[NIC_MAX], *np[NIC_MAX];
    fill_hello(&h, nv, np);
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    if (conn_request(c, &f, on_hello_reply, NULL) < 0)
        conn_close(c, "cannot send the handshake");
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    connect_req *r = (connect_req *)((char *)gai - offsetof(connect_req, gai));
    peer *p = r->p;
    resolving_del(r);
    if (stopping) {
        if (res)
            uv_freeaddrinfo(res);
        status = UV_ECANCELED;
        res = NULL;
    }
    if (status < 0 || !res) {
        connect_failed(p, NULL, r, status < 0 ? status : UV_EAI_NONAME, "name lookup");
        return;
    }
    r->c = conn_new();
    if (!r->c) {
        uv_freeaddrinfo(res);
        connect_failed(p, NULL, r, UV_ENOMEM, "connect");
        return;
    }
    r->c->peer = p;
    r->c->outgoing = true;
    p->attempt = r->c;
    int rc = uv_tcp_connect(&r->req, &r->c->tcp, res->ai_addr, on_connected);
    uv_freeaddrinfo(res);
    if (rc < 0)
        connect_failed(p, r->c, r, rc, "connect");
}

/* Calls fn once the peer's connection is up (at once if it is). */
static void peer_when_up(peer *p, void (*fn)(void *, int, const char *), void *arg)
{
    if (stopping) {
        fn(arg, -ESHUTDOWN, "the daemon is shutting down");
        return;
    }
    if (p->conn && !p->conn->closing) {
        fn(arg, 0, NULL);
        return;
    }
    peer_waiter *w = calloc(1, sizeof(*w));
    w->fn = fn;
    w->arg = arg;
    w->next = p->waiters;
    p->waiters = w;
    if (p->connecting)
        return;
    connect_req *r = calloc(1, sizeof(*r));
    if (!r) {
        run_waiters(p, -ENOMEM, "out of memory");
        return;
    }
    p->connecting = true;
    p->attempt = NULL; /* resolving */
    r->p = p;
    char host[300];
    snprintf(host, sizeof(host), "%s", p->address);
    char *colon = strrchr(host, ':');
    const char *port = "0";
    if (colon) {
        *colon = 0;
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(mcefad.loop, &r->gai, on_resolved, host, port, &hints);
    if (rc < 0) {
        connect_failed(p, NULL, r, rc, "name lookup");
        return;
    }
    r->resolving = true;
    r->next = resolving;
    if (resolving)
        resolving->prev = r;
    resolving = r;
}

/* ---- Segment descriptors ------------------------------------------------ */

typedef struct seg_req {
    peer *p;
    peer_segment_cb cb;
    void *arg;
    char name[300];
} seg_req;

static void on_segment_reply(peer_conn *c, void *arg, const Mcefa__PeerFrame *f)
{
    (void)c;
    seg_req *r = arg;
    if (f->status < 0)
        r->cb(r->arg, r->p, f->status, f->error, NULL);
    else if (f->body_case != MCEFA__PEER_FRAME__BODY_SEGMENT)
        r->cb(r->arg, r->p, -EPROTO, "peer answered without a segment descriptor", NULL);
    else
        r->cb(r->arg, r->p, 0, NULL, f->segment);
    free(r);
}

static void segment_when_up(void *arg, int status, const char *why)
{
    seg_req *r = arg;
    if (status < 0) {
        r->cb(r->arg, r->p, status, why, NULL);
        free(r);
        return;
    }
    Mcefa__GetSegment g = MCEFA__GET_SEGMENT__INIT;
    g.name = r->name;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_GET_SEGMENT;
    f.get_segment = &g;
    if (conn_request(r->p->conn, &f, on_segment_reply, r) < 0) {
        r->cb(r->arg, r->p, -ECONNRESET, "the connection to the peer broke", NULL);
        free(r);
    }
}

void peer_get_segment(peer *p, const char *name, peer_segment_cb cb, void *arg)
{
    seg_req *r = calloc(1, sizeof(*r));
    r->p = p;
    r->cb = cb;
    r->arg = arg;
    snprintf(r->name, sizeof(r->name), "%s", name);
    peer_when_up(p, segment_when_up, r);
}

int peer_pick_remote(peer *p, unsigned local)
{
    unsigned n = p->nrnics;
    for (unsigned k = 0; k < n; k++) {
        unsigned j = (p->rr + k) % n;
        if (p->fiaddr[local][j] != FI_ADDR_NOTAVAIL) {
            p->rr = j + 1;
            return (int)j;
        }
    }
    return -1;
}

/* ---- Warmup ------------------------------------------------------------- */

/* The request (loop thread) and its ops (NIC workers) live apart: the
 * client is answered once every op has reported (completion, error or
 * deadline); the ops' memory goes with the last release, which after a
 * timeout can come much later. */
typedef struct warm_ops warm_ops;

typedef struct warm_req {
    peer *p;
    peer_warmup_cb cb;
    void *arg;
    uint64_t gen;
    uv_async_t async;
    _Atomic unsigned reports_left;
    unsigned total;
    int err;
    char why[300];
    struct warm_result {
        unsigned i, j;
        int err;
        char why[200];
    } res[NIC_MAX * NIC_MAX];
} warm_req;

struct warm_ops {
    _Atomic unsigned releases_left;
    uint64_t sink[NIC_MAX * NIC_MAX];
    struct fid_mr *sink_mr[NIC_MAX];
    struct warm_op {
        net_op op; /* first */
        warm_ops *owner;
        warm_req *req;
        unsigned k;
    } ops[NIC_MAX * NIC_MAX];
};

static void warm_closed(uv_handle_t *h)
{
    free(h->data);
}

static void warm_finish(warm_req *w)
{
    unsigned pairs = 0;
    for (unsigned k = 0; k < w->total; k++) {
        if (w->res[k].err) {
            if (!w->err) {
                w->err = w->res[k].err;
                snprintf(w->why, sizeof(w->why), "%s", w->res[k].why);
            }
        } else if (atomic_load(&w->p->gen) == w->gen) {
            w->p->warm[w->res[k].i][w->res[k].j] = true;
        }
    }
    for (unsigned i = 0; i < nnics; i++)
        for (unsigned j = 0; j < w->p->nrnics; j++)
            pairs += w->p->warm[i][j];
    w->cb(w->arg, w->err, w->err ? w->why : NULL, pairs);
    uv_close((uv_handle_t *)&w->async, warm_closed);
}

static void warm_async(uv_async_t *a)
{
    warm_finish(a->data);
}

/* Worker thread. After the last report the loop may free w at once. */
static void warm_done(net_op *op, int err, const char *why)
{
    struct warm_op *o = (struct warm_op *)op;
    warm_req *w = o->req;
    w->res[o->k].err = err;
    if (why)
        snprintf(w->res[o->k].why, sizeof(w->res[o->k].why), "%s", why);
    if (atomic_fetch_sub(&w->reports_left, 1) == 1)
        uv_async_send(&w->async);
}

static void warm_release(net_op *op)
{
    warm_ops *ops = ((struct warm_op *)op)->owner;
    if (atomic_fetch_sub(&ops->releases_left, 1) != 1)
        return;
    for (unsigned i = 0; i < NIC_MAX; i++)
        if (ops->sink_mr[i])
            fi_close(&ops->sink_mr[i]->fid);
    free(ops);
}

static void warmup_when_up(void *arg, int status, const char *why)
{
    warm_req *w = arg;
    peer *p = w->p;
    if (status < 0) {
        w->err = status;
        snprintf(w->why, sizeof(w->why), "%s", why);
        warm_finish(w);
        return;
    }
    warm_ops *ops = calloc(1, sizeof(*ops));
    if (!ops) {
        w->err = -ENOMEM;
        snprintf(w->why, sizeof(w->why), "out of memory");
        warm_finish(w);
        return;
    }
    w->gen = atomic_load(&p->gen);
    net_op *head = NULL;
    uint64_t deadline = nic_now_ms() + mcefad.cfg.request_timeout_ms;
    for (unsigned i = 0; i < nnics; i++) {
        nic *n = nics[i];
        bool any = false;
        for (unsigned j = 0; j < p->nrnics; j++)
            any |= p->fiaddr[i][j] != FI_ADDR_NOTAVAIL && !p->warm[i][j];
        if (!any)
            continue;
        uint64_t key = (n->mr_mode & FI_MR_PROV_KEY) ? 0 : atomic_fetch_add(&n->next_key, 1);
        if (fi_mr_reg(n->domain, &ops->sink[i * NIC_MAX], NIC_MAX * sizeof(uint64_t), FI_READ, 0, key, 0,
                      &ops->sink_mr[i], NULL) ||
            ((n->mr_mode & FI_MR_ENDPOINT) &&
             (fi_mr_bind(ops->sink_mr[i], &n->ep->fid, 0) || fi_mr_enable(ops->sink_mr[i])))) {
            w->err = -EIO;
            snprintf(w->why, sizeof(w->why), "NIC %s: cannot register the warmup buffer", n->name);
            continue;
        }
        for (unsigned j = 0; j < p->nrnics; j++) {
            if (p->fiaddr[i][j] == FI_ADDR_NOTAVAIL || p->warm[i][j])
                continue;
            unsigned k = w->total++;
            struct warm_op *o = &ops->ops[k];
            o->owner = ops;
            o->req = w;
            o->k = k;
            w->res[k].i = i;
            w->res[k].j = j;
            o->op.nic = n;
            o->op.write = 0;
            o->op.local = &ops->sink[i * NIC_MAX + j];
            o->op.desc = fi_mr_desc(ops->sink_mr[i]);
            o->op.len = sizeof(uint64_t);
            o->op.dest = p->fiaddr[i][j];
            o->op.raddr = p->rnic[j].warmup_addr;
            o->op.rkey = p->rnic[j].warmup_key;
            o->op.deadline_ms = deadline;
            o->op.peer_gen = &p->gen;
            o->op.gen = w->gen;
            o->op.done = warm_done;
            o->op.release = warm_release;
            o->op.next = head;
            head = &o->op;
        }
    }
    if (!w->total) {
        for (unsigned i = 0; i < NIC_MAX; i++)
            if (ops->sink_mr[i])
                fi_close(&ops->sink_mr[i]->fid);
        free(ops);
        warm_finish(w);
        return;
    }
    atomic_store(&w->reports_left, w->total);
    atomic_store(&ops->releases_left, w->total);
    nic_submit(head);
}

void peer_warmup(peer *p, peer_warmup_cb cb, void *arg)
{
    warm_req *w = calloc(1, sizeof(*w));
    if (!w) {
        cb(arg, -ENOMEM, "out of memory", 0);
        return;
    }
    w->p = p;
    w->cb = cb;
    w->arg = arg;
    uv_async_init(mcefad.loop, &w->async, warm_async);
    w->async.data = w;
    peer_when_up(p, warmup_when_up, w);
}

/* ---- Listener ----------------------------------------------------------- */

static void on_peer_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    peer_conn *c = nconns < PEER_CONNS_MAX ? conn_new() : NULL;
    if (!c) {
        log_warn("refusing a peer connection: %u open already (or out of memory)", nconns);
        /* Accept and drop it, or libuv would stop watching the listener. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t) {
            uv_tcp_init(mcefad.loop, t);
            uv_accept(srv, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, (uv_close_cb)free);
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

int peer_start(void)
{
    if (!nnics)
        return 0;
    struct sockaddr_in sa;
    int rc = uv_ip4_addr(mcefad.cfg.peer_listen, (int)mcefad.cfg.peer_port, &sa);
    if (rc < 0) {
        log_error("peer_listen '%s' is not an IPv4 address", mcefad.cfg.peer_listen);
        return -EINVAL;
    }
    uv_tcp_init(mcefad.loop, &listener);
    if ((rc = uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&listener, 128, on_peer_connection)) < 0) {
        log_error("cannot listen for peers on %s:%llu: %s (another mcefad? set peer_port)", mcefad.cfg.peer_listen,
                  (unsigned long long)mcefad.cfg.peer_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&listener, NULL);
        return -EADDRINUSE;
    }
    listening = true;
    log_info("peers connect to %s:%llu", mcefad.cfg.peer_listen, (unsigned long long)mcefad.cfg.peer_port);
    return 0;
}

void peer_stop(void)
{
    stopping = true;
    /* A slow resolver must not hold up the exit: on_resolved then runs
     * with UV_ECANCELED. */
    for (connect_req *r = resolving; r; r = r->next)
        uv_cancel((uv_req_t *)&r->gai);
    if (listening) {
        uv_close((uv_handle_t *)&listener, NULL);
        listening = false;
    }
    for (peer_conn *c = all_conns; c; c = c->lnext)
        conn_close(c, "daemon shutting down");
    for (peer *p = peers; p; p = p->next)
        run_waiters(p, -ESHUTDOWN, "daemon shutting down");
}

void peer_free_all(void)
{
    while (peers) {
        peer *p = peers;
        peers = p->next;
        free(p);
    }
    npeers = 0;
}
