/* libmcefa: transfers ordered on a CUDA stream. The transfers go to the
 * stream as a host function (cuLaunchHostFunc): the driver runs it once the
 * work queued on the stream before is done, and the stream's later work
 * waits until it returned. It submits the transfers and waits for them; it
 * makes no CUDA call (the driver forbids them there) but only speaks to the
 * daemon's socket and polls the shared completion area. A host function
 * cannot return an error, so outcomes are kept here for mcefa_stream_check.
 *
 * The bookkeeping outlives the client: a host function still queued when
 * the client disconnects finds it gone and fails without touching it. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

struct client_streams {
    pthread_mutex_t lock;
    pthread_cond_t idle;   /* signalled when a host function ends */
    mcefa_client *c;       /* NULL once the client disconnected */
    unsigned refs;         /* the client's, and one per queued host function */
    unsigned running;      /* host functions inside a call on c now */
    uint64_t next_no;      /* numbers the queued calls: 1, 2, ... */
    uint64_t queued, finished, failed;
    uint64_t unreported;   /* failures since the last check */
    int first_err;         /* the earliest of those */
    uint64_t first_no;
    char first_text[512];
};

static void streams_put(client_streams *st)
{
    pthread_mutex_lock(&st->lock);
    bool last = --st->refs == 0;
    pthread_mutex_unlock(&st->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->idle);
    free(st);
}

void client_streams_detach(mcefa_client *c)
{
    client_streams *st = c->streams;
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->c = NULL;
    /* A transfer in progress fails at once rather than at its timeout: the
     * connection is going anyway. */
    if (st->running && c->sock >= 0)
        shutdown(c->sock, SHUT_RDWR);
    while (st->running)
        pthread_cond_wait(&st->idle, &st->lock);
    pthread_mutex_unlock(&st->lock);
    c->streams = NULL;
    streams_put(st);
}

int mcefa_stream_check(mcefa_client *c, uint64_t *queued, uint64_t *finished, uint64_t *failed)
{
    if (!c)
        return client_error(-EINVAL, "mcefa_stream_check: client is NULL");
    pthread_mutex_lock(&c->lock); /* c->streams is set under it (streams_of) */
    client_streams *st = c->streams;
    pthread_mutex_unlock(&c->lock);
    uint64_t q = 0, fin = 0, fail = 0;
    int rc = 0;
    if (st) {
        pthread_mutex_lock(&st->lock);
        q = st->queued;
        fin = st->finished;
        fail = st->failed;
        if (st->unreported) {
            char later[64] = "";
            if (st->unreported > 1)
                snprintf(later, sizeof(later), " (and %" PRIu64 " later call%s failed too)", st->unreported - 1,
                         st->unreported > 2 ? "s" : "");
            rc = client_error(st->first_err, "transfers queued on a CUDA stream (call %" PRIu64 ") failed: %s%s",
                              st->first_no, st->first_text, later);
            st->unreported = 0;
        }
        pthread_mutex_unlock(&st->lock);
    }
    if (queued)
        *queued = q;
    if (finished)
        *finished = fin;
    if (failed)
        *failed = fail;
    return rc;
}

#ifdef MCEFA_CUDA
#include "shm/cuda_drv.h"

typedef struct stream_job {
    client_streams *st;
    uint64_t no;
    int timeout_ms;
    size_t n;
    mcefa_transfer t[];
} stream_job;

/* The bookkeeping of c, made on first use. */
static client_streams *streams_of(mcefa_client *c)
{
    pthread_mutex_lock(&c->lock);
    client_streams *st = c->streams;
    if (!st && (st = calloc(1, sizeof(*st)))) {
        pthread_mutex_init(&st->lock, NULL);
        pthread_cond_init(&st->idle, NULL);
        st->c = c;
        st->refs = 1;
        c->streams = st;
    }
    pthread_mutex_unlock(&c->lock);
    return st;
}

/* Runs on the driver's thread, in stream order. No CUDA calls in here. */
static void CUDA_CB on_stream(void *arg)
{
    stream_job *j = arg;
    client_streams *st = j->st;
    pthread_mutex_lock(&st->lock);
    mcefa_client *c = st->c;
    if (c)
        st->running++;
    pthread_mutex_unlock(&st->lock);
    int rc = c ? mcefa_transfer_sync(c, j->t, j->n, j->timeout_ms) : -ECONNRESET;
    const char *text = c ? mcefa_last_error()
                         : "the client disconnected before the stream reached these transfers; nothing was moved";
    pthread_mutex_lock(&st->lock);
    if (c)
        st->running--;
    st->finished++;
    if (rc < 0) {
        st->failed++;
        if (st->unreported++ == 0) {
            st->first_err = rc;
            st->first_no = j->no;
            snprintf(st->first_text, sizeof(st->first_text), "%s", *text ? text : mcefa_strerror(rc));
        }
    }
    pthread_cond_broadcast(&st->idle);
    pthread_mutex_unlock(&st->lock);
    streams_put(st);
    free(j);
}

static int cu_errno(CUresult r)
{
    switch (r) {
    case CUDA_ERROR_INVALID_HANDLE:
        return -EBADF;
    case CUDA_ERROR_NOT_PERMITTED:
        return -EPERM;
    case CUDA_ERROR_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EINVAL;
    }
}

int mcefa_transfer_on_stream(mcefa_client *c, const mcefa_transfer *t, size_t n, uint64_t stream, int timeout_ms)
{
    if (!c || (!t && n))
        return client_error(-EINVAL, "mcefa_transfer_on_stream: client and transfers must not be NULL");
    if (n > UINT32_MAX)
        return client_error(-EINVAL, "mcefa_transfer_on_stream: too many transfers (%zu)", n);
    char why[512];
    int rc = client_cuda_load(why, sizeof(why));
    if (rc < 0)
        return client_error(rc, "mcefa_transfer_on_stream: %s", why);
    client_streams *st = streams_of(c);
    stream_job *j = st ? malloc(sizeof(*j) + n * sizeof(*t)) : NULL;
    if (!j)
        return client_error(-ENOMEM, "out of memory");
    j->st = st;
    j->timeout_ms = timeout_ms;
    j->n = n;
    if (n)
        memcpy(j->t, t, n * sizeof(*t));
    pthread_mutex_lock(&st->lock);
    st->refs++;
    st->queued++; /* before: the host function may run before the launch returns */
    j->no = ++st->next_no;
    pthread_mutex_unlock(&st->lock);
    CUresult r = cuda_drv.cuLaunchHostFunc((CUstream)(uintptr_t)stream, on_stream, j);
    if (r == CUDA_SUCCESS)
        return 0;
    pthread_mutex_lock(&st->lock);
    st->queued--;
    pthread_mutex_unlock(&st->lock);
    streams_put(st);
    free(j);
    return client_error(cu_errno(r),
                        "mcefa_transfer_on_stream: cannot queue the transfers on CUDA stream 0x%" PRIx64
                        " (cuLaunchHostFunc: %s): pass a live stream of the GPU whose context is current in this "
                        "thread, or 0 for that context's default stream",
                        stream, cuda_drv_error(r));
}

#else /* built without the CUDA headers */

int mcefa_transfer_on_stream(mcefa_client *c, const mcefa_transfer *t, size_t n, uint64_t stream, int timeout_ms)
{
    (void)c;
    (void)t;
    (void)n;
    (void)stream;
    (void)timeout_ms;
    char why[512];
    int rc = client_cuda_load(why, sizeof(why));
    return client_error(rc, "mcefa_transfer_on_stream: %s, so transfers cannot be ordered on a CUDA stream", why);
}

#endif
