/* Two hosts: network namespaces joined by two veth pairs, one daemon in
 * each, each veth a "NIC". Checks that transfers use every NIC, that large
 * requests are striped, and that warmup connects every NIC pair; then 8
 * more veth pairs on one /16, where one warmup must warm all 64 NIC pairs
 * whatever the number of NIC workers. Needs root
 * and iproute2; skips with the reason otherwise. Namespaces are removed
 * whatever the tests do. */
#include "net_harness.h"
#include "suite.h"

static netns_pair net;
/* The pair's names, as the tests below use them. */
static char *const ns_a = net.ns[0], *const ns_b = net.ns[1];
static char (*const if_a)[16] = net.nic[0], (*const if_b)[16] = net.nic[1];
static const char *ip_a = "10.231.1.1", *ip_b = "10.231.1.2";
static test_daemon A, B;
#define PEER_PORT "17650"

static void start(test_daemon *d, const char *ns, const char *host, char ifs[2][16])
{
    char h[64], n[64];
    snprintf(h, sizeof(h), "--hostname=%s", host);
    snprintf(n, sizeof(n), "--nics=%s,%s", ifs[0], ifs[1]);
    const char *args[] = {"--provider=tcp;ofi_rxm", h, n, "--peer_port=" PEER_PORT, "--stripe_threshold=4194304",
                          "--request_timeout_ms=5000", NULL};
    daemon_start_in(d, ns, args);
}

static void setup(void)
{
    start(&A, ns_a, ip_a, if_a);
    start(&B, ns_b, ip_b, if_b);
}

static void teardown(void)
{
    daemon_stop(&A);
    daemon_stop(&B);
}

static uint64_t tx_bytes(const char *ns, const char *ifname)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "ip netns exec %s cat /sys/class/net/%s/statistics/tx_bytes", ns, ifname);
    FILE *f = popen(cmd, "r");
    unsigned long long v = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%llu", &v), 1);
    pclose(f);
    return v;
}

START_TEST(transfers_use_every_nic)
{
    size_t size = 64 << 20;
    net_target t;
    net_target_start(&t, B.sock, size);
    ck_assert_str_eq(t.name, "10.231.1.2:15000");
    initiator in;
    initiator_open(&in, A.sock, size, t.name);
    uint64_t a0 = tx_bytes(ns_a, if_a[0]), a1 = tx_bytes(ns_a, if_a[1]);
    pattern(in.buf, size, 4);
    mcefa_transfer x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, in.buf + ((size_t)i << 20), in.seg, t.addr + ((uint64_t)i << 20), 1 << 20};
    int rc = mcefa_transfer_sync(in.c, x, 64, 30000);
    ck_assert_msg(rc == 0, "write: %s", mcefa_last_error());
    uint64_t d0 = tx_bytes(ns_a, if_a[0]) - a0, d1 = tx_bytes(ns_a, if_a[1]) - a1;
    printf("transfers_use_every_nic: 64 MiB in 1 MiB writes: %s sent %.1f MiB, %s sent %.1f MiB\n", if_a[0],
           d0 / 1048576.0, if_a[1], d1 / 1048576.0);
    ck_assert_uint_ge(d0, 16 << 20);
    ck_assert_uint_ge(d1, 16 << 20);
    ck_assert(net_target_check(&t, 0, size, 4));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(large_requests_are_striped)
{
    size_t size = 64 << 20;
    net_target t;
    net_target_start(&t, B.sock, size);
    initiator in;
    initiator_open(&in, A.sock, size, t.name);
    /* One 64 MiB read: the target's NICs send it. */
    uint64_t b0 = tx_bytes(ns_b, if_b[0]), b1 = tx_bytes(ns_b, if_b[1]);
    mcefa_transfer r = {MCEFA_READ, in.buf, in.seg, t.addr, size};
    int rc = mcefa_transfer_sync(in.c, &r, 1, 30000);
    ck_assert_msg(rc == 0, "read: %s", mcefa_last_error());
    uint64_t d0 = tx_bytes(ns_b, if_b[0]) - b0, d1 = tx_bytes(ns_b, if_b[1]) - b1;
    printf("large_requests_are_striped: one 64 MiB read: %s sent %.1f MiB, %s sent %.1f MiB\n", if_b[0],
           d0 / 1048576.0, if_b[1], d1 / 1048576.0);
    ck_assert_uint_ge(d0, 24 << 20);
    ck_assert_uint_ge(d1, 24 << 20);
    ck_assert(pattern_ok(in.buf, size, 1));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

START_TEST(warmup_connects_every_pair)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "warm", &c), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned pairs = 0;
    int rc = mcefa_segment_warmup(c, t.name, &pairs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(rc == 0, "warmup: %s", mcefa_last_error());
    /* Two NICs a side, each pairs with the one on its subnet. */
    ck_assert_uint_eq(pairs, 2);
    printf("warmup_connects_every_pair: %u NIC pairs (with the handshake) in %.2f ms\n", pairs,
           ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e6);
    ck_assert_int_eq(mcefa_segment_warmup(c, t.name, &pairs), 0);
    ck_assert_uint_eq(pairs, 2);
    mcefa_disconnect(c);
    net_target_stop(&t);
}
END_TEST

/* ---- Many NICs on one subnet: every NIC pair warms at once ------------ */

enum { MESH_NICS = 8 };
static char mesh[MESH_NICS][2][16];
static const char *mesh_a = "10.233.1.1", *mesh_b = "10.233.2.1";

static void start_mesh(test_daemon *d, const char *ns, const char *host, int h, const char *peer_ip, int workers)
{
    char hn[64], n[256] = "--nics=", map[128], w[64];
    snprintf(hn, sizeof(hn), "--hostname=%s", host);
    for (int k = 0; k < MESH_NICS; k++)
        snprintf(n + strlen(n), sizeof(n) - strlen(n), "%s%s", k ? "," : "", mesh[k][h]);
    snprintf(map, sizeof(map), "--peer_hosts=%s=%s:" PEER_PORT, peer_ip, peer_ip);
    snprintf(w, sizeof(w), "--nic_workers=%d", workers);
    const char *args[] = {"--provider=tcp;ofi_rxm", hn, n, map, w, "--peer_port=" PEER_PORT,
                          "--request_timeout_ms=10000", NULL};
    daemon_start_in(d, ns, args);
}

/* A's view of its peer B from status: pairs it reaches and pairs warm. */
static void peer_pairs(const char *sock, unsigned *pairs, unsigned *warm)
{
    Mcefa__Response *r = raw_status(sock);
    ck_assert_uint_eq(r->daemon_status->n_peers, 1);
    *pairs = r->daemon_status->peers[0]->nic_pairs;
    *warm = r->daemon_status->peers[0]->nic_pairs_warm;
    mcefa__response__free_unpacked(r, NULL);
}

/* 8 NICs a host on one /16: 64 pairs, whose first ops the workers post
 * at once (rxm connects each pair on its first op). With workers 1 every
 * lane shares one thread; 3 does not divide the NICs evenly; 0 is the
 * default (one per NIC, at most one per CPU). Every pair is warm after
 * one warmup, the status says so, and data moves over the mesh after. */
static void warm_mesh(int workers)
{
    start_mesh(&A, ns_a, mesh_a, 0, mesh_b, workers);
    start_mesh(&B, ns_b, mesh_b, 1, mesh_a, workers);
    size_t size = 8 << 20;
    net_target t;
    net_target_start(&t, B.sock, size);
    initiator in;
    initiator_open(&in, A.sock, size, t.name);
    unsigned pairs = 0, reach = 0, warm = 0;
    int rc = mcefa_segment_warmup(in.c, t.name, &pairs);
    ck_assert_msg(rc == 0, "warmup (%d workers): %s", workers, mcefa_last_error());
    ck_assert_uint_eq(pairs, MESH_NICS * MESH_NICS);
    peer_pairs(A.sock, &reach, &warm);
    ck_assert_uint_eq(reach, MESH_NICS * MESH_NICS);
    ck_assert_uint_eq(warm, MESH_NICS * MESH_NICS);
    ck_assert_int_eq(mcefa_segment_warmup(in.c, t.name, &pairs), 0);
    ck_assert_uint_eq(pairs, MESH_NICS * MESH_NICS);
    pattern(in.buf, size, 6);
    mcefa_transfer x[32];
    for (int i = 0; i < 32; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, in.buf + ((size_t)i << 18), in.seg, t.addr + ((uint64_t)i << 18), 1 << 18};
    rc = mcefa_transfer_sync(in.c, x, 32, 30000);
    ck_assert_msg(rc == 0, "write after warmup: %s", mcefa_last_error());
    ck_assert(net_target_check(&t, 0, size, 6));
    initiator_close(&in);
    net_target_stop(&t);
}

START_TEST(warmup_warms_every_pair_of_many_nics)
{
    static const int workers[] = {0, 1, 3};
    warm_mesh(workers[_i]);
}
END_TEST

int main(void)
{
    if (!netns_usable("netns"))
        return 0;
    if (netns_up(&net, "mc", "10.231") < 0 || netns_add_mesh(&net, "mw", "10.233", MESH_NICS, mesh) < 0) {
        netns_down();
        printf("netns: skipped: cannot create namespaces and veth pairs here (see the ip errors above)\n"
               "0 passed, 0 failed\n");
        return 0;
    }
    Suite *s = suite_create("netns");
    TCase *tc = tcase_create("two-hosts");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, transfers_use_every_nic);
    tcase_add_test(tc, large_requests_are_striped);
    tcase_add_test(tc, warmup_connects_every_pair);
    suite_add_tcase(s, tc);
    TCase *many = tcase_create("many-nics");
    tcase_set_timeout(many, 120);
    tcase_add_checked_fixture(many, NULL, teardown);
    tcase_add_loop_test(many, warmup_warms_every_pair_of_many_nics, 0, 3);
    suite_add_tcase(s, many);
    return run_suite(s); /* netns_down runs at exit */
}
