/* NIC contexts over libfabric: one fabric/domain/AV/CQ and one shared RDM
 * endpoint per NIC, memory registration, and the NIC worker threads that own
 * the endpoints (post + poll, no lock on the post path). */
#ifndef MCEFAD_NIC_H
#define MCEFAD_NIC_H

#include <rdma/fabric.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "region.h"

#define NIC_ADDR_MAX 64
#define NIC_MAX 64

typedef struct nic_worker nic_worker;

typedef struct nic {
    unsigned idx;
    char name[64];    /* domain name */
    char fabric[128]; /* fabric name: NICs pair only within a fabric */
    char provider[64];
    int numa_node;
    struct fi_info *info;
    struct fid_fabric *fabric_fid;
    struct fid_domain *domain;
    struct fid_av *av;
    struct fid_cq *cq;
    int cq_fd; /* the CQ's wait fd, -1 if the provider has none */
    struct fid_ep *ep;
    int mr_mode;
    bool delivery_complete; /* writes complete only once the data is at the target */
    size_t max_msg;
    uint64_t max_wr;
    uint8_t addr[NIC_ADDR_MAX];
    size_t addrlen;
    _Atomic uint64_t next_key;
    /* An 8-byte region peers read to warm a NIC pair up. */
    uint64_t warmup_word;
    struct fid_mr *warmup_mr;
    uint64_t warmup_addr, warmup_key;
    void *warmup_desc;
    nic_worker *worker;
    _Atomic uint64_t outstanding, bytes, ops, errors;
} nic;

/* Per region and NIC: how the NIC sees the region. */
typedef struct nic_mr {
    struct fid_mr *mr;
    void *desc;
    uint64_t key;
    uint64_t rma_base; /* RMA address of the region's first byte */
} nic_mr;

/* One RMA operation. On the worker's thread, done reports the outcome once
 * (completion, error, or deadline passed); release follows once the
 * provider has let go of the buffers, which after a timeout can be later. */
typedef struct net_op net_op;
typedef void (*net_op_done_fn)(net_op *op, int err, const char *why);

struct net_op {
    struct fi_context2 ctx; /* libfabric's per-op scratch: must stay first */
    net_op *next;
    nic *nic;
    int write;
    void *local;
    void *desc;
    size_t len;
    fi_addr_t dest;
    uint64_t raddr, rkey;
    uint64_t deadline_ms;
    const _Atomic uint64_t *peer_gen; /* fail unposted ops if this moves */
    uint64_t gen;
    net_op_done_fn done;
    void (*release)(net_op *op);
    net_op *pprev, *pnext; /* worker's list of posted ops */
};

extern nic *nics[NIC_MAX];
extern unsigned nnics;

/* Opens every NIC the settings allow and starts the workers. With no NIC
 * found it logs why and returns 0: the daemon then serves same host only. */
int nic_init(void);
void nic_shutdown(void);

/* Registers r with every NIC (r->nic_mrs). */
int nic_register_region(region *r, char *why, size_t whylen);

/* Queues ops (linked through next) to their NICs' workers. */
void nic_submit(net_op *first);

/* Local NICs eligible for memory on numa_node (all if none is local). */
unsigned nic_choose(int numa_node, unsigned *out, unsigned max);

uint64_t nic_now_ms(void);

/* Link state as the kernel reports it now (sysfs), into buf. */
const char *nic_link_state(const nic *n, char *buf, size_t len);

#endif
