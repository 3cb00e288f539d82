/* libmcefa internals shared by its source files. */
#ifndef MCEFA_CLIENT_INTERNAL_H
#define MCEFA_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "mcefa.h"
#include "wire.h"

typedef struct alloc_rec {
    struct alloc_rec *next;
    char *ptr;
    size_t len;
    int fd;
    int numa_node;
} alloc_rec;

/* One request waiting for its reply; lives on the caller's stack from before
 * its frame is sent until its reply (or the connection's end) arrived. */
typedef struct client_pending {
    struct client_pending *next;
    uint64_t seq;
    pthread_cond_t cond; /* signalled when done, or when it is to read next */
    bool waiting;        /* sent and blocked: may be asked to read */
    bool done;
    int err;             /* 0: resp is the reply; else the connection broke (broken_text) */
    Mcefa__Response *resp;
    int fds[WIRE_MAX_FDS]; /* descriptors that came with the reply */
    unsigned nfds;
} client_pending;

typedef struct client_streams client_streams; /* stream.c */
typedef struct client_ring client_ring;       /* ring.c */

struct mcefa_client {
    int sock;
    /* Held while one whole frame goes out, so frames (and the descriptors
     * riding on their first byte) never interleave. */
    pthread_mutex_t send_lock;
    /* Guards everything from seq to broken_text. Never held while blocked
     * on the socket. */
    pthread_mutex_t lock;
    uint64_t seq;
    client_pending *pending; /* requests sent or being sent, newest first */
    bool reading;            /* one waiter reads the socket; it alone uses rd */
    bool broken;             /* the connection is unusable; broken_text says why */
    char broken_text[512];
    wire_reader rd;
    void *cq;
    size_t cq_len;
    uint32_t cq_slots;
    uint64_t session_id;
    uint32_t features;  /* Welcome.features */
    client_ring *ring;  /* the submission ring; NULL: submit over the socket */
    char hostname[256];
    char version[32];
    pthread_mutex_t alloc_lock;
    alloc_rec *allocs;
    client_streams *streams; /* transfers queued on CUDA streams; NULL until the first */
};

struct mcefa_batch {
    mcefa_client *c;
    uint64_t id;
    uint32_t first_slot;
    uint32_t capacity;
    uint32_t submitted;
};

/* Sets the calling thread's last error text; returns err. */
int client_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends req, waits for its response. On success *resp must be freed with
 * mcefa__response__free_unpacked; on a daemon error the text becomes the
 * thread's last error and the status is returned. Any number of threads may
 * call it at once on one client: replies are matched by seq. */
int client_call(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **resp);

/* Like client_call; *rfd (if not NULL) gets the first descriptor that came
 * with the reply, or -1. Other descriptors of the reply are closed. */
int client_call_fd(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **resp,
                   int *rfd);

/* Registers [addr, addr+len) if the CUDA driver says it is GPU memory
 * (*is_gpu = 1; returns 0 or the error). Not GPU memory: *is_gpu = 0,
 * returns 0, and why says what was found (no driver, not device memory,
 * built without CUDA). gpu.c. */
int client_gpu_register(mcefa_client *c, void *addr, size_t len, int *is_gpu, char *why, size_t whylen);

/* Asks the daemon's status: on success *resp holds daemon_status (free it
 * with mcefa__response__free_unpacked). */
int client_status_call(mcefa_client *c, Mcefa__Response **resp);

/* Loads the CUDA driver the library uses (MCEFA_CUDA_LIBRARY, else
 * libcuda.so.1): 0, or a negative errno with why saying what is missing
 * (also "built without CUDA"). gpu.c. */
int client_cuda_load(char *why, size_t whylen);

/* The PCI bus ids of the GPUs this process sees, by CUDA ordinal (as its
 * CUDA_VISIBLE_DEVICES numbers them), up to max: how many there are; 0
 * without a driver or GPU. gpu.c. */
int client_gpu_bus_ids(char (*ids)[32], int max);

/* At disconnect: waits for a stream-ordered transfer in progress (made to
 * fail fast) and leaves those still queued to fail without the client.
 * stream.c. */
void client_streams_detach(mcefa_client *c);

/* Like client_call; rfds[0..want) get the descriptors that came with the
 * reply, in order, or -1 each (extras are closed). */
int client_call_fds(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **resp,
                    int *rfds, unsigned want);

/* Asks for a submission ring where the daemon offers one (and the
 * environment does not say MCEFA_SUBMIT_RING=0); 0 also when there is
 * none. ring.c. */
int client_ring_open(mcefa_client *c);
void client_ring_close(mcefa_client *c);
/* Sends OpenRing: the ring's sizes and its two descriptors (memfd,
 * eventfd), for client_ring_open (and check_ring, which writes rings raw). */
int client_ring_request(mcefa_client *c, uint32_t *entries, uint32_t *results, int fds[2]);
/* Whether n transfers can go through the ring (it exists and holds n). */
bool client_ring_fits(const mcefa_client *c, size_t n);
/* Submits n transfers to batch_id through the ring and waits for the
 * daemon's answer: the batch index of the first, or a negative errno with
 * the daemon's text. Any number of threads at once. */
int client_ring_submit(mcefa_client *c, uint64_t batch_id, const mcefa_transfer *t, size_t n);
/* AllocBatch and FreeBatch through the ring, same answers; a free of a
 * batch whose transfers all finished is not waited for. */
int client_ring_alloc(mcefa_client *c, uint32_t capacity, uint64_t *id, uint32_t *first_slot, uint32_t *cap);
int client_ring_free(mcefa_client *c, uint64_t id, bool when_done, bool finished);

/* True when the daemon closed the connection (its socket hung up). */
bool client_daemon_gone(mcefa_client *c);

static inline void client_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Like client_call for requests whose reply carries nothing. */
int client_call_simple(mcefa_client *c, Mcefa__Request *req);

/* Checks the struct_size a caller set (see mcefa.h): 0, or -EINVAL with a
 * text naming the struct and its initialiser when it is smaller than the
 * struct's first version (up to last_v1_field) or too large to be a size
 * of it (never initialised). */
int client_check_struct_size(size_t struct_size, size_t min, const char *type, const char *init);
#define CLIENT_CHECK_SIZE(size, type, last_v1_field, init)                                                        \
    client_check_struct_size((size), offsetof(type, last_v1_field) + sizeof(((type *)0)->last_v1_field), #type,   \
                             init)

#endif
