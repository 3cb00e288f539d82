/* Request handlers: one function per message of the client protocol. Each
 * fills a Response; anything it points to is owned by the rpc_ctx. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "nic.h"
#include "peer.h"
#include "shm/completion.h"
#include "shm/memfd.h"

void *rpc_alloc(rpc_ctx *ctx, size_t size)
{
    if (ctx->nallocs == ctx->cap) {
        size_t ncap = ctx->cap ? ctx->cap * 2 : 16;
        void **n = realloc(ctx->allocs, ncap * sizeof(*n));
        if (!n)
            goto oom;
        ctx->allocs = n;
        ctx->cap = ncap;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p)
        goto oom;
    ctx->allocs[ctx->nallocs++] = p;
    return p;
oom:
    /* Replies are small; failing here means the host is out of memory and
     * the daemon cannot answer anyone sensibly. */
    log_error("out of memory building a reply; exiting");
    abort();
}

void rpc_ctx_free(rpc_ctx *ctx)
{
    for (size_t i = 0; i < ctx->nallocs; i++)
        free(ctx->allocs[i]);
    free(ctx->allocs);
    for (unsigned i = 0; i < ctx->nfds; i++)
        close(ctx->fds[i]);
    memset(ctx, 0, sizeof(*ctx));
}

void rpc_fail(rpc_ctx *ctx, Mcefa__Response *resp, int status, const char *fmt, ...)
{
    char *txt = rpc_alloc(ctx, 512);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(txt, 512, fmt, ap);
    va_end(ap);
    resp->status = status;
    resp->error = txt;
    resp->body_case = MCEFA__RESPONSE__BODY__NOT_SET;
}

static void handle_hello(session *s, const Mcefa__Hello *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    if (m->protocol_version != MCEFA_PROTOCOL_VERSION) {
        rpc_fail(ctx, resp, -EPROTONOSUPPORT,
                 "protocol version %u is not supported: mcefad %s speaks version %u; use the libmcefa that "
                 "matches the installed daemon",
                 m->protocol_version, MCEFAD_VERSION, MCEFA_PROTOCOL_VERSION);
        ctx->close_after_reply = true;
        return;
    }
    size_t k = 0;
    for (const char *p = m->client_name; *p && k + 1 < sizeof(s->name); p++)
        s->name[k++] = isgraph((unsigned char)*p) ? *p : '_';
    if (k)
        s->name[k] = 0;

    uint32_t slots = (uint32_t)mcefad.cfg.completion_slots;
    size_t size;
    int fd = shm_memfd_create("mcefad-completion", shm_cq_size(slots), 0, &size);
    if (fd < 0) {
        rpc_fail(ctx, resp, fd, "cannot create the completion area: %s", strerror(-fd));
        ctx->close_after_reply = true;
        return;
    }
    void *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (area == MAP_FAILED) {
        int e = -errno;
        close(fd);
        rpc_fail(ctx, resp, e, "cannot map the completion area: %s", strerror(-e));
        ctx->close_after_reply = true;
        return;
    }
    shm_cq_init(area, slots);
    s->cq = area;
    s->cq_len = size;
    s->cq_slots = slots;
    s->hello_done = true;
    ctx->fds[ctx->nfds++] = fd;

    Mcefa__Welcome *w = rpc_alloc(ctx, sizeof(*w));
    mcefa__welcome__init(w);
    w->protocol_version = MCEFA_PROTOCOL_VERSION;
    w->daemon_version = MCEFAD_VERSION;
    w->session_id = s->id;
    w->hostname = mcefad.hostname;
    w->epoch = mcefad.epoch;
    w->completion_slots = slots;
    w->fd_count = 1;
    resp->body_case = MCEFA__RESPONSE__BODY_WELCOME;
    resp->welcome = w;
    log_info("client %s connected (session %llu, pid %d, uid %d)", s->name, (unsigned long long)s->id, (int)s->pid,
             (int)s->uid);
}

static void handle_register(session *s, wire_reader *rd, const Mcefa__RegisterMemory *m, Mcefa__Response *resp,
                            rpc_ctx *ctx)
{
    if (m->fd_count != 1) {
        rpc_fail(ctx, resp, -EINVAL, "register_memory needs exactly one memfd (fd_count %u)", m->fd_count);
        return;
    }
    int fd = wire_reader_take_fd(rd);
    if (fd < 0) {
        rpc_fail(ctx, resp, -EBADF,
                 "register_memory of 0x%" PRIx64 " arrived without its memfd; send the descriptor with SCM_RIGHTS",
                 m->addr);
        return;
    }
    region *r = NULL;
    const char *why;
    int rc;
    if (m->length == 0 || m->addr + m->length < m->addr) {
        rpc_fail(ctx, resp, -EINVAL, "cannot register 0x%" PRIx64 " + %" PRIu64 ": empty or wrapping range",
                 m->addr, m->length);
        goto out;
    }
    if (s->regions.n >= mcefad.cfg.max_regions_per_client) {
        rpc_fail(ctx, resp, -ENOSPC,
                 "client already has %zu regions registered (max_regions_per_client); unregister some or "
                 "register larger buffers",
                 s->regions.n);
        goto out;
    }
    if ((rc = shm_memfd_check(fd, m->fd_offset, m->length, &why)) < 0) {
        rpc_fail(ctx, resp, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": %s", m->addr, m->length, why);
        goto out;
    }
    region *clash = region_table_find_addr(&s->regions, m->addr);
    if (!clash && s->regions.n) {
        /* A region starting inside [addr, addr+len) also overlaps. */
        for (size_t i = 0; i < s->regions.n; i++)
            if (s->regions.v[i]->addr > m->addr && s->regions.v[i]->addr < m->addr + m->length) {
                clash = s->regions.v[i];
                break;
            }
    }
    if (clash) {
        rpc_fail(ctx, resp, -EEXIST,
                 "cannot register 0x%" PRIx64 " + %" PRIu64 ": it overlaps the registered region 0x%" PRIx64
                 " + %" PRIu64 "; unregister that first",
                 m->addr, m->length, clash->addr, clash->length);
        goto out;
    }
    void *base;
    size_t base_len;
    void *ptr = shm_map(fd, m->fd_offset, m->length, mcefad.cfg.populate, &base, &base_len);
    if (!ptr) {
        rc = -errno;
        rpc_fail(ctx, resp, rc, "cannot map 0x%" PRIx64 " + %" PRIu64 " into the daemon: %s", m->addr, m->length,
                 strerror(-rc));
        goto out;
    }
    r = region_create(m->addr, m->length, ptr, base, base_len, m->numa_node);
    if (!r) {
        munmap(base, base_len);
        rpc_fail(ctx, resp, -ENOMEM, "out of memory registering a region");
        goto out;
    }
    char nwhy[300];
    if ((rc = nic_register_region(r, nwhy, sizeof(nwhy))) < 0) {
        region_unref(r);
        rpc_fail(ctx, resp, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": %s", m->addr, m->length, nwhy);
        goto out;
    }
    if ((rc = region_table_insert(&s->regions, r)) < 0) {
        region_unref(r);
        rpc_fail(ctx, resp, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": %s", m->addr, m->length,
                 strerror(-rc));
        goto out;
    }
    log_debug("client %s registered 0x%" PRIx64 " + %" PRIu64, s->name, m->addr, m->length);
out:
    close(fd);
}

static void handle_unregister(session *s, const Mcefa__UnregisterMemory *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    region *r = region_table_remove(&s->regions, m->addr);
    if (!r) {
        rpc_fail(ctx, resp, -ENOENT,
                 "no region is registered at 0x%" PRIx64 " (unregistered twice, or not the start address of a "
                 "region?)",
                 m->addr);
        return;
    }
    log_debug("client %s unregistered 0x%" PRIx64 " + %" PRIu64, s->name, r->addr, r->length);
    region_unref(r); /* transfers in flight keep their own references */
}

static Mcefa__SegmentInfo *segment_info(rpc_ctx *ctx, uint64_t handle, segment_entry *e)
{
    Mcefa__SegmentInfo *si = rpc_alloc(ctx, sizeof(*si));
    mcefa__segment_info__init(si);
    si->handle = handle;
    si->name = e->name;
    const region_table *t = &e->owner->regions;
    si->n_regions = t->n;
    si->regions = rpc_alloc(ctx, t->n * sizeof(*si->regions));
    for (size_t i = 0; i < t->n; i++) {
        Mcefa__Region *r = rpc_alloc(ctx, sizeof(*r));
        mcefa__region__init(r);
        r->addr = t->v[i]->addr;
        r->length = t->v[i]->length;
        r->numa_node = t->v[i]->numa_node;
        si->regions[i] = r;
    }
    return si;
}

static Mcefa__SegmentInfo *remote_segment_info(rpc_ctx *ctx, uint64_t handle, const remote_segment *r)
{
    Mcefa__SegmentInfo *si = rpc_alloc(ctx, sizeof(*si));
    mcefa__segment_info__init(si);
    si->handle = handle;
    si->name = rpc_alloc(ctx, strlen(r->name) + 1);
    strcpy(si->name, r->name);
    si->n_regions = r->nregions;
    si->regions = rpc_alloc(ctx, r->nregions * sizeof(*si->regions));
    for (size_t i = 0; i < r->nregions; i++) {
        Mcefa__Region *x = rpc_alloc(ctx, sizeof(*x));
        mcefa__region__init(x);
        x->addr = r->regions[i].addr;
        x->length = r->regions[i].length;
        x->numa_node = r->regions[i].numa_node;
        si->regions[i] = x;
    }
    return si;
}

static void handle_export(session *s, const Mcefa__ExportSegment *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    const char *why = "";
    int rc = segment_export(s, m->name, &why);
    if (rc < 0) {
        rpc_fail(ctx, resp, rc, "cannot export segment '%s': %s", m->name, why);
        return;
    }
    Mcefa__SegmentExported *se = rpc_alloc(ctx, sizeof(*se));
    mcefa__segment_exported__init(se);
    se->name = s->exported->name;
    resp->body_case = MCEFA__RESPONSE__BODY_SEGMENT_EXPORTED;
    resp->segment_exported = se;
}

/* A request answered once the peer daemon has. */
typedef struct deferred {
    session *s;
    uint64_t seq;
    uint64_t t0;
    char name[300];
} deferred;

static deferred *defer(session *s, uint64_t seq, const char *name, rpc_ctx *ctx)
{
    deferred *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    session_ref(s);
    d->s = s;
    d->seq = seq;
    d->t0 = nic_now_ms();
    snprintf(d->name, sizeof(d->name), "%s", name);
    ctx->deferred = true;
    return d;
}

/* Finds the peer for `name` and defers the request until it answers.
 * NULL (with the reply set to the error) when that is not possible. */
static deferred *defer_to_peer(session *s, uint64_t seq, const char *name, const char *what, rpc_ctx *ctx,
                               Mcefa__Response *resp, peer **p)
{
    char why[400];
    int rc = peer_for_segment(name, p, why, sizeof(why));
    if (rc < 0) {
        rpc_fail(ctx, resp, rc, "%s '%s' failed: %s", what, name, why);
        return NULL;
    }
    deferred *d = defer(s, seq, name, ctx);
    if (!d) {
        ctx->deferred = false;
        rpc_fail(ctx, resp, -ENOMEM, "%s '%s' failed: out of memory", what, name);
    }
    return d;
}

static void answer(deferred *d, Mcefa__Response *resp, rpc_ctx *ctx)
{
    resp->seq = d->seq;
    server_reply_later(d->s, resp, ctx);
    rpc_ctx_free(ctx);
    session_unref(d->s);
    free(d);
}

static void on_remote_open(void *arg, peer *p, int status, const char *why, const Mcefa__SegmentDescriptor *desc)
{
    deferred *d = arg;
    Mcefa__Response resp = MCEFA__RESPONSE__INIT;
    rpc_ctx ctx = {0};
    char w[300];
    remote_segment *r = NULL;
    uint64_t h;
    if (status < 0)
        rpc_fail(&ctx, &resp, status, "cannot open segment '%s': %s", d->name, why);
    else if (d->s->closing)
        ; /* the client left meanwhile: nothing to record */
    else if (!(r = segment_remote_from(p, desc, w, sizeof(w))))
        rpc_fail(&ctx, &resp, -EPROTO, "cannot open segment '%s': %s", d->name, w);
    else if ((status = segment_open_remote(d->s, r, &h)) < 0) {
        segment_remote_free(r);
        rpc_fail(&ctx, &resp, status, "cannot open segment '%s': %s", d->name, strerror(-status));
    } else {
        resp.body_case = MCEFA__RESPONSE__BODY_SEGMENT_INFO;
        resp.segment_info = remote_segment_info(&ctx, h, r);
    }
    answer(d, &resp, &ctx);
}

/* Where a segment name points: true for this host, with *e the local
 * segment (or NULL when nobody here exports it); false for another host. */
static bool resolve_local(const char *name, segment_entry **e)
{
    *e = segment_lookup(name);
    if (*e)
        return true;
    if (!peer_is_local_name(name))
        return false;
    *e = segment_find(name);
    return true;
}

static void handle_open(session *s, uint64_t seq, const Mcefa__OpenSegment *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    segment_entry *e;
    if (!resolve_local(m->name, &e)) {
        peer *p;
        deferred *d = defer_to_peer(s, seq, m->name, "opening segment", ctx, resp, &p);
        if (d)
            peer_get_segment(p, m->name, on_remote_open, d);
        return;
    }
    if (!e) {
        rpc_fail(ctx, resp, -ENOENT,
                 "segment '%s' not found: no client on this host exports it; check the name the target printed "
                 "and that it is still running",
                 m->name);
        return;
    }
    uint64_t h;
    int rc = segment_open(s, e, &h);
    if (rc < 0) {
        rpc_fail(ctx, resp, rc, "cannot open segment '%s': %s", m->name, strerror(-rc));
        return;
    }
    resp->body_case = MCEFA__RESPONSE__BODY_SEGMENT_INFO;
    resp->segment_info = segment_info(ctx, h, e);
}

static void warm_answer(deferred *d, int status, const char *why, unsigned pairs)
{
    Mcefa__Response resp = MCEFA__RESPONSE__INIT;
    rpc_ctx ctx = {0};
    if (status < 0) {
        rpc_fail(&ctx, &resp, status, "warmup of '%s' failed: %s", d->name, why);
    } else {
        Mcefa__Warmup *w = rpc_alloc(&ctx, sizeof(*w));
        mcefa__warmup__init(w);
        w->nic_pairs = pairs;
        w->elapsed_us = (nic_now_ms() - d->t0) * 1000;
        resp.body_case = MCEFA__RESPONSE__BODY_WARMUP;
        resp.warmup = w;
    }
    answer(d, &resp, &ctx);
}

static void on_warm_done(void *arg, int status, const char *why, unsigned pairs)
{
    warm_answer(arg, status, why, pairs);
}

static void on_warm_segment(void *arg, peer *p, int status, const char *why, const Mcefa__SegmentDescriptor *desc)
{
    (void)desc;
    if (status < 0) {
        warm_answer(arg, status, why, 0);
        return;
    }
    peer_warmup(p, on_warm_done, arg);
}

static void handle_warmup(session *s, uint64_t seq, const Mcefa__WarmupSegment *m, Mcefa__Response *resp,
                          rpc_ctx *ctx)
{
    segment_entry *e;
    if (resolve_local(m->name, &e)) {
        if (!e) {
            rpc_fail(ctx, resp, -ENOENT, "warmup: segment '%s' not found: no client on this host exports it", m->name);
            return;
        }
        /* Same host: no NIC pair to connect. */
        Mcefa__Warmup *w = rpc_alloc(ctx, sizeof(*w));
        mcefa__warmup__init(w);
        resp->body_case = MCEFA__RESPONSE__BODY_WARMUP;
        resp->warmup = w;
        return;
    }
    peer *p;
    deferred *d = defer_to_peer(s, seq, m->name, "warmup of segment", ctx, resp, &p);
    /* Fetching the descriptor first makes an unknown segment fail cleanly. */
    if (d)
        peer_get_segment(p, m->name, on_warm_segment, d);
}

static void handle_query(session *s, const Mcefa__QuerySegment *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    open_segment *o = segment_open_find(s, m->handle);
    if (!o) {
        rpc_fail(ctx, resp, -EBADF, "segment handle %" PRIu64 " is not open on this connection", m->handle);
        return;
    }
    if (o->remote) {
        /* The description fetched at open; open again to refresh it. */
        resp->body_case = MCEFA__RESPONSE__BODY_SEGMENT_INFO;
        resp->segment_info = remote_segment_info(ctx, o->handle, o->remote);
        return;
    }
    if (!o->seg->owner) {
        rpc_fail(ctx, resp, -ENOTCONN, "segment '%s' is gone (its client disconnected)", o->seg->name);
        return;
    }
    resp->body_case = MCEFA__RESPONSE__BODY_SEGMENT_INFO;
    resp->segment_info = segment_info(ctx, o->handle, o->seg);
}

static void handle_close_segment(session *s, const Mcefa__CloseSegment *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    if (segment_close(s, m->handle) < 0)
        rpc_fail(ctx, resp, -EBADF, "segment handle %" PRIu64 " is not open on this connection (closed twice?)",
                 m->handle);
}

static void handle_status(session *self, Mcefa__Response *resp, rpc_ctx *ctx)
{
    Mcefa__DaemonStatus *st = rpc_alloc(ctx, sizeof(*st));
    mcefa__daemon_status__init(st);
    st->daemon_version = MCEFAD_VERSION;
    st->hostname = mcefad.hostname;
    st->epoch = mcefad.epoch;
    st->uptime_ms = daemon_now_ms() - mcefad.start_ms;
    st->protocol_version = MCEFA_PROTOCOL_VERSION;
    st->bytes_copied = atomic_load(&mcefad.bytes_copied);
    st->transfers_completed = atomic_load(&mcefad.transfers_completed);
    st->transfers_failed = atomic_load(&mcefad.transfers_failed);
    st->protocol_errors = atomic_load(&mcefad.protocol_errors);
    st->clients = rpc_alloc(ctx, mcefad.nsessions * sizeof(*st->clients));
    st->admin = self->admin;
    st->log_level = (char *)log_level_name(log_threshold);
    for (session *c = mcefad.sessions; c; c = c->next) {
        /* Others' identities are for admins only. */
        if (!c->hello_done || (!self->admin && c != self))
            continue;
        Mcefa__ClientInfo *ci = rpc_alloc(ctx, sizeof(*ci));
        mcefa__client_info__init(ci);
        ci->session_id = c->id;
        ci->pid = (uint32_t)c->pid;
        ci->uid = (uint32_t)c->uid;
        ci->name = c->name;
        ci->regions = (uint32_t)c->regions.n;
        ci->bytes_registered = c->regions.bytes;
        for (batch *b = c->batches; b; b = b->next)
            ci->batches++;
        ci->transfers_in_flight = atomic_load(&c->inflight);
        ci->segment = c->exported ? c->exported->name : "";
        st->clients[st->n_clients++] = ci;
    }
    st->provider = mcefad.cfg.provider;
    st->n_nics = nnics;
    st->nics = rpc_alloc(ctx, nnics * sizeof(*st->nics));
    for (unsigned i = 0; i < nnics; i++) {
        nic *n = nics[i];
        Mcefa__NicInfo *ni = rpc_alloc(ctx, sizeof(*ni));
        mcefa__nic_info__init(ni);
        ni->name = n->name;
        ni->provider = n->provider;
        ni->fabric = n->fabric;
        ni->numa_node = n->numa_node;
        ni->outstanding = atomic_load(&n->outstanding);
        ni->bytes = atomic_load(&n->bytes);
        ni->ops = atomic_load(&n->ops);
        ni->errors = atomic_load(&n->errors);
        ni->max_wr = n->max_wr;
        ni->link = rpc_alloc(ctx, 32);
        nic_link_state(n, ni->link, 32);
        st->nics[i] = ni;
    }
    size_t np = 0;
    for (peer *p = peers; p; p = p->next)
        np++;
    st->peers = rpc_alloc(ctx, np * sizeof(*st->peers));
    for (peer *p = peers; p; p = p->next) {
        Mcefa__PeerInfo *pi = rpc_alloc(ctx, sizeof(*pi));
        mcefa__peer_info__init(pi);
        pi->host = p->host;
        pi->address = p->address;
        pi->epoch = p->epoch;
        pi->connected = p->conn != NULL;
        for (unsigned i = 0; i < nnics; i++)
            for (unsigned j = 0; j < p->nrnics; j++)
                pi->nic_pairs_warm += p->warm[i][j];
        pi->last_error = p->last_error;
        for (unsigned i = 0; i < nnics; i++)
            for (unsigned j = 0; j < p->nrnics; j++)
                pi->nic_pairs += p->fiaddr[i][j] != FI_ADDR_NOTAVAIL;
        pi->bytes = atomic_load(&p->bytes);
        pi->ops = atomic_load(&p->ops);
        pi->errors = atomic_load(&p->errors);
        st->bytes_sent += pi->bytes;
        st->peers[st->n_peers++] = pi;
    }
    size_t nseg = 0;
    for (segment_entry *e = mcefad.segments; e; e = e->next)
        nseg++;
    st->segments = rpc_alloc(ctx, nseg * sizeof(*st->segments));
    for (segment_entry *e = mcefad.segments; e; e = e->next) {
        if (!e->owner)
            continue;
        Mcefa__SegmentSummary *ss = rpc_alloc(ctx, sizeof(*ss));
        mcefa__segment_summary__init(ss);
        ss->name = e->name;
        ss->owner_session = e->owner->id;
        ss->owner_pid = self->admin ? (uint32_t)e->owner->pid : 0;
        ss->regions = (uint32_t)e->owner->regions.n;
        ss->bytes = e->owner->regions.bytes;
        st->segments[st->n_segments++] = ss;
    }
    resp->body_case = MCEFA__RESPONSE__BODY_DAEMON_STATUS;
    resp->daemon_status = st;
}

static void handle_set_log_level(session *s, const Mcefa__SetLogLevel *m, Mcefa__Response *resp, rpc_ctx *ctx)
{
    int lvl = log_parse_level(m->level);
    if (lvl < 0) {
        rpc_fail(ctx, resp, -EINVAL, "log level '%s' is not one of error, warn, info, debug", m->level);
        return;
    }
    log_threshold = lvl;
    log_write(LOG_INFO < lvl ? LOG_INFO : lvl, "log level set to %s by %s (pid %d)", log_level_name(lvl), s->name,
              (int)s->pid);
}

static void handle_warmup_host(session *s, uint64_t seq, const Mcefa__WarmupHost *m, Mcefa__Response *resp,
                               rpc_ctx *ctx)
{
    char name[300];
    snprintf(name, sizeof(name), "%s:0", m->host);
    if (!*m->host || peer_is_local_name(name)) {
        rpc_fail(ctx, resp, -EINVAL, "warmup needs another host's name, not '%s' (this host has no NIC pairs to "
                                     "itself)", m->host);
        return;
    }
    peer *p;
    deferred *d = defer_to_peer(s, seq, name, "warmup of host", ctx, resp, &p);
    if (d)
        peer_warmup(p, on_warm_done, d);
}

void rpc_handle(session *s, const Mcefa__Request *req, Mcefa__Response *resp, rpc_ctx *ctx)
{
    if (req->body_case == MCEFA__REQUEST__BODY_HELLO) {
        if (s->hello_done)
            rpc_fail(ctx, resp, -EALREADY, "hello sent twice on one connection");
        else
            handle_hello(s, req->hello, resp, ctx);
        return;
    }
    if (!s->hello_done) {
        rpc_fail(ctx, resp, -EPROTO, "the first message on a connection must be hello (protocol version %u)",
                 MCEFA_PROTOCOL_VERSION);
        ctx->close_after_reply = true;
        return;
    }
    switch (req->body_case) {
    case MCEFA__REQUEST__BODY_REGISTER_MEMORY:
        handle_register(s, &s->rd, req->register_memory, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_UNREGISTER_MEMORY:
        handle_unregister(s, req->unregister_memory, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_EXPORT_SEGMENT:
        handle_export(s, req->export_segment, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_OPEN_SEGMENT:
        handle_open(s, req->seq, req->open_segment, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_WARMUP:
        handle_warmup(s, req->seq, req->warmup, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_CLOSE_SEGMENT:
        handle_close_segment(s, req->close_segment, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_QUERY_SEGMENT:
        handle_query(s, req->query_segment, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_ALLOC_BATCH:
        xfer_alloc_batch(s, req->alloc_batch, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_FREE_BATCH:
        xfer_free_batch(s, req->free_batch, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_SUBMIT_BATCH:
        xfer_submit(s, req->submit_batch, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_BATCH_STATUS:
        xfer_batch_status(s, req->batch_status, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_STATUS:
        handle_status(s, resp, ctx);
        break;
    case MCEFA__REQUEST__BODY_SET_LOG_LEVEL:
    case MCEFA__REQUEST__BODY_WARMUP_HOST:
        if (!s->admin) {
            rpc_fail(ctx, resp, -EPERM,
                     "admin request refused: it needs root, the daemon's user, or membership of group '%s' "
                     "(admin_group)",
                     mcefad.cfg.admin_group);
            break;
        }
        if (req->body_case == MCEFA__REQUEST__BODY_SET_LOG_LEVEL)
            handle_set_log_level(s, req->set_log_level, resp, ctx);
        else
            handle_warmup_host(s, req->seq, req->warmup_host, resp, ctx);
        break;
    default:
        atomic_fetch_add(&mcefad.protocol_errors, 1);
        rpc_fail(ctx, resp, -EOPNOTSUPP,
                 "unknown message type: the request carries no message this daemon (%s, protocol %u) knows; is "
                 "the client newer than the daemon?",
                 MCEFAD_VERSION, MCEFA_PROTOCOL_VERSION);
        break;
    }
}
