/* GPU memory and the NICs (GPUDirect RDMA): whether mcefad asks providers
 * for FI_HMEM, and per NIC how GPU memory would be registered with it:
 * through the dmabuf fd the client sent (FI_MR_DMABUF), as CUDA memory at
 * the daemon's own mapping (iface FI_HMEM_CUDA + device), or not at all
 * (staging: the NIC is host-only and GPU bytes go through host buffers).
 * The rules, provider-specific ones included, live here only, as pure
 * functions over plain facts (nic.c gathers what libfabric, the kernel and
 * the CUDA driver said), so every combination is unit-tested without a GPU
 * or EFA (check_nic_hmem). Sources: ../shared/reference/efa-notes.md,
 * "GPU memory on EFA". Nothing here has run on GPU or EFA hardware. */
#ifndef MCEFAD_NIC_HMEM_H
#define MCEFAD_NIC_HMEM_H

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "err.h"

/* How GPU memory is registered with one NIC, best first. */
typedef enum gpu_reg {
    GPU_REG_STAGING, /* host-only NIC: GPU bytes go through host staging buffers */
    GPU_REG_IFACE,   /* fi_mr_regattr, iface FI_HMEM_CUDA + device, on the daemon's mapping */
    GPU_REG_DMABUF,  /* fi_mr_regattr with FI_MR_DMABUF: the client's dmabuf fd + offset */
} gpu_reg;

/* "staging", "iface", "dmabuf". */
const char *nic_hmem_reg_name(gpu_reg r);

/* ---- Before the first fi_getinfo ---------------------------------------- */

/* Whether to ask for FI_HMEM, and whether to set FI_HMEM=system. */
typedef struct nic_hmem_ask {
    bool ask;        /* FI_HMEM in the caps and FI_MR_HMEM in the mr_mode of the hints */
    bool set_system; /* set FI_HMEM=system before libfabric starts */
    char why[200];   /* why FI_HMEM is not asked ("" when it is) */
} nic_hmem_ask;

/* Decides from the gpudirect setting, whether this build has CUDA, the
 * libfabric headers' version and the FI_HMEM variable the user set (NULL:
 * unset). FI_HMEM=system exists so that no provider creates a CUDA context
 * on GPU 0 at start (Mooncake measured ~616 MiB): it stays the default
 * wherever no NIC could register GPU memory anyway (setting off, no CUDA,
 * headers below 1.18, which cannot turn off the provider's CUDA calls). A
 * user's FI_HMEM is never changed; FI_HMEM=system from the user means no
 * FI_HMEM is asked. */
void nic_hmem_decide_ask(bool gpudirect, bool cuda_build, uint32_t headers, const char *env_fi_hmem,
                         nic_hmem_ask *out);

/* ---- The plan of one NIC ------------------------------------------------ */

/* FI_OPT_CUDA_API_PERMITTED=false was not tried (cuda_api_rc). */
#define NIC_HMEM_NOT_TRIED 1

/* Everything the plan of one NIC depends on. */
typedef struct nic_hmem_facts {
    const char *prov;       /* fabric_attr->prov_name of the NIC */
    const char *not_asked;  /* why FI_HMEM was not asked (nic_hmem_ask.why); NULL: asked */
    uint64_t hmem_caps;     /* caps of the provider's entry for this NIC with FI_HMEM asked; 0: no such entry */
    const char *no_entry;   /* why there is no such entry (fi_getinfo's error), when hmem_caps is 0 */
    uint32_t api;           /* the API version fi_getinfo answered at */
    uint32_t lib;           /* fi_version(): the library loaded */
    uint32_t headers;       /* FABRIC_VERSION_HEADERS: struct fi_mr_dmabuf exists at 1.20 */
    const char *open_fail;  /* opening the NIC with FI_HMEM failed: what failed; NULL: it did not */
    int cuda_api_rc;        /* FI_OPT_CUDA_API_PERMITTED=false before fi_enable: 0 accepted, a negative
                               libfabric error, or NIC_HMEM_NOT_TRIED */
    int driver;             /* the CUDA driver in the daemon: 1 loaded with GPUs, 0 not (driver_why), -1 not asked */
    const char *driver_why;
    int dmabuf_attr;        /* CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED on every GPU: 1, 0 (not on some), -1 unknown */
    uint32_t kernel;        /* nic_hmem_kernel_version(); 0: unknown */
    int peermem;            /* nvidia_peermem or efa_nv_peermem loaded: 1, 0, -1 unknown */
} nic_hmem_facts;

/* What the plan decided for one NIC. */
typedef struct nic_hmem_plan {
    gpu_reg reg;
    bool iface_ok; /* iface registration works too (for regions that came without a dmabuf fd) */
    char why[ERR_TEXT_MAX];
} nic_hmem_plan;

/* Whether to open the NIC with its FI_HMEM entry: FI_HMEM asked and
 * granted at an API (>= 1.18) where FI_OPT_CUDA_API_PERMITTED exists.
 * Without that the plan is staging whatever else holds, and the NIC is
 * opened host-only. */
bool nic_hmem_open_with(const nic_hmem_facts *f);

/* Whether the plan needs the CUDA driver's facts (driver, dmabuf_attr):
 * everything libfabric had to say allowed GPUDirect. */
bool nic_hmem_needs_driver(const nic_hmem_facts *f);

/* The plan: staging unless FI_HMEM was asked and granted, the NIC opened
 * with it, FI_OPT_CUDA_API_PERMITTED=false was accepted (else the provider
 * may call cuPointerSetAttribute on memory the daemon never mapped, which
 * fails for VMM memory: libfabric#12853) and the CUDA driver works in the
 * daemon; then dmabuf where the headers and the API are >= 1.20, the kernel
 * >= 5.12 and every GPU reports dmabuf support, else iface where the
 * provider can register CUDA memory by address (efa before libfabric 2.5
 * only with nvidia-peermem / efa-nv-peermem loaded), else staging. why
 * says what was missing for each better choice. */
void nic_hmem_plan_for(const nic_hmem_facts *f, nic_hmem_plan *out);

/* The kernel's version from a uname release ("6.1.0-18-amd64") as
 * major << 16 | minor; 0 when it does not parse. */
uint32_t nic_hmem_kernel_version(const char *release);

/* How one GPU region is registered with a NIC of plan p: dmabuf where the
 * NIC takes it and the region has a dmabuf fd, else iface where the NIC
 * takes that, else staging (not registered with that NIC). */
gpu_reg nic_hmem_region_reg(const nic_hmem_plan *p, bool has_dmabuf);

/* ---- fi_mr_regattr's arguments ------------------------------------------ */

/* Memory to register with a NIC: host memory ({addr, len}, the rest
 * zero), or GPU memory at the daemon's mapping addr, of CUDA device
 * `device` (the daemon's ordinal), registered as reg says. */
typedef struct nic_mem {
    void *addr;
    size_t len;
    gpu_reg reg;         /* GPU_REG_STAGING: host memory */
    int device;          /* GPU_REG_IFACE, GPU_REG_DMABUF */
    int dmabuf_fd;       /* GPU_REG_DMABUF: the client's dmabuf of the allocation */
    uint64_t dmabuf_off; /* where addr lies in it */
} nic_mem;

/* The arguments of one fi_mr_regattr call; attr points into the struct. */
typedef struct nic_hmem_mr_args {
    struct fi_mr_attr attr;
    uint64_t flags;
    struct iovec iov;
#if FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION) >= FI_VERSION(1, 20)
    struct fi_mr_dmabuf dmabuf;
#endif
} nic_hmem_mr_args;

/* Fills a for m with the access bits and requested key: host memory as
 * iface FI_HMEM_SYSTEM; iface registration as FI_HMEM_CUDA + device;
 * dmabuf with FI_MR_DMABUF, the fd and offset and a base address that puts
 * the region's first byte at addr (so its RMA address is the same whichever
 * way it was registered). -EOPNOTSUPP with e saying why for dmabuf with
 * headers below 1.20, -EINVAL for a GPU region without its fd or device. */
int nic_hmem_mr_args_fill(const nic_mem *m, uint64_t access, uint64_t key, nic_hmem_mr_args *a, err *e);

#endif
