/* Two hosts: network namespaces joined by two veth pairs, one daemon in
 * each, each veth a "NIC". Checks that transfers use every NIC, that large
 * requests are striped, and that warmup connects every NIC pair. Needs root
 * and iproute2; skips with the reason otherwise. Namespaces are removed
 * whatever the tests do. */
#include <stdarg.h>
#include <sys/mman.h>

#include "net_harness.h"
#include "suite.h"

static char ns_a[32], ns_b[32], if_a[2][16], if_b[2][16];
static const char *ip_a = "10.231.1.1", *ip_b = "10.231.1.2";
static test_daemon A, B;
#define PEER_PORT "17650"

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static pid_t owner; /* Check forks a child per test: only we tear down */

static void net_down(void)
{
    if (getpid() != owner)
        return;
    sh("ip netns del %s 2>/dev/null", ns_a);
    sh("ip netns del %s 2>/dev/null", ns_b);
}

static void on_signal(int sig)
{
    net_down();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int net_up(void)
{
    /* Namespaces outlive processes: remove them on every way out. */
    owner = getpid();
    atexit(net_down);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int id = getpid() % 100000;
    snprintf(ns_a, sizeof(ns_a), "mcefa-a-%d", id);
    snprintf(ns_b, sizeof(ns_b), "mcefa-b-%d", id);
    if (sh("ip netns add %s && ip netns add %s", ns_a, ns_b))
        return -1;
    for (int k = 0; k < 2; k++) {
        snprintf(if_a[k], sizeof(if_a[k]), "mca%d-%d", k, id);
        snprintf(if_b[k], sizeof(if_b[k]), "mcb%d-%d", k, id);
        if (sh("ip link add %s type veth peer name %s", if_a[k], if_b[k]) ||
            sh("ip link set %s netns %s && ip link set %s netns %s", if_a[k], ns_a, if_b[k], ns_b) ||
            sh("ip -n %s addr add 10.231.%d.1/24 dev %s && ip -n %s link set %s up", ns_a, k + 1, if_a[k], ns_a,
               if_a[k]) ||
            sh("ip -n %s addr add 10.231.%d.2/24 dev %s && ip -n %s link set %s up", ns_b, k + 1, if_b[k], ns_b,
               if_b[k]))
            return -1;
    }
    if (sh("ip -n %s link set lo up && ip -n %s link set lo up", ns_a, ns_b))
        return -1;
    return 0;
}

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

int main(void)
{
    if (geteuid() != 0) {
        printf("netns: skipped: creating network namespaces needs root\n0 passed, 0 failed\n");
        return 0;
    }
    if (system("ip -V >/dev/null 2>&1") != 0 || system("fi_info -p 'tcp;ofi_rxm' >/dev/null 2>&1") != 0) {
        printf("netns: skipped: needs iproute2 and libfabric's tcp;ofi_rxm provider\n0 passed, 0 failed\n");
        return 0;
    }
    if (net_up() < 0) {
        net_down();
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
    return run_suite(s); /* net_down runs at exit */
}
