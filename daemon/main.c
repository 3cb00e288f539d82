/* mcefad's composition root: loads the settings, starts the layers
 * bottom-up, runs the loop, stops them top-down. Nothing else lives here. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "affinity.h"
#include "config.h"
#include "copypool.h"
#include "defer.h"
#include "fdtable.h"
#include "gpu.h"
#include "ident.h"
#include "log.h"
#include "metrics.h"
#include "nic.h"
#include "nic_worker.h"
#include "notify.h"
#include "peer_desc.h"
#include "peer_stage.h"
#include "peer_auth.h"
#include "peer_hello.h"
#include "ring.h"
#include "peer_link.h"
#include "peer_notify.h"
#include "peer_table.h"
#include "resolve.h"
#include "rpc.h"
#include "segment.h"
#include "server.h"
#include "session.h"
#include "staging.h"
#include "topo.h"
#include "warmup.h"
#include "xfer.h"
#include "xfer_stage.h"

/* Connections that have not said hello hold up to two frames of buffer:
 * bound how many anyone can open. */
#define PEER_CONNS_MAX 1024

/* --print-topology: each GPU and the NICs that will serve its memory. */
static int print_topology(const char *where)
{
    topo t = {0};
    char sysroot[PATH_MAX];
    int rc = topo_load_setting(where, &t, sysroot, sizeof(sysroot));
    if (rc < 0) {
        fprintf(stderr, "mcefad: cannot read the topology from %s: %s (an hwloc XML export, a sysfs tree, or none "
                        "for this host)\n",
                *where ? where : "/sys", strerror(-rc));
        topo_free(&t);
        config_free(&config);
        return 2;
    }
    /* Only the NICs this configuration would use. */
    if (*config.nics) {
        const char *names[64];
        char *dup = strdup(config.nics), *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(dup, ",", &save); tok && n < 64; tok = strtok_r(NULL, ",", &save))
            names[n++] = tok;
        topo_keep_nics(&t, names, n);
        free(dup);
    } else if (!strcmp(config.provider, "efa")) {
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
    config_free(&config);
    return 0;
}

static uv_signal_t sig_int, sig_term;

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("%s received: shutting down", strsignal(signum));
    notify_send("STOPPING=1");
    server_stop();
    ring_stop();
    peer_link_stop();
    metrics_stop();
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_term);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    (void)h;
}

/* The layers that work on the loop, bottom-up. */
static int start_loop_layers(uv_loop_t *loop)
{
    struct group *g = *config.admin_group ? getgrnam(config.admin_group) : NULL;
    defer_init(loop);
    session_init(g ? (int)g->gr_gid : -1);
    segment_init(ident_hostname(), config.segment_port_base);
    xfer_init(config.copy_chunk_bytes, config.stripe_threshold, config.request_timeout_ms);
    ring_init(loop, config.ring_spin_us);
    xfer_on_run_done(ring_work_done);
    rpc_memory_init(loop);
    peer_table_init(nic_count(), (unsigned)config.max_peers);
    resolve_init(loop, config.peer_hosts, (unsigned)config.peer_port);
    peer_table_set_resolver(resolve_address);
    peer_hello_init(config.provider);
    peer_desc_init();
    xfer_stage_init(loop, config.request_timeout_ms);
    peer_stage_init();
    peer_notify_init();
    warmup_init(loop, config.request_timeout_ms);
    int rc;
    if (nic_count() &&
        (rc = peer_link_start(loop, config.peer_listen, (unsigned)config.peer_port, PEER_CONNS_MAX)) < 0)
        return rc;
    if ((rc = metrics_start(loop, config.metrics_listen)) < 0 ||
        (rc = server_start(loop, config.socket_path, (unsigned)config.socket_mode)) < 0) {
        metrics_stop();
        peer_link_stop();
        return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = config_load(&config, argc, argv);
    if (rc == 0)
        rc = config_validate(&config);
    if (rc != 0) {
        config_free(&config);
        return rc > 0 ? 0 : 2;
    }
    if (config.print_topology)
        return print_topology(config.print_topology);
    if (config.check_only) {
        printf("configuration OK%s%s\n", config.config_file ? ": " : "", config.config_file ? config.config_file : "");
        config_free(&config);
        return 0;
    }
    log_threshold = log_parse_level(config.log_level);
    /* libuv's worker threads run registrations (seconds each for large
     * buffers) and name lookups: the default 4 would let a few large
     * registrations hold up everything else queued there. */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    signal(SIGPIPE, SIG_IGN);
    /* Before the first thread (fdtable.h says why). */
    err fd_err = {0};
    if (fdtable_reserve(FDTABLE_RESERVE, &fd_err) < 0)
        log_warn("%s: connections to many NIC pairs at once may stall while the kernel grows the table",
                 fd_err.text);
    ident_init(config.hostname);
    uv_loop_t *loop = uv_default_loop();

    if ((rc = copypool_init((unsigned)config.copy_threads)) < 0) {
        log_error("cannot start %llu copy threads: %s", (unsigned long long)config.copy_threads, strerror(-rc));
        return 1;
    }
    /* The driver's path before the NICs: their GPU plans may load it. */
    gpu_init(config.cuda_library);
    /* NICs first: READY (socket listening) means every NIC context is up. */
    if ((rc = nic_init(&config)) < 0) {
        nic_worker_stop();
        nic_shutdown();
        copypool_shutdown();
        return 1;
    }
    /* What clients are told about device placement: after the NICs, whose
     * distances it holds. A topology it cannot read was logged. */
    affinity_init(config.topology);
    /* Peers are served only with NICs; then they must authenticate. A
     * missing or open secret is a configuration error: status 2, which
     * the unit does not restart on. */
    err auth_err = {0};
    if (nic_count() && peer_auth_init(config.peer_auth, config.peer_secret_file, &auth_err) < 0) {
        log_error("%s", auth_err.text);
        nic_shutdown();
        copypool_shutdown();
        config_free(&config);
        return 2;
    }
    err stage_err = {0};
    if (staging_init(config.staging_bytes, config.staging_slot_bytes, &stage_err) < 0) {
        log_error("%s", stage_err.text);
        nic_shutdown();
        copypool_shutdown();
        config_free(&config);
        return 1;
    }
    if ((rc = nic_worker_start((unsigned)config.nic_workers, config.spin_us)) < 0 ||
        (rc = start_loop_layers(loop)) < 0) {
        nic_worker_stop();
        staging_shutdown();
        nic_shutdown();
        copypool_shutdown();
        return 1;
    }
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    log_info("mcefad %s ready on host %s (epoch %016llx, %llu copy threads)", MCEFA_VERSION, ident_hostname(),
             (unsigned long long)ident_epoch(), (unsigned long long)config.copy_threads);
    /* Every NIC context is up and the sockets listen: tell systemd. */
    char ready[300];
    snprintf(ready, sizeof(ready), "READY=1\nSTATUS=serving %s on %u NIC(s) with provider %s", config.socket_path,
             nic_count(), config.provider);
    notify_send(ready);

    uv_run(loop, UV_RUN_DEFAULT);

    /* Copies in flight finish before the threads go; sessions are freed as
     * their last transfer completes. */
    copypool_shutdown();
    ring_shutdown(); /* the copy threads sent their last wake-ups */
    nic_worker_stop();
    /* What the threads handed back to the loop in the end runs here, then
     * staged pieces still waiting end, and what they hand back runs. */
    defer_drain();
    xfer_stage_shutdown();
    defer_drain();
    gpu_shutdown(); /* GPU regions released meanwhile are unmapped now */
    staging_shutdown(); /* its NIC registrations before the NICs */
    nic_shutdown();
    peer_table_free(); /* after the NIC workers: their ops point into peers */
    peer_auth_shutdown();
    defer_close();
    uv_run(loop, UV_RUN_NOWAIT);
    uv_loop_close(loop);
    config_free(&config);
    log_info("stopped");
    return 0;
}
