/* A NIC worker's bookkeeping per destination (remote endpoint): what each
 * holds posted, and the ops waiting for it because it refused work
 * (-FI_EAGAIN: not connected yet, receiver not ready, its queue at the
 * provider full) or holds its share of the NIC's cap. A destination exists
 * while either is non-zero. Worker thread only; no libfabric calls. */
#ifndef MCEFAD_NIC_DEST_H
#define MCEFAD_NIC_DEST_H

#include <stdbool.h>
#include <stdint.h>

#include "nic_worker.h"

/* Ops in order, linked through next. */
typedef struct nic_op_list {
    net_op *head, *tail;
} nic_op_list;

void nic_dest_list_push(nic_op_list *q, net_op *op);
/* Drops the head, whose next the caller read while it was alive (a
 * failed op is freed by its release). */
void nic_dest_list_advance(nic_op_list *q, net_op *next);

typedef struct nic_dest {
    struct nic_dest *hnext; /* hash chain */
    struct nic_dest *bnext; /* the blocked list */
    fi_addr_t addr;
    uint64_t posted;
    nic_op_list wait;
    bool blocked; /* on the blocked list (has waiting ops) */
    bool eagain;  /* its last post was refused (else: its share was full) */
} nic_dest;

#define NIC_DEST_BUCKETS 64

/* The destinations of one NIC. Zeroed is empty. */
typedef struct nic_dests {
    nic_dest *buckets[NIC_DEST_BUCKETS];
    nic_dest *blocked_head, *blocked_tail; /* those with ops waiting, oldest first */
} nic_dests;

nic_dest *nic_dest_find(nic_dests *t, fi_addr_t a);
/* Found or made; NULL only when new and out of memory. */
nic_dest *nic_dest_get(nic_dests *t, fi_addr_t a);
/* Frees d (which may be NULL) once it holds nothing. */
void nic_dest_put(nic_dests *t, nic_dest *d);
/* op waits for d, behind its others; d joins the blocked list. */
void nic_dest_wait(nic_dests *t, nic_dest *d, net_op *op);
/* How many destinations have ops waiting. */
unsigned nic_dest_blocked_count(const nic_dests *t);
/* Takes the oldest blocked destination off the list (NULL if none); give
 * it back with nic_dest_requeue once its waiting ops were tried. */
nic_dest *nic_dest_next_blocked(nic_dests *t);
/* Back at the list's end while ops still wait, else freed once idle. */
void nic_dest_requeue(nic_dests *t, nic_dest *d);
/* Frees every destination (the worker stopped). */
void nic_dests_free(nic_dests *t);

#endif
