/* Attacks on the daemon-to-daemon port: raw TCP from someone who does not
 * hold the cluster secret (or, with peer_auth=none, who sends malformed
 * hellos), and the settings of peer authentication themselves. Each test
 * checks that the attack changes nothing for the real peers. */
#include <arpa/inet.h>
#include <stdbool.h>

#include "net_harness.h"
#include "suite.h"

static test_daemon A, B;
static int port_a, port_b;

/* A (hosta) reaches B (hostb) through peer_hosts; both with the run's
 * secret unless extra flags say otherwise. */
static void start_pair(const char *a1, const char *a2, const char *b1, const char *b2)
{
    port_a = free_ports(2);
    port_b = port_a + 1;
    char pa[64], pb[64], ma[96], mb[96];
    snprintf(pa, sizeof(pa), "--peer_port=%d", port_a);
    snprintf(pb, sizeof(pb), "--peer_port=%d", port_b);
    snprintf(ma, sizeof(ma), "--peer_hosts=hostb=127.0.0.1:%d", port_b);
    snprintf(mb, sizeof(mb), "--peer_hosts=hosta=127.0.0.1:%d", port_a);
    const char *args_b[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hostb", pb, mb,
                            "--request_timeout_ms=3000", b1, b2, NULL};
    const char *args_a[] = {"--provider=tcp;ofi_rxm", "--nics=lo", "--hostname=hosta", pa, ma,
                            "--request_timeout_ms=3000", a1, a2, NULL};
    daemon_start(&B, args_b);
    daemon_start(&A, args_a);
}

static void setup_psk(void)
{
    start_pair(NULL, NULL, NULL, NULL);
}

/* By environment (each test runs in its own process), so the same tests
 * also run against a daemon that predates these settings. */
static void setup_none(void)
{
    setenv("MCEFAD_PEER_AUTH", "none", 1);
    setenv("MCEFAD_PEER_MAX_OUTBOUND", "65536", 1);
    start_pair(NULL, NULL, NULL, NULL);
}

static void teardown(void)
{
    daemon_stop(&A);
    daemon_stop(&B);
}

static int peer_dial_rcvbuf(int port, int rcvbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf) /* before connect, so the window stays small */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int peer_dial(int port)
{
    return peer_dial_rcvbuf(port, 0);
}

static void send_frame(int fd, Mcefa__PeerFrame *f)
{
    uint8_t *b;
    size_t n;
    ck_assert_int_eq(wire_pack(&f->base, &b, &n), 0);
    ck_assert_int_eq(wire_send_all(fd, b, n, NULL, 0), 0);
    free(b);
}

/* The next frame within ms, or NULL once the daemon closed (or was quiet). */
static Mcefa__PeerFrame *recv_frame(int fd, wire_reader *rd, int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        const uint8_t *p;
        size_t len;
        if (wire_reader_next(rd, &p, &len) == 1) {
            Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, len, p);
            ck_assert_ptr_nonnull(f);
            wire_reader_consume(rd);
            return f;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, 10);
        ssize_t n = wire_reader_fill(rd, fd);
        if (n == 0 || n == -ECONNRESET)
            return NULL;
    }
    return NULL;
}

/* Whether the daemon closes fd within ms (reading and dropping anything). */
static int closed_within(int fd, int ms)
{
    char buf[65536];
    for (int waited = 0; waited < ms; waited += 10) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10) == 1) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0)
                return 1;
        }
    }
    return 0;
}

static int log_has(const test_daemon *d, const char *text)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "grep -qF -- '%s' %s", text, d->log);
    return system(cmd) == 0;
}

/* A hello with one NIC at addr (len bytes) on fabric. */
typedef struct fake_hello {
    Mcefa__PeerHello h;
    Mcefa__PeerNic n;
    Mcefa__PeerNic *np[1];
    uint8_t addr[64];
} fake_hello;

static void fake_hello_init(fake_hello *x, const char *host, uint64_t epoch, const char *fabric, size_t len)
{
    mcefa__peer_hello__init(&x->h);
    mcefa__peer_nic__init(&x->n);
    x->h.protocol_version = MCEFA_PROTOCOL_VERSION;
    x->h.hostname = (char *)host;
    x->h.epoch = epoch;
    x->h.provider = "tcp;ofi_rxm";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    memcpy(x->addr, &sa, sizeof(sa));
    x->n.name = "eth9";
    x->n.fabric = (char *)fabric;
    x->n.address.data = x->addr;
    x->n.address.len = len;
    x->np[0] = &x->n;
    x->h.n_nics = 1;
    x->h.nics = x->np;
}

static void send_hello(int fd, uint64_t seq, Mcefa__PeerHello *h)
{
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    f.hello = h;
    send_frame(fd, &f);
}

static void send_get_segment(int fd, uint64_t seq, const char *name)
{
    Mcefa__GetSegment g = MCEFA__GET_SEGMENT__INIT;
    g.name = (char *)name;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.body_case = MCEFA__PEER_FRAME__BODY_GET_SEGMENT;
    f.get_segment = &g;
    send_frame(fd, &f);
}

/* A raw peer B admitted (peer_auth=none): its hello answered with B's own,
 * which the caller frees. */
static Mcefa__PeerFrame *admitted_peer(int *fd, wire_reader *rd, const char *host, uint64_t epoch)
{
    *fd = peer_dial(port_b);
    wire_reader_init(rd, 0);
    fake_hello x;
    fake_hello_init(&x, host, epoch, "nofabric", 16);
    send_hello(*fd, 1, &x.h);
    Mcefa__PeerFrame *f = recv_frame(*fd, rd, 5000);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(f->status == 0 && f->body_case == MCEFA__PEER_FRAME__BODY_HELLO, "hello refused: %s",
                  f->error ? f->error : "");
    return f;
}

/* A reads all of a target on B: the real peers still work. */
static void pair_still_works(void)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    mcefa_transfer x = {MCEFA_READ, in.buf, in.seg, t.addr, 1 << 20};
    int rc = mcefa_transfer_sync(in.c, &x, 1, 10000);
    ck_assert_msg(rc == 0, "transfer: %s", mcefa_last_error());
    ck_assert(pattern_ok(in.buf, 1 << 20, 1));
    initiator_close(&in);
    net_target_stop(&t);
}

/* 1: without the secret, a hello learns no NIC address and a GetSegment
 * no descriptor; the connection is closed. */
START_TEST(unauthenticated_learns_nothing)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    int fd = peer_dial(port_b);
    fake_hello x;
    fake_hello_init(&x, "intruder", 42, "f", 16);
    send_hello(fd, 1, &x.h);
    send_get_segment(fd, 2, t.name);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    Mcefa__PeerFrame *f;
    int frames = 0;
    while ((f = recv_frame(fd, &rd, 3000)) != NULL) {
        frames++;
        ck_assert_int_ne(f->body_case, MCEFA__PEER_FRAME__BODY_HELLO);
        ck_assert_int_ne(f->body_case, MCEFA__PEER_FRAME__BODY_SEGMENT);
        ck_assert_int_lt(f->status, 0);
        ck_assert_msg(strstr(f->error, "peer_secret_file"), "refusal says what to do: %s", f->error);
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
    ck_assert_int_le(frames, 1);
    ck_assert(closed_within(fd, 1000));
    wire_reader_free(&rd);
    close(fd);
    net_target_stop(&t);
}
END_TEST

/* 2: a hello claiming to be hostb with a new epoch does not replace the
 * real B at A: transfers on the segment opened before go on. */
START_TEST(hijack_refused)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    initiator in;
    initiator_open(&in, A.sock, 1 << 20, t.name);
    mcefa_transfer x = {MCEFA_READ, in.buf, in.seg, t.addr, 1 << 20};
    ck_assert_int_eq(mcefa_transfer_sync(in.c, &x, 1, 10000), 0);
    int fd = peer_dial(port_a);
    fake_hello h;
    fake_hello_init(&h, "hostb", 0x1234, "f", 16);
    send_hello(fd, 1, &h.h);
    ck_assert(closed_within(fd, 3000));
    close(fd);
    memset(in.buf, 0, 1 << 20);
    int rc = mcefa_transfer_sync(in.c, &x, 1, 10000);
    ck_assert_msg(rc == 0, "transfer after the hijack attempt: %s", mcefa_last_error());
    ck_assert(pattern_ok(in.buf, 1 << 20, 1));
    initiator_close(&in);
    net_target_stop(&t);
}
END_TEST

/* 4, 5: before authentication frames are small and time is short. */
START_TEST(preauth_limits)
{
    /* A header announcing 1 MiB: closed at once, not buffered. */
    int fd = peer_dial(port_b);
    ck_assert_int_eq(write(fd, "\0\0\x10\0", 4), 4);
    ck_assert(closed_within(fd, 1000));
    close(fd);
    /* Silence: closed within the handshake deadline (3 s here), though
     * nothing else times out meanwhile. */
    fd = peer_dial(port_b);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert(closed_within(fd, 8000));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 7);
    close(fd);
    ck_assert(log_has(&B, "no handshake within"));
    pair_still_works();
}
END_TEST

/* Authentication frames that are wrong (a made-up proof) are refused with
 * the hint, and the real pair works. */
START_TEST(forged_proof_refused)
{
    int fd = peer_dial(port_b);
    uint8_t nonce[32] = {1}, proof[32] = {2};
    Mcefa__PeerAuth a = MCEFA__PEER_AUTH__INIT;
    a.step = 1;
    a.hostname = "intruder";
    a.epoch = 7;
    a.nonce.data = nonce;
    a.nonce.len = sizeof(nonce);
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_AUTH;
    f.auth = &a;
    send_frame(fd, &f);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    Mcefa__PeerFrame *r = recv_frame(fd, &rd, 3000);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->body_case, MCEFA__PEER_FRAME__BODY_AUTH);
    ck_assert_uint_eq(r->auth->proof.len, 32);
    mcefa__peer_frame__free_unpacked(r, NULL);
    a.step = 3;
    a.hostname = "";
    a.epoch = 0;
    a.nonce.len = 0;
    a.proof.data = proof;
    a.proof.len = sizeof(proof);
    send_frame(fd, &f);
    r = recv_frame(fd, &rd, 3000);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_lt(r->status, 0);
    ck_assert_msg(strstr(r->error, "same peer_secret_file"), "got: %s", r->error);
    mcefa__peer_frame__free_unpacked(r, NULL);
    ck_assert(closed_within(fd, 1000));
    wire_reader_free(&rd);
    close(fd);
    ck_assert(log_has(&B, "failed authentication"));
    pair_still_works();
}
END_TEST

/* ---- peer_auth=none: the hello's contents are checked ------------------ */

/* B's fabric name, learnt from its answer to a harmless hello. */
static void probe_fabric(char *fabric, size_t cap)
{
    int fd = peer_dial(port_b);
    fake_hello x;
    fake_hello_init(&x, "prober", 99, "nofabric", 16);
    send_hello(fd, 1, &x.h);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    Mcefa__PeerFrame *f = recv_frame(fd, &rd, 3000);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(f->status == 0 && f->body_case == MCEFA__PEER_FRAME__BODY_HELLO, "probe refused: %s", f->error);
    ck_assert_uint_ge(f->hello->n_nics, 1);
    snprintf(fabric, cap, "%s", f->hello->nics[0]->fabric);
    mcefa__peer_frame__free_unpacked(f, NULL);
    wire_reader_free(&rd);
    close(fd);
}

/* 3, 6: addresses of a wrong family or length, and hellos without NICs,
 * are refused on that connection; B keeps inserting real peers. */
START_TEST(bad_addresses_refused)
{
    char fabric[128];
    probe_fabric(fabric, sizeof(fabric));
    static const size_t lens[] = {16, 0, 3};
    for (size_t k = 0; k < 3; k++) {
        int fd = peer_dial(port_b);
        fake_hello x;
        fake_hello_init(&x, "evil", 100 + k, fabric, lens[k]);
        if (k == 0)
            memset(x.addr, 0xff, 16); /* family 0xffff */
        send_hello(fd, 1, &x.h);
        wire_reader rd;
        wire_reader_init(&rd, 0);
        Mcefa__PeerFrame *f = recv_frame(fd, &rd, 3000);
        ck_assert_ptr_nonnull(f);
        ck_assert_msg(f->status < 0, "address of %zu bytes accepted", lens[k]);
        mcefa__peer_frame__free_unpacked(f, NULL);
        ck_assert(closed_within(fd, 1000));
        wire_reader_free(&rd);
        close(fd);
    }
    /* No NICs at all, then a GetSegment as if admitted. */
    int fd = peer_dial(port_b);
    fake_hello x;
    fake_hello_init(&x, "nonic", 200, fabric, 16);
    x.h.n_nics = 0;
    send_hello(fd, 1, &x.h);
    send_get_segment(fd, 2, "hostb:15000");
    wire_reader rd;
    wire_reader_init(&rd, 0);
    Mcefa__PeerFrame *f;
    while ((f = recv_frame(fd, &rd, 3000)) != NULL) {
        ck_assert_int_lt(f->status, 0);
        ck_assert_int_ne(f->body_case, MCEFA__PEER_FRAME__BODY_SEGMENT);
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
    wire_reader_free(&rd);
    close(fd);
    pair_still_works();
}
END_TEST

/* The hello's fabric fields (libfabric version, host fabric): a fabric
 * name that is not a name, and a host claiming a fabric no NIC of ours
 * shares, are refused on that connection with the reason; a version number
 * of any value is only printed. B keeps serving real peers. */
START_TEST(hello_fabric_fields_checked)
{
    char fabric[128];
    probe_fabric(fabric, sizeof(fabric));
    struct {
        const char *host_fabric, *nic_fabric;
        uint32_t version;
        const char *error;
    } cases[] = {
        {"efa\nFORGED", fabric, 0, "invalid fabric name"},
        {"efa-direct", "efa-direct", 0xffffffffu, "uses fabric efa-direct"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int fd = peer_dial(port_b);
        fake_hello x;
        fake_hello_init(&x, "fabricker", 600 + k, cases[k].nic_fabric, 16);
        x.h.fabric = (char *)cases[k].host_fabric;
        x.h.libfabric_version = cases[k].version;
        send_hello(fd, 1, &x.h);
        wire_reader rd;
        wire_reader_init(&rd, 0);
        Mcefa__PeerFrame *f = recv_frame(fd, &rd, 3000);
        ck_assert_ptr_nonnull(f);
        ck_assert_msg(f->status < 0 && f->error && strstr(f->error, cases[k].error), "hello %zu: status %d: %s", k,
                      f->status, f->error ? f->error : "");
        mcefa__peer_frame__free_unpacked(f, NULL);
        ck_assert(closed_within(fd, 1000));
        wire_reader_free(&rd);
        close(fd);
    }
    pair_still_works();
}
END_TEST

/* 7: a newline in a host name forges no log line; bytes that are not
 * printable ASCII never come back in error texts. */
START_TEST(texts_sanitised)
{
    int fd = peer_dial(port_b);
    fake_hello x;
    fake_hello_init(&x, "evil\nFORGED mcefad: everything is fine", 300, "nofabric", 16);
    send_hello(fd, 1, &x.h);
    ck_assert(closed_within(fd, 3000));
    close(fd);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "grep -q '^FORGED' %s", B.log);
    ck_assert_int_ne(system(cmd), 0);

    fd = peer_dial(port_b);
    fake_hello_init(&x, "tester", 301, "nofabric", 16);
    send_hello(fd, 1, &x.h);
    send_get_segment(fd, 2, "bad\xff\xfe\nname");
    wire_reader rd;
    wire_reader_init(&rd, 0);
    int answered = 0;
    Mcefa__PeerFrame *f;
    while (!answered && (f = recv_frame(fd, &rd, 3000)) != NULL) {
        if (f->seq == 2) {
            answered = 1;
            ck_assert_int_lt(f->status, 0);
            for (const char *p = f->error; *p; p++)
                ck_assert_msg(*p >= ' ' && *p <= '~', "byte 0x%02x in '%s'", (unsigned char)*p, f->error);
        }
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
    ck_assert(answered);
    wire_reader_free(&rd);
    close(fd);
}
END_TEST

/* 4: pipelined requests whose replies are never read close the
 * connection at peer_max_outbound_bytes (64 KiB here), with a log line. */
START_TEST(unread_replies_capped)
{
    int fd = peer_dial_rcvbuf(port_b, 4096);
    fake_hello x;
    fake_hello_init(&x, "flooder", 400, "nofabric", 16);
    send_hello(fd, 1, &x.h);
    /* Each reply names the segment: about 400 bytes; 100000 of them is far
     * beyond the cap plus what the kernels buffer. */
    Mcefa__GetSegment g = MCEFA__GET_SEGMENT__INIT;
    char name[320];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    g.name = name;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_GET_SEGMENT;
    f.get_segment = &g;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int broken = 0;
    for (int i = 0; i < 100000 && !broken; i++) {
        f.seq = 10 + (uint64_t)i;
        uint8_t *b;
        size_t n;
        ck_assert_int_eq(wire_pack(&f.base, &b, &n), 0);
        size_t off = 0;
        for (int spins = 0; off < n && spins < 2000; spins++) {
            ssize_t w = send(fd, b + off, n - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN) {
                broken = 1;
                break;
            } else
                usleep(1000);
        }
        free(b);
        if (off < n)
            broken = 1;
    }
    fcntl(fd, F_SETFL, flags);
    close(fd);
    for (int i = 0; i < 300 && !log_has(&B, "peer_max_outbound_bytes"); i++)
        usleep(10000);
    ck_assert_msg(log_has(&B, "peer_max_outbound_bytes"), "no log line about the cap (see %s)", B.log);
    ck_assert(daemon_alive(&B));
}
END_TEST

/* Keys: the daemon chose them as base | n (base from the epoch) and sent
 * the base to anyone as the warmup key, so memory never exported could be
 * read with a guessed key. Keys are random now: a region's key shares
 * nothing with the warmup key, and two regions' keys are not neighbours. */
START_TEST(keys_not_derivable)
{
    int fd;
    wire_reader rd;
    Mcefa__PeerFrame *f = admitted_peer(&fd, &rd, "keyprobe", 500);
    ck_assert_uint_ge(f->hello->n_nics, 1);
    uint64_t warm = f->hello->nics[0]->warmup_key;
    mcefa__peer_frame__free_unpacked(f, NULL);
    /* A target with two regions on B. */
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(B.sock, "keys", &c), 0);
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, 1 << 19), 0);
    ck_assert_int_eq(mcefa_register(c, buf + (1 << 19), 1 << 19), 0);
    char name[128];
    ck_assert_int_eq(mcefa_segment_export(c, NULL, name, sizeof(name)), 0);
    send_get_segment(fd, 2, name);
    f = recv_frame(fd, &rd, 5000);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(f->body_case == MCEFA__PEER_FRAME__BODY_SEGMENT, "no descriptor: %s", f->error ? f->error : "");
    ck_assert_uint_eq(f->segment->n_regions, 2);
    uint64_t k0 = f->segment->regions[0]->rma_key[0], k1 = f->segment->regions[1]->rma_key[0];
    mcefa__peer_frame__free_unpacked(f, NULL);
    ck_assert_msg((k0 ^ warm) >> 16 != 0 && (k1 ^ warm) >> 16 != 0,
                  "region keys %#llx %#llx share their high bits with the warmup key %#llx", (unsigned long long)k0,
                  (unsigned long long)k1, (unsigned long long)warm);
    uint64_t d = k0 > k1 ? k0 - k1 : k1 - k0;
    ck_assert_msg(d > 0xffff, "region keys %#llx and %#llx are neighbours", (unsigned long long)k0,
                  (unsigned long long)k1);
    mcefa_disconnect(c);
    wire_reader_free(&rd);
    close(fd);
}
END_TEST

static void send_notify(int fd, uint64_t seq, const char *segment, const char *name, size_t nlen, const char *msg,
                        size_t mlen, uint64_t epoch)
{
    Mcefa__PeerNotify n = MCEFA__PEER_NOTIFY__INIT;
    n.segment = (char *)segment;
    n.name.data = (uint8_t *)name;
    n.name.len = nlen;
    n.msg.data = (uint8_t *)msg;
    n.msg.len = mlen;
    n.epoch = epoch;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.body_case = MCEFA__PEER_FRAME__BODY_NOTIFY;
    f.notify = &n;
    send_frame(fd, &f);
}

/* Notifications from a peer: before its hello the connection closes; after
 * it, each malformed or undeliverable one gets its own error reply (in
 * printable text) and the connection goes on serving; a good one reaches
 * the segment's owner, and only it. */
START_TEST(peer_notifications_checked)
{
    static char big[MCEFA_NOTIFY_MSG_MAX + 1];
    memset(big, 'z', sizeof(big));
    int fd = peer_dial(port_b);
    send_notify(fd, 1, "hostb:15000", "n", 1, "m", 1, 0);
    ck_assert(closed_within(fd, 3000));
    close(fd);

    mcefa_client *own = client_ok(B.sock, "notified"), *other = client_ok(B.sock, "bystander");
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(own, 4096, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(own, buf, 4096), 0);
    char seg[128], seg2[128];
    ck_assert_int_eq(mcefa_segment_export(own, NULL, seg, sizeof(seg)), 0);
    ck_assert_int_eq(mcefa_segment_export(other, NULL, seg2, sizeof(seg2)), 0);

    wire_reader rd;
    Mcefa__PeerFrame *f = admitted_peer(&fd, &rd, "notifier", 700);
    mcefa__peer_frame__free_unpacked(f, NULL);
    char longname[300];
    memset(longname, 'h', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    struct {
        const char *segment;
        size_t nlen, mlen;
        uint64_t epoch;
        int status;
        const char *text;
    } cases[] = {
        {"", 1, 1, 0, -EINVAL, "segment name"},
        {longname, 1, 1, 0, -EINVAL, "segment name"},
        {seg, MCEFA_NOTIFY_NAME_MAX + 1, 1, 0, -EMSGSIZE, "MCEFA_NOTIFY_NAME_MAX"},
        {seg, 1, MCEFA_NOTIFY_MSG_MAX + 1, 0, -EMSGSIZE, "MCEFA_NOTIFY_MSG_MAX"},
        {"hostb:1", 1, 1, 0, -ENOENT, "no client on host hostb exports it"},
        {"bad\xff\nname", 1, 1, 0, -ENOENT, "no client on host hostb exports it"},
        {seg, 1, 1, 12345, -ESTALE, "open it again"},
    };
    size_t nc = sizeof(cases) / sizeof(cases[0]);
    for (size_t k = 0; k < nc; k++)
        send_notify(fd, 10 + k, cases[k].segment, big, cases[k].nlen, big, cases[k].mlen, cases[k].epoch);
    send_notify(fd, 50, seg, "from-raw-peer", 13, "hello", 5, 0);
    for (size_t k = 0; k <= nc; k++) {
        f = recv_frame(fd, &rd, 3000);
        ck_assert_msg(f != NULL, "no answer to notification %zu (connection closed?)", k);
        ck_assert(f->reply);
        if (k == nc) {
            ck_assert_uint_eq(f->seq, 50);
            ck_assert_msg(f->status == 0, "good notification refused: %s", f->error);
        } else {
            ck_assert_uint_eq(f->seq, 10 + k);
            ck_assert_msg(f->status == cases[k].status && f->error && strstr(f->error, cases[k].text),
                          "case %zu: status %d: %s", k, f->status, f->error ? f->error : "");
            for (const char *p = f->error; *p; p++)
                ck_assert_msg(*p >= ' ' && *p <= '~', "byte 0x%02x in '%s'", (unsigned char)*p, f->error);
        }
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
    wire_reader_free(&rd);
    close(fd);
    mcefa_notification v[4] = {MCEFA_NOTIFICATION_INIT};
    ck_assert_int_eq(mcefa_get_notifies(own, v, 4), 1);
    ck_assert_str_eq(v[0].name, "from-raw-peer");
    ck_assert_str_eq(v[0].msg, "hello");
    mcefa_notifications_free(v, 1);
    v[0] = (mcefa_notification)MCEFA_NOTIFICATION_INIT;
    ck_assert_int_eq(mcefa_get_notifies(other, v, 4), 0);
    mcefa_disconnect(own);
    mcefa_disconnect(other);
    ck_assert(daemon_alive(&B));
    pair_still_works();
}
END_TEST

static uint64_t staged_epoch, staged_rid; /* B's, as its hello and descriptor said */

static void send_staged(int fd, uint64_t seq, const char *segment, uint64_t addr, uint64_t len, size_t nnics)
{
    uint64_t v[4] = {0x1000, 0x2000, 7, 8};
    Mcefa__StagedOp m = MCEFA__STAGED_OP__INIT;
    m.write = seq % 2;
    m.segment = (char *)segment;
    m.addr = addr;
    m.length = len;
    m.n_rma_addr = m.n_rma_key = nnics;
    m.rma_addr = v;
    m.rma_key = v + 2;
    m.deadline_ms = 2000;
    m.epoch = staged_epoch;
    m.region_id = staged_rid;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.body_case = MCEFA__PEER_FRAME__BODY_STAGED_OP;
    f.staged_op = &m;
    send_frame(fd, &f);
}

/* StagedOp requests from a peer for plain memory of B's segments: before
 * the hello the connection closes; after it, every malformed one and every
 * one for memory that is not plain, not in the segment or in no segment
 * gets its own error answer (with the StagedOp body that says B is done),
 * nothing is written to the client's memory, and B serves on. A burst past
 * the per-peer cap is answered too, each request once. */
START_TEST(staged_ops_checked)
{
    int fd = peer_dial(port_b);
    send_staged(fd, 1, "hostb:15000", 0x1000, 4096, 1);
    ck_assert(closed_within(fd, 3000));
    close(fd);

    mcefa_client *own = client_ok(B.sock, "plain-owner");
    size_t plen = 1 << 20;
    uint8_t *plain = aligned_alloc(4096, plen), *mapped;
    memset(plain, 0x5a, plen);
    ck_assert_int_eq(mcefa_register(own, plain, plen), 0);
    ck_assert_int_eq(mcefa_alloc(own, 1 << 20, -1, 0, (void **)&mapped), 0);
    ck_assert_int_eq(mcefa_register(own, mapped, 1 << 20), 0);
    char seg[128];
    ck_assert_int_eq(mcefa_segment_export(own, NULL, seg, sizeof(seg)), 0);

    wire_reader rd;
    Mcefa__PeerFrame *f = admitted_peer(&fd, &rd, "stager", 800);
    staged_epoch = f->hello->epoch;
    mcefa__peer_frame__free_unpacked(f, NULL);
    uint64_t pa = (uint64_t)(uintptr_t)plain, ma = (uint64_t)(uintptr_t)mapped;
    /* The descriptor names the plain region as staged, with its id. */
    send_get_segment(fd, 2, seg);
    f = recv_frame(fd, &rd, 5000);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(f->body_case == MCEFA__PEER_FRAME__BODY_SEGMENT, "no descriptor: %s", f->error ? f->error : "");
    for (size_t k = 0; k < f->segment->n_regions; k++)
        if (f->segment->regions[k]->addr == pa) {
            ck_assert(f->segment->regions[k]->staged && f->segment->regions[k]->n_rma_addr == 0);
            staged_rid = f->segment->regions[k]->region_id;
        }
    ck_assert_uint_ne(staged_rid, 0);
    mcefa__peer_frame__free_unpacked(f, NULL);
    struct {
        const char *segment;
        uint64_t addr, len;
        size_t nnics;
        int status;
        const char *text;
    } cases[] = {
        {seg, pa, 0, 1, -EINVAL, "1 to"},
        {seg, pa, (1 << 20) + 1, 1, -EINVAL, "staging_slot_bytes"},
        {seg, UINT64_MAX - 10, 4096, 1, -EINVAL, "1 to"},
        {seg, pa, 4096, 0, -EPROTO, "the sender announced 1"},
        {seg, pa, 4096, 2, -EPROTO, "the sender announced 1"},
        {"hostb:1", pa, 4096, 1, -ENOENT, "not found"},
        {seg, ma, 4096, 1, -EFAULT, "not inside plain host memory"},
        {seg, pa + plen - 100, 4096, 1, -EFAULT, "not inside plain host memory"},
        {seg, 0x10000, 4096, 1, -EFAULT, "not inside plain host memory"},
        /* Well formed, but no NIC of B reaches the raw peer's. */
        {seg, pa, 4096, 1, -ENETUNREACH, "no NIC of this host reaches"},
        /* Another incarnation of B, another registration there. */
        {seg, pa, 4096, 1, -ESTALE, "this daemon restarted"},
        {seg, pa, 4096, 1, -ESTALE, "registered anew"},
    };
    size_t nc = sizeof(cases) / sizeof(cases[0]);
    for (size_t k = 0; k < nc; k++) {
        uint64_t e = staged_epoch, rid = staged_rid;
        if (k == nc - 2)
            staged_epoch ^= 1;
        if (k == nc - 1)
            staged_rid += 1000;
        send_staged(fd, 10 + k, cases[k].segment, cases[k].addr, cases[k].len, cases[k].nnics);
        staged_epoch = e;
        staged_rid = rid;
    }
    /* Answers may come in any order (some wait a loop turn): by seq. */
    bool answered[32] = {false};
    for (size_t i = 0; i < nc; i++) {
        f = recv_frame(fd, &rd, 3000);
        ck_assert_msg(f != NULL, "no answer to staged op %zu (connection closed?)", i);
        ck_assert(f->reply && f->seq >= 10 && f->seq < 10 + nc);
        size_t k = f->seq - 10;
        ck_assert(!answered[k]);
        answered[k] = true;
        ck_assert_msg(f->status == cases[k].status && f->error && strstr(f->error, cases[k].text),
                      "case %zu: status %d: %s", k, f->status, f->error ? f->error : "");
        ck_assert_msg(f->body_case == MCEFA__PEER_FRAME__BODY_STAGED_OP, "case %zu answered without its body", k);
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
    /* A burst of well-formed requests: each answered once, refused or not. */
    enum { BURST = 200 };
    for (unsigned k = 0; k < BURST; k++)
        send_staged(fd, 1000 + k, seg, pa + 4096 * (k % 200), 4096, 1);
    static bool seen[BURST];
    memset(seen, 0, sizeof(seen));
    for (unsigned k = 0; k < BURST; k++) {
        f = recv_frame(fd, &rd, 5000);
        ck_assert_msg(f != NULL, "answer %u of the burst missing", k);
        ck_assert(f->seq >= 1000 && f->seq < 1000 + BURST && !seen[f->seq - 1000]);
        seen[f->seq - 1000] = true;
        ck_assert_msg(f->status == -ENETUNREACH || f->status == -EBUSY, "burst: status %d: %s", f->status,
                      f->error ? f->error : "");
        mcefa__peer_frame__free_unpacked(f, NULL);
    }
    wire_reader_free(&rd);
    close(fd);
    for (size_t i = 0; i < plen; i++)
        ck_assert_msg(plain[i] == 0x5a, "byte %zu of the plain memory changed", i);
    mcefa_disconnect(own);
    free(plain);
    ck_assert(daemon_alive(&B));
    pair_still_works();
}
END_TEST

/* 5: one host cannot hold more than a few connections (the cap of 1024
 * is for all hosts together); a new epoch closes the old ones. */
START_TEST(connections_per_peer_capped)
{
    int fds[5];
    wire_reader rd;
    for (int k = 0; k < 5; k++) {
        fds[k] = peer_dial(port_b);
        fake_hello x;
        fake_hello_init(&x, "greedy", 500, "nofabric", 16);
        send_hello(fds[k], 1, &x.h);
        wire_reader_init(&rd, 0);
        Mcefa__PeerFrame *f = recv_frame(fds[k], &rd, 3000);
        ck_assert_ptr_nonnull(f);
        if (k < 4)
            ck_assert_msg(f->status == 0, "hello %d refused: %s", k, f->error);
        else
            ck_assert_msg(f->status < 0 && strstr(f->error, "connections"), "fifth: %d %s", f->status, f->error);
        mcefa__peer_frame__free_unpacked(f, NULL);
        wire_reader_free(&rd);
    }
    ck_assert(closed_within(fds[4], 1000));
    /* The host restarts: its old connections go, the new one is served. */
    int fd = peer_dial(port_b);
    fake_hello x;
    fake_hello_init(&x, "greedy", 501, "nofabric", 16);
    send_hello(fd, 1, &x.h);
    wire_reader_init(&rd, 0);
    Mcefa__PeerFrame *f = recv_frame(fd, &rd, 3000);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(f->status == 0, "new epoch refused: %s", f->error);
    mcefa__peer_frame__free_unpacked(f, NULL);
    wire_reader_free(&rd);
    for (int k = 0; k < 4; k++)
        ck_assert(closed_within(fds[k], 1000));
    for (int k = 0; k < 5; k++)
        close(fds[k]);
    close(fd);
}
END_TEST

START_TEST(none_works_with_warning)
{
    pair_still_works();
    ck_assert(log_has(&A, "peer_auth=none"));
    ck_assert(log_has(&B, "peer_auth=none"));
}
END_TEST

/* ---- Settings: secrets that differ, or are missing -------------------- */

static void write_secret(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
}

/* What A's client sees when B does not accept A. */
static void expect_refusal(const char *want_a_log, const char *want_b_log)
{
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(A.sock, "refused", &c), 0);
    mcefa_segment seg;
    int rc = mcefa_segment_open(c, t.name, &seg);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strstr(mcefa_last_error(), "peer_secret_file"), "client sees: %s", mcefa_last_error());
    mcefa_disconnect(c);
    net_target_stop(&t);
    for (int i = 0; i < 100 && !log_has(&B, want_b_log); i++)
        usleep(10000);
    ck_assert_msg(log_has(&A, want_a_log), "A's log lacks '%s' (%s)", want_a_log, A.log);
    ck_assert_msg(log_has(&B, want_b_log), "B's log lacks '%s' (%s)", want_b_log, B.log);
}

START_TEST(different_secrets_refuse)
{
    char dir[] = "/tmp/mcefa-secret2-XXXXXX", path[96], flag[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/other.secret", dir);
    write_secret(path, "0123456789abcdef0123456789abcdef0123456789abcdef", 0600);
    snprintf(flag, sizeof(flag), "--peer_secret_file=%s", path);
    start_pair(NULL, NULL, flag, NULL);
    expect_refusal("failed our peer authentication", "rejected our peer authentication");
    teardown();
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(psk_and_none_refuse)
{
    start_pair(NULL, NULL, "--peer_auth=none", NULL);
    expect_refusal("rejected our peer authentication", "peer_auth=none");
    teardown();
    start_pair("--peer_auth=none", NULL, NULL, NULL);
    expect_refusal("refused the handshake", "did not authenticate");
    teardown();
}
END_TEST

/* Runs mcefad with extra flags; returns its exit status, its stderr in out. */
static int run_daemon(const char *extra, char *out, size_t cap)
{
    char dir[] = "/tmp/mcefa-start-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    int port = free_ports(1);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "{ timeout 20 %s/mcefad --socket_path=%s/s.sock --provider='tcp;ofi_rxm' --nics=lo --peer_port=%d "
             "--metrics_listen= %s 2>%s/err </dev/null & sleep 2; kill $! 2>/dev/null; wait $!; } 2>/dev/null",
             build_dir(), dir, port, extra, dir);
    int st = system(cmd);
    char p[128];
    snprintf(p, sizeof(p), "%s/err", dir);
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f)
        fclose(f);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) {
    }
    return st;
}

START_TEST(secret_file_checked_at_start)
{
    static char out[8192];
    /* Status 2: a configuration error, which the unit does not restart on. */
    int st = run_daemon("--peer_secret_file=", out, sizeof(out));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    ck_assert_msg(strstr(out, "mcefactl gen-secret"), "no secret: %s", out);
    char dir[] = "/tmp/mcefa-secret3-XXXXXX", path[96], flag[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/open.secret", dir);
    write_secret(path, "0123456789abcdef0123456789abcdef0123456789abcdef", 0644);
    snprintf(flag, sizeof(flag), "--peer_secret_file=%s", path);
    st = run_daemon(flag, out, sizeof(out));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    ck_assert_msg(strstr(out, "chmod 600"), "readable secret: %s", out);
    write_secret(path, "short", 0600);
    run_daemon(flag, out, sizeof(out));
    ck_assert_msg(strstr(out, "gen-secret"), "short secret: %s", out);
    /* mcefactl gen-secret makes a file the daemon takes. */
    unlink(path);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "%s/mcefactl gen-secret %s >/dev/null 2>&1", build_dir(), path);
    ck_assert_int_eq(system(cmd), 0);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0600);
    ck_assert_int_ne(system(cmd), 0); /* never overwrites */
    run_daemon(flag, out, sizeof(out));
    ck_assert_msg(strstr(out, "peers authenticate with the secret"), "generated secret: %s", out);
    unlink(path);
    rmdir(dir);
}
END_TEST

int main(void)
{
    if (system("fi_info -p 'tcp;ofi_rxm' -t FI_EP_RDM >/dev/null 2>&1") != 0) {
        printf("peer_attack: skipped: libfabric's tcp;ofi_rxm provider is not available here (fi_info)\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    Suite *s = suite_create("peer_attack");
    TCase *psk = tcase_create("psk");
    tcase_set_timeout(psk, 90);
    tcase_add_checked_fixture(psk, setup_psk, teardown);
    tcase_add_test(psk, unauthenticated_learns_nothing);
    tcase_add_test(psk, hijack_refused);
    tcase_add_test(psk, preauth_limits);
    tcase_add_test(psk, forged_proof_refused);
    suite_add_tcase(s, psk);
    TCase *none = tcase_create("none");
    tcase_set_timeout(none, 90);
    tcase_add_checked_fixture(none, setup_none, teardown);
    tcase_add_test(none, bad_addresses_refused);
    tcase_add_test(none, hello_fabric_fields_checked);
    tcase_add_test(none, texts_sanitised);
    tcase_add_test(none, unread_replies_capped);
    tcase_add_test(none, connections_per_peer_capped);
    tcase_add_test(none, none_works_with_warning);
    tcase_add_test(none, keys_not_derivable);
    tcase_add_test(none, peer_notifications_checked);
    tcase_add_test(none, staged_ops_checked);
    suite_add_tcase(s, none);
    TCase *cfg = tcase_create("settings");
    tcase_set_timeout(cfg, 90);
    tcase_add_test(cfg, different_secrets_refuse);
    tcase_add_test(cfg, psk_and_none_refuse);
    tcase_add_test(cfg, secret_file_checked_at_start);
    suite_add_tcase(s, cfg);
    return run_suite(s);
}
