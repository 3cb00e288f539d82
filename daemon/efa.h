/* What the efa provider asks of a libfabric user, in one place: the
 * fi_getinfo hints, the choice between the efa and efa-direct fabrics,
 * which endpoint options to set or read at which API version, and whether
 * RMA runs on the device or is emulated. Pure functions over plain data
 * (nic.c feeds them what libfabric and libefa said), so the rules are
 * unit-tested without EFA hardware; efa_opt_run is the one that touches an
 * endpoint. The sources are in ../shared/reference/efa-notes.md. */
#ifndef MCEFAD_EFA_H
#define MCEFAD_EFA_H

#include <rdma/fabric.h>
#include <rdma/fi_endpoint.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define EFA_FABRIC "efa"
#define EFA_DIRECT_FABRIC "efa-direct"

/* Whether prov (a provider setting or prov_name) is the efa provider. */
bool efa_is_provider(const char *prov);

/* Fills hints (from fi_allocinfo) for prov: RDM endpoints with RMA, remote
 * communication only (no FI_LOCAL_COMM: efa would open an shm sub-provider
 * under every NIC), every mr_mode bit nic.c honours, FI_DELIVERY_COMPLETE
 * writes when delivery_complete, and with hmem FI_HMEM in the caps and
 * FI_MR_HMEM in the mr_mode (GPU memory registered with NICs: nic_hmem.h).
 * Returns 0 or -ENOMEM. */
int efa_fill_hints(struct fi_info *hints, const char *prov, bool delivery_complete, bool hmem);

/* ---- Fabric choice ------------------------------------------------------ */

/* One fi_getinfo entry, as the choice needs it. */
typedef struct efa_offer {
    const char *prov;   /* fabric_attr->prov_name */
    const char *domain; /* domain_attr->name: one NIC */
    const char *fabric; /* fabric_attr->name */
    int device_rdma;    /* libefa: 1 RDMA read and write on the device, 0 not both, -1 unknown */
} efa_offer;

/* Picks one entry per domain, in list order, among those of provider prov:
 * with setting "" the efa provider's efa-direct entry where the domain
 * offers it and its device is not known to lack RDMA read or write, else
 * its efa entry; other providers their first entry. Any other setting:
 * the entry of exactly that fabric, domains without one left out.
 * Writes entry indexes to chosen (room for n) and returns how many; 0 when
 * prov has no entry; -ENOENT with e saying what is offered when a named
 * fabric is offered by no domain. */
int efa_choose_fabric(const efa_offer *v, size_t n, const char *prov, const char *setting, size_t *chosen, err *e);

/* The distinct fabrics prov's entries offer (for domain only, unless NULL),
 * in list order, as "efa-direct, efa", into buf. */
void efa_fabrics_offered(const efa_offer *v, size_t n, const char *prov, const char *domain, char *buf, size_t len);

/* ---- Endpoint options --------------------------------------------------- */

typedef enum efa_opt {
    EFA_OPT_SHM_OFF,        /* set FI_OPT_SHARED_MEMORY_PERMITTED = false */
    EFA_OPT_CUDA_API_OFF,   /* set FI_OPT_CUDA_API_PERMITTED = false */
    EFA_OPT_EMULATED_READ,  /* get FI_OPT_EFA_EMULATED_READ */
    EFA_OPT_EMULATED_WRITE, /* get FI_OPT_EFA_EMULATED_WRITE */
    EFA_OPT_MAX_RMA_SIZE,   /* get FI_OPT_MAX_RMA_SIZE */
} efa_opt;

typedef struct efa_opt_step {
    efa_opt opt;
    bool before_enable; /* else after fi_enable */
    const char *name;   /* the libfabric option, for logs */
} efa_opt_step;

#define EFA_OPT_STEPS_MAX 8

/* The fi_setopt/fi_getopt calls for an endpoint of provider prov and
 * fabric at API version api, in order, into out (EFA_OPT_STEPS_MAX);
 * hmem: the endpoint has FI_HMEM, so any provider is told not to call CUDA
 * (FI_OPT_CUDA_API_PERMITTED, >= 1.18: nic_hmem.h says why).
 * Returns how many. Since the API version asked never exceeds the headers',
 * every option planned is one the headers define. */
size_t efa_opt_plan(uint32_t api, const char *prov, const char *fabric, bool hmem, efa_opt_step *out);

/* What the options said about one endpoint. */
typedef struct efa_ep_facts {
    int emulated_read, emulated_write; /* 1 emulated, 0 device RDMA, -1 not read */
    uint64_t max_rma;                  /* 0: not read */
    bool shm_off;                      /* FI_OPT_SHARED_MEMORY_PERMITTED = false was accepted */
    int cuda_api_rc;                   /* FI_OPT_CUDA_API_PERMITTED = false: 0, the error, 1 not tried */
} efa_ep_facts;

#define EFA_EP_FACTS_INIT {.emulated_read = -1, .emulated_write = -1, .cuda_api_rc = 1}

/* Runs one planned step on ep, recording the outcome in f. Returns 0 or
 * the negative libfabric error. */
int efa_opt_run(struct fid_ep *ep, const efa_opt_step *s, efa_ep_facts *f);

/* ---- Emulated RMA ------------------------------------------------------- */

/* Everything known about whether one NIC's RMA is emulated. */
typedef struct efa_rma_facts {
    int emulated_read, emulated_write; /* fi_getopt (efa_ep_facts) */
    int dev_read, dev_write;           /* libefa device caps: 1, 0, -1 unknown */
    int env_device_rdma;               /* FI_EFA_USE_DEVICE_RDMA: 1, 0, -1 unset */
    uint32_t api;                      /* the API version fi_getinfo answered */
} efa_rma_facts;

/* Whether reads and writes on a NIC of provider prov and fabric are
 * emulated with send/receive (1), run on the device (0) or cannot be told
 * (-1): the provider's answer where it gave one, else what the device and
 * the API version imply (below 1.18 efa keeps device RDMA off unless
 * FI_EFA_USE_DEVICE_RDMA=1). Providers other than efa: -1. */
void efa_rma_resolve(const char *prov, const char *fabric, const efa_rma_facts *f, int *read, int *write);

/* "no", "read", "write", "read+write", "unknown" or "n/a" (not efa). */
const char *efa_rma_emulated_name(const char *prov, int read, int write);

/* The verdict on NIC nic of provider prov: 0 when RMA runs on the device
 * (or the provider is not efa), 1 when it is emulated or cannot be told and
 * require is false (e holds the warning to log), -EOPNOTSUPP when require
 * is set (e says why and what to do). */
int efa_rma_check(const char *nic, const char *prov, int read, int write, bool require, err *e);

#endif
