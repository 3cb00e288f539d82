/* NIC contexts: opening each NIC the settings allow, its warmup word, and
 * the one memory-registration path. */
#include "nic.h"

#include <errno.h>
#include <inttypes.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"

#include "log.h"

static nic *nics[NIC_MAX];
static unsigned nnics;

unsigned nic_count(void)
{
    return nnics;
}

nic *nic_get(unsigned i)
{
    return i < nnics ? nics[i] : NULL;
}

/* ---- Selection ---------------------------------------------------------- */

static int read_numa(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

static int nic_numa_node(const struct fi_info *fi)
{
    char p[256];
    if (fi->nic && fi->nic->bus_attr && fi->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *pci = &fi->nic->bus_attr->attr.pci;
        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%04x:%02x:%02x.%x/numa_node", pci->domain_id, pci->bus_id,
                 pci->device_id, pci->function_id);
        return read_numa(p);
    }
    snprintf(p, sizeof(p), "/sys/class/net/%s/device/numa_node", fi->domain_attr->name);
    return read_numa(p);
}

const char *nic_link_state(const nic *n, char *buf, size_t len)
{
    char p[256], line[64] = "";
    /* RDMA devices (EFA): "4: ACTIVE"; network interfaces (tcp): "up". */
    snprintf(p, sizeof(p), "/sys/class/infiniband/%s/ports/1/state", n->name);
    FILE *f = fopen(p, "r");
    if (!f) {
        snprintf(p, sizeof(p), "/sys/class/net/%s/operstate", n->name);
        f = fopen(p, "r");
    }
    if (f) {
        if (!fgets(line, sizeof(line), f))
            line[0] = 0;
        fclose(f);
    }
    line[strcspn(line, "\n")] = 0;
    const char *v = strchr(line, ':') ? strchr(line, ':') + 1 : line;
    while (*v == ' ')
        v++;
    snprintf(buf, len, "%s", *v ? v : "unknown");
    return buf;
}

/* ---- Opening ------------------------------------------------------------ */

#define CHECK(call, what)                                                                              \
    do {                                                                                               \
        int rc_ = (call);                                                                              \
        if (rc_) {                                                                                     \
            log_error("NIC %s: %s failed: %s", n->name, what, fi_strerror(-rc_));                      \
            return rc_ < 0 ? rc_ : -rc_;                                                               \
        }                                                                                              \
    } while (0)

static int nic_open(nic *n, struct fi_info *fi, uint64_t max_wr)
{
    n->info = fi_dupinfo(fi);
    snprintf(n->name, sizeof(n->name), "%s", fi->domain_attr->name);
    snprintf(n->fabric, sizeof(n->fabric), "%s", fi->fabric_attr->name);
    snprintf(n->provider, sizeof(n->provider), "%s", fi->fabric_attr->prov_name);
    n->numa_node = nic_numa_node(fi);
    n->mr_mode = fi->domain_attr->mr_mode;
    n->delivery_complete = (fi->tx_attr->op_flags & FI_DELIVERY_COMPLETE) != 0;
    n->max_msg = fi->ep_attr->max_msg_size ? fi->ep_attr->max_msg_size : SIZE_MAX;
    n->max_wr = max_wr;
    if (fi->tx_attr->size && fi->tx_attr->size < n->max_wr)
        n->max_wr = fi->tx_attr->size;
    if (n->max_wr == 0)
        n->max_wr = 1;
    /* Keys we choose are random within the provider's key size: nothing
     * sent to anyone lets a peer derive the key of memory it was not given,
     * and a stale key from an earlier run matches nothing. */
    n->key_mask = fi->domain_attr->mr_key_size && fi->domain_attr->mr_key_size < 8
                      ? (1ull << (8 * fi->domain_attr->mr_key_size)) - 1
                      : UINT64_MAX;

    CHECK(fi_fabric(fi->fabric_attr, &n->fabric_fid, NULL), "fi_fabric");
    CHECK(fi_domain(n->fabric_fid, n->info, &n->domain, NULL), "fi_domain");
    struct fi_av_attr av_attr = {.type = FI_AV_TABLE};
    CHECK(fi_av_open(n->domain, &av_attr, &n->av, NULL), "fi_av_open");
    struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_FD,
                                 .size = fi->tx_attr->size ? fi->tx_attr->size * 2 : 4096};
    if (fi_cq_open(n->domain, &cq_attr, &n->cq, NULL) != 0) {
        /* Not every provider can hand out a wait fd; then we poll. */
        cq_attr.wait_obj = FI_WAIT_NONE;
        CHECK(fi_cq_open(n->domain, &cq_attr, &n->cq, NULL), "fi_cq_open");
    }
    if (cq_attr.wait_obj == FI_WAIT_NONE || fi_control(&n->cq->fid, FI_GETWAIT, &n->cq_fd) != 0)
        n->cq_fd = -1;
    CHECK(fi_endpoint(n->domain, n->info, &n->ep, NULL), "fi_endpoint");
    CHECK(fi_ep_bind(n->ep, &n->av->fid, 0), "fi_ep_bind(av)");
    CHECK(fi_ep_bind(n->ep, &n->cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
    CHECK(fi_enable(n->ep), "fi_enable");
    n->addrlen = sizeof(n->addr);
    CHECK(fi_getname(&n->ep->fid, n->addr, &n->addrlen), "fi_getname");

    err e;
    nic_mem wm = {.addr = &n->warmup_word, .len = sizeof(n->warmup_word)};
    if (nic_mr_reg(n, &wm, FI_REMOTE_READ | FI_READ, &n->warmup, &e) < 0) {
        log_error("%s", e.text);
        return e.code;
    }
    log_info("NIC %s: provider %s, fabric %s, NUMA node %d, max %" PRIu64 " work requests, mr_mode 0x%x%s", n->name,
             n->provider, n->fabric, n->numa_node, n->max_wr, n->mr_mode,
             n->delivery_complete ? ", delivery-complete writes" : "");
    return 0;
}

static void nic_close(nic *n)
{
    nic_mr_close(&n->warmup);
    if (n->ep)
        fi_close(&n->ep->fid);
    if (n->cq)
        fi_close(&n->cq->fid);
    if (n->av)
        fi_close(&n->av->fid);
    if (n->domain)
        fi_close(&n->domain->fid);
    if (n->fabric_fid)
        fi_close(&n->fabric_fid->fid);
    if (n->info)
        fi_freeinfo(n->info);
    free(n);
}

/* The API version asked of fi_getinfo: the newest these headers know
 * first, stepping down while the library answers -FI_ENOSYS (older than
 * the headers). Below 1.18 the efa provider turns device RDMA off on p4d,
 * p5 and p5e (every RMA emulated), so 1.9 is only a last resort. */
static const uint32_t api_versions[] = {FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), FI_VERSION(1, 18),
                                        FI_VERSION(1, 9)};
static uint32_t api_version;

static struct fi_info *get_info(const char *prov, bool delivery, int *rc)
{
    struct fi_info *hints = fi_allocinfo(), *list = NULL;
    hints->ep_attr->type = FI_EP_RDM;
    /* Remote only: same-host traffic never goes through a NIC, and with
     * local communication efa would open an shm sub-provider per NIC
     * (no CQ wait fd, extra progress work). */
    hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_REMOTE_COMM;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    /* Every mr_mode bit we know how to honour; the provider keeps those it needs. */
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    hints->domain_attr->threading = FI_THREAD_SAFE;
    hints->fabric_attr->prov_name = strdup(prov);
    if (delivery)
        hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
    *rc = -FI_ENOSYS;
    for (size_t i = 0; i < sizeof(api_versions) / sizeof(api_versions[0]) && *rc == -FI_ENOSYS; i++) {
        if (i && api_versions[i] >= api_versions[i - 1])
            continue; /* the headers are that old already */
        *rc = fi_getinfo(api_versions[i], NULL, NULL, 0, hints, &list);
        if (*rc == 0)
            api_version = api_versions[i];
    }
    fi_freeinfo(hints);
    return *rc ? NULL : list;
}

/* ---- Registration ------------------------------------------------------- */

static uint64_t random_key(const nic *n)
{
    uint64_t k = 0;
    while (k == 0) {
        if (getrandom(&k, sizeof(k), 0) != sizeof(k)) {
            /* getrandom only fails before the kernel's pool is seeded or
             * on a signal; the clock is a poor but unique stand-in. */
            k = clock_now_us() * 0x9e3779b97f4a7c15ull;
        }
        k &= n->key_mask;
    }
    return k;
}

int nic_mr_reg(nic *n, const nic_mem *m, uint64_t access, nic_mr *out, err *e)
{
    struct fid_mr *mr = NULL;
    int rc;
    /* A random key can collide with one in use (-FI_ENOKEY): draw again. */
    for (int tries = 0;; tries++) {
        uint64_t key = (n->mr_mode & FI_MR_PROV_KEY) ? 0 : random_key(n);
        rc = fi_mr_reg(n->domain, m->addr, m->len, access, 0, key, 0, &mr, NULL);
        if (rc != -FI_ENOKEY || (n->mr_mode & FI_MR_PROV_KEY) || tries >= 8)
            break;
    }
    if (!rc && (n->mr_mode & FI_MR_ENDPOINT)) {
        rc = fi_mr_bind(mr, &n->ep->fid, 0);
        if (!rc)
            rc = fi_mr_enable(mr);
    }
    if (rc) {
        if (mr)
            fi_close(&mr->fid);
        rc = rc < 0 ? rc : -rc;
        return err_set(e, rc, "registering with NIC %s failed: %s (is the memlock limit high enough?)", n->name,
                       fi_strerror(-rc));
    }
    out->mr = mr;
    out->key = fi_mr_key(mr);
    out->desc = fi_mr_desc(mr);
    out->rma_base = (n->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)m->addr : 0;
    return 0;
}

void nic_mr_close(nic_mr *m)
{
    if (m->mr)
        fi_close(&((struct fid_mr *)m->mr)->fid);
    m->mr = NULL;
}

static void release_mrs(region *r)
{
    for (unsigned i = 0; i < r->nmrs; i++)
        nic_mr_close(&r->mrs[i]);
    free(r->mrs);
    r->mrs = NULL;
    r->nmrs = 0;
}

int nic_register_region(region *r, err *e)
{
    if (!nnics)
        return 0;
    r->mrs = calloc(nnics, sizeof(*r->mrs));
    if (!r->mrs)
        return err_set(e, -ENOMEM, "out of memory registering a region with the NICs");
    r->nmrs = nnics;
    r->unregister = release_mrs;
    nic_mem m = {.addr = r->ptr, .len = r->length};
    for (unsigned i = 0; i < nnics; i++) {
        int rc = nic_mr_reg(nics[i], &m, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, &r->mrs[i], e);
        if (rc < 0) {
            release_mrs(r);
            r->unregister = NULL;
            return rc;
        }
    }
    return 0;
}

/* ---- Start and stop ----------------------------------------------------- */

int nic_init(const mcefad_config *cfg)
{
    const char *prov = cfg->provider;
    if (!*prov || !strcmp(prov, "none")) {
        log_info("provider 'none': serving same-host transfers only");
        return 0;
    }
    int rc;
    struct fi_info *list = get_info(prov, true, &rc);
    if (!list) {
        list = get_info(prov, false, &rc);
        if (list)
            log_warn("provider %s cannot report delivery completion: a write completes when the NIC sent it, "
                     "not when it landed",
                     prov);
    }
    if (!list) {
        log_warn("provider %s lists no NIC with RDM endpoints and RMA (%s): serving same-host transfers only. "
                 "On AWS check the EFA driver and libfabric; elsewhere set provider=tcp;ofi_rxm",
                 prov, fi_strerror(-rc));
        return 0;
    }
    for (struct fi_info *fi = list; fi && nnics < NIC_MAX; fi = fi->next) {
        const char *name = fi->domain_attr->name;
        /* fi_getinfo does not filter by name for us; one entry per domain. */
        if (strcmp(fi->fabric_attr->prov_name, prov) != 0 && !strstr(fi->fabric_attr->prov_name, prov))
            continue;
        bool dup = false;
        for (unsigned i = 0; i < nnics; i++)
            dup |= strcmp(nics[i]->name, name) == 0;
        if (dup)
            continue;
        if (*cfg->nics ? !config_list_contains(cfg->nics, name) : strcmp(name, "lo") == 0)
            continue; /* loopback only when named: a peer's "lo" would be ourselves */
        if (config_list_contains(cfg->nics_exclude, name))
            continue;
        nic *n = calloc(1, sizeof(*n));
        if (!n) {
            fi_freeinfo(list);
            return -ENOMEM;
        }
        n->idx = nnics;
        if ((rc = nic_open(n, fi, cfg->max_wr)) < 0) {
            nic_close(n);
            fi_freeinfo(list);
            return rc;
        }
        nics[nnics++] = n;
    }
    fi_freeinfo(list);
    if (*cfg->nics)
        for (const char *p = cfg->nics; *p;) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            bool found = false;
            for (unsigned i = 0; i < nnics; i++)
                found |= strlen(nics[i]->name) == l && !strncmp(nics[i]->name, p, l);
            if (!found)
                log_warn("NIC '%.*s' from the nics setting was not found with provider %s", (int)l, p, prov);
            if (!e)
                break;
            p = e + 1;
        }
    if (!nnics) {
        log_warn("provider %s: no NIC left after the nics/nics_exclude settings: serving same-host only", prov);
        return 0;
    }
    uint32_t lib = fi_version();
    log_info("%u NIC(s) with provider %s; libfabric %u.%u, API %u.%u", nnics, prov, FI_MAJOR(lib), FI_MINOR(lib),
             FI_MAJOR(api_version), FI_MINOR(api_version));
    return 0;
}

void nic_shutdown(void)
{
    for (unsigned i = 0; i < nnics; i++)
        nic_close(nics[i]);
    nnics = 0;
}
