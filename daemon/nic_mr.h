/* Registering memory with the NICs (nic_mr.c): the one path every caller
 * uses, and which NICs a client region goes to. Included by nic.h. */
#ifndef MCEFAD_NIC_MR_H
#define MCEFAD_NIC_MR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "region.h"

struct nic;

/* Memory to register: host memory today; GPU memory (iface, device,
 * dmabuf fd) extends this descriptor, not the callers. */
typedef struct nic_mem {
    void *addr;
    size_t len;
} nic_mem;

/* The one registration path: m on NIC n with the given FI_* access bits,
 * honouring the provider's mr_mode (keys, endpoint binding, addresses). */
int nic_mr_reg(struct nic *n, const nic_mem *m, uint64_t access, nic_mr *out, err *e);
void nic_mr_close(nic_mr *m);

/* The register_all_nics setting (nic_init passes it on). */
void nic_register_init(bool all_nics);

/* Registers r for local and remote access (r->mrs) with the NICs local to
 * its memory (route_register), or every NIC with register_all_nics; r->mrs
 * has a slot per NIC, NULL where it is not registered. Large regions are
 * registered with several NICs at once. */
int nic_register_region(region *r, err *e);

#endif
