/* The submission ring (shm/ring.h, docs/protocol.md "Submission ring"):
 * honest use (wrap-around, a full ring, submissions too large for it, the
 * socket beside it) and hostile clients that write garbage into their ring
 * or race it from another thread, or die in the middle of a write. A
 * hostile client here is a libmcefa connection without its own ring (so
 * the library never touches it) that opens one itself and writes it raw. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/mman.h>

#include "client/internal.h"
#include "harness.h"
#include "shm/ring.h"
#include "suite.h"

static test_daemon D;

enum { BUF = 4 << 20 };

static void start_with(const char *entries)
{
    char flag[64];
    snprintf(flag, sizeof(flag), "--submit_ring_entries=%s", entries);
    const char *const args[] = {"--provider=none", flag, NULL};
    daemon_start(&D, args);
}

static void setup(void)
{
    start_with("64");
}

static void teardown(void)
{
    daemon_stop(&D);
}

/* A client with a registered buffer exported under name and open to
 * itself: it copies inside its own segment. */
typedef struct peer {
    mcefa_client *c;
    uint8_t *buf;
    mcefa_segment seg;
} peer;

static void peer_open(peer *p, const char *name, bool own_ring)
{
    if (!own_ring)
        setenv("MCEFA_SUBMIT_RING", "0", 1);
    p->c = client_ok(D.sock, name);
    unsetenv("MCEFA_SUBMIT_RING");
    ck_assert_int_eq(mcefa_alloc(p->c, BUF, -1, 0, (void **)&p->buf), 0);
    ck_assert_msg(mcefa_register(p->c, p->buf, BUF) == 0, "register: %s", mcefa_last_error());
    ck_assert_msg(mcefa_segment_export(p->c, name, NULL, 0) == 0, "export: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_segment_open(p->c, name, &p->seg), 0);
}

/* n blocks of len from the first half of the buffer to the second, as
 * transfers of one submission or several; checks the bytes. */
static void copy_ok(peer *p, uint32_t n, uint32_t per_submit, uint64_t len, unsigned seed)
{
    ck_assert(2 * (uint64_t)n * len <= BUF);
    fill(p->buf, BUF / 2, seed);
    memset(p->buf + BUF / 2, 0, BUF / 2);
    mcefa_batch *b;
    ck_assert_msg(mcefa_batch_alloc(p->c, n, &b) == 0, "alloc: %s", mcefa_last_error());
    mcefa_transfer *t = calloc(n, sizeof(*t));
    for (uint32_t i = 0; i < n; i++)
        t[i] = (mcefa_transfer){MCEFA_WRITE, p->buf + i * len, p->seg,
                                (uint64_t)(uintptr_t)(p->buf + BUF / 2 + i * len), len};
    for (uint32_t i = 0; i < n; i += per_submit) {
        uint32_t k = n - i < per_submit ? n - i : per_submit;
        int rc = mcefa_batch_submit(b, t + i, k);
        ck_assert_msg(rc == (int)i, "submit of %u at %u: %d %s", k, i, rc, mcefa_last_error());
    }
    ck_assert_msg(mcefa_batch_wait(b, 60000) == 0, "wait: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    ck_assert_msg(memcmp(p->buf, p->buf + BUF / 2, (size_t)n * len) == 0, "the copied bytes differ");
    free(t);
}

/* ---- Honest use ----------------------------------------------------------- */

/* Submissions of 50 on a ring of 64 wrap around at every other one; one of
 * 100 does not fit and goes over the socket. */
START_TEST(wrap_around_and_large_submissions)
{
    peer p;
    peer_open(&p, "wrap", true);
    ck_assert_ptr_nonnull(p.c->ring);
    for (unsigned round = 0; round < 20; round++)
        copy_ok(&p, 200, 50, 4096, round);
    copy_ok(&p, 100, 100, 4096, 99);
    /* Errors come back from the ring as they would from the socket. */
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(p.c, 2, &b), 0);
    mcefa_transfer bad = {MCEFA_WRITE, p.buf, p.seg, (uint64_t)(uintptr_t)p.buf + BUF - 10, 4096};
    ck_assert_int_eq(mcefa_batch_submit(b, &bad, 1), -EFAULT);
    ck_assert_msg(strstr(mcefa_last_error(), "runs past the end"), "text: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    ck_assert_int_eq(mcefa_batch_free(NULL), 0);
    ck_assert_int_eq(mcefa_batch_alloc(p.c, 0, &b), -EINVAL);
    mcefa_disconnect(p.c);
}
END_TEST

typedef struct worker {
    peer *p;
    unsigned idx;
    int rc;
    char why[300];
} worker;

enum { WORKERS = 4, WORKER_ROUNDS = 200, PER = 32 };

/* Each worker copies its own quarter of the buffer in submissions of 32:
 * four at once do not fit a ring of 64, so some wait for room. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    peer *p = w->p;
    size_t quarter = BUF / 2 / WORKERS, len = quarter / PER;
    uint8_t *src = p->buf + w->idx * quarter, *dst = p->buf + BUF / 2 + w->idx * quarter;
    mcefa_transfer t[PER];
    for (unsigned i = 0; i < PER; i++)
        t[i] = (mcefa_transfer){MCEFA_WRITE, src + i * len, p->seg, (uint64_t)(uintptr_t)(dst + i * len), len};
    for (unsigned r = 0; r < WORKER_ROUNDS && !w->rc; r++) {
        mcefa_batch *b;
        if ((w->rc = mcefa_batch_alloc(p->c, PER, &b)) < 0 || (w->rc = mcefa_batch_submit(b, t, PER)) < 0 ||
            (w->rc = mcefa_batch_wait(b, 60000)) < 0 || (w->rc = mcefa_batch_free(b)) < 0)
            snprintf(w->why, sizeof(w->why), "round %u: %s", r, mcefa_last_error());
    }
    return NULL;
}

START_TEST(full_ring_makes_submitters_wait)
{
    peer p;
    peer_open(&p, "full", true);
    fill(p.buf, BUF / 2, 7);
    pthread_t tid[WORKERS];
    worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] = (worker){&p, i, 0, ""};
        pthread_create(&tid[i], NULL, worker_main, &w[i]);
    }
    for (unsigned i = 0; i < WORKERS; i++) {
        pthread_join(tid[i], NULL);
        ck_assert_msg(w[i].rc == 0, "worker %u: %s", i, w[i].why);
    }
    ck_assert(memcmp(p.buf, p.buf + BUF / 2, BUF / 2) == 0);
    mcefa_disconnect(p.c);
}
END_TEST

/* A daemon with the ring off: the client never asks and submits over the
 * socket. */
START_TEST(ring_off_means_socket)
{
    daemon_stop(&D);
    start_with("0");
    peer p;
    peer_open(&p, "sock", true);
    ck_assert_ptr_null(p.c->ring);
    copy_ok(&p, 100, 30, 4096, 3);
    mcefa_disconnect(p.c);
}
END_TEST

/* ---- Hostile clients -------------------------------------------------------- */

typedef struct raw_ring {
    shm_ring_view v;
    int efd;
    uint32_t tail, subs;
} raw_ring;

/* Opens a ring on p's connection (which has none of its own). */
static void raw_ring_open(peer *p, raw_ring *r)
{
    ck_assert_ptr_null(p->c->ring);
    uint32_t entries, results;
    int fds[2];
    ck_assert_msg(client_ring_request(p->c, &entries, &results, fds) == 0, "open ring: %s", mcefa_last_error());
    ck_assert_int_ge(fds[0], 0);
    ck_assert_int_ge(fds[1], 0);
    void *area = mmap(NULL, shm_ring_size(entries, results), PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    ck_assert(area != MAP_FAILED);
    close(fds[0]);
    r->efd = fds[1];
    shm_ring_view_set(&r->v, area, entries, results);
    r->tail = r->subs = 0;
    /* A second one is refused. */
    ck_assert_int_eq(client_ring_request(p->c, &entries, &results, fds), -EALREADY);
}

/* A hostile client with a raw ring and a batch of capacity cap, and an
 * honest one beside it. */
static mcefa_batch *hostile_pair(peer *bad, peer *good, raw_ring *r, uint32_t cap)
{
    peer_open(bad, "bad", false);
    peer_open(good, "good", true);
    raw_ring_open(bad, r);
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(bad->c, cap, &b), 0);
    return b;
}

static shm_ring_desc *slot(raw_ring *r, uint32_t i)
{
    return &r->v.desc[(r->tail + i) & (r->v.entries - 1)];
}

static void publish(raw_ring *r, uint32_t n)
{
    r->tail += n;
    atomic_store(&r->v.h->tail, r->tail);
    uint64_t one = 1;
    /* A full socket (a broken ring is no longer drained) is no error. */
    if (atomic_load(&r->v.h->sleeping))
        ck_assert(send(r->efd, &one, sizeof(one), MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof(one) ||
                  errno == EAGAIN);
}

/* Waits for the answer to the next submission; returns its status, the
 * text in *text. */
static int answer(raw_ring *r, char *text, size_t len)
{
    shm_ring_result *res = &r->v.res[r->subs & (r->v.results - 1)];
    uint32_t want = ++r->subs;
    while (atomic_load(&res->seq) != want) {
        ck_assert_msg(!atomic_load(&r->v.h->broken), "the ring broke");
        shm_ring_wait_answered(r->v.area, atomic_load(&r->v.h->answered), 100);
    }
    snprintf(text, len, "%.*s", SHM_RING_TEXT, res->text);
    return res->status;
}

static shm_ring_desc transfer(uint64_t batch, peer *p, size_t off, uint64_t len)
{
    return (shm_ring_desc){.batch_id = batch,
                           .local_addr = (uint64_t)(uintptr_t)(p->buf + off),
                           .segment = p->seg,
                           .remote_addr = (uint64_t)(uintptr_t)(p->buf + BUF / 2 + off),
                           .length = len,
                           .opcode = MCEFA_WRITE,
                           .kind = SHM_RING_TRANSFER};
}

/* One bad submission: its descriptors, how many are published. */
typedef struct bad_case {
    const char *what;
    shm_ring_desc d[3];
    uint32_t n, published;
    int status;
    const char *text;
} bad_case;

START_TEST(garbage_descriptors_are_refused)
{
    peer bad, good;
    raw_ring r;
    mcefa_batch *b = hostile_pair(&bad, &good, &r, 8);
    uint64_t id = b->id;
    shm_ring_desc ok = transfer(id, &bad, 0, 4096);
    shm_ring_desc outside = transfer(id, &bad, BUF / 2 - 100, 4096);
    shm_ring_desc opcode = ok, kind = ok, other = ok, nobatch = ok, huge = ok;
    opcode.opcode = 77;
    kind.kind = 9;
    other.batch_id = id + 1000;
    nobatch.batch_id = id + 1000;
    huge.length = UINT64_MAX - 10;
    const bad_case cases[] = {
        {"count 0", {ok}, 0, 1, -EINVAL, "does not start a submission"},
        {"count past the tail", {ok, ok}, 3, 2, -EINVAL, "only 2 are published"},
        {"unknown opcode", {opcode}, 1, 1, -EINVAL, "unknown opcode"},
        {"unknown kind", {kind}, 1, 1, -EINVAL, "kind 9 is unknown"},
        {"two batches", {ok, other}, 2, 2, -EINVAL, "one submission goes to one batch"},
        {"no such batch", {nobatch}, 1, 1, -ENOENT, "not allocated"},
        {"outside the region", {ok, outside}, 2, 2, -EFAULT, "transfer 1"},
        {"wrapping range", {huge}, 1, 1, -EOVERFLOW, "wraps around"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const bad_case *c = &cases[k];
        for (uint32_t i = 0; i < c->published; i++) {
            *slot(&r, i) = c->d[i];
            slot(&r, i)->count = i ? 0 : c->n;
        }
        publish(&r, c->published);
        /* A submission out of step is refused one descriptor at a time. */
        uint32_t answers = c->n == 0 || c->n > c->published ? c->published : 1;
        for (uint32_t a = 0; a < answers; a++) {
            char text[SHM_RING_TEXT];
            int st = answer(&r, text, sizeof(text));
            ck_assert_msg(st == c->status, "%s: status %d, text %s", c->what, st, text);
            ck_assert_msg(strstr(text, a ? "" : c->text), "%s: text %s", c->what, text);
        }
        ck_assert_uint_eq(atomic_load(&r.v.h->head), r.tail);
        /* Nothing of it moved, nothing else is disturbed. */
        copy_ok(&good, 64, 64, 4096, (unsigned)k);
    }
    uint32_t sub, fin, failed;
    mcefa_batch_progress(b, &sub, &fin, &failed);
    ck_assert_msg(fin == 0 && failed == 0, "a refused submission started %u transfers", fin);
    /* The ring still works for what is right, and so does the socket. */
    *slot(&r, 0) = ok;
    slot(&r, 0)->count = 1;
    publish(&r, 1);
    char text[SHM_RING_TEXT];
    ck_assert_int_eq(answer(&r, text, sizeof(text)), 0);
    b->submitted = 1; /* the library did not see this one go */
    ck_assert_msg(mcefa_batch_wait(b, 60000) == 0, "wait: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    copy_ok(&bad, 16, 16, 4096, 1);
    mcefa_disconnect(bad.c);
    mcefa_disconnect(good.c);
    ck_assert(daemon_alive(&D));
}
END_TEST

/* A tail further ahead than the ring holds: the daemon stops reading that
 * ring (said in `broken`); the connection and everyone else go on. */
START_TEST(tail_past_the_ring_breaks_it)
{
    peer bad, good;
    raw_ring r;
    mcefa_batch_free(hostile_pair(&bad, &good, &r, 1));
    r.tail += r.v.entries; /* publish adds 5 more */
    publish(&r, 5);
    while (!atomic_load(&r.v.h->broken))
        shm_ring_wait_answered(r.v.area, atomic_load(&r.v.h->answered), 100);
    ck_assert_int_eq(atomic_load(&r.v.h->broken), -EPROTO);
    copy_ok(&bad, 16, 16, 4096, 2); /* over the socket */
    copy_ok(&good, 64, 32, 4096, 3);
    mcefa_disconnect(bad.c);
    mcefa_disconnect(good.c);
    ck_assert(daemon_alive(&D));
}
END_TEST

typedef struct scribbler {
    raw_ring *r;
    _Atomic bool stop;
    unsigned long rounds;
} scribbler;

/* Overwrites everything the client may write in the ring, and what it may
 * not, with random values, as fast as it can. */
static void *scribble(void *arg)
{
    scribbler *s = arg;
    raw_ring *r = s->r;
    uint64_t x = 88172645463325252ull;
    while (!atomic_load(&s->stop)) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t *w = (uint64_t *)r->v.area + (x >> 8) % (r->v.len / 8);
        *w = x;
        if (!(x & 0xff)) {
            atomic_store(&r->v.h->tail, (uint32_t)(x >> 32) % (2 * r->v.entries));
            atomic_store(&r->v.h->head, (uint32_t)x);
            atomic_store(&r->v.h->sleeping, (uint32_t)(x >> 16) & 1);
            uint64_t one = 1;
            (void)!write(r->efd, &one, sizeof(one));
        }
        s->rounds++;
    }
    return NULL;
}

/* A client racing its own ring from another thread: whatever it makes the
 * daemon read, the daemon answers within the ring or stops reading it;
 * another client keeps copying correct bytes meanwhile. */
START_TEST(racing_the_ring_disturbs_nobody_else)
{
    peer bad, good;
    raw_ring r;
    mcefa_batch *b = hostile_pair(&bad, &good, &r, 1000);
    scribbler s = {.r = &r};
    pthread_t tid;
    pthread_create(&tid, NULL, scribble, &s);
    for (unsigned round = 0; round < 40; round++) {
        /* Plausible submissions too, so some get as far as the checks. */
        for (uint32_t i = 0; i < 4; i++) {
            *slot(&r, i) = transfer(b->id, &bad, i * 4096, 4096);
            slot(&r, i)->count = i ? 0 : 4;
        }
        publish(&r, 4);
        copy_ok(&good, 64, 16, 4096, round);
    }
    atomic_store(&s.stop, true);
    pthread_join(tid, NULL);
    ck_assert(s.rounds > 0);
    ck_assert(daemon_alive(&D));
    copy_ok(&bad, 16, 16, 4096, 5); /* its socket still serves it */
    mcefa_batch_free_when_done(b);
    mcefa_disconnect(bad.c);
    copy_ok(&good, 64, 64, 4096, 6);
    mcefa_disconnect(good.c);
}
END_TEST

/* The wake-up descriptor a client gets is its own end of a socket pair:
 * what it writes reaches the daemon's end only, so it cannot read the
 * wake-ups away (with a shared eventfd it could also clear O_NONBLOCK and
 * have the daemon's read block the loop); filling it with blocking writes
 * stalls only itself; shutting it breaks its ring alone, without the
 * daemon spinning on an end of file. */
typedef struct flooder {
    int fd;
    _Atomic bool stop;
} flooder;

static void *flood(void *arg)
{
    flooder *f = arg;
    char buf[4096] = {0};
    while (!atomic_load(&f->stop) && send(f->fd, buf, sizeof(buf), MSG_NOSIGNAL) > 0) {
    }
    return NULL;
}

START_TEST(wake_fd_is_the_clients_alone)
{
    peer bad, good;
    raw_ring r;
    mcefa_batch *b = hostile_pair(&bad, &good, &r, 64);
    uint64_t v = 1;
    ck_assert_int_eq(write(r.efd, &v, sizeof(v)), (ssize_t)sizeof(v));
    ck_assert_int_eq(read(r.efd, &v, sizeof(v)), -1); /* our write is not ours to read back */
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    ck_assert_int_eq(fcntl(r.efd, F_SETFL, 0), 0);
    flooder f = {.fd = r.efd};
    pthread_t tid;
    pthread_create(&tid, NULL, flood, &f);
    for (unsigned round = 0; round < 20; round++)
        copy_ok(&good, 64, 16, 4096, round);
    ck_assert(daemon_alive(&D));
    atomic_store(&f.stop, true);
    /* The flooder may sit in a blocking send to a full socket: the daemon
     * drains it, so it returns. */
    pthread_join(tid, NULL);
    /* Shut: the ring is dropped (the socket still serves the client). */
    ck_assert_int_eq(shutdown(r.efd, SHUT_RDWR), 0);
    for (int i = 0; i < 500 && !atomic_load(&r.v.h->broken); i++)
        usleep(10000);
    ck_assert_int_eq(atomic_load(&r.v.h->broken), -EPROTO);
    copy_ok(&bad, 16, 16, 4096, 8);
    copy_ok(&good, 64, 16, 4096, 9);
    ck_assert(daemon_alive(&D));
    mcefa_batch_free_when_done(b);
    mcefa_disconnect(bad.c);
    copy_ok(&good, 64, 64, 4096, 7);
    mcefa_disconnect(good.c);
}
END_TEST

/* Clients killed in the middle of writing their ring: before publishing,
 * and after publishing part of a submission with transfers in flight. */
START_TEST(client_killed_mid_write)
{
    peer good;
    peer_open(&good, "good", true);
    for (int variant = 0; variant < 2; variant++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            peer bad;
            char name[16];
            snprintf(name, sizeof(name), "dying%d", variant);
            peer_open(&bad, name, false);
            raw_ring r;
            raw_ring_open(&bad, &r);
            mcefa_batch *b;
            if (mcefa_batch_alloc(bad.c, 64, &b) < 0)
                _exit(2);
            for (uint32_t i = 0; i < 8; i++) {
                *slot(&r, i) = transfer(b->id, &bad, i * 65536, 65536);
                slot(&r, i)->count = i ? 0 : 8;
            }
            if (variant) {
                /* A whole submission, then half of another. */
                publish(&r, 8);
                for (uint32_t i = 0; i < 4; i++) {
                    *slot(&r, i) = transfer(b->id, &bad, i * 4096, 4096);
                    slot(&r, i)->count = i ? 0 : 8;
                }
                publish(&r, 4);
            }
            kill(getpid(), SIGKILL);
        }
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert_msg(WIFSIGNALED(st), "the child did not die as planned (status %d)", st);
        copy_ok(&good, 64, 64, 4096, (unsigned)variant);
    }
    /* Both are gone from the daemon once their transfers drained. */
    mcefa_daemon_status ds = MCEFA_DAEMON_STATUS_INIT;
    for (;;) {
        ck_assert_int_eq(mcefa_status(good.c, &ds), 0);
        if (ds.clients == 1)
            break;
        usleep(10000);
    }
    ck_assert(daemon_alive(&D));
    mcefa_disconnect(good.c);
}
END_TEST

static TCase *with_daemon(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("ring");
    TCase *h = with_daemon("honest");
    tcase_add_test(h, wrap_around_and_large_submissions);
    tcase_add_test(h, full_ring_makes_submitters_wait);
    tcase_add_test(h, ring_off_means_socket);
    suite_add_tcase(s, h);
    TCase *a = with_daemon("hostile");
    tcase_add_test(a, garbage_descriptors_are_refused);
    tcase_add_test(a, tail_past_the_ring_breaks_it);
    tcase_add_test(a, racing_the_ring_disturbs_nobody_else);
    tcase_add_test(a, client_killed_mid_write);
    tcase_add_test(a, wake_fd_is_the_clients_alone);
    suite_add_tcase(s, a);
    return run_suite(s);
}
