/* Test-only entry points of the CUDA driver stand-in (standin.c), beyond
 * the driver API.  They exist so test tooling can emulate what real
 * hardware does with device memory (tests/fi_interpose.c: a NIC that
 * reads and writes GPU memory, GPUDirect RDMA); no real driver has them,
 * so nothing outside tests/ may call them.  Declared without cuda.h, so
 * code built without CUDA (the interposer) can look them up with dlsym;
 * unsigned long long is CUdeviceptr on 64-bit Linux. */
#ifndef MCEFA_STANDIN_TEST_H
#define MCEFA_STANDIN_TEST_H

#include <stddef.h>

#define MCEFA_STANDIN_HOST_ALIAS "mcefa_standin_host_alias"

/* The host view of device range [p, p + len): *host is where byte p lies
 * in the stand-in's MAP_SHARED alias of the backing memfd, read- and
 * writable by the CPU.  The range must lie inside one live mapping (one
 * cuMemAlloc, one opened IPC handle, or one cuMemMap'd VMM range, not a
 * run of them) that is not PROT_NONE.  Returns 0 (CUDA_SUCCESS), or the
 * CUDA error code: CUDA_ERROR_NOT_INITIALIZED (201) before cuInit,
 * CUDA_ERROR_INVALID_VALUE (1) for any other range.
 *
 * The alias is borrowed: it is unmapped when the mapping goes (cuMemFree,
 * cuMemUnmap, cuIpcCloseMemHandle).  A user that must outlive that, as a
 * memory registration outlives nothing but must not corrupt memory if the
 * caller frees too early, maps its own view of the same pages (mremap
 * with old_size 0) right away. */
int mcefa_standin_host_alias(unsigned long long p, size_t len, void **host);
typedef int (*mcefa_standin_host_alias_fn)(unsigned long long p, size_t len, void **host);

#endif
