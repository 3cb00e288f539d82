/* Transfers ordered on a CUDA stream (mcefa_transfer_on_stream, behind
 * Mooncake's *_on_cuda): they start after the stream's earlier work, its
 * later work waits for them, failures come back from mcefa_stream_check,
 * and a client that disconnects with transfers still queued is safe.
 *
 * By default the CUDA driver is the test stand-in (tests/cuda_standin):
 * streams are its threads running queued copies and host functions in
 * order. What passes then is mcefa's own logic, not anything about a GPU.
 * MCEFA_TEST_GPU=real runs the same tests against the real libcuda and
 * skips, saying why, where there is no GPU. Built without CUDA, the suite
 * checks that the call says so. */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"
#include "suite.h"

static test_daemon D;

#define MiB ((size_t)1 << 20)

static void teardown(void)
{
    daemon_stop(&D);
}

#ifdef MCEFA_CUDA
#include "gpu_mode.h"
#include "shm/cuda_drv.h"

static int real_gpu;
static char lib_flag[PATH_MAX + 20];

#define CU_OK(call)                                                                                                \
    do {                                                                                                           \
        CUresult rc_ = (call);                                                                                     \
        ck_assert_msg(rc_ == CUDA_SUCCESS, "%s: %s", #call, cuda_drv_error(rc_));                                  \
    } while (0)

static void setup(void)
{
    const char *extra[] = {"--provider=none", real_gpu ? NULL : lib_flag, NULL};
    daemon_start(&D, extra);
}

static void use_gpu(int dev)
{
    char why[512];
    ck_assert_msg(cuda_drv_load(getenv("MCEFA_CUDA_LIBRARY"), why, sizeof(why)) == 0, "CUDA driver: %s", why);
    CUdevice d;
    CUcontext ctx;
    CU_OK(cuda_drv.cuDeviceGet(&d, dev));
    CU_OK(cuda_drv.cuDevicePrimaryCtxRetain(&ctx, d));
    CU_OK(cuda_drv.cuCtxSetCurrent(ctx));
}

/* A host function of the test's own: holds the stream until opened, then
 * runs act. Makes no CUDA call (unless act is the test of that rule). */
typedef struct gate {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int open;
    void (*act)(struct gate *);
    uint8_t *buf;
    size_t len;
    unsigned seed;
    atomic_int result; /* what act found; -1 not run */
} gate;

static void gate_init(gate *g, void (*act)(gate *), uint8_t *buf, size_t len, unsigned seed, int open)
{
    pthread_mutex_init(&g->m, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = open;
    g->act = act;
    g->buf = buf;
    g->len = len;
    g->seed = seed;
    atomic_store(&g->result, -1);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->m);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->m);
}

static void CUDA_CB gate_fn(void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->m);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->m);
    pthread_mutex_unlock(&g->m);
    if (g->act)
        g->act(g);
}

static void act_fill(gate *g)
{
    fill(g->buf, g->len, g->seed);
    atomic_store(&g->result, 1);
}

static void act_same(gate *g)
{
    atomic_store(&g->result, same(g->buf, g->len, g->seed));
}

/* A client with two registered host buffers of n bytes, a and b, and its
 * own segment open (b's address is its remote address). */
typedef struct pair {
    mcefa_client *c;
    uint8_t *a, *b;
    mcefa_segment seg;
} pair;

static void pair_open(pair *p, const char *name, size_t n)
{
    p->c = client_ok(D.sock, name);
    void *a, *b;
    ck_assert_int_eq(mcefa_alloc(p->c, n, -1, 0, &a), 0);
    ck_assert_int_eq(mcefa_alloc(p->c, n, -1, 0, &b), 0);
    ck_assert_int_eq(mcefa_register(p->c, a, n), 0);
    ck_assert_int_eq(mcefa_register(p->c, b, n), 0);
    ck_assert_int_eq(mcefa_segment_export(p->c, name, NULL, 0), 0);
    ck_assert_int_eq(mcefa_segment_open(p->c, name, &p->seg), 0);
    p->a = a;
    p->b = b;
}

/* The start most tests share: GPU 0 current, a pair whose buffers hold
 * patterns sa and sb, a stream. */
static CUstream start(pair *p, const char *name, size_t n, unsigned sa, unsigned sb)
{
    use_gpu(0);
    pair_open(p, name, n);
    fill(p->a, n, sa);
    fill(p->b, n, sb);
    CUstream s;
    CU_OK(cuda_drv.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    return s;
}

static void expect_counts(mcefa_client *c, int rc, uint64_t q, uint64_t f, uint64_t x)
{
    uint64_t gq, gf, gx;
    ck_assert_int_eq(mcefa_stream_check(c, &gq, &gf, &gx), rc);
    ck_assert_msg(gq == q && gf == f && gx == x, "queued/finished/failed %llu/%llu/%llu, expected %llu/%llu/%llu",
                  (unsigned long long)gq, (unsigned long long)gf, (unsigned long long)gx, (unsigned long long)q,
                  (unsigned long long)f, (unsigned long long)x);
}

/* The transfer waits for the host function queued before it (which writes
 * the source), and the one queued after it sees the bytes landed. */
START_TEST(host_memory_in_stream_order)
{
    pair p;
    size_t n = MiB;
    CUstream s = start(&p, "st-host", n, 1, 2);
    gate before, after;
    gate_init(&before, act_fill, p.a, n, 3, 0);
    gate_init(&after, act_same, p.b, n, 3, 1);
    CU_OK(cuda_drv.cuLaunchHostFunc(s, gate_fn, &before));
    mcefa_transfer x = {.opcode = MCEFA_WRITE, .local = p.a, .segment = p.seg, .remote = (uintptr_t)p.b, .length = n};
    ck_assert_msg(mcefa_transfer_on_stream(p.c, &x, 1, (uintptr_t)s, 10000) == 0, "%s", mcefa_last_error());
    CU_OK(cuda_drv.cuLaunchHostFunc(s, gate_fn, &after));
    /* Held behind the closed gate: nothing moved yet. */
    usleep(200000);
    ck_assert(same(p.b, n, 2));
    expect_counts(p.c, 0, 1, 0, 0);
    gate_open(&before);
    CU_OK(cuda_drv.cuStreamSynchronize(s));
    ck_assert_int_eq(atomic_load(&after.result), 1);
    ck_assert(same(p.b, n, 3));
    expect_counts(p.c, 0, 1, 1, 0);
    CU_OK(cuda_drv.cuStreamDestroy(s));
    mcefa_disconnect(p.c);
}
END_TEST

/* GPU memory of this process, in order with the stream's own copies: a
 * copy fills it, a transfer takes it to host memory and another brings it
 * back to a second GPU range, and a copy after them reads that. Then the
 * same on stream 0, whose synchronous copies wait for queued transfers. */
START_TEST(gpu_memory_in_stream_order)
{
    pair p;
    size_t n = 4 * MiB;
    CUstream s = start(&p, "st-gpu", n, 1, 2);
    CUdeviceptr dev;
    CU_OK(cuda_drv.cuMemAlloc(&dev, 2 * n));
    ck_assert_msg(mcefa_register(p.c, (void *)(uintptr_t)dev, 2 * n) == 0, "%s", mcefa_last_error());
    uint8_t *src = malloc(n), *out = malloc(n);
    fill(src, n, 4);
    memset(out, 0, n);
    gate g; /* holds the stream until everything is queued */
    gate_init(&g, NULL, NULL, 0, 0, 0);
    CU_OK(cuda_drv.cuLaunchHostFunc(s, gate_fn, &g));
    CU_OK(cuda_drv.cuMemcpyHtoDAsync(dev, src, n, s));
    mcefa_transfer x[2] = {
        {.opcode = MCEFA_WRITE, .local = (void *)(uintptr_t)dev, .segment = p.seg, .remote = (uintptr_t)p.b, .length = n},
        {.opcode = MCEFA_READ, .local = (void *)(uintptr_t)(dev + n), .segment = p.seg, .remote = (uintptr_t)p.b,
         .length = n},
    };
    ck_assert_msg(mcefa_transfer_on_stream(p.c, &x[0], 1, (uintptr_t)s, 10000) == 0, "%s", mcefa_last_error());
    ck_assert_msg(mcefa_transfer_on_stream(p.c, &x[1], 1, (uintptr_t)s, 10000) == 0, "%s", mcefa_last_error());
    CU_OK(cuda_drv.cuMemcpyDtoHAsync(out, dev + n, n, s));
    usleep(200000);
    ck_assert(same(p.b, n, 2));
    expect_counts(p.c, 0, 2, 0, 0);
    gate_open(&g);
    CU_OK(cuda_drv.cuStreamSynchronize(s));
    ck_assert(same(p.b, n, 4));
    ck_assert(same(out, n, 4));
    expect_counts(p.c, 0, 2, 2, 0);
    /* Stream 0: a synchronous copy after the transfer sees its bytes. */
    fill(src, n, 5);
    CU_OK(cuda_drv.cuMemcpyHtoD(dev, src, n));
    for (int i = 0; i < 2; i++) /* two calls: one batch's transfers run side by side */
        ck_assert_msg(mcefa_transfer_on_stream(p.c, &x[i], 1, 0, 10000) == 0, "%s", mcefa_last_error());
    memset(out, 0, n);
    CU_OK(cuda_drv.cuMemcpyDtoH(out, dev + n, n));
    ck_assert(same(out, n, 5));
    ck_assert(same(p.b, n, 5));
    CU_OK(cuda_drv.cuStreamSynchronize(0));
    expect_counts(p.c, 0, 4, 4, 0);
    CU_OK(cuda_drv.cuStreamDestroy(s));
    ck_assert_int_eq(mcefa_unregister(p.c, (void *)(uintptr_t)dev), 0);
    mcefa_disconnect(p.c);
    CU_OK(cuda_drv.cuMemFree(dev));
    free(src);
    free(out);
}
END_TEST

/* A failure in the stream comes back once, with the daemon's reason and
 * the call it was; what cannot be queued fails at the call. */
START_TEST(failures_are_reported_once)
{
    pair p;
    size_t n = MiB;
    CUstream s = start(&p, "st-fail", n, 1, 2);
    uint8_t *plain = malloc(n);
    mcefa_transfer bad = {.opcode = MCEFA_WRITE, .local = plain, .segment = p.seg, .remote = (uintptr_t)p.b,
                          .length = n};
    mcefa_transfer good = bad;
    good.local = p.a;
    ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &good, 1, (uintptr_t)s, 10000), 0);
    ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &bad, 1, (uintptr_t)s, 10000), 0); /* call 2 */
    CU_OK(cuda_drv.cuStreamSynchronize(s));
    expect_counts(p.c, -EFAULT, 2, 2, 1);
    ck_assert_msg(strstr(mcefa_last_error(), "(call 2) failed") &&
                      strstr(mcefa_last_error(), "is not inside any registered region"),
                  "%s", mcefa_last_error());
    expect_counts(p.c, 0, 2, 2, 1); /* reported: not again */
    /* Three failures: the first is told, with how many more. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &bad, 1, (uintptr_t)s, 10000), 0);
    CU_OK(cuda_drv.cuStreamSynchronize(s));
    expect_counts(p.c, -EFAULT, 5, 5, 4);
    ck_assert_msg(strstr(mcefa_last_error(), "(call 3) failed") && strstr(mcefa_last_error(), "and 2 later calls"),
                  "%s", mcefa_last_error());
    /* Not a stream: refused at the call, nothing counted. */
    ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &good, 1, 0xdead0000, 10000), -EBADF);
    ck_assert_msg(strstr(mcefa_last_error(), "cuLaunchHostFunc") && strstr(mcefa_last_error(), "0xdead0000"), "%s",
                  mcefa_last_error());
    /* Stream 0 with no context current: there is no default stream to use. */
    CU_OK(cuda_drv.cuCtxSetCurrent(NULL));
    ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &good, 1, 0, 10000), -EINVAL);
    ck_assert_msg(strstr(mcefa_last_error(), "CUDA_ERROR_INVALID_CONTEXT"), "%s", mcefa_last_error());
    expect_counts(p.c, 0, 5, 5, 4);
    use_gpu(0);
    CU_OK(cuda_drv.cuStreamDestroy(s));
    mcefa_disconnect(p.c);
    free(plain);
}
END_TEST

static void act_cuda_call(gate *g)
{
    CUcontext ctx;
    atomic_store(&g->result, (int)cuda_drv.cuCtxGetCurrent(&ctx));
}

/* The stand-in refuses CUDA calls from a host function, as the driver
 * may: the transfers above completing through it shows that the library's
 * host function makes none. */
START_TEST(standin_refuses_cuda_in_host_functions)
{
    if (real_gpu) {
        printf("standin_refuses_cuda_in_host_functions: skipped: a property of the stand-in\n");
        return;
    }
    use_gpu(0);
    CUstream s;
    CU_OK(cuda_drv.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    gate g;
    gate_init(&g, act_cuda_call, NULL, 0, 0, 1);
    CU_OK(cuda_drv.cuLaunchHostFunc(s, gate_fn, &g));
    CU_OK(cuda_drv.cuStreamSynchronize(s));
    ck_assert_int_eq(atomic_load(&g.result), CUDA_ERROR_NOT_PERMITTED);
    CU_OK(cuda_drv.cuStreamDestroy(s));
}
END_TEST

/* Disconnecting while the stream still holds transfers: it does not wait
 * for the stream, and the stream later finds the client gone and moves
 * nothing (no use of freed memory: the suite runs under ASan too). */
START_TEST(disconnect_with_transfers_queued)
{
    pair p;
    size_t n = MiB;
    CUstream s = start(&p, "st-gone", n, 6, 7);
    gate g;
    gate_init(&g, NULL, NULL, 0, 0, 0);
    CU_OK(cuda_drv.cuLaunchHostFunc(s, gate_fn, &g));
    mcefa_transfer x = {.opcode = MCEFA_WRITE, .local = p.a, .segment = p.seg, .remote = (uintptr_t)p.b, .length = n};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &x, 1, (uintptr_t)s, 10000), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mcefa_disconnect(p.c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 2);
    gate_open(&g);
    CU_OK(cuda_drv.cuStreamSynchronize(s));
    ck_assert(same(p.b, n, 7)); /* mcefa_alloc memory stays mapped after disconnect */
    CU_OK(cuda_drv.cuStreamDestroy(s));
    ck_assert(daemon_alive(&D));
}
END_TEST

/* Disconnecting while a host function is inside a transfer (the daemon's
 * GPU copy is slowed down): the transfer fails at once rather than at its
 * timeout, and disconnect returns after it, not before. */
START_TEST(disconnect_during_a_transfer)
{
    if (real_gpu) {
        printf("disconnect_during_a_transfer: skipped: needs the stand-in (a slow daemon)\n");
        return;
    }
    daemon_stop(&D);
    setenv("MCEFA_STANDIN_DELAY_US", "3000000", 1); /* the daemon's stream ops: 3 s each */
    setup();
    setenv("MCEFA_STANDIN_DELAY_US", "2000", 1);
    pair p;
    size_t n = MiB;
    CUstream s = start(&p, "st-slow", n, 1, 2);
    CUdeviceptr dev;
    CU_OK(cuda_drv.cuMemAlloc(&dev, n));
    ck_assert_int_eq(mcefa_register(p.c, (void *)(uintptr_t)dev, n), 0);
    mcefa_transfer x = {.opcode = MCEFA_READ, .local = (void *)(uintptr_t)dev, .segment = p.seg,
                        .remote = (uintptr_t)p.b, .length = n};
    ck_assert_int_eq(mcefa_transfer_on_stream(p.c, &x, 1, (uintptr_t)s, 60000), 0);
    usleep(500000); /* the host function is in the transfer by now */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mcefa_disconnect(p.c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(took < 2.0, "disconnect took %.1f s: it waited for the transfer instead of failing it", took);
    CU_OK(cuda_drv.cuStreamSynchronize(s)); /* the host function has returned */
    CU_OK(cuda_drv.cuStreamDestroy(s));
    CU_OK(cuda_drv.cuMemFree(dev));
}
END_TEST

int main(void)
{
    /* Stand-in stream ops take a while, so work done out of order shows. */
    int n = gpu_mode_init("stream", "2000", lib_flag, sizeof(lib_flag));
    if (n == 0)
        return 0;
    real_gpu = n > 0;
    Suite *s = suite_create(real_gpu ? "stream-real" : "stream-standin");
    TCase *tc = tcase_create("on-stream");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, host_memory_in_stream_order);
    tcase_add_test(tc, gpu_memory_in_stream_order);
    tcase_add_test(tc, failures_are_reported_once);
    tcase_add_test(tc, standin_refuses_cuda_in_host_functions);
    tcase_add_test(tc, disconnect_with_transfers_queued);
    tcase_add_test(tc, disconnect_during_a_transfer);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

#else /* built without the CUDA headers */

static void setup(void)
{
    const char *extra[] = {"--provider=none", NULL};
    daemon_start(&D, extra);
}

/* The call says the build has no CUDA, and nothing is counted. */
START_TEST(built_without_cuda)
{
    mcefa_client *c = client_ok(D.sock, "st-nocuda");
    void *a;
    ck_assert_int_eq(mcefa_alloc(c, MiB, -1, 0, &a), 0);
    ck_assert_int_eq(mcefa_register(c, a, MiB), 0);
    ck_assert_int_eq(mcefa_segment_export(c, "st-nocuda", NULL, 0), 0);
    mcefa_segment seg;
    ck_assert_int_eq(mcefa_segment_open(c, "st-nocuda", &seg), 0);
    mcefa_transfer x = {.opcode = MCEFA_WRITE, .local = a, .segment = seg, .remote = (uintptr_t)a + 4096,
                        .length = 4096};
    ck_assert_int_eq(mcefa_transfer_on_stream(c, &x, 1, 0, 1000), -ENOTSUP);
    ck_assert_msg(strstr(mcefa_last_error(), "built without CUDA"), "%s", mcefa_last_error());
    uint64_t q = 1, f = 1, e = 1;
    ck_assert_int_eq(mcefa_stream_check(c, &q, &f, &e), 0);
    ck_assert(q == 0 && f == 0 && e == 0);
    mcefa_disconnect(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stream-nocuda");
    TCase *tc = tcase_create("on-stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, built_without_cuda);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

#endif
