/* mcefad: configuration, start-up order, signals, shutdown. */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "nic.h"
#include "peer.h"
#include "topo.h"

daemon_ctx mcefad;

const uint64_t lat_bounds_us[LAT_BUCKETS] = {50,    100,    250,    500,    1000,    2500,    5000,
                                             10000, 25000, 50000, 100000, 250000, 1000000, 10000000};

void daemon_record_latency(uint64_t us)
{
    unsigned i = 0;
    while (i < LAT_BUCKETS && us > lat_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&mcefad.lat_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mcefad.lat_sum_us, us, memory_order_relaxed);
}

uint64_t daemon_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t daemon_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --print-topology: each GPU and the NICs that will serve its memory. */
static int print_topology(const char *xml)
{
    topo t = {0};
    int rc = *xml ? topo_load_hwloc_xml(xml, &t) : topo_load_sysfs("/sys", &t);
    if (rc < 0) {
        fprintf(stderr, "mcefad: cannot read the topology from %s: %s\n", *xml ? xml : "/sys", strerror(-rc));
        config_free(&mcefad.cfg);
        return 2;
    }
    /* Only the NICs this configuration would use. */
    if (*mcefad.cfg.nics) {
        const char *names[64];
        char *dup = strdup(mcefad.cfg.nics), *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(dup, ",", &save); tok && n < 64; tok = strtok_r(NULL, ",", &save))
            names[n++] = tok;
        topo_keep_nics(&t, names, n);
        free(dup);
    } else if (!strcmp(mcefad.cfg.provider, "efa")) {
        const char *efa = "rdmap";
        topo_keep_nics(&t, &efa, 1);
    }
    unsigned gpus = 0, nics = 0;
    for (size_t i = 0; i < t.n; i++)
        t.devs[i].gpu ? gpus++ : nics++;
    printf("%u GPU(s), %u NIC(s)\n", gpus, nics);
    for (size_t i = 0; i < t.n; i++) {
        if (!t.devs[i].gpu)
            continue;
        const char *near[64];
        int n = topo_gpu_nics(&t, t.devs[i].busid, near, 64);
        printf("GPU %s (NUMA %d):", t.devs[i].busid, t.devs[i].numa);
        for (int k = 0; k < n && k < 64; k++)
            printf(" %s", near[k]);
        printf("\n");
    }
    topo_free(&t);
    config_free(&mcefad.cfg);
    return 0;
}

static uv_signal_t sig_int, sig_term;

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("%s received: shutting down", strsignal(signum));
    notify_send("STOPPING=1");
    server_stop();
    peer_stop();
    metrics_stop();
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_term);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    (void)h;
}

int main(int argc, char **argv)
{
    int rc = config_load(&mcefad.cfg, argc, argv);
    if (rc == 0)
        rc = config_validate(&mcefad.cfg);
    if (rc != 0) {
        config_free(&mcefad.cfg);
        return rc > 0 ? 0 : 2;
    }
    if (mcefad.cfg.print_topology)
        return print_topology(mcefad.cfg.print_topology);
    if (mcefad.cfg.check_only) {
        printf("configuration OK%s%s\n", mcefad.cfg.config_file ? ": " : "",
               mcefad.cfg.config_file ? mcefad.cfg.config_file : "");
        config_free(&mcefad.cfg);
        return 0;
    }
    log_threshold = log_parse_level(mcefad.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);

    if (*mcefad.cfg.hostname)
        snprintf(mcefad.hostname, sizeof(mcefad.hostname), "%s", mcefad.cfg.hostname);
    else if (gethostname(mcefad.hostname, sizeof(mcefad.hostname) - 1) < 0)
        strcpy(mcefad.hostname, "localhost");
    /* The epoch tells peers this is a new incarnation of the daemon. */
    if (getrandom(&mcefad.epoch, sizeof(mcefad.epoch), 0) != sizeof(mcefad.epoch))
        mcefad.epoch = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    mcefad.epoch |= 1;
    mcefad.start_ms = daemon_now_ms();
    mcefad.next_segment_port = mcefad.cfg.segment_port_base;
    struct group *g = *mcefad.cfg.admin_group ? getgrnam(mcefad.cfg.admin_group) : NULL;
    mcefad.admin_gid = g ? (int)g->gr_gid : -1;
    mcefad.loop = uv_default_loop();

    if ((rc = local_init((unsigned)mcefad.cfg.copy_threads)) < 0) {
        log_error("cannot start %llu copy threads: %s", (unsigned long long)mcefad.cfg.copy_threads,
                  strerror(-rc));
        return 1;
    }
    /* NICs first: READY (socket listening) means every NIC context is up. */
    if ((rc = nic_init()) < 0 || (rc = peer_start()) < 0) {
        nic_shutdown();
        local_shutdown();
        return 1;
    }
    if ((rc = metrics_start()) < 0 || (rc = server_start()) < 0) {
        metrics_stop();
        peer_stop();
        nic_shutdown();
        local_shutdown();
        return 1;
    }
    uv_signal_init(mcefad.loop, &sig_int);
    uv_signal_init(mcefad.loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    log_info("mcefad %s ready on host %s (epoch %016llx, %llu copy threads)", MCEFAD_VERSION, mcefad.hostname,
             (unsigned long long)mcefad.epoch, (unsigned long long)mcefad.cfg.copy_threads);
    /* Every NIC context is up and the sockets listen: tell systemd. */
    char ready[300];
    snprintf(ready, sizeof(ready), "READY=1\nSTATUS=serving %s on %u NIC(s) with provider %s", mcefad.cfg.socket_path,
             nnics, mcefad.cfg.provider);
    notify_send(ready);

    uv_run(mcefad.loop, UV_RUN_DEFAULT);

    /* Copies in flight finish before the threads go; sessions are freed as
     * their last transfer completes. */
    local_shutdown();
    nic_shutdown();
    peer_free_all(); /* after the NIC workers: their ops point into peers */
    uv_loop_close(mcefad.loop);
    config_free(&mcefad.cfg);
    log_info("stopped");
    return 0;
}
