/* Operations: mcefactl against a running daemon (text, JSON, exit codes,
 * admin permission), the Prometheus endpoint, the systemd notify protocol,
 * log storms, and the installed unit file. */
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>

#include "harness.h"
#include "suite.h"

static test_daemon D;
static int metrics_port;
static char notify_path[128];
static int notify_fd = -1;

static void setup(void)
{
    metrics_port = free_ports(1);
    /* A datagram socket standing in for systemd's notify socket. */
    snprintf(notify_path, sizeof(notify_path), "/tmp/mcefa-notify-%d", getpid());
    unlink(notify_path);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, notify_path, strlen(notify_path) + 1);
    ck_assert_int_eq(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setenv("NOTIFY_SOCKET", notify_path, 1);
    char m[64];
    snprintf(m, sizeof(m), "--metrics_listen=127.0.0.1:%d", metrics_port);
    const char *args[] = {"--provider=none", m, "--socket_mode=0666", NULL};
    daemon_start(&D, args);
    unsetenv("NOTIFY_SOCKET");
}

static void teardown(void)
{
    daemon_stop(&D);
    close(notify_fd);
    unlink(notify_path);
}

/* Runs a shell command, returns its exit status; stdout into out. */
static int run(char *out, size_t outlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t outlen, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CTL "%s/mcefactl --socket=%s "

START_TEST(notify_ready_and_stopping)
{
    char buf[512];
    struct pollfd p = {.fd = notify_fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    ssize_t n = recv(notify_fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = 0;
    ck_assert_ptr_nonnull(strstr(buf, "READY=1"));
    /* READY comes only once the socket listens. */
    int fd = raw_connect(D.sock);
    ck_assert_int_ge(fd, 0);
    close(fd);
    daemon_stop(&D);
    n = recv(notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    buf[n] = 0;
    ck_assert_ptr_nonnull(strstr(buf, "STOPPING=1"));
    daemon_start(&D, (const char *const[]){"--provider=none", "--metrics_listen=", NULL});
}
END_TEST

START_TEST(ctl_text_and_json)
{
    char out[16384];
    const char *b = build_dir();
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(D.sock, "busy-client", &c), 0);
    void *buf;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, -1, 0, &buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, 1 << 20), 0);
    ck_assert_int_eq(mcefa_segment_export(c, "ops-seg-1", NULL, 0), 0);

    ck_assert_int_eq(run(out, sizeof(out), CTL "status", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "mcefad 0.1.0"));
    ck_assert_ptr_nonnull(strstr(out, "epoch"));
    ck_assert_int_eq(run(out, sizeof(out), CTL "--json status", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"provider\":\"none\""));
    ck_assert_ptr_nonnull(strstr(out, "\"uptime_s\":"));

    ck_assert_int_eq(run(out, sizeof(out), CTL "clients", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "busy-client"));
    ck_assert_int_eq(run(out, sizeof(out), CTL "--json clients", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"name\":\"busy-client\""));
    ck_assert_ptr_nonnull(strstr(out, "\"bytes_registered\":1048576"));

    ck_assert_int_eq(run(out, sizeof(out), CTL "segments", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "ops-seg-1"));
    ck_assert_int_eq(run(out, sizeof(out), CTL "--json segments", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"name\":\"ops-seg-1\""));

    ck_assert_int_eq(run(out, sizeof(out), CTL "nics", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "no NICs"));
    ck_assert_int_eq(run(out, sizeof(out), CTL "--json nics", b, D.sock), 0);
    ck_assert_str_eq(out, "[]\n");
    ck_assert_int_eq(run(out, sizeof(out), CTL "--json peers", b, D.sock), 0);
    ck_assert_str_eq(out, "[]\n");

    ck_assert_int_eq(run(out, sizeof(out), CTL "--json stats --watch --count=2 --interval=0.1", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"transfers_per_s\":"));

    ck_assert_int_eq(run(out, sizeof(out), CTL "loglevel warn", b, D.sock), 0);
    ck_assert_int_eq(run(out, sizeof(out), CTL "--json status", b, D.sock), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"log_level\":\"warn\""));
    ck_assert_int_eq(run(out, sizeof(out), CTL "loglevel debug", b, D.sock), 0);
    mcefa_disconnect(c);
}
END_TEST

START_TEST(ctl_exit_codes)
{
    char out[4096];
    const char *b = build_dir();
    ck_assert_int_eq(run(out, sizeof(out), CTL "frobnicate 2>/dev/null", b, D.sock), 2);
    ck_assert_int_eq(run(out, sizeof(out), CTL "loglevel 2>/dev/null", b, D.sock), 2);
    ck_assert_int_eq(run(out, sizeof(out), CTL "--bogus status 2>/dev/null", b, D.sock), 2);
    ck_assert_int_eq(run(out, sizeof(out), CTL "loglevel shouty 2>&1", b, D.sock), 2);
    ck_assert_ptr_nonnull(strstr(out, "shouty"));
    ck_assert_int_eq(run(out, sizeof(out), CTL "status extra 2>/dev/null", b, D.sock), 2);
    /* The daemon answers, with a failure: exit 1, not "no daemon". */
    ck_assert_int_eq(run(out, sizeof(out), CTL "warmup nowhere 2>&1", b, D.sock), 1);
    ck_assert_int_eq(run(out, sizeof(out), "%s/mcefactl --socket=/nonexistent/sock status 2>&1", b), 3);
    ck_assert_ptr_nonnull(strstr(out, "start the daemon"));
}
END_TEST

/* An ordinary user (nobody) may connect but not use admin requests. */
START_TEST(ctl_admin_permission)
{
    struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || !pw) {
        printf("ctl_admin_permission: skipped: needs root and a 'nobody' user\n");
        return;
    }
    chmod(D.dir, 0755);
    char out[4096];
    ck_assert_int_eq(run(out, sizeof(out), "setpriv --reuid=%d --regid=%d --clear-groups %s/mcefactl --socket=%s "
                                           "loglevel debug 2>&1",
                         (int)pw->pw_uid, (int)pw->pw_gid, build_dir(), D.sock),
                     4);
    ck_assert_ptr_nonnull(strstr(out, "admin_group"));
    /* Status works, but shows only the caller. */
    ck_assert_int_eq(run(out, sizeof(out), "setpriv --reuid=%d --regid=%d --clear-groups %s/mcefactl --socket=%s "
                                           "--json clients 2>&1",
                         (int)pw->pw_uid, (int)pw->pw_gid, build_dir(), D.sock),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "\"name\":\"mcefactl\""));
}
END_TEST

START_TEST(metrics_scrape)
{
    /* Some traffic first, so counters and the histogram move. */
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(D.sock, "metrics", &c), 0);
    uint8_t *buf;
    ck_assert_int_eq(mcefa_alloc(c, 1 << 20, -1, 0, (void **)&buf), 0);
    ck_assert_int_eq(mcefa_register(c, buf, 1 << 20), 0);
    char name[300];
    ck_assert_int_eq(mcefa_segment_export(c, NULL, name, sizeof(name)), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, name, &seg), 0);
    mcefa_transfer x = {MCEFA_WRITE, buf, seg, (uint64_t)(uintptr_t)buf + (1 << 19), 1 << 19};
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), 0);

    static char out[65536];
    ck_assert_int_gt(http_get(metrics_port, "/metrics", out, sizeof(out)), 0);
    ck_assert_ptr_nonnull(strstr(out, "HTTP/1.1 200 OK"));
    ck_assert_ptr_nonnull(strstr(out, "text/plain; version=0.0.4"));
    char *body = strstr(out, "\r\n\r\n");
    ck_assert_ptr_nonnull(body);
    /* Parse every sample line: name{labels} value, value a number. */
    int samples = 0;
    double completed = -1, count = -1, clients = -1, bytes = -1, inf = -1;
    for (char *line = strtok(body + 4, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            ck_assert(!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7));
            continue;
        }
        char *sp = strrchr(line, ' ');
        ck_assert_ptr_nonnull(sp);
        char *end;
        double v = strtod(sp + 1, &end);
        ck_assert_msg(*end == 0, "bad value in '%s'", line);
        *sp = 0;
        ck_assert_msg(line[0] >= 'a' && line[0] <= 'z', "bad name in '%s'", line);
        if (!strcmp(line, "mcefad_transfers_total{result=\"completed\"}"))
            completed = v;
        else if (!strcmp(line, "mcefad_transfer_latency_seconds_count"))
            count = v;
        else if (!strcmp(line, "mcefad_transfer_latency_seconds_bucket{le=\"+Inf\"}"))
            inf = v;
        else if (!strcmp(line, "mcefad_clients"))
            clients = v;
        else if (!strcmp(line, "mcefad_local_bytes_total"))
            bytes = v;
        samples++;
    }
    ck_assert_int_gt(samples, 15);
    ck_assert(completed >= 10);
    ck_assert(count >= 10 && inf == count);
    ck_assert(clients >= 1);
    ck_assert(bytes >= 10.0 * (1 << 19));
    ck_assert_int_gt(http_get(metrics_port, "/other", out, sizeof(out)), 0);
    ck_assert_ptr_nonnull(strstr(out, "404"));
    /* A scraper that connects and says nothing is dropped (after 5 s). */
    int idle = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(connect(idle, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct pollfd pi = {.fd = idle, .events = POLLIN};
    ck_assert_int_eq(poll(&pi, 1, 8000), 1);
    char one;
    ck_assert_int_eq(read(idle, &one, 1), 0);
    close(idle);
    mcefa_disconnect(c);
}
END_TEST

/* Fifty clients sending oversize frames within a second: one warning line
 * and a repeat count, not fifty lines. */
START_TEST(log_storms_are_damped)
{
    for (int i = 0; i < 50; i++) {
        int fd = raw_connect(D.sock);
        uint8_t hdr[4] = {0, 0, 0, 0x7f};
        raw_send(fd, hdr, 4);
        close(fd);
    }
    usleep(300000);
    mcefa_client *c;
    ck_assert_int_eq(mcefa_connect(D.sock, "after-storm", &c), 0);
    mcefa_disconnect(c);
    usleep(1100000);
    /* A different warning flushes the count. */
    int fd = raw_connect(D.sock);
    uint8_t part[6] = {100, 0, 0, 0, 1, 2};
    raw_send(fd, part, 6);
    close(fd);
    usleep(200000);
    char cmd[300], out[64];
    snprintf(cmd, sizeof(cmd), "grep -c 'over max_frame_bytes' %s", D.log);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(fgets(out, sizeof(out), f));
    pclose(f);
    int lines = atoi(out);
    ck_assert_msg(lines >= 1 && lines <= 5, "%d warning lines for 50 identical events", lines);
    snprintf(cmd, sizeof(cmd), "grep -q 'repeated' %s", D.log);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A provider that finds no NIC fails the start, saying what to check,
 * unless allow_no_nics says same-host only is wanted. (A provider name no
 * libfabric has stands in for an EFA host whose driver is missing; that
 * this machine has no EFA is not what the test relies on.) */
START_TEST(no_nics_fails_start)
{
    char out[8192], dir[] = "/tmp/mcefa-nonic-XXXXXX";
    const char *b = build_dir();
    ck_assert_ptr_nonnull(mkdtemp(dir));
    int rc = run(out, sizeof(out),
                 "timeout 20 %s/mcefad --socket_path=%s/s.sock --metrics_listen= --provider=nosuchprovider 2>&1", b,
                 dir);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "lists no NIC"));
    ck_assert_ptr_nonnull(strstr(out, "allow_no_nics=true"));
    /* Allowed: it serves (same host only) until told to stop. */
    rc = run(out, sizeof(out),
             "(%s/mcefad --socket_path=%s/s.sock --metrics_listen= --provider=nosuchprovider --allow_no_nics=true "
             "2>&1 & p=$!; for i in $(seq 200); do [ -S %s/s.sock ] && break; sleep 0.05; done; "
             "%s/mcefactl --socket=%s/s.sock status >/dev/null; r=$?; kill $p; wait $p; exit $r)",
             b, dir, dir, b, dir);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "serving same-host transfers only"));
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(config_check_and_unit_file)
{
    char out[8192];
    const char *b = build_dir();
    ck_assert_int_eq(run(out, sizeof(out), "%s/mcefad --version", b), 0);
    ck_assert_ptr_nonnull(strstr(out, "mcefad 0.1.0"));
    ck_assert_int_eq(run(out, sizeof(out), "%s/mcefad --check-config --copy_threads=3 2>&1", b), 0);
    ck_assert_ptr_nonnull(strstr(out, "configuration OK"));
    ck_assert_int_eq(run(out, sizeof(out), "%s/mcefad --check-config --copy_threads=0 2>&1", b), 2);
    ck_assert_ptr_nonnull(strstr(out, "copy_threads"));
    ck_assert_int_eq(run(out, sizeof(out), "%s/mcefad --check-config --metrics_listen=nowhere 2>&1; echo", b), 0);
    /* The affinity table an operator checks on a p5en, from its hwloc export. */
    const char *srcd = getenv("MCEFA_SRCDIR");
    char xml[600];
    snprintf(xml, sizeof(xml), "%s/../shared/topologies/p5en.48xlarge.xml", srcd ? srcd : ".");
    if (access(xml, R_OK) == 0) {
        ck_assert_int_eq(run(out, sizeof(out), "%s/mcefad --print-topology=%s", b, xml), 0);
        ck_assert_ptr_nonnull(strstr(out, "8 GPU(s), 16 NIC(s)"));
        ck_assert_ptr_nonnull(strstr(out, "GPU 0000:59:00.0 (NUMA 0): rdmap85s0 rdmap86s0 rdmap87s0 rdmap88s0"));
    }
    ck_assert_int_eq(run(out, sizeof(out), "%s/mcefad --print-topology=/nonexistent.xml 2>&1", b), 2);
    if (system("command -v systemd-analyze >/dev/null") != 0) {
        printf("config_check_and_unit_file: unit verification skipped: systemd-analyze is not installed\n");
        return;
    }
    char dir[] = "/tmp/mcefa-install-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *src = getenv("MCEFA_SRCDIR");
    /* The build directory under test, never another one: a SAN run that
     * installed from build/ used to recompile it with the sanitizers. */
    ck_assert_int_eq(run(out, sizeof(out), "make -s -C %s B=%s install PREFIX=%s/usr SYSCONFDIR=%s/etc 2>&1",
                         src ? src : ".", b, dir, dir),
                     0);
    int rc = run(out, sizeof(out), "systemd-analyze verify %s/usr/lib/systemd/system/mcefad.service 2>&1", dir);
    ck_assert_msg(rc == 0, "systemd-analyze verify: %s", out);
    ck_assert_int_eq(run(out, sizeof(out), "grep -c '^Type=notify' %s/usr/lib/systemd/system/mcefad.service", dir),
                     0);
    /* The installed config file passes the daemon's own check. */
    ck_assert_int_eq(run(out, sizeof(out), "%s/usr/bin/mcefad --check-config --config=%s/etc/mcefad/mcefad.conf 2>&1",
                         dir, dir),
                     0);
    char rm[200];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    ck_assert_int_eq(system(rm), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("admin");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, notify_ready_and_stopping);
    tcase_add_test(tc, ctl_text_and_json);
    tcase_add_test(tc, ctl_exit_codes);
    tcase_add_test(tc, ctl_admin_permission);
    tcase_add_test(tc, metrics_scrape);
    tcase_add_test(tc, log_storms_are_damped);
    tcase_add_test(tc, config_check_and_unit_file);
    tcase_add_test(tc, no_nics_fails_start);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
