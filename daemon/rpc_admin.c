/* status (everyone; others' identities for admins only) and the admin
 * requests: set_log_level. */
#include <errno.h>
#include <string.h>

#include "affinity.h"
#include "config.h"
#include "gpu.h"
#include "peer_table.h"
#include "ident.h"
#include "log.h"
#include "efa.h"
#include "nic.h"
#include "rpc.h"
#include "staging.h"
#include "stats.h"

/* A client's GPU regions, per device. */
static void gpu_uses(reply *r, Mcefa__ClientInfo *ci, const region_table *t)
{
    if (!t->gpu_bytes)
        return;
    uint32_t n[GPU_MAX] = {0};
    uint64_t bytes[GPU_MAX] = {0};
    unsigned ndev = 0;
    for (size_t i = 0; i < t->n; i++) {
        int g = t->v[i]->gpu;
        if (g < 0 || g >= GPU_MAX)
            continue;
        ndev += !n[g];
        n[g]++;
        bytes[g] += t->v[i]->length;
    }
    ci->gpus = reply_alloc(r, ndev * sizeof(*ci->gpus));
    for (int g = 0; g < GPU_MAX; g++) {
        if (!n[g])
            continue;
        Mcefa__GpuUse *u = reply_alloc(r, sizeof(*u));
        mcefa__gpu_use__init(u);
        u->bus_id = (char *)gpu_bus_id(g);
        u->regions = n[g];
        u->bytes = bytes[g];
        ci->gpus[ci->n_gpus++] = u;
    }
}

static void gpus(reply *r, Mcefa__DaemonStatus *st)
{
    st->gpu_state = (char *)gpu_state();
    unsigned ng = gpu_count();
    st->gpus = reply_alloc(r, ng * sizeof(*st->gpus));
    for (unsigned i = 0; i < ng; i++) {
        gpu_info info;
        if (gpu_get_info(i, &info) < 0)
            continue;
        Mcefa__GpuInfo *gi = reply_alloc(r, sizeof(*gi));
        mcefa__gpu_info__init(gi);
        gi->bus_id = reply_alloc(r, sizeof(info.bus_id));
        memcpy(gi->bus_id, info.bus_id, sizeof(info.bus_id));
        gi->name = reply_alloc(r, sizeof(info.name));
        memcpy(gi->name, info.name, sizeof(info.name));
        gi->uuid = reply_alloc(r, sizeof(info.uuid));
        memcpy(gi->uuid, info.uuid, sizeof(info.uuid));
        gi->imports = info.imports;
        gi->import_bytes = info.import_bytes;
        st->gpus[st->n_gpus++] = gi;
    }
}

/* The host's NUMA nodes and every GPU on its PCI bus with its distance to
 * each NIC, in the order of st->nics. */
static void placement(reply *r, Mcefa__DaemonStatus *st)
{
    unsigned nn = affinity_numa_count(), ng = affinity_gpu_count(), nnic = nic_count();
    st->numa_nodes = reply_alloc(r, nn * sizeof(*st->numa_nodes));
    for (unsigned i = 0; i < nn; i++)
        st->numa_nodes[st->n_numa_nodes++] = affinity_numa(i);
    st->pci_gpus = reply_alloc(r, ng * sizeof(*st->pci_gpus));
    for (unsigned i = 0; i < ng; i++) {
        const affinity_gpu *g = affinity_gpu_get(i);
        Mcefa__PciGpu *pg = reply_alloc(r, sizeof(*pg));
        mcefa__pci_gpu__init(pg);
        pg->bus_id = (char *)g->bus_id;
        pg->numa_node = g->numa;
        pg->nic_distance = reply_alloc(r, nnic * sizeof(*pg->nic_distance));
        for (unsigned k = 0; k < nnic; k++)
            pg->nic_distance[pg->n_nic_distance++] = g->nic_distance[k];
        st->pci_gpus[st->n_pci_gpus++] = pg;
    }
}

static void clients(reply *r, Mcefa__DaemonStatus *st, const session *self)
{
    st->clients = reply_alloc(r, session_count() * sizeof(*st->clients));
    session *c;
    TAILQ_FOREACH(c, session_all(), link) {
        /* Others' identities are for admins only. */
        if (!c->hello_done || (!self->admin && c != self))
            continue;
        Mcefa__ClientInfo *ci = reply_alloc(r, sizeof(*ci));
        mcefa__client_info__init(ci);
        ci->session_id = c->id;
        ci->pid = (uint32_t)c->pid;
        ci->uid = (uint32_t)c->uid;
        ci->name = (char *)c->name;
        ci->regions = (uint32_t)c->regions.n;
        ci->bytes_registered = c->regions.bytes;
        ci->plain_bytes = c->regions.plain_bytes;
        ci->batches = batch_count(&c->batches);
        ci->transfers_in_flight = session_inflight(c);
        ci->segment = c->exported ? c->exported->name : "";
        gpu_uses(r, ci, &c->regions);
        st->clients[st->n_clients++] = ci;
    }
}

static void nics(reply *r, Mcefa__DaemonStatus *st)
{
    unsigned nn = nic_count();
    st->n_nics = nn;
    st->nics = reply_alloc(r, nn * sizeof(*st->nics));
    for (unsigned i = 0; i < nn; i++) {
        nic *n = nic_get(i);
        Mcefa__NicInfo *ni = reply_alloc(r, sizeof(*ni));
        mcefa__nic_info__init(ni);
        ni->name = n->name;
        ni->provider = n->provider;
        ni->fabric = n->fabric;
        ni->numa_node = n->numa_node;
        ni->outstanding = atomic_load(&n->outstanding);
        ni->bytes = atomic_load(&n->bytes);
        ni->ops = atomic_load(&n->ops);
        ni->errors = atomic_load(&n->errors);
        ni->max_wr = n->max_wr;
        ni->link = reply_alloc(r, 32);
        nic_link_state(n, ni->link, 32);
        ni->domain = n->domain_name;
        ni->libfabric_version = n->lib_version;
        ni->provider_version = n->prov_version;
        ni->api_version = n->api_version;
        ni->tx_depth = n->tx_depth;
        ni->max_rma_bytes = n->max_rma_bytes;
        ni->hmem = n->hmem;
        ni->dmabuf = n->gpu.reg == GPU_REG_DMABUF;
        ni->gpu_registration = (char *)nic_hmem_reg_name(n->gpu.reg);
        ni->gpu_registration_why = n->gpu.why;
        ni->rma_emulated = (char *)efa_rma_emulated_name(n->provider, n->emulated_read, n->emulated_write);
        ni->efa_unknown = n->efa_why;
        if (n->efa.known) {
            Mcefa__EfaDevice *d = reply_alloc(r, sizeof(*d));
            mcefa__efa_device__init(d);
            d->rdma_read = n->efa.rdma_read;
            d->rdma_write = n->efa.rdma_write;
            d->max_rdma_size = n->efa.max_rdma_size;
            d->inline_buf_size = n->efa.inline_buf_size;
            d->max_sq_wr = n->efa.max_sq_wr;
            d->max_sq_sge = n->efa.max_sq_sge;
            d->max_rq_wr = n->efa.max_rq_wr;
            d->device_caps = n->efa.device_caps;
            ni->efa = d;
        }
        st->nics[i] = ni;
    }
}

static void peers(reply *r, Mcefa__DaemonStatus *st)
{
    size_t np = 0;
    for (peer *p = peer_first(); p; p = peer_next(p))
        np++;
    st->peers = reply_alloc(r, np * sizeof(*st->peers));
    for (peer *p = peer_first(); p; p = peer_next(p)) {
        Mcefa__PeerInfo *pi = reply_alloc(r, sizeof(*pi));
        mcefa__peer_info__init(pi);
        pi->host = (char *)peer_host(p);
        pi->address = (char *)peer_address(p);
        pi->epoch = peer_epoch(p);
        pi->connected = peer_connected(p);
        pi->nic_pairs_warm = peer_pairs_warm(p);
        pi->last_error = (char *)peer_last_error(p);
        pi->nic_pairs = peer_pairs(p);
        pi->bytes = peer_bytes(p);
        pi->ops = peer_ops(p);
        pi->errors = peer_errors(p);
        st->bytes_sent += pi->bytes;
        st->peers[st->n_peers++] = pi;
    }
}

static void segments(reply *r, Mcefa__DaemonStatus *st, const session *self)
{
    size_t nseg = 0;
    for (segment_entry *e = segment_first(); e; e = segment_next(e))
        nseg++;
    st->segments = reply_alloc(r, nseg * sizeof(*st->segments));
    for (segment_entry *e = segment_first(); e; e = segment_next(e)) {
        if (!e->owner)
            continue;
        const session *o = e->owner;
        Mcefa__SegmentSummary *ss = reply_alloc(r, sizeof(*ss));
        mcefa__segment_summary__init(ss);
        ss->name = e->name;
        ss->owner_session = o->id;
        ss->owner_pid = self->admin ? (uint32_t)o->pid : 0;
        ss->regions = (uint32_t)e->regions->n;
        ss->bytes = e->regions->bytes;
        st->segments[st->n_segments++] = ss;
    }
}

void rpc_status(reply *r, const Mcefa__Request *req)
{
    (void)req;
    session *self = r->s;
    Mcefa__DaemonStatus *st = reply_alloc(r, sizeof(*st));
    mcefa__daemon_status__init(st);
    st->daemon_version = MCEFA_VERSION;
    st->hostname = (char *)ident_hostname();
    st->epoch = ident_epoch();
    st->uptime_ms = ident_uptime_ms();
    st->protocol_version = MCEFA_PROTOCOL_VERSION;
    st->bytes_copied = stats_get(&stats_counters.bytes_copied);
    st->transfers_completed = stats_get(&stats_counters.transfers_completed);
    st->transfers_failed = stats_get(&stats_counters.transfers_failed);
    st->protocol_errors = stats_get(&stats_counters.protocol_errors);
    st->admin = self->admin;
    st->log_level = (char *)log_level_name(log_threshold);
    st->provider = config.provider;
    st->staging_slots = staging_slots();
    st->staging_slot_bytes = staging_slot_bytes();
    st->staging_in_use = staging_in_use();
    st->staging_waiting = staging_waiting();
    st->staging_gpu_pinned = staging_slots() && gpu_host_pinned(staging_region()->ptr, 1);
    clients(r, st, self);
    nics(r, st);
    peers(r, st);
    segments(r, st, self);
    gpus(r, st);
    placement(r, st);
    r->resp.body_case = MCEFA__RESPONSE__BODY_DAEMON_STATUS;
    r->resp.daemon_status = st;
}

void rpc_set_log_level(reply *r, const Mcefa__Request *req)
{
    const char *level = req->set_log_level->level;
    session *s = r->s;
    int lvl = log_parse_level(level);
    if (lvl < 0) {
        reply_fail(r, -EINVAL, "log level '%s' is not one of error, warn, info, debug", level);
        return;
    }
    log_threshold = lvl;
    log_write(LOG_INFO < lvl ? LOG_INFO : lvl, "log level set to %s by %s (pid %d)", log_level_name(lvl), s->name,
              (int)s->pid);
}
