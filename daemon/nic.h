/* NIC contexts over libfabric: one fabric/domain/AV/CQ and one shared RDM
 * endpoint per NIC, and the one memory-registration path every caller
 * uses. The worker threads that post and poll live in nic_worker.c. */
#ifndef MCEFAD_NIC_H
#define MCEFAD_NIC_H

#include <rdma/fabric.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "region.h"

#define NIC_ADDR_MAX 64
#define NIC_MAX 64

struct nic_worker;

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
    uint64_t key_mask; /* keys we choose fit the provider's key size */
    /* An 8-byte region peers read to warm a NIC pair up. */
    uint64_t warmup_word;
    nic_mr warmup;
    struct nic_worker *worker;
    _Atomic uint64_t outstanding, bytes, ops, errors;
} nic;

/* Memory to register: host memory today; GPU memory (iface, device,
 * dmabuf fd) extends this descriptor, not the callers. */
typedef struct nic_mem {
    void *addr;
    size_t len;
} nic_mem;

/* Opens every NIC the settings allow. With no NIC found it logs why and
 * returns 0: the daemon then serves same host only. */
int nic_init(const mcefad_config *cfg);
void nic_shutdown(void);

unsigned nic_count(void);
nic *nic_get(unsigned i);

/* The one registration path: m on NIC n with the given FI_* access bits,
 * honouring the provider's mr_mode (keys, endpoint binding, addresses). */
int nic_mr_reg(nic *n, const nic_mem *m, uint64_t access, nic_mr *out, err *e);
void nic_mr_close(nic_mr *m);

/* Registers r with every NIC for local and remote access (r->mrs). */
int nic_register_region(region *r, err *e);

/* Link state as the kernel reports it now (sysfs), into buf. */
const char *nic_link_state(const nic *n, char *buf, size_t len);

#endif
