/* Transfers through staging buffers (staging.h), for memory no NIC holds
 * (plain host memory, GPU memory without FI_HMEM):
 *
 * - a local staged region to or from a remote region a NIC holds: this
 *   daemon copies each piece between the client's memory and a staging
 *   slot, and the slot is the RMA's local buffer;
 * - any local region to or from a remote *staged* region: an exchange, one
 *   StagedOp request per piece; the other daemon copies between its
 *   client's memory and its own slot, and its NIC reads the piece from our
 *   memory (write) or writes it into ours (read) before it answers. A
 *   local staged region goes through our slot too.
 *
 * Pieces are staging_slot_bytes at most and run concurrently, bounded by
 * the free slots and, per peer, by XFER_STAGE_WINDOW requests in flight.
 * docs/protocol.md, "Staged memory", describes the exchange. */
#ifndef MCEFAD_XFER_STAGE_H
#define MCEFAD_XFER_STAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "batch.h"
#include "mcefa.pb-c.h"
#include "peer_table.h"
#include "region.h"
#include "remote.h"
#include "session.h"

/* StagedOp requests one host has in flight to another; the receiver
 * refuses more than twice this from one peer. */
#define XFER_STAGE_WINDOW 32
/* Chunks (a slot each) one staged transfer may have: 16 TiB at 1 MiB
 * slots, 64 GiB at a peer's smallest (4 KiB). */
#define XFER_STAGE_MAX_PIECES (1u << 24)
/* Pieces of one transfer in flight at once, each a chunk at a time. */
#define XFER_STAGE_PIECES 8

/* One staged request, as the sender describes it. */
typedef struct stage_req {
    bool write;
    const char *segment;
    uint64_t addr, length;
    const uint64_t *rma_addr, *rma_key; /* the sender's memory, per sender NIC */
    unsigned nnics;
    uint64_t absent;
    uint64_t preferred;   /* bit j: sender NIC j is nearest its memory */
    uint64_t deadline_ms; /* absolute, this host's clock */
    uint64_t epoch, region_id; /* the receiver's, from the descriptor */
} stage_req;

/* answered: the other daemon replied (it is done with our memory);
 * false: the link failed or the deadline passed first. */
typedef void (*stage_reply_fn)(void *arg, int status, const char *why, bool answered);
/* How requests reach a peer (peer_stage.c installs it); <0: not sent. */
typedef int (*stage_send_fn)(peer *p, const stage_req *q, stage_reply_fn fn, void *arg);

void xfer_stage_init(uv_loop_t *loop, uint64_t timeout_ms);
void xfer_stage_set_sender(stage_send_fn fn);
/* Frees pieces still kept back after failed exchanges (at shutdown). */
void xfer_stage_shutdown(void);

/* Loop thread. Whether transfer t between lr and rr (on rs's peer) goes
 * through staging, and if it cannot, why (0: fine, or direct RMA). */
int xfer_stage_check(const region *lr, const remote_segment *rs, const remote_region *rr, size_t i, err *e);
bool xfer_stage_needed(const region *lr, const remote_region *rr);
/* Plans transfer idx of b through staging: its pieces go onto *chain
 * (remaining set), to be started with xfer_stage_start once the whole
 * submission is planned. via_slot: lr goes through our slots even though
 * NICs hold it (GPU memory whose own NICs reach no NIC of the peer).
 * Returns the pieces, 0 when it finished at once (failed). */
typedef struct stage_piece stage_piece;
uint32_t xfer_stage_submit(session *s, batch *b, uint32_t idx, const Mcefa__Transfer *t, region *lr,
                           remote_segment *rs, remote_region *rr, bool via_slot, stage_piece **chain);
void xfer_stage_start(stage_piece *chain);

/* The receiving side: serves request q of peer p on plain region r (the
 * caller's reference passes over unless it fails at once: -ENOMEM). done
 * runs on the loop thread, never inside this call, once our NIC and copies
 * let go of everything. */
typedef void (*stage_served_fn)(void *arg, int status, const char *why);
int xfer_stage_serve(peer *p, region *r, const stage_req *q, stage_served_fn done, void *arg);

#endif
