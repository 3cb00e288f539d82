/* Helpers for the network suites: a pair of daemons that reach each other
 * through libfabric (tcp;ofi_rxm), and target processes on either. */
#ifndef MCEFA_TEST_NET_HARNESS_H
#define MCEFA_TEST_NET_HARNESS_H

#include "harness.h"

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

static inline void net_target_start(net_target *t, const char *sock, size_t size)
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
        if (mcefa_connect(sock, "net-target", &cl) < 0 || mcefa_alloc(cl, size, -1, 0, (void **)&buf) < 0)
            _exit(10);
        pattern(buf, size, 1);
        char name[128];
        if (mcefa_register(cl, buf, size) < 0 || mcefa_segment_export(cl, NULL, name, sizeof(name)) < 0)
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

#endif
