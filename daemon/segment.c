/* Segment names: which local client exports which name, and the handles a
 * client holds on segments it opened. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "peer.h"

#define SEGMENT_NAME_MAX 255

segment_entry *segment_lookup(const char *name)
{
    for (segment_entry *e = mcefad.segments; e; e = e->next)
        if (e->owner && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

segment_entry *segment_find(const char *name)
{
    segment_entry *e = segment_lookup(name);
    if (e)
        return e;
    /* "host:N" where host is another name of this host (an address, or
     * localhost): match by the :N part, which the daemon keeps unique. */
    const char *colon = strrchr(name, ':');
    if (!colon)
        return NULL;
    for (segment_entry *s = mcefad.segments; s; s = s->next) {
        const char *sc = strrchr(s->name, ':');
        if (s->owner && sc && !strcmp(sc, colon))
            return s;
    }
    return NULL;
}

static void entry_unref(segment_entry *e)
{
    if (--e->refs > 0)
        return;
    segment_entry **pp = &mcefad.segments;
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    free(e->name);
    free(e);
}

static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SEGMENT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)name[i]))
            return false;
    return true;
}

int segment_export(session *s, const char *name, const char **why)
{
    char auto_name[SEGMENT_NAME_MAX + 32];
    if (!name || !*name) {
        /* Like Mooncake's P2P handshake names: host:port, unique here. */
        do
            snprintf(auto_name, sizeof(auto_name), "%s:%llu", mcefad.hostname,
                     (unsigned long long)mcefad.next_segment_port++);
        while (segment_lookup(auto_name));
        name = auto_name;
    }
    if (!name_valid(name)) {
        *why = "segment names are 1-255 printable characters without spaces";
        return -EINVAL;
    }
    if (s->exported) {
        if (strcmp(s->exported->name, name) == 0)
            return 0;
        *why = "this client already exports a segment under another name (one per connection)";
        return -EALREADY;
    }
    if (segment_lookup(name)) {
        *why = "another client on this host already exports that name; pick another or let the daemon choose";
        return -EEXIST;
    }
    segment_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        *why = "out of memory";
        return -ENOMEM;
    }
    e->owner = s;
    e->refs = 1; /* the owner's */
    e->next = mcefad.segments;
    mcefad.segments = e;
    s->exported = e;
    log_info("client %s exports segment %s", s->name, e->name);
    return 0;
}

void segment_unexport(session *s)
{
    segment_entry *e = s->exported;
    if (!e)
        return;
    s->exported = NULL;
    e->owner = NULL;
    entry_unref(e);
}

open_segment *segment_open_find(session *s, uint64_t handle)
{
    for (size_t i = 0; i < s->nopens; i++)
        if (s->opens[i].handle == handle)
            return &s->opens[i];
    return NULL;
}

static open_segment *new_open(session *s)
{
    if (s->nopens == s->capopens) {
        size_t ncap = s->capopens ? s->capopens * 2 : 8;
        open_segment *n = realloc(s->opens, ncap * sizeof(*n));
        if (!n)
            return NULL;
        s->opens = n;
        s->capopens = ncap;
    }
    open_segment *o = &s->opens[s->nopens++];
    memset(o, 0, sizeof(*o));
    o->handle = s->next_handle++;
    o->opens = 1;
    return o;
}

int segment_open(session *s, segment_entry *e, uint64_t *handle)
{
    /* Opening the same live segment again returns the same handle. */
    for (size_t i = 0; i < s->nopens; i++)
        if (s->opens[i].seg == e) {
            s->opens[i].opens++;
            *handle = s->opens[i].handle;
            return 0;
        }
    open_segment *o = new_open(s);
    if (!o)
        return -ENOMEM;
    o->seg = e;
    e->refs++;
    *handle = o->handle;
    return 0;
}

int segment_open_remote(session *s, remote_segment *r, uint64_t *handle)
{
    /* Re-opening a remote segment refreshes its description in place. */
    for (size_t i = 0; i < s->nopens; i++)
        if (s->opens[i].remote && s->opens[i].remote->peer == r->peer && !strcmp(s->opens[i].remote->name, r->name)) {
            segment_remote_free(s->opens[i].remote);
            s->opens[i].remote = r;
            s->opens[i].opens++;
            *handle = s->opens[i].handle;
            return 0;
        }
    open_segment *o = new_open(s);
    if (!o)
        return -ENOMEM;
    o->remote = r;
    *handle = o->handle;
    return 0;
}

void segment_remote_free(remote_segment *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nregions; i++)
        free(r->regions[i].rma_addr);
    free(r->regions);
    free(r->name);
    free(r);
}

static void drop_open(open_segment *o)
{
    if (o->seg)
        entry_unref(o->seg);
    segment_remote_free(o->remote);
}

int segment_close(session *s, uint64_t handle)
{
    for (size_t i = 0; i < s->nopens; i++) {
        open_segment *o = &s->opens[i];
        if (o->handle != handle)
            continue;
        if (--o->opens == 0) {
            drop_open(o);
            s->opens[i] = s->opens[--s->nopens];
        }
        return 0;
    }
    return -ENOENT;
}

void segment_close_all(session *s)
{
    for (size_t i = 0; i < s->nopens; i++)
        drop_open(&s->opens[i]);
    free(s->opens);
    s->opens = NULL;
    s->nopens = s->capopens = 0;
}

remote_segment *segment_remote_from(struct peer *p, const Mcefa__SegmentDescriptor *d, char *why, size_t whylen)
{
    remote_segment *r = calloc(1, sizeof(*r));
    if (!r || !(r->name = strdup(d->name)) || !(r->regions = calloc(d->n_regions + 1, sizeof(*r->regions)))) {
        segment_remote_free(r);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    r->peer = p;
    r->epoch = p->epoch;
    r->layout_gen = p->layout_gen;
    r->gen = atomic_load(&p->gen);
    r->nrnics = p->nrnics;
    uint64_t prev_end = 0;
    for (size_t i = 0; i < d->n_regions; i++) {
        const Mcefa__RemoteRegion *x = d->regions[i];
        remote_region *rr = &r->regions[i];
        /* The peer is another process we do not control: check its words. */
        if (x->n_rma_addr != p->nrnics || x->n_rma_key != p->nrnics || x->length == 0 ||
            x->addr + x->length < x->addr || (i && x->addr < prev_end)) {
            snprintf(why, whylen, "peer %s sent an inconsistent description of segment '%s' (region %zu)", p->host,
                     d->name, i);
            segment_remote_free(r);
            return NULL;
        }
        prev_end = x->addr + x->length;
        rr->addr = x->addr;
        rr->length = x->length;
        rr->numa_node = x->numa_node;
        rr->rma_addr = calloc(2 * (p->nrnics + 1), sizeof(uint64_t));
        rr->rma_key = rr->rma_addr + p->nrnics + 1;
        memcpy(rr->rma_addr, x->rma_addr, p->nrnics * sizeof(uint64_t));
        memcpy(rr->rma_key, x->rma_key, p->nrnics * sizeof(uint64_t));
        r->nregions++;
    }
    return r;
}
