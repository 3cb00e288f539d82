/* Helpers for the network suites: a pair of daemons that reach each other
 * through libfabric (tcp;ofi_rxm), and target processes on either. */
#ifndef MCEFA_TEST_NET_HARNESS_H
#define MCEFA_TEST_NET_HARNESS_H

#include <stdarg.h>
#include <sys/mman.h>

#include "harness.h"
#include "shm/memfd.h"

static inline void pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 13 + seed + (i >> 10));
}

static inline int pattern_ok(const uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 13 + seed + (i >> 10)))
            return 0;
    return 1;
}

/* A target process on the daemon at `sock`: exports a buffer of `size`
 * bytes holding pattern 1 and answers commands on a pipe:
 *   'c' + u64 offset + u64 len + u8 seed: reply 1 if [offset, +len) holds
 *        pattern `seed` (as laid from offset 0), else 0
 *   'u': unregister the buffer (the daemon forgets it), reply 1
 *   'q': exit */
typedef struct net_target {
    pid_t pid;
    int cmd, rsp;
    uint64_t addr;
    char name[128];
} net_target;

/* size bytes of a fresh sealed memfd registered as memory of NUMA node
 * numa (the daemon takes the client's word for the node, so tests can play
 * two-node hosts on one). */
static inline uint8_t *register_memfd_on(mcefa_client *c, size_t size, int numa)
{
    size_t real;
    int fd = shm_memfd_create("net-test", size, 0, &real);
    ck_assert_int_ge(fd, 0);
    uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    int rc = mcefa_register_fd(c, p, size, fd, 0, numa);
    ck_assert_msg(rc == 0, "register (NUMA %d): %s", numa, mcefa_last_error());
    close(fd);
    return p;
}

/* net_target_start with the buffer registered as memory of NUMA node numa
 * (-1: an mcefa_alloc buffer of no node). */
static inline void net_target_start_on(net_target *t, const char *sock, size_t size, int numa)
{
    int c[2], r[2];
    ck_assert_int_eq(pipe(c), 0);
    ck_assert_int_eq(pipe(r), 0);
    t->pid = fork();
    ck_assert_int_ge(t->pid, 0);
    if (t->pid == 0) {
        close(c[1]);
        close(r[0]);
        mcefa_client *cl;
        uint8_t *buf;
        if (mcefa_connect(sock, "net-target", &cl) < 0)
            _exit(10);
        if (numa >= 0) {
            buf = register_memfd_on(cl, size, numa);
        } else if (mcefa_alloc(cl, size, -1, 0, (void **)&buf) < 0 || mcefa_register(cl, buf, size) < 0) {
            _exit(10);
        }
        pattern(buf, size, 1);
        char name[128];
        if (mcefa_segment_export(cl, NULL, name, sizeof(name)) < 0)
            _exit(11);
        uint64_t a = (uint64_t)(uintptr_t)buf;
        if (write(r[1], &a, 8) != 8 || write(r[1], name, sizeof(name)) != (ssize_t)sizeof(name))
            _exit(12);
        for (;;) {
            char op;
            if (read(c[0], &op, 1) != 1 || op == 'q')
                _exit(0);
            uint8_t ok = 1;
            if (op == 'c') {
                uint64_t off, len;
                uint8_t seed;
                if (read(c[0], &off, 8) != 8 || read(c[0], &len, 8) != 8 || read(c[0], &seed, 1) != 1)
                    _exit(13);
                for (uint64_t i = off; i < off + len && ok; i++)
                    ok = buf[i] == (uint8_t)(i * 13 + seed + (i >> 10));
            } else if (op == 'u') {
                ok = mcefa_unregister(cl, buf) == 0;
            }
            if (write(r[1], &ok, 1) != 1)
                _exit(14);
        }
    }
    close(c[0]);
    close(r[1]);
    t->cmd = c[1];
    t->rsp = r[0];
    ck_assert_int_eq(read(t->rsp, &t->addr, 8), 8);
    ck_assert_int_eq(read(t->rsp, t->name, sizeof(t->name)), (ssize_t)sizeof(t->name));
}

static inline void net_target_start(net_target *t, const char *sock, size_t size)
{
    net_target_start_on(t, sock, size, -1);
}

static inline int net_target_check(net_target *t, uint64_t off, uint64_t len, uint8_t seed)
{
    char op = 'c';
    uint8_t ok = 0;
    ck_assert_int_eq(write(t->cmd, &op, 1), 1);
    ck_assert_int_eq(write(t->cmd, &off, 8), 8);
    ck_assert_int_eq(write(t->cmd, &len, 8), 8);
    ck_assert_int_eq(write(t->cmd, &seed, 1), 1);
    ck_assert_int_eq(read(t->rsp, &ok, 1), 1);
    return ok;
}

static inline int net_target_unregister(net_target *t)
{
    char op = 'u';
    uint8_t ok = 0;
    ck_assert_int_eq(write(t->cmd, &op, 1), 1);
    ck_assert_int_eq(read(t->rsp, &ok, 1), 1);
    return ok;
}

static inline void net_target_stop(net_target *t)
{
    char op = 'q';
    if (write(t->cmd, &op, 1) != 1) {
    }
    waitpid(t->pid, NULL, 0);
    close(t->cmd);
    close(t->rsp);
}

/* An initiator's view: a connection, a registered local buffer, and an
 * opened remote segment. */
typedef struct initiator {
    mcefa_client *c;
    uint8_t *buf;
    size_t size;
    mcefa_segment seg;
} initiator;

static inline void initiator_open(initiator *in, const char *sock, size_t size, const char *segment)
{
    int rc = mcefa_connect(sock, "net-initiator", &in->c);
    ck_assert_msg(rc == 0, "connect: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_alloc(in->c, size, -1, 0, (void **)&in->buf), 0);
    ck_assert_int_eq(mcefa_register(in->c, in->buf, size), 0);
    in->size = size;
    rc = mcefa_segment_open(in->c, segment, &in->seg);
    ck_assert_msg(rc == 0, "open %s: %s", segment, mcefa_last_error());
}

static inline void initiator_close(initiator *in)
{
    mcefa_disconnect(in->c);
}

/* ---- Two hosts in network namespaces ------------------------------------ */

/* Two network namespaces joined by two veth pairs, each end a "NIC" of its
 * host: host h's NIC k is <tag><a|b><k>-<id>, address <net>.<k+1>.<h+1>/24
 * (a subnet, so a fabric, per pair). Needs root and iproute2. Removed at
 * exit and on SIGINT/SIGTERM, by the process that made them only (Check
 * forks a child per test). */
typedef struct netns_pair {
    char ns[2][32];
    char nic[2][2][16];
} netns_pair;

static netns_pair *netns_made;
static pid_t netns_owner;

static inline int netns_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int netns_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static inline void netns_down(void)
{
    if (!netns_made || getpid() != netns_owner)
        return;
    for (int h = 0; h < 2; h++)
        netns_sh("ip netns del %s 2>/dev/null", netns_made->ns[h]);
}

static inline void netns_on_signal(int sig)
{
    netns_down();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Whether namespaces can be made here; if not, prints why as suite's skip
 * line. */
static inline int netns_usable(const char *suite)
{
    const char *why = NULL;
    if (geteuid() != 0)
        why = "creating network namespaces needs root";
    else if (system("ip -V >/dev/null 2>&1") != 0 || system("fi_info -p 'tcp;ofi_rxm' >/dev/null 2>&1") != 0)
        why = "needs iproute2 and libfabric's tcp;ofi_rxm provider";
    if (why)
        printf("%s: skipped: %s\n0 passed, 0 failed\n", suite, why);
    return why == NULL;
}

static inline int netns_up(netns_pair *p, const char *tag, const char *net)
{
    netns_made = p;
    netns_owner = getpid();
    atexit(netns_down);
    signal(SIGINT, netns_on_signal);
    signal(SIGTERM, netns_on_signal);
    int id = getpid() % 100000;
    for (int h = 0; h < 2; h++)
        snprintf(p->ns[h], sizeof(p->ns[h]), "mcefa-%s%c-%d", tag, 'a' + h, id);
    if (netns_sh("ip netns add %s && ip netns add %s", p->ns[0], p->ns[1]))
        return -1;
    for (int k = 0; k < 2; k++) {
        for (int h = 0; h < 2; h++)
            snprintf(p->nic[h][k], sizeof(p->nic[h][k]), "%s%c%d-%d", tag, 'a' + h, k, id);
        if (netns_sh("ip link add %s type veth peer name %s", p->nic[0][k], p->nic[1][k]))
            return -1;
        for (int h = 0; h < 2; h++)
            if (netns_sh("ip link set %s netns %s && ip -n %s addr add %s.%d.%d/24 dev %s && ip -n %s link set %s up",
                         p->nic[h][k], p->ns[h], p->ns[h], net, k + 1, h + 1, p->nic[h][k], p->ns[h], p->nic[h][k]))
                return -1;
    }
    return netns_sh("ip -n %s link set lo up && ip -n %s link set lo up", p->ns[0], p->ns[1]) ? -1 : 0;
}

/* n more veth pairs between p's namespaces, every end on one /16 (net.h.k+1
 * for host h), so each NIC of one host pairs with each NIC of the other,
 * as EFA NICs of one fabric do; names[k][h] gets host h's end. Removed
 * with the namespaces. */
static inline int netns_add_mesh(netns_pair *p, const char *tag, const char *net, unsigned n, char (*names)[2][16])
{
    int id = getpid() % 100000;
    for (unsigned k = 0; k < n; k++) {
        for (int h = 0; h < 2; h++)
            snprintf(names[k][h], sizeof(names[k][h]), "%s%c%u-%d", tag, 'a' + h, k, id);
        if (netns_sh("ip link add %s type veth peer name %s", names[k][0], names[k][1]))
            return -1;
        for (int h = 0; h < 2; h++)
            if (netns_sh("ip link set %s netns %s && ip -n %s addr add %s.%d.%u/16 dev %s && ip -n %s link set %s up",
                         names[k][h], p->ns[h], p->ns[h], net, h + 1, k + 1, names[k][h], p->ns[h], names[k][h]))
                return -1;
    }
    /* Any NIC answers for every address of its host (one subnet). */
    for (int h = 0; h < 2; h++)
        if (netns_sh("ip netns exec %s sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
                     p->ns[h]))
            return -1;
    return 0;
}

#endif
