/* NIC contexts over libfabric: one fabric/domain/AV/CQ and one shared RDM
 * endpoint per NIC. The one memory-registration path every caller uses is
 * in nic_mr.c (nic_mr.h, included here); the worker threads that post and
 * poll live in nic_worker.c. */
#ifndef MCEFAD_NIC_H
#define MCEFAD_NIC_H

#include <rdma/fabric.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "efa_dev.h"
#include "err.h"
#include "nic_hmem.h"
#include "region.h"

#define NIC_ADDR_MAX 64
#define NIC_MAX 64

struct nic_worker;

typedef struct nic {
    unsigned idx;
    /* The device name where the provider gives one (rdmap79s0: sysfs,
     * hwloc and Mooncake's NIC lists use it), else the domain name. */
    char name[64];
    char domain_name[64]; /* libfabric domain name (rdmap79s0-rdm, eth0) */
    char fabric[128]; /* fabric name: NICs pair only within a fabric */
    char provider[64];
    uint32_t lib_version;  /* fi_version(): the library loaded */
    uint32_t prov_version; /* the provider's own version */
    uint32_t api_version;  /* what fi_getinfo answered at */
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
    bool hmem;              /* FI_HMEM in the caps of the entry the NIC was opened with */
    bool shm_off;           /* efa's shm sub-provider turned off by option */
    /* RMA emulated with send/receive: 1, 0 device RDMA, -1 cannot tell (or not efa). */
    int emulated_read, emulated_write;
    uint64_t max_rma_bytes; /* largest single RMA op; larger transfers are split (xfer.c) */
    size_t tx_depth;        /* the provider's tx queue (tx_attr->size), 0 if it says none */
    uint64_t max_wr;
    efa_dev_attr efa;       /* libefa's description (efa provider only) */
    char efa_why[160];      /* why efa is unknown */
    uint8_t addr[NIC_ADDR_MAX];
    size_t addrlen;
    uint64_t key_mask; /* keys we choose fit the provider's key size */
    /* GPU memory: what the plan was decided from (strings point into the
     * NIC or at static text), and the plan (nic_hmem.h), fixed at start. */
    nic_hmem_facts hmem_facts;
    char hmem_note[ERR_TEXT_MAX]; /* why the FI_HMEM entry was missing or failed to open */
    nic_hmem_plan gpu;
    char open_err[200];           /* the libfabric call that failed opening the NIC */
    /* An 8-byte region peers read to warm a NIC pair up. */
    uint64_t warmup_word;
    nic_mr warmup;
    struct nic_worker *worker;
    _Atomic uint64_t outstanding, bytes, ops, errors;
} nic;

/* Opens every NIC the settings allow. With no NIC found it logs why and
 * returns 0: the daemon then serves same host only. */
int nic_init(const mcefad_config *cfg);
void nic_shutdown(void);

unsigned nic_count(void);
nic *nic_get(unsigned i);

/* Link state as the kernel reports it now (sysfs), into buf. */
const char *nic_link_state(const nic *n, char *buf, size_t len);

#include "nic_mr.h"

#endif
