/* The completion area: one shared-memory array per client session, written
 * by the daemon, polled by the client without a syscall. A batch owns a run
 * of slots: a header slot (completed/failed counters) and one slot per
 * transfer (state + error). Blocking waits use a futex on wake_seq, which
 * works for any number of waiting threads in the client. */
#ifndef MCEFA_SHM_COMPLETION_H
#define MCEFA_SHM_COMPLETION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHM_CQ_MAGIC 0x6d636571u /* "mceq" */
#define SHM_CQ_VERSION 1u

enum mcefa_state {
    MCEFA_STATE_IDLE = 0,      /* slot not submitted */
    MCEFA_STATE_PENDING = 1,
    MCEFA_STATE_COMPLETED = 2,
    MCEFA_STATE_FAILED = 3,
};

typedef struct shm_cq_header {
    uint32_t magic;
    uint32_t version;
    uint32_t nslots;
    uint32_t reserved;
    _Atomic uint32_t wake_seq; /* bumped after every completion */
    _Atomic uint32_t waiters;  /* clients blocked in a futex wait */
    uint8_t pad[40];
} shm_cq_header;

/* Request slot: state, error. Batch header slot: done, failed counters. */
typedef struct shm_cq_slot {
    _Atomic uint32_t state;
    int32_t error;
    _Atomic uint32_t done;
    _Atomic uint32_t failed;
} shm_cq_slot;

_Static_assert(sizeof(shm_cq_header) == 64, "completion header layout");
_Static_assert(sizeof(shm_cq_slot) == 16, "completion slot layout");

static inline shm_cq_slot *shm_cq_slots(void *area)
{
    return (shm_cq_slot *)((char *)area + sizeof(shm_cq_header));
}

static inline size_t shm_cq_size(uint32_t nslots)
{
    return sizeof(shm_cq_header) + (size_t)nslots * sizeof(shm_cq_slot);
}

/* Daemon side: initialises a fresh area. */
void shm_cq_init(void *area, uint32_t nslots);

/* Daemon side: marks slot idx finished with err (0 = success), counts it in
 * the batch header slot hdr and wakes waiters. */
void shm_cq_complete(void *area, uint32_t hdr, uint32_t idx, int err);
/* The two halves of shm_cq_complete, for a daemon thread that finishes a
 * run of transfers and wakes the client once for all of them. */
void shm_cq_set(void *area, uint32_t hdr, uint32_t idx, int err);
void shm_cq_wake(void *area);

/* Client side: blocks until wake_seq differs from seq or timeout_ms passes
 * (-1: no limit). Returns 0, or -ETIMEDOUT. */
int shm_cq_wait(void *area, uint32_t seq, int timeout_ms);

#endif
