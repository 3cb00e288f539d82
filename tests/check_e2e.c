/* End to end: a real mcefad, real client processes (forked, each with its
 * own connection), threads sharing one connection, and every kind of bad
 * input the daemon must survive; a scripted daemon for what the real one
 * cannot be made to do on demand (replies out of order, breaking). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "harness.h"
#include "shm/completion.h"
#include "shm/memfd.h"
#include "suite.h"

static test_daemon D;

/* Same-host suite: no NICs, whatever this machine has. */
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

/* A target process: exports `name` over a buffer of `size` bytes whose
 * first half holds pattern 1. It reports its buffer address on the ready
 * pipe and then obeys one command: 'v' checks that the second half holds
 * pattern 2 (exit 0 if so), 'q' just exits, 's' sleeps until killed. */
typedef struct target {
    pid_t pid;
    int ready, go;
    uint64_t addr;
} target;

static void target_start(target *t, const char *name, size_t size)
{
    int r[2], g[2];
    ck_assert_int_eq(pipe(r), 0);
    ck_assert_int_eq(pipe(g), 0);
    t->pid = fork();
    ck_assert_int_ge(t->pid, 0);
    if (t->pid == 0) {
        close(r[0]);
        close(g[1]);
        mcefa_client *c;
        void *buf;
        if (mcefa_connect(D.sock, "target", &c) < 0 || mcefa_alloc(c, size, -1, 0, &buf) < 0)
            _exit(10);
        memset(buf, 0, size);
        fill(buf, size / 2, 1);
        if (mcefa_register(c, buf, size) < 0 || mcefa_segment_export(c, name, NULL, 0) < 0)
            _exit(11);
        uint64_t a = (uint64_t)(uintptr_t)buf;
        if (write(r[1], &a, sizeof(a)) != sizeof(a))
            _exit(12);
        char cmd = 'q';
        if (read(g[0], &cmd, 1) != 1)
            _exit(13);
        if (cmd == 's')
            for (;;)
                pause();
        int ok = cmd == 'q' || same((uint8_t *)buf + size / 2, size / 2, 2);
        mcefa_disconnect(c);
        _exit(ok ? 0 : 1);
    }
    close(r[1]);
    close(g[0]);
    t->ready = r[0];
    t->go = g[1];
    ck_assert_int_eq(read(t->ready, &t->addr, sizeof(t->addr)), (ssize_t)sizeof(t->addr));
}

static int target_finish(target *t, char cmd)
{
    int st;
    ck_assert_int_eq(write(t->go, &cmd, 1), 1);
    ck_assert_int_eq(waitpid(t->pid, &st, 0), t->pid);
    close(t->ready);
    close(t->go);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* Opens `name`, reads its first half, writes pattern 2 into its second
 * half, all through the daemon. Returns 0 or a negative errno. */
static int read_then_write(mcefa_client *c, const char *name, uint64_t addr, size_t size)
{
    uint8_t *buf;
    int rc = mcefa_alloc(c, size, -1, 0, (void **)&buf);
    if (rc < 0)
        return rc;
    if ((rc = mcefa_register(c, buf, size)) < 0)
        return rc;
    mcefa_segment seg;
    if ((rc = mcefa_segment_open(c, name, &seg)) < 0)
        return rc;
    fill(buf + size / 2, size / 2, 2);
    mcefa_transfer x[2] = {
        {MCEFA_READ, buf, seg, addr, size / 2},
        {MCEFA_WRITE, buf + size / 2, seg, addr + size / 2, size / 2},
    };
    if ((rc = mcefa_transfer_sync(c, x, 2, 10000)) < 0)
        return rc;
    if (!same(buf, size / 2, 1))
        return -EILSEQ;
    mcefa_segment_close(c, seg);
    mcefa_unregister(c, buf);
    mcefa_free(c, buf);
    return 0;
}

static void assert_serving(void)
{
    ck_assert_msg(daemon_alive(&D), "mcefad died; see %s", D.log);
    target t;
    target_start(&t, "probe-1", 1 << 20);
    mcefa_client *c = connect_ok("prober");
    int rc = read_then_write(c, "probe-1", t.addr, 1 << 20);
    ck_assert_msg(rc == 0, "transfer after bad input failed: %d %s", rc, mcefa_last_error());
    mcefa_disconnect(c);
    ck_assert_int_eq(target_finish(&t, 'v'), 0);
}

START_TEST(two_processes_read_and_write)
{
    target t;
    size_t size = 8 << 20;
    target_start(&t, "localhost:12345", size);
    mcefa_client *c = connect_ok("initiator");
    int rc = read_then_write(c, "localhost:12345", t.addr, size);
    ck_assert_msg(rc == 0, "read_then_write: %d %s", rc, mcefa_last_error());
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    ck_assert_uint_ge(st.bytes_copied, size);
    ck_assert_uint_eq(st.clients, 2);
    ck_assert_str_eq(st.version, mcefa_daemon_version(c));
    mcefa_disconnect(c);
    ck_assert_int_eq(target_finish(&t, 'v'), 0);
}
END_TEST

START_TEST(async_batch_with_many_requests_and_large_split)
{
    target t;
    size_t size = 32 << 20;
    target_start(&t, "big-1", size);
    mcefa_client *c = connect_ok("async");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, size, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, size), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "big-1", &seg), 0);
    /* 64 reads of 4 KiB, then one 16 MiB read that the daemon splits. */
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(c, 65, &b), 0);
    mcefa_transfer x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (mcefa_transfer){MCEFA_READ, buf + i * 4096, seg, t.addr + (uint64_t)i * 4096, 4096};
    ck_assert_int_eq(mcefa_batch_submit(b, x, 64), 0);
    mcefa_transfer big = {MCEFA_READ, buf + (1 << 20), seg, t.addr + (1 << 20), 15 << 20};
    ck_assert_int_eq(mcefa_batch_submit(b, &big, 1), 64);
    /* The batch is full now. */
    ck_assert_int_eq(mcefa_batch_submit(b, &big, 1), -ENOSPC);
    ck_assert_int_eq(mcefa_batch_wait(b, 10000), 0);
    uint32_t sub, fin, failed;
    mcefa_batch_progress(b, &sub, &fin, &failed);
    ck_assert_uint_eq(sub, 65);
    ck_assert_uint_eq(fin, 65);
    ck_assert_uint_eq(failed, 0);
    for (uint32_t i = 0; i < 65; i++)
        ck_assert_int_eq(mcefa_batch_state(b, i, NULL), MCEFA_COMPLETED);
    ck_assert(same(buf, 64 * 4096, 1));
    /* Compare the big block byte for byte with the pattern at its offset. */
    for (size_t i = 1 << 20; i < 16 << 20; i++)
        if (buf[i] != (uint8_t)(i * 7 + 1 + (i >> 12)))
            ck_abort_msg("byte %zu differs after the split read", i);
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    mcefa_disconnect(c);
    ck_assert_int_eq(target_finish(&t, 'q'), 0);
}
END_TEST

START_TEST(many_clients_at_once)
{
    target t;
    size_t size = 16 << 20;
    target_start(&t, "shared-1", size);
    enum { N = 6 };
    pid_t kids[N];
    for (int k = 0; k < N; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            mcefa_client *c;
            if (mcefa_connect(D.sock, "many", &c) < 0)
                _exit(20);
            uint8_t *buf;
            if (mcefa_alloc(c, size / 2, -1, 0, (void **)&buf) < 0 || mcefa_register(c, buf, size / 2) < 0)
                _exit(21);
            mcefa_segment seg;
            if (mcefa_segment_open(c, "shared-1", &seg) < 0)
                _exit(22);
            for (int round = 0; round < 20; round++) {
                memset(buf, 0, size / 2);
                mcefa_transfer x = {MCEFA_READ, buf, seg, t.addr, size / 2};
                if (mcefa_transfer_sync(c, &x, 1, 10000) < 0)
                    _exit(23);
                if (!same(buf, size / 2, 1))
                    _exit(24);
            }
            mcefa_disconnect(c);
            _exit(0);
        }
    }
    for (int k = 0; k < N; k++) {
        int st;
        ck_assert_int_eq(waitpid(kids[k], &st, 0), kids[k]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d failed with status %d", k, st);
    }
    ck_assert_int_eq(target_finish(&t, 'q'), 0);
}
END_TEST

START_TEST(garbage_bytes)
{
    int fd = raw_connect(D.sock);
    ck_assert_int_ge(fd, 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: mcefad\r\n\r\n";
    raw_send(fd, junk, sizeof(junk) - 1);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(r->error, "max_frame_bytes"));
    mcefa__response__free_unpacked(r, NULL);
    ck_assert(raw_closed(fd, &rd));
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(undecodable_frame_keeps_connection)
{
    int fd = raw_connect(D.sock);
    uint8_t frame[4 + 8] = {8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    raw_send(fd, frame, sizeof(frame));
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, -EBADMSG);
    ck_assert_ptr_nonnull(strstr(r->error, "malformed"));
    mcefa__response__free_unpacked(r, NULL);
    /* The stream is still in sync: a hello on it works. */
    raw_hello(fd, MCEFA_PROTOCOL_VERSION);
    r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 0);
    ck_assert_int_eq(r->body_case, MCEFA__RESPONSE__BODY_WELCOME);
    mcefa__response__free_unpacked(r, NULL);
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(truncated_frame_then_disconnect)
{
    int fd = raw_connect(D.sock);
    uint8_t part[4 + 10] = {100, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    raw_send(fd, part, sizeof(part));
    usleep(50000);
    close(fd);
    /* A second client trickles a valid hello one byte at a time. */
    fd = raw_connect(D.sock);
    Mcefa__Hello h = MCEFA__HELLO__INIT;
    h.protocol_version = MCEFA_PROTOCOL_VERSION;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 7;
    req.body_case = MCEFA__REQUEST__BODY_HELLO;
    req.hello = &h;
    uint8_t *b;
    size_t n;
    ck_assert_int_eq(wire_pack(&req.base, &b, &n), 0);
    for (size_t i = 0; i < n; i++) {
        raw_send(fd, b + i, 1);
        usleep(2000);
    }
    free(b);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->seq, 7);
    ck_assert_int_eq(r->status, 0);
    mcefa__response__free_unpacked(r, NULL);
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(oversize_frame)
{
    int fd = raw_connect(D.sock);
    uint8_t hdr[4] = {0, 0, 0, 4}; /* 64 MiB */
    raw_send(fd, hdr, 4);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, -EMSGSIZE);
    mcefa__response__free_unpacked(r, NULL);
    ck_assert(raw_closed(fd, &rd));
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(unknown_message_type)
{
    int fd = raw_connect(D.sock);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    raw_hello_ok(fd, &rd);
    Mcefa__Response *r;
    int cq = wire_reader_take_fd(&rd);
    ck_assert_int_ge(cq, 0);
    close(cq);
    /* seq = 2, then field 99 (varint 1): a message this daemon never heard of. */
    uint8_t frame[] = {5, 0, 0, 0, 0x08, 0x02, 0x98, 0x06, 0x01};
    raw_send(fd, frame, sizeof(frame));
    r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->seq, 2);
    ck_assert_int_eq(r->status, -EOPNOTSUPP);
    ck_assert_ptr_nonnull(strstr(r->error, "unknown message type"));
    mcefa__response__free_unpacked(r, NULL);
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(protocol_version_mismatch)
{
    int fd = raw_connect(D.sock);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    raw_hello(fd, 999);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, -EPROTONOSUPPORT);
    ck_assert_ptr_nonnull(strstr(r->error, "protocol version 999"));
    mcefa__response__free_unpacked(r, NULL);
    ck_assert(raw_closed(fd, &rd));
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(request_before_hello)
{
    int fd = raw_connect(D.sock);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    Mcefa__StatusQuery q = MCEFA__STATUS_QUERY__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 3;
    req.body_case = MCEFA__REQUEST__BODY_STATUS;
    req.status = &q;
    raw_send_request(fd, &req);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_int_eq(r->status, -EPROTO);
    ck_assert_ptr_nonnull(strstr(r->error, "hello"));
    mcefa__response__free_unpacked(r, NULL);
    ck_assert(raw_closed(fd, &rd));
    wire_reader_free(&rd);
    close(fd);
}
END_TEST

START_TEST(bad_addresses_are_rejected_before_moving)
{
    target t;
    size_t size = 1 << 20;
    target_start(&t, "bounds-1", size);
    mcefa_client *c = connect_ok("bounds");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, size, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, size / 2), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "bounds-1", &seg), 0);
    memset(buf, 0xee, size);

    /* Local memory that is not registered. */
    mcefa_transfer x = {MCEFA_READ, buf + size / 2, seg, t.addr, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "not inside any registered region"));
    /* Local range that runs past its region. */
    x = (mcefa_transfer){MCEFA_READ, buf + size / 2 - 100, seg, t.addr, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "runs past the end"));
    /* Remote range outside the segment. */
    x = (mcefa_transfer){MCEFA_WRITE, buf, seg, t.addr + size - 10, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "segment 'bounds-1'"));
    x = (mcefa_transfer){MCEFA_WRITE, buf, seg, 0x1000, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EFAULT);
    /* A wrapping range. */
    x = (mcefa_transfer){MCEFA_WRITE, buf, seg, t.addr, UINT64_MAX - 10};
    ck_assert_int_lt(mcefa_transfer_sync(c, &x, 1, 5000), 0);
    /* An unknown segment handle and an unknown opcode. */
    x = (mcefa_transfer){MCEFA_WRITE, buf, seg + 1000, t.addr, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EBADF);
    x = (mcefa_transfer){7, buf, seg, t.addr, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EINVAL);
    /* One bad transfer rejects the whole submission: the good one before it
     * did not move either (the target's second half is still zero). */
    mcefa_transfer two[2] = {
        {MCEFA_WRITE, buf, seg, t.addr + size / 2, 4096},
        {MCEFA_WRITE, buf, seg, t.addr + size, 4096},
    };
    ck_assert_int_eq(mcefa_transfer_sync(c, two, 2, 5000), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "transfer 1"));
    uint8_t *check = buf + size / 4;
    mcefa_transfer back = {MCEFA_READ, check, seg, t.addr + size / 2, 4096};
    ck_assert_int_eq(mcefa_transfer_sync(c, &back, 1, 5000), 0);
    for (int i = 0; i < 4096; i++)
        ck_assert_uint_eq(check[i], 0);

    mcefa_disconnect(c);
    ck_assert_int_eq(target_finish(&t, 'q'), 0);
    assert_serving();
}
END_TEST

START_TEST(unknown_segment)
{
    mcefa_client *c = connect_ok("lost");
    mcefa_segment seg;
    /* A name on this host that nobody exports. */
    char name[300];
    snprintf(name, sizeof(name), "%s:4242", mcefa_daemon_hostname(c));
    ck_assert_int_eq(mcefa_segment_open(c, name, &seg), -ENOENT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), name));
    /* Another host, with no NIC to reach it (this daemon has none). */
    ck_assert_int_eq(mcefa_segment_open(c, "nosuchhost:4242", &seg), -ENETUNREACH);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "nosuchhost"));
    ck_assert_int_eq(mcefa_segment_warmup(c, name, NULL), -ENOENT);
    /* A host name that is not printable ASCII is refused, and the
     * connection goes on working. */
    ck_assert_int_eq(mcefa_segment_open(c, "\xff\xfe:1", &seg), -EINVAL);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "printable"));
    ck_assert_int_eq(mcefa_segment_warmup(c, "bad host:1", NULL), -EINVAL);
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    ck_assert_int_eq(mcefa_segment_close(c, 12345), -EBADF);
    mcefa_disconnect(c);
    assert_serving();
}
END_TEST

START_TEST(segment_names)
{
    mcefa_client *a = connect_ok("a"), *b = connect_ok("b");
    char name[300];
    ck_assert_int_eq(mcefa_segment_export(a, "dup-1", name, sizeof(name)), 0);
    ck_assert_str_eq(name, "dup-1");
    ck_assert_int_eq(mcefa_segment_export(b, "dup-1", NULL, 0), -EEXIST);
    ck_assert_int_eq(mcefa_segment_export(b, "has space", NULL, 0), -EINVAL);
    /* The daemon picks a host:port style name when asked. */
    ck_assert_int_eq(mcefa_segment_export(b, NULL, name, sizeof(name)), 0);
    ck_assert_ptr_nonnull(strchr(name, ':'));
    ck_assert(strncmp(name, mcefa_daemon_hostname(b), strlen(mcefa_daemon_hostname(b))) == 0);
    /* Repeated open returns the same handle. */
    mcefa_segment s1, s2;
    ck_assert_int_eq(mcefa_segment_open(b, "dup-1", &s1), 0);
    ck_assert_int_eq(mcefa_segment_open(b, "dup-1", &s2), 0);
    ck_assert_uint_eq(s1, s2);
    /* When the owner goes, the handle reports it and the name is free. */
    mcefa_disconnect(a);
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(b, 4096, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(b, buf, 4096), 0);
    mcefa_transfer x = {MCEFA_READ, buf, s1, 0x1000, 16};
    int rc = -1;
    for (int i = 0; i < 100 && (rc = mcefa_transfer_sync(b, &x, 1, 1000)) != -ENOTCONN; i++)
        usleep(10000);
    ck_assert_int_eq(rc, -ENOTCONN);
    mcefa_client *a2 = connect_ok("a2");
    ck_assert_int_eq(mcefa_segment_export(a2, "dup-1", NULL, 0), 0);
    mcefa_disconnect(a2);
    mcefa_disconnect(b);
}
END_TEST

START_TEST(registration_errors)
{
    mcefa_client *c = connect_ok("reg");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, 1 << 19), 0);
    /* Overlap. */
    ck_assert_int_eq(mcefa_register(c, buf + 4096, 4096), -EEXIST);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "overlaps"));
    ck_assert_int_eq(mcefa_register(c, buf + (1 << 19), 1 << 19), 0);
    /* Double unregister. */
    ck_assert_int_eq(mcefa_unregister(c, buf), 0);
    ck_assert_int_eq(mcefa_unregister(c, buf), -ENOENT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "no region"));
    /* Memory the daemon cannot map is plain memory (copied by cross-memory
     * attach); memory the process does not have is refused. */
    char *heap = malloc(8192);
    ck_assert_int_eq(mcefa_register(c, heap, 8192), 0);
    ck_assert_int_eq(mcefa_unregister(c, heap), 0);
    free(heap);
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)0x10000, 8192), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "not mapped readable"));
    /* A memfd that its owner could still shrink. */
    int fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_eq(ftruncate(fd, 8192), 0);
    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_int_eq(mcefa_register_fd(c, m, 8192, fd, 0, -1), -EPERM);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "F_SEAL_SHRINK"));
    /* A descriptor that is not a memfd at all, and a range past its end. */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(mcefa_register_fd(c, m, 8192, p[0], 0, -1), -EINVAL);
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
    ck_assert_int_eq(mcefa_register_fd(c, m, 8192, fd, 4096, -1), -ERANGE);
    ck_assert_int_eq(mcefa_register_fd(c, m, 8192, fd, 0, -1), 0);
    close(p[0]);
    close(p[1]);
    close(fd);
    mcefa_disconnect(c);
    assert_serving();
}
END_TEST

/* Plain registrations from a raw client that lies: descriptors it should
 * not send, a GPU description beside it, empty, wrapping and kernel-space
 * ranges, memory the process does not have; each refused with its own
 * text, descriptors not left for the next request; an honest one works. */
START_TEST(plain_registration_checked)
{
    int fd = raw_connect(D.sock);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    raw_hello_ok(fd, &rd);
    char *mem = malloc(1 << 16), why[ERRLEN];
    uint64_t a = (uint64_t)(uintptr_t)mem;
    Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
    Mcefa__GpuMemory g = MCEFA__GPU_MEMORY__INIT;
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    m.plain = 1;
    m.addr = a;
    m.length = 4096;
    m.fd_count = 1;
    ck_assert_int_eq(raw_register(fd, &rd, 10, &m, pfd, 1, why), -EINVAL);
    ck_assert_msg(strstr(why, "takes no descriptor"), "%s", why);
    m.fd_count = 0;
    m.gpu = &g;
    ck_assert_int_eq(raw_register(fd, &rd, 11, &m, NULL, 0, why), -EINVAL);
    m.gpu = NULL;
    m.length = 0;
    ck_assert_int_eq(raw_register(fd, &rd, 12, &m, NULL, 0, why), -EINVAL);
    ck_assert_msg(strstr(why, "empty, wrapping"), "%s", why);
    m.addr = UINT64_MAX - 100;
    m.length = 4096;
    ck_assert_int_eq(raw_register(fd, &rd, 13, &m, NULL, 0, why), -EINVAL);
    m.addr = UINT64_C(0xffff800000000000);
    ck_assert_int_eq(raw_register(fd, &rd, 14, &m, NULL, 0, why), -EINVAL);
    ck_assert_msg(strstr(why, "not a user-space range"), "%s", why);
    m.addr = 0x10000;
    ck_assert_int_eq(raw_register(fd, &rd, 15, &m, NULL, 0, why), -EFAULT);
    ck_assert_msg(strstr(why, "not mapped readable"), "%s", why);
    /* The last byte unmapped: refused too. */
    m.addr = a;
    m.length = UINT64_C(1) << 40;
    ck_assert_int_eq(raw_register(fd, &rd, 16, &m, NULL, 0, why), -EFAULT);
    m.length = 1 << 16;
    ck_assert_int_eq(raw_register(fd, &rd, 17, &m, NULL, 0, why), 0);
    ck_assert_int_eq(raw_register(fd, &rd, 18, &m, NULL, 0, why), -EEXIST);
    close(pfd[0]);
    close(pfd[1]);
    wire_reader_free(&rd);
    close(fd);
    free(mem);
    assert_serving();
}
END_TEST

/* A client registers plain memory, forks a child that keeps its
 * connection, and execs another program: the child's transfers from the
 * registered range then fail (-ESRCH) instead of reading the new program's
 * memory under the same pid (it could be a setuid program). */
START_TEST(plain_memory_after_exec_is_unreachable)
{
    int ready[2], go[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid_t p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0) {
        mcefa_client *c;
        if (mcefa_connect(D.sock, "execer", &c) < 0)
            _exit(10);
        size_t n = 1 << 16;
        char *mem = malloc(n);
        memset(mem, 0x77, n);
        if (mcefa_register(c, mem, n) < 0 || mcefa_segment_export(c, "exec-seg", NULL, 0) < 0)
            _exit(11);
        void *buf;
        if (mcefa_alloc(c, n, -1, 0, &buf) < 0 || mcefa_register(c, buf, n) < 0)
            _exit(12);
        mcefa_segment seg;
        if (mcefa_segment_open(c, "exec-seg", &seg) < 0)
            _exit(13);
        mcefa_transfer x = {MCEFA_READ, buf, seg, (uint64_t)(uintptr_t)mem, n};
        if (mcefa_transfer_sync(c, &x, 1, 5000) < 0 || ((char *)buf)[n - 1] != 0x77)
            _exit(14); /* before the exec it works */
        pid_t child = fork();
        if (child == 0) {
            /* Keeps the connection; waits for the exec, then tries again. */
            char b;
            if (read(go[0], &b, 1) != 1)
                _exit(20);
            memset(buf, 0, n);
            int rc = mcefa_transfer_sync(c, &x, 1, 5000);
            char res = rc == -ESRCH && ((char *)buf)[0] == 0 ? 'y' : 'n';
            if (write(ready[1], &res, 1) != 1)
                _exit(22);
            _exit(0);
        }
        if (write(ready[1], &child, sizeof(child)) != sizeof(child))
            _exit(15);
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(16);
    }
    pid_t child;
    ck_assert_int_eq(read(ready[0], &child, sizeof(child)), sizeof(child));
    /* The exec is done once /proc/<pid>/exe is sleep. */
    char exe[256] = "", path[64];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)p);
    for (int i = 0; i < 500; i++) {
        ssize_t l = readlink(path, exe, sizeof(exe) - 1);
        exe[l > 0 ? l : 0] = 0;
        if (strstr(exe, "sleep"))
            break;
        usleep(10000);
    }
    ck_assert_msg(strstr(exe, "sleep"), "the client did not exec (%s)", exe);
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    /* The grandchild's answer: 'y' when its transfer failed with -ESRCH
     * and moved nothing. */
    char res = 0;
    ck_assert_int_eq(read(ready[0], &res, 1), 1);
    ck_assert_msg(res == 'y', "the transfer from the exec'd client's memory did not fail with -ESRCH");
    kill(child, SIGKILL);
    int st;
    kill(p, SIGKILL);
    waitpid(p, &st, 0);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    assert_serving();
}
END_TEST

/* A RegisterMemory refused for its descriptor count must not leave its
 * descriptors for the next request to take. */
START_TEST(refused_descriptors_are_not_reused)
{
    int fd = raw_connect(D.sock);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    raw_hello_ok(fd, &rd);
    Mcefa__Response *r;
    int completion = wire_reader_take_fd(&rd);
    ck_assert_int_ge(completion, 0);
    close(completion);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    size_t size;
    int mfd = shm_memfd_create("reused", 1 << 16, 0, &size);
    ck_assert_int_ge(mfd, 0);
    for (int round = 0; round < 2; round++) {
        Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
        m.addr = 0x10000000;
        m.length = 1 << 16;
        m.fd_count = round == 0 ? 2 : 1;
        m.numa_node = -1;
        Mcefa__Request req = MCEFA__REQUEST__INIT;
        req.seq = 2 + (uint64_t)round;
        req.body_case = MCEFA__REQUEST__BODY_REGISTER_MEMORY;
        req.register_memory = &m;
        uint8_t *b;
        size_t n;
        ck_assert_int_eq(wire_pack(&req.base, &b, &n), 0);
        ck_assert_int_eq(wire_send_all(fd, b, n, round == 0 ? p : &mfd, round == 0 ? 2 : 1), 0);
        free(b);
        r = raw_recv(fd, &rd);
        if (round == 0)
            ck_assert_int_eq(r->status, -EINVAL);
        else
            ck_assert_msg(r->status == 0, "second register: %d %s", r->status, r->error);
        mcefa__response__free_unpacked(r, NULL);
    }
    close(p[0]);
    close(p[1]);
    close(mfd);
    wire_reader_free(&rd);
    close(fd);
    assert_serving();
}
END_TEST

START_TEST(batch_errors)
{
    mcefa_client *c = connect_ok("batches");
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(c, 0, &b), -EINVAL);
    ck_assert_int_eq(mcefa_batch_alloc(c, 1u << 30, &b), -EINVAL);
    /* Fill the completion area, then see a clear refusal. */
    mcefa_batch *big;
    ck_assert_int_eq(mcefa_batch_alloc(c, 40000, &big), 0);
    ck_assert_int_eq(mcefa_batch_alloc(c, 40000, &b), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "free finished batches"));
    ck_assert_int_eq(mcefa_batch_free(big), 0);
    ck_assert_int_eq(mcefa_batch_alloc(c, 40000, &b), 0);
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    mcefa_disconnect(c);
}
END_TEST

START_TEST(numa_and_huge_page_buffers)
{
    mcefa_client *c = connect_ok("numa");
    void *p;
    /* Node 0 exists on every Linux host; node 4095 does not. */
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, 0, 0, &p), 0);
    ck_assert_int_eq(mcefa_register(c, p, 1 << 20), 0);
    ck_assert_int_eq(mcefa_unregister(c, p), 0);
    ck_assert_int_eq(mcefa_free(c, p), 0);
    ck_assert_int_eq(mcefa_free(c, p), -EINVAL);
    void *q;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, 4095, 0, &q), -EINVAL);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "NUMA node 4095"));
    int rc = mcefa_alloc(c, 2 << 20, -1, MCEFA_ALLOC_HUGE, &q);
    if (rc < 0) {
        FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
        long n = -1;
        if (f) {
            if (fscanf(f, "%ld", &n) != 1)
                n = -1;
            fclose(f);
        }
        ck_assert_msg(n <= 0, "huge page allocation failed with %ld pages reserved: %s", n, mcefa_last_error());
        printf("numa_and_huge_page_buffers: huge-page part skipped: no huge pages reserved "
               "(/proc/sys/vm/nr_hugepages = %ld)\n",
               n);
        ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "huge pages"));
    } else {
        ck_assert_int_eq(mcefa_register(c, q, 2 << 20), 0);
        ck_assert_int_eq(mcefa_unregister(c, q), 0);
        ck_assert_int_eq(mcefa_free(c, q), 0);
    }
    mcefa_disconnect(c);
}
END_TEST

/* kill -9 of an initiator while its batch is being copied, and of a target
 * whose memory is being written. */
START_TEST(client_killed_mid_batch)
{
    size_t size = 256 << 20;
    target t;
    target_start(&t, "victim-1", size);
    int sync[2];
    ck_assert_int_eq(pipe(sync), 0);
    pid_t kid = fork();
    if (kid == 0) {
        mcefa_client *c;
        uint8_t *buf;
        mcefa_segment seg;
        mcefa_batch *b;
        if (mcefa_connect(D.sock, "doomed", &c) < 0 || mcefa_alloc(c, size, -1, 0, (void **)&buf) < 0 ||
            mcefa_register(c, buf, size) < 0 || mcefa_segment_open(c, "victim-1", &seg) < 0 ||
            mcefa_batch_alloc(c, 128, &b) < 0)
            _exit(1);
        /* Into the target's second half: the first keeps its pattern. */
        mcefa_transfer x[128];
        for (int i = 0; i < 128; i++)
            x[i] = (mcefa_transfer){MCEFA_WRITE, buf + (size_t)i * (1 << 20), seg,
                                    t.addr + size / 2 + (uint64_t)i * (1 << 20), 1 << 20};
        for (int round = 0;; round++) {
            if (mcefa_batch_submit(b, x, 128) < 0)
                _exit(2);
            if (round == 0 && write(sync[1], "s", 1) != 1)
                _exit(3);
            mcefa_batch_wait(b, -1);
            mcefa_batch_free(b);
            if (mcefa_batch_alloc(c, 128, &b) < 0)
                _exit(4);
        }
    }
    char ch;
    ck_assert_int_eq(read(sync[0], &ch, 1), 1);
    ck_assert_int_eq(kill(kid, SIGKILL), 0);
    waitpid(kid, NULL, 0);

    /* The daemon notices, frees that client, and serves the rest. */
    mcefa_client *c = connect_ok("survivor");
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(mcefa_status(c, &st), 0);
        if (st.clients == 2)
            break;
        usleep(10000);
    }
    ck_assert_uint_eq(st.clients, 2);
    ck_assert_int_eq(read_then_write(c, "victim-1", t.addr, 8 << 20), 0);

    /* Now kill the target while we write into it. */
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, size, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, size), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "victim-1", &seg), 0);
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(c, 256, &b), 0);
    mcefa_transfer x[256];
    for (int i = 0; i < 256; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, buf + (size_t)i * (1 << 20), seg, t.addr + (uint64_t)i * (1 << 20),
                                1 << 20};
    ck_assert_int_eq(mcefa_batch_submit(b, x, 256), 0);
    kill(t.pid, SIGKILL);
    waitpid(t.pid, NULL, 0);
    /* Transfers already accepted finish into memory the daemon still holds. */
    ck_assert_int_eq(mcefa_batch_wait(b, 30000), 0);
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    int rc = 0;
    for (int i = 0; i < 200 && (rc = mcefa_transfer_sync(c, x, 1, 1000)) == 0; i++)
        usleep(10000);
    ck_assert_int_eq(rc, -ENOTCONN);
    mcefa_disconnect(c);
    close(t.ready);
    close(t.go);
    close(sync[0]);
    close(sync[1]);
    assert_serving();
}
END_TEST

/* ---- Several threads on one client ----------------------------------- */

enum { MT_THREADS = 4, MT_ROUNDS = 40 };

typedef struct mt_ctx {
    mcefa_client *c;
    pthread_barrier_t *start;
    int k;
    uint64_t seg_addr; /* the target this thread reads from */
    size_t seg_size;
    char failure[600]; /* first thing that went wrong, "" if nothing */
} mt_ctx;

static void *mt_fail(mt_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *mt_fail(mt_ctx *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(x->failure, sizeof(x->failure), "thread %d: ", x->k);
    vsnprintf(x->failure + n, sizeof(x->failure) - (size_t)n, fmt, ap);
    va_end(ap);
    return NULL;
}

/* Every kind of request, each checked against what only this thread's
 * request can have been answered with. */
static void *mt_worker(void *arg)
{
    mt_ctx *x = arg;
    mcefa_client *c = x->c;
    const size_t len = 64 << 10;
    pthread_barrier_wait(x->start);
    uint8_t *buf;
    int rc;
    /* Registrations pass a descriptor each: concurrent ones must not mix. */
    if ((rc = mcefa_alloc(c, len, -1, 0, (void **)&buf)) < 0 || (rc = mcefa_register(c, buf, len)) < 0)
        return mt_fail(x, "buffer: %d %s", rc, mcefa_last_error());
    char name[64];
    snprintf(name, sizeof(name), "mt-%d", x->k);
    mcefa_segment seg;
    if ((rc = mcefa_segment_open(c, name, &seg)) < 0)
        return mt_fail(x, "open %s: %d %s", name, rc, mcefa_last_error());
    for (int round = 0; round < MT_ROUNDS; round++) {
        mcefa_region_info ri[2] = {MCEFA_REGION_INFO_INIT};
        if ((rc = mcefa_segment_regions(c, seg, ri, 2)) != 1)
            return mt_fail(x, "round %d: regions: %d %s", round, rc, mcefa_last_error());
        if (ri[0].addr != x->seg_addr || ri[0].length != x->seg_size)
            return mt_fail(x, "round %d: got the regions of another segment (%zu bytes, want %zu)", round,
                           (size_t)ri[0].length, x->seg_size);
        mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
        if ((rc = mcefa_status(c, &st)) < 0 || strcmp(st.hostname, mcefa_daemon_hostname(c)) != 0)
            return mt_fail(x, "round %d: status: %d %s", round, rc, mcefa_last_error());
        /* A failure: its text must be this thread's. */
        char missing[300];
        snprintf(missing, sizeof(missing), "%s:%d", mcefa_daemon_hostname(c), 20000 + x->k * 1000 + round);
        mcefa_segment none;
        if ((rc = mcefa_segment_open(c, missing, &none)) != -ENOENT || !strstr(mcefa_last_error(), missing))
            return mt_fail(x, "round %d: open %s: %d '%s'", round, missing, rc, mcefa_last_error());
        uint32_t cap = 1 + (uint32_t)(x->k * 5 + round) % 16;
        mcefa_batch *b;
        if ((rc = mcefa_batch_alloc(c, cap, &b)) < 0)
            return mt_fail(x, "round %d: batch alloc: %d %s", round, rc, mcefa_last_error());
        memset(buf, 0, len);
        for (uint32_t i = 0; i < cap; i++) {
            mcefa_transfer t = {MCEFA_READ, buf + i * 4096, seg, x->seg_addr + i * 4096, 4096};
            if ((rc = mcefa_batch_submit(b, &t, 1)) != (int)i)
                return mt_fail(x, "round %d: submit %u returned %d (%s)", round, i, rc, mcefa_last_error());
        }
        if ((rc = mcefa_batch_wait(b, 10000)) < 0)
            return mt_fail(x, "round %d: wait: %d %s", round, rc, mcefa_last_error());
        if (!same(buf, cap * 4096, 1))
            return mt_fail(x, "round %d: data read differs", round);
        if ((rc = mcefa_batch_free(b)) < 0)
            return mt_fail(x, "round %d: batch free: %d %s", round, rc, mcefa_last_error());
    }
    if ((rc = mcefa_segment_close(c, seg)) < 0 || (rc = mcefa_unregister(c, buf)) < 0 || (rc = mcefa_free(c, buf)) < 0)
        return mt_fail(x, "cleanup: %d %s", rc, mcefa_last_error());
    return NULL;
}

START_TEST(threads_share_one_client)
{
    target t[MT_THREADS];
    for (int k = 0; k < MT_THREADS; k++) {
        char name[32];
        snprintf(name, sizeof(name), "mt-%d", k);
        target_start(&t[k], name, (size_t)(k + 1) << 20);
    }
    mcefa_client *c = connect_ok("threads");
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, MT_THREADS);
    mt_ctx x[MT_THREADS];
    pthread_t th[MT_THREADS];
    for (int k = 0; k < MT_THREADS; k++) {
        x[k] = (mt_ctx){.c = c, .start = &start, .k = k, .seg_addr = t[k].addr, .seg_size = (size_t)(k + 1) << 20};
        ck_assert_int_eq(pthread_create(&th[k], NULL, mt_worker, &x[k]), 0);
    }
    for (int k = 0; k < MT_THREADS; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&start);
    for (int k = 0; k < MT_THREADS; k++)
        ck_assert_msg(!x[k].failure[0], "%s", x[k].failure);
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    ck_assert_uint_eq(st.clients, MT_THREADS + 1);
    mcefa_disconnect(c);
    for (int k = 0; k < MT_THREADS; k++)
        ck_assert_int_eq(target_finish(&t[k], 'q'), 0);
}
END_TEST

/* A batch given up with transfers in flight is released when they finish,
 * not held until disconnect; with a daemon that refuses that (-EBUSY) it
 * stays until disconnect as before. */
START_TEST(batch_freed_when_done)
{
    target t;
    size_t size = 64 << 20;
    target_start(&t, "late-1", size);
    mcefa_client *c = connect_ok("impatient");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, size / 2, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, size / 2), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "late-1", &seg), 0);
    /* 8191 transfers + a header: 8 such batches fill the 65536 slots, so
     * 24 rounds run out of slots unless the released ones come back. */
    enum { N = 8191 };
    mcefa_transfer *x = calloc(N, sizeof(*x));
    for (int i = 0; i < N; i++)
        x[i] = (mcefa_transfer){MCEFA_READ, buf + (size_t)i * 4096, seg, t.addr + (uint64_t)i * 4096, 4096};
    int busy = 0;
    for (int round = 0; round < 24 && !busy; round++) {
        mcefa_batch *b;
        int rc;
        for (int i = 0; i < 1000 && (rc = mcefa_batch_alloc(c, N, &b)) == -ENOSPC; i++)
            usleep(10000);
        ck_assert_msg(rc == 0, "round %d: batch alloc: %d %s", round, rc, mcefa_last_error());
        ck_assert_int_eq(mcefa_batch_submit(b, x, N), 0);
        rc = mcefa_batch_free_when_done(b);
        ck_assert_msg(rc == 0 || rc == -EBUSY, "free_when_done: %d %s", rc, mcefa_last_error());
        busy = rc == -EBUSY;
    }
    if (busy)
        printf("batch_freed_when_done: this daemon ignores FreeBatch.when_done; release not checked\n");
    /* A synchronous transfer that gives up leaves the client usable. (The
     * released batches above may still hold every slot: -ENOSPC until they
     * finish.) */
    int rc;
    for (int i = 0; i < 1000 && (rc = mcefa_transfer_sync(c, x, N, 0)) == -ENOSPC; i++)
        usleep(10000);
    ck_assert_msg(rc == -ETIMEDOUT || rc == 0, "transfer_sync: %d %s", rc, mcefa_last_error());
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), 0);
    /* Released batches still copying hold their slots until they finish:
     * -ENOSPC until then, never for good. */
    for (int i = 0; i < 1000 && (rc = mcefa_transfer_sync(c, x, 1, 10000)) == -ENOSPC; i++)
        usleep(10000);
    ck_assert_msg(rc == 0, "transfer_sync after released batches: %d %s", rc, mcefa_last_error());
    free(x);
    mcefa_disconnect(c);
    ck_assert_int_eq(target_finish(&t, 'q'), 0);
}
END_TEST

/* Structs the library fills: a caller built against a newer header (a
 * bigger struct) gets its unknown fields zeroed, one that never set
 * struct_size a clear refusal. */
START_TEST(struct_size_is_honoured)
{
    target t;
    target_start(&t, "sizes-1", 1 << 20);
    mcefa_client *c = connect_ok("sizes");
    typedef struct {
        mcefa_daemon_status st;
        uint64_t later_field;
    } newer_status;
    newer_status ns;
    memset(&ns, 0xa5, sizeof(ns));
    ns.st.struct_size = sizeof(ns);
    ck_assert_int_eq(mcefa_status(c, &ns.st), 0);
    ck_assert_uint_eq(ns.st.struct_size, sizeof(ns));
    ck_assert_str_eq(ns.st.hostname, mcefa_daemon_hostname(c));
    ck_assert_uint_eq(ns.later_field, 0);
    mcefa_daemon_status unset = {.struct_size = 0};
    ck_assert_int_eq(mcefa_status(c, &unset), -EINVAL);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "MCEFA_DAEMON_STATUS_INIT"));
    unset.struct_size = (size_t)-1;
    ck_assert_int_eq(mcefa_status(c, &unset), -EINVAL);

    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "sizes-1", &seg), 0);
    typedef struct {
        mcefa_region_info ri;
        uint64_t later_field;
    } newer_region;
    newer_region nr[2];
    memset(nr, 0xa5, sizeof(nr));
    nr[0].ri.struct_size = sizeof(nr[0]); /* the first element sizes them all */
    ck_assert_int_eq(mcefa_segment_regions(c, seg, &nr[0].ri, 2), 1);
    ck_assert_uint_eq(nr[0].ri.addr, t.addr);
    ck_assert_uint_eq(nr[0].ri.length, 1 << 20);
    ck_assert_uint_eq(nr[0].later_field, 0);
    /* The second element is past the regions there are: untouched. */
    ck_assert_uint_eq(nr[1].later_field, 0xa5a5a5a5a5a5a5a5ull);
    mcefa_region_info small = {.struct_size = sizeof(uint64_t)};
    ck_assert_int_eq(mcefa_segment_regions(c, seg, &small, 1), -EINVAL);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "MCEFA_REGION_INFO_INIT"));
    ck_assert_int_eq(mcefa_segment_regions(c, seg, NULL, 0), 1);
    mcefa_disconnect(c);
    ck_assert_int_eq(target_finish(&t, 'q'), 0);
}
END_TEST

START_TEST(daemon_restart_is_reported)
{
    mcefa_client *c = connect_ok("orphan");
    daemon_stop(&D);
    mcefa_daemon_status st = MCEFA_DAEMON_STATUS_INIT;
    ck_assert_int_eq(mcefa_status(c, &st), -ECONNRESET);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "mcefad"));
    mcefa_disconnect(c);
    mcefa_client *c2;
    ck_assert_int_eq(mcefa_connect(D.sock, "late", &c2), -ECONNREFUSED);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "start the daemon"));
    daemon_start(&D, no_nics);
}
END_TEST

/* ---- A scripted daemon: replies out of order, breaks ------------------ */

/* Speaks the client protocol on a socket of its own from a thread: answers
 * hello, then waits for `want` OpenSegment requests and does `script` with
 * them. Tests what the real daemon cannot be made to do on demand. */
enum fake_script { FAKE_REVERSE, FAKE_CLOSE, FAKE_SEQ0 };

enum { FAKE_CALLERS = 4 };

typedef struct fake_daemon {
    char dir[64], sock[96];
    int lfd;
    enum fake_script script;
    int want;
    _Atomic int got; /* requests it saw before acting (read by the test meanwhile) */
    pthread_t th;
} fake_daemon;

static void fake_send(int fd, Mcefa__Response *r, const int *fds, unsigned nfds)
{
    uint8_t *b;
    size_t n;
    if (wire_pack(&r->base, &b, &n) == 0) {
        if (wire_send_all(fd, b, n, fds, nfds) < 0) {
        }
        free(b);
    }
}

/* Next request, or NULL at end of stream or after 10 s. */
static Mcefa__Request *fake_recv(int fd, wire_reader *rd)
{
    for (int i = 0; i < 1000; i++) {
        const uint8_t *p;
        size_t len;
        if (wire_reader_next(rd, &p, &len) == 1) {
            Mcefa__Request *q = mcefa__request__unpack(NULL, len, p);
            wire_reader_consume(rd);
            return q;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, 10);
        ssize_t n = wire_reader_fill(rd, fd);
        if (n == 0 || (n < 0 && n != -EAGAIN))
            return NULL;
    }
    return NULL;
}

static void fake_welcome(int fd, uint64_t seq)
{
    enum { SLOTS = 64 };
    size_t real;
    int area = shm_memfd_create("fake-cq", shm_cq_size(SLOTS), 0, &real);
    void *m = mmap(NULL, real, PROT_READ | PROT_WRITE, MAP_SHARED, area, 0);
    shm_cq_init(m, SLOTS);
    munmap(m, real);
    Mcefa__Welcome w = MCEFA__WELCOME__INIT;
    w.protocol_version = MCEFA_PROTOCOL_VERSION;
    w.daemon_version = "fake";
    w.session_id = 1;
    w.hostname = "fakehost";
    w.completion_slots = SLOTS;
    w.fd_count = 1;
    Mcefa__Response r = MCEFA__RESPONSE__INIT;
    r.seq = seq;
    r.body_case = MCEFA__RESPONSE__BODY_WELCOME;
    r.welcome = &w;
    fake_send(fd, &r, &area, 1);
    close(area);
}

/* The answer to OpenSegment "fake:N" has handle 1000 + N. */
static void fake_open_reply(int fd, const Mcefa__Request *q)
{
    Mcefa__SegmentInfo si = MCEFA__SEGMENT_INFO__INIT;
    si.handle = 1000 + strtoull(strchr(q->open_segment->name, ':') + 1, NULL, 10);
    si.name = q->open_segment->name;
    Mcefa__Response r = MCEFA__RESPONSE__INIT;
    r.seq = q->seq;
    r.body_case = MCEFA__RESPONSE__BODY_SEGMENT_INFO;
    r.segment_info = &si;
    fake_send(fd, &r, NULL, 0);
}

static void *fake_main(void *arg)
{
    fake_daemon *f = arg;
    int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    Mcefa__Request *hello = fake_recv(fd, &rd);
    if (hello && hello->body_case == MCEFA__REQUEST__BODY_HELLO)
        fake_welcome(fd, hello->seq);
    if (hello)
        mcefa__request__free_unpacked(hello, NULL);
    /* Only a client that sends while others wait delivers all of them. */
    Mcefa__Request *q[FAKE_CALLERS];
    while (f->got < f->want && (q[f->got] = fake_recv(fd, &rd)) != NULL) {
        if (q[f->got]->body_case != MCEFA__REQUEST__BODY_OPEN_SEGMENT) {
            mcefa__request__free_unpacked(q[f->got], NULL);
            break;
        }
        f->got++;
    }
    if (f->got == f->want && f->script == FAKE_REVERSE) {
        for (int i = f->got - 1; i >= 0; i--)
            fake_open_reply(fd, q[i]);
        /* A reply nobody asked for is dropped. */
        Mcefa__Response stray = MCEFA__RESPONSE__INIT;
        stray.seq = 999999;
        fake_send(fd, &stray, NULL, 0);
        /* The connection goes on: one more request, answered in turn. */
        Mcefa__Request *more = fake_recv(fd, &rd);
        if (more && more->body_case == MCEFA__REQUEST__BODY_OPEN_SEGMENT)
            fake_open_reply(fd, more);
        if (more)
            mcefa__request__free_unpacked(more, NULL);
    } else if (f->got == f->want && f->script == FAKE_SEQ0) {
        fake_open_reply(fd, q[0]);
        Mcefa__Response r = MCEFA__RESPONSE__INIT;
        r.status = -EBADMSG;
        r.error = "malformed message: scripted";
        fake_send(fd, &r, NULL, 0);
        /* Then the client must close: wait for that. */
        while (fake_recv(fd, &rd)) {
        }
    }
    for (int i = 0; i < f->got; i++)
        mcefa__request__free_unpacked(q[i], NULL);
    wire_reader_free(&rd);
    close(fd);
    return NULL;
}

static void fake_start(fake_daemon *f, enum fake_script script, int want)
{
    memset(f, 0, sizeof(*f));
    f->script = script;
    f->want = want;
    snprintf(f->dir, sizeof(f->dir), "/tmp/mcefa-fake-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->sock, sizeof(f->sock), "%s/fake.sock", f->dir);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(f->lfd, 4), 0);
    ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_daemon *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
    unlink(f->sock);
    rmdir(f->dir);
}

typedef struct opener {
    mcefa_client *c;
    int n;
    int rc;
    mcefa_segment handle;
    char error[600];
} opener;

static void *opener_main(void *arg)
{
    opener *o = arg;
    char name[32];
    snprintf(name, sizeof(name), "fake:%d", o->n);
    o->rc = mcefa_segment_open(o->c, name, &o->handle);
    snprintf(o->error, sizeof(o->error), "%s", mcefa_last_error());
    return NULL;
}

/* FAKE_CALLERS threads each open a segment on one client at once. */
static void open_together(mcefa_client *c, opener *o)
{
    pthread_t th[FAKE_CALLERS];
    for (int i = 0; i < FAKE_CALLERS; i++) {
        o[i] = (opener){.c = c, .n = i + 1};
        ck_assert_int_eq(pthread_create(&th[i], NULL, opener_main, &o[i]), 0);
    }
    for (int i = 0; i < FAKE_CALLERS; i++)
        pthread_join(th[i], NULL);
}

START_TEST(replies_out_of_order_reach_their_callers)
{
    fake_daemon f;
    fake_start(&f, FAKE_REVERSE, FAKE_CALLERS);
    mcefa_client *c;
    ck_assert_msg(mcefa_connect(f.sock, "ooo", &c) == 0, "connect: %s", mcefa_last_error());
    ck_assert_str_eq(mcefa_daemon_hostname(c), "fakehost");
    opener o[FAKE_CALLERS];
    open_together(c, o);
    for (int i = 0; i < FAKE_CALLERS; i++) {
        ck_assert_msg(o[i].rc == 0, "caller %d: %d %s (the fake saw %d of %d requests)", i, o[i].rc, o[i].error,
                      f.got, f.want);
        ck_assert_uint_eq(o[i].handle, 1000 + o[i].n);
    }
    mcefa_segment h;
    ck_assert_int_eq(mcefa_segment_open(c, "fake:77", &h), 0);
    ck_assert_uint_eq(h, 1077);
    mcefa_disconnect(c);
    fake_stop(&f);
}
END_TEST

START_TEST(lost_connection_fails_every_waiter)
{
    fake_daemon f;
    fake_start(&f, FAKE_CLOSE, FAKE_CALLERS);
    mcefa_client *c;
    ck_assert_msg(mcefa_connect(f.sock, "lost", &c) == 0, "connect: %s", mcefa_last_error());
    opener o[FAKE_CALLERS];
    open_together(c, o);
    ck_assert_int_eq(f.got, FAKE_CALLERS);
    for (int i = 0; i < FAKE_CALLERS; i++) {
        ck_assert_int_eq(o[i].rc, -ECONNRESET);
        ck_assert_msg(strstr(o[i].error, "mcefad closed the connection"), "caller %d: '%s'", i, o[i].error);
    }
    /* Later calls fail at once, with the same reason. */
    mcefa_segment h;
    ck_assert_int_eq(mcefa_segment_open(c, "fake:9", &h), -ECONNRESET);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "mcefad closed the connection"));
    mcefa_disconnect(c);
    fake_stop(&f);
}
END_TEST

START_TEST(unattributed_error_fails_every_waiter)
{
    fake_daemon f;
    fake_start(&f, FAKE_SEQ0, FAKE_CALLERS);
    mcefa_client *c;
    ck_assert_msg(mcefa_connect(f.sock, "seq0", &c) == 0, "connect: %s", mcefa_last_error());
    opener o[FAKE_CALLERS];
    open_together(c, o);
    ck_assert_int_eq(f.got, FAKE_CALLERS);
    int answered = 0;
    for (int i = 0; i < FAKE_CALLERS; i++) {
        if (o[i].rc == 0) {
            /* The one request the fake answered before the error. */
            ck_assert_uint_eq(o[i].handle, 1000 + o[i].n);
            answered++;
            continue;
        }
        ck_assert_int_eq(o[i].rc, -EBADMSG);
        ck_assert_msg(strstr(o[i].error, "malformed message: scripted") && strstr(o[i].error, "reconnect"),
                      "caller %d: '%s'", i, o[i].error);
    }
    ck_assert_int_eq(answered, 1);
    mcefa_segment h;
    ck_assert_int_eq(mcefa_segment_open(c, "fake:9", &h), -ECONNRESET);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "scripted"));
    mcefa_disconnect(c);
    fake_stop(&f);
}
END_TEST

typedef struct big_reg {
    mcefa_client *c;
    void *buf;
    size_t len;
    int rc;
    _Atomic int done;
} big_reg;

static void *register_big(void *arg)
{
    big_reg *g = arg;
    g->rc = mcefa_register(g->c, g->buf, g->len);
    atomic_store(&g->done, 1);
    return NULL;
}

/* Registering a large buffer (mapping and pre-faulting 2 GiB) runs off the
 * daemon's event loop: another client's transfers finish meanwhile. */
START_TEST(large_registration_does_not_stall_others)
{
    big_reg g = {.c = connect_ok("big"), .len = (size_t)2 << 30};
    ck_assert_int_eq(mcefa_alloc(g.c, g.len, -1, 0, &g.buf), 0);
    mcefa_client *c = connect_ok("quick");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, 1 << 20), 0);
    ck_assert_int_eq(mcefa_segment_export(c, "quick-1", NULL, 0), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "quick-1", &seg), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, register_big, &g), 0);
    usleep(20 * 1000); /* the registration is under way */
    unsigned before = 0;
    for (unsigned i = 0; i < 8; i++) {
        fill(buf, 4096, i);
        mcefa_transfer x = {MCEFA_WRITE, buf, seg, (uint64_t)(uintptr_t)buf + 65536, 4096};
        ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), 0);
        ck_assert(same(buf + 65536, 4096, i));
        before += !atomic_load(&g.done);
    }
    pthread_join(th, NULL);
    ck_assert_msg(g.rc == 0, "register: %s", mcefa_last_error());
    ck_assert_msg(before > 0, "every transfer waited for the 2 GiB registration");
    mcefa_disconnect(c);
    mcefa_disconnect(g.c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("e2e");
    TCase *tc = tcase_create("daemon");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, two_processes_read_and_write);
    tcase_add_test(tc, async_batch_with_many_requests_and_large_split);
    tcase_add_test(tc, many_clients_at_once);
    tcase_add_test(tc, garbage_bytes);
    tcase_add_test(tc, undecodable_frame_keeps_connection);
    tcase_add_test(tc, truncated_frame_then_disconnect);
    tcase_add_test(tc, oversize_frame);
    tcase_add_test(tc, unknown_message_type);
    tcase_add_test(tc, protocol_version_mismatch);
    tcase_add_test(tc, request_before_hello);
    tcase_add_test(tc, bad_addresses_are_rejected_before_moving);
    tcase_add_test(tc, unknown_segment);
    tcase_add_test(tc, segment_names);
    tcase_add_test(tc, registration_errors);
    tcase_add_test(tc, plain_registration_checked);
    tcase_add_test(tc, plain_memory_after_exec_is_unreachable);
    tcase_add_test(tc, refused_descriptors_are_not_reused);
    tcase_add_test(tc, batch_errors);
    tcase_add_test(tc, numa_and_huge_page_buffers);
    tcase_add_test(tc, client_killed_mid_batch);
    tcase_add_test(tc, threads_share_one_client);
    tcase_add_test(tc, batch_freed_when_done);
    tcase_add_test(tc, struct_size_is_honoured);
    tcase_add_test(tc, daemon_restart_is_reported);
    tcase_add_test(tc, large_registration_does_not_stall_others);
    suite_add_tcase(s, tc);
    TCase *fake = tcase_create("scripted daemon");
    tcase_set_timeout(fake, 30);
    tcase_add_test(fake, replies_out_of_order_reach_their_callers);
    tcase_add_test(fake, lost_connection_fails_every_waiter);
    tcase_add_test(fake, unattributed_error_fails_every_waiter);
    suite_add_tcase(s, fake);
    return run_suite(s);
}
