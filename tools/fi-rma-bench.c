/* fi-rma-bench: the smallest two-process libfabric RMA benchmark we could
 * write, as the yardstick for mcefad's network path. Same provider, block
 * size and window as the daemon run; no daemon, no batching, busy polling.
 *
 *   fi-rma-bench --mode=target --provider=P --nic=N --buffer_size=B
 *       prints one line "target <addr-hex> <key> <rma-base> <len>" and serves
 *       (driving progress) until killed
 *   fi-rma-bench --mode=initiator --provider=P --nic=N --target='<that line>'
 *       --operation=write|read --block_size=S --window=W --duration=D
 *
 * --nic takes a device (rdmap79s0) or domain (rdmap79s0-rdm) name;
 * --fabric=F (efa, efa-direct) picks that fabric, else the first listed.
 * It asks libfabric what mcefad asks (API version, remote communication
 * only, FI_HMEM=system unless set) so the two compare like with like.
 */
#include <errno.h>
#include <inttypes.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "fabric_version.h"

static const char *mode = "initiator", *provider = "tcp;ofi_rxm", *nic_name = "lo", *target = "",
                  *operation = "write", *fabric_name = "";
static uint64_t block = 1 << 20, window = 64, buffer_size = 256 << 20;
static double duration = 5;
static bool json;

static struct fi_info *info;
static struct fid_fabric *fabric;
static struct fid_domain *domain;
static struct fid_av *av;
static struct fid_cq *cq;
static struct fid_ep *ep;
static struct fid_mr *mr;
static char *buf;

#define OK(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (int)(call);                                                                     \
        if (rc_) {                                                                                 \
            fprintf(stderr, "fi-rma-bench: %s: %s\n", #call, fi_strerror(rc_ < 0 ? -rc_ : rc_));   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct fi_info *hints, *list;

static int ask_getinfo(uint32_t version, void *arg)
{
    (void)arg;
    return fi_getinfo(version, NULL, NULL, 0, hints, &list);
}

static bool nic_matches(const struct fi_info *fi)
{
    const char *dev = fi->nic && fi->nic->device_attr ? fi->nic->device_attr->name : NULL;
    return (!strcmp(fi->domain_attr->name, nic_name) || (dev && !strcmp(dev, nic_name))) &&
           (!*fabric_name || !strcmp(fi->fabric_attr->name, fabric_name));
}

static void open_nic(void)
{
    setenv("FI_HMEM", "system", 0); /* no GPU probing: host memory only */
    hints = fi_allocinfo();
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_REMOTE_COMM;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    hints->fabric_attr->prov_name = strdup(provider);
    hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE; /* as the daemon asks */
    uint32_t api;
    OK(fabric_version_negotiate(FABRIC_VERSION_HEADERS, fi_version(), ask_getinfo, NULL, &api));
    for (struct fi_info *fi = list; fi && !info; fi = fi->next)
        if (nic_matches(fi))
            info = fi_dupinfo(fi);
    fi_freeinfo(list);
    fi_freeinfo(hints);
    if (!info) {
        fprintf(stderr, "fi-rma-bench: provider %s has no NIC named %s%s%s\n", provider, nic_name,
                *fabric_name ? " on fabric " : "", fabric_name);
        exit(1);
    }
    fprintf(stderr, "fi-rma-bench: libfabric %u.%u, API %u.%u, fabric %s, domain %s\n", FI_MAJOR(fi_version()),
            FI_MINOR(fi_version()), FI_MAJOR(api), FI_MINOR(api), info->fabric_attr->name, info->domain_attr->name);
    OK(fi_fabric(info->fabric_attr, &fabric, NULL));
    OK(fi_domain(fabric, info, &domain, NULL));
    struct fi_av_attr aa = {.type = FI_AV_TABLE};
    OK(fi_av_open(domain, &aa, &av, NULL));
    struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 4096};
    OK(fi_cq_open(domain, &ca, &cq, NULL));
    OK(fi_endpoint(domain, info, &ep, NULL));
    OK(fi_ep_bind(ep, &av->fid, 0));
    OK(fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV));
    OK(fi_enable(ep));
    buf = mmap(NULL, buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    memset(buf, 1, buffer_size);
    OK(fi_mr_reg(domain, buf, buffer_size, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 7, 0, &mr, NULL));
    if (info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
        OK(fi_mr_bind(mr, &ep->fid, 0));
        OK(fi_mr_enable(mr));
    }
}

static volatile sig_atomic_t stop;
static void on_stop(int s)
{
    (void)s;
    stop = 1;
}

static int run_target(void)
{
    uint8_t addr[64];
    size_t alen = sizeof(addr);
    OK(fi_getname(&ep->fid, addr, &alen));
    printf("target ");
    for (size_t i = 0; i < alen; i++)
        printf("%02x", addr[i]);
    uint64_t base = (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
    printf(" %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", fi_mr_key(mr), base, buffer_size);
    fflush(stdout);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    struct fi_cq_entry e[16];
    while (!stop)
        fi_cq_read(cq, e, 16); /* the passive side must drive progress */
    return 0;
}

static int run_initiator(void)
{
    char hex[200];
    uint64_t key, base, len;
    if (sscanf(target, "target %199s %" SCNu64 " %" SCNu64 " %" SCNu64, hex, &key, &base, &len) != 4) {
        fprintf(stderr, "fi-rma-bench: --target must be the line the target printed\n");
        return 2;
    }
    uint8_t addr[64];
    size_t alen = strlen(hex) / 2;
    for (size_t i = 0; i < alen && i < sizeof(addr); i++)
        sscanf(hex + 2 * i, "%2hhx", &addr[i]);
    fi_addr_t peer;
    if (fi_av_insert(av, addr, 1, &peer, 0, NULL) != 1) {
        fprintf(stderr, "fi-rma-bench: fi_av_insert failed\n");
        return 1;
    }
    uint64_t span = (len < buffer_size ? len : buffer_size) / block * block, off = 0, bytes = 0, inflight = 0;
    bool wr = !strcmp(operation, "write");
    void *desc = fi_mr_desc(mr);
    struct fi_context2 *ctx = calloc(window, sizeof(*ctx));
    uint64_t next_ctx = 0;
    double t0 = now_s(), end = t0 + duration;
    struct fi_cq_entry e[64];
    while (now_s() < end || inflight) {
        while (inflight < window && now_s() < end) {
            if (off + block > span)
                off = 0;
            struct iovec iov = {buf + off, block};
            struct fi_rma_iov rma = {base + off, block, key};
            struct fi_msg_rma m = {.msg_iov = &iov, .desc = &desc, .iov_count = 1, .addr = peer, .rma_iov = &rma,
                                   .rma_iov_count = 1, .context = &ctx[next_ctx++ % window]};
            ssize_t rc = wr ? fi_writemsg(ep, &m, FI_COMPLETION | FI_DELIVERY_COMPLETE) : fi_readmsg(ep, &m, FI_COMPLETION);
            if (rc == -FI_EAGAIN)
                break;
            OK(rc);
            inflight++;
            off += block;
        }
        ssize_t n = fi_cq_read(cq, e, 64);
        if (n > 0) {
            inflight -= (uint64_t)n;
            bytes += (uint64_t)n * block;
        } else if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry err = {0};
            fi_cq_readerr(cq, &err, 0);
            fprintf(stderr, "fi-rma-bench: completion error: %s\n", fi_strerror(err.err));
            return 1;
        }
    }
    double el = now_s() - t0;
    if (json)
        printf("{\"tool\":\"fi-rma-bench\",\"operation\":\"%s\",\"block_size\":%" PRIu64 ",\"window\":%" PRIu64
               ",\"throughput\":%.4f,\"unit\":\"GB/s\",\"ops_per_s\":%.1f}\n",
               operation, block, window, bytes / el / 1e9, bytes / block / el);
    else
        printf("fi-rma-bench %s  block %" PRIu64 "  window %" PRIu64 "  throughput: %.3f GB/s  ops: %.0f/s\n",
               operation, block, window, bytes / el / 1e9, bytes / block / el);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *a = argv[i], *v = strchr(a, '=');
        if (!v || strncmp(a, "--", 2)) {
            if (!strcmp(a, "--json")) {
                json = true;
                continue;
            }
            fprintf(stderr, "fi-rma-bench: bad argument '%s' (see the comment at the top of tools/fi-rma-bench.c)\n",
                    a);
            return 2;
        }
        *v++ = 0;
        if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--provider"))
            provider = v;
        else if (!strcmp(a, "--nic"))
            nic_name = v;
        else if (!strcmp(a, "--fabric"))
            fabric_name = v;
        else if (!strcmp(a, "--target"))
            target = v;
        else if (!strcmp(a, "--operation"))
            operation = v;
        else if (!strcmp(a, "--block_size"))
            block = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--window"))
            window = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--buffer_size"))
            buffer_size = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--duration"))
            duration = strtod(v, NULL);
        else {
            fprintf(stderr, "fi-rma-bench: unknown flag --%s\n", a + 2);
            return 2;
        }
    }
    if (!block || !window || block > buffer_size) {
        fprintf(stderr, "fi-rma-bench: block_size and window must be > 0 and block_size <= buffer_size\n");
        return 2;
    }
    open_nic();
    return !strcmp(mode, "target") ? run_target() : run_initiator();
}
