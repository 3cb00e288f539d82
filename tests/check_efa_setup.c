/* What mcefad asks of libfabric at start and at registration, seen from
 * outside: daemons on tcp;ofi_rxm in two network namespaces joined by two
 * veth pairs (two "NICs" a host), with tests/fi_interpose.c preloaded to
 * record every fi_getinfo, domain, endpoint option and registration, and a
 * made-up sysfs tree (the topology setting) that puts each host's two NICs
 * on NUMA nodes 0 and 1.
 *
 * What tcp cannot show: the efa-only options (shm off at >= 1.21, emulated
 * RMA at >= 1.18) are never planned for tcp, so here the check is that the
 * options the daemon sets or reads are exactly efa_opt_plan's for the API
 * version it got (none with Debian's 1.17). check_efa covers the plans for
 * efa. Needs root and iproute2; skips with the reason otherwise.
 *
 * GPU memory: tcp offers no FI_HMEM, so the recorder's MCEFA_FI_HMEM modes
 * make it look like a provider that grants it, or whose domains or
 * FI_OPT_CUDA_API_PERMITTED refuse it; the tests check what mcefad asks,
 * how it opens each NIC and the plan it shows (nic_hmem.h). With headers
 * below 1.18 (Debian's 1.17) no NIC can get GPUDirect: then the check is
 * that the daemon says so and never opens a NIC with FI_HMEM. Nothing here
 * touches a GPU or EFA: it shows mcefad's decisions, not the hardware's. */
#include <inttypes.h>

#include "efa.h"
#include "fabric_version.h"
#include "fi_log.h"
#include "nic_hmem.h"
#include "net_harness.h"
#include "suite.h"

static netns_pair net;
static char *const ns_a = net.ns[0], *const ns_b = net.ns[1];
static char (*const if_a)[16] = net.nic[0], (*const if_b)[16] = net.nic[1];
static char topo_dir[64], fi_log[128];
static test_daemon A, B;
static pid_t owner;
#define PEER_PORT "17650"

static void topo_remove(void)
{
    if (topo_dir[0] && getpid() == owner)
        netns_sh("rm -rf %s", topo_dir);
}

/* A sysfs tree for each host in which its NIC k sits on NUMA node k. */
static int topo_make(void)
{
    owner = getpid();
    snprintf(topo_dir, sizeof(topo_dir), "/tmp/mcefa-topo-XXXXXX");
    if (!mkdtemp(topo_dir))
        return -1;
    atexit(topo_remove);
    snprintf(fi_log, sizeof(fi_log), "%s/fi.log", topo_dir);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 2; k++)
            if (netns_sh("mkdir -p %s/%c/class/net/%s/device && echo %d > %s/%c/class/net/%s/device/numa_node",
                         topo_dir, 'a' + h, net.nic[h][k], k, topo_dir, 'a' + h, net.nic[h][k]))
                return -1;
    return 0;
}

/* Starts a daemon in ns as host, on the NICs named, with extra flags
 * (NULL-terminated) and, when interpose, the recording library. */
static void start(test_daemon *d, const char *ns, const char *host, const char *nics, bool interpose,
                  const char *const *extra)
{
    char h[64], n[80];
    snprintf(h, sizeof(h), "--hostname=%s", host);
    snprintf(n, sizeof(n), "--nics=%s", nics);
    const char *args[24] = {"--provider=tcp;ofi_rxm", h, n, "--peer_port=" PEER_PORT, "--request_timeout_ms=5000"};
    int k = 5;
    for (; extra && *extra && k < 23; extra++)
        args[k++] = *extra;
    args[k] = NULL;
    char lib[512], abs[4096], asan[600];
    if (interpose) {
        snprintf(lib, sizeof(lib), "%s/tests/libfi-interpose.so", build_dir());
        ck_assert_ptr_nonnull(realpath(lib, abs));
        unlink(fi_log);
        setenv("MCEFA_FI_LOG", fi_log, 1);
        setenv("LD_PRELOAD", abs, 1);
        /* A sanitized daemon: the recorder loads ahead of the runtime. */
        const char *old = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", old ? old : "", old && *old ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
    }
    daemon_start_in(d, ns, args);
    unsetenv("LD_PRELOAD");
    unsetenv("MCEFA_FI_LOG");
}

static void teardown(void)
{
    daemon_stop(&A);
    daemon_stop(&B);
    unsetenv("FI_HMEM");
    unsetenv("MCEFA_FI_HMEM");
}

/* ---- Reading what was recorded ------------------------------------------ */

/* How many recorded lines contain every one of the words (NULL-ended). */
#define recorded(...) fi_log_count(fi_log, __VA_ARGS__)

/* The daemon's own fi_getinfo calls (the provider's internal ones name
 * their core provider), in order: version and caps. */
typedef struct getinfo_call {
    unsigned major, minor;
    unsigned long long caps;
    unsigned mr_mode;
    char hmem[32];
    int rc;
} getinfo_call;

static int daemon_getinfo(getinfo_call *out, int max)
{
    FILE *f = fopen(fi_log, "r");
    ck_assert_ptr_nonnull(f);
    char line[600];
    int n = 0;
    while (fgets(line, sizeof(line), f) && n < max) {
        getinfo_call g;
        if (sscanf(line, "getinfo version=%u.%u prov=tcp;ofi_rxm caps=%llx mr_mode=%x mode=%*s hmem_env=%31s rc=%d",
                   &g.major, &g.minor, &g.caps, &g.mr_mode, g.hmem, &g.rc) == 6)
            out[n++] = g;
    }
    fclose(f);
    return n;
}

/* Where field of NIC ifname starts in mcefactl --json nics (read into
 * buf): just after "field":. */
static const char *nic_json_at(const test_daemon *d, const char *ifname, const char *field, char *buf, size_t len)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "%s/mcefactl --socket=%s --json nics", build_dir(), d->sock);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t got = fread(buf, 1, len - 1, p);
    buf[got] = 0;
    pclose(p);
    char key[64];
    snprintf(key, sizeof(key), "\"name\":\"%s\"", ifname);
    const char *at = strstr(buf, key);
    ck_assert_msg(at != NULL, "NIC %s not in %s", ifname, buf);
    snprintf(key, sizeof(key), "\"%s\":", field);
    at = strstr(at, key);
    ck_assert_msg(at != NULL, "no %s in %s", field, buf);
    return at + strlen(key);
}

/* A field of NIC ifname in mcefactl --json nics: the text after "field":. */
static void nic_field(const test_daemon *d, const char *ifname, const char *field, char *out, size_t len)
{
    char buf[16384];
    const char *at = nic_json_at(d, ifname, field, buf, sizeof(buf));
    size_t l = strcspn(at, ",}");
    snprintf(out, len, "%.*s", (int)l, at);
}

/* A text field of NIC ifname, its quotes and escapes undone. */
static void nic_text(const test_daemon *d, const char *ifname, const char *field, char *out, size_t len)
{
    char buf[16384];
    const char *at = nic_json_at(d, ifname, field, buf, sizeof(buf));
    ck_assert_msg(*at == '"', "%s is not text: %s", field, at);
    size_t k = 0;
    for (at++; *at && *at != '"' && k + 1 < len; at++)
        out[k++] = *at == '\\' && at[1] ? *++at : *at;
    out[k] = 0;
}

static uint64_t nic_ops(const test_daemon *d, const char *ifname)
{
    char v[32];
    nic_field(d, ifname, "ops", v, sizeof(v));
    return strtoull(v, NULL, 10);
}

/* How many NICs of provider tcp;ofi_rxm registered a region of len bytes. */
static int registered_on(const char *ifname, size_t len)
{
    char dom[64], l[32];
    snprintf(dom, sizeof(dom), "domain=%s ", ifname);
    snprintf(l, sizeof(l), "len=%zu\n", len);
    return recorded("mr_reg prov=tcp;ofi_rxm ", dom, l, NULL);
}

/* ---- Tests -------------------------------------------------------------- */

#ifdef MCEFA_CUDA
#define CUDA_BUILD true
#else
#define CUDA_BUILD false
#endif

/* What the daemon decides about FI_HMEM by default in this build. */
static nic_hmem_ask default_ask(const char *env)
{
    nic_hmem_ask a;
    nic_hmem_decide_ask(true, CUDA_BUILD, FABRIC_VERSION_HEADERS, env, &a);
    return a;
}

START_TEST(asks_what_efa_needs)
{
    unsetenv("FI_HMEM");
    char nics[40];
    snprintf(nics, sizeof(nics), "%s,%s", if_a[0], if_a[1]);
    start(&A, ns_a, "10.232.1.1", nics, true, NULL);
    getinfo_call g[8];
    int n = daemon_getinfo(g, 8);
    ck_assert_int_ge(n, 1);
    /* First the newest version these headers know. */
    ck_assert_uint_eq(g[0].major, FI_MAJOR_VERSION);
    ck_assert_uint_eq(g[0].minor, FI_MINOR_VERSION);
    /* FI_HMEM is asked last, once, at the version that answered, and only
     * where a NIC could use it; FI_HMEM=system is kept otherwise, so no
     * provider probes a GPU (nic_hmem.h). */
    nic_hmem_ask ask = default_ask(NULL);
    printf("asks_what_efa_needs: FI_HMEM %s%s%s\n", ask.ask ? "asked" : "not asked", ask.ask ? "" : ": ", ask.why);
    int plain = ask.ask ? n - 1 : n;
    for (int i = 0; i < n; i++) {
        /* Remote communication only: no shm sub-provider under efa. */
        ck_assert_uint_eq(g[i].caps & FI_LOCAL_COMM, 0);
        ck_assert_uint_ne(g[i].caps & FI_REMOTE_COMM, 0);
        ck_assert_uint_eq(g[i].caps & (FI_RMA | FI_READ | FI_WRITE), FI_RMA | FI_READ | FI_WRITE);
        ck_assert_uint_eq(g[i].caps & FI_HMEM, i < plain ? 0 : FI_HMEM);
        ck_assert_uint_eq(g[i].mr_mode & FI_MR_HMEM, i < plain ? 0 : FI_MR_HMEM);
        ck_assert_str_eq(g[i].hmem, ask.set_system ? "system" : "-");
    }
    /* The version that answered is the one mcefactl reports. */
    char api[16], want[24];
    nic_field(&A, if_a[0], "api_version", api, sizeof(api));
    snprintf(want, sizeof(want), "\"%u.%u\"", g[plain - 1].major, g[plain - 1].minor);
    ck_assert_int_eq(g[plain - 1].rc, 0);
    ck_assert_str_eq(api, want);
    if (ask.ask)
        ck_assert(g[n - 1].major == g[plain - 1].major && g[n - 1].minor == g[plain - 1].minor);
    /* Each NIC's endpoint got exactly the options the plan names for that
     * version (with 1.17: none at all), and nothing else. */
    efa_opt_step plan[EFA_OPT_STEPS_MAX];
    size_t np = efa_opt_plan(FI_VERSION(g[plain - 1].major, g[plain - 1].minor), "tcp;ofi_rxm", "", false, plan);
    for (int k = 0; k < 2; k++) {
        char dom[64];
        snprintf(dom, sizeof(dom), "domain=%s ", if_a[k]);
        ck_assert_int_eq(recorded("endpoint prov=tcp;ofi_rxm ", dom, NULL), 1);
        snprintf(dom, sizeof(dom), "domain=%s ", if_a[k]);
        int opts = recorded("opt prov=tcp;ofi_rxm ", dom, NULL);
        printf("asks_what_efa_needs: API %u.%u, NIC %s: %d endpoint option call(s), plan %zu\n", g[plain - 1].major,
               g[plain - 1].minor, if_a[k], opts, np);
        ck_assert_int_eq(opts, (int)np);
    }
    /* max_wr 0: the provider's tx depth. */
    char wr[24], depth[24];
    nic_field(&A, if_a[0], "max_wr", wr, sizeof(wr));
    nic_field(&A, if_a[0], "tx_depth", depth, sizeof(depth));
    ck_assert_str_eq(wr, depth);
    ck_assert_str_ne(wr, "0");
}
END_TEST

START_TEST(keeps_fi_hmem_set_by_the_user)
{
    setenv("FI_HMEM", "cuda", 1);
    start(&A, ns_a, "10.232.1.1", if_a[0], true, NULL);
    getinfo_call g[8];
    int n = daemon_getinfo(g, 8);
    ck_assert_int_ge(n, 1);
    ck_assert_str_eq(g[0].hmem, "cuda");
}
END_TEST

/* ---- GPU memory: FI_HMEM and the plan per NIC --------------------------- */

/* How many recorded lines of the daemon's NIC ifname (tcp;ofi_rxm) name
 * every word given. */
static int nic_recorded(const char *what, const char *ifname, const char *w1, const char *w2)
{
    char dom[64];
    snprintf(dom, sizeof(dom), "%s=%s ", !strcmp(what, "domain") ? "name" : "domain", ifname);
    char head[64];
    snprintf(head, sizeof(head), "%s prov=tcp;ofi_rxm ", what);
    return recorded(head, dom, w1 ? w1 : "", w2 ? w2 : "", NULL);
}

/* Starts A on its first NIC with the recorder in FI_HMEM mode mode (NULL:
 * the provider as it is), FI_HMEM=cuda (a user who lets providers use
 * CUDA, so FI_HMEM is asked whatever the headers) and the CUDA driver
 * stand-in, which the plan loads where libfabric allows GPUDirect. */
static void start_hmem(const char *mode, const char *gpudirect)
{
    setenv("FI_HMEM", "cuda", 1);
    if (mode)
        setenv("MCEFA_FI_HMEM", mode, 1);
    char lib[600] = "--cuda_library=", path[512], abs[4096];
    snprintf(path, sizeof(path), "%s/tests/libcuda-standin.so", build_dir());
    if (realpath(path, abs))
        snprintf(lib, sizeof(lib), "--cuda_library=%s", abs);
    setenv("MCEFA_STANDIN_GPUS", "2", 1);
    const char *extra[] = {lib, gpudirect, NULL};
    start(&A, ns_a, "10.232.1.1", if_a[0], true, extra);
    unsetenv("MCEFA_FI_HMEM");
}

/* The plan A shows for its first NIC; prints it. */
static void plan_of_a(const char *test, char *reg, size_t rl, char *why, size_t wl)
{
    nic_text(&A, if_a[0], "gpu_registration", reg, rl);
    nic_text(&A, if_a[0], "gpu_registration_why", why, wl);
    printf("%s: NIC %s: GPU memory by %s (%s)\n", test, if_a[0], reg, why);
}

static void expect_why(const char *why, const char *part)
{
    ck_assert_msg(strstr(why, part) != NULL, "'%s' does not say '%s'", why, part);
}

/* The getinfo with FI_HMEM asked: caps, mr_mode, at the version of the
 * plain list before it. */
static void expect_hmem_asked(void)
{
    getinfo_call g[8];
    int n = daemon_getinfo(g, 8);
    ck_assert_int_ge(n, 2);
    ck_assert_uint_eq(g[n - 1].caps & FI_HMEM, FI_HMEM);
    ck_assert_uint_eq(g[n - 1].mr_mode & FI_MR_HMEM, FI_MR_HMEM);
    ck_assert_uint_eq(g[n - 2].caps & FI_HMEM, 0);
    ck_assert(g[n - 1].major == g[n - 2].major && g[n - 1].minor == g[n - 2].minor);
    ck_assert_str_eq(g[n - 1].hmem, "cuda");
}

START_TEST(gpu_plan_when_the_provider_grants_hmem)
{
    start_hmem("grant", NULL);
    char reg[32], why[ERR_TEXT_MAX];
    plan_of_a("gpu_plan_when_the_provider_grants_hmem", reg, sizeof(reg), why, sizeof(why));
    if (!CUDA_BUILD) {
        ck_assert_str_eq(reg, "staging");
        expect_why(why, "without CUDA");
        return;
    }
    expect_hmem_asked();
    char hmem[8];
    nic_field(&A, if_a[0], "hmem", hmem, sizeof(hmem));
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 18)
    /* Opened with FI_HMEM, CUDA calls turned off before fi_enable, then
     * dmabuf (the stand-in's GPUs report it; headers >= 1.20 and a kernel
     * >= 5.12 assumed) or iface. */
    ck_assert_str_eq(hmem, "true");
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=1", "rc=0"), 1);
    ck_assert_int_eq(nic_recorded("endpoint", if_a[0], "hmem=1", NULL), 1);
    ck_assert_int_eq(nic_recorded("setopt", if_a[0], "name=10 ", "rc=0"), 1);
    ck_assert_str_eq(reg, FABRIC_VERSION_HEADERS >= FI_VERSION(1, 20) ? "dmabuf" : "iface");
#else
    /* Granted, but these headers cannot turn the provider's CUDA calls
     * off: the NIC is opened host-only and says why. */
    ck_assert_str_eq(hmem, "false");
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=1", NULL), 0);
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=0", "rc=0"), 1);
    ck_assert_int_eq(recorded("setopt ", "name=10 ", NULL), 0);
    ck_assert_str_eq(reg, "staging");
    expect_why(why, "below 1.18");
#endif
    /* Host memory still registers as before, on a NIC of either kind. */
    mcefa_client *c = client_ok(A.sock, "hmem");
    size_t len = (3 << 20) + 24576;
    register_memfd_on(c, len, -1);
    ck_assert_int_eq(registered_on(if_a[0], len), 1);
    ck_assert_int_eq(nic_recorded("mr_reg", if_a[0], "iface=0 ", "flags=0x0 "),
                     nic_recorded("mr_reg", if_a[0], NULL, NULL));
    mcefa_disconnect(c);
}
END_TEST

START_TEST(gpu_plan_when_the_provider_refuses_hmem)
{
    /* tcp itself: fi_getinfo with FI_HMEM finds nothing. */
    start_hmem(NULL, NULL);
    char reg[32], why[ERR_TEXT_MAX], hmem[8];
    plan_of_a("gpu_plan_when_the_provider_refuses_hmem", reg, sizeof(reg), why, sizeof(why));
    ck_assert_str_eq(reg, "staging");
    nic_field(&A, if_a[0], "hmem", hmem, sizeof(hmem));
    ck_assert_str_eq(hmem, "false");
    if (!CUDA_BUILD) {
        expect_why(why, "without CUDA");
        return;
    }
    expect_hmem_asked();
    getinfo_call g[8];
    int n = daemon_getinfo(g, 8);
    ck_assert_int_eq(g[n - 1].rc, -FI_ENODATA);
    expect_why(why, "offers no FI_HMEM entry");
    expect_why(why, fi_strerror(FI_ENODATA));
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=0", "rc=0"), 1);
}
END_TEST

START_TEST(gpu_plan_when_the_domain_refuses_hmem)
{
    start_hmem("domain_refuses", NULL);
    char reg[32], why[ERR_TEXT_MAX];
    plan_of_a("gpu_plan_when_the_domain_refuses_hmem", reg, sizeof(reg), why, sizeof(why));
    ck_assert_str_eq(reg, "staging");
    /* Host-only in the end, whatever was tried. */
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=0", "rc=0"), 1);
    if (!CUDA_BUILD)
        return;
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 18)
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=1", "rc=-95"), 1);
    expect_why(why, "opening the NIC with FI_HMEM failed (fi_domain");
#else
    ck_assert_int_eq(nic_recorded("domain", if_a[0], "hmem=1", NULL), 0);
    expect_why(why, "below 1.18");
#endif
}
END_TEST

START_TEST(gpu_plan_when_cuda_calls_cannot_be_turned_off)
{
    start_hmem("cuda_api_refused", NULL);
    char reg[32], why[ERR_TEXT_MAX];
    plan_of_a("gpu_plan_when_cuda_calls_cannot_be_turned_off", reg, sizeof(reg), why, sizeof(why));
    ck_assert_str_eq(reg, "staging");
    ck_assert_int_eq(nic_recorded("endpoint", if_a[0], "hmem=0", NULL), 1);
    if (!CUDA_BUILD)
        return;
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 18)
    /* Refused before fi_enable: reopened without FI_HMEM. */
    ck_assert_int_eq(nic_recorded("setopt", if_a[0], "name=10 ", "rc=-95"), 1);
    ck_assert_int_eq(nic_recorded("endpoint", if_a[0], "hmem=1", NULL), 1);
    expect_why(why, "FI_OPT_CUDA_API_PERMITTED=false refused");
#else
    ck_assert_int_eq(recorded("setopt ", "name=10 ", NULL), 0);
    expect_why(why, "below 1.18");
#endif
}
END_TEST

START_TEST(gpudirect_false_asks_no_hmem)
{
    unsetenv("FI_HMEM");
    const char *extra[] = {"--gpudirect=false", NULL};
    setenv("MCEFA_FI_HMEM", "grant", 1);
    start(&A, ns_a, "10.232.1.1", if_a[0], true, extra);
    unsetenv("MCEFA_FI_HMEM");
    getinfo_call g[8];
    int n = daemon_getinfo(g, 8);
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        ck_assert_uint_eq(g[i].caps & FI_HMEM, 0);
        ck_assert_str_eq(g[i].hmem, "system");
    }
    char reg[32], why[ERR_TEXT_MAX];
    plan_of_a("gpudirect_false_asks_no_hmem", reg, sizeof(reg), why, sizeof(why));
    ck_assert_str_eq(reg, "staging");
    expect_why(why, "FI_HMEM not asked (gpudirect=false)");
}
END_TEST

START_TEST(registers_on_local_nics_only)
{
    char nics[40], topo[128];
    snprintf(nics, sizeof(nics), "%s,%s", if_a[0], if_a[1]);
    snprintf(topo, sizeof(topo), "--topology=%s/a", topo_dir);
    const char *extra[] = {topo, NULL};
    start(&A, ns_a, "10.232.1.1", nics, true, extra);
    char numa[8];
    nic_field(&A, if_a[1], "numa_node", numa, sizeof(numa));
    ck_assert_str_eq(numa, "1");
    mcefa_client *c = client_ok(A.sock, "numa");
    /* Distinct lengths tell the regions apart in the record. */
    size_t on1 = (3 << 20) + 4096, on0 = (3 << 20) + 8192, anywhere = (3 << 20) + 12288, nowhere = (3 << 20) + 16384;
    register_memfd_on(c, on1, 1);
    register_memfd_on(c, on0, 0);
    register_memfd_on(c, anywhere, -1);
    register_memfd_on(c, nowhere, 5); /* a node without NICs */
    ck_assert_int_eq(registered_on(if_a[1], on1), 1);
    ck_assert_int_eq(registered_on(if_a[0], on1), 0);
    ck_assert_int_eq(registered_on(if_a[0], on0), 1);
    ck_assert_int_eq(registered_on(if_a[1], on0), 0);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(registered_on(if_a[k], anywhere), 1);
        ck_assert_int_eq(registered_on(if_a[k], nowhere), 1);
    }
    mcefa_disconnect(c);
}
END_TEST

START_TEST(register_all_nics_keeps_every_nic)
{
    char nics[40], topo[128];
    snprintf(nics, sizeof(nics), "%s,%s", if_a[0], if_a[1]);
    snprintf(topo, sizeof(topo), "--topology=%s/a", topo_dir);
    const char *extra[] = {topo, "--register_all_nics=true", NULL};
    start(&A, ns_a, "10.232.1.1", nics, true, extra);
    mcefa_client *c = client_ok(A.sock, "all");
    size_t len = (3 << 20) + 20480;
    register_memfd_on(c, len, 1);
    ck_assert_int_eq(registered_on(if_a[0], len), 1);
    ck_assert_int_eq(registered_on(if_a[1], len), 1);
    mcefa_disconnect(c);
}
END_TEST

START_TEST(remote_nics_without_the_region_are_never_used)
{
    char nics_a[40], nics_b[40], topo_a[128], topo_b[128];
    snprintf(nics_a, sizeof(nics_a), "%s,%s", if_a[0], if_a[1]);
    snprintf(nics_b, sizeof(nics_b), "%s,%s", if_b[0], if_b[1]);
    snprintf(topo_a, sizeof(topo_a), "--topology=%s/a", topo_dir);
    snprintf(topo_b, sizeof(topo_b), "--topology=%s/b", topo_dir);
    const char *extra_a[] = {topo_a, NULL}, *extra_b[] = {topo_b, NULL};
    start(&A, ns_a, "10.232.1.1", nics_a, false, extra_a);
    start(&B, ns_b, "10.232.1.2", nics_b, false, extra_b);
    size_t size = 16 << 20;
    net_target t;
    net_target_start_on(&t, B.sock, size, 1); /* only B's second NIC holds it */
    mcefa_client *c = client_ok(A.sock, "initiator");
    /* A's memory on both NICs; B's only behind its second one, which only
     * A's second NIC reaches (a subnet each). */
    uint8_t *mem = register_memfd_on(c, size, -1);
    mcefa_segment seg;
    ck_assert_msg(mcefa_segment_open(c, t.name, &seg) == 0, "open: %s", mcefa_last_error());
    uint64_t a0 = nic_ops(&A, if_a[0]), a1 = nic_ops(&A, if_a[1]);
    pattern(mem, size, 7);
    mcefa_transfer x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (mcefa_transfer){MCEFA_WRITE, mem + ((size_t)i << 20), seg, t.addr + ((uint64_t)i << 20), 1 << 20};
    int rc = mcefa_transfer_sync(c, x, 16, 30000);
    ck_assert_msg(rc == 0, "write: %s", mcefa_last_error());
    ck_assert(net_target_check(&t, 0, size, 7));
    memset(mem, 0, size);
    mcefa_transfer r = {MCEFA_READ, mem, seg, t.addr, size};
    rc = mcefa_transfer_sync(c, &r, 1, 30000);
    ck_assert_msg(rc == 0, "read: %s", mcefa_last_error());
    ck_assert(pattern_ok(mem, size, 7));
    uint64_t d0 = nic_ops(&A, if_a[0]) - a0, d1 = nic_ops(&A, if_a[1]) - a1;
    printf("remote_nics_without_the_region_are_never_used: %s %" PRIu64 " ops, %s %" PRIu64 " ops\n", if_a[0], d0,
           if_a[1], d1);
    ck_assert_uint_eq(d0, 0);
    ck_assert_uint_ge(d1, 17);
    /* Memory only behind A's first NIC cannot reach B's copy at all: the
     * transfer fails saying so, nothing is posted. */
    uint8_t *mem0 = register_memfd_on(c, 1 << 20, 0);
    mcefa_transfer w = {MCEFA_WRITE, mem0, seg, t.addr, 1 << 20};
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(c, 1, &b), 0);
    ck_assert_int_eq(mcefa_batch_submit(b, &w, 1), 0);
    ck_assert_int_eq(mcefa_batch_wait(b, 30000), -ENETUNREACH);
    char why[300];
    ck_assert_int_eq(mcefa_batch_error_text(b, 0, why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, "no local NIC holding the local region") != NULL, "%s", why);
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    ck_assert_uint_eq(nic_ops(&A, if_a[0]) - a0, 0);
    mcefa_disconnect(c);
    net_target_stop(&t);
}
END_TEST

START_TEST(hosts_on_different_fabrics_say_so)
{
    /* Each host on one subnet, not the same one: no NIC pair exists. */
    start(&A, ns_a, "10.232.1.1", if_a[0], false, NULL);
    start(&B, ns_b, "10.232.1.2", if_b[1], false, NULL);
    net_target t;
    net_target_start(&t, B.sock, 1 << 20);
    mcefa_client *c = client_ok(A.sock, "mismatch");
    mcefa_segment seg;
    ck_assert_int_lt(mcefa_segment_open(c, t.name, &seg), 0);
    const char *why = mcefa_last_error();
    printf("hosts_on_different_fabrics_say_so: %s\n", why);
    ck_assert_ptr_nonnull(strstr(why, "uses fabric 10.232.1.0/24"));
    ck_assert_ptr_nonnull(strstr(why, "uses 10.232.2.0/24"));
    ck_assert_ptr_nonnull(strstr(why, "set the fabric setting to one name on both"));
    mcefa_disconnect(c);
    net_target_stop(&t);
}
END_TEST

int main(void)
{
    if (!netns_usable("efa_setup"))
        return 0;
    if (netns_up(&net, "e", "10.232") < 0 || topo_make() < 0) {
        netns_down();
        printf("efa_setup: skipped: cannot create namespaces, veth pairs and the test topology here (see the "
               "errors above)\n0 passed, 0 failed\n");
        return 0;
    }
    Suite *s = suite_create("efa_setup");
    TCase *tc = tcase_create("efa_setup");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, asks_what_efa_needs);
    tcase_add_test(tc, keeps_fi_hmem_set_by_the_user);
    tcase_add_test(tc, registers_on_local_nics_only);
    tcase_add_test(tc, register_all_nics_keeps_every_nic);
    tcase_add_test(tc, remote_nics_without_the_region_are_never_used);
    tcase_add_test(tc, hosts_on_different_fabrics_say_so);
    tcase_add_test(tc, gpu_plan_when_the_provider_grants_hmem);
    tcase_add_test(tc, gpu_plan_when_the_provider_refuses_hmem);
    tcase_add_test(tc, gpu_plan_when_the_domain_refuses_hmem);
    tcase_add_test(tc, gpu_plan_when_cuda_calls_cannot_be_turned_off);
    tcase_add_test(tc, gpudirect_false_asks_no_hmem);
    suite_add_tcase(s, tc);
    return run_suite(s); /* netns_down runs at exit */
}
