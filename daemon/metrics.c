#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "copypool.h"
#include "gpu.h"
#include "ident.h"
#include "log.h"
#include "nic.h"
#include "peer_table.h"
#include "session.h"
#include "stats.h"

static uv_loop_t *loop;
static uv_tcp_t server;
static bool serving;

/* Scrapers are few; a cap and a deadline keep idle or slow connections
 * from piling up. */
#define HTTP_MAX_CONNS 64
#define HTTP_TIMEOUT_MS 5000

typedef struct http_conn {
    struct http_conn *next, *prev; /* open connections, closed at stop */
    uv_tcp_t tcp;
    uv_timer_t timer;
    unsigned open_handles;
    char req[8192];
    size_t len;
    bool answered;
} http_conn;

static unsigned nconns;
static http_conn *conns;

/* Label values: backslash, quote and newline escaped. */
static void label(FILE *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', o);
        if (*v == '\n') {
            fputs("\\n", o);
            continue;
        }
        fputc(*v, o);
    }
}

#define HELP(name, type, text) fprintf(o, "# HELP " name " " text "\n# TYPE " name " " type "\n")

/* One metric family with a value per NIC: an atomic counter at `off`. */
static void nic_family(FILE *o, const char *name, const char *type, const char *help, size_t off)
{
    fprintf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (unsigned i = 0; i < nic_count(); i++)
        fprintf(o, "%s{nic=\"%s\"} %llu\n", name, nic_get(i)->name,
                (unsigned long long)atomic_load((_Atomic uint64_t *)((char *)nic_get(i) + off)));
}

/* Likewise per peer host (counters). */
static void peer_family(FILE *o, const char *name, const char *help, uint64_t (*get)(const peer *p))
{
    fprintf(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (peer *p = peer_first(); p; p = peer_next(p)) {
        fprintf(o, "%s{peer=\"", name);
        label(o, peer_host(p));
        fprintf(o, "\"} %llu\n", (unsigned long long)get(p));
    }
}

/* GPU memory per device: what clients registered, and the allocations the
 * daemon mapped for it (one per allocation, shared by its ranges). */
static void gpu_family(FILE *o)
{
    unsigned ng = gpu_count();
    if (!ng)
        return;
    uint64_t bytes[GPU_MAX] = {0};
    unsigned regions[GPU_MAX] = {0};
    session *s;
    TAILQ_FOREACH(s, session_all(), link)
        for (size_t i = 0; i < s->regions.n; i++) {
            int g = s->regions.v[i]->gpu;
            if (g >= 0 && g < GPU_MAX) {
                regions[g]++;
                bytes[g] += s->regions.v[i]->length;
            }
        }
    HELP("mcefad_gpu_registered_regions", "gauge", "Registered regions of GPU memory per GPU.");
    for (unsigned g = 0; g < ng; g++)
        fprintf(o, "mcefad_gpu_registered_regions{gpu=\"%s\"} %u\n", gpu_bus_id((int)g), regions[g]);
    HELP("mcefad_gpu_registered_bytes", "gauge", "Registered bytes of GPU memory per GPU.");
    for (unsigned g = 0; g < ng; g++)
        fprintf(o, "mcefad_gpu_registered_bytes{gpu=\"%s\"} %llu\n", gpu_bus_id((int)g),
                (unsigned long long)bytes[g]);
    HELP("mcefad_gpu_imports", "gauge", "Client GPU allocations mapped into the daemon per GPU.");
    for (unsigned g = 0; g < ng; g++) {
        gpu_info info;
        if (gpu_get_info(g, &info) == 0)
            fprintf(o, "mcefad_gpu_imports{gpu=\"%s\"} %u\n", info.bus_id, info.imports);
    }
}

void metrics_render(FILE *o)
{
    HELP("mcefad_info", "gauge", "Daemon identity (value 1).");
    fprintf(o, "mcefad_info{version=\"%s\",provider=\"", MCEFA_VERSION);
    label(o, config.provider);
    fprintf(o, "\",hostname=\"");
    label(o, ident_hostname());
    fprintf(o, "\",epoch=\"%016llx\"} 1\n", (unsigned long long)ident_epoch());
    HELP("mcefad_uptime_seconds", "gauge", "Seconds since start.");
    fprintf(o, "mcefad_uptime_seconds %.3f\n", (double)ident_uptime_ms() / 1000.0);

    unsigned clients = 0, regions = 0, batches = 0;
    uint64_t reg_bytes = 0, inflight = 0;
    session *s;
    TAILQ_FOREACH(s, session_all(), link) {
        clients += s->hello_done;
        regions += (unsigned)s->regions.n;
        reg_bytes += s->regions.bytes;
        inflight += session_inflight(s);
        batches += batch_count(&s->batches);
    }
    HELP("mcefad_clients", "gauge", "Connected clients.");
    fprintf(o, "mcefad_clients %u\n", clients);
    HELP("mcefad_registered_regions", "gauge", "Registered memory regions.");
    fprintf(o, "mcefad_registered_regions %u\n", regions);
    HELP("mcefad_registered_bytes", "gauge", "Bytes of registered memory.");
    fprintf(o, "mcefad_registered_bytes %llu\n", (unsigned long long)reg_bytes);
    HELP("mcefad_batches", "gauge", "Allocated batches.");
    fprintf(o, "mcefad_batches %u\n", batches);
    HELP("mcefad_transfers_in_flight", "gauge", "Transfers submitted and not finished.");
    fprintf(o, "mcefad_transfers_in_flight %llu\n", (unsigned long long)inflight);
    HELP("mcefad_copy_queue_depth", "gauge", "Same-host copy jobs waiting for a copy thread.");
    fprintf(o, "mcefad_copy_queue_depth %zu\n", copypool_queued());
    HELP("mcefad_transfers_total", "counter", "Finished transfers by result.");
    fprintf(o, "mcefad_transfers_total{result=\"completed\"} %llu\n",
            (unsigned long long)stats_get(&stats_counters.transfers_completed));
    fprintf(o, "mcefad_transfers_total{result=\"failed\"} %llu\n",
            (unsigned long long)stats_get(&stats_counters.transfers_failed));
    HELP("mcefad_local_bytes_total", "counter", "Bytes moved by same-host copies.");
    fprintf(o, "mcefad_local_bytes_total %llu\n", (unsigned long long)stats_get(&stats_counters.bytes_copied));
    HELP("mcefad_protocol_errors_total", "counter", "Malformed or unknown messages from clients and peers.");
    fprintf(o, "mcefad_protocol_errors_total %llu\n", (unsigned long long)stats_get(&stats_counters.protocol_errors));

    nic_family(o, "mcefad_nic_bytes_total", "counter", "Bytes moved by RMA operations per NIC.",
               offsetof(nic, bytes));
    nic_family(o, "mcefad_nic_ops_total", "counter", "Completed RMA operations per NIC.", offsetof(nic, ops));
    nic_family(o, "mcefad_nic_errors_total", "counter", "Failed RMA operations per NIC.", offsetof(nic, errors));
    nic_family(o, "mcefad_nic_outstanding", "gauge", "Work requests posted and not completed per NIC.",
               offsetof(nic, outstanding));
    HELP("mcefad_nic_max_wr", "gauge", "Cap on outstanding work requests per NIC.");
    for (unsigned i = 0; i < nic_count(); i++)
        fprintf(o, "mcefad_nic_max_wr{nic=\"%s\"} %llu\n", nic_get(i)->name, (unsigned long long)nic_get(i)->max_wr);

    HELP("mcefad_peer_connected", "gauge", "1 while the connection to the peer daemon is up.");
    for (peer *p = peer_first(); p; p = peer_next(p)) {
        fprintf(o, "mcefad_peer_connected{peer=\"");
        label(o, peer_host(p));
        fprintf(o, "\"} %d\n", peer_connected(p));
    }
    peer_family(o, "mcefad_peer_bytes_total", "Bytes moved to and from each peer host.", peer_bytes);
    peer_family(o, "mcefad_peer_ops_total", "RMA operations finished per peer host.", peer_ops);
    peer_family(o, "mcefad_peer_errors_total", "Failed RMA operations per peer host.", peer_errors);
    peer_family(o, "mcefad_peer_rehandshakes_total",
                "New handshakes because a NIC reported the peer unresponsive, unreachable or without our address.",
                peer_rehandshakes);

    gpu_family(o);

    HELP("mcefad_transfer_latency_seconds", "histogram", "Time from submission to completion of a transfer.");
    uint64_t cum = 0;
    for (unsigned i = 0; i <= STATS_LAT_BUCKETS; i++) {
        cum += stats_get(&stats_counters.lat_buckets[i]);
        if (i < STATS_LAT_BUCKETS)
            fprintf(o, "mcefad_transfer_latency_seconds_bucket{le=\"%g\"} %llu\n", (double)stats_lat_bound_us(i) / 1e6,
                    (unsigned long long)cum);
        else
            fprintf(o, "mcefad_transfer_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    fprintf(o, "mcefad_transfer_latency_seconds_sum %.6f\n", (double)stats_get(&stats_counters.lat_sum_us) / 1e6);
    fprintf(o, "mcefad_transfer_latency_seconds_count %llu\n", (unsigned long long)cum);
}

static void on_http_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->open_handles)
        return;
    nconns--;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void http_close(http_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_http_closed);
    uv_close((uv_handle_t *)&c->tcp, on_http_closed);
}

static void on_http_timeout(uv_timer_t *t)
{
    http_close(t->data);
}

typedef struct http_write {
    uv_write_t w;
    char *buf;
} http_write;

static void on_http_written(uv_write_t *w, int status)
{
    http_write *hw = (http_write *)w;
    (void)status;
    free(hw->buf);
    http_close(w->handle->data);
    free(hw);
}

static void respond(http_conn *c, const char *status, const char *type, const char *body, size_t blen)
{
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status, type,
            blen);
    fwrite(body, 1, blen, f);
    fclose(f);
    http_write *hw = calloc(1, sizeof(*hw));
    hw->buf = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&hw->w, (uv_stream_t *)&c->tcp, &b, 1, on_http_written) < 0) {
        free(buf);
        free(hw);
        http_close(c);
    }
}

static void on_http_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    http_conn *c = h->data;
    (void)s;
    *b = uv_buf_init(c->req + c->len, (unsigned)(sizeof(c->req) - 1 - c->len));
}

static void on_http_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    http_conn *c = st->data;
    (void)b;
    if (n < 0) {
        if (!c->answered)
            http_close(c);
        return;
    }
    size_t was = c->len;
    c->len += (size_t)n;
    c->req[c->len] = 0;
    /* A NUL byte, or a first byte that cannot start a method, is not
     * HTTP: answer now rather than hold a slot until the deadline. */
    if (memchr(c->req + was, 0, (size_t)n) || c->req[0] < 'A' || c->req[0] > 'Z') {
        const char *m = "not an HTTP request; mcefad serves Prometheus metrics at GET /metrics\n";
        respond(c, "400 Bad Request", "text/plain", m, strlen(m));
        return;
    }
    if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
        if (c->len >= sizeof(c->req) - 1) {
            const char *m = "request too large\n";
            respond(c, "431 Request Header Fields Too Large", "text/plain", m, strlen(m));
        }
        return;
    }
    if (strncmp(c->req, "GET /metrics ", 13) == 0 || strncmp(c->req, "GET /metrics?", 13) == 0) {
        char *body;
        size_t blen;
        FILE *f = open_memstream(&body, &blen);
        metrics_render(f);
        fclose(f);
        respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, blen);
        free(body);
    } else {
        const char *m = "mcefad serves Prometheus metrics at GET /metrics\n";
        respond(c, "404 Not Found", "text/plain", m, strlen(m));
    }
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

static void on_http_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    bool room = nconns < HTTP_MAX_CONNS;
    if (!room) {
        /* Full of connections that have not finished a request (a slowloris
         * reconnecting as each times out): the oldest of them makes room,
         * so a real scrape, which completes at once, still gets through. */
        http_conn *old = NULL;
        for (http_conn *i = conns; i; i = i->next)
            if (!i->answered && !uv_is_closing((uv_handle_t *)&i->tcp))
                old = i; /* conns is newest first */
        if (old) {
            log_debug("metrics: %u connections open; closing the oldest unfinished one", nconns);
            http_close(old); /* counted until its handles closed: the new one may pass the cap meanwhile */
            room = true;
        }
    }
    http_conn *c = room ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        /* Accept and drop it, or libuv would stop watching the listener. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t) {
            uv_tcp_init(loop, t);
            if (uv_accept(srv, (uv_stream_t *)t) == 0)
                log_warn("metrics: %u scrapers connected already; refusing another", nconns);
            uv_close((uv_handle_t *)t, on_refused_closed);
        }
        return;
    }
    nconns++;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    uv_timer_start(&c->timer, on_http_timeout, HTTP_TIMEOUT_MS, 0);
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        http_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_http_alloc, on_http_read);
}

int metrics_start(uv_loop_t *l, const char *spec)
{
    loop = l;
    if (!*spec)
        return 0;
    /* config_validate checked the form; this only splits it. */
    char host[256];
    int port;
    struct sockaddr_in sa;
    int rc = config_parse_hostport(spec, host, sizeof(host), &port);
    if (rc < 0 || (rc = uv_ip4_addr(host, port, &sa)) < 0) {
        log_error("metrics_listen '%s' is not an IPv4 address:port", spec);
        return -EINVAL;
    }
    uv_tcp_init(loop, &server);
    if ((rc = uv_tcp_bind(&server, (struct sockaddr *)&sa, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&server, 64, on_http_connection)) < 0) {
        /* Transfers matter more than metrics: run on without them. */
        log_error("cannot serve metrics on %s: %s; running without metrics (set metrics_listen to a free port, or "
                  "empty to turn metrics off)",
                  spec, uv_strerror(rc));
        uv_close((uv_handle_t *)&server, NULL);
        return 0;
    }
    serving = true;
    log_info("metrics at http://%s/metrics", spec);
    return 0;
}

void metrics_stop(void)
{
    if (serving) {
        uv_close((uv_handle_t *)&server, NULL);
        serving = false;
    }
    for (http_conn *c = conns; c; c = c->next)
        http_close(c);
}
