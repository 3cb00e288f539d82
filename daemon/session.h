/* Client sessions: identity, what a client owns (registrations, exported
 * segment, opened segments, batches), its queue of outgoing frames, and
 * lifetime. The loop thread owns a session; copy and NIC threads hold
 * references while their work uses it. */
#ifndef MCEFAD_SESSION_H
#define MCEFAD_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <uv.h>

#include "batch.h"
#include "defer.h"
#include "inbox.h"
#include "mcefa.pb-c.h"
#include "region.h"
#include "segment.h"
#include "wire.h"

typedef struct outbuf {
    STAILQ_ENTRY(outbuf) link;
    uint8_t *data;
    size_t len, off;
    int fds[2];
    unsigned nfds;
} outbuf;

/* A client range being registered on a worker thread: reserved so that a
 * second registration cannot overlap it meanwhile. */
typedef struct pending_range {
    LIST_ENTRY(pending_range) link;
    uint64_t addr, len;
} pending_range;

typedef struct session {
    _Atomic int refs;
    uint64_t id;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    char name[64];
    bool admin; /* may use admin requests (root, our user, admin_group) */
    bool hello_done;
    bool closing;
    bool close_after_flush;
    bool broken; /* a reply could not be queued: close at once */
    /* Set by session_teardown; read by any thread: work of a client that
     * left and has not started yet is dropped. */
    _Atomic bool gone;

    /* The socket (server.c). */
    int fd;
    uv_poll_t poll;
    int poll_events;
    unsigned protocol_errors;
    unsigned waiting; /* requests answered later; reading pauses at a cap */
    wire_reader rd;
    STAILQ_HEAD(, outbuf) out;
    size_t out_bytes;
    /* Called when frames were queued (the server starts writing). */
    void (*on_output)(struct session *s);
    /* Frames already buffered wait for this when reading paused. */
    defer_item resume;
    bool resume_queued;
    /* Closing it because all clients' queued replies passed
     * max_outbound_bytes_total (on the loop's next turn). */
    defer_item evict;
    bool evict_queued;

    region_table regions;
    LIST_HEAD(, pending_range) registering;
    unsigned nregistering;
    uint64_t registering_bytes; /* sum of the pending ranges */
    struct memfd_maps *maps;    /* its memfds' mappings, shared by their regions */
    struct plain_proc *proc;    /* the client process, once it registers plain memory */
    /* A VMM registration arriving in parts (rpc_memory.c): the chunks so
     * far, for the range named. */
    struct gpu_desc *vmm_pending;
    uint64_t vmm_pending_addr, vmm_pending_len;

    struct ring *ring; /* its submission ring (ring.c), NULL until it asks */
    _Atomic bool ring_on; /* ring != NULL, for other threads */
    void *cq; /* completion area mapping */
    size_t cq_len;
    batch_set batches;

    segment_entry *exported;
    open_set opens;
    inbox inbox; /* notifications for its segment, until it takes them */

    TAILQ_ENTRY(session) link;
} session;

TAILQ_HEAD(session_list, session);

/* admin_gid: members of this group are admins (-1: none). */
void session_init(int admin_gid);
session *session_new(int fd);
void session_ref(session *s);
void session_unref(session *s);
/* Drops the client: registrations, segment, opened segments; in-flight
 * work keeps what it uses alive until it finishes. */
void session_teardown(session *s);
struct session_list *session_all(void);
unsigned session_count(void);
/* Transfers submitted and not finished. */
uint64_t session_inflight(const session *s);

/* Packs resp and queues it with fds (taken over), then calls on_output.
 * Out of memory, or over max_outbound_bytes (the client does not read its
 * replies), marks the session broken: on_output closes it. */
int session_queue_response(session *s, const Mcefa__Response *resp, int *fds, unsigned nfds);
/* n bytes of s's queued replies were written to its socket. */
void session_sent(session *s, size_t n);

/* Queues a notification for s, the owner of segment `segment` (named in
 * the log), within notify_queue_bytes. Returns 0, or -ENOBUFS (s does not
 * take its notifications) or -ENOMEM with e saying why; the caller puts
 * the segment in front. */
int session_notify(session *s, const char *segment, const void *name, size_t name_len, const void *msg,
                   size_t msg_len, err *e);

#endif
