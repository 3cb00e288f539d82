/* mcefa-bench: throughput benchmark for mcefad, with the flags of
 * Mooncake's transfer_engine_bench where they mean the same thing.
 *
 *   target:    allocates and registers --buffer_size bytes, exports a
 *              segment and prints its name, then serves until SIGINT/SIGTERM.
 *   initiator: opens --segment_id and moves --block_size blocks in batches of
 *              --batch_size from --threads threads for --duration seconds.
 *   memcpy:    single-thread memcpy of the same blocks between two local
 *              buffers: the yardstick for same-host transfers.
 *   gpu_local: same-host GPU to GPU: cuMemcpyDtoD between two buffers of
 *              one GPU, then the daemon writing from this process's GPU
 *              buffer into a forked target's, printed side by side.
 * --use_vram puts the buffers in GPU memory (--gpu_id; -1 spreads the
 * initiator's threads over every GPU).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sys/wait.h>

#include "bench_gpu.h"
#include "mcefa.h"

static struct {
    const char *mode;
    const char *operation;
    const char *segment_id;
    const char *segment_name;
    const char *socket;
    const char *report_unit;
    uint64_t block_size;
    uint64_t batch_size;
    uint64_t threads;
    /* --threads=1,2,4: the initiator runs once per count (thread scaling). */
    uint64_t thread_list[8];
    unsigned nthread_list;
    uint64_t buffer_size;
    double duration;
    bool check;
    bool json;
    bool init_mem;
    bool plain_memory;
    bool progress;
    bool warmup;
    bool use_vram;
    int gpu_id;
    int numa_node;
} opt = {
    .mode = "initiator",
    .operation = "read",
    .segment_id = "",
    .segment_name = "",
    .socket = NULL,
    .report_unit = "GB",
    .block_size = 65536,
    .batch_size = 128,
    .threads = 12,
    .buffer_size = 1ull << 30,
    .duration = 10,
    .init_mem = true,
    .progress = true,
    .numa_node = -1,
};

static void usage(FILE *o)
{
    fprintf(o,
            "usage: mcefa-bench --mode=target|initiator|memcpy|probe|gpu_local [flags]\n"
            "  --operation=read|write   (read)      transfer direction (initiator)\n"
            "  --segment_id=NAME                    segment to open (initiator)\n"
            "  --segment_name=NAME      (auto)      name to export (target)\n"
            "  --block_size=N           (65536)     bytes per transfer\n"
            "  --batch_size=N           (128)       transfers per batch\n"
            "  --threads=N[,N...]       (12)        submitting threads (initiator); a list runs once per count\n"
            "  --buffer_size=N          (1 GiB)     bytes allocated and registered\n"
            "  --duration=S             (10)        seconds to run (initiator, memcpy)\n"
            "  --report_unit=U          (GB)        GB|GiB|Gb|MB|MiB|Mb|KB|KiB|Kb\n"
            "  --check[=true]           (false)     verify the data moved\n"
            "  --json[=true]            (false)     print the result as one JSON object\n"
            "  --progress=BOOL          (true)      live progress line on stderr\n"
            "  --init_mem=BOOL          (true)      fill buffers before the run\n"
            "  --plain_memory=BOOL      (false)     host buffers from mmap, not mcefa_alloc (the daemon copies them)\n"
            "  --numa_node=N            (-1)        bind buffers to a NUMA node\n"
            "  --warmup=BOOL            (false)     probe: warm every NIC pair up before submit #0\n"
            "  --use_vram=BOOL          (false)     buffers in GPU memory (cuMemAlloc)\n"
            "  --gpu_id=N               (0)         GPU of the buffers; -1: initiator threads use every GPU\n"
            "  --socket=PATH            ($MCEFAD_SOCKET or " MCEFA_DEFAULT_SOCKET ")\n"
            "  --metadata_server=P2PHANDSHAKE, --protocol=...: accepted for Mooncake compatibility\n");
}

static int parse_bool(const char *v, bool *out)
{
    if (!v || !strcmp(v, "true") || !strcmp(v, "1")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "false") || !strcmp(v, "0")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int parse_u64(const char *v, uint64_t *out)
{
    char *end;
    if (!v || v[0] == '-')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno || end == v || *end)
        return -1;
    *out = x;
    return 0;
}

/* N or N,N,... (at most 8 counts, each 1..1024). */
static int parse_thread_list(const char *v)
{
    char buf[128];
    if (!v || strlen(v) >= sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%s", v);
    opt.nthread_list = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint64_t n;
        if (opt.nthread_list == 8 || parse_u64(tok, &n) < 0 || n == 0 || n > 1024)
            return -1;
        opt.thread_list[opt.nthread_list++] = n;
    }
    if (!opt.nthread_list)
        return -1;
    opt.threads = opt.thread_list[0];
    return 0;
}

static void die_flag(const char *a)
{
    fprintf(stderr, "mcefa-bench: bad flag or value '%s' (see --help)\n", a);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2))
            die_flag(a);
        char *name = a + 2, *eq = strchr(name, '=');
        const char *v = eq ? eq + 1 : NULL;
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
#define IS(s) (n == strlen(s) && !strncmp(name, s, n))
        bool ok = true;
        if (IS("mode") && v)
            opt.mode = v;
        else if (IS("operation") && v)
            opt.operation = v;
        else if (IS("segment_id") && v)
            opt.segment_id = v;
        else if (IS("segment_name") && v)
            opt.segment_name = v;
        else if (IS("socket") && v)
            opt.socket = v;
        else if (IS("report_unit") && v)
            opt.report_unit = v;
        else if (IS("block_size"))
            ok = parse_u64(v, &opt.block_size) == 0 && opt.block_size > 0;
        else if (IS("batch_size"))
            ok = parse_u64(v, &opt.batch_size) == 0 && opt.batch_size > 0;
        else if (IS("threads"))
            ok = parse_thread_list(v) == 0;
        else if (IS("buffer_size"))
            ok = parse_u64(v, &opt.buffer_size) == 0 && opt.buffer_size > 0;
        else if (IS("duration")) {
            char *end;
            opt.duration = v ? strtod(v, &end) : -1;
            ok = v && !*end && opt.duration > 0;
        } else if (IS("numa_node")) {
            char *end;
            opt.numa_node = v ? (int)strtol(v, &end, 10) : -2;
            ok = v && !*end && opt.numa_node >= -1;
        } else if (IS("check"))
            ok = parse_bool(v, &opt.check) == 0;
        else if (IS("json"))
            ok = parse_bool(v, &opt.json) == 0;
        else if (IS("init_mem"))
            ok = parse_bool(v, &opt.init_mem) == 0;
        else if (IS("plain_memory"))
            ok = parse_bool(v, &opt.plain_memory) == 0;
        else if (IS("progress"))
            ok = parse_bool(v, &opt.progress) == 0;
        else if (IS("warmup"))
            ok = parse_bool(v, &opt.warmup) == 0;
        else if (IS("use_vram"))
            ok = parse_bool(v, &opt.use_vram) == 0;
        else if (IS("gpu_id")) {
            char *end;
            opt.gpu_id = v ? (int)strtol(v, &end, 10) : -2;
            ok = v && !*end && opt.gpu_id >= -1;
        } else if (IS("metadata_server") || IS("protocol") || IS("auto_discovery")) {
            /* Mooncake flags: the daemon handshakes peers itself. */
        } else
            ok = false;
#undef IS
        if (!ok)
            die_flag(a);
    }
    if (strcmp(opt.operation, "read") && strcmp(opt.operation, "write")) {
        fprintf(stderr, "mcefa-bench: --operation must be read or write, not '%s'\n", opt.operation);
        exit(2);
    }
}

static double unit_scale(const char *u, const char **label)
{
    static const struct {
        const char *name;
        double bytes;
    } units[] = {{"GB", 1e9},       {"GiB", 1073741824.0}, {"Gb", 1e9 / 8}, {"MB", 1e6}, {"MiB", 1048576.0},
                 {"Mb", 1e6 / 8},   {"KB", 1e3},           {"KiB", 1024.0}, {"Kb", 1e3 / 8}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(u, units[i].name)) {
            *label = units[i].name;
            return units[i].bytes;
        }
    fprintf(stderr, "mcefa-bench: unknown --report_unit '%s'\n", u);
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Deterministic content: both sides can compute what a byte should be. */
static void fill_pattern(void *buf, uint64_t base_off, size_t len, uint64_t salt)
{
    uint64_t *w = buf;
    for (size_t i = 0; i < len / 8; i++)
        w[i] = ((base_off / 8 + i) * 0x9E3779B97F4A7C15ull) ^ salt;
}

static int check_pattern(const void *buf, uint64_t base_off, size_t len, uint64_t salt)
{
    const uint64_t *w = buf;
    for (size_t i = 0; i < len / 8; i++)
        if (w[i] != (((base_off / 8 + i) * 0x9E3779B97F4A7C15ull) ^ salt))
            return -1;
    return 0;
}


static volatile sig_atomic_t stop_flag;
static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "mcefa-bench: %s failed: %s (%s)\n", what, mcefa_last_error(), mcefa_strerror(rc));
    exit(1);
}

/* Allocates, zero-fills (--init_mem) and registers a --buffer_size buffer,
 * in GPU memory of gpu when gpu >= 0; exits with the reason on failure. */
static void add_buffer(mcefa_client *c, int gpu, void **buf)
{
    int rc;
    if (gpu >= 0) {
        char why[512];
        if ((rc = bench_gpu_alloc(gpu, opt.buffer_size, buf, why, sizeof(why))) < 0) {
            fprintf(stderr, "mcefa-bench: GPU buffer: %s\n", why);
            exit(1);
        }
        if (opt.init_mem && bench_gpu_zero(gpu, *buf, opt.buffer_size) < 0)
            fail("GPU memset", -EIO);
    } else if (opt.plain_memory) {
        /* Ordinary process memory, as numpy or torch CPU tensors are. */
        *buf = mmap(NULL, opt.buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (*buf == MAP_FAILED)
            fail("mmap", -errno);
        memset(*buf, 0, opt.buffer_size); /* plain memory must be there to register */
    } else {
        if ((rc = mcefa_alloc(c, opt.buffer_size, opt.numa_node, 0, buf)) < 0)
            fail("alloc", rc);
        if (opt.init_mem)
            memset(*buf, 0, opt.buffer_size);
    }
    if ((rc = mcefa_register(c, *buf, opt.buffer_size)) < 0)
        fail("register", rc);
}

static void drop_buffer(mcefa_client *c, int gpu, void *buf)
{
    mcefa_unregister(c, buf);
    if (gpu >= 0)
        bench_gpu_free(gpu, buf);
    else if (opt.plain_memory)
        munmap(buf, opt.buffer_size);
    else
        mcefa_free(c, buf);
}

static mcefa_client *connect_or_die(const char *name)
{
    mcefa_client *c;
    int rc;
    if ((rc = mcefa_connect(opt.socket, name, &c)) < 0)
        fail("connect", rc);
    return c;
}

/* The GPU of the target's (or a single) buffer: -1 for host memory. */
static int one_gpu(void)
{
    return opt.use_vram ? (opt.gpu_id < 0 ? 0 : opt.gpu_id) : -1;
}

static int run_target(void)
{
    void *buf;
    int rc, gpu = one_gpu();
    mcefa_client *c = connect_or_die("mcefa-bench-target");
    add_buffer(c, gpu, &buf);
    char name[300];
    if ((rc = mcefa_segment_export(c, opt.segment_name, name, sizeof(name))) < 0)
        fail("export segment", rc);
    printf("segment: %s\n", name);
    printf("buffer: 0x%" PRIxPTR " %" PRIu64 " bytes\n", (uintptr_t)buf, opt.buffer_size);
    fflush(stdout);
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    while (!stop_flag)
        pause();
    drop_buffer(c, gpu, buf);
    mcefa_disconnect(c);
    return 0;
}

typedef struct thread_ctx {
    pthread_t tid;
    unsigned idx;
    mcefa_client *c;
    mcefa_segment seg;
    char *local;
    int gpu; /* of local; -1 host memory */
    uint64_t remote;
    uint64_t span; /* bytes of the buffers this thread uses */
    uint64_t off;  /* where its span starts */
    _Atomic uint64_t bytes;
    uint64_t batches;
    double *lat; /* batch latencies, seconds */
    size_t nlat, caplat;
    int err;
    int bad_blocks;
} thread_ctx;

static _Atomic int running;

static int do_batch(thread_ctx *t, mcefa_batch *b, int opcode, uint64_t *cursor)
{
    uint64_t bs = opt.block_size;
    mcefa_transfer *x = calloc(opt.batch_size, sizeof(*x));
    for (uint64_t i = 0; i < opt.batch_size; i++) {
        if (*cursor + bs > t->span)
            *cursor = 0;
        x[i].opcode = opcode;
        x[i].local = t->local + t->off + *cursor;
        x[i].segment = t->seg;
        x[i].remote = t->remote + t->off + *cursor;
        x[i].length = bs;
        *cursor += bs;
    }
    int rc = mcefa_batch_submit(b, x, opt.batch_size);
    free(x);
    if (rc >= 0)
        rc = mcefa_batch_wait(b, 60000);
    return rc;
}

static void *initiator_thread(void *arg)
{
    thread_ctx *t = arg;
    int opcode = strcmp(opt.operation, "write") == 0 ? MCEFA_WRITE : MCEFA_READ;
    uint64_t cursor = 0;
    while (atomic_load(&running)) {
        mcefa_batch *b;
        double t0 = now_s();
        int rc = mcefa_batch_alloc(t->c, (uint32_t)opt.batch_size, &b);
        if (rc < 0) {
            t->err = rc;
            fprintf(stderr, "mcefa-bench: thread %u: batch alloc: %s\n", t->idx, mcefa_last_error());
            break;
        }
        rc = do_batch(t, b, opcode, &cursor);
        if (rc < 0) {
            t->err = rc;
            fprintf(stderr, "mcefa-bench: thread %u: batch failed: %s\n", t->idx, mcefa_last_error());
            mcefa_batch_free(b);
            break;
        }
        mcefa_batch_free(b);
        double dt = now_s() - t0;
        if (t->nlat == t->caplat) {
            t->caplat = t->caplat ? t->caplat * 2 : 1024;
            t->lat = realloc(t->lat, t->caplat * sizeof(double));
        }
        t->lat[t->nlat++] = dt;
        t->batches++;
        atomic_fetch_add(&t->bytes, opt.batch_size * opt.block_size);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return v[i ? i - 1 : 0];
}

/* --check. Writes: after the timed run every block is read back and
 * compared with what was written. Reads: before the run the target's blocks
 * are filled (by a write) with content of a fresh salt, so the timed reads
 * must bring exactly that; a no-op in either direction fails the check. */
static uint64_t check_salt;

/* --check on a thread's local buffer, in host or GPU memory. */
static void local_fill(thread_ctx *x, uint64_t len)
{
    if (x->gpu < 0) {
        fill_pattern(x->local + x->off, x->off, len, check_salt);
        return;
    }
    char *h = malloc(len);
    if (!h)
        fail("check buffer", -ENOMEM);
    fill_pattern(h, x->off, len, check_salt);
    if (bench_gpu_upload(x->gpu, x->local + x->off, h, len) < 0)
        fail("GPU upload", -EIO);
    free(h);
}

static void local_zero(thread_ctx *x, uint64_t len)
{
    if (x->gpu < 0)
        memset(x->local + x->off, 0, len);
    else if (bench_gpu_zero(x->gpu, x->local + x->off, len) < 0)
        fail("GPU memset", -EIO);
}

static int local_check(thread_ctx *x, uint64_t len)
{
    if (x->gpu < 0)
        return check_pattern(x->local + x->off, x->off, len, check_salt);
    char *h = malloc(len);
    if (!h || bench_gpu_download(x->gpu, h, x->local + x->off, len) < 0)
        fail("GPU download", -EIO);
    int bad = check_pattern(h, x->off, len, check_salt);
    free(h);
    return bad;
}

static void prepare_check(thread_ctx *t, uint64_t nthreads)
{
    check_salt = ((uint64_t)getpid() << 32) ^ (uint64_t)(now_s() * 1e6);
    for (uint64_t k = 0; k < nthreads; k++) {
        thread_ctx *x = &t[k];
        uint64_t len = x->span / opt.block_size * opt.block_size;
        local_fill(x, len);
        if (strcmp(opt.operation, "read") == 0) {
            mcefa_transfer w = {MCEFA_WRITE, x->local + x->off, x->seg, x->remote + x->off, len};
            int rc = mcefa_transfer_sync(x->c, &w, 1, 60000);
            if (rc < 0)
                fail("check preparation write", rc);
            local_zero(x, len);
        }
    }
}

static int verify(thread_ctx *t, uint64_t nthreads)
{
    int bad = 0;
    for (uint64_t k = 0; k < nthreads; k++) {
        thread_ctx *x = &t[k];
        uint64_t len = x->span / opt.block_size * opt.block_size;
        if (strcmp(opt.operation, "write") == 0) {
            local_zero(x, len);
            mcefa_transfer r = {MCEFA_READ, x->local + x->off, x->seg, x->remote + x->off, len};
            int rc = mcefa_transfer_sync(x->c, &r, 1, 60000);
            if (rc < 0)
                fail("check read-back", rc);
        }
        bad += local_check(x, len) != 0;
    }
    return bad;
}

/* Bytes per second of the last initiator run (-1 failed), for gpu_local. */
static double last_rate;

static int run_initiator(void)
{
    if (!*opt.segment_id) {
        fprintf(stderr, "mcefa-bench: initiator needs --segment_id (the name the target printed)\n");
        return 2;
    }
    uint64_t need = opt.block_size * opt.batch_size * opt.threads;
    if (opt.buffer_size < need) {
        fprintf(stderr, "mcefa-bench: buffer_size %" PRIu64 " < block_size*batch_size*threads; using %" PRIu64 "\n",
                opt.buffer_size, need);
        opt.buffer_size = need;
    }
    /* Buffers: one, or with --use_vram --gpu_id=-1 one per GPU, the
     * threads taking turns. */
    void *bufs[64];
    int gpus[64], nbuf = 1, rc;
    gpus[0] = one_gpu();
    if (opt.use_vram && opt.gpu_id < 0) {
        char why[512];
        if ((nbuf = bench_gpu_count(why, sizeof(why))) < 0) {
            fprintf(stderr, "mcefa-bench: --use_vram: %s\n", why);
            return 1;
        }
        nbuf = nbuf > 64 ? 64 : nbuf;
        for (int g = 0; g < nbuf; g++)
            gpus[g] = g;
    }
    mcefa_client *c = connect_or_die("mcefa-bench-initiator");
    for (int g = 0; g < nbuf; g++)
        add_buffer(c, gpus[g], &bufs[g]);
    mcefa_segment seg;
    if ((rc = mcefa_segment_open(c, opt.segment_id, &seg)) < 0)
        fail("open segment", rc);
    mcefa_region_info ri = MCEFA_REGION_INFO_INIT;
    if ((rc = mcefa_segment_regions(c, seg, &ri, 1)) < 1) {
        fprintf(stderr, "mcefa-bench: segment %s has no registered memory\n", opt.segment_id);
        return 1;
    }
    if (ri.length < opt.buffer_size) {
        fprintf(stderr,
                "mcefa-bench: the target's buffer (%" PRIu64 " bytes) is smaller than --buffer_size %" PRIu64
                "; start the target with at least as much\n",
                ri.length, opt.buffer_size);
        return 1;
    }
    thread_ctx *t = calloc(opt.threads, sizeof(*t));
    uint64_t span = opt.buffer_size / opt.threads / opt.block_size * opt.block_size;
    for (uint64_t i = 0; i < opt.threads; i++) {
        t[i].idx = (unsigned)i;
        t[i].c = c;
        t[i].seg = seg;
        t[i].local = bufs[i % (uint64_t)nbuf];
        t[i].gpu = gpus[i % (uint64_t)nbuf];
        t[i].remote = ri.addr;
        t[i].span = span;
        t[i].off = i * span;
    }
    if (opt.check)
        prepare_check(t, opt.threads);
    atomic_store(&running, 1);
    double t0 = now_s();
    for (uint64_t i = 0; i < opt.threads; i++)
        pthread_create(&t[i].tid, NULL, initiator_thread, &t[i]);
    const char *ul;
    double scale = unit_scale(opt.report_unit, &ul);
    double end = t0 + opt.duration, last_print = t0;
    uint64_t last_bytes = 0;
    while (now_s() < end) {
        usleep(100000);
        bool any_err = false;
        for (uint64_t i = 0; i < opt.threads; i++)
            any_err |= t[i].err != 0;
        if (any_err)
            break;
        double now = now_s();
        if (opt.progress && now - last_print >= 1.0) {
            uint64_t b = 0;
            for (uint64_t i = 0; i < opt.threads; i++)
                b += atomic_load(&t[i].bytes);
            fprintf(stderr, "\r[%5.1fs] %8.3f %s/s  (%.3f %s/s avg)   ", now - t0,
                    (double)(b - last_bytes) / (now - last_print) / scale, ul, (double)b / (now - t0) / scale, ul);
            last_print = now;
            last_bytes = b;
        }
    }
    atomic_store(&running, 0);
    uint64_t bytes = 0, batches = 0;
    size_t nlat = 0;
    int err = 0;
    for (uint64_t i = 0; i < opt.threads; i++) {
        pthread_join(t[i].tid, NULL);
        bytes += t[i].bytes;
        batches += t[i].batches;
        nlat += t[i].nlat;
        if (t[i].err && !err)
            err = t[i].err;
    }
    double elapsed = now_s() - t0;
    if (opt.progress)
        fprintf(stderr, "\n");
    double *lat = malloc((nlat ? nlat : 1) * sizeof(double));
    size_t k = 0;
    for (uint64_t i = 0; i < opt.threads; i++) {
        memcpy(lat + k, t[i].lat, t[i].nlat * sizeof(double));
        k += t[i].nlat;
        free(t[i].lat);
    }
    qsort(lat, nlat, sizeof(double), cmp_double);
    int bad = opt.check && !err ? verify(t, opt.threads) : 0;
    double rate = (double)bytes / elapsed / scale;
    last_rate = err ? -1 : (double)bytes / elapsed;
    double ops = (double)(batches * opt.batch_size) / elapsed;
    if (opt.json)
        printf("{\"mode\":\"initiator\",\"operation\":\"%s\",\"block_size\":%" PRIu64 ",\"batch_size\":%" PRIu64
               ",\"threads\":%" PRIu64 ",\"duration_s\":%.3f,\"bytes\":%" PRIu64 ",\"throughput\":%.4f,"
               "\"unit\":\"%s/s\",\"ops_per_s\":%.1f,\"batches\":%" PRIu64 ",\"batch_latency_us\":{\"p50\":%.1f,"
               "\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},\"check\":%s,\"error\":%d}\n",
               opt.operation, opt.block_size, opt.batch_size, opt.threads, elapsed, bytes, rate, ul, ops, batches,
               percentile(lat, nlat, 50) * 1e6, percentile(lat, nlat, 90) * 1e6, percentile(lat, nlat, 99) * 1e6,
               nlat ? lat[nlat - 1] * 1e6 : 0.0, !opt.check ? "null" : bad ? "\"failed\"" : "\"passed\"", err);
    else {
        printf("operation %s  block %" PRIu64 "  batch %" PRIu64 "  threads %" PRIu64 "  duration %.2f s\n",
               opt.operation, opt.block_size, opt.batch_size, opt.threads, elapsed);
        printf("throughput: %.3f %s/s   ops: %.0f/s   batches: %" PRIu64 "\n", rate, ul, ops, batches);
        printf("batch latency (us): p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", percentile(lat, nlat, 50) * 1e6,
               percentile(lat, nlat, 90) * 1e6, percentile(lat, nlat, 99) * 1e6, nlat ? lat[nlat - 1] * 1e6 : 0.0);
        if (opt.check)
            printf("data check: %s\n", bad ? "FAILED" : "passed");
    }
    free(lat);
    free(t);
    mcefa_segment_close(c, seg);
    for (int g = 0; g < nbuf; g++)
        drop_buffer(c, gpus[g], bufs[g]);
    mcefa_disconnect(c);
    return err ? 1 : bad ? 3 : 0;
}

static int run_memcpy(void)
{
    char *a = mmap(NULL, opt.buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    char *b = mmap(NULL, opt.buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) {
        perror("mcefa-bench: mmap");
        return 1;
    }
    memset(a, 1, opt.buffer_size);
    memset(b, 2, opt.buffer_size);
    uint64_t span = opt.buffer_size / opt.block_size * opt.block_size, off = 0, bytes = 0;
    double t0 = now_s(), end = t0 + opt.duration;
    while (now_s() < end) {
        /* Check the clock once per batch, as the daemon path does. */
        for (uint64_t i = 0; i < opt.batch_size; i++) {
            if (off + opt.block_size > span)
                off = 0;
            memcpy(b + off, a + off, opt.block_size);
            off += opt.block_size;
        }
        bytes += opt.batch_size * opt.block_size;
    }
    double elapsed = now_s() - t0;
    const char *ul;
    double scale = unit_scale(opt.report_unit, &ul);
    if (opt.json)
        printf("{\"mode\":\"memcpy\",\"block_size\":%" PRIu64 ",\"duration_s\":%.3f,\"bytes\":%" PRIu64
               ",\"throughput\":%.4f,\"unit\":\"%s/s\"}\n",
               opt.block_size, elapsed, bytes, (double)bytes / elapsed / scale, ul);
    else
        printf("memcpy (1 thread)  block %" PRIu64 "  throughput: %.3f %s/s\n", opt.block_size,
               (double)bytes / elapsed / scale, ul);
    munmap(a, opt.buffer_size);
    munmap(b, opt.buffer_size);
    return 0;
}

/* First-submit probe: what the first transfer to a host costs cold (the
 * daemon must handshake and the provider connect NIC pairs) and after an
 * explicit warmup. Run it against daemons that have not met yet. */
static int run_probe(void)
{
    if (!*opt.segment_id) {
        fprintf(stderr, "mcefa-bench: probe needs --segment_id\n");
        return 2;
    }
    mcefa_client *c;
    void *buf;
    int rc;
    if ((rc = mcefa_connect(opt.socket, "mcefa-bench-probe", &c)) < 0)
        fail("connect", rc);
    if ((rc = mcefa_alloc(c, opt.block_size, opt.numa_node, 0, &buf)) < 0 ||
        (rc = mcefa_register(c, buf, opt.block_size)) < 0)
        fail("alloc/register", rc);
    double t0 = now_s();
    mcefa_segment seg;
    if ((rc = mcefa_segment_open(c, opt.segment_id, &seg)) < 0)
        fail("open segment", rc);
    double t_open = now_s() - t0;
    double t_warm = 0;
    unsigned pairs = 0;
    if (opt.warmup) {
        t0 = now_s();
        if ((rc = mcefa_segment_warmup(c, opt.segment_id, &pairs)) < 0)
            fail("warmup", rc);
        t_warm = now_s() - t0;
    }
    mcefa_region_info ri = MCEFA_REGION_INFO_INIT;
    if (mcefa_segment_regions(c, seg, &ri, 1) < 1)
        fail("segment has no memory", -ENOENT);
    double sub[5];
    for (int i = 0; i < 5; i++) {
        mcefa_transfer x = {strcmp(opt.operation, "write") ? MCEFA_READ : MCEFA_WRITE, buf, seg, ri.addr,
                            opt.block_size};
        t0 = now_s();
        if ((rc = mcefa_transfer_sync(c, &x, 1, 30000)) < 0)
            fail("transfer", rc);
        sub[i] = now_s() - t0;
    }
    if (opt.json)
        printf("{\"mode\":\"probe\",\"warmup\":%s,\"open_ms\":%.3f,\"warmup_ms\":%.3f,\"nic_pairs\":%u,"
               "\"submit_ms\":[%.3f,%.3f,%.3f,%.3f,%.3f]}\n",
               opt.warmup ? "true" : "false", t_open * 1e3, t_warm * 1e3, pairs, sub[0] * 1e3, sub[1] * 1e3,
               sub[2] * 1e3, sub[3] * 1e3, sub[4] * 1e3);
    else {
        printf("open segment (handshake): %.3f ms\n", t_open * 1e3);
        if (opt.warmup)
            printf("warmup: %.3f ms (%u NIC pairs)\n", t_warm * 1e3, pairs);
        for (int i = 0; i < 5; i++)
            printf("submit #%d %s: %.3f ms\n", i, i == 0 ? (opt.warmup ? "(after warmup)" : "(cold)") : "", sub[i] * 1e3);
    }
    mcefa_disconnect(c);
    return 0;
}

/* Same-host GPU to GPU: the driver's own device copy first, then the
 * daemon between two processes, with the same blocks and batches. The
 * target is forked before this process touches CUDA. */
static int run_gpu_local(void)
{
    int gpu = one_gpu() < 0 ? 0 : one_gpu();
    opt.use_vram = true;
    char seg[64];
    snprintf(seg, sizeof(seg), "mcefa-bench-gpu-%d", (int)getpid());
    int ready[2];
    if (pipe(ready) < 0) {
        perror("mcefa-bench: pipe");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("mcefa-bench: fork");
        return 1;
    }
    if (child == 0) {
        close(ready[0]);
        mcefa_client *c = connect_or_die("mcefa-bench-gpu-target");
        void *buf;
        add_buffer(c, gpu, &buf);
        int rc = mcefa_segment_export(c, seg, NULL, 0);
        if (rc < 0)
            fail("export segment", rc);
        signal(SIGTERM, on_stop);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        while (!stop_flag)
            pause();
        drop_buffer(c, gpu, buf);
        mcefa_disconnect(c);
        _exit(0);
    }
    close(ready[1]);
    char ch;
    if (read(ready[0], &ch, 1) != 1) {
        fprintf(stderr, "mcefa-bench: the GPU target process did not start\n");
        waitpid(child, NULL, 0);
        return 1;
    }
    close(ready[0]);
    char why[512];
    const char *ul;
    double scale = unit_scale(opt.report_unit, &ul);
    double base = bench_gpu_d2d(gpu, opt.block_size, opt.batch_size, opt.buffer_size, opt.duration, why, sizeof(why));
    if (base < 0)
        fprintf(stderr, "mcefa-bench: baseline: %s\n", why);
    else if (!opt.json)
        printf("cuMemcpyDtoD (GPU %d, 1 stream)  block %" PRIu64 "  throughput: %.3f %s/s\n", gpu, opt.block_size,
               base / scale, ul);
    opt.segment_id = seg;
    opt.operation = "write";
    int rc = run_initiator();
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    if (base > 0 && last_rate > 0) {
        if (opt.json)
            printf("{\"mode\":\"gpu_local\",\"gpu\":%d,\"block_size\":%" PRIu64 ",\"cumemcpy_d2d\":%.4f,"
                   "\"daemon_gpu_to_gpu\":%.4f,\"unit\":\"%s/s\",\"ratio\":%.3f}\n",
                   gpu, opt.block_size, base / scale, last_rate / scale, ul, last_rate / base);
        else
            printf("GPU to GPU between two processes through mcefad: %.3f %s/s = %.2fx cuMemcpyDtoD\n",
                   last_rate / scale, ul, last_rate / base);
    }
    return base < 0 ? 1 : rc;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(opt.mode, "target"))
        return run_target();
    if (!strcmp(opt.mode, "initiator")) {
        int rc = 0;
        for (unsigned i = 0; rc == 0 && i < (opt.nthread_list ? opt.nthread_list : 1); i++) {
            if (opt.nthread_list)
                opt.threads = opt.thread_list[i];
            rc = run_initiator();
        }
        return rc;
    }
    if (!strcmp(opt.mode, "memcpy"))
        return run_memcpy();
    if (!strcmp(opt.mode, "probe"))
        return run_probe();
    if (!strcmp(opt.mode, "gpu_local"))
        return run_gpu_local();
    fprintf(stderr, "mcefa-bench: --mode must be target, initiator, memcpy, probe or gpu_local, not '%s'\n",
            opt.mode);
    return 2;
}
