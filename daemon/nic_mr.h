/* Registering memory with the NICs (nic_mr.c): the one path every caller
 * uses, and which NICs a client region goes to. Included by nic.h. */
#ifndef MCEFAD_NIC_MR_H
#define MCEFAD_NIC_MR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "nic_hmem.h"
#include "region.h"

struct nic;

/* The one registration path: m (nic_hmem.h: host memory, or GPU memory by
 * iface or dmabuf) on NIC n with the given FI_* access bits, through
 * fi_mr_regattr, honouring the provider's mr_mode (keys, endpoint binding,
 * addresses). GPU memory only where n's plan takes that way (-EOPNOTSUPP
 * with the plan's reason otherwise). */
int nic_mr_reg(struct nic *n, const nic_mem *m, uint64_t access, nic_mr *out, err *e);
void nic_mr_close(nic_mr *m);

/* The register_all_nics setting (nic_init passes it on). */
void nic_register_init(bool all_nics);

/* Registers r for local and remote access (r->mrs) with the NICs local to
 * its memory (route_register), or every NIC with register_all_nics; r->mrs
 * has a slot per NIC, NULL where it is not registered. Large regions are
 * registered with several NICs at once. */
int nic_register_region(region *r, err *e);

/* Registers GPU region r (gpu.c's import: r->ptr is the daemon's device
 * address) with its near NICs (r->near, set by the caller; route_register
 * picks when it is 0, every NIC with register_all_nics) whose GPU plan is
 * not staging, each the way its plan says (nic_hmem_region_reg): dmabuf
 * with dmabuf_fd (-1: none; borrowed, the caller keeps it open while
 * registering) at dmabuf_off, else iface CUDA with device (the daemon's
 * ordinal). Where it returns, r->mrs has a slot per NIC, NULL where the
 * region is not registered, and r->nics_held counts the others. Returns
 * that count (0: none can take GPU memory, transfers must stage) or a
 * negative errno with e naming the NIC, having registered nothing. The
 * one caller is rpc_memory.c (register_gpu_with_nics). */
int nic_register_gpu_region(region *r, int dmabuf_fd, uint64_t dmabuf_off, int device, err *e);

#endif
