/* GPU memory end to end: a real mcefad and real client processes sharing
 * GPU buffers (legacy CUDA IPC handles and VMM file descriptors) and moving
 * bytes in every same-host direction.
 *
 * Two modes. By default the CUDA driver is the test stand-in
 * (tests/cuda_standin: device memory emulated over shared host memory), so
 * CI runs these paths without a GPU; what passes then is mcefa's own
 * bookkeeping (which allocation, which GPU, which context, refcounts,
 * release after the last copy, error paths), not anything about a GPU.
 * MCEFA_TEST_GPU=real runs the same tests against the real libcuda and
 * skips, saying why, where there is no GPU (make check-gpu).
 *
 * A target process owns GPU memory, registers it and exports it as a
 * segment; the test process is the initiator with its own GPU and host
 * buffers. Processes that use CUDA are forked before this one touches the
 * driver (a CUDA process must not fork and go on using CUDA). */
#include "harness.h"
#include "suite.h"

#ifdef MCEFA_CUDA
#include <dirent.h>
#include <limits.h>
#include <sys/mman.h>

#include "gpu_mode.h"
#include "shm/cuda_drv.h"

static test_daemon D;
static int real_gpu;
static int gpus_seen = 2; /* the stand-in's; the real driver's count, probed in main */
static char lib_flag[PATH_MAX + 20];

#define MiB ((size_t)1 << 20)
#define GPU_PARTS 15 /* VMM chunks a message carries */

static void drv_or_die(void)
{
    char why[512];
    ck_assert_msg(cuda_drv_load(getenv("MCEFA_CUDA_LIBRARY"), why, sizeof(why)) == 0, "CUDA driver: %s", why);
}

#define CU_OK(call)                                                                                                \
    do {                                                                                                           \
        CUresult rc_ = (call);                                                                                     \
        ck_assert_msg(rc_ == CUDA_SUCCESS, "%s: %s", #call, cuda_drv_error(rc_));                                  \
    } while (0)

/* Makes ordinal dev's primary context current on this thread. */
static void use_gpu(int dev)
{
    drv_or_die();
    CUdevice d;
    CUcontext ctx;
    CU_OK(cuda_drv.cuDeviceGet(&d, dev));
    CU_OK(cuda_drv.cuDevicePrimaryCtxRetain(&ctx, d));
    CU_OK(cuda_drv.cuCtxSetCurrent(ctx));
}

static void gfill(CUdeviceptr p, size_t len, unsigned seed)
{
    uint8_t *h = malloc(len);
    fill(h, len, seed);
    CU_OK(cuda_drv.cuMemcpyHtoD(p, h, len));
    free(h);
}

static int gsame(CUdeviceptr p, size_t len, unsigned seed)
{
    uint8_t *h = malloc(len);
    int ok = cuda_drv.cuMemcpyDtoH(h, p, len) == CUDA_SUCCESS && same(h, len, seed);
    free(h);
    return ok;
}

/* VMM memory: nchunks physical allocations of chunk bytes mapped side by
 * side, shareable as POSIX fds when fd_ok. */
static CUdeviceptr vmm_alloc(int dev, unsigned nchunks, size_t chunk, int fd_ok)
{
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof(prop));
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    prop.requestedHandleTypes = fd_ok ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : CU_MEM_HANDLE_TYPE_NONE;
    size_t gran = 0;
    CU_OK(cuda_drv.cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    ck_assert_uint_eq(chunk % gran, 0);
    CUdeviceptr va;
    CU_OK(cuda_drv.cuMemAddressReserve(&va, nchunks * chunk, 0, 0, 0));
    for (unsigned i = 0; i < nchunks; i++) {
        CUmemGenericAllocationHandle h;
        CU_OK(cuda_drv.cuMemCreate(&h, chunk, &prop, 0));
        CU_OK(cuda_drv.cuMemMap(va + i * chunk, chunk, 0, h, 0));
        CU_OK(cuda_drv.cuMemRelease(h)); /* the mapping keeps it */
    }
    CUmemAccessDesc acc = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev},
                           .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CU_OK(cuda_drv.cuMemSetAccess(va, nchunks * chunk, &acc, 1));
    return va;
}

/* ---- The target process ------------------------------------------------- */

enum { KIND_IPC = 1, KIND_VMM = 2 };

typedef struct target {
    pid_t pid;
    int ready, go;
    uint64_t addr; /* the registered (and exported) range's client address */
} target;

typedef struct target_spec {
    const char *segment;
    int kind;
    size_t alloc;      /* allocation size (VMM: per chunk) */
    unsigned nchunks;  /* VMM */
    size_t offset, len; /* registered range inside the allocation */
    const char *visible; /* CUDA_VISIBLE_DEVICES of the target, NULL: inherit */
} target_spec;

/* Child: fills the allocation with pattern 1, registers and exports the
 * range, then obeys commands: 'v' + seed: does the range hold that
 * pattern ('y'/'n'); 'u': unregister ('y'/'n'); 's': sleep until killed;
 * 'q': exit. */
static void target_main(const target_spec *sp, int rfd, int gfd)
{
    if (sp->visible)
        setenv("CUDA_VISIBLE_DEVICES", sp->visible, 1);
    char why[512];
    if (cuda_drv_load(getenv("MCEFA_CUDA_LIBRARY"), why, sizeof(why)) < 0)
        _exit(20);
    CUdevice d;
    CUcontext ctx;
    if (cuda_drv.cuDeviceGet(&d, 0) || cuda_drv.cuDevicePrimaryCtxRetain(&ctx, d) || cuda_drv.cuCtxSetCurrent(ctx))
        _exit(21);
    CUdeviceptr base;
    size_t total = sp->kind == KIND_VMM ? sp->alloc * sp->nchunks : sp->alloc;
    if (sp->kind == KIND_IPC) {
        if (cuda_drv.cuMemAlloc(&base, total))
            _exit(22);
    } else {
        base = vmm_alloc(0, sp->nchunks, sp->alloc, 1);
    }
    gfill(base + sp->offset, sp->len, 1);
    mcefa_client *c;
    if (mcefa_connect(D.sock, "gpu-target", &c) < 0)
        _exit(23);
    void *reg = (void *)(uintptr_t)(base + sp->offset);
    if (mcefa_register(c, reg, sp->len) < 0) {
        fprintf(stderr, "target register: %s\n", mcefa_last_error());
        _exit(24);
    }
    if (mcefa_segment_export(c, sp->segment, NULL, 0) < 0)
        _exit(25);
    uint64_t a = (uint64_t)(uintptr_t)reg;
    if (write(rfd, &a, sizeof(a)) != sizeof(a))
        _exit(26);
    for (;;) {
        char cmd = 'q';
        if (read(gfd, &cmd, 1) != 1 || cmd == 'q')
            break;
        char ans = 'n';
        if (cmd == 'v') {
            unsigned char seed = 0;
            if (read(gfd, &seed, 1) != 1)
                break;
            ans = gsame(base + sp->offset, sp->len, seed) ? 'y' : 'n';
        } else if (cmd == 'u') {
            ans = mcefa_unregister(c, reg) == 0 ? 'y' : 'n';
        } else if (cmd == 's') {
            for (;;)
                pause();
        }
        if (write(rfd, &ans, 1) != 1)
            break;
    }
    mcefa_disconnect(c);
    _exit(0);
}

static void target_start(target *t, const target_spec *sp)
{
    int r[2], g[2];
    ck_assert_int_eq(pipe(r), 0);
    ck_assert_int_eq(pipe(g), 0);
    t->pid = fork();
    ck_assert_int_ge(t->pid, 0);
    if (t->pid == 0) {
        close(r[0]);
        close(g[1]);
        target_main(sp, r[1], g[0]);
    }
    close(r[1]);
    close(g[0]);
    t->ready = r[0];
    t->go = g[1];
    ck_assert_msg(read(t->ready, &t->addr, sizeof(t->addr)) == (ssize_t)sizeof(t->addr),
                  "the GPU target did not start (see the output above)");
}

static char target_ask(target *t, char cmd, int seed)
{
    char buf[2] = {cmd, (char)seed};
    ck_assert_int_eq(write(t->go, buf, seed >= 0 ? 2 : 1), seed >= 0 ? 2 : 1);
    char ans = 0;
    ck_assert_int_eq(read(t->ready, &ans, 1), 1);
    return ans;
}

static int target_stop(target *t)
{
    char q = 'q';
    if (write(t->go, &q, 1)) {
    }
    int st = 0;
    waitpid(t->pid, &st, 0);
    close(t->go);
    close(t->ready);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- Daemon status through a raw connection ----------------------------- */

/* GPU imports the daemon holds (all GPUs), or -1 when it lists none. */
static int daemon_imports(void)
{
    Mcefa__Response *r = raw_status(D.sock);
    int n = r->daemon_status->n_gpus ? 0 : -1;
    for (size_t i = 0; i < r->daemon_status->n_gpus; i++)
        n += (int)r->daemon_status->gpus[i]->imports;
    mcefa__response__free_unpacked(r, NULL);
    return n;
}

/* Imports settle once the daemon has seen the client go (a few loop turns). */
static int imports_become(int want)
{
    for (int i = 0; i < 500; i++) {
        if (daemon_imports() == want)
            return 1;
        usleep(10000);
    }
    return 0;
}

/* ---- Fixtures ----------------------------------------------------------- */

static void start_daemon(void)
{
    const char *extra[] = {"--provider=none", "--copy_threads=4", "--copy_chunk_bytes=1048576",
                           real_gpu ? NULL : lib_flag, NULL};
    daemon_start(&D, extra);
}

static void setup(void)
{
    start_daemon();
}

static void teardown(void)
{
    daemon_stop(&D);
}

/* ---- Tests -------------------------------------------------------------- */

/* Every direction between this process's host and GPU buffers and a
 * target's GPU segment; offsets inside the allocation are honoured. */
static void every_direction(const target_spec *sp)
{
    target t;
    target_start(&t, sp);
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-initiator");
    size_t n = sp->len;
    CUdeviceptr mine;
    CU_OK(cuda_drv.cuMemAlloc(&mine, n + 4096));
    CUdeviceptr gbuf = mine + 4096; /* registered at an offset of its allocation */
    void *hbuf;
    ck_assert_int_eq(mcefa_alloc(c, n, -1, 0, &hbuf), 0);
    ck_assert_msg(mcefa_register(c, (void *)(uintptr_t)gbuf, n) == 0, "register: %s", mcefa_last_error());
    ck_assert_int_eq(mcefa_register(c, hbuf, n), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, sp->segment, &seg), 0);

    /* GPU segment -> host (D2H), then -> GPU (D2D). */
    mcefa_transfer x = {.opcode = MCEFA_READ, .local = hbuf, .segment = seg, .remote = t.addr, .length = n};
    ck_assert_msg(mcefa_transfer_sync(c, &x, 1, 20000) == 0, "D2H: %s", mcefa_last_error());
    ck_assert(same(hbuf, n, 1));
    x.local = (void *)(uintptr_t)gbuf;
    ck_assert_msg(mcefa_transfer_sync(c, &x, 1, 20000) == 0, "D2D read: %s", mcefa_last_error());
    ck_assert(gsame(gbuf, n, 1));
    /* host -> GPU segment (H2D). */
    fill(hbuf, n, 2);
    x.opcode = MCEFA_WRITE;
    x.local = hbuf;
    ck_assert_msg(mcefa_transfer_sync(c, &x, 1, 20000) == 0, "H2D: %s", mcefa_last_error());
    ck_assert_int_eq(target_ask(&t, 'v', 2), 'y');
    /* GPU -> GPU segment (D2D write), in pieces at odd offsets. */
    gfill(gbuf, n, 3);
    mcefa_transfer xs[3];
    size_t cut1 = n / 3 + 1, cut2 = 2 * n / 3 + 5;
    size_t at[4] = {0, cut1, cut2, n};
    for (int i = 0; i < 3; i++)
        xs[i] = (mcefa_transfer){.opcode = MCEFA_WRITE,
                                 .local = (void *)(uintptr_t)(gbuf + at[i]),
                                 .segment = seg,
                                 .remote = t.addr + at[i],
                                 .length = at[i + 1] - at[i]};
    ck_assert_msg(mcefa_transfer_sync(c, xs, 3, 20000) == 0, "D2D write: %s", mcefa_last_error());
    ck_assert_int_eq(target_ask(&t, 'v', 3), 'y');
    ck_assert_int_eq(mcefa_unregister(c, (void *)(uintptr_t)gbuf), 0);
    mcefa_disconnect(c);
    ck_assert_int_eq(target_stop(&t), 0);
    CU_OK(cuda_drv.cuMemFree(mine));
    /* Both clients gone: every import is closed. */
    ck_assert(imports_become(0));
}

START_TEST(ipc_every_direction)
{
    target_spec sp = {.segment = "gpu-ipc", .kind = KIND_IPC, .alloc = 8 * MiB, .offset = 12345, .len = 5 * MiB + 77};
    every_direction(&sp);
}
END_TEST

START_TEST(vmm_every_direction)
{
    /* Three 2 MiB allocations; the range starts inside the first and ends
     * inside the last, so transfers cross both boundaries. */
    target_spec sp = {
        .segment = "gpu-vmm", .kind = KIND_VMM, .alloc = 2 * MiB, .nchunks = 3, .offset = 4096 + 3, .len = 5 * MiB};
    every_direction(&sp);
}
END_TEST

/* A VMM range spanning more allocations than one message's descriptors
 * (PyTorch's expandable segments map 20 MiB allocations side by side)
 * arrives in parts; transfers then cross every boundary. */
START_TEST(vmm_range_of_many_allocations)
{
    target_spec sp = {
        .segment = "gpu-vmm-many", .kind = KIND_VMM, .alloc = 2 * MiB, .nchunks = 40, .offset = 777, .len = 75 * MiB};
    target t;
    target_start(&t, &sp);
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-many");
    void *h;
    ck_assert_int_eq(mcefa_alloc(c, sp.len, -1, 0, &h), 0);
    ck_assert_int_eq(mcefa_register(c, h, sp.len), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, sp.segment, &seg), 0);
    mcefa_transfer x = {.opcode = MCEFA_READ, .local = h, .segment = seg, .remote = t.addr, .length = sp.len};
    ck_assert_msg(mcefa_transfer_sync(c, &x, 1, 30000) == 0, "read: %s", mcefa_last_error());
    ck_assert(same(h, sp.len, 1));
    fill(h, sp.len, 5);
    x.opcode = MCEFA_WRITE;
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 30000), 0);
    ck_assert_int_eq(target_ask(&t, 'v', 5), 'y');
    ck_assert_int_eq(daemon_imports(), 38); /* the 38 allocations the range touches */
    mcefa_disconnect(c);
    ck_assert_int_eq(target_stop(&t), 0);
    ck_assert(imports_become(0));
}
END_TEST

static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}


/* A client that sends parts of a VMM registration and never the last, or
 * switches ranges half way: the daemon answers, and its descriptors go
 * with the waiting parts (no descriptor of the daemon's is left behind). */
START_TEST(vmm_parts_abandoned)
{
    int before = fd_count(D.pid);
    for (int round = 0; round < 2; round++) {
        int fd = raw_connect(D.sock);
        ck_assert_int_ge(fd, 0);
        wire_reader rd;
        wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
        raw_hello_ok(fd, &rd);
        for (int part = 0; part < 3; part++) {
            Mcefa__GpuChunk ch[GPU_PARTS];
            Mcefa__GpuChunk *chp[GPU_PARTS];
            int fds[GPU_PARTS];
            for (int i = 0; i < GPU_PARTS; i++) {
                mcefa__gpu_chunk__init(&ch[i]);
                ch[i].addr = 0x7f0000000000ull + (uint64_t)(part * GPU_PARTS + i) * (2 * MiB);
                ch[i].size = 2 * MiB;
                chp[i] = &ch[i];
                fds[i] = memfd_create("x", MFD_CLOEXEC);
            }
            Mcefa__GpuMemory g = MCEFA__GPU_MEMORY__INIT;
            g.bus_id = "0000:18:00.0";
            g.share = MCEFA__GPU_SHARE__GPU_SHARE_VMM;
            g.n_chunks = GPU_PARTS;
            g.chunks = chp;
            g.more = 1;
            Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
            /* Round 1 changes the range half way: the first parts are dropped. */
            m.addr = 0x7f0000000000ull + (round && part == 2 ? 4096 : 0);
            m.length = 64 * MiB;
            m.fd_count = GPU_PARTS;
            m.gpu = &g;
            char why[ERRLEN];
            /* A part is answered at once. */
            ck_assert_int_eq(raw_register(fd, &rd, 10 + (uint64_t)part, &m, fds, GPU_PARTS, why), 0);
            for (int i = 0; i < GPU_PARTS; i++)
                close(fds[i]);
        }
        wire_reader_free(&rd);
        close(fd);
    }
    /* The daemon notices the goodbyes on its next loop turns. */
    int after = -1;
    for (int i = 0; i < 300 && (after = fd_count(D.pid)) > before; i++)
        usleep(10000);
    ck_assert_msg(after <= before, "daemon fds: %d before, %d after", before, after);
    ck_assert(daemon_alive(&D));
}
END_TEST

/* What a hostile client can put in RegisterMemory.gpu: each malformed or
 * lying description is refused with its own error, before or at the
 * import, and nothing is left behind (no descriptor, no import); the
 * daemon goes on serving. The lies that matter most: an IPC handle that
 * claims more than its allocation (a copy past a mapping would poison the
 * daemon's GPU context), and a VMM descriptor that is not VMM memory or
 * smaller than claimed. */
START_TEST(hostile_gpu_registrations)
{
    use_gpu(0);
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, MiB));
    CUipcMemHandle ipc;
    CU_OK(cuda_drv.cuIpcGetMemHandle(&ipc, p));
    CUdeviceptr v = vmm_alloc(0, 1, 2 * MiB, 1);
    CUmemGenericAllocationHandle vh;
    CU_OK(cuda_drv.cuMemRetainAllocationHandle(&vh, (void *)(uintptr_t)v));
    int before = fd_count(D.pid);
    int fd = raw_connect(D.sock);
    ck_assert_int_ge(fd, 0);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    raw_hello_ok(fd, &rd);
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof(junk));
    struct {
        const char *what;
        int share, n_chunks, fd_count, nfds, dmabuf, more;
        const char *bus;
        size_t uuid_len, ipc_len;
        const uint8_t *ipc;
        uint64_t addr, length, alloc_base, alloc_size, chunk_size, chunk_gap;
        int vmm_fd; /* the chunk's descriptor: a VMM export (1) or a plain memfd (0) */
        int want;
        const char *text;
    } cases[] = {
        {"IPC share with chunks", 1, 1, 1, 1, 0, 0, "0000:18:00.0", 0, 64, (const uint8_t *)ipc.reserved, p, MiB, p,
         MiB, 2 * MiB, 0, 0, -EINVAL, "none for IPC shares"},
        {"more than a message's chunks", 2, 16, 16, 0, 0, 0, "0000:18:00.0", 0, 0, NULL, v, MiB, 0, 0, 2 * MiB, 0, 0,
         -EINVAL, "at most 15"},
        {"fd_count promised, none sent", 2, 2, 2, 0, 0, 0, "0000:18:00.0", 0, 0, NULL, v, MiB, 0, 0, 2 * MiB, 0, 0,
         -EBADF, "without its descriptors"},
        {"dmabuf on a part that is not the last", 2, 1, 2, 2, 1, 1, "0000:18:00.0", 0, 0, NULL, v, MiB, 0, 0, 2 * MiB,
         0, 0, -EINVAL, "in the last message"},
        {"no bus id", 1, 0, 0, 0, 0, 0, "", 0, 64, (const uint8_t *)ipc.reserved, p, MiB, p, MiB, 0, 0, 0, -EINVAL,
         "names no GPU"},
        {"uuid of 5 bytes", 1, 0, 0, 0, 0, 0, "0000:18:00.0", 5, 64, (const uint8_t *)ipc.reserved, p, MiB, p, MiB, 0,
         0, 0, -EINVAL, "uuid must be 16 bytes"},
        {"IPC handle of 10 bytes", 1, 0, 0, 0, 0, 0, "0000:18:00.0", 0, 10, (const uint8_t *)ipc.reserved, p, MiB, p,
         MiB, 0, 0, 0, -EINVAL, "must be 64 bytes"},
        {"range outside its allocation", 1, 0, 0, 0, 0, 0, "0000:18:00.0", 0, 64, (const uint8_t *)ipc.reserved,
         p + MiB, 4096, p, MiB, 0, 0, 0, -EINVAL, "outside its allocation"},
        {"unknown share kind", 7, 0, 0, 0, 0, 0, "0000:18:00.0", 0, 0, NULL, p, MiB, p, MiB, 0, 0, 0, -EINVAL,
         "unknown share kind"},
        {"VMM chunks not side by side", 2, 2, 2, 2, 0, 0, "0000:18:00.0", 0, 0, NULL, v, MiB, 0, 0, 2 * MiB, 4096, 1,
         -EINVAL, "not contiguous"},
        {"an IPC handle of junk", 1, 0, 0, 0, 0, 0, "0000:18:00.0", 0, 64, junk, p, MiB, p, MiB, 0, 0, 0, -EIO,
         "cannot open the CUDA IPC handle"},
        {"an IPC allocation claimed 64 times larger", 1, 0, 0, 0, 0, 0, "0000:18:00.0", 0, 64,
         (const uint8_t *)ipc.reserved, p, MiB, p, 64 * MiB, 0, 0, 0, -EINVAL, "not the 67108864 the registration"},
        {"a VMM descriptor that is a plain memfd", 2, 1, 1, 1, 0, 0, "0000:18:00.0", 0, 0, NULL, v, MiB, 0, 0, 2 * MiB,
         0, 0, -EINVAL, "cannot import the VMM allocation"},
        {"a VMM allocation claimed twice its size", 2, 1, 1, 1, 0, 0, "0000:18:00.0", 0, 0, NULL, v, MiB, 0, 0,
         4 * MiB, 0, 1, -EINVAL, "smaller than the client says"},
        {"a GPU the daemon does not have", 1, 0, 0, 0, 0, 0, "0000:99:00.0", 0, 64, (const uint8_t *)ipc.reserved, p,
         MiB, p, MiB, 0, 0, 0, -ENODEV, "not visible to mcefad"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        Mcefa__GpuChunk ch[16];
        Mcefa__GpuChunk *chp[16];
        for (int i = 0; i < cases[k].n_chunks; i++) {
            mcefa__gpu_chunk__init(&ch[i]);
            ch[i].addr = v + (uint64_t)i * (cases[k].chunk_size + cases[k].chunk_gap);
            ch[i].size = cases[k].chunk_size;
            chp[i] = &ch[i];
        }
        int fds[WIRE_MAX_FDS];
        for (int i = 0; i < cases[k].nfds; i++) {
            fds[i] = -1;
            if (cases[k].vmm_fd)
                CU_OK(cuda_drv.cuMemExportToShareableHandle(&fds[i], vh, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
            else
                fds[i] = memfd_create("not-vmm", MFD_CLOEXEC);
            ck_assert_int_ge(fds[i], 0);
        }
        Mcefa__GpuMemory g = MCEFA__GPU_MEMORY__INIT;
        g.bus_id = (char *)cases[k].bus;
        g.uuid.data = junk;
        g.uuid.len = cases[k].uuid_len;
        g.share = cases[k].share;
        g.ipc_handle.data = (uint8_t *)cases[k].ipc;
        g.ipc_handle.len = cases[k].ipc_len;
        g.alloc_base = cases[k].alloc_base;
        g.alloc_size = cases[k].alloc_size;
        g.n_chunks = (size_t)cases[k].n_chunks;
        g.chunks = chp;
        g.dmabuf = cases[k].dmabuf;
        g.more = cases[k].more;
        Mcefa__RegisterMemory m = MCEFA__REGISTER_MEMORY__INIT;
        m.addr = cases[k].addr;
        m.length = cases[k].length;
        m.fd_count = (uint32_t)cases[k].fd_count;
        m.numa_node = -1;
        m.gpu = &g;
        char why[ERRLEN];
        int rc = raw_register(fd, &rd, 100 + k, &m, fds, (unsigned)cases[k].nfds, why);
        for (int i = 0; i < cases[k].nfds; i++)
            close(fds[i]);
        ck_assert_msg(rc == cases[k].want && strstr(why, cases[k].text), "%s: status %d (want %d): %s",
                      cases[k].what, rc, cases[k].want, why);
    }
    wire_reader_free(&rd);
    close(fd);
    ck_assert(imports_become(0));
    int after = -1;
    for (int i = 0; i < 300 && (after = fd_count(D.pid)) > before; i++)
        usleep(10000);
    ck_assert_msg(after <= before, "daemon fds: %d before, %d after", before, after);
    /* An honest registration of the same memory still works. */
    mcefa_client *c = client_ok(D.sock, "gpu-after-hostile");
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, MiB), 0);
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)v, 2 * MiB), 0);
    mcefa_disconnect(c);
    CU_OK(cuda_drv.cuMemRelease(vh));
}
END_TEST

/* Ranges of one cudaMalloc allocation share one import (by its IPC
 * handle); VMM registrations import the allocations they span each time
 * (nothing identifies one allocation across two descriptors). */
START_TEST(one_import_per_allocation)
{
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-ranges");
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, 4 * MiB));
    for (int i = 0; i < 4; i++)
        ck_assert_msg(mcefa_register(c, (void *)(uintptr_t)(p + i * MiB), MiB) == 0, "register %d: %s", i,
                      mcefa_last_error());
    ck_assert_int_eq(daemon_imports(), 1);
    CUdeviceptr v = vmm_alloc(0, 2, 2 * MiB, 1);
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)v, MiB), 0);
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)(v + MiB), 3 * MiB), 0);
    ck_assert_int_eq(daemon_imports(), 4); /* the IPC allocation; VMM: 1 + 2 */
    /* Overlapping a registered range is refused, as for host memory. */
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)(p + MiB / 2), MiB), -EEXIST);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mcefa_unregister(c, (void *)(uintptr_t)(p + i * MiB)), 0);
    ck_assert_int_eq(daemon_imports(), 4); /* one range still uses it */
    ck_assert_int_eq(mcefa_unregister(c, (void *)(uintptr_t)(p + 3 * MiB)), 0);
    ck_assert(imports_become(3)); /* released on the daemon's release thread */
    mcefa_disconnect(c);
    ck_assert(imports_become(0));
}
END_TEST

/* The target sees only physical GPU 1 (as its ordinal 0) and the initiator
 * uses GPU 0: the daemon must find the target's GPU by bus id and copy
 * between the two GPUs (peer copies). */
START_TEST(across_two_gpus)
{
    if (gpus_seen < 2) {
        printf("across_two_gpus: skipped: needs two GPUs\n");
        return;
    }
    target_spec sp = {.segment = "gpu-peer", .kind = KIND_IPC, .alloc = 4 * MiB, .len = 4 * MiB, .visible = "1"};
    every_direction(&sp);
}
END_TEST

/* VMM memory on the other GPU: reachable only where the daemon granted
 * access (cuMemSetAccess for its peer GPUs too). */
START_TEST(across_two_gpus_vmm)
{
    if (gpus_seen < 2) {
        printf("across_two_gpus_vmm: skipped: needs two GPUs\n");
        return;
    }
    target_spec sp = {
        .segment = "gpu-peer-vmm", .kind = KIND_VMM, .alloc = 2 * MiB, .nchunks = 2, .len = 4 * MiB, .visible = "1"};
    every_direction(&sp);
}
END_TEST

/* A client killed with copies of its GPU memory in flight, and a target
 * killed while others copy into its memory: the daemon finishes or fails
 * those copies, releases the imports only after them, and keeps serving. */
START_TEST(kill_mid_copy)
{
    target_spec sp = {.segment = "gpu-kill", .kind = KIND_IPC, .alloc = 32 * MiB, .len = 32 * MiB};
    if (!real_gpu) {
        /* Slow the stand-in's streams so the kills land mid-copy. */
        daemon_stop(&D);
        char was[32];
        snprintf(was, sizeof(was), "%s", getenv("MCEFA_STANDIN_DELAY_US") ? getenv("MCEFA_STANDIN_DELAY_US") : "0");
        setenv("MCEFA_STANDIN_DELAY_US", "20000", 1);
        start_daemon();
        setenv("MCEFA_STANDIN_DELAY_US", was, 1);
    }
    target t;
    target_start(&t, &sp);
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t victim = fork();
    ck_assert_int_ge(victim, 0);
    if (victim == 0) {
        use_gpu(0);
        mcefa_client *c;
        if (mcefa_connect(D.sock, "gpu-victim", &c) < 0)
            _exit(1);
        CUdeviceptr p;
        if (cuda_drv.cuMemAlloc(&p, sp.len) || mcefa_register(c, (void *)(uintptr_t)p, sp.len) < 0)
            _exit(2);
        mcefa_segment seg;
        mcefa_batch *b;
        if (mcefa_segment_open(c, sp.segment, &seg) < 0 || mcefa_batch_alloc(c, 64, &b) < 0)
            _exit(3);
        mcefa_transfer x[64];
        for (int i = 0; i < 64; i++)
            x[i] = (mcefa_transfer){.opcode = i & 1 ? MCEFA_WRITE : MCEFA_READ,
                                    .local = (void *)(uintptr_t)p,
                                    .segment = seg,
                                    .remote = t.addr,
                                    .length = sp.len};
        if (mcefa_batch_submit(b, x, 64) < 0)
            _exit(4);
        if (write(go[1], "x", 1) != 1)
            _exit(5);
        for (;;)
            pause();
    }
    char ch;
    ck_assert_int_eq(read(go[0], &ch, 1), 1);
    usleep(20000);
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    ck_assert(daemon_alive(&D));
    /* The target dies too, with its memory mapped by the daemon. */
    kill(t.pid, SIGKILL);
    waitpid(t.pid, NULL, 0);
    close(t.go);
    close(t.ready);
    ck_assert(imports_become(0));
    ck_assert(daemon_alive(&D));
    /* Another client is served normally afterwards. */
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-after");
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, MiB));
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, MiB), 0);
    ck_assert_int_eq(mcefa_unregister(c, (void *)(uintptr_t)p), 0);
    mcefa_disconnect(c);
    close(go[0]);
    close(go[1]);
}
END_TEST

/* Unregistering while the target's memory is being copied leaves the copy
 * whole: the import stays until the last copy finished. */
START_TEST(unregister_during_copies)
{
    target_spec sp = {.segment = "gpu-unreg", .kind = KIND_VMM, .alloc = 2 * MiB, .nchunks = 8, .len = 16 * MiB};
    target t;
    target_start(&t, &sp);
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-reader");
    void *h;
    ck_assert_int_eq(mcefa_alloc(c, sp.len, -1, 0, &h), 0);
    ck_assert_int_eq(mcefa_register(c, h, sp.len), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, sp.segment, &seg), 0);
    mcefa_batch *b;
    ck_assert_int_eq(mcefa_batch_alloc(c, 8, &b), 0);
    mcefa_transfer x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (mcefa_transfer){.opcode = MCEFA_READ, .local = h, .segment = seg, .remote = t.addr, .length = sp.len};
    ck_assert_int_ge(mcefa_batch_submit(b, x, 8), 0);
    ck_assert_int_eq(target_ask(&t, 'u', -1), 'y');
    ck_assert_int_eq(mcefa_batch_wait(b, 30000), 0);
    ck_assert(same(h, sp.len, 1));
    ck_assert_int_eq(mcefa_batch_free(b), 0);
    mcefa_disconnect(c);
    ck_assert_int_eq(target_stop(&t), 0);
    ck_assert(imports_become(0));
}
END_TEST

/* What cannot be registered says why and what to do. */
START_TEST(errors_a_user_can_act_on)
{
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-errors");
    /* Host memory the driver does not know is plain host memory, not a
     * GPU registration gone wrong. */
    char *plain = malloc(8192);
    ck_assert_int_eq(mcefa_register(c, plain, 8192), 0);
    ck_assert_int_eq(mcefa_unregister(c, plain), 0);
    free(plain);
    /* VMM memory made without a shareable handle type. */
    CUdeviceptr v = vmm_alloc(0, 1, 2 * MiB, 0);
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)v, MiB), -EPERM);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR"));
    /* A range past the end of its cudaMalloc allocation. */
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, 2 * MiB));
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)(p + MiB), 2 * MiB), -EINVAL);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "runs past the end of its GPU allocation"));
    /* An overlapping GPU copy inside one region. */
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, 2 * MiB), 0);
    ck_assert_int_eq(mcefa_segment_export(c, "gpu-self", NULL, 0), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "gpu-self", &seg), 0);
    mcefa_transfer x = {.opcode = MCEFA_WRITE, .local = (void *)(uintptr_t)p, .segment = seg, .remote = p + 4096,
                        .length = MiB};
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), -EINVAL);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "overlap"));
    /* Not overlapping: fine. */
    x.remote = p + MiB;
    gfill(p, MiB, 4);
    ck_assert_int_eq(mcefa_transfer_sync(c, &x, 1, 5000), 0);
    ck_assert(gsame(p + MiB, MiB, 4));
    mcefa_disconnect(c);
    ck_assert(daemon_alive(&D));
}
END_TEST

/* A GPU the daemon cannot see: the error names its bus id. (Stand-in: the
 * daemon is restarted seeing physical GPU 0 only.) */
START_TEST(gpu_the_daemon_cannot_see)
{
    if (real_gpu) {
        printf("gpu_the_daemon_cannot_see: skipped: needs the stand-in (hiding a GPU from the daemon only)\n");
        return;
    }
    daemon_stop(&D);
    setenv("CUDA_VISIBLE_DEVICES", "0", 1);
    start_daemon();
    unsetenv("CUDA_VISIBLE_DEVICES");
    use_gpu(1);
    mcefa_client *c = client_ok(D.sock, "gpu-hidden");
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, MiB));
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, MiB), -ENODEV);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "0000:28:00.0"));
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "not visible to mcefad"));
    mcefa_disconnect(c);
}
END_TEST

/* The daemon may not open IPC handles (stand-in switch), or has no driver:
 * both are refused with the reason, and the daemon keeps serving. */
START_TEST(ipc_not_permitted_or_no_driver)
{
    if (real_gpu) {
        printf("ipc_not_permitted_or_no_driver: skipped: needs the stand-in\n");
        return;
    }
    daemon_stop(&D);
    setenv("MCEFA_STANDIN_IPC_DENY", "1", 1);
    start_daemon();
    unsetenv("MCEFA_STANDIN_IPC_DENY");
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-denied");
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, MiB));
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, MiB), -EPERM);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "cannot open the CUDA IPC handle"));
    mcefa_disconnect(c);
    daemon_stop(&D);
    const char *extra[] = {"--provider=none", "--cuda_library=/nonexistent/libcuda.so.1", NULL};
    daemon_start(&D, extra);
    c = client_ok(D.sock, "gpu-nodriver");
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, MiB), -ENODEV);
    ck_assert_ptr_nonnull(strstr(mcefa_last_error(), "cannot load the CUDA driver"));
    void *h;
    ck_assert_int_eq(mcefa_alloc(c, 4096, -1, 0, &h), 0);
    ck_assert_int_eq(mcefa_register(c, h, 4096), 0); /* host memory still works */
    mcefa_disconnect(c);
}
END_TEST

/* mcefactl shows a client's GPU regions per GPU and the daemon's imports. */
START_TEST(status_shows_gpu_regions)
{
    use_gpu(0);
    mcefa_client *c = client_ok(D.sock, "gpu-status");
    CUdeviceptr p;
    CU_OK(cuda_drv.cuMemAlloc(&p, 3 * MiB));
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)p, MiB), 0);
    ck_assert_int_eq(mcefa_register(c, (void *)(uintptr_t)(p + MiB), 2 * MiB), 0);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "%s/mcefactl --socket=%s --json clients | grep -q '\"regions\":2,\"bytes\":3145728'",
             build_dir(), D.sock);
    ck_assert_msg(system(cmd) == 0, "mcefactl clients does not show the GPU regions");
    snprintf(cmd, sizeof(cmd), "%s/mcefactl --socket=%s --json gpus | grep -q '\"imports\":1'", build_dir(), D.sock);
    ck_assert_msg(system(cmd) == 0, "mcefactl gpus does not show the import");
    mcefa_disconnect(c);
}
END_TEST

int main(void)
{
    /* Stand-in stream ops wait a little, so a copy that reads staging or
     * releases memory before its event completed shows up as wrong bytes
     * instead of passing by luck. */
    int n = gpu_mode_init("gpu", "300", lib_flag, sizeof(lib_flag));
    if (n == 0)
        return 0;
    real_gpu = n > 0;
    if (real_gpu)
        gpus_seen = n;
    Suite *s = suite_create(real_gpu ? "gpu-real" : "gpu-standin");
    TCase *tc = tcase_create("same-host");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, ipc_every_direction);
    tcase_add_test(tc, vmm_every_direction);
    tcase_add_test(tc, vmm_range_of_many_allocations);
    tcase_add_test(tc, vmm_parts_abandoned);
    tcase_add_test(tc, hostile_gpu_registrations);
    tcase_add_test(tc, one_import_per_allocation);
    tcase_add_test(tc, across_two_gpus);
    tcase_add_test(tc, across_two_gpus_vmm);
    tcase_add_test(tc, kill_mid_copy);
    tcase_add_test(tc, unregister_during_copies);
    tcase_add_test(tc, errors_a_user_can_act_on);
    tcase_add_test(tc, gpu_the_daemon_cannot_see);
    tcase_add_test(tc, ipc_not_permitted_or_no_driver);
    tcase_add_test(tc, status_shows_gpu_regions);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

#else /* built without the CUDA headers */

int main(void)
{
    printf("gpu: skipped: built without the CUDA headers (CUDA=0)\n100%%: Checks: 0, Failures: 0, Errors: 0\n");
    return 0;
}

#endif
