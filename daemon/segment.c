/* Segment names: which local client exports which name, and the handles a
 * client holds on segments it opened. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"

#define SEGMENT_NAME_MAX 255

segment_entry *segment_lookup(const char *name)
{
    for (segment_entry *e = mcefad.segments; e; e = e->next)
        if (e->owner && strcmp(e->name, name) == 0)
            return e;
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

int segment_open(session *s, segment_entry *e, uint64_t *handle)
{
    /* Opening the same live segment again returns the same handle. */
    for (size_t i = 0; i < s->nopens; i++)
        if (s->opens[i].seg == e) {
            s->opens[i].opens++;
            *handle = s->opens[i].handle;
            return 0;
        }
    if (s->nopens == s->capopens) {
        size_t ncap = s->capopens ? s->capopens * 2 : 8;
        open_segment *n = realloc(s->opens, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->opens = n;
        s->capopens = ncap;
    }
    open_segment *o = &s->opens[s->nopens++];
    o->handle = s->next_handle++;
    o->seg = e;
    o->opens = 1;
    e->refs++;
    *handle = o->handle;
    return 0;
}

int segment_close(session *s, uint64_t handle)
{
    for (size_t i = 0; i < s->nopens; i++) {
        open_segment *o = &s->opens[i];
        if (o->handle != handle)
            continue;
        if (--o->opens == 0) {
            entry_unref(o->seg);
            s->opens[i] = s->opens[--s->nopens];
        }
        return 0;
    }
    return -ENOENT;
}

void segment_close_all(session *s)
{
    for (size_t i = 0; i < s->nopens; i++)
        entry_unref(s->opens[i].seg);
    free(s->opens);
    s->opens = NULL;
    s->nopens = s->capopens = 0;
}
