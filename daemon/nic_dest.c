/* Per-destination state of a NIC worker: a small hash by AV address and
 * the list of destinations with ops waiting. */
#include "nic_dest.h"

#include <stdlib.h>

void nic_dest_list_push(nic_op_list *q, net_op *op)
{
    op->next = NULL;
    if (q->tail)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
}

void nic_dest_list_advance(nic_op_list *q, net_op *next)
{
    q->head = next;
    if (!next)
        q->tail = NULL;
}

static unsigned bucket(fi_addr_t a)
{
    return (unsigned)((a * 0x9e3779b97f4a7c15ull) >> 58) % NIC_DEST_BUCKETS;
}

nic_dest *nic_dest_find(nic_dests *t, fi_addr_t a)
{
    for (nic_dest *d = t->buckets[bucket(a)]; d; d = d->hnext)
        if (d->addr == a)
            return d;
    return NULL;
}

nic_dest *nic_dest_get(nic_dests *t, fi_addr_t a)
{
    nic_dest *d = nic_dest_find(t, a);
    if (d || !(d = calloc(1, sizeof(*d))))
        return d;
    unsigned b = bucket(a);
    d->addr = a;
    d->hnext = t->buckets[b];
    t->buckets[b] = d;
    return d;
}

void nic_dest_put(nic_dests *t, nic_dest *d)
{
    if (!d || d->posted || d->wait.head || d->blocked)
        return;
    nic_dest **pp = &t->buckets[bucket(d->addr)];
    while (*pp != d)
        pp = &(*pp)->hnext;
    *pp = d->hnext;
    free(d);
}

static void blocked_append(nic_dests *t, nic_dest *d)
{
    d->blocked = true;
    d->bnext = NULL;
    if (t->blocked_tail)
        t->blocked_tail->bnext = d;
    else
        t->blocked_head = d;
    t->blocked_tail = d;
}

void nic_dest_wait(nic_dests *t, nic_dest *d, net_op *op)
{
    nic_dest_list_push(&d->wait, op);
    if (!d->blocked)
        blocked_append(t, d);
}

unsigned nic_dest_blocked_count(const nic_dests *t)
{
    unsigned n = 0;
    for (const nic_dest *d = t->blocked_head; d; d = d->bnext)
        n++;
    return n;
}

nic_dest *nic_dest_next_blocked(nic_dests *t)
{
    nic_dest *d = t->blocked_head;
    if (d) {
        t->blocked_head = d->bnext;
        if (!t->blocked_head)
            t->blocked_tail = NULL;
    }
    return d;
}

void nic_dest_requeue(nic_dests *t, nic_dest *d)
{
    if (d->wait.head) {
        blocked_append(t, d);
        return;
    }
    d->blocked = false;
    nic_dest_put(t, d);
}

void nic_dests_free(nic_dests *t)
{
    for (unsigned b = 0; b < NIC_DEST_BUCKETS; b++)
        while (t->buckets[b]) {
            nic_dest *d = t->buckets[b];
            t->buckets[b] = d->hnext;
            free(d);
        }
    t->blocked_head = t->blocked_tail = NULL;
}
