/* The efa provider's requirements (efa.h). Facts and their sources:
 * ../shared/reference/efa-notes.md. */
#include "efa.h"

#include <errno.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_ext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fabric_version.h"

bool efa_is_provider(const char *prov)
{
    return prov && (!strcmp(prov, "efa") || !strncmp(prov, "efa;", 4));
}

int efa_fill_hints(struct fi_info *hints, const char *prov, bool delivery_complete, bool hmem)
{
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_REMOTE_COMM;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    /* Every mr_mode bit nic.c knows how to honour; the provider keeps
     * those it needs. */
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    if (hmem) {
        /* Every GPU buffer is registered before use, so FI_MR_HMEM (the
         * provider requires that) is one more bit nic.c honours. */
        hints->caps |= FI_HMEM;
        hints->domain_attr->mr_mode |= FI_MR_HMEM;
    }
    hints->domain_attr->threading = FI_THREAD_SAFE;
    hints->tx_attr->op_flags = delivery_complete ? FI_DELIVERY_COMPLETE : 0;
    free(hints->fabric_attr->prov_name);
    hints->fabric_attr->prov_name = strdup(prov);
    return hints->fabric_attr->prov_name ? 0 : -ENOMEM;
}

/* ---- Fabric choice ------------------------------------------------------ */

static bool prov_matches(const char *prov_name, const char *prov)
{
    return !strcmp(prov_name, prov) || strstr(prov_name, prov) != NULL;
}

/* The entry of domain v[first].domain to use, or -1. */
static long pick_in_domain(const efa_offer *v, size_t n, size_t first, const char *prov, const char *setting)
{
    long direct = -1, efa = -1, named = -1;
    for (size_t i = first; i < n; i++) {
        if (!prov_matches(v[i].prov, prov) || strcmp(v[i].domain, v[first].domain) != 0)
            continue;
        if (*setting) {
            if (named < 0 && !strcmp(v[i].fabric, setting))
                named = (long)i;
        } else if (direct < 0 && !strcmp(v[i].fabric, EFA_DIRECT_FABRIC) && v[i].device_rdma != 0) {
            direct = (long)i;
        } else if (efa < 0 && !strcmp(v[i].fabric, EFA_FABRIC)) {
            efa = (long)i;
        }
    }
    if (*setting)
        return named;
    if (efa_is_provider(prov))
        return direct >= 0 ? direct : efa >= 0 ? efa : (long)first;
    return (long)first;
}

void efa_fabrics_offered(const efa_offer *v, size_t n, const char *prov, const char *domain, char *buf, size_t len)
{
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!prov_matches(v[i].prov, prov) || (domain && strcmp(v[i].domain, domain) != 0))
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = prov_matches(v[j].prov, prov) && (!domain || !strcmp(v[j].domain, domain)) &&
                   !strcmp(v[j].fabric, v[i].fabric);
        size_t l = strlen(buf);
        if (!seen)
            snprintf(buf + l, len - l, "%s%s", l ? ", " : "", v[i].fabric);
    }
}

int efa_choose_fabric(const efa_offer *v, size_t n, const char *prov, const char *setting, size_t *chosen, err *e)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!prov_matches(v[i].prov, prov))
            continue;
        bool seen_domain = false;
        for (size_t j = 0; j < i && !seen_domain; j++)
            seen_domain = prov_matches(v[j].prov, prov) && !strcmp(v[j].domain, v[i].domain);
        if (seen_domain)
            continue; /* one entry per domain: this domain was decided at its first entry */
        long pick = pick_in_domain(v, n, i, prov, setting);
        if (pick >= 0)
            chosen[k++] = (size_t)pick;
    }
    char list[256];
    efa_fabrics_offered(v, n, prov, NULL, list, sizeof(list));
    if (k == 0 && *setting && *list)
        return err_set(e, -ENOENT,
                       "fabric '%s' is not offered by provider %s (it offers: %s); set fabric to one of them, or "
                       "empty for the default",
                       setting, prov, list);
    return (int)k;
}

/* ---- Endpoint options --------------------------------------------------- */

size_t efa_opt_plan(uint32_t api, const char *prov, const char *fabric, bool hmem, efa_opt_step *out)
{
    size_t n = 0;
    bool efa = efa_is_provider(prov), direct = efa && fabric && !strcmp(fabric, EFA_DIRECT_FABRIC);
    /* efa-direct has no shm path: the option is a no-op there. */
    if (efa && !direct && api >= FI_VERSION(1, 21))
        out[n++] = (efa_opt_step){EFA_OPT_SHM_OFF, true, "FI_OPT_SHARED_MEMORY_PERMITTED"};
    /* Any provider with FI_HMEM: one that cannot stop calling CUDA must not
     * see GPU memory (nic_hmem.h). */
    if (hmem && api >= FI_VERSION(1, 18))
        out[n++] = (efa_opt_step){EFA_OPT_CUDA_API_OFF, true, "FI_OPT_CUDA_API_PERMITTED"};
    if (efa && api >= FI_VERSION(1, 18)) {
        out[n++] = (efa_opt_step){EFA_OPT_EMULATED_READ, false, "FI_OPT_EFA_EMULATED_READ"};
        out[n++] = (efa_opt_step){EFA_OPT_EMULATED_WRITE, false, "FI_OPT_EFA_EMULATED_WRITE"};
    }
    /* Any provider: one that does not know it says -FI_ENOPROTOOPT. */
    if (api >= FI_VERSION(1, 22))
        out[n++] = (efa_opt_step){EFA_OPT_MAX_RMA_SIZE, false, "FI_OPT_MAX_RMA_SIZE"};
    return n;
}

int efa_opt_run(struct fid_ep *ep, const efa_opt_step *s, efa_ep_facts *f)
{
    /* Options these headers do not define are never planned (the API
     * version asked is at most the headers'); -FI_ENOSYS guards that. */
    int rc = -FI_ENOSYS;
    switch (s->opt) {
    case EFA_OPT_SHM_OFF: {
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 21)
        bool permitted = false;
        rc = fi_setopt(&ep->fid, FI_OPT_ENDPOINT, FI_OPT_SHARED_MEMORY_PERMITTED, &permitted, sizeof(permitted));
        f->shm_off = rc == 0;
#endif
        break;
    }
    case EFA_OPT_CUDA_API_OFF: {
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 18)
        bool permitted = false;
        rc = fi_setopt(&ep->fid, FI_OPT_ENDPOINT, FI_OPT_CUDA_API_PERMITTED, &permitted, sizeof(permitted));
        f->cuda_api_rc = rc;
#endif
        break;
    }
    case EFA_OPT_EMULATED_READ:
    case EFA_OPT_EMULATED_WRITE: {
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 18)
        bool read = s->opt == EFA_OPT_EMULATED_READ, emulated = false;
        size_t len = sizeof(emulated);
        rc = fi_getopt(&ep->fid, FI_OPT_ENDPOINT, read ? FI_OPT_EFA_EMULATED_READ : FI_OPT_EFA_EMULATED_WRITE,
                       &emulated, &len);
        if (rc == 0)
            *(read ? &f->emulated_read : &f->emulated_write) = emulated;
#endif
        break;
    }
    case EFA_OPT_MAX_RMA_SIZE: {
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 22)
        size_t v = 0, len = sizeof(v);
        rc = fi_getopt(&ep->fid, FI_OPT_ENDPOINT, FI_OPT_MAX_RMA_SIZE, &v, &len);
        if (rc == 0 && v)
            f->max_rma = v;
#endif
        break;
    }
    }
    (void)ep;
    (void)f;
    return rc;
}

/* ---- Emulated RMA ------------------------------------------------------- */

/* Whether the efa fabric uses device RDMA at all (the provider's
 * use_device_rdma): 1, 0, -1 unknown. */
static int uses_device_rdma(const efa_rma_facts *f)
{
    if (f->env_device_rdma == 0 || f->dev_read == 0)
        return 0;
    if (f->env_device_rdma == 1)
        return 1; /* the provider aborts at start where the device cannot */
    if (f->api >= FI_VERSION(1, 18))
        return f->dev_read == 1 ? 1 : -1;
    /* Below 1.18 device RDMA is off by default on the first generations
     * (0xefa0/0xefa1: p4d, p5, p5e), which libefa cannot tell apart. */
    return -1;
}

void efa_rma_resolve(const char *prov, const char *fabric, const efa_rma_facts *f, int *read, int *write)
{
    *read = *write = -1;
    if (!efa_is_provider(prov))
        return;
    if (fabric && !strcmp(fabric, EFA_DIRECT_FABRIC)) {
        *read = *write = 0; /* efa-direct never emulates: it is offered only with device RDMA */
        return;
    }
    int use = uses_device_rdma(f);
    *read = f->emulated_read >= 0 ? f->emulated_read : use < 0 ? -1 : !use;
    if (f->emulated_write >= 0)
        *write = f->emulated_write;
    else if (use == 0 || f->dev_write == 0)
        *write = 1;
    else if (use == 1 && f->dev_write == 1)
        *write = 0;
}

const char *efa_rma_emulated_name(const char *prov, int read, int write)
{
    if (!efa_is_provider(prov))
        return "n/a";
    if (read == 1 || write == 1)
        return read == 1 && write == 1 ? "read+write" : read == 1 ? "read" : "write";
    return read == 0 && write == 0 ? "no" : "unknown";
}

int efa_rma_check(const char *nic, const char *prov, int read, int write, bool require, err *e)
{
    if (!efa_is_provider(prov) || (read == 0 && write == 0))
        return 0;
    const char *what = efa_rma_emulated_name(prov, read, write);
    char why[240];
    if (read == 1 || write == 1)
        snprintf(why, sizeof(why),
                 "RDMA %s is emulated with send/receive by the efa provider (the device lacks it or device RDMA is "
                 "off): such transfers need the target daemon's progress and run slower",
                 !strcmp(what, "read+write") ? "read and write" : what);
    else
        snprintf(why, sizeof(why), "cannot tell whether RMA runs on the device (libfabric API below 1.18 does not "
                                   "say, and libefa could not tell)");
    if (!require) {
        err_set(e, 0, "NIC %s: %s", nic, why);
        return 1;
    }
    return err_set(e, -EOPNOTSUPP,
                   "NIC %s: %s; require_device_rdma is set, so mcefad does not start: use EFA devices with RDMA read "
                   "and write (p5 and later), libfabric >= 1.18 (build against /opt/amazon/efa) and libefa, or set "
                   "require_device_rdma=false",
                   nic, why);
}
