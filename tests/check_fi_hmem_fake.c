/* The GPUDirect RDMA emulation of the test tooling, without a daemon: the
 * CUDA driver stand-in's host views (mcefa_standin_host_alias), and
 * tests/fi_interpose.c under MCEFA_FI_HMEM=grant on tcp;ofi_rxm, which
 * gives the provider those views for CUDA registrations and for local
 * buffers of RMA calls. A child of this suite (itself, run again with the
 * interposer preloaded) registers stand-in device memory with iface CUDA,
 * as mcefad does (its hints: efa_fill_hints), and moves bytes between two
 * endpoints on 127.0.0.1: a peer's RMA writes into device memory, device
 * memory as the local buffer of fi_writemsg, fi_write, fi_inject_write,
 * fi_readmsg, fi_read, fi_writev and fi_readv (device and host memory in
 * one iov); every byte is checked through cuMemcpyDtoH or in
 * host memory. A test stand-in checks the tooling mcefad's GPUDirect
 * tests rely on, never a GPU or a NIC. */
#include <check.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suite.h"

#ifdef MCEFA_CUDA
#include <dlfcn.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <time.h>

#include "efa.h"
#include "fi_log.h"
#include "shm/cuda_drv.h"
#include "tests/cuda_standin/standin_test.h"

static char self[PATH_MAX], standin[PATH_MAX], fi_log[64];

static const char *build(void)
{
    const char *b = getenv("MCEFA_BUILD");
    return b && *b ? b : "build";
}

/* ---- The child: what a daemon with GPUDirect would do ------------------- */

/* A failed expectation in the child: says what, exits 1. */
static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void child_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "child: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

#define NEED(cond, ...)                                                                                            \
    do {                                                                                                           \
        if (!(cond))                                                                                               \
            child_fail(__VA_ARGS__);                                                                               \
    } while (0)

static void cu_need(CUresult r, const char *what)
{
    NEED(r == CUDA_SUCCESS, "%s: CUDA error %d", what, (int)r);
}

static struct fid_domain *dom;
static uint64_t mr_mode; /* the domain's, as the caller was told */
static uint64_t next_key = 1;

typedef struct side {
    struct fid_ep *ep;
    struct fid_cq *cq;
    fi_addr_t addr;
} side;
static side A, B;

/* Reads one completion of s, driving the other side's progress meanwhile
 * (tcp;ofi_rxm's data progress is manual). */
static void wait_cq(side *s, side *other, const char *what)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct fi_cq_entry e;
        ssize_t n = fi_cq_read(s->cq, &e, 1);
        if (n == 1)
            return;
        if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry err = {0};
            fi_cq_readerr(s->cq, &err, 0);
            child_fail("%s: completed with error %d (%s)", what, err.err, fi_strerror(err.err));
        }
        NEED(n == -FI_EAGAIN, "%s: fi_cq_read: %zd", what, n);
        fi_cq_read(other->cq, &e, 1);
        clock_gettime(CLOCK_MONOTONIC, &t);
        NEED(t.tv_sec - t0.tv_sec < 20, "%s: no completion in 20 s", what);
    }
}

/* Posts op (retrying while the provider says again, as rxm does while it
 * connects), waits for its completion; the post's rc. */
#define POST(what, call)                                                                                           \
    do {                                                                                                           \
        ssize_t rc_;                                                                                               \
        struct timespec t0_, t_;                                                                                   \
        clock_gettime(CLOCK_MONOTONIC, &t0_);                                                                      \
        while ((rc_ = (call)) == -FI_EAGAIN) {                                                                     \
            struct fi_cq_entry e_;                                                                                 \
            fi_cq_read(A.cq, &e_, 1);                                                                              \
            fi_cq_read(B.cq, &e_, 1);                                                                              \
            clock_gettime(CLOCK_MONOTONIC, &t_);                                                                   \
            NEED(t_.tv_sec - t0_.tv_sec < 20, "%s: -FI_EAGAIN for 20 s", what);                                    \
        }                                                                                                          \
        NEED(rc_ == 0, "%s: rc %zd (%s)", what, rc_, fi_strerror((int)-rc_));                                      \
        wait_cq(&A, &B, what);                                                                                     \
    } while (0)

typedef struct reg {
    struct fid_mr *mr;
    void *desc;
    uint64_t key, base; /* base: the remote address of its first byte */
} reg;

/* fi_mr_regattr as mcefad's nic_hmem_mr_args_fill builds it; the MR
 * bound to ep where the domain wants that. Returns the rc. */
static int reg_mem(side *s, void *p, size_t len, bool cuda, reg *out)
{
    struct iovec iov = {.iov_base = p, .iov_len = len};
    struct fi_mr_attr a = {.mr_iov = &iov,
                           .iov_count = 1,
                           .access = FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE,
                           .requested_key = next_key++,
                           .iface = cuda ? FI_HMEM_CUDA : FI_HMEM_SYSTEM};
    if (cuda)
        a.device.cuda = 0;
    int rc = fi_mr_regattr(dom, &a, 0, &out->mr);
    if (rc)
        return rc;
    if (mr_mode & FI_MR_ENDPOINT) {
        NEED(fi_mr_bind(out->mr, &s->ep->fid, 0) == 0, "fi_mr_bind");
        NEED(fi_mr_enable(out->mr) == 0, "fi_mr_enable");
    }
    out->desc = fi_mr_desc(out->mr);
    out->key = fi_mr_key(out->mr);
    out->base = (mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)p : 0;
    return 0;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 9));
}

/* got holds bytes [from, from + n) of pattern seed. */
static void same(const unsigned char *got, unsigned seed, size_t from, size_t n, const char *what)
{
    unsigned char *want = malloc(from + n);
    NEED(want, "malloc");
    fill(want, from + n, seed);
    for (size_t i = 0; i < n; i++)
        NEED(got[i] == want[from + i], "%s: byte %zu is 0x%02x, not 0x%02x", what, i, got[i], want[from + i]);
    free(want);
}

static void device_same(CUdeviceptr d, unsigned seed, size_t n, const char *what)
{
    unsigned char *got = malloc(n);
    NEED(got, "malloc");
    cu_need(cuda_drv.cuMemcpyDtoH(got, d, n), "cuMemcpyDtoH");
    same(got, seed, 0, n, what);
    free(got);
}

static void open_side(struct fi_info *fi, struct fid_av *av, side *s)
{
    struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_CONTEXT};
    NEED(fi_endpoint(dom, fi, &s->ep, NULL) == 0, "fi_endpoint");
    NEED(fi_cq_open(dom, &cqa, &s->cq, NULL) == 0, "fi_cq_open");
    NEED(fi_ep_bind(s->ep, &s->cq->fid, FI_TRANSMIT | FI_RECV) == 0, "fi_ep_bind cq");
    NEED(fi_ep_bind(s->ep, &av->fid, 0) == 0, "fi_ep_bind av");
    NEED(fi_enable(s->ep) == 0, "fi_enable");
}

static void insert(struct fid_av *av, side *s)
{
    char name[256];
    size_t len = sizeof(name);
    NEED(fi_getname(&s->ep->fid, name, &len) == 0, "fi_getname");
    NEED(fi_av_insert(av, name, 1, &s->addr, 0, NULL) == 1, "fi_av_insert");
}

#define LEN ((size_t)256 << 10)
#define OFF ((size_t)4096 + 40) /* not page aligned, not at the start */
#define PIECE ((size_t)64 << 10)

static void transfers(void);

/* scenario: "transfers" (the whole path), "no_standin" (the stand-in never
 * loaded), "not_device" (host memory registered as CUDA). */
static int child(const char *scenario)
{
    bool load = strcmp(scenario, "no_standin") != 0;
    char why[512];
    if (load) {
        NEED(cuda_drv_load(standin, why, sizeof(why)) == 0, "CUDA driver stand-in: %s", why);
        CUdevice dev;
        CUcontext ctx;
        cu_need(cuda_drv.cuDeviceGet(&dev, 0), "cuDeviceGet");
        cu_need(cuda_drv.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
        cu_need(cuda_drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
    }
    struct fi_info *hints = fi_allocinfo(), *fi = NULL;
    NEED(hints && efa_fill_hints(hints, "tcp;ofi_rxm", true, true) == 0, "hints");
    int rc = fi_getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), "127.0.0.1", NULL, FI_SOURCE, hints, &fi);
    NEED(rc == 0 && fi, "fi_getinfo tcp;ofi_rxm with FI_HMEM: %d (is the interposer preloaded?)", rc);
    NEED(fi->caps & FI_HMEM, "no FI_HMEM granted");
    mr_mode = (unsigned)fi->domain_attr->mr_mode;
    struct fid_fabric *fab;
    struct fid_av *av;
    struct fi_av_attr ava = {.type = FI_AV_TABLE};
    NEED(fi_fabric(fi->fabric_attr, &fab, NULL) == 0, "fi_fabric");
    NEED(fi_domain(fab, fi, &dom, NULL) == 0, "fi_domain");
    NEED(fi_av_open(dom, &ava, &av, NULL) == 0, "fi_av_open");
    open_side(fi, av, &A);
    open_side(fi, av, &B);
    insert(av, &A);
    insert(av, &B);

    static char host[4096];
    reg r;
    if (!strcmp(scenario, "no_standin")) {
        rc = reg_mem(&A, host, sizeof(host), true, &r);
        NEED(rc == -FI_EOPNOTSUPP, "CUDA registration without the stand-in: rc %d, not -FI_EOPNOTSUPP", rc);
    } else if (!strcmp(scenario, "not_device")) {
        rc = reg_mem(&A, host, sizeof(host), true, &r);
        NEED(rc == -FI_EINVAL, "host memory registered as CUDA: rc %d, not -FI_EINVAL", rc);
    } else {
        transfers();
    }
    /* Everything closed: a sanitized child checks for leaks at exit. */
    fi_close(&A.ep->fid);
    fi_close(&B.ep->fid);
    fi_close(&A.cq->fid);
    fi_close(&B.cq->fid);
    fi_close(&av->fid);
    fi_close(&dom->fid);
    fi_close(&fab->fid);
    fi_freeinfo(fi);
    fi_freeinfo(hints);
    return 0;
}

/* A peer's RMA into device memory, device memory as the local buffer of
 * every RMA call mcefad could make, each byte checked; then the ranges of
 * closed or overrun registrations refused. */
static void transfers(void)
{
    int rc;

    CUdeviceptr dA, dB;
    cu_need(cuda_drv.cuMemAlloc(&dA, LEN), "cuMemAlloc A");
    cu_need(cuda_drv.cuMemAlloc(&dB, LEN), "cuMemAlloc B");
    cu_need(cuda_drv.cuMemsetD8(dA, 0, LEN), "cuMemsetD8");
    cu_need(cuda_drv.cuMemsetD8(dB, 0, LEN), "cuMemsetD8");
    reg gA, gB, hA, hB;
    rc = reg_mem(&B, (void *)(uintptr_t)dB, LEN, true, &gB);
    if (mr_mode & FI_MR_VIRT_ADDR) {
        /* Peers would address it by device VA: the emulation refuses. */
        NEED(rc == -FI_EOPNOTSUPP, "CUDA registration with FI_MR_VIRT_ADDR: rc %d", rc);
        printf("child: the domain has FI_MR_VIRT_ADDR: CUDA registrations refused, as documented\n");
        cu_need(cuda_drv.cuMemFree(dA), "cuMemFree");
        cu_need(cuda_drv.cuMemFree(dB), "cuMemFree");
        return;
    }
    NEED(rc == 0, "CUDA registration of B's device memory: rc %d (%s)", rc, fi_strerror(-rc));
    NEED(reg_mem(&A, (void *)(uintptr_t)dA, LEN, true, &gA) == 0, "CUDA registration of A's device memory");
    unsigned char *host_a = aligned_alloc(4096, LEN), *host_b = aligned_alloc(4096, LEN);
    NEED(host_a && host_b, "aligned_alloc");
    memset(host_b, 0, LEN);
    NEED(reg_mem(&A, host_a, LEN, false, &hA) == 0, "host registration A");
    NEED(reg_mem(&B, host_b, LEN, false, &hB) == 0, "host registration B");

    /* 1. A peer writes host memory into B's device memory. */
    fill(host_a, LEN, 1);
    struct fi_context2 c;
    struct iovec iov = {.iov_base = host_a, .iov_len = PIECE};
    struct fi_rma_iov riov = {.addr = gB.base + OFF, .len = PIECE, .key = gB.key};
    struct fi_msg_rma m = {.msg_iov = &iov, .desc = &hA.desc, .iov_count = 1, .addr = B.addr,
                           .rma_iov = &riov, .rma_iov_count = 1, .context = &c};
    POST("writemsg host -> remote device", fi_writemsg(A.ep, &m, FI_COMPLETION | FI_DELIVERY_COMPLETE));
    device_same(dB + OFF, 1, PIECE, "device memory a peer wrote");

    /* 2. Device memory as the local buffer of writes into host memory. */
    unsigned char *buf = malloc(LEN);
    NEED(buf, "malloc");
    fill(buf, LEN, 2);
    cu_need(cuda_drv.cuMemcpyHtoD(dA, buf, LEN), "cuMemcpyHtoD");
    iov = (struct iovec){.iov_base = (void *)(uintptr_t)(dA + OFF), .iov_len = PIECE};
    riov = (struct fi_rma_iov){.addr = hB.base + OFF, .len = PIECE, .key = hB.key};
    m.desc = &gA.desc;
    POST("writemsg local device -> remote host", fi_writemsg(A.ep, &m, FI_COMPLETION | FI_DELIVERY_COMPLETE));
    same(host_b + OFF, 2, OFF, PIECE, "host memory written from device memory");
    memset(host_b, 0, LEN);
    POST("write local device -> remote host", fi_write(A.ep, (void *)(uintptr_t)dA, PIECE, gA.desc, B.addr,
                                                      hB.base, hB.key, &c));
    same(host_b, 2, 0, PIECE, "host memory fi_write wrote from device memory");
    /* inject: no completion of its own with FI_COMPLETION unset; a read
     * after it on the same connection sees it (rxm keeps order). */
    ssize_t irc;
    while ((irc = fi_inject_write(A.ep, (void *)(uintptr_t)(dA + 64), 64, B.addr, hB.base + 2 * PIECE,
                                  hB.key)) == -FI_EAGAIN)
        fi_cq_read(B.cq, &(struct fi_cq_entry){0}, 1);
    NEED(irc == 0, "fi_inject_write from device memory: %zd", irc);

    /* 3. Device memory as the local buffer of reads: from B's device
     * memory (what step 1 wrote) and from B's host memory. */
    iov = (struct iovec){.iov_base = (void *)(uintptr_t)(dA + 2 * PIECE), .iov_len = PIECE};
    riov = (struct fi_rma_iov){.addr = gB.base + OFF, .len = PIECE, .key = gB.key};
    POST("readmsg remote device -> local device", fi_readmsg(A.ep, &m, FI_COMPLETION));
    device_same(dA + 2 * PIECE, 1, PIECE, "device memory read from remote device memory");
    POST("read remote host -> local device", fi_read(A.ep, (void *)(uintptr_t)(dA + 3 * PIECE), 64, gA.desc,
                                                     B.addr, hB.base + 2 * PIECE, hB.key, &c));
    unsigned char got[64], want[128];
    cu_need(cuda_drv.cuMemcpyDtoH(got, dA + 3 * PIECE, 64), "cuMemcpyDtoH");
    fill(want, sizeof(want), 2);
    NEED(!memcmp(got, want + 64, 64), "what fi_inject_write sent from device memory and fi_read read back differ");

    /* 4. An iov of device and host memory, each entry moved or not on
     * its own: writev of [device, host], readv back into [host, device]. */
    enum { V = 1000 };
    fill(host_a, LEN, 3);
    void *descs[2] = {gA.desc, hA.desc};
    struct iovec two[2] = {{.iov_base = (void *)(uintptr_t)dA, .iov_len = V}, {.iov_base = host_a + V, .iov_len = V}};
    memset(host_b, 0, LEN);
    POST("writev [device, host] -> remote host",
         fi_writev(A.ep, two, descs, 2, B.addr, hB.base + 3 * PIECE, hB.key, &c));
    same(host_b + 3 * PIECE, 2, 0, V, "the device part of a writev");
    same(host_b + 3 * PIECE + V, 3, V, V, "the host part of a writev");
    void *back[2] = {hA.desc, gA.desc};
    struct iovec into[2] = {{.iov_base = host_a, .iov_len = V},
                            {.iov_base = (void *)(uintptr_t)(dA + 3 * PIECE + 4096), .iov_len = V}};
    memset(host_a, 0, V);
    POST("readv remote host -> [host, device]",
         fi_readv(A.ep, into, back, 2, B.addr, hB.base + 3 * PIECE, hB.key, &c));
    same(host_a, 2, 0, V, "the host part of a readv");
    cu_need(cuda_drv.cuMemcpyDtoH(buf, dA + 3 * PIECE + 4096, V), "cuMemcpyDtoH");
    same(buf, 3, V, V, "the device part of a readv");

    /* 5. Closed, the registration no longer covers the range: RMA from it
     * fails cleanly instead of reaching PROT_NONE memory. */
    NEED(fi_close(&gA.mr->fid) == 0, "fi_close of a CUDA MR");
    ssize_t wrc = fi_write(A.ep, (void *)(uintptr_t)dA, 64, hA.desc, B.addr, hB.base, hB.key, &c);
    NEED(wrc == -FI_EINVAL, "fi_write from device memory no MR covers: %zd, not -FI_EINVAL", wrc);
    /* A range running past its registration, likewise. */
    wrc = fi_write(A.ep, (void *)(uintptr_t)(dB + LEN - 32), 64, gB.desc, B.addr, hB.base, hB.key, &c);
    NEED(wrc == -FI_EINVAL, "fi_write running past a CUDA MR: %zd, not -FI_EINVAL", wrc);

    NEED(fi_close(&gB.mr->fid) == 0, "fi_close of a CUDA MR");
    fi_close(&hA.mr->fid);
    fi_close(&hB.mr->fid);
    cu_need(cuda_drv.cuMemFree(dA), "cuMemFree");
    cu_need(cuda_drv.cuMemFree(dB), "cuMemFree");
    free(buf);
    free(host_a);
    free(host_b);
}

/* ---- The suite ------------------------------------------------------------ */

/* Runs the child for scenario with the interposer preloaded in mode
 * (MCEFA_FI_HMEM); its exit status. */
static int run_child(const char *scenario, const char *mode)
{
    char lib[PATH_MAX + 64], abs[PATH_MAX], asan[600];
    snprintf(lib, sizeof(lib), "%s/tests/libfi-interpose.so", build());
    ck_assert_msg(realpath(lib, abs) != NULL, "%s is missing (build with make)", lib);
    snprintf(fi_log, sizeof(fi_log), "/tmp/mcefa-fi-hmem-XXXXXX");
    int fd = mkstemp(fi_log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", old ? old : "", old && *old ? ":" : "");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("LD_PRELOAD", abs, 1);
        setenv("ASAN_OPTIONS", asan, 1); /* a sanitized suite: the interposer loads first */
        setenv("MCEFA_FI_LOG", fi_log, 1);
        setenv("MCEFA_FI_HMEM", mode, 1);
        setenv("MCEFA_STANDIN_GPUS", "1", 1);
        execl(self, self, "--child", scenario, (char *)NULL);
        _exit(127);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Recorded lines holding every word (NULL-ended). */
#define recorded(...) fi_log_count(fi_log, __VA_ARGS__)

static void show_log(void)
{
    FILE *f = fopen(fi_log, "r");
    char line[600];
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "hmem=") && !strstr(line, "endpoint ") && !strstr(line, "domain "))
            printf("  %s", line);
    if (f)
        fclose(f);
}

START_TEST(stand_in_host_alias)
{
    char why[512];
    ck_assert_msg(cuda_drv_load(standin, why, sizeof(why)) == 0, "%s", why);
    void *h = dlopen(standin, RTLD_NOW | RTLD_NOLOAD);
    ck_assert_ptr_nonnull(h);
    mcefa_standin_host_alias_fn fn;
    *(void **)&fn = dlsym(h, MCEFA_STANDIN_HOST_ALIAS);
    ck_assert_ptr_nonnull(fn);
    CUdevice dev;
    CUcontext ctx;
    ck_assert_int_eq(cuda_drv.cuDeviceGet(&dev, 0), CUDA_SUCCESS);
    ck_assert_int_eq(cuda_drv.cuDevicePrimaryCtxRetain(&ctx, dev), CUDA_SUCCESS);
    ck_assert_int_eq(cuda_drv.cuCtxSetCurrent(ctx), CUDA_SUCCESS);
    CUdeviceptr d;
    ck_assert_int_eq(cuda_drv.cuMemAlloc(&d, 10000), CUDA_SUCCESS);
    ck_assert_int_eq(cuda_drv.cuMemsetD8(d + 100, 0x5a, 50), CUDA_SUCCESS);
    void *alias = NULL;
    ck_assert_int_eq(fn(d + 100, 50, &alias), 0);
    ck_assert_ptr_ne(alias, (void *)(uintptr_t)(d + 100)); /* a host view, not the PROT_NONE VA */
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(((unsigned char *)alias)[i], 0x5a);
    ((unsigned char *)alias)[0] = 0xa5; /* the CPU writes, the "device" sees it */
    unsigned char b;
    ck_assert_int_eq(cuda_drv.cuMemcpyDtoH(&b, d + 100, 1), CUDA_SUCCESS);
    ck_assert_int_eq(b, 0xa5);
    ck_assert_int_eq(fn(d, 10000, &alias), 0);
    ck_assert_int_eq(fn(d + 9999, 2, &alias), CUDA_ERROR_INVALID_VALUE); /* runs past the mapping */
    ck_assert_int_eq(fn(d, 0, &alias), CUDA_ERROR_INVALID_VALUE);
    ck_assert_int_eq(fn((CUdeviceptr)(uintptr_t)why, 1, &alias), CUDA_ERROR_INVALID_VALUE); /* host memory */
    ck_assert_int_eq(cuda_drv.cuMemFree(d), CUDA_SUCCESS);
    ck_assert_int_eq(fn(d, 1, &alias), CUDA_ERROR_INVALID_VALUE); /* freed */
}
END_TEST

START_TEST(gpudirect_rdma_emulated_on_tcp)
{
    int st = run_child("transfers", "grant");
    show_log();
    ck_assert_msg(st == 0, "the child failed (exit %d): its stderr says why", st);
    /* Both CUDA registrations reached the provider as host views, and
     * were removed at their close. */
    ck_assert_int_eq(recorded("mr_reg prov=tcp;ofi_rxm ", "iface=1 ", "hmem=alias rc=0", NULL), 2);
    ck_assert_int_eq(recorded("mr_close prov=tcp;ofi_rxm ", "hmem=alias rc=0", NULL), 2);
    /* The core provider (tcp) under rxm saw host memory only. */
    ck_assert_int_eq(recorded("mr_reg prov=tcp ", "iface=1 ", NULL), 0);
    /* Every call with a device buffer was moved, and the two refused. */
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=writemsg hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=write hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=inject hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=readmsg hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=read hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=writev hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=readv hmem=alias rc=0", NULL), 1);
    ck_assert_int_eq(recorded("rma prov=tcp;ofi_rxm ", "op=write hmem=unregistered rc=-22", NULL), 2);
    unlink(fi_log);
}
END_TEST

/* The child's only CUDA registration (scenario) is refused, saying why. */
static void expect_refused(const char *scenario, const char *why)
{
    int st = run_child(scenario, "grant");
    show_log();
    ck_assert_msg(st == 0, "the child failed (exit %d)", st);
    ck_assert_int_eq(recorded("mr_reg prov=tcp;ofi_rxm ", "iface=1 ", why, NULL), 1);
    unlink(fi_log);
}

START_TEST(cuda_registration_without_the_stand_in_is_refused)
{
    expect_refused("no_standin", "hmem=refused why=no_standin rc=-95");
}
END_TEST

START_TEST(host_memory_registered_as_cuda_is_refused)
{
    expect_refused("not_device", "hmem=refused why=not_device cuda_rc=1 rc=-22");
}
END_TEST

int main(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return 1;
    self[n] = 0;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tests/libcuda-standin.so", build());
    if (!realpath(path, standin)) {
        printf("fi_hmem_fake: %s is missing (build with make)\n", path);
        return 1;
    }
    if (argc == 3 && !strcmp(argv[1], "--child"))
        return child(argv[2]);
    Suite *s = suite_create("fi_hmem_fake");
    TCase *tc = tcase_create("fi_hmem_fake");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, stand_in_host_alias);
    tcase_add_test(tc, gpudirect_rdma_emulated_on_tcp);
    tcase_add_test(tc, cuda_registration_without_the_stand_in_is_refused);
    tcase_add_test(tc, host_memory_registered_as_cuda_is_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

#else /* no CUDA headers: no stand-in to emulate GPU memory with */

int main(void)
{
    printf("fi_hmem_fake: skipped: built without CUDA headers (no CUDA driver stand-in)\n"
           "100%%: Checks: 0, Failures: 0, Errors: 0\n");
    return 0;
}

#endif
