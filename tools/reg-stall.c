/* mcefa-reg-stall: how long a large registration holds up other clients.
 * Client A registers a buffer of --size bytes (sparse until the daemon
 * pre-faults it); meanwhile client B times 4 KiB same-host writes into
 * its own segment. Prints A's registration time and B's longest write
 * during it, the figure that tells whether registration blocks the
 * daemon's event loop.
 *
 *   mcefa-reg-stall [--socket=PATH] [--size=BYTES]   (default 2 GiB) */
#include <mcefa.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct big {
    mcefa_client *c;
    void *buf;
    size_t len;
    int rc;
    double seconds;
    char err[512];
    _Atomic int done;
} big;

static void *register_big(void *arg)
{
    big *g = arg;
    double t0 = now_s();
    g->rc = mcefa_register(g->c, g->buf, g->len);
    g->seconds = now_s() - t0;
    if (g->rc < 0)
        snprintf(g->err, sizeof(g->err), "%s", mcefa_last_error());
    atomic_store(&g->done, 1);
    return NULL;
}

static int fail(const char *what)
{
    fprintf(stderr, "mcefa-reg-stall: %s: %s\n", what, mcefa_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *sock = NULL;
    big g = {.len = (size_t)2 << 30};
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--socket=", 9))
            sock = argv[i] + 9;
        else if (!strncmp(argv[i], "--size=", 7))
            g.len = strtoull(argv[i] + 7, NULL, 0);
        else {
            fprintf(stderr, "usage: mcefa-reg-stall [--socket=PATH] [--size=BYTES]\n");
            return 2;
        }
    }
    mcefa_client *b;
    if (mcefa_connect(sock, "reg-stall-big", &g.c) < 0 || mcefa_connect(sock, "reg-stall-small", &b) < 0)
        return fail("connect");
    if (mcefa_alloc(g.c, g.len, -1, 0, &g.buf) < 0)
        return fail("alloc of the large buffer");
    void *buf;
    char name[256];
    mcefa_segment seg;
    if (mcefa_alloc(b, 1 << 20, -1, 0, &buf) < 0 || mcefa_register(b, buf, 1 << 20) < 0 ||
        mcefa_segment_export(b, NULL, name, sizeof(name)) < 0 || mcefa_segment_open(b, name, &seg) < 0)
        return fail("setting up the small client");
    mcefa_transfer x = {MCEFA_WRITE, buf, seg, (uint64_t)(uintptr_t)buf + 65536, 4096};
    pthread_t th;
    if (pthread_create(&th, NULL, register_big, &g) != 0)
        return 1;
    usleep(10000); /* the registration is under way */
    double worst = 0;
    unsigned n = 0;
    while (!atomic_load(&g.done)) {
        double t0 = now_s();
        if (mcefa_transfer_sync(b, &x, 1, 60000) < 0)
            return fail("4 KiB write");
        double d = now_s() - t0;
        worst = d > worst ? d : worst;
        n++;
    }
    pthread_join(th, NULL);
    if (g.rc < 0) {
        fprintf(stderr, "mcefa-reg-stall: registering %zu bytes: %s\n", g.len, g.err);
        return 1;
    }
    printf("registration of %.2f GiB: %.2f s; %u writes of 4 KiB by another client meanwhile, longest %.1f ms\n",
           (double)g.len / (1 << 30), g.seconds, n, worst * 1e3);
    mcefa_disconnect(b);
    mcefa_disconnect(g.c);
    return 0;
}
