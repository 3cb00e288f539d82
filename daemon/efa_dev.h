/* EFA devices as libefa describes them (efadv_query_device): RDMA read and
 * write support, the largest RDMA operation, inline and send-queue limits.
 * libefa and libibverbs are loaded at run time (dlopen), only for the efa
 * provider; a host without them runs as before, knowing less. */
#ifndef MCEFAD_EFA_DEV_H
#define MCEFAD_EFA_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef struct efa_dev_attr {
    bool known; /* the rest is libefa's answer */
    bool rdma_read, rdma_write;
    uint32_t max_rdma_size; /* bytes in one RDMA read or write; 0 without RDMA */
    uint32_t max_sq_wr, max_rq_wr;
    uint16_t max_sq_sge, max_rq_sge;
    uint16_t inline_buf_size;
    uint32_t device_caps; /* EFADV_DEVICE_ATTR_CAPS_* bits */
} efa_dev_attr;

/* Queries the EFA device named device (rdmap79s0: the RDMA device name, as
 * in /sys/class/infiniband). Loads the libraries on first use. Returns 0,
 * or a negative errno with e saying why nothing is known (libefa missing,
 * no such device). Any thread, one at a time (called at start). */
int efa_dev_query(const char *device, efa_dev_attr *out, err *e);

/* Releases the libraries (at shutdown). */
void efa_dev_unload(void);

#endif
