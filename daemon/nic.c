/* NIC contexts: opening each NIC the settings allow, with what EFA needs
 * (efa.c), and its warmup word. Registration is nic_mr.c's. */
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
#include <sys/utsname.h>
#include <unistd.h>

#include "efa.h"
#include "fabric_version.h"
#include "gpu.h"
#include "log.h"
#include "prov_env.h"
#include "topo.h"

static nic *nics[NIC_MAX];
static unsigned nnics;
/* Whether FI_HMEM is asked, decided once before libfabric starts; NICs'
 * facts point at its text. */
static nic_hmem_ask hmem_ask;

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

/* Where NIC NUMA nodes come from (the topology setting): a topology by
 * device name, else the sysfs files under root. */
typedef struct placement {
    topo t;
    char root[4096];
} placement;

static int nic_numa_node(const struct fi_info *fi, const char *device, const placement *pl)
{
    for (size_t i = 0; i < pl->t.n; i++)
        if (!pl->t.devs[i].gpu && !strcmp(pl->t.devs[i].name, device) && pl->t.devs[i].numa >= 0)
            return pl->t.devs[i].numa;
    char p[4400];
    if (fi->nic && fi->nic->bus_attr && fi->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *pci = &fi->nic->bus_attr->attr.pci;
        snprintf(p, sizeof(p), "%s/bus/pci/devices/%04x:%02x:%02x.%x/numa_node", pl->root, pci->domain_id,
                 pci->bus_id, pci->device_id, pci->function_id);
        return read_numa(p);
    }
    snprintf(p, sizeof(p), "%s/class/net/%s/device/numa_node", pl->root, fi->domain_attr->name);
    return read_numa(p);
}

/* The NIC's device name (rdmap79s0) where the provider gives one. */
static const char *device_name(const struct fi_info *fi)
{
    if (fi->nic && fi->nic->device_attr && fi->nic->device_attr->name && *fi->nic->device_attr->name)
        return fi->nic->device_attr->name;
    return fi->domain_attr->name;
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

/* A failed call is kept in open_err; it is an error unless the NIC is
 * being tried with FI_HMEM (then it is reopened host-only). */
#define CHECK(call, what)                                                                              \
    do {                                                                                               \
        int rc_ = (call);                                                                              \
        if (rc_) {                                                                                     \
            snprintf(n->open_err, sizeof(n->open_err), "%s: %s", what, fi_strerror(rc_ < 0 ? -rc_ : rc_)); \
            if (n->hmem)                                                                               \
                log_warn("NIC %s: %s with FI_HMEM failed: %s", n->name, what, fi_strerror(-rc_));      \
            else                                                                                       \
                log_error("NIC %s: %s failed: %s", n->name, what, fi_strerror(-rc_));                  \
            return rc_ < 0 ? rc_ : -rc_;                                                               \
        }                                                                                              \
    } while (0)

/* What nic_open needs besides the fi_getinfo entry. */
typedef struct open_args {
    const mcefad_config *cfg;
    struct fi_info *hlist; /* the list with FI_HMEM asked, NULL if none */
    int hlist_rc;          /* why there is none: fi_getinfo's answer */
    uint32_t api;
    const efa_dev_attr *dev; /* libefa's answer, known or not */
    const char *dev_why;     /* why it is not known */
    const char *offered;     /* the fabrics the NIC's domain offered, for the log */
    const placement *pl;
} open_args;

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on");
}

/* Runs the planned endpoint options of one phase (before or after
 * fi_enable); a refused option leaves its fact unknown. */
static void run_options(nic *n, const efa_opt_step *plan, size_t np, bool before, efa_ep_facts *f)
{
    for (size_t i = 0; i < np; i++) {
        if (plan[i].before_enable != before)
            continue;
        int rc = efa_opt_run(n->ep, &plan[i], f);
        if (rc && plan[i].opt == EFA_OPT_CUDA_API_OFF)
            log_warn("NIC %s: %s=false refused (%s): no GPUDirect on this NIC, reopening it host-only", n->name,
                     plan[i].name, fi_strerror(-rc));
        else if (rc && plan[i].opt == EFA_OPT_SHM_OFF)
            log_warn("NIC %s: %s=false refused (%s): efa keeps an shm sub-provider under this NIC", n->name,
                     plan[i].name, fi_strerror(-rc));
        else if (rc)
            log_debug("NIC %s: %s: %s", n->name, plan[i].name, fi_strerror(-rc));
    }
}

/* The largest single RMA op: the provider's FI_OPT_MAX_RMA_SIZE where it
 * answered, else its max_msg_size; efa-direct (and efa where the option is
 * missing) is also held to the device's max RDMA size, which the provider
 * only asserts. */
static uint64_t max_rma(const nic *n, const struct fi_info *fi, const efa_ep_facts *f)
{
    uint64_t m = f->max_rma ? f->max_rma : fi->ep_attr->max_msg_size ? fi->ep_attr->max_msg_size : UINT64_MAX;
    bool device_bound = !strcmp(n->fabric, EFA_DIRECT_FABRIC) || !f->max_rma;
    if (efa_is_provider(n->provider) && device_bound && n->efa.known && n->efa.max_rdma_size &&
        n->efa.max_rdma_size < m)
        m = n->efa.max_rdma_size;
    return m;
}

/* A provider's version: those built into libfabric encode it as
 * FI_VERSION(major * 100 + minor, revision * 10). */
static void prov_version_text(uint32_t v, char *buf, size_t len)
{
    unsigned major = FI_MAJOR(v), minor = FI_MINOR(v);
    if (major >= 100)
        snprintf(buf, len, "%u.%u.%u", major / 100, major % 100, minor / 10);
    else
        snprintf(buf, len, "%u.%u", major, minor);
}

static void describe_efa(const nic *n, char *buf, size_t len)
{
    if (!efa_is_provider(n->provider))
        snprintf(buf, len, "%s", "");
    else if (!n->efa.known)
        snprintf(buf, len, ", libefa: %s", n->efa_why);
    else
        snprintf(buf, len, ", device RDMA read %s write %s, max RDMA %" PRIu32 " bytes, inline %u, SQ %u x %u",
                 n->efa.rdma_read ? "yes" : "no", n->efa.rdma_write ? "yes" : "no", n->efa.max_rdma_size,
                 n->efa.inline_buf_size, n->efa.max_sq_wr, n->efa.max_sq_sge);
}

static int nic_open(nic *n, struct fi_info *fi, const open_args *a)
{
    n->open_err[0] = 0;
    n->info = fi_dupinfo(fi);
    snprintf(n->name, sizeof(n->name), "%s", device_name(fi));
    snprintf(n->domain_name, sizeof(n->domain_name), "%s", fi->domain_attr->name);
    snprintf(n->fabric, sizeof(n->fabric), "%s", fi->fabric_attr->name);
    snprintf(n->provider, sizeof(n->provider), "%s", fi->fabric_attr->prov_name);
    n->lib_version = fi_version();
    n->prov_version = fi->fabric_attr->prov_version;
    n->api_version = a->api;
    n->numa_node = nic_numa_node(fi, n->name, a->pl);
    n->mr_mode = fi->domain_attr->mr_mode;
    n->delivery_complete = (fi->tx_attr->op_flags & FI_DELIVERY_COMPLETE) != 0;
    n->hmem = (fi->caps & FI_HMEM) != 0;
    n->efa = *a->dev;
    snprintf(n->efa_why, sizeof(n->efa_why), "%s", a->dev_why);
    n->tx_depth = fi->tx_attr->size;
    /* 0: as deep as the provider's queue (4096 on p5, 2048 on p6-b300); a
     * fixed small cap would leave most of it unused. */
    n->max_wr = a->cfg->max_wr ? a->cfg->max_wr : n->tx_depth ? n->tx_depth : 256;
    if (n->tx_depth && n->tx_depth < n->max_wr)
        n->max_wr = n->tx_depth;
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
    efa_opt_step plan[EFA_OPT_STEPS_MAX];
    size_t np = efa_opt_plan(a->api, n->provider, n->fabric, n->hmem, plan);
    efa_ep_facts facts = EFA_EP_FACTS_INIT;
    run_options(n, plan, np, true, &facts);
    if (n->hmem)
        n->hmem_facts.cuda_api_rc = facts.cuda_api_rc;
    if (n->hmem && facts.cuda_api_rc != 0) {
        /* An endpoint with FI_HMEM whose provider may call CUDA is what
         * GPUDirect must avoid: the caller reopens the NIC without it. */
        snprintf(n->open_err, sizeof(n->open_err), "FI_OPT_CUDA_API_PERMITTED=false refused");
        return -EOPNOTSUPP;
    }
    CHECK(fi_enable(n->ep), "fi_enable");
    run_options(n, plan, np, false, &facts);
    n->shm_off = facts.shm_off;
    n->max_rma_bytes = max_rma(n, fi, &facts);
    n->addrlen = sizeof(n->addr);
    CHECK(fi_getname(&n->ep->fid, n->addr, &n->addrlen), "fi_getname");

    efa_rma_facts rf = {.emulated_read = facts.emulated_read,
                        .emulated_write = facts.emulated_write,
                        .dev_read = n->efa.known ? n->efa.rdma_read : -1,
                        .dev_write = n->efa.known ? n->efa.rdma_write : -1,
                        .env_device_rdma = env_flag("FI_EFA_USE_DEVICE_RDMA"),
                        .api = a->api};
    efa_rma_resolve(n->provider, n->fabric, &rf, &n->emulated_read, &n->emulated_write);
    err e = {0};
    int verdict = efa_rma_check(n->name, n->provider, n->emulated_read, n->emulated_write,
                                a->cfg->require_device_rdma, &e);
    if (verdict < 0) {
        log_error("%s", e.text);
        return verdict;
    }
    if (verdict > 0)
        log_warn("%s", e.text);

    nic_mem wm = {.addr = &n->warmup_word, .len = sizeof(n->warmup_word)};
    if (nic_mr_reg(n, &wm, FI_REMOTE_READ | FI_READ, &n->warmup, &e) < 0) {
        log_error("%s", e.text);
        return e.code;
    }
    char efa[200], pv[24];
    describe_efa(n, efa, sizeof(efa));
    prov_version_text(n->prov_version, pv, sizeof(pv));
    log_info("NIC %s: provider %s %s, domain %s, fabric %s (offered: %s), NUMA node %d, max %" PRIu64
             " work requests (tx depth %zu), max RMA %" PRIu64 " bytes, RMA emulated: %s, mr_mode 0x%x%s%s%s",
             n->name, n->provider, pv, n->domain_name, n->fabric, a->offered, n->numa_node, n->max_wr, n->tx_depth, n->max_rma_bytes,
             efa_rma_emulated_name(n->provider, n->emulated_read, n->emulated_write), n->mr_mode,
             n->delivery_complete ? ", delivery-complete writes" : "", n->shm_off ? ", shm off" : "", efa);
    return 0;
}

/* Closes what nic_open opened, so it can open the NIC again. */
static void nic_release(nic *n)
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
    n->ep = NULL;
    n->cq = NULL;
    n->av = NULL;
    n->domain = NULL;
    n->fabric_fid = NULL;
    n->info = NULL;
}

static void nic_close(nic *n)
{
    nic_release(n);
    free(n);
}

typedef struct ask_args {
    struct fi_info *hints, *list;
} ask_args;

static int ask_getinfo(uint32_t version, void *arg)
{
    ask_args *a = arg;
    return fi_getinfo(version, NULL, NULL, 0, a->hints, &a->list);
}

/* fi_getinfo for prov with hints of efa_fill_hints: at the newest API
 * version the library takes when *api is 0 (fabric_version.h: below 1.18
 * efa turns device RDMA off on p4d, p5 and p5e, and the options of
 * efa_opt_plan need newer versions still), else at *api. With hmem, the
 * list is asked at the version the plain one answered: NICs are chosen
 * from the plain list (asking FI_HMEM must not change which fabric a NIC
 * gets: efa-direct offers it only with p2p), then opened with their FI_HMEM
 * entry where there is one. */
static struct fi_info *get_info(const char *prov, bool delivery, bool hmem, uint32_t *api, int *rc)
{
    ask_args a = {.hints = fi_allocinfo()};
    if (!a.hints || efa_fill_hints(a.hints, prov, delivery, hmem) < 0) {
        fi_freeinfo(a.hints);
        *rc = -FI_ENOMEM;
        return NULL;
    }
    *rc = *api ? ask_getinfo(*api, &a)
               : fabric_version_negotiate(FABRIC_VERSION_HEADERS, fi_version(), ask_getinfo, &a, api);
    fi_freeinfo(a.hints);
    return *rc ? NULL : a.list;
}

/* The entry of hlist for the same provider, domain and fabric as fi. */
static struct fi_info *hmem_entry(struct fi_info *hlist, const struct fi_info *fi)
{
    for (struct fi_info *h = hlist; h; h = h->next)
        if (!strcmp(h->fabric_attr->prov_name, fi->fabric_attr->prov_name) &&
            !strcmp(h->domain_attr->name, fi->domain_attr->name) &&
            !strcmp(h->fabric_attr->name, fi->fabric_attr->name))
            return h;
    return NULL;
}

/* ---- Start and stop ----------------------------------------------------- */

/* libefa's view of each EFA device in the fi_getinfo list, by device name. */
typedef struct dev_cache {
    char name[64];
    efa_dev_attr attr;
    char why[160];
} dev_cache;

static const dev_cache *dev_lookup(dev_cache *c, size_t *nc, const struct fi_info *fi)
{
    const char *name = device_name(fi);
    for (size_t i = 0; i < *nc; i++)
        if (!strcmp(c[i].name, name))
            return &c[i];
    if (*nc == NIC_MAX)
        return NULL;
    dev_cache *d = &c[(*nc)++];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    err e = {0};
    if (!efa_is_provider(fi->fabric_attr->prov_name))
        snprintf(d->why, sizeof(d->why), "not an efa device");
    else if (efa_dev_query(name, &d->attr, &e) < 0)
        snprintf(d->why, sizeof(d->why), "%s", e.text);
    return d;
}

/* Whether a NIC is named in a nics / nics_exclude list, by either name. */
static bool listed(const char *list, const char *device, const char *domain)
{
    return config_list_contains(list, device) || config_list_contains(list, domain);
}

/* What the GPU plan of a NIC opened from fi knows before opening it. */
static void hmem_facts_start(nic *n, const struct fi_info *fi, const struct fi_info *hfi, const open_args *a)
{
    nic_hmem_facts *f = &n->hmem_facts;
    snprintf(n->provider, sizeof(n->provider), "%s", fi->fabric_attr->prov_name);
    n->hmem_note[0] = 0;
    *f = (nic_hmem_facts){.prov = n->provider,
                          .not_asked = hmem_ask.ask ? NULL : hmem_ask.why,
                          .hmem_caps = hfi ? hfi->caps : 0,
                          .api = a->api,
                          .lib = fi_version(),
                          .headers = FABRIC_VERSION_HEADERS,
                          .cuda_api_rc = NIC_HMEM_NOT_TRIED,
                          .driver = -1,
                          .dmabuf_attr = -1,
                          .peermem = -1};
    if (hmem_ask.ask && !hfi) {
        snprintf(n->hmem_note, sizeof(n->hmem_note), "%s",
                 a->hlist ? "no entry for this domain and fabric" : fi_strerror(-a->hlist_rc));
        f->no_entry = n->hmem_note;
    }
}

/* Opens a NIC with its FI_HMEM entry where the plan could use it, and
 * host-only when there is none or opening with it fails. */
static int open_one(nic *n, struct fi_info *fi, const open_args *a)
{
    struct fi_info *hfi = hmem_ask.ask ? hmem_entry(a->hlist, fi) : NULL;
    hmem_facts_start(n, fi, hfi, a);
    if (hfi && nic_hmem_open_with(&n->hmem_facts)) {
        int rc = nic_open(n, hfi, a);
        if (rc == 0)
            return 0;
        int cuda_rc = n->hmem_facts.cuda_api_rc;
        if (cuda_rc == 0 || cuda_rc == NIC_HMEM_NOT_TRIED) {
            /* Failed for another reason than the option: say what. */
            snprintf(n->hmem_note, sizeof(n->hmem_note), "%s", *n->open_err ? n->open_err : fi_strerror(-rc));
            n->hmem_facts.open_fail = n->hmem_note;
        }
        log_warn("NIC %s: opening it with FI_HMEM failed (%s): opening it host-only", n->name,
                 *n->open_err ? n->open_err : fi_strerror(-rc));
        nic_release(n);
    }
    n->hmem = false;
    return nic_open(n, fi, a);
}

/* Opens the chosen entries the nics settings allow. */
static int open_chosen(struct fi_info **ent, const efa_offer *offers, size_t n, const size_t *chosen, size_t nchosen,
                       const open_args *base, dev_cache *devs, size_t *ndevs)
{
    const mcefad_config *cfg = base->cfg;
    for (size_t c = 0; c < nchosen && nnics < NIC_MAX; c++) {
        struct fi_info *fi = ent[chosen[c]];
        const char *dev = device_name(fi), *dom = fi->domain_attr->name;
        if (*cfg->nics ? !listed(cfg->nics, dev, dom) : strcmp(dom, "lo") == 0)
            continue; /* loopback only when named: a peer's "lo" would be ourselves */
        if (listed(cfg->nics_exclude, dev, dom))
            continue;
        nic *nn = calloc(1, sizeof(*nn));
        if (!nn)
            return -ENOMEM;
        nn->idx = nnics;
        char offered[256];
        efa_fabrics_offered(offers, n, fi->fabric_attr->prov_name, dom, offered, sizeof(offered));
        const dev_cache *d = dev_lookup(devs, ndevs, fi);
        static const efa_dev_attr unknown;
        open_args a = *base;
        a.dev = d ? &d->attr : &unknown;
        a.dev_why = d ? d->why : "too many devices";
        a.offered = offered;
        int rc = open_one(nn, fi, &a);
        if (rc < 0) {
            nic_close(nn);
            return rc;
        }
        nics[nnics++] = nn;
    }
    return 0;
}

static void warn_unmatched(const char *list, const char *prov)
{
    const char *pos = list, *name;
    size_t l;
    while (config_list_next(&pos, &name, &l) == 0) {
        bool found = false;
        for (unsigned i = 0; i < nnics; i++)
            found |= (strlen(nics[i]->name) == l && !strncmp(nics[i]->name, name, l)) ||
                     (strlen(nics[i]->domain_name) == l && !strncmp(nics[i]->domain_name, name, l));
        if (!found)
            log_warn("NIC '%.*s' from the nics setting was not found with provider %s", (int)l, name, prov);
    }
}

/* Facts of the host, asked once: the CUDA driver only when some NIC's
 * plan depends on it (loading it costs nothing on the GPUs themselves). */
static void host_facts(nic_hmem_facts *f, err *driver_err)
{
    struct utsname u;
    f->kernel = uname(&u) == 0 ? nic_hmem_kernel_version(u.release) : 0;
    f->peermem = access("/sys/module/nvidia_peermem", F_OK) == 0 || access("/sys/module/efa_nv_peermem", F_OK) == 0;
    f->driver = gpu_ensure(driver_err) == 0 && gpu_count() > 0;
    if (f->driver == 0 && !driver_err->code)
        err_set(driver_err, -ENODEV, "the CUDA driver lists no GPU");
    f->driver_why = f->driver ? NULL : driver_err->text;
    f->dmabuf_attr = f->driver ? gpu_dmabuf_supported() : -1;
}

/* Decides each NIC's GPU plan, logs it, and warns where FI_HMEM was
 * offered (so the provider set up CUDA: its GPU 0 context costs ~600 MiB)
 * but no NIC can use it. */
static void plan_gpu(void)
{
    nic_hmem_facts host = {.driver = -1, .dmabuf_attr = -1, .peermem = -1};
    static err driver_err; /* host.driver_why points into it; the facts keep it */
    bool asked_driver = false;
    unsigned offered = 0, direct = 0;
    for (unsigned i = 0; i < nnics; i++) {
        nic *n = nics[i];
        nic_hmem_facts *f = &n->hmem_facts;
        if (nic_hmem_needs_driver(f)) {
            if (!asked_driver)
                host_facts(&host, &driver_err);
            asked_driver = true;
            f->driver = host.driver;
            f->driver_why = host.driver_why;
            f->dmabuf_attr = host.dmabuf_attr;
            f->kernel = host.kernel;
            f->peermem = host.peermem;
        }
        nic_hmem_plan_for(f, &n->gpu);
        offered += (f->hmem_caps & FI_HMEM) != 0;
        direct += n->gpu.reg != GPU_REG_STAGING;
        log_info("NIC %s: GPU memory: %s (%s)", n->name, nic_hmem_reg_name(n->gpu.reg), n->gpu.why);
    }
    if (offered && !direct && !hmem_ask.set_system)
        log_warn("the provider offered FI_HMEM but no NIC can register GPU memory (see above): it may hold a CUDA "
                 "context on GPU 0 (about 600 MiB) for nothing; set gpudirect=false (or FI_HMEM=system) to avoid it");
}

int nic_init(const mcefad_config *cfg)
{
    const char *prov = cfg->provider;
    if (!*prov || !strcmp(prov, "none")) {
        log_info("provider 'none': serving same-host transfers only");
        return 0;
    }
    nic_register_init(cfg->register_all_nics);
    /* Before anything calls into libfabric: it reads FI_HMEM once. */
#ifdef MCEFA_CUDA
    bool cuda_build = true;
#else
    bool cuda_build = false;
#endif
    nic_hmem_decide_ask(cfg->gpudirect, cuda_build, FABRIC_VERSION_HEADERS, getenv("FI_HMEM"), &hmem_ask);
    if (hmem_ask.set_system && setenv("FI_HMEM", "system", 0) == 0)
        log_info("FI_HMEM=system set for libfabric: GPU memory is not registered with NICs (%s), so no provider "
                 "may create a CUDA context at start (set FI_HMEM yourself to override)",
                 hmem_ask.why);
    /* Likewise: providers read their variables when libfabric loads them. */
    prov_env_var env[PROV_ENV_MAX];
    prov_env_settings es = {.rxm_buffer_size = cfg->rxm_buffer_size,
                            .rxm_msg_rx_size = cfg->rxm_msg_rx_size,
                            .rxm_cm_progress_interval_us = cfg->rxm_cm_progress_interval_us};
    prov_env_apply(env, prov_env_plan(prov, &es, env));
    placement pl = {0};
    int rc = topo_load_setting(cfg->topology, &pl.t, pl.root, sizeof(pl.root));
    if (rc < 0 && *cfg->topology) {
        log_error("cannot read the topology from %s: %s; fix or empty the topology setting", cfg->topology,
                  strerror(-rc));
        topo_free(&pl.t);
        return rc;
    }
    /* This host's own: the NICs' sysfs files still tell their NUMA nodes. */
    if (rc < 0) {
        log_warn("hwloc cannot read this host's topology: %s; NIC NUMA nodes come from %s alone", strerror(-rc),
                 pl.root);
        topo_free(&pl.t);
    }
    uint32_t api = 0;
    bool delivery = true;
    struct fi_info *list = get_info(prov, true, false, &api, &rc);
    if (!list) {
        delivery = false;
        api = 0;
        list = get_info(prov, false, false, &api, &rc);
        if (list)
            log_warn("provider %s cannot report delivery completion: a write completes when the NIC sent it, "
                     "not when it landed",
                     prov);
    }
    if (!list) {
        topo_free(&pl.t);
        if (!cfg->allow_no_nics) {
            log_error("provider %s lists no NIC with RDM endpoints and RMA (%s). On AWS check the EFA driver "
                      "(lsmod | grep efa; fi_info -p efa) and which libfabric is loaded; elsewhere set "
                      "provider=tcp;ofi_rxm; to serve same-host transfers only, set provider=none or "
                      "allow_no_nics=true",
                      prov, fi_strerror(-rc));
            return -ENODEV;
        }
        log_warn("provider %s lists no NIC with RDM endpoints and RMA (%s): serving same-host transfers only "
                 "(allow_no_nics)",
                 prov, fi_strerror(-rc));
        return 0;
    }
    size_t n = 0;
    for (struct fi_info *fi = list; fi; fi = fi->next)
        n++;
    struct fi_info **ent = calloc(n, sizeof(*ent));
    efa_offer *offers = calloc(n, sizeof(*offers));
    size_t *chosen = calloc(n, sizeof(*chosen));
    dev_cache *devs = calloc(NIC_MAX, sizeof(*devs));
    size_t ndevs = 0;
    rc = ent && offers && chosen && devs ? 0 : -ENOMEM;
    n = 0;
    for (struct fi_info *fi = list; fi && rc == 0; fi = fi->next, n++) {
        ent[n] = fi;
        offers[n] = (efa_offer){fi->fabric_attr->prov_name, fi->domain_attr->name, fi->fabric_attr->name, -1};
        if (efa_is_provider(prov) && efa_is_provider(fi->fabric_attr->prov_name)) {
            const dev_cache *d = dev_lookup(devs, &ndevs, fi);
            if (d && d->attr.known)
                offers[n].device_rdma = d->attr.rdma_read && d->attr.rdma_write;
        }
    }
    err e = {0};
    int nchosen = rc < 0 ? rc : efa_choose_fabric(offers, n, prov, cfg->fabric, chosen, &e);
    if (nchosen < 0) {
        rc = nchosen;
        if (e.code)
            log_error("%s", e.text);
    } else {
        open_args base = {.cfg = cfg, .api = api, .pl = &pl};
        if (hmem_ask.ask) {
            uint32_t at = api;
            base.hlist = get_info(prov, delivery, true, &at, &base.hlist_rc);
            if (!base.hlist)
                log_info("provider %s lists no NIC with FI_HMEM (%s): every NIC is host-only for GPU memory", prov,
                         fi_strerror(-base.hlist_rc));
        }
        rc = open_chosen(ent, offers, n, chosen, (size_t)nchosen, &base, devs, &ndevs);
        if (base.hlist)
            fi_freeinfo(base.hlist);
    }
    free(ent);
    free(offers);
    free(chosen);
    free(devs);
    fi_freeinfo(list);
    topo_free(&pl.t);
    if (rc < 0)
        return rc;
    if (*cfg->nics)
        warn_unmatched(cfg->nics, prov);
    if (!nnics) {
        if (!cfg->allow_no_nics) {
            log_error("provider %s: no NIC left after the nics/nics_exclude settings; fix them, or set "
                      "allow_no_nics=true to serve same-host transfers only",
                      prov);
            return -ENODEV;
        }
        log_warn("provider %s: no NIC left after the nics/nics_exclude settings: serving same-host only "
                 "(allow_no_nics)",
                 prov);
        return 0;
    }
    plan_gpu();
    uint32_t lib = fi_version();
    const char *fabric = nics[0]->fabric;
    for (unsigned i = 1; i < nnics; i++)
        if (strcmp(nics[i]->fabric, fabric) != 0)
            fabric = "(one per NIC)";
    log_info("%u NIC(s) with provider %s, fabric %s%s; libfabric %u.%u (headers %u.%u), API %u.%u", nnics, prov,
             fabric, *cfg->fabric ? "" : " (the default choice)", FI_MAJOR(lib), FI_MINOR(lib),
             FI_MAJOR_VERSION, FI_MINOR_VERSION, FI_MAJOR(api), FI_MINOR(api));
    return 0;
}

void nic_shutdown(void)
{
    for (unsigned i = 0; i < nnics; i++)
        nic_close(nics[i]);
    nnics = 0;
    efa_dev_unload();
}
