/* Segment names: which local client exports which name, and the handles a
 * client holds on segments it opened. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segment.h"

#include "log.h"

#define SEGMENT_NAME_MAX 255

static LIST_HEAD(, segment_entry) entries = LIST_HEAD_INITIALIZER(entries);
static char host[256];
static uint64_t next_port;

void segment_init(const char *hostname, uint64_t port_base)
{
    snprintf(host, sizeof(host), "%s", hostname);
    next_port = port_base;
}

segment_entry *segment_first(void)
{
    return LIST_FIRST(&entries);
}

segment_entry *segment_next(segment_entry *e)
{
    return LIST_NEXT(e, link);
}

segment_entry *segment_lookup(const char *name)
{
    segment_entry *e;
    LIST_FOREACH(e, &entries, link)
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
    segment_entry *s;
    LIST_FOREACH(s, &entries, link) {
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
    LIST_REMOVE(e, link);
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

int segment_export(void *owner, const region_table *regions, const char *name, segment_entry **out, err *er)
{
    char auto_name[SEGMENT_NAME_MAX + 32];
    if (!name || !*name) {
        /* Like Mooncake's P2P handshake names: host:port, unique here. */
        do
            snprintf(auto_name, sizeof(auto_name), "%s:%llu", host, (unsigned long long)next_port++);
        while (segment_lookup(auto_name));
        name = auto_name;
    }
    if (!name_valid(name))
        return err_set(er, -EINVAL, "cannot export segment '%s': segment names are 1-255 printable characters "
                                    "without spaces", name);
    if (*out) {
        if (strcmp((*out)->name, name) == 0)
            return 0;
        return err_set(er, -EALREADY, "cannot export segment '%s': this client already exports a segment under "
                                      "another name (one per connection)", name);
    }
    if (segment_lookup(name))
        return err_set(er, -EEXIST, "cannot export segment '%s': another client on this host already exports that "
                                    "name; pick another or let the daemon choose", name);
    segment_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return err_set(er, -ENOMEM, "cannot export segment '%s': out of memory", name);
    }
    e->owner = owner;
    e->regions = regions;
    e->refs = 1; /* the owner's */
    LIST_INSERT_HEAD(&entries, e, link);
    *out = e;
    return 0;
}

void segment_unexport(segment_entry *e)
{
    if (!e)
        return;
    e->owner = NULL;
    e->regions = NULL;
    entry_unref(e);
}

void open_set_init(open_set *os)
{
    memset(os, 0, sizeof(*os));
    os->next_handle = 1;
}

open_segment *segment_open_find(open_set *s, uint64_t handle)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].handle == handle)
            return &s->v[i];
    return NULL;
}

static open_segment *new_open(open_set *s)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 8;
        open_segment *n = realloc(s->v, ncap * sizeof(*n));
        if (!n)
            return NULL;
        s->v = n;
        s->cap = ncap;
    }
    open_segment *o = &s->v[s->n++];
    memset(o, 0, sizeof(*o));
    o->handle = s->next_handle++;
    o->opens = 1;
    return o;
}

int segment_open(open_set *s, segment_entry *e, uint64_t *handle)
{
    /* Opening the same live segment again returns the same handle. */
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].seg == e) {
            s->v[i].opens++;
            *handle = s->v[i].handle;
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

int segment_open_remote(open_set *s, remote_segment *r, uint64_t *handle)
{
    /* Re-opening a remote segment refreshes its description in place. */
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].remote && s->v[i].remote->peer == r->peer && !strcmp(s->v[i].remote->name, r->name)) {
            remote_free(s->v[i].remote);
            s->v[i].remote = r;
            s->v[i].opens++;
            *handle = s->v[i].handle;
            return 0;
        }
    open_segment *o = new_open(s);
    if (!o)
        return -ENOMEM;
    o->remote = r;
    *handle = o->handle;
    return 0;
}

static void drop_open(open_segment *o)
{
    if (o->seg)
        entry_unref(o->seg);
    remote_free(o->remote);
}

int segment_close(open_set *s, uint64_t handle)
{
    for (size_t i = 0; i < s->n; i++) {
        open_segment *o = &s->v[i];
        if (o->handle != handle)
            continue;
        if (--o->opens == 0) {
            drop_open(o);
            s->v[i] = s->v[--s->n];
        }
        return 0;
    }
    return -ENOENT;
}

void segment_close_all(open_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        drop_open(&s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

