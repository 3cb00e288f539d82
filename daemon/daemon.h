/* mcefad's shared state: the process-wide context, client sessions and the
 * objects they own. The event-loop thread owns everything here except what
 * is marked atomic (touched by copy threads too). */
#ifndef MCEFAD_DAEMON_H
#define MCEFAD_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "mcefa.pb-c.h"
#include "region.h"
#include "wire.h"

#define MCEFAD_VERSION MCEFA_VERSION /* VERSION in the Makefile */
#define LAT_BUCKETS 14

struct session;

/* An exported segment name. Opened handles keep the entry alive; when its
 * owner goes away owner becomes NULL and the name is free for reuse. */
typedef struct segment_entry {
    char *name;
    struct session *owner;
    unsigned refs;
    struct segment_entry *next;
} segment_entry;

struct peer;

/* A segment on another host, as its daemon described it. */
typedef struct remote_region {
    uint64_t addr, length;
    int numa_node;
    uint64_t *rma_addr; /* per remote NIC */
    uint64_t *rma_key;
} remote_region;

typedef struct remote_segment {
    struct peer *peer;
    uint64_t epoch; /* of the peer when described */
    uint64_t layout_gen;
    uint64_t gen;
    char *name;
    size_t nregions;
    remote_region *regions; /* sorted by addr */
    unsigned nrnics;
} remote_segment;

/* An opened segment: local (seg) or on another host (remote). */
typedef struct open_segment {
    uint64_t handle;
    segment_entry *seg;
    remote_segment *remote;
    unsigned opens;
} open_segment;

/* One transfer inside a batch: its copy may be split into chunks. */
typedef struct xfer_req {
    uint64_t t0_us;             /* submission, for the latency histogram */
    _Atomic uint32_t remaining; /* chunks not finished */
    _Atomic int32_t err;        /* first chunk error */
    char *why;                  /* its explanation, set by whoever set err */
} xfer_req;

typedef struct batch {
    uint64_t id;
    uint32_t first_slot; /* header slot in the completion area */
    uint32_t capacity;
    uint32_t count;      /* transfers submitted so far */
    _Atomic uint32_t pending;
    _Atomic uint32_t finishing; /* completions still writing the shared area */
    _Atomic uint32_t *state; /* daemon's own copy of each transfer's state */
    int32_t *err;
    char **err_text;
    xfer_req *reqs;
    struct batch *next;
} batch;

typedef struct outbuf {
    struct outbuf *next;
    uint8_t *data;
    size_t len, off;
    int fds[2];
    unsigned nfds;
} outbuf;

typedef struct session {
    _Atomic int refs;
    uint64_t id;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    char name[64];
    int fd;
    uv_poll_t poll;
    int poll_events;
    bool hello_done;
    bool closing;
    bool close_after_flush;
    bool busy; /* a request is waiting on the network; later ones wait */
    bool admin; /* may use admin requests (root, our user, admin_group) */
    bool dispatching, answered_inline;
    unsigned protocol_errors;
    wire_reader rd;
    outbuf *out_head, *out_tail;
    size_t out_bytes;

    region_table regions;

    void *cq; /* completion area mapping */
    size_t cq_len;
    uint32_t cq_slots;

    batch *batches;
    uint64_t next_batch_id;

    segment_entry *exported;
    open_segment *opens;
    size_t nopens, capopens;
    uint64_t next_handle;

    _Atomic uint64_t inflight;
    struct session *prev, *next;
} session;

typedef struct daemon_ctx {
    mcefad_config cfg;
    uv_loop_t *loop;
    char hostname[256];
    uint64_t epoch;
    uint64_t start_ms;
    session *sessions;
    unsigned nsessions;
    uint64_t next_session_id;
    segment_entry *segments;
    uint64_t next_segment_port;
    _Atomic uint64_t bytes_copied;
    _Atomic uint64_t transfers_completed;
    _Atomic uint64_t transfers_failed;
    _Atomic uint64_t protocol_errors;
    _Atomic uint64_t lat_buckets[LAT_BUCKETS + 1]; /* transfer latency; last: +Inf */
    _Atomic uint64_t lat_sum_us;
    int admin_gid; /* -1: admin_group does not exist */
} daemon_ctx;

/* Upper bounds (µs) of the latency histogram buckets. */
extern const uint64_t lat_bounds_us[LAT_BUCKETS];
uint64_t daemon_now_us(void);
void daemon_record_latency(uint64_t us);

extern daemon_ctx mcefad;

uint64_t daemon_now_ms(void);

/* session.c */
session *session_new(int fd);
void session_ref(session *s);
void session_unref(session *s);
/* Drops the client: registrations, segment, batches; in-flight work keeps
 * what it uses alive until it finishes. */
void session_teardown(session *s);

/* segment.c */
int segment_export(session *s, const char *name, const char **why);
void segment_unexport(session *s);
segment_entry *segment_lookup(const char *name);
/* Exact name, else the same :port under another name of this host. Call
 * only for names that peer_is_local_name accepts (or that a peer sent us). */
segment_entry *segment_find(const char *name);
/* Per-session handles of opened segments. */
open_segment *segment_open_find(session *s, uint64_t handle);
int segment_open(session *s, segment_entry *e, uint64_t *handle);
int segment_open_remote(session *s, remote_segment *r, uint64_t *handle);
remote_segment *segment_remote_from(struct peer *p, const Mcefa__SegmentDescriptor *d, char *why, size_t whylen);
void segment_remote_free(remote_segment *r);
int segment_close(session *s, uint64_t handle);
void segment_close_all(session *s);

/* rpc.c: request handlers. The context owns everything a reply points to. */
typedef struct rpc_ctx {
    void **allocs;
    size_t nallocs, cap;
    int fds[2];
    unsigned nfds;
    bool close_after_reply;
    bool deferred; /* the handler answers later with server_reply_later */
} rpc_ctx;

void *rpc_alloc(rpc_ctx *ctx, size_t size);
void rpc_ctx_free(rpc_ctx *ctx);
/* Sets a failed reply: status is a negative errno, the text says why. */
void rpc_fail(rpc_ctx *ctx, Mcefa__Response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rpc_handle(session *s, const Mcefa__Request *req, Mcefa__Response *resp, rpc_ctx *ctx);

/* xfer.c: batches and transfers. */
void xfer_alloc_batch(session *s, const Mcefa__AllocBatch *m, Mcefa__Response *resp, rpc_ctx *ctx);
void xfer_free_batch(session *s, const Mcefa__FreeBatch *m, Mcefa__Response *resp, rpc_ctx *ctx);
void xfer_submit(session *s, const Mcefa__SubmitBatch *m, Mcefa__Response *resp, rpc_ctx *ctx);
void xfer_destroy_batches(session *s);
void xfer_batch_status(session *s, const Mcefa__BatchStatusQuery *m, Mcefa__Response *resp, rpc_ctx *ctx);

/* server.c */
int server_start(void);
void server_stop(void);
/* Sends the answer to a deferred request and resumes reading the session. */
void server_reply_later(session *s, Mcefa__Response *resp, rpc_ctx *ctx);

#endif
