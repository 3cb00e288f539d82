/* mcefactl: the admin CLI of mcefad.
 *
 *   mcefactl [--socket=PATH] [--json] COMMAND [ARGS]
 *     status | nics | peers | clients | segments | gpus
 *     stats [--interval=S] [--watch] [--count=N]
 *     warmup HOST | loglevel LEVEL
 *     gen-secret PATH   (no daemon needed)
 *
 * Exit codes scripts can rely on: 0 success; 1 the daemon refused or failed
 * the request; 2 bad usage; 3 no daemon to talk to; 4 permission denied. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NODAEMON = 3, EXIT_PERM = 4 };

static bool json;

/* For a request the daemon answered: its status says nothing about the
 * daemon being there (a peer's ECONNREFUSED is still exit 1). */
static int fail(const char *what, int rc)
{
    fprintf(stderr, "mcefactl: %s: %s\n", what, *mcefa_last_error() ? mcefa_last_error() : mcefa_strerror(rc));
    if (rc == -EPERM)
        return EXIT_PERM;
    /* The connection itself broke: the daemon went away mid-request. */
    if (rc == -ECONNRESET && strstr(mcefa_last_error(), "mcefad closed the connection"))
        return EXIT_NODAEMON;
    return EXIT_FAILED;
}

/* For connecting: no daemon, or not allowed to talk to it. */
static int fail_connect(int rc)
{
    fprintf(stderr, "mcefactl: %s\n", *mcefa_last_error() ? mcefa_last_error() : mcefa_strerror(rc));
    return rc == -EACCES || rc == -EPERM ? EXIT_PERM : EXIT_NODAEMON;
}

static void jstr(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int get_status(mcefa_client *c, Mcefa__Response **out)
{
    Mcefa__StatusQuery q = MCEFA__STATUS_QUERY__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_STATUS;
    req.status = &q;
    return client_call(c, &req, NULL, 0, out);
}

static void print_status(const Mcefa__DaemonStatus *d)
{
    size_t by_dmabuf = 0, by_iface = 0; /* NICs registering GPU memory directly */
    for (size_t i = 0; i < d->n_nics; i++) {
        by_dmabuf += !strcmp(d->nics[i]->gpu_registration, "dmabuf");
        by_iface += !strcmp(d->nics[i]->gpu_registration, "iface");
    }
    if (json) {
        printf("{\"version\":");
        jstr(d->daemon_version);
        printf(",\"hostname\":");
        jstr(d->hostname);
        printf(",\"epoch\":\"%016" PRIx64 "\",\"uptime_s\":%.3f,\"provider\":", d->epoch, d->uptime_ms / 1000.0);
        jstr(d->provider);
        printf(",\"log_level\":");
        jstr(d->log_level);
        printf(",\"nics\":%zu,\"peers\":%zu,\"clients\":%zu,\"segments\":%zu,\"transfers_completed\":%" PRIu64
               ",\"transfers_failed\":%" PRIu64 ",\"bytes_local\":%" PRIu64 ",\"bytes_network\":%" PRIu64
               ",\"staging_slots\":%u,\"staging_slot_bytes\":%" PRIu64 ",\"staging_in_use\":%u,\"staging_waiting\":%u"
               ",\"staging_gpu_pinned\":%s,\"gpudirect_nics\":{\"dmabuf\":%zu,\"iface\":%zu}}\n",
               d->n_nics, d->n_peers, d->n_clients, d->n_segments, d->transfers_completed, d->transfers_failed,
               d->bytes_copied, d->bytes_sent, d->staging_slots, d->staging_slot_bytes, d->staging_in_use,
               d->staging_waiting, d->staging_gpu_pinned ? "true" : "false", by_dmabuf, by_iface);
        return;
    }
    printf("mcefad %s on %s\n", d->daemon_version, d->hostname);
    printf("  epoch       %016" PRIx64 "\n  uptime      %.1f s\n  provider    %s (%zu NIC%s)\n", d->epoch,
           d->uptime_ms / 1000.0, d->provider, d->n_nics, d->n_nics == 1 ? "" : "s");
    printf("  log level   %s\n  clients     %zu%s\n  peers       %zu\n  segments    %zu\n", d->log_level, d->n_clients,
           d->admin ? "" : " (yours only: not an admin)", d->n_peers, d->n_segments);
    printf("  transfers   %" PRIu64 " completed, %" PRIu64 " failed\n  bytes       %" PRIu64 " same-host, %" PRIu64
           " over NICs\n",
           d->transfers_completed, d->transfers_failed, d->bytes_copied, d->bytes_sent);
    printf("  GPUs        %zu (%s)\n", d->n_gpus, d->gpu_state);
    if (d->n_nics)
        printf("  GPUDirect   %zu of %zu NIC%s (%zu dmabuf, %zu iface; the others stage GPU memory: see nics)\n",
               by_dmabuf + by_iface, d->n_nics, d->n_nics == 1 ? "" : "s", by_dmabuf, by_iface);
    printf("  staging     %u of %u slots of %" PRIu64 " bytes in use, %u pieces waiting%s\n", d->staging_in_use,
           d->staging_slots, d->staging_slot_bytes, d->staging_waiting,
           d->staging_gpu_pinned ? " (page-locked for GPU copies)" : "");
}

static void print_gpus(const Mcefa__DaemonStatus *d)
{
    if (json) {
        printf("{\"state\":");
        jstr(d->gpu_state);
        printf(",\"gpus\":[");
        for (size_t i = 0; i < d->n_gpus; i++) {
            const Mcefa__GpuInfo *g = d->gpus[i];
            printf("%s{\"bus_id\":", i ? "," : "");
            jstr(g->bus_id);
            printf(",\"name\":");
            jstr(g->name);
            printf(",\"uuid\":");
            jstr(g->uuid);
            printf(",\"imports\":%u,\"import_bytes\":%" PRIu64 "}", g->imports, g->import_bytes);
        }
        printf("]}\n");
        return;
    }
    if (!d->n_gpus) {
        printf("no GPUs in use (%s); the driver loads at the first GPU registration\n", d->gpu_state);
        return;
    }
    printf("%-14s %-32s %-42s %8s %14s\n", "bus id", "name", "uuid", "imports", "bytes mapped");
    for (size_t i = 0; i < d->n_gpus; i++) {
        const Mcefa__GpuInfo *g = d->gpus[i];
        printf("%-14s %-32s %-42s %8u %14" PRIu64 "\n", g->bus_id, g->name, g->uuid, g->imports, g->import_bytes);
    }
}

/* A libfabric version (FI_VERSION: major << 16 | minor) as "2.4". The
 * providers built into libfabric encode their version as FI_VERSION(major
 * * 100 + minor, revision * 10): that reads "2.4.0". */
static const char *fi_ver(uint32_t v, char *buf, size_t len)
{
    unsigned major = v >> 16, minor = v & 0xffff;
    if (!v)
        snprintf(buf, len, "-");
    else if (major >= 100)
        snprintf(buf, len, "%u.%u.%u", major / 100, major % 100, minor / 10);
    else
        snprintf(buf, len, "%u.%u", major, minor);
    return buf;
}

/* Bytes, or "unbounded" for the providers that take any size. */
static const char *bytes_or_unbounded(uint64_t v, char *buf, size_t len)
{
    if (v >= (1ull << 63))
        snprintf(buf, len, "unbounded");
    else
        snprintf(buf, len, "%" PRIu64, v);
    return buf;
}

/* libefa's answer, one line: "read+write, max RDMA 1073741824, inline 32, SQ 4096x2". */
static const char *efa_text(const Mcefa__NicInfo *n, char *buf, size_t len)
{
    const Mcefa__EfaDevice *e = n->efa;
    if (!e)
        snprintf(buf, len, "%s", *n->efa_unknown ? n->efa_unknown : "-");
    else
        snprintf(buf, len, "RDMA %s, max RDMA %" PRIu32 ", inline %u, SQ %ux%u, caps 0x%x",
                 e->rdma_read && e->rdma_write ? "read+write" : e->rdma_read ? "read only" : "none",
                 e->max_rdma_size, e->inline_buf_size, e->max_sq_wr, e->max_sq_sge, e->device_caps);
    return buf;
}

static void print_nics(const Mcefa__DaemonStatus *d)
{
    char v1[16], v2[16], v3[16], efa[256], rma[24];
    if (json) {
        printf("[");
        for (size_t i = 0; i < d->n_nics; i++) {
            const Mcefa__NicInfo *n = d->nics[i];
            printf("%s{\"name\":", i ? "," : "");
            jstr(n->name);
            printf(",\"domain\":");
            jstr(n->domain);
            printf(",\"provider\":");
            jstr(n->provider);
            printf(",\"fabric\":");
            jstr(n->fabric);
            printf(",\"numa_node\":%d,\"link\":", n->numa_node);
            jstr(n->link);
            printf(",\"outstanding\":%" PRIu64 ",\"max_wr\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"ops\":%" PRIu64
                   ",\"errors\":%" PRIu64,
                   n->outstanding, n->max_wr, n->bytes, n->ops, n->errors);
            printf(",\"libfabric_version\":\"%s\",\"provider_version\":\"%s\",\"api_version\":\"%s\"",
                   fi_ver(n->libfabric_version, v1, sizeof(v1)), fi_ver(n->provider_version, v2, sizeof(v2)),
                   fi_ver(n->api_version, v3, sizeof(v3)));
            printf(",\"tx_depth\":%" PRIu64 ",\"max_rma_bytes\":%" PRIu64 ",\"hmem\":%s,\"dmabuf\":%s,\"rma_emulated\":",
                   n->tx_depth, n->max_rma_bytes, n->hmem ? "true" : "false", n->dmabuf ? "true" : "false");
            jstr(n->rma_emulated);
            printf(",\"gpu_registration\":");
            jstr(n->gpu_registration);
            printf(",\"gpu_registration_why\":");
            jstr(n->gpu_registration_why);
            if (n->efa)
                printf(",\"efa\":{\"rdma_read\":%s,\"rdma_write\":%s,\"max_rdma_size\":%u,\"inline_buf_size\":%u,"
                       "\"max_sq_wr\":%u,\"max_sq_sge\":%u,\"max_rq_wr\":%u,\"device_caps\":%u}",
                       n->efa->rdma_read ? "true" : "false", n->efa->rdma_write ? "true" : "false",
                       n->efa->max_rdma_size, n->efa->inline_buf_size, n->efa->max_sq_wr, n->efa->max_sq_sge,
                       n->efa->max_rq_wr, n->efa->device_caps);
            else {
                printf(",\"efa_unknown\":");
                jstr(n->efa_unknown);
            }
            printf("}");
        }
        printf("]\n");
        return;
    }
    if (!d->n_nics) {
        printf("no NICs (provider '%s'): same-host transfers only\n", d->provider);
        return;
    }
    printf("%-16s %-14s %-20s %4s %-8s %11s %14s %10s %7s\n", "NIC", "provider", "fabric", "NUMA", "link",
           "outstanding", "bytes", "ops", "errors");
    for (size_t i = 0; i < d->n_nics; i++) {
        const Mcefa__NicInfo *n = d->nics[i];
        printf("%-16s %-14s %-20s %4d %-8s %5" PRIu64 "/%-5" PRIu64 " %14" PRIu64 " %10" PRIu64 " %7" PRIu64 "\n",
               n->name, n->provider, n->fabric, n->numa_node, n->link, n->outstanding, n->max_wr, n->bytes, n->ops,
               n->errors);
    }
    /* How each NIC was set up: what docs/deployment.md says to check. */
    printf("\n%-16s %-18s %-9s %-8s %-6s %8s %14s %-5s %-7s %-12s %s\n", "NIC", "domain", "libfabric", "provider",
           "API", "tx depth", "max RMA", "HMEM", "GPU reg", "RMA emulated", "EFA device (libefa)");
    for (size_t i = 0; i < d->n_nics; i++) {
        const Mcefa__NicInfo *n = d->nics[i];
        printf("%-16s %-18s %-9s %-8s %-6s %8" PRIu64 " %14s %-5s %-7s %-12s %s\n", n->name, n->domain,
               fi_ver(n->libfabric_version, v1, sizeof(v1)), fi_ver(n->provider_version, v2, sizeof(v2)),
               fi_ver(n->api_version, v3, sizeof(v3)), n->tx_depth,
               bytes_or_unbounded(n->max_rma_bytes, rma, sizeof(rma)), n->hmem ? "yes" : "no",
               *n->gpu_registration ? n->gpu_registration : "-", n->rma_emulated, efa_text(n, efa, sizeof(efa)));
    }
    /* Why each NIC takes GPU memory the way it does (docs/gpu.md). */
    printf("\nGPU memory per NIC (dmabuf, iface, or staging through host buffers):\n");
    for (size_t i = 0; i < d->n_nics; i++) {
        const Mcefa__NicInfo *n = d->nics[i];
        printf("  %-16s %-8s %s\n", n->name, *n->gpu_registration ? n->gpu_registration : "-",
               n->gpu_registration_why);
    }
}

static void print_peers(const Mcefa__DaemonStatus *d)
{
    if (json) {
        printf("[");
        for (size_t i = 0; i < d->n_peers; i++) {
            const Mcefa__PeerInfo *p = d->peers[i];
            printf("%s{\"host\":", i ? "," : "");
            jstr(p->host);
            printf(",\"address\":");
            jstr(p->address);
            printf(",\"epoch\":\"%016" PRIx64 "\",\"connected\":%s,\"nic_pairs\":%u,\"nic_pairs_warm\":%u,"
                   "\"bytes\":%" PRIu64 ",\"ops\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"last_error\":",
                   p->epoch, p->connected ? "true" : "false", p->nic_pairs, p->nic_pairs_warm, p->bytes, p->ops,
                   p->errors);
            jstr(p->last_error);
            printf("}");
        }
        printf("]\n");
        return;
    }
    if (!d->n_peers) {
        printf("no peers yet (they appear on first use or warmup)\n");
        return;
    }
    printf("%-20s %-22s %-16s %-9s %-10s %14s %7s  %s\n", "host", "address", "epoch", "connected", "pairs warm",
           "bytes", "errors", "last error");
    for (size_t i = 0; i < d->n_peers; i++) {
        const Mcefa__PeerInfo *p = d->peers[i];
        printf("%-20s %-22s %016" PRIx64 " %-9s %4u/%-5u %14" PRIu64 " %7" PRIu64 "  %s\n", p->host, p->address,
               p->epoch, p->connected ? "yes" : "no", p->nic_pairs_warm, p->nic_pairs, p->bytes, p->errors,
               p->last_error);
    }
}

static void print_clients(const Mcefa__DaemonStatus *d)
{
    if (json) {
        printf("[");
        for (size_t i = 0; i < d->n_clients; i++) {
            const Mcefa__ClientInfo *c = d->clients[i];
            printf("%s{\"session\":%" PRIu64 ",\"pid\":%u,\"uid\":%u,\"name\":", i ? "," : "", c->session_id, c->pid,
                   c->uid);
            jstr(c->name);
            printf(",\"regions\":%u,\"bytes_registered\":%" PRIu64 ",\"plain_bytes\":%" PRIu64
                   ",\"batches\":%u,\"transfers_in_flight\":%" PRIu64 ",\"segment\":",
                   c->regions, c->bytes_registered, c->plain_bytes, c->batches, c->transfers_in_flight);
            jstr(c->segment);
            printf(",\"gpus\":[");
            for (size_t k = 0; k < c->n_gpus; k++) {
                printf("%s{\"bus_id\":", k ? "," : "");
                jstr(c->gpus[k]->bus_id);
                printf(",\"regions\":%u,\"bytes\":%" PRIu64 "}", c->gpus[k]->regions, c->gpus[k]->bytes);
            }
            printf("]}");
        }
        printf("]\n");
        return;
    }
    printf("%-8s %-8s %-6s %-24s %7s %14s %7s %9s  %s\n", "session", "pid", "uid", "name", "regions", "registered",
           "batches", "in flight", "segment");
    for (size_t i = 0; i < d->n_clients; i++) {
        const Mcefa__ClientInfo *c = d->clients[i];
        printf("%-8" PRIu64 " %-8u %-6u %-24s %7u %14" PRIu64 " %7u %9" PRIu64 "  %s\n", c->session_id, c->pid, c->uid,
               c->name, c->regions, c->bytes_registered, c->batches, c->transfers_in_flight, c->segment);
        /* Host bytes above; plain memory and GPU memory on lines of their own. */
        if (c->plain_bytes)
            printf("%-8s   plain host memory %28" PRIu64 " bytes (copied by cross-memory attach)\n", "", c->plain_bytes);
        for (size_t k = 0; k < c->n_gpus; k++)
            printf("%-8s   GPU %-14s %7u regions %14" PRIu64 " bytes\n", "", c->gpus[k]->bus_id, c->gpus[k]->regions,
                   c->gpus[k]->bytes);
    }
}

static void print_segments(const Mcefa__DaemonStatus *d)
{
    if (json) {
        printf("[");
        for (size_t i = 0; i < d->n_segments; i++) {
            const Mcefa__SegmentSummary *s = d->segments[i];
            printf("%s{\"name\":", i ? "," : "");
            jstr(s->name);
            printf(",\"session\":%" PRIu64 ",\"pid\":%u,\"regions\":%u,\"bytes\":%" PRIu64 "}", s->owner_session,
                   s->owner_pid, s->regions, s->bytes);
        }
        printf("]\n");
        return;
    }
    printf("%-32s %-8s %-8s %7s %14s\n", "segment", "session", "pid", "regions", "bytes");
    for (size_t i = 0; i < d->n_segments; i++) {
        const Mcefa__SegmentSummary *s = d->segments[i];
        printf("%-32s %-8" PRIu64 " %-8u %7u %14" PRIu64 "\n", s->name, s->owner_session, s->owner_pid, s->regions,
               s->bytes);
    }
}

static volatile sig_atomic_t stop;
static void on_int(int s)
{
    (void)s;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmd_stats(mcefa_client *c, double interval, bool watch, long count)
{
    Mcefa__Response *a, *b;
    int rc = get_status(c, &a);
    if (rc < 0)
        return fail("status", rc);
    double ta = now_s();
    signal(SIGINT, on_int);
    if (!json)
        printf("%10s %12s %12s %10s %8s %10s\n", "time (s)", "local MB/s", "network MB/s", "xfers/s", "failed/s",
               "in flight");
    for (long k = 0; !stop && (watch ? (count <= 0 || k < count) : k < 1); k++) {
        usleep((useconds_t)(interval * 1e6));
        if ((rc = get_status(c, &b)) < 0) {
            mcefa__response__free_unpacked(a, NULL);
            return fail("status", rc);
        }
        double tb = now_s(), dt = tb - ta;
        const Mcefa__DaemonStatus *x = a->daemon_status, *y = b->daemon_status;
        uint64_t inflight = 0;
        for (size_t i = 0; i < y->n_clients; i++)
            inflight += y->clients[i]->transfers_in_flight;
        double local = (double)(y->bytes_copied - x->bytes_copied) / dt / 1e6;
        double net = (double)(y->bytes_sent - x->bytes_sent) / dt / 1e6;
        double xf = (double)(y->transfers_completed - x->transfers_completed) / dt;
        double fl = (double)(y->transfers_failed - x->transfers_failed) / dt;
        if (json)
            printf("{\"uptime_s\":%.3f,\"local_MBps\":%.3f,\"network_MBps\":%.3f,\"transfers_per_s\":%.1f,"
                   "\"failed_per_s\":%.1f,\"in_flight\":%" PRIu64 "}\n",
                   y->uptime_ms / 1000.0, local, net, xf, fl, inflight);
        else
            printf("%10.1f %12.1f %12.1f %10.0f %8.0f %10" PRIu64 "\n", y->uptime_ms / 1000.0, local, net, xf, fl,
                   inflight);
        fflush(stdout);
        mcefa__response__free_unpacked(a, NULL);
        a = b;
        ta = tb;
    }
    mcefa__response__free_unpacked(a, NULL);
    return EXIT_OK;
}

/* Writes a new cluster secret for peer_auth=psk: 32 random bytes from the
 * kernel, as hex text, into a file only its owner may read. Refuses to
 * overwrite, so a running cluster's secret is not replaced by accident. */
static int cmd_gen_secret(const char *path)
{
    uint8_t key[32];
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        fprintf(stderr, "mcefactl: gen-secret: no random bytes from the kernel: %s\n", strerror(errno));
        return EXIT_FAILED;
    }
    char hex[2 * sizeof(key) + 2];
    for (size_t i = 0; i < sizeof(key); i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    hex[2 * sizeof(key)] = '\n';
    hex[2 * sizeof(key) + 1] = 0;
    memset(key, 0, sizeof(key));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "mcefactl: gen-secret: cannot create %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (remove it first to make a new secret; every host needs the same one)" : "");
        return EXIT_FAILED;
    }
    size_t len = strlen(hex);
    int ok = fchmod(fd, 0600) == 0 && write(fd, hex, len) == (ssize_t)len && fsync(fd) == 0;
    memset(hex, 0, sizeof(hex));
    if (close(fd) < 0 || !ok) {
        fprintf(stderr, "mcefactl: gen-secret: writing %s failed: %s\n", path, strerror(errno));
        unlink(path);
        return EXIT_FAILED;
    }
    printf("wrote a new peer secret to %s (mode 0600): copy it to every host of the cluster and set "
           "peer_secret_file=%s; the file must belong to the daemon's user\n",
           path, path);
    return EXIT_OK;
}

static void usage(FILE *o)
{
    fprintf(o, "usage: mcefactl [--socket=PATH] [--json] COMMAND\n"
               "  status              version, uptime, provider, epoch, counters\n"
               "  nics                NICs: provider, NUMA node, link, outstanding WRs, bytes/ops/errors; libfabric,\n"
               "                      API, fabric, tx depth, max RMA, HMEM, GPU plan (and why), emulated RMA,\n"
               "                      libefa's device limits\n"
               "  peers               peer hosts: epoch, NIC pairs connected, bytes, last error\n"
               "  clients             clients: pid, uid, name, regions, bytes registered, batches in flight\n"
               "  segments            exported segments\n"
               "  gpus                GPUs the daemon maps client memory on, per GPU\n"
               "  stats [--interval=S] [--watch] [--count=N]   rates\n"
               "  warmup HOST         connect every NIC pair to HOST now\n"
               "  loglevel LEVEL      error|warn|info|debug\n"
               "  gen-secret PATH     write a new peer secret (peer_secret_file) with mode 0600\n"
               "exit: 0 ok, 1 request failed, 2 usage, 3 no daemon, 4 permission denied\n");
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *cmd = NULL, *arg = NULL;
    double interval = 1.0;
    bool watch = false;
    long count = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "--socket=", 9))
            sock = a + 9;
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "--watch"))
            watch = true;
        else if (!strncmp(a, "--interval=", 11))
            interval = atof(a + 11);
        else if (!strncmp(a, "--count=", 8))
            count = atol(a + 8);
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EXIT_OK;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "mcefactl: unknown option '%s'\n", a);
            usage(stderr);
            return EXIT_USAGE;
        } else if (!cmd)
            cmd = a;
        else if (!arg)
            arg = a;
        else {
            fprintf(stderr, "mcefactl: unexpected argument '%s'\n", a);
            return EXIT_USAGE;
        }
    }
    if (!cmd) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (interval <= 0 || interval > 3600) {
        fprintf(stderr, "mcefactl: --interval must be between 0 and 3600 seconds\n");
        return EXIT_USAGE;
    }
    static const char *const known[] = {"status", "nics",     "peers",     "clients", "segments",
                                        "gpus",   "stats",    "warmup",    "loglevel", "gen-secret"};
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok |= !strcmp(cmd, known[i]);
    if (!ok) {
        fprintf(stderr, "mcefactl: unknown command '%s'\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    bool takes_arg = !strcmp(cmd, "warmup") || !strcmp(cmd, "loglevel") || !strcmp(cmd, "gen-secret");
    if (takes_arg && !arg) {
        fprintf(stderr, "mcefactl: %s needs an argument (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (!strcmp(cmd, "gen-secret"))
        return cmd_gen_secret(arg);
    if (!takes_arg && arg) {
        fprintf(stderr, "mcefactl: %s takes no argument ('%s')\n", cmd, arg);
        return EXIT_USAGE;
    }
    if (!strcmp(cmd, "loglevel") && strcmp(arg, "error") && strcmp(arg, "warn") && strcmp(arg, "info") &&
        strcmp(arg, "debug")) {
        fprintf(stderr, "mcefactl: log level '%s' is not one of error, warn, info, debug\n", arg);
        return EXIT_USAGE;
    }
    mcefa_client *c;
    int rc = mcefa_connect(sock, "mcefactl", &c);
    if (rc < 0)
        return fail_connect(rc);
    int ex = EXIT_OK;
    if (!strcmp(cmd, "stats")) {
        ex = cmd_stats(c, interval, watch, count);
    } else if (!strcmp(cmd, "loglevel")) {
        Mcefa__SetLogLevel m = MCEFA__SET_LOG_LEVEL__INIT;
        m.level = (char *)arg;
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.body_case = MCEFA__REQUEST__BODY_SET_LOG_LEVEL;
        req.set_log_level = &m;
        if ((rc = client_call_simple(c, &req)) < 0)
            ex = fail("loglevel", rc);
        else if (json)
            printf("{\"log_level\":\"%s\"}\n", arg);
        else
            printf("log level is now %s\n", arg);
    } else if (!strcmp(cmd, "warmup")) {
        Mcefa__WarmupHost m = MCEFA__WARMUP_HOST__INIT;
        m.host = (char *)arg;
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.body_case = MCEFA__REQUEST__BODY_WARMUP_HOST;
        req.warmup_host = &m;
        Mcefa__Response *resp;
        if ((rc = client_call(c, &req, NULL, 0, &resp)) < 0) {
            ex = fail("warmup", rc);
        } else {
            unsigned pairs = resp->body_case == MCEFA__RESPONSE__BODY_WARMUP ? resp->warmup->nic_pairs : 0;
            double ms = resp->body_case == MCEFA__RESPONSE__BODY_WARMUP ? resp->warmup->elapsed_us / 1000.0 : 0;
            if (json)
                printf("{\"host\":\"%s\",\"nic_pairs\":%u,\"elapsed_ms\":%.3f}\n", arg, pairs, ms);
            else
                printf("%s: %u NIC pair%s connected (%.1f ms)\n", arg, pairs, pairs == 1 ? "" : "s", ms);
            mcefa__response__free_unpacked(resp, NULL);
        }
    } else {
        Mcefa__Response *resp;
        if ((rc = get_status(c, &resp)) < 0) {
            ex = fail(cmd, rc);
        } else {
            const Mcefa__DaemonStatus *d = resp->daemon_status;
            if (!strcmp(cmd, "status"))
                print_status(d);
            else if (!strcmp(cmd, "nics"))
                print_nics(d);
            else if (!strcmp(cmd, "peers"))
                print_peers(d);
            else if (!strcmp(cmd, "clients")) {
                if (!d->admin && !json)
                    fprintf(stderr, "mcefactl: not an admin: only this connection is listed\n");
                print_clients(d);
            } else if (!strcmp(cmd, "gpus"))
                print_gpus(d);
            else
                print_segments(d);
            mcefa__response__free_unpacked(resp, NULL);
        }
    }
    mcefa_disconnect(c);
    return ex;
}
