/* GPU memory and the NICs: the rules (nic_hmem.h). Facts and their
 * sources: ../shared/reference/efa-notes.md, "GPU memory on EFA". */
#include "nic_hmem.h"

#include <errno.h>
#include <stdarg.h>
#include <rdma/fi_errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efa.h"

#define V118 FI_VERSION(1, 18)
#define V120 FI_VERSION(1, 20)
#define KERNEL_DMABUF ((5u << 16) | 12u) /* ib_umem_dmabuf: RDMA registration of a dmabuf */
#define EFA_LIB_VA_DMABUF FI_VERSION(2, 5) /* efa turns a CUDA address into a dmabuf itself */

const char *nic_hmem_reg_name(gpu_reg r)
{
    switch (r) {
    case GPU_REG_DMABUF:
        return "dmabuf";
    case GPU_REG_IFACE:
        return "iface";
    case GPU_REG_STAGING:
        break;
    }
    return "staging";
}

void nic_hmem_decide_ask(bool gpudirect, bool cuda_build, uint32_t headers, const char *env_fi_hmem,
                         nic_hmem_ask *out)
{
    memset(out, 0, sizeof(*out));
    const char *why = NULL;
    char buf[sizeof(out->why)];
    if (!gpudirect)
        why = "gpudirect=false";
    else if (!cuda_build)
        why = "this mcefad was built without CUDA";
    else if (env_fi_hmem && !strcmp(env_fi_hmem, "system"))
        why = "FI_HMEM=system is set in the environment";
    else if (!env_fi_hmem && headers < V118) {
        /* A user's FI_HMEM=cuda says the provider may use CUDA anyway;
         * then asking costs nothing and shows what the provider offers. */
        snprintf(buf, sizeof(buf),
                 "built against libfabric %u.%u headers, which cannot set FI_OPT_CUDA_API_PERMITTED (1.18): "
                 "rebuild against newer ones (/opt/amazon/efa on AWS)",
                 FI_MAJOR(headers), FI_MINOR(headers));
        why = buf;
    }
    out->ask = why == NULL;
    out->set_system = !env_fi_hmem && !out->ask;
    snprintf(out->why, sizeof(out->why), "%s", why ? why : "");
}

/* ---- The plan ------------------------------------------------------------ */

/* The first reason libfabric gives for staging, or NULL. */
static const char *libfabric_gate(const nic_hmem_facts *f, char *buf, size_t len)
{
    if (f->not_asked) {
        snprintf(buf, len, "FI_HMEM not asked (%s)", f->not_asked);
    } else if (!(f->hmem_caps & FI_HMEM)) {
        snprintf(buf, len, "provider %s offers no FI_HMEM entry for this NIC%s%s%s", f->prov,
                 f->no_entry ? " (fi_getinfo: " : "", f->no_entry ? f->no_entry : "", f->no_entry ? ")" : "");
    } else if (f->api < V118) {
        snprintf(buf, len,
                 "API %u.%u is below 1.18, where FI_OPT_CUDA_API_PERMITTED cannot be set (the provider could "
                 "call CUDA on memory the daemon never mapped)",
                 FI_MAJOR(f->api), FI_MINOR(f->api));
    } else {
        return NULL;
    }
    return buf;
}

bool nic_hmem_open_with(const nic_hmem_facts *f)
{
    char buf[ERR_TEXT_MAX];
    return libfabric_gate(f, buf, sizeof(buf)) == NULL;
}

/* Everything that stops GPUDirect before the driver is asked, or NULL. */
static const char *open_gate(const nic_hmem_facts *f, char *buf, size_t len)
{
    const char *g = libfabric_gate(f, buf, len);
    if (g)
        return g;
    if (f->open_fail)
        snprintf(buf, len, "opening the NIC with FI_HMEM failed (%s): opened host-only", f->open_fail);
    else if (f->cuda_api_rc == NIC_HMEM_NOT_TRIED)
        snprintf(buf, len, "FI_OPT_CUDA_API_PERMITTED=false was not set");
    else if (f->cuda_api_rc != 0)
        snprintf(buf, len,
                 "FI_OPT_CUDA_API_PERMITTED=false refused (%s): the provider would call CUDA on GPU memory "
                 "(cuPointerSetAttribute fails for VMM memory, libfabric#12853), so the NIC is host-only",
                 fi_strerror(-f->cuda_api_rc));
    else
        return NULL;
    return buf;
}

bool nic_hmem_needs_driver(const nic_hmem_facts *f)
{
    char buf[ERR_TEXT_MAX];
    return open_gate(f, buf, sizeof(buf)) == NULL;
}

/* Appends ", " and the text to the list in buf. */
static void add_reason(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_reason(char *buf, size_t len, const char *fmt, ...)
{
    size_t l = strlen(buf);
    if (l + 3 >= len)
        return;
    if (l) {
        memcpy(buf + l, ", ", 3);
        l += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + l, len - l, fmt, ap);
    va_end(ap);
}

/* Why dmabuf cannot be used ("" when it can). */
static void dmabuf_missing(const nic_hmem_facts *f, char *buf, size_t len)
{
    buf[0] = 0;
    if (f->headers < V120)
        add_reason(buf, len, "built against libfabric %u.%u headers (struct fi_mr_dmabuf needs 1.20)",
                   FI_MAJOR(f->headers), FI_MINOR(f->headers));
    if (f->api < V120)
        add_reason(buf, len, "API %u.%u below 1.20 (FI_MR_DMABUF)", FI_MAJOR(f->api), FI_MINOR(f->api));
    if (!f->kernel)
        add_reason(buf, len, "kernel version unknown");
    else if (f->kernel < KERNEL_DMABUF)
        add_reason(buf, len, "kernel %u.%u below 5.12 (no dmabuf registration)", f->kernel >> 16,
                   f->kernel & 0xffff);
    if (f->dmabuf_attr != 1)
        add_reason(buf, len, "%s",
                   f->dmabuf_attr == 0 ? "the CUDA driver does not report dmabuf support on every GPU"
                                       : "the CUDA driver's dmabuf support is unknown");
}

/* Whether the provider registers CUDA memory given by address. The efa
 * provider pins it through nvidia-peermem / efa-nv-peermem before
 * libfabric 2.5, which finds the dmabuf of an address itself. */
static bool iface_possible(const nic_hmem_facts *f)
{
    if (efa_is_provider(f->prov))
        return f->lib >= EFA_LIB_VA_DMABUF || f->peermem == 1;
    return true;
}

void nic_hmem_plan_for(const nic_hmem_facts *f, nic_hmem_plan *out)
{
    memset(out, 0, sizeof(*out));
    out->reg = GPU_REG_STAGING;
    char gate[ERR_TEXT_MAX];
    if (open_gate(f, gate, sizeof(gate))) {
        snprintf(out->why, sizeof(out->why), "%s", gate);
        return;
    }
    if (f->driver != 1) {
        snprintf(out->why, sizeof(out->why), "the CUDA driver cannot be used by mcefad: %s",
                 f->driver_why && *f->driver_why ? f->driver_why : "not loaded");
        return;
    }
    char missing[ERR_TEXT_MAX - 96];
    dmabuf_missing(f, missing, sizeof(missing));
    out->iface_ok = iface_possible(f);
    if (!*missing) {
        out->reg = GPU_REG_DMABUF;
        snprintf(out->why, sizeof(out->why), "FI_MR_DMABUF with the client's dmabuf fd%s",
                 out->iface_ok ? "; iface CUDA for regions without one" : "; regions without one stay host-staged");
    } else if (out->iface_ok) {
        out->reg = GPU_REG_IFACE;
        snprintf(out->why, sizeof(out->why), "iface CUDA on the daemon's mapping; no dmabuf: %s", missing);
    } else {
        snprintf(out->why, sizeof(out->why),
                 "no dmabuf (%s), and the efa provider of libfabric before 2.5 registers CUDA memory by address "
                 "only with nvidia-peermem or efa-nv-peermem loaded (neither is)",
                 missing);
    }
}

uint32_t nic_hmem_kernel_version(const char *release)
{
    char *end;
    unsigned long major = strtoul(release, &end, 10);
    if (end == release || *end != '.' || major == 0 || major > 0xffff)
        return 0;
    const char *m = end + 1;
    unsigned long minor = strtoul(m, &end, 10);
    if (end == m || minor > 0xffff)
        return 0;
    return (uint32_t)(major << 16 | minor);
}

gpu_reg nic_hmem_region_reg(const nic_hmem_plan *p, bool has_dmabuf)
{
    if (p->reg == GPU_REG_DMABUF && has_dmabuf)
        return GPU_REG_DMABUF;
    if (p->reg != GPU_REG_STAGING && p->iface_ok)
        return GPU_REG_IFACE;
    return GPU_REG_STAGING;
}

/* ---- fi_mr_regattr's arguments ------------------------------------------- */

int nic_hmem_mr_args_fill(const nic_mem *m, uint64_t access, uint64_t key, nic_hmem_mr_args *a, err *e)
{
    memset(a, 0, sizeof(*a));
    a->attr.access = access;
    a->attr.requested_key = key;
    a->attr.iface = FI_HMEM_SYSTEM;
    a->iov = (struct iovec){.iov_base = m->addr, .iov_len = m->len};
    a->attr.mr_iov = &a->iov;
    a->attr.iov_count = 1;
    if (m->reg == GPU_REG_STAGING)
        return 0;
    if (m->device < 0)
        return err_set(e, -EINVAL, "registering GPU memory at %p with a NIC: no CUDA device given", m->addr);
    a->attr.iface = FI_HMEM_CUDA;
    a->attr.device.cuda = m->device;
    if (m->reg == GPU_REG_IFACE)
        return 0;
    if (m->dmabuf_fd < 0)
        return err_set(e, -EINVAL, "registering GPU memory at %p with a NIC by dmabuf: no dmabuf fd given",
                       m->addr);
#if FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION) >= FI_VERSION(1, 20)
    /* The provider registers [base_addr + offset, + len) at that address:
     * base_addr is where the dmabuf's first byte lies in the daemon. */
    a->dmabuf = (struct fi_mr_dmabuf){.fd = m->dmabuf_fd,
                                      .offset = m->dmabuf_off,
                                      .len = m->len,
                                      .base_addr = (void *)((uintptr_t)m->addr - m->dmabuf_off)};
    a->attr.dmabuf = &a->dmabuf;
    a->flags = FI_MR_DMABUF;
    return 0;
#else
    return err_set(e, -EOPNOTSUPP,
                   "registering GPU memory by dmabuf needs libfabric 1.20 headers; this mcefad was built against "
                   "%u.%u: rebuild against newer ones (/opt/amazon/efa on AWS)",
                   FI_MAJOR_VERSION, FI_MINOR_VERSION);
#endif
}
