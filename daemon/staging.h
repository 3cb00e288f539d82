/* Staging buffers: host memory of the daemon's own, registered with every
 * NIC at start, through which memory no NIC can reach (plain host memory;
 * later GPU memory on providers without FI_HMEM) travels to and from other
 * hosts. A fixed number of slots of staging_slot_bytes each; a piece of a
 * transfer holds one slot from its first copy to its last, and waits for
 * one in order of asking when all are taken. Any thread. */
#ifndef MCEFAD_STAGING_H
#define MCEFAD_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "region.h"

typedef struct stage_wait stage_wait;
/* Called with the slot granted: inside staging_get when one is free,
 * else on the thread of the staging_put that freed it. */
typedef void (*stage_ready_fn)(stage_wait *w, unsigned slot);
struct stage_wait {
    stage_wait *next;
    stage_ready_fn ready;
    void (*cancel)(stage_wait *w); /* staging_cancel_waiters: it gets no slot */
    unsigned slot; /* staging.c's: the slot handed over */
};

/* After the NICs opened: bytes in slots of slot_bytes (bytes 0: none). */
int staging_init(uint64_t bytes, uint64_t slot_bytes, err *e);
void staging_shutdown(void);
/* 0 when there is no staging memory. */
unsigned staging_slots(void);
uint64_t staging_slot_bytes(void);
/* The region all slots live in (registered with every NIC). */
region *staging_region(void);
char *staging_ptr(unsigned slot);

/* The two pools (half the slots each): pieces of this host's transfers,
 * and pieces served for other hosts; with one slot it serves both. */
enum { STAGE_SEND = 0, STAGE_SERVE = 1 };
/* Asks for a slot of a pool; w->ready (and w->cancel) set by the caller. */
void staging_get(stage_wait *w, int which);
void staging_put(unsigned slot);
/* Takes w out of pool which's queue: true if it was waiting there (it
 * gets no slot), false if a slot was handed to it meanwhile. */
bool staging_cancel(stage_wait *w, int which);
/* At shutdown: every waiter's cancel, in order (on this thread). */
void staging_cancel_waiters(void);
/* Slots in use and pieces waiting, for status. */
unsigned staging_in_use(void);
unsigned staging_waiting(void);

#endif
