/* Notifications (Mooncake's TransferNotify) end to end: two daemons on this
 * machine (hosta, hostb) over libfabric (tcp;ofi_rxm on lo); owners on
 * hostb, senders on the same host and on the other. Delivered after the
 * data, in order, to the right owner only, none lost among thousands;
 * refused, with a text that says why, when too long, when the owner does
 * not drain, when nobody owns the segment; dropped with their owner. */
#include <pthread.h>
#include <stdatomic.h>

#include "net_harness.h"
#include "suite.h"

static test_daemon A, B;
static int port_a, port_b;

/* B's notify_queue_bytes flag, set by the fixture before start_b. */
static char queue_flag[64] = "--log_level=debug";

static void start_b(void)
{
    char port[64], map[96];
    snprintf(port, sizeof(port), "--peer_port=%d", port_b);
    snprintf(map, sizeof(map), "--peer_hosts=hosta=127.0.0.1:%d", port_a);
    const char *args[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hostb", port, map,
                          "--request_timeout_ms=3000", queue_flag, NULL};
    daemon_start(&B, args);
}

static void setup(void)
{
    port_a = free_ports(2);
    port_b = port_a + 1;
    char port[64], map[96];
    snprintf(port, sizeof(port), "--peer_port=%d", port_a);
    snprintf(map, sizeof(map), "--peer_hosts=hostb=127.0.0.1:%d", port_b);
    const char *args[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hosta", port, map,
                          "--request_timeout_ms=3000", NULL};
    daemon_start(&A, args);
    start_b();
}

/* The smallest queue the settings allow: one 64 KiB message fills it. */
static void setup_small_queue(void)
{
    snprintf(queue_flag, sizeof(queue_flag), "--notify_queue_bytes=131072");
    setup();
}

static void teardown(void)
{
    daemon_stop(&A);
    daemon_stop(&B);
}

/* A client that exports a buffer and receives notifications. */
typedef struct owner {
    mcefa_client *c;
    uint8_t *buf;
    size_t size;
    char name[128];
} owner;

static void owner_start(owner *o, const char *sock, size_t size, const char *name)
{
    o->c = client_ok(sock, "notify-owner");
    ck_assert_int_eq(mcefa_alloc(o->c, size, -1, 0, (void **)&o->buf), 0);
    memset(o->buf, 0, size);
    ck_assert_int_eq(mcefa_register(o->c, o->buf, size), 0);
    o->size = size;
    int rc = mcefa_segment_export(o->c, name, o->name, sizeof(o->name));
    ck_assert_msg(rc == 0, "export: %s", mcefa_last_error());
}

/* Every notification queued for o now, into v (up to max), in order. */
static int drain(owner *o, mcefa_notification *v, size_t max)
{
    v[0] = (mcefa_notification)MCEFA_NOTIFICATION_INIT;
    int n = mcefa_get_notifies(o->c, v, max);
    ck_assert_msg(n >= 0, "get_notifies: %s", mcefa_last_error());
    return n;
}

static int queued_count(owner *o)
{
    mcefa_notification v[64];
    int n = drain(o, v, 64), total = n;
    mcefa_notifications_free(v, (size_t)n);
    while (n == 64) {
        n = drain(o, v, 64);
        mcefa_notifications_free(v, (size_t)n);
        total += n;
    }
    return total;
}

static int log_has(const test_daemon *d, const char *text)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "grep -qF -- '%s' %s", text, d->log);
    return system(cmd) == 0;
}

/* ---- After the data, in order ------------------------------------------ */

#define SLOTS 96
#define SLOT (16u << 10)

/* The owner's side: takes notifications as they come and checks, at the
 * moment it sees each, that the slots it names hold their data already. */
typedef struct watcher {
    owner *o;
    int step;         /* slots per notification */
    int seen, late;   /* late: data not there when its notification was */
    int out_of_order;
    char bad[200];
} watcher;

static void *watch(void *arg)
{
    watcher *w = arg;
    mcefa_notification v[16];
    int next = w->step - 1, expect = SLOTS / w->step;
    for (int spins = 0; w->seen < expect && spins < 200000; spins++) {
        v[0] = (mcefa_notification)MCEFA_NOTIFICATION_INIT;
        int n = mcefa_get_notifies(w->o->c, v, 16);
        if (n < 0) {
            snprintf(w->bad, sizeof(w->bad), "get_notifies: %s", mcefa_last_error());
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            int last = atoi(v[i].msg);
            if (strcmp(v[i].name, "slots-written") != 0 || last != next || last >= SLOTS) {
                w->out_of_order++;
                continue;
            }
            next += w->step;
            for (int s = last - w->step + 1; s <= last; s++)
                if (!pattern_ok(w->o->buf + (size_t)s * SLOT, SLOT, (unsigned)s + 10))
                    w->late++;
            w->seen++;
        }
        mcefa_notifications_free(v, (size_t)n);
        if (n == 0)
            usleep(200);
    }
    return NULL;
}

/* Writes SLOTS slots of their own pattern each to o, step slots per
 * transfer_sync_notify (one transfer a slot), the notification naming the
 * last of them, while o's thread watches. */
static void write_and_notify(const char *sender_sock, owner *o, int step)
{
    memset(o->buf, 0, o->size);
    watcher w = {.o = o, .step = step};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, watch, &w), 0);
    initiator in;
    initiator_open(&in, sender_sock, SLOTS * SLOT, o->name);
    for (int s = 0; s < SLOTS; s++)
        pattern(in.buf + (size_t)s * SLOT, SLOT, (unsigned)s + 10);
    for (int s = 0; s < SLOTS; s += step) {
        mcefa_transfer x[8];
        for (int k = 0; k < step; k++)
            x[k] = (mcefa_transfer){MCEFA_WRITE, in.buf + (size_t)(s + k) * SLOT, in.seg,
                                    (uint64_t)(uintptr_t)o->buf + (uint64_t)(s + k) * SLOT, SLOT};
        char msg[16];
        int ml = snprintf(msg, sizeof(msg), "%d", s + step - 1);
        int rc = mcefa_transfer_sync_notify(in.c, x, (size_t)step, 10000, "slots-written", 13, msg, (size_t)ml);
        ck_assert_msg(rc == 0, "slots %d-%d: %s", s, s + step - 1, mcefa_last_error());
    }
    pthread_join(th, NULL);
    ck_assert_msg(!w.bad[0], "%s", w.bad);
    ck_assert_int_eq(w.out_of_order, 0);
    ck_assert_int_eq(w.seen, SLOTS / step);
    ck_assert_msg(w.late == 0, "%d slots were not there when their notification was", w.late);
    initiator_close(&in);
}

START_TEST(delivered_after_data_same_host)
{
    owner o;
    owner_start(&o, B.sock, SLOTS * SLOT, NULL);
    write_and_notify(B.sock, &o, 1);
    write_and_notify(B.sock, &o, 8);
    mcefa_disconnect(o.c);
}
END_TEST

START_TEST(delivered_after_data_other_host)
{
    owner o;
    owner_start(&o, B.sock, SLOTS * SLOT, NULL);
    write_and_notify(A.sock, &o, 1);
    write_and_notify(A.sock, &o, 8);
    /* A read with a notification: the owner may reuse its buffer then. */
    initiator in;
    initiator_open(&in, A.sock, SLOT, o.name);
    mcefa_transfer r = {MCEFA_READ, in.buf, in.seg, (uint64_t)(uintptr_t)o.buf, SLOT};
    ck_assert_int_eq(mcefa_transfer_sync_notify(in.c, &r, 1, 10000, "read", 4, "done", 4), 0);
    ck_assert(pattern_ok(in.buf, SLOT, 10));
    mcefa_notification v[4];
    ck_assert_int_eq(drain(&o, v, 4), 1);
    ck_assert_str_eq(v[0].name, "read");
    ck_assert_str_eq(v[0].msg, "done");
    mcefa_notifications_free(v, 1);
    initiator_close(&in);
    mcefa_disconnect(o.c);
}
END_TEST

/* ---- Thousands, from two senders at once -------------------------------- */

#define MANY 2500

typedef struct sender {
    const char *sock;
    const char *segment;
    char tag;
    int failed;
    char why[300];
} sender;

static void *send_many(void *arg)
{
    sender *s = arg;
    mcefa_client *c;
    mcefa_segment seg;
    if (mcefa_connect(s->sock, "notify-sender", &c) < 0 || mcefa_segment_open(c, s->segment, &seg) < 0) {
        snprintf(s->why, sizeof(s->why), "%s", mcefa_last_error());
        s->failed = -1;
        return NULL;
    }
    for (int i = 0; i < MANY && !s->failed; i++) {
        char msg[32];
        int ml = snprintf(msg, sizeof(msg), "%c%d", s->tag, i);
        if (mcefa_notify(c, seg, &s->tag, 1, msg, (size_t)ml) < 0) {
            snprintf(s->why, sizeof(s->why), "notification %d: %s", i, mcefa_last_error());
            s->failed = i + 1;
        }
    }
    mcefa_disconnect(c);
    return NULL;
}

START_TEST(thousands_in_order_none_lost)
{
    owner o;
    owner_start(&o, B.sock, 4096, NULL);
    sender far = {A.sock, o.name, 'a', 0, ""}, near = {B.sock, o.name, 'b', 0, ""};
    pthread_t t1, t2;
    ck_assert_int_eq(pthread_create(&t1, NULL, send_many, &far), 0);
    ck_assert_int_eq(pthread_create(&t2, NULL, send_many, &near), 0);
    /* Drained while they send: each sender's come in its order, all of them. */
    int next[2] = {0, 0}, total = 0;
    mcefa_notification v[100];
    for (int spins = 0; total < 2 * MANY && spins < 100000; spins++) {
        int n = drain(&o, v, 100);
        for (int i = 0; i < n; i++) {
            ck_assert_uint_eq(v[i].name_len, 1);
            int k = v[i].name[0] - 'a';
            ck_assert(k == 0 || k == 1);
            ck_assert_int_eq(v[i].msg[0], v[i].name[0]);
            ck_assert_int_eq(atoi(v[i].msg + 1), next[k]);
            next[k]++;
        }
        mcefa_notifications_free(v, (size_t)n);
        total += n;
        if (n == 0)
            usleep(500);
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ck_assert_msg(!far.failed, "sender on hosta: %s", far.why);
    ck_assert_msg(!near.failed, "sender on hostb: %s", near.why);
    ck_assert_int_eq(next[0], MANY);
    ck_assert_int_eq(next[1], MANY);
    ck_assert_int_eq(queued_count(&o), 0); /* nothing extra */
    mcefa_disconnect(o.c);
}
END_TEST

/* ---- To the right owner -------------------------------------------------- */

START_TEST(only_the_owner_receives)
{
    owner x, y, self;
    owner_start(&x, B.sock, 4096, NULL);
    owner_start(&y, B.sock, 4096, NULL);
    owner_start(&self, A.sock, 4096, NULL); /* the sender exports one too */
    mcefa_segment sx, sy;
    ck_assert_int_eq(mcefa_segment_open(self.c, x.name, &sx), 0);
    ck_assert_int_eq(mcefa_segment_open(self.c, y.name, &sy), 0);
    ck_assert_int_eq(mcefa_notify(self.c, sx, "to-x", 4, "1", 1), 0);
    ck_assert_int_eq(mcefa_notify(self.c, sy, "to-y", 4, "2", 1), 0);
    ck_assert_int_eq(mcefa_notify(self.c, sx, "to-x", 4, "3", 1), 0);
    /* Empty name and message are a notification too. */
    ck_assert_int_eq(mcefa_notify(self.c, sy, NULL, 0, NULL, 0), 0);
    mcefa_notification v[8];
    ck_assert_int_eq(drain(&x, v, 8), 2);
    ck_assert_str_eq(v[0].name, "to-x");
    ck_assert_str_eq(v[0].msg, "1");
    ck_assert_str_eq(v[1].msg, "3");
    mcefa_notifications_free(v, 2);
    ck_assert_int_eq(drain(&y, v, 8), 2);
    ck_assert_str_eq(v[0].name, "to-y");
    ck_assert_uint_eq(v[1].name_len, 0);
    ck_assert_uint_eq(v[1].msg_len, 0);
    ck_assert_str_eq(v[1].name, "");
    mcefa_notifications_free(v, 2);
    ck_assert_int_eq(queued_count(&self), 0);
    ck_assert_int_eq(queued_count(&x), 0); /* taken: gone */
    /* Binary names and messages come back byte for byte, NULs included. */
    uint8_t bin[300];
    for (int i = 0; i < 300; i++)
        bin[i] = (uint8_t)(i * 31);
    ck_assert_int_eq(mcefa_notify(self.c, sx, bin, MCEFA_NOTIFY_NAME_MAX, bin, 300), 0);
    ck_assert_int_eq(drain(&x, v, 8), 1);
    ck_assert_uint_eq(v[0].name_len, MCEFA_NOTIFY_NAME_MAX);
    ck_assert(memcmp(v[0].name, bin, MCEFA_NOTIFY_NAME_MAX) == 0);
    ck_assert_uint_eq(v[0].msg_len, 300);
    ck_assert(memcmp(v[0].msg, bin, 300) == 0);
    mcefa_notifications_free(v, 1);
    mcefa_disconnect(self.c);
    mcefa_disconnect(x.c);
    mcefa_disconnect(y.c);
}
END_TEST

/* A reply holds at most 1 MiB of them: more come in further replies, and
 * one call of the library gathers them all. */
START_TEST(large_ones_span_replies)
{
    owner o;
    owner_start(&o, B.sock, 4096, NULL);
    initiator in;
    initiator_open(&in, A.sock, 4096, o.name);
    static char big[MCEFA_NOTIFY_MSG_MAX];
    for (int i = 0; i < 40; i++) {
        memset(big, 'a' + i % 26, sizeof(big));
        ck_assert_int_eq(mcefa_notify(in.c, in.seg, "big", 3, big, sizeof(big)), 0);
    }
    mcefa_notification v[64];
    ck_assert_int_eq(drain(&o, v, 64), 40);
    for (int i = 0; i < 40; i++) {
        ck_assert_uint_eq(v[i].msg_len, MCEFA_NOTIFY_MSG_MAX);
        ck_assert_int_eq(v[i].msg[0], 'a' + i % 26);
        ck_assert_int_eq(v[i].msg[MCEFA_NOTIFY_MSG_MAX - 1], 'a' + i % 26);
        ck_assert_int_eq(v[i].msg[MCEFA_NOTIFY_MSG_MAX], 0);
    }
    mcefa_notifications_free(v, 40);
    ck_assert_ptr_null(v[0].name);
    initiator_close(&in);
    mcefa_disconnect(o.c);
}
END_TEST

/* ---- Refusals ------------------------------------------------------------ */

START_TEST(bad_input_refused)
{
    owner o;
    owner_start(&o, B.sock, 1 << 20, NULL);
    initiator near, far;
    initiator_open(&near, B.sock, 1 << 20, o.name);
    initiator_open(&far, A.sock, 1 << 20, o.name);
    static char big[MCEFA_NOTIFY_MSG_MAX + 1];
    ck_assert_int_eq(mcefa_notify(far.c, far.seg, big, MCEFA_NOTIFY_NAME_MAX + 1, "m", 1), -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "MCEFA_NOTIFY_NAME_MAX"));
    ck_assert_int_eq(mcefa_notify(near.c, near.seg, "n", 1, big, sizeof(big)), -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "MCEFA_NOTIFY_MSG_MAX"));
    ck_assert_int_eq(mcefa_notify(far.c, 777, "n", 1, "m", 1), -EBADF);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "not open"));
    ck_assert_int_eq(mcefa_notify(far.c, far.seg, NULL, 3, "m", 1), -EINVAL);

    /* Transfers to two segments, or none: one notification has one owner. */
    owner other;
    owner_start(&other, B.sock, 4096, NULL);
    mcefa_segment so;
    ck_assert_int_eq(mcefa_segment_open(far.c, other.name, &so), 0);
    mcefa_transfer two[2] = {{MCEFA_WRITE, far.buf, far.seg, (uint64_t)(uintptr_t)o.buf, 64},
                             {MCEFA_WRITE, far.buf, so, (uint64_t)(uintptr_t)other.buf, 64}};
    ck_assert_int_eq(mcefa_transfer_sync_notify(far.c, two, 2, 5000, "n", 1, "m", 1), -EINVAL);
    ck_assert_int_eq(mcefa_transfer_sync_notify(far.c, two, 0, 5000, "n", 1, "m", 1), -EINVAL);
    /* A notification too long is refused before any byte moves. */
    pattern(far.buf, 64, 3);
    ck_assert_int_eq(mcefa_transfer_sync_notify(far.c, two, 1, 5000, "n", 1, big, sizeof(big)), -EMSGSIZE);
    ck_assert(!pattern_ok(o.buf, 64, 3));

    /* A transfer that fails sends no notification. */
    mcefa_transfer outside = {MCEFA_WRITE, far.buf, far.seg, (uint64_t)(uintptr_t)o.buf + (2u << 20), 64};
    ck_assert_int_eq(mcefa_transfer_sync_notify(far.c, &outside, 1, 5000, "n", 1, "m", 1), -EFAULT);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "notification was not sent"));
    outside.segment = near.seg;
    outside.local = near.buf;
    ck_assert_int_eq(mcefa_transfer_sync_notify(near.c, &outside, 1, 5000, "n", 1, "m", 1), -EFAULT);
    ck_assert_int_eq(queued_count(&o), 0);
    ck_assert_int_eq(queued_count(&other), 0);

    /* A raw client past the library's checks: each refused with its own
     * error, the connection kept. */
    int fd = raw_connect(B.sock);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    raw_hello_ok(fd, &rd);
    Mcefa__OpenSegment os = MCEFA__OPEN_SEGMENT__INIT;
    os.name = o.name;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.seq = 2;
    req.body_case = MCEFA__REQUEST__BODY_OPEN_SEGMENT;
    req.open_segment = &os;
    raw_send_request(fd, &req);
    Mcefa__Response *r = raw_recv(fd, &rd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 0);
    uint64_t h = r->segment_info->handle;
    mcefa__response__free_unpacked(r, NULL);
    struct {
        size_t nlen, mlen;
        uint64_t handle;
        int status;
        const char *text;
    } cases[] = {
        {MCEFA_NOTIFY_NAME_MAX + 1, 1, h, -EMSGSIZE, "MCEFA_NOTIFY_NAME_MAX"},
        {1, MCEFA_NOTIFY_MSG_MAX + 1, h, -EMSGSIZE, "MCEFA_NOTIFY_MSG_MAX"},
        {1, 1, h + 100, -EBADF, "not open"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        Mcefa__Notify n = MCEFA__NOTIFY__INIT;
        n.segment = cases[k].handle;
        n.name.data = (uint8_t *)big;
        n.name.len = cases[k].nlen;
        n.msg.data = (uint8_t *)big;
        n.msg.len = cases[k].mlen;
        req.seq = 10 + k;
        req.body_case = MCEFA__REQUEST__BODY_NOTIFY;
        req.notify = &n;
        raw_send_request(fd, &req);
        r = raw_recv(fd, &rd);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->seq, 10 + k);
        ck_assert_msg(r->status == cases[k].status && strstr(r->error, cases[k].text), "case %zu: %d %s", k,
                      r->status, r->error);
        mcefa__response__free_unpacked(r, NULL);
    }
    Mcefa__GetNotifies g = MCEFA__GET_NOTIFIES__INIT;
    req.seq = 20;
    req.body_case = MCEFA__REQUEST__BODY_GET_NOTIFIES;
    req.get_notifies = &g;
    raw_send_request(fd, &req);
    r = raw_recv(fd, &rd);
    ck_assert_int_eq(r->status, -EINVAL); /* max_count 0 */
    mcefa__response__free_unpacked(r, NULL);
    g.max_count = 5;
    req.seq = 21;
    raw_send_request(fd, &req);
    r = raw_recv(fd, &rd);
    ck_assert_int_eq(r->status, 0);
    ck_assert_int_eq(r->body_case, MCEFA__RESPONSE__BODY_NOTIFICATIONS);
    ck_assert_uint_eq(r->notifications->n_notifications, 0);
    mcefa__response__free_unpacked(r, NULL);
    wire_reader_free(&rd);
    close(fd);
    ck_assert_int_eq(queued_count(&o), 0);
    /* And the good path still works. */
    ck_assert_int_eq(mcefa_notify(far.c, far.seg, "ok", 2, "", 0), 0);
    ck_assert_int_eq(queued_count(&o), 1);
    initiator_close(&near);
    initiator_close(&far);
    mcefa_disconnect(other.c);
    mcefa_disconnect(o.c);
}
END_TEST

/* The owner does not drain: the sender hears so, nothing is dropped, and
 * once the owner drains the next one goes in. */
START_TEST(full_queue_is_an_error_naming_the_segment)
{
    owner o;
    owner_start(&o, B.sock, 4096, NULL);
    initiator near, far;
    initiator_open(&near, B.sock, 4096, o.name);
    initiator_open(&far, A.sock, 4096, o.name);
    static char big[MCEFA_NOTIFY_MSG_MAX];
    for (int round = 0; round < 2; round++) {
        initiator *in = round ? &far : &near;
        ck_assert_int_eq(mcefa_notify(in->c, in->seg, "first", 5, big, sizeof(big)), 0);
        int rc = mcefa_notify(in->c, in->seg, "second", 6, big, sizeof(big));
        ck_assert_int_eq(rc, -ENOBUFS);
        const char *t = mcefa_last_error();
        ck_assert_msg(strstr(t, o.name) && strstr(t, "not draining") && strstr(t, "notify_queue_bytes"), "%s", t);
        /* What still fits goes in; what does not is refused every time. */
        ck_assert_int_eq(mcefa_notify(in->c, in->seg, "third", 5, "x", 1), 0);
        ck_assert_int_eq(mcefa_notify(in->c, in->seg, "second", 6, big, sizeof(big)), -ENOBUFS);
        mcefa_notification v[4];
        ck_assert_int_eq(drain(&o, v, 4), 2);
        ck_assert_str_eq(v[0].name, "first");
        ck_assert_str_eq(v[1].name, "third");
        mcefa_notifications_free(v, 2);
        ck_assert_int_eq(mcefa_notify(in->c, in->seg, "after", 5, "x", 1), 0);
        ck_assert_int_eq(drain(&o, v, 4), 1);
        ck_assert_str_eq(v[0].name, "after");
        mcefa_notifications_free(v, 1);
    }
    ck_assert(log_has(&B, "does not take its notifications"));
    initiator_close(&near);
    initiator_close(&far);
    mcefa_disconnect(o.c);
}
END_TEST

/* An owner that disconnects takes its notifications with it: a new owner
 * of the same name starts empty, and meanwhile senders hear that nobody
 * owns the segment. */
START_TEST(owner_disconnect_drops_its_queue)
{
    owner o;
    owner_start(&o, B.sock, 4096, "hostb:16001");
    initiator near, far;
    initiator_open(&near, B.sock, 4096, o.name);
    initiator_open(&far, A.sock, 4096, o.name);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(mcefa_notify(far.c, far.seg, "old", 3, "far", 3), 0);
        ck_assert_int_eq(mcefa_notify(near.c, near.seg, "old", 3, "near", 4), 0);
    }
    mcefa_disconnect(o.c);
    for (int i = 0; i < 200 && !log_has(&B, "200 notifications it did not take are dropped"); i++)
        usleep(10000);
    ck_assert(log_has(&B, "200 notifications it did not take are dropped"));
    ck_assert_int_eq(mcefa_notify(near.c, near.seg, "n", 1, "m", 1), -ENOTCONN);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "gone"));
    ck_assert_int_eq(mcefa_notify(far.c, far.seg, "n", 1, "m", 1), -ENOENT);
    ck_assert_msg(strstr(mcefa_last_error(), "hostb:16001") && strstr(mcefa_last_error(), "no client on host hostb"),
                  "%s", mcefa_last_error());
    owner o2;
    owner_start(&o2, B.sock, 4096, "hostb:16001");
    ck_assert_int_eq(queued_count(&o2), 0);
    ck_assert_int_eq(mcefa_notify(far.c, far.seg, "new", 3, "far", 3), 0);
    mcefa_notification v[4];
    ck_assert_int_eq(drain(&o2, v, 4), 1);
    ck_assert_str_eq(v[0].name, "new");
    mcefa_notifications_free(v, 1);
    initiator_close(&near);
    initiator_close(&far);
    mcefa_disconnect(o2.c);
}
END_TEST

/* The target's daemon restarted since the segment was opened: the
 * notification is refused as stale, not handed to whoever owns the name
 * in the new incarnation. */
START_TEST(restarted_target_refuses_stale_handles)
{
    owner o;
    owner_start(&o, B.sock, 4096, "hostb:16002");
    initiator far;
    initiator_open(&far, A.sock, 4096, o.name);
    ck_assert_int_eq(mcefa_notify(far.c, far.seg, "n", 1, "m", 1), 0);
    mcefa_disconnect(o.c);
    daemon_stop(&B);
    start_b();
    owner o2;
    owner_start(&o2, B.sock, 4096, "hostb:16002");
    int rc = mcefa_notify(far.c, far.seg, "n", 1, "m", 1);
    ck_assert_msg(rc == -ESTALE, "%d: %s", rc, mcefa_last_error());
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "open it again"));
    ck_assert_int_eq(queued_count(&o2), 0);
    /* Opened again, it goes to the new owner. */
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(far.c, o2.name, &seg), 0);
    ck_assert_int_eq(mcefa_notify(far.c, seg, "n", 1, "m", 1), 0);
    ck_assert_int_eq(queued_count(&o2), 1);
    initiator_close(&far);
    mcefa_disconnect(o2.c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("notify");
    if (system("fi_info -p 'tcp;ofi_rxm' >/dev/null 2>&1") != 0) {
        printf("notify: skipped: libfabric's tcp;ofi_rxm provider is not available\n0 passed, 0 failed\n");
        return 0;
    }
    TCase *tc = tcase_create("notify");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, delivered_after_data_same_host);
    tcase_add_test(tc, delivered_after_data_other_host);
    tcase_add_test(tc, thousands_in_order_none_lost);
    tcase_add_test(tc, only_the_owner_receives);
    tcase_add_test(tc, large_ones_span_replies);
    tcase_add_test(tc, bad_input_refused);
    tcase_add_test(tc, owner_disconnect_drops_its_queue);
    tcase_add_test(tc, restarted_target_refuses_stale_handles);
    suite_add_tcase(s, tc);
    TCase *full = tcase_create("full");
    tcase_set_timeout(full, 60);
    tcase_add_checked_fixture(full, setup_small_queue, teardown);
    tcase_add_test(full, full_queue_is_an_error_naming_the_segment);
    suite_add_tcase(s, full);
    return run_suite(s);
}
