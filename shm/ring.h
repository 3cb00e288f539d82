/* The submission ring: one shared-memory area per client session, created
 * by the daemon (OpenRing), through which the client submits transfers
 * without a system call while the daemon is awake. The client writes
 * fixed-size descriptors and publishes a tail; the daemon copies them out,
 * publishes a head (their slots are free again), checks and starts them
 * exactly as a SubmitBatch, and answers each submission in a result slot.
 * The daemon sleeps on an eventfd only when every ring it serves is idle,
 * saying so in `sleeping`: a client that sees it set after publishing
 * writes the eventfd, the one system call of the path.
 *
 * The daemon treats all of it as hostile: it reads tail once per pass and
 * bounds it by its own head and entries, masks every index, copies each
 * descriptor once and never reads a shared field twice. */
#ifndef MCEFA_SHM_RING_H
#define MCEFA_SHM_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHM_RING_MAGIC 0x6d636572u /* "mcer" */
#define SHM_RING_VERSION 1u
/* Answers held at once: a client has at most this many submissions
 * unanswered (their result slots are in use). */
#define SHM_RING_RESULTS 64u
#define SHM_RING_TEXT 232

/* What a descriptor asks. Batch requests ride the ring too, so a client
 * that allocates, submits and frees a batch per step (Mooncake's pattern)
 * makes no system call at all while the daemon is awake. */
enum shm_ring_kind {
    SHM_RING_TRANSFER = 0, /* a transfer of batch_id; opcode 0 read, 1 write */
    SHM_RING_ALLOC = 1,    /* AllocBatch: length is the capacity; alone in its submission */
    SHM_RING_FREE = 2,     /* FreeBatch of batch_id; flags bit 0: when_done; alone in its submission */
};
#define SHM_RING_FREE_WHEN_DONE 0x1u

typedef struct shm_ring_header {
    /* Set by the daemon at creation; it never reads them back. */
    uint32_t magic;
    uint32_t version;
    uint32_t entries; /* descriptors, a power of two */
    uint32_t results; /* result slots, a power of two */
    uint8_t pad0[48];
    /* The client's line. */
    _Atomic uint32_t tail;    /* descriptors published (free-running) */
    _Atomic uint32_t waiters; /* client threads in a futex wait on answered */
    uint8_t pad1[56];
    /* The daemon's line. */
    _Atomic uint32_t head;     /* descriptors copied out (free-running): their slots are the client's again */
    _Atomic uint32_t answered; /* submissions answered (free-running); futex word */
    _Atomic uint32_t sleeping; /* 1: the daemon waits on the eventfd */
    _Atomic int32_t broken;    /* negative errno: the daemon stopped reading the ring (the reason is logged) */
    uint8_t pad2[112];
} shm_ring_header;

/* One request. The first descriptor of a submission says how many it has
 * (count, 1..entries); the others carry count 0. A submission of
 * transfers names one batch; they take the batch's next indexes in order. */
typedef struct shm_ring_desc {
    uint64_t batch_id;
    uint64_t local_addr;
    uint64_t segment; /* handle from OpenSegment */
    uint64_t remote_addr;
    uint64_t length;
    uint32_t opcode; /* Mcefa__Opcode: 0 read, 1 write */
    uint32_t count;
    uint32_t kind;   /* enum shm_ring_kind */
    uint32_t flags;
    uint64_t reserved;
} shm_ring_desc;

/* The answer to submission k (0, 1, ...) is in slot k % results; seq is
 * k + 1, stored last (release), so a client that sees its seq may read the
 * rest. The fields mean what BatchSubmitted (first_index), BatchAllocated
 * (batch_id, first_index = first_slot, capacity) and an error reply
 * (status, text) would have said. */
typedef struct shm_ring_result {
    _Atomic uint32_t seq;
    int32_t status;
    uint32_t first_index;
    uint32_t capacity;
    uint64_t batch_id;
    char text[SHM_RING_TEXT];
} shm_ring_result;

_Static_assert(sizeof(shm_ring_header) == 256, "ring header layout");
_Static_assert(sizeof(shm_ring_desc) == 64, "ring descriptor layout");
_Static_assert(sizeof(shm_ring_result) == 256, "ring result layout");

static inline size_t shm_ring_size(uint32_t entries, uint32_t results)
{
    return sizeof(shm_ring_header) + (size_t)entries * sizeof(shm_ring_desc) +
           (size_t)results * sizeof(shm_ring_result);
}

static inline shm_ring_desc *shm_ring_descs(void *area)
{
    return (shm_ring_desc *)((char *)area + sizeof(shm_ring_header));
}

static inline shm_ring_result *shm_ring_results(void *area, uint32_t entries)
{
    return (shm_ring_result *)((char *)area + sizeof(shm_ring_header) + (size_t)entries * sizeof(shm_ring_desc));
}

/* Where the parts of a mapped ring are, for either side. The sizes are the
 * ones that side was told or chose, never read back from the header. */
typedef struct shm_ring_view {
    void *area;
    size_t len;
    shm_ring_header *h;
    shm_ring_desc *desc;
    shm_ring_result *res;
    uint32_t entries, results;
} shm_ring_view;

static inline void shm_ring_view_set(shm_ring_view *v, void *area, uint32_t entries, uint32_t results)
{
    v->area = area;
    v->len = shm_ring_size(entries, results);
    v->h = area;
    v->desc = shm_ring_descs(area);
    v->res = shm_ring_results(area, entries);
    v->entries = entries;
    v->results = results;
}

/* Daemon side: initialises a fresh area. entries and results: powers of two. */
void shm_ring_init(void *area, uint32_t entries, uint32_t results);

/* Daemon side: answers (release) and wakes client threads waiting in
 * shm_ring_wait_answered. */
void shm_ring_publish_answered(void *area, uint32_t answered);

/* Client side: sleeps until `answered` differs from seen or `broken` is set,
 * at most timeout_ms. Returns 0 or -ETIMEDOUT. */
int shm_ring_wait_answered(void *area, uint32_t seen, int timeout_ms);

#endif
