/* What a local process that may use the client socket can do to the
 * daemon and to other clients (docs/security.md, "Local clients"): each
 * test reproduces an attack that worked once and checks that it no longer
 * does. A real mcefad, same host only. */
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <grp.h>
#include <sys/mman.h>

#include "harness.h"
#include "suite.h"

static test_daemon D;

static const char *const no_nics[] = {"--provider=none", NULL};

static void setup(void)
{
    daemon_start(&D, no_nics);
}

static void teardown(void)
{
    daemon_stop(&D);
}

static mcefa_client *connect_ok(const char *name)
{
    return client_ok(D.sock, name);
}

/* A client with one registered buffer of size bytes that exports it as
 * name and has its own segment open (so it can copy inside it). */
typedef struct self_seg {
    mcefa_client *c;
    uint8_t *buf;
    size_t size;
    mcefa_segment seg;
} self_seg;

static void self_seg_open(self_seg *x, const char *name, size_t size)
{
    x->c = connect_ok(name);
    x->size = size;
    ck_assert_int_eq(mcefa_alloc(x->c, size, -1, 0, (void **)&x->buf), 0);
    ck_assert_msg(mcefa_register(x->c, x->buf, size) == 0, "register: %s", mcefa_last_error());
    ck_assert_msg(mcefa_segment_export(x->c, name, NULL, 0) == 0, "export: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_segment_open(x->c, name, &x->seg), 0);
}

static uint64_t bytes_copied(mcefa_client *c)
{
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    return st.bytes_copied;
}

/* Item 14: a move inside one region (source and destination overlap) is a
 * memmove, also when it is larger than copy_chunk_bytes (pieces on two
 * threads would read bytes another piece already wrote). */
START_TEST(overlapping_copy_is_a_move)
{
    self_seg x;
    self_seg_open(&x, "ovl", 16 << 20);
    uint8_t *want = malloc(x.size);
    /* Shifts below and above copy_chunk_bytes (4 MiB), a length that is
     * not a whole number of pieces. */
    const size_t len = (10 << 20) + 12345, shifts[] = {4096, (5 << 20) + 7};
    for (unsigned k = 0; k < 2; k++) {
        size_t shift = shifts[k];
        fill(x.buf, x.size, 3 + k);
        memcpy(want, x.buf, x.size);
        memmove(want + shift, want, len);
        mcefa_transfer t = {MCEFA_WRITE, x.buf, x.seg, (uint64_t)(uintptr_t)x.buf + shift, len};
        ck_assert_int_eq(mcefa_transfer_sync(x.c, &t, 1, 10000), 0);
        ck_assert_msg(memcmp(x.buf, want, x.size) == 0, "the overlapping write (shift %zu) is not a memmove", shift);
        /* And backwards. */
        memmove(want, want + shift, len);
        mcefa_transfer back = {MCEFA_READ, x.buf, x.seg, (uint64_t)(uintptr_t)x.buf + shift, len};
        ck_assert_int_eq(mcefa_transfer_sync(x.c, &back, 1, 10000), 0);
        ck_assert_msg(memcmp(x.buf, want, x.size) == 0, "the overlapping read (shift %zu) is not a memmove", shift);
    }
    free(want);
    mcefa_disconnect(x.c);
}
END_TEST

enum { BIG_COPIES = 400, BIG_LEN = 32 << 20 };

/* Submits BIG_COPIES copies of BIG_LEN inside x (about 13 GB of memcpy). */
static mcefa_batch *submit_huge(self_seg *x)
{
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(x->c, BIG_COPIES, &b), 0);
    mcefa_transfer *t = calloc(BIG_COPIES, sizeof(*t));
    for (int i = 0; i < BIG_COPIES; i++)
        t[i] = (mcefa_transfer){MCEFA_WRITE, x->buf, x->seg, (uint64_t)(uintptr_t)x->buf + BIG_LEN, BIG_LEN};
    ck_assert_msg(mcefa_batch_submit(b, t, BIG_COPIES) == 0, "submit: %s", mcefa_last_error());
    free(t);
    return b;
}

/* Item 11: one client's huge batch does not hold up another client's small
 * copy: the copy threads serve the clients in turn. */
START_TEST(huge_batch_does_not_starve_others)
{
    self_seg big, small;
    self_seg_open(&big, "hog", (size_t)2 * BIG_LEN);
    self_seg_open(&small, "mouse", 1 << 20);
    mcefa_batch *b = submit_huge(&big);
    mcefa_transfer t = {MCEFA_WRITE, small.buf, small.seg, (uint64_t)(uintptr_t)small.buf + 65536, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(small.c, &t, 1, 60000), 0);
    uint32_t sub, fin, failed;
    mcefa_batch_progress(b, &sub, &fin, &failed);
    ck_assert_msg(fin < BIG_COPIES / 2, "the small copy finished only after %u of %u huge copies", fin, BIG_COPIES);
    mcefa_batch_free_when_done(b);
    mcefa_disconnect(small.c);
    mcefa_disconnect(big.c); /* its queued copies are dropped */
}
END_TEST

/* Item 11: kill -9 of a client drops its queued copies at once; only the
 * pieces already running finish. */
START_TEST(killed_clients_copies_stop)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        self_seg big;
        self_seg_open(&big, "doomed", (size_t)2 * BIG_LEN);
        submit_huge(&big);
        char c = 1;
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    mcefa_client *obs = connect_ok("observer");
    usleep(50 * 1000);
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    usleep(300 * 1000); /* the daemon notices the hang-up */
    uint64_t b1 = bytes_copied(obs);
    usleep(700 * 1000);
    uint64_t b2 = bytes_copied(obs);
    /* At most the pieces that were running (copy_chunk_bytes each) may
     * still land after b1. */
    ck_assert_msg(b2 - b1 <= (64u << 20), "copies of the killed client went on: %llu bytes in 0.7 s",
                  (unsigned long long)(b2 - b1));
    ck_assert_msg(b2 < (uint64_t)BIG_COPIES * BIG_LEN / 2, "most of the killed client's copies ran (%llu bytes)",
                  (unsigned long long)b2);
    mcefa_disconnect(obs);
    close(p[0]);
    close(p[1]);
}
END_TEST

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = -1;
    if (f) {
        if (fscanf(f, "%ld", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

static int write_long(const char *path, long v)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    int rc = fprintf(f, "%ld\n", v) < 0 ? -EIO : 0;
    if (fclose(f) != 0)
        rc = -errno;
    return rc;
}

#define NR_HUGE "/proc/sys/vm/nr_hugepages"

/* Item 9: a client punches a hole into its hugetlb memfd and the pool has
 * no free page left: the daemon's next copy into it faults (SIGBUS). That
 * fails the transfer with -EFAULT naming the region, the region is refused
 * afterwards, and the daemon goes on serving. */
START_TEST(sigbus_in_client_memory_fails_the_transfer)
{
    long saved = read_long(NR_HUGE);
    if (saved < 0 || write_long(NR_HUGE, saved + 2) < 0 || read_long(NR_HUGE) < saved + 2) {
        if (saved >= 0)
            write_long(NR_HUGE, saved);
        printf("sigbus_in_client_memory_fails_the_transfer: skipped: cannot reserve 2 huge pages in %s "
               "(not root, or no memory for them); nothing else here provokes a SIGBUS in a sealed memfd\n",
               NR_HUGE);
        return;
    }
    size_t huge = 2 << 20, len = 2 * huge;
    int fd = memfd_create("hb", MFD_HUGETLB | MFD_ALLOW_SEALING | MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
    ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    uint8_t *hp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(hp, MAP_FAILED);
    memset(hp, 1, len);
    mcefa_client *c = connect_ok("puncher");
    ck_assert_msg(mcefa_register_fd(c, hp, len, fd, 0, -1) == 0, "register: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_segment_export(c, "punched", NULL, 0), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "punched", &seg), 0);
    uint8_t *src;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, -1, 0, (void **)&src), 0);
    ck_assert_int_eq(mcefa_register(c, src, 1 << 20), 0);
    /* The second huge page goes back to the pool, and the pool is shrunk
     * to what is in use: the daemon's next touch of that page has no page
     * to fault in. */
    ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)huge, (off_t)huge), 0);
    write_long(NR_HUGE, 0);
    mcefa_transfer t = {MCEFA_WRITE, src, seg, (uint64_t)(uintptr_t)hp + huge + 4096, 4096};
    int rc = mcefa_transfer_sync(c, &t, 1, 10000);
    write_long(NR_HUGE, saved);
    ck_assert_msg(daemon_alive(&D), "mcefad died of the SIGBUS; see %s", D.log);
    ck_assert_int_eq(rc, -EFAULT);
    /* The region is marked: a later transfer on it is refused up front. */
    mcefa_transfer again = {MCEFA_WRITE, src, seg, (uint64_t)(uintptr_t)hp, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &again, 1, 10000), -EFAULT);
    ck_assert_msg(strstr(mcefa_last_error(), "faulted"), "error does not say why: %s", mcefa_last_error());
    mcefa_disconnect(c);
    munmap(hp, len);
    close(fd);
    /* Others are still served. */
    self_seg x;
    self_seg_open(&x, "after", 1 << 20);
    mcefa_transfer ok = {MCEFA_WRITE, x.buf, x.seg, (uint64_t)(uintptr_t)x.buf + 4096, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(x.c, &ok, 1, 10000), 0);
    mcefa_disconnect(x.c);
}
END_TEST


static size_t count_maps(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        n++;
    fclose(f);
    return n;
}

/* Item 8: 65,408 regions of 4 KiB from one memfd used to take a mapping
 * each, exhausting vm.max_map_count: new clients could not be served. The
 * regions of one memfd share a mapping now, and the per-client region
 * limit stays well below the kernel's map count. */
START_TEST(many_small_regions_share_one_mapping)
{
    enum { PIECES = 65408 };
    mcefa_client *c = connect_ok("mapper");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, (size_t)PIECES * 4096, -1, 0, (void **)&buf), 0);
    /* The first registration starts the daemon's worker threads (their
     * stacks and malloc arenas are mappings too): count from there. */
    ck_assert_int_eq(mcefa_register(c, buf, 4096), 0);
    size_t before = count_maps(D.pid), ok = 1;
    int rc = 0;
    while (ok < PIECES && (rc = mcefa_register(c, buf + ok * 4096, 4096)) == 0)
        ok++;
    ck_assert_msg(rc == 0 || (rc == -ENOSPC && strstr(mcefa_last_error(), "max_regions_per_client")),
                  "region %zu: %d %s", ok, rc, mcefa_last_error());
    ck_assert_uint_ge(ok, 1024);
    size_t after = count_maps(D.pid);
    ck_assert_msg(after < before + 128, "%zu regions of one memfd took %zu mappings", ok, after - before);
    mcefa_client *late = NULL;
    ck_assert_msg(mcefa_connect(D.sock, "late", &late) == 0, "a new client is refused: %s", mcefa_last_error());
    /* The shared mapping moves the right bytes. */
    self_seg x;
    self_seg_open(&x, "reader", 1 << 20);
    ck_assert_int_eq(mcefa_segment_export(c, "pieces", NULL, 0), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(x.c, "pieces", &seg), 0);
    fill(buf + 5 * 4096, 4096, 9);
    mcefa_transfer t = {MCEFA_READ, x.buf, seg, (uint64_t)(uintptr_t)buf + 5 * 4096, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(x.c, &t, 1, 10000), 0);
    ck_assert(memcmp(x.buf, buf + 5 * 4096, 4096) == 0);
    mcefa_disconnect(x.c);
    mcefa_disconnect(late);
    mcefa_disconnect(c);
}
END_TEST

/* ---- Tests that start their own daemon ----------------------------------- */

/* Item 12: a local client cannot export a name of another host (it would
 * catch the writes of every local client that means that host). */
START_TEST(export_of_another_hosts_name_is_refused)
{
    daemon_start(&D, no_nics);
    mcefa_client *a = connect_ok("impostor");
    ck_assert_int_eq(mcefa_segment_export(a, "hostb:15000", NULL, 0), -EPERM);
    ck_assert_msg(strstr(mcefa_last_error(), "another host"), "error: %s", mcefa_last_error());
    /* This host's names and names without a host part are fine. */
    char mine[300];
    snprintf(mine, sizeof(mine), "%s:15000", mcefa_daemon_hostname(a));
    ck_assert_int_eq(mcefa_segment_export(a, mine, NULL, 0), 0);
    mcefa_client *b = connect_ok("b"), *c = connect_ok("c");
    ck_assert_int_eq(mcefa_segment_export(b, "15001", NULL, 0), 0);
    ck_assert_int_eq(mcefa_segment_export(c, "localhost:15002", NULL, 0), 0);
    mcefa_segment h;
    ck_assert_int_eq(mcefa_segment_open(c, "15001", &h), 0);
    mcefa_disconnect(a);
    mcefa_disconnect(b);
    mcefa_disconnect(c);
    daemon_stop(&D);
}
END_TEST

/* In a child: become uid/gid 65534 with no groups (what setpriv --reuid
 * --regid --clear-groups does). */
static void become_nobody(void)
{
    if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
        _exit(90);
}

/* A second user opens name; returns its exit code: 0 opened, 1 -EACCES
 * with a text naming the setting, 2 anything else. */
static int nobody_opens(const char *name)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        become_nobody();
        mcefa_client *c;
        if (mcefa_connect(D.sock, "nobody", &c) < 0)
            _exit(3);
        mcefa_segment h;
        int rc = mcefa_segment_open(c, name, &h);
        int code = rc == 0 ? 0 : rc == -EACCES && strstr(mcefa_last_error(), "segment_group_access") ? 1 : 2;
        mcefa_disconnect(c);
        _exit(code);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void start_shared_socket(const char *extra)
{
    const char *const args[] = {"--provider=none", "--socket_mode=0666", extra, NULL};
    daemon_start(&D, args);
    ck_assert_int_eq(chmod(D.dir, 0755), 0); /* mkdtemp made it 0700 */
}

/* Item 13: another user who may use the socket cannot open someone else's
 * segment unless the operator allows it (segment_group_access). */
START_TEST(other_users_segment_cannot_be_opened)
{
    start_shared_socket(NULL);
    self_seg x;
    self_seg_open(&x, "roots", 1 << 20);
    ck_assert_int_eq(nobody_opens("roots"), 1);
    mcefa_disconnect(x.c);
    daemon_stop(&D);

    start_shared_socket("--segment_group_access=true");
    self_seg_open(&x, "roots", 1 << 20);
    ck_assert_int_eq(nobody_opens("roots"), 0);
    mcefa_disconnect(x.c);
    daemon_stop(&D);
}
END_TEST

/* Item 10: registered bytes are capped per client and in total, counted
 * before the work is queued. */
START_TEST(registered_bytes_are_capped)
{
    const char *const args[] = {"--provider=none", "--max_registered_bytes_per_client=8388608",
                                "--max_registered_bytes=12582912", NULL};
    daemon_start(&D, args);
    mcefa_client *a = connect_ok("a"), *b = connect_ok("b");
    void *pa[3], *pb[2];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mcefa_alloc(a, 4 << 20, -1, 0, &pa[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(mcefa_alloc(b, 4 << 20, -1, 0, &pb[i]), 0);
    ck_assert_int_eq(mcefa_register(a, pa[0], 4 << 20), 0);
    ck_assert_int_eq(mcefa_register(a, pa[1], 4 << 20), 0);
    ck_assert_int_eq(mcefa_register(a, pa[2], 4 << 20), -ENOSPC);
    ck_assert_msg(strstr(mcefa_last_error(), "max_registered_bytes_per_client"), "%s", mcefa_last_error());
    ck_assert_int_eq(mcefa_register(b, pb[0], 4 << 20), 0);
    ck_assert_int_eq(mcefa_register(b, pb[1], 4 << 20), -ENOSPC);
    ck_assert_msg(strstr(mcefa_last_error(), "(max_registered_bytes)"), "%s", mcefa_last_error());
    ck_assert_int_eq(mcefa_unregister(a, pa[1]), 0);
    ck_assert_int_eq(mcefa_register(b, pb[1], 4 << 20), 0);
    mcefa_disconnect(a);
    mcefa_disconnect(b);
    daemon_stop(&D);
}
END_TEST

static int log_has(const char *what)
{
    FILE *f = fopen(D.log, "r");
    char line[1024];
    int found = 0;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* Many clients that never read their replies, each under
 * max_outbound_bytes: together they hit max_outbound_bytes_total and the
 * worst one is disconnected. */
START_TEST(unread_replies_are_capped_in_total)
{
    const char *const args[] = {"--provider=none", "--max_outbound_bytes_total=1048576", NULL};
    daemon_start(&D, args);
    enum { CLIENTS = 4, REQS = 20000 };
    Mcefa__StatusQuery q = MCEFA__STATUS_QUERY__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 2;
    req.body_case = MCEFA__REQUEST__BODY_STATUS;
    req.status = &q;
    uint8_t *one;
    size_t n;
    ck_assert_int_eq(wire_pack(&req.base, &one, &n), 0);
    uint8_t *many = malloc(n * REQS);
    for (int i = 0; i < REQS; i++)
        memcpy(many + i * n, one, n);
    int fds[CLIENTS];
    for (int k = 0; k < CLIENTS; k++) {
        fds[k] = raw_connect(D.sock);
        ck_assert_int_ge(fds[k], 0);
        raw_hello(fds[k], MCEFA_PROTOCOL_VERSION);
        raw_send(fds[k], many, n * REQS);
    }
    int seen = 0;
    for (int i = 0; i < 300 && !(seen = log_has("max_outbound_bytes_total")); i++)
        usleep(10000);
    ck_assert_msg(seen, "no client was disconnected for the total of queued replies; see %s", D.log);
    ck_assert_msg(daemon_alive(&D), "mcefad died; see %s", D.log);
    for (int k = 0; k < CLIENTS; k++)
        close(fds[k]);
    free(one);
    free(many);
    mcefa_client *c = connect_ok("after");
    mcefa_disconnect(c);
    daemon_stop(&D);
}
END_TEST

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Reads until the peer closes or ms pass; returns what came, 0-terminated. */
static size_t read_for(int fd, char *buf, size_t len, int ms)
{
    size_t got = 0;
    for (int waited = 0; waited < ms && got + 1 < len; waited += 10) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = 0;
    return got;
}

/* Item 14: a request with a NUL byte is answered at once (400), and
 * connections that never finish a request cannot keep a scrape out. */
START_TEST(metrics_survive_garbage_and_slowloris)
{
    char flag[64], buf[65536];
    snprintf(flag, sizeof(flag), "--metrics_listen=127.0.0.1:%d", free_ports(1));
    int port = atoi(strrchr(flag, ':') + 1);
    const char *const args[] = {"--provider=none", flag, NULL};
    daemon_start(&D, args);
    int fd = tcp_connect(port);
    raw_send(fd, "GET /\0metrics HTTP/1.0\r\n\r\n", 26);
    read_for(fd, buf, sizeof(buf), 1000);
    ck_assert_msg(strstr(buf, " 400 "), "no 400 within 1 s for a NUL byte: '%s'", buf);
    close(fd);
    enum { SLOW = 80 };
    int slow[SLOW];
    for (int i = 0; i < SLOW; i++) {
        slow[i] = tcp_connect(port);
        raw_send(slow[i], "GET /metr", 9);
    }
    usleep(100 * 1000);
    fd = tcp_connect(port);
    raw_send(fd, "GET /metrics HTTP/1.0\r\n\r\n", 25);
    read_for(fd, buf, sizeof(buf), 2000);
    ck_assert_msg(strstr(buf, "200 OK") && strstr(buf, "mcefad_info"), "scrape kept out: '%.200s'", buf);
    close(fd);
    for (int i = 0; i < SLOW; i++)
        close(slow[i]);
    daemon_stop(&D);
}
END_TEST

int main(void)
{
    /* A failing test exits before it can put the huge page pool back. */
    long huge_pages = read_long(NR_HUGE);
    Suite *s = suite_create("local_attack");
    TCase *tc = tcase_create("copies");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, overlapping_copy_is_a_move);
    tcase_add_test(tc, huge_batch_does_not_starve_others);
    tcase_add_test(tc, killed_clients_copies_stop);
    tcase_add_test(tc, sigbus_in_client_memory_fails_the_transfer);
    tcase_add_test(tc, many_small_regions_share_one_mapping);
    suite_add_tcase(s, tc);
    TCase *own = tcase_create("own daemon");
    tcase_set_timeout(own, 60);
    tcase_add_test(own, export_of_another_hosts_name_is_refused);
    tcase_add_test(own, other_users_segment_cannot_be_opened);
    tcase_add_test(own, registered_bytes_are_capped);
    tcase_add_test(own, unread_replies_are_capped_in_total);
    tcase_add_test(own, metrics_survive_garbage_and_slowloris);
    suite_add_tcase(s, own);
    int rc = run_suite(s);
    if (huge_pages >= 0 && read_long(NR_HUGE) != huge_pages)
        write_long(NR_HUGE, huge_pages);
    return rc;
}
