/* Segment requests: export, open (here or on another host), query,
 * close, warmup. Requests that need another host's daemon are answered
 * when it has answered. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "ident.h"
#include "log.h"
#include "peer_desc.h"
#include "remote.h"
#include "rpc.h"
#include "warmup.h"

static Mcefa__SegmentInfo *segment_info(reply *r, uint64_t handle, const char *name, size_t n)
{
    Mcefa__SegmentInfo *si = reply_alloc(r, sizeof(*si));
    mcefa__segment_info__init(si);
    si->handle = handle;
    si->name = reply_strdup(r, name);
    si->n_regions = n;
    si->regions = reply_alloc(r, n * sizeof(*si->regions));
    for (size_t i = 0; i < n; i++) {
        si->regions[i] = reply_alloc(r, sizeof(Mcefa__Region));
        mcefa__region__init(si->regions[i]);
    }
    r->resp.body_case = MCEFA__RESPONSE__BODY_SEGMENT_INFO;
    r->resp.segment_info = si;
    return si;
}

static void local_info(reply *r, uint64_t handle, const segment_entry *e)
{
    const region_table *t = e->regions;
    Mcefa__SegmentInfo *si = segment_info(r, handle, e->name, t->n);
    for (size_t i = 0; i < t->n; i++) {
        si->regions[i]->addr = t->v[i]->addr;
        si->regions[i]->length = t->v[i]->length;
        si->regions[i]->numa_node = t->v[i]->numa_node;
    }
}

static void remote_info(reply *r, uint64_t handle, const remote_segment *rs)
{
    Mcefa__SegmentInfo *si = segment_info(r, handle, rs->name, rs->nregions);
    for (size_t i = 0; i < rs->nregions; i++) {
        si->regions[i]->addr = rs->regions[i].addr;
        si->regions[i]->length = rs->regions[i].length;
        si->regions[i]->numa_node = rs->regions[i].numa_node;
    }
}

/* A name whose host part names another host would shadow that host's
 * segment for every local client that opens it: only this host's names
 * (and names without a host part) may be exported here. */
static bool exportable_here(const char *name)
{
    return !name || !strchr(name, ':') || ident_is_local_name(name);
}

void rpc_export(reply *r, const Mcefa__Request *req)
{
    session *s = r->s;
    err e;
    const char *name = req->export_segment->name;
    if (name && *name && !exportable_here(name)) {
        size_t hl = ident_host_len(name);
        reply_fail(r, -EPERM,
                   "cannot export segment '%s': its host part '%.*s' names another host, and clients opening it "
                   "expect that host; export '%s:%s', a name without a host part, or let the daemon choose",
                   name, (int)hl, name, ident_hostname(), name + hl + 1);
        return;
    }
    if (segment_export(s, &s->regions, req->export_segment->name, &s->exported, &e) < 0) {
        reply_err(r, &e);
        return;
    }
    log_info("client %s exports segment %s", s->name, s->exported->name);
    Mcefa__SegmentExported *se = reply_alloc(r, sizeof(*se));
    mcefa__segment_exported__init(se);
    se->name = s->exported->name;
    r->resp.body_case = MCEFA__RESPONSE__BODY_SEGMENT_EXPORTED;
    r->resp.segment_exported = se;
}

/* Where a segment name points: true for this host, with *e the local
 * segment (or NULL when nobody here exports it); false for another host. */
static bool resolve_local(const char *name, segment_entry **e)
{
    *e = segment_lookup(name);
    if (*e)
        return true;
    /* A name without a host part is this host's by definition. */
    if (strchr(name, ':') && !ident_is_local_name(name))
        return false;
    *e = segment_find(name);
    return true;
}

/* The peer for `name`, with the request deferred until it answers. NULL
 * (and r failed) when that is not possible. */
static reply *defer_to_peer(reply *r, const char *name, const char *what, peer **p)
{
    err e;
    if (peer_for_name(name, p, &e) < 0) {
        reply_fail(r, e.code, "%s '%s' failed: %s", what, name, e.text);
        return NULL;
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    return reply_defer(r);
}

static void on_remote_open(void *arg, peer *p, int status, const char *why, const Mcefa__SegmentDescriptor *desc)
{
    reply *r = arg;
    session *s = r->s;
    err e;
    remote_segment *rs = NULL;
    uint64_t h;
    if (status < 0)
        reply_fail(r, status, "cannot open segment '%s': %s", r->name, why);
    else if (s->closing)
        ; /* the client left meanwhile: nothing to record */
    else if (!(rs = remote_from_descriptor(p, desc, &e)))
        reply_fail(r, e.code == -ENOMEM ? -ENOMEM : -EPROTO, "cannot open segment '%s': %s", r->name, e.text);
    else if ((status = segment_open_remote(&s->opens, rs, &h)) < 0) {
        remote_free(rs);
        reply_fail(r, status, "cannot open segment '%s': %s", r->name, strerror(-status));
    } else {
        remote_info(r, h, rs);
    }
    reply_send(r);
}

void rpc_open(reply *r, const Mcefa__Request *req)
{
    const char *name = req->open_segment->name;
    segment_entry *e;
    if (!resolve_local(name, &e)) {
        peer *p;
        reply *d = defer_to_peer(r, name, "opening segment", &p);
        if (d)
            peer_get_segment(p, name, on_remote_open, d);
        return;
    }
    if (!e) {
        reply_fail(r, -ENOENT,
                   "segment '%s' not found: no client on this host exports it; check the name the target printed "
                   "and that it is still running",
                   name);
        return;
    }
    const session *owner = e->owner, *s = r->s;
    if (owner && owner->uid != s->uid && !s->admin && !config.segment_group_access) {
        reply_fail(r, -EACCES,
                   "cannot open segment '%s': it belongs to another user (uid %u) and segments open only for their "
                   "owner's user, root and admin_group; the operator can allow the whole socket group with "
                   "segment_group_access",
                   name, (unsigned)owner->uid);
        return;
    }
    uint64_t h;
    int rc = segment_open(&r->s->opens, e, &h);
    if (rc < 0) {
        reply_fail(r, rc, "cannot open segment '%s': %s", name, strerror(-rc));
        return;
    }
    local_info(r, h, e);
}

static void on_warm_done(void *arg, int status, const char *why, unsigned pairs)
{
    reply *r = arg;
    if (status < 0) {
        reply_fail(r, status, "warmup of '%s' failed: %s", r->name, why);
    } else {
        Mcefa__Warmup *w = reply_alloc(r, sizeof(*w));
        mcefa__warmup__init(w);
        w->nic_pairs = pairs;
        w->elapsed_us = (clock_now_ms() - r->t0_ms) * 1000;
        r->resp.body_case = MCEFA__RESPONSE__BODY_WARMUP;
        r->resp.warmup = w;
    }
    reply_send(r);
}

static void on_warm_segment(void *arg, peer *p, int status, const char *why, const Mcefa__SegmentDescriptor *desc)
{
    (void)desc;
    if (status < 0) {
        on_warm_done(arg, status, why, 0);
        return;
    }
    peer_warmup(p, on_warm_done, arg);
}

void rpc_warmup(reply *r, const Mcefa__Request *req)
{
    const char *name = req->warmup->name;
    segment_entry *e;
    if (resolve_local(name, &e)) {
        if (!e) {
            reply_fail(r, -ENOENT, "warmup: segment '%s' not found: no client on this host exports it", name);
            return;
        }
        /* Same host: no NIC pair to connect. */
        Mcefa__Warmup *w = reply_alloc(r, sizeof(*w));
        mcefa__warmup__init(w);
        r->resp.body_case = MCEFA__RESPONSE__BODY_WARMUP;
        r->resp.warmup = w;
        return;
    }
    peer *p;
    reply *d = defer_to_peer(r, name, "warmup of segment", &p);
    /* Fetching the descriptor first makes an unknown segment fail cleanly. */
    if (d)
        peer_get_segment(p, name, on_warm_segment, d);
}

void rpc_warmup_host(reply *r, const Mcefa__Request *req)
{
    const char *host = req->warmup_host->host;
    char name[300];
    snprintf(name, sizeof(name), "%s:0", host);
    if (!*host || ident_is_local_name(name)) {
        reply_fail(r, -EINVAL,
                   "warmup needs another host's name, not '%s' (this host has no NIC pairs to itself)", host);
        return;
    }
    peer *p;
    reply *d = defer_to_peer(r, name, "warmup of host", &p);
    if (d)
        peer_warmup(p, on_warm_done, d);
}

void rpc_query(reply *r, const Mcefa__Request *req)
{
    uint64_t handle = req->query_segment->handle;
    open_segment *o = segment_open_find(&r->s->opens, handle);
    if (!o) {
        reply_fail(r, -EBADF, "segment handle %" PRIu64 " is not open on this connection", handle);
        return;
    }
    if (o->remote) {
        /* The description fetched at open; open again to refresh it. */
        remote_info(r, o->handle, o->remote);
        return;
    }
    if (!o->seg->regions) {
        reply_fail(r, -ENOTCONN, "segment '%s' is gone (its client disconnected)", o->seg->name);
        return;
    }
    local_info(r, o->handle, o->seg);
}

void rpc_close_segment(reply *r, const Mcefa__Request *req)
{
    uint64_t handle = req->close_segment->handle;
    if (segment_close(&r->s->opens, handle) < 0)
        reply_fail(r, -EBADF, "segment handle %" PRIu64 " is not open on this connection (closed twice?)", handle);
}
