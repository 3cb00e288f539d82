/* Segment names: which local client exports which name, and the handles a
 * client holds on segments it opened (local or on another host). */
#ifndef MCEFAD_SEGMENT_H
#define MCEFAD_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "err.h"
#include "region.h"
#include "remote.h"

/* An exported segment name. Opened handles keep the entry alive; when its
 * owner goes away owner and regions become NULL and the name is free for
 * reuse. */
typedef struct segment_entry {
    char *name;
    void *owner;                  /* the exporting session (opaque here) */
    const region_table *regions;  /* the owner's registrations */
    unsigned refs;
    LIST_ENTRY(segment_entry) link;
} segment_entry;

/* An opened segment: local (seg) or on another host (remote). */
typedef struct open_segment {
    uint64_t handle;
    segment_entry *seg;
    remote_segment *remote;
    unsigned opens;
} open_segment;

/* A client's opened segments. */
typedef struct open_set {
    open_segment *v;
    size_t n, cap;
    uint64_t next_handle;
} open_set;

/* port_base: the first N of daemon-chosen names "hostname:N". */
void segment_init(const char *hostname, uint64_t port_base);

/* Exports under name (NULL or "": the daemon picks hostname:N). */
int segment_export(void *owner, const region_table *regions, const char *name, segment_entry **out, err *e);
void segment_unexport(segment_entry *e);
/* Live entry by exact name, or NULL. */
segment_entry *segment_lookup(const char *name);
/* Exact name, else the same :port under another name of this host. Call
 * only for names that ident_is_local_name accepts (or that a peer sent us). */
segment_entry *segment_find(const char *name);
/* Iterates live and dead entries (status). */
segment_entry *segment_first(void);
segment_entry *segment_next(segment_entry *e);

void open_set_init(open_set *os);
open_segment *segment_open_find(open_set *os, uint64_t handle);
int segment_open(open_set *os, segment_entry *e, uint64_t *handle);
/* Takes r; re-opening the same remote segment refreshes it in place. */
int segment_open_remote(open_set *os, remote_segment *r, uint64_t *handle);
int segment_close(open_set *os, uint64_t handle);
void segment_close_all(open_set *os);

#endif
