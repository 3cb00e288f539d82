/* Helpers for the integration suites: start a real mcefad in a temporary
 * directory, speak raw frames to it, fork client processes. */
#ifndef MCEFA_TEST_HARNESS_H
#define MCEFA_TEST_HARNESS_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mcefa.h"
#include "wire.h"

typedef struct test_daemon {
    pid_t pid;
    char dir[64];
    char sock[96];
    char log[96];
} test_daemon;

/* `count` consecutive TCP ports that are free now, below the ephemeral
 * range (so no outgoing connection can be holding one meanwhile). */
static inline int free_ports(int count)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        int base = 10000 + (int)((getpid() * 7919u + (unsigned)attempt * 104729u) % 20000u);
        int ok = 1;
        for (int k = 0; k < count && ok; k++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + k))};
            ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
            if (fd >= 0)
                close(fd);
        }
        if (ok)
            return base;
    }
    ck_abort_msg("no free TCP ports for the test daemons");
    return -1;
}

/* One HTTP GET to 127.0.0.1:port (the metrics endpoint); the reply,
 * headers included, into out. Returns its length. */
static inline int http_get(int port, const char *path, char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    size_t n = 0;
    ssize_t r;
    while (n < outlen - 1 && (r = read(fd, out + n, outlen - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(fd);
    return (int)n;
}

/* $MCEFA_BUILD, else the build the running suite belongs to (suites sit
 * in <build>/tests/), so a suite run by hand from another build finds its
 * own daemon. */
static inline const char *build_dir(void)
{
    const char *b = getenv("MCEFA_BUILD");
    if (b && *b)
        return b;
    static char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    if (n > 0) {
        dir[n] = 0;
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(dir, '/');
            if (!slash)
                return "build";
            *slash = 0;
        }
        return dir;
    }
    return "build";
}

static inline int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        close(fd);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static char test_secret_dir[64];

static inline void test_secret_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", test_secret_dir);
    if (system(cmd)) {
    }
}

/* The cluster secret of this test run: run-all.sh exports one; a suite
 * started by hand makes its own, shared by every daemon it starts. */
static inline const char *test_secret_file(void)
{
    const char *env = getenv("MCEFAD_PEER_SECRET_FILE");
    if (env && *env)
        return env;
    static char path[96];
    if (!path[0]) {
        snprintf(test_secret_dir, sizeof(test_secret_dir), "/tmp/mcefa-test-secret-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(test_secret_dir));
        snprintf(path, sizeof(path), "%s/peer.secret", test_secret_dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        ck_assert_int_ge(fd, 0);
        uint8_t key[32];
        int ufd = open("/dev/urandom", O_RDONLY);
        ck_assert_int_eq(read(ufd, key, sizeof(key)), (ssize_t)sizeof(key));
        close(ufd);
        for (size_t i = 0; i < sizeof(key); i++)
            dprintf(fd, "%02x", key[i]);
        close(fd);
        atexit(test_secret_remove);
    }
    setenv("MCEFAD_PEER_SECRET_FILE", path, 1); /* for the daemons this process forks */
    return path;
}

/* Starts mcefad with extra flags (NULL-terminated) and waits until it serves;
 * inside network namespace netns when that is not NULL. */
static inline void daemon_start_in(test_daemon *d, const char *netns, const char *const *extra)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/mcefa-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->dir));
    snprintf(d->sock, sizeof(d->sock), "%s/mcefad.sock", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/mcefad.log", d->dir);
    char bin[256], sockflag[200];
    snprintf(bin, sizeof(bin), "%s/mcefad", build_dir());
    snprintf(sockflag, sizeof(sockflag), "--socket_path=%s", d->sock);
    const char *argv[40];
    int n = 0;
    if (netns) {
        argv[n++] = "ip";
        argv[n++] = "netns";
        argv[n++] = "exec";
        argv[n++] = netns;
    }
    argv[n++] = bin;
    argv[n++] = sockflag;
    argv[n++] = "--log_level=debug";
    argv[n++] = "--metrics_listen="; /* tests that want metrics name a port */
    for (; extra && *extra && n < 39; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    test_secret_file();
    d->pid = fork();
    ck_assert_int_ge(d->pid, 0);
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        /* A test that dies must not leave its daemon running. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = raw_connect(d->sock);
        if (fd >= 0) {
            close(fd);
            return;
        }
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid)
            ck_abort_msg("mcefad exited at start (status %d); see %s", st, d->log);
        usleep(10000);
    }
    ck_abort_msg("mcefad did not start listening on %s", d->sock);
}

static inline void daemon_start(test_daemon *d, const char *const *extra)
{
    daemon_start_in(d, NULL, extra);
}

static inline int daemon_alive(const test_daemon *d)
{
    return kill(d->pid, 0) == 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

/* Stops the daemon with SIGTERM and checks that it exited cleanly. */
static inline void daemon_stop(test_daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 1000 && waitpid(d->pid, &st, WNOHANG) == 0; i++)
        usleep(10000);
    if (kill(d->pid, 0) == 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &st, 0);
        ck_abort_msg("mcefad did not stop on SIGTERM");
    }
    d->pid = 0;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        snprintf(cmd, sizeof(cmd), "cat %s >&2; rm -rf %s", d->log, d->dir);
        if (system(cmd)) {
        }
        ck_abort_msg("mcefad exited with status %d", st);
    }
    if (system(cmd)) {
    }
}

/* Sends raw bytes, all of them. */
static inline void raw_send(int fd, const void *buf, size_t len)
{
    ck_assert_int_eq(wire_send_all(fd, buf, len, NULL, 0), 0);
}

static inline void raw_send_request(int fd, Mcefa__Request *req)
{
    uint8_t *b;
    size_t n;
    ck_assert_int_eq(wire_pack(&req->base, &b, &n), 0);
    raw_send(fd, b, n);
    free(b);
}

static inline void raw_hello(int fd, uint32_t version)
{
    Mcefa__Hello h = MCEFA__HELLO__INIT;
    h.protocol_version = version;
    h.client_name = "raw";
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 1;
    req.body_case = MCEFA__REQUEST__BODY_HELLO;
    req.hello = &h;
    raw_send_request(fd, &req);
}

/* Reads one response (NULL at end of stream), within 5 seconds. */
static inline Mcefa__Response *raw_recv(int fd, wire_reader *rd)
{
    for (int spins = 0; spins < 500; spins++) {
        const uint8_t *p;
        size_t len;
        int rc = wire_reader_next(rd, &p, &len);
        ck_assert_int_ge(rc, 0);
        if (rc == 1) {
            Mcefa__Response *r = mcefa__response__unpack(NULL, len, p);
            ck_assert_ptr_nonnull(r);
            wire_reader_consume(rd);
            return r;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, 10);
        ssize_t n = wire_reader_fill(rd, fd);
        if (n == 0 || n == -ECONNRESET)
            return NULL;
    }
    ck_abort_msg("no response from mcefad within 5 s");
    return NULL;
}

/* Hello on a raw connection, its welcome read and checked; the completion
 * area's descriptor stays queued in rd. */
static inline void raw_hello_ok(int fd, wire_reader *rd)
{
    raw_hello(fd, MCEFA_PROTOCOL_VERSION);
    Mcefa__Response *r = raw_recv(fd, rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 0);
    mcefa__response__free_unpacked(r, NULL);
}

/* The daemon's status (DaemonStatus) through a raw connection of its own,
 * checked to be one; the caller frees it (mcefa__response__free_unpacked). */
static inline Mcefa__Response *raw_status(const char *sock)
{
    int fd = raw_connect(sock);
    ck_assert_int_ge(fd, 0);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    raw_hello_ok(fd, &rd);
    Mcefa__StatusQuery q = MCEFA__STATUS_QUERY__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 2;
    req.body_case = MCEFA__REQUEST__BODY_STATUS;
    req.status = &q;
    raw_send_request(fd, &req);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 0);
    ck_assert_int_eq(r->body_case, MCEFA__RESPONSE__BODY_DAEMON_STATUS);
    wire_reader_free(&rd);
    close(fd);
    return r;
}

/* Sends one RegisterMemory with nfds descriptors on a raw connection and
 * returns the reply's status (its error text into why, ERRLEN bytes). */
#ifndef ERRLEN
#define ERRLEN 600
#endif
static inline int raw_register(int fd, wire_reader *rd, uint64_t seq, Mcefa__RegisterMemory *m, const int *fds,
                               unsigned nfds, char *why)
{
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = seq;
    req.body_case = MCEFA__REQUEST__BODY_REGISTER_MEMORY;
    req.register_memory = m;
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(wire_pack(&req.base, &buf, &len), 0);
    ck_assert_int_eq(wire_send_all(fd, buf, len, fds, nfds), 0);
    free(buf);
    Mcefa__Response *r = raw_recv(fd, rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->seq, seq);
    int status = r->status;
    snprintf(why, ERRLEN, "%s", r->error ? r->error : "");
    mcefa__response__free_unpacked(r, NULL);
    return status;
}


/* A byte pattern by seed, and whether a buffer holds it. */
static inline void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + seed + (i >> 12));
}

static inline int same(const uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 7 + seed + (i >> 12)))
            return 0;
    return 1;
}

/* A library connection to the daemon at sock, or the test fails. */
static inline mcefa_client *client_ok(const char *sock, const char *name)
{
    mcefa_client *c = NULL;
    int rc = mcefa_connect(sock, name, &c);
    ck_assert_msg(rc == 0, "connect: %s", mcefa_last_error());
    return c;
}

/* True once the peer closed the connection (within 5 seconds). */
static inline int raw_closed(int fd, wire_reader *rd)
{
    for (int i = 0; i < 500; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, 10);
        ssize_t n = wire_reader_fill(rd, fd);
        if (n == 0 || n == -ECONNRESET)
            return 1;
    }
    return 0;
}

#endif
