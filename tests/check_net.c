/* Two daemons on this machine that reach each other only through libfabric
 * (tcp;ofi_rxm over loopback): the transfer engine's own test list, then
 * faults. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include <limits.h>

#include "net_harness.h"
#include "suite.h"
#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"
#endif

static test_daemon A, B;
static int port_a, port_b, port_z, port_c, port_m;
static char sock_b_copy[96];
/* --cuda_library=... for daemon A where the build has CUDA: A's clients
 * may register (stand-in) GPU memory; empty otherwise. */
static char cuda_flag[600] = "--log_level=debug";

static void start_b(void)
{
    char host[64], port[64], map[96];
    snprintf(host, sizeof(host), "--hostname=hostb");
    snprintf(port, sizeof(port), "--peer_port=%d", port_b);
    snprintf(map, sizeof(map), "--peer_hosts=hosta=127.0.0.1:%d", port_a);
    const char *args[] = {"--provider=tcp;ofi_rxm", "--nics=lo", host, port, map, "--request_timeout_ms=3000", NULL};
    daemon_start(&B, args);
}

/* A third host for the tests that need one; it finds hosta at port. */
static void start_c(test_daemon *C, int hosta_port)
{
    char port[64], map[160];
    snprintf(port, sizeof(port), "--peer_port=%d", port_c);
    snprintf(map, sizeof(map), "--peer_hosts=hosta=127.0.0.1:%d", hosta_port);
    const char *args[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hostc", port, map,
                          "--request_timeout_ms=3000", NULL};
    daemon_start(C, args);
}

static void setup(void)
{
    port_a = free_ports(5);
    port_b = port_a + 1;
    port_z = port_a + 2; /* "hostz": a listener that never answers */
    port_c = port_a + 3;
    port_m = port_a + 4; /* A's metrics */
    char port[64], map[200], metrics[64];
    snprintf(port, sizeof(port), "--peer_port=%d", port_a);
    snprintf(map, sizeof(map), "--peer_hosts=hostb=127.0.0.1:%d,hostz=127.0.0.1:%d,hostc=127.0.0.1:%d", port_b,
             port_z, port_c);
    snprintf(metrics, sizeof(metrics), "--metrics_listen=127.0.0.1:%d", port_m);
    /* A small work-request cap: every batch below overflows it, and must
     * still succeed (the excess waits in the daemon). */
    const char *args[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hosta", port, map,
                          "--request_timeout_ms=3000", "--max_wr=8", metrics, cuda_flag, NULL};
    daemon_start(&A, args);
    start_b();
    snprintf(sock_b_copy, sizeof(sock_b_copy), "%s", B.sock);
}

static void teardown(void)
{
    daemon_stop(&A);
    daemon_stop(&B);
}

START_TEST(install)
{
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "probe", &c), 0);
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    ck_assert_str_eq(st.hostname, "hosta");
    mcefa_disconnect(c);
    char out[4096];
    snprintf(out, sizeof(out), "%s/mcefactl --socket=%s --json nics | grep -q '\"max_wr\":8'", build_dir(), A.sock);
    ck_assert_int_eq(system(out), 0);
    /* lo's state as the kernel reports it (loopback says "unknown"). */
    snprintf(out, sizeof(out), "%s/mcefactl --socket=%s --json nics | grep -q \"\\\"link\\\":\\\"$(cat /sys/class/net/lo/operstate)\\\"\"",
             build_dir(), A.sock);
    ck_assert_msg(system(out) == 0, "%s", out);
    /* The log names the NIC and provider it opened. */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "grep -q 'NIC lo: provider tcp;ofi_rxm' %s", A.log);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(loopback_write)
{
    net_target t;
    net_target_start(&t, B.sock, 4 << 20);
    ck_assert_str_eq(t.name, "hostb:15000");
    initiator in;
    initiator_open(&in, A.sock, 4 << 20, t.name);
    pattern(in.buf, 1 << 20, 7);
    mcefa_transfer x = {MCEFA_WRITE, in.buf, in.seg, t.addr, 1 << 20};
    int rc = mcefa_transfer_sync(in.c, &x, 1, 10000);
    ck_assert_msg(rc == 0, "write: %s", mcefa_last_error());
    ck_assert(net_target_check(&t, 0, 1 << 20, 7));
    ck_assert(net_target_check(&t, 1 << 20, 3 << 20, 1)); /* the rest untouched */
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(write_then_read)
{
    size_t size = 8 << 20;
    net_target t;
    net_target_start(&t, B.sock, size);
    initiator in;
    initiator_open(&in, A.sock, size, t.name);
    /* Read the target's pattern, then write a new one and read it back. */
    mcefa_transfer r = {MCEFA_READ, in.buf, in.seg, t.addr, size};
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &r, 1, 10000), 0);
    ck_assert(pattern_ok(in.buf, size, 1));
    pattern(in.buf, size, 9);
    mcefa_transfer w = {MCEFA_WRITE, in.buf, in.seg, t.addr, size};
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &w, 1, 10000), 0);
    memset(in.buf, 0, size);
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &r, 1, 10000), 0);
    ck_assert(pattern_ok(in.buf, size, 9));
    ck_assert(net_target_check(&t, 0, size, 9));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(multi_write_batch)
{
    net_target t;
    net_target_start(&t, B.sock, 16 << 16);
    initiator in;
    initiator_open(&in, A.sock, 16 << 16, t.name);
    pattern(in.buf, 16 << 16, 3);
    mcefa_transfer x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, in.buf + (i << 16), in.seg, t.addr + ((uint64_t)i << 16), 1 << 16};
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(in.c, 16, &b), 0);
    ck_assert_int_eq(mcefa_batch_submit(b, x, 16), 0);
    ck_assert_int_eq(mcefa_batch_wait(b, 10000), 0);
    for (uint32_t i = 0; i < 16; i++)
        ck_assert_int_eq(mcefa_batch_state(b, i, NULL), MCEFA_COMPLETED);
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    ck_assert(net_target_check(&t, 0, 16 << 16, 3));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(stress_multiple_batches)
{
    net_target t;
    net_target_start(&t, B.sock, 160 << 16);
    initiator in;
    initiator_open(&in, A.sock, 160 << 16, t.name);
    pattern(in.buf, 160 << 16, 5);
    mcefa_batch *b[20];
    for (int k = 0; k < 20; k++) {
        mcefa_transfer x[8];
        for (int i = 0; i < 8; i++) {
            uint64_t off = (uint64_t)(k * 8 + i) << 16;
            x[i] = (mcefa_transfer){MCEFA_WRITE, in.buf + off, in.seg, t.addr + off, 1 << 16};
        }
        ck_assert_int_eq(mcefa_batch_alloc(in.c, 8, &b[k]), 0);
        ck_assert_int_eq(mcefa_batch_submit(b[k], x, 8), 0);
    }
    for (int k = 0; k < 20; k++) {
        ck_assert_int_eq(mcefa_batch_wait(b[k], 10000), 0);
        ck_assert_int_eq(mcefa_batch_free(b[k]), 0);
    }
    ck_assert(net_target_check(&t, 0, 160 << 16, 5));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(warmup_self_and_twice)
{
    net_target local, remote;
    net_target_start(&local, A.sock, 1 << 20);
    net_target_start(&remote, B.sock, 1 << 20);
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "warm", &c), 0);
    unsigned pairs = 99;
    ck_assert_int_eq(mcefa_segment_warmup(c, local.name, &pairs), 0);
    ck_assert_uint_eq(pairs, 0); /* same host: nothing to connect */
    int rc = mcefa_segment_warmup(c, remote.name, &pairs);
    ck_assert_msg(rc == 0, "warmup: %s", mcefa_last_error());
    ck_assert_uint_eq(pairs, 1);
    ck_assert_int_eq(mcefa_segment_warmup(c, remote.name, &pairs), 0);
    ck_assert_uint_eq(pairs, 1);
    mcefa_disconnect(c);
    net_target_stop(&local);
    net_target_stop(&remote);
}
END_TEST

START_TEST(warmup_unknown_segment)
{
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "warm", &c), 0);
    ck_assert_int_eq(mcefa_segment_warmup(c, "hostb:9999", NULL), -ENOENT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "hostb:9999"));
    /* A host whose daemon is not there fails with the reason, not a hang. */
    ck_assert_int_lt(mcefa_segment_warmup(c, "no-such-host.invalid:1", NULL), 0);
    ck_assert_msg(strstr(mcefa_last_error(), "cannot reach") != NULL, "got: %s", mcefa_last_error());
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "hostb:9999", &seg), -ENOENT);
    ck_assert_int_eq(mcefa_segment_open(c, "127.0.0.1:9999", &seg), -ENOENT); /* loopback = this host */
    mcefa_disconnect(c);
}
END_TEST

START_TEST(register_memory_batch)
{
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "reg", &c), 0);
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, 32 << 16, -1, 0, (void **)&buf), 0);
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(mcefa_register(c, buf + (i << 16), 1 << 16), 0);
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(mcefa_unregister(c, buf + (i << 16)), 0);
    ck_assert_int_eq(mcefa_unregister(c, buf), -ENOENT);
    mcefa_disconnect(c);
}
END_TEST

START_TEST(large_transfer)
{
    size_t size = 128 << 20;
    net_target t;
    net_target_start(&t, B.sock, size);
    initiator in;
    initiator_open(&in, A.sock, size, t.name);
    pattern(in.buf, size, 11);
    /* 64 x 1 MiB, then the remaining 64 MiB as one request. */
    mcefa_transfer x[65];
    for (int i = 0; i < 64; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, in.buf + ((size_t)i << 20), in.seg, t.addr + ((uint64_t)i << 20), 1 << 20};
    x[64] = (mcefa_transfer){MCEFA_WRITE, in.buf + (64 << 20), in.seg, t.addr + (64 << 20), 64 << 20};
    int rc = mcefa_transfer_sync(in.c, x, 65, 30000);
    ck_assert_msg(rc == 0, "large: %s", mcefa_last_error());
    ck_assert(net_target_check(&t, 0, size, 11));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(repeated_open_segment)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    for (int k = 0; k < 10; k++) {
        mcefa_segment s2;
        ck_assert_int_eq(mcefa_segment_open(in.c, t.name, &s2), 0);
        ck_assert_uint_eq(s2, in.seg);
        pattern(in.buf, 4096, (unsigned)k);
        mcefa_transfer x = {MCEFA_WRITE, in.buf, s2, t.addr + (uint64_t)k * 4096, 4096};
        ck_assert_int_eq(mcefa_transfer_sync(in.c, &x, 1, 10000), 0);
        memset(in.buf, 0, 4096);
        mcefa_transfer r = {MCEFA_READ, in.buf, s2, t.addr + (uint64_t)k * 4096, 4096};
        ck_assert_int_eq(mcefa_transfer_sync(in.c, &r, 1, 10000), 0);
        ck_assert(pattern_ok(in.buf, 4096, (unsigned)k));
    }
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(remote_range_rejected_before_posting)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    mcefa_transfer x = {MCEFA_WRITE, in.buf, in.seg, t.addr + (1 << 20) - 100, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &x, 1, 5000), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "hostb"));
    x.remote = 0x1000;
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &x, 1, 5000), -EFAULT);
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(in.c, &st), 0);
    ck_assert(net_target_check(&t, 0, 1 << 20, 1));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

/* The initiator holds a description whose key the target no longer honours
 * (the region was unregistered there): the write must fail and leave the
 * target's memory as it was. */
START_TEST(stale_key_never_corrupts)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    ck_assert(net_target_unregister(&t));
    pattern(in.buf, 1 << 20, 77);
    mcefa_transfer x = {MCEFA_WRITE, in.buf, in.seg, t.addr, 1 << 20};
    int rc = mcefa_transfer_sync(in.c, &x, 1, 10000);
    ck_assert_int_lt(rc, 0);
    ck_assert(net_target_check(&t, 0, 1 << 20, 1));
    /* Re-opening gets the current description: no regions now. */
    mcefa_segment s2;
    ck_assert_int_eq(mcefa_segment_open(in.c, t.name, &s2), 0);
    ck_assert_int_eq(mcefa_segment_regions(in.c, s2, NULL, 0), 0);
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &x, 1, 10000), -EFAULT);
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(remote_daemon_killed_mid_batch)
{
    size_t size = 256 << 20;
    net_target t;
    net_target_start(&t, B.sock, size);
    initiator in;
    initiator_open(&in, A.sock, size, t.name);
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(in.c, 256, &b), 0);
    mcefa_transfer x[256];
    for (int i = 0; i < 256; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, in.buf + ((size_t)i << 20), in.seg, t.addr + ((uint64_t)i << 20), 1 << 20};
    ck_assert_int_eq(mcefa_batch_submit(b, x, 256), 0);
    kill(B.pid, SIGKILL);
    waitpid(B.pid, NULL, 0);
    B.pid = 0;
    /* Every transfer finishes, failed or not, within the deadline (3 s). */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = mcefa_batch_wait(b, 20000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_ne(rc, -ETIMEDOUT);
    uint32_t sub, fin, failed;
    mcefa_batch_progress(b, &sub, &fin, &failed);
    ck_assert_uint_eq(fin, sub);
    printf("remote_daemon_killed_mid_batch: %u of %u transfers failed, all finished after %.2f s\n", failed, sub,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    /* A new transfer on the old handle says what happened. */
    rc = mcefa_transfer_sync(in.c, x, 1, 10000);
    ck_assert_int_lt(rc, 0);
    net_target_stop(&t);

    /* B comes back (new epoch) with a new target; A was never restarted. */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", B.dir);
    ck_assert_int_eq(system(cmd), 0);
    start_b();
    net_target t2;
    net_target_start(&t2, B.sock, size);
    mcefa_segment s2;
    rc = mcefa_segment_open(in.c, t2.name, &s2);
    ck_assert_msg(rc == 0, "reopen: %s", mcefa_last_error());
    pattern(in.buf, 8 << 20, 21);
    mcefa_transfer w = {MCEFA_WRITE, in.buf, s2, t2.addr, 8 << 20};
    rc = mcefa_transfer_sync(in.c, &w, 1, 10000);
    ck_assert_msg(rc == 0, "after restart: %s", mcefa_last_error());
    ck_assert(net_target_check(&t2, 0, 8 << 20, 21));
    initiator_close(&in);
    net_target_stop(&t2);
}
END_TEST

START_TEST(stopped_peer_times_out)
{
    net_target t;
    net_target_start(&t, B.sock, 64 << 20);
    initiator in;
    initiator_open(&in, A.sock, 64 << 20, t.name);
    /* B stops answering (SIGSTOP): transfers fail with a timeout status
     * after request_timeout_ms instead of hanging. */
    kill(B.pid, SIGSTOP);
    mcefa_transfer x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (mcefa_transfer){MCEFA_READ, in.buf + ((size_t)i << 20), in.seg, t.addr + ((uint64_t)i << 20), 1 << 20};
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(in.c, 64, &b), 0);
    ck_assert_int_eq(mcefa_batch_submit(b, x, 64), 0);
    int rc = mcefa_batch_wait(b, 20000);
    kill(B.pid, SIGCONT);
    ck_assert_int_eq(rc, -ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "failed"));
    char txt[600];
    uint32_t idx = 0;
    for (uint32_t i = 0; i < 64; i++)
        if (mcefa_batch_state(b, i, NULL) == MCEFA_FAILED)
            idx = i;
    ck_assert_int_eq(mcefa_batch_error_text(b, idx, txt, sizeof(txt)), 0);
    ck_assert_ptr_nonnull(strstr(txt, "request_timeout_ms"));
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

static int silent_listener(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_z)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(l, 8), 0);
    return l;
}

/* A segment open on a thread of its own. */
typedef struct bg_open {
    mcefa_client *c;
    const char *name;
    mcefa_segment seg;
    int rc;
    _Atomic int done;
} bg_open;

static void *open_in_background(void *arg)
{
    bg_open *o = arg;
    o->rc = mcefa_segment_open(o->c, o->name, &o->seg);
    atomic_store(&o->done, 1);
    return NULL;
}

/* Reads to a stopped peer that A cannot post (rxm answers -FI_EAGAIN
 * while it connects) or that stay posted (connected, never completed):
 * either way they wait on that peer's own list, and writes to a healthy
 * peer on the same NIC complete meanwhile, each long before the stalled
 * reads reach their deadline. */
static void stall_b_and_write_to_c(initiator *in, const mcefa_transfer *reads, uint32_t n, mcefa_segment seg_c,
                                   net_target *tc, const char *phase)
{
    kill(B.pid, SIGSTOP);
    mcefa_batch *stalled;
    ck_assert_int_eq(mcefa_batch_alloc(in->c, n, &stalled), 0);
    ck_assert_int_eq(mcefa_batch_submit(stalled, reads, n), 0);
    for (unsigned round = 0; round < 8; round++) {
        pattern(in->buf + (32 << 20), 1 << 20, 40 + round);
        mcefa_transfer x = {MCEFA_WRITE, in->buf + (32 << 20), seg_c, tc->addr, 1 << 20};
        int rc = mcefa_transfer_sync(in->c, &x, 1, 10000);
        ck_assert_msg(rc == 0, "%s: write %u to hostc: %s", phase, round, mcefa_last_error());
        ck_assert(net_target_check(tc, 0, 1 << 20, (uint8_t)(40 + round)));
    }
    uint32_t sub, fin, failed;
    mcefa_batch_progress(stalled, &sub, &fin, &failed);
    /* Nothing to hostb has finished: hostc's writes did not wait for its
     * reads to time out. */
    ck_assert_msg(fin == 0, "%s: %u of %u reads to the stopped peer finished before hostc's writes", phase, fin, sub);
    int rc = mcefa_batch_wait(stalled, 20000);
    ck_assert_int_eq(rc, -ETIMEDOUT);
    char txt[600] = "";
    for (uint32_t i = 0; i < sub; i++)
        if (mcefa_batch_state(stalled, i, NULL) == MCEFA_FAILED) {
            ck_assert_int_eq(mcefa_batch_error_text(stalled, i, txt, sizeof(txt)), 0);
            break;
        }
    printf("stalled_peer_does_not_hold_up_others (%s): %s\n", phase, txt);
    ck_assert_ptr_nonnull(strstr(txt, "request_timeout_ms"));
    kill(B.pid, SIGCONT);
    ck_assert_int_eq(mcefa_batch_free(stalled), 0);
}

START_TEST(stalled_peer_does_not_hold_up_others)
{
    test_daemon C;
    start_c(&C, port_a);
    net_target tb, tc;
    net_target_start(&tb, B.sock, 64 << 20);
    net_target_start(&tc, C.sock, 1 << 20);
    ck_assert_str_eq(tc.name, "hostc:15000");
    initiator in;
    initiator_open(&in, A.sock, 64 << 20, tb.name);
    mcefa_segment seg_c;
    ck_assert_msg(mcefa_segment_open(in.c, tc.name, &seg_c) == 0, "open hostc: %s", mcefa_last_error());
    mcefa_transfer x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (mcefa_transfer){MCEFA_READ, in.buf + ((size_t)(i % 32) << 20), in.seg, tb.addr + ((uint64_t)i << 20),
                                1 << 20};

    /* No RMA to hostb yet: its NIC endpoint is not connected, and a stopped
     * daemon never accepts. */
    stall_b_and_write_to_c(&in, x, 16, seg_c, &tc, "not connected");
    /* Connected now, then stopped: its reads stay posted, at most its
     * share of A's 8 work requests. */
    int rc = mcefa_transfer_sync(in.c, x, 1, 10000);
    ck_assert_msg(rc == 0, "read from hostb once it runs again: %s", mcefa_last_error());
    stall_b_and_write_to_c(&in, x, 64, seg_c, &tc, "connected");
    /* hostb serves again. */
    rc = mcefa_transfer_sync(in.c, x, 1, 10000);
    ck_assert_msg(rc == 0, "read from hostb after it resumed: %s", mcefa_last_error());
    initiator_close(&in);
    net_target_stop(&tb);
    net_target_stop(&tc);
    daemon_stop(&C);
}
END_TEST

/* The TCP port daemon pid listens on for its NIC endpoint (tcp;ofi_rxm):
 * the one listening port that is not its peer_port. */
static int nic_listen_port(pid_t pid, int peer_port)
{
    FILE *f = popen("ss -tlnpH", "r");
    ck_assert_ptr_nonnull(f);
    char line[512], want[32];
    snprintf(want, sizeof(want), "pid=%d,", (int)pid);
    int port = -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, want))
            continue;
        char local[128];
        if (sscanf(line, "%*s %*s %*s %127s", local) != 1)
            continue;
        char *colon = strrchr(local, ':');
        int p = colon ? atoi(colon + 1) : -1;
        if (p > 0 && p != peer_port)
            port = p;
    }
    pclose(f);
    return port;
}

static uint64_t rehandshakes(const char *host)
{
    char out[65536], want[100];
    http_get(port_m, "/metrics", out, sizeof(out));
    snprintf(want, sizeof(want), "mcefad_peer_rehandshakes_total{peer=\"%s\"} ", host);
    const char *p = strstr(out, want);
    return p ? strtoull(p + strlen(want), NULL, 10) : 0;
}

/* A's NIC connections to B break (ss -K aborts them) while its reads are
 * in flight and the daemons' link stays up: the reads fail with the
 * socket provider's reason (not a timeout), A handshakes with B again,
 * and transfers on the same segment handle go on. */
START_TEST(broken_nic_connection_rehandshakes)
{
    net_target t;
    net_target_start(&t, B.sock, 8 << 20);
    initiator in;
    initiator_open(&in, A.sock, 8 << 20, t.name);
    mcefa_transfer r = {MCEFA_READ, in.buf, in.seg, t.addr, 1 << 20};
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &r, 1, 10000), 0);
    int nic_port = nic_listen_port(B.pid, port_b);
    ck_assert_int_gt(nic_port, 0);
    uint64_t before = rehandshakes("hostb");
    /* Stopped, B cannot complete the reads: they are in flight when the
     * connection goes. */
    kill(B.pid, SIGSTOP);
    mcefa_transfer x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (mcefa_transfer){MCEFA_READ, in.buf + ((size_t)i << 20), in.seg, t.addr + ((uint64_t)i << 20), 1 << 20};
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(in.c, 4, &b), 0);
    ck_assert_int_eq(mcefa_batch_submit(b, x, 4), 0);
    usleep(200 * 1000);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "ss -K dst 127.0.0.1 dport = :%d >/dev/null 2>&1", nic_port);
    ck_assert_int_eq(system(cmd), 0);
    kill(B.pid, SIGCONT);
    int rc = mcefa_batch_wait(b, 20000);
    ck_assert_int_lt(rc, 0);
    char txt[600] = "";
    int code = 0;
    for (uint32_t i = 0; i < 4 && !txt[0]; i++)
        if (mcefa_batch_state(b, i, &code) == MCEFA_FAILED)
            ck_assert_int_eq(mcefa_batch_error_text(b, i, txt, sizeof(txt)), 0);
    printf("broken_nic_connection_rehandshakes: %d: %s\n", code, txt);
    ck_assert_ptr_null(strstr(txt, "request_timeout_ms"));
    ck_assert_ptr_nonnull(strstr(txt, "handshakes with it again"));
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    /* The link is renewed within a timer tick or two. */
    for (int i = 0; i < 100 && rehandshakes("hostb") == before; i++)
        usleep(100 * 1000);
    ck_assert_uint_eq(rehandshakes("hostb"), before + 1);
    rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = mcefa_transfer_sync(in.c, &r, 1, 10000);
        if (rc)
            usleep(100 * 1000); /* until the new handshake is done */
    }
    ck_assert_msg(rc == 0, "read after the new handshake: %s", mcefa_last_error());
    ck_assert(pattern_ok(in.buf, 1 << 20, 1));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST


/* Byte offset of the first line of path holding what, -1 if none. */
static long log_offset(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    long off = -1, at = 0;
    while (off < 0 && fgets(line, sizeof(line), f)) {
        if (strstr(line, what))
            off = at;
        at += (long)strlen(line);
    }
    fclose(f);
    return off;
}

/* hostc waits for hosta (its own attempt goes to a listener that never
 * answers) when hosta's handshake comes in: hostc answers that hello
 * before it releases the work queued for hosta, so hosta has hostc's
 * addresses in its AV before any of hostc's RMA can reach it. */
START_TEST(accepting_side_answers_before_queued_work)
{
    int l = silent_listener();
    test_daemon C;
    start_c(&C, port_z); /* C's own attempt never gets an answer */
    net_target ta, tc;
    net_target_start(&ta, A.sock, 1 << 20);
    net_target_start(&tc, C.sock, 1 << 20);
    ck_assert_str_eq(ta.name, "hosta:15000");
    initiator on_c;
    initiator_open(&on_c, C.sock, 1 << 20, tc.name); /* a local open on C */
    bg_open o = {.c = on_c.c, .name = ta.name};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, open_in_background, &o), 0);
    usleep(300 * 1000);
    ck_assert(!atomic_load(&o.done)); /* waiting for hosta */
    /* hosta reaches hostc: the open waiting there goes on that connection. */
    initiator on_a;
    initiator_open(&on_a, A.sock, 1 << 20, tc.name);
    pthread_join(th, NULL);
    ck_assert_msg(o.rc == 0, "open of hosta's segment on hostc: %s", mcefa_last_error());
    pattern(on_c.buf, 1 << 20, 61);
    mcefa_transfer w = {MCEFA_WRITE, on_c.buf, o.seg, ta.addr, 1 << 20};
    int rc = mcefa_transfer_sync(on_c.c, &w, 1, 10000);
    ck_assert_msg(rc == 0, "write from hostc to hosta: %s", mcefa_last_error());
    ck_assert(net_target_check(&ta, 0, 1 << 20, 61));
    long answered = log_offset(C.log, "peer hosta: answered its hello");
    long released = log_offset(C.log, "peer hosta: handshake answered; releasing");
    ck_assert_msg(answered >= 0 && released > answered, "answered at %ld, released at %ld (see %s)", answered,
                  released, C.log);
    initiator_close(&on_a);
    initiator_close(&on_c);
    net_target_stop(&ta);
    net_target_stop(&tc);
    daemon_stop(&C);
    close(l);
}
END_TEST


/* A "peer" that accepts TCP and then says nothing: requests to it fail
 * after request_timeout_ms (3 s here) instead of hanging the client. */
START_TEST(silent_peer_times_out)
{
    int l = silent_listener();
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "patient", &c), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mcefa_segment seg;
    int rc = mcefa_segment_open(c, "hostz:15000", &seg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strstr(mcefa_last_error(), "request_timeout_ms") != NULL, "got: %s", mcefa_last_error());
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(s < 15, "took %.1f s", s);
    /* Two clients retrying at once: each gets its answer, none hangs. */
    pid_t kid = fork();
    if (kid == 0) {
        mcefa_client *k;
        mcefa_segment ks;
        if (mcefa_connect(A.sock, "patient-2", &k) < 0)
            _exit(1);
        _exit(mcefa_segment_open(k, "hostz:15000", &ks) < 0 ? 0 : 2);
    }
    ck_assert_int_lt(mcefa_segment_open(c, "hostz:15000", &seg), 0);
    int st_kid;
    ck_assert_int_eq(waitpid(kid, &st_kid, 0), kid);
    ck_assert(WIFEXITED(st_kid) && WEXITSTATUS(st_kid) == 0);
    /* The daemon and this connection go on serving. */
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    mcefa_disconnect(c);
    close(l);
}
END_TEST

/* One thread of a client waits on a host that never answers; another
 * thread's transfers on the same connection go on meanwhile (the daemon
 * keeps reading the session, the library matches replies by seq). */
START_TEST(slow_open_does_not_block_other_threads)
{
    int l = silent_listener();
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    bg_open o = {.c = in.c, .name = "hostz:15000"};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, open_in_background, &o), 0);
    /* Give the open time to reach the daemon; it then waits 3 s. */
    usleep(200 * 1000);
    ck_assert(!atomic_load(&o.done));
    for (unsigned round = 0; round < 4; round++) {
        pattern(in.buf, 65536, 7 + round);
        mcefa_transfer x = {MCEFA_WRITE, in.buf, in.seg, t.addr, 65536};
        int rc = mcefa_transfer_sync(in.c, &x, 1, 5000);
        ck_assert_msg(rc == 0, "transfer: %s", mcefa_last_error());
        ck_assert(net_target_check(&t, 0, 65536, (uint8_t)(7 + round)));
    }
    ck_assert_msg(!atomic_load(&o.done), "the transfers waited for the open of an unreachable host");
    pthread_join(th, NULL);
    ck_assert_int_lt(o.rc, 0);
    initiator_close(&in);
    net_target_stop(&t);
    close(l);
}
END_TEST

/* A client that pipelines more waiting requests than the daemon holds for
 * one session (64): the rest wait in the socket, and every request,
 * including a status query queued behind them, is answered once room
 * comes back. */
START_TEST(pipelined_waiting_requests_resume)
{
    int l = silent_listener();
    int fd = raw_connect(A.sock);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    raw_hello_ok(fd, &rd);
    Mcefa__Response *r;
    enum { OPENS = 70 };
    for (int i = 0; i < OPENS; i++) {
        Mcefa__OpenSegment o = MCEFA__OPEN_SEGMENT__INIT;
        o.name = "hostz:15000";
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.seq = 100 + (uint64_t)i;
        req.body_case = MCEFA__REQUEST__BODY_OPEN_SEGMENT;
        req.open_segment = &o;
        raw_send_request(fd, &req);
    }
    Mcefa__StatusQuery q = MCEFA__STATUS_QUERY__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 99;
    req.body_case = MCEFA__REQUEST__BODY_STATUS;
    req.status = &q;
    raw_send_request(fd, &req);
    unsigned failed_opens = 0, status_ok = 0;
    for (int i = 0; i < OPENS + 1; i++) {
        r = raw_recv(fd, &rd);
        ck_assert_ptr_nonnull(r);
        if (r->seq == 99)
            status_ok += r->status == 0;
        else
            failed_opens += r->seq >= 100 && r->seq < 100 + OPENS && r->status < 0;
        mcefa__response__free_unpacked(r, NULL);
    }
    ck_assert_uint_eq(failed_opens, OPENS);
    ck_assert_uint_eq(status_ok, 1);
    wire_reader_free(&rd);
    close(fd);
    close(l);
}
END_TEST

/* Names a local client opens by mistake (hosts that do not answer) must
 * not fill the peer table for good: with max_peers=2, a third and fourth
 * host get their real error ("cannot reach"), not "too many peer hosts". */
START_TEST(unreachable_hosts_do_not_fill_the_peer_table)
{
    int closed = free_ports(2); /* nothing listens there; the daemon gets the next */
    char map[256], port[64];
    snprintf(map, sizeof(map), "--peer_hosts=j1=127.0.0.1:%d,j2=127.0.0.1:%d,j3=127.0.0.1:%d,j4=127.0.0.1:%d", closed,
             closed, closed, closed);
    snprintf(port, sizeof(port), "--peer_port=%d", closed + 1);
    const char *args[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hostc", port, map, "--max_peers=2",
                          "--request_timeout_ms=3000", NULL};
    test_daemon C;
    daemon_start(&C, args);
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(C.sock, "typo", &c), 0);
    const char *names[] = {"j1:1", "j2:1", "j3:1", "j4:1", "j1:1"};
    for (int i = 0; i < 5; i++) {
        mcefa_segment seg;
        ck_assert_int_lt(mcefa_segment_open(c, names[i], &seg), 0);
        ck_assert_msg(strstr(mcefa_last_error(), "cannot reach") != NULL, "%s: %s", names[i], mcefa_last_error());
    }
    mcefa_disconnect(c);
    daemon_stop(&C);
}
END_TEST

static void send_peer_frame(int fd, Mcefa__PeerFrame *f)
{
    uint8_t *b;
    size_t n;
    ck_assert_int_eq(wire_pack(&f->base, &b, &n), 0);
    ck_assert_int_eq(write(fd, b, n), (ssize_t)n);
    free(b);
}

/* Whoever reaches the peer port is not trusted to behave: a second hello,
 * garbage, and an oversize frame each close that connection only. */
START_TEST(misbehaving_peer_connections)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_b)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    Mcefa__PeerHello h = MCEFA__PEER_HELLO__INIT;
    h.protocol_version = MCEFA_PROTOCOL_VERSION;
    h.hostname = "intruder";
    h.epoch = 42;
    h.provider = "tcp;ofi_rxm";
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = 1;
    f.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    send_peer_frame(fd, &f);
    f.seq = 2;
    h.hostname = "hosta"; /* now pretending to be another host */
    send_peer_frame(fd, &f);
    char buf[4096];
    ssize_t n, total = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 5000) == 1 && (n = read(fd, buf, sizeof(buf))) > 0)
        total += n;
    ck_assert_int_gt(total, 0); /* it answered the first hello, then hung up */
    close(fd);

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(write(fd, "\x05\0\0\0\xff\xff\xff\xff\xff", 9), 9);
    while (poll(&p, 1, 5000) == 1 && (n = read(fd, buf, sizeof(buf))) > 0)
        ;
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(write(fd, "\0\0\0\x7f", 4), 4);
    p.fd = fd;
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    close(fd);

    /* B still serves A's clients. */
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    mcefa_transfer x = {MCEFA_READ, in.buf, in.seg, t.addr, 1 << 20};
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &x, 1, 10000), 0);
    ck_assert(pattern_ok(in.buf, 1 << 20, 1));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

#ifdef MCEFA_CUDA
/* GPU memory crosses hosts through the staging buffers (tcp has no
 * FI_HMEM): written to another host's memory and read back; the daemon of
 * a GPU region describes it to other hosts as staged memory. (CUDA driver
 * stand-in: this checks mcefa's path and bookkeeping, not a GPU.) */
START_TEST(gpu_memory_to_another_host_is_staged)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    char why[512];
    ck_assert_msg(cuda_drv_load(getenv("MCEFA_CUDA_LIBRARY"), why, sizeof(why)) == 0, "%s", why);
    CUdevice d;
    CUcontext ctx;
    CUdeviceptr p;
    ck_assert_int_eq(cuda_drv.cuDeviceGet(&d, 0), CUDA_SUCCESS);
    ck_assert_int_eq(cuda_drv.cuDevicePrimaryCtxRetain(&ctx, d), CUDA_SUCCESS);
    ck_assert_int_eq(cuda_drv.cuCtxSetCurrent(ctx), CUDA_SUCCESS);
    ck_assert_int_eq(cuda_drv.cuMemAlloc(&p, 1 << 20), CUDA_SUCCESS);
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "gpu-net", &c), 0);
    ck_assert_msg(mcefa_register(c, (void *)(uintptr_t)p, 1 << 20) == 0, "%s", mcefa_last_error());
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, t.name, &seg), 0);
    uint8_t *host = malloc(1 << 20), *back = malloc(1 << 20);
    for (size_t i = 0; i < 1 << 20; i++)
        host[i] = (uint8_t)(i * 31 + 7);
    ck_assert_int_eq(cuda_drv.cuMemcpyHtoD(p, host, 1 << 20), CUDA_SUCCESS);
    /* GPU -> remote host memory, then remote -> GPU at another offset. */
    mcefa_transfer x = {MCEFA_WRITE, (void *)(uintptr_t)p, seg, t.addr, (1 << 20) - 3};
    ck_assert_msg(mcefa_transfer_sync(c, &x, 1, 10000) == 0, "%s", mcefa_last_error());
    mcefa_transfer y = {MCEFA_READ, (void *)(uintptr_t)(p + 5), seg, t.addr, 4096};
    ck_assert_msg(mcefa_transfer_sync(c, &y, 1, 10000) == 0, "%s", mcefa_last_error());
    ck_assert_int_eq(cuda_drv.cuMemcpyDtoH(back, p + 5, 4096), CUDA_SUCCESS);
    ck_assert(memcmp(back, host, 4096) == 0);
    free(host);
    free(back);
    /* Exported on A, its GPU region is in what hostb sees (as staged). */
    char name[300];
    ck_assert_int_eq(mcefa_segment_export(c, NULL, name, sizeof(name)), 0);
    mcefa_client *cb;
    ck_assert_int_eq(mcefa_connect(B.sock, "gpu-net-b", &cb), 0);
    mcefa_segment sa;
    ck_assert_msg(mcefa_segment_open(cb, name, &sa) == 0, "open %s: %s", name, mcefa_last_error());
    mcefa_region_info ri = MCEFA_REGION_INFO_INIT;
    ck_assert_int_eq(mcefa_segment_regions(cb, sa, &ri, 1), 1);
    ck_assert_uint_eq(ri.addr, p);
    ck_assert_uint_eq(ri.length, 1 << 20);
    mcefa_disconnect(cb);
    mcefa_disconnect(c);
    net_target_stop(&t);
}
END_TEST
#endif

int main(void)
{
    if (system("fi_info -p 'tcp;ofi_rxm' -t FI_EP_RDM >/dev/null 2>&1") != 0) {
        printf("net: skipped: libfabric's tcp;ofi_rxm provider is not available here (fi_info)\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("loopback");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, install);
    tcase_add_test(tc, loopback_write);
#ifdef MCEFA_CUDA
    char lib[512], abs[PATH_MAX];
    snprintf(lib, sizeof(lib), "%s/tests/libcuda-standin.so", build_dir());
    if (realpath(lib, abs)) {
        snprintf(cuda_flag, sizeof(cuda_flag), "--cuda_library=%s", abs);
        setenv("MCEFA_CUDA_LIBRARY", abs, 1);
        tcase_add_test(tc, gpu_memory_to_another_host_is_staged);
    }
#endif
    tcase_add_test(tc, write_then_read);
    tcase_add_test(tc, multi_write_batch);
    tcase_add_test(tc, stress_multiple_batches);
    tcase_add_test(tc, warmup_self_and_twice);
    tcase_add_test(tc, warmup_unknown_segment);
    tcase_add_test(tc, register_memory_batch);
    tcase_add_test(tc, large_transfer);
    tcase_add_test(tc, repeated_open_segment);
    tcase_add_test(tc, remote_range_rejected_before_posting);
    tcase_add_test(tc, stale_key_never_corrupts);
    tcase_add_test(tc, remote_daemon_killed_mid_batch);
    tcase_add_test(tc, stopped_peer_times_out);
    tcase_add_test(tc, stalled_peer_does_not_hold_up_others);
    tcase_add_test(tc, broken_nic_connection_rehandshakes);
    tcase_add_test(tc, accepting_side_answers_before_queued_work);
    tcase_add_test(tc, silent_peer_times_out);
    tcase_add_test(tc, slow_open_does_not_block_other_threads);
    tcase_add_test(tc, pipelined_waiting_requests_resume);
    tcase_add_test(tc, unreachable_hosts_do_not_fill_the_peer_table);
    tcase_add_test(tc, misbehaving_peer_connections);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
